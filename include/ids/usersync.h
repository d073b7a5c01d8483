/* usersync.h — the daemon's targeted syncs on request (issue 17 part 2):
 * `LISTEN idsyncd_sync_user` on a PostgreSQL connection of its own, and
 * the queue of the requests it brings (payload `CONNECTOR:USER`).
 *
 * A request is checked (a colon, a configured connector, a type with a
 * targeted read), coalesced with the same connector+user when that one
 * is queued or running, rate limited per connector (sync.user_rate a
 * second, a burst of as many; the excess is dropped with a warning), and
 * queued.  The daemon's loop polls ids_usersync_fd(), runs what
 * ids_usersync_next() hands out (ids_sync_connector with only_user) and
 * calls ids_usersync_done() after it.  Single-threaded: the loop's. */
#ifndef IDS_USERSYNC_H
#define IDS_USERSYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "ids/config.h"
#include "ids/metrics.h"

#define IDS_USERSYNC_CHANNEL "idsyncd_sync_user"

struct ids_usersync;

/* *ret new (ids_usersync_free, which accepts NULL); not connected yet. */
int ids_usersync_new(struct ids_usersync **ret);
void ids_usersync_free(struct ids_usersync *u);

/* The LISTEN connection's socket to poll, -1 while there is none. */
int ids_usersync_fd(const struct ids_usersync *u);

/* Monotonic usec of the next connection attempt; 0 when connected or
 * when cfg turns the LISTEN off (sync.user_rate: 0). */
int64_t ids_usersync_retry_at(const struct ids_usersync *u, const struct ids_config *cfg);

/* Connects and LISTENs when not connected and the attempt is due (a
 * failure is logged and backs off from sync.retry_min to retry_max, as
 * the daemon's own database connection does).  cfg borrowed for the call. */
void ids_usersync_connect(struct ids_usersync *u, const struct ids_config *cfg);

/* Drops the connection (a reload: the database settings may have
 * changed): the next ids_usersync_connect tries at once.  The queue stays. */
void ids_usersync_close(struct ids_usersync *u);

/* Reads every notification waiting, without blocking, and queues its
 * request.  A lost connection is closed (and retried).  m (may be NULL)
 * counts what is coalesced, dropped and refused. */
void ids_usersync_drain(struct ids_usersync *u, const struct ids_config *cfg, struct ids_metrics *m);

/* The oldest queued request, which becomes the running one: *conn and
 * *user borrowed until ids_usersync_done.  false when none is queued. */
bool ids_usersync_next(struct ids_usersync *u, const char **conn, const char **user);

/* After the running request's sync: reads what arrived meanwhile first,
 * so that repeats of it sent during its run coalesce into it, then
 * forgets it. */
void ids_usersync_done(struct ids_usersync *u, const struct ids_config *cfg, struct ids_metrics *m);

#endif
