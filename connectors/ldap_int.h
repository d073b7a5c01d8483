/* ldap_int.h — what the three files of the LDAP connector share, and
 * nothing else includes.
 *
 *   ldap.c       the pull: the paged searches (RFC 2696, restartable) and
 *                the mapping of entries to users, groups and memberships
 *   ldap_conn.c  the connection: connect, StartTLS, bind, URI failover,
 *                reconnect, and every wait for the server in slices with
 *                the daemon's progress hook between them
 *   ldap_target.c one person's read: the groups above them only
 *   ldap_ad.c    Active Directory: objectGUID, userAccountControl,
 *                primary groups, ranged retrieval of group members
 *
 * The split follows nss-pam-ldapd's myldap.c / its callers: the files
 * above the connection never see a socket, and the connection knows
 * nothing of entries.  One struct pull carries a pull's state through
 * all three (it is one pull, read top to bottom in ldap.c's do_pull()).
 * Functions named ids_ldap_* are internal to the connector: they are
 * not in include/ and their error conventions are the project's (< 0
 * with p->err set, unless said otherwise). */
#ifndef IDS_LDAP_INT_H
#define IDS_LDAP_INT_H

#include <ldap.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/connector.h"
#include "ids/util.h"

#define MAX_RESTARTS 3	    /* restarted searches (and ranged reads) per pull */
#define MAX_PAGES 1000000   /* pages per search: a paging loop ends here */
#define PROGRESS_EVERY 1000 /* entries between two progress calls in a page */
/* Entries of a page held (to be decoded once the next page is asked for)
 * up to about this many bytes; past it they are decoded as they come: a
 * page of groups with a million members each is not held whole. */
#define HOLD_MAX (4u << 20)

/* One attribute of the entry being read: name and values point into the
 * LDAPMessage and live as long as it does. */
struct entry_attr {
	struct berval name;
	BerVarray vals; /* new (ber_memfree); the array only */
};

struct entry {
	struct berval dn;
	struct entry_attr *a;
	size_t n, cap;
};

struct pull;
typedef int (*entry_fn)(struct pull *p, const struct entry *e);

/* One kind of search of a pull. */
struct search {
	const char *what; /* "users", "groups", "disabled users": for messages */
	const char *base;
	char *filter; /* borrowed */
	char **attrs; /* borrowed, NULL-terminated */
	entry_fn fn;
};

/* A group whose member values came back ranged and unfinished
 * ("member;range=0-1499"): the rest is read after the group search. */
struct ranged {
	const char *dn, *gid; /* p->keep: the group's DN and external id */
	const char *mattr;    /* the member attribute, borrowed (config or static) */
	const char *usn;      /* p->keep: uSNChanged when read, NULL when none */
	unsigned long next;   /* index of the first value not read yet */
};

/* A user whose primaryGroupID names a group (AD): the membership that AD
 * does not list in the group's `member`. */
struct primary {
	const char *uid; /* p->keep: the user's external id */
	uint32_t sid;	 /* index into p->sid_gid: the group's SID */
};

/* A set of 128-bit fingerprints (seen_add()): open addressing, two
 * uint64 per slot, (0, 0) empty. */
struct seen {
	uint64_t *fp;
	size_t cap, len;
};

struct pull {
	const struct ids_connector_cfg *cc;
	const struct ids_ldap_cfg *lc;
	const struct ids_pull_ctx *ctx;
	struct ids_snapshot *s; /* a full read's snapshot; NULL while a feed writes img */
	struct ids_image *img;	/* a change feed's image (ldap_feed.c), else NULL */
	const char *img_key;	/* the entryUUID of the entry being recorded into img */
	struct ids_strv *moved; /* ldap_feed.c: DNs that left and their successors, else NULL */
	struct ids_strv *found; /* ldap_feed.c's refint fix-up: entryUUIDs of the groups it found */
	size_t fixup_reads;	/* ldap_feed.c: groups the fix-up read whole (its debug line) */
	struct ids_strv *sent;	/* ldap_feed.c: entryUUIDs of the groups this read recorded whole */
	/* ldap_feed.c: the users' and the groups' bases normalized, when one
	 * sync search reads both (an entry's kind is told by its DN) */
	const char *feed_bases[2];
	struct ids_error *err;
	int timeout;	     /* seconds */
	const char *attr[6]; /* directory attribute per field, borrowed */
	bool ad;	     /* objectGUID ids are binary: render them */

	LDAP *ld;	 /* NULL between a lost connection and the reconnect */
	const char *uri; /* borrowed from lc->uri: the server ld talks to */
	bool need_tls;	 /* ld must carry TLS (ldaps:// or StartTLS) */
	int restarts;

	struct ids_arena keys;	    /* keys of the two sets below */
	struct ids_strmap disabled; /* "i:ID" / "d:DN" of users disabled_filter matched */
	struct seen seen;	    /* the entries the current search emitted */
	struct entry ent;	    /* the entry being read, reused */
	struct ids_buf key;	    /* scratch for keys */
	char idtext[37];	    /* a rendered objectGUID */
	size_t in_page;		    /* entries since the last progress call */
	size_t pass_entries;	    /* entries since the current search (re)started */
	/* paging, pipelined: the request for the next page goes out before
	 * the entries of this one are decoded, so that the server prepares
	 * page n+1 while we work on page n */
	int next_msgid;	    /* that request, -1 when none is on the wire */
	LDAPMessage **msgs; /* the entries of the page being read */
	size_t nmsgs, cap_msgs;
	size_t held;		   /* their size in bytes, about */
	struct ldap_conncb conncb; /* tells us each new socket; lives as long as p */
	pthread_mutex_t fd_mu;	   /* fd: set on the helper thread, shut down from this one */
	int fd;			   /* the connection's socket, -1 when none */
	bool tcp_up;		   /* the connect callback ran: TCP is connected */
	bool stopped;		   /* the progress hook said stop: p->err says why */

	struct ids_arena keep; /* what outlives its entry: see the two below */
	struct ranged *ranged; /* groups to read on, in the order read */
	size_t nranged, cap_ranged;
	struct primary *prim; /* users with a primary group, AD */
	size_t nprim, cap_prim;
	struct ids_strmap sidmap; /* primary group SID -> index into sid_gid */
	const char **sid_gid;	  /* per SID: the id of the group read with it, or NULL */
	size_t nsid, cap_sid;
	const char **sid_txt; /* per SID: the SID as text (the sidmap's key) */
	size_t cap_sidtxt;
	/* the change feed's incremental reads (ldap_dirsync.c): each group
	 * read, as "KEY SID", to find its primary-group members */
	bool track_groups;
	struct ids_strv read_groups;
	struct ids_buf sid; /* scratch for a SID as text */
	struct walk *walk;  /* ldap_target.c: a targeted read's walk, else NULL */
};

/* What one page request came to. */
enum page_result { PAGE_LAST, PAGE_MORE, PAGE_RESTART, PAGE_LOST };

/* ---------------- ldap_conn.c: the connection ---------------- */

/* Sets up what p's connections need (the socket callback, its lock);
 * ids_ldap_conn_fini() unbinds and tears it down.  < 0 with err set. */
int ids_ldap_conn_init(struct pull *p, struct ids_error *err);
void ids_ldap_conn_fini(struct pull *p);

/* Connects to the first URI that works (TLS verified, bound): p->ld and
 * p->uri on success.  A refused bind, or a stop from the progress hook,
 * ends the failover at once. */
int ids_ldap_connect(struct pull *p);

/* Unbinds and forgets p->ld (NULL: nothing). */
void ids_ldap_drop(struct pull *p);

/* True while p->ld still has the connection we opened, verified and
 * bound: libldap would otherwise open a new one on its own, in clear and
 * anonymously. */
bool ids_ldap_alive(struct pull *p);

/* Waits for the answer to msgid on p->ld (`all` as for ldap_result) for
 * up to p->timeout seconds, in slices of at most a quarter second with
 * the progress hook between them.  > 0: the message type, *ret_msg set
 * (new: ldap_msgfree); 0: nothing within the timeout; -1: a libldap
 * error (LDAP_OPT_RESULT_CODE says which); < -1: the hook's code, the
 * pull must stop (p->err set).  `when` completes "LDAP pull stopped …". */
int ids_ldap_wait(struct pull *p, int msgid, int all, const char *when, LDAPMessage **ret_msg);

/* Calls the daemon's progress hook (watchdog, SIGTERM, run_timeout):
 * 0, or its code with p->err set and p->stopped. */
int ids_ldap_tick(struct pull *p, const char *when);

/* Waits `sec` seconds before a reconnect, calling the hook each second. */
int ids_ldap_backoff(struct pull *p, int sec);

/* Sets e to "CONTEXT: Invalid credentials (49): server text" (the
 * result code's name and number, the server's words when it gave any);
 * returns code. */
int ids_ldap_error(struct ids_error *e, int code, int lrc, const char *srvmsg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* An LDAP result code as a project error code (translated once, here). */
int ids_ldap_map_lrc(int lrc);

/* The server's diagnostic message of the last operation on ld: new
 * (ldap_memfree), NULL when there is none. */
char *ids_ldap_diag(LDAP *ld);

/* ---------------- ldap.c: entries ---------------- */

/* Reads msg into p->ent: the DN and every attribute, all borrowed from
 * msg (valid while it lives). */
int ids_ldap_read_entry(struct pull *p, LDAPMessage *msg);

/* Forgets e's attributes (frees the value arrays, keeps the storage). */
void ids_ldap_entry_clear(struct entry *e);

/* The first value of attribute `name` of e (borrowed), or NULL. */
const struct berval *ids_ldap_entry_first(const struct entry *e, const char *name);

/* Adds the values v of member attribute mattr to the open group (gid
 * NULL) or to the group with external id gid. */
int ids_ldap_emit_members(struct pull *p, const char *gid, const char *mattr, BerVarray v);

/* One user / group entry into the snapshot, or (p->img) into the image
 * under p->img_key. */
int ids_ldap_on_user(struct pull *p, const struct entry *e);
/* Records the entry as emitted by the current search (restarts read
 * again from page 1): 1 when new, 0 when emitted before (skip it). */
int ids_ldap_first_time(struct pull *p, const struct entry *e, const struct berval *id);
/* Forgets what the searches emitted: a new pass of a search (a sync
 * refresh) emits everything again. */
void ids_ldap_seen_reset(struct pull *p);
int ids_ldap_on_group(struct pull *p, const struct entry *e);

/* The searches' attribute lists (the names borrowed from the config, the
 * flavor table or `ranged`). */
struct pull_attrs {
	const char **user; /* new (free) */
	const char *group[12], *disabled[2];
	char *ranged[3]; /* new: "member;range=0-N" when asked for */
};
int ids_ldap_pull_attrs(struct pull *p, struct pull_attrs *a);
void ids_ldap_pull_attrs_free(struct pull_attrs *a);

/* A paged search of every entry of sr into sr->fn, restarted on a lost
 * cookie or connection (ldap.c). */
int ids_ldap_run_search(struct pull *p, const struct search *sr);
/* disabled_filter's entry_fn: remembers the entries it matched. */
int ids_ldap_on_disabled(struct pull *p, const struct entry *e);
/* "(&A B)" of two filters; new, NULL on ENOMEM. */
char *ids_ldap_and_filter(const char *a, const char *b);

/* Runs body(p, arg) for cfg: the pull's state set up (attribute names,
 * timeout, the connection's callback), SIGPIPE held off while libldap
 * writes, everything torn down after.  s or img (one of them) receives
 * the entries.  < 0 with err set. */
int ids_ldap_session(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		     struct ids_snapshot *s, struct ids_image *img, int (*body)(struct pull *p, void *arg),
		     void *arg, struct ids_error *err);

/* The pull's state for cfg without a session around it (attribute
 * names, timeout, the connection's callback), for a connection that
 * outlives one call (ldap_watch.c); ids_ldap_pull_fini() unbinds and
 * frees.  The caller keeps SIGPIPE from killing it (the daemon ignores
 * it).  < 0 with err set (then nothing to fini). */
int ids_ldap_pull_init(struct pull *p, const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		       struct ids_snapshot *s, struct ids_image *img, struct ids_error *err);
void ids_ldap_pull_fini(struct pull *p);

/* ---------------- ldap_feed.c: the change feed ---------------- */

/* The two cookies of a stored syncrepl cursor (users, groups; borrowed
 * from it, len 0: none), whatever settings it was made under; a version 2
 * cursor's third (the containers') is skipped: false when it is no cursor
 * of these versions. */
bool ids_ldap_cursor_cookies(const unsigned char *c, size_t n, struct berval ret[2]);

/* The ops' pull_changes: syncrepl refreshOnly (OpenLDAP). */
int ids_ldap_pull_changes(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
			  struct ids_feed_pull *fp, struct ids_error *err);

/* A fingerprint of every setting a record of the image depends on
 * (bases, filters, attribute map, the rules' attributes): a cursor made
 * under another one is not used. */
uint64_t ids_ldap_fingerprint(const struct pull *p);

/* Whether DN a and DN b[0..nb) name the same entry (normalized; compared
 * raw when either does not parse). */
bool ids_ldap_same_dn(const char *a, const char *b, size_t nb);

/* ---------------- ldap_dirsync.c: AD's change feed ---------------- */

/* pull_changes for flavor active_directory: DirSync. */
int ids_ldap_dirsync_pull_changes(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
				  struct ids_feed_pull *fp, struct ids_error *err);

/* ---------------- ldap_ad.c: Active Directory ---------------- */

/* A 16-byte objectGUID as AD's GUID string, in p->idtext (borrowed until
 * the next call); any other value unchanged. */
struct berval ids_ldap_ad_guid(struct pull *p, const struct berval *v);

/* userAccountControl's ACCOUNTDISABLE bit into *disabled; a value that
 * is not a number marks the open user invalid. */
int ids_ldap_ad_disabled(struct pull *p, const struct entry *e, bool *disabled);

/* The entry's external id as text (AD's objectGUID rendered): borrowed
 * from e or p->idtext; .bv_val NULL when it has none. */
struct berval ids_ldap_entry_id(struct pull *p, const struct entry *e);

/* Remembers user e's primary group (primaryGroupID + domain SID), and a
 * group's SID when some user has it as primary group; the memberships
 * are added by ids_ldap_ad_add_primaries() once every group is read. */
int ids_ldap_ad_note_primary(struct pull *p, const struct entry *e, const struct berval *id);
int ids_ldap_ad_note_group(struct pull *p, const struct entry *e, const struct berval *id);
int ids_ldap_ad_add_primaries(struct pull *p);
/* A change feed's incremental read into the image (ldap_dirsync.c):
 * find_primary_groups looks up, under the groups base with gfilter, the
 * primary groups of the users read that no group read had; then
 * primary_members adds to each group read (track_groups) the users under
 * the users base with ufilter whose primaryGroupID is its RID. */
int ids_ldap_ad_find_primary_groups(struct pull *p, const char *gfilter);
int ids_ldap_ad_primary_members(struct pull *p, const char *ufilter);

/* Whether attribute description `name` is `attr` with a range option
 * ("member;range=1500-2999", "…-*" for the last): 1 with the bounds, 0
 * when it is something else, -1 when its range option is malformed. */
int ids_ldap_ad_parse_range(const struct berval *name, const char *attr, unsigned long *ret_low,
			    unsigned long *ret_high, bool *ret_last);

/* Notes group e, whose values of mattr came back ranged, to be read on
 * from value `next` by ids_ldap_ad_read_ranged() after the group search. */
int ids_ldap_ad_add_ranged(struct pull *p, const struct entry *e, const struct berval *id, const char *mattr,
			   unsigned long next);
int ids_ldap_ad_read_ranged(struct pull *p);

/* ---------------- ldap_target.c: one person's read ---------------- */

/* The walk up the groups of the users a targeted users search finds
 * (ldap_target.c's top comment): begin before the users search, whose
 * callback is ids_ldap_walk_on_user; ids_ldap_walk_groups then reads the
 * groups (filter borrowed); free accepts a pull without a walk. */
int ids_ldap_walk_begin(struct pull *p);
int ids_ldap_walk_on_user(struct pull *p, const struct entry *e);
int ids_ldap_walk_groups(struct pull *p, const char *gfilter);
void ids_ldap_walk_free(struct pull *p);

#endif
