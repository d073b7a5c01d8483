/* test_core_snapshot.c — the snapshot builder (invalid values, required
 * fields, duplicates), member resolution by DN / id / username, nested and
 * cyclic groups, unresolved references, sorting and index remapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/snapshot.h"

/* ---- helpers: one call per record, strings given NUL-terminated ---- */

static void set(struct ids_snapshot *s, enum ids_field f, const char *v)
{
	assert_int_equal(ids_snapshot_user_set(s, f, v, strlen(v)), 0);
}

/* A user with an id, a username and optionally a DN. */
static void user(struct ids_snapshot *s, const char *id, const char *name, const char *dn)
{
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	if (id)
		set(s, IDS_F_EXTERNAL_ID, id);
	if (name)
		set(s, IDS_F_USERNAME, name);
	if (dn)
		set(s, IDS_F_DN, dn);
	assert_int_equal(ids_snapshot_user_end(s), 0);
}

static void gset(struct ids_snapshot *s, enum ids_field f, const char *v)
{
	assert_int_equal(ids_snapshot_group_set(s, f, v, strlen(v)), 0);
}

static void gmember(struct ids_snapshot *s, enum ids_ref k, const char *ref)
{
	assert_int_equal(ids_snapshot_group_member(s, k, ref, strlen(ref)), 0);
}

/* A group with id, name, optional DN and up to four members of one kind. */
static void group(struct ids_snapshot *s, const char *id, const char *name, const char *dn, enum ids_ref k,
		  const char *m0, const char *m1, const char *m2, const char *m3)
{
	const char *m[] = {m0, m1, m2, m3};
	assert_int_equal(ids_snapshot_group_begin(s), 0);
	if (id)
		gset(s, IDS_F_EXTERNAL_ID, id);
	if (name)
		gset(s, IDS_F_USERNAME, name);
	if (dn)
		gset(s, IDS_F_DN, dn);
	for (size_t i = 0; i < 4; i++)
		if (m[i])
			gmember(s, k, m[i]);
	assert_int_equal(ids_snapshot_group_end(s), 0);
}

static const struct ids_user *find_user(const struct ids_snapshot *s, const char *id)
{
	for (size_t i = 0; i < s->nusers; i++)
		if (s->users[i].f[IDS_F_EXTERNAL_ID] && strcmp(s->users[i].f[IDS_F_EXTERNAL_ID], id) == 0)
			return &s->users[i];
	fail_msg("no user %s", id);
	return NULL;
}

/* The user's groups as "id,id,..." in index (= id) order. */
static const char *groups_of(const struct ids_snapshot *s, const struct ids_user *u)
{
	static char buf[1024];
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < u->ngroups; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "",
				      s->groups[u->groups[i]].id);
	return buf;
}

static const char *parents_of(const struct ids_snapshot *s, const char *gid)
{
	static char buf[1024];
	long g = ids_snapshot_group_by_id(s, gid);
	assert_true(g >= 0);
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < s->groups[g].nparents; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "",
				      s->groups[s->groups[g].parents[i]].id);
	return buf;
}

static struct ids_snapshot *snap_new(void)
{
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_non_null(s);
	return s;
}

/* ---------------- builder: values and invalid users ---------------- */

static void test_invalid_values(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	char long_name[IDS_FIELD_MAX + 2];

	/* u1: NUL byte inside the e-mail */
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u1");
	set(s, IDS_F_USERNAME, "one");
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_EMAIL, "a\0b@x", 5), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);

	/* u2: invalid UTF-8 in first_name, then a second problem: first wins */
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u2");
	set(s, IDS_F_USERNAME, "two");
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_FIRST_NAME, "J\xc3", 2), 0);
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_LAST_NAME, "x\0", 2), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);

	/* u3: 1025 bytes is too long; u4: exactly 1024 is fine */
	memset(long_name, 'a', sizeof(long_name));
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u3");
	set(s, IDS_F_USERNAME, "three");
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_DISPLAY_NAME, long_name, IDS_FIELD_MAX + 1), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u4");
	set(s, IDS_F_USERNAME, "four");
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_DISPLAY_NAME, long_name, IDS_FIELD_MAX), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);

	/* u5: no username; (none): no external id; u6: a malformed DN */
	user(s, "u5", NULL, NULL);
	user(s, NULL, "anon", NULL);
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u6");
	set(s, IDS_F_USERNAME, "six");
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_DN, "not a dn", 8), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);

	/* u7: the connector's own reason, then a bad value: its reason wins */
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u7");
	set(s, IDS_F_USERNAME, "seven");
	assert_int_equal(ids_snapshot_user_invalid(s, "objectGUID: not 16 bytes"), 0);
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_EMAIL, "\xff", 1), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);

	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 8); /* invalid users are kept */
	assert_string_equal(find_user(s, "u1")->invalid, "email: contains a NUL byte");
	assert_null(find_user(s, "u1")->f[IDS_F_EMAIL]);
	assert_string_equal(find_user(s, "u2")->invalid, "first_name: not valid UTF-8");
	assert_string_equal(find_user(s, "u3")->invalid, "display_name: longer than 1024 bytes");
	assert_null(find_user(s, "u4")->invalid);
	assert_int_equal(strlen(find_user(s, "u4")->f[IDS_F_DISPLAY_NAME]), IDS_FIELD_MAX);
	assert_string_equal(find_user(s, "u5")->invalid, "missing username");
	assert_string_equal(find_user(s, "u6")->invalid, "dn: not a valid DN");
	assert_string_equal(find_user(s, "u7")->invalid, "objectGUID: not 16 bytes");
	/* the id-less user sorts first (no id < any id) */
	assert_null(s->users[0].f[IDS_F_EXTERNAL_ID]);
	assert_string_equal(s->users[0].invalid, "missing external_id");
	ids_snapshot_free(s);
}

static void test_first_value_wins_and_empty_is_absent(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u1");
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_USERNAME, "", 0), 0);
	set(s, IDS_F_USERNAME, "jdoe");
	set(s, IDS_F_USERNAME, "other");
	set(s, IDS_F_EMAIL, "a@x");
	set(s, IDS_F_EMAIL, "b@x");
	/* the DN is kept normalized */
	set(s, IDS_F_DN, "UID=JDoe, OU=People");
	assert_int_equal(ids_snapshot_user_disabled(s, true), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	const struct ids_user *u = &s->users[0];
	assert_null(u->invalid);
	assert_string_equal(u->f[IDS_F_USERNAME], "jdoe");
	assert_string_equal(u->f[IDS_F_EMAIL], "a@x");
	assert_string_equal(u->f[IDS_F_DN], "uid=jdoe,ou=people");
	assert_true(u->disabled);
	assert_null(u->f[IDS_F_FIRST_NAME]);
	ids_snapshot_free(s);
}

static void test_rule_attributes(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u1");
	set(s, IDS_F_USERNAME, "jdoe");
	assert_int_equal(ids_snapshot_user_attr(s, "department", "Support", 7), 0);
	/* a NUL or invalid UTF-8 value is dropped, the user stays valid */
	assert_int_equal(ids_snapshot_user_attr(s, "department", "Sa\0les", 6), 0);
	assert_int_equal(ids_snapshot_user_attr(s, "Department", "\xc3(", 2), 0);
	/* the same attribute in another case collects under the first name */
	assert_int_equal(ids_snapshot_user_attr(s, "DEPARTMENT", "Sales", 5), 0);
	assert_int_equal(ids_snapshot_user_attr(s, "employeeType", "contractor", 10), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);
	/* a second user starts with no attributes of its own */
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "u2");
	set(s, IDS_F_USERNAME, "anna");
	assert_int_equal(ids_snapshot_user_attr(s, "employeeType", "staff", 5), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);

	const struct ids_user *u = find_user(s, "u1");
	assert_null(u->invalid);
	assert_int_equal(u->nattrs, 2);
	assert_string_equal(u->attrs[0].name, "department");
	assert_int_equal(u->attrs[0].nvalues, 2);
	assert_string_equal(u->attrs[0].values[0], "Support");
	assert_string_equal(u->attrs[0].values[1], "Sales");
	assert_string_equal(u->attrs[1].name, "employeeType");
	assert_string_equal(u->attrs[1].values[0], "contractor");
	u = find_user(s, "u2");
	assert_int_equal(u->nattrs, 1);
	assert_string_equal(u->attrs[0].values[0], "staff");
	ids_snapshot_free(s);
}

static void test_duplicates_and_sorting(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	/* bytewise: "B" (0x42) < "a" (0x61) < "b" */
	user(s, "b", "second-b", NULL);
	user(s, "a", "first-a", NULL);
	user(s, "b", "third-b", NULL);
	user(s, "B", "upper", NULL);
	user(s, "b", "fourth-b", NULL);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 5);
	const char *want_ids[] = {"B", "a", "b", "b", "b"};
	const char *want_names[] = {"upper", "first-a", "second-b", "third-b", "fourth-b"};
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(s->users[i].f[IDS_F_EXTERNAL_ID], want_ids[i]);
		assert_string_equal(s->users[i].f[IDS_F_USERNAME], want_names[i]);
	}
	/* the first "b" read stays valid, the later two are invalid */
	assert_null(s->users[0].invalid);
	assert_null(s->users[1].invalid);
	assert_null(s->users[2].invalid);
	assert_string_equal(s->users[3].invalid, "duplicate external_id");
	assert_string_equal(s->users[4].invalid, "duplicate external_id");
	ids_snapshot_free(s);
}

/* ---------------- membership resolution ---------------- */

static void test_resolve_by_dn_id_username(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	user(s, "u-jan", "jnovak", "cn=Novák\\2C Jan,ou=People,dc=corp,dc=example");
	user(s, "u-eva", "eva", "uid=eva,ou=People,dc=corp,dc=example");
	user(s, "u-joe", "JoeX", NULL);
	/* groups read in reverse id order: indices must be remapped */
	group(s, "g3", "Posix", NULL, IDS_REF_USERNAME, "JoeX", "joex", NULL, NULL);
	group(s, "g2", "ById", NULL, IDS_REF_ID, "u-eva", "no-such-id", NULL, NULL);
	/* the member value spells the DN differently from the entry */
	group(s, "g1", "ByDn", "CN=ByDn,OU=Groups,DC=corp,DC=example", IDS_REF_DN,
	      "CN=Novák\\, Jan , OU=People,DC=Corp,DC=Example", "uid=ghost,ou=people,dc=corp,dc=example",
	      "this is not a dn", NULL);
	assert_int_equal(ids_snapshot_finish(s), 0);

	assert_int_equal(s->ngroups, 3);
	assert_string_equal(s->groups[0].id, "g1");
	assert_string_equal(s->groups[0].dn, "cn=bydn,ou=groups,dc=corp,dc=example");
	assert_string_equal(groups_of(s, find_user(s, "u-jan")), "g1");
	assert_string_equal(groups_of(s, find_user(s, "u-eva")), "g2");
	/* usernames are exact: "joex" names nobody */
	assert_string_equal(groups_of(s, find_user(s, "u-joe")), "g3");
	/* no-such-id, uid=ghost, the malformed DN, joex */
	assert_int_equal(s->unresolved_members, 4);
	ids_snapshot_free(s);
}

static void test_members_after_the_fact(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	/* a cloud connector: groups first, then members per group id */
	group(s, "grp-b", "B", NULL, IDS_REF_ID, NULL, NULL, NULL, NULL);
	group(s, "grp-a", "A", NULL, IDS_REF_ID, NULL, NULL, NULL, NULL);
	user(s, "u1", "one", NULL);
	user(s, "u2", "two", NULL);
	assert_int_equal(ids_snapshot_member(s, "grp-a", IDS_REF_ID, "u1", 2), 0);
	assert_int_equal(ids_snapshot_member(s, "grp-b", IDS_REF_ID, "u1", 2), 0);
	assert_int_equal(ids_snapshot_member(s, "grp-a", IDS_REF_ID, "u1", 2), 0);    /* repeated */
	assert_int_equal(ids_snapshot_member(s, "grp-b", IDS_REF_ID, "grp-a", 5), 0); /* nested */
	assert_int_equal(ids_snapshot_member(s, "grp-x", IDS_REF_ID, "u2", 2), 0);    /* unknown group */
	assert_int_equal(ids_snapshot_member(s, "grp-a", IDS_REF_ID, "u9", 2), 0);    /* unknown user */
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_string_equal(groups_of(s, find_user(s, "u1")), "grp-a,grp-b");
	assert_int_equal(find_user(s, "u2")->ngroups, 0);
	assert_string_equal(parents_of(s, "grp-a"), "grp-b");
	assert_string_equal(parents_of(s, "grp-b"), "");
	assert_int_equal(s->unresolved_members, 2);
	ids_snapshot_free(s);
}

static void test_nested_groups(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	/* u1 in A, A in B, B in C (by DN); u2 in B directly; D stands apart */
	user(s, "u1", "one", "uid=one,dc=x");
	user(s, "u2", "two", "uid=two,dc=x");
	user(s, "u3", "three", "uid=three,dc=x");
	group(s, "A", "A", "cn=A,dc=x", IDS_REF_DN, "uid=one,dc=x", NULL, NULL, NULL);
	group(s, "B", "B", "cn=B,dc=x", IDS_REF_DN, "cn=A,dc=x", "uid=two,dc=x", NULL, NULL);
	group(s, "C", "C", "cn=C,dc=x", IDS_REF_DN, "CN=B,DC=X", NULL, NULL, NULL);
	group(s, "D", "D", "cn=D,dc=x", IDS_REF_DN, "uid=three,dc=x", NULL, NULL, NULL);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_string_equal(groups_of(s, find_user(s, "u1")), "A,B,C");
	assert_string_equal(groups_of(s, find_user(s, "u2")), "B,C");
	assert_string_equal(groups_of(s, find_user(s, "u3")), "D");
	/* parents are the direct ones only */
	assert_string_equal(parents_of(s, "A"), "B");
	assert_string_equal(parents_of(s, "B"), "C");
	assert_string_equal(parents_of(s, "C"), "");
	assert_int_equal(s->unresolved_members, 0);
	ids_snapshot_free(s);
}

static void test_cycles_terminate(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	/* A in B in C in A; u1 in A, u2 in C; E is in itself; F in E */
	user(s, "u1", "one", NULL);
	user(s, "u2", "two", NULL);
	user(s, "u3", "three", NULL);
	user(s, "u4", "four", NULL);
	group(s, "A", "A", NULL, IDS_REF_ID, "u1", "C", NULL, NULL);
	group(s, "B", "B", NULL, IDS_REF_ID, "A", NULL, NULL, NULL);
	group(s, "C", "C", NULL, IDS_REF_ID, "B", "u2", NULL, NULL);
	group(s, "E", "E", NULL, IDS_REF_ID, "E", "u3", "F", NULL);
	group(s, "F", "F", NULL, IDS_REF_ID, "u4", NULL, NULL, NULL);
	/* and the cycle is inside a bigger group G: A in G */
	group(s, "G", "G", NULL, IDS_REF_ID, "A", NULL, NULL, NULL);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_string_equal(groups_of(s, find_user(s, "u1")), "A,B,C,G");
	assert_string_equal(groups_of(s, find_user(s, "u2")), "A,B,C,G");
	assert_string_equal(groups_of(s, find_user(s, "u3")), "E");
	assert_string_equal(groups_of(s, find_user(s, "u4")), "E,F");
	assert_string_equal(parents_of(s, "E"), "E");
	assert_string_equal(parents_of(s, "A"), "B,G");
	ids_snapshot_free(s);
}

static void test_groups_dropped_and_merged(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	user(s, "u1", "one", NULL);
	user(s, "u2", "two", NULL);
	/* no id: cannot be keyed, dropped, its memberships unresolved */
	group(s, NULL, "NoId", NULL, IDS_REF_ID, "u1", NULL, NULL, NULL);
	/* the same group read twice: one group, both members */
	group(s, "g1", "First", NULL, IDS_REF_ID, "u1", NULL, NULL, NULL);
	group(s, "g1", "Again", NULL, IDS_REF_ID, "u2", NULL, NULL, NULL);
	/* a bad value of a group is dropped, the group stays */
	assert_int_equal(ids_snapshot_group_begin(s), 0);
	gset(s, IDS_F_EXTERNAL_ID, "g2");
	assert_int_equal(ids_snapshot_group_set(s, IDS_F_USERNAME, "x\0y", 3), 0);
	assert_int_equal(ids_snapshot_group_set(s, IDS_F_DN, "garbage", 7), 0);
	gset(s, IDS_F_EMAIL, "g2@x");
	assert_int_equal(ids_snapshot_group_set(s, IDS_F_FIRST_NAME, "x", 1), -EINVAL);
	assert_int_equal(ids_snapshot_group_end(s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->ngroups, 2);
	assert_string_equal(s->groups[0].name, "First");
	assert_null(s->groups[1].name);
	assert_null(s->groups[1].dn);
	assert_string_equal(s->groups[1].email, "g2@x");
	assert_string_equal(groups_of(s, find_user(s, "u1")), "g1");
	assert_string_equal(groups_of(s, find_user(s, "u2")), "g1");
	assert_int_equal(s->unresolved_members, 1);
	ids_snapshot_free(s);
}

static void test_invalid_users_keep_groups_and_valid_wins(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	/* two entries share a username: the invalid one must not take the
	 * memberUid of the valid one (it sorts first by id) */
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	set(s, IDS_F_EXTERNAL_ID, "a-bad");
	set(s, IDS_F_USERNAME, "jdoe");
	assert_int_equal(ids_snapshot_user_invalid(s, "broken"), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);
	user(s, "b-good", "jdoe", NULL);
	group(s, "g", "G", NULL, IDS_REF_USERNAME, "jdoe", NULL, NULL, NULL);
	group(s, "h", "H", NULL, IDS_REF_ID, "a-bad", NULL, NULL, NULL);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_string_equal(groups_of(s, find_user(s, "b-good")), "g");
	/* an invalid user still gets its groups (the diff may look) */
	assert_string_equal(groups_of(s, find_user(s, "a-bad")), "h");
	ids_snapshot_free(s);
}

static void test_group_by_id(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	group(s, "m", "M", NULL, IDS_REF_ID, NULL, NULL, NULL, NULL);
	group(s, "c", "C", NULL, IDS_REF_ID, NULL, NULL, NULL, NULL);
	group(s, "x", "X", NULL, IDS_REF_ID, NULL, NULL, NULL, NULL);
	/* before finish there is no sorted index */
	assert_int_equal(ids_snapshot_group_by_id(s, "m"), -1);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(ids_snapshot_group_by_id(s, "c"), 0);
	assert_int_equal(ids_snapshot_group_by_id(s, "m"), 1);
	assert_int_equal(ids_snapshot_group_by_id(s, "x"), 2);
	assert_int_equal(ids_snapshot_group_by_id(s, "a"), -1);
	assert_int_equal(ids_snapshot_group_by_id(s, "n"), -1);
	assert_int_equal(ids_snapshot_group_by_id(s, "z"), -1);
	ids_snapshot_free(s);
}

static void test_api_misuse(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	/* setters without an open record */
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_USERNAME, "x", 1), -EINVAL);
	assert_int_equal(ids_snapshot_user_end(s), -EINVAL);
	assert_int_equal(ids_snapshot_group_member(s, IDS_REF_ID, "x", 1), -EINVAL);
	/* nesting records */
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	assert_int_equal(ids_snapshot_user_begin(s), -EINVAL);
	assert_int_equal(ids_snapshot_group_begin(s), -EINVAL);
	assert_int_equal(ids_snapshot_user_set(s, IDS_F__COUNT, "x", 1), -EINVAL);
	assert_int_equal(ids_snapshot_finish(s), -EINVAL); /* a record is open */
	assert_int_equal(ids_snapshot_user_end(s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(ids_snapshot_finish(s), -EINVAL); /* once */
	assert_int_equal(ids_snapshot_user_begin(s), -EINVAL);
	assert_int_equal(ids_snapshot_member(s, "g", IDS_REF_ID, "u", 1), -EINVAL);
	ids_snapshot_free(s);
	ids_snapshot_free(NULL);
}

static void test_empty_snapshot(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 0);
	assert_int_equal(s->ngroups, 0);
	assert_int_equal(s->unresolved_members, 0);
	ids_snapshot_free(s);
}

/* An unfinished snapshot with everything in it is freed without leaks
 * (what the caller does when the connector fails mid-way). */
static void test_free_unfinished(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	user(s, "u1", "one", "uid=one,dc=x");
	group(s, "g", "G", "cn=g,dc=x", IDS_REF_DN, "uid=one,dc=x", NULL, NULL, NULL);
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	assert_int_equal(ids_snapshot_user_attr(s, "a", "v", 1), 0);
	ids_snapshot_free(s);
}

/* A bigger directory: 20000 users, 2000 groups in 200 blocks of 10.  In
 * even blocks group k's parent is k+1 and the last goes back to the first
 * (one cycle of 10); in odd blocks the chain is open (k -> k+1, the last
 * has no parent).  User u is directly in group u % 2000, so its groups
 * are the whole block (even block) or the rest of the chain from its
 * group to the end of the block (odd block). */
#define BIG_USERS 20000
#define BIG_GROUPS 2000
static void test_scale_blocks(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	char id[32], ref[32];
	for (int u = 0; u < BIG_USERS; u++) {
		snprintf(id, sizeof(id), "u%05d", u);
		user(s, id, id, NULL);
	}
	for (int g = 0; g < BIG_GROUPS; g++) {
		snprintf(id, sizeof(id), "g%04d", g);
		assert_int_equal(ids_snapshot_group_begin(s), 0);
		gset(s, IDS_F_EXTERNAL_ID, id);
		gset(s, IDS_F_USERNAME, id);
		/* members: the users with u % 2000 == g, and the child group */
		for (int u = g; u < BIG_USERS; u += BIG_GROUPS) {
			snprintf(ref, sizeof(ref), "u%05d", u);
			gmember(s, IDS_REF_ID, ref);
		}
		int block = g / 10, k = g % 10;
		int child = k > 0 ? g - 1 : (block % 2 == 0 ? g + 9 : -1);
		if (child >= 0) {
			snprintf(ref, sizeof(ref), "g%04d", child);
			gmember(s, IDS_REF_ID, ref);
		}
		assert_int_equal(ids_snapshot_group_end(s), 0);
	}
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->unresolved_members, 0);
	for (int u = 0; u < BIG_USERS; u += 7) {
		const struct ids_user *usr = &s->users[u]; /* ids sort as numbers here */
		int g = u % BIG_GROUPS, block = g / 10, first = block * 10;
		int lo = block % 2 == 0 ? first : g;
		size_t want = (size_t)(first + 10 - lo);
		if (usr->ngroups != want)
			fail_msg("user %d: %zu groups, want %zu", u, usr->ngroups, want);
		for (size_t i = 0; i < want; i++)
			assert_int_equal(usr->groups[i], (uint32_t)lo + i);
	}
	ids_snapshot_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_invalid_values),
	    cmocka_unit_test(test_first_value_wins_and_empty_is_absent),
	    cmocka_unit_test(test_rule_attributes),
	    cmocka_unit_test(test_duplicates_and_sorting),
	    cmocka_unit_test(test_resolve_by_dn_id_username),
	    cmocka_unit_test(test_members_after_the_fact),
	    cmocka_unit_test(test_nested_groups),
	    cmocka_unit_test(test_cycles_terminate),
	    cmocka_unit_test(test_groups_dropped_and_merged),
	    cmocka_unit_test(test_invalid_users_keep_groups_and_valid_wins),
	    cmocka_unit_test(test_group_by_id),
	    cmocka_unit_test(test_api_misuse),
	    cmocka_unit_test(test_empty_snapshot),
	    cmocka_unit_test(test_free_unfinished),
	    cmocka_unit_test(test_scale_blocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
