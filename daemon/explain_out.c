/* explain_out.c — `idsyncd explain`'s output (explain_out.h): the text a
 * person reads, and the JSON a script reads (docs/json.md, "explain").
 * Both say the same things in the same order: who, how the row was
 * matched, scope, each grant with the rules behind it and how each rule
 * matched, the rules that did not match and why, the database side. */
#include "ids/explain_out.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ids/output.h"

/* The reason rule `name` gave (how it matched), NULL when unknown. */
static const char *rule_how(const struct ids_explanation *x, const char *name)
{
	for (size_t i = 0; i < x->nrules; i++)
		if (!strcmp(x->rules[i].rule->name, name))
			return x->rules[i].why;
	return NULL;
}

/* The value rule `name` offered for slot grant g, -1 when none. */
static int offer_of(const struct ids_explain_grant *g, const char *name)
{
	for (size_t i = 0; i < g->noffers; i++)
		if (!strcmp(g->offers[i].rule, name))
			return g->offers[i].slots;
	return -1;
}

/* ---------------- text ---------------- */

static int text_user(const struct ids_explanation *x, struct ids_buf *b)
{
	const char *const *f = x->user->f;
	int r = ids_buf_printf(b, "user     %s", f[IDS_F_USERNAME] ? f[IDS_F_USERNAME] : "?");
	if (r >= 0 && f[IDS_F_DISPLAY_NAME])
		r = ids_buf_printf(b, " (%s)", f[IDS_F_DISPLAY_NAME]);
	if (r >= 0 && f[IDS_F_EMAIL])
		r = ids_buf_printf(b, " <%s>", f[IDS_F_EMAIL]);
	if (r >= 0)
		r = ids_buf_printf(b, "  connector %s\n         external id %s", x->connector,
				   f[IDS_F_EXTERNAL_ID] ? f[IDS_F_EXTERNAL_ID] : "?");
	if (r >= 0 && f[IDS_F_DN])
		r = ids_buf_printf(b, ", dn %s", f[IDS_F_DN]);
	if (r >= 0 && x->db) {
		r = ids_buf_printf(b, "\nmatched  %s", ids_explain_ident_word(x->ident));
		switch (x->ident) {
		case IDS_XI_OWNED:
			r = ids_buf_printf(b, ": user id %lld (source %s, this external id)",
					   (long long)x->user_id, x->connector);
			break;
		case IDS_XI_ADOPTED:
			r = ids_buf_printf(
			    b, ": hand-made user id %lld (%s) has this e-mail; the next run takes it over",
			    (long long)x->user_id, x->ident_why ? x->ident_why : "?");
			break;
		case IDS_XI_CONFLICT:
			r = ids_buf_printf(b, ": %s; the user is skipped", x->ident_why ? x->ident_why : "?");
			break;
		case IDS_XI_NEW: r = ids_buf_puts(b, ": no row yet; the next run creates it"); break;
		default: r = ids_buf_puts(b, ": no row, and none is made"); break;
		}
	}
	if (r >= 0 && x->in_scope)
		r = ids_buf_printf(b, "\nscope    in scope%s\n", x->company_admin ? ", company admin" : "");
	else if (r >= 0)
		r = ids_buf_printf(b, "\nscope    out of scope: %s\n", x->scope_why ? x->scope_why : "?");
	return r;
}

/* "role  support  operator" (slots: "live 4") */
static int text_key(const struct ids_explain_grant *g, int slots, struct ids_buf *b)
{
	int r = ids_buf_printf(b, "%-5s %s  %s", ids_grant_kind_name(g->kind), g->tenant, g->name);
	return r >= 0 && g->kind == IDS_GRANT_SLOT && slots >= 0 ? ids_buf_printf(b, " %d", slots) : r;
}

/* One desired (or revoked) grant and a line per rule behind it. */
static int text_grant(const struct ids_explanation *x, const struct ids_explain_grant *g, struct ids_buf *b)
{
	int r = ids_buf_puts(b, g->revoked ? "  - " : "  + ");
	if (r >= 0)
		r = text_key(g, g->slots, b);
	if (r >= 0 && g->kind == IDS_GRANT_SLOT && g->noffers > 1)
		r = ids_buf_puts(b, "  (the largest offer)");
	if (r >= 0)
		r = ids_buf_putc(b, '\n');
	/* a slot: every rule that offered a value, winners and losers */
	for (size_t i = 0; r >= 0 && g->kind == IDS_GRANT_SLOT && !g->revoked && i < g->noffers; i++)
		r = ids_buf_printf(b, "      rule %s: %s; offers %d\n", g->offers[i].rule,
				   rule_how(x, g->offers[i].rule), g->offers[i].slots);
	/* the catalog's words, not a rule: "required by monitoring",
	 * "requires phone", "licence phone: waiting for a seat (limit 50)" */
	for (size_t i = 0; r >= 0 && g->rules && g->rules->note && i < g->rules->n; i++)
		r = ids_buf_printf(b, "      %s%s\n", g->revoked ? "left out: " : "", g->rules->names[i]);
	for (size_t i = 0; r >= 0 && g->rules && !g->rules->note && i < g->rules->n; i++) {
		const char *n = g->rules->names[i];
		if (g->kind == IDS_GRANT_SLOT && !g->revoked && offer_of(g, n) >= 0)
			continue;
		r = ids_buf_printf(b, "      %srule %s: %s\n", g->revoked ? "revoked by " : "", n,
				   rule_how(x, n));
	}
	return r;
}

/* "(entitled in run 12)", or from the next run when the rules grant it
 * for the first time. */
static int text_entitled(const struct ids_explain_seat *e, struct ids_buf *b)
{
	return e->entitled_run ? ids_buf_printf(b, " (entitled in run %lld)", (long long)e->entitled_run)
			       : ids_buf_puts(b, " (entitled from the next run)");
}

/* "since run 3", or before the seat book knew (seated before licences). */
static int text_seat_since(const struct ids_explain_seat *e, struct ids_buf *b)
{
	return e->seat_run ? ids_buf_printf(b, "seat since run %lld", (long long)e->seat_run)
			   : ids_buf_puts(b, "seat from before the licence");
}

/* One licence: where the user stands, then the licence's numbers. */
static int text_seat(const struct ids_explanation *x, const struct ids_explain_seat *e, struct ids_buf *b)
{
	int r = ids_buf_printf(b, "  %s  %s", e->role, ids_explain_seat_word(e->state));
	switch (e->state) {
	case IDS_XS_HOLDER:
		if (r >= 0 && (r = ids_buf_puts(b, " (")) >= 0 && (r = text_seat_since(e, b)) >= 0)
			r = ids_buf_putc(b, ')');
		break;
	case IDS_XS_SEATED:
		if (r >= 0 && (r = ids_buf_puts(b, " by the next run")) >= 0)
			r = text_entitled(e, b);
		break;
	case IDS_XS_WAITING:
		if (r >= 0 && (r = ids_buf_printf(b, ": position %ld of %ld", e->position, e->of)) >= 0)
			r = text_entitled(e, b);
		break;
	default:
		if (r >= 0 &&
		    (r = ids_buf_printf(b, " by the next run, over the limit of %ld (", e->limit)) >= 0 &&
		    (r = text_seat_since(e, b)) >= 0)
			r = ids_buf_printf(b, "); then waiting: position %ld of %ld", e->position, e->of);
		break;
	}
	if (r >= 0)
		r = ids_buf_printf(b, "; licence %s/%s: %ld / %ld used, %ld waiting\n", x->company, e->role,
				   e->used, e->limit, e->waiting);
	return r;
}

static int text_db(const struct ids_explain_grant *g, struct ids_buf *b)
{
	int r = ids_buf_puts(b, "  ");
	if (r >= 0)
		r = text_key(g, -1, b);
	switch (g->db) {
	case IDS_XD_PRESENT:
		r = g->kind == IDS_GRANT_SLOT ? ids_buf_printf(b, "  present (%d)", g->db_slots)
					      : ids_buf_puts(b, "  present");
		break;
	case IDS_XD_MANUAL:
		r = ids_buf_puts(b, "  manual (made by hand or by another connector): never touched");
		break;
	case IDS_XD_MISSING: r = ids_buf_puts(b, g->revoked ? "  absent (revoked)" : "  missing"); break;
	case IDS_XD_EXTRA: r = ids_buf_puts(b, "  present, no rule gives it"); break;
	default: break;
	}
	if (r >= 0 && g->next)
		r = ids_buf_printf(b, ": next run: %s", g->next);
	return r < 0 ? r : ids_buf_putc(b, '\n');
}

int ids_explain_format_text(const struct ids_explanation *x, struct ids_buf *b)
{
	int r = text_user(x, b);
	bool any = false;
	for (size_t i = 0; r >= 0 && i < x->ngrants; i++)
		if (x->grants[i].wanted || x->grants[i].revoked) {
			if (!any && (r = ids_buf_puts(b, "grants\n")) < 0)
				break;
			any = true;
			r = text_grant(x, &x->grants[i], b);
		}
	if (r >= 0 && !any)
		r = ids_buf_puts(b, "grants   none\n");
	for (size_t i = 0; r >= 0 && i < x->nseats; i++)
		if ((i || (r = ids_buf_puts(b, "licences\n")) >= 0))
			r = text_seat(x, &x->seats[i], b);
	any = false;
	for (size_t i = 0; r >= 0 && i < x->nrules; i++) {
		const struct ids_explain_rule *er = &x->rules[i];
		if (er->matched && (er->granted || er->rule->revoke || er->rule->company_admin))
			continue;
		if (!any && (r = ids_buf_puts(b, "rules that did not match\n")) < 0)
			break;
		any = true;
		r = ids_buf_printf(b, "  %s: %s%s\n", er->rule->name, er->why,
				   er->matched ? " (matched, but granted nothing)" : "");
	}
	for (size_t i = 0; r >= 0 && i < x->warnings.n; i++)
		r = ids_buf_printf(b, "warning  %s\n", x->warnings.v[i]);
	if (r >= 0 && x->db) {
		r = ids_buf_printf(b, "database\n");
		for (size_t i = 0; r >= 0 && i < x->ngrants; i++)
			if (!x->grants[i].revoked || x->grants[i].db != IDS_XD_MISSING)
				r = text_db(&x->grants[i], b);
		if (r >= 0)
			r = ids_buf_printf(b, "next run user: %s\n", x->next_user ? x->next_user : "nothing");
	}
	return r;
}

/* ---------------- JSON ---------------- */

/* Sets key to v (stolen); *err on failure. */
static void set(json_t *o, const char *key, json_t *v, int *err)
{
	if (!v || json_object_set_new(o, key, v) < 0)
		*err = -ENOMEM;
}

static json_t *json_user(const struct ids_explanation *x)
{
	const char *const *f = x->user->f;
	json_t *o = json_object();
	int err = o ? 0 : -ENOMEM;
	set(o, "external_id", ids_output_jstr(f[IDS_F_EXTERNAL_ID]), &err);
	set(o, "username", ids_output_jstr(f[IDS_F_USERNAME]), &err);
	set(o, "email", ids_output_jstr(f[IDS_F_EMAIL]), &err);
	set(o, "display_name", ids_output_jstr(f[IDS_F_DISPLAY_NAME]), &err);
	set(o, "dn", ids_output_jstr(f[IDS_F_DN]), &err);
	set(o, "disabled", json_boolean(x->user->disabled), &err);
	set(o, "invalid", ids_output_jstr(x->user->invalid), &err);
	if (err && o)
		json_decref(o);
	return err ? NULL : o;
}

/* The rules behind grant g: [{"name", "how", "slots"}]. */
static json_t *json_grant_rules(const struct ids_explanation *x, const struct ids_explain_grant *g)
{
	json_t *a = json_array();
	int err = a ? 0 : -ENOMEM;
	for (size_t i = 0; !err && i < g->noffers + (g->rules ? g->rules->n : 0); i++) {
		const char *n = i < g->noffers ? g->offers[i].rule : g->rules->names[i - g->noffers];
		int slots = offer_of(g, n);
		if (i >= g->noffers && slots >= 0)
			continue; /* listed with its offer */
		/* note: n is the catalog's words, not a rule's name */
		bool note = i >= g->noffers && g->rules->note;
		json_t *o = json_pack("{s:s, s:o, s:o, s:b}", "name", n, "how",
				      ids_output_jstr(note ? NULL : rule_how(x, n)), "slots",
				      slots >= 0 ? json_integer(slots) : json_null(), "note", note);
		if (!o || json_array_append_new(a, o) < 0)
			err = -ENOMEM;
	}
	if (err && a)
		json_decref(a);
	return err ? NULL : a;
}

static json_t *json_grant(const struct ids_explanation *x, const struct ids_explain_grant *g)
{
	bool slot = g->kind == IDS_GRANT_SLOT,
	     row = g->db == IDS_XD_PRESENT || g->db == IDS_XD_MANUAL || g->db == IDS_XD_EXTRA;
	json_t *o = json_object();
	int err = o ? 0 : -ENOMEM;
	set(o, "kind", ids_output_jstr(ids_plan_kind_word(g->kind)), &err);
	set(o, "tenant", ids_output_jstr(g->tenant), &err);
	set(o, "name", ids_output_jstr(g->name), &err);
	set(o, "slots", slot && (g->wanted || g->revoked) ? json_integer(g->slots) : json_null(), &err);
	set(o, "wanted", json_boolean(g->wanted), &err);
	set(o, "revoked", json_boolean(g->revoked), &err);
	set(o, "rules", json_grant_rules(x, g), &err);
	set(o, "db", x->db ? json_string(ids_explain_db_word(g->db)) : json_null(), &err);
	set(o, "db_slots", slot && row ? json_integer(g->db_slots) : json_null(), &err);
	set(o, "next", ids_output_jstr(g->next), &err);
	if (err && o)
		json_decref(o);
	return err ? NULL : o;
}

/* A run id, null for none (0). */
static json_t *json_run(int64_t id)
{
	return id ? json_integer(id) : json_null();
}

/* The licences: [{"company", "role", "state", ...}] (docs/json.md). */
static json_t *json_seats(const struct ids_explanation *x)
{
	json_t *a = json_array();
	int err = a ? 0 : -ENOMEM;
	for (size_t i = 0; !err && i < x->nseats; i++) {
		const struct ids_explain_seat *e = &x->seats[i];
		bool line = e->state == IDS_XS_WAITING || e->state == IDS_XS_REVOKED;
		bool held = e->state == IDS_XS_HOLDER || e->state == IDS_XS_REVOKED;
		json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:I, s:I, s:I}", "company",
				      x->company, "role", e->role, "state", ids_explain_seat_word(e->state),
				      "entitled_run", json_run(e->entitled_run), "seat_run",
				      held ? json_integer(e->seat_run) : json_null(), "position",
				      line ? json_integer(e->position) : json_null(), "of",
				      line ? json_integer(e->of) : json_null(), "used", (json_int_t)e->used,
				      "limit", (json_int_t)e->limit, "waiting", (json_int_t)e->waiting);
		if (!o || json_array_append_new(a, o) < 0)
			err = -ENOMEM;
	}
	if (err && a)
		json_decref(a);
	return err ? NULL : a;
}

/* Every rule: {"name", "matched", "reason", "granted"}. */
static json_t *json_rules(const struct ids_explanation *x)
{
	json_t *a = json_array();
	int err = a ? 0 : -ENOMEM;
	for (size_t i = 0; !err && i < x->nrules; i++) {
		const struct ids_explain_rule *er = &x->rules[i];
		json_t *o = json_pack("{s:s, s:b, s:b, s:o, s:I}", "name", er->rule->name, "matched",
				      er->matched, "revoke", er->rule->revoke, "reason",
				      ids_output_jstr(er->why), "granted", (json_int_t)er->granted);
		if (!o || json_array_append_new(a, o) < 0)
			err = -ENOMEM;
	}
	if (err && a)
		json_decref(a);
	return err ? NULL : a;
}

static json_t *json_explanation(const struct ids_explanation *x)
{
	json_t *o = json_object(), *grants = json_array(), *warn = json_array();
	int err = o && grants && warn ? 0 : -ENOMEM;
	for (size_t i = 0; !err && i < x->ngrants; i++)
		if (json_array_append_new(grants, json_grant(x, &x->grants[i])) < 0)
			err = -ENOMEM;
	for (size_t i = 0; !err && i < x->warnings.n; i++)
		if (json_array_append_new(warn, json_string(x->warnings.v[i])) < 0)
			err = -ENOMEM;
	set(o, "format_version", json_integer(1), &err);
	set(o, "connector", ids_output_jstr(x->connector), &err);
	set(o, "user", json_user(x), &err);
	set(o, "match", x->db ? json_string(ids_explain_ident_word(x->ident)) : json_null(), &err);
	set(o, "user_id", x->user_id ? json_integer(x->user_id) : json_null(), &err);
	set(o, "match_detail", ids_output_jstr(x->ident_why), &err);
	set(o, "in_scope", json_boolean(x->in_scope), &err);
	set(o, "scope_reason", ids_output_jstr(x->scope_why), &err);
	set(o, "company_admin", json_boolean(x->company_admin), &err);
	set(o, "next_user", x->db ? ids_output_jstr(x->next_user) : json_null(), &err);
	set(o, "grants", grants, &err);
	grants = NULL;
	set(o, "licences", json_seats(x), &err);
	set(o, "rules", json_rules(x), &err);
	set(o, "warnings", warn, &err);
	warn = NULL;
	json_decref(grants);
	json_decref(warn);
	if (err && o)
		json_decref(o);
	return err ? NULL : o;
}

int ids_explain_format_json(const struct ids_explanation *x, struct ids_buf *out)
{
	json_t *o = json_explanation(x);
	char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	int r = s ? ids_buf_puts(out, s) : -ENOMEM;
	free(s);
	json_decref(o);
	return r;
}
