/* ldap_feed.c — the LDAP connector's change feed: RFC 4533 refreshOnly
 * against OpenLDAP's syncprov (issue 14; docs/changes.md).
 *
 * One read: connect as for a full read; read the users disabled_filter
 * matches (a paged search: a changed user's flag is taken from it); then
 * one sync search for the users and the groups when their bases are
 * apart ("one sync search" below), else one for the users and one for
 * the groups, each with its own cookie; each applied to the image as it
 * arrives (after the users, on an incremental read, a plain search finds
 * the containers renamed or moved since the last read: "renamed
 * containers" below):
 *   - an entry with syncState add or modify replaces its record (slapd
 *     sends a modified entry whole), keyed by its entryUUID;
 *   - syncState delete, and a syncIdSet with refreshDeletes, remove
 *     records by entryUUID (deletes carry no DN);
 *   - syncState present, and a syncIdSet without refreshDeletes, name
 *     the records still there: when the search ends with refreshDeletes
 *     false (a present phase), every record of that search's kind that
 *     was neither named nor sent is gone.
 * A cookie the server refuses (e-syncRefreshRequired, 4096) is dropped
 * and the search runs again without one — everything, as a present
 * phase — in the same read; the reason goes back to the caller, which
 * logs and counts it.  The answers are waited for in the connection's
 * slices (ids_ldap_wait), so the watchdog and SIGTERM are served as in a
 * full read.
 *
 * The cursor is this connector's own text: a version, a fingerprint of
 * everything that decides what a record holds (bases, filters, attribute
 * map, the attributes the rules read), and the two cookies, the users'
 * and the groups'.  A cursor with another fingerprint is not used: the
 * records were made under another configuration, so everything is read
 * again. */
#include <errno.h>
#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/dn.h"
#include "ids/image.h"
#include "ids/snapshot.h"
#include "ldap_int.h"
#include "ldap_sync.h"

/* 3: the users' and the groups' cookies.  2 had a third, the containers'
 * sync search's; a stored one is still read (its third cookie skipped),
 * so that an upgrade does not read a whole directory again. */
#define CURSOR_MAGIC "idsyncd-syncrepl/3"
#define CURSOR_MAGIC_2 "idsyncd-syncrepl/2"

/* The two cookies of a cursor, borrowed from it or from the server's
 * answers; len 0: none. */
struct cookies {
	struct berval users, groups;
};

/* FNV-1a over every setting a record depends on, with separators. */
uint64_t ids_ldap_fingerprint(const struct pull *p)
{
	const struct ids_ldap_cfg *lc = p->lc;
	const struct ids_ldap_flavor_defaults *def = ids_config_ldap_defaults(lc->flavor);
	const char *parts[16] = {
	    lc->users_base,	  lc->users_filter ? lc->users_filter : def->users_filter,
	    lc->groups_base,	  lc->groups_filter ? lc->groups_filter : def->groups_filter,
	    lc->member_attribute, lc->disabled_filter};
	size_t n = 6;
	for (int f = 0; f < 6; f++)
		parts[n++] = p->attr[f];
	struct ids_buf b = {0};
	for (size_t i = 0; i < n; i++)
		ids_buf_printf(&b, "%s\x1f", parts[i] ? parts[i] : "");
	for (size_t i = 0; p->ctx && p->ctx->rule_attrs && i < p->ctx->rule_attrs->n; i++)
		ids_buf_printf(&b, "%s\x1e", p->ctx->rule_attrs->v[i]);
	uint64_t h = ids_hash64(b.p ? b.p : "", b.len);
	ids_buf_free(&b);
	return h;
}

/* The magic of the cursor at s (n bytes) with its space: CURSOR_MAGIC's,
 * CURSOR_MAGIC_2's, or NULL when it is neither. */
static const char *cursor_magic(const char *s, size_t n)
{
	static const char *const magics[] = {CURSOR_MAGIC " ", CURSOR_MAGIC_2 " "};
	for (size_t i = 0; s && i < sizeof(magics) / sizeof(*magics); i++)
		if (n > strlen(magics[i]) && !memcmp(s, magics[i], strlen(magics[i])))
			return magics[i];
	return NULL;
}

/* "LEN:BYTES\n" at *s (bounded by end) into *ret; false when malformed. */
static bool read_cookie(const char **s, const char *end, struct berval *ret)
{
	char *colon = NULL;
	unsigned long n = strtoul(*s, &colon, 10);
	if (colon == *s || colon >= end || *colon != ':' || n > (unsigned long)(end - colon - 2) ||
	    colon[1 + n] != '\n')
		return false;
	ret->bv_val = colon + 1;
	ret->bv_len = n;
	*s = colon + 2 + n;
	return true;
}

/* The cookies after the first line (magic and fingerprint) of a cursor
 * whose magic is `magic`: version 2's third is skipped. */
static bool read_cookies(const char *magic, const char *s, const char *end, struct cookies *ret)
{
	struct berval containers;
	if (!read_cookie(&s, end, &ret->users) || !read_cookie(&s, end, &ret->groups))
		return false;
	if (!strncmp(magic, CURSOR_MAGIC_2, strlen(CURSOR_MAGIC_2)) && !read_cookie(&s, end, &containers))
		return false;
	return s == end;
}

bool ids_ldap_cursor_cookies(const unsigned char *c, size_t n, struct berval ret[2])
{
	const char *s = (const char *)c, *end = s + n;
	const char *magic = cursor_magic(s, n), *nl = magic ? memchr(s, '\n', n) : NULL;
	struct cookies k = {0};
	if (!nl || !read_cookies(magic, nl + 1, end, &k))
		return false;
	ret[0] = k.users;
	ret[1] = k.groups;
	return true;
}

/* The cookies of a stored cursor.  0; or 1 with *ret_why when it cannot
 * be used (then both cookies are empty: read everything). */
static int parse_cursor(const struct pull *p, const unsigned char *c, size_t n, struct cookies *ret,
			const char **ret_why)
{
	char head[64];
	const char *s = (const char *)c, *end = s + n, *magic = cursor_magic(s, n);
	*ret = (struct cookies){0};
	if (!c || !n)
		return 0; /* the first read: no cursor, nothing to explain */
	if (!magic) {
		*ret_why = "the stored cursor is not a syncrepl cursor of this version";
		return 1;
	}
	snprintf(head, sizeof(head), "%s%016llx\n", magic, (unsigned long long)ids_ldap_fingerprint(p));
	size_t hl = strlen(head);
	if (n < hl || memcmp(s, head, hl) != 0) {
		*ret_why = "the connector's bases, filters or attributes changed since the stored cursor";
		return 1;
	}
	if (!read_cookies(magic, s + hl, end, ret)) {
		*ret = (struct cookies){0};
		*ret_why = "the stored cursor is damaged";
		return 1;
	}
	return 0;
}

/* The cursor of cookies k into fp (new). */
static int make_cursor(const struct pull *p, const struct cookies *k, struct ids_feed_pull *fp)
{
	struct ids_buf b = {0};
	int r = ids_buf_printf(&b, CURSOR_MAGIC " %016llx\n%zu:", (unsigned long long)ids_ldap_fingerprint(p),
			       (size_t)k->users.bv_len);
	if (r >= 0 && k->users.bv_len)
		r = ids_buf_add(&b, k->users.bv_val, k->users.bv_len);
	if (r >= 0)
		r = ids_buf_printf(&b, "\n%zu:", (size_t)k->groups.bv_len);
	if (r >= 0 && k->groups.bv_len)
		r = ids_buf_add(&b, k->groups.bv_val, k->groups.bv_len);
	if (r >= 0)
		r = ids_buf_putc(&b, '\n');
	if (r < 0) {
		ids_buf_free(&b);
		return -ENOMEM;
	}
	fp->new_cursor_len = b.len;
	fp->new_cursor = (unsigned char *)ids_buf_steal(&b);
	return 0;
}

/* A sync search's kinds when it reads the users and the groups at once. */
#define BOTH (IDS_IMAGE_USERS | IDS_IMAGE_GROUPS)

/* One sync search's state. */
struct sync {
	const struct search *sr;
	unsigned kind;		/* IDS_IMAGE_USERS, IDS_IMAGE_GROUPS, or BOTH */
	struct berval *cookie;	/* the newest cookie the server gave, new (ids_sync_cookie_free) */
	size_t entries;		/* messages so far, for messages and progress */
	bool whole;		/* sent without a cookie: the answer is all there is */
	int refused;		/* the result code that refused the cookie, 0 when none */
	struct ids_strv *moved; /* DNs that left and their successors (refint_fixup) */
	struct ids_feed_pull *fp;
};

/* Whether two DNs name the same entry (normalized; raw when either
 * does not parse). */
bool ids_ldap_same_dn(const char *a, const char *b, size_t nb)
{
	char *na = NULL, *nbn = NULL;
	bool same;
	if (ids_dn_normalize(a, strlen(a), &na) >= 0 && ids_dn_normalize(b, nb, &nbn) >= 0)
		same = !strcmp(na, nbn);
	else
		same = strlen(a) == nb && !memcmp(a, b, nb);
	free(na);
	free(nbn);
	return same;
}

/* Before key's record is deleted or replaced: its DN goes to s->moved
 * when it leaves (new_dn NULL: a delete; else a rename or move, and the
 * new DN goes too). */
static int note_move(struct pull *p, struct sync *s, const char *key, const struct berval *new_dn)
{
	char *old = NULL;
	int r = ids_image_dn(p->img, key, s->kind, &old);
	if (r < 0 || !old)
		return r;
	if (!new_dn || !ids_ldap_same_dn(old, new_dn->bv_val, new_dn->bv_len)) {
		r = ids_strv_push(s->moved, old);
		if (r >= 0 && new_dn) {
			char *nd = strndup(new_dn->bv_val, new_dn->bv_len);
			r = nd ? ids_strv_push(s->moved, nd) : -ENOMEM;
			free(nd);
		}
	}
	free(old);
	return r < 0 ? -ENOMEM : 0;
}

/* Whether normalized dn is base or beneath it. */
static bool under_norm(const char *nd, const char *nb)
{
	size_t ld = strlen(nd), lb = strlen(nb);
	return ld == lb ? !strcmp(nd, nb) : ld > lb && nd[ld - lb - 1] == ',' && !strcmp(nd + ld - lb, nb);
}

/* Whether dn is base or beneath it (normalized). */
static bool under(const char *dn, const char *base)
{
	char *nd = NULL, *nb = NULL;
	bool in = base && ids_dn_normalize(dn, strlen(dn), &nd) >= 0 &&
		  ids_dn_normalize(base, strlen(base), &nb) >= 0 && under_norm(nd, nb);
	free(nd);
	free(nb);
	return in;
}

/* The kind of an entry of the search of both kinds (BOTH): a user
 * beneath the users' base, a group beneath the groups' (the bases are
 * apart, and the search's filter lets through only those); 0 for any
 * other, which is then not recorded. */
static unsigned kind_of_dn(const struct pull *p, const struct berval *dn)
{
	char *nd = NULL;
	unsigned kind = 0;
	if (ids_dn_normalize(dn->bv_val, dn->bv_len, &nd) >= 0)
		kind = under_norm(nd, p->feed_bases[0])	  ? IDS_IMAGE_USERS
		       : under_norm(nd, p->feed_bases[1]) ? IDS_IMAGE_GROUPS
							  : 0;
	free(nd);
	return kind;
}

/* Replaces s->cookie by c (stolen; NULL keeps the old one). */
static void take_cookie(struct sync *s, struct berval *c)
{
	if (!c)
		return;
	ids_sync_cookie_free(s->cookie);
	s->cookie = c;
}

/* An entry of the refresh, by its syncState. */
static int on_entry(struct pull *p, struct sync *s, LDAPMessage *msg)
{
	LDAPControl **ctrls = NULL;
	enum ids_sync_state state;
	char uuid[IDS_SYNC_UUID_TEXT];
	struct berval *cookie = NULL;
	int r;
	if (ldap_get_entry_controls(p->ld, msg, &ctrls) != LDAP_SUCCESS)
		return ids_error_set(p->err, IDS_E_PROTOCOL,
				     "%s: unreadable controls of an entry in the %s feed", p->uri,
				     s->sr->what);
	LDAPControl *c = ldap_control_find(IDS_SYNC_STATE_OID, ctrls, NULL);
	r = c ? ids_sync_state_decode(&c->ldctl_value, &state, uuid, &cookie) : IDS_E_PROTOCOL;
	ldap_controls_free(ctrls);
	if (r < 0)
		return r == -ENOMEM
			   ? r
			   : ids_error_set(p->err, IDS_E_PROTOCOL,
					   "%s: an entry of the %s feed without a valid syncState control",
					   p->uri, s->sr->what);
	take_cookie(s, cookie);
	switch (state) {
	case IDS_SYNC_PRESENT: return ids_image_present(p->img, uuid) < 0 ? -ENOMEM : 0;
	case IDS_SYNC_DELETE:
		if ((r = note_move(p, s, uuid, NULL)) < 0)
			return r;
		r = ids_image_delete(p->img, uuid, s->kind);
		s->fp->changes += r > 0;
		return r < 0 ? r : 0;
	default: break;
	}
	p->img_key = uuid;
	r = ids_ldap_read_entry(p, msg);
	unsigned kind = s->kind == BOTH ? kind_of_dn(p, &p->ent.dn) : s->kind;
	if (r >= 0 && kind == IDS_IMAGE_GROUPS && p->sent && ids_strv_push(p->sent, uuid) < 0)
		r = -ENOMEM;
	if (r >= 0)
		r = note_move(p, s, uuid, &p->ent.dn);
	if (r >= 0 && kind)
		r = kind == IDS_IMAGE_USERS ? ids_ldap_on_user(p, &p->ent) : ids_ldap_on_group(p, &p->ent);
	ids_ldap_entry_clear(&p->ent);
	p->img_key = NULL;
	s->fp->changes++;
	return r;
}

/* A Sync Info Message: ID sets delete or name present; cookies kept. */
static int on_info(struct pull *p, struct sync *s, LDAPMessage *msg)
{
	char *oid = NULL;
	struct berval *data = NULL;
	struct ids_sync_info info;
	int r = 0;
	if (ldap_parse_intermediate(p->ld, msg, &oid, &data, NULL, 0) != LDAP_SUCCESS)
		return ids_error_set(p->err, IDS_E_PROTOCOL,
				     "%s: unreadable intermediate message in the %s feed", p->uri,
				     s->sr->what);
	if (!oid || strcmp(oid, IDS_SYNC_INFO_OID) != 0 || !data)
		goto out; /* another extension's: not ours to read */
	if ((r = ids_sync_info_decode(data, &info)) < 0) {
		if (r != -ENOMEM)
			r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed syncInfo in the %s feed",
					  p->uri, s->sr->what);
		goto out;
	}
	for (size_t i = 0; r >= 0 && i < info.nuuids; i++) {
		if (info.refresh_deletes) {
			if ((r = note_move(p, s, info.uuids[i], NULL)) < 0)
				break;
			r = ids_image_delete(p->img, info.uuids[i], s->kind);
			s->fp->changes += r > 0;
		} else {
			r = ids_image_present(p->img, info.uuids[i]);
		}
	}
	take_cookie(s, info.cookie);
	info.cookie = NULL;
	ids_sync_info_clear(&info);
out:
	ldap_memfree(oid);
	ber_bvfree(data);
	return r < 0 ? r : 0;
}

/* The search's result: 0 done, 1 the cookie was refused (refresh again
 * without it), < 0 an error. */
static int on_result(struct pull *p, struct sync *s, LDAPMessage *msg)
{
	LDAPControl **rctrls = NULL;
	char *diag = NULL;
	int code = LDAP_OTHER, r = 0;
	if (ldap_parse_result(p->ld, msg, &code, NULL, &diag, NULL, &rctrls, 0) != LDAP_SUCCESS) {
		r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed result of the %s feed", p->uri,
				  s->sr->what);
	} else if (code == IDS_SYNC_REFRESH_REQUIRED || (code == LDAP_UNWILLING_TO_PERFORM && !s->whole)) {
		/* e-syncRefreshRequired; or unwillingToPerform, slapd's answer
		 * to a cookie newer than its own state (a restored database,
		 * another server): either way, start again without it */
		s->refused = code;
		r = 1;
	} else if (code == LDAP_UNAVAILABLE_CRITICAL_EXTENSION) {
		r = ids_ldap_error(p->err, IDS_E_UNSUPPORTED, code, diag,
				   "%s: the server does not offer content synchronization under %s (enable "
				   "the syncprov overlay, or set changes.mode: full)",
				   p->uri, s->sr->base);
	} else if (code != LDAP_SUCCESS) {
		r = ids_ldap_error(p->err, ids_ldap_map_lrc(code), code, diag, "%s: the %s feed under %s",
				   p->uri, s->sr->what, s->sr->base);
	} else {
		LDAPControl *c = ldap_control_find(IDS_SYNC_DONE_OID, rctrls, NULL);
		struct berval *cookie = NULL;
		bool deletes = false;
		if (c && (r = ids_sync_done_decode(&c->ldctl_value, &cookie, &deletes)) < 0 && r != -ENOMEM)
			r = ids_error_set(p->err, IDS_E_PROTOCOL, "%s: malformed syncDone in the %s feed",
					  p->uri, s->sr->what);
		if (r >= 0) {
			take_cookie(s, cookie);
			/* a present phase, or a refresh without a cookie (slapd
			 * says refreshDeletes TRUE of those too, measured on
			 * 2.5.13): what was not named or sent is gone */
			size_t gone = 0;
			if ((!deletes || s->whole) &&
			    (r = ids_image_present_end(p->img, s->kind, &gone)) >= 0)
				s->fp->changes += gone;
		}
	}
	ldap_controls_free(rctrls);
	ldap_memfree(diag);
	return r;
}

/* Sends the sync search with `cookie` (len 0: none): *ret_msgid. */
static int send_sync(struct pull *p, const struct sync *s, const struct berval *cookie, int *ret_msgid)
{
	struct berval value = {0};
	int r = ids_sync_request_encode(false, cookie, &value);
	if (r < 0)
		return r;
	/* critical: a server without syncprov must refuse, not answer a
	 * plain search that would read as "nothing changed" */
	LDAPControl ctrl = {
	    .ldctl_oid = (char *)IDS_SYNC_REQUEST_OID, .ldctl_value = value, .ldctl_iscritical = 1};
	LDAPControl *sctrls[] = {&ctrl, NULL};
	int lrc = ldap_search_ext(p->ld, s->sr->base, LDAP_SCOPE_SUBTREE, s->sr->filter, s->sr->attrs, 0,
				  sctrls, NULL, NULL, LDAP_NO_LIMIT, ret_msgid);
	ber_memfree(value.bv_val);
	if (lrc != LDAP_SUCCESS) {
		char *diag = ids_ldap_diag(p->ld);
		r = ids_ldap_error(p->err, ids_ldap_map_lrc(lrc), lrc, diag, "%s: the %s feed under %s",
				   p->uri, s->sr->what, s->sr->base);
		ldap_memfree(diag);
	}
	return r;
}

/* One refresh: 0 done, 1 the cookie was refused, < 0 an error. */
static int refresh(struct pull *p, struct sync *s, const struct berval *cookie)
{
	int msgid, r = send_sync(p, s, cookie, &msgid);
	s->whole = !cookie->bv_len;
	ids_image_present_begin(p->img);
	/* a pass of its own: an entry a refresh before it emitted (a refused
	 * cookie's whole refresh, read again with every disabled user) must
	 * be recorded, and marked present, again — skipped as "seen" it was
	 * swept as gone */
	ids_ldap_seen_reset(p);
	while (r >= 0) {
		LDAPMessage *msg = NULL;
		int type = ids_ldap_wait(p, msgid, LDAP_MSG_ONE, "while waiting for changes", &msg);
		if (type < -1)
			return type;
		if (type == 0)
			return ids_error_set(
			    p->err, IDS_E_TIMEOUT,
			    "%s: no answer within %d s in the %s feed under %s (after %zu entries)", p->uri,
			    p->timeout, s->sr->what, s->sr->base, s->entries);
		if (type < 0) {
			int code = LDAP_OTHER;
			ldap_get_option(p->ld, LDAP_OPT_RESULT_CODE, &code);
			return ids_ldap_error(p->err, ids_ldap_map_lrc(code), code, NULL,
					      "%s: the %s feed under %s broke off after %zu entries", p->uri,
					      s->sr->what, s->sr->base, s->entries);
		}
		if (type == LDAP_RES_SEARCH_ENTRY)
			r = on_entry(p, s, msg);
		else if (type == LDAP_RES_INTERMEDIATE)
			r = on_info(p, s, msg);
		else if (type == LDAP_RES_SEARCH_RESULT) {
			r = on_result(p, s, msg);
			ldap_msgfree(msg);
			return r;
		}
		ldap_msgfree(msg);
		if (r >= 0 && ++s->entries % PROGRESS_EVERY == 0)
			r = ids_ldap_tick(p, "while reading changes");
	}
	return r;
}

/* The sync search sr from *cookie; the new cookie replaces it (new).  A
 * cookie the server refuses is dropped and the reason noted; with `again`
 * everything is read at once in this same read, else *cookie is left NULL
 * for the caller to do so. */
static int sync_search(struct pull *p, const struct search *sr, unsigned kind, struct berval **cookie,
		       bool again, struct ids_feed_pull *fp, struct ids_strv *moved)
{
	struct sync s = {.sr = sr, .kind = kind, .cookie = *cookie, .fp = fp, .moved = moved};
	const struct berval none = {0};
	int r = refresh(p, &s, s.cookie ? s.cookie : &none);
	if (r == 1 && s.cookie && s.cookie->bv_len) {
		/* the server cannot continue from the cookie: everything again,
		 * as a present phase, in this same read */
		if (!fp->reset_reason &&
		    asprintf(
			&fp->reset_reason, "the server refused the %s feed's cookie (%s)", sr->what,
			s.refused == IDS_SYNC_REFRESH_REQUIRED
			    ? "e-syncRefreshRequired"
			    : "unwillingToPerform: a cookie newer than the server's state, a restored or "
			      "another server") < 0)
			fp->reset_reason = NULL;
		ids_sync_cookie_free(s.cookie);
		s.cookie = NULL;
		s.entries = 0;
		r = again ? refresh(p, &s, &none) : 0;
	}
	if (r == 1)
		r = ids_error_set(p->err, IDS_E_SERVER,
				  "%s: the server asked for a refresh of the %s feed twice", p->uri,
				  sr->what);
	*cookie = s.cookie;
	return r < 0 ? r : 0;
}

/* A berval copy of a cookie of the cursor (new), NULL for none. */
static struct berval *dup_cookie(const struct berval *c)
{
	if (!c->bv_len)
		return NULL;
	struct berval *d = malloc(sizeof(*d) + c->bv_len + 1);
	if (!d)
		return NULL;
	d->bv_val = (char *)(d + 1);
	d->bv_len = c->bv_len;
	memcpy(d->bv_val, c->bv_val, c->bv_len);
	d->bv_val[c->bv_len] = '\0';
	return d;
}

/* ---- refint's rewrites (docs/changes.md): slapd's referential
 * integrity overlay rewrites the member values naming a deleted or
 * renamed entry without changing the group's entryCSN, so the feed never
 * sends those groups.  Whenever entries left a DN, the groups that name
 * the old or the new DN — on the server, or in the image — are read
 * again and replace their records: the server's truth, with refint or
 * without. ---- */

#define FIXUP_TERMS 40 /* filter terms per search */

/* A group's entryUUID, new in *key: every group of the fix-up has one. */
static int group_uuid(struct pull *p, const struct entry *e, char **key)
{
	const struct berval *u = ids_ldap_entry_first(e, "entryUUID");
	if (!u || !u->bv_len)
		return ids_error_set(p->err, IDS_E_PROTOCOL, "%s: group %.*s came without its entryUUID",
				     p->uri, (int)e->dn.bv_len, e->dn.bv_val);
	*key = strndup(u->bv_val, u->bv_len);
	return *key ? 0 : -ENOMEM;
}

/* A group of the fix-up into the image, keyed by its entryUUID. */
static int fixup_group(struct pull *p, const struct entry *e)
{
	char *key = NULL;
	int r = group_uuid(p, e, &key);
	if (r < 0)
		return r;
	p->img_key = key;
	r = ids_ldap_on_group(p, e);
	p->img_key = NULL;
	p->fixup_reads++;
	free(key);
	return r;
}

static int add_key(const char *key, void *ud)
{
	return ids_strv_push(ud, key) < 0 ? -ENOMEM : 0;
}

/* "(attr=escaped value)" appended to b. */
static int term(struct ids_buf *b, const char *attr, const char *v)
{
	int r = ids_buf_printf(b, "(%s=", attr);
	if (r >= 0)
		r = ids_dn_filter_escape(b, v, strlen(v));
	return r < 0 ? r : ids_buf_putc(b, ')');
}

/* A group the fix-up's first pass found: its entryUUID, to read it once. */
static int found_group(struct pull *p, const struct entry *e)
{
	char *key = NULL;
	int r = group_uuid(p, e, &key);
	if (r >= 0 && ids_strv_push(p->found, key) < 0)
		r = -ENOMEM;
	free(key);
	return r;
}

/* One fix-up search: the groups of gfilter whose member attributes name
 * one of v[from, to) (by_member), or whose entryUUID is one of them. */
static int fixup_search(struct pull *p, const char *gfilter, char **attrs, entry_fn fn, bool by_member,
			const struct ids_strv *v, size_t from, size_t to)
{
	static const char *const dflt[] = {"member", "uniqueMember", NULL};
	const char *one[2] = {p->lc->member_attribute, NULL};
	const char *const *mattrs = p->lc->member_attribute ? one : dflt;
	struct ids_buf f = {0};
	int r = ids_buf_printf(&f, "(&%s(|", gfilter);
	for (size_t i = from; r >= 0 && i < to; i++) {
		if (by_member)
			for (size_t k = 0; r >= 0 && mattrs[k]; k++)
				r = strcasecmp(mattrs[k], "memberUid") ? term(&f, mattrs[k], v->v[i]) : 0;
		else
			r = term(&f, "entryUUID", v->v[i]);
	}
	if (r >= 0)
		r = ids_buf_puts(&f, "))");
	if (r < 0) {
		ids_buf_free(&f);
		return -ENOMEM;
	}
	const struct search sr = {"groups (member fix-up)", p->lc->groups_base, f.p, attrs, fn};
	r = ids_ldap_run_search(p, &sr);
	ids_buf_free(&f);
	return r;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* keys[0..n) sorted, each once, less those in p->sent (the groups this
 * read recorded whole: as the server had them, refint's rewrites
 * included); *ret_sent counts them. */
static int unsent_keys(struct pull *p, struct ids_strv *keys, size_t *ret_sent)
{
	struct ids_strmap sent = {0};
	struct ids_strv out = {0};
	int r = 0;
	*ret_sent = 0;
	for (size_t i = 0; r >= 0 && p->sent && i < p->sent->n; i++)
		r = ids_strmap_put(&sent, p->sent->v[i], 0, NULL);
	if (keys->n)
		qsort(keys->v, keys->n, sizeof(*keys->v), strp_cmp);
	for (size_t i = 0; r >= 0 && i < keys->n; i++) {
		if (i && !strcmp(keys->v[i], keys->v[i - 1]))
			continue; /* each group once */
		if (ids_strmap_get(&sent, keys->v[i], NULL))
			++*ret_sent;
		else if (ids_strv_push(&out, keys->v[i]) < 0)
			r = -ENOMEM;
	}
	ids_strmap_free(&sent);
	ids_strv_free(keys);
	*keys = out;
	return r;
}

/* Whenever entries left DNs: first which groups name them — on the
 * server (a search per FIXUP_TERMS DNs asking for the entryUUID alone)
 * or in the image —, then each of those groups read once, FIXUP_TERMS
 * entryUUIDs a search, but for those this read already recorded whole.
 * Reading the groups with the first searches would send a big group
 * once per search it matches: a group still naming 1,000 deleted users
 * (a directory without refint) came 25 times, all of its members each
 * time.  A group the feed sent in this read is as the server had it,
 * refint's rewrites included: reading it again would only send it twice. */
static int refint_fixup(struct pull *p, const struct pull_attrs *a, const char *gfilter,
			const struct ids_strv *dns)
{
	static const char *const uuid_only[] = {"entryUUID", NULL};
	struct ids_strv keys = {0};
	const char *attrs[16];
	size_t n = 0, sent = 0;
	if (!dns->n || !p->lc->groups_base)
		return 0;
	for (; a->group[n] && n < 14; n++)
		attrs[n] = a->group[n];
	attrs[n++] = "entryUUID";
	attrs[n] = NULL;
	size_t reads0 = p->fixup_reads;
	int r = ids_image_groups_naming(p->img, (const char *const *)dns->v, dns->n, add_key, &keys);
	p->found = &keys;
	for (size_t from = 0; r >= 0 && from < dns->n; from += FIXUP_TERMS)
		r = fixup_search(p, gfilter, (char **)uuid_only, found_group, true, dns, from,
				 from + FIXUP_TERMS < dns->n ? from + FIXUP_TERMS : dns->n);
	p->found = NULL;
	if (r >= 0)
		r = unsent_keys(p, &keys, &sent);
	for (size_t from = 0; r >= 0 && from < keys.n; from += FIXUP_TERMS)
		r = fixup_search(p, gfilter, (char **)attrs, fixup_group, false, &keys, from,
				 from + FIXUP_TERMS < keys.n ? from + FIXUP_TERMS : keys.n);
	if (r >= 0 && p->ctx->debug) {
		char line[160];
		snprintf(line, sizeof(line),
			 "member fix-up: %zu DNs left, %zu groups named them, %zu sent whole, %zu read again",
			 dns->n, keys.n + sent, sent, p->fixup_reads - reads0);
		p->ctx->debug(p->ctx->ud, line);
	}
	ids_strv_free(&keys);
	return r;
}

/* The oldest CSN a syncrepl cookie names ("rid=000,csn=A;B,sid=…"), new;
 * NULL when it names none this reader understands (then everything). */
static char *cookie_csn(const struct berval *c)
{
	char *z = c && c->bv_len ? strndup(c->bv_val, c->bv_len) : NULL, *best = NULL;
	char *at = z ? strstr(z, "csn=") : NULL;
	if (at && (at == z || at[-1] == ',')) {
		at += 4;
		at[strcspn(at, ",")] = '\0';
		for (char *save = NULL, *t = strtok_r(at, ";", &save); t; t = strtok_r(NULL, ";", &save))
			if (*t && strspn(t, "0123456789.Z#abcdef") == strlen(t) &&
			    (!best || strcmp(t, best) < 0))
				best = t;
	}
	char *ret = best ? strdup(best) : NULL;
	free(z);
	return ret;
}

/* "(entryCSN>=csn)" appended to f, csn escaped; nothing when csn is NULL. */
static int csn_term(struct ids_buf *f, const char *csn)
{
	if (!csn)
		return 0;
	int r = ids_buf_puts(f, "(entryCSN>=");
	if (r >= 0)
		r = ids_dn_filter_escape(f, csn, strlen(csn));
	return r < 0 ? r : ids_buf_putc(f, ')');
}

/* The disabled users beneath `base` (their set decides each changed
 * user's flag): with csn, only those changed since (entryCSN >= csn) —
 * the feed sends no other user, so no other flag is asked for; item 4
 * of docs/changes.md: proportional to the changes, not the directory. */
static int read_disabled(struct pull *p, const struct pull_attrs *a, const char *ufilter, const char *base,
			 const char *csn)
{
	if (!p->lc->disabled_filter)
		return 0;
	struct ids_buf f = {0};
	int r = ids_buf_printf(&f, "(&%s%s", ufilter, p->lc->disabled_filter);
	if (r >= 0)
		r = csn_term(&f, csn);
	if (r >= 0)
		r = ids_buf_putc(&f, ')');
	if (r < 0) {
		ids_buf_free(&f);
		return -ENOMEM;
	}
	const struct search sr = {"disabled users", base, f.p, (char **)a->disabled, ids_ldap_on_disabled};
	r = ids_ldap_run_search(p, &sr);
	ids_buf_free(&f);
	return r;
}

/* ---- renamed containers: a modrdn of an entry with children (an OU
 * renamed or moved) changes the DN of everything beneath it, but syncprov
 * sends only the renamed entry: the children keep their entryCSN, so the
 * users' and groups' feeds never name them (slapd 2.5.13, measured by
 * t_fault_08_ou_move).  The renamed entry's own entryCSN does change (a
 * modrdn, a move, an add or a modify sets it), so an incremental read
 * finds every other entry under the users' base (neither user nor group,
 * no attributes) changed since the previous read with a plain search,
 * (entryCSN>=CSN) with CSN the oldest the users' stored cookie names —
 * as read_disabled does —, and reads the users and groups beneath each
 * one again, which replace their records.
 *
 * Why that CSN misses nothing: it is slapd's contextCSN when the previous
 * read's users search ran, which was before that read's container search.
 * A rename with an older CSN was committed before then, so that read's
 * container search (or a whole read before it) found it; one with this
 * CSN or a newer one is found now.  A rename between that users search
 * and that container search is found by both: read twice, harmlessly; a
 * read thrown away (a failed run) keeps its cursor, so the next read
 * looks from the same CSN.  A users' cookie without a CSN (a database
 * never written through syncprov) searches every container.
 *
 * Up to cursor version 2 this was a third sync search, with a cookie of
 * its own; but slapd 2.5.13 replays its whole session log for every sync
 * search of a read, whatever its base and filter, at a cost quadratic in
 * the logged changes (bench/syncprov_replay.sh), and a plain search does
 * not pay it: a third of slapd's replay less a read.  Proportional to
 * the changed containers' subtrees; a container moved out of the base is
 * not found (it is not beneath it any more): left to the next full read
 * (full_every), as before. ---- */

/* The containers' entry_fn: the DN of a container found, to p->found. */
static int on_container(struct pull *p, const struct entry *e)
{
	char *dn = strndup(e->dn.bv_val, e->dn.bv_len);
	int r = dn && p->found ? 0 : -ENOMEM;
	if (r >= 0 && ids_strv_push(p->found, dn) < 0)
		r = -ENOMEM;
	free(dn);
	return r;
}

/* A user or group of a re-read subtree into the image, keyed by its
 * entryUUID; its old DN and its new one go to the refint fix-up's list
 * when they differ. */
static int reread_one(struct pull *p, const struct entry *e, unsigned kind)
{
	const struct berval *u = ids_ldap_entry_first(e, "entryUUID");
	if (!u || !u->bv_len)
		return ids_error_set(p->err, IDS_E_PROTOCOL, "%s: %.*s came without its entryUUID", p->uri,
				     (int)e->dn.bv_len, e->dn.bv_val);
	char *key = strndup(u->bv_val, u->bv_len);
	if (!key)
		return -ENOMEM;
	struct sync s = {.kind = kind, .moved = p->moved};
	int r = note_move(p, &s, key, &e->dn);
	p->img_key = key;
	if (r >= 0)
		r = kind == IDS_IMAGE_USERS ? ids_ldap_on_user(p, e) : ids_ldap_on_group(p, e);
	p->img_key = NULL;
	free(key);
	return r;
}

static int reread_user(struct pull *p, const struct entry *e)
{
	return reread_one(p, e, IDS_IMAGE_USERS);
}

static int reread_group(struct pull *p, const struct entry *e)
{
	return reread_one(p, e, IDS_IMAGE_GROUPS);
}

/* attrs + entryUUID into out (new), NULL-terminated. */
static const char **with_uuid(const char *const *attrs)
{
	size_t n = 0;
	while (attrs[n])
		n++;
	const char **out = calloc(n + 2, sizeof(*out));
	if (out) {
		memcpy(out, attrs, n * sizeof(*out));
		out[n] = "entryUUID";
	}
	return out;
}

/* The users and groups beneath each container in dns. */
static int reread_containers(struct pull *p, const struct pull_attrs *a, const char *ufilter,
			     const char *gfilter, const struct ids_strv *dns)
{
	const char **ua = with_uuid(a->user), **ga = with_uuid(a->group);
	int r = ua && ga ? 0 : -ENOMEM;
	for (size_t i = 0; r >= 0 && i < dns->n; i++) {
		const struct search us = {"users (renamed container)", dns->v[i], (char *)ufilter,
					  (char **)ua, reread_user};
		const struct search gs = {"groups (renamed container)", dns->v[i], (char *)gfilter,
					  (char **)ga, reread_group};
		/* its users did not change: their flags are not in the set yet */
		r = read_disabled(p, a, ufilter, dns->v[i], NULL);
		if (r >= 0)
			r = ids_ldap_run_search(p, &us);
		if (r >= 0 && under(dns->v[i], p->lc->groups_base))
			r = ids_ldap_run_search(p, &gs);
	}
	free(ua);
	free(ga);
	return r;
}

/* The containers' filter: what under the users' base is neither a user
 * nor a group (new, NULL on ENOMEM). */
static char *container_filter(const struct pull *p, const char *ufilter, const char *gfilter)
{
	char *f = NULL;
	if (asprintf(&f, "(!(|%s%s))", ufilter, p->lc->groups_base ? gfilter : "") < 0)
		return NULL;
	return f;
}

/* The containers under the users' base changed since csn (every one when
 * NULL), each one's users and groups read again beneath it; `moved` is
 * the refint fix-up's list. */
static int follow_containers(struct pull *p, const struct pull_attrs *a, const char *ufilter,
			     const char *gfilter, const char *csn, struct ids_strv *moved)
{
	static char *none[] = {"1.1", NULL};
	char *cfilter = container_filter(p, ufilter, gfilter);
	struct ids_buf f = {0};
	struct ids_strv dns = {0};
	int r = cfilter ? ids_buf_printf(&f, "(&%s", cfilter) : -ENOMEM;
	if (r >= 0)
		r = csn_term(&f, csn);
	if (r >= 0)
		r = ids_buf_putc(&f, ')');
	if (r >= 0) {
		/* a plain search: no session log replayed for it */
		const struct search cs = {"containers", p->lc->users_base, f.p, none, on_container};
		p->found = &dns;
		r = ids_ldap_run_search(p, &cs);
		p->found = NULL;
	}
	p->moved = moved;
	if (r >= 0)
		r = reread_containers(p, a, ufilter, gfilter, &dns);
	p->moved = NULL;
	ids_strv_free(&dns);
	ids_buf_free(&f);
	free(cfilter);
	return r < 0 ? r : 0;
}

/* After a whole refresh of the users that sent none: a plain search
 * that finds one means syncprov hides them — its contextCSN is older
 * than the entries (a database loaded with slapadd without -w; measured
 * on 2.5.13: it sends only the entries whose entryCSN is not newer).
 * Refused, rather than read as an empty directory. */
static int check_hidden(struct pull *p, const char *ufilter)
{
	static char *none[] = {"1.1", NULL};
	LDAPMessage *res = NULL;
	struct timeval tv = {.tv_sec = p->timeout > 0 ? p->timeout : 30};
	int lrc = ldap_search_ext_s(p->ld, p->lc->users_base, LDAP_SCOPE_SUBTREE, ufilter, none, 0, NULL,
				    NULL, &tv, 1, &res);
	int n = res ? ldap_count_entries(p->ld, res) : 0;
	ldap_msgfree(res);
	if (n > 0 || lrc == LDAP_SIZELIMIT_EXCEEDED)
		return ids_error_set(p->err, IDS_E_SERVER,
				     "%s: the users feed under %s sent no user, but a search finds some: "
				     "syncprov's contextCSN is older than the entries (loaded with slapadd "
				     "without -w?); one ordinary write to the database ends this",
				     p->uri, p->lc->users_base);
	return 0;
}

/* ---- one sync search for the users and the groups ----
 * slapd 2.5 replays its whole session log for every sync search, at a
 * cost quadratic in the changes logged and whatever the search's base
 * and filter (bench/syncprov_replay.sh).  So when the users' and the
 * groups' bases are apart (neither beneath the other, as ou=people and
 * ou=groups are), the feed asks once: beneath the DN both are beneath,
 * for the users beneath the users' base and the groups beneath the
 * groups' (OpenLDAP's entryDN:dnSubtreeMatch), each entry told by its
 * DN.  Its one cookie is the cursor's users' and groups' cookie both.
 * Only from a cookie: a read without one (the first, full_every) has no
 * log to replay, and slapd finds every entry faster beneath each base.
 * Bases that nest keep a search each: there a DN does not say which
 * filter its entry matched. */

/* The searches of one read, and what they borrow. */
struct reads {
	struct search users, groups, both;
	bool one;	       /* `both` instead of `users` and `groups` */
	char *nbase[2];	       /* the users' and the groups' bases, normalized */
	char *common, *filter; /* both's */
	const char **attrs;    /* both's */
};

/* a's names and b's not in a, NULL-terminated (new). */
static const char **attrs_union(const char *const *a, const char *const *b)
{
	size_t na = 0, nb = 0;
	while (a[na])
		na++;
	while (b[nb])
		nb++;
	const char **out = calloc(na + nb + 1, sizeof(*out));
	if (!out)
		return NULL;
	memcpy(out, a, na * sizeof(*out));
	for (size_t j = 0, n = na; j < nb; j++) {
		size_t i = 0;
		while (i < na && strcasecmp(a[i], b[j]))
			i++;
		if (i == na)
			out[n++] = b[j];
	}
	return out;
}

/* The DN both normalized bases are beneath when neither is beneath the
 * other (new, in *ret), else NULL.  Canonical DNs escape every comma of
 * a value: each ',' is an RDN's end. */
static int common_base(char *const nb[2], char **ret)
{
	*ret = NULL;
	if (under_norm(nb[0], nb[1]) || under_norm(nb[1], nb[0]))
		return 0;
	for (const char *c = strchr(nb[0], ','); c; c = strchr(c + 1, ','))
		if (under_norm(nb[1], c + 1))
			return (*ret = strdup(c + 1)) ? 0 : -ENOMEM;
	return 0;
}

/* "(|(&UF(entryDN:dnSubtreeMatch:=UB))(&GF(entryDN:dnSubtreeMatch:=GB)))" */
static int both_filter(struct ids_buf *f, const char *ufilter, const char *gfilter, char *const nb[2])
{
	const char *filters[2] = {ufilter, gfilter};
	int r = ids_buf_puts(f, "(|");
	for (int i = 0; r >= 0 && i < 2; i++) {
		if ((r = ids_buf_printf(f, "(&%s(entryDN:dnSubtreeMatch:=", filters[i])) >= 0 &&
		    (r = ids_dn_filter_escape(f, nb[i], strlen(nb[i]))) >= 0)
			r = ids_buf_puts(f, "))");
	}
	return r < 0 ? r : ids_buf_putc(f, ')');
}

/* The read's searches into rd (reads_free). */
static int reads_init(struct pull *p, const struct pull_attrs *a, const char *ufilter, const char *gfilter,
		      struct reads *rd)
{
	const struct ids_ldap_cfg *lc = p->lc;
	struct ids_buf f = {0};
	*rd = (struct reads){
	    .users = {"users", lc->users_base, (char *)ufilter, (char **)a->user, ids_ldap_on_user},
	    .groups = {"groups", lc->groups_base, (char *)gfilter, (char **)a->group, ids_ldap_on_group}};
	if (!lc->groups_base || ids_dn_normalize(lc->users_base, strlen(lc->users_base), &rd->nbase[0]) < 0 ||
	    ids_dn_normalize(lc->groups_base, strlen(lc->groups_base), &rd->nbase[1]) < 0)
		return 0; /* a base that does not parse: the searches say so */
	int r = common_base(rd->nbase, &rd->common);
	if (r < 0 || !rd->common)
		return r;
	if ((r = both_filter(&f, ufilter, gfilter, rd->nbase)) < 0 ||
	    !(rd->attrs = attrs_union(a->user, a->group))) {
		ids_buf_free(&f);
		return -ENOMEM;
	}
	rd->filter = ids_buf_steal(&f);
	rd->both = (struct search){"users and groups", rd->common, rd->filter, (char **)rd->attrs, NULL};
	rd->one = true;
	p->feed_bases[0] = rd->nbase[0];
	p->feed_bases[1] = rd->nbase[1];
	return 0;
}

static void reads_free(struct pull *p, struct reads *rd)
{
	p->feed_bases[0] = p->feed_bases[1] = NULL;
	free(rd->nbase[0]);
	free(rd->nbase[1]);
	free(rd->common);
	free(rd->filter);
	free(rd->attrs);
}

/* Where one search goes on from, into *uc (*gc freed): the older of the
 * cursor's two cookies, which misses nothing the other saw (they differ
 * in a cursor of a search each: an upgrade); none when either is
 * missing (what it did not see is read whole).  A search each: both
 * stay. */
static void first_cookie(const struct reads *rd, struct berval **uc, struct berval **gc)
{
	if (!rd->one)
		return;
	char *cu = cookie_csn(*uc), *cg = cookie_csn(*gc);
	bool groups_older = cu && cg && strcmp(cg, cu) < 0;
	free(cu);
	free(cg);
	struct berval *keep = *uc && *gc ? (groups_older ? *gc : *uc) : NULL;
	if (*uc != keep)
		ids_sync_cookie_free(*uc);
	if (*gc != keep)
		ids_sync_cookie_free(*gc);
	*uc = keep;
	*gc = NULL;
}

/* The users' sync search (with the groups' when rd->one) from *uc; when
 * the cookie is refused, everything from no cookie after every disabled
 * user is read (that refresh sends every user, whose flags need them all):
 * once, not first with the disabled users changed since the cookie. */
static int read_users(struct pull *p, const struct pull_attrs *a, const struct reads *rd, const char *csn,
		      struct berval **uc, struct ids_feed_pull *fp, struct ids_strv *moved)
{
	const struct search *sr = rd->one ? &rd->both : &rd->users;
	unsigned kind = rd->one ? BOTH : IDS_IMAGE_USERS;
	int r = read_disabled(p, a, rd->users.filter, p->lc->users_base, csn);
	if (r >= 0)
		r = sync_search(p, sr, kind, uc, !csn, fp, moved);
	if (r >= 0 && csn && fp->reset_reason) {
		if ((r = read_disabled(p, a, rd->users.filter, p->lc->users_base, NULL)) >= 0)
			r = sync_search(p, sr, kind, uc, true, fp, moved);
	}
	return r;
}

/* The cursor's cookies after the read: one search's twice (new). */
static int end_cursor(struct pull *p, const struct reads *rd, const struct berval *uc,
		      const struct berval *gc, struct ids_feed_pull *fp)
{
	const struct berval none = {0};
	const struct berval *g = rd->one ? uc : gc;
	struct cookies now = {.users = uc ? *uc : none, .groups = g ? *g : none};
	return make_cursor(p, &now, fp);
}

static int do_feed(struct pull *p, void *arg)
{
	struct ids_feed_pull *fp = arg;
	const struct ids_ldap_cfg *lc = p->lc;
	const struct ids_ldap_flavor_defaults *def = ids_config_ldap_defaults(lc->flavor);
	const char *ufilter = lc->users_filter ? lc->users_filter : def->users_filter;
	const char *gfilter = lc->groups_filter ? lc->groups_filter : def->groups_filter;
	struct pull_attrs a = {0};
	struct reads rd = {0};
	struct cookies old;
	struct berval *uc = NULL, *gc = NULL;
	struct ids_strv moved = {0}, sent = {0};
	const char *why = NULL;
	char *csn = NULL;
	int r;

	if (lc->flavor != IDS_LDAP_OPENLDAP)
		return ids_error_set(p->err, IDS_E_UNSUPPORTED,
				     "the LDAP change feed is OpenLDAP's syncrepl");
	if (!lc->users_base)
		return ids_error_set(p->err, IDS_E_CONFIG, "no users base configured");
	if (parse_cursor(p, fp->cursor, fp->cursor_len, &old, &why) > 0 && !(fp->reset_reason = strdup(why)))
		return -ENOMEM;
	r = (old.users.bv_len && !(uc = dup_cookie(&old.users))) ||
		    (old.groups.bv_len && !(gc = dup_cookie(&old.groups)))
		? -ENOMEM
		: ids_ldap_pull_attrs(p, &a);
	if (r < 0 || (r = reads_init(p, &a, ufilter, gfilter, &rd)) < 0)
		goto out;
	first_cookie(&rd, &uc, &gc);
	/* a whole refresh sends every entry, and slapd finds them faster
	 * beneath each base than by testing entryDN on each: a search each */
	rd.one = rd.one && uc;
	p->sent = &sent;
	csn = uc ? cookie_csn(uc) : NULL;
	if ((r = ids_ldap_connect(p)) < 0 || (r = read_users(p, &a, &rd, csn, &uc, fp, &moved)) < 0)
		goto out;
	if ((!old.users.bv_len || fp->reset_reason) && !ids_image_nusers(p->img))
		r = check_hidden(p, ufilter);
	/* without a users' cookie used, every user was read whole: no
	 * container can hide a renamed one */
	if (r >= 0 && old.users.bv_len && !fp->reset_reason)
		r = follow_containers(p, &a, ufilter, gfilter, csn, &moved);
	if (r >= 0 && lc->groups_base && !rd.one)
		r = sync_search(p, &rd.groups, IDS_IMAGE_GROUPS, &gc, true, fp, &moved);
	if (r >= 0 && lc->groups_base)
		r = refint_fixup(p, &a, gfilter, &moved);
	if (r >= 0)
		r = end_cursor(p, &rd, uc, gc, fp);
out:
	ids_sync_cookie_free(uc);
	ids_sync_cookie_free(gc);
	free(csn);
	ids_strv_free(&moved);
	ids_strv_free(&sent);
	p->sent = NULL;
	reads_free(p, &rd);
	ids_ldap_pull_attrs_free(&a);
	return r;
}

int ids_ldap_pull_changes(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
			  struct ids_feed_pull *fp, struct ids_error *err)
{
	if (!fp || !fp->image)
		return ids_error_set(err, -EINVAL, "LDAP change feed without an image");
	*fp = (struct ids_feed_pull){.image = fp->image, .cursor = fp->cursor, .cursor_len = fp->cursor_len};
	int r = ids_ldap_session(cfg, ctx, NULL, fp->image, do_feed, fp, err);
	if (r < 0)
		ids_feed_pull_clear(fp);
	return r;
}
