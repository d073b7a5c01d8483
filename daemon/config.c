/* config.c — the configuration file of config.md (config.h).
 *
 * Loading is three steps over one libyaml document:
 *  1. shape: every mapping is checked for keys that are unknown, repeated or
 *     not scalars before any of its values is read (struct map), so that a
 *     typo is reported as a typo and not as a missing key;
 *  2. values: sections are read in a fixed order, not in file order —
 *     security first, so that a secret file is judged the moment it is met
 *     even when `security:` comes last in the file; catalog and connectors
 *     before rules, which name both;
 *  3. checks that need several keys (bind_dn without a password, a revoke
 *     rule that grants), reported at the key at fault.
 *
 * Every message is "FILE:LINE:COL: path: expected ..., got ...": LINE and
 * COL are 1-based, list indices in the path 0-based (rules[0] is the first
 * rule).  A secret's content never reaches a message: only file names do. */
#include "ids/config.h"
#include "ids/secret.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CONFIG_MAX_SIZE (4u << 20) /* a real config is a few KiB: refuse anything absurd */
#define MAX_KEYS 32		   /* the widest mapping (an ldap connector) has 20 keys */
#define MAX_DEPTH 16		   /* deepest path: rules[N].match.attribute.NAME */
#define GOT_MAX 64		   /* bytes of a bad value quoted back in a message */

/* One step of the path of the node being read: a key or a list index. */
struct seg {
	const char *key; /* NULL: an index */
	size_t idx;
};

struct ctx {
	const char *file;     /* as given, for messages */
	const char *base_dir; /* relative file names resolve here; NULL: the current directory */
	yaml_document_t *doc;
	struct ids_error *err;
	struct ids_config *cfg;
	struct seg path[MAX_DEPTH];
	size_t depth;
	size_t lic_cap; /* of cfg->platform.lic */
};

/* A mapping whose keys were checked against `keys` (NULL-terminated):
 * key[i]/val[i] are the nodes of keys[i], NULL when absent.  Reading values
 * through it (map_get) rather than in file order lets each section read
 * its keys in the order their checks depend on (type before the type's
 * keys, regex before the tenant template that uses its captures). */
struct map {
	const char *const *keys;
	yaml_node_t *node;
	yaml_node_t *key[MAX_KEYS], *val[MAX_KEYS];
};

/* Returns NULL when s is acceptable, else what was expected (for "expected %s"). */
typedef const char *(*check_fn)(const char *s);

/* ------------------------------------------------------------------ */
/* paths and messages                                                  */

static void push_key(struct ctx *c, const char *key)
{
	/* keys are literals or strings of the document: both outlive the load */
	if (c->depth < MAX_DEPTH)
		c->path[c->depth] = (struct seg){.key = key};
	c->depth++;
}

static void push_idx(struct ctx *c, size_t i)
{
	if (c->depth < MAX_DEPTH)
		c->path[c->depth] = (struct seg){.idx = i};
	c->depth++;
}

/* Errors return at once and leave the path as it was at the error, so only
 * the success paths pop. */
static void pop(struct ctx *c)
{
	c->depth--;
}

/* The message core: "FILE:LINE:COL: path: <fmt>" (no "path: " at the root).
 * The path is kept as segments and only turned into text here, so that a
 * valid file, the common case, never pays for it. */
static int vfail(struct ctx *c, size_t line, size_t col, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static int vfail(struct ctx *c, size_t line, size_t col, const char *fmt, va_list ap)
{
	struct ids_buf p = {0};
	char *m = NULL;
	int r = 0;
	for (size_t i = 0; i < c->depth && i < MAX_DEPTH && r >= 0; i++) {
		if (c->path[i].key)
			r = ids_buf_printf(&p, "%s%s", i ? "." : "", c->path[i].key);
		else
			r = ids_buf_printf(&p, "[%zu]", c->path[i].idx);
	}
	if (r < 0 || vasprintf(&m, fmt, ap) < 0) {
		ids_buf_free(&p);
		return ids_error_set(c->err, -ENOMEM, "%s: out of memory", c->file);
	}
	r = ids_error_set(c->err, IDS_E_CONFIG, "%s:%zu:%zu: %s%s%s", c->file, line, col, p.len ? p.p : "",
			  p.len ? ": " : "", m);
	free(m);
	ids_buf_free(&p);
	return r;
}

/* An error at a position that is no node: a libyaml error, an empty file. */
static int fail_pos(struct ctx *c, size_t line, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_pos(struct ctx *c, size_t line, size_t col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vfail(c, line, col, fmt, ap);
	va_end(ap);
	return r;
}

/* An error at node n (libyaml marks are 0-based). */
static int fail(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vfail(c, n->start_mark.line + 1, n->start_mark.column + 1, fmt, ap);
	va_end(ap);
	return r;
}

/* s as a quoted string for a message: escaped, cut after GOT_MAX bytes (on a
 * UTF-8 character boundary), so that one bad value cannot flood the log. */
static int quote(struct ids_buf *b, const char *s, size_t n)
{
	size_t end = ids_utf8_cut(s, n, GOT_MAX);
	int r = ids_buf_putc(b, '"');
	for (size_t i = 0; i < end && r >= 0; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			r = ids_buf_printf(b, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			r = ids_buf_printf(b, "\\x%02x", ch);
		else
			r = ids_buf_putc(b, (char)ch);
	}
	if (r >= 0 && end < n)
		r = ids_buf_puts(b, "...");
	return r < 0 ? r : ids_buf_putc(b, '"');
}

/* `key:` with nothing after it, `~` or `null`: YAML's null.  No key takes
 * null as a value: leaving a key out is how to ask for its default, and a
 * key written with nothing after it is more likely an unfinished edit. */
static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = (const char *)n->data.scalar.value;
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* "expected <fmt>, got <what n is>": got is the (expanded) value when the
 * caller has it, else n's own text or kind.  Showing the expanded value
 * tells the operator what ${NAME} turned into; secrets never come through
 * here, since they are file contents and never values of the document. */
static int bad_value(struct ctx *c, const yaml_node_t *n, const char *got, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad_value(struct ctx *c, const yaml_node_t *n, const char *got, const char *fmt, ...)
{
	struct ids_buf d = {0};
	char *exp = NULL;
	int r;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&exp, fmt, ap) < 0)
		exp = NULL;
	va_end(ap);
	if (n->type == YAML_MAPPING_NODE && n->data.mapping.pairs.top == n->data.mapping.pairs.start)
		r = ids_buf_puts(&d, "an empty mapping");
	else if (n->type == YAML_MAPPING_NODE)
		r = ids_buf_puts(&d, "a mapping");
	else if (n->type == YAML_SEQUENCE_NODE && n->data.sequence.items.top == n->data.sequence.items.start)
		r = ids_buf_puts(&d, "an empty list");
	else if (n->type == YAML_SEQUENCE_NODE)
		r = ids_buf_puts(&d, "a list");
	else if (!got && is_null(n))
		r = ids_buf_puts(&d, "nothing");
	else if (got)
		r = quote(&d, got, strlen(got));
	else
		r = quote(&d, (const char *)n->data.scalar.value, n->data.scalar.length);
	if (!exp || r < 0)
		r = ids_error_set(c->err, -ENOMEM, "%s: out of memory", c->file);
	else
		r = fail(c, n, "expected %s, got %s", exp, d.p);
	free(exp);
	ids_buf_free(&d);
	return r;
}

/* "a, b, c" for the allowed values in a message; NULL on ENOMEM. */
static char *join(const char *const *v, size_t n)
{
	struct ids_buf b = {0};
	int r = ids_buf_puts(&b, "");
	for (size_t i = 0; i < n && r >= 0; i++)
		r = ids_buf_printf(&b, "%s%s", i ? ", " : "", v[i]);
	if (r < 0) {
		ids_buf_free(&b);
		return NULL;
	}
	return ids_buf_steal(&b);
}

/* ------------------------------------------------------------------ */
/* shape: mappings and their keys                                      */

static yaml_node_t *node_at(struct ctx *c, int id)
{
	return yaml_document_get_node(c->doc, id);
}

/* Edit distance (Levenshtein, two rows folded into one) of two short keys,
 * for "did you mean"; SIZE_MAX when a key is too long to bother. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64], prev;
	if (la >= 64 || lb >= 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			/* prev is the diagonal, row[j] the cell above, row[j - 1] the left */
			size_t cur = row[j];
			size_t best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

/* "unknown key", with the closest allowed key when it is a likely typo:
 * a misspelt safety key must be noticed, and fixed, in one step. */
static int unknown_key(struct ctx *c, const yaml_node_t *k, const char *const *keys, const char *note)
{
	const char *name = (const char *)k->data.scalar.value, *best = NULL;
	size_t bestd = 3; /* two edits at most: further than that is a guess, not a typo */
	for (size_t i = 0; keys[i]; i++) {
		size_t d = distance(name, keys[i]);
		if (d < bestd)
			bestd = d, best = keys[i];
	}
	struct ids_buf q = {0};
	if (quote(&q, name, k->data.scalar.length) < 0)
		return ids_error_set(c->err, -ENOMEM, "%s: out of memory", c->file);
	int r;
	if (best)
		r = fail(c, k, "unknown key %s%s (did you mean \"%s\"?)", q.p, note ? note : "", best);
	else
		r = fail(c, k, "unknown key %s%s", q.p, note ? note : "");
	ids_buf_free(&q);
	return r;
}

/* Checks that n is a mapping whose keys are scalars, each once, each one of
 * keys (note is appended to the unknown-key message), and fills *m. */
static int map_read(struct ctx *c, yaml_node_t *n, const char *const *keys, const char *note, struct map *m)
{
	memset(m, 0, sizeof(*m));
	m->keys = keys;
	m->node = n;
	if (n->type != YAML_MAPPING_NODE)
		return bad_value(c, n, NULL, "a mapping");
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
		if (k->type != YAML_SCALAR_NODE)
			return bad_value(c, k, NULL, "a key name");
		size_t i = 0;
		while (keys[i] && strcmp(keys[i], (const char *)k->data.scalar.value))
			i++;
		if (!keys[i])
			return unknown_key(c, k, keys, note);
		/* libyaml keeps duplicates; YAML says they are an error, and the
		 * second value silently winning would hide the first one's intent */
		assert(i < MAX_KEYS);
		if (m->key[i])
			return fail(c, k, "duplicate key \"%s\" (first at line %zu)", keys[i],
				    m->key[i]->start_mark.line + 1);
		m->key[i] = k;
		m->val[i] = v;
	}
	return 0;
}

/* The value of key in m, NULL when absent.  key must be one of m->keys. */
static yaml_node_t *map_get(const struct map *m, const char *key)
{
	for (size_t i = 0; m->keys[i]; i++)
		if (!strcmp(m->keys[i], key))
			return m->val[i];
	assert(!"key not in the key list");
	return NULL;
}

static int missing(struct ctx *c, const struct map *m, const char *key)
{
	return fail(c, m->node, "missing required key \"%s\"", key);
}

/* A mapping with free keys (slots, match.attribute): scalar, non-empty
 * keys, none twice (case-insensitively when casefold: LDAP attribute names
 * are, so `dept` and `Dept` would be one condition written twice). */
static int map_check_free(struct ctx *c, yaml_node_t *n, const char *what, bool casefold)
{
	if (n->type != YAML_MAPPING_NODE)
		return bad_value(c, n, NULL, "a mapping of %s", what);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(c, p->key);
		if (k->type != YAML_SCALAR_NODE || !k->data.scalar.length)
			return bad_value(c, k, NULL, "%s", what);
		for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
			const char *a = (const char *)node_at(c, q->key)->data.scalar.value;
			const char *b = (const char *)k->data.scalar.value;
			if (casefold ? !strcasecmp(a, b) : !strcmp(a, b))
				return fail(c, k, "duplicate key \"%s\" (first at line %zu)", b,
					    node_at(c, q->key)->start_mark.line + 1);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* scalars                                                             */

/* Appends the ${NAME}-expanded s to b.  Variables come from the process
 * environment (systemd sets CREDENTIALS_DIRECTORY); an unset one is an
 * error rather than an empty string, which would quietly turn
 * "${CREDENTIALS_DIRECTORY}/db-password" into "/db-password". */
static int expand(struct ctx *c, const yaml_node_t *n, const char *s, struct ids_buf *b)
{
	int r = 0;
	while (*s && r >= 0) {
		const char *d = strstr(s, "${");
		if (!d)
			return ids_buf_puts(b, s);
		if ((r = ids_buf_add(b, s, (size_t)(d - s))) < 0)
			break;
		/* the value is inserted as it is, never expanded again */
		const char *name = d + 2, *e = name;
		while ((*e >= 'A' && *e <= 'Z') || (*e >= 'a' && *e <= 'z') || *e == '_' ||
		       (e > name && *e >= '0' && *e <= '9'))
			e++;
		if (e == name || *e != '}')
			return fail(c, n, "expected ${NAME} with NAME made of letters, digits and _");
		char *var = strndup(name, (size_t)(e - name));
		if (!var)
			return -ENOMEM;
		const char *val = getenv(var);
		if (!val) {
			r = fail(c, n, "environment variable %s is not set", var);
			free(var);
			return r;
		}
		free(var);
		r = ids_buf_puts(b, val);
		s = e + 1;
	}
	return r;
}

/* The value of scalar n, expanded, as a new non-empty string in *ret;
 * `what` is the expected thing for the message when n is not one. */
static int get_scalar(struct ctx *c, yaml_node_t *n, const char *what, char **ret)
{
	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return bad_value(c, n, NULL, "%s", what);
	const char *s = (const char *)n->data.scalar.value;
	/* a "\0" escape in a quoted scalar would cut the C string short */
	if (memchr(s, '\0', n->data.scalar.length))
		return fail(c, n, "expected %s without NUL characters", what);
	struct ids_buf b = {0};
	int r = ids_buf_puts(&b, "");
	if (r >= 0)
		r = expand(c, n, s, &b);
	if (r < 0) {
		ids_buf_free(&b);
		return r;
	}
	/* "" (or a variable set to nothing) is no name, URL, DN or number */
	if (!b.len) {
		ids_buf_free(&b);
		return bad_value(c, n, "", "%s", what);
	}
	*ret = ids_buf_steal(&b);
	return *ret ? 0 : -ENOMEM;
}

/* A string, checked by check when not NULL; replaces *dst (a default). */
static int get_str(struct ctx *c, yaml_node_t *n, check_fn check, char **dst)
{
	char *s = NULL;
	int r = get_scalar(c, n, "a string", &s);
	if (r < 0)
		return r;
	const char *why = check ? check(s) : NULL;
	if (why) {
		r = bad_value(c, n, s, "%s", why);
		free(s);
		return r;
	}
	free(*dst);
	*dst = s;
	return 0;
}

/* The rd_* readers: the value of key in m, if present, read with the key
 * on the path; an absent key leaves *dst (its default) alone. */
static int rd_str(struct ctx *c, const struct map *m, const char *key, check_fn check, char **dst)
{
	yaml_node_t *v = map_get(m, key);
	if (!v)
		return 0;
	push_key(c, key);
	int r = get_str(c, v, check, dst);
	if (r >= 0)
		pop(c);
	return r;
}

static int rd_bool(struct ctx *c, const struct map *m, const char *key, bool *dst)
{
	yaml_node_t *v = map_get(m, key);
	char *s = NULL;
	if (!v)
		return 0;
	push_key(c, key);
	int r = get_scalar(c, v, "true or false", &s);
	if (r < 0)
		return r;
	/* the YAML 1.2 core schema's spellings: no yes/no/on/off guesses */
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
		*dst = true;
	else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
		*dst = false;
	else
		r = bad_value(c, v, s, "true or false");
	free(s);
	if (r >= 0)
		pop(c);
	return r;
}

/* A decimal integer lo..hi (hi >= INT_MAX: "no upper bound" in messages). */
static int get_long(struct ctx *c, yaml_node_t *n, long lo, long hi, long *dst)
{
	char *s = NULL, *end;
	int r = get_scalar(c, n, "an integer", &s);
	if (r < 0)
		return r;
	/* a number written as a string ("3") is a number: YAML tags are not
	 * a distinction operators make, and ${NAME} always yields text */
	errno = 0;
	long v = strtol(s, &end, 10);
	/* strtol alone accepts " 12", "+12" and "12abc" */
	bool ok = (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) && !*end && errno == 0 && v >= lo && v <= hi;
	if (ok)
		*dst = v;
	else if (hi >= INT_MAX)
		r = bad_value(c, n, s, "an integer >= %ld", lo);
	else
		r = bad_value(c, n, s, "an integer %ld..%ld", lo, hi);
	free(s);
	return r;
}

static int rd_int(struct ctx *c, const struct map *m, const char *key, long lo, long hi, int *dst)
{
	yaml_node_t *v = map_get(m, key);
	long l;
	if (!v)
		return 0;
	push_key(c, key);
	int r = get_long(c, v, lo, hi, &l);
	if (r < 0)
		return r;
	*dst = (int)l;
	pop(c);
	return 0;
}

static int rd_duration(struct ctx *c, const struct map *m, const char *key, bool allow_zero, int *dst)
{
	yaml_node_t *v = map_get(m, key);
	char *s = NULL;
	int secs = 0;
	if (!v)
		return 0;
	push_key(c, key);
	int r = get_scalar(c, v, "a duration like 30s, 5m, 1h30m or 1d", &s);
	if (r < 0)
		return r;
	/* a unit is required: is "30" seconds or minutes? */
	if (ids_parse_duration(s, &secs) < 0)
		r = bad_value(c, v, s, "a duration like 30s, 5m, 1h30m or 1d");
	else if (secs == 0 && !allow_zero)
		r = bad_value(c, v, s, "a duration greater than 0s");
	free(s);
	if (r < 0)
		return r;
	*dst = secs;
	pop(c);
	return 0;
}

/* One of names (NULL-terminated) -> its index.  Exact case: `Info` is as
 * likely a typo as `infp`, and the message lists the right spellings. */
static int get_enum(struct ctx *c, yaml_node_t *n, const char *const *names, int *dst)
{
	char *s = NULL, *all = NULL, *exp = NULL;
	size_t cnt = 0;
	while (names[cnt])
		cnt++;
	if (!(all = join(names, cnt)) || asprintf(&exp, "%s%s", cnt > 1 ? "one of " : "", all) < 0) {
		free(all);
		return -ENOMEM;
	}
	int r = get_scalar(c, n, exp, &s);
	for (size_t i = 0; r >= 0 && i < cnt; i++) {
		if (!strcmp(s, names[i])) {
			*dst = (int)i;
			goto out;
		}
	}
	if (r >= 0)
		r = bad_value(c, n, s, "%s", exp);
out:
	free(all);
	free(exp);
	free(s);
	return r;
}

static int rd_enum(struct ctx *c, const struct map *m, const char *key, const char *const *names, int *dst)
{
	yaml_node_t *v = map_get(m, key);
	if (!v)
		return 0;
	push_key(c, key);
	int r = get_enum(c, v, names, dst);
	if (r >= 0)
		pop(c);
	return r;
}

/* The node of item i of a list (a lone scalar counts as a list of one). */
static yaml_node_t *item_at(struct ctx *c, yaml_node_t *n, size_t i)
{
	if (n->type != YAML_SEQUENCE_NODE)
		return n;
	return node_at(c, n->data.sequence.items.start[i]);
}

static size_t items(const yaml_node_t *n)
{
	if (n->type != YAML_SEQUENCE_NODE)
		return 1;
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* A list of strings, each checked by check; replaces *dst.  scalar_ok: a
 * single string is a list of one (ldap uri). */
static int get_strv(struct ctx *c, yaml_node_t *n, check_fn check, bool scalar_ok, struct ids_strv *dst)
{
	struct ids_strv sv = {0};
	int r = 0;
	if (n->type != YAML_SEQUENCE_NODE && !(scalar_ok && n->type == YAML_SCALAR_NODE && !is_null(n)))
		return bad_value(c, n, NULL,
				 scalar_ok ? "a string or a list of strings" : "a list of strings");
	/* an empty list says nothing useful (`groups: []` reads as "none" to
	 * one operator and "all" to another): leave the key out instead */
	if (!items(n))
		return bad_value(c, n, NULL, "a non-empty list");
	for (size_t i = 0; i < items(n) && r >= 0; i++) {
		char *s = NULL;
		if (n->type == YAML_SEQUENCE_NODE)
			push_idx(c, i);
		r = get_str(c, item_at(c, n, i), check, &s);
		if (r < 0)
			break;
		if (n->type == YAML_SEQUENCE_NODE)
			pop(c);
		r = ids_strv_push(&sv, s);
		free(s);
	}
	if (r < 0) {
		ids_strv_free(&sv);
		return r;
	}
	ids_strv_free(dst);
	*dst = sv;
	return 0;
}

static int rd_strv(struct ctx *c, const struct map *m, const char *key, check_fn check, struct ids_strv *dst)
{
	yaml_node_t *v = map_get(m, key);
	if (!v)
		return 0;
	push_key(c, key);
	int r = get_strv(c, v, check, false, dst);
	if (r >= 0)
		pop(c);
	return r;
}

/* ------------------------------------------------------------------ */
/* checks of string values                                             */

/* The connector name is the `source` column and part of the advisory lock
 * key: a short, fixed alphabet keeps it stable and printable everywhere. */
static const char *check_conn_name(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-");
	return !s[n] && n >= 1 && n <= 40 ? NULL : "a name of 1 to 40 characters a-z, 0-9, _ and -";
}

static const char *check_slug(const char *s)
{
	return ids_slug_valid(s) ? NULL : "a slug [a-z0-9][a-z0-9_-]{0,62}";
}

/* The schema name goes into SQL as an identifier: keep it to the letters
 * that need no quoting. */
static const char *check_schema(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");
	return !s[n] && n <= 63 && !(s[0] >= '0' && s[0] <= '9') ? NULL
								 : "a schema name [a-z_][a-z0-9_]{0,62}";
}

/* Tokens and directory data never travel in clear: https:// only, also
 * for test fakes (they get a tls_ca_file instead). */
static const char *check_https(const char *s)
{
	return !strncmp(s, "https://", 8) && s[8] && !strpbrk(s, " \t\r\n") ? NULL : "an https:// URL";
}

/* The scheme only; whether ldapi:// is allowed depends on sasl_mech and
 * is checked with the connector (load_ldap). */
static const char *check_ldap_uri(const char *s)
{
	bool ok =
	    !strncasecmp(s, "ldap://", 7) || !strncasecmp(s, "ldaps://", 8) || !strncasecmp(s, "ldapi://", 8);
	return ok && !strpbrk(s, " \t\r\n") ? NULL : "an ldap://, ldaps:// or ldapi:// URI";
}

/* Attribute names and paths (uid, name.givenName, customSchemas.X.y). */
static const char *check_attr(const char *s)
{
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '(' || *p == ')' || *p == '=' ||
		    *p == '*')
			return "an attribute name";
	return NULL;
}

/* Names of the catalog and of operator groups: stored as they are. */
static const char *check_name(const char *s)
{
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			return "a name without control characters";
	return NULL;
}

static const char *check_subject(const char *s)
{
	return strchr(s, '@') && !strpbrk(s, " \t\r\n") ? NULL : "an e-mail address";
}

static const char *check_entra_tenant(const char *s)
{
	/* it becomes a path segment of the token URL */
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
	return !s[n] ? NULL : "a directory (tenant) id or domain name";
}

static bool hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* The end of the RFC 4515 filter at p, or NULL.  A shape check, not a full
 * parser: parentheses balance, & | ! take sub-filters, an item has an
 * attribute before its '=', raw parentheses only as \28 \29. */
static const char *filter_end(const char *p, int depth)
{
	if (depth > 32 || *p != '(')
		return NULL;
	p++;
	if (*p == '&' || *p == '|') {
		/* (&) and (|), absolute true and false (RFC 4526), are legal */
		for (p++; *p == '(';)
			if (!(p = filter_end(p, depth + 1)))
				return NULL;
	} else if (*p == '!') {
		if (!(p = filter_end(p + 1, depth + 1)))
			return NULL;
	} else {
		bool eq = false;
		if (*p == '=')
			return NULL;
		for (; *p && *p != ')'; p++) {
			if (*p == '(')
				return NULL;
			if (*p == '=')
				eq = true;
			if (*p == '\\') {
				if (!hex(p[1]) || !hex(p[2]))
					return NULL;
				p += 2;
			}
		}
		if (!eq)
			return NULL;
	}
	return *p == ')' ? p + 1 : NULL;
}

static const char *check_filter(const char *s)
{
	const char *e = filter_end(s, 0);
	return e && !*e ? NULL : "an LDAP filter in parentheses like (objectClass=person)";
}

/* ------------------------------------------------------------------ */
/* files and secrets                                                   */

enum file_kind {
	FILE_PUBLIC,	  /* must be readable: a CA bundle, a certificate */
	FILE_SECRET_PATH, /* a secret another module opens: permissions checked, not read */
	FILE_SECRET,	  /* a secret read here: its content is the value */
};

/* A file name of the config, relative ones against the config's own
 * directory: the daemon's working directory (/ under systemd) is not
 * where an operator expects "ca.pem" to be. */
static char *resolve(struct ctx *c, const char *name)
{
	char *p = NULL;
	if (name[0] == '/' || !c->base_dir)
		return strdup(name);
	return asprintf(&p, "%s/%s", c->base_dir, name) < 0 ? NULL : p;
}

/* The password-like secret in buf[0..len): ONE trailing newline (\n or
 * \r\n) stripped, no NUL, not empty (an empty LDAP password would be an
 * unauthenticated bind).  *ret new. */
static int secret_value(struct ctx *c, const yaml_node_t *n, const char *path, const char *buf, size_t len,
			char **ret)
{
	if (len && buf[len - 1] == '\n')
		len -= 1 + (len >= 2 && buf[len - 2] == '\r');
	if (memchr(buf, '\0', len))
		return fail(c, n, "secret file %s contains a NUL byte", path);
	if (!len)
		return fail(c, n, "secret file %s is empty", path);
	return (*ret = strndup(buf, len)) ? 0 : -ENOMEM;
}

/* A public file: opened (so existence and readability are real, not
 * guessed from the mode) and a regular file. */
static int check_public(struct ctx *c, const yaml_node_t *v, const char *path)
{
	struct stat st;
	int r = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return fail(c, v, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		r = fail(c, v, "cannot read %s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		r = fail(c, v, "%s is not a regular file", path);
	close(fd);
	return r;
}

/* The file named at key: a public one resolved against the config's
 * directory and opened; a secret one resolved by ids_secret_resolve
 * ($CREDENTIALS_DIRECTORY under systemd) and read through
 * ids_secret_read, the one reader the connectors use too, so that the
 * checks made here are the checks made when the connector opens it.
 * *ret_path (and for FILE_SECRET *ret_secret) replaced on success. */
static int rd_file(struct ctx *c, const struct map *m, const char *key, enum file_kind kind, char **ret_path,
		   char **ret_secret)
{
	yaml_node_t *v = map_get(m, key);
	char *name = NULL, *path = NULL, *secret = NULL, *raw = NULL;
	size_t len = 0;
	struct ids_error e = {0};
	int r;
	if (!v)
		return 0;
	push_key(c, key);
	if ((r = get_str(c, v, NULL, &name)) < 0)
		return r;
	if (kind == FILE_PUBLIC ? !(path = resolve(c, name))
				: ids_secret_resolve(name, c->base_dir, &path) < 0) {
		r = -ENOMEM;
		goto out;
	}
	if (kind == FILE_PUBLIC)
		r = check_public(c, v, path);
	/* security was read first (see load_root) */
	else if ((r = ids_secret_read(path, IDS_SECRET_MAX, c->cfg->security.allow_readable_secrets, &raw,
				      &len, &e)) < 0)
		r = r == IDS_E_CONFIG ? fail(c, v, "%s", ids_error_text(&e)) : r;
	else if (kind == FILE_SECRET)
		r = secret_value(c, v, path, raw, len, &secret);
	if (r < 0)
		goto out;
	free(*ret_path);
	*ret_path = path;
	path = NULL;
	if (ret_secret) {
		ids_secret_free(*ret_secret);
		*ret_secret = secret;
	}
	pop(c);
	r = 0;
out:
	ids_secret_free(raw);
	ids_error_clear(&e);
	free(name);
	free(path);
	return r;
}

/* ------------------------------------------------------------------ */
/* sections                                                            */

static const char *const top_keys[] = {"database", "sync",    "log",	    "security", "safety",
				       "tenants",  "catalog", "connectors", "licences", "rules",
				       "scim",	   "metrics", NULL};

/* security: read before every other section (see load_root). */
static int load_security(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"allow_readable_secrets", "allow_plaintext_bind",
					   "allow_unverified_database", NULL};
	struct map m;
	int r = map_read(c, n, keys, NULL, &m);
	if (r >= 0)
		r = rd_bool(c, &m, "allow_readable_secrets", &c->cfg->security.allow_readable_secrets);
	if (r >= 0)
		r = rd_bool(c, &m, "allow_plaintext_bind", &c->cfg->security.allow_plaintext_bind);
	if (r >= 0)
		r = rd_bool(c, &m, "allow_unverified_database", &c->cfg->security.allow_unverified_database);
	return r;
}

/* log: the level, and where lines go (auto: the journal under systemd). */
static int load_log(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"level", "target", NULL};
	/* in the order of enum ids_log_level / ids_log_target */
	static const char *const levels[] = {"debug", "info", "warning", "error", NULL};
	static const char *const targets[] = {"auto", "journal", "stderr", NULL};
	struct map m;
	int level = (int)c->cfg->log.level, target = (int)c->cfg->log.target;
	int r = map_read(c, n, keys, NULL, &m);
	if (r >= 0)
		r = rd_enum(c, &m, "level", levels, &level);
	if (r >= 0)
		r = rd_enum(c, &m, "target", targets, &target);
	c->cfg->log.level = (enum ids_log_level)level;
	c->cfg->log.target = (enum ids_log_target)target;
	return r;
}

/* database: conninfo is required; the password, when there is one, is
 * kept apart from it so that the conninfo can be logged. */
static int load_database(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"conninfo", "password_file", "schema", "migrate", NULL};
	static const char *const migrate[] = {"auto", "manual", NULL};
	struct map m;
	int mode = c->cfg->database.migrate_auto ? 0 : 1;
	char *file = NULL; /* the password's file name is not kept: only the password */
	int r = map_read(c, n, keys, NULL, &m);
	if (r >= 0)
		r = rd_str(c, &m, "conninfo", NULL, &c->cfg->database.conninfo);
	if (r >= 0 && !c->cfg->database.conninfo)
		r = missing(c, &m, "conninfo");
	/* the store checks the conninfo's TLS (it needs libpq to resolve
	 * it): its message points here */
	yaml_node_t *ci = map_get(&m, "conninfo");
	if (ci) {
		c->cfg->database.conninfo_line = (int)ci->start_mark.line + 1;
		c->cfg->database.conninfo_col = (int)ci->start_mark.column + 1;
	}
	if (r >= 0)
		r = rd_file(c, &m, "password_file", FILE_SECRET, &file, &c->cfg->database.password);
	if (r >= 0)
		r = rd_str(c, &m, "schema", check_schema, &c->cfg->database.schema);
	if (r >= 0)
		r = rd_enum(c, &m, "migrate", migrate, &mode);
	c->cfg->database.migrate_auto = mode == 0;
	free(file);
	return r;
}

/* sync: the scheduler's periods.  retry_max below retry_min would make the
 * backoff shrink, which is a contradiction, not a preference. */
static int load_sync(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"interval", "jitter",    "retry_min", "retry_max", "run_timeout",
					   "lease",    "user_rate", "workers",	 "heartbeat", NULL};
	struct ids_config *cfg = c->cfg;
	struct map m;
	int r = map_read(c, n, keys, NULL, &m);
	if (r >= 0)
		r = rd_duration(c, &m, "interval", false, &cfg->sync.interval);
	/* 0s jitter is a legitimate choice: one instance, no thundering herd */
	if (r >= 0)
		r = rd_duration(c, &m, "jitter", true, &cfg->sync.jitter);
	if (r >= 0)
		r = rd_duration(c, &m, "retry_min", false, &cfg->sync.retry_min);
	if (r >= 0)
		r = rd_duration(c, &m, "retry_max", false, &cfg->sync.retry_max);
	if (r >= 0)
		r = rd_duration(c, &m, "run_timeout", false, &cfg->sync.run_timeout);
	if (r >= 0)
		r = rd_duration(c, &m, "lease", false, &cfg->sync.lease);
	/* renewed every third of it: shorter, and a busy database's hiccup
	 * would hand a running connector to another daemon */
	if (r >= 0 && cfg->sync.lease < 3) {
		push_key(c, "lease");
		r = fail(c, map_get(&m, "lease"), "expected lease >= 3s (got %ds)", cfg->sync.lease);
	}
	/* `status` and the other daemons' queue call a daemon gone after
	 * three minutes without a beat: a longer period would have a live,
	 * idle daemon declared dead */
	if (r >= 0)
		r = rd_duration(c, &m, "heartbeat", false, &cfg->sync.heartbeat);
	if (r >= 0 && cfg->sync.heartbeat > 60) {
		push_key(c, "heartbeat");
		r = fail(c, map_get(&m, "heartbeat"), "expected heartbeat <= 1m (got %ds)",
			 cfg->sync.heartbeat);
	}
	/* targeted syncs (NOTIFY idsyncd_sync_user) per connector and second;
	 * 0 turns the LISTEN off */
	if (r >= 0)
		r = rd_int(c, &m, "user_rate", 0, 10000, &cfg->sync.user_rate);
	/* connectors run at once, each on a thread with its own database
	 * connection: 64 of them are 65 connections, past which one daemon
	 * is better split in several (docs/scaling.md) */
	if (r >= 0)
		r = rd_int(c, &m, "workers", 1, 64, &cfg->sync.workers);
	if (r >= 0 && cfg->sync.retry_max < cfg->sync.retry_min) {
		yaml_node_t *v =
		    map_get(&m, "retry_max") ? map_get(&m, "retry_max") : map_get(&m, "retry_min");
		push_key(c, map_get(&m, "retry_max") ? "retry_max" : "retry_min");
		r = fail(c, v, "expected retry_max (%ds) >= retry_min (%ds)", cfg->sync.retry_max,
			 cfg->sync.retry_min);
	}
	return r;
}

/* safety: 0 is a legal threshold everywhere ("never deactivate without a
 * person looking"); 100 % turns a percentage check off. */
static int load_safety(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"max_deactivations", "max_deactivation_percent",
					   "max_grant_removals_percent", "hold_expiry", NULL};
	struct map m;
	yaml_node_t *v;
	int r = map_read(c, n, keys, NULL, &m);
	if (r >= 0 && (v = map_get(&m, "max_deactivations"))) {
		push_key(c, "max_deactivations");
		if ((r = get_long(c, v, 0, LONG_MAX, &c->cfg->safety.max_deactivations)) >= 0)
			pop(c);
	}
	if (r >= 0)
		r = rd_int(c, &m, "max_deactivation_percent", 0, 100,
			   &c->cfg->safety.max_deactivation_percent);
	if (r >= 0)
		r = rd_int(c, &m, "max_grant_removals_percent", 0, 100,
			   &c->cfg->safety.max_grant_removals_percent);
	if (r >= 0)
		r = rd_duration(c, &m, "hold_expiry", false, &c->cfg->safety.hold_expiry);
	return r;
}

/* tenants: only auto_create so far. */
static int load_tenants(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"auto_create", NULL};
	struct map m;
	int r = map_read(c, n, keys, NULL, &m);
	return r < 0 ? r : rd_bool(c, &m, "auto_create", &c->cfg->tenants_auto_create);
}

/* A name twice in one catalog list is a typo waiting to confuse someone. */
static int catalog_unique(struct ctx *c, yaml_node_t *n, const struct ids_strv *sv, size_t from)
{
	for (size_t i = from; i < sv->n; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(sv->v[i], sv->v[j])) {
				push_idx(c, i - from);
				return fail(c, item_at(c, n, i - from), "duplicate name \"%s\"", sv->v[i]);
			}
	return 0;
}

/* name must be a role of the catalog; the message lists them. */
static int catalog_role(struct ctx *c, yaml_node_t *n, const char *name)
{
	const struct ids_strv *roles = &c->cfg->catalog.roles;
	if (ids_strv_contains(roles, name, false))
		return 0;
	char *all = join((const char *const *)roles->v, roles->n);
	int r = all ? bad_value(c, n, name, "a role of the catalog (%s)", all) : -ENOMEM;
	free(all);
	return r;
}

/* Depth-first from requirement i: a role met again on the way (state 1)
 * closes a cycle, reported at the key that closes it with the whole
 * chain, since fixing it means choosing which link to cut. */
static int requires_cycle(struct ctx *c, yaml_node_t **keys, unsigned char *state, size_t *path, size_t depth,
			  size_t i)
{
	const struct ids_catalog_rules *cr = &c->cfg->platform;
	state[i] = 1;
	path[depth] = i;
	for (size_t k = 0; k < cr->req[i].needs.n; k++) {
		size_t j = 0;
		while (j < cr->nreq && strcmp(cr->req[j].role, cr->req[i].needs.v[k]))
			j++;
		if (j == cr->nreq || state[j] == 2)
			continue;
		if (state[j] == 1) {
			struct ids_buf b = {0};
			size_t from = 0;
			while (path[from] != j)
				from++;
			for (size_t p = from; p <= depth; p++)
				ids_buf_printf(&b, "%s -> ", cr->req[path[p]].role);
			ids_buf_puts(&b, cr->req[j].role);
			push_key(c, cr->req[i].role);
			int r = b.p ? fail(c, keys[i], "requirements form a cycle: %s", b.p) : -ENOMEM;
			ids_buf_free(&b);
			return r;
		}
		int r = requires_cycle(c, keys, state, path, depth + 1, j);
		if (r < 0)
			return r;
	}
	state[i] = 2;
	return 0;
}

/* catalog.requires: role -> roles it needs in the same tenant.  Every name
 * in the catalog, no cycle (nothing could ever be granted). */
static int load_requires(struct ctx *c, yaml_node_t *n)
{
	struct ids_catalog_rules *cr = &c->cfg->platform;
	int r = map_check_free(c, n, "a role name", false);
	size_t np = r < 0 ? 0 : (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (r < 0 || !np)
		return r;
	yaml_node_t **keys = calloc(np, sizeof(*keys));
	unsigned char *state = calloc(np, 1);
	size_t *path = calloc(np, sizeof(*path));
	if (!keys || !state || !path || !(cr->req = calloc(np, sizeof(*cr->req))))
		r = -ENOMEM;
	for (size_t i = 0; i < np && r >= 0; i++) {
		yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
		yaml_node_t *v = node_at(c, p->value);
		struct ids_requirement *rq = &cr->req[cr->nreq++];
		keys[i] = node_at(c, p->key);
		const char *role = (const char *)keys[i]->data.scalar.value;
		push_key(c, role);
		if ((r = catalog_role(c, keys[i], role)) < 0 || !(rq->role = strdup(role)) ||
		    (r = get_strv(c, v, check_name, false, &rq->needs)) < 0) {
			r = r < 0 ? r : -ENOMEM;
			break;
		}
		for (size_t k = 0; k < rq->needs.n && r >= 0; k++) {
			push_idx(c, k);
			if ((r = catalog_role(c, item_at(c, v, k), rq->needs.v[k])) >= 0)
				pop(c);
		}
		if (r >= 0)
			pop(c);
	}
	for (size_t i = 0; i < np && r >= 0; i++)
		if (!state[i])
			r = requires_cycle(c, keys, state, path, 0, i);
	free(keys);
	free(state);
	free(path);
	return r;
}

/* licences: company -> role -> limit.  The company must be one a
 * connector writes to: a misspelt one would quietly license nothing, and
 * the platform would bill the seats past the contract. */
static int load_licence_company(struct ctx *c, yaml_node_t *k, yaml_node_t *v)
{
	struct ids_config *cfg = c->cfg;
	const char *company = (const char *)k->data.scalar.value;
	bool known = false;
	for (size_t i = 0; i < cfg->nconnectors; i++)
		known |= !strcmp(cfg->connectors[i].company, company);
	if (!known)
		return bad_value(c, k, company, "a company of a connector");
	int r = map_check_free(c, v, "a role name", false);
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; r >= 0 && p < v->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *rk = node_at(c, p->key);
		const char *role = (const char *)rk->data.scalar.value;
		struct ids_licence *l;
		push_key(c, role);
		if ((r = catalog_role(c, rk, role)) < 0)
			return r;
		if ((r = ids_grow(&cfg->platform.lic, &c->lic_cap, cfg->platform.nlic + 1, sizeof(*l))) < 0)
			return r;
		l = &cfg->platform.lic[cfg->platform.nlic++];
		*l = (struct ids_licence){0};
		if (!(l->company = strdup(company)) || !(l->role = strdup(role)))
			return -ENOMEM;
		if ((r = get_long(c, node_at(c, p->value), 0, LONG_MAX, &l->limit)) < 0)
			return r;
		pop(c);
	}
	return r;
}

static int load_licences(struct ctx *c, yaml_node_t *n)
{
	int r = map_check_free(c, n, "a company slug", false);
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; r >= 0 && p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node_at(c, p->key);
		push_key(c, (const char *)k->data.scalar.value);
		if ((r = load_licence_company(c, k, node_at(c, p->value))) >= 0)
			pop(c);
	}
	return r;
}

/* catalog: the names rules may use.  A list given replaces the default
 * list; extra_roles only adds (the usual need: the platform's own roles). */
static int load_catalog(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {
	    "roles", "channels", "channel_groups", "extra_roles", "requires", "on_missing_requirement", NULL};
	static const char *const on_missing[] = {"add", "drop", NULL};
	int drop = 0;
	static const char *const lists[] = {"roles", "channels", "channel_groups"};
	struct ids_config *cfg = c->cfg;
	struct ids_strv *dst[] = {&cfg->catalog.roles, &cfg->catalog.channels, &cfg->catalog.channel_groups};
	struct ids_strv extra = {0};
	struct map m;
	int r = map_read(c, n, keys, NULL, &m);
	for (size_t i = 0; i < 3 && r >= 0; i++) {
		if ((r = rd_strv(c, &m, lists[i], check_name, dst[i])) >= 0 && map_get(&m, lists[i])) {
			push_key(c, lists[i]);
			if ((r = catalog_unique(c, map_get(&m, lists[i]), dst[i], 0)) >= 0)
				pop(c);
		}
	}
	/* extra_roles extend the roles (default or given) rather than replace them */
	if (r >= 0 && (r = rd_strv(c, &m, "extra_roles", check_name, &extra)) >= 0 && extra.n) {
		size_t from = cfg->catalog.roles.n;
		for (size_t i = 0; i < extra.n && r >= 0; i++)
			r = ids_strv_push(&cfg->catalog.roles, extra.v[i]);
		push_key(c, "extra_roles");
		if (r >= 0 &&
		    (r = catalog_unique(c, map_get(&m, "extra_roles"), &cfg->catalog.roles, from)) >= 0)
			pop(c);
	}
	ids_strv_free(&extra);
	if (r >= 0 && map_get(&m, "requires")) {
		push_key(c, "requires");
		if ((r = load_requires(c, map_get(&m, "requires"))) >= 0)
			pop(c);
	}
	if (r >= 0)
		r = rd_enum(c, &m, "on_missing_requirement", on_missing, &drop);
	cfg->platform.drop_missing = drop == 1;
	return r;
}

/* ------------------------------------------------------------------ */
/* connectors                                                          */

#define COMMON_KEYS "name", "type", "company", "interval", "adopt", "allow_empty", "attributes", "changes"
static const char *const ldap_keys[] = {
    COMMON_KEYS, "flavor",  "uri",	 "start_tls", "tls_ca_file", "bind_dn",		"bind_password_file",
    "sasl_mech", "timeout", "page_size", "users",     "groups",	     "disabled_filter", "member_range_size",
    NULL};
static const char *const entra_keys[] = {COMMON_KEYS,
					 "tenant",
					 "client_id",
					 "client_secret_file",
					 "client_certificate_file",
					 "client_key_file",
					 "client_assertion_alg",
					 "login_endpoint",
					 "graph_endpoint",
					 "tls_ca_file",
					 "timeout",
					 "groups",
					 NULL};
static const char *const google_keys[] = {
    COMMON_KEYS,    "service_account_file", "subject", "customer", "domain", "token_endpoint",
    "api_endpoint", "tls_ca_file",	    "timeout", "groups",   NULL};
static const char *const scim_keys[] = {COMMON_KEYS, "token_file", "apply_delay", "rate_limit", NULL};
/* In the order of enum ids_conn_type / ids_ldap_flavor / ids_field. */
static const char *const type_names[] = {"ldap", "entra", "google", "scim", NULL};
static const char *const flavor_names[] = {"openldap", "active_directory", "generic", NULL};
static const char *const attr_keys[] = {"external_id", "username",     "email", "first_name",
					"last_name",   "display_name", NULL};

/* Per LDAP flavor (connectors.md): the directory attribute of each
 * platform field, and the filters of the two searches.  Generic takes
 * openldap's, the common schema of LDAPv3 servers.  The connector reads
 * this same table (ids_config_ldap_defaults) for hand-built configs. */
static const struct ids_ldap_flavor_defaults ldap_flavors[] = {
    [IDS_LDAP_OPENLDAP] =
	{
	    .attr = {"entryUUID", "uid", "mail", "givenName", "sn", "displayName"},
	    .users_filter = "(objectClass=inetOrgPerson)",
	    .groups_filter =
		"(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
	},
    [IDS_LDAP_AD] =
	{
	    .attr = {"objectGUID", "sAMAccountName", "mail", "givenName", "sn", "displayName"},
	    .users_filter = "(&(objectCategory=person)(objectClass=user))",
	    .groups_filter = "(objectClass=group)",
	},
    [IDS_LDAP_GENERIC] =
	{
	    .attr = {"entryUUID", "uid", "mail", "givenName", "sn", "displayName"},
	    .users_filter = "(objectClass=inetOrgPerson)",
	    .groups_filter =
		"(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
	},
};

const struct ids_ldap_flavor_defaults *ids_config_ldap_defaults(enum ids_ldap_flavor f)
{
	return &ldap_flavors[(unsigned)f <= IDS_LDAP_GENERIC ? f : IDS_LDAP_GENERIC];
}

/* Directory attribute per platform field of the cloud sources. */
static const char *const attr_entra[6] = {"id",	       "userPrincipalName", "mail",
					  "givenName", "surname",	    "displayName"};
static const char *const attr_google[6] = {
    "id", "primaryEmail", "primaryEmail", "name.givenName", "name.familyName", "name.fullName"};
/* SCIM core schema names, for messages: the scim connector maps them itself */
static const char *const attr_scim[6] = {
    "id", "userName", "emails", "name.givenName", "name.familyName", "displayName"};

/* The value of `key` in mapping n before its keys were checked (the type
 * decides which keys are allowed); NULL when absent.  With duplicates the
 * first wins here, and map_read then reports the duplicate. */
static yaml_node_t *peek(struct ctx *c, yaml_node_t *n, const char *key)
{
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(c, p->key);
		if (k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
			return node_at(c, p->value);
	}
	return NULL;
}

/* users (base required) and groups (optional: without it no group is
 * read and only attribute rules can match). */
static int load_users_groups(struct ctx *c, const struct map *cm, struct ids_connector_cfg *cc)
{
	static const char *const ukeys[] = {"base", "filter", NULL};
	static const char *const gkeys[] = {"base", "filter", "member_attribute", NULL};
	struct ids_ldap_cfg *l = &cc->ldap;
	struct map m;
	yaml_node_t *v;
	int r = 0;
	if (!(v = map_get(cm, "users")))
		return missing(c, cm, "users");
	push_key(c, "users");
	if ((r = map_read(c, v, ukeys, NULL, &m)) < 0 ||
	    (r = rd_str(c, &m, "base", NULL, &l->users_base)) < 0 ||
	    (r = rd_str(c, &m, "filter", check_filter, &l->users_filter)) < 0)
		return r;
	if (!l->users_base)
		return missing(c, &m, "base");
	pop(c);
	if ((v = map_get(cm, "groups"))) {
		push_key(c, "groups");
		if ((r = map_read(c, v, gkeys, NULL, &m)) < 0 ||
		    (r = rd_str(c, &m, "base", NULL, &l->groups_base)) < 0 ||
		    (r = rd_str(c, &m, "filter", check_filter, &l->groups_filter)) < 0 ||
		    (r = rd_str(c, &m, "member_attribute", check_attr, &l->member_attribute)) < 0)
			return r;
		/* a filter without a base would silently read no group at all */
		if (!l->groups_base)
			return missing(c, &m, "base");
		pop(c);
	}
	return 0;
}

/* Flavor defaults for what the file left out (ldap_flavors). */
static int ldap_defaults(struct ids_ldap_cfg *l)
{
	const struct ids_ldap_flavor_defaults *d = ids_config_ldap_defaults(l->flavor);
	if (!l->users_filter && !(l->users_filter = strdup(d->users_filter)))
		return -ENOMEM;
	if (!l->groups_filter && !(l->groups_filter = strdup(d->groups_filter)))
		return -ENOMEM;
	/* AD's disabled flag is a bit of userAccountControl, which the
	 * connector reads itself: no filter needed */
	return 0;
}

static bool is_ldapi(const char *uri)
{
	return !strncasecmp(uri, "ldapi://", 8);
}

/* An ldap connector: values first, then the checks between them (each
 * reported at the key that has to change). */
static int load_ldap(struct ctx *c, const struct map *m, struct ids_connector_cfg *cc)
{
	struct ids_ldap_cfg *l = &cc->ldap;
	static const char *const mechs[] = {"EXTERNAL", NULL};
	yaml_node_t *uri = map_get(m, "uri");
	int flavor = IDS_LDAP_OPENLDAP, mech = -1, r;
	l->start_tls = true;
	l->timeout = 30;
	l->page_size = 500;
	if ((r = rd_enum(c, m, "flavor", flavor_names, &flavor)) < 0)
		return r;
	l->flavor = (enum ids_ldap_flavor)flavor;
	if (!uri)
		return missing(c, m, "uri");
	push_key(c, "uri");
	if ((r = get_strv(c, uri, check_ldap_uri, true, &l->uri)) < 0)
		return r;
	pop(c);
	if ((r = rd_bool(c, m, "start_tls", &l->start_tls)) < 0 ||
	    (r = rd_file(c, m, "tls_ca_file", FILE_PUBLIC, &l->tls_ca_file, NULL)) < 0 ||
	    (r = rd_str(c, m, "bind_dn", NULL, &l->bind_dn)) < 0 ||
	    (r = rd_file(c, m, "bind_password_file", FILE_SECRET, &l->bind_password_file,
			 &l->bind_password)) < 0 ||
	    (r = rd_enum(c, m, "sasl_mech", mechs, &mech)) < 0 ||
	    (r = rd_duration(c, m, "timeout", false, &l->timeout)) < 0 ||
	    (r = rd_int(c, m, "page_size", 1, 100000, &l->page_size)) < 0 ||
	    (r = load_users_groups(c, m, cc)) < 0 ||
	    (r = rd_str(c, m, "disabled_filter", check_filter, &l->disabled_filter)) < 0 ||
	    (r = rd_int(c, m, "member_range_size", 0, INT_MAX, &l->member_range_size)) < 0)
		return r;
	if (mech >= 0 && !(l->sasl_mech = strdup(mechs[mech])))
		return -ENOMEM;
	/* ranges are Active Directory's: OpenLDAP would answer a ranged
	 * attribute name with no values at all, emptying every group */
	if (l->member_range_size > 0 && l->flavor == IDS_LDAP_OPENLDAP) {
		push_key(c, "member_range_size");
		return fail(c, map_get(m, "member_range_size"),
			    "member_range_size is Active Directory's range retrieval (set flavor: "
			    "active_directory, or generic for another AD-compatible server)");
	}

	/* how to authenticate: a simple bind needs both halves, SASL neither */
	if (l->bind_dn && !l->bind_password_file) {
		push_key(c, "bind_dn");
		return fail(c, map_get(m, "bind_dn"), "expected bind_password_file with bind_dn");
	}
	if (l->bind_password_file && !l->bind_dn) {
		push_key(c, "bind_password_file");
		return fail(c, map_get(m, "bind_password_file"), "expected bind_dn with bind_password_file");
	}
	if (l->sasl_mech && l->bind_dn) {
		push_key(c, "sasl_mech");
		return fail(c, map_get(m, "sasl_mech"), "expected either sasl_mech or bind_dn, not both");
	}
	/* ldapi:// authenticates by the peer's uid, which only SASL EXTERNAL
	 * asks for; a simple bind there would be anonymous or pointless */
	for (size_t i = 0; i < l->uri.n; i++) {
		if (is_ldapi(l->uri.v[i]) && !l->sasl_mech) {
			push_key(c, "uri");
			if (uri->type == YAML_SEQUENCE_NODE)
				push_idx(c, i);
			return bad_value(c, item_at(c, uri, i), l->uri.v[i],
					 "an ldap:// or ldaps:// URI (ldapi:// needs sasl_mech: EXTERNAL)");
		}
		/* a password over a connection that is never encrypted */
		if (!strncasecmp(l->uri.v[i], "ldap://", 7) && !l->start_tls && l->bind_dn &&
		    !c->cfg->security.allow_plaintext_bind) {
			push_key(c, "start_tls");
			return fail(
			    c, map_get(m, "start_tls"),
			    "a simple bind over %s without StartTLS sends the password in clear "
			    "(set start_tls: true, use ldaps://, or set security.allow_plaintext_bind: true)",
			    l->uri.v[i]);
		}
	}
	return ldap_defaults(l);
}

/* An entra connector.  The certificate is public (FILE_PUBLIC); its key
 * is a secret the connector reads itself when it signs (FILE_SECRET_PATH). */
static int load_entra(struct ctx *c, const struct map *m, struct ids_connector_cfg *cc)
{
	struct ids_entra_cfg *e = &cc->entra;
	static const char *const algs[] = {"PS256", "RS256", NULL};
	int alg = 0, r;
	e->timeout = 30;
	if ((r = rd_str(c, m, "tenant", check_entra_tenant, &e->tenant)) < 0)
		return r;
	if (!e->tenant)
		return missing(c, m, "tenant");
	if ((r = rd_str(c, m, "client_id", NULL, &e->client_id)) < 0)
		return r;
	if (!e->client_id)
		return missing(c, m, "client_id");
	if ((r = rd_file(c, m, "client_secret_file", FILE_SECRET, &e->client_secret_file,
			 &e->client_secret)) < 0 ||
	    (r = rd_file(c, m, "client_certificate_file", FILE_PUBLIC, &e->client_certificate_file, NULL)) <
		0 ||
	    (r = rd_file(c, m, "client_key_file", FILE_SECRET_PATH, &e->client_key_file, NULL)) < 0 ||
	    (r = rd_enum(c, m, "client_assertion_alg", algs, &alg)) < 0)
		return r;
	if (!(e->client_assertion_alg = strdup(algs[alg])))
		return -ENOMEM;

	/* exactly one credential: a secret, or a certificate with its key; two
	 * would leave the connector to guess which one the operator meant */
	bool cert = e->client_certificate_file || e->client_key_file;
	if (!e->client_secret_file && !cert)
		return fail(c, m->node,
			    "expected client_secret_file, or client_certificate_file and client_key_file");
	if (e->client_secret_file && cert) {
		const char *k = e->client_certificate_file ? "client_certificate_file" : "client_key_file";
		push_key(c, k);
		return fail(c, map_get(m, k),
			    "expected either client_secret_file or a certificate, not both");
	}
	if (cert && !e->client_key_file) {
		push_key(c, "client_certificate_file");
		return fail(c, map_get(m, "client_certificate_file"),
			    "expected client_key_file with client_certificate_file");
	}
	if (cert && !e->client_certificate_file) {
		push_key(c, "client_key_file");
		return fail(c, map_get(m, "client_key_file"),
			    "expected client_certificate_file with client_key_file");
	}
	if (!cert && map_get(m, "client_assertion_alg")) {
		push_key(c, "client_assertion_alg");
		return fail(c, map_get(m, "client_assertion_alg"),
			    "expected client_assertion_alg only with client_certificate_file");
	}

	if (!(e->login_endpoint = strdup("https://login.microsoftonline.com")) ||
	    !(e->graph_endpoint = strdup("https://graph.microsoft.com/v1.0")))
		return -ENOMEM;
	if ((r = rd_str(c, m, "login_endpoint", check_https, &e->login_endpoint)) < 0 ||
	    (r = rd_str(c, m, "graph_endpoint", check_https, &e->graph_endpoint)) < 0 ||
	    (r = rd_file(c, m, "tls_ca_file", FILE_PUBLIC, &e->tls_ca_file, NULL)) < 0 ||
	    (r = rd_duration(c, m, "timeout", false, &e->timeout)) < 0 ||
	    (r = rd_strv(c, m, "groups", NULL, &e->groups)) < 0)
		return r;
	return 0;
}

/* A google connector.  The service account key file is a secret JSON the
 * connector parses: checked here, read there. */
static int load_google(struct ctx *c, const struct map *m, struct ids_connector_cfg *cc)
{
	struct ids_google_cfg *g = &cc->google;
	int r;
	g->timeout = 30;
	if ((r = rd_file(c, m, "service_account_file", FILE_SECRET_PATH, &g->service_account_file, NULL)) < 0)
		return r;
	if (!g->service_account_file)
		return missing(c, m, "service_account_file");
	if ((r = rd_str(c, m, "subject", check_subject, &g->subject)) < 0)
		return r;
	if (!g->subject)
		return missing(c, m, "subject");
	if ((r = rd_str(c, m, "customer", NULL, &g->customer)) < 0 ||
	    (r = rd_str(c, m, "domain", NULL, &g->domain)) < 0)
		return r;
	if (g->customer && g->domain) {
		push_key(c, "domain");
		return fail(c, map_get(m, "domain"), "expected either customer or domain, not both");
	}
	/* my_customer: the customer of the impersonated admin */
	if (!g->customer && !g->domain && !(g->customer = strdup("my_customer")))
		return -ENOMEM;
	if (!(g->api_endpoint = strdup("https://admin.googleapis.com")))
		return -ENOMEM;
	if ((r = rd_str(c, m, "token_endpoint", check_https, &g->token_endpoint)) < 0 ||
	    (r = rd_str(c, m, "api_endpoint", check_https, &g->api_endpoint)) < 0 ||
	    (r = rd_file(c, m, "tls_ca_file", FILE_PUBLIC, &g->tls_ca_file, NULL)) < 0 ||
	    (r = rd_duration(c, m, "timeout", false, &g->timeout)) < 0 ||
	    (r = rd_strv(c, m, "groups", NULL, &g->groups)) < 0)
		return r;
	return 0;
}

/* A scim connector: the token it accepts (a secret read here, compared by
 * the listener) and how long a burst of pushes settles before its run. */
static int load_scim(struct ctx *c, const struct map *m, struct ids_connector_cfg *cc)
{
	struct ids_scim_cfg *s = &cc->scim;
	int r;
	/* 1s: what the issue's "applied within 2 s of the burst's end"
	 * leaves room for (the run takes the rest); docs/scim.md */
	s->apply_delay = 1;
	/* scim: is read before the connectors (see load_root); without a
	 * listener this connector would never hear a push */
	if (!c->cfg->scim.listen) {
		push_key(c, "type");
		return fail(c, map_get(m, "type"),
			    "a type: scim connector needs the scim: block (where to listen)");
	}
	if ((r = rd_file(c, m, "token_file", FILE_SECRET, &s->token_file, &s->token)) < 0)
		return r;
	if (!s->token_file)
		return missing(c, m, "token_file");
	/* well above a provisioning client's pace (Entra: a few per second;
	 * a bulk import: hundreds), low enough that a runaway loop cannot
	 * hold the listener for the other connectors */
	s->rate_limit = 1000;
	if ((r = rd_int(c, m, "rate_limit", 0, 1000000, &s->rate_limit)) < 0)
		return r;
	return rd_duration(c, m, "apply_delay", true, &s->apply_delay);
}

/* attributes: overrides field by field; the rest from the type's defaults. */
static int load_attributes(struct ctx *c, const struct map *cm, struct ids_connector_cfg *cc)
{
	const char *const *def = cc->type == IDS_CONN_ENTRA    ? attr_entra
				 : cc->type == IDS_CONN_GOOGLE ? attr_google
				 : cc->type == IDS_CONN_SCIM
				     ? attr_scim
				     : ids_config_ldap_defaults(cc->ldap.flavor)->attr;
	yaml_node_t *v = map_get(cm, "attributes");
	struct map m;
	int r;
	if (v) {
		push_key(c, "attributes");
		if ((r = map_read(c, v, attr_keys, NULL, &m)) < 0)
			return r;
		for (size_t f = 0; f < 6; f++)
			if ((r = rd_str(c, &m, attr_keys[f], check_attr, &cc->attr[f])) < 0)
				return r;
		pop(c);
	}
	for (size_t f = 0; f < 6; f++)
		if (!cc->attr[f] && !(cc->attr[f] = strdup(def[f])))
			return -ENOMEM;
	return 0;
}

/* changes: the change feed's settings.  persist where it cannot work
 * (not OpenLDAP, or without the feed) is refused rather than ignored: an
 * operator who asks for second-latency must not get interval latency
 * without a word.  A debounce is bounded: past an hour it would
 * hold changes back longer than a typical interval.  object_security
 * (DirSync's flag) means nothing elsewhere: refused there too. */
static int load_changes(struct ctx *c, const struct map *cm, struct ids_connector_cfg *cc)
{
	static const char *const keys[] = {"mode",	 "persist",	    "debounce",
					   "full_every", "object_security", NULL};
	static const char *const modes[] = {"auto", "full", NULL}; /* enum ids_changes_mode */
	struct ids_changes_cfg *ch = &cc->changes;
	yaml_node_t *v = map_get(cm, "changes");
	struct map m;
	int mode = IDS_CHANGES_AUTO, r;
	*ch = (struct ids_changes_cfg){.mode = IDS_CHANGES_AUTO, .debounce = 1, .full_every = 86400};
	if (!v)
		return 0;
	push_key(c, "changes");
	if ((r = map_read(c, v, keys, NULL, &m)) < 0 || (r = rd_enum(c, &m, "mode", modes, &mode)) < 0 ||
	    (r = rd_bool(c, &m, "persist", &ch->persist)) < 0 ||
	    (r = rd_duration(c, &m, "debounce", true, &ch->debounce)) < 0 ||
	    (r = rd_duration(c, &m, "full_every", false, &ch->full_every)) < 0 ||
	    (r = rd_bool(c, &m, "object_security", &ch->object_security)) < 0)
		return r;
	ch->mode = (enum ids_changes_mode)mode;
	if (ch->object_security && (cc->type != IDS_CONN_LDAP || cc->ldap.flavor != IDS_LDAP_AD)) {
		push_key(c, "object_security");
		return fail(c, map_get(&m, "object_security"),
			    "object_security is a flag of Active Directory's DirSync: only for type ldap, "
			    "flavor active_directory");
	}
	if (ch->debounce > 3600) {
		push_key(c, "debounce");
		return bad_value(c, map_get(&m, "debounce"), NULL, "a duration of at most 1h");
	}
	if (ch->persist) {
		push_key(c, "persist");
		if (cc->type != IDS_CONN_LDAP || cc->ldap.flavor != IDS_LDAP_OPENLDAP)
			return fail(
			    c, map_get(&m, "persist"),
			    "persist is OpenLDAP's refreshAndPersist: only for type ldap, flavor openldap");
		/* the doorbell only says when to run: the run reads the feed */
		if (ch->mode == IDS_CHANGES_FULL)
			return fail(c, map_get(&m, "persist"),
				    "persist needs the change feed: set mode: auto, or persist: false");
		pop(c);
	}
	pop(c);
	return 0;
}

/* connectors[idx]: the keys common to every type, then the type's own. */
static int load_connector(struct ctx *c, yaml_node_t *n, size_t idx)
{
	static const char *const *const keys_by_type[] = {ldap_keys, entra_keys, google_keys, scim_keys};
	static const char *const notes[] = {" for type ldap", " for type entra", " for type google",
					    " for type scim"};
	static const char *const adopt[] = {"by_email", NULL};
	struct ids_connector_cfg *cc = &c->cfg->connectors[idx];
	yaml_node_t *tn, *nn;
	struct map m;
	int type, a = -1, r;
	cc->line = (int)n->start_mark.line + 1;
	if (n->type != YAML_MAPPING_NODE)
		return bad_value(c, n, NULL, "a mapping");
	/* the type first: it decides which other keys exist */
	if (!(tn = peek(c, n, "type")))
		return fail(c, n, "missing required key \"type\"");
	push_key(c, "type");
	if ((r = get_enum(c, tn, type_names, &type)) < 0)
		return r;
	pop(c);
	cc->type = (enum ids_conn_type)type;
	if ((r = map_read(c, n, keys_by_type[type], notes[type], &m)) < 0)
		return r;

	if (!(nn = map_get(&m, "name")))
		return missing(c, &m, "name");
	if ((r = rd_str(c, &m, "name", check_conn_name, &cc->name)) < 0)
		return r;
	/* two connectors with one name would write one `source` */
	for (size_t i = 0; i < idx; i++) {
		if (!strcmp(c->cfg->connectors[i].name, cc->name)) {
			push_key(c, "name");
			return fail(c, nn, "duplicate connector name \"%s\" (first at line %d)", cc->name,
				    c->cfg->connectors[i].line);
		}
	}
	if (!(cc->company = strdup("default")))
		return -ENOMEM;
	if ((r = rd_str(c, &m, "company", check_slug, &cc->company)) < 0 ||
	    (r = rd_duration(c, &m, "interval", false, &cc->interval)) < 0 ||
	    (r = rd_enum(c, &m, "adopt", adopt, &a)) < 0 ||
	    (r = rd_bool(c, &m, "allow_empty", &cc->allow_empty)) < 0)
		return r;
	cc->adopt_by_email = a == 0;

	switch (cc->type) {
	case IDS_CONN_LDAP: r = load_ldap(c, &m, cc); break;
	case IDS_CONN_ENTRA: r = load_entra(c, &m, cc); break;
	case IDS_CONN_GOOGLE: r = load_google(c, &m, cc); break;
	case IDS_CONN_SCIM: r = load_scim(c, &m, cc); break;
	}
	/* attributes and changes last: both depend on the flavor */
	if (r >= 0)
		r = load_attributes(c, &m, cc);
	return r < 0 ? r : load_changes(c, &m, cc);
}

static int load_connectors(struct ctx *c, yaml_node_t *n)
{
	struct ids_config *cfg = c->cfg;
	int r;
	if (n->type != YAML_SEQUENCE_NODE)
		return bad_value(c, n, NULL, "a list of connectors");
	/* `connectors: []` is the packaged configuration before anyone
	 * configured it (issue 18): valid, and never quiet — check-config,
	 * the daemon's STATUS= and `status` say that nothing is synced */
	if (!items(n))
		return 0;
	if (!(cfg->connectors = calloc(items(n), sizeof(*cfg->connectors))))
		return -ENOMEM;
	for (size_t i = 0; i < items(n); i++) {
		/* counted before it is filled, so that ids_config_free frees a half-read one */
		cfg->nconnectors++;
		push_idx(c, i);
		if ((r = load_connector(c, item_at(c, n, i), i)) < 0)
			return r;
		pop(c);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* scim: the listener of the scim connectors                           */

int ids_config_scim_listen(const char *listen, char **ret_host, int *ret_port, bool *ret_loopback)
{
	const char *colon, *h = listen;
	size_t hn;
	if (listen[0] == '/') {
		/* a unix socket: sun_path holds 107 bytes and a NUL */
		if (strlen(listen) > 107)
			return -EINVAL;
		*ret_host = NULL;
		*ret_port = 0;
		*ret_loopback = true;
		return 0;
	}
	if (listen[0] == '[') {
		const char *end = strchr(listen, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		h = listen + 1;
		hn = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon || memchr(listen, ':', (size_t)(colon - listen)))
			return -EINVAL;
		hn = (size_t)(colon - listen);
	}
	char *end = NULL;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (!hn || colon[1] < '0' || colon[1] > '9' || *end || errno || port < 1 || port > 65535)
		return -EINVAL;
	char *host = strndup(h, hn);
	if (!host)
		return -ENOMEM;
	unsigned char a[16];
	bool v4 = inet_pton(AF_INET, host, a) == 1, v6 = !v4 && inet_pton(AF_INET6, host, a) == 1;
	/* a name would be resolved to decide where to bind: only localhost,
	 * whose meaning is fixed, is taken as one */
	if (!v4 && !v6 && strcasecmp(host, "localhost") != 0) {
		free(host);
		return -EINVAL;
	}
	*ret_loopback =
	    (v4 && a[0] == 127) || (v6 && !memcmp(a, in6addr_loopback.s6_addr, 16)) || (!v4 && !v6);
	*ret_host = host;
	*ret_port = (int)port;
	return 0;
}

/* scim: where the SCIM service provider listens.  Plaintext only where
 * no network sees it: a bearer token in clear on a LAN is a stolen
 * token. */
static int load_scim_block(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"listen",  "tls_cert_file",	 "tls_key_file",
					   "timeout", "max_connections", NULL};
	struct map m;
	char *host = NULL;
	int port = 0, r;
	bool loopback = false;
	c->cfg->scim.timeout = 30;
	c->cfg->scim.max_connections = 64;
	if ((r = map_read(c, n, keys, NULL, &m)) < 0 ||
	    (r = rd_str(c, &m, "listen", NULL, &c->cfg->scim.listen)) < 0 ||
	    (r = rd_duration(c, &m, "timeout", false, &c->cfg->scim.timeout)) < 0 ||
	    (r = rd_int(c, &m, "max_connections", 2, 100000, &c->cfg->scim.max_connections)) < 0)
		return r;
	if (!c->cfg->scim.listen)
		return missing(c, &m, "listen");
	r = ids_config_scim_listen(c->cfg->scim.listen, &host, &port, &loopback);
	free(host);
	if (r == -EINVAL) {
		push_key(c, "listen");
		return bad_value(c, map_get(&m, "listen"), c->cfg->scim.listen,
				 "HOST:PORT (an IP address or localhost) or a unix socket path");
	}
	if (r < 0 ||
	    (r = rd_file(c, &m, "tls_cert_file", FILE_PUBLIC, &c->cfg->scim.tls_cert_file, NULL)) < 0 ||
	    (r = rd_file(c, &m, "tls_key_file", FILE_SECRET_PATH, &c->cfg->scim.tls_key_file, NULL)) < 0)
		return r;
	if (!c->cfg->scim.tls_cert_file != !c->cfg->scim.tls_key_file) {
		const char *k = c->cfg->scim.tls_cert_file ? "tls_cert_file" : "tls_key_file";
		push_key(c, k);
		return fail(c, map_get(&m, k), "expected tls_cert_file and tls_key_file together");
	}
	if (!c->cfg->scim.tls_cert_file && !loopback) {
		push_key(c, "listen");
		return fail(c, map_get(&m, "listen"),
			    "%s is reachable over the network: expected tls_cert_file and tls_key_file "
			    "(plaintext only on loopback or a unix socket)",
			    c->cfg->scim.listen);
	}
	return 0;
}

/* metrics: where /metrics is served.  Any address is accepted (the
 * numbers carry no secret), loopback is the default; README "Metrics". */
static int load_metrics_block(struct ctx *c, yaml_node_t *n)
{
	static const char *const keys[] = {"listen", NULL};
	struct map m;
	char *host = NULL;
	int port = 0, r;
	bool loopback = false;
	if ((r = map_read(c, n, keys, NULL, &m)) < 0 ||
	    (r = rd_str(c, &m, "listen", NULL, &c->cfg->metrics.listen)) < 0)
		return r;
	if (!c->cfg->metrics.listen && !(c->cfg->metrics.listen = strdup("127.0.0.1:9464")))
		return -ENOMEM;
	r = ids_config_scim_listen(c->cfg->metrics.listen, &host, &port, &loopback);
	if (r == -EINVAL || (r >= 0 && !host)) {
		free(host);
		push_key(c, "listen");
		return bad_value(c, map_get(&m, "listen"), c->cfg->metrics.listen,
				 "HOST:PORT (an IP address or localhost)");
	}
	free(host);
	return r < 0 ? r : 0;
}

/* ------------------------------------------------------------------ */
/* rules                                                               */

/* What glibc's regcomp would build from a pattern, roughly, so that a
 * pattern that would eat the machine is refused before it is compiled.
 * regcomp expands every repetition into copies of what it repeats:
 * "(a{100}){100}" holds ten thousand nodes, and each "+" doubles its
 * operand, so "a" followed by twenty "+" takes gigabytes (found by
 * fuzz/fuzz_rules).  Refused as well: a duplication symbol right after
 * another (undefined in POSIX, and how the doubling stacks up), and
 * back-references (not ERE, and exponential to match against values a
 * directory controls). */
#define RE_COST_MAX 10000 /* pattern nodes after expansion */
#define RE_DEPTH_MAX 32	  /* nested groups */

struct re_scan {
	const char *p;
	int depth;
	const char *why; /* set when refused */
};

static unsigned long re_add(unsigned long a, unsigned long b)
{
	return a + b > RE_COST_MAX ? RE_COST_MAX + 1 : a + b;
}

static unsigned long re_mul(unsigned long a, unsigned long b)
{
	return a && b > (RE_COST_MAX + 1) / a ? RE_COST_MAX + 1 : a * b;
}

/* The copy factor of the duplication symbol at s->p (consumed), 0 when
 * there is none: "*" and "?" keep one copy, "+" makes two, {m,n} up to
 * max(m,n) + 1.  A "{" that is no interval is left to regcomp. */
static unsigned long re_quant(struct re_scan *s)
{
	const char *p = s->p;
	if (*p == '*' || *p == '?' || *p == '+') {
		s->p++;
		return *p == '+' ? 2 : 1;
	}
	if (*p != '{' || p[1] < '0' || p[1] > '9')
		return 0;
	unsigned long bound = 0, v = 0;
	for (p++; (*p >= '0' && *p <= '9') || *p == ','; p++) {
		v = *p == ',' ? 0 : (v < RE_COST_MAX ? v * 10 + (unsigned long)(*p - '0') : v);
		if (v > bound)
			bound = v;
	}
	if (*p != '}')
		return 0;
	s->p = p + 1;
	return bound + 1;
}

static unsigned long re_branches(struct re_scan *s);

/* Why a Perl-style class escape \c is refused, NULL for any other c.
 * POSIX ERE has none of them: glibc reads \d as a plain "d" (and knows
 * \w \s \b only as GNU extensions), inside [...] a backslash is a
 * backslash, so a rule written in another dialect would silently never
 * match.  The message gives the POSIX spelling. */
static const char *re_perl_class(char c, bool in_bracket)
{
	static const char *const plain[][2] = {
	    {"d", "\\d is Perl syntax, not POSIX extended: use [0-9]"},
	    {"D", "\\D is Perl syntax, not POSIX extended: use [^0-9]"},
	    {"w", "\\w is Perl syntax, not POSIX extended: use [[:alnum:]_]"},
	    {"W", "\\W is Perl syntax, not POSIX extended: use [^[:alnum:]_]"},
	    {"s", "\\s is Perl syntax, not POSIX extended: use [[:space:]]"},
	    {"S", "\\S is Perl syntax, not POSIX extended: use [^[:space:]]"},
	    {"b", "\\b is Perl syntax, not POSIX extended: anchor with ^ and $, or use [^[:alnum:]_]"},
	    {"B", "\\B is Perl syntax, not POSIX extended: anchor with ^ and $, or use [[:alnum:]_]"},
	};
	static const char *const bracket[][2] = {
	    {"d", "inside [...] \\d is a backslash and a \"d\" in POSIX: use [:digit:] (e.g. [[:digit:]-])"},
	    {"w",
	     "inside [...] \\w is a backslash and a \"w\" in POSIX: use [:alnum:]_ (e.g. [[:alnum:]_.-])"},
	    {"s", "inside [...] \\s is a backslash and an \"s\" in POSIX: use [:space:]"},
	};
	if (in_bracket) {
		for (size_t i = 0; i < sizeof(bracket) / sizeof(bracket[0]); i++)
			if (bracket[i][0][0] == c)
				return bracket[i][1];
		return NULL;
	}
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (plain[i][0][0] == c)
			return plain[i][1];
	return NULL;
}

/* One atom at s->p (consumed): a group, a bracket expression, an escape
 * or one character.  Its cost, at least 1. */
static unsigned long re_atom(struct re_scan *s)
{
	const char *p = s->p;
	if (*p == '(') {
		if (++s->depth > RE_DEPTH_MAX) {
			s->why = "groups nested too deeply";
			return 1;
		}
		s->p++;
		unsigned long k = re_branches(s);
		if (*s->p == ')')
			s->p++;
		s->depth--;
		return k ? k : 1;
	}
	if (*p == '[') {
		/* "]" first (after an optional "^") is a member; [:class:],
		 * [.coll.] and [=equiv=] may hold a "]" */
		p++;
		if (*p == '^')
			p++;
		if (*p == ']')
			p++;
		while (*p && *p != ']') {
			/* two backslashes are taken as one escaped backslash,
			 * so that [\\d] (a backslash or a d) stays legitimate */
			if (*p == '\\' && p[1] == '\\') {
				p += 2;
				continue;
			}
			if (*p == '\\' && p[1] && !s->why)
				s->why = re_perl_class(p[1], true);
			if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
				char end = p[1];
				for (p += 2; *p && !(p[0] == end && p[1] == ']'); p++)
					;
				p += *p ? 2 : 0;
			} else {
				p++;
			}
		}
		s->p = *p ? p + 1 : p;
		return 1;
	}
	if (*p == '\\') {
		if (p[1] >= '1' && p[1] <= '9')
			s->why = "back-references such as \\1 are not part of POSIX extended expressions";
		else if (p[1] && !s->why)
			s->why = re_perl_class(p[1], false);
		s->p += p[1] ? 2 : 1;
		return 1;
	}
	s->p++;
	return 1;
}

/* Alternatives up to a ")" or the end: the sum of their atoms' costs. */
static unsigned long re_branches(struct re_scan *s)
{
	unsigned long total = 0;
	while (*s->p && *s->p != ')' && !s->why) {
		if (*s->p == '|') {
			s->p++;
			continue;
		}
		unsigned long k = re_atom(s), f;
		for (int q = 0; !s->why && (f = re_quant(s)) != 0; q++) {
			/* "*?" is lazy in Perl; POSIX has no lazy quantifiers */
			if (q && s->p[-1] == '?')
				s->why = "lazy quantifiers (*?, +?, ?"
					 "?) are Perl syntax, not POSIX extended: "
					 "use a bracket expression that cannot run past the end (e.g. [^,]* "
					 "instead of .*? before a comma)";
			else if (q)
				s->why = "a duplication symbol (*, +, ?, {m,n}) right after another";
			k = re_mul(k, f);
		}
		total = re_add(total, k);
	}
	return total;
}

/* NULL when src is safe to hand to regcomp, else why not. */
static const char *re_refused(const char *src)
{
	struct re_scan s = {.p = src};
	unsigned long cost = 0;
	while (*s.p && !s.why) {
		cost = re_add(cost, re_branches(&s));
		if (*s.p == ')')
			s.p++; /* unbalanced: regcomp says so */
	}
	if (!s.why && cost > RE_COST_MAX)
		s.why = "too many repetitions: the compiled expression would be huge";
	return s.why;
}

/* Compiles a POSIX ERE; a "(?i)" prefix (which POSIX lacks) means
 * REG_ICASE.  *ret_src is the pattern without it, set only on success. */
static int compile(struct ctx *c, yaml_node_t *n, regex_t *re, char **ret_src)
{
	char *s = NULL;
	/* no REG_NOSUB: tenant templates use the captures of member_of_regex */
	int flags = REG_EXTENDED, r = get_scalar(c, n, "a regular expression", &s);
	if (r < 0)
		return r;
	const char *src = s;
	if (!strncmp(src, "(?i)", 4)) {
		src += 4;
		flags |= REG_ICASE;
	}
	const char *refused = re_refused(src);
	if (refused) {
		r = bad_value(c, n, s, "a POSIX extended regular expression (%s)", refused);
		free(s);
		return r;
	}
	int e = regcomp(re, src, flags);
	if (e) {
		size_t len = regerror(e, re, NULL, 0);
		char *why = malloc(len ? len : 1);
		if (why) {
			regerror(e, re, why, len);
			r = bad_value(c, n, s, "a POSIX extended regular expression (%s)", why);
		} else {
			r = -ENOMEM;
		}
		free(why);
		free(s);
		return r;
	}
	memmove(s, src, strlen(src) + 1);
	*ret_src = s;
	return 0;
}

static const char *const rule_keys[] = {"name",	 "connectors", "match",		"tenant", "roles", "channels",
					"slots", "groups",     "company_admin", "revoke", NULL};

/* A list of catalog names (roles, channels): each must be in cat, compared
 * exactly since the names are written to the database as they are.  The
 * message lists the allowed names: the fix is usually one of them. */
static int rd_catalog(struct ctx *c, const struct map *m, const char *key, const struct ids_strv *cat,
		      const char *what, struct ids_strv *dst)
{
	yaml_node_t *v = map_get(m, key);
	int r;
	if (!v)
		return 0;
	push_key(c, key);
	if ((r = get_strv(c, v, NULL, false, dst)) < 0)
		return r;
	for (size_t i = 0; i < dst->n; i++) {
		if (!ids_strv_contains(cat, dst->v[i], false)) {
			char *all = join((const char *const *)cat->v, cat->n);
			push_idx(c, i);
			r = all ? bad_value(c, item_at(c, v, i), dst->v[i], "a %s of the catalog (%s)", what,
					    all)
				: -ENOMEM;
			free(all);
			return r;
		}
	}
	pop(c);
	return 0;
}

/* match: conditions that must all hold.  The regexes are compiled here,
 * once, so that a bad one is a config error and not a surprise per user. */
static int load_match(struct ctx *c, yaml_node_t *n, struct ids_rule *rule)
{
	static const char *const keys[] = {"member_of", "not_member_of", "attribute", "member_of_regex",
					   NULL};
	struct map m;
	yaml_node_t *v;
	int r;
	if ((r = map_read(c, n, keys, NULL, &m)) < 0)
		return r;
	/* `match: {}` would match every user of the directory: that must be
	 * said with a condition, not by omission */
	if (!n->data.mapping.pairs.top || n->data.mapping.pairs.top == n->data.mapping.pairs.start)
		return fail(c, n,
			    "expected at least one condition (member_of, not_member_of, attribute, "
			    "member_of_regex)");
	if ((r = rd_strv(c, &m, "member_of", NULL, &rule->member_of)) < 0 ||
	    (r = rd_strv(c, &m, "not_member_of", NULL, &rule->not_member_of)) < 0)
		return r;
	if ((v = map_get(&m, "attribute"))) {
		push_key(c, "attribute");
		if ((r = map_check_free(c, v, "attribute names", true)) < 0)
			return r;
		size_t np = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
		if (!np)
			return bad_value(c, v, NULL, "at least one attribute: regex");
		if (!(rule->attrs = calloc(np, sizeof(*rule->attrs))))
			return -ENOMEM;
		for (size_t i = 0; i < np; i++) {
			yaml_node_pair_t *p = &v->data.mapping.pairs.start[i];
			const char *name = (const char *)node_at(c, p->key)->data.scalar.value;
			struct ids_rule_attr *a = &rule->attrs[i];
			if (check_attr(name))
				return bad_value(c, node_at(c, p->key), NULL, "an attribute name");
			push_key(c, name);
			if ((r = compile(c, node_at(c, p->value), &a->re, &a->pattern)) < 0)
				return r;
			/* counted only once compiled: ids_rule_clear regfree()s attrs[0..nattrs) */
			rule->nattrs++;
			if (!(a->name = strdup(name)))
				return -ENOMEM;
			pop(c);
		}
		pop(c);
	}
	if ((v = map_get(&m, "member_of_regex"))) {
		char *src = NULL;
		push_key(c, "member_of_regex");
		if ((r = compile(c, v, &rule->group_re, &src)) < 0)
			return r;
		/* set only once compiled: member_of_regex != NULL means group_re is live */
		rule->member_of_regex = src;
		rule->group_re_nsub = rule->group_re.re_nsub;
		pop(c);
	}
	return 0;
}

/* slots: channel group -> sessions at once, 0..1000 (0 is a real value:
 * "none of this kind", distinct from not granting the group at all). */
static int load_slots(struct ctx *c, yaml_node_t *n, struct ids_rule *rule)
{
	const struct ids_strv *cg = &c->cfg->catalog.channel_groups;
	size_t np;
	int r;
	if ((r = map_check_free(c, n, "channel groups", false)) < 0)
		return r;
	/* `slots: {}` grants nothing and is left for check_rule to judge */
	np = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (!np)
		return 0;
	if (!(rule->slots = calloc(np, sizeof(*rule->slots))))
		return -ENOMEM;
	for (size_t i = 0; i < np; i++) {
		yaml_node_t *k = node_at(c, n->data.mapping.pairs.start[i].key);
		yaml_node_t *v = node_at(c, n->data.mapping.pairs.start[i].value);
		const char *name = (const char *)k->data.scalar.value;
		long slots;
		if (!ids_strv_contains(cg, name, false)) {
			char *all = join((const char *const *)cg->v, cg->n);
			r = all ? bad_value(c, k, NULL, "a channel group of the catalog (%s)", all) : -ENOMEM;
			free(all);
			return r;
		}
		push_key(c, name);
		if ((r = get_long(c, v, 0, 1000, &slots)) < 0)
			return r;
		pop(c);
		if (!(rule->slots[i].channel_group = strdup(name)))
			return -ENOMEM;
		rule->slots[i].slots = (int)slots;
		rule->nslots++;
	}
	return 0;
}

/* revoke: what to take away; operator groups are free names, like the
 * groups a rule grants. */
static int load_revoke(struct ctx *c, yaml_node_t *n, struct ids_rule *rule)
{
	static const char *const keys[] = {"roles", "channels", "groups", NULL};
	struct map m;
	int r;
	if ((r = map_read(c, n, keys, NULL, &m)) < 0 ||
	    (r = rd_catalog(c, &m, "roles", &c->cfg->catalog.roles, "role", &rule->revoke_roles)) < 0 ||
	    (r = rd_catalog(c, &m, "channels", &c->cfg->catalog.channels, "channel",
			    &rule->revoke_channels)) < 0 ||
	    (r = rd_strv(c, &m, "groups", check_name, &rule->revoke_groups)) < 0)
		return r;
	if (!rule->revoke_roles.n && !rule->revoke_channels.n && !rule->revoke_groups.n)
		return fail(c, n, "expected at least one of roles, channels, groups");
	rule->revoke = true;
	return 0;
}

/* What a rule may combine (semantics.md): a revoke rule only revokes, in a
 * tenant or "*"; a granting rule grants in one tenant, or makes company
 * admins, or both. */
static int check_rule(struct ctx *c, const struct map *m, struct ids_rule *rule)
{
	static const char *const grants[] = {"roles", "channels", "slots", "groups", "company_admin"};
	yaml_node_t *tn = map_get(m, "tenant");
	bool grants_in_tenant = rule->roles.n || rule->channels.n || rule->nslots || rule->groups.n;
	const char *why = NULL;
	if (rule->revoke) {
		for (size_t i = 0; i < 5; i++) {
			if (map_get(m, grants[i])) {
				push_key(c, grants[i]);
				return fail(c, map_get(m, grants[i]),
					    "a rule with revoke grants nothing: move %s to a rule of its own",
					    grants[i]);
			}
		}
		if (!tn)
			return fail(c, m->node,
				    "missing required key \"tenant\" (a slug, a template or \"*\")");
	} else if (!grants_in_tenant && !rule->company_admin) {
		return fail(c, m->node,
			    "expected at least one of roles, channels, slots, groups, company_admin "
			    "or revoke");
	} else if (grants_in_tenant && !tn) {
		return fail(c, m->node,
			    "missing required key \"tenant\" (where roles, channels, slots and groups "
			    "are granted)");
	} else if (!grants_in_tenant && tn) {
		push_key(c, "tenant");
		return fail(c, tn, "expected roles, channels, slots or groups with a tenant");
	}
	if (!tn)
		return 0;
	push_key(c, "tenant");
	if (!strcmp(rule->tenant, "*")) {
		if (!rule->revoke)
			return bad_value(c, tn, rule->tenant,
					 "a tenant slug or template (\"*\" is for revoke rules)");
	} else if (!strpbrk(rule->tenant, "{}")) {
		/* a literal tenant: checked here rather than skipped per user later */
		if (!ids_slug_valid(rule->tenant))
			return bad_value(c, tn, rule->tenant, "%s", check_slug(rule->tenant));
	} else if (ids_rule_check_template(rule, &why) < 0) {
		return fail(c, tn, "%s", why ? why : "invalid tenant template");
	}
	pop(c);
	return 0;
}

/* rules[idx], into c->cfg->rules[idx] (already counted, so that a half-read
 * rule is freed by ids_rule_clear).  Connectors are loaded by now. */
static int load_rule(struct ctx *c, yaml_node_t *n, size_t idx)
{
	struct ids_rule *rule = &c->cfg->rules[idx];
	struct ids_config *cfg = c->cfg;
	yaml_node_t *v;
	struct map m;
	int r;
	rule->line = (int)n->start_mark.line + 1;
	if ((r = map_read(c, n, rule_keys, NULL, &m)) < 0)
		return r;
	if (!(v = map_get(&m, "name")))
		return missing(c, &m, "name");
	if ((r = rd_str(c, &m, "name", check_name, &rule->name)) < 0)
		return r;
	for (size_t i = 0; i < idx; i++) {
		if (!strcmp(cfg->rules[i].name, rule->name)) {
			push_key(c, "name");
			return fail(c, v, "duplicate rule name \"%s\" (first at line %d)", rule->name,
				    cfg->rules[i].line);
		}
	}
	if ((v = map_get(&m, "connectors"))) {
		push_key(c, "connectors");
		if ((r = get_strv(c, v, NULL, false, &rule->connectors)) < 0)
			return r;
		for (size_t i = 0; i < rule->connectors.n; i++) {
			if (!ids_config_connector(cfg, rule->connectors.v[i])) {
				struct ids_strv names = {0};
				char *all = NULL;
				for (size_t j = 0; j < cfg->nconnectors && r >= 0; j++)
					r = ids_strv_push(&names, cfg->connectors[j].name);
				if (r >= 0)
					all = join((const char *const *)names.v, names.n);
				push_idx(c, i);
				r = all ? bad_value(c, item_at(c, v, i), rule->connectors.v[i],
						    "a configured connector (%s)", all)
					: -ENOMEM;
				free(all);
				ids_strv_free(&names);
				return r;
			}
		}
		pop(c);
	}
	if (!(v = map_get(&m, "match")))
		return missing(c, &m, "match");
	push_key(c, "match");
	if ((r = load_match(c, v, rule)) < 0)
		return r;
	pop(c);

	if ((r = rd_str(c, &m, "tenant", NULL, &rule->tenant)) < 0 ||
	    (r = rd_catalog(c, &m, "roles", &cfg->catalog.roles, "role", &rule->roles)) < 0 ||
	    (r = rd_catalog(c, &m, "channels", &cfg->catalog.channels, "channel", &rule->channels)) < 0 ||
	    (r = rd_strv(c, &m, "groups", check_name, &rule->groups)) < 0 ||
	    (r = rd_bool(c, &m, "company_admin", &rule->company_admin)) < 0)
		return r;
	if ((v = map_get(&m, "slots"))) {
		push_key(c, "slots");
		if ((r = load_slots(c, v, rule)) < 0)
			return r;
		pop(c);
	}
	if ((v = map_get(&m, "revoke"))) {
		push_key(c, "revoke");
		if ((r = load_revoke(c, v, rule)) < 0)
			return r;
		pop(c);
	}
	return check_rule(c, &m, rule);
}

static int load_rules(struct ctx *c, yaml_node_t *n)
{
	struct ids_config *cfg = c->cfg;
	int r;
	/* `rules: []` is legal: every user is out of scope (and the safety
	 * thresholds stand between that and a mass deactivation) */
	if (n->type != YAML_SEQUENCE_NODE)
		return bad_value(c, n, NULL, "a list of rules");
	if (!items(n))
		return 0;
	if (!(cfg->rules = calloc(items(n), sizeof(*cfg->rules))))
		return -ENOMEM;
	for (size_t i = 0; i < items(n); i++) {
		cfg->nrules++;
		push_idx(c, i);
		if ((r = load_rule(c, item_at(c, n, i), i)) < 0)
			return r;
		pop(c);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* the document                                                        */

/* The defaults of config.md, set before reading: a section given in part
 * keeps the defaults of the keys it leaves out. */
static int set_defaults(struct ids_config *cfg)
{
	static const char *const roles[] = {"operator",
					    "tenant_admin",
					    "manage_tenant_files",
					    "manage_tenant_templates",
					    "view_other_sessions",
					    "view_other_emails",
					    "view_operators",
					    "manage_campaigns",
					    "tag_ended_sessions",
					    NULL};
	static const char *const channels[] = {
	    "webchat",	"ip_telephony",	  "email",     "facebook_messenger",
	    "whatsapp", "apple_messages", "vkontakte", NULL};
	static const char *const groups[] = {"live", "offline", "email", NULL};
	int r = 0;
	cfg->database.migrate_auto = true;
	cfg->sync.interval = 15 * 60;
	cfg->sync.jitter = 30;
	cfg->sync.retry_min = 30;
	cfg->sync.retry_max = 15 * 60;
	cfg->sync.run_timeout = 30 * 60;
	cfg->sync.lease = 60;
	cfg->sync.workers = 1;
	cfg->sync.heartbeat = 60;
	cfg->sync.user_rate = 10;
	cfg->log.level = IDS_LOG_INFO;
	cfg->log.target = IDS_LOGT_AUTO;
	cfg->safety.max_deactivations = 500;
	cfg->safety.max_deactivation_percent = 10;
	cfg->safety.max_grant_removals_percent = 25;
	cfg->safety.hold_expiry = 86400;
	if (!(cfg->database.schema = strdup("idsync")))
		return -ENOMEM;
	for (size_t i = 0; roles[i] && r >= 0; i++)
		r = ids_strv_push(&cfg->catalog.roles, roles[i]);
	for (size_t i = 0; channels[i] && r >= 0; i++)
		r = ids_strv_push(&cfg->catalog.channels, channels[i]);
	for (size_t i = 0; groups[i] && r >= 0; i++)
		r = ids_strv_push(&cfg->catalog.channel_groups, groups[i]);
	return r;
}

static int load_root(struct ctx *c, yaml_node_t *root)
{
	/* the reading order (see the top of the file), not the file's order */
	static int (*const loaders[])(struct ctx *, yaml_node_t *) = {
	    load_security, load_log,	    load_database,   load_sync,	    load_safety, load_tenants,
	    load_catalog,  load_scim_block, load_connectors, load_licences, load_rules,	 load_metrics_block,
	};
	static const char *const order[] = {"security",	  "log",      "database", "sync",
					    "safety",	  "tenants",  "catalog",  "scim",
					    "connectors", "licences", "rules",	  "metrics"};
	struct map m;
	int r;
	if (root->type != YAML_MAPPING_NODE)
		return bad_value(c, root, NULL, "a mapping of sections (database, connectors, rules, ...)");
	if ((r = map_read(c, root, top_keys, NULL, &m)) < 0)
		return r;
	/* without a database or a connector there is nothing to sync: a
	 * mistake, not a configuration */
	if (!map_get(&m, "database"))
		return missing(c, &m, "database");
	if (!map_get(&m, "connectors"))
		return missing(c, &m, "connectors");
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		yaml_node_t *v = map_get(&m, order[i]);
		if (!v)
			continue;
		push_key(c, order[i]);
		if ((r = loaders[i](c, v)) < 0)
			return r;
		pop(c);
	}
	return 0;
}

/* A libyaml error as "FILE:LINE:COL: yaml: problem". */
static int yaml_fail(struct ctx *c, const yaml_parser_t *p, const char *yaml, size_t len)
{
	size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
	if (p->error == YAML_MEMORY_ERROR)
		return ids_error_set(c->err, -ENOMEM, "%s: out of memory", c->file);
	if (p->error == YAML_READER_ERROR) {
		/* the reader (encoding errors) reports a byte offset, not a mark */
		line = col = 1;
		for (size_t i = 0; i < p->problem_offset && i < len; i++, col++)
			if (yaml[i] == '\n')
				line++, col = 0;
	}
	return fail_pos(c, line, col, "yaml: %s", p->problem ? p->problem : "syntax error");
}

/* libyaml slows down with the square of the nesting depth: a file of
 * 100,000 "[" takes minutes to load (found by tests/integration/
 * t_badinput_config.sh).  No valid configuration is more than a few levels
 * deep, so a first pass over the parser's events refuses anything deeper
 * than YAML_DEPTH_MAX before the document is built; stopping there keeps
 * the cost linear.  Syntax errors come out of this pass as they would out
 * of the load. */
#define YAML_DEPTH_MAX 64

static int check_depth(struct ctx *c, const char *yaml, size_t len)
{
	yaml_parser_t p;
	yaml_event_t e;
	int depth = 0, r = 0;
	if (!yaml_parser_initialize(&p))
		return ids_error_set(c->err, -ENOMEM, "%s: out of memory", c->file);
	yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
	for (;;) {
		if (!yaml_parser_parse(&p, &e)) {
			r = yaml_fail(c, &p, yaml, len);
			break;
		}
		yaml_event_type_t t = e.type;
		if ((t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) &&
		    ++depth > YAML_DEPTH_MAX)
			r = fail_pos(c, e.start_mark.line + 1, e.start_mark.column + 1,
				     "yaml: nested more than %d levels deep", YAML_DEPTH_MAX);
		else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT)
			depth--;
		yaml_event_delete(&e);
		if (r < 0 || t == YAML_STREAM_END_EVENT)
			break;
	}
	yaml_parser_delete(&p);
	return r;
}

/* The one loader behind both entry points: parse, check, build.  Nothing
 * is returned unless all of it is valid: a half-valid config is no config. */
static int load(const char *file, const char *base_dir, const char *yaml, size_t len, struct ids_config **ret,
		struct ids_error *err)
{
	struct ids_config *cfg = calloc(1, sizeof(*cfg));
	struct ctx c = {.file = file, .base_dir = base_dir, .err = err, .cfg = cfg};
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	bool have_parser = false, have_doc = false, have_extra = false;
	yaml_node_t *root;
	int r;
	if (!cfg || !(cfg->path = strdup(file)) || set_defaults(cfg) < 0) {
		r = ids_error_set(err, -ENOMEM, "%s: out of memory", file);
		goto cleanup;
	}
	if ((r = check_depth(&c, yaml, len)) < 0)
		goto cleanup;
	cfg->digest = ids_hash64(yaml, len);
	if (!yaml_parser_initialize(&parser)) {
		r = ids_error_set(err, -ENOMEM, "%s: out of memory", file);
		goto cleanup;
	}
	have_parser = true;
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		r = yaml_fail(&c, &parser, yaml, len);
		goto cleanup;
	}
	have_doc = true;
	c.doc = &doc;
	if (!(root = yaml_document_get_root_node(&doc))) {
		r = fail_pos(&c, 1, 1,
			     "expected a mapping of sections (database, connectors, rules, ...), "
			     "got an empty file");
		goto cleanup;
	}
	/* a second document would be silently ignored by a one-document read */
	if (!yaml_parser_load(&parser, &extra)) {
		r = yaml_fail(&c, &parser, yaml, len);
		goto cleanup;
	}
	have_extra = true;
	if (yaml_document_get_root_node(&extra)) {
		r = fail_pos(&c, extra.start_mark.line + 1, extra.start_mark.column + 1,
			     "yaml: expected one document, found a second one");
		goto cleanup;
	}
	if ((r = load_root(&c, root)) < 0) {
		/* bare -ENOMEM returns from deep helpers still get a message */
		if (r == -ENOMEM && !(err && err->msg))
			ids_error_set(err, -ENOMEM, "%s: out of memory", file);
		goto cleanup;
	}
	*ret = cfg;
	cfg = NULL;
	r = 0;
cleanup:
	if (have_extra)
		yaml_document_delete(&extra);
	if (have_doc)
		yaml_document_delete(&doc);
	if (have_parser)
		yaml_parser_delete(&parser);
	ids_config_free(cfg);
	return r;
}

/* ------------------------------------------------------------------ */
/* public                                                              */

int ids_config_load_string(const char *name, const char *yaml, size_t len, struct ids_config **ret,
			   struct ids_error *err)
{
	return load(name, NULL, yaml, len, ret, err);
}

int ids_config_load(const char *path, struct ids_config **ret, struct ids_error *err)
{
	struct ids_buf b = {0};
	char *dir = NULL;
	const char *slash = strrchr(path, '/');
	int fd = -1, r;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		r = ids_error_set(err, IDS_E_CONFIG, "%s: cannot open: %s", path, strerror(errno));
		goto cleanup;
	}
	/* the whole file in memory: the parser wants it, and it is small */
	for (;;) {
		char chunk[8192];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = ids_error_set(err, IDS_E_CONFIG, "%s: cannot read: %s", path, strerror(errno));
			goto cleanup;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > CONFIG_MAX_SIZE) {
			r = ids_error_set(err, IDS_E_CONFIG,
					  "%s: larger than %u bytes: not a configuration file", path,
					  CONFIG_MAX_SIZE);
			goto cleanup;
		}
		if ((r = ids_buf_add(&b, chunk, (size_t)n)) < 0) {
			r = ids_error_set(err, r, "%s: out of memory", path);
			goto cleanup;
		}
	}
	/* relative file names in the config are relative to the config */
	if (slash && !(dir = strndup(path, slash == path ? 1 : (size_t)(slash - path)))) {
		r = ids_error_set(err, -ENOMEM, "%s: out of memory", path);
		goto cleanup;
	}
	r = load(path, dir, b.p ? b.p : "", b.len, ret, err);
cleanup:
	if (fd >= 0)
		close(fd);
	ids_buf_free(&b);
	free(dir);
	return r;
}

/* The per-type destructors: secrets are wiped (ids_secret_free), the
 * rest freed. */
static void ldap_free(struct ids_ldap_cfg *l)
{
	ids_strv_free(&l->uri);
	free(l->tls_ca_file);
	free(l->bind_dn);
	ids_secret_free(l->bind_password);
	free(l->bind_password_file);
	free(l->sasl_mech);
	free(l->users_base);
	free(l->users_filter);
	free(l->groups_base);
	free(l->groups_filter);
	free(l->member_attribute);
	free(l->disabled_filter);
}

static void entra_free(struct ids_entra_cfg *e)
{
	free(e->tenant);
	free(e->client_id);
	ids_secret_free(e->client_secret);
	free(e->client_secret_file);
	free(e->client_certificate_file);
	free(e->client_key_file);
	free(e->client_assertion_alg);
	free(e->login_endpoint);
	free(e->graph_endpoint);
	free(e->tls_ca_file);
	ids_strv_free(&e->groups);
}

static void google_free(struct ids_google_cfg *g)
{
	free(g->service_account_file);
	free(g->subject);
	free(g->customer);
	free(g->domain);
	free(g->token_endpoint);
	free(g->api_endpoint);
	free(g->tls_ca_file);
	ids_strv_free(&g->groups);
}

void ids_config_free(struct ids_config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->database.conninfo);
	ids_secret_free(c->database.password);
	free(c->database.schema);
	free(c->scim.listen);
	free(c->scim.tls_cert_file);
	free(c->scim.tls_key_file);
	free(c->metrics.listen);
	ids_strv_free(&c->catalog.roles);
	ids_strv_free(&c->catalog.channels);
	ids_strv_free(&c->catalog.channel_groups);
	for (size_t i = 0; i < c->nconnectors; i++) {
		struct ids_connector_cfg *cc = &c->connectors[i];
		free(cc->name);
		free(cc->company);
		for (size_t f = 0; f < 6; f++)
			free(cc->attr[f]);
		/* every type's struct is zeroed unless used: freeing all is safe */
		ldap_free(&cc->ldap);
		entra_free(&cc->entra);
		google_free(&cc->google);
		ids_secret_free(cc->scim.token);
		free(cc->scim.token_file);
	}
	free(c->connectors);
	for (size_t i = 0; i < c->nrules; i++)
		ids_rule_clear(&c->rules[i]);
	free(c->rules);
	ids_catalog_rules_clear(&c->platform);
	free(c);
}

const struct ids_connector_cfg *ids_config_connector(const struct ids_config *c, const char *name)
{
	for (size_t i = 0; c && name && i < c->nconnectors; i++)
		if (c->connectors[i].name && !strcmp(c->connectors[i].name, name))
			return &c->connectors[i];
	return NULL;
}

const char *ids_conn_type_name(enum ids_conn_type t)
{
	switch (t) {
	case IDS_CONN_LDAP: return "ldap";
	case IDS_CONN_ENTRA: return "entra";
	case IDS_CONN_GOOGLE: return "google";
	case IDS_CONN_SCIM: return "scim";
	}
	return "unknown";
}

int ids_parse_duration(const char *s, int *ret_seconds)
{
	/* units largest first, each at most once: "1h30m" but not "30m1h" or "1h1h" */
	static const struct {
		char unit;
		long mult;
	} units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
	long total = 0;
	size_t next = 0;
	if (!s || !*s)
		return -EINVAL;
	while (*s) {
		long v = 0;
		if (*s < '0' || *s > '9')
			return -EINVAL;
		for (; *s >= '0' && *s <= '9'; s++) {
			if (v > (INT_MAX - (*s - '0')) / 10)
				return -ERANGE;
			v = v * 10 + (*s - '0');
		}
		size_t u = next;
		while (u < 4 && units[u].unit != *s)
			u++;
		if (u == 4)
			return -EINVAL; /* no unit, an unknown one, or out of order */
		if (v > (INT_MAX - total) / units[u].mult)
			return -ERANGE;
		total += v * units[u].mult;
		next = u + 1;
		s++;
	}
	*ret_seconds = (int)total;
	return 0;
}
