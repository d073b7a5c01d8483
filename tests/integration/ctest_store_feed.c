/* ctest_store_feed.c — connector_feed (migration 007, issue 14) against a
 * real PostgreSQL: the cursor and the feed's bookkeeping commit in the
 * apply's transaction, with the changes, or not at all; sync_run records
 * whether a run read everything. */
#include "ctest_store_common.h"

#define SCHEMA "feed"

/* A cursor with the bytes a text column would mangle: a NUL, a
 * backslash, a quote, high bytes (a DirSync cookie is binary). */
static const unsigned char binary_cookie[] = {0x00, 'r', 'i', 'd', '=', '\\', '\'', 0xff, 0x80, 0x01};

static int setup(void **state)
{
	struct ids_store *st = open_store(SCHEMA, true);
	use_schema(SCHEMA);
	sql("TRUNCATE connector_feed, audit_log, sync_run, app_user, tenant, company CASCADE");
	sql("INSERT INTO company (slug, name) VALUES ('acme', 'Acme')");
	sql("INSERT INTO app_user (company_id, source, external_id, username, email, auth_method, active)"
	    " VALUES ((SELECT id FROM company), NULL, NULL, 'taken', 'taken@acme.example', "
	    "'activation_link', true)");
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	ids_store_close(*state);
	return 0;
}

static int64_t acme(void)
{
	char *v = sql_val("SELECT id FROM company WHERE slug = 'acme'", 0, NULL);
	int64_t id = strtoll(v, NULL, 10);
	free(v);
	return id;
}

/* Applies p with feed fc as a run of connector corp started at `started`. */
static int apply(struct ids_store *st, const struct ids_plan *p, int64_t started,
		 const struct ids_feed_commit *fc, struct ids_error *e)
{
	const struct ids_run run = {.connector = "corp",
				    .started_at = started,
				    .status = "ok",
				    .counts = &p->counts,
				    .read_kind = fc && fc->full ? "full" : "incremental",
				    .feed = fc};
	return ids_store_apply(st, acme(), "ldap", p, &run, NULL, e);
}

static void get(struct ids_store *st, const char *connector, struct ids_feed_state *f)
{
	struct ids_error e = {0};
	if (ids_store_feed_get(st, connector, f, &e) < 0)
		fail_msg("ids_store_feed_get: %s", ids_error_text(&e));
}

/* No run yet: no row, an all-zero state, not an error. */
static void test_none_yet(void **state)
{
	struct ids_feed_state f;
	memset(&f, 0xa5, sizeof(f));
	get(*state, "corp", &f);
	assert_null(f.cursor);
	assert_int_equal(f.cursor_len, 0);
	assert_null(f.cursor_server);
	assert_int_equal(f.last_full_at, 0);
	assert_int_equal(f.cursor_at, 0);
	assert_int_equal(f.resets, 0);
	assert_null(f.last_reset_reason);
	ids_feed_state_clear(&f);
}

/* A full read, then an incremental run that fell back: the cursor is
 * replaced each time (bytes intact), last_full_at stays the full read's
 * start, the reset is counted with its reason. */
static void test_commit_and_reset(void **state)
{
	struct ids_store *st = *state;
	struct ids_error e = {0};
	struct ids_plan p = {.connector = "corp"};
	const unsigned char c1[] = "rid=000,csn=20261206120000.000000Z#000000#000#000000";
	const struct ids_feed_commit full = {.full = true, .cursor = c1, .cursor_len = sizeof(c1) - 1};
	assert_int_equal(apply(st, &p, 1700000000123456, &full, &e), 0);
	assert_sql("full", "SELECT read_kind FROM sync_run");

	const struct ids_feed_commit inc = {.cursor = binary_cookie,
					    .cursor_len = sizeof(binary_cookie),
					    .cursor_server = "dc1.corp.example",
					    .cursor_invocation_id = "0f4a1c2e-0000-4000-8000-000000000001",
					    .reset_reason = "e-syncRefreshRequired"};
	assert_int_equal(apply(st, &p, 1700000100000000, &inc, &e), 0);
	assert_sql("incremental", "SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1");

	struct ids_feed_state f = {0};
	get(st, "corp", &f);
	assert_int_equal(f.cursor_len, sizeof(binary_cookie));
	assert_memory_equal(f.cursor, binary_cookie, sizeof(binary_cookie));
	assert_string_equal(f.cursor_server, "dc1.corp.example");
	assert_string_equal(f.cursor_invocation_id, "0f4a1c2e-0000-4000-8000-000000000001");
	assert_true(f.last_full_at == 1700000000123456); /* the full read's start, to the microsecond */
	assert_true(f.cursor_at > 1700000100000000);	 /* now(), long after both starts */
	assert_int_equal(f.resets, 1);
	assert_string_equal(f.last_reset_reason, "e-syncRefreshRequired");
	assert_true(f.last_reset_at > 0);
	ids_feed_state_clear(&f);

	/* a full read without a feed clears the cursor and its issuer: a
	 * cursor older than the state just committed would replay from the
	 * wrong point; the reset count and reason stay */
	const struct ids_feed_commit bare = {.full = true};
	assert_int_equal(apply(st, &p, 1700000200000000, &bare, &e), 0);
	get(st, "corp", &f);
	assert_null(f.cursor);
	assert_null(f.cursor_server);
	assert_int_equal(f.cursor_at, 0);
	assert_true(f.last_full_at == 1700000200000000);
	assert_int_equal(f.resets, 1);
	assert_string_equal(f.last_reset_reason, "e-syncRefreshRequired");
	ids_feed_state_clear(&f);
	/* another connector's state is its own */
	get(st, "other", &f);
	assert_int_equal(f.last_full_at, 0);
	ids_feed_state_clear(&f);
	ids_error_clear(&e);
}

/* All or nothing: an apply whose changes fail keeps the old cursor, and a
 * cursor that cannot be written takes the run's changes back with it. */
static void test_all_or_nothing(void **state)
{
	struct ids_store *st = *state;
	struct ids_error e = {0};
	const unsigned char old[] = "old-cookie";
	struct ids_plan p = {.connector = "corp"};
	const struct ids_feed_commit first = {.full = true, .cursor = old, .cursor_len = sizeof(old) - 1};
	assert_int_equal(apply(st, &p, 1700000000000000, &first, &e), 0);

	/* changes that fail: a create whose username another user holds */
	struct ids_plan_user clash[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E1", .username = "taken", .email = "x@acme.example"}};
	struct ids_plan bad = {.connector = "corp", .users = clash, .nusers = 1};
	bad.counts.created = 1;
	const unsigned char next[] = "next-cookie";
	const struct ids_feed_commit fc = {.cursor = next, .cursor_len = sizeof(next) - 1};
	assert_true(apply(st, &bad, 1700000300000000, &fc, &e) < 0);
	ids_error_clear(&e);
	struct ids_feed_state f = {0};
	get(st, "corp", &f);
	assert_int_equal(f.cursor_len, sizeof(old) - 1);
	assert_memory_equal(f.cursor, old, sizeof(old) - 1);
	ids_feed_state_clear(&f);

	/* changes that work, with a cursor that cannot be written (past the
	 * size limit): the created user goes back with it */
	struct ids_plan_user fine[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E2", .username = "fresh", .email = "f@acme.example"}};
	struct ids_plan good = {.connector = "corp", .users = fine, .nusers = 1};
	good.counts.created = 1;
	const struct ids_feed_commit huge = {.cursor = old, .cursor_len = 1 << 20};
	assert_true(apply(st, &good, 1700000400000000, &huge, &e) < 0);
	assert_non_null(strstr(ids_error_text(&e), "corp"));
	ids_error_clear(&e);
	assert_sql("0", "SELECT count(*) FROM app_user WHERE username = 'fresh'");
	assert_sql("1", "SELECT count(*) FROM sync_run");
	get(st, "corp", &f);
	assert_memory_equal(f.cursor, old, sizeof(old) - 1);
	ids_feed_state_clear(&f);

	/* and the same changes with a writable cursor commit together */
	assert_int_equal(apply(st, &good, 1700000500000000, &fc, &e), 0);
	assert_sql("1", "SELECT count(*) FROM app_user WHERE username = 'fresh'");
	get(st, "corp", &f);
	assert_memory_equal(f.cursor, next, sizeof(next) - 1);
	ids_feed_state_clear(&f);
}

/* The issuer of a DirSync cookie is both halves or none (the table's
 * check): a cookie must never be matched against half a controller. */
static void test_issuer_both_or_neither(void **state)
{
	struct ids_store *st = *state;
	struct ids_error e = {0};
	struct ids_plan p = {.connector = "corp"};
	const unsigned char c[] = "c";
	const struct ids_feed_commit half = {
	    .cursor = c, .cursor_len = 1, .cursor_server = "dc1.corp.example"};
	assert_int_equal(apply(st, &p, 1700000000000000, &half, &e), IDS_E_DB);
	assert_non_null(strstr(ids_error_text(&e), "connector_feed_issuer_check"));
	ids_error_clear(&e);
	assert_sql("0", "SELECT count(*) FROM sync_run");
}

/* The rows of the thresholds' tests: tenant sup, group tier1, corp's
 * users loaded, a, b, c (active) and gone (not), hr's h; managed rows on
 * the unloaded active users: a's two roles, b's channel, c's group (c's
 * channel is sourceless: by hand). */
static void bases_rows(void)
{
	sql("INSERT INTO tenant (company_id, slug, name) SELECT id, 'sup', 'Support' FROM company");
	sql("INSERT INTO operator_group (tenant_id, name) SELECT id, 'tier1' FROM tenant");
	sql("INSERT INTO app_user (company_id, source, external_id, username, auth_method, active)"
	    " SELECT c.id, v.src, v.ext, v.ext, 'sso', v.active FROM company c, (VALUES"
	    " ('corp', 'loaded', true), ('corp', 'a', true), ('corp', 'b', true), ('corp', 'c', true),"
	    " ('corp', 'gone', false), ('hr', 'h', true)) v(src, ext, active)");
	/* managed rows on unloaded active users: 2 + 1 (by hand) + 1 = 4 */
	sql("INSERT INTO tenant_role (user_id, tenant_id, role, source)"
	    " SELECT u.id, t.id, r, u.source FROM app_user u, tenant t, (VALUES ('agent'), ('viewer')) v(r)"
	    " WHERE u.external_id IN ('a', 'loaded', 'gone', 'h')");
	sql("INSERT INTO channel_grant (user_id, tenant_id, channel, source)"
	    " SELECT u.id, t.id, 'voice', CASE WHEN u.external_id = 'b' THEN 'corp' END"
	    " FROM app_user u, tenant t WHERE u.external_id IN ('b', 'c')");
	sql("INSERT INTO slot_limit (user_id, tenant_id, channel_group, slots, source)"
	    " SELECT u.id, t.id, 'chat', 2, 'corp' FROM app_user u, tenant t WHERE u.external_id = 'loaded'");
	sql("INSERT INTO operator_group_member (group_id, user_id, source)"
	    " SELECT g.id, u.id, 'corp' FROM operator_group g, app_user u WHERE u.external_id IN ('c', "
	    "'gone')");
}

/* The bases of corp's partial load of user `loaded`, as *active and
 * *managed. */
static void others(struct ids_store *st, size_t *active, size_t *managed)
{
	struct ids_strv ext = {0}, none = {0};
	assert_int_equal(ids_strv_push(&ext, "loaded"), 0);
	struct ids_current *c = NULL;
	struct ids_error e = {0};
	if (ids_store_load_some(st, acme(), "corp", &ext, &none, &none, &c, &e) < 0)
		fail_msg("ids_store_load_some: %s", ids_error_text(&e));
	*active = c->active_others;
	*managed = c->managed_others;
	ids_current_free(c);
	ids_strv_free(&ext);
}

/* The counter (migration 013) holds what a count of the tables says, for
 * every connector and company: no row missing, none extra, none off. */
#define assert_counter_exact()                                                                               \
	assert_sql("0",                                                                                      \
		   "SELECT count(*) FROM ((TABLE managed_count EXCEPT SELECT * FROM ids_managed_counted())"  \
		   " UNION ALL (SELECT * FROM ids_managed_counted() EXCEPT TABLE managed_count)) x")

/* The thresholds' bases of a partial load (ids_store_load_some, issue 14):
 * exactly the connector's active users, and its grant rows on them, that
 * it did not load — rows written by hand with the connector's source
 * included, other sources, inactive users and the loaded user's own rows
 * not. */
static void test_threshold_bases(void **state)
{
	size_t active, managed;
	bases_rows();
	others(*state, &active, &managed);
	assert_int_equal(active, 3);  /* a, b, c */
	assert_int_equal(managed, 4); /* a's two roles, b's channel, c's group */
	assert_counter_exact();
}

/* Hand edits after the counter exists (it is kept by triggers, not by
 * idsyncd's apply): deletes, deactivations, a row changing hands, a new
 * user, a TRUNCATE — the bases follow each at once. */
static void test_threshold_bases_edits(void **state)
{
	struct ids_store *st = *state;
	size_t active, managed;
	bases_rows();
	sql("DELETE FROM tenant_role WHERE role = 'viewer'"
	    " AND user_id = (SELECT id FROM app_user WHERE external_id = 'a')");
	others(st, &active, &managed);
	assert_int_equal(managed, 3); /* a's agent, b's channel, c's group */
	/* b deactivated: his channel row no longer counts */
	sql("UPDATE app_user SET active = false WHERE external_id = 'b'");
	others(st, &active, &managed);
	assert_int_equal(active, 2);
	assert_int_equal(managed, 2);
	/* c's hand-made channel taken over by corp; gone's group row by hr */
	sql("UPDATE channel_grant SET source = 'corp'"
	    " WHERE user_id = (SELECT id FROM app_user WHERE external_id = 'c')");
	sql("UPDATE operator_group_member SET source = 'hr'"
	    " WHERE user_id = (SELECT id FROM app_user WHERE external_id = 'gone')");
	others(st, &active, &managed);
	assert_int_equal(managed, 3);
	/* gone comes back with his two roles; a moves to hr with his agent row */
	sql("UPDATE app_user SET active = true WHERE external_id = 'gone'");
	sql("UPDATE app_user SET source = 'hr', external_id = 'a2' WHERE external_id = 'a'");
	others(st, &active, &managed);
	assert_int_equal(active, 2);  /* c, gone */
	assert_int_equal(managed, 4); /* c's channel and group, gone's two roles */
	/* a user added and deleted, another added: one more */
	sql("INSERT INTO app_user (company_id, source, external_id, username, auth_method)"
	    " SELECT id, 'corp', v.x, v.x, 'sso' FROM company, (VALUES ('d'), ('e')) v(x)");
	sql("DELETE FROM app_user WHERE external_id = 'd'");
	others(st, &active, &managed);
	assert_int_equal(active, 3);
	assert_counter_exact();
	/* TRUNCATE fires no row trigger: its own trigger counts again */
	sql("TRUNCATE operator_group_member");
	others(st, &active, &managed);
	assert_int_equal(active, 3);
	assert_int_equal(managed, 3); /* c's channel, gone's two roles */
	assert_counter_exact();
}

/* The platform writes app_user and the grants under a role of its own,
 * which has no privilege on managed_count: its writes work, and count
 * (the triggers run as their owner). */
static void test_threshold_bases_platform_role(void **state)
{
	size_t active, managed;
	bases_rows();
	sql("DO $$ BEGIN CREATE ROLE ids_test_platform NOLOGIN;"
	    " EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
	    " GRANT USAGE ON SCHEMA " SCHEMA " TO ids_test_platform;"
	    " GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON app_user, tenant, operator_group, "
	    "tenant_role,"
	    " channel_grant, slot_limit, operator_group_member TO ids_test_platform;"
	    " REVOKE ALL ON managed_count FROM ids_test_platform");
	sql("SET ROLE ids_test_platform;"
	    " INSERT INTO channel_grant (user_id, tenant_id, channel, source)"
	    " SELECT u.id, t.id, 'chat', 'corp' FROM app_user u, tenant t WHERE u.external_id = 'a';"
	    " UPDATE app_user SET active = false WHERE external_id = 'c';"
	    " DELETE FROM tenant_role WHERE user_id = (SELECT id FROM app_user WHERE external_id = 'h');"
	    " TRUNCATE slot_limit;"
	    " RESET ROLE");
	others(*state, &active, &managed);
	assert_int_equal(active, 2);  /* a, b */
	assert_int_equal(managed, 4); /* a's two roles and his chat, b's channel */
	assert_counter_exact();
}

/* The counting triggers choose their join methods themselves: the apply
 * turns hash and merge joins off for its keyed statements (store/apply.c,
 * keyed_sql), and a join of two transition tables (no index) would then
 * be a nested loop — a tier-M churn's apply took twice as long.  Each
 * trigger function carries its own settings, which PostgreSQL applies
 * whatever the session says. */
static void test_threshold_bases_join_methods(void **state)
{
	(void)state;
	static const char *const fns[] = {"ids_managed_count_user", "ids_managed_count_grant",
					  "ids_managed_recount"};
	for (size_t i = 0; i < sizeof(fns) / sizeof(*fns); i++) {
		const char *p[] = {fns[i]};
		char *conf =
		    sql_val("SELECT array_to_string(proconfig, ' ') FROM pg_proc WHERE proname = $1", 1, p);
		assert_non_null(conf);
		print_message("%s: %s\n", fns[i], conf);
		assert_non_null(strstr(conf, "enable_hashjoin=on"));
		assert_non_null(strstr(conf, "enable_mergejoin=on"));
		assert_non_null(strstr(conf, "enable_seqscan=on"));
		free(conf);
	}
}

/* Rows written with the triggers disabled (a restore with
 * --disable-triggers) leave the counter off; a read of the whole state
 * finds by how much, and the run's apply corrects it. */
static void test_threshold_bases_repair(void **state)
{
	struct ids_store *st = *state;
	size_t active, managed;
	bases_rows();
	sql("ALTER TABLE tenant_role DISABLE TRIGGER USER;"
	    " DELETE FROM tenant_role WHERE user_id = (SELECT id FROM app_user WHERE external_id = 'a');"
	    " ALTER TABLE tenant_role ENABLE TRIGGER USER;"
	    " ALTER TABLE app_user DISABLE TRIGGER USER;"
	    " UPDATE app_user SET active = false WHERE external_id = 'c';"
	    " ALTER TABLE app_user ENABLE TRIGGER USER");
	others(st, &active, &managed);
	assert_int_equal(active, 3); /* the counter's a, b, c; a, b in truth */
	assert_int_equal(managed, 4);

	struct ids_current *c = NULL;
	struct ids_error e = {0};
	if (ids_store_load(st, acme(), "corp", &c, &e) < 0)
		fail_msg("ids_store_load: %s", ids_error_text(&e));
	assert_int_equal(c->bases_fix_users, -1);  /* c */
	assert_int_equal(c->bases_fix_grants, -3); /* a's two roles, c's group */
	struct ids_plan p = {.connector = "corp",
			     .bases_fix_users = c->bases_fix_users,
			     .bases_fix_grants = c->bases_fix_grants};
	ids_current_free(c);
	/* a change committed between the read and the apply stays counted */
	sql("DELETE FROM channel_grant WHERE user_id = (SELECT id FROM app_user WHERE external_id = 'b')");
	assert_int_equal(apply(st, &p, 1700000000000000, NULL, &e), 0);
	others(st, &active, &managed);
	assert_int_equal(active, 2);  /* a, b */
	assert_int_equal(managed, 0); /* b's channel gone too */
	assert_counter_exact();
	/* a state that agrees with the counter has nothing to fix */
	if (ids_store_load(st, acme(), "corp", &c, &e) < 0)
		fail_msg("ids_store_load: %s", ids_error_text(&e));
	assert_int_equal(c->bases_fix_users, 0);
	assert_int_equal(c->bases_fix_grants, 0);
	ids_current_free(c);
}

int main(void)
{
	int r = db_setup("feed");
	if (r)
		return r;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_none_yet, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_and_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_issuer_both_or_neither, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threshold_bases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threshold_bases_edits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threshold_bases_repair, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threshold_bases_platform_role, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threshold_bases_join_methods, setup, teardown),
	};
	r = cmocka_run_group_tests_name("store: change feed", tests, NULL, NULL);
	db_teardown();
	return r;
}
