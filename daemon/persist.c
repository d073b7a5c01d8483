/* persist.c — the doorbells of persist: true connectors (ids/persist.h).
 *
 * Why a doorbell: the data path stays the incremental run (it reads from
 * the stored cursor and commits the cursor with the changes in one
 * transaction), so a dropped search, a failed run or a kill -9 lose
 * nothing — the search is opened again from the stored cookies, and its
 * refresh phase rings for whatever happened meanwhile.  The search only
 * decides when the run happens (docs/changes.md).
 *
 * Each feed is held by one daemon (persist_feed, store/persist.c): taken
 * before its search is opened, renewed every third of sync.lease while
 * the search is up, given back when this daemon holds more than its share
 * + 1 or stops.  A daemon whose search is down does not renew: once the
 * lease has run out, another daemon (one that can reach the directory)
 * may take the feed over. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ids/ldap_watch.h"
#include "ids/log.h"
#include "ids/persist.h"
#include "ids/store.h"

#define USEC 1000000LL
#define BACKOFF_MIN 1  /* seconds: the first reconnection */
#define BACKOFF_MAX 60 /* seconds: the longest wait between two */

struct feed {
	char *name;
	const struct ids_connector_cfg *cc; /* borrowed from the configuration of the last configure */
	struct ids_ldap_watch *w;	    /* the open search, NULL when none */
	enum ids_persist_state state;
	bool held;	   /* this daemon holds its lease */
	bool down;	   /* in an outage (logged and counted once) */
	int backoff;	   /* seconds of the last wait, 0 after a success */
	int64_t retry_at;  /* monotonic usec of the next attempt to open, when !w */
	int64_t renew_at;  /* monotonic usec of the next lease renewal (or try to take it) */
	int64_t since;	   /* wall-clock usec of state's start, for STATUS= */
	int64_t down_at;   /* monotonic usec of the outage's start */
	char *error;	   /* why not up, NULL when up */
	bool outage_new;   /* the next hold starts an outage (persist_feed.reconnects + 1) */
	bool lease_warned; /* a failed hold was logged */
	bool refused;	   /* the server refused the stored cursor (logged); until a search is refreshed */
};

struct ids_persist {
	char *instance;
	struct feed *f;
	size_t n;
	int ep;		      /* the epoll set of the open searches' sockets */
	size_t open;	      /* searches in it */
	struct ids_store *st; /* persist_feed and the cursors; NULL until needed */
	int lease;	      /* sync.lease, seconds */
	int feeds;	      /* persist connectors configured */
};

/* up to a quarter of d more: daemons that lost the directory together
 * must not come back together */
static int64_t jittered(int64_t d)
{
	return d <= 0 ? d : d + (int64_t)ids_jitter((unsigned)(d / 4));
}

int ids_persist_new(const char *instance, struct ids_persist **ret)
{
	struct ids_persist *pp = calloc(1, sizeof(*pp));
	*ret = NULL;
	if (!pp || !(pp->instance = strdup(instance))) {
		free(pp);
		return -ENOMEM;
	}
	pp->ep = epoll_create1(EPOLL_CLOEXEC);
	if (pp->ep < 0) {
		int err = errno;
		free(pp->instance);
		free(pp);
		return -err;
	}
	*ret = pp;
	return 0;
}

static void set_state(struct feed *f, enum ids_persist_state s, const char *error)
{
	if (f->state != s)
		f->since = ids_real_usec();
	f->state = s;
	free(f->error);
	f->error = error ? strdup(error) : NULL;
}

static void close_watch(struct ids_persist *pp, struct feed *f)
{
	if (!f->w)
		return;
	int fd = ids_ldap_watch_fd(f->w);
	if (fd >= 0)
		(void)epoll_ctl(pp->ep, EPOLL_CTL_DEL, fd, NULL);
	ids_ldap_watch_close(f->w);
	f->w = NULL;
	pp->open--;
}

static int store_ready(struct ids_persist *pp, const struct ids_config *cfg, struct ids_error *e)
{
	return pp->st ? 0 : ids_store_open(cfg, &pp->st, e);
}

/* Writes f's state to persist_feed and takes or renews its lease: 1
 * ours, 0 not ours (another daemon's, or over this daemon's share), < 0
 * the database failed (the connection is dropped).  *share: the counts. */
static int hold(struct ids_persist *pp, const struct ids_persist_hooks *h, struct feed *f,
		struct ids_persist_share *share)
{
	struct ids_error e = {0};
	struct ids_persist_hold ph = {.connector = f->name,
				      .instance = pp->instance,
				      .lease_sec = pp->lease,
				      .feeds = pp->feeds,
				      .state = f->state,
				      .error = f->error,
				      .new_outage = f->outage_new};
	int r = store_ready(pp, h->cfg, &e);
	if (r >= 0)
		r = ids_store_persist_hold(pp->st, &ph, share, &e);
	if (r < 0) {
		if (!f->lease_warned)
			ids_log(IDS_LOG_WARNING, f->name, 0, NULL, "persist: cannot hold the feed: %s",
				ids_error_text(&e));
		f->lease_warned = true;
		ids_store_close(pp->st);
		pp->st = NULL;
	} else {
		f->lease_warned = false;
		f->outage_new = false;
		if (!r && f->held)
			ids_log(IDS_LOG_INFO, f->name, 0, NULL,
				"persist: the feed is held by %s now; closing this daemon's search",
				*share->holder ? share->holder : "another daemon");
		f->held = r > 0;
	}
	ids_error_clear(&e);
	return r;
}

/* The start of an outage (or one more failed attempt in it): logged and
 * counted once, the next attempt after the doubled backoff. */
static void outage(struct ids_persist *pp, const struct ids_persist_hooks *h, struct feed *f, const char *why)
{
	int64_t now = ids_mono_usec();
	if (!f->down) {
		ids_log(IDS_LOG_WARNING, f->name, 0, NULL, "persist: %s; reconnecting with backoff", why);
		f->down = true;
		f->down_at = now;
		f->outage_new = true;
		if (h->metrics)
			(void)ids_metrics_persist(h->metrics, f->name, false, true);
	} else {
		ids_log(IDS_LOG_DEBUG, f->name, 0, NULL, "persist: still down: %s", why);
	}
	f->backoff = f->backoff ? f->backoff * 2 : BACKOFF_MIN;
	if (f->backoff > BACKOFF_MAX)
		f->backoff = BACKOFF_MAX;
	f->retry_at = now + jittered((int64_t)f->backoff * USEC);
	set_state(f, IDS_PERSIST_RECONNECTING, why);
}

/* The server refused the cursor f's search started from (a restored
 * directory, a session log that no longer reaches it): the refusal rang,
 * and the run it rang resets the feed and commits a new cursor.  Not an
 * outage: the search waits for that cursor (looked for each tick, at once
 * after a run of ours) and the refusal is logged once until a search is
 * accepted again. */
static void refused(struct ids_persist *pp, struct feed *f, const char *why)
{
	ids_log(f->refused ? IDS_LOG_DEBUG : IDS_LOG_WARNING, f->name, 0, NULL,
		"persist: %s; waiting for a run to commit a new cursor", why);
	f->refused = true;
	f->retry_at = ids_mono_usec() + (int64_t)pp->lease * USEC / 3;
	set_state(f, IDS_PERSIST_WAITING, why);
}

/* The search of f is open: into the epoll set, the outage (if any) over. */
static void opened(struct ids_persist *pp, const struct ids_persist_hooks *h, struct feed *f)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = f};
	int fd = ids_ldap_watch_fd(f->w);
	pp->open++;
	if (fd < 0 || epoll_ctl(pp->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close_watch(pp, f);
		outage(pp, h, f, "the persistent search's socket cannot be polled");
		return;
	}
	if (f->down)
		ids_log(IDS_LOG_INFO, f->name, 0, NULL, "persist: the persistent search is back after %.0f s",
			(double)(ids_mono_usec() - f->down_at) / USEC);
	else
		ids_log(f->refused ? IDS_LOG_DEBUG : IDS_LOG_INFO, f->name, 0, NULL,
			"persist: persistent search open; changes are applied %d s after a burst's last one",
			f->cc->changes.debounce);
	f->down = false;
	f->backoff = 0;
	set_state(f, IDS_PERSIST_UP, NULL);
	if (h->metrics)
		(void)ids_metrics_persist(h->metrics, f->name, true, false);
}

/* Takes f's lease, then opens its search from the stored cursor.  The
 * state it comes to is written to persist_feed (a second hold). */
static void open_feed(struct ids_persist *pp, const struct ids_persist_hooks *h, struct feed *f)
{
	struct ids_persist_share sh = {0};
	struct ids_feed_state fs = {0};
	struct ids_error e = {0};
	int64_t now = ids_mono_usec(), tick = (int64_t)pp->lease * USEC / 3;
	if (f->state == IDS_PERSIST_WAITING && !f->held)
		set_state(f, IDS_PERSIST_CONNECTING, NULL);
	int r = hold(pp, h, f, &sh);
	ids_persist_share_clear(&sh);
	/* another daemon's, or the database is away: look again in a tick */
	f->retry_at = f->renew_at = now + tick;
	if (r <= 0)
		return;
	if (ids_store_feed_get(pp->st, f->name, &fs, &e) < 0) {
		outage(pp, h, f, ids_error_text(&e));
		goto out;
	}
	struct ids_pull_ctx ctx = {.config = h->cfg, .progress = h->progress, .ud = h->ud};
	r = ids_ldap_watch_open(f->cc, &ctx, fs.cursor, fs.cursor_len, &f->w, &e);
	if (r == 1) {
		/* looked for again each tick (another daemon's run may commit
		 * it), or at once after a run of ours */
		set_state(f, IDS_PERSIST_WAITING, "no stored cursor yet: waits for a run to commit one");
	} else if (r == IDS_E_CANCELLED) {
		f->retry_at = now; /* SIGTERM: the loop is about to end */
	} else if (r < 0) {
		outage(pp, h, f, ids_error_text(&e));
	} else {
		opened(pp, h, f);
	}
	if (r != IDS_E_CANCELLED && hold(pp, h, f, &sh) == 0)
		close_watch(pp, f); /* taken over between the two holds */
	ids_persist_share_clear(&sh);
out:
	ids_feed_state_clear(&fs);
	ids_error_clear(&e);
}

/* Gives f back (this daemon holds more than its share + 1): another
 * daemon takes it at its next tick. */
static void give_back(struct ids_persist *pp, struct feed *f, const struct ids_persist_share *sh)
{
	struct ids_error e = {0};
	ids_log(
	    IDS_LOG_INFO, f->name, 0, NULL,
	    "persist: this daemon holds %d persistent feeds, more than its share of %d + 1: giving this one "
	    "back",
	    sh->held, sh->share);
	close_watch(pp, f);
	if (pp->st && ids_store_persist_release(pp->st, f->name, pp->instance, "given back", &e) < 0)
		ids_log(IDS_LOG_DEBUG, f->name, 0, NULL, "persist: %s", ids_error_text(&e));
	ids_error_clear(&e);
	f->held = false;
	set_state(f, IDS_PERSIST_WAITING, "given back to even out the daemons' shares");
	/* a lease later: the others had their turn first */
	f->retry_at = ids_mono_usec() + (int64_t)pp->lease * USEC;
}

/* Renews the lease of f's open search when due; closes it when the feed
 * is not ours any more, gives it back when we hold too many. */
static void renew(struct ids_persist *pp, const struct ids_persist_hooks *h, struct feed *f, int64_t now)
{
	struct ids_persist_share sh = {0};
	if (!f->w || now < f->renew_at)
		return;
	f->renew_at = now + (int64_t)pp->lease * USEC / 3;
	int r = hold(pp, h, f, &sh);
	if (r == 0) {
		close_watch(pp, f);
		set_state(f, IDS_PERSIST_WAITING, "held by another daemon");
		f->retry_at = f->renew_at;
		if (h->metrics)
			(void)ids_metrics_persist(h->metrics, f->name, false, false);
	} else if (r > 0 && sh.held > sh.share + 1) {
		give_back(pp, f, &sh);
		if (h->metrics)
			(void)ids_metrics_persist(h->metrics, f->name, false, false);
	}
	ids_persist_share_clear(&sh);
}

void ids_persist_tick(struct ids_persist *pp, const struct ids_persist_hooks *h)
{
	int64_t now = ids_mono_usec();
	for (size_t i = 0; pp && i < pp->n; i++)
		renew(pp, h, &pp->f[i], now);
}

void ids_persist_service(struct ids_persist *pp, const struct ids_persist_hooks *h)
{
	for (size_t i = 0; pp && i < pp->n; i++) {
		struct feed *f = &pp->f[i];
		int64_t now = ids_mono_usec();
		if (f->w)
			renew(pp, h, f, now);
		else if (now >= f->retry_at)
			open_feed(pp, h, f);
	}
}

void ids_persist_drain(struct ids_persist *pp, const struct ids_persist_hooks *h)
{
	struct epoll_event ev[16];
	int n = pp ? epoll_wait(pp->ep, ev, 16, 0) : 0;
	for (int i = 0; i < n; i++) {
		struct feed *f = ev[i].data.ptr;
		struct ids_error e = {0};
		struct ids_persist_share sh = {0};
		bool rang = false;
		int r = f->w ? ids_ldap_watch_read(f->w, &rang, &e) : 0;
		if (rang)
			h->ring(h->ud, f->name);
		if (r >= 0 && f->refused && ids_ldap_watch_refreshed(f->w)) {
			ids_log(IDS_LOG_INFO, f->name, 0, NULL, "persist: the server accepts the new cursor");
			f->refused = false;
		}
		if (r < 0) {
			if (ids_ldap_watch_refused(f->w))
				refused(pp, f, ids_error_text(&e));
			else
				outage(pp, h, f, ids_error_text(&e));
			close_watch(pp, f);
			(void)hold(pp, h, f, &sh); /* status: reconnecting or waiting, and why */
			ids_persist_share_clear(&sh);
		}
		ids_error_clear(&e);
	}
}

int64_t ids_persist_next(const struct ids_persist *pp)
{
	int64_t next = 0;
	for (size_t i = 0; pp && i < pp->n; i++) {
		int64_t t = pp->f[i].w ? pp->f[i].renew_at : pp->f[i].retry_at;
		if (!next || t < next)
			next = t;
	}
	return next;
}

int ids_persist_fd(const struct ids_persist *pp)
{
	return pp && pp->open ? pp->ep : -1;
}

void ids_persist_ran(struct ids_persist *pp, const char *name)
{
	for (size_t i = 0; pp && i < pp->n; i++)
		if (!strcmp(pp->f[i].name, name) && !pp->f[i].w && pp->f[i].state == IDS_PERSIST_WAITING &&
		    pp->f[i].held)
			pp->f[i].retry_at = ids_mono_usec();
}

/* Closes every search; gives the leases back when `release`. */
static void feeds_free(struct ids_persist *pp, bool release, const char *why)
{
	for (size_t i = 0; i < pp->n; i++) {
		struct feed *f = &pp->f[i];
		struct ids_error e = {0};
		close_watch(pp, f);
		if (release && f->held && pp->st &&
		    ids_store_persist_release(pp->st, f->name, pp->instance, why, &e) < 0)
			ids_log(IDS_LOG_DEBUG, f->name, 0, NULL, "persist: %s", ids_error_text(&e));
		ids_error_clear(&e);
		free(f->name);
		free(f->error);
	}
	free(pp->f);
	pp->f = NULL;
	pp->n = 0;
}

int ids_persist_configure(struct ids_persist *pp, const struct ids_config *cfg)
{
	size_t n = 0;
	feeds_free(pp, true, "the daemon reloaded its configuration");
	ids_store_close(pp->st); /* the database settings may have changed */
	pp->st = NULL;
	for (size_t i = 0; i < cfg->nconnectors; i++)
		n += cfg->connectors[i].changes.persist;
	pp->f = n ? calloc(n, sizeof(*pp->f)) : NULL;
	if (n && !pp->f)
		return -ENOMEM;
	pp->lease = cfg->sync.lease > 0 ? cfg->sync.lease : 60;
	pp->feeds = (int)n;
	int64_t now = ids_mono_usec();
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const struct ids_connector_cfg *cc = &cfg->connectors[i];
		if (!cc->changes.persist)
			continue;
		struct feed *f = &pp->f[pp->n];
		if (!(f->name = strdup(cc->name)))
			return -ENOMEM;
		pp->n++;
		f->cc = cc;
		f->state = IDS_PERSIST_WAITING;
		f->since = ids_real_usec();
		f->retry_at = now;
	}
	return 0;
}

void ids_persist_free(struct ids_persist *pp)
{
	if (!pp)
		return;
	feeds_free(pp, true, "the daemon stopped");
	ids_store_close(pp->st);
	close(pp->ep);
	free(pp->instance);
	free(pp);
}

void ids_persist_status(const struct ids_persist *pp, struct ids_buf *b)
{
	for (size_t i = 0; pp && i < pp->n; i++) {
		const struct feed *f = &pp->f[i];
		char at[16];
		time_t t = (time_t)(f->since / USEC);
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(at, sizeof(at), "%H:%M:%S", &tm);
		ids_buf_printf(b, "; %s persist %s since %s", f->name, ids_persist_state_name(f->state), at);
	}
}
