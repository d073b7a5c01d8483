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
 * A targeted read (`sync --user`, explain: ctx->only_user) reads instead
 *   GET {graph}/users/{id or userPrincipalName}?$select=…
 *   GET {graph}/users?$filter=mail eq '…'&$select=id   when that is a 404
 *   GET {graph}/users/{id}/transitiveMemberOf/microsoft.graph.group?…
 * the same user properties and the same groups (ids, displayName, mail,
 * scoped alike), so the rules see what a full read shows them.
 *
 * Rules this file keeps, and why:
 * - All or nothing: any failed page fails the pull (Graph's error.code and
 *   error.message in err), and the caller throws the snapshot away.
 * - The token, the authorized GET and the page loop are the shared
 *   bearer layer's (oauth.h): paging follows @odata.nextLink, an absolute
 *   URL, only while it stays on the graph_endpoint's origin (the bearer
 *   token goes with it); this file keeps the URLs, the client assertion's
 *   claims and the page parsers (graph.h).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ids/graph.h"
#include "ids/http.h"
#include "ids/image.h"
#include "ids/jwt.h"
#include "ids/oauth.h"
#include "ids/secret.h"

#define ASSERTION_LIFETIME 600 /* seconds: Entra accepts at most 10 minutes */

struct pull {
	const struct ids_connector_cfg *cc;
	const struct ids_entra_cfg *ec;
	const struct ids_pull_ctx *ctx;
	struct ids_snapshot *s;
	struct ids_http *h;
	struct ids_oauth *o;

	char *graph;		   /* graph_endpoint without a trailing '/' */
	char *origin;		   /* scheme://host[:port] of graph_endpoint */
	char *token_url;	   /* {login}/{tenant}/oauth2/v2.0/token */
	char *scope;		   /* {origin}/.default */
	char *thumbprint;	   /* x5t#S256 or x5t of the certificate; NULL for a secret */
	struct ids_strv group_ids; /* groups in scope, whose members are read */
	size_t pages;		   /* delta rounds: pages read */
};

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

static int setup_endpoints(struct pull *p, struct ids_error *err)
{
	const struct ids_entra_cfg *ec = p->ec;
	struct ids_buf b = {0};
	char *login = NULL;
	int r;
	if (!(p->graph = ids_oauth_url_base(ec->graph_endpoint)) ||
	    !(login = ids_oauth_url_base(ec->login_endpoint))) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = origin_of(p->graph, &p->origin)) < 0) {
		r = ids_error_set(err, IDS_E_CONFIG, "graph_endpoint %s is not a URL", ec->graph_endpoint);
		goto out;
	}
	if ((r = ids_buf_printf(&b, "%s/", login)) < 0 || (r = ids_http_urlencode(&b, ec->tenant)) < 0 ||
	    (r = ids_buf_puts(&b, "/oauth2/v2.0/token")) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	p->token_url = ids_buf_steal(&b);
	if ((r = ids_buf_printf(&b, "%s/.default", p->origin)) < 0) {
		ids_error_set(err, r, "out of memory");
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

/* The claims of the client assertion (RFC 7523 as Entra reads them):
 * issuer and subject the app, audience the token endpoint, a fresh jti
 * (Entra refuses one it has seen), valid for ASSERTION_LIFETIME. */
static int assertion_claims(const struct pull *p, struct ids_buf *claims, struct ids_error *err)
{
	const struct ids_entra_cfg *ec = p->ec;
	char *jti = NULL;
	int r;
	if ((r = ids_jwt_jti(&jti)) < 0)
		return ids_error_set(err, r, "cannot make a random jti: %s", ids_strerror(r));
	long long now = (long long)time(NULL);
	if ((r = ids_buf_puts(claims, "{\"aud\":")) < 0 || (r = ids_buf_json_str(claims, p->token_url)) < 0 ||
	    (r = ids_buf_puts(claims, ",\"iss\":")) < 0 ||
	    (r = ids_buf_json_str(claims, ec->client_id)) < 0 ||
	    (r = ids_buf_puts(claims, ",\"sub\":")) < 0 ||
	    (r = ids_buf_json_str(claims, ec->client_id)) < 0 ||
	    (r = ids_buf_puts(claims, ",\"jti\":")) < 0 || (r = ids_buf_json_str(claims, jti)) < 0 ||
	    (r = ids_buf_printf(claims, ",\"nbf\":%lld,\"iat\":%lld,\"exp\":%lld}", now, now,
				now + ASSERTION_LIFETIME)) < 0)
		ids_error_set(err, r, "out of memory");
	free(jti);
	return r;
}

/* The signed client assertion of the certificate credential.  *ret new
 * (a bearer credential for ten minutes: wipe it). */
static int client_assertion(struct pull *p, char **ret, struct ids_error *err)
{
	const struct ids_entra_cfg *ec = p->ec;
	bool rs256 = ec->client_assertion_alg && !strcmp(ec->client_assertion_alg, "RS256");
	bool readable = p->ctx && p->ctx->config && p->ctx->config->security.allow_readable_secrets;
	struct ids_buf hdr = {0}, claims = {0};
	char *key = NULL;
	size_t key_len = 0;
	int r;

	if (!p->thumbprint &&
	    (r = ids_jwt_thumbprint(ec->client_certificate_file, !rs256, &p->thumbprint, err)) < 0)
		goto out;
	/* PS256 + x5t#S256 is what Microsoft documents now; RS256 + x5t (SHA-1)
	 * is the older form some deployments still expect */
	if ((r = ids_buf_printf(&hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"%s\":", rs256 ? "RS256" : "PS256",
				rs256 ? "x5t" : "x5t#S256")) < 0 ||
	    (r = ids_buf_json_str(&hdr, p->thumbprint)) < 0 || (r = ids_buf_putc(&hdr, '}')) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	if ((r = assertion_claims(p, &claims, err)) < 0)
		goto out;
	/* read at every renewal, through the one secret reader: a key that
	 * vanished or became readable since the config was loaded is a
	 * configuration error, as it is for every other secret */
	if ((r = ids_secret_read(ec->client_key_file, IDS_SECRET_MAX, readable, &key, &key_len, err)) < 0)
		goto out;
	if ((r = ids_jwt_sign(rs256 ? "RS256" : "PS256", hdr.p, claims.p, key, key_len, ret, err)) < 0)
		ids_error_prefix(err, "%s", ec->client_key_file);
out:
	ids_secret_free(key);
	ids_buf_free(&hdr);
	ids_buf_free(&claims);
	return r;
}

/* The bearer layer's grant: client credentials with the certificate's
 * signed assertion, or with the client secret. */
static int grant(void *ud, struct ids_buf *body, struct ids_error *err)
{
	struct pull *p = ud;
	const struct ids_entra_cfg *ec = p->ec;
	char *assertion = NULL;
	int r;
	if (ec->client_certificate_file && (r = client_assertion(p, &assertion, err)) < 0)
		return r;
	if (!assertion && (!ec->client_secret || !*ec->client_secret)) {
		r = ids_error_set(err, IDS_E_CONFIG, "the client secret in %s is empty",
				  ec->client_secret_file ? ec->client_secret_file : "client_secret_file");
		goto out;
	}
	if ((r = ids_buf_puts(body, "grant_type=client_credentials&client_id=")) < 0 ||
	    (r = ids_http_urlencode(body, ec->client_id)) < 0 || (r = ids_buf_puts(body, "&scope=")) < 0 ||
	    (r = ids_http_urlencode(body, p->scope)) < 0)
		goto oom;
	if (assertion) {
		if ((r = ids_buf_puts(body, "&client_assertion_type=")) < 0 ||
		    (r = ids_http_urlencode(body, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")) <
			0 ||
		    (r = ids_buf_puts(body, "&client_assertion=")) < 0 ||
		    (r = ids_http_urlencode(body, assertion)) < 0)
			goto oom;
	} else if ((r = ids_buf_puts(body, "&client_secret=")) < 0 ||
		   (r = ids_http_urlencode(body, ec->client_secret)) < 0) {
		goto oom;
	}
	r = 0;
	goto out;
oom:
	ids_error_set(err, r, "out of memory");
out:
	ids_secret_free(assertion);
	return r;
}

static int id_str(struct ids_buf *id, const char *s)
{
	return ids_oauth_id_add(id, s, s ? strlen(s) : 0);
}

/* The token cache's key material (oauth.h): what, changed by a reload or
 * a rotated key file, must not reuse a token.  The key file is read here
 * as at every renewal, through the one secret reader. */
static int identity(void *ud, struct ids_buf *id, struct ids_error *err)
{
	struct pull *p = ud;
	const struct ids_entra_cfg *ec = p->ec;
	bool readable = p->ctx && p->ctx->config && p->ctx->config->security.allow_readable_secrets;
	char *key = NULL;
	size_t key_len = 0;
	int r;
	if (ec->client_key_file &&
	    (r = ids_secret_read(ec->client_key_file, IDS_SECRET_MAX, readable, &key, &key_len, err)) < 0)
		return r;
	if ((r = id_str(id, p->cc->name)) < 0 || (r = id_str(id, ec->tenant)) < 0 ||
	    (r = id_str(id, ec->client_id)) < 0 || (r = id_str(id, p->scope)) < 0 ||
	    (r = id_str(id, ec->client_secret)) < 0 || (r = id_str(id, ec->client_certificate_file)) < 0 ||
	    (r = id_str(id, ec->client_assertion_alg)) < 0 || (r = ids_oauth_id_add(id, key, key_len)) < 0)
		ids_error_set(err, r, "out of memory");
	ids_secret_free(key);
	return r;
}

/* The bearer layer's error words: Graph's {"error":{"code","message"}}
 * or the identity platform's {"error","error_description"} as "CODE:
 * MESSAGE", and Graph's innerError request id. */
static int error_text(const struct ids_http_resp *resp, char **ret_text, char **ret_request_id)
{
	char *code = NULL, *msg = NULL;
	struct ids_buf b = {0};
	int r = ids_graph_parse_error(resp->body.p ? resp->body.p : "", resp->body.len, &code, &msg,
				      ret_request_id);
	if (r >= 0)
		r = code || msg
			? ids_buf_printf(&b, "%s: %s", code ? code : "(no code)", msg ? msg : "(no message)")
			: ids_buf_printf(&b, "without an error body (content-type %s)",
					 resp->content_type ? resp->content_type : "none");
	if (r >= 0)
		*ret_text = ids_buf_steal(&b);
	ids_buf_free(&b);
	free(code);
	free(msg);
	return r < 0 ? -ENOMEM : 0;
}

/* ---------------- the listings ---------------- */

/* One listing's page parser and what it needs besides the page. */
struct listing {
	struct pull *p;
	const void *arg;
};

/* The next link out of a parsed page, for the bearer layer. */
static int next_of(int r, struct ids_graph_page *pg, char **ret_next)
{
	if (r >= 0) {
		*ret_next = pg->next_link;
		pg->next_link = NULL;
	}
	ids_graph_page_clear(pg);
	return r;
}

static int users_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const struct listing *l = ud;
	struct ids_graph_page pg = {0};
	return next_of(ids_graph_parse_users(body, len, l->arg, l->p->s, &pg, err), &pg, ret_next);
}

static int groups_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const struct listing *l = ud;
	struct ids_graph_page pg = {0};
	bool *matched = (bool *)l->arg;
	return next_of(ids_graph_parse_groups(body, len, &l->p->ec->groups, l->p->s, &l->p->group_ids,
					      matched, &pg, err),
		       &pg, ret_next);
}

static int members_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const struct listing *l = ud;
	struct ids_graph_page pg = {0};
	return next_of(ids_graph_parse_members(body, len, l->arg, l->p->s, &pg, err), &pg, ret_next);
}

static int read_users(struct pull *p, struct ids_error *err)
{
	struct ids_graph_user_map m = {(const char *const *)p->cc->attr, p->ctx ? p->ctx->rule_attrs : NULL};
	struct listing l = {p, &m};
	struct ids_buf url = {0};
	int r;
	if ((r = ids_buf_printf(&url, "%s/users?$select=", p->graph)) < 0 ||
	    (r = ids_graph_user_select(&url, &m)) < 0 || (r = ids_buf_puts(&url, "&$top=999")) < 0) {
		ids_buf_free(&url);
		return ids_error_set(err, r, "out of memory");
	}
	r = ids_oauth_list(p->o, url.p, "users", users_page, &l, &p->s->pages, err);
	ids_buf_free(&url);
	return r;
}

/* The members of every group in scope, each its own listing. */
static int read_members(struct pull *p, struct ids_error *err)
{
	struct ids_buf url = {0}, what = {0};
	int r = 0;
	for (size_t i = 0; i < p->group_ids.n && r >= 0; i++) {
		const char *id = p->group_ids.v[i];
		struct listing l = {p, id};
		ids_buf_reset(&url);
		ids_buf_reset(&what);
		if ((r = ids_buf_printf(&url, "%s/groups/", p->graph)) < 0 ||
		    (r = ids_http_urlencode(&url, id)) < 0 ||
		    (r = ids_buf_puts(&url, "/transitiveMembers/microsoft.graph.user?$select=id&$top=999")) <
			0 ||
		    (r = ids_buf_printf(&what, "members of group %s", id)) < 0) {
			ids_error_set(err, r, "out of memory");
			break;
		}
		r = ids_oauth_list(p->o, url.p, what.p, members_page, &l, &p->s->pages, err);
	}
	ids_buf_free(&url);
	ids_buf_free(&what);
	return r;
}

static int read_groups(struct pull *p, struct ids_error *err)
{
	const struct ids_strv *scope = &p->ec->groups;
	bool *matched = NULL;
	struct ids_buf url = {0};
	int r;
	if (scope->n && !(matched = calloc(scope->n, sizeof(bool)))) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	struct listing l = {p, matched};
	if ((r = ids_buf_printf(&url, "%s/groups?$select=id,displayName,mail&$top=999", p->graph)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	if ((r = ids_oauth_list(p->o, url.p, "groups", groups_page, &l, &p->s->pages, err)) < 0)
		goto out;
	for (size_t i = 0; i < scope->n; i++)
		if (!matched[i]) {
			r = ids_error_set(
			    err, IDS_E_INVALID,
			    "groups: \"%s\" (in the connector's groups:) matches no group's displayName "
			    "or id",
			    scope->v[i]);
			goto out;
		}
	r = read_members(p, err);
out:
	free(matched);
	ids_buf_free(&url);
	return r;
}

/* ---------------- one person (sync --user, explain) ---------------- */

/* GET /users/{key}, key an id or a userPrincipalName (Graph takes
 * either in the path): the user into the snapshot, *uid new (its id), or
 * NULL when Graph answers 404 Request_ResourceNotFound.  Any other 404
 * (a wrong graph_endpoint, a proxy's page) is an error: "not found" must
 * come from Graph itself. */
static int get_user(struct pull *p, const struct ids_graph_user_map *m, const char *key, char **uid,
		    struct ids_error *err)
{
	struct ids_buf url = {0}, what = {0};
	struct ids_http_resp resp = {0};
	char *code = NULL, *msg = NULL;
	int r;
	*uid = NULL;
	if ((r = ids_buf_printf(&url, "%s/users/", p->graph)) < 0 ||
	    (r = ids_http_urlencode(&url, key)) < 0 || (r = ids_buf_puts(&url, "?$select=")) < 0 ||
	    (r = ids_graph_user_select(&url, m)) < 0 || (r = ids_buf_printf(&what, "user %s", key)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	r = ids_oauth_get(p->o, url.p, what.p, &resp, err);
	p->s->pages++;
	if (r < 0 && resp.status == 404 &&
	    ids_graph_parse_error(resp.body.p ? resp.body.p : "", resp.body.len, &code, &msg, NULL) >= 0 &&
	    code && !strcmp(code, "Request_ResourceNotFound")) {
		ids_error_clear(err);
		r = 0;
		goto out;
	}
	if (r >= 0 &&
	    (r = ids_graph_parse_user(resp.body.p ? resp.body.p : "", resp.body.len, m, p->s, uid, err)) < 0)
		ids_error_prefix(err, "%s", what.p);
out:
	ids_http_resp_clear(&resp);
	ids_buf_free(&url);
	ids_buf_free(&what);
	free(code);
	free(msg);
	return r;
}

static int ids_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	struct ids_graph_page pg = {0};
	return next_of(ids_graph_parse_ids(body, len, ud, &pg, err), &pg, ret_next);
}

/* The id of the user whose e-mail property (the mapped one when it is a
 * top-level property, else mail) equals who: $filter with who as an OData
 * string literal (single quotes doubled), URL-encoded.  *uid new, NULL
 * when nobody has it; two users with it are an error (which one?). */
static int find_by_mail(struct pull *p, const char *who, char **uid, struct ids_error *err)
{
	const char *prop = p->cc->attr[IDS_F_EMAIL];
	struct ids_buf url = {0}, f = {0}, what = {0};
	struct ids_strv ids = {0};
	size_t pages = 0;
	int r;
	*uid = NULL;
	if (!prop || strchr(prop, '.'))
		prop = "mail";
	r = ids_buf_printf(&f, "%s eq '", prop);
	for (const char *c = who; r >= 0 && *c; c++)
		r = *c == '\'' ? ids_buf_puts(&f, "''") : ids_buf_putc(&f, *c);
	if (r < 0 || (r = ids_buf_putc(&f, '\'')) < 0 ||
	    (r = ids_buf_printf(&url, "%s/users?$filter=", p->graph)) < 0 ||
	    (r = ids_http_urlencode(&url, f.p)) < 0 || (r = ids_buf_puts(&url, "&$select=id&$top=999")) < 0 ||
	    (r = ids_buf_printf(&what, "users with %s %s", prop, who)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	if ((r = ids_oauth_list(p->o, url.p, what.p, ids_page, &ids, &pages, err)) < 0)
		goto out;
	p->s->pages += pages;
	if (ids.n > 1)
		r = ids_error_set(err, IDS_E_INVALID, "%s: %zu users, expected one", what.p, ids.n);
	else if (ids.n == 1 && !(*uid = strdup(ids.v[0])))
		r = ids_error_set(err, -ENOMEM, "out of memory");
out:
	ids_strv_free(&ids);
	ids_buf_free(&url);
	ids_buf_free(&f);
	ids_buf_free(&what);
	return r;
}

/* The groups of user uid, nested ones included (Graph resolves
 * transitiveMemberOf itself, as transitiveMembers in a full read), in
 * scope as a full read scopes them, and the user a member of each.  The
 * `groups:` entries that match no group cannot be checked from here: the
 * full runs keep failing on a typo there. */
static int read_member_of(struct pull *p, const char *uid, struct ids_error *err)
{
	struct ids_buf url = {0}, what = {0};
	struct listing l = {p, NULL};
	int r;
	if ((r = ids_buf_printf(&url, "%s/users/", p->graph)) < 0 ||
	    (r = ids_http_urlencode(&url, uid)) < 0 ||
	    (r = ids_buf_puts(&url, "/transitiveMemberOf/microsoft.graph.group"
				    "?$select=id,displayName,mail&$top=999")) < 0 ||
	    (r = ids_buf_printf(&what, "groups of user %s", uid)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	if ((r = ids_oauth_list(p->o, url.p, what.p, groups_page, &l, &p->s->pages, err)) < 0)
		goto out;
	for (size_t i = 0; i < p->group_ids.n && r >= 0; i++)
		if ((r = ids_snapshot_member(p->s, p->group_ids.v[i], IDS_REF_ID, uid, strlen(uid))) < 0)
			ids_error_set(err, r, "%s", ids_strerror(r));
out:
	ids_buf_free(&url);
	ids_buf_free(&what);
	return r;
}

/* `sync --user`, explain: the one person ctx->only_user names (an id or
 * userPrincipalName by the key lookup, else an e-mail by $filter) and
 * their groups.  Nobody found: an empty snapshot, which the caller
 * reports as "not found" (and deactivates no one). */
static int read_one(struct pull *p, const char *who, struct ids_error *err)
{
	struct ids_graph_user_map m = {(const char *const *)p->cc->attr, p->ctx->rule_attrs};
	char *uid = NULL, *id = NULL;
	int r = get_user(p, &m, who, &uid, err);
	if (r >= 0 && !uid && strchr(who, '@') && (r = find_by_mail(p, who, &id, err)) >= 0 && id)
		r = get_user(p, &m, id, &uid, err);
	if (r >= 0 && uid)
		r = read_member_of(p, uid, err);
	free(uid);
	free(id);
	return r;
}

/* The endpoints, the HTTP client and the bearer layer of one pull. */
static int pull_open(struct pull *p, struct ids_error *err)
{
	int r;
	if ((r = setup_endpoints(p, err)) < 0 ||
	    (r = ids_oauth_http_new(p->ec->tls_ca_file, p->ec->timeout, p->ctx, p->cc->name, &p->h, err)) < 0)
		return r;
	const struct ids_oauth_cfg oc = {
	    .service = "Graph",
	    .token_url = p->token_url,
	    .http = p->h,
	    .grant = grant,
	    .identity = identity,
	    .tokens = p->ctx ? p->ctx->tokens : NULL,
	    .error_text = error_text,
	    .link_origin = p->origin,
	    .next_name = "@odata.nextLink",
	    .ctx = p->ctx,
	    .ud = p,
	};
	if ((r = ids_oauth_new(&oc, &p->o)) < 0)
		return ids_error_set(err, r, "out of memory");
	return 0;
}

static void pull_close(struct pull *p)
{
	ids_oauth_free(p->o);
	ids_oauth_http_done(p->ctx, p->cc ? p->cc->name : NULL, p->h);
	ids_strv_free(&p->group_ids);
	free(p->graph);
	free(p->origin);
	free(p->token_url);
	free(p->scope);
	free(p->thumbprint);
}

static int entra_pull(const struct ids_connector_cfg *cc, const struct ids_pull_ctx *ctx,
		      struct ids_snapshot *s, struct ids_error *err)
{
	struct pull p = {.cc = cc, .ec = &cc->entra, .ctx = ctx, .s = s};
	int r;
	s->pages = 0;
	if ((r = pull_open(&p, err)) < 0)
		;
	else if (ctx && ctx->only_user)
		r = read_one(&p, ctx->only_user, err);
	else if ((r = read_users(&p, err)) >= 0)
		r = read_groups(&p, err);
	pull_close(&p);
	return r < 0 ? r : 0;
}

/* ---------------- delta queries (issue 15) ----------------
 *
 * GET {graph}/users/delta?$select=…  and  {graph}/groups/delta?$select=
 * id,displayName,mail,members, each followed to its @odata.deltaLink; the
 * two deltaLinks are the cursor (graph.h: ids_graph_cursor).  Users go
 * into the image as they come; a groups round is collected whole and
 * applied at its end (graph.h: ids_graph_gdelta).  A round without a
 * stored link is a full read through the same endpoints: the image's
 * present phase removes what it did not send. */

/* Graph's words for "this delta token is no good any more": 410 Gone (with
 * a Location to start again from), or the sync-state error codes. */
static bool state_lost(const struct ids_http_resp *resp)
{
	char *code = NULL, *msg = NULL;
	bool lost = resp->status == 410;
	if (!lost && resp->status >= 400 && resp->status < 500 &&
	    ids_graph_parse_error(resp->body.p ? resp->body.p : "", resp->body.len, &code, &msg, NULL) >= 0 &&
	    code)
		lost = !strcmp(code, "syncStateNotFound") || !strcmp(code, "syncStateInvalid") ||
		       !strcmp(code, "resyncRequired");
	free(code);
	free(msg);
	return lost;
}

struct round {
	struct pull *p;
	const struct ids_graph_user_map *m;
	struct ids_image *img;
	struct ids_graph_gdelta *gd; /* the groups round; NULL: users */
	char *delta_link;	     /* new: where the next round starts */
	size_t changes;
};

static int delta_page(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	struct round *rd = ud;
	struct ids_graph_delta_page pg = {0};
	int r = rd->gd ? ids_graph_parse_groups_delta(body, len, rd->gd, &pg, err)
		       : ids_graph_parse_users_delta(body, len, rd->m, rd->img, &pg, err);
	if (r >= 0) {
		rd->changes += pg.changes;
		*ret_next = pg.next_link;
		pg.next_link = NULL;
		free(rd->delta_link);
		rd->delta_link = pg.delta_link;
		pg.delta_link = NULL;
	}
	ids_graph_delta_page_clear(&pg);
	return r;
}

/* A link from the cursor or a page: on the graph_endpoint's origin only
 * (the bearer token goes with it). */
static int link_ok(const struct pull *p, const char *link, const char *what, struct ids_error *err)
{
	size_t n = strlen(p->origin);
	if (strncasecmp(link, p->origin, n) != 0 || link[n] != '/')
		return ids_error_set(err, IDS_E_PROTOCOL, "%s: a delta link leaves %s: refused", what,
				     p->origin);
	return 0;
}

#define STATE_LOST 1 /* round(): the delta link is no good: read everything */

/* One round from url to its deltaLink.  The first request is made here, so
 * that a lost delta state is told apart (STATE_LOST, err cleared); the
 * pages after it go through the bearer layer's page loop. */
static int round_run(struct round *rd, const char *url, const char *what, struct ids_error *err)
{
	struct pull *p = rd->p;
	struct ids_http_resp resp = {0};
	char *next = NULL;
	int r;
	if ((r = link_ok(p, url, what, err)) < 0)
		return r;
	if ((r = ids_oauth_get(p->o, url, what, &resp, err)) < 0) {
		if (state_lost(&resp)) {
			ids_error_clear(err);
			r = STATE_LOST;
		}
		goto out;
	}
	p->pages++;
	if ((r = delta_page(rd, resp.body.p ? resp.body.p : "", resp.body.len, &next, err)) < 0)
		goto out;
	ids_http_resp_clear(&resp);
	if (next && (r = link_ok(p, next, what, err)) >= 0)
		r = ids_oauth_list(p->o, next, what, delta_page, rd, &p->pages, err);
	if (r >= 0 && !rd->delta_link)
		r = ids_error_set(err, IDS_E_PROTOCOL, "%s: the round ended without an @odata.deltaLink",
				  what);
out:
	ids_http_resp_clear(&resp);
	free(next);
	return r < 0 ? r : (r == STATE_LOST ? STATE_LOST : 0);
}

/* What a round starts from: the stored link, or the listing itself. */
struct feed {
	struct pull *p;
	struct ids_feed_pull *fp;
	struct ids_graph_user_map m;
	struct ids_buf users_url, groups_url; /* the first request of a full round */
	char *fingerprint;
	struct ids_graph_cursor c;
};

/* The $selects (baked into the links) and their fingerprint: with the
 * groups: scope, which decides what the image holds of each group, and
 * the endpoint the links point at. */
static int feed_setup(struct feed *f, struct ids_error *err)
{
	struct pull *p = f->p;
	struct ids_buf fp = {0};
	int r;
	f->m =
	    (struct ids_graph_user_map){(const char *const *)p->cc->attr, p->ctx ? p->ctx->rule_attrs : NULL};
	if ((r = ids_buf_printf(&f->users_url, "%s/users/delta?$select=", p->graph)) < 0 ||
	    (r = ids_graph_user_select(&f->users_url, &f->m)) < 0 ||
	    (r = ids_buf_printf(&f->groups_url, "%s/groups/delta?$select=id,displayName,mail,members",
				p->graph)) < 0 ||
	    (r = ids_buf_printf(&fp, "%s\n%s", f->users_url.p, f->groups_url.p)) < 0)
		goto out;
	for (size_t i = 0; i < p->ec->groups.n && r >= 0; i++)
		r = ids_buf_printf(&fp, "\n%s", p->ec->groups.v[i]);
	if (r >= 0) {
		char hex[17];
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)ids_hash64(fp.p, fp.len));
		r = (f->fingerprint = strdup(hex)) ? 0 : -ENOMEM;
	}
out:
	ids_buf_free(&fp);
	return r < 0 ? ids_error_set(err, r, "out of memory") : 0;
}

/* The stored cursor, or why it cannot be used (*ret_reason new).  No
 * cursor at all is no reset: the first read. */
static int feed_cursor(struct feed *f, char **ret_reason)
{
	const struct ids_feed_pull *fp = f->fp;
	*ret_reason = NULL;
	if (!fp->cursor)
		return 0;
	int r = ids_graph_cursor_parse(fp->cursor, fp->cursor_len, &f->c);
	if (r == -EINVAL)
		return (*ret_reason = strdup("the stored cursor is not one this version reads")) ? 0
												 : -ENOMEM;
	if (r < 0)
		return r;
	return ids_graph_cursor_check(&f->c, f->fingerprint, (long long)time(NULL), ret_reason);
}

/* Both rounds, from the stored links or (full) from the listings. */
static int feed_rounds(struct feed *f, bool full, struct ids_error *err)
{
	struct ids_image *img = f->fp->image;
	struct round u = {.p = f->p, .m = &f->m, .img = img};
	struct round g = {.p = f->p, .img = img};
	size_t touched = 0;
	int r;
	if (full)
		ids_image_present_begin(img);
	if ((r = round_run(&u, full ? f->users_url.p : f->c.users_link, "users delta", err)) != 0)
		goto out;
	if (full && (r = ids_image_present_end(img, IDS_IMAGE_USERS, NULL)) < 0)
		goto oom;
	if ((r = ids_graph_gdelta_new(&g.gd)) < 0)
		goto oom;
	if ((r = round_run(&g, full ? f->groups_url.p : f->c.groups_link, "groups delta", err)) != 0)
		goto out;
	if (full)
		ids_image_present_begin(img);
	if ((r = ids_graph_gdelta_apply(g.gd, img, &f->p->ec->groups, full, &f->c, &touched, err)) < 0)
		goto out;
	if (full && (r = ids_image_present_end(img, IDS_IMAGE_GROUPS, NULL)) < 0)
		goto oom;
	f->fp->changes = u.changes + touched;
	free(f->c.users_link);
	free(f->c.groups_link);
	f->c.users_link = u.delta_link;
	f->c.groups_link = g.delta_link;
	u.delta_link = g.delta_link = NULL;
	f->c.at = (long long)time(NULL);
	goto out;
oom:
	r = ids_error_set(err, r, "out of memory");
out:
	free(u.delta_link);
	free(g.delta_link);
	ids_graph_gdelta_free(g.gd);
	return r;
}

/* The rounds, and the cursor they end at.  A stored cursor that cannot be
 * used, or a delta state Graph lost, means a full round in the same run:
 * logged and counted by the caller through fp->reset_reason. */
static int feed_read(struct feed *f, struct ids_error *err)
{
	char *reason = NULL;
	int r = feed_cursor(f, &reason);
	if (r < 0)
		return ids_error_set(err, r, "out of memory");
	if ((r = feed_rounds(f, !f->fp->cursor || reason, err)) == STATE_LOST) {
		free(reason);
		reason =
		    strdup("Graph no longer knows the stored delta state (410 Gone or syncStateNotFound)");
		r = reason ? feed_rounds(f, true, err) : ids_error_set(err, -ENOMEM, "out of memory");
	}
	if (r == STATE_LOST) /* even without a link: not a state we can fix */
		r = ids_error_set(err, IDS_E_SERVER,
				  "delta: Graph refused a first delta round as lost state");
	long k = r >= 0 ? ids_graph_scope_unmatched(&f->c, &f->p->ec->groups) : -1;
	if (k >= 0)
		r = ids_error_set(
		    err, IDS_E_INVALID,
		    "groups: \"%s\" (in the connector's groups:) matches no group's displayName or id",
		    f->p->ec->groups.v[k]);
	free(f->c.fingerprint);
	f->c.fingerprint = NULL;
	if (r >= 0 && !(f->c.fingerprint = strdup(f->fingerprint)))
		r = ids_error_set(err, -ENOMEM, "out of memory");
	if (r >= 0 && (r = ids_graph_cursor_write(&f->c, &f->fp->new_cursor, &f->fp->new_cursor_len)) < 0)
		ids_error_set(err, r, "out of memory");
	if (r < 0) {
		free(reason);
		return r;
	}
	f->fp->reset_reason = reason;
	return 0;
}

static int entra_pull_changes(const struct ids_connector_cfg *cc, const struct ids_pull_ctx *ctx,
			      struct ids_feed_pull *fp, struct ids_error *err)
{
	struct pull p = {.cc = cc, .ec = &cc->entra, .ctx = ctx};
	struct feed f = {.p = &p, .fp = fp};
	int r;
	if ((r = pull_open(&p, err)) >= 0 && (r = feed_setup(&f, err)) >= 0)
		r = feed_read(&f, err);
	ids_buf_free(&f.users_url);
	ids_buf_free(&f.groups_url);
	free(f.fingerprint);
	ids_graph_cursor_clear(&f.c);
	pull_close(&p);
	return r < 0 ? r : 0;
}

/* check-config: the certificate and its key, as the first token request
 * will read them.  A client secret was read by the config loader. */
static int entra_check(const struct ids_connector_cfg *cc, const struct ids_config *config,
		       struct ids_error *err)
{
	const struct ids_entra_cfg *ec = &cc->entra;
	bool readable = config && config->security.allow_readable_secrets;
	char *key = NULL;
	size_t n = 0;
	int r;
	if (!ec->client_certificate_file)
		return 0;
	if ((r = ids_secret_read(ec->client_key_file, IDS_SECRET_MAX, readable, &key, &n, err)) < 0)
		return r;
	r = ids_jwt_check_pair(ec->client_certificate_file, ec->client_key_file, key, n, err);
	ids_secret_free(key);
	return r;
}

const struct ids_connector_ops ids_entra_connector = {
    .type = "entra",
    .pull = entra_pull,
    .check = entra_check,
    .pull_changes = entra_pull_changes,
};
