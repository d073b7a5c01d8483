/* ctest_sync_feed.c — issue 14's invariant end to end: after any sequence
 * of directory changes and incremental runs, a plan that reads everything
 * (`plan --full`) has nothing to do.  The runs are the daemon's own
 * (ids_sync_connector with the process's feeds: this binary compiles
 * daemon/), against the harness's slapd (syncprov, the sync account) and
 * PostgreSQL.  Each step makes random changes with ldapmodify (users
 * added, deleted, renamed, disabled, moved between groups, groups nested
 * and un-nested), runs a sync (incremental from the second on), then a
 * full plan, whose counts must all be zero.  Every third run is a
 * one-shot `idsyncd sync`'s (feeds of its own, keeping no snapshot: the
 * image and cursor read back from PostgreSQL), so that the process's
 * feeds find another instance committed since and read the stored state
 * back too; the two runs between are the process's, the second of them
 * patching the snapshot the first kept (ids_snapshot_patch).  The seed
 * is printed; IDS_TEST_SEED repeats a run, IDS_TEST_STEPS sets the number
 * of steps (200: the "hundreds of steps", about 30 s).  A held run (a safety guard) keeps the
 * image and cursor it started with: the next run still converges. */
#include "ctest_store_common.h"

#include <time.h>

#include "ids/log.h"
#include "ids/sync.h"

#define NUSERS 12
#define NSTEPS 200

static char g_ou[256], g_yaml[4096];
static const char *g_base;
/* test_invariant moves users into a sub-OU of ou=people and back, and
 * renames that OU: where each user is (0: ou=people, 1: the sub-OU) and
 * the sub-OU's name now */
static int g_where[NUSERS];
static const char *g_sub = "staff";

/* User u's DN now (a static buffer per call site's use: copied at once). */
static const char *udn(int u, char *buf, size_t n)
{
	if (u < NUSERS && g_where[u])
		snprintf(buf, n, "uid=u%d,ou=%s,ou=people,%s", u, g_sub, g_ou);
	else
		snprintf(buf, n, "uid=u%d,ou=people,%s", u, g_ou);
	return buf;
}

/* Applies LDIF (changetype records) as the rootdn; the test fails if
 * ldapmodify does, unless `lenient` (a change the directory may refuse:
 * a member that is there already). */
static void ldif(const char *text, bool lenient)
{
	char *cmd = NULL;
	if (asprintf(&cmd,
		     "LDAPTLS_CACERT='%s' ldapmodify -c -ZZ -x -H '%s' -D '%s' -y '%s' >/dev/null 2>&1 "
		     "<<'EOF'\n%s\nEOF",
		     getenv("IDS_TEST_LDAP_CA"), getenv("IDS_TEST_LDAP_URI"),
		     getenv("IDS_TEST_LDAP_ADMIN_DN"), getenv("IDS_TEST_LDAP_ADMIN_PW_FILE"), text) < 0)
		fail_msg("out of memory");
	int st = system(cmd);
	free(cmd);
	if (!lenient && st != 0)
		fail_msg("ldapmodify failed (%d):\n%s", st, text);
}

static void user_add(int u)
{
	char t[1024];
	snprintf(t, sizeof(t),
		 "dn: uid=u%d,ou=people,%s\nchangetype: add\nobjectClass: inetOrgPerson\nuid: u%d\nsn: S%d\n"
		 "cn: U %d\nmail: u%d@example.org\n",
		 u, g_ou, u, u, u, u);
	ldif(t, false);
}

static struct ids_config *load_cfg(void)
{
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	if (ids_config_load_string("feed.yaml", g_yaml, strlen(g_yaml), &cfg, &e) < 0)
		fail_msg("config: %s", ids_error_text(&e));
	return cfg;
}

/* One run of the connector: sync through the feeds, or a full plan. */
static void run(struct ids_config *cfg, struct ids_store *st, struct ids_feeds *feeds, bool plan,
		struct ids_sync_result *res)
{
	const struct ids_sync_opts o = {
	    .dry_run = plan, .print_plan = plan, .full = plan, .feeds = plan ? NULL : feeds};
	struct ids_buf out = {0};
	ids_sync_connector(cfg, st, &cfg->connectors[0], &o, &out, res);
	ids_buf_free(&out);
}

static void assert_nothing_to_do(const struct ids_sync_result *res, int step, unsigned seed)
{
	const struct ids_plan_counts *c = &res->counts;
	if (res->exit_code != IDS_EXIT_OK || c->created || c->updated || c->deactivated || c->reactivated ||
	    c->grants_added || c->grants_removed)
		fail_msg("step %d (seed %u): plan --full after the incremental run: exit %d, +%ld ~%ld -%ld "
			 "r%ld, grants +%ld -%ld (%s)",
			 step, seed, res->exit_code, c->created, c->updated, c->deactivated, c->reactivated,
			 c->grants_added, c->grants_removed, res->error ? res->error : "");
}

/* Random changes to the directory. */
static void change(bool *there, unsigned *seed)
{
	char t[2048];
	char dn[512];
	for (int k = 1 + (int)(rand_r(seed) % 3); k > 0; k--) {
		int u = (int)(rand_r(seed) % NUSERS), op = (int)(rand_r(seed) % 8);
		const char *grp = rand_r(seed) % 2 ? "CC-Support" : "Team";
		if (!there[u]) {
			g_where[u] = 0;
			user_add(u);
			there[u] = true;
			continue;
		}
		udn(u, dn, sizeof(dn));
		switch (op) {
		case 0:
			snprintf(t, sizeof(t), "dn: %s\nchangetype: delete\n", dn);
			ldif(t, false);
			there[u] = false;
			break;
		case 6: /* moved into the sub-OU or out of it (member values go stale, as without refint) */
			snprintf(t, sizeof(t),
				 "dn: %s\nchangetype: modrdn\nnewrdn: uid=u%d\ndeleteoldrdn: 1\nnewsuperior: "
				 "%s%s%s"
				 "ou=people,%s\n",
				 dn, u, g_where[u] ? "" : "ou=", g_where[u] ? "" : g_sub,
				 g_where[u] ? "" : ",", g_ou);
			ldif(t, false);
			g_where[u] = !g_where[u];
			break;
		case 7: { /* the sub-OU renamed: everyone in it has a new DN */
			const char *to = strcmp(g_sub, "staff") ? "staff" : "staff2";
			snprintf(
			    t, sizeof(t),
			    "dn: ou=%s,ou=people,%s\nchangetype: modrdn\nnewrdn: ou=%s\ndeleteoldrdn: 1\n",
			    g_sub, g_ou, to);
			ldif(t, false);
			g_sub = to;
			break;
		}
		case 1: /* disabled or enabled */
			snprintf(t, sizeof(t),
				 "dn: %s\nchangetype: modify\nreplace: description\ndescription: %s\n", dn,
				 rand_r(seed) % 2 ? "disabled" : "active");
			ldif(t, false);
			break;
		case 2:
		case 3: /* a member added or removed */
			snprintf(t, sizeof(t),
				 "dn: cn=%s,ou=groups,%s\nchangetype: modify\n%s: member\nmember: %s\n", grp,
				 g_ou, op == 2 ? "add" : "delete", dn);
			ldif(t, true);
			break;
		case 4: /* Team nested in CC-Support, or not */
			snprintf(t, sizeof(t),
				 "dn: cn=CC-Support,ou=groups,%s\nchangetype: modify\n%s: member\nmember: "
				 "cn=Team,ou=groups,%s\n",
				 g_ou, rand_r(seed) % 2 ? "add" : "delete", g_ou);
			ldif(t, true);
			break;
		default: /* a changed name */
			snprintf(t, sizeof(t), "dn: %s\nchangetype: modify\nreplace: sn\nsn: N%u\n", dn,
				 rand_r(seed) % 100);
			ldif(t, false);
		}
	}
}

static void test_invariant(void **state)
{
	(void)state;
	const char *env = getenv("IDS_TEST_SEED");
	unsigned seed0 = env ? (unsigned)strtoul(env, NULL, 10) : 14u, seed = seed0;
	print_message("test_invariant: seed %u (IDS_TEST_SEED=%u repeats it)\n", seed0, seed0);
	struct ids_config *cfg = load_cfg();
	struct ids_store *st = open_store("feedsync", true);
	struct ids_feeds *feeds = NULL;
	struct ids_sync_result res;
	bool there[NUSERS] = {0};
	const char *senv = getenv("IDS_TEST_STEPS");
	int nsteps = senv ? atoi(senv) : NSTEPS;
	assert_int_equal(ids_feeds_new(&feeds), 0);
	use_schema("feedsync");
	for (int step = 0; step < nsteps; step++) {
		struct ids_feeds *oneshot = NULL;
		change(there, &seed);
		if (step % 3 == 2) {
			assert_int_equal(ids_feeds_new(&oneshot), 0);
			ids_feeds_keep_snapshots(oneshot, false);
		}
		run(cfg, st, oneshot ? oneshot : feeds, false, &res);
		ids_feeds_free(oneshot);
		if (res.exit_code != IDS_EXIT_OK)
			fail_msg("step %d (seed %u): sync: %s %s", step, seed0, res.status,
				 res.error ? res.error : "");
		free(res.error);
		if (step > 0)
			assert_sql(
			    "incremental",
			    "SELECT read_kind FROM sync_run WHERE status = 'ok' ORDER BY id DESC LIMIT 1");
		run(cfg, st, feeds, true, &res);
		assert_nothing_to_do(&res, step, seed0);
		free(res.error);
	}
	assert_sql("t", "SELECT cursor IS NOT NULL FROM connector_feed WHERE connector = 'corp'");

	/* a held run: everyone gone at once is an empty source; the run is
	 * refused, and its image thrown away with it */
	char t[1024], dn[512];
	for (int u = 0; u < NUSERS; u++)
		if (there[u]) {
			snprintf(t, sizeof(t), "dn: %s\nchangetype: delete\n", udn(u, dn, sizeof(dn)));
			ldif(t, false);
		}
	memset(g_where, 0, sizeof(g_where));
	/* (after many random steps the users left may all be disabled or in
	 * conflict: an empty read then deactivates nobody and is no guard's) */
	char *active = sql_val("SELECT count(*) FROM app_user WHERE active AND source = 'corp'", 0, NULL);
	bool held = strcmp(active, "0") != 0;
	free(active);
	run(cfg, st, feeds, false, &res);
	assert_int_equal(res.exit_code, held ? IDS_EXIT_SAFETY : IDS_EXIT_OK);
	assert_string_equal(res.status, held ? "aborted_empty" : "ok");
	free(res.error);
	/* the users come back: the next incremental run starts from the
	 * image before the held one, and converges */
	user_add(1);
	user_add(2);
	run(cfg, st, feeds, false, &res);
	assert_int_equal(res.exit_code, IDS_EXIT_OK);
	free(res.error);
	assert_sql("incremental", "SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1");
	run(cfg, st, feeds, true, &res);
	assert_nothing_to_do(&res, nsteps, seed0);
	free(res.error);

	ids_feeds_free(feeds);
	ids_store_close(st);
	ids_config_free(cfg);
}

/* A service account whose size limit stops the unpaged refresh (the
 * harness's bind account: 50 entries) with more users than that: the
 * daemon's run reads everything instead, and keeps doing so. */
static void test_size_limit_fallback(void **state)
{
	(void)state;
	static char yaml[4096], text[60 * 200];
	char ou[300];
	snprintf(ou, sizeof(ou), "ou=sync_feed_limit,%s", g_base);
	size_t n = (size_t)snprintf(
	    text, sizeof(text),
	    "dn: %s\nchangetype: add\nobjectClass: organizationalUnit\nou: sync_feed_limit\n\n", ou);
	for (int u = 0; u < 55; u++)
		n += (size_t)snprintf(
		    text + n, sizeof(text) - n,
		    "dn: uid=m%d,%s\nchangetype: add\nobjectClass: inetOrgPerson\nuid: m%d\nsn: M\ncn: M "
		    "%d\n\n",
		    u, ou, u, u);
	ldif(text, true);
	snprintf(yaml, sizeof(yaml),
		 "database: { conninfo: \"%s\", schema: feedlimit }\n"
		 "connectors:\n"
		 "  - name: lim\n    type: ldap\n    company: acme\n    uri: \"%s\"\n    tls_ca_file: %s\n"
		 "    bind_dn: \"%s\"\n    bind_password_file: %s\n    users: { base: \"%s\" }\n"
		 "rules:\n  - name: all\n    match: { attribute: { uid: \"^m\" } }\n    tenant: t\n"
		 "    roles: [operator]\n",
		 g_conninfo, getenv("IDS_TEST_LDAP_URI"), getenv("IDS_TEST_LDAP_CA"),
		 getenv("IDS_TEST_LDAP_BIND_DN"), getenv("IDS_TEST_LDAP_BIND_PW_FILE"), ou);
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	if (ids_config_load_string("limit.yaml", yaml, strlen(yaml), &cfg, &e) < 0)
		fail_msg("config: %s", ids_error_text(&e));
	struct ids_store *st = open_store("feedlimit", true);
	struct ids_feeds *feeds = NULL;
	struct ids_sync_result res;
	assert_int_equal(ids_feeds_new(&feeds), 0);
	use_schema("feedlimit");
	for (int i = 0; i < 2; i++) {
		const struct ids_sync_opts o = {.feeds = feeds};
		struct ids_buf out = {0};
		ids_sync_connector(cfg, st, &cfg->connectors[0], &o, &out, &res);
		ids_buf_free(&out);
		if (res.exit_code != IDS_EXIT_OK)
			fail_msg("run %d: %s %s", i, res.status, res.error ? res.error : "");
		free(res.error);
		assert_sql("full", "SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1");
	}
	assert_sql("55", "SELECT count(*) FROM app_user WHERE active");
	ids_feeds_free(feeds);
	ids_store_close(st);
	ids_config_free(cfg);
	for (int u = 0; u < 55; u++) {
		snprintf(text, sizeof(text), "dn: uid=m%d,%s\nchangetype: delete\n", u, ou);
		ldif(text, true);
	}
	snprintf(text, sizeof(text), "dn: %s\nchangetype: delete\n", ou);
	ldif(text, true);
}

/* full_every: once it has passed since the last full read, the next run
 * reads everything again (through the feed, without its cursor). */
static void test_full_every(void **state)
{
	(void)state;
	static char yaml[4096];
	char *at = strstr(g_yaml, "    disabled_filter");
	assert_non_null(at);
	snprintf(yaml, sizeof(yaml), "%.*s    changes: { full_every: 1s }\n%s", (int)(at - g_yaml), g_yaml,
		 at);
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	if (ids_config_load_string("every.yaml", yaml, strlen(yaml), &cfg, &e) < 0)
		fail_msg("config: %s", ids_error_text(&e));
	struct ids_store *st = open_store("feedsync", true);
	struct ids_feeds *feeds = NULL;
	struct ids_sync_result res;
	static const char *const want[] = {"full", "incremental", "full", "incremental"};
	assert_int_equal(ids_feeds_new(&feeds), 0);
	use_schema("feedsync");
	for (int i = 0; i < 4; i++) {
		if (i == 2) {
			struct timespec ts = {1, 200 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		user_add(20 + i);
		run(cfg, st, feeds, false, &res);
		assert_int_equal(res.exit_code, IDS_EXIT_OK);
		free(res.error);
		assert_sql(want[i], "SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1");
		run(cfg, st, feeds, true, &res);
		assert_nothing_to_do(&res, i, 0);
		free(res.error);
	}
	ids_feeds_free(feeds);
	ids_store_close(st);
	ids_config_free(cfg);
}

int main(void)
{
	const char *need[] = {
	    "IDS_TEST_LDAP_URI",	   "IDS_TEST_LDAP_CA",		 "IDS_TEST_LDAP_ADMIN_DN",
	    "IDS_TEST_LDAP_ADMIN_PW_FILE", "IDS_TEST_LDAP_SYNC_DN",	 "IDS_TEST_LDAP_SYNC_PW_FILE",
	    "IDS_TEST_LDAP_BIND_DN",	   "IDS_TEST_LDAP_BIND_PW_FILE", "IDS_TEST_LDAP_BASE"};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!getenv(need[i]) || !*getenv(need[i]))
			return no_server("the harness's slapd (with the sync account) is not set up");
	int r = db_setup("sync_feed");
	if (r)
		return r;
	ids_log_setup(IDS_LOG_WARNING, IDS_LOGT_STDERR);
	g_base = getenv("IDS_TEST_LDAP_BASE");
	snprintf(g_ou, sizeof(g_ou), "ou=sync_feed,%s", g_base);
	sql("SET client_min_messages TO warning"); /* (the superuser connection: asserts read it) */
	char t[4096];
	snprintf(
	    t, sizeof(t),
	    "dn: %s\nchangetype: add\nobjectClass: organizationalUnit\nou: sync_feed\n\n"
	    "dn: ou=people,%s\nchangetype: add\nobjectClass: organizationalUnit\nou: people\n\n"
	    "dn: ou=groups,%s\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n\n"
	    "dn: ou=staff,ou=people,%s\nchangetype: add\nobjectClass: organizationalUnit\nou: staff\n\n"
	    "dn: cn=Team,ou=groups,%s\nchangetype: add\nobjectClass: groupOfNames\ncn: Team\nmember: "
	    "cn=nobody\n\n"
	    "dn: cn=CC-Support,ou=groups,%s\nchangetype: add\nobjectClass: groupOfNames\ncn: CC-Support\n"
	    "member: cn=Team,ou=groups,%s\n",
	    g_ou, g_ou, g_ou, g_ou, g_ou, g_ou, g_ou);
	ldif(t, true); /* a leftover subtree of an earlier run is fine: its users are deleted below */
	snprintf(g_yaml, sizeof(g_yaml),
		 "database: { conninfo: \"%s\", schema: feedsync }\n"
		 "safety: { max_deactivations: 1000, max_deactivation_percent: 100, "
		 "max_grant_removals_percent: 100 }\n"
		 "tenants: { auto_create: true }\n"
		 "connectors:\n"
		 "  - name: corp\n    type: ldap\n    company: acme\n    uri: \"%s\"\n    tls_ca_file: %s\n"
		 "    bind_dn: \"%s\"\n    bind_password_file: %s\n    users: { base: \"ou=people,%s\" }\n"
		 "    groups: { base: \"ou=groups,%s\" }\n    disabled_filter: \"(description=disabled)\"\n"
		 "rules:\n  - name: support\n    match: { member_of: [CC-Support] }\n    tenant: support\n"
		 "    roles: [operator]\n    channels: [webchat]\n",
		 g_conninfo, getenv("IDS_TEST_LDAP_URI"), getenv("IDS_TEST_LDAP_CA"),
		 getenv("IDS_TEST_LDAP_SYNC_DN"), getenv("IDS_TEST_LDAP_SYNC_PW_FILE"), g_ou, g_ou);
	for (int u = 0; u < 24; u++) { /* test_full_every's users are 20.. */
		snprintf(t, sizeof(t),
			 "dn: uid=u%d,ou=people,%s\nchangetype: delete\n\n"
			 "dn: uid=u%d,ou=staff,ou=people,%s\nchangetype: delete\n\n"
			 "dn: uid=u%d,ou=staff2,ou=people,%s\nchangetype: delete\n",
			 u, g_ou, u, g_ou, u, g_ou);
		ldif(t, true);
	}
	/* an earlier run may have left the sub-OU renamed (ou=staff is there:
	 * the subtree's LDIF above made it again) */
	snprintf(t, sizeof(t), "dn: ou=staff2,ou=people,%s\nchangetype: delete\n", g_ou);
	ldif(t, true);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_invariant),
	    cmocka_unit_test(test_size_limit_fallback),
	    cmocka_unit_test(test_full_every),
	};
	r = cmocka_run_group_tests_name("sync: change feed invariant", tests, NULL, NULL);
	db_teardown();
	return r;
}
