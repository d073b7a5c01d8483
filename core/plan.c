/* plan.c — the plan as a value (plan.h): freeing it, and what its readers
 * share — the rules behind a grant, the [old, new] list of a user's changed
 * fields (the JSON plan and the audit log both show it), the platform's
 * word for a grant kind.  The diff (diff.c) makes plans; the text form is
 * plan_format.c, the JSON form daemon/output.c. */
#include "ids/plan.h"

#include <stdlib.h>

void ids_plan_free(struct ids_plan *p)
{
	if (!p)
		return;
	free(p->users);
	free(p->grants);
	ids_strv_free(&p->new_tenants);
	ids_strv_free(&p->missing_tenants);
	ids_strv_free(&p->new_groups);
	free(p->verdict_why);
	free(p->held);
	ids_arena_free(&p->arena);
	free(p);
}

const struct ids_rule_list *ids_plan_grant_rules(const struct ids_plan *p, const struct ids_plan_grant *g)
{
	return ids_rule_list_get(p->rule_lists, p->nrule_lists, g->rules);
}

/* ---------------- changes as [old, new] ---------------- */

static void change_str(struct ids_change *c, size_t *n, const char *field, const char *old, const char *new)
{
	c[(*n)++] = (struct ids_change){.field = field, .old = old, .new = new};
}

static void change_bool(struct ids_change *c, size_t *n, const char *field, bool state, bool old, bool new)
{
	c[(*n)++] =
	    (struct ids_change){.field = field, .is_bool = true, .state = state, .old_b = old, .new_b = new};
}

size_t ids_plan_user_changes(const struct ids_plan_user *u, const char *idp,
			     struct ids_change ret[IDS_CHANGES_MAX])
{
	const struct ids_cur_user *c = u->cur;
	unsigned ch = u->changed;
	size_t n = 0;
	if (!c)
		return 0;
	if (ch & IDS_CH_USERNAME)
		change_str(ret, &n, "username", c->username, u->username);
	if (ch & IDS_CH_EMAIL)
		change_str(ret, &n, "email", c->email, u->email);
	if (ch & IDS_CH_FIRST_NAME)
		change_str(ret, &n, "first_name", c->first_name, u->first_name);
	if (ch & IDS_CH_LAST_NAME)
		change_str(ret, &n, "last_name", c->last_name, u->last_name);
	if (ch & IDS_CH_DISPLAY_NAME)
		change_str(ret, &n, "display_name", c->display_name, u->display_name);
	if (ch & IDS_CH_COMPANY_ADMIN)
		change_bool(ret, &n, "company_admin", false, c->company_admin, u->company_admin);
	/* IDS_CH_AUTH is one bit for two columns: list the ones that move */
	if ((ch & IDS_CH_AUTH) && ids_strcmp0(c->auth_method, "sso"))
		change_str(ret, &n, "auth_method", c->auth_method, "sso");
	if ((ch & IDS_CH_AUTH) && ids_strcmp0(c->idp, idp))
		change_str(ret, &n, "idp", c->idp, idp);
	if (u->flags & (IDS_PU_DEACTIVATE | IDS_PU_REACTIVATE)) {
		bool on = u->flags & IDS_PU_REACTIVATE;
		change_bool(ret, &n, "active", true, !on, on);
	}
	if (u->flags & (IDS_PU_DEACTIVATE | IDS_PU_REACTIVATE | IDS_PU_REASON)) {
		/* a reactivated user has no deactivation reason any more */
		change_str(ret, &n, "deactivation_reason", c->reason,
			   (u->flags & IDS_PU_REACTIVATE) ? NULL : u->reason);
		ret[n - 1].state = true;
	}
	return n;
}

const char *ids_plan_kind_word(enum ids_grant_kind k)
{
	static const char *const words[IDS_GRANT__COUNT] = {"role", "channel", "group", "slot"};
	return (unsigned)k < IDS_GRANT__COUNT ? words[k] : "?";
}
