/* test_daemon_progress.c — daemon/progress.c without a run: the number
 * and rate formats, the line's text per phase, and the tracker driven by
 * a fake clock and a hand-built snapshot, writing to a pipe (what a
 * terminal would get) or to a pseudo-terminal (the cut at its width).
 * The expected texts are written out by hand from issue 21's examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <pty.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "ids/progress.h"
#include "ids/snapshot.h"

static void test_count(void **state)
{
	char b[32];
	assert_string_equal(ids_progress_count(0, b), "0");
	assert_string_equal(ids_progress_count(7, b), "7");
	assert_string_equal(ids_progress_count(999, b), "999");
	assert_string_equal(ids_progress_count(1000, b), "1,000");
	assert_string_equal(ids_progress_count(412000, b), "412,000");
	assert_string_equal(ids_progress_count(1234567, b), "1,234,567");
	assert_string_equal(ids_progress_count(-1024, b), "-1,024");
	assert_string_equal(ids_progress_count(-999, b), "-999");
	assert_string_equal(ids_progress_count(LONG_MIN, b), "-9,223,372,036,854,775,808");
	assert_string_equal(ids_progress_count(LONG_MAX, b), "9,223,372,036,854,775,807");
}

static void test_rate(void **state)
{
	char b[64];
	/* under a second: no rate yet */
	assert_string_equal(ids_progress_rate(500, 0.5, "", b), "");
	assert_string_equal(ids_progress_rate(0, 0.0, "", b), "");
	assert_string_equal(ids_progress_rate(0, 5.0, "", b), "0.0/s");
	assert_string_equal(ids_progress_rate(35, 10.0, "", b), "3.5/s");
	assert_string_equal(ids_progress_rate(99, 10.0, "", b), "9.9/s");
	assert_string_equal(ids_progress_rate(100, 10.0, "", b), "10/s");
	/* 412,000 in 38 s: 10,842.1 a second, rounded */
	assert_string_equal(ids_progress_rate(412000, 38.0, "", b), "10,842/s");
	assert_string_equal(ids_progress_rate(1000000, 1.0, "", b), "1,000,000/s");
	assert_string_equal(ids_progress_rate(31, 10.0, " pages", b), "3.1 pages/s");
	assert_string_equal(ids_progress_rate(120, 10.0, " pages", b), "12 pages/s");
}

static const char *fmt(const struct ids_progress_view *v, bool rate, struct ids_buf *b)
{
	ids_buf_reset(b);
	assert_int_equal(ids_progress_format(v, rate, b), 0);
	return b->p;
}

static void test_format(void **state)
{
	struct ids_buf b = {0};
	struct ids_progress_view v = {.connector = "corp",
				      .phase = IDS_PHASE_READING_USERS,
				      .users = 412000,
				      .pages = 824,
				      .sub_done = 412000,
				      .sub_seconds = 38.0,
				      .elapsed = 38.2};
	/* the STATUS= example, word for word */
	assert_string_equal(fmt(&v, false, &b), "corp reading users: 412,000 (page 824), 38 s");
	assert_string_equal(fmt(&v, true, &b), "corp reading users: 412,000 (page 824), 10,842/s, 38 s");
	v.sub_seconds = 0.4; /* the first moments: no rate */
	assert_string_equal(fmt(&v, true, &b), "corp reading users: 412,000 (page 824), 38 s");

	v = (struct ids_progress_view){.connector = "corp",
				       .phase = IDS_PHASE_READING_GROUPS,
				       .users = 412000,
				       .groups = 1200,
				       .pages = 830,
				       .sub_done = 1200,
				       .sub_seconds = 4.0,
				       .elapsed = 42.0};
	assert_string_equal(fmt(&v, true, &b), "corp reading groups: 1,200 (page 830), 300/s, 42 s");
	/* a cloud source reading members: only pages come */
	v.sub_done = 0;
	v.sub_pages = 60;
	assert_string_equal(fmt(&v, true, &b), "corp reading groups: 1,200 (page 830), 15 pages/s, 42 s");
	v.sub_pages = 0; /* nothing at all: 0/s is what it is */
	assert_string_equal(fmt(&v, true, &b), "corp reading groups: 1,200 (page 830), 0.0/s, 42 s");
	v.phase = IDS_PHASE_RESOLVING;
	assert_string_equal(fmt(&v, true, &b), "corp resolving: 412,000 users, 1,200 groups, 42 s");
	v.users = 1;
	v.groups = 1;
	assert_string_equal(fmt(&v, true, &b), "corp resolving: 1 user, 1 group, 42 s");
	v.users = 0;
	assert_string_equal(fmt(&v, true, &b), "corp resolving: 0 users, 1 group, 42 s");
	v.users = 5000;
	v.phase = IDS_PHASE_RULES;
	assert_string_equal(fmt(&v, true, &b), "corp rules: 5,000 users, 42 s");
	v.phase = IDS_PHASE_DIFF;
	assert_string_equal(fmt(&v, true, &b), "corp diff: 5,000 users, 42 s");
	v.phase = IDS_PHASE_LOADING;
	assert_string_equal(fmt(&v, true, &b), "corp loading the current state, 42 s");
	v.phase = IDS_PHASE_APPLYING;
	v.elapsed = 158.6;
	assert_string_equal(fmt(&v, true, &b), "corp applying, 158 s");
	v.phase = IDS_PHASE_CONNECTING;
	v.elapsed = 0.1;
	assert_string_equal(fmt(&v, false, &b), "corp connecting, 0 s");
	ids_buf_free(&b);
}

/* ---- the tracker ---- */

static int64_t fake_now;
static int64_t fake_clock(void)
{
	return fake_now;
}
#define AT(sec) (fake_now = (int64_t)((sec)*1e6))

/* Everything the tracker wrote since the last call. */
static const char *drain(int fd, char *buf, size_t n)
{
	ssize_t r = read(fd, buf, n - 1);
	buf[r > 0 ? r : 0] = '\0';
	return buf;
}

static void add_users(struct ids_snapshot *s, int n)
{
	for (int i = 0; i < n; i++) {
		assert_int_equal(ids_snapshot_user_begin(s), 0);
		assert_int_equal(ids_snapshot_user_end(s), 0);
	}
}

struct fixture {
	int fds[2];
	struct ids_snapshot *snap;
	struct ids_progress *p;
	char out[4096];
};

static void fixture_new(struct fixture *f)
{
	assert_int_equal(pipe2(f->fds, O_NONBLOCK), 0);
	assert_int_equal(ids_snapshot_new(&f->snap), 0);
	assert_int_equal(ids_progress_new(f->fds[1], &f->p), 0);
	ids_progress_set_clock(f->p, fake_clock);
}

static void fixture_free(struct fixture *f)
{
	ids_progress_free(f->p);
	ids_snapshot_free(f->snap);
	close(f->fds[0]);
	close(f->fds[1]);
}

static void test_tracker_line(void **state)
{
	struct fixture f;
	fixture_new(&f);
	const int rd = f.fds[0];

	AT(100);
	ids_progress_start(f.p, "corp", f.snap);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "\rcorp connecting, 0 s\033[K");
	AT(100.1);
	assert_int_equal(ids_progress_tick(f.p), 0);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), ""); /* 4 a second at most */

	add_users(f.snap, 10);
	f.snap->pages = 1;
	AT(100.3);
	ids_progress_tick(f.p);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "\rcorp reading users: 10 (page 1), 0 s\033[K");
	AT(100.5);
	ids_progress_tick(f.p);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "");
	add_users(f.snap, 2990);
	f.snap->pages = 300;
	AT(102.3);
	ids_progress_tick(f.p);
	/* the rate counts from the first users seen: 2,990 in 2 s */
	assert_string_equal(drain(rd, f.out, sizeof(f.out)),
			    "\rcorp reading users: 3,000 (page 300), 1,495/s, 2 s\033[K");

	/* a log line erases the line first; the next tick draws it again */
	ids_progress_erase();
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "\r\033[K");
	ids_progress_erase();
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), ""); /* nothing shown: nothing to erase */

	/* groups come after users: a new phase with a rate of its own */
	assert_int_equal(ids_snapshot_group_begin(f.snap), 0);
	assert_int_equal(ids_snapshot_group_end(f.snap), 0);
	f.snap->pages = 301;
	AT(102.6);
	ids_progress_tick(f.p);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)),
			    "\rcorp reading groups: 1 (page 301), 2 s\033[K");

	/* a phase change is drawn at once, however recent the last draw */
	AT(102.61);
	ids_progress_phase(f.p, IDS_PHASE_RESOLVING);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)),
			    "\rcorp resolving: 3,000 users, 1 group, 2 s\033[K");
	AT(104);
	ids_progress_phase(f.p, IDS_PHASE_APPLYING);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "\rcorp applying, 4 s\033[K");

	/* the end: erased, and nothing more until the next run starts */
	ids_progress_end(f.p);
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "\r\033[K");
	AT(105);
	ids_progress_tick(f.p);
	ids_progress_phase(f.p, IDS_PHASE_DIFF);
	ids_progress_erase();
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "");

	/* the next connector names itself */
	ids_progress_start(f.p, "hr", NULL); /* its snapshot is not there yet */
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "\rhr connecting, 0 s\033[K");
	ids_progress_free(f.p); /* the line is erased */
	f.p = NULL;
	assert_string_equal(drain(rd, f.out, sizeof(f.out)), "\r\033[K");
	fixture_free(&f);
}

static void test_tracker_status(void **state)
{
	struct ids_snapshot *snap = NULL;
	struct ids_progress *p = NULL;
	assert_int_equal(ids_snapshot_new(&snap), 0);
	assert_int_equal(ids_progress_new(-1, &p), 0); /* the daemon's: no line */
	ids_progress_set_clock(p, fake_clock);

	AT(10);
	assert_null(ids_progress_status(p)); /* no run */
	ids_progress_start(p, "corp", snap);
	assert_int_equal(ids_progress_tick(p), 0); /* no line, no harm */
	AT(10.5);
	assert_null(ids_progress_status(p)); /* "running since" was said a moment ago */
	add_users(snap, 1000);
	snap->pages = 2;
	AT(11);
	char *t = ids_progress_status(p);
	assert_string_equal(t, "corp reading users: 1,000 (page 2), 1 s");
	free(t);
	AT(11.9);
	assert_null(ids_progress_status(p)); /* once a second at most */
	add_users(snap, 411000);
	snap->pages = 824;
	AT(48);
	t = ids_progress_status(p);
	assert_string_equal(t, "corp reading users: 412,000 (page 824), 38 s");
	free(t);
	ids_progress_phase(p, IDS_PHASE_APPLYING);
	AT(49.5);
	t = ids_progress_status(p);
	assert_string_equal(t, "corp applying, 39 s");
	free(t);
	ids_progress_end(p);
	AT(60);
	assert_null(ids_progress_status(p)); /* after the run: the result line is the daemon's */
	ids_progress_free(p);
	ids_snapshot_free(snap);
}

/* No tracker (a run without one): every call does nothing. */
static void test_null(void **state)
{
	ids_progress_start(NULL, "corp", NULL);
	ids_progress_phase(NULL, IDS_PHASE_DIFF);
	ids_progress_end(NULL);
	assert_int_equal(ids_progress_tick(NULL), 0);
	assert_null(ids_progress_status(NULL));
	ids_progress_free(NULL);
	ids_progress_erase();
}

/* On a terminal 24 columns wide the line keeps to 23 (it must never wrap:
 * a wrapped line cannot be erased with a carriage return), cut between
 * characters, not inside one. */
static void test_width(void **state)
{
	int master, slave;
	struct winsize ws = {.ws_row = 24, .ws_col = 24};
	struct termios raw;
	assert_int_equal(openpty(&master, &slave, NULL, NULL, &ws), 0);
	assert_int_equal(tcgetattr(slave, &raw), 0);
	cfmakeraw(&raw);
	assert_int_equal(tcsetattr(slave, TCSANOW, &raw), 0);
	assert_int_equal(fcntl(master, F_SETFL, O_NONBLOCK), 0);
	struct ids_progress *p = NULL;
	char out[256];
	assert_int_equal(ids_progress_new(slave, &p), 0);
	ids_progress_set_clock(p, fake_clock);
	AT(1);
	/* "é" is two bytes and one column: columns 22 and 23 are the two
	 * of them, 25 bytes in all */
	ids_progress_start(p, "abcdefghijklmnopqrstuéé", NULL);
	usleep(10000);
	assert_string_equal(drain(master, out, sizeof(out)), "\rabcdefghijklmnopqrstuéé\033[K");
	/* the 24th column would be an é: cut before it, not inside it */
	ids_progress_start(p, "abcdefghijklmnopqrstuvwé", NULL);
	usleep(10000);
	assert_string_equal(drain(master, out, sizeof(out)), "\rabcdefghijklmnopqrstuvw\033[K");
	ids_progress_free(p);
	close(slave);
	close(master);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_count),	   cmocka_unit_test(test_rate),
	    cmocka_unit_test(test_format),	   cmocka_unit_test(test_tracker_line),
	    cmocka_unit_test(test_tracker_status), cmocka_unit_test(test_null),
	    cmocka_unit_test(test_width),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
