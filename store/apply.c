/* apply.c — ids_store_apply(): a plan, its audit rows and its sync_run row
 * in ONE transaction (semantics.md, safety rule 4).
 *
 * The plan is copied into temporary staging tables with COPY, then a fixed
 * list of set-based statements joins them with the real tables: the number
 * of statements is the same for 1 user or 100 000.  Users are found by id
 * and checked against (company, connector, external id); grant rows are
 * found by the user's (connector, external id) and the tenant's slug in the
 * company, so no statement can reach into another company.  Grant rows
 * whose source is not this connector (made by hand, NULL) are never
 * deleted or changed.
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

/* The staging tables live in pg_temp and vanish at COMMIT or ROLLBACK. */
static const char staging_sql[] =
    "CREATE TEMP TABLE ids_s_tenant (slug text NOT NULL) ON COMMIT DROP;"
    "CREATE TEMP TABLE ids_s_user (seq int NOT NULL, id bigint, external_id text,"
    " username text, email text, first_name text, last_name text, display_name text,"
    " company_admin bool NOT NULL, reason text,"
    " op_create bool NOT NULL, op_adopt bool NOT NULL, op_update bool NOT NULL,"
    " op_deactivate bool NOT NULL, op_reactivate bool NOT NULL, op_reason bool NOT NULL,"
    " ch_username bool NOT NULL, ch_email bool NOT NULL, ch_first_name bool NOT NULL,"
    " ch_last_name bool NOT NULL, ch_display_name bool NOT NULL,"
    " ch_company_admin bool NOT NULL, ch_auth bool NOT NULL) ON COMMIT DROP;"
    "CREATE TEMP TABLE ids_s_grant (seq int NOT NULL, op text NOT NULL, kind text NOT NULL,"
    " external_id text NOT NULL, tenant text NOT NULL, name text NOT NULL, slots int) ON COMMIT DROP;"
    "CREATE TEMP TABLE ids_s_audit (seq int NOT NULL, action text NOT NULL, user_id bigint,"
    " external_id text, detail text NOT NULL) ON COMMIT DROP";

/* State of one apply: the statements' common parameters
 * ($1 company id, $2 connector, $3 run id, $4 idp) and the error. */
struct apply {
	struct ids_store *st;
	const char *params[4];
	char company[24], run_id[24];
	struct ids_buf copy; /* COPY data not yet sent */
	struct ids_error *err;
	long rows;   /* rows the statements wrote */
	long audits; /* audit rows staged */
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
		r = ids_store_fail(a->st, res, "staging the plan", a->err);
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
		return ids_store_fail(a->st, NULL, "staging the plan", a->err);
	ids_buf_reset(&a->copy);
	return 0;
}

static int copy_end(struct apply *a)
{
	PGresult *res;
	int r = copy_flush(a, true);
	if (r < 0)
		return r;
	if (PQputCopyEnd(a->st->conn, NULL) != 1)
		return ids_store_fail(a->st, NULL, "staging the plan", a->err);
	/* The COPY's own result, then NULL. */
	while ((res = PQgetResult(a->st->conn)) != NULL) {
		if (r >= 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
			r = ids_store_fail(a->st, res, "staging the plan", a->err);
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
	struct ids_buf safe = {0};
	int r = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && r >= 0; p++)
		r = *p < 0x80 ? ids_buf_putc(&safe, (char)*p) : ids_buf_printf(&safe, "\\x%02x", *p);
	if (r >= 0)
		r = ids_buf_json_str(b, safe.p ? safe.p : "");
	ids_buf_free(&safe);
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

/* The detail of an update: every changed field as [old, new]. */
static int update_detail(struct ids_buf *d, const struct ids_plan_user *u, const char *idp)
{
	static const struct {
		unsigned bit;
		const char *key;
		size_t off;
	} fields[] = {
	    {IDS_CH_USERNAME, "username", offsetof(struct ids_cur_user, username)},
	    {IDS_CH_EMAIL, "email", offsetof(struct ids_cur_user, email)},
	    {IDS_CH_FIRST_NAME, "first_name", offsetof(struct ids_cur_user, first_name)},
	    {IDS_CH_LAST_NAME, "last_name", offsetof(struct ids_cur_user, last_name)},
	    {IDS_CH_DISPLAY_NAME, "display_name", offsetof(struct ids_cur_user, display_name)},
	};
	const char *desired[] = {u->username, u->email, u->first_name, u->last_name, u->display_name};
	const struct ids_cur_user *c = u->cur;
	bool first = true;
	int r = 0;

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && r >= 0; i++) {
		if (!(u->changed & fields[i].bit))
			continue;
		const char *old = c ? *(const char *const *)((const char *)c + fields[i].off) : NULL;
		r = json_change(d, fields[i].key, old, desired[i], &first);
	}
	if (r >= 0 && (u->changed & IDS_CH_COMPANY_ADMIN)) {
		r = ids_buf_printf(d, "%s\"company_admin\":[%s,%s]", first ? "{" : ",",
				   c ? bool_json(c->company_admin) : "null", bool_json(u->company_admin));
		first = false;
	}
	if (r >= 0 && (u->changed & IDS_CH_AUTH)) {
		r = json_change(d, "auth_method", c ? c->auth_method : NULL, "sso", &first);
		if (r >= 0)
			r = json_change(d, "idp", c ? c->idp : NULL, idp, &first);
	}
	if (r >= 0)
		r = ids_buf_puts(d, first ? "{}" : "}");
	return r;
}

/* One ids_s_audit row. */
static int audit_row(struct apply *a, long *seq, const char *action, int64_t user_id, const char *external_id,
		     const char *detail)
{
	a->audits++;
	int r = copy_num(&a->copy, (*seq)++, false, true);
	if (r >= 0)
		r = copy_field(&a->copy, action, false);
	if (r >= 0)
		r = copy_num(&a->copy, user_id, true, false);
	if (r >= 0)
		r = copy_field(&a->copy, external_id, false);
	if (r >= 0)
		r = copy_field(&a->copy, detail, false);
	if (r >= 0)
		r = ids_buf_putc(&a->copy, '\n');
	return r < 0 ? r : copy_flush(a, false);
}

/* The audit rows of one plan user, in the order things happen to it. */
static int audit_user(struct apply *a, long *seq, const struct ids_plan_user *u, const char *idp)
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
			r = audit_row(a, seq, "create", u->id, u->external_id, d.p);
	}
	if (r >= 0 && (f & IDS_PU_ADOPT)) {
		ids_buf_reset(&d);
		/* the address the adoption matched on: the existing user's */
		r = json_kv(&d, "email", c && c->email ? c->email : u->email, true);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, seq, "adopt", u->id, u->external_id, d.p);
	}
	if (r >= 0 && (f & IDS_PU_REACTIVATE))
		r = audit_row(a, seq, "reactivate", u->id, u->external_id, "{}");
	/* Adoption itself switches the user to SSO; its other changes
	 * (names, e-mail following the directory) are an update. */
	if (r >= 0 &&
	    ((f & IDS_PU_UPDATE) || ((f & IDS_PU_ADOPT) && (u->changed & ~(unsigned)IDS_CH_AUTH)))) {
		ids_buf_reset(&d);
		r = update_detail(&d, u, idp);
		if (r >= 0)
			r = audit_row(a, seq, "update", u->id, u->external_id, d.p);
	}
	if (r >= 0 && (f & IDS_PU_DEACTIVATE)) {
		ids_buf_reset(&d);
		r = json_kv(&d, "reason", u->reason, true);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, seq, "deactivate", u->id, u->external_id, d.p);
	}
	if (r >= 0 && (f & IDS_PU_REASON)) {
		/* already inactive: only the reason moves, as an update */
		bool first = true;
		ids_buf_reset(&d);
		r = json_change(&d, "deactivation_reason", c ? c->reason : NULL, u->reason, &first);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		if (r >= 0)
			r = audit_row(a, seq, "update", u->id, u->external_id, d.p);
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
			r = audit_row(a, seq, "conflict", u->id, u->external_id, d.p);
	}
	if (r >= 0 && (f & IDS_PU_SKIP_INVALID)) {
		ids_buf_reset(&d);
		r = json_kv(&d, "external_id", u->external_id, true);
		if (r >= 0)
			r = json_kv(&d, "reason", u->reason, false);
		if (r >= 0)
			r = ids_buf_putc(&d, '}');
		/* The external id of an invalid user may itself be what is
		 * wrong with it: not used to find the user then. */
		bool ok = u->external_id && ids_utf8_valid(u->external_id, strlen(u->external_id));
		if (r >= 0)
			r = audit_row(a, seq, "skip_invalid", u->id, ok ? u->external_id : NULL, d.p);
	}
	ids_buf_free(&d);
	return r;
}

/* Words of the staging table and of the audit detail for a grant kind:
 * the names the platform's tables use. */
static const char *kind_word(enum ids_grant_kind k)
{
	switch (k) {
	case IDS_GRANT_ROLE: return "role";
	case IDS_GRANT_CHANNEL: return "channel";
	case IDS_GRANT_GROUP: return "group";
	case IDS_GRANT_SLOT: return "slot";
	default: return "?";
	}
}

/* One grant of a user's grant or revoke list: {"kind":..,"tenant":..,"name":..}
 * (with slots, and old_slots for a changed value). */
static int grant_json(struct ids_buf *d, const struct ids_plan_grant *g)
{
	int r = json_kv(d, "kind", kind_word(g->kind), true);
	if (r >= 0)
		r = json_kv(d, "tenant", g->tenant, false);
	if (r >= 0)
		r = json_kv(d, "name", g->name, false);
	if (r >= 0 && g->kind == IDS_GRANT_SLOT)
		r = ids_buf_printf(d, ",\"slots\":%d", g->slots);
	if (r >= 0 && g->op == IDS_GOP_CHANGE)
		r = ids_buf_printf(d, ",\"old_slots\":%d", g->old_slots);
	return r < 0 ? r : ids_buf_putc(d, '}');
}

/* The audit rows of the grants g[0..n) of one user (one external id):
 * a `grant` row listing what was added or changed, a `revoke` row listing
 * what was removed, each only when there is something to list. */
static int audit_grants(struct apply *a, long *seq, const struct ids_plan_grant *g, size_t n,
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
				r = grant_json(d, &g[i]);
			any = true;
		}
		if (r >= 0 && any)
			r = ids_buf_puts(d, "]}");
		/* the user id comes from (connector, external id) at insert
		 * time: a user created in this run has none yet */
		if (r >= 0 && any)
			r = audit_row(a, seq, revoke ? "revoke" : "grant", 0, g[0].external_id, d->p);
	}
	return r;
}

/* ---------------- staging ---------------- */

/* Expected row counts of the user statements, from the plan, and how
 * many grants of each op and kind were staged (statements with nothing to
 * do are not sent: a resync that changes nothing costs a few round
 * trips, not thirty). */
struct expect {
	long adopt, deactivate, reason, update, reactivate, create;
	long grants[3][IDS_GRANT__COUNT]; /* [op][kind] */
	long tenants;
};

static int stage_tenants(struct apply *a, const struct ids_plan *p, struct expect *e)
{
	e->tenants = (long)p->new_tenants.n;
	int r = copy_begin(a, "COPY pg_temp.ids_s_tenant (slug) FROM STDIN");
	for (size_t i = 0; i < p->new_tenants.n && r >= 0; i++) {
		r = copy_field(&a->copy, p->new_tenants.v[i], true);
		if (r >= 0)
			r = ids_buf_putc(&a->copy, '\n');
		if (r >= 0)
			r = copy_flush(a, false);
	}
	return r < 0 ? r : copy_end(a);
}

static int stage_users(struct apply *a, const struct ids_plan *p, struct expect *e)
{
	int r = copy_begin(a, "COPY pg_temp.ids_s_user FROM STDIN");
	for (size_t i = 0; i < p->nusers && r >= 0; i++) {
		const struct ids_plan_user *u = &p->users[i];
		unsigned f = u->flags, ch = u->changed;
		/* conflicts and invalid users change nothing: audit rows only */
		if (!(f & (IDS_PU_CREATE | IDS_PU_ADOPT | IDS_PU_UPDATE | IDS_PU_DEACTIVATE |
			   IDS_PU_REACTIVATE | IDS_PU_REASON)))
			continue;
		e->create += !!(f & IDS_PU_CREATE);
		e->adopt += !!(f & IDS_PU_ADOPT);
		e->update += !!(f & (IDS_PU_UPDATE | IDS_PU_ADOPT));
		e->deactivate += !!(f & IDS_PU_DEACTIVATE);
		e->reactivate += !!(f & IDS_PU_REACTIVATE);
		e->reason += !!(f & IDS_PU_REASON);
		const char *text[] = {u->external_id, u->username,  u->email,
				      u->first_name,  u->last_name, u->display_name};
		const bool bits[] = {
		    f & IDS_PU_CREATE,	   f & IDS_PU_ADOPT,	     f & IDS_PU_UPDATE,
		    f & IDS_PU_DEACTIVATE, f & IDS_PU_REACTIVATE,    f & IDS_PU_REASON,
		    ch & IDS_CH_USERNAME,  ch & IDS_CH_EMAIL,	     ch & IDS_CH_FIRST_NAME,
		    ch & IDS_CH_LAST_NAME, ch & IDS_CH_DISPLAY_NAME, ch & IDS_CH_COMPANY_ADMIN,
		    ch & IDS_CH_AUTH,
		};
		r = copy_num(&a->copy, (int64_t)i, false, true);
		if (r >= 0)
			r = copy_num(&a->copy, u->id, true, false);
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
			r = ids_buf_putc(&a->copy, '\n');
		if (r >= 0)
			r = copy_flush(a, false);
	}
	return r < 0 ? r : copy_end(a);
}

static int stage_grants(struct apply *a, const struct ids_plan *p, struct expect *e)
{
	static const char *const ops[] = {
	    [IDS_GOP_ADD] = "add", [IDS_GOP_REMOVE] = "remove", [IDS_GOP_CHANGE] = "change"};
	int r = copy_begin(a, "COPY pg_temp.ids_s_grant FROM STDIN");
	for (size_t i = 0; i < p->ngrants && r >= 0; i++) {
		const struct ids_plan_grant *g = &p->grants[i];
		if ((unsigned)g->op > IDS_GOP_CHANGE || (unsigned)g->kind >= IDS_GRANT__COUNT) {
			r = ids_error_set(a->err, IDS_E_INVALID, "plan: grant %zu has an unknown op or kind",
					  i);
			break;
		}
		e->grants[g->op][g->kind]++;
		r = copy_num(&a->copy, (int64_t)i, false, true);
		if (r >= 0)
			r = copy_field(&a->copy, ops[g->op], false);
		if (r >= 0)
			r = copy_field(&a->copy, kind_word(g->kind), false);
		if (r >= 0)
			r = copy_field(&a->copy, g->external_id, false);
		if (r >= 0)
			r = copy_field(&a->copy, g->tenant, false);
		if (r >= 0)
			r = copy_field(&a->copy, g->name, false);
		if (r >= 0)
			r = g->kind == IDS_GRANT_SLOT ? copy_num(&a->copy, g->slots, false, false)
						      : copy_field(&a->copy, NULL, false);
		if (r >= 0)
			r = ids_buf_putc(&a->copy, '\n');
		if (r >= 0)
			r = copy_flush(a, false);
	}
	return r < 0 ? r : copy_end(a);
}

static int stage_audit(struct apply *a, const struct ids_plan *p, const char *idp)
{
	struct ids_buf d = {0};
	long seq = 0;
	int r = copy_begin(a, "COPY pg_temp.ids_s_audit FROM STDIN");
	for (size_t i = 0; i < p->nusers && r >= 0; i++)
		r = audit_user(a, &seq, &p->users[i], idp);
	/* the plan keeps a user's grants together: one run per user */
	for (size_t i = 0, j; i < p->ngrants && r >= 0; i = j) {
		for (j = i + 1; j < p->ngrants && ids_strcmp0(p->grants[j].external_id, p->grants[i].external_id) == 0;
		     j++)
			;
		r = audit_grants(a, &seq, &p->grants[i], j - i, &d);
	}
	ids_buf_free(&d);
	return r < 0 ? r : copy_end(a);
}

/* ---------------- the statements ---------------- */

/* A grant row's user and tenant, from the staged grant g: the user the
 * connector owns with that external id, the tenant of the company with
 * that slug. */
#define GRANT_JOIN                                                                                           \
	" JOIN app_user u ON u.company_id = $1 AND u.source = $2 AND u.external_id = g.external_id"          \
	" JOIN tenant t ON t.company_id = $1 AND t.slug = g.tenant"
#define GRANT_WHERE                                                                                          \
	" u.company_id = $1 AND u.source = $2 AND u.external_id = g.external_id"                             \
	" AND t.company_id = $1 AND t.slug = g.tenant"

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
	if (r >= 0)
		r = stmt(a, "creating users",
			 "INSERT INTO app_user (company_id, source, external_id, username, email, first_name,"
			 " last_name, display_name, auth_method, idp, company_admin)"
			 " SELECT $1, $2, s.external_id, s.username, s.email, s.first_name, s.last_name,"
			 " s.display_name, 'sso', $4, s.company_admin"
			 " FROM pg_temp.ids_s_user s WHERE s.op_create ORDER BY s.seq",
			 e->create);
	return r;
}

/* Grant tables with a (user, tenant, name) key; operator groups have
 * their own statements (the name leads to a group row). */
static const struct {
	const char *kind, *table, *column;
} grant_tables[] = {
    {"role", "tenant_role", "role"},
    {"channel", "channel_grant", "channel"},
    {"slot", "slot_limit", "channel_group"},
};

static int apply_grants(struct apply *a, const struct expect *e)
{
	static const enum ids_grant_kind table_kind[] = {IDS_GRANT_ROLE, IDS_GRANT_CHANNEL, IDS_GRANT_SLOT};
	struct ids_buf sql = {0};
	int r = 0;

	/* Removals first: only rows this connector owns (x.source = $2), so
	 * a hand-made row (source NULL) is never deleted. */
	for (size_t i = 0; i < sizeof(grant_tables) / sizeof(grant_tables[0]) && r >= 0; i++) {
		if (!e->grants[IDS_GOP_REMOVE][table_kind[i]])
			continue;
		ids_buf_reset(&sql);
		r = ids_buf_printf(
		    &sql,
		    "DELETE FROM %s x USING pg_temp.ids_s_grant g, app_user u, tenant t"
		    " WHERE g.op = 'remove' AND g.kind = '%s' AND" GRANT_WHERE
		    " AND x.user_id = u.id AND x.tenant_id = t.id AND x.%s = g.name AND x.source = $2",
		    grant_tables[i].table, grant_tables[i].kind, grant_tables[i].column);
		if (r >= 0)
			r = stmt(a, "removing grants", sql.p, -1);
	}
	if (r >= 0 && e->grants[IDS_GOP_REMOVE][IDS_GRANT_GROUP])
		r = stmt(a, "removing group memberships",
			 "DELETE FROM operator_group_member x"
			 " USING pg_temp.ids_s_grant g, app_user u, tenant t, operator_group og"
			 " WHERE g.op = 'remove' AND g.kind = 'group' AND" GRANT_WHERE
			 " AND og.tenant_id = t.id AND og.name = g.name AND x.group_id = og.id"
			 " AND x.user_id = u.id AND x.source = $2",
			 -1);

	/* Operator groups that a membership needs and the tenant lacks. */
	if (r >= 0 && e->grants[IDS_GOP_ADD][IDS_GRANT_GROUP])
		r = stmt(a, "creating operator groups",
			 "INSERT INTO operator_group (tenant_id, name)"
			 " SELECT DISTINCT t.id, g.name FROM pg_temp.ids_s_grant g"
			 " JOIN tenant t ON t.company_id = $1 AND t.slug = g.tenant"
			 " WHERE g.op = 'add' AND g.kind = 'group'"
			 " ON CONFLICT (tenant_id, name) DO NOTHING",
			 -1);

	/* Additions: an existing row with the same key (one made by hand)
	 * stays as it is. */
	for (size_t i = 0; i < sizeof(grant_tables) / sizeof(grant_tables[0]) && r >= 0; i++) {
		bool slot = strcmp(grant_tables[i].kind, "slot") == 0;
		if (!e->grants[IDS_GOP_ADD][table_kind[i]])
			continue;
		ids_buf_reset(&sql);
		r = ids_buf_printf(
		    &sql,
		    "INSERT INTO %s (user_id, tenant_id, %s, %ssource)"
		    " SELECT u.id, t.id, g.name, %s$2 FROM pg_temp.ids_s_grant g" GRANT_JOIN
		    " WHERE g.op = 'add' AND g.kind = '%s' ORDER BY g.seq ON CONFLICT DO NOTHING",
		    grant_tables[i].table, grant_tables[i].column, slot ? "slots, " : "",
		    slot ? "g.slots, " : "", grant_tables[i].kind);
		if (r >= 0)
			r = stmt(a, "adding grants", sql.p, -1);
	}
	if (r >= 0 && e->grants[IDS_GOP_ADD][IDS_GRANT_GROUP])
		r = stmt(a, "adding group memberships",
			 "INSERT INTO operator_group_member (group_id, user_id, source)"
			 " SELECT og.id, u.id, $2 FROM pg_temp.ids_s_grant g" GRANT_JOIN
			 " JOIN operator_group og ON og.tenant_id = t.id AND og.name = g.name"
			 " WHERE g.op = 'add' AND g.kind = 'group' ORDER BY g.seq ON CONFLICT DO NOTHING",
			 -1);

	/* New slot values, on the connector's rows only. */
	if (r >= 0 && e->grants[IDS_GOP_CHANGE][IDS_GRANT_SLOT])
		r = stmt(a, "changing slots",
			 "UPDATE slot_limit x SET slots = g.slots"
			 " FROM pg_temp.ids_s_grant g, app_user u, tenant t"
			 " WHERE g.op = 'change' AND g.kind = 'slot' AND" GRANT_WHERE
			 " AND x.user_id = u.id AND x.tenant_id = t.id AND x.channel_group = g.name"
			 " AND x.source = $2",
			 -1);
	ids_buf_free(&sql);
	return r;
}

/* Stages the plan and runs the statements, inside the caller's
 * transaction. */
static int apply_changes(struct apply *a, const struct ids_plan *p, const char *idp)
{
	struct ids_store *st = a->st;
	struct expect e = {0};
	PGresult *res = PQexec(st->conn, staging_sql);
	int r = 0;
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
		r = ids_store_fail(st, res, "creating the staging tables", a->err);
	PQclear(res);
	if (r < 0)
		return r;
	if ((r = stage_tenants(a, p, &e)) < 0 || (r = stage_users(a, p, &e)) < 0 ||
	    (r = stage_grants(a, p, &e)) < 0 || (r = stage_audit(a, p, idp)) < 0)
		return r;
	/* Temporary tables have no statistics until analysed: without them
	 * the planner guesses, badly, for a large plan. */
	r = ids_store_exec(
	    st, "ANALYZE pg_temp.ids_s_tenant, pg_temp.ids_s_user, pg_temp.ids_s_grant, pg_temp.ids_s_audit",
	    0, NULL, PGRES_COMMAND_OK, NULL, "analysing the staging tables", a->err);
	if (r < 0)
		return r;

	r = stmt(a, "creating tenants",
		 "INSERT INTO tenant (company_id, slug, name) SELECT DISTINCT $1, slug, slug FROM "
		 "pg_temp.ids_s_tenant"
		 " ON CONFLICT (company_id, slug) DO NOTHING",
		 e.tenants ? -1 : 0);
	if (r >= 0)
		r = apply_users(a, &e);
	if (r >= 0)
		r = apply_grants(a, &e);
	/* Audit rows last, when every created user has its id.  A conflict
	 * or invalid user gets one only when the connector owns it. */
	if (r >= 0)
		r = stmt(a, "writing the audit log",
			 "INSERT INTO audit_log (run_id, user_id, action, detail)"
			 " SELECT $3, coalesce(a.user_id, u.id), a.action, a.detail::jsonb"
			 " FROM pg_temp.ids_s_audit a LEFT JOIN app_user u"
			 " ON u.company_id = $1 AND u.source = $2 AND u.external_id = a.external_id"
			 " ORDER BY a.seq",
			 a->audits ? -1 : 0);
	return r;
}

int ids_store_apply(struct ids_store *st, int64_t company_id, const char *idp, const struct ids_plan *p,
		    const struct ids_run *run, int64_t *ret_run_id, struct ids_error *err)
{
	struct apply a = {.st = st, .err = err};
	bool in_tx = false;
	int64_t run_id = 0;
	int r;
	const char *connector = p->connector ? p->connector : run->connector;

	snprintf(a.company, sizeof(a.company), "%" PRId64, company_id);
	r = ids_store_exec(st, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, "BEGIN", err);
	if (r < 0)
		goto out;
	in_tx = true;

	/* The run row first: the audit rows reference it.  Its finished_at
	 * is set last, just before COMMIT. */
	r = ids_store_insert_run(st, run, false, &run_id, err);
	if (r < 0)
		goto out;
	snprintf(a.run_id, sizeof(a.run_id), "%" PRId64, run_id);
	a.params[0] = a.company;
	a.params[1] = connector;
	a.params[2] = a.run_id;
	a.params[3] = idp;
	/* a plan without a single change (a resync of an unchanged
	 * directory): the run row is all there is to write */
	if (p->nusers || p->ngrants || p->new_tenants.n || p->new_groups.n)
		r = apply_changes(&a, p, idp);
	if (r >= 0)
		r = stmt(&a, "finishing the run",
			 "UPDATE sync_run SET finished_at = clock_timestamp() WHERE id = $3", 1);
	if (r < 0)
		goto out;
	r = ids_store_exec(st, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, "COMMIT", err);
	if (r < 0)
		goto out;
	in_tx = false;
	/* the statements' rows (the run's finishing update among them) and
	 * the run row itself */
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
	return r;
}

long ids_store_rows_written(const struct ids_store *st)
{
	return st ? st->rows_written : 0;
}
