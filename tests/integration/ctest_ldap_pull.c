/* ctest_ldap_pull.c — what the LDAP connector reads from a real slapd:
 * the mapped fields (with OpenLDAP's cn fallback for the display name),
 * rule attributes, disabled_filter, non-ASCII values and DNs with escaped
 * commas, a NUL byte, a missing username, groupOfNames / groupOfUniqueNames
 * (with the #'…'B uid suffix) / posixGroup memberships, nested and cyclic
 * groups, a member outside the users base, paging past the service
 * account's size limit (and a limit error when paging cannot help), and
 * a page too large to hold whole before decoding it.
 *
 * Each test owns ou=<test>,<base>.  Expected values are written out from
 * the LDIF the test adds and spec/connectors.md, not from the code. */
#include "ctest_ldap_common.h"
#include "ids/dn.h"

#include <regex.h>

/* ---------------- a small organisation ---------------- */

static char g_ou[256], g_people[DN_MAX], g_groups[DN_MAX];

/* alice: everything set; bob: no displayName (cn stands in); carol:
 * disabled; jnovak: non-ASCII; "Dvořák, Petr": an escaped comma in the
 * DN; nulbyte: a NUL in displayName; "No Uid": no username. */
static void build_org(LDAP *ld)
{
	char dn[512];
	make_ou(ld, E.base, "ldap_pull_org", g_ou, g_people, g_groups);

	snprintf(dn, sizeof(dn), "uid=alice,%s", g_people);
	add_entry(ld, dn, "objectClass", "inetOrgPerson", "uid", "alice", "givenName", "Alice", "sn", "Smith",
		  "cn", "Alice Smith", "displayName", "Alice S.", "mail", "alice@example.org", "mail",
		  "alice.smith@example.org", "departmentNumber", "100", "departmentNumber", "200",
		  "employeeType", "staff", NULL);
	add_person(ld, g_people, "bob", "Bob", "Jones");
	snprintf(dn, sizeof(dn), "uid=carol,%s", g_people);
	add_entry(ld, dn, "objectClass", "inetOrgPerson", "uid", "carol", "givenName", "Carol", "sn", "White",
		  "cn", "Carol White", "description", "disabled", NULL);
	snprintf(dn, sizeof(dn), "uid=jnovak,%s", g_people);
	add_entry(ld, dn, "objectClass", "inetOrgPerson", "uid", "jnovak", "givenName", "Jan", "sn",
		  "Nov\xc3\xa1k", "cn", "Jan Nov\xc3\xa1k", "displayName",
		  "Jan Nov\xc3\xa1k \xf0\x9f\x98\x80", NULL);
	snprintf(dn, sizeof(dn), "cn=Dvo\xc5\x99\xc3\xa1k\\, Petr,%s", g_people);
	add_entry(ld, dn, "objectClass", "inetOrgPerson", "uid", "pdvorak", "givenName", "Petr", "sn",
		  "Dvo\xc5\x99\xc3\xa1k", "cn", "Dvo\xc5\x99\xc3\xa1k, Petr", NULL);
	snprintf(dn, sizeof(dn), "uid=nulbyte,%s", g_people);
	static const char bad[] = "Bad\0Name";
	const struct av nul[] = {
	    {"objectClass", "inetOrgPerson", 13},
	    {"uid", "nulbyte", 7},
	    {"sn", "Byte", 4},
	    {"cn", "Nul Byte", 8},
	    {"displayName", bad, sizeof(bad) - 1},
	};
	add_entry_av(ld, dn, nul, sizeof(nul) / sizeof(nul[0]));
	snprintf(dn, sizeof(dn), "cn=No Uid,%s", g_people);
	add_entry(ld, dn, "objectClass", "inetOrgPerson", "sn", "Uid", "cn", "No Uid", NULL);

	/* groups: CC-Support holds alice, the group Team-B and someone
	 * outside the users base; Team-B names Petr in another spelling */
	char m1[512], m2[512], m3[512];
	snprintf(dn, sizeof(dn), "cn=CC-Support,%s", g_groups);
	snprintf(m1, sizeof(m1), "uid=alice,%s", g_people);
	snprintf(m2, sizeof(m2), "cn=Team-B,%s", g_groups);
	snprintf(m3, sizeof(m3), "uid=ghost,ou=elsewhere,%s", E.base);
	add_entry(ld, dn, "objectClass", "groupOfNames", "objectClass", "extensibleObject", "cn",
		  "CC-Support", "mail", "cc-support@example.org", "member", m1, "member", m2, "member", m3,
		  NULL);
	snprintf(dn, sizeof(dn), "cn=Team-B,%s", g_groups);
	snprintf(m1, sizeof(m1), "uid=bob,%s", g_people);
	snprintf(m2, sizeof(m2), "CN=Dvo\xc5\x99\xc3\xa1k\\2C Petr, OU=People, OU=ldap_pull_org, %s", E.base);
	add_entry(ld, dn, "objectClass", "groupOfNames", "cn", "Team-B", "member", m1, "member", m2, NULL);
	/* uniqueMember with and without the optional uid suffix */
	snprintf(dn, sizeof(dn), "cn=Unique,%s", g_groups);
	snprintf(m1, sizeof(m1), "uid=jnovak,%s#'0101'B", g_people);
	snprintf(m2, sizeof(m2), "uid=alice,%s", g_people);
	add_entry(ld, dn, "objectClass", "groupOfUniqueNames", "cn", "Unique", "uniqueMember", m1,
		  "uniqueMember", m2, NULL);
	snprintf(dn, sizeof(dn), "cn=posix,%s", g_groups);
	add_entry(ld, dn, "objectClass", "posixGroup", "cn", "posix", "gidNumber", "1000", "memberUid", "bob",
		  "memberUid", "carol", NULL);
	/* a cycle: Cycle-A in Cycle-B in Cycle-A, jnovak in Cycle-B */
	snprintf(dn, sizeof(dn), "cn=Cycle-A,%s", g_groups);
	snprintf(m1, sizeof(m1), "cn=Cycle-B,%s", g_groups);
	add_entry(ld, dn, "objectClass", "groupOfNames", "cn", "Cycle-A", "member", m1, NULL);
	snprintf(dn, sizeof(dn), "cn=Cycle-B,%s", g_groups);
	snprintf(m1, sizeof(m1), "cn=Cycle-A,%s", g_groups);
	snprintf(m2, sizeof(m2), "uid=jnovak,%s", g_people);
	add_entry(ld, dn, "objectClass", "groupOfNames", "cn", "Cycle-B", "member", m1, "member", m2, NULL);
}

static int org_setup(void **state)
{
	LDAP *ld = admin_open();
	build_org(ld);
	ldap_unbind_ext(ld, NULL, NULL);
	return 0;
}

static int org_teardown(void **state)
{
	LDAP *ld = admin_open();
	delete_tree(ld, g_ou);
	ldap_unbind_ext(ld, NULL, NULL);
	return 0;
}

static const struct ids_attr *attr_of(const struct ids_user *u, const char *name)
{
	for (size_t i = 0; i < u->nattrs; i++)
		if (!strcmp(u->attrs[i].name, name))
			return &u->attrs[i];
	return NULL;
}

static void assert_uuid(const char *s)
{
	regex_t re;
	assert_int_equal(regcomp(&re, "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	assert_non_null(s);
	if (regexec(&re, s, 0, NULL, 0) != 0)
		fail_msg("not an entryUUID: %s", s);
	regfree(&re);
}

/* The normalized form of a DN, as the snapshot keeps it. */
static char *norm(const char *dn)
{
	char *n = NULL;
	assert_int_equal(ids_dn_normalize(dn, strlen(dn), &n), 0);
	return n;
}

static void pull_org(struct tcfg *t, struct pulled *p)
{
	tcfg_init(t, E.uri, g_people, g_groups);
	t->cc.ldap.disabled_filter = (char *)"(description=disabled)";
	assert_int_equal(ids_strv_push(&t->rule_attrs, "departmentNumber"), 0);
	assert_int_equal(ids_strv_push(&t->rule_attrs, "employeetype"), 0);
	assert_int_equal(ids_strv_push(&t->rule_attrs, "roomNumber"), 0);
	do_pull(t, p);
	assert_pull_ok(p);
}

static void test_fields(void **state)
{
	struct tcfg t;
	struct pulled p;
	pull_org(&t, &p);
	const struct ids_snapshot *s = p.s;

	/* alice, bob, carol, jnovak, pdvorak, nulbyte, No Uid */
	assert_int_equal(s->nusers, 7);
	const struct ids_user *a = user_by_name(s, "alice");
	assert_non_null(a);
	assert_uuid(a->f[IDS_F_EXTERNAL_ID]);
	/* the first value of a multi-valued attribute */
	assert_string_equal(a->f[IDS_F_EMAIL], "alice@example.org");
	assert_string_equal(a->f[IDS_F_FIRST_NAME], "Alice");
	assert_string_equal(a->f[IDS_F_LAST_NAME], "Smith");
	assert_string_equal(a->f[IDS_F_DISPLAY_NAME], "Alice S.");
	char dn[512];
	snprintf(dn, sizeof(dn), "uid=alice,ou=people,ou=ldap_pull_org,%s", E.base);
	char *n = norm(dn);
	assert_string_equal(a->f[IDS_F_DN], n);
	free(n);
	assert_false(a->disabled);
	assert_null(a->invalid);

	/* OpenLDAP flavour: no displayName -> cn */
	const struct ids_user *b = user_by_name(s, "bob");
	assert_non_null(b);
	assert_string_equal(b->f[IDS_F_DISPLAY_NAME], "Bob Jones");
	assert_string_equal(b->f[IDS_F_EMAIL], "bob@example.org");
	assert_false(b->disabled);

	/* two users never share an external id */
	for (size_t i = 1; i < s->nusers; i++)
		assert_true(strcmp(s->users[i - 1].f[IDS_F_EXTERNAL_ID], s->users[i].f[IDS_F_EXTERNAL_ID]) <
			    0);
	pulled_free(&p);
	tcfg_free(&t);
}

static void test_rule_attrs(void **state)
{
	struct tcfg t;
	struct pulled p;
	pull_org(&t, &p);
	const struct ids_user *a = user_by_name(p.s, "alice");
	const struct ids_attr *dep = attr_of(a, "departmentNumber");
	assert_non_null(dep);
	assert_int_equal(dep->nvalues, 2);
	assert_string_equal(dep->values[0], "100");
	assert_string_equal(dep->values[1], "200");
	/* matched case-insensitively, kept under the rule's spelling */
	const struct ids_attr *et = attr_of(a, "employeetype");
	assert_non_null(et);
	assert_int_equal(et->nvalues, 1);
	assert_string_equal(et->values[0], "staff");
	/* asked for but absent */
	assert_null(attr_of(a, "roomNumber"));
	/* bob has none of them */
	assert_null(attr_of(user_by_name(p.s, "bob"), "departmentNumber"));
	pulled_free(&p);
	tcfg_free(&t);
}

static void test_disabled_filter(void **state)
{
	struct tcfg t;
	struct pulled p;
	pull_org(&t, &p);
	assert_true(user_by_name(p.s, "carol")->disabled);
	size_t ndisabled = 0;
	for (size_t i = 0; i < p.s->nusers; i++)
		ndisabled += p.s->users[i].disabled;
	assert_int_equal(ndisabled, 1);
	pulled_free(&p);
	tcfg_free(&t);

	/* without the filter nobody is disabled */
	tcfg_init(&t, E.uri, g_people, g_groups);
	do_pull(&t, &p);
	assert_pull_ok(&p);
	assert_false(user_by_name(p.s, "carol")->disabled);
	pulled_free(&p);
	tcfg_free(&t);
}

static void test_non_ascii_and_escapes(void **state)
{
	struct tcfg t;
	struct pulled p;
	pull_org(&t, &p);
	const struct ids_user *j = user_by_name(p.s, "jnovak");
	assert_non_null(j);
	assert_null(j->invalid);
	assert_string_equal(j->f[IDS_F_LAST_NAME], "Nov\xc3\xa1k");
	assert_string_equal(j->f[IDS_F_DISPLAY_NAME], "Jan Nov\xc3\xa1k \xf0\x9f\x98\x80");

	/* the escaped comma stays inside the RDN value */
	const struct ids_user *d = user_by_name(p.s, "pdvorak");
	assert_non_null(d);
	assert_null(d->invalid);
	char dn[512];
	snprintf(dn, sizeof(dn), "cn=Dvo\xc5\x99\xc3\xa1k\\, Petr,ou=people,ou=ldap_pull_org,%s", E.base);
	char *n = norm(dn);
	assert_string_equal(d->f[IDS_F_DN], n);
	free(n);
	assert_string_equal(d->f[IDS_F_DISPLAY_NAME], "Dvo\xc5\x99\xc3\xa1k, Petr");
	pulled_free(&p);
	tcfg_free(&t);
}

static void test_invalid_users(void **state)
{
	struct tcfg t;
	struct pulled p;
	pull_org(&t, &p);
	/* a NUL byte in a mapped value: kept, but marked invalid */
	const struct ids_user *u = user_by_name(p.s, "nulbyte");
	assert_non_null(u);
	assert_non_null(u->invalid);
	/* no uid: kept as invalid (the diff leaves such a user alone) */
	size_t nouid = 0;
	for (size_t i = 0; i < p.s->nusers; i++)
		if (!p.s->users[i].f[IDS_F_USERNAME]) {
			nouid++;
			assert_non_null(p.s->users[i].invalid);
		}
	assert_int_equal(nouid, 1);
	/* the others are fine */
	assert_null(user_by_name(p.s, "alice")->invalid);
	assert_null(user_by_name(p.s, "bob")->invalid);
	pulled_free(&p);
	tcfg_free(&t);
}

static void test_groups(void **state)
{
	struct tcfg t;
	struct pulled p;
	char buf[512];
	pull_org(&t, &p);
	const struct ids_snapshot *s = p.s;
	assert_int_equal(s->ngroups, 6);
	long g = group_by_name(s, "CC-Support");
	assert_true(g >= 0);
	assert_uuid(s->groups[g].id);
	assert_string_equal(s->groups[g].email, "cc-support@example.org");
	char dn[512];
	snprintf(dn, sizeof(dn), "cn=CC-Support,ou=groups,ou=ldap_pull_org,%s", E.base);
	char *n = norm(dn);
	assert_string_equal(s->groups[g].dn, n);
	free(n);
	assert_null(s->groups[group_by_name(s, "Team-B")].email);

	/* transitive memberships, derived from the LDIF by hand:
	 * alice: CC-Support (member), Unique (uniqueMember)
	 * bob: Team-B, so CC-Support too; posix (memberUid)
	 * carol: posix (memberUid), even though disabled
	 * jnovak: Unique (with #'0101'B), Cycle-B, so Cycle-A, so Cycle-B
	 * pdvorak: Team-B (by another spelling of the DN), so CC-Support */
	assert_string_equal(groups_of(s, "alice", buf, sizeof(buf)), "CC-Support,Unique");
	assert_string_equal(groups_of(s, "bob", buf, sizeof(buf)), "CC-Support,Team-B,posix");
	assert_string_equal(groups_of(s, "carol", buf, sizeof(buf)), "posix");
	assert_string_equal(groups_of(s, "jnovak", buf, sizeof(buf)), "Cycle-A,Cycle-B,Unique");
	assert_string_equal(groups_of(s, "pdvorak", buf, sizeof(buf)), "CC-Support,Team-B");
	assert_true(in_group(s, "bob", "CC-Support"));
	/* uid=ghost,ou=elsewhere is nobody we read */
	assert_int_equal(s->unresolved_members, 1);
	/* one page each: disabled users, users, groups */
	assert_int_equal(s->pages, 3);
	pulled_free(&p);
	tcfg_free(&t);
}

static void test_member_attribute(void **state)
{
	struct tcfg t;
	struct pulled p;
	char buf[512];
	tcfg_init(&t, E.uri, g_people, g_groups);
	/* only memberUid: the DN-based memberships are not read */
	t.cc.ldap.member_attribute = (char *)"memberUid";
	do_pull(&t, &p);
	assert_pull_ok(&p);
	assert_string_equal(groups_of(p.s, "bob", buf, sizeof(buf)), "posix");
	assert_string_equal(groups_of(p.s, "alice", buf, sizeof(buf)), "");
	pulled_free(&p);
	tcfg_free(&t);

	/* no groups base: users only */
	tcfg_init(&t, E.uri, g_people, NULL);
	do_pull(&t, &p);
	assert_pull_ok(&p);
	assert_int_equal(p.s->ngroups, 0);
	assert_int_equal(p.s->nusers, 7);
	assert_int_equal(p.s->pages, 1);
	pulled_free(&p);
	tcfg_free(&t);
}

/* ---------------- paging past the size limit ---------------- */

#define NPAGED 120
static char p_ou[256], p_people[DN_MAX], p_groups[DN_MAX];

static int paged_setup(void **state)
{
	LDAP *ld = admin_open();
	make_ou(ld, E.base, "ldap_pull_paged", p_ou, p_people, p_groups);
	struct av av[NPAGED + 2];
	static char dns[NPAGED][DN_MAX + 32];
	char uid[16];
	for (int i = 0; i < NPAGED; i++) {
		snprintf(uid, sizeof(uid), "p%d", i + 1);
		add_person(ld, p_people, uid, "Paged", uid);
		snprintf(dns[i], sizeof(dns[i]), "uid=%s,%s", uid, p_people);
		av[i + 2] = (struct av){"member", dns[i], strlen(dns[i])};
	}
	av[0] = (struct av){"objectClass", "groupOfNames", 12};
	av[1] = (struct av){"cn", "All", 3};
	char dn[512];
	snprintf(dn, sizeof(dn), "cn=All,%s", p_groups);
	add_entry_av(ld, dn, av, NPAGED + 2);
	ldap_unbind_ext(ld, NULL, NULL);
	return 0;
}

static int paged_teardown(void **state)
{
	LDAP *ld = admin_open();
	delete_tree(ld, p_ou);
	ldap_unbind_ext(ld, NULL, NULL);
	return 0;
}

/* Every p1..pN exactly once, all in the group All. */
static void assert_all_paged(const struct ids_snapshot *s)
{
	assert_int_equal(s->nusers, NPAGED);
	char uid[16];
	for (int i = 0; i < NPAGED; i++) {
		snprintf(uid, sizeof(uid), "p%d", i + 1);
		const struct ids_user *u = user_by_name(s, uid);
		if (!u)
			fail_msg("user %s missing", uid);
		assert_null(u->invalid);
		assert_true(in_group(s, uid, "All"));
	}
}

static void test_size_limit_is_real(void **state)
{
	/* the service account's plain search stops at the limit: the
	 * directory really is larger than one unpaged answer */
	LDAP *ld = admin_open_at(E.uri, E.ca, E.bind_dn, E.bind_pw_file);
	LDAPMessage *res = NULL;
	char *attrs[] = {"uid", NULL};
	int rc = ldap_search_ext_s(ld, p_people, LDAP_SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", attrs, 0,
				   NULL, NULL, NULL, LDAP_NO_LIMIT, &res);
	assert_int_equal(rc, LDAP_SIZELIMIT_EXCEEDED);
	assert_int_equal(ldap_count_entries(ld, res), E.sizelimit);
	assert_true(E.sizelimit < NPAGED);
	ldap_msgfree(res);
	ldap_unbind_ext(ld, NULL, NULL);
}

static void test_paged(void **state)
{
	struct tcfg t;
	struct pulled p;
	tcfg_init(&t, E.uri, p_people, p_groups);
	t.cc.ldap.page_size = 20;
	do_pull(&t, &p);
	assert_pull_ok(&p);
	assert_all_paged(p.s);
	/* 120 users in pages of 20, then the one group */
	assert_true(p.s->pages >= NPAGED / 20 + 1);
	pulled_free(&p);
	tcfg_free(&t);
}

static void test_page_size_above_limit(void **state)
{
	struct tcfg t;
	struct pulled p;
	tcfg_init(&t, E.uri, p_people, p_groups);
	t.cc.ldap.page_size = 1000;
	do_pull(&t, &p);
	assert_pull_ok(&p);
	assert_all_paged(p.s);
	pulled_free(&p);
	tcfg_free(&t);
}

/* An account whose paged searches are capped too: entries arrived, but
 * the pull fails and says which limit (reliability.md case 4). */
static void test_limit_fails_pull(void **state)
{
	if (!E.limited_dn || !*E.limited_dn || !E.limited_pw_file) {
		skip();
		return;
	}
	struct tcfg t;
	struct pulled p;
	tcfg_init(&t, E.uri, p_people, p_groups);
	t.cc.ldap.bind_dn = (char *)E.limited_dn;
	free(t.pw);
	t.pw = read_file(E.limited_pw_file);
	t.cc.ldap.bind_password = t.pw;
	do_pull(&t, &p);
	assert_pull_failed(&p, IDS_E_LIMIT, "size limit", "users search", "page_size", NULL);
	pulled_free(&p);
	tcfg_free(&t);
}

/* ---------------- a page larger than the connector holds ---------------- */

/* NBIG users of BIG_LEN-byte descriptions: one page of 6 MB, past the
 * 4 MB the connector holds before it decodes entries as they arrive
 * (HOLD_MAX), so that page takes the early-decoding path. */
#define NBIG 6
#define BIG_LEN (1u << 20)

static char b_ou[256], b_people[DN_MAX], b_groups[DN_MAX];

/* User i's description: 'a' + i throughout, its digit at both ends (a
 * value given to the wrong entry, or cut short, shows). */
static void big_value(char *v, int i)
{
	memset(v, 'a' + i, BIG_LEN);
	v[0] = v[BIG_LEN - 1] = (char)('0' + i);
}

static int big_setup(void **state)
{
	LDAP *ld = admin_open();
	char *v = malloc(BIG_LEN), dn[DN_MAX + 32], uid[16];
	assert_non_null(v);
	make_ou(ld, E.base, "ldap_pull_big", b_ou, b_people, b_groups);
	for (int i = 0; i < NBIG; i++) {
		snprintf(uid, sizeof(uid), "b%d", i);
		snprintf(dn, sizeof(dn), "uid=%s,%s", uid, b_people);
		big_value(v, i);
		const struct av av[] = {
		    {"objectClass", "inetOrgPerson", 13},
		    {"uid", uid, strlen(uid)},
		    {"sn", "Big", 3},
		    {"cn", "Big User", 8},
		    {"description", v, BIG_LEN},
		};
		add_entry_av(ld, dn, av, sizeof(av) / sizeof(av[0]));
	}
	free(v);
	ldap_unbind_ext(ld, NULL, NULL);
	(void)state;
	return 0;
}

static int big_teardown(void **state)
{
	LDAP *ld = admin_open();
	delete_tree(ld, b_ou);
	ldap_unbind_ext(ld, NULL, NULL);
	(void)state;
	return 0;
}

static void test_page_past_hold_limit(void **state)
{
	struct tcfg t;
	struct pulled p;
	char *want = malloc(BIG_LEN + 1), uid[16];
	assert_non_null(want);
	tcfg_init(&t, E.uri, b_people, b_groups);
	assert_int_equal(ids_strv_push(&t.rule_attrs, "description"), 0);
	do_pull(&t, &p);
	assert_pull_ok(&p);
	assert_int_equal(p.s->nusers, NBIG);
	for (int i = 0; i < NBIG; i++) {
		snprintf(uid, sizeof(uid), "b%d", i);
		const struct ids_user *u = user_by_name(p.s, uid);
		assert_non_null(u);
		const struct ids_attr *d = attr_of(u, "description");
		assert_non_null(d);
		assert_int_equal(d->nvalues, 1);
		assert_int_equal(strlen(d->values[0]), BIG_LEN);
		big_value(want, i);
		assert_memory_equal(d->values[0], want, BIG_LEN);
	}
	pulled_free(&p);
	tcfg_free(&t);
	free(want);
	(void)state;
}

/* ---------------- the Active Directory flavour ---------------- */

/* slapd with AD's user and group classes (msuser.schema): objectGUID is
 * binary, the username is sAMAccountName, userAccountControl 514 has the
 * ACCOUNTDISABLE bit (0x2). */
static char a_ou[256], a_people[DN_MAX], a_groups[DN_MAX];

/* A GUID's 16 bytes as AD stores them, and the string AD shows for it
 * (first three groups little-endian), written out by hand. */
static const char guid_ann[16] = "\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff";
#define GUID_ANN "33221100-5544-7766-8899-aabbccddeeff"
static const char guid_ben[16] = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10";
#define GUID_BEN "04030201-0605-0807-090a-0b0c0d0e0f10"
static const char guid_grp[16] = "\xf0\xe0\xd0\xc0\xb0\xa0\x90\x80\x70\x60\x50\x40\x30\x20\x10\x00";
#define GUID_GRP "c0d0e0f0-a0b0-8090-7060-504030201000"

static void add_ad_user(LDAP *ld, const char *cn, const char *sam, const char *guid, const char *uac,
			bool with_display)
{
	char dn[512];
	snprintf(dn, sizeof(dn), "CN=%s,%s", cn, a_people);
	struct av av[16];
	size_t n = 0;
	av[n++] = (struct av){"objectClass", "user", 4};
	av[n++] = (struct av){"objectClass", "extensibleObject", 16};
	av[n++] = (struct av){"cn", cn, strlen(cn)};
	av[n++] = (struct av){"sn", sam, strlen(sam)};
	av[n++] = (struct av){"instanceType", "4", 1};
	av[n++] = (struct av){"nTSecurityDescriptor", "\x01\x00", 2};
	av[n++] = (struct av){"objectCategory", "CN=Person,CN=Schema,CN=Configuration,DC=example,DC=org",
			      strlen("CN=Person,CN=Schema,CN=Configuration,DC=example,DC=org")};
	av[n++] = (struct av){"objectGUID", guid, 16};
	av[n++] = (struct av){"sAMAccountName", sam, strlen(sam)};
	av[n++] = (struct av){"userAccountControl", uac, strlen(uac)};
	if (with_display)
		av[n++] = (struct av){"displayName", "Ann (AD)", 8};
	add_entry_av(ld, dn, av, n);
}

static int ad_setup(void **state)
{
	LDAP *ld = admin_open();
	make_ou(ld, E.base, "ldap_pull_ad", a_ou, a_people, a_groups);
	add_ad_user(ld, "Ann Admin", "ann", guid_ann, "512", true);
	add_ad_user(ld, "Ben Gone", "ben", guid_ben, "514", false);
	char dn[512], m1[512], m2[512];
	snprintf(dn, sizeof(dn), "CN=CC-Support,%s", a_groups);
	snprintf(m1, sizeof(m1), "CN=Ann Admin,%s", a_people);
	snprintf(m2, sizeof(m2), "CN=Ben Gone,%s", a_people);
	const struct av g[] = {
	    {"objectClass", "group", 5},
	    {"cn", "CC-Support", 10},
	    {"groupType", "-2147483646", 11},
	    {"instanceType", "4", 1},
	    {"nTSecurityDescriptor", "\x01\x00", 2},
	    {"objectCategory", "CN=Group,CN=Schema,CN=Configuration,DC=example,DC=org",
	     strlen("CN=Group,CN=Schema,CN=Configuration,DC=example,DC=org")},
	    {"objectGUID", guid_grp, 16},
	    {"mail", "cc-support@example.org", 22},
	    {"member", m1, strlen(m1)},
	    {"member", m2, strlen(m2)},
	};
	add_entry_av(ld, dn, g, sizeof(g) / sizeof(g[0]));
	ldap_unbind_ext(ld, NULL, NULL);
	return 0;
}

static int ad_teardown(void **state)
{
	LDAP *ld = admin_open();
	delete_tree(ld, a_ou);
	ldap_unbind_ext(ld, NULL, NULL);
	return 0;
}

static void test_ad_flavor(void **state)
{
	struct tcfg t;
	struct pulled p;
	tcfg_init(&t, E.uri, a_people, a_groups);
	/* the attributes the config loader fills in for flavor:
	 * active_directory; the filters name objectClass, as the loader's
	 * objectCategory=person default only means something to a real AD */
	static const char *const ad_attr[6] = {"objectGUID", "sAMAccountName", "mail", "givenName",
					       "sn",	     "displayName"};
	t.cc.ldap.flavor = IDS_LDAP_AD;
	for (int i = 0; i < 6; i++)
		t.cc.attr[i] = (char *)ad_attr[i];
	t.cc.ldap.users_filter = (char *)"(objectClass=user)";
	t.cc.ldap.groups_filter = (char *)"(objectClass=group)";
	do_pull(&t, &p);
	assert_pull_ok(&p);
	assert_int_equal(p.s->nusers, 2);
	const struct ids_user *ann = user_by_name(p.s, "ann"), *ben = user_by_name(p.s, "ben");
	assert_non_null(ann);
	assert_non_null(ben);
	assert_string_equal(ann->f[IDS_F_EXTERNAL_ID], GUID_ANN);
	assert_string_equal(ben->f[IDS_F_EXTERNAL_ID], GUID_BEN);
	assert_false(ann->disabled);
	assert_true(ben->disabled);
	assert_null(ann->invalid);
	assert_string_equal(ann->f[IDS_F_DISPLAY_NAME], "Ann (AD)");
	/* no displayName: cn, as for OpenLDAP */
	assert_string_equal(ben->f[IDS_F_DISPLAY_NAME], "Ben Gone");
	assert_int_equal(p.s->ngroups, 1);
	assert_string_equal(p.s->groups[0].id, GUID_GRP);
	assert_string_equal(p.s->groups[0].name, "CC-Support");
	assert_string_equal(p.s->groups[0].email, "cc-support@example.org");
	assert_true(in_group(p.s, "ann", "CC-Support"));
	assert_true(in_group(p.s, "ben", "CC-Support"));
	pulled_free(&p);
	tcfg_free(&t);
}

int main(void)
{
	int r = env_load();
	if (r)
		return r;
	const struct CMUnitTest org[] = {
	    cmocka_unit_test(test_fields),	     cmocka_unit_test(test_rule_attrs),
	    cmocka_unit_test(test_disabled_filter),  cmocka_unit_test(test_non_ascii_and_escapes),
	    cmocka_unit_test(test_invalid_users),    cmocka_unit_test(test_groups),
	    cmocka_unit_test(test_member_attribute),
	};
	const struct CMUnitTest paged[] = {
	    cmocka_unit_test(test_size_limit_is_real),
	    cmocka_unit_test(test_paged),
	    cmocka_unit_test(test_page_size_above_limit),
	    cmocka_unit_test(test_limit_fails_pull),
	};
	const struct CMUnitTest ad[] = {
	    cmocka_unit_test(test_ad_flavor),
	};
	const struct CMUnitTest big[] = {
	    cmocka_unit_test(test_page_past_hold_limit),
	};
	r = cmocka_run_group_tests_name("ldap pull: organisation", org, org_setup, org_teardown);
	r |= cmocka_run_group_tests_name("ldap pull: paging", paged, paged_setup, paged_teardown);
	r |= cmocka_run_group_tests_name("ldap pull: a page past the hold limit", big, big_setup,
					 big_teardown);
	r |= cmocka_run_group_tests_name("ldap pull: active directory", ad, ad_setup, ad_teardown);
	return r;
}
