/* test_core_plan_format.c — the text form of hand-built plans
 * (semantics.md, "The plan").  The plans are built field by field, not by
 * the diff, so these tests pin the format alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ids/plan.h"

static struct ids_plan *plan_new(const char *connector, const char *idp)
{
	struct ids_plan *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->connector = connector;
	p->idp = idp;
	return p;
}

/* Hands the arrays (stack storage) back before ids_plan_free(). */
static void plan_done(struct ids_plan *p)
{
	p->users = NULL;
	p->grants = NULL;
	ids_plan_free(p);
}

static const char *text(const struct ids_plan *p, struct ids_buf *b)
{
	ids_buf_reset(b);
	assert_int_equal(ids_plan_format_text(p, b), 0);
	return b->p;
}

/* The example of semantics.md, built by hand.  (Its summary says "2 grants
 * added" for two adds and a slot change; we count the change as added, so
 * 3 — see diff.c.) */
static void test_semantics_example(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_plan *p = plan_new("corp-ad", "entra");
	struct ids_cur_user pd = {.id = 42,
				  .source = "corp-ad",
				  .external_id = "e-pd",
				  .username = "pdvorak",
				  .auth_method = "sso",
				  .idp = "entra",
				  .active = true};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE,
	     .external_id = "e-jn",
	     .username = "jnovak",
	     .email = "jan.novak@corp.example",
	     .first_name = "Jan",
	     .last_name = "Novák"},
	    {.flags = IDS_PU_DEACTIVATE,
	     .id = 42,
	     .external_id = "e-pd",
	     .username = "pdvorak",
	     .reason = "disabled_in_source",
	     .cur = &pd},
	};
	struct ids_plan_grant grants[] = {
	    {IDS_GOP_ADD, IDS_GRANT_ROLE, 0, "e-jn", "jnovak", "support-cz", "operator", 0, 0, 0},
	    {IDS_GOP_ADD, IDS_GRANT_CHANNEL, 0, "e-jn", "jnovak", "support-cz", "whatsapp", 0, 0, 0},
	    {IDS_GOP_CHANGE, IDS_GRANT_SLOT, 0, "e-jn", "jnovak", "support-cz", "live", 3, 2, 0},
	};
	p->users = users;
	p->nusers = 2;
	p->grants = grants;
	p->ngrants = 3;
	p->counts =
	    (struct ids_plan_counts){.users_seen = 2, .created = 1, .deactivated = 1, .grants_added = 3};

	/* without rule names (a hand-made desired state) the lines end early */
	assert_string_equal(
	    text(p, &b), "+ user  jnovak (Jan Novák) <jan.novak@corp.example>  sso/entra\n"
			 "+ role  jnovak  support-cz  operator\n"
			 "+ chan  jnovak  support-cz  whatsapp\n"
			 "~ slot  jnovak  support-cz  live 2 -> 3\n"
			 "- user  pdvorak  deactivate (disabled_in_source)\n"
			 "summary corp-ad: 1 create, 0 update, 1 deactivate, 0 reactivate, 3 grants added, "
			 "0 removed, 0 conflicts\n");

	/* each grant line names the rules that produced it (issue 12.4);
	 * control characters in a name cannot forge a line */
	struct ids_rule_list *one = malloc(sizeof(*one) + sizeof(one->names[0]));
	struct ids_rule_list *two = malloc(sizeof(*two) + 2 * sizeof(two->names[0]));
	assert_true(one && two);
	*one = (struct ids_rule_list){.n = 1};
	one->names[0] = "cz-support-operators";
	*two = (struct ids_rule_list){.n = 2};
	two->names[0] = "cz-support-operators";
	two->names[1] = "whats\napp";
	const struct ids_rule_list *lists[] = {NULL, one, two};
	p->rule_lists = lists;
	p->nrule_lists = 3;
	grants[0].rules = 1;
	grants[1].rules = 2;
	grants[2].rules = 1;
	assert_string_equal(
	    text(p, &b), "+ user  jnovak (Jan Novák) <jan.novak@corp.example>  sso/entra\n"
			 "+ role  jnovak  support-cz  operator  rule cz-support-operators\n"
			 "+ chan  jnovak  support-cz  whatsapp  rules cz-support-operators, whats\\x0aapp\n"
			 "~ slot  jnovak  support-cz  live 2 -> 3  rule cz-support-operators\n"
			 "- user  pdvorak  deactivate (disabled_in_source)\n"
			 "summary corp-ad: 1 create, 0 update, 1 deactivate, 0 reactivate, 3 grants added, "
			 "0 removed, 0 conflicts\n");

	ids_buf_free(&b);
	plan_done(p);
	free(one);
	free(two);
}

/* Every kind of user line, the tenant lines, escaping, skips, abort. */
static void test_every_line(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_plan *p = plan_new("corp-ad", "ldap");
	struct ids_cur_user adopted = {
	    .id = 17, .username = "jan", .email = "jan@x", .auth_method = "activation_link", .active = false};
	struct ids_cur_user upd = {.id = 18,
				   .source = "corp-ad",
				   .external_id = "e-ba",
				   .username = "bara",
				   .email = "b@x",
				   .last_name = "Old",
				   .auth_method = "activation_link",
				   .active = true};
	struct ids_cur_user gone = {.id = 19,
				    .source = "corp-ad",
				    .external_id = "e-cy",
				    .username = "cyril",
				    .auth_method = "sso",
				    .idp = "ldap",
				    .reason = "disabled_in_source"};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_SKIP_INVALID, .external_id = "e-??", .reason = "missing username"},
	    {.flags = IDS_PU_CREATE, .external_id = "e-ad", .username = "admin", .company_admin = true},
	    {.flags = IDS_PU_UPDATE,
	     .changed =
		 IDS_CH_USERNAME | IDS_CH_EMAIL | IDS_CH_LAST_NAME | IDS_CH_COMPANY_ADMIN | IDS_CH_AUTH,
	     .id = 18,
	     .external_id = "e-ba",
	     .username = "barbora",
	     .email = NULL,
	     .last_name = "Nová",
	     .company_admin = true,
	     .cur = &upd},
	    {.flags = IDS_PU_REASON,
	     .id = 19,
	     .external_id = "e-cy",
	     .username = "cyril",
	     .reason = "deleted_in_source",
	     .cur = &gone},
	    {.flags = IDS_PU_ADOPT | IDS_PU_REACTIVATE,
	     .changed = IDS_CH_USERNAME | IDS_CH_AUTH,
	     .id = 17,
	     .external_id = "e-jn",
	     .username = "jnovak",
	     .email = "jan@x",
	     .cur = &adopted},
	    {.flags = IDS_PU_CONFLICT,
	     .external_id = "e-ka",
	     .username = "karel",
	     .reason = "username karel is taken by user id 5"},
	    {.flags = IDS_PU_CREATE,
	     .external_id = "e-no",
	     .username = "nov\nak",
	     .last_name = "Novák",
	     .email = "n@x"},
	};
	struct ids_plan_grant grants[] = {
	    {IDS_GOP_ADD, IDS_GRANT_GROUP, 0, "e-ad", "admin", "new-t", "first-line", 0, 0, 0},
	    {IDS_GOP_REMOVE, IDS_GRANT_SLOT, 0, "e-cy", "cyril", "sales", "email", 4, 0, 0},
	    /* a user whose only change is a grant: no user line */
	    {IDS_GOP_REMOVE, IDS_GRANT_CHANNEL, 0, "e-da", "dana", "sales", "webchat", 0, 0, 0},
	    {IDS_GOP_ADD, IDS_GRANT_SLOT, 0, "e-jn", "jnovak", "sales", "live", 0, 0, 0},
	};
	p->users = users;
	p->nusers = sizeof(users) / sizeof(users[0]);
	p->grants = grants;
	p->ngrants = sizeof(grants) / sizeof(grants[0]);
	char *news[] = {"new-t", NULL}, *missing[] = {"foo", "zzz", NULL};
	p->new_tenants = (struct ids_strv){news, 1};
	p->missing_tenants = (struct ids_strv){missing, 2};
	p->counts = (struct ids_plan_counts){.users_seen = 9,
					     .created = 2,
					     .updated = 3,
					     .reactivated = 1,
					     .grants_added = 2,
					     .grants_removed = 2,
					     .conflicts = 1,
					     .skipped_invalid = 1};
	p->verdict = IDS_VERDICT_THRESHOLD;
	p->verdict_why = "2 grant removals on active users are 50.0% of 4 managed grants";

	assert_string_equal(
	    text(p, &b),
	    "+ tenant new-t\n"
	    "! tenant foo  unknown, grants skipped (tenants.auto_create is off)\n"
	    "! tenant zzz  unknown, grants skipped (tenants.auto_create is off)\n"
	    "? user  e-??  skipped: missing username\n"
	    "+ user  admin  sso/ldap  company_admin\n"
	    "+ group admin  new-t  first-line\n"
	    "~ user  barbora  username bara -> barbora, email b@x -> (none), last_name Old -> Nová, "
	    "company_admin false -> true, auth activation_link -> sso/ldap\n"
	    "~ user  cyril  deactivation_reason disabled_in_source -> deleted_in_source\n"
	    "- slot  cyril  sales  email 4\n"
	    "- chan  dana  sales  webchat\n"
	    "* user  jnovak  adopt (by e-mail)\n"
	    "+ user  jnovak  reactivate\n"
	    "~ user  jnovak  username jan -> jnovak\n"
	    "+ slot  jnovak  sales  live 0\n"
	    "! user  karel  conflict: username karel is taken by user id 5\n"
	    "+ user  nov\\x0aak (Novák) <n@x>  sso/ldap\n"
	    "summary corp-ad: 2 create, 3 update, 0 deactivate, 1 reactivate, 2 grants added, "
	    "2 removed, 1 conflicts, 1 skipped\n"
	    "aborted: 2 grant removals on active users are 50.0% of 4 managed grants\n");

	p->new_tenants = (struct ids_strv){0};
	p->missing_tenants = (struct ids_strv){0};
	p->verdict_why = NULL;
	ids_buf_free(&b);
	plan_done(p);
}

/* An empty plan, aborted by the empty-source guard; quotes escaped. */
static void test_empty_aborted(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_plan *p = plan_new("corp \"ad\"", NULL);
	p->verdict = IDS_VERDICT_EMPTY;
	p->verdict_why = "snapshot has 0 users but corp \"ad\" owns 3 active users";
	assert_string_equal(text(p, &b),
			    "summary corp \"ad\": 0 create, 0 update, 0 deactivate, 0 reactivate, "
			    "0 grants added, 0 removed, 0 conflicts\n"
			    "aborted: snapshot has 0 users but corp \"ad\" owns 3 active users\n");
	p->verdict_why = NULL;
	ids_buf_free(&b);
	plan_done(p);
}

/* Without an idp (retire), a create still says how it signs in. */
static void test_create_names(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_plan *p = plan_new("g", NULL);
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE,
	     .external_id = "1",
	     .username = "a",
	     .first_name = "Ann",
	     .display_name = ""},
	    {.flags = IDS_PU_CREATE,
	     .external_id = "2",
	     .username = "b",
	     .display_name = "Bo B",
	     .first_name = "X",
	     .email = ""},
	};
	p->users = users;
	p->nusers = 2;
	assert_string_equal(text(p, &b),
			    "+ user  a (Ann)  sso\n"
			    "+ user  b (Bo B)  sso\n"
			    "summary g: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, "
			    "0 removed, 0 conflicts\n");
	ids_buf_free(&b);
	plan_done(p);
}

static void test_counts(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	struct ids_plan_counts c = {10, 1, 2, 3, 4, 5, 6, 7, 0, 0};
	assert_int_equal(ids_plan_format_counts(&c, &b), 0);
	assert_string_equal(b.p, "1 create, 2 update, 3 deactivate, 4 reactivate, 5 grants added, 6 removed, "
				 "7 conflicts");
	ids_buf_reset(&b);
	c.skipped_invalid = 2;
	assert_int_equal(ids_plan_format_counts(&c, &b), 0);
	assert_string_equal(b.p, "1 create, 2 update, 3 deactivate, 4 reactivate, 5 grants added, 6 removed, "
				 "7 conflicts, 2 skipped");
	ids_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_semantics_example),
	    cmocka_unit_test(test_every_line),
	    cmocka_unit_test(test_empty_aborted),
	    cmocka_unit_test(test_create_names),
	    cmocka_unit_test(test_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
