/* test_daemon_metrics.c — the /metrics text (daemon/metrics.c): the whole
 * exposition of a hand-made history, written out by hand; label values
 * escaped; a held plan's counts never read as changes made; the licence
 * gauges (issue 20). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/metrics.h"

static const char expected[] =
    "# HELP idsyncd_runs_total Runs by connector and outcome (sync_run.status).\n"
    "# TYPE idsyncd_runs_total counter\n"
    "idsyncd_runs_total{connector=\"corp\",status=\"ok\"} 1\n"
    "idsyncd_runs_total{connector=\"corp\",status=\"aborted_threshold\"} 1\n"
    "# HELP idsyncd_run_duration_seconds Wall time of a run, from its start to its outcome.\n"
    "# TYPE idsyncd_run_duration_seconds histogram\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"0.1\"} 0\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"0.5\"} 1\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"1\"} 1\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"2.5\"} 1\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"5\"} 1\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"10\"} 2\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"30\"} 2\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"60\"} 2\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"300\"} 2\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"900\"} 2\n"
    "idsyncd_run_duration_seconds_bucket{connector=\"corp\",le=\"+Inf\"} 2\n"
    "idsyncd_run_duration_seconds_sum{connector=\"corp\"} 7.3\n"
    "idsyncd_run_duration_seconds_count{connector=\"corp\"} 2\n"
    "# HELP idsyncd_last_run_phase_seconds Seconds the connector's last run spent in each phase.\n"
    "# TYPE idsyncd_last_run_phase_seconds gauge\n"
    "idsyncd_last_run_phase_seconds{connector=\"corp\",phase=\"fetch\"} 6.5\n"
    "idsyncd_last_run_phase_seconds{connector=\"corp\",phase=\"resolve\"} 0.25\n"
    "idsyncd_last_run_phase_seconds{connector=\"corp\",phase=\"rules\"} 0\n"
    "idsyncd_last_run_phase_seconds{connector=\"corp\",phase=\"load\"} 0\n"
    "idsyncd_last_run_phase_seconds{connector=\"corp\",phase=\"diff\"} 0.125\n"
    "idsyncd_last_run_phase_seconds{connector=\"corp\",phase=\"apply\"} 0\n"
    "# HELP idsyncd_changes_total Changes applied by successful runs, by kind (held plans not included).\n"
    "# TYPE idsyncd_changes_total counter\n"
    "idsyncd_changes_total{connector=\"corp\",kind=\"created\"} 2\n"
    "idsyncd_changes_total{connector=\"corp\",kind=\"updated\"} 1\n"
    "idsyncd_changes_total{connector=\"corp\",kind=\"deactivated\"} 0\n"
    "idsyncd_changes_total{connector=\"corp\",kind=\"reactivated\"} 0\n"
    "idsyncd_changes_total{connector=\"corp\",kind=\"grants_added\"} 4\n"
    "idsyncd_changes_total{connector=\"corp\",kind=\"grants_removed\"} 0\n"
    "# HELP idsyncd_last_success_timestamp_seconds Unix time the connector's last successful run ended "
    "(absent: none since start).\n"
    "# TYPE idsyncd_last_success_timestamp_seconds gauge\n"
    "idsyncd_last_success_timestamp_seconds{connector=\"corp\"} 1700000000\n"
    "# HELP idsyncd_users_seen Users in scope the last successful run read from the source.\n"
    "# TYPE idsyncd_users_seen gauge\n"
    "idsyncd_users_seen{connector=\"corp\"} 5\n"
    "# HELP idsyncd_conflicts Identity conflicts the last successful run left unresolved.\n"
    "# TYPE idsyncd_conflicts gauge\n"
    "idsyncd_conflicts{connector=\"corp\"} 1\n"
    "# HELP idsyncd_held_plans 1 when the connector's last run was held by a safety threshold.\n"
    "# TYPE idsyncd_held_plans gauge\n"
    "idsyncd_held_plans{connector=\"corp\"} 1\n";

static void test_format(void **state)
{
	(void)state;
	struct ids_metrics *m = NULL;
	struct ids_buf out = {0};
	struct ids_sync_result ok = {
	    .exit_code = IDS_EXIT_OK,
	    .status = "ok",
	    .counts = {.users_seen = 5, .created = 2, .updated = 1, .grants_added = 4, .conflicts = 1},
	};
	/* held: its 9 deactivations were not made, and the last success stays */
	struct ids_sync_result held = {
	    .exit_code = IDS_EXIT_SAFETY,
	    .status = "aborted_threshold",
	    .counts = {.users_seen = 1, .deactivated = 9, .conflicts = 3},
	    .t = {.fetch = 6.5, .resolve = 0.25, .diff = 0.125},
	    .held_run = 42,
	};
	assert_int_equal(ids_metrics_new(&m), 0);
	/* nothing recorded: the HELP and TYPE lines alone */
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_non_null(strstr(out.p, "# TYPE idsyncd_runs_total counter\n# HELP idsyncd_run_duration"));
	ids_buf_reset(&out);

	assert_int_equal(ids_metrics_record(m, "corp", &ok, 0.3, 1700000000), 0);
	assert_int_equal(ids_metrics_record(m, "corp", &held, 7.0, 1700000600), 0);
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_string_equal(out.p, expected);
	ids_buf_free(&out);
	ids_metrics_free(m);
}

static void test_label_escaping(void **state)
{
	(void)state;
	struct ids_metrics *m = NULL;
	struct ids_buf out = {0};
	struct ids_sync_result r = {.exit_code = IDS_EXIT_FAILED, .status = "failed"};
	assert_int_equal(ids_metrics_label(&out, "a\\b\"c\nd"), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_string_equal(out.p, "a\\\\b\\\"c\\nd");
	ids_buf_reset(&out);

	assert_int_equal(ids_metrics_new(&m), 0);
	assert_int_equal(ids_metrics_record(m, "x\"y\\z\n", &r, 0.05, 1), 0);
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_non_null(
	    strstr(out.p, "idsyncd_runs_total{connector=\"x\\\"y\\\\z\\n\",status=\"failed\"} 1\n"));
	/* never succeeded: no timestamp (0 would read as stale since 1970) */
	assert_null(strstr(out.p, "idsyncd_last_success_timestamp_seconds{"));
	ids_buf_free(&out);
	ids_metrics_free(m);
}

/* The licence gauges: per company and role, labels escaped, and each
 * setting replaces the last (a licence a reload removed goes away). */
static void test_licences(void **state)
{
	(void)state;
	struct ids_metrics *m = NULL;
	struct ids_buf out = {0};
	const struct ids_licence_status two[] = {
	    {.company = "acme", .role = "phone", .limit = 50, .used = 50, .waiting = 10},
	    {.company = "a\"b", .role = "operator", .limit = 200, .used = 3, .waiting = 0},
	};
	assert_int_equal(ids_metrics_new(&m), 0);
	assert_int_equal(ids_metrics_licences(m, two, 2), 0);
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_non_null(strstr(out.p, "# HELP idsyncd_licence_seats_used Active users of the company holding "
				      "the licensed role.\n"
				      "# TYPE idsyncd_licence_seats_used gauge\n"
				      "idsyncd_licence_seats_used{company=\"acme\",role=\"phone\"} 50\n"
				      "idsyncd_licence_seats_used{company=\"a\\\"b\",role=\"operator\"} 3\n"
				      "# HELP idsyncd_licence_seats_limit"));
	assert_non_null(strstr(out.p,
			       "# TYPE idsyncd_licence_seats_limit gauge\n"
			       "idsyncd_licence_seats_limit{company=\"acme\",role=\"phone\"} 50\n"
			       "idsyncd_licence_seats_limit{company=\"a\\\"b\",role=\"operator\"} 200\n"));
	assert_non_null(strstr(out.p,
			       "# TYPE idsyncd_licence_seats_waiting gauge\n"
			       "idsyncd_licence_seats_waiting{company=\"acme\",role=\"phone\"} 10\n"
			       "idsyncd_licence_seats_waiting{company=\"a\\\"b\",role=\"operator\"} 0\n"));
	ids_buf_reset(&out);

	/* one licence left after a reload: the other's series are gone */
	assert_int_equal(ids_metrics_licences(m, two, 1), 0);
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_non_null(strstr(out.p, "idsyncd_licence_seats_waiting{company=\"acme\",role=\"phone\"} 10\n"));
	assert_null(strstr(out.p, "operator"));
	ids_buf_reset(&out);

	/* no licence: no series, not even their HELP */
	assert_int_equal(ids_metrics_licences(m, NULL, 0), 0);
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_null(strstr(out.p, "licence"));
	ids_buf_free(&out);
	ids_metrics_free(m);
}

/* issue 17 part 4's later series: targeted syncs, refused requests, feed
 * resets, users and grants managed — only the families that have a
 * series, counters adding up, gauges replaced. */
static const char expected_extra[] =
    "# HELP idsyncd_targeted_syncs_total Targeted syncs requested by NOTIFY idsyncd_sync_user, by outcome "
    "(the run's status, or coalesced, rate_limited, queue_full).\n"
    "# TYPE idsyncd_targeted_syncs_total counter\n"
    "idsyncd_targeted_syncs_total{connector=\"corp\",outcome=\"ok\"} 2\n"
    "idsyncd_targeted_syncs_total{connector=\"corp\",outcome=\"coalesced\"} 1\n"
    "idsyncd_targeted_syncs_total{connector=\"hr\",outcome=\"rate_limited\"} 1\n"
    "# HELP idsyncd_targeted_refused_total NOTIFY idsyncd_sync_user requests refused: malformed, "
    "unknown_connector.\n"
    "# TYPE idsyncd_targeted_refused_total counter\n"
    "idsyncd_targeted_refused_total{reason=\"malformed\"} 1\n"
    "# HELP idsyncd_users_managed Active users the connector manages, after its last ok run.\n"
    "# TYPE idsyncd_users_managed gauge\n"
    "idsyncd_users_managed{connector=\"corp\"} 90\n"
    "# HELP idsyncd_grants_managed Grant rows the connector manages (roles, channels, slot limits, operator "
    "groups), after its last ok run.\n"
    "# TYPE idsyncd_grants_managed gauge\n"
    "idsyncd_grants_managed{connector=\"corp\"} 700\n";

static void test_extra(void **state)
{
	(void)state;
	struct ids_metrics *m = NULL;
	struct ids_buf out = {0};
	assert_int_equal(ids_metrics_new(&m), 0);
	assert_int_equal(ids_metrics_targeted(m, "corp", "ok"), 0);
	assert_int_equal(ids_metrics_targeted(m, "corp", "coalesced"), 0);
	assert_int_equal(ids_metrics_targeted(m, "corp", "ok"), 0);
	assert_int_equal(ids_metrics_targeted(m, "hr", "rate_limited"), 0);
	assert_int_equal(ids_metrics_targeted_refused(m, "malformed"), 0);
	assert_int_equal(ids_metrics_managed(m, "corp", 100, 800), 0);
	assert_int_equal(ids_metrics_managed(m, "corp", 90, 700), 0);
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	const char *x = strstr(out.p, "# HELP idsyncd_targeted_syncs_total");
	assert_non_null(x);
	assert_string_equal(x, expected_extra);
	/* no reset recorded: no idsyncd_feed_resets_total family at all */
	assert_null(strstr(out.p, "idsyncd_feed_resets_total"));
	ids_buf_reset(&out);
	assert_int_equal(ids_metrics_feed_reset(m, "corp", "config_changed"), 0);
	assert_int_equal(ids_metrics_format(m, &out), 0);
	assert_int_equal(ids_buf_putc(&out, '\0'), 0);
	assert_non_null(
	    strstr(out.p, "# TYPE idsyncd_feed_resets_total counter\n"
			  "idsyncd_feed_resets_total{connector=\"corp\",reason=\"config_changed\"} 1\n"));
	ids_buf_free(&out);
	ids_metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_label_escaping),
	    cmocka_unit_test(test_licences),
	    cmocka_unit_test(test_extra),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
