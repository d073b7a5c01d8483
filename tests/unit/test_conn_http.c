/* test_conn_http.c — the pure parts of http.h (Retry-After, URL encoding)
 * and the request paths that need no server: non-HTTPS URLs refused
 * before any connection, a closed loopback port retried with backoff,
 * progress() cancelling a run, a kept handle refused under another or
 * a rewritten CA file.  Retry waits against a real server are
 * measured by the integration tests (t_entra_*.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ids/http.h"

/* Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date. */
#define EXAMPLE_T 784111777

static void test_retry_after_seconds(void **state)
{
	assert_int_equal(ids_http_retry_after("120", 0), 120);
	assert_int_equal(ids_http_retry_after("  7  ", 0), 7);
	assert_int_equal(ids_http_retry_after("1", 0), 1);
	assert_int_equal(ids_http_retry_after("300", 0), 300);
	/* clamped to 1..300 s (reliability.md case 10) */
	assert_int_equal(ids_http_retry_after("0", 0), 1);
	assert_int_equal(ids_http_retry_after("-5", 0), 1);
	assert_int_equal(ids_http_retry_after("301", 0), 300);
	assert_int_equal(ids_http_retry_after("99999999999999999999999", 0), 300);
	/* absent or unparsable: -1, the caller backs off instead */
	assert_int_equal(ids_http_retry_after(NULL, 0), -1);
	assert_int_equal(ids_http_retry_after("", 0), -1);
	assert_int_equal(ids_http_retry_after("soon", 0), -1);
	assert_int_equal(ids_http_retry_after("1.5", 0), -1);
	assert_int_equal(ids_http_retry_after("12abc", 0), -1);
	assert_int_equal(ids_http_retry_after("-", 0), -1);
}

static void test_retry_after_dates(void **state)
{
	/* the three forms of RFC 9110 5.6.7 name the same instant */
	assert_int_equal(ids_http_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_T - 30), 30);
	assert_int_equal(ids_http_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", EXAMPLE_T - 30), 30);
	assert_int_equal(ids_http_retry_after("Sun Nov  6 08:49:37 1994", EXAMPLE_T - 30), 30);
	/* the day after: 86400 s, clamped */
	assert_int_equal(ids_http_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", EXAMPLE_T), 300);
	/* a date in the past still waits the minimum */
	assert_int_equal(ids_http_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_T + 3600), 1);
	/* 2026-02-28T23:59:30Z + 45 s = 2026-03-01T00:00:15Z (no leap day in 2026) */
	assert_int_equal(ids_http_retry_after("Sun, 01 Mar 2026 00:00:15 GMT", 1772323170), 45);
	/* month names are English whatever the locale, case-insensitive */
	assert_int_equal(ids_http_retry_after("Sun, 06 NOV 1994 08:49:37 GMT", EXAMPLE_T - 10), 10);
	/* not a date at all: -1, the caller backs off instead */
	assert_int_equal(ids_http_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", EXAMPLE_T), -1);
	assert_int_equal(ids_http_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", EXAMPLE_T), -1);
	assert_int_equal(ids_http_retry_after("yesterday", EXAMPLE_T), -1);
	/* curl_getdate() is lenient (no "GMT", one-digit day): what it reads
	 * is still a wait inside 1..300 s, which is the guarantee */
	int w = ids_http_retry_after("Sun, 6 Nov 1994 08:49:37", EXAMPLE_T - 20);
	assert_int_equal(w, 20);
	w = ids_http_retry_after("Sun, 06 Nov 1994 08:49:37 +0100 junk", EXAMPLE_T);
	assert_true(w >= 1 && w <= 300);
}

static void test_urlencode(void **state)
{
	struct ids_buf b = {0};
	assert_int_equal(ids_http_urlencode(&b, "AZaz09-._~"), 0);
	assert_string_equal(b.p, "AZaz09-._~");
	ids_buf_reset(&b);
	/* RFC 3986: everything else as %XX, upper-case hex; UTF-8 bytewise */
	assert_int_equal(ids_http_urlencode(&b, "a b&c=d/e?$top+é"), 0);
	assert_string_equal(b.p, "a%20b%26c%3Dd%2Fe%3F%24top%2B%C3%A9");
	ids_buf_reset(&b);
	assert_int_equal(ids_http_urlencode(&b, ""), 0);
	assert_non_null(b.p);
	assert_string_equal(b.p, "");
	ids_buf_free(&b);
}

struct counter {
	int calls;
	int cancel_after; /* < 0: never */
	int ret;
};

static int count_progress(void *ud)
{
	struct counter *c = ud;
	c->calls++;
	return c->cancel_after >= 0 && c->calls > c->cancel_after ? c->ret : 0;
}

static const char *const no_headers[] = {NULL};

static void test_plain_http_refused(void **state)
{
	struct counter c = {0, -1, 0};
	struct ids_http_opts o = {.timeout = 2, .progress = count_progress, .ud = &c};
	struct ids_http *h = NULL;
	struct ids_error e = {0};
	struct ids_http_resp r = {0};
	assert_int_equal(ids_http_new(&o, &h, &e), 0);
	/* no retry: a scheme does not get better with time */
	assert_int_equal(ids_http_request(h, "GET", "http://127.0.0.1:1/users?$top=1&secret=x", no_headers,
					  NULL, 0, NULL, &r, &e),
			 IDS_E_PROTOCOL);
	assert_int_equal(c.calls, 1);
	assert_non_null(strstr(e.msg, "http://127.0.0.1:1/users"));
	/* the query never reaches a message */
	assert_null(strstr(e.msg, "secret"));
	assert_null(strstr(e.msg, "$top"));
	ids_error_clear(&e);
	ids_http_resp_clear(&r);
	ids_http_free(h);
}

/* A loopback port nobody listens on. */
static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd); /* bound, never listened: refused */
	return ntohs(a.sin_port);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_connect_refused_retries(void **state)
{
	struct counter c = {0, -1, 0};
	/* waits scaled to a tenth: 1 + 2 s of backoff become 0.1 + 0.2 s */
	struct ids_http_opts o = {
	    .timeout = 2, .max_retries = 2, .progress = count_progress, .ud = &c, .wait_scale = 0.1};
	struct ids_http *h = NULL;
	struct ids_error e = {0};
	struct ids_http_resp r = {0};
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", closed_port());
	assert_int_equal(ids_http_new(&o, &h, &e), 0);
	int64_t t0 = mono_ms();
	assert_int_equal(ids_http_request(h, "GET", url, NULL, NULL, 0, NULL, &r, &e), IDS_E_CONNECT);
	int64_t ms = mono_ms() - t0;
	/* 0.1 + 0.2 s at least, plus at most a quarter of jitter each */
	assert_true(ms >= 300);
	assert_true(ms < 2000);
	assert_non_null(strstr(e.msg, "after 2 retries"));
	/* progress before each of the 3 attempts, and during the waits */
	assert_true(c.calls >= 3 + 2);
	assert_int_equal(r.status, 0);
	ids_error_clear(&e);
	ids_http_free(h);
}

static void test_progress_cancels(void **state)
{
	/* the daemon's run_timeout comes back as IDS_E_TIMEOUT, kept as is */
	struct counter c = {0, 1, IDS_E_TIMEOUT};
	struct ids_http_opts o = {.timeout = 2, .progress = count_progress, .ud = &c};
	struct ids_http *h = NULL;
	struct ids_error e = {0};
	struct ids_http_resp r = {0};
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", closed_port());
	assert_int_equal(ids_http_new(&o, &h, &e), 0);
	int64_t t0 = mono_ms();
	/* the first attempt is refused, the wait's first tick cancels */
	assert_int_equal(ids_http_request(h, "GET", url, NULL, NULL, 0, NULL, &r, &e), IDS_E_TIMEOUT);
	assert_true(mono_ms() - t0 < 900);
	assert_non_null(strstr(e.msg, "run_timeout"));
	ids_error_clear(&e);

	/* anything else negative is a cancellation (SIGTERM) */
	c = (struct counter){0, 0, -1};
	assert_int_equal(ids_http_request(h, "GET", url, NULL, NULL, 0, NULL, &r, &e), IDS_E_CANCELLED);
	assert_int_equal(c.calls, 1);
	ids_error_clear(&e);
	ids_http_free(h);
}

static void test_deadline(void **state)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* a deadline 1.5 s away: the 1 s first backoff fits, the 2 s second does not */
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	struct ids_http_opts o = {.timeout = 2, .deadline_usec = now + 1500000};
	struct ids_http *h = NULL;
	struct ids_error e = {0};
	struct ids_http_resp r = {0};
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", closed_port());
	assert_int_equal(ids_http_new(&o, &h, &e), 0);
	int64_t t0 = mono_ms();
	assert_int_equal(ids_http_request(h, "GET", url, NULL, NULL, 0, NULL, &r, &e), IDS_E_CONNECT);
	int64_t ms = mono_ms() - t0;
	assert_true(ms >= 1000 && ms < 1600);
	assert_non_null(strstr(e.msg, "after 1 retry"));
	assert_non_null(strstr(e.msg, "deadline"));
	ids_error_clear(&e);
	ids_http_free(h);
}

/* Writes text to path through a new file renamed over it (a new inode),
 * as a package upgrade or an operator's cp + mv does. */
static void write_file(const char *path, const char *text)
{
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* A handle kept for the next run serves it only under the same trust: the
 * same tls_ca_file, not rewritten since (libcurl would keep the CA store
 * it parsed); the run's own options (timeout, progress) are taken. */
static void test_reuse(void **state)
{
	char dir[] = "/tmp/test_conn_http.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char ca[300], other[300];
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(other, sizeof(other), "%s/other.crt", dir);
	write_file(ca, "one\n");
	write_file(other, "two\n");
	struct counter c = {0, 0, IDS_E_CANCELLED};
	struct ids_http_opts o = {.tls_ca_file = ca, .timeout = 2};
	struct ids_http *h = NULL;
	struct ids_error e = {0};
	assert_int_equal(ids_http_new(&o, &h, &e), 0);
	/* the next run: same file, its own progress hook (cancels at once) */
	struct ids_http_opts next = {.tls_ca_file = ca, .timeout = 2, .progress = count_progress, .ud = &c};
	assert_true(ids_http_reuse(h, &next));
	struct ids_http_resp r = {0};
	assert_int_equal(
	    ids_http_request(h, "GET", "https://127.0.0.1:1/x", no_headers, NULL, 0, NULL, &r, &e),
	    IDS_E_CANCELLED);
	assert_int_equal(c.calls, 1);
	ids_error_clear(&e);
	/* another file, or none: no */
	struct ids_http_opts moved = {.tls_ca_file = other, .timeout = 2};
	assert_false(ids_http_reuse(h, &moved));
	struct ids_http_opts none = {.timeout = 2};
	assert_false(ids_http_reuse(h, &none));
	/* the same file rewritten: no, and still no after that */
	write_file(ca, "one, renewed\n");
	assert_false(ids_http_reuse(h, &next));
	assert_false(ids_http_reuse(h, &next));
	ids_http_free(h);
	/* without a CA file on either side: yes */
	assert_int_equal(ids_http_new(&none, &h, &e), 0);
	assert_true(ids_http_reuse(h, &none));
	ids_http_free(h);
	unlink(ca);
	unlink(other);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_retry_after_seconds),
	    cmocka_unit_test(test_retry_after_dates),
	    cmocka_unit_test(test_urlencode),
	    cmocka_unit_test(test_plain_http_refused),
	    cmocka_unit_test(test_connect_refused_retries),
	    cmocka_unit_test(test_progress_cancels),
	    cmocka_unit_test(test_deadline),
	    cmocka_unit_test(test_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
