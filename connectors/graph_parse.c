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
#include "ids/image.h"

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

/* Where one user's values go: the snapshot builder (a full read) or the
 * image (a delta round), whose calls are the same but for the key. */
struct user_sink {
	int (*begin)(void *ud, const char *id, size_t n);
	int (*set)(void *ud, enum ids_field f, const char *v, size_t n);
	int (*attr)(void *ud, const char *name, const char *v, size_t n);
	int (*disabled)(void *ud, bool disabled);
	int (*end)(void *ud);
	void *ud;
};

static int snap_begin(void *ud, const char *id, size_t n)
{
	(void)id;
	(void)n;
	return ids_snapshot_user_begin(ud);
}

static int snap_set(void *ud, enum ids_field f, const char *v, size_t n)
{
	return ids_snapshot_user_set(ud, f, v, n);
}

static int snap_attr(void *ud, const char *name, const char *v, size_t n)
{
	return ids_snapshot_user_attr(ud, name, v, n);
}

static int snap_disabled(void *ud, bool disabled)
{
	return ids_snapshot_user_disabled(ud, disabled);
}

static int snap_end(void *ud)
{
	return ids_snapshot_user_end(ud);
}

/* users into a snapshot (a full read, one person) */
static const struct user_sink snap_sink = {snap_begin, snap_set, snap_attr, snap_disabled, snap_end, NULL};

/* One value of a rule attribute as text: strings as they are, booleans
 * and numbers as JSON writes them; anything else has no text. */
static int attr_value(const struct user_sink *k, const char *name, json_t *v)
{
	char num[64];
	switch (json_typeof(v)) {
	case JSON_STRING: return k->attr(k->ud, name, json_string_value(v), json_string_length(v));
	case JSON_TRUE: return k->attr(k->ud, name, "true", 4);
	case JSON_FALSE: return k->attr(k->ud, name, "false", 5);
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return k->attr(k->ud, name, num, strlen(num));
	case JSON_REAL:
		snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return k->attr(k->ud, name, num, strlen(num));
	default: return 0;
	}
}

static const char *const field_names[] = {"external_id", "username",  "email",
					  "first_name",	 "last_name", "display_name"};

static int one_user(json_t *u, size_t i, const struct ids_graph_user_map *m, const struct user_sink *k,
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
	if ((r = k->begin(k->ud, json_string_value(id), json_string_length(id))) < 0)
		return oom(err, r);
	for (int f = 0; f <= IDS_F_DISPLAY_NAME; f++) {
		json_t *v = m->attr[f] ? get_path(u, m->attr[f]) : NULL;
		if (!v || json_is_null(v))
			continue; /* null: Graph's way of saying "not set" */
		if (!json_is_string(v))
			return ids_error_set(err, IDS_E_PROTOCOL, "users: value[%zu].%s (%s) is not a string",
					     i, m->attr[f], field_names[f]);
		if ((r = k->set(k->ud, (enum ids_field)f, json_string_value(v), json_string_length(v))) < 0)
			return oom(err, r);
	}
	/* null accountEnabled is not "disabled": only an explicit false is */
	if (json_is_false(en) && (r = k->disabled(k->ud, true)) < 0)
		return oom(err, r);
	for (size_t a = 0; m->rule_attrs && a < m->rule_attrs->n; a++) {
		const char *name = m->rule_attrs->v[a];
		json_t *v = get_path(u, name);
		/* multi-valued properties (proxyAddresses, otherMails) give every
		 * value, in Graph's order, as LDAP multi-valued attributes do */
		if (json_is_array(v)) {
			size_t j;
			json_t *e;
			json_array_foreach(v, j, e)
			{
				if ((r = attr_value(k, name, e)) < 0)
					return oom(err, r);
			}
		} else if (v && (r = attr_value(k, name, v)) < 0) {
			return oom(err, r);
		}
	}
	if ((r = k->end(k->ud)) < 0)
		return oom(err, r);
	return 0;
}

int ids_graph_parse_users(const char *body, size_t len, const struct ids_graph_user_map *m,
			  struct ids_snapshot *s, struct ids_graph_page *ret, struct ids_error *err)
{
	struct user_sink k = snap_sink;
	json_t *root = NULL, *value, *u;
	struct ids_graph_page page = {0};
	size_t i;
	int r;
	k.ud = s;
	if ((r = load(body, len, "users", &root, err)) < 0 ||
	    (r = page_of(root, "users", &value, &page, err)) < 0)
		goto out;
	json_array_foreach(value, i, u)
	{
		if ((r = one_user(u, i, m, &k, err)) < 0)
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
	struct user_sink k = snap_sink;
	k.ud = s;
	if ((r = one_user(root, 0, m, &k, err)) < 0)
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
	n = ids_utf8_cut(s, n, MAX_ERROR_TEXT);
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

/* ---------------- delta queries (issue 15) ---------------- */

void ids_graph_delta_page_clear(struct ids_graph_delta_page *p)
{
	if (!p)
		return;
	free(p->next_link);
	free(p->delta_link);
	memset(p, 0, sizeof(*p));
}

/* An optional link of a delta page (a string without NUL), new in *ret. */
static int link_of(json_t *root, const char *name, const char *what, char **ret, struct ids_error *err)
{
	json_t *v = json_object_get(root, name);
	*ret = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
	    !json_string_length(v))
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: %s is not a URL", what, name);
	return (*ret = strdup(json_string_value(v))) ? 0 : ids_error_set(err, -ENOMEM, "out of memory");
}

/* The value array and the links of a delta page: exactly one of
 * @odata.nextLink (more pages) and @odata.deltaLink (the round's end). */
static int delta_page_of(json_t *root, const char *what, json_t **ret_value, struct ids_graph_delta_page *pg,
			 struct ids_error *err)
{
	json_t *value = json_object_get(root, "value");
	int r;
	if (!json_is_array(value))
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: %s", what,
				     value ? "`value` is not an array" : "no `value` array");
	if ((r = link_of(root, "@odata.nextLink", what, &pg->next_link, err)) < 0 ||
	    (r = link_of(root, "@odata.deltaLink", what, &pg->delta_link, err)) < 0)
		return r;
	/* neither: the round would end without a place to start the next
	 * one; both: which one did Graph mean? */
	if (!pg->next_link == !pg->delta_link)
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: %s", what,
				     pg->next_link ? "both @odata.nextLink and @odata.deltaLink"
						   : "neither @odata.nextLink nor @odata.deltaLink");
	pg->count = json_array_size(value);
	*ret_value = value;
	return 0;
}

/* The @removed reason of a delta element: NULL when it is not removed. */
static int removed_of(json_t *o, const char *what, size_t i, const char **ret, struct ids_error *err)
{
	json_t *rm = json_object_get(o, "@removed");
	*ret = NULL;
	if (!rm)
		return 0;
	json_t *reason = json_object_get(rm, "reason");
	if (!json_is_object(rm) || (reason && !json_is_string(reason)))
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: value[%zu].@removed is malformed", what, i);
	*ret = reason ? json_string_value(reason) : "deleted";
	return 0;
}

static int img_begin(void *ud, const char *id, size_t n)
{
	if (!id || !n || strlen(id) != n)
		return -EINVAL;
	return ids_image_user_begin(ud, id);
}

static int img_set(void *ud, enum ids_field f, const char *v, size_t n)
{
	return ids_image_user_set(ud, f, v, n);
}

static int img_attr(void *ud, const char *name, const char *v, size_t n)
{
	return ids_image_user_attr(ud, name, v, n);
}

static int img_disabled(void *ud, bool disabled)
{
	return ids_image_user_disabled(ud, disabled);
}

static int img_end(void *ud)
{
	return ids_image_end(ud);
}

/* An element's id: a non-empty string without NUL, else IDS_E_PROTOCOL. */
static int id_of(json_t *o, const char *what, size_t i, const char **ret, struct ids_error *err)
{
	json_t *id = json_object_get(o, "id");
	if (!json_is_object(o) || !json_is_string(id) || !json_string_length(id) ||
	    strlen(json_string_value(id)) != json_string_length(id))
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: value[%zu] has no usable id", what, i);
	*ret = json_string_value(id);
	return 0;
}

int ids_graph_parse_users_delta(const char *body, size_t len, const struct ids_graph_user_map *m,
				struct ids_image *img, struct ids_graph_delta_page *ret,
				struct ids_error *err)
{
	const struct user_sink k = {img_begin, img_set, img_attr, img_disabled, img_end, img};
	struct ids_graph_delta_page pg = {0};
	json_t *root = NULL, *value, *u;
	size_t i;
	int r;
	if ((r = load(body, len, "users delta", &root, err)) < 0 ||
	    (r = delta_page_of(root, "users delta", &value, &pg, err)) < 0)
		goto out;
	json_array_foreach(value, i, u)
	{
		const char *id, *reason;
		if ((r = id_of(u, "users delta", i, &id, err)) < 0 ||
		    (r = removed_of(u, "users delta", i, &reason, err)) < 0)
			goto out;
		/* "changed" (soft-deleted, restorable for 30 days) and "deleted"
		 * both take the user out of the directory we see: deactivated
		 * as deleted_in_source; a restore comes back as the same id */
		if (reason) {
			if ((r = ids_image_delete(img, id, IDS_IMAGE_USERS)) < 0) {
				oom(err, r);
				goto out;
			}
			pg.removed++;
		} else if ((r = one_user(u, i, m, &k, err)) < 0) {
			ids_image_abort_record(img);
			goto out;
		}
		pg.changes++;
	}
	*ret = pg;
	pg = (struct ids_graph_delta_page){0};
	r = 0;
out:
	ids_graph_delta_page_clear(&pg);
	json_decref(root);
	return r;
}

/* A group of a groups delta round, as far as its pages said. */
struct pgroup {
	const char *id; /* arena */
	json_t *props;	/* the group's values (without members@delta); NULL: not sent */
	bool removed;
	struct ids_strmap midx; /* member id -> index into mids */
	const char **mids;	/* arena strings, in arrival order */
	unsigned char *madd;	/* per member: 1 added, 0 removed (the last word wins) */
	size_t nm, capm, capa;
};

struct ids_graph_gdelta {
	struct ids_arena a;
	struct ids_strmap idx; /* group id -> index into v */
	struct pgroup *v;
	size_t n, cap;
};

int ids_graph_gdelta_new(struct ids_graph_gdelta **ret)
{
	return (*ret = calloc(1, sizeof(**ret))) ? 0 : -ENOMEM;
}

void ids_graph_gdelta_free(struct ids_graph_gdelta *gd)
{
	if (!gd)
		return;
	for (size_t i = 0; i < gd->n; i++) {
		json_decref(gd->v[i].props);
		ids_strmap_free(&gd->v[i].midx);
		free(gd->v[i].mids);
		free(gd->v[i].madd);
	}
	free(gd->v);
	ids_strmap_free(&gd->idx);
	ids_arena_free(&gd->a);
	free(gd);
}

size_t ids_graph_gdelta_count(const struct ids_graph_gdelta *gd)
{
	return gd->n;
}

/* The pending group `id`, made the first time. */
static int pgroup_of(struct ids_graph_gdelta *gd, const char *id, struct pgroup **ret)
{
	uint32_t i;
	if (ids_strmap_get(&gd->idx, id, &i)) {
		*ret = &gd->v[i];
		return 0;
	}
	char *key = ids_arena_strdup(&gd->a, id);
	if (!key || gd->n >= UINT32_MAX || ids_grow(&gd->v, &gd->cap, gd->n + 1, sizeof(*gd->v)) < 0)
		return -ENOMEM;
	int r = ids_strmap_put(&gd->idx, key, (uint32_t)gd->n, NULL);
	if (r < 0)
		return r;
	gd->v[gd->n] = (struct pgroup){.id = key};
	*ret = &gd->v[gd->n++];
	return 0;
}

/* Member `mid` of g added (1) or removed (0): the last word of the round wins. */
static int pgroup_member(struct ids_graph_gdelta *gd, struct pgroup *g, const char *mid, bool add)
{
	uint32_t i;
	if (ids_strmap_get(&g->midx, mid, &i)) {
		g->madd[i] = add;
		return 0;
	}
	char *key = ids_arena_strdup(&gd->a, mid);
	if (!key || g->nm >= UINT32_MAX || ids_grow(&g->mids, &g->capm, g->nm + 1, sizeof(*g->mids)) < 0 ||
	    ids_grow(&g->madd, &g->capa, g->nm + 1, 1) < 0)
		return -ENOMEM;
	int r = ids_strmap_put(&g->midx, key, (uint32_t)g->nm, NULL);
	if (r < 0)
		return r;
	g->mids[g->nm] = key;
	g->madd[g->nm++] = add;
	return 0;
}

/* Whether a members@delta element is a member the snapshot can resolve:
 * users and groups (nested); devices, contacts and service principals
 * are members too, but nothing the rules can see. */
static bool member_kind_kept(json_t *e)
{
	json_t *t = json_object_get(e, "@odata.type");
	if (!json_is_string(t))
		return true; /* Graph always says; without it, let the snapshot judge */
	const char *s = json_string_value(t);
	return !strcmp(s, "#microsoft.graph.user") || !strcmp(s, "#microsoft.graph.group");
}

static int group_members_delta(struct ids_graph_gdelta *gd, struct pgroup *g, json_t *md, size_t i,
			       struct ids_error *err)
{
	size_t j;
	json_t *e;
	if (!json_is_array(md))
		return ids_error_set(err, IDS_E_PROTOCOL,
				     "groups delta: value[%zu].members@delta is not an array", i);
	json_array_foreach(md, j, e)
	{
		const char *mid, *reason;
		int r;
		if ((r = id_of(e, "groups delta: members@delta", j, &mid, err)) < 0 ||
		    (r = removed_of(e, "groups delta: members@delta", j, &reason, err)) < 0)
			return r;
		if (!reason && !member_kind_kept(e))
			continue;
		if ((r = pgroup_member(gd, g, mid, !reason)) < 0)
			return oom(err, r);
	}
	return 0;
}

/* One element of a groups delta page into gd. */
static int one_group_delta(struct ids_graph_gdelta *gd, json_t *o, size_t i, struct ids_error *err)
{
	const char *id, *reason;
	struct pgroup *g;
	int r;
	if ((r = id_of(o, "groups delta", i, &id, err)) < 0 ||
	    (r = removed_of(o, "groups delta", i, &reason, err)) < 0)
		return r;
	if ((r = pgroup_of(gd, id, &g)) < 0)
		return oom(err, r);
	if (reason) {
		g->removed = true;
		return 0;
	}
	g->removed = false; /* deleted and restored within the round */
	json_t *name = NULL, *mail = NULL, *md = json_object_get(o, "members@delta");
	if ((r = opt_string(o, "displayName", i, &name, err)) < 0 ||
	    (r = opt_string(o, "mail", i, &mail, err)) < 0)
		return r;
	/* a part that carries the group's values (its first, on Graph): the
	 * later parts of a group split over pages carry only its members */
	if (json_object_get(o, "displayName") || json_object_get(o, "mail")) {
		json_t *p = json_object();
		if (!p || json_object_set(p, "displayName", name ? name : json_null()) < 0 ||
		    json_object_set(p, "mail", mail ? mail : json_null()) < 0) {
			json_decref(p);
			return oom(err, -ENOMEM);
		}
		json_decref(g->props);
		g->props = p;
	}
	return md ? group_members_delta(gd, g, md, i, err) : 0;
}

int ids_graph_parse_groups_delta(const char *body, size_t len, struct ids_graph_gdelta *gd,
				 struct ids_graph_delta_page *ret, struct ids_error *err)
{
	struct ids_graph_delta_page pg = {0};
	json_t *root = NULL, *value, *g;
	size_t i;
	int r;
	if ((r = load(body, len, "groups delta", &root, err)) < 0 ||
	    (r = delta_page_of(root, "groups delta", &value, &pg, err)) < 0)
		goto out;
	json_array_foreach(value, i, g)
	{
		if ((r = one_group_delta(gd, g, i, err)) < 0)
			goto out;
	}
	*ret = pg;
	pg = (struct ids_graph_delta_page){0};
	r = 0;
out:
	ids_graph_delta_page_clear(&pg);
	json_decref(root);
	return r;
}

/* begin_edit's keep for a group whose values came: every member the
 * round did not name (those it named are added again or dropped). */
static bool not_named(enum ids_ref kind, const char *ref, size_t n, void *ud)
{
	const struct pgroup *g = ud;
	char buf[128];
	(void)kind;
	if (n >= sizeof(buf))
		return true; /* longer than any id Graph gives: never named */
	memcpy(buf, ref, n);
	buf[n] = '\0';
	return !ids_strmap_get(&g->midx, buf, NULL);
}

static bool keep_none(enum ids_ref kind, const char *ref, size_t n, void *ud)
{
	(void)kind;
	(void)ref;
	(void)n;
	(void)ud;
	return false;
}

/* The record of group g anew: its values (the name and mail only when the
 * scope takes it: a group out of scope stays in the image, nameless, so
 * that the nesting through it resolves as transitiveMembers does), the
 * members kept (none on a full round) and those added. */
static int group_rewrite(struct ids_image *img, struct pgroup *g, const struct ids_strv *scope, bool full,
			 json_t *scoped)
{
	json_t *name = json_object_get(g->props, "displayName"), *mail = json_object_get(g->props, "mail");
	const char *nm = json_string_value(name);
	long k = in_scope(scope, g->id, nm);
	int r = ids_image_group_begin_edit(img, g->id, full ? keep_none : not_named, g);
	if (r < 0)
		return r;
	if ((r = ids_image_group_set(img, IDS_F_EXTERNAL_ID, g->id, strlen(g->id))) >= 0 && k >= 0) {
		if (nm)
			r = ids_image_group_set(img, IDS_F_USERNAME, nm, json_string_length(name));
		if (r >= 0 && json_is_string(mail))
			r = ids_image_group_set(img, IDS_F_EMAIL, json_string_value(mail),
						json_string_length(mail));
	}
	for (size_t i = 0; r >= 0 && i < g->nm; i++)
		if (g->madd[i])
			r = ids_image_group_member(img, IDS_REF_ID, g->mids[i], strlen(g->mids[i]));
	if (r < 0) {
		ids_image_abort_record(img);
		return r;
	}
	if ((r = ids_image_end(img)) < 0)
		return r;
	if (scope && scope->n && k >= 0)
		return json_object_set_new(scoped, g->id, json_integer(k)) < 0 ? -ENOMEM : 0;
	json_object_del(scoped, g->id);
	return 0;
}

/* Members only (a group whose values did not change): edge by edge.  A
 * group the image does not hold yet (a change that overtook its group's
 * first round: replication lag) gets a record of its id and members. */
static int group_edges(struct ids_image *img, struct pgroup *g, const struct ids_strv *scope, json_t *scoped)
{
	for (size_t i = 0; i < g->nm; i++) {
		const char *mid = g->mids[i];
		int r = g->madd[i] ? ids_image_group_member_add(img, g->id, IDS_REF_ID, mid, strlen(mid))
				   : ids_image_group_member_remove(img, g->id, IDS_REF_ID, mid, strlen(mid));
		if (r == -ENOENT)
			return group_rewrite(img, g, scope, false, scoped);
		if (r < 0)
			return r;
	}
	return 0;
}

int ids_graph_gdelta_apply(struct ids_graph_gdelta *gd, struct ids_image *img, const struct ids_strv *scope,
			   bool full, struct ids_graph_cursor *c, size_t *ret_changes, struct ids_error *err)
{
	json_t *scoped = c->scoped;
	int r = 0;
	if (!scoped || full) {
		json_decref(scoped);
		if (!(c->scoped = scoped = json_object()))
			return oom(err, -ENOMEM);
	}
	for (size_t i = 0; r >= 0 && i < gd->n; i++) {
		struct pgroup *g = &gd->v[i];
		if (g->removed) {
			r = ids_image_delete(img, g->id, IDS_IMAGE_GROUPS);
			json_object_del(scoped, g->id);
		} else if (g->props || full) {
			r = group_rewrite(img, g, scope, full, scoped);
		} else {
			r = group_edges(img, g, scope, scoped);
		}
	}
	if (r < 0)
		return oom(err, r);
	*ret_changes = gd->n;
	return 0;
}

long ids_graph_scope_unmatched(const struct ids_graph_cursor *c, const struct ids_strv *scope)
{
	for (size_t i = 0; scope && i < scope->n; i++) {
		const char *k;
		json_t *v;
		bool hit = false;
		json_object_foreach(c->scoped, k, v)
		{
			if (json_integer_value(v) == (json_int_t)i) {
				hit = true;
				break;
			}
		}
		if (!hit)
			return (long)i;
	}
	return -1;
}

/* ---------------- the cursor ---------------- */

void ids_graph_cursor_clear(struct ids_graph_cursor *c)
{
	if (!c)
		return;
	free(c->users_link);
	free(c->groups_link);
	free(c->fingerprint);
	json_decref(c->scoped);
	memset(c, 0, sizeof(*c));
}

int ids_graph_cursor_parse(const unsigned char *b, size_t n, struct ids_graph_cursor *c)
{
	json_error_t je;
	json_t *root = json_loadb((const char *)b, n, JSON_REJECT_DUPLICATES, &je);
	json_t *u = json_object_get(root, "users"), *g = json_object_get(root, "groups");
	json_t *fp = json_object_get(root, "fp"), *at = json_object_get(root, "at");
	json_t *sc = json_object_get(root, "scoped");
	int r = -EINVAL;
	*c = (struct ids_graph_cursor){0};
	if (json_integer_value(json_object_get(root, "v")) != 1 || !json_is_string(u) || !json_is_string(g) ||
	    !json_is_string(fp) || !json_is_integer(at) || !json_is_object(sc))
		goto out;
	r = -ENOMEM;
	if (!(c->users_link = strdup(json_string_value(u))) ||
	    !(c->groups_link = strdup(json_string_value(g))) ||
	    !(c->fingerprint = strdup(json_string_value(fp))))
		goto out;
	c->at = (long long)json_integer_value(at);
	c->scoped = json_incref(sc);
	r = 0;
out:
	if (r < 0)
		ids_graph_cursor_clear(c);
	json_decref(root);
	return r;
}

int ids_graph_cursor_write(const struct ids_graph_cursor *c, unsigned char **ret, size_t *ret_n)
{
	json_t *sc = c->scoped ? json_incref(c->scoped) : json_object();
	json_t *root =
	    json_pack("{s:i, s:s, s:I, s:s, s:s, s:o}", "v", 1, "fp", c->fingerprint, "at", (json_int_t)c->at,
		      "users", c->users_link, "groups", c->groups_link, "scoped", sc);
	char *s = root ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(root);
	if (!s)
		return -ENOMEM;
	*ret = (unsigned char *)s;
	*ret_n = strlen(s);
	return 0;
}

int ids_graph_cursor_check(const struct ids_graph_cursor *c, const char *fingerprint, long long now,
			   char **ret_reason)
{
	struct ids_buf b = {0};
	int r = 0;
	*ret_reason = NULL;
	if (strcmp(c->fingerprint, fingerprint) != 0)
		r = ids_buf_puts(&b, "the $select or the groups: scope changed since the stored delta links");
	else if (now - c->at > IDS_GRAPH_DELTA_MAX_AGE)
		r = ids_buf_printf(
		    &b,
		    "the stored delta links are %lld hours old (Graph keeps delta state for 7 days; "
		    "idsyncd trusts 6)",
		    (now - c->at) / 3600);
	else if (c->at > now + 86400)
		r = ids_buf_puts(&b, "the stored delta links were made in the future (the clock moved back)");
	if (r < 0)
		return -ENOMEM;
	*ret_reason = b.len ? ids_buf_steal(&b) : NULL;
	ids_buf_free(&b);
	return 0;
}
