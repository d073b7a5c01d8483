/* test_conn_entra.c — the Graph page parsers (graph.h) on recorded pages:
 * users (fields, disabled, rule attributes, null properties), groups (the
 * `groups:` scope by name or id), transitive members, the token answer,
 * both error shapes, and every malformed page of reliability.md case 13
 * (whose messages quote none of the body), without a network.  Expected values come from the pages in
 * data/entra/, read by hand. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "ids/connector.h"
#include "ids/graph.h"

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *p = malloc(1 << 20);
	assert_non_null(p);
	size_t n = fread(p, 1, (1 << 20) - 1, f);
	fclose(f);
	p[n] = '\0';
	*ret_len = n;
	return p;
}

/* The Entra defaults of config.md: id, userPrincipalName, mail,
 * givenName, surname, displayName. */
static const char *const entra_attr[6] = {"id",	       "userPrincipalName", "mail",
					  "givenName", "surname",	    "displayName"};

static const struct ids_attr *attr_of(const struct ids_user *u, const char *name)
{
	for (size_t i = 0; i < u->nattrs; i++)
		if (!strcasecmp(u->attrs[i].name, name))
			return &u->attrs[i];
	return NULL;
}

static size_t nvalues(const struct ids_user *u, const char *name)
{
	const struct ids_attr *a = attr_of(u, name);
	return a ? a->nvalues : 0;
}

/* Parses a users page from a file into a new snapshot. */
static int users_file(const char *path, const struct ids_strv *rule_attrs, struct ids_snapshot **ret_s,
		      struct ids_graph_page *page, struct ids_error *e)
{
	size_t n;
	char *body = slurp(path, &n);
	struct ids_graph_user_map m = {entra_attr, rule_attrs};
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	int r = ids_graph_parse_users(body, n, &m, s, page, e);
	free(body);
	*ret_s = s;
	return r;
}

static void test_users_page(void **state)
{
	struct ids_strv ra = {0};
	assert_int_equal(ids_strv_push(&ra, "Department"), 0); /* the config's spelling, not Graph's */
	assert_int_equal(ids_strv_push(&ra, "proxyAddresses"), 0);
	struct ids_snapshot *s;
	struct ids_graph_page page = {0};
	struct ids_error e = {0};
	assert_int_equal(users_file("data/entra/users_page1.json", &ra, &s, &page, &e), 0);
	assert_int_equal(page.count, 3);
	assert_non_null(page.next_link);
	assert_string_equal(
	    page.next_link,
	    "https://graph.microsoft.com/v1.0/users?$select=id,accountEnabled,userPrincipalName,mail,"
	    "givenName,surname,displayName,department,proxyAddresses&$top=999&$skiptoken="
	    "RFNwdAIAAQAAACpVc2VyXzJkYzQ5");
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 3);

	/* sorted by id: 0c3a… (room), 5bde… (Jan), 87d3… (Adele) */
	const struct ids_user *room = &s->users[0], *jan = &s->users[1], *adele = &s->users[2];
	assert_string_equal(adele->f[IDS_F_EXTERNAL_ID], "87d349ed-44d7-43e1-9a83-5f2406dee5bd");
	assert_string_equal(adele->f[IDS_F_USERNAME], "AdeleV@contoso.onmicrosoft.com");
	assert_string_equal(adele->f[IDS_F_EMAIL], "AdeleV@contoso.onmicrosoft.com");
	assert_string_equal(adele->f[IDS_F_FIRST_NAME], "Adele");
	assert_string_equal(adele->f[IDS_F_LAST_NAME], "Vance");
	assert_string_equal(adele->f[IDS_F_DISPLAY_NAME], "Adele Vance");
	assert_false(adele->disabled);
	assert_null(adele->invalid);
	assert_int_equal(nvalues(adele, "department"), 1);
	assert_string_equal(attr_of(adele, "department")->values[0], "Retail");
	/* a string array: every value, in order */
	assert_int_equal(nvalues(adele, "proxyAddresses"), 2);
	assert_string_equal(attr_of(adele, "proxyAddresses")->values[0],
			    "SMTP:AdeleV@contoso.onmicrosoft.com");
	assert_string_equal(attr_of(adele, "proxyAddresses")->values[1], "smtp:adele@contoso.com");

	/* accountEnabled false: disabled; UTF-8 kept */
	assert_string_equal(jan->f[IDS_F_EXTERNAL_ID], "5bde3e51-d13b-4db1-9948-fe4b109d11a7");
	assert_true(jan->disabled);
	assert_string_equal(jan->f[IDS_F_LAST_NAME], "Nov\xc3\xa1k");
	assert_string_equal(jan->f[IDS_F_EMAIL], "jan.novak@contoso.com");
	assert_int_equal(nvalues(jan, "proxyAddresses"), 0);

	/* null mail: no e-mail; null accountEnabled is not "disabled" */
	assert_string_equal(room->f[IDS_F_USERNAME], "svc-room@contoso.onmicrosoft.com");
	assert_null(room->f[IDS_F_EMAIL]);
	assert_null(room->f[IDS_F_FIRST_NAME]);
	assert_false(room->disabled);
	assert_null(room->invalid);
	assert_int_equal(nvalues(room, "department"), 0);

	ids_graph_page_clear(&page);
	ids_snapshot_free(s);
	ids_strv_free(&ra);
}

static void test_users_last_and_empty(void **state)
{
	struct ids_snapshot *s;
	struct ids_graph_page page = {0};
	struct ids_error e = {0};
	/* the last page: no nextLink */
	assert_int_equal(users_file("data/entra/users_last.json", NULL, &s, &page, &e), 0);
	assert_int_equal(page.count, 1);
	assert_null(page.next_link);
	ids_snapshot_free(s);
	/* an empty page with a next link: nothing emitted, keep paging (case 9) */
	assert_int_equal(users_file("data/entra/users_empty_next.json", NULL, &s, &page, &e), 0);
	assert_int_equal(page.count, 0);
	assert_string_equal(page.next_link,
			    "https://graph.microsoft.com/v1.0/users?$select=id&$top=999&$skiptoken=X2");
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 0);
	ids_graph_page_clear(&page);
	ids_snapshot_free(s);
}

/* A body that must fail the page with IDS_E_PROTOCOL, the message
 * containing `what`. */
static void expect_bad_users(const char *body, const char *what)
{
	struct ids_graph_user_map m = {entra_attr, NULL};
	struct ids_snapshot *s = NULL;
	struct ids_graph_page page = {(char *)"untouched", 42};
	struct ids_error e = {0};
	assert_int_equal(ids_snapshot_new(&s), 0);
	int r = ids_graph_parse_users(body, strlen(body), &m, s, &page, &e);
	if (r != IDS_E_PROTOCOL || !e.msg || !strstr(e.msg, what))
		fail_msg("body %.60s: got %d (%s), expected IDS_E_PROTOCOL with \"%s\"", body, r,
			 e.msg ? e.msg : "no message", what);
	/* the out-parameter is written only on success */
	assert_string_equal(page.next_link, "untouched");
	assert_int_equal(page.count, 42);
	ids_error_clear(&e);
	ids_snapshot_free(s);
}

static void test_users_malformed(void **state)
{
	size_t n;
	char *html = slurp("data/entra/html.html", &n);
	expect_bad_users(html, "HTML");
	free(html);
	expect_bad_users("", "not JSON");
	/* truncated mid-page */
	expect_bad_users("{\"value\":[{\"id\":\"a\",\"userPrincipalName\":\"x", "not JSON");
	expect_bad_users("[]", "expected a JSON object");
	expect_bad_users("{\"@odata.context\":\"x\"}", "no `value` array");
	expect_bad_users("{\"value\":{\"id\":\"1\"}}", "not an array");
	expect_bad_users("{\"value\":[\"a\"]}", "value[0] is not an object");
	expect_bad_users("{\"value\":[{\"id\":\"a\"},{\"id\":12345}]}", "value[1].id is not a string");
	expect_bad_users("{\"value\":[{\"id\":\"a\",\"mail\":7}]}", "mail (email) is not a string");
	expect_bad_users("{\"value\":[{\"id\":\"a\",\"accountEnabled\":\"false\"}]}", "accountEnabled");
	expect_bad_users("{\"value\":[],\"@odata.nextLink\":5}", "nextLink is not a string");
	/* duplicate keys: which `value` would Graph have meant? */
	expect_bad_users("{\"value\":[],\"value\":[{\"id\":\"a\"}]}", "duplicate");
	/* deeply nested: jansson's depth limit, not our stack */
	char *deep = malloc(200001);
	assert_non_null(deep);
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	deep[200000] = '\0';
	expect_bad_users(deep, "not JSON");
	free(deep);
}

/* A body jansson refuses: the message gives the position and what is
 * wrong in words of its own, never bytes of the body (jansson's own text
 * quotes up to 20 of them, which may be part of a token answer, or not
 * UTF-8: the message goes to the log and to sync_run.error).  Columns
 * counted by hand: jansson reports the last character it read. */
static void test_not_json_messages(void **state)
{
	static const struct {
		const char *body, *msg;
	} cases[] = {
	    {"", "users: not JSON: the body is empty"},
	    /* 42 characters, cut inside a string */
	    {"{\"value\":[{\"id\":\"a\",\"userPrincipalName\":\"x",
	     "users: not JSON: the body ends too early (line 1, column 42)"},
	    /* the second "value" ends at 19 */
	    {"{\"value\":[],\"value\":[{\"id\":\"a\"}]}",
	     "users: not JSON: duplicate key (line 1, column 19)"},
	    {"{\"value\":[]} x", "users: not JSON: more text after the JSON value (line 1, column 14)"},
	    /* the number takes columns 17 to 24 */
	    {"{\"value\":[{\"id\":1e999999}]}", "users: not JSON: number out of range (line 1, column 24)"},
	    /* the key takes columns 12 to 21 */
	    {"{\"value\":[{\"a\\u0000b\":1}]}", "users: not JSON: NUL byte in a key (line 1, column 21)"},
	    /* the string opens at 17, its first byte is not UTF-8 */
	    {"{\"value\":[{\"id\":\"\xff\xfe secret\"}]}", "users: not JSON: not UTF-8 (line 1, column 17)"},
	    /* `tru` takes columns 8 to 10 of the second line */
	    {"{\"value\":\n[{\"id\":tru}]}", "users: not JSON: invalid syntax (line 2, column 10)"},
	    {"<!DOCTYPE html>", "users: not JSON (an HTML page): invalid syntax (line 1, column 1)"},
	};
	struct ids_graph_user_map m = {entra_attr, NULL};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ids_snapshot *s = NULL;
		struct ids_graph_page page = {0};
		struct ids_error e = {0};
		assert_int_equal(ids_snapshot_new(&s), 0);
		assert_int_equal(
		    ids_graph_parse_users(cases[i].body, strlen(cases[i].body), &m, s, &page, &e),
		    IDS_E_PROTOCOL);
		assert_string_equal(e.msg, cases[i].msg);
		ids_error_clear(&e);
		ids_snapshot_free(s);
	}

	/* groups and members pages say which they were; `trailing`, read
	 * whole, takes columns 25 to 32 */
	struct ids_error e = {0};
	struct ids_snapshot *s = NULL;
	struct ids_strv ids = {0};
	struct ids_graph_page page = {0};
	const char *g = "{\"value\":[{\"id\":\"g1\"}]} trailing";
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_graph_parse_groups(g, strlen(g), NULL, s, &ids, NULL, &page, &e),
			 IDS_E_PROTOCOL);
	assert_string_equal(e.msg, "groups: not JSON: more text after the JSON value (line 1, column 32)");
	ids_error_clear(&e);
	const char *mb = "{\"value\":[{\"id\":\"m1\"}]";
	assert_int_equal(ids_graph_parse_members(mb, strlen(mb), "g1", s, &page, &e), IDS_E_PROTOCOL);
	assert_string_equal(e.msg, "members: not JSON: the body ends too early (line 1, column 22)");
	assert_int_equal(ids.n, 0);
	ids_error_clear(&e);
	ids_snapshot_free(s);
}

/* One user's unusable value marks that user, not the page. */
static void test_users_nul_value(void **state)
{
	const char *body = "{\"value\":[{\"id\":\"b\",\"userPrincipalName\":\"a\\u0000b@x\"},"
			   "{\"id\":\"c\",\"userPrincipalName\":\"ok@x\"}]}";
	struct ids_graph_user_map m = {entra_attr, NULL};
	struct ids_snapshot *s = NULL;
	struct ids_graph_page page = {0};
	struct ids_error e = {0};
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_graph_parse_users(body, strlen(body), &m, s, &page, &e), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 2);
	assert_non_null(s->users[0].invalid);
	assert_null(s->users[1].invalid);
	assert_string_equal(s->users[1].f[IDS_F_USERNAME], "ok@x");
	ids_snapshot_free(s);
}

static void test_user_select(void **state)
{
	struct ids_strv ra = {0};
	/* duplicates of mapped fields (any case), a dotted path, an odd name */
	assert_int_equal(ids_strv_push(&ra, "department"), 0);
	assert_int_equal(ids_strv_push(&ra, "MAIL"), 0);
	assert_int_equal(ids_strv_push(&ra, "onPremisesExtensionAttributes.extensionAttribute1"), 0);
	assert_int_equal(ids_strv_push(&ra, "onPremisesExtensionAttributes.extensionAttribute2"), 0);
	assert_int_equal(ids_strv_push(&ra, "a&b"), 0);
	struct ids_graph_user_map m = {entra_attr, &ra};
	struct ids_buf b = {0};
	assert_int_equal(ids_graph_user_select(&b, &m), 0);
	assert_string_equal(
	    b.p, "id,accountEnabled,userPrincipalName,mail,givenName,surname,displayName,department,"
		 "onPremisesExtensionAttributes,a%26b");
	ids_buf_free(&b);

	/* unmapped fields are left out; a field mapped to accountEnabled not twice */
	const char *attrs2[6] = {"id", "mail", NULL, NULL, "accountEnabled", NULL};
	struct ids_graph_user_map m2 = {attrs2, NULL};
	assert_int_equal(ids_graph_user_select(&b, &m2), 0);
	assert_string_equal(b.p, "id,accountEnabled,mail");
	ids_buf_free(&b);
	ids_strv_free(&ra);
}

static void test_dotted_attribute(void **state)
{
	const char *body =
	    "{\"value\":[{\"id\":\"u1\",\"userPrincipalName\":\"u1@x\",\"onPremisesExtensionAttributes\":"
	    "{\"extensionAttribute1\":\"CZ\",\"extensionAttribute2\":null},\"employeeId\":4711,"
	    "\"otherMails\":[\"a@x\",\"b@x\"],\"onPremisesSyncEnabled\":true}]}";
	struct ids_strv ra = {0};
	assert_int_equal(ids_strv_push(&ra, "onPremisesExtensionAttributes.extensionAttribute1"), 0);
	assert_int_equal(ids_strv_push(&ra, "onPremisesExtensionAttributes.extensionAttribute2"), 0);
	assert_int_equal(ids_strv_push(&ra, "employeeId"), 0);
	assert_int_equal(ids_strv_push(&ra, "otherMails"), 0);
	assert_int_equal(ids_strv_push(&ra, "onPremisesSyncEnabled"), 0);
	assert_int_equal(ids_strv_push(&ra, "missing"), 0);
	struct ids_graph_user_map m = {entra_attr, &ra};
	struct ids_snapshot *s = NULL;
	struct ids_graph_page page = {0};
	struct ids_error e = {0};
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_graph_parse_users(body, strlen(body), &m, s, &page, &e), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	const struct ids_user *u = &s->users[0];
	assert_int_equal(nvalues(u, "onPremisesExtensionAttributes.extensionAttribute1"), 1);
	assert_string_equal(attr_of(u, "onPremisesExtensionAttributes.extensionAttribute1")->values[0], "CZ");
	assert_int_equal(nvalues(u, "onPremisesExtensionAttributes.extensionAttribute2"), 0);
	/* numbers and booleans as JSON writes them */
	assert_string_equal(attr_of(u, "employeeId")->values[0], "4711");
	assert_string_equal(attr_of(u, "onPremisesSyncEnabled")->values[0], "true");
	assert_int_equal(nvalues(u, "otherMails"), 2);
	assert_int_equal(nvalues(u, "missing"), 0);
	ids_snapshot_free(s);
	ids_strv_free(&ra);
}

static void test_groups_scope(void **state)
{
	size_t n;
	char *body = slurp("data/entra/groups_page.json", &n);
	struct ids_error e = {0};
	struct ids_graph_page page = {0};

	/* no scope: every group, ids in page order */
	struct ids_snapshot *s = NULL;
	struct ids_strv ids = {0};
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_graph_parse_groups(body, n, NULL, s, &ids, NULL, &page, &e), 0);
	assert_int_equal(page.count, 4);
	assert_null(page.next_link);
	assert_int_equal(ids.n, 4);
	assert_string_equal(ids.v[0], "02bd9fd6-8f93-4758-87c3-1fb73740a315");
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->ngroups, 4);
	long k = ids_snapshot_group_by_id(s, "02bd9fd6-8f93-4758-87c3-1fb73740a315");
	assert_true(k >= 0);
	assert_string_equal(s->groups[k].name, "CC-Support-CZ");
	assert_string_equal(s->groups[k].email, "cc-support-cz@contoso.com");
	k = ids_snapshot_group_by_id(s, "5f3c8e0b-7d41-4e2a-9a6b-3c2d1e0f9a8b");
	assert_true(k >= 0);
	assert_string_equal(s->groups[k].name, "Team B");
	assert_null(s->groups[k].email);
	ids_snapshot_free(s);
	ids_strv_free(&ids);

	/* a scope: a name in another case, an id in upper case, a typo */
	struct ids_strv scope = {0};
	assert_int_equal(ids_strv_push(&scope, "cc-support-cz"), 0);
	assert_int_equal(ids_strv_push(&scope, "5F3C8E0B-7D41-4E2A-9A6B-3C2D1E0F9A8B"), 0);
	assert_int_equal(ids_strv_push(&scope, "CC-Suport-CZ"), 0);
	bool matched[3] = {false, false, false};
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_graph_parse_groups(body, n, &scope, s, &ids, matched, &page, &e), 0);
	assert_int_equal(ids.n, 2);
	assert_string_equal(ids.v[0], "02bd9fd6-8f93-4758-87c3-1fb73740a315");
	assert_string_equal(ids.v[1], "5f3c8e0b-7d41-4e2a-9a6b-3c2d1e0f9a8b");
	assert_true(matched[0]);
	assert_true(matched[1]);
	assert_false(matched[2]);
	assert_int_equal(ids_snapshot_finish(s), 0);
	/* out of scope: not in the snapshot at all */
	assert_int_equal(s->ngroups, 2);
	assert_int_equal(ids_snapshot_group_by_id(s, "0a53828f-36c9-44c3-be3d-99a7fce977ac"), -1);
	ids_snapshot_free(s);
	ids_strv_free(&ids);
	ids_strv_free(&scope);
	free(body);

	/* a group without a usable id cannot have its members read */
	const char *bad = "{\"value\":[{\"displayName\":\"x\"}]}";
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_graph_parse_groups(bad, strlen(bad), NULL, s, &ids, NULL, &page, &e),
			 IDS_E_PROTOCOL);
	assert_non_null(strstr(e.msg, "value[0].id"));
	ids_error_clear(&e);
	const char *bad2 = "{\"value\":[{\"id\":\"g\",\"displayName\":[\"x\"]}]}";
	assert_int_equal(ids_graph_parse_groups(bad2, strlen(bad2), NULL, s, &ids, NULL, &page, &e),
			 IDS_E_PROTOCOL);
	assert_non_null(strstr(e.msg, "displayName"));
	ids_error_clear(&e);
	ids_snapshot_free(s);
	ids_strv_free(&ids);
}

static void test_members(void **state)
{
	struct ids_snapshot *s;
	struct ids_graph_page page = {0};
	struct ids_error e = {0};
	assert_int_equal(users_file("data/entra/users_page1.json", NULL, &s, &page, &e), 0);
	ids_graph_page_clear(&page);
	const char *g = "{\"value\":[{\"id\":\"02bd9fd6-8f93-4758-87c3-1fb73740a315\",\"displayName\":\"CC-"
			"Support-CZ\"}]}";
	struct ids_strv ids = {0};
	assert_int_equal(ids_graph_parse_groups(g, strlen(g), NULL, s, &ids, NULL, &page, &e), 0);
	size_t n;
	char *body = slurp("data/entra/members_page.json", &n);
	assert_int_equal(
	    ids_graph_parse_members(body, n, "02bd9fd6-8f93-4758-87c3-1fb73740a315", s, &page, &e), 0);
	assert_int_equal(page.count, 3);
	assert_null(page.next_link);
	assert_int_equal(ids_snapshot_finish(s), 0);
	/* Adele (users[2]) and Jan (users[1]) are in the group, the room is not;
	 * the third member is no user we read */
	assert_int_equal(s->users[2].ngroups, 1);
	assert_int_equal(s->users[1].ngroups, 1);
	assert_int_equal(s->users[0].ngroups, 0);
	assert_string_equal(s->groups[s->users[2].groups[0]].name, "CC-Support-CZ");
	assert_int_equal(s->unresolved_members, 1);
	free(body);
	ids_snapshot_free(s);
	ids_strv_free(&ids);

	/* a member without an id */
	const char *bad = "{\"value\":[{\"@odata.type\":\"#microsoft.graph.user\"}]}";
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_graph_parse_members(bad, strlen(bad), "g1", s, &page, &e), IDS_E_PROTOCOL);
	assert_non_null(strstr(e.msg, "members of g1"));
	ids_error_clear(&e);
	ids_snapshot_free(s);
}

/* GET /users/{key}'s answer (sync --user): one object mapped as a page's
 * user, its id returned; without a string id it is a malformed answer.
 * And the $filter answer's ids. */
static void test_one_user(void **state)
{
	(void)state;
	struct ids_graph_user_map m = {entra_attr, NULL};
	struct ids_snapshot *s = NULL;
	struct ids_error e = {0};
	char *id = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	const char *u = "{\"@odata.context\":\"x\",\"id\":\"u-1\",\"userPrincipalName\":\"a@x\","
			"\"mail\":null,\"accountEnabled\":false}";
	assert_int_equal(ids_graph_parse_user(u, strlen(u), &m, s, &id, &e), 0);
	assert_string_equal(id, "u-1");
	free(id);
	id = NULL;
	const char *noid = "{\"userPrincipalName\":\"b@x\"}";
	assert_int_equal(ids_graph_parse_user(noid, strlen(noid), &m, s, &id, &e), IDS_E_PROTOCOL);
	assert_string_equal(e.msg, "user: id is missing or not a string");
	assert_null(id);
	ids_error_clear(&e);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 1);
	assert_string_equal(s->users[0].f[IDS_F_USERNAME], "a@x");
	assert_null(s->users[0].f[IDS_F_EMAIL]);
	assert_true(s->users[0].disabled);
	ids_snapshot_free(s);

	struct ids_strv ids = {0};
	struct ids_graph_page page = {0};
	const char *two = "{\"value\":[{\"id\":\"a\"},{\"id\":\"b\"}]}";
	assert_int_equal(ids_graph_parse_ids(two, strlen(two), &ids, &page, &e), 0);
	assert_int_equal(ids.n, 2);
	assert_string_equal(ids.v[1], "b");
	const char *bad = "{\"value\":[{\"id\":7}]}";
	assert_int_equal(ids_graph_parse_ids(bad, strlen(bad), &ids, &page, &e), IDS_E_PROTOCOL);
	ids_error_clear(&e);
	ids_strv_free(&ids);
}

/* A key file that vanished after the config was loaded (check-config
 * passed, the daemon runs on): a configuration error naming the file,
 * exit 78 like every other secret file — not a failed run that the
 * daemon would retry.  Nothing reaches the network: the key is read
 * before the token request is made. */
static void test_vanished_key(void **state)
{
	struct ids_connector_cfg cc = {0};
	struct ids_snapshot *s = NULL;
	struct ids_error e = {0};
	cc.name = "cloud";
	cc.type = IDS_CONN_ENTRA;
	cc.entra.tenant = "contoso.onmicrosoft.com";
	cc.entra.client_id = "00000000-0000-0000-0000-000000000001";
	cc.entra.client_certificate_file = "data/entra/client.crt";
	cc.entra.client_key_file = "data/entra/vanished.key";
	cc.entra.client_assertion_alg = "PS256";
	/* a closed port: were anything sent, it would fail as a connection */
	cc.entra.login_endpoint = "https://127.0.0.1:9";
	cc.entra.graph_endpoint = "https://127.0.0.1:9/v1.0";
	cc.entra.timeout = 2;
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_entra_connector.pull(&cc, NULL, s, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, "data/entra/vanished.key"));
	ids_error_clear(&e);
	ids_snapshot_free(s);
}

static void test_errors(void **state)
{
	size_t n;
	char *code = NULL, *msg = NULL, *rid = NULL;
	char *body = slurp("data/entra/error_graph.json", &n);
	assert_int_equal(ids_graph_parse_error(body, n, &code, &msg, &rid), 0);
	assert_string_equal(code, "Authorization_RequestDenied");
	assert_string_equal(msg, "Insufficient privileges to complete the operation.");
	assert_string_equal(rid, "5b9c1d2e-aaaa-4bbb-8ccc-123456789abc");
	free(code);
	free(msg);
	free(rid);
	free(body);

	/* the identity platform's shape; its CR LF become spaces */
	body = slurp("data/entra/error_aad.json", &n);
	assert_int_equal(ids_graph_parse_error(body, n, &code, &msg, NULL), 0);
	assert_string_equal(code, "invalid_client");
	assert_memory_equal(msg, "AADSTS7000215: Invalid client secret provided.", 46);
	assert_null(strchr(msg, '\r'));
	assert_null(strchr(msg, '\n'));
	assert_non_null(strstr(msg, "  Trace ID: 0d4a5a8e"));
	free(code);
	free(msg);
	free(body);

	/* no JSON, or JSON without an error: nothing, and no failure */
	assert_int_equal(ids_graph_parse_error("<html>", 6, &code, &msg, &rid), 0);
	assert_null(code);
	assert_null(msg);
	assert_null(rid);
	assert_int_equal(ids_graph_parse_error("{\"value\":[]}", 12, &code, &msg, &rid), 0);
	assert_null(code);

	/* a hostile message is bounded and has no control characters */
	char big[5000];
	int k = snprintf(big, sizeof(big), "{\"error\":{\"code\":\"X\\u001b[31m\",\"message\":\"");
	memset(big + k, 'a', 3000);
	memcpy(big + k + 3000, "\"}}", 4);
	assert_int_equal(ids_graph_parse_error(big, strlen(big), &code, &msg, NULL), 0);
	assert_string_equal(code, "X [31m");
	assert_true(strlen(msg) <= 1000);
	free(code);
	free(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_users_page),	      cmocka_unit_test(test_users_last_and_empty),
	    cmocka_unit_test(test_users_malformed),   cmocka_unit_test(test_users_nul_value),
	    cmocka_unit_test(test_user_select),	      cmocka_unit_test(test_dotted_attribute),
	    cmocka_unit_test(test_groups_scope),      cmocka_unit_test(test_members),
	    cmocka_unit_test(test_vanished_key),      cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_not_json_messages), cmocka_unit_test(test_one_user),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
