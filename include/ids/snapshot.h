/* snapshot.h — what one connector run read from its directory: users,
 * groups and memberships, built one record at a time by the connector and
 * then finished (references resolved, nested membership made transitive).
 *
 * Lifecycle:  ids_snapshot_new() -> connector calls the builder functions ->
 * ids_snapshot_finish() -> rules/diff read the public arrays ->
 * ids_snapshot_free().  If the connector fails, the caller frees the
 * snapshot unfinished: a partial snapshot is never used.
 *
 * Every string handed to the builder is copied; values are (pointer,
 * length) so that a NUL byte inside a directory value can be detected.  A
 * user whose required value is missing, not UTF-8, contains NUL or is too
 * long is kept but marked `invalid` (with the reason): the diff leaves such
 * a user exactly as it is (semantics.md, safety rule 6). */
#ifndef IDS_SNAPSHOT_H
#define IDS_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/util.h"

/* Platform fields a connector maps directory attributes to. */
enum ids_field {
	IDS_F_EXTERNAL_ID, /* required: the immutable id (entryUUID, objectGUID, ...) */
	IDS_F_USERNAME,	   /* required */
	IDS_F_EMAIL,
	IDS_F_FIRST_NAME,
	IDS_F_LAST_NAME,
	IDS_F_DISPLAY_NAME,
	IDS_F_DN, /* LDAP only: the entry's DN, kept normalized for matching */
	IDS_F__COUNT
};

/* Longest accepted value of a platform field, in bytes; longer = invalid. */
#define IDS_FIELD_MAX 1024

/* How a membership names its member or group. */
enum ids_ref {
	IDS_REF_DN,	  /* an LDAP DN (member, uniqueMember): user or group */
	IDS_REF_ID,	  /* an external id: user or group (cloud connectors) */
	IDS_REF_USERNAME, /* a username (posixGroup memberUid): users only */
};

/* One attribute a rule asked for, with all its values (directory order). */
struct ids_attr {
	const char *name; /* as the rule spells it */
	const char **values;
	size_t nvalues;
};

struct ids_user {
	const char *f[IDS_F__COUNT]; /* fields; NULL when absent */
	bool disabled;
	const char *invalid;	/* non-NULL: why this user is skipped */
	struct ids_attr *attrs; /* attributes rules ask for */
	size_t nattrs;
	/* After finish: every group the user is in, directly or through nested
	 * groups, as sorted unique indices into snapshot->groups. */
	uint32_t *groups;
	size_t ngroups;
};

struct ids_group {
	const char *id;	   /* external id (entryUUID, objectGUID, Graph id, ...) */
	const char *name;  /* cn / displayName / Google name */
	const char *email; /* NULL when none */
	const char *dn;	   /* normalized DN (LDAP), else NULL */
	/* After finish: groups this group is a direct member of. */
	uint32_t *parents;
	size_t nparents;
};

struct ids_snapshot {
	/* After finish, users are sorted by external id (bytewise) and groups
	 * by id, so that everything downstream is deterministic. */
	struct ids_user *users;
	size_t nusers;
	struct ids_group *groups;
	size_t ngroups;
	size_t unresolved_members; /* member references that named nothing we read */
	size_t pages;		   /* connector-reported page count (for logs) */
	struct ids_snapshot_priv *priv;
};

int ids_snapshot_new(struct ids_snapshot **ret);
/* Accepts NULL. */
void ids_snapshot_free(struct ids_snapshot *s);

/* ---- builder: users ----
 * user_begin opens a record, the setters fill it, user_end closes it.
 * Setting a field twice keeps the first value (LDAP multi-valued fields). */
int ids_snapshot_user_begin(struct ids_snapshot *s);
int ids_snapshot_user_set(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n);
/* The same for a string v (v[n] is its NUL) that outlives the snapshot,
 * or at least every use of this user's field: the snapshot points at it
 * instead of copying it when it is stored as given (a DN already
 * normalized).  An image's replay (ids_image_replay) gives its lasting
 * values this way. */
int ids_snapshot_user_set_lasting(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n);
/* Adds one value of a rule attribute `name` (compared case-insensitively). */
int ids_snapshot_user_attr(struct ids_snapshot *s, const char *name, const char *v, size_t n);
int ids_snapshot_user_disabled(struct ids_snapshot *s, bool disabled);
/* Marks the open user invalid with a reason (copied); first reason wins. */
int ids_snapshot_user_invalid(struct ids_snapshot *s, const char *why);
int ids_snapshot_user_end(struct ids_snapshot *s);

/* ---- builder: groups ---- */
int ids_snapshot_group_begin(struct ids_snapshot *s);
/* f: IDS_F_EXTERNAL_ID (the id), IDS_F_USERNAME (the name), IDS_F_EMAIL, IDS_F_DN. */
int ids_snapshot_group_set(struct ids_snapshot *s, enum ids_field f, const char *v, size_t n);
/* A member of the open group. */
int ids_snapshot_group_member(struct ids_snapshot *s, enum ids_ref kind, const char *ref, size_t n);
int ids_snapshot_group_end(struct ids_snapshot *s);

/* A membership given after the fact: member `ref` (of `kind`) is in the
 * group whose external id is group_id (cloud connectors, which list
 * members per group in separate requests). */
int ids_snapshot_member(struct ids_snapshot *s, const char *group_id, enum ids_ref kind, const char *ref,
			size_t n);

/* Closes the build: checks required fields, marks duplicate external ids
 * invalid (all but the first), resolves member references (DNs normalized,
 * unknown ones counted in unresolved_members), sorts, and computes every
 * user's transitive groups (cycles terminate).  Call once. */
int ids_snapshot_finish(struct ids_snapshot *s);

/* Index of the group with external id `id`, or -1.  After finish. */
long ids_snapshot_group_by_id(const struct ids_snapshot *s, const char *id);

/* Frees every user's transitive group list (groups NULL, ngroups 0) once
 * the rules, their only reader, are done: at a million users they are
 * tens of megabytes that the diff would carry along for nothing.  A kept
 * snapshot (ids_snapshot_kept) keeps them: the next run patches them. */
void ids_snapshot_drop_groups(struct ids_snapshot *s);

/* ---- a snapshot kept between runs and patched (issue 14) ----
 *
 * The daemon keeps a connector's finished snapshot and patches it with
 * what the next incremental run changed in the image, instead of
 * replaying the whole image: ids_snapshot_keep() before finish makes
 * finish keep every member reference resolved, each group's members
 * and each user's direct groups.  Not for one-shot commands (it costs
 * memory they would not use). */
int ids_snapshot_keep(struct ids_snapshot *s);
/* Finished with ids_snapshot_keep and patchable (false when two entries
 * share a key — a DN, an id, a username — whose precedence a patch does
 * not redo, or a group was read twice or without an id). */
bool ids_snapshot_kept(const struct ids_snapshot *s);

struct ids_image;
/* Patches the kept snapshot s (ids_snapshot_kept) with every change of
 * img since its last commit (ids_image_each_change), so that s becomes
 * what ids_image_replay of img and a finish give, the users' group lists
 * included: users replaced, added and removed, groups' members and
 * values replaced, the nested closure recomputed where an edge changed.
 * Only the changes a patch can redo exactly: -EAGAIN with *ret_why
 * (static) for the others (a group added or removed, a group's id or DN
 * changed, a user's key taken by another entry, too many records
 * patched since the whole replay).  On any failure s is unusable: free
 * it and replay the image whole.  -ENOMEM. */
int ids_snapshot_patch(struct ids_snapshot *s, const struct ids_image *img, const char **ret_why);

#endif
