/* plan_format.c — the plan as text (semantics.md, "The plan") and as JSON.
 *
 * Text: one line per change, grouped by user, each line
 *   SIGN KIND(%-5s) SUBJECT  DETAILS
 * with SIGN + (create, add), - (deactivate, remove), ~ (update, change),
 * * (adopt), ! (conflict, unknown tenant), ? (skipped).  New and unknown
 * tenants come first, the summary line last, and "aborted: why" after it
 * when the safety checks stopped the run.
 *
 * JSON: one object, fixed key order, every user and grant object on a line
 * of its own so that a diff of two plans reads like the text form. */
#include "ids/plan.h"

#include <inttypes.h>
#include <string.h>

/* Text and JSON names of the grant kinds, by enum value.  Kept here rather
 * than calling ids_grant_kind_name() so that formatting depends on nothing
 * but this file. */
static const char *const kind_text[IDS_GRANT__COUNT] = {"role", "chan", "group", "slot"};
static const char *const kind_json[IDS_GRANT__COUNT] = {"role", "channel", "group", "slot"};

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
 * rule's name is shown in plans).  Nothing for a removal: no rule makes it. */
static int put_rules(struct ids_buf *b, const struct ids_rule_list *l)
{
	int r = 0;
	if (!l || !l->n)
		return 0;
	r = ids_buf_puts(b, l->n == 1 ? "  rule " : "  rules ");
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
		r = put_rules(b, ids_plan_grant_rules(p, g));
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

/* ---------------- JSON ---------------- */

/* A JSON string, or null for NULL. */
static int json_str0(struct ids_buf *b, const char *s)
{
	return s ? ids_buf_json_str(b, s) : ids_buf_puts(b, "null");
}

/* `, "key": ` before a value (no comma for the first). */
static int json_key(struct ids_buf *b, bool *first, const char *key)
{
	int r = ids_buf_puts(b, *first ? "" : ", ");
	*first = false;
	if (r >= 0)
		r = ids_buf_json_str(b, key);
	return r < 0 ? r : ids_buf_puts(b, ": ");
}

/* "field": [old, new] with string values. */
static int json_change(struct ids_buf *b, bool *first, const char *field, const char *old, const char *new)
{
	int r = json_key(b, first, field);
	if (r >= 0)
		r = ids_buf_putc(b, '[');
	if (r >= 0)
		r = json_str0(b, old);
	if (r >= 0)
		r = ids_buf_puts(b, ", ");
	if (r >= 0)
		r = json_str0(b, new);
	return r < 0 ? r : ids_buf_putc(b, ']');
}

static int json_change_bool(struct ids_buf *b, bool *first, const char *field, bool old, bool new)
{
	int r = json_key(b, first, field);
	return r < 0 ? r : ids_buf_printf(b, "[%s, %s]", old ? "true" : "false", new ? "true" : "false");
}

static const char *user_op(unsigned flags)
{
	/* the most telling operation; the others show in "changes" and
	 * "reactivate" */
	if (flags & IDS_PU_SKIP_INVALID)
		return "skip_invalid";
	if (flags & IDS_PU_CONFLICT)
		return "conflict";
	if (flags & IDS_PU_CREATE)
		return "create";
	if (flags & IDS_PU_ADOPT)
		return "adopt";
	if (flags & IDS_PU_DEACTIVATE)
		return "deactivate";
	if (flags & IDS_PU_REACTIVATE)
		return "reactivate";
	return "update"; /* IDS_PU_UPDATE, IDS_PU_REASON */
}

/* {"field": [old, new], ...}: what the store will change on the row. */
static int json_changes(struct ids_buf *b, const struct ids_plan *p, const struct ids_plan_user *u)
{
	const struct ids_cur_user *c = u->cur;
	bool first = true;
	int r = ids_buf_putc(b, '{');
	unsigned ch = c ? u->changed : 0;
	if (r >= 0 && (ch & IDS_CH_USERNAME))
		r = json_change(b, &first, "username", c->username, u->username);
	if (r >= 0 && (ch & IDS_CH_EMAIL))
		r = json_change(b, &first, "email", c->email, u->email);
	if (r >= 0 && (ch & IDS_CH_FIRST_NAME))
		r = json_change(b, &first, "first_name", c->first_name, u->first_name);
	if (r >= 0 && (ch & IDS_CH_LAST_NAME))
		r = json_change(b, &first, "last_name", c->last_name, u->last_name);
	if (r >= 0 && (ch & IDS_CH_DISPLAY_NAME))
		r = json_change(b, &first, "display_name", c->display_name, u->display_name);
	if (r >= 0 && (ch & IDS_CH_COMPANY_ADMIN))
		r = json_change_bool(b, &first, "company_admin", c->company_admin, u->company_admin);
	if (r >= 0 && (ch & IDS_CH_AUTH)) {
		if (ids_strcmp0(c->auth_method, "sso"))
			r = json_change(b, &first, "auth_method", c->auth_method, "sso");
		if (r >= 0 && ids_strcmp0(c->idp, p->idp))
			r = json_change(b, &first, "idp", c->idp, p->idp);
	}
	if (r >= 0 && c && (u->flags & (IDS_PU_DEACTIVATE | IDS_PU_REACTIVATE))) {
		bool on = u->flags & IDS_PU_REACTIVATE;
		r = json_change_bool(b, &first, "active", !on, on);
	}
	if (r >= 0 && c && (u->flags & (IDS_PU_DEACTIVATE | IDS_PU_REACTIVATE | IDS_PU_REASON)))
		r = json_change(b, &first, "deactivation_reason", c->reason,
				(u->flags & IDS_PU_REACTIVATE) ? NULL : u->reason);
	return r < 0 ? r : ids_buf_putc(b, '}');
}

static int json_user(struct ids_buf *b, const struct ids_plan *p, const struct ids_plan_user *u)
{
	bool first = true;
	int r = ids_buf_puts(b, "    {");
	if (r >= 0)
		r = json_key(b, &first, "op");
	if (r >= 0)
		r = ids_buf_json_str(b, user_op(u->flags));
	if (r >= 0)
		r = json_key(b, &first, "id");
	if (r >= 0)
		r = u->id ? ids_buf_printf(b, "%" PRId64, u->id) : ids_buf_puts(b, "null");
	const char *const names[] = {"external_id", "username",	 "email",
				     "first_name",  "last_name", "display_name"};
	const char *const vals[] = {u->external_id, u->username,  u->email,
				    u->first_name,  u->last_name, u->display_name};
	for (size_t i = 0; r >= 0 && i < sizeof(names) / sizeof(names[0]); i++) {
		r = json_key(b, &first, names[i]);
		if (r >= 0)
			r = json_str0(b, vals[i]);
	}
	if (r >= 0)
		r = json_key(b, &first, "company_admin");
	if (r >= 0)
		r = ids_buf_puts(b, u->company_admin ? "true" : "false");
	if (r >= 0)
		r = json_key(b, &first, "reactivate");
	if (r >= 0)
		r = ids_buf_puts(b, (u->flags & IDS_PU_REACTIVATE) ? "true" : "false");
	if (r >= 0)
		r = json_key(b, &first, "reason");
	if (r >= 0)
		r = json_str0(b, u->reason);
	if (r >= 0)
		r = json_key(b, &first, "changes");
	if (r >= 0)
		r = json_changes(b, p, u);
	return r < 0 ? r : ids_buf_putc(b, '}');
}

static int json_grant(struct ids_buf *b, const struct ids_plan_grant *g)
{
	static const char *const ops[] = {
	    [IDS_GOP_ADD] = "add", [IDS_GOP_REMOVE] = "remove", [IDS_GOP_CHANGE] = "change"};
	bool first = true;
	int r = ids_buf_puts(b, "    {");
	if (r >= 0)
		r = json_key(b, &first, "op");
	if (r >= 0)
		r = ids_buf_json_str(b, (unsigned)g->op <= IDS_GOP_CHANGE ? ops[g->op] : "?");
	if (r >= 0)
		r = json_key(b, &first, "kind");
	if (r >= 0)
		r = ids_buf_json_str(b, kind_word(kind_json, g->kind));
	const char *const names[] = {"username", "external_id", "tenant", "name"};
	const char *const vals[] = {g->username, g->external_id, g->tenant, g->name};
	for (size_t i = 0; r >= 0 && i < sizeof(names) / sizeof(names[0]); i++) {
		r = json_key(b, &first, names[i]);
		if (r >= 0)
			r = json_str0(b, vals[i]);
	}
	/* slot values only where they mean something, null elsewhere */
	bool slot = g->kind == IDS_GRANT_SLOT;
	if (r >= 0)
		r = json_key(b, &first, "slots");
	if (r >= 0)
		r = slot ? ids_buf_printf(b, "%d", g->slots) : ids_buf_puts(b, "null");
	if (r >= 0)
		r = json_key(b, &first, "old_slots");
	if (r >= 0)
		r = slot && g->op == IDS_GOP_CHANGE ? ids_buf_printf(b, "%d", g->old_slots)
						    : ids_buf_puts(b, "null");
	return r < 0 ? r : ids_buf_putc(b, '}');
}

/* ["a", "b"] */
static int json_strv(struct ids_buf *b, const struct ids_strv *v)
{
	int r = ids_buf_putc(b, '[');
	for (size_t i = 0; r >= 0 && i < v->n; i++) {
		if (i)
			r = ids_buf_puts(b, ", ");
		if (r >= 0)
			r = ids_buf_json_str(b, v->v[i]);
	}
	return r < 0 ? r : ids_buf_putc(b, ']');
}

int ids_plan_format_json(const struct ids_plan *p, struct ids_buf *out)
{
	static const char *const verdicts[] = {[IDS_VERDICT_OK] = "ok",
					       [IDS_VERDICT_EMPTY] = "aborted_empty",
					       [IDS_VERDICT_THRESHOLD] = "aborted_threshold"};
	const struct ids_plan_counts *c = &p->counts;
	int r = ids_buf_puts(out, "{\n  \"connector\": ");
	if (r >= 0)
		r = json_str0(out, p->connector);
	if (r >= 0)
		r = ids_buf_printf(
		    out,
		    ",\n  \"summary\": {\"created\": %ld, \"updated\": %ld, \"deactivated\": %ld, "
		    "\"reactivated\": %ld, \"grants_added\": %ld, \"grants_removed\": %ld, "
		    "\"conflicts\": %ld, \"skipped_invalid\": %ld, \"users_seen\": %ld},\n",
		    c->created, c->updated, c->deactivated, c->reactivated, c->grants_added,
		    c->grants_removed, c->conflicts, c->skipped_invalid, c->users_seen);
	if (r >= 0)
		r = ids_buf_printf(out, "  \"verdict\": \"%s\",\n  \"verdict_reason\": ",
				   (unsigned)p->verdict <= IDS_VERDICT_THRESHOLD ? verdicts[p->verdict]
										 : "?");
	if (r >= 0)
		r = p->verdict != IDS_VERDICT_OK ? json_str0(out, p->verdict_why) : ids_buf_puts(out, "null");
	if (r >= 0)
		r = ids_buf_puts(out, ",\n  \"tenants\": {\"create\": ");
	if (r >= 0)
		r = json_strv(out, &p->new_tenants);
	if (r >= 0)
		r = ids_buf_puts(out, ", \"missing\": ");
	if (r >= 0)
		r = json_strv(out, &p->missing_tenants);

	r = r < 0 ? r : ids_buf_puts(out, "},\n  \"users\": [");
	for (size_t i = 0; r >= 0 && i < p->nusers; i++) {
		r = ids_buf_puts(out, i ? ",\n" : "\n");
		if (r >= 0)
			r = json_user(out, p, &p->users[i]);
	}
	r = r < 0 ? r : ids_buf_puts(out, p->nusers ? "\n  ],\n  \"grants\": [" : "],\n  \"grants\": [");
	for (size_t i = 0; r >= 0 && i < p->ngrants; i++) {
		r = ids_buf_puts(out, i ? ",\n" : "\n");
		if (r >= 0)
			r = json_grant(out, &p->grants[i]);
	}
	r = r < 0 ? r : ids_buf_puts(out, p->ngrants ? "\n  ]\n}\n" : "]\n}\n");
	return r < 0 ? r : 0;
}
