/* scim_server.h — the SCIM 2.0 service provider's listener (issue 16):
 * libmicrohttpd in a thread of its own, serving every `type: scim`
 * connector at /scim/v2/<connector>/.
 *
 * The daemon's main loop stays single-threaded for runs: the listener
 * writes pushed resources to PostgreSQL itself (its own connection,
 * committed before it answers) and then tells the loop which connectors
 * were written through an eventfd the loop ppoll()s; the loop schedules
 * each one's run apply_delay after its last write. */
#ifndef IDS_SCIM_SERVER_H
#define IDS_SCIM_SERVER_H

#include "ids/config.h"
#include "ids/error.h"

struct ids_scim_server;

/* Listens as cfg->scim says.  cfg is borrowed and must outlive the
 * server (a reload stops it before freeing the old configuration).  No
 * scim: block: *ret NULL and 0.  The database is connected on the first
 * request (and again after it was lost: 503 with Retry-After meanwhile).
 * Errors: IDS_E_CONFIG (the key or certificate cannot be read),
 * IDS_E_CONNECT (cannot bind).  *ret new (ids_scim_server_stop). */
int ids_scim_server_start(const struct ids_config *cfg, struct ids_scim_server **ret, struct ids_error *err);

/* A reload: the running listener serves cfg (borrowed, as for start)
 * in place of its old configuration, keeping its connections, rate
 * budgets and pending pushes, and re-reads the key and certificate
 * (refused ones — unreadable, unparsable, a key not the certificate's —
 * are logged and the previous pair stays in use).  1: cfg needs a new
 * listener (listen, TLS on or off, timeout or max_connections changed, or
 * no memory): nothing was changed, the caller stops and starts; 0: done,
 * the old configuration is no longer used. */
int ids_scim_server_reload(struct ids_scim_server *s, const struct ids_config *cfg);

/* fn is called, on the listener's thread, for each answer: the connector
 * (NULL when the path named none; borrowed for the call), the HTTP
 * status and the seconds since the request's headers arrived.  NULL fn:
 * none.  Accepts a NULL server. */
void ids_scim_server_observe(struct ids_scim_server *s,
			     void (*fn)(void *ud, const char *connector, unsigned status, double seconds),
			     void *ud);

/* The eventfd that becomes readable after a committed write; -1 for a
 * NULL server. */
int ids_scim_server_fd(const struct ids_scim_server *s);

/* Calls fn for each connector written since the last call (name borrowed
 * for the call) and clears the set.  Accepts NULL. */
void ids_scim_server_drain(struct ids_scim_server *s, void (*fn)(void *ud, const char *name), void *ud);

/* Stops listening (requests in progress finish first), closes the
 * database connection, wipes the key.  Accepts NULL. */
void ids_scim_server_stop(struct ids_scim_server *s);

#endif
