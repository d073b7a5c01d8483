/* scim.c — the pushed SCIM resources (scim_store.h, migration 006).
 *
 * The SQLSTATEs a client causes are turned into what the SCIM layer
 * answers: 23505 (the userName index) -EEXIST, 23503 (a member naming
 * nothing) IDS_E_INVALID, 22P02 (an id that is no UUID) -ENOENT.  Every
 * other failure is the store's usual IDS_E_DB / IDS_E_DB_LOST. */
#include "ids/scim_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/util.h"
#include "store_int.h"

/* The columns every read returns, in struct ids_scim_row's order, a
 * group's members as the JSON array `members` (a subquery over `src`, the
 * member ids as column m). */
#define MEMBERS(src)                                                                                         \
	"CASE WHEN r.kind = 'Group' THEN (SELECT coalesce(json_agg(json_build_object('value', g.m, "         \
	"'type', x.kind) ORDER BY g.m), '[]')::text FROM " src " g JOIN scim_resource x ON "                 \
	"x.connector = r.connector AND x.id = g.m) END, "
#define ROW_COLS_M(members)                                                                                  \
	"r.id::text, r.kind, r.resource::text, " members                                                     \
	"to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "                    \
	"to_char(r.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), r.version, r.active"
#define ROW_COLS                                                                                             \
	ROW_COLS_M(MEMBERS("(SELECT member_id AS m FROM scim_member WHERE connector = r.connector AND "      \
			   "group_id = r.id)"))
/* The members of group grp among the ids of $4 (a JSON array), as column
 * m: each id looked up in the primary key on its own (a LATERAL with a
 * LIMIT is never flattened into a join; a join or `= ANY` the planner may
 * run as a scan of the whole group, and does on a table without
 * statistics).  A string that is no UUID as PostgreSQL writes one names
 * no member (the whole list's ids, compared as text, would not match it
 * either) and must not fail the cast. */
#define IN_SCOPE(conn, grp)                                                                                  \
	"(SELECT s.id AS m FROM (SELECT DISTINCT v::uuid AS id FROM jsonb_array_elements_text($4::jsonb) v " \
	"WHERE v ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$') s, LATERAL (SELECT 1 " \
	"FROM scim_member k WHERE k.connector = " conn " AND k.group_id = " grp                              \
	" AND k.member_id = s.id LIMIT 1) h)"
/* a scoped read (ids_scim_store_get_scoped) */
#define ROW_COLS_SCOPED ROW_COLS_M(MEMBERS(IN_SCOPE("r.connector", "r.id")))
#define NROW_COLS 8

void ids_scim_row_clear(struct ids_scim_row *r)
{
	free(r->id);
	free(r->kind);
	free(r->resource);
	free(r->members);
	free(r->created);
	free(r->modified);
	memset(r, 0, sizeof(*r));
}

void ids_scim_rows_free(struct ids_scim_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		ids_scim_row_clear(&rows[i]);
	free(rows);
}

static char *dup_col(const PGresult *res, int row, int c)
{
	return PQgetisnull(res, row, c) ? NULL : strdup(PQgetvalue(res, row, c));
}

/* Row `row` of res, whose columns start at c0 with ROW_COLS. */
static int row_from(const PGresult *res, int row, int c0, struct ids_scim_row *ret)
{
	struct ids_scim_row r = {0};
	r.id = dup_col(res, row, c0);
	r.kind = dup_col(res, row, c0 + 1);
	r.resource = dup_col(res, row, c0 + 2);
	r.members = dup_col(res, row, c0 + 3);
	r.created = dup_col(res, row, c0 + 4);
	r.modified = dup_col(res, row, c0 + 5);
	r.active = PQgetvalue(res, row, c0 + 7)[0] == 't';
	if (!r.id || !r.kind || !r.resource || !r.created || !r.modified ||
	    (!PQgetisnull(res, row, c0 + 3) && !r.members) ||
	    ids_store_parse_i64(PQgetvalue(res, row, c0 + 6), &r.version) < 0) {
		ids_scim_row_clear(&r);
		return -ENOMEM;
	}
	*ret = r;
	return 0;
}

/* ids_store_exec, with the SQLSTATEs a client causes as their own codes. */
static int exec(struct ids_store *st, const char *sql, int n, const char *const *params, ExecStatusType want,
		PGresult **ret, const char *what, struct ids_error *err)
{
	PGresult *res = PQexecParams(st->conn, sql, n, NULL, params, NULL, NULL, 0);
	if (res && PQresultStatus(res) == want) {
		if (ret)
			*ret = res;
		else
			PQclear(res);
		return 0;
	}
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	int r;
	if (state && !strcmp(state, "23505"))
		r = ids_error_set(err, -EEXIST, "%s: the name is taken", what);
	else if (state && !strcmp(state, "23503"))
		r = ids_error_set(err, IDS_E_INVALID, "%s: a member names no resource of this connector",
				  what);
	else if (state && !strcmp(state, "22P02"))
		r = ids_error_set(err, -ENOENT, "%s: not a resource id", what);
	else
		r = ids_store_fail(st, res, what, err);
	PQclear(res);
	return r;
}

/* A write outside the caller's transaction gets one of its own. */
static bool idle(struct ids_store *st)
{
	return PQtransactionStatus(st->conn) == PQTRANS_IDLE;
}

int ids_scim_store_begin(struct ids_store *st, struct ids_error *err)
{
	return exec(st, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, "begin", err);
}

int ids_scim_store_commit(struct ids_store *st, struct ids_error *err)
{
	return exec(st, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, "commit", err);
}

void ids_scim_store_rollback(struct ids_store *st)
{
	if (st && PQtransactionStatus(st->conn) != PQTRANS_IDLE)
		PQclear(PQexec(st->conn, "ROLLBACK"));
}

/* A group's members made the JSON array of ids (every one must name a
 * resource of the connector: the foreign key says so), writing only the
 * difference: a PATCH adding one member to a group of 50,000 writes one
 * row, not 100,000 (a delete and an insert of each).  The differences are
 * set operations (hashed or sorted, whatever the planner believes about
 * the tables: a fresh table has no statistics, and a planner that
 * guesses one row picks a nested loop, minutes at 50,000), and the
 * DELETE finds each removed id in the primary key on its own (as
 * IN_SCOPE: `member_id = ANY(…)` was a filter over the whole group on a
 * table without statistics), then deletes those rows by ctid.  The group row is locked by the caller: no
 * other write of its members runs between the statements. */
#define WANT "(SELECT v::uuid AS m FROM jsonb_array_elements_text($3::jsonb) v)"
#define HAVE "(SELECT member_id AS m FROM scim_member WHERE connector = $1 AND group_id = $2::uuid)"
#define HAVE_SCOPED IN_SCOPE("$1", "$2::uuid")
/* scope NULL: members is the whole list; else only the memberships of
 * the ids in scope (JSON array text) are made what members says. */
static int set_members(struct ids_store *st, const char *connector, const char *id, const char *members,
		       const char *scope, struct ids_error *err)
{
	const char *p[] = {connector, id, members ? members : "[]", scope};
	PGresult *res = NULL;
	int np = scope ? 4 : 3;
	int r =
	    exec(st,
		 scope ? "SELECT coalesce(array_agg(m), '{}')::text FROM (" HAVE_SCOPED " EXCEPT " WANT ") g"
		       : "SELECT coalesce(array_agg(m), '{}')::text FROM (" HAVE " EXCEPT " WANT ") g",
		 np, p, PGRES_TUPLES_OK, &res, "members", err);
	if (r < 0)
		return r;
	const char *d[] = {connector, id, PQgetvalue(res, 0, 0)};
	if (strcmp(d[2], "{}") != 0)
		r = exec(
		    st,
		    "DELETE FROM scim_member WHERE ctid = ANY(ARRAY(SELECT h.ctid FROM unnest($3::uuid[]) "
		    "d(id), LATERAL (SELECT ctid FROM scim_member k WHERE k.connector = $1 AND "
		    "k.group_id = $2::uuid AND k.member_id = d.id LIMIT 1) h))",
		    3, d, PGRES_COMMAND_OK, NULL, "members", err);
	PQclear(res);
	/* an id outside the scope that is a member already: nothing written */
	if (r >= 0)
		r = exec(
		    st,
		    scope ? "INSERT INTO scim_member (connector, group_id, member_id) SELECT $1, $2::uuid, m "
			    "FROM (" WANT " EXCEPT " HAVE_SCOPED ") a ON CONFLICT DO NOTHING"
			  : "INSERT INTO scim_member (connector, group_id, member_id) SELECT $1, $2::uuid, m "
			    "FROM (" WANT " EXCEPT " HAVE ") a ON CONFLICT DO NOTHING",
		    np, p, PGRES_COMMAND_OK, NULL, "members", err);
	return r;
}
#undef HAVE_SCOPED
#undef WANT
#undef HAVE

/* The user of this connector named `name` (any case): its id and whether
 * it is live (active and not deleted); *ret_id NULL when none. */
static int user_by_name(struct ids_store *st, const char *connector, const char *name, char **ret_id,
			bool *ret_live, struct ids_error *err)
{
	const char *p[] = {connector, name};
	PGresult *res = NULL;
	int r = exec(st,
		     "SELECT id::text, active AND deleted_at IS NULL FROM scim_resource WHERE connector = $1 "
		     "AND kind = 'User' AND lower(name) = lower($2) FOR UPDATE",
		     2, p, PGRES_TUPLES_OK, &res, "user lookup", err);
	if (r < 0)
		return r;
	*ret_id = NULL;
	*ret_live = false;
	if (PQntuples(res) == 1) {
		*ret_live = PQgetvalue(res, 0, 1)[0] == 't';
		if (!(*ret_id = strdup(PQgetvalue(res, 0, 0))))
			r = -ENOMEM;
	}
	PQclear(res);
	return r;
}

/* The create proper, inside a transaction. */
static int create_tx(struct ids_store *st, const char *connector, const struct ids_scim_write *w,
		     struct ids_scim_row *ret, struct ids_error *err)
{
	char *old = NULL;
	bool live = false;
	PGresult *res = NULL;
	int r = 0;
	if (!strcmp(w->kind, "User") && (r = user_by_name(st, connector, w->name, &old, &live, err)) < 0)
		return r;
	if (old && live) {
		free(old);
		return ids_error_set(err, -EEXIST, "userName \"%s\" exists", w->name);
	}
	const char *p[] = {connector,	w->kind, w->name, w->external_id, w->active ? "t" : "f",
			   w->resource, old};
	/* a deleted or inactive user of that name comes back as itself */
	if (old)
		r = exec(st,
			 "UPDATE scim_resource r SET name = $3, external_id = $4, active = $5::boolean, "
			 "resource = $6::jsonb, deleted_at = NULL, version = version + 1, updated_at = now() "
			 "WHERE connector = $1 AND kind = $2 AND id = $7::uuid RETURNING " ROW_COLS,
			 7, p, PGRES_TUPLES_OK, &res, "create", err);
	else
		r = exec(
		    st,
		    "INSERT INTO scim_resource AS r (connector, kind, name, external_id, active, resource) "
		    "VALUES ($1, $2, $3, $4, $5::boolean, $6::jsonb) RETURNING " ROW_COLS,
		    6, p, PGRES_TUPLES_OK, &res, "create", err);
	free(old);
	if (r < 0)
		return r;
	struct ids_scim_row row = {0};
	r = row_from(res, 0, 0, &row);
	PQclear(res);
	if (r >= 0 && w->members) {
		/* read back after the members are in: that column is computed */
		char *id = row.id;
		row.id = NULL;
		ids_scim_row_clear(&row);
		r = set_members(st, connector, id, w->members, NULL, err);
		if (r >= 0)
			r = ids_scim_store_get(st, connector, w->kind, id, false, &row, err);
		free(id);
	}
	if (r >= 0)
		*ret = row;
	return r;
}

/* Runs fn in a transaction of its own unless the caller has one open. */
static int in_tx(struct ids_store *st, int (*fn)(void *), void *arg, struct ids_error *err)
{
	bool own = idle(st);
	int r = own ? ids_scim_store_begin(st, err) : 0;
	if (r >= 0)
		r = fn(arg);
	if (r >= 0 && own)
		r = ids_scim_store_commit(st, err);
	if (r < 0 && own)
		ids_scim_store_rollback(st);
	return r;
}

struct op {
	struct ids_store *st;
	const char *connector, *kind, *id;
	int64_t if_version;
	const struct ids_scim_write *w;
	struct ids_scim_row *ret;
	struct ids_error *err;
};

static int create_fn(void *arg)
{
	struct op *o = arg;
	return create_tx(o->st, o->connector, o->w, o->ret, o->err);
}

int ids_scim_store_create(struct ids_store *st, const char *connector, const struct ids_scim_write *w,
			  struct ids_scim_row *ret, struct ids_error *err)
{
	struct op o = {.st = st, .connector = connector, .w = w, .ret = ret, .err = err};
	return in_tx(st, create_fn, &o, err);
}

/* A read of one resource: scope NULL, every member; else as
 * ids_scim_store_get_scoped. */
static int get_row(struct ids_store *st, const char *connector, const char *kind, const char *id,
		   bool for_update, const char *scope, struct ids_scim_row *ret, struct ids_error *err)
{
	static const char *const sql[2][2] = {
	    {"SELECT " ROW_COLS " FROM scim_resource r WHERE connector = $1 AND kind = $2 "
	     "AND id = $3::uuid AND deleted_at IS NULL",
	     "SELECT " ROW_COLS " FROM scim_resource r WHERE connector = $1 AND kind = $2 "
	     "AND id = $3::uuid AND deleted_at IS NULL FOR UPDATE"},
	    {"SELECT " ROW_COLS_SCOPED " FROM scim_resource r WHERE connector = $1 AND kind = $2 "
	     "AND id = $3::uuid AND deleted_at IS NULL",
	     "SELECT " ROW_COLS_SCOPED " FROM scim_resource r WHERE connector = $1 AND kind = $2 "
	     "AND id = $3::uuid AND deleted_at IS NULL FOR UPDATE"}};
	const char *p[] = {connector, kind, id, scope};
	PGresult *res = NULL;
	int r = exec(st, sql[scope != NULL][for_update], scope ? 4 : 3, p, PGRES_TUPLES_OK, &res, "get", err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		r = ids_error_set(err, -ENOENT, "%s %s not found", kind, id);
	else
		r = row_from(res, 0, 0, ret);
	PQclear(res);
	return r;
}

int ids_scim_store_get(struct ids_store *st, const char *connector, const char *kind, const char *id,
		       bool for_update, struct ids_scim_row *ret, struct ids_error *err)
{
	return get_row(st, connector, kind, id, for_update, NULL, ret, err);
}

int ids_scim_store_get_scoped(struct ids_store *st, const char *connector, const char *id, const char *scope,
			      struct ids_scim_row *ret, struct ids_error *err)
{
	return get_row(st, connector, "Group", id, true, scope, ret, err);
}

/* The version check of a write: -ENOENT or -ESTALE as the row is. */
static int check_version(struct op *o)
{
	struct ids_scim_row cur = {0};
	/* the version is all it needs: no member is read ("[]") */
	int r = get_row(o->st, o->connector, o->kind, o->id, true, "[]", &cur, o->err);
	if (r >= 0 && o->if_version && cur.version != o->if_version)
		r = ids_error_set(o->err, -ESTALE, "%s %s is at version %" PRId64 ", not %" PRId64, o->kind,
				  o->id, cur.version, o->if_version);
	ids_scim_row_clear(&cur);
	return r;
}

static int replace_fn(void *arg)
{
	struct op *o = arg;
	const struct ids_scim_write *w = o->w;
	const char *p[] = {o->connector, o->id, w->name, w->external_id, w->active ? "t" : "f", w->resource};
	int r = check_version(o);
	if (r >= 0)
		r = exec(o->st,
			 "UPDATE scim_resource SET name = $3, external_id = $4, active = $5::boolean, "
			 "resource = $6::jsonb, version = version + 1, updated_at = now() "
			 "WHERE connector = $1 AND id = $2::uuid",
			 6, p, PGRES_COMMAND_OK, NULL, "replace", o->err);
	if (r >= 0 && !strcmp(w->kind, "Group"))
		r = set_members(o->st, o->connector, o->id, w->members ? w->members : "[]", w->members_scope,
				o->err);
	if (r >= 0)
		r = get_row(o->st, o->connector, o->kind, o->id, false, w->members_scope, o->ret, o->err);
	return r;
}

int ids_scim_store_replace(struct ids_store *st, const char *connector, const char *id, int64_t if_version,
			   const struct ids_scim_write *w, struct ids_scim_row *ret, struct ids_error *err)
{
	struct op o = {.st = st,
		       .connector = connector,
		       .kind = w->kind,
		       .id = id,
		       .if_version = if_version,
		       .w = w,
		       .ret = ret,
		       .err = err};
	return in_tx(st, replace_fn, &o, err);
}

static int delete_fn(void *arg)
{
	struct op *o = arg;
	const char *p[] = {o->connector, o->id};
	int r = check_version(o);
	if (r < 0)
		return r;
	/* a user stays (deleted_in_source; a later POST brings it back), out
	 * of every group it was in: a group's members are live resources */
	if (!strcmp(o->kind, "User"))
		r = exec(
		    o->st,
		    "WITH d AS (DELETE FROM scim_member WHERE connector = $1 AND member_id = $2::uuid) "
		    "UPDATE scim_resource SET deleted_at = now(), version = version + 1, updated_at = now() "
		    "WHERE connector = $1 AND id = $2::uuid",
		    2, p, PGRES_COMMAND_OK, NULL, "delete", o->err);
	else
		r = exec(o->st, "DELETE FROM scim_resource WHERE connector = $1 AND id = $2::uuid", 2, p,
			 PGRES_COMMAND_OK, NULL, "delete", o->err);
	return r;
}

int ids_scim_store_delete(struct ids_store *st, const char *connector, const char *kind, const char *id,
			  int64_t if_version, struct ids_error *err)
{
	struct op o = {
	    .st = st, .connector = connector, .kind = kind, .id = id, .if_version = if_version, .err = err};
	return in_tx(st, delete_fn, &o, err);
}

/* The WHERE term of one condition, its value at $n (and the e-mail type
 * at $n+1).  Only these fixed texts reach the statement. */
static int cond_sql(struct ids_buf *b, const struct ids_scim_cond *c, const char *kind, int n)
{
	switch (c->attr) {
	case IDS_SCIM_A_ID: return ids_buf_printf(b, " AND r.id::text = lower($%d)", n);
	case IDS_SCIM_A_EXTERNAL_ID: return ids_buf_printf(b, " AND r.external_id = $%d", n);
	case IDS_SCIM_A_USER_NAME:
		if (strcmp(kind, "User") != 0)
			return ids_buf_puts(b, " AND false");
		return ids_buf_printf(b, " AND lower(r.name) = lower($%d)", n);
	case IDS_SCIM_A_DISPLAY_NAME:
		if (!strcmp(kind, "Group"))
			return ids_buf_printf(b, " AND lower(r.name) = lower($%d)", n);
		return ids_buf_printf(b, " AND r.resource->>'displayName' = $%d", n);
	case IDS_SCIM_A_EMAIL:
		ids_buf_printf(
		    b,
		    " AND EXISTS (SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(r.resource->"
		    "'emails') WHEN 'array' THEN r.resource->'emails' ELSE '[]' END) e WHERE "
		    "lower(e->>'value') = lower($%d)",
		    n);
		if (c->type)
			ids_buf_printf(b, " AND lower(e->>'type') = lower($%d)", n + 1);
		return ids_buf_puts(b, ")");
	}
	return -EINVAL;
}

#define CONDS_MAX 8

int ids_scim_store_list(struct ids_store *st, const char *connector, const char *kind,
			const struct ids_scim_cond *conds, size_t nconds, long start, long count,
			struct ids_scim_row **ret, size_t *ret_n, long *ret_total, struct ids_error *err)
{
	const char *p[4 + 2 * CONDS_MAX];
	char off[24], lim[24];
	struct ids_buf q = {0};
	PGresult *res = NULL;
	int np = 4, r;
	if (nconds > CONDS_MAX)
		return ids_error_set(err, IDS_E_INVALID, "more than %d conditions", CONDS_MAX);
	snprintf(off, sizeof(off), "%ld", start > 1 ? start - 1 : 0);
	snprintf(lim, sizeof(lim), "%ld", count > 0 ? count : 0);
	p[0] = connector, p[1] = kind, p[2] = off, p[3] = lim;
	r = ids_buf_puts(
	    &q, "SELECT count(*) OVER (), " ROW_COLS
		" FROM scim_resource r WHERE r.connector = $1 AND r.kind = $2 AND r.deleted_at IS NULL");
	for (size_t i = 0; i < nconds && r >= 0; i++) {
		r = cond_sql(&q, &conds[i], kind, np + 1);
		p[np++] = conds[i].value;
		if (conds[i].attr == IDS_SCIM_A_EMAIL && conds[i].type)
			p[np++] = conds[i].type;
	}
	if (r >= 0)
		r = ids_buf_puts(&q, " ORDER BY r.created_at, r.id OFFSET $3::bigint LIMIT $4::bigint");
	if (r < 0) {
		ids_buf_free(&q);
		return -ENOMEM;
	}
	r = exec(st, q.p, np, p, PGRES_TUPLES_OK, &res, "list", err);
	/* a page past the end (or count=0) holds no total: a row of the
	 * first page does */
	if (r >= 0 && PQntuples(res) == 0 && (start > 1 || count <= 0)) {
		PQclear(res);
		res = NULL;
		p[2] = "0", p[3] = "1";
		r = exec(st, q.p, np, p, PGRES_TUPLES_OK, &res, "list", err);
		long total = r >= 0 && PQntuples(res) ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
		PQclear(res);
		ids_buf_free(&q);
		if (r < 0)
			return r;
		if (!(*ret = calloc(1, sizeof(**ret))))
			return -ENOMEM;
		*ret_n = 0;
		*ret_total = total;
		return 0;
	}
	ids_buf_free(&q);
	if (r < 0)
		return r;
	size_t n = (size_t)PQntuples(res);
	struct ids_scim_row *rows = calloc(n ? n : 1, sizeof(*rows));
	for (size_t i = 0; rows && i < n && r >= 0; i++)
		r = row_from(res, (int)i, 1, &rows[i]);
	long total = n ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	if (!rows || r < 0) {
		ids_scim_rows_free(rows, n);
		return -ENOMEM;
	}
	*ret = rows;
	*ret_n = n;
	*ret_total = total;
	return 0;
}

/* Runs sql with p[0] the connector and p[1] (NULL: none) `sync --user`'s
 * USER, each row through f. */
static int each(struct ids_store *st, const char *sql, const char *const p[2], const char *what,
		int (*f)(const PGresult *, int, const struct ids_scim_reader *, void *),
		const struct ids_scim_reader *rd, void *ud, struct ids_error *err)
{
	PGresult *res = NULL;
	int r = exec(st, sql, p[1] ? 2 : 1, p, PGRES_TUPLES_OK, &res, what, err);
	for (int i = 0; r >= 0 && i < PQntuples(res); i++)
		r = f(res, i, rd, ud);
	PQclear(res);
	return r;
}

static int user_row(const PGresult *res, int i, const struct ids_scim_reader *rd, void *ud)
{
	int64_t v = 0;
	if (ids_store_parse_i64(PQgetvalue(res, i, 3), &v) < 0)
		return -EINVAL;
	return rd->user(ud, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2)[0] == 't', v);
}

static int group_row(const PGresult *res, int i, const struct ids_scim_reader *rd, void *ud)
{
	return rd->group(ud, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
}

static int member_row(const PGresult *res, int i, const struct ids_scim_reader *rd, void *ud)
{
	return rd->member(ud, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
}

#define USERS_SQL                                                                                            \
	"SELECT id::text, resource::text, active, version FROM scim_resource WHERE connector = $1 "          \
	"AND kind = 'User' AND deleted_at IS NULL"

/* A reader with a cache: the ids and versions first (a tenth of the
 * bytes: the resources' text is what costs), then the resources of the
 * wanted ones only, by id, in the same snapshot. */
static int read_users_cached(struct ids_store *st, const char *connector, const struct ids_scim_reader *rd,
			     void *ud, struct ids_error *err)
{
	PGresult *res = NULL;
	const char *p[2] = {connector, NULL};
	struct ids_buf want = {0};
	int r = exec(st,
		     "SELECT id::text, version FROM scim_resource WHERE connector = $1 AND kind = 'User' "
		     "AND deleted_at IS NULL",
		     1, p, PGRES_TUPLES_OK, &res, "read users", err);
	for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0);
		int64_t v = 0;
		if (ids_store_parse_i64(PQgetvalue(res, i, 1), &v) < 0)
			r = -EINVAL;
		else if (!rd->want(ud, id, v))
			r = rd->cached(ud, id);
		else
			r = ids_buf_puts(&want, want.len ? "," : "{") < 0 || ids_buf_puts(&want, id) < 0
				? -ENOMEM
				: 0;
	}
	PQclear(res);
	if (r >= 0 && want.len && ids_buf_putc(&want, '}') < 0)
		r = -ENOMEM;
	p[1] = want.p;
	if (r >= 0 && want.len) {
		res = NULL;
		r = exec(st, USERS_SQL " AND id = ANY($2::uuid[])", 2, p, PGRES_TUPLES_OK, &res, "read users",
			 err);
		for (int i = 0; r >= 0 && i < PQntuples(res); i++)
			r = user_row(res, i, rd, ud);
		PQclear(res);
	}
	ids_buf_free(&want);
	return r;
}

int ids_scim_store_read(struct ids_store *st, const char *connector, const struct ids_scim_reader *rd,
			void *ud, struct ids_error *err)
{
	const char *const p[2] = {connector, NULL};
	/* one snapshot of the three tables: a push between two of the
	 * queries must not show a membership of a group not read */
	int r = exec(st, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, PGRES_COMMAND_OK, NULL,
		     "begin", err);
	if (r < 0)
		return r;
	if (rd->want && rd->cached)
		r = read_users_cached(st, connector, rd, ud, err);
	else
		r = each(st, USERS_SQL, p, "read users", user_row, rd, ud, err);
	if (r >= 0)
		r = each(st,
			 "SELECT id::text, name FROM scim_resource WHERE connector = $1 AND kind = 'Group' "
			 "ORDER BY id",
			 p, "read groups", group_row, rd, ud, err);
	if (r >= 0)
		r = each(st,
			 "SELECT group_id::text, member_id::text FROM scim_member WHERE connector = $1 "
			 "ORDER BY group_id, member_id",
			 p, "read members", member_row, rd, ud, err);
	ids_scim_store_rollback(st);
	return r;
}

/* `sync --user`'s user ($2): by SCIM id, userName (case-insensitively,
 * as the listener keeps them unique) or any of the e-mails; then the
 * groups holding them, through nested groups (UNION ends a cycle). */
#define ONE_USER                                                                                             \
	"WITH RECURSIVE u AS (SELECT id FROM scim_resource WHERE connector = $1 AND kind = 'User' "          \
	"AND deleted_at IS NULL AND (id::text = lower($2) OR lower(name) = lower($2) OR EXISTS "             \
	"(SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(resource->'emails') WHEN 'array' "            \
	"THEN resource->'emails' ELSE '[]'::jsonb END) e WHERE lower(e->>'value') = lower($2)))), "          \
	"g AS (SELECT m.group_id AS id FROM scim_member m JOIN u ON m.member_id = u.id WHERE m.connector = " \
	"$1 "                                                                                                \
	"UNION SELECT m.group_id FROM scim_member m JOIN g ON m.member_id = g.id WHERE m.connector = $1) "

int ids_scim_store_read_user(struct ids_store *st, const char *connector, const char *who,
			     const struct ids_scim_reader *rd, void *ud, struct ids_error *err)
{
	const char *const p[2] = {connector, who};
	int r = exec(st, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, PGRES_COMMAND_OK, NULL,
		     "begin", err);
	if (r < 0)
		return r;
	r = each(st,
		 ONE_USER
		 "SELECT r.id::text, r.resource::text, r.active, r.version FROM scim_resource r JOIN u "
		 "ON r.connector = $1 AND r.id = u.id ORDER BY r.id",
		 p, "read user", user_row, rd, ud, err);
	if (r >= 0)
		r = each(st,
			 ONE_USER "SELECT id::text, name FROM scim_resource WHERE connector = $1 AND kind = "
				  "'Group' AND id IN (SELECT id FROM g) ORDER BY id",
			 p, "read the user's groups", group_row, rd, ud, err);
	if (r >= 0)
		r = each(st,
			 ONE_USER
			 "SELECT group_id::text, member_id::text FROM scim_member WHERE connector = $1 "
			 "AND group_id IN (SELECT id FROM g) AND (member_id IN (SELECT id FROM u) OR "
			 "member_id IN (SELECT id FROM g)) ORDER BY group_id, member_id",
			 p, "read the user's memberships", member_row, rd, ud, err);
	ids_scim_store_rollback(st);
	return r;
}
