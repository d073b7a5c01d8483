/* ctest_store_apply.c — loading the current state and applying hand-built
 * plans against a real PostgreSQL: the resulting rows, the audit rows, the
 * sync_run row, manual rows left alone, company isolation, atomicity, and
 * values that COPY must carry exactly.  Each test seeds its own schema.
 *
 * Expected rows are written out by hand from spec/schema.md and
 * spec/semantics.md, not taken from the code's output. */
#include "ctest_store_common.h"

#include <inttypes.h>

#include "ids/plan.h"

/* Two companies that both have a support-cz tenant and a jnovak, a
 * connector "corp" owning users in acme (and, by misconfiguration, one in
 * globex), another connector, and hand-made rows.  All times are fixed. */
static const char seed_sql[] =
    "INSERT INTO company (slug, name) VALUES ('acme', 'Acme'), ('globex', 'Globex');"
    "INSERT INTO tenant (company_id, slug, name) VALUES"
    " ((SELECT id FROM company WHERE slug = 'acme'), 'support-cz', 'Support CZ'),"
    " ((SELECT id FROM company WHERE slug = 'acme'), 'sales', 'Sales'),"
    " ((SELECT id FROM company WHERE slug = 'globex'), 'support-cz', 'Support CZ'),"
    " ((SELECT id FROM company WHERE slug = 'globex'), 'globex-only', 'Globex only');"
    "INSERT INTO app_user (company_id, source, external_id, username, email, first_name, last_name,"
    " display_name, auth_method, idp, active, deactivated_at, deactivation_reason) VALUES"
    " ((SELECT id FROM company WHERE slug = 'acme'), NULL, NULL, 'manual1', 'M1@acme.example', 'Marie',"
    "  NULL, NULL, 'activation_link', NULL, true, NULL, NULL),"
    " ((SELECT id FROM company WHERE slug = 'acme'), 'corp', 'E2', 'jnovak', 'jan@acme.example', 'Jan',"
    "  'Novak', 'Jan', 'sso', 'entra', true, NULL, NULL),"
    " ((SELECT id FROM company WHERE slug = 'acme'), 'corp', 'E3', 'pdvorak', 'petr@acme.example', 'Petr',"
    "  'Dvorak', 'Petr Dvorak', 'sso', 'entra', true, NULL, NULL),"
    " ((SELECT id FROM company WHERE slug = 'acme'), 'corp', 'E4', 'old', 'old@acme.example', NULL,"
    "  NULL, NULL, 'sso', 'entra', false, '2026-01-01 00:00:00+00', 'out_of_scope'),"
    " ((SELECT id FROM company WHERE slug = 'acme'), 'other-conn', 'E5', 'ext', NULL, NULL,"
    "  NULL, NULL, 'sso', 'google', true, NULL, NULL),"
    " ((SELECT id FROM company WHERE slug = 'globex'), NULL, NULL, 'jnovak', 'jan@globex.example', NULL,"
    "  NULL, NULL, 'activation_link', NULL, true, NULL, NULL),"
    " ((SELECT id FROM company WHERE slug = 'globex'), 'corp', 'G1', 'gcorp', NULL, NULL,"
    "  NULL, NULL, 'sso', 'entra', true, NULL, NULL);"
    "INSERT INTO operator_group (tenant_id, name) VALUES"
    " ((SELECT t.id FROM tenant t JOIN company c ON c.id = t.company_id"
    "   WHERE c.slug = 'acme' AND t.slug = 'support-cz'), 'Tier1'),"
    " ((SELECT t.id FROM tenant t JOIN company c ON c.id = t.company_id"
    "   WHERE c.slug = 'globex' AND t.slug = 'support-cz'), 'Tier1');"
    /* (user, company, tenant) -> ids, for the grant rows below */
    "CREATE TEMP VIEW ut AS SELECT u.id AS uid, u.username, c.slug AS company, t.id AS tid, t.slug AS tenant"
    " FROM app_user u JOIN company c ON c.id = u.company_id JOIN tenant t ON t.company_id = c.id;"
    "INSERT INTO tenant_role (user_id, tenant_id, role, source)"
    " SELECT uid, tid, 'operator', 'corp' FROM ut WHERE company = 'acme' AND username = 'jnovak' AND tenant "
    "= 'support-cz'"
    " UNION ALL SELECT uid, tid, 'admin', NULL FROM ut WHERE company = 'acme' AND username = 'jnovak' AND "
    "tenant = 'sales'"
    " UNION ALL SELECT uid, tid, 'viewer', 'other-conn' FROM ut WHERE company = 'acme' AND username = "
    "'jnovak'"
    "  AND tenant = 'support-cz'"
    " UNION ALL SELECT uid, tid, 'operator', 'corp' FROM ut WHERE company = 'acme' AND username = 'pdvorak'"
    "  AND tenant = 'support-cz'"
    " UNION ALL SELECT uid, tid, 'operator', NULL FROM ut WHERE company = 'acme' AND username = 'manual1'"
    "  AND tenant = 'support-cz'"
    " UNION ALL SELECT uid, tid, 'operator', 'other-conn' FROM ut WHERE company = 'acme' AND username = 'ext'"
    "  AND tenant = 'support-cz'"
    " UNION ALL SELECT uid, tid, 'operator', 'corp' FROM ut WHERE company = 'globex' AND username = 'gcorp'"
    "  AND tenant = 'support-cz';"
    "INSERT INTO channel_grant (user_id, tenant_id, channel, source)"
    " SELECT uid, tid, 'webchat', 'corp' FROM ut WHERE company = 'acme' AND username = 'jnovak'"
    "  AND tenant = 'support-cz';"
    "INSERT INTO slot_limit (user_id, tenant_id, channel_group, slots, source)"
    " SELECT uid, tid, 'live', 2, 'corp' FROM ut WHERE company = 'acme' AND username = 'jnovak'"
    "  AND tenant = 'support-cz'"
    " UNION ALL SELECT uid, tid, 'email', 4, NULL FROM ut WHERE company = 'acme' AND username = 'jnovak'"
    "  AND tenant = 'support-cz';"
    "INSERT INTO operator_group_member (group_id, user_id, source)"
    " SELECT g.id, ut.uid, 'corp' FROM ut JOIN operator_group g ON g.tenant_id = ut.tid AND g.name = 'Tier1'"
    " WHERE company = 'acme' AND username = 'jnovak' AND tenant = 'support-cz';"
    "DROP VIEW ut";

/* Every grant row of every company, one line each, sorted bytewise:
 * "company user kind tenant name[=slots] source|-". */
static const char dump_grants_sql[] =
    "SELECT coalesce(string_agg(l, '; ' ORDER BY l COLLATE \"C\"), '') FROM ("
    " SELECT c.slug || ' ' || u.username || ' role ' || t.slug || ' ' || x.role || ' ' || coalesce(x.source, "
    "'-') l"
    "  FROM tenant_role x JOIN app_user u ON u.id = x.user_id JOIN tenant t ON t.id = x.tenant_id"
    "  JOIN company c ON c.id = t.company_id"
    " UNION ALL SELECT c.slug || ' ' || u.username || ' chan ' || t.slug || ' ' || x.channel || ' '"
    "  || coalesce(x.source, '-')"
    "  FROM channel_grant x JOIN app_user u ON u.id = x.user_id JOIN tenant t ON t.id = x.tenant_id"
    "  JOIN company c ON c.id = t.company_id"
    " UNION ALL SELECT c.slug || ' ' || u.username || ' slot ' || t.slug || ' ' || x.channel_group || '='"
    "  || x.slots || ' ' || coalesce(x.source, '-')"
    "  FROM slot_limit x JOIN app_user u ON u.id = x.user_id JOIN tenant t ON t.id = x.tenant_id"
    "  JOIN company c ON c.id = t.company_id"
    " UNION ALL SELECT c.slug || ' ' || u.username || ' group ' || t.slug || ' ' || g.name || ' '"
    "  || coalesce(x.source, '-')"
    "  FROM operator_group_member x JOIN app_user u ON u.id = x.user_id"
    "  JOIN operator_group g ON g.id = x.group_id JOIN tenant t ON t.id = g.tenant_id"
    "  JOIN company c ON c.id = t.company_id) s";

/* The seeded grants, before any apply. */
#define SEED_GRANTS                                                                                          \
	"acme ext role support-cz operator other-conn; "                                                     \
	"acme jnovak chan support-cz webchat corp; "                                                         \
	"acme jnovak group support-cz Tier1 corp; "                                                          \
	"acme jnovak role sales admin -; "                                                                   \
	"acme jnovak role support-cz operator corp; "                                                        \
	"acme jnovak role support-cz viewer other-conn; "                                                    \
	"acme jnovak slot support-cz email=4 -; "                                                            \
	"acme jnovak slot support-cz live=2 corp; "                                                          \
	"acme manual1 role support-cz operator -; "                                                          \
	"acme pdvorak role support-cz operator corp; "                                                       \
	"globex gcorp role support-cz operator corp"

/* A user row as one line: the columns a sync may touch. */
static const char user_sql[] =
    "SELECT concat(username, '|', coalesce(email, '-'), '|', coalesce(first_name, '-'), '|',"
    " coalesce(last_name, '-'), '|', coalesce(display_name, '-'), '|', company_admin, '|', active, '|',"
    " coalesce(deactivation_reason, '-'), '|', deactivated_at IS NOT NULL, '|', coalesce(source, '-'), '|',"
    " coalesce(external_id, '-'), '|', auth_method, '|', coalesce(idp, '-'))"
    " FROM app_user u JOIN company c ON c.id = u.company_id WHERE c.slug = $1 AND u.username = $2";

struct fixture {
	struct ids_store *st;
	int64_t acme, globex;
	char schema[32];
};

/* A fresh schema per test, migrated and seeded. */
static int setup(void **state)
{
	static int n;
	struct fixture *f = calloc(1, sizeof(*f));
	struct ids_error e = {0};
	snprintf(f->schema, sizeof(f->schema), "a_%d", ++n);
	f->st = open_store(f->schema, true);
	use_schema(f->schema);
	sql(seed_sql);
	assert_int_equal(ids_store_company(f->st, "acme", true, &f->acme, &e), 0);
	assert_int_equal(ids_store_company(f->st, "globex", true, &f->globex, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	ids_store_close(f->st);
	free(f);
	return 0;
}

static struct ids_current *load(struct fixture *f)
{
	struct ids_current *c = NULL;
	struct ids_error e = {0};
	if (ids_store_load(f->st, f->acme, "corp", &c, &e) < 0)
		fail_msg("ids_store_load: %s", ids_error_text(&e));
	return c;
}

static const struct ids_cur_user *cur_user(const struct ids_current *c, const char *username)
{
	for (size_t i = 0; i < c->nusers; i++)
		if (strcmp(c->users[i].username, username) == 0)
			return &c->users[i];
	fail_msg("no user %s in the loaded state", username);
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---------------- load ---------------- */

static void test_load(void **state)
{
	struct fixture *f = *state;
	struct ids_current *c = load(f);

	/* every acme user, whoever made it; nothing of globex */
	assert_int_equal(c->nusers, 5);
	const char *names[5];
	for (size_t i = 0; i < 5; i++)
		names[i] = c->users[i].username;
	qsort(names, 5, sizeof(names[0]), cmp_str);
	assert_string_equal(names[0], "ext");
	assert_string_equal(names[1], "jnovak");
	assert_string_equal(names[2], "manual1");
	assert_string_equal(names[3], "old");
	assert_string_equal(names[4], "pdvorak");

	const struct ids_cur_user *m = cur_user(c, "manual1");
	assert_null(m->source);
	assert_null(m->external_id);
	assert_string_equal(m->email, "M1@acme.example");
	assert_string_equal(m->auth_method, "activation_link");
	assert_null(m->idp);
	assert_true(m->active);
	assert_false(m->company_admin);

	const struct ids_cur_user *j = cur_user(c, "jnovak");
	assert_string_equal(j->source, "corp");
	assert_string_equal(j->external_id, "E2");
	assert_string_equal(j->first_name, "Jan");
	assert_string_equal(j->last_name, "Novak");
	assert_string_equal(j->display_name, "Jan");
	assert_string_equal(j->idp, "entra");
	assert_null(j->reason);

	const struct ids_cur_user *o = cur_user(c, "old");
	assert_false(o->active);
	assert_string_equal(o->reason, "out_of_scope");
	assert_null(o->first_name);

	/* tenants of acme only */
	assert_int_equal(c->tenants.n, 2);
	assert_true(ids_strv_contains(&c->tenants, "sales", false));
	assert_true(ids_strv_contains(&c->tenants, "support-cz", false));
	assert_false(ids_strv_contains(&c->tenants, "globex-only", false));

	/* grants of the users corp owns in acme and of acme's unmanaged
	 * users (adoption candidates, always manual): a row of another source
	 * counts as not ours (manual), the users of other sources and of
	 * globex are not read at all */
	static const char *const want[] = {
	    "jnovak chan support-cz webchat 0 corp",   "jnovak group support-cz Tier1 0 corp",
	    "jnovak role sales admin 0 manual",	       "jnovak role support-cz operator 0 corp",
	    "jnovak role support-cz viewer 0 manual",  "jnovak slot support-cz email 4 manual",
	    "jnovak slot support-cz live 2 corp",      "manual1 role support-cz operator 0 manual",
	    "pdvorak role support-cz operator 0 corp",
	};
	static const char *const kinds[] = {[IDS_GRANT_ROLE] = "role",
					    [IDS_GRANT_CHANNEL] = "chan",
					    [IDS_GRANT_GROUP] = "group",
					    [IDS_GRANT_SLOT] = "slot"};
	size_t nw = sizeof(want) / sizeof(want[0]);
	assert_int_equal(c->ngrants, nw);
	char **got = calloc(c->ngrants, sizeof(*got));
	for (size_t i = 0; i < c->ngrants; i++) {
		const struct ids_cur_grant *g = &c->grants[i];
		const char *user = "?";
		for (size_t k = 0; k < c->nusers; k++)
			if (c->users[k].id == g->user_id)
				user = c->users[k].username;
		got[i] = malloc(256);
		snprintf(got[i], 256, "%s %s %s %s %d %s", user, kinds[g->kind], g->tenant, g->name, g->slots,
			 g->manual ? "manual" : "corp");
	}
	qsort(got, c->ngrants, sizeof(*got), cmp_str);
	for (size_t i = 0; i < nw; i++) {
		assert_string_equal(got[i], want[i]);
		free(got[i]);
	}
	free(got);
	ids_current_free(c);
}

/* ---------------- apply ---------------- */

static struct ids_plan_grant grant(enum ids_grant_op op, enum ids_grant_kind kind, const char *ext,
				   const char *tenant, const char *name, int slots, int old_slots)
{
	return (struct ids_plan_grant){.op = op,
				       .kind = kind,
				       .external_id = ext,
				       .username = ext,
				       .tenant = tenant,
				       .name = name,
				       .slots = slots,
				       .old_slots = old_slots};
}

/* One audit row of the run with this action, user (by username, "-" for
 * none) and detail (compared as jsonb, so key order does not matter). */
static void assert_audit(int64_t run, const char *action, const char *user, const char *detail)
{
	char id[24];
	snprintf(id, sizeof(id), "%" PRId64, run);
	assert_sql("1",
		   "SELECT count(*) FROM audit_log a LEFT JOIN app_user u ON u.id = a.user_id"
		   " WHERE a.run_id = $1 AND a.action = $2 AND coalesce(u.username, '-') = $3"
		   " AND a.detail = $4::jsonb",
		   id, action, user, detail);
}

static void test_apply(void **state)
{
	struct fixture *f = *state;
	struct ids_current *c = load(f);
	const struct ids_cur_user *jn = cur_user(c, "jnovak"), *pd = cur_user(c, "pdvorak");
	const struct ids_cur_user *old = cur_user(c, "old"), *m1 = cur_user(c, "manual1");
	struct ids_error e = {0};

	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE,
	     .external_id = "E10",
	     .username = "newbie",
	     .email = "new@acme.example",
	     .first_name = "Nina",
	     .last_name = "New",
	     .display_name = "Nina New",
	     .company_admin = true},
	    /* first_name differs but is not marked changed: it must stay */
	    {.flags = IDS_PU_UPDATE,
	     /* auth: already sso/entra, so the audit lists no auth column
	      * (the [old, new] list of the JSON plan: only what moves) */
	     .changed = IDS_CH_EMAIL | IDS_CH_DISPLAY_NAME | IDS_CH_AUTH,
	     .id = jn->id,
	     .external_id = "E2",
	     .username = "jnovak",
	     .email = "jan.novak@acme.example",
	     .first_name = "NOT-CHANGED",
	     .last_name = "Novak",
	     .display_name = "Jan Novák",
	     .cur = jn},
	    {.flags = IDS_PU_DEACTIVATE,
	     .id = pd->id,
	     .external_id = "E3",
	     .username = "pdvorak",
	     .email = pd->email,
	     .reason = "disabled_in_source",
	     .cur = pd},
	    {.flags = IDS_PU_REACTIVATE,
	     .id = old->id,
	     .external_id = "E4",
	     .username = "old",
	     .email = old->email,
	     .cur = old},
	    {.flags = IDS_PU_ADOPT,
	     .changed = IDS_CH_USERNAME | IDS_CH_AUTH,
	     .id = m1->id,
	     .external_id = "E11",
	     .username = "mnew",
	     .email = "M1@acme.example",
	     .first_name = "Marie",
	     .cur = m1},
	    {.flags = IDS_PU_CONFLICT,
	     .external_id = "E12",
	     .username = "jnovak",
	     .reason = "username taken"},
	    {.flags = IDS_PU_SKIP_INVALID, .external_id = "E13", .reason = "missing username"},
	};
	struct ids_plan_grant grants[] = {
	    grant(IDS_GOP_ADD, IDS_GRANT_ROLE, "E10", "support-cz", "operator", 0, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_CHANNEL, "E10", "support-cz", "whatsapp", 0, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_GROUP, "E10", "support-cz", "Tier2", 0, 0), /* group is new */
	    grant(IDS_GOP_ADD, IDS_GRANT_SLOT, "E10", "support-cz", "live", 3, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_ROLE, "E10", "newtenant", "operator", 0, 0), /* tenant is new */
	    grant(IDS_GOP_REMOVE, IDS_GRANT_CHANNEL, "E2", "support-cz", "webchat", 0, 0),
	    grant(IDS_GOP_REMOVE, IDS_GRANT_ROLE, "E2", "sales", "admin", 0, 0), /* manual: stays */
	    grant(IDS_GOP_CHANGE, IDS_GRANT_SLOT, "E2", "support-cz", "live", 5, 2),
	    grant(IDS_GOP_REMOVE, IDS_GRANT_GROUP, "E2", "support-cz", "Tier1", 0, 0),
	    grant(IDS_GOP_REMOVE, IDS_GRANT_ROLE, "E3", "support-cz", "operator", 0, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_ROLE, "E11", "support-cz", "operator", 0, 0), /* manual exists */
	    grant(IDS_GOP_REMOVE, IDS_GRANT_ROLE, "E2", "support-cz", "viewer", 0, 0), /* other source */
	    grant(IDS_GOP_ADD, IDS_GRANT_GROUP, "E10", "globex-only", "Tier9", 0, 0),  /* not acme's */
	};
	/* the rules behind the grants (issue 12.4: named in the audit) */
	struct ids_rule_list *one = malloc(sizeof(*one) + sizeof(one->names[0]));
	struct ids_rule_list *two = malloc(sizeof(*two) + 2 * sizeof(two->names[0]));
	assert_true(one && two);
	*one = (struct ids_rule_list){.n = 1};
	one->names[0] = "cz-support";
	*two = (struct ids_rule_list){.n = 2};
	two->names[0] = "base";
	two->names[1] = "seniors \"x\"";
	const struct ids_rule_list *lists[] = {NULL, one, two};
	grants[0].rules = 1;
	grants[3].rules = 2;
	grants[7].rules = 1;
	grants[5].rules = 1; /* a removal: the revoke rule that made it */
	struct ids_plan p = {.connector = "corp",
			     .users = users,
			     .nusers = sizeof(users) / sizeof(users[0]),
			     .grants = grants,
			     .ngrants = sizeof(grants) / sizeof(grants[0]),
			     .rule_lists = lists,
			     .nrule_lists = 3};
	assert_int_equal(ids_strv_push(&p.new_tenants, "newtenant"), 0);
	p.counts = (struct ids_plan_counts){.users_seen = 6,
					    .created = 1,
					    .updated = 2,
					    .deactivated = 1,
					    .reactivated = 1,
					    .grants_added = 7,
					    .grants_removed = 5,
					    .conflicts = 1,
					    .skipped_invalid = 1};
	const int64_t started = INT64_C(1767323045123456);
	struct ids_run run = {
	    .connector = "corp", .started_at = started, .status = "ok", .counts = &p.counts, .error = NULL};
	int64_t run_id = 0;

	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, &run_id, &e), 0);
	assert_true(run_id > 0);
	ids_strv_free(&p.new_tenants);

	/* users */
	assert_sql("newbie|new@acme.example|Nina|New|Nina New|t|t|-|f|corp|E10|sso|entra", user_sql, "acme",
		   "newbie");
	assert_sql("jnovak|jan.novak@acme.example|Jan|Novak|Jan Novák|f|t|-|f|corp|E2|sso|entra", user_sql,
		   "acme", "jnovak");
	assert_sql("pdvorak|petr@acme.example|Petr|Dvorak|Petr Dvorak|f|f|disabled_in_source|t|corp|E3|"
		   "sso|entra",
		   user_sql, "acme", "pdvorak");
	assert_sql("old|old@acme.example|-|-|-|f|t|-|f|corp|E4|sso|entra", user_sql, "acme", "old");
	assert_sql("mnew|M1@acme.example|Marie|-|-|f|t|-|f|corp|E11|sso|entra", user_sql, "acme", "mnew");
	assert_sql("<none>", user_sql, "acme", "manual1");
	/* untouched: another source, and globex's namesake */
	assert_sql("ext|-|-|-|-|f|t|-|f|other-conn|E5|sso|google", user_sql, "acme", "ext");
	assert_sql("jnovak|jan@globex.example|-|-|-|f|t|-|f|-|-|activation_link|-", user_sql, "globex",
		   "jnovak");
	assert_sql(
	    "6",
	    "SELECT count(*) FROM app_user u JOIN company c ON c.id = u.company_id WHERE c.slug = 'acme'");
	/* the user row keeps its id through adoption (sessions hang on it) */
	char id[24];
	snprintf(id, sizeof(id), "%" PRId64, m1->id);
	assert_sql("mnew", "SELECT username FROM app_user WHERE id = $1", id);

	/* tenants and groups: created in acme only */
	assert_sql("newtenant", "SELECT t.name FROM tenant t JOIN company c ON c.id = t.company_id"
				" WHERE c.slug = 'acme' AND t.slug = 'newtenant'");
	snprintf(id, sizeof(id), "%" PRId64, f->acme);
	assert_sql("0", "SELECT count(*) FROM tenant WHERE slug = 'newtenant' AND company_id <> $1", id);
	assert_sql("acme support-cz Tier1; acme support-cz Tier2; globex support-cz Tier1",
		   "SELECT string_agg(l, '; ' ORDER BY l COLLATE \"C\") FROM (SELECT c.slug || ' ' || t.slug "
		   "|| ' ' || g.name l"
		   " FROM operator_group g JOIN tenant t ON t.id = g.tenant_id JOIN company c ON c.id = "
		   "t.company_id) s");

	/* grants, derived by hand from the seed and the plan */
	assert_sql("acme ext role support-cz operator other-conn; "
		   "acme jnovak role sales admin -; "
		   "acme jnovak role support-cz operator corp; "
		   "acme jnovak role support-cz viewer other-conn; "
		   "acme jnovak slot support-cz email=4 -; "
		   "acme jnovak slot support-cz live=5 corp; "
		   "acme mnew role support-cz operator -; "
		   "acme newbie chan support-cz whatsapp corp; "
		   "acme newbie group support-cz Tier2 corp; "
		   "acme newbie role newtenant operator corp; "
		   "acme newbie role support-cz operator corp; "
		   "acme newbie slot support-cz live=3 corp; "
		   "globex gcorp role support-cz operator corp",
		   dump_grants_sql);

	/* the sync_run row */
	snprintf(id, sizeof(id), "%" PRId64, run_id);
	assert_sql("corp|ok|2026-01-02 03:04:05.123456|t|6|1|2|1|1|7|5|1|1|-",
		   "SELECT concat_ws('|', connector, status, started_at AT TIME ZONE 'UTC',"
		   " finished_at >= started_at, users_seen, created, updated, deactivated, reactivated,"
		   " grants_added, grants_removed, conflicts, skipped_invalid, coalesce(error, '-'))"
		   " FROM sync_run WHERE id = $1",
		   id);

	/* audit: one row per user change, and one grant (revoke) row per run
	 * of a user's grants listing them all: 8 + 7 (this plan names E2 and
	 * E10 in two runs each, which a diff never does) */
	assert_sql("15", "SELECT count(*) FROM audit_log WHERE run_id = $1", id);
	assert_audit(run_id, "create", "newbie", "{\"username\":\"newbie\",\"email\":\"new@acme.example\"}");
	assert_audit(run_id, "update", "jnovak",
		     "{\"email\":[\"jan@acme.example\",\"jan.novak@acme.example\"],"
		     "\"display_name\":[\"Jan\",\"Jan Novák\"]}");
	assert_audit(run_id, "deactivate", "pdvorak", "{\"reason\":\"disabled_in_source\"}");
	assert_audit(run_id, "reactivate", "old", "{}");
	assert_audit(run_id, "adopt", "mnew", "{\"email\":\"M1@acme.example\"}");
	assert_audit(run_id, "update", "mnew",
		     "{\"username\":[\"manual1\",\"mnew\"],\"auth_method\":[\"activation_link\",\"sso\"],"
		     "\"idp\":[null,\"entra\"]}");
	assert_audit(run_id, "conflict", "-",
		     "{\"external_id\":\"E12\",\"username\":\"jnovak\",\"reason\":\"username taken\"}");
	assert_audit(run_id, "skip_invalid", "-",
		     "{\"external_id\":\"E13\",\"reason\":\"missing username\"}");
	assert_audit(run_id, "grant", "newbie",
		     "{\"grants\":[{\"kind\":\"role\",\"tenant\":\"support-cz\",\"name\":\"operator\","
		     "\"rules\":[\"cz-support\"]},"
		     "{\"kind\":\"channel\",\"tenant\":\"support-cz\",\"name\":\"whatsapp\"},"
		     "{\"kind\":\"group\",\"tenant\":\"support-cz\",\"name\":\"Tier2\"},"
		     "{\"kind\":\"slot\",\"tenant\":\"support-cz\",\"name\":\"live\",\"slots\":3,"
		     "\"rules\":[\"base\",\"seniors \\\"x\\\"\"]},"
		     "{\"kind\":\"role\",\"tenant\":\"newtenant\",\"name\":\"operator\"}]}");
	assert_audit(run_id, "grant", "newbie",
		     "{\"grants\":[{\"kind\":\"group\",\"tenant\":\"globex-only\",\"name\":\"Tier9\"}]}");
	assert_audit(run_id, "grant", "jnovak",
		     "{\"grants\":[{\"kind\":\"slot\",\"tenant\":\"support-cz\",\"name\":\"live\","
		     "\"slots\":5,\"old_slots\":2,\"rules\":[\"cz-support\"]}]}");
	assert_audit(run_id, "revoke", "jnovak",
		     "{\"grants\":[{\"kind\":\"channel\",\"tenant\":\"support-cz\",\"name\":\"webchat\","
		     "\"rules\":[\"cz-support\"]},"
		     "{\"kind\":\"role\",\"tenant\":\"sales\",\"name\":\"admin\"},"
		     "{\"kind\":\"group\",\"tenant\":\"support-cz\",\"name\":\"Tier1\"}]}");
	assert_audit(run_id, "revoke", "jnovak",
		     "{\"grants\":[{\"kind\":\"role\",\"tenant\":\"support-cz\",\"name\":\"viewer\"}]}");
	assert_audit(run_id, "revoke", "pdvorak",
		     "{\"grants\":[{\"kind\":\"role\",\"tenant\":\"support-cz\",\"name\":\"operator\"}]}");
	assert_audit(run_id, "grant", "mnew",
		     "{\"grants\":[{\"kind\":\"role\",\"tenant\":\"support-cz\",\"name\":\"operator\"}]}");

	/* the next load sees the new state */
	ids_current_free(c);
	c = load(f);
	assert_int_equal(c->nusers, 6);
	assert_int_equal(c->tenants.n, 3);
	assert_string_equal(cur_user(c, "mnew")->source, "corp");
	ids_current_free(c);
	ids_error_clear(&e);
	free(one);
	free(two);
}

/* Every grant row's rules (005_grant_rules), one line each, sorted:
 * "user kind tenant name rules|-" for acme. */
static const char dump_rules_sql[] =
    "SELECT coalesce(string_agg(l, '; ' ORDER BY l COLLATE \"C\"), '') FROM ("
    " SELECT u.username || ' role ' || t.slug || ' ' || x.role || ' ' || coalesce(x.rules::text, '-') l"
    "  FROM tenant_role x JOIN app_user u ON u.id = x.user_id JOIN tenant t ON t.id = x.tenant_id"
    "  JOIN company c ON c.id = t.company_id WHERE c.slug = 'acme'"
    " UNION ALL SELECT u.username || ' chan ' || t.slug || ' ' || x.channel || ' '"
    "  || coalesce(x.rules::text, '-')"
    "  FROM channel_grant x JOIN app_user u ON u.id = x.user_id JOIN tenant t ON t.id = x.tenant_id"
    "  JOIN company c ON c.id = t.company_id WHERE c.slug = 'acme'"
    " UNION ALL SELECT u.username || ' slot ' || t.slug || ' ' || x.channel_group || '=' || x.slots || ' '"
    "  || coalesce(x.rules::text, '-')"
    "  FROM slot_limit x JOIN app_user u ON u.id = x.user_id JOIN tenant t ON t.id = x.tenant_id"
    "  JOIN company c ON c.id = t.company_id WHERE c.slug = 'acme'"
    " UNION ALL SELECT u.username || ' group ' || t.slug || ' ' || g.name || ' '"
    "  || coalesce(x.rules::text, '-')"
    "  FROM operator_group_member x JOIN app_user u ON u.id = x.user_id"
    "  JOIN operator_group g ON g.id = x.group_id JOIN tenant t ON t.id = g.tenant_id"
    "  JOIN company c ON c.id = t.company_id WHERE c.slug = 'acme') s";

/* The loaded row of (user, kind, tenant, name). */
static const struct ids_cur_grant *cur_grant(const struct ids_current *c, int64_t uid, enum ids_grant_kind k,
					     const char *tenant, const char *name)
{
	for (size_t i = 0; i < c->ngrants; i++) {
		const struct ids_cur_grant *g = &c->grants[i];
		if (g->user_id == uid && g->kind == k && !strcmp(g->tenant, tenant) && !strcmp(g->name, name))
			return g;
	}
	fail_msg("no grant %s %s loaded", tenant, name);
	return NULL;
}

/* Provenance (issue 17.1): every grant the apply writes records its rules
 * — added to an existing or a new user, a slot's new value, and a grant
 * whose rules alone changed (op rules: only that column moves) — and the
 * load reads them back for the diff; rows made by hand never get any. */
static void test_grant_rules(void **state)
{
	struct fixture *f = *state;
	struct ids_current *c = load(f);
	const struct ids_cur_user *jn = cur_user(c, "jnovak");
	struct ids_error e = {0};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E10", .username = "newbie", .email = "new@acme.example"},
	};
	struct ids_plan_grant grants[] = {
	    grant(IDS_GOP_ADD, IDS_GRANT_ROLE, "E10", "support-cz", "operator", 0, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_GROUP, "E10", "support-cz", "Tier1", 0, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_CHANNEL, "E2", "support-cz", "whatsapp", 0, 0),
	    grant(IDS_GOP_RULES, IDS_GRANT_CHANNEL, "E2", "support-cz", "webchat", 0, 0),
	    grant(IDS_GOP_RULES, IDS_GRANT_ROLE, "E2", "support-cz", "operator", 0, 0),
	    grant(IDS_GOP_RULES, IDS_GRANT_GROUP, "E2", "support-cz", "Tier1", 0, 0),
	    grant(IDS_GOP_CHANGE, IDS_GRANT_SLOT, "E2", "support-cz", "live", 5, 2),
	    grant(IDS_GOP_RULES, IDS_GRANT_ROLE, "E2", "sales", "admin", 0, 0),	      /* manual: stays */
	    grant(IDS_GOP_RULES, IDS_GRANT_ROLE, "E2", "support-cz", "viewer", 0, 0), /* other source */
	};
	struct ids_rule_list *one = malloc(sizeof(*one) + sizeof(one->names[0]));
	struct ids_rule_list *two = malloc(sizeof(*two) + 2 * sizeof(two->names[0]));
	assert_true(one && two);
	*one = (struct ids_rule_list){.n = 1};
	one->names[0] = "cz-support";
	*two = (struct ids_rule_list){.n = 2};
	two->names[0] = "base, all";
	two->names[1] = "seniors \"x\" \\";
	const struct ids_rule_list *lists[] = {NULL, one, two};
	const uint32_t rules[] = {2, 1, 1, 2, 1, 2, 2, 1, 1};
	for (size_t i = 0; i < sizeof(grants) / sizeof(grants[0]); i++) {
		grants[i].rules = rules[i];
		grants[i].user_id = strcmp(grants[i].external_id, "E2") ? 0 : jn->id;
	}
	struct ids_plan p = {.connector = "corp",
			     .users = users,
			     .nusers = 1,
			     .grants = grants,
			     .ngrants = sizeof(grants) / sizeof(grants[0]),
			     .rule_lists = lists,
			     .nrule_lists = 3};
	p.counts = (struct ids_plan_counts){
	    .users_seen = 2, .created = 1, .grants_added = 4, .grants_rules_changed = 5};
	struct ids_run run = {.connector = "corp", .started_at = 1, .status = "ok", .counts = &p.counts};
	int64_t run_id = 0;
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, &run_id, &e), 0);

	assert_sql("ext role support-cz operator -; "
		   "jnovak chan support-cz webchat {\"base, all\",\"seniors \\\"x\\\" \\\\\"}; "
		   "jnovak chan support-cz whatsapp {cz-support}; "
		   "jnovak group support-cz Tier1 {\"base, all\",\"seniors \\\"x\\\" \\\\\"}; "
		   "jnovak role sales admin -; "
		   "jnovak role support-cz operator {cz-support}; "
		   "jnovak role support-cz viewer -; "
		   "jnovak slot support-cz email=4 -; "
		   "jnovak slot support-cz live=5 {\"base, all\",\"seniors \\\"x\\\" \\\\\"}; "
		   "manual1 role support-cz operator -; "
		   "newbie group support-cz Tier1 {cz-support}; "
		   "newbie role support-cz operator {\"base, all\",\"seniors \\\"x\\\" \\\\\"}; "
		   "pdvorak role support-cz operator -",
		   dump_rules_sql);
	/* the names exactly, as the diff compares them: joined by '\n' */
	const int64_t jid = jn->id; /* jn goes with c */
	ids_current_free(c);
	c = load(f);
	const char *rt =
	    ids_current_grant_rules(c, cur_grant(c, jid, IDS_GRANT_ROLE, "support-cz", "operator"));
	assert_string_equal(rt, "cz-support");
	rt = ids_current_grant_rules(c, cur_grant(c, jid, IDS_GRANT_SLOT, "support-cz", "live"));
	assert_string_equal(rt, "base, all\nseniors \"x\" \\");
	assert_null(ids_current_grant_rules(c, cur_grant(c, jid, IDS_GRANT_ROLE, "sales", "admin")));
	assert_null(ids_current_grant_rules(c, cur_grant(c, jid, IDS_GRANT_SLOT, "support-cz", "email")));
	/* the audit says the grant was there: provenance only */
	assert_audit(
	    run_id, "grant", "jnovak",
	    "{\"grants\":[{\"kind\":\"channel\",\"tenant\":\"support-cz\",\"name\":\"whatsapp\","
	    "\"rules\":[\"cz-support\"]},"
	    "{\"kind\":\"channel\",\"tenant\":\"support-cz\",\"name\":\"webchat\","
	    "\"rules\":[\"base, all\",\"seniors \\\"x\\\" \\\\\"],\"provenance_only\":true},"
	    "{\"kind\":\"role\",\"tenant\":\"support-cz\",\"name\":\"operator\","
	    "\"rules\":[\"cz-support\"],\"provenance_only\":true},"
	    "{\"kind\":\"group\",\"tenant\":\"support-cz\",\"name\":\"Tier1\","
	    "\"rules\":[\"base, all\",\"seniors \\\"x\\\" \\\\\"],\"provenance_only\":true},"
	    "{\"kind\":\"slot\",\"tenant\":\"support-cz\",\"name\":\"live\",\"slots\":5,\"old_slots\":2,"
	    "\"rules\":[\"base, all\",\"seniors \\\"x\\\" \\\\\"]},"
	    "{\"kind\":\"role\",\"tenant\":\"sales\",\"name\":\"admin\","
	    "\"rules\":[\"cz-support\"],\"provenance_only\":true},"
	    "{\"kind\":\"role\",\"tenant\":\"support-cz\",\"name\":\"viewer\","
	    "\"rules\":[\"cz-support\"],\"provenance_only\":true}]}");
	ids_current_free(c);
	ids_error_clear(&e);
	free(one);
	free(two);
}

/* Whatever a plan says, rows made by hand (source NULL) are never deleted
 * or changed, not even on a managed user. */
static void test_manual_rows_untouched(void **state)
{
	struct fixture *f = *state;
	struct ids_error e = {0};
	struct ids_plan_grant grants[] = {
	    grant(IDS_GOP_REMOVE, IDS_GRANT_ROLE, "E2", "sales", "admin", 0, 0),
	    grant(IDS_GOP_REMOVE, IDS_GRANT_SLOT, "E2", "support-cz", "email", 4, 0),
	    grant(IDS_GOP_CHANGE, IDS_GRANT_SLOT, "E2", "support-cz", "email", 9, 4),
	    /* adding what a person already granted keeps their row */
	    grant(IDS_GOP_ADD, IDS_GRANT_SLOT, "E2", "support-cz", "email", 7, 0),
	};
	struct ids_plan p = {.connector = "corp", .grants = grants, .ngrants = 4};
	struct ids_run run = {
	    .connector = "corp", .started_at = 1, .status = "ok", .counts = &p.counts, .error = NULL};

	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, NULL, &e), 0);
	assert_sql(SEED_GRANTS, dump_grants_sql);
	ids_error_clear(&e);
}

/* Company isolation in the schema: a grant row whose tenant belongs to
 * another company than its user is refused, whoever writes it. */
static void test_cross_company_refused(void **state)
{
	static const char *const inserts[] = {
	    "INSERT INTO tenant_role (user_id, tenant_id, role) SELECT u.id, t.id, 'operator'",
	    "INSERT INTO channel_grant (user_id, tenant_id, channel) SELECT u.id, t.id, 'webchat'",
	    "INSERT INTO slot_limit (user_id, tenant_id, channel_group, slots) SELECT u.id, t.id, 'live', 1",
	};
	static const char from[] =
	    " FROM app_user u, tenant t JOIN company c ON c.id = t.company_id"
	    " WHERE u.username = 'pdvorak' AND c.slug = 'globex' AND t.slug = 'support-cz'";
	char stmt[512];
	for (size_t i = 0; i < 4; i++) {
		if (i < 3)
			snprintf(stmt, sizeof(stmt), "%s%s", inserts[i], from);
		else
			snprintf(stmt, sizeof(stmt),
				 "INSERT INTO operator_group_member (group_id, user_id) SELECT g.id, u.id"
				 " FROM app_user u, operator_group g JOIN tenant t ON t.id = g.tenant_id"
				 " JOIN company c ON c.id = t.company_id WHERE u.username = 'pdvorak'"
				 " AND c.slug = 'globex'");
		PGresult *res = PQexec(g_db, stmt);
		assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
		assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23514");
		assert_non_null(strstr(PQresultErrorMessage(res), "company isolation"));
		PQclear(res);
	}
	/* moving a user with grants to another company is refused too */
	PGresult *res =
	    PQexec(g_db, "UPDATE app_user SET company_id = (SELECT id FROM company WHERE slug = 'globex')"
			 " WHERE username = 'pdvorak'");
	assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
	assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23514");
	PQclear(res);

	/* through the store: a plan naming another company's tenant reaches
	 * nothing (tenants are looked up within the connector's company) */
	struct fixture *f = *state;
	struct ids_error e = {0};
	struct ids_plan_grant grants[] = {
	    grant(IDS_GOP_ADD, IDS_GRANT_ROLE, "E2", "globex-only", "operator", 0, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_GROUP, "E2", "globex-only", "G", 0, 0),
	    /* and a user of corp in globex is not reachable from acme */
	    grant(IDS_GOP_REMOVE, IDS_GRANT_ROLE, "G1", "support-cz", "operator", 0, 0),
	};
	struct ids_plan p = {.connector = "corp", .grants = grants, .ngrants = 3};
	struct ids_run run = {
	    .connector = "corp", .started_at = 1, .status = "ok", .counts = NULL, .error = NULL};
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, NULL, &e), 0);
	assert_sql(SEED_GRANTS, dump_grants_sql);
	assert_sql("0", "SELECT count(*) FROM operator_group WHERE name = 'G'");
	ids_error_clear(&e);
}

/* A plan that fails halfway (slots 5000 violates the CHECK) leaves no
 * trace: no user, no tenant, no deactivation, no run row, no audit row. */
static void test_atomic(void **state)
{
	struct fixture *f = *state;
	struct ids_current *c = load(f);
	const struct ids_cur_user *pd = cur_user(c, "pdvorak");
	struct ids_error e = {0};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E20", .username = "atom", .email = "atom@acme.example"},
	    {.flags = IDS_PU_DEACTIVATE,
	     .id = pd->id,
	     .external_id = "E3",
	     .username = "pdvorak",
	     .reason = "deleted_in_source",
	     .cur = pd},
	};
	struct ids_plan_grant grants[] = {
	    grant(IDS_GOP_ADD, IDS_GRANT_ROLE, "E20", "atomtenant", "operator", 0, 0),
	    grant(IDS_GOP_ADD, IDS_GRANT_SLOT, "E20", "support-cz", "live", 5000, 0),
	};
	struct ids_plan p = {
	    .connector = "corp", .users = users, .nusers = 2, .grants = grants, .ngrants = 2};
	assert_int_equal(ids_strv_push(&p.new_tenants, "atomtenant"), 0);
	struct ids_run run = {
	    .connector = "corp", .started_at = 1, .status = "ok", .counts = &p.counts, .error = NULL};
	int64_t run_id = -1;

	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, &run_id, &e), IDS_E_DB);
	assert_int_equal(run_id, -1);
	assert_non_null(strstr(ids_error_text(&e), "slot_limit"));
	assert_non_null(strstr(ids_error_text(&e), "23514"));
	ids_error_clear(&e);

	assert_sql("0", "SELECT count(*) FROM app_user WHERE username = 'atom'");
	assert_sql("0", "SELECT count(*) FROM tenant WHERE slug = 'atomtenant'");
	assert_sql("t|-", "SELECT concat(active, '|', coalesce(deactivation_reason, '-')) FROM app_user"
			  " WHERE username = 'pdvorak'");
	assert_sql("0", "SELECT count(*) FROM sync_run");
	assert_sql("0", "SELECT count(*) FROM audit_log");
	assert_sql(SEED_GRANTS, dump_grants_sql);

	/* the connection is usable right after: the same plan, fixed */
	grants[1].slots = 1000;
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, &run_id, &e), 0);
	assert_sql("1", "SELECT count(*) FROM app_user WHERE username = 'atom'");
	assert_sql("1", "SELECT count(*) FROM sync_run");
	ids_strv_free(&p.new_tenants);
	ids_current_free(c);
}

/* A plan made from a state that changed before the apply (here a person
 * took jnovak out of idsyncd's hands) is refused as a whole. */
static void test_stale_plan(void **state)
{
	struct fixture *f = *state;
	struct ids_current *c = load(f);
	const struct ids_cur_user *jn = cur_user(c, "jnovak");
	struct ids_error e = {0};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E30", .username = "stale", .email = NULL},
	    {.flags = IDS_PU_UPDATE,
	     .changed = IDS_CH_LAST_NAME,
	     .id = jn->id,
	     .external_id = "E2",
	     .username = "jnovak",
	     .last_name = "Nowak",
	     .cur = jn},
	};
	struct ids_plan p = {.connector = "corp", .users = users, .nusers = 2};
	struct ids_run run = {
	    .connector = "corp", .started_at = 1, .status = "ok", .counts = NULL, .error = NULL};

	sql("UPDATE app_user SET source = NULL, external_id = NULL WHERE username = 'jnovak' AND email LIKE "
	    "'%acme%'");
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, NULL, &e), IDS_E_DB);
	assert_non_null(strstr(ids_error_text(&e), "changed"));
	ids_error_clear(&e);
	assert_sql("0", "SELECT count(*) FROM app_user WHERE username = 'stale'");
	assert_sql("Novak",
		   "SELECT last_name FROM app_user WHERE username = 'jnovak' AND email LIKE '%acme%'");
	assert_sql("0", "SELECT count(*) FROM sync_run");
	ids_current_free(c);
}

/* A value changes only on a slot: a plan that changes a role (or a
 * channel, a membership) is refused before anything is written, never
 * turned into an UPDATE of a column the table has not. */
static void test_change_without_value(void **state)
{
	struct fixture *f = *state;
	struct ids_error e = {0};
	struct ids_plan_grant g[] = {
	    grant(IDS_GOP_CHANGE, IDS_GRANT_ROLE, "E2", "support-cz", "operator", 2, 1)};
	struct ids_plan p = {.connector = "corp", .grants = g, .ngrants = 1};
	struct ids_run run = {.connector = "corp", .started_at = 1, .status = "ok"};
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, NULL, &e), IDS_E_INVALID);
	assert_non_null(strstr(ids_error_text(&e), "grant 0"));
	ids_error_clear(&e);
	assert_sql("0", "SELECT count(*) FROM sync_run");
}

/* Grant rows are reached by the user ids the plan loaded, and each id is
 * checked to be the connector's user with that external id in the
 * company: a plan holding another company's user id, or an id whose user
 * is no longer the one the plan means, is refused as a whole. */
static void test_grant_user_ids(void **state)
{
	struct fixture *f = *state;
	struct ids_current *c = load(f);
	const struct ids_cur_user *jn = cur_user(c, "jnovak");
	struct ids_error e = {0};
	char *g1 = sql_val("SELECT id FROM app_user WHERE external_id = 'G1'", 0, NULL);
	int64_t globex_user = strtoll(g1, NULL, 10);
	free(g1);
	struct ids_plan_grant grants[] = {
	    grant(IDS_GOP_ADD, IDS_GRANT_CHANNEL, "E2", "support-cz", "voice", 0, 0),
	    grant(IDS_GOP_REMOVE, IDS_GRANT_CHANNEL, "E2", "support-cz", "webchat", 0, 0),
	};
	struct ids_plan p = {.connector = "corp", .grants = grants, .ngrants = 2};
	struct ids_run run = {
	    .connector = "corp", .started_at = 1, .status = "ok", .counts = NULL, .error = NULL};

	/* another company's user under an external id of ours: nothing */
	grants[0].user_id = grants[1].user_id = globex_user;
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, NULL, &e), IDS_E_DB);
	assert_non_null(strstr(ids_error_text(&e), "checking users"));
	ids_error_clear(&e);
	/* our user's id under another user's external id: nothing */
	grants[0].user_id = grants[1].user_id = jn->id;
	grants[0].external_id = grants[1].external_id = "E3";
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, NULL, &e), IDS_E_DB);
	assert_non_null(strstr(ids_error_text(&e), "changed since the plan was made"));
	ids_error_clear(&e);
	assert_sql(SEED_GRANTS, dump_grants_sql);
	assert_sql("0", "SELECT count(*) FROM sync_run");

	/* the right pair: applied */
	grants[0].external_id = grants[1].external_id = "E2";
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, NULL, &e), 0);
	assert_sql("voice corp", "SELECT string_agg(x.channel || ' ' || x.source, ', ') FROM channel_grant x"
				 " JOIN app_user u ON u.id = x.user_id WHERE u.external_id = 'E2'");
	ids_current_free(c);
}

/* A row that the platform keeps locked makes the apply fail after the
 * lock timeout (here the conninfo's own, 1 s) instead of hanging; nothing
 * is applied and the store stays usable. */
static void test_lock_wait_bounded(void **state)
{
	struct fixture *f = *state;
	struct ids_current *c = load(f);
	const struct ids_cur_user *jn = cur_user(c, "jnovak");
	struct ids_error e = {0};
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E40", .username = "waiter"},
	    {.flags = IDS_PU_UPDATE,
	     .changed = IDS_CH_LAST_NAME,
	     .id = jn->id,
	     .external_id = "E2",
	     .username = "jnovak",
	     .last_name = "Nowak",
	     .cur = jn},
	};
	struct ids_plan p = {.connector = "corp", .users = users, .nusers = 2};
	struct ids_run run = {
	    .connector = "corp", .started_at = 1, .status = "ok", .counts = NULL, .error = NULL};
	struct ids_config cfg;
	struct ids_store *st = NULL;
	char conninfo[512];

	snprintf(conninfo, sizeof(conninfo), "%s options='-c lock_timeout=1s'", g_conninfo);
	make_cfg(&cfg, conninfo, f->schema, NULL);
	assert_int_equal(ids_store_open(&cfg, &st, &e), 0);

	sql("BEGIN");
	sql("SELECT 1 FROM app_user WHERE username = 'jnovak' AND email LIKE '%acme%' FOR UPDATE");
	assert_int_equal(ids_store_apply(st, f->acme, "entra", &p, &run, NULL, &e), IDS_E_DB);
	assert_non_null(strstr(ids_error_text(&e), "55P03"));
	ids_error_clear(&e);
	sql("ROLLBACK");
	assert_sql("0", "SELECT count(*) FROM app_user WHERE username = 'waiter'");
	assert_sql("0", "SELECT count(*) FROM sync_run");

	assert_int_equal(ids_store_apply(st, f->acme, "entra", &p, &run, NULL, &e), 0);
	assert_sql("Nowak",
		   "SELECT last_name FROM app_user WHERE username = 'jnovak' AND email LIKE '%acme%'");
	ids_store_close(st);
	ids_current_free(c);
}

/* Values with COPY's special bytes, SQL and JSON syntax, emoji, and the
 * literal text \N are stored exactly; a skipped user's invalid UTF-8 does
 * not break the audit row. */
static void test_values_exact(void **state)
{
	struct fixture *f = *state;
	struct ids_error e = {0};
	const char *uname = "we\\ird\ttab";
	const char *display = "line1\nline2\r\\N'; DROP TABLE app_user; -- \"q\" \xf0\x9f\x98\x80";
	const char *first = "\\N";
	const char *group = "G\t\\x";
	struct ids_plan_user users[] = {
	    {.flags = IDS_PU_CREATE,
	     .external_id = "E\\40",
	     .username = uname,
	     .email = NULL,
	     .first_name = first,
	     .display_name = display},
	    {.flags = IDS_PU_SKIP_INVALID, .external_id = "bad\xff\xfe", .reason = "external id not UTF-8"},
	};
	struct ids_plan_grant grants[] = {
	    grant(IDS_GOP_ADD, IDS_GRANT_GROUP, "E\\40", "support-cz", group, 0, 0),
	};
	struct ids_plan p = {
	    .connector = "corp", .users = users, .nusers = 2, .grants = grants, .ngrants = 1};
	struct ids_run run = {.connector = "corp",
			      .started_at = 1,
			      .status = "ok",
			      .counts = NULL,
			      .error = "err\twith\nspecials"};
	int64_t run_id = 0;

	assert_int_equal(ids_store_apply(f->st, f->acme, "google", &p, &run, &run_id, &e), 0);
	assert_sql(
	    "1",
	    "SELECT count(*) FROM app_user WHERE username = $1 AND display_name = $2 AND first_name = $3"
	    " AND email IS NULL AND last_name IS NULL AND external_id = $4 AND idp = 'google'",
	    uname, display, first, "E\\40");
	assert_sql("1",
		   "SELECT count(*) FROM operator_group_member x JOIN operator_group g ON g.id = x.group_id"
		   " JOIN app_user u ON u.id = x.user_id WHERE g.name = $1 AND u.username = $2",
		   group, uname);
	assert_sql(uname, "SELECT detail->>'username' FROM audit_log WHERE action = 'create'");
	assert_sql("bad\\xff\\xfe",
		   "SELECT detail->>'external_id' FROM audit_log WHERE action = 'skip_invalid'");
	assert_sql("1", "SELECT count(*) FROM sync_run WHERE error = $1", "err\twith\nspecials");
	ids_error_clear(&e);
}

/* Many users: the COPY data crosses its flush size several times and the
 * statements stay set-based (this would take minutes per-row). */
static void test_large_plan(void **state)
{
	struct fixture *f = *state;
	struct ids_error e = {0};
	enum { N = 20000 };
	struct ids_plan_user *users = calloc(N, sizeof(*users));
	struct ids_plan_grant *grants = calloc(2 * N, sizeof(*grants));
	struct ids_arena a = {0};
	char buf[64];

	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "X%05d", i);
		const char *ext = ids_arena_strdup(&a, buf);
		snprintf(buf, sizeof(buf), "bulk%05d", i);
		const char *name = ids_arena_strdup(&a, buf);
		snprintf(buf, sizeof(buf), "bulk%05d@acme.example", i);
		users[i] = (struct ids_plan_user){.flags = IDS_PU_CREATE,
						  .external_id = ext,
						  .username = name,
						  .email = ids_arena_strdup(&a, buf),
						  .first_name = "Bulk",
						  .last_name = "User",
						  .display_name = name};
		grants[2 * i] = grant(IDS_GOP_ADD, IDS_GRANT_ROLE, ext, "support-cz", "operator", 0, 0);
		grants[2 * i + 1] = grant(IDS_GOP_ADD, IDS_GRANT_SLOT, ext, "sales", "live", i % 1001, 0);
	}
	struct ids_plan p = {
	    .connector = "corp", .users = users, .nusers = N, .grants = grants, .ngrants = 2 * N};
	struct ids_run run = {
	    .connector = "corp", .started_at = 1, .status = "ok", .counts = NULL, .error = NULL};
	int64_t run_id = 0;

	/* no autovacuum: the tables keep the statistics of before the
	 * create, as in the minute after a first sync */
	sql("ALTER TABLE app_user SET (autovacuum_enabled = false);"
	    "ALTER TABLE tenant_role SET (autovacuum_enabled = false)");
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p, &run, &run_id, &e), 0);
	assert_sql("20000", "SELECT count(*) FROM app_user WHERE username LIKE 'bulk%' AND source = 'corp'");
	assert_sql("20000", "SELECT count(*) FROM tenant_role x JOIN app_user u ON u.id = x.user_id"
			    " WHERE u.username LIKE 'bulk%'");
	/* sum of i % 1001 for i < 20000: 19 full cycles of 0..1000 plus 0..980 */
	assert_sql("9990190", "SELECT sum(slots) FROM slot_limit x JOIN app_user u ON u.id = x.user_id"
			      " WHERE u.username LIKE 'bulk%'");
	/* one create and one grant row (listing both grants) per user */
	assert_sql("40000", "SELECT count(*) FROM audit_log");
	assert_sql("40000",
		   "SELECT sum(jsonb_array_length(detail->'grants')) FROM audit_log WHERE action = 'grant'");

	struct ids_current *c = load(f);
	assert_int_equal(c->nusers, 5 + N);

	/* The next run gives every one of them a channel, by user id.  The
	 * statistics say app_user is tiny; planned on them, the apply would
	 * loop over all users for each grant: it renews them first. */
	assert_sql("t", "SELECT reltuples < 10000 FROM pg_class WHERE oid = 'app_user'::regclass");
	size_t n = 0;
	for (size_t i = 0; i < c->nusers; i++) {
		const struct ids_cur_user *u = &c->users[i];
		if (u->external_id && u->external_id[0] == 'X') {
			grants[n] =
			    grant(IDS_GOP_ADD, IDS_GRANT_CHANNEL, u->external_id, "sales", "voice", 0, 0);
			grants[n++].user_id = u->id;
		}
	}
	assert_int_equal(n, N);
	struct ids_plan p2 = {.connector = "corp",
			      .grants = grants,
			      .ngrants = n,
			      .active_managed = N + 2,
			      .managed_grants = 2 * N + 3};
	assert_int_equal(ids_store_apply(f->st, f->acme, "entra", &p2, &run, &run_id, &e), 0);
	assert_sql("20000", "SELECT count(*) FROM channel_grant WHERE channel = 'voice' AND source = 'corp'");
	assert_sql("t", "SELECT reltuples >= 20000 FROM pg_class WHERE oid = 'app_user'::regclass");
	assert_sql("t", "SELECT reltuples >= 20000 FROM pg_class WHERE oid = 'tenant_role'::regclass");
	ids_current_free(c);
	ids_arena_free(&a);
	free(users);
	free(grants);
}

int main(void)
{
	int r = db_setup("apply");
	if (r)
		return r;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_grant_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_manual_rows_untouched, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cross_company_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_plan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_change_without_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_grant_user_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_wait_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_values_exact, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_large_plan, setup, teardown),
	};
	r = cmocka_run_group_tests(tests, NULL, NULL);
	db_teardown();
	return r;
}
