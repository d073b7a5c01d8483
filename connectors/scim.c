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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/scim_store.h"
#include "ids/store.h"

#define ENTERPRISE "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

struct cache;

struct pull {
	const struct ids_pull_ctx *ctx;
	struct ids_snapshot *s;
	size_t rows;
	struct ids_buf rec;  /* the record being made */
	struct cache *cache; /* NULL: none (out of memory) */
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

/* ---- a user's record ----
 * What the mapping of one resource gives, as the builder calls it makes,
 * encoded in a byte string: 'F' field value, 'A' name value, 'I' reason,
 * 'D' disabled (values as a 4-byte length and the bytes; names and
 * reasons NUL-terminated).  Replayed into a snapshot now, and again by
 * the next runs while the user's version is unchanged: the JSON is
 * parsed once per change, not once per run. */

static int rec_val(struct ids_buf *b, const char *v, size_t n)
{
	uint32_t len = (uint32_t)n;
	if (n > UINT32_MAX)
		return -EINVAL;
	return ids_buf_add(b, &len, sizeof(len)) < 0 || ids_buf_add(b, v, n) < 0 ? -ENOMEM : 0;
}

static int rec_field(struct ids_buf *b, enum ids_field f, const char *v, size_t n)
{
	return ids_buf_putc(b, 'F') < 0 || ids_buf_putc(b, (char)f) < 0 ? -ENOMEM : rec_val(b, v, n);
}

static int rec_attr(struct ids_buf *b, const char *name, const char *v, size_t n)
{
	return ids_buf_putc(b, 'A') < 0 || ids_buf_add(b, name, strlen(name) + 1) < 0 ? -ENOMEM
										      : rec_val(b, v, n);
}

/* Record rec[0..n) into s as one user. */
static int replay(struct ids_snapshot *s, const char *rec, size_t n)
{
	size_t i = 0;
	uint32_t len = 0;
	int r = ids_snapshot_user_begin(s);
	while (r >= 0 && i < n) {
		char op = rec[i++];
		const char *name = rec + i + (op == 'F');
		if (op == 'D') {
			r = ids_snapshot_user_disabled(s, true);
			continue;
		}
		if (op == 'I') {
			r = ids_snapshot_user_invalid(s, rec + i);
			i += strlen(rec + i) + 1;
			continue;
		}
		i += op == 'F' ? 1 : strlen(name) + 1;
		memcpy(&len, rec + i, sizeof(len));
		i += sizeof(len);
		r = op == 'F' ? ids_snapshot_user_set(
				    s, (enum ids_field)(unsigned char)rec[i - sizeof(len) - 1], rec + i, len)
			      : ids_snapshot_user_attr(s, name, rec + i, len);
		i += len;
	}
	return r < 0 ? r : ids_snapshot_user_end(s);
}

/* One value of a rule attribute: strings as they are, numbers and
 * booleans as JSON writes them, a multi-valued element by its "value". */
static int add_value(struct ids_buf *b, const char *name, const json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "value");
	if (json_is_string(v))
		return rec_attr(b, name, json_string_value(v), json_string_length(v));
	if (json_is_boolean(v))
		return rec_attr(b, name, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5);
	if (json_is_integer(v)) {
		char t[32];
		int n = snprintf(t, sizeof(t), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return rec_attr(b, name, t, (size_t)n);
	}
	return 0;
}

/* A rule attribute: a path in the resource, else in the enterprise
 * extension (`department`, `manager.value`), as the issue promises. */
static int add_attr(struct ids_buf *b, const json_t *res, const char *name)
{
	const json_t *v = path_get(res, name);
	if (!v)
		v = path_get(json_object_get(res, ENTERPRISE), name);
	if (!json_is_array(v))
		return v ? add_value(b, name, v) : 0;
	size_t i;
	const json_t *e;
	int r = 0;
	json_array_foreach(v, i, e)
	{
		if ((r = add_value(b, name, e)) < 0)
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

static int set_str(struct ids_buf *b, enum ids_field f, const json_t *v)
{
	return json_is_string(v) ? rec_field(b, f, json_string_value(v), json_string_length(v)) : 0;
}

/* No displayName nor name.formatted (Okta often sends neither): the
 * display name is "givenName familyName", as a person would write it. */
static int set_full_name(struct ids_buf *b, const json_t *res)
{
	const char *g = json_string_value(path_get(res, "name.givenName"));
	const char *f = json_string_value(path_get(res, "name.familyName"));
	char *full = NULL;
	if (!g || !f)
		return 0;
	if (asprintf(&full, "%s %s", g, f) < 0)
		return -ENOMEM;
	int r = rec_field(b, IDS_F_DISPLAY_NAME, full, strlen(full));
	free(full);
	return r;
}

/* The record of one stored user into b (emptied first). */
static int map_record(struct ids_buf *b, const char *id, const char *resource, bool active,
		      const struct ids_strv *attrs)
{
	json_t *res = json_loads(resource, JSON_REJECT_DUPLICATES, NULL);
	ids_buf_reset(b);
	int r = rec_field(b, IDS_F_EXTERNAL_ID, id, strlen(id));
	if (r >= 0 && !json_is_object(res))
		r = ids_buf_putc(b, 'I') < 0 || ids_buf_add(b, "stored resource is not a JSON object", 37) < 0
			? -ENOMEM
			: 0;
	if (r >= 0 && json_is_object(res)) {
		const json_t *dn = json_object_get(res, "displayName");
		if (!dn)
			dn = path_get(res, "name.formatted");
		r = set_str(b, IDS_F_USERNAME, json_object_get(res, "userName"));
		if (r >= 0)
			r = set_str(b, IDS_F_EMAIL, pick_email(json_object_get(res, "emails")));
		if (r >= 0)
			r = set_str(b, IDS_F_FIRST_NAME, path_get(res, "name.givenName"));
		if (r >= 0)
			r = set_str(b, IDS_F_LAST_NAME, path_get(res, "name.familyName"));
		if (r >= 0)
			r = dn ? set_str(b, IDS_F_DISPLAY_NAME, dn) : set_full_name(b, res);
		for (size_t i = 0; r >= 0 && attrs && i < attrs->n; i++)
			r = add_attr(b, res, attrs->v[i]);
	}
	if (r >= 0 && !active)
		r = ids_buf_putc(b, 'D') < 0 ? -ENOMEM : 0;
	json_decref(res);
	return r;
}

int ids_scim_map_user(struct ids_snapshot *s, const char *id, const char *resource, bool active,
		      const struct ids_strv *attrs)
{
	struct ids_buf b = {0};
	int r = map_record(&b, id, resource, active, attrs);
	if (r >= 0)
		r = replay(s, b.p, b.len);
	ids_buf_free(&b);
	return r;
}

/* ---- the records kept between runs ----
 * One cache per connector for the daemon's life: a run reads every
 * user's id and version, and the resource only of the users that changed
 * since the run that made the record.  The snapshot is still the whole
 * pushed state, so everything after the pull (deprovisioning, the empty
 * and threshold guards) sees what a full read would give. */
struct centry {
	char *id;
	int64_t version;
	char *rec;
	size_t len;
	unsigned seen; /* the run (cache->run) that last had it */
};

struct cache {
	char *connector;
	char *attrs; /* the rule attributes the records hold, joined: other rules, other records */
	struct centry *v;
	size_t n, cap;
	struct ids_strmap map; /* id (v[i].id) -> i */
	unsigned run;
	/* held for a whole pull: the daemon's workers (sync.workers) may
	 * read one connector at once in a scheduled and a targeted run */
	pthread_mutex_t mu;
};

/* The daemon's workers look caches up at once: caches_mu guards the list
 * (of pointers, so that growing it moves no cache a pull holds). */
static pthread_mutex_t caches_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cache **caches;
static size_t ncaches;

static void cache_clear(struct cache *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].id);
		free(c->v[i].rec);
	}
	free(c->v);
	ids_strmap_free(&c->map);
	c->v = NULL;
	c->n = c->cap = 0;
	c->map = (struct ids_strmap){0};
}

static char *attrs_key(const struct ids_strv *attrs)
{
	struct ids_buf b = {0};
	for (size_t i = 0; attrs && i < attrs->n; i++)
		if (ids_buf_puts(&b, attrs->v[i]) < 0 || ids_buf_putc(&b, '\n') < 0) {
			ids_buf_free(&b);
			return NULL;
		}
	return ids_buf_steal(&b);
}

/* The cache of connector for records of attrs, locked (cache_unlock),
 * NULL when out of memory (the run then reads everything). */
static struct cache *cache_of(const char *connector, const struct ids_strv *attrs)
{
	char *key = attrs_key(attrs);
	struct cache *c = NULL;
	pthread_mutex_lock(&caches_mu);
	for (size_t i = 0; key && i < ncaches && !c; i++)
		if (!strcmp(caches[i]->connector, connector))
			c = caches[i];
	if (key && !c) {
		struct cache **nv = realloc(caches, (ncaches + 1) * sizeof(*nv));
		if (nv)
			caches = nv;
		if (nv && (c = calloc(1, sizeof(*c))) && !(c->connector = strdup(connector))) {
			free(c);
			c = NULL;
		}
		if (c) {
			pthread_mutex_init(&c->mu, NULL);
			caches[ncaches++] = c;
		}
	}
	pthread_mutex_unlock(&caches_mu);
	if (c)
		pthread_mutex_lock(&c->mu);
	if (c && (!c->attrs || strcmp(c->attrs, key) != 0)) {
		cache_clear(c);
		free(c->attrs);
		c->attrs = key;
		key = NULL;
	}
	free(key);
	return c;
}

static void cache_unlock(struct cache *c)
{
	if (c)
		pthread_mutex_unlock(&c->mu);
}

/* Drops the records of users no run saw since the last compaction
 * (deleted ones), once they are a quarter of the cache. */
static void cache_compact(struct cache *c)
{
	size_t stale = 0, j = 0;
	for (size_t i = 0; i < c->n; i++)
		stale += c->v[i].seen != c->run;
	if (stale * 4 < c->n || !stale)
		return;
	ids_strmap_free(&c->map);
	c->map = (struct ids_strmap){0};
	for (size_t i = 0; i < c->n; i++) {
		if (c->v[i].seen != c->run) {
			free(c->v[i].id);
			free(c->v[i].rec);
			continue;
		}
		c->v[j] = c->v[i];
		if (ids_strmap_put(&c->map, c->v[j].id, (uint32_t)j, NULL) < 0) {
			/* no memory: start over, the next run reads all */
			for (size_t k = i + 1; k < c->n; k++) {
				free(c->v[k].id);
				free(c->v[k].rec);
			}
			c->n = j + 1;
			cache_clear(c);
			return;
		}
		j++;
	}
	c->n = j;
}

/* Keeps b's record of id at version. */
static int cache_put(struct cache *c, const char *id, int64_t version, const struct ids_buf *b)
{
	uint32_t at = 0;
	char *rec = malloc(b->len ? b->len : 1);
	if (!rec)
		return -ENOMEM;
	memcpy(rec, b->p, b->len);
	if (ids_strmap_get(&c->map, id, &at)) {
		free(c->v[at].rec);
	} else {
		char *key = strdup(id);
		if (!key || c->n >= UINT32_MAX || ids_grow(&c->v, &c->cap, c->n + 1, sizeof(*c->v)) < 0 ||
		    ids_strmap_put(&c->map, key, (uint32_t)c->n, NULL) < 0) {
			free(key);
			free(rec);
			return -ENOMEM;
		}
		at = (uint32_t)c->n++;
		c->v[at].id = key;
	}
	c->v[at].version = version;
	c->v[at].rec = rec;
	c->v[at].len = b->len;
	c->v[at].seen = c->run;
	return 0;
}

/* Every 1000 rows the run's progress hook (watchdog, SIGTERM). */
static int tick(struct pull *p)
{
	if (++p->rows % 1000 == 0 && p->ctx->progress)
		return p->ctx->progress(p->ctx->ud);
	return 0;
}

static int on_user(void *ud, const char *id, const char *resource, bool active, int64_t version)
{
	struct pull *p = ud;
	int r = map_record(&p->rec, id, resource, active, p->ctx->rule_attrs);
	if (r >= 0)
		r = replay(p->s, p->rec.p, p->rec.len);
	/* a record not kept is read again next time: nothing lost */
	if (r >= 0 && p->cache && cache_put(p->cache, id, version, &p->rec) < 0)
		cache_clear(p->cache);
	return r < 0 ? r : tick(p);
}

static bool want_user(void *ud, const char *id, int64_t version)
{
	struct pull *p = ud;
	uint32_t at = 0;
	return !ids_strmap_get(&p->cache->map, id, &at) || p->cache->v[at].version != version;
}

static int on_cached(void *ud, const char *id)
{
	struct pull *p = ud;
	uint32_t at = 0;
	if (!ids_strmap_get(&p->cache->map, id, &at))
		return -ENOENT; /* want_user said it was there */
	p->cache->v[at].seen = p->cache->run;
	int r = replay(p->s, p->cache->v[at].rec, p->cache->v[at].len);
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
	static const struct ids_scim_reader plain = {.user = on_user, .group = on_group, .member = on_member},
					    cached = {.user = on_user,
						      .group = on_group,
						      .member = on_member,
						      .want = want_user,
						      .cached = on_cached};
	struct ids_store *st = NULL;
	struct pull p = {.ctx = ctx, .s = s, .cache = cache_of(cfg->name, ctx->rule_attrs)};
	const struct ids_scim_reader *rd = p.cache ? &cached : &plain;
	int version = 0;
	int r = ids_store_open(ctx->config, &st, err);
	if (r >= 0)
		r = ids_store_version(st, &version, err);
	/* no schema yet (a `plan` before the first sync): nothing can have
	 * been pushed, since the listener stores into that schema */
	/* a targeted read (sync --user, explain) sees one person: it
	 * refreshes that person's record and leaves the rest of the cache
	 * as the last whole read left it */
	if (p.cache && !ctx->only_user)
		p.cache->run++;
	if (r >= 0 && version > 0)
		r = ctx->only_user ? ids_scim_store_read_user(st, cfg->name, ctx->only_user, &plain, &p, err)
				   : ids_scim_store_read(st, cfg->name, rd, &p, err);
	if (r >= 0 && p.cache && !ctx->only_user)
		cache_compact(p.cache);
	ids_buf_free(&p.rec);
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "pushed state: %s", ids_strerror(r));
	else if (r < 0)
		ids_error_prefix(err, "pushed state");
	s->pages = 1;
	ids_store_close(st);
	cache_unlock(p.cache);
	return r;
}

const struct ids_connector_ops ids_scim_connector = {
    .type = "scim",
    .pull = scim_pull,
};
