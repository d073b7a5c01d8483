/* ldap_conn.c — the LDAP connector's connection: connect, TLS, bind,
 * URI failover, and every wait for the server (see ldap_int.h).
 *
 * Rules this file keeps, and why:
 * - Every TLS option is set on the connection handle and followed by
 *   LDAP_OPT_X_TLS_NEWCTX: libldap otherwise uses the process-wide context,
 *   where ldap.conf or LDAPTLS_REQCERT=never may have weakened verification.
 * - Never send on a handle whose connection was lost: libldap would quietly
 *   open a new default connection — without StartTLS and without a bind.
 *   A lost connection is dropped and replaced by a fresh connect + bind.
 * - No libldap call blocks for longer than a slice (SLICE_USEC): the
 *   daemon's progress hook must run at least that often, to ping the
 *   systemd watchdog and to see a SIGTERM or run_timeout, whatever the
 *   server does.  StartTLS, the bind, every page and every ranged read
 *   are sent asynchronously and their answers awaited with ldap_result()
 *   in slices (ids_ldap_wait()); the socket is non-blocking once
 *   connected, so that a read stuck in the middle of a TLS record returns
 *   to us too.  The TCP connect and the TLS handshake have no asynchronous
 *   form in libldap (LDAP_OPT_CONNECT_ASYNC leaves the handshake blocking,
 *   and GnuTLS busy-loops on a non-blocking one): they run on a helper
 *   thread while this one waits in slices (run_blocking()); past the
 *   timeout or on a stop the socket is shut down, which any read sees as
 *   end of file.  The connector's `timeout:` bounds each wait.
 * - A refused bind stops the failover: a replica would refuse it too, and
 *   each attempt may count towards a lockout.
 * - The password goes to libldap and into no message. */
#include <errno.h>
#include <ldap.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ids/util.h"
#include "ldap_int.h"

/* Trust anchors when tls_ca_file is not set.  libldap's GnuTLS backend
 * loads no system store by itself, and the daemon runs with LDAPNOINIT
 * (no ldap.conf), so the bundle is named explicitly.  None found: nothing
 * is trusted and the handshake fails, which is the safe way to fail. */
static const char *const system_ca_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
    "/etc/pki/tls/certs/ca-bundle.crt",	  /* RHEL, Fedora */
    "/etc/ssl/ca-bundle.pem",		  /* SUSE */
    "/etc/ssl/cert.pem",		  /* BSDs, macOS */
    NULL,
};

/* The server's diagnostic message of the last operation on ld: new
 * (ldap_memfree), NULL when there is none. */
char *ids_ldap_diag(LDAP *ld)
{
	char *m = NULL;
	if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &m) != LDAP_OPT_SUCCESS)
		m = NULL;
	return m;
}

/* "Invalid credentials (49): server text" — the code's name, the number
 * and the server's own words when it gave any. */
int ids_ldap_error(struct ids_error *e, int code, int lrc, const char *srvmsg, const char *fmt, ...)
{
	char *ctx = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&ctx, fmt, ap) < 0)
		ctx = NULL;
	va_end(ap);
	ids_error_set(e, code, "%s: %s (%d)%s%s", ctx ? ctx : "LDAP", ldap_err2string(lrc), lrc,
		      srvmsg && *srvmsg ? ": " : "", srvmsg && *srvmsg ? srvmsg : "");
	free(ctx);
	return code;
}

/* Translation of a libldap / LDAP result code at the seam. */
int ids_ldap_map_lrc(int lrc)
{
	switch (lrc) {
	case LDAP_SUCCESS: return 0;
	case LDAP_NO_MEMORY: return -ENOMEM;
	case LDAP_TIMEOUT: return IDS_E_TIMEOUT;
	case LDAP_SERVER_DOWN:
	case LDAP_CONNECT_ERROR: return IDS_E_CONNECT;
	case LDAP_SIZELIMIT_EXCEEDED:
	case LDAP_TIMELIMIT_EXCEEDED:
	case LDAP_ADMINLIMIT_EXCEEDED: return IDS_E_LIMIT;
	case LDAP_DECODING_ERROR:
	case LDAP_PROTOCOL_ERROR: return IDS_E_PROTOCOL;
	default: return IDS_E_SERVER;
	}
}

/* Bind results that mean "these credentials are not accepted" (wrong,
 * expired or locked, or a method the server refuses): the daemon backs
 * off on them instead of hammering the account. */
static bool is_auth_failure(int lrc)
{
	switch (lrc) {
	case LDAP_INVALID_CREDENTIALS:
	case LDAP_INAPPROPRIATE_AUTH:
	case LDAP_STRONG_AUTH_REQUIRED:
	case LDAP_CONFIDENTIALITY_REQUIRED:
	case LDAP_AUTH_METHOD_NOT_SUPPORTED:
	case LDAP_INSUFFICIENT_ACCESS:
	case LDAP_UNWILLING_TO_PERFORM: /* locked account (ppolicy), AD's "data 533/775" */
	case LDAP_CONSTRAINT_VIOLATION: return true;
	default: return false;
	}
}

/* Calls the daemon's progress hook (watchdog, SIGTERM, run_timeout). */
int ids_ldap_tick(struct pull *p, const char *when)
{
	p->in_page = 0;
	if (!p->ctx || !p->ctx->progress)
		return 0;
	int r = p->ctx->progress(p->ctx->ud);
	if (r >= 0)
		return 0;
	/* keep the daemon's reason (IDS_E_TIMEOUT for run_timeout) */
	if (r != IDS_E_TIMEOUT && r != IDS_E_CANCELLED)
		r = IDS_E_CANCELLED;
	p->stopped = true;
	return ids_error_set(p->err, r, "LDAP pull stopped %s: %s", when,
			     r == IDS_E_TIMEOUT ? "run_timeout reached" : "cancelled");
}

/* Waits `sec` seconds for a reconnect, feeding the watchdog each second. */
int ids_ldap_backoff(struct pull *p, int sec)
{
	for (int i = 0; i < sec; i++) {
		int r = ids_ldap_tick(p, "while waiting to reconnect");
		if (r < 0)
			return r;
		struct timespec ts = {1, 0};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return 0;
}

/* ---------------- waiting in slices ---------------- */

/* How long one wait for the server lasts before the progress hook runs
 * again.  The daemon pings at half of WatchdogSec, so a ping comes at
 * most one slice late; a quarter of a second keeps it close to on time,
 * and a SIGTERM is seen within the same quarter.  Waking four times a
 * second costs nothing next to a stalled server. */
#define SLICE_USEC 250000

/* Waits for the answer to msgid (`all` as for ldap_result: the whole
 * answer or its next message) for up to p->timeout seconds, in slices,
 * with the progress hook between them.  Returns the message type (> 0)
 * with *ret_msg set (new: ldap_msgfree), 0 when nothing came within the
 * timeout, -1 on a libldap error (LDAP_OPT_RESULT_CODE says which), or
 * the hook's code (< -1, p->err set) when the pull must stop. */
int ids_ldap_wait(struct pull *p, int msgid, int all, const char *when, LDAPMessage **ret_msg)
{
	int64_t deadline = ids_mono_usec() + (int64_t)p->timeout * 1000000;
	for (;;) {
		int64_t left = deadline - ids_mono_usec();
		if (left <= 0)
			return 0;
		if (left > SLICE_USEC)
			left = SLICE_USEC;
		struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
		int type = ldap_result(p->ld, msgid, all, &tv, ret_msg);
		if (type != 0)
			return type;
		int r = ids_ldap_tick(p, when);
		if (r < 0)
			return r;
	}
}

/* Ends whatever read or write the helper thread is blocked in: a shut
 * down socket reads as end of file, which every layer (libldap, GnuTLS)
 * turns into an error.  Under fd_mu: the socket cannot be closed (and
 * its number reused) in between. */
static void cut_socket(struct pull *p)
{
	pthread_mutex_lock(&p->fd_mu);
	if (p->fd >= 0)
		shutdown(p->fd, SHUT_RDWR);
	pthread_mutex_unlock(&p->fd_mu);
}

/* One call on the helper thread, and how it ended. */
struct blocking {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC: a clock step must not stretch a slice */
	LDAP *ld;
	int (*fn)(LDAP *ld);
	int lrc;
	bool done;
};

static void *blocking_main(void *arg)
{
	struct blocking *b = arg;
	int lrc = b->fn(b->ld);
	pthread_mutex_lock(&b->mu);
	b->lrc = lrc;
	b->done = true;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* Waits for b->done in slices; see run_blocking(). */
static int await_blocking(struct pull *p, struct blocking *b, const char *when)
{
	int64_t deadline = ids_mono_usec() + (int64_t)(p->timeout + 1) * 1000000;
	int r = 0;
	pthread_mutex_lock(&b->mu);
	while (!b->done) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += SLICE_USEC * 1000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&b->cv, &b->mu, &ts);
		if (b->done)
			break;
		pthread_mutex_unlock(&b->mu);
		if (r != 0) {
			/* already cut: a TCP connect has no socket to shut down
			 * yet and ends at its network timeout; keep the watchdog
			 * fed meanwhile */
			if (p->ctx && p->ctx->progress)
				p->ctx->progress(p->ctx->ud);
		} else if ((r = ids_ldap_tick(p, when)) < 0 || (ids_mono_usec() >= deadline && (r = 1))) {
			cut_socket(p);
		}
		pthread_mutex_lock(&b->mu);
	}
	pthread_mutex_unlock(&b->mu);
	return r;
}

/* Runs fn(ld) — ldap_connect() or ldap_install_tls(), which libldap
 * cannot make asynchronous — on a helper thread, while this thread waits
 * in slices with the progress hook between them.  Past the timeout (+1 s,
 * so that libldap's own network timeout reports first where it works),
 * or when the hook says stop, the socket is shut down and the call
 * returns.  0 with *ret_lrc set: the call returned by itself; 1: it
 * overran the timeout; < 0: the pull must stop (p->err set). */
static int run_blocking(struct pull *p, LDAP *ld, int (*fn)(LDAP *), const char *when, int *ret_lrc)
{
	struct blocking b = {.ld = ld, .fn = fn};
	pthread_condattr_t ca;
	pthread_t th;
	sigset_t all, old;
	int r;

	if ((r = pthread_mutex_init(&b.mu, NULL)) != 0)
		return ids_error_set(p->err, -r, "LDAP pull: cannot set up a wait %s: %s", when, strerror(r));
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	r = pthread_cond_init(&b.cv, &ca);
	pthread_condattr_destroy(&ca);
	if (r == 0) {
		/* the thread must not take the daemon's signals (SIGTERM, SIGHUP) */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		r = pthread_create(&th, NULL, blocking_main, &b);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r != 0)
			pthread_cond_destroy(&b.cv);
	}
	if (r != 0) {
		pthread_mutex_destroy(&b.mu);
		return ids_error_set(p->err, -r, "LDAP pull: cannot start a thread %s: %s", when,
				     strerror(r));
	}
	r = await_blocking(p, &b, when);
	pthread_join(th, NULL);
	pthread_cond_destroy(&b.cv);
	pthread_mutex_destroy(&b.mu);
	*ret_lrc = b.lrc;
	return r;
}

/* libldap's connect callbacks: a new socket is connected (before any TLS)
 * or is about to be closed.  Called on the helper thread or this one. */
static int conn_add(LDAP *ld, Sockbuf *sb, LDAPURLDesc *srv, struct sockaddr *addr, struct ldap_conncb *ctx)
{
	struct pull *p = ctx->lc_arg;
	int fd = -1;
	ber_sockbuf_ctrl(sb, LBER_SB_OPT_GET_FD, &fd);
	pthread_mutex_lock(&p->fd_mu);
	p->fd = fd;
	pthread_mutex_unlock(&p->fd_mu);
	p->tcp_up = true;
	/* the network timeout has done its job (the TCP connect); keeping it
	 * would make the TLS handshake non-blocking, which GnuTLS turns into
	 * a busy loop on a silent server.  Blocking, cut_socket() ends it. */
	struct timeval none = {-1, 0};
	ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &none);
	return 0;
}

static void conn_del(LDAP *ld, Sockbuf *sb, struct ldap_conncb *ctx)
{
	struct pull *p = ctx->lc_arg;
	pthread_mutex_lock(&p->fd_mu);
	p->fd = -1;
	pthread_mutex_unlock(&p->fd_mu);
}

/* Makes ld's socket blocking or not.  Non-blocking once connected (and
 * TLS is up): a read that ldap_result() starts when a TLS record has only
 * partly arrived then comes back (EWOULDBLOCK) instead of blocking past
 * the slice.  Blocking for the TLS handshake (see conn_add()). */
static int set_blocking(LDAP *ld, bool on)
{
	Sockbuf *sb = NULL;
	if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || !sb ||
	    ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_NONBLOCK, on ? NULL : (void *)1) != 1)
		return -EIO;
	return 0;
}

/* ---------------- connecting ---------------- */

/* libldap's GnuTLS backend reports a failed verification (untrusted CA,
 * expired, wrong host name) as "Connect error" with the diagnostic
 * "(unknown error code)": this says what it means and for which host.
 * Other handshake failures keep GnuTLS's own words. */
static int tls_error(struct ids_error *e, const char *uri, const char *host, const char *step, int lrc,
		     const char *diag)
{
	bool verify = !diag || !*diag || strstr(diag, "unknown error") || strstr(diag, "certificate") ||
		      strstr(diag, "hostname") || strstr(diag, "verif");
	if (verify)
		return ids_error_set(
		    e, IDS_E_TLS,
		    "%s: TLS certificate verification failed for host %s during %s "
		    "(certificate not signed by the trusted CA, expired, or not issued for %s; "
		    "libldap: %s%s%s)",
		    uri, host, step, host, ldap_err2string(lrc), diag && *diag ? ": " : "",
		    diag && *diag ? diag : "");
	return ids_error_set(e, IDS_E_TLS, "%s: TLS handshake with host %s failed during %s: %s", uri, host,
			     step, diag);
}

/* A connection error of a step that involves no TLS handshake. */
static int connect_error(struct ids_error *e, const char *uri, const char *step, int lrc, const char *diag,
			 int timeout)
{
	if (lrc == LDAP_TIMEOUT)
		return ids_error_set(e, IDS_E_TIMEOUT, "%s: no answer within %d s during %s", uri, timeout,
				     step);
	return ids_ldap_error(e,
			      ids_ldap_map_lrc(lrc) == IDS_E_SERVER ? IDS_E_CONNECT : ids_ldap_map_lrc(lrc),
			      lrc, diag, "%s: %s", uri, step);
}

static const char *system_ca_bundle(void)
{
	for (size_t i = 0; system_ca_bundles[i]; i++)
		if (access(system_ca_bundles[i], R_OK) == 0)
			return system_ca_bundles[i];
	return NULL;
}

/* The TLS options of ld: verification demanded, the configured CA (or the
 * system bundle) and nothing else trusted, TLS 1.2 at least, RFC 6125 name
 * checks (a certificate with subjectAltNames is matched against those
 * only).  Then a new TLS context for this handle, built from exactly these
 * options, whatever the process-wide defaults say. */
static int set_tls_options(struct pull *p, LDAP *ld, const char *uri, struct ids_error *e)
{
	int demand = LDAP_OPT_X_TLS_DEMAND, san = LDAP_OPT_X_TLS_TRY, min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
	int is_server = 0;
	const char *ca = p->lc->tls_ca_file ? p->lc->tls_ca_file : system_ca_bundle();
	if (ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_SAN, &san) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &min) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTDIR, NULL) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, ca) != LDAP_OPT_SUCCESS)
		return ids_error_set(e, IDS_E_TLS, "%s: cannot set the TLS options", uri);
	if (ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &is_server) != LDAP_OPT_SUCCESS) {
		if (!ca)
			return ids_error_set(
			    e, IDS_E_TLS,
			    "%s: no system CA bundle found: set tls_ca_file to the CA of the server", uri);
		return ids_error_set(e, IDS_E_TLS, "%s: cannot set up TLS with the CA certificates in %s",
				     uri, ca);
	}
	return 0;
}

/* What connect_one() learned from a URI. */
struct target {
	const char *uri;
	const char *host; /* for TLS messages: "localhost" when the URI names none */
	bool ldaps;	  /* TLS from the first byte */
	bool plain;	  /* ldap:// (not ldaps://, not ldapi://) */
	bool need_tls;	  /* the session must carry TLS (ldaps:// or StartTLS) */
};

/* The answer to the request msgid on ld that connect_one() waits for
 * (StartTLS, the bind): its result code in *ret_code and the server's
 * words in *ret_diag (new: ldap_memfree).  0, 1 when nothing came within
 * the timeout, or < 0 when the pull must stop (p->err set). */
static int await_answer(struct pull *p, LDAP *ld, int msgid, const char *when, int *ret_code, char **ret_diag)
{
	LDAPMessage *res = NULL;
	LDAP *keep = p->ld;
	int code = LDAP_OTHER;
	p->ld = ld; /* ids_ldap_wait() reads p->ld; ld is not p's yet */
	int type = ids_ldap_wait(p, msgid, LDAP_MSG_ALL, when, &res);
	p->ld = keep;
	if (type == 0 || type < -1) {
		ldap_msgfree(res);
		return type == 0 ? 1 : type;
	}
	if (type < 0)
		ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &code);
	else if (ldap_parse_result(ld, res, &code, NULL, ret_diag, NULL, NULL, 1) != LDAP_SUCCESS)
		code = LDAP_DECODING_ERROR;
	*ret_code = code;
	return 0;
}

/* Binds ld as configured: SASL EXTERNAL, a simple bind, or nothing
 * (anonymous).  The password goes to libldap and nowhere else. */
static int bind_handle(struct pull *p, LDAP *ld, const char *uri, struct ids_error *e)
{
	const struct ids_ldap_cfg *lc = p->lc;
	struct berval cred = {0, ""};
	char *diag = NULL;
	int msgid = -1, lrc, r;
	if (!lc->sasl_mech && !lc->bind_dn)
		return 0;
	if (!lc->sasl_mech) {
		/* an empty password would be an "unauthenticated bind", which
		 * servers answer with success and anonymous rights (RFC 4513) */
		if (!lc->bind_password || !*lc->bind_password)
			return ids_error_set(e, IDS_E_CONFIG, "%s: the bind password of %s is empty", uri,
					     lc->bind_dn);
		cred = (struct berval){strlen(lc->bind_password), lc->bind_password};
	}
	/* EXTERNAL is one round: an empty initial response asks the server
	 * for the identity of the TLS client certificate or of the ldapi://
	 * peer, no SASL library needed on our side */
	lrc = ldap_sasl_bind(ld, lc->sasl_mech ? NULL : lc->bind_dn,
			     lc->sasl_mech ? lc->sasl_mech : LDAP_SASL_SIMPLE, &cred, NULL, NULL, &msgid);
	if (lrc == LDAP_SUCCESS && (r = await_answer(p, ld, msgid, "during the bind", &lrc, &diag)) != 0) {
		if (r == 1)
			r = ids_error_set(e, IDS_E_TIMEOUT, "%s: no answer within %d s during the bind", uri,
					  p->timeout);
		goto out;
	}
	r = 0;
	if (lrc == LDAP_SUCCESS)
		goto out;
	if (!diag)
		diag = ids_ldap_diag(ld);
	if (is_auth_failure(lrc))
		r = ids_ldap_error(e, IDS_E_AUTH, lrc, diag, "%s: bind as %s refused", uri,
				   lc->sasl_mech ? lc->sasl_mech : lc->bind_dn);
	else
		r = connect_error(e, uri, "bind", lrc, diag, p->timeout);
out:
	ldap_memfree(diag);
	return r;
}

/* A new handle for t with every option set: nothing is sent yet. */
static int new_handle(struct pull *p, const struct target *t, struct ids_error *e, LDAP **ret_ld)
{
	LDAP *ld = NULL;
	int v3 = LDAP_VERSION3, lrc, r;
	struct timeval tv = {p->timeout, 0};
	if ((lrc = ldap_initialize(&ld, t->uri)) != LDAP_SUCCESS)
		return ids_ldap_error(e, IDS_E_CONFIG, lrc, NULL, "%s: cannot use this URI", t->uri);
	/* REFERRALS off: referrals are not chased.  RESTART: a signal (the
	 * daemon's SIGTERM/SIGHUP) does not fail a read; the progress hook
	 * between slices stops the pull.  NETWORK_TIMEOUT bounds the TCP
	 * connect (conn_add() lifts it for the handshake).  The connect
	 * callback tells cut_socket() which socket to shut down. */
	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_CONNECT_CB, &p->conncb) != LDAP_OPT_SUCCESS) {
		r = ids_error_set(e, IDS_E_CONNECT, "%s: cannot set the connection options", t->uri);
		ldap_unbind_ext(ld, NULL, NULL);
		return r;
	}
	if (t->need_tls && (r = set_tls_options(p, ld, t->uri, e)) < 0) {
		ldap_unbind_ext(ld, NULL, NULL);
		return r;
	}
	*ret_ld = ld;
	return 0;
}

/* TCP, and for ldaps:// the TLS handshake, now (on the helper thread):
 * so that "cannot reach" and "cannot trust" are told apart. */
static int open_socket(struct pull *p, LDAP *ld, const struct target *t, struct ids_error *e)
{
	const char *step = t->ldaps ? "the TLS handshake" : "connect";
	char *diag = NULL;
	int lrc = LDAP_OTHER;
	p->tcp_up = false;
	int r = run_blocking(p, ld, ldap_connect, t->ldaps ? "during the TLS handshake" : "while connecting",
			     &lrc);
	if (r < 0)
		return r;
	if (r == 1 && lrc != LDAP_SUCCESS)
		return ids_error_set(e, IDS_E_TIMEOUT, "%s: no answer within %d s during %s", t->uri,
				     p->timeout, step);
	if (lrc == LDAP_SUCCESS)
		return 0;
	diag = ids_ldap_diag(ld);
	/* libldap says "Can't contact LDAP server" for a failed handshake
	 * too: TCP got through if the callback ran */
	if (t->ldaps && p->tcp_up)
		r = tls_error(e, t->uri, t->host, "the TLS handshake", lrc, diag);
	else
		r = connect_error(e, t->uri, "connect", lrc, diag, p->timeout);
	ldap_memfree(diag);
	return r;
}

/* StartTLS on a connected ldap:// handle: the extended operation
 * (asynchronous, waited for in slices), then the handshake on the helper
 * thread.  Never falls back to plaintext: a failure fails this URI. */
static int start_tls(struct pull *p, LDAP *ld, const struct target *t, struct ids_error *e)
{
	char *diag = NULL;
	int msgid = -1, lrc, r;
	/* non-blocking for the operation (a half-received answer must not
	 * block a read), blocking for the handshake (see conn_add()) */
	if (set_blocking(ld, false) < 0)
		return ids_error_set(e, IDS_E_CONNECT, "%s: cannot make the socket non-blocking", t->uri);
	lrc = ldap_start_tls(ld, NULL, NULL, &msgid);
	if (lrc == LDAP_SUCCESS && (r = await_answer(p, ld, msgid, "during StartTLS", &lrc, &diag)) != 0)
		goto out;
	r = 0;
	if (lrc != LDAP_SUCCESS) {
		if (!diag)
			diag = ids_ldap_diag(ld);
		if (lrc == LDAP_SERVER_DOWN || lrc == LDAP_CONNECT_ERROR || lrc == LDAP_TIMEOUT)
			r = connect_error(e, t->uri, "StartTLS", lrc, diag, p->timeout);
		else
			r = ids_ldap_error(e, IDS_E_TLS, lrc, diag, "%s: the server refused StartTLS",
					   t->uri);
		goto out;
	}
	if (set_blocking(ld, true) < 0) {
		r = ids_error_set(e, IDS_E_CONNECT, "%s: cannot make the socket blocking", t->uri);
		goto out;
	}
	if ((r = run_blocking(p, ld, ldap_install_tls, "during StartTLS", &lrc)) == 0 &&
	    lrc != LDAP_SUCCESS) {
		diag = ids_ldap_diag(ld);
		if (lrc == LDAP_SERVER_DOWN || lrc == LDAP_TIMEOUT)
			r = connect_error(e, t->uri, "StartTLS", lrc, diag, p->timeout);
		else
			r = tls_error(e, t->uri, t->host, "StartTLS", lrc, diag);
	}
out:
	if (r == 1)
		r = ids_error_set(e, IDS_E_TIMEOUT, "%s: no answer within %d s during StartTLS", t->uri,
				  p->timeout);
	ldap_memfree(diag);
	return r;
}

/* A read-ahead buffer between the TLS layer and the socket.  Without it
 * GnuTLS asks the socket for each record in two reads (its 5-byte header,
 * then the body), and slapd sends every entry as a record of its own: two
 * read() calls and a poll() per entry, 300,000 system calls for 100,000
 * users, which cost idsyncd as much CPU as decoding them (docs/benchmarks.md,
 * "Tier M's full no-change run").  liblber's readahead layer reads up to
 * 16 KiB at once; whatever it holds counts as data ready for libldap
 * (LBER_SB_OPT_DATA_READY), so ldap_result() and the persistent search's
 * drain (ids_ldap_watch_read) see it without a poll.  Pushed right after
 * the TCP connect, before StartTLS, so that the TLS layer lands above it;
 * for ldaps:// the TLS layer is already there and the new layer goes in
 * below it (by level), before any application data has been read. */
static int add_readahead(LDAP *ld, const struct target *t, struct ids_error *e)
{
	Sockbuf *sb = NULL;
	if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || !sb ||
	    ber_sockbuf_add_io(sb, &ber_sockbuf_io_readahead, LBER_SBIOD_LEVEL_PROVIDER, NULL) != 0)
		return ids_error_set(e, IDS_E_CONNECT, "%s: cannot add a read buffer to the connection",
				     t->uri);
	return 0;
}

/* Frees a handle that never became p->ld.  Non-blocking first: the
 * unbind request must not wait on a server that stopped reading. */
static void discard_handle(LDAP *ld)
{
	if (!ld)
		return;
	set_blocking(ld, false);
	ldap_unbind_ext(ld, NULL, NULL);
}

/* Connects to one URI: options, TCP (and TLS for ldaps://), StartTLS for
 * ldap://, bind.  On success the handle is p->ld, its socket
 * non-blocking (every later wait is ids_ldap_wait()'s). */
static int connect_one(struct pull *p, const char *uri, struct ids_error *e)
{
	LDAPURLDesc *lud = NULL;
	LDAP *ld = NULL;
	int r;

	if (ldap_url_parse(uri, &lud) != LDAP_URL_SUCCESS)
		return ids_error_set(e, IDS_E_CONFIG, "%s: not an LDAP URI", uri);
	struct target t = {.uri = uri, .host = lud->lud_host && *lud->lud_host ? lud->lud_host : "localhost"};
	t.ldaps = !strcasecmp(lud->lud_scheme, "ldaps");
	t.plain = !t.ldaps && strcasecmp(lud->lud_scheme, "ldapi") != 0;
	t.need_tls = t.ldaps || (t.plain && p->lc->start_tls);
	bool allow_plain = p->ctx && p->ctx->config && p->ctx->config->security.allow_plaintext_bind;
	/* the config loader refuses this too; a hand-built config must not
	 * slip a password onto the wire in clear either */
	if (t.plain && !t.need_tls && p->lc->bind_dn && !allow_plain) {
		r = ids_error_set(e, IDS_E_CONFIG,
				  "%s: refusing a simple bind without TLS (set start_tls, use ldaps://, or "
				  "security.allow_plaintext_bind)",
				  uri);
		goto out;
	}
	if ((r = new_handle(p, &t, e, &ld)) < 0 || (r = open_socket(p, ld, &t, e)) < 0 ||
	    (r = add_readahead(ld, &t, e)) < 0)
		goto out;
	if (t.plain && p->lc->start_tls && (r = start_tls(p, ld, &t, e)) < 0)
		goto out;
	if (t.need_tls && !ldap_tls_inplace(ld)) {
		r = ids_error_set(e, IDS_E_TLS, "%s: no TLS session after the handshake", uri);
		goto out;
	}
	if (set_blocking(ld, false) < 0) {
		r = ids_error_set(e, IDS_E_CONNECT, "%s: cannot make the socket non-blocking", uri);
		goto out;
	}
	if ((r = bind_handle(p, ld, uri, e)) < 0)
		goto out;
	p->ld = ld;
	p->uri = uri;
	p->need_tls = t.need_tls;
	ld = NULL;
	r = 0;
out:
	discard_handle(ld);
	ldap_free_urldesc(lud);
	return r;
}

/* How bad a per-URI failure is when all failed: the code of the pull is
 * the worst one (a config or TLS problem says more than a dead server). */
static int severity(int code)
{
	switch (code) {
	case IDS_E_CONFIG: return 5;
	case IDS_E_TLS: return 4;
	case IDS_E_SERVER: return 3;
	case IDS_E_TIMEOUT: return 2;
	default: return 1;
	}
}

/* Tries every URI in order.  A refused bind stops at once: a replica
 * would refuse it too, and each attempt may count towards a lockout. */
int ids_ldap_connect(struct pull *p)
{
	struct ids_buf msgs = {0};
	int worst = 0, r;
	for (size_t i = 0; i < p->lc->uri.n; i++) {
		struct ids_error e = {0};
		r = connect_one(p, p->lc->uri.v[i], &e);
		if (p->stopped) {
			/* SIGTERM or run_timeout: no next URI; p->err says why */
			ids_error_clear(&e);
			ids_buf_free(&msgs);
			return r;
		}
		if (r >= 0) {
			ids_error_clear(&e);
			ids_buf_free(&msgs);
			return 0;
		}
		if (r == IDS_E_AUTH || r == -ENOMEM) {
			ids_error_set(p->err, r, "%s", ids_error_text(&e));
			ids_error_clear(&e);
			ids_buf_free(&msgs);
			return r;
		}
		if (!worst || severity(r) > severity(worst))
			worst = r;
		if (msgs.len)
			ids_buf_puts(&msgs, "; ");
		ids_buf_puts(&msgs, ids_error_text(&e));
		ids_error_clear(&e);
	}
	if (!worst)
		r = ids_error_set(p->err, IDS_E_CONFIG, "no LDAP URI configured");
	else if (p->lc->uri.n == 1)
		r = ids_error_set(p->err, worst, "%s", msgs.p ? msgs.p : ids_strerror(worst));
	else
		r = ids_error_set(p->err, worst, "no LDAP server could be used: %s",
				  msgs.p ? msgs.p : ids_strerror(worst));
	ids_buf_free(&msgs);
	return r;
}

/* Unbinds (on the non-blocking socket: a stalled server cannot hold the
 * unbind request up) and forgets the handle. */
void ids_ldap_drop(struct pull *p)
{
	discard_handle(p->ld);
	p->ld = NULL;
}

/* True while ld still has the connection we opened, verified and bound.
 * After libldap noticed a loss it has no socket, and the next request
 * would make it reconnect on its own — in clear and anonymously. */
bool ids_ldap_alive(struct pull *p)
{
	int fd = -1;
	if (!p->ld || ldap_get_option(p->ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS || fd < 0)
		return false;
	return !p->need_tls || ldap_tls_inplace(p->ld);
}

/* The connection side of a pull: the callback that tells cut_socket()
 * each new socket, and the lock around it. */
int ids_ldap_conn_init(struct pull *p, struct ids_error *err)
{
	int r = pthread_mutex_init(&p->fd_mu, NULL);
	if (r != 0)
		return ids_error_set(err, -r, "LDAP pull: %s", strerror(r));
	p->fd = -1;
	p->conncb = (struct ldap_conncb){conn_add, conn_del, p};
	return 0;
}

void ids_ldap_conn_fini(struct pull *p)
{
	ids_ldap_drop(p);
	pthread_mutex_destroy(&p->fd_mu);
}
