/* test_conn_entra_delta.c — Graph delta rounds into the image (graph.h,
 * issue 15), without a network: users upserted and removed (@removed
 * "changed" and "deleted"), the links of a delta page, a group split
 * over pages, members@delta added and removed, a replayed round changing
 * nothing, a group out of the `groups:` scope kept nameless so that the
 * nesting through it resolves, the scope's unmatched entry, and the
 * cursor: written and read back, refused when its fingerprint differs or
 * it is older than 6 days.  Pages are written inline; what the image
 * holds is read through a replayed, finished snapshot. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ids/graph.h"
#include "ids/image.h"
#include "ids/snapshot.h"

static const char *const entra_attr[6] = {"id",	       "userPrincipalName", "mail",
					  "givenName", "surname",	    "displayName"};
static const struct ids_graph_user_map map = {entra_attr, NULL};

static void users(struct ids_image *img, const char *body, int want)
{
	struct ids_graph_delta_page pg = {0};
	struct ids_error err = {0};
	int r = ids_graph_parse_users_delta(body, strlen(body), &map, img, &pg, &err);
	if (r != want)
		print_message("%s\n", err.msg ? err.msg : "");
	assert_int_equal(r, want);
	ids_graph_delta_page_clear(&pg);
	ids_error_clear(&err);
}

/* One groups round of pages[] (NULL-terminated), applied. */
static void groups_round(struct ids_image *img, const char *const *pages, const struct ids_strv *scope,
			 bool full, struct ids_graph_cursor *c)
{
	struct ids_graph_gdelta *gd = NULL;
	struct ids_error err = {0};
	size_t touched = 0;
	assert_int_equal(ids_graph_gdelta_new(&gd), 0);
	for (size_t i = 0; pages[i]; i++) {
		struct ids_graph_delta_page pg = {0};
		assert_int_equal(ids_graph_parse_groups_delta(pages[i], strlen(pages[i]), gd, &pg, &err), 0);
		ids_graph_delta_page_clear(&pg);
	}
	if (full)
		ids_image_present_begin(img);
	assert_int_equal(ids_graph_gdelta_apply(gd, img, scope, full, c, &touched, &err), 0);
	if (full)
		assert_int_equal(ids_image_present_end(img, IDS_IMAGE_GROUPS, NULL), 0);
	ids_graph_gdelta_free(gd);
}

/* Every user's transitive groups ("id:name,name") as the rules see them. */
static char *text(const struct ids_image *img)
{
	struct ids_snapshot *s = NULL;
	struct ids_buf b = {0};
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_image_replay(img, s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	assert_int_equal(ids_buf_puts(&b, ""), 0);
	for (size_t i = 0; i < s->nusers; i++) {
		ids_buf_printf(&b, "%s:", s->users[i].f[IDS_F_EXTERNAL_ID]);
		for (size_t g = 0; g < s->users[i].ngroups; g++) {
			const char *n = s->groups[s->users[i].groups[g]].name;
			ids_buf_printf(&b, "%s%s", g ? "," : "", n ? n : "-");
		}
		ids_buf_putc(&b, ' ');
	}
	ids_snapshot_free(s);
	return ids_buf_steal(&b);
}

static void assert_text(const struct ids_image *img, const char *want)
{
	char *t = text(img);
	assert_string_equal(t, want);
	free(t);
}

#define DL "\"@odata.deltaLink\":\"https://g/v1.0/users/delta?$deltatoken=x\""
#define NL "\"@odata.nextLink\":\"https://g/v1.0/users/delta?$skiptoken=y\""
#define U(id) "{\"id\":\"" id "\",\"userPrincipalName\":\"" id "@x\",\"accountEnabled\":true}"

static void test_users(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	assert_int_equal(ids_image_new(&img), 0);
	users(img, "{\"value\":[" U("u1") "," U("u2") "]," NL "}", 0);
	users(img, "{\"value\":[" U("u3") "]," DL "}", 0);
	assert_int_equal(ids_image_nusers(img), 3);
	/* soft-deleted (restorable) and deleted for good: both leave */
	users(img,
	      "{\"value\":[{\"id\":\"u1\",\"@removed\":{\"reason\":\"changed\"}},"
	      "{\"id\":\"u2\",\"@removed\":{\"reason\":\"deleted\"}}]," DL "}",
	      0);
	assert_int_equal(ids_image_nusers(img), 1);
	/* a replay of the same removal, and a restore: the same id again */
	users(img, "{\"value\":[{\"id\":\"u2\",\"@removed\":{\"reason\":\"deleted\"}}," U("u1") "]," DL "}",
	      0);
	assert_text(img, "u1: u3: ");
	/* the links: exactly one; an element without an id; a bad @removed */
	users(img, "{\"value\":[]}", IDS_E_PROTOCOL);
	users(img, "{\"value\":[]," NL "," DL "}", IDS_E_PROTOCOL);
	users(img, "{\"value\":[{\"userPrincipalName\":\"x\"}]," DL "}", IDS_E_PROTOCOL);
	users(img, "{\"value\":[{\"id\":\"u3\",\"@removed\":true}]," DL "}", IDS_E_PROTOCOL);
	ids_image_free(img);
}

#define GDL ",\"@odata.deltaLink\":\"https://g/v1.0/groups/delta?$deltatoken=z\"}"
#define GNL ",\"@odata.nextLink\":\"https://g/v1.0/groups/delta?$skiptoken=w\"}"
#define MU(id) "{\"@odata.type\":\"#microsoft.graph.user\",\"id\":\"" id "\"}"
#define MG(id) "{\"@odata.type\":\"#microsoft.graph.group\",\"id\":\"" id "\"}"
#define MX(id)                                                                                               \
	"{\"@odata.type\":\"#microsoft.graph.user\",\"id\":\"" id "\",\"@removed\":{\"reason\":\"deleted\"}" \
	"}"

/* The first round: CC-Support split over two pages (members u1, then
 * Team nested), Team = {u2}; then changes, a replay, a group removed. */
static void test_groups(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	struct ids_graph_cursor c = {0};
	assert_int_equal(ids_image_new(&img), 0);
	users(img, "{\"value\":[" U("u1") "," U("u2") "," U("u3") "]," DL "}", 0);
	const char *first[] = {
	    "{\"value\":[{\"id\":\"g1\",\"displayName\":\"CC-Support\",\"mail\":null,\"members@delta\":[" MU(
		"u1") "]}]" GNL,
	    "{\"value\":[{\"id\":\"g1\",\"members@delta\":[" MG(
		"g2") "]},"
		      "{\"id\":\"g2\",\"displayName\":\"Team\",\"members@delta\":[" MU(
			  "u2") ",{\"@odata.type\":"
				"\"#microsoft.graph.device\",\"id\":\"d1\"}]}]" GDL,
	    NULL};
	groups_round(img, first, NULL, true, &c);
	assert_text(img, "u1:CC-Support u2:CC-Support,Team u3: ");

	/* u3 joins Team, u1 leaves CC-Support (members only: values kept) */
	const char *second[] = {"{\"value\":[{\"id\":\"g2\",\"members@delta\":[" MU(
				    "u3") "]},"
					  "{\"id\":\"g1\",\"members@delta\":[" MX("u1") "]}]" GDL,
				NULL};
	groups_round(img, second, NULL, false, &c);
	char *after = text(img);
	assert_string_equal(after, "u1: u2:CC-Support,Team u3:CC-Support,Team ");
	/* the same round again (replayed by Graph): nothing changes */
	groups_round(img, second, NULL, false, &c);
	assert_text(img, after);
	free(after);

	/* Team renamed, with a member both added and removed in the round:
	 * the last word wins; members it did not name stay */
	const char *third[] = {
	    "{\"value\":[{\"id\":\"g2\",\"displayName\":\"Team-X\",\"members@delta\":[" MU("u1") "]}]" GNL,
	    "{\"value\":[{\"id\":\"g2\",\"members@delta\":[" MX("u1") "]}]" GDL, NULL};
	groups_round(img, third, NULL, false, &c);
	assert_text(img, "u1: u2:CC-Support,Team-X u3:CC-Support,Team-X ");

	/* a group removed */
	const char *fourth[] = {"{\"value\":[{\"id\":\"g2\",\"@removed\":{\"reason\":\"deleted\"}}]" GDL,
				NULL};
	groups_round(img, fourth, NULL, false, &c);
	assert_text(img, "u1: u2: u3: ");
	assert_int_equal(ids_image_ngroups(img), 1);
	ids_graph_cursor_clear(&c);
	ids_image_free(img);
}

/* The scope: Team (nested in CC-Support) is out of it: kept nameless, so
 * u2 is in CC-Support through it, as transitiveMembers says; an entry
 * matching nothing is found; a rename out of scope is seen. */
static void test_scope(void **state)
{
	(void)state;
	struct ids_image *img = NULL;
	struct ids_graph_cursor c = {0};
	char *sv[] = {"cc-support", "Nope"};
	struct ids_strv scope = {sv, 2};
	assert_int_equal(ids_image_new(&img), 0);
	users(img, "{\"value\":[" U("u1") "," U("u2") "]," DL "}", 0);
	const char *first[] = {
	    "{\"value\":[{\"id\":\"g1\",\"displayName\":\"CC-Support\",\"members@delta\":[" MU("u1") "," MG(
		"g2") "]},"
		      "{\"id\":\"g2\",\"displayName\":\"Team\",\"members@delta\":[" MU("u2") "]}]" GDL,
	    NULL};
	groups_round(img, first, &scope, true, &c);
	assert_text(img, "u1:CC-Support u2:CC-Support,- ");
	assert_int_equal(ids_graph_scope_unmatched(&c, &scope), 1);
	scope.n = 1;
	assert_int_equal(ids_graph_scope_unmatched(&c, &scope), -1);
	const char *second[] = {"{\"value\":[{\"id\":\"g1\",\"displayName\":\"CC-Sales\"}]" GDL, NULL};
	groups_round(img, second, &scope, false, &c);
	assert_int_equal(ids_graph_scope_unmatched(&c, &scope), 0);
	assert_text(img, "u1:- u2:-,- ");
	ids_graph_cursor_clear(&c);
	ids_image_free(img);
}

static void test_cursor(void **state)
{
	(void)state;
	struct ids_graph_cursor c = {0}, back = {0};
	unsigned char *b = NULL;
	size_t n = 0;
	char *why = NULL;
	c.users_link = strdup("https://g/v1.0/users/delta?$deltatoken=a");
	c.groups_link = strdup("https://g/v1.0/groups/delta?$deltatoken=b");
	c.fingerprint = strdup("f1");
	c.at = 1000000;
	assert_int_equal(ids_graph_cursor_write(&c, &b, &n), 0);
	assert_int_equal(ids_graph_cursor_parse(b, n, &back), 0);
	assert_string_equal(back.users_link, c.users_link);
	assert_string_equal(back.groups_link, c.groups_link);
	assert_int_equal(back.at, 1000000);
	/* usable for 6 days, not a second more */
	assert_int_equal(ids_graph_cursor_check(&back, "f1", 1000000 + 6 * 86400, &why), 0);
	assert_null(why);
	assert_int_equal(ids_graph_cursor_check(&back, "f1", 1000000 + 6 * 86400 + 1, &why), 0);
	assert_non_null(why);
	assert_non_null(strstr(why, "144 hours old"));
	free(why);
	assert_int_equal(ids_graph_cursor_check(&back, "f2", 1000000, &why), 0);
	assert_non_null(strstr(why, "$select"));
	free(why);
	ids_graph_cursor_clear(&back);
	assert_int_equal(ids_graph_cursor_parse((const unsigned char *)"rfc4533-cookie", 14, &back), -EINVAL);
	assert_int_equal(ids_graph_cursor_parse((const unsigned char *)"{\"v\":2}", 7, &back), -EINVAL);
	free(b);
	ids_graph_cursor_clear(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_users),
	    cmocka_unit_test(test_groups),
	    cmocka_unit_test(test_scope),
	    cmocka_unit_test(test_cursor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
