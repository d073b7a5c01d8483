/* sync.h — one sync cycle of one connector, top to bottom:
 * lock -> pull -> finish snapshot -> rules -> load current -> diff ->
 * safety -> apply -> report.  Used by the `sync`, `plan` and `retire`
 * commands and by the daemon's scheduler. */
#ifndef IDS_SYNC_H
#define IDS_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "ids/config.h"
#include "ids/plan.h"
#include "ids/progress.h"
#include "ids/store.h"
#include "ids/util.h"

/* Exit codes of service.md. */
enum {
	IDS_EXIT_OK = 0,
	IDS_EXIT_FAILED = 1,
	IDS_EXIT_USAGE = 2,
	IDS_EXIT_SAFETY = 3,
	IDS_EXIT_LOCKED = 4,
	IDS_EXIT_CONFIG = 78,
};

/* The worse of two exit codes: 78 > 1 > 3 > 4 > 0. */
int ids_exit_worst(int a, int b);

enum ids_out_format { IDS_FMT_TEXT, IDS_FMT_JSON };

struct ids_oauth_tokens;

struct ids_sync_opts {
	bool dry_run;	 /* plan: compute and print, write nothing */
	bool allow_mass; /* --allow-mass-deactivation */
	bool full;	 /* --full: read everything even where a change feed exists */
	bool print_plan; /* append the whole plan (text/json) to out, else the summary */
	enum ids_out_format format;
	/* approve: apply only when the plan is the one this run held (same
	 * digest, the thresholds then waived); else hold the new plan */
	int64_t approve_run;
	/* borrowed, NULL for all: `sync --user` — the username, e-mail or
	 * external id of the one person this run plans and applies for
	 * (LDAP connectors only: the caller refuses the others).  Such a run
	 * deprovisions no one, reads no change feed and leaves the feed's
	 * state, held plans and the seat book alone (README, Decisions). */
	const char *only_user;
	/* Called between pages and batches (watchdog); < 0 cancels the run. */
	int (*progress)(void *ud);
	void *ud;
	/* borrowed, may be NULL: told the run's phases (progress.h) */
	struct ids_progress *prog;
	/* borrowed, may be NULL: the change feeds' state kept between runs
	 * (the daemon's); NULL: every run reads everything */
	struct ids_feeds *feeds;
	/* borrowed, may be NULL: access tokens kept between runs (the
	 * daemon's, oauth.h); NULL: a token per run */
	struct ids_oauth_tokens *tokens;
};

/* What one connector run did. */
struct ids_sync_result {
	int exit_code;	    /* IDS_EXIT_* for this connector */
	const char *status; /* static: ok, failed, aborted_threshold, ... */
	struct ids_plan_counts counts;
	int64_t run_id; /* sync_run id, 0 when none was written */
	/* where the time went, in seconds (issue: users must see it) */
	struct {
		double fetch, resolve, rules, load, diff, apply;
	} t;
	long peak_rss_kib; /* of the process so far */
	long rows_written; /* rows the apply inserted, updated or deleted (sync_run's included) */
	char *error; /* new: error text for failed runs; for aborted ones "held: <what>; <why>"; else NULL */
	int error_code; /* IDS_E_* / -errno behind a failure, 0 when none */
	/* a threshold held the plan: the run id `idsyncd approve` takes (this
	 * run's, or an earlier one's that held the same plan); else 0 */
	int64_t held_run;
	/* static: why the run's change feed fell back to reading everything
	 * (refresh_required, cookie_refused, config_changed, cursor_invalid,
	 * other), for the metrics; NULL when it did not */
	const char *feed_reset;
};

/* Runs connector cc once against the store.  Appends the summary line (or
 * the whole plan) to out.  Never fails as a whole: every outcome is in
 * *res (free res->error), in a sync_run row (unless o->dry_run, or the
 * database is gone), and in one logged outcome line with the MESSAGE_ID=
 * of its outcome; every line of the run carries RUN_ID= (none for a plan). */
void ids_sync_connector(const struct ids_config *cfg, struct ids_store *st,
			const struct ids_connector_cfg *cc, const struct ids_sync_opts *o,
			struct ids_buf *out, struct ids_sync_result *res);

/* What a process keeps between the runs of its connectors for their
 * change feeds (issue 14): per connector, the image its feed is applied
 * to and the cursor that goes with it, committed or rolled back with each
 * run.  A connector whose source cannot serve a feed (no syncprov, a size
 * limit on the refresh) reads everything from then on, with one warning.
 * *ret new (ids_feeds_free, which accepts NULL). */
struct ids_feeds;
int ids_feeds_new(struct ids_feeds **ret);
void ids_feeds_free(struct ids_feeds *f);
/* Whether the feeds keep each connector's finished snapshot between runs
 * and patch it with the next incremental run's changes (default: yes, as
 * the daemon does).  A one-shot command, which makes one run, turns it
 * off: keeping costs memory and time at the finish. */
void ids_feeds_keep_snapshots(struct ids_feeds *f, bool keep);

/* `retire NAME`: deactivates (out_of_scope) the users of a connector no
 * longer in the configuration, through the safety thresholds: one run (and
 * sync_run row) per company that has such users, reported as a sync's. */
void ids_sync_retire(const struct ids_config *cfg, struct ids_store *st, const char *name,
		     const struct ids_sync_opts *o, struct ids_buf *out, struct ids_sync_result *res);

/* The licences of cc's company (config `licences:`) applied to d, with
 * the seat book the store holds for cc (daemon/licences.c); *next (empty
 * on entry) gets the book the run's apply saves with its changes.
 * run_id 0: a plan.  Nothing to do (0) when the company has no licence.
 * partial: s holds only `sync --user`'s person; the others keep their seats. */
struct ids_seat_book;
int ids_sync_licences(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		      int64_t company_id, int64_t run_id, const struct ids_snapshot *s,
		      struct ids_desired_set *d, const struct ids_current *cur, bool partial,
		      struct ids_seat_book *next, struct ids_error *e);

/* Whether cc's company holds a licence (licences:): then a seat's place in
 * line depends on everyone the rules entitle, not on one person. */
bool ids_sync_licensed(const struct ids_config *cfg, const struct ids_connector_cfg *cc);

/* The seat book the store holds for cc in company_id (b empty on entry),
 * when cc's company has a licence: 1, else 0 (b left empty). */
int ids_sync_seat_book(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		       int64_t company_id, struct ids_seat_book *b, struct ids_error *e);

/* used / limit / waiting of every licence of the configuration, in its
 * order, as the database has them (`status`, the metrics).  *ret new
 * (free(); cfg->platform.nlic entries, none on a database never migrated). */
int ids_sync_licence_status(const struct ids_config *cfg, struct ids_store *st,
			    struct ids_licence_status **ret, struct ids_error *e);

/* Sets the licence gauges of m (metrics.h) from the database, after a
 * run.  m unchanged on error (the store's). */
struct ids_metrics;
int ids_sync_licence_metrics(const struct ids_config *cfg, struct ids_store *st, struct ids_metrics *m,
			     struct ids_error *e);

#endif
