/* ldap.c — the LDAP connector (OpenLDAP, Active Directory, any LDAPv3
 * server) through libldap: the pull, its paged searches and the mapping of
 * entries (ldap_int.h says which file holds what).
 *
 * One pull: connect to the first URI that works (TLS verified, bound), read
 * the users disabled_filter matches into a set, stream the users and then
 * the groups into the snapshot builder, page by page (RFC 2696), and unbind.
 * Any error fails the whole pull: the caller throws the unfinished snapshot
 * away, so a half-read directory never looks like "these users left".
 *
 * Rules this file keeps, and why:
 * - Restartable searches.  A server restarted between two pages no longer
 *   knows our cookie (unwillingToPerform, or the connection is simply gone).
 *   The builder cannot take back what it was given, so a search remembers
 *   the DN and id of every entry it emitted; a restarted search reads again
 *   from page 1 on a new connection and skips what the snapshot already
 *   has.
 *   Entries read before and after the restart are each a real state of the
 *   directory during the run — the same guarantee paging gives anyway, as
 *   the pages of one search are not a snapshot either.  At most
 *   MAX_RESTARTS per pull, then the pull fails (retried by the daemon).
 * - Limits (size/time/admin) fail the pull even with entries received.
 * - Continuation references (AD sends them for the Configuration and DNS
 *   partitions on a search at the domain root) are skipped, not chased.
 * - Nothing is logged here; errors carry the URI, the search and the
 *   server's own message.  The password never appears in any message. */
#include <errno.h>
#include <ldap.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/config.h"
#include "ids/connector.h"
#include "ids/dn.h"
#include "ids/image.h"
#include "ids/util.h"
#include "ldap_int.h"

#define DEFAULT_TIMEOUT 30 /* seconds, when the config says 0 */

static bool bv_eq(const struct berval *bv, const char *s)
{
	size_t n = strlen(s);
	return bv->bv_len == n && strncasecmp(bv->bv_val, s, n) == 0;
}

/* The values of attribute `name` of e (case-insensitive), or NULL. */
static BerVarray entry_vals(const struct entry *e, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < e->n; i++)
		if (bv_eq(&e->a[i].name, name))
			return e->a[i].vals;
	return NULL;
}

/* The first value of `name`, or NULL when there is none. */
const struct berval *ids_ldap_entry_first(const struct entry *e, const char *name)
{
	BerVarray v = entry_vals(e, name);
	return v && v[0].bv_val ? &v[0] : NULL;
}

void ids_ldap_entry_clear(struct entry *e)
{
	for (size_t i = 0; i < e->n; i++)
		ber_memfree(e->a[i].vals);
	e->n = 0;
	e->dn = (struct berval){0};
}

/* Reads msg into p->ent: the DN and every attribute with its values, all
 * pointing into msg (length-aware: a NUL byte inside a value stays
 * visible to the builder). */
int ids_ldap_read_entry(struct pull *p, LDAPMessage *msg)
{
	struct entry *e = &p->ent;
	BerElement *ber = NULL;
	int r = 0;
	ids_ldap_entry_clear(e);
	if (ldap_get_dn_ber(p->ld, msg, &ber, &e->dn) != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: an entry without a DN", p->uri);
		goto out;
	}
	for (;;) {
		struct berval name = {0};
		BerVarray vals = NULL;
		if (ldap_get_attribute_ber(p->ld, msg, ber, &name, &vals) != LDAP_SUCCESS) {
			r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed entry %.*s", p->uri,
					  (int)e->dn.bv_len, e->dn.bv_val);
			goto out;
		}
		if (!name.bv_val)
			break;
		if (e->n == e->cap) {
			size_t cap = e->cap ? e->cap * 2 : 16;
			struct entry_attr *a = realloc(e->a, cap * sizeof(*a));
			if (!a) {
				ber_memfree(vals);
				r = -ENOMEM;
				goto out;
			}
			e->a = a;
			e->cap = cap;
		}
		e->a[e->n++] = (struct entry_attr){name, vals};
	}
out:
	if (ber)
		ber_free(ber, 0);
	return r;
}

/* The entry's external id as text: the value of the id attribute (for
 * AD's binary objectGUID its canonical form, ids_ldap_ad_guid()).
 * .bv_val NULL when the entry has none. */
struct berval ids_ldap_entry_id(struct pull *p, const struct entry *e)
{
	const struct berval *v = ids_ldap_entry_first(e, p->attr[IDS_F_EXTERNAL_ID]);
	if (!v)
		return (struct berval){0};
	if (p->ad && !strcasecmp(p->attr[IDS_F_EXTERNAL_ID], "objectGUID"))
		return ids_ldap_ad_guid(p, v);
	return *v;
}

/* KIND ":" V in p->key: the keys of the seen and disabled sets. */
static int make_key(struct pull *p, char kind, const struct berval *v)
{
	ids_buf_reset(&p->key);
	int r = ids_buf_putc(&p->key, kind);
	if (r >= 0)
		r = ids_buf_putc(&p->key, ':');
	if (r >= 0)
		r = ids_buf_add(&p->key, v->bv_val, v->bv_len);
	return r;
}

/* The key of an entry in the seen set: DN and id together, so that only
 * the same entry read again is skipped.  An entry renamed between two
 * reads, or two entries that share an id on a confused server, still
 * reach the builder, whose duplicate check then does its job. */
static int entry_key(struct pull *p, const struct entry *e, const struct berval *id)
{
	int r = make_key(p, 'e', &e->dn);
	/* an id with a NUL byte cannot be part of a C-string key (its user
	 * is invalid anyway): the DN alone stands in */
	if (r >= 0 && id->bv_val && id->bv_len && !memchr(id->bv_val, '\0', id->bv_len) &&
	    (r = ids_buf_putc(&p->key, '\x01')) >= 0)
		r = ids_buf_add(&p->key, id->bv_val, id->bv_len);
	return r;
}

/* Adds p->key to the seen set: 1 when added, 0 when it was there.  The
 * set keeps a 128-bit fingerprint of each key (two independent 64-bit
 * hashes), not the key: a million entries cost 32 MB rather than 120, and
 * two different entries would need a 2^-128 coincidence to be taken for
 * one another. */
static int seen_add(struct pull *p)
{
	struct seen *s = &p->seen;
	const unsigned char *k = (const unsigned char *)p->key.p;
	uint64_t a = 0x243f6a8885a308d3ULL, b = ids_hash64(k, p->key.len), w;
	size_t n = p->key.len;
	for (; n >= 8; k += 8, n -= 8) {
		memcpy(&w, k, 8);
		a = (a ^ w) * 0x9e3779b97f4a7c15ULL;
		a ^= a >> 31;
	}
	w = 0;
	memcpy(&w, k, n);
	a = (a ^ w ^ p->key.len) * 0xbf58476d1ce4e5b9ULL;
	a ^= a >> 29;
	if (!a && !b)
		a = 1; /* (0, 0) marks an empty slot */
	if ((s->len + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *t = calloc(cap * 2, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			uint64_t x = s->fp[2 * i], y = s->fp[2 * i + 1];
			if (!x && !y)
				continue;
			size_t j = x & (cap - 1);
			while (t[2 * j] || t[2 * j + 1])
				j = (j + 1) & (cap - 1);
			t[2 * j] = x;
			t[2 * j + 1] = y;
		}
		free(s->fp);
		s->fp = t;
		s->cap = cap;
	}
	size_t j = a & (s->cap - 1);
	for (; s->fp[2 * j] || s->fp[2 * j + 1]; j = (j + 1) & (s->cap - 1))
		if (s->fp[2 * j] == a && s->fp[2 * j + 1] == b)
			return 0;
	s->fp[2 * j] = a;
	s->fp[2 * j + 1] = b;
	s->len++;
	return 1;
}

static void seen_free(struct seen *s)
{
	free(s->fp);
	*s = (struct seen){0};
}

/* Adds p->key to set m; 1 when added, 0 when it was there. */
static int set_add(struct pull *p, struct ids_strmap *m)
{
	if (ids_strmap_get(m, p->key.p, NULL))
		return 0;
	char *k = ids_arena_strndup(&p->keys, p->key.p, p->key.len);
	if (!k)
		return -ENOMEM;
	return ids_strmap_put(m, k, 0, NULL);
}

/* Records the entry as emitted by the current search.  0: already
 * emitted before a restart (skip it), 1: new. */
void ids_ldap_seen_reset(struct pull *p)
{
	seen_free(&p->seen);
}

int ids_ldap_first_time(struct pull *p, const struct entry *e, const struct berval *id)
{
	int r = entry_key(p, e, id);
	return r < 0 ? r : seen_add(p);
}

/* disabled_filter matched this entry: remember its id and its DN. */
int ids_ldap_on_disabled(struct pull *p, const struct entry *e)
{
	struct berval id = ids_ldap_entry_id(p, e);
	int r = 0;
	if (id.bv_val && id.bv_len && !memchr(id.bv_val, '\0', id.bv_len) && (r = make_key(p, 'i', &id)) >= 0)
		r = set_add(p, &p->disabled);
	if (r >= 0 && (r = make_key(p, 'd', &e->dn)) >= 0)
		r = set_add(p, &p->disabled);
	return r < 0 ? r : 0;
}

static bool is_disabled(struct pull *p, const struct entry *e, const struct berval *id)
{
	if (!p->lc->disabled_filter)
		return false;
	if (id->bv_val && id->bv_len && !memchr(id->bv_val, '\0', id->bv_len) && make_key(p, 'i', id) >= 0 &&
	    ids_strmap_get(&p->disabled, p->key.p, NULL))
		return true;
	return make_key(p, 'd', &e->dn) >= 0 && ids_strmap_get(&p->disabled, p->key.p, NULL);
}

/* A user attribute that came back ranged ("memberOf;range=0-1499": a
 * user in more groups than MaxValRange, with a rule that reads memberOf).
 * Only group members are read on in ranges; such a user stops the pull
 * rather than being matched against a short list. */
static int refuse_ranged(struct pull *p, const struct entry *e)
{
	for (size_t i = 0; i < e->n; i++) {
		const struct berval *n = &e->a[i].name;
		for (size_t k = 0; k + 7 <= n->bv_len; k++)
			if (!strncasecmp(n->bv_val + k, ";range=", 7))
				return ids_error_set(
				    p->err, IDS_E_UNSUPPORTED,
				    "%s: %.*s has %.*s (more values than the server sends at "
				    "once); ranged retrieval is supported for group members only, so "
				    "the run stops instead of reading it short",
				    p->uri, (int)e->dn.bv_len, e->dn.bv_val, (int)n->bv_len, n->bv_val);
	}
	return 0;
}

/* Where an entry goes: the snapshot of a full read, or the image a
 * change feed updates (ldap_feed.c), under the entry's entryUUID.  The
 * calls are the same, so one mapping serves both reads. */
static int sink_user_begin(struct pull *p)
{
	return p->img ? ids_image_user_begin(p->img, p->img_key) : ids_snapshot_user_begin(p->s);
}

static int sink_user_set(struct pull *p, enum ids_field f, const char *v, size_t n)
{
	return p->img ? ids_image_user_set(p->img, f, v, n) : ids_snapshot_user_set(p->s, f, v, n);
}

static int sink_user_attr(struct pull *p, const char *name, const char *v, size_t n)
{
	return p->img ? ids_image_user_attr(p->img, name, v, n) : ids_snapshot_user_attr(p->s, name, v, n);
}

static int sink_user_disabled(struct pull *p)
{
	return p->img ? ids_image_user_disabled(p->img, true) : ids_snapshot_user_disabled(p->s, true);
}

static int sink_group_begin(struct pull *p)
{
	return p->img ? ids_image_group_begin(p->img, p->img_key) : ids_snapshot_group_begin(p->s);
}

static int sink_group_set(struct pull *p, enum ids_field f, const char *v, size_t n)
{
	return p->img ? ids_image_group_set(p->img, f, v, n) : ids_snapshot_group_set(p->s, f, v, n);
}

static int sink_member(struct pull *p, enum ids_ref kind, const char *v, size_t n)
{
	return p->img ? ids_image_group_member(p->img, kind, v, n)
		      : ids_snapshot_group_member(p->s, kind, v, n);
}

/* Closes the record; on an error, an image's open record is thrown away
 * (the snapshot of a failed read is thrown away whole). */
static int sink_end(struct pull *p, bool user, int r)
{
	if (r < 0) {
		if (p->img)
			ids_image_abort_record(p->img);
		return r;
	}
	if (p->img)
		return ids_image_end(p->img);
	return user ? ids_snapshot_user_end(p->s) : ids_snapshot_group_end(p->s);
}

/* One user entry into the builder. */
int ids_ldap_on_user(struct pull *p, const struct entry *e)
{
	struct berval id = ids_ldap_entry_id(p, e);
	int r = refuse_ranged(p, e);
	if (r < 0 || (r = ids_ldap_first_time(p, e, &id)) <= 0)
		return r;
	if ((r = sink_user_begin(p)) < 0)
		return r;
	if (id.bv_val)
		r = sink_user_set(p, IDS_F_EXTERNAL_ID, id.bv_val, id.bv_len);
	for (int f = IDS_F_USERNAME; r >= 0 && f <= IDS_F_DISPLAY_NAME; f++) {
		const struct berval *v = ids_ldap_entry_first(e, p->attr[f]);
		/* many entries carry cn but no displayName */
		if (!v && f == IDS_F_DISPLAY_NAME)
			v = ids_ldap_entry_first(e, "cn");
		if (v)
			r = sink_user_set(p, f, v->bv_val, v->bv_len);
	}
	if (r >= 0)
		r = sink_user_set(p, IDS_F_DN, e->dn.bv_val, e->dn.bv_len);
	/* every value of every attribute the rules read, under the rule's
	 * spelling of the name */
	for (size_t i = 0; r >= 0 && p->ctx && p->ctx->rule_attrs && i < p->ctx->rule_attrs->n; i++) {
		const char *name = p->ctx->rule_attrs->v[i];
		BerVarray v = entry_vals(e, name);
		for (size_t j = 0; r >= 0 && v && v[j].bv_val; j++)
			r = sink_user_attr(p, name, v[j].bv_val, v[j].bv_len);
	}
	bool disabled = is_disabled(p, e, &id);
	if (r >= 0 && p->ad)
		r = ids_ldap_ad_disabled(p, e, &disabled);
	if (r >= 0 && disabled)
		r = sink_user_disabled(p);
	/* a primary group only matters when groups are read */
	if (r >= 0 && p->ad && p->lc->groups_base)
		r = ids_ldap_ad_note_primary(p, e, &id);
	return sink_end(p, true, r);
}

/* A uniqueMember value is a DN optionally followed by "#'0101'B" (the
 * nameAndOptionalUID syntax): the length of the DN part. */
static size_t strip_uid_suffix(const char *v, size_t n)
{
	if (n < 4 || v[n - 1] != 'B' || v[n - 2] != '\'')
		return n;
	size_t i = n - 2;
	while (i > 0 && (v[i - 1] == '0' || v[i - 1] == '1'))
		i--;
	if (i >= 2 && v[i - 1] == '\'' && v[i - 2] == '#')
		return i - 2;
	return n;
}

/* The member attributes a group search reads, in the order tried. */
static const char *const default_member_attrs[] = {"member", "uniqueMember", "memberUid", NULL};

/* The values v added to the image's group `key` (its members read after
 * the group: AD's ranges), in one edit. */
static int image_members(struct pull *p, const char *key, enum ids_ref kind, bool unique, BerVarray v)
{
	struct ids_strv add = {0};
	int r = 0;
	for (size_t j = 0; r >= 0 && v && v[j].bv_val; j++) {
		size_t n = unique ? strip_uid_suffix(v[j].bv_val, v[j].bv_len) : v[j].bv_len;
		char *z = strndup(v[j].bv_val, n);
		r = z ? ids_strv_push(&add, z) : -ENOMEM;
		free(z);
	}
	if (r >= 0)
		r = ids_image_group_edit(p->img, key, kind, (const char *const *)add.v, add.n, NULL, 0);
	ids_strv_free(&add);
	return r < 0 ? r : 0;
}

/* The values of member attribute mattr into the builder: into the open
 * group (gid NULL) or into the group with external id gid. */
int ids_ldap_emit_members(struct pull *p, const char *gid, const char *mattr, BerVarray v)
{
	/* memberUid names a user by username, the others by DN */
	enum ids_ref kind = !strcasecmp(mattr, "memberUid") ? IDS_REF_USERNAME : IDS_REF_DN;
	bool unique = !strcasecmp(mattr, "uniqueMember");
	int r = 0;
	if (gid && p->img)
		return image_members(p, gid, kind, unique, v);
	for (size_t j = 0; r >= 0 && v && v[j].bv_val; j++) {
		size_t n = unique ? strip_uid_suffix(v[j].bv_val, v[j].bv_len) : v[j].bv_len;
		r = gid ? ids_snapshot_member(p->s, gid, kind, v[j].bv_val, n)
			: sink_member(p, kind, v[j].bv_val, n);
	}
	return r;
}

/* One attribute of a group entry: the values of a member attribute, plain
 * or the first range of them (the rest is read later). */
static int group_attr(struct pull *p, const struct entry *e, const struct berval *id,
		      const char *const *mattrs, const struct entry_attr *a)
{
	for (size_t k = 0; mattrs[k]; k++) {
		unsigned long low, high;
		bool last;
		if (bv_eq(&a->name, mattrs[k]))
			return ids_ldap_emit_members(p, NULL, mattrs[k], a->vals);
		int rr = ids_ldap_ad_parse_range(&a->name, mattrs[k], &low, &high, &last);
		if (rr == 0)
			continue;
		/* the first answer starts at 0: we asked for nothing else */
		if (rr < 0 || low != 0 || (!last && high < low))
			return ids_error_set(p->err, IDS_E_PROTOCOL,
					     "%s: group %.*s came with %.*s, not a range of values from 0",
					     p->uri, (int)e->dn.bv_len, e->dn.bv_val, (int)a->name.bv_len,
					     a->name.bv_val);
		int r = ids_ldap_emit_members(p, NULL, mattrs[k], a->vals);
		if (r < 0 || last)
			return r;
		return ids_ldap_ad_add_ranged(p, e, id, mattrs[k], high + 1);
	}
	return 0;
}

/* One group entry into the builder. */
int ids_ldap_on_group(struct pull *p, const struct entry *e)
{
	struct berval id = ids_ldap_entry_id(p, e);
	const char *one[2] = {p->lc->member_attribute, NULL};
	const char *const *mattrs = p->lc->member_attribute ? one : default_member_attrs;
	int r = ids_ldap_first_time(p, e, &id);
	if (r <= 0)
		return r;
	if ((r = sink_group_begin(p)) < 0)
		return r;
	const struct berval *cn = ids_ldap_entry_first(e, "cn"), *mail = ids_ldap_entry_first(e, "mail");
	if (id.bv_val)
		r = sink_group_set(p, IDS_F_EXTERNAL_ID, id.bv_val, id.bv_len);
	if (r >= 0 && cn)
		r = sink_group_set(p, IDS_F_USERNAME, cn->bv_val, cn->bv_len);
	if (r >= 0 && mail)
		r = sink_group_set(p, IDS_F_EMAIL, mail->bv_val, mail->bv_len);
	if (r >= 0)
		r = sink_group_set(p, IDS_F_DN, e->dn.bv_val, e->dn.bv_len);
	for (size_t i = 0; r >= 0 && i < e->n; i++)
		r = group_attr(p, e, &id, mattrs, &e->a[i]);
	if (r >= 0 && p->ad)
		r = ids_ldap_ad_note_group(p, e, &id);
	return sink_end(p, false, r);
}

/* The error of a search result code other than success. */
static int search_error(struct pull *p, const struct search *sr, int lrc, const char *diag, size_t entries)
{
	const char *limit = lrc == LDAP_SIZELIMIT_EXCEEDED    ? "size limit"
			    : lrc == LDAP_TIMELIMIT_EXCEEDED  ? "time limit"
			    : lrc == LDAP_ADMINLIMIT_EXCEEDED ? "administrative limit"
							      : NULL;
	if (limit)
		return ids_ldap_error(
		    p->err, IDS_E_LIMIT, lrc, diag,
		    "%s: the %s search under %s hit the server's %s after %zu entries, so the "
		    "snapshot would be incomplete (use paging with a page_size below the limit, "
		    "or raise the limit for the service account)",
		    p->uri, sr->what, sr->base, limit, entries);
	if (lrc == LDAP_NO_SUCH_OBJECT)
		return ids_ldap_error(
		    p->err, IDS_E_SERVER, lrc, diag,
		    "%s: the %s base %s does not exist (or the bind identity may not see it)", p->uri,
		    sr->what, sr->base);
	if (lrc == LDAP_REFERRAL)
		return ids_ldap_error(
		    p->err, IDS_E_SERVER, lrc, diag,
		    "%s: the %s base %s is held by another server (referrals are not chased)", p->uri,
		    sr->what, sr->base);
	return ids_ldap_error(p->err, ids_ldap_map_lrc(lrc), lrc, diag, "%s: %s search under %s", p->uri,
			      sr->what, sr->base);
}

/* The error of a search whose server stopped answering. */
static int stalled(struct pull *p, const struct search *sr, size_t entries)
{
	return ids_error_set(p->err, IDS_E_TIMEOUT,
			     "%s: no answer within %d s during the %s search under %s (after %zu entries)",
			     p->uri, p->timeout, sr->what, sr->base, entries);
}

/* Sends the search request for one page (cookie: from the previous page,
 * NULL or empty for the first): its message id in *ret_msgid.  0,
 * PAGE_LOST, or < 0 with p->err set. */
static int send_page(struct pull *p, const struct search *sr, const struct berval *cookie, size_t entries,
		     int *ret_msgid)
{
	LDAPControl *req = NULL, *sctrls[2] = {NULL, NULL};
	char *diag = NULL;
	struct timeval tv = {p->timeout, 0};
	int lrc, r = 0;

	if (!ids_ldap_alive(p))
		return PAGE_LOST;
	/* non-critical: a server without paging answers the plain search
	 * (fine when the result fits its size limit, a limit error if not) */
	struct berval c = cookie && cookie->bv_len ? *cookie : (struct berval){0, ""};
	lrc = ldap_create_page_control(p->ld, (ber_int_t)p->lc->page_size, &c, 0, &req);
	if (lrc != LDAP_SUCCESS)
		return ids_ldap_map_lrc(lrc) == -ENOMEM
			   ? -ENOMEM
			   : ids_error_set(p->err, IDS_E_PROTOCOL, "cannot encode the paging control");
	sctrls[0] = req;
	/* the time limit is the server's share of the timeout; the waits
	 * for the answer are ours (ids_ldap_wait()).  The socket is
	 * non-blocking: a server that stopped reading cannot hold the
	 * request up, libldap keeps what it could not write yet */
	lrc = ldap_search_ext(p->ld, sr->base, LDAP_SCOPE_SUBTREE, sr->filter, sr->attrs, 0, sctrls, NULL,
			      &tv, LDAP_NO_LIMIT, ret_msgid);
	if (lrc == LDAP_SERVER_DOWN || lrc == LDAP_CONNECT_ERROR) {
		r = PAGE_LOST;
	} else if (lrc != LDAP_SUCCESS) {
		diag = ids_ldap_diag(p->ld);
		r = search_error(p, sr, lrc, diag, entries);
	}
	ldap_memfree(diag);
	ldap_control_free(req);
	return r;
}

static void free_msgs(struct pull *p)
{
	for (size_t i = 0; i < p->nmsgs; i++)
		ldap_msgfree(p->msgs[i]);
	p->nmsgs = 0;
	p->held = 0;
}

/* The encoded size of entry message m (what holding it costs). */
static size_t msg_size(struct pull *p, LDAPMessage *m)
{
	BerElement *ber = NULL;
	struct berval dn = {0};
	ber_len_t left = 0;
	if (ldap_get_dn_ber(p->ld, m, &ber, &dn) == LDAP_SUCCESS && ber)
		ber_get_option(ber, LBER_OPT_REMAINING_BYTES, &left);
	if (ber)
		ber_free(ber, 0);
	return (size_t)left + dn.bv_len;
}

/* Decodes the held entries into sr->fn and frees them. */
static int emit_msgs(struct pull *p, const struct search *sr, size_t *entries)
{
	int r = 0;
	for (size_t i = 0; i < p->nmsgs && r >= 0; i++) {
		if ((r = ids_ldap_read_entry(p, p->msgs[i])) < 0 || (r = sr->fn(p, &p->ent)) < 0)
			break;
		ids_ldap_entry_clear(&p->ent);
		ldap_msgfree(p->msgs[i]);
		p->msgs[i] = NULL;
		(*entries)++;
		p->pass_entries++;
		if (++p->in_page >= PROGRESS_EVERY)
			r = ids_ldap_tick(p, "in the middle of a page");
	}
	free_msgs(p);
	return r;
}

/* Collects the messages of page msgid into p->msgs (decoded early when
 * they exceed HOLD_MAX) until its result, which is returned in *ret_res
 * (new: ldap_msgfree).  0, PAGE_LOST, or < 0 with p->err set. */
static int collect_page(struct pull *p, const struct search *sr, int msgid, size_t *entries,
			LDAPMessage **ret_res)
{
	LDAPMessage *msg = NULL;
	for (;;) {
		int type = ids_ldap_wait(p, msgid, LDAP_MSG_ONE, "while waiting for a page", &msg);
		if (type < -1)
			return type;
		/* no abandon: the connection is dropped anyway */
		if (type == 0)
			return stalled(p, sr, *entries);
		if (type < 0) {
			int code = LDAP_OTHER;
			ldap_get_option(p->ld, LDAP_OPT_RESULT_CODE, &code);
			if (code == LDAP_SERVER_DOWN || code == LDAP_CONNECT_ERROR)
				return PAGE_LOST;
			char *diag = ids_ldap_diag(p->ld);
			int r = search_error(p, sr, code, diag, *entries);
			ldap_memfree(diag);
			return r;
		}
		if (type == LDAP_RES_SEARCH_RESULT) {
			*ret_res = msg;
			return 0;
		}
		if (type != LDAP_RES_SEARCH_ENTRY) {
			/* references (LDAP_RES_SEARCH_REFERENCE) are not chased */
			ldap_msgfree(msg);
			continue;
		}
		if (ids_grow(&p->msgs, &p->cap_msgs, p->nmsgs + 1, sizeof(*p->msgs)) < 0) {
			ldap_msgfree(msg);
			return -ENOMEM;
		}
		p->msgs[p->nmsgs++] = msg;
		p->held += msg_size(p, msg);
		int r;
		if (p->held > HOLD_MAX && (r = emit_msgs(p, sr, entries)) < 0)
			return r;
	}
}

/* The paging control of result res: the next cookie in *ret_next (new:
 * ber_bvfree; NULL when the server ignored paging, an empty one on the
 * last page).  0, or < 0 with p->err set. */
static int next_cookie(struct pull *p, const struct search *sr, LDAPControl **rctrls,
		       struct berval **ret_next)
{
	LDAPControl *resp = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL);
	ber_int_t estimate = 0;
	*ret_next = NULL;
	/* no control: the server ignored paging, this was the whole answer */
	if (!resp)
		return 0;
	struct berval *next = ber_memcalloc(1, sizeof(*next));
	if (!next)
		return -ENOMEM;
	if (ldap_parse_pageresponse_control(p->ld, resp, &estimate, next) != LDAP_SUCCESS) {
		ber_bvfree(next);
		return ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed paging control in the %s search",
				     p->uri, sr->what);
	}
	*ret_next = next;
	return 0;
}

/* The result of a page: PAGE_LAST, PAGE_MORE (with the next cookie in
 * *ret_next, new, and the next page already asked for), PAGE_RESTART,
 * or < 0 with p->err set. */
static int page_result(struct pull *p, const struct search *sr, LDAPMessage *res, bool first, size_t entries,
		       struct berval **ret_next)
{
	LDAPControl **rctrls = NULL;
	char *diag = NULL;
	int code = LDAP_OTHER, r;
	*ret_next = NULL;
	if (ldap_parse_result(p->ld, res, &code, NULL, &diag, NULL, &rctrls, 0) != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed %s search result", p->uri, sr->what);
		goto out;
	}
	/* a server that lost our cookie (restarted, or a different replica
	 * behind a load balancer) says unwillingToPerform to it */
	if (code == LDAP_UNWILLING_TO_PERFORM && !first) {
		r = PAGE_RESTART;
		goto out;
	}
	if (code != LDAP_SUCCESS) {
		r = search_error(p, sr, code, diag, entries + p->nmsgs);
		goto out;
	}
	if (p->s)
		p->s->pages++;
	if ((r = next_cookie(p, sr, rctrls, ret_next)) < 0)
		goto out;
	r = PAGE_LAST;
	if (*ret_next && (*ret_next)->bv_len) {
		/* the next page, asked for now, before this one is decoded (a
		 * lost connection shows on the next call) */
		r = send_page(p, sr, *ret_next, entries + p->nmsgs, &p->next_msgid);
		if (r == PAGE_LOST)
			p->next_msgid = -1;
		if (r >= 0)
			r = PAGE_MORE;
	}
out:
	ldap_controls_free(rctrls);
	ldap_memfree(diag);
	return r;
}

/* A cookie handed back unchanged may page forever.  Not always: Samba
 * names its search state with one cookie ("1") for every page of a
 * search.  A loop is a page with that cookie that brought nothing new
 * (`known`: the distinct entries before it) after this pass (since the
 * last restart) received more entries than the search has distinct
 * ones: repeats, for sure. */
static bool cookie_loops(const struct pull *p, const struct berval *cookie, const struct berval *next,
			 size_t known)
{
	size_t distinct = p->seen.len + p->disabled.len;
	return next->bv_len == cookie->bv_len && !memcmp(next->bv_val, cookie->bv_val, next->bv_len) &&
	       distinct == known && p->pass_entries > distinct;
}

/* Reads one page (cookie: from the previous page, empty for the first)
 * and feeds its entries to sr->fn.  The next cookie replaces *cookie.
 * The page's messages are collected first; once its result has come,
 * the next page is asked for, and then the entries are decoded: the
 * server's work on the next page and ours on this one overlap.  Returns
 * enum page_result, or < 0 with p->err set. */
static int page(struct pull *p, const struct search *sr, struct berval **cookie, size_t *entries)
{
	LDAPMessage *res = NULL;
	struct berval *next = NULL;
	int msgid = p->next_msgid, r, e;
	bool first = !*cookie || !(*cookie)->bv_len;
	/* entries this search had not seen before: see cookie_loops() */
	size_t known = p->seen.len + p->disabled.len;

	p->next_msgid = -1;
	free_msgs(p);
	if (msgid < 0 && (r = send_page(p, sr, *cookie, *entries, &msgid)) != 0)
		goto out;
	if ((r = collect_page(p, sr, msgid, entries, &res)) != 0)
		goto out;
	r = page_result(p, sr, res, first, *entries, &next);
	if (r != PAGE_LAST && r != PAGE_MORE)
		goto out;
	if ((e = emit_msgs(p, sr, entries)) < 0) {
		r = e;
		goto out;
	}
	if (r == PAGE_LAST)
		goto out;
	if (!first && cookie_loops(p, *cookie, next, known)) {
		r = ids_error_set(
		    p->err, IDS_E_PROTOCOL,
		    "%s: the server repeated its paging cookie and its entries in the %s search", p->uri,
		    sr->what);
		goto out;
	}
	ber_bvfree(*cookie);
	*cookie = next;
	next = NULL;
out:
	ber_bvfree(next);
	ldap_msgfree(res);
	free_msgs(p);
	ids_ldap_entry_clear(&p->ent);
	return r;
}

/* A whole paged search, restarted from page 1 on a lost cookie or a lost
 * connection (see the top of the file). */
int ids_ldap_run_search(struct pull *p, const struct search *sr)
{
	struct berval *cookie = NULL;
	size_t entries = 0, npages;
	int r;

	seen_free(&p->seen);
	for (;;) {
		ber_bvfree(cookie);
		cookie = NULL;
		p->pass_entries = 0;
		/* (re)started: nothing of this search is on the wire */
		p->next_msgid = -1;
		for (npages = 0;; npages++) {
			if (npages >= MAX_PAGES) {
				r = ids_error_set(p->err, IDS_E_PROTOCOL,
						  "%s: more than %d pages in the %s search", p->uri,
						  MAX_PAGES, sr->what);
				goto out;
			}
			if ((r = ids_ldap_tick(p, "between pages")) < 0)
				goto out;
			r = page(p, sr, &cookie, &entries);
			if (r < 0 || r == PAGE_LAST)
				goto out;
			if (r != PAGE_MORE)
				break;
		}
		const char *why = r == PAGE_LOST ? "the connection was lost"
						 : "the server no longer knew the paging cookie";
		if (++p->restarts > MAX_RESTARTS) {
			r = ids_error_set(p->err, r == PAGE_LOST ? IDS_E_CONNECT : IDS_E_SERVER,
					  "%s: %s during the %s search (page %zu); gave up after %d restarts",
					  p->uri, why, sr->what, npages + 1, MAX_RESTARTS);
			goto out;
		}
		if (r == PAGE_LOST) {
			const char *uri = p->uri;
			ids_ldap_drop(p);
			/* a restarting server needs a moment: 0, 1, 2 s */
			if ((r = ids_ldap_backoff(p, p->restarts - 1)) < 0 || (r = ids_ldap_connect(p)) < 0) {
				ids_error_prefix(
				    p->err, "%s: %s during the %s search (page %zu), reconnecting failed",
				    uri, why, sr->what, npages + 1);
				goto out;
			}
		}
	}
out:
	ber_bvfree(cookie);
	return r < 0 ? r : 0;
}

/* Appends name to the NULL-terminated list attrs (capacity cap, at most
 * one slot used per call) unless it is there already. */
static void attrs_add(const char **attrs, size_t *n, const char *name)
{
	if (!name || !*name)
		return;
	for (size_t i = 0; i < *n; i++)
		if (!strcasecmp(attrs[i], name))
			return;
	attrs[(*n)++] = name;
	attrs[*n] = NULL;
}

/* "(&A B)" of two filters from the configuration. */
char *ids_ldap_and_filter(const char *a, const char *b)
{
	char *f = NULL;
	if (asprintf(&f, "(&%s%s)", a, b) < 0)
		return NULL;
	return f;
}

void ids_ldap_pull_attrs_free(struct pull_attrs *a)
{
	for (size_t i = 0; i < 3; i++)
		free(a->ranged[i]);
	free(a->user);
}

/* The users' attributes: always named, as entryUUID is operational (not
 * in "*"), and nothing else is worth the bytes. */
static int user_attrs(struct pull *p, struct pull_attrs *a)
{
	size_t nrule = p->ctx && p->ctx->rule_attrs ? p->ctx->rule_attrs->n : 0, n = 0;
	if (!(a->user = calloc(nrule + 13, sizeof(*a->user))))
		return -ENOMEM;
	for (int f = IDS_F_EXTERNAL_ID; f <= IDS_F_DISPLAY_NAME; f++)
		attrs_add(a->user, &n, p->attr[f]);
	attrs_add(a->user, &n, "cn");
	/* a targeted read's walk matches uniqueMember values with it */
	if (p->ctx && p->ctx->only_user)
		attrs_add(a->user, &n, "x500UniqueIdentifier");
	if (p->ad)
		attrs_add(a->user, &n, "userAccountControl");
	/* the user's primary group: its RID, and the domain SID in its own */
	if (p->ad && p->lc->groups_base) {
		attrs_add(a->user, &n, "primaryGroupID");
		attrs_add(a->user, &n, "objectSid");
	}
	for (size_t i = 0; i < nrule; i++)
		attrs_add(a->user, &n, p->ctx->rule_attrs->v[i]);
	return 0;
}

/* The groups' attributes, and the disabled search's (the id alone). */
static int group_attrs(struct pull *p, struct pull_attrs *a)
{
	const struct ids_ldap_cfg *lc = p->lc;
	const char *one[2] = {lc->member_attribute, NULL};
	const char *const *mattrs = lc->member_attribute ? one : default_member_attrs;
	size_t n = 0, nd = 0;
	attrs_add(a->group, &n, p->attr[IDS_F_EXTERNAL_ID]);
	attrs_add(a->group, &n, "cn");
	attrs_add(a->group, &n, "mail");
	/* member_range_size asks for the first range explicitly
	 * ("member;range=0-999"); without it the server decides (AD sends
	 * MaxValRange values and says so with a range, Samba sends all) */
	for (size_t i = 0; mattrs[i] && i < 3; i++) {
		if (lc->member_range_size <= 0) {
			attrs_add(a->group, &n, mattrs[i]);
			continue;
		}
		if (asprintf(&a->ranged[i], "%s;range=0-%d", mattrs[i], lc->member_range_size - 1) < 0) {
			a->ranged[i] = NULL;
			return -ENOMEM;
		}
		attrs_add(a->group, &n, a->ranged[i]);
	}
	/* AD: whether a group changed between two ranged reads, and the SID
	 * its users' primaryGroupID refers to */
	if (p->ad) {
		attrs_add(a->group, &n, "uSNChanged");
		attrs_add(a->group, &n, "objectSid");
	}
	attrs_add(a->disabled, &nd, p->attr[IDS_F_EXTERNAL_ID]);
	return 0;
}

int ids_ldap_pull_attrs(struct pull *p, struct pull_attrs *a)
{
	int r = user_attrs(p, a);
	return r < 0 ? r : group_attrs(p, a);
}

/* `sync --user`: ufilter narrowed to the entries whose username, mail or
 * external id equals the value (escaped: it comes from the command line
 * or a NOTIFY).  *ret new, NULL when the pull is not targeted. */
static int user_filter(struct pull *p, const char *ufilter, char **ret)
{
	const char *who = p->ctx ? p->ctx->only_user : NULL;
	*ret = NULL;
	if (!who)
		return 0;
	static const enum ids_field by[] = {IDS_F_USERNAME, IDS_F_EMAIL, IDS_F_EXTERNAL_ID};
	struct ids_buf b = {0};
	int r = ids_buf_printf(&b, "(&%s(|", ufilter);
	for (size_t i = 0; i < sizeof(by) / sizeof(by[0]) && r >= 0; i++) {
		if (!p->attr[by[i]] || (p->ad && by[i] == IDS_F_EXTERNAL_ID))
			continue;
		if ((r = ids_buf_printf(&b, "(%s=", p->attr[by[i]])) >= 0 &&
		    (r = ids_dn_filter_escape(&b, who, strlen(who))) >= 0)
			r = ids_buf_puts(&b, ")");
	}
	if (r >= 0)
		r = ids_buf_puts(&b, "))");
	if (r < 0) {
		ids_buf_free(&b);
		return -ENOMEM;
	}
	*ret = b.p;
	return 0;
}

/* The searches of a pull, in order: disabled users first (into a set
 * the user search consults), the users, then the groups and what AD
 * needs after them (ranged members, primary groups). */
static int do_pull(struct pull *p)
{
	const struct ids_ldap_cfg *lc = p->lc;
	const struct ids_ldap_flavor_defaults *def = ids_config_ldap_defaults(lc->flavor);
	/* the flavor's filters, when a hand-built config left them out */
	const char *ufilter = lc->users_filter ? lc->users_filter : def->users_filter;
	const char *gfilter = lc->groups_filter ? lc->groups_filter : def->groups_filter;
	struct pull_attrs a = {0};
	char *dfilter = NULL, *one = NULL;
	int r;

	if (!lc->users_base) {
		r = ids_error_set(p->err, IDS_E_CONFIG, "no users base configured");
		goto out;
	}
	if ((r = user_filter(p, ufilter, &one)) < 0)
		goto out;
	/* one person: the groups above them only (ldap_target.c); AD's
	 * primary groups need the whole read */
	bool walk = one && !p->ad && p->s && !p->img && lc->groups_base;
	if (one)
		ufilter = one;
	if ((walk && (r = ids_ldap_walk_begin(p)) < 0) || (r = ids_ldap_pull_attrs(p, &a)) < 0 ||
	    (r = ids_ldap_connect(p)) < 0)
		goto out;
	if (lc->disabled_filter) {
		if (!(dfilter = ids_ldap_and_filter(ufilter, lc->disabled_filter))) {
			r = -ENOMEM;
			goto out;
		}
		const struct search sr = {"disabled users", lc->users_base, dfilter, (char **)a.disabled,
					  ids_ldap_on_disabled};
		if ((r = ids_ldap_run_search(p, &sr)) < 0)
			goto out;
	}
	const struct search us = {"users", lc->users_base, (char *)ufilter, (char **)a.user,
				  walk ? ids_ldap_walk_on_user : ids_ldap_on_user};
	if ((r = ids_ldap_run_search(p, &us)) < 0)
		goto out;
	if (walk) {
		r = ids_ldap_walk_groups(p, gfilter);
		goto out;
	}
	if (lc->groups_base) {
		const struct search gs = {"groups", lc->groups_base, (char *)gfilter, (char **)a.group,
					  ids_ldap_on_group};
		if ((r = ids_ldap_run_search(p, &gs)) < 0 || (r = ids_ldap_ad_read_ranged(p)) < 0 ||
		    (r = ids_ldap_ad_add_primaries(p)) < 0)
			goto out;
	}
	r = 0;
out:
	ids_ldap_pull_attrs_free(&a);
	ids_ldap_walk_free(p);
	free(dfilter);
	free(one);
	return r;
}

/* Frees what a session's pull state holds (not the connection). */
static void pull_free(struct pull *p)
{
	ids_ldap_entry_clear(&p->ent);
	free(p->ent.a);
	free_msgs(p);
	free(p->msgs);
	ids_buf_free(&p->key);
	seen_free(&p->seen);
	ids_strmap_free(&p->disabled);
	ids_arena_free(&p->keys);
	free(p->ranged);
	free(p->prim);
	free(p->sid_gid);
	free(p->sid_txt);
	ids_strv_free(&p->read_groups);
	ids_strmap_free(&p->sidmap);
	ids_buf_free(&p->sid);
	ids_arena_free(&p->keep);
}

/* The pull's state for cfg (attribute names, timeout, the connection's
 * callback); ids_ldap_pull_fini() tears it down. */
int ids_ldap_pull_init(struct pull *p, const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		       struct ids_snapshot *s, struct ids_image *img, struct ids_error *err)
{
	*p = (struct pull){.cc = cfg,
			   .lc = cfg ? &cfg->ldap : NULL,
			   .ctx = ctx,
			   .s = s,
			   .img = img,
			   .err = err,
			   .next_msgid = -1};
	if (!cfg)
		return ids_error_set(err, -EINVAL, "LDAP pull without a configuration");
	if (cfg->ldap.page_size <= 0)
		return ids_error_set(err, IDS_E_CONFIG, "page_size must be positive");
	const struct ids_ldap_flavor_defaults *def = ids_config_ldap_defaults(cfg->ldap.flavor);
	p->ad = cfg->ldap.flavor == IDS_LDAP_AD;
	for (int f = 0; f < 6; f++)
		p->attr[f] = cfg->attr[f] ? cfg->attr[f] : def->attr[f];
	p->timeout = cfg->ldap.timeout > 0 ? cfg->ldap.timeout : DEFAULT_TIMEOUT;
	return ids_ldap_conn_init(p, err);
}

void ids_ldap_pull_fini(struct pull *p)
{
	ids_ldap_conn_fini(p);
	pull_free(p);
}

/* SIGPIPE is blocked while libldap writes: a server that closed the
 * connection must give an EPIPE error, not kill the daemon; one raised
 * meanwhile is consumed before the old mask comes back. */
int ids_ldap_session(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		     struct ids_snapshot *s, struct ids_image *img, int (*body)(struct pull *p, void *arg),
		     void *arg, struct ids_error *err)
{
	struct pull p;
	sigset_t pipe_set, old, pending;
	bool was_pending;
	int r;

	if (!cfg || (!s && !img))
		return ids_error_set(err, -EINVAL, "LDAP pull without a configuration or snapshot");
	if ((r = ids_ldap_pull_init(&p, cfg, ctx, s, img, err)) < 0)
		return r;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);

	r = body(&p, arg);
	ids_ldap_conn_fini(&p);

	if (!was_pending) {
		struct timespec zero = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pull_free(&p);
	if (r < 0 && err && !err->msg)
		ids_error_set(err, r, "LDAP pull: %s", ids_strerror(r));
	return r;
}

static int pull_body(struct pull *p, void *arg)
{
	(void)arg;
	return do_pull(p);
}

/* The ops' pull: a whole read into the snapshot. */
static int ldap_pull(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		     struct ids_snapshot *s, struct ids_error *err)
{
	if (!s)
		return ids_error_set(err, -EINVAL, "LDAP pull without a configuration or snapshot");
	return ids_ldap_session(cfg, ctx, s, NULL, pull_body, NULL, err);
}

/* The ops' pull_changes: each flavor's own feed. */
static int ldap_pull_changes(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
			     struct ids_feed_pull *fp, struct ids_error *err)
{
	if (cfg && cfg->ldap.flavor == IDS_LDAP_AD)
		return ids_ldap_dirsync_pull_changes(cfg, ctx, fp, err);
	return ids_ldap_pull_changes(cfg, ctx, fp, err);
}

const struct ids_connector_ops ids_ldap_connector = {
    .type = "ldap",
    .pull = ldap_pull,
    .pull_changes = ldap_pull_changes,
};
