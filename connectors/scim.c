/* scim.c — the scim connector: its directory is what identity providers
 * pushed to idsyncd's SCIM endpoint (scim/server.c), kept in PostgreSQL
 * (migration 006).
 *
 * The one connector that reads the database, and the seam is kept narrow
 * (docs/scim.md): the store's ids_scim_store_read hands over rows as
 * text, the connector maps them into the snapshot builder like any page
 * parser — the pipeline after the pull cannot tell it from LDAP.  It reads
 * over a connection of its own: the run's connection is busy loading the
 * current state meanwhile (sync.c overlaps the two), and its read is one
 * REPEATABLE READ transaction, so a push during the run is either wholly
 * in the snapshot or waits for the next run.  A targeted read (`sync
 * --user`, explain) reads the one user and the groups holding them,
 * nested ones too, in the same way (ids_scim_store_read_user). */
#include "ids/connector.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/scim_store.h"
#include "ids/store.h"

#define ENTERPRISE "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

struct pull {
	const struct ids_pull_ctx *ctx;
	struct ids_snapshot *s;
	size_t rows;
};

/* The member `path` ("a.b.c") of o, NULL when absent. */
static const json_t *path_get(const json_t *o, const char *path)
{
	char key[256];
	while (o && json_is_object(o)) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		o = json_object_get(o, key);
		if (!path[n])
			return o;
		path += n + 1;
	}
	return NULL;
}

/* One value of a rule attribute: strings as they are, numbers and
 * booleans as JSON writes them, a multi-valued element by its "value". */
static int add_value(struct ids_snapshot *s, const char *name, const json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "value");
	if (json_is_string(v))
		return ids_snapshot_user_attr(s, name, json_string_value(v), json_string_length(v));
	if (json_is_boolean(v))
		return ids_snapshot_user_attr(s, name, json_is_true(v) ? "true" : "false",
					      json_is_true(v) ? 4 : 5);
	if (json_is_integer(v)) {
		char b[32];
		int n = snprintf(b, sizeof(b), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return ids_snapshot_user_attr(s, name, b, (size_t)n);
	}
	return 0;
}

/* A rule attribute: a path in the resource, else in the enterprise
 * extension (`department`, `manager.value`), as the issue promises. */
static int add_attr(struct ids_snapshot *s, const json_t *res, const char *name)
{
	const json_t *v = path_get(res, name);
	if (!v)
		v = path_get(json_object_get(res, ENTERPRISE), name);
	if (!json_is_array(v))
		return v ? add_value(s, name, v) : 0;
	size_t i;
	const json_t *e;
	int r = 0;
	json_array_foreach(v, i, e)
	{
		if ((r = add_value(s, name, e)) < 0)
			break;
	}
	return r;
}

/* The e-mail: the primary one, else the work one, else the first. */
static const json_t *pick_email(const json_t *emails)
{
	const json_t *work = NULL, *first = NULL, *e;
	size_t i;
	json_array_foreach(emails, i, e)
	{
		if (!json_is_string(json_object_get(e, "value")))
			continue;
		if (json_is_true(json_object_get(e, "primary")))
			return json_object_get(e, "value");
		const char *t = json_string_value(json_object_get(e, "type"));
		if (!work && t && !strcasecmp(t, "work"))
			work = e;
		if (!first)
			first = e;
	}
	return json_object_get(work ? work : first, "value");
}

static int set_str(struct ids_snapshot *s, enum ids_field f, const json_t *v)
{
	return json_is_string(v) ? ids_snapshot_user_set(s, f, json_string_value(v), json_string_length(v))
				 : 0;
}

/* No displayName nor name.formatted (Okta often sends neither): the
 * display name is "givenName familyName", as a person would write it. */
static int set_full_name(struct ids_snapshot *s, const json_t *res)
{
	const char *g = json_string_value(path_get(res, "name.givenName"));
	const char *f = json_string_value(path_get(res, "name.familyName"));
	char *full = NULL;
	if (!g || !f)
		return 0;
	if (asprintf(&full, "%s %s", g, f) < 0)
		return -ENOMEM;
	int r = ids_snapshot_user_set(s, IDS_F_DISPLAY_NAME, full, strlen(full));
	free(full);
	return r;
}

int ids_scim_map_user(struct ids_snapshot *s, const char *id, const char *resource, bool active,
		      const struct ids_strv *attrs)
{
	json_t *res = json_loads(resource, JSON_REJECT_DUPLICATES, NULL);
	int r = ids_snapshot_user_begin(s);
	if (r >= 0)
		r = ids_snapshot_user_set(s, IDS_F_EXTERNAL_ID, id, strlen(id));
	if (r >= 0 && !json_is_object(res))
		r = ids_snapshot_user_invalid(s, "stored resource is not a JSON object");
	if (r >= 0 && json_is_object(res)) {
		const json_t *dn = json_object_get(res, "displayName");
		if (!dn)
			dn = path_get(res, "name.formatted");
		r = set_str(s, IDS_F_USERNAME, json_object_get(res, "userName"));
		if (r >= 0)
			r = set_str(s, IDS_F_EMAIL, pick_email(json_object_get(res, "emails")));
		if (r >= 0)
			r = set_str(s, IDS_F_FIRST_NAME, path_get(res, "name.givenName"));
		if (r >= 0)
			r = set_str(s, IDS_F_LAST_NAME, path_get(res, "name.familyName"));
		if (r >= 0)
			r = dn ? set_str(s, IDS_F_DISPLAY_NAME, dn) : set_full_name(s, res);
		for (size_t i = 0; r >= 0 && attrs && i < attrs->n; i++)
			r = add_attr(s, res, attrs->v[i]);
	}
	if (r >= 0)
		r = ids_snapshot_user_disabled(s, !active);
	if (r >= 0)
		r = ids_snapshot_user_end(s);
	json_decref(res);
	return r;
}

/* Every 1000 rows the run's progress hook (watchdog, SIGTERM). */
static int tick(struct pull *p)
{
	if (++p->rows % 1000 == 0 && p->ctx->progress)
		return p->ctx->progress(p->ctx->ud);
	return 0;
}

static int on_user(void *ud, const char *id, const char *resource, bool active)
{
	struct pull *p = ud;
	int r = ids_scim_map_user(p->s, id, resource, active, p->ctx->rule_attrs);
	return r < 0 ? r : tick(p);
}

static int on_group(void *ud, const char *id, const char *name)
{
	struct pull *p = ud;
	int r = ids_snapshot_group_begin(p->s);
	if (r >= 0)
		r = ids_snapshot_group_set(p->s, IDS_F_EXTERNAL_ID, id, strlen(id));
	if (r >= 0)
		r = ids_snapshot_group_set(p->s, IDS_F_USERNAME, name, strlen(name));
	if (r >= 0)
		r = ids_snapshot_group_end(p->s);
	return r < 0 ? r : tick(p);
}

static int on_member(void *ud, const char *group_id, const char *member_id)
{
	struct pull *p = ud;
	int r = ids_snapshot_member(p->s, group_id, IDS_REF_ID, member_id, strlen(member_id));
	return r < 0 ? r : tick(p);
}

static int scim_pull(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		     struct ids_snapshot *s, struct ids_error *err)
{
	static const struct ids_scim_reader rd = {.user = on_user, .group = on_group, .member = on_member};
	struct ids_store *st = NULL;
	struct pull p = {.ctx = ctx, .s = s};
	int version = 0;
	int r = ids_store_open(ctx->config, &st, err);
	if (r >= 0)
		r = ids_store_version(st, &version, err);
	/* no schema yet (a `plan` before the first sync): nothing can have
	 * been pushed, since the listener stores into that schema */
	if (r >= 0 && version > 0)
		r = ctx->only_user ? ids_scim_store_read_user(st, cfg->name, ctx->only_user, &rd, &p, err)
				   : ids_scim_store_read(st, cfg->name, &rd, &p, err);
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "pushed state: %s", ids_strerror(r));
	else if (r < 0)
		ids_error_prefix(err, "pushed state");
	s->pages = 1;
	ids_store_close(st);
	return r;
}

const struct ids_connector_ops ids_scim_connector = {
    .type = "scim",
    .pull = scim_pull,
};
