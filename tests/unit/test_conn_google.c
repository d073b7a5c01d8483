/* test_conn_google.c — the pure parts of the Google connector
 * (connectors/google_int.h) on pages shaped like the Directory API's: the
 * service account key, the token answer, Google's error shape and its rate
 * limits, the attribute path resolver, the `fields=` selector, and the
 * users / groups / members page parsers feeding a real snapshot builder.
 * No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../connectors/google_int.h"

#define S(lit) lit, sizeof(lit) - 1 /* a literal and its length */

/* A key-shaped PEM: the parser checks the armour, not the RSA inside. */
#define PEM "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n"

/* ---------------- service account key ---------------- */

static void test_key_ok(void **state)
{
	(void)state;
	struct ids_google_key k = {0};
	struct ids_error e = {0};
	const char json[] =
	    "{\"type\":\"service_account\",\"project_id\":\"p\",\"private_key_id\":\"abc123\","
	    "\"private_key\":\"" PEM "\",\"client_email\":\"sync@p.iam.gserviceaccount.com\","
	    "\"client_id\":\"1\",\"token_uri\":\"https://oauth2.googleapis.com/token\"}";
	assert_int_equal(ids_google_key_parse(json, sizeof(json) - 1, "/k.json", &k, &e), 0);
	assert_string_equal(k.client_email, "sync@p.iam.gserviceaccount.com");
	assert_string_equal(k.private_key_id, "abc123");
	assert_string_equal(k.token_uri, "https://oauth2.googleapis.com/token");
	/* JSON's \n became real newlines */
	assert_string_equal(
	    k.private_key,
	    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n");
	assert_int_equal(k.private_key_len, strlen(k.private_key));
	ids_google_key_clear(&k);
	assert_null(k.private_key);
	ids_google_key_clear(NULL);

	/* no type, no token_uri: both optional */
	const char minimal[] =
	    "{\"private_key_id\":\"x\",\"private_key\":\"" PEM "\",\"client_email\":\"a@b\"}";
	assert_int_equal(ids_google_key_parse(minimal, sizeof(minimal) - 1, "/k.json", &k, &e), 0);
	assert_null(k.token_uri);
	ids_google_key_clear(&k);
	ids_error_clear(&e);
}

static void test_key_errors(void **state)
{
	(void)state;
	static const struct {
		const char *json, *why;
	} cases[] = {
	    {"", "malformed JSON"},
	    {"{\"private_key\":\"" PEM "\"", "malformed JSON"},
	    {"[1]", "expected a JSON object"},
	    {"{\"type\":\"authorized_user\",\"private_key_id\":\"x\",\"private_key\":\"" PEM
	     "\",\"client_email\":\"a\"}",
	     "\"type\" is not \"service_account\""},
	    {"{\"private_key_id\":\"x\",\"private_key\":\"" PEM "\"}", "no \"client_email\""},
	    {"{\"private_key_id\":\"x\",\"client_email\":\"a\"}", "no \"private_key\""},
	    {"{\"private_key\":\"" PEM "\",\"client_email\":\"a\"}", "no \"private_key_id\""},
	    {"{\"private_key_id\":\"\",\"private_key\":\"" PEM "\",\"client_email\":\"a\"}",
	     "no \"private_key_id\""},
	    {"{\"private_key_id\":\"x\",\"private_key\":\"c2VjcmV0LWJ5dGVz\",\"client_email\":\"a\"}",
	     "not a PEM private key"},
	    {"{\"private_key_id\":\"x\",\"private_key\":\"" PEM "\",\"client_email\":\"a\",\"token_uri\":5}",
	     "\"token_uri\" is not a string"},
	    /* two private keys: which one is meant? */
	    {"{\"private_key_id\":\"x\",\"private_key\":\"" PEM "\",\"private_key\":\"" PEM
	     "\",\"client_email\":\"a\"}",
	     "malformed JSON"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ids_google_key k = {.client_email = NULL};
		struct ids_error e = {0};
		int r = ids_google_key_parse(cases[i].json, strlen(cases[i].json), "/etc/idsyncd/sa.json", &k,
					     &e);
		assert_int_equal(r, IDS_E_CONFIG);
		assert_non_null(e.msg);
		/* the message names the file, says what is wrong, and quotes no key */
		assert_non_null(strstr(e.msg, "/etc/idsyncd/sa.json"));
		if (!strstr(e.msg, cases[i].why))
			fail_msg("case %zu: [%s] lacks [%s]", i, e.msg, cases[i].why);
		assert_null(strstr(e.msg, "MIIEvQ"));
		assert_null(strstr(e.msg, "c2VjcmV0"));
		assert_null(k.client_email); /* ret untouched */
		ids_error_clear(&e);
	}
}

/* ---------------- token and errors ---------------- */

static void test_error_message(void **state)
{
	(void)state;
	char *m = NULL;
	assert_int_equal(
	    ids_google_error_message(S("{\"error\":{\"code\":403,\"message\":\"Not Authorized to "
				       "access this resource/api\",\"errors\":[{\"message\":\"x\","
				       "\"domain\":\"global\",\"reason\":\"forbidden\"}]}}"),
				     &m),
	    0);
	assert_string_equal(m, "Not Authorized to access this resource/api (forbidden)");
	free(m);
	/* no errors[]: the status word stands in for the reason */
	assert_int_equal(
	    ids_google_error_message(S("{\"error\":{\"code\":404,\"message\":\"Resource Not Found: "
				       "groupKey\",\"status\":\"NOT_FOUND\"}}"),
				     &m),
	    0);
	assert_string_equal(m, "Resource Not Found: groupKey (NOT_FOUND)");
	free(m);
	assert_int_equal(
	    ids_google_error_message(S("{\"error\":\"invalid_grant\",\"error_description\":\"Invalid "
				       "JWT Signature.\"}"),
				     &m),
	    0);
	assert_string_equal(m, "invalid_grant: Invalid JWT Signature.");
	free(m);
	assert_int_equal(ids_google_error_message(S("<html><body>Bad Gateway</body></html>"), &m), 0);
	assert_string_equal(m, "no error details (not JSON)");
	free(m);
	assert_int_equal(ids_google_error_message(NULL, 0, &m), 0);
	assert_string_equal(m, "no error details (not JSON)");
	free(m);
	/* a server's control characters never reach the log as such */
	assert_int_equal(ids_google_error_message(S("{\"error\":{\"message\":\"a\\nb\\u001b[31m\"}}"), &m),
			 0);
	assert_string_equal(m, "a?b?[31m");
	free(m);
	/* and its length is bounded */
	char big[2000];
	int n = snprintf(big, sizeof(big), "{\"error\":{\"message\":\"%01000d\"}}", 0);
	assert_int_equal(ids_google_error_message(big, (size_t)n, &m), 0);
	assert_int_equal(strlen(m), 300);
	free(m);
	/* cut before a character that would straddle the bound, not inside
	 * it: the message goes to sync_run.error, which takes only UTF-8
	 * (found by fuzz_google) */
	n = snprintf(big, sizeof(big), "{\"error\":{\"message\":\"%0299d\u00e9\"}}", 0);
	assert_int_equal(ids_google_error_message(big, (size_t)n, &m), 0);
	assert_int_equal(strlen(m), 299);
	assert_true(ids_utf8_valid(m, strlen(m)));
	free(m);
	n = snprintf(big, sizeof(big), "{\"error\":{\"message\":\"%0298d\u00e9\"}}", 0);
	assert_int_equal(ids_google_error_message(big, (size_t)n, &m), 0);
	assert_int_equal(strlen(m), 300);
	assert_string_equal(m + 298, "\xc3\xa9");
	free(m);
}

static void test_rate_limited(void **state)
{
	(void)state;
	const char rl[] =
	    "{\"error\":{\"code\":403,\"message\":\"Rate Limit Exceeded\",\"errors\":[{\"domain\":"
	    "\"usageLimits\",\"reason\":\"rateLimitExceeded\"}]}}";
	const char url[] = "{\"error\":{\"code\":403,\"errors\":[{\"reason\":\"userRateLimitExceeded\"}]}}";
	const char quota[] = "{\"error\":{\"code\":403,\"errors\":[{\"reason\":\"quotaExceeded\"}]}}";
	const char forbidden[] = "{\"error\":{\"code\":403,\"errors\":[{\"reason\":\"forbidden\"}]}}";
	assert_true(ids_google_rate_limited(403, S(rl)));
	assert_true(ids_google_rate_limited(403, S(url)));
	assert_false(ids_google_rate_limited(403, S(quota)));
	assert_false(ids_google_rate_limited(403, S(forbidden)));
	/* the reason only counts on a 403: a 400 with it is a plain error */
	assert_false(ids_google_rate_limited(400, S(rl)));
	assert_true(ids_google_rate_limited(429, NULL, 0));
	assert_false(ids_google_rate_limited(403, S("<html>")));
	assert_false(ids_google_rate_limited(404, NULL, 0));
}

/* ---------------- attribute paths ---------------- */

/* Collects values as "a|b|c". */
static int collect(void *ud, const char *v, size_t n)
{
	struct ids_buf *b = ud;
	if (b->len && ids_buf_putc(b, '|') < 0)
		return -ENOMEM;
	return ids_buf_add(b, v, n);
}

static char *values(const json_t *root, const char *path, int *ret_r)
{
	static char out[512];
	struct ids_buf b = {0};
	*ret_r = ids_google_path_values(root, path, collect, &b);
	snprintf(out, sizeof(out), "%s", b.p ? b.p : "");
	ids_buf_free(&b);
	return out;
}

static void test_paths(void **state)
{
	(void)state;
	const char doc[] =
	    "{\"id\":\"101\",\"orgUnitPath\":\"/Support/CZ\",\"suspended\":false,\"agentNo\":42,"
	    "\"ratio\":0.5,\"name\":{\"givenName\":\"Jan\",\"familyName\":\"Novák\"},"
	    "\"organizations\":[{\"department\":\"Support\",\"title\":\"Agent\"},"
	    "{\"department\":\"Sales\"},{\"title\":\"x\"}],"
	    "\"emails\":[{\"address\":\"a@x\",\"primary\":true},{\"address\":\"b@x\"}],"
	    "\"customSchemas\":{\"Contact_Center\":{\"tenant\":\"support-cz\","
	    "\"skills\":[{\"type\":\"work\",\"value\":\"voice\"},{\"type\":\"custom\",\"value\":\"chat\"}],"
	    "\"levels\":[1,2],\"nested\":[[\"no\"]],\"empty\":null}},"
	    "\"nums\":[\"n0\",\"n1\"],\"deep\":{\"a\":{\"b\":{\"c\":\"d\"}}}}";
	json_t *root = json_loads(doc, 0, NULL);
	assert_non_null(root);
	int r;
	static const struct {
		const char *path, *want;
	} cases[] = {
	    {"id", "101"},
	    {"orgUnitPath", "/Support/CZ"},
	    {"suspended", "false"},
	    {"agentNo", "42"},
	    {"ratio", "0.5"},
	    {"name.givenName", "Jan"},
	    {"name.familyName", "Novák"},
	    {"organizations.0.department", "Support"},
	    {"organizations.1.department", "Sales"},
	    {"organizations.2.department", ""},		   /* element without it */
	    {"organizations.3.department", ""},		   /* past the end */
	    {"organizations.department", "Support|Sales"}, /* every element */
	    {"emails.address", "a@x|b@x"},
	    {"emails.1.address", "b@x"},
	    {"customSchemas.Contact_Center.tenant", "support-cz"},
	    {"customSchemas.Contact_Center.skills", "voice|chat"}, /* multi-valued custom field */
	    {"customSchemas.Contact_Center.skills.1", "chat"},
	    {"customSchemas.Contact_Center.levels", "1|2"},
	    {"customSchemas.Contact_Center.nested", ""}, /* arrays in arrays: not values */
	    {"customSchemas.Contact_Center.empty", ""},
	    {"customSchemas.Other.tenant", ""},
	    {"nums", "n0|n1"},
	    {"nums.1", "n1"},
	    {"name", ""}, /* an object is not a value */
	    {"deep.a.b.c", "d"},
	    {"orgUnitPath.x", ""}, /* through a string */
	    {"OrgUnitPath", ""},   /* Google's names are case-sensitive */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = values(root, cases[i].path, &r);
		assert_int_equal(r, 0);
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("%s: expected [%s], got [%s]", cases[i].path, cases[i].want, got);
	}
	/* invalid paths are refused, not resolved */
	static const char *const invalid[] = {
	    "", ".a", "a.", "a..b", "a b", "a/b", "a(b)", "a,b", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q"};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		assert_false(ids_google_path_valid(invalid[i]));
		values(root, invalid[i], &r);
		assert_int_equal(r, -EINVAL);
	}
	assert_true(ids_google_path_valid("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p")); /* 16 segments */
	assert_true(ids_google_path_valid("customSchemas.Contact_Center.tenant-2"));
	json_decref(root);
}

/* fn's error stops the walk and comes back. */
static int refuse(void *ud, const char *v, size_t n)
{
	(*(int *)ud)++;
	return -E2BIG;
}

static void test_path_stop(void **state)
{
	(void)state;
	json_t *root = json_loads("{\"a\":[\"x\",\"y\",\"z\"]}", 0, NULL);
	int calls = 0;
	assert_int_equal(ids_google_path_values(root, "a", refuse, &calls), -E2BIG);
	assert_int_equal(calls, 1);
	json_decref(root);
}

static void test_fields(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	assert_int_equal(ids_google_fields_path(&b, "organizations.0.department"), 0);
	assert_string_equal(b.p, "organizations/department");
	ids_buf_reset(&b);
	assert_int_equal(ids_google_fields_path(&b, "customSchemas.Contact_Center.tenant"), 0);
	assert_string_equal(b.p, "customSchemas/Contact_Center/tenant");
	ids_buf_reset(&b);
	assert_int_equal(ids_google_fields_path(&b, "orgUnitPath"), 0);
	assert_string_equal(b.p, "orgUnitPath");
	ids_buf_reset(&b);

	/* the defaults alone: no projection=full */
	struct ids_google_umap m = {{NULL}, NULL};
	memcpy(m.field, ids_google_default_fields, sizeof(m.field));
	bool full = true;
	assert_int_equal(ids_google_users_fields(&m, &b, &full), 0);
	assert_string_equal(
	    b.p, "nextPageToken,users(id,primaryEmail,name/givenName,name/familyName,name/fullName,"
		 "suspended,archived)");
	assert_false(full);
	ids_buf_reset(&b);

	/* rule attributes and an overridden username: added once each */
	struct ids_strv attrs = {0};
	assert_int_equal(ids_strv_push(&attrs, "orgUnitPath"), 0);
	assert_int_equal(ids_strv_push(&attrs, "organizations.0.department"), 0);
	assert_int_equal(ids_strv_push(&attrs, "organizations.1.department"), 0);
	assert_int_equal(ids_strv_push(&attrs, "customSchemas.Contact_Center.tenant"), 0);
	m.field[IDS_F_USERNAME] = "externalIds.0.value";
	m.attrs = &attrs;
	assert_int_equal(ids_google_users_fields(&m, &b, &full), 0);
	assert_string_equal(
	    b.p, "nextPageToken,users(id,primaryEmail,name/givenName,name/familyName,name/fullName,"
		 "suspended,archived,externalIds/value,orgUnitPath,organizations/department,"
		 "customSchemas/Contact_Center/tenant)");
	assert_true(full);
	assert_null(ids_google_umap_check(&m));

	/* an LDAP-style name no Google field can have */
	assert_int_equal(ids_strv_push(&attrs, "member;range=0-1"), 0);
	assert_string_equal(ids_google_umap_check(&m), "member;range=0-1");
	ids_buf_reset(&b);
	assert_int_equal(ids_google_users_fields(&m, &b, &full), -EINVAL);
	ids_strv_free(&attrs);
	ids_buf_free(&b);
}

/* ---------------- pages ---------------- */

static struct ids_snapshot *snap_new(void)
{
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	return s;
}

static const struct ids_user *find_user(const struct ids_snapshot *s, const char *id)
{
	for (size_t i = 0; i < s->nusers; i++)
		if (s->users[i].f[IDS_F_EXTERNAL_ID] && strcmp(s->users[i].f[IDS_F_EXTERNAL_ID], id) == 0)
			return &s->users[i];
	fail_msg("no user %s", id);
	return NULL;
}

static const char *attr_of(const struct ids_user *u, const char *name)
{
	static char buf[256];
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < u->nattrs; i++)
		if (strcmp(u->attrs[i].name, name) == 0)
			for (size_t j = 0; j < u->attrs[i].nvalues; j++)
				n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", j ? "|" : "",
						      u->attrs[i].values[j]);
	return buf;
}

/* The user's groups' ids, "a,b", in snapshot order. */
static const char *groups_of(const struct ids_snapshot *s, const struct ids_user *u)
{
	static char buf[256];
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < u->ngroups; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "",
				      s->groups[u->groups[i]].id);
	return buf;
}

static const char users_page[] =
    "{\"nextPageToken\":\"Q2FmZQ\","
    "\"users\":["
    "{\"id\":\"103\",\"primaryEmail\":\"jan.novak@corp.example\",\"name\":{\"givenName\":\"Jan\","
    "\"familyName\":\"Novák\",\"fullName\":\"Jan Novák\"},\"suspended\":false,\"archived\":false,"
    "\"orgUnitPath\":\"/Support/CZ\",\"organizations\":[{\"department\":\"Support\"}],"
    "\"customSchemas\":{\"Contact_Center\":{\"tenant\":\"support-cz\"}}},"
    "{\"id\":\"101\",\"primaryEmail\":\"eve@corp.example\",\"name\":{\"givenName\":\"Eve\"},\"suspended\":"
    "true,"
    "\"orgUnitPath\":\"/Sales\"},"
    "{\"id\":\"102\",\"primaryEmail\":\"old@corp.example\",\"archived\":true},"
    "{\"id\":\"104\",\"primaryEmail\":\"nul@corp.example\",\"name\":{\"familyName\":\"a\\u0000b\"}}"
    "]}";

static void test_users_page(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	struct ids_error e = {0};
	struct ids_google_page pg = {0};
	struct ids_strv attrs = {0};
	assert_int_equal(ids_strv_push(&attrs, "orgUnitPath"), 0);
	assert_int_equal(ids_strv_push(&attrs, "organizations.0.department"), 0);
	assert_int_equal(ids_strv_push(&attrs, "customSchemas.Contact_Center.tenant"), 0);
	struct ids_google_umap m = {{NULL}, &attrs};
	memcpy(m.field, ids_google_default_fields, sizeof(m.field));

	assert_int_equal(ids_google_parse_users(S(users_page), &m, s, &pg, &e), 0);
	assert_string_equal(pg.next, "Q2FmZQ");
	assert_int_equal(pg.items, 4);
	ids_google_page_clear(&pg);

	/* case 9: a page without users but with a token is not the end */
	assert_int_equal(ids_google_parse_users(S("{\"nextPageToken\":\"b\"}"), &m, s, &pg, &e), 0);
	assert_string_equal(pg.next, "b");
	assert_int_equal(pg.items, 0);
	ids_google_page_clear(&pg);
	/* last page: no token (an empty one counts as none) */
	assert_int_equal(ids_google_parse_users(S("{\"users\":[],\"nextPageToken\":\"\"}"), &m, s, &pg, &e),
			 0);
	assert_null(pg.next);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 4);

	const struct ids_user *jan = find_user(s, "103");
	assert_string_equal(jan->f[IDS_F_USERNAME], "jan.novak@corp.example");
	assert_string_equal(jan->f[IDS_F_EMAIL], "jan.novak@corp.example");
	assert_string_equal(jan->f[IDS_F_FIRST_NAME], "Jan");
	assert_string_equal(jan->f[IDS_F_LAST_NAME], "Novák");
	assert_string_equal(jan->f[IDS_F_DISPLAY_NAME], "Jan Novák");
	assert_false(jan->disabled);
	assert_null(jan->invalid);
	assert_string_equal(attr_of(jan, "orgUnitPath"), "/Support/CZ");
	assert_string_equal(attr_of(jan, "organizations.0.department"), "Support");
	assert_string_equal(attr_of(jan, "customSchemas.Contact_Center.tenant"), "support-cz");

	const struct ids_user *eve = find_user(s, "101");
	assert_true(eve->disabled); /* suspended */
	assert_null(eve->f[IDS_F_LAST_NAME]);
	assert_string_equal(attr_of(eve, "orgUnitPath"), "/Sales");
	assert_string_equal(attr_of(eve, "customSchemas.Contact_Center.tenant"), "");
	assert_true(find_user(s, "102")->disabled); /* archived */
	/* a NUL inside a name: that user is invalid, the page is fine */
	assert_non_null(find_user(s, "104")->invalid);
	ids_snapshot_free(s);
	ids_strv_free(&attrs);
	ids_error_clear(&e);
}

static void test_users_page_errors(void **state)
{
	(void)state;
	struct ids_google_umap m = {{NULL}, NULL};
	memcpy(m.field, ids_google_default_fields, sizeof(m.field));
	static const char *const bad[] = {
	    "",
	    "<!DOCTYPE html><html><body>Sign in</body></html>",	   /* HTML with a 200 */
	    "{\"users\":[{\"id\":\"1\",\"primaryEmail\":\"a@x\"}", /* truncated */
	    "[]",
	    "{\"users\":{\"id\":\"1\"}}",
	    "{\"users\":[\"1\"]}",
	    "{\"users\":[{\"id\":\"1\",\"suspended\":\"false\"}]}",
	    "{\"users\":[{\"id\":\"1\",\"archived\":1}]}",
	    "{\"users\":[],\"nextPageToken\":5}",
	    "{\"users\":[],\"users\":[]}", /* duplicate keys */
	    "{\"users\":[{\"id\":\"1\",\"suspended\":false,\"suspended\":true}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ids_snapshot *s = snap_new();
		struct ids_error e = {0};
		struct ids_google_page pg = {0};
		int r = ids_google_parse_users(bad[i], strlen(bad[i]), &m, s, &pg, &e);
		if (r != IDS_E_PROTOCOL)
			fail_msg("case %zu: expected IDS_E_PROTOCOL, got %d", i, r);
		assert_non_null(e.msg);
		assert_non_null(strstr(e.msg, "users page"));
		assert_null(pg.next);
		ids_error_clear(&e);
		ids_snapshot_free(s);
	}
	/* deeply nested JSON: refused by the parser's depth limit, no crash */
	size_t depth = 100000;
	char *deep = malloc(2 * depth + 1);
	assert_non_null(deep);
	memset(deep, '[', depth);
	memset(deep + depth, ']', depth);
	struct ids_snapshot *s = snap_new();
	struct ids_error e = {0};
	struct ids_google_page pg = {0};
	assert_int_equal(ids_google_parse_users(deep, 2 * depth, &m, s, &pg, &e), IDS_E_PROTOCOL);
	free(deep);
	ids_error_clear(&e);
	ids_snapshot_free(s);
}

static const char groups_page[] =
    "{\"groups\":["
    "{\"id\":\"g1\",\"email\":\"cc-support@corp.example\",\"name\":\"CC Support\"},"
    "{\"id\":\"g2\",\"email\":\"team-b@corp.example\",\"name\":\"Team B\"},"
    "{\"id\":\"g3\",\"email\":\"cc-admins@corp.example\",\"name\":\"CC Admins\"},"
    "{\"id\":\"g4\",\"email\":\"other@corp.example\"}"
    "],\"nextPageToken\":\"next\"}";

static void test_groups_page(void **state)
{
	(void)state;
	struct ids_error e = {0};
	struct ids_google_page pg = {0};
	struct ids_strv ids = {0};

	/* no scope: every group, name -> username field, e-mail */
	struct ids_snapshot *s = snap_new();
	assert_int_equal(ids_google_parse_groups(S(groups_page), NULL, NULL, s, &ids, &pg, &e), 0);
	assert_int_equal(pg.items, 4);
	assert_string_equal(pg.next, "next");
	assert_int_equal(ids.n, 4);
	assert_string_equal(ids.v[3], "g4");
	assert_int_equal(ids_snapshot_finish(s), 0);
	long g = ids_snapshot_group_by_id(s, "g1");
	assert_true(g >= 0);
	assert_string_equal(s->groups[g].name, "CC Support");
	assert_string_equal(s->groups[g].email, "cc-support@corp.example");
	assert_null(s->groups[ids_snapshot_group_by_id(s, "g4")].name);
	ids_snapshot_free(s);
	ids_strv_free(&ids);
	ids_google_page_clear(&pg);

	/* scope: an e-mail in another case, a name, an id, and one that names
	 * nothing on this page */
	struct ids_strv scope = {0};
	assert_int_equal(ids_strv_push(&scope, "CC-Support@Corp.Example"), 0);
	assert_int_equal(ids_strv_push(&scope, "cc admins"), 0);
	assert_int_equal(ids_strv_push(&scope, "g4"), 0);
	assert_int_equal(ids_strv_push(&scope, "nobody@corp.example"), 0);
	assert_int_equal(ids_strv_push(&scope, "G2"), 0); /* ids are exact */
	bool matched[5] = {false};
	s = snap_new();
	assert_int_equal(ids_google_parse_groups(S(groups_page), &scope, matched, s, &ids, &pg, &e), 0);
	assert_int_equal(pg.items, 4); /* items counts the page, not the scope */
	assert_int_equal(ids.n, 3);
	assert_string_equal(ids.v[0], "g1");
	assert_string_equal(ids.v[1], "g3");
	assert_string_equal(ids.v[2], "g4");
	assert_true(matched[0] && matched[1] && matched[2]);
	assert_false(matched[3] || matched[4]);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->ngroups, 3);
	assert_true(ids_snapshot_group_by_id(s, "g2") < 0);
	ids_snapshot_free(s);
	ids_strv_free(&ids);
	ids_strv_free(&scope);
	ids_google_page_clear(&pg);

	static const char *const bad[] = {"{\"groups\":[{\"email\":\"x@y\"}]}", "{\"groups\":[{\"id\":7}]}",
					  "{\"groups\":[{\"id\":\"g\",\"name\":[]}]}", "{\"groups\":5}",
					  "null"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = snap_new();
		assert_int_equal(
		    ids_google_parse_groups(bad[i], strlen(bad[i]), NULL, NULL, s, &ids, &pg, &e),
		    IDS_E_PROTOCOL);
		ids_error_clear(&e);
		ids_snapshot_free(s);
		ids_strv_free(&ids);
	}
}

/* Users 1..3, groups g1 (with nested g2 listed expanded) and g2: the
 * members pages as includeDerivedMembership=true gives them. */
static void test_members_page(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	struct ids_error e = {0};
	struct ids_google_page pg = {0};
	struct ids_google_umap m = {{NULL}, NULL};
	memcpy(m.field, ids_google_default_fields, sizeof(m.field));
	assert_int_equal(ids_google_parse_users(S("{\"users\":[{\"id\":\"u1\",\"primaryEmail\":\"a@x\"},"
						  "{\"id\":\"u2\",\"primaryEmail\":\"b@x\"},"
						  "{\"id\":\"u3\",\"primaryEmail\":\"c@x\"}]}"),
						&m, s, &pg, &e),
			 0);
	struct ids_strv ids = {0};
	assert_int_equal(ids_google_parse_groups(S("{\"groups\":[{\"id\":\"g1\",\"name\":\"G1\"},"
						   "{\"id\":\"g2\",\"name\":\"G2\"}]}"),
						 NULL, NULL, s, &ids, &pg, &e),
			 0);
	assert_int_equal(
	    ids_google_parse_members(S("{\"members\":[{\"id\":\"u1\",\"type\":\"USER\",\"status\":"
				       "\"ACTIVE\"},{\"id\":\"g2\",\"type\":\"GROUP\"},"
				       "{\"id\":\"u2\",\"type\":\"USER\",\"status\":\"ACTIVE\"},"
				       "{\"id\":\"c1\",\"type\":\"CUSTOMER\"},{\"type\":\"USER\"}],"
				       "\"nextPageToken\":\"p2\"}"),
				     "g1", s, &pg, &e),
	    0);
	assert_int_equal(pg.items, 5);
	assert_string_equal(pg.next, "p2");
	ids_google_page_clear(&pg);
	assert_int_equal(ids_google_parse_members(S("{}"), "g1", s, &pg, &e), 0); /* empty group */
	assert_int_equal(pg.items, 0);
	assert_null(pg.next);
	assert_int_equal(ids_google_parse_members(S("{\"members\":[{\"id\":\"u2\",\"type\":\"USER\"},"
						    "{\"id\":\"u-elsewhere\",\"type\":\"USER\"}]}"),
						  "g2", s, &pg, &e),
			 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	/* g2 was skipped as a member: only USER entries are memberships, so
	 * u1 is in g1 alone, not in g2 through a group edge */
	assert_string_equal(groups_of(s, find_user(s, "u1")), "g1");
	assert_string_equal(groups_of(s, find_user(s, "u2")), "g1,g2");
	assert_string_equal(groups_of(s, find_user(s, "u3")), "");
	assert_int_equal(s->groups[ids_snapshot_group_by_id(s, "g1")].nparents, 0);
	assert_int_equal(s->unresolved_members, 1); /* u-elsewhere */
	ids_snapshot_free(s);
	ids_strv_free(&ids);

	s = snap_new();
	static const char *const bad[] = {
	    "{\"members\":[\"u1\"]}", "{\"members\":[{\"id\":1,\"type\":\"USER\"}]}",
	    "{\"members\":[{\"id\":\"u1\",\"type\":true}]}", "{\"members\":{}}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ids_google_parse_members(bad[i], strlen(bad[i]), "g1", s, &pg, &e),
				 IDS_E_PROTOCOL);
		ids_error_clear(&e);
	}
	ids_snapshot_free(s);
}

/* users.get's answer and the walk's groups.list?userKey= pages (sync
 * --user): the user mapped as in a users page, its id returned; each group
 * once (seen), its e-mail (else id) the next key, the user a member of
 * the ones in scope only, while those out of scope are still walked (a
 * group above them may be in scope). */
static void test_user_and_groups(void **state)
{
	(void)state;
	struct ids_snapshot *s = snap_new();
	struct ids_error e = {0};
	struct ids_google_page pg = {0};
	struct ids_google_umap m = {{NULL}, NULL};
	memcpy(m.field, ids_google_default_fields, sizeof(m.field));
	char *id = NULL;
	assert_int_equal(
	    ids_google_parse_user(S("{\"id\":\"u1\",\"primaryEmail\":\"a@x\",\"suspended\":true}"), &m, s,
				  &id, &e),
	    0);
	assert_string_equal(id, "u1");
	free(id);
	id = NULL;
	assert_int_equal(ids_google_parse_user(S("{\"primaryEmail\":\"b@x\"}"), &m, s, &id, &e),
			 IDS_E_PROTOCOL);
	assert_null(id);
	ids_error_clear(&e);
	assert_int_equal(ids_google_parse_user(S("[1]"), &m, s, &id, &e), IDS_E_PROTOCOL);
	ids_error_clear(&e);

	struct ids_strv scope = {0}, seen = {0}, walk = {0};
	assert_int_equal(ids_strv_push(&scope, "Top"), 0);
	assert_int_equal(ids_strv_push(&scope, "g-noemail"), 0);
	/* the user's page: g1 (out of scope), g-noemail (in, by id) */
	assert_int_equal(ids_google_parse_user_groups(S("{\"groups\":[{\"id\":\"g1\",\"email\":\"g1@x\","
							"\"name\":\"Team\"},{\"id\":\"g-noemail\",\"name\":"
							"\"N\"}],\"nextPageToken\":\"t\"}"),
						      &scope, "u1", s, &seen, &walk, &pg, &e),
			 0);
	assert_string_equal(pg.next, "t");
	ids_google_page_clear(&pg);
	/* g1's page: top (in scope by name, ASCII case-insensitively), and
	 * g-noemail again (a diamond): not twice */
	assert_int_equal(
	    ids_google_parse_user_groups(S("{\"groups\":[{\"id\":\"gtop\",\"email\":\"top@x\","
					   "\"name\":\"TOP\"},{\"id\":\"g-noemail\",\"name\":\"N\"}]}"),
					 &scope, "u1", s, &seen, &walk, &pg, &e),
	    0);
	assert_null(pg.next);
	assert_int_equal(seen.n, 3);
	assert_int_equal(walk.n, 3);
	assert_string_equal(walk.v[0], "g1@x");
	assert_string_equal(walk.v[1], "g-noemail");
	assert_string_equal(walk.v[2], "top@x");
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->ngroups, 2);
	assert_string_equal(groups_of(s, find_user(s, "u1")), "g-noemail,gtop");
	ids_snapshot_free(s);

	s = snap_new();
	assert_int_equal(ids_google_parse_user_groups(S("{\"groups\":[{\"name\":\"no id\"}]}"), NULL, "u1", s,
						      &seen, &walk, &pg, &e),
			 IDS_E_PROTOCOL);
	ids_error_clear(&e);
	ids_snapshot_free(s);
	ids_strv_free(&scope);
	ids_strv_free(&seen);
	ids_strv_free(&walk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_ok),
	    cmocka_unit_test(test_key_errors),
	    cmocka_unit_test(test_error_message),
	    cmocka_unit_test(test_rate_limited),
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_path_stop),
	    cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_users_page),
	    cmocka_unit_test(test_users_page_errors),
	    cmocka_unit_test(test_groups_page),
	    cmocka_unit_test(test_members_page),
	    cmocka_unit_test(test_user_and_groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
