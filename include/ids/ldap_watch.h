/* ldap_watch.h — the doorbell of a `changes.persist: true` connector
 * (OpenLDAP, issue 14; connectors/ldap_watch.c, docs/changes.md): three
 * sync searches (the feed's users and groups, and the containers its
 * plain search follows) in refreshAndPersist mode, from the cookies of
 * the stored cursor (the containers' from the users'), asking for no
 * attribute ("1.1").  It applies nothing: what arrives only says
 * that the connector has changes to read, and the daemon's normal
 * incremental run reads them from the stored cursor.
 *
 * The connection is made exactly as a run's (ldap_conn.c: URI failover,
 * TLS verified, bind), then its socket is non-blocking and read only when
 * the caller's poll says so. */
#ifndef IDS_LDAP_WATCH_H
#define IDS_LDAP_WATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "ids/config.h"
#include "ids/connector.h"
#include "ids/error.h"

struct ids_ldap_watch;

/* Connects and sends the searches from the cookies of `cursor` (the
 * connector's stored one, borrowed).  ctx (borrowed, only during this
 * call) gives the progress hook its waits call.  0 with *ret (new:
 * ids_ldap_watch_close); 1 when the cursor has no cookie to start from
 * (none stored yet, or another feed's): nothing opened; < 0 with err. */
int ids_ldap_watch_open(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
			const unsigned char *cursor, size_t cursor_len, struct ids_ldap_watch **ret,
			struct ids_error *err);

/* The socket to poll for reading. */
int ids_ldap_watch_fd(const struct ids_ldap_watch *w);

/* Reads whatever has arrived, without blocking.  *rang becomes true when
 * something says the directory changed since the cursor: an entry added,
 * modified or deleted, a syncIdSet of deletes, a refresh that ended with
 * a present phase (its deletes are implicit), the server's
 * e-syncRefreshRequired.  0 while the searches go on; < 0 with err when
 * the connection or a search ended (reconnect; *rang may be set too). */
int ids_ldap_watch_read(struct ids_ldap_watch *w, bool *rang, struct ids_error *err);

/* Whether every search has finished its refresh phase (the doorbell is
 * listening for new changes only). */
bool ids_ldap_watch_refreshed(const struct ids_ldap_watch *w);

/* Whether a search ended because the server refused the cookie it
 * started from (e-syncRefreshRequired, or a cookie newer than the
 * server's state): reopening from the same cursor is pointless until a
 * run has committed a new one. */
bool ids_ldap_watch_refused(const struct ids_ldap_watch *w);

/* Abandons the searches, unbinds, frees; accepts NULL. */
void ids_ldap_watch_close(struct ids_ldap_watch *w);

#endif
