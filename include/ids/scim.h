/* scim.h — the pure parts of the SCIM 2.0 service provider (RFC 7643,
 * RFC 7644): the filter parser, PATCH application and the checks a
 * pushed resource passes before it is stored.  No sockets, no database:
 * jansson and libc only, so that the unit tests and fuzzers drive them
 * directly.
 *
 * Every failure fills a struct ids_scim_fault: the HTTP status and the
 * scimType of RFC 7644 §3.12 that the listener answers with, and a detail
 * that quotes at most a short, escaped piece of the request. */
#ifndef IDS_SCIM_H
#define IDS_SCIM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ids/scim_store.h"

#define IDS_SCIM_ENTERPRISE "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#define IDS_SCIM_FILTER_MAX 8 /* `and`ed conditions */

struct ids_scim_fault {
	int status;	       /* 400, 404, 409, ... */
	const char *scim_type; /* "invalidFilter", "invalidPath", ...; NULL for none */
	char detail[256];
};

/* A parsed filter: conditions whose values point into buf. */
struct ids_scim_filter {
	struct ids_scim_cond c[IDS_SCIM_FILTER_MAX];
	size_t n;
	char *buf; /* new: ids_scim_filter_clear */
};

/* Parses `attr eq "value" [and ...]` (operators and `and` in any case;
 * attributes userName, externalId, id, displayName, emails.value,
 * emails[type eq "T"].value, optionally URN-prefixed) into *ret.  Anything
 * else: -EINVAL with f = 400 invalidFilter. */
int ids_scim_filter_parse(const char *s, struct ids_scim_filter *ret, struct ids_scim_fault *f);
void ids_scim_filter_clear(struct ids_scim_filter *flt);

/* The Schema resources of /Schemas (RFC 7643 §7: User, Group and the
 * enterprise extension, with their attributes), meta.location under base
 * (the connector's endpoint URL, ending in '/'; borrowed).  New. */
json_t *ids_scim_schemas(const char *base);

/* Applies a PatchOp body (RFC 7644 §3.5.2) to res in place: add, replace
 * and remove (any case: Entra sends "Replace"), with and without path,
 * value filters on multi-valued attributes (members[value eq "id"],
 * emails[type eq "work"].value), URN-prefixed and dotted keys in a
 * no-path value, a member removal carrying [{"value": id}].  res is
 * borrowed and modified; on failure it may be half-patched (the caller
 * discards it).  -EINVAL with f set (invalidSyntax, invalidPath, noTarget,
 * invalidValue, mutability). */
int ids_scim_patch(json_t *res, const json_t *body, struct ids_scim_fault *f);

/* For a PATCH of a group: whether every operation on `members` names the
 * members it touches by id (an add of values, a removal by value or by
 * members[value eq "id"]), and then those ids (*ret new, JSON array text;
 * "[]" when no operation touches the members).  Such a PATCH gives the
 * same result applied to the group holding only those of its members,
 * written back as the difference among them: a member change of a group
 * of 50,000 neither reads nor writes the other members.  false (*ret
 * NULL) when an operation needs the whole list (a replace of members, a
 * removal of all, another filter) or the body is malformed (ids_scim_patch
 * then says why).  body borrowed. */
bool ids_scim_patch_member_scope(const json_t *body, char **ret);

/* Checks and normalizes a pushed User or Group (is_group) for storage:
 * drops id, meta and password (never stored), turns "True"/"False"
 * strings of `active` into booleans, requires userName (a group:
 * displayName).  For a group, the members leave res as a JSON array of ids
 * in *ret_members (new, dumped text; "[]" when none).  *ret_name,
 * *ret_external_id borrowed from res (external id NULL when none).
 * -EINVAL with f = 400 invalidValue/invalidSyntax. */
int ids_scim_normalize(json_t *res, bool is_group, const char **ret_name, const char **ret_external_id,
		       bool *ret_active, char **ret_members, struct ids_scim_fault *f);

/* Whether JSON text s[0..n) nests arrays and objects at most max deep
 * (brackets inside strings do not count).  Checked before parsing: the
 * parser and every recursive jansson call (deep copy, equality) would
 * otherwise recurse as deep as a client likes. */
bool ids_scim_json_depth_ok(const char *s, size_t n, int max);

/* A per-connector request budget: a token bucket refilled at `rate` per
 * second up to `burst`.  Zero-initialize it. */
struct ids_scim_bucket {
	double tokens;
	long long last_usec; /* 0: never used (starts full) */
};
/* Takes one request from b at monotonic time now_usec: 0 when allowed,
 * else the whole seconds (>= 1) after which one is (Retry-After). */
int ids_scim_bucket_take(struct ids_scim_bucket *b, long long now_usec, double rate, double burst);

#endif
