/* graph_parse.c — Microsoft Graph pages to snapshot builder calls (graph.h).
 *
 * Pure: a body in, builder calls out, nothing else.  jansson parses each
 * page whole: a page is at most 999 objects, so memory is bounded by the
 * page size, and the caller frees the body before walking the tree. */
#include "ids/graph.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/http.h"

#define MAX_ERROR_TEXT 1000 /* bytes of a server's error message kept for the log */

/* NUL inside strings is allowed so that one user's odd value reaches the
 * builder (which marks that user invalid) instead of failing the page;
 * duplicate keys are refused: which one would Graph have meant? */
#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

void ids_graph_page_clear(struct ids_graph_page *p)
{
	if (!p)
		return;
	free(p->next_link);
	memset(p, 0, sizeof(*p));
}

/* ---------------- helpers ---------------- */

/* The member `name` of object o, matched exactly first (Graph's own
 * camelCase) and then case-insensitively (the config's spelling). */
static json_t *get_ci(json_t *o, const char *name, size_t n)
{
	const char *k;
	json_t *v;
	if (!json_is_object(o))
		return NULL;
	json_object_foreach(o, k, v)
	{
		if (strlen(k) == n && memcmp(k, name, n) == 0)
			return v;
	}
	json_object_foreach(o, k, v)
	{
		if (strlen(k) == n && strncasecmp(k, name, n) == 0)
			return v;
	}
	return NULL;
}

/* The value at `path` ("mail", or "onPremisesExtensionAttributes.
 * extensionAttribute1"), or NULL when any step is missing. */
static json_t *get_path(json_t *o, const char *path)
{
	const char *p = path;
	for (;;) {
		size_t n = strcspn(p, ".");
		o = get_ci(o, p, n);
		if (!o || !p[n])
			return o;
		p += n + 1;
	}
}

/* What is wrong with a body jansson refused, in words of our own: its
 * je.text quotes up to 20 bytes of the input near the error, and those
 * may be part of a token answer, or bytes that are not UTF-8 (the message
 * ends up in the log and in sync_run.error). */
static const char *json_problem(const json_error_t *je)
{
	switch (json_error_code(je)) {
	case json_error_premature_end_of_input: return "the body ends too early";
	case json_error_end_of_input_expected: return "more text after the JSON value";
	case json_error_invalid_utf8: return "not UTF-8";
	case json_error_stack_overflow: return "nested too deeply";
	case json_error_duplicate_key: return "duplicate key";
	case json_error_null_byte_in_key: return "NUL byte in a key";
	case json_error_numeric_overflow: return "number out of range";
	default: return "invalid syntax";
	}
}

/* Parses body into *ret: a JSON object, else IDS_E_PROTOCOL. */
static int load(const char *body, size_t len, const char *what, json_t **ret, struct ids_error *err)
{
	json_error_t je;
	json_t *root = json_loadb(body, len, LOAD_FLAGS, &je);
	if (!root) {
		if (json_error_code(&je) == json_error_out_of_memory)
			return ids_error_set(err, -ENOMEM, "out of memory");
		if (!len)
			return ids_error_set(err, IDS_E_PROTOCOL, "%s: not JSON: the body is empty", what);
		/* the start of an HTML page says more than "invalid syntax" */
		bool html = body[0] == '<' || (len > 1 && body[0] == ' ' && body[1] == '<');
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: not JSON%s: %s (line %d, column %d)", what,
				     html ? " (an HTML page)" : "", json_problem(&je), je.line, je.column);
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: expected a JSON object", what);
	}
	*ret = root;
	return 0;
}

/* The `value` array and @odata.nextLink of a collection page. */
static int page_of(json_t *root, const char *what, json_t **ret_value, struct ids_graph_page *page,
		   struct ids_error *err)
{
	json_t *value = json_object_get(root, "value");
	if (!json_is_array(value))
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: %s", what,
				     value ? "`value` is not an array" : "no `value` array");
	/* absent and null both mean "last page"; anything else is a server bug
	 * that must not silently end the listing early */
	json_t *next = json_object_get(root, "@odata.nextLink");
	if (next && !json_is_null(next) && !json_is_string(next))
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: @odata.nextLink is not a string", what);
	page->count = json_array_size(value);
	page->next_link = NULL;
	if (json_is_string(next)) {
		if (!(page->next_link = strndup(json_string_value(next), json_string_length(next))))
			return ids_error_set(err, -ENOMEM, "out of memory");
		/* a NUL would cut the URL we request short of the one Graph gave */
		if (strlen(page->next_link) != json_string_length(next)) {
			free(page->next_link);
			page->next_link = NULL;
			return ids_error_set(err, IDS_E_PROTOCOL, "%s: @odata.nextLink contains a NUL byte",
					     what);
		}
	}
	*ret_value = value;
	return 0;
}

/* Builder failures are resource errors (ENOMEM, E2BIG), never the page's fault. */
static int oom(struct ids_error *err, int r)
{
	return ids_error_set(err, r, "%s", r == -ENOMEM ? "out of memory" : ids_strerror(r));
}

/* ---------------- users ---------------- */

/* The top-level part of a property path, for $select. */
static size_t top_len(const char *path)
{
	return strcspn(path, ".");
}

/* Appends name[0..n) to the select list unless it is there already. */
static int select_add(struct ids_buf *b, struct ids_strv *seen, const char *name, size_t n)
{
	char *top = strndup(name, n);
	int r = 0;
	if (!top)
		return -ENOMEM;
	/* Graph refuses nothing for a repeated name, but a repeated name makes
	 * the URL longer for nothing; names compare case-insensitively as on Graph */
	if (n && !ids_strv_contains(seen, top, true)) {
		if ((r = ids_strv_push(seen, top)) >= 0 && (seen->n == 1 || (r = ids_buf_putc(b, ',')) >= 0))
			r = ids_http_urlencode(b, top);
	}
	free(top);
	return r;
}

int ids_graph_user_select(struct ids_buf *b, const struct ids_graph_user_map *m)
{
	/* id and accountEnabled always: without accountEnabled every user
	 * would look enabled (Graph's default $select leaves it out) */
	struct ids_strv seen = {0};
	int r = select_add(b, &seen, "id", 2);
	if (r >= 0)
		r = select_add(b, &seen, "accountEnabled", 14);
	for (int f = 0; r >= 0 && f <= IDS_F_DISPLAY_NAME; f++)
		if (m->attr[f])
			r = select_add(b, &seen, m->attr[f], top_len(m->attr[f]));
	for (size_t i = 0; r >= 0 && m->rule_attrs && i < m->rule_attrs->n; i++)
		r = select_add(b, &seen, m->rule_attrs->v[i], top_len(m->rule_attrs->v[i]));
	ids_strv_free(&seen);
	return r;
}

/* One value of a rule attribute as text: strings as they are, booleans
 * and numbers as JSON writes them; anything else has no text. */
static int attr_value(struct ids_snapshot *s, const char *name, json_t *v)
{
	char num[64];
	switch (json_typeof(v)) {
	case JSON_STRING: return ids_snapshot_user_attr(s, name, json_string_value(v), json_string_length(v));
	case JSON_TRUE: return ids_snapshot_user_attr(s, name, "true", 4);
	case JSON_FALSE: return ids_snapshot_user_attr(s, name, "false", 5);
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return ids_snapshot_user_attr(s, name, num, strlen(num));
	case JSON_REAL:
		snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return ids_snapshot_user_attr(s, name, num, strlen(num));
	default: return 0;
	}
}

static const char *const field_names[] = {"external_id", "username",  "email",
					  "first_name",	 "last_name", "display_name"};

static int one_user(json_t *u, size_t i, const struct ids_graph_user_map *m, struct ids_snapshot *s,
		    struct ids_error *err)
{
	int r;
	if (!json_is_object(u))
		return ids_error_set(err, IDS_E_PROTOCOL, "users: value[%zu] is not an object", i);
	json_t *id = json_object_get(u, "id");
	if (id && !json_is_string(id))
		return ids_error_set(err, IDS_E_PROTOCOL, "users: value[%zu].id is not a string", i);
	json_t *en = json_object_get(u, "accountEnabled");
	if (en && !json_is_boolean(en) && !json_is_null(en))
		return ids_error_set(err, IDS_E_PROTOCOL, "users: value[%zu].accountEnabled is not a boolean",
				     i);

	/* the types are checked before the record is opened, so that a bad
	 * page fails before anything half-built reaches the builder */
	if ((r = ids_snapshot_user_begin(s)) < 0)
		return oom(err, r);
	for (int f = 0; f <= IDS_F_DISPLAY_NAME; f++) {
		json_t *v = m->attr[f] ? get_path(u, m->attr[f]) : NULL;
		if (!v || json_is_null(v))
			continue; /* null: Graph's way of saying "not set" */
		if (!json_is_string(v))
			return ids_error_set(err, IDS_E_PROTOCOL, "users: value[%zu].%s (%s) is not a string",
					     i, m->attr[f], field_names[f]);
		if ((r = ids_snapshot_user_set(s, (enum ids_field)f, json_string_value(v),
					       json_string_length(v))) < 0)
			return oom(err, r);
	}
	/* null accountEnabled is not "disabled": only an explicit false is */
	if (json_is_false(en) && (r = ids_snapshot_user_disabled(s, true)) < 0)
		return oom(err, r);
	for (size_t k = 0; m->rule_attrs && k < m->rule_attrs->n; k++) {
		const char *name = m->rule_attrs->v[k];
		json_t *v = get_path(u, name);
		/* multi-valued properties (proxyAddresses, otherMails) give every
		 * value, in Graph's order, as LDAP multi-valued attributes do */
		if (json_is_array(v)) {
			size_t j;
			json_t *e;
			json_array_foreach(v, j, e)
			{
				if ((r = attr_value(s, name, e)) < 0)
					return oom(err, r);
			}
		} else if (v && (r = attr_value(s, name, v)) < 0) {
			return oom(err, r);
		}
	}
	if ((r = ids_snapshot_user_end(s)) < 0)
		return oom(err, r);
	return 0;
}

int ids_graph_parse_users(const char *body, size_t len, const struct ids_graph_user_map *m,
			  struct ids_snapshot *s, struct ids_graph_page *ret, struct ids_error *err)
{
	json_t *root = NULL, *value, *u;
	struct ids_graph_page page = {0};
	size_t i;
	int r;
	if ((r = load(body, len, "users", &root, err)) < 0 ||
	    (r = page_of(root, "users", &value, &page, err)) < 0)
		goto out;
	json_array_foreach(value, i, u)
	{
		if ((r = one_user(u, i, m, s, err)) < 0)
			goto out;
	}
	*ret = page;
	page.next_link = NULL;
	r = 0;
out:
	ids_graph_page_clear(&page);
	json_decref(root);
	return r;
}

int ids_graph_parse_user(const char *body, size_t len, const struct ids_graph_user_map *m,
			 struct ids_snapshot *s, char **ret_id, struct ids_error *err)
{
	json_t *root = NULL;
	int r = load(body, len, "user", &root, err);
	if (r < 0)
		return r;
	/* the id is what the memberOf request is built from: it must be usable */
	json_t *id = json_object_get(root, "id");
	if (!json_is_string(id) || !json_string_length(id) ||
	    strlen(json_string_value(id)) != json_string_length(id)) {
		r = ids_error_set(err, IDS_E_PROTOCOL, "user: id is missing or not a string");
		goto out;
	}
	if ((r = one_user(root, 0, m, s, err)) < 0)
		goto out;
	if (!(*ret_id = strdup(json_string_value(id))))
		r = oom(err, -ENOMEM);
out:
	json_decref(root);
	return r;
}

int ids_graph_parse_ids(const char *body, size_t len, struct ids_strv *ids, struct ids_graph_page *ret,
			struct ids_error *err)
{
	json_t *root = NULL, *value, *o;
	struct ids_graph_page page = {0};
	size_t i;
	int r;
	if ((r = load(body, len, "users", &root, err)) < 0 ||
	    (r = page_of(root, "users", &value, &page, err)) < 0)
		goto out;
	json_array_foreach(value, i, o)
	{
		json_t *id = json_object_get(o, "id");
		if (!json_is_string(id) || strlen(json_string_value(id)) != json_string_length(id)) {
			r = ids_error_set(err, IDS_E_PROTOCOL, "users: value[%zu] has no string id", i);
			goto out;
		}
		if ((r = ids_strv_push(ids, json_string_value(id))) < 0) {
			oom(err, r);
			goto out;
		}
	}
	*ret = page;
	page.next_link = NULL;
	r = 0;
out:
	ids_graph_page_clear(&page);
	json_decref(root);
	return r;
}

/* ---------------- groups and members ---------------- */

/* The index in scope of the entry naming this group, or -1.  NULL/empty
 * scope: every group, index 0. */
static long in_scope(const struct ids_strv *scope, const char *id, const char *name)
{
	if (!scope || !scope->n)
		return 0;
	/* ids compare case-insensitively too: GUIDs are written either way */
	for (size_t i = 0; i < scope->n; i++)
		if (!strcasecmp(scope->v[i], id) || (name && !strcasecmp(scope->v[i], name)))
			return (long)i;
	return -1;
}

/* A group property that must be a string or null; *ret NULL when null. */
static int opt_string(json_t *g, const char *key, size_t i, json_t **ret, struct ids_error *err)
{
	json_t *v = json_object_get(g, key);
	if (v && !json_is_string(v) && !json_is_null(v))
		return ids_error_set(err, IDS_E_PROTOCOL, "groups: value[%zu].%s is not a string", i, key);
	*ret = json_is_string(v) ? v : NULL;
	return 0;
}

int ids_graph_parse_groups(const char *body, size_t len, const struct ids_strv *scope, struct ids_snapshot *s,
			   struct ids_strv *ids, bool *matched, struct ids_graph_page *ret,
			   struct ids_error *err)
{
	json_t *root = NULL, *value, *g;
	struct ids_graph_page page = {0};
	size_t i;
	int r;
	if ((r = load(body, len, "groups", &root, err)) < 0 ||
	    (r = page_of(root, "groups", &value, &page, err)) < 0)
		goto out;
	json_array_foreach(value, i, g)
	{
		/* NULL before opt_string: GCC -O2 cannot see that its error
		 * path (ids_error_set's return) is always negative */
		json_t *id, *name = NULL, *mail = NULL;
		if (!json_is_object(g)) {
			r = ids_error_set(err, IDS_E_PROTOCOL, "groups: value[%zu] is not an object", i);
			goto out;
		}
		id = json_object_get(g, "id");
		/* the id is what the members request is built from: it must be usable */
		if (!json_is_string(id) || !json_string_length(id) ||
		    strlen(json_string_value(id)) != json_string_length(id)) {
			r = ids_error_set(err, IDS_E_PROTOCOL,
					  "groups: value[%zu].id is missing or not a string", i);
			goto out;
		}
		if ((r = opt_string(g, "displayName", i, &name, err)) < 0 ||
		    (r = opt_string(g, "mail", i, &mail, err)) < 0)
			goto out;
		long k = in_scope(scope, json_string_value(id), name ? json_string_value(name) : NULL);
		if (k < 0)
			continue;
		if (matched && scope && scope->n)
			matched[k] = true;
		if ((r = ids_snapshot_group_begin(s)) < 0 ||
		    (r = ids_snapshot_group_set(s, IDS_F_EXTERNAL_ID, json_string_value(id),
						json_string_length(id))) < 0 ||
		    (name && (r = ids_snapshot_group_set(s, IDS_F_USERNAME, json_string_value(name),
							 json_string_length(name))) < 0) ||
		    (mail && (r = ids_snapshot_group_set(s, IDS_F_EMAIL, json_string_value(mail),
							 json_string_length(mail))) < 0) ||
		    (r = ids_snapshot_group_end(s)) < 0 ||
		    (r = ids_strv_push(ids, json_string_value(id))) < 0) {
			oom(err, r);
			goto out;
		}
	}
	*ret = page;
	page.next_link = NULL;
	r = 0;
out:
	ids_graph_page_clear(&page);
	json_decref(root);
	return r;
}

int ids_graph_parse_members(const char *body, size_t len, const char *group_id, struct ids_snapshot *s,
			    struct ids_graph_page *ret, struct ids_error *err)
{
	json_t *root = NULL, *value, *u;
	struct ids_graph_page page = {0};
	size_t i;
	int r;
	if ((r = load(body, len, "members", &root, err)) < 0 ||
	    (r = page_of(root, "members", &value, &page, err)) < 0)
		goto out;
	json_array_foreach(value, i, u)
	{
		/* with the microsoft.graph.user cast every element is a user; one
		 * without an id is a malformed page, not a member to skip */
		json_t *id = json_object_get(u, "id");
		if (!json_is_object(u) || !json_is_string(id)) {
			r = ids_error_set(err, IDS_E_PROTOCOL, "members of %s: value[%zu] has no string id",
					  group_id, i);
			goto out;
		}
		if ((r = ids_snapshot_member(s, group_id, IDS_REF_ID, json_string_value(id),
					     json_string_length(id))) < 0) {
			oom(err, r);
			goto out;
		}
	}
	*ret = page;
	page.next_link = NULL;
	r = 0;
out:
	ids_graph_page_clear(&page);
	json_decref(root);
	return r;
}

/* ---------------- token and errors ---------------- */

/* A copy of s[0..n) fit for a log line: control characters become
 * spaces, at most MAX_ERROR_TEXT bytes (cut on a UTF-8 boundary). */
static char *log_safe(const char *s, size_t n)
{
	if (n > MAX_ERROR_TEXT) {
		n = MAX_ERROR_TEXT;
		while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	char *c = malloc(n + 1);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
	c[n] = '\0';
	return c;
}

static int take(json_t *v, char **slot)
{
	if (!json_is_string(v) || *slot)
		return 0;
	return (*slot = log_safe(json_string_value(v), json_string_length(v))) ? 0 : -ENOMEM;
}

int ids_graph_parse_error(const char *body, size_t len, char **ret_code, char **ret_message,
			  char **ret_request_id)
{
	char *code = NULL, *msg = NULL, *rid = NULL;
	json_error_t je;
	/* best effort: an error body that is not JSON (a gateway's HTML page)
	 * leaves everything NULL and the caller reports the status alone */
	json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, &je);
	json_t *e = json_object_get(root, "error");
	int r = 0;
	if (json_is_object(e)) {
		/* Graph: {"error":{"code","message","innerError":{"request-id"}}} */
		json_t *inner = json_object_get(e, "innerError");
		if (!inner)
			inner = json_object_get(e, "innererror");
		if ((r = take(json_object_get(e, "code"), &code)) < 0 ||
		    (r = take(json_object_get(e, "message"), &msg)) < 0 ||
		    (r = take(json_object_get(inner, "request-id"), &rid)) < 0)
			goto out;
	} else if (json_is_string(e)) {
		/* the identity platform: {"error","error_description"} */
		if ((r = take(e, &code)) < 0 ||
		    (r = take(json_object_get(root, "error_description"), &msg)) < 0)
			goto out;
	}
	*ret_code = code;
	*ret_message = msg;
	if (ret_request_id)
		*ret_request_id = rid;
	else
		free(rid);
	code = msg = rid = NULL;
out:
	free(code);
	free(msg);
	free(rid);
	json_decref(root);
	return r;
}
