/* snapshot_int.h — the snapshot's private state, shared by the builder
 * (snapshot.c) and the patch of a kept snapshot (snapshot_patch.c).  Not
 * a public header: nothing outside core/ includes it. */
#ifndef IDS_SNAPSHOT_INT_H
#define IDS_SNAPSHOT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/snapshot.h"
#include "ids/util.h"

#define NONE UINT32_MAX
/* A membership's group named by external id (ids_snapshot_member) rather
 * than by the builder index of the open group: the low bits index gids. */
#define BY_GID 0x80000000u
#define MAX_RECORDS 0x7fffffffu
/* A membership names its member by an interned reference (resolved at
 * finish), or directly by the builder index of an entry whose own DN it
 * spelled (see dn_seen): the two top bits of struct member.ref say which. */
#define REF_USER 0x80000000u
#define REF_GROUP 0x40000000u
#define REF_INDEX 0x3fffffffu
#define VPOOL_MAX 65536 /* distinct short attribute values stored once */

struct member {
	uint32_t group; /* builder index of the group, or BY_GID | gid index */
	uint32_t ref;	/* index into priv->refs, or REF_USER / REF_GROUP | builder index */
};

struct ref {
	const char *s; /* tmp arena; DNs already normalized */
	enum ids_ref kind;
};

/* The open user's rule attributes, before they are frozen into the arena. */
struct attr_tmp {
	const char *name;
	const char **vals;
	size_t n, cap;
};

struct ids_snapshot_priv {
	struct ids_arena arena;	 /* what the finished snapshot points to */
	struct ids_arena garena; /* the users' group lists (ids_snapshot_drop_groups) */
	struct ids_arena tmp;	 /* builder-only strings; dropped by finish */
	size_t ucap, gcap;
	bool user_open, group_open;
	bool started;  /* finish was called: no more building, even if it failed */
	bool finished; /* finish succeeded: the public arrays are complete */

	struct attr_tmp *tattrs;
	size_t ntattrs, cap_tattrs;
	/* rule attributes repeat from user to user: their names, and their
	 * short values up to VPOOL_MAX distinct ones, are stored once */
	struct ids_strpool anames, avalues;

	struct member *members;
	size_t nmembers, cap_members;
	struct ref *refs;
	size_t nrefs, cap_refs;
	struct ids_strmap refmap[3]; /* per enum ids_ref: string -> refs index */
	/* member DNs as the directory spelled them -> refs index: the same
	 * member value comes back in group after group, and normalizing it
	 * once is enough */
	struct ids_strmap rawdn;
	struct ids_arena rawtmp; /* rawdn's keys: dropped first, at finish */
	/* the open group's DN members not yet looked up: resolved in
	 * batches (flush_members), NUL-terminated in pend_buf */
	struct ids_buf pend_buf;
	size_t *pend_off;
	size_t npend, cap_pend;
	const char **gids;
	size_t ngids, cap_gids;
	struct ids_strmap gidmap; /* group id -> gids index */
	struct ids_buf scratch;	  /* a NUL-terminated copy of a key to look up */
	/* invalid member references per builder group (counted in
	 * unresolved_members too): what a kept snapshot needs per group */
	uint32_t *binv;
	size_t cap_binv;
	/* ids_snapshot_keep: finish keeps what a patch needs (keep) */
	bool want_keep;
	struct snap_keep *keep;
	/* a patch's one-group builder (snapshot_patch.c): each member goes
	 * straight to its kept reference in pkeep, into pmem */
	struct snap_keep *pkeep;
	uint32_t *pmem;
	size_t npmem, cap_pmem;
};

/* What a finished snapshot keeps to be patched (snapshot_patch.c):
 * every reference a member or an entry's key can make, resolved. */
struct kref {
	const char *s;	 /* normalized DN, id or username; kept's strs or the snapshot's arena */
	uint32_t target; /* NONE, a user index, or nusers + a group index */
	uint32_t count;	 /* member references naming it, in every group */
	enum ids_ref kind;
};

struct u32v {
	uint32_t *v;
	size_t n;
};

struct snap_keep {
	struct kref *refs;
	size_t nrefs, cap_refs;
	struct ids_strmap map[3]; /* per enum ids_ref: string -> refs index */
	struct ids_arena strs;	  /* reference strings the snapshot's arena does not hold */
	struct u32v *gmem;	  /* per group: its member references (malloc) */
	uint32_t *ginvalid;	  /* per group: member references that name nothing, ever */
	struct u32v *udirect;	  /* per user: direct groups, sorted unique (darena) */
	struct ids_arena darena;
	size_t patched; /* records patched since the whole replay (their old values stay) */
	/* the kinds of reference some member uses: only their keys are
	 * claimed (an LDAP directory's users need no id or username index) */
	bool kinds[3];
};
void snap_keep_free(struct snap_keep *k, size_t ngroups);
/* The index of reference (kind, str), made (target NONE, count 0) when
 * new: str copied into k->strs when copy, else borrowed.  -ENOMEM. */
long snap_keep_ref(struct snap_keep *k, enum ids_ref kind, const char *str, bool copy);
/* Resolves reference (kind, str) to target: 1, 0 when another entry has
 * it (str NULL, or a kind no member uses: 1, nothing to do), or
 * -ENOMEM.  str borrowed.  *ret_idx (may be NULL): the reference, or
 * NONE when nothing was claimed. */
int snap_keep_claim(struct snap_keep *k, enum ids_ref kind, const char *str, uint32_t target,
		    uint32_t *ret_idx);

/* The ancestor closure of every group, one per strongly connected
 * component: all groups of a cycle share their ancestors. */
struct closure {
	uint32_t *comp; /* group -> component */
	size_t *off;	/* component c's groups: pool[off[c] .. off[c+1]) */
	uint32_t *pool;
	size_t npool, cap_pool, ncomp;
	uint32_t *mark;	 /* group -> generation that last added it */
	uint32_t *cmark; /* component -> generation that last merged it */
	uint32_t gen;
};

/* Every group's ancestors (s's parents); snap_closure_free after. */
int snap_closure_build(struct closure *c, const struct ids_snapshot *s);
void snap_closure_free(struct closure *c);
/* User closure: the closures of the direct groups direct[0..n), merged
 * and sorted, into the garena as u->groups.  buf and cap: scratch
 * reused from user to user (the caller frees buf). */
int snap_user_closure(struct ids_snapshot *s, struct closure *c, struct ids_user *u, const uint32_t *direct,
		      size_t n, uint32_t **buf, size_t *cap);
/* Sorts and de-duplicates v[0..n) in place; returns the new length. */
size_t snap_sort_unique(uint32_t *v, size_t n);
int snap_set_invalid(struct ids_snapshot *s, struct ids_user *u, const char *field, const char *what);

#endif
