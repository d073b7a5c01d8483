/* load.c — ids_store_load(): the current state of one company, as the diff
 * needs it, read fast enough to hide behind the directory read.
 *
 * A million users and millions of grant rows are streamed with COPY ...
 * TO STDOUT in binary format and decoded tuple by tuple into the
 * ids_current container: no PGresult ever holds a whole table, and no
 * integer or boolean goes through text.  Only the company id, an integer
 * formatted by us, appears in the COPY statements (COPY takes no
 * parameters); no string from the configuration or the directory does.
 *
 * The grant rows are read by tenant (the company's tenants) and not joined
 * with app_user: which users they belong to (the connector's, and the
 * unmanaged ones) is decided here, against the users just read, with an id
 * index.  The company-isolation triggers guarantee that a grant in one of
 * the company's tenants belongs to one of its users.
 *
 * ids_store_load_start() runs the same read in a thread of its own, so
 * that a sync reads PostgreSQL while the connector reads the directory. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids/plan.h"
#include "ids/store.h"
#include "ids/util.h"
#include "store_int.h"

#define MAX_COLS 16

/* ---------------- binary COPY decoding ---------------- */

static uint16_t be16(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint16_t)(u[0] << 8 | u[1]);
}

static uint32_t be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static int64_t be64(const char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Decodes the tuples in b[0..n): calls fn per tuple of ncols fields.
 * Returns the bytes consumed (a partial tuple at the end is left for the
 * next message), or < 0.  *done is set at the trailer. */
static long decode(const char *b, size_t n, int ncols, ids_copy_row_fn fn, void *ud, bool *done,
		   struct ids_error *err)
{
	struct ids_copy_field f[MAX_COLS];
	size_t pos = 0;
	while (!*done && n - pos >= 2) {
		int16_t nf = (int16_t)be16(b + pos);
		size_t q = pos + 2;
		if (nf == -1) {
			*done = true;
			return (long)(q);
		}
		if (nf != ncols)
			return ids_error_set(err, IDS_E_DB, "loading: COPY sent %d columns, expected %d", nf,
					     ncols);
		for (int i = 0; i < ncols; i++) {
			if (n - q < 4)
				return (long)pos;
			int32_t len = (int32_t)be32(b + q);
			q += 4;
			if (len < -1)
				return ids_error_set(err, IDS_E_DB, "loading: malformed COPY data");
			if (len > 0 && n - q < (size_t)len)
				return (long)pos;
			f[i] = (struct ids_copy_field){b + q, len};
			q += len > 0 ? (size_t)len : 0;
		}
		int r = fn(ud, f, err);
		if (r < 0)
			return r;
		pos = q;
	}
	return (long)pos;
}

/* store_int.h.  Messages are decoded where libpq put them; only a tuple
 * split between two messages is carried over in a buffer. */
int ids_store_copy_out(struct ids_store *st, const char *sql, int ncols, ids_copy_row_fn fn, void *ud,
		       const char *what, struct ids_error *err)
{
	static const char sig[11] = "PGCOPY\n\377\r\n";
	struct ids_buf carry = {0};
	bool header = false, done = false;
	char *msg = NULL;
	int r = 0, len;

	PGresult *res = PQexec(st->conn, sql);
	if (!res || PQresultStatus(res) != PGRES_COPY_OUT) {
		r = ids_store_fail(st, res, what, err);
		PQclear(res);
		return r;
	}
	PQclear(res);
	while ((len = PQgetCopyData(st->conn, &msg, 0)) > 0) {
		const char *b = msg;
		size_t n = (size_t)len;
		if (r < 0 || done) { /* drain what is left after an error */
			PQfreemem(msg);
			continue;
		}
		if (carry.len) {
			r = ids_buf_add(&carry, msg, n);
			b = carry.p;
			n = carry.len;
		}
		size_t pos = 0;
		if (r >= 0 && !header) {
			/* signature, flags, header extension (skipped) */
			if (n < 19) {
				if (!carry.len)
					r = ids_buf_add(&carry, msg, n);
				PQfreemem(msg);
				continue;
			}
			if (memcmp(b, sig, sizeof(sig)) != 0 || n - 19 < be32(b + 15)) {
				r = ids_error_set(err, IDS_E_DB, "%s: not a binary COPY stream", what);
			} else {
				pos = 19 + be32(b + 15);
				header = true;
			}
		}
		if (r >= 0) {
			long used = decode(b + pos, n - pos, ncols, fn, ud, &done, err);
			if (used < 0) {
				r = (int)used;
			} else {
				pos += (size_t)used;
				/* keep the unread tail for the next message */
				if (pos < n) {
					struct ids_buf rest = {0};
					r = ids_buf_add(&rest, b + pos, n - pos);
					ids_buf_free(&carry);
					carry = rest;
				} else {
					ids_buf_reset(&carry);
				}
			}
		}
		PQfreemem(msg);
	}
	if (len == -2 && r >= 0)
		r = ids_store_fail(st, NULL, what, err);
	/* the COPY's own result, then NULL */
	while ((res = PQgetResult(st->conn)) != NULL) {
		if (r >= 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
			r = ids_store_fail(st, res, what, err);
		PQclear(res);
	}
	if (r >= 0 && !done)
		r = ids_error_set(err, IDS_E_DB, "%s: the COPY stream ended early", what);
	ids_buf_free(&carry);
	return r;
}

/* ---------------- the rows ---------------- */

/* A tenant or operator group of the company: its id and what grants name. */
struct named {
	int64_t id;
	const char *tenant; /* slug (interned in the current state) */
	const char *name;   /* operator group name; NULL for a tenant */
};

struct load {
	struct ids_store *st;
	struct ids_current *c;
	const char *connector;
	size_t connector_len;
	struct ids_buf text;		/* a tuple's strings, NUL-terminated */
	struct ids_buf rules;		/* a grant row's rules, NUL-terminated */
	struct ids_current_index users; /* app_user id -> row of c->users */
	bool *wanted;			/* per user: the connector's or unmanaged */
	struct named *tenants, *groups;
	size_t ntenants, ngroups;
};

static int cmp_named(const void *a, const void *b)
{
	int64_t x = ((const struct named *)a)->id, y = ((const struct named *)b)->id;
	return x < y ? -1 : x > y;
}

static const struct named *find_named(const struct named *v, size_t n, int64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].id == id)
			return &v[mid];
		if (v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The strings of a tuple, NUL-terminated in l->text: offsets per field
 * (SIZE_MAX for NULL), resolved to pointers once the buffer stops moving. */
static int texts(struct load *l, const struct ids_copy_field *f, const int *cols, int n, const char **out)
{
	size_t off[MAX_COLS];
	ids_buf_reset(&l->text);
	for (int i = 0; i < n; i++) {
		const struct ids_copy_field *x = &f[cols[i]];
		if (x->len < 0) {
			off[i] = SIZE_MAX;
			continue;
		}
		off[i] = l->text.len;
		int r = ids_buf_add(&l->text, x->p, (size_t)x->len);
		if (r >= 0)
			r = ids_buf_putc(&l->text, '\0');
		if (r < 0)
			return r;
	}
	for (int i = 0; i < n; i++)
		out[i] = off[i] == SIZE_MAX ? NULL : l->text.p + off[i];
	return 0;
}

static int i64_field(const struct ids_copy_field *f, int64_t *ret, struct ids_error *err)
{
	if (f->len != 8)
		return ids_error_set(err, IDS_E_DB, "loading: a bigint column is %d bytes", f->len);
	*ret = be64(f->p);
	return 0;
}

/* id, source, external_id, username, email, first_name, last_name,
 * display_name, auth_method, idp, deactivation_reason, company_admin, active */
static int on_user(void *ud, const struct ids_copy_field *f, struct ids_error *err)
{
	struct load *l = ud;
	static const int cols[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	const char *s[10];
	struct ids_cur_user u = {0};
	int r = i64_field(&f[0], &u.id, err);
	if (r < 0)
		return r;
	if (f[11].len != 1 || f[12].len != 1)
		return ids_error_set(err, IDS_E_DB, "loading users: a boolean column is not one byte");
	if ((r = texts(l, f, cols, 10, s)) < 0)
		return r;
	u.source = s[0];
	u.external_id = s[1];
	u.username = s[2];
	u.email = s[3];
	u.first_name = s[4];
	u.last_name = s[5];
	u.display_name = s[6];
	u.auth_method = s[7];
	u.idp = s[8];
	u.reason = s[9];
	u.company_admin = f[11].p[0] != 0;
	u.active = f[12].p[0] != 0;
	return ids_current_add_user(l->c, &u);
}

/* kind, user_id, tenant or group id, name, slots, source, rules */
static int on_grant(void *ud, const struct ids_copy_field *f, struct ids_error *err)
{
	struct load *l = ud;
	int64_t uid, tid;
	uint32_t row;
	int r;
	if (f[0].len != 2 || f[4].len != 4)
		return ids_error_set(err, IDS_E_DB, "loading grants: unexpected column types");
	if ((r = i64_field(&f[1], &uid, err)) < 0 || (r = i64_field(&f[2], &tid, err)) < 0)
		return r;
	/* other connectors' users are not this run's business */
	if (!ids_current_index_get(&l->users, uid, &row) || !l->wanted[row])
		return 0;
	unsigned kind = be16(f[0].p);
	struct ids_cur_grant g = {
	    .user_id = uid, .kind = (unsigned char)kind, .slots = (int32_t)be32(f[4].p)};
	const struct named *t;
	if (kind == IDS_GRANT_GROUP) {
		if (!(t = find_named(l->groups, l->ngroups, tid)))
			return 0;
		g.name = t->name;
	} else if (kind < IDS_GRANT__COUNT) {
		if (!(t = find_named(l->tenants, l->ntenants, tid)) || f[3].len < 0)
			return 0;
		ids_buf_reset(&l->text);
		if ((r = ids_buf_add(&l->text, f[3].p, (size_t)f[3].len)) < 0)
			return r;
		g.name = l->text.p;
	} else {
		return ids_error_set(err, IDS_E_DB, "loading grants: unknown kind %u", kind);
	}
	g.tenant = t->tenant;
	/* a row another connector wrote (a user adopted from its reach) is,
	 * to this connector, as untouchable as one made by hand */
	g.manual =
	    f[5].len != (int32_t)l->connector_len || memcmp(f[5].p, l->connector, l->connector_len) != 0;
	if (g.manual || f[6].len < 0)
		return ids_current_add_grant(l->c, &g);
	/* l->text holds the name until the grant is added: a second buffer */
	ids_buf_reset(&l->rules);
	if ((r = ids_buf_add(&l->rules, f[6].p, (size_t)f[6].len)) < 0)
		return r;
	return ids_current_add_grant_rules(l->c, &g, l->rules.p);
}

/* The company's tenants (slugs into the current state) and operator
 * groups: small, read with parameters. */
static int load_names(struct load *l, const char *company, struct ids_error *err)
{
	PGresult *res = NULL;
	const char *p[] = {company};
	int r =
	    ids_store_exec(l->st, "SELECT id, slug FROM tenant WHERE company_id = $1::bigint ORDER BY slug",
			   1, p, PGRES_TUPLES_OK, &res, "loading tenants", err);
	if (r < 0)
		return r;
	int n = PQntuples(res);
	l->tenants = calloc(n ? (size_t)n : 1, sizeof(*l->tenants));
	if (!l->tenants)
		r = -ENOMEM;
	for (int i = 0; i < n && r >= 0; i++) {
		struct named *t = &l->tenants[l->ntenants++];
		if ((r = ids_store_parse_i64(PQgetvalue(res, i, 0), &t->id)) < 0)
			r = ids_error_set(err, IDS_E_DB, "loading tenants: bad id");
		else if ((r = ids_current_add_tenant(l->c, PQgetvalue(res, i, 1))) >= 0)
			t->tenant = l->c->tenants.v[l->c->tenants.n - 1];
	}
	PQclear(res);
	if (r < 0)
		return r;
	qsort(l->tenants, l->ntenants, sizeof(*l->tenants), cmp_named);

	r = ids_store_exec(l->st,
			   "SELECT g.id, g.tenant_id, g.name FROM operator_group g"
			   " JOIN tenant t ON t.id = g.tenant_id WHERE t.company_id = $1::bigint",
			   1, p, PGRES_TUPLES_OK, &res, "loading operator groups", err);
	if (r < 0)
		return r;
	n = PQntuples(res);
	l->groups = calloc(n ? (size_t)n : 1, sizeof(*l->groups));
	if (!l->groups)
		r = -ENOMEM;
	for (int i = 0; i < n && r >= 0; i++) {
		struct named *g = &l->groups[l->ngroups];
		int64_t tid;
		if (ids_store_parse_i64(PQgetvalue(res, i, 0), &g->id) < 0 ||
		    ids_store_parse_i64(PQgetvalue(res, i, 1), &tid) < 0) {
			r = ids_error_set(err, IDS_E_DB, "loading operator groups: bad id");
			break;
		}
		const struct named *t = find_named(l->tenants, l->ntenants, tid);
		if (!t)
			continue;
		g->tenant = t->tenant;
		g->name = ids_arena_strdup(&l->c->arena, PQgetvalue(res, i, 2));
		if (!g->name)
			r = -ENOMEM;
		l->ngroups++;
	}
	PQclear(res);
	if (r >= 0)
		qsort(l->groups, l->ngroups, sizeof(*l->groups), cmp_named);
	return r;
}

/* The rules of a grant row as one string, the names joined by a newline
 * (no rule name has a control character): the diff compares it as it is.
 * In the SQL of load_all and load_some. */
#define RULES "array_to_string(rules, E'\\n')"

static int load_all(struct load *l, int64_t company_id, struct ids_error *err)
{
	char company[24], sql[2048];
	int r;
	snprintf(company, sizeof(company), "%" PRId64, company_id);
	if ((r = load_names(l, company, err)) < 0)
		return r;

	snprintf(sql, sizeof(sql),
		 "COPY (SELECT id, source, external_id, username, email, first_name, last_name, display_name,"
		 " auth_method, idp, deactivation_reason, company_admin, active"
		 " FROM app_user WHERE company_id = %" PRId64 ") TO STDOUT (FORMAT binary)",
		 company_id);
	if ((r = ids_store_copy_out(l->st, sql, 13, on_user, l, "loading users", err)) < 0)
		return r;
	l->wanted = malloc(l->c->nusers ? l->c->nusers : 1);
	if (!l->wanted || (r = ids_current_index_build(l->c, &l->users)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < l->c->nusers; i++) {
		const char *src = l->c->users[i].source;
		l->wanted[i] = !src || strcmp(src, l->connector) == 0;
	}

	/* one stream for the four grant tables: kind, user, tenant (or
	 * operator group), name, slots, source */
	/* clang-format off */
#define IN_TENANTS(col) " WHERE " col " IN (SELECT id FROM tenant WHERE company_id = %" PRId64 ")"
	snprintf(sql, sizeof(sql),
		 "COPY (SELECT 0::int2, user_id, tenant_id, role, 0, source, " RULES " FROM tenant_role"
		 IN_TENANTS("tenant_id")
		 " UNION ALL SELECT 1::int2, user_id, tenant_id, channel, 0, source, " RULES " FROM channel_grant"
		 IN_TENANTS("tenant_id")
		 " UNION ALL SELECT 3::int2, user_id, tenant_id, channel_group, slots, source, " RULES
		 " FROM slot_limit" IN_TENANTS("tenant_id")
		 " UNION ALL SELECT 2::int2, user_id, group_id, NULL, 0, source, " RULES
		 " FROM operator_group_member"
		 " WHERE group_id IN (SELECT g.id FROM operator_group g JOIN tenant t ON t.id = g.tenant_id"
		 " WHERE t.company_id = %" PRId64 ")) TO STDOUT (FORMAT binary)",
		 company_id, company_id, company_id, company_id);
#undef IN_TENANTS
	/* clang-format on */
	_Static_assert(IDS_GRANT_ROLE == 0 && IDS_GRANT_CHANNEL == 1 && IDS_GRANT_GROUP == 2 &&
			   IDS_GRANT_SLOT == 3,
		       "the kinds the grant COPY sends");
	return ids_store_copy_out(l->st, sql, 7, on_grant, l, "loading grants", err);
}

static void load_clear(struct load *l)
{
	ids_buf_free(&l->text);
	ids_buf_free(&l->rules);
	ids_current_index_free(&l->users);
	free(l->wanted);
	free(l->tenants);
	free(l->groups);
}

/* The rows of the persons a targeted run plans for (ids_store_load_some). */
struct some {
	const struct ids_strv *ext, *names, *emails;
};

/* Runs sql (text parameters, binary results: the COPY's encoding) and
 * hands every row to fn, as the COPY does. */
static int rows_out(struct load *l, const char *sql, int n, const char *const *params, int ncols,
		    ids_copy_row_fn fn, const char *what, struct ids_error *err)
{
	PGresult *res = PQexecParams(l->st->conn, sql, n, NULL, params, NULL, NULL, 1);
	struct ids_copy_field f[MAX_COLS];
	int r = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		r = ids_store_fail(l->st, res, what, err);
	else if (PQnfields(res) != ncols)
		r = ids_error_set(err, IDS_E_DB, "%s: %d columns, expected %d", what, PQnfields(res), ncols);
	for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
		for (int c = 0; c < ncols; c++) {
			f[c].p = PQgetvalue(res, i, c);
			f[c].len = PQgetisnull(res, i, c) ? -1 : PQgetlength(res, i, c);
		}
		r = fn(l, f, err);
	}
	PQclear(res);
	return r;
}

/* The loaded users' index (on_grant's), which users' grants are wanted,
 * and their ids as an array literal in *ids. */
static int some_index(struct load *l, struct ids_buf *ids)
{
	l->wanted = malloc(l->c->nusers ? l->c->nusers : 1);
	if (!l->wanted || ids_current_index_build(l->c, &l->users) < 0)
		return -ENOMEM;
	int r = ids_buf_putc(ids, '{');
	for (size_t i = 0; i < l->c->nusers && r >= 0; i++) {
		const char *src = l->c->users[i].source;
		l->wanted[i] = !src || strcmp(src, l->connector) == 0;
		r = ids_buf_printf(ids, "%s%" PRId64, i ? "," : "", l->c->users[i].id);
	}
	return r < 0 ? r : ids_buf_putc(ids, '}');
}

/* The thresholds' bases among the loaded rows: the connector's active
 * users, and the grant rows it wrote on them (!manual: on_grant). */
static void loaded_bases(const struct load *l, long *users, long *grants)
{
	const struct ids_current *c = l->c;
	*users = *grants = 0;
	for (size_t i = 0; i < c->nusers; i++) {
		const struct ids_cur_user *u = &c->users[i];
		*users += u->active && u->source && strcmp(u->source, l->connector) == 0;
	}
	for (size_t i = 0; i < c->ngrants; i++) {
		uint32_t row;
		if (c->grants[i].manual || !ids_current_index_get(&l->users, c->grants[i].user_id, &row))
			continue;
		const struct ids_cur_user *u = &c->users[row];
		*grants += u->active && u->source && strcmp(u->source, l->connector) == 0;
	}
}

/* The thresholds' bases as managed_count (migration 013's triggers) has
 * them for the connector in company: *users, *grants (0 without a row). */
static int counted_bases(struct load *l, const char *company, int64_t *users, int64_t *grants,
			 struct ids_error *err)
{
	PGresult *res = NULL;
	const char *p[] = {company, l->connector};
	int r = ids_store_exec(l->st,
			       "SELECT active_users, grant_rows FROM managed_count"
			       " WHERE company_id = $1::bigint AND source = $2",
			       2, p, PGRES_TUPLES_OK, &res, "reading the thresholds' bases", err);
	*users = *grants = 0;
	if (r >= 0 && PQntuples(res) == 1 &&
	    (ids_store_parse_i64(PQgetvalue(res, 0, 0), users) < 0 ||
	     ids_store_parse_i64(PQgetvalue(res, 0, 1), grants) < 0))
		r = ids_error_set(err, IDS_E_DB, "reading the thresholds' bases: bad count");
	PQclear(res);
	return r;
}

/* The company's users whose external id, username or e-mail (the last
 * two lower-cased: a superset of what the diff compares) is one of the
 * persons', their grants, and in c->managed_others and c->active_others
 * the thresholds' bases among the connector's other active users. */
static int load_some(struct load *l, int64_t company_id, const void *arg, struct ids_error *err)
{
	const struct some *w = arg;
	char company[24];
	struct ids_buf a[4] = {{0}};
	snprintf(company, sizeof(company), "%" PRId64, company_id);
	int r = load_names(l, company, err);
	if (r >= 0 &&
	    (r = ids_store_text_array(&a[0], (const char *const *)w->ext->v, w->ext->n, sizeof(char *))) >=
		0 &&
	    (r = ids_store_text_array(&a[1], (const char *const *)w->names->v, w->names->n,
				      sizeof(char *))) >= 0)
		r = ids_store_text_array(&a[2], (const char *const *)w->emails->v, w->emails->n,
					 sizeof(char *));
	const char *p[] = {company, a[0].p, a[1].p, a[2].p, l->connector};
	/* clang-format off */
#define IN_TENANTS " WHERE tenant_id IN (SELECT id FROM tenant WHERE company_id = $1::bigint)"
	if (r >= 0)
		r = rows_out(l,
			     "SELECT id, source, external_id, username, email, first_name, last_name,"
			     " display_name, auth_method, idp, deactivation_reason, company_admin, active"
			     " FROM app_user WHERE company_id = $1::bigint AND (external_id = ANY($2::text[])"
			     " OR lower(username) = ANY(SELECT lower(x) FROM unnest($3::text[]) x)"
			     " OR lower(email) = ANY(SELECT lower(x) FROM unnest($4::text[]) x))",
			     4, p, 13, on_user, "loading the person's users", err);
	if (r >= 0)
		r = some_index(l, &a[3]);
	if (r >= 0)
		r = rows_out(l,
			     "SELECT * FROM (SELECT 0::int2, user_id, tenant_id, role, 0, source, " RULES
			     " FROM tenant_role" IN_TENANTS
			     " UNION ALL SELECT 1::int2, user_id, tenant_id, channel, 0, source, " RULES
			     " FROM channel_grant" IN_TENANTS
			     " UNION ALL SELECT 3::int2, user_id, tenant_id, channel_group, slots, source, " RULES
			     " FROM slot_limit" IN_TENANTS
			     " UNION ALL SELECT 2::int2, user_id, group_id, NULL, 0, source, " RULES
			     " FROM operator_group_member WHERE group_id IN (SELECT g.id FROM operator_group g"
			     " JOIN tenant t ON t.id = g.tenant_id WHERE t.company_id = $1::bigint)) g"
			     " WHERE user_id = ANY($2::bigint[])",
			     2, (const char *const[]){company, a[3].p}, 7, on_grant,
			     "loading the person's grants", err);
#undef IN_TENANTS
	/* clang-format on */
	/* the thresholds' bases among the connector's other active users:
	 * its rows (the counter), less the loaded ones, read in the same
	 * snapshot: exact, whoever wrote the rows, but for rows written with
	 * the triggers disabled, which the next read of the whole state
	 * corrects (bases_check) */
	int64_t su, sg;
	long lu, lg;
	if (r >= 0 && (r = counted_bases(l, company, &su, &sg, err)) >= 0) {
		loaded_bases(l, &lu, &lg);
		l->c->active_others = su > lu ? (size_t)(su - lu) : 0;
		l->c->managed_others = sg > lg ? (size_t)(sg - lg) : 0;
	}
	for (size_t i = 0; i < 4; i++)
		ids_buf_free(&a[i]);
	return r;
}

/* The thresholds' bases as the whole state just read has them, against
 * managed_count in the same snapshot: c->bases_fix_* is what the counter
 * lacks (rows written with triggers disabled), which the run's apply adds
 * (store/apply.c).  A delta, not a value: whatever commits between this
 * snapshot and that apply moves the counter and the rows alike. */
static int bases_check(struct load *l, const char *company, struct ids_error *err)
{
	int64_t su, sg;
	long users, grants;
	int r = counted_bases(l, company, &su, &sg, err);
	loaded_bases(l, &users, &grants);
	l->c->bases_fix_users = users - (long)su;
	l->c->bases_fix_grants = grants - (long)sg;
	return r;
}

static int load_whole(struct load *l, int64_t company_id, const void *arg, struct ids_error *err)
{
	(void)arg;
	char company[24];
	snprintf(company, sizeof(company), "%" PRId64, company_id);
	/* Every read wants the whole company: hash joins and scans.  Right
	 * after a large first sync the statistics still say "empty table",
	 * and nested loops would take seconds. */
	int r = ids_store_exec(l->st, "SET LOCAL enable_nestloop = off", 0, NULL, PGRES_COMMAND_OK, NULL,
			       "SET", err);
	if (r >= 0)
		r = load_all(l, company_id, err);
	return r < 0 ? r : bases_check(l, company, err);
}

/* One read (fn) in one REPEATABLE READ transaction: *ret new. */
static int load_tx(struct ids_store *st, int64_t company_id, const char *connector,
		   int (*fn)(struct load *l, int64_t company_id, const void *arg, struct ids_error *err),
		   const void *arg, struct ids_current **ret, struct ids_error *err)
{
	struct load l = {.st = st, .connector = connector, .connector_len = strlen(connector)};
	bool in_tx = false;
	int r;

	r = ids_current_new(&l.c);
	if (r < 0)
		goto out;
	if (st->absent) { /* ids_store_assume_empty: nothing to read */
		*ret = l.c;
		return 0;
	}
	/* One snapshot for every read, so that users, grants and tenants
	 * agree with each other even while the platform writes. */
	r = ids_store_exec(st, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, PGRES_COMMAND_OK,
			   NULL, "BEGIN", err);
	if (r < 0)
		goto out;
	in_tx = true;
	r = fn(&l, company_id, arg, err);
	if (r < 0)
		goto out;
	r = ids_store_exec(st, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, "COMMIT", err);
	in_tx = false;
	if (r < 0)
		goto out;
	*ret = l.c;
	l.c = NULL;
out:
	if (in_tx)
		PQclear(PQexec(st->conn, "ROLLBACK"));
	load_clear(&l);
	ids_current_free(l.c);
	return r;
}

int ids_store_load(struct ids_store *st, int64_t company_id, const char *connector, struct ids_current **ret,
		   struct ids_error *err)
{
	return load_tx(st, company_id, connector, load_whole, NULL, ret, err);
}

int ids_store_load_some(struct ids_store *st, int64_t company_id, const char *connector,
			const struct ids_strv *ext, const struct ids_strv *names,
			const struct ids_strv *emails, struct ids_current **ret, struct ids_error *err)
{
	const struct some w = {ext, names, emails};
	return load_tx(st, company_id, connector, load_some, &w, ret, err);
}

/* ---------------- in the background ---------------- */

struct ids_store_loader {
	pthread_t th;
	struct ids_store *st;
	int64_t company_id;
	char *connector;
	struct ids_current *cur;
	struct ids_error err;
	int r;
	double seconds;
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *loader_main(void *arg)
{
	struct ids_store_loader *l = arg;
	double t0 = mono();
	l->r = ids_store_load(l->st, l->company_id, l->connector, &l->cur, &l->err);
	l->seconds = mono() - t0;
	return NULL;
}

int ids_store_load_start(struct ids_store *st, int64_t company_id, const char *connector,
			 struct ids_store_loader **ret)
{
	struct ids_store_loader *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->st = st;
	l->company_id = company_id;
	l->connector = strdup(connector);
	if (!l->connector) {
		free(l);
		return -ENOMEM;
	}
	/* the daemon's signals (SIGTERM, SIGHUP) stay with its own thread */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&l->th, NULL, loader_main, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		free(l->connector);
		free(l);
		return -r;
	}
	*ret = l;
	return 0;
}

static void loader_free(struct ids_store_loader *l)
{
	ids_current_free(l->cur);
	ids_error_clear(&l->err);
	free(l->connector);
	free(l);
}

int ids_store_load_finish(struct ids_store_loader *l, struct ids_current **ret, double *ret_seconds,
			  struct ids_error *err)
{
	pthread_join(l->th, NULL);
	int r = l->r;
	if (r < 0) {
		ids_error_set(err, r, "%s", ids_error_text(&l->err));
	} else {
		*ret = l->cur;
		l->cur = NULL;
		if (ret_seconds)
			*ret_seconds = l->seconds;
	}
	loader_free(l);
	return r;
}

void ids_store_load_abandon(struct ids_store_loader *l)
{
	if (!l)
		return;
	/* waited for, not cancelled: a cancel request can land on the
	 * statement after the one it was meant for, and a failed pull is rare
	 * enough to spend the rest of the load on it */
	pthread_join(l->th, NULL);
	loader_free(l);
}
