/* entra.c — the Microsoft Entra ID connector, through Microsoft Graph.
 *
 * One pull: a token by OAuth 2.0 client credentials (a client secret, or a
 * JWT client assertion signed with the certificate's key), then
 *   GET {graph}/users?$select=…&$top=999          every page
 *   GET {graph}/groups?$select=id,displayName,mail&$top=999
 *   GET {graph}/groups/{id}/transitiveMembers/microsoft.graph.user?$select=id&$top=999
 *                                                  per group in scope
 * into the snapshot builder.  Graph resolves nested groups itself
 * (transitiveMembers), so every membership emitted is already transitive.
 *
 * Rules this file keeps, and why:
 * - All or nothing: any failed page fails the pull (Graph's error.code and
 *   error.message in err), and the caller throws the snapshot away.
 * - Paging follows @odata.nextLink, an absolute URL, only while it stays
 *   on the graph_endpoint's origin (the bearer token goes with it), never
 *   twice to the same link (a loop), and at most MAX_PAGES times.
 * - The token is cached until TOKEN_MARGIN before it expires; a 401 from
 *   Graph renews it once and asks the same page again (a token revoked or
 *   expired early); a second 401 fails the pull.
 * - The `groups:` scope is applied client-side: the groups listing is one
 *   cheap request per 999 groups, while a $filter would need one clause
 *   per name and id (Graph caps `in` lists) and could not say which
 *   configured entry matched nothing.  An entry that matches no group
 *   fails the pull: a typo there must not read as "nobody is in it any
 *   more" and strip everyone's grants.  Groups out of scope are not put in
 *   the snapshot at all, since their memberships were not read.
 * - Secrets (client secret, the key, the token) live in memory only as
 *   long as needed, are wiped when freed, and never reach a message. */
#include "ids/connector.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ids/graph.h"
#include "ids/http.h"
#include "ids/jwt.h"

#define MAX_PAGES 100000	   /* pages per listing: a paging loop that escapes detection ends here */
#define TOKEN_MARGIN 300	   /* seconds before expiry that a cached token is renewed */
#define ASSERTION_LIFETIME 600	   /* seconds: Entra accepts at most 10 minutes */
#define MAX_KEY_FILE (1024 * 1024) /* bytes: a PEM key is a few KB */
#define DEFAULT_TIMEOUT 30

struct pull {
	const struct ids_connector_cfg *cc;
	const struct ids_entra_cfg *ec;
	const struct ids_pull_ctx *ctx;
	struct ids_snapshot *s;
	struct ids_error *err;
	struct ids_http *h;

	char *graph;		   /* graph_endpoint without a trailing '/' */
	char *origin;		   /* scheme://host[:port] of graph_endpoint */
	char *token_url;	   /* {login}/{tenant}/oauth2/v2.0/token */
	char *scope;		   /* {origin}/.default */
	char *thumbprint;	   /* x5t#S256 or x5t of the certificate; NULL for a secret */
	char *auth;		   /* secret: "Authorization: Bearer …", NULL when no token */
	int64_t renew_at;	   /* CLOCK_MONOTONIC usec when auth must be renewed */
	struct ids_strv group_ids; /* groups in scope, whose members are read */
};

/* Frees a buffer that held a secret, wiping it first. */
static void buf_wipe(struct ids_buf *b)
{
	if (b->p)
		explicit_bzero(b->p, b->cap);
	ids_buf_free(b);
}

static int http_progress(void *ud)
{
	const struct pull *p = ud;
	return p->ctx && p->ctx->progress ? p->ctx->progress(p->ctx->ud) : 0;
}

/* " (request-id X)" for messages, or "". */
static const char *rid_text(struct ids_buf *b, const char *rid)
{
	ids_buf_reset(b);
	if (rid && ids_buf_printf(b, " (request-id %s)", rid) >= 0)
		return b->p;
	return "";
}

/* ---------------- endpoints ---------------- */

/* The scheme://host[:port] of url, lower-cased scheme and host.  New. */
static int origin_of(const char *url, char **ret)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int r = -EINVAL;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		/* the port only when the URL names one: Graph's own scope is
		 * "https://graph.microsoft.com/.default", without :443 */
		curl_url_get(u, CURLUPART_PORT, &port, 0);
		struct ids_buf b = {0};
		r = ids_buf_printf(&b, "%s://%s%s%s", scheme, host, port ? ":" : "", port ? port : "");
		if (r >= 0) {
			for (char *c = b.p; *c; c++)
				if (*c >= 'A' && *c <= 'Z')
					*c = (char)(*c - 'A' + 'a');
			*ret = ids_buf_steal(&b);
			r = 0;
		}
		ids_buf_free(&b);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

static char *strip_slash(const char *s)
{
	size_t n = strlen(s);
	while (n && s[n - 1] == '/')
		n--;
	return strndup(s, n);
}

static int setup_endpoints(struct pull *p)
{
	const struct ids_entra_cfg *ec = p->ec;
	struct ids_buf b = {0};
	char *login = NULL;
	int r;
	if (!(p->graph = strip_slash(ec->graph_endpoint)) || !(login = strip_slash(ec->login_endpoint))) {
		r = ids_error_set(p->err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = origin_of(p->graph, &p->origin)) < 0) {
		r = ids_error_set(p->err, IDS_E_CONFIG, "graph_endpoint %s is not a URL", ec->graph_endpoint);
		goto out;
	}
	if ((r = ids_buf_printf(&b, "%s/", login)) < 0 || (r = ids_http_urlencode(&b, ec->tenant)) < 0 ||
	    (r = ids_buf_puts(&b, "/oauth2/v2.0/token")) < 0) {
		ids_error_set(p->err, r, "out of memory");
		goto out;
	}
	p->token_url = ids_buf_steal(&b);
	if ((r = ids_buf_printf(&b, "%s/.default", p->origin)) < 0) {
		ids_error_set(p->err, r, "out of memory");
		goto out;
	}
	p->scope = ids_buf_steal(&b);
	r = 0;
out:
	free(login);
	ids_buf_free(&b);
	return r;
}

/* ---------------- token ---------------- */

/* Reads a secret file whole into *ret (new, wipe it) and *ret_len.  The
 * config loader has checked its permissions. */
static int read_secret_file(const char *path, char **ret, size_t *ret_len, struct ids_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = ids_error_set(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MAX_KEY_FILE) {
		r = ids_error_set(err, IDS_E_CONFIG, "%s: not a regular file of at most %d bytes", path,
				  MAX_KEY_FILE);
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	while (n < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = ids_error_set(err, k < 0 ? -errno : -EIO, "%s: read failed", path);
			goto out;
		}
		n += (size_t)k;
	}
	buf[n] = '\0';
	*ret = buf;
	*ret_len = n;
	buf = NULL;
	r = 0;
out:
	if (buf) {
		explicit_bzero(buf, (size_t)st.st_size);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

/* The signed client assertion of the certificate credential.  *ret new
 * (a bearer credential for ten minutes: wipe it). */
static int client_assertion(struct pull *p, char **ret)
{
	const struct ids_entra_cfg *ec = p->ec;
	bool rs256 = ec->client_assertion_alg && !strcmp(ec->client_assertion_alg, "RS256");
	struct ids_buf hdr = {0}, claims = {0};
	char *jti = NULL, *key = NULL;
	size_t key_len = 0;
	int r;

	if (!p->thumbprint &&
	    (r = ids_jwt_thumbprint(ec->client_certificate_file, !rs256, &p->thumbprint, p->err)) < 0)
		goto out;
	if ((r = ids_jwt_jti(&jti)) < 0) {
		ids_error_set(p->err, r, "cannot make a random jti: %s", ids_strerror(r));
		goto out;
	}
	long long now = (long long)time(NULL);
	/* PS256 + x5t#S256 is what Microsoft documents now; RS256 + x5t (SHA-1)
	 * is the older form some deployments still expect */
	if ((r = ids_buf_printf(&hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"%s\":", rs256 ? "RS256" : "PS256",
				rs256 ? "x5t" : "x5t#S256")) < 0 ||
	    (r = ids_buf_json_str(&hdr, p->thumbprint)) < 0 || (r = ids_buf_putc(&hdr, '}')) < 0 ||
	    (r = ids_buf_puts(&claims, "{\"aud\":")) < 0 ||
	    (r = ids_buf_json_str(&claims, p->token_url)) < 0 ||
	    (r = ids_buf_puts(&claims, ",\"iss\":")) < 0 ||
	    (r = ids_buf_json_str(&claims, ec->client_id)) < 0 ||
	    (r = ids_buf_puts(&claims, ",\"sub\":")) < 0 ||
	    (r = ids_buf_json_str(&claims, ec->client_id)) < 0 ||
	    (r = ids_buf_puts(&claims, ",\"jti\":")) < 0 || (r = ids_buf_json_str(&claims, jti)) < 0 ||
	    (r = ids_buf_printf(&claims, ",\"nbf\":%lld,\"iat\":%lld,\"exp\":%lld}", now, now,
				now + ASSERTION_LIFETIME)) < 0) {
		ids_error_set(p->err, r, "out of memory");
		goto out;
	}
	if ((r = read_secret_file(ec->client_key_file, &key, &key_len, p->err)) < 0)
		goto out;
	if ((r = ids_jwt_sign(rs256 ? "RS256" : "PS256", hdr.p, claims.p, key, key_len, ret, p->err)) < 0)
		ids_error_prefix(p->err, "%s", ec->client_key_file);
out:
	if (key) {
		explicit_bzero(key, key_len);
		free(key);
	}
	free(jti);
	ids_buf_free(&hdr);
	ids_buf_free(&claims);
	return r;
}

/* "token endpoint 401 invalid_client: AADSTS…" from a failed answer. */
static int token_error(struct pull *p, const struct ids_http_resp *resp)
{
	char *code = NULL, *msg = NULL;
	struct ids_buf rb = {0};
	ids_graph_parse_error(resp->body.p ? resp->body.p : "", resp->body.len, &code, &msg, NULL);
	/* 400/401: the identity platform refused the credentials (wrong or
	 * expired secret, unknown certificate, no consent): an auth failure
	 * the daemon backs off on, not something a quick retry fixes */
	int kind =
	    resp->status == 400 || resp->status == 401 || resp->status == 403 ? IDS_E_AUTH : IDS_E_SERVER;
	int r = ids_error_set(p->err, kind, "token endpoint %s: %ld %s%s%s%s", p->token_url, resp->status,
			      code ? code : "(no error code)", msg ? ": " : "", msg ? msg : "",
			      rid_text(&rb, resp->request_id));
	free(code);
	free(msg);
	ids_buf_free(&rb);
	return r;
}

/* Gets a new token into p->auth. */
static int renew_token(struct pull *p)
{
	const struct ids_entra_cfg *ec = p->ec;
	struct ids_buf body = {0}, hdr = {0};
	struct ids_http_resp resp = {0};
	char *assertion = NULL, *token = NULL;
	long expires = 0;
	int r;
	static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
					      "Accept: application/json", NULL};

	if (p->auth) {
		ids_secret_free(p->auth);
		p->auth = NULL;
	}
	if (ec->client_certificate_file && (r = client_assertion(p, &assertion)) < 0)
		goto out;
	if ((r = ids_buf_puts(&body, "grant_type=client_credentials&client_id=")) < 0 ||
	    (r = ids_http_urlencode(&body, ec->client_id)) < 0 || (r = ids_buf_puts(&body, "&scope=")) < 0 ||
	    (r = ids_http_urlencode(&body, p->scope)) < 0)
		goto oom;
	if (assertion) {
		if ((r = ids_buf_puts(&body, "&client_assertion_type=")) < 0 ||
		    (r = ids_http_urlencode(&body,
					    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")) < 0 ||
		    (r = ids_buf_puts(&body, "&client_assertion=")) < 0 ||
		    (r = ids_http_urlencode(&body, assertion)) < 0)
			goto oom;
	} else {
		if (!ec->client_secret || !*ec->client_secret) {
			r = ids_error_set(p->err, IDS_E_CONFIG, "the client secret in %s is empty",
					  ec->client_secret_file ? ec->client_secret_file
								 : "client_secret_file");
			goto out;
		}
		if ((r = ids_buf_puts(&body, "&client_secret=")) < 0 ||
		    (r = ids_http_urlencode(&body, ec->client_secret)) < 0)
			goto oom;
	}

	if ((r = ids_http_request(p->h, "POST", p->token_url, headers, body.p, body.len, NULL, &resp,
				  p->err)) < 0)
		goto out;
	if (resp.status != 200) {
		r = token_error(p, &resp);
		goto out;
	}
	if ((r = ids_graph_parse_token(resp.body.p, resp.body.len, &token, &expires, p->err)) < 0) {
		ids_error_prefix(p->err, "%s", p->token_url);
		goto out;
	}
	if ((r = ids_buf_puts(&hdr, "Authorization: Bearer ")) < 0 || (r = ids_buf_puts(&hdr, token)) < 0)
		goto oom;
	/* renew TOKEN_MARGIN before expiry, or halfway for short-lived tokens;
	 * no expires_in at all: keep it 5 minutes (a 401 renews it anyway) */
	if (expires <= 0)
		expires = 2 * TOKEN_MARGIN;
	long margin = expires / 2 < TOKEN_MARGIN ? expires / 2 : TOKEN_MARGIN;
	p->renew_at = ids_mono_usec() + (int64_t)(expires - margin) * 1000000;
	p->auth = ids_buf_steal(&hdr);
	r = 0;
	goto out;
oom:
	ids_error_set(p->err, r, "out of memory");
out:
	/* the request body holds the client secret or the assertion, and the
	 * answer the token */
	buf_wipe(&body);
	buf_wipe(&hdr);
	buf_wipe(&resp.body);
	ids_http_resp_clear(&resp);
	ids_secret_free(assertion);
	ids_secret_free(token);
	return r;
}

/* ---------------- Graph requests ---------------- */

/* "users: Graph 403 Authorization_RequestDenied: … (request-id …)". */
static int graph_error(struct pull *p, const char *what, const struct ids_http_resp *resp)
{
	char *code = NULL, *msg = NULL, *rid = NULL;
	struct ids_buf rb = {0};
	ids_graph_parse_error(resp->body.p ? resp->body.p : "", resp->body.len, &code, &msg, &rid);
	int kind = resp->status == 401 || resp->status == 403 ? IDS_E_AUTH
		   : resp->status == 429		      ? IDS_E_LIMIT
							      : IDS_E_SERVER;
	const char *id = resp->request_id ? resp->request_id : rid;
	int r;
	struct ids_buf tries = {0};
	if (resp->retries)
		ids_buf_printf(&tries, " (after %d %s)", resp->retries,
			       resp->retries == 1 ? "retry" : "retries");
	const char *after = tries.p ? tries.p : "";
	if (code || msg)
		r = ids_error_set(p->err, kind, "%s: Graph %ld %s: %s%s%s", what, resp->status,
				  code ? code : "(no code)", msg ? msg : "(no message)", after,
				  rid_text(&rb, id));
	else
		r = ids_error_set(p->err, kind, "%s: Graph %ld without an error body (content-type %s)%s%s",
				  what, resp->status, resp->content_type ? resp->content_type : "none", after,
				  rid_text(&rb, id));
	ids_buf_free(&tries);
	free(code);
	free(msg);
	free(rid);
	ids_buf_free(&rb);
	return r;
}

/* GET url with the bearer token: 0 with a 200 answer in *resp, else < 0
 * with err set.  A 401 renews the token once and asks again. */
static int graph_get(struct pull *p, const char *url, const char *what, struct ids_http_resp *resp)
{
	int r;
	for (int renewed = 0;; renewed++) {
		if ((!p->auth || ids_mono_usec() >= p->renew_at) && (r = renew_token(p)) < 0)
			return r;
		const char *headers[] = {p->auth, "Accept: application/json", NULL};
		if ((r = ids_http_request(p->h, "GET", url, headers, NULL, 0, NULL, resp, p->err)) < 0)
			return ids_error_prefix(p->err, "%s", what);
		if (resp->status == 401 && !renewed) {
			/* expired or revoked before we expected: one new token */
			ids_secret_free(p->auth);
			p->auth = NULL;
			continue;
		}
		if (resp->status != 200)
			return graph_error(p, what, resp);
		/* an HTML login or proxy page with status 200 is not a page of users */
		if (resp->content_type && !strstr(resp->content_type, "json")) {
			struct ids_buf rb = {0};
			r = ids_error_set(p->err, IDS_E_PROTOCOL,
					  "%s: Graph answered 200 with %s, not JSON%s", what,
					  resp->content_type, rid_text(&rb, resp->request_id));
			ids_buf_free(&rb);
			return r;
		}
		return 0;
	}
}

typedef int (*page_fn)(struct pull *p, const void *arg, const char *body, size_t len,
		       struct ids_graph_page *page);

/* Reads a collection from url to its last page, each page through fn. */
static int list_all(struct pull *p, const char *url, const char *what, page_fn fn, const void *arg)
{
	struct ids_arena links = {0};
	struct ids_strmap seen = {0};
	struct ids_http_resp resp = {0};
	struct ids_graph_page page = {0};
	char *cur = strdup(url);
	size_t origin_len = strlen(p->origin);
	int r;

	if (!cur) {
		r = ids_error_set(p->err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t n = 0;; n++) {
		if (n >= MAX_PAGES) {
			r = ids_error_set(p->err, IDS_E_LIMIT, "%s: more than %d pages", what, MAX_PAGES);
			goto out;
		}
		/* the same link twice means the server sends us round in circles */
		char *key = ids_arena_strdup(&links, cur);
		if (!key || (r = ids_strmap_put(&seen, key, (uint32_t)n, NULL)) < 0) {
			r = ids_error_set(p->err, -ENOMEM, "out of memory");
			goto out;
		}
		if (r == 0) {
			r = ids_error_set(
			    p->err, IDS_E_PROTOCOL,
			    "%s: paging loop: page %zu's @odata.nextLink repeats an earlier page", what, n);
			goto out;
		}
		if ((r = graph_get(p, cur, what, &resp)) < 0)
			goto out;
		r = fn(p, arg, resp.body.p ? resp.body.p : "", resp.body.len, &page);
		if (r < 0 && resp.request_id && p->err) {
			/* a malformed page: Microsoft support asks for its request id */
			char *m = p->err->msg;
			p->err->msg = NULL;
			ids_error_set(p->err, r, "%s (request-id %s)", m ? m : ids_strerror(r),
				      resp.request_id);
			free(m);
		}
		ids_http_resp_clear(&resp); /* the page's memory goes before the next one comes */
		if (r < 0)
			goto out;
		p->s->pages++;
		free(cur);
		cur = page.next_link;
		page.next_link = NULL;
		if (!cur)
			break;
		/* absolute, and on Graph's own origin: the token goes with it */
		if (strncasecmp(cur, p->origin, origin_len) != 0 || cur[origin_len] != '/') {
			r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: @odata.nextLink leaves %s: refused",
					  what, p->origin);
			goto out;
		}
	}
	r = 0;
out:
	free(cur);
	ids_graph_page_clear(&page);
	ids_http_resp_clear(&resp);
	ids_strmap_free(&seen);
	ids_arena_free(&links);
	return r;
}

static int users_page(struct pull *p, const void *arg, const char *body, size_t len,
		      struct ids_graph_page *page)
{
	return ids_graph_parse_users(body, len, arg, p->s, page, p->err);
}

struct groups_arg {
	bool *matched;
};

static int groups_page(struct pull *p, const void *arg, const char *body, size_t len,
		       struct ids_graph_page *page)
{
	const struct groups_arg *ga = arg;
	return ids_graph_parse_groups(body, len, &p->ec->groups, p->s, &p->group_ids, ga->matched, page,
				      p->err);
}

static int members_page(struct pull *p, const void *arg, const char *body, size_t len,
			struct ids_graph_page *page)
{
	return ids_graph_parse_members(body, len, arg, p->s, page, p->err);
}

static int read_users(struct pull *p)
{
	struct ids_graph_user_map m = {(const char *const *)p->cc->attr, p->ctx ? p->ctx->rule_attrs : NULL};
	struct ids_buf url = {0};
	int r;
	if ((r = ids_buf_printf(&url, "%s/users?$select=", p->graph)) < 0 ||
	    (r = ids_graph_user_select(&url, &m)) < 0 || (r = ids_buf_puts(&url, "&$top=999")) < 0) {
		ids_buf_free(&url);
		return ids_error_set(p->err, r, "out of memory");
	}
	r = list_all(p, url.p, "users", users_page, &m);
	ids_buf_free(&url);
	return r;
}

static int read_groups(struct pull *p)
{
	const struct ids_strv *scope = &p->ec->groups;
	struct groups_arg ga = {NULL};
	struct ids_buf url = {0};
	int r;
	if (scope->n && !(ga.matched = calloc(scope->n, sizeof(bool)))) {
		r = ids_error_set(p->err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = ids_buf_printf(&url, "%s/groups?$select=id,displayName,mail&$top=999", p->graph)) < 0) {
		ids_error_set(p->err, r, "out of memory");
		goto out;
	}
	if ((r = list_all(p, url.p, "groups", groups_page, &ga)) < 0)
		goto out;
	for (size_t i = 0; i < scope->n; i++)
		if (!ga.matched[i]) {
			r = ids_error_set(
			    p->err, IDS_E_INVALID,
			    "groups: \"%s\" (in the connector's groups:) matches no group's displayName "
			    "or id",
			    scope->v[i]);
			goto out;
		}

	for (size_t i = 0; i < p->group_ids.n; i++) {
		const char *id = p->group_ids.v[i];
		ids_buf_reset(&url);
		if ((r = ids_buf_printf(&url, "%s/groups/", p->graph)) < 0 ||
		    (r = ids_http_urlencode(&url, id)) < 0 ||
		    (r = ids_buf_puts(&url, "/transitiveMembers/microsoft.graph.user?$select=id&$top=999")) <
			0) {
			ids_error_set(p->err, r, "out of memory");
			goto out;
		}
		struct ids_buf what = {0};
		if ((r = ids_buf_printf(&what, "members of group %s", id)) < 0) {
			ids_error_set(p->err, r, "out of memory");
			goto out;
		}
		r = list_all(p, url.p, what.p, members_page, id);
		ids_buf_free(&what);
		if (r < 0)
			goto out;
	}
	r = 0;
out:
	free(ga.matched);
	ids_buf_free(&url);
	return r;
}

static int entra_pull(const struct ids_connector_cfg *cc, const struct ids_pull_ctx *ctx,
		      struct ids_snapshot *s, struct ids_error *err)
{
	struct pull p = {.cc = cc, .ec = &cc->entra, .ctx = ctx, .s = s, .err = err};
	int r;
	if ((r = setup_endpoints(&p)) < 0)
		goto out;
	int run_timeout = ctx && ctx->config ? ctx->config->sync.run_timeout : 0;
	struct ids_http_opts o = {
	    .tls_ca_file = p.ec->tls_ca_file,
	    .timeout = p.ec->timeout > 0 ? p.ec->timeout : DEFAULT_TIMEOUT,
	    /* retry waits never run past run_timeout; the daemon's progress
	     * hook enforces it too, this just avoids starting a hopeless wait */
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
	ids_http_free(p.h);
	ids_secret_free(p.auth);
	ids_strv_free(&p.group_ids);
	free(p.graph);
	free(p.origin);
	free(p.token_url);
	free(p.scope);
	free(p.thumbprint);
	return r;
}

const struct ids_connector_ops ids_entra_connector = {
    .type = "entra",
    .pull = entra_pull,
};
