/* ctest_ldap_feed.c — the LDAP connector's change feed (syncrepl
 * refreshOnly, connectors/ldap_feed.c) against the harness's slapd
 * (syncprov with a session log, the sync account): after any changes to
 * the directory, the image the feed keeps replays to exactly what a full
 * read of the same directory gives.  Checked on a scripted sequence (adds,
 * modifies, disable, rename, move, deletes, memberships, nesting, a group
 * deleted), on a randomized one (adds, deletes, modifies, disable and
 * enable, moves, groups made and deleted, members and nested groups
 * added and removed; seed printed, IDS_TEST_SEED repeats it)
 * where some reads are thrown away as a failed run would be — rolled
 * back with their cursor —, on the fallbacks: a cursor of another
 * configuration, and a cookie the server cannot continue from, and on
 * renamed containers: OUs renamed and moved into the base, followed from
 * the cursor of this version and of the one before.
 *
 * The comparison is the snapshot as text (what the rules can see), and
 * the reference is the connector's full read, which ctest_ldap_pull checks
 * against the LDIF. */
#include "ctest_ldap_feed.h"

/* ---- tests ---- */

/* Every kind of change, one after the other, each read through the feed. */
static void test_scripted(void **state)
{
	(void)state;
	LDAP *ld = admin_open();
	struct tcfg t;
	struct feed f = {0};
	char a[512], b[512], c[600], g1[512], g2[512], sub[512];
	make_ou(ld, E.base, "ldap_feed_script", g_ou, g_people, g_groups);
	snprintf(sub, sizeof(sub), "ou=moved,%s", g_people);
	add_entry(ld, sub, "objectClass", "organizationalUnit", "ou", "moved", NULL);
	add_person(ld, g_people, "alice", "Alice", "Smith");
	add_person(ld, g_people, "bob", "Bob", "Jones");
	add_person(ld, g_people, "carol", "Carol", "White");
	udn(a, "alice");
	udn(b, "bob");
	udn(c, "carol");
	gdn(g1, "Team");
	gdn(g2, "CC-Support");
	group(ld, "Team", b, NULL);
	group(ld, "CC-Support", a, g1);
	tcfg_sync(&t);
	assert_int_equal(ids_image_new(&f.img), 0);

	/* the first read: no cursor, everything, no reset to report */
	struct ids_feed_pull fp = feed_read(&t, &f, false);
	assert_null(fp.reset_reason);
	assert_int_equal(fp.changes, 3 + 2);
	assert_int_equal(ids_image_nusers(f.img), 3);
	assert_converged(&t, &f, "first read");
	/* nothing changed: nothing comes */
	fp = feed_read(&t, &f, false);
	assert_int_equal(fp.changes, 0);
	assert_converged(&t, &f, "no change");

	add_person(ld, g_people, "dave", "Dave", "Black");
	modify(ld, a, LDAP_MOD_REPLACE, "mail", "alice.smith@example.org");
	modify(ld, a, LDAP_MOD_ADD, "departmentNumber", "42");
	modify(ld, c, LDAP_MOD_ADD, "description", "disabled");
	fp = feed_read(&t, &f, false);
	assert_int_equal(fp.changes, 3); /* dave, alice, carol */
	assert_converged(&t, &f, "add, modify, disable");

	rename_to(ld, b, "uid=robert", NULL); /* Team still names uid=bob: no refint here */
	rename_to(ld, c, "uid=carol", sub);   /* a move within the users base */
	snprintf(c, sizeof(c), "uid=carol,%s", sub);
	modify(ld, g1, LDAP_MOD_ADD, "member", a); /* membership */
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "rename, move, member added");

	modify(ld, g2, LDAP_MOD_DELETE, "member", g1); /* nesting undone: Team's members leave CC-Support */
	del(ld, a);				       /* a delete names an entryUUID only */
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "nesting removed, user deleted");

	del(ld, g1);
	modify(ld, c, LDAP_MOD_DELETE, "description", NULL); /* enabled again, at its new DN */
	fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "group deleted, user enabled");

	feed_test_end(&t, &f, ld);
}

/* The same by chance: each step a few random changes, then a read; one
 * read in five is thrown away (a failed run: image rolled back, cursor
 * kept), so the next read starts from the older cursor. */
#define RUSERS 16
#define RGROUPS 5
#define RSTEPS 100
static void random_steps(bool nested)
{
	const char *env = getenv("IDS_TEST_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : 14u;
	print_message("test_random: seed %u (IDS_TEST_SEED=%u repeats it)\n", seed, seed);
	srand(seed);
	LDAP *ld = admin_open();
	struct tcfg t;
	struct feed f = {0};
	bool user_there[RUSERS] = {0}, group_there[RGROUPS] = {0}, moved[RUSERS] = {0};
	char dn[600], m[512], name[64], sub[512];
	make_ou(ld, E.base, nested ? "ldap_feed_nested" : "ldap_feed_random", g_ou, g_people, g_groups);
	snprintf(sub, sizeof(sub), "ou=moved,%s", g_people);
	add_entry(ld, sub, "objectClass", "organizationalUnit", "ou", "moved", NULL);
	tcfg_sync(&t);
	if (nested) /* the users beneath the groups' base: a search each */
		t.cc.ldap.groups_base = g_ou;
	assert_int_equal(ids_image_new(&f.img), 0);
	for (int step = 0; step < RSTEPS; step++) {
		for (int k = 1 + rand() % 3; k > 0; k--) {
			int u = rand() % RUSERS, g = rand() % RGROUPS, op = rand() % 6;
			snprintf(name, sizeof(name), "u%d", u);
			snprintf(dn, sizeof(dn), "uid=%s,%s", name, moved[u] ? sub : g_people);
			if (!user_there[u]) {
				add_person(ld, moved[u] ? sub : g_people, name, "Given", name);
				user_there[u] = true;
			} else if (op == 5 && rand() % 2) {
				/* a move (or back): the groups still name the old DN */
				char rdn[80];
				snprintf(rdn, sizeof(rdn), "uid=%s", name);
				rename_to(ld, dn, rdn, moved[u] ? g_people : sub);
				moved[u] = !moved[u];
			} else if (op == 0) {
				del(ld, dn);
				user_there[u] = false;
			} else if (op == 1) {
				modify(ld, dn, LDAP_MOD_REPLACE, "departmentNumber",
				       rand() % 2 ? "10" : "20");
			} else if (op == 2) {
				modify(ld, dn, LDAP_MOD_REPLACE, "description",
				       rand() % 2 ? "disabled" : "active");
			} else {
				snprintf(name, sizeof(name), "G%d", g);
				gdn(m, name);
				if (!group_there[g]) {
					snprintf(name, sizeof(name), "G%d", g);
					group(ld, name, dn, NULL);
					group_there[g] = true;
				} else if (op == 3) {
					del(ld, m);
					group_there[g] = false;
				} else {
					/* a member or a nested group, added or removed (the
					 * directory refuses what makes no sense: ignored) */
					char other[512];
					snprintf(name, sizeof(name), "G%d", rand() % RGROUPS);
					gdn(other, name);
					const char *who = op == 4 ? dn : other;
					char *vals[] = {(char *)who, NULL};
					LDAPMod mod = {.mod_op = rand() % 2 ? LDAP_MOD_ADD : LDAP_MOD_DELETE,
						       .mod_type = (char *)"member",
						       .mod_values = vals};
					LDAPMod *mods[] = {&mod, NULL};
					ldap_modify_ext_s(ld, m, mods, NULL, NULL);
				}
			}
		}
		bool discard = rand() % 5 == 0;
		struct ids_feed_pull fp = feed_read(&t, &f, discard);
		free(fp.reset_reason);
		if (!discard) {
			char when[64];
			snprintf(when, sizeof(when), "step %d (seed %u)", step, seed);
			assert_converged(&t, &f, when);
		}
	}
	feed_test_end(&t, &f, ld);
}

/* The users' and the groups' bases apart: one sync search reads both. */
static void test_random(void **state)
{
	(void)state;
	random_steps(false);
}

/* The groups' base above the users': a sync search each. */
static void test_random_nested(void **state)
{
	(void)state;
	random_steps(true);
}

/* Fallbacks: a cursor made under another configuration is not used (and
 * says why); a cookie from before everything the server remembers makes
 * it send everything again — either way the image converges. */
static void test_fallbacks(void **state)
{
	(void)state;
	LDAP *ld = admin_open();
	struct tcfg t;
	struct feed f = {0};
	char a[512];
	make_ou(ld, E.base, "ldap_feed_fallback", g_ou, g_people, g_groups);
	add_person(ld, g_people, "alice", "Alice", "Smith");
	add_person(ld, g_people, "bob", "Bob", "Jones");
	tcfg_sync(&t);
	assert_int_equal(ids_image_new(&f.img), 0);
	struct ids_feed_pull fp = feed_read(&t, &f, false);
	assert_converged(&t, &f, "first read");

	/* the rules read another attribute now: the records lack it */
	assert_int_equal(ids_strv_push(&t.rule_attrs, "employeeType"), 0);
	udn(a, "alice");
	modify(ld, a, LDAP_MOD_ADD, "employeeType", "staff");
	del(ld, "uid=bob,ou=people,ou=ldap_feed_fallback,dc=example,dc=org");
	fp = feed_read(&t, &f, false);
	assert_non_null(fp.reset_reason);
	assert_non_null(strstr(fp.reset_reason, "changed since the stored cursor"));
	free(fp.reset_reason);
	assert_converged(&t, &f, "after a configuration change");

	/* a cookie older than anything the server logged: the server cannot
	 * send deletes and falls back to a present phase (or asks for a
	 * full refresh); bob's deletion must come through either way */
	add_person(ld, g_people, "carol", "Carol", "White");
	struct feed old = {0};
	assert_int_equal(ids_image_new(&old.img), 0);
	const char *c = (const char *)f.cursor;
	const char *nl = memchr(c, '\n', f.cursor_len);
	assert_non_null(nl);
	static const char ancient[] = "rid=000,csn=20000101000000.000000Z#000000#000#000000";
	struct ids_buf cur = {0};
	ids_buf_add(&cur, c, (size_t)(nl - c) + 1);
	ids_buf_printf(&cur, "%zu:%s\n%zu:%s\n", sizeof(ancient) - 1, ancient, sizeof(ancient) - 1, ancient);
	/* an image from before bob went */
	add_person(ld, g_people, "bob", "Bob", "Jones");
	fp = feed_read(&t, &old, false); /* everything, with bob */
	free(fp.reset_reason);
	del(ld, "uid=bob,ou=people,ou=ldap_feed_fallback,dc=example,dc=org");
	free(old.cursor);
	old.cursor_len = cur.len;
	old.cursor = (unsigned char *)ids_buf_steal(&cur);
	fp = feed_read(&t, &old, false);
	free(fp.reset_reason);
	assert_converged(&t, &old, "from an ancient cookie");
	char *txt = image_text(old.img);
	assert_null(strstr(txt, "|bob|"));
	assert_non_null(strstr(txt, "|carol|"));
	free(txt);

	/* a cookie newer than the server's state (a database restored from
	 * a backup): refused, everything read again, and the reason given */
	struct ids_buf fut = {0};
	static const char future[] = "rid=000,csn=29991231000000.000000Z#000000#000#000000";
	ids_buf_add(&fut, c, (size_t)(nl - c) + 1);
	ids_buf_printf(&fut, "%zu:%s\n%zu:%s\n", sizeof(future) - 1, future, sizeof(future) - 1, future);
	free(old.cursor);
	old.cursor_len = fut.len;
	old.cursor = (unsigned char *)ids_buf_steal(&fut);
	add_person(ld, g_people, "dave", "Dave", "Black");
	fp = feed_read(&t, &old, false);
	assert_non_null(fp.reset_reason);
	/* (one sync search reads the users and the groups: their bases are
	 * apart) */
	assert_non_null(
	    strstr(fp.reset_reason, "refused the users and groups feed's cookie (unwillingToPerform"));
	free(fp.reset_reason);
	assert_converged(&t, &old, "from a cookie of the future");
	/* everything read once, not twice: every entry sent counts as a
	 * change (6 here before the fix, for 3 entries) */
	size_t whole = ids_image_nusers(old.img) + ids_image_ngroups(old.img);
	assert_true(fp.changes >= whole && fp.changes < 2 * whole);

	ids_image_free(old.img);
	free(old.cursor);
	feed_test_end(&t, &f, ld);
}

/* The cookies of a cursor after its first line ("LEN:BYTES\n" each), as
 * ldap_feed.c writes them: how many, the first into `first` (NUL-ended,
 * cut to its size); -1 when the cursor does not parse. */
static int cursor_cookies(const struct feed *f, char *first, size_t size)
{
	const char *s = memchr(f->cursor, '\n', f->cursor_len),
		   *end = (const char *)f->cursor + f->cursor_len;
	int n = 0;
	for (s = s ? s + 1 : end; s < end; n++) {
		char *colon = NULL;
		unsigned long len = strtoul(s, &colon, 10);
		if (colon == s || *colon != ':' || len > (unsigned long)(end - colon - 2) ||
		    colon[1 + len] != '\n')
			return -1;
		if (!n)
			snprintf(first, size, "%.*s", (int)len, colon + 1);
		s = colon + 2 + len;
	}
	return n;
}

/* Renamed containers, found by a plain search since the users' cookie's
 * CSN, not a sync search of their own: the cursor is version 3 with two
 * cookies, users' and groups'.  An OU renamed between two reads, and one
 * moved into the users' base, have their users' DNs updated; a version 2
 * cursor (three cookies, the last the containers' sync search's) goes on
 * incrementally, without a reset. */
static void test_containers(void **state)
{
	(void)state;
	LDAP *ld = admin_open();
	struct tcfg t;
	struct feed f = {0};
	char team[512], crew[512], out[512], users_cookie[512], a[600];
	make_ou(ld, E.base, "ldap_feed_containers", g_ou, g_people, g_groups);
	snprintf(team, sizeof(team), "ou=team,%s", g_people);
	snprintf(crew, sizeof(crew), "ou=crew,%s", g_people);
	snprintf(out, sizeof(out), "ou=outside,%s", g_ou);
	add_entry(ld, team, "objectClass", "organizationalUnit", "ou", "team", NULL);
	add_entry(ld, out, "objectClass", "organizationalUnit", "ou", "outside", NULL);
	add_person(ld, team, "alice", "Alice", "Smith");
	add_person(ld, team, "bob", "Bob", "Jones");
	add_person(ld, out, "carol", "Carol", "White");
	snprintf(a, sizeof(a), "uid=alice,%s", team);
	group(ld, "Team", a, NULL);
	tcfg_sync(&t);
	assert_int_equal(ids_image_new(&f.img), 0);
	struct ids_feed_pull fp = feed_read(&t, &f, false);
	assert_null(fp.reset_reason);
	assert_int_equal(ids_image_nusers(f.img), 2); /* carol is outside the base */
	assert_true(f.cursor_len > 19 && !memcmp(f.cursor, "idsyncd-syncrepl/3 ", 19));
	assert_int_equal(cursor_cookies(&f, users_cookie, sizeof(users_cookie)), 2);
	assert_non_null(strstr(users_cookie, "csn="));

	/* ou=team renamed: alice's and bob's DNs change, not their entryCSNs */
	rename_to(ld, team, "ou=crew", NULL);
	fp = feed_read(&t, &f, false);
	assert_null(fp.reset_reason);
	assert_converged(&t, &f, "an OU renamed");
	char *txt = image_text(f.img);
	assert_non_null(strstr(txt, "uid=alice,ou=crew,"));
	assert_non_null(strstr(txt, "uid=bob,ou=crew,"));
	assert_null(strstr(txt, "ou=team,"));
	free(txt);

	/* a version 2 cursor: this one with the users' cookie as the third,
	 * the containers'; then ou=outside moved into the base, read once
	 * and thrown away, then read from the same cursor again */
	struct ids_buf v2 = {0};
	assert_int_equal(ids_buf_add(&v2, "idsyncd-syncrepl/2", 18), 0);
	assert_int_equal(ids_buf_add(&v2, f.cursor + 18, f.cursor_len - 18), 0);
	assert_int_equal(ids_buf_printf(&v2, "%zu:%s\n", strlen(users_cookie), users_cookie), 0);
	free(f.cursor);
	f.cursor_len = v2.len;
	f.cursor = (unsigned char *)ids_buf_steal(&v2);
	assert_int_equal(cursor_cookies(&f, users_cookie, sizeof(users_cookie)), 3);
	rename_to(ld, out, "ou=outside", g_people);
	fp = feed_read(&t, &f, true);
	assert_null(fp.reset_reason);
	fp = feed_read(&t, &f, false);
	assert_null(fp.reset_reason); /* incremental: the old cursor was used */
	assert_converged(&t, &f, "an OU moved into the base, from a version 2 cursor");
	assert_int_equal(ids_image_nusers(f.img), 3);
	txt = image_text(f.img);
	assert_non_null(strstr(txt, "uid=carol,ou=outside,ou=people,"));
	free(txt);
	assert_true(f.cursor_len > 19 && !memcmp(f.cursor, "idsyncd-syncrepl/3 ", 19));
	assert_int_equal(cursor_cookies(&f, users_cookie, sizeof(users_cookie)), 2);

	/* the OU renamed back and a user beneath it modified: still followed */
	rename_to(ld, crew, "ou=team", NULL);
	snprintf(a, sizeof(a), "uid=bob,%s", team);
	modify(ld, a, LDAP_MOD_ADD, "departmentNumber", "7");
	fp = feed_read(&t, &f, false);
	assert_null(fp.reset_reason);
	assert_converged(&t, &f, "an OU renamed back");

	feed_test_end(&t, &f, ld);
}

int main(void)
{
	int r = env_load();
	if (r)
		return r;
	g_sync_dn = getenv("IDS_TEST_LDAP_SYNC_DN");
	g_sync_pw_file = getenv("IDS_TEST_LDAP_SYNC_PW_FILE");
	if (!g_sync_dn || !*g_sync_dn || !g_sync_pw_file || !*g_sync_pw_file)
		return no_server("IDS_TEST_LDAP_SYNC_DN is not set (a slapd.sh older than the change feed)");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scripted),	  cmocka_unit_test(test_random),
	    cmocka_unit_test(test_random_nested), cmocka_unit_test(test_fallbacks),
	    cmocka_unit_test(test_containers),
	};
	return cmocka_run_group_tests_name("ldap: change feed", tests, NULL, NULL);
}
