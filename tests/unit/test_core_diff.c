/* test_core_diff.c — ids_diff_compute() and ids_safety_check() on hand-built
 * snapshots, desired sets and current rows (no snapshot builder, no rules:
 * their structs are public).  Expected plans are written from
 * semantics.md / schema.md, in the text form of the plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/plan.h"

#define MAXU 32
#define MAXG 16

struct fx {
	struct ids_user users[MAXU];
	struct ids_desired des[MAXU];
	struct ids_grant grants[MAXU][MAXG];
	struct ids_snapshot s;
	struct ids_desired_set d;
	struct ids_current *c;
	struct ids_diff_opts o;
	struct ids_plan *p;
	struct ids_buf text;
};

static void fx_reset(struct fx *f)
{
	ids_plan_free(f->p);
	ids_current_free(f->c);
	ids_buf_free(&f->text);
	memset(f, 0, sizeof(*f));
	f->s.users = f->users;
	f->d.users = f->des;
	f->o = (struct ids_diff_opts){.connector = "corp-ad", .idp = "ldap"};
	assert_int_equal(ids_current_new(&f->c), 0);
	assert_int_equal(ids_current_add_tenant(f->c, "support-cz"), 0);
	assert_int_equal(ids_current_add_tenant(f->c, "sales"), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	fx_reset(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ids_plan_free(f->p);
	ids_current_free(f->c);
	ids_buf_free(&f->text);
	free(f);
	return 0;
}

/* ---- snapshot side (add users in external-id order, as finish sorts) ---- */

static size_t su(struct fx *f, const char *ext, const char *username, const char *email)
{
	assert_true(f->s.nusers < MAXU);
	size_t k = f->s.nusers++;
	f->d.nusers = f->s.nusers;
	f->users[k].f[IDS_F_EXTERNAL_ID] = ext;
	f->users[k].f[IDS_F_USERNAME] = username;
	f->users[k].f[IDS_F_EMAIL] = email;
	f->des[k].grants = f->grants[k];
	return k;
}

static void su_names(struct fx *f, size_t k, const char *first, const char *last, const char *display)
{
	f->users[k].f[IDS_F_FIRST_NAME] = first;
	f->users[k].f[IDS_F_LAST_NAME] = last;
	f->users[k].f[IDS_F_DISPLAY_NAME] = display;
}

/* A desired grant: the user is in scope from then on. */
static void want(struct fx *f, size_t k, enum ids_grant_kind kind, const char *tenant, const char *name,
		 int slots)
{
	assert_true(f->des[k].ngrants < MAXG);
	f->grants[k][f->des[k].ngrants++] = (struct ids_grant){kind, tenant, name, slots, 0};
	f->des[k].in_scope = true;
}

/* ---- current side ---- */

static void add_cur(struct fx *f, struct ids_cur_user u)
{
	assert_int_equal(ids_current_add_user(f->c, &u), 0);
}

/* a row of this connector; a hand-made row (no source, activation link) */
#define MU(f, ...)                                                                                           \
	add_cur(                                                                                             \
	    f, (struct ids_cur_user){.source = "corp-ad", .auth_method = "sso", .idp = "ldap", __VA_ARGS__})
#define HU(f, ...) add_cur(f, (struct ids_cur_user){.auth_method = "activation_link", __VA_ARGS__})

static void cg(struct fx *f, int64_t uid, enum ids_grant_kind kind, const char *tenant, const char *name,
	       int slots, bool manual)
{
	struct ids_cur_grant g = {.user_id = uid,
				  .kind = (unsigned char)kind,
				  .tenant = tenant,
				  .name = name,
				  .slots = slots,
				  .manual = manual};
	assert_int_equal(ids_current_add_grant(f->c, &g), 0);
}

/* Runs the diff and returns the text plan. */
static const char *run(struct fx *f)
{
	ids_plan_free(f->p);
	f->p = NULL;
	assert_int_equal(ids_diff_compute(&f->s, &f->d, f->c, &f->o, &f->p), 0);
	ids_buf_reset(&f->text);
	assert_int_equal(ids_plan_format_text(f->p, &f->text), 0);
	return f->text.p;
}

static const struct ids_safety defaults = {500, 10, 25};

/* ---------------- create ---------------- */

static void test_create(void **state)
{
	struct fx *f = *state;
	size_t k = su(f, "u1", "jnovak", "jan.novak@corp.example");
	su_names(f, k, "Jan", "Novák", "Jan Novák");
	/* given out of order on purpose: the plan sorts (tenant, kind, name) */
	want(f, k, IDS_GRANT_SLOT, "support-cz", "live", 3);
	want(f, k, IDS_GRANT_CHANNEL, "support-cz", "whatsapp", 0);
	want(f, k, IDS_GRANT_GROUP, "support-cz", "first-line", 0);
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	assert_string_equal(
	    run(f), "+ user  jnovak (Jan Novák) <jan.novak@corp.example>  sso/ldap\n"
		    "+ role  jnovak  support-cz  operator\n"
		    "+ chan  jnovak  support-cz  whatsapp\n"
		    "+ group jnovak  support-cz  first-line\n"
		    "+ slot  jnovak  support-cz  live 3\n"
		    "summary corp-ad: 1 create, 0 update, 0 deactivate, 0 reactivate, 4 grants added, "
		    "0 removed, 0 conflicts\n");
	assert_int_equal(f->p->nusers, 1);
	assert_int_equal(f->p->users[0].flags, IDS_PU_CREATE);
	assert_int_equal(f->p->users[0].id, 0);
	assert_null(f->p->users[0].cur);
	/* no row yet: the store gives the grants the id it draws */
	for (size_t i = 0; i < f->p->ngrants; i++)
		assert_int_equal(f->p->grants[i].user_id, 0);
	/* the group that gets a member is listed for the store to create */
	assert_int_equal(f->p->new_groups.n, 1);
	assert_string_equal(f->p->new_groups.v[0], "support-cz\tfirst-line");
	assert_int_equal(f->p->counts.users_seen, 1);
	assert_int_equal(f->p->active_managed, 0);
}

/* A rule list as the rules engine makes them (malloc'd here). */
static struct ids_rule_list *mklist(size_t n, ...)
{
	struct ids_rule_list *l = calloc(1, sizeof(*l) + n * sizeof(l->names[0]));
	assert_non_null(l);
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		l->names[i] = va_arg(ap, const char *);
	va_end(ap);
	l->n = n;
	return l;
}

/* Issue 12.4: each added or changed grant names the rules that produced
 * it (carried from the desired grants); a removal names the revoke rules
 * that took the grant away, or none when no rule did. */
static void test_grants_name_their_rules(void **state)
{
	struct fx *f = *state;
	struct ids_rule_list *lists[] = {NULL, mklist(1, "cz-support"), mklist(2, "base", "seniors"),
					 mklist(1, "no-auditors")};
	f->d.rule_lists = (const struct ids_rule_list **)lists;
	f->d.nrule_lists = 4;
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .email = "j@x", .active = true);
	cg(f, 10, IDS_GRANT_ROLE, "support-cz", "auditor", 0, false);
	cg(f, 10, IDS_GRANT_CHANNEL, "support-cz", "email", 0, false);
	cg(f, 10, IDS_GRANT_SLOT, "support-cz", "live", 2, false);
	size_t k = su(f, "u1", "jnovak", "j@x");
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	f->grants[k][0].rules = 2;
	want(f, k, IDS_GRANT_SLOT, "support-cz", "live", 4);
	f->grants[k][1].rules = 1;
	/* after the wanted grants, what a revoke rule took away */
	f->grants[k][2] = (struct ids_grant){IDS_GRANT_ROLE, "support-cz", "auditor", 0, 3};
	f->des[k].nrevoked = 1;
	f->o.idp = "ldap";
	MU(f, .id = 11, .external_id = "u2", .username = "new", .email = "n@x", .active = true);
	k = su(f, "u2", "new", "n@x");
	want(f, k, IDS_GRANT_CHANNEL, "sales", "webchat", 0);
	f->grants[k][0].rules = 1;
	assert_string_equal(run(f), "- role  jnovak  support-cz  auditor  revoked by rule no-auditors\n"
				    "+ role  jnovak  support-cz  operator  rules base, seniors\n"
				    "- chan  jnovak  support-cz  email\n"
				    "~ slot  jnovak  support-cz  live 2 -> 4  rule cz-support\n"
				    "+ chan  new  sales  webchat  rule cz-support\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "3 grants added, 2 removed, 0 conflicts\n");
	/* the plan carries the index; the list is the desired set's */
	assert_int_equal(f->p->grants[1].rules, 2);
	assert_ptr_equal(ids_plan_grant_rules(f->p, &f->p->grants[1]), lists[2]);
	assert_int_equal(f->p->grants[0].rules, 3);
	assert_int_equal(f->p->grants[2].rules, 0);
	assert_null(ids_plan_grant_rules(f->p, &f->p->grants[2]));
	/* no bigger than before the index: 7 million of these at tier L */
	assert_true(sizeof(struct ids_plan_grant) <= 56);
	ids_plan_free(f->p);
	f->p = NULL;
	free(lists[1]);
	free(lists[2]);
	free(lists[3]);
}

/* A managed row loaded with its rules (joined by '\n', as store/load.c
 * reads the rules column). */
static void cgr(struct fx *f, int64_t uid, enum ids_grant_kind kind, const char *tenant, const char *name,
		int slots, const char *rules)
{
	struct ids_cur_grant g = {
	    .user_id = uid, .kind = (unsigned char)kind, .tenant = tenant, .name = name, .slots = slots};
	assert_int_equal(ids_current_add_grant_rules(f->c, &g, rules), 0);
}

/* Issue 17.1: the same grant produced by other rules is a provenance
 * update (op rules), counted apart from adds and removals; rows whose
 * recorded rules agree plan nothing (a resync stays silent), and rows
 * made by hand are never relabelled. */
static void test_rules_change(void **state)
{
	struct fx *f = *state;
	struct ids_rule_list *lists[] = {NULL, mklist(1, "cz-support"), mklist(2, "base", "seniors")};
	f->d.rule_lists = (const struct ids_rule_list **)lists;
	f->d.nrule_lists = 3;
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .active = true);
	cgr(f, 10, IDS_GRANT_ROLE, "sales", "admin", 0, NULL);
	f->c->grants[f->c->ngrants - 1].manual = true;
	/* the index fits in the row's padding: tier L loads 7 million rows */
	assert_int_equal(sizeof(struct ids_cur_grant), 32);
	cgr(f, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, "cz-support");
	cgr(f, 10, IDS_GRANT_CHANNEL, "support-cz", "email", 0, NULL); /* written before 005 */
	cgr(f, 10, IDS_GRANT_CHANNEL, "support-cz", "whatsapp", 0, "base");
	cgr(f, 10, IDS_GRANT_SLOT, "support-cz", "live", 2, "cz-support");
	MU(f, .id = 11, .external_id = "u2", .username = "pnovak", .active = true);
	cgr(f, 11, IDS_GRANT_CHANNEL, "support-cz", "whatsapp", 0, "base\nseniors");
	cgr(f, 11, IDS_GRANT_CHANNEL, "support-cz", "webchat", 0, "base\nseniors\n");
	size_t k = su(f, "u1", "jnovak", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "admin", 0);
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	want(f, k, IDS_GRANT_CHANNEL, "support-cz", "email", 0);
	want(f, k, IDS_GRANT_CHANNEL, "support-cz", "whatsapp", 0);
	want(f, k, IDS_GRANT_SLOT, "support-cz", "live", 4);
	const uint32_t r1[] = {1, 1, 1, 2, 2};
	for (size_t i = 0; i < 5; i++)
		f->grants[k][i].rules = r1[i];
	k = su(f, "u2", "pnovak", NULL);
	want(f, k, IDS_GRANT_CHANNEL, "support-cz", "webchat", 0);
	want(f, k, IDS_GRANT_CHANNEL, "support-cz", "whatsapp", 0);
	f->grants[k][0].rules = 2;
	f->grants[k][1].rules = 2;
	assert_string_equal(run(f),
			    "~ chan  jnovak  support-cz  email  rule cz-support (provenance only)\n"
			    "~ chan  jnovak  support-cz  whatsapp  rules base, seniors (provenance only)\n"
			    "~ slot  jnovak  support-cz  live 2 -> 4  rules base, seniors\n"
			    "~ chan  pnovak  support-cz  webchat  rules base, seniors (provenance only)\n"
			    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
			    "1 grants added, 0 removed, 0 conflicts, 3 provenance updated\n");
	assert_int_equal(f->p->grants[0].op, IDS_GOP_RULES);
	assert_int_equal(f->p->grants[2].op, IDS_GOP_CHANGE);
	assert_int_equal(f->p->counts.grants_rules_changed, 3);
	assert_int_equal(f->p->counts.grants_added, 1);
	/* the rows now say what the rules say: nothing left to do */
	uint16_t cz = f->c->grants[1].rules, both = f->c->grants[5].rules;
	assert_string_equal(ids_current_grant_rules(f->c, &f->c->grants[1]), "cz-support");
	assert_string_equal(ids_current_grant_rules(f->c, &f->c->grants[5]), "base\nseniors");
	for (size_t i = 0; i < f->c->ngrants; i++) {
		struct ids_cur_grant *g = &f->c->grants[i];
		if (!g->manual)
			g->rules = strcmp(g->name, "operator") && strcmp(g->name, "email") ? both : cz;
		if (!strcmp(g->name, "live"))
			g->slots = 4;
	}
	assert_string_equal(run(f), "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->ngrants, 0);
	ids_plan_free(f->p);
	f->p = NULL;
	free(lists[1]);
	free(lists[2]);
}

static void test_not_in_scope_or_disabled_without_row(void **state)
{
	struct fx *f = *state;
	su(f, "u1", "anna", "anna@x"); /* no grant: out of scope */
	size_t k = su(f, "u2", "bert", "bert@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	f->users[k].disabled = true; /* disabled */
	assert_string_equal(run(f), "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->nusers, 0);
	assert_int_equal(f->p->ngrants, 0);
	assert_int_equal(f->p->counts.users_seen, 2);
}

/* ---------------- deprovisioning table ---------------- */

static void test_deactivate_disabled(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = true);
	cg(f, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, false);
	cg(f, 10, IDS_GRANT_CHANNEL, "support-cz", "email", 0, true); /* manual: stays */
	size_t k = su(f, "u1", "pdvorak", "p@x");
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	f->users[k].disabled = true;
	assert_string_equal(run(f), "- user  pdvorak  deactivate (disabled_in_source)\n"
				    "- role  pdvorak  support-cz  operator\n"
				    "summary corp-ad: 0 create, 0 update, 1 deactivate, 0 reactivate, "
				    "0 grants added, 1 removed, 0 conflicts\n");
	assert_int_equal(f->p->users[0].flags, IDS_PU_DEACTIVATE);
	assert_int_equal(f->p->users[0].id, 10);
	assert_string_equal(f->p->users[0].reason, "disabled_in_source");
	assert_int_equal(f->p->active_managed, 1);
	assert_int_equal(f->p->managed_grants, 1);
	/* the user does not stay active: not a removal "on an active user" */
	assert_int_equal(f->p->removals_on_active, 0);
}

static void test_deactivate_out_of_scope(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = true);
	cg(f, 10, IDS_GRANT_SLOT, "sales", "live", 2, false);
	su(f, "u1", "pdvorak", "p@x"); /* still in the directory, no rule matches */
	assert_string_equal(run(f), "- user  pdvorak  deactivate (out_of_scope)\n"
				    "- slot  pdvorak  sales  live 2\n"
				    "summary corp-ad: 0 create, 0 update, 1 deactivate, 0 reactivate, "
				    "0 grants added, 1 removed, 0 conflicts\n");
}

static void test_deactivate_deleted(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = true);
	MU(f, .id = 11, .external_id = "u2", .username = "rkral", .email = "r@x", .active = true);
	cg(f, 10, IDS_GRANT_GROUP, "support-cz", "night", 0, false);
	size_t k = su(f, "u2", "rkral", "r@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	cg(f, 11, IDS_GRANT_ROLE, "sales", "operator", 0, false);
	assert_string_equal(run(f), "- user  pdvorak  deactivate (deleted_in_source)\n"
				    "- group pdvorak  support-cz  night\n"
				    "summary corp-ad: 0 create, 0 update, 1 deactivate, 0 reactivate, "
				    "0 grants added, 1 removed, 0 conflicts\n");
	assert_int_equal(f->p->active_managed, 2);
	assert_int_equal(f->p->managed_grants, 2);
	/* removing a group membership never asks for a group to be created */
	assert_int_equal(f->p->new_groups.n, 0);
}

/* Each deactivation reason, undone: the same row comes back. */
static void test_reactivate_each_reason(void **state)
{
	struct fx *f = *state;
	const char *reasons[] = {"disabled_in_source", "out_of_scope", "deleted_in_source"};
	for (size_t i = 0; i < 3; i++) {
		fx_reset(f);
		MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = false,
		   .reason = reasons[i]);
		size_t k = su(f, "u1", "pdvorak", "p@x");
		want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
		assert_string_equal(run(f),
				    "+ user  pdvorak  reactivate\n"
				    "+ role  pdvorak  support-cz  operator\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 1 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
		assert_int_equal(f->p->users[0].flags, IDS_PU_REACTIVATE);
		assert_int_equal(f->p->users[0].id, 10);
		assert_int_equal(f->p->active_managed, 0);
	}
}

static void test_reactivate_with_update(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = false,
	   .reason = "disabled_in_source");
	size_t k = su(f, "u1", "pdvorak", "petr.dvorak@x");
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	assert_string_equal(run(f), "+ user  pdvorak  reactivate\n"
				    "~ user  pdvorak  email p@x -> petr.dvorak@x\n"
				    "+ role  pdvorak  support-cz  operator\n"
				    "summary corp-ad: 0 create, 1 update, 0 deactivate, 1 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->users[0].flags, IDS_PU_REACTIVATE | IDS_PU_UPDATE);
	assert_int_equal(f->p->users[0].changed, IDS_CH_EMAIL);
}

/* Already inactive: a new reason is an update, not a deactivation; a
 * managed grant left behind still goes. */
static void test_inactive_reason_change(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .active = false,
	   .reason = "disabled_in_source");
	cg(f, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, false);
	MU(f, .id = 11, .external_id = "u2", .username = "rkral", .active = false,
	   .reason = "deleted_in_source");
	assert_string_equal(run(f),
			    "~ user  pdvorak  deactivation_reason disabled_in_source -> deleted_in_source\n"
			    "- role  pdvorak  support-cz  operator\n"
			    "summary corp-ad: 0 create, 1 update, 0 deactivate, 0 reactivate, "
			    "0 grants added, 1 removed, 0 conflicts\n");
	assert_int_equal(f->p->users[0].flags, IDS_PU_REASON);
	assert_string_equal(f->p->users[0].reason, "deleted_in_source");
	assert_int_equal(f->p->counts.deactivated, 0);
	assert_int_equal(f->p->active_managed, 0);
	assert_int_equal(f->p->removals_on_active, 0);
}

/* ---------------- updates ---------------- */

static void test_update_fields(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .email = "old@corp.example",
	   .first_name = "Jan", .last_name = "Novak", .active = true);
	cg(f, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, false);
	size_t k = su(f, "u1", "jnovak", "new@corp.example");
	su_names(f, k, "Jan", "Novák", NULL);
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	f->des[k].company_admin = true;
	assert_string_equal(run(f), "~ user  jnovak  email old@corp.example -> new@corp.example, "
				    "last_name Novak -> Novák, company_admin false -> true\n"
				    "summary corp-ad: 0 create, 1 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->users[0].flags, IDS_PU_UPDATE);
	assert_int_equal(f->p->users[0].changed, IDS_CH_EMAIL | IDS_CH_LAST_NAME | IDS_CH_COMPANY_ADMIN);
	assert_true(f->p->users[0].company_admin);
}

static void test_update_auth_and_rename(void **state)
{
	struct fx *f = *state;
	/* the row was made by this connector when it used another idp, and
	 * someone switched it to an activation link by hand */
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .active = true);
	MU(f, .id = 11, .external_id = "u2", .username = "anna", .active = true);
	f->c->users[0].auth_method = "activation_link";
	f->c->users[0].idp = NULL;
	f->c->users[1].idp = "entra";
	size_t k = su(f, "u1", "jan.novak", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	cg(f, 10, IDS_GRANT_ROLE, "sales", "operator", 0, false);
	k = su(f, "u2", "anna", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	cg(f, 11, IDS_GRANT_ROLE, "sales", "operator", 0, false);
	assert_string_equal(
	    run(f), "~ user  anna  auth sso/entra -> sso/ldap\n"
		    "~ user  jan.novak  username jnovak -> jan.novak, auth activation_link -> sso/ldap\n"
		    "summary corp-ad: 0 create, 2 update, 0 deactivate, 0 reactivate, "
		    "0 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->users[1].changed, IDS_CH_USERNAME | IDS_CH_AUTH);
}

static void test_unchanged_is_silent(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .email = "j@x", .active = true);
	cg(f, 10, IDS_GRANT_ROLE, "sales", "operator", 0, false);
	size_t k = su(f, "u1", "jnovak", "j@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->nusers, 0);
	assert_int_equal(f->p->ngrants, 0);
}

/* ---------------- adoption ---------------- */

static void test_adopt_by_email(void **state)
{
	struct fx *f = *state;
	f->o.adopt_by_email = true;
	HU(f, .id = 17, .username = "jan", .email = "Jan.Novak@corp.example", .active = true);
	cg(f, 17, IDS_GRANT_ROLE, "support-cz", "operator", 0, true);
	cg(f, 17, IDS_GRANT_ROLE, "support-cz", "tenant_admin", 0, true); /* not wanted: stays */
	size_t k = su(f, "u1", "jnovak", "jan.novak@corp.example");
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	want(f, k, IDS_GRANT_CHANNEL, "support-cz", "whatsapp", 0);
	assert_string_equal(run(f), "* user  jnovak  adopt (by e-mail)\n"
				    "~ user  jnovak  username jan -> jnovak, "
				    "email Jan.Novak@corp.example -> jan.novak@corp.example\n"
				    "+ chan  jnovak  support-cz  whatsapp\n"
				    "summary corp-ad: 0 create, 1 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
	const struct ids_plan_user *u = &f->p->users[0];
	assert_int_equal(u->flags, IDS_PU_ADOPT);
	assert_int_equal(u->id, 17);
	assert_int_equal(u->changed, IDS_CH_USERNAME | IDS_CH_EMAIL | IDS_CH_AUTH);
	assert_string_equal(u->external_id, "u1");
	/* an adopted user was not managed before: nothing counts against the
	 * thresholds */
	assert_int_equal(f->p->active_managed, 0);
	assert_int_equal(f->p->removals_on_active, 0);
}

static void test_adopt_inactive_reactivates(void **state)
{
	struct fx *f = *state;
	f->o.adopt_by_email = true;
	HU(f, .id = 17, .username = "jnovak", .email = "jan@x", .active = false);
	size_t k = su(f, "u1", "jnovak", "jan@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "* user  jnovak  adopt (by e-mail)\n"
				    "+ user  jnovak  reactivate\n"
				    "+ role  jnovak  sales  operator\n"
				    "summary corp-ad: 0 create, 1 update, 0 deactivate, 1 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->users[0].flags, IDS_PU_ADOPT | IDS_PU_REACTIVATE);
}

/* Without adopt, the same clash is a conflict and nothing else happens. */
static void test_adopt_off_conflicts(void **state)
{
	struct fx *f = *state;
	HU(f, .id = 17, .username = "jan", .email = "Jan.Novak@corp.example", .active = true);
	size_t k = su(f, "u1", "jnovak", "jan.novak@corp.example");
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	assert_string_equal(
	    run(f), "! user  jnovak  conflict: email jan.novak@corp.example is taken by active user id 17\n"
		    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
		    "0 grants added, 0 removed, 1 conflicts\n");
	assert_int_equal(f->p->users[0].flags, IDS_PU_CONFLICT);
	assert_int_equal(f->p->ngrants, 0);
}

/* Adoption still needs the username: taken by another row -> conflict. */
static void test_adopt_username_taken(void **state)
{
	struct fx *f = *state;
	f->o.adopt_by_email = true;
	HU(f, .id = 17, .username = "jan", .email = "jan@x", .active = true);
	HU(f, .id = 18, .username = "jnovak", .email = "other@x", .active = false);
	size_t k = su(f, "u1", "jnovak", "jan@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "! user  jnovak  conflict: username jnovak is taken by user id 18\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 1 conflicts\n");
}

/* ---------------- conflicts ---------------- */

static void test_conflict_username_manual(void **state)
{
	struct fx *f = *state;
	HU(f, .id = 5, .username = "JNovak", .email = "other@x", .active = true);
	size_t k = su(f, "u1", "jnovak", "jan@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	k = su(f, "u2", "anna", "anna@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	/* the conflict skips one user, the rest of the run goes on */
	assert_string_equal(run(f), "+ user  anna <anna@x>  sso/ldap\n"
				    "+ role  anna  sales  operator\n"
				    "! user  jnovak  conflict: username jnovak is taken by user id 5\n"
				    "summary corp-ad: 1 create, 0 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 1 conflicts\n");
}

/* Usernames are unique among all users, active or not. */
static void test_conflict_username_inactive(void **state)
{
	struct fx *f = *state;
	HU(f, .id = 5, .username = "jnovak", .email = "jan@x", .active = false);
	size_t k = su(f, "u1", "jnovak", "jan@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "! user  jnovak  conflict: username jnovak is taken by user id 5\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 1 conflicts\n");
}

static void test_conflict_email_active(void **state)
{
	struct fx *f = *state;
	add_cur(f, (struct ids_cur_user){.id = 6,
					 .source = "other-ldap",
					 .external_id = "x",
					 .username = "someone",
					 .email = "JAN@x",
					 .auth_method = "sso",
					 .idp = "ldap",
					 .active = true});
	size_t k = su(f, "u1", "jnovak", "jan@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "! user  jnovak  conflict: email jan@x is taken by active user id 6\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 1 conflicts\n");
	/* a row of another connector is not ours */
	assert_int_equal(f->p->active_managed, 0);
}

static void test_email_of_inactive_user_is_free(void **state)
{
	struct fx *f = *state;
	HU(f, .id = 6, .username = "someone", .email = "jan@x", .active = false);
	size_t k = su(f, "u1", "jnovak", "jan@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "+ user  jnovak <jan@x>  sso/ldap\n"
				    "+ role  jnovak  sales  operator\n"
				    "summary corp-ad: 1 create, 0 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
}

static void test_conflict_same_email_in_snapshot(void **state)
{
	struct fx *f = *state;
	size_t k = su(f, "u1", "bob", "shared@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	k = su(f, "u2", "anna", "SHARED@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	/* u1 comes first in snapshot order and wins, though anna prints first */
	assert_string_equal(run(f),
			    "! user  anna  conflict: email SHARED@x is wanted by another user of this run "
			    "(external id u1)\n"
			    "+ user  bob <shared@x>  sso/ldap\n"
			    "+ role  bob  sales  operator\n"
			    "summary corp-ad: 1 create, 0 update, 0 deactivate, 0 reactivate, "
			    "1 grants added, 0 removed, 1 conflicts\n");
}

/* A managed user's rename goes before a newcomer wanting the same name. */
static void test_conflict_managed_first(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 20, .external_id = "u9", .username = "karl", .active = true);
	size_t k = su(f, "u1", "carl", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	k = su(f, "u9", "carl", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	cg(f, 20, IDS_GRANT_ROLE, "sales", "operator", 0, false);
	assert_string_equal(run(f),
			    "! user  carl  conflict: username carl is wanted by another user of this run "
			    "(external id u9)\n"
			    "~ user  carl  username karl -> carl\n"
			    "summary corp-ad: 0 create, 1 update, 0 deactivate, 0 reactivate, "
			    "0 grants added, 0 removed, 1 conflicts\n");
}

/* Swaps are conflicts: both keep their current state, grants included. */
static void test_conflict_swap(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 30, .external_id = "a1", .username = "alice", .active = true);
	MU(f, .id = 31, .external_id = "b1", .username = "bob", .active = true);
	size_t k = su(f, "a1", "bob", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	k = su(f, "b1", "alice", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "! user  alice  conflict: username bob is taken by user id 31\n"
				    "! user  bob  conflict: username alice is taken by user id 30\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 2 conflicts\n");
	assert_int_equal(f->p->users[0].id, 30);
	assert_int_equal(f->p->ngrants, 0);
}

/* A reactivation takes the e-mail back among the active users. */
static void test_conflict_reactivation_email(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = false,
	   .reason = "disabled_in_source");
	HU(f, .id = 11, .username = "petr", .email = "P@x", .active = true);
	size_t k = su(f, "u1", "pdvorak", "p@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "! user  pdvorak  conflict: email p@x is taken by active user id 11\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 1 conflicts\n");
}

/* An e-mail freed by a deactivation in the same run may be reused. */
static void test_email_freed_by_deactivation(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 40, .external_id = "d1", .username = "dora", .email = "dora@x", .active = true);
	size_t k = su(f, "n1", "dora2", "Dora@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	assert_string_equal(run(f), "- user  dora  deactivate (deleted_in_source)\n"
				    "+ user  dora2 <Dora@x>  sso/ldap\n"
				    "+ role  dora2  sales  operator\n"
				    "summary corp-ad: 1 create, 0 update, 1 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
}

/* ---------------- grants ---------------- */

static void test_manual_grants_untouched_and_satisfying(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .active = true);
	cg(f, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, true);	 /* wanted, manual: satisfied */
	cg(f, 10, IDS_GRANT_CHANNEL, "support-cz", "email", 0, true);	 /* unwanted, manual: stays */
	cg(f, 10, IDS_GRANT_CHANNEL, "support-cz", "webchat", 0, false); /* unwanted, managed: goes */
	cg(f, 10, IDS_GRANT_SLOT, "support-cz", "live", 5, true);	 /* manual value wins */
	size_t k = su(f, "u1", "jnovak", NULL);
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	want(f, k, IDS_GRANT_CHANNEL, "support-cz", "whatsapp", 0);
	want(f, k, IDS_GRANT_SLOT, "support-cz", "live", 2);
	assert_string_equal(run(f), "- chan  jnovak  support-cz  webchat\n"
				    "+ chan  jnovak  support-cz  whatsapp\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 1 removed, 0 conflicts\n");
	assert_int_equal(f->p->managed_grants, 1);
	assert_int_equal(f->p->removals_on_active, 1);
	/* the store reaches the rows by the user's id */
	assert_int_equal(f->p->ngrants, 2);
	assert_int_equal(f->p->grants[0].user_id, 10);
	assert_int_equal(f->p->grants[1].user_id, 10);
}

static void test_slot_change(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .active = true);
	cg(f, 10, IDS_GRANT_SLOT, "support-cz", "live", 2, false);
	cg(f, 10, IDS_GRANT_SLOT, "support-cz", "email", 4, false);
	size_t k = su(f, "u1", "jnovak", NULL);
	want(f, k, IDS_GRANT_SLOT, "support-cz", "live", 3);
	want(f, k, IDS_GRANT_SLOT, "support-cz", "email", 4);
	assert_string_equal(run(f), "~ slot  jnovak  support-cz  live 2 -> 3\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->ngrants, 1);
	assert_int_equal(f->p->grants[0].op, IDS_GOP_CHANGE);
	assert_int_equal(f->p->grants[0].slots, 3);
	assert_int_equal(f->p->grants[0].old_slots, 2);
	/* a value change is not a removal */
	assert_int_equal(f->p->counts.grants_removed, 0);
	assert_int_equal(f->p->removals_on_active, 0);
}

/* ---------------- bad data ---------------- */

static void test_invalid_user_keeps_state(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "jnovak", .email = "j@x", .active = true);
	cg(f, 10, IDS_GRANT_ROLE, "support-cz", "operator", 0, false);
	size_t k = su(f, "u1", "jnovak-new", "j@x");
	f->users[k].invalid = "mail: not valid UTF-8";
	/* rules give an invalid user an empty, out-of-scope entry */
	k = su(f, "u2", NULL, NULL);
	f->users[k].invalid = "missing username";
	assert_string_equal(run(f), "? user  u2  skipped: missing username\n"
				    "? user  jnovak  skipped: mail: not valid UTF-8\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "0 grants added, 0 removed, 0 conflicts, 2 skipped\n");
	assert_int_equal(f->p->counts.skipped_invalid, 2);
	assert_int_equal(f->p->users[1].flags, IDS_PU_SKIP_INVALID);
	assert_int_equal(f->p->users[1].id, 10);
	assert_int_equal(f->p->ngrants, 0);
}

/* ---------------- tenants ---------------- */

static void test_missing_tenant(void **state)
{
	struct fx *f = *state;
	size_t k = su(f, "u1", "anna", NULL);
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	want(f, k, IDS_GRANT_ROLE, "zz-new", "operator", 0);
	want(f, k, IDS_GRANT_GROUP, "zz-new", "first-line", 0);
	k = su(f, "u2", "bob", NULL);
	want(f, k, IDS_GRANT_CHANNEL, "zz-new", "email", 0);
	want(f, k, IDS_GRANT_CHANNEL, "aa-new", "email", 0);
	assert_string_equal(run(f), "! tenant aa-new  unknown, grants skipped (tenants.auto_create is off)\n"
				    "! tenant zz-new  unknown, grants skipped (tenants.auto_create is off)\n"
				    "+ user  anna  sso/ldap\n"
				    "+ role  anna  support-cz  operator\n"
				    "+ user  bob  sso/ldap\n"
				    "summary corp-ad: 2 create, 0 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->missing_tenants.n, 2);
	assert_int_equal(f->p->new_tenants.n, 0);
	assert_int_equal(f->p->new_groups.n, 0);
}

static void test_missing_tenant_auto_create(void **state)
{
	struct fx *f = *state;
	f->o.auto_create_tenants = true;
	size_t k = su(f, "u1", "anna", NULL);
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	want(f, k, IDS_GRANT_ROLE, "zz-new", "operator", 0);
	want(f, k, IDS_GRANT_GROUP, "zz-new", "first-line", 0);
	k = su(f, "u2", "bob", NULL);
	want(f, k, IDS_GRANT_GROUP, "zz-new", "first-line", 0);
	want(f, k, IDS_GRANT_GROUP, "sales", "b-team", 0);
	assert_string_equal(run(f), "+ tenant zz-new\n"
				    "+ user  anna  sso/ldap\n"
				    "+ role  anna  support-cz  operator\n"
				    "+ role  anna  zz-new  operator\n"
				    "+ group anna  zz-new  first-line\n"
				    "+ user  bob  sso/ldap\n"
				    "+ group bob  sales  b-team\n"
				    "+ group bob  zz-new  first-line\n"
				    "summary corp-ad: 2 create, 0 update, 0 deactivate, 0 reactivate, "
				    "5 grants added, 0 removed, 0 conflicts\n");
	assert_int_equal(f->p->new_tenants.n, 1);
	assert_string_equal(f->p->new_tenants.v[0], "zz-new");
	assert_int_equal(f->p->missing_tenants.n, 0);
	/* each (tenant, group) once, sorted */
	assert_int_equal(f->p->new_groups.n, 2);
	assert_string_equal(f->p->new_groups.v[0], "sales\tb-team");
	assert_string_equal(f->p->new_groups.v[1], "zz-new\tfirst-line");
}

/* ---------------- safety ---------------- */

/* A plan with only the numbers the checks read. */
static struct ids_plan *numbers(long deactivated, long active_managed, long removals, long managed_grants)
{
	struct ids_plan *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->connector = "corp-ad";
	p->counts.deactivated = deactivated;
	p->active_managed = active_managed;
	p->removals_on_active = removals;
	p->managed_grants = managed_grants;
	return p;
}

static void test_threshold_absolute(void **state)
{
	(void)state;
	const struct ids_safety lim = {2, 100, 100};
	struct ids_plan *p = numbers(2, 10, 0, 0);
	ids_safety_check(p, 8, &lim, false, false);
	assert_int_equal(p->verdict, IDS_VERDICT_OK); /* exactly at the limit */
	assert_null(p->verdict_why);
	p->counts.deactivated = 3;
	ids_safety_check(p, 7, &lim, false, false);
	assert_int_equal(p->verdict, IDS_VERDICT_THRESHOLD);
	assert_string_equal(
	    p->verdict_why,
	    "3 deactivations exceed safety.max_deactivations (2); run `idsyncd sync --connector "
	    "corp-ad --allow-mass-deactivation` once or raise safety.max_deactivations");
	ids_safety_check(p, 7, &lim, false, true);
	assert_int_equal(p->verdict, IDS_VERDICT_OK);
	assert_null(p->verdict_why);
	ids_plan_free(p);
}

static void test_threshold_percent(void **state)
{
	(void)state;
	struct ids_plan *p = numbers(2, 20, 0, 0); /* 10% of 20 = 2 */
	ids_safety_check(p, 18, &defaults, false, false);
	assert_int_equal(p->verdict, IDS_VERDICT_OK);
	p->counts.deactivated = 3;
	ids_safety_check(p, 17, &defaults, false, false);
	assert_int_equal(p->verdict, IDS_VERDICT_THRESHOLD);
	assert_string_equal(p->verdict_why,
			    "3 deactivations are 15.0% of 20 active managed users, above "
			    "safety.max_deactivation_percent (10%); run `idsyncd sync --connector corp-ad "
			    "--allow-mass-deactivation` once or raise safety.max_deactivation_percent");
	ids_safety_check(p, 17, &defaults, false, true);
	assert_int_equal(p->verdict, IDS_VERDICT_OK);
	ids_plan_free(p);
}

static void test_threshold_grant_removals(void **state)
{
	(void)state;
	struct ids_plan *p = numbers(0, 20, 10, 40); /* 25% of 40 = 10 */
	ids_safety_check(p, 20, &defaults, false, false);
	assert_int_equal(p->verdict, IDS_VERDICT_OK);
	p->removals_on_active = 11;
	ids_safety_check(p, 20, &defaults, false, false);
	assert_int_equal(p->verdict, IDS_VERDICT_THRESHOLD);
	assert_string_equal(p->verdict_why,
			    "11 grant removals on active users are 27.5% of 40 managed grants, above "
			    "safety.max_grant_removals_percent (25%); run `idsyncd sync --connector corp-ad "
			    "--allow-mass-deactivation` once or raise safety.max_grant_removals_percent");
	ids_safety_check(p, 20, &defaults, false, true);
	assert_int_equal(p->verdict, IDS_VERDICT_OK);
	ids_plan_free(p);
}

/* The thresholds on a real diff: 2 of 10 managed users gone is 20%. */
static void test_threshold_from_diff(void **state)
{
	struct fx *f = *state;
	static const char *ids[] = {"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"};
	static const char *names[] = {"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"};
	for (int i = 0; i < 10; i++) {
		MU(f, .id = 100 + i, .external_id = ids[i], .username = names[i], .active = true);
		cg(f, 100 + i, IDS_GRANT_ROLE, "sales", "operator", 0, false);
		if (i >= 2) {
			size_t k = su(f, ids[i], names[i], NULL);
			want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
		}
	}
	run(f);
	assert_int_equal(f->p->counts.deactivated, 2);
	assert_int_equal(f->p->active_managed, 10);
	assert_int_equal(f->p->managed_grants, 10);
	ids_safety_check(f->p, f->s.nusers, &defaults, false, false);
	assert_int_equal(f->p->verdict, IDS_VERDICT_THRESHOLD);
	ids_buf_reset(&f->text);
	assert_int_equal(ids_plan_format_text(f->p, &f->text), 0);
	assert_non_null(strstr(f->text.p, "\naborted: 2 deactivations are 20.0% of 10 active managed users"));
	ids_safety_check(f->p, f->s.nusers, &defaults, false, true);
	assert_int_equal(f->p->verdict, IDS_VERDICT_OK);
}

static void test_empty_guard(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 1, .external_id = "u1", .username = "a", .active = true);
	MU(f, .id = 2, .external_id = "u2", .username = "b", .active = true);
	MU(f, .id = 3, .external_id = "u3", .username = "c", .active = true);
	MU(f, .id = 4, .external_id = "u4", .username = "d", .active = false, .reason = "deleted_in_source");
	run(f);
	assert_int_equal(f->p->counts.deactivated, 3);
	assert_int_equal(f->p->active_managed, 3);
	/* checked before the thresholds, and --allow-mass-deactivation does
	 * not bypass it */
	ids_safety_check(f->p, 0, &defaults, false, true);
	assert_int_equal(f->p->verdict, IDS_VERDICT_EMPTY);
	assert_string_equal(f->p->verdict_why, "snapshot has 0 users but corp-ad owns 3 active users; "
					       "set allow_empty: true if that is intended");
	/* allowed empty: the thresholds still apply (3 of 3) */
	ids_safety_check(f->p, 0, &defaults, true, false);
	assert_int_equal(f->p->verdict, IDS_VERDICT_THRESHOLD);
	ids_safety_check(f->p, 0, &defaults, true, true);
	assert_int_equal(f->p->verdict, IDS_VERDICT_OK);
}

static void test_empty_without_active_users_is_ok(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 4, .external_id = "u4", .username = "d", .active = false, .reason = "deleted_in_source");
	run(f);
	ids_safety_check(f->p, 0, &defaults, false, false);
	assert_int_equal(f->p->verdict, IDS_VERDICT_OK);
}

/* ---------------- retire ---------------- */

static void test_retire(void **state)
{
	struct fx *f = *state;
	f->o = (struct ids_diff_opts){.connector = "corp-ad", .retire = true};
	MU(f, .id = 10, .external_id = "u1", .username = "anna", .active = true);
	cg(f, 10, IDS_GRANT_ROLE, "sales", "operator", 0, false);
	cg(f, 10, IDS_GRANT_ROLE, "sales", "tenant_admin", 0, true);
	MU(f, .id = 11, .external_id = "u2", .username = "bob", .active = false,
	   .reason = "deleted_in_source");
	MU(f, .id = 12, .external_id = "u3", .username = "cyril", .active = false, .reason = "out_of_scope");
	HU(f, .id = 13, .username = "dana", .active = true);
	add_cur(f, (struct ids_cur_user){.id = 14,
					 .source = "other",
					 .external_id = "u1",
					 .username = "eva",
					 .auth_method = "sso",
					 .active = true});
	assert_string_equal(run(f), "- user  anna  deactivate (out_of_scope)\n"
				    "- role  anna  sales  operator\n"
				    "~ user  bob  deactivation_reason deleted_in_source -> out_of_scope\n"
				    "summary corp-ad: 0 create, 1 update, 1 deactivate, 0 reactivate, "
				    "0 grants added, 1 removed, 0 conflicts\n");
	ids_safety_check(f->p, 0, &defaults, true, false);
	assert_int_equal(f->p->verdict, IDS_VERDICT_THRESHOLD);
	assert_non_null(strstr(f->p->verdict_why, "run `idsyncd retire corp-ad --allow-mass-deactivation`"));
}

/* ---------------- determinism ---------------- */

/* Loads the same current state in the order `perm` gives. */
static void load_scenario(struct fx *f, const int *perm)
{
	fx_reset(f);
	f->o.adopt_by_email = true;
	for (int i = 0; i < 7; i++) {
		switch (perm[i]) {
		case 0:
			MU(f, .id = 1, .external_id = "e1", .username = "anna", .email = "anna@x",
			   .active = true);
			break;
		case 1:
			MU(f, .id = 2, .external_id = "e2", .username = "bob", .email = "bob@x",
			   .active = true);
			break;
		case 2:
			MU(f, .id = 3, .external_id = "e3", .username = "cyril", .active = false,
			   .reason = "out_of_scope");
			break;
		case 3: HU(f, .id = 4, .username = "dana", .email = "dana@x", .active = true); break;
		/* two rows holding one name in different case (the schema
		 * forbids it; the diff must still name the lowest id) */
		case 4: HU(f, .id = 5, .username = "Emil", .active = false); break;
		case 5: HU(f, .id = 6, .username = "emil", .active = true); break;
		case 6:
			MU(f, .id = 7, .external_id = "e7", .username = "gone", .email = "g@x",
			   .active = true);
			break;
		}
	}
	const struct ids_cur_grant gs[] = {
	    {.user_id = 1,
	     .kind = IDS_GRANT_ROLE,
	     .tenant = "sales",
	     .name = "operator",
	     .slots = 0,
	     .manual = false},
	    {.user_id = 1,
	     .kind = IDS_GRANT_SLOT,
	     .tenant = "sales",
	     .name = "live",
	     .slots = 1,
	     .manual = false},
	    {.user_id = 2,
	     .kind = IDS_GRANT_CHANNEL,
	     .tenant = "sales",
	     .name = "email",
	     .slots = 0,
	     .manual = false},
	    {.user_id = 2,
	     .kind = IDS_GRANT_CHANNEL,
	     .tenant = "sales",
	     .name = "webchat",
	     .slots = 0,
	     .manual = true},
	    {.user_id = 7,
	     .kind = IDS_GRANT_GROUP,
	     .tenant = "support-cz",
	     .name = "night",
	     .slots = 0,
	     .manual = false},
	    {.user_id = 4,
	     .kind = IDS_GRANT_ROLE,
	     .tenant = "sales",
	     .name = "operator",
	     .slots = 0,
	     .manual = true},
	};
	for (int i = 0; i < 6; i++)
		assert_int_equal(ids_current_add_grant(f->c, &gs[(i * 5 + perm[1]) % 6]), 0);

	size_t k = su(f, "e1", "anna", "anna@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	want(f, k, IDS_GRANT_SLOT, "sales", "live", 4);
	k = su(f, "e2", "bob", "bob@x");
	want(f, k, IDS_GRANT_CHANNEL, "sales", "webchat", 0);
	k = su(f, "e3", "cyril", NULL);
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	k = su(f, "n1", "dana-new", "DANA@x");
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
	k = su(f, "n2", "EMIL", NULL);
	want(f, k, IDS_GRANT_ROLE, "sales", "operator", 0);
}

static void test_determinism(void **state)
{
	struct fx *f = *state;
	const int perms[][7] = {{0, 1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1, 0}, {3, 0, 5, 2, 6, 1, 4}};
	char *first_text = NULL;
	for (size_t i = 0; i < 3; i++) {
		load_scenario(f, perms[i]);
		run(f);
		/* (the JSON form is the same plan written by the daemon: its own
		 * test, test_output_json, checks that writer) */
		if (i == 0) {
			first_text = strdup(f->text.p);
			/* and it is the plan semantics.md asks for: EMIL clashes
			 * with emil/Emil, dana@x is adopted, e7 is gone */
			assert_string_equal(
			    first_text,
			    "! user  EMIL  conflict: username EMIL is taken by user id 5\n"
			    "~ slot  anna  sales  live 1 -> 4\n"
			    "- chan  bob  sales  email\n"
			    "+ user  cyril  reactivate\n"
			    "+ role  cyril  support-cz  operator\n"
			    "* user  dana-new  adopt (by e-mail)\n"
			    "~ user  dana-new  username dana -> dana-new, email dana@x -> DANA@x\n"
			    "- user  gone  deactivate (deleted_in_source)\n"
			    "- group gone  support-cz  night\n"
			    "summary corp-ad: 0 create, 1 update, 1 deactivate, 1 reactivate, "
			    "2 grants added, 2 removed, 1 conflicts\n");
		} else {
			assert_string_equal(f->text.p, first_text);
		}
	}
	free(first_text);
}

/* ---------------- current-state container ---------------- */

/* The id index the diff and the store's load share: every id found, an
 * absent one or 0 not, and 200 dense ids in a table that must grow. */
static void test_current_index(void **state)
{
	(void)state;
	struct ids_current *c = NULL;
	struct ids_current_index ix;
	uint32_t row = 99;
	assert_int_equal(ids_current_new(&c), 0);
	for (int64_t id = 1; id <= 200; id++) {
		struct ids_cur_user u = {.id = id == 200 ? INT64_C(1) << 40 : id, .username = "u"};
		assert_int_equal(ids_current_add_user(c, &u), 0);
	}
	assert_int_equal(ids_current_index_build(c, &ix), 0);
	assert_true(ix.cap >= 2 * 200);
	for (uint32_t i = 0; i < 200; i++) {
		assert_true(ids_current_index_get(&ix, c->users[i].id, &row));
		assert_int_equal(row, i);
	}
	assert_false(ids_current_index_get(&ix, 200, &row));
	assert_false(ids_current_index_get(&ix, 0, &row));
	ids_current_index_free(&ix);
	ids_current_index_free(&ix); /* harmless twice */
	ids_current_free(c);
}

static void test_current_copies(void **state)
{
	(void)state;
	struct ids_current *c = NULL;
	char name[] = "jnovak", tenant[] = "sales";
	assert_int_equal(ids_current_new(&c), 0);
	struct ids_cur_user u = {.id = 1, .username = name, .auth_method = "sso"};
	for (int i = 0; i < 200; i++) /* past the first growth */
		assert_int_equal(ids_current_add_user(c, &u), 0);
	struct ids_cur_grant g = {.user_id = 1, .kind = IDS_GRANT_ROLE, .tenant = tenant, .name = "operator"};
	assert_int_equal(ids_current_add_grant(c, &g), 0);
	g.kind = IDS_GRANT__COUNT;
	assert_int_equal(ids_current_add_grant(c, &g), -EINVAL);
	name[0] = 'X';
	tenant[0] = 'X';
	assert_int_equal(c->nusers, 200);
	assert_string_equal(c->users[199].username, "jnovak");
	assert_null(c->users[199].email);
	assert_int_equal(c->ngrants, 1);
	assert_string_equal(c->grants[0].tenant, "sales");
	ids_current_free(c);
	ids_current_free(NULL);
	ids_plan_free(NULL);
}

static void test_bad_arguments(void **state)
{
	struct fx *f = *state;
	struct ids_plan *p = (struct ids_plan *)&p; /* must stay untouched */
	su(f, "u1", "a", NULL);
	f->d.nusers = 0; /* desired set not parallel to the snapshot */
	assert_int_equal(ids_diff_compute(&f->s, &f->d, f->c, &f->o, &p), -EINVAL);
	assert_ptr_equal(p, (struct ids_plan *)&p);
}

/* ---------------- sync --user ---------------- */

/* A targeted plan: the new hire gets their row and grants; a managed user
 * the partial snapshot lacks, one it has with other grants, and an
 * invalid entry of someone else are all left exactly as they are. */
static void test_only_user_leaves_others(void **state)
{
	struct fx *f = *state;
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = true);
	cg(f, 10, IDS_GRANT_GROUP, "support-cz", "night", 0, false);
	MU(f, .id = 11, .external_id = "u2", .username = "rkral", .email = "r@x", .active = true);
	cg(f, 11, IDS_GRANT_ROLE, "sales", "operator", 0, false);
	size_t k = su(f, "u2", "rkral-renamed", "r@x"); /* read, but not the one asked for */
	want(f, k, IDS_GRANT_ROLE, "sales", "admin", 0);
	k = su(f, "u3", "jnovak", "j@x");
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	k = su(f, "u4", NULL, NULL);
	f->users[k].invalid = "missing username";
	f->o.only_user = "u3";
	assert_string_equal(run(f), "+ user  jnovak <j@x>  sso/ldap\n"
				    "+ role  jnovak  support-cz  operator\n"
				    "summary corp-ad: 1 create, 0 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
}

/* The one user is never deactivated by a targeted run: not when the read
 * lacks them, not when disabled or out of scope (full runs do that). */
static void test_only_user_never_deactivates(void **state)
{
	struct fx *f = *state;
	static const char *none = "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				  "0 grants added, 0 removed, 0 conflicts\n";
	MU(f, .id = 10, .external_id = "u1", .username = "pdvorak", .email = "p@x", .active = true);
	cg(f, 10, IDS_GRANT_GROUP, "support-cz", "night", 0, false);
	f->o.only_user = "u1";
	assert_string_equal(run(f), none); /* not in the snapshot */
	size_t k = su(f, "u1", "pdvorak", "p@x");
	assert_string_equal(run(f), none); /* out of scope */
	want(f, k, IDS_GRANT_GROUP, "support-cz", "night", 0);
	f->users[k].disabled = true;
	assert_string_equal(run(f), none); /* disabled */
	f->users[k].disabled = false;
	want(f, k, IDS_GRANT_ROLE, "support-cz", "operator", 0);
	assert_string_equal(run(f), "+ role  pdvorak  support-cz  operator\n"
				    "summary corp-ad: 0 create, 0 update, 0 deactivate, 0 reactivate, "
				    "1 grants added, 0 removed, 0 conflicts\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
	    T(test_create),
	    T(test_only_user_leaves_others),
	    T(test_only_user_never_deactivates),
	    T(test_grants_name_their_rules),
	    T(test_rules_change),
	    T(test_not_in_scope_or_disabled_without_row),
	    T(test_deactivate_disabled),
	    T(test_deactivate_out_of_scope),
	    T(test_deactivate_deleted),
	    T(test_reactivate_each_reason),
	    T(test_reactivate_with_update),
	    T(test_inactive_reason_change),
	    T(test_update_fields),
	    T(test_update_auth_and_rename),
	    T(test_unchanged_is_silent),
	    T(test_adopt_by_email),
	    T(test_adopt_inactive_reactivates),
	    T(test_adopt_off_conflicts),
	    T(test_adopt_username_taken),
	    T(test_conflict_username_manual),
	    T(test_conflict_username_inactive),
	    T(test_conflict_email_active),
	    T(test_email_of_inactive_user_is_free),
	    T(test_conflict_same_email_in_snapshot),
	    T(test_conflict_managed_first),
	    T(test_conflict_swap),
	    T(test_conflict_reactivation_email),
	    T(test_email_freed_by_deactivation),
	    T(test_manual_grants_untouched_and_satisfying),
	    T(test_slot_change),
	    T(test_invalid_user_keeps_state),
	    T(test_missing_tenant),
	    T(test_missing_tenant_auto_create),
	    T(test_threshold_absolute),
	    T(test_threshold_percent),
	    T(test_threshold_grant_removals),
	    T(test_threshold_from_diff),
	    T(test_empty_guard),
	    T(test_empty_without_active_users_is_ok),
	    T(test_retire),
	    T(test_determinism),
	    T(test_current_index),
	    T(test_current_copies),
	    T(test_bad_arguments),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
