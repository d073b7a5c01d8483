/* scim_store.h — the SCIM resources identity providers push (migration
 * 007): written by the SCIM listener one request at a time, read whole by
 * the scim connector's run as its directory.
 *
 * The store sees JSON only as text (jsonb in PostgreSQL): parsing and
 * checking a resource is the SCIM layer's (scim.h), mapping it into a
 * snapshot the connector's.  Every write commits before it returns, unless
 * the caller opened a transaction (ids_scim_store_begin), which then
 * commits or rolls back the whole request.  Every value is a parameter.
 *
 * Errors: -ENOENT (no such resource, or an id that is no UUID), -EEXIST
 * (userName taken: 409 uniqueness), -ESTALE (If-Match version differs:
 * 412), IDS_E_INVALID (a member that names nothing of this connector),
 * IDS_E_DB, IDS_E_DB_LOST (503). */
#ifndef IDS_SCIM_STORE_H
#define IDS_SCIM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/error.h"
#include "ids/store.h"

/* One resource as stored.  Every string new (ids_scim_row_clear). */
struct ids_scim_row {
	char *id;	/* the UUID idsyncd assigned */
	char *kind;	/* "User" | "Group" */
	char *resource; /* JSON object text: what was pushed, minus id, meta, members, password */
	char *members;	/* groups: JSON array text [{"value": id, "type": "User"|"Group"}]; users NULL */
	char *created, *modified; /* RFC 3339, UTC, milliseconds */
	int64_t version;	  /* the ETag is W/"version" */
	bool active;
};
void ids_scim_row_clear(struct ids_scim_row *r); /* accepts a zeroed row */

/* What a create or replace writes.  All borrowed. */
struct ids_scim_write {
	const char *kind;	 /* "User" | "Group" */
	const char *name;	 /* userName, or the group's displayName */
	const char *external_id; /* NULL when none */
	bool active;		 /* users; groups: true */
	const char *resource;	 /* JSON object text */
	const char *members;	 /* groups: JSON array text of member ids; NULL: none (users) */
	/* groups: NULL, members is the whole list; else a JSON array text of
	 * ids, and members says which of those (only) are members — the
	 * others are left as they are, and the row returned holds only those
	 * of its members (a PATCH of ids_scim_patch_member_scope) */
	const char *members_scope;
};

/* Opens and closes a transaction spanning several calls (a PATCH: read
 * for update, apply, write).  rollback accepts a store with none open. */
int ids_scim_store_begin(struct ids_store *st, struct ids_error *err);
int ids_scim_store_commit(struct ids_store *st, struct ids_error *err);
void ids_scim_store_rollback(struct ids_store *st);

/* Creates a resource with a new id.  A user whose userName (any case)
 * exists in this connector deleted or inactive is that same row brought
 * back, rewritten (a client that re-creates someone keeps their id); an
 * active one is -EEXIST.  *ret new. */
int ids_scim_store_create(struct ids_store *st, const char *connector, const struct ids_scim_write *w,
			  struct ids_scim_row *ret, struct ids_error *err);

/* The resource `id` of kind, -ENOENT when absent or a deleted user.
 * for_update: locks the row until the transaction ends.  *ret new. */
int ids_scim_store_get(struct ids_store *st, const char *connector, const char *kind, const char *id,
		       bool for_update, struct ids_scim_row *ret, struct ids_error *err);

/* ids_scim_store_get of group `id`, locked, for a PATCH whose every
 * member operation names its ids (scim.h's ids_scim_patch_member_scope):
 * ret->members holds only those of its members among scope (JSON array
 * text of ids), so that a group of 50,000 is not read whole.  *ret new. */
int ids_scim_store_get_scoped(struct ids_store *st, const char *connector, const char *id, const char *scope,
			      struct ids_scim_row *ret, struct ids_error *err);

/* Replaces resource `id` (PUT, or a PATCH's result) when its version is
 * if_version (0: any), bumping the version.  *ret new. */
int ids_scim_store_replace(struct ids_store *st, const char *connector, const char *id, int64_t if_version,
			   const struct ids_scim_write *w, struct ids_scim_row *ret, struct ids_error *err);

/* DELETE: a user is marked deleted (kept: deleted_in_source), a group
 * removed with its memberships. */
int ids_scim_store_delete(struct ids_store *st, const char *connector, const char *kind, const char *id,
			  int64_t if_version, struct ids_error *err);

/* What a list can be filtered on (scim.h's filter parser yields these). */
enum ids_scim_attr {
	IDS_SCIM_A_ID,
	IDS_SCIM_A_EXTERNAL_ID,
	IDS_SCIM_A_USER_NAME,	 /* case-insensitive, as RFC 7643 defines userName */
	IDS_SCIM_A_DISPLAY_NAME, /* a group's name (case-insensitive), a user's displayName */
	IDS_SCIM_A_EMAIL,	 /* emails[].value, case-insensitive; type: emails[type eq "T"] */
};
struct ids_scim_cond {
	enum ids_scim_attr attr;
	const char *value;
	const char *type; /* IDS_SCIM_A_EMAIL only: the email's type, NULL for any */
};

/* The resources of kind matching every cond (and), ordered by creation,
 * from 1-based start, at most count of them; *ret_total counts all
 * matches.  *ret new (ids_scim_rows_free). */
int ids_scim_store_list(struct ids_store *st, const char *connector, const char *kind,
			const struct ids_scim_cond *conds, size_t nconds, long start, long count,
			struct ids_scim_row **ret, size_t *ret_n, long *ret_total, struct ids_error *err);
void ids_scim_rows_free(struct ids_scim_row *rows, size_t n); /* accepts NULL */

/* The connector's whole pushed state, in one consistent read: every
 * user (deleted ones left out: gone from the source), every group, every
 * membership, each handed to a callback (strings borrowed for the call).
 * A callback's negative return stops the read and is returned. */
struct ids_scim_reader {
	int (*user)(void *ud, const char *id, const char *resource, bool active, int64_t version);
	int (*group)(void *ud, const char *id, const char *name);
	int (*member)(void *ud, const char *group_id, const char *member_id);
	/* Optional (both or neither): a reader that keeps what it made of
	 * earlier reads.  want() is asked for each user's id and version
	 * first; user() then comes only for those it wants, cached() for the
	 * others.  Every version bump (any write) makes a user wanted again;
	 * a deleted user comes in neither. */
	bool (*want)(void *ud, const char *id, int64_t version);
	int (*cached)(void *ud, const char *id);
};
int ids_scim_store_read(struct ids_store *st, const char *connector, const struct ids_scim_reader *rd,
			void *ud, struct ids_error *err);
/* The same for `sync --user` and explain: the users whose SCIM id,
 * userName or one of whose e-mails equals who (case-insensitively), the
 * groups holding them directly or through nested groups, and the
 * memberships among those.  Nobody: no callback at all. */
int ids_scim_store_read_user(struct ids_store *st, const char *connector, const char *who,
			     const struct ids_scim_reader *rd, void *ud, struct ids_error *err);

#endif
