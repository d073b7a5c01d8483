/* test_core_catalog.c — the platforms' own rules (core/catalog.c, issue
 * 20): requires (add, drop, revokes win, chains) and licences (holders
 * keep, order of the waiting, departures, a lowered limit, other
 * connectors' and manual seats), then the plan's text of both.
 *
 * Each case is data: users as "name want=role,role no=role", where `want`
 * makes rule grant-ROLE give ROLE in tenant t1 and `no` makes rule
 * revoke-ROLE revoke it; the current state as "name:role[:manual]"
 * holdings; the expected desired state as rendered text:
 * "name: role(why) ... | -role(why)" (live grants, then what was taken
 * away and why). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/catalog.h"
#include "ids/plan.h"
#include "ids/rules.h"
#include "ids/snapshot.h"

static const char *const ROLES[] = {"phone", "phone_mobile", "monitoring", "a", "b", "c", "operator"};
#define NROLES (sizeof(ROLES) / sizeof(ROLES[0]))

/* grant-ROLE and revoke-ROLE for every role */
static struct ids_rule rules[2 * NROLES];

static void rule_attr(struct ids_rule *r, const char *attr, const char *role)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "^%s$", role);
	r->attrs = calloc(1, sizeof(*r->attrs));
	r->nattrs = 1;
	r->attrs[0].name = strdup(attr);
	r->attrs[0].pattern = strdup(pat);
	assert_int_equal(regcomp(&r->attrs[0].re, pat, REG_EXTENDED | REG_NOSUB), 0);
}

static int setup(void **state)
{
	(void)state;
	for (size_t i = 0; i < NROLES; i++) {
		char name[64];
		struct ids_rule *g = &rules[2 * i], *v = &rules[2 * i + 1];
		snprintf(name, sizeof(name), "grant-%s", ROLES[i]);
		g->name = strdup(name);
		g->tenant = strdup("t1");
		ids_strv_push(&g->roles, ROLES[i]);
		rule_attr(g, "want", ROLES[i]);
		snprintf(name, sizeof(name), "revoke-%s", ROLES[i]);
		v->name = strdup(name);
		v->revoke = true;
		v->tenant = strdup("t1");
		ids_strv_push(&v->revoke_roles, ROLES[i]);
		rule_attr(v, "no", ROLES[i]);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < 2 * NROLES; i++)
		ids_rule_clear(&rules[i]);
	return 0;
}

/* "alice want=phone,monitoring no=phone" per line; "!" before the name:
 * disabled.  External id: "x-" + name. */
static struct ids_snapshot *snap(const char *users)
{
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	char *copy = strdup(users), *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *save2 = NULL, ext[64];
		char *name = strtok_r(line, " ", &save2);
		bool disabled = name[0] == '!';
		name += disabled;
		snprintf(ext, sizeof(ext), "x-%s", name);
		assert_int_equal(ids_snapshot_user_begin(s), 0);
		assert_int_equal(ids_snapshot_user_set(s, IDS_F_EXTERNAL_ID, ext, strlen(ext)), 0);
		assert_int_equal(ids_snapshot_user_set(s, IDS_F_USERNAME, name, strlen(name)), 0);
		assert_int_equal(ids_snapshot_user_disabled(s, disabled), 0);
		for (char *kv = strtok_r(NULL, " ", &save2); kv; kv = strtok_r(NULL, " ", &save2)) {
			char *eq = strchr(kv, '=');
			*eq = '\0';
			char *save3 = NULL;
			for (char *v = strtok_r(eq + 1, ",", &save3); v; v = strtok_r(NULL, ",", &save3))
				assert_int_equal(ids_snapshot_user_attr(s, kv, v, strlen(v)), 0);
		}
		assert_int_equal(ids_snapshot_user_end(s), 0);
	}
	free(copy);
	assert_int_equal(ids_snapshot_finish(s), 0);
	return s;
}

static struct ids_desired_set *eval(const struct ids_catalog_rules *cr, const struct ids_snapshot *s)
{
	struct ids_desired_set *d = NULL;
	assert_int_equal(ids_catalog_eval(cr, rules, 2 * NROLES, "corp", s, &d), 0);
	return d;
}

static void put_grant(struct ids_buf *b, const struct ids_desired_set *d, const struct ids_grant *g,
		      bool gone)
{
	const struct ids_rule_list *l = ids_rule_list_get(d->rule_lists, d->nrule_lists, g->rules);
	ids_buf_printf(b, " %s%s(", gone ? "-" : "", g->name);
	for (size_t k = 0; l && k < l->n; k++)
		ids_buf_printf(b, "%s%s", k ? "," : "", l->names[k]);
	ids_buf_putc(b, ')');
}

/* Every user with grants, one line each, by snapshot order (external id). */
static char *render(const struct ids_snapshot *s, const struct ids_desired_set *d)
{
	struct ids_buf b = {0};
	ids_buf_puts(&b, "");
	for (size_t i = 0; i < d->nusers; i++) {
		const struct ids_desired *u = &d->users[i];
		if (!u->ngrants && !u->nrevoked)
			continue;
		ids_buf_printf(&b, "%s:", s->users[i].f[IDS_F_USERNAME]);
		for (size_t k = 0; k < u->ngrants; k++)
			put_grant(&b, d, &u->grants[k], false);
		if (u->nrevoked)
			ids_buf_puts(&b, " |");
		for (size_t k = 0; k < u->nrevoked; k++)
			put_grant(&b, d, &u->grants[u->ngrants + k], true);
		ids_buf_putc(&b, '\n');
	}
	return ids_buf_steal(&b);
}

static char *warnings(const struct ids_desired_set *d)
{
	struct ids_buf b = {0};
	ids_buf_puts(&b, "");
	for (size_t i = 0; i < d->warnings.n; i++)
		ids_buf_printf(&b, "%s\n", d->warnings.v[i]);
	return ids_buf_steal(&b);
}

static struct ids_catalog_rules requires(bool drop)
{
	struct ids_catalog_rules cr = {.drop_missing = drop};
	cr.req = calloc(4, sizeof(*cr.req));
	const char *spec[][3] = {{"monitoring", "phone", NULL},
				 {"phone_mobile", "phone", NULL},
				 {"a", "b", NULL}, /* a -> b -> c: a chain */
				 {"b", "c", "phone"}};
	for (size_t i = 0; i < 4; i++) {
		cr.req[i].role = strdup(spec[i][0]);
		for (size_t k = 1; k < 3 && spec[i][k]; k++)
			ids_strv_push(&cr.req[i].needs, spec[i][k]);
	}
	cr.nreq = 4;
	return cr;
}

static void check_requires(bool drop, const char *users, const char *want, const char *want_warnings)
{
	struct ids_catalog_rules cr = requires(drop);
	struct ids_snapshot *s = snap(users);
	struct ids_desired_set *d = eval(&cr, s);
	char *got = render(s, d), *w = warnings(d);
	assert_string_equal(got, want);
	assert_string_equal(w, want_warnings);
	free(got);
	free(w);
	ids_desired_set_free(d);
	ids_snapshot_free(s);
	ids_catalog_rules_clear(&cr);
}

/* add: the required role comes with its own provenance (beside the rule
 * that grants it anyway; both dependents that ask for it); users without
 * requirements keep their grants untouched */
static void requires_add(void **state)
{
	(void)state;
	check_requires(
	    false,
	    "al want=monitoring\n"
	    "bo want=monitoring,phone\n"
	    "cy want=monitoring,phone_mobile\n"
	    "di want=operator\n",
	    "al: monitoring(grant-monitoring) phone(required by monitoring)\n"
	    "bo: monitoring(grant-monitoring) phone(grant-phone,required by monitoring)\n"
	    "cy: monitoring(grant-monitoring) phone(required by monitoring,required by phone_mobile) "
	    "phone_mobile(grant-phone_mobile)\n"
	    "di: operator(grant-operator)\n",
	    "");
}

/* a needs b, b needs c and phone: all added, each naming who asked */
static void requires_chain(void **state)
{
	(void)state;
	check_requires(false, "al want=a\n",
		       "al: a(grant-a) b(required by a) c(required by b) phone(required by b)\n", "");
}

/* drop: the dependent goes, with a warning naming user, tenant, role and
 * the missing requirement; in a chain what needed the dropped one goes too */
static void requires_drop(void **state)
{
	(void)state;
	check_requires(
	    true,
	    "al want=monitoring\n"
	    "bo want=monitoring,phone\n"
	    "cy want=a,b,c\n",
	    "al: | -monitoring(requires phone)\n"
	    "bo: monitoring(grant-monitoring) phone(grant-phone)\n"
	    "cy: c(grant-c) | -a(requires b) -b(requires phone)\n",
	    "user al: tenant t1: role monitoring left out: it requires phone, which no rule grants\n"
	    "user cy: tenant t1: role b left out: it requires phone, which no rule grants\n"
	    "user cy: tenant t1: role a left out: it requires b, which is left out too\n");
}

/* revokes win over add: a revoked requirement drops its dependents, the
 * added one as well as one a rule grants, and says so; a revoked
 * dependent leaves nothing behind that only it asked for */
static void requires_revoke_wins(void **state)
{
	(void)state;
	check_requires(false,
		       "al want=monitoring,phone no=phone\n"
		       "bo want=monitoring no=phone\n"
		       "cy want=monitoring,phone_mobile no=monitoring\n",
		       "al: | -monitoring(requires phone) -phone(revoke-phone)\n"
		       "bo: | -monitoring(requires phone) -phone(revoke-phone)\n"
		       "cy: phone(required by phone_mobile) phone_mobile(grant-phone_mobile) | "
		       "-monitoring(revoke-monitoring)\n",
		       "user al: tenant t1: role monitoring left out: it requires phone, which a revoke rule "
		       "takes away\n"
		       "user bo: tenant t1: role monitoring left out: it requires phone, which a revoke rule "
		       "takes away\n");
}

/* the same with on_missing_requirement drop: a revoked requirement reads
 * as revoked, not as missing */
static void requires_drop_revoked(void **state)
{
	(void)state;
	check_requires(true, "al want=monitoring,phone no=phone\n",
		       "al: | -monitoring(requires phone) -phone(revoke-phone)\n",
		       "user al: tenant t1: role monitoring left out: it requires phone, which a revoke rule "
		       "takes away\n");
}

/* ---------------- licences ---------------- */

struct lic_case {
	const char *users;    /* as snap() */
	const char *holdings; /* "name:role[:manual]" separated by spaces: the current state */
	const char *book;     /* "name:role:entitled_run:seat_run" (seat_run -1: waiting) */
	long limit, other;    /* the phone licence; holders outside the connector */
	bool requires;	      /* with catalog.requires (add) */
};

static struct ids_current *current(const struct ids_snapshot *s, const char *holdings)
{
	struct ids_current *c = NULL;
	assert_int_equal(ids_current_new(&c), 0);
	assert_int_equal(ids_current_add_tenant(c, "t1"), 0);
	for (size_t i = 0; i < s->nusers; i++) {
		const struct ids_user *u = &s->users[i];
		struct ids_cur_user cu = {.id = (int64_t)i + 1,
					  .source = "corp",
					  .external_id = u->f[IDS_F_EXTERNAL_ID],
					  .username = u->f[IDS_F_USERNAME],
					  .auth_method = "sso",
					  .idp = "ldap",
					  .active = true};
		assert_int_equal(ids_current_add_user(c, &cu), 0);
	}
	char *copy = strdup(holdings), *save = NULL;
	int64_t gone = 1000; /* users who left the directory: in the database only */
	for (char *h = strtok_r(copy, " ", &save); h; h = strtok_r(NULL, " ", &save)) {
		char *name = h, *role = strchr(h, ':');
		*role++ = '\0';
		char *manual = strchr(role, ':');
		if (manual)
			*manual++ = '\0';
		int64_t id = 0;
		for (size_t i = 0; i < s->nusers; i++)
			if (!strcmp(s->users[i].f[IDS_F_USERNAME], name))
				id = (int64_t)i + 1;
		if (!id) {
			char ext[64];
			snprintf(ext, sizeof(ext), "x-%s", name);
			struct ids_cur_user cu = {.id = ++gone,
						  .source = "corp",
						  .external_id = ext,
						  .username = name,
						  .auth_method = "sso",
						  .idp = "ldap",
						  .active = true};
			assert_int_equal(ids_current_add_user(c, &cu), 0);
			id = gone;
		}
		struct ids_cur_grant g = {.user_id = id,
					  .tenant = "t1",
					  .name = role,
					  .kind = IDS_GRANT_ROLE,
					  .manual = manual != NULL};
		/* a managed row names the rule that gave it (its provenance), as
		 * the store loads it: the rule of this file that grants ROLE */
		char given_by[80];
		snprintf(given_by, sizeof(given_by), "grant-%s", role);
		assert_int_equal(ids_current_add_grant_rules(c, &g, manual ? NULL : given_by), 0);
	}
	free(copy);
	return c;
}

static void book(struct ids_seat_book *b, const char *rows)
{
	char *copy = strdup(rows), *save = NULL;
	for (char *h = strtok_r(copy, " ", &save); h; h = strtok_r(NULL, " ", &save)) {
		char name[64], role[64], ext[70];
		long long er, sr;
		assert_int_equal(sscanf(h, "%63[^:]:%63[^:]:%lld:%lld", name, role, &er, &sr), 4);
		snprintf(ext, sizeof(ext), "x-%s", name);
		struct ids_seat row = {.role = role,
				       .external_id = ext,
				       .entitled_run = er,
				       .seat_run = sr < 0 ? 0 : sr,
				       .seated = sr >= 0};
		assert_int_equal(ids_seat_book_add(b, &row), 0);
	}
	free(copy);
}

/* Runs a licence case; *ret_* the rendered state, warnings and next book
 * ("name:role:entitled:seat" with seat -1 for waiting, by book order). */
static void run_licence(const struct lic_case *k, char **ret_state, char **ret_warn, char **ret_book,
			struct ids_licence_use *use)
{
	struct ids_catalog_rules cr = k->requires ? requires(false) : (struct ids_catalog_rules){0};
	cr.lic = calloc(1, sizeof(*cr.lic));
	cr.lic[0] =
	    (struct ids_licence){.company = strdup("acme"), .role = strdup("phone"), .limit = k->limit};
	cr.nlic = 1;
	struct ids_snapshot *s = snap(k->users);
	struct ids_desired_set *d = eval(&cr, s);
	struct ids_current *c = current(s, k->holdings);
	struct ids_seat_book prev = {0}, next = {0};
	book(&prev, k->book);
	if (k->other)
		assert_int_equal(ids_seat_book_add_other(&prev, "phone", k->other), 0);
	assert_int_equal(ids_catalog_licences(&cr, "acme", "corp", 9, s, d, c, &prev, &next, use), 0);
	*ret_state = render(s, d);
	*ret_warn = warnings(d);
	struct ids_buf b = {0};
	ids_buf_puts(&b, "");
	for (size_t i = 0; i < next.n; i++)
		ids_buf_printf(&b, "%s%s:%s:%lld:%lld", i ? " " : "", next.v[i].external_id + 2,
			       next.v[i].role, (long long)next.v[i].entitled_run,
			       next.v[i].seated ? (long long)next.v[i].seat_run : -1LL);
	*ret_book = ids_buf_steal(&b);
	ids_seat_book_clear(&prev);
	ids_seat_book_clear(&next);
	ids_current_free(c);
	ids_desired_set_free(d);
	ids_snapshot_free(s);
	ids_catalog_rules_clear(&cr);
}

static void check_licence(const struct lic_case *k, const char *want_state, const char *want_warn,
			  const char *want_book)
{
	char *st, *w, *bk;
	struct ids_licence_use use = {0};
	run_licence(k, &st, &w, &bk, &use);
	assert_string_equal(st, want_state);
	assert_string_equal(w, want_warn);
	assert_string_equal(bk, want_book);
	free(st);
	free(w);
	free(bk);
}

/* 5 entitled, 3 seats: the holder keeps hers; then earliest entitlement
 * (the book's run), then username; the rest wait, one warning */
static void licence_order(void **state)
{
	(void)state;
	const struct lic_case k = {.users = "eve want=phone\n"
					    "dan want=phone\n"
					    "cat want=phone\n"
					    "bob want=phone\n"
					    "amy want=phone\n",
				   .holdings = "eve:phone",
				   .book = "eve:phone:1:1 dan:phone:3:-1 cat:phone:5:-1",
				   .limit = 3};
	check_licence(&k,
		      "amy: | -phone(licence phone: waiting for a seat (limit 3))\n"
		      "bob: | -phone(licence phone: waiting for a seat (limit 3))\n"
		      "cat: phone(grant-phone)\n"
		      "dan: phone(grant-phone)\n"
		      "eve: phone(grant-phone)\n",
		      "licence acme/phone: 2 users wait for a seat (3 of 3 used)\n",
		      "eve:phone:1:1 dan:phone:3:9 cat:phone:5:9 amy:phone:9:-1 bob:phone:9:-1");
}

/* first run, nothing held, nothing known: by username */
static void licence_first_run(void **state)
{
	(void)state;
	const struct lic_case k = {
	    .users = "cy want=phone\nal want=phone\nbo want=phone\n", .holdings = "", .book = "", .limit = 2};
	check_licence(&k,
		      "al: phone(grant-phone)\n"
		      "bo: phone(grant-phone)\n"
		      "cy: | -phone(licence phone: waiting for a seat (limit 2))\n",
		      "licence acme/phone: 1 users wait for a seat (2 of 2 used)\n",
		      "al:phone:9:9 bo:phone:9:9 cy:phone:9:-1");
}

/* a holder who left (no longer entitled, or gone from the directory) frees
 * the seat for the next waiting user in the same run */
static void licence_departure(void **state)
{
	(void)state;
	const struct lic_case k = {.users = "al want=phone\nbo\ncy want=phone\ndi want=phone\n",
				   .holdings = "al:phone bo:phone zed:phone",
				   .book =
				       "al:phone:1:1 bo:phone:1:1 zed:phone:1:1 di:phone:2:-1 cy:phone:3:-1",
				   .limit = 3};
	check_licence(&k, "al: phone(grant-phone)\ncy: phone(grant-phone)\ndi: phone(grant-phone)\n", "",
		      "al:phone:1:1 di:phone:2:9 cy:phone:3:9");
}

/* a lowered licence takes the seats granted last (ties: the last by
 * username), and says so; they wait first in line afterwards */
static void licence_lowered(void **state)
{
	(void)state;
	const struct lic_case k = {.users = "al want=phone\nbo want=phone\ncy want=phone\ndi want=phone\n",
				   .holdings = "al:phone bo:phone cy:phone di:phone",
				   .book = "al:phone:1:4 bo:phone:1:2 cy:phone:1:2 di:phone:1:3",
				   .limit = 2};
	struct ids_licence_use use = {0};
	char *st, *w, *bk;
	run_licence(&k, &st, &w, &bk, &use);
	assert_string_equal(st, "al: | -phone(licence phone: over the limit of 2)\n"
				"bo: phone(grant-phone)\n"
				"cy: phone(grant-phone)\n"
				"di: | -phone(licence phone: over the limit of 2)\n");
	assert_string_equal(w,
			    "licence acme/phone: 2 seats revoked, over the limit of 2 (most recently granted "
			    "first)\n"
			    "licence acme/phone: 2 users wait for a seat (2 of 2 used)\n");
	assert_string_equal(bk, "bo:phone:1:2 cy:phone:1:2 di:phone:1:-1 al:phone:1:-1");
	assert_int_equal(use.used, 2);
	assert_int_equal(use.waiting, 2);
	assert_int_equal(use.revoked, 2);
	assert_int_equal(use.granted, 0);
	free(st);
	free(w);
	free(bk);
}

/* seats held outside the connector (other connectors, unmanaged users:
 * the store counts them) and manual rows the rules no longer give count
 * against the limit; a holder the book does not know (held before the
 * licence) is the oldest; disabled users are entitled to nothing */
static void licence_fixed_seats(void **state)
{
	(void)state;
	const struct lic_case k = {.users = "al want=phone\nbo want=phone\ncy\n!di want=phone\n",
				   .holdings = "al:phone cy:phone:manual",
				   .book = "",
				   .limit = 3,
				   .other = 1};
	struct ids_licence_use use = {0};
	char *st, *w, *bk;
	run_licence(&k, &st, &w, &bk, &use);
	/* di's grants stay in the desired state: the diff deactivates him */
	assert_string_equal(st, "al: phone(grant-phone)\n"
				"bo: | -phone(licence phone: waiting for a seat (limit 3))\n"
				"di: phone(grant-phone)\n");
	assert_string_equal(bk, "al:phone:9:0 bo:phone:9:-1");
	assert_int_equal(use.used, 3);
	assert_int_equal(use.waiting, 1);
	free(st);
	free(w);
	free(bk);
}

/* a phone withheld by the licence takes what requires it along (an added
 * one as well as a granted one); a limit of 0 licenses nobody */
static void licence_with_requires(void **state)
{
	(void)state;
	const struct lic_case k = {.users = "al want=monitoring\nbo want=phone,phone_mobile\n",
				   .holdings = "",
				   .book = "",
				   .limit = 0,
				   .requires = true};
	check_licence(
	    &k,
	    "al: | -monitoring(requires phone) -phone(licence phone: waiting for a seat (limit 0))\n"
	    "bo: | -phone(licence phone: waiting for a seat (limit 0)) -phone_mobile(requires phone)\n",
	    "licence acme/phone: 2 users wait for a seat (0 of 0 used)\n", "al:phone:9:-1 bo:phone:9:-1");
}

/* another company's licence does not apply */
static void licence_other_company(void **state)
{
	(void)state;
	struct ids_catalog_rules cr = {0};
	cr.lic = calloc(1, sizeof(*cr.lic));
	cr.lic[0] = (struct ids_licence){.company = strdup("other"), .role = strdup("phone"), .limit = 0};
	cr.nlic = 1;
	struct ids_snapshot *s = snap("al want=phone\n");
	struct ids_desired_set *d = eval(&cr, s);
	struct ids_current *c = current(s, "");
	struct ids_seat_book next = {0};
	assert_int_equal(ids_catalog_licences(&cr, "acme", "corp", 9, s, d, c, NULL, &next, NULL), 0);
	char *st = render(s, d);
	assert_string_equal(st, "al: phone(grant-phone)\n");
	assert_int_equal(next.n, 0);
	free(st);
	ids_current_free(c);
	ids_desired_set_free(d);
	ids_snapshot_free(s);
	ids_catalog_rules_clear(&cr);
}

/* the plan: an added requirement and a licence's removal print their note
 * where a rule's name would be */
static void plan_text(void **state)
{
	(void)state;
	struct ids_catalog_rules cr = requires(false);
	cr.lic = calloc(1, sizeof(*cr.lic));
	cr.lic[0] = (struct ids_licence){.company = strdup("acme"), .role = strdup("phone"), .limit = 1};
	cr.nlic = 1;
	struct ids_snapshot *s = snap("al want=monitoring\nbo want=phone\n");
	struct ids_desired_set *d = eval(&cr, s);
	struct ids_current *c = current(s, "bo:phone");
	struct ids_seat_book prev = {0}, next = {0};
	book(&prev, "bo:phone:1:3");
	/* bo holds the one seat: al's monitoring waits with the phone */
	assert_int_equal(ids_catalog_licences(&cr, "acme", "corp", 9, s, d, c, &prev, &next, NULL), 0);
	struct ids_plan *p = NULL;
	const struct ids_diff_opts o = {.connector = "corp", .idp = "ldap"};
	assert_int_equal(ids_diff_compute(s, d, c, &o, &p), 0);
	struct ids_buf b = {0};
	assert_int_equal(ids_plan_format_text(p, &b), 0);
	assert_string_equal(b.p,
			    "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 "
			    "removed, 0 conflicts\n");
	ids_buf_free(&b);
	ids_plan_free(p);
	ids_seat_book_clear(&next);

	/* the licence lowered to 0 and a new seat: bo loses his, al waits */
	cr.lic[0].limit = 0;
	ids_desired_set_free(d);
	d = eval(&cr, s);
	assert_int_equal(ids_catalog_licences(&cr, "acme", "corp", 9, s, d, c, &prev, &next, NULL), 0);
	assert_int_equal(ids_diff_compute(s, d, c, &o, &p), 0);
	assert_int_equal(ids_plan_format_text(p, &b), 0);
	assert_string_equal(b.p,
			    "- role  bo  t1  phone  licence phone: over the limit of 0\n"
			    "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 1 "
			    "removed, 0 conflicts\n");
	ids_buf_free(&b);
	ids_plan_free(p);
	ids_seat_book_clear(&next);

	/* no licence: al's phone comes "required by monitoring" */
	cr.nlic = 0;
	ids_desired_set_free(d);
	d = eval(&cr, s);
	assert_int_equal(ids_diff_compute(s, d, c, &o, &p), 0);
	assert_int_equal(ids_plan_format_text(p, &b), 0);
	assert_string_equal(b.p,
			    "+ role  al  t1  monitoring  rule grant-monitoring\n"
			    "+ role  al  t1  phone  required by monitoring\n"
			    "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 2 grants added, 0 "
			    "removed, 0 conflicts\n");
	cr.nlic = 1;
	ids_buf_free(&b);
	ids_plan_free(p);
	ids_seat_book_clear(&prev);
	ids_current_free(c);
	ids_desired_set_free(d);
	ids_snapshot_free(s);
	ids_catalog_rules_clear(&cr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(requires_add),
	    cmocka_unit_test(requires_chain),
	    cmocka_unit_test(requires_drop),
	    cmocka_unit_test(requires_revoke_wins),
	    cmocka_unit_test(requires_drop_revoked),
	    cmocka_unit_test(licence_order),
	    cmocka_unit_test(licence_first_run),
	    cmocka_unit_test(licence_departure),
	    cmocka_unit_test(licence_lowered),
	    cmocka_unit_test(licence_fixed_seats),
	    cmocka_unit_test(licence_with_requires),
	    cmocka_unit_test(licence_other_company),
	    cmocka_unit_test(plan_text),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
