/* oauth.c — the bearer-token layer of the cloud connectors (oauth.h).
 *
 * Rules this file keeps, and why:
 * - The token lives in one place (o->auth, the whole header line) and is
 *   wiped whenever it is dropped: on renewal, on a 401, on free.
 * - A 401 renews the token once per request and asks the same URL again:
 *   tokens are revoked or expire early, and a page must not be skipped
 *   for that; a second 401 is an answer (IDS_E_AUTH), not a loop.
 * - A 200 that is not JSON (a captive portal's or a proxy's HTML) is
 *   refused here, before a parser could read it as "no users".
 * - Paging ends on the last page, on a repeated next link or token (the
 *   server is sending us round in circles), at IDS_OAUTH_MAX_PAGES, or
 *   when the daemon's progress hook says stop; never on a guess. */
#include "ids/oauth.h"

#include "ids/connector.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_MARGIN 300     /* seconds before expiry that a cached token is renewed */
#define DEFAULT_LIFETIME 600 /* seconds a token whose answer gives no lifetime is kept */
#define MAX_LIFETIME 86400   /* a day: a longer claim is a bug or a lie */
#define DEFAULT_TIMEOUT 30   /* seconds: connect and no-progress limit when none is configured */

#define TOKENS_MAX 4096 /* cache entries: more connectors than any config has; beyond, no caching */
/* usec a kept HTTP handle may wait for its connector's next run: longer
 * than any sensible interval, so that only a connector a reload removed
 * (or renamed) loses its handle, with the sockets it holds */
#define KEPT_IDLE_MAX ((int64_t)2 * 86400 * 1000000)

struct ids_oauth {
	struct ids_oauth_cfg cfg;
	char *auth;	       /* secret: "Authorization: Bearer …", NULL when no token */
	int64_t renew_at;      /* CLOCK_MONOTONIC usec when auth must be renewed */
	unsigned char key[32]; /* the cache key, when keyed */
	bool keyed;
};

/* Frees a buffer that held a secret, wiping it first. */
static void buf_wipe(struct ids_buf *b)
{
	if (b->p)
		explicit_bzero(b->p, b->cap);
	ids_buf_free(b);
}

/* ---------------- the cache between runs ---------------- */

struct token_entry {
	unsigned char key[32]; /* SHA-256 of name, token URL and identity */
	char *auth;	       /* secret: the header line */
	int64_t renew_at;
};

/* A connector's HTTP handle between its runs: its connections, TLS
 * sessions and parsed CA store (http.h, ids_http_reuse). */
struct kept_http {
	char *name; /* the connector's */
	struct ids_http *h;
	int64_t used; /* CLOCK_MONOTONIC usec it was given back */
};

struct ids_oauth_tokens {
	/* Runs of different connectors may go on in parallel threads: the
	 * lists are only touched under mu.  A kept handle leaves its list
	 * while a run uses it, so it serves one run at a time. */
	pthread_mutex_t mu;
	struct token_entry *e;
	size_t n, cap;
	struct kept_http *k;
	size_t nk, capk;
};

int ids_oauth_tokens_new(struct ids_oauth_tokens **ret)
{
	struct ids_oauth_tokens *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	*ret = t;
	return 0;
}

static void tokens_remove(struct ids_oauth_tokens *t, size_t i)
{
	ids_secret_free(t->e[i].auth);
	t->e[i] = t->e[--t->n];
}

static void kept_remove(struct ids_oauth_tokens *t, size_t i)
{
	free(t->k[i].name);
	ids_http_free(t->k[i].h);
	t->k[i] = t->k[--t->nk];
}

void ids_oauth_tokens_free(struct ids_oauth_tokens *t)
{
	if (!t)
		return;
	while (t->n)
		tokens_remove(t, t->n - 1);
	while (t->nk)
		kept_remove(t, t->nk - 1);
	free(t->e);
	free(t->k);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

size_t ids_oauth_tokens_count(struct ids_oauth_tokens *t)
{
	if (!t)
		return 0;
	pthread_mutex_lock(&t->mu);
	size_t n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}

int ids_oauth_id_add(struct ids_buf *id, const char *s, size_t len)
{
	int r = s ? ids_buf_printf(id, "%zu:", len) : ids_buf_puts(id, "-:");
	return r < 0 || !s ? r : ids_buf_add(id, s, len);
}

/* The entry of key, after dropping every expired one (a connector
 * removed by a reload leaves its entry until then); NULL when none.
 * Under t->mu. */
static struct token_entry *tokens_find(struct ids_oauth_tokens *t, const unsigned char *key)
{
	int64_t now = ids_mono_usec();
	for (size_t i = 0; i < t->n;) {
		if (now >= t->e[i].renew_at) {
			tokens_remove(t, i);
			continue;
		}
		if (!memcmp(t->e[i].key, key, sizeof(t->e[i].key)))
			return &t->e[i];
		i++;
	}
	return NULL;
}

/* Forgets o's cached token.  Under t->mu. */
static void tokens_drop_locked(struct ids_oauth *o)
{
	struct ids_oauth_tokens *t = o->cfg.tokens;
	for (size_t i = 0; t && o->keyed && i < t->n; i++)
		if (!memcmp(t->e[i].key, o->key, sizeof(o->key))) {
			tokens_remove(t, i);
			return;
		}
}

/* Forgets o's cached token (a 401, a failed renewal). */
static void tokens_drop(struct ids_oauth *o)
{
	struct ids_oauth_tokens *t = o->cfg.tokens;
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	tokens_drop_locked(o);
	pthread_mutex_unlock(&t->mu);
}

/* Adds a copy of o's token.  Under t->mu. */
static void tokens_add_locked(struct ids_oauth_tokens *t, const struct ids_oauth *o)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct token_entry *e = cap <= TOKENS_MAX ? realloc(t->e, cap * sizeof(*e)) : NULL;
		if (!e)
			return;
		t->e = e;
		t->cap = cap;
	}
	char *copy = strdup(o->auth);
	if (!copy)
		return;
	memcpy(t->e[t->n].key, o->key, sizeof(o->key));
	t->e[t->n].auth = copy;
	t->e[t->n].renew_at = o->renew_at;
	t->n++;
}

/* Keeps a copy of o's token.  Out of memory: not kept (the next run asks
 * for one), never an error. */
static void tokens_put(struct ids_oauth *o)
{
	struct ids_oauth_tokens *t = o->cfg.tokens;
	if (!t || !o->keyed || !o->auth)
		return;
	pthread_mutex_lock(&t->mu);
	tokens_drop_locked(o);
	tokens_add_locked(t, o);
	pthread_mutex_unlock(&t->mu);
}

/* Takes the handle kept for connector `name` out of t, dropping those
 * idle past KEPT_IDLE_MAX on the way (a connector a reload removed);
 * NULL when none. */
static struct ids_http *kept_take(struct ids_oauth_tokens *t, const char *name)
{
	struct ids_http *h = NULL;
	int64_t now = ids_mono_usec();
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->nk;) {
		if (!h && !strcmp(t->k[i].name, name)) {
			h = t->k[i].h;
			t->k[i].h = NULL;
			kept_remove(t, i);
		} else if (now - t->k[i].used > KEPT_IDLE_MAX) {
			kept_remove(t, i);
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&t->mu);
	return h;
}

/* Keeps h for connector `name` (steals h).  When another run of the same
 * connector gave one back meanwhile, or out of memory, h is freed: the
 * next run makes a new one. */
static void kept_give(struct ids_oauth_tokens *t, const char *name, struct ids_http *h)
{
	pthread_mutex_lock(&t->mu);
	bool dup = false;
	for (size_t i = 0; i < t->nk && !dup; i++)
		dup = !strcmp(t->k[i].name, name);
	if (!dup && t->nk == t->capk) {
		size_t cap = t->capk ? t->capk * 2 : 8;
		struct kept_http *k = cap <= TOKENS_MAX ? realloc(t->k, cap * sizeof(*k)) : NULL;
		if (k) {
			t->k = k;
			t->capk = cap;
		}
	}
	char *copy = dup || t->nk == t->capk ? NULL : strdup(name);
	if (copy) {
		t->k[t->nk++] = (struct kept_http){.name = copy, .h = h, .used = ids_mono_usec()};
		h = NULL;
	}
	pthread_mutex_unlock(&t->mu);
	ids_http_free(h);
}

/* o->key from the service, the token URL and the connector's identity. */
static int make_key(struct ids_oauth *o, struct ids_error *err)
{
	struct ids_buf id = {0};
	unsigned int n = 0;
	int r;
	if ((r = ids_oauth_id_add(&id, o->cfg.service, strlen(o->cfg.service))) < 0 ||
	    (r = ids_oauth_id_add(&id, o->cfg.token_url, strlen(o->cfg.token_url))) < 0) {
		r = ids_error_set(err, r, "out of memory");
		goto out;
	}
	if ((r = o->cfg.identity(o->cfg.ud, &id, err)) < 0)
		goto out;
	if (!EVP_Digest(id.p, id.len, o->key, &n, EVP_sha256(), NULL) || n != sizeof(o->key)) {
		r = ids_error_set(err, -ENOMEM, "token cache key: SHA-256 failed");
		goto out;
	}
	o->keyed = true;
	r = 0;
out:
	buf_wipe(&id);
	return r;
}

/* o's token from the cache, when it holds a live one.  Runs once per
 * layer: the identity is read at the first request of a run. */
static int tokens_get(struct ids_oauth *o, struct ids_error *err)
{
	int r;
	if (!o->cfg.tokens || !o->cfg.identity)
		return 0;
	if (!o->keyed && (r = make_key(o, err)) < 0)
		return r;
	struct ids_oauth_tokens *t = o->cfg.tokens;
	pthread_mutex_lock(&t->mu);
	struct token_entry *e = tokens_find(t, o->key);
	/* out of memory: no copy, a new token instead */
	char *copy = e ? strdup(e->auth) : NULL;
	if (copy) {
		o->auth = copy;
		o->renew_at = e->renew_at;
	}
	pthread_mutex_unlock(&t->mu);
	return 0;
}

int ids_oauth_new(const struct ids_oauth_cfg *cfg, struct ids_oauth **ret)
{
	struct ids_oauth *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->cfg = *cfg;
	if (!o->cfg.request)
		o->cfg.request = ids_http_request;
	*ret = o;
	return 0;
}

static void drop_token(struct ids_oauth *o)
{
	ids_secret_free(o->auth);
	o->auth = NULL;
}

void ids_oauth_free(struct ids_oauth *o)
{
	if (!o)
		return;
	drop_token(o);
	free(o);
}

/* The daemon's hook of a pull context, as the HTTP layer calls it. */
static int pull_progress(void *ud)
{
	const struct ids_pull_ctx *ctx = ud;
	return ctx && ctx->progress ? ctx->progress(ctx->ud) : 0;
}

/* The daemon's debug hook of a pull context, as the HTTP layer calls it. */
static void pull_debug(void *ud, const char *line)
{
	const struct ids_pull_ctx *ctx = ud;
	ctx->debug(ctx->ud, line);
}

int ids_oauth_http_new(const char *tls_ca_file, int timeout, const struct ids_pull_ctx *ctx, const char *name,
		       struct ids_http **ret, struct ids_error *err)
{
	int run_timeout = ctx && ctx->config ? ctx->config->sync.run_timeout : 0;
	struct ids_http_opts ho = {
	    .tls_ca_file = tls_ca_file,
	    .timeout = timeout > 0 ? timeout : DEFAULT_TIMEOUT,
	    /* retry waits never run past run_timeout; the daemon's progress
	     * hook enforces it too, this just avoids starting a hopeless wait */
	    .deadline_usec = run_timeout > 0 ? ids_mono_usec() + (int64_t)run_timeout * 1000000 : 0,
	    .progress = pull_progress,
	    .debug = ctx && ctx->debug ? pull_debug : NULL,
	    .ud = (void *)ctx,
	};
	struct ids_http *h = ctx && ctx->tokens && name ? kept_take(ctx->tokens, name) : NULL;
	if (h && ids_http_reuse(h, &ho)) {
		*ret = h;
		return 0;
	}
	ids_http_free(h);
	return ids_http_new(&ho, ret, err);
}

void ids_oauth_http_done(const struct ids_pull_ctx *ctx, const char *name, struct ids_http *h)
{
	if (h && ctx && ctx->tokens && name)
		kept_give(ctx->tokens, name, h);
	else
		ids_http_free(h);
}

char *ids_oauth_url_base(const char *url)
{
	size_t n = strlen(url);
	while (n && url[n - 1] == '/')
		n--;
	return strndup(url, n);
}

/* " (request-id X)" for messages, or "". */
static const char *rid_text(struct ids_buf *b, const char *rid)
{
	ids_buf_reset(b);
	if (rid && ids_buf_printf(b, " (request-id %s)", rid) >= 0)
		return b->p;
	return "";
}

/* " (after N retries)" for messages, or "". */
static const char *after_text(struct ids_buf *b, int retries)
{
	ids_buf_reset(b);
	if (retries > 0 &&
	    ids_buf_printf(b, " (after %d %s)", retries, retries == 1 ? "retry" : "retries") >= 0)
		return b->p;
	return "";
}

/* ---------------- the token ---------------- */

long ids_oauth_renew_after(long expires_in)
{
	/* RFC 6749 makes expires_in optional; a short guess costs one token
	 * request every few minutes, a long one a 401 and a renewal — never a
	 * renewal every second */
	long e = expires_in > 0 ? expires_in : DEFAULT_LIFETIME;
	if (e > MAX_LIFETIME)
		e = MAX_LIFETIME;
	long margin = e / 2 < TOKEN_MARGIN ? e / 2 : TOKEN_MARGIN;
	return e - margin;
}

/* expires_in as seconds: a number, or a numeric string (some proxies and
 * older ADFS send one); null or absent: 0.  -1 when it is neither. */
static long expires_of(const json_t *v)
{
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);
		return n < 0 ? -1 : n > MAX_LIFETIME ? MAX_LIFETIME : (long)n;
	}
	if (!json_is_string(v))
		return -1;
	const char *s = json_string_value(v);
	char *end;
	errno = 0;
	long n = strtol(s, &end, 10);
	if (errno || end == s || *end || n < 0)
		return -1;
	return n > MAX_LIFETIME ? MAX_LIFETIME : n;
}

int ids_oauth_parse_token(const char *body, size_t len, char **ret_token, long *ret_expires_in,
			  struct ids_error *err)
{
	json_error_t je;
	int r = IDS_E_PROTOCOL;
	/* jansson's own error text may quote the body near the error, and
	 * the body holds the token: only the position is reported */
	json_t *j = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return ids_error_set(err, IDS_E_PROTOCOL, "token answer: not JSON (line %d, column %d)",
				     je.line, je.column);
	const json_t *tok = json_is_object(j) ? json_object_get(j, "access_token") : NULL;
	const char *t = json_is_string(tok) ? json_string_value(tok) : NULL;
	/* the token goes into a header line: printable ASCII, no space, and
	 * no NUL hidden inside (\u0000 would cut the header short) */
	if (t && (!*t || strlen(t) != json_string_length(tok)))
		t = NULL;
	for (const char *p = t; p && *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p >= 0x7f)
			t = NULL;
	if (!t) {
		ids_error_set(err, IDS_E_PROTOCOL, "token answer: no usable access_token");
		goto out;
	}
	const json_t *type = json_object_get(j, "token_type");
	if (type && (!json_is_string(type) || strcasecmp(json_string_value(type), "Bearer") != 0)) {
		ids_error_set(err, IDS_E_PROTOCOL, "token answer: token_type is not Bearer");
		goto out;
	}
	long exp = expires_of(json_object_get(j, "expires_in"));
	if (exp < 0) {
		ids_error_set(err, IDS_E_PROTOCOL, "token answer: expires_in is not a number of seconds");
		goto out;
	}
	char *copy = strdup(t);
	if (!copy) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	*ret_token = copy;
	*ret_expires_in = exp;
	r = 0;
out:
	json_decref(j);
	return r;
}

/* A failed answer in the service's words: "HEAD STATUS TEXT (after N
 * retries) (request-id X)", HEAD saying which request it was. */
static int answer_error(struct ids_oauth *o, int kind, const char *head, const struct ids_http_resp *resp,
			struct ids_error *err)
{
	char *text = NULL, *rid = NULL;
	struct ids_buf rb = {0}, ab = {0};
	if (o->cfg.error_text(resp, &text, &rid) < 0)
		return ids_error_set(err, -ENOMEM, "out of memory");
	int r = ids_error_set(err, kind, "%s %ld %s%s%s", head, resp->status, text,
			      after_text(&ab, resp->retries),
			      rid_text(&rb, resp->request_id ? resp->request_id : rid));
	free(text);
	free(rid);
	ids_buf_free(&rb);
	ids_buf_free(&ab);
	return r;
}

/* "token endpoint URL: 401 invalid_client: … (request-id …)". */
static int token_error(struct ids_oauth *o, const struct ids_http_resp *resp, struct ids_error *err)
{
	struct ids_buf head = {0};
	if (ids_buf_printf(&head, "token endpoint %s:", o->cfg.token_url) < 0)
		return ids_error_set(err, -ENOMEM, "out of memory");
	/* 400-403: the identity platform refused the credentials (wrong or
	 * expired secret, unknown key, no consent, subject not an admin): an
	 * auth failure the daemon backs off on, not one a quick retry fixes */
	int kind = resp->status >= 400 && resp->status <= 403 ? IDS_E_AUTH : IDS_E_SERVER;
	int r = answer_error(o, kind, head.p, resp, err);
	ids_buf_free(&head);
	return r;
}

/* Gets a new token into o->auth. */
static int renew(struct ids_oauth *o, struct ids_error *err)
{
	struct ids_buf body = {0}, hdr = {0};
	struct ids_http_resp resp = {0};
	char *token = NULL;
	long expires = 0;
	int r;
	static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
					      "Accept: application/json", NULL};

	drop_token(o);
	tokens_drop(o);
	if ((r = o->cfg.grant(o->cfg.ud, &body, err)) < 0)
		goto out;
	if ((r = o->cfg.request(o->cfg.http, "POST", o->cfg.token_url, headers, body.p, body.len, NULL, &resp,
				err)) < 0)
		goto out;
	if (resp.status != 200) {
		r = token_error(o, &resp, err);
		goto out;
	}
	if ((r = ids_oauth_parse_token(resp.body.p, resp.body.len, &token, &expires, err)) < 0) {
		ids_error_prefix(err, "%s", o->cfg.token_url);
		goto out;
	}
	if ((r = ids_buf_puts(&hdr, "Authorization: Bearer ")) < 0 || (r = ids_buf_puts(&hdr, token)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	o->renew_at = ids_mono_usec() + (int64_t)ids_oauth_renew_after(expires) * 1000000;
	o->auth = ids_buf_steal(&hdr);
	tokens_put(o);
	r = 0;
out:
	/* the request body holds the credential, the answer the token */
	buf_wipe(&body);
	buf_wipe(&hdr);
	buf_wipe(&resp.body);
	ids_http_resp_clear(&resp);
	ids_secret_free(token);
	return r;
}

/* ---------------- the authorized GET ---------------- */

/* "users: Graph 403 Authorization_RequestDenied: … (request-id …)". */
static int api_error(struct ids_oauth *o, const char *what, const struct ids_http_resp *resp,
		     struct ids_error *err)
{
	struct ids_buf head = {0};
	if (ids_buf_printf(&head, "%s: %s", what, o->cfg.service) < 0)
		return ids_error_set(err, -ENOMEM, "out of memory");
	int kind = resp->status == 401 || resp->status == 403 ? IDS_E_AUTH
		   : resp->status == 429		      ? IDS_E_LIMIT
							      : IDS_E_SERVER;
	/* a rate limit still there after every retry: say so, it is not a
	 * permission problem */
	if (o->cfg.retryable && o->cfg.retryable(resp))
		kind = IDS_E_LIMIT;
	int r = answer_error(o, kind, head.p, resp, err);
	ids_buf_free(&head);
	return r;
}

int ids_oauth_get(struct ids_oauth *o, const char *url, const char *what, struct ids_http_resp *resp,
		  struct ids_error *err)
{
	int r;
	if (!o->auth && (r = tokens_get(o, err)) < 0)
		return r;
	for (int renewed = 0;; renewed++) {
		if ((!o->auth || ids_mono_usec() >= o->renew_at) && (r = renew(o, err)) < 0)
			return r;
		const char *headers[] = {o->auth, "Accept: application/json", NULL};
		if ((r = o->cfg.request(o->cfg.http, "GET", url, headers, NULL, 0, o->cfg.retryable, resp,
					err)) < 0)
			return ids_error_prefix(err, "%s", what);
		if (resp->status == 401 && !renewed) {
			/* expired or revoked before we expected: one new token */
			drop_token(o);
			continue;
		}
		if (resp->status != 200)
			return api_error(o, what, resp, err);
		if (resp->content_type && !strstr(resp->content_type, "json")) {
			struct ids_buf rb = {0};
			r = ids_error_set(err, IDS_E_PROTOCOL, "%s: %s answered 200 with %s, not JSON%s",
					  what, o->cfg.service, resp->content_type,
					  rid_text(&rb, resp->request_id));
			ids_buf_free(&rb);
			return r;
		}
		return 0;
	}
}

/* ---------------- the page loop ---------------- */

/* The URL of the next page: the link itself, or the listing's URL with
 * the page token. */
static int page_url(struct ids_oauth *o, struct ids_buf *u, const char *url, const char *next)
{
	int r;
	ids_buf_reset(u);
	if (o->cfg.link_origin)
		return ids_buf_puts(u, next ? next : url);
	if ((r = ids_buf_puts(u, url)) < 0 || !next)
		return r;
	if ((r = ids_buf_printf(u, "&%s=", o->cfg.token_param)) < 0)
		return r;
	return ids_http_urlencode(u, next);
}

/* Whether the listing may go on to `next` (0), or why not (< 0, err set):
 * seen before (a loop), or a link off the service's origin. */
static int check_next(struct ids_oauth *o, const char *what, size_t n, const char *next, struct ids_arena *a,
		      struct ids_strmap *seen, struct ids_error *err)
{
	char *key = ids_arena_strdup(a, next);
	int r;
	if (!key || (r = ids_strmap_put(seen, key, (uint32_t)n, NULL)) < 0)
		return ids_error_set(err, -ENOMEM, "out of memory");
	if (r == 0)
		return ids_error_set(err, IDS_E_PROTOCOL,
				     "%s: paging loop: page %zu's %s repeats an earlier one", what, n + 1,
				     o->cfg.next_name);
	/* absolute, and on the service's own origin: the token goes with it */
	const char *origin = o->cfg.link_origin;
	size_t len = origin ? strlen(origin) : 0;
	if (origin && (strncasecmp(next, origin, len) != 0 || next[len] != '/'))
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: %s leaves %s: refused", what, o->cfg.next_name,
				     origin);
	return 0;
}

/* A page the parser refused: which page, and the request id the vendor's
 * support asks for. */
static int page_error(struct ids_oauth *o, int r, const char *label, const char *rid, struct ids_error *err)
{
	if (!err)
		return r;
	if (!err->msg)
		ids_error_set(err, r, "%s", ids_strerror(r));
	if (o->cfg.number_pages)
		ids_error_prefix(err, "%s", label);
	if (rid) {
		char *m = err->msg;
		err->msg = NULL;
		ids_error_set(err, r, "%s (request-id %s)", m, rid);
		free(m);
	}
	return r;
}

int ids_oauth_list(struct ids_oauth *o, const char *url, const char *what, ids_oauth_page_fn fn, void *ud,
		   size_t *pages, struct ids_error *err)
{
	struct ids_arena a = {0};
	struct ids_strmap seen = {0};
	struct ids_http_resp resp = {0};
	struct ids_buf u = {0}, label = {0};
	char *next = NULL; /* what the last page said comes next */
	int r;

	for (size_t n = 0;; n++) {
		if (n >= IDS_OAUTH_MAX_PAGES) {
			r = ids_error_set(err, IDS_E_LIMIT, "%s: more than %d pages", what,
					  IDS_OAUTH_MAX_PAGES);
			goto out;
		}
		/* the daemon's watchdog tick; < 0: run_timeout or a signal */
		if ((r = pull_progress((void *)o->cfg.ctx)) < 0) {
			r = ids_error_set(err, r, "%s: stopped after %zu pages: %s", what, n,
					  r == IDS_E_TIMEOUT ? "run_timeout reached" : "cancelled");
			goto out;
		}
		ids_buf_reset(&label);
		if ((r = page_url(o, &u, url, next)) < 0 ||
		    (r = o->cfg.number_pages ? ids_buf_printf(&label, "%s: page %zu", what, n + 1)
					     : ids_buf_puts(&label, what)) < 0) {
			ids_error_set(err, r, "out of memory");
			goto out;
		}
		if ((r = ids_oauth_get(o, u.p, label.p, &resp, err)) < 0)
			goto out;
		free(next);
		next = NULL;
		if ((r = fn(ud, resp.body.p ? resp.body.p : "", resp.body.len, &next, err)) < 0) {
			page_error(o, r, label.p, resp.request_id, err);
			goto out;
		}
		ids_http_resp_clear(&resp); /* the page's memory goes before the next one comes */
		(*pages)++;
		if (!next)
			break;
		if ((r = check_next(o, what, n, next, &a, &seen, err)) < 0)
			goto out;
	}
	r = 0;
out:
	free(next);
	ids_http_resp_clear(&resp);
	ids_buf_free(&u);
	ids_buf_free(&label);
	ids_strmap_free(&seen);
	ids_arena_free(&a);
	return r;
}
