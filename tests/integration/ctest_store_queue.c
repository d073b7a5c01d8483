/* ctest_store_queue.c — the shared queue (store/queue.c, migration 009)
 * against a real PostgreSQL: one daemon per claim, leases that run out
 * when their owner is gone, and connectors a daemon's configuration no
 * longer has left to the others. */
#include "ctest_store_common.h"

#define SCHEMA "queue"

static int setup(void **state)
{
	struct ids_store *st = open_store(SCHEMA, true);
	use_schema(SCHEMA);
	sql("TRUNCATE connector_schedule");
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	ids_store_close(*state);
	return 0;
}

/* A daemon's list of connectors: the names in a static pool, so that a
 * test can hold several lists at once. */
static struct ids_strv names(const char *a, const char *b)
{
	static char *pool[16];
	static size_t used;
	char **v = &pool[used % 16 & ~1UL];
	used += 2;
	v[0] = (char *)a;
	v[1] = (char *)b;
	return (struct ids_strv){.v = v, .n = b ? 2 : 1};
}

/* Claims for `who`; the claimed connector as a new string, "" for none. */
static char *claim(struct ids_store *st, const struct ids_strv *mine, const char *who, char **taken_from)
{
	struct ids_claim c;
	struct ids_error e = {0};
	int r = ids_store_queue_claim(st, mine, who, 60, &c, &e);
	if (r < 0)
		fail_msg("claim: %s", ids_error_text(&e));
	char *got = strdup(r ? c.connector : "");
	if (taken_from)
		*taken_from = strdup(r ? c.taken_from : "");
	ids_claim_clear(&c);
	return got;
}

static void offer(struct ids_store *st, const struct ids_strv *mine, const char *who)
{
	struct ids_error e = {0};
	if (ids_store_queue_offer(st, mine, who, &e) < 0)
		fail_msg("offer: %s", ids_error_text(&e));
}

static void release(struct ids_store *st, const char *conn, const char *who, int64_t in_usec, int backoff)
{
	struct ids_error e = {0};
	if (ids_store_queue_release(st, conn, who, in_usec, backoff, &e) < 0)
		fail_msg("release: %s", ids_error_text(&e));
}

/* A new connector is due at once; offering it again (another daemon
 * starting, a reload) keeps the time the last run set. */
static void test_offer_keeps_time(void **state)
{
	struct ids_store *st = *state;
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	assert_sql("t", "SELECT next_run_at <= now() FROM connector_schedule WHERE connector = 'corp'");
	sql("UPDATE connector_schedule SET next_run_at = now() + interval '1 hour'");
	offer(st, &mine, "b:2");
	assert_sql("t", "SELECT next_run_at > now() + interval '59 min' FROM connector_schedule");
	assert_sql("a:1", "SELECT instance FROM connector_schedule");
}

/* One claim per due connector: the second daemon gets nothing, and
 * nobody gets it again before its next time. */
static void test_claim_once(void **state)
{
	struct ids_store *st = *state, *other = open_store(SCHEMA, false);
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	char *got = claim(st, &mine, "a:1", NULL);
	assert_string_equal(got, "corp");
	free(got);
	assert_sql("a:1", "SELECT lease_owner FROM connector_schedule");
	got = claim(other, &mine, "b:2", NULL);
	assert_string_equal(got, "");
	free(got);
	release(st, "corp", "a:1", 3600LL * 1000000, 0);
	assert_sql("<null>", "SELECT lease_owner FROM connector_schedule");
	got = claim(other, &mine, "b:2", NULL);
	assert_string_equal(got, "");
	free(got);
	ids_store_close(other);
}

/* A daemon whose configuration lacks a connector never claims it: the
 * connector is orphaned for that daemon only. */
static void test_only_mine(void **state)
{
	struct ids_store *st = *state;
	struct ids_strv both = names("corp", "acme"), corp = names("corp", NULL);
	offer(st, &both, "a:1");
	release(st, "corp", "a:1", 3600LL * 1000000, 0); /* not leased: no effect */
	sql("UPDATE connector_schedule SET next_run_at = now() + interval '1 hour' WHERE connector = 'corp'");
	char *got = claim(st, &corp, "b:2", NULL);
	assert_string_equal(got, "");
	free(got);
	got = claim(st, &both, "a:1", NULL);
	assert_string_equal(got, "acme");
	free(got);
}

/* The owner died: once its lease has run out the row is anyone's, the
 * claim says whose it was, and the dead owner's late release or renewal
 * changes nothing. */
static void test_expired_lease(void **state)
{
	struct ids_store *st = *state;
	struct ids_error e = {0};
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	char *got = claim(st, &mine, "a:1", NULL), *from = NULL;
	free(got);
	assert_int_equal(ids_store_queue_renew(st, "corp", "a:1", 60, &e), 0);
	sql("UPDATE connector_schedule SET lease_until = now() - interval '1 second'");
	got = claim(st, &mine, "b:2", &from);
	assert_string_equal(got, "corp");
	assert_string_equal(from, "a:1");
	free(got);
	free(from);
	assert_int_equal(ids_store_queue_renew(st, "corp", "a:1", 60, &e), IDS_E_LOCKED);
	ids_error_clear(&e);
	release(st, "corp", "a:1", 0, 0);
	assert_sql("b:2", "SELECT lease_owner FROM connector_schedule");
}

/* A row another daemon is claiming at this moment (locked) is skipped,
 * not waited for: the claim takes the next due one. */
static void test_skip_locked(void **state)
{
	struct ids_store *st = *state;
	struct ids_strv both = names("corp", "acme");
	offer(st, &both, "a:1");
	sql("UPDATE connector_schedule SET next_run_at = now() - interval '1 min' WHERE connector = 'corp'");
	sql("BEGIN");
	sql("SELECT * FROM connector_schedule WHERE connector = 'corp' FOR UPDATE");
	char *got = claim(st, &both, "b:2", NULL);
	sql("COMMIT");
	assert_string_equal(got, "acme");
	free(got);
}

/* The backoff of a failed run travels with the row: the next claimer,
 * whichever daemon it is, goes on doubling it. */
static void test_backoff_kept(void **state)
{
	struct ids_store *st = *state;
	struct ids_claim c;
	struct ids_error e = {0};
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	char *got = claim(st, &mine, "a:1", NULL);
	free(got);
	release(st, "corp", "a:1", 0, 30);
	assert_int_equal(ids_store_queue_claim(st, &mine, "b:2", 60, &c, &e), 1);
	assert_int_equal(c.backoff, 30);
	ids_claim_clear(&c);
}

/* How long a daemon may sleep: until its earliest row is due, or until
 * a lease runs out (its owner may be dead). */
static void test_wait(void **state)
{
	struct ids_store *st = *state;
	struct ids_error e = {0};
	struct ids_strv mine = names("corp", "acme");
	int64_t w = 0;
	assert_int_equal(ids_store_queue_wait(st, &mine, &w, &e), 0);
	assert_int_equal(w, -1);
	offer(st, &mine, "a:1");
	sql("UPDATE connector_schedule SET next_run_at = now() + interval '10 s'");
	assert_int_equal(ids_store_queue_wait(st, &mine, &w, &e), 0);
	assert_true(w > 9000000 && w <= 10000000);
	sql("UPDATE connector_schedule SET next_run_at = now() - interval '1 s', lease_owner = 'x:1',"
	    " lease_until = now() + interval '5 s' WHERE connector = 'acme'");
	assert_int_equal(ids_store_queue_wait(st, &mine, &w, &e), 0);
	assert_true(w > 4000000 && w <= 5000000);
	sql("UPDATE connector_schedule SET lease_owner = NULL, lease_until = NULL");
	assert_int_equal(ids_store_queue_wait(st, &mine, &w, &e), 0);
	assert_int_equal(w, 0);
}

int main(void)
{
	int r = db_setup("queue");
	if (r)
		return r;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_offer_keeps_time, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_only_mine, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expired_lease, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_skip_locked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backoff_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wait, setup, teardown),
	};
	r = cmocka_run_group_tests_name("store: the shared queue", tests, NULL, NULL);
	db_teardown();
	return r;
}
