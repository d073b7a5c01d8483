/* daemon.c — `idsyncd run`: the service loop of service.md.
 *
 * One thread.  Signals arrive on a signalfd; the loop sleeps in exactly one
 * place, ppoll() on that fd with the time to the next due connector (or the
 * next watchdog ping) as its timeout.  Connectors run one at a time; each
 * has its own schedule: interval + random jitter after a success,
 * exponential backoff from retry_min to retry_max after a failure. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
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
#include "ids/store.h"
#include "ids/sync.h"

struct sched {
	char *name;
	int64_t due;     /* monotonic usec */
	int backoff;     /* seconds of the last retry delay, 0 after a success */
	char status[256];
};

struct daemon {
	const char *path;
	struct ids_config *cfg;
	struct ids_store *st;
	struct sched *s;
	size_t ns;
	int sfd;
	uint64_t wd_usec;     /* watchdog period, 0 = off */
	int64_t wd_last;
	bool stop, run_all, reload; /* set by signals, acted on by the loop */
};

static int64_t mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static unsigned rnd(unsigned max)
{
	unsigned v = 0;
	if (max == 0 || getrandom(&v, sizeof(v), 0) != sizeof(v))
		return 0;
	return v % (max + 1);
}

static void watchdog(struct daemon *d, bool force)
{
	int64_t now = mono_usec();
	if (d->wd_usec && (force || now - d->wd_last >= (int64_t)d->wd_usec / 2)) {
		sd_notify(0, "WATCHDOG=1");
		d->wd_last = now;
	}
}

/* Reads pending signals into the daemon's flags. */
static void drain_signals(struct daemon *d)
{
	struct signalfd_siginfo si;
	while (read(d->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT: d->stop = true; break;
		case SIGUSR1: d->run_all = true; break;
		case SIGHUP: d->reload = true; break;
		}
	}
}

/* The connectors' progress hook: keeps the watchdog fed during a long run
 * and cancels it on SIGTERM/SIGINT. */
static int progress(void *ud)
{
	struct daemon *d = ud;
	watchdog(d, false);
	drain_signals(d); /* a reload waits for the end of the run */
	return d->stop ? IDS_E_CANCELLED : 0;
}

static void schedule_rebuild(struct daemon *d)
{
	/* keep the schedule of connectors that survive a reload */
	struct sched *ns = calloc(d->cfg->nconnectors ? d->cfg->nconnectors : 1, sizeof(*ns));
	if (!ns)
		return;
	int64_t now = mono_usec();
	for (size_t i = 0; i < d->cfg->nconnectors; i++) {
		ns[i].name = strdup(d->cfg->connectors[i].name);
		ns[i].due = now;
		for (size_t j = 0; j < d->ns; j++)
			if (strcmp(d->s[j].name, ns[i].name) == 0) {
				ns[i].due = d->s[j].due;
				ns[i].backoff = d->s[j].backoff;
				memcpy(ns[i].status, d->s[j].status, sizeof(ns[i].status));
			}
	}
	for (size_t j = 0; j < d->ns; j++)
		free(d->s[j].name);
	free(d->s);
	d->s = ns;
	d->ns = d->cfg->nconnectors;
}

static void notify_status(struct daemon *d, const char *extra)
{
	struct ids_buf b = { 0 };
	ids_buf_puts(&b, "STATUS=");
	if (extra)
		ids_buf_printf(&b, "%s; ", extra);
	for (size_t i = 0; i < d->ns; i++)
		ids_buf_printf(&b, "%s%s", i ? "; " : "", d->s[i].status[0] ? d->s[i].status : d->s[i].name);
	sd_notify(0, b.p);
	ids_buf_free(&b);
}

static void clock_hhmmss(int64_t delay_usec, char *buf, size_t n)
{
	time_t t = time(NULL) + (time_t)(delay_usec / 1000000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, n, "%H:%M:%S", &tm);
}

static void run_one(struct daemon *d, struct sched *s)
{
	const struct ids_connector_cfg *cc = ids_config_connector(d->cfg, s->name);
	struct ids_error e = { 0 };
	if (!cc)
		return;
	if (!d->st && ids_store_open(d->cfg, &d->st, &e) < 0) {
		ids_log(IDS_LOG_ERROR, cc->name, 0, NULL, "database: %s", ids_error_text(&e));
		ids_error_clear(&e);
		d->st = NULL;
	}
	struct ids_sync_result res = { .exit_code = IDS_EXIT_FAILED, .status = "failed" };
	if (d->st) {
		struct ids_sync_opts o = { .progress = progress, .ud = d };
		struct ids_buf out = { 0 };
		ids_sync_connector(d->cfg, d->st, cc, &o, &out, &res);
		ids_buf_free(&out);
	} else {
		res.error = strdup("database unavailable");
	}
	int64_t now = mono_usec();
	char at[16];
	clock_hhmmss(0, at, sizeof(at));
	if (res.exit_code == IDS_EXIT_OK || res.exit_code == IDS_EXIT_LOCKED) {
		/* a locked tick is another instance's success: keep the rhythm */
		s->backoff = 0;
		int interval = cc->interval ? cc->interval : d->cfg->sync.interval;
		s->due = now + ((int64_t)interval + rnd((unsigned)d->cfg->sync.jitter)) * 1000000;
		if (res.exit_code == IDS_EXIT_OK)
			snprintf(s->status, sizeof(s->status), "%s ok %ld users +%ld ~%ld -%ld at %s", cc->name,
				 res.counts.users_seen, res.counts.created,
				 res.counts.updated + res.counts.reactivated, res.counts.deactivated, at);
		else
			snprintf(s->status, sizeof(s->status), "%s skipped (locked by another instance) at %s",
				 cc->name, at);
	} else {
		/* failures and safety aborts retry with doubling backoff */
		s->backoff = s->backoff ? s->backoff * 2 : d->cfg->sync.retry_min;
		if (s->backoff > d->cfg->sync.retry_max)
			s->backoff = d->cfg->sync.retry_max;
		int64_t delay = ((int64_t)s->backoff + rnd((unsigned)d->cfg->sync.jitter / 10)) * 1000000;
		s->due = now + delay;
		char retry[16];
		clock_hhmmss(delay, retry, sizeof(retry));
		snprintf(s->status, sizeof(s->status), "%s %s (%.80s) retry %s", cc->name, res.status,
			 res.error ? res.error : "", retry);
		/* the connection may be what failed: start afresh next time */
		ids_store_close(d->st);
		d->st = NULL;
	}
	free(res.error);
	notify_status(d, NULL);
}

static void reload(struct daemon *d)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
		   (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	struct ids_config *nc = NULL;
	struct ids_error e = { 0 };
	if (ids_config_load(d->path, &nc, &e) < 0) {
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "reload refused, keeping the running configuration: %s",
			ids_error_text(&e));
		sd_notify(0, "READY=1");
		notify_status(d, "reload failed: invalid configuration, old one kept");
		ids_error_clear(&e);
		return;
	}
	ids_config_free(d->cfg);
	d->cfg = nc;
	ids_log_setup(nc->log.level, nc->log.target);
	ids_store_close(d->st); /* database settings may have changed */
	d->st = NULL;
	schedule_rebuild(d);
	ids_log(IDS_LOG_INFO, NULL, 0, NULL, "configuration reloaded: %zu connectors", d->ns);
	sd_notify(0, "READY=1");
	notify_status(d, NULL);
}

/* Connects and migrates, retrying with backoff while the database is down;
 * false when told to stop meanwhile. */
static bool wait_for_database(struct daemon *d)
{
	int delay = d->cfg->sync.retry_min > 0 ? d->cfg->sync.retry_min : 1;
	for (;;) {
		struct ids_error e = { 0 };
		int r = ids_store_open(d->cfg, &d->st, &e);
		if (r >= 0)
			r = ids_store_migrate(d->st, d->cfg->database.migrate_auto, NULL, NULL, &e);
		if (r >= 0)
			return true;
		ids_store_close(d->st);
		d->st = NULL;
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "database: %s (retrying in %d s)", ids_error_text(&e), delay);
		sd_notifyf(0, "STATUS=waiting for the database: %s", ids_error_text(&e));
		ids_error_clear(&e);
		if (r == IDS_E_SCHEMA)
			delay = d->cfg->sync.retry_max; /* needs a person, not a retry storm */
		struct pollfd p = { d->sfd, POLLIN, 0 };
		int64_t until = mono_usec() + (int64_t)delay * 1000000;
		while (!d->stop && mono_usec() < until) {
			watchdog(d, false);
			int64_t left = (until - mono_usec()) / 1000;
			int64_t wd = d->wd_usec ? (int64_t)d->wd_usec / 2000 : left;
			int ms = (int)(left < wd ? left : wd);
			if (poll(&p, 1, ms > 0 ? ms : 0) > 0)
				drain_signals(d);
		}
		if (d->stop)
			return false;
		delay = delay * 2 > d->cfg->sync.retry_max ? d->cfg->sync.retry_max : delay * 2;
	}
}

int ids_daemon_run(const char *config_path)
{
	struct daemon d = { .path = config_path, .sfd = -1 };
	struct ids_error e = { 0 };
	int code = IDS_EXIT_OK;

	if (ids_config_load(config_path, &d.cfg, &e) < 0) {
		fprintf(stderr, "%s\n", ids_error_text(&e));
		sd_notifyf(0, "STATUS=invalid configuration\nERRNO=%d", EINVAL);
		ids_error_clear(&e);
		return IDS_EXIT_CONFIG;
	}
	ids_log_setup(d.cfg->log.level, d.cfg->log.target);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	d.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d.sfd < 0) {
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "signalfd: %s", strerror(errno));
		code = IDS_EXIT_FAILED;
		goto out;
	}
	if (sd_watchdog_enabled(0, &d.wd_usec) <= 0)
		d.wd_usec = 0;

	if (!wait_for_database(&d))
		goto out;
	schedule_rebuild(&d);
	ids_log(IDS_LOG_INFO, NULL, 0, NULL, "idsyncd %s ready: %zu connectors", IDSYNCD_VERSION, d.ns);
	sd_notify(0, "READY=1");
	notify_status(&d, "ready");
	watchdog(&d, true);

	while (!d.stop) {
		int64_t now = mono_usec();
		if (d.run_all) {
			for (size_t i = 0; i < d.ns; i++)
				d.s[i].due = now;
			d.run_all = false;
		}
		/* the earliest due connector runs; the rest wait their turn */
		struct sched *next = NULL;
		for (size_t i = 0; i < d.ns; i++)
			if (!next || d.s[i].due < next->due)
				next = &d.s[i];
		if (next && next->due <= now) {
			run_one(&d, next);
			watchdog(&d, false);
			if (d.reload && !d.stop) {
				d.reload = false;
				reload(&d);
			}
			continue;
		}
		int64_t wait = next ? next->due - now : 3600LL * 1000000;
		if (d.wd_usec && (int64_t)d.wd_usec / 2 < wait)
			wait = (int64_t)d.wd_usec / 2;
		struct timespec ts = { (time_t)(wait / 1000000), (long)(wait % 1000000) * 1000 };
		struct pollfd p = { d.sfd, POLLIN, 0 };
		int r = ppoll(&p, 1, &ts, NULL);
		watchdog(&d, false);
		if (r > 0)
			drain_signals(&d);
		if (d.reload && !d.stop) {
			d.reload = false;
			reload(&d);
		}
	}
out:
	sd_notify(0, "STOPPING=1");
	ids_log(IDS_LOG_INFO, NULL, 0, NULL, "stopping");
	for (size_t j = 0; j < d.ns; j++)
		free(d.s[j].name);
	free(d.s);
	ids_store_close(d.st);
	ids_config_free(d.cfg);
	if (d.sfd >= 0)
		close(d.sfd);
	return code;
}
