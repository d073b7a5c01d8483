/* ctest_ldap_stall.c — the LDAP connector while the server stalls (issue
 * 12 point 1): whatever step it waits in, it calls the progress hook at
 * least every quarter second (the daemon pings its watchdog there), and
 * stops within a slice when the hook says so (SIGTERM, run_timeout); the
 * connector's own timeout still ends a wait that nobody cancels.
 *
 * The directory sits behind ctest_ldap_relay.h, stalled from the start
 * (StartTLS is never answered; on ldaps:// the TLS handshake never ends)
 * or from the hook once the users search has brought its first page (the
 * next page never comes).  The daemon's
 * side of the same (WATCHDOG=1, STOPPING=1, exit 0) is in
 * t_daemon_stall_steps.py; the ranged reads of AD in ctest_ad_range.c. */
#include "ctest_ldap_relay.h"

#define NUSERS 30
#define GAP 0.4 /* the 0.25 s slice, plus scheduling slack */

static char g_ou[256], g_people[DN_MAX], g_groups[DN_MAX];

static int setup(void **state)
{
	LDAP *ld = admin_open();
	char uid[16];
	make_ou(ld, E.base, "ctest-ldap-stall", g_ou, g_people, g_groups);
	for (int i = 0; i < NUSERS; i++) {
		snprintf(uid, sizeof(uid), "s%02d", i);
		add_person(ld, g_people, uid, "Stall", uid);
	}
	ldap_unbind_ext(ld, NULL, NULL);
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	LDAP *ld = admin_open();
	delete_tree(ld, g_ou);
	ldap_unbind_ext(ld, NULL, NULL);
	(void)state;
	return 0;
}

/* The users search has brought a page: the next one is to stall. */
static bool after_first_page(const struct ids_snapshot *s)
{
	return s && s->nusers >= 5;
}

/* One stalled pull through a relay to uri: cancel after `cancel` s (0:
 * let the connector's timeout of `timeout` s end it). */
static void stalled_pull_to(const char *uri, bool (*when)(const struct ids_snapshot *), double cancel,
			    int timeout, struct stall_hook *h, struct pulled *p)
{
	struct relay r;
	struct tcfg t;
	relay_start(&r, uri);
	tcfg_init(&t, r.uri, g_people, g_groups);
	t.cc.ldap.page_size = 5;
	t.cc.ldap.timeout = timeout;
	*h = (struct stall_hook){.relay = &r, .when = when, .cancel_after = cancel};
	pull_stalled(&t, h, p);
	h->relay = NULL;
	relay_stop(&r);
	tcfg_free(&t);
}

/* The same through the ldap:// URI (StartTLS) */
static void stalled_pull(bool (*when)(const struct ids_snapshot *), double cancel, int timeout,
			 struct stall_hook *h, struct pulled *p)
{
	stalled_pull_to(E.uri, when, cancel, timeout, h, p);
}

static void test_cancel_during_starttls(void **state)
{
	struct stall_hook h;
	struct pulled p;
	stalled_pull(NULL, 1.5, 20, &h, &p);
	assert_pull_failed(&p, IDS_E_CANCELLED, "stopped during StartTLS", "cancelled", NULL);
	assert_stall_handled(&h, GAP);
	pulled_free(&p);
	(void)state;
}

/* ldaps://: the handshake is one blocking libldap call, made on a helper
 * thread; the cancel shuts its socket down and the call returns. */
static void test_cancel_during_ldaps_handshake(void **state)
{
	struct stall_hook h;
	struct pulled p;
	stalled_pull_to(E.ldaps_uri, NULL, 1.5, 20, &h, &p);
	assert_pull_failed(&p, IDS_E_CANCELLED, "stopped during the TLS handshake", NULL);
	assert_stall_handled(&h, GAP);
	pulled_free(&p);
	(void)state;
}

/* The handshake overrunning the timeout: the socket is shut down at
 * timeout + 1 s (libldap has no timeout of its own there). */
static void test_ldaps_handshake_timeout(void **state)
{
	struct stall_hook h;
	struct pulled p;
	stalled_pull_to(E.ldaps_uri, NULL, 0, 2, &h, &p);
	assert_pull_failed(&p, IDS_E_TIMEOUT, "no answer within 2 s during the TLS handshake", NULL);
	assert_stall_handled(&h, GAP);
	if (h.ended - h.stalled_at < 2.9 || h.ended - h.stalled_at > 4.5)
		fail_msg("the handshake ended %.2f s into the stall, expected 3", h.ended - h.stalled_at);
	pulled_free(&p);
	(void)state;
}

static void test_cancel_between_pages(void **state)
{
	struct stall_hook h;
	struct pulled p;
	stalled_pull(after_first_page, 1.5, 20, &h, &p);
	assert_pull_failed(&p, IDS_E_CANCELLED, "stopped while waiting for a page", NULL);
	assert_stall_handled(&h, GAP);
	pulled_free(&p);
	(void)state;
}

/* Nobody cancels: the connector's timeout ends the wait, and the hook
 * was called all along. */
static void test_timeout_still_bounds(void **state)
{
	struct stall_hook h;
	struct pulled p;
	stalled_pull(after_first_page, 0, 2, &h, &p);
	assert_pull_failed(&p, IDS_E_TIMEOUT, "no answer within 2 s during the users search", NULL);
	assert_stall_handled(&h, GAP);
	if (h.ended - h.stalled_at < 1.9 || h.ended - h.stalled_at > 3.5)
		fail_msg("the 2 s timeout ended the stall after %.2f s", h.ended - h.stalled_at);
	pulled_free(&p);
	(void)state;
}

int main(void)
{
	int r = env_load();
	if (r)
		return r;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cancel_during_starttls),
	    cmocka_unit_test(test_cancel_during_ldaps_handshake),
	    cmocka_unit_test(test_ldaps_handshake_timeout),
	    cmocka_unit_test(test_cancel_between_pages),
	    cmocka_unit_test(test_timeout_still_bounds),
	};
	return cmocka_run_group_tests_name("ldap stall", tests, setup, teardown);
}
