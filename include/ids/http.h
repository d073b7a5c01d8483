/* http.h — the cloud connectors' HTTPS client over libcurl: one handle per
 * connector run (connection reuse; the daemon keeps it for the next run,
 * ids_http_reuse), HTTPS only, certificate and host-name
 * verification always on (tls_ca_file replaces the system trust store, as for
 * LDAP: for a private CA or a TLS-inspecting proxy), connect and
 * low-speed timeouts, gzip, a hard maximum body size, and the bounded
 * retry policy of connectors.md: 429/503/504 wait Retry-After (seconds or
 * an HTTP date, clamped to 1..300 s) plus jitter, other 5xx and transport
 * errors back off 1, 2, 4, 8, 16 s with jitter; at most 5 retries of one
 * request, and never past the run's deadline. */
#ifndef IDS_HTTP_H
#define IDS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/error.h"
#include "ids/util.h"

struct ids_http;

struct ids_http_opts {
	const char *tls_ca_file; /* NULL: the system trust store */
	int timeout;		 /* seconds: connect timeout and no-progress (low-speed) limit */
	size_t max_body;	 /* bytes; 0 = 64 MiB */
	int max_retries;	 /* 0 = 5 */
	int64_t deadline_usec;	 /* CLOCK_MONOTONIC usec; 0 = none */
	/* Called before every request and while waiting between retries
	 * (watchdog); < 0 cancels.  May be NULL. */
	int (*progress)(void *ud);
	void *ud;
	/* Test hook: retry waits are multiplied by this (1.0 when 0). */
	double wait_scale;
	/* Called after every attempt with one line for a debug log: method,
	 * URL without its query, status, bytes, whether the connection was
	 * new, and libcurl's times (name lookup, connect, TLS, first byte,
	 * total).  Nothing secret: no header, body or query.  May be NULL. */
	void (*debug)(void *ud, const char *line);
};

struct ids_http_resp {
	long status;	     /* HTTP status of the final answer */
	struct ids_buf body; /* its body (decompressed) */
	char *request_id;    /* request-id / x-ms-request-id / x-goog-request-id header, or NULL */
	char *content_type;  /* or NULL */
	int retries;	     /* how many retries it took */
};

/* *ret new (ids_http_free).  Copies what it needs from o. */
int ids_http_new(const struct ids_http_opts *o, struct ids_http **ret, struct ids_error *err);
void ids_http_free(struct ids_http *h); /* accepts NULL */

/* Readies h, made by ids_http_new for an earlier run, for a new run with
 * o's options, keeping the connections and TLS sessions it holds: a
 * daemon's next run of a connector then skips the TCP and TLS handshakes
 * (libcurl reuses a connection only for the same host, port and TLS
 * settings, checks that the server has not closed it, and resumes a TLS
 * session otherwise; verification stays on).  False, h unchanged, when h
 * cannot serve o: another tls_ca_file, or the same file changed since h
 * was made (libcurl would go on trusting the CA store it parsed); the
 * caller frees h and makes a new one.  h must not be in use elsewhere. */
bool ids_http_reuse(struct ids_http *h, const struct ids_http_opts *o);

/* One request with the retry policy.  headers: NULL-terminated "Name:
 * value" strings (may be NULL).  body: NULL for GET.  Returns 0 with *resp
 * filled (any final status: the caller judges 4xx), or < 0 when no answer
 * could be had (IDS_E_CONNECT, IDS_E_TLS, IDS_E_TIMEOUT, IDS_E_CANCELLED,
 * IDS_E_PROTOCOL for a body over max_body) with err naming the URL (without
 * its query) and the request id when there was one.  `is_retryable` lets
 * the caller add statuses/bodies to retry (Google's 403 rate limits): it is
 * called for a 4xx answer other than 429 and returns true to retry.
 * resp must be zeroed or hold an earlier answer: it is cleared first. */
int ids_http_request(struct ids_http *h, const char *method, const char *url, const char *const *headers,
		     const char *body, size_t body_len, bool (*is_retryable)(const struct ids_http_resp *r),
		     struct ids_http_resp *resp, struct ids_error *err);
void ids_http_resp_clear(struct ids_http_resp *r);

/* Appends s percent-encoded for a URL query value (RFC 3986 unreserved kept). */
int ids_http_urlencode(struct ids_buf *b, const char *s);

/* Parses a Retry-After value (delta seconds or an HTTP date) into seconds,
 * clamped to 1..300; -1 when absent or unparsable.  Pure. */
int ids_http_retry_after(const char *v, int64_t now_unix);

/* libcurl's global state, once (ids_http_new does it too): the daemon
 * calls it before its worker threads start, as libcurl asks. */
void ids_http_global_init(void);

#endif
