/* catalog.h — the platforms' own rules (issue 20), applied to the desired
 * state after the rules: permissions that need other permissions
 * (catalog.requires) and licence limits (licences:).  Pure: no I/O; the
 * seat book it reads and writes is loaded and saved by the store.
 *
 * Both change a desired set in place (ids_desired_set: rules.h).  A grant
 * they add or take away carries a rule list whose `note` is set: its names
 * are no rule names but what the plan prints instead ("required by
 * monitoring", "licence phone: over the limit of 40"). */
#ifndef IDS_CATALOG_H
#define IDS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/plan.h"
#include "ids/rules.h"
#include "ids/snapshot.h"
#include "ids/util.h"

/* catalog.requires: granting `role` needs every role of `needs` in the
 * same tenant. */
struct ids_requirement {
	char *role;
	struct ids_strv needs;
};

/* licences: at most `limit` users of `company` hold `role`, across its
 * tenants. */
struct ids_licence {
	char *company, *role;
	long limit;
};

struct ids_catalog_rules {
	struct ids_requirement *req;
	size_t nreq;
	bool drop_missing; /* on_missing_requirement: drop (default add) */
	struct ids_licence *lic;
	size_t nlic;
};

/* Frees what cr owns (not cr). */
void ids_catalog_rules_clear(struct ids_catalog_rules *cr);

/* ids_rules_eval with catalog.requires: with on_missing_requirement add,
 * each grant rule also grants what its roles need, as "required by ROLE"
 * (a note), so that revoke rules meet the added roles like any grant;
 * then every role whose requirement is not granted (drop), was revoked
 * (revokes win) or was left out is left out too, with a warning naming
 * user, tenant, role and requirement, and a role only requirements gave
 * that nothing needs any more goes.  *ret is new (ids_desired_set_free). */
int ids_catalog_eval(const struct ids_catalog_rules *cr, const struct ids_rule *rules, size_t nrules,
		     const char *connector, const struct ids_snapshot *s, struct ids_desired_set **ret);
/* The same for the users i with want[i] only (ids_rules_eval_some). */
int ids_catalog_eval_some(const struct ids_catalog_rules *cr, const struct ids_rule *rules, size_t nrules,
			  const char *connector, const struct ids_snapshot *s, const bool *want,
			  struct ids_desired_set **ret);

/* One row of the seat book (licence_entitlement): a user of the connector
 * the rules entitle to a licensed role. */
struct ids_seat {
	const char *role, *external_id;
	int64_t entitled_run; /* the run whose rules first granted it */
	int64_t seat_run;     /* the run that gave the seat; 0: held before the book knew */
	bool seated;	      /* false: waiting */
};

/* What the store gives for one connector of one company, and what the
 * licence step hands back to it to save. */
struct ids_seat_book {
	struct ids_seat *v;
	size_t n, cap;
	/* per licensed role: active users of the company holding it who are
	 * not this connector's (other connectors', unmanaged); parallel */
	struct ids_strv other_roles;
	long *other_holders;
	struct ids_arena arena;
};

/* Appends a row (strings copied into b->arena). */
int ids_seat_book_add(struct ids_seat_book *b, const struct ids_seat *row);
/* Adds n to the holders of role outside the connector. */
int ids_seat_book_add_other(struct ids_seat_book *b, const char *role, long n);
void ids_seat_book_clear(struct ids_seat_book *b); /* accepts an empty one */

/* One licence as the database has it (`status`, the metrics): used /
 * limit / waiting.  Strings borrowed from the configuration. */
struct ids_licence_status {
	const char *company, *role;
	long limit, used, waiting;
};

/* used / limit / waiting of one licence after the step. */
struct ids_licence_use {
	const char *role; /* borrowed from the rules */
	long limit, used, waiting, revoked, granted;
};

/* Applies the licences of `company` to d: holders (in cur, the users of
 * `connector`) keep their seat, the free seats go to the waiting users in
 * the order (entitled_run, username), the rest lose the role in every
 * tenant (and, through requires, what needs it); past the limit the most
 * recently seated holders lose it.  `run` is this run's id (a plan:
 * INT64_MAX, after every stored run).  next (empty on entry) gets the book
 * to save; use[0..nlic) (may be NULL) what each licence came to.  One
 * warning per licence with users waiting.  0 or -ENOMEM. */
int ids_catalog_licences(const struct ids_catalog_rules *cr, const char *company, const char *connector,
			 int64_t run, const struct ids_snapshot *s, struct ids_desired_set *d,
			 const struct ids_current *cur, const struct ids_seat_book *prev,
			 struct ids_seat_book *next, struct ids_licence_use *use);

#endif
