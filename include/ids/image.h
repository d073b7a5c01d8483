/* image.h — a connector's directory as records that live between runs,
 * so that a change feed (issue 14: syncrepl, DirSync) can be applied to
 * them instead of reading everything again.
 *
 * The rules need the whole picture (nested groups, regexes over group
 * names), while a feed says only what changed.  The image keeps every
 * user and group the connector read, each as the builder calls that made
 * it, keyed by the entry's identity in the feed (entryUUID, objectGUID:
 * what a syncrepl delete names, and never renamed).  A run replays the
 * image into a fresh snapshot (ids_image_replay), which is finished and
 * evaluated as after a full read (the daemon's incremental runs patch
 * the snapshot they kept instead, from the undo log: ids_snapshot_patch).
 * That is correct whatever a group change reaches (its transitive
 * members before and after), and costs memory work only, next to a
 * directory read.
 *
 * Changes are all or nothing, like the run that makes them: every change
 * since the last ids_image_commit() is undone by ids_image_rollback() —
 * a run that fails, is cancelled or is held by a safety guard keeps the
 * old cursor, so its image must stay the old one too.
 *
 * Recording:   user_begin(key) -> user_set/attr/disabled/invalid -> end
 *              group_begin(key) -> group_set/member -> end
 * A record replaces the one with the same key (a modified entry arrives
 * whole, as an add), whatever kind that was.  Strings are copied; values
 * are (pointer, length) as in the snapshot builder, which judges them at
 * replay (invalid values, required fields) exactly as for a full read.
 * Pure: no I/O. */
#ifndef IDS_IMAGE_H
#define IDS_IMAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "ids/snapshot.h"

struct ids_image;

/* Kinds of record, for the calls that act on one kind only. */
enum { IDS_IMAGE_USERS = 1, IDS_IMAGE_GROUPS = 2 };

/* *ret new (ids_image_free). */
int ids_image_new(struct ids_image **ret);
/* Accepts NULL. */
void ids_image_free(struct ids_image *img);

/* Opens the record of user or group `key` (a NUL-terminated, non-empty
 * string; copied).  -EBUSY when a record is open already, -EINVAL for an
 * empty key. */
int ids_image_user_begin(struct ids_image *img, const char *key);
int ids_image_group_begin(struct ids_image *img, const char *key);
/* Builder calls of the open record, as in snapshot.h; -EINVAL when no
 * record of that kind is open. */
int ids_image_user_set(struct ids_image *img, enum ids_field f, const char *v, size_t n);
int ids_image_user_attr(struct ids_image *img, const char *name, const char *v, size_t n);
int ids_image_user_disabled(struct ids_image *img, bool disabled);
int ids_image_user_invalid(struct ids_image *img, const char *why);
int ids_image_group_set(struct ids_image *img, enum ids_field f, const char *v, size_t n);
int ids_image_group_member(struct ids_image *img, enum ids_ref kind, const char *ref, size_t n);
/* Closes the open record: it replaces the one with its key, if any. */
int ids_image_end(struct ids_image *img);
/* Throws the open record away (a read that failed half-way through an
 * entry); nothing changes.  Accepts no open record. */
void ids_image_abort_record(struct ids_image *img);

/* Member edits of a group record that is not open, for feeds that send a
 * group's membership as changes (Graph's members@delta, DirSync's
 * incremental values).  Members compare as (kind, bytes).  _add: 1 when
 * added, 0 when the record names that member already (a replayed change);
 * _remove: 1 when removed, 0 when it was not there.  Both: -ENOENT when
 * `key` is no group record, -EBUSY while a record is open.  The group's
 * other values stay; rollback undoes an edit like any change.  Each edit
 * copies the record once: for many edits of one group, begin_edit. */
int ids_image_group_member_add(struct ids_image *img, const char *key, enum ids_ref kind, const char *ref,
			       size_t n);
int ids_image_group_member_remove(struct ids_image *img, const char *key, enum ids_ref kind, const char *ref,
				  size_t n);

/* Opens group `key`'s record anew, carrying over its members for which
 * keep(kind, ref, n, ud) is true (keep NULL: every member) but none of its
 * other values; a key without a group record opens empty, as
 * ids_image_group_begin does.  The caller then sets the group's values,
 * adds members and calls ids_image_end: a feed that sends a group's values
 * whole and its members as changes.  -EBUSY when a record is open. */
int ids_image_group_begin_edit(struct ids_image *img, const char *key,
			       bool (*keep)(enum ids_ref kind, const char *ref, size_t n, void *ud),
			       void *ud);

/* Removes the record `key` when its kind is in `kinds` (IDS_IMAGE_USERS,
 * IDS_IMAGE_GROUPS below): 1 when there was one, 0 when not.  A feed
 * reads users and groups in searches of their own, and a search says
 * "deleted" of an entry that merely no longer matches it: slapd's groups
 * search reports a modified user that way. */
int ids_image_delete(struct ids_image *img, const char *key, unsigned kinds);

/* A present phase (syncrepl refreshDeletes=false): begin, then every key
 * the server names present (ids_image_present) or sends whole (a record
 * ended meanwhile counts as present); present_end removes every record of
 * the kinds in `kinds` (a connector reads users and groups in searches of
 * their own) not named since begin, and says how many in *ret_removed
 * (may be NULL).  ids_image_present: 1 when the key is known, 0 when not. */
void ids_image_present_begin(struct ids_image *img);
int ids_image_present(struct ids_image *img, const char *key);
int ids_image_present_end(struct ids_image *img, unsigned kinds, size_t *ret_removed);

/* The DN recorded for `key` (its IDS_F_DN value) when its record is of
 * one of `kinds`: *ret new (free), NULL when there is none.  0 or
 * -ENOMEM. */
int ids_image_dn(const struct ids_image *img, const char *key, unsigned kinds, char **ret);
/* The same for any field: the first value of field f of `key`. */
int ids_image_field(const struct ids_image *img, const char *key, unsigned kinds, enum ids_field f,
		    char **ret);

/* Calls fn(key, ud) for every group record with a member given by DN
 * (IDS_REF_DN) that names one of dns[0..n) — compared normalized, as
 * the snapshot resolves them.  fn < 0 stops and is returned. */
int ids_image_groups_naming(const struct ids_image *img, const char *const *dns, size_t n,
			    int (*fn)(const char *key, void *ud), void *ud);
/* The same for members given by `kind`: DNs compared normalized, the
 * others (IDS_REF_ID: AD's primary group members) exactly. */
int ids_image_groups_naming_ref(const struct ids_image *img, enum ids_ref kind, const char *const *refs,
				size_t n, int (*fn)(const char *key, void *ud), void *ud);

/* Edits the member references of kind `kind` of group `key` in place
 * (a change feed that sends only the member values that changed: AD's
 * DirSync with INCREMENTAL_VALUES, a rename that moves a member's DN):
 * removes every reference naming one of del[0..ndel), then appends each
 * of add[0..nadd) the group does not hold yet.  DNs (IDS_REF_DN) are
 * compared normalized, as the snapshot resolves them; other kinds
 * exactly.  Everything else in the record stays.  1 when `key` is a
 * group, 0 when not (nothing changes); undone by ids_image_rollback()
 * like any change.  -EBUSY while a record is open. */
int ids_image_group_edit(struct ids_image *img, const char *key, enum ids_ref kind, const char *const *add,
			 size_t nadd, const char *const *del, size_t ndel);

/* Makes every change since the last commit permanent. */
void ids_image_commit(struct ids_image *img);
/* Undoes every change since the last commit (an open record is thrown
 * away).  Cannot fail: the old records were kept. */
void ids_image_rollback(struct ids_image *img);

/* Defers reading img's stored records in (the image is empty, and
 * stands for them): fn(img, ud) adds them with ids_image_load, once,
 * when the first call that needs records comes (a record begun, a
 * delete, a present key, a lookup, a replay, the counts,
 * ids_image_each of every record).  A feed read that finds no change
 * never calls it: a restarted daemon asks the directory with the stored
 * cursor alone.  fn's failure is returned by that call and every later
 * one: the image is then unusable (free it).  fn NULL: disarmed (fn's ud
 * is gone); the next call that needs records fails with -EINVAL until
 * ids_image_defer arms it again.  Commit, rollback, ids_image_nchanged
 * and ids_image_each(changed_only) do not read records in. */
void ids_image_defer(struct ids_image *img, int (*fn)(struct ids_image *img, void *ud), void *ud);
/* True while the deferred records are not read in. */
bool ids_image_deferred(const struct ids_image *img);
/* Reads the deferred records in now (0 when there are none to read):
 * before the caller's next use of what fn reads from. */
int ids_image_read_in(struct ids_image *img);

/* Records now in the image (a deferred image reads them in first). */
size_t ids_image_nusers(const struct ids_image *img);
size_t ids_image_ngroups(const struct ids_image *img);

/* ---- storage (store/image.c keeps it in connector_image) ----
 *
 * A record is stored as its bytes (kind + an opaque byte string, the
 * builder calls encoded; whatever connector made it), keyed by its key
 * string: the store needs to know nothing about it. */

/* Adds the stored record (key, kind: IDS_IMAGE_USERS or _GROUPS, rec[0..len))
 * to an image being read back: not a change (nothing to roll back or to
 * write).  The bytes are checked (copied): -EINVAL when they are not a
 * record of that kind, -EEXIST for a key already there, -EBUSY while a
 * record is open. */
int ids_image_load(struct ids_image *img, const char *key, int kind, const void *rec, size_t len);

/* Calls fn(key, kind, rec, len, ud) for every record (changed_only
 * false), or for every key changed since the last commit (true) — kind 0
 * (rec NULL) for a key removed since: what the store writes with the
 * run.  A record replaced by identical content is no change.  fn < 0
 * stops and is returned; else 0 or -ENOMEM.  Borrowed pointers, valid
 * during the call only (the record is made in the stored encoding for
 * it: in memory, repeated values are kept once). */
int ids_image_each(const struct ids_image *img, bool changed_only,
		   int (*fn)(const char *key, int kind, const void *rec, size_t len, void *ud), void *ud);

/* Changes since the last commit (0: nothing to write); an upper bound on
 * the keys ids_image_each(changed_only) names. */
size_t ids_image_nchanged(const struct ids_image *img);

/* The bytes the image holds: its records (a value that many records
 * repeat — member references, DNs, attribute names — is kept once, and
 * a record points to it), keys, maps and undo log; the allocator's own
 * overhead (about 8 to 16 bytes an allocation) not counted.  A deferred
 * image holds nothing yet (nothing is read in for this).  For the
 * daemon's memory figures (docs/changes.md, "Memory"). */
size_t ids_image_memory(const struct ids_image *img);

/* What changed since the last commit, for a re-plan of only the users a
 * change can reach: for every key changed, its record as at the last
 * commit and as it is now (either may be none), fn(what, kind, v, n, ud)
 * with what = IDS_IMAGE_USERS: a user record's external id (kind
 * IDS_REF_ID); IDS_IMAGE_GROUPS: a group record's external id;
 * IDS_IMAGE_MEMBERS: one member reference of a group record (kind, the
 * value as recorded).  A group that was and is a group gives only the
 * member references that are in one record and not the other (compared
 * as recorded; a reference one record repeats may be named though both
 * have it: more reached, never fewer), and its id only when its other
 * values changed.  Time about linear in the members; memory a view
 * (16 bytes, no copy) of each old member and of the new members between
 * the ones both records have at their start and end (core/image.c,
 * changed_group).  Values are borrowed, not NUL-terminated.  fn < 0
 * stops and is returned. */
enum { IDS_IMAGE_MEMBERS = 3 };
int ids_image_changed(const struct ids_image *img,
		      int (*fn)(int what, enum ids_ref kind, const char *v, size_t n, void *ud), void *ud);

/* ---- the undo log, for a kept snapshot patched instead of replayed ----
 * (core/snapshot_patch.c) */

/* One key changed since the last commit: its record as at the last
 * commit (was) and now, each a kind (IDS_IMAGE_USERS, _GROUPS; 0: no
 * record) and its bytes as ids_image_each gives them.  Borrowed. */
struct ids_image_change {
	const char *key;
	int was_kind;
	const void *was;
	size_t was_len;
	int now_kind;
	const void *now;
	size_t now_len;
};
/* Calls fn once for every key changed since the last commit (a record
 * changed and changed back is named too, with equal bytes).  fn < 0
 * stops and is returned; else 0 or -ENOMEM. */
int ids_image_each_change(const struct ids_image *img, int (*fn)(const struct ids_image_change *c, void *ud),
			  void *ud);
/* Replays one record's bytes (kind IDS_IMAGE_USERS or _GROUPS; key: the
 * record's, as a change names it) into the unfinished snapshot s, as
 * ids_image_replay does each record. */
int ids_image_record_replay(const char *key, int kind, const void *rec, size_t len, struct ids_snapshot *s);
/* The first value of field f in a record's bytes (key: the record's):
 * *ret new (free), NULL when none (or kind 0).  0 or -ENOMEM / -EINVAL. */
int ids_image_record_field(const char *key, int kind, const void *rec, size_t len, enum ids_field f,
			   char **ret);

/* Feeds every record into s (new and unfinished: the caller finishes it,
 * as after a connector's pull), users first, then groups, each in the
 * order the keys were first recorded.  -EBUSY while a record is open.
 * The users of records unchanged since the last commit point into the
 * image (their external id when it is the key, their DN when it is
 * normalized: ids_snapshot_user_set_lasting): s must not outlive img,
 * and a user whose record a later run changes or deletes must leave s
 * (ids_snapshot_patch) before that run commits. */
int ids_image_replay(const struct ids_image *img, struct ids_snapshot *s);

#endif
