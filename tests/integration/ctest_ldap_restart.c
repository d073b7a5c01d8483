/* ctest_ldap_restart.c — the LDAP connector when the server goes away
 * during a paged search (reliability.md cases 1 and 3), and the progress
 * hook (watchdog pings, SIGTERM, run_timeout).
 *
 * Restarting the server would break every other test's connection, so
 * this binary starts its own slapd with tests/harness/slapd.sh in a
 * directory of its own, and drives it from the pull's progress hook: the
 * hook runs between pages, so "restart before page 3" is exact. */
#include "ctest_ldap_common.h"

#include <signal.h>

#define NUSERS 60
#define PAGE 10

static struct private_slapd g_slapd;
static char g_ou[256], g_people[DN_MAX], g_groups[DN_MAX];

/* p1..p60 in a group All. */
static int setup(void **state)
{
	LDAP *ld = admin_open();
	make_ou(ld, E.base, "ldap_restart", g_ou, g_people, g_groups);
	struct av av[NUSERS + 2];
	static char dns[NUSERS][DN_MAX + 32];
	char uid[16];
	for (int i = 0; i < NUSERS; i++) {
		snprintf(uid, sizeof(uid), "p%d", i + 1);
		add_person(ld, g_people, uid, "Paged", uid);
		snprintf(dns[i], sizeof(dns[i]), "uid=%s,%s", uid, g_people);
		av[i + 2] = (struct av){"member", dns[i], strlen(dns[i])};
	}
	av[0] = (struct av){"objectClass", "groupOfNames", 12};
	av[1] = (struct av){"cn", "All", 3};
	char dn[512];
	snprintf(dn, sizeof(dn), "cn=All,%s", g_groups);
	add_entry_av(ld, dn, av, NUSERS + 2);
	ldap_unbind_ext(ld, NULL, NULL);
	return 0;
}

/* What the progress hook does on its n-th call (1-based). */
struct script {
	int calls;
	bool sh_failed;	   /* a slapd.sh command failed (the pull was stopped) */
	int restart_at[8]; /* restart the server before these calls return; 0 ends */
	int stop_at;	   /* stop it */
	int fail_at;	   /* return fail_code */
	int fail_code;
};

static int progress(void *ud)
{
	struct script *sc = ud;
	/* no assert here: failing would jump out of the middle of the pull */
	sc->calls++;
	for (int i = 0; i < 8 && sc->restart_at[i]; i++)
		if (sc->restart_at[i] == sc->calls && private_slapd_sh(&g_slapd, "restart") != 0)
			sc->sh_failed = true;
	if (sc->stop_at == sc->calls && private_slapd_sh(&g_slapd, "stop") != 0)
		sc->sh_failed = true;
	if (sc->sh_failed)
		return IDS_E_CANCELLED;
	if (sc->fail_at && sc->fail_at == sc->calls)
		return sc->fail_code;
	return 0;
}

static void pull_script(struct tcfg *t, struct script *sc, struct pulled *p)
{
	tcfg_init(t, E.uri, g_people, g_groups);
	t->cc.ldap.page_size = PAGE;
	t->cc.ldap.timeout = 5;
	do_pull_ctx(t, progress, sc, p);
	if (sc->sh_failed)
		fail_msg("slapd.sh failed during the pull");
}

/* Every p1..p60 exactly once, valid, in All. */
static void assert_all(const struct ids_snapshot *s)
{
	assert_int_equal(s->nusers, NUSERS);
	char uid[16];
	for (int i = 0; i < NUSERS; i++) {
		snprintf(uid, sizeof(uid), "p%d", i + 1);
		const struct ids_user *u = user_by_name(s, uid);
		if (!u)
			fail_msg("user %s missing", uid);
		assert_null(u->invalid);
		assert_true(in_group(s, uid, "All"));
	}
}

static size_t g_baseline_pages;

/* A pull without incidents: the page count the others compare to, and
 * the hook is called before every page. */
static void test_baseline(void **state)
{
	struct tcfg t;
	struct pulled p;
	struct script sc = {0};
	pull_script(&t, &sc, &p);
	assert_pull_ok(&p);
	assert_all(p.s);
	g_baseline_pages = p.s->pages;
	/* 60 users in pages of 10 and one group page at least */
	assert_true(g_baseline_pages >= NUSERS / PAGE + 1);
	assert_true((size_t)sc.calls >= g_baseline_pages);
	pulled_free(&p);
	tcfg_free(&t);
}

/* The server restarts after two pages: the search starts again from page
 * 1 on a new connection, and the 20 users already read are not added a
 * second time. */
static void test_restart_between_pages(void **state)
{
	struct tcfg t;
	struct pulled p;
	struct script sc = {.restart_at = {3}};
	pull_script(&t, &sc, &p);
	assert_pull_ok(&p);
	assert_all(p.s);
	/* the two pages before the restart were read twice; and the third
	 * too when the server answered its request before it went down: the
	 * connector asks for the next page before it decodes the one it got */
	assert_true(p.s->pages == g_baseline_pages + 2 || p.s->pages == g_baseline_pages + 3);
	pulled_free(&p);
	tcfg_free(&t);
}

/* The server dies after two pages and does not come back: the pull fails
 * (the caller discards the 20 users it got). */
static void test_server_killed(void **state)
{
	struct tcfg t;
	struct pulled p;
	struct script sc = {.stop_at = 3};
	pull_script(&t, &sc, &p);
	assert_pull_failed(&p, IDS_E_CONNECT, "connection was lost", "users search", "reconnecting failed",
			   NULL);
	pulled_free(&p);
	tcfg_free(&t);
	assert_int_equal(private_slapd_sh(&g_slapd, "start"), 0);
}

/* A server that keeps restarting: restarts are bounded, then the pull
 * fails. */
static void test_restart_bounded(void **state)
{
	struct tcfg t;
	struct pulled p;
	/* each restart lands before the second page of the new attempt */
	struct script sc = {.restart_at = {3, 5, 7, 9, 11}};
	pull_script(&t, &sc, &p);
	assert_pull_failed(&p, IDS_E_CONNECT, "gave up after 3 restarts", NULL);
	pulled_free(&p);
	tcfg_free(&t);
}

/* SIGTERM (the daemon's hook says cancelled) and run_timeout (it says
 * timeout) stop the pull between pages with the daemon's reason. */
static void test_cancel(void **state)
{
	struct tcfg t;
	struct pulled p;
	struct script sc = {.fail_at = 2, .fail_code = IDS_E_CANCELLED};
	pull_script(&t, &sc, &p);
	assert_pull_failed(&p, IDS_E_CANCELLED, "cancelled", NULL);
	assert_int_equal(sc.calls, 2);
	pulled_free(&p);
	tcfg_free(&t);

	struct script sc2 = {.fail_at = 4, .fail_code = IDS_E_TIMEOUT};
	pull_script(&t, &sc2, &p);
	assert_pull_failed(&p, IDS_E_TIMEOUT, "run_timeout", NULL);
	pulled_free(&p);
	tcfg_free(&t);

	/* any other negative answer also stops it, as cancelled */
	struct script sc3 = {.fail_at = 1, .fail_code = -EINTR};
	pull_script(&t, &sc3, &p);
	assert_pull_failed(&p, IDS_E_CANCELLED, NULL);
	pulled_free(&p);
	tcfg_free(&t);
}

int main(void)
{
	int r = private_slapd_start(&g_slapd, "ctest_ldap_restart", 20000);
	if (r != 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_baseline),	  cmocka_unit_test(test_restart_between_pages),
	    cmocka_unit_test(test_server_killed), cmocka_unit_test(test_restart_bounded),
	    cmocka_unit_test(test_cancel),
	};
	r = cmocka_run_group_tests_name("ldap restart", tests, setup, NULL);
	private_slapd_stop(&g_slapd);
	return r;
}
