/* rules.c — the rule language evaluated against a finished snapshot
 * (rules.h, config.md "Rules", semantics.md "In scope, and the desired
 * state").
 *
 * Everything that depends only on (rule, snapshot) is computed once per
 * evaluation: the groups each member_of / not_member_of names (bitmaps),
 * the groups member_of_regex matches and their captures.  Per user this
 * leaves bit tests over the user's (already transitive) groups, attribute
 * regexes and template expansion.
 *
 * Order independence: grants are collected as a multiset, then sorted and
 * merged (union; slots take the maximum), then every matching revoke rule
 * removes what it names from that merged set.  Since revokes never feed
 * each other, neither step depends on the order of the rules. */
#include "ids/rules.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/util.h"
#include "ids/dn.h"

#define NONE UINT32_MAX /* "no group", "no slot": an index no array reaches */
/* {0}..{9}: one decimal digit keeps templates unambiguous ({10} would
 * read as {1} then "0" in other template languages users know) */
#define NCAP 10
/* A bad template on a big directory would otherwise log one line per user. */
#define MAX_WARNINGS 1000
#define WARN_SLUG_MAX 64 /* longest bad slug quoted in a warning */

const char *ids_grant_kind_name(enum ids_grant_kind k)
{
	switch (k) {
	case IDS_GRANT_ROLE: return "role";
	case IDS_GRANT_CHANNEL: return "chan";
	case IDS_GRANT_GROUP: return "group";
	case IDS_GRANT_SLOT: return "slot";
	default: return "?";
	}
}

/* The slug rule of schema.md, checked by hand: a regex would need
 * compiling and a locale, and this runs once per templated grant. */
bool ids_slug_valid(const char *slug)
{
	if (!slug)
		return false;
	size_t n = 0;
	for (const char *p = slug; *p; p++, n++) {
		char c = *p;
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && (n == 0 || (c != '-' && c != '_')))
			return false;
	}
	return n >= 1 && n <= 63;
}

void ids_rule_clear(struct ids_rule *r)
{
	if (!r)
		return;
	free(r->name);
	ids_strv_free(&r->connectors);
	ids_strv_free(&r->member_of);
	ids_strv_free(&r->not_member_of);
	for (size_t i = 0; r->attrs && i < r->nattrs; i++) {
		free(r->attrs[i].name);
		/* the loader compiles a regex exactly when it stored its source */
		if (r->attrs[i].pattern)
			regfree(&r->attrs[i].re);
		free(r->attrs[i].pattern);
	}
	free(r->attrs);
	if (r->member_of_regex)
		regfree(&r->group_re);
	free(r->member_of_regex);
	free(r->tenant);
	ids_strv_free(&r->roles);
	ids_strv_free(&r->channels);
	ids_strv_free(&r->groups);
	for (size_t i = 0; r->slots && i < r->nslots; i++)
		free(r->slots[i].channel_group);
	free(r->slots);
	ids_strv_free(&r->revoke_roles);
	ids_strv_free(&r->revoke_channels);
	ids_strv_free(&r->revoke_groups);
	/* a second clear (or a clear of a half-filled rule) is then harmless */
	memset(r, 0, sizeof(*r));
}

bool ids_rule_for_connector(const struct ids_rule *r, const char *name)
{
	/* NULL stands for "any connector" (whole-config checks) */
	return r && (r->connectors.n == 0 || !name || ids_strv_contains(&r->connectors, name, false));
}

/* ---------------- tenant templates ---------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool slug_char(char c)
{
	return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_';
}

static bool attr_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_' ||
	       c == '.' || c == ';' || c == ':';
}

/* One placeholder "{...}" starting at t[0] == '{'.  Sets *ret_len to its
 * length with the braces and either *ret_cap (0..) or *ret_attr/ret_attr_len;
 * NULL when well formed, else why not. */
static const char *parse_placeholder(const char *t, size_t *ret_len, int *ret_cap, const char **ret_attr,
				     size_t *ret_attr_len)
{
	const char *close = strchr(t + 1, '}');
	const char *open = strchr(t + 1, '{');
	/* callers skip one byte past a malformed placeholder */
	*ret_len = 1;
	*ret_cap = -1;
	*ret_attr = NULL;
	*ret_attr_len = 0;
	if (!close || (open && open < close))
		return "unbalanced '{' in tenant template";
	const char *in = t + 1;
	size_t n = (size_t)(close - in);
	*ret_len = n + 2;
	if (n > 0 && is_digit(in[0])) {
		int v = 0;
		for (size_t i = 0; i < n; i++) {
			if (!is_digit(in[i]))
				return "unknown placeholder in tenant template (use {N} or {attr.NAME})";
			if (v < 100)
				v = v * 10 + (in[i] - '0');
		}
		*ret_cap = v;
		return NULL;
	}
	if (n >= 5 && strncmp(in, "attr.", 5) == 0) {
		if (n == 5)
			return "{attr.} names no attribute";
		for (size_t i = 5; i < n; i++)
			if (!attr_name_char(in[i]))
				return "invalid attribute name in {attr.NAME}";
		*ret_attr = in + 5;
		*ret_attr_len = n - 5;
		return NULL;
	}
	return "unknown placeholder in tenant template (use {N} or {attr.NAME})";
}

int ids_rule_check_template(const struct ids_rule *r, const char **ret_why)
{
	const char *why = NULL;
	const char *t = r ? r->tenant : NULL;
	if (!t)
		return 0;
	if (strcmp(t, "*") == 0) {
		if (!r->revoke)
			why = "tenant \"*\" is only allowed in revoke rules";
		goto out;
	}
	if (!strchr(t, '{') && !strchr(t, '}')) {
		if (!ids_slug_valid(t))
			why = "tenant is not a valid slug ([a-z0-9][a-z0-9_-]{0,62})";
		goto out;
	}
	for (size_t i = 0; t[i] && !why;) {
		if (t[i] == '}') {
			why = "unbalanced '}' in tenant template";
		} else if (t[i] == '{') {
			size_t len, alen;
			int cap;
			const char *attr;
			why = parse_placeholder(t + i, &len, &cap, &attr, &alen);
			if (!why && cap >= 0 && !r->member_of_regex)
				why = "{N} in tenant needs match.member_of_regex";
			else if (!why && cap >= NCAP)
				why = "tenant template captures are {0}..{9}";
			else if (!why && cap >= 0 && (size_t)cap > r->group_re_nsub)
				why =
				    "{N} in tenant names a capture group that member_of_regex does not have";
			if (!why)
				i += len;
		} else {
			/* literal text is not lower-cased: it must already be slug text,
			 * and a slug cannot start with '-' or '_' */
			if (!slug_char(t[i]) || (i == 0 && (t[i] == '-' || t[i] == '_')))
				why = "tenant template text must be lower-case letters, digits, '-' or '_'";
			i++;
		}
	}
out:
	if (why) {
		if (ret_why)
			*ret_why = why;
		return -EINVAL;
	}
	return 0;
}

int ids_rules_attrs(const struct ids_rule *rules, size_t nrules, const char *connector, struct ids_strv *out)
{
	struct ids_buf name = {0};
	int r = 0;
	for (size_t i = 0; r >= 0 && i < nrules; i++) {
		const struct ids_rule *rl = &rules[i];
		if (!ids_rule_for_connector(rl, connector))
			continue;
		for (size_t j = 0; r >= 0 && j < rl->nattrs; j++)
			if (!ids_strv_contains(out, rl->attrs[j].name, true))
				r = ids_strv_push(out, rl->attrs[j].name);
		/* {attr.NAME} references in the tenant template */
		for (const char *t = rl->tenant; r >= 0 && t && (t = strchr(t, '{'));) {
			size_t len, alen;
			int cap;
			const char *attr;
			if (parse_placeholder(t, &len, &cap, &attr, &alen)) {
				t++;
				continue;
			}
			if (attr) {
				ids_buf_reset(&name);
				r = ids_buf_add(&name, attr, alen);
				if (r >= 0 && !ids_strv_contains(out, name.p, true))
					r = ids_strv_push(out, name.p);
			}
			t += len;
		}
	}
	ids_buf_free(&name);
	return r < 0 ? r : 0;
}

/* ---------------- evaluation ---------------- */

/* What one rule needs per evaluation, precomputed from the snapshot. */
struct prep {
	const struct ids_rule *r;
	bool broken;	     /* bad template: the rule is skipped (warned once) */
	bool wildcard;	     /* tenant "*" */
	const char *tenant;  /* interned, when the tenant has no placeholder */
	uint64_t *member_of; /* bitmap over groups, NULL when no condition */
	uint64_t *not_member_of;
	uint32_t *re_slot; /* per group: its captures in re_pool, or NONE */
	regmatch_t *re_pool;
	/* A template without {attr.NAME} depends on the group alone: its
	 * tenant per slot, interned, or the invalid slug it gave (re_bad). */
	const char **re_tenant, **re_bad;
	/* the rule's names, interned so that equal names are equal pointers */
	const char **roles, **channels, **groups, **slot_names;
	const char **rv_roles, **rv_channels, **rv_groups;
	const char *name;   /* the rule's name, in d->arena (plans show it) */
	uint32_t self_list; /* the list of this rule alone (d->rule_lists) */
};

struct item {
	struct ids_grant g;
	const char *rule; /* the one rule that added it (before the merge) */
	bool dead;	  /* removed by a revoke */
};

struct eval {
	const struct ids_snapshot *s;
	struct ids_desired_set *d;
	struct prep *preps;
	size_t npreps;
	/* interned tenants and names: string -> index into `interned`, whose
	 * strings live in d->arena (the result points to them) */
	struct ids_strmap names;
	const char **interned;
	size_t ninterned, cap_interned;
	/* member_of lookup: lower-cased id / name / e-mail, and the normalized
	 * DN, of every group -> first entry; entries chain the groups that
	 * share a key (two groups may well be called "Support") */
	struct ids_strmap gkeys;
	uint32_t *entry_group, *entry_next;
	size_t nentries, cap_entries;
	struct ids_arena tmp; /* gkeys' keys, bitmaps, per-rule name arrays */
	struct ids_buf buf;   /* template expansion */
	struct item *items;   /* the current user's grants */
	size_t nitems, cap_items;
	/* every distinct grant list made so far: users whose rules come to
	 * the same grants share one array (open addressing on a hash of the
	 * list; the strings are interned, so pointers are compared) */
	struct shared *shared;
	size_t nshared, cap_shared;
	/* lists of two or more rules: open addressing over indexes into
	 * d->rule_lists (0: empty slot), keyed by the names' pointers — each
	 * rule's name is one pointer (prep.name), so no string is compared */
	uint32_t *lists;
	size_t nlists, cap_lists;
	const char **merged; /* scratch: the names of one merged grant */
	size_t cap_merged;
};

/* A grant list in d->arena that users share. */
struct shared {
	const struct ids_grant *g; /* NULL: empty slot */
	size_t n, alive;	   /* n grants, the first `alive` not revoked */
	uint64_t hash;
};

/* Bitmaps over the snapshot's groups: a member_of condition becomes one
 * bit test per group of the user, whatever the number of names it lists. */
static bool bit_get(const uint64_t *b, uint32_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *b, uint32_t i)
{
	b[i / 64] |= (uint64_t)1 << (i % 64);
}

/* *ret = the interned copy of str, added when new unless lookup_only (then
 * NULL when unknown: nothing can carry that string). */
static int intern(struct eval *ev, const char *str, bool lookup_only, const char **ret)
{
	uint32_t v;
	if (ids_strmap_get(&ev->names, str, &v)) {
		*ret = ev->interned[v];
		return 0;
	}
	*ret = NULL;
	if (lookup_only)
		return 0;
	int r = ids_grow(&ev->interned, &ev->cap_interned, ev->ninterned + 1, sizeof(*ev->interned));
	if (r < 0)
		return r;
	char *c = ids_arena_strdup(&ev->d->arena, str);
	if (!c)
		return -ENOMEM;
	r = ids_strmap_put(&ev->names, c, (uint32_t)ev->ninterned, NULL);
	if (r < 0)
		return r;
	ev->interned[ev->ninterned++] = c;
	*ret = c;
	return 0;
}

/* The rule's names as interned pointers, once per evaluation: per user
 * the grants then copy pointers, and comparisons are pointer equality. */
static int intern_strv(struct eval *ev, const struct ids_strv *sv, const char ***ret)
{
	const char **v = ids_arena_alloc(&ev->tmp, (sv->n ? sv->n : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < sv->n; i++) {
		int r = intern(ev, sv->v[i], false, &v[i]);
		if (r < 0)
			return r;
	}
	*ret = v;
	return 0;
}

/* ---- which rules a grant came from ---- */

const struct ids_rule_list *ids_rule_list_get(const struct ids_rule_list *const *lists, size_t n,
					      uint32_t idx)
{
	return lists && idx > 0 && idx < n ? lists[idx] : NULL;
}

/* Appends a list of names[0..n) (names in d->arena already) to
 * d->rule_lists; *ret_idx its index. */
static int add_list(struct eval *ev, const char *const *names, size_t n, uint32_t *ret_idx)
{
	struct ids_desired_set *d = ev->d;
	if (d->nrule_lists >= UINT32_MAX)
		return -E2BIG;
	int r = ids_grow(&d->rule_lists, &d->cap_rule_lists, d->nrule_lists + 1, sizeof(*d->rule_lists));
	if (r < 0)
		return r;
	struct ids_rule_list *l = ids_arena_alloc(&d->arena, sizeof(*l) + n * sizeof(l->names[0]));
	if (!l)
		return -ENOMEM;
	l->n = n;
	memcpy(l->names, names, n * sizeof(*names));
	*ret_idx = (uint32_t)d->nrule_lists;
	d->rule_lists[d->nrule_lists++] = l;
	return 0;
}

static uint64_t names_hash(const char *const *names, size_t n)
{
	uint64_t h = n * 0x9e3779b97f4a7c15ULL;
	for (size_t i = 0; i < n; i++) {
		h = (h ^ (uintptr_t)names[i]) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

/* Doubles the list table, rehashing what it holds. */
static int lists_grow(struct eval *ev)
{
	size_t cap = ev->cap_lists ? ev->cap_lists * 2 : 64;
	uint32_t *t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < ev->cap_lists; i++) {
		if (!ev->lists[i])
			continue;
		const struct ids_rule_list *l = ev->d->rule_lists[ev->lists[i]];
		size_t j = names_hash(l->names, l->n) & (cap - 1);
		while (t[j])
			j = (j + 1) & (cap - 1);
		t[j] = ev->lists[i];
	}
	free(ev->lists);
	ev->lists = t;
	ev->cap_lists = cap;
	return 0;
}

/* The index of the list names[0..n) (sorted, unique, n >= 2), added the
 * first time: the grants of a million users name a few such lists, and
 * equal lists must be equal indexes for the grant lists to be shared.
 * Runs for every grant that several rules give, so it compares pointers
 * and builds nothing unless the list is new. */
static int intern_list(struct eval *ev, const char *const *names, size_t n, uint32_t *ret_idx)
{
	if ((ev->nlists + 1) * 2 > ev->cap_lists) {
		int r = lists_grow(ev);
		if (r < 0)
			return r;
	}
	size_t j = names_hash(names, n) & (ev->cap_lists - 1);
	for (; ev->lists[j]; j = (j + 1) & (ev->cap_lists - 1)) {
		const struct ids_rule_list *l = ev->d->rule_lists[ev->lists[j]];
		if (l->n == n && memcmp(l->names, names, n * sizeof(*names)) == 0) {
			*ret_idx = ev->lists[j];
			return 0;
		}
	}
	int r = add_list(ev, names, n, ret_idx);
	if (r < 0)
		return r;
	ev->lists[j] = *ret_idx;
	ev->nlists++;
	return 0;
}

/* Appends s[0..n) with ASCII letters lowered (substituted slug text). */
static int put_lower(struct ids_buf *b, const char *s, size_t n)
{
	int r = 0;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		char c = s[i];
		r = ids_buf_putc(b, c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c);
	}
	return r;
}

/* ---- warnings ---- */

/* Appends s with control characters replaced: directory text in a log line. */
static int put_printable(struct ids_buf *b, const char *s)
{
	int r = 0;
	for (; r >= 0 && *s; s++)
		r = ids_buf_putc(b, (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	return r;
}

static int warn_slug(struct eval *ev, const struct ids_user *u, const struct ids_rule *rl, const char *slug)
{
	struct ids_buf w = {0}, q = {0};
	size_t n = ids_utf8_cut(slug, strlen(slug), WARN_SLUG_MAX);
	int r;
	r = ids_buf_add(&q, slug, n);
	if (r >= 0)
		r = ids_buf_puts(&w, "user ");
	if (r >= 0)
		r = put_printable(&w, u->f[IDS_F_USERNAME]);
	if (r >= 0)
		r = ids_buf_puts(&w, ": rule ");
	if (r >= 0)
		r = put_printable(&w, rl->name ? rl->name : "?");
	if (r >= 0)
		r = ids_buf_puts(&w, ": tenant template gave invalid slug ");
	if (r >= 0)
		r = ids_buf_json_str(&w, q.p);
	if (r >= 0 && n < strlen(slug))
		r = ids_buf_puts(&w, "...");
	if (r >= 0)
		r = ids_strv_push(&ev->d->warnings, w.p);
	ids_buf_free(&w);
	ids_buf_free(&q);
	return r;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, unique, capped: the warnings must not depend on rule order and
 * must not flood the log. */
static int finish_warnings(struct ids_strv *w)
{
	if (w->n < 2)
		return 0;
	qsort(w->v, w->n, sizeof(*w->v), cmp_strp);
	size_t k = 1;
	for (size_t i = 1; i < w->n; i++) {
		if (strcmp(w->v[i], w->v[k - 1]) == 0)
			free(w->v[i]);
		else
			w->v[k++] = w->v[i];
	}
	w->n = k;
	if (w->n > MAX_WARNINGS) {
		struct ids_buf b = {0};
		size_t more = w->n - (MAX_WARNINGS - 1);
		if (ids_buf_printf(&b, "... and %zu more warnings", more) < 0)
			return -ENOMEM;
		for (size_t i = MAX_WARNINGS - 1; i < w->n; i++)
			free(w->v[i]);
		w->v[MAX_WARNINGS - 1] = ids_buf_steal(&b);
		w->n = MAX_WARNINGS;
		if (!w->v[w->n - 1]) {
			w->n--;
			w->v[w->n] = NULL;
			return -ENOMEM;
		}
	}
	w->v[w->n] = NULL;
	return 0;
}

/* ---- per-snapshot preparation ---- */

/* Adds group g under key.  A key already present keeps its map entry;
 * g joins that entry's chain instead, so that "Support" names every group
 * called so (member_of must match all of them, not the first loaded). */
static int gkey_add(struct eval *ev, const char *key, uint32_t g)
{
	int r = ids_grow(&ev->entry_group, &ev->cap_entries, ev->nentries + 1, sizeof(uint32_t));
	if (r < 0)
		return r;
	size_t cap = ev->cap_entries;
	/* entry_next grows in step with entry_group */
	uint32_t *next = realloc(ev->entry_next, cap * sizeof(uint32_t));
	if (!next)
		return -ENOMEM;
	ev->entry_next = next;
	uint32_t e = (uint32_t)ev->nentries++, head;
	ev->entry_group[e] = g;
	ev->entry_next[e] = NONE;
	r = ids_strmap_put(&ev->gkeys, key, e, &head);
	if (r == 0) {
		ev->entry_next[e] = ev->entry_next[head];
		ev->entry_next[head] = e;
	}
	return r < 0 ? r : 0;
}

/* A lower-cased copy of s in the tmp arena. */
static char *tmp_lower(struct eval *ev, const char *s)
{
	char *c = ids_arena_strdup(&ev->tmp, s);
	for (char *p = c; p && *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return c;
}

static int build_group_keys(struct eval *ev)
{
	const struct ids_snapshot *s = ev->s;
	for (size_t i = 0; i < s->ngroups; i++) {
		const struct ids_group *g = &s->groups[i];
		const char *keys[4] = {g->id, g->name, g->email, NULL};
		for (size_t k = 0; k < 3; k++) {
			if (!keys[k])
				continue;
			char *c = tmp_lower(ev, keys[k]);
			if (!c)
				return -ENOMEM;
			int r = gkey_add(ev, c, (uint32_t)i);
			if (r < 0)
				return r;
		}
		/* DNs are already normalized (and so lower-case) by the builder */
		if (g->dn) {
			int r = gkey_add(ev, g->dn, (uint32_t)i);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static void mark_key(const struct eval *ev, uint64_t *bm, const char *key)
{
	uint32_t e;
	if (!ids_strmap_get(&ev->gkeys, key, &e))
		return;
	for (; e != NONE; e = ev->entry_next[e])
		bit_set(bm, ev->entry_group[e]);
}

/* The groups any of refs names: by id, name or e-mail (case-insensitive)
 * or, when the ref parses as a DN, by normalized DN. */
static int ref_bitmap(struct eval *ev, const struct ids_strv *refs, uint64_t **ret)
{
	size_t words = (ev->s->ngroups + 63) / 64;
	uint64_t *bm = ids_arena_alloc(&ev->tmp, (words ? words : 1) * sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	for (size_t i = 0; i < refs->n; i++) {
		char *low = ids_strdup_lower(refs->v[i]), *dn = NULL;
		if (!low)
			return -ENOMEM;
		mark_key(ev, bm, low);
		free(low);
		int r = ids_dn_normalize(refs->v[i], strlen(refs->v[i]), &dn);
		if (r == -ENOMEM)
			return r;
		/* "CC-Support" is no DN; "cn=x" both a possible name and a DN */
		if (r == 0 && *dn)
			mark_key(ev, bm, dn);
		free(dn);
	}
	*ret = bm;
	return 0;
}

/* A linear scan: a user carries the handful of attributes the rules read
 * (ids_rules_attrs), fewer than a map would pay off for. */
static const struct ids_attr *user_attr(const struct ids_user *u, const char *name, size_t n)
{
	for (size_t i = 0; i < u->nattrs; i++)
		if (strncasecmp(u->attrs[i].name, name, n) == 0 && u->attrs[i].name[n] == '\0')
			return &u->attrs[i];
	return NULL;
}

/* Expands the rule's tenant template into ev->buf for user u and the group
 * name gname whose captures are pm (both NULL without member_of_regex;
 * u NULL when the template reads no attribute).  The template was checked
 * by prepare_rule. */
static int expand(struct eval *ev, const struct ids_rule *rl, const struct ids_user *u, const char *gname,
		  const regmatch_t *pm)
{
	const char *t = rl->tenant;
	int r;
	ids_buf_reset(&ev->buf);
	r = ids_buf_add(&ev->buf, "", 0);
	while (r >= 0 && *t) {
		size_t len, alen;
		int cap;
		const char *attr;
		if (*t != '{' || parse_placeholder(t, &len, &cap, &attr, &alen)) {
			r = ids_buf_putc(&ev->buf, *t++);
			continue;
		}
		if (attr) {
			const struct ids_attr *a = u ? user_attr(u, attr, alen) : NULL;
			if (a && a->nvalues)
				r = put_lower(&ev->buf, a->values[0], strlen(a->values[0]));
		} else if (pm && gname && cap < NCAP && pm[cap].rm_so >= 0) {
			r = put_lower(&ev->buf, gname + pm[cap].rm_so,
				      (size_t)(pm[cap].rm_eo - pm[cap].rm_so));
		}
		t += len;
	}
	return r;
}

/* Which groups member_of_regex matches, with their captures.  Run once
 * per group, not per user and group: a directory has thousands of groups
 * but a million memberships.  A tenant template without {attr.} depends on
 * the group alone, so it is expanded here too. */
static int regex_slots(struct eval *ev, struct prep *p, size_t *cap_pool)
{
	const struct ids_snapshot *s = ev->s;
	size_t n = 0;
	p->re_slot = ids_arena_alloc(&ev->tmp, (s->ngroups ? s->ngroups : 1) * sizeof(uint32_t));
	if (!p->re_slot)
		return -ENOMEM;
	for (size_t g = 0; g < s->ngroups; g++) {
		regmatch_t pm[NCAP];
		p->re_slot[g] = NONE;
		if (!s->groups[g].name)
			continue;
		/* preset: a regex compiled with REG_NOSUB fills nothing */
		for (size_t k = 0; k < NCAP; k++)
			pm[k].rm_so = pm[k].rm_eo = -1;
		if (regexec(&p->r->group_re, s->groups[g].name, NCAP, pm, 0) != 0)
			continue;
		int r = ids_grow(&p->re_pool, cap_pool, (n + 1) * NCAP, sizeof(*p->re_pool));
		if (r < 0)
			return r;
		memcpy(p->re_pool + n * NCAP, pm, sizeof(pm));
		p->re_slot[g] = (uint32_t)n++;
	}
	const char *t = p->r->tenant;
	if (!t || p->wildcard || strstr(t, "{attr.") || !n)
		return 0;
	p->re_tenant = ids_arena_alloc(&ev->tmp, n * sizeof(char *));
	p->re_bad = ids_arena_alloc(&ev->tmp, n * sizeof(char *));
	if (!p->re_tenant || !p->re_bad)
		return -ENOMEM;
	for (size_t g = 0; g < s->ngroups; g++) {
		uint32_t slot = p->re_slot[g];
		if (slot == NONE)
			continue;
		int r = expand(ev, p->r, NULL, s->groups[g].name, p->re_pool + (size_t)slot * NCAP);
		if (r < 0)
			return r;
		/* a bad slug is reported per user (the warning names the user) */
		if (!ids_slug_valid(ev->buf.p))
			p->re_bad[slot] = ids_arena_strdup(&ev->tmp, ev->buf.p);
		else
			r = intern(ev, ev->buf.p, false, &p->re_tenant[slot]);
		if (r < 0 || (!p->re_bad[slot] && !p->re_tenant[slot]))
			return -ENOMEM;
	}
	return 0;
}

static int prepare_rule(struct eval *ev, const struct ids_rule *rl, struct prep *p)
{
	const char *why = NULL;
	int r;
	p->r = rl;
	p->name = ids_arena_strdup(&ev->d->arena, rl->name ? rl->name : "?");
	if (!p->name)
		return -ENOMEM;
	if ((r = add_list(ev, &p->name, 1, &p->self_list)) < 0)
		return r;
	if (ids_rule_check_template(rl, &why) < 0) {
		/* the config check should have refused it: skip the rule, loudly */
		struct ids_buf w = {0};
		p->broken = true;
		r = ids_buf_printf(&w, "rule %s: %s: rule skipped", rl->name ? rl->name : "?", why);
		if (r >= 0)
			r = ids_strv_push(&ev->d->warnings, w.p);
		ids_buf_free(&w);
		return r;
	}
	for (size_t i = 0; i < rl->nattrs; i++)
		if (!rl->attrs[i].pattern)
			p->broken = true; /* an uncompiled regex cannot be run */
	p->wildcard = rl->tenant && strcmp(rl->tenant, "*") == 0;
	if (rl->tenant && !p->wildcard && !strchr(rl->tenant, '{') &&
	    (r = intern(ev, rl->tenant, false, &p->tenant)) < 0)
		return r;
	if (rl->member_of.n && (r = ref_bitmap(ev, &rl->member_of, &p->member_of)) < 0)
		return r;
	if (rl->not_member_of.n && (r = ref_bitmap(ev, &rl->not_member_of, &p->not_member_of)) < 0)
		return r;
	size_t cap_pool = 0;
	if (rl->member_of_regex && (r = regex_slots(ev, p, &cap_pool)) < 0)
		return r;
	p->slot_names = ids_arena_alloc(&ev->tmp, (rl->nslots ? rl->nslots : 1) * sizeof(char *));
	if (!p->slot_names)
		return -ENOMEM;
	for (size_t i = 0; i < rl->nslots; i++)
		if ((r = intern(ev, rl->slots[i].channel_group, false, &p->slot_names[i])) < 0)
			return r;
	if ((r = intern_strv(ev, &rl->roles, &p->roles)) < 0 ||
	    (r = intern_strv(ev, &rl->channels, &p->channels)) < 0 ||
	    (r = intern_strv(ev, &rl->groups, &p->groups)) < 0 ||
	    (r = intern_strv(ev, &rl->revoke_roles, &p->rv_roles)) < 0 ||
	    (r = intern_strv(ev, &rl->revoke_channels, &p->rv_channels)) < 0 ||
	    (r = intern_strv(ev, &rl->revoke_groups, &p->rv_groups)) < 0)
		return r;
	return 0;
}

static int prepare(struct eval *ev, const struct ids_rule *rules, size_t nrules, const char *connector)
{
	/* the group keys cost a lower-cased copy of every group's id, name and
	 * e-mail: built only when some rule has a member_of to look up */
	bool need_keys = false;
	for (size_t i = 0; i < nrules; i++)
		if (ids_rule_for_connector(&rules[i], connector))
			need_keys |= rules[i].member_of.n || rules[i].not_member_of.n;
	if (need_keys) {
		int r = build_group_keys(ev);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < nrules; i++) {
		if (!ids_rule_for_connector(&rules[i], connector))
			continue;
		int r = prepare_rule(ev, &rules[i], &ev->preps[ev->npreps++]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- per user ---- */

static bool any_group(const uint64_t *bm, const struct ids_user *u)
{
	for (size_t i = 0; i < u->ngroups; i++)
		if (bit_get(bm, u->groups[i]))
			return true;
	return false;
}

/* Every condition but member_of_regex (which also yields the grant sets). */
static bool match_common(const struct prep *p, const struct ids_user *u)
{
	const struct ids_rule *rl = p->r;
	if (p->member_of && !any_group(p->member_of, u))
		return false;
	if (p->not_member_of && any_group(p->not_member_of, u))
		return false;
	for (size_t i = 0; i < rl->nattrs; i++) {
		const struct ids_attr *a = user_attr(u, rl->attrs[i].name, strlen(rl->attrs[i].name));
		bool hit = false;
		for (size_t j = 0; a && !hit && j < a->nvalues; j++)
			hit = regexec(&rl->attrs[i].re, a->values[j], 0, NULL, 0) == 0;
		if (!hit)
			return false;
	}
	return true;
}

/* The tenant of one grant set (g: the matching group, NONE without
 * member_of_regex), interned; NULL (with a warning) when the template gave
 * no valid slug, or for a revoke when no grant can be in it. */
static int set_tenant(struct eval *ev, const struct prep *p, const struct ids_user *u, uint32_t g,
		      bool lookup_only, const char **ret)
{
	uint32_t slot = g == NONE ? NONE : p->re_slot[g];
	*ret = p->tenant;
	if (p->tenant)
		return 0;
	if (slot != NONE && p->re_tenant) {
		*ret = p->re_tenant[slot];
		return p->re_bad[slot] ? warn_slug(ev, u, p->r, p->re_bad[slot]) : 0;
	}
	int r = expand(ev, p->r, u, slot == NONE ? NULL : ev->s->groups[g].name,
		       slot == NONE ? NULL : p->re_pool + (size_t)slot * NCAP);
	if (r < 0)
		return r;
	if (!ids_slug_valid(ev->buf.p))
		return warn_slug(ev, u, p->r, ev->buf.p);
	return intern(ev, ev->buf.p, lookup_only, ret);
}

/* Collects one grant of the current user with the rule that gave it;
 * duplicates are fine here, merge_items() folds them. */
static int add_item(struct eval *ev, const struct prep *p, enum ids_grant_kind k, const char *tenant,
		    const char *name, int slots)
{
	int r = ids_grow(&ev->items, &ev->cap_items, ev->nitems + 1, sizeof(*ev->items));
	if (r < 0)
		return r;
	ev->items[ev->nitems++] = (struct item){{k, tenant, name, slots, p->self_list}, p->name, false};
	return 0;
}

/* One grant set of a matching grant rule; *added counts the grants. */
static int grant_set(struct eval *ev, const struct prep *p, const struct ids_user *u, uint32_t g,
		     size_t *added)
{
	const struct ids_rule *rl = p->r;
	const char *tenant;
	int r = 0;
	if (!rl->tenant || p->wildcard)
		return 0;
	r = set_tenant(ev, p, u, g, false, &tenant);
	if (r < 0 || !tenant)
		return r;
	for (size_t i = 0; r >= 0 && i < rl->roles.n; i++)
		r = add_item(ev, p, IDS_GRANT_ROLE, tenant, p->roles[i], 0);
	for (size_t i = 0; r >= 0 && i < rl->channels.n; i++)
		r = add_item(ev, p, IDS_GRANT_CHANNEL, tenant, p->channels[i], 0);
	for (size_t i = 0; r >= 0 && i < rl->groups.n; i++)
		r = add_item(ev, p, IDS_GRANT_GROUP, tenant, p->groups[i], 0);
	for (size_t i = 0; r >= 0 && i < rl->nslots; i++)
		r = add_item(ev, p, IDS_GRANT_SLOT, tenant, p->slot_names[i], rl->slots[i].slots);
	*added += rl->roles.n + rl->channels.n + rl->groups.n + rl->nslots;
	return r;
}

static int cmp_item(const void *a, const void *b)
{
	const struct ids_grant *x = &((const struct item *)a)->g, *y = &((const struct item *)b)->g;
	/* interned strings: equal pointers are equal strings (most compares) */
	int c = x->tenant == y->tenant ? 0 : strcmp(x->tenant, y->tenant);
	if (c)
		return c;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	c = x->name == y->name ? 0 : strcmp(x->name, y->name);
	if (c)
		return c;
	/* equal keys are merged after the sort: the largest slot value
	 * first, then by rule name, so that the merged grant names its rules
	 * in an order that depends on neither qsort nor the rules' order */
	if (x->slots != y->slots)
		return x->slots > y->slots ? -1 : 1;
	const char *rx = ((const struct item *)a)->rule, *ry = ((const struct item *)b)->rule;
	return rx == ry ? 0 : strcmp(rx, ry);
}

static bool same_key(const struct ids_grant *a, const struct ids_grant *b)
{
	return a->kind == b->kind && a->tenant == b->tenant && a->name == b->name;
}

/* The rules of the merged grant items[lo..hi) (equal keys, sorted):
 * those that gave its value — every one of them, except for a slot, where
 * only the rules giving the maximum count (the others did not decide it). */
static int merge_rules(struct eval *ev, size_t lo, size_t hi, uint32_t *ret)
{
	size_t n = 0;
	int r = ids_grow(&ev->merged, &ev->cap_merged, hi - lo, sizeof(*ev->merged));
	if (r < 0)
		return r;
	for (size_t i = lo; i < hi && ev->items[i].g.slots == ev->items[lo].g.slots; i++)
		/* one rule may add a grant twice (two groups, one tenant) */
		if (!n || ev->merged[n - 1] != ev->items[i].rule)
			ev->merged[n++] = ev->items[i].rule;
	if (n == 1) {
		*ret = ev->items[lo].g.rules;
		return 0;
	}
	return intern_list(ev, ev->merged, n, ret);
}

/* Sorts the user's grants and merges equal ones: union, slots the maximum,
 * and the rules that gave them. */
static int merge_items(struct eval *ev)
{
	if (ev->nitems < 2)
		return 0;
	qsort(ev->items, ev->nitems, sizeof(*ev->items), cmp_item);
	size_t k = 0;
	for (size_t i = 0; i < ev->nitems;) {
		size_t j = i + 1;
		while (j < ev->nitems && same_key(&ev->items[i].g, &ev->items[j].g))
			j++;
		ev->items[k] = ev->items[i];
		if (j - i > 1) {
			int r = merge_rules(ev, i, j, &ev->items[k].g.rules);
			if (r < 0)
				return r;
		}
		k++;
		i = j;
	}
	ev->nitems = k;
	return 0;
}

/* Marks item it revoked by rule p: from then on its `rules` name the
 * revoke rules that took it away — all of them, sorted by name, so that
 * the result does not depend on which revoke came first. */
static int revoked_by(struct eval *ev, struct item *it, const struct prep *p)
{
	if (!it->dead) {
		it->dead = true;
		it->g.rules = p->self_list;
		return 0;
	}
	const struct ids_rule_list *l = ev->d->rule_lists[it->g.rules];
	size_t n = 0;
	int r = ids_grow(&ev->merged, &ev->cap_merged, l->n + 1, sizeof(*ev->merged));
	if (r < 0)
		return r;
	for (size_t i = 0; i < l->n; i++) {
		if (l->names[i] == p->name) /* the same rule again (another group) */
			return 0;
		if (n == i && strcmp(p->name, l->names[i]) < 0)
			ev->merged[n++] = p->name;
		ev->merged[n++] = l->names[i];
	}
	if (n == l->n)
		ev->merged[n++] = p->name;
	return intern_list(ev, ev->merged, n, &it->g.rules);
}

/* Removes what revoke rule p names from tenant (every tenant when NULL). */
static int revoke_in(struct eval *ev, const struct prep *p, const char *tenant)
{
	const struct ids_rule *rl = p->r;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < ev->nitems; i++) {
		struct item *it = &ev->items[i];
		const char **names;
		size_t n;
		bool hit = false;
		if (tenant && it->g.tenant != tenant)
			continue;
		switch (it->g.kind) {
		case IDS_GRANT_ROLE: names = p->rv_roles, n = rl->revoke_roles.n; break;
		case IDS_GRANT_CHANNEL: names = p->rv_channels, n = rl->revoke_channels.n; break;
		case IDS_GRANT_GROUP: names = p->rv_groups, n = rl->revoke_groups.n; break;
		default: continue; /* slots have no revoke */
		}
		/* interned: one name, one pointer */
		for (size_t j = 0; j < n && !hit; j++)
			hit = names[j] == it->g.name;
		if (hit)
			r = revoked_by(ev, it, p);
	}
	return r;
}

/* A revoke looks its tenant up without interning it (lookup_only): a
 * tenant no grant of this run names cannot hold anything to revoke, and
 * interning it would grow the desired set for nothing. */
static int apply_revoke(struct eval *ev, const struct prep *p, const struct ids_user *u)
{
	const struct ids_rule *rl = p->r;
	const char *tenant;
	int r = 0;
	if (!rl->tenant)
		return 0;
	if (p->re_slot) {
		/* one revoke set per matching group, like the grants */
		for (size_t i = 0; r >= 0 && i < u->ngroups; i++) {
			uint32_t g = u->groups[i], slot = p->re_slot[g];
			if (slot == NONE)
				continue;
			if (p->wildcard) {
				r = revoke_in(ev, p, NULL);
				break;
			}
			r = set_tenant(ev, p, u, g, true, &tenant);
			if (r >= 0 && tenant)
				r = revoke_in(ev, p, tenant);
		}
		return r;
	}
	if (p->wildcard)
		return revoke_in(ev, p, NULL);
	r = set_tenant(ev, p, u, NONE, true, &tenant);
	if (r >= 0 && tenant)
		r = revoke_in(ev, p, tenant);
	return r;
}

/* Hashes the pointers, not the strings: every string of a grant list is
 * interned, so equal lists have equal pointers and hashing stays cheap. */
static uint64_t list_hash(const struct item *it, size_t n)
{
	uint64_t h = n * 0x9e3779b97f4a7c15ULL;
	for (size_t i = 0; i < n; i++) {
		const struct ids_grant *g = &it[i].g;
		uint64_t v[4] = {(uintptr_t)g->tenant, (uintptr_t)g->name,
				 (uint64_t)g->kind << 32 | (uint32_t)g->slots, g->rules};
		for (int k = 0; k < 4; k++) {
			h = (h ^ v[k]) * 0x100000001b3ULL;
			h ^= h >> 29;
		}
	}
	return h;
}

static bool list_equal(const struct ids_grant *a, const struct item *it, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct ids_grant *b = &it[i].g;
		if (a[i].kind != b->kind || a[i].tenant != b->tenant || a[i].name != b->name ||
		    a[i].slots != b->slots || a[i].rules != b->rules)
			return false;
	}
	return true;
}

/* The desired grants of a user: items[0..n) in d->arena, shared with every
 * earlier user that came to the same list.  A directory of a million
 * people has a few thousand distinct grant lists (tenant x role mix), so
 * this keeps the desired state at a few megabytes instead of hundreds. */
static int share(struct eval *ev, size_t n, size_t alive, struct ids_grant **ret)
{
	uint64_t h = list_hash(ev->items, n);
	if ((ev->nshared + 1) * 2 > ev->cap_shared) {
		size_t cap = ev->cap_shared ? ev->cap_shared * 2 : 256;
		struct shared *t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < ev->cap_shared; i++) {
			if (!ev->shared[i].g)
				continue;
			size_t j = ev->shared[i].hash & (cap - 1);
			while (t[j].g)
				j = (j + 1) & (cap - 1);
			t[j] = ev->shared[i];
		}
		free(ev->shared);
		ev->shared = t;
		ev->cap_shared = cap;
	}
	size_t j = h & (ev->cap_shared - 1);
	for (; ev->shared[j].g; j = (j + 1) & (ev->cap_shared - 1)) {
		const struct shared *e = &ev->shared[j];
		if (e->hash == h && e->n == n && e->alive == alive && list_equal(e->g, ev->items, n)) {
			/* read-only for everyone (rules.h) */
			*ret = (struct ids_grant *)e->g;
			return 0;
		}
	}
	struct ids_grant *g = ids_arena_alloc(&ev->d->arena, n * sizeof(*g));
	if (!g)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		g[i] = ev->items[i].g;
	ev->shared[j] = (struct shared){g, n, alive, h};
	ev->nshared++;
	*ret = g;
	return 0;
}

/* The survivors at the front of items, the revoked after them, each in
 * key order (the diff walks both along the current rows); *ret_alive how
 * many survived. */
static int partition_revoked(struct eval *ev, size_t *ret_alive)
{
	size_t n = ev->nitems, alive = 0, dead = 0;
	int r = ids_grow(&ev->items, &ev->cap_items, 2 * n, sizeof(*ev->items));
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (ev->items[i].dead)
			ev->items[n + dead++] = ev->items[i];
		else
			ev->items[alive++] = ev->items[i];
	}
	if (dead)
		memmove(ev->items + alive, ev->items + n, dead * sizeof(*ev->items));
	*ret_alive = alive;
	return 0;
}

static int eval_user(struct eval *ev, const struct ids_user *u, struct ids_desired *out)
{
	bool in_scope = false, admin = false;
	int r = 0;
	ev->nitems = 0;
	/* grants first: every matching non-revoke rule */
	for (size_t i = 0; r >= 0 && i < ev->npreps; i++) {
		const struct prep *p = &ev->preps[i];
		size_t added = 0;
		if (p->broken || p->r->revoke || !match_common(p, u))
			continue;
		if (p->re_slot) {
			/* member_of_regex: one grant set per matching group, none = no match */
			bool any = false;
			for (size_t k = 0; r >= 0 && k < u->ngroups; k++) {
				uint32_t g = u->groups[k], slot = p->re_slot[g];
				if (slot == NONE)
					continue;
				any = true;
				r = grant_set(ev, p, u, g, &added);
			}
			if (!any)
				continue;
		} else {
			r = grant_set(ev, p, u, NONE, &added);
		}
		admin |= p->r->company_admin;
		in_scope |= added > 0 || p->r->company_admin;
	}
	if (r >= 0)
		r = merge_items(ev);
	if (r < 0)
		return r;
	/* then every matching revoke rule, against the merged grants */
	for (size_t i = 0; r >= 0 && i < ev->npreps; i++) {
		const struct prep *p = &ev->preps[i];
		if (!p->broken && p->r->revoke && match_common(p, u))
			r = apply_revoke(ev, p, u);
	}
	if (r < 0)
		return r;
	size_t alive;
	if ((r = partition_revoked(ev, &alive)) < 0)
		return r;
	/* in scope is decided before the revokes: a user whose grants are all
	 * revoked is still someone the rules manage (deactivating them would
	 * be a revoke rule doing what only a scope change may) */
	out->in_scope = in_scope;
	out->company_admin = admin;
	out->ngrants = 0;
	out->nrevoked = 0;
	out->grants = NULL;
	if (!ev->nitems)
		return 0;
	r = share(ev, ev->nitems, alive, &out->grants);
	if (r >= 0) {
		out->ngrants = alive;
		out->nrevoked = (uint32_t)(ev->nitems - alive);
	}
	return r;
}

/* Frees the evaluation's scratch; what the result points to lives in
 * d->arena and stays. */
static void eval_free(struct eval *ev)
{
	for (size_t i = 0; i < ev->npreps; i++)
		free(ev->preps[i].re_pool);
	free(ev->preps);
	ids_strmap_free(&ev->names);
	free(ev->interned);
	ids_strmap_free(&ev->gkeys);
	free(ev->entry_group);
	free(ev->entry_next);
	ids_arena_free(&ev->tmp);
	ids_buf_free(&ev->buf);
	free(ev->items);
	free(ev->shared);
	free(ev->lists);
	free(ev->merged);
}

int ids_rules_eval(const struct ids_rule *rules, size_t nrules, const char *connector,
		   const struct ids_snapshot *s, struct ids_desired_set **ret)
{
	return ids_rules_eval_some(rules, nrules, connector, s, NULL, ret);
}

int ids_rules_eval_some(const struct ids_rule *rules, size_t nrules, const char *connector,
			const struct ids_snapshot *s, const bool *want, struct ids_desired_set **ret)
{
	struct eval ev = {0};
	struct ids_desired_set *d = NULL;
	int r;

	if (!s || (!rules && nrules))
		return -EINVAL;
	r = -ENOMEM;
	d = calloc(1, sizeof(*d));
	ev.preps = calloc(nrules ? nrules : 1, sizeof(*ev.preps));
	if (!d || !ev.preps)
		goto out;
	d->nusers = s->nusers;
	if (s->nusers) {
		/* zeroed: invalid users stay empty and out of scope */
		d->users = ids_arena_alloc(&d->arena, s->nusers * sizeof(*d->users));
		if (!d->users)
			goto out;
	}
	ev.s = s;
	ev.d = d;
	/* rule list 0 is "no rule" */
	r = ids_grow(&d->rule_lists, &d->cap_rule_lists, 1, sizeof(*d->rule_lists));
	if (r < 0)
		goto out;
	d->rule_lists[d->nrule_lists++] = NULL;
	r = prepare(&ev, rules, nrules, connector);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < s->nusers; i++) {
		if (s->users[i].invalid || (want && !want[i]))
			continue;
		r = eval_user(&ev, &s->users[i], &d->users[i]);
		if (r < 0)
			goto out;
	}
	r = finish_warnings(&d->warnings);
	if (r < 0)
		goto out;
	*ret = d;
	d = NULL;
	r = 0;
out:
	eval_free(&ev);
	ids_desired_set_free(d);
	return r;
}

void ids_desired_set_free(struct ids_desired_set *d)
{
	if (!d)
		return;
	ids_strv_free(&d->warnings);
	free(d->rule_lists);
	ids_arena_free(&d->arena);
	free(d);
}
