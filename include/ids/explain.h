/* explain.h — why one person has (or lacks) each grant: `idsyncd explain`
 * (issue 17 part 1).  A pure function of the finished snapshot, the rules,
 * and optionally the current state: (snapshot, rules, current, one user)
 * -> an explanation, which daemon/explain_out.c prints as text or JSON.
 *
 * What the rules decide comes from ids_rules_eval itself (the whole rule
 * set, then each matching rule alone for what it offered), and what the
 * next run does from ids_diff_compute: the explanation cannot disagree
 * with a sync.  Only the reasons — which group path or attribute value
 * matched, the first condition that failed — are worked out here. */
#ifndef IDS_EXPLAIN_H
#define IDS_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/catalog.h"
#include "ids/plan.h"
#include "ids/rules.h"
#include "ids/snapshot.h"
#include "ids/util.h"

/* How the person's directory entry meets the database. */
enum ids_explain_ident {
	IDS_XI_NONE,	 /* no database side was read */
	IDS_XI_OWNED,	 /* the connector's own row (source, external id) */
	IDS_XI_ADOPTED,	 /* the next run takes over the hand-made row with this e-mail */
	IDS_XI_CONFLICT, /* skipped: username or e-mail held by another row */
	IDS_XI_NEW,	 /* no row: the next run creates one */
	IDS_XI_ABSENT,	 /* no row, and none is made (out of scope, disabled, invalid) */
};

/* A grant's database side. */
enum ids_explain_db {
	IDS_XD_NONE,	/* no database side was read */
	IDS_XD_PRESENT, /* a row of this connector */
	IDS_XD_MANUAL,	/* a row made by hand (or by another connector): satisfies, never touched */
	IDS_XD_MISSING, /* no row */
	IDS_XD_EXTRA,	/* a row of this connector that the rules do not want */
};

/* One rule's offer of a slot value. */
struct ids_explain_offer {
	const char *rule;
	int slots;
};

struct ids_explain_grant {
	enum ids_grant_kind kind;
	const char *tenant, *name;
	int slots;			   /* IDS_GRANT_SLOT: the merged value (the largest offer) */
	bool wanted;			   /* the rules give it (false: a revoked grant, or a row only) */
	bool revoked;			   /* a revoke rule took it away: `rules` names the revoke rules */
	const struct ids_rule_list *rules; /* borrowed from the explanation's desired set */
	struct ids_explain_offer *offers;  /* slots: what each rule offered */
	size_t noffers;
	enum ids_explain_db db;
	int db_slots;	  /* the row's value (slots) when there is a row */
	const char *next; /* what the next run does to it, NULL: nothing */
};

/* Where the user stands under one licence of the company (issue 20). */
enum ids_explain_seat_state {
	IDS_XS_HOLDER,	/* holds a seat and keeps it */
	IDS_XS_SEATED,	/* gets a seat in the next run */
	IDS_XS_WAITING, /* waits for a seat */
	IDS_XS_REVOKED, /* holds a seat the next run takes: over a lowered limit */
};

struct ids_explain_seat {
	const char *role; /* borrowed from the catalog */
	enum ids_explain_seat_state state;
	int64_t entitled_run;	   /* the run whose rules first granted it; 0: the next run */
	int64_t seat_run;	   /* holder, revoked: the run that gave the seat (0: before the book) */
	long position, of;	   /* waiting, revoked: place in the line after the next run (1-based) */
	long used, limit, waiting; /* the licence in the company after the next run */
};

struct ids_explain_rule {
	const struct ids_rule *rule; /* borrowed */
	bool matched;		     /* every condition holds */
	/* matched: how (group path, attribute value, "every user");
	 * else the first reason it did not match */
	const char *why;
	size_t granted; /* grants it gave this user, alone (0 for revoke rules) */
};

struct ids_explanation {
	const char *connector;
	const struct ids_user *user; /* borrowed from the snapshot */
	bool in_scope, company_admin;
	const char *scope_why; /* out of scope: why (disabled, invalid, no rule) */
	enum ids_explain_ident ident;
	int64_t user_id;		/* the row (owned, adopted), else 0 */
	const char *ident_why;		/* conflict: the reason; adopted: the row's username */
	const char *next_user;		/* what the next run does to the user row, NULL: nothing */
	struct ids_explain_rule *rules; /* every rule of the configuration, in its order */
	size_t nrules;
	/* the wanted grants (sorted), then the revoked ones, then rows the
	 * database has that the rules do not give */
	struct ids_explain_grant *grants;
	size_t ngrants;
	/* the licences of the company whose role the rules entitle the user
	 * to, in the configuration's order (none without in->seats) */
	struct ids_explain_seat *seats;
	size_t nseats;
	const char *company;	  /* in->company (borrowed) when licences were applied */
	struct ids_strv warnings; /* the rules' warnings about this user */
	bool db;		  /* the database side was read */
	/* private */
	struct ids_desired_set *d;
	struct ids_plan *plan;
	struct ids_arena arena;
};

/* The user `who` names: an external id (exact), else a username, else an
 * e-mail (both case-insensitive).  0 and *ret_idx, or -ENOENT. */
int ids_explain_find(const struct ids_snapshot *s, const char *who, size_t *ret_idx);

struct ids_explain_in {
	const struct ids_snapshot *s; /* finished; groups not dropped */
	const struct ids_rule *rules;
	size_t nrules;
	const struct ids_diff_opts *dopt; /* connector, idp, adoption, tenant creation */
	const struct ids_current *cur;	  /* NULL: no database side */
	/* catalog.requires, applied as a sync applies it (NULL: none), so
	 * that explain shows the roles requirements add or leave out */
	const struct ids_catalog_rules *catalog;
	/* licences: the connector's company and the seat book the store
	 * holds for the connector (ids_sync_seat_book).  Applied (needs cur
	 * and catalog) as the next run applies them: NULL seats, none. */
	const char *company;
	const struct ids_seat_book *seats;
};

/* Explains user s->users[idx].  *ret is new (ids_explanation_free); it
 * borrows from in->s, in->rules, in->cur, in->catalog and in->company:
 * free it before them. */
int ids_explain(const struct ids_explain_in *in, size_t idx, struct ids_explanation **ret);
void ids_explanation_free(struct ids_explanation *x); /* accepts NULL */

/* "owned", "adopted", "conflict", "new", "absent", "none" */
const char *ids_explain_ident_word(enum ids_explain_ident i);
/* "present", "manual", "missing", "extra", "none" */
const char *ids_explain_db_word(enum ids_explain_db d);
/* "holder", "seated", "waiting", "revoked" */
const char *ids_explain_seat_word(enum ids_explain_seat_state s);

#endif
