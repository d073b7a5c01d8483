/* test_core_scale.c — the shortcuts that make the core fast at a million
 * users must not change a single result:
 *
 *   - the plan's grants come out in print order (by username, external id,
 *     then tenant, kind, name), whatever order the users were diffed in,
 *     although the diff moves per-user runs instead of sorting grants;
 *   - a resync that changes nothing plans nothing, and a rename plans one
 *     update (the name indexes are built only when needed);
 *   - users whose rules come to the same grants share one desired array,
 *     users with other grants do not;
 *   - interned strings (pool, current state) are one pointer per value;
 *   - the arena's packed strings and the maps hold what was put in.
 *
 * Expected values are worked out from the definitions in plan.h and
 * rules.h, not read from the code's output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/plan.h"
#include "ids/rules.h"
#include "ids/snapshot.h"
#include "ids/util.h"

#define NU 60

/* ---------------- a hand-built diff input ---------------- */

struct fx {
	struct ids_user users[NU];
	struct ids_desired des[NU];
	struct ids_grant grants[NU][4];
	char ext[NU][16], name[NU][16];
	struct ids_snapshot s;
	struct ids_desired_set d;
	struct ids_current *c;
	struct ids_diff_opts o;
};

/* Usernames run backwards to the external ids (u059 has id e000), so
 * that the diff's order (snapshot order: by external id) and the print
 * order (by username) differ everywhere. */
static void fx_init(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	f->s.users = f->users;
	f->d.users = f->des;
	f->o = (struct ids_diff_opts){.connector = "corp", .idp = "ldap"};
	assert_int_equal(ids_current_new(&f->c), 0);
	assert_int_equal(ids_current_add_tenant(f->c, "alpha"), 0);
	assert_int_equal(ids_current_add_tenant(f->c, "beta"), 0);
	for (int i = 0; i < NU; i++) {
		snprintf(f->ext[i], sizeof(f->ext[i]), "e%03d", i);
		snprintf(f->name[i], sizeof(f->name[i]), "u%03d", NU - 1 - i);
		f->users[i].f[IDS_F_EXTERNAL_ID] = f->ext[i];
		f->users[i].f[IDS_F_USERNAME] = f->name[i];
		f->des[i].in_scope = true;
		f->des[i].grants = f->grants[i];
		/* beta before alpha, to be put right by the merge order */
		f->grants[i][f->des[i].ngrants++] =
		    (struct ids_grant){IDS_GRANT_ROLE, "alpha", "operator", 0, 0};
		f->grants[i][f->des[i].ngrants++] =
		    (struct ids_grant){IDS_GRANT_CHANNEL, "alpha", "webchat", 0, 0};
		if (i % 3 == 0)
			f->grants[i][f->des[i].ngrants++] =
			    (struct ids_grant){IDS_GRANT_SLOT, "beta", "live", 2, 0};
	}
	f->s.nusers = f->d.nusers = NU;
}

/* A managed row for user i, with id 1000 + i. */
static void fx_row(struct fx *f, int i)
{
	struct ids_cur_user u = {.id = 1000 + i,
				 .source = "corp",
				 .external_id = f->ext[i],
				 .username = f->name[i],
				 .auth_method = "sso",
				 .idp = "ldap",
				 .active = true};
	assert_int_equal(ids_current_add_user(f->c, &u), 0);
}

static void fx_grant(struct fx *f, int i, enum ids_grant_kind k, const char *tenant, const char *name,
		     int slots)
{
	struct ids_cur_grant g = {
	    .user_id = 1000 + i, .kind = k, .tenant = tenant, .name = name, .slots = slots};
	assert_int_equal(ids_current_add_grant(f->c, &g), 0);
}

/* The print order of plan.h, written out independently. */
static int print_cmp(const struct ids_plan_grant *a, const struct ids_plan_grant *b)
{
	int r = strcmp(a->username, b->username);
	if (!r)
		r = strcmp(a->external_id, b->external_id);
	if (!r)
		r = strcmp(a->tenant, b->tenant);
	if (!r && a->kind != b->kind)
		r = a->kind < b->kind ? -1 : 1;
	if (!r)
		r = strcmp(a->name, b->name);
	return r;
}

static void test_initial_plan_in_print_order(void **state)
{
	(void)state;
	struct fx *f = calloc(1, sizeof(*f));
	struct ids_plan *p = NULL;
	fx_init(f);
	assert_int_equal(ids_diff_compute(&f->s, &f->d, f->c, &f->o, &p), 0);
	/* 60 users x 2 grants, and every third one a slot: 140 adds */
	assert_int_equal(p->ngrants, 140);
	assert_int_equal(p->counts.created, NU);
	for (size_t i = 1; i < p->ngrants; i++)
		assert_true(print_cmp(&p->grants[i - 1], &p->grants[i]) < 0);
	/* the first user in print order is u000 (external id e059, i = 59:
	 * no slot), then u001 (i = 58: none either), then u002 (i = 57: its
	 * slot in beta after its two alpha grants) */
	assert_string_equal(p->grants[0].username, "u000");
	assert_string_equal(p->grants[0].external_id, "e059");
	assert_string_equal(p->grants[0].tenant, "alpha");
	assert_int_equal(p->grants[0].kind, IDS_GRANT_ROLE);
	assert_int_equal(p->grants[1].kind, IDS_GRANT_CHANNEL);
	assert_string_equal(p->grants[2].username, "u001");
	assert_string_equal(p->grants[4].username, "u002");
	assert_string_equal(p->grants[6].username, "u002");
	assert_string_equal(p->grants[6].tenant, "beta");
	assert_string_equal(p->grants[6].name, "live");
	assert_int_equal(p->grants[6].slots, 2);
	/* equal tenants and names are one pointer: the plan borrows them */
	assert_ptr_equal(p->grants[0].tenant, p->grants[1].tenant);
	assert_ptr_equal(p->grants[0].tenant, p->grants[2].tenant);
	assert_ptr_equal(p->grants[0].name, p->grants[4].name);
	/* users too are in print order */
	for (size_t i = 1; i < p->nusers; i++)
		assert_true(strcmp(p->users[i - 1].username, p->users[i].username) < 0);
	ids_plan_free(p);
	ids_current_free(f->c);
	free(f);
}

/* Every user has rows; some grants to add, some to remove, one slot to
 * change, one rename: each user's changes in one run, all in print order. */
static void test_resync_changes_in_print_order(void **state)
{
	(void)state;
	struct fx *f = calloc(1, sizeof(*f));
	struct ids_plan *p = NULL;
	fx_init(f);
	size_t adds = 0, removes = 0, changes = 0;
	for (int i = 0; i < NU; i++) {
		fx_row(f, i);
		fx_grant(f, i, IDS_GRANT_ROLE, "alpha", "operator", 0);
		if (i % 2 == 0)
			fx_grant(f, i, IDS_GRANT_CHANNEL, "alpha", "webchat", 0);
		else
			adds++; /* webchat wanted, not there */
		if (i % 3 == 0)
			fx_grant(f, i, IDS_GRANT_SLOT, "beta", "live", i % 6 == 0 ? 2 : 1);
		if (i % 6 == 3)
			changes++; /* live 1 -> 2 */
		if (i % 5 == 0) {
			fx_grant(f, i, IDS_GRANT_CHANNEL, "beta", "email", 0); /* not wanted */
			removes++;
		}
	}
	f->users[7].f[IDS_F_USERNAME] = "renamed";
	assert_int_equal(ids_diff_compute(&f->s, &f->d, f->c, &f->o, &p), 0);
	assert_int_equal(p->ngrants, adds + removes + changes);
	assert_int_equal(p->counts.grants_added, (long)(adds + changes));
	assert_int_equal(p->counts.grants_removed, (long)removes);
	assert_int_equal(p->counts.updated, 1);
	assert_int_equal(p->nusers, 1);
	assert_string_equal(p->users[0].username, "renamed");
	assert_int_equal(p->users[0].changed, IDS_CH_USERNAME);
	for (size_t i = 1; i < p->ngrants; i++)
		assert_true(print_cmp(&p->grants[i - 1], &p->grants[i]) < 0);
	ids_plan_free(p);

	/* the same state wanted again, the rename undone: nothing at all */
	f->users[7].f[IDS_F_USERNAME] = f->name[7];
	ids_current_free(f->c);
	assert_int_equal(ids_current_new(&f->c), 0);
	assert_int_equal(ids_current_add_tenant(f->c, "alpha"), 0);
	assert_int_equal(ids_current_add_tenant(f->c, "beta"), 0);
	for (int i = 0; i < NU; i++) {
		fx_row(f, i);
		fx_grant(f, i, IDS_GRANT_CHANNEL, "alpha", "webchat", 0); /* any row order */
		fx_grant(f, i, IDS_GRANT_ROLE, "alpha", "operator", 0);
		if (i % 3 == 0)
			fx_grant(f, i, IDS_GRANT_SLOT, "beta", "live", 2);
	}
	assert_int_equal(ids_diff_compute(&f->s, &f->d, f->c, &f->o, &p), 0);
	assert_int_equal(p->nusers, 0);
	assert_int_equal(p->ngrants, 0);
	assert_int_equal(p->active_managed, NU);
	assert_int_equal(p->managed_grants, 2 * NU + NU / 3);
	ids_plan_free(p);
	ids_current_free(f->c);
	free(f);
}

/* A new user taking the name of a row that keeps it is a conflict even
 * though the row's user (unchanged) never claims its name. */
static void test_unchanged_name_still_taken(void **state)
{
	(void)state;
	struct fx *f = calloc(1, sizeof(*f));
	struct ids_plan *p = NULL;
	fx_init(f);
	for (int i = 0; i < NU - 1; i++) /* the last user (u000) is new */
		fx_row(f, i);
	f->users[NU - 1].f[IDS_F_USERNAME] = "U001"; /* u001's, in other case */
	assert_int_equal(ids_diff_compute(&f->s, &f->d, f->c, &f->o, &p), 0);
	assert_int_equal(p->counts.conflicts, 1);
	assert_int_equal(p->counts.created, 0);
	ids_plan_free(p);
	ids_current_free(f->c);
	free(f);
}

/* ---------------- shared desired arrays ---------------- */

static void add_user(struct ids_snapshot *s, const char *id, const char *group)
{
	assert_int_equal(ids_snapshot_user_begin(s), 0);
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_EXTERNAL_ID, id, strlen(id)), 0);
	assert_int_equal(ids_snapshot_user_set(s, IDS_F_USERNAME, id, strlen(id)), 0);
	assert_int_equal(ids_snapshot_user_end(s), 0);
	assert_int_equal(ids_snapshot_member(s, group, IDS_REF_ID, id, strlen(id)), 0);
}

static void add_group(struct ids_snapshot *s, const char *id)
{
	assert_int_equal(ids_snapshot_group_begin(s), 0);
	assert_int_equal(ids_snapshot_group_set(s, IDS_F_EXTERNAL_ID, id, strlen(id)), 0);
	assert_int_equal(ids_snapshot_group_set(s, IDS_F_USERNAME, id, strlen(id)), 0);
	assert_int_equal(ids_snapshot_group_end(s), 0);
}

static long user_index(const struct ids_snapshot *s, const char *id)
{
	for (size_t i = 0; i < s->nusers; i++)
		if (strcmp(s->users[i].f[IDS_F_EXTERNAL_ID], id) == 0)
			return (long)i;
	fail_msg("no user %s", id);
	return -1;
}

static void test_equal_grant_lists_shared(void **state)
{
	(void)state;
	struct ids_snapshot *s = NULL;
	struct ids_desired_set *d = NULL;
	struct ids_rule r[2];
	memset(r, 0, sizeof(r));
	r[0].name = "ops-a";
	r[0].tenant = "alpha";
	assert_int_equal(ids_strv_push(&r[0].member_of, "ga"), 0);
	assert_int_equal(ids_strv_push(&r[0].roles, "operator"), 0);
	assert_int_equal(ids_strv_push(&r[0].channels, "webchat"), 0);
	r[1].name = "ops-b";
	r[1].tenant = "beta";
	assert_int_equal(ids_strv_push(&r[1].member_of, "gb"), 0);
	assert_int_equal(ids_strv_push(&r[1].roles, "operator"), 0);

	assert_int_equal(ids_snapshot_new(&s), 0);
	add_group(s, "ga");
	add_group(s, "gb");
	add_user(s, "a1", "ga");
	add_user(s, "a2", "ga");
	add_user(s, "b1", "gb");
	add_user(s, "a3", "ga");
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(ids_rules_eval(r, 2, "corp", s, &d), 0);

	const struct ids_desired *a1 = &d->users[user_index(s, "a1")], *a2 = &d->users[user_index(s, "a2")];
	const struct ids_desired *a3 = &d->users[user_index(s, "a3")], *b1 = &d->users[user_index(s, "b1")];
	/* alpha: role operator, channel webchat (role sorts before channel) */
	assert_int_equal(a1->ngrants, 2);
	assert_int_equal(a1->grants[0].kind, IDS_GRANT_ROLE);
	assert_string_equal(a1->grants[0].tenant, "alpha");
	assert_int_equal(a1->grants[1].kind, IDS_GRANT_CHANNEL);
	assert_string_equal(a1->grants[1].name, "webchat");
	assert_ptr_equal(a1->grants, a2->grants);
	assert_ptr_equal(a1->grants, a3->grants);
	assert_int_equal(b1->ngrants, 1);
	assert_string_equal(b1->grants[0].tenant, "beta");
	assert_ptr_not_equal(b1->grants, a1->grants);
	/* the rules were the group lists' only reader: they can go */
	assert_int_equal(s->users[user_index(s, "a1")].ngroups, 1);
	ids_snapshot_drop_groups(s);
	for (size_t i = 0; i < s->nusers; i++) {
		assert_null(s->users[i].groups);
		assert_int_equal(s->users[i].ngroups, 0);
	}
	assert_string_equal(s->users[user_index(s, "b1")].f[IDS_F_USERNAME], "b1");

	ids_desired_set_free(d);
	ids_snapshot_free(s);
	for (int i = 0; i < 2; i++) {
		ids_strv_free(&r[i].member_of);
		ids_strv_free(&r[i].roles);
		ids_strv_free(&r[i].channels);
	}
}

/* ---------------- interning, arena, maps ---------------- */

static void test_pool_and_current_intern(void **state)
{
	(void)state;
	struct ids_strpool pool = {0};
	struct ids_arena a = {0};
	char buf1[] = "support-cz", buf2[] = "support-cz";
	const char *x = ids_strpool_intern(&pool, &a, buf1), *y = ids_strpool_intern(&pool, &a, buf2);
	assert_non_null(x);
	assert_ptr_equal(x, y);
	assert_ptr_not_equal(x, buf1); /* a copy */
	assert_string_equal(ids_strpool_intern(&pool, &a, "sales"), "sales");
	assert_ptr_not_equal(ids_strpool_intern(&pool, &a, "sales"), x);
	assert_null(ids_strpool_intern(&pool, &a, NULL));
	assert_int_equal(pool.n, 2);
	ids_strpool_free(&pool);
	ids_arena_free(&a);

	struct ids_current *c = NULL;
	assert_int_equal(ids_current_new(&c), 0);
	for (int i = 0; i < 100; i++) {
		char t[16], n[16];
		snprintf(t, sizeof(t), "t%d", i % 3);
		snprintf(n, sizeof(n), "role%d", i % 2);
		struct ids_cur_grant g = {.user_id = i, .kind = IDS_GRANT_ROLE, .tenant = t, .name = n};
		assert_int_equal(ids_current_add_grant(c, &g), 0);
	}
	assert_int_equal(c->ngrants, 100);
	assert_ptr_equal(c->grants[0].tenant, c->grants[3].tenant);
	assert_ptr_equal(c->grants[1].name, c->grants[99].name);
	assert_string_equal(c->grants[98].tenant, "t2");
	assert_string_equal(c->grants[98].name, "role0");
	ids_current_free(c);
}

/* Keys put and deleted at random, in maps small enough that runs of
 * full slots wrap around the end: after every step each key is found iff
 * it is in, with the value and the pointer it was put with.  A deletion
 * that left a hole in a run would lose the keys placed past it. */
static void test_map_delete(void **state)
{
	(void)state;
	static const int universe[] = {5, 40, 700};
	for (size_t u = 0; u < sizeof(universe) / sizeof(*universe); u++) {
		int n = universe[u];
		struct ids_strmap m = {0};
		char(*keys)[16] = calloc((size_t)n, sizeof(*keys));
		bool *in = calloc((size_t)n, sizeof(*in));
		size_t count = 0;
		unsigned long seed = 7;
		assert_non_null(keys);
		assert_non_null(in);
		for (int i = 0; i < n; i++)
			snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		for (int step = 0; step < 20000; step++) {
			seed = seed * 6364136223846793005UL + 1442695040888963407UL;
			int k = (int)((seed >> 33) % (unsigned long)n);
			if (in[k]) {
				assert_true(ids_strmap_del(&m, keys[k]));
				count--;
			} else {
				assert_false(ids_strmap_del(&m, keys[k]));
				assert_int_equal(ids_strmap_put(&m, keys[k], (uint32_t)k, NULL), 1);
				count++;
			}
			in[k] = !in[k];
			assert_int_equal(m.len, count);
			for (int i = 0; i < n && (step % 97 == 0 || i == 0); i++) {
				int j = step % 97 == 0 ? i : k;
				char probe[16];
				uint32_t v = UINT32_MAX;
				memcpy(probe, keys[j], sizeof(probe));
				assert_int_equal(ids_strmap_get(&m, probe, &v), in[j]);
				assert_true(ids_strmap_key(&m, probe) == (in[j] ? keys[j] : NULL));
				if (in[j])
					assert_int_equal(v, (uint32_t)j);
			}
		}
		ids_strmap_free(&m);
		free(keys);
		free(in);
	}
}

static void test_arena_strings_and_map(void **state)
{
	(void)state;
	struct ids_arena a = {0};
	struct ids_strmap m = {0};
	enum { N = 50000 };
	const char **keys = calloc(N, sizeof(*keys));
	assert_non_null(keys);
	for (int i = 0; i < N; i++) {
		char k[48];
		/* lengths 1..40: packed strings at every alignment */
		int len = snprintf(k, sizeof(k), "%.*s%d", i % 35, "uid=someone,ou=people,dc=example,dc", i);
		keys[i] = ids_arena_strndup(&a, k, (size_t)len);
		assert_non_null(keys[i]);
		assert_int_equal(ids_strmap_put(&m, keys[i], (uint32_t)i, NULL), 1);
	}
	/* an aligned allocation after packed strings is aligned and zeroed */
	uint64_t *z = ids_arena_alloc(&a, 5 * sizeof(*z));
	assert_non_null(z);
	assert_int_equal((uintptr_t)z % _Alignof(max_align_t), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(z[i], 0);
	for (int i = 0; i < N; i++) {
		char k[48];
		uint32_t v = 0;
		snprintf(k, sizeof(k), "%.*s%d", i % 35, "uid=someone,ou=people,dc=example,dc", i);
		assert_string_equal(keys[i], k);
		assert_true(ids_strmap_get(&m, k, &v));
		assert_int_equal(v, (uint32_t)i);
	}
	uint32_t old = 0;
	assert_int_equal(ids_strmap_put(&m, keys[7], 99, &old), 0);
	assert_int_equal(old, 7);
	assert_false(ids_strmap_get(&m, "not there", NULL));
	assert_int_equal(m.len, N);
	ids_strmap_free(&m);
	ids_arena_free(&a);
	free(keys);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_initial_plan_in_print_order),
	    cmocka_unit_test(test_resync_changes_in_print_order),
	    cmocka_unit_test(test_unchanged_name_still_taken),
	    cmocka_unit_test(test_equal_grant_lists_shared),
	    cmocka_unit_test(test_pool_and_current_intern),
	    cmocka_unit_test(test_arena_strings_and_map),
	    cmocka_unit_test(test_map_delete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
