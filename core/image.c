/* image.c — a connector's directory kept as records between runs, changed
 * by a feed, replayed into a snapshot each run (image.h).
 *
 * A record is its builder calls encoded one after the other in a byte
 * string: op (1 byte), argument (1 byte: a field, a kind, a flag), then
 * one or two length-prefixed values.  Replaying them is what the
 * connector would have done on a full read, so the snapshot's checks
 * (required fields, UTF-8, duplicates) apply unchanged.  Records live in
 * one array indexed by a key map; a deleted record stays as an empty slot
 * until the run commits (its undo entry names the slot), then its key
 * leaves the map and the slot goes to the next new key (vacate).
 *
 * In memory, values that repeat across records are kept once (interned,
 * reference-counted): member references — a user's DN is named by each of
 * his groups, about five at bench's tiers — the DNs themselves (a user's
 * own and his groups' references to him are the same bytes) and attribute
 * names.  Such a value is a pointer in the record instead of its bytes
 * (flags in the op byte say which), 8 bytes instead of 4 + about 45; a
 * record is turned back into the stored encoding, byte for byte the same,
 * when it leaves the image (ids_image_each).  What comes in is always the
 * stored encoding: a pointer is never read from outside. */
#include "ids/image.h"
#include "ids/dn.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum op { OP_USER_SET = 1, OP_USER_ATTR, OP_USER_DISABLED, OP_USER_INVALID, OP_GROUP_SET, OP_GROUP_MEMBER };
enum kind { K_NONE, K_USER, K_GROUP };

/* The in-memory encoding's flags, or'ed into an op byte (ops are < 0x10):
 * the first value is the record's key (an external id equal to it, as
 * LDAP's entryUUID is: 40 bytes a record less), is empty (no length),
 * or is a pointer to an interned string; the second value is one. */
enum { A_KEY = 0x10, A_EMPTY = 0x20, B_INTERNED = 0x40, A_INTERNED = 0x80, OP_MASK = 0x0f };
_Static_assert(OP_GROUP_MEMBER < 0x10, "an op fits under the flags");

/* An interned value: one copy for every record naming it. */
struct istr {
	uint32_t refs; /* ops of records and undo entries that point here; 0: dead */
	uint32_t n;
	uint64_t dn_hash; /* of the value normalized as a DN (dn_hash()), 0 until asked */
	char s[];	  /* n bytes, NUL-terminated (the map's key) */
};

struct rec {
	char *key; /* in the image's key arena (a vacant slot's is reused); the map borrows it */
	unsigned char kind;
	bool wire;	    /* ops are in the stored encoding (a record from outside) */
	bool vacant;	    /* a deleted record's slot, its key out of the map: slot() reuses it */
	bool changed;	    /* since the last commit (it has an undo entry) */
	unsigned char *ops; /* the in-memory encoding; NULL when kind is K_NONE */
	size_t len;
	size_t mark; /* the present generation that last named it */
};

/* A record's content before a change since the last commit. */
struct undo {
	uint32_t idx;
	unsigned char kind;
	unsigned char *ops;
	size_t len;
};

struct ids_image {
	struct rec *recs;
	size_t nrecs, cap;
	struct ids_strmap map; /* key -> index into recs */
	struct ids_arena keys; /* the records' keys: a million of them, each a malloc, cost 12 MiB more */
	uint32_t *vacant;      /* slots of records deleted before the last commit */
	size_t nvacant, capvacant;
	size_t nusers, ngroups;
	unsigned char open_kind; /* K_NONE: no record open */
	char *open_key;
	struct ids_buf open_ops;
	struct undo *undo;
	size_t nundo, capundo;
	size_t gen; /* present generation */
	/* ids_image_defer: the records fn adds are not read in yet */
	bool deferred;
	int (*defer_fn)(struct ids_image *img, void *ud);
	void *defer_ud;
	int defer_err; /* fn's failure, returned by every later call that needs records */
	/* interned values: the map holds each copy's string (istr_of) */
	struct ids_strmap imap;
	struct ids_buf ikey;	/* intern's lookup key */
	struct ids_buf packbuf; /* pack's encoding */
};

/* ---- interned values ---- */

/* The copy whose string the map holds. */
static struct istr *istr_of(const char *s)
{
	return (struct istr *)(void *)(s - offsetof(struct istr, s));
}

/* The interned copy of v[0..n), its count taken; NULL when v cannot be a
 * map key (empty, a NUL in it) or on ENOMEM (then *err is set): the
 * caller keeps the bytes inline.  One copy per distinct value, always:
 * the last count given back frees it (unref). */
static struct istr *intern(struct ids_image *img, const char *v, size_t n, int *err)
{
	if (!n || n > UINT32_MAX || memchr(v, '\0', n))
		return NULL;
	ids_buf_reset(&img->ikey);
	if (ids_buf_add(&img->ikey, v, n) < 0 || ids_buf_putc(&img->ikey, '\0') < 0) {
		*err = -ENOMEM;
		return NULL;
	}
	const char *k = ids_strmap_key(&img->imap, img->ikey.p);
	if (k) {
		struct istr *e = istr_of(k);
		e->refs++;
		return e;
	}
	struct istr *e = malloc(sizeof(*e) + n + 1);
	if (e) {
		*e = (struct istr){.refs = 1, .n = (uint32_t)n};
		memcpy(e->s, v, n);
		e->s[n] = '\0';
	}
	if (!e || ids_strmap_put(&img->imap, e->s, 0, NULL) < 0) {
		free(e);
		*err = -ENOMEM;
		return NULL;
	}
	return e;
}

static void free_istr(const char *key, void *ud)
{
	(void)ud;
	free(istr_of(key));
}

static void intern_free(struct ids_image *img)
{
	ids_strmap_each_key(&img->imap, free_istr, NULL);
	ids_strmap_free(&img->imap);
	ids_buf_free(&img->ikey);
	ids_buf_free(&img->packbuf);
}

/* ---- the encodings ---- */

/* One op, decoded. */
struct opv {
	unsigned char op, arg;
	const char *a, *b;
	size_t na, nb;
	struct istr *ia, *ib; /* the interned values, if any */
};

static bool has_b(unsigned char op)
{
	return op == OP_USER_ATTR || op == OP_GROUP_MEMBER;
}

/* Reads a length-prefixed value at *p (bounded by end). */
static bool value(const unsigned char **p, const unsigned char *end, const char **ret, size_t *ret_n)
{
	uint32_t n;
	if ((size_t)(end - *p) < sizeof(n))
		return false;
	memcpy(&n, *p, sizeof(n));
	*p += sizeof(n);
	if ((size_t)(end - *p) < n)
		return false;
	*ret = (const char *)*p;
	*ret_n = n;
	*p += n;
	return true;
}

/* A value that is a pointer to an interned copy (in-memory only). */
static bool ivalue(const unsigned char **p, const unsigned char *end, struct istr **ret_e, const char **ret,
		   size_t *ret_n)
{
	if ((size_t)(end - *p) < sizeof(*ret_e))
		return false;
	memcpy(ret_e, *p, sizeof(*ret_e));
	*p += sizeof(*ret_e);
	*ret = (*ret_e)->s;
	*ret_n = (*ret_e)->n;
	return true;
}

/* Decodes the op at *p into o.  `wire`: the stored encoding, where the
 * in-memory flags are no op (bytes from outside never make a pointer).
 * key: the record's (NULL: unknown, and a value that is the key does not
 * decode). */
static bool next_op(const unsigned char **p, const unsigned char *end, bool wire, const char *key,
		    struct opv *o)
{
	*o = (struct opv){.a = "", .b = ""};
	if (end - *p < 2)
		return false;
	unsigned char flags = (unsigned char)((*p)[0] & ~OP_MASK);
	o->op = (*p)[0] & OP_MASK;
	o->arg = (*p)[1];
	*p += 2;
	if (wire && flags)
		return false;
	if (flags & A_KEY) {
		if (!key)
			return false;
		o->a = key;
		o->na = strlen(key);
	}
	bool ok = flags & (A_EMPTY | A_KEY) ? true
		  : flags & A_INTERNED	    ? ivalue(p, end, &o->ia, &o->a, &o->na)
					    : value(p, end, &o->a, &o->na);
	if (ok && has_b(o->op))
		ok =
		    flags & B_INTERNED ? ivalue(p, end, &o->ib, &o->b, &o->nb) : value(p, end, &o->b, &o->nb);
	return ok;
}

/* Calls fn(o, ud) for each op o of record rc, until fn returns non-zero. */
static int each_opv(const struct rec *rc, int (*fn)(const struct opv *o, void *ud), void *ud)
{
	const unsigned char *p = rc->ops, *end = rc->ops + rc->len;
	struct opv o;
	int r = 0;
	while (r == 0 && p < end) {
		if (!next_op(&p, end, rc->wire, rc->key, &o))
			return -EINVAL;
		r = fn(&o, ud);
	}
	return r;
}

typedef int op_fn(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		  void *ud);

struct op_args {
	op_fn *fn;
	void *ud;
};

static int call_op(const struct opv *o, void *ud)
{
	const struct op_args *u = ud;
	return u->fn(o->op, o->arg, o->a, o->na, o->b, o->nb, u->ud);
}

/* Calls fn(op, arg, a, na, b, nb, ud) for each op of record rc. */
static int each_op(const struct rec *rc, op_fn *fn, void *ud)
{
	struct op_args u = {fn, ud};
	return each_opv(rc, call_op, &u);
}

/* Gives back one count of interned value e (NULL: none); the last one
 * frees it.  No one else points at it then: every pointer to it is in
 * an op of a record or undo entry, and each holds a count. */
static void unref(struct ids_image *img, struct istr *e)
{
	if (e && --e->refs == 0) {
		ids_strmap_del(&img->imap, e->s);
		free(e);
	}
}

/* Gives back the interned values an in-memory record points to, before
 * it is freed. */
static void release(struct ids_image *img, const unsigned char *ops, size_t len)
{
	const unsigned char *p = ops, *end = ops + len;
	struct opv o;
	while (p < end && next_op(&p, end, false, "", &o)) {
		unref(img, o.ia);
		unref(img, o.ib);
	}
}

/* Frees an in-memory record (NULL: none). */
static void rec_free(struct ids_image *img, unsigned char *ops, size_t len)
{
	if (ops)
		release(img, ops, len);
	free(ops);
}

/* Which values are interned: those many records repeat. */
static bool intern_a(unsigned char op, unsigned char arg)
{
	return op == OP_USER_ATTR || ((op == OP_USER_SET || op == OP_GROUP_SET) && arg == IDS_F_DN);
}

struct pack {
	struct ids_image *img;
	const char *key; /* the record's */
	struct ids_buf out;
};

/* each_op's fn for pack: one op of a stored record in the in-memory
 * encoding.  On failure the op is not in the output, nor its counts. */
static int pack_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		    void *ud)
{
	struct pack *pk = ud;
	int err = 0;
	size_t at = pk->out.len;
	bool is_key = (op == OP_USER_SET || op == OP_GROUP_SET) && arg == IDS_F_EXTERNAL_ID && na &&
		      na == strlen(pk->key) && !memcmp(a, pk->key, na);
	struct istr *ia = na && !is_key && intern_a(op, arg) ? intern(pk->img, a, na, &err) : NULL;
	struct istr *ib = !err && op == OP_GROUP_MEMBER ? intern(pk->img, b, nb, &err) : NULL;
	unsigned char head[2] = {(unsigned char)(op | (!na ? A_EMPTY : 0) | (is_key ? A_KEY : 0) |
						 (ia ? A_INTERNED : 0) | (ib ? B_INTERNED : 0)),
				 arg};
	uint32_t la = (uint32_t)na, lb = (uint32_t)nb;
	int r = err ? err : ids_buf_add(&pk->out, head, 2);
	if (r >= 0 && ia)
		r = ids_buf_add(&pk->out, &ia, sizeof(ia));
	else if (r >= 0 && na && !is_key && (r = ids_buf_add(&pk->out, &la, sizeof(la))) >= 0)
		r = ids_buf_add(&pk->out, a, na);
	if (r >= 0 && ib)
		r = ids_buf_add(&pk->out, &ib, sizeof(ib));
	else if (r >= 0 && has_b(op) && (r = ids_buf_add(&pk->out, &lb, sizeof(lb))) >= 0 && nb)
		r = ids_buf_add(&pk->out, b, nb);
	if (r < 0) {
		pk->out.len = at;
		unref(pk->img, ia);
		unref(pk->img, ib);
	}
	return r < 0 ? r : 0;
}

/* The in-memory encoding of the stored record wire[0..len): *ret new
 * (never NULL: an empty record is still a record), *ret_len. */
static int pack(struct ids_image *img, const char *key, const void *wire, size_t len, unsigned char **ret,
		size_t *ret_len)
{
	const struct rec w = {.kind = K_USER, .wire = true, .ops = (unsigned char *)wire, .len = len};
	/* encoded in the image's scratch buffer, then copied at its size: a
	 * million records grown by doubling and cut to fit left the heap
	 * full of the cut-off tails (bench/image_mem: 40 MB less in records
	 * gave 9 MB less of RSS that way) */
	struct pack pk = {.img = img, .key = key, .out = img->packbuf};
	ids_buf_reset(&pk.out);
	int r = len ? each_op(&w, pack_one, &pk) : 0;
	size_t n = pk.out.len;
	unsigned char *ops = r >= 0 ? malloc(n ? n : 1) : NULL;
	if (r >= 0 && !ops)
		r = -ENOMEM;
	if (r < 0)
		release(img, (const unsigned char *)pk.out.p, pk.out.len);
	else if (n)
		memcpy(ops, pk.out.p, n);
	img->packbuf = pk.out;
	if (r < 0)
		return r;
	*ret = ops;
	*ret_len = n;
	return 0;
}

/* each_op's fn for unpack. */
static int unpack_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		      void *ud);

/* Record rc in the stored encoding, into o (reset first). */
static int unpack(const struct rec *rc, struct ids_buf *o)
{
	ids_buf_reset(o);
	return each_op(rc, unpack_one, o);
}

void ids_image_defer(struct ids_image *img, int (*fn)(struct ids_image *img, void *ud), void *ud)
{
	img->deferred = true;
	img->defer_fn = fn;
	img->defer_ud = ud;
}

bool ids_image_deferred(const struct ids_image *img)
{
	return img->deferred;
}

/* Reads the deferred records in before a call that needs them.  Takes a
 * const image too: the records were its content all along (reading them
 * in is no change, nothing to roll back or to write). */
static int need(const struct ids_image *cimg)
{
	struct ids_image *img = (struct ids_image *)cimg;
	if (img->defer_err)
		return img->defer_err;
	if (!img->deferred)
		return 0;
	img->deferred = false; /* fn's ids_image_load calls must not come back here */
	int r = img->defer_fn ? img->defer_fn(img, img->defer_ud) : -EINVAL;
	img->defer_fn = NULL;
	img->defer_ud = NULL;
	if (r < 0)
		img->defer_err = r;
	return r < 0 ? r : 0;
}

int ids_image_read_in(struct ids_image *img)
{
	return need(img);
}

int ids_image_new(struct ids_image **ret)
{
	struct ids_image *img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->map.dense = img->imap.dense = true; /* kept between runs */
	*ret = img;
	return 0;
}

static void drop_undo(struct ids_image *img)
{
	for (size_t i = 0; i < img->nundo; i++) {
		img->recs[img->undo[i].idx].changed = false;
		rec_free(img, img->undo[i].ops, img->undo[i].len);
	}
	img->nundo = 0;
}

void ids_image_free(struct ids_image *img)
{
	if (!img)
		return;
	ids_image_abort_record(img);
	for (size_t i = 0; i < img->nundo; i++)
		free(img->undo[i].ops);
	free(img->undo);
	ids_strmap_free(&img->map);
	for (size_t i = 0; i < img->nrecs; i++)
		free(img->recs[i].ops);
	free(img->recs);
	ids_arena_free(&img->keys);
	free(img->vacant);
	intern_free(img); /* every record is gone: no count to give back */
	free(img);
}

static int begin(struct ids_image *img, const char *key, unsigned char kind)
{
	if (img->open_kind != K_NONE)
		return -EBUSY;
	if (!key || !*key)
		return -EINVAL;
	int r = need(img);
	if (r < 0)
		return r;
	if (!(img->open_key = strdup(key)))
		return -ENOMEM;
	img->open_kind = kind;
	ids_buf_reset(&img->open_ops);
	return 0;
}

int ids_image_user_begin(struct ids_image *img, const char *key)
{
	return begin(img, key, K_USER);
}

int ids_image_group_begin(struct ids_image *img, const char *key)
{
	return begin(img, key, K_GROUP);
}

/* Appends one op with up to two values (the second only for the ops
 * that have one) to o.  A value past 4 GiB cannot be a directory value:
 * -E2BIG. */
static int encode_op(struct ids_buf *o, unsigned char op, unsigned char arg, const char *a, size_t na,
		     const char *b, size_t nb)
{
	unsigned char head[2] = {op, arg};
	uint32_t la = (uint32_t)na, lb = (uint32_t)nb;
	if (na > UINT32_MAX || nb > UINT32_MAX)
		return -E2BIG;
	int r = ids_buf_add(o, head, 2);
	if (r >= 0)
		r = ids_buf_add(o, &la, sizeof(la));
	if (r >= 0 && na)
		r = ids_buf_add(o, a, na);
	if (r >= 0 && (op == OP_USER_ATTR || op == OP_GROUP_MEMBER)) {
		if ((r = ids_buf_add(o, &lb, sizeof(lb))) >= 0 && nb)
			r = ids_buf_add(o, b, nb);
	}
	return r < 0 ? r : 0;
}

static int unpack_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		      void *ud)
{
	return encode_op(ud, op, arg, a, na, b, nb);
}

/* Appends one op to the open record of `kind`. */
static int put(struct ids_image *img, unsigned char kind, unsigned char op, unsigned char arg, const char *a,
	       size_t na, const char *b, size_t nb)
{
	if (img->open_kind != kind)
		return -EINVAL;
	return encode_op(&img->open_ops, op, arg, a, na, b, nb);
}

int ids_image_user_set(struct ids_image *img, enum ids_field f, const char *v, size_t n)
{
	if ((unsigned)f >= IDS_F__COUNT)
		return -EINVAL;
	return put(img, K_USER, OP_USER_SET, (unsigned char)f, v, n, NULL, 0);
}

int ids_image_user_attr(struct ids_image *img, const char *name, const char *v, size_t n)
{
	return put(img, K_USER, OP_USER_ATTR, 0, name, strlen(name), v, n);
}

int ids_image_user_disabled(struct ids_image *img, bool disabled)
{
	return put(img, K_USER, OP_USER_DISABLED, disabled, NULL, 0, NULL, 0);
}

int ids_image_user_invalid(struct ids_image *img, const char *why)
{
	return put(img, K_USER, OP_USER_INVALID, 0, why, strlen(why), NULL, 0);
}

int ids_image_group_set(struct ids_image *img, enum ids_field f, const char *v, size_t n)
{
	if ((unsigned)f >= IDS_F__COUNT)
		return -EINVAL;
	return put(img, K_GROUP, OP_GROUP_SET, (unsigned char)f, v, n, NULL, 0);
}

int ids_image_group_member(struct ids_image *img, enum ids_ref kind, const char *ref, size_t n)
{
	/* the op's argument is the reference kind; the value goes second, as
	 * an attribute's does, so one decoder reads both */
	if ((unsigned)kind > IDS_REF_USERNAME)
		return -EINVAL;
	return put(img, K_GROUP, OP_GROUP_MEMBER, (unsigned char)kind, "", 0, ref, n);
}

void ids_image_abort_record(struct ids_image *img)
{
	free(img->open_key);
	img->open_key = NULL;
	img->open_kind = K_NONE;
	ids_buf_free(&img->open_ops);
}

static void count(struct ids_image *img, unsigned char kind, int delta)
{
	if (kind == K_USER)
		img->nusers += (size_t)delta;
	else if (kind == K_GROUP)
		img->ngroups += (size_t)delta;
}

/* Replaces record idx by (kind, ops, len) (in-memory encoding), keeping
 * the old content for rollback.  Steals ops. */
static int replace(struct ids_image *img, uint32_t idx, unsigned char kind, unsigned char *ops, size_t len)
{
	struct rec *rc = &img->recs[idx];
	/* the same content again (a full read, a feed resending an entry):
	 * not a change, so the stored image is not rewritten for it (the
	 * in-memory encodings compare as the stored ones would: a value has
	 * one interned copy, so equal values are equal pointers) */
	if (rc->kind == kind && rc->len == len && (!len || !memcmp(rc->ops, ops, len))) {
		rec_free(img, ops, len);
		rc->mark = img->gen;
		return 0;
	}
	if (ids_grow(&img->undo, &img->capundo, img->nundo + 1, sizeof(*img->undo)) < 0) {
		rec_free(img, ops, len);
		return -ENOMEM;
	}
	img->undo[img->nundo++] = (struct undo){.idx = idx, .kind = rc->kind, .ops = rc->ops, .len = rc->len};
	rc->changed = true;
	count(img, rc->kind, -1);
	count(img, kind, +1);
	rc->kind = kind;
	rc->ops = ops;
	rc->len = len;
	rc->mark = img->gen;
	return 0;
}

/* A vacant slot for key, not in the map: its old key's bytes hold the
 * new one when it fits (keys of one connector have one length: UUIDs,
 * GUIDs), else the key goes to the arena. */
static int reuse(struct ids_image *img, const char *key, bool *ret_taken, uint32_t *ret_idx)
{
	uint32_t idx = img->vacant[img->nvacant - 1];
	struct rec *rc = &img->recs[idx];
	size_t n = strlen(key);
	char *k = n <= strlen(rc->key) ? memcpy(rc->key, key, n + 1) : ids_arena_strdup(&img->keys, key);
	if (!k)
		return -ENOMEM;
	int r = ids_strmap_put(&img->map, k, idx, NULL);
	if (r < 0)
		return r;
	img->nvacant--;
	*rc = (struct rec){.key = k};
	*ret_taken = true;
	*ret_idx = idx;
	return 0;
}

/* The index of key's record, made (empty) when there is none. */
static int slot(struct ids_image *img, const char *key, bool *ret_taken, uint32_t *ret_idx)
{
	uint32_t idx;
	*ret_taken = false;
	if (ids_strmap_get(&img->map, key, &idx)) {
		*ret_idx = idx;
		return 0;
	}
	if (img->nvacant)
		return reuse(img, key, ret_taken, ret_idx);
	if (img->nrecs >= UINT32_MAX)
		return -E2BIG;
	if (ids_grow(&img->recs, &img->cap, img->nrecs + 1, sizeof(*img->recs)) < 0)
		return -ENOMEM;
	idx = (uint32_t)img->nrecs;
	char *k = ids_arena_strdup(&img->keys, key);
	if (!k)
		return -ENOMEM;
	img->recs[idx] = (struct rec){.key = k};
	int r = ids_strmap_put(&img->map, k, idx, NULL);
	if (r < 0)
		return r;
	img->nrecs++;
	*ret_taken = true;
	*ret_idx = idx;
	return 0;
}

int ids_image_end(struct ids_image *img)
{
	uint32_t idx;
	bool taken;
	if (img->open_kind == K_NONE)
		return -EINVAL;
	int r = slot(img, img->open_key, &taken, &idx);
	if (r < 0) {
		ids_image_abort_record(img);
		return r;
	}
	unsigned char *ops;
	size_t len;
	r = pack(img, img->open_key, img->open_ops.p, img->open_ops.len, &ops, &len);
	if (r >= 0)
		r = replace(img, idx, img->open_kind, ops, len);
	ids_image_abort_record(img);
	return r;
}

/* Whether a record of kind k is one of `kinds`. */
static bool of_kinds(unsigned char k, unsigned kinds)
{
	return (k == K_USER && (kinds & IDS_IMAGE_USERS)) || (k == K_GROUP && (kinds & IDS_IMAGE_GROUPS));
}

int ids_image_delete(struct ids_image *img, const char *key, unsigned kinds)
{
	uint32_t idx;
	int r = need(img);
	if (r < 0)
		return r;
	if (!ids_strmap_get(&img->map, key, &idx) || !of_kinds(img->recs[idx].kind, kinds))
		return 0;
	r = replace(img, idx, K_NONE, NULL, 0);
	return r < 0 ? r : 1;
}

/* A new generation only: records read in later carry an older mark, so
 * they count as not named, which they were not. */
void ids_image_present_begin(struct ids_image *img)
{
	img->gen++;
}

int ids_image_present(struct ids_image *img, const char *key)
{
	uint32_t idx;
	int r = need(img);
	if (r < 0)
		return r;
	if (!ids_strmap_get(&img->map, key, &idx) || img->recs[idx].kind == K_NONE)
		return 0;
	img->recs[idx].mark = img->gen;
	return 1;
}

int ids_image_present_end(struct ids_image *img, unsigned kinds, size_t *ret_removed)
{
	size_t removed = 0;
	int e = need(img);
	if (e < 0)
		return e;
	for (size_t i = 0; i < img->nrecs; i++) {
		if (!of_kinds(img->recs[i].kind, kinds) || img->recs[i].mark == img->gen)
			continue;
		int r = replace(img, (uint32_t)i, K_NONE, NULL, 0);
		if (r < 0)
			return r;
		removed++;
	}
	if (ret_removed)
		*ret_removed = removed;
	return 0;
}

/* The slots of the records this run deleted leave the map, for slot()
 * to reuse: the image stays as big as the directory, whatever its
 * turnover.  Out of memory, a slot stays as it was (a key without a
 * record, as before). */
static void vacate(struct ids_image *img)
{
	for (size_t u = 0; u < img->nundo; u++) {
		struct rec *rc = &img->recs[img->undo[u].idx];
		if (rc->kind != K_NONE || rc->vacant ||
		    ids_grow(&img->vacant, &img->capvacant, img->nvacant + 1, sizeof(*img->vacant)) < 0)
			continue;
		ids_strmap_del(&img->map, rc->key);
		rc->vacant = true;
		img->vacant[img->nvacant++] = img->undo[u].idx;
	}
}

void ids_image_commit(struct ids_image *img)
{
	vacate(img);
	drop_undo(img);
	/* a big run's log (a first read logs every record) is not kept for
	 * the next one, which is mostly small */
	if (img->capundo > 4096) {
		free(img->undo);
		img->undo = NULL;
		img->capundo = 0;
	}
}

void ids_image_rollback(struct ids_image *img)
{
	ids_image_abort_record(img);
	/* newest first: a key changed twice ends with its oldest content */
	while (img->nundo) {
		struct undo *u = &img->undo[--img->nundo];
		struct rec *rc = &img->recs[u->idx];
		count(img, rc->kind, -1);
		count(img, u->kind, +1);
		rec_free(img, rc->ops, rc->len);
		rc->kind = u->kind;
		rc->ops = u->ops;
		rc->len = u->len;
		rc->changed = false;
	}
}

/* A deferred image's failure to read in counts nothing here; the next
 * call that returns an int says why. */
size_t ids_image_nusers(const struct ids_image *img)
{
	return need(img) < 0 ? 0 : img->nusers;
}

size_t ids_image_ngroups(const struct ids_image *img)
{
	return need(img) < 0 ? 0 : img->ngroups;
}

/* One op of a record into the builder.  Attribute names and reasons are
 * NUL-terminated strings to the builder: copied out when they are not. */
static int replay_op(struct ids_snapshot *s, unsigned char op, unsigned char arg, const char *a, size_t na,
		     const char *b, size_t nb)
{
	char *z = NULL;
	int r;
	if ((op == OP_USER_ATTR || op == OP_USER_INVALID) && !(z = strndup(a, na)))
		return -ENOMEM;
	switch (op) {
	case OP_USER_SET: r = ids_snapshot_user_set(s, (enum ids_field)arg, a, na); break;
	case OP_USER_ATTR: r = ids_snapshot_user_attr(s, z, b, nb); break;
	case OP_USER_DISABLED: r = ids_snapshot_user_disabled(s, arg != 0); break;
	case OP_USER_INVALID: r = ids_snapshot_user_invalid(s, z); break;
	case OP_GROUP_SET: r = ids_snapshot_group_set(s, (enum ids_field)arg, a, na); break;
	case OP_GROUP_MEMBER: r = ids_snapshot_group_member(s, (enum ids_ref)arg, b, nb); break;
	default: r = -EINVAL;
	}
	free(z);
	return r;
}

/* each_op's callback for replay_rec: one op into the snapshot s. */
static int replay_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		      void *ud)
{
	int r = replay_op(ud, op, arg, a, na, b, nb);
	return r < 0 ? r : 0;
}

/* each_opv's callback for a whole replay: as replay_one, but a user's
 * external id that is the record's key and his interned DN are lasting
 * strings to the builder (ids_snapshot_user_set_lasting): a record
 * unchanged since the last commit keeps its key's bytes and its interned
 * copies until a later run changes or deletes it, which that run patches
 * into a kept snapshot or replays afresh before it commits, and a
 * rollback frees nothing of it.  A million of each at tier L: 79 MiB a
 * kept snapshot no longer copies (docs/changes.md). */
struct lasting {
	struct ids_snapshot *s;
	const char *key; /* the record's */
};

static int replay_lasting(const struct opv *o, void *ud)
{
	const struct lasting *l = ud;
	bool lasting = o->op == OP_USER_SET &&
		       ((o->arg == IDS_F_EXTERNAL_ID && o->a == l->key) || (o->arg == IDS_F_DN && o->ia));
	int r = lasting ? ids_snapshot_user_set_lasting(l->s, (enum ids_field)o->arg, o->a, o->na)
			: replay_op(l->s, o->op, o->arg, o->a, o->na, o->b, o->nb);
	return r < 0 ? r : 0;
}

/* Record rc into s; `lasting`: rc is the image's own, unchanged since the
 * last commit (replay_lasting). */
static int replay_rec(const struct rec *rc, struct ids_snapshot *s, bool lasting)
{
	struct lasting l = {s, rc->key};
	int r = rc->kind == K_USER ? ids_snapshot_user_begin(s) : ids_snapshot_group_begin(s);
	if (r >= 0)
		r = lasting && !rc->wire ? each_opv(rc, replay_lasting, &l) : each_op(rc, replay_one, s);
	if (r < 0)
		return r;
	return rc->kind == K_USER ? ids_snapshot_user_end(s) : ids_snapshot_group_end(s);
}

struct find {
	enum ids_field f;
	char *v;
};

/* each_op's fn for ids_image_field: the first value of the field stops
 * the walk. */
static int find_field(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		      void *ud)
{
	struct find *w = ud;
	(void)b;
	(void)nb;
	if ((op != OP_USER_SET && op != OP_GROUP_SET) || arg != (unsigned char)w->f)
		return 0;
	return (w->v = strndup(a, na)) ? 1 : -ENOMEM;
}

int ids_image_field(const struct ids_image *img, const char *key, unsigned kinds, enum ids_field f,
		    char **ret)
{
	uint32_t idx;
	struct find w = {.f = f};
	*ret = NULL;
	int r = need(img);
	if (r < 0)
		return r;
	if (!ids_strmap_get(&img->map, key, &idx) || !of_kinds(img->recs[idx].kind, kinds))
		return 0;
	if ((r = each_op(&img->recs[idx], find_field, &w)) < 0)
		return r;
	*ret = w.v;
	return 0;
}

int ids_image_dn(const struct ids_image *img, const char *key, unsigned kinds, char **ret)
{
	return ids_image_field(img, key, kinds, IDS_F_DN, ret);
}

/* What ids_image_groups_naming_ref looks for.  Every member reference
 * of every group is tested, five million at bench tier L, each run that
 * renamed or deleted someone: a member that is an interned value is first
 * tested by its normalized DN's hash, kept in the value, against a bitmap
 * of the wanted ones' hashes.  Only a hit there (a wanted DN, or one in
 * about 64 others) is normalized and looked up, as every reference was. */
struct naming {
	enum ids_ref kind;
	struct ids_strmap want; /* normalized DNs, or the references as they are */
	char **keys;		/* want's keys */
	size_t nkeys;
	uint64_t *bits; /* kind DN: the wanted DNs' hashes, one bit each */
	uint64_t mask;	/* the bitmap's size in bits, minus one */
};

/* A DN that does not normalize names nothing; its hash is this one. */
#define DN_HASH_NONE 1

/* The hash of a normalized DN, never 0 (not asked yet) nor DN_HASH_NONE. */
static uint64_t dn_hash(const char *norm)
{
	uint64_t h = ids_hash64(norm, strlen(norm));
	return h > DN_HASH_NONE ? h : h + 2;
}

/* each_opv's fn for ids_image_groups_naming_ref: 1 when o is a member
 * reference among the wanted; -ENOMEM. */
static int names_one(const struct opv *o, void *ud)
{
	struct naming *w = ud;
	struct istr *e = o->ib;
	char *v = NULL;
	if (o->op != OP_GROUP_MEMBER || o->arg != (unsigned char)w->kind)
		return 0;
	if (w->kind == IDS_REF_DN && e && e->dn_hash) {
		uint64_t h = e->dn_hash;
		if (h == DN_HASH_NONE || !(w->bits[(h & w->mask) / 64] & (UINT64_C(1) << (h & 63))))
			return 0;
	}
	int r = 0;
	if (w->kind == IDS_REF_DN)
		r = ids_dn_normalize(o->b, o->nb, &v);
	else if (!(v = strndup(o->b, o->nb)))
		r = -ENOMEM;
	if (r == -EINVAL && e)
		e->dn_hash = DN_HASH_NONE;
	if (r < 0)
		return r == -EINVAL ? 0 : r; /* a malformed DN names nothing, as in the snapshot */
	if (w->kind == IDS_REF_DN && e)
		e->dn_hash = dn_hash(v);
	bool hit = ids_strmap_get(&w->want, v, NULL);
	free(v);
	return hit;
}

/* w->want gets the wanted references normalized (kept in w->keys, the
 * map borrows them), and kind DN w->bits their hashes (64 bits a
 * reference, so about 1 in 64 others passes). */
static int naming_init(struct naming *w, const char *const *refs, size_t n)
{
	size_t nbits = 64;
	while (nbits < n * 64 && nbits < ((size_t)1 << 40))
		nbits *= 2;
	w->mask = nbits - 1;
	if (w->kind == IDS_REF_DN && !(w->bits = calloc(nbits / 64, sizeof(*w->bits))))
		return -ENOMEM;
	if (!(w->keys = calloc(n ? n : 1, sizeof(*w->keys))))
		return -ENOMEM;
	w->nkeys = n;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		if (w->kind == IDS_REF_DN)
			r = ids_dn_normalize(refs[i], strlen(refs[i]), &w->keys[i]);
		else if (!(w->keys[i] = strdup(refs[i])))
			r = -ENOMEM;
		if (r == -EINVAL) { /* names nothing */
			r = 0;
			continue;
		}
		if (r >= 0 && w->bits) {
			uint64_t h = dn_hash(w->keys[i]);
			w->bits[(h & w->mask) / 64] |= UINT64_C(1) << (h & 63);
		}
		if (r >= 0)
			r = ids_strmap_put(&w->want, w->keys[i], 0, NULL);
	}
	return r;
}

int ids_image_groups_naming(const struct ids_image *img, const char *const *dns, size_t n,
			    int (*fn)(const char *key, void *ud), void *ud)
{
	return ids_image_groups_naming_ref(img, IDS_REF_DN, dns, n, fn, ud);
}

int ids_image_groups_naming_ref(const struct ids_image *img, enum ids_ref kind, const char *const *refs,
				size_t n, int (*fn)(const char *key, void *ud), void *ud)
{
	struct naming w = {.kind = kind};
	int r = need(img);
	if (r >= 0)
		r = naming_init(&w, refs, n);
	for (size_t i = 0; r >= 0 && w.want.len && i < img->nrecs; i++) {
		if (img->recs[i].kind != K_GROUP)
			continue;
		if ((r = each_opv(&img->recs[i], names_one, &w)) > 0)
			r = fn(img->recs[i].key, ud);
	}
	ids_strmap_free(&w.want);
	for (size_t i = 0; i < w.nkeys; i++)
		free(w.keys[i]);
	free(w.keys);
	free(w.bits);
	return r < 0 ? r : 0;
}

/* ---- member edits ---- */

struct copy {
	struct ids_image *img;
	bool members_only; /* begin_edit: the group's other values are set anew */
	bool (*keep)(enum ids_ref kind, const char *ref, size_t n, void *ud);
	void *ud;
};

/* each_op's fn for open_copy: one op of the old record into the open one. */
static int copy_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		    void *ud)
{
	struct copy *c = ud;
	if (op != OP_GROUP_MEMBER && c->members_only)
		return 0;
	if (op == OP_GROUP_MEMBER && c->keep && !c->keep((enum ids_ref)arg, b, nb, c->ud))
		return 0;
	return put(c->img, K_GROUP, op, arg, a, na, b, nb);
}

/* Opens group key anew with the ops of its record (if any) that c lets
 * through.  On failure nothing is open. */
static int open_copy(struct ids_image *img, const char *key, struct copy *c)
{
	uint32_t idx;
	int r = begin(img, key, K_GROUP);
	if (r < 0)
		return r;
	if (ids_strmap_get(&img->map, key, &idx) && img->recs[idx].kind == K_GROUP &&
	    (r = each_op(&img->recs[idx], copy_one, c)) < 0)
		ids_image_abort_record(img);
	return r < 0 ? r : 0;
}

int ids_image_group_begin_edit(struct ids_image *img, const char *key,
			       bool (*keep)(enum ids_ref kind, const char *ref, size_t n, void *ud), void *ud)
{
	struct copy c = {img, true, keep, ud};
	return open_copy(img, key, &c);
}

struct member_ref {
	enum ids_ref kind;
	const char *ref;
	size_t n;
};

static bool is_other(enum ids_ref kind, const char *ref, size_t n, void *ud)
{
	const struct member_ref *m = ud;
	return kind != m->kind || n != m->n || (n && memcmp(ref, m->ref, n) != 0);
}

/* each_op's fn for has_member: stops (1) at the member ud names. */
static int find_member(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b,
		       size_t nb, void *ud)
{
	(void)a;
	(void)na;
	return op == OP_GROUP_MEMBER && !is_other((enum ids_ref)arg, b, nb, ud) ? 1 : 0;
}

/* 1 when group key's record names m, 0 when not, -ENOENT when key is no
 * group record, -EBUSY while a record is open. */
static int has_member(const struct ids_image *img, const char *key, struct member_ref *m)
{
	uint32_t idx;
	if (img->open_kind != K_NONE)
		return -EBUSY;
	int r = need(img);
	if (r < 0)
		return r;
	if (!key || !ids_strmap_get(&img->map, key, &idx) || img->recs[idx].kind != K_GROUP)
		return -ENOENT;
	return each_op(&img->recs[idx], find_member, m);
}

int ids_image_group_member_add(struct ids_image *img, const char *key, enum ids_ref kind, const char *ref,
			       size_t n)
{
	struct member_ref m = {kind, ref, n};
	struct copy c = {img, false, NULL, NULL};
	int r = has_member(img, key, &m);
	if (r != 0)
		return r < 0 ? r : 0;
	if ((r = open_copy(img, key, &c)) < 0)
		return r;
	if ((r = ids_image_group_member(img, kind, ref, n)) < 0) {
		ids_image_abort_record(img);
		return r;
	}
	return (r = ids_image_end(img)) < 0 ? r : 1;
}

int ids_image_group_member_remove(struct ids_image *img, const char *key, enum ids_ref kind, const char *ref,
				  size_t n)
{
	struct member_ref m = {kind, ref, n};
	struct copy c = {img, false, is_other, &m};
	int r = has_member(img, key, &m);
	if (r <= 0)
		return r;
	if ((r = open_copy(img, key, &c)) < 0)
		return r;
	return (r = ids_image_end(img)) < 0 ? r : 1;
}

int ids_image_replay(const struct ids_image *img, struct ids_snapshot *s)
{
	if (img->open_kind != K_NONE)
		return -EBUSY;
	int e = need(img);
	if (e < 0)
		return e;
	/* users first, as every connector reads them (the progress line
	 * tells the phases apart by that order) */
	for (unsigned char kind = K_USER; kind <= K_GROUP; kind++)
		for (size_t i = 0; i < img->nrecs; i++) {
			if (img->recs[i].kind != kind)
				continue;
			int r = replay_rec(&img->recs[i], s, !img->recs[i].changed);
			if (r < 0)
				return r;
		}
	return 0;
}

static int kind_of(unsigned char k)
{
	return k == K_USER ? IDS_IMAGE_USERS : k == K_GROUP ? IDS_IMAGE_GROUPS : 0;
}

int ids_image_record_replay(const char *key, int kind, const void *rec, size_t len, struct ids_snapshot *s)
{
	if (kind != IDS_IMAGE_USERS && kind != IDS_IMAGE_GROUPS)
		return -EINVAL;
	const struct rec rc = {.key = (char *)key,
			       .kind = kind == IDS_IMAGE_USERS ? K_USER : K_GROUP,
			       .ops = (unsigned char *)rec,
			       .len = len};
	return replay_rec(&rc, s, false);
}

int ids_image_record_field(const char *key, int kind, const void *rec, size_t len, enum ids_field f,
			   char **ret)
{
	struct find w = {.f = f};
	const struct rec rc = {.key = (char *)key,
			       .kind = kind == IDS_IMAGE_USERS ? K_USER : K_GROUP,
			       .ops = (unsigned char *)rec,
			       .len = len};
	*ret = NULL;
	int r = kind ? each_op(&rc, find_field, &w) : 0;
	if (r < 0)
		return r;
	*ret = w.v;
	return 0;
}

int ids_image_each_change(const struct ids_image *img, int (*fn)(const struct ids_image_change *c, void *ud),
			  void *ud)
{
	unsigned char *seen = calloc(img->nrecs ? img->nrecs : 1, 1);
	int r = seen ? 0 : -ENOMEM;
	/* the first undo entry of a key holds it as at the last commit */
	for (size_t u = 0; r >= 0 && u < img->nundo; u++) {
		const struct undo *un = &img->undo[u];
		const struct rec *now = &img->recs[un->idx];
		if (seen[un->idx])
			continue;
		seen[un->idx] = 1;
		const struct ids_image_change c = {.key = now->key,
						   .was_kind = kind_of(un->kind),
						   .was = un->ops,
						   .was_len = un->len,
						   .now_kind = kind_of(now->kind),
						   .now = now->ops,
						   .now_len = now->len};
		r = fn(&c, ud);
	}
	free(seen);
	return r < 0 ? r : 0;
}

/* ---- what changed, for the re-plan ---- */

struct changed {
	int (*fn)(int what, enum ids_ref kind, const char *v, size_t n, void *ud);
	void *ud;
	unsigned char kind; /* of the record walked */
	bool ids;	    /* emit the record's external id */
	bool members;	    /* emit every member */
};

/* each_op's fn for ids_image_changed: a record's id, its members. */
static int changed_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b,
		       size_t nb, void *ud)
{
	struct changed *c = ud;
	int r = 0;
	if (op == OP_GROUP_MEMBER && c->members)
		r = c->fn(IDS_IMAGE_MEMBERS, (enum ids_ref)arg, b, nb, c->ud);
	else if (c->ids && (op == OP_USER_SET || op == OP_GROUP_SET) && arg == IDS_F_EXTERNAL_ID)
		r = c->fn(c->kind == K_USER ? IDS_IMAGE_USERS : IDS_IMAGE_GROUPS, IDS_REF_ID, a, na, c->ud);
	return r < 0 ? r : 0;
}

/* A record as it was or is: its external id and every member. */
static int changed_rec(struct changed *c, const struct rec *rc)
{
	c->kind = rc->kind;
	c->members = true;
	return rc->kind == K_NONE ? 0 : each_op(rc, changed_one, c);
}

/* A member reference as recorded: borrowed from its record's bytes. */
struct mref {
	const char *p;
	uint32_t n;
	unsigned char kind;
};

static int mref_cmp(const void *x, const void *y)
{
	const struct mref *a = x, *b = y;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	int c = memcmp(a->p, b->p, a->n < b->n ? a->n : b->n);
	return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* One walk of a group record's ops (members_walk): its values other than
 * members encoded into `values` (to compare them), its members counted,
 * compared with `old` (index by index from the start, and aligned at the
 * end), and those with an index in [lo, hi) collected into v. */
struct mwalk {
	bool values_wanted;
	struct ids_buf values;
	size_t n;		/* members seen */
	const struct mref *old; /* the old record's members; NULL: no comparison */
	size_t nold, nnew;	/* their count; the walked record's (known at its second walk) */
	size_t prefix;		/* members equal to old's from the start */
	size_t last_miss;	/* 1 + the last index unequal to old's aligned at the end */
	size_t lo, hi;		/* collect these */
	struct mref *v;		/* new */
	size_t nv, cap;
};

static int mwalk_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		     void *ud)
{
	struct mwalk *w = ud;
	if (op != OP_GROUP_MEMBER)
		return w->values_wanted ? encode_op(&w->values, op, arg, a, na, b, nb) : 0;
	if (nb > UINT32_MAX)
		return -EINVAL;
	const struct mref m = {b, (uint32_t)nb, arg};
	size_t j = w->n++;
	if (w->old) {
		if (w->prefix == j && j < w->nold && !mref_cmp(&m, &w->old[j]))
			w->prefix++;
		/* the old member at the same distance from the end */
		size_t i = j + w->nold - w->nnew; /* wraps when before old's first: then >= nold */
		if (i >= w->nold || mref_cmp(&m, &w->old[i]))
			w->last_miss = j + 1;
	}
	if (j < w->lo || j >= w->hi)
		return 0;
	if (ids_grow(&w->v, &w->cap, w->nv + 1, sizeof(*w->v)) < 0)
		return -ENOMEM;
	w->v[w->nv++] = m;
	return 0;
}

/* The members in one sorted list and not the other (either way), to fn. */
static int members_merge(const struct changed *c, struct mref *x, size_t nx, struct mref *y, size_t ny)
{
	if (nx > 1) /* x, y NULL when empty: not for qsort */
		qsort(x, nx, sizeof(*x), mref_cmp);
	if (ny > 1)
		qsort(y, ny, sizeof(*y), mref_cmp);
	size_t i = 0, j = 0;
	int r = 0;
	while (r >= 0 && (i < nx || j < ny)) {
		int d = i == nx ? 1 : j == ny ? -1 : mref_cmp(&x[i], &y[j]);
		const struct mref *m = d < 0 ? &x[i] : &y[j];
		if (d) {
			r = c->fn(IDS_IMAGE_MEMBERS, (enum ids_ref)m->kind, m->p, m->n, c->ud);
			i += d < 0;
			j += d > 0;
			continue;
		}
		struct mref k = x[i]; /* in both: every copy on either side */
		while (i < nx && !mref_cmp(&x[i], &k))
			i++;
		while (j < ny && !mref_cmp(&y[j], &k))
			j++;
	}
	return r;
}

/* A group that stays a group: only the member references that differ
 * (either way), and its id when its other values (name, DN, e-mail)
 * changed — then every member is reached through the group itself.  A
 * group of 100,000 members that gains one reaches that one.  No set of
 * all members: the members both records have at their start and at their
 * end (a directory keeps a group's order; an edit appends or cuts one)
 * are skipped in order, and only the members between are sorted and
 * merged.  A reference a record repeats may be named though both have
 * it: more users re-planned, never fewer. */
static int changed_group(const struct changed *c, const struct rec *was, const struct rec *now)
{
	struct mwalk o = {.values_wanted = true, .hi = SIZE_MAX}, n = {.values_wanted = true, .hi = 0};
	int r = each_op(was, mwalk_one, &o); /* the old members, all (views: no copy) */
	if (r >= 0)
		r = each_op(now, mwalk_one, &n); /* the new values and count */
	struct mwalk m = {.old = o.v, .nold = o.n, .nnew = n.n, .hi = 0};
	if (r >= 0)
		r = each_op(now, mwalk_one, &m); /* the common start and end */
	size_t lim = o.n < n.n ? o.n : n.n, pre = m.prefix, suf = n.n - m.last_miss;
	if (suf > lim - pre)
		suf = lim - pre;
	struct mwalk mid = {.lo = pre, .hi = n.n - suf};
	if (r >= 0)
		r = each_op(now, mwalk_one, &mid); /* the new members between */
	bool same =
	    o.values.len == n.values.len && (!o.values.len || !memcmp(o.values.p, n.values.p, o.values.len));
	struct changed e = {.fn = c->fn, .ud = c->ud, .kind = K_GROUP, .ids = true};
	if (r >= 0 && !same && (r = each_op(was, changed_one, &e)) >= 0)
		r = each_op(now, changed_one, &e);
	if (r >= 0)
		r = members_merge(c, o.v + pre, o.n - suf - pre, mid.v, mid.nv);
	ids_buf_free(&o.values);
	ids_buf_free(&n.values);
	free(o.v);
	free(mid.v);
	return r;
}

/* ids_image_each_change's fn for ids_image_changed: a group changed in
 * place is compared member by member; anything else names all of its
 * old record and all of its new one.  The public kinds are the records'
 * (IDS_IMAGE_USERS == K_USER, IDS_IMAGE_GROUPS == K_GROUP, 0 == K_NONE). */
_Static_assert((int)K_NONE == 0 && (int)K_USER == (int)IDS_IMAGE_USERS &&
		   (int)K_GROUP == (int)IDS_IMAGE_GROUPS,
	       "a record's kind is its public kind");
static int changed_change(const struct ids_image_change *ch, void *ud)
{
	struct changed *c = ud;
	const struct rec was = {.key = (char *)ch->key,
				.kind = (unsigned char)ch->was_kind,
				.ops = (unsigned char *)ch->was,
				.len = ch->was_len};
	const struct rec now = {.key = (char *)ch->key,
				.kind = (unsigned char)ch->now_kind,
				.ops = (unsigned char *)ch->now,
				.len = ch->now_len};
	if (was.kind == K_GROUP && now.kind == K_GROUP)
		return changed_group(c, &was, &now);
	int r = changed_rec(c, &was);
	return r < 0 ? r : changed_rec(c, &now);
}

int ids_image_changed(const struct ids_image *img,
		      int (*fn)(int what, enum ids_ref kind, const char *v, size_t n, void *ud), void *ud)
{
	struct changed c = {.fn = fn, .ud = ud, .ids = true};
	return ids_image_each_change(img, changed_change, &c);
}

/* ---- ids_image_group_edit ---- */

/* A member value as the edit compares it: a DN normalized (raw when it
 * does not parse), anything else as it is.  New, NULL on ENOMEM. */
static char *member_norm(enum ids_ref kind, const char *v, size_t n)
{
	char *dn = NULL;
	if (kind == IDS_REF_DN && ids_dn_normalize(v, n, &dn) >= 0)
		return dn;
	return strndup(v, n);
}

struct edit {
	enum ids_ref kind;
	struct ids_strmap del, have; /* normalized values; strings in keys */
	struct ids_arena keys;
	struct ids_buf out; /* the new record */
};

/* Whether v (normalized) is in m; with `add`, puts it there when not.
 * 1 in, 0 not, -ENOMEM. */
static int in_set(struct edit *e, struct ids_strmap *m, const char *v, size_t n, bool add)
{
	char *z = member_norm(e->kind, v, n);
	if (!z)
		return -ENOMEM;
	int r = ids_strmap_get(m, z, NULL);
	if (!r && add) {
		const char *k = ids_arena_strdup(&e->keys, z);
		r = k && ids_strmap_put(m, k, 0, NULL) >= 0 ? 0 : -ENOMEM;
	}
	free(z);
	return r;
}

/* each_op's fn: copies one op to e->out unless it is a member to drop;
 * notes the members kept. */
static int edit_one(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		    void *ud)
{
	struct edit *e = ud;
	if (op == OP_GROUP_MEMBER && arg == (unsigned char)e->kind) {
		int r = in_set(e, &e->del, b, nb, false);
		if (r != 0)
			return r < 0 ? r : 0;
		if ((r = in_set(e, &e->have, b, nb, true)) < 0)
			return r;
	}
	return encode_op(&e->out, op, arg, a, na, b, nb);
}

int ids_image_group_edit(struct ids_image *img, const char *key, enum ids_ref kind, const char *const *add,
			 size_t nadd, const char *const *del, size_t ndel)
{
	uint32_t idx;
	if (img->open_kind != K_NONE)
		return -EBUSY;
	if ((unsigned)kind > IDS_REF_USERNAME)
		return -EINVAL;
	int r = need(img);
	if (r < 0)
		return r;
	if (!ids_strmap_get(&img->map, key, &idx) || img->recs[idx].kind != K_GROUP)
		return 0;
	struct edit e = {.kind = kind};
	for (size_t i = 0; r >= 0 && i < ndel; i++)
		r = in_set(&e, &e.del, del[i], strlen(del[i]), true);
	if (r >= 0)
		r = each_op(&img->recs[idx], edit_one, &e);
	for (size_t i = 0; r >= 0 && i < nadd; i++) {
		size_t n = strlen(add[i]);
		if ((r = in_set(&e, &e.have, add[i], n, true)) == 0)
			r = encode_op(&e.out, OP_GROUP_MEMBER, (unsigned char)kind, "", 0, add[i], n);
	}
	unsigned char *ops;
	size_t len;
	if (r >= 0 && (r = pack(img, img->recs[idx].key, e.out.p, e.out.len, &ops, &len)) >= 0)
		r = replace(img, idx, K_GROUP, ops, len);
	ids_buf_free(&e.out);
	ids_strmap_free(&e.del);
	ids_strmap_free(&e.have);
	ids_arena_free(&e.keys);
	return r < 0 ? r : 1;
}

/* each_op's fn for ids_image_load: checks a stored record's ops. */
static int check_op(unsigned char op, unsigned char arg, const char *a, size_t na, const char *b, size_t nb,
		    void *ud)
{
	unsigned char kind = *(unsigned char *)ud;
	(void)b;
	(void)nb;
	bool user =
	    op == OP_USER_SET || op == OP_USER_ATTR || op == OP_USER_DISABLED || op == OP_USER_INVALID;
	bool group = op == OP_GROUP_SET || op == OP_GROUP_MEMBER;
	if ((kind == K_USER && !user) || (kind == K_GROUP && !group))
		return -EINVAL;
	if (op == OP_USER_SET && arg >= IDS_F__COUNT)
		return -EINVAL;
	/* what the builder takes of a group (replay would refuse the rest) */
	if (op == OP_GROUP_SET && arg != IDS_F_EXTERNAL_ID && arg != IDS_F_USERNAME && arg != IDS_F_EMAIL &&
	    arg != IDS_F_DN)
		return -EINVAL;
	if (op == OP_GROUP_MEMBER && arg > IDS_REF_USERNAME)
		return -EINVAL;
	/* an attribute name is a C string to the builder: not empty, no NUL */
	if (op == OP_USER_ATTR && (!na || memchr(a, '\0', na)))
		return -EINVAL;
	return 0;
}

int ids_image_load(struct ids_image *img, const char *key, int kind, const void *rec, size_t len)
{
	uint32_t idx;
	bool taken;
	if (img->open_kind != K_NONE)
		return -EBUSY;
	if (!key || !*key || (kind != IDS_IMAGE_USERS && kind != IDS_IMAGE_GROUPS))
		return -EINVAL;
	unsigned char k = kind == IDS_IMAGE_USERS ? K_USER : K_GROUP;
	const struct rec probe = {.kind = k, .wire = true, .ops = (unsigned char *)rec, .len = len};
	int r = each_op(&probe, check_op, &k);
	if (r < 0)
		return -EINVAL;
	unsigned char *ops = NULL;
	size_t olen;
	if ((r = pack(img, key, rec, len, &ops, &olen)) < 0)
		return r;
	if ((r = slot(img, key, &taken, &idx)) < 0 || !taken) {
		rec_free(img, ops, olen);
		return r < 0 ? r : -EEXIST;
	}
	struct rec *rc = &img->recs[idx];
	rc->kind = k;
	rc->ops = ops;
	rc->len = olen;
	count(img, k, +1);
	return 0;
}

/* Calls fn for record i as image.h's ids_image_each says, in the stored
 * encoding (made in o). */
static int each_one(const struct ids_image *img, size_t i, struct ids_buf *o,
		    int (*fn)(const char *key, int kind, const void *rec, size_t len, void *ud), void *ud)
{
	const struct rec *rc = &img->recs[i];
	int kind = rc->kind == K_USER ? IDS_IMAGE_USERS : rc->kind == K_GROUP ? IDS_IMAGE_GROUPS : 0;
	if (!kind)
		return fn(rc->key, 0, NULL, 0, ud);
	int r = unpack(rc, o);
	return r < 0 ? r : fn(rc->key, kind, o->p ? o->p : "", o->len, ud);
}

int ids_image_each(const struct ids_image *img, bool changed_only,
		   int (*fn)(const char *key, int kind, const void *rec, size_t len, void *ud), void *ud)
{
	int r = 0;
	/* changed_only: a deferred image has no change (nothing read in) */
	if (!changed_only && (r = need(img)) < 0)
		return r;
	struct ids_buf o = {0};
	if (!changed_only) {
		for (size_t i = 0; r >= 0 && i < img->nrecs; i++)
			if (img->recs[i].kind != K_NONE)
				r = each_one(img, i, &o, fn, ud);
		ids_buf_free(&o);
		return r < 0 ? r : 0;
	}
	/* a key changed twice in the run is in the undo log twice: once */
	unsigned char *seen = calloc(img->nrecs ? img->nrecs : 1, 1);
	if (!seen)
		return -ENOMEM;
	for (size_t u = 0; r >= 0 && u < img->nundo; u++) {
		uint32_t i = img->undo[u].idx;
		if (seen[i])
			continue;
		seen[i] = 1;
		/* a key the run made and removed again was never stored */
		if (img->recs[i].kind != K_NONE || img->undo[u].kind != K_NONE)
			r = each_one(img, i, &o, fn, ud);
	}
	ids_buf_free(&o);
	free(seen);
	return r < 0 ? r : 0;
}

size_t ids_image_nchanged(const struct ids_image *img)
{
	return img->nundo;
}

static void add_istr(const char *key, void *ud)
{
	*(size_t *)ud += sizeof(struct istr) + istr_of(key)->n + 1;
}

size_t ids_image_memory(const struct ids_image *img)
{
	/* a map slot: the key's pointer, its hash and the value */
	const size_t slot = sizeof(char *) + 2 * sizeof(uint32_t);
	size_t n = sizeof(*img) + img->cap * sizeof(*img->recs) + img->map.cap * slot +
		   img->capundo * sizeof(*img->undo) + img->capvacant * sizeof(*img->vacant) +
		   img->imap.cap * slot;
	for (size_t i = 0; i < img->nrecs; i++)
		n += strlen(img->recs[i].key) + 1 + img->recs[i].len;
	for (size_t i = 0; i < img->nundo; i++)
		n += img->undo[i].len;
	ids_strmap_each_key(&img->imap, add_istr, &n);
	return n;
}
