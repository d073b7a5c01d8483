/* usersync.c — the LISTEN connection and the queue of targeted syncs
 * (see include/ids/usersync.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ids/log.h"
#include "ids/store.h"
#include "ids/sync.h"
#include "ids/usersync.h"

#define USEC 1000000LL
/* Requests waiting at most, all connectors together: the rate limit
 * bounds what comes in, this bounds what a slow source lets pile up. */
#define QUEUE_MAX 1024
/* The longest piece of a refused payload quoted in the log. */
#define PAYLOAD_LOG_MAX 200

struct request {
	char *conn, *user;
};

/* A connector's token bucket: sync.user_rate tokens a second, as many at
 * most (a burst of one second's worth). */
struct bucket {
	char *conn;
	double tokens;
	int64_t at;	  /* monotonic usec tokens was computed for */
	int64_t warned;	  /* monotonic usec of the last "dropped" warning */
	long quiet_drops; /* drops since that warning, said in the next one */
};

struct ids_usersync {
	struct ids_store *st; /* the LISTEN connection; NULL while there is none */
	int64_t retry_at;     /* monotonic usec of the next attempt */
	int delay;	      /* seconds of the last backoff, 0 after a success */
	struct request *q;    /* q[0] runs (when running), the rest wait in order */
	size_t nq;
	bool running;
	struct bucket *b;
	size_t nb;
};

int ids_usersync_new(struct ids_usersync **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

static void request_free(struct request *r)
{
	free(r->conn);
	free(r->user);
}

void ids_usersync_free(struct ids_usersync *u)
{
	if (!u)
		return;
	ids_store_close(u->st);
	for (size_t i = 0; i < u->nq; i++)
		request_free(&u->q[i]);
	free(u->q);
	for (size_t i = 0; i < u->nb; i++)
		free(u->b[i].conn);
	free(u->b);
	free(u);
}

int ids_usersync_fd(const struct ids_usersync *u)
{
	return u && u->st ? ids_store_socket(u->st) : -1;
}

int64_t ids_usersync_retry_at(const struct ids_usersync *u, const struct ids_config *cfg)
{
	return !u || u->st || cfg->sync.user_rate <= 0 ? 0 : u->retry_at;
}

void ids_usersync_close(struct ids_usersync *u)
{
	ids_store_close(u->st);
	u->st = NULL;
	u->retry_at = 0;
	u->delay = 0;
}

/* A lost or refused connection: the next attempt after the daemon's
 * backoff (retry_min, doubling up to retry_max). */
static void backoff(struct ids_usersync *u, const struct ids_config *cfg, const struct ids_error *e)
{
	int min = cfg->sync.retry_min > 0 ? cfg->sync.retry_min : 1;
	u->delay = u->delay ? u->delay * 2 : min;
	if (u->delay > cfg->sync.retry_max || u->delay <= 0)
		u->delay = cfg->sync.retry_max > min ? cfg->sync.retry_max : min;
	u->retry_at = ids_mono_usec() + (int64_t)u->delay * USEC;
	ids_log(IDS_LOG_WARNING, NULL, 0, NULL,
		"%s: %s; NOTIFY requests sent meanwhile are lost (retrying in %d s)", IDS_USERSYNC_CHANNEL,
		ids_error_text(e), u->delay);
}

void ids_usersync_connect(struct ids_usersync *u, const struct ids_config *cfg)
{
	if (u->st || cfg->sync.user_rate <= 0 || ids_mono_usec() < u->retry_at)
		return;
	struct ids_error e = {0};
	struct ids_store *st = NULL;
	int r = ids_store_open(cfg, &st, &e);
	if (r >= 0)
		r = ids_store_listen(st, IDS_USERSYNC_CHANNEL, &e);
	if (r < 0) {
		ids_store_close(st);
		backoff(u, cfg, &e);
	} else {
		u->st = st;
		if (u->delay)
			ids_log(IDS_LOG_INFO, NULL, 0, NULL, "%s: listening again", IDS_USERSYNC_CHANNEL);
		else
			ids_log(IDS_LOG_DEBUG, NULL, 0, NULL, "%s: listening", IDS_USERSYNC_CHANNEL);
		u->delay = 0;
	}
	ids_error_clear(&e);
}

static struct bucket *bucket_of(struct ids_usersync *u, const char *conn)
{
	for (size_t i = 0; i < u->nb; i++)
		if (!strcmp(u->b[i].conn, conn))
			return &u->b[i];
	struct bucket *b = realloc(u->b, (u->nb + 1) * sizeof(*b));
	if (!b)
		return NULL;
	u->b = b;
	b = &u->b[u->nb];
	*b = (struct bucket){.conn = strdup(conn), .tokens = -1};
	if (!b->conn)
		return NULL;
	u->nb++;
	return b;
}

/* Takes a token from conn's bucket; false when it is empty (or out of
 * memory: a request dropped rather than a limit not kept). */
static bool take_token(struct ids_usersync *u, const char *conn, int rate)
{
	struct bucket *b = bucket_of(u, conn);
	if (!b)
		return false;
	int64_t now = ids_mono_usec();
	if (b->tokens < 0)
		b->tokens = rate; /* a new bucket starts full */
	else
		b->tokens += (double)(now - b->at) * rate / USEC;
	if (b->tokens > rate)
		b->tokens = rate; /* a reload may have lowered the rate */
	b->at = now;
	if (b->tokens < 1)
		return false;
	b->tokens -= 1;
	return true;
}

/* The payload escaped (and cut) for the log: it is whatever a client sent. */
static char *quoted(const char *s)
{
	struct ids_buf b = {0};
	size_t n = strlen(s);
	char *cut = strndup(s, n > PAYLOAD_LOG_MAX ? PAYLOAD_LOG_MAX : n);
	if (cut && ids_buf_json_str(&b, cut) >= 0 && n > PAYLOAD_LOG_MAX)
		ids_buf_puts(&b, "...");
	free(cut);
	return b.p ? b.p : strdup("(out of memory)");
}

static void refuse(struct ids_metrics *m, const char *payload, const char *reason, const char *why)
{
	char *q = quoted(payload);
	ids_log(IDS_LOG_WARNING, NULL, 0, NULL, "%s: request %s ignored: %s", IDS_USERSYNC_CHANNEL,
		q ? q : "", why);
	free(q);
	if (m)
		(void)ids_metrics_targeted_refused(m, reason);
}

/* Dropped over the rate limit: one warning a second per connector, the
 * count of the quiet ones in the next (the metric counts every one). */
static void dropped(struct ids_usersync *u, const struct ids_config *cfg, const char *conn, const char *user,
		    const char *outcome)
{
	struct bucket *b = bucket_of(u, conn);
	int64_t now = ids_mono_usec();
	if (b && b->warned && now - b->warned < USEC) {
		b->quiet_drops++;
		return;
	}
	char *q = quoted(user);
	ids_log(
	    IDS_LOG_WARNING, conn, 0, NULL,
	    "targeted sync of %s dropped (%s: sync.user_rate %d a second; %ld more dropped since the last "
	    "warning); the next scheduled run includes the user",
	    q ? q : "", outcome, cfg->sync.user_rate, b ? b->quiet_drops : 0L);
	free(q);
	if (b) {
		b->warned = now;
		b->quiet_drops = 0;
	}
}

/* Same connector and user, queued or running: one sync serves both. */
static bool coalesced(const struct ids_usersync *u, const char *conn, const char *user)
{
	for (size_t i = 0; i < u->nq; i++)
		if (!strcmp(u->q[i].conn, conn) && !strcmp(u->q[i].user, user))
			return true;
	return false;
}

static void enqueue(struct ids_usersync *u, const struct ids_config *cfg, struct ids_metrics *m,
		    const char *conn, const char *user)
{
	const char *outcome = NULL;
	if (coalesced(u, conn, user))
		outcome = "coalesced";
	else if (u->nq >= QUEUE_MAX)
		outcome = "queue_full";
	else if (!take_token(u, conn, cfg->sync.user_rate))
		outcome = "rate_limited";
	if (outcome && strcmp(outcome, "coalesced") != 0)
		dropped(u, cfg, conn, user, outcome);
	struct request *q = outcome ? NULL : realloc(u->q, (u->nq + 1) * sizeof(*q));
	if (q) {
		u->q = q;
		q[u->nq] = (struct request){strdup(conn), strdup(user)};
		if (q[u->nq].conn && q[u->nq].user)
			u->nq++;
		else
			request_free(&q[u->nq]);
	}
	if (m && outcome)
		(void)ids_metrics_targeted(m, conn, outcome);
}

/* One payload: CONNECTOR:USER (the connector names have no colon; the
 * user may). */
static void request(struct ids_usersync *u, const struct ids_config *cfg, struct ids_metrics *m,
		    char *payload)
{
	char *colon = strchr(payload, ':');
	if (!colon || colon == payload || !colon[1]) {
		refuse(m, payload, "malformed", "expected CONNECTOR:USER");
		return;
	}
	*colon = '\0';
	const struct ids_connector_cfg *cc = ids_config_connector(cfg, payload);
	*colon = ':';
	if (!cc)
		refuse(m, payload, "unknown_connector", "no such connector in the configuration");
	else
		enqueue(u, cfg, m, cc->name, colon + 1);
}

void ids_usersync_drain(struct ids_usersync *u, const struct ids_config *cfg, struct ids_metrics *m)
{
	struct ids_error e = {0};
	char *payload = NULL;
	int r = 0;
	while (u->st && (r = ids_store_notify_next(u->st, &payload, &e)) > 0) {
		request(u, cfg, m, payload);
		free(payload);
	}
	if (u->st && r < 0) {
		ids_store_close(u->st);
		u->st = NULL;
		u->delay = 0; /* the first retry after retry_min */
		backoff(u, cfg, &e);
	}
	ids_error_clear(&e);
}

bool ids_usersync_next(struct ids_usersync *u, const char **conn, const char **user)
{
	if (u->running || !u->nq)
		return false;
	u->running = true;
	*conn = u->q[0].conn;
	*user = u->q[0].user;
	return true;
}

void ids_usersync_done(struct ids_usersync *u, const struct ids_config *cfg, struct ids_metrics *m)
{
	ids_usersync_drain(u, cfg, m);
	if (!u->running)
		return;
	u->running = false;
	request_free(&u->q[0]);
	memmove(u->q, u->q + 1, (u->nq - 1) * sizeof(*u->q));
	u->nq--;
}
