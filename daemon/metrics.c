/* metrics.c — the Prometheus registry, its text format and its listener
 * (see include/ids/metrics.h).
 *
 * The loop records a run under the mutex; a scrape copies the registry
 * under the mutex and formats the copy without it, so that a slow
 * scraper never delays a run. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/config.h"
#include "ids/metrics.h"

#define MAX_STATUSES 8 /* ok, failed, aborted_threshold, aborted_empty, locked, ... */
#define NBUCKETS 10

/* run durations: from a quiet incremental run to a tier-L full read */
static const double buckets[NBUCKETS] = {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900};
static const char *const phases[6] = {"fetch", "resolve", "rules", "load", "diff", "apply"};
static const char *const kinds[6] = {"created",	    "updated",	    "deactivated",
				     "reactivated", "grants_added", "grants_removed"};

struct conn_stats {
	char *name;
	struct {
		char status[32];
		uint64_t n;
	} runs[MAX_STATUSES];
	uint64_t bucket[NBUCKETS]; /* not cumulative: formatted cumulatively */
	uint64_t count;
	double sum;
	double phase[6];     /* the last run's */
	time_t last_success; /* 0: none yet */
	long users_seen;     /* the last successful run's */
	uint64_t changes[6];
	long conflicts; /* the last successful run's */
	bool held;	/* the last run was held by a safety threshold */
};

/* SCIM requests of one connector ("" for a path naming none). */
#define SCIM_NB 11
#define SCIM_STATUSES 16 /* the statuses the listener answers: fewer than this */
static const double scim_buckets[SCIM_NB] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
struct scim_stats {
	char *name;
	struct {
		unsigned status;
		uint64_t n;
	} st[SCIM_STATUSES];
	uint64_t bucket[SCIM_NB]; /* not cumulative */
	uint64_t count;
	double sum;
};

/* The series of ids_metrics_targeted and its kin: one value per
 * (kind, connector, label), in the order they first appeared. */
enum extra_kind { X_TARGETED, X_REFUSED, X_RESET, X_USERS, X_GRANTS, X_PERSIST_UP, X_PERSIST_LOST, X_KINDS };
struct extra {
	enum extra_kind kind;
	char *conn; /* NULL for X_REFUSED */
	char label[32];
	double v;
};

struct ids_metrics {
	pthread_mutex_t mu;
	struct conn_stats *c;
	size_t n;
	struct ids_licence_status *lic; /* company and role owned */
	size_t nlic;
	struct scim_stats *sc; /* SCIM requests, recorded by the listener's thread */
	size_t nsc;
	struct extra *x;
	size_t nx;
};

int ids_metrics_new(struct ids_metrics **ret)
{
	struct ids_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->mu, NULL);
	*ret = m;
	return 0;
}

static void lic_free(struct ids_licence_status *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free((char *)v[i].company);
		free((char *)v[i].role);
	}
	free(v);
}

/* v[0..n) with its strings copied, or NULL (out of memory). */
static struct ids_licence_status *lic_copy(const struct ids_licence_status *v, size_t n)
{
	struct ids_licence_status *c = calloc(n ? n : 1, sizeof(*c));
	for (size_t i = 0; c && i < n; i++) {
		c[i] = v[i];
		c[i].company = strdup(v[i].company);
		c[i].role = strdup(v[i].role);
		if (!c[i].company || !c[i].role) {
			lic_free(c, i + 1);
			c = NULL;
		}
	}
	return c;
}

void ids_metrics_free(struct ids_metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->c[i].name);
	free(m->c);
	lic_free(m->lic, m->nlic);
	for (size_t i = 0; i < m->nsc; i++)
		free(m->sc[i].name);
	free(m->sc);
	for (size_t i = 0; i < m->nx; i++)
		free(m->x[i].conn);
	free(m->x);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* m->mu held */
static struct conn_stats *stats_of(struct ids_metrics *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->c[i].name, name) == 0)
			return &m->c[i];
	struct conn_stats *c = realloc(m->c, (m->n + 1) * sizeof(*c));
	if (!c)
		return NULL;
	m->c = c;
	c = &m->c[m->n];
	memset(c, 0, sizeof(*c));
	if (!(c->name = strdup(name)))
		return NULL;
	m->n++;
	return c;
}

static void count_status(struct conn_stats *c, const char *status)
{
	for (size_t i = 0; i < MAX_STATUSES; i++) {
		if (!c->runs[i].status[0])
			snprintf(c->runs[i].status, sizeof(c->runs[i].status), "%s", status);
		if (strcmp(c->runs[i].status, status) == 0) {
			c->runs[i].n++;
			return;
		}
	}
}

int ids_metrics_record(struct ids_metrics *m, const char *connector, const struct ids_sync_result *res,
		       double seconds, time_t now)
{
	pthread_mutex_lock(&m->mu);
	struct conn_stats *c = stats_of(m, connector);
	if (!c) {
		pthread_mutex_unlock(&m->mu);
		return -ENOMEM;
	}
	count_status(c, res->status ? res->status : "failed");
	size_t b = 0;
	while (b < NBUCKETS && seconds > buckets[b])
		b++;
	if (b < NBUCKETS)
		c->bucket[b]++;
	c->count++;
	c->sum += seconds;
	const double t[6] = {res->t.fetch, res->t.resolve, res->t.rules,
			     res->t.load,  res->t.diff,	   res->t.apply};
	memcpy(c->phase, t, sizeof(t));
	c->held = res->held_run != 0;
	if (res->exit_code == IDS_EXIT_OK) {
		/* an aborted plan's counts are what was NOT done: only an ok
		 * run's changes happened */
		const struct ids_plan_counts *k = &res->counts;
		const long d[6] = {k->created,	   k->updated,	    k->deactivated,
				   k->reactivated, k->grants_added, k->grants_removed};
		for (size_t i = 0; i < 6; i++)
			c->changes[i] += d[i] > 0 ? (uint64_t)d[i] : 0;
		c->last_success = now;
		c->users_seen = k->users_seen;
		c->conflicts = k->conflicts;
	}
	pthread_mutex_unlock(&m->mu);
	return 0;
}

int ids_metrics_licences(struct ids_metrics *m, const struct ids_licence_status *v, size_t n)
{
	struct ids_licence_status *c = lic_copy(v, n);
	if (!c)
		return -ENOMEM;
	pthread_mutex_lock(&m->mu);
	struct ids_licence_status *old = m->lic;
	size_t nold = m->nlic;
	m->lic = c;
	m->nlic = n;
	pthread_mutex_unlock(&m->mu);
	lic_free(old, nold);
	return 0;
}

/* Adds v to (or with set, sets) the series (kind, conn, label). */
static int extra_put(struct ids_metrics *m, enum extra_kind kind, const char *conn, const char *label,
		     double v, bool set)
{
	int r = 0;
	pthread_mutex_lock(&m->mu);
	struct extra *x = NULL;
	for (size_t i = 0; i < m->nx && !x; i++)
		if (m->x[i].kind == kind && !strcmp(m->x[i].conn ? m->x[i].conn : "", conn ? conn : "") &&
		    !strcmp(m->x[i].label, label))
			x = &m->x[i];
	if (!x && (x = realloc(m->x, (m->nx + 1) * sizeof(*x)))) {
		m->x = x;
		x = &m->x[m->nx];
		*x = (struct extra){.kind = kind, .conn = conn ? strdup(conn) : NULL};
		snprintf(x->label, sizeof(x->label), "%s", label);
		if (conn && !x->conn)
			x = NULL;
		else
			m->nx++;
	}
	if (x)
		x->v = set ? v : x->v + v;
	else
		r = -ENOMEM;
	pthread_mutex_unlock(&m->mu);
	return r;
}

int ids_metrics_targeted(struct ids_metrics *m, const char *connector, const char *outcome)
{
	return extra_put(m, X_TARGETED, connector, outcome, 1, false);
}

int ids_metrics_targeted_refused(struct ids_metrics *m, const char *reason)
{
	return extra_put(m, X_REFUSED, NULL, reason, 1, false);
}

int ids_metrics_feed_reset(struct ids_metrics *m, const char *connector, const char *reason)
{
	return extra_put(m, X_RESET, connector, reason, 1, false);
}

int ids_metrics_managed(struct ids_metrics *m, const char *connector, long users, long grants)
{
	int r = extra_put(m, X_USERS, connector, "", (double)users, true);
	return r < 0 ? r : extra_put(m, X_GRANTS, connector, "", (double)grants, true);
}

int ids_metrics_persist(struct ids_metrics *m, const char *connector, bool up, bool outage)
{
	int r = extra_put(m, X_PERSIST_UP, connector, "", up ? 1 : 0, true);
	return r < 0 || !outage ? r : extra_put(m, X_PERSIST_LOST, connector, "", 1, false);
}

int ids_metrics_label(struct ids_buf *out, const char *v)
{
	int r = 0;
	for (; *v && r >= 0; v++) {
		if (*v == '\\')
			r = ids_buf_puts(out, "\\\\");
		else if (*v == '"')
			r = ids_buf_puts(out, "\\\"");
		else if (*v == '\n')
			r = ids_buf_puts(out, "\\n");
		else
			r = ids_buf_putc(out, *v);
	}
	return r;
}

/* "name{connector="x"" — the caller adds more labels and the "}" */
static int series(struct ids_buf *out, const char *name, const struct conn_stats *c)
{
	int r = ids_buf_printf(out, "%s{connector=\"", name);
	if (r >= 0)
		r = ids_metrics_label(out, c->name);
	return r < 0 ? r : ids_buf_putc(out, '"');
}

static int head(struct ids_buf *out, const char *name, const char *type, const char *help)
{
	return ids_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int fmt_runs(struct ids_buf *out, const struct conn_stats *c, size_t n)
{
	int r =
	    head(out, "idsyncd_runs_total", "counter", "Runs by connector and outcome (sync_run.status).");
	for (size_t i = 0; i < n && r >= 0; i++)
		for (size_t j = 0; j < MAX_STATUSES && c[i].runs[j].status[0] && r >= 0; j++) {
			r = series(out, "idsyncd_runs_total", &c[i]);
			if (r >= 0)
				r = ids_buf_puts(out, ",status=\"");
			if (r >= 0)
				r = ids_metrics_label(out, c[i].runs[j].status);
			if (r >= 0)
				r = ids_buf_printf(out, "\"} %llu\n", (unsigned long long)c[i].runs[j].n);
		}
	return r;
}

static int fmt_duration(struct ids_buf *out, const struct conn_stats *c, size_t n)
{
	const char *h = "idsyncd_run_duration_seconds";
	int r = head(out, h, "histogram", "Wall time of a run, from its start to its outcome.");
	for (size_t i = 0; i < n && r >= 0; i++) {
		uint64_t cum = 0;
		for (size_t b = 0; b <= NBUCKETS && r >= 0; b++) {
			cum += b < NBUCKETS ? c[i].bucket[b] : 0;
			r = series(out, "idsyncd_run_duration_seconds_bucket", &c[i]);
			if (r >= 0 && b < NBUCKETS)
				r = ids_buf_printf(out, ",le=\"%g\"} %llu\n", buckets[b],
						   (unsigned long long)cum);
			else if (r >= 0)
				r = ids_buf_printf(out, ",le=\"+Inf\"} %llu\n",
						   (unsigned long long)c[i].count);
		}
		if (r >= 0 && (r = series(out, "idsyncd_run_duration_seconds_sum", &c[i])) >= 0)
			r = ids_buf_printf(out, "} %.9g\n", c[i].sum);
		if (r >= 0 && (r = series(out, "idsyncd_run_duration_seconds_count", &c[i])) >= 0)
			r = ids_buf_printf(out, "} %llu\n", (unsigned long long)c[i].count);
	}
	return r;
}

static int fmt_phases(struct ids_buf *out, const struct conn_stats *c, size_t n)
{
	int r = head(out, "idsyncd_last_run_phase_seconds", "gauge",
		     "Seconds the connector's last run spent in each phase.");
	for (size_t i = 0; i < n && r >= 0; i++)
		for (size_t p = 0; p < 6 && r >= 0; p++)
			if ((r = series(out, "idsyncd_last_run_phase_seconds", &c[i])) >= 0)
				r = ids_buf_printf(out, ",phase=\"%s\"} %.9g\n", phases[p], c[i].phase[p]);
	return r;
}

static int fmt_changes(struct ids_buf *out, const struct conn_stats *c, size_t n)
{
	int r = head(out, "idsyncd_changes_total", "counter",
		     "Changes applied by successful runs, by kind (held plans not included).");
	for (size_t i = 0; i < n && r >= 0; i++)
		for (size_t k = 0; k < 6 && r >= 0; k++)
			if ((r = series(out, "idsyncd_changes_total", &c[i])) >= 0)
				r = ids_buf_printf(out, ",kind=\"%s\"} %llu\n", kinds[k],
						   (unsigned long long)c[i].changes[k]);
	return r;
}

/* The one-value-per-connector gauges. */
static int fmt_gauges(struct ids_buf *out, const struct conn_stats *c, size_t n)
{
	static const struct {
		const char *name, *help;
	} g[4] = {
	    {"idsyncd_last_success_timestamp_seconds",
	     "Unix time the connector's last successful run ended (absent: none since start)."},
	    {"idsyncd_users_seen", "Users in scope the last successful run read from the source."},
	    {"idsyncd_conflicts", "Identity conflicts the last successful run left unresolved."},
	    {"idsyncd_held_plans", "1 when the connector's last run was held by a safety threshold."},
	};
	int r = 0;
	for (size_t k = 0; k < 4 && r >= 0; k++) {
		r = head(out, g[k].name, "gauge", g[k].help);
		for (size_t i = 0; i < n && r >= 0; i++) {
			const long v[4] = {(long)c[i].last_success, c[i].users_seen, c[i].conflicts,
					   c[i].held};
			if (k == 0 && !c[i].last_success)
				continue; /* a 0 timestamp would read as "stale since 1970" */
			if ((r = series(out, g[k].name, &c[i])) >= 0)
				r = ids_buf_printf(out, "} %ld\n", v[k]);
		}
	}
	return r;
}

/* The licence gauges (issue 20): one series per company and role of the
 * configuration, as the database had them after the last run. */
static int fmt_licences(struct ids_buf *out, const struct ids_licence_status *v, size_t n)
{
	static const struct {
		const char *name, *help;
	} g[3] = {
	    {"idsyncd_licence_seats_used", "Active users of the company holding the licensed role."},
	    {"idsyncd_licence_seats_limit", "Seats the licence allows (configuration `licences:`)."},
	    {"idsyncd_licence_seats_waiting", "Users the rules entitle to the role who wait for a seat."},
	};
	int r = 0;
	for (size_t k = 0; k < 3 && n && r >= 0; k++) {
		r = head(out, g[k].name, "gauge", g[k].help);
		for (size_t i = 0; i < n && r >= 0; i++) {
			const long val[3] = {v[i].used, v[i].limit, v[i].waiting};
			r = ids_buf_printf(out, "%s{company=\"", g[k].name);
			if (r >= 0)
				r = ids_metrics_label(out, v[i].company);
			if (r >= 0)
				r = ids_buf_puts(out, "\",role=\"");
			if (r >= 0)
				r = ids_metrics_label(out, v[i].role);
			if (r >= 0)
				r = ids_buf_printf(out, "\"} %ld\n", val[k]);
		}
	}
	return r;
}

/* One kind's series: the head, then name{connector="c",label="v"} n. */
static int fmt_extra_kind(struct ids_buf *out, const struct extra *x, size_t nx, enum extra_kind k)
{
	static const struct {
		const char *name, *type, *label, *help;
	} d[X_KINDS] = {
	    {"idsyncd_targeted_syncs_total", "counter", "outcome",
	     "Targeted syncs requested by NOTIFY idsyncd_sync_user, by outcome (the run's status, or "
	     "coalesced, rate_limited, queue_full)."},
	    {"idsyncd_targeted_refused_total", "counter", "reason",
	     "NOTIFY idsyncd_sync_user requests refused: malformed, unknown_connector."},
	    {"idsyncd_feed_resets_total", "counter", "reason",
	     "Change feed reads that fell back to reading everything, by reason."},
	    {"idsyncd_users_managed", "gauge", NULL,
	     "Active users the connector manages, after its last ok run."},
	    {"idsyncd_grants_managed", "gauge", NULL,
	     "Grant rows the connector manages (roles, channels, slot limits, operator groups), after its "
	     "last ok run."},
	    {"idsyncd_persist_up", "gauge", NULL,
	     "1 while this daemon holds the connector's persistent search open (changes.persist), else 0."},
	    {"idsyncd_persist_outages_total", "counter", NULL,
	     "Times the connector's persistent search dropped or could not be opened (each outage once, "
	     "however many reconnection attempts it took)."},
	};
	/* a family without a series is left out (no targeted sync yet, no
	 * reset): the text of a daemon without them stays what it was */
	size_t any = 0;
	while (any < nx && x[any].kind != k)
		any++;
	if (any == nx)
		return 0;
	int r = head(out, d[k].name, d[k].type, d[k].help);
	for (size_t i = any; i < nx && r >= 0; i++) {
		if (x[i].kind != k)
			continue;
		const char *sep = "";
		r = ids_buf_printf(out, "%s{", d[k].name);
		if (r >= 0 && x[i].conn) {
			if ((r = ids_buf_puts(out, "connector=\"")) >= 0 &&
			    (r = ids_metrics_label(out, x[i].conn)) >= 0)
				r = ids_buf_putc(out, '"');
			sep = ",";
		}
		if (r >= 0 && d[k].label && (r = ids_buf_printf(out, "%s%s=\"", sep, d[k].label)) >= 0 &&
		    (r = ids_metrics_label(out, x[i].label)) >= 0)
			r = ids_buf_putc(out, '"');
		if (r >= 0)
			r = ids_buf_printf(out, "} %.17g\n", x[i].v);
	}
	return r;
}

/* ---- SCIM requests ---- */

/* m->mu held */
static struct scim_stats *scim_of(struct ids_metrics *m, const char *name)
{
	for (size_t i = 0; i < m->nsc; i++)
		if (strcmp(m->sc[i].name, name) == 0)
			return &m->sc[i];
	struct scim_stats *c = realloc(m->sc, (m->nsc + 1) * sizeof(*c));
	if (!c)
		return NULL;
	m->sc = c;
	c = &m->sc[m->nsc];
	memset(c, 0, sizeof(*c));
	if (!(c->name = strdup(name)))
		return NULL;
	m->nsc++;
	return c;
}

int ids_metrics_scim(struct ids_metrics *m, const char *connector, unsigned status, double seconds)
{
	pthread_mutex_lock(&m->mu);
	struct scim_stats *c = scim_of(m, connector ? connector : "");
	if (!c) {
		pthread_mutex_unlock(&m->mu);
		return -ENOMEM;
	}
	for (size_t i = 0; i < SCIM_STATUSES; i++) {
		if (!c->st[i].status)
			c->st[i].status = status;
		if (c->st[i].status == status) {
			c->st[i].n++;
			break;
		}
	}
	size_t b = 0;
	while (b < SCIM_NB && seconds > scim_buckets[b])
		b++;
	if (b < SCIM_NB)
		c->bucket[b]++;
	c->count++;
	c->sum += seconds;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int fmt_scim_one(struct ids_buf *out, const struct scim_stats *c)
{
	const struct conn_stats k = {.name = c->name};
	int r = 0;
	uint64_t cum = 0;
	for (size_t b = 0; b <= SCIM_NB && r >= 0; b++) {
		cum += b < SCIM_NB ? c->bucket[b] : 0;
		if ((r = series(out, "idsyncd_scim_request_duration_seconds_bucket", &k)) < 0)
			break;
		if (b < SCIM_NB)
			r = ids_buf_printf(out, ",le=\"%g\"} %llu\n", scim_buckets[b],
					   (unsigned long long)cum);
		else
			r = ids_buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)c->count);
	}
	if (r >= 0 && (r = series(out, "idsyncd_scim_request_duration_seconds_sum", &k)) >= 0)
		r = ids_buf_printf(out, "} %.9g\n", c->sum);
	if (r >= 0 && (r = series(out, "idsyncd_scim_request_duration_seconds_count", &k)) >= 0)
		r = ids_buf_printf(out, "} %llu\n", (unsigned long long)c->count);
	return r;
}

/* The SCIM series, from a copy taken under the mutex; none without a
 * SCIM request yet (a daemon without a scim: block shows none). */
static int fmt_scim(struct ids_metrics *m, struct ids_buf *out)
{
	pthread_mutex_lock(&m->mu);
	size_t n = m->nsc;
	struct scim_stats *c = n ? calloc(n, sizeof(*c)) : NULL;
	int r = n && !c ? -ENOMEM : 0;
	for (size_t i = 0; c && i < n; i++)
		if (!(c[i] = m->sc[i], c[i].name = strdup(m->sc[i].name)))
			r = -ENOMEM;
	pthread_mutex_unlock(&m->mu);
	if (r >= 0 && n)
		r = head(out, "idsyncd_scim_requests_total", "counter",
			 "SCIM requests answered, by connector and HTTP status.");
	for (size_t i = 0; i < n && r >= 0; i++)
		for (size_t j = 0; j < SCIM_STATUSES && c[i].st[j].status && r >= 0; j++)
			if ((r = series(out, "idsyncd_scim_requests_total",
					&(struct conn_stats){.name = c[i].name})) >= 0)
				r = ids_buf_printf(out, ",status=\"%u\"} %llu\n", c[i].st[j].status,
						   (unsigned long long)c[i].st[j].n);
	if (r >= 0 && n)
		r = head(out, "idsyncd_scim_request_duration_seconds", "histogram",
			 "Seconds from a SCIM request's headers to its answer (the commit included).");
	for (size_t i = 0; i < n && r >= 0; i++)
		r = fmt_scim_one(out, &c[i]);
	for (size_t i = 0; c && i < n; i++)
		free(c[i].name);
	free(c);
	return r;
}

/* The series of extra_put, copied under the mutex and formatted without. */
static int fmt_extra(struct ids_metrics *m, struct ids_buf *out)
{
	pthread_mutex_lock(&m->mu);
	size_t nx = m->nx;
	struct extra *x = nx ? calloc(nx, sizeof(*x)) : NULL;
	int r = nx && !x ? -ENOMEM : 0;
	for (size_t i = 0; i < nx && x; i++) {
		x[i] = m->x[i];
		if (m->x[i].conn && !(x[i].conn = strdup(m->x[i].conn)))
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&m->mu);
	for (int k = 0; k < X_KINDS && r >= 0; k++)
		r = fmt_extra_kind(out, x, nx, (enum extra_kind)k);
	for (size_t i = 0; i < nx && x; i++)
		free(x[i].conn);
	free(x);
	return r;
}

int ids_metrics_format(struct ids_metrics *m, struct ids_buf *out)
{
	pthread_mutex_lock(&m->mu);
	size_t n = m->n;
	struct conn_stats *c = n ? calloc(n, sizeof(*c)) : NULL;
	if (n && !c) {
		pthread_mutex_unlock(&m->mu);
		return -ENOMEM;
	}
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		c[i] = m->c[i];
		if (!(c[i].name = strdup(m->c[i].name)))
			r = -ENOMEM;
	}
	size_t nlic = m->nlic;
	struct ids_licence_status *lic = nlic ? lic_copy(m->lic, nlic) : NULL;
	if (nlic && !lic)
		r = -ENOMEM;
	pthread_mutex_unlock(&m->mu);
	if (r >= 0)
		r = fmt_runs(out, c, n);
	if (r >= 0)
		r = fmt_duration(out, c, n);
	if (r >= 0)
		r = fmt_phases(out, c, n);
	if (r >= 0)
		r = fmt_changes(out, c, n);
	if (r >= 0)
		r = fmt_gauges(out, c, n);
	if (r >= 0)
		r = fmt_licences(out, lic, nlic);
	lic_free(lic, nlic);
	if (r >= 0)
		r = fmt_scim(m, out);
	if (r >= 0)
		r = fmt_extra(m, out);
	for (size_t i = 0; i < n; i++)
		free(c[i].name);
	free(c);
	return r;
}

/* ------------------------------------------------------------------ */
/* the listener                                                        */

struct ids_metrics_server {
	struct MHD_Daemon *mhd;
	struct ids_metrics *m;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, const char *type)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	enum MHD_Result r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **state)
{
	struct ids_metrics_server *s = cls;
	struct ids_buf b = {0};
	/* a body is never expected: refuse rather than buffer it */
	if (*upload_size)
		return MHD_NO;
	if (strcmp(url, "/metrics") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, strdup("not found: only /metrics is served\n"),
			     "text/plain; charset=utf-8");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("GET only\n"),
			     "text/plain; charset=utf-8");
	if (ids_metrics_format(s->m, &b) < 0 || ids_buf_putc(&b, '\0') < 0) {
		ids_buf_free(&b);
		return MHD_NO;
	}
	char *text = ids_buf_steal(&b);
	return text ? reply(conn, MHD_HTTP_OK, text, "text/plain; version=0.0.4; charset=utf-8") : MHD_NO;
}

int ids_metrics_server_start(const char *listen, struct ids_metrics *m, struct ids_metrics_server **ret,
			     struct ids_error *err)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
	char *host = NULL;
	int port = 0;
	bool loopback = false;
	*ret = NULL;
	if (ids_config_scim_listen(listen, &host, &port, &loopback) < 0 || !host) {
		free(host);
		return ids_error_set(err, IDS_E_CONFIG, "metrics.listen: expected HOST:PORT, not %s", listen);
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		flags |= MHD_USE_IPv6;
	} else {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, strcasecmp(host, "localhost") ? host : "127.0.0.1", &in4->sin_addr);
	}
	free(host);
	struct ids_metrics_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->m = m;
	/* a handful of scrapers at most: a small cap, short timeouts */
	s->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &ss,
				  MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				  MHD_OPTION_END);
	if (!s->mhd) {
		free(s);
		return ids_error_set(err, IDS_E_CONNECT, "metrics.listen: cannot listen on %s", listen);
	}
	*ret = s;
	return 0;
}

void ids_metrics_server_stop(struct ids_metrics_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->mhd);
	free(s);
}
