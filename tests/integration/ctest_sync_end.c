/* ctest_sync_end.c — every way a run ends reports itself the same way: a
 * summary line on the command's output, one outcome line in the log that
 * names the run, and the sync_run row with that id (issue 13 point 3).
 *
 * The failures no real server produces on demand (the diff out of memory,
 * the apply refused) are made by the linker: this binary compiles the
 * daemon's own sync.c and wraps ids_diff_compute, ids_store_apply and the connector
 * registry (-Wl,--wrap, tests/CMakeLists.txt).  The connector reads an
 * empty directory; PostgreSQL is the real one of tests/harness/pg.sh. */
#include "ctest_store_common.h"

#include <errno.h>

#include "ids/connector.h"
#include "ids/log.h"
#include "ids/sync.h"

static bool fail_diff, fail_apply;

int __real_ids_diff_compute(const struct ids_snapshot *s, const struct ids_desired_set *d,
			    const struct ids_current *c, const struct ids_diff_opts *o,
			    struct ids_plan **ret);
int __wrap_ids_diff_compute(const struct ids_snapshot *s, const struct ids_desired_set *d,
			    const struct ids_current *c, const struct ids_diff_opts *o,
			    struct ids_plan **ret);
int __wrap_ids_diff_compute(const struct ids_snapshot *s, const struct ids_desired_set *d,
			    const struct ids_current *c, const struct ids_diff_opts *o, struct ids_plan **ret)
{
	return fail_diff ? -ENOMEM : __real_ids_diff_compute(s, d, c, o, ret);
}

int __real_ids_store_apply(struct ids_store *st, int64_t company_id, const char *idp,
			   const struct ids_plan *p, const struct ids_run *run, int64_t *ret_run_id,
			   struct ids_error *err);
int __wrap_ids_store_apply(struct ids_store *st, int64_t company_id, const char *idp,
			   const struct ids_plan *p, const struct ids_run *run, int64_t *ret_run_id,
			   struct ids_error *err);
int __wrap_ids_store_apply(struct ids_store *st, int64_t company_id, const char *idp,
			   const struct ids_plan *p, const struct ids_run *run, int64_t *ret_run_id,
			   struct ids_error *err)
{
	if (fail_apply)
		return ids_error_set(err, IDS_E_DB, "insert into app_user: disk full");
	return __real_ids_store_apply(st, company_id, idp, p, run, ret_run_id, err);
}

static int64_t seen_deadline;

/* An empty directory; keeps the deadline the run passed in. */
static int empty_pull(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		      struct ids_snapshot *s, struct ids_error *err)
{
	seen_deadline = ctx->deadline_usec;
	return 0;
}

static const struct ids_connector_ops empty_ops = {.type = "ldap", .pull = empty_pull};

const struct ids_connector_ops *__wrap_ids_connector_find(enum ids_conn_type t);
const struct ids_connector_ops *__wrap_ids_connector_find(enum ids_conn_type t)
{
	return &empty_ops;
}

struct fx {
	struct ids_config cfg;
	struct ids_connector_cfg cc;
	struct ids_store *st;
	struct ids_buf out;
	struct ids_sync_result res;
	char *log; /* what the run wrote on stderr */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	make_cfg(&f->cfg, g_conninfo, "sync_end", NULL);
	f->cfg.safety.max_deactivations = 500;
	f->cfg.safety.max_deactivation_percent = 10;
	f->cfg.safety.max_grant_removals_percent = 25;
	f->cfg.sync.run_timeout = 600;
	f->cc.name = "corp";
	f->cc.type = IDS_CONN_LDAP;
	f->cc.company = "acme";
	f->st = open_store("sync_end", true);
	use_schema("sync_end");
	sql("TRUNCATE sync_run CASCADE");
	fail_diff = fail_apply = false;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ids_store_close(f->st);
	ids_buf_free(&f->out);
	free(f->res.error);
	free(f->log);
	free(f);
	return 0;
}

/* stderr into a temporary file for the time of one run. */
static int capture_begin(FILE **tmp)
{
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	*tmp = tmpfile();
	assert_non_null(*tmp);
	dup2(fileno(*tmp), STDERR_FILENO);
	return saved;
}

static char *capture_end(FILE *tmp, int saved)
{
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	long n = ftell(tmp);
	char *s = calloc(1, (size_t)n + 1);
	rewind(tmp);
	assert_int_equal(fread(s, 1, (size_t)n, tmp), (size_t)n);
	fclose(tmp);
	return s;
}

static void sync_once(struct fx *f)
{
	const struct ids_sync_opts o = {.format = IDS_FMT_TEXT};
	FILE *tmp;
	int saved = capture_begin(&tmp);
	ids_sync_connector(&f->cfg, f->st, &f->cc, &o, &f->out, &f->res);
	f->log = capture_end(tmp, saved);
}

static void assert_has(const char *hay, const char *needle)
{
	if (!strstr(hay ? hay : "", needle))
		fail_msg("[%s] not found in [%s]", needle, hay ? hay : "(null)");
}

/* The newest sync_run row is run `id` with `status`. */
static void assert_last_run(int64_t id, const char *status)
{
	char want[64];
	snprintf(want, sizeof(want), "%lld %s", (long long)id, status);
	assert_sql(want, "SELECT id || ' ' || status FROM sync_run ORDER BY id DESC LIMIT 1");
}

/* The reference: an ok run, its line and its row agree on the id. */
static void test_ok(void **state)
{
	struct fx *f = *state;
	sync_once(f);
	assert_int_equal(f->res.exit_code, IDS_EXIT_OK);
	assert_string_equal(f->out.p ? f->out.p : "",
			    "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants "
			    "added, 0 removed, 0 conflicts\n");
	char want[64];
	assert_last_run(f->res.run_id, "ok");
	snprintf(want, sizeof(want), "info corp: run %lld ok: 0 users", (long long)f->res.run_id);
	assert_has(f->log, want);
	/* the connector got run_timeout as an absolute monotonic deadline */
	int64_t now = ids_mono_usec();
	assert_true(seen_deadline > now + 590 * 1000000LL && seen_deadline <= now + 600 * 1000000LL);
}

/* The diff failed: the command printed nothing at all, and the log line
 * did not say which run. */
static void test_diff_failed(void **state)
{
	struct fx *f = *state;
	fail_diff = true;
	sync_once(f);
	assert_int_equal(f->res.exit_code, IDS_EXIT_FAILED);
	assert_string_equal(f->res.status, "failed");
	assert_has(f->out.p, "summary corp: failed: diff: ");
	char want[64];
	assert_last_run(f->res.run_id, "failed");
	snprintf(want, sizeof(want),
		 "error corp: run %lld failed, nothing written: diff: ", (long long)f->res.run_id);
	assert_has(f->log, want);
}

/* The apply failed: the summary of the plan went out before the apply
 * as if it had been done. */
static void test_apply_failed(void **state)
{
	struct fx *f = *state;
	fail_apply = true;
	sync_once(f);
	assert_int_equal(f->res.exit_code, IDS_EXIT_FAILED);
	assert_string_equal(f->out.p ? f->out.p : "",
			    "summary corp: failed: apply: insert into app_user: disk full\n");
	char want[96];
	snprintf(want, sizeof(want),
		 "error corp: run %lld failed, nothing written: apply: insert into app_user",
		 (long long)f->res.run_id);
	assert_has(f->log, want);
	assert_last_run(f->res.run_id, "failed");
}

/* `retire` while another instance holds the connector's lock: it logged
 * nothing, printed nothing and wrote no row; a sync did all three. */
static void test_retire_locked(void **state)
{
	struct fx *f = *state;
	struct ids_store *other = open_store("sync_end", true);
	struct ids_error e = {0};
	assert_int_equal(ids_store_lock(other, "corp", &e), 0);

	const struct ids_sync_opts o = {.print_plan = true};
	FILE *tmp;
	int saved = capture_begin(&tmp);
	ids_sync_retire(&f->cfg, f->st, "corp", &o, &f->out, &f->res);
	f->log = capture_end(tmp, saved);
	ids_store_close(other);

	assert_int_equal(f->res.exit_code, IDS_EXIT_LOCKED);
	assert_string_equal(f->res.status, "skipped_locked");
	assert_string_equal(f->out.p ? f->out.p : "", "summary corp: skipped, locked by another instance\n");
	char want[96];
	snprintf(want, sizeof(want),
		 "warning corp: run %lld skipped: another instance is syncing this connector",
		 (long long)f->res.run_id);
	assert_has(f->log, want);
	assert_last_run(f->res.run_id, "skipped_locked");
}

/* A sync under the same lock: the same three, the same words. */
static void test_sync_locked(void **state)
{
	struct fx *f = *state;
	struct ids_store *other = open_store("sync_end", true);
	struct ids_error e = {0};
	assert_int_equal(ids_store_lock(other, "corp", &e), 0);
	sync_once(f);
	ids_store_close(other);
	assert_int_equal(f->res.exit_code, IDS_EXIT_LOCKED);
	assert_string_equal(f->out.p ? f->out.p : "", "summary corp: skipped, locked by another instance\n");
	char want[96];
	snprintf(want, sizeof(want),
		 "warning corp: run %lld skipped: another instance is syncing this connector",
		 (long long)f->res.run_id);
	assert_has(f->log, want);
}

int main(void)
{
	int r = db_setup("sync_end");
	if (r)
		return r;
	ids_log_setup(IDS_LOG_DEBUG, IDS_LOGT_STDERR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_diff_failed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apply_failed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retire_locked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_locked, setup, teardown),
	};
	r = cmocka_run_group_tests(tests, NULL, NULL);
	db_teardown();
	return r;
}
