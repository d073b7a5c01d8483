/* graph.h — Microsoft Graph / identity platform answers as pure functions:
 * a page body in, snapshot builder calls and the next link out.  No
 * network, no logging: entra.c fetches, these parse, and the unit tests
 * feed them recorded pages.
 *
 * Every parser is strict where a lenient one would turn a broken answer
 * into "fewer users": a body that is not JSON (an HTML error page with
 * status 200), duplicate keys, a missing or non-array `value`, an element
 * that is not an object, a property of the wrong type — all are
 * IDS_E_PROTOCOL with err saying what was wrong, and the caller fails the
 * run.  Values that are merely unusable for one user (a NUL byte, too
 * long) reach the builder, which marks that user invalid. */
#ifndef IDS_GRAPH_H
#define IDS_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "ids/error.h"
#include "ids/snapshot.h"
#include "ids/util.h"

/* What a collection page said besides its objects. */
struct ids_graph_page {
	char *next_link; /* new: @odata.nextLink, NULL on the last page */
	size_t count;	 /* elements in `value` */
};

void ids_graph_page_clear(struct ids_graph_page *p);

/* How users map to the snapshot: the Graph property per platform field
 * (IDS_F_EXTERNAL_ID .. IDS_F_DISPLAY_NAME; a.b reads property b of
 * object a; NULL = unmapped) and the attributes the rules read.  Names
 * match case-insensitively.  All borrowed. */
struct ids_graph_user_map {
	const char *const *attr; /* [6] */
	const struct ids_strv *rule_attrs;
};

/* Appends to b the comma-separated $select of a users request: id,
 * accountEnabled, the mapped properties and the rule attributes, each
 * top-level name once, URL-encoded. */
int ids_graph_user_select(struct ids_buf *b, const struct ids_graph_user_map *m);

/* One page of GET /users: a user per element (accountEnabled false =
 * disabled; a null property = absent; rule attributes from string,
 * string-array, boolean or number properties).  *ret filled on success. */
int ids_graph_parse_users(const char *body, size_t len, const struct ids_graph_user_map *m,
			  struct ids_snapshot *s, struct ids_graph_page *ret, struct ids_error *err);

/* The answer of GET /users/{id or userPrincipalName} (`sync --user`,
 * explain): one user object, mapped as a page's user is; *ret_id new,
 * its Graph id (what transitiveMemberOf is asked with). */
int ids_graph_parse_user(const char *body, size_t len, const struct ids_graph_user_map *m,
			 struct ids_snapshot *s, char **ret_id, struct ids_error *err);

/* One page of GET /users?$filter=…&$select=id: each element's id pushed
 * to *ids. */
int ids_graph_parse_ids(const char *body, size_t len, struct ids_strv *ids, struct ids_graph_page *ret,
			struct ids_error *err);

/* One page of GET /groups: every group whose id or displayName is in
 * `scope` (case-insensitive; NULL or empty = every group) becomes a
 * snapshot group (id, displayName as its name, mail) and its id is pushed
 * to *ids (the groups whose members the caller reads next); `matched`
 * (may be NULL; scope->n entries) records which scope entries matched
 * something. */
int ids_graph_parse_groups(const char *body, size_t len, const struct ids_strv *scope, struct ids_snapshot *s,
			   struct ids_strv *ids, bool *matched, struct ids_graph_page *ret,
			   struct ids_error *err);

/* One page of GET /groups/{id}/transitiveMembers/microsoft.graph.user:
 * each element's id becomes a membership of group_id (IDS_REF_ID). */
int ids_graph_parse_members(const char *body, size_t len, const char *group_id, struct ids_snapshot *s,
			    struct ids_graph_page *ret, struct ids_error *err);

/* ---- delta queries (issue 15): GET /users/delta and /groups/delta ----
 *
 * A round starts at the stored @odata.deltaLink (or, with none, at the
 * listing itself: everything, as a full read), follows every
 * @odata.nextLink, empty pages included, and ends at a page with an
 * @odata.deltaLink, where the next round starts.  The links carry the
 * round's $select: a changed $select needs a new first round. */

struct ids_image;

/* Graph keeps a directory delta token for 7 days; an older stored link
 * is not tried (a failure then costs a full read anyway, and a token at
 * the edge may die half-way through a round). */
#define IDS_GRAPH_DELTA_MAX_AGE (6 * 86400LL)

struct ids_graph_delta_page {
	char *next_link;  /* new: @odata.nextLink, or NULL */
	char *delta_link; /* new: @odata.deltaLink (the round's last page), or NULL */
	size_t count;	  /* elements in `value` */
	size_t changes;	  /* users upserted or removed */
	size_t removed;	  /* of which removed */
};

void ids_graph_delta_page_clear(struct ids_graph_delta_page *p);

/* One page of a users delta round into img: a user replaces the record
 * keyed by its Graph id (mapped as a full read maps it); one with
 * @removed — reason "changed" (soft-deleted, restorable for 30 days) or
 * "deleted" (final) — removes it: the diff deactivates it as
 * deleted_in_source, and a restore comes back as a user of the same id,
 * reactivating the same row.  Exactly one of the links is set. */
int ids_graph_parse_users_delta(const char *body, size_t len, const struct ids_graph_user_map *m,
				struct ids_image *img, struct ids_graph_delta_page *ret,
				struct ids_error *err);

/* A groups delta round, collected over its pages before it touches the
 * image: the same group comes on several pages (its members split), and
 * the last word on a member wins.  members@delta are direct members
 * (users and nested groups, by id); the core resolves the nesting. */
struct ids_graph_gdelta;
int ids_graph_gdelta_new(struct ids_graph_gdelta **ret); /* *ret new; -ENOMEM */
void ids_graph_gdelta_free(struct ids_graph_gdelta *gd); /* accepts NULL */
size_t ids_graph_gdelta_count(const struct ids_graph_gdelta *gd);
int ids_graph_parse_groups_delta(const char *body, size_t len, struct ids_graph_gdelta *gd,
				 struct ids_graph_delta_page *ret, struct ids_error *err);

/* Where a connector's delta rounds stand (connector_feed.cursor). */
struct ids_graph_cursor {
	char *users_link, *groups_link; /* the deltaLinks */
	long long at;			/* unix seconds they were received */
	char *fingerprint;		/* of the $selects and the groups: scope */
	void *scoped;			/* (json_t) group id -> index of the scope entry it matches */
};
void ids_graph_cursor_clear(struct ids_graph_cursor *c);
/* -EINVAL for bytes that are no cursor of ours (the caller reads
 * everything again), -ENOMEM. */
int ids_graph_cursor_parse(const unsigned char *b, size_t n, struct ids_graph_cursor *c);
/* *ret new (JSON text). */
int ids_graph_cursor_write(const struct ids_graph_cursor *c, unsigned char **ret, size_t *ret_n);
/* Why c cannot be used at `now` (another fingerprint; older than
 * IDS_GRAPH_DELTA_MAX_AGE; from the future): *ret_reason new, NULL when
 * it can.  -ENOMEM only. */
int ids_graph_cursor_check(const struct ids_graph_cursor *c, const char *fingerprint, long long now,
			   char **ret_reason);

/* Applies the round in gd to img: a removed group goes; a group whose
 * values came is rewritten (id; name and mail when the scope takes it —
 * a group out of scope stays, nameless, so that nesting through it
 * resolves as the full read's transitiveMembers does) with its members
 * kept but for those the round named, plus those it added; a group of
 * members only is edited edge by edge.  full: a first round, which sends
 * every group and all its members (the caller's present phase removes
 * the rest).  Keeps c->scoped up to date.  *ret_changes: groups touched. */
int ids_graph_gdelta_apply(struct ids_graph_gdelta *gd, struct ids_image *img, const struct ids_strv *scope,
			   bool full, struct ids_graph_cursor *c, size_t *ret_changes, struct ids_error *err);

/* The first scope entry no group matches (by c->scoped), or -1. */
long ids_graph_scope_unmatched(const struct ids_graph_cursor *c, const struct ids_strv *scope);

/* The error of a failed answer, made safe for a log line (printable,
 * bounded): Graph's {"error":{"code","message"}} or the identity
 * platform's {"error","error_description"}.  *ret_code and *ret_message
 * are new, NULL when absent; *ret_request_id (may be NULL) is Graph's
 * innerError request-id when present.  Returns 0, or -ENOMEM. */
int ids_graph_parse_error(const char *body, size_t len, char **ret_code, char **ret_message,
			  char **ret_request_id);

#endif
