/* ldap_ad.c — what the LDAP connector does for Active Directory only
 * (see ldap_int.h).
 *
 * - objectGUID is rendered as AD's GUID string; userAccountControl's
 *   ACCOUNTDISABLE bit disables a user.
 * - Range retrieval: a group with more members than MaxValRange (1500)
 *   comes back as `member;range=0-1499`.  Such groups are noted and read
 *   on after the group search, range by range from where the server says
 *   its answer ended, until `…-*` (read_rest()).  member_range_size asks
 *   for explicit ranges.  A failed read fails the pull; a group that
 *   changed meanwhile (uSNChanged) is read again from value 0.
 * - primaryGroupID: AD lists no user in the `member` of his primary group
 *   (Domain Users, usually).  The group is found by SID (the user's
 *   domain SID + that RID) among the groups read, and the membership
 *   added; a primary group outside the groups base is ignored, like any
 *   group that is not in the snapshot. */
#include <errno.h>
#include <ldap.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/image.h"
#include "ids/util.h"
#include "ldap_int.h"

/* objectGUID as AD writes it: 16 bytes whose first three groups are
 * little-endian on the wire.  Rendered in p->idtext (valid until the
 * next call); a value of another length is passed through unchanged. */
struct berval ids_ldap_ad_guid(struct pull *p, const struct berval *v)
{
	if (v->bv_len != 16)
		return *v;
	const unsigned char *g = (const unsigned char *)v->bv_val;
	snprintf(p->idtext, sizeof(p->idtext),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", g[3], g[2], g[1],
		 g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
	return (struct berval){36, p->idtext};
}

/* AD: bit 0x2 (ACCOUNTDISABLE) of userAccountControl.  A value that is
 * not a number leaves the state unknown: the user is marked invalid, which
 * makes the sync leave it exactly as it is. */
/* The open user marked invalid, in the snapshot or the image. */
static int user_invalid(struct pull *p, const char *why)
{
	return p->img ? ids_image_user_invalid(p->img, why) : ids_snapshot_user_invalid(p->s, why);
}

int ids_ldap_ad_disabled(struct pull *p, const struct entry *e, bool *disabled)
{
	const struct berval *v = ids_ldap_entry_first(e, "userAccountControl");
	char buf[24];
	if (!v)
		return 0;
	if (v->bv_len == 0 || v->bv_len >= sizeof(buf))
		return user_invalid(p, "userAccountControl is not a number");
	memcpy(buf, v->bv_val, v->bv_len);
	buf[v->bv_len] = 0;
	char *end;
	errno = 0;
	long long uac = strtoll(buf, &end, 10);
	if (errno || *end || end == buf)
		return user_invalid(p, "userAccountControl is not a number");
	if (uac & 0x2)
		*disabled = true;
	return 0;
}

/* Appends to b the SID in v (objectSid: revision 1, a count of
 * sub-authorities, a 48-bit big-endian authority, then the 32-bit
 * little-endian sub-authorities) as "S-1-5-21-…", without its last
 * sub-authority (the RID) when drop_rid: the SID of the domain.
 * -EINVAL when v is not a SID. */
static int sid_text(struct ids_buf *b, const struct berval *v, bool drop_rid)
{
	const unsigned char *d = (const unsigned char *)v->bv_val;
	if (v->bv_len < 8 || d[0] != 1 || d[1] > 15 || v->bv_len != 8 + 4 * (size_t)d[1] ||
	    (drop_rid && d[1] == 0))
		return -EINVAL;
	unsigned long long auth = 0;
	for (int i = 2; i < 8; i++)
		auth = auth << 8 | d[i];
	int r = ids_buf_printf(b, "S-1-%llu", auth);
	size_t n = d[1] - (drop_rid ? 1 : 0);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		const unsigned char *q = d + 8 + 4 * i;
		r = ids_buf_printf(b, "-%lu",
				   (unsigned long)q[0] | (unsigned long)q[1] << 8 |
				       (unsigned long)q[2] << 16 | (unsigned long)q[3] << 24);
	}
	return r < 0 ? r : 0;
}

/* AD leaves a user's membership in its primary group (primaryGroupID,
 * usually 513, Domain Users) out of that group's `member`: the group is
 * the one whose objectSid is the user's domain SID plus that RID.  The
 * user is remembered under that SID; the group search fills in which
 * group has it, and ids_ldap_ad_add_primaries() turns the pairs into memberships.
 * A value that is not a SID or a RID only loses this one membership. */
int ids_ldap_ad_note_primary(struct pull *p, const struct entry *e, const struct berval *id)
{
	const struct berval *pg = ids_ldap_entry_first(e, "primaryGroupID"),
			    *sid = ids_ldap_entry_first(e, "objectSid");
	if (!pg || !sid || !id->bv_val || !id->bv_len || memchr(id->bv_val, '\0', id->bv_len) ||
	    pg->bv_len == 0 || pg->bv_len > 10 || strspn(pg->bv_val, "0123456789") < pg->bv_len)
		return 0;
	ids_buf_reset(&p->sid);
	int r = sid_text(&p->sid, sid, true);
	if (r == -EINVAL)
		return 0;
	if (r < 0 || (r = ids_buf_putc(&p->sid, '-')) < 0 ||
	    (r = ids_buf_add(&p->sid, pg->bv_val, pg->bv_len)) < 0)
		return r;
	uint32_t idx;
	if (!ids_strmap_get(&p->sidmap, p->sid.p, &idx)) {
		char *k = ids_arena_strndup(&p->keep, p->sid.p, p->sid.len);
		if (!k || ids_grow(&p->sid_gid, &p->cap_sid, p->nsid + 1, sizeof(*p->sid_gid)) < 0 ||
		    ids_grow(&p->sid_txt, &p->cap_sidtxt, p->nsid + 1, sizeof(*p->sid_txt)) < 0)
			return -ENOMEM;
		idx = (uint32_t)p->nsid;
		if ((r = ids_strmap_put(&p->sidmap, k, idx, NULL)) < 0)
			return r;
		p->sid_txt[p->nsid] = k;
		p->sid_gid[p->nsid++] = NULL;
	}
	if (ids_grow(&p->prim, &p->cap_prim, p->nprim + 1, sizeof(*p->prim)) < 0)
		return -ENOMEM;
	const char *uid = ids_arena_strndup(&p->keep, id->bv_val, id->bv_len);
	if (!uid)
		return -ENOMEM;
	p->prim[p->nprim++] = (struct primary){uid, idx};
	return 0;
}

/* "KEY SID" of the group being read (its SID in p->sid) to
 * p->read_groups. */
static int track_group(struct pull *p)
{
	char *v = NULL;
	if (asprintf(&v, "%s %s", p->img_key, p->sid.p) < 0)
		return -ENOMEM;
	int r = ids_strv_push(&p->read_groups, v);
	free(v);
	return r < 0 ? -ENOMEM : 0;
}

/* A group read: if some user has it as primary group, remember its id. */
int ids_ldap_ad_note_group(struct pull *p, const struct entry *e, const struct berval *id)
{
	const struct berval *sid = ids_ldap_entry_first(e, "objectSid");
	uint32_t idx;
	if ((!p->nsid && !p->track_groups) || !sid || !id->bv_val || !id->bv_len ||
	    memchr(id->bv_val, '\0', id->bv_len))
		return 0;
	ids_buf_reset(&p->sid);
	int r = sid_text(&p->sid, sid, false);
	if (r < 0)
		return r == -EINVAL ? 0 : r;
	if (p->track_groups && p->img_key && (r = track_group(p)) < 0)
		return r;
	if (!ids_strmap_get(&p->sidmap, p->sid.p, &idx) || p->sid_gid[idx])
		return 0;
	/* an image names its records by key (the objectGUID), not by id */
	if (!(p->sid_gid[idx] = p->img ? ids_arena_strdup(&p->keep, p->img_key)
				       : ids_arena_strndup(&p->keep, id->bv_val, id->bv_len)))
		return -ENOMEM;
	return 0;
}

/* The primary group memberships, once every group is read.  A primary
 * group that is not in the snapshot (Domain Users, outside the groups
 * base) means nothing to the rules and is left out. */
int ids_ldap_ad_add_primaries(struct pull *p)
{
	for (size_t i = 0; i < p->nprim; i++) {
		const char *gid = p->sid_gid[p->prim[i].sid];
		int r = 0;
		if (gid && p->img)
			r = ids_image_group_edit(p->img, gid, IDS_REF_ID, &p->prim[i].uid, 1, NULL, 0);
		else if (gid)
			r = ids_snapshot_member(p->s, gid, IDS_REF_ID, p->prim[i].uid,
						strlen(p->prim[i].uid));
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- primary groups through a change feed (ldap_dirsync.c) ---- */

#define PRIMARY_TERMS 40 /* filter terms per search */

/* The group keyed by e's objectGUID noted as the one of its SID. */
static int found_group(struct pull *p, const struct entry *e)
{
	const struct berval *g = ids_ldap_entry_first(e, "objectGUID");
	char key[37];
	if (!g || g->bv_len != 16)
		return 0;
	struct berval t = ids_ldap_ad_guid(p, g);
	memcpy(key, t.bv_val, 36);
	key[36] = '\0';
	p->img_key = key;
	bool track = p->track_groups;
	p->track_groups = false; /* only looked up: its members are not what changed */
	int r = ids_ldap_ad_note_group(p, e, &(struct berval){36, key});
	p->track_groups = track;
	p->img_key = NULL;
	return r;
}

int ids_ldap_ad_find_primary_groups(struct pull *p, const char *gfilter)
{
	char *attrs[] = {"objectGUID", "objectSid", NULL};
	struct ids_buf f = {0};
	size_t i = 0;
	int r = 0;
	while (r >= 0 && i < p->nsid && p->lc->groups_base) {
		size_t terms = 0;
		ids_buf_reset(&f);
		r = ids_buf_printf(&f, "(&%s(|", gfilter);
		for (; r >= 0 && i < p->nsid && terms < PRIMARY_TERMS; i++)
			if (!p->sid_gid[i] && ++terms)
				r = ids_buf_printf(&f, "(objectSid=%s)", p->sid_txt[i]);
		if (r < 0 || !terms || (r = ids_buf_puts(&f, "))")) < 0)
			break;
		const struct search sr = {"primary groups", p->lc->groups_base, f.p, attrs, found_group};
		r = ids_ldap_run_search(p, &sr);
	}
	ids_buf_free(&f);
	return r < 0 ? r : 0;
}

/* A user whose primaryGroupID is the RID of the group p->img_key. */
static int primary_member(struct pull *p, const struct entry *e)
{
	struct berval id = ids_ldap_entry_id(p, e);
	if (!id.bv_val || !id.bv_len || memchr(id.bv_val, '\0', id.bv_len))
		return 0;
	char *v = strndup(id.bv_val, id.bv_len);
	const char *const one[] = {v};
	int r = v ? ids_image_group_edit(p->img, p->img_key, IDS_REF_ID, one, 1, NULL, 0) : -ENOMEM;
	free(v);
	return r < 0 ? r : 0;
}

int ids_ldap_ad_primary_members(struct pull *p, const char *ufilter)
{
	char *attrs[] = {"objectGUID", (char *)p->attr[IDS_F_EXTERNAL_ID], NULL}, *f = NULL, *key = NULL;
	int r = 0;
	for (size_t i = 0; r >= 0 && i < p->read_groups.n; i++) {
		const char *sp = strchr(p->read_groups.v[i], ' '), *rid = strrchr(p->read_groups.v[i], '-');
		if (!sp || !rid ||
		    !(key = strndup(p->read_groups.v[i], (size_t)(sp - p->read_groups.v[i]))) ||
		    asprintf(&f, "(&%s(primaryGroupID=%s))", ufilter, rid + 1) < 0) {
			f = NULL;
			r = sp && rid ? -ENOMEM : 0;
		} else {
			const struct search sr = {"primary group members", p->lc->users_base, f, attrs,
						  primary_member};
			p->img_key = key;
			r = ids_ldap_run_search(p, &sr);
			p->img_key = NULL;
		}
		free(key);
		free(f);
		key = f = NULL;
	}
	ids_strv_free(&p->read_groups);
	return r < 0 ? r : 0;
}

/* Digits of a range bound: [s, end) holds at least one digit and
 * nothing else; *ret at most RANGE_MAX. */
#define RANGE_MAX 0x7fffffffUL
static bool range_num(const char *s, const char *end, unsigned long *ret)
{
	unsigned long v = 0;
	if (s >= end)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9' || (v = v * 10 + (unsigned long)(*s - '0')) > RANGE_MAX)
			return false;
	}
	*ret = v;
	return true;
}

/* Whether attribute description `name` is `attr` with a range option
 * ("member;range=1500-2999", or "…-*" for the last values): 1 with the
 * bounds (*ret_last for "*"), 0 when it is something else, -1 when its
 * range option is malformed. */
int ids_ldap_ad_parse_range(const struct berval *name, const char *attr, unsigned long *ret_low,
			    unsigned long *ret_high, bool *ret_last)
{
	size_t an = strlen(attr);
	const char *end = name->bv_val + name->bv_len;
	if (name->bv_len <= an || strncasecmp(name->bv_val, attr, an) != 0 || name->bv_val[an] != ';')
		return 0;
	for (const char *o = name->bv_val + an + 1; o < end;) {
		const char *oe = memchr(o, ';', (size_t)(end - o));
		if (!oe)
			oe = end;
		if (oe - o >= 6 && !strncasecmp(o, "range=", 6)) {
			const char *dash = memchr(o + 6, '-', (size_t)(oe - o - 6));
			unsigned long low, high = 0;
			bool last = dash && oe - dash == 2 && dash[1] == '*';
			if (!dash || !range_num(o + 6, dash, &low) ||
			    (!last && !range_num(dash + 1, oe, &high)))
				return -1;
			*ret_low = low;
			*ret_high = high;
			*ret_last = last;
			return 1;
		}
		o = oe + 1;
	}
	return 0;
}

/* Remembers group e for ids_ldap_ad_read_ranged(): its values from `next` on. */
int ids_ldap_ad_add_ranged(struct pull *p, const struct entry *e, const struct berval *id, const char *mattr,
			   unsigned long next)
{
	/* a group without an id is dropped by the snapshot anyway */
	if (!id->bv_val || !id->bv_len || memchr(id->bv_val, '\0', id->bv_len))
		return 0;
	if (ids_grow(&p->ranged, &p->cap_ranged, p->nranged + 1, sizeof(*p->ranged)) < 0)
		return -ENOMEM;
	const struct berval *usn = ids_ldap_entry_first(e, "uSNChanged");
	struct ranged g = {
	    .dn = ids_arena_strndup(&p->keep, e->dn.bv_val, e->dn.bv_len),
	    /* an image's records are named by key: the rest goes there */
	    .gid = p->img ? ids_arena_strdup(&p->keep, p->img_key)
			  : ids_arena_strndup(&p->keep, id->bv_val, id->bv_len),
	    .mattr = mattr,
	    .usn = usn ? ids_arena_strndup(&p->keep, usn->bv_val, usn->bv_len) : NULL,
	    .next = next,
	};
	if (!g.dn || !g.gid || (usn && !g.usn))
		return -ENOMEM;
	p->ranged[p->nranged++] = g;
	return 0;
}

/* ---------------- ranged values ---------------- */

/* Re-reads of one group that changed while its ranges were read. */
#define MAX_RANGE_RETRIES 3

/* The error of a read of dn that did not come back. */
static int range_error(struct pull *p, const struct ranged *g, unsigned long from, int lrc, const char *diag)
{
	if (lrc == LDAP_NO_SUCH_OBJECT)
		return ids_ldap_error(p->err, IDS_E_SERVER, lrc, diag,
				      "%s: group %s was deleted or moved while its members were read "
				      "(from value %lu on); the run fails rather than use a part of them",
				      p->uri, g->dn, from);
	return ids_ldap_error(p->err, ids_ldap_map_lrc(lrc), lrc, diag,
			      "%s: reading the members of group %s from value %lu on failed", p->uri, g->dn,
			      from);
}

/* One base-scope read of group g asking for attrs.  On PAGE_LAST its
 * entry is in p->ent, pointing into *ret_msg (new: ldap_msgfree).
 * PAGE_LOST when the connection was lost, < 0 with p->err set. */
static int read_base(struct pull *p, const struct ranged *g, unsigned long from, char **attrs,
		     LDAPMessage **ret_msg)
{
	LDAPMessage *res = NULL;
	char *diag = NULL;
	struct timeval tv = {p->timeout, 0};
	int msgid = -1, lrc, r;

	ids_ldap_entry_clear(&p->ent);
	if (!ids_ldap_alive(p))
		return PAGE_LOST;
	lrc = ldap_search_ext(p->ld, g->dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL, &tv, 1,
			      &msgid);
	if (lrc == LDAP_SUCCESS) {
		/* the whole answer at once: one entry and the result */
		int type =
		    ids_ldap_wait(p, msgid, LDAP_MSG_ALL, "while reading the members of a group", &res);
		if (type < -1) {
			r = type;
			goto out;
		}
		if (type == 0) {
			r = ids_error_set(p->err, IDS_E_TIMEOUT,
					  "%s: no answer within %d s while reading the members of group %s",
					  p->uri, p->timeout, g->dn);
			goto out;
		}
		if (type < 0)
			ldap_get_option(p->ld, LDAP_OPT_RESULT_CODE, &lrc);
	}
	if (lrc == LDAP_SERVER_DOWN || lrc == LDAP_CONNECT_ERROR) {
		r = PAGE_LOST;
		goto out;
	}
	if (lrc != LDAP_SUCCESS || !res) {
		diag = ids_ldap_diag(p->ld);
		r = range_error(p, g, from, lrc, diag);
		goto out;
	}
	int code = LDAP_OTHER;
	if (ldap_parse_result(p->ld, res, &code, NULL, &diag, NULL, NULL, 0) != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed answer reading group %s", p->uri,
				  g->dn);
		goto out;
	}
	if (code != LDAP_SUCCESS) {
		r = range_error(p, g, from, code, diag);
		goto out;
	}
	LDAPMessage *ent = ldap_first_entry(p->ld, res);
	if (!ent || ldap_next_entry(p->ld, ent)) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL,
				  "%s: a read of group %s did not return that one entry", p->uri, g->dn);
		goto out;
	}
	if ((r = ids_ldap_read_entry(p, ent)) < 0)
		goto out;
	if (p->s)
		p->s->pages++;
	*ret_msg = res;
	res = NULL;
	r = PAGE_LAST;
out:
	ldap_memfree(diag);
	ldap_msgfree(res);
	return r;
}

/* After a lost connection in the middle of a group: a new one, within
 * the pull's restart budget. */
static int reconnect_ranged(struct pull *p, const struct ranged *g)
{
	const char *uri = p->uri;
	int r;
	if (++p->restarts > MAX_RESTARTS)
		return ids_error_set(
		    p->err, IDS_E_CONNECT,
		    "%s: the connection was lost while reading the members of group %s; gave "
		    "up after %d restarts",
		    uri, g->dn, MAX_RESTARTS);
	ids_ldap_drop(p);
	if ((r = ids_ldap_backoff(p, p->restarts - 1)) < 0 || (r = ids_ldap_connect(p)) < 0)
		return ids_error_prefix(p->err,
					"%s: the connection was lost while reading the members of group %s, "
					"reconnecting failed",
					uri, g->dn);
	return 0;
}

/* The attribute to ask for in a ranged read of g from value `next`:
 * "member;range=N-*", or N-(N+size-1) with member_range_size.  New. */
static char *range_want(const struct pull *p, const struct ranged *g, unsigned long next)
{
	char *want = NULL;
	int n = p->lc->member_range_size > 0 ? asprintf(&want, "%s;range=%lu-%lu", g->mattr, next,
							next + (unsigned long)p->lc->member_range_size - 1)
					     : asprintf(&want, "%s;range=%lu-*", g->mattr, next);
	return n < 0 ? NULL : want;
}

/* The values the server says it returned in p->ent: *ret_a (NULL when
 * none from `next` on), the bounds of the range.  < 0 when the range is
 * not the one asked for (Windows may shorten it, never move its start). */
static int returned_range(struct pull *p, const struct ranged *g, unsigned long next,
			  const struct entry_attr **ret_a, unsigned long *ret_high, bool *ret_last)
{
	unsigned long low = 0;
	*ret_a = NULL;
	for (size_t i = 0; i < p->ent.n; i++) {
		int rr = ids_ldap_ad_parse_range(&p->ent.a[i].name, g->mattr, &low, ret_high, ret_last);
		if (rr < 0 || (rr > 0 && (low != next || (!*ret_last && *ret_high < low))))
			return ids_error_set(p->err, IDS_E_PROTOCOL,
					     "%s: asked for the values of group %s from %lu on, the server "
					     "returned %.*s",
					     p->uri, g->dn, next, (int)p->ent.a[i].name.bv_len,
					     p->ent.a[i].name.bv_val);
		if (rr > 0) {
			*ret_a = &p->ent.a[i];
			return 0;
		}
	}
	return 0;
}

/* Reads the values of group g from g->next to the end, range by range,
 * each asked for from where the server's last answer ended (Windows
 * caps every request at MaxValRange, whatever was asked), and adds them
 * to the group in the snapshot.
 *
 * Values are numbered by position, so a group that changes between two
 * reads shifts them: one removal before the current position would hide
 * a member that never left.  AD's uSNChanged (asked for along with the
 * values) says whether the group changed since its first read; when it
 * did, or a read comes back with no values at all, the group is read
 * again from value 0, at most MAX_RANGE_RETRIES times.  The values read
 * before stay: everything added is a member at some moment of the run,
 * the guarantee paging gives too.  Any failed read fails the pull. */
static int read_rest(struct pull *p, struct ranged *g)
{
	LDAPMessage *msg = NULL;
	char *want = NULL;
	const char *usn = g->usn;
	unsigned long next = g->next, high = 0;
	int changes = 0, r;

	for (size_t reads = 0;; reads++) {
		const struct entry_attr *a = NULL;
		bool last = false;
		if (reads >= MAX_PAGES) {
			r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: more than %d ranged reads of group %s",
					  p->uri, MAX_PAGES, g->dn);
			goto out;
		}
		if ((r = ids_ldap_tick(p, "between ranged reads")) < 0)
			goto out;
		free(want);
		ldap_msgfree(msg);
		msg = NULL;
		if (!(want = range_want(p, g, next))) {
			r = -ENOMEM;
			goto out;
		}
		char *attrs[3] = {want, p->ad ? "uSNChanged" : NULL, NULL};
		if ((r = read_base(p, g, next, attrs, &msg)) == PAGE_LOST) {
			/* from the start on a new connection */
			if ((r = reconnect_ranged(p, g)) < 0)
				goto out;
			next = 0;
			usn = NULL;
			continue;
		}
		if (r < 0 || (r = returned_range(p, g, next, &a, &high, &last)) < 0)
			goto out;
		const struct berval *u = ids_ldap_entry_first(&p->ent, "uSNChanged");
		bool changed = usn && u && (u->bv_len != strlen(usn) || memcmp(u->bv_val, usn, u->bv_len));
		/* nothing from `next` on: the group lost members meanwhile (or
		 * has none left, when this was a read from 0) */
		if (!a && next == 0)
			break;
		if (changed || !a) {
			if (++changes > MAX_RANGE_RETRIES) {
				r = ids_error_set(
				    p->err, IDS_E_SERVER,
				    "%s: group %s changed during each of %d reads of its members; "
				    "the run fails rather than use a part of them",
				    p->uri, g->dn, MAX_RANGE_RETRIES + 1);
				goto out;
			}
			next = 0;
			usn = NULL;
			continue;
		}
		/* the first read's uSNChanged is what later reads compare to */
		if (!usn && u && !(usn = ids_arena_strndup(&p->keep, u->bv_val, u->bv_len))) {
			r = -ENOMEM;
			goto out;
		}
		if ((r = ids_ldap_emit_members(p, g->gid, g->mattr, a->vals)) < 0 || last)
			goto out;
		next = high + 1;
	}
	r = 0;
out:
	ids_ldap_entry_clear(&p->ent);
	ldap_msgfree(msg);
	free(want);
	return r < 0 ? r : 0;
}

/* Every group whose members came back ranged, read to the end. */
int ids_ldap_ad_read_ranged(struct pull *p)
{
	for (size_t i = 0; i < p->nranged; i++) {
		int r = read_rest(p, &p->ranged[i]);
		if (r < 0)
			return r;
	}
	return 0;
}
