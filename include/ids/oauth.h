/* oauth.h — the bearer-token layer the cloud connectors share: Entra
 * (Graph) and Google (Directory API) differ in URLs, claims and page
 * shapes, and in nothing else that this layer owns:
 *
 *   - the access token: fetched with the connector's grant, cached, and
 *     renewed before it expires (ids_oauth_renew_after) or once when the
 *     API answers 401 (revoked or expired early);
 *   - the authorized GET: 200 with a JSON body, or an error that says
 *     which listing, the service's own words and the request id;
 *   - the page loop: every page through the connector's parser, at most
 *     IDS_OAUTH_MAX_PAGES, a next link or token seen twice is a loop, the
 *     daemon's progress hook between pages, and an unparsable page names
 *     its request id (what the vendor's support asks for).
 *
 * Two copies of all this drifted within weeks (token lifetime, exit codes,
 * request ids): one layer keeps one behaviour.  Nothing is logged here;
 * no message carries a token, a grant or a URL's query. */
#ifndef IDS_OAUTH_H
#define IDS_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/error.h"
#include "ids/http.h"
#include "ids/util.h"

#define IDS_OAUTH_MAX_PAGES 100000 /* pages per listing: a loop that escapes detection ends here */

struct ids_oauth;
struct ids_oauth_tokens;
struct ids_pull_ctx;

/* Access tokens and HTTP handles kept between runs (the daemon's, issue
 * 15): a no-change delta run is two small requests, and a token request
 * and a TLS handshake each made it twice as long.
 * Tokens: memory only, never logged, stored or written: an entry is keyed
 * by the SHA-256 of the connector's name, the token URL and the
 * connector's credential identity (tenant, client id, scope, the secret or
 * key itself), so a reload or a rotated key file that changes any of these
 * misses, and the old token is never sent again.  An entry is used until
 * its renewal time (ids_oauth_renew_after), dropped on a 401 or a failed
 * renewal.
 * Handles: one per connector name (ids_oauth_http_new / _done), with its
 * connections, TLS sessions and parsed CA store; a run takes it out of the
 * cache and gives it back at its end, so a handle serves one run at a
 * time; dropped after two days unused.
 * One-shot commands pass none.  Thread-safe: every access holds the
 * cache's mutex.  *ret new (ids_oauth_tokens_free, which wipes every
 * token, closes every kept connection and accepts NULL).  -ENOMEM only. */
int ids_oauth_tokens_new(struct ids_oauth_tokens **ret);
void ids_oauth_tokens_free(struct ids_oauth_tokens *t);
/* Appends one field of a credential identity to id, length first, so
 * that no two different field lists give the same bytes; s NULL: an
 * absent field.  -ENOMEM only. */
int ids_oauth_id_add(struct ids_buf *id, const char *s, size_t len);
/* How many entries t holds (tests). */
size_t ids_oauth_tokens_count(struct ids_oauth_tokens *t);

/* The HTTP handle of a cloud pull: tls_ca_file (NULL: the system store),
 * timeout in seconds (<= 0: 30), retry waits that never run past the
 * run's run_timeout, ctx's progress hook (ctx may be NULL) while a
 * transfer or a wait goes on, and its debug hook after each request.
 * With the daemon's cache (ctx->tokens) and the connector's name, the
 * handle connector `name` kept from its last run, with its connections
 * and TLS sessions, when it can serve these options (ids_http_reuse);
 * otherwise a new one.  *ret new: give it back with ids_oauth_http_done. */
int ids_oauth_http_new(const char *tls_ca_file, int timeout, const struct ids_pull_ctx *ctx, const char *name,
		       struct ids_http **ret, struct ids_error *err);
/* Ends a pull's use of h (steals h; NULL accepted): kept in ctx->tokens
 * for connector `name`'s next run, or freed when there is no cache (one-
 * shot commands) or no name.  Kept after a failed run too: libcurl drops
 * a connection that failed and checks the others before reuse. */
void ids_oauth_http_done(const struct ids_pull_ctx *ctx, const char *name, struct ids_http *h);

/* A copy of url without its trailing slashes, to append paths to; NULL on
 * ENOMEM. */
char *ids_oauth_url_base(const char *url);

/* What differs per service.  Every pointer is borrowed and must outlive
 * the layer. */
struct ids_oauth_cfg {
	const char *service;   /* "Graph", "Google": in messages */
	const char *token_url; /* https:// */
	struct ids_http *http;
	/* Appends the whole form body of a token request (grant_type and
	 * the credential: a client secret or a signed assertion) to body,
	 * which the layer wipes after use.  < 0 with err set on failure. */
	int (*grant)(void *ud, struct ids_buf *body, struct ids_error *err);
	/* The service's words for a failed answer, printable and bounded:
	 * *ret_text new (never NULL on success); *ret_request_id new, or NULL
	 * when the body names none.  -ENOMEM only. */
	int (*error_text)(const struct ids_http_resp *resp, char **ret_text, char **ret_request_id);
	/* 4xx answers besides 429 that are rate limits (Google's 403
	 * rateLimitExceeded): retried by the HTTP layer, and IDS_E_LIMIT when
	 * the retries run out.  NULL: none. */
	bool (*retryable)(const struct ids_http_resp *resp);
	/* Paging.  link_origin set: the next page is an absolute URL that
	 * must stay on this origin, since the bearer token goes with it
	 * (Graph's @odata.nextLink).  Otherwise the next page is a token
	 * appended to the listing's URL as &token_param=… (Google's
	 * pageToken). */
	const char *link_origin;
	const char *token_param;
	const char *next_name; /* "@odata.nextLink", "nextPageToken": in messages */
	/* Messages name the page ("users: page 2: …"); Graph's parsers name
	 * the listing themselves. */
	bool number_pages;
	/* The pull's context: its progress hook is called between pages
	 * (the daemon's watchdog tick); < 0 stops the listing (IDS_E_TIMEOUT:
	 * run_timeout).  NULL: none. */
	const struct ids_pull_ctx *ctx;
	void *ud; /* for grant and identity */
	/* The token cache between runs (borrowed; NULL: a token per run) and
	 * the credential identity its key is made of: appends to id
	 * everything that, changed, must not reuse a token (the connector's
	 * name, tenant, client id, scope, the secret or key material); id is
	 * wiped after hashing.  < 0 with err set fails the request, as a
	 * failed grant would.  Both or neither. */
	struct ids_oauth_tokens *tokens;
	int (*identity)(void *ud, struct ids_buf *id, struct ids_error *err);
	/* Test hook: replaces ids_http_request (NULL: ids_http_request). */
	int (*request)(struct ids_http *h, const char *method, const char *url, const char *const *headers,
		       const char *body, size_t body_len, bool (*is_retryable)(const struct ids_http_resp *r),
		       struct ids_http_resp *resp, struct ids_error *err);
};

/* *ret new (ids_oauth_free).  Copies cfg (not what it points to).
 * -ENOMEM only. */
int ids_oauth_new(const struct ids_oauth_cfg *cfg, struct ids_oauth **ret);
/* Wipes the cached token and frees.  Accepts NULL. */
void ids_oauth_free(struct ids_oauth *o);

/* GET url with the bearer token (fetched or renewed first when needed):
 * 0 with a 200 JSON answer in *resp, else < 0 with err naming `what`
 * (IDS_E_AUTH for 401/403 and a refused grant, IDS_E_LIMIT for rate
 * limits, IDS_E_SERVER, IDS_E_PROTOCOL for a 200 that is not JSON, or the
 * HTTP layer's codes).  A 401 renews the token once and asks again. */
int ids_oauth_get(struct ids_oauth *o, const char *url, const char *what, struct ids_http_resp *resp,
		  struct ids_error *err);

/* One page's parser: the page body in; *ret_next new (the next link or
 * token), or NULL on the last page; < 0 with err set when the page is not
 * understood. */
typedef int (*ids_oauth_page_fn)(void *ud, const char *body, size_t len, char **ret_next,
				 struct ids_error *err);

/* Reads the listing at url to its last page, each page through fn(ud, …);
 * *pages counts the pages read.  The first error ends it (the caller
 * throws the snapshot away): nothing after a bad page is read. */
int ids_oauth_list(struct ids_oauth *o, const char *url, const char *what, ids_oauth_page_fn fn, void *ud,
		   size_t *pages, struct ids_error *err);

/* A token endpoint's 200 answer (RFC 6749 5.1): *ret_token new (a
 * secret: ids_secret_free), printable ASCII without spaces (it goes into
 * a header line); *ret_expires_in the seconds it says, or 0 when it says
 * nothing (absent, null or 0).  expires_in may be a number or a numeric
 * string (some proxies); token_type, when present, must be Bearer.
 * IDS_E_PROTOCOL otherwise, with a message that quotes nothing of the
 * body. */
int ids_oauth_parse_token(const char *body, size_t len, char **ret_token, long *ret_expires_in,
			  struct ids_error *err);

/* Seconds after which a token of expires_in seconds is renewed: 300 s
 * before it expires, or halfway for tokens shorter than 10 minutes; a
 * token whose answer gave no lifetime (0) is kept as if it lived 600 s;
 * more than a day counts as a day.  Always >= 1. */
long ids_oauth_renew_after(long expires_in);

#endif
