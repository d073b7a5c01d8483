/* util.h — small libc-only helpers shared by every module: a growable
 * string buffer, an arena for strings that live as long as a snapshot, a
 * string-keyed hash index, string vectors, UTF-8 checks.  No I/O. */
#ifndef IDS_UTIL_H
#define IDS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Microseconds on CLOCK_MONOTONIC: for deadlines and durations, never dates. */
int64_t ids_mono_usec(void);
/* Wall-clock time in unix microseconds (sync_run's times, leases'
 * ages): for durations and deadlines use ids_mono_usec. */
int64_t ids_real_usec(void);
/* 0..max, uniformly; only for jitter: without randomness (getrandom()
 * failed) it is 0, no jitter. */
unsigned ids_jitter(unsigned max);

/* ---- growable buffer: always NUL-terminated once anything was added ---- */
struct ids_buf {
	char *p;
	size_t len, cap;
};

int ids_buf_add(struct ids_buf *b, const void *s, size_t n);
int ids_buf_puts(struct ids_buf *b, const char *s);
int ids_buf_putc(struct ids_buf *b, char c);
int ids_buf_printf(struct ids_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (with the quotes). */
int ids_buf_json_str(struct ids_buf *b, const char *s);
/* Empties b, keeping its memory. */
void ids_buf_reset(struct ids_buf *b);
/* Frees the memory; b is empty afterwards. */
void ids_buf_free(struct ids_buf *b);
/* Steals: returns the string (never NULL: "" when empty) and empties b. */
char *ids_buf_steal(struct ids_buf *b);

/* ---- growable arrays ----
 * Room for `need` elements of `size` bytes in the array whose address is
 * arrp (a T ** for any T: read and written with memcpy, which may alias
 * anything), capacity *cap, doubling so that appends stay linear.
 * 0, or -ENOMEM with the array untouched. */
int ids_grow(void *arrp, size_t *cap, size_t need, size_t size);

/* ---- arena: many small strings freed at once ---- */
struct ids_arena {
	struct ids_arena_chunk *head;
};

/* A copy of s[0..n) plus a NUL, owned by the arena; NULL on ENOMEM. */
char *ids_arena_strndup(struct ids_arena *a, const char *s, size_t n);
char *ids_arena_strdup(struct ids_arena *a, const char *s); /* s may be NULL -> NULL */
/* n bytes aligned for any type, zeroed; NULL on ENOMEM. */
void *ids_arena_alloc(struct ids_arena *a, size_t n);
void ids_arena_free(struct ids_arena *a);

/* ---- hash index: string key -> uint32 value, keys borrowed (must outlive
 * the map, e.g. arena strings).  Open addressing, FNV-1a. ---- */
struct ids_strmap {
	struct ids_strmap_slot *slots;
	size_t cap, len;
	/* filled to 3/4 instead of 1/2 from the next put on (set it before
	 * the first, or once the map is built) — for the maps a daemon keeps
	 * between runs, where memory counts more than the longer probes */
	bool dense;
};

/* Inserts key -> val.  If key is present, leaves it and returns 0 with
 * *ret_existing (if not NULL) set to the old value; returns 1 when added. */
int ids_strmap_put(struct ids_strmap *m, const char *key, uint32_t val, uint32_t *ret_existing);
/* true and *ret_val when present. */
bool ids_strmap_get(const struct ids_strmap *m, const char *key, uint32_t *ret_val);
/* The pointer the map keeps for key (the one put with it), NULL when
 * absent. */
const char *ids_strmap_key(const struct ids_strmap *m, const char *key);
/* fn(key) for every key, in no order; fn must not change the map. */
void ids_strmap_each_key(const struct ids_strmap *m, void (*fn)(const char *key, void *ud), void *ud);
/* Removes key (the map forgets the pointer it kept): true when it was
 * there.  The other keys stay where a lookup finds them. */
bool ids_strmap_del(struct ids_strmap *m, const char *key);
/* ids_strmap_get for keys[0..n) at once: vals[i] gets the value, or
 * UINT32_MAX when keys[i] is absent.  Faster than n calls on a map larger
 * than the cache: the lookups' memory reads overlap. */
void ids_strmap_get_batch(const struct ids_strmap *m, const char *const *keys, size_t n, uint32_t *vals);
void ids_strmap_free(struct ids_strmap *m);

uint64_t ids_hash64(const void *p, size_t n); /* FNV-1a 64 */

/* ---- string pool: one copy of each distinct string, so that equal
 * strings are equal pointers (millions of grant rows name a few tenants)
 * ---- */
struct ids_strpool {
	struct ids_strmap map; /* string -> index into v */
	const char **v;
	size_t n, cap;
};

/* The pool's copy of s, copied into arena a the first time it is seen (a
 * must outlive every use of the result; pass the same arena each time).
 * NULL when s is NULL, or on ENOMEM (s non-NULL). */
const char *ids_strpool_intern(struct ids_strpool *p, struct ids_arena *a, const char *s);
/* Frees the index; the strings belong to the arena. */
void ids_strpool_free(struct ids_strpool *p);

/* ---- string vector (heap strings, owned) ---- */
struct ids_strv {
	char **v;
	size_t n;
};
int ids_strv_push(struct ids_strv *sv, const char *s); /* copies s */
bool ids_strv_contains(const struct ids_strv *sv, const char *s, bool casefold);
void ids_strv_free(struct ids_strv *sv);

/* ---- strings ---- */
/* true when s[0..n) is valid UTF-8 with no NUL byte. */
bool ids_utf8_valid(const char *s, size_t n);
/* The length of s[0..n) cut to at most max bytes without splitting a UTF-8
 * character (a message quoting at most max bytes of a value). */
size_t ids_utf8_cut(const char *s, size_t n, size_t max);
/* A copy of s with every byte that is not part of a valid UTF-8 character
 * written as the text \xNN, the characters kept: what PostgreSQL's text,
 * JSON and the journal take (a server's broken bytes, a skipped user's
 * value), still saying what the bytes were.  New; NULL on ENOMEM. */
char *ids_utf8_escape(const char *s);
/* ASCII case-insensitive compare, NULL sorts first. */
int ids_strcasecmp0(const char *a, const char *b);
int ids_strcmp0(const char *a, const char *b);
/* A heap copy with ASCII letters lowered; NULL on ENOMEM. */
char *ids_strdup_lower(const char *s);
/* Overwrites a secret with zeroes (not optimised away) and frees it. */
void ids_secret_free(char *s);

#endif
