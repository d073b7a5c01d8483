/* test_daemon_hold.c — what `idsyncd approve` compares (daemon/hold.c):
 * a plan's digest is over its changes, not over why it was held, and the
 * difference of two plan texts is the lines only one side has. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids/hold.h"

static void test_digest(void **state)
{
	(void)state;
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_DEACTIVATE,
	     .id = 7,
	     .external_id = "e-a",
	     .username = "a",
	     .reason = "deleted_in_source"},
	};
	struct ids_plan p = {.connector = "corp", .users = users, .nusers = 1, .counts = {.deactivated = 1}};
	struct ids_buf t1 = {0}, t2 = {0}, t3 = {0};
	char d1[IDS_HOLD_DIGEST_LEN], d2[IDS_HOLD_DIGEST_LEN], d3[IDS_HOLD_DIGEST_LEN];

	assert_int_equal(ids_hold_digest(&p, &t1, d1), 0);
	assert_int_equal(strlen(d1), 64);
	/* sha256 of the text itself: the text is what a person reviewed */
	assert_string_equal(t1.p, "- user  a  deactivate (deleted_in_source)\n"
				  "summary corp: 0 create, 0 update, 1 deactivate, 0 reactivate, 0 grants "
				  "added, 0 removed, 0 conflicts\n");

	/* held by a threshold: the same changes, the same digest and text */
	p.verdict = IDS_VERDICT_THRESHOLD;
	p.verdict_why = "1 deactivations exceed safety.max_deactivations (0)";
	assert_int_equal(ids_hold_digest(&p, &t2, d2), 0);
	assert_string_equal(d1, d2);
	assert_string_equal(t1.p, t2.p);

	/* another reason for the same user is another plan */
	users[0].reason = "disabled_in_source";
	assert_int_equal(ids_hold_digest(&p, &t3, d3), 0);
	assert_string_not_equal(d1, d3);
	ids_buf_free(&t1);
	ids_buf_free(&t2);
	ids_buf_free(&t3);
}

static void test_diff(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	/* a line twice on one side and once on the other: one is left over */
	long n = ids_hold_diff("- user  a\n+ role  a  t  x\n+ role  a  t  x\nsummary 1\n",
			       "+ role  a  t  x\n- user  b\n- user  a\nsummary 2\n", &b);
	assert_int_equal(n, 4);
	assert_string_equal(b.p, "- + role  a  t  x\n"
				 "- summary 1\n"
				 "+ - user  b\n"
				 "+ summary 2\n");
	ids_buf_reset(&b);
	assert_int_equal(ids_hold_diff("same\n", "same\n", &b), 0);
	assert_true(b.len == 0);
	assert_int_equal(ids_hold_diff("", "new\n", &b), 1);
	assert_string_equal(b.p, "+ new\n");
	ids_buf_free(&b);
}

/* Tier M's worst held plan: 100k users deactivated with 7 grants each
 * (800k lines), against the same plan with one user fewer.  Prints the
 * time; fails only past 10 s, far above what a slow CI machine needs. */
static void test_diff_scale(void **state)
{
	(void)state;
	struct ids_buf a = {0}, b = {0}, out = {0};
	for (int u = 0; u < 100000; u++) {
		assert_true(ids_buf_printf(&a, "- user  u%06d  deactivate (deleted_in_source)\n", u) >= 0);
		if (u != 5000)
			assert_true(
			    ids_buf_printf(&b, "- user  u%06d  deactivate (deleted_in_source)\n", u) >= 0);
		for (int g = 0; g < 7; g++) {
			assert_true(ids_buf_printf(&a, "- chan  u%06d  support  ch%d\n", u, g) >= 0);
			if (u != 5000)
				assert_true(ids_buf_printf(&b, "- chan  u%06d  support  ch%d\n", u, g) >= 0);
		}
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long n = ids_hold_diff(a.p, b.p, &out);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("diff of two 800k-line plans (%zu bytes): %.2f s\n", a.len, s);
	assert_int_equal(n, 8);
	assert_true(s < 10);
	ids_buf_free(&a);
	ids_buf_free(&b);
	ids_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digest),
	    cmocka_unit_test(test_diff),
	    cmocka_unit_test(test_diff_scale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
