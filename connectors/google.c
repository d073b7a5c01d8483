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
 * A targeted read (`sync --user`, explain: ctx->only_user) reads instead
 *   GET {api}/admin/directory/v1/users/{userKey}
 *   GET {api}/admin/directory/v1/groups?userKey=…   the user, then each
 *       group found, up to the top (see read_user_groups)
 * the same user fields and the same groups, scoped alike.
 *
 * Rules this file keeps, and why:
 * - All or nothing: any failed page fails the pull with Google's message,
 *   and the caller throws the snapshot away.
 * - Rate limits are waited out, never read as an answer: 429, 5xx and the
 *   403s whose reason is rateLimitExceeded / userRateLimitExceeded are
 *   retried by the HTTP layer (bounded, with backoff and jitter).  Every
 *   other 403 is a permission problem and fails the pull — it must never
 *   look like "zero users".
 * - The token, the authorized GET and the page loop (nextPageToken until
 *   it is absent, a repeated token a loop) are the shared bearer layer's
 *   (oauth.h); this file keeps the URLs, the grant's claims, Google's
 *   rate-limit and error shapes, and the page parsers (google_int.h).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "google_int.h"
#include "ids/http.h"
#include "ids/jwt.h"
#include "ids/oauth.h"
#include "ids/secret.h"

#define ASSERTION_LIFETIME 3600 /* seconds: Google accepts at most an hour */
#define USERS_MAX 500		/* users.list maxResults: Google's maximum */
#define GROUPS_MAX 200		/* groups.list and members.list */

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
	struct ids_oauth *o;

	struct ids_google_key key;
	const char *token_url; /* borrowed: gc->token_endpoint or key.token_uri */
	char *api;	       /* api_endpoint without a trailing '/' */
	char *scope_param;     /* "customer=…" or "domain=…", encoded */
	struct ids_google_umap map;
	struct ids_strv group_ids; /* groups in scope, whose members are read */
};

static int oom(struct pull *p)
{
	return ids_error_set(p->err, -ENOMEM, "out of memory");
}

/* The HTTP layer's hook for 4xx answers: Google's 403 rate limits. */
static bool retryable(const struct ids_http_resp *r)
{
	return ids_google_rate_limited(r->status, r->body.p, r->body.len);
}

/* The bearer layer's error words: Google's message (and reason); Google
 * puts no request id in its error bodies. */
static int error_text(const struct ids_http_resp *resp, char **ret_text, char **ret_request_id)
{
	*ret_request_id = NULL;
	return ids_google_error_message(resp->body.p, resp->body.len, ret_text) < 0 ? -ENOMEM : 0;
}

/* ---------------- the service account key ---------------- */

/* Reads and parses the key file through the one secret reader: gone,
 * unreadable, readable by others or not a key, it is a configuration
 * error naming the file. */
static int read_key(struct pull *p)
{
	const char *path = p->gc->service_account_file;
	bool readable = p->ctx && p->ctx->config && p->ctx->config->security.allow_readable_secrets;
	char *buf = NULL;
	size_t n = 0;
	int r;
	if (!path)
		return ids_error_set(p->err, IDS_E_CONFIG, "no service_account_file configured");
	if ((r = ids_secret_read(path, IDS_GOOGLE_KEY_MAX, readable, &buf, &n, p->err)) < 0)
		return ids_error_prefix(p->err, "service account key");
	r = ids_google_key_parse(buf, n, path, &p->key, p->err);
	ids_secret_free(buf);
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

/* The bearer layer's grant: the jwt-bearer grant with the signed
 * assertion. */
static int grant(void *ud, struct ids_buf *body, struct ids_error *err)
{
	struct pull *p = ud;
	char *jwt = NULL;
	int r;
	if ((r = assertion(p, &jwt)) < 0)
		return r;
	if ((r = ids_buf_puts(body, "grant_type=")) < 0 ||
	    (r = ids_http_urlencode(body, "urn:ietf:params:oauth:grant-type:jwt-bearer")) < 0 ||
	    (r = ids_buf_puts(body, "&assertion=")) < 0 || (r = ids_http_urlencode(body, jwt)) < 0)
		r = ids_error_set(err, r, "out of memory");
	ids_secret_free(jwt);
	return r;
}

static int id_str(struct ids_buf *id, const char *s)
{
	return ids_oauth_id_add(id, s, s ? strlen(s) : 0);
}

/* The token cache's key material (oauth.h): the key file's key, read at
 * this run's start, and whom the token acts for. */
static int identity(void *ud, struct ids_buf *id, struct ids_error *err)
{
	struct pull *p = ud;
	int r;
	if ((r = id_str(id, p->cc->name)) < 0 || (r = id_str(id, p->key.client_email)) < 0 ||
	    (r = id_str(id, p->key.private_key_id)) < 0 ||
	    (r = ids_oauth_id_add(id, p->key.private_key, p->key.private_key_len)) < 0 ||
	    (r = id_str(id, p->gc->subject)) < 0 || (r = id_str(id, scopes)) < 0)
		ids_error_set(err, r, "out of memory");
	return r;
}

/* ---------------- the listings ---------------- */

/* One listing's page parser and what it needs besides the page. */
struct listing {
	struct pull *p;
	const void *arg;
};

/* The next page token out of a parsed page, for the bearer layer. */
static int next_of(int r, struct ids_google_page *pg, char **ret_next)
{
	if (r >= 0) {
		*ret_next = pg->next;
		pg->next = NULL;
	}
	ids_google_page_clear(pg);
	return r;
}

static int users_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const struct listing *l = ud;
	struct ids_google_page pg = {0};
	return next_of(ids_google_parse_users(body, len, &l->p->map, l->p->s, &pg, err), &pg, ret_next);
}

static int groups_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const struct listing *l = ud;
	struct ids_google_page pg = {0};
	bool *matched = (bool *)l->arg;
	return next_of(ids_google_parse_groups(body, len, &l->p->gc->groups, matched, l->p->s,
					       &l->p->group_ids, &pg, err),
		       &pg, ret_next);
}

static int members_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const struct listing *l = ud;
	struct ids_google_page pg = {0};
	return next_of(ids_google_parse_members(body, len, l->arg, l->p->s, &pg, err), &pg, ret_next);
}

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
	struct listing l = {p, NULL};
	r = ids_oauth_list(p->o, url.p, "users", users_page, &l, &p->s->pages, p->err);
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
	struct listing l = {p, matched};
	if ((r = ids_oauth_list(p->o, url.p, "groups", groups_page, &l, &p->s->pages, p->err)) < 0)
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
		struct listing ml = {p, id};
		if ((r = ids_oauth_list(p->o, url.p, what.p, members_page, &ml, &p->s->pages, p->err)) < 0)
			goto out;
	}
	r = 0;
out:
	free(matched);
	ids_buf_free(&url);
	ids_buf_free(&what);
	return r;
}

/* ---------------- one person (sync --user, explain) ---------------- */

/* users.get {key} (a primary e-mail, an alias or the id: Google takes
 * each): the user into the snapshot, *uid new (its id), or NULL when
 * Google answers 404 notFound.  A 404 without that reason (a wrong
 * api_endpoint) is an error: "not found" must be Google's word. */
static int get_user(struct pull *p, const char *key, char **uid)
{
	struct ids_buf url = {0}, what = {0}, fields = {0};
	struct ids_http_resp resp = {0};
	char *text = NULL;
	bool full = false;
	int r;
	*uid = NULL;
	/* the listing's selector only for `full` (customSchemas need
	 * projection=full): its fields= is the users(...) form of a list, and
	 * one whole user resource is small */
	if ((r = ids_google_users_fields(&p->map, &fields, &full)) < 0 ||
	    (r = ids_buf_printf(&url, "%s/admin/directory/v1/users/", p->api)) < 0 ||
	    (r = ids_http_urlencode(&url, key)) < 0 ||
	    (full && (r = ids_buf_puts(&url, "?projection=full")) < 0) ||
	    (r = ids_buf_printf(&what, "user %s", key)) < 0) {
		r = oom(p);
		goto out;
	}
	r = ids_oauth_get(p->o, url.p, what.p, &resp, p->err);
	p->s->pages++;
	if (r < 0 && resp.status == 404 &&
	    ids_google_error_message(resp.body.p ? resp.body.p : "", resp.body.len, &text) >= 0 &&
	    strstr(text, "(notFound)")) {
		ids_error_clear(p->err);
		r = 0;
		goto out;
	}
	if (r >= 0 && (r = ids_google_parse_user(resp.body.p ? resp.body.p : "", resp.body.len, &p->map, p->s,
						 uid, p->err)) < 0)
		ids_error_prefix(p->err, "%s", what.p);
out:
	ids_http_resp_clear(&resp);
	ids_buf_free(&url);
	ids_buf_free(&what);
	ids_buf_free(&fields);
	free(text);
	return r;
}

/* The walk up from one user: groups seen (ids) and the keys still to ask. */
struct walk {
	const char *uid;
	struct ids_strv seen, keys;
};

static int user_groups_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const struct listing *l = ud;
	struct walk *w = (struct walk *)l->arg;
	struct ids_google_page pg = {0};
	return next_of(ids_google_parse_user_groups(body, len, &l->p->gc->groups, w->uid, l->p->s, &w->seen,
						    &w->keys, &pg, err),
		       &pg, ret_next);
}

/* The groups of user uid, nested ones included.  groups.list?userKey=
 * gives direct memberships only, so the walk asks it again for each group
 * found (a group's e-mail as the key: its parents), breadth first, each
 * group once: the closure is every group that holds the user through any
 * chain, which is who a full read's includeDerivedMembership listings
 * name.  The user is made a member of each group in scope directly, as
 * the full read does.  A `groups:` entry matching no group cannot be
 * checked from here: the full runs keep failing on it. */
static int read_user_groups(struct pull *p, const char *uid)
{
	struct walk w = {.uid = uid};
	struct ids_buf url = {0}, what = {0};
	int r = ids_strv_push(&w.keys, uid) < 0 ? oom(p) : 0;
	for (size_t i = 0; r >= 0 && i < w.keys.n; i++) {
		ids_buf_reset(&url);
		ids_buf_reset(&what);
		/* userKey cannot go with customer= or domain= (Google's 400) */
		if ((r = ids_buf_printf(&url, "%s/admin/directory/v1/groups?userKey=", p->api)) < 0 ||
		    (r = ids_http_urlencode(&url, w.keys.v[i])) < 0 ||
		    (r = ids_buf_printf(&url, "&maxResults=%d&fields=", GROUPS_MAX)) < 0 ||
		    (r = ids_http_urlencode(&url, "nextPageToken,groups(id,email,name)")) < 0 ||
		    (r = ids_buf_printf(&what, "groups of %s", w.keys.v[i])) < 0) {
			r = oom(p);
			break;
		}
		struct listing l = {p, &w};
		r = ids_oauth_list(p->o, url.p, what.p, user_groups_page, &l, &p->s->pages, p->err);
	}
	ids_strv_free(&w.seen);
	ids_strv_free(&w.keys);
	ids_buf_free(&url);
	ids_buf_free(&what);
	return r;
}

/* `sync --user`, explain: the one person and their groups.  Nobody
 * found: an empty snapshot, which the caller reports as "not found"
 * (and deactivates no one). */
static int read_one(struct pull *p, const char *who)
{
	char *uid = NULL;
	int r = get_user(p, who, &uid);
	if (r >= 0 && uid)
		r = read_user_groups(p, uid);
	free(uid);
	return r;
}

/* ---------------- the pull ---------------- */

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
	if (!(p->api =
		  ids_oauth_url_base(gc->api_endpoint ? gc->api_endpoint : "https://admin.googleapis.com")))
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
	if ((r = ids_oauth_http_new(p.gc->tls_ca_file, p.gc->timeout, ctx, cc->name, &p.h, err)) < 0)
		goto out;
	const struct ids_oauth_cfg oc = {
	    .service = "Google",
	    .token_url = p.token_url,
	    .http = p.h,
	    .grant = grant,
	    .identity = identity,
	    .tokens = ctx ? ctx->tokens : NULL,
	    .error_text = error_text,
	    .retryable = retryable,
	    .token_param = "pageToken",
	    .next_name = "nextPageToken",
	    .number_pages = true,
	    .ctx = ctx,
	    .ud = &p,
	};
	if ((r = ids_oauth_new(&oc, &p.o)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	s->pages = 0;
	if (ctx && ctx->only_user)
		r = read_one(&p, ctx->only_user);
	else if ((r = read_users(&p)) >= 0)
		r = read_groups(&p);
	if (r < 0)
		goto out;
	r = 0;
out:
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "Google pull: %s", ids_strerror(r));
	ids_oauth_free(p.o);
	ids_oauth_http_done(ctx, cc->name, p.h);
	ids_google_key_clear(&p.key);
	ids_strv_free(&p.group_ids);
	free(p.api);
	free(p.scope_param);
	return r;
}

/* check-config: the service account key, read and parsed as a pull
 * reads it, its private key loadable, and a token endpoint to send the
 * grant to. */
static int google_check(const struct ids_connector_cfg *cc, const struct ids_config *config,
			struct ids_error *err)
{
	const struct ids_pull_ctx ctx = {.config = config};
	struct pull p = {.cc = cc, .gc = &cc->google, .ctx = &ctx, .err = err};
	int r;
	if ((r = read_key(&p)) < 0)
		goto out;
	if ((r = ids_jwt_check_key(p.key.private_key, p.key.private_key_len, err)) < 0) {
		ids_error_prefix(err, "service account key %s", p.gc->service_account_file);
		goto out;
	}
	if (!p.gc->token_endpoint && !p.key.token_uri)
		r = ids_error_set(
		    err, IDS_E_CONFIG,
		    "service account key %s has no token_uri and no token_endpoint is configured",
		    p.gc->service_account_file);
out:
	ids_google_key_clear(&p.key);
	return r;
}

const struct ids_connector_ops ids_google_connector = {
    .type = "google",
    .pull = google_pull,
    .check = google_check,
};
