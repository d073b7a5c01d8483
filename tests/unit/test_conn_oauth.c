/* test_conn_oauth.c — the bearer layer both cloud connectors use
 * (oauth.h), driven through its request hook by a scripted server: no
 * network.  Pinned here are the three behaviours whose copies drifted
 * apart before there was one layer — a token answer without expires_in
 * (one lifetime, never a renewal per second), and a malformed page naming
 * its request id in both paging styles (the vanished key file is
 * test_conn_entra's test_vanished_key) — and the rest of the contract:
 * one renewal on 401, no JSON no page, loops, the page cap, progress. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ids/connector.h"
#include "ids/oauth.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---------------- the token answer ---------------- */

static void test_parse_token(void **state)
{
	struct ids_error e = {0};
	char *tok = NULL;
	long exp = -1;
	assert_int_equal(ids_oauth_parse_token(S("{\"access_token\":\"ya29.abc\",\"expires_in\":3599,"
						 "\"token_type\":\"Bearer\"}"),
					       &tok, &exp, &e),
			 0);
	assert_string_equal(tok, "ya29.abc");
	assert_int_equal(exp, 3599);
	ids_secret_free(tok);
	/* a number as a string (proxies, older ADFS); token_type any case */
	assert_int_equal(ids_oauth_parse_token(S("{\"access_token\":\"t\",\"expires_in\":\"3600\","
						 "\"token_type\":\"bearer\"}"),
					       &tok, &exp, &e),
			 0);
	assert_int_equal(exp, 3600);
	ids_secret_free(tok);
	/* says nothing about its lifetime: absent, null and 0 alike */
	static const char *const silent[] = {"{\"access_token\":\"t\"}",
					     "{\"access_token\":\"t\",\"expires_in\":null}",
					     "{\"access_token\":\"t\",\"expires_in\":0}"};
	for (size_t i = 0; i < 3; i++) {
		exp = -1;
		assert_int_equal(ids_oauth_parse_token(silent[i], strlen(silent[i]), &tok, &exp, &e), 0);
		assert_int_equal(exp, 0);
		ids_secret_free(tok);
	}
	/* a claim of years is a day */
	assert_int_equal(
	    ids_oauth_parse_token(S("{\"access_token\":\"t\",\"expires_in\":99999999}"), &tok, &exp, &e), 0);
	assert_int_equal(exp, 86400);
	ids_secret_free(tok);

	tok = NULL;
	static const char *const bad[] = {
	    "{}",
	    "{\"token_type\":\"Bearer\",\"expires_in\":3599}",
	    "{\"access_token\":\"\"}",
	    "{\"access_token\":7}",
	    "{\"access_token\":\"a b\"}",
	    "{\"access_token\":\"a\\r\\nX-Evil: 1\"}",
	    "{\"access_token\":\"a\\u0000b\"}",
	    "{\"access_token\":\"t\",\"token_type\":\"mac\"}",
	    "{\"access_token\":\"t\",\"expires_in\":\"soon\"}",
	    "{\"access_token\":\"t\",\"expires_in\":-5}",
	    "{\"access_token\":\"t\",\"expires_in\":true}",
	    "{\"access_token\":\"t\",\"access_token\":\"u\"}",
	    "<html>",
	    "[\"access_token\"]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ids_oauth_parse_token(bad[i], strlen(bad[i]), &tok, &exp, &e),
				 IDS_E_PROTOCOL);
		assert_null(tok);
		ids_error_clear(&e);
	}
	/* a cut answer: the position, nothing of the token */
	assert_int_equal(ids_oauth_parse_token(S("{\"access_token\":\"eyJ0eXAiOiJKV1Qi"), &tok, &exp, &e),
			 IDS_E_PROTOCOL);
	assert_string_equal(e.msg, "token answer: not JSON (line 1, column 33)");
	ids_error_clear(&e);
}

static void test_renew_after(void **state)
{
	/* no lifetime given: kept 600 s, renewed after 300 — the same for
	 * Entra and Google (one kept it 600 s, the other renewed every
	 * second) */
	assert_int_equal(ids_oauth_renew_after(0), 300);
	/* a normal token: 300 s before it expires */
	assert_int_equal(ids_oauth_renew_after(3599), 3299);
	/* short-lived: halfway, so a page in flight still finds it valid */
	assert_int_equal(ids_oauth_renew_after(4), 2);
	assert_int_equal(ids_oauth_renew_after(600), 300);
	assert_int_equal(ids_oauth_renew_after(1), 1);
	/* a day at most */
	assert_int_equal(ids_oauth_renew_after(1000000), 86400 - 300);
}

/* ---------------- a scripted server ---------------- */

/* One answer of the script. */
struct answer {
	long status;
	const char *content_type;
	const char *body;
	const char *request_id;
};

struct server {
	const struct answer *api; /* answers to GETs, in order; the last repeats */
	size_t napi, gets;
	const struct answer *token; /* the answer to every POST */
	size_t posts;
	char last_url[512];
	char last_auth[128];
	bool endless; /* GETs answer page after page, each with a new token */
};

static struct server srv;

static int fake_request(struct ids_http *h, const char *method, const char *url, const char *const *headers,
			const char *body, size_t body_len,
			bool (*is_retryable)(const struct ids_http_resp *r), struct ids_http_resp *resp,
			struct ids_error *err)
{
	struct answer a;
	char page[128];
	ids_http_resp_clear(resp);
	if (!strcmp(method, "POST")) {
		srv.posts++;
		a = *srv.token;
	} else {
		snprintf(srv.last_url, sizeof(srv.last_url), "%s", url);
		snprintf(srv.last_auth, sizeof(srv.last_auth), "%s", headers[0]);
		if (srv.endless) {
			snprintf(page, sizeof(page), "{\"next\":\"t%zu\"}", srv.gets);
			a = (struct answer){200, "application/json", page, NULL};
		} else {
			a = srv.api[srv.gets < srv.napi ? srv.gets : srv.napi - 1];
		}
		srv.gets++;
	}
	resp->status = a.status;
	if (a.content_type)
		resp->content_type = strdup(a.content_type);
	if (a.request_id)
		resp->request_id = strdup(a.request_id);
	ids_buf_puts(&resp->body, a.body);
	return 0;
}

static int grant(void *ud, struct ids_buf *body, struct ids_error *err)
{
	return ids_buf_puts(body, "grant_type=client_credentials&client_secret=s3cret");
}

static int error_text(const struct ids_http_resp *resp, char **ret_text, char **ret_request_id)
{
	*ret_request_id = NULL;
	*ret_text = strdup(resp->body.p ? resp->body.p : "");
	return *ret_text ? 0 : -ENOMEM;
}

/* A page: {"next": TOKEN-or-absent}, anything else is not understood. */
static int page_fn(void *ud, const char *body, size_t len, char **ret_next, struct ids_error *err)
{
	const char *k = strstr(body, "\"next\":\"");
	if (strncmp(body, "{", 1) != 0)
		return ids_error_set(err, IDS_E_PROTOCOL, "items: not a page");
	if (!k) {
		*ret_next = NULL;
		return 0;
	}
	k += 8;
	*ret_next = strndup(k, strcspn(k, "\""));
	return 0;
}

static const struct answer token_ok = {200, "application/json",
				       "{\"access_token\":\"tok1\",\"token_type\":\"Bearer\"}", NULL};

/* A layer in Graph's style (absolute next links on one origin) or
 * Google's (page tokens, numbered pages). */
static struct ids_oauth *layer(bool links)
{
	struct ids_oauth_cfg c = {
	    .service = links ? "Graph" : "Google",
	    .token_url = "https://login.example/token",
	    .grant = grant,
	    .error_text = error_text,
	    .link_origin = links ? "https://api.example" : NULL,
	    .token_param = links ? NULL : "pageToken",
	    .next_name = links ? "@odata.nextLink" : "nextPageToken",
	    .number_pages = !links,
	    .request = fake_request,
	};
	struct ids_oauth *o = NULL;
	assert_int_equal(ids_oauth_new(&c, &o), 0);
	return o;
}

static void script(const struct answer *api, size_t n)
{
	memset(&srv, 0, sizeof(srv));
	srv.api = api;
	srv.napi = n;
	srv.token = &token_ok;
}

/* ---------------- the page loop ---------------- */

static void test_pages_both_styles(void **state)
{
	static const struct answer graph[] = {
	    {200, "application/json", "{\"next\":\"https://api.example/users?skip=2\"}", "r1"},
	    {200, "application/json; odata.metadata=minimal", "{}", "r2"},
	};
	static const struct answer google[] = {
	    {200, "application/json", "{\"next\":\"a b&c\"}", NULL},
	    {200, "application/json", "{}", NULL},
	};
	struct ids_error e = {0};
	size_t pages = 0;
	struct ids_oauth *o = layer(true);
	script(graph, 2);
	assert_int_equal(
	    ids_oauth_list(o, "https://api.example/users?$top=2", "users", page_fn, NULL, &pages, &e), 0);
	assert_int_equal(pages, 2);
	assert_string_equal(srv.last_url, "https://api.example/users?skip=2");
	assert_string_equal(srv.last_auth, "Authorization: Bearer tok1");
	assert_int_equal(srv.posts, 1);
	ids_oauth_free(o);

	o = layer(false);
	script(google, 2);
	pages = 0;
	assert_int_equal(
	    ids_oauth_list(o, "https://api.example/users?max=1", "users", page_fn, NULL, &pages, &e), 0);
	assert_int_equal(pages, 2);
	/* the token goes encoded into the listing's own URL */
	assert_string_equal(srv.last_url, "https://api.example/users?max=1&pageToken=a%20b%26c");
	ids_oauth_free(o);
}

/* Drift 3: an unparsable page names its request id in both styles (one
 * connector did, the other did not). */
static void test_malformed_page_names_request_id(void **state)
{
	static const struct answer pages_[] = {
	    {200, "application/json", "{\"next\":\"https://api.example/p2\"}", "req-1"},
	    {200, "application/json", "not a page", "req-2"},
	};
	for (int links = 0; links < 2; links++) {
		struct ids_error e = {0};
		size_t pages = 0;
		struct ids_oauth *o = layer(links);
		script(pages_, 2);
		assert_int_equal(
		    ids_oauth_list(o, "https://api.example/p1", "users", page_fn, NULL, &pages, &e),
		    IDS_E_PROTOCOL);
		assert_string_equal(e.msg, links ? "items: not a page (request-id req-2)"
						 : "users: page 2: items: not a page (request-id req-2)");
		assert_int_equal(pages, 1);
		ids_error_clear(&e);
		ids_oauth_free(o);
	}
}

static void test_loops_and_origin(void **state)
{
	static const struct answer loop[] = {
	    {200, "application/json", "{\"next\":\"https://api.example/p2\"}", NULL},
	    {200, "application/json", "{\"next\":\"https://api.example/p3\"}", NULL},
	    {200, "application/json", "{\"next\":\"https://api.example/p2\"}", NULL},
	};
	static const struct answer away[] = {
	    {200, "application/json", "{\"next\":\"https://api.example.evil/p2\"}", NULL},
	};
	struct ids_error e = {0};
	size_t pages = 0;
	struct ids_oauth *o = layer(true);
	script(loop, 3);
	assert_int_equal(ids_oauth_list(o, "https://api.example/p1", "users", page_fn, NULL, &pages, &e),
			 IDS_E_PROTOCOL);
	assert_string_equal(e.msg, "users: paging loop: page 3's @odata.nextLink repeats an earlier one");
	ids_error_clear(&e);
	/* the bearer token must not follow a link to another host */
	script(away, 1);
	assert_int_equal(ids_oauth_list(o, "https://api.example/p1", "users", page_fn, NULL, &pages, &e),
			 IDS_E_PROTOCOL);
	assert_string_equal(e.msg, "users: @odata.nextLink leaves https://api.example: refused");
	assert_int_equal(srv.gets, 1);
	ids_error_clear(&e);
	ids_oauth_free(o);
}

static void test_page_cap(void **state)
{
	struct ids_error e = {0};
	size_t pages = 0;
	struct ids_oauth *o = layer(false);
	script(NULL, 0);
	srv.endless = true;
	assert_int_equal(ids_oauth_list(o, "https://api.example/p", "users", page_fn, NULL, &pages, &e),
			 IDS_E_LIMIT);
	assert_string_equal(e.msg, "users: more than 100000 pages");
	assert_int_equal(pages, IDS_OAUTH_MAX_PAGES);
	ids_error_clear(&e);
	ids_oauth_free(o);
}

static int stop_at_2(void *ud)
{
	int *calls = ud;
	return ++*calls > 2 ? IDS_E_CANCELLED : 0;
}

static void test_progress_stops(void **state)
{
	struct ids_error e = {0};
	size_t pages = 0;
	int calls = 0;
	const struct ids_pull_ctx ctx = {.progress = stop_at_2, .ud = &calls};
	struct ids_oauth_cfg c = {.service = "Google",
				  .token_url = "https://login.example/token",
				  .grant = grant,
				  .error_text = error_text,
				  .token_param = "pageToken",
				  .next_name = "nextPageToken",
				  .ctx = &ctx,
				  .request = fake_request};
	struct ids_oauth *o = NULL;
	assert_int_equal(ids_oauth_new(&c, &o), 0);
	script(NULL, 0);
	srv.endless = true;
	assert_int_equal(ids_oauth_list(o, "https://api.example/p", "users", page_fn, NULL, &pages, &e),
			 IDS_E_CANCELLED);
	assert_string_equal(e.msg, "users: stopped after 2 pages: cancelled");
	ids_error_clear(&e);
	ids_oauth_free(o);
}

/* ---------------- the authorized GET ---------------- */

static void test_401_renews_once(void **state)
{
	static const struct answer once[] = {
	    {401, "application/json", "expired", "r1"},
	    {200, "application/json", "{}", "r2"},
	};
	static const struct answer always[] = {
	    {401, "application/json", "InvalidAuthenticationToken", "r9"},
	};
	struct ids_error e = {0};
	struct ids_http_resp resp = {0};
	struct ids_oauth *o = layer(true);
	script(once, 2);
	assert_int_equal(ids_oauth_get(o, "https://api.example/u", "users", &resp, &e), 0);
	assert_int_equal(srv.posts, 2);
	script(always, 1);
	assert_int_equal(ids_oauth_get(o, "https://api.example/u", "users", &resp, &e), IDS_E_AUTH);
	assert_string_equal(e.msg, "users: Graph 401 InvalidAuthenticationToken (request-id r9)");
	/* the cached token, then one renewal: no more */
	assert_int_equal(srv.posts, 1);
	assert_int_equal(srv.gets, 2);
	ids_error_clear(&e);
	ids_http_resp_clear(&resp);
	ids_oauth_free(o);
}

static void test_200_not_json(void **state)
{
	static const struct answer html[] = {{200, "text/html", "<html>sign in</html>", "r5"}};
	struct ids_error e = {0};
	struct ids_http_resp resp = {0};
	struct ids_oauth *o = layer(false);
	script(html, 1);
	assert_int_equal(ids_oauth_get(o, "https://api.example/u", "users: page 1", &resp, &e),
			 IDS_E_PROTOCOL);
	assert_string_equal(e.msg,
			    "users: page 1: Google answered 200 with text/html, not JSON (request-id r5)");
	ids_error_clear(&e);
	ids_http_resp_clear(&resp);
	ids_oauth_free(o);
}

static void test_token_refused(void **state)
{
	static const struct answer refused = {401, "application/json", "invalid_client: bad secret", "t1"};
	static const struct answer api[] = {{200, "application/json", "{}", NULL}};
	struct ids_error e = {0};
	struct ids_http_resp resp = {0};
	struct ids_oauth *o = layer(true);
	script(api, 1);
	srv.token = &refused;
	assert_int_equal(ids_oauth_get(o, "https://api.example/u", "users", &resp, &e), IDS_E_AUTH);
	assert_string_equal(
	    e.msg,
	    "token endpoint https://login.example/token: 401 invalid_client: bad secret (request-id t1)");
	assert_int_equal(srv.gets, 0);
	ids_error_clear(&e);
	ids_oauth_free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_token),	      cmocka_unit_test(test_renew_after),
	    cmocka_unit_test(test_pages_both_styles), cmocka_unit_test(test_malformed_page_names_request_id),
	    cmocka_unit_test(test_loops_and_origin),  cmocka_unit_test(test_page_cap),
	    cmocka_unit_test(test_progress_stops),    cmocka_unit_test(test_401_renews_once),
	    cmocka_unit_test(test_200_not_json),      cmocka_unit_test(test_token_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
