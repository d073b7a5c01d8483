/* explain.c — one person's grants, and why (explain.h).
 *
 * The verdicts are not recomputed here: the desired state is
 * ids_rules_eval's over the whole snapshot, what each rule offered is
 * ids_rules_eval of that rule alone, and what the next run does is the
 * plan ids_diff_compute makes.  This file only finds the words for them:
 * the chain of nested groups through which a member_of matched, the
 * attribute value that matched, the first condition that failed. */
#include "ids/explain.h"

#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/dn.h"

#define NO_POS SIZE_MAX

const char *ids_explain_ident_word(enum ids_explain_ident i)
{
	switch (i) {
	case IDS_XI_OWNED: return "owned";
	case IDS_XI_ADOPTED: return "adopted";
	case IDS_XI_CONFLICT: return "conflict";
	case IDS_XI_NEW: return "new";
	case IDS_XI_ABSENT: return "absent";
	default: return "none";
	}
}

const char *ids_explain_db_word(enum ids_explain_db d)
{
	switch (d) {
	case IDS_XD_PRESENT: return "present";
	case IDS_XD_MANUAL: return "manual";
	case IDS_XD_MISSING: return "missing";
	case IDS_XD_EXTRA: return "extra";
	default: return "none";
	}
}

const char *ids_explain_seat_word(enum ids_explain_seat_state s)
{
	switch (s) {
	case IDS_XS_HOLDER: return "holder";
	case IDS_XS_SEATED: return "seated";
	case IDS_XS_WAITING: return "waiting";
	default: return "revoked";
	}
}

int ids_explain_find(const struct ids_snapshot *s, const char *who, size_t *ret_idx)
{
	/* the external id first: it is exact and immutable; a username may
	 * look like someone else's e-mail only in a pathological directory */
	static const enum ids_field order[] = {IDS_F_EXTERNAL_ID, IDS_F_USERNAME, IDS_F_EMAIL};
	for (size_t k = 0; who && k < sizeof(order) / sizeof(order[0]); k++)
		for (size_t i = 0; i < s->nusers; i++) {
			const char *v = s->users[i].f[order[k]];
			if (v && (k == 0 ? strcmp(v, who) : strcasecmp(v, who)) == 0) {
				*ret_idx = i;
				return 0;
			}
		}
	return -ENOENT;
}

/* ---------------- groups ---------------- */

/* Where group g is in the user's (sorted) transitive groups, or NO_POS. */
static size_t group_pos(const struct ids_user *u, uint32_t g)
{
	size_t lo = 0, hi = u->ngroups;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (u->groups[mid] == g)
			return mid;
		if (u->groups[mid] < g)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NO_POS;
}

/* true when a member_of reference names group g, as the rules read it:
 * its id, name or e-mail (case-insensitive), or its DN (normalized). */
static bool ref_names(const char *ref, const struct ids_group *g)
{
	if ((g->id && !strcasecmp(ref, g->id)) || (g->name && !strcasecmp(ref, g->name)) ||
	    (g->email && !strcasecmp(ref, g->email)))
		return true;
	char *dn = NULL;
	bool hit = g->dn && ids_dn_normalize(ref, strlen(ref), &dn) == 0 && dn && *dn && !strcmp(dn, g->dn);
	free(dn);
	return hit;
}

static const char *group_label(const struct ids_group *g)
{
	return g->name ? g->name : g->id;
}

/* true when group c (a snapshot index) has p as a direct parent. */
static bool is_parent(const struct ids_snapshot *s, uint32_t c, uint32_t p)
{
	for (size_t i = 0; i < s->groups[c].nparents; i++)
		if (s->groups[c].parents[i] == p)
			return true;
	return false;
}

/* Appends the chain from group m (one of the user's) down to a group the
 * user is directly in: "CC-Support-CZ-Operators ← CC-All-Operators".  The
 * snapshot keeps only transitive groups, but a group none of whose child
 * groups holds the user must hold the user directly; breadth first finds
 * the shortest such chain. */
static int group_path(const struct ids_snapshot *s, const struct ids_user *u, uint32_t m, struct ids_buf *b)
{
	size_t n = u->ngroups, start = group_pos(u, m), end = start, head = 0, tail = 0;
	size_t *prev = malloc((n ? n : 1) * sizeof(*prev)), *queue = malloc((n ? n : 1) * sizeof(*queue));
	int r = prev && queue ? 0 : -ENOMEM;
	for (size_t i = 0; r >= 0 && i < n; i++)
		prev[i] = NO_POS;
	if (r >= 0 && start != NO_POS) {
		prev[start] = start;
		queue[tail++] = start;
	}
	while (r >= 0 && head < tail) {
		size_t p = queue[head++];
		bool child = false;
		for (size_t q = 0; q < n; q++) {
			if (!is_parent(s, u->groups[q], u->groups[p]))
				continue;
			child = true;
			if (prev[q] == NO_POS) {
				prev[q] = p;
				queue[tail++] = q;
			}
		}
		if (!child) {
			end = p;
			break;
		}
	}
	/* the chain is found from its end: write it back to front */
	size_t len = 0;
	for (size_t p = end; r >= 0 && p != NO_POS; p = prev[p] == p ? NO_POS : prev[p])
		queue[len++] = p;
	for (size_t i = 0; r >= 0 && i < len; i++) {
		if (i)
			r = ids_buf_puts(b, " \u2190 ");
		if (r >= 0)
			r = ids_buf_puts(b, group_label(&s->groups[u->groups[queue[len - 1 - i]]]));
	}
	free(prev);
	free(queue);
	return r;
}

/* The first of the user's groups that any of refs names, or NO_POS. */
static size_t first_named(const struct ids_snapshot *s, const struct ids_user *u, const struct ids_strv *refs)
{
	for (size_t i = 0; i < u->ngroups; i++)
		for (size_t k = 0; k < refs->n; k++)
			if (ref_names(refs->v[k], &s->groups[u->groups[i]]))
				return i;
	return NO_POS;
}

static int put_refs(struct ids_buf *b, const struct ids_strv *refs)
{
	int r = 0;
	for (size_t k = 0; r >= 0 && k < refs->n; k++)
		r = ids_buf_printf(b, "%s\"%s\"", k ? " or " : "", refs->v[k]);
	return r;
}

/* ---------------- one rule's conditions ---------------- */

static const struct ids_attr *user_attr(const struct ids_user *u, const char *name)
{
	for (size_t i = 0; i < u->nattrs; i++)
		if (!strcasecmp(u->attrs[i].name, name))
			return &u->attrs[i];
	return NULL;
}

/* The attribute conditions: every one must have a matching value. */
static int attrs_why(const struct ids_rule *rl, const struct ids_user *u, struct ids_buf *how,
		     struct ids_buf *why)
{
	int r = 0;
	for (size_t i = 0; r >= 0 && i < rl->nattrs; i++) {
		const struct ids_rule_attr *c = &rl->attrs[i];
		const struct ids_attr *a = user_attr(u, c->name);
		const char *hit = NULL;
		for (size_t j = 0; a && !hit && j < a->nvalues; j++)
			if (c->pattern && regexec(&c->re, a->values[j], 0, NULL, 0) == 0)
				hit = a->values[j];
		if (!hit) {
			if (!a || !a->nvalues)
				return ids_buf_printf(why, "attribute %s is absent (needs /%s/)", c->name,
						      c->pattern ? c->pattern : "?");
			return ids_buf_printf(why, "attribute %s = \"%s\" does not match /%s/", c->name,
					      a->values[0], c->pattern ? c->pattern : "?");
		}
		r = ids_buf_printf(how, "%sattribute %s = \"%s\"", how->len ? "; " : "", c->name, hit);
	}
	return r;
}

/* The group conditions; why stays empty when they hold. */
static int groups_why(const struct ids_snapshot *s, const struct ids_rule *rl, const struct ids_user *u,
		      struct ids_buf *how, struct ids_buf *why)
{
	size_t p;
	int r = 0;
	if (rl->member_of.n) {
		if ((p = first_named(s, u, &rl->member_of)) == NO_POS) {
			r = ids_buf_puts(why, "not in group ");
			return r < 0 ? r : put_refs(why, &rl->member_of);
		}
		if ((r = ids_buf_printf(how, "%sgroup ", how->len ? "; " : "")) < 0 ||
		    (r = group_path(s, u, u->groups[p], how)) < 0)
			return r;
	}
	if (rl->not_member_of.n && (p = first_named(s, u, &rl->not_member_of)) != NO_POS) {
		r = ids_buf_puts(why, "in group ");
		if (r >= 0)
			r = group_path(s, u, u->groups[p], why);
		return r < 0 ? r : ids_buf_puts(why, ", which not_member_of excludes");
	}
	if (!rl->member_of_regex)
		return 0;
	bool any = false;
	for (size_t i = 0; r >= 0 && i < u->ngroups; i++) {
		const struct ids_group *g = &s->groups[u->groups[i]];
		if (!g->name || regexec(&rl->group_re, g->name, 0, NULL, 0) != 0)
			continue;
		r = ids_buf_printf(how, "%sgroup ", how->len ? "; " : "");
		if (r >= 0)
			r = group_path(s, u, u->groups[i], how);
		any = true;
	}
	if (r >= 0 && !any)
		r = ids_buf_printf(why, "no group of the user matches /%s/", rl->member_of_regex);
	return r;
}

/* Explains rule rl for user u into *out (strings in x->arena). */
static int explain_rule(struct ids_explanation *x, const struct ids_snapshot *s, const struct ids_rule *rl,
			const struct ids_user *u, struct ids_explain_rule *out)
{
	struct ids_buf how = {0}, why = {0};
	int r = 0;
	out->rule = rl;
	if (!ids_rule_for_connector(rl, x->connector)) {
		r = ids_buf_printf(&why, "connector %s not listed (the rule is for ", x->connector);
		for (size_t i = 0; r >= 0 && i < rl->connectors.n; i++)
			r = ids_buf_printf(&why, "%s%s", i ? ", " : "", rl->connectors.v[i]);
		if (r >= 0)
			r = ids_buf_putc(&why, ')');
	} else {
		r = groups_why(s, rl, u, &how, &why);
		if (r >= 0 && !why.len)
			r = attrs_why(rl, u, &how, &why);
		if (r >= 0 && !why.len && !how.len)
			r = ids_buf_puts(&how, "no condition: every user");
	}
	if (r >= 0) {
		out->matched = !why.len;
		out->why = ids_arena_strdup(&x->arena, why.len ? why.p : how.p);
		if (!out->why)
			r = -ENOMEM;
	}
	ids_buf_free(&how);
	ids_buf_free(&why);
	return r;
}

/* ---------------- grants ---------------- */

static bool same_grant(enum ids_grant_kind k, const char *t, const char *n, enum ids_grant_kind k2,
		       const char *t2, const char *n2)
{
	return k == k2 && !strcmp(t, t2) && !strcmp(n, n2);
}

static struct ids_explain_grant *find_grant(struct ids_explanation *x, enum ids_grant_kind k, const char *t,
					    const char *n)
{
	for (size_t i = 0; i < x->ngrants; i++)
		if (same_grant(k, t, n, x->grants[i].kind, x->grants[i].tenant, x->grants[i].name))
			return &x->grants[i];
	return NULL;
}

/* Room for n more grants. */
static struct ids_explain_grant *more_grants(struct ids_explanation *x, size_t *cap)
{
	if (ids_grow(&x->grants, cap, x->ngrants + 1, sizeof(*x->grants)) < 0)
		return NULL;
	struct ids_explain_grant *g = &x->grants[x->ngrants++];
	memset(g, 0, sizeof(*g));
	return g;
}

/* The user's desired grants, the wanted ones then the revoked ones. */
static int desired_grants(struct ids_explanation *x, size_t idx, size_t *cap)
{
	const struct ids_desired *w = &x->d->users[idx];
	for (size_t i = 0; i < w->ngrants + w->nrevoked; i++) {
		const struct ids_grant *dg = &w->grants[i];
		struct ids_explain_grant *g = more_grants(x, cap);
		if (!g)
			return -ENOMEM;
		g->kind = dg->kind;
		g->tenant = dg->tenant;
		g->name = dg->name;
		g->slots = dg->slots;
		g->wanted = i < w->ngrants;
		g->revoked = !g->wanted;
		g->rules = ids_rule_list_get(x->d->rule_lists, x->d->nrule_lists, dg->rules);
	}
	return 0;
}

/* Adds to the wanted slot grants what rule rl, evaluated alone, offered
 * (the merge keeps the largest: the reader sees who lost). */
static int add_offers(struct ids_explanation *x, const struct ids_rule *rl, const struct ids_desired *one)
{
	for (size_t i = 0; i < one->ngrants; i++) {
		const struct ids_grant *og = &one->grants[i];
		struct ids_explain_grant *g;
		if (og->kind != IDS_GRANT_SLOT || !(g = find_grant(x, og->kind, og->tenant, og->name)))
			continue;
		struct ids_explain_offer *o =
		    ids_arena_alloc(&x->arena, (g->noffers + 1) * sizeof(*o)); /* few: copied */
		if (!o)
			return -ENOMEM;
		if (g->noffers)
			memcpy(o, g->offers, g->noffers * sizeof(*o));
		o[g->noffers] = (struct ids_explain_offer){rl->name, og->slots};
		g->offers = o;
		g->noffers++;
	}
	return 0;
}

/* What each matching grant rule gives on its own: the rules engine run
 * with that rule alone, so that a template's tenant and a slot's value are
 * exactly the engine's. */
static int rule_alone(struct ids_explanation *x, const struct ids_explain_in *in, size_t idx,
		      struct ids_explain_rule *er)
{
	struct ids_desired_set *one = NULL;
	int r = ids_rules_eval(er->rule, 1, x->connector, in->s, &one);
	if (r < 0)
		return r;
	const struct ids_desired *w = &one->users[idx];
	er->granted = w->ngrants;
	r = add_offers(x, er->rule, w);
	ids_desired_set_free(one);
	return r;
}

/* The rules' warnings that name this user ("user NAME: rule ..."). */
static int user_warnings(struct ids_explanation *x, const struct ids_strv *all)
{
	const char *name = x->user->f[IDS_F_USERNAME];
	size_t n = name ? strlen(name) : 0;
	int r = 0;
	for (size_t i = 0; r >= 0 && name && i < all->n; i++)
		if (!strncmp(all->v[i], "user ", 5) && !strncmp(all->v[i] + 5, name, n) &&
		    all->v[i][5 + n] == ':')
			r = ids_strv_push(&x->warnings, all->v[i]);
	return r;
}

/* Every rule, its verdict and reason; the grant rules that match, alone. */
static int explain_rules(struct ids_explanation *x, const struct ids_explain_in *in, size_t idx)
{
	x->rules = ids_arena_alloc(&x->arena, (in->nrules ? in->nrules : 1) * sizeof(*x->rules));
	if (!x->rules)
		return -ENOMEM;
	x->nrules = in->nrules;
	for (size_t i = 0; i < in->nrules; i++) {
		struct ids_explain_rule *er = &x->rules[i];
		int r = explain_rule(x, in->s, &in->rules[i], x->user, er);
		if (r >= 0 && er->matched && !in->rules[i].revoke)
			r = rule_alone(x, in, idx, er);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---------------- the database side ---------------- */

/* A formatted string in x->arena; NULL when out of memory. */
__attribute__((format(printf, 2, 3))) static const char *xstrf(struct ids_explanation *x, const char *fmt,
							       ...)
{
	char *t = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&t, fmt, ap);
	va_end(ap);
	const char *s = n >= 0 ? ids_arena_strdup(&x->arena, t) : NULL;
	free(n >= 0 ? t : NULL);
	return s;
}

/* The plan's entry for the user, NULL when the plan leaves the row be. */
static const struct ids_plan_user *plan_user(const struct ids_plan *p, const char *ext)
{
	for (size_t i = 0; i < p->nusers; i++)
		if (!ids_strcmp0(p->users[i].external_id, ext))
			return &p->users[i];
	return NULL;
}

/* The connector's row for the user (source, external id), or NULL. */
static const struct ids_cur_user *owned_row(const struct ids_current *c, const char *conn, const char *ext)
{
	for (size_t i = 0; i < c->nusers; i++)
		if (!ids_strcmp0(c->users[i].source, conn) && !ids_strcmp0(c->users[i].external_id, ext))
			return &c->users[i];
	return NULL;
}

/* How the user meets the database, and what the plan does to the row. */
static int user_side(struct ids_explanation *x, const struct ids_current *c)
{
	const char *ext = x->user->f[IDS_F_EXTERNAL_ID];
	const struct ids_plan_user *pu = plan_user(x->plan, ext);
	const struct ids_cur_user *own = owned_row(c, x->connector, ext);
	unsigned f = pu ? pu->flags : 0;
	x->ident = own ? IDS_XI_OWNED : IDS_XI_ABSENT;
	x->user_id = own ? own->id : pu ? pu->id : 0;
	if (f & IDS_PU_CREATE) {
		x->ident = IDS_XI_NEW;
		x->next_user = "create";
	} else if (f & IDS_PU_ADOPT) {
		x->ident = IDS_XI_ADOPTED;
		x->next_user = "adopt";
		x->ident_why = pu->cur ? pu->cur->username : NULL;
	} else if (f & (IDS_PU_CONFLICT | IDS_PU_SKIP_INVALID)) {
		x->ident = f & IDS_PU_CONFLICT ? IDS_XI_CONFLICT : x->ident;
		x->next_user = "skip";
		x->ident_why = pu->reason;
	}
	if (f & IDS_PU_DEACTIVATE) {
		x->next_user = xstrf(x, "deactivate (%s)", pu->reason ? pu->reason : "?");
		if (!x->next_user)
			return -ENOMEM;
	} else if (f & IDS_PU_REACTIVATE) {
		x->next_user = "reactivate";
	} else if ((f & IDS_PU_UPDATE) && !x->next_user) {
		x->next_user = "update";
	} else if ((f & IDS_PU_REASON) && !x->next_user) {
		x->next_user = "set the deactivation reason";
	}
	return 0;
}

/* The words for what plan grant pg does. */
static const char *next_words(struct ids_explanation *x, const struct ids_plan_grant *pg)
{
	switch (pg->op) {
	case IDS_GOP_ADD: return "add";
	case IDS_GOP_REMOVE: return "remove";
	case IDS_GOP_CHANGE: return xstrf(x, "set slots %d -> %d", pg->old_slots, pg->slots);
	default: return "record its rules";
	}
}

/* Joins each grant with its row (by key) and with what the plan does to
 * it; rows the rules do not give are appended. */
static int grant_side(struct ids_explanation *x, const struct ids_current *c, size_t *cap)
{
	const char *ext = x->user->f[IDS_F_EXTERNAL_ID];
	for (size_t i = 0; x->user_id && i < c->ngrants; i++) {
		const struct ids_cur_grant *cg = &c->grants[i];
		if (cg->user_id != x->user_id)
			continue;
		struct ids_explain_grant *g = find_grant(x, cg->kind, cg->tenant, cg->name);
		if (!g && !(g = more_grants(x, cap)))
			return -ENOMEM;
		if (!g->tenant) {
			*g = (struct ids_explain_grant){
			    .kind = cg->kind, .tenant = cg->tenant, .name = cg->name};
			g->slots = cg->slots;
		}
		g->db = cg->manual ? IDS_XD_MANUAL : g->wanted ? IDS_XD_PRESENT : IDS_XD_EXTRA;
		g->db_slots = cg->slots;
	}
	for (size_t i = 0; i < x->ngrants; i++) {
		struct ids_explain_grant *g = &x->grants[i];
		if (g->db == IDS_XD_NONE)
			g->db = IDS_XD_MISSING;
	}
	for (size_t i = 0; i < x->plan->ngrants; i++) {
		const struct ids_plan_grant *pg = &x->plan->grants[i];
		struct ids_explain_grant *g;
		if (ids_strcmp0(pg->external_id, ext) || !(g = find_grant(x, pg->kind, pg->tenant, pg->name)))
			continue;
		if (!(g->next = next_words(x, pg)))
			return -ENOMEM;
	}
	/* a wanted grant the plan leaves out although it has no row */
	for (size_t i = 0; i < x->ngrants; i++) {
		struct ids_explain_grant *g = &x->grants[i];
		if (!g->wanted || g->db != IDS_XD_MISSING || g->next)
			continue;
		if (ids_strv_contains(&x->plan->missing_tenants, g->tenant, false))
			g->next = xstrf(x, "none: tenant %s does not exist (tenants.auto_create is off)",
					g->tenant);
		else
			g->next = x->ident == IDS_XI_CONFLICT ? "none: the user is skipped (conflict)"
							      : "none: the user is not written";
		if (!g->next)
			return -ENOMEM;
	}
	return 0;
}

/* Why the user is out of scope, or NULL. */
static const char *scope_words(const struct ids_explanation *x)
{
	if (x->user->invalid)
		return "invalid directory data: the user is left as it is";
	if (x->user->disabled)
		return "disabled in the source";
	if (!x->in_scope)
		return "no grant rule matched (or the matching ones granted nothing)";
	return NULL;
}

/* ---------------- licences ---------------- */

/* What explain calls the next run: after every stored one, as a plan. */
#define NEXT_RUN INT64_MAX

/* The book's row of (role, ext), NULL when none (not entitled). */
static const struct ids_seat *book_row(const struct ids_seat_book *b, const char *role, const char *ext)
{
	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(b->v[i].role, role) && !ids_strcmp0(b->v[i].external_id, ext))
			return &b->v[i];
	return NULL;
}

/* The username of the snapshot user with external id ext (by[] maps
 * them), NULL when none. */
static const char *name_of(const struct ids_snapshot *s, const struct ids_strmap *by, const char *ext)
{
	uint32_t i;
	return ext && ids_strmap_get(by, ext, &i) ? s->users[i].f[IDS_F_USERNAME] : NULL;
}

/* me's place among the waiting of its role in book b, in the order the
 * licence step seats them (catalog.c: earliest entitlement, then
 * username, then external id), and how many wait. */
static void line_place(const struct ids_seat_book *b, const struct ids_seat *me, const struct ids_snapshot *s,
		       const struct ids_strmap *by, struct ids_explain_seat *ret)
{
	const char *my_name = name_of(s, by, me->external_id);
	ret->position = 1;
	ret->of = 0;
	for (size_t i = 0; i < b->n; i++) {
		const struct ids_seat *o = &b->v[i];
		if (o->seated || strcmp(o->role, me->role))
			continue;
		ret->of++;
		int c = o->entitled_run < me->entitled_run ? -1 : o->entitled_run > me->entitled_run;
		if (!c)
			c = ids_strcmp0(name_of(s, by, o->external_id), my_name);
		if (!c)
			c = ids_strcmp0(o->external_id, me->external_id);
		ret->position += c < 0;
	}
}

/* The user's place under licence lic (its use u after the step), from
 * the book `next` the step made; nothing when the rules do not entitle
 * the user to the role. */
static int add_seat(struct ids_explanation *x, const struct ids_seat_book *next,
		    const struct ids_licence *lic, const struct ids_licence_use *u,
		    const struct ids_snapshot *s, const struct ids_strmap *by)
{
	const struct ids_seat *row = book_row(next, lic->role, x->user->f[IDS_F_EXTERNAL_ID]);
	if (!row)
		return 0;
	struct ids_explain_seat *e = ids_arena_alloc(&x->arena, (x->nseats + 1) * sizeof(*e)); /* few */
	if (!e)
		return -ENOMEM;
	if (x->nseats)
		memcpy(e, x->seats, x->nseats * sizeof(*e));
	x->seats = e;
	e = &x->seats[x->nseats++];
	*e = (struct ids_explain_seat){.role = lic->role,
				       .entitled_run = row->entitled_run == NEXT_RUN ? 0 : row->entitled_run,
				       .used = u->used,
				       .limit = u->limit,
				       .waiting = u->waiting};
	/* a waiting user's row carries this run as its seat run; a holder
	 * past the limit keeps the run that seated it */
	if (row->seated)
		e->state = row->seat_run == NEXT_RUN ? IDS_XS_SEATED : IDS_XS_HOLDER;
	else
		e->state = row->seat_run == NEXT_RUN ? IDS_XS_WAITING : IDS_XS_REVOKED;
	if (e->state != IDS_XS_SEATED)
		e->seat_run = row->seat_run == NEXT_RUN ? 0 : row->seat_run;
	if (!row->seated)
		line_place(next, row, s, by, e);
	return 0;
}

/* The licences of the company applied to x->d as the next run applies
 * them (the grants they withhold become revoked ones with their note),
 * and the user's place under each. */
static int explain_licences(struct ids_explanation *x, const struct ids_explain_in *in)
{
	const struct ids_catalog_rules *cr = in->catalog;
	struct ids_seat_book next = {0};
	struct ids_strmap by = {0};
	struct ids_licence_use *use = calloc(cr->nlic ? cr->nlic : 1, sizeof(*use));
	int r = use ? ids_catalog_licences(cr, in->company, x->connector, NEXT_RUN, in->s, x->d, in->cur,
					   in->seats, &next, use)
		    : -ENOMEM;
	for (size_t i = 0; i < in->s->nusers && r >= 0; i++)
		if (in->s->users[i].f[IDS_F_EXTERNAL_ID])
			r = ids_strmap_put(&by, in->s->users[i].f[IDS_F_EXTERNAL_ID], (uint32_t)i, NULL);
	for (size_t i = 0; i < cr->nlic && r >= 0; i++)
		if (!strcmp(cr->lic[i].company, in->company))
			r = add_seat(x, &next, &cr->lic[i], &use[i], in->s, &by);
	ids_strmap_free(&by);
	ids_seat_book_clear(&next);
	free(use);
	return r < 0 ? r : 0;
}

static int explain_all(struct ids_explanation *x, const struct ids_explain_in *in, size_t idx)
{
	size_t cap = 0;
	/* the same evaluation as a sync's, requirements included: explain
	 * must never disagree with the run it explains */
	int r = in->catalog ? ids_catalog_eval(in->catalog, in->rules, in->nrules, x->connector, in->s, &x->d)
			    : ids_rules_eval(in->rules, in->nrules, x->connector, in->s, &x->d);
	if (r >= 0 && in->catalog && in->cur && in->seats && in->company) {
		x->company = in->company;
		r = explain_licences(x, in);
	}
	if (r < 0)
		return r;
	x->in_scope = x->d->users[idx].in_scope && !x->user->disabled && !x->user->invalid;
	x->company_admin = x->d->users[idx].company_admin;
	x->scope_why = scope_words(x);
	if ((r = user_warnings(x, &x->d->warnings)) < 0 || (r = desired_grants(x, idx, &cap)) < 0 ||
	    (r = explain_rules(x, in, idx)) < 0)
		return r;
	if (!in->cur)
		return 0;
	x->db = true;
	if ((r = ids_diff_compute(in->s, x->d, in->cur, in->dopt, &x->plan)) < 0)
		return r;
	if ((r = user_side(x, in->cur)) < 0)
		return r;
	return grant_side(x, in->cur, &cap);
}

int ids_explain(const struct ids_explain_in *in, size_t idx, struct ids_explanation **ret)
{
	if (!in || !in->s || !in->dopt || !in->dopt->connector || idx >= in->s->nusers ||
	    (!in->rules && in->nrules))
		return -EINVAL;
	struct ids_explanation *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->user = &in->s->users[idx];
	x->connector = ids_arena_strdup(&x->arena, in->dopt->connector);
	int r = x->connector ? explain_all(x, in, idx) : -ENOMEM;
	if (r < 0) {
		ids_explanation_free(x);
		return r;
	}
	*ret = x;
	return 0;
}

void ids_explanation_free(struct ids_explanation *x)
{
	if (!x)
		return;
	ids_plan_free(x->plan);
	ids_desired_set_free(x->d);
	ids_strv_free(&x->warnings);
	free(x->grants);
	ids_arena_free(&x->arena);
	free(x);
}
