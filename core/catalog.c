/* catalog.c — the platforms' own rules over the desired state: roles that
 * need other roles (catalog.requires) and licence limits (licences:).
 *
 * Both run after ids_rules_eval and before the diff, and change only the
 * users they concern: a user's grant array is shared with every user who
 * has the same grants, so a changed user gets a new array (in d->arena)
 * and the shared one is never written.  What they take away joins the
 * user's revoked part (grants[ngrants ..]), which is how the diff names
 * the reason of a removal. */
#include "ids/catalog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-user warnings of requires, at most: past it one line says how many
 * more (the plan's own lines show every dropped grant a user held). */
#define REQ_WARNINGS_MAX 100

void ids_catalog_rules_clear(struct ids_catalog_rules *cr)
{
	for (size_t i = 0; i < cr->nreq; i++) {
		free(cr->req[i].role);
		ids_strv_free(&cr->req[i].needs);
	}
	free(cr->req);
	for (size_t i = 0; i < cr->nlic; i++) {
		free(cr->lic[i].company);
		free(cr->lic[i].role);
	}
	free(cr->lic);
	memset(cr, 0, sizeof(*cr));
}

/* One grant of the user being worked on. */
struct item {
	struct ids_grant g;
	bool live;
	bool by_revoke; /* taken away by a revoke rule (not by a requirement) */
};

struct cat {
	const struct ids_catalog_rules *cr;
	const struct ids_snapshot *s;
	struct ids_desired_set *d;
	struct item *items;
	size_t nitems, cap;
	struct ids_strmap notes; /* note text (in d->arena) -> index into d->rule_lists */
	struct ids_buf buf;
	size_t warnings; /* requires warnings so far */
};

static void cat_free(struct cat *c)
{
	free(c->items);
	ids_strmap_free(&c->notes);
	ids_buf_free(&c->buf);
}

static const struct ids_requirement *req_of(const struct ids_catalog_rules *cr, const char *role)
{
	for (size_t i = 0; i < cr->nreq; i++)
		if (!strcmp(cr->req[i].role, role))
			return &cr->req[i];
	return NULL;
}

/* The index of the note list whose one name is c->buf's text: made once
 * per text, like the rules' own lists. */
static int note_list(struct cat *c, uint32_t *ret)
{
	struct ids_desired_set *d = c->d;
	if (ids_strmap_get(&c->notes, c->buf.p, ret))
		return 0;
	if (d->nrule_lists >= UINT32_MAX)
		return -E2BIG;
	int r = ids_grow(&d->rule_lists, &d->cap_rule_lists, d->nrule_lists + 1, sizeof(*d->rule_lists));
	if (r < 0)
		return r;
	struct ids_rule_list *l = ids_arena_alloc(&d->arena, sizeof(*l) + sizeof(l->names[0]));
	char *text = ids_arena_strdup(&d->arena, c->buf.p);
	if (!l || !text)
		return -ENOMEM;
	l->n = 1;
	l->note = true;
	l->names[0] = text;
	if ((r = ids_strmap_put(&c->notes, text, (uint32_t)d->nrule_lists, NULL)) < 0)
		return r;
	*ret = (uint32_t)d->nrule_lists;
	d->rule_lists[d->nrule_lists++] = l;
	return 0;
}

/* The note list for printf(fmt, ...). */
static int note(struct cat *c, uint32_t *ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int note(struct cat *c, uint32_t *ret, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	ids_buf_reset(&c->buf);
	int r = ids_buf_puts(&c->buf, text);
	free(text);
	return r < 0 ? r : note_list(c, ret);
}

/* The user's grants as items: live ones, then the revoked ones. */
static int load_items(struct cat *c, const struct ids_desired *u)
{
	size_t n = u->ngrants + u->nrevoked;
	int r = ids_grow(&c->items, &c->cap, n + 1, sizeof(*c->items));
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		const struct ids_rule_list *l =
		    ids_rule_list_get(c->d->rule_lists, c->d->nrule_lists, u->grants[i].rules);
		bool live = i < u->ngrants;
		c->items[i] =
		    (struct item){.g = u->grants[i], .live = live, .by_revoke = !live && l && !l->note};
	}
	c->nitems = n;
	return 0;
}

/* The item (tenant, role), NULL when the user has none. */
static struct item *find_role(struct cat *c, const char *tenant, const char *role)
{
	for (size_t i = 0; i < c->nitems; i++) {
		const struct ids_grant *g = &c->items[i].g;
		if (g->kind == IDS_GRANT_ROLE && !strcmp(g->tenant, tenant) && !strcmp(g->name, role))
			return &c->items[i];
	}
	return NULL;
}

static const char *username(const struct cat *c, size_t user)
{
	const struct ids_user *su = &c->s->users[user];
	return su->f[IDS_F_USERNAME] ? su->f[IDS_F_USERNAME] : su->f[IDS_F_EXTERNAL_ID];
}

static int warn(struct cat *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int warn(struct cat *c, const char *fmt, ...)
{
	if (c->warnings++ >= REQ_WARNINGS_MAX)
		return 0;
	char *w = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&w, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	int r = ids_strv_push(&c->d->warnings, w);
	free(w);
	return r;
}

/* Requirement `need` of live item it (a role with requirements) of user
 * `user`: met, or the item is left out.  1 when it was. */
static int require(struct cat *c, size_t user, size_t it, const char *need, bool quiet)
{
	struct ids_grant g = c->items[it].g;
	const struct item *have = find_role(c, g.tenant, need);
	uint32_t idx;
	int r;
	if (have && have->live)
		return 0;
	if ((r = note(c, &idx, "requires %s", need)) < 0)
		return r;
	c->items[it].live = false;
	c->items[it].g.rules = idx;
	if (quiet)
		return 1;
	r = warn(c, "user %s: tenant %s: role %s left out: it requires %s, which %s", username(c, user),
		 g.tenant, g.name, need,
		 !have		   ? "no rule grants"
		 : have->by_revoke ? "a revoke rule takes away"
				   : "is left out too");
	return r < 0 ? r : 1;
}

/* True when a live role of the user's in tenant needs role. */
static bool needed(struct cat *c, const char *tenant, const char *role)
{
	for (size_t i = 0; i < c->nitems; i++) {
		const struct ids_requirement *rq;
		const struct item *it = &c->items[i];
		if (!it->live || it->g.kind != IDS_GRANT_ROLE || strcmp(it->g.tenant, tenant) ||
		    !(rq = req_of(c->cr, it->g.name)))
			continue;
		if (ids_strv_contains(&rq->needs, role, false))
			return true;
	}
	return false;
}

/* A role that only requirements gave ("required by monitoring"), once a
 * role that asked for it is revoked or left out: gone without a trace when
 * nothing needs it any more (no rule wanted it), else named after the one
 * that still does.  1 when it changed. */
static int recheck_added(struct cat *c, size_t i)
{
	struct item *it = &c->items[i];
	const struct ids_rule_list *l = ids_rule_list_get(c->d->rule_lists, c->d->nrule_lists, it->g.rules);
	const char *asker = NULL;
	size_t alive = 0;
	if (!it->live || it->g.kind != IDS_GRANT_ROLE || !l || !l->note)
		return 0;
	for (size_t k = 0; k < l->n; k++) {
		bool added = !strncmp(l->names[k], "required by ", 12);
		const char *who = added ? l->names[k] + 12 : l->names[k];
		const struct item *dep = added ? find_role(c, it->g.tenant, who) : NULL;
		if (!added || (dep && dep->live)) {
			alive++;
			asker = asker ? asker : who;
		}
	}
	if (alive == l->n || (!alive && needed(c, it->g.tenant, it->g.name)))
		return 0;
	if (!alive) {
		c->items[i] = c->items[--c->nitems];
		return 1;
	}
	uint32_t old = it->g.rules;
	int r = note(c, &it->g.rules, "required by %s", asker);
	return r < 0 ? r : it->g.rules != old;
}

/* Leaves out, until nothing changes, every live role whose requirement is
 * not live, and the roles that only requirements gave and nothing needs.
 * *ret_changed set when something changed. */
static int settle(struct cat *c, size_t user, bool quiet, bool *ret_changed)
{
	bool again = true;
	while (again) {
		again = false;
		for (size_t i = 0; i < c->nitems && !again; i++) {
			const struct ids_requirement *rq;
			int r = recheck_added(c, i);
			if (r < 0)
				return r;
			if (r > 0) {
				again = true;
				break;
			}
			if (!c->items[i].live || c->items[i].g.kind != IDS_GRANT_ROLE ||
			    !(rq = req_of(c->cr, c->items[i].g.name)))
				continue;
			for (size_t k = 0; k < rq->needs.n && !again; k++) {
				r = require(c, user, i, rq->needs.v[k], quiet);
				if (r < 0)
					return r;
				again = r > 0;
			}
		}
		*ret_changed |= again;
	}
	return 0;
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	if (x->live != y->live)
		return x->live ? -1 : 1;
	int r = ids_strcmp0(x->g.tenant, y->g.tenant);
	if (r)
		return r;
	if (x->g.kind != y->g.kind)
		return x->g.kind < y->g.kind ? -1 : 1;
	return ids_strcmp0(x->g.name, y->g.name);
}

/* The items as the user's new grants: live ones sorted, then the others
 * sorted (the revoked part). */
static int store_items(struct cat *c, struct ids_desired *u)
{
	qsort(c->items, c->nitems, sizeof(*c->items), cmp_item);
	struct ids_grant *g = ids_arena_alloc(&c->d->arena, (c->nitems ? c->nitems : 1) * sizeof(*g));
	if (!g)
		return -ENOMEM;
	size_t live = 0;
	for (size_t i = 0; i < c->nitems; i++) {
		g[i] = c->items[i].g;
		live += c->items[i].live;
	}
	u->grants = g;
	u->ngrants = live;
	u->nrevoked = (uint32_t)(c->nitems - live);
	return 0;
}

/* True when one of u's live grants is a role with requirements, or was
 * given by one: the common user has none, and costs one pass. */
static bool concerned(const struct cat *c, const struct ids_desired *u)
{
	for (size_t i = 0; i < u->ngrants; i++) {
		const struct ids_grant *g = &u->grants[i];
		const struct ids_rule_list *l =
		    ids_rule_list_get(c->d->rule_lists, c->d->nrule_lists, g->rules);
		if (g->kind == IDS_GRANT_ROLE && (req_of(c->cr, g->name) || (l && l->note)))
			return true;
	}
	return false;
}

/* ---- the rules with the requirements added ---- */

/* The rules plus, with on_missing_requirement add, for every grant rule
 * whose roles need others, one rule per role that asks ("required by
 * monitoring"): the same match and tenant, granting what that role needs
 * (transitively) and the rule does not grant itself.  Given through the
 * rules engine, the added roles meet the revoke rules like any grant
 * (revokes win).  The copies borrow everything but their name and
 * roles. */
struct aug {
	struct ids_rule *rules;
	size_t n, cap, norig;
	struct ids_strv names; /* the names of the added rules */
};

static void aug_free(struct aug *a)
{
	for (size_t i = a->norig; i < a->n; i++)
		ids_strv_free(&a->rules[i].roles);
	free(a->rules);
	ids_strv_free(&a->names);
}

/* The added rule of rule ri for `asker` (made when missing); NULL on
 * ENOMEM. */
static struct ids_rule *aug_rule(struct aug *a, size_t from, size_t ri, const char *asker)
{
	const struct ids_rule src = a->rules[ri], *rl = &src; /* a->rules may move below */
	char *name = NULL;
	for (size_t i = from; i < a->n; i++)
		if (!strcmp(a->rules[i].name + strlen("required by "), asker))
			return &a->rules[i];
	if (asprintf(&name, "required by %s", asker) < 0)
		return NULL;
	int r = ids_strv_push(&a->names, name);
	free(name);
	if (r < 0 || ids_grow(&a->rules, &a->cap, a->n + 1, sizeof(*a->rules)) < 0)
		return NULL;
	struct ids_rule *x = &a->rules[a->n++];
	*x = (struct ids_rule){.name = a->names.v[a->names.n - 1],
			       .line = rl->line,
			       .connectors = rl->connectors,
			       .member_of = rl->member_of,
			       .not_member_of = rl->not_member_of,
			       .attrs = rl->attrs,
			       .nattrs = rl->nattrs,
			       .member_of_regex = rl->member_of_regex,
			       .group_re = rl->group_re,
			       .group_re_nsub = rl->group_re_nsub,
			       .tenant = rl->tenant};
	return x;
}

/* The requirements of rule i, breadth first: each role the rule grants or
 * a requirement added asks for its needs. */
static int aug_one(const struct ids_catalog_rules *cr, struct aug *a, size_t i)
{
	struct ids_strv seen = {0};
	size_t from = a->n;
	int r = 0;
	for (size_t k = 0; k < a->rules[i].roles.n && r >= 0; k++)
		r = ids_strv_push(&seen, a->rules[i].roles.v[k]);
	for (size_t q = 0; q < seen.n && r >= 0; q++) {
		const struct ids_requirement *rq = req_of(cr, seen.v[q]);
		for (size_t k = 0; rq && k < rq->needs.n && r >= 0; k++) {
			if (ids_strv_contains(&seen, rq->needs.v[k], false))
				continue;
			char *asker = strdup(seen.v[q]);
			struct ids_rule *x = asker ? aug_rule(a, from, i, asker) : NULL;
			free(asker);
			if (!x || (r = ids_strv_push(&x->roles, rq->needs.v[k])) < 0 ||
			    (r = ids_strv_push(&seen, rq->needs.v[k])) < 0)
				r = r < 0 ? r : -ENOMEM;
		}
	}
	ids_strv_free(&seen);
	return r;
}

static int aug_build(const struct ids_catalog_rules *cr, const struct ids_rule *rules, size_t nrules,
		     struct aug *a)
{
	int r = ids_grow(&a->rules, &a->cap, nrules + 1, sizeof(*a->rules));
	if (r < 0)
		return r;
	if (nrules)
		memcpy(a->rules, rules, nrules * sizeof(*rules));
	a->n = a->norig = nrules;
	for (size_t i = 0; i < nrules && r >= 0 && !cr->drop_missing; i++)
		if (!rules[i].revoke && rules[i].tenant)
			r = aug_one(cr, a, i);
	return r;
}

/* The rule lists made only of added rules become notes (printed as they
 * are, not as "rule required by ..."); the same note from two rules is
 * shown once. */
static void mark_notes(struct ids_desired_set *d, const struct aug *a)
{
	for (size_t i = 1; i < d->nrule_lists; i++) {
		struct ids_rule_list *l = (struct ids_rule_list *)d->rule_lists[i];
		bool all = l->n > 0;
		for (size_t k = 0; k < l->n && all; k++)
			all = ids_strv_contains(&a->names, l->names[k], false);
		if (!all)
			continue;
		l->note = true;
		size_t w = 0;
		for (size_t k = 0; k < l->n; k++)
			if (!w || strcmp(l->names[w - 1], l->names[k]))
				l->names[w++] = l->names[k];
		l->n = w;
	}
}

int ids_catalog_eval(const struct ids_catalog_rules *cr, const struct ids_rule *rules, size_t nrules,
		     const char *connector, const struct ids_snapshot *s, struct ids_desired_set **ret)
{
	return ids_catalog_eval_some(cr, rules, nrules, connector, s, NULL, ret);
}

int ids_catalog_eval_some(const struct ids_catalog_rules *cr, const struct ids_rule *rules, size_t nrules,
			  const char *connector, const struct ids_snapshot *s, const bool *want,
			  struct ids_desired_set **ret)
{
	struct aug a = {0};
	struct ids_desired_set *d = NULL;
	int r = cr->nreq ? aug_build(cr, rules, nrules, &a) : 0;
	if (r >= 0)
		r = ids_rules_eval_some(cr->nreq ? a.rules : rules, cr->nreq ? a.n : nrules, connector, s,
					want, &d);
	if (r >= 0 && cr->nreq) {
		mark_notes(d, &a);
		struct cat c = {.cr = cr, .s = s, .d = d};
		for (size_t i = 0; i < d->nusers && r >= 0; i++) {
			struct ids_desired *u = &d->users[i];
			bool changed = false;
			if ((want && !want[i]) || !concerned(&c, u))
				continue;
			if ((r = load_items(&c, u)) >= 0 && (r = settle(&c, i, false, &changed)) >= 0 &&
			    changed)
				r = store_items(&c, u);
		}
		if (r >= 0 && c.warnings > REQ_WARNINGS_MAX) {
			size_t more = c.warnings - REQ_WARNINGS_MAX;
			c.warnings = 0;
			r = warn(&c, "... and %zu more roles left out for a missing requirement", more);
		}
		cat_free(&c);
	}
	aug_free(&a);
	if (r < 0) {
		ids_desired_set_free(d);
		return r;
	}
	*ret = d;
	return 0;
}

/* ---------------- licences ---------------- */

int ids_seat_book_add(struct ids_seat_book *b, const struct ids_seat *row)
{
	int r = ids_grow(&b->v, &b->cap, b->n + 1, sizeof(*b->v));
	if (r < 0)
		return r;
	struct ids_seat s = *row;
	s.role = ids_arena_strdup(&b->arena, row->role);
	s.external_id = ids_arena_strdup(&b->arena, row->external_id);
	if (!s.role || !s.external_id)
		return -ENOMEM;
	b->v[b->n++] = s;
	return 0;
}

int ids_seat_book_add_other(struct ids_seat_book *b, const char *role, long n)
{
	for (size_t i = 0; i < b->other_roles.n; i++)
		if (!strcmp(b->other_roles.v[i], role)) {
			b->other_holders[i] += n;
			return 0;
		}
	long *h = realloc(b->other_holders, (b->other_roles.n + 1) * sizeof(*h));
	if (!h)
		return -ENOMEM;
	b->other_holders = h;
	int r = ids_strv_push(&b->other_roles, role);
	if (r >= 0)
		h[b->other_roles.n - 1] = n;
	return r;
}

void ids_seat_book_clear(struct ids_seat_book *b)
{
	free(b->v);
	ids_strv_free(&b->other_roles);
	free(b->other_holders);
	ids_arena_free(&b->arena);
	memset(b, 0, sizeof(*b));
}

/* A user the rules entitle to a licensed role. */
struct cand {
	size_t user; /* index into the snapshot (and the desired set) */
	const char *username, *external_id;
	int64_t entitled_run, seat_run;
	bool holder; /* holds the role now */
};

/* Holders keep their seats oldest first; waiting users get them earliest
 * entitlement first, then by username (the external id only breaks a
 * tie between two spellings of one name). */
static int cmp_seat(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->seat_run != y->seat_run)
		return x->seat_run < y->seat_run ? -1 : 1;
	int r = ids_strcmp0(x->username, y->username);
	return r ? r : ids_strcmp0(x->external_id, y->external_id);
}

static int cmp_wait(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->holder != y->holder)
		return x->holder ? -1 : 1;
	if (x->holder)
		return cmp_seat(a, b);
	if (x->entitled_run != y->entitled_run)
		return x->entitled_run < y->entitled_run ? -1 : 1;
	int r = ids_strcmp0(x->username, y->username);
	return r ? r : ids_strcmp0(x->external_id, y->external_id);
}

/* What one licence step reads: the connector's users in the current state,
 * by external id, and the previous book, by "role\x1fexternal id". */
struct lic {
	struct cat c;
	const char *connector;
	int64_t run;
	const struct ids_current *cur;
	const struct ids_seat_book *prev;
	struct ids_seat_book *next;
	struct ids_strmap by_ext;  /* external id -> cur user row (this connector's) */
	struct ids_strmap by_seat; /* "role\x1fexternal id" (in keys) -> prev row */
	struct ids_arena keys;
	struct ids_current_index ix;
	unsigned char *holds; /* per cur user: 1 managed row of the role, 2 a manual one */
	struct cand *cands;
	size_t ncands, capc;
};

static void lic_free(struct lic *l)
{
	cat_free(&l->c);
	ids_strmap_free(&l->by_ext);
	ids_strmap_free(&l->by_seat);
	ids_arena_free(&l->keys);
	ids_current_index_free(&l->ix);
	free(l->holds);
	free(l->cands);
}

static int lic_init(struct lic *l)
{
	const struct ids_current *cur = l->cur;
	int r = ids_current_index_build(cur, &l->ix);
	l->holds = calloc(cur->nusers ? cur->nusers : 1, 1);
	if (r < 0 || !l->holds)
		return r < 0 ? r : -ENOMEM;
	for (size_t i = 0; i < cur->nusers && r >= 0; i++) {
		const struct ids_cur_user *u = &cur->users[i];
		if (u->source && u->external_id && !strcmp(u->source, l->connector))
			r = ids_strmap_put(&l->by_ext, u->external_id, (uint32_t)i, NULL);
	}
	for (size_t i = 0; l->prev && i < l->prev->n && r >= 0; i++) {
		const struct ids_seat *s = &l->prev->v[i];
		ids_buf_reset(&l->c.buf);
		char *key = ids_buf_printf(&l->c.buf, "%s\x1f%s", s->role, s->external_id) < 0
				? NULL
				: ids_arena_strdup(&l->keys, l->c.buf.p);
		r = key ? ids_strmap_put(&l->by_seat, key, (uint32_t)i, NULL) : -ENOMEM;
	}
	return r < 0 ? r : 0;
}

/* The previous book's row of (role, external id), NULL when none. */
static const struct ids_seat *prev_seat(struct lic *l, const char *role, const char *ext)
{
	uint32_t v;
	ids_buf_reset(&l->c.buf);
	if (!l->prev || ids_buf_printf(&l->c.buf, "%s\x1f%s", role, ext) < 0 ||
	    !ids_strmap_get(&l->by_seat, l->c.buf.p, &v))
		return NULL;
	return &l->prev->v[v];
}

static bool entitled(const struct ids_desired *u, const char *role)
{
	for (size_t i = 0; i < u->ngrants; i++)
		if (u->grants[i].kind == IDS_GRANT_ROLE && !strcmp(u->grants[i].name, role))
			return true;
	return false;
}

/* Marks in l->holds the active users of the connector holding role:
 * bit 1 through a row of the connector's, bit 2 through a manual row. */
static void mark_holders(struct lic *l, const char *role)
{
	const struct ids_current *cur = l->cur;
	memset(l->holds, 0, cur->nusers ? cur->nusers : 1);
	for (size_t i = 0; i < cur->ngrants; i++) {
		const struct ids_cur_grant *g = &cur->grants[i];
		uint32_t row;
		if (g->kind != IDS_GRANT_ROLE || strcmp(g->name, role) ||
		    !ids_current_index_get(&l->ix, g->user_id, &row))
			continue;
		const struct ids_cur_user *u = &cur->users[row];
		if (u->active && u->source && !strcmp(u->source, l->connector))
			l->holds[row] |= g->manual ? 2 : 1;
	}
}

/* The users the rules entitle to role, into l->cands (holders first, by
 * seat, then the waiting by entitlement); *ret_fixed the connector's users
 * who keep a manual row of it without the rules (a seat nothing moves). */
static int collect(struct lic *l, const char *role, long *ret_fixed)
{
	const struct ids_snapshot *s = l->c.s;
	l->ncands = 0;
	mark_holders(l, role);
	for (size_t i = 0; i < s->nusers; i++) {
		const struct ids_user *su = &s->users[i];
		uint32_t row;
		if (su->invalid || su->disabled || !entitled(&l->c.d->users[i], role))
			continue;
		const char *ext = su->f[IDS_F_EXTERNAL_ID];
		bool known = ids_strmap_get(&l->by_ext, ext, &row);
		const struct ids_seat *p = prev_seat(l, role, ext);
		int r = ids_grow(&l->cands, &l->capc, l->ncands + 1, sizeof(*l->cands));
		if (r < 0)
			return r;
		l->cands[l->ncands++] = (struct cand){
		    .user = i,
		    .username = su->f[IDS_F_USERNAME],
		    .external_id = ext,
		    .entitled_run = p ? p->entitled_run : l->run,
		    /* a holder the book does not know held it before licences: oldest */
		    .seat_run = p && p->seated ? p->seat_run : 0,
		    .holder = known && (l->holds[row] & 3),
		};
		if (known)
			l->holds[row] |= 4;
	}
	long fixed = 0;
	for (size_t i = 0; i < l->cur->nusers; i++)
		fixed += (l->holds[i] & 2) && !(l->holds[i] & 4);
	*ret_fixed = fixed;
	qsort(l->cands, l->ncands, sizeof(*l->cands), cmp_wait);
	return 0;
}

/* Takes role away from user (every tenant) with the note list idx, and
 * what requires it with it. */
static int withhold(struct lic *l, size_t user, const char *role, uint32_t idx)
{
	struct cat *c = &l->c;
	struct ids_desired *u = &c->d->users[user];
	bool changed = true;
	int r = load_items(c, u);
	for (size_t i = 0; i < c->nitems && r >= 0; i++) {
		struct item *it = &c->items[i];
		if (it->live && it->g.kind == IDS_GRANT_ROLE && !strcmp(it->g.name, role)) {
			it->live = false;
			it->g.rules = idx;
		}
	}
	if (r >= 0)
		r = settle(c, user, true, &changed);
	return r < 0 ? r : store_items(c, u);
}

static long other_holders(const struct ids_seat_book *b, const char *role)
{
	for (size_t i = 0; b && i < b->other_roles.n; i++)
		if (!strcmp(b->other_roles.v[i], role))
			return b->other_holders[i];
	return 0;
}

/* One licence: seats to the candidates in order, the rest withheld, the
 * book rows for next, the counts into *use. */
static int one_licence(struct lic *l, const struct ids_licence *lic, struct ids_licence_use *use)
{
	long fixed = 0;
	int r = collect(l, lic->role, &fixed);
	uint32_t over = 0, wait = 0;
	if (r >= 0)
		r = note(&l->c, &over, "licence %s: over the limit of %ld", lic->role, lic->limit);
	if (r >= 0)
		r = note(&l->c, &wait, "licence %s: waiting for a seat (limit %ld)", lic->role, lic->limit);
	*use = (struct ids_licence_use){.role = lic->role, .limit = lic->limit};
	long seats = lic->limit - fixed - other_holders(l->prev, lic->role);
	use->used = fixed + other_holders(l->prev, lic->role);
	for (size_t i = 0; i < l->ncands && r >= 0; i++) {
		struct cand *k = &l->cands[i];
		struct ids_seat row = {.role = lic->role,
				       .external_id = k->external_id,
				       .entitled_run = k->entitled_run,
				       .seat_run = k->holder ? k->seat_run : l->run};
		if (seats > 0) {
			seats--;
			use->used++;
			use->granted += !k->holder;
			row.seated = true;
		} else {
			/* past the limit a holder loses the seat, and waits
			 * like the others (first in line: entitled earliest) */
			use->waiting++;
			use->revoked += k->holder;
			r = withhold(l, k->user, lic->role, k->holder ? over : wait);
		}
		if (r >= 0)
			r = ids_seat_book_add(l->next, &row);
	}
	return r;
}

static int licence_warnings(struct lic *l, const char *company, const struct ids_licence_use *u)
{
	int r = 0;
	char *w = NULL;
	if (u->revoked &&
	    asprintf(&w,
		     "licence %s/%s: %ld seats revoked, over the limit of %ld (most recently granted first)",
		     company, u->role, u->revoked, u->limit) < 0)
		return -ENOMEM;
	if (w) {
		r = ids_strv_push(&l->c.d->warnings, w);
		free(w);
		w = NULL;
	}
	if (r >= 0 && u->waiting &&
	    asprintf(&w, "licence %s/%s: %ld users wait for a seat (%ld of %ld used)", company, u->role,
		     u->waiting, u->used, u->limit) < 0)
		return -ENOMEM;
	if (w) {
		r = ids_strv_push(&l->c.d->warnings, w);
		free(w);
	}
	return r;
}

int ids_catalog_licences(const struct ids_catalog_rules *cr, const char *company, const char *connector,
			 int64_t run, const struct ids_snapshot *s, struct ids_desired_set *d,
			 const struct ids_current *cur, const struct ids_seat_book *prev,
			 struct ids_seat_book *next, struct ids_licence_use *use)
{
	struct lic l = {.c = {.cr = cr, .s = s, .d = d},
			.connector = connector,
			.run = run,
			.cur = cur,
			.prev = prev,
			.next = next};
	int r = lic_init(&l);
	for (size_t i = 0; i < cr->nlic && r >= 0; i++) {
		struct ids_licence_use u = {0};
		if (strcmp(cr->lic[i].company, company))
			continue;
		if ((r = one_licence(&l, &cr->lic[i], &u)) >= 0)
			r = licence_warnings(&l, company, &u);
		if (use)
			use[i] = u;
	}
	lic_free(&l);
	return r;
}
