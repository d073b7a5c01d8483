/* plan.h — the current managed state (as read from PostgreSQL, current.c),
 * the diff that turns (snapshot, desired, current) into a plan (diff.c),
 * the plan itself (plan.c), the safety checks (safety.c) and the plan's
 * text form (plan_format.c; its JSON form is the daemon's, output.h).
 * Pure: no I/O.
 *
 * All of this happens inside one company: `current` holds only that
 * company's users, tenants and grants, so nothing can cross companies. */
#ifndef IDS_PLAN_H
#define IDS_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/rules.h"
#include "ids/snapshot.h"
#include "ids/util.h"

/* ---------------- current state ---------------- */

struct ids_cur_user {
	int64_t id;
	const char *source;	 /* NULL: made by hand */
	const char *external_id; /* NULL when source is NULL */
	const char *username, *email, *first_name, *last_name, *display_name;
	const char *auth_method; /* activation_link | sso */
	const char *idp;	 /* NULL unless sso */
	const char *reason;	 /* deactivation_reason, NULL when active */
	bool company_admin, active;
};

struct ids_cur_grant {
	int64_t user_id;
	const char *tenant; /* slug */
	const char *name;
	int slots;	    /* IDS_GRANT_SLOT */
	unsigned char kind; /* enum ids_grant_kind in one byte: 32 bytes a row, and tier L loads 7 million */
	bool manual;	    /* source IS NULL: never touched, counts as satisfied */
	/* The rules the row names (its `rules` column), as an index into
	 * current->rule_texts (ids_current_grant_rules); 0: none (the column
	 * is NULL, or the row is manual).  16 bits, in the padding: the row
	 * stays 32 bytes, and a company has a few dozen distinct lists. */
	uint16_t rules;
};

struct ids_current {
	struct ids_cur_user *users; /* every user of the company */
	size_t nusers;
	struct ids_cur_grant *grants; /* every grant row (any source) of the users
				       * the connector owns, and of unmanaged users
				       * (adoption candidates: their rows are manual) */
	size_t ngrants;
	/* ids_store_load_some: the connector's grant rows on its active users
	 * it did not load, which the grant-removal threshold's base counts */
	size_t managed_others;
	/* the same for the deactivation thresholds' base: the connector's
	 * active users it did not load (ids_store_load_some) */
	size_t active_others;
	/* ids_store_load (the whole state): the connector's active users and
	 * its grant rows on them as counted here, less managed_count's (the
	 * triggers' counter, migration 013); 0 when it agrees.  Not 0 after
	 * rows were written with triggers disabled: the apply adds it. */
	long bases_fix_users, bases_fix_grants;
	struct ids_strv tenants; /* slugs of the company's tenants */
	struct ids_arena arena;
	size_t ucap, gcap;
	/* Strings that repeat from row to row (tenant slugs, grant names,
	 * source, auth method, ...) are stored once, in arena: equal strings
	 * of grants share one pointer. */
	struct ids_strpool interned;
	/* The distinct `rules` values of the grant rows, the names joined by
	 * '\n' (a rule name has no control character); [0] is NULL. */
	const char **rule_texts;
	size_t nrule_texts, cap_rule_texts;
	struct ids_strmap rule_index; /* text -> index into rule_texts */
};

int ids_current_new(struct ids_current **ret);
void ids_current_free(struct ids_current *c); /* accepts NULL */
/* Copy u / g (strings into the arena; the repeating ones interned). */
int ids_current_add_user(struct ids_current *c, const struct ids_cur_user *u);
int ids_current_add_grant(struct ids_current *c, const struct ids_cur_grant *g);
/* The same, for a row whose rules column holds `rules` (the names joined
 * by '\n'; NULL: none); g->rules is ignored.  -E2BIG past 65535 distinct
 * lists. */
int ids_current_add_grant_rules(struct ids_current *c, const struct ids_cur_grant *g, const char *rules);
/* The rules text of row g, NULL when none.  Borrowed from c. */
const char *ids_current_grant_rules(const struct ids_current *c, const struct ids_cur_grant *g);
int ids_current_add_tenant(struct ids_current *c, const char *slug);

/* app_user id -> index into c->users: the diff buckets grant rows by it,
 * the store's load keeps the grants of the wanted users with it.  Open
 * addressing over a power-of-two table at most half full. */
struct ids_current_index {
	int64_t *key; /* 0: empty (no bigserial is 0) */
	uint32_t *val;
	size_t cap;
};

/* Indexes every user of c (an id given twice: the later row).  *ix is
 * new: free it with ids_current_index_free().  0 or -ENOMEM. */
int ids_current_index_build(const struct ids_current *c, struct ids_current_index *ix);
/* true and *ret_row when id is a user of the index. */
bool ids_current_index_get(const struct ids_current_index *ix, int64_t id, uint32_t *ret_row);
void ids_current_index_free(struct ids_current_index *ix); /* accepts an empty one */

/* ---------------- the plan ---------------- */

enum {
	IDS_PU_CREATE = 1 << 0,
	IDS_PU_ADOPT = 1 << 1,	/* existing unmanaged user taken over by e-mail */
	IDS_PU_UPDATE = 1 << 2, /* profile fields / company_admin / auth changed */
	IDS_PU_DEACTIVATE = 1 << 3,
	IDS_PU_REACTIVATE = 1 << 4,
	IDS_PU_CONFLICT = 1 << 5,     /* skipped: username/e-mail taken */
	IDS_PU_SKIP_INVALID = 1 << 6, /* skipped: bad data */
	IDS_PU_REASON = 1 << 7,	      /* already inactive: only the reason changes */
};

/* Bits of ids_plan_user.changed: which fields an UPDATE/ADOPT sets. */
enum {
	IDS_CH_USERNAME = 1 << 0,
	IDS_CH_EMAIL = 1 << 1,
	IDS_CH_FIRST_NAME = 1 << 2,
	IDS_CH_LAST_NAME = 1 << 3,
	IDS_CH_DISPLAY_NAME = 1 << 4,
	IDS_CH_COMPANY_ADMIN = 1 << 5,
	IDS_CH_AUTH = 1 << 6, /* auth_method/idp set to sso/<idp> */
};

struct ids_plan_user {
	unsigned flags;	  /* IDS_PU_* */
	unsigned changed; /* IDS_CH_* */
	int64_t id;	  /* current row id; 0 for a new user */
	const char *external_id;
	/* desired values (create/update/adopt); for a deactivation the current ones */
	const char *username, *email, *first_name, *last_name, *display_name;
	bool company_admin;
	const char *reason;		/* deactivation reason, or why conflict/skip */
	const struct ids_cur_user *cur; /* borrowed from current; NULL for new */
};

enum ids_grant_op {
	IDS_GOP_ADD,
	IDS_GOP_REMOVE,
	IDS_GOP_CHANGE, /* slot value */
	/* same grant, same value, other rules behind it: only the row's
	 * `rules` column is written (provenance), counted apart */
	IDS_GOP_RULES,
};

struct ids_plan_grant {
	/* op and kind in a byte each, so that `rules` fits beside them: an
	 * initial sync of tier L plans 7 million grants, 56 bytes each */
	unsigned char op;   /* enum ids_grant_op */
	unsigned char kind; /* enum ids_grant_kind */
	/* the rules behind it, as an index into the plan's rule_lists
	 * (ids_plan_grant_rules): for an add or a change the rules that grant
	 * it; for a removal the revoke rules that took it away, or 0 when no
	 * rule did (the user left the rules' scope or was deactivated) */
	uint32_t rules;
	const char *external_id; /* the user's (source, external_id) key */
	const char *username;	 /* for display */
	const char *tenant, *name;
	int slots, old_slots;
	int64_t user_id; /* the user's row as loaded; 0: none yet (a user the plan creates) */
};

enum ids_verdict {
	IDS_VERDICT_OK,
	IDS_VERDICT_EMPTY,     /* empty-source guard: aborted_empty */
	IDS_VERDICT_THRESHOLD, /* aborted_threshold */
};

struct ids_plan_counts {
	long users_seen, created, updated, deactivated, reactivated;
	long grants_added, grants_removed, conflicts, skipped_invalid;
	long grants_rules_changed; /* IDS_GOP_RULES: neither added nor removed */
};

struct ids_plan {
	const char *connector;
	/* Users with any action, in the order the text plan prints them
	 * (by username, then external id). */
	struct ids_plan_user *users;
	size_t nusers;
	/* Grant changes, grouped with their user (same order as users), then
	 * by (tenant, kind, name). */
	struct ids_plan_grant *grants;
	size_t ngrants;
	struct ids_strv new_tenants;	 /* to create (tenants.auto_create) */
	struct ids_strv missing_tenants; /* grants skipped: tenant unknown */
	struct ids_strv new_groups;	 /* "tenant\tgroup": operator groups to create */
	/* the desired set's rule lists (borrowed, like its strings) */
	const struct ids_rule_list *const *rule_lists;
	size_t nrule_lists;
	struct ids_plan_counts counts;
	long active_managed;	 /* the connector's active managed users before the run */
	long managed_grants;	 /* the connector's grant rows on active users before */
	long removals_on_active; /* grant removals on users that stay active */
	/* the current state's bases_fix_*: what ids_store_apply adds to the
	 * thresholds' counter (managed_count) in the run's transaction */
	long bases_fix_users, bases_fix_grants;
	enum ids_verdict verdict;
	char *verdict_why; /* new: set when verdict != OK */
	/* new: set with verdict_why: what the verdict holds back, against
	 * which limit ("4 deactivations over the limit of 3"); the counts of
	 * an aborted plan are what was not done, and must not read as done */
	char *held;
	struct ids_arena arena;
	const char *idp; /* opts->idp, for the "sso/entra" of the text plan; may be NULL */
	bool retire;	 /* made by `idsyncd retire`: the safety message names that command */
};

struct ids_diff_opts {
	const char *connector;
	const char *idp; /* "ldap" | "entra" | "google" */
	bool adopt_by_email;
	bool auto_create_tenants;
	bool retire; /* retire: every managed user out_of_scope */
	/* borrowed, NULL for all: `sync --user`, the external id of the one
	 * user this plan is for.  Every other row and snapshot entry is left
	 * exactly as it is (a partial read must never look like "these users
	 * left"), and this user is never deactivated either: a targeted run
	 * creates, updates, reactivates and grants; only full and incremental
	 * runs deprovision. */
	const char *only_user;
	/* borrowed, NULL for all: an incremental re-plan, the external ids
	 * of the users a change can reach (daemon/sync.c).  Every other row
	 * and snapshot entry is left exactly as it is; unlike only_user,
	 * these users may be deactivated (one that left the directory is
	 * one of them).  The current state may hold only their rows
	 * (ids_store_load_some). */
	const struct ids_strmap *only;
};

/* Computes the plan.  s must be finished, d = ids_rules_eval(s).  Counts
 * are filled; verdict is OK until ids_safety_check().
 * *ret is new: free with ids_plan_free().  It borrows the strings of s, d
 * and c (a million users' names are not copied again), as it borrows
 * `cur`: use and free it before them. */
int ids_diff_compute(const struct ids_snapshot *s, const struct ids_desired_set *d,
		     const struct ids_current *c, const struct ids_diff_opts *o, struct ids_plan **ret);
void ids_plan_free(struct ids_plan *p);

/* The rules that produced grant g of p, NULL for none (a removal).
 * Borrowed from the desired set the plan was made from. */
const struct ids_rule_list *ids_plan_grant_rules(const struct ids_plan *p, const struct ids_plan_grant *g);

struct ids_safety {
	long max_deactivations;		/* absolute, default 500 */
	int max_deactivation_percent;	/* of active managed users, default 10 */
	int max_grant_removals_percent; /* of managed grants on active users, default 25 */
};

/* Sets p->verdict (and verdict_why, held): EMPTY when the snapshot had no users
 * but the connector owns active users and !allow_empty; THRESHOLD when
 * deactivations or grant removals exceed a limit and !allow_mass. */
void ids_safety_check(struct ids_plan *p, size_t snapshot_users, const struct ids_safety *lim,
		      bool allow_empty, bool allow_mass);

/* The text plan of semantics.md, ending with the summary line.  (Its
 * JSON form is the daemon's: output.h.) */
int ids_plan_format_text(const struct ids_plan *p, struct ids_buf *out);

/* One field that a plan user changes on its row, as [old, new]: what the
 * JSON plan shows and the audit log records. */
struct ids_change {
	const char *field;     /* "username", ..., "active", "deactivation_reason" */
	bool is_bool;	       /* company_admin, active: old_b/new_b; else old/new */
	bool state;	       /* active, deactivation_reason: the row's state, not its profile */
	const char *old, *new; /* NULL: null */
	bool old_b, new_b;
};
#define IDS_CHANGES_MAX 10

/* The fields user u changes on its row, in a fixed order (profile fields,
 * company_admin, auth_method and idp where they differ from sso/idp, then
 * active and deactivation_reason), into ret; returns how many.  None for
 * a user without a row (u->cur NULL).  The strings are borrowed from u,
 * its row and idp. */
/* "role", "channel", "group", "slot": the platform's words for a grant
 * kind (JSON plan, audit detail, staging tables); "?" when out of range. */
const char *ids_plan_kind_word(enum ids_grant_kind k);

size_t ids_plan_user_changes(const struct ids_plan_user *u, const char *idp,
			     struct ids_change ret[IDS_CHANGES_MAX]);
/* "1 create, 0 update, 1 deactivate, 0 reactivate, 2 grants added, 0 removed, 0 conflicts" */
int ids_plan_format_counts(const struct ids_plan_counts *c, struct ids_buf *out);

#endif
