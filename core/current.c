/* current.c — the current managed state of one company, as the store reads
 * it from PostgreSQL (plan.h).  A plain container: growable arrays whose
 * strings live in the container's arena, so that the store can hand in
 * pointers into a PGresult and clear it right after. */
#include "ids/plan.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int ids_current_new(struct ids_current **ret)
{
	struct ids_current *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*ret = c;
	return 0;
}

void ids_current_free(struct ids_current *c)
{
	if (!c)
		return;
	free(c->users);
	free(c->grants);
	ids_strv_free(&c->tenants);
	ids_strpool_free(&c->interned);
	free(c->rule_texts);
	ids_strmap_free(&c->rule_index);
	ids_arena_free(&c->arena);
	free(c);
}

/* Makes room for one more element of size `sz` in *arr (n used, *cap
 * allocated), doubling so that loading 100k rows stays linear. */
static int grow(void **arr, size_t n, size_t *cap, size_t sz)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	if (ncap > SIZE_MAX / sz)
		return -ENOMEM;
	void *p = realloc(*arr, ncap * sz);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* Copies a nullable string into the arena; false only when out of memory
 * (a NULL source stays NULL and is fine). */
static bool dup_field(struct ids_arena *a, const char *src, const char **dst)
{
	*dst = ids_arena_strdup(a, src);
	return !src || *dst;
}

/* The same for a string that repeats from row to row: one shared copy. */
static bool intern_field(struct ids_current *c, const char *src, const char **dst)
{
	*dst = ids_strpool_intern(&c->interned, &c->arena, src);
	return !src || *dst;
}

int ids_current_add_user(struct ids_current *c, const struct ids_cur_user *u)
{
	void *arr = c->users;
	int r = grow(&arr, c->nusers, &c->ucap, sizeof(*c->users));
	c->users = arr;
	if (r < 0)
		return r;

	struct ids_cur_user n = *u;
	struct ids_arena *a = &c->arena;
	/* the slot is only counted once every copy succeeded: a failed add
	 * leaves the container as it was (the arena may keep a few bytes) */
	if (!intern_field(c, u->source, &n.source) || !dup_field(a, u->external_id, &n.external_id) ||
	    !dup_field(a, u->username, &n.username) || !dup_field(a, u->email, &n.email) ||
	    !dup_field(a, u->first_name, &n.first_name) || !dup_field(a, u->last_name, &n.last_name) ||
	    !dup_field(a, u->display_name, &n.display_name) ||
	    !intern_field(c, u->auth_method, &n.auth_method) || !intern_field(c, u->idp, &n.idp) ||
	    !intern_field(c, u->reason, &n.reason))
		return -ENOMEM;
	c->users[c->nusers++] = n;
	return 0;
}

int ids_current_add_grant(struct ids_current *c, const struct ids_cur_grant *g)
{
	if ((unsigned)g->kind >= IDS_GRANT__COUNT || !g->tenant || !g->name)
		return -EINVAL;
	void *arr = c->grants;
	int r = grow(&arr, c->ngrants, &c->gcap, sizeof(*c->grants));
	c->grants = arr;
	if (r < 0)
		return r;

	struct ids_cur_grant n = *g;
	/* consecutive rows mostly share their tenant (and often the name):
	 * reuse the previous row's copies before asking the pool */
	const struct ids_cur_grant *prev = c->ngrants ? &c->grants[c->ngrants - 1] : NULL;
	if (prev && strcmp(prev->tenant, g->tenant) == 0)
		n.tenant = prev->tenant;
	else if (!intern_field(c, g->tenant, &n.tenant))
		return -ENOMEM;
	if (prev && strcmp(prev->name, g->name) == 0)
		n.name = prev->name;
	else if (!intern_field(c, g->name, &n.name))
		return -ENOMEM;
	if (n.rules >= c->nrule_texts)
		n.rules = 0; /* an index from elsewhere means nothing here */
	c->grants[c->ngrants++] = n;
	return 0;
}

/* The index of rules text t in c->rule_texts, added the first time. */
static int rule_text(struct ids_current *c, const char *t, uint16_t *ret)
{
	uint32_t v;
	if (ids_strmap_get(&c->rule_index, t, &v)) {
		*ret = (uint16_t)v;
		return 0;
	}
	if (c->nrule_texts == 0) {
		/* [0] stands for "none" */
		if (ids_grow(&c->rule_texts, &c->cap_rule_texts, 1, sizeof(*c->rule_texts)) < 0)
			return -ENOMEM;
		c->rule_texts[c->nrule_texts++] = NULL;
	}
	if (c->nrule_texts > UINT16_MAX)
		return -E2BIG;
	char *k = ids_arena_strdup(&c->arena, t);
	if (!k ||
	    ids_grow(&c->rule_texts, &c->cap_rule_texts, c->nrule_texts + 1, sizeof(*c->rule_texts)) < 0 ||
	    ids_strmap_put(&c->rule_index, k, (uint32_t)c->nrule_texts, NULL) < 0)
		return -ENOMEM;
	*ret = (uint16_t)c->nrule_texts;
	c->rule_texts[c->nrule_texts++] = k;
	return 0;
}

int ids_current_add_grant_rules(struct ids_current *c, const struct ids_cur_grant *g, const char *rules)
{
	struct ids_cur_grant n = *g;
	n.rules = 0;
	if (rules) {
		int r = rule_text(c, rules, &n.rules);
		if (r < 0)
			return r;
	}
	return ids_current_add_grant(c, &n);
}

const char *ids_current_grant_rules(const struct ids_current *c, const struct ids_cur_grant *g)
{
	return g->rules < c->nrule_texts ? c->rule_texts[g->rules] : NULL;
}

int ids_current_add_tenant(struct ids_current *c, const char *slug)
{
	if (!slug)
		return -EINVAL;
	/* no duplicate check: the diff indexes the slugs, a repeat is harmless */
	return ids_strv_push(&c->tenants, slug);
}

/* ---------------- the id index ---------------- */

static size_t id_slot(const struct ids_current_index *ix, int64_t id)
{
	/* Fibonacci hashing: ids are dense sequences, whose low bits alone
	 * would fill neighbouring slots */
	return (size_t)(((uint64_t)id * 0x9e3779b97f4a7c15ULL) >> 17) & (ix->cap - 1);
}

int ids_current_index_build(const struct ids_current *c, struct ids_current_index *ix)
{
	*ix = (struct ids_current_index){.cap = 64};
	while (ix->cap < c->nusers * 2 + 1)
		ix->cap *= 2;
	ix->key = calloc(ix->cap, sizeof(*ix->key));
	ix->val = malloc(ix->cap * sizeof(*ix->val));
	if (!ix->key || !ix->val) {
		ids_current_index_free(ix);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->nusers; i++) {
		size_t j = id_slot(ix, c->users[i].id);
		while (ix->key[j] && ix->key[j] != c->users[i].id)
			j = (j + 1) & (ix->cap - 1);
		ix->key[j] = c->users[i].id;
		ix->val[j] = (uint32_t)i;
	}
	return 0;
}

bool ids_current_index_get(const struct ids_current_index *ix, int64_t id, uint32_t *ret_row)
{
	if (!id || !ix->cap)
		return false;
	for (size_t j = id_slot(ix, id); ix->key[j]; j = (j + 1) & (ix->cap - 1))
		if (ix->key[j] == id) {
			*ret_row = ix->val[j];
			return true;
		}
	return false;
}

void ids_current_index_free(struct ids_current_index *ix)
{
	free(ix->key);
	free(ix->val);
	*ix = (struct ids_current_index){0};
}
