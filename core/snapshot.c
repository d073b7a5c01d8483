/* snapshot.c — the snapshot builder, member resolution and the transitive
 * closure of nested groups (snapshot.h).
 *
 * Sized for 100k users, 20k groups and millions of memberships: member
 * references are interned (each distinct DN / id / username is stored and
 * resolved once), memberships are two uint32 indices, lookups go through
 * hash maps, and each group's ancestor set is computed once per strongly
 * connected component of the group graph (Tarjan), so cycles terminate and
 * no user walks the graph on its own. */
#include "ids/snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ids/util.h"
#include "ids/dn.h"

#include "snapshot_int.h"

static const char *const field_names[IDS_F__COUNT] = {
    [IDS_F_EXTERNAL_ID] = "external_id",
    [IDS_F_USERNAME] = "username",
    [IDS_F_EMAIL] = "email",
    [IDS_F_FIRST_NAME] = "first_name",
    [IDS_F_LAST_NAME] = "last_name",
    [IDS_F_DISPLAY_NAME] = "display_name",
    [IDS_F_DN] = "dn",
};

int ids_snapshot_new(struct ids_snapshot **ret)
{
	struct ids_snapshot *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->priv = calloc(1, sizeof(*s->priv));
	if (!s->priv) {
		free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

/* Everything only the builder needs; finish() calls it once done. */
static void free_build_state(struct ids_snapshot_priv *p)
{
	for (size_t i = 0; i < p->cap_tattrs; i++)
		free(p->tattrs[i].vals);
	free(p->tattrs);
	p->tattrs = NULL;
	p->ntattrs = p->cap_tattrs = 0;
	ids_strpool_free(&p->anames);
	ids_strpool_free(&p->avalues);
	free(p->members);
	p->members = NULL;
	p->nmembers = p->cap_members = 0;
	free(p->refs);
	p->refs = NULL;
	p->nrefs = p->cap_refs = 0;
	for (size_t i = 0; i < 3; i++)
		ids_strmap_free(&p->refmap[i]);
	ids_strmap_free(&p->rawdn);
	ids_arena_free(&p->rawtmp);
	ids_buf_free(&p->pend_buf);
	free(p->pend_off);
	p->pend_off = NULL;
	p->npend = p->cap_pend = 0;
	free(p->gids);
	p->gids = NULL;
	p->ngids = p->cap_gids = 0;
	ids_strmap_free(&p->gidmap);
	ids_buf_free(&p->scratch);
	ids_arena_free(&p->tmp);
	free(p->binv);
	p->binv = NULL;
	p->cap_binv = 0;
	free(p->pmem);
	p->pmem = NULL;
	p->npmem = p->cap_pmem = 0;
}

void ids_snapshot_free(struct ids_snapshot *s)
{
	if (!s)
		return;
	if (s->priv) {
		free_build_state(s->priv);
		snap_keep_free(s->priv->keep, s->ngroups);
		ids_arena_free(&s->priv->arena);
		ids_arena_free(&s->priv->garena);
		free(s->priv);
	}
	free(s->users);
	free(s->groups);
	free(s);
}

/* NULL when v[0..n) is acceptable as a field value, else why not. */
static const char *value_problem(const char *v, size_t n)
{
	if (memchr(v, '\0', n))
		return "contains a NUL byte";
	if (!ids_utf8_valid(v, n))
		return "not valid UTF-8";
	if (n > IDS_FIELD_MAX)
		return "longer than 1024 bytes";
	return NULL;
}

/* Marks u invalid with "what" or "field: what"; the first reason wins. */
int snap_set_invalid(struct ids_snapshot *s, struct ids_user *u, const char *field, const char *what)
{
	if (u->invalid)
		return 0;
	size_t fl = field ? strlen(field) + 2 : 0, wl = strlen(what);
	char *m = ids_arena_alloc(&s->priv->arena, fl + wl + 1);
	if (!m)
		return -ENOMEM;
	if (field) {
		memcpy(m, field, fl - 2);
		memcpy(m + fl - 2, ": ", 2);
	}
	memcpy(m + fl, what, wl + 1);
	u->invalid = m;
	return 0;
}

static struct ids_user *open_user(struct ids_snapshot *s)
{
	return s->priv->user_open ? &s->users[s->nusers - 1] : NULL;
}

static struct ids_group *open_group(struct ids_snapshot *s)
{
	return s->priv->group_open ? &s->groups[s->ngroups - 1] : NULL;
}

static bool building(const struct ids_snapshot *s)
{
	return s && !s->priv->started && !s->priv->user_open && !s->priv->group_open;
}

/* ---------------- users ---------------- */

int ids_snapshot_user_begin(struct ids_snapshot *s)
{
	if (!building(s))
		return -EINVAL;
	if (s->nusers >= MAX_RECORDS)
		return -E2BIG;
	int r = ids_grow(&s->users, &s->priv->ucap, s->nusers + 1, sizeof(*s->users));
	if (r < 0)
		return r;
	s->users[s->nusers++] = (struct ids_user){0};
	s->priv->ntattrs = 0;
	s->priv->user_open = true;
	return 0;
}

static int dn_seen(struct ids_snapshot_priv *p, const char *raw, size_t n, const char *norm, uint32_t target);

/* ids_snapshot_user_set; lasting: v[n] is a NUL that ends a string which
 * outlives s, kept by pointer when it is stored as given. */
static int user_set(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n, bool lasting)
{
	struct ids_user *u = s ? open_user(s) : NULL;
	if (!u || (unsigned)f >= IDS_F__COUNT || (!v && n))
		return -EINVAL;
	/* multi-valued directory attributes: the first value is the one */
	if (u->f[f] || n == 0)
		return 0;
	const char *why = value_problem(v, n);
	if (why)
		return snap_set_invalid(s, u, field_names[f], why);
	if (f == IDS_F_DN) {
		/* kept normalized: member values are compared against it */
		char *dn = NULL;
		int r = ids_dn_normalize(v, n, &dn);
		if (r == -EINVAL)
			return snap_set_invalid(s, u, "dn", "not a valid DN");
		if (r < 0)
			return r;
		u->f[f] = lasting && !strcmp(dn, v) ? v : ids_arena_strdup(&s->priv->arena, dn);
		/* groups name their members by this DN, mostly spelled the
		 * same: known now, it is not normalized again there */
		int rr =
		    u->f[f] ? dn_seen(s->priv, v, n, u->f[f], REF_USER | (uint32_t)(s->nusers - 1)) : -ENOMEM;
		free(dn);
		return rr < 0 ? rr : 0;
	} else {
		u->f[f] = lasting ? v : ids_arena_strndup(&s->priv->arena, v, n);
	}
	return u->f[f] ? 0 : -ENOMEM;
}

int ids_snapshot_user_set(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n)
{
	return user_set(s, f, v, n, false);
}

int ids_snapshot_user_set_lasting(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n)
{
	if (v && v[n] != '\0')
		return -EINVAL;
	return user_set(s, f, v, n, true);
}

int ids_snapshot_user_attr(struct ids_snapshot *s, const char *name, const char *v, size_t n)
{
	struct ids_snapshot_priv *p = s ? s->priv : NULL;
	if (!s || !open_user(s) || !name || !*name || (!v && n))
		return -EINVAL;
	/* a value a regex cannot see whole is not matched; the user stays valid */
	if (!ids_utf8_valid(v, n))
		return 0;
	struct attr_tmp *a = NULL;
	for (size_t i = 0; i < p->ntattrs && !a; i++)
		if (ids_strcasecmp0(p->tattrs[i].name, name) == 0)
			a = &p->tattrs[i];
	if (!a) {
		size_t old = p->cap_tattrs;
		int r = ids_grow(&p->tattrs, &p->cap_tattrs, p->ntattrs + 1, sizeof(*p->tattrs));
		if (r < 0)
			return r;
		/* value arrays are reused from user to user: zero only new slots */
		memset(p->tattrs + old, 0, (p->cap_tattrs - old) * sizeof(*p->tattrs));
		a = &p->tattrs[p->ntattrs];
		a->name = ids_strpool_intern(&p->anames, &p->arena, name);
		if (!a->name)
			return -ENOMEM;
		a->n = 0;
		p->ntattrs++;
	}
	int r = ids_grow(&a->vals, &a->cap, a->n + 1, sizeof(*a->vals));
	if (r < 0)
		return r;
	/* department, employeeType, title: a few values for a million users */
	if (n <= 64 && !memchr(v, '\0', n) && p->avalues.n < VPOOL_MAX) {
		ids_buf_reset(&p->scratch);
		if ((r = ids_buf_add(&p->scratch, v, n)) < 0)
			return r;
		a->vals[a->n] = ids_strpool_intern(&p->avalues, &p->arena, p->scratch.p);
	} else {
		a->vals[a->n] = ids_arena_strndup(&p->arena, v, n);
	}
	if (!a->vals[a->n])
		return -ENOMEM;
	a->n++;
	return 0;
}

int ids_snapshot_user_disabled(struct ids_snapshot *s, bool disabled)
{
	struct ids_user *u = s ? open_user(s) : NULL;
	if (!u)
		return -EINVAL;
	u->disabled = disabled;
	return 0;
}

int ids_snapshot_user_invalid(struct ids_snapshot *s, const char *why)
{
	struct ids_user *u = s ? open_user(s) : NULL;
	if (!u || !why)
		return -EINVAL;
	return snap_set_invalid(s, u, NULL, why);
}

int ids_snapshot_user_end(struct ids_snapshot *s)
{
	struct ids_user *u = s ? open_user(s) : NULL;
	struct ids_snapshot_priv *p = s ? s->priv : NULL;
	if (!u)
		return -EINVAL;
	if (p->ntattrs) {
		/* freeze the attributes into the arena: the array and every
		 * value pointer in one block */
		size_t nvals = 0;
		for (size_t i = 0; i < p->ntattrs; i++)
			nvals += p->tattrs[i].n;
		u->attrs =
		    ids_arena_alloc(&p->arena, p->ntattrs * sizeof(*u->attrs) + nvals * sizeof(const char *));
		if (!u->attrs)
			return -ENOMEM;
		const char **vals = (const char **)(u->attrs + p->ntattrs);
		for (size_t i = 0; i < p->ntattrs; i++) {
			struct attr_tmp *a = &p->tattrs[i];
			memcpy(vals, a->vals, a->n * sizeof(*vals));
			u->attrs[i] = (struct ids_attr){a->name, vals, a->n};
			vals += a->n;
		}
		u->nattrs = p->ntattrs;
	}
	p->ntattrs = 0;
	p->user_open = false;
	return 0;
}

/* ---------------- groups and memberships ---------------- */

int ids_snapshot_group_begin(struct ids_snapshot *s)
{
	if (!building(s))
		return -EINVAL;
	if (s->ngroups >= MAX_RECORDS)
		return -E2BIG;
	int r = ids_grow(&s->groups, &s->priv->gcap, s->ngroups + 1, sizeof(*s->groups));
	if (r < 0)
		return r;
	s->groups[s->ngroups++] = (struct ids_group){0};
	s->priv->group_open = true;
	return 0;
}

int ids_snapshot_group_set(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n)
{
	struct ids_group *g = s ? open_group(s) : NULL;
	if (!g || (!v && n))
		return -EINVAL;
	const char **dst;
	switch (f) {
	case IDS_F_EXTERNAL_ID: dst = &g->id; break;
	case IDS_F_USERNAME: dst = &g->name; break;
	case IDS_F_EMAIL: dst = &g->email; break;
	case IDS_F_DN: dst = &g->dn; break;
	default: return -EINVAL;
	}
	/* a group's bad value is dropped: the group is only a matching key
	 * and stays usable by its other names (without an id it is dropped
	 * by finish) */
	if (*dst || n == 0 || !ids_utf8_valid(v, n))
		return 0;
	if (f == IDS_F_DN) {
		char *dn = NULL;
		int r = ids_dn_normalize(v, n, &dn);
		if (r == -EINVAL)
			return 0;
		if (r < 0)
			return r;
		*dst = ids_arena_strdup(&s->priv->arena, dn);
		int rr =
		    *dst ? dn_seen(s->priv, v, n, *dst, REF_GROUP | (uint32_t)(s->ngroups - 1)) : -ENOMEM;
		free(dn);
		return rr < 0 ? rr : 0;
	} else {
		*dst = ids_arena_strndup(&s->priv->arena, v, n);
	}
	return *dst ? 0 : -ENOMEM;
}

/* Index of s[0..n) in the interning table `map` (whose next index would
 * be `count`), copying it into the tmp arena only when new: most member
 * references repeat.  *ret_copy is the new copy, or NULL when the string
 * was known.  -ENOMEM, or the index. */
static long intern(struct ids_snapshot_priv *p, struct ids_strmap *map, const char *s, size_t n, size_t count,
		   char **ret_copy)
{
	uint32_t v;
	ids_buf_reset(&p->scratch);
	int r = ids_buf_add(&p->scratch, s, n);
	if (r < 0)
		return r;
	if (ids_strmap_get(map, p->scratch.p, &v)) {
		*ret_copy = NULL;
		return (long)v;
	}
	char *c = ids_arena_strndup(&p->tmp, s, n);
	if (!c)
		return -ENOMEM;
	r = ids_strmap_put(map, c, (uint32_t)count, NULL);
	if (r < 0)
		return r;
	*ret_copy = c;
	return (long)count;
}

/* Records a membership of `group` in refs index idx. */
static int push_member(struct ids_snapshot_priv *p, uint32_t group, uint32_t idx)
{
	int r = ids_grow(&p->members, &p->cap_members, p->nmembers + 1, sizeof(*p->members));
	if (r < 0)
		return r;
	if (p->nmembers >= SIZE_MAX / 2)
		return -E2BIG;
	p->members[p->nmembers++] = (struct member){group, idx};
	return 0;
}

/* The refs index of the normalized reference norm[0..n) of `kind`,
 * appended when new.  -ENOMEM / -E2BIG, or the index. */
static long ref_index(struct ids_snapshot_priv *p, enum ids_ref kind, const char *norm, size_t n)
{
	int r = ids_grow(&p->refs, &p->cap_refs, p->nrefs + 1, sizeof(*p->refs));
	if (r < 0)
		return r;
	if (p->nrefs >= REF_INDEX)
		return -E2BIG;
	char *copy;
	long idx = intern(p, &p->refmap[kind], norm, n, p->nrefs, &copy);
	if (idx >= 0 && copy)
		p->refs[p->nrefs++] = (struct ref){copy, kind};
	return idx;
}

/* Records that raw[0..n) (an entry's own DN as the directory spelled it,
 * norm its stored normalized form) names the entry `target` (REF_USER or
 * REF_GROUP | its builder index): a membership spelling it the same way
 * then points at the entry directly — no normalizing, no reference to
 * intern and resolve.  The stored DN is the key when the directory spelled
 * it normalized already (as OpenLDAP mostly does): a million DNs are not
 * copied again.  Other spellings still go the normalizing way. */
static int dn_seen(struct ids_snapshot_priv *p, const char *raw, size_t n, const char *norm, uint32_t target)
{
	if (memchr(raw, '\0', n) || (target & REF_INDEX) == REF_INDEX)
		return 0;
	const char *k =
	    n == strlen(norm) && memcmp(raw, norm, n) == 0 ? norm : ids_arena_strndup(&p->rawtmp, raw, n);
	if (!k)
		return -ENOMEM;
	/* the first entry with this DN keeps it (DNs are unique; a repeat
	 * can only be the same entry read again) */
	int r = ids_strmap_put(&p->rawdn, k, target, NULL);
	return r < 0 ? r : 0;
}

/* A member reference that can name nothing (empty, not UTF-8, not a DN):
 * counted unresolved, and per builder group for a kept snapshot. */
static int count_invalid(struct ids_snapshot *s, uint32_t group)
{
	struct ids_snapshot_priv *p = s->priv;
	s->unresolved_members++;
	if (group & BY_GID)
		return 0;
	size_t old = p->cap_binv;
	int r = ids_grow(&p->binv, &p->cap_binv, (size_t)group + 1, sizeof(*p->binv));
	if (r < 0)
		return r;
	memset(p->binv + old, 0, (p->cap_binv - old) * sizeof(*p->binv));
	p->binv[group]++;
	return 0;
}

static int add_member(struct ids_snapshot *s, uint32_t group, enum ids_ref kind, const char *ref, size_t n)
{
	struct ids_snapshot_priv *p = s->priv;
	const char *raw = ref;
	size_t rawn = n;
	char *dn = NULL;
	uint32_t known;
	int r;
	if ((unsigned)kind > IDS_REF_USERNAME || (!ref && n))
		return -EINVAL;
	/* a DN spelled exactly as before: its normalized ref is known */
	if (kind == IDS_REF_DN && n) {
		ids_buf_reset(&p->scratch);
		if ((r = ids_buf_add(&p->scratch, ref, n)) < 0)
			return r;
		if (!memchr(ref, '\0', n) && ids_strmap_get(&p->rawdn, p->scratch.p, &known))
			return push_member(p, group, known);
	}
	/* a reference that cannot name anything we read is counted, not fatal */
	if (n == 0 || !ids_utf8_valid(ref, n))
		return count_invalid(s, group);
	if (kind == IDS_REF_DN) {
		r = ids_dn_normalize(ref, n, &dn);
		if (r == -EINVAL)
			return count_invalid(s, group);
		if (r < 0)
			return r;
		ref = dn;
		n = strlen(dn);
	}
	long idx = ref_index(p, kind, ref, n);
	if (idx < 0) {
		r = (int)idx;
		goto out;
	}
	if ((r = push_member(p, group, (uint32_t)idx)) < 0)
		goto out;
	if (kind == IDS_REF_DN && !memchr(raw, '\0', rawn)) {
		char *k = ids_arena_strndup(&p->rawtmp, raw, rawn);
		r = k ? ids_strmap_put(&p->rawdn, k, (uint32_t)idx, NULL) : -ENOMEM;
		r = r < 0 ? r : 0;
	}
out:
	free(dn);
	return r;
}

#define PEND_MAX 256

/* Resolves the open group's pending DN members: one batched lookup of
 * their spellings, the normalizing path for those not seen before. */
static int flush_members(struct ids_snapshot *s)
{
	struct ids_snapshot_priv *p = s->priv;
	const char *keys[PEND_MAX];
	uint32_t vals[PEND_MAX];
	uint32_t group = (uint32_t)(s->ngroups - 1);
	int r = 0;
	for (size_t i = 0; i < p->npend; i++)
		keys[i] = p->pend_buf.p + p->pend_off[i];
	ids_strmap_get_batch(&p->rawdn, keys, p->npend, vals);
	for (size_t i = 0; i < p->npend && r >= 0; i++) {
		if (vals[i] != UINT32_MAX)
			r = push_member(p, group, vals[i]);
		else
			r = add_member(s, group, IDS_REF_DN, keys[i], strlen(keys[i]));
	}
	p->npend = 0;
	ids_buf_reset(&p->pend_buf);
	return r;
}

/* A member of a patch's one group (p->pkeep): its kept reference, the
 * DN normalized only when not spelled as one already (normalizing a
 * normalized DN changes nothing); a kind no kept member used: -EAGAIN. */
static int patch_member(struct ids_snapshot *s, enum ids_ref kind, const char *ref, size_t n)
{
	struct ids_snapshot_priv *p = s->priv;
	struct snap_keep *k = p->pkeep;
	char *dn = NULL;
	uint32_t v;
	long idx;
	int r = ids_grow(&p->pmem, &p->cap_pmem, p->npmem + 1, sizeof(*p->pmem));
	if (r < 0)
		return r;
	/* a NUL byte: the builder's interning cuts the value there */
	if ((n && memchr(ref, '\0', n)) || !k->kinds[kind])
		return -EAGAIN;
	if (n == 0 || !ids_utf8_valid(ref, n))
		return count_invalid(s, 0);
	ids_buf_reset(&p->scratch);
	if ((r = ids_buf_add(&p->scratch, ref, n)) < 0)
		return r;
	if (kind == IDS_REF_DN && ids_strmap_get(&k->map[IDS_REF_DN], p->scratch.p, &v)) {
		p->pmem[p->npmem++] = v;
		return 0;
	}
	if (kind == IDS_REF_DN && (r = ids_dn_normalize(ref, n, &dn)) < 0)
		return r == -EINVAL ? count_invalid(s, 0) : r;
	idx = snap_keep_ref(k, kind, dn ? dn : p->scratch.p, true);
	free(dn);
	if (idx < 0)
		return (int)idx;
	p->pmem[p->npmem++] = (uint32_t)idx;
	return 0;
}

int ids_snapshot_group_member(struct ids_snapshot *s, enum ids_ref kind, const char *ref, size_t n)
{
	if (!s || !open_group(s) || (unsigned)kind > IDS_REF_USERNAME || (!ref && n))
		return -EINVAL;
	struct ids_snapshot_priv *p = s->priv;
	if (p->pkeep)
		return patch_member(s, kind, ref, n);
	/* a group's member DNs are looked up many at a time (big groups
	 * have millions); other references, and values with a NUL byte,
	 * take the direct way */
	if (kind != IDS_REF_DN || !n || memchr(ref, '\0', n))
		return add_member(s, (uint32_t)(s->ngroups - 1), kind, ref, n);
	int r = ids_grow(&p->pend_off, &p->cap_pend, p->npend + 1, sizeof(*p->pend_off));
	if (r < 0)
		return r;
	p->pend_off[p->npend] = p->pend_buf.len;
	if ((r = ids_buf_add(&p->pend_buf, ref, n)) < 0 || (r = ids_buf_putc(&p->pend_buf, '\0')) < 0)
		return r;
	if (++p->npend == PEND_MAX)
		return flush_members(s);
	return 0;
}

int ids_snapshot_member(struct ids_snapshot *s, const char *group_id, enum ids_ref kind, const char *ref,
			size_t n)
{
	if (!s || s->priv->started || !group_id)
		return -EINVAL;
	struct ids_snapshot_priv *p = s->priv;
	int r = ids_grow(&p->gids, &p->cap_gids, p->ngids + 1, sizeof(*p->gids));
	if (r < 0)
		return r;
	if (p->ngids >= MAX_RECORDS)
		return -E2BIG;
	char *copy;
	long idx = intern(p, &p->gidmap, group_id, strlen(group_id), p->ngids, &copy);
	if (idx < 0)
		return (int)idx;
	if (copy)
		p->gids[p->ngids++] = copy;
	return add_member(s, BY_GID | (uint32_t)idx, kind, ref, n);
}

int ids_snapshot_group_end(struct ids_snapshot *s)
{
	if (!s || !open_group(s))
		return -EINVAL;
	int r = flush_members(s);
	s->priv->group_open = false;
	return r;
}

/* ---------------- finish ---------------- */

struct keyed {
	const char *key;
	uint32_t idx; /* builder order: ties keep it, so "first" stays first */
};

static int cmp_keyed(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = ids_strcmp0(x->key, y->key);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorts the users by external id, checks the required fields and marks
 * duplicate ids.  *ret_map is new: builder index -> sorted index. */
static int finish_users(struct ids_snapshot *s, uint32_t **ret_map)
{
	size_t n = s->nusers;
	struct keyed *k = malloc((n ? n : 1) * sizeof(*k));
	uint32_t *map = malloc((n ? n : 1) * sizeof(*map));
	uint64_t *done = calloc((n + 63) / 64 + 1, sizeof(*done));
	int r = -ENOMEM;
	if (!k || !map || !done)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct ids_user *u = &s->users[i];
		if (!u->f[IDS_F_EXTERNAL_ID])
			r = snap_set_invalid(s, u, NULL, "missing external_id");
		else if (!u->f[IDS_F_USERNAME])
			r = snap_set_invalid(s, u, NULL, "missing username");
		else
			r = 0;
		if (r < 0)
			goto out;
		k[i] = (struct keyed){u->f[IDS_F_EXTERNAL_ID], (uint32_t)i};
	}
	qsort(k, n, sizeof(*k), cmp_keyed);
	for (size_t i = 0; i < n; i++) {
		map[k[i].idx] = (uint32_t)i;
		/* two entries with one immutable id: only the first is trusted */
		if (i > 0 && k[i].key && ids_strcmp0(k[i].key, k[i - 1].key) == 0) {
			r = snap_set_invalid(s, &s->users[k[i].idx], NULL, "duplicate external_id");
			if (r < 0)
				goto out;
		}
	}
	/* into sorted order in place, cycle by cycle: a million users are
	 * never held twice */
	for (size_t i = 0; i < n; i++) {
		if (done[i / 64] >> (i % 64) & 1)
			continue;
		struct ids_user carry = s->users[i];
		size_t at = i;
		for (;;) {
			size_t to = map[at];
			done[to / 64] |= (uint64_t)1 << (to % 64);
			struct ids_user next = s->users[to];
			s->users[to] = carry;
			if (to == i)
				break;
			carry = next;
			at = to;
		}
	}
	*ret_map = map;
	map = NULL;
	r = 0;
out:
	free(k);
	free(done);
	free(map);
	return r;
}

/* Sorts the groups by id.  A group without an id cannot be keyed and is
 * dropped (NONE in the map); a repeated id is the same group read twice,
 * so its memberships go to the first.  *ret_map is new. */
static int finish_groups(struct ids_snapshot *s, uint32_t **ret_map)
{
	size_t n = s->ngroups, nk = 0, nout = 0;
	struct keyed *k = malloc((n ? n : 1) * sizeof(*k));
	struct ids_group *sorted = malloc((n ? n : 1) * sizeof(*sorted));
	uint32_t *map = malloc((n ? n : 1) * sizeof(*map));
	int r = -ENOMEM;
	if (!k || !sorted || !map)
		goto out;
	for (size_t i = 0; i < n; i++) {
		map[i] = NONE;
		if (s->groups[i].id)
			k[nk++] = (struct keyed){s->groups[i].id, (uint32_t)i};
	}
	qsort(k, nk, sizeof(*k), cmp_keyed);
	for (size_t i = 0; i < nk; i++) {
		if (i == 0 || strcmp(k[i].key, k[i - 1].key) != 0)
			sorted[nout++] = s->groups[k[i].idx];
		map[k[i].idx] = (uint32_t)(nout - 1);
	}
	free(s->groups);
	s->groups = sorted;
	sorted = NULL;
	s->ngroups = nout;
	s->priv->gcap = nout;
	*ret_map = map;
	map = NULL;
	r = 0;
out:
	free(k);
	free(sorted);
	free(map);
	return r;
}

/* Adjacency lists in compressed form: the targets of node i are
 * edge[off[i] .. off[i+1]). */
struct csr {
	size_t *off;
	uint32_t *edge;
};

static void csr_free(struct csr *c)
{
	free(c->off);
	free(c->edge);
	c->off = NULL;
	c->edge = NULL;
}

struct resolved {
	uint32_t *ref_target; /* per ref: NONE, a user u, or nusers + group */
	uint32_t *gid_group;  /* per gid: the group, or NONE */
	struct csr user_groups, group_parents;
};

/* Resolves every interned reference once, through hash maps over the
 * sorted users and groups.  Invalid users are mapped too (their records
 * stay for the diff), but after the valid ones, so that a valid user wins
 * a username or DN they share. */
static int resolve_refs(struct ids_snapshot *s, struct resolved *res)
{
	struct ids_snapshot_priv *p = s->priv;
	struct ids_strmap u_id = {0}, u_name = {0}, u_dn = {0}, g_id = {0}, g_dn = {0};
	int r = -ENOMEM;

	res->ref_target = malloc((p->nrefs ? p->nrefs : 1) * sizeof(uint32_t));
	res->gid_group = malloc((p->ngids ? p->ngids : 1) * sizeof(uint32_t));
	if (!res->ref_target || !res->gid_group)
		goto out;
	/* only the indexes some reference needs: an LDAP directory names
	 * members by DN, a cloud one by id (a million users' index is tens of
	 * megabytes) */
	bool kind[3] = {false, false, false};
	for (size_t i = 0; i < p->nrefs; i++)
		kind[p->refs[i].kind] = true;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < s->nusers; i++) {
			const struct ids_user *u = &s->users[i];
			if ((u->invalid != NULL) != (pass == 1))
				continue;
			const char *id = kind[IDS_REF_ID] ? u->f[IDS_F_EXTERNAL_ID] : NULL;
			const char *name = kind[IDS_REF_USERNAME] ? u->f[IDS_F_USERNAME] : NULL;
			const char *dn = kind[IDS_REF_DN] ? u->f[IDS_F_DN] : NULL;
			if ((id && (r = ids_strmap_put(&u_id, id, (uint32_t)i, NULL)) < 0) ||
			    (name && (r = ids_strmap_put(&u_name, name, (uint32_t)i, NULL)) < 0) ||
			    (dn && (r = ids_strmap_put(&u_dn, dn, (uint32_t)i, NULL)) < 0))
				goto out;
		}
	}
	for (size_t i = 0; i < s->ngroups; i++) {
		const struct ids_group *g = &s->groups[i];
		if ((r = ids_strmap_put(&g_id, g->id, (uint32_t)i, NULL)) < 0 ||
		    (g->dn && (r = ids_strmap_put(&g_dn, g->dn, (uint32_t)i, NULL)) < 0))
			goto out;
	}
	const uint32_t gbase = (uint32_t)s->nusers;
	for (size_t i = 0; i < p->nrefs; i++) {
		const struct ref *f = &p->refs[i];
		uint32_t v;
		res->ref_target[i] = NONE;
		/* a DN or an id may name a user or a group; a uid only a user */
		if (f->kind == IDS_REF_DN) {
			if (ids_strmap_get(&u_dn, f->s, &v))
				res->ref_target[i] = v;
			else if (ids_strmap_get(&g_dn, f->s, &v))
				res->ref_target[i] = gbase + v;
		} else if (f->kind == IDS_REF_ID) {
			if (ids_strmap_get(&u_id, f->s, &v))
				res->ref_target[i] = v;
			else if (ids_strmap_get(&g_id, f->s, &v))
				res->ref_target[i] = gbase + v;
		} else if (ids_strmap_get(&u_name, f->s, &v)) {
			res->ref_target[i] = v;
		}
	}
	for (size_t i = 0; i < p->ngids; i++) {
		uint32_t v;
		res->gid_group[i] = ids_strmap_get(&g_id, p->gids[i], &v) ? v : NONE;
	}
	r = 0;
out:
	ids_strmap_free(&u_id);
	ids_strmap_free(&u_name);
	ids_strmap_free(&u_dn);
	ids_strmap_free(&g_id);
	ids_strmap_free(&g_dn);
	return r;
}

/* Turns the membership records into two adjacency lists: user -> direct
 * groups and group -> parent groups.  Two passes (count, then fill) so
 * that millions of memberships need no intermediate edge list. */
static int build_edges(struct ids_snapshot *s, const uint32_t *umap, const uint32_t *gmap,
		       struct resolved *res)
{
	struct ids_snapshot_priv *p = s->priv;
	size_t nu = s->nusers, ng = s->ngroups;
	struct csr *ug = &res->user_groups, *gp = &res->group_parents;
	size_t *ufill = NULL, *gfill = NULL;
	int r = -ENOMEM;

	ug->off = calloc(nu + 1, sizeof(size_t));
	gp->off = calloc(ng + 1, sizeof(size_t));
	if (!ug->off || !gp->off)
		goto out;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < p->nmembers; i++) {
			const struct member *m = &p->members[i];
			uint32_t g = m->group & BY_GID ? res->gid_group[m->group & ~BY_GID] : gmap[m->group];
			uint32_t t;
			if (m->ref & REF_USER)
				t = umap[m->ref & REF_INDEX];
			else if (m->ref & REF_GROUP)
				t = gmap[m->ref & REF_INDEX] == NONE
					? NONE
					: (uint32_t)nu + gmap[m->ref & REF_INDEX];
			else
				t = res->ref_target[m->ref];
			if (g == NONE || t == NONE) {
				if (pass == 0)
					s->unresolved_members++;
				continue;
			}
			if (pass == 0 && t < nu)
				ug->off[t + 1]++;
			else if (pass == 0)
				gp->off[t - nu + 1]++;
			else if (t < nu)
				ug->edge[ufill[t]++] = g;
			else
				gp->edge[gfill[t - nu]++] = g;
		}
		if (pass == 1)
			break;
		/* counts -> offsets, and the fill cursors start at the offsets */
		for (size_t i = 0; i < nu; i++)
			ug->off[i + 1] += ug->off[i];
		for (size_t i = 0; i < ng; i++)
			gp->off[i + 1] += gp->off[i];
		ug->edge = malloc((ug->off[nu] ? ug->off[nu] : 1) * sizeof(uint32_t));
		gp->edge = malloc((gp->off[ng] ? gp->off[ng] : 1) * sizeof(uint32_t));
		ufill = malloc((nu ? nu : 1) * sizeof(size_t));
		gfill = malloc((ng ? ng : 1) * sizeof(size_t));
		if (!ug->edge || !gp->edge || !ufill || !gfill)
			goto out;
		memcpy(ufill, ug->off, nu * sizeof(size_t));
		memcpy(gfill, gp->off, ng * sizeof(size_t));
	}
	r = 0;
out:
	free(ufill);
	free(gfill);
	return r;
}

size_t snap_sort_unique(uint32_t *v, size_t n)
{
	if (n < 2)
		return n;
	qsort(v, n, sizeof(*v), cmp_u32);
	size_t k = 1;
	for (size_t i = 1; i < n; i++)
		if (v[i] != v[k - 1])
			v[k++] = v[i];
	return k;
}

/* Copies v[0..n) into the arena (NULL for n == 0).  -ENOMEM or 0. */
static int arena_u32(struct ids_arena *a, const uint32_t *v, size_t n, uint32_t **ret)
{
	*ret = NULL;
	if (!n)
		return 0;
	*ret = ids_arena_alloc(a, n * sizeof(*v));
	if (!*ret)
		return -ENOMEM;
	memcpy(*ret, v, n * sizeof(*v));
	return 0;
}

void snap_closure_free(struct closure *c)
{
	free(c->comp);
	free(c->off);
	free(c->pool);
	free(c->mark);
	free(c->cmark);
}

/* Appends group g to the pool unless this generation already has it. */
static int closure_add(struct closure *c, uint32_t g)
{
	if (c->mark[g] == c->gen)
		return 0;
	c->mark[g] = c->gen;
	int r = ids_grow(&c->pool, &c->cap_pool, c->npool + 1, sizeof(*c->pool));
	if (r < 0)
		return r;
	c->pool[c->npool++] = g;
	return 0;
}

/* Closes component c whose groups are members[0..n): the groups
 * themselves plus the closures of every parent outside the component.
 * Tarjan emits components after everything they reach, so those closures
 * are already complete. */
static int closure_emit(struct closure *c, const struct ids_snapshot *s, const uint32_t *members, size_t n)
{
	size_t cid = c->ncomp++;
	int r = 0;
	c->gen++;
	c->off[cid] = c->npool;
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = closure_add(c, members[i]);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		const struct ids_group *g = &s->groups[members[i]];
		for (size_t j = 0; r >= 0 && j < g->nparents; j++) {
			uint32_t pc = c->comp[g->parents[j]];
			if (pc == cid || c->cmark[pc] == c->gen)
				continue;
			c->cmark[pc] = c->gen;
			/* the pool may move while it grows: index, don't point */
			for (size_t k = c->off[pc]; r >= 0 && k < c->off[pc + 1]; k++)
				r = closure_add(c, c->pool[k]);
		}
	}
	c->off[cid + 1] = c->npool;
	return r;
}

/* Tarjan's strongly connected components over group -> parents, iterative
 * (deep nesting must not exhaust the C stack). */
int snap_closure_build(struct closure *c, const struct ids_snapshot *s)
{
	size_t ng = s->ngroups;
	uint32_t *index = malloc((ng ? ng : 1) * sizeof(uint32_t));
	uint32_t *low = malloc((ng ? ng : 1) * sizeof(uint32_t));
	uint32_t *stack = malloc((ng ? ng : 1) * sizeof(uint32_t));
	bool *on = calloc(ng ? ng : 1, sizeof(bool));
	struct frame {
		uint32_t v;
		size_t e;
	} *cs = malloc((ng ? ng : 1) * sizeof(*cs));
	size_t sp = 0, csp = 0;
	uint32_t next = 0;
	int r = -ENOMEM;

	c->comp = malloc((ng ? ng : 1) * sizeof(uint32_t));
	c->off = calloc(ng + 1, sizeof(size_t));
	c->mark = calloc(ng ? ng : 1, sizeof(uint32_t));
	c->cmark = calloc(ng ? ng : 1, sizeof(uint32_t));
	if (!index || !low || !stack || !on || !cs || !c->comp || !c->off || !c->mark || !c->cmark)
		goto out;
	for (size_t i = 0; i < ng; i++)
		index[i] = c->comp[i] = NONE;

	for (uint32_t root = 0; root < ng; root++) {
		if (index[root] != NONE)
			continue;
		index[root] = low[root] = next++;
		stack[sp++] = root;
		on[root] = true;
		cs[csp++] = (struct frame){root, 0};
		while (csp) {
			struct frame *f = &cs[csp - 1];
			uint32_t v = f->v;
			const struct ids_group *g = &s->groups[v];
			if (f->e < g->nparents) {
				uint32_t w = g->parents[f->e++];
				if (index[w] == NONE) {
					index[w] = low[w] = next++;
					stack[sp++] = w;
					on[w] = true;
					cs[csp++] = (struct frame){w, 0};
				} else if (on[w] && index[w] < low[v]) {
					low[v] = index[w];
				}
				continue;
			}
			if (low[v] == index[v]) {
				/* v roots a component: everything above it on the stack */
				size_t from = sp;
				do
					on[stack[--from]] = false;
				while (stack[from] != v);
				for (size_t i = from; i < sp; i++)
					c->comp[stack[i]] = (uint32_t)c->ncomp;
				r = closure_emit(c, s, stack + from, sp - from);
				if (r < 0)
					goto out;
				sp = from;
			}
			csp--;
			if (csp && low[v] < low[cs[csp - 1].v])
				low[cs[csp - 1].v] = low[v];
		}
	}
	r = 0;
out:
	free(index);
	free(low);
	free(stack);
	free(on);
	free(cs);
	return r;
}

int snap_user_closure(struct ids_snapshot *s, struct closure *c, struct ids_user *u, const uint32_t *direct,
		      size_t nd, uint32_t **buf, size_t *cap)
{
	size_t n = 0;
	int r = 0;
	c->gen++;
	for (size_t e = 0; e < nd; e++) {
		uint32_t cc = c->comp[direct[e]];
		if (c->cmark[cc] == c->gen)
			continue;
		c->cmark[cc] = c->gen;
		for (size_t k = c->off[cc]; k < c->off[cc + 1]; k++) {
			uint32_t g = c->pool[k];
			if (c->mark[g] == c->gen)
				continue;
			c->mark[g] = c->gen;
			if ((r = ids_grow(buf, cap, n + 1, sizeof(**buf))) < 0)
				return r;
			(*buf)[n++] = g;
		}
	}
	if (n > 1)
		qsort(*buf, n, sizeof(**buf), cmp_u32);
	r = arena_u32(&s->priv->garena, *buf, n, &u->groups);
	u->ngroups = r < 0 ? 0 : n;
	return r;
}

/* Every user's groups: the closures of its direct groups, merged. */
static int user_groups(struct ids_snapshot *s, const struct csr *ug, struct closure *c)
{
	uint32_t *buf = NULL;
	size_t cap = 0;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < s->nusers; i++)
		r = snap_user_closure(s, c, &s->users[i], ug->edge + ug->off[i], ug->off[i + 1] - ug->off[i],
				      &buf, &cap);
	free(buf);
	return r;
}

/* ---------------- what a kept snapshot keeps (snapshot_patch.c) ---------------- */

int ids_snapshot_keep(struct ids_snapshot *s)
{
	if (!building(s))
		return -EINVAL;
	s->priv->want_keep = true;
	return 0;
}

bool ids_snapshot_kept(const struct ids_snapshot *s)
{
	return s && s->priv && s->priv->finished && s->priv->keep;
}

void snap_keep_free(struct snap_keep *k, size_t ngroups)
{
	if (!k)
		return;
	free(k->refs);
	for (size_t i = 0; i < 3; i++)
		ids_strmap_free(&k->map[i]);
	ids_arena_free(&k->strs);
	for (size_t i = 0; k->gmem && i < ngroups; i++)
		free(k->gmem[i].v);
	free(k->gmem);
	free(k->ginvalid);
	free(k->udirect);
	ids_arena_free(&k->darena);
	free(k);
}

long snap_keep_ref(struct snap_keep *k, enum ids_ref kind, const char *str, bool copy)
{
	uint32_t v;
	if (ids_strmap_get(&k->map[kind], str, &v))
		return (long)v;
	int r = ids_grow(&k->refs, &k->cap_refs, k->nrefs + 1, sizeof(*k->refs));
	if (r < 0)
		return r;
	if (k->nrefs >= REF_INDEX)
		return -E2BIG;
	const char *c = copy ? ids_arena_strdup(&k->strs, str) : str;
	if (!c || (r = ids_strmap_put(&k->map[kind], c, (uint32_t)k->nrefs, NULL)) < 0)
		return c ? r : -ENOMEM;
	k->refs[k->nrefs] = (struct kref){.s = c, .target = NONE, .kind = kind};
	return (long)k->nrefs++;
}

int snap_keep_claim(struct snap_keep *k, enum ids_ref kind, const char *str, uint32_t target,
		    uint32_t *ret_idx)
{
	if (ret_idx)
		*ret_idx = NONE;
	if (!str || !k->kinds[kind])
		return 1;
	long i = snap_keep_ref(k, kind, str, false);
	if (i < 0)
		return (int)i;
	if (k->refs[i].target != NONE)
		return 0;
	k->refs[i].target = target;
	if (ret_idx)
		*ret_idx = (uint32_t)i;
	return 1;
}

/* The references, and every entry's keys as references resolved to it:
 * 1, or 0 when two entries share a key (the snapshot's precedence rules
 * decide then, which a patch does not redo: such a snapshot is not
 * kept), or -ENOMEM.  Checked against finish's own resolution. */
static int keep_refs(struct ids_snapshot *s, struct snap_keep *k, const struct resolved *res, uint32_t *dnref)
{
	struct ids_snapshot_priv *p = s->priv;
	size_t n0 = p->nrefs;
	if (!(k->refs = malloc((n0 ? n0 : 1) * sizeof(*k->refs))))
		return -ENOMEM;
	k->cap_refs = n0 ? n0 : 1;
	for (size_t i = 0; i < n0; i++)
		k->refs[i] = (struct kref){.s = p->refs[i].s, .target = NONE, .kind = p->refs[i].kind};
	k->nrefs = n0;
	memcpy(k->map, p->refmap, sizeof(k->map));
	memset(p->refmap, 0, sizeof(p->refmap));
	/* kept between runs: filled to 3/4 (at 1/2, tier L's million DNs
	 * doubled the map, 32 MiB more, with a run's first new ones) */
	for (int i = 0; i < 3; i++)
		k->map[i].dense = true;
	k->strs = p->tmp;
	p->tmp = (struct ids_arena){0};
	for (size_t i = 0; i < n0; i++)
		k->kinds[k->refs[i].kind] = true;
	for (size_t i = 0; i < p->nmembers; i++)
		if (p->members[i].ref & (REF_USER | REF_GROUP))
			k->kinds[IDS_REF_DN] = true;
	int r = 1;
	for (size_t i = 0; r > 0 && i < s->nusers; i++) {
		const struct ids_user *u = &s->users[i];
		if ((r = snap_keep_claim(k, IDS_REF_ID, u->f[IDS_F_EXTERNAL_ID], (uint32_t)i, NULL)) > 0 &&
		    (r = snap_keep_claim(k, IDS_REF_DN, u->f[IDS_F_DN], (uint32_t)i, &dnref[i])) > 0)
			r = snap_keep_claim(k, IDS_REF_USERNAME, u->f[IDS_F_USERNAME], (uint32_t)i, NULL);
	}
	for (size_t g = 0; r > 0 && g < s->ngroups; g++) {
		uint32_t t = (uint32_t)(s->nusers + g);
		if ((r = snap_keep_claim(k, IDS_REF_ID, s->groups[g].id, t, NULL)) > 0)
			r = snap_keep_claim(k, IDS_REF_DN, s->groups[g].dn, t, &dnref[t]);
	}
	for (size_t i = 0; r > 0 && i < n0; i++)
		if (k->refs[i].target != res->ref_target[i])
			r = 0;
	return r;
}

/* The reference a membership record names, as a kept reference. */
static long keep_member_ref(const struct ids_snapshot *s, const uint32_t *dnref, const uint32_t *umap,
			    const uint32_t *gmap, uint32_t ref)
{
	uint32_t v = NONE;
	if (!(ref & (REF_USER | REF_GROUP)))
		return (long)ref;
	if (ref & REF_USER)
		v = dnref[umap[ref & REF_INDEX]];
	else if (gmap[ref & REF_INDEX] != NONE)
		v = dnref[s->nusers + gmap[ref & REF_INDEX]];
	return v == NONE ? -1 : (long)v;
}

/* Each group's member references (gmem), counted per reference, and its
 * invalid ones: 1, 0 when a group was dropped (no id) or read twice or
 * the count differs from finish's (not kept), or -ENOMEM. */
static int keep_members(struct ids_snapshot *s, struct snap_keep *k, const uint32_t *dnref,
			const uint32_t *umap, const uint32_t *gmap, size_t nbuilt)
{
	struct ids_snapshot_priv *p = s->priv;
	size_t ng = s->ngroups, unres = 0;
	unsigned char *seen = calloc(ng ? ng : 1, 1);
	k->gmem = calloc(ng ? ng : 1, sizeof(*k->gmem));
	k->ginvalid = calloc(ng ? ng : 1, sizeof(*k->ginvalid));
	if (!seen || !k->gmem || !k->ginvalid) {
		free(seen);
		return -ENOMEM;
	}
	int r = 1;
	for (size_t b = 0; r > 0 && b < nbuilt; b++) {
		if (gmap[b] == NONE || seen[gmap[b]]++)
			r = 0;
		else if (b < p->cap_binv)
			unres += k->ginvalid[gmap[b]] = p->binv[b];
	}
	free(seen);
	for (size_t i = 0; r > 0 && i < p->nmembers; i++)
		if (p->members[i].group & BY_GID)
			r = 0;
		else
			k->gmem[gmap[p->members[i].group]].n++;
	for (size_t g = 0; r > 0 && g < ng; g++) {
		if (k->gmem[g].n && !(k->gmem[g].v = malloc(k->gmem[g].n * sizeof(uint32_t))))
			r = -ENOMEM;
		k->gmem[g].n = 0;
	}
	for (size_t i = 0; r > 0 && i < p->nmembers; i++) {
		struct u32v *m = &k->gmem[gmap[p->members[i].group]];
		long ref = keep_member_ref(s, dnref, umap, gmap, p->members[i].ref);
		if (ref < 0) {
			r = 0;
			break;
		}
		m->v[m->n++] = (uint32_t)ref;
		k->refs[ref].count++;
	}
	for (size_t i = 0; r > 0 && i < k->nrefs; i++)
		if (k->refs[i].target == NONE)
			unres += k->refs[i].count;
	return r > 0 && unres != s->unresolved_members ? 0 : r;
}

/* Each user's direct groups, sorted unique, from finish's edges. */
static int keep_direct(struct ids_snapshot *s, struct snap_keep *k, const struct csr *ug)
{
	if (!(k->udirect = calloc(s->nusers ? s->nusers : 1, sizeof(*k->udirect))))
		return -ENOMEM;
	for (size_t i = 0; i < s->nusers; i++) {
		size_t n = ug->off[i + 1] - ug->off[i];
		int r = arena_u32(&k->darena, ug->edge + ug->off[i], n, &k->udirect[i].v);
		if (r < 0)
			return r;
		k->udirect[i].n = snap_sort_unique(k->udirect[i].v, n);
	}
	return 1;
}

/* What a patch needs, into s->priv->keep; left NULL when s cannot be
 * patched (ids_snapshot_kept() false: the next run replays whole). */
static int keep_build(struct ids_snapshot *s, const uint32_t *umap, const uint32_t *gmap, size_t nbuilt,
		      const struct resolved *res)
{
	struct snap_keep *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	/* each entry's DN reference: the members that named it directly */
	size_t nt = s->nusers + s->ngroups;
	uint32_t *dnref = malloc((nt ? nt : 1) * sizeof(*dnref));
	int r = dnref ? keep_refs(s, k, res, dnref) : -ENOMEM;
	if (r > 0)
		r = keep_members(s, k, dnref, umap, gmap, nbuilt);
	free(dnref);
	if (r > 0)
		r = keep_direct(s, k, &res->user_groups);
	if (r > 0) {
		s->priv->keep = k;
		return 0;
	}
	snap_keep_free(k, s->ngroups);
	return r;
}

int ids_snapshot_finish(struct ids_snapshot *s)
{
	uint32_t *umap = NULL, *gmap = NULL;
	struct resolved res = {0};
	struct closure cl = {0};
	int r;

	if (!building(s))
		return -EINVAL;
	/* a failed finish leaves a half-sorted snapshot: the caller frees it */
	s->priv->started = true;
	/* the spellings of member DNs and the interning maps have done their
	 * work (refs keeps the strings): room for what follows */
	ids_strmap_free(&s->priv->rawdn);
	ids_arena_free(&s->priv->rawtmp);
	for (size_t i = 0; i < 3 && !s->priv->want_keep; i++)
		ids_strmap_free(&s->priv->refmap[i]);
	ids_strmap_free(&s->priv->gidmap);
	size_t nbuilt = s->ngroups;
	r = finish_users(s, &umap);
	if (r < 0)
		goto out;
	r = finish_groups(s, &gmap);
	if (r < 0)
		goto out;
	r = resolve_refs(s, &res);
	if (r < 0)
		goto out;
	r = build_edges(s, umap, gmap, &res);
	if (r < 0)
		goto out;
	/* direct parents of each group, sorted unique, kept in the snapshot */
	for (size_t i = 0; i < s->ngroups; i++) {
		struct csr *gp = &res.group_parents;
		size_t n = snap_sort_unique(gp->edge + gp->off[i], gp->off[i + 1] - gp->off[i]);
		r = arena_u32(&s->priv->arena, gp->edge + gp->off[i], n, &s->groups[i].parents);
		if (r < 0)
			goto out;
		s->groups[i].nparents = n;
	}
	csr_free(&res.group_parents);
	r = snap_closure_build(&cl, s);
	if (r < 0)
		goto out;
	r = user_groups(s, &res.user_groups, &cl);
	if (r >= 0 && s->priv->want_keep)
		r = keep_build(s, umap, gmap, nbuilt, &res);
	if (r < 0)
		goto out;
	free_build_state(s->priv);
	s->priv->finished = true;
out:
	free(umap);
	free(gmap);
	free(res.ref_target);
	free(res.gid_group);
	csr_free(&res.user_groups);
	csr_free(&res.group_parents);
	snap_closure_free(&cl);
	return r;
}

void ids_snapshot_drop_groups(struct ids_snapshot *s)
{
	/* a kept snapshot's lists are patched by the next run: they stay */
	if (!s || !s->priv || s->priv->keep)
		return;
	for (size_t i = 0; i < s->nusers; i++) {
		s->users[i].groups = NULL;
		s->users[i].ngroups = 0;
	}
	ids_arena_free(&s->priv->garena);
}

static int group_id_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct ids_group *)elem)->id);
}

long ids_snapshot_group_by_id(const struct ids_snapshot *s, const char *id)
{
	if (!s || !id || !s->priv->finished || !s->ngroups)
		return -1;
	const struct ids_group *g = bsearch(id, s->groups, s->ngroups, sizeof(*s->groups), group_id_cmp);
	return g ? (long)(g - s->groups) : -1;
}
