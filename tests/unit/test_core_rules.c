/* test_core_rules.c — the rules engine: matching (member_of by DN / id /
 * name / e-mail, transitive; not_member_of; attribute regexes;
 * member_of_regex with captures), tenant templates, the combination table,
 * revokes, scope, and independence from rule order.
 *
 * The fixture directory (built once):
 *
 *   groups  g-sup  CC-Support-CZ            cc-support-cz@corp.example
 *                  cn=CC-Support-CZ,ou=groups,dc=corp,dc=example
 *           g-sen  CC-Support-CZ-Seniors    (a member of g-sup)
 *           g-ocz  CC-Support-CZ-Operators
 *           g-ode  CC-Sales-DE-Operators
 *           g-adm  CC-Company-Admins
 *           g-sus  CC-Suspended
 *   users   jnovak   in g-sen, g-ocz, g-ode   department "Customer Support",
 *                    employeeType staff, tenantAttr "Support-CZ"
 *           pdvorak  in g-sup, g-sus          employeeType contractor
 *           boss     in g-adm
 *           nobody   in nothing
 *           badattr  in g-sup                 tenantAttr "-Bad"
 *           broken   in g-sup                 invalid
 *           kamil    in g-ocz                 employeeType "contractor", "staff"
 *
 * Expected results are written out as text by render():
 * "in|out[+admin]:" then " tenant:kind:name[=slots]" per grant. */
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

#include "ids/rules.h"
#include "ids/snapshot.h"

static struct ids_snapshot *S;

/* ---------------- fixture ---------------- */

static void uset(enum ids_field f, const char *v)
{
	assert_int_equal(ids_snapshot_user_set(S, f, v, strlen(v)), 0);
}

static void uattr(const char *name, const char *v)
{
	assert_int_equal(ids_snapshot_user_attr(S, name, v, strlen(v)), 0);
}

static void add_group(const char *id, const char *name, const char *email, const char *dn)
{
	assert_int_equal(ids_snapshot_group_begin(S), 0);
	assert_int_equal(ids_snapshot_group_set(S, IDS_F_EXTERNAL_ID, id, strlen(id)), 0);
	assert_int_equal(ids_snapshot_group_set(S, IDS_F_USERNAME, name, strlen(name)), 0);
	if (email)
		assert_int_equal(ids_snapshot_group_set(S, IDS_F_EMAIL, email, strlen(email)), 0);
	if (dn)
		assert_int_equal(ids_snapshot_group_set(S, IDS_F_DN, dn, strlen(dn)), 0);
	assert_int_equal(ids_snapshot_group_end(S), 0);
}

static void member(const char *group, const char *ref)
{
	assert_int_equal(ids_snapshot_member(S, group, IDS_REF_ID, ref, strlen(ref)), 0);
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(ids_snapshot_new(&S), 0);
	add_group("g-sup", "CC-Support-CZ", "cc-support-cz@corp.example",
		  "cn=CC-Support-CZ,ou=groups,dc=corp,dc=example");
	add_group("g-sen", "CC-Support-CZ-Seniors", NULL, NULL);
	add_group("g-ocz", "CC-Support-CZ-Operators", NULL, NULL);
	add_group("g-ode", "CC-Sales-DE-Operators", NULL, NULL);
	add_group("g-adm", "CC-Company-Admins", NULL, NULL);
	add_group("g-sus", "CC-Suspended", NULL, NULL);

	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, "id-1");
	uset(IDS_F_USERNAME, "jnovak");
	uattr("department", "Customer Support");
	uattr("employeeType", "staff");
	uattr("tenantAttr", "Support-CZ");
	assert_int_equal(ids_snapshot_user_end(S), 0);

	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, "id-2");
	uset(IDS_F_USERNAME, "pdvorak");
	uattr("employeeType", "contractor");
	assert_int_equal(ids_snapshot_user_end(S), 0);

	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, "id-3");
	uset(IDS_F_USERNAME, "boss");
	assert_int_equal(ids_snapshot_user_end(S), 0);

	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, "id-4");
	uset(IDS_F_USERNAME, "nobody");
	assert_int_equal(ids_snapshot_user_end(S), 0);

	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, "id-5");
	uset(IDS_F_USERNAME, "badattr");
	uattr("tenantAttr", "-Bad");
	assert_int_equal(ids_snapshot_user_end(S), 0);

	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, "id-6");
	uset(IDS_F_USERNAME, "broken");
	assert_int_equal(ids_snapshot_user_invalid(S, "bad data"), 0);
	assert_int_equal(ids_snapshot_user_end(S), 0);

	assert_int_equal(ids_snapshot_user_begin(S), 0);
	uset(IDS_F_EXTERNAL_ID, "id-7");
	uset(IDS_F_USERNAME, "kamil");
	uattr("employeeType", "contractor");
	uattr("employeeType", "staff");
	assert_int_equal(ids_snapshot_user_end(S), 0);

	member("g-sup", "g-sen");
	member("g-sen", "id-1");
	member("g-ocz", "id-1");
	member("g-ode", "id-1");
	member("g-sup", "id-2");
	member("g-sus", "id-2");
	member("g-adm", "id-3");
	member("g-sup", "id-5");
	member("g-sup", "id-6");
	member("g-ocz", "id-7");
	assert_int_equal(ids_snapshot_finish(S), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ids_snapshot_free(S);
	return 0;
}

/* ---------------- building rules the way the config loader does ---------------- */

#define MAXR 8
static struct ids_rule R[MAXR];
static size_t NR;

static int rules_reset(void **state)
{
	(void)state;
	for (size_t i = 0; i < MAXR; i++)
		ids_rule_clear(&R[i]);
	NR = 0;
	return 0;
}

static struct ids_rule *rule(const char *name)
{
	assert_true(NR < MAXR);
	struct ids_rule *r = &R[NR++];
	memset(r, 0, sizeof(*r));
	r->name = strdup(name);
	return r;
}

/* Pushes the NULL-terminated list of strings onto sv. */
static void sv(struct ids_strv *v, ...)
{
	va_list ap;
	va_start(ap, v);
	for (const char *s; (s = va_arg(ap, const char *));)
		assert_int_equal(ids_strv_push(v, s), 0);
	va_end(ap);
}

static void r_attr(struct ids_rule *r, const char *name, const char *pattern)
{
	r->attrs = realloc(r->attrs, (r->nattrs + 1) * sizeof(*r->attrs));
	assert_non_null(r->attrs);
	struct ids_rule_attr *a = &r->attrs[r->nattrs++];
	a->name = strdup(name);
	a->pattern = strdup(pattern);
	assert_int_equal(regcomp(&a->re, pattern, REG_EXTENDED), 0);
}

static void r_regex(struct ids_rule *r, const char *re)
{
	r->member_of_regex = strdup(re);
	assert_int_equal(regcomp(&r->group_re, re, REG_EXTENDED), 0);
	r->group_re_nsub = r->group_re.re_nsub;
}

static void r_tenant(struct ids_rule *r, const char *t)
{
	r->tenant = strdup(t);
}

static void r_slot(struct ids_rule *r, const char *group, int n)
{
	r->slots = realloc(r->slots, (r->nslots + 1) * sizeof(*r->slots));
	assert_non_null(r->slots);
	r->slots[r->nslots].channel_group = strdup(group);
	r->slots[r->nslots++].slots = n;
}

/* ---------------- evaluating and rendering ---------------- */

static struct ids_desired_set *eval_rules(const struct ids_rule *rules, size_t n, const char *conn)
{
	struct ids_desired_set *d = NULL;
	assert_int_equal(ids_rules_eval(rules, n, conn, S, &d), 0);
	assert_non_null(d);
	assert_int_equal(d->nusers, S->nusers);
	return d;
}

static struct ids_desired_set *eval(void)
{
	return eval_rules(R, NR, "corp");
}

static size_t uidx(const char *username)
{
	for (size_t i = 0; i < S->nusers; i++)
		if (strcmp(S->users[i].f[IDS_F_USERNAME], username) == 0)
			return i;
	fail_msg("no user %s", username);
	return 0;
}

static const char *render(const struct ids_desired_set *d, const char *username)
{
	static char buf[4096];
	const struct ids_desired *u = &d->users[uidx(username)];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s%s:", u->in_scope ? "in" : "out",
				    u->company_admin ? "+admin" : "");
	for (size_t i = 0; i < u->ngrants; i++) {
		const struct ids_grant *g = &u->grants[i];
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s:%s:%s", g->tenant,
				      ids_grant_kind_name(g->kind), g->name);
		if (g->kind == IDS_GRANT_SLOT)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "=%d", g->slots);
	}
	return buf;
}

#define EXPECT(d, user, want) assert_string_equal(render(d, user), want)

/* What revoke rules took from a user: " tenant:kind:name<revoke rules>". */
static const char *render_revoked(const struct ids_desired_set *d, const char *username)
{
	static char buf[1024];
	const struct ids_desired *u = &d->users[uidx(username)];
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = u->ngrants; i < u->ngrants + u->nrevoked; i++) {
		const struct ids_grant *g = &u->grants[i];
		const struct ids_rule_list *l = ids_rule_list_get(d->rule_lists, d->nrule_lists, g->rules);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s:%s:%s<", g->tenant,
				      ids_grant_kind_name(g->kind), g->name);
		for (size_t j = 0; l && j < l->n; j++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", j ? "," : "", l->names[j]);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ">");
	}
	return buf;
}

/* render() with the rules of every grant: " tenant:kind:name[=slots]<r1,r2>" */
static const char *render_rules(const struct ids_desired_set *d, const char *username)
{
	static char buf[4096];
	const struct ids_desired *u = &d->users[uidx(username)];
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < u->ngrants; i++) {
		const struct ids_grant *g = &u->grants[i];
		const struct ids_rule_list *l = ids_rule_list_get(d->rule_lists, d->nrule_lists, g->rules);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s:%s:%s", i ? " " : "", g->tenant,
				      ids_grant_kind_name(g->kind), g->name);
		if (g->kind == IDS_GRANT_SLOT)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "=%d", g->slots);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "<");
		for (size_t j = 0; l && j < l->n; j++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", j ? "," : "", l->names[j]);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ">");
	}
	return buf;
}

/* ---------------- small functions ---------------- */

static void test_kind_names_and_slugs(void **state)
{
	(void)state;
	assert_string_equal(ids_grant_kind_name(IDS_GRANT_ROLE), "role");
	assert_string_equal(ids_grant_kind_name(IDS_GRANT_CHANNEL), "chan");
	assert_string_equal(ids_grant_kind_name(IDS_GRANT_GROUP), "group");
	assert_string_equal(ids_grant_kind_name(IDS_GRANT_SLOT), "slot");

	assert_true(ids_slug_valid("support-cz"));
	assert_true(ids_slug_valid("a"));
	assert_true(ids_slug_valid("0_x-"));
	char s63[64], s64[65];
	memset(s63, 'a', 63);
	s63[63] = '\0';
	memset(s64, 'a', 64);
	s64[64] = '\0';
	assert_true(ids_slug_valid(s63));
	assert_false(ids_slug_valid(s64));
	assert_false(ids_slug_valid(""));
	assert_false(ids_slug_valid(NULL));
	assert_false(ids_slug_valid("-x"));
	assert_false(ids_slug_valid("_x"));
	assert_false(ids_slug_valid("Support"));
	assert_false(ids_slug_valid("a b"));
	assert_false(ids_slug_valid("a.b"));
	assert_false(ids_slug_valid("č"));
}

static void test_for_connector(void **state)
{
	(void)state;
	struct ids_rule *r = rule("r");
	assert_true(ids_rule_for_connector(r, "corp"));
	sv(&r->connectors, "corp", "gws", NULL);
	assert_true(ids_rule_for_connector(r, "corp"));
	assert_true(ids_rule_for_connector(r, "gws"));
	assert_false(ids_rule_for_connector(r, "other"));
	assert_false(ids_rule_for_connector(r, "CORP"));
	assert_false(ids_rule_for_connector(NULL, "corp"));
}

static void test_check_template(void **state)
{
	(void)state;
	static const struct {
		const char *tenant, *regex;
		bool revoke;
		bool ok;
	} cases[] = {
	    {"support-cz", NULL, false, true},
	    {"{1}-{2}", "^CC-([a-z]+)-([a-z]+)$", false, true},
	    {"x{0}", "^CC-([a-z]+)$", false, true},
	    {"{3}", "^CC-([a-z]+)-([a-z]+)$", false, false}, /* only 2 captures */
	    {"{1}", NULL, false, false},		     /* no regex at all */
	    {"{attr.department}", NULL, false, true},
	    {"t-{attr.customSchemas.CC.tenant}-{1}", "^(x)$", false, true},
	    {"{attr.}", NULL, false, false},
	    {"{foo}", NULL, false, false},
	    {"{1x}", "^(a)$", false, false},
	    {"{}", NULL, false, false},
	    {"a{1", "^(a)$", false, false},
	    {"a}", NULL, false, false},
	    {"{{1}}", "^(a)$", false, false},
	    {"Support-{1}", "^(a)$", false, false}, /* literal text is not lowered */
	    {"-{1}", "^(a)$", false, false},
	    {"Support", NULL, false, false},
	    {"*", NULL, true, true},
	    {"*", NULL, false, false}, /* "*" only in revoke rules */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ids_rule *r = rule("t");
		r_tenant(r, cases[i].tenant);
		if (cases[i].regex)
			r_regex(r, cases[i].regex);
		r->revoke = cases[i].revoke;
		const char *why = NULL;
		int ret = ids_rule_check_template(r, &why);
		if (cases[i].ok && ret != 0)
			fail_msg("\"%s\": refused: %s", cases[i].tenant, why);
		if (!cases[i].ok && (ret != -EINVAL || !why || !*why))
			fail_msg("\"%s\": accepted", cases[i].tenant);
		rules_reset(NULL);
	}
	/* no tenant (company_admin-only rule): nothing to check */
	struct ids_rule *r = rule("admins");
	assert_int_equal(ids_rule_check_template(r, NULL), 0);
}

static void test_rules_attrs(void **state)
{
	(void)state;
	struct ids_rule *r = rule("a");
	r_attr(r, "department", "x");
	r_attr(r, "employeeType", "y");
	r = rule("b");
	r_attr(r, "Department", "z"); /* the same attribute */
	r_tenant(r, "t-{attr.region}-{attr.DEPARTMENT}");
	r = rule("c");
	sv(&r->connectors, "other", NULL);
	r_attr(r, "onlyOther", "q");

	struct ids_strv out = {0};
	assert_int_equal(ids_strv_push(&out, "mail"), 0); /* added to, not replaced */
	assert_int_equal(ids_rules_attrs(R, NR, "corp", &out), 0);
	assert_int_equal(out.n, 4);
	assert_string_equal(out.v[0], "mail");
	assert_string_equal(out.v[1], "department");
	assert_string_equal(out.v[2], "employeeType");
	assert_string_equal(out.v[3], "region");
	ids_strv_free(&out);
	assert_int_equal(ids_rules_attrs(R, NR, "other", &out), 0);
	assert_int_equal(out.n, 4);
	assert_string_equal(out.v[3], "onlyOther");
	ids_strv_free(&out);
}

static void test_rule_clear(void **state)
{
	(void)state;
	/* everything the loader may fill; ASan/valgrind see any leak */
	struct ids_rule *r = rule("full");
	sv(&r->connectors, "corp", NULL);
	sv(&r->member_of, "a", NULL);
	sv(&r->not_member_of, "b", NULL);
	r_attr(r, "department", "^x");
	r_attr(r, "title", "y$");
	r_regex(r, "^(a)(b)$");
	r_tenant(r, "{1}{2}");
	sv(&r->roles, "operator", NULL);
	sv(&r->channels, "webchat", NULL);
	sv(&r->groups, "first-line", NULL);
	r_slot(r, "live", 2);
	sv(&r->revoke_roles, "x", NULL);
	sv(&r->revoke_channels, "y", NULL);
	sv(&r->revoke_groups, "z", NULL);
	ids_rule_clear(r);
	assert_null(r->name);
	assert_null(r->attrs);
	assert_int_equal(r->nattrs, 0);
	assert_null(r->member_of_regex);
	assert_int_equal(r->roles.n, 0);
	ids_rule_clear(r); /* twice is harmless */
	ids_rule_clear(NULL);
}

/* ---------------- matching ---------------- */

static void test_member_of_by_dn_id_name_email(void **state)
{
	(void)state;
	/* the same group named four ways, differently spelled each time */
	static const char *const refs[] = {
	    "CN=CC-Support-CZ , OU=Groups,DC=Corp,DC=Example", /* DN, normalized */
	    "G-SUP",					       /* id */
	    "cc-support-cz",				       /* name */
	    "CC-Support-CZ@Corp.Example",		       /* e-mail */
	};
	for (size_t i = 0; i < 4; i++) {
		struct ids_rule *r = rule("support");
		sv(&r->member_of, refs[i], NULL);
		r_tenant(r, "support-cz");
		sv(&r->roles, "operator", NULL);
		struct ids_desired_set *d = eval();
		/* jnovak only through g-sen (nested), pdvorak directly */
		EXPECT(d, "jnovak", "in: support-cz:role:operator");
		EXPECT(d, "pdvorak", "in: support-cz:role:operator");
		EXPECT(d, "boss", "out:");
		EXPECT(d, "nobody", "out:");
		/* the invalid user matches but gets nothing */
		EXPECT(d, "broken", "out:");
		ids_desired_set_free(d);
		rules_reset(NULL);
	}
	/* a reference that names no group matches nobody */
	struct ids_rule *r = rule("ghost");
	sv(&r->member_of, "CC-Nonexistent", NULL);
	r_tenant(r, "support-cz");
	sv(&r->roles, "operator", NULL);
	struct ids_desired_set *d = eval();
	for (size_t i = 0; i < S->nusers; i++)
		assert_false(d->users[i].in_scope);
	ids_desired_set_free(d);
}

static void test_not_member_of(void **state)
{
	(void)state;
	struct ids_rule *r = rule("support-not-suspended");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	sv(&r->not_member_of, "cc-suspended", NULL);
	r_tenant(r, "support-cz");
	sv(&r->roles, "operator", NULL);
	/* not_member_of alone: everyone but the member */
	r = rule("not-admin");
	sv(&r->not_member_of, "CC-Company-Admins", "g-sen", NULL);
	r_tenant(r, "all");
	sv(&r->channels, "webchat", NULL);
	struct ids_desired_set *d = eval();
	/* jnovak is in g-sen (not_member_of is transitive too) */
	EXPECT(d, "jnovak", "in: support-cz:role:operator");
	EXPECT(d, "pdvorak", "in: all:chan:webchat");
	EXPECT(d, "boss", "out:");
	EXPECT(d, "nobody", "in: all:chan:webchat");
	ids_desired_set_free(d);
}

static void test_attribute_regex(void **state)
{
	(void)state;
	struct ids_rule *r = rule("unanchored");
	r_attr(r, "department", "Support"); /* matches inside "Customer Support" */
	r_tenant(r, "t1");
	sv(&r->roles, "operator", NULL);
	r = rule("anchored");
	r_attr(r, "department", "^Support");
	r_tenant(r, "t2");
	sv(&r->roles, "operator", NULL);
	r = rule("both-attrs");
	r_attr(r, "DEPARTMENT", "Support$"); /* names are case-insensitive */
	r_attr(r, "employeeType", "^staff$");
	r_tenant(r, "t3");
	sv(&r->roles, "operator", NULL);
	r = rule("any-value");
	r_attr(r, "employeeType", "^staff$");
	r_tenant(r, "t4");
	sv(&r->roles, "operator", NULL);
	r = rule("case-sensitive-value");
	r_attr(r, "employeeType", "^STAFF$");
	r_tenant(r, "t5");
	sv(&r->roles, "operator", NULL);
	struct ids_desired_set *d = eval();
	EXPECT(d, "jnovak", "in: t1:role:operator t3:role:operator t4:role:operator");
	/* kamil's second employeeType value matches; no department: no t3 */
	EXPECT(d, "kamil", "in: t4:role:operator");
	/* no such attribute: no match */
	EXPECT(d, "boss", "out:");
	ids_desired_set_free(d);
}

static void test_member_of_regex_captures(void **state)
{
	(void)state;
	struct ids_rule *r = rule("operators-by-group");
	r_regex(r, "^CC-([A-Za-z]+)-([A-Za-z]+)-Operators$");
	r_tenant(r, "{1}-{2}");
	sv(&r->roles, "operator", NULL);
	sv(&r->channels, "webchat", NULL);
	r_slot(r, "live", 2);
	r->company_admin = true; /* only when a group matches */
	struct ids_desired_set *d = eval();
	/* one grant set per matching group; captures lower-cased */
	EXPECT(d, "jnovak",
	       "in+admin: sales-de:role:operator sales-de:chan:webchat sales-de:slot:live=2"
	       " support-cz:role:operator support-cz:chan:webchat support-cz:slot:live=2");
	EXPECT(d, "kamil",
	       "in+admin: support-cz:role:operator support-cz:chan:webchat support-cz:slot:live=2");
	/* no matching group: the rule does not match at all */
	EXPECT(d, "pdvorak", "out:");
	assert_int_equal(d->warnings.n, 0);
	ids_desired_set_free(d);
}

static void test_templates_attrs_and_bad_slug(void **state)
{
	(void)state;
	struct ids_rule *r = rule("by-attr");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "{attr.tenantattr}");
	sv(&r->roles, "operator", NULL);
	r = rule("mixed");
	r_regex(r, "^CC-([A-Za-z]+)-CZ-(Operators)(-Old)?$");
	r_tenant(r, "{2}-{attr.employeeType}{3}");
	sv(&r->groups, "ops", NULL);
	struct ids_desired_set *d = eval();
	/* "Support-CZ" lower-cased; {3} is an unmatched capture: empty */
	EXPECT(d, "jnovak", "in: operators-staff:group:ops support-cz:role:operator");
	/* kamil: the first employeeType value is used */
	EXPECT(d, "kamil", "in: operators-contractor:group:ops");
	/* "-Bad" -> "-bad", not a slug; pdvorak has no tenantAttr: "" */
	EXPECT(d, "badattr", "out:");
	EXPECT(d, "pdvorak", "out:");
	assert_int_equal(d->warnings.n, 2);
	assert_string_equal(d->warnings.v[0],
			    "user badattr: rule by-attr: tenant template gave invalid slug \"-bad\"");
	assert_string_equal(d->warnings.v[1],
			    "user pdvorak: rule by-attr: tenant template gave invalid slug \"\"");
	ids_desired_set_free(d);
}

static void test_regex_template_bad_slug(void **state)
{
	(void)state;
	/* a capture-only template: the tenant depends on the group alone */
	struct ids_rule *r = rule("dash");
	r_regex(r, "^CC(-[A-Za-z]+)-CZ-Operators$");
	r_tenant(r, "{1}"); /* "-support": a slug cannot start with '-' */
	sv(&r->roles, "operator", NULL);
	r = rule("good");
	r_regex(r, "^CC-([A-Za-z]+)-CZ-Operators$");
	r_tenant(r, "{1}");
	sv(&r->channels, "webchat", NULL);
	r = rule("dash-revoke");
	r_regex(r, "^CC(-[A-Za-z]+)-CZ-Operators$");
	r_tenant(r, "{1}");
	r->revoke = true;
	sv(&r->revoke_channels, "webchat", NULL);
	struct ids_desired_set *d = eval();
	/* the bad grant set and the bad revoke are skipped, the good one stays */
	EXPECT(d, "jnovak", "in: support:chan:webchat");
	EXPECT(d, "kamil", "in: support:chan:webchat");
	/* one warning per (user, rule), sorted */
	assert_int_equal(d->warnings.n, 4);
	assert_string_equal(d->warnings.v[0],
			    "user jnovak: rule dash-revoke: tenant template gave invalid slug \"-support\"");
	assert_string_equal(d->warnings.v[1],
			    "user jnovak: rule dash: tenant template gave invalid slug \"-support\"");
	assert_string_equal(d->warnings.v[2],
			    "user kamil: rule dash-revoke: tenant template gave invalid slug \"-support\"");
	assert_string_equal(d->warnings.v[3],
			    "user kamil: rule dash: tenant template gave invalid slug \"-support\"");
	ids_desired_set_free(d);
}

static void test_broken_template_skips_rule(void **state)
{
	(void)state;
	struct ids_rule *r = rule("bad-template");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "{1}"); /* no member_of_regex */
	sv(&r->roles, "operator", NULL);
	r->company_admin = true;
	struct ids_desired_set *d = eval();
	EXPECT(d, "pdvorak", "out:");
	assert_int_equal(d->warnings.n, 1);
	assert_non_null(strstr(d->warnings.v[0], "rule bad-template: "));
	ids_desired_set_free(d);
}

/* ---------------- combination ---------------- */

static void test_combination_table(void **state)
{
	(void)state;
	struct ids_rule *r = rule("base");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "support-cz");
	sv(&r->roles, "operator", NULL);
	sv(&r->channels, "webchat", NULL);
	sv(&r->groups, "first-line", NULL);
	r_slot(r, "live", 2);
	r_slot(r, "email", 5);
	r = rule("seniors");
	sv(&r->member_of, "CC-Support-CZ-Seniors", NULL);
	r_tenant(r, "support-cz");
	sv(&r->roles, "operator", "view_other_sessions", NULL);
	sv(&r->channels, "email", NULL);
	sv(&r->groups, "second-line", NULL);
	r_slot(r, "live", 4);
	r_slot(r, "offline", 1);
	r = rule("seniors-low");
	sv(&r->member_of, "g-sen", NULL);
	r_tenant(r, "support-cz");
	r_slot(r, "live", 1); /* lower than 4: the maximum stays */
	r = rule("admins");
	sv(&r->member_of, "CC-Company-Admins", NULL);
	r->company_admin = true;
	r = rule("not-admin");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r->company_admin = false;
	r = rule("elsewhere");
	sv(&r->member_of, "CC-Support-CZ-Seniors", NULL);
	r_tenant(r, "billing");
	sv(&r->roles, "operator", NULL);
	struct ids_desired_set *d = eval();
	/* roles, channels, groups: union; slots per (tenant, group): max;
	 * sorted by tenant, then role < chan < group < slot, then name */
	EXPECT(d, "jnovak",
	       "in: billing:role:operator"
	       " support-cz:role:operator support-cz:role:view_other_sessions"
	       " support-cz:chan:email support-cz:chan:webchat"
	       " support-cz:group:first-line support-cz:group:second-line"
	       " support-cz:slot:email=5 support-cz:slot:live=4 support-cz:slot:offline=1");
	EXPECT(d, "pdvorak",
	       "in: support-cz:role:operator support-cz:chan:webchat support-cz:group:first-line"
	       " support-cz:slot:email=5 support-cz:slot:live=2");
	/* company admin only: in scope with no grant */
	EXPECT(d, "boss", "in+admin:");
	EXPECT(d, "nobody", "out:");
	/* every grant names the rules that gave it, sorted by name: a union
	 * names all of them, a slot only those that gave the maximum */
	assert_string_equal(render_rules(d, "jnovak"),
			    "billing:role:operator<elsewhere>"
			    " support-cz:role:operator<base,seniors>"
			    " support-cz:role:view_other_sessions<seniors>"
			    " support-cz:chan:email<seniors> support-cz:chan:webchat<base>"
			    " support-cz:group:first-line<base> support-cz:group:second-line<seniors>"
			    " support-cz:slot:email=5<base> support-cz:slot:live=4<seniors>"
			    " support-cz:slot:offline=1<seniors>");
	assert_string_equal(render_rules(d, "pdvorak"),
			    "support-cz:role:operator<base> support-cz:chan:webchat<base>"
			    " support-cz:group:first-line<base> support-cz:slot:email=5<base>"
			    " support-cz:slot:live=2<base>");
	ids_desired_set_free(d);
}

/* Two rules giving the same slot count both decided it; one rule adding
 * a grant twice (two matching groups, one tenant) is named once. */
static void test_rule_names_ties_and_repeats(void **state)
{
	(void)state;
	struct ids_rule *r = rule("z-live");
	sv(&r->member_of, "g-ocz", NULL);
	r_tenant(r, "support-cz");
	r_slot(r, "live", 3);
	r = rule("a-live");
	sv(&r->member_of, "g-ode", NULL);
	r_tenant(r, "support-cz");
	r_slot(r, "live", 3);
	r = rule("ops");
	r_regex(r, "^CC-[A-Za-z]+-[A-Z]+-Operators$");
	r_tenant(r, "support-cz");
	sv(&r->roles, "operator", NULL);
	struct ids_desired_set *d = eval();
	assert_string_equal(render_rules(d, "jnovak"),
			    "support-cz:role:operator<ops> support-cz:slot:live=3<a-live,z-live>");
	assert_string_equal(render_rules(d, "kamil"),
			    "support-cz:role:operator<ops> support-cz:slot:live=3<z-live>");
	ids_desired_set_free(d);
}

static void test_matching_without_grants_is_out_of_scope(void **state)
{
	(void)state;
	struct ids_rule *r = rule("empty");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "support-cz");
	struct ids_desired_set *d = eval();
	EXPECT(d, "pdvorak", "out:");
	ids_desired_set_free(d);
}

static void test_slot_zero_is_a_grant(void **state)
{
	(void)state;
	struct ids_rule *r = rule("zero");
	sv(&r->member_of, "CC-Suspended", NULL);
	r_tenant(r, "support-cz");
	r_slot(r, "live", 0);
	struct ids_desired_set *d = eval();
	EXPECT(d, "pdvorak", "in: support-cz:slot:live=0");
	ids_desired_set_free(d);
}

/* ---------------- revoke ---------------- */

static void add_grant_rule(void)
{
	struct ids_rule *r = rule("grant");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "support-cz");
	sv(&r->roles, "operator", NULL);
	sv(&r->channels, "webchat", "whatsapp", NULL);
	sv(&r->groups, "first-line", NULL);
}

static void add_revoke_rule(void)
{
	struct ids_rule *r = rule("no-whatsapp-for-contractors");
	r_attr(r, "employeeType", "^contractor$");
	r_tenant(r, "support-cz");
	r->revoke = true;
	sv(&r->revoke_channels, "whatsapp", NULL);
	/* grants in a revoke rule are ignored */
	sv(&r->roles, "tenant_admin", NULL);
}

static void test_revoke_wins_both_orders(void **state)
{
	(void)state;
	for (int order = 0; order < 2; order++) {
		if (order == 0) {
			add_grant_rule();
			add_revoke_rule();
		} else {
			add_revoke_rule();
			add_grant_rule();
		}
		struct ids_desired_set *d = eval();
		EXPECT(d, "jnovak",
		       "in: support-cz:role:operator support-cz:chan:webchat support-cz:chan:whatsapp"
		       " support-cz:group:first-line");
		EXPECT(d, "pdvorak",
		       "in: support-cz:role:operator support-cz:chan:webchat support-cz:group:first-line");
		/* kamil is a contractor that no grant rule matches: nothing */
		EXPECT(d, "kamil", "out:");
		ids_desired_set_free(d);
		rules_reset(NULL);
	}
}

static void test_revoke_wildcard_and_tenant(void **state)
{
	(void)state;
	struct ids_rule *r = rule("operators-by-group");
	r_regex(r, "^CC-([A-Za-z]+)-([A-Za-z]+)-Operators$");
	r_tenant(r, "{1}-{2}");
	sv(&r->roles, "operator", NULL);
	sv(&r->channels, "webchat", "whatsapp", NULL);
	r_slot(r, "live", 2);
	r = rule("seniors-no-whatsapp-anywhere");
	sv(&r->member_of, "CC-Support-CZ-Seniors", NULL);
	r_tenant(r, "*");
	r->revoke = true;
	sv(&r->revoke_channels, "whatsapp", NULL);
	r = rule("contractor-not-operator-in-cz");
	r_attr(r, "employeeType", "contractor");
	r_tenant(r, "support-cz");
	r->revoke = true;
	sv(&r->revoke_roles, "operator", NULL);
	sv(&r->revoke_groups, "nonexistent", NULL);
	struct ids_desired_set *d = eval();
	/* "*": whatsapp gone in both of jnovak's tenants, slots untouched */
	EXPECT(d, "jnovak",
	       "in: sales-de:role:operator sales-de:chan:webchat sales-de:slot:live=2"
	       " support-cz:role:operator support-cz:chan:webchat support-cz:slot:live=2");
	/* a named tenant: only there; names it does not hold are ignored */
	EXPECT(d, "kamil", "in: support-cz:chan:webchat support-cz:chan:whatsapp support-cz:slot:live=2");
	/* what was revoked, and by which rule: a plan removing it says so */
	assert_string_equal(render_revoked(d, "jnovak"),
			    " sales-de:chan:whatsapp<seniors-no-whatsapp-anywhere>"
			    " support-cz:chan:whatsapp<seniors-no-whatsapp-anywhere>");
	assert_string_equal(render_revoked(d, "kamil"),
			    " support-cz:role:operator<contractor-not-operator-in-cz>");
	assert_string_equal(render_revoked(d, "boss"), "");
	ids_desired_set_free(d);

	/* two revoke rules taking the same grant are both named, by name,
	 * whatever their order; one of them matching twice is named once */
	r = rule("a-also-no-whatsapp");
	sv(&r->member_of, "CC-Sales-DE-Operators", NULL);
	r_tenant(r, "*");
	r->revoke = true;
	sv(&r->revoke_channels, "whatsapp", NULL);
	d = eval();
	assert_string_equal(render_revoked(d, "jnovak"),
			    " sales-de:chan:whatsapp<a-also-no-whatsapp,seniors-no-whatsapp-anywhere>"
			    " support-cz:chan:whatsapp<a-also-no-whatsapp,seniors-no-whatsapp-anywhere>");
	ids_desired_set_free(d);
}

static void test_revoke_template_tenant(void **state)
{
	(void)state;
	add_grant_rule();
	struct ids_rule *r = rule("revoke-own-tenant");
	sv(&r->member_of, "CC-Support-CZ-Seniors", NULL);
	r_tenant(r, "{attr.tenantAttr}");
	r->revoke = true;
	sv(&r->revoke_roles, "operator", NULL);
	struct ids_desired_set *d = eval();
	EXPECT(d, "jnovak",
	       "in: support-cz:chan:webchat support-cz:chan:whatsapp support-cz:group:first-line");
	ids_desired_set_free(d);
}

static void test_revoke_only_is_out_of_scope(void **state)
{
	(void)state;
	add_revoke_rule();
	struct ids_desired_set *d = eval();
	EXPECT(d, "pdvorak", "out:");
	EXPECT(d, "kamil", "out:");
	ids_desired_set_free(d);
}

/* ---------------- scope of the evaluation ---------------- */

static void test_connectors_and_no_rules(void **state)
{
	(void)state;
	struct ids_rule *r = rule("other-only");
	sv(&r->connectors, "other", NULL);
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "support-cz");
	sv(&r->roles, "operator", NULL);
	struct ids_desired_set *d = eval_rules(R, NR, "corp");
	EXPECT(d, "pdvorak", "out:");
	ids_desired_set_free(d);
	d = eval_rules(R, NR, "other");
	EXPECT(d, "pdvorak", "in: support-cz:role:operator");
	ids_desired_set_free(d);
	/* no rules at all (`retire`): everyone out of scope */
	d = eval_rules(NULL, 0, "corp");
	for (size_t i = 0; i < S->nusers; i++) {
		assert_false(d->users[i].in_scope);
		assert_int_equal(d->users[i].ngrants, 0);
	}
	ids_desired_set_free(d);
	assert_int_equal(ids_rules_eval(NULL, 1, "corp", S, &d), -EINVAL);
}

/* ---------------- order independence ---------------- */

static void build_mixed_rules(void)
{
	struct ids_rule *r;
	add_grant_rule();
	add_revoke_rule();
	r = rule("operators-by-group");
	r_regex(r, "^CC-([A-Za-z]+)-([A-Za-z]+)-Operators$");
	r_tenant(r, "{1}-{2}");
	sv(&r->roles, "operator", NULL);
	sv(&r->channels, "whatsapp", NULL);
	r_slot(r, "live", 2);
	r = rule("seniors");
	sv(&r->member_of, "g-sen", NULL);
	r_tenant(r, "support-cz");
	r_slot(r, "live", 4);
	sv(&r->groups, "second-line", NULL);
	r = rule("by-attr");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "{attr.tenantAttr}");
	sv(&r->roles, "view_operators", NULL);
	r = rule("admins");
	sv(&r->member_of, "CC-Company-Admins", NULL);
	r->company_admin = true;
	r = rule("wild");
	r_attr(r, "department", "Support");
	r_tenant(r, "*");
	r->revoke = true;
	sv(&r->revoke_roles, "operator", NULL);
}

static char *render_all(const struct ids_desired_set *d)
{
	struct ids_buf b = {0};
	for (size_t i = 0; i < S->nusers; i++) {
		assert_int_equal(ids_buf_puts(&b, render(d, S->users[i].f[IDS_F_USERNAME])), 0);
		/* the rules each grant names must not depend on the order either */
		assert_int_equal(ids_buf_puts(&b, render_rules(d, S->users[i].f[IDS_F_USERNAME])), 0);
		assert_int_equal(ids_buf_puts(&b, render_revoked(d, S->users[i].f[IDS_F_USERNAME])), 0);
		assert_int_equal(ids_buf_putc(&b, '\n'), 0);
	}
	for (size_t i = 0; i < d->warnings.n; i++)
		assert_int_equal(ids_buf_printf(&b, "W %s\n", d->warnings.v[i]), 0);
	return ids_buf_steal(&b);
}

static void test_order_independence(void **state)
{
	(void)state;
	build_mixed_rules();
	const size_t n = NR;
	assert_int_equal(n, 7);
	struct ids_desired_set *d = eval();
	char *want = render_all(d);
	/* the reference result, derived by hand from the rules above */
	EXPECT(d, "jnovak",
	       "in: sales-de:chan:whatsapp sales-de:slot:live=2"
	       " support-cz:role:view_operators support-cz:chan:webchat support-cz:chan:whatsapp"
	       " support-cz:group:first-line support-cz:group:second-line support-cz:slot:live=4");
	EXPECT(d, "pdvorak",
	       "in: support-cz:role:operator support-cz:chan:webchat support-cz:group:first-line");
	EXPECT(d, "kamil", "in: support-cz:role:operator support-cz:slot:live=2");
	EXPECT(d, "boss", "in+admin:");
	ids_desired_set_free(d);

	/* every permutation of the 7 rules (5040), Heap's algorithm */
	struct ids_rule perm[7];
	size_t c[7] = {0}, count = 1;
	memcpy(perm, R, sizeof(perm));
	for (size_t i = 1; i < n;) {
		if (c[i] < i) {
			size_t j = i % 2 == 0 ? 0 : c[i];
			struct ids_rule t = perm[j];
			perm[j] = perm[i];
			perm[i] = t;
			d = eval_rules(perm, n, "corp");
			char *got = render_all(d);
			if (strcmp(got, want) != 0)
				fail_msg("permutation %zu differs:\n%s\nwant:\n%s", count, got, want);
			free(got);
			ids_desired_set_free(d);
			count++;
			c[i]++;
			i = 1;
		} else {
			c[i] = 0;
			i++;
		}
	}
	assert_int_equal(count, 5040);
	free(want);
}

/* ids_rules_eval_some (an incremental re-plan): the chosen users get what
 * a whole evaluation gives them, the others nothing, out of scope, and no
 * warning (the rules were not evaluated for them). */
static void test_eval_some(void **state)
{
	(void)state;
	struct ids_rule *r = rule("by-attr");
	sv(&r->member_of, "CC-Support-CZ", NULL);
	r_tenant(r, "{attr.tenantattr}");
	sv(&r->roles, "operator", NULL);
	struct ids_desired_set *all = eval();
	bool *want = calloc(S->nusers, sizeof(*want));
	assert_non_null(want);
	want[uidx("jnovak")] = want[uidx("badattr")] = true;
	struct ids_desired_set *d = NULL;
	assert_int_equal(ids_rules_eval_some(R, NR, "corp", S, want, &d), 0);
	assert_int_equal(d->nusers, S->nusers);
	for (size_t i = 0; i < S->nusers; i++) {
		const char *u = S->users[i].f[IDS_F_USERNAME];
		char *whole = strdup(render(all, u));
		assert_string_equal(render(d, u), want[i] ? whole : "out:");
		free(whole);
	}
	assert_int_equal(d->warnings.n, 1);
	assert_string_equal(d->warnings.v[0],
			    "user badattr: rule by-attr: tenant template gave invalid slug \"-bad\"");
	ids_desired_set_free(d);
	ids_desired_set_free(all);
	free(want);
}

#define T(f) cmocka_unit_test_setup_teardown(f, rules_reset, rules_reset)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_kind_names_and_slugs),
	    T(test_for_connector),
	    T(test_check_template),
	    T(test_rules_attrs),
	    T(test_rule_clear),
	    T(test_member_of_by_dn_id_name_email),
	    T(test_not_member_of),
	    T(test_attribute_regex),
	    T(test_member_of_regex_captures),
	    T(test_templates_attrs_and_bad_slug),
	    T(test_eval_some),
	    T(test_regex_template_bad_slug),
	    T(test_broken_template_skips_rule),
	    T(test_combination_table),
	    T(test_rule_names_ties_and_repeats),
	    T(test_matching_without_grants_is_out_of_scope),
	    T(test_slot_zero_is_a_grant),
	    T(test_revoke_wins_both_orders),
	    T(test_revoke_wildcard_and_tenant),
	    T(test_revoke_template_tenant),
	    T(test_revoke_only_is_out_of_scope),
	    T(test_connectors_and_no_rules),
	    T(test_order_independence),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
