/* workers.c — the daemon's worker threads (workers.h).
 *
 * A thread per run, started by ids_workers_start and joined by
 * ids_workers_reap: a run takes seconds to minutes, a thread's start
 * microseconds, and a pool of parked threads would need its own wake-up
 * protocol for nothing.  What a worker keeps between runs is its slot:
 * its PostgreSQL connection (a connect and its TLS handshake per run
 * would cost more than a no-change run) and its progress tracker.
 *
 * Between the threads: `progressed` and `done` are atomics (the main
 * thread reads them while the run goes on); the status text goes through
 * `mu`; everything else of a slot belongs to the worker from the start
 * to the end of its run and to the main thread otherwise (pthread_create
 * and pthread_join order the two). */
#include "ids/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ids/connector.h"
#include "ids/log.h"
#include "ids/progress.h"
#include "ids/store.h"
#include "ids/util.h"

struct worker {
	struct ids_workers *pool;
	pthread_t th;
	bool busy; /* main thread's: started and not reaped */
	void *tag;
	const struct ids_config *cfg;	    /* borrowed for the run */
	const struct ids_connector_cfg *cc; /* borrowed for the run */
	struct ids_store *st;		    /* its own connection, kept between runs; NULL: closed */
	struct ids_progress *prog;	    /* NULL when out of memory: no progress text */
	struct ids_sync_result res;
	_Atomic int64_t progressed; /* monotonic usec of the run's last sign of life */
	atomic_bool done;
	char *text; /* the latest STATUS= text, under pool->mu */
};

struct ids_workers {
	struct worker *w;
	size_t n;
	int efd;
	pthread_mutex_t mu;
	struct ids_feeds *feeds;
	struct ids_oauth_tokens *tokens;
	const atomic_bool *cancel;
};

int ids_workers_new(size_t n, struct ids_feeds *feeds, struct ids_oauth_tokens *tokens,
		    const atomic_bool *cancel, struct ids_workers **ret)
{
	struct ids_workers *p = calloc(1, sizeof(*p));
	if (!p || !(p->w = calloc(n, sizeof(*p->w)))) {
		free(p);
		return -ENOMEM;
	}
	p->n = n;
	p->feeds = feeds;
	p->tokens = tokens;
	p->cancel = cancel;
	pthread_mutex_init(&p->mu, NULL);
	ids_connectors_global_init();
	if ((p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		int err = -errno;
		ids_workers_free(p);
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		p->w[i].pool = p;
		/* without a tracker the run goes on, STATUS= says "running since" */
		(void)ids_progress_new(-1, &p->w[i].prog);
	}
	*ret = p;
	return 0;
}

void ids_workers_free(struct ids_workers *p)
{
	if (!p)
		return;
	for (size_t i = 0; p->w && i < p->n; i++) {
		struct worker *w = &p->w[i];
		if (w->busy) {
			pthread_join(w->th, NULL);
			free(w->res.error);
		}
		ids_store_close(w->st);
		ids_progress_free(w->prog);
		free(w->text);
	}
	if (p->efd >= 0)
		close(p->efd);
	pthread_mutex_destroy(&p->mu);
	free(p->w);
	free(p);
}

/* The run's progress hook, on the worker's thread: a sign of life for
 * the watchdog, the status text for the main thread, and the cancel. */
static int worker_progress(void *ud)
{
	struct worker *w = ud;
	atomic_store(&w->progressed, ids_mono_usec());
	char *t = ids_progress_status(w->prog);
	if (t) {
		pthread_mutex_lock(&w->pool->mu);
		free(w->text);
		w->text = t;
		pthread_mutex_unlock(&w->pool->mu);
	}
	return atomic_load(w->pool->cancel) ? IDS_E_CANCELLED : 0;
}

/* The worker's connection: kept from its last run, or a new one (the
 * schema is the main thread's to migrate, at the start).  < 0: logged,
 * the run failed without an id, as the main thread's would. */
static int worker_store(struct worker *w)
{
	struct ids_error e = {0};
	if (w->st)
		return 0;
	int r = ids_store_open(w->cfg, &w->st, &e);
	if (r < 0) {
		const struct ids_log_fields f = {.connector = w->cc->name,
						 .message_id = IDS_MSGID_RUN_FAILED};
		ids_log_event(IDS_LOG_ERROR, &f, "run failed, nothing written: database: %s",
			      ids_error_text(&e));
		w->res.error = strdup(ids_error_text(&e));
		w->res.error_code = r;
	}
	ids_error_clear(&e);
	return r;
}

static void *worker_main(void *ud)
{
	struct worker *w = ud;
	struct ids_workers *p = w->pool;
	if (worker_store(w) >= 0) {
		struct ids_sync_opts o = {.progress = worker_progress,
					  .ud = w,
					  .prog = w->prog,
					  .feeds = p->feeds,
					  .tokens = p->tokens};
		struct ids_buf out = {0};
		ids_sync_connector(w->cfg, w->st, w->cc, &o, &out, &w->res);
		ids_buf_free(&out);
	}
	/* the connection may be what failed: the next run starts afresh */
	if (w->res.exit_code != IDS_EXIT_OK && w->res.exit_code != IDS_EXIT_LOCKED &&
	    w->res.exit_code != IDS_EXIT_SAFETY) {
		ids_store_close(w->st);
		w->st = NULL;
	}
	atomic_store(&w->done, true);
	uint64_t one = 1;
	/* cannot fail short of a counter at 2^64-2: the loop also looks every second */
	(void)!write(p->efd, &one, sizeof(one));
	return NULL;
}

int ids_workers_start(struct ids_workers *p, const struct ids_config *cfg, const struct ids_connector_cfg *cc,
		      void *tag)
{
	struct worker *w = NULL;
	for (size_t i = 0; i < p->n && !w; i++)
		if (!p->w[i].busy)
			w = &p->w[i];
	if (!w)
		return -EBUSY;
	w->tag = tag;
	w->cfg = cfg;
	w->cc = cc;
	/* what a run that could not even start (no database) reports */
	w->res = (struct ids_sync_result){.exit_code = IDS_EXIT_FAILED, .status = "failed"};
	atomic_store(&w->progressed, ids_mono_usec());
	atomic_store(&w->done, false);
	int r = pthread_create(&w->th, NULL, worker_main, w);
	if (r != 0)
		return -r;
	w->busy = true;
	return 0;
}

size_t ids_workers_busy(const struct ids_workers *p)
{
	size_t n = 0;
	for (size_t i = 0; p && i < p->n; i++)
		n += p->w[i].busy;
	return n;
}

bool ids_workers_free_slot(const struct ids_workers *p)
{
	return ids_workers_busy(p) < p->n;
}

int ids_workers_fd(const struct ids_workers *p)
{
	return p ? p->efd : -1;
}

void *ids_workers_reap(struct ids_workers *p, struct ids_sync_result *ret_res)
{
	uint64_t v;
	/* the count says nothing `done` does not: emptied for the next poll */
	(void)!read(p->efd, &v, sizeof(v));
	for (size_t i = 0; i < p->n; i++) {
		struct worker *w = &p->w[i];
		if (!w->busy || !atomic_load(&w->done))
			continue;
		pthread_join(w->th, NULL);
		w->busy = false;
		*ret_res = w->res;
		w->res = (struct ids_sync_result){0};
		pthread_mutex_lock(&p->mu);
		free(w->text);
		w->text = NULL;
		pthread_mutex_unlock(&p->mu);
		return w->tag;
	}
	return NULL;
}

char *ids_workers_status(struct ids_workers *p, const void *tag)
{
	char *t = NULL;
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < p->n && !t; i++)
		if (p->w[i].busy && p->w[i].tag == tag) {
			t = p->w[i].text;
			p->w[i].text = NULL;
		}
	pthread_mutex_unlock(&p->mu);
	return t;
}

void *ids_workers_stalled(const struct ids_workers *p, int64_t limit_usec, int64_t *ret_usec)
{
	int64_t now = ids_mono_usec();
	for (size_t i = 0; p && i < p->n; i++) {
		const struct worker *w = &p->w[i];
		int64_t silent = now - atomic_load(&w->progressed);
		if (w->busy && !atomic_load(&w->done) && silent >= limit_usec) {
			*ret_usec = silent;
			return w->tag;
		}
	}
	return NULL;
}
