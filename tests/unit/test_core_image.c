/* test_core_image.c — the image a change feed is applied to (image.h):
 * records replayed into a snapshot give what a full read of the same
 * directory gives; upserts, deletes by key, the present phase, a group
 * change reaching transitive members; rollback to the last commit; and a
 * randomized sequence of changes checked against a full rebuild after
 * every step (the invariant of issue 14, in the core).
 *
 * Snapshots are compared as text (canonical_text below): every user with
 * its fields, flags, attributes and transitive groups, every group with
 * its parents — what the rules can see. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/dn.h"
#include "ids/image.h"
#include "ids/snapshot.h"
#include "../../core/snapshot_int.h" /* test_kept_lasting: what a kept snapshot holds */

/* ---- a directory as test data: the same entry written to an image or
 * straight into a snapshot builder, so that both can be compared ---- */

struct entry {
	bool group;
	const char *id, *name, *dn;
	bool disabled;
	const char *dept; /* a rule attribute, NULL when absent */
	const char *members[4];
};

static void image_put(struct ids_image *img, const char *key, const struct entry *e)
{
	if (e->group) {
		assert_int_equal(ids_image_group_begin(img, key), 0);
		assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, e->id, strlen(e->id)), 0);
		assert_int_equal(ids_image_group_set(img, IDS_F_USERNAME, e->name, strlen(e->name)), 0);
		assert_int_equal(ids_image_group_set(img, IDS_F_DN, e->dn, strlen(e->dn)), 0);
		for (size_t i = 0; i < 4 && e->members[i]; i++)
			assert_int_equal(
			    ids_image_group_member(img, IDS_REF_DN, e->members[i], strlen(e->members[i])), 0);
	} else {
		assert_int_equal(ids_image_user_begin(img, key), 0);
		assert_int_equal(ids_image_user_set(img, IDS_F_EXTERNAL_ID, e->id, strlen(e->id)), 0);
		assert_int_equal(ids_image_user_set(img, IDS_F_USERNAME, e->name, strlen(e->name)), 0);
		assert_int_equal(ids_image_user_set(img, IDS_F_DN, e->dn, strlen(e->dn)), 0);
		if (e->dept)
			assert_int_equal(ids_image_user_attr(img, "department", e->dept, strlen(e->dept)), 0);
		assert_int_equal(ids_image_user_disabled(img, e->disabled), 0);
	}
	assert_int_equal(ids_image_end(img), 0);
}

static void snap_put(struct ids_snapshot *s, const struct entry *e)
{
	if (e->group) {
		assert_int_equal(ids_snapshot_group_begin(s), 0);
		assert_int_equal(ids_snapshot_group_set(s, IDS_F_EXTERNAL_ID, e->id, strlen(e->id)), 0);
		assert_int_equal(ids_snapshot_group_set(s, IDS_F_USERNAME, e->name, strlen(e->name)), 0);
		assert_int_equal(ids_snapshot_group_set(s, IDS_F_DN, e->dn, strlen(e->dn)), 0);
		for (size_t i = 0; i < 4 && e->members[i]; i++)
			assert_int_equal(
			    ids_snapshot_group_member(s, IDS_REF_DN, e->members[i], strlen(e->members[i])),
			    0);
		assert_int_equal(ids_snapshot_group_end(s), 0);
	} else {
		assert_int_equal(ids_snapshot_user_begin(s), 0);
		assert_int_equal(ids_snapshot_user_set(s, IDS_F_EXTERNAL_ID, e->id, strlen(e->id)), 0);
		assert_int_equal(ids_snapshot_user_set(s, IDS_F_USERNAME, e->name, strlen(e->name)), 0);
		assert_int_equal(ids_snapshot_user_set(s, IDS_F_DN, e->dn, strlen(e->dn)), 0);
		if (e->dept)
			assert_int_equal(ids_snapshot_user_attr(s, "department", e->dept, strlen(e->dept)),
					 0);
		assert_int_equal(ids_snapshot_user_disabled(s, e->disabled), 0);
		assert_int_equal(ids_snapshot_user_end(s), 0);
	}
}

/* What the rules can see of a finished snapshot, one line per object;
 * new (free). */
static char *canonical_text(const struct ids_snapshot *s)
{
	struct ids_buf b = {0};
	assert_int_equal(ids_buf_puts(&b, ""), 0);
	for (size_t i = 0; i < s->nusers; i++) {
		const struct ids_user *u = &s->users[i];
		ids_buf_printf(&b, "user %s %s %s%s%s%s", u->f[IDS_F_EXTERNAL_ID], u->f[IDS_F_USERNAME],
			       u->f[IDS_F_DN], u->disabled ? " disabled" : "", u->invalid ? " invalid: " : "",
			       u->invalid ? u->invalid : "");
		for (size_t a = 0; a < u->nattrs; a++)
			for (size_t v = 0; v < u->attrs[a].nvalues; v++)
				ids_buf_printf(&b, " %s=%s", u->attrs[a].name, u->attrs[a].values[v]);
		ids_buf_puts(&b, " in");
		for (size_t g = 0; g < u->ngroups; g++)
			ids_buf_printf(&b, " %s", s->groups[u->groups[g]].name);
		ids_buf_putc(&b, '\n');
	}
	for (size_t i = 0; i < s->ngroups; i++) {
		const struct ids_group *g = &s->groups[i];
		ids_buf_printf(&b, "group %s %s %s under", g->id, g->name, g->dn);
		for (size_t p = 0; p < g->nparents; p++)
			ids_buf_printf(&b, " %s", s->groups[g->parents[p]].name);
		ids_buf_putc(&b, '\n');
	}
	ids_buf_printf(&b, "unresolved %zu\n", s->unresolved_members);
	return ids_buf_steal(&b);
}

/* The image replayed and finished, as text; kept (ids_snapshot_keep) when
 * ret_kept is not NULL: *ret_kept new then. */
static char *image_text_keep(const struct ids_image *img, struct ids_snapshot **ret_kept)
{
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_snapshot_keep(s), 0);
	assert_int_equal(ids_image_replay(img, s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	char *t = canonical_text(s);
	*ret_kept = s;
	return t;
}

/* The image replayed and finished, as text. */
static char *image_text(const struct ids_image *img)
{
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_image_replay(img, s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	char *t = canonical_text(s);
	ids_snapshot_free(s);
	return t;
}

/* entries[0..n) read "in full", as text. */
static char *full_text(const struct entry *const *entries, size_t n)
{
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	for (size_t i = 0; i < n; i++)
		if (entries[i])
			snap_put(s, entries[i]);
	assert_int_equal(ids_snapshot_finish(s), 0);
	char *t = canonical_text(s);
	ids_snapshot_free(s);
	return t;
}

static void assert_same(char *got, char *want)
{
	if (strcmp(got, want))
		print_message("image:\n%s\nfull read:\n%s\n", got, want);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

#define UDN(x) "uid=" x ",ou=people,dc=ex"
#define GDN(x) "cn=" x ",ou=groups,dc=ex"

static const struct entry alice = {.id = "U1", .name = "alice", .dn = UDN("alice"), .dept = "Support"};
static const struct entry bob = {.id = "U2", .name = "bob", .dn = UDN("bob")};
static const struct entry team = {
    .group = true, .id = "G1", .name = "Team", .dn = GDN("Team"), .members = {UDN("bob")}};
static const struct entry cc = {.group = true,
				.id = "G2",
				.name = "CC-Support",
				.dn = GDN("CC-Support"),
				.members = {UDN("alice"), GDN("Team")}};

/* A new image of the directory most tests start from: alice, bob, Team
 * (bob) and CC-Support (alice, Team); nothing committed yet. */
static struct ids_image *directory(void)
{
	struct ids_image *img = NULL;
	assert_int_equal(ids_image_new(&img), 0);
	image_put(img, "k-alice", &alice);
	image_put(img, "k-bob", &bob);
	image_put(img, "k-team", &team);
	image_put(img, "k-cc", &cc);
	return img;
}

/* ---------------- tests ---------------- */

/* Recorded in any order, replayed: what a full read of the same entries
 * builds, nested membership included. */
static void test_replay_is_a_full_read(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	assert_int_equal(ids_image_new(&img), 0);
	image_put(img, "k-cc", &cc); /* a group before the users it names */
	image_put(img, "k-bob", &bob);
	image_put(img, "k-alice", &alice);
	image_put(img, "k-team", &team);
	assert_int_equal(ids_image_nusers(img), 2);
	assert_int_equal(ids_image_ngroups(img), 2);
	const struct entry *all[] = {&alice, &bob, &team, &cc};
	char *want = full_text(all, 4);
	assert_non_null(strstr(want, "user U2 bob " UDN("bob") " in Team CC-Support\n"));
	assert_same(image_text(img), want);
	ids_image_free(img);
	ids_image_free(NULL);
}

/* A modified entry arrives whole (syncrepl: as an add) and replaces the
 * old one; a rename changes the DN the groups name it by. */
static void test_upsert_replaces(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	img = directory();
	/* bob renamed (new DN, same key): Team still names the old DN */
	const struct entry bob2 = {.id = "U2", .name = "robert", .dn = UDN("robert"), .disabled = true};
	image_put(img, "k-bob", &bob2);
	assert_int_equal(ids_image_nusers(img), 2);
	const struct entry *all[] = {&alice, &bob2, &team, &cc};
	char *want = full_text(all, 4);
	assert_non_null(strstr(want, "user U2 robert " UDN("robert") " disabled in\n"));
	assert_non_null(strstr(want, "unresolved 1\n"));
	assert_same(image_text(img), want);
	ids_image_free(img);
}

/* A group change reaches its transitive members: Team leaves CC-Support,
 * and bob, a member of Team only, leaves it with it. */
static void test_group_change_reaches_nested_members(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	img = directory();
	const struct entry cc2 = {.group = true,
				  .id = "G2",
				  .name = "CC-Support",
				  .dn = GDN("CC-Support"),
				  .members = {UDN("alice")}};
	image_put(img, "k-cc", &cc2);
	char *got = image_text(img);
	assert_non_null(strstr(got, "user U2 bob " UDN("bob") " in Team\n"));
	const struct entry *all[] = {&alice, &bob, &team, &cc2};
	assert_same(got, full_text(all, 4));
	ids_image_free(img);
}

/* A delete names the key only (syncIdSet: entryUUIDs, no DN); a key the
 * image does not hold is no error. */
static void test_delete_by_key(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	img = directory();
	assert_int_equal(ids_image_delete(img, "k-team", IDS_IMAGE_USERS | IDS_IMAGE_GROUPS), 1);
	assert_int_equal(ids_image_delete(img, "k-alice", IDS_IMAGE_USERS | IDS_IMAGE_GROUPS), 1);
	assert_int_equal(ids_image_delete(img, "k-alice", IDS_IMAGE_USERS | IDS_IMAGE_GROUPS), 0);
	assert_int_equal(ids_image_delete(img, "k-elsewhere", IDS_IMAGE_USERS | IDS_IMAGE_GROUPS), 0);
	/* a delete for another kind leaves the record (a user that no longer
	 * matches the groups search is no deleted user) */
	assert_int_equal(ids_image_delete(img, "k-bob", IDS_IMAGE_GROUPS), 0);
	assert_int_equal(ids_image_delete(img, "k-cc", IDS_IMAGE_USERS), 0);
	assert_int_equal(ids_image_nusers(img), 1);
	assert_int_equal(ids_image_ngroups(img), 1);
	const struct entry *left[] = {&bob, &cc};
	assert_same(image_text(img), full_text(left, 2));
	/* the key comes back (an entry restored with its entryUUID) */
	image_put(img, "k-alice", &alice);
	const struct entry *back[] = {&alice, &bob, &cc};
	assert_same(image_text(img), full_text(back, 3));
	ids_image_free(img);
}

/* The present phase: what is neither named present nor sent whole is gone. */
static void test_present_phase(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	size_t removed = 99;
	img = directory();
	ids_image_present_begin(img);
	assert_int_equal(ids_image_present(img, "k-cc"), 1);
	assert_int_equal(ids_image_present(img, "k-nobody"), 0);
	image_put(img, "k-bob", &bob); /* sent whole: present */
	assert_int_equal(ids_image_present_end(img, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS, &removed), 0);
	assert_int_equal(removed, 2);
	const struct entry *left[] = {&bob, &cc};
	assert_same(image_text(img), full_text(left, 2));
	/* a sweep of users alone leaves the groups, named or not */
	ids_image_present_begin(img);
	assert_int_equal(ids_image_present_end(img, IDS_IMAGE_USERS, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(ids_image_nusers(img), 0);
	assert_int_equal(ids_image_ngroups(img), 1);
	image_put(img, "k-bob", &bob);
	/* a present phase naming nothing removes everything: the empty
	 * source the safety guard must then refuse */
	ids_image_present_begin(img);
	assert_int_equal(ids_image_present_end(img, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS, &removed), 0);
	assert_int_equal(removed, 2);
	assert_int_equal(ids_image_nusers(img) + ids_image_ngroups(img), 0);
	ids_image_free(img);
}

/* Rollback returns to the last commit, whatever happened since: new keys,
 * replaced and deleted records, a key changed twice, a present sweep, a
 * record left open. */
static void test_rollback(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	assert_int_equal(ids_image_new(&img), 0);
	image_put(img, "k-alice", &alice);
	image_put(img, "k-team", &team);
	ids_image_commit(img);
	char *committed = image_text(img);

	image_put(img, "k-bob", &bob);
	image_put(img, "k-cc", &cc);
	const struct entry alice2 = {.id = "U1", .name = "alice2", .dn = UDN("alice2")};
	image_put(img, "k-alice", &alice2);
	image_put(img, "k-alice", &alice); /* twice */
	assert_int_equal(ids_image_delete(img, "k-team", IDS_IMAGE_USERS | IDS_IMAGE_GROUPS), 1);
	ids_image_present_begin(img);
	assert_int_equal(ids_image_present_end(img, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS, NULL), 0);
	assert_int_equal(ids_image_user_begin(img, "k-open"), 0);
	ids_image_rollback(img);
	assert_int_equal(ids_image_nusers(img), 1);
	assert_int_equal(ids_image_ngroups(img), 1);
	assert_same(image_text(img), strdup(committed));

	/* committed changes stay through a later rollback */
	image_put(img, "k-bob", &bob);
	ids_image_commit(img);
	ids_image_rollback(img);
	const struct entry *now[] = {&alice, &bob, &team};
	assert_same(image_text(img), full_text(now, 3));
	free(committed);
	ids_image_free(img);
}

/* A key whose entry changes kind (a user entry replaced by a group with
 * the same entryUUID cannot happen in LDAP, but the image must not mix
 * the two), and the builder's misuse. */
static void test_kind_change_and_misuse(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	assert_int_equal(ids_image_new(&img), 0);
	image_put(img, "k", &alice);
	image_put(img, "k", &team);
	assert_int_equal(ids_image_nusers(img), 0);
	assert_int_equal(ids_image_ngroups(img), 1);

	assert_int_equal(ids_image_user_set(img, IDS_F_USERNAME, "x", 1), -EINVAL); /* nothing open */
	assert_int_equal(ids_image_end(img), -EINVAL);
	assert_int_equal(ids_image_user_begin(img, ""), -EINVAL);
	assert_int_equal(ids_image_user_begin(img, "k2"), 0);
	assert_int_equal(ids_image_group_begin(img, "k3"), -EBUSY);
	assert_int_equal(ids_image_group_set(img, IDS_F_USERNAME, "x", 1), -EINVAL); /* a user is open */
	assert_int_equal(ids_image_user_set(img, IDS_F__COUNT, "x", 1), -EINVAL);
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_image_replay(img, s), -EBUSY);
	ids_snapshot_free(s);
	ids_image_abort_record(img);
	assert_int_equal(ids_image_nusers(img), 0);
	/* a value with a NUL byte is kept as is: the builder judges it */
	assert_int_equal(ids_image_user_begin(img, "k4"), 0);
	assert_int_equal(ids_image_user_set(img, IDS_F_EXTERNAL_ID, "U4", 2), 0);
	assert_int_equal(ids_image_user_set(img, IDS_F_USERNAME, "a\0b", 3), 0);
	assert_int_equal(ids_image_end(img), 0);
	char *t = image_text(img);
	assert_non_null(strstr(t, "user U4 (null) (null) invalid: username: contains a NUL byte in\n"));
	free(t);
	ids_image_free(img);
}

/* begin_edit's keep: every member but bob. */
static bool not_bob(enum ids_ref kind, const char *ref, size_t n, void *ud)
{
	(void)ud;
	return !(kind == IDS_REF_DN && n == strlen(UDN("bob")) && !memcmp(ref, UDN("bob"), n));
}

/* Member edits (Graph's members@delta, DirSync's incremental values):
 * an edge added or removed without resending the group; a replayed edit
 * changes nothing; the group's other values stay; rollback undoes them;
 * begin_edit carries the members over, drops the other values. */
static void test_member_edits(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	img = directory();
	ids_image_commit(img);
	char *before = image_text(img);

	/* alice joins Team (twice: the second is a replay), bob leaves it */
	const char *a = UDN("alice"), *b = UDN("bob");
	assert_int_equal(ids_image_group_member_add(img, "k-team", IDS_REF_DN, a, strlen(a)), 1);
	assert_int_equal(ids_image_group_member_add(img, "k-team", IDS_REF_DN, a, strlen(a)), 0);
	assert_int_equal(ids_image_group_member_remove(img, "k-team", IDS_REF_DN, b, strlen(b)), 1);
	assert_int_equal(ids_image_group_member_remove(img, "k-team", IDS_REF_DN, b, strlen(b)), 0);
	/* the same bytes as another kind of reference are another member */
	assert_int_equal(ids_image_group_member_remove(img, "k-cc", IDS_REF_ID, a, strlen(a)), 0);
	const struct entry team2 = {
	    .group = true, .id = "G1", .name = "Team", .dn = GDN("Team"), .members = {a}};
	const struct entry *all[] = {&alice, &bob, &team2, &cc};
	assert_same(image_text(img), full_text(all, 4));

	/* no such group, a user's key, an open record */
	assert_int_equal(ids_image_group_member_add(img, "k-none", IDS_REF_DN, a, strlen(a)), -ENOENT);
	assert_int_equal(ids_image_group_member_remove(img, "k-bob", IDS_REF_DN, a, strlen(a)), -ENOENT);
	assert_int_equal(ids_image_user_begin(img, "k-x"), 0);
	assert_int_equal(ids_image_group_member_add(img, "k-team", IDS_REF_DN, b, strlen(b)), -EBUSY);
	ids_image_abort_record(img);

	ids_image_rollback(img);
	assert_same(image_text(img), before);

	/* begin_edit: CC-Support renamed, bob's edge filtered (none there),
	 * Team kept, bob added; the old name and DN are gone */
	assert_int_equal(ids_image_group_begin_edit(img, "k-cc", not_bob, NULL), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, "G2", 2), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_USERNAME, "CC-Sales", 8), 0);
	assert_int_equal(ids_image_group_member(img, IDS_REF_DN, b, strlen(b)), 0);
	assert_int_equal(ids_image_end(img), 0);
	/* and Team edited to drop bob: an empty group */
	assert_int_equal(ids_image_group_begin_edit(img, "k-team", not_bob, NULL), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, "G1", 2), 0);
	assert_int_equal(ids_image_end(img), 0);
	/* a new key opens empty */
	assert_int_equal(ids_image_group_begin_edit(img, "k-new", NULL, NULL), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, "G3", 2), 0);
	assert_int_equal(ids_image_end(img), 0);
	char *got = image_text(img);
	assert_non_null(strstr(got, "user U2 bob " UDN("bob") " in CC-Sales\n"));
	assert_null(strstr(got, "CC-Support"));
	assert_int_equal(ids_image_ngroups(img), 3);
	free(got);
	ids_image_free(img);
}

static int collect(const char *key, void *ud)
{
	struct ids_buf *b = ud;
	return ids_buf_printf(b, "%s ", key) < 0 ? -ENOMEM : 0;
}

/* What the feed's refint fix-up asks of the image: a record's DN before
 * it changes, and the groups that name given DNs (in any spelling). */
static void test_dn_and_groups_naming(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	char *dn = NULL;
	struct ids_buf b = {0};
	img = directory();
	assert_int_equal(ids_image_dn(img, "k-bob", IDS_IMAGE_USERS, &dn), 0);
	assert_string_equal(dn, UDN("bob"));
	free(dn);
	assert_int_equal(ids_image_dn(img, "k-bob", IDS_IMAGE_GROUPS, &dn), 0); /* not a group */
	assert_null(dn);
	assert_int_equal(ids_image_dn(img, "k-nobody", IDS_IMAGE_USERS, &dn), 0);
	assert_null(dn);
	const char *const bobs[] = {"UID=Bob, ou=People,dc=ex"}; /* another spelling of bob's DN */
	assert_int_equal(ids_image_groups_naming(img, bobs, 1, collect, &b), 0);
	assert_string_equal(b.p, "k-team ");
	ids_buf_reset(&b);
	const char *const two[] = {GDN("Team"), UDN("alice"), "not a DN"};
	assert_int_equal(ids_image_groups_naming(img, two, 3, collect, &b), 0);
	assert_string_equal(b.p, "k-cc "); /* once, though it names both */
	ids_buf_free(&b);
	ids_image_free(img);
}

/* DirSync's INCREMENTAL_VALUES: only the member values that changed
 * arrive; the edit removes (any spelling of the DN) and adds (not twice)
 * and keeps everything else of the record; the result is the full read of
 * the group as it now is; rollback restores the old members; a key that
 * is no group changes nothing. */
static void test_group_edit(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	img = directory();
	ids_image_commit(img);
	char *before = image_text(img);
	/* cc loses alice (another spelling) and Team, gains bob twice over */
	const char *const add[] = {UDN("bob"), "UID=bob,ou=people,dc=ex"};
	const char *const del[] = {"uid=ALICE, ou=people,dc=ex", GDN("Team")};
	assert_int_equal(ids_image_group_edit(img, "k-cc", IDS_REF_DN, add, 2, del, 2), 1);
	const struct entry cc2 = {.group = true,
				  .id = "G2",
				  .name = "CC-Support",
				  .dn = GDN("CC-Support"),
				  .members = {UDN("bob")}};
	const struct entry *now[] = {&alice, &bob, &team, &cc2};
	assert_same(image_text(img), full_text(now, 4));
	/* adding a member it has and removing one it has not: no change */
	const char *const again[] = {UDN("bob")}, *const none[] = {UDN("nobody")};
	assert_int_equal(ids_image_group_edit(img, "k-cc", IDS_REF_DN, again, 1, none, 1), 1);
	assert_same(image_text(img), full_text(now, 4));
	/* only references of the kind given are touched */
	assert_int_equal(ids_image_group_edit(img, "k-cc", IDS_REF_ID, NULL, 0, again, 1), 1);
	assert_same(image_text(img), full_text(now, 4));
	/* no such group: nothing */
	assert_int_equal(ids_image_group_edit(img, "k-alice", IDS_REF_DN, add, 1, NULL, 0), 0);
	assert_int_equal(ids_image_group_edit(img, "k-none", IDS_REF_DN, add, 1, NULL, 0), 0);
	ids_image_rollback(img);
	assert_same(image_text(img), before);
	assert_int_equal(ids_image_user_begin(img, "k-x"), 0);
	assert_int_equal(ids_image_group_edit(img, "k-cc", IDS_REF_DN, add, 1, NULL, 0), -EBUSY);
	ids_image_free(img);
}

/* AD's primary groups: members by external id (IDS_REF_ID), found by
 * the id (exactly, not as a DN) and taken out again; a record's fields. */
static void test_id_members(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	struct ids_buf b = {0};
	char *v = NULL;
	img = directory();
	const char *const u1[] = {"U1"}, *const dn[] = {UDN("alice")};
	assert_int_equal(ids_image_group_edit(img, "k-team", IDS_REF_ID, u1, 1, NULL, 0), 1);
	assert_int_equal(ids_image_groups_naming_ref(img, IDS_REF_ID, u1, 1, collect, &b), 0);
	assert_string_equal(b.p, "k-team "); /* not k-cc, which names alice by DN */
	ids_buf_reset(&b);
	assert_int_equal(ids_image_groups_naming_ref(img, IDS_REF_ID, dn, 1, collect, &b), 0);
	assert_int_equal(b.len, 0);
	const struct entry team2 = {.group = true,
				    .id = "G1",
				    .name = "Team",
				    .dn = GDN("Team"),
				    .members = {UDN("bob"), UDN("alice")}};
	const struct entry *now[] = {&alice, &bob, &team2, &cc};
	assert_same(image_text(img), full_text(now, 4)); /* alice now in Team by her id */
	assert_int_equal(ids_image_group_edit(img, "k-team", IDS_REF_ID, NULL, 0, u1, 1), 1);
	const struct entry *was[] = {&alice, &bob, &team, &cc};
	assert_same(image_text(img), full_text(was, 4));
	assert_int_equal(ids_image_field(img, "k-alice", IDS_IMAGE_USERS, IDS_F_EXTERNAL_ID, &v), 0);
	assert_string_equal(v, "U1");
	free(v);
	assert_int_equal(ids_image_field(img, "k-alice", IDS_IMAGE_GROUPS, IDS_F_EXTERNAL_ID, &v), 0);
	assert_null(v);
	ids_buf_free(&b);
	ids_image_free(img);
}

/* ---- randomized: a directory of N users and G groups changes step by
 * step (adds, modifies, renames, deletes, membership and nesting changes,
 * disable/enable, present phases, failed runs rolled back); after every
 * step the image replays to exactly what a full read of the directory
 * gives.  The seed is printed, and IDS_TEST_SEED repeats a run. ---- */

#define RN 24
#define RG 8
#define STEPS 400

struct model {
	struct entry e[RN + RG]; /* e[i].id NULL: absent */
	char ids[RN + RG][24], names[RN + RG][16], dns[RN + RG][40], members[RG][4][40];
};

/* ---- storage (store/image.c): records out with ids_image_each, in
 * with ids_image_load ---- */

struct rows {
	struct ids_image *into; /* NULL: only count */
	size_t n, removed;
	char keys[8][16];
};

static int take_row(const char *key, int kind, const void *rec, size_t len, void *ud)
{
	struct rows *r = ud;
	if (r->n < 8)
		snprintf(r->keys[r->n], sizeof(r->keys[0]), "%s", key);
	r->n++;
	if (!kind)
		r->removed++;
	else if (r->into)
		assert_int_equal(ids_image_load(r->into, key, kind, rec, len), 0);
	return 0;
}

static void test_storage(void **state)
{
	(void)state;
	struct ids_image *img = NULL, *back = NULL;
	img = directory();
	assert_int_equal(ids_image_new(&back), 0);
	ids_image_commit(img);
	/* every record out and in again: the same directory, and no change
	 * to write or roll back in the copy */
	struct rows all = {.into = back};
	assert_int_equal(ids_image_each(img, false, take_row, &all), 0);
	assert_int_equal(all.n, 4);
	assert_int_equal(ids_image_nchanged(back), 0);
	const struct entry *dir[] = {&alice, &bob, &team, &cc};
	char *want = full_text(dir, 4);
	assert_same(image_text(back), want);
	assert_int_equal(ids_image_load(back, "k-bob", IDS_IMAGE_USERS, "", 0), -EEXIST);

	/* what a run changed: bob again as he was (no change: a full read
	 * rewrites nothing), alice modified, team deleted */
	image_put(back, "k-bob", &bob);
	assert_int_equal(ids_image_nchanged(back), 0);
	const struct entry alice2 = {.id = "U1", .name = "alice", .dn = UDN("alice"), .dept = "Sales"};
	image_put(back, "k-alice", &alice2);
	assert_int_equal(ids_image_delete(back, "k-team", IDS_IMAGE_GROUPS), 1);
	struct rows changed = {0};
	assert_int_equal(ids_image_each(back, true, take_row, &changed), 0);
	assert_int_equal(changed.n, 2);
	assert_int_equal(changed.removed, 1);
	assert_string_equal(changed.keys[0], "k-alice");
	assert_string_equal(changed.keys[1], "k-team");
	/* a key made and removed again in the same run was never stored */
	image_put(back, "k-tmp", &bob);
	assert_int_equal(ids_image_delete(back, "k-tmp", IDS_IMAGE_USERS), 1);
	changed = (struct rows){0};
	assert_int_equal(ids_image_each(back, true, take_row, &changed), 0);
	assert_int_equal(changed.n, 2);
	ids_image_commit(back);
	changed = (struct rows){0};
	assert_int_equal(ids_image_each(back, true, take_row, &changed), 0);
	assert_int_equal(changed.n, 0);

	/* stored bytes that are not a record of their kind are refused */
	static const unsigned char user_op[] = {1, 0, 2, 0, 0, 0, 'U', '9'}; /* user_set external id "U9" */
	static const unsigned char cut[] = {1, 0, 9, 0, 0, 0, 'U'};	     /* a value past the end */
	static const unsigned char bad_op[] = {42, 0, 0, 0, 0, 0};
	assert_int_equal(ids_image_load(back, "k-x", IDS_IMAGE_GROUPS, user_op, sizeof(user_op)), -EINVAL);
	assert_int_equal(ids_image_load(back, "k-x", IDS_IMAGE_USERS, cut, sizeof(cut)), -EINVAL);
	assert_int_equal(ids_image_load(back, "k-x", IDS_IMAGE_USERS, bad_op, sizeof(bad_op)), -EINVAL);
	assert_int_equal(ids_image_load(back, "k-x", 3, user_op, sizeof(user_op)), -EINVAL);
	/* what replay would refuse (found by fuzz_image): an attribute
	 * without a name, a group field the builder has no place for */
	static const unsigned char noname[] = {2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'x'};
	static const unsigned char nulname[] = {2, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 'x'};
	static const unsigned char gfirst[] = {5, IDS_F_FIRST_NAME, 1, 0, 0, 0, 'x'};
	assert_int_equal(ids_image_load(back, "k-x", IDS_IMAGE_USERS, noname, sizeof(noname)), -EINVAL);
	assert_int_equal(ids_image_load(back, "k-x", IDS_IMAGE_USERS, nulname, sizeof(nulname)), -EINVAL);
	assert_int_equal(ids_image_load(back, "k-x", IDS_IMAGE_GROUPS, gfirst, sizeof(gfirst)), -EINVAL);
	assert_int_equal(ids_image_load(back, "", IDS_IMAGE_USERS, user_op, sizeof(user_op)), -EINVAL);
	assert_int_equal(ids_image_load(back, "k-x", IDS_IMAGE_USERS, user_op, sizeof(user_op)), 0);
	assert_int_equal(ids_image_nusers(back), 3);
	ids_image_free(img);
	ids_image_free(back);
}

/* ids_image_defer: the records come from fn (here, a stored copy) only
 * when a call needs them; a read that changes nothing never asks. */
struct stored {
	const struct ids_image *from;
	int calls, fail;
};

static int read_in(struct ids_image *img, void *ud)
{
	struct stored *st = ud;
	struct rows all = {.into = img};
	st->calls++;
	if (st->fail)
		return st->fail;
	return ids_image_each(st->from, false, take_row, &all);
}

static void test_defer(void **state)
{
	(void)state;
	struct ids_image *src = NULL, *img = NULL;
	src = directory();
	ids_image_commit(src);
	struct stored st = {.from = src};

	/* a feed read without a change: present phase begun and rolled
	 * back or committed, changes asked for: nothing read in */
	assert_int_equal(ids_image_new(&img), 0);
	ids_image_defer(img, read_in, &st);
	assert_true(ids_image_deferred(img));
	ids_image_present_begin(img);
	assert_int_equal(ids_image_nchanged(img), 0);
	struct rows changed = {0};
	assert_int_equal(ids_image_each(img, true, take_row, &changed), 0);
	assert_int_equal(changed.n, 0);
	ids_image_rollback(img);
	ids_image_commit(img);
	assert_int_equal(st.calls, 0);
	assert_true(ids_image_deferred(img));
	/* disarmed (its run ended): a call that needs records fails */
	ids_image_defer(img, NULL, NULL);
	assert_int_equal(ids_image_delete(img, "k-bob", IDS_IMAGE_USERS), -EINVAL);
	ids_image_free(img);

	/* the first change reads everything in, once, then applies */
	assert_int_equal(ids_image_new(&img), 0);
	ids_image_defer(img, read_in, &st);
	const struct entry alice2 = {.id = "U1", .name = "alice", .dn = UDN("alice"), .dept = "Sales"};
	image_put(img, "k-alice", &alice2);
	assert_int_equal(st.calls, 1);
	assert_false(ids_image_deferred(img));
	assert_int_equal(ids_image_nchanged(img), 1); /* read in: no change; alice: one */
	assert_int_equal(ids_image_delete(img, "k-team", IDS_IMAGE_GROUPS), 1);
	assert_int_equal(st.calls, 1);
	const struct entry *dir[] = {&alice2, &bob, &cc};
	assert_same(image_text(img), full_text(dir, 3));
	/* rolled back: the stored records, still read in */
	ids_image_rollback(img);
	const struct entry *was[] = {&alice, &bob, &team, &cc};
	assert_same(image_text(img), full_text(was, 4));
	ids_image_free(img);

	/* a present key, a lookup, the counts each read in too */
	assert_int_equal(ids_image_new(&img), 0);
	ids_image_defer(img, read_in, &st);
	ids_image_present_begin(img);
	assert_int_equal(ids_image_present(img, "k-cc"), 1);
	assert_int_equal(ids_image_present_end(img, IDS_IMAGE_GROUPS, NULL), 0);
	assert_int_equal(ids_image_ngroups(img), 1); /* team not named: gone */
	assert_int_equal(st.calls, 2);
	ids_image_free(img);

	/* fn's failure: returned now and by every later call */
	st.fail = -EIO;
	assert_int_equal(ids_image_new(&img), 0);
	ids_image_defer(img, read_in, &st);
	assert_int_equal(ids_image_user_begin(img, "k-dan"), -EIO);
	assert_int_equal(ids_image_read_in(img), -EIO);
	assert_int_equal(ids_image_nusers(img), 0);
	assert_int_equal(st.calls, 3);
	ids_image_free(img);
	ids_image_free(src);
}

/* ids_image_changed: what a re-plan must reach, and no more. */
static int note_change(int what, enum ids_ref kind, const char *v, size_t n, void *ud)
{
	char *out = ud;
	size_t len = strlen(out);
	snprintf(out + len, 512 - len, "%s%d:%d:%.*s", len ? " " : "", what, (int)kind, (int)n, v);
	return 0;
}

static void test_changed(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	char got[512] = "";
	img = directory();
	ids_image_commit(img);
	assert_int_equal(ids_image_changed(img, note_change, got), 0);
	assert_string_equal(got, "");

	/* a member more, one less: those two references only, not the
	 * member both records name, and not the group's id (its values
	 * are the same) */
	const struct entry cc2 = {.group = true,
				  .id = "G2",
				  .name = "CC-Support",
				  .dn = GDN("CC-Support"),
				  .members = {GDN("Team"), UDN("bob")}};
	image_put(img, "k-cc", &cc2);
	assert_int_equal(ids_image_changed(img, note_change, got), 0);
	assert_string_equal(got, "3:0:" UDN("alice") " 3:0:" UDN("bob"));
	ids_image_rollback(img);

	/* renamed: every member is reached through the group's id */
	const struct entry team2 = {
	    .group = true, .id = "G1", .name = "Team-2", .dn = GDN("Team-2"), .members = {UDN("bob")}};
	image_put(img, "k-team", &team2);
	got[0] = '\0';
	assert_int_equal(ids_image_changed(img, note_change, got), 0);
	assert_string_equal(got, "2:1:G1 2:1:G1");
	ids_image_rollback(img);

	/* a user changed (its id, old and new), a group deleted (its id and
	 * every member of its old record) */
	const struct entry bob2 = {.id = "U2", .name = "bob", .dn = UDN("bob"), .dept = "Sales"};
	image_put(img, "k-bob", &bob2);
	assert_int_equal(ids_image_delete(img, "k-team", IDS_IMAGE_GROUPS), 1);
	got[0] = '\0';
	assert_int_equal(ids_image_changed(img, note_change, got), 0);
	assert_string_equal(got, "1:1:U2 1:1:U2 2:1:G1 3:0:" UDN("bob"));
	ids_image_free(img);
}

/* All-Staff with n members: uid=u<i> for i in order (reversed when
 * `reverse`), except member `swap` (-1: none) named uid=n<swap> instead,
 * `cut` (-1: none) left out, and uid=n<add> appended when add >= 0. */
struct big {
	long n, swap, cut, add;
	bool reverse;
};

static void big_put(struct ids_image *img, const struct big *b)
{
	char dn[64];
	assert_int_equal(ids_image_group_begin(img, "k-all"), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, "G9", 2), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_USERNAME, "All-Staff", 9), 0);
	for (long k = 0; k <= b->n; k++) {
		long i = b->reverse ? b->n - 1 - k : k;
		if (k == b->n && b->add < 0)
			break;
		if (i == b->cut)
			continue;
		int len = k == b->n
			      ? snprintf(dn, sizeof(dn), "uid=n%06ld,dc=ex", b->add)
			      : snprintf(dn, sizeof(dn), "uid=%c%06ld,dc=ex", i == b->swap ? 'n' : 'u', i);
		assert_int_equal(ids_image_group_member(img, IDS_REF_DN, dn, (size_t)len), 0);
	}
	assert_int_equal(ids_image_end(img), 0);
}

/* A group of 100,000 members whose record changes by one member: exactly
 * that reference (or the two of a swap) is named, whatever the position
 * and the order of the members; not the group's id. */
static void test_changed_big(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	char got[512];
	assert_int_equal(ids_image_new(&img), 0);
	const long n = 100000;
	big_put(img, &(struct big){.n = n, .swap = -1, .cut = -1, .add = -1});
	ids_image_commit(img);
	static const struct {
		struct big b;
		const char *want;
	} cases[] = {
	    {{.n = 100000, .swap = 50000, .cut = -1, .add = -1},
	     "3:0:uid=n050000,dc=ex 3:0:uid=u050000,dc=ex"},
	    {{.n = 100000, .swap = 0, .cut = -1, .add = -1}, "3:0:uid=n000000,dc=ex 3:0:uid=u000000,dc=ex"},
	    {{.n = 100000, .swap = 99999, .cut = -1, .add = -1},
	     "3:0:uid=n099999,dc=ex 3:0:uid=u099999,dc=ex"},
	    {{.n = 100000, .swap = -1, .cut = 31337, .add = -1}, "3:0:uid=u031337,dc=ex"},
	    {{.n = 100000, .swap = -1, .cut = 0, .add = -1}, "3:0:uid=u000000,dc=ex"},
	    {{.n = 100000, .swap = -1, .cut = -1, .add = 7}, "3:0:uid=n000007,dc=ex"},
	    {{.n = 100000, .swap = -1, .cut = 99999, .add = 1},
	     "3:0:uid=n000001,dc=ex 3:0:uid=u099999,dc=ex"},
	    /* the same members the other way round: no common start or end */
	    {{.n = 100000, .swap = -1, .cut = 4242, .add = -1, .reverse = true}, "3:0:uid=u004242,dc=ex"},
	    {{.n = 100000, .swap = -1, .cut = -1, .add = -1, .reverse = true}, ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		big_put(img, &cases[i].b);
		got[0] = '\0';
		assert_int_equal(ids_image_changed(img, note_change, got), 0);
		assert_string_equal(got, cases[i].want);
		ids_image_rollback(img);
	}
	ids_image_free(img);
}

/* ---- interned values (core/image.c keeps a value many records repeat
 * once in memory) ---- */

/* Every record as stored (ids_image_each), one line per key — key, kind,
 * the bytes in hex — sorted by key: two images that would store the same
 * rows give the same text, whatever order they were made in.  New. */
static int stored_line(const char *key, int kind, const void *rec, size_t len, void *ud)
{
	struct ids_strv *lines = ud;
	struct ids_buf b = {0};
	ids_buf_printf(&b, "%s %d ", key, kind);
	for (size_t i = 0; i < len; i++)
		ids_buf_printf(&b, "%02x", ((const unsigned char *)rec)[i]);
	assert_non_null(b.p);
	assert_int_equal(ids_strv_push(lines, b.p), 0);
	ids_buf_free(&b);
	return 0;
}

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *stored_text(const struct ids_image *img)
{
	struct ids_strv lines = {0};
	struct ids_buf b = {0};
	assert_int_equal(ids_image_each(img, false, stored_line, &lines), 0);
	if (lines.n)
		qsort(lines.v, lines.n, sizeof(*lines.v), by_text);
	assert_int_equal(ids_buf_puts(&b, ""), 0);
	for (size_t i = 0; i < lines.n; i++)
		ids_buf_printf(&b, "%s\n", lines.v[i]);
	ids_strv_free(&lines);
	return ids_buf_steal(&b);
}

#define NI 200 /* users of test_interned_* */
#define LONG_UDN "uid=someone-with-a-long-name-%03d,ou=people,ou=site,dc=example,dc=org"

/* User i of the interned tests: his DN is the member value groups repeat. */
static void interned_user(struct ids_image *img, int i, char dns[][80])
{
	char key[16], id[16];
	snprintf(key, sizeof(key), "u%d", i);
	snprintf(id, sizeof(id), "U%d", i);
	snprintf(dns[i], 80, LONG_UDN, i);
	const struct entry e = {.id = id, .name = key, .dn = dns[i], .dept = "Support"};
	image_put(img, key, &e);
}

/* Group g, naming users from..to (step `step`) by DN. */
static void interned_group(struct ids_image *img, int g, char dns[][80], int from, int to, int step)
{
	char key[16];
	snprintf(key, sizeof(key), "g%d", g);
	assert_int_equal(ids_image_group_begin(img, key), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, key, strlen(key)), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_USERNAME, key, strlen(key)), 0);
	for (int i = from; i < to; i += step)
		assert_int_equal(ids_image_group_member(img, IDS_REF_DN, dns[i], strlen(dns[i])), 0);
	assert_int_equal(ids_image_end(img), 0);
}

/* A membership costs the image a pointer, not the member's DN again:
 * five groups naming all 200 users (DNs of 68 bytes) add at most 16 bytes
 * a membership (op, kind, an empty value's marker, the pointer; the
 * group's own values besides).  Stored, each is 10 bytes plus the DN. */
static void test_interned_memory(void **state)
{
	(void)state;
	static char dns[NI][80];
	struct ids_image *img = NULL;
	assert_int_equal(ids_image_new(&img), 0);
	for (int i = 0; i < NI; i++)
		interned_user(img, i, dns);
	ids_image_commit(img);
	size_t users = ids_image_memory(img);
	for (int g = 0; g < 5; g++)
		interned_group(img, g, dns, 0, NI, 1);
	ids_image_commit(img);
	size_t groups = ids_image_memory(img) - users;
	print_message("users %zu bytes, 5 x %d memberships %zu bytes\n", users, NI, groups);
	assert_true(groups <= 5 * NI * 16 + 5 * 256);
	/* and what is stored is the stored encoding: a copy made from it
	 * replays the same and stores the same bytes */
	struct ids_image *back = NULL;
	struct rows all = {0};
	assert_int_equal(ids_image_new(&back), 0);
	all.into = back;
	assert_int_equal(ids_image_each(img, false, take_row, &all), 0);
	assert_same(stored_text(back), stored_text(img));
	assert_same(image_text(back), image_text(img));
	ids_image_free(back);
	ids_image_free(img);
}

/* The one copy of a value outlives none of the records naming it: groups
 * sharing members replaced, deleted and rolled back, users renamed (their
 * old DN dropped), everything deleted (the copies freed) — after each,
 * the image stores and replays exactly what a fresh image of the same
 * entries does.  (Under AddressSanitizer, a copy freed too early is a
 * use after free here.) */
static void test_interned_survive(void **state)
{
	(void)state;
	static char dns[NI][80];
	struct ids_image *img = NULL, *fresh = NULL;
	assert_int_equal(ids_image_new(&img), 0);
	for (int i = 0; i < NI; i++)
		interned_user(img, i, dns);
	interned_group(img, 0, dns, 0, NI, 1);	   /* everyone */
	interned_group(img, 1, dns, 0, NI / 2, 1); /* the first half */
	ids_image_commit(img);
	char *before = stored_text(img), *before_text = image_text(img);

	/* g0 deleted, g1 replaced by the odd ones, half the users renamed:
	 * rolled back, everything as it was */
	assert_int_equal(ids_image_delete(img, "g0", IDS_IMAGE_GROUPS), 1);
	interned_group(img, 1, dns, 1, NI, 2);
	for (int i = 0; i < NI; i += 2) {
		char key[16], id[16], dn[80];
		snprintf(key, sizeof(key), "u%d", i);
		snprintf(id, sizeof(id), "U%d", i);
		snprintf(dn, sizeof(dn), "uid=renamed-%d,ou=people,dc=example,dc=org", i);
		const struct entry e = {.id = id, .name = key, .dn = dn, .dept = "Support"};
		image_put(img, key, &e);
	}
	ids_image_rollback(img);
	assert_same(stored_text(img), before);
	assert_same(image_text(img), before_text);

	/* the same, committed: the DNs only g0 and the renamed users named
	 * are dead, the others live on in g1 and the other users */
	assert_int_equal(ids_image_delete(img, "g0", IDS_IMAGE_GROUPS), 1);
	interned_group(img, 1, dns, 1, NI, 2);
	for (int i = 0; i < NI; i += 2) {
		char key[16];
		snprintf(key, sizeof(key), "u%d", i);
		assert_int_equal(ids_image_delete(img, key, IDS_IMAGE_USERS), 1);
	}
	ids_image_commit(img);
	assert_int_equal(ids_image_new(&fresh), 0);
	for (int i = 1; i < NI; i += 2)
		interned_user(fresh, i, dns);
	interned_group(fresh, 1, dns, 1, NI, 2);
	assert_same(stored_text(img), stored_text(fresh));
	assert_same(image_text(img), image_text(fresh));

	/* everything gone: the copies are freed with their last record */
	size_t full = ids_image_memory(img);
	for (int i = 1; i < NI; i += 2) {
		char key[16];
		snprintf(key, sizeof(key), "u%d", i);
		assert_int_equal(ids_image_delete(img, key, IDS_IMAGE_USERS), 1);
	}
	assert_int_equal(ids_image_delete(img, "g1", IDS_IMAGE_GROUPS), 1);
	ids_image_commit(img);
	print_message("%zu bytes with 100 users and a group, %zu with none\n", full, ids_image_memory(img));
	assert_true(ids_image_memory(img) < full - (NI / 2) * 68);
	ids_image_free(fresh);
	ids_image_free(img);
}

/* User i of test_turnover, renamed `gen` times. */
static void turnover_user(struct ids_image *img, int i, int gen)
{
	char key[16], id[16], dn[96];
	snprintf(key, sizeof(key), "u%d", i);
	snprintf(id, sizeof(id), "U%d", i);
	snprintf(dn, sizeof(dn), "uid=someone-%d-renamed-%d,ou=people,dc=example,dc=org", i, gen);
	const struct entry e = {.id = id, .name = key, .dn = dn, .dept = gen % 2 ? "Sales" : "Support"};
	image_put(img, key, &e);
}

/* The group naming every user alive (gen[i] >= 0). */
static void turnover_group(struct ids_image *img, const int *gen, int n)
{
	assert_int_equal(ids_image_group_begin(img, "g0"), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, "G0", 2), 0);
	assert_int_equal(ids_image_group_set(img, IDS_F_USERNAME, "g0", 2), 0);
	for (int i = 0; i < n; i++) {
		char dn[96];
		if (gen[i] < 0)
			continue;
		snprintf(dn, sizeof(dn), "uid=someone-%d-renamed-%d,ou=people,dc=example,dc=org", i, gen[i]);
		assert_int_equal(ids_image_group_member(img, IDS_REF_DN, dn, strlen(dn)), 0);
	}
	assert_int_equal(ids_image_end(img), 0);
}

#define TURN_USERS 200
#define TURN_STEP 20
#define TURN_RUNS 40
#define TURN_N (TURN_USERS + TURN_STEP * TURN_RUNS)

/* Run `run` of test_turnover: the oldest TURN_STEP users leave,
 * TURN_STEP new ones come, every third other one is renamed. */
static void turnover_run(struct ids_image *img, int *gen, int run)
{
	int left = 0;
	for (int i = 0; i < TURN_N && left < TURN_STEP; i++) {
		if (gen[i] < 0)
			continue;
		char key[16];
		snprintf(key, sizeof(key), "u%d", i);
		assert_int_equal(ids_image_delete(img, key, IDS_IMAGE_USERS), 1);
		gen[i] = -1;
		left++;
	}
	for (int i = TURN_USERS + (run - 1) * TURN_STEP; i < TURN_USERS + run * TURN_STEP; i++)
		turnover_user(img, i, gen[i] = 0);
	for (int i = run % 3; i < TURN_N; i += 3)
		if (gen[i] >= 0)
			turnover_user(img, i, ++gen[i]);
	turnover_group(img, gen, TURN_N);
}

/* A directory whose people come and go and are renamed, run after run,
 * takes no more memory after 40 runs than after the first: the slots of
 * deleted records are reused (by keys of other lengths too), a value's
 * one copy is freed with the last record naming it.  After each run the
 * image stores and replays what a fresh image of the same entries does;
 * a run rolled back changes nothing. */
static void test_turnover(void **state)
{
	(void)state;
	static int gen[TURN_N], was[TURN_N];
	struct ids_image *img = NULL;
	size_t first = 0;
	assert_int_equal(ids_image_new(&img), 0);
	for (int i = 0; i < TURN_N; i++)
		gen[i] = i < TURN_USERS ? 0 : -1;
	for (int i = 0; i < TURN_USERS; i++)
		turnover_user(img, i, 0);
	turnover_group(img, gen, TURN_N);
	ids_image_commit(img);
	for (int run = 1; run <= TURN_RUNS; run++) {
		char *before = run % 7 == 0 ? stored_text(img) : NULL;
		memcpy(was, gen, sizeof(gen));
		turnover_run(img, gen, run);
		if (before) {
			ids_image_rollback(img);
			assert_same(stored_text(img), before);
			memcpy(gen, was, sizeof(gen));
			turnover_run(img, gen, run);
		}
		ids_image_commit(img);
		struct ids_image *fresh = NULL;
		assert_int_equal(ids_image_new(&fresh), 0);
		for (int i = 0; i < TURN_N; i++)
			if (gen[i] >= 0)
				turnover_user(fresh, i, gen[i]);
		turnover_group(fresh, gen, TURN_N);
		assert_same(stored_text(img), stored_text(fresh));
		assert_same(image_text(img), image_text(fresh));
		ids_image_free(fresh);
		if (run == 1)
			first = ids_image_memory(img);
	}
	print_message("%zu bytes after the first run, %zu after %d\n", first, ids_image_memory(img),
		      TURN_RUNS);
	assert_true(ids_image_memory(img) <= first + first / 10);
	ids_image_free(img);
}

static unsigned long rnd(unsigned long *s)
{
	*s = *s * 6364136223846793005UL + 1442695040888963407UL;
	return *s >> 33;
}

/* ids_image_groups_naming against its definition, over many asks of one
 * image: the groups (in record order) with a member whose DN, in any
 * spelling, is one of the asked.  Members are spelled three ways, some
 * are not DNs, and the asks are big enough for the wanted DNs' bitmap to
 * let others through: the hashes the image keeps between asks, the
 * bitmap and the exact check that follows it must together give what
 * normalizing every member every time gives. */
#define NU 300
#define NGRP 60
#define NMEM 20

static void spell(char *buf, size_t n, unsigned u, unsigned how)
{
	if (how == 0)
		snprintf(buf, n, "uid=u%u,ou=people,dc=ex", u);
	else if (how == 1)
		snprintf(buf, n, "UID=u%u,OU=People,DC=ex", u);
	else if (how == 2)
		snprintf(buf, n, "uid=u%u, ou=people, dc=ex", u);
	else
		snprintf(buf, n, "uid=u%u,,bad", u); /* no DN */
}

static void test_groups_naming_random(void **state)
{
	(void)state;
	static char mem[NGRP][NMEM][40];
	unsigned long seed = 20261207UL;
	struct ids_image *img = NULL;
	struct ids_buf got = {0}, want = {0};
	char key[16], dn[40];
	assert_int_equal(ids_image_new(&img), 0);
	for (unsigned g = 0; g < NGRP; g++) {
		snprintf(key, sizeof(key), "k-g%u", g);
		snprintf(dn, sizeof(dn), "cn=g%u,ou=groups,dc=ex", g);
		assert_int_equal(ids_image_group_begin(img, key), 0);
		assert_int_equal(ids_image_group_set(img, IDS_F_DN, dn, strlen(dn)), 0);
		for (unsigned i = 0; i < NMEM; i++) {
			spell(mem[g][i], sizeof(mem[g][i]), (unsigned)(rnd(&seed) % NU),
			      rnd(&seed) % 10 == 0 ? 3 : (unsigned)(rnd(&seed) % 3));
			assert_int_equal(
			    ids_image_group_member(img, IDS_REF_DN, mem[g][i], strlen(mem[g][i])), 0);
		}
		assert_int_equal(ids_image_end(img), 0);
	}
	ids_image_commit(img);
	for (unsigned ask = 0; ask < 40; ask++) {
		size_t n = 1 + rnd(&seed) % (ask % 2 ? 3 : 120);
		char(*asked)[40] = calloc(n, sizeof(*asked));
		const char **refs = calloc(n, sizeof(*refs));
		assert_non_null(asked);
		assert_non_null(refs);
		for (size_t i = 0; i < n; i++) {
			spell(asked[i], sizeof(asked[i]), (unsigned)(rnd(&seed) % NU),
			      (unsigned)(rnd(&seed) % 3));
			refs[i] = asked[i];
		}
		ids_buf_reset(&got);
		ids_buf_reset(&want);
		assert_int_equal(ids_image_groups_naming(img, refs, n, collect, &got), 0);
		for (unsigned g = 0; g < NGRP; g++) {
			bool hit = false;
			for (unsigned i = 0; i < NMEM && !hit; i++) {
				char *a = NULL;
				if (ids_dn_normalize(mem[g][i], strlen(mem[g][i]), &a) < 0)
					continue;
				for (size_t j = 0; j < n && !hit; j++) {
					char *b = NULL;
					assert_int_equal(ids_dn_normalize(asked[j], strlen(asked[j]), &b), 0);
					hit = strcmp(a, b) == 0;
					free(b);
				}
				free(a);
			}
			if (hit)
				assert_true(ids_buf_printf(&want, "k-g%u ", g) >= 0);
		}
		assert_string_equal(got.len ? got.p : "", want.len ? want.p : "");
		free(refs);
		free(asked);
	}
	ids_buf_free(&got);
	ids_buf_free(&want);
	ids_image_free(img);
}

/* Entry i of the model made anew (random name, flags, members). */
static void key_of(size_t i, char *buf, size_t n)
{
	snprintf(buf, n, "uuid-%zu", i);
}

static void model_make(struct model *m, size_t i, unsigned long *seed)
{
	struct entry *e = &m->e[i];
	bool group = i >= RN;
	*e = (struct entry){.group = group};
	/* every other entry's external id is its key, as LDAP's entryUUID is
	 * (the image keeps no copy of such an id) */
	if (i % 2)
		snprintf(m->ids[i], sizeof(m->ids[i]), "%c%zu", group ? 'G' : 'U', i);
	else
		key_of(i, m->ids[i], sizeof(m->ids[i]));
	char name[sizeof(m->names[i])];
	snprintf(name, sizeof(name), "%s%lu", group ? "grp" : "usr", rnd(seed) % 6);
	memcpy(m->names[i], name, sizeof(name));
	/* from the copy: GCC's -Wrestrict (optimized builds) takes a field of
	 * *m as overlapping another */
	snprintf(m->dns[i], sizeof(m->dns[i]), "cn=%s-%zu,ou=%s,dc=ex", name, i,
		 rnd(seed) % 2 ? "a" : "b"); /* a move or a rename changes the DN */
	e->id = m->ids[i];
	e->name = m->names[i];
	e->dn = m->dns[i];
	e->disabled = !group && rnd(seed) % 5 == 0;
	e->dept = !group && rnd(seed) % 2 ? "Support" : NULL;
	for (size_t k = 0; group && k < 4; k++) {
		size_t t = rnd(seed) % (RN + RG); /* users and groups: nesting, cycles, dangling */
		if (rnd(seed) % 4 == 0)
			continue;
		snprintf(m->members[i - RN][k], sizeof(m->members[0][0]), "%s",
			 m->e[t].id ? m->dns[t] : "cn=gone");
		e->members[k] = m->members[i - RN][k];
	}
}

static char *model_text(const struct model *m)
{
	const struct entry *all[RN + RG];
	for (size_t i = 0; i < RN + RG; i++)
		all[i] = m->e[i].id ? &m->e[i] : NULL;
	return full_text(all, RN + RG);
}

static void test_random_changes(void **state)
{
	(void)state;
	const char *env = getenv("IDS_TEST_SEED");
	unsigned long seed0 = env ? strtoul(env, NULL, 10) : 20261206UL, seed = seed0;
	print_message("test_random_changes: seed %lu (IDS_TEST_SEED=%lu repeats it)\n", seed0, seed0);
	static struct model m, saved;
	struct ids_image *img = NULL;
	char key[32];
	memset(&m, 0, sizeof(m));
	assert_int_equal(ids_image_new(&img), 0);
	for (size_t step = 0; step < STEPS; step++) {
		bool fail_run = rnd(&seed) % 7 == 0; /* this run's changes are rolled back */
		saved = m;
		size_t nchanges = 1 + rnd(&seed) % 4;
		if (rnd(&seed) % 10 == 0) {
			/* a present phase: some entries gone, the rest named present */
			ids_image_present_begin(img);
			for (size_t i = 0; i < RN + RG; i++) {
				if (!m.e[i].id)
					continue;
				key_of(i, key, sizeof(key));
				if (rnd(&seed) % 6 == 0)
					m.e[i].id = NULL;
				else
					assert_int_equal(ids_image_present(img, key), 1);
			}
			assert_int_equal(ids_image_present_end(img, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS, NULL),
					 0);
			nchanges = 0;
		}
		for (size_t c = 0; c < nchanges; c++) {
			size_t i = rnd(&seed) % (RN + RG);
			key_of(i, key, sizeof(key));
			if (m.e[i].id && rnd(&seed) % 4 == 0) {
				m.e[i].id = NULL;
				assert_int_equal(
				    ids_image_delete(img, key, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS), 1);
			} else {
				model_make(&m, i, &seed);
				image_put(img, key, &m.e[i]);
			}
		}
		if (fail_run) {
			ids_image_rollback(img);
			m = saved;
			/* the pointers of the copy point into the old model */
			for (size_t i = 0; i < RN + RG; i++) {
				if (!m.e[i].id)
					continue;
				m.e[i].id = m.ids[i];
				m.e[i].name = m.names[i];
				m.e[i].dn = m.dns[i];
				for (size_t k = 0; i >= RN && k < 4; k++)
					if (m.e[i].members[k])
						m.e[i].members[k] = m.members[i - RN][k];
			}
		} else {
			ids_image_commit(img);
		}
		char *got = image_text(img), *want = model_text(&m);
		if (strcmp(got, want))
			print_message("step %zu (seed %lu) differs\n", step, seed0);
		assert_same(got, want);
		/* and it stores what a fresh image of the model stores: the
		 * interned values kept exactly as long as a record names them */
		struct ids_image *fresh = NULL;
		assert_int_equal(ids_image_new(&fresh), 0);
		for (size_t i = 0; i < RN + RG; i++)
			if (m.e[i].id) {
				key_of(i, key, sizeof(key));
				image_put(fresh, key, &m.e[i]);
			}
		assert_same(stored_text(img), stored_text(fresh));
		ids_image_free(fresh);
	}
	ids_image_free(img);
}

/* ---- a kept snapshot patched with each run's changes (snapshot.h,
 * ids_snapshot_patch) is exactly the image replayed whole: random
 * steps over a directory whose keys are unique (usernames, DNs), as a
 * patch needs; users added, deleted, renamed and moved (their DN
 * changes: groups still naming the old one lose them), made invalid
 * (no username), disabled; groups' members changed (users and groups:
 * nesting, cycles, dangling references, DNs spelled in another case,
 * members named by external id),
 * renamed; now and then a group's DN changed, a group deleted or added
 * (which a patch refuses: replayed whole).  Failed runs roll back and
 * drop the kept snapshot, as the daemon does. ---- */

#define PN 30
#define PG 8
#define PSTEPS 400

struct pmodel {
	bool here[PN + PG];
	char ids[PN + PG][24], names[PN + PG][16], dns[PN + PG][48];
	bool disabled[PN];
	bool dept[PN];
	char members[PG][4][48];
};

static void pmodel_make(struct pmodel *m, size_t i, unsigned long *seed)
{
	bool group = i >= PN;
	m->here[i] = true;
	/* every other entry's external id is its key, as LDAP's entryUUID is
	 * (the image keeps no copy of such an id) */
	if (i % 2)
		snprintf(m->ids[i], sizeof(m->ids[i]), "%c%zu", group ? 'G' : 'U', i);
	else
		key_of(i, m->ids[i], sizeof(m->ids[i]));
	if (group) {
		snprintf(m->names[i], sizeof(m->names[i]), "grp%lu", rnd(seed) % 3);
		/* a group's DN stays, but now and then */
		snprintf(m->dns[i], sizeof(m->dns[i]), "cn=g%zu%s,ou=groups,dc=ex", i,
			 rnd(seed) % 12 == 0 ? "x" : "");
		for (size_t k = 0; k < 4; k++) {
			size_t t = rnd(seed) % (PN + PG);
			const char *dn = m->here[t] ? m->dns[t] : "cn=gone,dc=ex";
			m->members[i - PN][k][0] = '\0';
			if (rnd(seed) % 4 == 0)
				continue;
			snprintf(m->members[i - PN][k], sizeof(m->members[0][0]), "%s", dn);
			if (rnd(seed) % 10 == 0) /* by external id ('#'), as cloud connectors name them */
				snprintf(m->members[i - PN][k], sizeof(m->members[0][0]), "#%s",
					 m->here[t] ? m->ids[t] : "gone");
			else if (rnd(seed) % 3 == 0) /* another spelling of the same DN */
				for (char *c = m->members[i - PN][k]; *c; c++)
					*c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
		}
		return;
	}
	unsigned long v = rnd(seed) % 4;
	/* unique per user; one in ten without a username (invalid) */
	if (rnd(seed) % 10 == 0)
		m->names[i][0] = '\0';
	else
		snprintf(m->names[i], sizeof(m->names[i]), "u%zun%lu", i, v);
	snprintf(m->dns[i], sizeof(m->dns[i]), "uid=u%zun%lu,ou=%s,dc=ex", i, v, rnd(seed) % 2 ? "a" : "b");
	m->disabled[i] = rnd(seed) % 5 == 0;
	m->dept[i] = rnd(seed) % 2;
}

static void pmodel_put(struct ids_image *img, const struct pmodel *m, size_t i)
{
	char key[32];
	key_of(i, key, sizeof(key));
	if (i >= PN) {
		assert_int_equal(ids_image_group_begin(img, key), 0);
		assert_int_equal(ids_image_group_set(img, IDS_F_EXTERNAL_ID, m->ids[i], strlen(m->ids[i])),
				 0);
		assert_int_equal(ids_image_group_set(img, IDS_F_USERNAME, m->names[i], strlen(m->names[i])),
				 0);
		assert_int_equal(ids_image_group_set(img, IDS_F_DN, m->dns[i], strlen(m->dns[i])), 0);
		for (size_t k = 0; k < 4; k++) {
			const char *v = m->members[i - PN][k];
			if (*v == '#')
				assert_int_equal(
				    ids_image_group_member(img, IDS_REF_ID, v + 1, strlen(v + 1)), 0);
			else if (*v)
				assert_int_equal(ids_image_group_member(img, IDS_REF_DN, v, strlen(v)), 0);
		}
	} else {
		assert_int_equal(ids_image_user_begin(img, key), 0);
		assert_int_equal(ids_image_user_set(img, IDS_F_EXTERNAL_ID, m->ids[i], strlen(m->ids[i])), 0);
		assert_int_equal(ids_image_user_set(img, IDS_F_USERNAME, m->names[i], strlen(m->names[i])),
				 0);
		assert_int_equal(ids_image_user_set(img, IDS_F_DN, m->dns[i], strlen(m->dns[i])), 0);
		if (m->dept[i])
			assert_int_equal(ids_image_user_attr(img, "department", "Support", 7), 0);
		assert_int_equal(ids_image_user_disabled(img, m->disabled[i]), 0);
	}
	assert_int_equal(ids_image_end(img), 0);
}

/* One run's changes: 1 to 4 entries made anew or deleted. */
static void pmodel_step(struct pmodel *m, struct ids_image *img, unsigned long *seed)
{
	char key[32];
	size_t nchanges = 1 + rnd(seed) % 4;
	for (size_t c = 0; c < nchanges; c++) {
		size_t i = rnd(seed) % (PN + PG);
		/* groups are rarely deleted: most runs are patched */
		bool del = m->here[i] && rnd(seed) % (i >= PN ? 16 : 4) == 0;
		key_of(i, key, sizeof(key));
		if (del) {
			m->here[i] = false;
			assert_int_equal(ids_image_delete(img, key, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS), 1);
		} else if (i < PN || m->here[i] || rnd(seed) % 8 == 0) {
			pmodel_make(m, i, seed);
			pmodel_put(img, m, i);
		}
	}
}

static void test_patch_is_a_replay(void **state)
{
	(void)state;
	const char *env = getenv("IDS_TEST_SEED");
	unsigned long seed0 = env ? strtoul(env, NULL, 10) : 20261207UL, seed = seed0;
	print_message("test_patch_is_a_replay: seed %lu (IDS_TEST_SEED=%lu repeats it)\n", seed0, seed0);
	static struct pmodel m, saved;
	struct ids_image *img = NULL;
	struct ids_snapshot *kept = NULL;
	size_t patched = 0, refused = 0;
	memset(&m, 0, sizeof(m));
	assert_int_equal(ids_image_new(&img), 0);
	for (size_t i = 0; i < PN + PG; i++) {
		pmodel_make(&m, i, &seed);
		pmodel_put(img, &m, i);
	}
	ids_image_commit(img);
	free(image_text_keep(img, &kept));
	for (size_t step = 0; step < PSTEPS; step++) {
		bool fail_run = rnd(&seed) % 7 == 0;
		saved = m;
		pmodel_step(&m, img, &seed);
		if (fail_run) { /* rolled back: the kept snapshot is dropped */
			ids_image_rollback(img);
			m = saved;
			ids_snapshot_free(kept);
			free(image_text_keep(img, &kept));
			continue;
		}
		const char *why = NULL;
		int r = ids_snapshot_kept(kept) ? ids_snapshot_patch(kept, img, &why) : -EAGAIN;
		if (r == -EAGAIN) {
			refused++;
			ids_snapshot_free(kept);
			kept = NULL;
		} else {
			assert_int_equal(r, 0);
			patched++;
			char *got = canonical_text(kept), *want = image_text(img);
			if (strcmp(got, want))
				print_message("step %zu (seed %lu): the patched snapshot differs\n", step,
					      seed0);
			assert_same(got, want);
		}
		ids_image_commit(img);
		if (!kept)
			free(image_text_keep(img, &kept));
	}
	print_message("test_patch_is_a_replay: %zu runs patched, %zu replayed whole\n", patched, refused);
	/* the patch is what most runs take, not the fallback */
	assert_true(patched > refused * 2);
	ids_snapshot_free(kept);
	ids_image_free(img);
}

/* A kept snapshot made by a whole replay: its users' external ids (the
 * records' keys) and normalized DNs are the image's strings, not copies;
 * a DN spelled otherwise is copied normalized; the reference map the
 * snapshot keeps is filled to 3/4 (at 1/2 tier L's first patch doubled
 * it).  Then one user renamed, patched, committed: his old DN's reference
 * has a copy of its own, and the patched snapshot is a replay's. */
static void test_kept_lasting(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	struct ids_snapshot *kept = NULL;
	char key[32], dn[64];
	enum { N = 700 }; /* 700 DNs: 1,024 slots at 3/4, 2,048 at 1/2 */
	assert_int_equal(ids_image_new(&img), 0);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "k%04d", i);
		snprintf(dn, sizeof(dn), i ? UDN("u%d") : "UID=u%d,ou=people,dc=ex", i);
		image_put(img, key, &(const struct entry){.id = key, .name = key + 1, .dn = dn});
	}
	/* a group naming one of them by DN: DNs are a kind of reference kept */
	const struct entry g = {
	    .group = true, .id = "G", .name = "g", .dn = GDN("g"), .members = {UDN("u2")}};
	image_put(img, "kg", &g);
	ids_image_commit(img);
	free(image_text_keep(img, &kept));
	assert_int_equal(kept->nusers, N);
	struct ids_user *u0 = &kept->users[0], *u1 = &kept->users[1];
	char *d1 = NULL;
	assert_string_equal(u1->f[IDS_F_EXTERNAL_ID], "k0001");
	assert_string_equal(u0->f[IDS_F_DN], "uid=u0,ou=people,dc=ex");
	/* lent: the same bytes as a second replay's, not a copy of them */
	struct ids_snapshot *again = NULL;
	free(image_text_keep(img, &again));
	assert_ptr_equal(again->users[1].f[IDS_F_EXTERNAL_ID], u1->f[IDS_F_EXTERNAL_ID]);
	assert_ptr_equal(again->users[1].f[IDS_F_DN], u1->f[IDS_F_DN]);
	assert_ptr_not_equal(again->users[0].f[IDS_F_DN], u0->f[IDS_F_DN]); /* spelled otherwise */
	ids_snapshot_free(again);
	const struct ids_strmap *m = &kept->priv->keep->map[IDS_REF_DN];
	assert_int_equal(m->len, N + 1);
	assert_true(m->cap < 2 * m->len);
	/* u1 renamed: his old DN leaves the image at commit */
	d1 = strdup(u1->f[IDS_F_DN]);
	const char *old_dn = u1->f[IDS_F_DN];
	image_put(img, "k0001",
		  &(const struct entry){.id = "k0001", .name = "0001", .dn = "uid=renamed,dc=ex"});
	const char *why = NULL;
	assert_int_equal(ids_snapshot_patch(kept, img, &why), 0);
	uint32_t v;
	assert_true(ids_strmap_get(m, d1, &v));
	assert_ptr_not_equal(kept->priv->keep->refs[v].s, old_dn);
	ids_image_commit(img);
	assert_string_equal(kept->priv->keep->refs[v].s, d1);
	assert_same(canonical_text(kept), image_text(img));
	free(d1);
	ids_snapshot_free(kept);
	ids_image_free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_replay_is_a_full_read),
	    cmocka_unit_test(test_patch_is_a_replay),
	    cmocka_unit_test(test_kept_lasting),
	    cmocka_unit_test(test_upsert_replaces),
	    cmocka_unit_test(test_group_change_reaches_nested_members),
	    cmocka_unit_test(test_delete_by_key),
	    cmocka_unit_test(test_present_phase),
	    cmocka_unit_test(test_rollback),
	    cmocka_unit_test(test_kind_change_and_misuse),
	    cmocka_unit_test(test_dn_and_groups_naming),
	    cmocka_unit_test(test_groups_naming_random),
	    cmocka_unit_test(test_group_edit),
	    cmocka_unit_test(test_id_members),
	    cmocka_unit_test(test_member_edits),
	    cmocka_unit_test(test_storage),
	    cmocka_unit_test(test_defer),
	    cmocka_unit_test(test_changed),
	    cmocka_unit_test(test_interned_memory),
	    cmocka_unit_test(test_interned_survive),
	    cmocka_unit_test(test_turnover),
	    cmocka_unit_test(test_changed_big),
	    cmocka_unit_test(test_random_changes),
	};
	return cmocka_run_group_tests_name("core: image", tests, NULL, NULL);
}
