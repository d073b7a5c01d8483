/* held.c — held plans (held_plan, migration 004) for `idsyncd approve`,
 * and the monitoring reads of `idsyncd status`: the daemon's heartbeat
 * (daemon_heartbeat) and each connector's last successful run. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/store.h"
#include "store_int.h"

#define PENDING "approved_run IS NULL AND superseded_by IS NULL"

static char *dup_or_null(const PGresult *res, int row, int col, bool *ok)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	char *s = strdup(PQgetvalue(res, row, col));
	if (!s)
		*ok = false;
	return s;
}

/* 0 for NULL: run ids start at 1. */
static int64_t i64_or_zero(const PGresult *res, int row, int col)
{
	int64_t v = 0;
	if (!PQgetisnull(res, row, col) && ids_store_parse_i64(PQgetvalue(res, row, col), &v) < 0)
		v = 0;
	return v;
}

void ids_held_rows_free(struct ids_held *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].connector);
		free(v[i].digest);
		free(v[i].reason);
		free(v[i].plan);
	}
	free(v);
}

/* The columns every read of held_plan selects, in the order of
 * held_from_row; `plan` is read only when asked (it can be megabytes). */
#define HELD_COLS                                                                                            \
	"run_id, connector, digest, reason,"                                                                 \
	" (extract(epoch FROM created_at) * 1000000)::bigint,"                                               \
	" (extract(epoch FROM expires_at) * 1000000)::bigint, approved_run, superseded_by,"                  \
	" expires_at <= now()"

static int held_from_rows(const PGresult *res, bool with_plan, struct ids_held **ret, size_t *ret_n)
{
	size_t n = (size_t)PQntuples(res);
	struct ids_held *v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		int row = (int)i;
		struct ids_held *h = &v[i];
		h->run_id = i64_or_zero(res, row, 0);
		h->connector = dup_or_null(res, row, 1, &ok);
		h->digest = dup_or_null(res, row, 2, &ok);
		h->reason = dup_or_null(res, row, 3, &ok);
		h->created_at = i64_or_zero(res, row, 4);
		h->expires_at = i64_or_zero(res, row, 5);
		h->approved_run = i64_or_zero(res, row, 6);
		h->superseded_by = i64_or_zero(res, row, 7);
		h->expired = strcmp(PQgetvalue(res, row, 8), "t") == 0;
		if (with_plan)
			h->plan = dup_or_null(res, row, 9, &ok);
	}
	if (!ok) {
		ids_held_rows_free(v, n);
		return -ENOMEM;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int ids_store_held_put(struct ids_store *st, const struct ids_held *h, int expiry_seconds, int64_t *ret_run,
		       struct ids_error *err)
{
	char run[24], exp[24];
	snprintf(run, sizeof(run), "%" PRId64, h->run_id);
	snprintf(exp, sizeof(exp), "%d", expiry_seconds);
	const char *p[] = {run, h->connector, h->digest, h->reason, h->plan, exp};
	PGresult *res = NULL;
	/* One statement, so one snapshot: the same pending plan is kept
	 * (a daemon retrying a held run must not move the id the operator
	 * is reviewing), else the new one replaces every pending one. */
	int r = ids_store_exec(
	    st,
	    "WITH same AS (SELECT run_id FROM held_plan WHERE connector = $2 AND " PENDING
	    " AND expires_at > now() AND digest = $3 ORDER BY run_id LIMIT 1),"
	    " sup AS (UPDATE held_plan SET superseded_by = $1 WHERE connector = $2 AND " PENDING
	    " AND NOT EXISTS (SELECT 1 FROM same) RETURNING 1),"
	    " ins AS (INSERT INTO held_plan (run_id, connector, expires_at, digest, reason, plan)"
	    " SELECT $1, $2, now() + $6::bigint * interval '1 second', $3, $4, $5"
	    " WHERE NOT EXISTS (SELECT 1 FROM same) RETURNING run_id)"
	    " SELECT COALESCE((SELECT run_id FROM same), (SELECT run_id FROM ins))",
	    6, p, PGRES_TUPLES_OK, &res, "holding the plan", err);
	if (r >= 0) {
		*ret_run = i64_or_zero(res, 0, 0);
		r = 0;
	}
	PQclear(res);
	return r;
}

int ids_store_held_get(struct ids_store *st, int64_t run_id, struct ids_held **ret, struct ids_error *err)
{
	char run[24];
	snprintf(run, sizeof(run), "%" PRId64, run_id);
	const char *p[] = {run};
	PGresult *res = NULL;
	size_t n = 0;
	struct ids_held *v = NULL;
	int r = ids_store_exec(st, "SELECT " HELD_COLS ", plan FROM held_plan WHERE run_id = $1", 1, p,
			       PGRES_TUPLES_OK, &res, "reading the held plan", err);
	if (r >= 0 && (r = held_from_rows(res, true, &v, &n)) < 0)
		ids_error_set(err, r, "reading the held plan: %s", ids_strerror(r));
	PQclear(res);
	if (r < 0)
		return r;
	if (n == 0) {
		free(v);
		v = NULL;
	}
	*ret = v;
	return 0;
}

int ids_store_held_pending(struct ids_store *st, struct ids_held **ret, size_t *ret_n, struct ids_error *err)
{
	PGresult *res = NULL;
	int r = ids_store_exec(st,
			       "SELECT " HELD_COLS " FROM held_plan WHERE " PENDING
			       " AND expires_at > now() ORDER BY connector, run_id",
			       0, NULL, PGRES_TUPLES_OK, &res, "reading the held plans", err);
	if (r >= 0 && (r = held_from_rows(res, false, ret, ret_n)) < 0)
		ids_error_set(err, r, "reading the held plans: %s", ids_strerror(r));
	PQclear(res);
	return r;
}

int ids_store_held_approve(struct ids_store *st, int64_t run_id, int64_t by_run, struct ids_error *err)
{
	char run[24], by[24];
	snprintf(run, sizeof(run), "%" PRId64, run_id);
	snprintf(by, sizeof(by), "%" PRId64, by_run);
	const char *p[] = {run, by};
	PGresult *res = NULL;
	int r = ids_store_exec(st, "UPDATE held_plan SET approved_run = $2 WHERE run_id = $1 AND " PENDING, 2,
			       p, PGRES_COMMAND_OK, &res, "marking the held plan approved", err);
	if (r >= 0 && strcmp(PQcmdTuples(res), "1") != 0)
		r = ids_error_set(err, IDS_E_INVALID, "held plan of run %" PRId64 " is no longer pending",
				  run_id);
	PQclear(res);
	return r < 0 ? r : 0;
}

int ids_store_held_settle(struct ids_store *st, const char *connector, int64_t by_run, struct ids_error *err)
{
	char by[24];
	snprintf(by, sizeof(by), "%" PRId64, by_run);
	const char *p[] = {connector, by};
	return ids_store_exec(st, "UPDATE held_plan SET superseded_by = $2 WHERE connector = $1 AND " PENDING,
			      2, p, PGRES_COMMAND_OK, NULL, "settling the held plans", err);
}

/* ---------------- heartbeat ---------------- */

int ids_store_heartbeat(struct ids_store *st, const char *instance, const char *running,
			struct ids_error *err)
{
	const char *p[] = {instance, running};
	/* the rows of daemons that died without a clean stop (SIGKILL, a
	 * lost host) go after a week: status names only the latest anyway */
	return ids_store_exec(st,
			      "WITH gone AS (DELETE FROM daemon_heartbeat WHERE instance <> $1"
			      " AND heartbeat_at < now() - interval '7 days')"
			      " INSERT INTO daemon_heartbeat AS h (instance, running) VALUES ($1, $2)"
			      " ON CONFLICT (instance) DO UPDATE SET heartbeat_at = now(), running = $2",
			      2, p, PGRES_COMMAND_OK, NULL, "recording the heartbeat", err);
}

int ids_store_heartbeat_end(struct ids_store *st, const char *instance, struct ids_error *err)
{
	const char *p[] = {instance};
	return ids_store_exec(st, "DELETE FROM daemon_heartbeat WHERE instance = $1", 1, p, PGRES_COMMAND_OK,
			      NULL, "removing the heartbeat", err);
}

void ids_heartbeats_free(struct ids_heartbeat *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].instance);
		free(v[i].running);
	}
	free(v);
}

/* Ages by the database's clock, the one that wrote the heartbeats: a
 * status run on another host with a skewed clock reads them right. */
int ids_store_heartbeats(struct ids_store *st, struct ids_heartbeat **ret, size_t *ret_n,
			 struct ids_error *err)
{
	PGresult *res = NULL;
	int r = ids_store_exec(
	    st,
	    "SELECT instance, running, floor(extract(epoch FROM now() - heartbeat_at))::bigint,"
	    " (extract(epoch FROM heartbeat_at) * 1000000)::bigint"
	    " FROM daemon_heartbeat ORDER BY heartbeat_at DESC",
	    0, NULL, PGRES_TUPLES_OK, &res, "reading the daemon heartbeat", err);
	if (r < 0)
		return r;
	size_t n = (size_t)PQntuples(res);
	struct ids_heartbeat *v = calloc(n ? n : 1, sizeof(*v));
	bool ok = v != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		v[i].instance = dup_or_null(res, (int)i, 0, &ok);
		v[i].running = dup_or_null(res, (int)i, 1, &ok);
		v[i].age_seconds = i64_or_zero(res, (int)i, 2);
		v[i].at = i64_or_zero(res, (int)i, 3);
	}
	PQclear(res);
	if (!ok) {
		ids_heartbeats_free(v, n);
		return ids_error_set(err, -ENOMEM, "reading the daemon heartbeat: out of memory");
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int ids_store_last_ok(struct ids_store *st, const char *connector, int64_t *ret_age, struct ids_error *err)
{
	const char *p[] = {connector};
	PGresult *res = NULL;
	int r = ids_store_exec(st,
			       "SELECT floor(extract(epoch FROM now() - max(finished_at)))::bigint"
			       " FROM sync_run WHERE connector = $1 AND status = 'ok'"
			       " AND read_kind IS DISTINCT FROM 'user'",
			       1, p, PGRES_TUPLES_OK, &res, "reading the last successful run", err);
	if (r >= 0)
		*ret_age = PQgetisnull(res, 0, 0) ? -1 : i64_or_zero(res, 0, 0);
	PQclear(res);
	return r < 0 ? r : 0;
}
