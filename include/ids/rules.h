/* rules.h — the rule language of config.md, compiled, and its evaluation:
 * a pure function (snapshot, rules) -> desired state per user.
 *
 * The config loader fills struct ids_rule (and compiles its regexes);
 * ids_rules_eval() never touches the network or the database.  The result
 * does not depend on the order of the rules: grants are unions (slots: the
 * maximum), revokes are applied after every grant, and each user's grants
 * come out sorted. */
#ifndef IDS_RULES_H
#define IDS_RULES_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/snapshot.h"
#include "ids/util.h"

enum ids_grant_kind {
	IDS_GRANT_ROLE,	   /* tenant_role */
	IDS_GRANT_CHANNEL, /* channel_grant */
	IDS_GRANT_GROUP,   /* operator_group_member (name = operator group) */
	IDS_GRANT_SLOT,	   /* slot_limit (name = channel group, slots = value) */
	IDS_GRANT__COUNT
};

/* "role", "chan", "group", "slot": the words of the text plan. */
const char *ids_grant_kind_name(enum ids_grant_kind k);

struct ids_rule_attr {
	char *name;    /* attribute name, compared case-insensitively */
	char *pattern; /* POSIX ERE source */
	regex_t re;
};

struct ids_rule_slot {
	char *channel_group; /* a catalog channel group */
	int slots;	     /* 0..1000 */
};

struct ids_rule {
	char *name;
	int line;		    /* line of the rule in the config, for messages */
	struct ids_strv connectors; /* empty: every connector */

	/* match: every given condition must hold */
	struct ids_strv member_of;     /* any of: DN, id, name, e-mail; transitive */
	struct ids_strv not_member_of; /* none of */
	struct ids_rule_attr *attrs;   /* every attribute: any value matches */
	size_t nattrs;
	char *member_of_regex; /* NULL when absent; "(?i)" prefix already stripped */
	regex_t group_re;      /* compiled when member_of_regex != NULL */
	size_t group_re_nsub;  /* number of capture groups */

	/* grants: tenant is a slug, a template ({N}, {attr.NAME}) or "*" */
	char *tenant; /* NULL for company_admin-only rules */
	struct ids_strv roles, channels, groups;
	struct ids_rule_slot *slots;
	size_t nslots;
	bool company_admin;

	/* revoke: a rule with a revoke block grants nothing */
	bool revoke;
	struct ids_strv revoke_roles, revoke_channels, revoke_groups;
};

/* Frees what a rule owns (not the struct itself). */
void ids_rule_clear(struct ids_rule *r);

/* true when rule r applies to connector `name`. */
bool ids_rule_for_connector(const struct ids_rule *r, const char *name);

/* Adds to *out (no duplicates, case-insensitive) the names of the user
 * attributes that the rules for `connector` read: match.attribute keys and
 * {attr.NAME} template references.  Connectors fetch these. */
int ids_rules_attrs(const struct ids_rule *rules, size_t nrules, const char *connector, struct ids_strv *out);

/* Checks a tenant template: every {N} within the regex's captures, every
 * {...} well formed.  0 or -EINVAL with *ret_why (static string). */
int ids_rule_check_template(const struct ids_rule *r, const char **ret_why);

/* The rules that produced a grant: their names, sorted, unique.  Plans
 * and audit rows show them (config.md: a rule's name is "shown in plans
 * and audit"). */
struct ids_rule_list {
	size_t n;
	/* the names are notes of the catalog's (catalog.h: "required by
	 * monitoring"), not rule names: printed as they are */
	bool note;
	const char *names[]; /* n names, borrowed from the desired set */
};

/* One desired grant. */
struct ids_grant {
	enum ids_grant_kind kind;
	const char *tenant; /* slug */
	const char *name;   /* role, channel, operator group or channel group */
	int slots;	    /* IDS_GRANT_SLOT only */
	/* Which rules grant it: an index into ids_desired_set.rule_lists, 0
	 * for none (a hand-made desired state).  An index, not a pointer: it
	 * fits in the padding after slots, and the plan carries it into
	 * millions of grant lines at no cost either. */
	uint32_t rules;
};

/* Desired state of one snapshot user. */
struct ids_desired {
	bool in_scope; /* at least one non-revoke rule matched and granted something */
	bool company_admin;
	/* grants[ngrants .. ngrants + nrevoked): what revoke rules took away
	 * from the grants the rules gave, in the same order, their `rules`
	 * naming the revoke rules — so that a plan can say why a grant goes.
	 * (Beside the bools: the struct stays 24 bytes a user.) */
	uint32_t nrevoked;
	/* sorted by (tenant, kind, name), unique.  Read-only: users with the
	 * same grants share one array (and equal strings one pointer). */
	struct ids_grant *grants;
	size_t ngrants;
};

struct ids_desired_set {
	struct ids_desired *users; /* parallel to snapshot->users */
	size_t nusers;
	struct ids_strv warnings; /* e.g. "user jnovak: rule r1: tenant template gave invalid slug \"-x\"" */
	/* Every distinct list of rules a grant came from, in d->arena; [0] is
	 * NULL (no rule).  Few: a rule alone, or the few rules that overlap. */
	const struct ids_rule_list **rule_lists;
	size_t nrule_lists, cap_rule_lists;
	struct ids_arena arena;
};

/* lists[idx] (a grant's `rules`), NULL for 0 or an index out of range.
 * Borrowed from whoever owns lists (the desired set). */
const struct ids_rule_list *ids_rule_list_get(const struct ids_rule_list *const *lists, size_t n,
					      uint32_t idx);

/* Evaluates the rules that apply to `connector` for every valid user of s
 * (finished).  Invalid users get an empty, out-of-scope entry.
 * *ret is new: free with ids_desired_set_free(). */
int ids_rules_eval(const struct ids_rule *rules, size_t nrules, const char *connector,
		   const struct ids_snapshot *s, struct ids_desired_set **ret);
/* The same for the users i with want[i] only (want parallel to
 * s->users, borrowed; NULL: every user).  The others get the empty,
 * out-of-scope entry of an invalid user and no warning: for a plan that
 * leaves them alone (ids_diff_opts.only), whose rules would be wasted. */
int ids_rules_eval_some(const struct ids_rule *rules, size_t nrules, const char *connector,
			const struct ids_snapshot *s, const bool *want, struct ids_desired_set **ret);
void ids_desired_set_free(struct ids_desired_set *d);

/* true when slug is a valid tenant slug: [a-z0-9][a-z0-9_-]{0,62}. */
bool ids_slug_valid(const char *slug);

#endif
