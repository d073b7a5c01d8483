/* util.c — buffers, arena, hash index, string vectors (util.h).
 *
 * Everything here is sized for the million-user snapshot: growth by
 * doubling (appends stay linear), strings packed in arenas instead of one
 * malloc each, and hash maps that store a 32-bit hash beside each key so
 * that most probes never touch the key's memory.  Every size computation
 * is checked for overflow: a directory decides how much we allocate. */
#include "ids/util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

/* ---------------- growable buffer ---------------- */

/* Room for `extra` more bytes and the NUL that always follows them.  The
 * SIZE_MAX / 2 bound keeps the doubling below from overflowing. */
static int buf_reserve(struct ids_buf *b, size_t extra)
{
	if (extra > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int ids_buf_add(struct ids_buf *b, const void *s, size_t n)
{
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int ids_buf_puts(struct ids_buf *b, const char *s)
{
	return ids_buf_add(b, s, strlen(s));
}

int ids_buf_putc(struct ids_buf *b, char c)
{
	return ids_buf_add(b, &c, 1);
}

int ids_buf_printf(struct ids_buf *b, const char *fmt, ...)
{
	/* measure first, then format in place: no fixed buffer that could
	 * truncate (STYLE.md: no sprintf into a guessed size) */
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	int r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int ids_buf_json_str(struct ids_buf *b, const char *s)
{
	int r = ids_buf_putc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; r >= 0 && *p; p++) {
		switch (*p) {
		case '"': r = ids_buf_puts(b, "\\\""); break;
		case '\\': r = ids_buf_puts(b, "\\\\"); break;
		case '\n': r = ids_buf_puts(b, "\\n"); break;
		case '\r': r = ids_buf_puts(b, "\\r"); break;
		case '\t': r = ids_buf_puts(b, "\\t"); break;
		default:
			/* other control bytes as \u00XX; UTF-8 passes through */
			if (*p < 0x20)
				r = ids_buf_printf(b, "\\u%04x", *p);
			else
				r = ids_buf_putc(b, (char)*p);
		}
	}
	return r < 0 ? r : ids_buf_putc(b, '"');
}

void ids_buf_reset(struct ids_buf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

void ids_buf_free(struct ids_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

char *ids_buf_steal(struct ids_buf *b)
{
	char *p = b->p ? b->p : strdup("");
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

/* ---------------- growable arrays ---------------- */

int ids_grow(void *arrp, size_t *cap, size_t need, size_t size)
{
	void *old, *n;
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	if (c > SIZE_MAX / size)
		return -ENOMEM;
	/* arrp is a T ** for any T: going through memcpy (not a void **
	 * cast) is what makes that legal under strict aliasing */
	memcpy(&old, arrp, sizeof(old));
	n = realloc(old, c * size);
	if (!n)
		return -ENOMEM;
	memcpy(arrp, &n, sizeof(n));
	*cap = c;
	return 0;
}

/* ---------------- arena ---------------- */

struct ids_arena_chunk {
	struct ids_arena_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

/* 64 KiB: small enough that a config's few strings waste little, large
 * enough that a million users' strings cost a few thousand mallocs. */
#define ARENA_CHUNK (64 * 1024)

/* n bytes at a multiple of align (a power of two) in the current chunk,
 * or in a new one.  Not zeroed. */
static void *arena_take(struct ids_arena *a, size_t n, size_t align)
{
	struct ids_arena_chunk *c = a->head;
	size_t off = c ? (c->used + align - 1) & ~(align - 1) : 0;
	if (!c || off > c->cap || c->cap - off < n) {
		/* oversized requests get a chunk of their own, put behind the
		 * current one so the current chunk's free space stays usable */
		size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
		if (cap > SIZE_MAX - sizeof(*c))
			return NULL;
		struct ids_arena_chunk *nc = malloc(sizeof(*nc) + cap);
		if (!nc)
			return NULL;
		nc->used = 0;
		nc->cap = cap;
		if (c && cap != ARENA_CHUNK) {
			nc->next = c->next;
			c->next = nc;
		} else {
			nc->next = c;
			a->head = nc;
		}
		c = nc;
		off = 0;
	}
	c->used = off + n;
	return (char *)c->data + off;
}

void *ids_arena_alloc(struct ids_arena *a, size_t n)
{
	/* zeroed like calloc: callers build structs in it field by field and
	 * rely on the rest being NULL / 0 / false */
	void *p = arena_take(a, n, _Alignof(max_align_t));
	if (p)
		memset(p, 0, n);
	return p;
}

char *ids_arena_strndup(struct ids_arena *a, const char *s, size_t n)
{
	/* strings need no alignment: packed, millions of short directory
	 * values take a third less memory than at 16-byte steps */
	char *p = n < SIZE_MAX ? arena_take(a, n + 1, 1) : NULL;
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *ids_arena_strdup(struct ids_arena *a, const char *s)
{
	return s ? ids_arena_strndup(a, s, strlen(s)) : NULL;
}

void ids_arena_free(struct ids_arena *a)
{
	struct ids_arena_chunk *c = a->head;
	while (c) {
		struct ids_arena_chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = NULL;
}

/* ---------------- hash index ---------------- */

struct ids_strmap_slot {
	const char *key; /* NULL = empty */
	uint32_t hash;	 /* the key's hash: places the key, and most mismatches end here */
	uint32_t val;
};

uint64_t ids_hash64(const void *p, size_t n)
{
	/* FNV-1a, byte by byte.  Stable forever: the store derives the
	 * connectors' advisory lock keys from it, and instances of two
	 * versions must agree on them.  The maps use key_hash() below. */
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The maps' hash: eight bytes per step (a multiply-xorshift mix), about
 * five times faster than FNV on DNs and UUIDs.  Never persisted.  32 bits
 * are plenty: a map holds fewer than 2^32 keys (values are uint32). */
static uint32_t key_hash(const char *s, size_t n)
{
	const uint64_t k = 0x9e3779b97f4a7c15ULL;
	uint64_t h = n * k, w;
	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * k;
		h ^= h >> 29;
	}
	w = 0;
	memcpy(&w, s, n);
	h = (h ^ w) * k;
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	return (uint32_t)(h ^ (h >> 32));
}

static int strmap_grow(struct ids_strmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct ids_strmap_slot *s = calloc(cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].key)
			continue;
		size_t j = m->slots[i].hash & (cap - 1);
		while (s[j].key)
			j = (j + 1) & (cap - 1);
		s[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = s;
	m->cap = cap;
	return 0;
}

int ids_strmap_put(struct ids_strmap *m, const char *key, uint32_t val, uint32_t *ret_existing)
{
	/* keep the load factor under 1/2 (probes stay short), or under 3/4
	 * for a dense map: with the hash kept in the slot a probe is one
	 * compare, four slots a cache line; under 1/2, the image's maps of a
	 * million keys (tier L's DNs, its entryUUIDs) took 64 MiB instead of
	 * 32 once a run's renames pushed them past 2^20 keys
	 * (bench/image_mem) */
	if ((m->len + 1) * (m->dense ? 4 : 2) > m->cap * (m->dense ? 3 : 1)) {
		int r = strmap_grow(m);
		if (r < 0)
			return r;
	}
	uint32_t tag = key_hash(key, strlen(key));
	size_t j = tag & (m->cap - 1);
	while (m->slots[j].key) {
		if (m->slots[j].hash == tag && strcmp(m->slots[j].key, key) == 0) {
			if (ret_existing)
				*ret_existing = m->slots[j].val;
			return 0;
		}
		j = (j + 1) & (m->cap - 1);
	}
	m->slots[j] = (struct ids_strmap_slot){key, tag, val};
	m->len++;
	return 1;
}

/* The slot holding key, or SIZE_MAX. */
static size_t find(const struct ids_strmap *m, const char *key)
{
	if (!m->cap || !key)
		return SIZE_MAX;
	uint32_t tag = key_hash(key, strlen(key));
	for (size_t j = tag & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1))
		if (m->slots[j].hash == tag && strcmp(m->slots[j].key, key) == 0)
			return j;
	return SIZE_MAX;
}

bool ids_strmap_get(const struct ids_strmap *m, const char *key, uint32_t *ret_val)
{
	size_t j = find(m, key);
	if (j == SIZE_MAX)
		return false;
	if (ret_val)
		*ret_val = m->slots[j].val;
	return true;
}

const char *ids_strmap_key(const struct ids_strmap *m, const char *key)
{
	size_t j = find(m, key);
	return j == SIZE_MAX ? NULL : m->slots[j].key;
}

void ids_strmap_each_key(const struct ids_strmap *m, void (*fn)(const char *key, void *ud), void *ud)
{
	for (size_t j = 0; j < m->cap; j++)
		if (m->slots[j].key)
			fn(m->slots[j].key, ud);
}

bool ids_strmap_del(struct ids_strmap *m, const char *key)
{
	size_t j = find(m, key), mask = m->cap - 1;
	if (j == SIZE_MAX)
		return false;
	/* backward-shift deletion: each later key of the run whose home is
	 * not between the hole and itself moves into the hole, so that no
	 * lookup stops early and no tombstone is left */
	for (size_t i = (j + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
		size_t home = m->slots[i].hash & mask;
		if (((i - home) & mask) >= ((i - j) & mask)) {
			m->slots[j] = m->slots[i];
			j = i;
		}
	}
	m->slots[j] = (struct ids_strmap_slot){0};
	m->len--;
	return true;
}

void ids_strmap_get_batch(const struct ids_strmap *m, const char *const *keys, size_t n, uint32_t *vals)
{
	/* 32 lookups in flight: enough to hide a cache miss each, few enough
	 * that the prefetched lines are still there when the last pass comes */
	enum { STEP = 32 };
	uint32_t tag[STEP];
	size_t at[STEP];
	for (size_t base = 0; base < n; base += STEP) {
		size_t k = n - base < STEP ? n - base : STEP;
		if (!m->cap) {
			for (size_t i = 0; i < k; i++)
				vals[base + i] = UINT32_MAX;
			continue;
		}
		/* three passes over a few dozen keys, each starting the memory
		 * reads the next one needs: the slots, then the stored keys */
		for (size_t i = 0; i < k; i++) {
			tag[i] = key_hash(keys[base + i], strlen(keys[base + i]));
			at[i] = tag[i] & (m->cap - 1);
			__builtin_prefetch(&m->slots[at[i]]);
		}
		for (size_t i = 0; i < k; i++) {
			const struct ids_strmap_slot *sl = &m->slots[at[i]];
			if (sl->key && sl->hash == tag[i])
				__builtin_prefetch(sl->key);
		}
		for (size_t i = 0; i < k; i++) {
			size_t j = at[i];
			vals[base + i] = UINT32_MAX;
			for (; m->slots[j].key; j = (j + 1) & (m->cap - 1))
				if (m->slots[j].hash == tag[i] &&
				    strcmp(m->slots[j].key, keys[base + i]) == 0) {
					vals[base + i] = m->slots[j].val;
					break;
				}
		}
	}
}

void ids_strmap_free(struct ids_strmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->len = 0;
}

/* ---------------- string pool ---------------- */

const char *ids_strpool_intern(struct ids_strpool *p, struct ids_arena *a, const char *s)
{
	uint32_t i;
	if (!s)
		return NULL;
	if (ids_strmap_get(&p->map, s, &i))
		return p->v[i];
	/* the map's values are uint32 indexes into v */
	if (p->n >= UINT32_MAX)
		return NULL;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		const char **v = realloc(p->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		p->v = v;
		p->cap = cap;
	}
	char *c = ids_arena_strdup(a, s);
	if (!c || ids_strmap_put(&p->map, c, (uint32_t)p->n, NULL) < 0)
		return NULL;
	p->v[p->n++] = c;
	return c;
}

void ids_strpool_free(struct ids_strpool *p)
{
	ids_strmap_free(&p->map);
	free(p->v);
	p->v = NULL;
	p->n = p->cap = 0;
}

/* ---------------- string vectors ---------------- */

int ids_strv_push(struct ids_strv *sv, const char *s)
{
	/* one element at a time, keeping v NULL-terminated: vectors hold a
	 * config's lists (a few names), where a doubling capacity would be one
	 * more field to keep right for nothing */
	char *c = strdup(s);
	if (!c)
		return -ENOMEM;
	char **v = realloc(sv->v, (sv->n + 2) * sizeof(*v));
	if (!v) {
		free(c);
		return -ENOMEM;
	}
	v[sv->n++] = c;
	v[sv->n] = NULL;
	sv->v = v;
	return 0;
}

bool ids_strv_contains(const struct ids_strv *sv, const char *s, bool casefold)
{
	for (size_t i = 0; i < sv->n; i++)
		if ((casefold ? strcasecmp(sv->v[i], s) : strcmp(sv->v[i], s)) == 0)
			return true;
	return false;
}

void ids_strv_free(struct ids_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = 0;
}

/* ---------------- strings ---------------- */

/* The length of the valid UTF-8 character at p[0..n) (n >= 1): 1..4, or 0
 * when p does not start one (a NUL, a stray or missing continuation byte,
 * an overlong form, a surrogate, a value past U+10FFFF).  By hand rather
 * than through mbrtowc(): the locale must not decide what is valid, and
 * PostgreSQL (text, jsonb) refuses exactly these. */
static size_t utf8_char(const unsigned char *p, size_t n)
{
	unsigned c = *p;
	size_t len;
	unsigned min;
	if (c == 0)
		return 0;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0)
		len = 2, min = 0x80, c &= 0x1f;
	else if ((c & 0xf0) == 0xe0)
		len = 3, min = 0x800, c &= 0x0f;
	else if ((c & 0xf8) == 0xf0)
		len = 4, min = 0x10000, c &= 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	return c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) ? 0 : len;
}

bool ids_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0, len; i < n; i += len)
		if (!(len = utf8_char(p + i, n - i)))
			return false;
	return true;
}

size_t ids_utf8_cut(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	/* s[max] exists: back up while it continues a character */
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

char *ids_utf8_escape(const char *s)
{
	struct ids_buf b = {0};
	size_t n = strlen(s);
	int r = ids_buf_add(&b, "", 0);
	for (size_t i = 0; i < n && r >= 0;) {
		size_t len = utf8_char((const unsigned char *)s + i, n - i);
		if (len) {
			r = ids_buf_add(&b, s + i, len);
			i += len;
		} else {
			r = ids_buf_printf(&b, "\\x%02x", (unsigned char)s[i++]);
		}
	}
	if (r < 0) {
		ids_buf_free(&b);
		return NULL;
	}
	return ids_buf_steal(&b);
}

/* NULL sorts first, so that a missing value orders deterministically
 * instead of crashing a qsort comparator. */
int ids_strcasecmp0(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcasecmp(a, b);
}

int ids_strcmp0(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

/* ASCII only, like every case-insensitive comparison here: Unicode case
 * folding is not implemented, and tolower() would depend on the locale. */
char *ids_strdup_lower(const char *s)
{
	char *c = strdup(s);
	if (!c)
		return NULL;
	for (char *p = c; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return c;
}

void ids_secret_free(char *s)
{
	if (!s)
		return;
	/* explicit_bzero, not memset: a store right before free() is dead
	 * code to the optimiser, and the secret would stay in the heap */
	explicit_bzero(s, strlen(s));
	free(s);
}

int64_t ids_mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ids_real_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

unsigned ids_jitter(unsigned max)
{
	unsigned v = 0;
	if (max == 0 || getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		return 0;
	return max == UINT_MAX ? v : v % (max + 1);
}
