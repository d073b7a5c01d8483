/* workers.h — the daemon's worker threads (sync.workers > 1, issue 19):
 * up to N connector runs at once, each on a thread of its own with its
 * own PostgreSQL connection and progress tracker.
 *
 * The daemon's main thread keeps everything else: it takes a connector
 * from the queue, hands it to a free worker (ids_workers_start), renews
 * its lease, and when the worker's eventfd (ids_workers_fd) says a run
 * ended, joins it (ids_workers_reap) and records its end.  A worker only
 * runs ids_sync_connector; what it shares with the other runs (the change
 * feeds, the token cache) locks (sync.h, oauth.h).  The main thread is the
 * only caller of every function here. */
#ifndef IDS_WORKERS_H
#define IDS_WORKERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/config.h"
#include "ids/sync.h"

struct ids_workers;

/* A pool of n (>= 1) workers, no thread running yet.  feeds and tokens
 * (either may be NULL: full reads, a token per run) and cancel (set: the
 * runs end cancelled at their next progress hook) are borrowed for the
 * pool's life.  *ret new (ids_workers_free).  -ENOMEM, or -errno of the
 * eventfd. */
int ids_workers_new(size_t n, struct ids_feeds *feeds, struct ids_oauth_tokens *tokens,
		    const atomic_bool *cancel, struct ids_workers **ret);
/* Joins what still runs (its result is dropped: reap first), closes the
 * connections.  Accepts NULL. */
void ids_workers_free(struct ids_workers *p);

/* Runs cc of cfg on a free worker; tag names the run for ids_workers_reap
 * and the others.  cfg and cc are borrowed until the run is reaped.  0
 * when started, -EBUSY when every worker is busy, -errno when no thread
 * could be started (the caller runs it itself). */
int ids_workers_start(struct ids_workers *p, const struct ids_config *cfg, const struct ids_connector_cfg *cc,
		      void *tag);
/* Workers that run now (started, not reaped). */
size_t ids_workers_busy(const struct ids_workers *p);
/* True when a worker is free. */
bool ids_workers_free_slot(const struct ids_workers *p);
/* Readable when a run ended: for the main loop's poll. */
int ids_workers_fd(const struct ids_workers *p);
/* Joins one ended run: its tag, and its result into *ret_res (new: free
 * ret_res->error); NULL when none has ended. */
void *ids_workers_reap(struct ids_workers *p, struct ids_sync_result *ret_res);
/* The STATUS= text of tag's run when its tracker has a new one, else
 * NULL.  new. */
char *ids_workers_status(struct ids_workers *p, const void *tag);
/* The tag of a running worker whose run has not called its progress hook
 * for limit_usec or more (a wedged run: the watchdog must stop), its
 * silence in *ret_usec; NULL when every run makes progress. */
void *ids_workers_stalled(const struct ids_workers *p, int64_t limit_usec, int64_t *ret_usec);

#endif
