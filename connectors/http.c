/* http.c — the cloud connectors' HTTPS client over libcurl (http.h).
 *
 * One easy handle per connector run, so that the TLS session and the TCP
 * connection to Graph or Google are reused from page to page; the daemon
 * keeps it for the connector's next run (ids_http_reuse, oauth.c), so
 * that a run of two small requests does not start with a handshake.  The rules
 * it keeps, and why:
 * - HTTPS only, for the request and for any redirect, and no redirect is
 *   followed: a next-page link that points to http:// or elsewhere by a
 *   3xx must not carry our bearer token there.
 * - Verification of the peer certificate and host name is always on.
 *   tls_ca_file, when set, is the only trust anchor (CAPATH cleared), as
 *   for the LDAP connector: a private CA must not silently widen into
 *   "the private CA plus the whole system store".
 * - Every wait is bounded: CONNECTTIMEOUT, a low-speed limit of 1 byte/s
 *   for `timeout` seconds (a stalled or dripping server ends the request),
 *   a total TIMEOUT cap, and the body is capped at max_body bytes after
 *   decompression (a gzip bomb stops there too).
 * - Retries follow http.h; waits sleep in slices of at most half a second
 *   and call progress() between slices, so the daemon's watchdog keeps
 *   being fed and SIGTERM / run_timeout stop a long Retry-After.
 * - Nothing is logged here, and no message carries a request header (the
 *   Authorization bearer), a request body (client secrets, assertions) or
 *   a URL's query string. */
#include "ids/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#define DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)
#define DEFAULT_RETRIES 5
#define DEFAULT_TIMEOUT 30
#define MIN_TOTAL_CAP 300    /* seconds: the TIMEOUT cap is max(this, 10 * timeout) */
#define MAX_HEADER_VALUE 256 /* longest request id / content type kept */
#define RETRY_AFTER_MIN 1
#define RETRY_AFTER_MAX 300
#define BACKOFF_MAX 300 /* seconds: doubling stops here when max_retries > 5 */
#define SLICE_MSEC 500	/* longest sleep between two progress() calls */

/* A CA file's version (ca_identity); compared with memcmp. */
struct ca_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	time_t mtime_sec;
	long mtime_nsec;
};

struct ids_http {
	CURL *c;
	char *ca_file;
	struct ca_id ca_id; /* the version of ca_file the handle was made with */
	int timeout;
	size_t max_body;
	int max_retries;
	int64_t deadline; /* CLOCK_MONOTONIC usec, 0 = none */
	int (*progress)(void *ud);
	void *ud;
	double wait_scale;
	void (*debug)(void *ud, const char *line);
	uint64_t rng;

	/* the attempt in flight */
	struct ids_http_resp *r;
	char *retry_after;
	bool too_big, oom;
	int stopped;	   /* < 0: progress() stopped the transfer with this code */
	int64_t last_tick; /* CLOCK_MONOTONIC usec of the last progress() call */
	char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

/* curl_global_init is not safe to call twice or concurrently. */
static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* xorshift64*: jitter only needs to differ between instances, not be secret. */
static uint64_t rnd(struct ids_http *h)
{
	h->rng ^= h->rng >> 12;
	h->rng ^= h->rng << 25;
	h->rng ^= h->rng >> 27;
	return h->rng * 2685821657736338717ULL;
}

/* ---------------- Retry-After ---------------- */

static int clamp_wait(long long sec)
{
	return sec < RETRY_AFTER_MIN ? RETRY_AFTER_MIN : sec > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (int)sec;
}

int ids_http_retry_after(const char *v, int64_t now_unix)
{
	if (!v)
		return -1;
	while (*v == ' ' || *v == '\t')
		v++;
	const char *p = v;
	if (*p == '-')
		p++;
	if (*p >= '0' && *p <= '9') {
		/* delta-seconds; a negative or huge value is still a server
		 * asking us to wait, so it is clamped rather than refused */
		long long sec = 0;
		for (; *p >= '0' && *p <= '9'; p++)
			if (sec < 1000000)
				sec = sec * 10 + (*p - '0');
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p)
			return -1;
		return clamp_wait(*v == '-' ? -sec : sec);
	}
	/* an HTTP date (RFC 9110 5.6.7): libcurl's parser reads its three
	 * forms with English month names whatever the locale (strptime would
	 * follow LC_TIME).  It is lenient — a missing "GMT" or a stray word
	 * still gives a time — which is harmless here: whatever it reads is
	 * clamped to 1..300 s, and that bound is the guarantee */
	time_t t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -1;
	return clamp_wait((long long)t - now_unix);
}

/* ---------------- URL encoding ---------------- */

int ids_http_urlencode(struct ids_buf *b, const char *s)
{
	/* libcurl keeps RFC 3986's unreserved characters and writes the rest
	 * as upper-case %XX, byte by byte (UTF-8 included); the handle
	 * argument has been unused since 7.82 */
	char *e = curl_easy_escape(NULL, s, 0);
	if (!e)
		return -ENOMEM;
	/* an empty value still leaves b a valid (empty) string */
	int r = ids_buf_puts(b, e);
	/* the value may be a client secret or an assertion: libcurl's copy
	 * is wiped like ours */
	explicit_bzero(e, strlen(e));
	curl_free(e);
	return r;
}

/* ---------------- the handle ---------------- */

void ids_http_global_init(void)
{
	pthread_once(&global_once, global_init);
}

/* The options of one run (ids_http_new, ids_http_reuse). */
static void set_run_opts(struct ids_http *h, const struct ids_http_opts *o)
{
	h->timeout = o->timeout > 0 ? o->timeout : DEFAULT_TIMEOUT;
	h->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
	h->max_retries = o->max_retries > 0 ? o->max_retries : DEFAULT_RETRIES;
	h->deadline = o->deadline_usec;
	h->progress = o->progress;
	h->ud = o->ud;
	h->wait_scale = o->wait_scale > 0 ? o->wait_scale : 1.0;
	h->debug = o->debug;
}

/* What tells one version of a CA file from the next: a rewrite or a
 * rename over it changes the inode, the size or the time.  All zero when
 * there is no file (or it cannot be read: the handshake says why). */
static void ca_identity(const char *path, struct ca_id *id)
{
	struct stat st;
	memset(id, 0, sizeof(*id));
	if (!path || stat(path, &st) < 0)
		return;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime_sec = st.st_mtim.tv_sec;
	id->mtime_nsec = st.st_mtim.tv_nsec;
}

int ids_http_new(const struct ids_http_opts *o, struct ids_http **ret, struct ids_error *err)
{
	struct ids_http *h = NULL;
	int r;

	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		r = ids_error_set(err, -ENOMEM, "libcurl: %s", curl_easy_strerror(global_rc));
		goto fail;
	}
	if (!(h = calloc(1, sizeof(*h)))) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	set_run_opts(h, o);
	if (getrandom(&h->rng, sizeof(h->rng), GRND_NONBLOCK) != sizeof(h->rng))
		h->rng = (uint64_t)ids_mono_usec();
	h->rng |= 1; /* xorshift must not start at 0 */
	if (o->tls_ca_file && !(h->ca_file = strdup(o->tls_ca_file))) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	ca_identity(h->ca_file, &h->ca_id);
	if (!(h->c = curl_easy_init())) {
		r = ids_error_set(err, -ENOMEM, "libcurl: cannot create a handle");
		goto fail;
	}
	*ret = h;
	return 0;
fail:
	ids_http_free(h);
	return r;
}

bool ids_http_reuse(struct ids_http *h, const struct ids_http_opts *o)
{
	/* libcurl matches a kept connection or TLS session to a request by
	 * host, port and TLS settings, the CA file's name included: another
	 * tls_ca_file could share nothing anyway.  But it keeps the CA store
	 * it parsed for the handle (CURLOPT_CA_CACHE_TIMEOUT, a day) and
	 * would not see the same file rewritten with another CA: a new
	 * handle then, so that a changed trust anchor counts from the next
	 * handshake on */
	if (!h->ca_file != !o->tls_ca_file || (h->ca_file && strcmp(h->ca_file, o->tls_ca_file)))
		return false;
	struct ca_id now;
	ca_identity(h->ca_file, &now);
	if (memcmp(&now, &h->ca_id, sizeof(now)))
		return false;
	set_run_opts(h, o);
	return true;
}

void ids_http_free(struct ids_http *h)
{
	if (!h)
		return;
	if (h->c)
		curl_easy_cleanup(h->c);
	free(h->ca_file);
	free(h->retry_after);
	free(h);
}

void ids_http_resp_clear(struct ids_http_resp *r)
{
	if (!r)
		return;
	ids_buf_free(&r->body);
	free(r->request_id);
	free(r->content_type);
	memset(r, 0, sizeof(*r));
}

/* ---------------- callbacks ---------------- */

/* A header value fit for an error message: trimmed, at most
 * MAX_HEADER_VALUE bytes, anything but printable ASCII replaced, so that a
 * hostile server cannot put control characters into our log lines. */
static char *header_value(const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n > MAX_HEADER_VALUE)
		n = MAX_HEADER_VALUE;
	char *s = malloc(n + 1);
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++)
		s[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	s[n] = '\0';
	return s;
}

/* Keeps the value of header `name` in *slot when line is that header and
 * *slot is still empty (the first of duplicates wins). */
static void take_header(struct ids_http *h, const char *line, size_t n, const char *name, char **slot)
{
	size_t k = strlen(name);
	if (*slot || n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
		return;
	if (!(*slot = header_value(line + k + 1, n - k - 1)))
		h->oom = true;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
	struct ids_http *h = ud;
	size_t n = size * nitems;
	/* a status line starts a new response (after a 100 Continue, say):
	 * only the final response's headers count */
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		free(h->r->request_id);
		free(h->r->content_type);
		free(h->retry_after);
		h->r->request_id = h->r->content_type = h->retry_after = NULL;
		return n;
	}
	/* Graph: request-id (and x-ms-request-id on some services); Google
	 * answers x-goog-request-id on a few APIs */
	take_header(h, line, n, "request-id", &h->r->request_id);
	take_header(h, line, n, "x-ms-request-id", &h->r->request_id);
	take_header(h, line, n, "x-goog-request-id", &h->r->request_id);
	take_header(h, line, n, "content-type", &h->r->content_type);
	take_header(h, line, n, "retry-after", &h->retry_after);
	return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct ids_http *h = ud;
	size_t n = size * nmemb;
	if (n > h->max_body - h->r->body.len) {
		h->too_big = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (ids_buf_add(&h->r->body, p, n) < 0) {
		h->oom = true;
		return 0;
	}
	return n;
}

/* libcurl's transfer callback: progress() at most once a second while a
 * transfer runs, so that a server that drips just fast enough to pass the
 * low-speed limit still lets the daemon feed its watchdog, and SIGTERM or
 * run_timeout stop the transfer instead of waiting for the TIMEOUT cap. */
static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct ids_http *h = ud;
	int64_t now = ids_mono_usec();
	if (now - h->last_tick < 1000000)
		return 0;
	h->last_tick = now;
	int r = h->progress ? h->progress(h->ud) : 0;
	if (r >= 0 && h->deadline && now >= h->deadline)
		r = IDS_E_TIMEOUT;
	if (r >= 0)
		return 0;
	h->stopped = r == IDS_E_TIMEOUT ? IDS_E_TIMEOUT : IDS_E_CANCELLED;
	return 1; /* CURLE_ABORTED_BY_CALLBACK */
}

/* ---------------- one request ---------------- */

/* "https://host/path" of url, without query or fragment: URLs in messages
 * never carry a query (page tokens are long and say nothing). */
static char *url_for_msg(const char *url)
{
	size_t n = strcspn(url, "?#");
	char *s = strndup(url, n);
	return s;
}

/* The host of url, for TLS messages; new, or NULL. */
static char *url_host(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL, *copy = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		copy = strdup(host);
	curl_free(host);
	curl_url_cleanup(u);
	return copy;
}

/* Calls progress(); < 0 with err set when the run must stop. */
static int check_progress(struct ids_http *h, const char *method, const char *shown, struct ids_error *err)
{
	int r = h->progress ? h->progress(h->ud) : 0;
	if (r >= 0 && h->deadline && ids_mono_usec() >= h->deadline)
		r = IDS_E_TIMEOUT;
	if (r >= 0)
		return 0;
	/* keep the daemon's reason: IDS_E_TIMEOUT is run_timeout */
	if (r != IDS_E_TIMEOUT)
		r = IDS_E_CANCELLED;
	return ids_error_set(err, r, "%s %s: stopped: %s", method, shown,
			     r == IDS_E_TIMEOUT ? "run_timeout reached" : "cancelled");
}

/* Sleeps msec milliseconds in slices, calling progress() before each. */
static int wait_msec(struct ids_http *h, int64_t msec, const char *method, const char *shown,
		     struct ids_error *err)
{
	int64_t end = ids_mono_usec() + msec * 1000;
	for (;;) {
		int r = check_progress(h, method, shown, err);
		if (r < 0)
			return r;
		int64_t left = end - ids_mono_usec();
		if (left <= 0)
			return 0;
		if (left > SLICE_MSEC * 1000)
			left = SLICE_MSEC * 1000;
		struct timespec ts = {left / 1000000, (left % 1000000) * 1000};
		/* EINTR: the loop recomputes what is left and asks progress() */
		nanosleep(&ts, NULL);
	}
}

/* Sets the options of one attempt.  Everything security-relevant is set
 * again each time: the handle is reused, and an option must never carry
 * over from one request to the next by accident. */
static CURLcode set_options(struct ids_http *h, const char *method, const char *url, struct curl_slist *hl,
			    const char *body, size_t body_len)
{
	long cap = h->timeout * 10L > MIN_TOTAL_CAP ? h->timeout * 10L : MIN_TOTAL_CAP;
	long cap_ms = cap * 1000;
	if (h->deadline) {
		/* never run a transfer past the run's deadline */
		int64_t left = (h->deadline - ids_mono_usec()) / 1000;
		if (left < cap_ms)
			cap_ms = left > 1 ? (long)left : 1;
	}
	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                        \
	do {                                                                                                 \
		if (rc == CURLE_OK)                                                                          \
			rc = curl_easy_setopt(h->c, opt, val);                                               \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (h->ca_file) {
		SET(CURLOPT_CAINFO, h->ca_file);
		SET(CURLOPT_CAPATH, (char *)NULL);
	}
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT, (long)h->timeout);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, (long)h->timeout);
	SET(CURLOPT_TIMEOUT_MS, cap_ms);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_body);
	SET(CURLOPT_HTTPHEADER, hl);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, h);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, h);
	SET(CURLOPT_ERRORBUFFER, h->errbuf);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_XFERINFOFUNCTION, on_xfer);
	SET(CURLOPT_XFERINFODATA, h);
	SET(CURLOPT_USERAGENT, "idsyncd/" IDSYNCD_VERSION);
	if (!strcmp(method, "GET")) {
		SET(CURLOPT_HTTPGET, 1L);
		SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
	} else {
		/* POSTFIELDS, not COPYPOSTFIELDS: libcurl keeps no copy of a
		 * body that may hold a client secret */
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		SET(CURLOPT_POSTFIELDS, body ? body : "");
		SET(CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : (char *)NULL);
	}
#undef SET
	return rc;
}

/* What a failed transfer means: the IDS_E_* code, and whether trying
 * again can help. */
static int map_curl(CURLcode cc, bool *retry)
{
	*retry = false;
	switch (cc) {
	case CURLE_OUT_OF_MEMORY: return -ENOMEM;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE: return IDS_E_TLS;
	case CURLE_SSL_CONNECT_ERROR:
		/* a handshake cut short by the network looks like this too */
		*retry = true;
		return IDS_E_TLS;
	case CURLE_OPERATION_TIMEDOUT: *retry = true; return IDS_E_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_WEIRD_SERVER_REPLY: *retry = true; return IDS_E_CONNECT;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT: return IDS_E_PROTOCOL;
	default: return IDS_E_CONNECT;
	}
}

/* Why the peer's certificate was refused, in the operator's terms: each
 * reason has a different fix (trust the right CA, get a certificate that
 * names the host, renew it), so they must not read alike.  OpenSSL's
 * verify result tells the chain's problems apart; the host name is
 * checked by OpenSSL (…_MISMATCH) or by libcurl (see default:). */
static const char *tls_reason(struct ids_http *h)
{
#define HOST_MISMATCH "the certificate does not name this host"

	long v = -1;
	if (curl_easy_getinfo(h->c, CURLINFO_SSL_VERIFYRESULT, &v) != CURLE_OK)
		return "refused";
	switch (v) {
	case X509_V_OK:
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH: return HOST_MISMATCH;
	case X509_V_ERR_CERT_HAS_EXPIRED: return "the certificate has expired";
	case X509_V_ERR_CERT_NOT_YET_VALID: return "the certificate is not yet valid";
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		return h->ca_file ? "the certificate is not signed by the CA of tls_ca_file"
				  : "the certificate is not signed by a CA of the system trust store";
	default:
		/* libcurl 7.88 checks the name itself after OpenSSL accepted the
		 * chain and leaves the verify result unset (1) when the name
		 * fails: its own message is then the only witness */
		return strstr(h->errbuf, "target host name") ? HOST_MISMATCH
							     : "the certificate chain is not valid";
	}
#undef HOST_MISMATCH
}

/* The message of a transfer that got no usable answer.  TLS failures
 * name the host, since "which server's certificate" is what the operator
 * has to go and fix. */
static int transport_error(struct ids_http *h, struct ids_error *err, int code, CURLcode cc,
			   const char *method, const char *shown, const char *url, int retries, bool late)
{
	const char *why = h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc);
	char *host = url_host(url);
	const char *hs = host ? host : "?";
	struct ids_buf after = {0};
	if (retries > 0)
		ids_buf_printf(&after, " (after %d %s%s)", retries, retries == 1 ? "retry" : "retries",
			       late ? "; no time left before the run deadline" : "");
	const char *tail = after.p ? after.p : "";
	int r;
	if (cc == CURLE_SSL_CACERT_BADFILE)
		r = ids_error_set(err, code, "%s %s: cannot use the CA certificates in %s: %s", method, shown,
				  h->ca_file ? h->ca_file : "the system trust store", why);
	else if (cc == CURLE_SSL_CONNECT_ERROR)
		r = ids_error_set(err, code, "%s %s: TLS handshake with host %s failed: %s%s", method, shown,
				  hs, why, tail);
	else if (code == IDS_E_TLS)
		r = ids_error_set(err, code, "%s %s: certificate verification failed for host %s: %s (%s)",
				  method, shown, hs, tls_reason(h), why);
	else if (code == IDS_E_PROTOCOL)
		r = ids_error_set(err, code, "%s %s: refused: only https:// URLs are used (%s)", method,
				  shown, why);
	else if (code == IDS_E_TIMEOUT)
		r = ids_error_set(err, code, "%s %s: no progress for %d s or too slow (%s)%s", method, shown,
				  h->timeout, why, tail);
	else
		r = ids_error_set(err, code, "%s %s: %s%s", method, shown, why, tail);
	ids_buf_free(&after);
	free(host);
	return r;
}

/* Milliseconds to wait before retry number `n` (0-based): Retry-After
 * when the answer had a usable one, else 1, 2, 4, 8, 16 s; plus up to a
 * quarter more of jitter, so that many clients throttled together do not
 * come back together. */
static int64_t retry_wait_msec(struct ids_http *h, int n, int retry_after)
{
	int64_t base = retry_after > 0 ? retry_after : (n < 9 ? 1 << n : BACKOFF_MAX);
	if (base > BACKOFF_MAX)
		base = BACKOFF_MAX;
	int64_t ms = base * 1000 + (int64_t)(rnd(h) % (uint64_t)(base * 250 + 1));
	return (int64_t)((double)ms * h->wait_scale);
}

static bool status_retryable(long st, const struct ids_http_resp *r,
			     bool (*is_retryable)(const struct ids_http_resp *r), bool *use_retry_after)
{
	*use_retry_after = st == 429 || st == 503 || st == 504;
	if (*use_retry_after || st >= 500)
		return true;
	if (st >= 400 && is_retryable && is_retryable(r)) {
		*use_retry_after = true; /* when the server sent one, it knows best */
		return true;
	}
	return false;
}

/* libcurl's time of one phase, in milliseconds from the transfer's start. */
static double ms_of(struct ids_http *h, CURLINFO what)
{
	curl_off_t us = 0;
	return curl_easy_getinfo(h->c, what, &us) == CURLE_OK ? (double)us / 1000.0 : -1.0;
}

/* The debug line of the attempt just made (http.h: debug): where a
 * request's time went — a new connection's name lookup, TCP connect and
 * TLS handshake, or none of them on a reused one, then the server's
 * first byte and the end.  libcurl's times are cumulative from the start. */
static void trace(struct ids_http *h, const char *method, const char *shown, CURLcode cc,
		  const struct ids_http_resp *resp)
{
	if (!h->debug)
		return;
	long conns = 0;
	curl_easy_getinfo(h->c, CURLINFO_NUM_CONNECTS, &conns);
	struct ids_buf b = {0};
	char st[32];
	if (cc == CURLE_OK)
		snprintf(st, sizeof(st), "HTTP %ld", resp->status);
	int r = ids_buf_printf(&b,
			       "%s %s: %s, %zu bytes, %s connection; ms from start: name lookup %.1f, "
			       "connect %.1f, TLS %.1f, first byte %.1f, total %.1f",
			       method, shown, cc == CURLE_OK ? st : curl_easy_strerror(cc), resp->body.len,
			       conns > 0 ? "new" : "reused", ms_of(h, CURLINFO_NAMELOOKUP_TIME_T),
			       ms_of(h, CURLINFO_CONNECT_TIME_T), ms_of(h, CURLINFO_APPCONNECT_TIME_T),
			       ms_of(h, CURLINFO_STARTTRANSFER_TIME_T), ms_of(h, CURLINFO_TOTAL_TIME_T));
	if (r >= 0)
		h->debug(h->ud, b.p);
	ids_buf_free(&b);
}

/* One attempt of a request, its answer in *resp (status 0 when there was
 * none): libcurl's result. */
static CURLcode attempt(struct ids_http *h, const char *method, const char *url, struct curl_slist *hl,
			const char *body, size_t body_len, struct ids_http_resp *resp)
{
	/* nothing of a previous attempt may leak into this one's answer */
	ids_buf_reset(&resp->body);
	free(resp->request_id);
	free(resp->content_type);
	resp->request_id = resp->content_type = NULL;
	resp->status = 0;
	h->r = resp;
	h->too_big = h->oom = false;
	h->stopped = 0;
	h->last_tick = ids_mono_usec(); /* check_progress() just ran */
	h->errbuf[0] = '\0';
	CURLcode cc = set_options(h, method, url, hl, body, body_len);
	if (cc == CURLE_OK)
		cc = curl_easy_perform(h->c);
	/* the body pointer is the caller's: do not leave it behind */
	curl_easy_setopt(h->c, CURLOPT_POSTFIELDS, (char *)NULL);
	curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
	h->r = NULL;
	return cc;
}

/* The outcomes of an attempt that no retry can change: out of memory,
 * stopped (run_timeout or a signal), an answer over max_body.  0 when it
 * was none of them. */
static int hard_failure(struct ids_http *h, CURLcode cc, const char *method, const char *shown,
			const struct ids_http_resp *resp, struct ids_error *err)
{
	if (h->oom)
		return ids_error_set(err, -ENOMEM, "%s %s: out of memory", method, shown);
	/* the TIMEOUT cap was the run's deadline: that is run_timeout, not
	 * a slow server, and no retry can help */
	if (cc == CURLE_OPERATION_TIMEDOUT && h->deadline && ids_mono_usec() >= h->deadline - 100000)
		h->stopped = IDS_E_TIMEOUT;
	if (h->stopped < 0)
		return ids_error_set(err, h->stopped, "%s %s: stopped: %s", method, shown,
				     h->stopped == IDS_E_TIMEOUT ? "run_timeout reached" : "cancelled");
	if (h->too_big || cc == CURLE_FILESIZE_EXCEEDED)
		return ids_error_set(err, IDS_E_PROTOCOL, "%s %s: answer larger than %zu bytes%s%s%s", method,
				     shown, h->max_body, resp->request_id ? " (request-id " : "",
				     resp->request_id ? resp->request_id : "", resp->request_id ? ")" : "");
	return 0;
}

int ids_http_request(struct ids_http *h, const char *method, const char *url, const char *const *headers,
		     const char *body, size_t body_len, bool (*is_retryable)(const struct ids_http_resp *r),
		     struct ids_http_resp *resp, struct ids_error *err)
{
	struct curl_slist *hl = NULL;
	char *shown = url_for_msg(url);
	int r = 0;

	ids_http_resp_clear(resp);
	if (!shown) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *t = curl_slist_append(hl, headers[i]);
		if (!t) {
			r = ids_error_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		hl = t;
	}

	for (int n = 0;; n++) {
		if ((r = check_progress(h, method, shown, err)) < 0)
			goto out;
		CURLcode cc = attempt(h, method, url, hl, body, body_len, resp);
		if (cc == CURLE_OK)
			curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &resp->status);
		trace(h, method, shown, cc, resp);
		bool retry = false, use_ra = false;
		int code = 0;
		if ((r = hard_failure(h, cc, method, shown, resp, err)) < 0)
			goto out;
		if (cc == CURLE_OK) {
			retry = status_retryable(resp->status, resp, is_retryable, &use_ra);
			if (!retry)
				goto out; /* r = 0: an answer the caller judges */
		} else {
			code = map_curl(cc, &retry);
			if (!retry) {
				r = transport_error(h, err, code, cc, method, shown, url, 0, false);
				goto out;
			}
		}

		/* a retryable outcome: wait, unless the retries or the time are spent */
		int ra = use_ra ? ids_http_retry_after(h->retry_after, (int64_t)time(NULL)) : -1;
		int64_t wait = retry_wait_msec(h, n, ra);
		bool spent = n >= h->max_retries;
		bool late = h->deadline && ids_mono_usec() + wait * 1000 >= h->deadline;
		if (spent || late) {
			if (cc == CURLE_OK)
				goto out; /* the last answer, 429 or 5xx, for the caller to report */
			r = transport_error(h, err, code, cc, method, shown, url, n, late && !spent);
			goto out;
		}
		if ((r = wait_msec(h, wait, method, shown, err)) < 0)
			goto out;
		resp->retries++;
	}

out:
	/* the copies of the headers hold the bearer token: wipe them */
	for (struct curl_slist *l = hl; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(hl);
	free(h->retry_after);
	h->retry_after = NULL;
	free(shown);
	if (r < 0)
		ids_http_resp_clear(resp);
	return r;
}
