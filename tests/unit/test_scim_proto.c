/* test_scim_proto.c — the SCIM filter parser, PATCH application in the
 * shapes Entra and Okta send (issue 16), the resource checks, and the
 * scim connector's mapping of a stored user into the snapshot.  Expected
 * values are written out by hand from RFC 7644 and the clients' documented
 * requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/connector.h"
#include "ids/scim.h"

static void filter_ok(void **state)
{
	struct ids_scim_filter flt;
	struct ids_scim_fault f = {0};
	assert_int_equal(ids_scim_filter_parse("userName eq \"Jan.Novak@acme.example\"", &flt, &f), 0);
	assert_int_equal(flt.n, 1);
	assert_int_equal(flt.c[0].attr, IDS_SCIM_A_USER_NAME);
	assert_string_equal(flt.c[0].value, "Jan.Novak@acme.example");
	ids_scim_filter_clear(&flt);

	/* operators in any case, URN prefix, escapes, `and` */
	assert_int_equal(
	    ids_scim_filter_parse("urn:ietf:params:scim:schemas:core:2.0:User:externalId EQ "
				  "\"a\\\"b\\u00e9\" AnD emails[type eq \"work\"].value eq \"x@y\"",
				  &flt, &f),
	    0);
	assert_int_equal(flt.n, 2);
	assert_int_equal(flt.c[0].attr, IDS_SCIM_A_EXTERNAL_ID);
	assert_string_equal(flt.c[0].value, "a\"b\xc3\xa9");
	assert_int_equal(flt.c[1].attr, IDS_SCIM_A_EMAIL);
	assert_string_equal(flt.c[1].type, "work");
	assert_string_equal(flt.c[1].value, "x@y");
	ids_scim_filter_clear(&flt);

	assert_int_equal(ids_scim_filter_parse("displayName eq \"CC-Support\"", &flt, &f), 0);
	assert_int_equal(flt.c[0].attr, IDS_SCIM_A_DISPLAY_NAME);
	ids_scim_filter_clear(&flt);
}

static void filter_bad(void **state)
{
	static const char *const bad[] = {
	    "userName co \"x\"",		/* only eq */
	    "userName eq x",			/* unquoted */
	    "userName eq \"x",			/* unterminated */
	    "title eq \"x\"",			/* not an identifying attribute */
	    "userName eq \"x\" or id eq \"y\"", /* or */
	    "userName eq \"\\ud800\"",		/* lone surrogate */
	    "userName eq \"\\u0000\"",		/* NUL */
	    "emails eq \"x\"",			/* emails needs .value */
	    "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ids_scim_filter flt = {0};
		struct ids_scim_fault f = {0};
		assert_int_equal(ids_scim_filter_parse(bad[i], &flt, &f), -EINVAL);
		assert_int_equal(f.status, 400);
		assert_string_equal(f.scim_type, "invalidFilter");
		assert_null(flt.buf);
	}
	/* nine conditions: one too many */
	char many[400] = "id eq \"1\"";
	for (int i = 0; i < 8; i++)
		strcat(many, " and id eq \"1\"");
	struct ids_scim_filter flt = {0};
	struct ids_scim_fault f = {0};
	assert_int_equal(ids_scim_filter_parse(many, &flt, &f), -EINVAL);
}

/* Patches `res` with `body` and compares with `want` (JSON texts). */
static void patch_case(const char *res, const char *body, const char *want)
{
	json_t *r = json_loads(res, 0, NULL), *b = json_loads(body, 0, NULL), *w = json_loads(want, 0, NULL);
	struct ids_scim_fault f = {0};
	assert_non_null(r);
	assert_non_null(b);
	assert_non_null(w);
	int rc = ids_scim_patch(r, b, &f);
	if (rc < 0)
		print_message("patch failed: %s %s\n", f.scim_type, f.detail);
	assert_int_equal(rc, 0);
	if (!json_equal(r, w)) {
		char *got = json_dumps(r, JSON_SORT_KEYS);
		print_message("got  %s\nwant %s\n", got, want);
		free(got);
	}
	assert_true(json_equal(r, w));
	json_decref(r);
	json_decref(b);
	json_decref(w);
}

static void patch_entra(void **state)
{
	/* Entra: capitalized op, "False" string (normalized later), path */
	patch_case("{\"userName\":\"a\",\"active\":true}",
		   "{\"Operations\":[{\"op\":\"Replace\",\"path\":\"active\",\"value\":\"False\"}]}",
		   "{\"userName\":\"a\",\"active\":\"False\"}");
	/* Entra: no-path replace with dotted and URN-prefixed keys */
	patch_case(
	    "{\"userName\":\"a\",\"name\":{\"givenName\":\"A\"}}",
	    "{\"Operations\":[{\"op\":\"Replace\",\"value\":{\"name.familyName\":\"Novak\","
	    "\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department\":\"Support\"}}]}",
	    "{\"userName\":\"a\",\"name\":{\"givenName\":\"A\",\"familyName\":\"Novak\"},"
	    "\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":{\"department\":\"Support\"}}");
	/* Entra: emails[type eq "work"].value on a user without that e-mail */
	patch_case("{\"userName\":\"a\"}",
		   "{\"Operations\":[{\"op\":\"Add\",\"path\":\"emails[type eq \\\"work\\\"].value\","
		   "\"value\":\"a@x\"}]}",
		   "{\"userName\":\"a\",\"emails\":[{\"type\":\"work\",\"value\":\"a@x\"}]}");
	/* Entra: member add, then removal by path with a value list */
	patch_case(
	    "{\"displayName\":\"G\",\"members\":[{\"value\":\"1\"}]}",
	    "{\"Operations\":[{\"op\":\"Add\",\"path\":\"members\",\"value\":[{\"value\":\"2\"},"
	    "{\"value\":\"1\"}]},{\"op\":\"Remove\",\"path\":\"members\",\"value\":[{\"value\":\"1\"}]}]}",
	    "{\"displayName\":\"G\",\"members\":[{\"value\":\"2\"}]}");
}

static void patch_okta(void **state)
{
	/* Okta: no-path replace of active */
	patch_case("{\"userName\":\"a\",\"active\":true}",
		   "{\"Operations\":[{\"op\":\"replace\",\"value\":{\"active\":false}}]}",
		   "{\"userName\":\"a\",\"active\":false}");
	/* Okta: the group rename sent with a membership change; removal by
	 * value filter */
	patch_case("{\"displayName\":\"G\",\"members\":[{\"value\":\"1\"},{\"value\":\"2\"}]}",
		   "{\"Operations\":[{\"op\":\"replace\",\"value\":{\"id\":null,\"displayName\":\"H\"}},"
		   "{\"op\":\"remove\",\"path\":\"members[value eq \\\"2\\\"]\"}]}",
		   "{\"displayName\":\"H\",\"members\":[{\"value\":\"1\"}]}");
}

static void patch_faults(void **state)
{
	static const struct {
		const char *body, *type;
	} bad[] = {
	    {"{\"Operations\":[]}", "invalidSyntax"},
	    {"{\"Operations\":[{\"op\":\"move\",\"path\":\"a\"}]}", "invalidSyntax"},
	    {"{\"Operations\":[{\"op\":\"remove\"}]}", "noTarget"},
	    {"{\"Operations\":[{\"op\":\"replace\",\"path\":\"id\",\"value\":\"x\"}]}", "mutability"},
	    {"{\"Operations\":[{\"op\":\"remove\",\"path\":\"members[value eq \\\"9\\\"]\"}]}", "noTarget"},
	    {"{\"Operations\":[{\"op\":\"replace\",\"value\":\"x\"}]}", "invalidValue"},
	    {"{\"Operations\":[{\"op\":\"replace\",\"path\":\"a b\",\"value\":1}]}", "invalidPath"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *r = json_loads("{\"displayName\":\"G\",\"members\":[{\"value\":\"1\"}]}", 0, NULL);
		json_t *b = json_loads(bad[i].body, 0, NULL);
		struct ids_scim_fault f = {0};
		assert_int_equal(ids_scim_patch(r, b, &f), -EINVAL);
		if (!f.scim_type || strcmp(f.scim_type, bad[i].type))
			print_message("case %zu: %s (%s)\n", i, f.scim_type, f.detail);
		assert_string_equal(f.scim_type, bad[i].type);
		assert_int_equal(f.status, 400);
		json_decref(r);
		json_decref(b);
	}
}

/* A stored user whose enterprise extension is no object (a POST may
 * send one: normalizing does not need it): adding to it is the client's
 * 400 invalidValue, not a server's out of memory (found by fuzz_scim);
 * removing from it removes nothing, as before. */
static void patch_extension_not_object(void **state)
{
#define EXT "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	static const char *const adds[] = {
	    "{\"Operations\":[{\"op\":\"replace\",\"path\":\"" EXT ":department\",\"value\":\"S\"}]}",
	    "{\"Operations\":[{\"op\":\"Replace\",\"value\":{\"" EXT ":department\":\"S\"}}]}",
	    "{\"Operations\":[{\"op\":\"add\",\"value\":{\"" EXT "\":{\"department\":\"S\"}}}]}",
	};
	for (size_t i = 0; i < sizeof(adds) / sizeof(adds[0]); i++) {
		json_t *r = json_loads("{\"userName\":\"a\",\"" EXT "\":true}", 0, NULL);
		json_t *b = json_loads(adds[i], 0, NULL);
		struct ids_scim_fault f = {0};
		assert_non_null(b);
		assert_int_equal(ids_scim_patch(r, b, &f), -EINVAL);
		assert_int_equal(f.status, 400);
		assert_string_equal(f.scim_type, "invalidValue");
		json_decref(r);
		json_decref(b);
	}
	patch_case("{\"userName\":\"a\",\"" EXT "\":true}",
		   "{\"Operations\":[{\"op\":\"remove\",\"path\":\"" EXT ":department\"}]}",
		   "{\"userName\":\"a\",\"" EXT "\":true}");
#undef EXT
}

/* Which group PATCHes may read only the members they name, and which
 * ids; a wrong "narrow" answer would lose or invent members. */
static void member_scope(void **state)
{
	static const struct {
		const char *ops, *scope; /* scope NULL: the whole list is needed */
	} cases[] = {
	    {"{\"op\":\"Add\",\"path\":\"members\",\"value\":[{\"value\":\"a\"},{\"value\":\"b\"}]}",
	     "[\"a\",\"b\"]"},
	    {"{\"op\":\"remove\",\"path\":\"members[value eq \\\"c\\\"]\"}", "[\"c\"]"},
	    {"{\"op\":\"Remove\",\"path\":\"members\",\"value\":[{\"value\":\"d\"}]}", "[\"d\"]"},
	    {"{\"op\":\"replace\",\"value\":{\"id\":\"g\",\"displayName\":\"X\"}},"
	     "{\"op\":\"add\",\"path\":\"members\",\"value\":[{\"value\":\"e\"}]}",
	     "[\"e\"]"},
	    {"{\"op\":\"add\",\"value\":{\"members\":[{\"value\":\"f\"}]}}", "[\"f\"]"},
	    {"{\"op\":\"replace\",\"path\":\"displayName\",\"value\":\"X\"}", "[]"},
	    {"{\"op\":\"replace\",\"path\":\"members\",\"value\":[{\"value\":\"a\"}]}", NULL},
	    {"{\"op\":\"remove\",\"path\":\"members\"}", NULL},
	    {"{\"op\":\"remove\",\"path\":\"members[type eq \\\"User\\\"]\"}", NULL},
	    {"{\"op\":\"replace\",\"path\":\"members[value eq \\\"a\\\"]\",\"value\":{\"value\":\"b\"}}",
	     NULL},
	    {"{\"op\":\"replace\",\"value\":{\"members\":[]}}", NULL},
	    {"{\"op\":\"add\",\"path\":\"members\",\"value\":{\"value\":\"a\"}}", NULL},
	    {"{\"op\":\"move\",\"path\":\"members\"}", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512], *scope = NULL;
		snprintf(text, sizeof(text), "{\"Operations\":[%s]}", cases[i].ops);
		json_t *b = json_loads(text, 0, NULL);
		assert_non_null(b);
		bool narrow = ids_scim_patch_member_scope(b, &scope);
		if (narrow != (cases[i].scope != NULL))
			print_message("case %zu: %s\n", i, scope ? scope : "(whole list)");
		assert_int_equal(narrow, cases[i].scope != NULL);
		if (cases[i].scope)
			assert_string_equal(scope, cases[i].scope);
		else
			assert_null(scope);
		free(scope);
		json_decref(b);
	}
}

static void normalize(void **state)
{
	json_t *u =
	    json_loads("{\"userName\":\"a\",\"active\":\"False\",\"password\":\"hunter2\",\"id\":\"x\","
		       "\"meta\":{},\"externalId\":\"e1\"}",
		       0, NULL);
	const char *name = NULL, *ext = NULL;
	char *members = NULL;
	bool active = true;
	struct ids_scim_fault f = {0};
	assert_int_equal(ids_scim_normalize(u, false, &name, &ext, &active, &members, &f), 0);
	assert_string_equal(name, "a");
	assert_string_equal(ext, "e1");
	assert_false(active);
	assert_null(members);
	assert_null(json_object_get(u, "password"));
	assert_null(json_object_get(u, "id"));
	assert_true(json_is_false(json_object_get(u, "active")));
	json_decref(u);

	json_t *g =
	    json_loads("{\"displayName\":\"G\",\"members\":[{\"value\":\"u1\",\"display\":\"A\"}]}", 0, NULL);
	assert_int_equal(ids_scim_normalize(g, true, &name, &ext, &active, &members, &f), 0);
	assert_string_equal(members, "[\"u1\"]");
	assert_null(json_object_get(g, "members"));
	free(members);
	json_decref(g);

	/* Entra's bare manager id becomes {"value": id} */
	json_t *m =
	    json_loads("{\"userName\":\"a\",\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":"
		       "{\"manager\":\"m-1\"}}",
		       0, NULL);
	assert_int_equal(ids_scim_normalize(m, false, &name, &ext, &active, &members, &f), 0);
	json_t *want = json_loads("{\"value\":\"m-1\"}", 0, NULL);
	assert_true(json_equal(json_object_get(json_object_get(m, IDS_SCIM_ENTERPRISE), "manager"), want));
	json_decref(want);
	json_decref(m);

	json_t *n = json_loads("{\"userName\":\"\"}", 0, NULL);
	assert_int_equal(ids_scim_normalize(n, false, &name, &ext, &active, &members, &f), -EINVAL);
	assert_string_equal(f.scim_type, "invalidValue");
	json_decref(n);
}

/* The connector's mapping: primary e-mail, names, enterprise attributes. */
static void map_user(void **state)
{
	struct ids_snapshot *s = NULL;
	struct ids_strv attrs = {0};
	assert_int_equal(ids_strv_push(&attrs, "department"), 0);
	assert_int_equal(ids_strv_push(&attrs, "manager.value"), 0);
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_scim_map_user(s, "8c1e0a3e-0000-4000-8000-000000000001",
					   "{\"userName\":\"jnovak\",\"displayName\":\"Jan Novák\","
					   "\"name\":{\"givenName\":\"Jan\",\"familyName\":\"Novák\"},"
					   "\"emails\":[{\"value\":\"home@x\",\"type\":\"home\"},"
					   "{\"value\":\"jan@acme\",\"type\":\"work\",\"primary\":true}],"
					   "\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":"
					   "{\"department\":\"Support\",\"manager\":{\"value\":\"m1\"}}}",
					   false, &attrs),
			 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(s->nusers, 1);
	const struct ids_user *u = &s->users[0];
	assert_null(u->invalid);
	assert_true(u->disabled);
	assert_string_equal(u->f[IDS_F_USERNAME], "jnovak");
	assert_string_equal(u->f[IDS_F_EMAIL], "jan@acme");
	assert_string_equal(u->f[IDS_F_FIRST_NAME], "Jan");
	assert_string_equal(u->f[IDS_F_DISPLAY_NAME], "Jan Novák");
	assert_int_equal(u->nattrs, 2);
	for (size_t i = 0; i < u->nattrs; i++) {
		assert_int_equal(u->attrs[i].nvalues, 1);
		assert_string_equal(u->attrs[i].values[0],
				    !strcmp(u->attrs[i].name, "department") ? "Support" : "m1");
	}
	ids_snapshot_free(s);
	ids_strv_free(&attrs);

	/* neither displayName nor name.formatted: "given family"; a work
	 * e-mail when none is primary */
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(
	    ids_scim_map_user(s, "id-2",
			      "{\"userName\":\"mkral\",\"name\":{\"givenName\":\"Marek\",\"familyName\":"
			      "\"Král\"},\"emails\":[{\"value\":\"h@x\",\"type\":\"home\"},{\"value\":"
			      "\"w@x\",\"type\":\"work\"}]}",
			      true, NULL),
	    0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_string_equal(s->users[0].f[IDS_F_DISPLAY_NAME], "Marek Král");
	assert_string_equal(s->users[0].f[IDS_F_EMAIL], "w@x");
	assert_false(s->users[0].disabled);
	ids_snapshot_free(s);
}

static void json_depth(void **state)
{
	char deep[200];
	memset(deep, '[', 40);
	memset(deep + 40, ']', 40);
	assert_true(ids_scim_json_depth_ok(deep, 80, 40));
	assert_false(ids_scim_json_depth_ok(deep, 80, 39));
	/* brackets inside strings, escaped quotes included, do not count */
	const char *s = "{\"a\":\"[[[[\\\"{{{{\",\"b\":[{}]}";
	assert_true(ids_scim_json_depth_ok(s, strlen(s), 3));
	assert_false(ids_scim_json_depth_ok(s, strlen(s), 2));
}

static void bucket(void **state)
{
	struct ids_scim_bucket b = {0};
	long long t = 1000000;
	/* a full bucket of 3, then empty: Retry-After 1 s at 2/s */
	for (int i = 0; i < 3; i++)
		assert_int_equal(ids_scim_bucket_take(&b, t, 2, 3), 0);
	assert_int_equal(ids_scim_bucket_take(&b, t, 2, 3), 1);
	/* half a second later one token came back */
	assert_int_equal(ids_scim_bucket_take(&b, t + 500000, 2, 3), 0);
	assert_int_equal(ids_scim_bucket_take(&b, t + 500000, 2, 3), 1);
	/* at 0.25/s the wait rounds up to 4 s */
	struct ids_scim_bucket slow = {0};
	assert_int_equal(ids_scim_bucket_take(&slow, t, 0.25, 1), 0);
	assert_int_equal(ids_scim_bucket_take(&slow, t, 0.25, 1), 4);
	/* never more than burst after a long pause */
	assert_int_equal(ids_scim_bucket_take(&b, t + 3600000000LL, 2, 3), 0);
	assert_int_equal(ids_scim_bucket_take(&b, t + 3600000000LL, 2, 3), 0);
	assert_int_equal(ids_scim_bucket_take(&b, t + 3600000000LL, 2, 3), 0);
	assert_int_equal(ids_scim_bucket_take(&b, t + 3600000000LL, 2, 3), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(filter_ok),    cmocka_unit_test(filter_bad),
	    cmocka_unit_test(patch_entra),  cmocka_unit_test(patch_okta),
	    cmocka_unit_test(patch_faults), cmocka_unit_test(patch_extension_not_object),
	    cmocka_unit_test(normalize),    cmocka_unit_test(map_user),
	    cmocka_unit_test(json_depth),   cmocka_unit_test(bucket),
	    cmocka_unit_test(member_scope),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
