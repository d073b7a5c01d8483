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

#define NONE UINT32_MAX
/* A membership's group named by external id (ids_snapshot_member) rather
 * than by the builder index of the open group: the low bits index gids. */
#define BY_GID 0x80000000u
#define MAX_RECORDS 0x7fffffffu
/* A membership names its member by an interned reference (resolved at
 * finish), or directly by the builder index of an entry whose own DN it
 * spelled (see dn_seen): the two top bits of struct member.ref say which. */
#define REF_USER 0x80000000u
#define REF_GROUP 0x40000000u
#define REF_INDEX 0x3fffffffu
#define VPOOL_MAX 65536 /* distinct short attribute values stored once */

struct member {
	uint32_t group; /* builder index of the group, or BY_GID | gid index */
	uint32_t ref;	/* index into priv->refs, or REF_USER / REF_GROUP | builder index */
};

struct ref {
	const char *s; /* tmp arena; DNs already normalized */
	enum ids_ref kind;
};

/* The open user's rule attributes, before they are frozen into the arena. */
struct attr_tmp {
	const char *name;
	const char **vals;
	size_t n, cap;
};

struct ids_snapshot_priv {
	struct ids_arena arena;	 /* what the finished snapshot points to */
	struct ids_arena garena; /* the users' group lists (ids_snapshot_drop_groups) */
	struct ids_arena tmp;	 /* builder-only strings; dropped by finish */
	size_t ucap, gcap;
	bool user_open, group_open;
	bool started;  /* finish was called: no more building, even if it failed */
	bool finished; /* finish succeeded: the public arrays are complete */

	struct attr_tmp *tattrs;
	size_t ntattrs, cap_tattrs;
	/* rule attributes repeat from user to user: their names, and their
	 * short values up to VPOOL_MAX distinct ones, are stored once */
	struct ids_strpool anames, avalues;

	struct member *members;
	size_t nmembers, cap_members;
	struct ref *refs;
	size_t nrefs, cap_refs;
	struct ids_strmap refmap[3]; /* per enum ids_ref: string -> refs index */
	/* member DNs as the directory spelled them -> refs index: the same
	 * member value comes back in group after group, and normalizing it
	 * once is enough */
	struct ids_strmap rawdn;
	struct ids_arena rawtmp; /* rawdn's keys: dropped first, at finish */
	/* the open group's DN members not yet looked up: resolved in
	 * batches (flush_members), NUL-terminated in pend_buf */
	struct ids_buf pend_buf;
	size_t *pend_off;
	size_t npend, cap_pend;
	const char **gids;
	size_t ngids, cap_gids;
	struct ids_strmap gidmap; /* group id -> gids index */
	struct ids_buf scratch;	  /* a NUL-terminated copy of a key to look up */
};

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
}

void ids_snapshot_free(struct ids_snapshot *s)
{
	if (!s)
		return;
	if (s->priv) {
		free_build_state(s->priv);
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
static int set_invalid(struct ids_snapshot *s, struct ids_user *u, const char *field, const char *what)
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

int ids_snapshot_user_set(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n)
{
	struct ids_user *u = s ? open_user(s) : NULL;
	if (!u || (unsigned)f >= IDS_F__COUNT || (!v && n))
		return -EINVAL;
	/* multi-valued directory attributes: the first value is the one */
	if (u->f[f] || n == 0)
		return 0;
	const char *why = value_problem(v, n);
	if (why)
		return set_invalid(s, u, field_names[f], why);
	if (f == IDS_F_DN) {
		/* kept normalized: member values are compared against it */
		char *dn = NULL;
		int r = ids_dn_normalize(v, n, &dn);
		if (r == -EINVAL)
			return set_invalid(s, u, "dn", "not a valid DN");
		if (r < 0)
			return r;
		u->f[f] = ids_arena_strdup(&s->priv->arena, dn);
		/* groups name their members by this DN, mostly spelled the
		 * same: known now, it is not normalized again there */
		int rr =
		    u->f[f] ? dn_seen(s->priv, v, n, u->f[f], REF_USER | (uint32_t)(s->nusers - 1)) : -ENOMEM;
		free(dn);
		return rr < 0 ? rr : 0;
	} else {
		u->f[f] = ids_arena_strndup(&s->priv->arena, v, n);
	}
	return u->f[f] ? 0 : -ENOMEM;
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
	return set_invalid(s, u, NULL, why);
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
	if (n == 0 || !ids_utf8_valid(ref, n)) {
		s->unresolved_members++;
		return 0;
	}
	if (kind == IDS_REF_DN) {
		r = ids_dn_normalize(ref, n, &dn);
		if (r == -EINVAL) {
			s->unresolved_members++;
			return 0;
		}
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

int ids_snapshot_group_member(struct ids_snapshot *s, enum ids_ref kind, const char *ref, size_t n)
{
	if (!s || !open_group(s) || (unsigned)kind > IDS_REF_USERNAME || (!ref && n))
		return -EINVAL;
	struct ids_snapshot_priv *p = s->priv;
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
			r = set_invalid(s, u, NULL, "missing external_id");
		else if (!u->f[IDS_F_USERNAME])
			r = set_invalid(s, u, NULL, "missing username");
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
			r = set_invalid(s, &s->users[k[i].idx], NULL, "duplicate external_id");
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

/* Sorts and de-duplicates v[0..n) in place; returns the new length. */
static size_t sort_unique(uint32_t *v, size_t n)
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

/* The ancestor closure of every group, one per strongly connected
 * component: all groups of a cycle share their ancestors. */
struct closure {
	uint32_t *comp; /* group -> component */
	size_t *off;	/* component c's groups: pool[off[c] .. off[c+1]) */
	uint32_t *pool;
	size_t npool, cap_pool, ncomp;
	uint32_t *mark;	 /* group -> generation that last added it */
	uint32_t *cmark; /* component -> generation that last merged it */
	uint32_t gen;
};

static void closure_free(struct closure *c)
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
static int closure_build(struct closure *c, const struct ids_snapshot *s)
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

/* Every user's groups: the closures of its direct groups, merged. */
static int user_groups(struct ids_snapshot *s, const struct csr *ug, struct closure *c)
{
	uint32_t *buf = NULL;
	size_t cap = 0;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < s->nusers; i++) {
		size_t n = 0;
		c->gen++;
		for (size_t e = ug->off[i]; r >= 0 && e < ug->off[i + 1]; e++) {
			uint32_t cc = c->comp[ug->edge[e]];
			if (c->cmark[cc] == c->gen)
				continue;
			c->cmark[cc] = c->gen;
			for (size_t k = c->off[cc]; k < c->off[cc + 1]; k++) {
				uint32_t g = c->pool[k];
				if (c->mark[g] == c->gen)
					continue;
				c->mark[g] = c->gen;
				r = ids_grow(&buf, &cap, n + 1, sizeof(*buf));
				if (r < 0)
					break;
				buf[n++] = g;
			}
		}
		if (r < 0)
			break;
		if (n > 1)
			qsort(buf, n, sizeof(*buf), cmp_u32);
		r = arena_u32(&s->priv->garena, buf, n, &s->users[i].groups);
		s->users[i].ngroups = n;
	}
	free(buf);
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
	for (size_t i = 0; i < 3; i++)
		ids_strmap_free(&s->priv->refmap[i]);
	ids_strmap_free(&s->priv->gidmap);
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
		size_t n = sort_unique(gp->edge + gp->off[i], gp->off[i + 1] - gp->off[i]);
		r = arena_u32(&s->priv->arena, gp->edge + gp->off[i], n, &s->groups[i].parents);
		if (r < 0)
			goto out;
		s->groups[i].nparents = n;
	}
	csr_free(&res.group_parents);
	r = closure_build(&cl, s);
	if (r < 0)
		goto out;
	r = user_groups(s, &res.user_groups, &cl);
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
	closure_free(&cl);
	return r;
}

void ids_snapshot_drop_groups(struct ids_snapshot *s)
{
	if (!s || !s->priv)
		return;
	for (size_t i = 0; i < s->nusers; i++) {
		s->users[i].groups = NULL;
		s->users[i].ngroups = 0;
	}
	ids_arena_free(&s->priv->garena);
}

long ids_snapshot_group_by_id(const struct ids_snapshot *s, const char *id)
{
	if (!s || !id || !s->priv->finished)
		return -1;
	size_t lo = 0, hi = s->ngroups;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->groups[mid].id, id);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}
