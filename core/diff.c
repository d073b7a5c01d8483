/* diff.c — (snapshot, desired state, current rows) -> plan (plan.h).
 *
 * Pure and deterministic: the plan depends on the contents of its inputs,
 * never on the order of the current rows (every "first holder" lookup
 * prefers the lowest row id) nor on hash-map iteration (nothing iterates a
 * map; every output list is sorted at the end).
 *
 * The passes, in the order semantics.md needs them:
 *   1. index the current rows: managed rows by external id, usernames,
 *      e-mails of active rows, adoptable e-mails, grants by user;
 *   2. decide each managed row's fate (keep / active / inactive + reason)
 *      from the snapshot, before anything claims a name, so that an e-mail
 *      freed by a deactivation anywhere in the run is known to be free;
 *   3. skipped (invalid) users, then deactivations;
 *   4. managed users that stay or become active, in snapshot order;
 *   5. new users (adopt / conflict / create), in snapshot order.
 * Users with rows go before new ones so that a managed user keeps its name
 * when a newcomer wants the same one (the newcomer gets the conflict).
 *
 * Renames never free a username or an e-mail inside the run (only a
 * deactivation frees an e-mail): the store can then apply deactivations
 * first and everything else in any order without hitting a unique index,
 * and a swap or a chain of renames settles over the next runs.
 *
 * Sized for a million users and millions of grants, where a resync that
 * changes nothing must cost next to nothing: the current grants are
 * bucketed per row (no global sort), the name and e-mail indexes are only
 * built when some user needs a uniqueness check, the plan borrows its
 * strings from its inputs instead of copying them, and the grants are
 * planned last, user by user in print order (each user's come out of the
 * merge in key order): millions of grants are never sorted or moved. */
#include "ids/plan.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_ROW UINT32_MAX

enum fate {
	FATE_NONE,     /* not a row of this connector */
	FATE_KEEP,     /* its snapshot entry is invalid: leave the row as it is */
	FATE_ACTIVE,   /* enabled and in scope: update / reactivate */
	FATE_INACTIVE, /* disabled, out of scope or gone: deactivate */
};

struct row_state {
	unsigned char fate;
	const char *reason; /* FATE_INACTIVE: the deactivation reason */
	size_t snap;	    /* the valid snapshot user matched, SIZE_MAX if none */
};

/* A row index with its id, to visit rows in id order whatever the load
 * order was. */
struct row_ref {
	int64_t id;
	uint32_t row;
};

struct diff;

/* A string index over rows of the current state (or users of the
 * snapshot): each 8-byte slot holds a 32-bit hash of the key and the
 * row, the key itself is read from the row — half the memory of a map
 * that stores key pointers, and nothing copied or lower-cased (a million
 * rows, three such indexes).  `field` names the key: an ids_cur_user
 * field (rows) or an ids_field (snapshot users, when `snap`). */
struct idx {
	uint64_t *slot; /* hash << 32 | (id + 1); 0 empty */
	size_t cap, len;
	size_t field;
	bool snap, fold; /* fold: ASCII case-insensitive */
};

struct diff {
	const struct ids_snapshot *s;
	const struct ids_desired_set *d;
	const struct ids_current *c;
	const struct ids_diff_opts *o;
	struct ids_plan *p;
	size_t ucap, gcap;

	struct ids_arena tmp;			  /* lower-cased keys; lives as long as the maps */
	struct idx managed;			  /* external_id -> row owned by this connector */
	struct idx names;			  /* username (any case) -> row holding it, any state */
	struct idx emails;			  /* email (any case) -> active row holding it */
	struct idx adoptable;			  /* email (any case) -> unmanaged row, active ones first */
	struct idx claimed_names, claimed_emails; /* -> snapshot index claiming it */
	struct ids_strmap tenants, new_tenants, missing_tenants, new_groups;

	struct row_state *rows; /* parallel to c->users */
	const char **skip;	/* parallel to s->users: why it is skipped, or NULL */
	uint32_t *snap_row;	/* parallel to s->users: its managed row, or NO_ROW */
	/* c->grants bucketed by row: row i's are c->grants[gby[goff[i] ..
	 * goff[i+1])], sorted by (tenant, kind, name) */
	uint32_t *gby;
	size_t *goff;
	bool names_built;	      /* names, emails and adoptable are filled */
	const struct ids_grant **des; /* one user's wanted grants (scratch) */
	size_t cap_des;
	struct grant_job *jobs; /* users whose grants are to be planned */
	size_t njobs, cap_jobs;
	struct {
		const char *tenant;
		bool ok;
	} tcache[8]; /* tenant_ok() by pointer */
	unsigned tnext;
	struct ids_buf scratch;
};

/* The user whose grants are being planned: its key and display name, as
 * the grants show them. */
struct who {
	const char *ext, *name;
	int64_t id; /* its row, set by diff_grants */
};

/* One user's grants to plan (diff_grants' arguments), queued by the user
 * passes and planned at the end in print order. */
struct grant_job {
	const struct ids_desired *want;
	uint32_t row;
	bool stays_active;
	struct who w;
};

/* ---------------- small helpers ---------------- */

static unsigned char fold_byte(unsigned char c, bool fold)
{
	return fold && c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static uint32_t idx_hash(const char *s, bool fold)
{
	uint32_t h = 0x811c9dc5u;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ fold_byte(*p, fold)) * 0x01000193u;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	return h;
}

static bool idx_equal(const char *a, const char *b, bool fold)
{
	if (!fold)
		return strcmp(a, b) == 0;
	for (; *a && fold_byte((unsigned char)*a, true) == fold_byte((unsigned char)*b, true); a++, b++)
		;
	return !*a && !*b;
}

/* The key of id in ix: a field of a current row or of a snapshot user. */
static const char *idx_key(const struct diff *x, const struct idx *ix, uint32_t id)
{
	if (ix->snap)
		return x->s->users[id].f[ix->field];
	return *(const char *const *)((const char *)&x->c->users[id] + ix->field);
}

/* The id of key, NO_ROW when absent. */
static uint32_t idx_get(const struct diff *x, const struct idx *ix, const char *key)
{
	if (!ix->cap || !key)
		return NO_ROW;
	uint32_t h = idx_hash(key, ix->fold);
	for (size_t j = h & (ix->cap - 1); ix->slot[j]; j = (j + 1) & (ix->cap - 1)) {
		uint64_t s = ix->slot[j];
		uint32_t id = (uint32_t)(s & 0xffffffffu) - 1;
		if ((uint32_t)(s >> 32) == h && idx_equal(idx_key(x, ix, id), key, ix->fold))
			return id;
	}
	return NO_ROW;
}

/* Adds id under its own key, unless the key is there (the first holder
 * stays).  -ENOMEM or 0. */
static int idx_put(const struct diff *x, struct idx *ix, uint32_t id)
{
	const char *key = idx_key(x, ix, id);
	if (!key)
		return 0;
	if ((ix->len + 1) * 2 > ix->cap) {
		size_t cap = ix->cap ? ix->cap * 2 : 64;
		uint64_t *t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < ix->cap; i++) {
			if (!ix->slot[i])
				continue;
			size_t j = (ix->slot[i] >> 32) & (cap - 1);
			while (t[j])
				j = (j + 1) & (cap - 1);
			t[j] = ix->slot[i];
		}
		free(ix->slot);
		ix->slot = t;
		ix->cap = cap;
	}
	uint32_t h = idx_hash(key, ix->fold);
	size_t j = h & (ix->cap - 1);
	for (; ix->slot[j]; j = (j + 1) & (ix->cap - 1)) {
		uint64_t s = ix->slot[j];
		if ((uint32_t)(s >> 32) == h &&
		    idx_equal(idx_key(x, ix, (uint32_t)(s & 0xffffffffu) - 1), key, ix->fold))
			return 0;
	}
	ix->slot[j] = (uint64_t)h << 32 | (uint64_t)(id + 1);
	ix->len++;
	return 0;
}

static void idx_free(struct idx *ix)
{
	free(ix->slot);
	ix->slot = NULL;
	ix->cap = ix->len = 0;
}

static int cmp_grant_key(enum ids_grant_kind ka, const char *ta, const char *na, enum ids_grant_kind kb,
			 const char *tb, const char *nb)
{
	/* interned strings: one pointer for most equal pairs */
	int r = ta == tb ? 0 : ids_strcmp0(ta, tb);
	if (r)
		return r;
	if (ka != kb)
		return ka < kb ? -1 : 1;
	return na == nb ? 0 : ids_strcmp0(na, nb);
}

static int cmp_row_ref(const void *a, const void *b)
{
	const struct row_ref *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->row < y->row ? -1 : x->row > y->row;
}

static int cmp_cur_grant(const void *a, const void *b)
{
	const struct ids_cur_grant *x = *(const struct ids_cur_grant *const *)a;
	const struct ids_cur_grant *y = *(const struct ids_cur_grant *const *)b;
	if (x->user_id != y->user_id)
		return x->user_id < y->user_id ? -1 : 1;
	int r = cmp_grant_key(x->kind, x->tenant, x->name, y->kind, y->tenant, y->name);
	if (r)
		return r;
	/* the schema forbids two rows with one key; order them anyway */
	return (int)x->manual - (int)y->manual;
}

static int cmp_des_grant(const void *a, const void *b)
{
	const struct ids_grant *x = *(const struct ids_grant *const *)a;
	const struct ids_grant *y = *(const struct ids_grant *const *)b;
	return cmp_grant_key(x->kind, x->tenant, x->name, y->kind, y->tenant, y->name);
}

/* The order of the text plan: by username, then external id (the id and
 * the flags only break ties that real data cannot produce). */
static int cmp_plan_user(const void *a, const void *b)
{
	const struct ids_plan_user *x = a, *y = b;
	int r = ids_strcmp0(x->username, y->username);
	if (!r)
		r = ids_strcmp0(x->external_id, y->external_id);
	if (!r && x->id != y->id)
		r = x->id < y->id ? -1 : 1;
	if (!r && x->flags != y->flags)
		r = x->flags < y->flags ? -1 : 1;
	return r;
}

static int cmp_plan_grant(const void *a, const void *b)
{
	const struct ids_plan_grant *x = a, *y = b;
	int r = ids_strcmp0(x->username, y->username);
	if (!r)
		r = ids_strcmp0(x->external_id, y->external_id);
	if (!r)
		r = cmp_grant_key(x->kind, x->tenant, x->name, y->kind, y->tenant, y->name);
	if (!r && x->op != y->op)
		r = x->op < y->op ? -1 : 1;
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* qsort, minus the undefined behaviour of qsort(NULL, 0, ...) on the
 * empty arrays an empty plan has. */
static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

static bool is_released(const struct diff *x, uint32_t row)
{
	/* only a deactivation in this run frees an e-mail (see the top) */
	return x->c->users[row].active && x->rows[row].fate == FATE_INACTIVE;
}

/* Formats a reason into the plan's arena. */
static const char *reasonf(struct diff *x, int *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *reasonf(struct diff *x, int *err, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n >= 0)
		s = ids_arena_alloc(&x->p->arena, (size_t)n + 1);
	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* ---------------- output arrays ---------------- */

static int push_user(struct diff *x, const struct ids_plan_user *u)
{
	struct ids_plan *p = x->p;
	if (p->nusers == x->ucap) {
		size_t cap = x->ucap ? x->ucap * 2 : 32;
		struct ids_plan_user *v = realloc(p->users, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->users = v;
		x->ucap = cap;
	}
	p->users[p->nusers++] = *u;
	return 0;
}

static int push_grant(struct diff *x, const struct ids_plan_grant *g)
{
	struct ids_plan *p = x->p;
	if (p->ngrants == x->gcap) {
		size_t cap = x->gcap ? x->gcap * 2 : 64;
		struct ids_plan_grant *v = realloc(p->grants, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->grants = v;
		x->gcap = cap;
	}
	p->grants[p->ngrants++] = *g;
	return 0;
}

/* A plan entry for one user.  Values come from the snapshot user u (what
 * is wanted) or, with from_row, from the current row (a deactivation, a
 * managed user left as it is): borrowed, not copied (plan.h). */
static int add_user(struct diff *x, unsigned flags, unsigned changed, const struct ids_cur_user *row,
		    const struct ids_user *u, bool company_admin, const char *reason, bool from_row)
{
	const char *ext = u && u->f[IDS_F_EXTERNAL_ID] ? u->f[IDS_F_EXTERNAL_ID]
			  : row			       ? row->external_id
						       : NULL;
	struct ids_plan_user pu = {
	    .flags = flags,
	    .changed = changed,
	    .id = row ? row->id : 0,
	    .external_id = ext,
	    .company_admin = company_admin,
	    .reason = reason,
	    .cur = row,
	};
	if (from_row && row) {
		pu.username = row->username;
		pu.email = row->email;
		pu.first_name = row->first_name;
		pu.last_name = row->last_name;
		pu.display_name = row->display_name;
	} else if (u) {
		pu.username = u->f[IDS_F_USERNAME];
		pu.email = u->f[IDS_F_EMAIL];
		pu.first_name = u->f[IDS_F_FIRST_NAME];
		pu.last_name = u->f[IDS_F_LAST_NAME];
		pu.display_name = u->f[IDS_F_DISPLAY_NAME];
	}
	return push_user(x, &pu);
}

/* ---------------- pass 1: index the current state ---------------- */

static int cmp_cur_index(const void *a, const void *b, void *ud)
{
	const struct ids_cur_grant *g = ud;
	const struct ids_cur_grant *x = &g[*(const uint32_t *)a], *y = &g[*(const uint32_t *)b];
	return cmp_cur_grant(&x, &y);
}

/* Sorts a short run of grant indices: insertion sort for the few grants a
 * user has, qsort beyond. */
static void sort_grants(uint32_t *v, size_t n, const struct ids_cur_grant *g)
{
	if (n > 16) {
		qsort_r(v, n, sizeof(*v), cmp_cur_index, (void *)g);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		uint32_t t = v[i];
		size_t j = i;
		while (j > 0 && cmp_cur_index(&v[j - 1], &t, (void *)g) > 0) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = t;
	}
}

/* c->grants into per-row buckets (x->gby, x->goff). */
static int bucket_grants(struct diff *x)
{
	const struct ids_current *c = x->c;
	struct ids_current_index ix = {0};
	size_t *fill = NULL;
	uint32_t *rowof = NULL;
	int r = -ENOMEM;

	if (c->ngrants >= NO_ROW)
		return -E2BIG;
	x->goff = calloc(c->nusers + 1, sizeof(*x->goff));
	x->gby = malloc((c->ngrants ? c->ngrants : 1) * sizeof(*x->gby));
	rowof = malloc((c->ngrants ? c->ngrants : 1) * sizeof(*rowof));
	if (!x->goff || !x->gby || !rowof || ids_current_index_build(c, &ix) < 0)
		goto out;
	/* counting sort by row; a grant of no loaded user belongs to nobody
	 * this diff can touch */
	for (size_t i = 0; i < c->ngrants; i++) {
		uint32_t row;
		rowof[i] = ids_current_index_get(&ix, c->grants[i].user_id, &row) ? row : NO_ROW;
		if (rowof[i] != NO_ROW)
			x->goff[row + 1]++;
	}
	for (size_t i = 0; i < c->nusers; i++)
		x->goff[i + 1] += x->goff[i];
	fill = malloc((c->nusers ? c->nusers : 1) * sizeof(*fill));
	if (!fill)
		goto out;
	memcpy(fill, x->goff, c->nusers * sizeof(*fill));
	for (size_t i = 0; i < c->ngrants; i++)
		if (rowof[i] != NO_ROW)
			x->gby[fill[rowof[i]]++] = (uint32_t)i;
	for (size_t i = 0; i < c->nusers; i++)
		sort_grants(x->gby + x->goff[i], x->goff[i + 1] - x->goff[i], c->grants);
	r = 0;
out:
	free(fill);
	free(rowof);
	ids_current_index_free(&ix);
	return r;
}

/* The rows by id, so that "first holder wins" means "lowest id wins"
 * whatever order the store loaded the rows in.  *ret new. */
static int rows_by_id(const struct ids_current *c, struct row_ref **ret)
{
	struct row_ref *order = calloc(c->nusers ? c->nusers : 1, sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < c->nusers; i++)
		order[i] = (struct row_ref){c->users[i].id, (uint32_t)i};
	sort(order, c->nusers, sizeof(*order), cmp_row_ref);
	*ret = order;
	return 0;
}

static int index_current(struct diff *x)
{
	const struct ids_current *c = x->c;
	struct row_ref *order = NULL;
	int r;

	if (c->nusers >= NO_ROW)
		return -E2BIG;
	x->rows = calloc(c->nusers ? c->nusers : 1, sizeof(*x->rows));
	if (!x->rows)
		return -ENOMEM;
	if ((r = bucket_grants(x)) < 0 || (r = rows_by_id(c, &order)) < 0)
		goto out;
	for (size_t i = 0; i < c->nusers; i++) {
		uint32_t row = order[i].row;
		const struct ids_cur_user *cu = &c->users[row];
		x->rows[row].snap = SIZE_MAX;
		bool ours = cu->source && strcmp(cu->source, x->o->connector) == 0;
		if (ours && cu->external_id) {
			x->rows[row].fate = FATE_INACTIVE; /* until the snapshot says otherwise */
			if ((r = idx_put(x, &x->managed, row)) < 0)
				goto out;
			if (cu->active)
				x->p->active_managed++;
		}
	}
	x->p->active_managed += (long)c->active_others; /* a partial load's others */
	x->p->bases_fix_users = c->bases_fix_users;
	x->p->bases_fix_grants = c->bases_fix_grants;
	for (size_t i = 0; i < c->tenants.n; i++)
		if ((r = ids_strmap_put(&x->tenants, c->tenants.v[i], 1, NULL)) < 0)
			goto out;
	r = 0;
out:
	free(order);
	return r;
}

/* The name and e-mail indexes, built when the first user needs a
 * uniqueness check (never, in a run where nobody is new, renamed or
 * reactivated). */
static int index_names(struct diff *x)
{
	const struct ids_current *c = x->c;
	struct row_ref *order = NULL;
	int r;

	if (x->names_built)
		return 0;
	if ((r = rows_by_id(c, &order)) < 0)
		return r;
	for (size_t i = 0; i < c->nusers; i++) {
		uint32_t row = order[i].row;
		const struct ids_cur_user *cu = &c->users[row];
		if ((r = idx_put(x, &x->names, row)) < 0 ||
		    (cu->active && (r = idx_put(x, &x->emails, row)) < 0))
			goto nomem;
	}
	/* adoption prefers the active unmanaged holder of an e-mail: the
	 * inactive ones are old accounts the active one replaced */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < c->nusers; i++) {
			const struct ids_cur_user *cu = &c->users[order[i].row];
			if (cu->source || !cu->email || cu->active != (pass == 0))
				continue;
			if ((r = idx_put(x, &x->adoptable, order[i].row)) < 0)
				goto out;
		}
	}
	x->names_built = true;
	r = 0;
	goto out;
nomem:
	r = -ENOMEM;
out:
	free(order);
	return r;
}

/* The grants of row `row` (NO_ROW: none), as a range of x->gby. */
static void grants_of(const struct diff *x, uint32_t row, size_t *ret_lo, size_t *ret_hi)
{
	if (row == NO_ROW) {
		*ret_lo = *ret_hi = 0;
		return;
	}
	*ret_lo = x->goff[row];
	*ret_hi = x->goff[row + 1];
}

/* managed_grants: the connector's grant rows on its active users, the
 * base of the grant-removal threshold. */
static void count_managed_grants(struct diff *x)
{
	x->p->managed_grants = x->c->managed_others;
	for (size_t i = 0; i < x->c->nusers; i++) {
		const struct ids_cur_user *cu = &x->c->users[i];
		if (x->rows[i].fate == FATE_NONE || !cu->active)
			continue;
		size_t lo, hi;
		grants_of(x, (uint32_t)i, &lo, &hi);
		for (size_t j = lo; j < hi; j++)
			if (!x->c->grants[x->gby[j]].manual)
				x->p->managed_grants++;
	}
}

/* ---------------- pass 2: fate of every managed row ---------------- */

static const char *invalid_why(const struct ids_user *u)
{
	if (u->invalid)
		return u->invalid;
	/* the snapshot builder already refuses these; a hand-made snapshot
	 * must not crash the diff either */
	if (!u->f[IDS_F_EXTERNAL_ID] || !*u->f[IDS_F_EXTERNAL_ID])
		return "missing external id";
	if (!u->f[IDS_F_USERNAME] || !*u->f[IDS_F_USERNAME])
		return "missing username";
	return NULL;
}

/* `sync --user`: true for a snapshot entry or row this plan leaves alone. */
static bool outside(const struct diff *x, const char *ext)
{
	if (x->o->only)
		return !ext || !ids_strmap_get(x->o->only, ext, NULL);
	return x->o->only_user && (!ext || strcmp(ext, x->o->only_user) != 0);
}

/* `sync --user`: every row stays as it is except the one user's, which
 * only becomes active (a targeted run deactivates no one). */
static void keep_others(struct diff *x)
{
	if (!x->o->only_user && !x->o->only)
		return;
	for (size_t i = 0; i < x->c->nusers; i++)
		if (x->rows[i].fate != FATE_NONE && (outside(x, x->c->users[i].external_id) ||
						     (x->o->only_user && x->rows[i].fate == FATE_INACTIVE)))
			x->rows[i].fate = FATE_KEEP;
}

static int decide_fates(struct diff *x)
{
	const struct ids_snapshot *s = x->s;
	struct ids_strmap seen = {0};
	const char *prev = NULL; /* the last valid external id */
	bool sorted = true;
	int r = 0;

	for (size_t k = 0; k < s->nusers; k++) {
		const struct ids_user *u = &s->users[k];
		const char *ext = u->f[IDS_F_EXTERNAL_ID];
		x->skip[k] = NULL;
		x->snap_row[k] = NO_ROW;
		if (outside(x, ext))
			continue;
		x->skip[k] = invalid_why(u);
		/* a repeated external id: the builder marks these invalid, we
		 * do too rather than let two entries drive one row.  A finished
		 * snapshot is sorted by external id, so a repeat follows its
		 * first; should it not be sorted, a set of the ids seen does. */
		if (!x->skip[k]) {
			int c = prev ? strcmp(ext, prev) : 1;
			if (c < 0 && sorted) {
				sorted = false;
				for (size_t j = 0; j < k && r >= 0; j++)
					if (!x->skip[j])
						r = ids_strmap_put(&seen, s->users[j].f[IDS_F_EXTERNAL_ID],
								   (uint32_t)j, NULL);
				if (r < 0)
					goto out;
			}
			if (!sorted) {
				if ((r = ids_strmap_put(&seen, ext, (uint32_t)k, NULL)) < 0)
					goto out;
				if (r == 0)
					x->skip[k] = "duplicate external id";
			} else if (c == 0) {
				x->skip[k] = "duplicate external id";
			}
			if (!x->skip[k])
				prev = ext;
		}
		uint32_t row = idx_get(x, &x->managed, ext);
		if (row == NO_ROW)
			continue;
		x->snap_row[k] = row;
		struct row_state *rs = &x->rows[row];
		if (x->skip[k]) {
			/* safety rule 6: bad data keeps the row exactly as it is */
			rs->fate = FATE_KEEP;
			rs->reason = NULL;
			continue;
		}
		rs->snap = k;
		if (rs->fate == FATE_KEEP)
			continue;
		const struct ids_desired *want = &x->d->users[k];
		if (x->o->retire) {
			rs->fate = FATE_INACTIVE;
			rs->reason = "out_of_scope";
		} else if (u->disabled) {
			rs->fate = FATE_INACTIVE;
			rs->reason = "disabled_in_source";
		} else if (!want->in_scope) {
			rs->fate = FATE_INACTIVE;
			rs->reason = "out_of_scope";
		} else {
			rs->fate = FATE_ACTIVE;
		}
	}
	/* rows the snapshot does not name: gone from the directory (or, for
	 * retire, the connector itself is gone: out of scope) */
	for (size_t i = 0; i < x->c->nusers; i++)
		if (x->rows[i].fate == FATE_INACTIVE && x->rows[i].snap == SIZE_MAX)
			x->rows[i].reason = x->o->retire ? "out_of_scope" : "deleted_in_source";
	keep_others(x);
	r = 0;
out:
	ids_strmap_free(&seen);
	return r;
}

/* ---------------- grants ---------------- */

/* true when a grant for tenant may be planned; records the slug in
 * new_tenants or missing_tenants (each once). */
static int tenant_ok(struct diff *x, const char *tenant, bool *ret_ok)
{
	/* the rules hand out a few interned tenant pointers, millions of
	 * times: remember the last answers by pointer */
	for (size_t i = 0; i < sizeof(x->tcache) / sizeof(x->tcache[0]); i++)
		if (x->tcache[i].tenant == tenant) {
			*ret_ok = x->tcache[i].ok;
			return 0;
		}
	if (ids_strmap_get(&x->tenants, tenant, NULL)) {
		*ret_ok = true;
		goto remember;
	}
	bool create = x->o->auto_create_tenants;
	struct ids_strmap *m = create ? &x->new_tenants : &x->missing_tenants;
	struct ids_strv *v = create ? &x->p->new_tenants : &x->p->missing_tenants;
	int r = ids_strmap_put(m, tenant, 1, NULL);
	if (r > 0)
		r = ids_strv_push(v, tenant);
	if (r < 0)
		return r;
	*ret_ok = create;
remember:
	x->tcache[x->tnext].tenant = tenant;
	x->tcache[x->tnext].ok = *ret_ok;
	x->tnext = (x->tnext + 1) % (sizeof(x->tcache) / sizeof(x->tcache[0]));
	return 0;
}

/* An operator group that gets a member must exist: note "tenant\tgroup". */
static int note_group(struct diff *x, const char *tenant, const char *name)
{
	ids_buf_reset(&x->scratch);
	int r = ids_buf_printf(&x->scratch, "%s\t%s", tenant, name);
	if (r < 0)
		return r;
	const char *k = ids_arena_strdup(&x->tmp, x->scratch.p);
	if (!k)
		return -ENOMEM;
	r = ids_strmap_put(&x->new_groups, k, 1, NULL);
	if (r > 0)
		r = ids_strv_push(&x->p->new_groups, k);
	return r < 0 ? r : 0;
}

static int add_grant(struct diff *x, enum ids_grant_op op, enum ids_grant_kind kind, const char *tenant,
		     const char *name, int slots, int old_slots, uint32_t rules, struct who *w)
{
	int err;
	struct ids_plan_grant g = {
	    .op = (unsigned char)op,
	    .kind = (unsigned char)kind,
	    .rules = rules,
	    .external_id = w->ext,
	    .user_id = w->id,
	    .username = w->name,
	    .tenant = tenant,
	    .name = name,
	    .slots = slots,
	    .old_slots = old_slots,
	};
	if (op == IDS_GOP_REMOVE) {
		x->p->counts.grants_removed++;
	} else if (op == IDS_GOP_RULES) {
		/* neither added nor removed: no threshold counts it */
		x->p->counts.grants_rules_changed++;
	} else {
		/* a slot CHANGE is one grants_added and no removal: the row
		 * stays, only its value moves, and the grant-removal threshold
		 * must not fire on a rule that raises everyone's slots */
		x->p->counts.grants_added++;
		if (kind == IDS_GRANT_GROUP && op == IDS_GOP_ADD && (err = note_group(x, tenant, name)) < 0)
			return err;
	}
	return push_grant(x, &g);
}

/* true when the managed row cg records the rules of list idx (names
 * joined by '\n', as the store loads them).  A desired grant that names
 * no rule (a hand-made desired state) agrees with any row. */
static bool rules_same(const struct diff *x, uint32_t idx, const struct ids_cur_grant *cg)
{
	const struct ids_rule_list *l = ids_rule_list_get(x->d->rule_lists, x->d->nrule_lists, idx);
	const char *c = ids_current_grant_rules(x->c, cg);
	if (!l)
		return true;
	if (!c)
		return false;
	for (size_t i = 0; i < l->n; i++) {
		size_t n = strlen(l->names[i]);
		if (strncmp(c, l->names[i], n) != 0)
			return false;
		c += n;
		if (i + 1 < l->n && *c++ != '\n')
			return false;
	}
	return *c == '\0';
}

/* The grants of want that may be planned (their tenant exists or is
 * created), in x->des[0..*ret_n), sorted and unique. */
static int wanted_grants(struct diff *x, const struct ids_desired *want, size_t *ret_n)
{
	const struct ids_grant **des = x->des;
	size_t nd = 0;
	int r;

	*ret_n = 0;
	if (!want || !want->ngrants)
		return 0;
	if (want->ngrants > x->cap_des) {
		des = realloc(x->des, want->ngrants * sizeof(*des));
		if (!des)
			return -ENOMEM;
		x->des = des;
		x->cap_des = want->ngrants;
	}
	for (size_t i = 0; i < want->ngrants; i++) {
		bool ok;
		if ((r = tenant_ok(x, want->grants[i].tenant, &ok)) < 0)
			return r;
		if (ok)
			des[nd++] = &want->grants[i];
	}
	/* rules hand them sorted and unique; the merge in diff_grants relies
	 * on it, so make sure rather than trust (one pass when sorted) */
	bool in_order = true;
	for (size_t i = 1; i < nd && in_order; i++)
		in_order = cmp_des_grant(&des[i - 1], &des[i]) < 0;
	if (!in_order) {
		sort(des, nd, sizeof(*des), cmp_des_grant);
		size_t k = 0;
		for (size_t i = 0; i < nd; i++)
			if (k == 0 || cmp_des_grant(&des[k - 1], &des[i]) != 0)
				des[k++] = des[i];
		nd = k;
	}
	*ret_n = nd;
	return 0;
}

/* Plans the grants of one user: want (NULL: none, a deactivation) against
 * the current rows of row (NO_ROW: a new user).  w names the user (copied
 * into the plan on its first grant).  Manual rows are never touched and
 * satisfy a wanted grant with the same key; managed rows not wanted are
 * removed.  The grants come out as one run, in key order. */
static int diff_grants(struct diff *x, const struct ids_desired *want, uint32_t row, struct who *w,
		       bool stays_active, bool dry)
{
	const struct ids_grant **des;
	size_t nd = 0, lo = 0, hi = 0;
	/* what revoke rules took away, in key order: a removal names them */
	const struct ids_grant *rv = want && want->grants ? want->grants + want->ngrants : NULL;
	size_t nrv = want ? want->nrevoked : 0, ri = 0;
	int r = wanted_grants(x, want, &nd);

	if (r < 0)
		return r;
	des = x->des;
	grants_of(x, row, &lo, &hi);
	/* the apply reaches the user's grant rows by this id */
	w->id = row == NO_ROW ? 0 : x->c->users[row].id;

	size_t i = 0, j = lo;
	while (i < nd || j < hi) {
		const struct ids_grant *dg = i < nd ? des[i] : NULL;
		const struct ids_cur_grant *cg = j < hi ? &x->c->grants[x->gby[j]] : NULL;
		int c = !dg   ? 1
			: !cg ? -1
			      : cmp_grant_key(dg->kind, dg->tenant, dg->name, cg->kind, cg->tenant, cg->name);
		bool value = c == 0 && !cg->manual && dg->kind == IDS_GRANT_SLOT && dg->slots != cg->slots;
		bool relabel = c == 0 && !cg->manual && !value && !rules_same(x, dg->rules, cg);
		if (dry && (c < 0 || (c > 0 && !cg->manual) || value || relabel))
			return 1;
		if (c < 0) {
			r = add_grant(x, IDS_GOP_ADD, dg->kind, dg->tenant, dg->name,
				      dg->kind == IDS_GRANT_SLOT ? dg->slots : 0, 0, dg->rules, w);
			i++;
		} else if (c > 0) {
			if (!cg->manual) {
				int rc = 1;
				while (ri < nrv &&
				       (rc = cmp_grant_key(rv[ri].kind, rv[ri].tenant, rv[ri].name, cg->kind,
							   cg->tenant, cg->name)) < 0)
					ri++;
				r = add_grant(x, IDS_GOP_REMOVE, cg->kind, cg->tenant, cg->name,
					      cg->kind == IDS_GRANT_SLOT ? cg->slots : 0, 0,
					      rc == 0 ? rv[ri].rules : 0, w);
				if (stays_active)
					x->p->removals_on_active++;
			}
			j++;
		} else {
			/* same key: a manual row satisfies it whatever its value */
			if (value)
				r = add_grant(x, IDS_GOP_CHANGE, dg->kind, dg->tenant, dg->name, dg->slots,
					      cg->slots, dg->rules, w);
			else if (relabel)
				r = add_grant(x, IDS_GOP_RULES, dg->kind, dg->tenant, dg->name,
					      dg->kind == IDS_GRANT_SLOT ? dg->slots : 0, cg->slots,
					      dg->rules, w);
			i++;
			j++;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Queues the planning of one user's grants (see diff_grants). */
static int queue_grants(struct diff *x, const struct ids_desired *want, uint32_t row, const struct who *w,
			bool stays_active)
{
	int r = ids_grow(&x->jobs, &x->cap_jobs, x->njobs + 1, sizeof(*x->jobs));
	if (r < 0)
		return r;
	x->jobs[x->njobs++] = (struct grant_job){want, row, stays_active, *w};
	return 0;
}

/* ---------------- uniqueness ---------------- */

/* Sets *ret_why when `name` can't be used by the user of snapshot index k
 * whose row is self (NO_ROW for none): another row holds it (usernames are
 * unique among all the company's users, active or not), or an earlier user
 * of this run claimed it. */
static int check_name(struct diff *x, const char *name, uint32_t self, const char **ret_why)
{
	int err = index_names(x);
	uint32_t h;
	if (err < 0)
		return err;
	if ((h = idx_get(x, &x->names, name)) != NO_ROW && h != self)
		*ret_why = reasonf(x, &err, "username %s is taken by user id %lld", name,
				   (long long)x->c->users[h].id);
	else if ((h = idx_get(x, &x->claimed_names, name)) != NO_ROW)
		*ret_why =
		    reasonf(x, &err, "username %s is wanted by another user of this run (external id %s)",
			    name, x->s->users[h].f[IDS_F_EXTERNAL_ID]);
	return err;
}

/* The same for an e-mail, unique among active users: a holder that this
 * run deactivates no longer counts. */
static int check_email(struct diff *x, const char *email, uint32_t self, const char **ret_why)
{
	int err = index_names(x);
	uint32_t h;
	if (err < 0)
		return err;
	if ((h = idx_get(x, &x->emails, email)) != NO_ROW && h != self && !is_released(x, h))
		*ret_why = reasonf(x, &err, "email %s is taken by active user id %lld", email,
				   (long long)x->c->users[h].id);
	else if ((h = idx_get(x, &x->claimed_emails, email)) != NO_ROW)
		*ret_why = reasonf(x, &err, "email %s is wanted by another user of this run (external id %s)",
				   email, x->s->users[h].f[IDS_F_EXTERNAL_ID]);
	return err;
}

/* Both checks, username first; *ret_why stays NULL when the user may go. */
static int check_unique(struct diff *x, const struct ids_user *u, bool name, bool email, uint32_t self,
			const char **ret_why)
{
	int r = 0;
	*ret_why = NULL;
	if (name)
		r = check_name(x, u->f[IDS_F_USERNAME], self, ret_why);
	if (r >= 0 && !*ret_why && email && u->f[IDS_F_EMAIL])
		r = check_email(x, u->f[IDS_F_EMAIL], self, ret_why);
	return r;
}

/* Records that snapshot user k takes its username and e-mail.  A user
 * that keeps the name (or the e-mail, active) its row already holds needs
 * no claim: the row's own entry in names (emails) stops everyone else.
 * name / email: whether they change (a reactivation takes its e-mail back
 * among the active ones, so it counts as a change). */
static int claim(struct diff *x, size_t k, bool name, bool email)
{
	const struct ids_user *u = &x->s->users[k];
	int r = 0;
	if (name)
		r = idx_put(x, &x->claimed_names, (uint32_t)k);
	if (r >= 0 && email && u->f[IDS_F_EMAIL])
		r = idx_put(x, &x->claimed_emails, (uint32_t)k);
	return r < 0 ? r : 0;
}

/* Which profile fields of row differ from what snapshot user u and its
 * desired state want. */
static unsigned changed_fields(const struct diff *x, const struct ids_cur_user *row, const struct ids_user *u,
			       const struct ids_desired *want)
{
	unsigned ch = 0;
	if (ids_strcmp0(row->username, u->f[IDS_F_USERNAME]))
		ch |= IDS_CH_USERNAME;
	if (ids_strcmp0(row->email, u->f[IDS_F_EMAIL]))
		ch |= IDS_CH_EMAIL;
	if (ids_strcmp0(row->first_name, u->f[IDS_F_FIRST_NAME]))
		ch |= IDS_CH_FIRST_NAME;
	if (ids_strcmp0(row->last_name, u->f[IDS_F_LAST_NAME]))
		ch |= IDS_CH_LAST_NAME;
	if (ids_strcmp0(row->display_name, u->f[IDS_F_DISPLAY_NAME]))
		ch |= IDS_CH_DISPLAY_NAME;
	if (row->company_admin != want->company_admin)
		ch |= IDS_CH_COMPANY_ADMIN;
	/* a managed user signs in through the connector's identity provider */
	if (ids_strcmp0(row->auth_method, "sso") || ids_strcmp0(row->idp, x->o->idp))
		ch |= IDS_CH_AUTH;
	return ch;
}

/* ---------------- passes 3-5 ---------------- */

static int plan_skips(struct diff *x)
{
	for (size_t k = 0; k < x->s->nusers; k++) {
		if (!x->skip[k])
			continue;
		const struct ids_user *u = &x->s->users[k];
		uint32_t row;
		const struct ids_cur_user *cu = NULL;
		if ((row = idx_get(x, &x->managed, u->f[IDS_F_EXTERNAL_ID])) != NO_ROW)
			cu = &x->c->users[row];
		/* show the row as it stays when there is one */
		int r = add_user(x, IDS_PU_SKIP_INVALID, 0, cu, u, cu ? cu->company_admin : false, x->skip[k],
				 cu != NULL);
		if (r < 0)
			return r;
		x->p->counts.skipped_invalid++;
	}
	return 0;
}

static int plan_deactivations(struct diff *x)
{
	for (size_t i = 0; i < x->c->nusers; i++) {
		const struct ids_cur_user *cu = &x->c->users[i];
		const struct row_state *rs = &x->rows[i];
		if (rs->fate != FATE_INACTIVE)
			continue;
		int r = 0;
		if (cu->active) {
			r = add_user(x, IDS_PU_DEACTIVATE, 0, cu, NULL, cu->company_admin, rs->reason, true);
			x->p->counts.deactivated++;
		} else if (ids_strcmp0(cu->reason, rs->reason)) {
			/* already inactive: not a deactivation (the thresholds
			 * count people losing access), just a truer reason */
			r = add_user(x, IDS_PU_REASON, 0, cu, NULL, cu->company_admin, rs->reason, true);
			x->p->counts.updated++;
		}
		if (r < 0)
			return r;
		/* any managed grant left goes, also on an already inactive row */
		struct who w = {cu->external_id, cu->username, 0};
		if ((r = queue_grants(x, NULL, (uint32_t)i, &w, false)) < 0)
			return r;
	}
	return 0;
}

/* A managed user that is enabled and in scope. */
static int plan_managed(struct diff *x, size_t k, uint32_t rowi)
{
	const struct ids_user *u = &x->s->users[k];
	const struct ids_desired *want = &x->d->users[k];
	const struct ids_cur_user *cu = &x->c->users[rowi];
	unsigned ch = changed_fields(x, cu, u, want);
	bool reactivate = !cu->active;
	const char *why;
	/* a reactivated row takes its e-mail back among the active ones */
	int r = check_unique(x, u, ch & IDS_CH_USERNAME, (ch & IDS_CH_EMAIL) || reactivate, rowi, &why);
	if (r < 0)
		return r;
	if (why) {
		/* swaps and clashes: the user keeps its current state entirely,
		 * grants included, until the clash is gone */
		x->p->counts.conflicts++;
		return add_user(x, IDS_PU_CONFLICT, 0, cu, u, cu->company_admin, why, true);
	}
	if ((r = claim(x, k, ch & IDS_CH_USERNAME, (ch & IDS_CH_EMAIL) || reactivate)) < 0)
		return r;
	struct who w = {u->f[IDS_F_EXTERNAL_ID], u->f[IDS_F_USERNAME], 0};
	if (ch || reactivate) {
		unsigned flags = (ch ? IDS_PU_UPDATE : 0) | (reactivate ? IDS_PU_REACTIVATE : 0);
		if ((r = add_user(x, flags, ch, cu, u, want->company_admin, NULL, false)) < 0)
			return r;
		if (ch)
			x->p->counts.updated++;
		if (reactivate)
			x->p->counts.reactivated++;
	}
	return queue_grants(x, want, rowi, &w, cu->active);
}

/* A user with no row of this connector: adopt, create, or conflict. */
static int plan_new(struct diff *x, size_t k)
{
	const struct ids_user *u = &x->s->users[k];
	const struct ids_desired *want = &x->d->users[k];
	const char *email = u->f[IDS_F_EMAIL];
	uint32_t adopt = NO_ROW;
	const char *why;
	int r;

	if (x->o->adopt_by_email && email) {
		if ((r = index_names(x)) < 0)
			return r;
		adopt = idx_get(x, &x->adoptable, email);
	}
	if ((r = check_unique(x, u, true, true, adopt, &why)) < 0)
		return r;
	if (why) {
		x->p->counts.conflicts++;
		return add_user(x, IDS_PU_CONFLICT, 0, NULL, u, want->company_admin, why, false);
	}
	if ((r = claim(x, k, true, true)) < 0)
		return r;

	const struct ids_cur_user *cu = NULL;
	if (adopt != NO_ROW) {
		cu = &x->c->users[adopt];
		/* adoption always sets source, external_id and sso, even when
		 * the row already said sso: the store writes them together */
		unsigned ch = changed_fields(x, cu, u, want) | IDS_CH_AUTH;
		unsigned flags = IDS_PU_ADOPT | (cu->active ? 0 : IDS_PU_REACTIVATE);
		if ((r = add_user(x, flags, ch, cu, u, want->company_admin, NULL, false)) < 0)
			return r;
		x->p->counts.updated++;
		if (!cu->active)
			x->p->counts.reactivated++;
	} else {
		if ((r = add_user(x, IDS_PU_CREATE, 0, NULL, u, want->company_admin, NULL, false)) < 0)
			return r;
		x->p->counts.created++;
	}
	struct who w = {u->f[IDS_F_EXTERNAL_ID], u->f[IDS_F_USERNAME], 0};
	/* an adopted row's manual grants satisfy what the rules want; it had
	 * no managed ones, so nothing it loses counts against the threshold */
	return queue_grants(x, want, adopt, &w, false);
}

static int plan_users(struct diff *x)
{
	const struct ids_snapshot *s = x->s;
	int r;
	if ((r = plan_skips(x)) < 0 || (r = plan_deactivations(x)) < 0)
		return r;
	/* rows first (see the top), each group in snapshot order */
	for (size_t k = 0; k < s->nusers; k++) {
		uint32_t row = x->snap_row[k];
		if (x->skip[k] || row == NO_ROW)
			continue;
		if (x->rows[row].fate != FATE_ACTIVE || x->rows[row].snap != k)
			continue;
		if ((r = plan_managed(x, k, row)) < 0)
			return r;
	}
	for (size_t k = 0; k < s->nusers; k++) {
		const struct ids_user *u = &s->users[k];
		if (x->skip[k] || x->o->retire || u->disabled || !x->d->users[k].in_scope ||
		    outside(x, u->f[IDS_F_EXTERNAL_ID]))
			continue;
		/* a managed row that is inactive or kept is not a new user */
		if (x->snap_row[k] != NO_ROW)
			continue;
		if ((r = plan_new(x, k)) < 0)
			return r;
	}
	return 0;
}

/* ---------------- print order ---------------- */

static int cmp_job(const void *a, const void *b)
{
	const struct grant_job *x = a, *y = b;
	int r = ids_strcmp0(x->w.name, y->w.name);
	return r ? r : ids_strcmp0(x->w.ext, y->w.ext);
}

/* Plans the queued grants, user by user in print order (cmp_plan_grant):
 * each user's come out of the merge in key order, so p->grants is in
 * print order as it is made.  A first, dry pass finds the users whose
 * grants change at all, and only those are sorted and planned: a resync
 * that changes nothing sorts nothing (at a million users the sort of
 * every user was half a second).  Two jobs of one user (no plan makes
 * them) fall back to sorting the grants. */
static int plan_grants(struct diff *x)
{
	bool twice = false;
	size_t n = 0;
	int r = 0;
	for (size_t i = 0; i < x->njobs && r >= 0; i++) {
		struct grant_job *j = &x->jobs[i];
		r = diff_grants(x, j->want, j->row, &j->w, j->stays_active, true);
		if (r > 0)
			x->jobs[n++] = *j;
	}
	if (r < 0)
		return r;
	r = 0;
	sort(x->jobs, n, sizeof(*x->jobs), cmp_job);
	for (size_t i = 0; i < n && r >= 0; i++) {
		struct grant_job *j = &x->jobs[i];
		twice |= i > 0 && cmp_job(&x->jobs[i - 1], j) == 0;
		r = diff_grants(x, j->want, j->row, &j->w, j->stays_active, false);
	}
	if (r >= 0 && twice)
		sort(x->p->grants, x->p->ngrants, sizeof(*x->p->grants), cmp_plan_grant);
	return r;
}

/* ---------------- entry points ---------------- */

static void diff_clear(struct diff *x)
{
	ids_arena_free(&x->tmp);
	struct ids_strmap *maps[] = {&x->tenants, &x->new_tenants, &x->missing_tenants, &x->new_groups};
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		ids_strmap_free(maps[i]);
	struct idx *idxs[] = {&x->managed,   &x->names,		&x->emails,
			      &x->adoptable, &x->claimed_names, &x->claimed_emails};
	for (size_t i = 0; i < sizeof(idxs) / sizeof(idxs[0]); i++)
		idx_free(idxs[i]);
	free(x->rows);
	free(x->skip);
	free(x->snap_row);
	free(x->gby);
	free(x->goff);
	free(x->des);
	free(x->jobs);
	ids_buf_free(&x->scratch);
}

int ids_diff_compute(const struct ids_snapshot *s, const struct ids_desired_set *d,
		     const struct ids_current *c, const struct ids_diff_opts *o, struct ids_plan **ret)
{
	struct diff x = {
	    .s = s,
	    .d = d,
	    .c = c,
	    .o = o,
	    .managed = {.field = offsetof(struct ids_cur_user, external_id)},
	    .names = {.field = offsetof(struct ids_cur_user, username), .fold = true},
	    .emails = {.field = offsetof(struct ids_cur_user, email), .fold = true},
	    .adoptable = {.field = offsetof(struct ids_cur_user, email), .fold = true},
	    .claimed_names = {.field = IDS_F_USERNAME, .snap = true, .fold = true},
	    .claimed_emails = {.field = IDS_F_EMAIL, .snap = true, .fold = true},
	};
	struct ids_plan *p = NULL;
	int r = -EINVAL;

	if (!s || !d || !c || !o || !o->connector || d->nusers != s->nusers)
		goto out;
	if (s->nusers >= NO_ROW) {
		r = -E2BIG;
		goto out;
	}
	r = -ENOMEM;
	p = calloc(1, sizeof(*p));
	if (!p)
		goto out;
	x.p = p;
	p->connector = ids_arena_strdup(&p->arena, o->connector);
	p->idp = ids_arena_strdup(&p->arena, o->idp);
	p->retire = o->retire;
	p->counts.users_seen = (long)s->nusers;
	p->rule_lists = d->rule_lists;
	p->nrule_lists = d->nrule_lists;
	x.skip = calloc(s->nusers ? s->nusers : 1, sizeof(*x.skip));
	x.snap_row = malloc((s->nusers ? s->nusers : 1) * sizeof(*x.snap_row));
	if (!p->connector || (o->idp && !p->idp) || !x.skip || !x.snap_row)
		goto out;

	if ((r = index_current(&x)) < 0 || (r = decide_fates(&x)) < 0)
		goto out;
	count_managed_grants(&x);
	if ((r = plan_users(&x)) < 0)
		goto out;

	/* everything in the one printed order, so that the same inputs give
	 * the same plan byte for byte */
	sort(p->users, p->nusers, sizeof(*p->users), cmp_plan_user);
	if ((r = plan_grants(&x)) < 0)
		goto out;
	sort(p->new_tenants.v, p->new_tenants.n, sizeof(char *), cmp_str);
	sort(p->missing_tenants.v, p->missing_tenants.n, sizeof(char *), cmp_str);
	sort(p->new_groups.v, p->new_groups.n, sizeof(char *), cmp_str);
	*ret = p;
	p = NULL;
	r = 0;
out:
	diff_clear(&x);
	ids_plan_free(p);
	return r;
}
