/* metrics.h — /metrics in the Prometheus text exposition format (issue 17
 * part 4): a registry the daemon's loop updates after each run, and a
 * listener of its own (libmicrohttpd, its own thread) that only reads it.
 *
 * Separate from the SCIM listener on purpose: SCIM faces the identity
 * provider, metrics face the monitoring host, and each gets its own
 * address (metrics default to loopback, see README "Metrics"). */
#ifndef IDS_METRICS_H
#define IDS_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "ids/catalog.h"
#include "ids/error.h"
#include "ids/sync.h"
#include "ids/util.h"

struct ids_metrics;

/* An empty registry.  *ret new (ids_metrics_free). */
int ids_metrics_new(struct ids_metrics **ret);
/* Accepts NULL. */
void ids_metrics_free(struct ids_metrics *m);

/* Adds connector's run res (borrowed), which took `seconds` of wall time
 * and ended at `now` (unix time), to m.  Thread-safe (m's mutex).  A
 * connector name is copied: a reload may free the configuration. */
int ids_metrics_record(struct ids_metrics *m, const char *connector, const struct ids_sync_result *res,
		       double seconds, time_t now);

/* Sets the licence gauges (used / limit / waiting per company and role)
 * to v[0..n) (borrowed; strings copied), replacing every licence set
 * before: a licence a reload removed disappears.  Thread-safe. */
int ids_metrics_licences(struct ids_metrics *m, const struct ids_licence_status *v, size_t n);
/* Counts one SCIM request of connector (NULL or "": the path named
 * none; copied) answered with status after `seconds`.  Thread-safe: the
 * SCIM listener's thread calls it. */
int ids_metrics_scim(struct ids_metrics *m, const char *connector, unsigned status, double seconds);
/* The series beyond a run's result (issue 17 part 4), each thread-safe
 * and copying its strings.  ids_metrics_targeted: one targeted sync
 * request of connector by outcome (the run's status, or coalesced,
 * rate_limited, queue_full); ids_metrics_targeted_refused: a request
 * refused before it named a usable connector (malformed,
 * unknown_connector: no connector label, the name is the
 * client's); ids_metrics_feed_reset: a change feed fell back to reading
 * everything (reason: ids_sync_result.feed_reset); ids_metrics_managed:
 * the active users and grants connector manages now (gauges). */
int ids_metrics_targeted(struct ids_metrics *m, const char *connector, const char *outcome);
int ids_metrics_targeted_refused(struct ids_metrics *m, const char *reason);
int ids_metrics_feed_reset(struct ids_metrics *m, const char *connector, const char *reason);
int ids_metrics_managed(struct ids_metrics *m, const char *connector, long users, long grants);
/* The persistent search of connector (changes.persist): up or not
 * (gauge), and outage: it just dropped or failed to open (counter + 1). */
int ids_metrics_persist(struct ids_metrics *m, const char *connector, bool up, bool outage);

/* Appends the exposition text of everything recorded so far to out
 * (HELP and TYPE lines, label values escaped).  Takes m's mutex for the
 * copy of the numbers only. */
int ids_metrics_format(struct ids_metrics *m, struct ids_buf *out);

/* Appends v escaped as a label value (\\, \" and \n) to out. */
int ids_metrics_label(struct ids_buf *out, const char *v);

struct ids_metrics_server;

/* Serves GET /metrics from m (borrowed; must outlive the server) on
 * listen ("host:port", as scim.listen).  Errors: IDS_E_CONFIG (malformed
 * address), IDS_E_CONNECT (cannot bind).  *ret new (ids_metrics_server_stop). */
int ids_metrics_server_start(const char *listen, struct ids_metrics *m, struct ids_metrics_server **ret,
			     struct ids_error *err);
/* Stops listening (a scrape in progress finishes first).  Accepts NULL. */
void ids_metrics_server_stop(struct ids_metrics_server *s);

#endif
