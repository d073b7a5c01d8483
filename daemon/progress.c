/* progress.c — phase, counts and rate of the run in progress: the
 * terminal line of `sync`/`plan` and the daemon's STATUS= during a run
 * (progress.h). */
#include "ids/progress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ids/snapshot.h"

#define DRAW_EVERY_USEC 250000	  /* the terminal line: at most 4 redraws a second */
#define STATUS_EVERY_USEC 1000000 /* STATUS=: at most one a second */

const char *ids_phase_name(enum ids_phase ph)
{
	switch (ph) {
	case IDS_PHASE_IDLE: return "idle";
	case IDS_PHASE_CONNECTING: return "connecting";
	case IDS_PHASE_READING_USERS: return "reading users";
	case IDS_PHASE_READING_GROUPS: return "reading groups";
	case IDS_PHASE_RESOLVING: return "resolving";
	case IDS_PHASE_RULES: return "rules";
	case IDS_PHASE_LOADING: return "loading the current state";
	case IDS_PHASE_DIFF: return "diff";
	case IDS_PHASE_APPLYING: return "applying";
	}
	return "?";
}

char *ids_progress_count(long v, char buf[static 32])
{
	char digits[24];
	/* the magnitude as unsigned: -LONG_MIN does not fit a long */
	unsigned long m = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
	int n = snprintf(digits, sizeof(digits), "%lu", m);
	size_t w = 0;
	if (v < 0)
		buf[w++] = '-';
	for (int i = 0; i < n; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			buf[w++] = ',';
		buf[w++] = digits[i];
	}
	buf[w] = '\0';
	return buf;
}

char *ids_progress_rate(long done, double seconds, const char *unit, char buf[static 64])
{
	buf[0] = '\0';
	/* in the first second a handful of entries says nothing of the pace */
	if (seconds < 1.0 || done < 0)
		return buf;
	double r = (double)done / seconds;
	if (r < 10.0) {
		snprintf(buf, 64, "%.1f%.20s/s", r, unit);
	} else {
		char c[32];
		snprintf(buf, 64, "%s%.20s/s", ids_progress_count((long)(r + 0.5), c), unit);
	}
	return buf;
}

int ids_progress_format(const struct ids_progress_view *v, bool with_rate, struct ids_buf *out)
{
	char a[32], b[32], rate[64];
	int r = ids_buf_printf(out, "%s %s", v->connector ? v->connector : "?", ids_phase_name(v->phase));
	switch (v->phase) {
	case IDS_PHASE_READING_USERS:
	case IDS_PHASE_READING_GROUPS:
		ids_progress_count(v->phase == IDS_PHASE_READING_USERS ? v->users : v->groups, a);
		if (r >= 0)
			r = ids_buf_printf(out, ": %s (page %s)", a, ids_progress_count(v->pages, b));
		if (v->sub_done > 0 || v->sub_pages <= 0)
			ids_progress_rate(v->sub_done, v->sub_seconds, "", rate);
		else
			ids_progress_rate(v->sub_pages, v->sub_seconds, " pages", rate);
		if (r >= 0 && with_rate && rate[0])
			r = ids_buf_printf(out, ", %s", rate);
		break;
	case IDS_PHASE_RESOLVING:
		/* what the pull brought, while membership is worked out */
		if (r >= 0)
			r = ids_buf_printf(out, ": %s user%s, %s group%s", ids_progress_count(v->users, a),
					   v->users == 1 ? "" : "s", ids_progress_count(v->groups, b),
					   v->groups == 1 ? "" : "s");
		break;
	case IDS_PHASE_RULES:
	case IDS_PHASE_DIFF:
		if (r >= 0)
			r = ids_buf_printf(out, ": %s user%s", ids_progress_count(v->users, a),
					   v->users == 1 ? "" : "s");
		break;
	default: break;
	}
	/* whole seconds gone, like a stopwatch: 38.9 s is still "38 s" */
	if (r >= 0)
		r = ids_buf_printf(out, ", %ld s", (long)v->elapsed);
	return r < 0 ? r : 0;
}

struct ids_progress {
	int fd; /* the terminal line's; -1: none */
	int64_t (*clock)(void);
	const char *conn;		  /* borrowed, NULL between runs */
	const struct ids_snapshot *snap;  /* borrowed, NULL between runs */
	enum ids_phase phase;		  /* as marked; the pull's part is refined by view() */
	enum ids_phase reading;		  /* the reading phase the rate below counts */
	int64_t started, reading_started; /* monotonic usec */
	long reading_base, reading_pages; /* entries and pages read before it began */
	int64_t last_draw, last_status;
	bool shown; /* the line is on the terminal */
};

/* The tracker whose line is on the terminal: a log line erases it. */
static struct ids_progress *on_screen;

int ids_progress_new(int term_fd, struct ids_progress **ret)
{
	struct ids_progress *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fd = term_fd;
	p->clock = ids_mono_usec;
	*ret = p;
	return 0;
}

void ids_progress_free(struct ids_progress *p)
{
	if (!p)
		return;
	ids_progress_end(p);
	free(p);
}

void ids_progress_set_clock(struct ids_progress *p, int64_t (*clock)(void))
{
	p->clock = clock;
}

/* The phase the run is in now, with the pull's told apart, and the rate
 * window moved when the pull passed from users to groups. */
static void view(struct ids_progress *p, int64_t now, struct ids_progress_view *v)
{
	const struct ids_snapshot *s = p->snap;
	enum ids_phase ph = p->phase;
	long users = s ? (long)s->nusers : 0, groups = s ? (long)s->ngroups : 0;
	long pages = s ? (long)s->pages : 0;
	if (ph == IDS_PHASE_CONNECTING && (pages || users || groups))
		ph = groups ? IDS_PHASE_READING_GROUPS : IDS_PHASE_READING_USERS;
	long done = ph == IDS_PHASE_READING_GROUPS ? groups : users;
	if (ph != p->reading) {
		p->reading = ph;
		p->reading_started = now;
		p->reading_base = done;
		p->reading_pages = pages;
	}
	*v = (struct ids_progress_view){
	    .connector = p->conn,
	    .phase = ph,
	    .users = users,
	    .groups = groups,
	    .pages = pages,
	    .sub_done = done - p->reading_base,
	    .sub_pages = pages - p->reading_pages,
	    .sub_seconds = (double)(now - p->reading_started) / 1e6,
	    .elapsed = (double)(now - p->started) / 1e6,
	};
}

/* write(2) all of it; a terminal that went away is not the run's problem. */
static void put(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Bytes of s that fit in `cols` terminal columns, cut on a UTF-8 boundary:
 * a line that wraps could no longer be erased with a carriage return. */
static size_t fit(const char *s, size_t n, size_t cols)
{
	size_t w = 0, i = 0;
	for (; i < n; i++) {
		if (((unsigned char)s[i] & 0xC0) == 0x80)
			continue;
		if (++w > cols)
			break;
	}
	return i;
}

static void draw(struct ids_progress *p, int64_t now)
{
	struct ids_progress_view v;
	struct ids_buf b = {0};
	view(p, now, &v);
	if (ids_buf_puts(&b, "\r") < 0 || ids_progress_format(&v, true, &b) < 0) {
		ids_buf_free(&b);
		return;
	}
	struct winsize ws;
	size_t n = b.len;
	/* one column less than the width: the cursor after the last one */
	if (ioctl(p->fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
		n = 1 + fit(b.p + 1, b.len - 1, ws.ws_col - 1u);
	b.len = n;
	if (ids_buf_puts(&b, "\033[K") >= 0) {
		put(p->fd, b.p, b.len);
		p->shown = true;
		on_screen = p;
		p->last_draw = now;
	}
	ids_buf_free(&b);
}

void ids_progress_start(struct ids_progress *p, const char *connector, const struct ids_snapshot *snap)
{
	if (!p)
		return;
	p->conn = connector;
	p->snap = snap;
	p->phase = IDS_PHASE_CONNECTING;
	p->reading = IDS_PHASE_IDLE;
	p->started = p->clock();
	/* the daemon said "running since" just now: a second before more */
	p->last_status = p->started;
	if (p->fd >= 0)
		draw(p, p->started);
}

void ids_progress_phase(struct ids_progress *p, enum ids_phase ph)
{
	if (!p || !p->conn)
		return;
	p->phase = ph;
	/* a phase change is drawn at once, whatever the rate limit: the
	 * phases after the pull call no hook, so a line not drawn now could
	 * stay wrong for the whole of a long apply */
	if (p->fd >= 0)
		draw(p, p->clock());
}

void ids_progress_end(struct ids_progress *p)
{
	if (!p)
		return;
	if (p->shown)
		put(p->fd, "\r\033[K", 4);
	p->shown = false;
	if (on_screen == p)
		on_screen = NULL;
	p->conn = NULL;
	p->snap = NULL;
	p->phase = IDS_PHASE_IDLE;
}

int ids_progress_tick(void *ud)
{
	struct ids_progress *p = ud;
	if (!p || !p->conn || p->fd < 0)
		return 0;
	int64_t now = p->clock();
	if (now - p->last_draw >= DRAW_EVERY_USEC)
		draw(p, now);
	return 0;
}

char *ids_progress_status(struct ids_progress *p)
{
	if (!p || !p->conn)
		return NULL;
	int64_t now = p->clock();
	if (now - p->last_status < STATUS_EVERY_USEC)
		return NULL;
	struct ids_progress_view v;
	struct ids_buf b = {0};
	view(p, now, &v);
	if (ids_progress_format(&v, false, &b) < 0) {
		ids_buf_free(&b);
		return NULL;
	}
	p->last_status = now;
	return ids_buf_steal(&b);
}

void ids_progress_erase(void)
{
	if (!on_screen)
		return;
	if (on_screen->shown)
		put(on_screen->fd, "\r\033[K", 4);
	on_screen->shown = false;
	on_screen = NULL;
}
