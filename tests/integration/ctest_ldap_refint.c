/* ctest_ldap_refint.c — the change feed against a slapd with the refint
 * overlay (a private instance: tests/harness/slapd.sh with SLAPD_REFINT=1).
 * refint rewrites the member values naming a renamed or deleted entry
 * without changing the group's entryCSN, so syncrepl never sends those
 * groups (docs/changes.md); the feed reads them again itself.  After a
 * user's rename, a user's delete and the re-creation of its DN by someone
 * else, and a group's rename inside another group, the image must equal a
 * full read — which it does not without the feed's fix-up (refint_fixup
 * in connectors/ldap_feed.c). */
#include <signal.h>

#include "ctest_ldap_feed.h"

static struct private_slapd g_slapd;

/* refint writes after it has answered the operation: wait (up to 5 s)
 * until group gdn's member values hold `want` (or, want NULL, no longer
 * hold `gone`), so that the feed reads what refint left. */
static void wait_refint(LDAP *ld, const char *group_dn, const char *want, const char *gone)
{
	char *attrs[] = {(char *)"member", NULL};
	for (int i = 0; i < 50; i++) {
		LDAPMessage *res = NULL;
		bool has_want = false, has_gone = false;
		if (ldap_search_ext_s(ld, group_dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL,
				      NULL, LDAP_NO_LIMIT, &res) == LDAP_SUCCESS) {
			LDAPMessage *e = ldap_first_entry(ld, res);
			struct berval **v = e ? ldap_get_values_len(ld, e, "member") : NULL;
			for (size_t k = 0; v && v[k]; k++) {
				has_want |= want && !strncasecmp(v[k]->bv_val, want, v[k]->bv_len);
				has_gone |= gone && !strncasecmp(v[k]->bv_val, gone, v[k]->bv_len);
			}
			ldap_value_free_len(v);
		}
		ldap_msgfree(res);
		if ((want && has_want) || (!want && !has_gone))
			return;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	fail_msg("refint did not rewrite %s within 5 s", group_dn);
}

static void test_refint(void **state)
{
	(void)state;
	LDAP *ld = admin_open();
	struct tcfg t;
	struct feed f = {0};
	char u1[512], u2[512], u2b[512], g[512], g2[512], n[512];
	make_ou(ld, E.base, "ldap_refint", g_ou, g_people, g_groups);
	add_person(ld, g_people, "u1", "One", "User");
	add_person(ld, g_people, "u2", "Two", "User");
	udn(u1, "u1");
	udn(u2, "u2");
	udn(u2b, "u2b");
	gdn(g, "Team");
	gdn(g2, "Team2");
	gdn(n, "Nest");
	group(ld, "Team", u1, u2);
	group(ld, "Nest", g, NULL);
	tcfg_sync(&t);
	assert_int_equal(ids_image_new(&f.img), 0);
	struct ids_feed_pull fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "first read");

	/* a rename: refint rewrites Team's member, the feed sends u2b only */
	rename_to(ld, u2, "uid=u2b", NULL);
	wait_refint(ld, g, u2b, NULL);
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "after a rename");
	char *txt = image_text(f.img);
	assert_non_null(strstr(txt, "|u2b|")); /* and it is in Team: the full read says so */
	free(txt);

	/* a delete, then someone new at the same DN: refint removed the old
	 * member value, so the newcomer is in no group */
	del(ld, u1);
	wait_refint(ld, g, NULL, u1);
	add_person(ld, g_people, "u1", "New", "Comer");
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "after a delete and a new entry at the same DN");

	/* a group renamed inside another: Nest's member follows it */
	rename_to(ld, g, "cn=Team2", NULL);
	wait_refint(ld, n, g2, NULL);
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "after a group's rename");

	/* 99 members of one group renamed (their old and new DNs: five of
	 * the fix-up's searches of 40 terms, each of which finds the group by
	 * a new DN): the group is read whole once, not once per search that
	 * finds it (at tier L, 1% of users deleted sent a million values 250
	 * times) */
	char big[512], m[100][512];
	gdn(big, "Big");
	for (int i = 0; i < 100; i++) {
		char uid[16];
		snprintf(uid, sizeof(uid), "b%d", i);
		add_person(ld, g_people, uid, "Big", "Member");
		udn(m[i], uid);
	}
	group(ld, "Big", m[0], m[1]);
	for (int i = 2; i < 100; i++)
		modify(ld, big, LDAP_MOD_ADD, "member", m[i]);
	fp = feed_read(&t, &f, false);
	char last[512];
	for (int i = 0; i < 99; i++) {
		char rdn[16];
		snprintf(rdn, sizeof(rdn), "uid=c%d", i);
		rename_to(ld, m[i], rdn, NULL);
	}
	udn(last, "c98");
	wait_refint(ld, big, last, NULL);
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "after 99 members of one group renamed");
	assert_string_equal(f.fixup,
			    "member fix-up: 198 DNs left, 1 groups named them, 0 sent whole, 1 read again");

	/* the same group changed by a write of its own too: the feed sends it
	 * whole, as the server has it (refint's rewrites included), and the
	 * fix-up does not read it again */
	for (int i = 0; i < 5; i++) {
		char from[512], uid[16], rdn[24];
		snprintf(uid, sizeof(uid), "c%d", i);
		udn(from, uid);
		snprintf(uid, sizeof(uid), "d%d", i);
		snprintf(rdn, sizeof(rdn), "uid=%s", uid);
		rename_to(ld, from, rdn, NULL);
		udn(m[i], uid);
	}
	wait_refint(ld, big, m[4], NULL);
	modify(ld, big, LDAP_MOD_DELETE, "member", m[99]);
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "after 5 members renamed and a write of the group's own");
	assert_string_equal(f.fixup,
			    "member fix-up: 10 DNs left, 1 groups named them, 1 sent whole, 0 read again");
	(void)fp;

	feed_test_end(&t, &f, ld);
}

int main(void)
{
	setenv("SLAPD_REFINT", "1", 1);
	int r = private_slapd_start(&g_slapd, "ctest_ldap_refint", 30000);
	if (r != 0)
		return r;
	g_sync_dn = getenv("IDS_TEST_LDAP_SYNC_DN");
	g_sync_pw_file = getenv("IDS_TEST_LDAP_SYNC_PW_FILE");
	if (!g_sync_dn || !g_sync_pw_file) {
		private_slapd_stop(&g_slapd);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refint),
	};
	r = cmocka_run_group_tests_name("ldap: change feed under refint", tests, NULL, NULL);
	private_slapd_stop(&g_slapd);
	return r;
}
