/* google_int.h — the pure parts of the Google Workspace connector, shared by
 * google.c and its unit tests (tests/unit/test_conn_google.c): the service
 * account key file, the token answer, Google's error shape, the attribute
 * path resolver, the `fields=` selector, and the Directory API page parsers
 * as functions from one page body to snapshot builder calls.  No I/O here.
 *
 * Attribute paths (config `attributes:`, rule `match.attribute` keys,
 * `{attr.NAME}` templates) name fields of the Directory API user resource,
 * case-sensitively as Google spells them, segments joined by dots:
 * "orgUnitPath", "name.givenName", "organizations.0.department",
 * "customSchemas.Contact_Center.tenant".  A numeric segment indexes an
 * array; a name segment applied to an array applies to every element
 * ("emails.address": every address).  What a path ends on gives the values:
 * a string as it is, a number in decimal, true/false as "true"/"false", an
 * array each of its elements, and an object with a "value" member (a
 * multi-valued custom schema field: [{"type":"work","value":"x"}]) that
 * value; null and other objects give nothing. */
#ifndef IDS_GOOGLE_INT_H
#define IDS_GOOGLE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ids/error.h"
#include "ids/snapshot.h"
#include "ids/util.h"

/* Longest accepted service account key file, and path. */
#define IDS_GOOGLE_KEY_MAX (64 * 1024)
#define IDS_GOOGLE_PATH_MAX_SEGMENTS 16

/* ---------------- service account key ---------------- */

/* What idsyncd uses of the JSON key Google issues.  Every string is new;
 * private_key is a secret (ids_google_key_clear wipes it). */
struct ids_google_key {
	char *client_email;
	char *private_key; /* PEM */
	size_t private_key_len;
	char *private_key_id;
	char *token_uri; /* NULL when the file has none */
};

/* Parses the key file's content json[0..len).  `path` names the file in
 * messages.  Requires client_email, private_key (a PEM private key) and
 * private_key_id as non-empty strings, and "type" (when present) to be
 * "service_account".  Errors: IDS_E_CONFIG with a message naming the file
 * and the problem, never a part of the key.  ret is written only on
 * success. */
int ids_google_key_parse(const char *json, size_t len, const char *path, struct ids_google_key *ret,
			 struct ids_error *err);
/* Wipes the private key and frees everything; k is zeroed.  Accepts NULL. */
void ids_google_key_clear(struct ids_google_key *k);

/* ---------------- errors ---------------- */

/* The message of an error answer, for the log: Google APIs'
 * {"error":{"code":..,"message":..,"errors":[{"reason":..}]}} as
 * "MESSAGE (REASON)", OAuth's {"error":"..","error_description":".."} as
 * "ERROR: DESCRIPTION", anything else "no error details (CONTENT)".
 * Control characters are replaced and the text is cut at 300 bytes: the
 * body came from the network.  *ret new. */
int ids_google_error_message(const char *body, size_t len, char **ret);

/* true when an answer is one of Google's rate limits that must be waited
 * out: 429, or 403 whose errors[].reason is rateLimitExceeded or
 * userRateLimitExceeded (quotaExceeded and other 403s are not: waiting
 * does not help them). */
bool ids_google_rate_limited(long status, const char *body, size_t len);

/* ---------------- attribute paths ---------------- */

/* true when path is a well-formed attribute path: 1..16 non-empty
 * segments of [A-Za-z0-9_-], separated by single dots. */
bool ids_google_path_valid(const char *path);

/* Calls fn(ud, v, n) for each value path gives in root (see the top of
 * this file), in document order; stops at and returns fn's first < 0.
 * 0 when done (also when the path gives nothing); -EINVAL for an invalid
 * path.  The values are borrowed from root. */
int ids_google_path_values(const json_t *root, const char *path, int (*fn)(void *ud, const char *v, size_t n),
			   void *ud);

/* Appends path in the `fields=` syntax of Google's partial responses:
 * dots become slashes and array indexes are dropped
 * ("organizations.0.department" -> "organizations/department"). */
int ids_google_fields_path(struct ids_buf *b, const char *path);

/* ---------------- user mapping and pages ---------------- */

/* How a user resource becomes a snapshot user. */
struct ids_google_umap {
	const char *field[6];	      /* path per IDS_F_EXTERNAL_ID..IDS_F_DISPLAY_NAME (NULL: none) */
	const struct ids_strv *attrs; /* rule attributes (paths); may be NULL */
};

/* The Google defaults: id, primaryEmail, primaryEmail, name.givenName,
 * name.familyName, name.fullName. */
extern const char *const ids_google_default_fields[6];

/* The `fields=` value for users.list: nextPageToken and, inside
 * users(...), id, primaryEmail, the name parts, suspended, archived and
 * every path of m (deduplicated).  *ret_full: a path starts with
 * "customSchemas" (projection=full is needed).  -EINVAL when a path is
 * invalid (the caller names it: ids_google_umap_check). */
int ids_google_users_fields(const struct ids_google_umap *m, struct ids_buf *b, bool *ret_full);
/* NULL when every path of m is valid, else the first invalid one
 * (borrowed). */
const char *ids_google_umap_check(const struct ids_google_umap *m);

/* What one page held. */
struct ids_google_page {
	char *next;   /* new: nextPageToken, NULL on the last page */
	size_t items; /* users / groups / members on the page */
};
void ids_google_page_clear(struct ids_google_page *pg);

/* One users.list page: every user of "users" (absent = none) into s, with
 * disabled = suspended || archived.  Wrong types (a non-object user, a
 * non-boolean suspended, a non-array users, a non-string token) are
 * IDS_E_PROTOCOL: a body we do not understand is never read as "fewer
 * users".  A user's field with bad data marks that user invalid (the
 * builder's checks).  ret written only on success. */
int ids_google_parse_users(const char *body, size_t len, const struct ids_google_umap *m,
			   struct ids_snapshot *s, struct ids_google_page *ret, struct ids_error *err);

/* One groups.list page: the groups in scope into s (id -> IDS_F_EXTERNAL_ID,
 * name -> IDS_F_USERNAME, email -> IDS_F_EMAIL) and their ids appended to
 * *ids (whose members the caller lists next).  scope NULL or empty: every
 * group; else a group is in scope when an entry equals its id (exactly) or
 * its e-mail or name (ASCII case-insensitively); matched (scope->n flags,
 * may be NULL) records which entries matched something. */
int ids_google_parse_groups(const char *body, size_t len, const struct ids_strv *scope, bool *matched,
			    struct ids_snapshot *s, struct ids_strv *ids, struct ids_google_page *ret,
			    struct ids_error *err);

/* users.get's answer (`sync --user`, explain): one user resource into s,
 * mapped as a users.list entry is; *ret_id new, its id. */
int ids_google_parse_user(const char *body, size_t len, const struct ids_google_umap *m,
			  struct ids_snapshot *s, char **ret_id, struct ids_error *err);
/* One groups.list?userKey= page: the groups a user or group is a direct
 * member of.  Each group not in *seen yet is pushed to *seen (its id) and
 * *walk (its e-mail, else its id: the key the caller lists that group's
 * own parents with); one in scope (as ids_google_parse_groups decides)
 * also becomes a snapshot group with user_id a member of it. */
int ids_google_parse_user_groups(const char *body, size_t len, const struct ids_strv *scope,
				 const char *user_id, struct ids_snapshot *s, struct ids_strv *seen,
				 struct ids_strv *walk, struct ids_google_page *ret, struct ids_error *err);
/* One members.list page of group `group_id`: each member of type USER
 * becomes ids_snapshot_member(s, group_id, IDS_REF_ID, id); GROUP entries
 * (listed beside their expanded users with includeDerivedMembership) and
 * CUSTOMER entries are skipped. */
int ids_google_parse_members(const char *body, size_t len, const char *group_id, struct ids_snapshot *s,
			     struct ids_google_page *ret, struct ids_error *err);

#endif
