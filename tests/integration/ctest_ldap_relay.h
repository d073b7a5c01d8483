/* ctest_ldap_relay.h — a TCP relay on 127.0.0.1 in front of a directory
 * that a test can stall at any moment (from the pull's progress hook, so
 * "stall before the ranged reads" is exact): while stalled it reads
 * nothing from either side and keeps both sockets open, as a silent
 * server or network does.  TLS passes through untouched (the test
 * certificates name 127.0.0.1).
 *
 * tests/harness/tcpproxy.py decides a connection's fate when it is
 * accepted; this one can stall a connection that is already in use,
 * which is what a stall between two requests of one pull needs. */
#ifndef CTEST_LDAP_RELAY_H
#define CTEST_LDAP_RELAY_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "ctest_ldap_common.h"

#define RELAY_MAX_CONNS 16

struct relay {
	int lfd;
	struct sockaddr_in target;
	char uri[64]; /* the relay's URI, same scheme as the target's */
	atomic_bool stall, stop;
	pthread_t accept_th;
	pthread_t conn_th[RELAY_MAX_CONNS];
	int conn_fd[RELAY_MAX_CONNS][2];
	atomic_int nconns;
};

struct relay_conn {
	struct relay *r;
	int a, b;
};

/* Writes all of buf to fd; false when the peer is gone. */
static inline bool relay_write_all(int fd, const char *buf, ssize_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		buf += w;
		n -= w;
	}
	return true;
}

/* One connection: bytes both ways until either side closes, nothing at
 * all while r->stall is set. */
static inline void *relay_pump(void *arg)
{
	struct relay_conn c = *(struct relay_conn *)arg;
	free(arg);
	char buf[16384];
	while (!atomic_load(&c.r->stop)) {
		if (atomic_load(&c.r->stall)) {
			usleep(20000);
			continue;
		}
		struct pollfd p[2] = {{c.a, POLLIN, 0}, {c.b, POLLIN, 0}};
		if (poll(p, 2, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = recv(p[i].fd, buf, sizeof(buf), 0);
			if (n <= 0 || !relay_write_all(i ? c.a : c.b, buf, n))
				return NULL;
		}
	}
	return NULL;
}

static inline void *relay_accept(void *arg)
{
	struct relay *r = arg;
	while (!atomic_load(&r->stop)) {
		struct pollfd p = {r->lfd, POLLIN, 0};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int a = accept(r->lfd, NULL, NULL), n = atomic_load(&r->nconns);
		if (a < 0)
			continue;
		int b = socket(AF_INET, SOCK_STREAM, 0);
		struct relay_conn *c = malloc(sizeof(*c));
		if (n >= RELAY_MAX_CONNS || b < 0 || !c ||
		    connect(b, (struct sockaddr *)&r->target, sizeof(r->target)) < 0) {
			close(a);
			if (b >= 0)
				close(b);
			free(c);
			continue;
		}
		*c = (struct relay_conn){r, a, b};
		r->conn_fd[n][0] = a;
		r->conn_fd[n][1] = b;
		if (pthread_create(&r->conn_th[n], NULL, relay_pump, c) != 0) {
			close(a);
			close(b);
			free(c);
			continue;
		}
		atomic_store(&r->nconns, n + 1);
	}
	return NULL;
}

/* Starts a relay to the host and port of `uri` (ldap:// or ldaps://, an
 * IPv4 address); r->uri is the URI to give the connector instead. */
static inline void relay_start(struct relay *r, const char *uri)
{
	LDAPURLDesc *lud = NULL;
	memset(r, 0, sizeof(*r));
	assert_int_equal(ldap_url_parse(uri, &lud), LDAP_URL_SUCCESS);
	bool ldaps = !strcasecmp(lud->lud_scheme, "ldaps");
	r->target.sin_family = AF_INET;
	r->target.sin_port = htons((uint16_t)(lud->lud_port ? lud->lud_port : ldaps ? 636 : 389));
	assert_int_equal(inet_pton(AF_INET, lud->lud_host, &r->target.sin_addr), 1);
	ldap_free_urldesc(lud);
	struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(me);
	r->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->lfd >= 0);
	assert_int_equal(bind(r->lfd, (struct sockaddr *)&me, sizeof(me)), 0);
	assert_int_equal(listen(r->lfd, 16), 0);
	assert_int_equal(getsockname(r->lfd, (struct sockaddr *)&me, &len), 0);
	snprintf(r->uri, sizeof(r->uri), "%s://127.0.0.1:%d", ldaps ? "ldaps" : "ldap", ntohs(me.sin_port));
	assert_int_equal(pthread_create(&r->accept_th, NULL, relay_accept, r), 0);
}

/* Stops the relay and closes every connection it made. */
static inline void relay_stop(struct relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->accept_th, NULL);
	for (int i = 0; i < atomic_load(&r->nconns); i++) {
		pthread_join(r->conn_th[i], NULL);
		close(r->conn_fd[i][0]);
		close(r->conn_fd[i][1]);
	}
	close(r->lfd);
}

/* ---------------- the progress hook during a stall ---------------- */

/* What a stall test's progress hook does and sees.  Once `when` says the
 * moment has come, it stalls the relay; from then on it records the gaps
 * between its calls, and after cancel_after seconds (0: never) returns
 * IDS_E_CANCELLED, as the daemon's hook does on SIGTERM. */
struct stall_hook {
	struct relay *relay;
	struct ids_snapshot **s;		    /* the snapshot being built */
	bool (*when)(const struct ids_snapshot *s); /* NULL: stalled from the start */
	double cancel_after;
	double stalled_at, last, max_gap, cancelled_at, ended;
	int calls; /* during the stall */
};

static inline int stall_progress(void *ud)
{
	struct stall_hook *h = ud;
	double now = now_s();
	if (!h->stalled_at) {
		if (h->when && !h->when(*h->s))
			return 0;
		atomic_store(&h->relay->stall, true);
		h->stalled_at = h->last = now;
		return 0;
	}
	if (now - h->last > h->max_gap)
		h->max_gap = now - h->last;
	h->last = now;
	h->calls++;
	if (h->cancel_after > 0 && now - h->stalled_at >= h->cancel_after) {
		if (!h->cancelled_at)
			h->cancelled_at = now;
		return IDS_E_CANCELLED;
	}
	return 0;
}

/* Pulls t with the stall hook h (its snapshot pointer set here). */
static inline void pull_stalled(struct tcfg *t, struct stall_hook *h, struct pulled *out)
{
	memset(out, 0, sizeof(*out));
	assert_int_equal(ids_snapshot_new(&out->s), 0);
	h->s = &out->s;
	if (!h->when)
		atomic_store(&h->relay->stall, true);
	const struct ids_pull_ctx ctx = {
	    .config = &t->config, .rule_attrs = &t->rule_attrs, .progress = stall_progress, .ud = h};
	double t0 = now_s();
	if (!h->when)
		h->stalled_at = h->last = t0;
	out->r = ids_connector_find(IDS_CONN_LDAP)->pull(&t->cc, &ctx, out->s, &out->err);
	h->ended = now_s();
	out->seconds = h->ended - t0;
	if (h->ended - h->last > h->max_gap)
		h->max_gap = h->ended - h->last;
}

/* The checks every stall test makes: the hook kept being called during
 * the stall (a gap of at most `gap` s: the connector's slice plus
 * slack), and a cancel ended the pull at once. */
static inline void assert_stall_handled(const struct stall_hook *h, double gap)
{
	if (!h->stalled_at)
		fail_msg("the stall never began");
	if (h->max_gap > gap)
		fail_msg("the progress hook went %.2f s without a call during the stall (at most %.2f)",
			 h->max_gap, gap);
	if (h->cancelled_at && h->ended - h->cancelled_at > 0.5)
		fail_msg("the pull returned %.2f s after the cancel", h->ended - h->cancelled_at);
	if (h->calls < 3)
		fail_msg("only %d progress calls during the stall", h->calls);
}

#endif
