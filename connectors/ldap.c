/* ldap.c — the LDAP connector (OpenLDAP, Active Directory, any LDAPv3
 * server) through libldap.
 *
 * One pull: connect to the first URI that works (TLS verified, bound), read
 * the users disabled_filter matches into a set, stream the users and then
 * the groups into the snapshot builder, page by page (RFC 2696), and unbind.
 * Any error fails the whole pull: the caller throws the unfinished snapshot
 * away, so a half-read directory never looks like "these users left".
 *
 * Rules this file keeps, and why:
 * - Every TLS option is set on the connection handle and followed by
 *   LDAP_OPT_X_TLS_NEWCTX: libldap otherwise uses the process-wide context,
 *   where ldap.conf or LDAPTLS_REQCERT=never may have weakened verification.
 * - Never send on a handle whose connection was lost: libldap would quietly
 *   open a new default connection — without StartTLS and without a bind.
 *   A lost connection is dropped and replaced by a fresh connect + bind.
 * - Restartable searches.  A server restarted between two pages no longer
 *   knows our cookie (unwillingToPerform, or the connection is simply gone).
 *   The builder cannot take back what it was given, so a search remembers
 *   the DN and id of every entry it emitted; a restarted search reads again
 *   from page 1 on a new connection and skips what the snapshot already
 *   has.
 *   Entries read before and after the restart are each a real state of the
 *   directory during the run — the same guarantee paging gives anyway, as
 *   the pages of one search are not a snapshot either.  At most
 *   MAX_RESTARTS per pull, then the pull fails (retried by the daemon).
 * - No libldap call blocks for longer than a slice (SLICE_MSEC): the
 *   daemon's progress hook must run at least that often, to ping the
 *   systemd watchdog and to see a SIGTERM or run_timeout, whatever the
 *   server does.  StartTLS, the bind, every page and every ranged read
 *   are sent asynchronously and their answers awaited with ldap_result()
 *   in slices (wait_result()); the socket is non-blocking once connected,
 *   so that a read stuck in the middle of a TLS record returns to us too.
 *   The TCP connect and the TLS handshake have no asynchronous form in
 *   libldap (LDAP_OPT_CONNECT_ASYNC leaves the handshake blocking, and
 *   GnuTLS busy-loops on a non-blocking one): they run on a helper thread
 *   while this one waits in slices (run_blocking()); past the timeout or
 *   on a stop the socket is shut down, which any read sees as end of
 *   file.  The connector's `timeout:` bounds each wait for the server.
 * - Limits (size/time/admin) fail the pull even with entries received.
 * - Nothing is logged here; errors carry the URI, the search and the
 *   server's own message.  The password never appears in any message.
 *
 * Active Directory:
 * - objectGUID is rendered as AD's GUID string; userAccountControl's
 *   ACCOUNTDISABLE bit disables a user.
 * - Range retrieval: a group with more members than MaxValRange (1500)
 *   comes back as `member;range=0-1499`.  Such groups are noted and read
 *   on after the group search, range by range from where the server says
 *   its answer ended, until `…-*` (read_rest()).  member_range_size asks
 *   for explicit ranges.  A failed read fails the pull; a group that
 *   changed meanwhile (uSNChanged) is read again from value 0.
 * - primaryGroupID: AD lists no user in the `member` of his primary group
 *   (Domain Users, usually).  The group is found by SID (the user's
 *   domain SID + that RID) among the groups read, and the membership
 *   added; a primary group outside the groups base is ignored, like any
 *   group that is not in the snapshot.
 * - Continuation references (AD sends them for the Configuration and DNS
 *   partitions on a search at the domain root) are skipped, not chased. */
#include "ids/connector.h"

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

#define MAX_RESTARTS 3	    /* restarted searches per pull */
#define MAX_PAGES 1000000   /* pages per search: a paging loop ends here */
#define PROGRESS_EVERY 1000 /* entries between two progress calls in a page */
/* Entries of a page held (to be decoded once the next page is asked for)
 * up to about this many bytes; past it they are decoded as they come: a
 * page of groups with a million members each is not held whole. */
#define HOLD_MAX (4u << 20)
#define DEFAULT_TIMEOUT 30 /* seconds, when the config says 0 */

/* Directory attribute per platform field (IDS_F_EXTERNAL_ID ..
 * IDS_F_DISPLAY_NAME) when the config leaves one out; per enum
 * ids_ldap_flavor.  The config loader fills the same defaults. */
static const char *const flavor_attr[3][6] = {
    [IDS_LDAP_OPENLDAP] = {"entryUUID", "uid", "mail", "givenName", "sn", "displayName"},
    [IDS_LDAP_AD] = {"objectGUID", "sAMAccountName", "mail", "givenName", "sn", "displayName"},
    [IDS_LDAP_GENERIC] = {"entryUUID", "uid", "mail", "givenName", "sn", "displayName"},
};

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

/* One attribute of the entry being read: name and values point into the
 * LDAPMessage and live as long as it does. */
struct entry_attr {
	struct berval name;
	BerVarray vals; /* new (ber_memfree); the array only */
};

struct entry {
	struct berval dn;
	struct entry_attr *a;
	size_t n, cap;
};

struct pull;
typedef int (*entry_fn)(struct pull *p, const struct entry *e);

/* One kind of search of a pull. */
struct search {
	const char *what; /* "users", "groups", "disabled users": for messages */
	const char *base;
	char *filter; /* borrowed */
	char **attrs; /* borrowed, NULL-terminated */
	entry_fn fn;
};

/* A group whose member values came back ranged and unfinished
 * ("member;range=0-1499"): the rest is read after the group search. */
struct ranged {
	const char *dn, *gid; /* p->keep: the group's DN and external id */
	const char *mattr;    /* the member attribute, borrowed (config or static) */
	const char *usn;      /* p->keep: uSNChanged when read, NULL when none */
	unsigned long next;   /* index of the first value not read yet */
};

/* A user whose primaryGroupID names a group (AD): the membership that AD
 * does not list in the group's `member`. */
struct primary {
	const char *uid; /* p->keep: the user's external id */
	uint32_t sid;	 /* index into p->sid_gid: the group's SID */
};

/* A set of 128-bit fingerprints (seen_add()): open addressing, two
 * uint64 per slot, (0, 0) empty. */
struct seen {
	uint64_t *fp;
	size_t cap, len;
};

struct pull {
	const struct ids_connector_cfg *cc;
	const struct ids_ldap_cfg *lc;
	const struct ids_pull_ctx *ctx;
	struct ids_snapshot *s;
	struct ids_error *err;
	int timeout;	     /* seconds */
	const char *attr[6]; /* directory attribute per field, borrowed */
	bool ad;	     /* objectGUID ids are binary: render them */

	LDAP *ld;	 /* NULL between a lost connection and the reconnect */
	const char *uri; /* borrowed from lc->uri: the server ld talks to */
	bool need_tls;	 /* ld must carry TLS (ldaps:// or StartTLS) */
	int restarts;

	struct ids_arena keys;	    /* keys of the two sets below */
	struct ids_strmap disabled; /* "i:ID" / "d:DN" of users disabled_filter matched */
	struct seen seen;	    /* the entries the current search emitted */
	struct entry ent;	    /* the entry being read, reused */
	struct ids_buf key;	    /* scratch for keys */
	char idtext[37];	    /* a rendered objectGUID */
	size_t in_page;		    /* entries since the last progress call */
	size_t pass_entries;	    /* entries since the current search (re)started */
	/* paging, pipelined: the request for the next page goes out before
	 * the entries of this one are decoded, so that the server prepares
	 * page n+1 while we work on page n */
	int next_msgid;	    /* that request, -1 when none is on the wire */
	LDAPMessage **msgs; /* the entries of the page being read */
	size_t nmsgs, cap_msgs;
	size_t held;		   /* their size in bytes, about */
	struct ldap_conncb conncb; /* tells us each new socket; lives as long as p */
	pthread_mutex_t fd_mu;	   /* fd: set on the helper thread, shut down from this one */
	int fd;			   /* the connection's socket, -1 when none */
	bool tcp_up;		   /* the connect callback ran: TCP is connected */
	bool stopped;		   /* the progress hook said stop: p->err says why */

	struct ids_arena keep; /* what outlives its entry: see the two below */
	struct ranged *ranged; /* groups to read on, in the order read */
	size_t nranged, cap_ranged;
	struct primary *prim; /* users with a primary group, AD */
	size_t nprim, cap_prim;
	struct ids_strmap sidmap; /* primary group SID -> index into sid_gid */
	const char **sid_gid;	  /* per SID: the id of the group read with it, or NULL */
	size_t nsid, cap_sid;
	struct ids_buf sid; /* scratch for a SID as text */
};

/* What one page request came to. */
enum page_result { PAGE_LAST, PAGE_MORE, PAGE_RESTART, PAGE_LOST };

/* ---------------- small helpers ---------------- */

static bool bv_eq(const struct berval *bv, const char *s)
{
	size_t n = strlen(s);
	return bv->bv_len == n && strncasecmp(bv->bv_val, s, n) == 0;
}

/* The values of attribute `name` of e (case-insensitive), or NULL. */
static BerVarray entry_vals(const struct entry *e, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < e->n; i++)
		if (bv_eq(&e->a[i].name, name))
			return e->a[i].vals;
	return NULL;
}

/* The first value of `name`, or NULL when there is none. */
static const struct berval *entry_first(const struct entry *e, const char *name)
{
	BerVarray v = entry_vals(e, name);
	return v && v[0].bv_val ? &v[0] : NULL;
}

static void entry_clear(struct entry *e)
{
	for (size_t i = 0; i < e->n; i++)
		ber_memfree(e->a[i].vals);
	e->n = 0;
	e->dn = (struct berval){0};
}

/* The server's diagnostic message of the last operation on ld: new
 * (ldap_memfree), NULL when there is none. */
static char *diag_of(LDAP *ld)
{
	char *m = NULL;
	if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &m) != LDAP_OPT_SUCCESS)
		m = NULL;
	return m;
}

/* "Invalid credentials (49): server text" — the code's name, the number
 * and the server's own words when it gave any. */
static int set_ldap_error(struct ids_error *e, int code, int lrc, const char *srvmsg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int set_ldap_error(struct ids_error *e, int code, int lrc, const char *srvmsg, const char *fmt, ...)
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
static int map_lrc(int lrc)
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
static int tick(struct pull *p, const char *when)
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
static int backoff(struct pull *p, int sec)
{
	for (int i = 0; i < sec; i++) {
		int r = tick(p, "while waiting to reconnect");
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
static int wait_result(struct pull *p, int msgid, int all, const char *when, LDAPMessage **ret_msg)
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
		int r = tick(p, when);
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
		} else if ((r = tick(p, when)) < 0 || (ids_mono_usec() >= deadline && (r = 1))) {
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
		return ids_error_set(p->err, -r, "%s: %s", when, strerror(r));
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
		return ids_error_set(p->err, -r, "cannot start a thread for %s: %s", when, strerror(r));
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
	return set_ldap_error(e, map_lrc(lrc) == IDS_E_SERVER ? IDS_E_CONNECT : map_lrc(lrc), lrc, diag,
			      "%s: %s", uri, step);
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
	p->ld = ld; /* wait_result() reads p->ld; ld is not p's yet */
	int type = wait_result(p, msgid, LDAP_MSG_ALL, when, &res);
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
		diag = diag_of(ld);
	if (is_auth_failure(lrc))
		r = set_ldap_error(e, IDS_E_AUTH, lrc, diag, "%s: bind as %s refused", uri,
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
		return set_ldap_error(e, IDS_E_CONFIG, lrc, NULL, "%s: cannot use this URI", t->uri);
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
	int r = run_blocking(p, ld, ldap_connect, step, &lrc);
	if (r < 0)
		return r;
	if (r == 1 && lrc != LDAP_SUCCESS)
		return ids_error_set(e, IDS_E_TIMEOUT, "%s: no answer within %d s during %s", t->uri,
				     p->timeout, step);
	if (lrc == LDAP_SUCCESS)
		return 0;
	diag = diag_of(ld);
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
			diag = diag_of(ld);
		if (lrc == LDAP_SERVER_DOWN || lrc == LDAP_CONNECT_ERROR || lrc == LDAP_TIMEOUT)
			r = connect_error(e, t->uri, "StartTLS", lrc, diag, p->timeout);
		else
			r = set_ldap_error(e, IDS_E_TLS, lrc, diag, "%s: the server refused StartTLS",
					   t->uri);
		goto out;
	}
	if (set_blocking(ld, true) < 0) {
		r = ids_error_set(e, IDS_E_CONNECT, "%s: cannot make the socket blocking", t->uri);
		goto out;
	}
	if ((r = run_blocking(p, ld, ldap_install_tls, "during StartTLS", &lrc)) == 0 &&
	    lrc != LDAP_SUCCESS) {
		diag = diag_of(ld);
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
 * non-blocking (every later wait is wait_result()'s). */
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
	if ((r = new_handle(p, &t, e, &ld)) < 0 || (r = open_socket(p, ld, &t, e)) < 0)
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
static int connect_any(struct pull *p)
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
static void drop_connection(struct pull *p)
{
	discard_handle(p->ld);
	p->ld = NULL;
}

/* True while ld still has the connection we opened, verified and bound.
 * After libldap noticed a loss it has no socket, and the next request
 * would make it reconnect on its own — in clear and anonymously. */
static bool connection_alive(struct pull *p)
{
	int fd = -1;
	if (!p->ld || ldap_get_option(p->ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS || fd < 0)
		return false;
	return !p->need_tls || ldap_tls_inplace(p->ld);
}

/* ---------------- searching ---------------- */

/* Reads msg into p->ent: the DN and every attribute with its values, all
 * pointing into msg (length-aware: a NUL byte inside a value stays
 * visible to the builder). */
static int read_entry(struct pull *p, LDAPMessage *msg)
{
	struct entry *e = &p->ent;
	BerElement *ber = NULL;
	int r = 0;
	entry_clear(e);
	if (ldap_get_dn_ber(p->ld, msg, &ber, &e->dn) != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: an entry without a DN", p->uri);
		goto out;
	}
	for (;;) {
		struct berval name = {0};
		BerVarray vals = NULL;
		if (ldap_get_attribute_ber(p->ld, msg, ber, &name, &vals) != LDAP_SUCCESS) {
			r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed entry %.*s", p->uri,
					  (int)e->dn.bv_len, e->dn.bv_val);
			goto out;
		}
		if (!name.bv_val)
			break;
		if (e->n == e->cap) {
			size_t cap = e->cap ? e->cap * 2 : 16;
			struct entry_attr *a = realloc(e->a, cap * sizeof(*a));
			if (!a) {
				ber_memfree(vals);
				r = -ENOMEM;
				goto out;
			}
			e->a = a;
			e->cap = cap;
		}
		e->a[e->n++] = (struct entry_attr){name, vals};
	}
out:
	if (ber)
		ber_free(ber, 0);
	return r;
}

/* The entry's external id as text: the value of the id attribute, or for
 * AD's binary objectGUID its canonical form (the first three groups are
 * little-endian on the wire).  .bv_val NULL when the entry has none. */
static struct berval entry_id(struct pull *p, const struct entry *e)
{
	const struct berval *v = entry_first(e, p->attr[IDS_F_EXTERNAL_ID]);
	if (!v)
		return (struct berval){0};
	if (p->ad && v->bv_len == 16 && !strcasecmp(p->attr[IDS_F_EXTERNAL_ID], "objectGUID")) {
		const unsigned char *g = (const unsigned char *)v->bv_val;
		snprintf(p->idtext, sizeof(p->idtext),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", g[3], g[2],
			 g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14],
			 g[15]);
		return (struct berval){36, p->idtext};
	}
	return *v;
}

/* KIND ":" V in p->key: the keys of the seen and disabled sets. */
static int make_key(struct pull *p, char kind, const struct berval *v)
{
	ids_buf_reset(&p->key);
	int r = ids_buf_putc(&p->key, kind);
	if (r >= 0)
		r = ids_buf_putc(&p->key, ':');
	if (r >= 0)
		r = ids_buf_add(&p->key, v->bv_val, v->bv_len);
	return r;
}

/* The key of an entry in the seen set: DN and id together, so that only
 * the same entry read again is skipped.  An entry renamed between two
 * reads, or two entries that share an id on a confused server, still
 * reach the builder, whose duplicate check then does its job. */
static int entry_key(struct pull *p, const struct entry *e, const struct berval *id)
{
	int r = make_key(p, 'e', &e->dn);
	/* an id with a NUL byte cannot be part of a C-string key (its user
	 * is invalid anyway): the DN alone stands in */
	if (r >= 0 && id->bv_val && id->bv_len && !memchr(id->bv_val, '\0', id->bv_len) &&
	    (r = ids_buf_putc(&p->key, '\x01')) >= 0)
		r = ids_buf_add(&p->key, id->bv_val, id->bv_len);
	return r;
}

/* Adds p->key to the seen set: 1 when added, 0 when it was there.  The
 * set keeps a 128-bit fingerprint of each key (two independent 64-bit
 * hashes), not the key: a million entries cost 32 MB rather than 120, and
 * two different entries would need a 2^-128 coincidence to be taken for
 * one another. */
static int seen_add(struct pull *p)
{
	struct seen *s = &p->seen;
	const unsigned char *k = (const unsigned char *)p->key.p;
	uint64_t a = 0x243f6a8885a308d3ULL, b = ids_hash64(k, p->key.len), w;
	size_t n = p->key.len;
	for (; n >= 8; k += 8, n -= 8) {
		memcpy(&w, k, 8);
		a = (a ^ w) * 0x9e3779b97f4a7c15ULL;
		a ^= a >> 31;
	}
	w = 0;
	memcpy(&w, k, n);
	a = (a ^ w ^ p->key.len) * 0xbf58476d1ce4e5b9ULL;
	a ^= a >> 29;
	if (!a && !b)
		a = 1; /* (0, 0) marks an empty slot */
	if ((s->len + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *t = calloc(cap * 2, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			uint64_t x = s->fp[2 * i], y = s->fp[2 * i + 1];
			if (!x && !y)
				continue;
			size_t j = x & (cap - 1);
			while (t[2 * j] || t[2 * j + 1])
				j = (j + 1) & (cap - 1);
			t[2 * j] = x;
			t[2 * j + 1] = y;
		}
		free(s->fp);
		s->fp = t;
		s->cap = cap;
	}
	size_t j = a & (s->cap - 1);
	for (; s->fp[2 * j] || s->fp[2 * j + 1]; j = (j + 1) & (s->cap - 1))
		if (s->fp[2 * j] == a && s->fp[2 * j + 1] == b)
			return 0;
	s->fp[2 * j] = a;
	s->fp[2 * j + 1] = b;
	s->len++;
	return 1;
}

static void seen_free(struct seen *s)
{
	free(s->fp);
	*s = (struct seen){0};
}

/* Adds p->key to set m; 1 when added, 0 when it was there. */
static int set_add(struct pull *p, struct ids_strmap *m)
{
	if (ids_strmap_get(m, p->key.p, NULL))
		return 0;
	char *k = ids_arena_strndup(&p->keys, p->key.p, p->key.len);
	if (!k)
		return -ENOMEM;
	return ids_strmap_put(m, k, 0, NULL);
}

/* Records the entry as emitted by the current search.  0: already
 * emitted before a restart (skip it), 1: new. */
static int first_time(struct pull *p, const struct entry *e, const struct berval *id)
{
	int r = entry_key(p, e, id);
	return r < 0 ? r : seen_add(p);
}

/* disabled_filter matched this entry: remember its id and its DN. */
static int on_disabled(struct pull *p, const struct entry *e)
{
	struct berval id = entry_id(p, e);
	int r = 0;
	if (id.bv_val && id.bv_len && !memchr(id.bv_val, '\0', id.bv_len) && (r = make_key(p, 'i', &id)) >= 0)
		r = set_add(p, &p->disabled);
	if (r >= 0 && (r = make_key(p, 'd', &e->dn)) >= 0)
		r = set_add(p, &p->disabled);
	return r < 0 ? r : 0;
}

static bool is_disabled(struct pull *p, const struct entry *e, const struct berval *id)
{
	if (!p->lc->disabled_filter)
		return false;
	if (id->bv_val && id->bv_len && !memchr(id->bv_val, '\0', id->bv_len) && make_key(p, 'i', id) >= 0 &&
	    ids_strmap_get(&p->disabled, p->key.p, NULL))
		return true;
	return make_key(p, 'd', &e->dn) >= 0 && ids_strmap_get(&p->disabled, p->key.p, NULL);
}

/* A user attribute that came back ranged ("memberOf;range=0-1499": a
 * user in more groups than MaxValRange, with a rule that reads memberOf).
 * Only group members are read on in ranges; such a user stops the pull
 * rather than being matched against a short list. */
static int refuse_ranged(struct pull *p, const struct entry *e)
{
	for (size_t i = 0; i < e->n; i++) {
		const struct berval *n = &e->a[i].name;
		for (size_t k = 0; k + 7 <= n->bv_len; k++)
			if (!strncasecmp(n->bv_val + k, ";range=", 7))
				return ids_error_set(
				    p->err, IDS_E_UNSUPPORTED,
				    "%s: %.*s has %.*s (more values than the server sends at "
				    "once); ranged retrieval is supported for group members only, so "
				    "the run stops instead of reading it short",
				    p->uri, (int)e->dn.bv_len, e->dn.bv_val, (int)n->bv_len, n->bv_val);
	}
	return 0;
}

/* AD: bit 0x2 (ACCOUNTDISABLE) of userAccountControl.  A value that is
 * not a number leaves the state unknown: the user is marked invalid, which
 * makes the sync leave it exactly as it is. */
static int ad_disabled(struct pull *p, const struct entry *e, bool *disabled)
{
	const struct berval *v = entry_first(e, "userAccountControl");
	char buf[24];
	if (!v)
		return 0;
	if (v->bv_len == 0 || v->bv_len >= sizeof(buf))
		return ids_snapshot_user_invalid(p->s, "userAccountControl is not a number");
	memcpy(buf, v->bv_val, v->bv_len);
	buf[v->bv_len] = 0;
	char *end;
	errno = 0;
	long long uac = strtoll(buf, &end, 10);
	if (errno || *end || end == buf)
		return ids_snapshot_user_invalid(p->s, "userAccountControl is not a number");
	if (uac & 0x2)
		*disabled = true;
	return 0;
}

static int note_primary(struct pull *p, const struct entry *e, const struct berval *id);

/* One user entry into the builder. */
static int on_user(struct pull *p, const struct entry *e)
{
	struct ids_snapshot *s = p->s;
	struct berval id = entry_id(p, e);
	int r = refuse_ranged(p, e);
	if (r < 0 || (r = first_time(p, e, &id)) <= 0)
		return r;
	if ((r = ids_snapshot_user_begin(s)) < 0)
		return r;
	if (id.bv_val)
		r = ids_snapshot_user_set(s, IDS_F_EXTERNAL_ID, id.bv_val, id.bv_len);
	for (int f = IDS_F_USERNAME; r >= 0 && f <= IDS_F_DISPLAY_NAME; f++) {
		const struct berval *v = entry_first(e, p->attr[f]);
		/* many entries carry cn but no displayName */
		if (!v && f == IDS_F_DISPLAY_NAME)
			v = entry_first(e, "cn");
		if (v)
			r = ids_snapshot_user_set(s, f, v->bv_val, v->bv_len);
	}
	if (r >= 0)
		r = ids_snapshot_user_set(s, IDS_F_DN, e->dn.bv_val, e->dn.bv_len);
	/* every value of every attribute the rules read, under the rule's
	 * spelling of the name */
	for (size_t i = 0; r >= 0 && p->ctx && p->ctx->rule_attrs && i < p->ctx->rule_attrs->n; i++) {
		const char *name = p->ctx->rule_attrs->v[i];
		BerVarray v = entry_vals(e, name);
		for (size_t j = 0; r >= 0 && v && v[j].bv_val; j++)
			r = ids_snapshot_user_attr(s, name, v[j].bv_val, v[j].bv_len);
	}
	bool disabled = is_disabled(p, e, &id);
	if (r >= 0 && p->ad)
		r = ad_disabled(p, e, &disabled);
	if (r >= 0 && disabled)
		r = ids_snapshot_user_disabled(s, true);
	/* a primary group only matters when groups are read */
	if (r >= 0 && p->ad && p->lc->groups_base)
		r = note_primary(p, e, &id);
	if (r >= 0)
		r = ids_snapshot_user_end(s);
	return r;
}

/* A uniqueMember value is a DN optionally followed by "#'0101'B" (the
 * nameAndOptionalUID syntax): the length of the DN part. */
static size_t strip_uid_suffix(const char *v, size_t n)
{
	if (n < 4 || v[n - 1] != 'B' || v[n - 2] != '\'')
		return n;
	size_t i = n - 2;
	while (i > 0 && (v[i - 1] == '0' || v[i - 1] == '1'))
		i--;
	if (i >= 2 && v[i - 1] == '\'' && v[i - 2] == '#')
		return i - 2;
	return n;
}

/* The member attributes a group search reads, in the order tried. */
static const char *const default_member_attrs[] = {"member", "uniqueMember", "memberUid", NULL};

/* Appends to b the SID in v (objectSid: revision 1, a count of
 * sub-authorities, a 48-bit big-endian authority, then the 32-bit
 * little-endian sub-authorities) as "S-1-5-21-…", without its last
 * sub-authority (the RID) when drop_rid: the SID of the domain.
 * -EINVAL when v is not a SID. */
static int sid_text(struct ids_buf *b, const struct berval *v, bool drop_rid)
{
	const unsigned char *d = (const unsigned char *)v->bv_val;
	if (v->bv_len < 8 || d[0] != 1 || d[1] > 15 || v->bv_len != 8 + 4 * (size_t)d[1] ||
	    (drop_rid && d[1] == 0))
		return -EINVAL;
	unsigned long long auth = 0;
	for (int i = 2; i < 8; i++)
		auth = auth << 8 | d[i];
	int r = ids_buf_printf(b, "S-1-%llu", auth);
	size_t n = d[1] - (drop_rid ? 1 : 0);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		const unsigned char *q = d + 8 + 4 * i;
		r = ids_buf_printf(b, "-%lu",
				   (unsigned long)q[0] | (unsigned long)q[1] << 8 |
				       (unsigned long)q[2] << 16 | (unsigned long)q[3] << 24);
	}
	return r < 0 ? r : 0;
}

/* AD leaves a user's membership in its primary group (primaryGroupID,
 * usually 513, Domain Users) out of that group's `member`: the group is
 * the one whose objectSid is the user's domain SID plus that RID.  The
 * user is remembered under that SID; the group search fills in which
 * group has it, and add_primaries() turns the pairs into memberships.
 * A value that is not a SID or a RID only loses this one membership. */
static int note_primary(struct pull *p, const struct entry *e, const struct berval *id)
{
	const struct berval *pg = entry_first(e, "primaryGroupID"), *sid = entry_first(e, "objectSid");
	if (!pg || !sid || !id->bv_val || !id->bv_len || memchr(id->bv_val, '\0', id->bv_len) ||
	    pg->bv_len == 0 || pg->bv_len > 10 || strspn(pg->bv_val, "0123456789") < pg->bv_len)
		return 0;
	ids_buf_reset(&p->sid);
	int r = sid_text(&p->sid, sid, true);
	if (r == -EINVAL)
		return 0;
	if (r < 0 || (r = ids_buf_putc(&p->sid, '-')) < 0 ||
	    (r = ids_buf_add(&p->sid, pg->bv_val, pg->bv_len)) < 0)
		return r;
	uint32_t idx;
	if (!ids_strmap_get(&p->sidmap, p->sid.p, &idx)) {
		char *k = ids_arena_strndup(&p->keep, p->sid.p, p->sid.len);
		if (!k || ids_grow(&p->sid_gid, &p->cap_sid, p->nsid + 1, sizeof(*p->sid_gid)) < 0)
			return -ENOMEM;
		idx = (uint32_t)p->nsid;
		if ((r = ids_strmap_put(&p->sidmap, k, idx, NULL)) < 0)
			return r;
		p->sid_gid[p->nsid++] = NULL;
	}
	if (ids_grow(&p->prim, &p->cap_prim, p->nprim + 1, sizeof(*p->prim)) < 0)
		return -ENOMEM;
	const char *uid = ids_arena_strndup(&p->keep, id->bv_val, id->bv_len);
	if (!uid)
		return -ENOMEM;
	p->prim[p->nprim++] = (struct primary){uid, idx};
	return 0;
}

/* A group read: if some user has it as primary group, remember its id. */
static int note_group_sid(struct pull *p, const struct entry *e, const struct berval *id)
{
	const struct berval *sid = entry_first(e, "objectSid");
	uint32_t idx;
	if (!p->nsid || !sid || !id->bv_val || !id->bv_len || memchr(id->bv_val, '\0', id->bv_len))
		return 0;
	ids_buf_reset(&p->sid);
	int r = sid_text(&p->sid, sid, false);
	if (r < 0)
		return r == -EINVAL ? 0 : r;
	if (!ids_strmap_get(&p->sidmap, p->sid.p, &idx) || p->sid_gid[idx])
		return 0;
	if (!(p->sid_gid[idx] = ids_arena_strndup(&p->keep, id->bv_val, id->bv_len)))
		return -ENOMEM;
	return 0;
}

/* The primary group memberships, once every group is read.  A primary
 * group that is not in the snapshot (Domain Users, outside the groups
 * base) means nothing to the rules and is left out. */
static int add_primaries(struct pull *p)
{
	for (size_t i = 0; i < p->nprim; i++) {
		const char *gid = p->sid_gid[p->prim[i].sid];
		int r;
		if (gid && (r = ids_snapshot_member(p->s, gid, IDS_REF_ID, p->prim[i].uid,
						    strlen(p->prim[i].uid))) < 0)
			return r;
	}
	return 0;
}

/* Digits of a range bound: [s, end) holds at least one digit and
 * nothing else; *ret at most RANGE_MAX. */
#define RANGE_MAX 0x7fffffffUL
static bool range_num(const char *s, const char *end, unsigned long *ret)
{
	unsigned long v = 0;
	if (s >= end)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9' || (v = v * 10 + (unsigned long)(*s - '0')) > RANGE_MAX)
			return false;
	}
	*ret = v;
	return true;
}

/* Whether attribute description `name` is `attr` with a range option
 * ("member;range=1500-2999", or "…-*" for the last values): 1 with the
 * bounds (*ret_last for "*"), 0 when it is something else, -1 when its
 * range option is malformed. */
static int parse_range(const struct berval *name, const char *attr, unsigned long *ret_low,
		       unsigned long *ret_high, bool *ret_last)
{
	size_t an = strlen(attr);
	const char *end = name->bv_val + name->bv_len;
	if (name->bv_len <= an || strncasecmp(name->bv_val, attr, an) != 0 || name->bv_val[an] != ';')
		return 0;
	for (const char *o = name->bv_val + an + 1; o < end;) {
		const char *oe = memchr(o, ';', (size_t)(end - o));
		if (!oe)
			oe = end;
		if (oe - o >= 6 && !strncasecmp(o, "range=", 6)) {
			const char *dash = memchr(o + 6, '-', (size_t)(oe - o - 6));
			unsigned long low, high = 0;
			bool last = dash && oe - dash == 2 && dash[1] == '*';
			if (!dash || !range_num(o + 6, dash, &low) ||
			    (!last && !range_num(dash + 1, oe, &high)))
				return -1;
			*ret_low = low;
			*ret_high = high;
			*ret_last = last;
			return 1;
		}
		o = oe + 1;
	}
	return 0;
}

/* The values of member attribute mattr into the builder: into the open
 * group (gid NULL) or into the group with external id gid. */
static int emit_members(struct pull *p, const char *gid, const char *mattr, BerVarray v)
{
	/* memberUid names a user by username, the others by DN */
	enum ids_ref kind = !strcasecmp(mattr, "memberUid") ? IDS_REF_USERNAME : IDS_REF_DN;
	bool unique = !strcasecmp(mattr, "uniqueMember");
	int r = 0;
	for (size_t j = 0; r >= 0 && v && v[j].bv_val; j++) {
		size_t n = unique ? strip_uid_suffix(v[j].bv_val, v[j].bv_len) : v[j].bv_len;
		r = gid ? ids_snapshot_member(p->s, gid, kind, v[j].bv_val, n)
			: ids_snapshot_group_member(p->s, kind, v[j].bv_val, n);
	}
	return r;
}

/* Remembers group e for read_ranged(): its values from `next` on. */
static int add_ranged(struct pull *p, const struct entry *e, const struct berval *id, const char *mattr,
		      unsigned long next)
{
	/* a group without an id is dropped by the snapshot anyway */
	if (!id->bv_val || !id->bv_len || memchr(id->bv_val, '\0', id->bv_len))
		return 0;
	if (ids_grow(&p->ranged, &p->cap_ranged, p->nranged + 1, sizeof(*p->ranged)) < 0)
		return -ENOMEM;
	const struct berval *usn = entry_first(e, "uSNChanged");
	struct ranged g = {
	    .dn = ids_arena_strndup(&p->keep, e->dn.bv_val, e->dn.bv_len),
	    .gid = ids_arena_strndup(&p->keep, id->bv_val, id->bv_len),
	    .mattr = mattr,
	    .usn = usn ? ids_arena_strndup(&p->keep, usn->bv_val, usn->bv_len) : NULL,
	    .next = next,
	};
	if (!g.dn || !g.gid || (usn && !g.usn))
		return -ENOMEM;
	p->ranged[p->nranged++] = g;
	return 0;
}

/* One attribute of a group entry: the values of a member attribute, plain
 * or the first range of them (the rest is read later). */
static int group_attr(struct pull *p, const struct entry *e, const struct berval *id,
		      const char *const *mattrs, const struct entry_attr *a)
{
	for (size_t k = 0; mattrs[k]; k++) {
		unsigned long low, high;
		bool last;
		if (bv_eq(&a->name, mattrs[k]))
			return emit_members(p, NULL, mattrs[k], a->vals);
		int rr = parse_range(&a->name, mattrs[k], &low, &high, &last);
		if (rr == 0)
			continue;
		/* the first answer starts at 0: we asked for nothing else */
		if (rr < 0 || low != 0 || (!last && high < low))
			return ids_error_set(p->err, IDS_E_PROTOCOL,
					     "%s: group %.*s came with %.*s, not a range of values from 0",
					     p->uri, (int)e->dn.bv_len, e->dn.bv_val, (int)a->name.bv_len,
					     a->name.bv_val);
		int r = emit_members(p, NULL, mattrs[k], a->vals);
		if (r < 0 || last)
			return r;
		return add_ranged(p, e, id, mattrs[k], high + 1);
	}
	return 0;
}

/* One group entry into the builder. */
static int on_group(struct pull *p, const struct entry *e)
{
	struct ids_snapshot *s = p->s;
	struct berval id = entry_id(p, e);
	const char *one[2] = {p->lc->member_attribute, NULL};
	const char *const *mattrs = p->lc->member_attribute ? one : default_member_attrs;
	int r = first_time(p, e, &id);
	if (r <= 0)
		return r;
	if ((r = ids_snapshot_group_begin(s)) < 0)
		return r;
	const struct berval *cn = entry_first(e, "cn"), *mail = entry_first(e, "mail");
	if (id.bv_val)
		r = ids_snapshot_group_set(s, IDS_F_EXTERNAL_ID, id.bv_val, id.bv_len);
	if (r >= 0 && cn)
		r = ids_snapshot_group_set(s, IDS_F_USERNAME, cn->bv_val, cn->bv_len);
	if (r >= 0 && mail)
		r = ids_snapshot_group_set(s, IDS_F_EMAIL, mail->bv_val, mail->bv_len);
	if (r >= 0)
		r = ids_snapshot_group_set(s, IDS_F_DN, e->dn.bv_val, e->dn.bv_len);
	for (size_t i = 0; r >= 0 && i < e->n; i++)
		r = group_attr(p, e, &id, mattrs, &e->a[i]);
	if (r >= 0 && p->ad)
		r = note_group_sid(p, e, &id);
	if (r >= 0)
		r = ids_snapshot_group_end(s);
	return r;
}

/* The error of a search result code other than success. */
static int search_error(struct pull *p, const struct search *sr, int lrc, const char *diag, size_t entries)
{
	const char *limit = lrc == LDAP_SIZELIMIT_EXCEEDED    ? "size limit"
			    : lrc == LDAP_TIMELIMIT_EXCEEDED  ? "time limit"
			    : lrc == LDAP_ADMINLIMIT_EXCEEDED ? "administrative limit"
							      : NULL;
	if (limit)
		return set_ldap_error(
		    p->err, IDS_E_LIMIT, lrc, diag,
		    "%s: the %s search under %s hit the server's %s after %zu entries, so the "
		    "snapshot would be incomplete (use paging with a page_size below the limit, "
		    "or raise the limit for the service account)",
		    p->uri, sr->what, sr->base, limit, entries);
	if (lrc == LDAP_NO_SUCH_OBJECT)
		return set_ldap_error(
		    p->err, IDS_E_SERVER, lrc, diag,
		    "%s: the %s base %s does not exist (or the bind identity may not see it)", p->uri,
		    sr->what, sr->base);
	if (lrc == LDAP_REFERRAL)
		return set_ldap_error(
		    p->err, IDS_E_SERVER, lrc, diag,
		    "%s: the %s base %s is held by another server (referrals are not chased)", p->uri,
		    sr->what, sr->base);
	return set_ldap_error(p->err, map_lrc(lrc), lrc, diag, "%s: %s search under %s", p->uri, sr->what,
			      sr->base);
}

/* The error of a search whose server stopped answering. */
static int stalled(struct pull *p, const struct search *sr, size_t entries)
{
	return ids_error_set(p->err, IDS_E_TIMEOUT,
			     "%s: no answer within %d s during the %s search under %s (after %zu entries)",
			     p->uri, p->timeout, sr->what, sr->base, entries);
}

/* Sends the search request for one page (cookie: from the previous page,
 * NULL or empty for the first): its message id in *ret_msgid.  0,
 * PAGE_LOST, or < 0 with p->err set. */
static int send_page(struct pull *p, const struct search *sr, const struct berval *cookie, size_t entries,
		     int *ret_msgid)
{
	LDAPControl *req = NULL, *sctrls[2] = {NULL, NULL};
	char *diag = NULL;
	struct timeval tv = {p->timeout, 0};
	int lrc, r = 0;

	if (!connection_alive(p))
		return PAGE_LOST;
	/* non-critical: a server without paging answers the plain search
	 * (fine when the result fits its size limit, a limit error if not) */
	struct berval c = cookie && cookie->bv_len ? *cookie : (struct berval){0, ""};
	lrc = ldap_create_page_control(p->ld, (ber_int_t)p->lc->page_size, &c, 0, &req);
	if (lrc != LDAP_SUCCESS)
		return map_lrc(lrc) == -ENOMEM
			   ? -ENOMEM
			   : ids_error_set(p->err, IDS_E_PROTOCOL, "cannot encode the paging control");
	sctrls[0] = req;
	/* the time limit is the server's share of the timeout; the waits
	 * for the answer are ours (wait_result()).  The socket is
	 * non-blocking: a server that stopped reading cannot hold the
	 * request up, libldap keeps what it could not write yet */
	lrc = ldap_search_ext(p->ld, sr->base, LDAP_SCOPE_SUBTREE, sr->filter, sr->attrs, 0, sctrls, NULL,
			      &tv, LDAP_NO_LIMIT, ret_msgid);
	if (lrc == LDAP_SERVER_DOWN || lrc == LDAP_CONNECT_ERROR) {
		r = PAGE_LOST;
	} else if (lrc != LDAP_SUCCESS) {
		diag = diag_of(p->ld);
		r = search_error(p, sr, lrc, diag, entries);
	}
	ldap_memfree(diag);
	ldap_control_free(req);
	return r;
}

static void free_msgs(struct pull *p)
{
	for (size_t i = 0; i < p->nmsgs; i++)
		ldap_msgfree(p->msgs[i]);
	p->nmsgs = 0;
	p->held = 0;
}

/* The encoded size of entry message m (what holding it costs). */
static size_t msg_size(struct pull *p, LDAPMessage *m)
{
	BerElement *ber = NULL;
	struct berval dn = {0};
	ber_len_t left = 0;
	if (ldap_get_dn_ber(p->ld, m, &ber, &dn) == LDAP_SUCCESS && ber)
		ber_get_option(ber, LBER_OPT_REMAINING_BYTES, &left);
	if (ber)
		ber_free(ber, 0);
	return (size_t)left + dn.bv_len;
}

/* Decodes the held entries into sr->fn and frees them. */
static int emit_msgs(struct pull *p, const struct search *sr, size_t *entries)
{
	int r = 0;
	for (size_t i = 0; i < p->nmsgs && r >= 0; i++) {
		if ((r = read_entry(p, p->msgs[i])) < 0 || (r = sr->fn(p, &p->ent)) < 0)
			break;
		entry_clear(&p->ent);
		ldap_msgfree(p->msgs[i]);
		p->msgs[i] = NULL;
		(*entries)++;
		p->pass_entries++;
		if (++p->in_page >= PROGRESS_EVERY)
			r = tick(p, "in the middle of a page");
	}
	free_msgs(p);
	return r;
}

/* Reads one page (cookie: from the previous page, empty for the first)
 * and feeds its entries to sr->fn.  The next cookie replaces *cookie.
 * The page's messages are collected first; once its result has come,
 * the next page is asked for, and then the entries are decoded: the
 * server's work on the next page and ours on this one overlap.  Returns
 * enum page_result, or < 0 with p->err set. */
static int page(struct pull *p, const struct search *sr, struct berval **cookie, size_t *entries)
{
	LDAPControl **rctrls = NULL;
	LDAPMessage *msg = NULL;
	char *diag = NULL;
	struct berval *next = NULL;
	int msgid = p->next_msgid, lrc, r;
	bool first = !*cookie || !(*cookie)->bv_len;
	/* entries this search had not seen before: see the cookie check */
	size_t known = p->seen.len + p->disabled.len;

	p->next_msgid = -1;
	free_msgs(p);
	if (msgid < 0 && (r = send_page(p, sr, *cookie, *entries, &msgid)) != 0)
		goto out;

	for (;;) {
		int type = wait_result(p, msgid, LDAP_MSG_ONE, "while waiting for a page", &msg);
		if (type < -1) {
			r = type;
			goto out;
		}
		if (type == 0) {
			/* no abandon: the connection is dropped anyway */
			r = stalled(p, sr, *entries);
			goto out;
		}
		if (type < 0) {
			int code = LDAP_OTHER;
			ldap_get_option(p->ld, LDAP_OPT_RESULT_CODE, &code);
			if (code == LDAP_SERVER_DOWN || code == LDAP_CONNECT_ERROR) {
				r = PAGE_LOST;
				goto out;
			}
			diag = diag_of(p->ld);
			r = search_error(p, sr, code, diag, *entries);
			goto out;
		}
		if (type == LDAP_RES_SEARCH_ENTRY) {
			if (ids_grow(&p->msgs, &p->cap_msgs, p->nmsgs + 1, sizeof(*p->msgs)) < 0) {
				r = -ENOMEM;
				goto out;
			}
			p->msgs[p->nmsgs++] = msg;
			msg = NULL;
			p->held += msg_size(p, p->msgs[p->nmsgs - 1]);
			if (p->held > HOLD_MAX && (r = emit_msgs(p, sr, entries)) < 0)
				goto out;
			continue;
		}
		if (type == LDAP_RES_SEARCH_RESULT)
			break;
		/* references (LDAP_RES_SEARCH_REFERENCE) are not chased */
		ldap_msgfree(msg);
		msg = NULL;
	}

	int code = LDAP_OTHER;
	lrc = ldap_parse_result(p->ld, msg, &code, NULL, &diag, NULL, &rctrls, 0);
	if (lrc != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed %s search result", p->uri, sr->what);
		goto out;
	}
	/* a server that lost our cookie (restarted, or a different replica
	 * behind a load balancer) says unwillingToPerform to it */
	if (code == LDAP_UNWILLING_TO_PERFORM && !first) {
		r = PAGE_RESTART;
		goto out;
	}
	if (code != LDAP_SUCCESS) {
		r = search_error(p, sr, code, diag, *entries + p->nmsgs);
		goto out;
	}
	p->s->pages++;
	r = PAGE_LAST;
	LDAPControl *resp = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL);
	/* no control: the server ignored paging, this was the whole answer */
	if (resp) {
		ber_int_t estimate = 0;
		next = ber_memcalloc(1, sizeof(*next));
		if (!next) {
			r = -ENOMEM;
			goto out;
		}
		if (ldap_parse_pageresponse_control(p->ld, resp, &estimate, next) != LDAP_SUCCESS) {
			r = ids_error_set(p->err, IDS_E_PROTOCOL,
					  "%s: malformed paging control in the %s search", p->uri, sr->what);
			goto out;
		}
		if (next->bv_len) {
			/* the next page, asked for now (a lost connection shows
			 * on the next call) */
			r = send_page(p, sr, next, *entries + p->nmsgs, &p->next_msgid);
			if (r < 0)
				goto out;
			if (r == PAGE_LOST)
				p->next_msgid = -1;
			r = PAGE_MORE;
		}
	}

	int e = emit_msgs(p, sr, entries);
	if (e < 0) {
		r = e;
		goto out;
	}
	if (r == PAGE_LAST)
		goto out;
	/* A cookie handed back unchanged may page forever.  Not always:
	 * Samba names its search state with one cookie ("1") for every page
	 * of a search.  A loop is a page with that cookie that brought
	 * nothing new after this pass (since the last restart) received more
	 * entries than the search has distinct ones: repeats, for sure. */
	size_t distinct = p->seen.len + p->disabled.len;
	if (!first && next->bv_len == (*cookie)->bv_len &&
	    !memcmp(next->bv_val, (*cookie)->bv_val, next->bv_len) && distinct == known &&
	    p->pass_entries > distinct) {
		r = ids_error_set(
		    p->err, IDS_E_PROTOCOL,
		    "%s: the server repeated its paging cookie and its entries in the %s search", p->uri,
		    sr->what);
		goto out;
	}
	ber_bvfree(*cookie);
	*cookie = next;
	next = NULL;
	r = PAGE_MORE;
out:
	ber_bvfree(next);
	ldap_controls_free(rctrls);
	ldap_msgfree(msg);
	ldap_memfree(diag);
	free_msgs(p);
	entry_clear(&p->ent);
	return r;
}

/* A whole paged search, restarted from page 1 on a lost cookie or a lost
 * connection (see the top of the file). */
static int run_search(struct pull *p, const struct search *sr)
{
	struct berval *cookie = NULL;
	size_t entries = 0, npages;
	int r;

	seen_free(&p->seen);
	for (;;) {
		ber_bvfree(cookie);
		cookie = NULL;
		p->pass_entries = 0;
		/* (re)started: nothing of this search is on the wire */
		p->next_msgid = -1;
		for (npages = 0;; npages++) {
			if (npages >= MAX_PAGES) {
				r = ids_error_set(p->err, IDS_E_PROTOCOL,
						  "%s: more than %d pages in the %s search", p->uri,
						  MAX_PAGES, sr->what);
				goto out;
			}
			if ((r = tick(p, "between pages")) < 0)
				goto out;
			r = page(p, sr, &cookie, &entries);
			if (r < 0 || r == PAGE_LAST)
				goto out;
			if (r != PAGE_MORE)
				break;
		}
		const char *why = r == PAGE_LOST ? "the connection was lost"
						 : "the server no longer knew the paging cookie";
		if (++p->restarts > MAX_RESTARTS) {
			r = ids_error_set(p->err, r == PAGE_LOST ? IDS_E_CONNECT : IDS_E_SERVER,
					  "%s: %s during the %s search (page %zu); gave up after %d restarts",
					  p->uri, why, sr->what, npages + 1, MAX_RESTARTS);
			goto out;
		}
		if (r == PAGE_LOST) {
			const char *uri = p->uri;
			drop_connection(p);
			/* a restarting server needs a moment: 0, 1, 2 s */
			if ((r = backoff(p, p->restarts - 1)) < 0 || (r = connect_any(p)) < 0) {
				ids_error_prefix(
				    p->err, "%s: %s during the %s search (page %zu), reconnecting failed",
				    uri, why, sr->what, npages + 1);
				goto out;
			}
		}
	}
out:
	ber_bvfree(cookie);
	return r < 0 ? r : 0;
}

/* ---------------- ranged values ---------------- */

/* Re-reads of one group that changed while its ranges were read. */
#define MAX_RANGE_RETRIES 3

/* The error of a read of dn that did not come back. */
static int range_error(struct pull *p, const struct ranged *g, unsigned long from, int lrc, const char *diag)
{
	if (lrc == LDAP_NO_SUCH_OBJECT)
		return set_ldap_error(p->err, IDS_E_SERVER, lrc, diag,
				      "%s: group %s was deleted or moved while its members were read "
				      "(from value %lu on); the run fails rather than use a part of them",
				      p->uri, g->dn, from);
	return set_ldap_error(p->err, map_lrc(lrc), lrc, diag,
			      "%s: reading the members of group %s from value %lu on failed", p->uri, g->dn,
			      from);
}

/* One base-scope read of group g asking for attrs.  On PAGE_LAST its
 * entry is in p->ent, pointing into *ret_msg (new: ldap_msgfree).
 * PAGE_LOST when the connection was lost, < 0 with p->err set. */
static int read_base(struct pull *p, const struct ranged *g, unsigned long from, char **attrs,
		     LDAPMessage **ret_msg)
{
	LDAPMessage *res = NULL;
	char *diag = NULL;
	struct timeval tv = {p->timeout, 0};
	int msgid = -1, lrc, r;

	entry_clear(&p->ent);
	if (!connection_alive(p))
		return PAGE_LOST;
	lrc = ldap_search_ext(p->ld, g->dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL, &tv, 1,
			      &msgid);
	if (lrc == LDAP_SUCCESS) {
		/* the whole answer at once: one entry and the result */
		int type = wait_result(p, msgid, LDAP_MSG_ALL, "while reading the members of a group", &res);
		if (type < -1) {
			r = type;
			goto out;
		}
		if (type == 0) {
			r = ids_error_set(p->err, IDS_E_TIMEOUT,
					  "%s: no answer within %d s while reading the members of group %s",
					  p->uri, p->timeout, g->dn);
			goto out;
		}
		if (type < 0)
			ldap_get_option(p->ld, LDAP_OPT_RESULT_CODE, &lrc);
	}
	if (lrc == LDAP_SERVER_DOWN || lrc == LDAP_CONNECT_ERROR) {
		r = PAGE_LOST;
		goto out;
	}
	if (lrc != LDAP_SUCCESS || !res) {
		diag = diag_of(p->ld);
		r = range_error(p, g, from, lrc, diag);
		goto out;
	}
	int code = LDAP_OTHER;
	if (ldap_parse_result(p->ld, res, &code, NULL, &diag, NULL, NULL, 0) != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed answer reading group %s", p->uri,
				  g->dn);
		goto out;
	}
	if (code != LDAP_SUCCESS) {
		r = range_error(p, g, from, code, diag);
		goto out;
	}
	LDAPMessage *ent = ldap_first_entry(p->ld, res);
	if (!ent || ldap_next_entry(p->ld, ent)) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL,
				  "%s: a read of group %s did not return that one entry", p->uri, g->dn);
		goto out;
	}
	if ((r = read_entry(p, ent)) < 0)
		goto out;
	p->s->pages++;
	*ret_msg = res;
	res = NULL;
	r = PAGE_LAST;
out:
	ldap_memfree(diag);
	ldap_msgfree(res);
	return r;
}

/* After a lost connection in the middle of a group: a new one, within
 * the pull's restart budget. */
static int reconnect_ranged(struct pull *p, const struct ranged *g)
{
	const char *uri = p->uri;
	int r;
	if (++p->restarts > MAX_RESTARTS)
		return ids_error_set(
		    p->err, IDS_E_CONNECT,
		    "%s: the connection was lost while reading the members of group %s; gave "
		    "up after %d restarts",
		    uri, g->dn, MAX_RESTARTS);
	drop_connection(p);
	if ((r = backoff(p, p->restarts - 1)) < 0 || (r = connect_any(p)) < 0)
		return ids_error_prefix(p->err,
					"%s: the connection was lost while reading the members of group %s, "
					"reconnecting failed",
					uri, g->dn);
	return 0;
}

/* Reads the values of group g from g->next to the end, range by range,
 * each asked for from where the server's last answer ended (Windows
 * caps every request at MaxValRange, whatever was asked), and adds them
 * to the group in the snapshot.
 *
 * Values are numbered by position, so a group that changes between two
 * reads shifts them: one removal before the current position would hide
 * a member that never left.  AD's uSNChanged (asked for along with the
 * values) says whether the group changed since its first read; when it
 * did, or a read comes back with no values at all, the group is read
 * again from value 0, at most MAX_RANGE_RETRIES times.  The values read
 * before stay: everything added is a member at some moment of the run,
 * the guarantee paging gives too.  Any failed read fails the pull. */
static int read_rest(struct pull *p, struct ranged *g)
{
	LDAPMessage *msg = NULL;
	char *want = NULL;
	const char *usn = g->usn;
	unsigned long next = g->next;
	int changes = 0, r;

	for (size_t reads = 0;; reads++) {
		if (reads >= MAX_PAGES) {
			r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: more than %d ranged reads of group %s",
					  p->uri, MAX_PAGES, g->dn);
			goto out;
		}
		if ((r = tick(p, "between ranged reads")) < 0)
			goto out;
		free(want);
		want = NULL;
		int n = p->lc->member_range_size > 0
			    ? asprintf(&want, "%s;range=%lu-%lu", g->mattr, next,
				       next + (unsigned long)p->lc->member_range_size - 1)
			    : asprintf(&want, "%s;range=%lu-*", g->mattr, next);
		if (n < 0) {
			want = NULL;
			r = -ENOMEM;
			goto out;
		}
		char *attrs[3] = {want, p->ad ? "uSNChanged" : NULL, NULL};
		ldap_msgfree(msg);
		msg = NULL;
		r = read_base(p, g, next, attrs, &msg);
		if (r == PAGE_LOST) {
			/* from the start on a new connection */
			if ((r = reconnect_ranged(p, g)) < 0)
				goto out;
			next = 0;
			usn = NULL;
			continue;
		}
		if (r < 0)
			goto out;

		/* the range the server says it returned */
		const struct entry_attr *a = NULL;
		unsigned long low = 0, high = 0;
		bool last = false;
		for (size_t i = 0; !a && i < p->ent.n; i++) {
			int rr = parse_range(&p->ent.a[i].name, g->mattr, &low, &high, &last);
			if (rr < 0 || (rr > 0 && (low != next || (!last && high < low)))) {
				r = ids_error_set(p->err, IDS_E_PROTOCOL,
						  "%s: asked for the values of group %s from %lu on, the "
						  "server returned %.*s",
						  p->uri, g->dn, next, (int)p->ent.a[i].name.bv_len,
						  p->ent.a[i].name.bv_val);
				goto out;
			}
			if (rr > 0)
				a = &p->ent.a[i];
		}
		const struct berval *u = entry_first(&p->ent, "uSNChanged");
		bool changed = usn && u && (u->bv_len != strlen(usn) || memcmp(u->bv_val, usn, u->bv_len));
		/* nothing from `next` on: the group lost members meanwhile (or
		 * has none left, when this was a read from 0) */
		if (!a && next == 0)
			break;
		if (changed || !a) {
			if (++changes > MAX_RANGE_RETRIES) {
				r = ids_error_set(
				    p->err, IDS_E_SERVER,
				    "%s: group %s changed during each of %d reads of its members; "
				    "the run fails rather than use a part of them",
				    p->uri, g->dn, MAX_RANGE_RETRIES + 1);
				goto out;
			}
			next = 0;
			usn = NULL;
			continue;
		}
		if (!usn && u && !(usn = ids_arena_strndup(&p->keep, u->bv_val, u->bv_len))) {
			r = -ENOMEM;
			goto out;
		}
		if ((r = emit_members(p, g->gid, g->mattr, a->vals)) < 0 || last)
			goto out;
		next = high + 1;
	}
	r = 0;
out:
	entry_clear(&p->ent);
	ldap_msgfree(msg);
	free(want);
	return r < 0 ? r : 0;
}

/* Every group whose members came back ranged, read to the end. */
static int read_ranged(struct pull *p)
{
	for (size_t i = 0; i < p->nranged; i++) {
		int r = read_rest(p, &p->ranged[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---------------- the pull ---------------- */

/* Appends name to the NULL-terminated list attrs (capacity cap, at most
 * one slot used per call) unless it is there already. */
static void attrs_add(const char **attrs, size_t *n, const char *name)
{
	if (!name || !*name)
		return;
	for (size_t i = 0; i < *n; i++)
		if (!strcasecmp(attrs[i], name))
			return;
	attrs[(*n)++] = name;
	attrs[*n] = NULL;
}

/* "(&A B)" of two filters from the configuration. */
static char *and_filter(const char *a, const char *b)
{
	char *f = NULL;
	if (asprintf(&f, "(&%s%s)", a, b) < 0)
		return NULL;
	return f;
}

static int do_pull(struct pull *p)
{
	const struct ids_ldap_cfg *lc = p->lc;
	size_t nrule = p->ctx && p->ctx->rule_attrs ? p->ctx->rule_attrs->n : 0;
	const char **uattrs = calloc(nrule + 12, sizeof(*uattrs));
	const char *gattrs[12] = {NULL}, *dattrs[2] = {NULL};
	const char *one[2] = {lc->member_attribute, NULL};
	const char *const *mattrs = lc->member_attribute ? one : default_member_attrs;
	char *ranged[3] = {NULL}, *dfilter = NULL;
	const char *ufilter = lc->users_filter;
	size_t nu = 0, ng = 0, nd = 0;
	int r;

	if (!uattrs) {
		r = -ENOMEM;
		goto out;
	}
	if (!lc->users_base) {
		r = ids_error_set(p->err, IDS_E_CONFIG, "no users base configured");
		goto out;
	}
	/* the flavor's filters, when a hand-built config left them out */
	if (!ufilter)
		ufilter =
		    p->ad ? "(&(objectCategory=person)(objectClass=user))" : "(objectClass=inetOrgPerson)";
	const char *gfilter = lc->groups_filter ? lc->groups_filter
			      : p->ad		? "(objectClass=group)"
				      : "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)"
					"(objectClass=posixGroup))";

	/* attributes are always named: entryUUID is operational (not in
	 * "*"), and nothing else is worth the bytes */
	for (int f = IDS_F_EXTERNAL_ID; f <= IDS_F_DISPLAY_NAME; f++)
		attrs_add(uattrs, &nu, p->attr[f]);
	attrs_add(uattrs, &nu, "cn");
	if (p->ad)
		attrs_add(uattrs, &nu, "userAccountControl");
	/* the user's primary group: its RID, and the domain SID in its own */
	if (p->ad && lc->groups_base) {
		attrs_add(uattrs, &nu, "primaryGroupID");
		attrs_add(uattrs, &nu, "objectSid");
	}
	for (size_t i = 0; i < nrule; i++)
		attrs_add(uattrs, &nu, p->ctx->rule_attrs->v[i]);
	attrs_add(gattrs, &ng, p->attr[IDS_F_EXTERNAL_ID]);
	attrs_add(gattrs, &ng, "cn");
	attrs_add(gattrs, &ng, "mail");
	/* member_range_size asks for the first range explicitly
	 * ("member;range=0-999"); without it the server decides (AD sends
	 * MaxValRange values and says so with a range, Samba sends all) */
	for (size_t i = 0; mattrs[i] && i < 3; i++) {
		if (lc->member_range_size > 0) {
			if (asprintf(&ranged[i], "%s;range=0-%d", mattrs[i], lc->member_range_size - 1) < 0) {
				ranged[i] = NULL;
				r = -ENOMEM;
				goto out;
			}
			attrs_add(gattrs, &ng, ranged[i]);
		} else {
			attrs_add(gattrs, &ng, mattrs[i]);
		}
	}
	/* AD: whether a group changed between two ranged reads, and the SID
	 * its users' primaryGroupID refers to */
	if (p->ad) {
		attrs_add(gattrs, &ng, "uSNChanged");
		attrs_add(gattrs, &ng, "objectSid");
	}
	attrs_add(dattrs, &nd, p->attr[IDS_F_EXTERNAL_ID]);

	if ((r = connect_any(p)) < 0)
		goto out;

	/* disabled users first, into a set the user search consults */
	if (lc->disabled_filter) {
		if (!(dfilter = and_filter(ufilter, lc->disabled_filter))) {
			r = -ENOMEM;
			goto out;
		}
		const struct search sr = {"disabled users", lc->users_base, dfilter, (char **)dattrs,
					  on_disabled};
		if ((r = run_search(p, &sr)) < 0)
			goto out;
	}
	const struct search us = {"users", lc->users_base, (char *)ufilter, (char **)uattrs, on_user};
	if ((r = run_search(p, &us)) < 0)
		goto out;
	if (lc->groups_base) {
		const struct search gs = {"groups", lc->groups_base, (char *)gfilter, (char **)gattrs,
					  on_group};
		if ((r = run_search(p, &gs)) < 0 || (r = read_ranged(p)) < 0 || (r = add_primaries(p)) < 0)
			goto out;
	}
	r = 0;
out:
	for (size_t i = 0; i < 3; i++)
		free(ranged[i]);
	free(dfilter);
	free(uattrs);
	return r;
}

/* The ops' pull.  SIGPIPE is blocked while libldap writes: a server that
 * closed the connection must give an EPIPE error, not kill the daemon;
 * one raised meanwhile is consumed before the old mask comes back. */
static int ldap_pull(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		     struct ids_snapshot *s, struct ids_error *err)
{
	struct pull p = {
	    .cc = cfg, .lc = cfg ? &cfg->ldap : NULL, .ctx = ctx, .s = s, .err = err, .next_msgid = -1};
	sigset_t pipe_set, old, pending;
	bool was_pending;
	int r;

	if (!cfg || !s)
		return ids_error_set(err, -EINVAL, "LDAP pull without a configuration or snapshot");
	if (cfg->ldap.page_size <= 0)
		return ids_error_set(err, IDS_E_CONFIG, "page_size must be positive");
	unsigned fl = cfg->ldap.flavor <= IDS_LDAP_GENERIC ? cfg->ldap.flavor : IDS_LDAP_GENERIC;
	p.ad = fl == IDS_LDAP_AD;
	for (int f = 0; f < 6; f++)
		p.attr[f] = cfg->attr[f] ? cfg->attr[f] : flavor_attr[fl][f];
	p.timeout = cfg->ldap.timeout > 0 ? cfg->ldap.timeout : DEFAULT_TIMEOUT;

	if ((r = pthread_mutex_init(&p.fd_mu, NULL)) != 0)
		return ids_error_set(err, -r, "LDAP pull: %s", strerror(r));
	p.fd = -1;
	p.conncb = (struct ldap_conncb){conn_add, conn_del, &p};

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);

	r = do_pull(&p);
	drop_connection(&p);
	pthread_mutex_destroy(&p.fd_mu);

	if (!was_pending) {
		struct timespec zero = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	entry_clear(&p.ent);
	free(p.ent.a);
	free_msgs(&p);
	free(p.msgs);
	ids_buf_free(&p.key);
	seen_free(&p.seen);
	ids_strmap_free(&p.disabled);
	ids_arena_free(&p.keys);
	free(p.ranged);
	free(p.prim);
	free(p.sid_gid);
	ids_strmap_free(&p.sidmap);
	ids_buf_free(&p.sid);
	ids_arena_free(&p.keep);
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "LDAP pull: %s", ids_strerror(r));
	return r;
}

const struct ids_connector_ops ids_ldap_connector = {
    .type = "ldap",
    .pull = ldap_pull,
};
