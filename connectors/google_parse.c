/* google_parse.c — the pure half of the Google Workspace connector
 * (google_int.h): key file, error shape, attribute paths,
 * `fields=` and the Directory API page parsers.  Bodies are parsed with
 * jansson rejecting duplicate keys (two "suspended" keys would let either
 * reading win) and allowing NUL inside strings, so that one user's bad
 * value marks that user invalid in the builder instead of failing the run. */
#include "google_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ERRMSG_MAX 300 /* bytes of a server's message we keep: a log line, not a page */

const char *const ids_google_default_fields[6] = {
    "id", "primaryEmail", "primaryEmail", "name.givenName", "name.familyName", "name.fullName"};

/* Fields users.list always asks for: the defaults and the disabled flags.
 * Asked for even when attributes: maps the fields elsewhere, because a
 * user read without suspended/archived would look active. */
static const char *const base_user_fields[] = {
    "id", "primaryEmail", "name/givenName", "name/familyName", "name/fullName", "suspended", "archived",
    NULL};

/* Parses body as one JSON value.  The parser's own text is left out of the
 * message: it quotes the input near the error, and a body may be a token
 * answer. */
static json_t *load(const char *body, size_t len, const char *what, struct ids_error *err)
{
	json_error_t je;
	json_t *j =
	    json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (!j)
		ids_error_set(err, IDS_E_PROTOCOL, "%s: malformed JSON (line %d, column %d)", what, je.line,
			      je.column);
	return j;
}

/* A string member without NUL, or NULL (absent, null, or not such a
 * string: *ret_bad tells the last apart when given). */
static const char *str_member(const json_t *o, const char *key, bool *ret_bad)
{
	const json_t *v = json_object_get(o, key);
	bool bad = v && !json_is_null(v) &&
		   (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v));
	if (ret_bad)
		*ret_bad = bad;
	return v && json_is_string(v) && !bad ? json_string_value(v) : NULL;
}

/* ---------------- service account key ---------------- */

void ids_google_key_clear(struct ids_google_key *k)
{
	if (!k)
		return;
	free(k->client_email);
	ids_secret_free(k->private_key);
	free(k->private_key_id);
	free(k->token_uri);
	memset(k, 0, sizeof(*k));
}

int ids_google_key_parse(const char *json, size_t len, const char *path, struct ids_google_key *ret,
			 struct ids_error *err)
{
	struct ids_google_key k = {0};
	json_error_t je;
	bool bad;
	int r;

	/* jansson keeps its own copies of the strings, freed without a wipe:
	 * an accepted cost, the file's own bytes are wiped by the caller */
	json_t *j = json_loadb(json ? json : "", json ? len : 0, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j)) {
		r = j ? ids_error_set(err, IDS_E_CONFIG,
				      "%s: not a service account key (expected a JSON object)", path)
		      : ids_error_set(err, IDS_E_CONFIG,
				      "%s: not a service account key: malformed JSON (line %d, column %d)",
				      path, je.line, je.column);
		goto out;
	}
	const char *type = str_member(j, "type", &bad);
	if (bad || (type && strcmp(type, "service_account") != 0)) {
		r = ids_error_set(err, IDS_E_CONFIG,
				  "%s: \"type\" is not \"service_account\" (a key of another kind?)", path);
		goto out;
	}
	static const char *const required[] = {"client_email", "private_key", "private_key_id"};
	const char *v[3];
	for (size_t i = 0; i < 3; i++) {
		v[i] = str_member(j, required[i], NULL);
		if (!v[i] || !*v[i]) {
			r = ids_error_set(err, IDS_E_CONFIG,
					  "%s: no \"%s\" string in the service account key", path,
					  required[i]);
			goto out;
		}
	}
	/* a PEM private key: anything else cannot sign, and saying so here
	 * beats an OpenSSL error later */
	if (!strstr(v[1], "-----BEGIN ") || !strstr(v[1], "PRIVATE KEY-----")) {
		r = ids_error_set(err, IDS_E_CONFIG, "%s: \"private_key\" is not a PEM private key", path);
		goto out;
	}
	const char *uri = str_member(j, "token_uri", &bad);
	if (bad) {
		r = ids_error_set(err, IDS_E_CONFIG, "%s: \"token_uri\" is not a string", path);
		goto out;
	}
	k.private_key_len = strlen(v[1]);
	if (!(k.client_email = strdup(v[0])) || !(k.private_key = strdup(v[1])) ||
	    !(k.private_key_id = strdup(v[2])) || (uri && *uri && !(k.token_uri = strdup(uri)))) {
		r = -ENOMEM;
		goto out;
	}
	*ret = k;
	k = (struct ids_google_key){0};
	r = 0;
out:
	ids_google_key_clear(&k);
	json_decref(j);
	return r;
}

/* ---------------- error answers ---------------- */

/* Appends s[0..n) with control characters as '?', at most ERRMSG_MAX
 * bytes in all and cut on a character boundary: the text came from the
 * network and goes to the journal, where an escape sequence or a forged
 * newline must not arrive, and to sync_run.error, which takes only UTF-8. */
static int put_clean(struct ids_buf *b, const char *s, size_t n)
{
	int r = 0;
	n = ids_utf8_cut(s, n, b->len < ERRMSG_MAX ? ERRMSG_MAX - b->len : 0);
	for (size_t i = 0; i < n && r >= 0; i++) {
		unsigned char c = (unsigned char)s[i];
		r = ids_buf_putc(b, c < 0x20 || c == 0x7f ? '?' : (char)c);
	}
	return r;
}

int ids_google_error_message(const char *body, size_t len, char **ret)
{
	struct ids_buf b = {0};
	/* lenient on purpose (duplicates allowed): this body is only
	 * quoted in a message, never believed */
	json_t *j = body && len ? json_loadb(body, len, JSON_ALLOW_NUL, NULL) : NULL;
	const json_t *e = json_is_object(j) ? json_object_get(j, "error") : NULL;
	int r = 0;

	if (json_is_object(e)) {
		/* Google APIs: {"error":{"code","message","errors":[{"reason"}],"status"}} */
		const json_t *m = json_object_get(e, "message"), *errs = json_object_get(e, "errors");
		const json_t *reason = json_object_get(json_array_get(errs, 0), "reason");
		if (!json_is_string(reason))
			reason = json_object_get(e, "status");
		if (json_is_string(m))
			r = put_clean(&b, json_string_value(m), json_string_length(m));
		else
			r = ids_buf_puts(&b, "no message");
		if (r >= 0 && json_is_string(reason)) {
			r = ids_buf_puts(&b, " (");
			if (r >= 0)
				r = put_clean(&b, json_string_value(reason), json_string_length(reason));
			if (r >= 0)
				r = ids_buf_putc(&b, ')');
		}
	} else if (json_is_string(e)) {
		/* OAuth: {"error":"invalid_grant","error_description":"..."} */
		const json_t *d = json_object_get(j, "error_description");
		r = put_clean(&b, json_string_value(e), json_string_length(e));
		if (r >= 0 && json_is_string(d)) {
			r = ids_buf_puts(&b, ": ");
			if (r >= 0)
				r = put_clean(&b, json_string_value(d), json_string_length(d));
		}
	} else {
		/* an HTML error page or a proxy's text: its content says nothing
		 * an operator can act on, and may be large */
		r = ids_buf_puts(&b,
				 j ? "no error details (unexpected JSON)" : "no error details (not JSON)");
	}
	json_decref(j);
	if (r < 0) {
		ids_buf_free(&b);
		return r;
	}
	*ret = ids_buf_steal(&b);
	return 0;
}

bool ids_google_rate_limited(long status, const char *body, size_t len)
{
	if (status == 429)
		return true;
	/* Google says "slow down" with 403 as well as 429, and only the
	 * reason tells it from "no permission": the one must be waited out,
	 * the other must fail the run at once */
	if (status != 403 || !body || !len)
		return false;
	json_t *j = json_loadb(body, len, 0, NULL);
	const json_t *errs = json_object_get(json_object_get(j, "error"), "errors");
	bool hit = false;
	size_t i;
	const json_t *e;
	json_array_foreach(errs, i, e)
	{
		const char *reason = json_string_value(json_object_get(e, "reason"));
		if (reason &&
		    (!strcmp(reason, "rateLimitExceeded") || !strcmp(reason, "userRateLimitExceeded")))
			hit = true;
	}
	json_decref(j);
	return hit;
}

/* ---------------- attribute paths ---------------- */

/* The characters of a path segment: what Google's field names and
 * custom schema names use.  Anything else (a '/', a '(' or ',') would
 * change the meaning of the `fields=` selector built from the path. */
static bool seg_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-';
}

bool ids_google_path_valid(const char *path)
{
	size_t segs = 1, seglen = 0;
	if (!path || !*path)
		return false;
	for (const char *p = path; *p; p++) {
		if (*p == '.') {
			if (seglen == 0 || ++segs > IDS_GOOGLE_PATH_MAX_SEGMENTS)
				return false;
			seglen = 0;
		} else if (seg_char(*p)) {
			seglen++;
		} else {
			return false;
		}
	}
	return seglen > 0;
}

/* The array index a segment spells, or -1 when it is not all digits.
 * At most 9 digits: no overflow, and no array is that long. */
static long seg_index(const char *s, size_t n)
{
	long v = 0;
	if (n == 0 || n > 9)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

typedef int (*value_fn)(void *ud, const char *v, size_t n);

/* The values of the node a path ended on.  `nested`: v is an element of
 * an array already, whose own arrays and objects give nothing (a path
 * names values, not whole trees). */
static int emit(const json_t *v, bool nested, value_fn fn, void *ud)
{
	char num[64];
	int k;
	switch (json_typeof(v)) {
	case JSON_STRING: return fn(ud, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		k = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return fn(ud, num, (size_t)k);
	case JSON_REAL:
		/* %.17g: enough digits that the value reads back the same */
		k = snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return fn(ud, num, (size_t)k);
	case JSON_TRUE: return fn(ud, "true", 4);
	case JSON_FALSE: return fn(ud, "false", 5);
	case JSON_ARRAY:
		if (nested)
			return 0;
		for (size_t i = 0; i < json_array_size(v); i++) {
			int r = emit(json_array_get(v, i), true, fn, ud);
			if (r < 0)
				return r;
		}
		return 0;
	case JSON_OBJECT: {
		/* a multi-valued custom schema field's entry */
		const json_t *inner = json_object_get(v, "value");
		return inner && !json_is_object(inner) && !json_is_array(inner) ? emit(inner, true, fn, ud)
										: 0;
	}
	case JSON_NULL: return 0;
	}
	return 0;
}

/* Walks the rest of a path (p, at a segment start, or at its end) from
 * node.  `fanned`: node is an element an earlier name segment spread over,
 * so an array here is not spread again (bounds the work to the tree). */
static int walk(const json_t *node, const char *p, bool fanned, value_fn fn, void *ud)
{
	if (!node)
		return 0;
	if (!*p)
		return emit(node, false, fn, ud);
	const char *dot = strchr(p, '.');
	size_t n = dot ? (size_t)(dot - p) : strlen(p);
	const char *rest = dot ? dot + 1 : p + n;
	if (json_is_object(node))
		return walk(json_object_getn(node, p, n), rest, false, fn, ud);
	if (!json_is_array(node))
		return 0;
	long idx = seg_index(p, n);
	if (idx >= 0)
		return walk(json_array_get(node, (size_t)idx), rest, false, fn, ud);
	if (fanned)
		return 0;
	/* a name applied to an array: to each of its objects */
	for (size_t i = 0; i < json_array_size(node); i++) {
		const json_t *el = json_array_get(node, i);
		if (!json_is_object(el))
			continue;
		int r = walk(json_object_getn(el, p, n), rest, false, fn, ud);
		if (r < 0)
			return r;
	}
	return 0;
}

int ids_google_path_values(const json_t *root, const char *path, value_fn fn, void *ud)
{
	if (!ids_google_path_valid(path) || !fn)
		return -EINVAL;
	return walk(root, path, false, fn, ud);
}

int ids_google_fields_path(struct ids_buf *b, const char *path)
{
	bool first = true;
	const char *p = path;
	int r = 0;
	while (r >= 0 && p && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		/* `fields` selects inside every element of an array anyway */
		if (seg_index(p, n) < 0) {
			if (!first)
				r = ids_buf_putc(b, '/');
			if (r >= 0)
				r = ids_buf_add(b, p, n);
			first = false;
		}
		p = dot ? dot + 1 : NULL;
	}
	return r;
}

/* ---------------- user mapping ---------------- */

const char *ids_google_umap_check(const struct ids_google_umap *m)
{
	for (int f = 0; f < 6; f++)
		if (m->field[f] && !ids_google_path_valid(m->field[f]))
			return m->field[f];
	for (size_t i = 0; m->attrs && i < m->attrs->n; i++)
		if (!ids_google_path_valid(m->attrs->v[i]))
			return m->attrs->v[i];
	return NULL;
}

/* Adds one path's selector to the list sel (deduplicated). */
static int add_selector(struct ids_strv *sel, const char *path)
{
	struct ids_buf b = {0};
	int r = ids_google_fields_path(&b, path);
	if (r >= 0 && b.len && !ids_strv_contains(sel, b.p, false))
		r = ids_strv_push(sel, b.p);
	ids_buf_free(&b);
	return r;
}

/* Custom schemas come only with projection=full, which makes every page
 * larger: it is asked for only when a path needs one. */
static bool is_custom_schema(const char *path)
{
	return path && strncmp(path, "customSchemas", 13) == 0 && (path[13] == '.' || path[13] == '\0');
}

int ids_google_users_fields(const struct ids_google_umap *m, struct ids_buf *b, bool *ret_full)
{
	struct ids_strv sel = {0};
	bool full = false;
	int r = 0;

	if (ids_google_umap_check(m))
		return -EINVAL;
	/* deduplicated: a mapped field that is also a rule attribute is
	 * selected once, so that the selector stays the same whichever way
	 * the configuration names a field */
	for (size_t i = 0; base_user_fields[i] && r >= 0; i++)
		r = ids_strv_push(&sel, base_user_fields[i]);
	for (int f = 0; f < 6 && r >= 0; f++)
		if (m->field[f]) {
			r = add_selector(&sel, m->field[f]);
			full |= is_custom_schema(m->field[f]);
		}
	for (size_t i = 0; m->attrs && i < m->attrs->n && r >= 0; i++) {
		r = add_selector(&sel, m->attrs->v[i]);
		full |= is_custom_schema(m->attrs->v[i]);
	}
	if (r >= 0)
		r = ids_buf_puts(b, "nextPageToken,users(");
	for (size_t i = 0; i < sel.n && r >= 0; i++) {
		if (i)
			r = ids_buf_putc(b, ',');
		if (r >= 0)
			r = ids_buf_puts(b, sel.v[i]);
	}
	if (r >= 0)
		r = ids_buf_putc(b, ')');
	ids_strv_free(&sel);
	if (r >= 0)
		*ret_full = full;
	return r < 0 ? r : 0;
}

/* ---------------- pages ---------------- */

/* Leaves pg reusable for the next page (the token is the only thing a
 * page hands on). */
void ids_google_page_clear(struct ids_google_page *pg)
{
	if (!pg)
		return;
	free(pg->next);
	pg->next = NULL;
	pg->items = 0;
}

/* Opens a page: its object, the array `key` (absent or null: empty, as
 * Google leaves empty lists out) and nextPageToken (*ret_next new, NULL on
 * the last page). */
static int open_page(const char *body, size_t len, const char *what, const char *key, json_t **ret_root,
		     const json_t **ret_list, char **ret_next, struct ids_error *err)
{
	json_t *j = load(body, len, what, err);
	bool bad;
	if (!j)
		return IDS_E_PROTOCOL;
	if (!json_is_object(j)) {
		json_decref(j);
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: not a JSON object", what);
	}
	const json_t *list = json_object_get(j, key);
	/* Google leaves an empty list out of the page altogether, and a page
	 * may be empty with a token still (reliability 9): not the end */
	if (json_is_null(list))
		list = NULL;
	if (list && !json_is_array(list)) {
		json_decref(j);
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: \"%s\" is not an array", what, key);
	}
	const char *next = str_member(j, "nextPageToken", &bad);
	if (bad) {
		json_decref(j);
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: nextPageToken is not a string", what);
	}
	/* an empty token cannot be asked for: it ends the listing like none */
	char *copy = next && *next ? strdup(next) : NULL;
	if (next && *next && !copy) {
		json_decref(j);
		return -ENOMEM;
	}
	*ret_root = j;
	*ret_list = list;
	*ret_next = copy;
	return 0;
}

struct field_cb {
	struct ids_snapshot *s;
	enum ids_field f;
	const char *attr;
};

/* The builder keeps a field's first value: later ones are no-ops. */
static int on_field(void *ud, const char *v, size_t n)
{
	struct field_cb *c = ud;
	return ids_snapshot_user_set(c->s, c->f, v, n);
}

static int on_attr(void *ud, const char *v, size_t n)
{
	struct field_cb *c = ud;
	return ids_snapshot_user_attr(c->s, c->attr, v, n);
}

/* A boolean member: *ret true/false, absent or null = false (Google
 * leaves false flags out).  Another type is an answer we do not
 * understand: guessing could re-activate a suspended user. */
static int bool_member(const json_t *o, const char *key, bool *ret)
{
	const json_t *v = json_object_get(o, key);
	if (v && !json_is_boolean(v) && !json_is_null(v))
		return -EINVAL;
	*ret = json_is_true(v);
	return 0;
}

static int one_user(const json_t *u, size_t i, const struct ids_google_umap *m, struct ids_snapshot *s,
		    struct ids_error *err)
{
	bool susp, arch;
	int r;
	if (!json_is_object(u))
		return ids_error_set(err, IDS_E_PROTOCOL, "users page: entry %zu is not an object", i);
	if (bool_member(u, "suspended", &susp) < 0 || bool_member(u, "archived", &arch) < 0)
		return ids_error_set(err, IDS_E_PROTOCOL,
				     "users page: entry %zu: suspended/archived is not a boolean", i);
	if ((r = ids_snapshot_user_begin(s)) < 0)
		return r;
	/* a path giving several values (emails.address) sets the field to
	 * the first in document order (the builder ignores the rest), so the
	 * same answer always gives the same user */
	for (int f = 0; f < 6; f++) {
		struct field_cb c = {s, (enum ids_field)f, NULL};
		if (m->field[f] && (r = ids_google_path_values(u, m->field[f], on_field, &c)) < 0)
			return r;
	}
	for (size_t a = 0; m->attrs && a < m->attrs->n; a++) {
		struct field_cb c = {s, IDS_F__COUNT, m->attrs->v[a]};
		if ((r = ids_google_path_values(u, m->attrs->v[a], on_attr, &c)) < 0)
			return r;
	}
	if ((r = ids_snapshot_user_disabled(s, susp || arch)) < 0)
		return r;
	return ids_snapshot_user_end(s);
}

int ids_google_parse_users(const char *body, size_t len, const struct ids_google_umap *m,
			   struct ids_snapshot *s, struct ids_google_page *ret, struct ids_error *err)
{
	json_t *root = NULL;
	const json_t *list;
	char *next = NULL;
	int r;

	if (ids_google_umap_check(m))
		return ids_error_set(err, -EINVAL, "invalid attribute path \"%s\"", ids_google_umap_check(m));
	if ((r = open_page(body, len, "users page", "users", &root, &list, &next, err)) < 0)
		return r;
	size_t n = json_array_size(list);
	for (size_t i = 0; i < n; i++)
		if ((r = one_user(json_array_get(list, i), i, m, s, err)) < 0)
			goto out;
	ret->next = next;
	ret->items = n;
	next = NULL;
	r = 0;
out:
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "users page: %s", ids_strerror(r));
	free(next);
	json_decref(root);
	return r;
}

int ids_google_parse_user(const char *body, size_t len, const struct ids_google_umap *m,
			  struct ids_snapshot *s, char **ret_id, struct ids_error *err)
{
	json_t *root;
	int r;
	if (ids_google_umap_check(m))
		return ids_error_set(err, -EINVAL, "invalid attribute path \"%s\"", ids_google_umap_check(m));
	if (!(root = load(body, len, "user", err)))
		return IDS_E_PROTOCOL;
	/* the id is what the groups are asked with: it must be usable */
	const char *id = json_is_object(root) ? str_member(root, "id", NULL) : NULL;
	if (!id || !*id)
		r = ids_error_set(err, IDS_E_PROTOCOL, "user: not an object with a string id");
	else if ((r = one_user(root, 0, m, s, err)) >= 0 && !(*ret_id = strdup(id)))
		r = -ENOMEM;
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "user: %s", ids_strerror(r));
	json_decref(root);
	return r;
}

/* true when group g is named by a scope entry; marks the entries that do.
 * The id compares exactly (an opaque key, copied from the console); e-mails
 * and names as operators type them, ASCII case-insensitively. */
static bool in_scope(const struct ids_strv *scope, bool *matched, const char *id, const char *name,
		     const char *email)
{
	bool hit = false;
	if (!scope || scope->n == 0)
		return true;
	for (size_t i = 0; i < scope->n; i++) {
		const char *e = scope->v[i];
		if (strcmp(e, id) == 0 || (email && strcasecmp(e, email) == 0) ||
		    (name && strcasecmp(e, name) == 0)) {
			hit = true;
			if (matched)
				matched[i] = true;
		}
	}
	return hit;
}

/* A group field, when the group has it: "" from Google means "none". */
static int gset(struct ids_snapshot *s, enum ids_field f, const char *v)
{
	return v && *v ? ids_snapshot_group_set(s, f, v, strlen(v)) : 0;
}

/* A groups page's entry, its strings borrowed from the page. */
struct gentry {
	const char *id, *name, *email;
};

static int group_entry(const json_t *g, size_t i, struct gentry *e, struct ids_error *err)
{
	bool b1 = false, b2 = false;
	e->id = json_is_object(g) ? str_member(g, "id", NULL) : NULL;
	e->name = e->id ? str_member(g, "name", &b1) : NULL;
	e->email = e->id ? str_member(g, "email", &b2) : NULL;
	/* a group we cannot name cannot be read: the page is wrong */
	if (!e->id || !*e->id || b1 || b2)
		return ids_error_set(err, IDS_E_PROTOCOL,
				     "groups page: entry %zu has no id or a wrongly typed field", i);
	return 0;
}

static int add_group(struct ids_snapshot *s, const struct gentry *e)
{
	int r;
	if ((r = ids_snapshot_group_begin(s)) < 0 || (r = gset(s, IDS_F_EXTERNAL_ID, e->id)) < 0 ||
	    (r = gset(s, IDS_F_USERNAME, e->name)) < 0 || (r = gset(s, IDS_F_EMAIL, e->email)) < 0)
		return r;
	return ids_snapshot_group_end(s);
}

int ids_google_parse_groups(const char *body, size_t len, const struct ids_strv *scope, bool *matched,
			    struct ids_snapshot *s, struct ids_strv *ids, struct ids_google_page *ret,
			    struct ids_error *err)
{
	json_t *root = NULL;
	const json_t *list;
	char *next = NULL;
	int r;

	if ((r = open_page(body, len, "groups page", "groups", &root, &list, &next, err)) < 0)
		return r;
	size_t n = json_array_size(list);
	for (size_t i = 0; i < n; i++) {
		struct gentry e;
		if ((r = group_entry(json_array_get(list, i), i, &e, err)) < 0)
			goto out;
		if (!in_scope(scope, matched, e.id, e.name, e.email))
			continue;
		if ((r = add_group(s, &e)) < 0 || (r = ids_strv_push(ids, e.id)) < 0)
			goto out;
	}
	ret->next = next;
	ret->items = n;
	next = NULL;
	r = 0;
out:
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "groups page: %s", ids_strerror(r));
	free(next);
	json_decref(root);
	return r;
}

int ids_google_parse_user_groups(const char *body, size_t len, const struct ids_strv *scope,
				 const char *user_id, struct ids_snapshot *s, struct ids_strv *seen,
				 struct ids_strv *walk, struct ids_google_page *ret, struct ids_error *err)
{
	json_t *root = NULL;
	const json_t *list;
	char *next = NULL;
	int r;

	if ((r = open_page(body, len, "groups page", "groups", &root, &list, &next, err)) < 0)
		return r;
	size_t n = json_array_size(list);
	for (size_t i = 0; i < n; i++) {
		struct gentry e;
		if ((r = group_entry(json_array_get(list, i), i, &e, err)) < 0)
			goto out;
		/* reached twice (a diamond, a cycle): once is enough */
		if (ids_strv_contains(seen, e.id, false))
			continue;
		if ((r = ids_strv_push(seen, e.id)) < 0 ||
		    (r = ids_strv_push(walk, e.email && *e.email ? e.email : e.id)) < 0)
			goto out;
		if (in_scope(scope, NULL, e.id, e.name, e.email) &&
		    ((r = add_group(s, &e)) < 0 ||
		     (r = ids_snapshot_member(s, e.id, IDS_REF_ID, user_id, strlen(user_id))) < 0))
			goto out;
	}
	ret->next = next;
	ret->items = n;
	next = NULL;
	r = 0;
out:
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "groups page: %s", ids_strerror(r));
	free(next);
	json_decref(root);
	return r;
}

int ids_google_parse_members(const char *body, size_t len, const char *group_id, struct ids_snapshot *s,
			     struct ids_google_page *ret, struct ids_error *err)
{
	json_t *root = NULL;
	const json_t *list;
	char *next = NULL;
	int r;

	if ((r = open_page(body, len, "members page", "members", &root, &list, &next, err)) < 0)
		return r;
	size_t n = json_array_size(list);
	for (size_t i = 0; i < n; i++) {
		const json_t *mem = json_array_get(list, i);
		bool b1 = false, b2 = false;
		const char *type = json_is_object(mem) ? str_member(mem, "type", &b1) : NULL;
		const char *id = json_is_object(mem) ? str_member(mem, "id", &b2) : NULL;
		if (!json_is_object(mem) || b1 || b2) {
			r = ids_error_set(err, IDS_E_PROTOCOL,
					  "members page: entry %zu is not a member object", i);
			goto out;
		}
		/* nested groups come expanded (includeDerivedMembership): their
		 * own entry is not a user's membership */
		if (!type || strcmp(type, "USER") != 0 || !id || !*id)
			continue;
		if ((r = ids_snapshot_member(s, group_id, IDS_REF_ID, id, strlen(id))) < 0)
			goto out;
	}
	ret->next = next;
	ret->items = n;
	next = NULL;
	r = 0;
out:
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "members page: %s", ids_strerror(r));
	free(next);
	json_decref(root);
	return r;
}
