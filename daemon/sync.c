/* sync.c — one connector run, reading top to bottom like the data flow of
 * spec/README.md: lock, pull, finish, rules, load current, diff, safety,
 * apply, report.
 *
 * A run is one struct run, and every way it can end — ok, failed, aborted
 * by a safety guard, skipped because another instance holds the lock, a
 * plan — goes through run_end(), which alone sets the result and the exit
 * code, writes the sync_run row, logs the outcome line (with its
 * MESSAGE_ID=) and prints the summary.  Written once, the five places
 * cannot disagree about what happened. */
#include "ids/sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ids/catalog.h"
#include "ids/dn.h"
#include "ids/connector.h"
#include "ids/explain.h"
#include "ids/hold.h"
#include "ids/image.h"
#include "ids/log.h"
#include "ids/output.h"
#include "ids/rules.h"
#include "ids/snapshot.h"

#define USEC 1000000LL

/* Per-user lines (changes, conflicts, skips) logged for one run at most.
 * journald's default rate limit is 10000 entries per 30 s per service: an
 * initial sync of 50000 users would make it drop lines, the run's own
 * outcome among them.  Past the cap one line says how many were left out;
 * the audit_log rows of the run have every change. */
#define USER_LINES_MAX 1000

int ids_exit_worst(int a, int b)
{
	/* rank per service.md: 78 > 1 > 3 > 4 > 0 */
	static const int order[] = {IDS_EXIT_CONFIG, IDS_EXIT_FAILED, IDS_EXIT_SAFETY,
				    IDS_EXIT_LOCKED, IDS_EXIT_USAGE,  IDS_EXIT_OK};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (a == order[i] || b == order[i])
			return order[i];
	return a;
}

/* Seconds since *mark, and moves the mark to now: one call per phase. */
static double lap(int64_t *mark)
{
	int64_t now = ids_mono_usec();
	double d = (double)(now - *mark) / 1e6;
	*mark = now;
	return d;
}

static long peak_rss_kib(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

/* One run: of a connector (sync, plan), or of one company of a retire. */
struct run {
	const struct ids_config *cfg;
	struct ids_store *st;
	const char *conn;
	const struct ids_sync_opts *o;
	struct ids_buf *out;
	struct ids_sync_result *res;
	int64_t started;    /* unix usec: sync_run.started_at */
	int64_t deadline;   /* ids_mono_usec() at which run_timeout stops the run; 0: none */
	int64_t id;	    /* sync_run id, reserved when the run starts; 0: none yet (a plan: never) */
	int64_t mark;	    /* ids_mono_usec() at the end of the last phase (res->t) */
	int64_t company_id; /* where the plan is applied */
	const char *idp;    /* "ldap" | "entra" | "google"; NULL for a retire */
	const struct ids_seat_book *seats;  /* licences: saved by the apply, in its transaction; NULL: none */
	long user_lines;		    /* per-user lines so far (USER_LINES_MAX) */
	const char *read_kind;		    /* sync_run.read_kind: "full" | "incremental"; NULL: retire */
	const struct ids_feed_commit *feed; /* committed with the apply; NULL: retire */
	struct feed_state *use;		    /* the change feed this run may read (feed_prepare), else NULL */
	const char *reset_why;		    /* static: why the stored feed state was discarded, or NULL */
	struct feed_state *fs;		    /* the change feed this run read, else NULL */
	struct ids_feed_commit fc;	    /* its commit: the new cursor (owned), the reset */
	char *plan_fpr;			    /* new: what this run plans with besides the directory */
	bool same_plan;			    /* plan_fpr is the one the feed's state was committed with */
	long users_seen;	   /* users_seen of the last ok run: a run with nothing to plan repeats it */
	bool nothing;		   /* the feed changed nothing and same_plan: nothing to plan */
	bool stale;		   /* the deferred image read in was not the run's cursor's */
	struct ids_error lazy_err; /* why the deferred image could not be read in */
	struct ids_snapshot **snapp; /* the run's snapshot (&work.snap): kept by the feed when it commits */
};

/* How a run ended: everything run_end() reports. */
struct end {
	int exit_code;		     /* IDS_EXIT_* */
	const char *status;	     /* sync_run.status: ok, failed, aborted_*, dry_run, skipped_locked */
	const char *error;	     /* borrowed; NULL when none */
	int error_code;		     /* IDS_E_* / -errno behind a failure, else 0 */
	const char *what;	     /* the failed step when the error does not say ("database"), or NULL */
	const struct ids_plan *plan; /* NULL when the run got no plan */
	bool recorded;		     /* the apply wrote the row, with the changes */
};

/* ---- change feeds between runs (sync.h) ---- */

struct feed_state {
	char *connector;
	struct ids_image *img;
	unsigned char *cursor; /* what img was last committed with; NULL: none yet */
	size_t cursor_len;
	bool off;	   /* the source cannot serve the feed: full reads from now on */
	int64_t full_at;   /* unix usec of the start of the last committed full read, 0: none */
	char *fingerprint; /* the settings img and cursor were made with */
	bool loaded;	   /* (img, cursor) is what connector_feed/_image held at the last look */
	bool whole;	   /* img did not start from the stored image: its commit rewrites it all */
	size_t records;	   /* img deferred (ids_image_defer): the records stored with the cursor */
	/* the snapshot img replays to as at its last commit, finished and
	 * kept (ids_snapshot_kept): the next incremental run patches it
	 * (ids_snapshot_patch) instead of replaying img whole; NULL: none */
	struct ids_snapshot *snap;
};

/* The daemon's workers (sync.workers) look their connectors up at once:
 * mu guards the list, of pointers so that growing it moves no state a run
 * holds.  A state itself is one connector's, and a daemon runs each
 * connector on one worker at a time: its run needs no lock. */
struct ids_feeds {
	pthread_mutex_t mu;
	struct feed_state **v;
	size_t n, cap;
	bool keep_snapshots; /* ids_feeds_keep_snapshots */
};

int ids_feeds_new(struct ids_feeds **ret)
{
	struct ids_feeds *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->mu, NULL);
	f->keep_snapshots = true;
	*ret = f;
	return 0;
}

void ids_feeds_keep_snapshots(struct ids_feeds *f, bool keep)
{
	if (f)
		f->keep_snapshots = keep;
}

void ids_feeds_free(struct ids_feeds *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		free(f->v[i]->connector);
		ids_image_free(f->v[i]->img);
		ids_snapshot_free(f->v[i]->snap);
		free(f->v[i]->cursor);
		free(f->v[i]->fingerprint);
		free(f->v[i]);
	}
	free(f->v);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

static struct feed_state *feed_add(struct ids_feeds *f, const char *name)
{
	struct feed_state *fs = NULL;
	if (ids_grow(&f->v, &f->cap, f->n + 1, sizeof(*f->v)) < 0 || !(fs = calloc(1, sizeof(*fs))))
		return NULL;
	if (!(fs->connector = strdup(name)) || ids_image_new(&fs->img) < 0) {
		free(fs->connector);
		free(fs);
		return NULL;
	}
	f->v[f->n++] = fs;
	return fs;
}

/* The state of connector name, made empty the first time; NULL on ENOMEM
 * (the run then reads everything). */
static struct feed_state *feed_of(struct ids_feeds *f, const char *name)
{
	struct feed_state *fs = NULL;
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n && !fs; i++)
		if (!strcmp(f->v[i]->connector, name))
			fs = f->v[i];
	if (!fs)
		fs = feed_add(f, name);
	pthread_mutex_unlock(&f->mu);
	return fs;
}

/* Every line of a run carries its CONNECTOR= and, once the id is known,
 * RUN_ID=: `journalctl RUN_ID=42` finds a failed run as well as an ok one. */
static void run_log(const struct run *rn, enum ids_log_level level, const char *user, const char *msgid,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void run_log(const struct run *rn, enum ids_log_level level, const char *user, const char *msgid,
		    const char *fmt, ...)
{
	const struct ids_log_fields f = {
	    .connector = rn->conn, .run_id = rn->id, .user = user, .message_id = msgid};
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	ids_log_event(level, &f, "%s", msg ? msg : "(out of memory)");
	free(msg);
}

/* False once the run has logged USER_LINES_MAX per-user lines. */
static bool user_line(struct run *rn)
{
	return rn->user_lines++ < USER_LINES_MAX;
}

/* "run 42" once the id is known, "plan" for a plan (it never has one). */
static void run_name(const struct run *rn, char *buf, size_t n)
{
	if (rn->o->dry_run)
		snprintf(buf, n, "plan");
	else if (rn->id)
		snprintf(buf, n, "run %lld", (long long)rn->id);
	else
		snprintf(buf, n, "run");
}

/* The sync_run row of a run that the apply did not write.  A lost
 * database cannot take it; failing to write it is logged, not a second
 * failure of the run. */
static void record_end(struct run *rn, const struct end *x)
{
	if (x->recorded) {
		rn->res->run_id = rn->id;
		return;
	}
	if (x->error_code == IDS_E_DB_LOST)
		return;
	/* an aborted run keeps its counts: what the guard held back */
	const struct ids_run row = {
	    .connector = rn->conn,
	    .started_at = rn->started,
	    .status = x->status,
	    .counts = x->plan && x->exit_code == IDS_EXIT_SAFETY ? &x->plan->counts : NULL,
	    .error = x->error,
	    .id = rn->id,
	    .read_kind = rn->read_kind,
	};
	struct ids_error e = {0};
	if (ids_store_record_run(rn->st, &row, &rn->res->run_id, &e) < 0)
		run_log(rn, IDS_LOG_ERROR, NULL, NULL, "cannot record the %s run: %s", x->status,
			ids_error_text(&e));
	else
		rn->id = rn->res->run_id;
	ids_error_clear(&e);
}

/* The outcome line, one per run, with the MESSAGE_ID= of its outcome
 * (systemd/idsyncd.catalog).  A plan's lines have none: it is not a run. */
static void log_end(struct run *rn, const struct end *x)
{
	const struct ids_sync_result *res = rn->res;
	const struct ids_plan_counts *c = &res->counts;
	bool plan = rn->o->dry_run;
	char name[40];
	run_name(rn, name, sizeof(name));
	if (rn->user_lines > USER_LINES_MAX)
		run_log(rn, IDS_LOG_INFO, NULL, NULL,
			"%ld more per-user lines not logged (at most %d a run; audit_log has every change)",
			rn->user_lines - USER_LINES_MAX, USER_LINES_MAX);
	if (x->exit_code == IDS_EXIT_OK && plan)
		return; /* the plan itself is the answer */
	if (x->exit_code == IDS_EXIT_OK)
		run_log(
		    rn, IDS_LOG_INFO, NULL, IDS_MSGID_RUN_OK,
		    "%s ok: %ld users, +%ld ~%ld -%ld, %ld grants added, %ld removed, %ld conflicts, %ld "
		    "skipped, %ld rows written (fetch %.2fs, resolve %.2fs, rules %.2fs, load %.2fs during "
		    "fetch, diff %.2fs, apply %.2fs; peak RSS %ld MiB)",
		    name, c->users_seen, c->created, c->updated + c->reactivated, c->deactivated,
		    c->grants_added, c->grants_removed, c->conflicts, c->skipped_invalid, res->rows_written,
		    res->t.fetch, res->t.resolve, res->t.rules, res->t.load, res->t.diff, res->t.apply,
		    res->peak_rss_kib / 1024);
	else if (x->exit_code == IDS_EXIT_SAFETY)
		run_log(rn, IDS_LOG_ERROR, NULL, plan ? NULL : IDS_MSGID_RUN_ABORTED,
			"%s aborted, nothing written: %s", name, x->error ? x->error : "");
	else if (x->exit_code == IDS_EXIT_LOCKED)
		run_log(rn, IDS_LOG_WARNING, NULL, IDS_MSGID_RUN_SKIPPED,
			"%s skipped: another instance is syncing this connector", name);
	else
		run_log(rn, IDS_LOG_ERROR, NULL, plan ? NULL : IDS_MSGID_RUN_FAILED,
			"%s failed, nothing written: %s%s%s", name, x->what ? x->what : "",
			x->what ? ": " : "", x->error ? x->error : "");
}

/* What the command prints: the plan when asked for it (plan, retire,
 * --format json), else one summary line; a failure or a skip is always a
 * summary line of its own (JSON callers build their object from res). */
static void print_end(struct run *rn, const struct end *x)
{
	const struct ids_sync_opts *o = rn->o;
	bool json = o->format == IDS_FMT_JSON;
	bool has_plan = x->plan && x->exit_code != IDS_EXIT_FAILED && x->exit_code != IDS_EXIT_CONFIG;
	if (has_plan && (o->print_plan || json)) {
		if (json)
			ids_output_plan_json(x->plan, rn->out);
		else
			ids_plan_format_text(x->plan, rn->out);
		return;
	}
	if (json)
		return;
	ids_buf_printf(rn->out, "summary %s: ", rn->conn);
	if (x->exit_code == IDS_EXIT_LOCKED) {
		ids_buf_puts(rn->out, "skipped, locked by another instance\n");
	} else if (has_plan && x->exit_code == IDS_EXIT_SAFETY) {
		/* the counts are what was held back: never alone, where they
		 * would read as done */
		ids_buf_printf(rn->out, "aborted, nothing written; held: %s; planned: ",
			       x->plan->held ? x->plan->held : "?");
		ids_plan_format_counts(&x->plan->counts, rn->out);
		ids_buf_printf(rn->out, "\naborted: %s\n", x->plan->verdict_why ? x->plan->verdict_why : "");
	} else if (has_plan) {
		ids_plan_format_counts(&x->plan->counts, rn->out);
		ids_buf_putc(rn->out, '\n');
	} else {
		ids_buf_printf(rn->out, "failed: %s%s%s\n", x->what ? x->what : "", x->what ? ": " : "",
			       x->error ? x->error : "");
	}
}

/* The one way a run ends: result, sync_run row (not for a plan), outcome
 * line, printed summary — in that order, so that the line names the row. */
static void run_end(struct run *rn, const struct end *x)
{
	struct ids_sync_result *res = rn->res;
	res->exit_code = x->exit_code;
	res->status = x->status;
	res->error_code = x->error_code;
	free(res->error);
	res->error = x->error ? strdup(x->error) : NULL;
	if (x->plan)
		res->counts = x->plan->counts;
	if (!rn->o->dry_run)
		record_end(rn, x);
	log_end(rn, x);
	print_end(rn, x);
}

static void end_db_failed(struct run *rn, const struct ids_error *e)
{
	run_end(rn, &(struct end){.exit_code = IDS_EXIT_FAILED,
				  .status = "failed",
				  .error = ids_error_text(e),
				  .error_code = e->code,
				  .what = "database"});
}

/* A read that failed: its error names the place (server, page, file). */
static void end_pull_failed(struct run *rn, const struct ids_error *e)
{
	/* a credential file that is there but malformed is found only now:
	 * still a configuration error (exit 78), not a transient failure */
	run_end(rn, &(struct end){.exit_code = e->code == IDS_E_CONFIG ? IDS_EXIT_CONFIG : IDS_EXIT_FAILED,
				  .status = "failed",
				  .error = ids_error_text(e),
				  .error_code = e->code});
}

/* Starts a run: a clean result, the start time, the deadline, and (not
 * for a plan, which writes nothing, not even a sequence) the run id that
 * every later line carries. */
static int run_begin(struct run *rn, struct ids_error *e)
{
	memset(rn->res, 0, sizeof(*rn->res));
	rn->started = ids_real_usec();
	rn->mark = ids_mono_usec();
	int timeout = rn->cfg->sync.run_timeout;
	rn->deadline = timeout > 0 ? rn->mark + (int64_t)timeout * USEC : 0;
	if (rn->o->dry_run)
		return 0;
	return ids_store_run_reserve(rn->st, &rn->id, e);
}

/* Logs the per-user events the plan found: conflicts and skips at warning
 * (for a plan too: the operator must fix them in the directory). */
static void log_plan_events(struct run *rn, const struct ids_plan *p, const struct ids_desired_set *d)
{
	for (size_t i = 0; d && i < d->warnings.n; i++)
		run_log(rn, IDS_LOG_WARNING, NULL, NULL, "%s", d->warnings.v[i]);
	for (size_t i = 0; i < p->missing_tenants.n; i++)
		run_log(rn, IDS_LOG_WARNING, NULL, NULL,
			"tenant %s does not exist and tenants.auto_create is off: its grants are skipped",
			p->missing_tenants.v[i]);
	for (size_t i = 0; i < p->nusers; i++) {
		const struct ids_plan_user *u = &p->users[i];
		const char *name = u->username ? u->username : u->external_id;
		bool conflict = u->flags & IDS_PU_CONFLICT, invalid = u->flags & IDS_PU_SKIP_INVALID;
		if ((!conflict && !invalid) || !user_line(rn))
			continue;
		if (conflict)
			run_log(rn, IDS_LOG_WARNING, name, NULL, "user %s skipped, conflict: %s", name,
				u->reason ? u->reason : "");
		else
			run_log(rn, IDS_LOG_WARNING, name, NULL, "user %s (id %s) skipped, invalid data: %s",
				u->username ? u->username : "?", u->external_id ? u->external_id : "?",
				u->reason ? u->reason : "");
	}
}

/* "created", "reactivated, updated (email, last_name)", ...: what the
 * committed plan did to u, or NULL when only its grants changed.  Field
 * names only: the values are in audit_log, not in the journal. */
static int describe_change(const struct ids_plan_user *u, struct ids_buf *b)
{
	static const struct {
		unsigned flag;
		const char *word;
	} verbs[] = {{IDS_PU_CREATE, "created"},
		     {IDS_PU_ADOPT, "adopted (same e-mail)"},
		     {IDS_PU_REACTIVATE, "reactivated"},
		     {IDS_PU_DEACTIVATE, "deactivated"},
		     {IDS_PU_REASON, "deactivation reason changed"},
		     {IDS_PU_UPDATE, "updated"}};
	static const char *const fields[] = {"username",     "email",	      "first_name", "last_name",
					     "display_name", "company_admin", "auth"};
	int r = 0;
	for (size_t i = 0; r >= 0 && i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (u->flags & verbs[i].flag)
			r = ids_buf_printf(b, "%s%s", b->len ? ", " : "", verbs[i].word);
	if (r >= 0 && (u->flags & (IDS_PU_DEACTIVATE | IDS_PU_REASON)) && u->reason)
		r = ids_buf_printf(b, ": %s", u->reason);
	for (size_t i = 0, n = 0; r >= 0 && i < sizeof(fields) / sizeof(fields[0]); i++)
		if (u->changed & (1u << i))
			r = ids_buf_printf(b, "%s%s", n++ ? ", " : " (", fields[i]);
	if (r >= 0 && (u->changed & ((1u << (sizeof(fields) / sizeof(fields[0]))) - 1)))
		r = ids_buf_putc(b, ')');
	return r;
}

/* One info line per user the committed run changed, with IDSYNC_USER=:
 * `journalctl IDSYNC_USER=jnovak` tells when jnovak was created or
 * deactivated and by which run. */
static void log_user_changes(struct run *rn, const struct ids_plan *p)
{
	const unsigned changes = IDS_PU_CREATE | IDS_PU_ADOPT | IDS_PU_UPDATE | IDS_PU_DEACTIVATE |
				 IDS_PU_REACTIVATE | IDS_PU_REASON;
	struct ids_buf b = {0};
	for (size_t i = 0; i < p->nusers; i++) {
		const struct ids_plan_user *u = &p->users[i];
		const char *name = u->username ? u->username : u->external_id;
		if (!(u->flags & changes) || !user_line(rn))
			continue;
		ids_buf_reset(&b);
		if (describe_change(u, &b) >= 0 && b.p)
			run_log(rn, IDS_LOG_INFO, name, NULL, "user %s %s", name, b.p);
	}
	ids_buf_free(&b);
}

/* A threshold stopped a sync: its plan is kept (held_plan) for `idsyncd
 * approve`, after its sync_run row (which the held plan references).  A
 * retire is not held: approve plans again through a sync.  Failing to
 * hold is logged; the run stays aborted either way. */
static void hold_plan(struct run *rn, const struct ids_plan *plan)
{
	struct ids_buf text = {0};
	struct ids_error e = {0};
	struct ids_held h = {.run_id = rn->id, .connector = (char *)rn->conn, .reason = plan->held};
	char digest[IDS_HOLD_DIGEST_LEN];
	int64_t held = 0;
	int r = ids_hold_digest(plan, &text, digest);
	h.digest = digest;
	h.plan = text.p ? text.p : "";
	if (!h.reason)
		h.reason = "the plan differs from the held one";
	if (r < 0)
		ids_error_set(&e, r, "%s", ids_strerror(r));
	else
		r = ids_store_held_put(rn->st, &h, rn->cfg->safety.hold_expiry, &held, &e);
	if (r < 0) {
		run_log(rn, IDS_LOG_ERROR, NULL, NULL, "cannot hold the plan for approval: %s",
			ids_error_text(&e));
	} else {
		rn->res->held_run = held;
		run_log(rn, IDS_LOG_INFO, NULL, NULL,
			"plan held as run %lld: `idsyncd approve %lld` applies it", (long long)held,
			(long long)held);
		if (rn->o->format != IDS_FMT_JSON) /* JSON: the run object's held_run */
			ids_buf_printf(
			    rn->out,
			    "held: run %lld (%s): review with `idsyncd approve %lld --dry-run`, apply with "
			    "`idsyncd approve %lld`\n",
			    (long long)held, h.reason, (long long)held, (long long)held);
	}
	ids_error_clear(&e);
	ids_buf_free(&text);
}

/* approve: whether plan is the plan that run o->approve_run held (read
 * again here, under the connector's lock: an approve that ran meanwhile
 * is seen).  When it is not, the difference goes to out. */
static int approve_compare(struct run *rn, const struct ids_plan *plan, bool *ret_same, struct ids_error *e)
{
	struct ids_held *h = NULL;
	struct ids_buf text = {0};
	char digest[IDS_HOLD_DIGEST_LEN];
	long long id = (long long)rn->o->approve_run;
	int r = ids_store_held_get(rn->st, rn->o->approve_run, &h, e);
	if (r >= 0 && (r = ids_hold_digest(plan, &text, digest)) < 0)
		ids_error_set(e, r, "%s", ids_strerror(r));
	if (r < 0)
		goto out;
	*ret_same = h && !h->approved_run && !h->superseded_by && strcmp(h->digest, digest) == 0;
	if (*ret_same) {
		run_log(rn, IDS_LOG_INFO, NULL, NULL, "approve: the plan is the one run %lld held", id);
	} else if (h && !h->approved_run && !h->superseded_by) {
		ids_buf_printf(rn->out,
			       "the plan changed since run %lld held it:\n--- held by run %lld\n+++ now\n",
			       id, id);
		long n = ids_hold_diff(h->plan ? h->plan : "", text.p ? text.p : "", rn->out);
		run_log(rn, IDS_LOG_WARNING, NULL, NULL,
			"approve refused: the plan differs from the one run %lld held (%ld lines)", id, n);
	} else {
		ids_buf_printf(rn->out, "run %lld's plan is no longer pending (approved or superseded)\n",
			       id);
	}
out:
	ids_held_rows_free(h, h ? 1 : 0);
	ids_buf_free(&text);
	return r;
}

/* approve, the plan differs: held like a threshold's, whatever the
 * thresholds say of the new plan — approve applies only what was
 * reviewed. */
static void approve_refuse(struct run *rn, struct ids_plan *plan)
{
	char *why = NULL;
	plan->verdict = IDS_VERDICT_THRESHOLD;
	if (!plan->held && asprintf(&plan->held, "the plan differs from the one run %lld held",
				    (long long)rn->o->approve_run) < 0)
		plan->held = NULL;
	if (asprintf(&why, "the plan differs from the one run %lld held; review the difference",
		     (long long)rn->o->approve_run) >= 0) {
		free(plan->verdict_why);
		plan->verdict_why = why;
	}
}

/* approve, after the commit: the held plan is marked as applied by this
 * run, so that it cannot be approved twice.  The run is done either way;
 * a plan left pending would differ now anyway. */
static void approve_mark(struct run *rn)
{
	struct ids_error e = {0};
	if (ids_store_held_approve(rn->st, rn->o->approve_run, rn->id, &e) < 0)
		run_log(rn, IDS_LOG_WARNING, NULL, NULL, "cannot mark the held plan approved: %s",
			ids_error_text(&e));
	else
		ids_buf_printf(rn->out, "approved: run %lld applied the plan held by run %lld\n",
			       (long long)rn->id, (long long)rn->o->approve_run);
	ids_error_clear(&e);
}

/* An applied sync: held plans of the connector are out of date (the
 * directory was fixed, or --allow-mass-deactivation applied it). */
static void settle_held(struct run *rn)
{
	struct ids_error e = {0};
	if (ids_store_held_settle(rn->st, rn->conn, rn->id, &e) < 0)
		run_log(rn, IDS_LOG_WARNING, NULL, NULL, "cannot settle the held plans: %s",
			ids_error_text(&e));
	ids_error_clear(&e);
}

/* The safety thresholds, or for approve the held plan: the same plan is
 * applied whatever the thresholds say (a person reviewed it), any other
 * is held.  < 0 only when the held plan cannot be read. */
static int check_plan(struct run *rn, struct ids_plan *plan, size_t snapshot_users, bool allow_empty,
		      struct ids_error *e)
{
	const struct ids_config *cfg = rn->cfg;
	const struct ids_safety lim = {
	    .max_deactivations = cfg->safety.max_deactivations,
	    .max_deactivation_percent = cfg->safety.max_deactivation_percent,
	    .max_grant_removals_percent = cfg->safety.max_grant_removals_percent,
	};
	bool same = false;
	if (rn->o->approve_run && approve_compare(rn, plan, &same, e) < 0)
		return -1;
	ids_safety_check(plan, snapshot_users, &lim, allow_empty, rn->o->allow_mass || same);
	/* an empty read stays aborted_empty, never held (README, Decisions) */
	if (rn->o->approve_run && !same && plan->verdict != IDS_VERDICT_EMPTY)
		approve_refuse(rn, plan);
	return 0;
}

/* Applies a plan the thresholds (or approve) let through, in one
 * transaction with the run's row, its feed's cursor and its seat book,
 * and ends the run. */
static void apply_plan(struct run *rn, const struct ids_plan *plan)
{
	struct ids_sync_result *res = rn->res;
	struct ids_error e = {0};
	const struct ids_run row = {.connector = rn->conn,
				    .started_at = rn->started,
				    .status = "ok",
				    .counts = &plan->counts,
				    .id = rn->id,
				    .read_kind = rn->read_kind,
				    .feed = rn->feed,
				    .seats = rn->seats};
	ids_progress_phase(rn->o->prog, IDS_PHASE_APPLYING);
	int r = ids_store_apply(rn->st, rn->company_id, rn->idp, plan, &row, &rn->id, &e);
	res->t.apply = lap(&rn->mark);
	res->peak_rss_kib = peak_rss_kib();
	if (r < 0) {
		run_end(rn, &(struct end){.exit_code = IDS_EXIT_FAILED,
					  .status = "failed",
					  .error = ids_error_text(&e),
					  .error_code = e.code,
					  .what = "apply",
					  .plan = plan});
	} else {
		res->rows_written = ids_store_rows_written(rn->st);
		if (plan->bases_fix_users || plan->bases_fix_grants)
			run_log(
			    rn, IDS_LOG_DEBUG, NULL, NULL,
			    "thresholds' bases: the counter (managed_count) was off by %+ld active users and "
			    "%+ld grant rows (rows written with triggers disabled?); corrected from the full "
			    "state",
			    plan->bases_fix_users, plan->bases_fix_grants);
		log_user_changes(rn, plan);
		run_end(rn, &(struct end){
				.exit_code = IDS_EXIT_OK, .status = "ok", .plan = plan, .recorded = true});
		if (rn->o->approve_run)
			approve_mark(rn);
		else if (rn->idp && !rn->o->only_user) /* a held plan is a full run's */
			settle_held(rn);
	}
	ids_error_clear(&e);
}

/* The feed changed nothing in the image and the plan's inputs are those
 * of the last committed run: the platform holds this plan already (but
 * for hand edits of its tables, which full_every and --full repair:
 * docs/changes.md).  No replay, no rules, no state loaded, no diff: an
 * empty plan, applied as any (the run's row and the new cursor in one
 * transaction; the seat book stays, as no grant moves), or printed by a
 * plan.  users_seen repeats the last run's: the directory is the same. */
static void end_no_change(struct run *rn)
{
	struct ids_plan *plan = calloc(1, sizeof(*plan));
	if (!plan) {
		run_end(rn, &(struct end){.exit_code = IDS_EXIT_FAILED,
					  .status = "failed",
					  .error = ids_strerror(-ENOMEM),
					  .error_code = -ENOMEM});
		return;
	}
	plan->connector = rn->conn;
	plan->idp = rn->idp;
	plan->verdict = IDS_VERDICT_OK;
	plan->counts.users_seen = rn->users_seen;
	rn->seats = NULL;
	if (rn->o->dry_run)
		run_end(rn, &(struct end){.exit_code = IDS_EXIT_OK, .status = "dry_run", .plan = plan});
	else
		apply_plan(rn, plan);
	ids_plan_free(plan);
}

/* Diff, safety, apply, and the end of the run: the part shared by sync
 * and retire.  Takes the finished snapshot and the current state. */
static void plan_and_apply(struct run *rn, const struct ids_snapshot *snap, const struct ids_desired_set *des,
			   const struct ids_current *cur, const struct ids_diff_opts *dopt, bool allow_empty)
{
	struct ids_sync_result *res = rn->res;
	struct ids_plan *plan = NULL;
	struct ids_error e = {0};
	ids_progress_phase(rn->o->prog, IDS_PHASE_DIFF);
	int r = ids_diff_compute(snap, des, cur, dopt, &plan);
	res->t.diff = lap(&rn->mark);
	if (r < 0) {
		run_end(rn, &(struct end){.exit_code = IDS_EXIT_FAILED,
					  .status = "failed",
					  .error = ids_strerror(r),
					  .error_code = r,
					  .what = "diff"});
		return;
	}
	if (check_plan(rn, plan, snap->nusers, allow_empty, &e) < 0) {
		end_db_failed(rn, &e);
		goto out;
	}
	log_plan_events(rn, plan, des);

	if (plan->verdict != IDS_VERDICT_OK) {
		/* the error (sync_run.error, STATUS=, the log) starts with what
		 * was held back, then why and the way out */
		char *why = NULL;
		if (asprintf(&why, "held: %s; %s", plan->held ? plan->held : "?",
			     plan->verdict_why ? plan->verdict_why : "") < 0)
			why = NULL;
		run_end(rn, &(struct end){.exit_code = IDS_EXIT_SAFETY,
					  .status = plan->verdict == IDS_VERDICT_EMPTY ? "aborted_empty"
										       : "aborted_threshold",
					  .error = why ? why : plan->verdict_why,
					  .plan = plan});
		free(why);
		if (plan->verdict == IDS_VERDICT_THRESHOLD && !rn->o->dry_run && rn->idp && rn->res->run_id)
			hold_plan(rn, plan);
	} else if (rn->o->dry_run) {
		run_end(rn, &(struct end){.exit_code = IDS_EXIT_OK, .status = "dry_run", .plan = plan});
	} else {
		apply_plan(rn, plan);
	}
out:
	ids_error_clear(&e);
	ids_plan_free(plan);
}

/* Called by connectors between pages: enforces run_timeout and passes the
 * tick on to the daemon's watchdog. */
static int progress(void *ud)
{
	const struct run *rn = ud;
	if (rn->deadline && ids_mono_usec() > rn->deadline)
		return IDS_E_TIMEOUT;
	return rn->o->progress ? rn->o->progress(rn->o->ud) : 0;
}

/* The pull's debug lines (connector.h), with the run's fields. */
static void pull_debug(void *ud, const char *line)
{
	run_log(ud, IDS_LOG_DEBUG, NULL, NULL, "%s", line);
}

/* The progress hook between the phases after the pull (resolve, rules,
 * load): keeps the watchdog fed and lets SIGTERM / run_timeout stop the
 * run before anything is written. */
static int step(struct run *rn, struct ids_error *e)
{
	int r = progress(rn);
	if (r < 0)
		return ids_error_set(e, r, "%s",
				     r == IDS_E_TIMEOUT ? "stopped: run_timeout reached"
							: "stopped: the run was cancelled");
	return 0;
}

/* What a sync reads before the diff; freed by work_free. */
struct work {
	struct ids_strv attrs;
	struct ids_snapshot *snap;
	struct ids_snapshot *spare; /* the pull's empty snapshot when snap is the feed's kept one */
	struct ids_desired_set *des;
	struct ids_current *cur;
	struct ids_store_loader *loader;
	struct ids_seat_book seats; /* licences: the book to save */
	/* an incremental re-plan (replan_some): the external ids of the users
	 * a change can reach (keys, owned) and their set (borrows them) */
	bool some;
	struct ids_strv keys;
	struct ids_strmap only;
	bool *want; /* the same, parallel to snap->users: whose rules to evaluate */
};

static void work_free(struct work *w)
{
	ids_store_load_abandon(w->loader); /* waits for it: the store is ours again */
	ids_strv_free(&w->attrs);
	ids_strmap_free(&w->only);
	ids_strv_free(&w->keys);
	free(w->want);
	ids_seat_book_clear(&w->seats);
	ids_current_free(w->cur);
	ids_desired_set_free(w->des);
	ids_snapshot_free(w->snap);
	ids_snapshot_free(w->spare);
}

/* The feed this run may read, or NULL for a full read: only in a process
 * that keeps feeds (the daemon, sync and plan), not for --full, mode full, a source
 * without one, or one found unable to serve it. */
static struct feed_state *use_feed(struct run *rn, const struct ids_connector_cfg *cc,
				   const struct ids_connector_ops *ops)
{
	if (!rn->o->feeds || rn->o->full || rn->o->only_user || cc->changes.mode != IDS_CHANGES_AUTO ||
	    !ops->pull_changes ||
	    (cc->type == IDS_CONN_LDAP && cc->ldap.flavor != IDS_LDAP_OPENLDAP &&
	     cc->ldap.flavor != IDS_LDAP_AD))
		return NULL;
	struct feed_state *fs = feed_of(rn->o->feeds, cc->name);
	return fs && !fs->off ? fs : NULL;
}

/* A short, fixed name for a feed reset's reason (a metric label: the
 * text itself names servers and bases, too many values for a series). */
static const char *reset_class(const char *why)
{
	static const struct {
		const char *in, *class;
	} k[] = {
	    {"e-syncRefreshRequired", "refresh_required"},
	    {"refused", "cookie_refused"},
	    {"changed since the stored cursor", "config_changed"},
	    {"cursor", "cursor_invalid"},
	};
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
		if (strstr(why, k[i].in))
			return k[i].class;
	return "other";
}

/* What the records of cc's feed depend on: its type, attribute map,
 * bases, filters and the attributes the rules read.  A stored image made
 * with other settings holds other records: it is discarded (not
 * corrected record by record: the full read that follows rewrites it).
 * New (free), NULL on ENOMEM. */
static char *fingerprint(const struct ids_connector_cfg *cc, const struct ids_strv *rule_attrs)
{
	const struct ids_ldap_cfg *l = &cc->ldap;
	const char *parts[] = {ids_conn_type_name(cc->type),
			       l->users_base,
			       l->users_filter,
			       l->groups_base,
			       l->groups_filter,
			       l->member_attribute,
			       l->disabled_filter,
			       cc->google.customer,
			       cc->google.domain};
	struct ids_buf b = {0};
	char *ret = NULL;
	int r = ids_buf_printf(&b, "%d\x1f", (int)l->flavor);
	for (size_t i = 0; r >= 0 && i < sizeof(parts) / sizeof(*parts); i++)
		r = ids_buf_printf(&b, "%s\x1f", parts[i] ? parts[i] : "");
	for (size_t i = 0; r >= 0 && i < 6; i++)
		r = ids_buf_printf(&b, "%s\x1f", cc->attr[i] ? cc->attr[i] : "");
	for (size_t i = 0; r >= 0 && i < cc->entra.groups.n; i++)
		r = ids_buf_printf(&b, "%s\x1e", cc->entra.groups.v[i]);
	for (size_t i = 0; r >= 0 && i < cc->google.groups.n; i++)
		r = ids_buf_printf(&b, "%s\x1d", cc->google.groups.v[i]);
	for (size_t i = 0; r >= 0 && rule_attrs && i < rule_attrs->n; i++)
		r = ids_buf_printf(&b, "%s\x1c", rule_attrs->v[i]);
	if (r >= 0 && asprintf(&ret, "v1 %016llx", (unsigned long long)ids_hash64(b.p ? b.p : "", b.len)) < 0)
		ret = NULL;
	ids_buf_free(&b);
	return ret;
}

/* Forgets fs's image and cursor: false on ENOMEM (no image at all). */
static bool feed_forget(struct feed_state *fs)
{
	ids_image_free(fs->img);
	fs->img = NULL;
	ids_snapshot_free(fs->snap);
	fs->snap = NULL;
	free(fs->cursor);
	fs->cursor = NULL;
	fs->cursor_len = 0;
	fs->loaded = false;
	fs->whole = true;
	return ids_image_new(&fs->img) >= 0;
}

/* Whether fs holds what connector_feed says (stored): the same cursor,
 * made with the same settings.  Another instance (a `sync` by hand, a
 * `sync --full`, a second daemon) may have committed since. */
static bool feed_current(const struct feed_state *fs, const struct ids_feed_state *stored, const char *fpr)
{
	if (!fs->loaded || strcmp(fs->fingerprint ? fs->fingerprint : "", fpr))
		return false;
	if (!fs->cursor || !stored->cursor)
		return !fs->cursor && !stored->cursor;
	return fs->cursor_len == stored->cursor_len && !memcmp(fs->cursor, stored->cursor, fs->cursor_len) &&
	       stored->fingerprint && !strcmp(stored->fingerprint, fpr);
}

/* What a plan depends on besides the directory: the configuration
 * file's bytes (rules, catalog, licences, tenants, the connector's
 * options) and idsyncd's version.  The whole file, not the parts one
 * connector reads: coarser (an edit anywhere re-plans every connector
 * once, from its image, without reading the directory) but it cannot
 * miss an input a later change adds.  New (free), NULL on ENOMEM. */
static char *plan_fingerprint(const struct ids_config *cfg)
{
	char *ret = NULL;
	if (asprintf(&ret, "p1 %s %016llx", IDSYNCD_VERSION, (unsigned long long)cfg->digest) < 0)
		ret = NULL;
	return ret;
}

/* ids_image_defer's fn: the stored image of the run's feed, read in when
 * the feed's first change needs it.  It must be the image stored with the
 * cursor the run read from; when it is not (another instance committed
 * meanwhile — a plan holds no lock —, rows lost) the run is marked stale
 * and pull() reads everything again. */
static int feed_read_in(struct ids_image *img, void *ud)
{
	struct run *rn = ud;
	const struct feed_state *fs = rn->use;
	struct ids_feed_state stored = {0};
	bool loaded = false;
	int64_t t0 = ids_mono_usec();
	int r = ids_store_feed_load(rn->st, rn->conn, fs->fingerprint, &stored, img, &loaded, &rn->lazy_err);
	if (r >= 0 && (!loaded || !stored.cursor || stored.cursor_len != fs->cursor_len ||
		       memcmp(stored.cursor, fs->cursor, fs->cursor_len))) {
		rn->stale = true;
		r = ids_error_set(&rn->lazy_err, -ESTALE,
				  "change feed: the stored image is not the one of the cursor read from");
	}
	ids_feed_state_clear(&stored);
	if (r >= 0)
		run_log(rn, IDS_LOG_DEBUG, NULL, NULL,
			"change feed: %zu users, %zu groups read back in %.2f s (a change needs them)",
			ids_image_nusers(img), ids_image_ngroups(img), (ids_mono_usec() - t0) / 1e6);
	return r;
}

/* Why a stored state that feed_prepare could not use was discarded
 * (static), or NULL when there is no cursor to discard. */
static const char *reset_why(const struct ids_feed_state *stored, const char *fpr)
{
	if (!stored->cursor)
		return NULL;
	if (!stored->fingerprint)
		return "no stored image goes with the stored cursor";
	if (strcmp(stored->fingerprint, fpr))
		return "the connector's settings changed since the stored cursor "
		       "(bases, filters, attributes, or the attributes the rules read)";
	return "the stored image does not hold the records stored with its cursor";
}

/* Before the run's reads: the feed it may read (rn->use), its image and
 * cursor those in PostgreSQL.  The process's own are kept when they still
 * are the stored ones (one row read); otherwise (first run, another
 * instance committed, other settings) the stored cursor is taken and its
 * image deferred (ids_image_defer: read in only when a change needs it;
 * a run that finds no change never reads it), or, when it was made with
 * other settings or is missing, dropped with the reason (rn->reset_why)
 * and everything is read.  Also whether the plan's inputs are those the
 * stored state was planned with (rn->same_plan).  A failure to read the
 * stored state is the database's: the run fails before any read. */
static int feed_prepare(struct run *rn, const struct ids_connector_cfg *cc,
			const struct ids_connector_ops *ops, const struct ids_strv *rule_attrs,
			struct ids_error *e)
{
	struct feed_state *fs = use_feed(rn, cc, ops);
	struct ids_feed_state stored = {0};
	char *fpr = fs ? fingerprint(cc, rule_attrs) : NULL;
	int r = 0;
	rn->use = NULL;
	if (!fpr || !(rn->plan_fpr = plan_fingerprint(rn->cfg))) /* no feed, or ENOMEM: a full read */
		goto out;
	if ((r = ids_store_feed_get(rn->st, cc->name, &stored, e)) < 0)
		goto out;
	rn->same_plan = stored.plan_fingerprint && !strcmp(stored.plan_fingerprint, rn->plan_fpr);
	rn->users_seen = stored.last_users_seen;
	if (feed_current(fs, &stored, fpr))
		goto use;
	if (!feed_forget(fs)) {
		r = ids_error_set(e, -ENOMEM, "change feed: out of memory");
		goto out;
	}
	if (stored.cursor && stored.fingerprint && !strcmp(stored.fingerprint, fpr) &&
	    stored.image_records >= 0) {
		fs->cursor = stored.cursor;
		fs->cursor_len = stored.cursor_len;
		stored.cursor = NULL;
		fs->records = (size_t)stored.image_records;
		fs->whole = false;
		ids_image_defer(fs->img, NULL, NULL); /* armed below, for this run */
	} else {
		rn->reset_why = reset_why(&stored, fpr);
	}
	fs->full_at = stored.last_full_at;
	fs->loaded = true;
	free(fs->fingerprint);
	fs->fingerprint = fpr;
	fpr = NULL;
use:
	if (ids_image_deferred(fs->img))
		ids_image_defer(fs->img, feed_read_in, rn);
	rn->use = fs;
out:
	free(fpr);
	ids_feed_state_clear(&stored);
	return r;
}

/* Whether the feed read fp leaves nothing to plan: the image as the last
 * committed run left it (no record changed: a record sent again with the
 * same content is no change), and the plan's inputs the same — the
 * platform holds this plan already.  Not for approve, which compares a
 * plan. */
static bool nothing_to_plan(const struct run *rn, const struct ids_feed_pull *fp)
{
	return fp->cursor && !fp->reset_reason && !rn->reset_why && rn->same_plan &&
	       !ids_image_nchanged(rn->use->img) && !rn->o->approve_run;
}

/* The feed's read (ops->pull_changes), and the deferred image read in
 * when the run will plan.  When that image turns out not to be the
 * cursor's (feed_read_in), everything is read again through the feed, in
 * this run, into an empty image (a reset with its reason).  When it could
 * not be read at all, the run fails with the database's error, not the
 * connector's. */
static int read_changes(struct run *rn, const struct ids_connector_cfg *cc,
			const struct ids_connector_ops *ops, const struct ids_pull_ctx *ctx,
			struct ids_feed_pull *fp, struct ids_error *e)
{
	struct feed_state *fs = rn->use;
	int r = ops->pull_changes(cc, ctx, fp, e);
	bool pulled = r >= 0;
	if (pulled && !nothing_to_plan(rn, fp))
		r = ids_image_read_in(fs->img);
	if (r >= 0 || !rn->lazy_err.code)
		return r;
	ids_error_clear(e);
	if (!rn->stale) {
		fs->loaded = false; /* the next run reads the stored state again */
		r = ids_error_set(e, rn->lazy_err.code, "%s", ids_error_text(&rn->lazy_err));
	}
	if (pulled) /* its outputs: the connector frees them only on its own failure */
		ids_feed_pull_clear(fp);
	if (!rn->stale)
		return r;
	run_log(rn, IDS_LOG_DEBUG, NULL, NULL, "%s", ids_error_text(&rn->lazy_err));
	ids_error_clear(&rn->lazy_err);
	rn->stale = false;
	ids_image_rollback(fs->img);
	if (!feed_forget(fs))
		return ids_error_set(e, -ENOMEM, "change feed: out of memory");
	fs->loaded = true; /* the empty image, no cursor: what the commit will store */
	rn->reset_why = "the stored image does not hold the records stored with its cursor (rows "
			"lost, or another instance committed meanwhile)";
	*fp = (struct ids_feed_pull){.image = fs->img};
	return ops->pull_changes(cc, ctx, fp, e);
}

/* The directory read: through the change feed into its image, replayed
 * into the snapshot, or whole.  A feed the source cannot serve (no
 * syncprov; a size limit on the unpaged refresh) is turned off for good
 * with one warning, and this run reads everything instead. */
static int pull(struct run *rn, const struct ids_connector_cfg *cc, const struct ids_connector_ops *ops,
		const struct ids_pull_ctx *ctx, struct ids_snapshot *snap, struct ids_error *e)
{
	struct feed_state *fs = rn->use;
	if (!fs)
		return ops->pull(cc, ctx, snap, e);
	/* full_every: the feed reads everything again (without its cursor,
	 * the present sweep removes whatever the image still holds that the
	 * directory does not); the stored cursor stays until that commits */
	bool reconcile = fs->full_at && rn->started - fs->full_at >= (int64_t)cc->changes.full_every * USEC;
	struct ids_feed_pull fp = {.image = fs->img};
	if (!reconcile) {
		fp.cursor = fs->cursor;
		fp.cursor_len = fs->cursor_len;
	}
	rn->read_kind = fp.cursor ? "incremental" : "full";
	int r = read_changes(rn, cc, ops, ctx, &fp, e);
	/* LDAP's size limit on the unpaged refresh; Graph's IDS_E_LIMIT is
	 * throttling that outlasted the retries: the next run tries again */
	if (r == IDS_E_UNSUPPORTED || (r == IDS_E_LIMIT && cc->type == IDS_CONN_LDAP)) {
		ids_image_rollback(fs->img);
		fs->off = true;
		ids_snapshot_free(fs->snap);
		fs->snap = NULL;
		rn->read_kind = "full";
		run_log(rn, IDS_LOG_WARNING, NULL, NULL,
			"change feed unavailable, reading everything from now on: %s", ids_error_text(e));
		ids_error_clear(e);
		return ops->pull(cc, ctx, snap, e);
	}
	rn->fs = fs; /* from here the run's end commits or rolls back the image */
	if (r < 0)
		return r;
	if (!fp.reset_reason && rn->reset_why && !(fp.reset_reason = strdup(rn->reset_why)))
		return ids_error_set(e, -ENOMEM, "change feed: out of memory");
	if (fp.reset_reason) {
		rn->read_kind = "full";
		rn->res->feed_reset = reset_class(fp.reset_reason);
		run_log(rn, IDS_LOG_WARNING, NULL, NULL, "change feed reset, everything read again: %s",
			fp.reset_reason);
	}
	rn->fc = (struct ids_feed_commit){.full = !strcmp(rn->read_kind, "full"),
					  .cursor = fp.new_cursor,
					  .cursor_len = fp.new_cursor_len,
					  .cursor_server = fp.cursor_server,
					  .cursor_invocation_id = fp.cursor_invocation_id,
					  .reset_reason = fp.reset_reason,
					  .fingerprint = fs->fingerprint,
					  .image_records =
					      ids_image_deferred(fs->img)
						  ? fs->records
						  : ids_image_nusers(fs->img) + ids_image_ngroups(fs->img),
					  .image = fs->img,
					  .image_whole = fs->whole,
					  .plan_fingerprint = rn->plan_fpr};
	rn->feed = &rn->fc;
	rn->nothing = nothing_to_plan(rn, &fp);
	run_log(rn, IDS_LOG_DEBUG, NULL, NULL, "change feed: %zu changes%s", fp.changes,
		rn->nothing ? ", the image unchanged and the plan's inputs the same: nothing to plan" : "");
	return 0;
}

/* The feed's image into the snapshot, after pull() read the feed. */
static int feed_replay(struct run *rn, struct ids_snapshot *snap, struct ids_error *e)
{
	int64_t t0 = ids_mono_usec();
	int r = ids_image_replay(rn->fs->img, snap);
	if (r < 0)
		return ids_error_set(e, r, "change feed: %s", ids_strerror(r));
	run_log(rn, IDS_LOG_DEBUG, NULL, NULL, "change feed: image replayed in %.2f s",
		(ids_mono_usec() - t0) / 1e6);
	return 0;
}

/* The feed's snapshot for this run, into w->snap: the kept one patched
 * with what this run changed in the image (ids_snapshot_patch) — for an
 * incremental read with the plan inputs of the last committed run —,
 * finished then (*ret_finished); else the image replayed whole, made to
 * be kept when the feeds keep snapshots (the daemon).  The kept snapshot
 * is the run's from here: it goes back to the feed only when the run
 * commits (feed_end), so a run that fails, is held or cancelled leaves
 * none, and the next run replays whole. */
static int feed_snapshot(struct run *rn, struct work *w, bool *ret_finished, struct ids_error *e)
{
	struct feed_state *fs = rn->fs;
	struct ids_snapshot *kept = fs->snap;
	const char *why = "the plan's inputs changed, or a full read";
	fs->snap = NULL;
	rn->snapp = &w->snap;
	*ret_finished = false;
	if (kept && !rn->fc.full && rn->same_plan) {
		int64_t t0 = ids_mono_usec();
		int r = ids_snapshot_patch(kept, fs->img, &why);
		if (r >= 0) {
			w->spare = w->snap; /* the progress line reads it until the run ends */
			w->snap = kept;
			*ret_finished = true;
			run_log(rn, IDS_LOG_DEBUG, NULL, NULL,
				"change feed: the kept snapshot patched in %.3f s",
				(ids_mono_usec() - t0) / 1e6);
			return 0;
		}
		if (r != -EAGAIN)
			why = ids_strerror(r);
	}
	if (kept)
		run_log(rn, IDS_LOG_DEBUG, NULL, NULL, "change feed: the image replayed whole (%s)", why);
	ids_snapshot_free(kept);
	if (rn->o->feeds->keep_snapshots)
		(void)ids_snapshot_keep(w->snap);
	return feed_replay(rn, w->snap, e);
}

/* After the run: the image and its cursor become the feed's state when the
 * run committed, and the run's snapshot when it was made to be kept;
 * otherwise (failed, held, a plan) the image goes back to what the last
 * committed cursor describes, and no snapshot is kept. */
static void feed_end(struct run *rn, bool committed)
{
	struct feed_state *fs = rn->fs;
	if (fs && committed && rn->snapp && ids_snapshot_kept(*rn->snapp)) {
		ids_snapshot_free(fs->snap);
		fs->snap = *rn->snapp;
		*rn->snapp = NULL;
	}
	if (fs && committed) {
		ids_image_commit(fs->img);
		fs->whole = false;
		if (rn->fc.full)
			fs->full_at = rn->started;
		free(fs->cursor);
		fs->cursor = (unsigned char *)rn->fc.cursor;
		fs->cursor_len = rn->fc.cursor_len;
		rn->fc.cursor = NULL;
	} else if (fs) {
		ids_image_rollback(fs->img);
	}
	free((void *)rn->fc.cursor);
	free((void *)rn->fc.cursor_server);
	free((void *)rn->fc.cursor_invocation_id);
	free((void *)rn->fc.reset_reason);
	rn->fc = (struct ids_feed_commit){0};
	rn->fs = NULL;
	if (rn->use && ids_image_deferred(rn->use->img))
		ids_image_defer(rn->use->img, NULL, NULL); /* its fn's run ends here */
	if (rn->use && rn->lazy_err.code)
		rn->use->loaded = false; /* half read in: the next run reads it again */
	free(rn->plan_fpr);
	rn->plan_fpr = NULL;
	ids_error_clear(&rn->lazy_err);
}

/* `sync --user` loads only the rows its person's plan can touch
 * (ids_store_load_some), after the read that names them.  Not when the
 * company has licences: their seat counts (daemon/licences.c) need every
 * holder, so such a run loads the whole state, as a full run does. */
static bool load_some(const struct run *rn, const struct ids_connector_cfg *cc)
{
	return rn->o->only_user && !ids_sync_licensed(rn->cfg, cc);
}

/* The current state for a `sync --user` run that load_some() allows: the
 * rows of the snapshot's users (the targeted read's, a few at most). */
static int load_state_some(struct run *rn, struct work *w, struct ids_error *e)
{
	struct ids_strv v[3] = {{0}};
	static const enum ids_field by[3] = {IDS_F_EXTERNAL_ID, IDS_F_USERNAME, IDS_F_EMAIL};
	int r = 0;
	for (size_t i = 0; i < w->snap->nusers && r >= 0; i++) {
		const char *ext = w->snap->users[i].f[IDS_F_EXTERNAL_ID];
		if (w->some && (!ext || !ids_strmap_get(&w->only, ext, NULL)))
			continue;
		for (size_t k = w->some ? 1 : 0; k < 3 && r >= 0; k++)
			if (w->snap->users[i].f[by[k]])
				r = ids_strv_push(&v[k], w->snap->users[i].f[by[k]]);
	}
	/* a re-plan's every key: those of users gone too (their rows) */
	for (size_t i = 0; w->some && i < w->keys.n && r >= 0; i++)
		r = ids_strv_push(&v[0], w->keys.v[i]);
	int64_t t0 = ids_mono_usec();
	if (r < 0)
		r = ids_error_set(e, r, "%s", ids_strerror(r));
	else
		r = ids_store_load_some(rn->st, rn->company_id, rn->conn, &v[0], &v[1], &v[2], &w->cur, e);
	rn->res->t.load = (double)(ids_mono_usec() - t0) / 1e6;
	if (r >= 0)
		run_log(rn, IDS_LOG_DEBUG, NULL, NULL,
			"loaded %zu users, %zu grants: the rows the plan can touch (and %zu managed grants "
			"of the others counted)",
			w->cur->nusers, w->cur->ngrants, w->cur->managed_others);
	for (size_t k = 0; k < 3; k++)
		ids_strv_free(&v[k]);
	return r;
}

/* An incremental run plans only the users a change can reach: read
 * through the feed from the cursor, with the plan inputs of the last
 * committed run (else everyone's plan may change), for a company without
 * licences (their seat counts need every holder, as for `sync --user`),
 * not for approve (it compares a whole plan with the held one). */
static bool replan_some(const struct run *rn, const struct ids_connector_cfg *cc)
{
	return rn->fs && !rn->fc.full && rn->same_plan && !rn->o->approve_run && !rn->o->only_user &&
	       !ids_sync_licensed(rn->cfg, cc);
}

/* What the feed changed (ids_image_changed), as the re-plan looks it up. */
struct reach {
	struct work *w;
	struct ids_strmap gid, dn, id, name; /* changed groups; member refs of their records */
	struct ids_strv owned;		     /* the maps' keys */
};

/* Adds key to m (a copy kept in rc->owned); 0 or -ENOMEM. */
static int reach_put(struct reach *rc, struct ids_strmap *m, char *key)
{
	if (!key || ids_strv_push(&rc->owned, key) < 0) {
		free(key);
		return -ENOMEM;
	}
	free(key);
	int r = ids_strmap_put(m, rc->owned.v[rc->owned.n - 1], 0, NULL);
	return r < 0 ? r : 0;
}

/* ids_image_changed's fn: users changed go into the set at once (one
 * deleted or gone out of scope is loaded by its external id and
 * deactivated); the rest waits for the snapshot. */
static int reach_one(int what, enum ids_ref kind, const char *v, size_t n, void *ud)
{
	struct reach *rc = ud;
	char *dn = NULL;
	if (what == IDS_IMAGE_USERS) {
		char *k = strndup(v, n);
		int r = k ? ids_strv_push(&rc->w->keys, k) : -ENOMEM;
		free(k);
		return r < 0 ? r : 0;
	}
	if (what == IDS_IMAGE_GROUPS)
		return reach_put(rc, &rc->gid, strndup(v, n));
	if (kind == IDS_REF_DN) /* a malformed DN names nothing, as in the snapshot */
		return ids_dn_normalize(v, n, &dn) < 0 ? 0 : reach_put(rc, &rc->dn, dn);
	return reach_put(rc, kind == IDS_REF_ID ? &rc->id : &rc->name, strndup(v, n));
}

/* Whether user u of the snapshot is reached: named by a member reference
 * of a changed group's record (old or new), or in a group (directly or
 * nested) that changed or that such a reference names. */
static bool reached(const struct reach *rc, const struct ids_user *u, const bool *hit)
{
	const char *ext = u->f[IDS_F_EXTERNAL_ID], *dn = u->f[IDS_F_DN], *name = u->f[IDS_F_USERNAME];
	if ((ext && ids_strmap_get(&rc->id, ext, NULL)) || (dn && ids_strmap_get(&rc->dn, dn, NULL)) ||
	    (name && ids_strmap_get(&rc->name, name, NULL)))
		return true;
	for (size_t j = 0; j < u->ngroups; j++)
		if (hit[u->groups[j]])
			return true;
	return false;
}

/* The users whose desired state this run's changes can reach, into
 * w->keys and w->only (the snapshot finished, its groups still there):
 * the users changed, and for each changed group C the transitive members
 * (in the new snapshot) of every reference in C's old record or its new
 * one but not both, and all of C's own when its name, DN or e-mail
 * changed (ids_image_changed).  Sound: a user's desired state depends on
 * its record and the groups it is in, transitively, with their values; a
 * path from a changed edge down to the user goes on through edges that
 * are unchanged or changed themselves, and the undo log holds the old
 * record of everything this run changed.  An edge in both records of C
 * changes nothing by itself. */
static int reach_users(struct run *rn, struct work *w, struct ids_error *e)
{
	struct reach rc = {.w = w};
	const struct ids_snapshot *s = w->snap;
	bool *hit = calloc(s->ngroups ? s->ngroups : 1, sizeof(*hit));
	int r = hit ? ids_image_changed(rn->fs->img, reach_one, &rc) : -ENOMEM;
	for (size_t g = 0; r >= 0 && g < s->ngroups; g++) {
		const struct ids_group *gr = &s->groups[g];
		hit[g] = ids_strmap_get(&rc.gid, gr->id, NULL) || ids_strmap_get(&rc.id, gr->id, NULL) ||
			 (gr->dn && ids_strmap_get(&rc.dn, gr->dn, NULL));
	}
	for (size_t i = 0; r >= 0 && i < s->nusers; i++)
		if (s->users[i].f[IDS_F_EXTERNAL_ID] && reached(&rc, &s->users[i], hit))
			r = ids_strv_push(&w->keys, s->users[i].f[IDS_F_EXTERNAL_ID]);
	for (size_t i = 0; r >= 0 && i < w->keys.n; i++)
		r = ids_strmap_put(&w->only, w->keys.v[i], 0, NULL);
	/* the rules' users: every one the diff plans (keys has the changed
	 * users themselves too, named by reach_one) */
	if (r >= 0 && !(w->want = calloc(s->nusers ? s->nusers : 1, sizeof(*w->want))))
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i < s->nusers; i++) {
		const char *ext = s->users[i].f[IDS_F_EXTERNAL_ID];
		w->want[i] = ext && ids_strmap_get(&w->only, ext, NULL);
	}
	free(hit);
	ids_strmap_free(&rc.gid);
	ids_strmap_free(&rc.dn);
	ids_strmap_free(&rc.id);
	ids_strmap_free(&rc.name);
	ids_strv_free(&rc.owned);
	if (r < 0)
		return ids_error_set(e, r, "change feed: %s", ids_strerror(r));
	run_log(rn, IDS_LOG_DEBUG, NULL, NULL, "change feed: %zu of %zu users re-planned", w->only.len,
		s->nusers);
	return 0;
}

/* Starts reading the current state in the background, unless the run
 * loads only some rows (load_some) after the read. */
static int load_start(struct run *rn, const struct ids_connector_cfg *cc, struct work *w)
{
	if (load_some(rn, cc) || w->some)
		return 0;
	return ids_store_load_start(rn->st, rn->company_id, rn->conn, &w->loader);
}

/* The directory (through the connector) and, in the background meanwhile,
 * the current state (from PostgreSQL), then the rules over the snapshot.
 * On failure *ret_db says whether the database or the read failed. */
static int read_all(struct run *rn, const struct ids_connector_cfg *cc, const struct ids_connector_ops *ops,
		    struct work *w, bool *ret_db, struct ids_error *e)
{
	const struct ids_config *cfg = rn->cfg;
	struct ids_sync_result *res = rn->res;
	int r = ids_rules_attrs(cfg->rules, cfg->nrules, rn->conn, &w->attrs);
	if (r >= 0 && (r = feed_prepare(rn, cc, ops, &w->attrs, e)) < 0) {
		*ret_db = true;
		return r;
	}
	if (r >= 0)
		r = ids_snapshot_new(&w->snap);
	/* neither waits for the other: the load overlaps the directory read;
	 * a feed's read first, which may need no plan at all (and reads
	 * the stored image through the store's connection when it does) */
	if (r >= 0 && !rn->use && (r = load_start(rn, cc, w)) < 0)
		*ret_db = true;
	if (r < 0)
		return ids_error_set(e, r, "%s", ids_strerror(r));

	const struct ids_pull_ctx ctx = {.config = cfg,
					 .rule_attrs = &w->attrs,
					 .progress = progress,
					 .debug = cfg->log.level == IDS_LOG_DEBUG ? pull_debug : NULL,
					 .ud = rn,
					 .deadline_usec = rn->deadline,
					 .only_user = rn->o->only_user,
					 .tokens = rn->o->tokens};
	ids_progress_start(rn->o->prog, rn->conn, w->snap);
	r = pull(rn, cc, ops, &ctx, w->snap, e);
	if (r < 0 || rn->nothing) {
		res->t.fetch = lap(&rn->mark);
		return r;
	}
	w->some = replan_some(rn, cc);
	if (rn->use && (r = load_start(rn, cc, w)) < 0) {
		*ret_db = true;
		return ids_error_set(e, r, "%s", ids_strerror(r));
	}
	bool finished = false;
	if (rn->fs && (r = feed_snapshot(rn, w, &finished, e)) < 0)
		return r;
	res->t.fetch = lap(&rn->mark);
	ids_progress_phase(rn->o->prog, IDS_PHASE_RESOLVING);
	r = finished ? 0 : ids_snapshot_finish(w->snap);
	res->t.resolve = lap(&rn->mark);
	if (r < 0)
		return ids_error_set(e, r, "snapshot: %s", ids_strerror(r));
	if ((r = step(rn, e)) < 0 || (w->some && (r = reach_users(rn, w, e)) < 0))
		return r;
	run_log(rn, IDS_LOG_DEBUG, NULL, NULL,
		"read %zu users, %zu groups in %zu pages (%zu unresolved members)", w->snap->nusers,
		w->snap->ngroups, w->snap->pages, w->snap->unresolved_members);

	ids_progress_phase(rn->o->prog, IDS_PHASE_RULES);
	/* an incremental re-plan: the rules only for the users it diffs */
	r = ids_catalog_eval_some(&cfg->platform, cfg->rules, cfg->nrules, rn->conn, w->snap,
				  w->some ? w->want : NULL, &w->des);
	ids_snapshot_drop_groups(w->snap); /* read by the rules only: room for the diff */
	res->t.rules = lap(&rn->mark);
	if (r < 0)
		return ids_error_set(e, r, "rules: %s", ids_strerror(r));
	if ((r = step(rn, e)) < 0)
		return r;
	*ret_db = true;
	ids_progress_phase(rn->o->prog, IDS_PHASE_LOADING);
	if (w->loader)
		r = ids_store_load_finish(w->loader, &w->cur, &res->t.load, e);
	else
		r = load_state_some(rn, w, e);
	w->loader = NULL;
	lap(&rn->mark); /* the load's own time is t.load; what is left of it here is hidden */
	if (r >= 0)
		r = ids_sync_licences(cfg, rn->st, cc, rn->company_id, rn->id, w->snap, w->des, w->cur,
				      rn->o->only_user != NULL, &w->seats, e);
	return r;
}

/* `sync --user` waits for a run holding the lock (a full run) rather
 * than skipping: the person signing in needs this run, not the next one.
 * Up to run_timeout, or LOCK_WAIT when none is set.  false: give up. */
#define LOCK_WAIT (60 * USEC)
static bool lock_wait(const struct run *rn)
{
	if (!rn->o->only_user || rn->o->dry_run)
		return false;
	int64_t until = rn->deadline ? rn->deadline : rn->mark + LOCK_WAIT;
	if (ids_mono_usec() >= until || progress((void *)rn) < 0)
		return false;
	nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
	return true;
}

/* The connector's lock, or the run ended (skipped_locked, failed). */
static bool take_lock(struct run *rn, const struct ids_connector_cfg *cc, struct ids_error *e)
{
	int r = ids_store_lock(rn->st, cc->name, e);
	while (r == IDS_E_LOCKED && lock_wait(rn)) {
		ids_error_clear(e);
		r = ids_store_lock(rn->st, cc->name, e);
	}
	if (rn->o->only_user)
		rn->mark = ids_mono_usec(); /* the wait is not the fetch's time */
	if (r == IDS_E_LOCKED) {
		run_end(rn, &(struct end){.exit_code = IDS_EXIT_LOCKED,
					  .status = "skipped_locked",
					  .error = "another instance holds the lock"});
		return false;
	}
	if (r < 0) {
		end_db_failed(rn, e);
		return false;
	}
	return true;
}

/* `sync --user`: the external id of the person o->only_user names, or
 * NULL after ending the run as failed (nothing written but its row). */
static const char *target(struct run *rn, const struct ids_snapshot *snap)
{
	size_t idx = 0;
	if (ids_explain_find(snap, rn->o->only_user, &idx) == 0 && snap->users[idx].f[IDS_F_EXTERNAL_ID])
		return snap->users[idx].f[IDS_F_EXTERNAL_ID];
	char *why = NULL;
	if (asprintf(&why, "user %s not found in connector %s (by external id, username or e-mail)",
		     rn->o->only_user, rn->conn) < 0)
		why = NULL;
	run_end(rn, &(struct end){.exit_code = IDS_EXIT_FAILED,
				  .status = "failed",
				  .error = why ? why : "user not found",
				  .error_code = -ENOENT});
	free(why);
	return NULL;
}

void ids_sync_connector(const struct ids_config *cfg, struct ids_store *st,
			const struct ids_connector_cfg *cc, const struct ids_sync_opts *o,
			struct ids_buf *out, struct ids_sync_result *res)
{
	struct run rn = {.cfg = cfg,
			 .st = st,
			 .conn = cc->name,
			 .o = o,
			 .out = out,
			 .res = res,
			 .idp = ids_conn_type_name(cc->type)};
	struct ids_error e = {0};
	struct work w = {0};
	bool locked = false, db = false;
	/* A full read unless pull() reads a feed: its commit records
	 * last_full_at and clears any cursor, which would not describe the
	 * state this run commits. */
	static const struct ids_feed_commit full_read = {.full = true};
	/* one person (--user): the feed's cursor and last_full_at stay as they are */
	rn.read_kind = o->only_user ? "user" : "full";
	rn.feed = o->only_user ? NULL : &full_read;

	if (run_begin(&rn, &e) < 0) {
		end_db_failed(&rn, &e);
		goto out;
	}
	const struct ids_connector_ops *ops = ids_connector_find(cc->type);
	if (!ops) {
		ids_error_set(&e, IDS_E_CONFIG, "connector type %s is not available in this build",
			      ids_conn_type_name(cc->type));
		end_pull_failed(&rn, &e);
		goto out;
	}
	/* One writer per connector, from the first directory read to the
	 * commit (semantics.md, safety rule 5).  A plan writes nothing, so it
	 * does not need the lock. */
	if (!o->dry_run) {
		if (!take_lock(&rn, cc, &e))
			goto out;
		locked = true;
	}
	run_log(&rn, IDS_LOG_INFO, NULL, NULL, "run started");
	if (ids_store_company(st, cc->company, !o->dry_run, &rn.company_id, &e) < 0) {
		end_db_failed(&rn, &e);
		goto out;
	}
	if (read_all(&rn, cc, ops, &w, &db, &e) < 0) {
		ids_store_load_abandon(w.loader); /* before the store records the failure */
		w.loader = NULL;
		if (db)
			end_db_failed(&rn, &e);
		else
			end_pull_failed(&rn, &e);
		goto out;
	}
	if (rn.nothing) {
		end_no_change(&rn);
		goto out;
	}
	const char *only = o->only_user ? target(&rn, w.snap) : NULL;
	if (o->only_user && !only)
		goto out;
	const struct ids_diff_opts dopt = {.connector = cc->name,
					   .idp = rn.idp,
					   .adopt_by_email = cc->adopt_by_email,
					   .auto_create_tenants = cfg->tenants_auto_create,
					   .only_user = only,
					   .only = w.some ? &w.only : NULL};
	/* without licences: empty, which clears stale rows; one person's run
	 * leaves the book to the full runs */
	rn.seats = o->only_user ? NULL : &w.seats;
	plan_and_apply(&rn, w.snap, w.des, w.cur, &dopt, cc->allow_empty);
out:
	feed_end(&rn,
		 !o->dry_run && res->exit_code == IDS_EXIT_OK && res->status && !strcmp(res->status, "ok"));
	ids_progress_end(o->prog);
	work_free(&w);
	if (locked) {
		struct ids_error ue = {0};
		ids_store_unlock(st, cc->name, &ue);
		ids_error_clear(&ue);
	}
	ids_error_clear(&e);
}

/* One company of a retire, as a run of its own (the apply writes one
 * sync_run row per company): an empty snapshot with every managed user
 * out of scope, through the same diff and thresholds as a sync. */
static void retire_company(struct run *rn, int64_t company_id)
{
	struct ids_snapshot *snap = NULL;
	struct ids_desired_set *des = NULL;
	struct ids_current *cur = NULL;
	struct ids_error e = {0};
	rn->company_id = company_id;
	int r = run_begin(rn, &e);
	if (r < 0) {
		end_db_failed(rn, &e);
		goto out;
	}
	run_log(rn, IDS_LOG_INFO, NULL, NULL, "retire started (company %lld)", (long long)company_id);
	r = ids_snapshot_new(&snap);
	if (r >= 0)
		r = ids_snapshot_finish(snap);
	if (r >= 0)
		r = ids_rules_eval(NULL, 0, rn->conn, snap, &des);
	if (r < 0) {
		ids_error_set(&e, r, "%s", ids_strerror(r));
		end_pull_failed(rn, &e);
		goto out;
	}
	if (ids_store_load(rn->st, company_id, rn->conn, &cur, &e) < 0) {
		end_db_failed(rn, &e);
		goto out;
	}
	const struct ids_diff_opts dopt = {.connector = rn->conn, .retire = true};
	const struct ids_seat_book none = {0}; /* a retired connector waits for no seat */
	rn->seats = &none;
	plan_and_apply(rn, snap, des, cur, &dopt, true);
out:
	ids_current_free(cur);
	ids_desired_set_free(des);
	ids_snapshot_free(snap);
	ids_error_clear(&e);
}

void ids_sync_retire(const struct ids_config *cfg, struct ids_store *st, const char *name,
		     const struct ids_sync_opts *o, struct ids_buf *out, struct ids_sync_result *res)
{
	struct run rn = {.cfg = cfg, .st = st, .conn = name, .o = o, .out = out, .res = res};
	struct ids_error e = {0};
	int64_t *companies = NULL;
	size_t ncompanies = 0;
	bool locked = false;

	/* no id yet: each company's run reserves its own; a run that ends
	 * before (locked, no database) gets the id of the row it writes */
	memset(res, 0, sizeof(*res));
	rn.started = ids_real_usec();
	if (!o->dry_run) {
		int r = ids_store_lock(st, name, &e);
		if (r == IDS_E_LOCKED) {
			run_end(&rn, &(struct end){.exit_code = IDS_EXIT_LOCKED,
						   .status = "skipped_locked",
						   .error = "another instance holds the lock"});
			goto out;
		}
		if (r < 0) {
			end_db_failed(&rn, &e);
			goto out;
		}
		locked = true;
	}
	if (ids_store_source_companies(st, name, &companies, &ncompanies, &e) < 0) {
		end_db_failed(&rn, &e);
		goto out;
	}
	res->exit_code = IDS_EXIT_OK;
	res->status = "ok";
	if (ncompanies == 0) {
		run_log(&rn, IDS_LOG_INFO, NULL, NULL, "retire: no users to retire");
		ids_buf_printf(out, "summary %s: no users to retire\n", name);
	}
	for (size_t i = 0; i < ncompanies; i++) {
		struct ids_sync_result one = {0};
		struct run rc = rn;
		rc.res = &one;
		retire_company(&rc, companies[i]);
		res->exit_code = ids_exit_worst(res->exit_code, one.exit_code);
		if (one.exit_code != IDS_EXIT_OK) {
			res->status = one.status;
			res->error_code = one.error_code;
			free(res->error);
			res->error = one.error;
		} else {
			free(one.error);
		}
		res->run_id = one.run_id;
		res->counts.deactivated += one.counts.deactivated;
		res->counts.grants_removed += one.counts.grants_removed;
		/* a database that failed one company fails the next too */
		if (one.exit_code == IDS_EXIT_FAILED)
			break;
	}
	/* everyone retired: the feed's cursor and image go too */
	if (!o->dry_run && res->exit_code == IDS_EXIT_OK && ids_store_feed_drop(st, name, &e) < 0)
		end_db_failed(&rn, &e);
out:
	if (locked) {
		struct ids_error ue = {0};
		ids_store_unlock(st, name, &ue);
		ids_error_clear(&ue);
	}
	free(companies);
	ids_error_clear(&e);
}
