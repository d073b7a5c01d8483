/* output.c — --format json for plan, sync and status (output.h,
 * docs/json.md), with jansson.
 *
 * Small objects (a user, a grant, the counts) are jansson trees, encoded
 * with jansson's own separators (", " and ": ").  The documents around
 * them are written by a small streaming writer (struct jw) that places
 * those encoded values one key or one array element at a time: a plan's
 * arrays may hold millions of grants, and a tree of them would cost about
 * a kilobyte each.  The layout puts every user and grant on a line of its
 * own, so that the diff of two plans reads like the text form. */
#include "ids/output.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------- values ---------------- */

static int dump_cb(const char *p, size_t n, void *ud)
{
	return ids_buf_add(ud, p, n) < 0 ? -1 : 0;
}

/* Encodes v (stolen; NULL means jansson ran out of memory) onto b.
 * jansson hands its output over in pieces of a few bytes; encoding into a
 * stack buffer first and appending once saves a quarter of the time a
 * plan of millions of grants takes.  A value too long for the buffer goes
 * through the callback. */
static int put_value(struct ids_buf *b, json_t *v)
{
	char tmp[2048];
	if (!v)
		return -ENOMEM;
	size_t n = json_dumpb(v, tmp, sizeof(tmp), JSON_ENCODE_ANY);
	int r = n && n <= sizeof(tmp)					 ? ids_buf_add(b, tmp, n)
		: json_dump_callback(v, dump_cb, b, JSON_ENCODE_ANY) < 0 ? -ENOMEM
									 : 0;
	json_decref(v);
	return r;
}

json_t *ids_output_jstr(const char *s)
{
	if (!s)
		return json_null();
	if (ids_utf8_valid(s, strlen(s)))
		return json_string(s);
	char *safe = ids_utf8_escape(s);
	json_t *v = safe ? json_string(safe) : NULL;
	free(safe);
	return v;
}

/* An id column: null for 0 (none). */
static json_t *jid(int64_t id)
{
	return id ? json_integer(id) : json_null();
}

/* A nullable timestamp: "2026-01-02T03:04:05Z" or null for 0. */
static json_t *jtime(int64_t usec)
{
	char t[32];
	if (!usec)
		return json_null();
	ids_output_time(usec, t, sizeof(t));
	return json_string(t);
}

/* Sets key to v (stolen) and records a failure in *err: jansson's setters
 * take NULL values as errors, so a failed json_string() ends up here. */
static void set(json_t *o, const char *key, json_t *v, int *err)
{
	if (!o || json_object_set_new(o, key, v) < 0)
		*err = -ENOMEM;
}

/* An object from the setters above, or NULL when any of them failed. */
static json_t *built(json_t *o, int err)
{
	if (err < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *jstrv(const struct ids_strv *v)
{
	json_t *a = json_array();
	int err = 0;
	for (size_t i = 0; a && i < v->n; i++)
		if (json_array_append_new(a, ids_output_jstr(v->v[i])) < 0)
			err = -ENOMEM;
	return built(a, err);
}

void ids_output_time(int64_t usec, char *buf, size_t n)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	if (!usec || !gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, n, "-");
}

/* ---------------- the streaming writer ---------------- */

/* One object being written: `{`, then "key": value members, each on a
 * line indented by `level` steps, then `}`.  The first error sticks in r
 * and makes every later call a no-op. */
struct jw {
	struct ids_buf *b;
	int level; /* of the members: 1 for a top-level object */
	int r;
	bool first;
};

static void jw_indent(struct jw *w, int level)
{
	for (int i = 0; w->r >= 0 && i < level; i++)
		w->r = ids_buf_puts(w->b, "  ");
}

static void jw_begin(struct jw *w, struct ids_buf *b, int level)
{
	*w = (struct jw){.b = b, .level = level, .first = true};
	w->r = ids_buf_putc(b, '{');
}

/* Starts member `key`: its value follows. */
static void jw_key(struct jw *w, const char *key)
{
	if (w->r >= 0)
		w->r = ids_buf_puts(w->b, w->first ? "\n" : ",\n");
	w->first = false;
	jw_indent(w, w->level);
	if (w->r >= 0)
		w->r = put_value(w->b, json_string(key));
	if (w->r >= 0)
		w->r = ids_buf_puts(w->b, ": ");
}

/* A member whose value is a jansson value (stolen). */
static void jw_set(struct jw *w, const char *key, json_t *v)
{
	jw_key(w, key);
	if (w->r >= 0)
		w->r = put_value(w->b, v);
	else
		json_decref(v);
}

/* A member whose value is JSON text already encoded by this file. */
static void jw_set_encoded(struct jw *w, const char *key, const char *json)
{
	jw_key(w, key);
	if (w->r >= 0)
		w->r = ids_buf_puts(w->b, json);
}

/* Element i of an array member (jw_key before the first): each on a line. */
static void jw_element(struct jw *w, size_t i, json_t *v)
{
	if (w->r >= 0)
		w->r = ids_buf_puts(w->b, i ? ",\n" : "[\n");
	jw_indent(w, w->level + 1);
	if (w->r >= 0)
		w->r = put_value(w->b, v);
	else
		json_decref(v);
}

static void jw_end_array(struct jw *w, size_t n)
{
	if (!n) {
		if (w->r >= 0)
			w->r = ids_buf_puts(w->b, "[]");
		return;
	}
	if (w->r >= 0)
		w->r = ids_buf_putc(w->b, '\n');
	jw_indent(w, w->level);
	if (w->r >= 0)
		w->r = ids_buf_putc(w->b, ']');
}

static int jw_end(struct jw *w)
{
	if (w->r >= 0)
		w->r = ids_buf_putc(w->b, '\n');
	jw_indent(w, w->level - 1);
	if (w->r >= 0)
		w->r = ids_buf_putc(w->b, '}');
	return w->r < 0 ? w->r : 0;
}

/* ---------------- the plan ---------------- */

/* The most telling operation of a plan user; the others show in
 * "changes" and "reactivate". */
static const char *user_op(unsigned flags)
{
	if (flags & IDS_PU_SKIP_INVALID)
		return "skip_invalid";
	if (flags & IDS_PU_CONFLICT)
		return "conflict";
	if (flags & IDS_PU_CREATE)
		return "create";
	if (flags & IDS_PU_ADOPT)
		return "adopt";
	if (flags & IDS_PU_DEACTIVATE)
		return "deactivate";
	if (flags & IDS_PU_REACTIVATE)
		return "reactivate";
	return "update"; /* IDS_PU_UPDATE, IDS_PU_REASON */
}

/* {"field": [old, new], ...}: what the store will change on the row. */
static json_t *user_changes(const struct ids_plan *p, const struct ids_plan_user *u)
{
	struct ids_change c[IDS_CHANGES_MAX];
	size_t n = ids_plan_user_changes(u, p->idp, c);
	json_t *o = json_object();
	int err = 0;
	for (size_t i = 0; i < n; i++)
		set(o, c[i].field,
		    c[i].is_bool ? json_pack("[bb]", c[i].old_b, c[i].new_b)
				 : json_pack("[oo]", ids_output_jstr(c[i].old), ids_output_jstr(c[i].new)),
		    &err);
	return built(o, err);
}

/* The users and grants of a plan are written one by one into one object
 * each, reused: setting a key that exists replaces its value in place, so
 * a million grants do not build and tear down a million hash tables (half
 * the time jansson took).  The result is o with one more reference, which
 * put_value() gives back; NULL when a value could not be made. */
static json_t *reused(json_t *o, int err)
{
	return o && err >= 0 ? json_incref(o) : NULL;
}

/* Sets the string member key of a reused object to s (NULL: null): in
 * place when it already holds a string and s is UTF-8 (checked here once:
 * json_string() would check again), else through ids_output_jstr(). */
static void set_str(json_t *o, const char *key, const char *s, int *err)
{
	json_t *v = o ? json_object_get(o, key) : NULL;
	if (s && json_is_string(v) && ids_utf8_valid(s, strlen(s))) {
		if (json_string_set_nocheck(v, s) < 0)
			*err = -ENOMEM;
		return;
	}
	set(o, key, ids_output_jstr(s), err);
}

static json_t *user_json(const struct ids_plan *p, const struct ids_plan_user *u, json_t *o)
{
	int err = 0;
	set_str(o, "op", user_op(u->flags), &err);
	set(o, "id", jid(u->id), &err);
	set_str(o, "external_id", u->external_id, &err);
	set_str(o, "username", u->username, &err);
	set_str(o, "email", u->email, &err);
	set_str(o, "first_name", u->first_name, &err);
	set_str(o, "last_name", u->last_name, &err);
	set_str(o, "display_name", u->display_name, &err);
	set(o, "company_admin", json_boolean(u->company_admin), &err);
	set(o, "reactivate", json_boolean(u->flags & IDS_PU_REACTIVATE), &err);
	set_str(o, "reason", u->reason, &err);
	set(o, "changes", user_changes(p, u), &err);
	return reused(o, err);
}

/* The names of the rules that produced g ([] for a removal), as a new
 * reference to the array of its rule list: made once per list in cache
 * (p->nrule_lists entries, or 1 when the plan has none), since millions of
 * grants name a few lists. */
static json_t *grant_rules(const struct ids_plan *p, const struct ids_plan_grant *g, json_t **cache)
{
	const struct ids_rule_list *l = ids_plan_grant_rules(p, g);
	size_t k = l ? g->rules : 0;
	int err = 0;
	if (cache[k])
		return json_incref(cache[k]);
	json_t *a = json_array();
	for (size_t i = 0; a && l && i < l->n; i++)
		if (json_array_append_new(a, ids_output_jstr(l->names[i])) < 0)
			err = -ENOMEM;
	cache[k] = built(a, err);
	return json_incref(cache[k]);
}

static json_t *grant_json(const struct ids_plan *p, const struct ids_plan_grant *g, json_t *o, json_t **cache)
{
	static const char *const ops[] = {[IDS_GOP_ADD] = "add",
					  [IDS_GOP_REMOVE] = "remove",
					  [IDS_GOP_CHANGE] = "change",
					  [IDS_GOP_RULES] = "rules"};
	bool slot = g->kind == IDS_GRANT_SLOT;
	int err = 0;
	set_str(o, "op", g->op <= IDS_GOP_RULES ? ops[g->op] : "?", &err);
	set_str(o, "kind", ids_plan_kind_word(g->kind), &err);
	set_str(o, "username", g->username, &err);
	set_str(o, "external_id", g->external_id, &err);
	set_str(o, "tenant", g->tenant, &err);
	set_str(o, "name", g->name, &err);
	/* slot values only where they mean something, null elsewhere */
	set(o, "slots", slot ? json_integer(g->slots) : json_null(), &err);
	set(o, "old_slots", slot && g->op == IDS_GOP_CHANGE ? json_integer(g->old_slots) : json_null(), &err);
	set(o, "rules", grant_rules(p, g, cache), &err);
	return reused(o, err);
}

int ids_output_plan_json(const struct ids_plan *p, struct ids_buf *out)
{
	struct jw w;
	json_t *tenants = json_object(), *one = json_object();
	json_t **cache = calloc(p->nrule_lists ? p->nrule_lists : 1, sizeof(*cache));
	int err = cache ? 0 : -ENOMEM;
	set(tenants, "create", jstrv(&p->new_tenants), &err);
	set(tenants, "missing", jstrv(&p->missing_tenants), &err);
	/* level 2: the plan is the value of the run object's "plan" */
	jw_begin(&w, out, 2);
	jw_set(&w, "tenants", built(tenants, err));
	jw_key(&w, "users");
	for (size_t i = 0; i < p->nusers; i++)
		jw_element(&w, i, user_json(p, &p->users[i], one));
	jw_end_array(&w, p->nusers);
	/* the grants' object has other keys: a fresh one */
	json_decref(one);
	one = json_object();
	jw_key(&w, "grants");
	for (size_t i = 0; cache && i < p->ngrants; i++)
		jw_element(&w, i, grant_json(p, &p->grants[i], one, cache));
	jw_end_array(&w, p->ngrants);
	json_decref(one);
	for (size_t i = 0; cache && i < (p->nrule_lists ? p->nrule_lists : 1); i++)
		json_decref(cache[i]);
	free(cache);
	return jw_end(&w);
}

/* ---------------- a run ---------------- */

/* The counts as `plan`, `sync` and `status` show them. */
static json_t *counts_json(const struct ids_plan_counts *c)
{
	return json_pack("{sI sI sI sI sI sI sI sI sI sI}", "created", (json_int_t)c->created, "updated",
			 (json_int_t)c->updated, "deactivated", (json_int_t)c->deactivated, "reactivated",
			 (json_int_t)c->reactivated, "grants_added", (json_int_t)c->grants_added,
			 "grants_removed", (json_int_t)c->grants_removed, "conflicts",
			 (json_int_t)c->conflicts, "skipped_invalid", (json_int_t)c->skipped_invalid,
			 "users_seen", (json_int_t)c->users_seen, "grants_rules_changed",
			 (json_int_t)c->grants_rules_changed);
}

/* The safety verdict a run's status implies: null when no plan was made
 * (nothing was judged), else ok or the guard that stopped it. */
static json_t *verdict_json(const char *status, bool planned)
{
	if (!planned)
		return json_null();
	if (status && strncmp(status, "aborted_", 8) == 0)
		return json_string(status);
	return json_string("ok");
}

static json_t *timings_json(const struct ids_sync_result *res)
{
	return json_pack("{sf sf sf sf sf sf}", "fetch", res->t.fetch, "resolve", res->t.resolve, "rules",
			 res->t.rules, "load", res->t.load, "diff", res->t.diff, "apply", res->t.apply);
}

int ids_output_run_json(const char *connector, const struct ids_sync_result *res, const char *plan_json,
			struct ids_buf *out)
{
	const char *st = res->status ? res->status : "failed";
	bool aborted = strncmp(st, "aborted_", 8) == 0;
	/* a dry run writes nothing, and its output must be the same bytes for
	 * the same directory (semantics.md): no clock, no memory figures */
	bool measured = strcmp(st, "dry_run") != 0;
	struct jw w;
	jw_begin(&w, out, 1);
	jw_set(&w, "format_version", json_integer(IDS_OUTPUT_FORMAT_VERSION));
	jw_set(&w, "connector", ids_output_jstr(connector));
	jw_set(&w, "status", json_string(st));
	jw_set(&w, "verdict", verdict_json(st, plan_json != NULL));
	/* an aborted run did not fail: why it stopped is the verdict's reason */
	jw_set(&w, "verdict_reason", aborted ? ids_output_jstr(res->error) : json_null());
	jw_set(&w, "error", aborted ? json_null() : ids_output_jstr(res->error));
	jw_set(&w, "run_id", jid(res->run_id));
	jw_set(&w, "held_run", jid(res->held_run));
	jw_set(&w, "summary", plan_json ? counts_json(&res->counts) : json_null());
	jw_set(&w, "timings", measured ? timings_json(res) : json_null());
	jw_set(&w, "rows_written", json_integer(res->rows_written));
	jw_set(&w, "peak_rss_kib",
	       measured && res->peak_rss_kib ? json_integer(res->peak_rss_kib) : json_null());
	if (plan_json)
		jw_set_encoded(&w, "plan", plan_json);
	else
		jw_set(&w, "plan", json_null());
	return jw_end(&w);
}

/* ---------------- status ---------------- */

static const struct ids_schedule_row *next_run_of(const struct ids_output_status *s, const char *connector)
{
	for (size_t i = 0; i < s->nschedule; i++)
		if (strcmp(s->schedule[i].connector, connector) == 0)
			return &s->schedule[i];
	return NULL;
}

/* One connector's last run, with the keys of a run object where they
 * mean the same (connector, status, verdict, error, run_id, summary). */
static json_t *status_run_json(const struct ids_output_status *s, const struct ids_run_row *w)
{
	const struct ids_schedule_row *nx = next_run_of(s, w->connector);
	bool aborted = strncmp(w->status, "aborted_", 8) == 0;
	json_t *o = json_object();
	int err = 0;
	set(o, "connector", ids_output_jstr(w->connector), &err);
	set(o, "configured", json_boolean(ids_strv_contains(s->configured, w->connector, false)), &err);
	set(o, "run_id", jid(w->id), &err);
	set(o, "status", ids_output_jstr(w->status), &err);
	set(o, "verdict", verdict_json(w->status, w->has_counts), &err);
	set(o, "verdict_reason", aborted ? ids_output_jstr(w->error) : json_null(), &err);
	set(o, "error", aborted ? json_null() : ids_output_jstr(w->error), &err);
	set(o, "started_at", jtime(w->started_at), &err);
	set(o, "finished_at", jtime(w->finished_at), &err);
	set(o, "summary", w->has_counts ? counts_json(&w->counts) : json_null(), &err);
	set(o, "next_run_at", jtime(nx ? nx->next_at : 0), &err);
	set(o, "next_run_by", ids_output_jstr(nx ? nx->instance : NULL), &err);
	set(o, "running_on", ids_output_jstr(nx ? nx->running_on : NULL), &err);
	set(o, "overdue_seconds", nx ? json_integer(nx->overdue) : json_null(), &err);
	return built(o, err);
}

/* status's "held" and "daemons" arrays (docs/json.md). */
static json_t *status_held_json(const struct ids_output_status *s)
{
	json_t *a = json_array();
	int err = 0;
	for (size_t i = 0; a && i < s->nheld; i++) {
		const struct ids_held *h = &s->held[i];
		json_t *o = json_object();
		set(o, "run_id", json_integer((json_int_t)h->run_id), &err);
		set(o, "connector", ids_output_jstr(h->connector), &err);
		set(o, "reason", ids_output_jstr(h->reason), &err);
		set(o, "created_at", jtime(h->created_at), &err);
		set(o, "expires_at", jtime(h->expires_at), &err);
		if (json_array_append_new(a, built(o, err)) < 0)
			err = -ENOMEM;
	}
	return built(a, err);
}

static json_t *status_daemons_json(const struct ids_output_status *s)
{
	json_t *a = json_array();
	int err = 0;
	for (size_t i = 0; a && i < s->nheartbeats; i++) {
		const struct ids_heartbeat *h = &s->heartbeats[i];
		json_t *o = json_object();
		set(o, "instance", ids_output_jstr(h->instance), &err);
		set(o, "running", json_boolean(s->alive && s->alive[i]), &err);
		set(o, "heartbeat_at", jtime(h->at), &err);
		set(o, "heartbeat_age_seconds", json_integer((json_int_t)h->age_seconds), &err);
		set(o, "syncing", ids_output_jstr(h->running), &err);
		if (json_array_append_new(a, built(o, err)) < 0)
			err = -ENOMEM;
	}
	return built(a, err);
}

const char *ids_output_search_holder(const struct ids_output_feed *fd)
{
	const struct ids_persist_row *p = fd->search;
	return p && p->live && *p->holder ? p->holder : NULL;
}

/* A persist connector's search (status's `persist` line): null fields
 * when no daemon has held it yet. */
static json_t *status_search_json(const struct ids_output_feed *fd)
{
	const struct ids_persist_row *p = fd->search;
	json_t *o = json_object();
	int err = 0;
	set(o, "state", ids_output_jstr(p ? fd->search_state : NULL), &err);
	set(o, "since", jtime(p ? p->since : 0), &err);
	set(o, "daemon", ids_output_jstr(ids_output_search_holder(fd)), &err);
	set(o, "error", ids_output_jstr(p ? p->error : NULL), &err);
	set(o, "outages", json_integer(p ? (json_int_t)p->reconnects : 0), &err);
	return built(o, err);
}

/* status's "changes" array: per configured connector, its feed (the
 * text's `changes` line) and, with persist, its search. */
static json_t *status_feeds_json(const struct ids_output_status *s)
{
	json_t *a = json_array();
	int err = 0;
	for (size_t i = 0; a && i < s->nfeeds; i++) {
		const struct ids_output_feed *fd = &s->feeds[i];
		const struct ids_feed_state *f = fd->feed;
		bool cur = f->cursor != NULL;
		json_t *o = json_object();
		set(o, "connector", ids_output_jstr(fd->connector), &err);
		set(o, "mode", ids_output_jstr(fd->mode), &err);
		set(o, "cursor_at", cur ? jtime(f->cursor_at) : json_null(), &err);
		set(o, "cursor_age_seconds",
		    cur && f->cursor_at ? json_integer((json_int_t)((s->now - f->cursor_at) / 1000000))
					: json_null(),
		    &err);
		set(o, "cursor_server", ids_output_jstr(cur ? f->cursor_server : NULL), &err);
		set(o, "last_full_at", jtime(f->last_full_at), &err);
		set(o, "resets", json_integer(f->resets), &err);
		set(o, "last_reset_at", jtime(f->last_reset_reason ? f->last_reset_at : 0), &err);
		set(o, "last_reset_reason", ids_output_jstr(f->last_reset_reason), &err);
		set(o, "persist", fd->persist ? status_search_json(fd) : json_null(), &err);
		if (json_array_append_new(a, built(o, err)) < 0)
			err = -ENOMEM;
	}
	return built(a, err);
}

int ids_output_status_json(const struct ids_output_status *s, struct ids_buf *out)
{
	json_t *doc = json_object(), *runs = json_array(), *orph = json_array();
	int err = 0;
	for (size_t i = 0; runs && i < s->nruns; i++)
		if (json_array_append_new(runs, status_run_json(s, &s->runs[i])) < 0)
			err = -ENOMEM;
	for (size_t i = 0; orph && i < s->norphans; i++)
		if (json_array_append_new(orph, json_pack("{so sI sI}", "connector",
							  ids_output_jstr(s->orphans[i].source), "users",
							  (json_int_t)s->orphans[i].total, "active",
							  (json_int_t)s->orphans[i].active)) < 0)
			err = -ENOMEM;
	json_t *lic = json_array();
	for (size_t i = 0; lic && i < s->nlicences; i++) {
		const struct ids_licence_status *l = &s->licences[i];
		if (json_array_append_new(
			lic, json_pack("{so so sI sI sI}", "company", ids_output_jstr(l->company), "role",
				       ids_output_jstr(l->role), "limit", (json_int_t)l->limit, "used",
				       (json_int_t)l->used, "waiting", (json_int_t)l->waiting)) < 0)
			err = -ENOMEM;
	}
	set(doc, "format_version", json_integer(IDS_OUTPUT_FORMAT_VERSION), &err);
	set(doc, "connectors", built(runs, err), &err);
	set(doc, "orphaned", built(orph, err), &err);
	set(doc, "licences", built(lic, err), &err);
	set(doc, "held", status_held_json(s), &err);
	set(doc, "daemons", status_daemons_json(s), &err);
	json_t *stale = s->stale ? json_array() : json_null();
	for (size_t i = 0; s->stale && stale && i < s->stale->n; i++)
		if (json_array_append_new(stale, ids_output_jstr(s->stale->v[i])) < 0)
			err = -ENOMEM;
	set(doc, "stale", built(stale, err), &err);
	set(doc, "changes", status_feeds_json(s), &err);
	int r = err < 0 ? (json_decref(doc), err) : put_value(out, doc);
	return r < 0 ? r : ids_buf_putc(out, '\n');
}
