/* ldap_dirsync.c — the LDAP connector's change feed on Active Directory:
 * the DirSync control (issue 14; docs/changes.md, "Active Directory").
 *
 * One read:
 *   1. Who answers: the rootDSE's dnsHostName, defaultNamingContext and
 *      dsServiceName, that NTDS Settings object's invocationId, and the
 *      forest's tombstoneLifetime.  A stored cursor is used only when it
 *      came from this DC in this incarnation (a restore from a backup
 *      gives the DC a new invocationId) and is younger than the tombstone
 *      lifetime (deletions older than that are gone from the DC); else
 *      everything is read again, in this same read, with the reason.
 *   2. DirSync from the cursor's cookie over the whole naming context
 *      (DirSync cannot search below its root), with INCREMENTAL_VALUES,
 *      round after round while the DC says "more data".  Each changed
 *      object, by objectGUID (the image's key: never changes on a rename
 *      or move):
 *        - isDeleted: its record goes (deleted_in_source) and the groups
 *          of the image stop naming its DN;
 *        - only member values changed (member;range=1-1 added, range=0-0
 *          removed) of a group the image holds: the record is edited;
 *        - anything else: read again below.
 *      An object whose DN changed (a rename, a move) is renamed in the
 *      member values of the image's groups too: AD links members by
 *      GUID, so the groups show the new DN without a change of theirs,
 *      and DirSync never sends them.
 *   3. The objects to read again, 40 objectGUIDs a search, with the
 *      configured bases and filters: that is where the bases are scoped
 *      (DirSync sees the whole domain).  Found: the record is replaced,
 *      as a full read makes it; not found (out of scope, filtered out):
 *      the record goes.
 * Without a usable cookie: a DirSync round trip for the cookie (taken
 * before the read: a change meanwhile comes again next time, and reading
 * an object twice is harmless), then a full paged read into the image,
 * whose present sweep removes what the directory no longer has.
 *
 * An account without "Replicating Directory Changes" (and without
 * changes.object_security) is refused by the DC: the feed answers
 * IDS_E_UNSUPPORTED, and the run reads everything from then on (sync.c),
 * with the reason in the log. */
#include <errno.h>
#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ids/dn.h"
#include "ids/image.h"
#include "ldap_dirsync.h"
#include "ldap_int.h"

#define TERMS 40 /* objectGUIDs per search */
#define DEFAULT_TOMBSTONE_DAYS 180
/* What DirSync is asked for: every object that can be a user or group;
 * the configured filters decide on the read that follows. */
#define DIRSYNC_FILTER "(|(objectClass=user)(objectClass=group))"

/* The DC, as read at the start. */
struct dc {
	char *host, *nc, *service, *config_nc, *invocation_id;
	long tombstone_days;
};

struct dsync {
	struct pull *p;
	struct ids_feed_pull *fp;
	struct pull_attrs a;
	const char *users[64], *groups[20]; /* the attribute lists with objectGUID */
	const char *ufilter, *gfilter, *mattr;
	struct dc dc;
	uint32_t flags;
	struct ids_buf reread; /* raw objectGUIDs, 16 bytes each */
	struct ids_strmap queued;
	struct ids_arena keys; /* strings of the two maps */
};

static void dc_free(struct dc *dc)
{
	free(dc->host);
	free(dc->nc);
	free(dc->service);
	free(dc->config_nc);
	free(dc->invocation_id);
}

/* One entry at `dn` (base scope) with attrs into p->ent, pointing into
 * *ret_msg (new: ldap_msgfree).  1 when read, 0 when there is no such
 * entry, < 0 with p->err set. */
static int read_one(struct pull *p, const char *dn, char **attrs, LDAPMessage **ret_msg)
{
	LDAPMessage *res = NULL;
	char *diag = NULL;
	int msgid, code = LDAP_OTHER, r;
	*ret_msg = NULL;
	ids_ldap_entry_clear(&p->ent);
	int lrc = ldap_search_ext(p->ld, dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, NULL, NULL, NULL,
				  1, &msgid);
	if (lrc == LDAP_SUCCESS) {
		int type = ids_ldap_wait(p, msgid, LDAP_MSG_ALL, "while reading the DC's identity", &res);
		if (type < -1)
			return type;
		if (type == 0)
			return ids_error_set(p->err, IDS_E_TIMEOUT, "%s: no answer within %d s reading %s",
					     p->uri, p->timeout, dn[0] ? dn : "the rootDSE");
		if (type < 0)
			ldap_get_option(p->ld, LDAP_OPT_RESULT_CODE, &lrc);
	}
	if (lrc != LDAP_SUCCESS || !res ||
	    ldap_parse_result(p->ld, res, &code, NULL, &diag, NULL, NULL, 0) != LDAP_SUCCESS) {
		r = ids_ldap_error(p->err, ids_ldap_map_lrc(lrc), lrc, diag, "%s: reading %s", p->uri,
				   dn[0] ? dn : "the rootDSE");
		goto out;
	}
	LDAPMessage *ent = ldap_first_entry(p->ld, res);
	if (code == LDAP_NO_SUCH_OBJECT || (code == LDAP_SUCCESS && !ent)) {
		r = 0;
		goto out;
	}
	if (code != LDAP_SUCCESS) {
		r = ids_ldap_error(p->err, ids_ldap_map_lrc(code), code, diag, "%s: reading %s", p->uri,
				   dn[0] ? dn : "the rootDSE");
		goto out;
	}
	if ((r = ids_ldap_read_entry(p, ent)) >= 0) {
		*ret_msg = res;
		res = NULL;
		r = 1;
	}
out:
	ldap_memfree(diag);
	ldap_msgfree(res);
	return r;
}

/* The first value of attribute `name` of p->ent as a new string into
 * *dst; false when it has none (or on ENOMEM, *ret_enomem). */
static bool take(struct pull *p, const char *name, char **dst, bool *ret_enomem)
{
	const struct berval *v = ids_ldap_entry_first(&p->ent, name);
	if (!v || !v->bv_len)
		return false;
	if (!(*dst = strndup(v->bv_val, v->bv_len)))
		*ret_enomem = true;
	return *dst != NULL;
}

/* The rootDSE's names of the DC and its naming contexts. */
static int read_root(struct dsync *d)
{
	struct pull *p = d->p;
	char *attrs[] = {"dnsHostName", "defaultNamingContext", "dsServiceName", "configurationNamingContext",
			 NULL};
	LDAPMessage *msg = NULL;
	bool enomem = false;
	int r = read_one(p, "", attrs, &msg);
	if (r > 0 && (!take(p, "dnsHostName", &d->dc.host, &enomem) ||
		      !take(p, "defaultNamingContext", &d->dc.nc, &enomem) ||
		      !take(p, "dsServiceName", &d->dc.service, &enomem) ||
		      !take(p, "configurationNamingContext", &d->dc.config_nc, &enomem)))
		r = enomem ? -ENOMEM
			   : ids_error_set(p->err, IDS_E_UNSUPPORTED,
					   "%s: the rootDSE names no dnsHostName, defaultNamingContext, "
					   "dsServiceName or configurationNamingContext: not an Active "
					   "Directory domain controller",
					   p->uri);
	else if (r == 0)
		r = ids_error_set(p->err, IDS_E_UNSUPPORTED, "%s: no rootDSE", p->uri);
	ids_ldap_entry_clear(&p->ent);
	ldap_msgfree(msg);
	return r < 0 ? r : 0;
}

/* The DC's invocationId (its NTDS Settings object, as text) and the
 * forest's tombstone lifetime (unset or unreadable: AD's default). */
static int read_identity(struct dsync *d)
{
	struct pull *p = d->p;
	char *iattrs[] = {"invocationId", NULL}, *tattrs[] = {"tombstoneLifetime", NULL}, *ds = NULL;
	LDAPMessage *msg = NULL;
	int r = read_one(p, d->dc.service, iattrs, &msg);
	const struct berval *v = r > 0 ? ids_ldap_entry_first(&p->ent, "invocationId") : NULL;
	if (r >= 0 && (!v || v->bv_len != 16))
		r = ids_error_set(p->err, IDS_E_UNSUPPORTED,
				  "%s: %s has no invocationId the account can read", p->uri, d->dc.service);
	if (r >= 0) {
		struct berval g = ids_ldap_ad_guid(p, v);
		if (!(d->dc.invocation_id = strndup(g.bv_val, g.bv_len)))
			r = -ENOMEM;
	}
	ids_ldap_entry_clear(&p->ent);
	ldap_msgfree(msg);
	d->dc.tombstone_days = DEFAULT_TOMBSTONE_DAYS;
	if (r < 0 || asprintf(&ds, "CN=Directory Service,CN=Windows NT,CN=Services,%s", d->dc.config_nc) < 0)
		return r < 0 ? r : -ENOMEM;
	r = read_one(p, ds, tattrs, &msg);
	v = r > 0 ? ids_ldap_entry_first(&p->ent, "tombstoneLifetime") : NULL;
	if (v && v->bv_len && v->bv_len < 10 && strspn(v->bv_val, "0123456789") == v->bv_len)
		d->dc.tombstone_days = strtol(v->bv_val, NULL, 10);
	ids_ldap_entry_clear(&p->ent);
	ldap_msgfree(msg);
	free(ds);
	return r < 0 ? r : 0;
}

/* ---- the image, changed by DirSync's entries ---- */

static int add_key(const char *key, void *ud)
{
	return ids_strv_push(ud, key) < 0 ? -ENOMEM : 0;
}

/* Every group of the image naming `old` names `now` instead (NULL: no
 * longer names it). */
static int redirect_members(struct dsync *d, const char *old, const char *now)
{
	struct ids_strv keys = {0};
	int r = ids_image_groups_naming(d->p->img, &old, 1, add_key, &keys);
	for (size_t i = 0; r >= 0 && i < keys.n; i++)
		r = ids_image_group_edit(d->p->img, keys.v[i], IDS_REF_DN, &now, now ? 1 : 0, &old, 1);
	ids_strv_free(&keys);
	return r < 0 ? r : 0;
}

/* Whether attribute `name` is one every DirSync entry carries (its
 * identity), so that it says nothing about what changed. */
static bool bookkeeping(const struct berval *name)
{
	static const char *const names[] = {"objectGUID", "instanceType", NULL};
	for (size_t i = 0; names[i]; i++)
		if (name->bv_len == strlen(names[i]) && !strncasecmp(name->bv_val, names[i], name->bv_len))
			return true;
	return false;
}

/* Incremental member values of p->ent into add/del: 1 when they are all
 * that changed (with the bookkeeping attributes), 0 when anything else
 * came too (the entry is read again). */
static int member_values(struct dsync *d, struct ids_strv *add, struct ids_strv *del)
{
	const struct entry *e = &d->p->ent;
	for (size_t i = 0; i < e->n; i++) {
		unsigned long low = 0, high = 0;
		bool last = false;
		if (bookkeeping(&e->a[i].name))
			continue;
		if (ids_ldap_ad_parse_range(&e->a[i].name, d->mattr, &low, &high, &last) != 1 || last ||
		    low != high || low > 1)
			return 0;
		for (size_t j = 0; e->a[i].vals && e->a[i].vals[j].bv_val; j++) {
			char *v = strndup(e->a[i].vals[j].bv_val, e->a[i].vals[j].bv_len);
			int r = v ? ids_strv_push(low ? add : del, v) : -ENOMEM;
			free(v);
			if (r < 0)
				return -ENOMEM;
		}
	}
	return 1;
}

/* A changed group whose member values alone changed: the edit.  1 when
 * done, 0 when the entry must be read again. */
static int try_member_edit(struct dsync *d, const char *key)
{
	struct ids_strv add = {0}, del = {0};
	int r = member_values(d, &add, &del);
	if (r > 0)
		r = ids_image_group_edit(d->p->img, key, IDS_REF_DN, (const char *const *)add.v, add.n,
					 (const char *const *)del.v, del.n);
	ids_strv_free(&add);
	ids_strv_free(&del);
	return r;
}

/* Whether p->ent says isDeleted: TRUE. */
static bool is_deleted(const struct entry *e)
{
	const struct berval *v = ids_ldap_entry_first(e, "isDeleted");
	return v && v->bv_len == 4 && !strncasecmp(v->bv_val, "TRUE", 4);
}

/* Remembers objectGUID g (key its text) for the read that follows, once. */
static int queue(struct dsync *d, const struct berval *g, const char *key)
{
	if (ids_strmap_get(&d->queued, key, NULL))
		return 0;
	const char *k = ids_arena_strdup(&d->keys, key);
	if (!k || ids_strmap_put(&d->queued, k, 0, NULL) < 0 || ids_buf_add(&d->reread, g->bv_val, 16) < 0)
		return -ENOMEM;
	return 0;
}

/* One entry DirSync returned, applied to the image (see the top). */
static int on_change(struct dsync *d, LDAPMessage *msg)
{
	struct pull *p = d->p;
	char key[37], *old = NULL;
	int r = ids_ldap_read_entry(p, msg);
	const struct berval *g = r >= 0 ? ids_ldap_entry_first(&p->ent, "objectGUID") : NULL;
	if (r < 0)
		return r;
	if (!g || g->bv_len != 16)
		return ids_error_set(p->err, IDS_E_PROTOCOL,
				     "%s: DirSync returned %.*s without its objectGUID", p->uri,
				     (int)p->ent.dn.bv_len, p->ent.dn.bv_val);
	struct berval text = ids_ldap_ad_guid(p, g);
	memcpy(key, text.bv_val, 36);
	key[36] = '\0';
	if ((r = ids_image_dn(p->img, key, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS, &old)) < 0)
		return r;
	d->fp->changes++;
	if (is_deleted(&p->ent)) {
		r = ids_image_delete(p->img, key, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS);
		if (r >= 0 && old)
			r = redirect_members(d, old, NULL);
		free(old);
		return r < 0 ? r : 0;
	}
	char *now = strndup(p->ent.dn.bv_val, p->ent.dn.bv_len);
	if (!now)
		r = -ENOMEM;
	else if (old && !ids_ldap_same_dn(old, now, strlen(now)))
		r = redirect_members(d, old, now);
	free(now);
	free(old);
	if (r >= 0 && (r = try_member_edit(d, key)) == 0)
		r = queue(d, g, key);
	return r < 0 ? r : 0;
}

/* ---- the DirSync rounds ---- */

/* What a round came to besides DONE and AGAIN: the DC refused it. */
#define REFUSED 2

struct round {
	struct dsync *d;
	struct ids_dirsync_loop *l;
	bool apply;  /* entries change the image (else only the cookie counts) */
	int refused; /* the result code that refused the search */
	char *diag;  /* its diagnostic, new */
};

/* Sends one DirSync search from l->cookie: *ret_msgid. */
static int send_round(struct round *rd, int *ret_msgid)
{
	struct dsync *d = rd->d;
	struct pull *p = d->p;
	struct berval value = {0};
	char *guid_only[] = {"objectGUID", NULL};
	int r = ids_dirsync_request_encode(d->flags, 0, rd->l->cookie, &value);
	if (r < 0)
		return r;
	/* critical: a server without DirSync must refuse, not answer a plain
	 * search that would read as "everything changed" or "nothing" */
	LDAPControl ctrl = {
	    .ldctl_oid = (char *)IDS_DIRSYNC_OID, .ldctl_value = value, .ldctl_iscritical = 1};
	LDAPControl *sctrls[] = {&ctrl, NULL};
	/* every attribute that changed; only the GUIDs when the round is
	 * just for the cookie */
	int lrc =
	    ldap_search_ext(p->ld, d->dc.nc, LDAP_SCOPE_SUBTREE, DIRSYNC_FILTER, rd->apply ? NULL : guid_only,
			    0, sctrls, NULL, NULL, LDAP_NO_LIMIT, ret_msgid);
	ber_memfree(value.bv_val);
	if (lrc != LDAP_SUCCESS) {
		char *diag = ids_ldap_diag(p->ld);
		r = ids_ldap_error(p->err, ids_ldap_map_lrc(lrc), lrc, diag, "%s: DirSync under %s", p->uri,
				   d->dc.nc);
		ldap_memfree(diag);
	}
	return r;
}

/* The round's result: DONE, AGAIN, REFUSED or < 0. */
static int round_result(struct round *rd, LDAPMessage *msg, size_t entries)
{
	struct pull *p = rd->d->p;
	LDAPControl **rctrls = NULL;
	char *diag = NULL;
	int code = LDAP_OTHER, r;
	if (ldap_parse_result(p->ld, msg, &code, NULL, &diag, NULL, &rctrls, 0) != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed result of DirSync", p->uri);
	} else if (code != LDAP_SUCCESS) {
		rd->refused = code;
		rd->diag = diag ? strdup(diag) : NULL;
		r = REFUSED;
	} else {
		LDAPControl *c = ldap_control_find(IDS_DIRSYNC_OID, rctrls, NULL);
		r = ids_dirsync_loop_step(rd->l, c ? &c->ldctl_value : NULL, entries);
		if (r == IDS_E_LIMIT)
			r = ids_error_set(p->err, IDS_E_PROTOCOL,
					  "%s: DirSync said \"more data\" %u times in a row", p->uri,
					  rd->l->rounds);
		else if (r < 0 && r != -ENOMEM)
			r = ids_error_set(
			    p->err, IDS_E_PROTOCOL,
			    "%s: DirSync's answer after %zu entries has no valid DirSync control "
			    "(or \"more data\" without progress)",
			    p->uri, rd->l->entries);
	}
	ldap_controls_free(rctrls);
	ldap_memfree(diag);
	return r;
}

/* One round: its entries as they come, then its result. */
static int one_round(struct round *rd)
{
	struct pull *p = rd->d->p;
	size_t entries = 0;
	int msgid, r = send_round(rd, &msgid);
	while (r >= 0) {
		LDAPMessage *msg = NULL;
		int type = ids_ldap_wait(p, msgid, LDAP_MSG_ONE, "while waiting for DirSync", &msg);
		if (type < -1)
			return type;
		if (type == 0)
			return ids_error_set(p->err, IDS_E_TIMEOUT,
					     "%s: no answer within %d s from DirSync (after %zu entries)",
					     p->uri, p->timeout, rd->l->entries + entries);
		if (type < 0) {
			int code = LDAP_OTHER;
			ldap_get_option(p->ld, LDAP_OPT_RESULT_CODE, &code);
			return ids_ldap_error(p->err, ids_ldap_map_lrc(code), code, NULL,
					      "%s: DirSync broke off after %zu entries", p->uri,
					      rd->l->entries + entries);
		}
		if (type == LDAP_RES_SEARCH_ENTRY) {
			entries++;
			r = rd->apply ? on_change(rd->d, msg) : 0;
			ids_ldap_entry_clear(&p->ent);
		} else if (type == LDAP_RES_SEARCH_RESULT) {
			r = round_result(rd, msg, entries);
			ldap_msgfree(msg);
			return r;
		}
		ldap_msgfree(msg);
		if (r >= 0 && entries % PROGRESS_EVERY == 0)
			r = ids_ldap_tick(p, "while reading DirSync");
	}
	return r;
}

/* Rounds from `cookie` (NULL: the start) while the DC has more: the last
 * cookie into *ret (new).  0, REFUSED (rd->refused, rd->diag), < 0. */
static int rounds(struct round *rd, const struct berval *cookie, struct berval **ret)
{
	struct ids_dirsync_loop l = {0};
	int r = 0;
	if (cookie && cookie->bv_len) {
		if (!(l.cookie = malloc(sizeof(*l.cookie) + cookie->bv_len)))
			return -ENOMEM;
		l.cookie->bv_val = (char *)(l.cookie + 1);
		l.cookie->bv_len = cookie->bv_len;
		memcpy(l.cookie->bv_val, cookie->bv_val, cookie->bv_len);
	}
	rd->l = &l;
	while ((r = one_round(rd)) == IDS_DIRSYNC_AGAIN &&
	       (r = ids_ldap_tick(rd->d->p, "between DirSync rounds")) >= 0)
		;
	if (r == IDS_DIRSYNC_DONE) {
		*ret = l.cookie;
		l.cookie = NULL;
	}
	ids_dirsync_loop_clear(&l);
	rd->l = NULL;
	return r;
}

/* ---- reading users and groups into the image, keyed by objectGUID ---- */

/* Sets p->img_key to e's objectGUID as text (in buf) and calls fn. */
static int keyed(struct pull *p, const struct entry *e, entry_fn fn)
{
	char buf[37];
	const struct berval *g = ids_ldap_entry_first(e, "objectGUID");
	if (!g || g->bv_len != 16)
		return ids_error_set(p->err, IDS_E_PROTOCOL, "%s: %.*s came without its objectGUID", p->uri,
				     (int)e->dn.bv_len, e->dn.bv_val);
	struct berval t = ids_ldap_ad_guid(p, g);
	memcpy(buf, t.bv_val, 36);
	buf[36] = '\0';
	p->img_key = buf;
	int r = fn(p, e);
	p->img_key = NULL;
	return r;
}

static int img_user(struct pull *p, const struct entry *e)
{
	return keyed(p, e, ids_ldap_on_user);
}

static int img_group(struct pull *p, const struct entry *e)
{
	return keyed(p, e, ids_ldap_on_group);
}

/* The searches of a read, the users' and groups' with `terms` (an OR of
 * objectGUIDs; NULL: everything): disabled users, users, groups, then
 * what AD needs after the groups (ranged members, primary groups). */
static int read_some(struct dsync *d, const char *terms)
{
	struct pull *p = d->p;
	const struct ids_ldap_cfg *lc = p->lc;
	char *uf = NULL, *df = NULL, *gf = NULL;
	int r = -ENOMEM;
	if (terms ? !(uf = ids_ldap_and_filter(d->ufilter, terms)) ||
			!(gf = ids_ldap_and_filter(d->gfilter, terms))
		  : !(uf = strdup(d->ufilter)) || !(gf = strdup(d->gfilter)))
		goto out;
	if (lc->disabled_filter) {
		if (!(df = ids_ldap_and_filter(uf, lc->disabled_filter)))
			goto out;
		const struct search ds = {"disabled users", lc->users_base, df, (char **)d->a.disabled,
					  ids_ldap_on_disabled};
		if ((r = ids_ldap_run_search(p, &ds)) < 0)
			goto out;
	}
	const struct search us = {"users", lc->users_base, uf, (char **)d->users, img_user};
	if ((r = ids_ldap_run_search(p, &us)) < 0)
		goto out;
	if (lc->groups_base) {
		const struct search gs = {"groups", lc->groups_base, gf, (char **)d->groups, img_group};
		/* primary groups: after the last batch (reread()) */
		if ((r = ids_ldap_run_search(p, &gs)) < 0 || (r = ids_ldap_ad_read_ranged(p)) < 0 ||
		    (!terms && (r = ids_ldap_ad_add_primaries(p)) < 0))
			goto out;
		p->nranged = 0; /* read: the next batch has its own */
	}
	r = 0;
out:
	free(uf);
	free(df);
	free(gf);
	return r;
}

/* Everything, as a full read: what it does not find leaves the image. */
static int full_read(struct dsync *d)
{
	size_t gone = 0;
	ids_image_present_begin(d->p->img);
	int r = read_some(d, NULL);
	if (r >= 0 && (r = ids_image_present_end(d->p->img, IDS_IMAGE_USERS | IDS_IMAGE_GROUPS, &gone)) >= 0)
		d->fp->changes += ids_image_nusers(d->p->img) + ids_image_ngroups(d->p->img) + gone;
	return r;
}

/* The users among `keys`: no group of the image has them as primary
 * member any more (the read puts back what is still true). */
static int drop_primaries(struct dsync *d, const struct ids_strv *keys)
{
	struct ids_strv ids = {0}, groups = {0};
	int r = 0;
	for (size_t i = 0; r >= 0 && i < keys->n; i++) {
		char *id = NULL;
		if ((r = ids_image_field(d->p->img, keys->v[i], IDS_IMAGE_USERS, IDS_F_EXTERNAL_ID, &id)) >=
			0 &&
		    id)
			r = ids_strv_push(&ids, id) < 0 ? -ENOMEM : 0;
		free(id);
	}
	if (r >= 0 && ids.n)
		r = ids_image_groups_naming_ref(d->p->img, IDS_REF_ID, (const char *const *)ids.v, ids.n,
						add_key, &groups);
	for (size_t i = 0; r >= 0 && i < groups.n; i++)
		r = ids_image_group_edit(d->p->img, groups.v[i], IDS_REF_ID, NULL, 0,
					 (const char *const *)ids.v, ids.n);
	ids_strv_free(&ids);
	ids_strv_free(&groups);
	return r < 0 ? r : 0;
}

/* Their records go: what the read does not find (moved out of the
 * bases, no longer matching a filter) stays gone. */
static int drop_queued(struct dsync *d)
{
	struct ids_strv keys = {0};
	int r = 0;
	for (size_t i = 0; r >= 0 && i < d->reread.len / 16; i++) {
		struct berval t = ids_ldap_ad_guid(d->p, &(struct berval){16, d->reread.p + 16 * i});
		char *k = strndup(t.bv_val, t.bv_len);
		r = k && ids_strv_push(&keys, k) >= 0 ? 0 : -ENOMEM;
		free(k);
	}
	if (r >= 0 && d->p->lc->groups_base)
		r = drop_primaries(d, &keys);
	for (size_t i = 0; r >= 0 && i < keys.n; i++)
		r = ids_image_delete(d->p->img, keys.v[i], IDS_IMAGE_USERS | IDS_IMAGE_GROUPS);
	ids_strv_free(&keys);
	return r < 0 ? r : 0;
}

/* The objects DirSync named, read again TERMS at a time, whole; then
 * their primary groups: the groups of the users read, and the users of
 * the groups read (AD lists neither in `member`). */
static int reread(struct dsync *d)
{
	size_t n = d->reread.len / 16;
	struct ids_buf f = {0};
	int r = drop_queued(d);
	d->p->track_groups = true;
	for (size_t from = 0; r >= 0 && from < n; from += TERMS) {
		ids_buf_reset(&f);
		r = ids_buf_puts(&f, "(|");
		for (size_t i = from; r >= 0 && i < n && i < from + TERMS; i++)
			r = ids_dirsync_guid_term(&f, &(struct berval){16, d->reread.p + 16 * i});
		if (r >= 0 && (r = ids_buf_putc(&f, ')')) >= 0)
			r = read_some(d, f.p);
	}
	d->p->track_groups = false;
	if (r >= 0 && n && d->p->lc->groups_base &&
	    (r = ids_ldap_ad_find_primary_groups(d->p, d->gfilter)) >= 0 &&
	    (r = ids_ldap_ad_primary_members(d->p, d->ufilter)) >= 0)
		r = ids_ldap_ad_add_primaries(d->p);
	ids_buf_free(&f);
	return r < 0 ? r : 0;
}

/* ---- one read ---- */

/* Why the stored cursor c (rc: how its decoding went) cannot be used,
 * into *ret_why (new), NULL when it can.  0 or -ENOMEM. */
static int cursor_check(struct dsync *d, const struct ids_dirsync_cursor *c, int rc, char **ret_why)
{
	char *why = NULL;
	int64_t age = (int64_t)time(NULL) - c->issued;
	int n = 0;
	if (rc < 0)
		n = asprintf(&why, "the stored cursor is not a DirSync cursor of this version");
	else if (c->fingerprint != ids_ldap_fingerprint(d->p))
		n = asprintf(&why,
			     "the connector's bases, filters or attributes changed since the stored cursor");
	else if (strcasecmp(c->server, d->dc.host))
		n = asprintf(&why, "the cookie was issued by domain controller %s, this is %s", c->server,
			     d->dc.host);
	else if (strcasecmp(c->invocation_id, d->dc.invocation_id))
		n = asprintf(
		    &why,
		    "domain controller %s has a new invocationId (%s, the cookie's was %s): restored "
		    "from a backup",
		    d->dc.host, d->dc.invocation_id, c->invocation_id);
	else if (age > (int64_t)d->dc.tombstone_days * 86400)
		n = asprintf(&why,
			     "the cookie is %lld days old, past the tombstone lifetime (%ld days): deletions "
			     "since may be gone",
			     (long long)(age / 86400), d->dc.tombstone_days);
	*ret_why = n < 0 ? NULL : why;
	return n < 0 ? -ENOMEM : 0;
}

/* Result codes that say the DC cannot answer now, whatever the cookie:
 * the run fails (and is retried) rather than read everything. */
static bool transient(int code)
{
	return code == LDAP_BUSY || code == LDAP_UNAVAILABLE || code == LDAP_TIMELIMIT_EXCEEDED ||
	       code == LDAP_SIZELIMIT_EXCEEDED || code == LDAP_ADMINLIMIT_EXCEEDED ||
	       code == LDAP_SERVER_DOWN;
}

/* The DC refused a search: with a cookie, a reason to read everything
 * (*ret_why, new); without, an error (an account without the right). */
static int refused(struct dsync *d, struct round *rd, bool had_cookie, char **ret_why)
{
	struct pull *p = d->p;
	int code = rd->refused;
	if (code == LDAP_INSUFFICIENT_ACCESS)
		return ids_ldap_error(
		    p->err, IDS_E_UNSUPPORTED, code, rd->diag,
		    "%s: DirSync refused to %s: grant it \"Replicating Directory Changes\" on "
		    "%s, or set changes.object_security: true",
		    p->uri, p->lc->bind_dn ? p->lc->bind_dn : "the account", d->dc.nc);
	if (!had_cookie || transient(code))
		return ids_ldap_error(p->err,
				      code == LDAP_UNAVAILABLE_CRITICAL_EXTENSION ? IDS_E_UNSUPPORTED
										  : ids_ldap_map_lrc(code),
				      code, rd->diag, "%s: DirSync under %s", p->uri, d->dc.nc);
	if (asprintf(ret_why, "domain controller %s rejected the cookie (%s (%d)%s%s)", d->dc.host,
		     ldap_err2string(code), code, rd->diag ? ": " : "", rd->diag ? rd->diag : "") < 0) {
		*ret_why = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* The attribute lists: the connector's, with objectGUID (the key). */
static int attr_lists(struct dsync *d)
{
	size_t n = 0, m = 0;
	for (; d->a.user[n] && n < 62; n++)
		d->users[n] = d->a.user[n];
	for (; d->a.group[m] && m < 18; m++)
		d->groups[m] = d->a.group[m];
	if (d->a.user[n] || d->a.group[m])
		return ids_error_set(d->p->err, IDS_E_CONFIG, "too many attributes for the DirSync feed");
	d->users[n] = d->groups[m] = "objectGUID";
	d->users[n + 1] = d->groups[m + 1] = NULL;
	return 0;
}

/* Incremental from the cookie: 0 done, 1 the DC refused it (*why set). */
static int incremental(struct dsync *d, const struct berval *cookie, struct berval **ret, char **why)
{
	struct round rd = {.d = d, .apply = true};
	int r = rounds(&rd, cookie, ret);
	if (r == REFUSED && (r = refused(d, &rd, true, why)) >= 0)
		r = 1;
	if (r == 0)
		r = reread(d);
	free(rd.diag);
	return r;
}

/* Everything: the cookie first (see the top), then a full read. */
static int from_scratch(struct dsync *d, struct berval **ret)
{
	struct round rd = {.d = d, .apply = false};
	int r = rounds(&rd, NULL, ret);
	if (r == REFUSED)
		r = refused(d, &rd, false, NULL);
	free(rd.diag);
	return r < 0 ? r : full_read(d);
}

static int do_dirsync(struct pull *p, void *arg)
{
	struct dsync *d = arg;
	struct ids_feed_pull *fp = d->fp;
	struct ids_dirsync_cursor c = {0};
	struct berval *cookie = NULL;
	char *srv = NULL, *inv = NULL, *why = NULL;
	int r;
	d->p = p;
	if (!p->lc->users_base)
		return ids_error_set(p->err, IDS_E_CONFIG, "no users base configured");
	int rc = fp->cursor ? ids_dirsync_cursor_decode(fp->cursor, fp->cursor_len, &c, &srv, &inv) : 0;
	if ((r = ids_ldap_pull_attrs(p, &d->a)) < 0 || (r = attr_lists(d)) < 0 ||
	    (r = ids_ldap_connect(p)) < 0 || (r = read_root(d)) < 0 || (r = read_identity(d)) < 0)
		goto out;
	if (fp->cursor && (r = cursor_check(d, &c, rc, &why)) < 0)
		goto out;
	r = fp->cursor && !why ? incremental(d, &c.cookie, &cookie, &why) : 1;
	if (r == 1) {
		fp->reset_reason = why;
		why = NULL;
		r = from_scratch(d, &cookie);
	}
	if (r < 0)
		goto out;
	const struct ids_dirsync_cursor now = {.fingerprint = ids_ldap_fingerprint(p),
					       .server = d->dc.host,
					       .invocation_id = d->dc.invocation_id,
					       .issued = (int64_t)time(NULL),
					       .cookie = *cookie};
	if ((r = ids_dirsync_cursor_encode(&now, &fp->new_cursor, &fp->new_cursor_len)) < 0 ||
	    !(fp->cursor_server = strdup(d->dc.host)) ||
	    !(fp->cursor_invocation_id = strdup(d->dc.invocation_id)))
		r = -ENOMEM;
out:
	ids_dirsync_cookie_free(cookie);
	free(srv);
	free(inv);
	free(why);
	return r;
}

int ids_ldap_dirsync_pull_changes(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
				  struct ids_feed_pull *fp, struct ids_error *err)
{
	if (!cfg || !fp || !fp->image)
		return ids_error_set(err, -EINVAL, "DirSync feed without an image");
	const struct ids_ldap_flavor_defaults *def = ids_config_ldap_defaults(cfg->ldap.flavor);
	struct dsync d = {.fp = fp,
			  .ufilter = cfg->ldap.users_filter ? cfg->ldap.users_filter : def->users_filter,
			  .gfilter = cfg->ldap.groups_filter ? cfg->ldap.groups_filter : def->groups_filter,
			  .mattr = cfg->ldap.member_attribute ? cfg->ldap.member_attribute : "member",
			  .flags = IDS_DIRSYNC_INCREMENTAL_VALUES |
				   (cfg->changes.object_security ? IDS_DIRSYNC_OBJECT_SECURITY : 0)};
	*fp = (struct ids_feed_pull){.image = fp->image, .cursor = fp->cursor, .cursor_len = fp->cursor_len};
	int r = ids_ldap_session(cfg, ctx, NULL, fp->image, do_dirsync, &d, err);
	if (r < 0)
		ids_feed_pull_clear(fp);
	ids_ldap_pull_attrs_free(&d.a);
	ids_buf_free(&d.reread);
	ids_strmap_free(&d.queued);
	ids_arena_free(&d.keys);
	dc_free(&d.dc);
	return r;
}
