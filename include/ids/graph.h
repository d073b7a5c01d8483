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

/* The error of a failed answer, made safe for a log line (printable,
 * bounded): Graph's {"error":{"code","message"}} or the identity
 * platform's {"error","error_description"}.  *ret_code and *ret_message
 * are new, NULL when absent; *ret_request_id (may be NULL) is Graph's
 * innerError request-id when present.  Returns 0, or -ENOMEM. */
int ids_graph_parse_error(const char *body, size_t len, char **ret_code, char **ret_message,
			  char **ret_request_id);

#endif
