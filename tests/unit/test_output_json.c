/* test_output_json.c — --format json (output.h, docs/json.md) on
 * hand-built plans and run results: the plan object byte for byte, every
 * run outcome with one key set, status, and values jansson would refuse.
 * Expected values are written from docs/json.md, not taken from a run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ids/output.h"

/* Parses text (which must be one JSON document) and returns it, new. */
static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	if (!v)
		fail_msg("not JSON (%s at %d:%d):\n%s", e.text, e.line, e.column, text);
	return v;
}

static struct ids_rule_list *mklist(size_t n, const char *a, const char *b)
{
	struct ids_rule_list *l = calloc(1, sizeof(*l) + 2 * sizeof(l->names[0]));
	assert_non_null(l);
	l->n = n;
	l->names[0] = a;
	l->names[1] = b;
	return l;
}

/* The example of semantics.md, built by hand (as test_core_plan_format). */
static void test_plan_object(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_cur_user pd = {.id = 42,
				  .source = "corp-ad",
				  .external_id = "e-pd",
				  .username = "pdvorak",
				  .auth_method = "sso",
				  .idp = "entra",
				  .active = true};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE,
	     .external_id = "e-jn",
	     .username = "jnovak",
	     .email = "jan.novak@corp.example",
	     .first_name = "Jan",
	     .last_name = "Novák"},
	    {.flags = IDS_PU_DEACTIVATE,
	     .id = 42,
	     .external_id = "e-pd",
	     .username = "pdvorak",
	     .reason = "disabled_in_source",
	     .cur = &pd},
	};
	struct ids_plan_grant grants[] = {
	    {IDS_GOP_ADD, IDS_GRANT_ROLE, 1, "e-jn", "jnovak", "support-cz", "operator", 0, 0, 0},
	    {IDS_GOP_CHANGE, IDS_GRANT_SLOT, 2, "e-jn", "jnovak", "support-cz", "live", 3, 2, 0},
	    {IDS_GOP_REMOVE, IDS_GRANT_CHANNEL, 0, "e-pd", "pdvorak", "support-cz", "email", 0, 0, 42},
	    {IDS_GOP_REMOVE, IDS_GRANT_CHANNEL, 1, "e-pd", "pdvorak", "support-cz", "sms", 0, 0, 42},
	};
	struct ids_rule_list *one = mklist(1, "cz-support", NULL), *two = mklist(2, "base", "seniors");
	const struct ids_rule_list *lists[] = {NULL, one, two};
	char *missing[] = {"zzz", NULL};
	struct ids_plan p = {.connector = "corp-ad",
			     .idp = "entra",
			     .users = users,
			     .nusers = 2,
			     .grants = grants,
			     .ngrants = 4,
			     .missing_tenants = {missing, 1},
			     .rule_lists = lists,
			     .nrule_lists = 3};

	assert_int_equal(ids_output_plan_json(&p, &b), 0);
	/* the layout of docs/json.md: one user or grant per line, at the
	 * second level of the run object */
	assert_string_equal(
	    b.p,
	    "{\n"
	    "    \"tenants\": {\"create\": [], \"missing\": [\"zzz\"]},\n"
	    "    \"users\": [\n"
	    "      {\"op\": \"create\", \"id\": null, \"external_id\": \"e-jn\", \"username\": \"jnovak\", "
	    "\"email\": \"jan.novak@corp.example\", \"first_name\": \"Jan\", \"last_name\": \"Novák\", "
	    "\"display_name\": null, \"company_admin\": false, \"reactivate\": false, \"reason\": null, "
	    "\"changes\": {}},\n"
	    "      {\"op\": \"deactivate\", \"id\": 42, \"external_id\": \"e-pd\", \"username\": "
	    "\"pdvorak\", "
	    "\"email\": null, \"first_name\": null, \"last_name\": null, \"display_name\": null, "
	    "\"company_admin\": false, \"reactivate\": false, \"reason\": \"disabled_in_source\", "
	    "\"changes\": {\"active\": [true, false], \"deactivation_reason\": [null, "
	    "\"disabled_in_source\"]}}\n"
	    "    ],\n"
	    "    \"grants\": [\n"
	    "      {\"op\": \"add\", \"kind\": \"role\", \"username\": \"jnovak\", \"external_id\": "
	    "\"e-jn\", "
	    "\"tenant\": \"support-cz\", \"name\": \"operator\", \"slots\": null, \"old_slots\": null, "
	    "\"rules\": [\"cz-support\"]},\n"
	    "      {\"op\": \"change\", \"kind\": \"slot\", \"username\": \"jnovak\", \"external_id\": "
	    "\"e-jn\", \"tenant\": \"support-cz\", \"name\": \"live\", \"slots\": 3, \"old_slots\": 2, "
	    "\"rules\": [\"base\", \"seniors\"]},\n"
	    "      {\"op\": \"remove\", \"kind\": \"channel\", \"username\": \"pdvorak\", \"external_id\": "
	    "\"e-pd\", \"tenant\": \"support-cz\", \"name\": \"email\", \"slots\": null, \"old_slots\": "
	    "null, \"rules\": []},\n"
	    "      {\"op\": \"remove\", \"kind\": \"channel\", \"username\": \"pdvorak\", \"external_id\": "
	    "\"e-pd\", \"tenant\": \"support-cz\", \"name\": \"sms\", \"slots\": null, \"old_slots\": "
	    "null, \"rules\": [\"cz-support\"]}\n"
	    "    ]\n"
	    "  }");
	json_decref(parse(b.p));

	/* an empty plan: empty arrays, still an object */
	ids_buf_reset(&b);
	struct ids_plan empty = {.connector = "x"};
	assert_int_equal(ids_output_plan_json(&empty, &b), 0);
	assert_string_equal(b.p, "{\n"
				 "    \"tenants\": {\"create\": [], \"missing\": []},\n"
				 "    \"users\": [],\n"
				 "    \"grants\": []\n"
				 "  }");
	ids_buf_free(&b);
	free(one);
	free(two);
}

/* Updates and adoptions: changes as [old, new]; auth_method and idp only
 * where they move; a reactivation clears the reason. */
static void test_user_changes(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_cur_user adopted = {
	    .id = 17, .username = "jan", .email = "jan@x", .auth_method = "activation_link", .active = false};
	struct ids_cur_user upd = {.id = 18,
				   .source = "corp-ad",
				   .external_id = "e-ba",
				   .username = "bara",
				   .email = "b@x",
				   .last_name = "Old",
				   .auth_method = "sso",
				   .idp = "google",
				   .active = true};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_ADOPT | IDS_PU_REACTIVATE,
	     .changed = IDS_CH_USERNAME | IDS_CH_AUTH,
	     .id = 17,
	     .external_id = "e-jn",
	     .username = "jnovak",
	     .email = "jan@x",
	     .cur = &adopted},
	    {.flags = IDS_PU_UPDATE,
	     .changed = IDS_CH_EMAIL | IDS_CH_LAST_NAME | IDS_CH_COMPANY_ADMIN | IDS_CH_AUTH,
	     .id = 18,
	     .external_id = "e-ba",
	     .username = "bara",
	     .last_name = "Nová",
	     .company_admin = true,
	     .cur = &upd},
	};
	struct ids_plan p = {.connector = "c", .idp = "ldap", .users = users, .nusers = 2};
	assert_int_equal(ids_output_plan_json(&p, &b), 0);
	json_t *doc = parse(b.p);
	json_t *u = json_object_get(doc, "users");
	assert_int_equal(json_array_size(u), 2);
	char *c0 = json_dumps(json_object_get(json_array_get(u, 0), "changes"), JSON_COMPACT);
	char *c1 = json_dumps(json_object_get(json_array_get(u, 1), "changes"), JSON_COMPACT);
	assert_string_equal(c0, "{\"username\":[\"jan\",\"jnovak\"],\"auth_method\":[\"activation_link\","
				"\"sso\"],\"idp\":[null,\"ldap\"],\"active\":[false,true],"
				"\"deactivation_reason\":[null,null]}");
	assert_string_equal(c1, "{\"email\":[\"b@x\",null],\"last_name\":[\"Old\",\"Nová\"],"
				"\"company_admin\":[false,true],\"idp\":[\"google\",\"ldap\"]}");
	assert_string_equal(json_string_value(json_object_get(json_array_get(u, 0), "op")), "adopt");
	assert_true(json_is_true(json_object_get(json_array_get(u, 0), "reactivate")));
	free(c0);
	free(c1);
	json_decref(doc);
	ids_buf_free(&b);
}

/* Directory values that are not UTF-8 (a skipped user's) and control
 * characters still give valid JSON that says what they were. */
static void test_values_jansson_refuses(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	/* one object is reused from user to user: values change type (string,
	 * null) and validity between them, and none may leak into the next */
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "e-1", .username = "a", .email = "a@x"},
	    {.flags = IDS_PU_SKIP_INVALID, .external_id = "e-\xff\xfe", .reason = "bad \"utf-8\"\n"},
	    {.flags = IDS_PU_CREATE, .external_id = "e-3", .username = "c"},
	};
	struct ids_plan p = {.connector = "c", .users = users, .nusers = 3};
	assert_int_equal(ids_output_plan_json(&p, &b), 0);
	json_t *doc = parse(b.p);
	json_t *u = json_array_get(json_object_get(doc, "users"), 1);
	assert_string_equal(json_string_value(json_object_get(u, "external_id")), "e-\\xff\\xfe");
	assert_string_equal(json_string_value(json_object_get(u, "reason")), "bad \"utf-8\"\n");
	assert_string_equal(json_string_value(json_object_get(u, "op")), "skip_invalid");
	assert_true(json_is_null(json_object_get(u, "username")));
	assert_true(json_is_null(json_object_get(u, "email")));
	u = json_array_get(json_object_get(doc, "users"), 2);
	assert_string_equal(json_string_value(json_object_get(u, "external_id")), "e-3");
	assert_string_equal(json_string_value(json_object_get(u, "username")), "c");
	assert_true(json_is_null(json_object_get(u, "email")));
	assert_true(json_is_null(json_object_get(u, "reason")));
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(json_object_get(doc, "users"), 0), "email")),
	    "a@x");
	json_decref(doc);
	ids_buf_free(&b);
	/* only the bytes that are no character are escaped: "ë" (two bytes)
	 * stays, the stray \xff and a character cut short do not */
	json_t *v = ids_output_jstr("Zo\xc3\xab\xff \xe2\x82");
	assert_string_equal(json_string_value(v), "Zo\xc3\xab\\xff \\xe2\\x82");
	json_decref(v);
}

/* The keys every run object has, in this order (docs/json.md). */
static const char *const run_keys[] = {
    "format_version", "connector", "status",  "verdict",      "verdict_reason", "error", "run_id",
    "held_run",	      "summary",   "timings", "rows_written", "peak_rss_kib",	"plan"};

static json_t *run_obj(const char *conn, const struct ids_sync_result *res, const char *plan)
{
	struct ids_buf b = {0};
	assert_int_equal(ids_output_run_json(conn, res, plan, &b), 0);
	json_t *v = parse(b.p);
	ids_buf_free(&b);
	size_t i = 0;
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val)
	{
		assert_true(i < sizeof(run_keys) / sizeof(run_keys[0]));
		assert_string_equal(key, run_keys[i]);
		i++;
	}
	assert_int_equal(i, sizeof(run_keys) / sizeof(run_keys[0]));
	assert_int_equal(json_integer_value(json_object_get(v, "format_version")), IDS_OUTPUT_FORMAT_VERSION);
	return v;
}

static const char *sget(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Issue 12.6: ok, failed, aborted, skipped and dry run give one shape. */
static void test_every_outcome_one_shape(void **state)
{
	(void)state;
	struct ids_buf pb = {0};
	struct ids_plan p = {.connector = "corp"};
	assert_int_equal(ids_output_plan_json(&p, &pb), 0);
	struct ids_sync_result ok = {.status = "ok",
				     .run_id = 7,
				     .counts = {.users_seen = 3, .created = 1},
				     .t = {.fetch = 0.5, .apply = 0.25},
				     .rows_written = 4,
				     .peak_rss_kib = 2048};
	json_t *v = run_obj("corp", &ok, pb.p);
	assert_string_equal(sget(v, "status"), "ok");
	assert_string_equal(sget(v, "verdict"), "ok");
	assert_true(json_is_null(json_object_get(v, "error")));
	assert_int_equal(json_integer_value(json_object_get(v, "run_id")), 7);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "summary"), "created")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "summary"), "users_seen")), 3);
	assert_true(json_real_value(json_object_get(json_object_get(v, "timings"), "fetch")) == 0.5);
	assert_int_equal(json_integer_value(json_object_get(v, "rows_written")), 4);
	assert_int_equal(json_integer_value(json_object_get(v, "peak_rss_kib")), 2048);
	assert_true(json_is_array(json_object_get(json_object_get(v, "plan"), "grants")));
	json_decref(v);

	/* failed in the pull: no plan, no counts, the error */
	struct ids_sync_result failed = {
	    .status = "failed", .run_id = 8, .error = "ldap: connection refused"};
	v = run_obj("corp", &failed, NULL);
	assert_string_equal(sget(v, "status"), "failed");
	assert_true(json_is_null(json_object_get(v, "verdict")));
	assert_string_equal(sget(v, "error"), "ldap: connection refused");
	assert_true(json_is_null(json_object_get(v, "summary")));
	assert_true(json_is_null(json_object_get(v, "plan")));
	json_decref(v);

	/* aborted by a guard: a plan, its verdict and why; not an error */
	struct ids_sync_result aborted = {.status = "aborted_threshold",
					  .run_id = 9,
					  .held_run = 7,
					  .counts = {.deactivated = 4},
					  .error = "4 deactivations exceed max_deactivations 3"};
	v = run_obj("corp", &aborted, pb.p);
	assert_string_equal(sget(v, "verdict"), "aborted_threshold");
	assert_string_equal(sget(v, "verdict_reason"), "4 deactivations exceed max_deactivations 3");
	assert_true(json_is_null(json_object_get(v, "error")));
	assert_int_equal(json_integer_value(json_object_get(v, "held_run")), 7);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "summary"), "deactivated")),
			 4);
	json_decref(v);

	/* skipped: another instance holds the lock */
	struct ids_sync_result locked = {.status = "skipped_locked",
					 .error = "another instance holds the lock"};
	v = run_obj("corp", &locked, NULL);
	assert_string_equal(sget(v, "status"), "skipped_locked");
	assert_true(json_is_null(json_object_get(v, "run_id")));
	json_decref(v);

	/* a dry run: the same bytes for the same directory, so no clock */
	struct ids_sync_result dry = {.status = "dry_run", .t = {.fetch = 0.1}, .peak_rss_kib = 9};
	v = run_obj("corp", &dry, pb.p);
	assert_string_equal(sget(v, "verdict"), "ok");
	assert_true(json_is_null(json_object_get(v, "timings")));
	assert_true(json_is_null(json_object_get(v, "peak_rss_kib")));
	assert_int_equal(json_integer_value(json_object_get(v, "rows_written")), 0);
	json_decref(v);
	ids_buf_free(&pb);
}

static void test_status(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_run_row runs[] = {
	    {.id = 3,
	     .connector = "corp",
	     .status = "ok",
	     .started_at = INT64_C(1767323045123456),
	     .finished_at = INT64_C(1767323046000000),
	     .counts = {.users_seen = 5},
	     .has_counts = true},
	    {.id = 4, .connector = "old", .status = "failed", .error = "boom", .started_at = 1000000},
	};
	char *names[] = {"corp", NULL};
	struct ids_strv configured = {names, 1};
	struct ids_schedule_row sched[] = {
	    {.connector = "corp", .instance = "h:1", .running_on = "h:2", .next_at = 1000000, .overdue = 75}};
	struct ids_orphan orph[] = {{.source = "old", .active = 1, .total = 2}};
	struct ids_licence_status lic[] = {
	    {.company = "acme", .role = "phone", .limit = 50, .used = 50, .waiting = 10}};
	struct ids_held held[] = {{.run_id = 42,
				   .connector = "corp",
				   .reason = "612 deactivations over the limit of 500",
				   .created_at = 1000000,
				   .expires_at = 2000000}};
	struct ids_heartbeat hb[] = {
	    {.instance = "h:1", .at = 3000000, .age_seconds = 12},
	    {.instance = "h:2", .running = "corp", .at = 1000000, .age_seconds = 900}};
	const bool alive[] = {true, false};
	struct ids_output_status s = {.runs = runs,
				      .nruns = 2,
				      .configured = &configured,
				      .schedule = sched,
				      .nschedule = 1,
				      .orphans = orph,
				      .norphans = 1,
				      .held = held,
				      .nheld = 1,
				      .heartbeats = hb,
				      .nheartbeats = 2,
				      .alive = alive,
				      .licences = lic,
				      .nlicences = 1};
	assert_int_equal(ids_output_status_json(&s, &b), 0);
	json_t *doc = parse(b.p);
	assert_int_equal(json_integer_value(json_object_get(doc, "format_version")),
			 IDS_OUTPUT_FORMAT_VERSION);
	json_t *c = json_object_get(doc, "connectors");
	json_t *corp = json_array_get(c, 0), *old = json_array_get(c, 1);
	assert_int_equal(json_object_size(corp), json_object_size(old));
	assert_string_equal(sget(corp, "started_at"), "2026-01-02T03:04:05Z");
	assert_string_equal(sget(corp, "next_run_at"), "1970-01-01T00:00:01Z");
	assert_string_equal(sget(corp, "verdict"), "ok");
	assert_true(json_is_true(json_object_get(corp, "configured")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(corp, "summary"), "users_seen")),
			 5);
	assert_string_equal(sget(old, "error"), "boom");
	assert_true(json_is_null(json_object_get(old, "summary")));
	assert_true(json_is_null(json_object_get(old, "finished_at")));
	assert_true(json_is_null(json_object_get(old, "next_run_by")));
	assert_string_equal(sget(corp, "running_on"), "h:2");
	assert_int_equal(json_integer_value(json_object_get(corp, "overdue_seconds")), 75);
	assert_true(json_is_null(json_object_get(old, "overdue_seconds")));
	char *o = json_dumps(json_object_get(doc, "orphaned"), JSON_COMPACT);
	assert_string_equal(o, "[{\"connector\":\"old\",\"users\":2,\"active\":1}]");
	free(o);
	o = json_dumps(json_object_get(doc, "licences"), JSON_COMPACT);
	assert_string_equal(
	    o, "[{\"company\":\"acme\",\"role\":\"phone\",\"limit\":50,\"used\":50,\"waiting\":10}]");
	free(o);
	/* issue 17: the held plans, the daemons' heartbeats, --max-age */
	o = json_dumps(json_object_get(doc, "held"), JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(o, "[{\"connector\":\"corp\",\"created_at\":\"1970-01-01T00:00:01Z\","
			       "\"expires_at\":\"1970-01-01T00:00:02Z\",\"reason\":\"612 deactivations over "
			       "the limit of 500\",\"run_id\":42}]");
	free(o);
	o = json_dumps(json_object_get(doc, "daemons"), JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(o, "[{\"heartbeat_age_seconds\":12,\"heartbeat_at\":\"1970-01-01T00:00:03Z\","
			       "\"instance\":\"h:1\",\"running\":true,\"syncing\":null},"
			       "{\"heartbeat_age_seconds\":900,\"heartbeat_at\":\"1970-01-01T00:00:01Z\","
			       "\"instance\":\"h:2\",\"running\":false,\"syncing\":\"corp\"}]");
	free(o);
	assert_true(json_is_null(json_object_get(doc, "stale")));
	json_decref(doc);
	ids_buf_reset(&b);
	char *stale_v[] = {"corp", NULL};
	struct ids_strv stale = {stale_v, 1};
	s.stale = &stale;
	assert_int_equal(ids_output_status_json(&s, &b), 0);
	doc = parse(b.p);
	o = json_dumps(json_object_get(doc, "stale"), JSON_COMPACT);
	assert_string_equal(o, "[\"corp\"]");
	free(o);
	json_decref(doc);
	ids_buf_free(&b);
}

/* issue 14: status's "changes", per configured connector — the text's
 * `changes` and `persist` lines: a DirSync cursor with its DC and a
 * reset, a feed with no cursor yet, a persist search up on a daemon, one
 * whose holder's lease ran out, one no daemon held yet. */
static void test_status_changes(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	unsigned char cur[] = {1, 2, 3};
	char *names[] = {"ad", "fresh", "corp", "branch", "new", NULL};
	struct ids_strv configured = {names, 5};
	struct ids_feed_state ad = {.cursor = cur,
				    .cursor_len = 3,
				    .cursor_server = "dc1.corp.example",
				    .cursor_at = 1000000,
				    .last_full_at = 2000000,
				    .last_reset_at = 3000000,
				    .resets = 2,
				    .last_reset_reason = "a DirSync cursor of another domain controller"};
	struct ids_feed_state none = {0};
	struct ids_feed_state corp = {
	    .cursor = cur, .cursor_len = 3, .cursor_at = 61000000, .last_full_at = 5000000};
	struct ids_persist_row up = {.holder = "h:1", .live = true, .since = 4000000, .reconnects = 1};
	struct ids_persist_row gone = {
	    .holder = "h:2", .live = false, .since = 5000000, .error = "connection refused", .reconnects = 3};
	struct ids_output_feed feeds[] = {
	    {.connector = "ad", .mode = "auto (dirsync)", .feed = &ad},
	    {.connector = "fresh", .mode = "full", .feed = &none},
	    {.connector = "corp",
	     .mode = "auto",
	     .feed = &corp,
	     .persist = true,
	     .search = &up,
	     .search_state = "up"},
	    {.connector = "branch",
	     .mode = "auto",
	     .feed = &none,
	     .persist = true,
	     .search = &gone,
	     .search_state = "reconnecting"},
	    {.connector = "new", .mode = "auto", .feed = &none, .persist = true},
	};
	struct ids_output_status s = {
	    .configured = &configured, .feeds = feeds, .nfeeds = 5, .now = 121000000};
	assert_int_equal(ids_output_status_json(&s, &b), 0);
	json_t *doc = parse(b.p);
	json_t *c = json_object_get(doc, "changes");
	assert_int_equal(json_array_size(c), 5);
	char *o = json_dumps(json_array_get(c, 0), JSON_COMPACT);
	assert_string_equal(
	    o, "{\"connector\":\"ad\",\"mode\":\"auto (dirsync)\","
	       "\"cursor_at\":\"1970-01-01T00:00:01Z\",\"cursor_age_seconds\":120,"
	       "\"cursor_server\":\"dc1.corp.example\",\"last_full_at\":\"1970-01-01T00:00:02Z\","
	       "\"resets\":2,\"last_reset_at\":\"1970-01-01T00:00:03Z\","
	       "\"last_reset_reason\":\"a DirSync cursor of another domain controller\","
	       "\"persist\":null}");
	free(o);
	o = json_dumps(json_array_get(c, 1), JSON_COMPACT);
	assert_string_equal(
	    o, "{\"connector\":\"fresh\",\"mode\":\"full\",\"cursor_at\":null,"
	       "\"cursor_age_seconds\":null,\"cursor_server\":null,\"last_full_at\":null,"
	       "\"resets\":0,\"last_reset_at\":null,\"last_reset_reason\":null,\"persist\":null}");
	free(o);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(c, 2), "cursor_age_seconds")), 60);
	o = json_dumps(json_object_get(json_array_get(c, 2), "persist"), JSON_COMPACT);
	assert_string_equal(o, "{\"state\":\"up\",\"since\":\"1970-01-01T00:00:04Z\",\"daemon\":\"h:1\","
			       "\"error\":null,\"outages\":1}");
	free(o);
	o = json_dumps(json_object_get(json_array_get(c, 3), "persist"), JSON_COMPACT);
	assert_string_equal(o,
			    "{\"state\":\"reconnecting\",\"since\":\"1970-01-01T00:00:05Z\",\"daemon\":null,"
			    "\"error\":\"connection refused\",\"outages\":3}");
	free(o);
	o = json_dumps(json_object_get(json_array_get(c, 4), "persist"), JSON_COMPACT);
	assert_string_equal(o,
			    "{\"state\":null,\"since\":null,\"daemon\":null,\"error\":null,\"outages\":0}");
	free(o);
	json_decref(doc);
	ids_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plan_object),
	    cmocka_unit_test(test_user_changes),
	    cmocka_unit_test(test_values_jansson_refuses),
	    cmocka_unit_test(test_every_outcome_one_shape),
	    cmocka_unit_test(test_status),
	    cmocka_unit_test(test_status_changes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
