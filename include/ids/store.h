/* store.h — PostgreSQL: migrations, the per-connector advisory lock,
 * loading the current managed state, and applying a plan in one
 * transaction together with its audit rows and its sync_run row.
 *
 * Every statement is set-based (no query per user) and every value goes
 * through parameters or COPY; the schema name is the only identifier
 * interpolated, quoted with PQescapeIdentifier.  A lost connection
 * (SQLSTATE class 08 or a dead socket) is IDS_E_DB_LOST. */
#ifndef IDS_STORE_H
#define IDS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/error.h"
#include "ids/plan.h"

/* Only ids_store_open reads the configuration (its database section):
 * declared, not included, so that the store does not link the config
 * loader and its libyaml. */
struct ids_config;
struct ids_store;
struct ids_seat_book; /* catalog.h */

/* Connects with cfg->database (conninfo, password, schema) and sets the
 * search path to the schema.  Writes nothing (the schema is created by
 * ids_store_migrate).  *ret new.
 *
 * Before connecting, the conninfo as libpq resolves it (with PGHOST,
 * service files, ...) is checked: a server reached over the network — a
 * host name other than localhost, or an address that is not loopback —
 * needs sslmode=verify-full, else IDS_E_CONFIG naming database.conninfo
 * (unless cfg->security.allow_unverified_database; then see
 * ids_store_warning).  A client key (sslkey) readable by group or others
 * is IDS_E_CONFIG too.  A refused server certificate is IDS_E_TLS. */
int ids_store_open(const struct ids_config *cfg, struct ids_store **ret, struct ids_error *err);
void ids_store_close(struct ids_store *st); /* accepts NULL */

/* The warning the caller must log at every start when the connection is
 * not verified by the override, NULL when none.  Borrowed (until close). */
const char *ids_store_warning(const struct ids_store *st);

/* The schema's version: the highest recorded migration, 0 when the
 * schema or its schema_migrations table does not exist.  Reads only. */
int ids_store_version(struct ids_store *st, int *ret, struct ids_error *err);

/* For plan (a dry run) on a database whose schema was never created:
 * from now on ids_store_company finds no company and ids_store_load
 * returns the empty state, so that the plan shows what the first sync
 * would create, and nothing — not even the schema — is written.  A
 * write (ids_store_company with create) is then IDS_E_SCHEMA. */
void ids_store_assume_empty(struct ids_store *st);

/* The highest migration this binary knows. */
int ids_store_binary_version(void);
/* Brings the schema up to date, creating it when missing (apply), or
 * checks it is (!apply: a missing or old schema is IDS_E_SCHEMA and
 * nothing is written).  A database newer than the binary is always
 * IDS_E_SCHEMA.  Each migration in its own transaction.  ret_from/ret_to
 * (may be NULL) get the versions before and after. */
int ids_store_migrate(struct ids_store *st, bool apply, int *ret_from, int *ret_to, struct ids_error *err);

/* Session advisory lock for the connector (key: 64-bit hash of
 * "idsyncd:" + name).  Non-blocking: IDS_E_LOCKED when another session
 * holds it.  Held until ids_store_unlock or the connection ends. */
int ids_store_lock(struct ids_store *st, const char *connector, struct ids_error *err);
int ids_store_unlock(struct ids_store *st, const char *connector, struct ids_error *err);

/* Id of the company with `slug`.  When missing: created (name = slug) if
 * `create`, else *ret_id = 0 (a plan writes nothing, not even this). */
int ids_store_company(struct ids_store *st, const char *slug, bool create, int64_t *ret_id,
		      struct ids_error *err);

/* The current state the diff needs: every user of the company, every grant
 * row of the users that `connector` owns, the company's tenant slugs.
 * *ret new (ids_current_free). */
int ids_store_load(struct ids_store *st, int64_t company_id, const char *connector, struct ids_current **ret,
		   struct ids_error *err);

/* `sync --user`: the part of that state a plan of the persons named can
 * touch — the company's users whose external id is in ext, or whose
 * username or e-mail (case-insensitive) is in names or emails, their
 * grant rows, the tenant slugs — and in (*ret)->managed_others the
 * connector's grant rows on its other active users (the grant-removal
 * threshold's base counts them).  The plan of those persons with
 * diff's only_user is the one the whole state gives.  *ret new. */
int ids_store_load_some(struct ids_store *st, int64_t company_id, const char *connector,
			const struct ids_strv *ext, const struct ids_strv *names,
			const struct ids_strv *emails, struct ids_current **ret, struct ids_error *err);

/* The same read in a thread of its own, so that it overlaps the
 * connector's directory read: start it, pull, then finish it.  Until
 * finish or abandon returns, nothing else may use st.  *ret is new. */
struct ids_store_loader;
int ids_store_load_start(struct ids_store *st, int64_t company_id, const char *connector,
			 struct ids_store_loader **ret);
/* Waits for the load: its result as ids_store_load gives it, and in
 * *ret_seconds (may be NULL) how long the load itself took.  Frees l. */
int ids_store_load_finish(struct ids_store_loader *l, struct ids_current **ret, double *ret_seconds,
			  struct ids_error *err);
/* Waits for a load whose result is not wanted (the pull failed) and
 * frees it.  Accepts NULL. */
void ids_store_load_abandon(struct ids_store_loader *l);

/* A sync_run row. */
struct ids_run {
	const char *connector;
	int64_t started_at; /* unix microseconds */
	const char *status; /* ok | failed | aborted_threshold | aborted_empty | dry_run | skipped_locked */
	const struct ids_plan_counts *counts; /* NULL: counts stay NULL */
	const char *error;		      /* NULL when none; never a secret */
	int64_t id;			      /* from ids_store_run_reserve; 0: the next of the sequence */
	const char
	    *read_kind; /* "full" | "incremental" | "user" (sync --user); NULL: no directory read (retire) */
	/* ids_store_apply only: written to connector_feed in the apply's
	 * transaction; NULL leaves the feed's row alone */
	const struct ids_feed_commit *feed;
	/* ids_store_apply only: the licence seat book that replaces the
	 * connector's rows in the company, in the apply's transaction (a
	 * run that fails or is held leaves the book as it was); NULL leaves
	 * the book alone (sync --user), an empty book clears it */
	const struct ids_seat_book *seats;
};

/* Takes the next sync_run id for a run that starts now, so that every log
 * line of the run carries it (RUN_ID=) long before its row is written (with
 * ids_run.id = *ret_id).  Writes no row: nextval() only.  An id whose row
 * never comes (the database went away) is a gap, as after any rollback. */
int ids_store_run_reserve(struct ids_store *st, int64_t *ret_id, struct ids_error *err);

/* In ONE transaction: create missing tenants/operator groups, apply every
 * user and grant change of p (users keyed by (connector, external_id)),
 * write one audit row per change, and insert the sync_run row `run`.
 * Commits, or rolls everything back and returns < 0.  ret_run_id may be
 * NULL. */
int ids_store_apply(struct ids_store *st, int64_t company_id, const char *idp, const struct ids_plan *p,
		    const struct ids_run *run, int64_t *ret_run_id, struct ids_error *err);

/* Rows the last committed ids_store_apply() wrote: inserted, updated and
 * deleted, the sync_run row included (pg_stat_user_tables would count
 * the same). */
long ids_store_rows_written(const struct ids_store *st);

/* Inserts a lone sync_run row (failed, aborted_*, dry_run, skipped_locked),
 * plus, when p is given, its conflict/skip_invalid audit rows. */
int ids_store_record_run(struct ids_store *st, const struct ids_run *run, int64_t *ret_run_id,
			 struct ids_error *err);

/* Last sync_run row per connector. */
struct ids_run_row {
	int64_t id;
	char *connector, *status, *error; /* error NULL when none */
	int64_t started_at, finished_at;  /* unix microseconds; finished 0 = NULL */
	struct ids_plan_counts counts;
	bool has_counts;
};
int ids_store_last_runs(struct ids_store *st, struct ids_run_row **ret, size_t *ret_n, struct ids_error *err);
void ids_run_rows_free(struct ids_run_row *rows, size_t n);

/* The queue (connector_schedule), for `status`: when a connector runs
 * next and which instance ("host:pid") set that time, which daemon runs
 * it now, and by how much it is overdue. */
struct ids_schedule_row {
	char *connector, *instance;
	char *running_on;	     /* the live lease's owner, NULL when nobody runs it */
	int64_t next_at, updated_at; /* unix microseconds */
	int64_t overdue;	     /* seconds past next_at, 0 when not due yet */
};
/* Every row, by connector.  *ret new (ids_schedule_rows_free). */
int ids_store_schedule_get(struct ids_store *st, struct ids_schedule_row **ret, size_t *ret_n,
			   struct ids_error *err);
void ids_schedule_rows_free(struct ids_schedule_row *rows, size_t n); /* accepts NULL */

/* The schedule as a queue shared by daemons (issue 19, store/queue.c).
 * `instance`: the calling daemon's "host:pid".  Times are the
 * database's.
 *
 * offer: rows for the connectors of `mine` new to the queue, due now
 * (existing rows keep their time).  take: leases `connector` for
 * lease_sec when it is due (or as `how` says) and no other daemon holds
 * a live lease on it: 1 when taken (ret->backoff: the last release's), 0 when
 * not (ret->owner: who holds it, "" when nobody; ret->wait_usec: until it
 * is due or that lease runs out); clear *ret with ids_claim_clear.  renew:
 * extends our lease; IDS_E_LOCKED when it is no longer ours.  release:
 * ends our lease, due again in next_in_usec, with the retry backoff
 * (seconds, 0 after a success). */
enum ids_take {
	IDS_TAKE_DUE,	/* only when the queue's time has come */
	IDS_TAKE_START, /* also before, unless a live daemon ran it last (a start, a new connector) */
	IDS_TAKE_NOW,	/* also before, whoever ran it last (SIGUSR1, a push, a reload) */
};
struct ids_claim {
	int backoff;	   /* seconds */
	char *owner;	   /* new; the live lease's holder when not taken, else the old one's or "" */
	int64_t wait_usec; /* not taken: until the row is worth another look */
};
int ids_store_queue_offer(struct ids_store *st, const struct ids_strv *mine, const char *instance,
			  struct ids_error *err);
int ids_store_queue_take(struct ids_store *st, const char *connector, const char *instance, int lease_sec,
			 enum ids_take how, struct ids_claim *ret, struct ids_error *err);
void ids_claim_clear(struct ids_claim *c);
int ids_store_queue_renew(struct ids_store *st, const char *connector, const char *instance, int lease_sec,
			  struct ids_error *err);
int ids_store_queue_release(struct ids_store *st, const char *connector, const char *instance,
			    int64_t next_in_usec, int backoff, struct ids_error *err);

/* Sources that own users but are not in `configured`: name and count of
 * active users (orphaned connectors, semantics.md). */
struct ids_orphan {
	char *source;
	long active, total;
};
int ids_store_orphans(struct ids_store *st, const struct ids_strv *configured, struct ids_orphan **ret,
		      size_t *ret_n, struct ids_error *err);
void ids_orphans_free(struct ids_orphan *o, size_t n);

/* The seat book of licences (licence_entitlement, catalog.h) of one
 * connector in one company: its rows, and per role of `roles` the active
 * users holding it who are not the connector's.  Empty for company 0 or a
 * database assumed empty.  Rows are added to *b. */
struct ids_seat_book;
int ids_store_seats_load(struct ids_store *st, int64_t company_id, const char *connector,
			 const struct ids_strv *roles, struct ids_seat_book *b, struct ids_error *err);
/* For status: active users of company (slug) holding role, and users
 * waiting for a seat of it. */
int ids_store_licence_usage(struct ids_store *st, const char *company, const char *role, long *ret_used,
			    long *ret_waiting, struct ids_error *err);

/* Companies in which `source` owns users (for retire). */
int ids_store_source_companies(struct ids_store *st, const char *source, int64_t **ret, size_t *ret_n,
			       struct ids_error *err);

/* Held plans (held_plan, migration 004): the plan of a run that a safety
 * threshold stopped, for `idsyncd approve`. */
struct ids_held {
	int64_t run_id; /* the run that held it */
	char *connector, *digest, *reason;
	char *plan;			/* the canonical text plan; NULL unless read by ids_store_held_get */
	int64_t created_at, expires_at; /* unix microseconds */
	int64_t approved_run;		/* the run that applied it, 0: none */
	int64_t superseded_by;		/* the run that held another plan since, 0: none */
	bool expired;			/* by the database's clock */
};
/* Holds h (run_id, connector, digest, reason, plan) for
 * expiry_seconds.  When a pending plan of the same connector has the same
 * digest, that one stays and nothing is written; else h is inserted and
 * every other pending plan of the connector is superseded by it.
 * *ret_run: the run id of the plan that is now pending. */
int ids_store_held_put(struct ids_store *st, const struct ids_held *h, int expiry_seconds, int64_t *ret_run,
		       struct ids_error *err);
/* The held plan of run_id, with its text.  *ret new (ids_held_rows_free(*ret,
 * 1)); NULL when that run held no plan. */
int ids_store_held_get(struct ids_store *st, int64_t run_id, struct ids_held **ret, struct ids_error *err);
/* The pending plans (not approved, superseded or expired), without their
 * text, by connector.  *ret new. */
int ids_store_held_pending(struct ids_store *st, struct ids_held **ret, size_t *ret_n, struct ids_error *err);
void ids_held_rows_free(struct ids_held *v, size_t n); /* accepts NULL */
/* Marks run_id's plan approved by run by_run; IDS_E_INVALID when it was
 * not pending any more (approved or superseded meanwhile). */
int ids_store_held_approve(struct ids_store *st, int64_t run_id, int64_t by_run, struct ids_error *err);

/* A run of connector applied its plan (by_run): every pending held plan
 * of the connector is superseded by it — approving one now would only
 * hold a new plan, and `status` must not offer it. */
int ids_store_held_settle(struct ids_store *st, const char *connector, int64_t by_run, struct ids_error *err);

/* The daemon's heartbeat (daemon_heartbeat): one row per instance
 * ("host:pid"), `running` the connector it syncs now or NULL. */
int ids_store_heartbeat(struct ids_store *st, const char *instance, const char *running,
			struct ids_error *err);
/* A clean stop: the instance's row goes. */
int ids_store_heartbeat_end(struct ids_store *st, const char *instance, struct ids_error *err);
struct ids_heartbeat {
	char *instance, *running; /* running NULL when idle */
	int64_t at;		  /* unix microseconds */
	int64_t age_seconds;	  /* by the database's clock */
};
/* Every instance's row, the latest first.  *ret new (ids_heartbeats_free). */
int ids_store_heartbeats(struct ids_store *st, struct ids_heartbeat **ret, size_t *ret_n,
			 struct ids_error *err);
void ids_heartbeats_free(struct ids_heartbeat *v, size_t n); /* accepts NULL */

/* Seconds since the connector's last run with status ok finished (by the
 * database's clock), -1 when it never had one. */
int ids_store_last_ok(struct ids_store *st, const char *connector, int64_t *ret_age, struct ids_error *err);

/* ---- change feeds (issue 14) ---- */

struct ids_image; /* ids/image.h */

/* Where a connector's change feed stands (connector_feed). */
struct ids_feed_state {
	unsigned char *cursor; /* NULL when there is none */
	size_t cursor_len;
	char *cursor_server, *cursor_invocation_id;	/* DirSync's issuer; NULL otherwise */
	int64_t cursor_at, last_full_at, last_reset_at; /* unix microseconds; 0: never */
	long resets;					/* fallbacks from the feed to a full read */
	char *last_reset_reason;			/* NULL when none */
	char *fingerprint;     /* what the cursor and image were made with (ids_feed_commit); NULL: none */
	int64_t image_records; /* records of the image stored with the cursor; -1: none stored */
	/* what the state committed with the cursor was planned with (besides the
	 * directory): ids_feed_commit's; NULL: none (the next run plans everything) */
	char *plan_fingerprint;
	long last_users_seen; /* users_seen of the connector's last ok full or incremental run; 0: none */
};

/* The feed state of `connector` into *ret (all zero when it has none
 * yet); its pointers are new (ids_feed_state_clear).  Reads only.  A
 * schema older than migration 7 is IDS_E_DB (no table). */
int ids_store_feed_get(struct ids_store *st, const char *connector, struct ids_feed_state *ret,
		       struct ids_error *err);
/* Frees what *f holds and zeroes it; accepts an all-zero one. */
void ids_feed_state_clear(struct ids_feed_state *f);

/* Forgets the change feed of `connector`: its cursor row and its image,
 * together (retire: a connector added again later under the same name
 * starts with a full read, not from a cursor of another life). */
int ids_store_feed_drop(struct ids_store *st, const char *connector, struct ids_error *err);

/* What a committed run writes to connector_feed (ids_run.feed), all
 * borrowed.  The cursor always becomes the one given: the stored cursor
 * belongs to the state the run committed, and a full read without a
 * feed clears a cursor that no longer does. */
struct ids_feed_commit {
	bool full;		     /* a full read: last_full_at = the run's start */
	const unsigned char *cursor; /* NULL: none */
	size_t cursor_len;
	const char *cursor_server, *cursor_invocation_id; /* both or neither */
	const char *reset_reason; /* the run fell back from its feed: resets + 1; NULL: it did not */
	/* the connector settings the cursor and image were made with (an
	 * opaque string the caller compares, migration 9); NULL: none */
	const char *fingerprint;
	size_t image_records; /* the image's records after the run (with image) */
	/* the plan's inputs besides the directory (configuration, version), an
	 * opaque string the caller compares (migration 11); stored with the
	 * cursor only.  NULL: none */
	const char *plan_fingerprint;
	/* the image the cursor belongs to (connector_image): its records
	 * changed since its last commit are written (ids_image_each), or all
	 * of them after every stored one is deleted (image_whole: the image
	 * did not start from the stored one).  NULL: the stored image is
	 * deleted (without a cursor it describes nothing). */
	const struct ids_image *image;
	bool image_whole;
};

/* LISTEN/NOTIFY (store/listen.c), on a connection opened for it alone.
 * ids_store_listen: LISTEN channel (quoted as an identifier).
 * ids_store_socket: the connection's socket to poll, -1 for NULL.
 * ids_store_notify_next: reads what arrived without blocking; 1 with
 * *ret (new) the next payload, 0 when none is waiting, IDS_E_DB_LOST when
 * the server went away (a NOTIFY sent meanwhile is lost: reconnect and
 * LISTEN again). */
int ids_store_listen(struct ids_store *st, const char *channel, struct ids_error *err);
int ids_store_socket(const struct ids_store *st);
int ids_store_notify_next(struct ids_store *st, char **ret, struct ids_error *err);

/* The active users whose source is connector, and the grant rows
 * (roles, channels, slot limits, operator group memberships) it manages:
 * the metrics' gauges (store/managed.c).  Reads only. */
int ids_store_managed_counts(struct ids_store *st, const char *connector, long *ret_users, long *ret_grants,
			     struct ids_error *err);
/* In one read-only snapshot: the feed state of `connector` (as
 * ids_store_feed_get) and, when it has a cursor whose fingerprint equals
 * `fingerprint`, its stored image into img (empty on entry; records are
 * added with ids_image_load), then *ret_loaded = true when the image has
 * the records the cursor was stored with.  Otherwise *ret_loaded is
 * false and img is to be thrown away.  On error img may hold some records:
 * the caller throws it away.  A store without a schema (plan before the
 * first migration) reads nothing. */
int ids_store_feed_load(struct ids_store *st, const char *connector, const char *fingerprint,
			struct ids_feed_state *ret, struct ids_image *img, bool *ret_loaded,
			struct ids_error *err);

/* ---- persistent feeds (issue 14 persist, issue 19 placement; store/persist.c) ---- */

/* What a daemon says of a connector's doorbell (persist_feed.state). */
enum ids_persist_state {
	IDS_PERSIST_CONNECTING,	  /* taken, the search is being opened */
	IDS_PERSIST_UP,		  /* the persistent search is open */
	IDS_PERSIST_RECONNECTING, /* it dropped or could not open: retried with backoff */
	IDS_PERSIST_WAITING,	  /* for a cursor (a committed run), or nobody holds it */
};
const char *ids_persist_state_name(enum ids_persist_state s); /* static text */

/* One hold, all borrowed. */
struct ids_persist_hold {
	const char *connector, *instance; /* instance: host:pid */
	int lease_sec;			  /* sync.lease */
	int feeds;			  /* persist connectors in this daemon's configuration */
	enum ids_persist_state state;
	const char *error; /* why reconnecting or waiting; NULL when up */
	bool new_outage;   /* this hold starts an outage: reconnects + 1 */
};

/* What the daemon holds after a hold: its feeds (this one included when
 * taken) and its share, ⌈feeds / daemons that beat within a lease⌉;
 * holder: who held the row before (new; "" when nobody). */
struct ids_persist_share {
	int held, share;
	char *holder;
};
void ids_persist_share_clear(struct ids_persist_share *s);

/* Takes or renews h's connector for h->instance (the lease runs to
 * now() + lease_sec, state and error are written) and beats the
 * instance's heartbeat: 1 ours; 0 another daemon holds a live lease on
 * it, or it is not ours and this daemon already holds its share; < 0 on
 * a database error.  *ret is filled either way (ids_persist_share_clear). */
int ids_store_persist_hold(struct ids_store *st, const struct ids_persist_hold *h,
			   struct ids_persist_share *ret, struct ids_error *err);
/* Gives the connector's doorbell up (only when instance holds it): state
 * waiting, `why` (borrowed, may be NULL) as its error. */
int ids_store_persist_release(struct ids_store *st, const char *connector, const char *instance,
			      const char *why, struct ids_error *err);

/* persist_feed's row of a connector, for `status`. */
struct ids_persist_row {
	char *holder; /* "" when nobody */
	bool live;    /* the holder's lease has not run out */
	enum ids_persist_state state;
	int64_t since; /* unix microseconds */
	char *error;   /* NULL when none */
	int64_t reconnects;
};
/* 1 with *ret (new: ids_persist_row_clear), 0 when the connector has no
 * row (no daemon held it yet). */
int ids_store_persist_get(struct ids_store *st, const char *connector, struct ids_persist_row *ret,
			  struct ids_error *err);
void ids_persist_row_clear(struct ids_persist_row *row);

#endif
