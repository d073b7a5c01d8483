/* ldap_target.c — the targeted read of the LDAP connector (`sync --user`,
 * explain, the daemon's NOTIFY): the person, and the groups above them.
 *
 * A full read resolves nesting from every group's member list; a read of
 * one person cannot afford that (All-Staff has 99,000 members at tier M,
 * and reading it made a one-person run take seconds).  Instead the walk
 * asks the server which groups name the person — (member=DN) or
 * (uniqueMember=DN), (memberUid=username) for posixGroups — then which
 * groups name those groups, level by level until no new group turns up.
 * The searches ask for the group's id, cn and mail only, never its
 * members: the memberships the snapshot gets are exactly the edges the
 * walk found (person -> group, group -> parent), which are all the
 * builder needs to compute that person's transitive groups the way a
 * full read does.  The groups filter and base are the full read's, so a
 * group the full read would not see is not seen here either.
 *
 * Active Directory keeps the whole read (ldap.c): its primary group is
 * not in any `member` value and needs the SID lookups of ldap_ad.c. */
#include <errno.h>
#include <ldap.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ids/dn.h"
#include "ids/snapshot.h"
#include "ids/util.h"
#include "ldap_int.h"

/* The walk's state, hung on p->walk for the search callbacks. */
struct walk {
	struct ids_arena keys;	  /* keys of `queued` */
	struct ids_strmap queued; /* "D" DN / "U" username searched or to search */
	struct ids_strv todo;	  /* the same keys, in the order found; "V" DN#UID */
	const char *ref;	  /* the value the current search asks for, borrowed */
	size_t nref;		  /* its length without a uniqueMember UID */
	enum ids_ref kind;	  /* and how a group names it */
	const char *mattr[4];	  /* the member attributes, NULL-terminated */
};

/* the UID a uniqueMember value may carry after the DN (RFC 4519) */
#define UID_ATTR "x500UniqueIdentifier"

static const char *const default_mattrs[] = {"member", "uniqueMember", "memberUid", NULL};

int ids_ldap_walk_begin(struct pull *p)
{
	struct walk *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	if (p->lc->member_attribute)
		w->mattr[0] = p->lc->member_attribute;
	else
		memcpy(w->mattr, default_mattrs, sizeof(default_mattrs));
	p->walk = w;
	return 0;
}

void ids_ldap_walk_free(struct pull *p)
{
	struct walk *w = p->walk;
	if (!w)
		return;
	ids_strmap_free(&w->queued);
	ids_arena_free(&w->keys);
	ids_strv_free(&w->todo);
	free(w);
	p->walk = NULL;
}

/* Queues kind+v for a search: 1 when new, 0 when queued before. */
static int enqueue(struct walk *w, char kind, const char *v, size_t n)
{
	if (memchr(v, '\0', n)) /* a value with a NUL byte names nothing */
		return 0;
	char *k = malloc(n + 2);
	if (!k)
		return -ENOMEM;
	k[0] = kind;
	memcpy(k + 1, v, n);
	k[n + 1] = '\0';
	int r = 0;
	if (!ids_strmap_get(&w->queued, k, NULL)) {
		char *kept = ids_arena_strndup(&w->keys, k, n + 1);
		r = !kept ? -ENOMEM : ids_strmap_put(&w->queued, kept, 0, NULL);
		if (r >= 0)
			r = ids_strv_push(&w->todo, k);
		r = r < 0 ? r : 1;
	}
	free(k);
	return r;
}

static bool has_mattr(const struct walk *w, const char *name)
{
	for (size_t i = 0; w->mattr[i]; i++)
		if (!strcasecmp(w->mattr[i], name))
			return true;
	return false;
}

/* An entry's DN onto the walk, and for uniqueMember also DN#UID per
 * value of its x500UniqueIdentifier: OpenLDAP's uniqueMemberMatch does
 * not match a value that carries a UID ("DN#'0101'B", RFC 4517's
 * nameAndOptionalUID) with an assertion that has none.  1 when the DN
 * was new. */
static int enqueue_dn(struct pull *p, const struct entry *e)
{
	struct walk *w = p->walk;
	int added = enqueue(w, 'D', e->dn.bv_val, e->dn.bv_len);
	if (added < 0 || !has_mattr(w, "uniqueMember"))
		return added;
	BerVarray v = NULL;
	for (size_t i = 0; i < e->n && !v; i++)
		if (e->a[i].name.bv_len == strlen(UID_ATTR) &&
		    !strncasecmp(e->a[i].name.bv_val, UID_ATTR, strlen(UID_ATTR)))
			v = e->a[i].vals;
	struct ids_buf b = {0};
	int r = 0;
	for (size_t j = 0; r >= 0 && v && v[j].bv_val; j++) {
		ids_buf_reset(&b);
		if ((r = ids_buf_add(&b, e->dn.bv_val, e->dn.bv_len)) >= 0 &&
		    (r = ids_buf_putc(&b, '#')) >= 0 && (r = ids_buf_add(&b, v[j].bv_val, v[j].bv_len)) >= 0)
			r = enqueue(w, 'V', b.p, b.len);
	}
	ids_buf_free(&b);
	return r < 0 ? r : added;
}

/* The users search's callback: the user into the snapshot, and their DN
 * (and username, for memberUid) onto the walk. */
int ids_ldap_walk_on_user(struct pull *p, const struct entry *e)
{
	int r = ids_ldap_on_user(p, e);
	if (r < 0)
		return r;
	if ((r = enqueue_dn(p, e)) < 0)
		return r;
	const struct berval *u = ids_ldap_entry_first(e, p->attr[IDS_F_USERNAME]);
	if (u && has_mattr(p->walk, "memberUid") && (r = enqueue(p->walk, 'U', u->bv_val, u->bv_len)) < 0)
		return r;
	return 0;
}

/* A group that names the current value: the group into the snapshot the
 * first time the walk meets it (and onto the walk), the edge every time. */
static int on_group(struct pull *p, const struct entry *e)
{
	struct walk *w = p->walk;
	struct berval id = ids_ldap_entry_id(p, e);
	int r = ids_ldap_first_time(p, e, &id);
	if (r <= 0)
		return r;
	if ((r = enqueue_dn(p, e)) < 0)
		return r;
	if (r == 1) {
		const struct berval *cn = ids_ldap_entry_first(e, "cn");
		const struct berval *mail = ids_ldap_entry_first(e, "mail");
		r = ids_snapshot_group_begin(p->s);
		if (r >= 0 && id.bv_val)
			r = ids_snapshot_group_set(p->s, IDS_F_EXTERNAL_ID, id.bv_val, id.bv_len);
		if (r >= 0 && cn)
			r = ids_snapshot_group_set(p->s, IDS_F_USERNAME, cn->bv_val, cn->bv_len);
		if (r >= 0 && mail)
			r = ids_snapshot_group_set(p->s, IDS_F_EMAIL, mail->bv_val, mail->bv_len);
		if (r >= 0)
			r = ids_snapshot_group_set(p->s, IDS_F_DN, e->dn.bv_val, e->dn.bv_len);
		/* the edge that found the group, inside its record: this needs
		 * no id (a group without one is the builder's to refuse) */
		if (r >= 0)
			r = ids_snapshot_group_member(p->s, w->kind, w->ref, w->nref);
		return r < 0 ? r : ids_snapshot_group_end(p->s);
	}
	/* met before: the edge by the group's id */
	if (!id.bv_val || !id.bv_len || memchr(id.bv_val, '\0', id.bv_len))
		return 0;
	char *gid = strndup(id.bv_val, id.bv_len);
	if (!gid)
		return -ENOMEM;
	r = ids_snapshot_member(p->s, gid, w->kind, w->ref, w->nref);
	free(gid);
	return r;
}

/* "(&GFILTER(|(A=V)...))" over the member attributes that name a value of
 * this kind (DN: member, uniqueMember; username: memberUid), V escaped
 * (RFC 4515).  *ret NULL when no attribute does. */
static int walk_filter(const struct walk *w, const char *gfilter, const char *key, char **ret)
{
	struct ids_buf b = {0};
	size_t n = 0;
	int r = ids_buf_printf(&b, "(&%s(|", gfilter);
	*ret = NULL;
	for (size_t i = 0; r >= 0 && w->mattr[i]; i++) {
		bool uid = !strcasecmp(w->mattr[i], "memberUid");
		if (uid != (key[0] == 'U') || (key[0] == 'V' && strcasecmp(w->mattr[i], "uniqueMember")))
			continue;
		n++;
		if ((r = ids_buf_printf(&b, "(%s=", w->mattr[i])) >= 0 &&
		    (r = ids_dn_filter_escape(&b, key + 1, strlen(key + 1))) >= 0)
			r = ids_buf_puts(&b, ")");
	}
	if (r >= 0)
		r = ids_buf_puts(&b, "))");
	if (r < 0 || !n) {
		ids_buf_free(&b);
		return r < 0 ? -ENOMEM : 0;
	}
	*ret = b.p;
	return 0;
}

/* The groups search of a targeted read: the walk from the users the users
 * search queued, up to the top. */
int ids_ldap_walk_groups(struct pull *p, const char *gfilter)
{
	struct walk *w = p->walk;
	char *attrs[5] = {(char *)p->attr[IDS_F_EXTERNAL_ID], "cn", "mail", UID_ATTR, NULL};
	int r = 0;
	/* todo grows while it is walked: each DN is queued once, so this ends */
	for (size_t i = 0; r >= 0 && i < w->todo.n; i++) {
		const char *key = w->todo.v[i];
		char *filter = NULL;
		if ((r = walk_filter(w, gfilter, key, &filter)) < 0 || !filter)
			continue;
		w->ref = key + 1;
		w->nref = strlen(w->ref);
		/* "DN#'0101'B": the edge names the DN */
		if (key[0] == 'V')
			for (size_t k = w->nref; k-- > 1;)
				if (w->ref[k] == '#' && w->ref[k + 1] == '\'') {
					w->nref = k;
					break;
				}
		w->kind = key[0] == 'U' ? IDS_REF_USERNAME : IDS_REF_DN;
		const struct search sr = {"groups naming the user", p->lc->groups_base, filter, attrs,
					  on_group};
		r = ids_ldap_run_search(p, &sr);
		free(filter);
	}
	return r < 0 ? r : 0;
}
