/* apply.c — ids_store_apply(): a plan, its audit rows and its sync_run row
 * in ONE transaction (semantics.md, safety rule 4).
 *
 * Changes to rows that exist are copied into temporary staging tables
 * with COPY, then a fixed list of set-based statements joins them with the
 * real tables: the number of statements is the same for 1 user or
 * 100 000, and a statement with nothing staged for it is not sent.  Users
 * are found by id and checked against (company, connector, external id);
 * grant rows by their user's id (the plan's, checked the same way once,
 * check_users) and their tenant's or operator group's id (read from the
 * company's own rows), so no statement can reach into another company.
 * Each statement probes the primary key once per staged row (keyed_sql):
 * a resync's apply costs what changed, not what the tables hold.
 * Grant rows whose source is not this connector (made by hand, NULL) are
 * never deleted or changed.
 *
 * What is new goes in with COPY straight into the real tables: users
 * created by the plan (their ids drawn from app_user's sequence first),
 * their grants (a brand-new user cannot have a row made by hand), and the
 * audit rows.  An initial sync then costs what COPYing its rows costs, not
 * twice that (staging, then INSERT ... SELECT).  The company-isolation
 * triggers check these rows like any others.
 *
 * Audit: one row per user and action.  A user's grants of one run share
 * one `grant` row (and its removals one `revoke` row) whose detail lists
 * them all — an initial sync of 100 000 users with seven grants each
 * writes 200 000 audit rows, not 800 000, and the audit was most of the
 * time an apply took. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/plan.h"
#include "ids/store.h"
#include "ids/util.h"
#include "store_int.h"

/* Flush COPY data to the server in pieces of about this size, so that a
 * large plan never sits in memory twice. */
#define COPY_CHUNK (1 << 20)

/* pg_type OIDs of the statements' parameters (stable, from pg_type.dat). */
#define INT8OID 20
#define TEXTOID 25

/* The staging tables live in pg_temp and vanish at COMMIT or ROLLBACK.
 * ids_s_grant.user_id is looked up once, by external id (find_users), and
 * the statements then reach users by primary key. */
static const char staging_sql[] =
    "CREATE TEMP TABLE ids_s_tenant (slug text NOT NULL) ON COMMIT DROP;"
    "CREATE TEMP TABLE ids_s_group (tenant text NOT NULL, name text NOT NULL) ON COMMIT DROP;"
    "CREATE TEMP TABLE ids_s_user (id bigint, external_id text,"
    " username text, email text, first_name text, last_name text, display_name text,"
    " company_admin bool NOT NULL, reason text,"
    " op_adopt bool NOT NULL, op_update bool NOT NULL,"
    " op_deactivate bool NOT NULL, op_reactivate bool NOT NULL, op_reason bool NOT NULL,"
    " ch_username bool NOT NULL, ch_email bool NOT NULL, ch_first_name bool NOT NULL,"
    " ch_last_name bool NOT NULL, ch_display_name bool NOT NULL,"
    " ch_company_admin bool NOT NULL, ch_auth bool NOT NULL) ON COMMIT DROP;"
    "CREATE TEMP TABLE ids_s_grant (op text NOT NULL, kind text NOT NULL,"
    " user_id bigint, external_id text NOT NULL, target bigint, name text NOT NULL, slots int,"
    " rules text[])"
    " ON COMMIT DROP";

/* How the planner may join, set per phase (SET LOCAL: until COMMIT).
 *
 * Keyed: a staged row reaches its one target row by primary key, so the
 * only plan wanted is a nested loop over the staging table with an index
 * probe per row; its cost follows the rows that change, not the size of
 * the tables (a hash join reads all of app_user or channel_grant for
 * every statement: at 100k users that was most of a resync's apply).
 * Hash and merge joins and sequential scans are ruled out rather than
 * left to statistics: right after a large create app_user has none, and
 * a planner that believes it empty picks a nested loop the wrong way
 * round (96 s at 20k users, found by t_fault_21).
 *
 * Bulk: COPYing the rows of many new users.  The company-isolation
 * triggers then join the new rows with app_user and tenant, and a hash
 * join is the plan for that whatever the statistics say.
 *
 * JIT off in both: ruling sequential scans out makes every plan look
 * expensive enough to compile, which took 60-120 ms a statement. */
static const char keyed_sql[] = "SET LOCAL enable_nestloop = on; SET LOCAL enable_hashjoin = off;"
				" SET LOCAL enable_mergejoin = off; SET LOCAL enable_seqscan = off;"
				" SET LOCAL jit = off";
static const char bulk_sql[] = "SET LOCAL enable_nestloop = off; SET LOCAL enable_hashjoin = on;"
			       " SET LOCAL enable_mergejoin = on; SET LOCAL enable_seqscan = on;"
			       " SET LOCAL jit = off";

/* Ids by name, read back from the database: tenants by slug, operator
 * groups by "slug\tname", users by external id. */
struct ids_by_name {
	struct ids_strmap map; /* name -> index into id */
	int64_t *id;
	size_t n, cap;
	struct ids_arena keys;
};

/* State of one apply: the statements' common parameters
 * ($1 company id, $2 connector, $3 run id, $4 idp) and the error. */
struct apply {
	struct ids_store *st;
	const struct ids_plan *p;
	const char *params[4];
	char company[24], run_id[24];
	int64_t run;
	struct ids_buf copy; /* COPY data not yet sent */
	struct ids_buf key;  /* scratch: a "slug\tname" key */
	struct ids_buf lit;  /* scratch: a text[] literal (copy_rules) */
	struct ids_error *err;
	long rows;		    /* rows the statements and COPYs wrote */
	struct ids_by_name created; /* users the plan creates, by external id */
	struct ids_by_name found;   /* users found by external id (plan grants without user_id) */
	struct ids_by_name tenants; /* the company's tenants */
	struct ids_by_name groups;  /* its operator groups */
	/* the last grant's user and tenant: a plan's grants come user by
	 * user, with shared strings, so most lookups are these */
	const char *last_ext, *last_tenant;
	int64_t last_uid, last_tid;
	bool last_created;
};

/* ---------------- statements ---------------- */

/* Runs one statement with the four typed parameters (typed, so that a
 * statement may leave some unused).  expect >= 0: the number of rows it
 * must touch; anything else means the plan no longer matches the database
 * (someone changed a user since the load) and the whole run is undone. */
static int stmt(struct apply *a, const char *what, const char *sql, long expect)
{
	static const Oid types[4] = {INT8OID, TEXTOID, INT8OID, TEXTOID};
	/* nothing staged for it: nothing it could match */
	if (expect == 0)
		return 0;
	PGresult *res = PQexecParams(a->st->conn, sql, 4, types, a->params, NULL, NULL, 0);
	int r = 0;
	if (!res || (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)) {
		r = ids_store_fail(a->st, res, what, a->err);
		goto out;
	}
	long got = strtol(PQcmdTuples(res), NULL, 10);
	a->rows += got;
	if (expect >= 0) {
		if (got != expect)
			r = ids_error_set(
			    a->err, IDS_E_DB,
			    "%s: %ld of %ld users matched: the database changed since the plan was "
			    "made; nothing was applied",
			    what, got, expect);
	}
out:
	PQclear(res);
	return r;
}

/* ---------------- COPY ---------------- */

/* Appends one COPY text-format field: NULL as \N, and the four bytes that
 * COPY gives a meaning (backslash, tab, newline, carriage return)
 * escaped.  Other bytes go through unchanged. */
static int copy_field(struct ids_buf *b, const char *v, bool first)
{
	int r = first ? 0 : ids_buf_putc(b, '\t');
	if (r < 0)
		return r;
	if (!v)
		return ids_buf_puts(b, "\\N");
	for (const char *p = v; *p && r >= 0; p++) {
		switch (*p) {
		case '\\': r = ids_buf_puts(b, "\\\\"); break;
		case '\t': r = ids_buf_puts(b, "\\t"); break;
		case '\n': r = ids_buf_puts(b, "\\n"); break;
		case '\r': r = ids_buf_puts(b, "\\r"); break;
		default: r = ids_buf_putc(b, *p);
		}
	}
	return r;
}

static int copy_bool(struct ids_buf *b, bool v)
{
	return copy_field(b, v ? "t" : "f", false);
}

/* A number field; id 0 (no row) becomes NULL when zero_null. */
static int copy_num(struct ids_buf *b, int64_t v, bool zero_null, bool first)
{
	char s[24];
	if (zero_null && v == 0)
		return copy_field(b, NULL, first);
	snprintf(s, sizeof(s), "%" PRId64, v);
	return copy_field(b, s, first);
}

static int copy_begin(struct apply *a, const char *sql)
{
	PGresult *res = PQexec(a->st->conn, sql);
	int r = 0;
	if (!res || PQresultStatus(res) != PGRES_COPY_IN)
		r = ids_store_fail(a->st, res, "copying the plan", a->err);
	PQclear(res);
	ids_buf_reset(&a->copy);
	return r;
}

/* Sends what is buffered when there is enough of it (or always: force). */
static int copy_flush(struct apply *a, bool force)
{
	if (a->copy.len == 0 || (!force && a->copy.len < COPY_CHUNK))
		return 0;
	if (a->copy.len > INT_MAX || PQputCopyData(a->st->conn, a->copy.p, (int)a->copy.len) != 1)
		return ids_store_fail(a->st, NULL, "copying the plan", a->err);
	ids_buf_reset(&a->copy);
	return 0;
}

/* Ends a row of COPY data, sending what is buffered when there is
 * enough of it. */
static int copy_row_end(struct apply *a)
{
	int r = ids_buf_putc(&a->copy, '\n');
	return r < 0 ? r : copy_flush(a, false);
}

/* Ends a COPY; `what` names it in errors.  count: it wrote real rows
 * (not staging), which rows_written counts. */
static int copy_end(struct apply *a, const char *what, bool count)
{
	PGresult *res;
	int r = copy_flush(a, true);
	if (r < 0)
		return r;
	if (PQputCopyEnd(a->st->conn, NULL) != 1)
		return ids_store_fail(a->st, NULL, what, a->err);
	/* The COPY's own result, then NULL. */
	while ((res = PQgetResult(a->st->conn)) != NULL) {
		if (r >= 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
			r = ids_store_fail(a->st, res, what, a->err);
		else if (r >= 0 && count)
			a->rows += strtol(PQcmdTuples(res), NULL, 10);
		PQclear(res);
	}
	return r;
}

/* ---------------- audit details (JSON) ---------------- */

/* A JSON string, or null.  Values of invalid users may not be UTF-8,
 * which jsonb (and the whole COPY) would refuse: such bytes are written as
 * the text \xNN so that the audit row still says what was skipped. */
static int json_str(struct ids_buf *b, const char *s)
{
	if (!s)
		return ids_buf_puts(b, "null");
	if (ids_utf8_valid(s, strlen(s)))
		return ids_buf_json_str(b, s);
	char *safe = ids_utf8_escape(s);
	int r = safe ? ids_buf_json_str(b, safe) : -ENOMEM;
	free(safe);
	return r;
}

/* ,"key":"value" (or {"key":... when first) */
static int json_kv(struct ids_buf *b, const char *key, const char *v, bool first)
{
	int r = ids_buf_puts(b, first ? "{" : ",");
	if (r >= 0)
		r = ids_buf_json_str(b, key);
	if (r >= 0)
		r = ids_buf_putc(b, ':');
	return r < 0 ? r : json_str(b, v);
}

/* ,"field":[old,new] for a text field */
static int json_change(struct ids_buf *b, const char *key, const char *old, const char *new, bool *first)
{
	int r = ids_buf_puts(b, *first ? "{" : ",");
	*first = false;
	if (r >= 0)
		r = ids_buf_json_str(b, key);
	if (r >= 0)
		r = ids_buf_puts(b, ":[");
	if (r >= 0)
		r = json_str(b, old);
	if (r >= 0)
		r = ids_buf_putc(b, ',');
	if (r >= 0)
		r = json_str(b, new);
	return r < 0 ? r : ids_buf_putc(b, ']');
}

static const char *bool_json(bool v)
{
	return v ? "true" : "false";
}

/* The detail of an update: every changed field as [old, new], the list
 * the JSON plan shows too (ids_plan_user_changes) — except the row's
 * state (active, deactivation_reason), which has audit rows of its own. */
static int update_detail(struct ids_buf *d, const struct ids_plan_user *u, const char *idp)
{
	struct ids_change c[IDS_CHANGES_MAX];
	size_t n = ids_plan_user_changes(u, idp, c);
	bool first = true;
	int r = 0;

	for (size_t i = 0; i < n && r >= 0; i++) {
		if (c[i].state)
			continue;
		if (!c[i].is_bool) {
			r = json_change(d, c[i].field, c[i].old, c[i].new, &first);
			continue;
		}
		r = ids_buf_printf(d, "%s\"%s\":[%s,%s]", first ? "{" : ",", c[i].field,
				   bool_json(c[i].old_b), bool_json(c[i].new_b));
		first = false;
	}
	if (r >= 0)
		r = ids_buf_puts(d, first ? "{}" : "}");
	return r;
}

/* One audit_log row (COPY run_id, user_id, action, detail): user_id 0 is
 * none. */
static int audit_row(struct apply *a, const char *action, int64_t user_id, const char *detail)
{
	int r = copy_num(&a->copy, a->run, false, true);
	if (r >= 0)
		r = copy_num(&a->copy, user_id, true, false);
	if (r >= 0)
		r = copy_field(&a->copy, action, false);
	if (r >= 0)
		r = copy_field(&a->copy, detail, false);
	return r < 0 ? r : copy_row_end(a);
}

/* The audit rows of one plan user, in the order things happen to it. */
static int audit_user(struct apply *a, const struct ids_plan_user *u, int64_t uid, const char *idp)
{
	struct ids_buf d = {0};
	const struct ids_cur_user *c = u->cur;
	unsigned f = u->flags;
	int r = 0;

	if (r >= 0 && (f & IDS_PU_CREATE)) {
		ids_buf_reset(&d);
		r = json_kv(&d, "username", u->username, true);
		if (r >= 0)
			r = json_kv(&d, "email", u->email, false);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, "create", uid, d.p);
	}
	if (r >= 0 && (f & IDS_PU_ADOPT)) {
		ids_buf_reset(&d);
		/* the address the adoption matched on: the existing user's */
		r = json_kv(&d, "email", c && c->email ? c->email : u->email, true);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, "adopt", uid, d.p);
	}
	if (r >= 0 && (f & IDS_PU_REACTIVATE))
		r = audit_row(a, "reactivate", uid, "{}");
	/* Adoption itself switches the user to SSO; its other changes
	 * (names, e-mail following the directory) are an update. */
	if (r >= 0 &&
	    ((f & IDS_PU_UPDATE) || ((f & IDS_PU_ADOPT) && (u->changed & ~(unsigned)IDS_CH_AUTH)))) {
		ids_buf_reset(&d);
		r = update_detail(&d, u, idp);
		if (r >= 0)
			r = audit_row(a, "update", uid, d.p);
	}
	if (r >= 0 && (f & IDS_PU_DEACTIVATE)) {
		ids_buf_reset(&d);
		r = json_kv(&d, "reason", u->reason, true);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, "deactivate", uid, d.p);
	}
	if (r >= 0 && (f & IDS_PU_REASON)) {
		/* already inactive: only the reason moves, as an update */
		bool first = true;
		ids_buf_reset(&d);
		r = json_change(&d, "deactivation_reason", c ? c->reason : NULL, u->reason, &first);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, "update", uid, d.p);
	}
	if (r >= 0 && (f & IDS_PU_CONFLICT)) {
		ids_buf_reset(&d);
		r = json_kv(&d, "external_id", u->external_id, true);
		if (r >= 0)
			r = json_kv(&d, "username", u->username, false);
		if (r >= 0)
			r = json_kv(&d, "reason", u->reason, false);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, "conflict", uid, d.p);
	}
	if (r >= 0 && (f & IDS_PU_SKIP_INVALID)) {
		ids_buf_reset(&d);
		r = json_kv(&d, "external_id", u->external_id, true);
		if (r >= 0)
			r = json_kv(&d, "reason", u->reason, false);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, "skip_invalid", uid, d.p);
	}
	ids_buf_free(&d);
	return r;
}

/* One grant of a user's grant or revoke list: {"kind":..,"tenant":..,"name":..}
 * (with slots, old_slots for a changed value, and "rules": the names of
 * the rules that produced an added or changed grant, or of the revoke
 * rules behind a removal — config.md promises them in the audit). */
static int grant_json(struct ids_buf *d, const struct ids_plan *p, const struct ids_plan_grant *g)
{
	const struct ids_rule_list *rl = ids_plan_grant_rules(p, g);
	int r = json_kv(d, "kind", ids_plan_kind_word(g->kind), true);
	if (r >= 0)
		r = json_kv(d, "tenant", g->tenant, false);
	if (r >= 0)
		r = json_kv(d, "name", g->name, false);
	if (r >= 0 && g->kind == IDS_GRANT_SLOT)
		r = ids_buf_printf(d, ",\"slots\":%d", g->slots);
	if (r >= 0 && g->op == IDS_GOP_CHANGE)
		r = ids_buf_printf(d, ",\"old_slots\":%d", g->old_slots);
	/* the grant was there already: only the rules behind it changed */
	if (r >= 0 && g->op == IDS_GOP_RULES)
		r = ids_buf_puts(d, ",\"provenance_only\":true");
	if (r >= 0 && rl) {
		r = ids_buf_puts(d, ",\"rules\":[");
		for (size_t i = 0; r >= 0 && i < rl->n; i++) {
			if (i)
				r = ids_buf_putc(d, ',');
			if (r >= 0)
				r = json_str(d, rl->names[i]);
		}
		if (r >= 0)
			r = ids_buf_putc(d, ']');
	}
	return r < 0 ? r : ids_buf_putc(d, '}');
}

/* The audit rows of the grants g[0..n) of one user (one external id, row
 * uid): a `grant` row listing what was added or changed, a `revoke` row
 * listing what was removed, each only when there is something to list. */
static int audit_grants(struct apply *a, const struct ids_plan_grant *g, size_t n, int64_t uid,
			struct ids_buf *d)
{
	int r = 0;
	for (int revoke = 0; revoke < 2 && r >= 0; revoke++) {
		bool any = false;
		ids_buf_reset(d);
		r = ids_buf_puts(d, "{\"grants\":[");
		for (size_t i = 0; i < n && r >= 0; i++) {
			if ((g[i].op == IDS_GOP_REMOVE) != (revoke == 1))
				continue;
			if (any)
				r = ids_buf_putc(d, ',');
			if (r >= 0)
				r = grant_json(d, a->p, &g[i]);
			any = true;
		}
		if (r >= 0 && any)
			r = ids_buf_puts(d, "]}");
		if (r >= 0 && any)
			r = audit_row(a, revoke ? "revoke" : "grant", uid, d->p);
	}
	return r;
}

/* ---------------- ids by name ---------------- */

/* copy: name is not the plan's (which lives as long as the apply) */
static int by_name_add(struct ids_by_name *m, const char *name, int64_t id, bool copy)
{
	int r = ids_grow(&m->id, &m->cap, m->n + 1, sizeof(*m->id));
	if (r < 0)
		return r;
	const char *k = copy ? ids_arena_strdup(&m->keys, name) : name;
	if (!k)
		return -ENOMEM;
	r = ids_strmap_put(&m->map, k, (uint32_t)m->n, NULL);
	if (r > 0)
		m->id[m->n++] = id;
	return r < 0 ? r : 0;
}

/* The id of name, 0 when unknown. */
static int64_t by_name_get(const struct ids_by_name *m, const char *name)
{
	uint32_t i;
	return name && ids_strmap_get(&m->map, name, &i) ? m->id[i] : 0;
}

static void by_name_free(struct ids_by_name *m)
{
	ids_strmap_free(&m->map);
	free(m->id);
	ids_arena_free(&m->keys);
	*m = (struct ids_by_name){0};
}

/* Reads (id, name) rows of sql ($1 the company) into m. */
static int by_name_load(struct apply *a, struct ids_by_name *m, const char *sql, const char *what)
{
	PGresult *res = NULL;
	const char *prm[] = {a->company};
	int r = ids_store_exec(a->st, sql, 1, prm, PGRES_TUPLES_OK, &res, what, a->err);
	for (int i = 0, n = r < 0 ? 0 : PQntuples(res); i < n && r >= 0; i++) {
		int64_t id;
		if (ids_store_parse_i64(PQgetvalue(res, i, 0), &id) < 0)
			r = ids_error_set(a->err, IDS_E_DB, "%s: not an id: %s", what, PQgetvalue(res, i, 0));
		else
			r = by_name_add(m, PQgetvalue(res, i, 1), id, true);
	}
	PQclear(res);
	return r;
}

/* The "slug\tname" key of an operator group, in a->key. */
static const char *group_key(struct apply *a, const char *tenant, const char *name)
{
	ids_buf_reset(&a->key);
	if (ids_buf_puts(&a->key, tenant) < 0 || ids_buf_putc(&a->key, '\t') < 0 ||
	    ids_buf_puts(&a->key, name) < 0)
		return NULL;
	return a->key.p;
}

/* Looks up (once per user: the cache) the row of a grant's user. */
static void grant_lookup(struct apply *a, const struct ids_plan_grant *g)
{
	if (g->external_id && g->external_id == a->last_ext)
		return;
	int64_t id = g->user_id ? 0 : by_name_get(&a->created, g->external_id);
	a->last_created = id != 0;
	a->last_uid = id ? id : g->user_id ? g->user_id : by_name_get(&a->found, g->external_id);
	a->last_ext = g->external_id;
}

/* The row of a grant's user: the one drawn for a user the plan creates,
 * the one the plan loaded, or the one found by external id; 0 when none. */
static int64_t grant_user(struct apply *a, const struct ids_plan_grant *g)
{
	grant_lookup(a, g);
	return a->last_uid;
}

static bool is_created(struct apply *a, const struct ids_plan_grant *g)
{
	grant_lookup(a, g);
	return a->last_created;
}

static int64_t tenant_id(struct apply *a, const char *slug)
{
	if (!slug || slug != a->last_tenant) {
		a->last_tid = by_name_get(&a->tenants, slug);
		a->last_tenant = slug;
	}
	return a->last_tid;
}

/* The row of a plan user: its own, or the one drawn when it is created. */
static int64_t plan_user_id(const struct apply *a, const struct ids_plan_user *u)
{
	if (u->id)
		return u->id;
	return (u->flags & IDS_PU_CREATE) ? by_name_get(&a->created, u->external_id) : 0;
}

/* ---------------- staging ---------------- */

/* Expected row counts of the user statements, from the plan, and how
 * many grants of each op and kind were staged (statements with nothing to
 * do are not sent: a resync that changes nothing costs a few round
 * trips, not thirty). */
struct expect {
	long adopt, deactivate, reason, update, reactivate, create;
	long grants[4][IDS_GRANT__COUNT]; /* [op][kind], staged ones */
	long direct[IDS_GRANT__COUNT];	  /* adds for created users, by kind */
	long tenants, groups;		  /* new tenants, groups named */
	long unresolved;		  /* staged grants whose plan has no user_id */
};

/* Draws an id from app_user's sequence for every user the plan creates,
 * in plan order (nextval one by one: the platform may insert users
 * meanwhile, and each value is ours alone). */
static int draw_ids(struct apply *a, struct expect *e)
{
	const struct ids_plan *p = a->p;
	size_t next = 0; /* the next plan user to look at */
	int r = 0;
	for (size_t i = 0; i < p->nusers; i++)
		e->create += !!(p->users[i].flags & IDS_PU_CREATE);
	/* in batches: a million ids never sit in one result */
	for (long left = e->create; left > 0 && r >= 0;) {
		PGresult *res = NULL;
		char n[24];
		long batch = left < 65536 ? left : 65536;
		snprintf(n, sizeof(n), "%ld", batch);
		const char *prm[] = {n};
		r = ids_store_exec(a->st,
				   "SELECT nextval(pg_catalog.pg_get_serial_sequence('app_user', 'id'))"
				   " FROM pg_catalog.generate_series(1, $1::int)",
				   1, prm, PGRES_TUPLES_OK, &res, "drawing user ids", a->err);
		if (r < 0)
			break;
		if (PQntuples(res) != batch)
			r = ids_error_set(a->err, IDS_E_DB, "drawing user ids: %d ids for %ld users",
					  PQntuples(res), batch);
		for (int k = 0; k < batch && r >= 0; next++) {
			const struct ids_plan_user *u = &p->users[next];
			int64_t id;
			if (!(u->flags & IDS_PU_CREATE))
				continue;
			if (!u->external_id)
				r = ids_error_set(a->err, IDS_E_INVALID,
						  "plan: a user to create has no external id");
			else if (ids_store_parse_i64(PQgetvalue(res, k++, 0), &id) < 0)
				r = ids_error_set(a->err, IDS_E_DB, "drawing user ids: not an id");
			else if (by_name_get(&a->created, u->external_id))
				r = ids_error_set(a->err, IDS_E_INVALID, "plan: user %s created twice",
						  u->external_id);
			else
				r = by_name_add(&a->created, u->external_id, id, false);
		}
		PQclear(res);
		left -= batch;
	}
	return r;
}

static int stage_tenants(struct apply *a, struct expect *e)
{
	const struct ids_plan *p = a->p;
	e->tenants = (long)p->new_tenants.n;
	int r = copy_begin(a, "COPY pg_temp.ids_s_tenant (slug) FROM STDIN");
	for (size_t i = 0; i < p->new_tenants.n && r >= 0; i++) {
		r = copy_field(&a->copy, p->new_tenants.v[i], true);
		if (r >= 0)
			r = copy_row_end(a);
	}
	return r < 0 ? r : copy_end(a, "staging the tenants", false);
}

/* The operator groups memberships are added to, each once. */
static int stage_groups(struct apply *a, struct expect *e)
{
	const struct ids_plan *p = a->p;
	struct ids_strmap seen = {0};
	struct ids_arena keys = {0};
	int r = copy_begin(a, "COPY pg_temp.ids_s_group (tenant, name) FROM STDIN");
	for (size_t i = 0; i < p->ngrants && r >= 0; i++) {
		const struct ids_plan_grant *g = &p->grants[i];
		if (g->op != IDS_GOP_ADD || g->kind != IDS_GRANT_GROUP || !g->tenant || !g->name)
			continue;
		const char *k = group_key(a, g->tenant, g->name);
		char *c = k ? ids_arena_strdup(&keys, k) : NULL;
		r = c ? ids_strmap_put(&seen, c, 0, NULL) : -ENOMEM;
		if (r <= 0)
			continue;
		e->groups++;
		r = copy_field(&a->copy, g->tenant, true);
		if (r >= 0)
			r = copy_field(&a->copy, g->name, false);
		if (r >= 0)
			r = copy_row_end(a);
	}
	ids_strmap_free(&seen);
	ids_arena_free(&keys);
	return r < 0 ? r : copy_end(a, "staging the operator groups", false);
}

/* Users whose row changes; the ones created go in directly (create_users). */
static int stage_users(struct apply *a, struct expect *e)
{
	const struct ids_plan *p = a->p;
	int r = copy_begin(a, "COPY pg_temp.ids_s_user FROM STDIN");
	for (size_t i = 0; i < p->nusers && r >= 0; i++) {
		const struct ids_plan_user *u = &p->users[i];
		unsigned f = u->flags, ch = u->changed;
		/* conflicts and invalid users change nothing: audit rows only */
		if (!(f &
		      (IDS_PU_ADOPT | IDS_PU_UPDATE | IDS_PU_DEACTIVATE | IDS_PU_REACTIVATE | IDS_PU_REASON)))
			continue;
		e->adopt += !!(f & IDS_PU_ADOPT);
		e->update += !!(f & (IDS_PU_UPDATE | IDS_PU_ADOPT));
		e->deactivate += !!(f & IDS_PU_DEACTIVATE);
		e->reactivate += !!(f & IDS_PU_REACTIVATE);
		e->reason += !!(f & IDS_PU_REASON);
		const char *text[] = {u->external_id, u->username,  u->email,
				      u->first_name,  u->last_name, u->display_name};
		const bool bits[] = {
		    f & IDS_PU_ADOPT,	      f & IDS_PU_UPDATE,	 f & IDS_PU_DEACTIVATE,
		    f & IDS_PU_REACTIVATE,    f & IDS_PU_REASON,	 ch & IDS_CH_USERNAME,
		    ch & IDS_CH_EMAIL,	      ch & IDS_CH_FIRST_NAME,	 ch & IDS_CH_LAST_NAME,
		    ch & IDS_CH_DISPLAY_NAME, ch & IDS_CH_COMPANY_ADMIN, ch & IDS_CH_AUTH,
		};
		r = copy_num(&a->copy, u->id, true, true);
		for (size_t k = 0; k < sizeof(text) / sizeof(text[0]) && r >= 0; k++)
			r = copy_field(&a->copy, text[k], false);
		if (r >= 0)
			r = copy_bool(&a->copy, u->company_admin);
		if (r >= 0)
			r = copy_field(&a->copy, (f & (IDS_PU_DEACTIVATE | IDS_PU_REASON)) ? u->reason : NULL,
				       false);
		for (size_t k = 0; k < sizeof(bits) / sizeof(bits[0]) && r >= 0; k++)
			r = copy_bool(&a->copy, bits[k]);
		if (r >= 0)
			r = copy_row_end(a);
	}
	return r < 0 ? r : copy_end(a, "staging the users", false);
}

/* The rules behind grant g as a COPY field holding a text[] literal
 * ({"a","b"}: every name quoted, '"' and '\\' escaped), NULL when none (a
 * removal, or a hand-made plan).  The row's provenance (005_grant_rules). */
static int copy_rules(struct apply *a, const struct ids_plan_grant *g)
{
	const struct ids_rule_list *l = g->op == IDS_GOP_REMOVE ? NULL : ids_plan_grant_rules(a->p, g);
	if (!l || !l->n)
		return copy_field(&a->copy, NULL, false);
	ids_buf_reset(&a->lit);
	int r = ids_buf_putc(&a->lit, '{');
	for (size_t i = 0; r >= 0 && i < l->n; i++) {
		r = ids_buf_puts(&a->lit, i ? ",\"" : "\"");
		for (const char *c = l->names[i]; r >= 0 && *c; c++)
			r = (*c == '"' || *c == '\\') ? ids_buf_printf(&a->lit, "\\%c", *c)
						      : ids_buf_putc(&a->lit, *c);
		if (r >= 0)
			r = ids_buf_putc(&a->lit, '"');
	}
	if (r >= 0)
		r = ids_buf_putc(&a->lit, '}');
	return r < 0 ? r : copy_field(&a->copy, a->lit.p, false);
}

/* The staged grant's op, as ids_s_grant.op holds it. */
static const char *const gop_words[] = {[IDS_GOP_ADD] = "add",
					[IDS_GOP_REMOVE] = "remove",
					[IDS_GOP_CHANGE] = "change",
					[IDS_GOP_RULES] = "rules"};

/* Grant changes on users that have a row, with the ids the statements
 * need: the user's row (the plan's, checked by check_users) and the
 * target's, the tenant (or for a membership the operator group) read from
 * the company's own rows — a name the company does not have stages NULL,
 * which no statement matches.  The adds of users the plan creates are only
 * counted here (create_grants writes them). */
static int stage_grants(struct apply *a, struct expect *e)
{
	const struct ids_plan *p = a->p;
	int r = copy_begin(a, "COPY pg_temp.ids_s_grant FROM STDIN");
	for (size_t i = 0; i < p->ngrants && r >= 0; i++) {
		const struct ids_plan_grant *g = &p->grants[i];
		if (g->op == IDS_GOP_ADD && is_created(a, g))
			continue;
		e->grants[g->op][g->kind]++;
		e->unresolved += g->user_id == 0;
		int64_t target = g->kind == IDS_GRANT_GROUP
				     ? by_name_get(&a->groups, group_key(a, g->tenant, g->name))
				     : tenant_id(a, g->tenant);
		r = copy_field(&a->copy, gop_words[g->op], true);
		if (r >= 0)
			r = copy_field(&a->copy, ids_plan_kind_word(g->kind), false);
		if (r >= 0)
			r = copy_num(&a->copy, g->user_id, true, false);
		if (r >= 0)
			r = copy_field(&a->copy, g->external_id, false);
		if (r >= 0)
			r = copy_num(&a->copy, target, true, false);
		if (r >= 0)
			r = copy_field(&a->copy, g->name, false);
		if (r >= 0)
			r = g->kind == IDS_GRANT_SLOT ? copy_num(&a->copy, g->slots, false, false)
						      : copy_field(&a->copy, NULL, false);
		if (r >= 0)
			r = copy_rules(a, g);
		if (r >= 0)
			r = copy_row_end(a);
	}
	return r < 0 ? r : copy_end(a, "staging the grants", false);
}

/* Checks the plan's grants before staging: every one complete, and
 * counts the adds of created users (e->direct). */
static int check_grants(struct apply *a, struct expect *e, bool *any_group)
{
	const struct ids_plan *p = a->p;
	*any_group = false;
	for (size_t i = 0; i < p->ngrants; i++) {
		const struct ids_plan_grant *g = &p->grants[i];
		if ((unsigned)g->op > IDS_GOP_RULES || (unsigned)g->kind >= IDS_GRANT__COUNT ||
		    !g->external_id || !g->tenant || !g->name)
			return ids_error_set(a->err, IDS_E_INVALID, "plan: grant %zu is incomplete", i);
		if (g->op == IDS_GOP_CHANGE && g->kind != IDS_GRANT_SLOT) /* only a slot has a value */
			return ids_error_set(a->err, IDS_E_INVALID,
					     "plan: grant %zu changes a value it has not", i);
		*any_group |= g->kind == IDS_GRANT_GROUP;
		if (g->op == IDS_GOP_ADD && is_created(a, g))
			e->direct[g->kind]++;
	}
	return 0;
}

/* ---------------- the statements ---------------- */

static int apply_users(struct apply *a, const struct expect *e)
{
	int r = stmt(a, "adopting users",
		     "UPDATE app_user u SET source = $2, external_id = s.external_id, auth_method = 'sso',"
		     " idp = $4, updated_at = now()"
		     " FROM pg_temp.ids_s_user s"
		     " WHERE s.op_adopt AND u.id = s.id AND u.company_id = $1 AND u.source IS NULL",
		     e->adopt);
	/* Deactivations before anything else frees e-mail addresses (unique
	 * among active users only) for the updates and creates below. */
	if (r >= 0)
		r = stmt(a, "deactivating users",
			 "UPDATE app_user u SET active = false, deactivated_at = now(),"
			 " deactivation_reason = s.reason, updated_at = now()"
			 " FROM pg_temp.ids_s_user s"
			 " WHERE s.op_deactivate AND u.id = s.id AND u.company_id = $1 AND u.source = $2"
			 " AND u.external_id = s.external_id",
			 e->deactivate);
	if (r >= 0)
		r = stmt(a, "updating deactivation reasons",
			 "UPDATE app_user u SET deactivation_reason = s.reason, updated_at = now()"
			 " FROM pg_temp.ids_s_user s"
			 " WHERE s.op_reason AND u.id = s.id AND u.company_id = $1 AND u.source = $2"
			 " AND u.external_id = s.external_id",
			 e->reason);
	/* Only the changed columns: a column nobody changed in the directory
	 * keeps whatever the row has now. */
	if (r >= 0)
		r = stmt(
		    a, "updating users",
		    "UPDATE app_user u SET"
		    " username = CASE WHEN s.ch_username THEN s.username ELSE u.username END,"
		    " email = CASE WHEN s.ch_email THEN s.email ELSE u.email END,"
		    " first_name = CASE WHEN s.ch_first_name THEN s.first_name ELSE u.first_name END,"
		    " last_name = CASE WHEN s.ch_last_name THEN s.last_name ELSE u.last_name END,"
		    " display_name = CASE WHEN s.ch_display_name THEN s.display_name ELSE u.display_name END,"
		    " company_admin = CASE WHEN s.ch_company_admin THEN s.company_admin"
		    " ELSE u.company_admin END,"
		    " auth_method = CASE WHEN s.ch_auth THEN 'sso' ELSE u.auth_method END,"
		    " idp = CASE WHEN s.ch_auth THEN $4 ELSE u.idp END,"
		    " updated_at = now()"
		    " FROM pg_temp.ids_s_user s"
		    " WHERE (s.op_update OR s.op_adopt) AND u.id = s.id AND u.company_id = $1"
		    " AND u.source = $2 AND u.external_id = s.external_id",
		    e->update);
	if (r >= 0)
		r = stmt(
		    a, "reactivating users",
		    "UPDATE app_user u SET active = true, deactivated_at = NULL, deactivation_reason = NULL,"
		    " updated_at = now()"
		    " FROM pg_temp.ids_s_user s"
		    " WHERE s.op_reactivate AND u.id = s.id AND u.company_id = $1 AND u.source = $2"
		    " AND u.external_id = s.external_id",
		    e->reactivate);
	return r;
}

/* The users the plan creates, straight into app_user with their drawn
 * ids, in plan order. */
static int create_users(struct apply *a, const struct expect *e)
{
	const struct ids_plan *p = a->p;
	long before = a->rows;
	if (!e->create)
		return 0;
	int r =
	    copy_begin(a, "COPY app_user (id, company_id, source, external_id, username, email, first_name,"
			  " last_name, display_name, auth_method, idp, company_admin) FROM STDIN");
	for (size_t i = 0; i < p->nusers && r >= 0; i++) {
		const struct ids_plan_user *u = &p->users[i];
		if (!(u->flags & IDS_PU_CREATE))
			continue;
		const char *text[] = {a->params[1], u->external_id,  u->username, u->email,    u->first_name,
				      u->last_name, u->display_name, "sso",	  a->params[3]};
		r = copy_num(&a->copy, by_name_get(&a->created, u->external_id), false, true);
		if (r >= 0)
			r = copy_field(&a->copy, a->company, false);
		for (size_t k = 0; k < sizeof(text) / sizeof(text[0]) && r >= 0; k++)
			r = copy_field(&a->copy, text[k], false);
		if (r >= 0)
			r = copy_bool(&a->copy, u->company_admin);
		if (r >= 0)
			r = copy_row_end(a);
	}
	if (r >= 0)
		r = copy_end(a, "creating users", true);
	if (r >= 0 && a->rows - before != e->create)
		r = ids_error_set(a->err, IDS_E_DB, "creating users: %ld of %ld written", a->rows - before,
				  e->create);
	return r;
}

/* Grant tables with a (user, tenant, name) key; operator groups have
 * their own statements (the name leads to a group row). */
static const struct {
	enum ids_grant_kind kind;
	const char *word, *table, *column;
} grant_tables[] = {
    {IDS_GRANT_ROLE, "role", "tenant_role", "role"},
    {IDS_GRANT_CHANNEL, "channel", "channel_grant", "channel"},
    {IDS_GRANT_SLOT, "slot", "slot_limit", "channel_group"},
};

/* The users of the staged grants: a grant of a hand-made plan without a
 * user_id is given one by (connector, external id), and found keeps it for
 * the audit.  Then every staged user id is checked to be the connector's
 * user with that external id in this company: the statements reach grant
 * rows by user id alone, so this one check is what keeps them to the
 * company's users.  A user gone or changed since the load undoes the run. */
static int check_users(struct apply *a, const struct expect *e)
{
	long staged = 0, rows = a->rows;
	PGresult *res = NULL;
	int r = 0;
	for (int op = 0; op <= IDS_GOP_RULES; op++)
		for (int k = 0; k < IDS_GRANT__COUNT; k++)
			staged += e->grants[op][k];
	if (!staged)
		return 0;
	if (e->unresolved) {
		r = stmt(a, "finding users",
			 "UPDATE pg_temp.ids_s_grant g SET user_id = u.id FROM app_user u"
			 " WHERE g.user_id IS NULL AND u.company_id = $1 AND u.source = $2"
			 " AND u.external_id = g.external_id",
			 -1);
		/* staging rows are not the database's: not counted as written */
		a->rows = rows;
		if (r >= 0)
			r = by_name_load(a, &a->found,
					 "SELECT DISTINCT user_id, external_id FROM pg_temp.ids_s_grant"
					 " WHERE user_id IS NOT NULL AND $1::bigint IS NOT NULL",
					 "finding users");
		a->last_ext = NULL; /* looked up before the users were found */
		if (r < 0)
			return r;
	}
	const char *prm[] = {a->params[0], a->params[1]};
	r = ids_store_exec(a->st,
			   "SELECT count(*), count(u.id) FROM"
			   " (SELECT DISTINCT user_id, external_id FROM pg_temp.ids_s_grant"
			   " WHERE user_id IS NOT NULL) s"
			   " LEFT JOIN app_user u ON u.id = s.user_id AND u.company_id = $1::bigint"
			   " AND u.source = $2 AND u.external_id = s.external_id",
			   2, prm, PGRES_TUPLES_OK, &res, "checking users", a->err);
	if (r >= 0 && strcmp(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1)) != 0)
		r = ids_error_set(a->err, IDS_E_DB,
				  "checking users: %s of %s users whose grants change matched: the database "
				  "changed since the plan was made; nothing was applied",
				  PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0));
	PQclear(res);
	return r;
}

/* The staged grants of op matched to the connector's rows (x.source =
 * $2: a hand-made row, source NULL, is never touched), one statement a
 * table: `set` NULL deletes them, otherwise it is the UPDATE's SET list. */
static int match_grants(struct apply *a, const struct expect *e, enum ids_grant_op op, const char *set,
			const char *what)
{
	struct ids_buf sql = {0};
	int r = 0;
	for (size_t i = 0; i <= sizeof(grant_tables) / sizeof(grant_tables[0]) && r >= 0; i++) {
		/* past the grant tables: operator_group_member, whose name led to the group row */
		bool group = i == sizeof(grant_tables) / sizeof(grant_tables[0]);
		if (!e->grants[op][group ? IDS_GRANT_GROUP : grant_tables[i].kind])
			continue;
		ids_buf_reset(&sql);
		r = ids_buf_printf(&sql, set ? "UPDATE %s x SET %s FROM" : "DELETE FROM %s x USING%s",
				   group ? "operator_group_member" : grant_tables[i].table, set ? set : "");
		if (r >= 0)
			r = ids_buf_printf(&sql,
					   " pg_temp.ids_s_grant g WHERE g.op = '%s' AND g.kind = '%s'"
					   " AND x.user_id = g.user_id AND x.%s = g.target",
					   gop_words[op], group ? "group" : grant_tables[i].word,
					   group ? "group_id" : "tenant_id");
		if (r >= 0 && !group)
			r = ids_buf_printf(&sql, " AND x.%s = g.name", grant_tables[i].column);
		if (r >= 0)
			r = ids_buf_puts(&sql, " AND x.source = $2");
		if (r >= 0)
			r = stmt(a, what, sql.p, -1);
	}
	ids_buf_free(&sql);
	return r;
}

static int apply_grants(struct apply *a, const struct expect *e)
{
	struct ids_buf sql = {0};
	/* removals first, so that an addition never meets the row it replaces */
	int r = match_grants(a, e, IDS_GOP_REMOVE, NULL, "removing grants");

	/* Additions to existing users: a row with the same key made by hand
	 * meanwhile stays as it is. */
	for (size_t i = 0; i < sizeof(grant_tables) / sizeof(grant_tables[0]) && r >= 0; i++) {
		bool slot = grant_tables[i].kind == IDS_GRANT_SLOT;
		if (!e->grants[IDS_GOP_ADD][grant_tables[i].kind])
			continue;
		ids_buf_reset(&sql);
		r = ids_buf_printf(
		    &sql,
		    "INSERT INTO %s (user_id, tenant_id, %s, %ssource, rules)"
		    " SELECT g.user_id, g.target, g.name, %s$2, g.rules FROM pg_temp.ids_s_grant g"
		    " WHERE g.op = 'add' AND g.kind = '%s' AND g.user_id IS NOT NULL"
		    " AND g.target IS NOT NULL ON CONFLICT DO NOTHING",
		    grant_tables[i].table, grant_tables[i].column, slot ? "slots, " : "",
		    slot ? "g.slots, " : "", grant_tables[i].word);
		if (r >= 0)
			r = stmt(a, "adding grants", sql.p, -1);
	}
	if (r >= 0 && e->grants[IDS_GOP_ADD][IDS_GRANT_GROUP])
		r = stmt(a, "adding group memberships",
			 "INSERT INTO operator_group_member (group_id, user_id, source, rules)"
			 " SELECT g.target, g.user_id, $2, g.rules FROM pg_temp.ids_s_grant g"
			 " WHERE g.op = 'add' AND g.kind = 'group' AND g.user_id IS NOT NULL"
			 " AND g.target IS NOT NULL ON CONFLICT DO NOTHING",
			 -1);

	/* new slot values; then rows that stay whose rules changed: only
	 * their provenance is written */
	if (r >= 0)
		r = match_grants(a, e, IDS_GOP_CHANGE, "slots = g.slots, rules = g.rules", "changing slots");
	ids_buf_free(&sql);
	return r < 0 ? r
		     : match_grants(a, e, IDS_GOP_RULES, "rules = g.rules", "recording the rules of grants");
}

/* The grants of the users the plan creates, straight into their tables:
 * tenant and group ids come from the database, a grant in a tenant (or
 * group) the company does not have is dropped, as the join of the
 * statements above drops it. */
static int create_grants(struct apply *a, const struct expect *e)
{
	static const char *const copy_sql[] = {
	    [IDS_GRANT_ROLE] = "COPY tenant_role (user_id, tenant_id, role, source, rules) FROM STDIN",
	    [IDS_GRANT_CHANNEL] =
		"COPY channel_grant (user_id, tenant_id, channel, source, rules) FROM STDIN",
	    [IDS_GRANT_GROUP] = "COPY operator_group_member (user_id, group_id, source, rules) FROM STDIN",
	    [IDS_GRANT_SLOT] =
		"COPY slot_limit (user_id, tenant_id, channel_group, slots, source, rules) FROM STDIN",
	};
	const struct ids_plan *p = a->p;
	int r = 0;
	for (int k = 0; k < IDS_GRANT__COUNT && r >= 0; k++) {
		if (!e->direct[k])
			continue;
		const struct ids_plan_grant *prev = NULL;
		r = copy_begin(a, copy_sql[k]);
		for (size_t i = 0; i < p->ngrants && r >= 0; i++) {
			const struct ids_plan_grant *g = &p->grants[i];
			if ((int)g->kind != k || g->op != IDS_GOP_ADD || !is_created(a, g))
				continue;
			/* the same grant twice (a hand-made plan) would break the key */
			if (prev && !strcmp(prev->external_id, g->external_id) &&
			    !strcmp(prev->tenant, g->tenant) && !strcmp(prev->name, g->name))
				continue;
			prev = g;
			int64_t target = k == IDS_GRANT_GROUP
					     ? by_name_get(&a->groups, group_key(a, g->tenant, g->name))
					     : tenant_id(a, g->tenant);
			if (!target)
				continue;
			r = copy_num(&a->copy, grant_user(a, g), false, true);
			if (r >= 0)
				r = copy_num(&a->copy, target, false, false);
			if (r >= 0 && k != IDS_GRANT_GROUP)
				r = copy_field(&a->copy, g->name, false);
			if (r >= 0 && k == IDS_GRANT_SLOT)
				r = copy_num(&a->copy, g->slots, false, false);
			if (r >= 0)
				r = copy_field(&a->copy, a->params[1], false);
			if (r >= 0)
				r = copy_rules(a, g);
			if (r >= 0)
				r = copy_row_end(a);
		}
		if (r >= 0)
			r = copy_end(a, "adding grants", true);
	}
	return r;
}

/* Every audit row, straight into audit_log: the users' changes in plan
 * order, then per user one grant and one revoke row. */
static int write_audit(struct apply *a, const char *idp)
{
	const struct ids_plan *p = a->p;
	struct ids_buf d = {0};
	int r = copy_begin(a, "COPY audit_log (run_id, user_id, action, detail) FROM STDIN");
	for (size_t i = 0; i < p->nusers && r >= 0; i++)
		r = audit_user(a, &p->users[i], plan_user_id(a, &p->users[i]), idp);
	/* the plan keeps a user's grants together: one run per user */
	for (size_t i = 0, j; i < p->ngrants && r >= 0; i = j) {
		for (j = i + 1;
		     j < p->ngrants && ids_strcmp0(p->grants[j].external_id, p->grants[i].external_id) == 0;
		     j++)
			;
		r = audit_grants(a, &p->grants[i], j - i, grant_user(a, &p->grants[i]), &d);
	}
	ids_buf_free(&d);
	return r < 0 ? r : copy_end(a, "writing the audit log", true);
}

/* Sends one of keyed_sql / bulk_sql. */
static int set_joins(struct apply *a, const char *sql)
{
	PGresult *res = PQexec(a->st->conn, sql);
	int r = 0;
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
		r = ids_store_fail(a->st, res, "choosing join methods", a->err);
	PQclear(res);
	return r;
}

/* Statistics that are missing, or say far fewer rows than the connector
 * alone has, are renewed (ANALYZE may run in the transaction; it blocks no
 * writer).  That is the first resync after a large initial sync, before
 * autovacuum has analysed the tables: a planner without column statistics
 * estimates one company user where there are 20,000 and loops over all of
 * them for every staged row, join methods set or not (6-16 s at 20,000
 * users, found by t_fault_21).  An insert-triggered autovacuum sets
 * reltuples but no column statistics: hence both checks. */
static int refresh_stats(struct apply *a)
{
	PGresult *res = NULL;
	int r = ids_store_exec(
	    a->st,
	    "SELECT c.relname, c.reltuples, EXISTS (SELECT 1 FROM pg_catalog.pg_stats s"
	    " WHERE s.schemaname = n.nspname AND s.tablename = c.relname)"
	    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	    " WHERE c.oid IN ('app_user'::regclass, 'tenant_role'::regclass,"
	    " 'channel_grant'::regclass, 'slot_limit'::regclass, 'operator_group_member'::regclass)"
	    " ORDER BY c.relname <> 'app_user'",
	    0, NULL, PGRES_TUPLES_OK, &res, "reading table statistics", a->err);
	double grants = 0;
	int n = r < 0 ? 0 : PQntuples(res);
	for (int i = 1; i < n; i++) {
		double t = strtod(PQgetvalue(res, i, 1), NULL);
		grants += t < 0 ? 0 : t;
	}
	/* row 0 is app_user, the others the grant tables */
	for (int i = 0; i < n && r >= 0; i++) {
		double rows = strtod(PQgetvalue(res, i, 1), NULL), have = i == 0 ? rows : grants;
		double want = i == 0 ? (double)a->p->active_managed : (double)a->p->managed_grants;
		bool no_stats = strcmp(PQgetvalue(res, i, 2), "t") != 0;
		if (want <= 0 || (!no_stats && have >= want / 2))
			continue;
		struct ids_buf sql = {0};
		r = ids_buf_printf(&sql, "ANALYZE %s", PQgetvalue(res, i, 0));
		if (r >= 0)
			r = ids_store_exec(a->st, sql.p, 0, NULL, PGRES_COMMAND_OK, NULL,
					   "renewing table statistics", a->err);
		ids_buf_free(&sql);
	}
	PQclear(res);
	return r;
}

/* Stages the plan and runs the statements, inside the caller's
 * transaction. */
static int apply_changes(struct apply *a, const char *idp)
{
	struct ids_store *st = a->st;
	const struct ids_plan *p = a->p;
	struct expect e = {0};
	PGresult *res = NULL;
	bool any_group;
	int r = draw_ids(a, &e);
	if (r >= 0)
		r = check_grants(a, &e, &any_group);
	if (r < 0)
		return r;
	res = PQexec(st->conn, staging_sql);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
		r = ids_store_fail(st, res, "creating the staging tables", a->err);
	PQclear(res);
	if (r < 0)
		return r;

	/* Tenants and operator groups first: the staged grants carry their
	 * ids. */
	if ((r = stage_tenants(a, &e)) < 0 || (r = stage_groups(a, &e)) < 0 || (r = stage_users(a, &e)) < 0)
		return r;
	r = stmt(a, "creating tenants",
		 "INSERT INTO tenant (company_id, slug, name) SELECT DISTINCT $1, slug, slug FROM "
		 "pg_temp.ids_s_tenant"
		 " ON CONFLICT (company_id, slug) DO NOTHING",
		 e.tenants ? -1 : 0);
	if (r >= 0 && p->ngrants)
		r = by_name_load(a, &a->tenants, "SELECT id, slug FROM tenant WHERE company_id = $1::bigint",
				 "reading tenants");
	/* Operator groups that a membership needs and the tenant lacks. */
	if (r >= 0 && e.groups)
		r = stmt(a, "creating operator groups",
			 "INSERT INTO operator_group (tenant_id, name)"
			 " SELECT DISTINCT t.id, g.name FROM pg_temp.ids_s_group g"
			 " JOIN tenant t ON t.company_id = $1 AND t.slug = g.tenant"
			 " ON CONFLICT (tenant_id, name) DO NOTHING",
			 -1);
	if (r >= 0 && any_group)
		r = by_name_load(a, &a->groups,
				 "SELECT g.id, t.slug || E'\\t' || g.name FROM operator_group g"
				 " JOIN tenant t ON t.id = g.tenant_id WHERE t.company_id = $1::bigint",
				 "reading operator groups");
	if (r >= 0)
		r = stage_grants(a, &e);

	/* Changes to existing rows, by key. */
	if (r >= 0)
		r = refresh_stats(a);
	if (r >= 0)
		r = set_joins(a, keyed_sql);
	if (r >= 0)
		r = apply_users(a, &e);
	/* New users and their grants, by COPY; the isolation triggers join
	 * the new rows with app_user: by key when they are few next to the
	 * users the company has (a hash join would read all of them for each
	 * table), in bulk otherwise (an initial sync). */
	long most = e.create;
	for (int k = 0; k < IDS_GRANT__COUNT; k++)
		most = e.direct[k] > most ? e.direct[k] : most;
	bool bulk = most && most * 8 >= p->active_managed;
	if (r >= 0 && bulk)
		r = set_joins(a, bulk_sql);
	if (r >= 0)
		r = create_users(a, &e);
	if (r >= 0)
		r = create_grants(a, &e);
	if (r >= 0 && bulk)
		r = set_joins(a, keyed_sql);
	if (r >= 0)
		r = check_users(a, &e);
	if (r >= 0)
		r = apply_grants(a, &e);
	/* Audit rows last, when every user has its row.  A conflict or
	 * invalid user gets one only when the connector owns it. */
	if (r >= 0)
		r = write_audit(a, idp);
	return r;
}

/* What a read of the whole state found the thresholds' counter lacking
 * (p->bases_fix_*, store/load.c's bases_check), added to managed_count in
 * the run's transaction: a delta, so whatever committed since that read
 * stays counted. */
static int bases_fix(struct apply *a)
{
	const struct ids_plan *p = a->p;
	if (!p->bases_fix_users && !p->bases_fix_grants)
		return 0;
	char users[24], grants[24];
	snprintf(users, sizeof(users), "%ld", p->bases_fix_users);
	snprintf(grants, sizeof(grants), "%ld", p->bases_fix_grants);
	const char *q[] = {a->params[0], a->params[1], users, grants};
	int r =
	    ids_store_exec(a->st,
			   "SELECT ids_managed_add(jsonb_build_array(jsonb_build_object('company_id',"
			   " $1::bigint, 'source', $2::text, 'users', $3::bigint, 'grants', $4::bigint)))",
			   4, q, PGRES_TUPLES_OK, NULL, "correcting the thresholds' bases", a->err);
	if (r >= 0)
		a->rows++;
	return r;
}

int ids_store_apply(struct ids_store *st, int64_t company_id, const char *idp, const struct ids_plan *p,
		    const struct ids_run *run, int64_t *ret_run_id, struct ids_error *err)
{
	struct apply a = {.st = st, .p = p, .err = err};
	bool in_tx = false;
	int64_t run_id = 0;
	int r;
	const char *connector = p->connector ? p->connector : run->connector;

	snprintf(a.company, sizeof(a.company), "%" PRId64, company_id);
	r = ids_store_exec(st, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, "BEGIN", err);
	if (r < 0)
		goto out;
	in_tx = true;
	/* Join methods are chosen per phase (keyed_sql, bulk_sql); until
	 * then, hash joins as in the load. */
	r = set_joins(&a, bulk_sql);
	if (r < 0)
		goto out;

	/* The run row first: the audit rows reference it.  Its finished_at
	 * is set last, just before COMMIT. */
	r = ids_store_insert_run(st, run, false, &run_id, err);
	if (r < 0)
		goto out;
	snprintf(a.run_id, sizeof(a.run_id), "%" PRId64, run_id);
	a.run = run_id;
	a.params[0] = a.company;
	a.params[1] = connector;
	a.params[2] = a.run_id;
	a.params[3] = idp;
	/* a plan without a single change (a resync of an unchanged
	 * directory): the run row is all there is to write */
	if (p->nusers || p->ngrants || p->new_tenants.n || p->new_groups.n)
		r = apply_changes(&a, idp);
	/* the feed's cursor (and image) commits with the changes it produced */
	if (r >= 0 && run->feed &&
	    (r = ids_store_feed_commit(st, run->connector, run->started_at, run->feed, err)) >= 0)
		a.rows += r; /* its row, inserted or updated, and the image's */
	/* the seat book with the grants it describes: a run that fails or
	 * is held must not move anyone in the line (set-based: bulk joins) */
	if (r >= 0 && run->seats && (r = set_joins(&a, bulk_sql)) >= 0)
		r = ids_store_seats_write(st, a.company, connector, run->seats, &a.rows, err);
	if (r >= 0)
		r = bases_fix(&a);
	if (r >= 0)
		r = stmt(&a, "finishing the run",
			 "UPDATE sync_run SET finished_at = clock_timestamp() WHERE id = $3", 1);
	if (r < 0)
		goto out;
	r = ids_store_exec(st, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, "COMMIT", err);
	if (r < 0)
		goto out;
	in_tx = false;
	/* the statements' and COPYs' rows (the run's finishing update among
	 * them) and the run row itself */
	st->rows_written = a.rows + 1;
	if (ret_run_id)
		*ret_run_id = run_id;
out:
	if (in_tx) {
		/* A COPY cut short leaves the connection in COPY mode: end it
		 * (as failed) before the ROLLBACK can be sent. */
		if (PQtransactionStatus(st->conn) == PQTRANS_ACTIVE) {
			PGresult *rest;
			PQputCopyEnd(st->conn, "idsyncd: apply failed");
			while ((rest = PQgetResult(st->conn)) != NULL)
				PQclear(rest);
		}
		PQclear(PQexec(st->conn, "ROLLBACK"));
	}
	ids_buf_free(&a.copy);
	ids_buf_free(&a.lit);
	ids_buf_free(&a.key);
	by_name_free(&a.created);
	by_name_free(&a.found);
	by_name_free(&a.tenants);
	by_name_free(&a.groups);
	return r;
}

long ids_store_rows_written(const struct ids_store *st)
{
	return st ? st->rows_written : 0;
}
