/* plan_format.c — the plan as text (semantics.md, "The plan").
 *
 * Text: one line per change, grouped by user, each line
 *   SIGN KIND(%-5s) SUBJECT  DETAILS
 * with SIGN + (create, add), - (deactivate, remove), ~ (update, change),
 * * (adopt), ! (conflict, unknown tenant), ? (skipped).  New and unknown
 * tenants come first, the summary line last, and "aborted: why" after it
 * when the safety checks stopped the run.
 *
 * The JSON form is written outside core, with jansson (daemon/output.c);
 * what it and the audit log share is in plan.c. */
#include "ids/plan.h"

#include <inttypes.h>
#include <string.h>

/* Text names of the grant kinds, by enum value.  Kept here rather than
 * calling ids_grant_kind_name() so that formatting depends on nothing but
 * this file. */
static const char *const kind_text[IDS_GRANT__COUNT] = {"role", "chan", "group", "slot"};

static const char *kind_word(const char *const *tab, enum ids_grant_kind k)
{
	return (unsigned)k < IDS_GRANT__COUNT ? tab[k] : "?";
}

/* Directory values end up in a line-based text: a newline or other
 * control byte inside one must not forge a line, so it is shown as \xNN. */
static int put_text(struct ids_buf *b, const char *s)
{
	int r = 0;
	for (const unsigned char *q = (const unsigned char *)(s ? s : ""); r >= 0 && *q; q++)
		r = *q < 0x20 || *q == 0x7f ? ids_buf_printf(b, "\\x%02x", *q) : ids_buf_putc(b, (char)*q);
	return r;
}

/* A value in a "field old -> new" list: NULL shows as (none). */
static int put_value(struct ids_buf *b, const char *s)
{
	return s ? put_text(b, s) : ids_buf_puts(b, "(none)");
}

/* "SIGN KIND  " and the subject (username, else the external id). */
static int put_head(struct ids_buf *b, char sign, const char *kind, const char *username, const char *ext)
{
	int r = ids_buf_printf(b, "%c %-5s ", sign, kind);
	if (r >= 0)
		r = put_text(b, username ? username : ext ? ext : "?");
	return r;
}

/* "sso/entra": how a managed user signs in. */
static int put_auth(struct ids_buf *b, const char *method, const char *idp)
{
	int r = put_value(b, method);
	if (r >= 0 && idp) {
		r = ids_buf_putc(b, '/');
		if (r >= 0)
			r = put_text(b, idp);
	}
	return r;
}

static bool nonempty(const char *s)
{
	return s && *s;
}

/* ---------------- text ---------------- */

/* "+ user  jnovak (Jan Novák) <jan.novak@corp.example>  sso/entra" */
static int text_create(struct ids_buf *b, const struct ids_plan *p, const struct ids_plan_user *u)
{
	int r = put_head(b, '+', "user", u->username, u->external_id);
	/* the display name, else "first last", else nothing at all */
	if (r >= 0 && nonempty(u->display_name)) {
		r = ids_buf_puts(b, " (");
		if (r >= 0)
			r = put_text(b, u->display_name);
		if (r >= 0)
			r = ids_buf_putc(b, ')');
	} else if (r >= 0 && (nonempty(u->first_name) || nonempty(u->last_name))) {
		r = ids_buf_puts(b, " (");
		if (r >= 0 && nonempty(u->first_name))
			r = put_text(b, u->first_name);
		if (r >= 0 && nonempty(u->first_name) && nonempty(u->last_name))
			r = ids_buf_putc(b, ' ');
		if (r >= 0 && nonempty(u->last_name))
			r = put_text(b, u->last_name);
		if (r >= 0)
			r = ids_buf_putc(b, ')');
	}
	if (r >= 0 && nonempty(u->email)) {
		r = ids_buf_puts(b, " <");
		if (r >= 0)
			r = put_text(b, u->email);
		if (r >= 0)
			r = ids_buf_putc(b, '>');
	}
	if (r >= 0)
		r = ids_buf_puts(b, "  ");
	if (r >= 0)
		r = put_auth(b, "sso", p->idp);
	if (r >= 0 && u->company_admin)
		r = ids_buf_puts(b, "  company_admin");
	return r;
}

/* One "field old -> new" of a change list. */
static int put_change(struct ids_buf *b, bool *first, const char *field, const char *old, const char *new)
{
	int r = ids_buf_printf(b, "%s%s ", *first ? "  " : ", ", field);
	*first = false;
	if (r >= 0)
		r = put_value(b, old);
	if (r >= 0)
		r = ids_buf_puts(b, " -> ");
	if (r >= 0)
		r = put_value(b, new);
	return r;
}

/* The changed fields of an update or adoption, in IDS_CH_* order.
 * mask selects which bits to list. */
static int put_changes(struct ids_buf *b, const struct ids_plan *p, const struct ids_plan_user *u,
		       unsigned mask)
{
	const struct ids_cur_user *c = u->cur;
	unsigned ch = u->changed & mask;
	bool first = true;
	int r = 0;
	if (!c)
		return 0;
	if (r >= 0 && (ch & IDS_CH_USERNAME))
		r = put_change(b, &first, "username", c->username, u->username);
	if (r >= 0 && (ch & IDS_CH_EMAIL))
		r = put_change(b, &first, "email", c->email, u->email);
	if (r >= 0 && (ch & IDS_CH_FIRST_NAME))
		r = put_change(b, &first, "first_name", c->first_name, u->first_name);
	if (r >= 0 && (ch & IDS_CH_LAST_NAME))
		r = put_change(b, &first, "last_name", c->last_name, u->last_name);
	if (r >= 0 && (ch & IDS_CH_DISPLAY_NAME))
		r = put_change(b, &first, "display_name", c->display_name, u->display_name);
	if (r >= 0 && (ch & IDS_CH_COMPANY_ADMIN))
		r = put_change(b, &first, "company_admin", c->company_admin ? "true" : "false",
			       u->company_admin ? "true" : "false");
	if (r >= 0 && (ch & IDS_CH_AUTH)) {
		r = ids_buf_printf(b, "%sauth ", first ? "  " : ", ");
		if (r >= 0)
			r = put_auth(b, c->auth_method, c->idp);
		if (r >= 0)
			r = ids_buf_puts(b, " -> ");
		if (r >= 0)
			r = put_auth(b, "sso", p->idp);
	}
	return r;
}

/* The lines of one plan user. */
static int text_user(struct ids_buf *b, const struct ids_plan *p, const struct ids_plan_user *u)
{
	const char *n = u->username, *ext = u->external_id;
	int r = 0;

	if (u->flags & IDS_PU_SKIP_INVALID) {
		r = put_head(b, '?', "user", n, ext);
		if (r >= 0)
			r = ids_buf_puts(b, "  skipped: ");
		if (r >= 0)
			r = put_text(b, u->reason);
		return r < 0 ? r : ids_buf_putc(b, '\n');
	}
	if (u->flags & IDS_PU_CONFLICT) {
		r = put_head(b, '!', "user", n, ext);
		if (r >= 0)
			r = ids_buf_puts(b, "  conflict: ");
		if (r >= 0)
			r = put_text(b, u->reason);
		return r < 0 ? r : ids_buf_putc(b, '\n');
	}
	if (u->flags & IDS_PU_CREATE) {
		r = text_create(b, p, u);
		return r < 0 ? r : ids_buf_putc(b, '\n');
	}
	if (u->flags & IDS_PU_DEACTIVATE) {
		r = put_head(b, '-', "user", n, ext);
		if (r >= 0)
			r = ids_buf_puts(b, "  deactivate (");
		if (r >= 0)
			r = put_text(b, u->reason);
		return r < 0 ? r : ids_buf_puts(b, ")\n");
	}
	if (u->flags & IDS_PU_REASON) {
		r = put_head(b, '~', "user", n, ext);
		if (r >= 0) {
			bool first = true;
			r = put_change(b, &first, "deactivation_reason", u->cur ? u->cur->reason : NULL,
				       u->reason);
		}
		return r < 0 ? r : ids_buf_putc(b, '\n');
	}
	/* adopt, reactivate and update may come together: one line each */
	unsigned mask = ~0u;
	if (u->flags & IDS_PU_ADOPT) {
		r = put_head(b, '*', "user", n, ext);
		if (r >= 0)
			r = ids_buf_puts(b, "  adopt (by e-mail)\n");
		mask &= ~(unsigned)IDS_CH_AUTH; /* adoption means sso: said once */
	}
	if (r >= 0 && (u->flags & IDS_PU_REACTIVATE)) {
		r = put_head(b, '+', "user", n, ext);
		if (r >= 0)
			r = ids_buf_puts(b, "  reactivate\n");
	}
	if (r >= 0 && (u->changed & mask)) {
		r = put_head(b, '~', "user", n, ext);
		if (r >= 0)
			r = put_changes(b, p, u, mask);
		if (r >= 0)
			r = ids_buf_putc(b, '\n');
	}
	return r;
}

/* "  rule NAME" or "  rules A, B": where an added or changed grant comes
 * from, so that a reviewer can tell which rule to change (config.md: a
 * rule's name is shown in plans); "  revoked by rule NAME" for a removal
 * that revoke rules made.  Nothing for other removals: no rule makes them.
 * A catalog's note ("required by monitoring") is printed as it is. */
static int put_rules(struct ids_buf *b, const struct ids_rule_list *l, bool revoke)
{
	int r = 0;
	if (!l || !l->n)
		return 0;
	if (l->note)
		r = ids_buf_puts(b, "  ");
	else
		r = ids_buf_puts(b, revoke ? "  revoked by" : " ");
	if (r >= 0 && !l->note)
		r = ids_buf_puts(b, l->n == 1 ? " rule " : " rules ");
	for (size_t i = 0; r >= 0 && i < l->n; i++) {
		if (i)
			r = ids_buf_puts(b, ", ");
		if (r >= 0)
			r = put_text(b, l->names[i]);
	}
	return r;
}

/* "+ role  jnovak  support-cz  operator  rule cz-support",
 * "~ slot  jnovak  support-cz  live 2 -> 3  rules a, b" */
static int text_grant(struct ids_buf *b, const struct ids_plan *p, const struct ids_plan_grant *g)
{
	char sign = g->op == IDS_GOP_ADD ? '+' : g->op == IDS_GOP_REMOVE ? '-' : '~';
	int r = put_head(b, sign, kind_word(kind_text, g->kind), g->username, g->external_id);
	if (r >= 0)
		r = ids_buf_puts(b, "  ");
	if (r >= 0)
		r = put_text(b, g->tenant);
	if (r >= 0)
		r = ids_buf_puts(b, "  ");
	if (r >= 0)
		r = put_text(b, g->name);
	if (r >= 0 && g->kind == IDS_GRANT_SLOT) {
		if (g->op == IDS_GOP_CHANGE)
			r = ids_buf_printf(b, " %d -> %d", g->old_slots, g->slots);
		else
			r = ids_buf_printf(b, " %d", g->slots);
	}
	if (r >= 0)
		r = put_rules(b, ids_plan_grant_rules(p, g), g->op == IDS_GOP_REMOVE);
	/* the grant stays as it is: only the rules recorded on its row change */
	if (r >= 0 && g->op == IDS_GOP_RULES)
		r = ids_buf_puts(b, " (provenance only)");
	return r < 0 ? r : ids_buf_putc(b, '\n');
}

/* The grouping key of the text plan: users and grants of one person sort
 * together (diff.c sorts both arrays by it). */
static int cmp_subject(const char *ua, const char *ea, const char *ub, const char *eb)
{
	int r = ids_strcmp0(ua, ub);
	return r ? r : ids_strcmp0(ea, eb);
}

int ids_plan_format_counts(const struct ids_plan_counts *c, struct ids_buf *out)
{
	int r = ids_buf_printf(out,
			       "%ld create, %ld update, %ld deactivate, %ld reactivate, "
			       "%ld grants added, %ld removed, %ld conflicts",
			       c->created, c->updated, c->deactivated, c->reactivated, c->grants_added,
			       c->grants_removed, c->conflicts);
	/* skips are rare: the summary names them only when there are some */
	if (r >= 0 && c->skipped_invalid > 0)
		r = ids_buf_printf(out, ", %ld skipped", c->skipped_invalid);
	/* named only when some: after an upgrade to recorded provenance, and
	 * when rules are renamed or overlap differently */
	if (r >= 0 && c->grants_rules_changed > 0)
		r = ids_buf_printf(out, ", %ld provenance updated", c->grants_rules_changed);
	return r;
}

int ids_plan_format_text(const struct ids_plan *p, struct ids_buf *out)
{
	int r = 0;
	for (size_t i = 0; r >= 0 && i < p->new_tenants.n; i++) {
		r = ids_buf_puts(out, "+ tenant ");
		if (r >= 0)
			r = put_text(out, p->new_tenants.v[i]);
		if (r >= 0)
			r = ids_buf_putc(out, '\n');
	}
	for (size_t i = 0; r >= 0 && i < p->missing_tenants.n; i++) {
		r = ids_buf_puts(out, "! tenant ");
		if (r >= 0)
			r = put_text(out, p->missing_tenants.v[i]);
		if (r >= 0)
			r = ids_buf_puts(out, "  unknown, grants skipped (tenants.auto_create is off)\n");
	}

	/* merge the two sorted arrays: a user's lines, then its grants; a
	 * user whose only changes are grants has no user line */
	size_t i = 0, j = 0;
	while (r >= 0 && (i < p->nusers || j < p->ngrants)) {
		const struct ids_plan_user *u = i < p->nusers ? &p->users[i] : NULL;
		const struct ids_plan_grant *g = j < p->ngrants ? &p->grants[j] : NULL;
		const char *un, *ue;
		if (u && (!g || cmp_subject(u->username, u->external_id, g->username, g->external_id) <= 0)) {
			r = text_user(out, p, u);
			un = u->username, ue = u->external_id;
			i++;
		} else {
			un = g->username, ue = g->external_id;
		}
		while (r >= 0 && j < p->ngrants &&
		       cmp_subject(un, ue, p->grants[j].username, p->grants[j].external_id) == 0)
			r = text_grant(out, p, &p->grants[j++]);
	}

	if (r >= 0)
		r = ids_buf_puts(out, "summary ");
	if (r >= 0)
		r = put_text(out, p->connector);
	if (r >= 0)
		r = ids_buf_puts(out, ": ");
	if (r >= 0)
		r = ids_plan_format_counts(&p->counts, out);
	if (r >= 0)
		r = ids_buf_putc(out, '\n');
	if (r >= 0 && p->verdict != IDS_VERDICT_OK) {
		r = ids_buf_puts(out, "aborted: ");
		if (r >= 0)
			r = put_text(out, p->verdict_why);
		if (r >= 0)
			r = ids_buf_putc(out, '\n');
	}
	return r < 0 ? r : 0;
}
