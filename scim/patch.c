/* patch.c — PATCH application and resource checks (scim.h).
 *
 * RFC 7644 §3.5.2 as the clients actually send it: Entra capitalizes
 * `op` and writes booleans as "True"/"False", sends a no-path replace
 * whose value has dotted and URN-prefixed keys, and removes a member with
 * a path and a value of [{"value": id}]; Okta sends
 * {"op":"replace","value":{"active":false}}. */
#include "ids/scim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATH_MAX_LEN 512

static int fault(struct ids_scim_fault *f, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fault(struct ids_scim_fault *f, const char *type, const char *fmt, ...)
{
	va_list ap;
	f->status = 400;
	f->scim_type = type;
	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A parsed PATCH path: attr[.sub] or attr[filter_attr eq "v"][.sub],
 * with the enterprise URN as a container. */
struct path {
	char attr[128], sub[128];
	char fattr[64], fvalue[256]; /* fattr "" when no value filter */
	bool enterprise;
};

/* RFC 7643 ATTRNAME: ALPHA *(ALPHA / DIGIT / "-" / "_"), or "$ref". */
static bool attrname(const char *s)
{
	if (!strcmp(s, "$ref"))
		return true;
	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == strlen(s);
}

static int parse_path(const char *s, struct path *p, struct ids_scim_fault *f)
{
	memset(p, 0, sizeof(*p));
	if (strlen(s) > PATH_MAX_LEN)
		return fault(f, "invalidPath", "path too long");
	size_t n = strlen(IDS_SCIM_ENTERPRISE);
	if (!strncasecmp(s, IDS_SCIM_ENTERPRISE ":", n + 1)) {
		p->enterprise = true;
		s += n + 1;
	} else if (!strncasecmp(s, "urn:ietf:params:scim:schemas:core:2.0:", 38)) {
		s = strrchr(s, ':') + 1;
	}
	size_t a = strcspn(s, ".[");
	if (a == 0 || a >= sizeof(p->attr))
		return fault(f, "invalidPath", "bad attribute in path");
	memcpy(p->attr, s, a);
	s += a;
	if (*s == '[') {
		/* [attr eq "value"]: the form every client sends */
		char q[300];
		const char *end = strchr(s, ']');
		if (!end || (size_t)(end - s) >= sizeof(q))
			return fault(f, "invalidPath", "unterminated value filter");
		memcpy(q, s + 1, (size_t)(end - s - 1));
		q[end - s - 1] = '\0';
		char *sp = strchr(q, ' ');
		if (!sp || strncasecmp(sp, " eq \"", 5) != 0 || (size_t)(sp - q) >= sizeof(p->fattr) ||
		    q[strlen(q) - 1] != '"' || strlen(sp + 5) - 1 >= sizeof(p->fvalue))
			return fault(f, "invalidFilter", "only [attr eq \"value\"] filters are supported");
		memcpy(p->fattr, q, (size_t)(sp - q));
		memcpy(p->fvalue, sp + 5, strlen(sp + 5) - 1);
		s = end + 1;
	}
	if (*s == '.') {
		if (strlen(s + 1) >= sizeof(p->sub) || !s[1] || strchr(s + 1, '.'))
			return fault(f, "invalidPath", "bad sub-attribute in path");
		strcpy(p->sub, s + 1);
	} else if (*s) {
		return fault(f, "invalidPath", "unexpected text after the attribute");
	}
	if (!attrname(p->attr) || (p->sub[0] && !attrname(p->sub)) || (p->fattr[0] && !attrname(p->fattr)))
		return fault(f, "invalidPath", "not an attribute name");
	return 0;
}

/* The key of o matching name case-insensitively (attribute names are),
 * NULL when none. */
static const char *key_of(const json_t *o, const char *name)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		if (!strcasecmp(k, name))
			return k;
	}
	return NULL;
}

static json_t *get_ci(const json_t *o, const char *name)
{
	const char *k = key_of(o, name);
	return k ? json_object_get(o, k) : NULL;
}

/* Sets o[name] (keeping an existing key's spelling); steals v. */
static int set_ci(json_t *o, const char *name, json_t *v)
{
	const char *k = key_of(o, name);
	return json_object_set_new(o, k ? k : name, v) < 0 ? -ENOMEM : 0;
}

static void del_ci(json_t *o, const char *name)
{
	const char *k = key_of(o, name);
	if (k)
		json_object_del(o, k);
}

/* The container a path's attribute lives in, into *ret: the resource, or
 * the enterprise extension, created for add/replace (NULL for a remove
 * when there is none, or it is no object: nothing to remove).  Adding to
 * an extension that is not an object is the client's fault, not a lack
 * of memory. */
static int container(json_t *res, const struct path *p, bool create, json_t **ret, struct ids_scim_fault *f)
{
	*ret = res;
	if (!p->enterprise)
		return 0;
	json_t *e = get_ci(res, IDS_SCIM_ENTERPRISE);
	if (!e && create) {
		if (set_ci(res, IDS_SCIM_ENTERPRISE, json_object()) < 0)
			return -ENOMEM;
		e = get_ci(res, IDS_SCIM_ENTERPRISE);
	}
	*ret = json_is_object(e) ? e : NULL;
	if (e && !*ret && create)
		return fault(f, "invalidValue", "%s: expected an object", IDS_SCIM_ENTERPRISE);
	return 0;
}

static bool matches(const json_t *elem, const struct path *p)
{
	const json_t *v = get_ci(elem, p->fattr);
	return json_is_string(v) && !strcasecmp(json_string_value(v), p->fvalue);
}

/* Whether arr holds an element whose "value" equals e's (members). */
static bool has_value(const json_t *arr, const json_t *e)
{
	const json_t *v = json_object_get(e, "value"), *x;
	size_t i;
	json_array_foreach(arr, i, x)
	{
		if (v && json_equal(json_object_get(x, "value"), v))
			return true;
	}
	return false;
}

/* add: a multi-valued attribute gets the values appended (members not
 * twice), any other is set. */
static int add_to(json_t *c, const char *attr, const json_t *value)
{
	json_t *cur = get_ci(c, attr);
	if (!json_is_array(cur) || !json_is_array(value))
		return set_ci(c, attr, json_deep_copy(value));
	size_t i;
	json_t *e;
	json_array_foreach(value, i, e)
	{
		if (!has_value(cur, e) && json_array_append_new(cur, json_deep_copy(e)) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* add/replace/remove on elements of a multi-valued attribute selected by
 * a value filter: emails[type eq "work"].value, members[value eq "id"]. */
static int op_filtered(json_t *c, const struct path *p, int op, const json_t *value, struct ids_scim_fault *f)
{
	json_t *arr = get_ci(c, p->attr);
	size_t i, hits = 0;
	json_t *e;
	if (!arr && op != 'r') {
		if (set_ci(c, p->attr, json_array()) < 0)
			return -ENOMEM;
		arr = get_ci(c, p->attr);
	}
	if (!json_is_array(arr))
		return op == 'r' ? fault(f, "noTarget", "%s matches nothing", p->attr)
				 : fault(f, "invalidPath", "%s is not multi-valued", p->attr);
	for (i = 0; i < json_array_size(arr); i++) {
		e = json_array_get(arr, i);
		if (!json_is_object(e) || !matches(e, p))
			continue;
		hits++;
		if (op == 'r' && !p->sub[0]) {
			json_array_remove(arr, i--);
			continue;
		}
		if (op == 'r')
			del_ci(e, p->sub);
		else if (p->sub[0])
			set_ci(e, p->sub, json_deep_copy(value));
		else if (json_is_object(value))
			json_object_update(e, (json_t *)value);
	}
	if (hits || op == 'r')
		return hits ? 0 : fault(f, "noTarget", "%s[%s eq ...] matches nothing", p->attr, p->fattr);
	/* replace or add of emails[type eq "work"].value with no such
	 * element yet: the element is made */
	json_t *n = json_pack("{s:s}", p->fattr, p->fvalue);
	if (!n)
		return -ENOMEM;
	if (p->sub[0])
		json_object_set_new(n, p->sub, json_deep_copy(value));
	return json_array_append_new(arr, n) < 0 ? -ENOMEM : 0;
}

/* One operation with a path. */
static int op_path(json_t *res, const char *path, int op, const json_t *value, struct ids_scim_fault *f)
{
	struct path p;
	int r = parse_path(path, &p, f);
	if (r < 0)
		return r;
	if (!strcasecmp(p.attr, "id") || !strcasecmp(p.attr, "meta"))
		return fault(f, "mutability", "%s is read-only", p.attr);
	json_t *c;
	if ((r = container(res, &p, op != 'r', &c, f)) < 0)
		return r;
	if (!c)
		return 0; /* remove, and no extension to remove from */
	if (p.fattr[0])
		return op_filtered(c, &p, op, value, f);
	if (op == 'r') {
		json_t *cur = get_ci(c, p.attr);
		/* Entra removes one member as path "members" with a value */
		if (json_is_array(cur) && json_is_array(value) && !p.sub[0]) {
			size_t i;
			json_t *e;
			json_array_foreach(value, i, e)
			{
				for (size_t j = 0; j < json_array_size(cur); j++)
					if (json_equal(json_object_get(json_array_get(cur, j), "value"),
						       json_object_get(e, "value")))
						json_array_remove(cur, j--);
			}
			return 0;
		}
		if (p.sub[0])
			return json_is_object(cur) ? (del_ci(cur, p.sub), 0) : 0;
		del_ci(c, p.attr);
		return 0;
	}
	if (!value)
		return fault(f, "invalidValue", "%s needs a value", path);
	if (p.sub[0]) {
		json_t *cur = get_ci(c, p.attr);
		if (!json_is_object(cur)) {
			if (set_ci(c, p.attr, json_object()) < 0)
				return -ENOMEM;
			cur = get_ci(c, p.attr);
		}
		return set_ci(cur, p.sub, json_deep_copy(value));
	}
	return op == 'a' ? add_to(c, p.attr, value) : set_ci(c, p.attr, json_deep_copy(value));
}

/* A no-path add or replace: every key of value is a path of its own
 * (Entra's "name.givenName" and URN-prefixed keys are paths). */
static int op_nopath(json_t *res, int op, const json_t *value, struct ids_scim_fault *f)
{
	const char *k;
	json_t *v;
	if (!json_is_object(value))
		return fault(f, "invalidValue", "an operation without path needs an object value");
	json_object_foreach((json_t *)value, k, v)
	{
		int r;
		if (!strcasecmp(k, IDS_SCIM_ENTERPRISE) && json_is_object(v)) {
			json_t *c;
			r = container(res, &(struct path){.enterprise = true}, true, &c, f);
			if (r >= 0 && json_object_update(c, v) < 0)
				r = -ENOMEM;
		} else if (!strcasecmp(k, "schemas") || !strcasecmp(k, "id") || !strcasecmp(k, "meta")) {
			/* Okta repeats the group's id in its rename: ours anyway */
			continue;
		} else {
			r = op_path(res, k, op, v, f);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* An operation's op as 'a', 'p', 'r' (any case: Entra capitalizes it);
 * 0 when none of them. */
static int op_code(const char *op)
{
	if (!op)
		return 0;
	return !strcasecmp(op, "add")	    ? 'a'
	       : !strcasecmp(op, "replace") ? 'p'
	       : !strcasecmp(op, "remove")  ? 'r'
					    : 0;
}

/* One operation of ids_scim_patch_member_scope: false when it needs the
 * whole member list, else the ids it names appended to ids. */
static bool scope_op(const char *path, int op, const json_t *value, json_t *ids)
{
	struct ids_scim_fault f;
	struct path p;
	size_t i;
	json_t *e;
	if (parse_path(path, &p, &f) < 0)
		return false;
	if (p.enterprise || strcasecmp(p.attr, "members") != 0)
		return true;
	/* members[value eq "id"]: removed by id; a replace through a filter
	 * could rename a member, so it takes the whole list */
	if (p.fattr[0])
		return op == 'r' && !p.sub[0] && !strcasecmp(p.fattr, "value") &&
		       json_array_append_new(ids, json_string(p.fvalue)) == 0;
	/* a replace, or a removal without values, is about every member */
	if (p.sub[0] || op == 'p' || !json_is_array(value))
		return false;
	json_array_foreach(value, i, e)
	{
		json_t *v = json_object_get(e, "value");
		if (json_is_string(v) && json_array_append(ids, v) < 0)
			return false;
	}
	return true;
}

bool ids_scim_patch_member_scope(const json_t *body, char **ret)
{
	const json_t *ops = get_ci(body, "Operations");
	json_t *ids = json_array();
	bool ok = ids && json_is_array(ops);
	*ret = NULL;
	for (size_t i = 0; ok && i < json_array_size(ops); i++) {
		const json_t *o = json_array_get(ops, i), *path = get_ci(o, "path"),
			     *value = get_ci(o, "value");
		const char *k;
		json_t *v;
		int c = op_code(json_string_value(get_ci(o, "op")));
		ok = c && (json_is_string(path) || json_is_object(value));
		if (ok && json_is_string(path)) {
			ok = scope_op(json_string_value(path), c, value, ids);
			continue;
		}
		/* no path: each key of the value is a path (as op_nopath) */
		json_object_foreach((json_t *)value, k, v)
		{
			if (ok && strcasecmp(k, "schemas") != 0 && strcasecmp(k, "id") != 0 &&
			    strcasecmp(k, "meta") != 0 && strcasecmp(k, IDS_SCIM_ENTERPRISE) != 0)
				ok = scope_op(k, c, v, ids);
		}
	}
	if (ok)
		*ret = json_dumps(ids, JSON_COMPACT);
	json_decref(ids);
	return ok && *ret;
}

int ids_scim_patch(json_t *res, const json_t *body, struct ids_scim_fault *f)
{
	const json_t *ops = get_ci(body, "Operations"), *o;
	size_t i;
	if (!json_is_object(body) || !json_is_array(ops) || !json_array_size(ops))
		return fault(f, "invalidSyntax", "expected a PatchOp with Operations");
	json_array_foreach(ops, i, o)
	{
		const json_t *opv = get_ci(o, "op"), *path = get_ci(o, "path"), *value = get_ci(o, "value");
		const char *op = json_string_value(opv);
		int c, r;
		if (!op || (path && !json_is_string(path)))
			return fault(f, "invalidSyntax", "Operations[%zu]: expected op and a string path", i);
		if (!(c = op_code(op)))
			return fault(f, "invalidSyntax", "Operations[%zu]: unknown op", i);
		if (c == 'r' && !path)
			return fault(f, "noTarget", "Operations[%zu]: remove needs a path", i);
		r = path ? op_path(res, json_string_value(path), c, value, f) : op_nopath(res, c, value, f);
		if (r < 0)
			return r;
	}
	return 0;
}

/* `active` as a boolean: Entra sends the strings "True" and "False". */
static int active_of(json_t *res, bool *ret, struct ids_scim_fault *f)
{
	json_t *a = get_ci(res, "active");
	const char *s = json_string_value(a);
	*ret = true;
	if (!a || json_is_null(a))
		return 0;
	if (s && (!strcasecmp(s, "true") || !strcasecmp(s, "false"))) {
		*ret = !strcasecmp(s, "true");
		return set_ci(res, "active", json_boolean(*ret));
	}
	if (!json_is_boolean(a))
		return fault(f, "invalidValue", "active: expected a boolean");
	*ret = json_is_true(a);
	return 0;
}

/* A group's members as a JSON array of ids, taken out of res. */
static int members_of(json_t *res, char **ret, struct ids_scim_fault *f)
{
	json_t *m = get_ci(res, "members"), *ids = json_array(), *e;
	size_t i;
	if (!ids)
		return -ENOMEM;
	if (m && !json_is_array(m) && !json_is_null(m)) {
		json_decref(ids);
		return fault(f, "invalidValue", "members: expected an array");
	}
	json_array_foreach(m, i, e)
	{
		json_t *v = json_object_get(e, "value");
		if (!json_is_string(v)) {
			json_decref(ids);
			return fault(f, "invalidValue", "members[%zu]: expected a value", i);
		}
		json_array_append(ids, v);
	}
	del_ci(res, "members");
	*ret = json_dumps(ids, JSON_COMPACT);
	json_decref(ids);
	return *ret ? 0 : -ENOMEM;
}

int ids_scim_normalize(json_t *res, bool is_group, const char **ret_name, const char **ret_external_id,
		       bool *ret_active, char **ret_members, struct ids_scim_fault *f)
{
	const char *need = is_group ? "displayName" : "userName";
	int r;
	if (!json_is_object(res))
		return fault(f, "invalidSyntax", "expected a JSON object");
	/* never stored, whatever the client sends: ids and meta are ours,
	 * and a password has no business here at all */
	del_ci(res, "id");
	del_ci(res, "meta");
	del_ci(res, "password");
	const json_t *name = get_ci(res, need), *ext = get_ci(res, "externalId");
	if (!json_is_string(name) || !json_string_length(name))
		return fault(f, "invalidValue", "%s: expected a non-empty string", need);
	if (ext && !json_is_string(ext) && !json_is_null(ext))
		return fault(f, "invalidValue", "externalId: expected a string");
	if ((r = active_of(res, ret_active, f)) < 0)
		return r;
	/* Entra sets the manager as a bare id ("manager": "26118915-..."),
	 * RFC 7643 as {"value": id}: stored the RFC's way, which rules read
	 * as manager.value */
	json_t *ent = get_ci(res, IDS_SCIM_ENTERPRISE), *mgr = get_ci(ent, "manager");
	if (json_is_string(mgr) && set_ci(ent, "manager", json_pack("{s:O}", "value", mgr)) < 0)
		return -ENOMEM;
	*ret_members = NULL;
	if (is_group && (r = members_of(res, ret_members, f)) < 0)
		return r;
	*ret_name = json_string_value(get_ci(res, need));
	*ret_external_id = json_string_value(get_ci(res, "externalId"));
	return 0;
}

bool ids_scim_json_depth_ok(const char *s, size_t n, int max)
{
	int depth = 0;
	bool str = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (str) {
			if (c == '\\')
				i++; /* the escaped byte is no quote */
			else if (c == '"')
				str = false;
		} else if (c == '"') {
			str = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max)
				return false;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return true;
}

int ids_scim_bucket_take(struct ids_scim_bucket *b, long long now_usec, double rate, double burst)
{
	if (!b->last_usec || now_usec < b->last_usec) {
		/* first use (or a clock that went back): a full bucket */
		b->tokens = burst;
	} else {
		b->tokens += (double)(now_usec - b->last_usec) / 1e6 * rate;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	b->last_usec = now_usec;
	if (b->tokens >= 1) {
		b->tokens -= 1;
		return 0;
	}
	/* the time until one whole token, rounded up to a second */
	double wait = (1 - b->tokens) / rate;
	return wait <= 1 ? 1 : (int)wait + (wait > (int)wait);
}
