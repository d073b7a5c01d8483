/* snapshot_patch.c — a kept snapshot patched with what a run changed in
 * the image, instead of the whole image replayed and finished again
 * (snapshot.h, issue 14).
 *
 * The kept state (snapshot_int.h, struct snap_keep) resolves every
 * reference once: each entry's keys (DN, id, username) are references
 * too, claimed by that entry, so a member reference names an entry iff
 * its reference's target does.  A patch then touches only what changed:
 * a user replaced in place (same keys) keeps his groups; a user removed
 * or added releases or claims his keys (the groups that named them lose
 * or gain him); a group's new members are compared with its old ones by
 * target, and only the differing edges change.  The nested closure is
 * recomputed per group (a few thousand: cheap), and per user only for
 * the users whose direct groups changed — for every user when a group's
 * parents changed.  What a patch cannot redo exactly (which entry wins a
 * shared key; a group's index moving) is refused: the caller replays. */
#include "ids/snapshot.h"
#include "ids/image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"

/* The old values a patch leaves in the arenas are bounded: past
 * nusers / PATCH_SHARE + PATCH_MIN patched records since the last whole
 * replay, the next run replays whole (and the arenas start afresh). */
#define PATCH_SHARE 8
#define PATCH_MIN 1024

struct patch {
	struct ids_snapshot *s;
	struct snap_keep *k;
	struct ids_image_change *ch;
	size_t nch, cap_ch;
	const char **why;
	unsigned char *removed; /* per user before the merge */
	size_t nremoved;
	struct ids_user *added; /* new users, values in the snapshot's arena */
	size_t nadded, cap_added;
	uint32_t *apos;		 /* added[j]'s index after the merge */
	unsigned char *dirty;	 /* per user after the merge: direct groups changed */
	uint32_t *omark, *nmark; /* per target: a group's old and new members */
	uint32_t gen;
	bool graph; /* a group's parents changed: every user's closure again */
};

static int refuse(struct patch *pt, const char *why)
{
	*pt->why = why;
	return -EAGAIN;
}

static int collect(const struct ids_image_change *c, void *ud)
{
	struct patch *pt = ud;
	int r = ids_grow(&pt->ch, &pt->cap_ch, pt->nch + 1, sizeof(*pt->ch));
	if (r < 0)
		return r;
	pt->ch[pt->nch++] = *c;
	return 0;
}

/* A deep copy of u (its values into s's arena; no groups). */
static int copy_user(struct ids_snapshot *s, const struct ids_user *u, struct ids_user *ret)
{
	struct ids_arena *a = &s->priv->arena;
	struct ids_user d = {.disabled = u->disabled, .nattrs = u->nattrs};
	size_t nv = 0;
	for (int f = 0; f < IDS_F__COUNT; f++)
		if (u->f[f] && !(d.f[f] = ids_arena_strdup(a, u->f[f])))
			return -ENOMEM;
	if (u->invalid && !(d.invalid = ids_arena_strdup(a, u->invalid)))
		return -ENOMEM;
	for (size_t i = 0; i < u->nattrs; i++)
		nv += u->attrs[i].nvalues;
	if (u->nattrs && !(d.attrs = ids_arena_alloc(a, u->nattrs * sizeof(*d.attrs) + nv * sizeof(char *))))
		return -ENOMEM;
	const char **vals = u->nattrs ? (const char **)(d.attrs + u->nattrs) : NULL;
	for (size_t i = 0; i < u->nattrs; i++) {
		d.attrs[i] =
		    (struct ids_attr){ids_arena_strdup(a, u->attrs[i].name), vals, u->attrs[i].nvalues};
		if (!d.attrs[i].name)
			return -ENOMEM;
		for (size_t j = 0; j < u->attrs[i].nvalues; j++)
			if (!(*vals++ = ids_arena_strdup(a, u->attrs[i].values[j])))
				return -ENOMEM;
	}
	*ret = d;
	return 0;
}

static int user_ext_cmp(const void *key, const void *elem)
{
	return ids_strcmp0(key, ((const struct ids_user *)elem)->f[IDS_F_EXTERNAL_ID]);
}

/* The user index with external id ext, or -1 (users sorted by it). */
static long find_user(const struct ids_snapshot *s, const char *ext)
{
	const struct ids_user *u =
	    s->nusers ? bsearch(ext, s->users, s->nusers, sizeof(*s->users), user_ext_cmp) : NULL;
	return u ? (long)(u - s->users) : -1;
}

static const enum ids_ref key_kind[3] = {IDS_REF_ID, IDS_REF_DN, IDS_REF_USERNAME};
static const enum ids_field key_field[3] = {IDS_F_EXTERNAL_ID, IDS_F_DN, IDS_F_USERNAME};

static bool same_keys(const struct ids_user *a, const struct ids_user *b)
{
	for (int i = 0; i < 3; i++)
		if (ids_strcmp0(a->f[key_field[i]], b->f[key_field[i]]))
			return false;
	return true;
}

/* User i is about to be replaced or removed: a reference his key made
 * (ids_snapshot_finish's claims borrow the user's own string, which may
 * be the image's: ids_image_replay) gets a copy of its own, since the
 * image frees the old string when this run commits, and the reference
 * stays. */
static int rehome(struct patch *pt, size_t i)
{
	const struct ids_user *u = &pt->s->users[i];
	uint32_t v;
	for (int j = 0; j < 3; j++) {
		const char *key = u->f[key_field[j]];
		struct ids_strmap *m = &pt->k->map[key_kind[j]];
		if (!key || !ids_strmap_get(m, key, &v) || pt->k->refs[v].s != key)
			continue;
		char *c = ids_arena_strdup(&pt->k->strs, key);
		if (!c)
			return -ENOMEM;
		ids_strmap_del(m, key);
		int r = ids_strmap_put(m, c, v, NULL);
		if (r < 0)
			return r;
		pt->k->refs[v].s = c;
	}
	return 0;
}

/* User i is gone: his keys name nothing now. */
static void remove_user(struct patch *pt, size_t i)
{
	const struct ids_user *u = &pt->s->users[i];
	uint32_t v;
	for (int j = 0; j < 3; j++) {
		const char *key = u->f[key_field[j]];
		if (!key || !ids_strmap_get(&pt->k->map[key_kind[j]], key, &v) || pt->k->refs[v].target != i)
			continue;
		pt->k->refs[v].target = NONE;
		pt->s->unresolved_members += pt->k->refs[v].count;
	}
	pt->removed[i] = 1;
	pt->nremoved++;
}

/* The user a record's bytes make, in a one-user snapshot finished as
 * after a full read (its checks: required fields, invalid values).  *ret
 * new. */
static int one_user(const char *key, int kind, const void *rec, size_t len, struct ids_snapshot **ret)
{
	struct ids_snapshot *t = NULL;
	int r = ids_snapshot_new(&t);
	if (r >= 0 && (r = ids_image_record_replay(key, kind, rec, len, t)) >= 0)
		r = ids_snapshot_finish(t);
	if (r >= 0 && t->nusers != 1)
		r = -EINVAL;
	if (r < 0) {
		ids_snapshot_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

/* A user record changed: replaced in place when his keys stay, else the
 * old one removed and the new one added (at the merge). */
static int patch_user(struct patch *pt, const struct ids_image_change *c)
{
	struct ids_snapshot *s = pt->s, *t = NULL;
	long old = -1;
	char *ext = NULL;
	int r = 0;
	if (c->was_kind) {
		if ((r = ids_image_record_field(c->key, c->was_kind, c->was, c->was_len, IDS_F_EXTERNAL_ID,
						&ext)) < 0)
			return r;
		old = ext ? find_user(s, ext) : -1;
		free(ext);
		if (old < 0 || pt->removed[old])
			return refuse(pt, "a changed user is not found by his old external id");
		if ((r = rehome(pt, (size_t)old)) < 0)
			return r;
	}
	if (c->now_kind && (r = one_user(c->key, c->now_kind, c->now, c->now_len, &t)) < 0)
		return r;
	if (t && !t->users[0].f[IDS_F_EXTERNAL_ID])
		r = refuse(pt, "a user without an external id");
	else if (t && old >= 0 && same_keys(&s->users[old], &t->users[0])) {
		struct ids_user *u = &s->users[old], d;
		if ((r = copy_user(s, &t->users[0], &d)) >= 0) {
			d.groups = u->groups;
			d.ngroups = u->ngroups;
			*u = d;
		}
	} else {
		if (old >= 0)
			remove_user(pt, (size_t)old);
		if (t &&
		    (r = ids_grow(&pt->added, &pt->cap_added, pt->nadded + 1, sizeof(*pt->added))) >= 0 &&
		    (r = copy_user(s, &t->users[0], &pt->added[pt->nadded])) >= 0)
			pt->nadded++;
	}
	ids_snapshot_free(t);
	return r;
}

static int cmp_ext(const void *a, const void *b)
{
	return ids_strcmp0(((const struct ids_user *)a)->f[IDS_F_EXTERNAL_ID],
			   ((const struct ids_user *)b)->f[IDS_F_EXTERNAL_ID]);
}

/* The users removed and added, merged into a new sorted array; every
 * reference's target moved with its user. */
static int merge_users(struct patch *pt)
{
	struct ids_snapshot *s = pt->s;
	struct snap_keep *k = pt->k;
	size_t n0 = s->nusers, n1 = n0 - pt->nremoved + pt->nadded, i = 0, j = 0, o = 0;
	if (pt->nadded > 1) /* NULL when none: not for qsort */
		qsort(pt->added, pt->nadded, sizeof(*pt->added), cmp_ext);
	for (size_t a = 0; a < pt->nadded; a++) {
		long e = find_user(s, pt->added[a].f[IDS_F_EXTERNAL_ID]);
		if ((a && !cmp_ext(&pt->added[a - 1], &pt->added[a])) || (e >= 0 && !pt->removed[e]))
			return refuse(pt, "a new user's external id is another user's");
	}
	struct ids_user *users = malloc((n1 ? n1 : 1) * sizeof(*users));
	struct u32v *dir = malloc((n1 ? n1 : 1) * sizeof(*dir));
	uint32_t *omap = malloc((n0 ? n0 : 1) * sizeof(*omap));
	pt->apos = malloc((pt->nadded ? pt->nadded : 1) * sizeof(*pt->apos));
	if (!users || !dir || !omap || !pt->apos) {
		free(users);
		free(dir);
		free(omap);
		return -ENOMEM;
	}
	while (i < n0 || j < pt->nadded) {
		if (i < n0 && pt->removed[i]) {
			omap[i++] = NONE;
		} else if (j == pt->nadded || (i < n0 && cmp_ext(&s->users[i], &pt->added[j]) < 0)) {
			users[o] = s->users[i];
			dir[o] = k->udirect[i];
			omap[i++] = (uint32_t)o++;
		} else {
			users[o] = pt->added[j];
			dir[o] = (struct u32v){0};
			pt->apos[j++] = (uint32_t)o++;
		}
	}
	for (size_t r = 0; r < k->nrefs; r++) {
		uint32_t t = k->refs[r].target;
		if (t != NONE)
			k->refs[r].target = t < n0 ? omap[t] : (uint32_t)(t - n0 + n1);
	}
	free(omap);
	free(s->users);
	free(k->udirect);
	s->users = users;
	k->udirect = dir;
	s->nusers = s->priv->ucap = n1;
	return 0;
}

/* The added users claim their keys; the groups that named them already
 * (references that named nothing) become their direct groups. */
static int claim_added(struct patch *pt)
{
	struct ids_snapshot *s = pt->s;
	struct snap_keep *k = pt->k;
	bool named = false;
	for (size_t a = 0; a < pt->nadded; a++) {
		const struct ids_user *u = &s->users[pt->apos[a]];
		pt->dirty[pt->apos[a]] = 1;
		for (int j = 0; j < 3; j++) {
			uint32_t v;
			int r = snap_keep_claim(k, key_kind[j], u->f[key_field[j]], pt->apos[a], &v);
			if (r < 0)
				return r;
			if (r == 0)
				return refuse(pt, "a new user's DN or username is another entry's");
			if (v == NONE) /* no such key, or a kind no member uses */
				continue;
			s->unresolved_members -= k->refs[v].count;
			named = named || k->refs[v].count;
		}
	}
	if (!named)
		return 0;
	/* one pass over every membership: rare (a user named before he came) */
	for (size_t g = 0; g < s->ngroups; g++)
		for (size_t m = 0; m < k->gmem[g].n; m++) {
			uint32_t t = k->refs[k->gmem[g].v[m]].target;
			if (t < s->nusers && pt->dirty[t]) {
				struct u32v *d = &k->udirect[t];
				uint32_t *v = ids_arena_alloc(&k->darena, (d->n + 1) * sizeof(*v));
				if (!v)
					return -ENOMEM;
				if (d->n) /* d->v NULL when none: not for memcpy */
					memcpy(v, d->v, d->n * sizeof(*v));
				v[d->n] = (uint32_t)g;
				d->v = v;
				d->n = snap_sort_unique(v, d->n + 1);
			}
		}
	return 0;
}

/* Adds (add) or removes g in the sorted set *v[0..*n), the new set in
 * arena a (the old one stays: a patch's leftovers, bounded). */
static int set_edit(struct ids_arena *a, uint32_t **v, size_t *n, uint32_t g, bool add)
{
	uint32_t *nv = ids_arena_alloc(a, (*n + 1) * sizeof(*nv));
	size_t o = 0;
	if (!nv)
		return -ENOMEM;
	for (size_t i = 0; i < *n; i++) {
		if (add && o == i && (*v)[i] > g)
			nv[o++] = g;
		if (add || (*v)[i] != g)
			nv[o++] = (*v)[i];
	}
	if (add && o == *n)
		nv[o++] = g;
	*v = nv;
	*n = o;
	return 0;
}

/* Member t of group g comes (add) or goes: a user's direct groups, or a
 * group's parents. */
static int edge(struct patch *pt, uint32_t t, uint32_t g, bool add)
{
	struct ids_snapshot *s = pt->s;
	if (t < s->nusers) {
		pt->dirty[t] = 1;
		return set_edit(&pt->k->darena, &pt->k->udirect[t].v, &pt->k->udirect[t].n, g, add);
	}
	struct ids_group *c = &s->groups[t - s->nusers];
	pt->graph = true;
	return set_edit(&s->priv->arena, &c->parents, &c->nparents, g, add);
}

/* Group g's members become nv[0..nn) (newinv invalid ones besides):
 * counts, unresolved members, and the edges to the targets that are in
 * one list and not the other.  Steals nv. */
static int members_diff(struct patch *pt, uint32_t g, uint32_t *nv, size_t nn, uint32_t newinv)
{
	struct ids_snapshot *s = pt->s;
	struct snap_keep *k = pt->k;
	struct u32v *old = &k->gmem[g];
	int r = 0;
	uint32_t gen = ++pt->gen;
	s->unresolved_members += (size_t)newinv - k->ginvalid[g];
	k->ginvalid[g] = newinv;
	for (size_t i = 0; i < old->n; i++) {
		struct kref *f = &k->refs[old->v[i]];
		f->count--;
		if (f->target == NONE)
			s->unresolved_members--;
		else
			pt->omark[f->target] = gen;
	}
	for (size_t i = 0; i < nn; i++) {
		struct kref *f = &k->refs[nv[i]];
		f->count++;
		if (f->target == NONE)
			s->unresolved_members++;
		else
			pt->nmark[f->target] = gen;
	}
	for (size_t i = 0; r >= 0 && i < old->n; i++) {
		uint32_t t = k->refs[old->v[i]].target;
		if (t != NONE && pt->omark[t] == gen && pt->nmark[t] != gen) {
			pt->omark[t] = 0;
			r = edge(pt, t, g, false);
		}
	}
	for (size_t i = 0; r >= 0 && i < nn; i++) {
		uint32_t t = k->refs[nv[i]].target;
		if (t != NONE && pt->nmark[t] == gen && pt->omark[t] != gen) {
			pt->nmark[t] = 0;
			r = edge(pt, t, g, true);
		}
	}
	free(old->v);
	old->v = nv;
	old->n = nn;
	return r;
}

/* A group record changed (it stays a group, with its id and DN): its
 * name and e-mail, and its members. */
static int patch_group(struct patch *pt, const struct ids_image_change *c)
{
	struct ids_snapshot *s = pt->s, *t = NULL;
	char *id = NULL;
	int r = ids_image_record_field(c->key, c->was_kind, c->was, c->was_len, IDS_F_EXTERNAL_ID, &id);
	long g = r >= 0 && id ? ids_snapshot_group_by_id(s, id) : -1;
	free(id);
	if (r < 0)
		return r;
	if (g < 0)
		return refuse(pt, "a changed group is not found by its old id");
	if ((r = ids_snapshot_new(&t)) < 0)
		return r;
	t->priv->pkeep = pt->k; /* its members straight to kept references */
	struct ids_group *gr = &s->groups[g];
	if ((r = ids_image_record_replay(c->key, c->now_kind, c->now, c->now_len, t)) < 0) {
		if (r == -EAGAIN)
			r = refuse(pt, "a member that is no kept reference (a new kind, a NUL byte)");
		goto out;
	}
	if (t->ngroups != 1 || !t->groups[0].id || strcmp(t->groups[0].id, gr->id) ||
	    ids_strcmp0(t->groups[0].dn, gr->dn)) {
		r = refuse(pt, "a group's id or DN changed");
		goto out;
	}
	if (ids_strcmp0(t->groups[0].name, gr->name) &&
	    !(gr->name = ids_arena_strdup(&s->priv->arena, t->groups[0].name)) && t->groups[0].name)
		r = -ENOMEM;
	if (r >= 0 && ids_strcmp0(t->groups[0].email, gr->email) &&
	    !(gr->email = ids_arena_strdup(&s->priv->arena, t->groups[0].email)) && t->groups[0].email)
		r = -ENOMEM;
	if (r >= 0) {
		r = members_diff(pt, (uint32_t)g, t->priv->pmem, t->priv->npmem,
				 (uint32_t)t->unresolved_members);
		t->priv->pmem = NULL; /* members_diff stole it */
	}
out:
	ids_snapshot_free(t);
	return r;
}

/* Every user's closure again when a group's parents changed, else the
 * closures of the users whose direct groups changed. */
static int closures(struct patch *pt)
{
	struct ids_snapshot *s = pt->s;
	struct closure cl = {0};
	uint32_t *buf = NULL;
	size_t cap = 0;
	int r = snap_closure_build(&cl, s);
	if (r >= 0 && pt->graph)
		ids_arena_free(&s->priv->garena);
	for (size_t i = 0; r >= 0 && i < s->nusers; i++)
		if (pt->graph || pt->dirty[i])
			r = snap_user_closure(s, &cl, &s->users[i], pt->k->udirect[i].v, pt->k->udirect[i].n,
					      &buf, &cap);
	free(buf);
	snap_closure_free(&cl);
	return r;
}

static bool is_group_change(const struct ids_image_change *c)
{
	return c->was_kind == IDS_IMAGE_GROUPS || c->now_kind == IDS_IMAGE_GROUPS;
}

/* Users first (removed, replaced, added: merged), then groups, whose
 * members resolve against the users as they are now. */
static int patch_all(struct patch *pt)
{
	struct ids_snapshot *s = pt->s;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < pt->nch; i++) {
		const struct ids_image_change *c = &pt->ch[i];
		if (is_group_change(c) &&
		    (c->was_kind != IDS_IMAGE_GROUPS || c->now_kind != IDS_IMAGE_GROUPS))
			r = refuse(pt, "a group added or removed");
		else if (!is_group_change(c))
			r = patch_user(pt, c);
	}
	if (r >= 0 && (pt->nremoved || pt->nadded))
		r = merge_users(pt);
	size_t nt = s->nusers + s->ngroups;
	if (r >= 0 && (!(pt->dirty = calloc(s->nusers ? s->nusers : 1, 1)) ||
		       !(pt->omark = calloc(nt ? nt : 1, sizeof(uint32_t))) ||
		       !(pt->nmark = calloc(nt ? nt : 1, sizeof(uint32_t)))))
		r = -ENOMEM;
	if (r >= 0 && pt->nadded)
		r = claim_added(pt);
	for (size_t i = 0; r >= 0 && i < pt->nch; i++)
		if (is_group_change(&pt->ch[i]))
			r = patch_group(pt, &pt->ch[i]);
	if (r >= 0)
		r = closures(pt);
	return r;
}

int ids_snapshot_patch(struct ids_snapshot *s, const struct ids_image *img, const char **ret_why)
{
	static const char *unused;
	struct patch pt = {.s = s, .why = ret_why ? ret_why : &unused};
	if (!ids_snapshot_kept(s))
		return refuse(&pt, "no kept snapshot");
	pt.k = s->priv->keep;
	int r = ids_image_each_change(img, collect, &pt);
	if (r >= 0 && pt.k->patched + pt.nch > s->nusers / PATCH_SHARE + PATCH_MIN)
		r = refuse(&pt, "many records patched since the whole replay: replayed to start afresh");
	if (r >= 0 && !(pt.removed = calloc(s->nusers ? s->nusers : 1, 1)))
		r = -ENOMEM;
	if (r >= 0)
		r = patch_all(&pt);
	if (r >= 0)
		pt.k->patched += pt.nch;
	free(pt.ch);
	free(pt.removed);
	free(pt.added);
	free(pt.apos);
	free(pt.dirty);
	free(pt.omark);
	free(pt.nmark);
	return r < 0 ? r : 0;
}
