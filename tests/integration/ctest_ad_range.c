/* ctest_ad_range.c — the LDAP connector against a real Samba AD domain
 * controller (tests/harness/samba.sh): range retrieval of group members
 * and the primary group.
 *
 * - member_range_size N asks for "member;range=0-(N-1)", then on from
 *   where each answer ended, to the "…-*" range; the number of reads is
 *   counted in the snapshot's pages (one per page of each search, one per
 *   ranged read), so each size is checked against the reads it must take.
 * - A group deleted between its first read and the next range fails the
 *   pull (reliability.md case 5: no grant removals from a half-read group).
 * - A group that changes between two ranged reads (uSNChanged moves) is
 *   read again from value 0; a group that changes on every read fails the
 *   pull after a bounded number of attempts.
 * - primaryGroupID: a user whose primary group is read is in it, though
 *   AD lists him in no `member`; Domain Users (not read) is left out.
 * - The population's large group (IDS_TEST_AD_BULK members, more than
 *   MaxValRange) is read whole with several range sizes; the times are
 *   printed (the closing note asks for them).
 *
 * - A directory that stalls before a ranged read (through
 *   ctest_ldap_relay.h): the progress hook keeps being called every
 *   quarter second while the read waits, and a cancel from it (SIGTERM)
 *   ends the pull at once (issue 12 point 1).
 *
 * The progress hook (called before every page and every ranged read)
 * changes the directory at the right moment: once the group search has
 * put a group into the snapshot, the next calls come before its ranges.
 * Expected values come from the entries the test adds. */
#include "ctest_ldap_relay.h"

#define NUSERS 10 /* members of each test group */

static const char *g_ldaps, *g_bulk_group;
static int g_bulk;
static LDAP *g_admin;
static char g_ou[256], g_people[DN_MAX], g_groups[DN_MAX], g_doomed[DN_MAX], g_changing[DN_MAX];
static char g_prefix[16]; /* of the sAMAccountNames: unique in the domain */

/* ---------------- the directory side ---------------- */

static void user_dn(char *dn, size_t n, int i)
{
	snprintf(dn, n, "CN=Range %02d,%s", i, g_people);
}

static void user_sam(char *sam, size_t n, int i)
{
	snprintf(sam, n, "%s%02d", g_prefix, i);
}

static void add_user(int i)
{
	char dn[512], sam[32];
	user_dn(dn, sizeof(dn), i);
	user_sam(sam, sizeof(sam), i);
	/* 544: enabled, no password needed (the test never binds as it) */
	add_entry(g_admin, dn, "objectClass", "user", "sAMAccountName", sam, "sn", "Range",
		  "userAccountControl", "544", NULL);
}

/* A group with members `from`..`to` (none when from > to). */
static void add_group(const char *dn, const char *sam, int from, int to)
{
	struct av av[3 + NUSERS + 4];
	char members[NUSERS + 4][512];
	size_t n = 0;
	av[n++] = (struct av){"objectClass", "group", 5};
	av[n++] = (struct av){"sAMAccountName", sam, strlen(sam)};
	for (int i = from; i <= to; i++) {
		user_dn(members[i - from], sizeof(members[0]), i);
		av[n++] = (struct av){"member", members[i - from], strlen(members[i - from])};
	}
	add_entry_av(g_admin, dn, av, n);
}

static void modify(const char *dn, int op, const char *type, const char *val)
{
	char *vals[2] = {(char *)val, NULL};
	LDAPMod m = {.mod_op = op, .mod_type = (char *)type, .mod_values = vals}, *mods[2] = {&m, NULL};
	int rc = ldap_modify_ext_s(g_admin, dn, mods, NULL, NULL);
	if (rc != LDAP_SUCCESS)
		fail_msg("modify %s (%s): %s", dn, type, ldap_err2string(rc));
}

/* The RID of dn: the last sub-authority of its objectSid. */
static unsigned long rid_of(const char *dn)
{
	LDAPMessage *res = NULL;
	char *attrs[] = {"objectSid", NULL};
	int rc = ldap_search_ext_s(g_admin, dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL,
				   NULL, 1, &res);
	if (rc != LDAP_SUCCESS)
		fail_msg("read objectSid of %s: %s", dn, ldap_err2string(rc));
	struct berval **v = ldap_get_values_len(g_admin, ldap_first_entry(g_admin, res), "objectSid");
	assert_non_null(v);
	assert_true(v[0]->bv_len >= 12);
	const unsigned char *s = (const unsigned char *)v[0]->bv_val + v[0]->bv_len - 4;
	unsigned long rid =
	    s[0] | (unsigned long)s[1] << 8 | (unsigned long)s[2] << 16 | (unsigned long)s[3] << 24;
	ldap_value_free_len(v);
	ldap_msgfree(res);
	return rid;
}

static void add_ou(const char *dn, const char *name)
{
	add_entry(g_admin, dn, "objectClass", "organizationalUnit", "ou", name, NULL);
}

/* OU=ctest-ad-range-<pid>: people r01..r11; groups Ten (r01..r10), One
 * (r02), Empty, PG (r01's primary group, so no `member`); OU=doomed's
 * Doomed and OU=changing's Changing (r01..r10 each). */
static int setup(void **state)
{
	char dn[512], rid[16];
	snprintf(g_prefix, sizeof(g_prefix), "cr%d-", (int)getpid() % 100000);
	snprintf(g_ou, sizeof(g_ou), "OU=ctest-ad-range-%d,%s", (int)getpid(), E.base);
	snprintf(g_people, sizeof(g_people), "OU=people,%s", g_ou);
	snprintf(g_groups, sizeof(g_groups), "OU=groups,%s", g_ou);
	snprintf(g_doomed, sizeof(g_doomed), "OU=doomed,%s", g_ou);
	snprintf(g_changing, sizeof(g_changing), "OU=changing,%s", g_ou);
	g_admin = admin_open();
	delete_tree(g_admin, g_ou);
	char name[64];
	snprintf(name, sizeof(name), "ctest-ad-range-%d", (int)getpid());
	add_ou(g_ou, name); /* AD wants the ou value to be the RDN's */
	add_ou(g_people, "people");
	add_ou(g_groups, "groups");
	add_ou(g_doomed, "doomed");
	add_ou(g_changing, "changing");
	for (int i = 1; i <= NUSERS + 1; i++)
		add_user(i);
	char sam[32];
	snprintf(dn, sizeof(dn), "CN=Ten,%s", g_groups);
	snprintf(sam, sizeof(sam), "%sten", g_prefix);
	add_group(dn, sam, 1, NUSERS);
	snprintf(dn, sizeof(dn), "CN=One,%s", g_groups);
	snprintf(sam, sizeof(sam), "%sone", g_prefix);
	add_group(dn, sam, 2, 2);
	snprintf(dn, sizeof(dn), "CN=Empty,%s", g_groups);
	snprintf(sam, sizeof(sam), "%sempty", g_prefix);
	add_group(dn, sam, 1, 0);
	/* AD lets a user's primary group be only a group he is in; once it
	 * is, the membership leaves `member` (primaryGroupID holds it) */
	snprintf(dn, sizeof(dn), "CN=PG,%s", g_groups);
	snprintf(sam, sizeof(sam), "%spg", g_prefix);
	add_group(dn, sam, 1, 1);
	snprintf(rid, sizeof(rid), "%lu", rid_of(dn));
	char u1[512];
	user_dn(u1, sizeof(u1), 1);
	modify(u1, LDAP_MOD_REPLACE, "primaryGroupID", rid);
	snprintf(dn, sizeof(dn), "CN=Doomed,%s", g_doomed);
	snprintf(sam, sizeof(sam), "%sdoomed", g_prefix);
	add_group(dn, sam, 1, NUSERS);
	snprintf(dn, sizeof(dn), "CN=Changing,%s", g_changing);
	snprintf(sam, sizeof(sam), "%schanging", g_prefix);
	add_group(dn, sam, 1, NUSERS);
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	delete_tree(g_admin, g_ou);
	ldap_unbind_ext(g_admin, NULL, NULL);
	(void)state;
	return 0;
}

/* ---------------- the connector side ---------------- */

/* An active_directory connector as the config loader fills it: the
 * service account by UPN over LDAPS, one page per search. */
static void ad_cfg(struct tcfg *t, const char *users, const char *groups, int range_size)
{
	static const char *const ad_attr[6] = {"objectGUID", "sAMAccountName", "mail", "givenName",
					       "sn",	     "displayName"};
	tcfg_init(t, g_ldaps, users, groups);
	for (int i = 0; i < 6; i++)
		t->cc.attr[i] = (char *)ad_attr[i];
	t->cc.ldap.flavor = IDS_LDAP_AD;
	t->cc.ldap.users_filter = (char *)"(&(objectCategory=person)(objectClass=user))";
	t->cc.ldap.groups_filter = (char *)"(objectClass=group)";
	t->cc.ldap.page_size = 1000;
	t->cc.ldap.member_range_size = range_size;
	t->cc.ldap.timeout = 20;
}

/* The members of group `name` that are the test's users, as a count. */
static int members_of(const struct ids_snapshot *s, const char *name)
{
	int n = 0;
	char sam[32];
	for (int i = 1; i <= NUSERS + 1; i++) {
		user_sam(sam, sizeof(sam), i);
		if (user_by_name(s, sam) && in_group(s, sam, name))
			n++;
	}
	return n;
}

static void test_range_sizes(void **state)
{
	/* the ranged reads after the first answer: Ten (10 members) asked
	 * N at a time ends with the range that reaches its last value
	 * (Samba, like Windows, answers "0-*" to "0-9" when 9 is the last);
	 * One's single value is always in the first answer */
	static const struct {
		int size, reads;
	} cases[] = {{0, 0}, {1, 9}, {3, 3}, {9, 1}, {10, 0}, {11, 0}, {1500, 0}};
	char sam[32];
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct tcfg t;
		struct pulled p;
		ad_cfg(&t, g_people, g_groups, cases[c].size);
		do_pull(&t, &p);
		assert_pull_ok(&p);
		if (members_of(p.s, "Ten") != NUSERS)
			fail_msg("member_range_size %d: %d members of Ten, expected %d", cases[c].size,
				 members_of(p.s, "Ten"), NUSERS);
		assert_int_equal(members_of(p.s, "One"), 1);
		user_sam(sam, sizeof(sam), 2);
		assert_true(in_group(p.s, sam, "One"));
		assert_int_equal(members_of(p.s, "Empty"), 0);
		/* one page of users, one of groups, then the ranged reads */
		if (p.s->pages != 2 + (size_t)cases[c].reads)
			fail_msg("member_range_size %d: %zu reads, expected %d", cases[c].size, p.s->pages,
				 2 + cases[c].reads);
		pulled_free(&p);
		tcfg_free(&t);
	}
	(void)state;
}

static void test_primary_group(void **state)
{
	struct tcfg t;
	struct pulled p;
	char sam[32];
	ad_cfg(&t, g_people, g_groups, 3);
	do_pull(&t, &p);
	assert_pull_ok(&p);
	user_sam(sam, sizeof(sam), 1);
	/* r01: in PG through primaryGroupID only, and in Ten by `member` */
	assert_true(in_group(p.s, sam, "PG"));
	assert_true(in_group(p.s, sam, "Ten"));
	user_sam(sam, sizeof(sam), 2);
	assert_false(in_group(p.s, sam, "PG"));
	assert_int_equal(members_of(p.s, "PG"), 1);
	/* everyone else's primary group is Domain Users, not read: no
	 * membership was made up for it, and every member named a user */
	assert_int_equal(p.s->unresolved_members, 0);
	pulled_free(&p);
	tcfg_free(&t);
	(void)state;
}

/* The progress hook's state: the snapshot being built, and what to do
 * once it holds a group. */
struct hook {
	struct ids_snapshot **s;
	int mode; /* 0: delete Doomed once; 1: add r11 to Changing once; 2: toggle r11 each call */
	int done;
};

static int on_progress(void *ud)
{
	struct hook *h = ud;
	char dn[512], member[512];
	if (!*h->s || (*h->s)->ngroups == 0)
		return 0;
	user_dn(member, sizeof(member), NUSERS + 1);
	if (h->mode == 0 && !h->done) {
		snprintf(dn, sizeof(dn), "CN=Doomed,%s", g_doomed);
		assert_int_equal(ldap_delete_ext_s(g_admin, dn, NULL, NULL), LDAP_SUCCESS);
	} else if (h->mode == 1 && !h->done) {
		snprintf(dn, sizeof(dn), "CN=Changing,%s", g_changing);
		modify(dn, LDAP_MOD_ADD, "member", member);
	} else if (h->mode == 2) {
		/* in or out, whichever it is not now */
		char *vals[2] = {member, NULL};
		LDAPMod m = {.mod_op = LDAP_MOD_ADD, .mod_type = "member", .mod_values = vals},
			*mods[2] = {&m, NULL};
		snprintf(dn, sizeof(dn), "CN=Changing,%s", g_changing);
		int rc = ldap_modify_ext_s(g_admin, dn, mods, NULL, NULL);
		/* AD answers a member already there with entryAlreadyExists,
		 * not attributeOrValueExists */
		if (rc == LDAP_ALREADY_EXISTS || rc == LDAP_TYPE_OR_VALUE_EXISTS) {
			m.mod_op = LDAP_MOD_DELETE;
			rc = ldap_modify_ext_s(g_admin, dn, mods, NULL, NULL);
		}
		assert_int_equal(rc, LDAP_SUCCESS);
	}
	h->done++;
	return 0;
}

/* do_pull_ctx, but the hook sees the snapshot while it is built. */
static void pull_hooked(struct tcfg *t, struct hook *h, struct pulled *out)
{
	memset(out, 0, sizeof(*out));
	assert_int_equal(ids_snapshot_new(&out->s), 0);
	h->s = &out->s;
	const struct ids_pull_ctx ctx = {
	    .config = &t->config, .rule_attrs = &t->rule_attrs, .progress = on_progress, .ud = h};
	out->r = ids_connector_find(IDS_CONN_LDAP)->pull(&t->cc, &ctx, out->s, &out->err);
	if (out->r >= 0)
		out->finish = ids_snapshot_finish(out->s);
}

static void test_followup_fails(void **state)
{
	struct tcfg t;
	struct pulled p;
	struct hook h = {.mode = 0};
	ad_cfg(&t, g_people, g_doomed, 3);
	pull_hooked(&t, &h, &p);
	assert_true(h.done > 0);
	assert_pull_failed(&p, IDS_E_SERVER, "CN=Doomed", "deleted or moved", "from value 3", NULL);
	pulled_free(&p);
	tcfg_free(&t);
	(void)state;
}

static void test_changed_once(void **state)
{
	struct tcfg t;
	struct pulled p;
	struct hook h = {.mode = 1};
	char sam[32];
	ad_cfg(&t, g_people, g_changing, 3);
	pull_hooked(&t, &h, &p);
	assert_pull_ok(&p);
	/* read again from 0 after the change: the ten, and r11 added */
	assert_int_equal(members_of(p.s, "Changing"), NUSERS + 1);
	user_sam(sam, sizeof(sam), NUSERS + 1);
	assert_true(in_group(p.s, sam, "Changing"));
	/* the users' page, the groups' page, the read of 3-5 that saw the
	 * change, then 0-2, 3-5, 6-8, 9-* of the eleven */
	assert_int_equal(p.s->pages, 2 + 1 + 4);
	pulled_free(&p);
	tcfg_free(&t);
	(void)state;
}

static void test_changed_always(void **state)
{
	struct tcfg t;
	struct pulled p;
	struct hook h = {.mode = 2};
	ad_cfg(&t, g_people, g_changing, 3);
	pull_hooked(&t, &h, &p);
	assert_pull_failed(&p, IDS_E_SERVER, "CN=Changing", "changed during each of", NULL);
	pulled_free(&p);
	tcfg_free(&t);
	(void)state;
}

/* The group search has put a group into the snapshot: the next progress
 * call comes before the first ranged read. */
static bool has_group(const struct ids_snapshot *s)
{
	return s && s->ngroups > 0;
}

static void test_range_read_stall(void **state)
{
	struct relay r;
	struct tcfg t;
	struct pulled p;
	relay_start(&r, g_ldaps);
	ad_cfg(&t, g_people, g_groups, 3);
	tcfg_uris(&t, r.uri, NULL);
	struct stall_hook h = {.relay = &r, .when = has_group, .cancel_after = 1.5};
	pull_stalled(&t, &h, &p);
	relay_stop(&r);
	assert_pull_failed(&p, IDS_E_CANCELLED, "stopped while reading the members of a group", NULL);
	assert_stall_handled(&h, 0.4);
	pulled_free(&p);
	tcfg_free(&t);
	(void)state;
}

/* The population's CC-Everyone alone (users: the one service account, so
 * every member is counted unresolved — which proves each was read). */
static void test_large_group(void **state)
{
	static const int sizes[] = {0, 1500, 500, 100};
	char users[DN_MAX];
	snprintf(users, sizeof(users), "OU=Service Accounts,%s", E.base);
	for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
		struct tcfg t;
		struct pulled p;
		ad_cfg(&t, users, g_bulk_group, sizes[c]);
		do_pull(&t, &p);
		assert_pull_ok(&p);
		assert_int_equal(p.s->ngroups, 1);
		assert_int_equal(p.s->unresolved_members, (size_t)g_bulk);
		/* ceil(bulk / size) reads of the group, the first in its page */
		int reads = sizes[c] ? (g_bulk + sizes[c] - 1) / sizes[c] - 1 : 0;
		assert_int_equal(p.s->pages, 2 + (size_t)reads);
		printf("note: CC-Everyone, %d members, member_range_size %d: %d ranged reads, pull %.0f ms\n",
		       g_bulk, sizes[c], reads, p.seconds * 1000);
		pulled_free(&p);
		tcfg_free(&t);
	}
	(void)state;
}

int main(void)
{
	static char bulk_group[DN_MAX];
	const char *v[] = {"IDS_TEST_AD_URI",	   "IDS_TEST_AD_LDAPS_URI",    "IDS_TEST_AD_BASE",
			   "IDS_TEST_AD_CA",	   "IDS_TEST_AD_ADMIN_DN",     "IDS_TEST_AD_ADMIN_PW_FILE",
			   "IDS_TEST_AD_BIND_UPN", "IDS_TEST_AD_BIND_PW_FILE", "IDS_TEST_AD_BULK"};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		if (!getenv(v[i]) || !*getenv(v[i])) {
			if (getenv("CI") && !strcmp(getenv("CI"), "true")) {
				fprintf(stderr,
					"FAIL: %s is not set (CI=true: scripts/test must start Samba)\n",
					v[i]);
				return 1;
			}
			fprintf(stderr,
				"SKIP: %s is not set: no Samba AD DC, the AD tests did NOT run "
				"(tests/harness/samba.sh start DIR, then source DIR/samba.env)\n",
				v[i]);
			return 77;
		}
	}
	/* the connection helpers of ctest_ldap_common.h, pointed at the DC:
	 * admin over StartTLS, the connector over LDAPS as the service account */
	E.uri = getenv("IDS_TEST_AD_URI");
	E.base = getenv("IDS_TEST_AD_BASE");
	E.ca = getenv("IDS_TEST_AD_CA");
	E.admin_dn = getenv("IDS_TEST_AD_ADMIN_DN");
	E.admin_pw_file = getenv("IDS_TEST_AD_ADMIN_PW_FILE");
	E.bind_dn = getenv("IDS_TEST_AD_BIND_UPN");
	E.bind_pw_file = getenv("IDS_TEST_AD_BIND_PW_FILE");
	g_ldaps = getenv("IDS_TEST_AD_LDAPS_URI");
	g_bulk = (int)strtol(getenv("IDS_TEST_AD_BULK"), NULL, 10);
	snprintf(bulk_group, sizeof(bulk_group), "CN=CC-Everyone,OU=Groups,OU=Corp,%s", E.base);
	g_bulk_group = bulk_group;
	setvbuf(stdout, NULL, _IOLBF, 0);

	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_range_sizes),	     cmocka_unit_test(test_primary_group),
	    cmocka_unit_test(test_followup_fails),   cmocka_unit_test(test_changed_once),
	    cmocka_unit_test(test_changed_always),   cmocka_unit_test(test_large_group),
	    cmocka_unit_test(test_range_read_stall),
	};
	return cmocka_run_group_tests_name("ad ranges", tests, setup, teardown);
}
