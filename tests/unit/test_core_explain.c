/* test_core_explain.c — `idsyncd explain`'s core (explain.h) on an
 * in-memory directory: group paths through nesting, attribute matches,
 * a member_of_regex capture giving the tenant, slot offers and the merge,
 * a revoke, the first reason each other rule did not match, and the
 * database side (present, missing, manual, extra; owned and adopted).
 *
 *   groups  g-ocz   CC-Support-CZ-Operators
 *           g-all   CC-All-Operators          (a member of g-ocz)
 *           g-team  Team-7                    (a member of g-all)
 *           g-sde   CC-Sales-DE-Operators
 *           g-sen   CC-Seniors
 *   users   jnovak  in g-team, g-sde, g-sen   department "Customer Support"
 *           pdvorak in nothing                department "Sales"
 *           off     in g-team, disabled
 *           anna    in g-team                 e-mail anna@corp.example
 *
 * Expected texts are written out by hand from the rules below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/explain.h"

static struct ids_snapshot *S;
static struct ids_rule R[8];
static size_t NR;

static void uset(enum ids_field f, const char *v)
{
	assert_int_equal(ids_snapshot_user_set(S, f, v, strlen(v)), 0);
}

static void user(const char *id, const char *name, const char *dept, const char *email)
{
	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, id);
	uset(IDS_F_USERNAME, name);
	if (email)
		uset(IDS_F_EMAIL, email);
	if (dept)
		assert_int_equal(ids_snapshot_user_attr(S, "department", dept, strlen(dept)), 0);
}

static void group(const char *id, const char *name)
{
	assert_int_equal(ids_snapshot_group_begin(S), 0);
	assert_int_equal(ids_snapshot_group_set(S, IDS_F_EXTERNAL_ID, id, strlen(id)), 0);
	assert_int_equal(ids_snapshot_group_set(S, IDS_F_USERNAME, name, strlen(name)), 0);
	assert_int_equal(ids_snapshot_group_end(S), 0);
}

static void member(const char *g, const char *ref)
{
	assert_int_equal(ids_snapshot_member(S, g, IDS_REF_ID, ref, strlen(ref)), 0);
}

static struct ids_rule *rule(const char *name, const char *tenant)
{
	struct ids_rule *r = &R[NR++];
	r->name = strdup(name);
	r->tenant = strdup(tenant);
	return r;
}

static void push(struct ids_strv *v, const char *s)
{
	assert_int_equal(ids_strv_push(v, s), 0);
}

static void rules_setup(void)
{
	struct ids_rule *r = rule("cz-operators", "support-cz");
	push(&r->member_of, "CC-Support-CZ-Operators");
	push(&r->roles, "operator");
	r->slots = calloc(1, sizeof(*r->slots));
	r->slots[0] = (struct ids_rule_slot){strdup("live"), 2};
	r->nslots = 1;

	r = rule("ops-by-regex", "{1}-{2}");
	r->member_of_regex = strdup("^CC-([A-Za-z]+)-([A-Z]+)-Operators$");
	assert_int_equal(regcomp(&r->group_re, r->member_of_regex, REG_EXTENDED), 0);
	r->group_re_nsub = r->group_re.re_nsub;
	push(&r->channels, "whatsapp");

	r = rule("seniors", "support-cz");
	push(&r->member_of, "cc-seniors"); /* any case */
	r->slots = calloc(1, sizeof(*r->slots));
	r->slots[0] = (struct ids_rule_slot){strdup("live"), 4};
	r->nslots = 1;

	r = rule("support-dept", "support-cz");
	r->attrs = calloc(1, sizeof(*r->attrs));
	r->attrs[0] = (struct ids_rule_attr){strdup("department"), strdup("^Customer"), {0}};
	assert_int_equal(regcomp(&r->attrs[0].re, "^Customer", REG_EXTENDED), 0);
	r->nattrs = 1;
	push(&r->channels, "email");

	r = rule("no-whatsapp-de", "sales-de");
	push(&r->member_of, "CC-Seniors");
	r->revoke = true;
	push(&r->revoke_channels, "whatsapp");

	r = rule("google-admins", "support-cz");
	push(&r->connectors, "gws");
	push(&r->member_of, "CC-All-Operators");
	push(&r->roles, "admin");

	r = rule("juniors", "support-cz");
	push(&r->member_of, "CC-All-Operators");
	push(&r->not_member_of, "CC-Seniors");
	push(&r->roles, "viewer");
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(ids_snapshot_new(&S), 0);
	group("g-ocz", "CC-Support-CZ-Operators");
	group("g-all", "CC-All-Operators");
	group("g-team", "Team-7");
	group("g-sde", "CC-Sales-DE-Operators");
	group("g-sen", "CC-Seniors");
	user("id-1", "jnovak", "Customer Support", "jan.novak@corp.example");
	assert_int_equal(ids_snapshot_user_end(S), 0);
	user("id-2", "pdvorak", "Sales", NULL);
	assert_int_equal(ids_snapshot_user_end(S), 0);
	user("id-3", "off", NULL, NULL);
	assert_int_equal(ids_snapshot_user_disabled(S, true), 0);
	assert_int_equal(ids_snapshot_user_end(S), 0);
	user("id-4", "anna", NULL, "anna@corp.example");
	assert_int_equal(ids_snapshot_user_end(S), 0);
	member("g-ocz", "g-all");
	member("g-all", "g-team");
	member("g-team", "id-1");
	member("g-sde", "id-1");
	member("g-sen", "id-1");
	member("g-team", "id-3");
	member("g-team", "id-4");
	assert_int_equal(ids_snapshot_finish(S), 0);
	rules_setup();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < NR; i++)
		ids_rule_clear(&R[i]);
	ids_snapshot_free(S);
	return 0;
}

static const struct ids_diff_opts DOPT = {.connector = "corp", .idp = "ldap", .adopt_by_email = true};

static struct ids_explanation *explain(const char *who, const struct ids_current *cur)
{
	size_t idx;
	struct ids_explanation *x = NULL;
	assert_int_equal(ids_explain_find(S, who, &idx), 0);
	const struct ids_explain_in in = {.s = S, .rules = R, .nrules = NR, .dopt = &DOPT, .cur = cur};
	assert_int_equal(ids_explain(&in, idx, &x), 0);
	return x;
}

static const struct ids_explain_rule *xrule(const struct ids_explanation *x, const char *name)
{
	for (size_t i = 0; i < x->nrules; i++)
		if (!strcmp(x->rules[i].rule->name, name))
			return &x->rules[i];
	fail_msg("no rule %s", name);
	return NULL;
}

/* "tenant kind name[=slots] [rules] db next" per grant, "; "-joined. */
static const char *render(const struct ids_explanation *x)
{
	static char buf[2048];
	size_t n = 0;
	buf[0] = 0;
	for (size_t i = 0; i < x->ngrants; i++) {
		const struct ids_explain_grant *g = &x->grants[i];
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s%s %s %s", i ? "; " : "",
				      g->revoked ? "revoked " : "", g->tenant, ids_grant_kind_name(g->kind),
				      g->name);
		if (g->kind == IDS_GRANT_SLOT)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "=%d", g->slots);
		for (size_t k = 0; k < g->noffers; k++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s:%d", k ? "," : " offers ",
					      g->offers[k].rule, g->offers[k].slots);
		for (size_t k = 0; g->rules && k < g->rules->n; k++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", k ? "," : " [",
					      g->rules->names[k]);
		if (g->rules)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "]");
		if (g->db != IDS_XD_NONE)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s", ids_explain_db_word(g->db));
		if (g->next)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " (%s)", g->next);
	}
	return buf;
}

static void test_find(void **state)
{
	(void)state;
	size_t idx = 99;
	assert_int_equal(ids_explain_find(S, "id-2", &idx), 0);
	assert_string_equal(S->users[idx].f[IDS_F_USERNAME], "pdvorak");
	assert_int_equal(ids_explain_find(S, "JNovak", &idx), 0);
	assert_string_equal(S->users[idx].f[IDS_F_USERNAME], "jnovak");
	assert_int_equal(ids_explain_find(S, "Anna@Corp.Example", &idx), 0);
	assert_string_equal(S->users[idx].f[IDS_F_USERNAME], "anna");
	assert_int_equal(ids_explain_find(S, "nobody", &idx), -ENOENT);
	assert_int_equal(ids_explain_find(S, "ID-2", &idx), -ENOENT); /* ids are exact */
}

/* Nested groups, a regex capture as tenant, an attribute, slot offers,
 * a revoke, and why the other rules did not match. */
static void test_rules_side(void **state)
{
	(void)state;
	struct ids_explanation *x = explain("jnovak", NULL);
	assert_true(x->in_scope);
	assert_null(x->scope_why);
	assert_false(x->db);
	assert_true(xrule(x, "cz-operators")->matched);
	assert_string_equal(xrule(x, "cz-operators")->why,
			    "group CC-Support-CZ-Operators \u2190 CC-All-Operators \u2190 Team-7");
	assert_int_equal(xrule(x, "cz-operators")->granted, 2);
	assert_string_equal(xrule(x, "ops-by-regex")->why,
			    "group CC-Support-CZ-Operators \u2190 CC-All-Operators \u2190 Team-7; "
			    "group CC-Sales-DE-Operators");
	assert_int_equal(xrule(x, "ops-by-regex")->granted, 2);
	assert_string_equal(xrule(x, "seniors")->why, "group CC-Seniors");
	assert_string_equal(xrule(x, "support-dept")->why, "attribute department = \"Customer Support\"");
	assert_true(xrule(x, "no-whatsapp-de")->matched);
	assert_false(xrule(x, "google-admins")->matched);
	assert_string_equal(xrule(x, "google-admins")->why,
			    "connector corp not listed (the rule is for gws)");
	assert_false(xrule(x, "juniors")->matched);
	assert_string_equal(xrule(x, "juniors")->why, "in group CC-Seniors, which not_member_of excludes");
	assert_string_equal(render(x), "support-cz role operator [cz-operators]; "
				       "support-cz chan email [support-dept]; "
				       "support-cz chan whatsapp [ops-by-regex]; "
				       "support-cz slot live=4 offers cz-operators:2,seniors:4 [seniors]; "
				       "revoked sales-de chan whatsapp [no-whatsapp-de]");
	ids_explanation_free(x);
}

/* catalog.requires: explain shows the role a requirement adds, named by
 * what required it, as the sync's evaluation does */
static void test_requires(void **state)
{
	(void)state;
	struct ids_catalog_rules cr = {0};
	cr.req = calloc(1, sizeof(*cr.req));
	cr.req[0].role = strdup("operator");
	ids_strv_push(&cr.req[0].needs, "view_operators");
	cr.nreq = 1;
	size_t idx;
	struct ids_explanation *x = NULL;
	assert_int_equal(ids_explain_find(S, "jnovak", &idx), 0);
	const struct ids_explain_in in = {.s = S, .rules = R, .nrules = NR, .dopt = &DOPT, .catalog = &cr};
	assert_int_equal(ids_explain(&in, idx, &x), 0);
	const char *got = render(x);
	assert_non_null(strstr(got, "support-cz role operator [cz-operators]"));
	assert_non_null(strstr(got, "support-cz role view_operators [required by operator]"));
	ids_explanation_free(x);
	ids_catalog_rules_clear(&cr);
}

static void test_out_of_scope(void **state)
{
	(void)state;
	struct ids_explanation *x = explain("pdvorak", NULL);
	assert_false(x->in_scope);
	assert_string_equal(x->scope_why, "no grant rule matched (or the matching ones granted nothing)");
	assert_string_equal(xrule(x, "cz-operators")->why, "not in group \"CC-Support-CZ-Operators\"");
	assert_string_equal(xrule(x, "ops-by-regex")->why,
			    "no group of the user matches /^CC-([A-Za-z]+)-([A-Z]+)-Operators$/");
	assert_string_equal(xrule(x, "support-dept")->why,
			    "attribute department = \"Sales\" does not match /^Customer/");
	assert_int_equal(x->ngrants, 0);
	ids_explanation_free(x);

	x = explain("off", NULL);
	assert_false(x->in_scope);
	assert_string_equal(x->scope_why, "disabled in the source");
	ids_explanation_free(x);
}

static void cur_grant(struct ids_current *c, int64_t uid, enum ids_grant_kind k, const char *tenant,
		      const char *name, int slots, bool manual, const char *rules)
{
	struct ids_cur_grant g = {.user_id = uid,
				  .kind = (unsigned char)k,
				  .tenant = tenant,
				  .name = name,
				  .slots = slots,
				  .manual = manual};
	assert_int_equal(ids_current_add_grant_rules(c, &g, rules), 0);
}

/* The database side: each grant present, missing or manual, rows the
 * rules do not give, and what the next run does; owned and adopted rows. */
static void test_database_side(void **state)
{
	(void)state;
	struct ids_current *c = NULL;
	assert_int_equal(ids_current_new(&c), 0);
	assert_int_equal(ids_current_add_tenant(c, "support-cz"), 0);
	struct ids_cur_user jn = {.id = 10,
				  .source = "corp",
				  .external_id = "id-1",
				  .username = "jnovak",
				  .email = "jan.novak@corp.example",
				  .auth_method = "sso",
				  .idp = "ldap",
				  .active = true};
	struct ids_cur_user an = {.id = 11,
				  .username = "anna.h",
				  .email = "anna@corp.example",
				  .auth_method = "activation_link",
				  .active = true};
	assert_int_equal(ids_current_add_user(c, &jn), 0);
	assert_int_equal(ids_current_add_user(c, &an), 0);
	cur_grant(c, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, false, "cz-operators");
	cur_grant(c, 10, IDS_GRANT_CHANNEL, "support-cz", "email", 0, true, NULL);
	cur_grant(c, 10, IDS_GRANT_CHANNEL, "support-cz", "webchat", 0, false, "old-rule");
	cur_grant(c, 10, IDS_GRANT_SLOT, "support-cz", "live", 2, false, "cz-operators");
	cur_grant(c, 10, IDS_GRANT_ROLE, "support-cz", "auditor", 0, true, NULL);

	struct ids_explanation *x = explain("jnovak", c);
	assert_true(x->db);
	assert_int_equal(x->ident, IDS_XI_OWNED);
	assert_int_equal(x->user_id, 10);
	assert_null(x->next_user);
	assert_string_equal(render(x),
			    "support-cz role operator [cz-operators] present; "
			    "support-cz chan email [support-dept] manual; "
			    "support-cz chan whatsapp [ops-by-regex] missing (add); "
			    "support-cz slot live=4 offers cz-operators:2,seniors:4 [seniors] present "
			    "(set slots 2 -> 4); "
			    "revoked sales-de chan whatsapp [no-whatsapp-de] missing; "
			    "support-cz chan webchat extra (remove); "
			    "support-cz role auditor manual");
	ids_explanation_free(x);

	x = explain("anna", c);
	assert_int_equal(x->ident, IDS_XI_ADOPTED);
	assert_int_equal(x->user_id, 11);
	assert_string_equal(x->ident_why, "anna.h");
	assert_string_equal(x->next_user, "adopt");
	ids_explanation_free(x);

	x = explain("pdvorak", c);
	assert_int_equal(x->ident, IDS_XI_ABSENT);
	assert_int_equal(x->user_id, 0);
	ids_explanation_free(x);
	ids_current_free(c);
}

/* Licences: the user's place as the next run sets it, from a seat book
 * whose order of entitlement (jnovak run 5, anna run 7) is not the
 * usernames' — the line follows the entitlement. */
static struct ids_explain_seat seat_of(const struct ids_current *c, const struct ids_seat_book *book,
				       long limit, const char *who)
{
	struct ids_catalog_rules cr = {0};
	cr.lic = calloc(1, sizeof(*cr.lic));
	cr.lic[0] = (struct ids_licence){strdup("acme"), strdup("operator"), limit};
	cr.nlic = 1;
	size_t idx;
	struct ids_explanation *x = NULL;
	assert_int_equal(ids_explain_find(S, who, &idx), 0);
	const struct ids_explain_in in = {.s = S,
					  .rules = R,
					  .nrules = NR,
					  .dopt = &DOPT,
					  .cur = c,
					  .catalog = &cr,
					  .company = "acme",
					  .seats = book};
	assert_int_equal(ids_explain(&in, idx, &x), 0);
	assert_int_equal(x->nseats, 1);
	assert_string_equal(x->company, "acme");
	struct ids_explain_seat e = x->seats[0];
	assert_string_equal(e.role, "operator");
	e.role = NULL; /* the catalog's, freed below */
	/* a seat the licence withholds is a left-out grant, never an "add" */
	for (size_t i = 0; i < x->ngrants; i++)
		if (!strcmp(x->grants[i].name, "operator") && x->grants[i].kind == IDS_GRANT_ROLE)
			assert_true(x->grants[i].wanted ==
				    (e.state == IDS_XS_HOLDER || e.state == IDS_XS_SEATED));
	ids_explanation_free(x);
	ids_catalog_rules_clear(&cr);
	return e;
}

static void test_licences(void **state)
{
	(void)state;
	struct ids_current *c = NULL;
	assert_int_equal(ids_current_new(&c), 0);
	assert_int_equal(ids_current_add_tenant(c, "support-cz"), 0);
	struct ids_cur_user jn = {.id = 10,
				  .source = "corp",
				  .external_id = "id-1",
				  .username = "jnovak",
				  .auth_method = "sso",
				  .idp = "ldap",
				  .active = true};
	struct ids_cur_user an = {.id = 11,
				  .source = "corp",
				  .external_id = "id-4",
				  .username = "anna",
				  .auth_method = "sso",
				  .idp = "ldap",
				  .active = true};
	assert_int_equal(ids_current_add_user(c, &jn), 0);
	assert_int_equal(ids_current_add_user(c, &an), 0);
	cur_grant(c, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, false, "cz-operators");
	struct ids_seat_book book = {0}, none = {0};
	const struct ids_seat rows[] = {
	    {.role = "operator", .external_id = "id-1", .entitled_run = 5, .seat_run = 3, .seated = true},
	    {.role = "operator", .external_id = "id-4", .entitled_run = 7},
	};
	for (size_t i = 0; i < 2; i++)
		assert_int_equal(ids_seat_book_add(&book, &rows[i]), 0);

	/* one seat: jnovak keeps it, anna waits */
	struct ids_explain_seat e = seat_of(c, &book, 1, "jnovak");
	assert_int_equal(e.state, IDS_XS_HOLDER);
	assert_int_equal(e.seat_run, 3);
	assert_int_equal(e.entitled_run, 5);
	assert_true(e.used == 1 && e.limit == 1 && e.waiting == 1);
	e = seat_of(c, &book, 1, "anna");
	assert_int_equal(e.state, IDS_XS_WAITING);
	assert_true(e.position == 1 && e.of == 1 && e.entitled_run == 7);

	/* none left: jnovak's seat goes, and he waits first (entitled
	 * earlier), although "anna" sorts first */
	e = seat_of(c, &book, 0, "jnovak");
	assert_int_equal(e.state, IDS_XS_REVOKED);
	assert_true(e.seat_run == 3 && e.position == 1 && e.of == 2);
	assert_true(e.used == 0 && e.limit == 0 && e.waiting == 2);
	e = seat_of(c, &book, 0, "anna");
	assert_int_equal(e.state, IDS_XS_WAITING);
	assert_true(e.position == 2 && e.of == 2);

	/* two: anna is seated by the next run */
	e = seat_of(c, &book, 2, "anna");
	assert_int_equal(e.state, IDS_XS_SEATED);
	assert_true(e.entitled_run == 7 && e.used == 2 && e.waiting == 0);

	/* no book yet (licences just configured): jnovak's seat is from
	 * before the book, anna is entitled from the next run */
	e = seat_of(c, &none, 1, "jnovak");
	assert_true(e.state == IDS_XS_HOLDER && e.seat_run == 0);
	e = seat_of(c, &none, 1, "anna");
	assert_true(e.state == IDS_XS_WAITING && e.entitled_run == 0 && e.position == 1);

	ids_seat_book_clear(&book);
	ids_current_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_find),	  cmocka_unit_test(test_rules_side),
	    cmocka_unit_test(test_requires),	  cmocka_unit_test(test_out_of_scope),
	    cmocka_unit_test(test_database_side), cmocka_unit_test(test_licences),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
