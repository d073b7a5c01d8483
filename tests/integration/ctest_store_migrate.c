/* ctest_store_migrate.c — the store against a real PostgreSQL: opening
 * (schema, password, errors), migrations, the connector lock, companies,
 * sync_run rows, orphans, and a lost connection.  Each test works in its
 * own schema of one throwaway database. */
#include "ctest_store_common.h"

#include <inttypes.h>

/* The tables of spec/schema.md plus schema_migrations. */
#define NTABLES "11"

static void test_migrate_from_empty(void **state)
{
	struct ids_store *st = open_store("m_empty", false);
	struct ids_error e = {0};
	int from = -1, to = -1;

	/* open writes nothing (plan and status open the store too): no
	 * schema yet, and a check-only migrate says so without creating it */
	assert_sql("0", "SELECT count(*) FROM pg_namespace WHERE nspname = 'm_empty'");
	assert_int_equal(ids_store_version(st, &from, &e), 0);
	assert_int_equal(from, 0);
	assert_int_equal(ids_store_migrate(st, false, NULL, NULL, &e), IDS_E_SCHEMA);
	assert_non_null(strstr(e.msg, "has not been created: run `idsyncd migrate`"));
	assert_sql("0", "SELECT count(*) FROM pg_namespace WHERE nspname = 'm_empty'");

	from = -1;
	assert_int_equal(ids_store_migrate(st, true, &from, &to, &e), 0);
	assert_int_equal(from, 0);
	assert_int_equal(to, ids_store_binary_version());
	assert_true(to >= 1);
	assert_sql(NTABLES,
		   "SELECT count(*) FROM pg_tables WHERE schemaname = 'm_empty' AND tablename IN"
		   " ('schema_migrations', 'company', 'tenant', 'app_user', 'tenant_role', 'channel_grant',"
		   " 'slot_limit', 'operator_group', 'operator_group_member', 'sync_run', 'audit_log')");
	assert_sql("001_init.sql", "SELECT name FROM m_empty.schema_migrations WHERE version = 1");
	/* the indexes of schema.md's notes */
	assert_sql(
	    "2",
	    "SELECT count(*) FROM pg_indexes WHERE schemaname = 'm_empty' AND indexdef LIKE 'CREATE UNIQUE%'"
	    " AND (indexdef LIKE '%(company_id, lower(username))%'"
	    "  OR indexdef LIKE '%(company_id, lower(email)) WHERE active%')");
	ids_error_clear(&e);
	ids_store_close(st);
}

static void test_migrate_idempotent(void **state)
{
	struct ids_store *st = open_store("m_idem", true);
	struct ids_error e = {0};
	int from = -1, to = -1;

	assert_int_equal(ids_store_migrate(st, true, &from, &to, &e), 0);
	assert_int_equal(from, ids_store_binary_version());
	assert_int_equal(to, ids_store_binary_version());
	/* checking only (migrate: manual) is fine on an up-to-date schema */
	assert_int_equal(ids_store_migrate(st, false, NULL, NULL, &e), 0);
	char want[16];
	snprintf(want, sizeof(want), "%d", ids_store_binary_version());
	assert_sql(want, "SELECT count(*) FROM m_idem.schema_migrations");
	ids_store_close(st);

	/* a second instance opening the same schema changes nothing */
	st = open_store("m_idem", true);
	assert_sql(want, "SELECT count(*) FROM m_idem.schema_migrations");
	ids_error_clear(&e);
	ids_store_close(st);
}

static void test_migrate_manual_refuses_old(void **state)
{
	struct ids_store *st = open_store("m_manual", false);
	struct ids_error e = {0};
	int from = -1;

	assert_int_equal(ids_store_migrate(st, false, &from, NULL, &e), IDS_E_SCHEMA);
	assert_int_equal(from, -1); /* ret_* untouched on failure */
	assert_non_null(strstr(ids_error_text(&e), "idsyncd migrate"));
	assert_sql("0", "SELECT count(*) FROM pg_tables WHERE schemaname = 'm_manual'");
	ids_error_clear(&e);
	ids_store_close(st);
}

static void test_newer_schema_refused(void **state)
{
	struct ids_store *st = open_store("m_newer", true);
	struct ids_error e = {0};

	sql("INSERT INTO m_newer.schema_migrations (version, name) VALUES (999, '999_future.sql')");
	for (int apply = 0; apply <= 1; apply++) {
		assert_int_equal(ids_store_migrate(st, apply, NULL, NULL, &e), IDS_E_SCHEMA);
		assert_non_null(strstr(ids_error_text(&e), "version 999"));
		assert_non_null(strstr(ids_error_text(&e), "upgrade idsyncd"));
		ids_error_clear(&e);
	}
	ids_store_close(st);
}

/* Two instances racing to migrate the same schema: both succeed, the
 * migrations are applied once (the transaction lock serialises them). */
static void test_migrate_concurrent(void **state)
{
	struct ids_store *a = open_store("m_race", false), *b = open_store("m_race", false);
	struct ids_error e = {0};
	int to_a = 0, to_b = 0;

	assert_int_equal(ids_store_migrate(a, true, NULL, &to_a, &e), 0);
	assert_int_equal(ids_store_migrate(b, true, NULL, &to_b, &e), 0);
	assert_int_equal(to_a, ids_store_binary_version());
	assert_int_equal(to_b, ids_store_binary_version());
	assert_sql("1", "SELECT count(*) FROM m_race.schema_migrations WHERE version = 1");
	ids_store_close(a);
	ids_store_close(b);
}

static void test_lock(void **state)
{
	struct ids_store *a = open_store("m_lock", true), *b = open_store("m_lock", true);
	struct ids_error e = {0};

	assert_int_equal(ids_store_lock(a, "corp-ad", &e), 0);
	assert_int_equal(ids_store_lock(b, "corp-ad", &e), IDS_E_LOCKED);
	assert_non_null(strstr(ids_error_text(&e), "corp-ad"));
	ids_error_clear(&e);
	/* another connector's lock is independent */
	assert_int_equal(ids_store_lock(b, "entra", &e), 0);

	/* released explicitly ... */
	assert_int_equal(ids_store_unlock(a, "corp-ad", &e), 0);
	assert_int_equal(ids_store_lock(b, "corp-ad", &e), 0);
	assert_int_equal(ids_store_lock(a, "corp-ad", &e), IDS_E_LOCKED);
	ids_error_clear(&e);

	/* ... and when the holder's connection ends (a crashed instance) */
	ids_store_close(b);
	/* the server releases them when the old backend has exited, which
	 * PQfinish does not wait for: a standby gets them on a later tick */
	int r = IDS_E_LOCKED;
	for (int i = 0; i < 250 && r == IDS_E_LOCKED; i++) {
		r = ids_store_lock(a, "corp-ad", &e);
		if (r == IDS_E_LOCKED)
			usleep(20000);
	}
	assert_int_equal(r, 0);
	assert_int_equal(ids_store_lock(a, "entra", &e), 0);
	/* unlocking what one does not hold is an error, not a silent no-op */
	assert_int_equal(ids_store_unlock(a, "google", &e), IDS_E_INVALID);
	ids_error_clear(&e);
	ids_store_close(a);
}

static void test_schema_name_quoted(void **state)
{
	/* an identifier that breaks naive SQL pasting */
	const char *name = "Odd \"Schema\"; DROP TABLE x";
	struct ids_store *st = open_store(name, true);
	const char *p[] = {name};
	char *v =
	    sql_val("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'app_user'", 1, p);
	assert_string_equal(v, "1");
	free(v);
	ids_store_close(st);
}

static void test_open_errors(void **state)
{
	struct ids_config cfg;
	struct ids_error e = {0};
	struct ids_store *st = NULL;

	/* malformed conninfo: a configuration error, st untouched */
	make_cfg(&cfg, "host=127.0.0.1 port", "x", NULL);
	assert_int_equal(ids_store_open(&cfg, &st, &e), IDS_E_CONFIG);
	assert_null(st);
	ids_error_clear(&e);

	/* nothing listens on port 1 */
	make_cfg(&cfg, "host=127.0.0.1 port=1 dbname=x user=x", "x", NULL);
	assert_int_equal(ids_store_open(&cfg, &st, &e), IDS_E_CONNECT);
	assert_null(st);
	ids_error_clear(&e);
}

static void test_password(void **state)
{
	const char *user = getenv("IDS_TEST_PG_PW_USER"), *pw = getenv("IDS_TEST_PG_PW_PASSWORD");
	const char *base = getenv("IDS_TEST_PG_CONNINFO");
	if (!user || !pw) {
		const char *ci = getenv("CI");
		if (ci && strcmp(ci, "true") == 0)
			fail_msg("IDS_TEST_PG_PW_USER/PASSWORD missing from the harness");
		skip();
	}
	struct ids_config cfg;
	struct ids_error e = {0};
	struct ids_store *st = NULL;
	char conninfo[512], grant[256];

	snprintf(grant, sizeof(grant), "GRANT CREATE ON DATABASE %s TO %s", g_dbname, user);
	sql(grant);
	/* PGPASSWORD or a ~/.pgpass must not be what makes this pass */
	unsetenv("PGPASSWORD");
	snprintf(conninfo, sizeof(conninfo), "%s dbname=%s user=%s passfile=/nonexistent", base, g_dbname,
		 user);

	char *good = strdup(pw);
	make_cfg(&cfg, conninfo, "m_pw", good);
	assert_int_equal(ids_store_open(&cfg, &st, &e), 0);
	assert_int_equal(ids_store_migrate(st, true, NULL, NULL, &e), 0);
	ids_store_close(st);
	st = NULL;
	assert_sql("1",
		   "SELECT count(*) FROM pg_tables WHERE schemaname = 'm_pw' AND tablename = 'app_user'");

	char *bad = strdup("not-the-password");
	make_cfg(&cfg, conninfo, "m_pw", bad);
	assert_int_equal(ids_store_open(&cfg, &st, &e), IDS_E_AUTH);
	assert_null(st);
	/* the message names the failure, never the password */
	assert_null(strstr(ids_error_text(&e), "not-the-password"));
	ids_error_clear(&e);

	make_cfg(&cfg, conninfo, "m_pw", NULL);
	assert_int_equal(ids_store_open(&cfg, &st, &e), IDS_E_AUTH);
	ids_error_clear(&e);
	free(good);
	free(bad);
}

static void test_company(void **state)
{
	struct ids_store *st = open_store("m_company", true);
	struct ids_error e = {0};
	int64_t a1 = 0, a2 = 0, b = 0;

	assert_int_equal(ids_store_company(st, "acme", true, &a1, &e), 0);
	assert_int_equal(ids_store_company(st, "acme", true, &a2, &e), 0);
	assert_int_equal(ids_store_company(st, "globex", true, &b, &e), 0);
	assert_true(a1 > 0);
	assert_int_equal(a1, a2);
	assert_int_not_equal(a1, b);
	assert_sql("acme|acme|2",
		   "SELECT slug || '|' || name || '|' || (SELECT count(*) FROM m_company.company)"
		   " FROM m_company.company WHERE slug = 'acme'");
	ids_store_close(st);
}

static void test_runs(void **state)
{
	struct ids_store *st = open_store("m_runs", true);
	struct ids_error e = {0};
	struct ids_plan_counts k = {10, 1, 2, 3, 4, 5, 6, 7, 8, 0};
	/* 2026-01-02 03:04:05.123456 UTC, exact to the microsecond */
	const int64_t t1 = INT64_C(1767323045123456), t2 = t1 + 60000001;
	struct ids_run r1 = {
	    .connector = "corp", .started_at = t1, .status = "ok", .counts = &k, .error = NULL};
	struct ids_run r2 = {.connector = "corp",
			     .started_at = t2,
			     .status = "failed",
			     .counts = NULL,
			     .error = "ldap: timeout"};
	struct ids_run r3 = {.connector = "entra",
			     .started_at = t1,
			     .status = "skipped_locked",
			     .counts = NULL,
			     .error = NULL};
	int64_t id1 = 0, id2 = 0, id3 = 0;

	assert_int_equal(ids_store_record_run(st, &r1, &id1, &e), 0);
	assert_int_equal(ids_store_record_run(st, &r2, &id2, &e), 0);
	assert_int_equal(ids_store_record_run(st, &r3, &id3, &e), 0);
	assert_true(id1 > 0 && id2 > id1 && id3 > id2);
	assert_sql(
	    "2026-01-02 03:04:05.123456+00",
	    "SELECT started_at AT TIME ZONE 'UTC' || '+00' FROM m_runs.sync_run WHERE connector = 'corp'"
	    " ORDER BY id LIMIT 1");
	assert_sql(
	    "10 1 2 3 4 5 6 7 8 t",
	    "SELECT concat_ws(' ', users_seen, created, updated, deactivated, reactivated, grants_added,"
	    " grants_removed, conflicts, skipped_invalid, finished_at IS NOT NULL)"
	    " FROM m_runs.sync_run ORDER BY id LIMIT 1");

	/* a status outside the spec's list is refused by the schema */
	struct ids_run bad = {
	    .connector = "corp", .started_at = t1, .status = "great", .counts = NULL, .error = NULL};
	int64_t untouched = -1;
	assert_int_equal(ids_store_record_run(st, &bad, &untouched, &e), IDS_E_DB);
	assert_int_equal(untouched, -1);
	assert_non_null(strstr(ids_error_text(&e), "23514"));
	ids_error_clear(&e);

	struct ids_run_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(ids_store_last_runs(st, &rows, &n, &e), 0);
	assert_int_equal(n, 2);
	/* ordered by connector: corp's last run is the failed one */
	assert_string_equal(rows[0].connector, "corp");
	assert_int_equal(rows[0].id, id2);
	assert_string_equal(rows[0].status, "failed");
	assert_string_equal(rows[0].error, "ldap: timeout");
	assert_int_equal(rows[0].started_at, t2);
	assert_true(rows[0].finished_at > 0);
	assert_false(rows[0].has_counts);
	assert_string_equal(rows[1].connector, "entra");
	assert_string_equal(rows[1].status, "skipped_locked");
	assert_null(rows[1].error);
	ids_run_rows_free(rows, n);

	/* with counts */
	struct ids_run r4 = {
	    .connector = "entra", .started_at = t2, .status = "ok", .counts = &k, .error = NULL};
	assert_int_equal(ids_store_record_run(st, &r4, NULL, &e), 0);
	assert_int_equal(ids_store_last_runs(st, &rows, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_true(rows[1].has_counts);
	assert_int_equal(rows[1].counts.users_seen, 10);
	assert_int_equal(rows[1].counts.skipped_invalid, 8);
	assert_int_equal(rows[1].counts.grants_removed, 6);
	ids_run_rows_free(rows, n);
	ids_store_close(st);
}

/* An error text that is not UTF-8 (a parser quoting a server's broken
 * bytes) still gets its failed run recorded: text columns refuse such
 * bytes, so they are stored as the text \xNN (found by fuzz/fuzz_graph). */
static void test_run_error_not_utf8(void **state)
{
	struct ids_store *st = open_store("m_runs8", true);
	struct ids_error e = {0};
	struct ids_run r = {.connector = "corp",
			    .started_at = INT64_C(1767323045123456),
			    .status = "failed",
			    .counts = NULL,
			    .error =
				"users: not JSON: near '\"a\xcb\x9d\xdd\xcb' (\xff) caf\xc3\xa9 \xe2\x82"};
	int64_t id = 0;
	assert_int_equal(ids_store_record_run(st, &r, &id, &e), 0);
	assert_true(id > 0);
	/* \xcb\x9d is a character (U+02DD), \xdd and \xcb are not; é stays */
	assert_sql("users: not JSON: near '\"a\xcb\x9d\\xdd\\xcb' (\\xff) caf\xc3\xa9 \\xe2\\x82",
		   "SELECT error FROM m_runs8.sync_run");
	ids_error_clear(&e);
	ids_store_close(st);
}

static void test_orphans_and_companies(void **state)
{
	struct ids_store *st = open_store("m_orphans", true);
	struct ids_error e = {0};
	int64_t c1 = 0, c2 = 0;

	assert_int_equal(ids_store_company(st, "acme", true, &c1, &e), 0);
	assert_int_equal(ids_store_company(st, "globex", true, &c2, &e), 0);
	use_schema("m_orphans");
	sql("INSERT INTO app_user (company_id, source, external_id, username, auth_method, active) VALUES"
	    " ((SELECT id FROM company WHERE slug = 'acme'), 'old-ad', 'a', 'u1', 'sso', true),"
	    " ((SELECT id FROM company WHERE slug = 'acme'), 'old-ad', 'b', 'u2', 'sso', false),"
	    " ((SELECT id FROM company WHERE slug = 'globex'), 'old-ad', 'c', 'u3', 'sso', true),"
	    " ((SELECT id FROM company WHERE slug = 'acme'), 'corp', 'd', 'u4', 'sso', true),"
	    " ((SELECT id FROM company WHERE slug = 'acme'), NULL, NULL, 'u5', 'activation_link', true)");

	struct ids_strv configured = {0};
	assert_int_equal(ids_strv_push(&configured, "corp"), 0);
	struct ids_orphan *o = NULL;
	size_t n = 0;
	assert_int_equal(ids_store_orphans(st, &configured, &o, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(o[0].source, "old-ad");
	assert_int_equal(o[0].active, 2);
	assert_int_equal(o[0].total, 3);
	ids_orphans_free(o, n);
	ids_strv_free(&configured);

	int64_t *ids = NULL;
	assert_int_equal(ids_store_source_companies(st, "old-ad", &ids, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], c1 < c2 ? c1 : c2);
	assert_int_equal(ids[1], c1 < c2 ? c2 : c1);
	free(ids);
	assert_int_equal(ids_store_source_companies(st, "corp", &ids, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], c1);
	free(ids);
	ids_store_close(st);
}

/* The backend dies under the store (PostgreSQL restart, failover): the
 * next call says "connection lost" so that the daemon reconnects. */
static void test_connection_lost(void **state)
{
	struct ids_store *st = open_store("m_lost", true);
	struct ids_error e = {0};
	int64_t id = 0;

	sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	    " WHERE application_name = 'idsyncd' AND datname = current_database()");
	assert_int_equal(ids_store_company(st, "acme", true, &id, &e), IDS_E_DB_LOST);
	assert_int_equal(id, 0);
	ids_error_clear(&e);
	ids_store_close(st);
}

int main(void)
{
	int r = db_setup("migrate");
	if (r)
		return r;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_migrate_from_empty),
	    cmocka_unit_test(test_migrate_idempotent),
	    cmocka_unit_test(test_migrate_manual_refuses_old),
	    cmocka_unit_test(test_newer_schema_refused),
	    cmocka_unit_test(test_migrate_concurrent),
	    cmocka_unit_test(test_lock),
	    cmocka_unit_test(test_schema_name_quoted),
	    cmocka_unit_test(test_open_errors),
	    cmocka_unit_test(test_password),
	    cmocka_unit_test(test_company),
	    cmocka_unit_test(test_runs),
	    cmocka_unit_test(test_run_error_not_utf8),
	    cmocka_unit_test(test_orphans_and_companies),
	    cmocka_unit_test(test_connection_lost),
	};
	r = cmocka_run_group_tests(tests, NULL, NULL);
	db_teardown();
	return r;
}
