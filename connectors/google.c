/* google.c — the Google Workspace connector, through the Admin SDK
 * Directory API with a service account and domain-wide delegation.
 *
 * One pull: read the service account's JSON key, sign a JWT (RS256, kid =
 * private_key_id) that asks for the three read-only directory scopes on
 * behalf of `subject`, trade it for an access token (jwt-bearer grant), then
 *   GET {api}/admin/directory/v1/users?customer=…&maxResults=500&fields=…
 *   GET {api}/admin/directory/v1/groups?customer=…&maxResults=200&fields=…
 *   GET {api}/admin/directory/v1/groups/{id}/members?maxResults=200
 *       &includeDerivedMembership=true&fields=…        per group in scope
 * each to its last page, into the snapshot builder.  Google expands nested
 * groups itself (includeDerivedMembership), so every USER member is a
 * transitive membership already; the nested GROUP entries are skipped.
 *
 * Rules this file keeps, and why:
 * - All or nothing: any failed page fails the pull with Google's message,
 *   and the caller throws the snapshot away.
 * - Rate limits are waited out, never read as an answer: 429, 5xx and the
 *   403s whose reason is rateLimitExceeded / userRateLimitExceeded are
 *   retried by the HTTP layer (bounded, with backoff and jitter).  Every
 *   other 403 is a permission problem and fails the pull — it must never
 *   look like "zero users".
 * - Paging follows nextPageToken until it is absent; a token seen before
 *   in the same listing is a loop and fails the pull; at most MAX_PAGES
 *   pages per listing.
 * - The token is cached until TOKEN_MARGIN before it expires (halfway for
 *   short-lived ones); a 401 renews it once and asks the same page again;
 *   a second 401 fails the pull.
 * - `fields=` names only what is used (the mapped fields, the disabled
 *   flags, the rules' attribute paths); projection=full only when a path
 *   reads customSchemas, as the basic projection leaves them out.
 * - The `groups:` scope is applied to the groups listing (names, e-mails
 *   or ids; see google_int.h): one cheap request per 200 groups, whereas
 *   groups.get takes no names.  An entry that matches no group fails the
 *   pull: a typo there must not read as "nobody is in it any more".
 * - The key file, the assertion and the token are wiped when freed and
 *   never appear in a message. */
#include "ids/connector.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "google_int.h"
#include "ids/http.h"
#include "ids/jwt.h"

#define MAX_PAGES 100000	/* pages per listing: a loop detection cannot see ends here */
#define TOKEN_MARGIN 300	/* seconds before expiry that a cached token is renewed */
#define ASSERTION_LIFETIME 3600 /* seconds: Google accepts at most an hour */
#define DEFAULT_TIMEOUT 30
#define USERS_MAX 500  /* users.list maxResults: Google's maximum */
#define GROUPS_MAX 200 /* groups.list and members.list */

static const char scopes[] = "https://www.googleapis.com/auth/admin.directory.user.readonly "
			     "https://www.googleapis.com/auth/admin.directory.group.readonly "
			     "https://www.googleapis.com/auth/admin.directory.group.member.readonly";

struct pull {
	const struct ids_connector_cfg *cc;
	const struct ids_google_cfg *gc;
	const struct ids_pull_ctx *ctx;
	struct ids_snapshot *s;
	struct ids_error *err;
	struct ids_http *h;

	struct ids_google_key key;
	const char *token_url; /* borrowed: gc->token_endpoint or key.token_uri */
	char *api;	       /* api_endpoint without a trailing '/' */
	char *scope_param;     /* "customer=…" or "domain=…", encoded */
	char *auth;	       /* secret: "Authorization: Bearer …", NULL when no token */
	int64_t renew_at;      /* CLOCK_MONOTONIC usec when auth must be renewed */
	struct ids_google_umap map;
	struct ids_strv group_ids; /* groups in scope, whose members are read */
};

/* Frees a buffer that held a secret, wiping it first. */
static void buf_wipe(struct ids_buf *b)
{
	if (b->p)
		explicit_bzero(b->p, b->cap);
	ids_buf_free(b);
}

static int oom(struct pull *p)
{
	return ids_error_set(p->err, -ENOMEM, "out of memory");
}

static int http_progress(void *ud)
{
	const struct pull *p = ud;
	return p->ctx && p->ctx->progress ? p->ctx->progress(p->ctx->ud) : 0;
}

/* The HTTP layer's hook for 4xx answers: Google's 403 rate limits. */
static bool retryable(const struct ids_http_resp *r)
{
	return ids_google_rate_limited(r->status, r->body.p, r->body.len);
}

/* " (request-id X)" for messages, or "". */
static const char *rid_text(struct ids_buf *b, const char *rid)
{
	ids_buf_reset(b);
	if (rid && ids_buf_printf(b, " (request-id %s)", rid) >= 0)
		return b->p;
	return "";
}

/* ---------------- the service account key ---------------- */

/* Reads and parses the key file.  The config loader checked that it
 * exists and that only its owner can read it; what can still go wrong
 * here (gone, unreadable, not a key) is a configuration error naming the
 * file. */
static int read_key(struct pull *p)
{
	const char *path = p->gc->service_account_file;
	char *buf = NULL;
	size_t n = 0;
	struct stat st;
	int r, fd = -1;

	if (!path)
		return ids_error_set(p->err, IDS_E_CONFIG, "no service_account_file configured");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = ids_error_set(p->err, IDS_E_CONFIG, "service account key %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > IDS_GOOGLE_KEY_MAX) {
		r = ids_error_set(p->err, IDS_E_CONFIG,
				  "service account key %s: not a regular file of at most %d bytes", path,
				  IDS_GOOGLE_KEY_MAX);
		goto out;
	}
	/* one byte more than the size: a file that grew meanwhile is seen */
	if (!(buf = malloc((size_t)st.st_size + 2))) {
		r = oom(p);
		goto out;
	}
	for (;;) {
		ssize_t k = read(fd, buf + n, (size_t)st.st_size + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = ids_error_set(p->err, IDS_E_CONFIG, "service account key %s: %s", path,
					  strerror(errno));
			goto out;
		}
		if (k == 0 || (n += (size_t)k) > (size_t)st.st_size)
			break;
	}
	if (n > (size_t)st.st_size) {
		r = ids_error_set(p->err, IDS_E_CONFIG, "service account key %s: changed while being read",
				  path);
		goto out;
	}
	buf[n] = '\0';
	r = ids_google_key_parse(buf, n, path, &p->key, p->err);
out:
	if (buf) {
		explicit_bzero(buf, (size_t)st.st_size + 2);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

/* ---------------- token ---------------- */

/* The signed grant assertion.  *ret new (a credential for an hour: wipe
 * it). */
static int assertion(struct pull *p, char **ret)
{
	struct ids_buf hdr = {0}, claims = {0};
	long long now = (long long)time(NULL);
	int r;

	if ((r = ids_buf_puts(&hdr, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":")) < 0 ||
	    (r = ids_buf_json_str(&hdr, p->key.private_key_id)) < 0 || (r = ids_buf_putc(&hdr, '}')) < 0 ||
	    (r = ids_buf_puts(&claims, "{\"iss\":")) < 0 ||
	    (r = ids_buf_json_str(&claims, p->key.client_email)) < 0 ||
	    (r = ids_buf_puts(&claims, ",\"sub\":")) < 0 ||
	    (r = ids_buf_json_str(&claims, p->gc->subject)) < 0 ||
	    (r = ids_buf_puts(&claims, ",\"scope\":")) < 0 || (r = ids_buf_json_str(&claims, scopes)) < 0 ||
	    (r = ids_buf_puts(&claims, ",\"aud\":")) < 0 ||
	    (r = ids_buf_json_str(&claims, p->token_url)) < 0 ||
	    (r = ids_buf_printf(&claims, ",\"iat\":%lld,\"exp\":%lld}", now, now + ASSERTION_LIFETIME)) < 0) {
		r = oom(p);
		goto out;
	}
	if ((r = ids_jwt_sign("RS256", hdr.p, claims.p, p->key.private_key, p->key.private_key_len, ret,
			      p->err)) < 0)
		ids_error_prefix(p->err, "service account key %s", p->gc->service_account_file);
out:
	ids_buf_free(&hdr);
	ids_buf_free(&claims);
	return r;
}

/* Gets a new token into p->auth. */
static int renew_token(struct pull *p)
{
	struct ids_buf body = {0}, hdr = {0}, rb = {0};
	struct ids_http_resp resp = {0};
	char *jwt = NULL, *token = NULL, *msg = NULL;
	long expires = 0;
	int r;
	static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
					      "Accept: application/json", NULL};

	if (p->auth) {
		ids_secret_free(p->auth);
		p->auth = NULL;
	}
	if ((r = assertion(p, &jwt)) < 0)
		goto out;
	if ((r = ids_buf_puts(&body, "grant_type=")) < 0 ||
	    (r = ids_http_urlencode(&body, "urn:ietf:params:oauth:grant-type:jwt-bearer")) < 0 ||
	    (r = ids_buf_puts(&body, "&assertion=")) < 0 || (r = ids_http_urlencode(&body, jwt)) < 0) {
		r = oom(p);
		goto out;
	}
	if ((r = ids_http_request(p->h, "POST", p->token_url, headers, body.p, body.len, NULL, &resp,
				  p->err)) < 0)
		goto out;
	if (resp.status != 200) {
		if ((r = ids_google_error_message(resp.body.p, resp.body.len, &msg)) < 0) {
			r = oom(p);
			goto out;
		}
		/* 400/401: Google refused the grant (unknown key, client id not
		 * authorised for these scopes, subject not an admin): an auth
		 * failure the daemon backs off on */
		int kind = resp.status >= 400 && resp.status <= 403 ? IDS_E_AUTH : IDS_E_SERVER;
		r = ids_error_set(p->err, kind, "token endpoint %s: %ld %s%s%s", p->token_url, resp.status,
				  msg, resp.retries ? " (after retries)" : "",
				  rid_text(&rb, resp.request_id));
		goto out;
	}
	if ((r = ids_google_parse_token(resp.body.p, resp.body.len, &token, &expires, p->err)) < 0) {
		ids_error_prefix(p->err, "%s", p->token_url);
		goto out;
	}
	if ((r = ids_buf_puts(&hdr, "Authorization: Bearer ")) < 0 || (r = ids_buf_puts(&hdr, token)) < 0) {
		r = oom(p);
		goto out;
	}
	long margin = expires / 2 < TOKEN_MARGIN ? expires / 2 : TOKEN_MARGIN;
	p->renew_at = ids_mono_usec() + (int64_t)(expires - margin) * 1000000;
	p->auth = ids_buf_steal(&hdr);
	r = 0;
out:
	/* the request body holds the assertion, the answer the token */
	buf_wipe(&body);
	buf_wipe(&hdr);
	buf_wipe(&resp.body);
	ids_http_resp_clear(&resp);
	ids_secret_free(jwt);
	ids_secret_free(token);
	ids_buf_free(&rb);
	free(msg);
	return r;
}

/* ---------------- Directory API requests ---------------- */

/* "users: Google 403 Not Authorized to access this resource/api
 * (forbidden)" from a failed answer. */
static int api_error(struct pull *p, const char *what, const struct ids_http_resp *resp)
{
	struct ids_buf rb = {0};
	char *msg = NULL;
	if (ids_google_error_message(resp->body.p, resp->body.len, &msg) < 0)
		return oom(p);
	int kind = resp->status == 401 || resp->status == 403 ? IDS_E_AUTH
		   : resp->status == 429		      ? IDS_E_LIMIT
							      : IDS_E_SERVER;
	/* a rate limit still there after every retry: say so, it is not a
	 * permission problem */
	if (ids_google_rate_limited(resp->status, resp->body.p, resp->body.len))
		kind = IDS_E_LIMIT;
	int r = ids_error_set(p->err, kind, "%s: Google %ld %s%s%s", what, resp->status, msg,
			      resp->retries ? " (after retries)" : "", rid_text(&rb, resp->request_id));
	free(msg);
	ids_buf_free(&rb);
	return r;
}

/* GET url with the bearer token: 0 with a 200 answer in *resp, else < 0
 * with err set.  A 401 renews the token once and asks again. */
static int api_get(struct pull *p, const char *url, const char *what, struct ids_http_resp *resp)
{
	int r;
	for (int renewed = 0;; renewed++) {
		if ((!p->auth || ids_mono_usec() >= p->renew_at) && (r = renew_token(p)) < 0)
			return r;
		const char *headers[] = {p->auth, "Accept: application/json", NULL};
		if ((r = ids_http_request(p->h, "GET", url, headers, NULL, 0, retryable, resp, p->err)) < 0)
			return ids_error_prefix(p->err, "%s", what);
		if (resp->status == 401 && !renewed) {
			/* expired or revoked before we expected: one new token */
			ids_secret_free(p->auth);
			p->auth = NULL;
			continue;
		}
		if (resp->status != 200)
			return api_error(p, what, resp);
		/* an HTML sign-in or proxy page with status 200 is not a page */
		if (resp->content_type && !strstr(resp->content_type, "json")) {
			struct ids_buf rb = {0};
			r = ids_error_set(p->err, IDS_E_PROTOCOL,
					  "%s: Google answered 200 with %s, not JSON%s", what,
					  resp->content_type, rid_text(&rb, resp->request_id));
			ids_buf_free(&rb);
			return r;
		}
		return 0;
	}
}

typedef int (*page_fn)(struct pull *p, const void *arg, const char *body, size_t len,
		       struct ids_google_page *page);

/* Reads a listing from url (its query without pageToken) to its last
 * page, each page through fn.  Messages say which listing and page. */
static int list_all(struct pull *p, const char *url, const char *what, page_fn fn, const void *arg)
{
	struct ids_arena tokens = {0};
	struct ids_strmap seen = {0};
	struct ids_http_resp resp = {0};
	struct ids_google_page page = {0};
	struct ids_buf u = {0}, label = {0};
	const char *token = NULL; /* arena-owned: the page to ask for */
	int r;

	for (size_t n = 0;; n++) {
		if (n >= MAX_PAGES) {
			r = ids_error_set(p->err, IDS_E_LIMIT, "%s: more than %d pages", what, MAX_PAGES);
			goto out;
		}
		/* the daemon's watchdog tick; < 0: run_timeout or a signal */
		if ((r = http_progress(p)) < 0) {
			r = ids_error_set(p->err, r, "%s: stopped after %zu pages: %s", what, n,
					  r == IDS_E_TIMEOUT ? "run_timeout reached" : "cancelled");
			goto out;
		}
		ids_buf_reset(&u);
		ids_buf_reset(&label);
		if ((r = ids_buf_puts(&u, url)) < 0 ||
		    (token && ((r = ids_buf_puts(&u, "&pageToken=")) < 0 ||
			       (r = ids_http_urlencode(&u, token)) < 0)) ||
		    (r = ids_buf_printf(&label, "%s: page %zu", what, n + 1)) < 0) {
			r = oom(p);
			goto out;
		}
		if ((r = api_get(p, u.p, label.p, &resp)) < 0)
			goto out;
		r = fn(p, arg, resp.body.p ? resp.body.p : "", resp.body.len, &page);
		ids_http_resp_clear(&resp); /* the page's memory goes before the next one comes */
		if (r < 0) {
			ids_error_prefix(p->err, "%s", label.p);
			goto out;
		}
		p->s->pages++;
		if (!page.next)
			break;
		/* a token seen before: the server sends us round in circles */
		char *key = ids_arena_strdup(&tokens, page.next);
		if (!key || (r = ids_strmap_put(&seen, key, (uint32_t)n, NULL)) < 0) {
			r = oom(p);
			goto out;
		}
		if (r == 0) {
			r = ids_error_set(p->err, IDS_E_PROTOCOL,
					  "%s: paging loop: page %zu's nextPageToken repeats an earlier one",
					  what, n + 1);
			goto out;
		}
		token = key;
		ids_google_page_clear(&page);
	}
	r = 0;
out:
	ids_google_page_clear(&page);
	ids_http_resp_clear(&resp);
	ids_buf_free(&u);
	ids_buf_free(&label);
	ids_strmap_free(&seen);
	ids_arena_free(&tokens);
	return r;
}

static int users_page(struct pull *p, const void *arg, const char *body, size_t len,
		      struct ids_google_page *page)
{
	return ids_google_parse_users(body, len, &p->map, p->s, page, p->err);
}

static int groups_page(struct pull *p, const void *arg, const char *body, size_t len,
		       struct ids_google_page *page)
{
	bool *matched = (bool *)arg;
	return ids_google_parse_groups(body, len, &p->gc->groups, matched, p->s, &p->group_ids, page, p->err);
}

static int members_page(struct pull *p, const void *arg, const char *body, size_t len,
			struct ids_google_page *page)
{
	return ids_google_parse_members(body, len, arg, p->s, page, p->err);
}

/* ---------------- the listings ---------------- */

static int read_users(struct pull *p)
{
	struct ids_buf url = {0}, fields = {0};
	bool full = false;
	int r;
	if ((r = ids_google_users_fields(&p->map, &fields, &full)) < 0 ||
	    (r = ids_buf_printf(&url, "%s/admin/directory/v1/users?%s&maxResults=%d&fields=", p->api,
				p->scope_param, USERS_MAX)) < 0 ||
	    (r = ids_http_urlencode(&url, fields.p)) < 0 ||
	    (full && (r = ids_buf_puts(&url, "&projection=full")) < 0)) {
		r = oom(p);
		goto out;
	}
	r = list_all(p, url.p, "users", users_page, NULL);
out:
	ids_buf_free(&url);
	ids_buf_free(&fields);
	return r;
}

static int read_groups(struct pull *p)
{
	const struct ids_strv *scope = &p->gc->groups;
	struct ids_buf url = {0}, what = {0};
	bool *matched = NULL;
	int r;
	if (scope->n && !(matched = calloc(scope->n, sizeof(bool)))) {
		r = oom(p);
		goto out;
	}
	if ((r = ids_buf_printf(&url, "%s/admin/directory/v1/groups?%s&maxResults=%d&fields=", p->api,
				p->scope_param, GROUPS_MAX)) < 0 ||
	    (r = ids_http_urlencode(&url, "nextPageToken,groups(id,email,name)")) < 0) {
		r = oom(p);
		goto out;
	}
	if ((r = list_all(p, url.p, "groups", groups_page, matched)) < 0)
		goto out;
	for (size_t i = 0; i < scope->n; i++)
		if (!matched[i]) {
			r = ids_error_set(
			    p->err, IDS_E_INVALID,
			    "groups: \"%s\" (in the connector's groups:) matches no group's name, e-mail "
			    "or id",
			    scope->v[i]);
			goto out;
		}

	for (size_t i = 0; i < p->group_ids.n; i++) {
		const char *id = p->group_ids.v[i];
		ids_buf_reset(&url);
		ids_buf_reset(&what);
		if ((r = ids_buf_printf(&url, "%s/admin/directory/v1/groups/", p->api)) < 0 ||
		    (r = ids_http_urlencode(&url, id)) < 0 ||
		    (r = ids_buf_printf(&url, "/members?maxResults=%d&includeDerivedMembership=true&fields=",
					GROUPS_MAX)) < 0 ||
		    (r = ids_http_urlencode(&url, "nextPageToken,members(id,type,status)")) < 0 ||
		    (r = ids_buf_printf(&what, "members of group %s", id)) < 0) {
			r = oom(p);
			goto out;
		}
		if ((r = list_all(p, url.p, what.p, members_page, id)) < 0)
			goto out;
	}
	r = 0;
out:
	free(matched);
	ids_buf_free(&url);
	ids_buf_free(&what);
	return r;
}

/* ---------------- the pull ---------------- */

static char *strip_slash(const char *s)
{
	size_t n = strlen(s);
	while (n && s[n - 1] == '/')
		n--;
	return strndup(s, n);
}

/* Endpoints, the customer/domain parameter and the field map: everything
 * the configuration decides, checked before any request. */
static int setup(struct pull *p)
{
	const struct ids_google_cfg *gc = p->gc;
	struct ids_buf b = {0};
	int r;

	if (!gc->subject || !*gc->subject)
		return ids_error_set(p->err, IDS_E_CONFIG,
				     "no subject (the admin to impersonate) configured");
	if ((r = read_key(p)) < 0)
		return r;
	p->token_url = gc->token_endpoint ? gc->token_endpoint : p->key.token_uri;
	if (!p->token_url)
		return ids_error_set(
		    p->err, IDS_E_CONFIG,
		    "service account key %s has no token_uri and no token_endpoint is configured",
		    gc->service_account_file);
	/* the assertion is a credential: it goes nowhere but over TLS */
	if (strncasecmp(p->token_url, "https://", 8) != 0)
		return ids_error_set(p->err, IDS_E_CONFIG, "token endpoint %s is not an https:// URL",
				     p->token_url);
	if (!(p->api = strip_slash(gc->api_endpoint ? gc->api_endpoint : "https://admin.googleapis.com")))
		return oom(p);
	if ((r = ids_buf_puts(&b, gc->domain ? "domain=" : "customer=")) < 0 ||
	    (r = ids_http_urlencode(&b, gc->domain     ? gc->domain
					: gc->customer ? gc->customer
						       : "my_customer")) < 0) {
		ids_buf_free(&b);
		return oom(p);
	}
	p->scope_param = ids_buf_steal(&b);

	for (int f = 0; f < 6; f++)
		p->map.field[f] = p->cc->attr[f] ? p->cc->attr[f] : ids_google_default_fields[f];
	p->map.attrs = p->ctx ? p->ctx->rule_attrs : NULL;
	const char *bad = ids_google_umap_check(&p->map);
	if (bad)
		return ids_error_set(
		    p->err, IDS_E_CONFIG,
		    "attribute \"%s\" is not a Google field path (names of the user resource "
		    "joined by dots, like organizations.0.department)",
		    bad);
	return 0;
}

static int google_pull(const struct ids_connector_cfg *cc, const struct ids_pull_ctx *ctx,
		       struct ids_snapshot *s, struct ids_error *err)
{
	struct pull p = {.cc = cc, .gc = cc ? &cc->google : NULL, .ctx = ctx, .s = s, .err = err};
	int r;
	if (!cc || !s)
		return ids_error_set(err, -EINVAL, "Google pull without a configuration or snapshot");
	if ((r = setup(&p)) < 0)
		goto out;
	int run_timeout = ctx && ctx->config ? ctx->config->sync.run_timeout : 0;
	struct ids_http_opts o = {
	    .tls_ca_file = p.gc->tls_ca_file,
	    .timeout = p.gc->timeout > 0 ? p.gc->timeout : DEFAULT_TIMEOUT,
	    /* retry waits never run past run_timeout; the daemon's progress
	     * hook enforces it too, this avoids starting a hopeless wait */
	    .deadline_usec = run_timeout > 0 ? ids_mono_usec() + (int64_t)run_timeout * 1000000 : 0,
	    .progress = http_progress,
	    .ud = &p,
	};
	if ((r = ids_http_new(&o, &p.h, err)) < 0)
		goto out;
	s->pages = 0;
	if ((r = read_users(&p)) < 0 || (r = read_groups(&p)) < 0)
		goto out;
	r = 0;
out:
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "Google pull: %s", ids_strerror(r));
	ids_http_free(p.h);
	ids_secret_free(p.auth);
	ids_google_key_clear(&p.key);
	ids_strv_free(&p.group_ids);
	free(p.api);
	free(p.scope_param);
	return r;
}

const struct ids_connector_ops ids_google_connector = {
    .type = "google",
    .pull = google_pull,
};
