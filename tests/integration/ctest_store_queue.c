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
	sql("TRUNCATE connector_schedule, daemon_heartbeat");
	*state = st;
	return 0;
}

static int teardown(void **state)
{
	ids_store_close(*state);
	return 0;
}

/* A daemon's list of connectors (one at a time). */
static struct ids_strv names(const char *a, const char *b)
{
	static char *v[2];
	v[0] = (char *)a;
	v[1] = (char *)b;
	return (struct ids_strv){.v = v, .n = b ? 2 : 1};
}

/* Takes `conn` for `who`: 1 taken, 0 not; *c filled (cleared by the
 * caller with ids_claim_clear). */
static int take(struct ids_store *st, const char *conn, const char *who, enum ids_take how,
		struct ids_claim *c)
{
	struct ids_error e = {0};
	int r = ids_store_queue_take(st, conn, who, 60, how, c, &e);
	if (r < 0)
		fail_msg("take: %s", ids_error_text(&e));
	return r;
}

/* take, for the tests that only need whether */
static int took(struct ids_store *st, const char *conn, const char *who, enum ids_take how)
{
	struct ids_claim c;
	int r = take(st, conn, who, how, &c);
	ids_claim_clear(&c);
	return r;
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

/* One daemon per due connector: the second gets nothing (and is told
 * who has it and for how long), and nobody gets it again before its
 * next time — unless forced (SIGUSR1, a push), which still never takes
 * a live lease. */
static void test_take_once(void **state)
{
	struct ids_store *st = *state, *other = open_store(SCHEMA, false);
	struct ids_strv mine = names("corp", NULL);
	struct ids_claim c;
	offer(st, &mine, "a:1");
	assert_int_equal(took(st, "corp", "a:1", IDS_TAKE_DUE), 1);
	assert_sql("a:1", "SELECT lease_owner FROM connector_schedule");
	assert_int_equal(take(other, "corp", "b:2", IDS_TAKE_NOW, &c), 0);
	assert_string_equal(c.owner, "a:1");
	assert_true(c.wait_usec > 59 * 1000000LL && c.wait_usec <= 60 * 1000000LL);
	ids_claim_clear(&c);
	release(st, "corp", "a:1", 3600LL * 1000000, 0);
	assert_sql("<null>", "SELECT lease_owner FROM connector_schedule");
	assert_int_equal(take(other, "corp", "b:2", IDS_TAKE_DUE, &c), 0);
	assert_string_equal(c.owner, "");
	assert_true(c.wait_usec > 3599 * 1000000LL);
	ids_claim_clear(&c);
	assert_int_equal(took(other, "corp", "b:2", IDS_TAKE_NOW), 1);
	ids_store_close(other);
}

/* A connector not offered (a daemon whose configuration has it started
 * after this one's reload) is not taken, and there is nothing to wait
 * for. */
static void test_not_offered(void **state)
{
	struct ids_store *st = *state;
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	assert_int_equal(took(st, "acme", "a:1", IDS_TAKE_NOW), 0);
	assert_sql("0", "SELECT count(*) FROM connector_schedule WHERE connector = 'acme'");
}

/* The owner died: once its lease has run out the row is anyone's, the
 * take says whose it was, and the dead owner's late release or renewal
 * changes nothing. */
static void test_expired_lease(void **state)
{
	struct ids_store *st = *state;
	struct ids_error e = {0};
	struct ids_claim c;
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	assert_int_equal(took(st, "corp", "a:1", IDS_TAKE_DUE), 1);
	assert_int_equal(ids_store_queue_renew(st, "corp", "a:1", 60, &e), 0);
	sql("UPDATE connector_schedule SET lease_until = now() - interval '1 second'");
	assert_int_equal(take(st, "corp", "b:2", IDS_TAKE_DUE, &c), 1);
	assert_string_equal(c.owner, "a:1");
	ids_claim_clear(&c);
	assert_int_equal(ids_store_queue_renew(st, "corp", "a:1", 60, &e), IDS_E_LOCKED);
	ids_error_clear(&e);
	release(st, "corp", "a:1", 0, 0);
	assert_sql("b:2", "SELECT lease_owner FROM connector_schedule");
}

/* Our own lease is no obstacle: a release that did not reach the
 * database (connection lost after the run) must not keep this daemon
 * out of its connector for a whole lease. */
static void test_own_lease(void **state)
{
	struct ids_store *st = *state;
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	assert_int_equal(took(st, "corp", "a:1", IDS_TAKE_DUE), 1);
	assert_int_equal(took(st, "corp", "a:1", IDS_TAKE_DUE), 1);
	assert_int_equal(took(st, "corp", "b:2", IDS_TAKE_NOW), 0);
}

/* A row another daemon is taking at this moment (locked) is skipped,
 * not waited for. */
static void test_skip_locked(void **state)
{
	struct ids_store *st = *state;
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	sql("BEGIN");
	sql("SELECT * FROM connector_schedule WHERE connector = 'corp' FOR UPDATE");
	int r = took(st, "corp", "b:2", IDS_TAKE_DUE);
	sql("COMMIT");
	assert_int_equal(r, 0);
	assert_int_equal(took(st, "corp", "b:2", IDS_TAKE_DUE), 1);
}

/* A starting daemon runs its connectors at once, unless a daemon that is
 * alive ran them last: then their time stands (a fleet restarting does
 * not run everything once per daemon). */
static void test_take_at_start(void **state)
{
	struct ids_store *st = *state;
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	assert_int_equal(took(st, "corp", "a:1", IDS_TAKE_DUE), 1);
	release(st, "corp", "a:1", 3600LL * 1000000, 0);
	sql("INSERT INTO daemon_heartbeat (instance) VALUES ('a:1')");
	assert_int_equal(took(st, "corp", "b:2", IDS_TAKE_START), 0);
	sql("UPDATE daemon_heartbeat SET heartbeat_at = now() - interval '10 minutes'");
	assert_int_equal(took(st, "corp", "b:2", IDS_TAKE_START), 1);
	release(st, "corp", "b:2", 3600LL * 1000000, 0);
	/* our own last run, from before a restart with the same pid: free */
	sql("UPDATE daemon_heartbeat SET instance = 'b:2', heartbeat_at = now()");
	assert_int_equal(took(st, "corp", "b:2", IDS_TAKE_START), 1);
}

/* The backoff of a failed run travels with the row: the next taker,
 * whichever daemon it is, goes on doubling it. */
static void test_backoff_kept(void **state)
{
	struct ids_store *st = *state;
	struct ids_claim c;
	struct ids_strv mine = names("corp", NULL);
	offer(st, &mine, "a:1");
	assert_int_equal(took(st, "corp", "a:1", IDS_TAKE_DUE), 1);
	release(st, "corp", "a:1", 0, 30);
	assert_int_equal(take(st, "corp", "b:2", IDS_TAKE_DUE, &c), 1);
	assert_int_equal(c.backoff, 30);
	ids_claim_clear(&c);
}

int main(void)
{
	int r = db_setup("queue");
	if (r)
		return r;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_offer_keeps_time, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_take_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_offered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expired_lease, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_own_lease, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_skip_locked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_take_at_start, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backoff_kept, setup, teardown),
	};
	r = cmocka_run_group_tests_name("store: the shared queue", tests, NULL, NULL);
	db_teardown();
	return r;
}
