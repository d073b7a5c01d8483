/* sync.c — one connector run, reading top to bottom like the data flow of
 * spec/README.md: lock, pull, finish, rules, load current, diff, safety,
 * apply, report.  Every outcome ends in a sync_run row (except when the
 * database itself is gone) and an exit code. */
#include "ids/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ids/connector.h"
#include "ids/log.h"
#include "ids/output.h"
#include "ids/rules.h"
#include "ids/snapshot.h"

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

static int64_t now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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

static const char *idp_of(enum ids_conn_type t)
{
	return ids_conn_type_name(t);
}

/* Writes a sync_run row for a run that changed nothing (failed, aborted,
 * skipped), logging rather than failing if even that is impossible. */
static void record_run(struct ids_store *st, const char *conn, int64_t started, const char *status,
		       const struct ids_plan_counts *counts, const char *error, struct ids_sync_result *res)
{
	struct ids_run run = {conn, started, status, counts, error};
	struct ids_error e = {0};
	if (ids_store_record_run(st, &run, &res->run_id, &e) < 0)
		ids_log(IDS_LOG_ERROR, conn, 0, NULL, "cannot record the %s run: %s", status,
			ids_error_text(&e));
	ids_error_clear(&e);
}

static void fail(struct ids_sync_result *res, int code, const char *status, const char *msg)
{
	res->exit_code = code;
	res->status = status;
	free(res->error);
	res->error = msg ? strdup(msg) : NULL;
}

/* Logs the per-user events of a plan: conflicts and skips at warning. */
static void log_plan_events(const char *conn, const struct ids_plan *p, const struct ids_desired_set *d)
{
	for (size_t i = 0; d && i < d->warnings.n; i++)
		ids_log(IDS_LOG_WARNING, conn, 0, NULL, "%s", d->warnings.v[i]);
	for (size_t i = 0; i < p->missing_tenants.n; i++)
		ids_log(IDS_LOG_WARNING, conn, 0, NULL,
			"tenant %s does not exist and tenants.auto_create is off: its grants are skipped",
			p->missing_tenants.v[i]);
	for (size_t i = 0; i < p->nusers; i++) {
		const struct ids_plan_user *u = &p->users[i];
		const char *name = u->username ? u->username : u->external_id;
		if (u->flags & IDS_PU_CONFLICT)
			ids_log(IDS_LOG_WARNING, conn, 0, name, "user %s skipped, conflict: %s", name,
				u->reason ? u->reason : "");
		else if (u->flags & IDS_PU_SKIP_INVALID)
			ids_log(IDS_LOG_WARNING, conn, 0, name, "user %s (id %s) skipped, invalid data: %s",
				u->username ? u->username : "?", u->external_id ? u->external_id : "?",
				u->reason ? u->reason : "");
	}
}

static void print_result(const struct ids_plan *p, const struct ids_sync_opts *o, struct ids_buf *out)
{
	if (o->print_plan || o->format == IDS_FMT_JSON) {
		if (o->format == IDS_FMT_JSON)
			ids_output_plan_json(p, out);
		else
			ids_plan_format_text(p, out);
		return;
	}
	ids_buf_printf(out, "summary %s: ", p->connector);
	ids_plan_format_counts(&p->counts, out);
	ids_buf_putc(out, '\n');
	if (p->verdict != IDS_VERDICT_OK)
		ids_buf_printf(out, "aborted: %s\n", p->verdict_why ? p->verdict_why : "");
}

/* Diff, safety, apply: the part shared by sync and retire.  Takes the
 * finished snapshot and the current state. */
static void plan_and_apply(const struct ids_config *cfg, struct ids_store *st, const char *conn,
			   int64_t company_id, const char *idp, int64_t started,
			   const struct ids_snapshot *snap, const struct ids_desired_set *des,
			   const struct ids_current *cur, const struct ids_diff_opts *dopt, bool allow_empty,
			   const struct ids_sync_opts *o, struct ids_buf *out, struct ids_sync_result *res)
{
	struct ids_plan *plan = NULL;
	struct ids_error e = {0};
	int64_t mark = ids_mono_usec();
	int r = ids_diff_compute(snap, des, cur, dopt, &plan);
	res->t.diff = lap(&mark);
	if (r < 0) {
		fail(res, IDS_EXIT_FAILED, "failed", ids_strerror(r));
		ids_log(IDS_LOG_ERROR, conn, 0, NULL, "diff failed: %s", ids_strerror(r));
		if (!o->dry_run)
			record_run(st, conn, started, "failed", NULL, res->error, res);
		return;
	}
	const struct ids_safety lim = {cfg->safety.max_deactivations, cfg->safety.max_deactivation_percent,
				       cfg->safety.max_grant_removals_percent};
	ids_safety_check(plan, snap->nusers, &lim, allow_empty, o->allow_mass);
	res->counts = plan->counts;
	log_plan_events(conn, plan, des);
	print_result(plan, o, out);

	if (plan->verdict != IDS_VERDICT_OK) {
		const char *status =
		    plan->verdict == IDS_VERDICT_EMPTY ? "aborted_empty" : "aborted_threshold";
		fail(res, IDS_EXIT_SAFETY, status, plan->verdict_why);
		ids_log(IDS_LOG_ERROR, conn, 0, NULL, "run aborted, nothing written: %s", plan->verdict_why);
		if (!o->dry_run)
			record_run(st, conn, started, status, &plan->counts, plan->verdict_why, res);
		goto out;
	}
	if (o->dry_run) {
		res->exit_code = IDS_EXIT_OK;
		res->status = "dry_run";
		goto out;
	}

	struct ids_run run = {conn, started, "ok", &plan->counts, NULL};
	r = ids_store_apply(st, company_id, idp, plan, &run, &res->run_id, &e);
	res->t.apply = lap(&mark);
	res->peak_rss_kib = peak_rss_kib();
	if (r < 0) {
		fail(res, IDS_EXIT_FAILED, "failed", ids_error_text(&e));
		ids_log(IDS_LOG_ERROR, conn, 0, NULL, "apply failed, rolled back: %s", ids_error_text(&e));
		record_run(st, conn, started, "failed", NULL, res->error, res);
		goto out;
	}
	res->exit_code = IDS_EXIT_OK;
	res->status = "ok";
	res->rows_written = ids_store_rows_written(st);
	ids_log(
	    IDS_LOG_INFO, conn, res->run_id, NULL,
	    "run %lld ok: %ld users, +%ld ~%ld -%ld, %ld grants added, %ld removed, %ld conflicts, %ld "
	    "skipped,"
	    " %ld rows written (fetch %.2fs, resolve %.2fs, rules %.2fs, load %.2fs during fetch, diff %.2fs,"
	    " apply %.2fs; peak RSS %ld MiB)",
	    (long long)res->run_id, plan->counts.users_seen, plan->counts.created,
	    plan->counts.updated + plan->counts.reactivated, plan->counts.deactivated,
	    plan->counts.grants_added, plan->counts.grants_removed, plan->counts.conflicts,
	    plan->counts.skipped_invalid, res->rows_written, res->t.fetch, res->t.resolve, res->t.rules,
	    res->t.load, res->t.diff, res->t.apply, res->peak_rss_kib / 1024);
out:
	ids_error_clear(&e);
	ids_plan_free(plan);
}

struct progress_ctx {
	const struct ids_sync_opts *o;
	int64_t deadline; /* unix usec; 0 = none */
};

/* Called by connectors between pages: enforces run_timeout and passes the
 * tick on to the daemon's watchdog. */
static int progress(void *ud)
{
	struct progress_ctx *pc = ud;
	if (pc->deadline && now_usec() > pc->deadline)
		return IDS_E_TIMEOUT;
	return pc->o->progress ? pc->o->progress(pc->o->ud) : 0;
}

/* The progress hook between the phases after the pull (resolve, rules,
 * load): keeps the watchdog fed and lets SIGTERM / run_timeout stop the
 * run before anything is written. */
static int step(struct progress_ctx *pc, struct ids_error *e)
{
	int r = progress(pc);
	if (r < 0)
		return ids_error_set(e, r, "%s",
				     r == IDS_E_TIMEOUT ? "stopped: run_timeout reached"
							: "stopped: the run was cancelled");
	return 0;
}

void ids_sync_connector(const struct ids_config *cfg, struct ids_store *st,
			const struct ids_connector_cfg *cc, const struct ids_sync_opts *o,
			struct ids_buf *out, struct ids_sync_result *res)
{
	const char *conn = cc->name;
	int64_t started = now_usec();
	struct ids_error e = {0};
	struct ids_snapshot *snap = NULL;
	struct ids_desired_set *des = NULL;
	struct ids_current *cur = NULL;
	struct ids_store_loader *loader = NULL;
	struct ids_strv attrs = {0};
	bool locked = false;
	int64_t company_id = 0;
	int r;

	memset(res, 0, sizeof(*res));
	const struct ids_connector_ops *ops = ids_connector_find(cc->type);
	if (!ops) {
		fail(res, IDS_EXIT_CONFIG, "failed", "connector type not available in this build");
		ids_log(IDS_LOG_ERROR, conn, 0, NULL, "connector type %s is not available in this build",
			ids_conn_type_name(cc->type));
		return;
	}

	/* One writer per connector, from the first directory read to the
	 * commit (semantics.md, safety rule 5).  A plan writes nothing, so it
	 * does not need the lock. */
	if (!o->dry_run) {
		r = ids_store_lock(st, conn, &e);
		if (r == IDS_E_LOCKED) {
			fail(res, IDS_EXIT_LOCKED, "skipped_locked", "another instance holds the lock");
			ids_log(IDS_LOG_WARNING, conn, 0, NULL,
				"another instance is syncing this connector: skipped");
			record_run(st, conn, started, "skipped_locked", NULL, NULL, res);
			ids_buf_printf(out, "summary %s: skipped, locked by another instance\n", conn);
			goto out;
		}
		if (r < 0)
			goto db_failed;
		locked = true;
	}
	ids_log(IDS_LOG_INFO, conn, 0, NULL, "run started");

	r = ids_store_company(st, cc->company, !o->dry_run, &company_id, &e);
	if (r < 0)
		goto db_failed;

	/* pull: a complete snapshot or nothing */
	r = ids_rules_attrs(cfg->rules, cfg->nrules, conn, &attrs);
	if (r >= 0)
		r = ids_snapshot_new(&snap);
	if (r < 0) {
		ids_error_set(&e, r, "%s", ids_strerror(r));
		goto pull_failed;
	}
	struct progress_ctx pc = {
	    o, cfg->sync.run_timeout ? started + (int64_t)cfg->sync.run_timeout * 1000000 : 0};
	struct ids_pull_ctx ctx = {cfg, &attrs, progress, &pc};
	/* The current state is read from PostgreSQL in the background while
	 * the connector reads the directory: neither waits for the other. */
	r = ids_store_load_start(st, company_id, conn, &loader);
	if (r < 0) {
		ids_error_set(&e, r, "%s", ids_strerror(r));
		goto db_failed;
	}
	int64_t mark = ids_mono_usec();
	r = ops->pull(cc, &ctx, snap, &e);
	res->t.fetch = lap(&mark);
	if (r < 0)
		goto pull_failed;
	r = ids_snapshot_finish(snap);
	res->t.resolve = lap(&mark);
	if (r < 0) {
		ids_error_set(&e, r, "snapshot: %s", ids_strerror(r));
		goto pull_failed;
	}
	if (step(&pc, &e) < 0)
		goto pull_failed;
	ids_log(IDS_LOG_DEBUG, conn, 0, NULL,
		"read %zu users, %zu groups in %zu pages (%zu unresolved members)", snap->nusers,
		snap->ngroups, snap->pages, snap->unresolved_members);

	r = ids_rules_eval(cfg->rules, cfg->nrules, conn, snap, &des);
	ids_snapshot_drop_groups(snap); /* read by the rules only: room for the diff */
	res->t.rules = lap(&mark);
	if (r >= 0 && step(&pc, &e) < 0) {
		r = e.code;
		goto pull_failed;
	}
	if (r < 0) {
		ids_error_set(&e, r, "rules: %s", ids_strerror(r));
		goto pull_failed;
	}
	r = ids_store_load_finish(loader, &cur, &res->t.load, &e);
	loader = NULL;
	lap(&mark); /* the load's own time is t.load; what is left of it here is hidden */
	if (r < 0)
		goto db_failed;

	struct ids_diff_opts dopt = {conn, idp_of(cc->type), cc->adopt_by_email, cfg->tenants_auto_create,
				     false};
	plan_and_apply(cfg, st, conn, company_id, dopt.idp, started, snap, des, cur, &dopt, cc->allow_empty,
		       o, out, res);
	goto out;

pull_failed:
	ids_store_load_abandon(loader); /* the store is ours again */
	res->error_code = e.code;	/* the daemon backs off at retry_max on IDS_E_AUTH */
	loader = NULL;
	/* a credential file that is there but malformed is found only now:
	 * still a configuration error (exit 78), not a transient failure */
	fail(res, e.code == IDS_E_CONFIG ? IDS_EXIT_CONFIG : IDS_EXIT_FAILED, "failed", ids_error_text(&e));
	ids_log(IDS_LOG_ERROR, conn, 0, NULL, "run failed, nothing written: %s", ids_error_text(&e));
	ids_buf_printf(out, "summary %s: failed: %s\n", conn, ids_error_text(&e));
	if (!o->dry_run)
		record_run(st, conn, started, "failed", NULL, res->error, res);
	goto out;

db_failed:
	res->error_code = e.code;
	fail(res, IDS_EXIT_FAILED, "failed", ids_error_text(&e));
	ids_log(IDS_LOG_ERROR, conn, 0, NULL, "database: %s", ids_error_text(&e));
	ids_buf_printf(out, "summary %s: failed: database: %s\n", conn, ids_error_text(&e));
	if (!o->dry_run && r != IDS_E_DB_LOST)
		record_run(st, conn, started, "failed", NULL, res->error, res);

out:
	ids_store_load_abandon(loader);
	if (locked) {
		struct ids_error ue = {0};
		ids_store_unlock(st, conn, &ue);
		ids_error_clear(&ue);
	}
	ids_error_clear(&e);
	ids_strv_free(&attrs);
	ids_current_free(cur);
	ids_desired_set_free(des);
	ids_snapshot_free(snap);
}

void ids_sync_retire(const struct ids_config *cfg, struct ids_store *st, const char *name,
		     const struct ids_sync_opts *o, struct ids_buf *out, struct ids_sync_result *res)
{
	int64_t started = now_usec();
	struct ids_error e = {0};
	int64_t *companies = NULL;
	size_t ncompanies = 0;
	bool locked = false;
	int r;

	memset(res, 0, sizeof(*res));
	res->exit_code = IDS_EXIT_OK;
	res->status = "ok";
	if (!o->dry_run) {
		r = ids_store_lock(st, name, &e);
		if (r == IDS_E_LOCKED) {
			fail(res, IDS_EXIT_LOCKED, "skipped_locked", "another instance holds the lock");
			goto out;
		}
		if (r < 0)
			goto failed;
		locked = true;
	}
	r = ids_store_source_companies(st, name, &companies, &ncompanies, &e);
	if (r < 0)
		goto failed;
	if (ncompanies == 0)
		ids_buf_printf(out, "summary %s: no users to retire\n", name);

	/* an empty snapshot with every managed user out of scope, company by
	 * company, through the same diff and thresholds as a sync */
	for (size_t i = 0; i < ncompanies; i++) {
		struct ids_snapshot *snap = NULL;
		struct ids_desired_set *des = NULL;
		struct ids_current *cur = NULL;
		struct ids_sync_result one = {0};
		r = ids_snapshot_new(&snap);
		if (r >= 0)
			r = ids_snapshot_finish(snap);
		if (r >= 0)
			r = ids_rules_eval(NULL, 0, name, snap, &des);
		if (r < 0)
			ids_error_set(&e, r, "%s", ids_strerror(r));
		else
			r = ids_store_load(st, companies[i], name, &cur, &e);
		if (r >= 0) {
			struct ids_diff_opts dopt = {name, NULL, false, false, true};
			plan_and_apply(cfg, st, name, companies[i], NULL, started, snap, des, cur, &dopt,
				       true, o, out, &one);
		}
		ids_current_free(cur);
		ids_desired_set_free(des);
		ids_snapshot_free(snap);
		if (r < 0)
			goto failed;
		res->exit_code = ids_exit_worst(res->exit_code, one.exit_code);
		if (one.exit_code != IDS_EXIT_OK) {
			res->status = one.status;
			free(res->error);
			res->error = one.error;
		} else {
			free(one.error);
		}
		res->counts.deactivated += one.counts.deactivated;
		res->counts.grants_removed += one.counts.grants_removed;
	}
	goto out;
failed:
	fail(res, IDS_EXIT_FAILED, "failed", ids_error_text(&e));
	ids_log(IDS_LOG_ERROR, name, 0, NULL, "retire failed: %s", ids_error_text(&e));
out:
	if (locked) {
		struct ids_error ue = {0};
		ids_store_unlock(st, name, &ue);
		ids_error_clear(&ue);
	}
	free(companies);
	ids_error_clear(&e);
}
