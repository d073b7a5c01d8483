/* daemon.c — `idsyncd run`: the service loop of service.md.
 *
 * One thread, plus with sync.workers > 1 the workers' (workers.h): they
 * only run connectors; everything below stays on this thread, which
 * hands a due connector to a free worker instead of running it, renews
 * the leases of all that run, and pings the watchdog only while each of
 * them makes progress (docs/scaling.md, "Workers").  SIGTERM, SIGINT, SIGHUP and SIGUSR1 are blocked and read
 * from a signalfd, so a signal only sets a flag that the loop acts on.
 * The loop sleeps in exactly one place, sleep_until(): ppoll() on that fd
 * with the time to the next due connector or the next watchdog ping as
 * its timeout.  Connectors run one at a time, the earliest due first; each
 * has its own schedule: interval + random jitter after a run, exponential
 * backoff from retry_min to retry_max after a failure.  During a run the
 * connectors call progress() between pages, which pings the watchdog and
 * turns a pending SIGTERM into a cancelled (rolled back) run.
 *
 * Several daemons share the connectors through the queue in PostgreSQL
 * (connector_schedule, store/queue.c, docs/scaling.md): a due connector
 * runs only once this daemon has taken it (a lease, renewed from the
 * progress hook on a connection of its own while the run goes on, ended
 * by the release that sets its next time).  A daemon that finds it taken,
 * or not due yet by the queue's time, moves its own due time to what the
 * queue says: no run, no row.
 *
 * systemd hears READY=1 only once the database answers with a current
 * schema; STATUS= after every run, and during one what it is doing (at
 * most once a second, from the progress hook); RELOADING=1/READY=1 around a reload;
 * STOPPING=1 as soon as a stop is asked for.  Without NOTIFY_SOCKET the
 * sd_notify() calls do nothing. */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "ids/config.h"
#include "ids/log.h"
#include "ids/metrics.h"
#include "ids/oauth.h"
#include "ids/persist.h"
#include "ids/progress.h"
#include "ids/scim_server.h"
#include "ids/store.h"
#include "ids/sync.h"
#include "ids/usersync.h"
#include "ids/workers.h"

#define USEC 1000000LL
/* The longest error text quoted in STATUS= (the log has all of it). */
#define STATUS_ERR_MAX 120
/* Targeted syncs go before the schedule (someone is waiting for them),
 * but a connector overdue by this much goes first: a stream of requests
 * must not hold the full runs off for ever. */
#define STARVE_USEC (30 * USEC)

struct sched {
	char *name;
	int64_t due;	   /* monotonic usec of the next run */
	int backoff;	   /* seconds of the last retry delay, 0 after a success */
	enum ids_take how; /* when to take it from the queue: due, or earlier (a start, SIGUSR1, a push) */
	char *status;	   /* this connector's part of STATUS=; NULL before its first run */
	int64_t burst;	   /* monotonic usec of the first bell since the last run, 0: none */
	bool rang;	   /* its run under way was rung for (a push, a change heard) */
	int64_t renewed;   /* monotonic usec of its lease's last renewal, while it runs */
	int64_t t0;	   /* monotonic usec of the start of its run on a worker */
	bool busy;	   /* a worker runs it (sync.workers > 1) */
	/* something asked for a run while a worker ran it (a SCIM push,
	 * SIGUSR1): due again `again_usec` after that run ends, not after an
	 * interval */
	bool again;
	int64_t again_usec;
};

struct daemon {
	const char *path;
	struct ids_config *cfg;
	struct ids_store *st;  /* NULL while the database is away */
	struct ids_store *ctl; /* renews the running connectors' leases; NULL until needed */
	bool offered;	       /* this configuration's connectors are in the queue */
	struct sched *s;
	size_t ns;
	int sfd;		   /* the signalfd */
	uint64_t wd_usec;	   /* WatchdogSec, 0 = off */
	int64_t wd_last;	   /* monotonic usec of the last WATCHDOG=1 */
	char *note;		   /* why the last reload was refused, shown in STATUS= until one succeeds */
	struct ids_progress *prog; /* the run in progress, for STATUS=; NULL when out of memory */
	struct ids_feeds *feeds;   /* change feeds between runs; NULL when out of memory (full reads) */
	struct ids_oauth_tokens *tokens; /* cloud access tokens between runs; NULL: one per run */
	struct sched *running;		 /* the connector that runs now, else NULL */
	char instance[300];		 /* host:pid, for connector_schedule */
	int64_t hb_last;		 /* monotonic usec of the last heartbeat written */
	int fatal;			 /* exit code when the loop has to give up, else 0 */
	struct ids_scim_server *scim;	 /* the SCIM listener; NULL without a scim: block */
	/* what /metrics shows: kept across reloads (counters never go back);
	 * NULL when out of memory (no metrics, the runs go on) */
	struct ids_metrics *metrics;
	struct ids_metrics_server *msrv; /* NULL without a metrics: block */
	/* LISTEN idsyncd_sync_user and its queue; NULL when out of memory
	 * (no targeted syncs, the runs go on) */
	struct ids_usersync *us;
	/* the persistent searches of persist: true connectors (persist.c);
	 * NULL when out of memory (the interval's runs go on) */
	struct ids_persist *persist;
	bool serving;		    /* past the start: a reload restarts the listener */
	bool stop, run_all, reload; /* set by signals, acted on by the loop */
	/* sync.workers > 1: the runs' threads (NULL: runs on this thread);
	 * cancel is `stop` for them, read at their progress hooks */
	struct ids_workers *pool;
	atomic_bool cancel;
	struct sched *stalled; /* the worker's run the watchdog waits for, warned once */
};

/* Wall-clock time `delay_usec` from now as HH:MM:SS, local time: what an
 * operator reading `systemctl status` compares with the clock. */
static void hhmmss(int64_t delay_usec, char *buf, size_t n)
{
	time_t t = (time_t)((ids_real_usec() + delay_usec) / USEC);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, n, "%H:%M:%S", &tm);
}

/* A heap copy of s for one line of STATUS=: runs of control characters
 * and spaces (a newline would end the assignment) become one space, and
 * the text is cut at max bytes (on a UTF-8 boundary) with "..." appended. */
static char *status_text(const char *s, size_t max)
{
	size_t len = strlen(s), n = ids_utf8_cut(s, len, max);
	bool cut = n < len;
	char *d = malloc(n + 4);
	if (!d)
		return NULL;
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		bool blank = (unsigned char)s[i] <= 0x20 || s[i] == 0x7f;
		/* one space for a run of them ("\n\t" in libpq's messages) */
		if (!blank)
			d[w++] = s[i];
		else if (w > 0 && d[w - 1] != ' ')
			d[w++] = ' ';
	}
	memcpy(d + w, cut ? "..." : "", cut ? 4 : 1);
	return d;
}

/* WATCHDOG=1 at half of WatchdogSec.  Only ever called from the main
 * thread (the loop and the progress hook): a loop that really hangs stops
 * pinging, and systemd restarts it. */
static bool workers_stalled(struct daemon *d);
static void watchdog(struct daemon *d, bool force)
{
	int64_t now = ids_mono_usec();
	if (d->wd_usec && (force || now - d->wd_last >= (int64_t)d->wd_usec / 2) &&
	    (force || !workers_stalled(d))) {
		sd_notify(0, "WATCHDOG=1");
		d->wd_last = now;
	}
}

/* True while a worker's run has not called its progress hook for half
 * of WatchdogSec: the pings stop, as they stop when the run on this
 * thread wedges, and systemd restarts a daemon whose worker stays stuck
 * (the ping cadence is half of WatchdogSec: a run silent for about
 * WatchdogSec gets no ping in that time).  Said once per stall. */
static bool workers_stalled(struct daemon *d)
{
	int64_t silent = 0;
	struct sched *s = ids_workers_stalled(d->pool, (int64_t)d->wd_usec / 2, &silent);
	if (s && s != d->stalled)
		ids_log(IDS_LOG_WARNING, s->name, 0, NULL,
			"no progress for %.1f s: the watchdog is not pinged while this run is stuck",
			(double)silent / USEC);
	d->stalled = s;
	return s != NULL;
}

/* Acts on one signal: only flags, except that STOPPING=1 goes out at once
 * (systemd then knows that a slow exit is a rollback, not a hang). */
static void on_signal(struct daemon *d, uint32_t signo)
{
	switch (signo) {
	case SIGTERM:
	case SIGINT:
		if (!d->stop) {
			sd_notify(0, "STOPPING=1");
			ids_log(IDS_LOG_INFO, NULL, 0, NULL, "%s: stopping",
				signo == SIGTERM ? "SIGTERM" : "SIGINT");
		}
		d->stop = true;
		atomic_store(&d->cancel, true);
		break;
	case SIGUSR1: d->run_all = true; break;
	case SIGHUP: d->reload = true; break;
	}
}

static void drain_signals(struct daemon *d)
{
	struct signalfd_siginfo si;
	while (read(d->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		on_signal(d, si.ssi_signo);
}

/* The connectors' progress hook, between pages and batches: keeps the
 * watchdog fed during a long run and cancels the run on SIGTERM/SIGINT.
 * A reload or SIGUSR1 waits for the end of the run. */
static void notify_progress(struct daemon *d);
static void renew(struct daemon *d);
static void persist_tick(struct daemon *d);
static int interval_of(const struct ids_config *cfg, const struct ids_connector_cfg *cc);
static int progress(void *ud)
{
	struct daemon *d = ud;
	watchdog(d, false);
	renew(d);
	persist_tick(d);
	drain_signals(d);
	notify_progress(d);
	/* requests that arrive during a run are coalesced and rate limited
	 * as they arrive, not when the run ends */
	if (d->us)
		ids_usersync_drain(d->us, d->cfg, d->metrics);
	return d->stop ? IDS_E_CANCELLED : 0;
}

/* A bell for s: its run moves to `delay` seconds from now, so that a
 * burst (a client creating a thousand users, a script changing twenty
 * groups) ends in one run rather than one per change.  Each bell pushes
 * the run back, but at most to 10 x delay (or the interval, if shorter)
 * after the burst's first bell: a steady trickle must not hold the run
 * off for ever.  The interval's reconciliation stays the backstop. */
static void bell(struct daemon *d, struct sched *s, const struct ids_connector_cfg *cc, int delay)
{
	int64_t now = ids_mono_usec(), cap = 10 * (int64_t)delay * USEC;
	int64_t iv = (int64_t)interval_of(d->cfg, cc) * USEC;
	if (!s->burst)
		s->burst = now;
	if (iv < cap)
		cap = iv;
	int64_t due = now + (int64_t)delay * USEC;
	s->due = due < s->burst + cap ? due : s->burst + cap;
	s->how = IDS_TAKE_NOW;
	/* the run under way may have read the state before this change:
	 * one more after it */
	s->again = s->busy;
	s->again_usec = (int64_t)delay * USEC;
}

/* A bell's run found the connector's lock taken (a `sync` from the
 * command line, or a daemon of another configuration): what rang may be
 * newer than what that holder read, so the run is tried again after the
 * bell's delay (at least a second), not an interval later. */
static void bell_again(struct daemon *d, struct sched *s, const struct ids_connector_cfg *cc)
{
	int delay = cc->changes.persist ? cc->changes.debounce : cc->scim.apply_delay;
	bell(d, s, cc, delay > 0 ? delay : 1);
}

/* A SCIM client wrote to connector `name`: its run follows apply_delay
 * after this write (bell()). */
static void pushed(void *ud, const char *name)
{
	struct daemon *d = ud;
	const struct ids_connector_cfg *cc = ids_config_connector(d->cfg, name);
	for (size_t i = 0; cc && i < d->ns; i++)
		if (!strcmp(d->s[i].name, name))
			bell(d, &d->s[i], cc, cc->scim.apply_delay);
}

/* The persistent search of connector `name` heard a change: its run
 * follows `debounce` after it (bell()).  A connector waiting out a
 * failure's backoff keeps it: the retry comes on its own time. */
static void rung(void *ud, const char *name)
{
	struct daemon *d = ud;
	const struct ids_connector_cfg *cc = ids_config_connector(d->cfg, name);
	for (size_t i = 0; cc && i < d->ns; i++)
		if (!strcmp(d->s[i].name, name) && !d->s[i].backoff) {
			ids_log(IDS_LOG_DEBUG, name, 0, NULL, "persist: a change; run in %d s",
				cc->changes.debounce);
			bell(d, &d->s[i], cc, cc->changes.debounce);
		}
}

/* What persist.c borrows for one call. */
static struct ids_persist_hooks persist_hooks(struct daemon *d)
{
	return (struct ids_persist_hooks){
	    .cfg = d->cfg, .progress = progress, .ring = rung, .ud = d, .metrics = d->metrics};
}

/* From the progress hook: the persistent feeds' leases stay renewed
 * during a long run (their searches are read after it). */
static void persist_tick(struct daemon *d)
{
	struct ids_persist_hooks h = persist_hooks(d);
	ids_persist_tick(d->persist, &h);
}

/* The SCIM listener's answers, for /metrics (on the listener's thread:
 * ids_metrics_scim locks). */
static void scim_observed(void *ud, const char *connector, unsigned status, double seconds)
{
	(void)ids_metrics_scim(ud, connector, status, seconds);
}

/* The SCIM listener reports its answers to the registry when /metrics is
 * served; the registry outlives every listener (kept across reloads). */
static void scim_observe(struct daemon *d)
{
	if (d->scim && d->cfg->metrics.listen && !d->metrics)
		(void)ids_metrics_new(&d->metrics);
	if (d->scim && d->metrics)
		ids_scim_server_observe(d->scim, scim_observed, d->metrics);
}

/* Starts the SCIM listener of d->cfg (nothing without a scim: block).
 * A listener that cannot start is logged here: at the start the daemon
 * then fails, after a reload the runs go on without it. */
static int scim_start(struct daemon *d)
{
	struct ids_error e = {0};
	int r = ids_scim_server_start(d->cfg, &d->scim, &e);
	if (r < 0)
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "scim: %s", ids_error_text(&e));
	else if (d->scim)
		ids_log(IDS_LOG_INFO, NULL, 0, NULL, "scim: listening on %s", d->cfg->scim.listen);
	scim_observe(d);
	ids_error_clear(&e);
	return r;
}

/* Starts the metrics listener of d->cfg (nothing without a metrics:
 * block); logged here, like scim_start. */
static int metrics_start(struct daemon *d)
{
	struct ids_error e = {0};
	int r = 0;
	if (!d->cfg->metrics.listen)
		return 0;
	if (!d->metrics)
		(void)ids_metrics_new(&d->metrics);
	if (d->metrics &&
	    (r = ids_metrics_server_start(d->cfg->metrics.listen, d->metrics, &d->msrv, &e)) < 0)
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "metrics: %s", ids_error_text(&e));
	else if (d->msrv)
		ids_log(IDS_LOG_INFO, NULL, 0, NULL, "metrics: listening on %s", d->cfg->metrics.listen);
	ids_error_clear(&e);
	return r;
}

/* After a reload, before the old configuration goes: the SCIM listener
 * takes d->cfg in place (connections, rate budgets, pending pushes and a
 * still-good certificate kept), or is restarted where it must be. */
static void scim_follow(struct daemon *d)
{
	if (d->scim && ids_scim_server_reload(d->scim, d->cfg) == 0) {
		ids_log(IDS_LOG_INFO, NULL, 0, NULL, "scim: listening on %s (kept across the reload)",
			d->cfg->scim.listen);
		scim_observe(d);
		return;
	}
	ids_scim_server_stop(d->scim);
	d->scim = NULL;
	scim_start(d);
}

/* The listeners borrow the configuration: stopped before it goes (the
 * SCIM one too unless keep_scim: scim_follow moves it over). */
static void listeners_stop(struct daemon *d, bool keep_scim)
{
	if (!keep_scim) {
		ids_scim_server_stop(d->scim);
		d->scim = NULL;
	}
	ids_metrics_server_stop(d->msrv);
	d->msrv = NULL;
}

/* The loop's one place to sleep: until `until` (monotonic usec) or until
 * a signal asks for something, waking on the watchdog's cadence. */
static void sleep_until(struct daemon *d, int64_t until)
{
	for (;;) {
		watchdog(d, false);
		int64_t now = ids_mono_usec();
		/* a reload waits for the workers' runs, which borrow the
		 * configuration: their ends wake us (p[3]) */
		bool reload = d->reload && !ids_workers_busy(d->pool);
		if (now >= until || d->stop || d->run_all || reload || d->fatal)
			return;
		int64_t wait = until - now;
		if (d->wd_usec) {
			/* counted from the last ping, not from now: a signal
			 * that wakes us must not push the next ping back.  Past
			 * it only while a worker stalls (no ping): looked at
			 * again every tenth of a second */
			int64_t w = d->wd_last + (int64_t)d->wd_usec / 2 - now;
			wait = w < wait ? (w > 0 ? w : USEC / 10) : wait;
		}
		struct timespec ts = {(time_t)(wait / USEC), (long)(wait % USEC) * 1000};
		/* a negative fd is skipped by ppoll: no SCIM, no LISTEN, no
		 * workers, no persistent search */
		struct pollfd p[5] = {{d->sfd, POLLIN, 0},
				      {d->scim ? ids_scim_server_fd(d->scim) : -1, POLLIN, 0},
				      {ids_usersync_fd(d->us), POLLIN, 0},
				      {ids_workers_fd(d->pool), POLLIN, 0},
				      {ids_persist_fd(d->persist), POLLIN, 0}};
		int r = ppoll(p, 5, &ts, NULL);
		if (r > 0) {
			drain_signals(d);
			/* a worker's run ended: the loop records it */
			if (p[3].fd >= 0 && (p[3].revents & POLLIN))
				return;
			/* pushes move their connector's run: back to the loop */
			if (d->scim && (p[1].revents & POLLIN)) {
				ids_scim_server_drain(d->scim, pushed, d);
				return;
			}
			/* a NOTIFY (or the server going away): the loop runs it */
			if (p[2].fd >= 0 && p[2].revents) {
				ids_usersync_drain(d->us, d->cfg, d->metrics);
				return;
			}
			/* a persistent search heard a change (or dropped) */
			if (p[4].fd >= 0 && p[4].revents) {
				struct ids_persist_hooks h = persist_hooks(d);
				ids_persist_drain(d->persist, &h);
				return;
			}
		} else if (r < 0 && errno != EINTR) {
			/* cannot wait for signals any more: a restart is the cure */
			int err = errno;
			ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "ppoll: %s", strerror(err));
			sd_notifyf(0, "ERRNO=%d", err);
			d->fatal = IDS_EXIT_FAILED;
		}
	}
}

static void sched_free(struct sched *s, size_t n)
{
	for (size_t j = 0; s && j < n; j++) {
		free(s[j].name);
		free(s[j].status);
	}
	free(s);
}

static int interval_of(const struct ids_config *cfg, const struct ids_connector_cfg *cc)
{
	return cc->interval ? cc->interval : cfg->sync.interval;
}

/* The schedule for d->cfg's connectors.  A connector that survives a
 * reload keeps its place, except that a shorter new interval takes effect
 * now, and that one waiting out a backoff is retried at once: a reload is
 * what an operator does after fixing what failed (if it still fails, its
 * backoff goes on doubling).  A new connector is due at once. */
static int schedule_rebuild(struct daemon *d)
{
	size_t n = d->cfg->nconnectors;
	struct sched *ns = calloc(n ? n : 1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	int64_t now = ids_mono_usec();
	for (size_t i = 0; i < n; i++) {
		const struct ids_connector_cfg *cc = &d->cfg->connectors[i];
		ns[i].name = strdup(cc->name);
		if (!ns[i].name) {
			sched_free(ns, n);
			return -ENOMEM;
		}
		/* new: runs right after READY=1 (service.md), whatever the
		 * queue's time says, unless a live daemon ran it last */
		ns[i].due = now;
		ns[i].how = IDS_TAKE_START;
		for (size_t j = 0; j < d->ns; j++) {
			struct sched *old = &d->s[j];
			if (strcmp(old->name, ns[i].name) != 0)
				continue;
			int64_t sooner = now + (int64_t)interval_of(d->cfg, cc) * USEC;
			if (old->backoff)
				ns[i].due = now;
			else
				ns[i].due = sooner < old->due ? sooner : old->due;
			/* the queue still has the old time: the reload's wish
			 * goes before it */
			ns[i].how = ns[i].due < old->due || old->backoff ? IDS_TAKE_NOW : old->how;
			ns[i].backoff = old->backoff;
			ns[i].status = old->status; /* moved */
			old->status = NULL;
		}
	}
	sched_free(d->s, d->ns);
	d->s = ns;
	d->ns = n;
	d->offered = false;
	return 0;
}

/* STATUS=: the refused reload (if any), then each connector's last word. */
static void notify_status(struct daemon *d, const char *what)
{
	struct ids_buf b = {0};
	ids_buf_puts(&b, "STATUS=");
	if (what)
		ids_buf_printf(&b, "%s; ", what);
	if (d->note)
		ids_buf_printf(&b, "%s; ", d->note);
	if (d->ns == 0)
		ids_buf_puts(&b, "no connectors configured");
	for (size_t i = 0; i < d->ns; i++) {
		const struct sched *s = &d->s[i];
		if (s->status)
			ids_buf_printf(&b, "%s%s", i ? "; " : "", s->status);
		else
			ids_buf_printf(&b, "%s%s pending", i ? "; " : "", s->name);
	}
	ids_persist_status(d->persist, &b);
	if (b.p)
		sd_notify(0, b.p);
	ids_buf_free(&b);
}

static void set_status(struct sched *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_status(struct sched *s, const char *fmt, ...)
{
	char *t = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&t, fmt, ap) < 0)
		t = NULL;
	va_end(ap);
	/* out of memory: keep the old text rather than none */
	if (t) {
		free(s->status);
		s->status = t;
	}
}

/* STATUS= during a run: the running connector's part says what the run
 * does now (`corp reading users: 412,000 (page 824), 38 s`), at most once
 * a second (the tracker's pace). */
static void notify_progress(struct daemon *d)
{
	char *t = d->running ? ids_progress_status(d->prog) : NULL;
	bool changed = t != NULL;
	if (t) {
		free(d->running->status);
		d->running->status = t;
	}
	/* the workers' runs: what their trackers said last */
	for (size_t i = 0; d->pool && i < d->ns; i++)
		if (d->s[i].busy && (t = ids_workers_status(d->pool, &d->s[i]))) {
			free(d->s[i].status);
			d->s[i].status = t;
			changed = true;
		}
	if (changed)
		notify_status(d, NULL);
}

/* Connects (when not connected) and brings the schema up to date
 * (migrate: auto) or checks that it is (manual). */
static int store_ready(struct daemon *d, struct ids_error *e)
{
	if (d->st)
		return 0;
	struct ids_store *st = NULL;
	int r = ids_store_open(d->cfg, &st, e);
	/* security.allow_unverified_database: said at every (re)connect */
	if (r >= 0 && ids_store_warning(st))
		ids_log(IDS_LOG_WARNING, NULL, 0, NULL, "%s", ids_store_warning(st));
	if (r >= 0)
		r = ids_store_migrate(st, d->cfg->database.migrate_auto, NULL, NULL, e);
	if (r < 0) {
		ids_store_close(st);
		return r;
	}
	d->st = st;
	return 0;
}

/* Puts the connector back in the queue, due at s->due (at once after a
 * cancelled run: another daemon may take it), with its backoff: the
 * queue's next time is what every daemon and `status` go by.  A failure
 * is logged only (at debug level after a failed run, whose own error was
 * logged already): our lease runs out by itself, and our own next take
 * ignores it. */
static void record_next(struct daemon *d, const struct sched *s, bool run_failed)
{
	struct ids_error e = {0};
	int64_t in = s->due - ids_mono_usec();
	if (d->st &&
	    ids_store_queue_release(d->st, s->name, d->instance, in > 0 ? in : 0, s->backoff, &e) < 0)
		ids_log(run_failed ? IDS_LOG_DEBUG : IDS_LOG_WARNING, s->name, 0, NULL,
			"cannot record the next run: %s", ids_error_text(&e));
	ids_error_clear(&e);
}

/* This configuration's connectors, offered to the queue once per
 * configuration (a row that exists keeps its time). */
static int offer(struct daemon *d, struct ids_error *e)
{
	struct ids_strv mine = {0};
	int r = 0;
	if (d->offered)
		return 0;
	for (size_t i = 0; r >= 0 && i < d->ns; i++)
		r = ids_strv_push(&mine, d->s[i].name);
	if (r >= 0)
		r = ids_store_queue_offer(d->st, &mine, d->instance, e);
	ids_strv_free(&mine);
	d->offered = r >= 0;
	return r;
}

/* The shortest wait for a connector another daemon holds, so that a
 * lease being written at the moment we looked is not polled in a loop. */
#define TAKE_RETRY_USEC (USEC / 4)
/* how often a rung connector that another daemon runs is looked at */
#define BELL_RETRY_USEC USEC

/* Takes s's connector from the queue: 1 when it is ours to run; 0 when
 * another daemon runs it, or ran it and it is not due again by the
 * queue's time: s->due becomes the queue's, and nothing is recorded (no
 * run, no skipped row); < 0 when the database failed. */
static int take(struct daemon *d, struct sched *s, struct ids_error *e)
{
	struct ids_claim c = {0};
	char at[16];
	int r = offer(d, e);
	if (r >= 0)
		r = ids_store_queue_take(d->st, s->name, d->instance, d->cfg->sync.lease, s->how, &c, e);
	if (r > 0) {
		if (*c.owner && strcmp(c.owner, d->instance) != 0)
			ids_log(IDS_LOG_INFO, s->name, 0, NULL, "taking over from %s, whose lease ran out",
				c.owner);
		/* in step, the doubling goes on whichever daemon failed last;
		 * a start, SIGUSR1 or a reload is an operator's fresh try */
		if (s->how == IDS_TAKE_DUE)
			s->backoff = c.backoff;
		s->how = IDS_TAKE_DUE;
		s->renewed = ids_mono_usec();
	} else if (r == 0) {
		int64_t wait = c.wait_usec > TAKE_RETRY_USEC ? c.wait_usec : TAKE_RETRY_USEC;
		/* a bell rang while another daemon runs it: our run follows
		 * theirs (their lease's end, looked at each second), not the
		 * queue's next time */
		if (s->burst && c.owner && *c.owner && wait > BELL_RETRY_USEC)
			wait = BELL_RETRY_USEC;
		s->due = ids_mono_usec() + wait;
		hhmmss(wait, at, sizeof(at));
		if (c.owner && *c.owner) {
			/* it runs now: what an early take wanted — unless a bell
			 * rang (a push, a persistent search): that change may
			 * have come after the other's read, so ours still runs */
			s->how = s->burst ? IDS_TAKE_NOW : IDS_TAKE_DUE;
			set_status(s, "%s running on %s", s->name, c.owner);
		} else {
			set_status(s, "%s next run at %s", s->name, at);
		}
	}
	ids_claim_clear(&c);
	return r;
}

/* Extends s's lease, on a connection of its own (the run's may be inside
 * its transaction, where the renewal would show only at the commit).  A
 * lost lease only warns: the connector's advisory lock still keeps two
 * runs apart. */
static void renew_one(struct daemon *d, struct sched *s, int64_t now)
{
	struct ids_error e = {0};
	if (now - s->renewed < (int64_t)d->cfg->sync.lease * USEC / 3)
		return;
	s->renewed = now;
	int r = d->ctl ? 0 : ids_store_open(d->cfg, &d->ctl, &e);
	if (r >= 0)
		r = ids_store_queue_renew(d->ctl, s->name, d->instance, d->cfg->sync.lease, &e);
	if (r < 0) {
		ids_log(IDS_LOG_WARNING, s->name, 0, NULL, "cannot renew the lease: %s%s", ids_error_text(&e),
			r == IDS_E_LOCKED ? " (another daemon may take it over; the connector's lock keeps"
					    " the runs apart)"
					  : "");
		ids_store_close(d->ctl);
		d->ctl = NULL;
	}
	ids_error_clear(&e);
}

/* From the progress hook and the loop: every third of the lease, the
 * leases of what runs now (on this thread or on the workers). */
static void renew(struct daemon *d)
{
	int64_t now = ids_mono_usec();
	if (d->running)
		renew_one(d, d->running, now);
	for (size_t i = 0; d->pool && i < d->ns; i++)
		if (d->s[i].busy)
			renew_one(d, &d->s[i], now);
}

/* Tells `idsyncd status` that this instance is alive, and which connector
 * it syncs (NULL: idle).  Bookkeeping like record_next: logged at debug
 * only (a lost database is the next run's error to report).  The code of
 * a failure: the idle loop drops a dead connection, a run finds it. */
static int heartbeat(struct daemon *d, const char *running)
{
	struct ids_error e = {0};
	struct ids_buf b = {0};
	int r = 0;
	d->hb_last = ids_mono_usec();
	/* the workers' connectors, "a, b" (out of memory: shown idle) */
	for (size_t i = 0; !running && d->pool && i < d->ns; i++)
		if (d->s[i].busy)
			(void)ids_buf_printf(&b, "%s%s", b.len ? ", " : "", d->s[i].name);
	if (!running)
		running = b.p;
	if (d->st && (r = ids_store_heartbeat(d->st, d->instance, running, &e)) < 0)
		ids_log(IDS_LOG_DEBUG, NULL, 0, NULL, "cannot record the heartbeat: %s", ids_error_text(&e));
	ids_error_clear(&e);
	ids_buf_free(&b);
	return r;
}

/* After a run: its next due time and its part of STATUS=.  An ok run
 * and a locked tick keep the interval; a failure or a safety abort backs
 * off; a run that SIGTERM cancelled is not rescheduled at all. */
static void reschedule(struct daemon *d, struct sched *s, const struct ids_connector_cfg *cc,
		       const struct ids_sync_result *res)
{
	char at[16], retry[16];
	int64_t now = ids_mono_usec();
	hhmmss(0, at, sizeof(at));
	if (d->stop && res->exit_code != IDS_EXIT_OK) {
		/* SIGTERM cancelled it: nothing was written, nothing to retry */
		set_status(s, "%s stopped at %s (run cancelled, nothing written)", cc->name, at);
		return;
	}
	if (res->exit_code == IDS_EXIT_OK || res->exit_code == IDS_EXIT_LOCKED) {
		/* a locked tick is another instance's success: keep the rhythm,
		 * so that this one takes over within an interval if it dies */
		s->backoff = 0;
		s->due =
		    now +
		    ((int64_t)interval_of(d->cfg, cc) + ids_jitter((unsigned)d->cfg->sync.jitter)) * USEC;
		if (res->exit_code == IDS_EXIT_OK)
			set_status(s, "%s ok %ld users +%ld ~%ld -%ld at %s", cc->name,
				   res->counts.users_seen, res->counts.created,
				   res->counts.updated + res->counts.reactivated, res->counts.deactivated,
				   at);
		else
			set_status(s, "%s skipped (another instance is syncing it) at %s", cc->name, at);
		return;
	}
	/* failures and safety aborts retry with doubling backoff; a tenth of
	 * the jitter keeps instances that failed together from retrying
	 * together */
	s->backoff = s->backoff ? s->backoff * 2 : d->cfg->sync.retry_min;
	if (s->backoff > d->cfg->sync.retry_max || s->backoff <= 0)
		s->backoff = d->cfg->sync.retry_max;
	/* a refused password or a locked account does not heal in seconds:
	 * retrying fast only feeds lockout policies (case 6) */
	if (res->error_code == IDS_E_AUTH)
		s->backoff = d->cfg->sync.retry_max;
	int64_t delay = ((int64_t)s->backoff + ids_jitter((unsigned)d->cfg->sync.jitter / 10)) * USEC;
	s->due = now + delay;
	hhmmss(delay, retry, sizeof(retry));
	/* an aborted run's error starts with what was held ("held: 4
	 * deactivations over the limit of 3"): never counts that read as
	 * done.  STATUS= says "timeout" in so many words (reliability case 2) */
	char *err = status_text(res->error ? res->error : "", STATUS_ERR_MAX);
	if (res->held_run && err && strncmp(err, "held: ", 6) == 0) {
		/* "held: run 42 (612 deactivations over the limit of 500):
		 * idsyncd approve 42": what was held and the way to apply it */
		char *semi = strstr(err, "; ");
		if (semi)
			*semi = '\0';
		set_status(s, "%s held: run %lld (%s): idsyncd approve %lld; retry %s", cc->name,
			   (long long)res->held_run, err + 6, (long long)res->held_run, retry);
	} else {
		set_status(s, "%s %s (%s%s) retry %s", cc->name, res->status,
			   res->error_code == IDS_E_TIMEOUT ? "timeout: " : "", err ? err : "", retry);
	}
	free(err);
}

/* A scheduled run into /metrics: its result, a feed reset, and after an
 * ok run the users and grants the connector manages now (managed_count's
 * few rows: whoever changed them since, this run or another writer, the
 * gauges have it).  A failed count leaves the gauges as they were: logged
 * at debug level, the next run reports a lost database. */
static void run_metrics(struct daemon *d, const struct ids_connector_cfg *cc,
			const struct ids_sync_result *res, int64_t t0)
{
	if (!d->metrics)
		return;
	(void)ids_metrics_record(d->metrics, cc->name, res, (double)(ids_mono_usec() - t0) / USEC,
				 time(NULL));
	if (res->feed_reset)
		(void)ids_metrics_feed_reset(d->metrics, cc->name, res->feed_reset);
	struct ids_error e = {0};
	if (d->st) /* the seats as the database has them after the run */
		(void)ids_sync_licence_metrics(d->cfg, d->st, d->metrics, &e);
	ids_error_clear(&e);
	if (res->exit_code != IDS_EXIT_OK || !d->st)
		return;
	long users = 0, grants = 0;
	if (ids_store_managed_counts(d->st, cc->name, &users, &grants, &e) < 0)
		ids_log(IDS_LOG_DEBUG, cc->name, 0, NULL, "metrics: %s", ids_error_text(&e));
	else
		(void)ids_metrics_managed(d->metrics, cc->name, users, grants);
	ids_error_clear(&e);
}

/* A fixed mmap threshold.  By default glibc raises it to the size of
 * each big block freed (up to 32 MiB): after a run's first big free, its
 * arrays of megabytes come from the heaps, whose holes between the kept
 * image and snapshot no trim gives back.  At 1 MiB they are mapped, and
 * unmapped when freed. */
static void heap_setup(void)
{
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

/* Gives the heap a run freed back to the kernel.  A run allocates
 * hundreds of MiB (the snapshot, the desired and current state, the
 * diff) and frees them at its end, but glibc keeps freed memory in its
 * arenas — the main one and those of the threads a run starts (worker,
 * state loader, LDAP) — and returns only the free top of the main heap:
 * the daemon then holds its peak between runs, though between runs it
 * needs only what lives on (the feeds' images, the connections).
 * malloc_trim(0) releases the free pages of every arena (madvise), a few
 * milliseconds at tier M; run after every run, whoever ran it. */
static void heap_return(const char *connector, int64_t run_id)
{
	int64_t t = ids_mono_usec();
	int released = malloc_trim(0);
	ids_log(IDS_LOG_DEBUG, connector, run_id, NULL,
		"memory: freed heap returned to the system (%s) in %.3f s", released ? "some" : "none",
		(double)(ids_mono_usec() - t) / 1e6);
}

/* The end of s's run, on this thread: /metrics, the next time (the
 * queue's too), STATUS=.  took: the queue gave it to us (< 0: no database,
 * the run failed before it started).  *st: the connection the run used,
 * closed after a failure (NULL: a worker's, which closes its own). */
static void run_end(struct daemon *d, struct sched *s, const struct ids_connector_cfg *cc,
		    struct ids_sync_result *res, int took, int64_t t0, struct ids_store **st)
{
	ids_persist_ran(d->persist, cc->name);
	run_metrics(d, cc, res, t0);
	reschedule(d, s, cc, res);
	free(res->error);
	bool failed = res->exit_code != IDS_EXIT_OK && res->exit_code != IDS_EXIT_LOCKED;
	if (s->again && !d->stop) {
		int64_t due = ids_mono_usec() + s->again_usec;
		s->due = due < s->due ? due : s->due;
		s->how = IDS_TAKE_NOW;
	}
	s->again = false;
	if (s->rang && res->exit_code == IDS_EXIT_LOCKED)
		bell_again(d, s, cc);
	if (took > 0)
		record_next(d, s, failed);
	if (!d->stop)
		heartbeat(d, NULL);
	if (st && failed && res->exit_code != IDS_EXIT_SAFETY) {
		/* the connection may be what failed: start afresh next time */
		ids_store_close(*st);
		*st = NULL;
	}
	heap_return(cc->name, res->run_id);
	notify_status(d, NULL);
}

/* Hands s's run to a free worker (sync.workers > 1): 0 when one runs
 * it, < 0 when this thread must (no thread could start). */
static int run_on_worker(struct daemon *d, struct sched *s, const struct ids_connector_cfg *cc, int64_t t0)
{
	int r = ids_workers_start(d->pool, d->cfg, cc, s);
	if (r < 0) {
		ids_log(IDS_LOG_WARNING, cc->name, 0, NULL, "cannot start a worker (%s): running it here",
			strerror(-r));
		return r;
	}
	s->busy = true;
	s->t0 = t0;
	heartbeat(d, NULL);
	return 0;
}

/* The runs that the workers ended, recorded as run_one records its own. */
static void workers_reap(struct daemon *d)
{
	struct ids_sync_result res;
	struct sched *s;
	while (d->pool && (s = ids_workers_reap(d->pool, &res))) {
		s->busy = false;
		if (d->stalled == s)
			d->stalled = NULL;
		/* the configuration is the one the run started with: a
		 * reload waits for the workers */
		run_end(d, s, ids_config_connector(d->cfg, s->name), &res, 1, s->t0, NULL);
	}
}

static void run_one(struct daemon *d, struct sched *s)
{
	const struct ids_connector_cfg *cc = ids_config_connector(d->cfg, s->name);
	/* what a run that could not even start (no database) reports */
	struct ids_sync_result res = {.exit_code = IDS_EXIT_FAILED, .status = "failed"};
	struct ids_error e = {0};
	char at[16];
	int64_t t0 = ids_mono_usec();
	if (!cc) {
		/* cannot happen (the schedule is built from the config); never
		 * leave it due, which would spin the loop */
		s->due = ids_mono_usec() + 3600 * USEC;
		return;
	}

	int took = store_ready(d, &e) < 0 ? -1 : take(d, s, &e);
	if (took == 0) {
		notify_status(d, NULL);
		return;
	}
	hhmmss(0, at, sizeof(at));
	set_status(s, "%s running since %s", cc->name, at);
	notify_status(d, NULL);
	s->rang = s->burst != 0;
	s->burst = 0; /* the changes rung so far are this run's */
	if (took > 0 && d->pool && run_on_worker(d, s, cc, t0) == 0)
		return; /* workers_reap ends it */
	if (took < 0) {
		/* a tick without a database is a failed run (with the run's
		 * MESSAGE_ID=, for whoever watches those), but without an id:
		 * there is no sequence to take one from */
		const struct ids_log_fields f = {.connector = cc->name, .message_id = IDS_MSGID_RUN_FAILED};
		ids_log_event(IDS_LOG_ERROR, &f, "run failed, nothing written: database: %s",
			      ids_error_text(&e));
		res.error = strdup(ids_error_text(&e));
	} else {
		/* the daemon prints nothing: the log and STATUS= are its output
		 * (without a tracker, out of memory, STATUS= says "running since") */
		if (!d->prog)
			(void)ids_progress_new(-1, &d->prog);
		if (!d->feeds)
			(void)ids_feeds_new(&d->feeds);
		if (!d->tokens)
			(void)ids_oauth_tokens_new(&d->tokens);
		struct ids_sync_opts o = {
		    .progress = progress, .ud = d, .prog = d->prog, .feeds = d->feeds, .tokens = d->tokens};
		struct ids_buf out = {0};
		d->running = s;
		heartbeat(d, cc->name);
		ids_sync_connector(d->cfg, d->st, cc, &o, &out, &res);
		d->running = NULL;
		ids_buf_free(&out);
	}
	ids_error_clear(&e);
	run_end(d, s, cc, &res, took, t0, &d->st);
}

/* One attempt of run_user's sync into *res; false when the connection it
 * used turned out dead (closed here).  `fresh`: the connection was made
 * for this attempt. */
static bool user_attempt(struct daemon *d, const struct ids_connector_cfg *cc, const char *user,
			 struct ids_sync_result *res, bool *fresh)
{
	struct ids_error e = {0};
	*fresh = d->st == NULL;
	if (store_ready(d, &e) < 0) {
		const struct ids_log_fields f = {.connector = cc->name, .message_id = IDS_MSGID_RUN_FAILED};
		ids_log_event(IDS_LOG_ERROR, &f, "targeted sync failed, nothing written: database: %s",
			      ids_error_text(&e));
		ids_error_clear(&e);
		return true;
	}
	struct ids_sync_opts o = {.only_user = user, .progress = progress, .ud = d};
	struct ids_buf out = {0};
	ids_sync_connector(d->cfg, d->st, cc, &o, &out, res);
	ids_buf_free(&out);
	/* a person not found is no reason to drop the connection; a lost
	 * or broken one is */
	if (res->error_code != IDS_E_DB_LOST && res->error_code != IDS_E_DB)
		return true;
	ids_store_close(d->st);
	d->st = NULL;
	return res->error_code != IDS_E_DB_LOST;
}

/* A targeted sync asked for by NOTIFY idsyncd_sync_user: the path of
 * `sync --user` (ids_sync_connector with only_user), which waits for a
 * full run holding the connector's lock, and deactivates no one.  Its
 * sync_run row (read_kind 'user') and outcome line are the run's own.
 * An idle connection may have died with a PostgreSQL restart that the
 * LISTEN connection just saw: such a run is tried once more, on a new
 * connection, rather than failing the person who is signing in. */
static void run_user(struct daemon *d, const char *conn, const char *user)
{
	const struct ids_connector_cfg *cc = ids_config_connector(d->cfg, conn);
	struct ids_sync_result res = {.exit_code = IDS_EXIT_FAILED, .status = "failed"};
	bool fresh = false;
	if (!cc) {
		/* queued before a reload that removed the connector */
		ids_log(IDS_LOG_WARNING, conn, 0, NULL, "targeted sync dropped: no longer configured");
		return;
	}
	if (!user_attempt(d, cc, user, &res, &fresh) && !fresh && !d->stop) {
		free(res.error);
		res = (struct ids_sync_result){.exit_code = IDS_EXIT_FAILED, .status = "failed"};
		(void)user_attempt(d, cc, user, &res, &fresh);
	}
	if (d->metrics)
		(void)ids_metrics_targeted(d->metrics, cc->name, res.status ? res.status : "failed");
	free(res.error);
}

/* The workers of d->cfg's sync.workers (none for 1: the runs go on this
 * thread, as before workers existed); only while none runs.  Their
 * connections go with the old pool: the database settings may have
 * changed.  Out of memory: one run at a time, said in the log. */
static void pool_setup(struct daemon *d)
{
	ids_workers_free(d->pool);
	d->pool = NULL;
	int n = d->cfg->sync.workers;
	if (n <= 1)
		return;
	if (!d->feeds)
		(void)ids_feeds_new(&d->feeds);
	if (!d->tokens)
		(void)ids_oauth_tokens_new(&d->tokens);
	int r = ids_workers_new((size_t)n, d->feeds, d->tokens, &d->cancel, &d->pool);
	if (r < 0)
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "sync.workers: %s: running one connector at a time",
			strerror(-r));
}

/* SIGHUP: re-reads the configuration.  An invalid one is refused and the
 * running one kept (the reason goes to the log and stays in STATUS=).
 * `ready`: the daemon has said READY=1, so systemd gets RELOADING=1 and
 * READY=1 around it. */
static void reload(struct daemon *d, bool ready)
{
	struct ids_config *nc = NULL;
	struct ids_error e = {0};
	if (ready)
		sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)ids_mono_usec());
	ids_log(IDS_LOG_INFO, NULL, 0, NULL, "SIGHUP: reloading %s", d->path);
	if (ids_config_load(d->path, &nc, &e) < 0) {
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "reload refused, keeping the running configuration: %s",
			ids_error_text(&e));
		char *why = status_text(ids_error_text(&e), 2 * STATUS_ERR_MAX);
		free(d->note);
		d->note = NULL;
		if (why && asprintf(&d->note, "reload refused, old configuration kept: %s", why) < 0)
			d->note = NULL;
		free(why);
		ids_error_clear(&e);
		ids_config_free(nc);
		goto out;
	}
	struct ids_config *old = d->cfg;
	/* the listeners borrow the configuration: stopped before it goes,
	 * started again on the one that stays (the SCIM one moves over) */
	listeners_stop(d, true);
	d->cfg = nc;
	if (schedule_rebuild(d) < 0) {
		/* keep running what runs rather than half of the new */
		d->cfg = old;
		ids_config_free(nc);
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "reload refused: out of memory");
		if (d->serving) {
			if (!d->scim)
				scim_start(d);
			metrics_start(d);
		}
		goto out;
	}
	if (d->serving)
		scim_follow(d);
	ids_config_free(old);
	if (d->serving)
		metrics_start(d);
	ids_log_setup(d->cfg->log.level, d->cfg->log.target);
	/* the database settings may have changed */
	ids_store_close(d->st);
	d->st = NULL;
	ids_store_close(d->ctl);
	d->ctl = NULL;
	if (d->us)
		ids_usersync_close(d->us);
	if (d->persist && ids_persist_configure(d->persist, d->cfg) < 0)
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL,
			"persist: out of memory: changes wait for the interval");
	if (d->serving)
		pool_setup(d);
	free(d->note);
	d->note = NULL;
	ids_log(IDS_LOG_INFO, NULL, 0, NULL, "configuration reloaded: %zu connectors", d->ns);
out:
	if (ready)
		sd_notify(0, "READY=1");
	notify_status(d, NULL);
}

/* Start: connects and migrates (or checks the schema), retrying with
 * backoff while the database is away, with STATUS= saying so.  A SIGHUP
 * meanwhile loads the new configuration (a fixed conninfo is tried at
 * once), SIGUSR1 retries now.  0 when connected, 1 when told to stop, or
 * IDS_EXIT_CONFIG when the database settings themselves are invalid. */
static int wait_for_database(struct daemon *d)
{
	int delay = d->cfg->sync.retry_min > 0 ? d->cfg->sync.retry_min : 1;
	for (;;) {
		struct ids_error e = {0};
		int r = store_ready(d, &e);
		if (r >= 0)
			return 0;
		if (r == IDS_E_CONFIG) {
			ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "database: %s", ids_error_text(&e));
			sd_notifyf(0, "STATUS=invalid database configuration\nERRNO=%d", EINVAL);
			ids_error_clear(&e);
			return IDS_EXIT_CONFIG;
		}
		/* an old schema with migrate: manual (or a newer one) needs a
		 * person, not a retry storm */
		if (r == IDS_E_SCHEMA)
			delay = d->cfg->sync.retry_max;
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "database: %s (retrying in %d s)", ids_error_text(&e),
			delay);
		char *why = status_text(ids_error_text(&e), STATUS_ERR_MAX);
		sd_notifyf(0, "STATUS=%s%swaiting for the database: %s (retry in %d s)",
			   d->note ? d->note : "", d->note ? "; " : "", why ? why : "", delay);
		free(why);
		ids_error_clear(&e);

		sleep_until(d, ids_mono_usec() + (int64_t)delay * USEC);
		if (d->fatal)
			return d->fatal;
		if (d->stop)
			return 1;
		if (d->reload) {
			d->reload = false;
			reload(d, false);
			delay = d->cfg->sync.retry_min > 0 ? d->cfg->sync.retry_min : 1;
			continue;
		}
		if (d->run_all) {
			d->run_all = false;
			continue;
		}
		delay = delay > d->cfg->sync.retry_max / 2 ? d->cfg->sync.retry_max : delay * 2;
	}
}

/* The earliest due connector that no worker runs, NULL when there is none. */
static struct sched *next_due(struct daemon *d)
{
	struct sched *next = NULL;
	for (size_t i = 0; i < d->ns; i++)
		if (!d->s[i].busy && (!next || d->s[i].due < next->due))
			next = &d->s[i];
	return next;
}

/* Blocked before anything else: from here on a signal is a flag on the
 * signalfd, never an interrupted call (and never a handler running in the
 * middle of libpq or libldap).  SIGPIPE: a peer that closed a socket is an
 * error return, not death. */
static int signals_setup(struct daemon *d)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (d->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		int err = errno;
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "signalfd: %s", strerror(err));
		sd_notifyf(0, "STATUS=cannot set up signal handling\nERRNO=%d", err);
		return -err;
	}
	return 0;
}

/* At a stop: the workers' runs end cancelled at their next progress hook
 * (`cancel`), and are recorded as such; waited for here, pinging the
 * watchdog while they make progress. */
static void workers_stop(struct daemon *d)
{
	atomic_store(&d->cancel, true);
	while (ids_workers_busy(d->pool) > 0) {
		workers_reap(d);
		watchdog(d, false);
		struct pollfd p = {ids_workers_fd(d->pool), POLLIN, 0};
		if (ids_workers_busy(d->pool) > 0)
			(void)poll(&p, 1, 100);
	}
}

/* SIGUSR1: every connector now; one a worker runs, right after its run. */
static void run_all(struct daemon *d, int64_t now)
{
	ids_log(IDS_LOG_INFO, NULL, 0, NULL, "SIGUSR1: running every connector now");
	for (size_t i = 0; i < d->ns; i++) {
		d->s[i].due = now;
		d->s[i].how = IDS_TAKE_NOW;
		d->s[i].again = d->s[i].busy;
		d->s[i].again_usec = 0;
	}
	d->run_all = false;
}

/* The workers' turn of the loop: their ended runs recorded, the leases of
 * the others renewed, their progress into STATUS=.  The time the loop
 * may sleep until: a second while one runs (renewals, STATUS=). */
static int64_t workers_turn(struct daemon *d, int64_t until)
{
	if (!d->pool)
		return until;
	workers_reap(d);
	renew(d);
	notify_progress(d);
	int64_t soon = ids_mono_usec() + USEC;
	return ids_workers_busy(d->pool) && soon < until ? soon : until;
}

/* The service loop proper, once the database is there: a reload, a
 * SIGUSR1, the earliest due connector, or sleep — one thing per turn, so
 * that a signal that arrived during a run is seen right after it.  With
 * workers, a due connector goes to a free one and the loop goes on; a
 * reload waits until none runs (the runs borrow the configuration), and
 * nothing new starts meanwhile. */
static void serve(struct daemon *d)
{
	while (!d->stop && !d->fatal) {
		int64_t horizon = workers_turn(d, INT64_MAX);
		bool busy = ids_workers_busy(d->pool) > 0;
		if (d->reload && !busy) {
			d->reload = false;
			reload(d, true);
			continue;
		}
		int64_t now = ids_mono_usec();
		if (d->run_all)
			run_all(d, now);
		struct sched *next = d->reload ? NULL : next_due(d);
		const char *uc = NULL, *uu = NULL;
		if (d->us && !d->reload && !(next && next->due + STARVE_USEC <= now) &&
		    ids_usersync_next(d->us, &uc, &uu)) {
			run_user(d, uc, uu);
			ids_usersync_done(d->us, d->cfg, d->metrics);
			continue;
		}
		/* every worker busy: the next waits for one to end */
		if (next && d->pool && !ids_workers_free_slot(d->pool))
			next = NULL;
		/* the earliest due connector runs; the rest wait their turn */
		if (next && next->due <= now) {
			run_one(d, next);
			continue;
		}
		/* idle: a heartbeat every sync.heartbeat, a minute by default
		 * (connecting again if the database went away meanwhile) */
		int64_t beat = d->hb_last + d->cfg->sync.heartbeat * USEC;
		if (now >= beat) {
			struct ids_error e = {0};
			if (store_ready(d, &e) < 0) {
				d->hb_last = now;
			} else if (heartbeat(d, NULL) == IDS_E_DB_LOST) {
				/* connect afresh at the next beat or run */
				ids_store_close(d->st);
				d->st = NULL;
			}
			ids_error_clear(&e);
			continue;
		}
		/* the LISTEN connection, when it is away and its retry due */
		if (d->us)
			ids_usersync_connect(d->us, d->cfg);
		/* the persistent searches: leases, (re)connections */
		struct ids_persist_hooks ph = persist_hooks(d);
		ids_persist_service(d->persist, &ph);
		if (d->stop || d->fatal)
			continue;
		int64_t until = next ? next->due : now + 3600 * USEC;
		int64_t retry = ids_usersync_retry_at(d->us, d->cfg);
		until = retry && retry < until ? retry : until;
		retry = ids_persist_next(d->persist);
		until = retry && retry < until ? retry : until;
		until = horizon < until ? horizon : until;
		sleep_until(d, until < beat ? until : beat);
	}
	workers_stop(d);
}

/* A clean stop: `status` says at once that no daemon runs, and the next
 * daemon to start runs our connectors at once (a live daemon's would wait
 * for their time).  After a failed run the connection may be closed: one
 * is opened for this. */
static void heartbeat_end(struct daemon *d)
{
	struct ids_error e = {0};
	if ((d->st || store_ready(d, &e) >= 0) && ids_store_heartbeat_end(d->st, d->instance, &e) < 0)
		ids_log(IDS_LOG_DEBUG, NULL, 0, NULL, "cannot remove the heartbeat: %s", ids_error_text(&e));
	ids_error_clear(&e);
}

/* The start of the listeners, once the database is there: SCIM, metrics,
 * and the LISTEN of targeted syncs.  An operator who configured a
 * listener wants it, not a daemon that runs without it: a SCIM or metrics
 * listener that cannot start is a failed start (< 0).  The LISTEN is
 * retried like the database, so it never fails the start. */
static int serving_start(struct daemon *d)
{
	if (scim_start(d) < 0) {
		sd_notifyf(0, "STATUS=cannot start the SCIM listener\nERRNO=%d", EADDRINUSE);
		return -EADDRINUSE;
	}
	if (metrics_start(d) < 0) {
		sd_notifyf(0, "STATUS=cannot start the metrics listener\nERRNO=%d", EADDRINUSE);
		return -EADDRINUSE;
	}
	/* listening before READY=1: a login handler's NOTIFY may follow at once */
	if (ids_usersync_new(&d->us) == 0)
		ids_usersync_connect(d->us, d->cfg);
	/* the persistent searches open from the loop, after the start runs
	 * (which commit the cursors they start from) */
	if (ids_persist_new(d->instance, &d->persist) < 0 || ids_persist_configure(d->persist, d->cfg) < 0)
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL,
			"persist: out of memory: changes wait for the interval");
	d->serving = true;
	return 0;
}

int ids_daemon_run(const char *config_path)
{
	struct daemon d = {.path = config_path, .sfd = -1};
	struct ids_error e = {0};
	int code = IDS_EXIT_OK;

	heap_setup();
	if (ids_config_load(config_path, &d.cfg, &e) < 0) {
		fprintf(stderr, "%s\n", ids_error_text(&e));
		sd_notifyf(0, "STATUS=invalid configuration\nERRNO=%d", EINVAL);
		ids_error_clear(&e);
		return IDS_EXIT_CONFIG;
	}
	ids_log_setup(d.cfg->log.level, d.cfg->log.target);
	if (signals_setup(&d) < 0) {
		code = IDS_EXIT_FAILED;
		goto out;
	}
	if (sd_watchdog_enabled(0, &d.wd_usec) <= 0)
		d.wd_usec = 0;
	/* host:pid names this instance in connector_schedule, where `status`
	 * shows which of several instances runs a connector next */
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "localhost");
	snprintf(d.instance, sizeof(d.instance), "%s:%ld", host, (long)getpid());
	watchdog(&d, true);

	int r = wait_for_database(&d);
	if (r) {
		code = r == 1 ? IDS_EXIT_OK : r;
		goto out;
	}
	if (schedule_rebuild(&d) < 0) {
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "out of memory");
		sd_notifyf(0, "ERRNO=%d", ENOMEM);
		code = IDS_EXIT_FAILED;
		goto out;
	}
	if (serving_start(&d) < 0) {
		code = IDS_EXIT_FAILED;
		goto out;
	}
	pool_setup(&d);
	ids_log(IDS_LOG_INFO, NULL, 0, NULL, "idsyncd %s ready: %zu connectors, %d at once", IDSYNCD_VERSION,
		d.ns, d.pool ? d.cfg->sync.workers : 1);
	sd_notify(0, "READY=1");
	notify_status(&d, "ready");
	heartbeat(&d, NULL);
	serve(&d);
	code = d.fatal;
	/* the feeds go back before the heartbeat: the others take them at once */
	ids_persist_free(d.persist);
	d.persist = NULL;
	heartbeat_end(&d);
out:
	/* STOPPING=1 went out at the signal already; otherwise now, so that
	 * systemd reads the exit as intended rather than as a crash */
	if (!d.stop)
		sd_notify(0, "STOPPING=1");
	if (code == IDS_EXIT_OK)
		ids_log(IDS_LOG_INFO, NULL, 0, NULL, "stopped");
	listeners_stop(&d, false);
	ids_workers_free(d.pool);
	ids_usersync_free(d.us);
	ids_persist_free(d.persist);
	ids_metrics_free(d.metrics);
	sched_free(d.s, d.ns);
	ids_progress_free(d.prog);
	ids_feeds_free(d.feeds);
	ids_oauth_tokens_free(d.tokens);
	free(d.note);
	ids_store_close(d.st);
	ids_store_close(d.ctl);
	ids_config_free(d.cfg);
	if (d.sfd >= 0)
		close(d.sfd);
	return code;
}
