/* ldap_watch.c — the doorbell of a persist: true connector (ids/ldap_watch.h).
 *
 * Why a doorbell and not a second data path: the incremental run already
 * applies a feed correctly (image, refint fix-up, renamed containers,
 * thresholds) and commits its cursor with its changes in one transaction.
 * A persistent search that applied changes itself would need all of that
 * again, and its own crash story.  This one only decides *when* the run
 * happens; a dropped connection or a kill -9 loses nothing, because the
 * run reads from the stored cursor, never from what the doorbell saw. */
#include <errno.h>
#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/ldap_watch.h"
#include "ldap_int.h"
#include "ldap_sync.h"

enum { W_USERS, W_GROUPS, W_N };

struct ids_ldap_watch {
	struct pull p;		 /* the connection; p.ctx is &ctx */
	struct ids_pull_ctx ctx; /* a copy without the hook once open */
	struct ids_error err;	 /* p.err during open */
	int msgid[W_N];		 /* -1: no such search (no groups base) */
	bool refreshed[W_N];	 /* its refresh phase ended */
	bool refused;		 /* a search ended: the server refused its cookie */
	char *ufilter;		 /* the users' search's: users and containers */
};

static const char *const what[W_N] = {"users'", "groups'"};

/* Sends search i in refreshAndPersist mode from cookie. */
static int send_persist(struct ids_ldap_watch *w, int i, const char *base, const char *filter,
			const struct berval *cookie, struct ids_error *err)
{
	static char *none[] = {"1.1", NULL};
	struct berval value = {0};
	int r = ids_sync_request_encode(true, cookie, &value);
	if (r < 0)
		return ids_error_set(err, r, "persist: encoding the sync request: %s", ids_strerror(r));
	/* critical, as the feed's: a server without syncprov must refuse */
	LDAPControl ctrl = {
	    .ldctl_oid = (char *)IDS_SYNC_REQUEST_OID, .ldctl_value = value, .ldctl_iscritical = 1};
	LDAPControl *sctrls[] = {&ctrl, NULL};
	int lrc = ldap_search_ext(w->p.ld, base, LDAP_SCOPE_SUBTREE, filter, none, 0, sctrls, NULL, NULL,
				  LDAP_NO_LIMIT, &w->msgid[i]);
	ber_memfree(value.bv_val);
	if (lrc != LDAP_SUCCESS) {
		char *diag = ids_ldap_diag(w->p.ld);
		r = ids_ldap_error(err, ids_ldap_map_lrc(lrc), lrc, diag,
				   "%s: the persistent %s search under %s", w->p.uri, what[i], base);
		ldap_memfree(diag);
	}
	return r;
}

void ids_ldap_watch_close(struct ids_ldap_watch *w)
{
	if (!w)
		return;
	for (int i = 0; w->p.ld && i < W_N; i++)
		if (w->msgid[i] >= 0)
			(void)ldap_abandon_ext(w->p.ld, w->msgid[i], NULL, NULL);
	ids_ldap_pull_fini(&w->p);
	ids_error_clear(&w->err);
	free(w->ufilter);
	free(w);
}

/* What the users' search hears: each user, and every other entry
 * beneath the users' base but the groups (a renamed container moves
 * its users: the feed follows it with a plain search and keeps no cookie
 * of its own).  Beneath that base, "a user, or neither a user nor a
 * group" is "a user, or not a group": one search, not one for the users
 * and one for the containers — slapd replays its session log once for
 * every search it opens, and tests each write against each search it
 * holds.  New; NULL on ENOMEM. */
static char *users_filter(const struct ids_ldap_cfg *lc, const char *ufilter, const char *gfilter)
{
	char *f = NULL;
	if (!lc->groups_base)
		return strdup("(objectClass=*)");
	return asprintf(&f, "(|%s(!%s))", ufilter, gfilter) < 0 ? NULL : f;
}

/* Connects and sends the searches from the cursor's cookies k (users,
 * groups); < 0 with w->err set. */
static int watch_start(struct ids_ldap_watch *w, const struct berval k[2])
{
	const struct ids_ldap_cfg *lc = w->p.lc;
	const struct ids_ldap_flavor_defaults *def = ids_config_ldap_defaults(lc->flavor);
	const char *ufilter = lc->users_filter ? lc->users_filter : def->users_filter;
	const char *gfilter = lc->groups_filter ? lc->groups_filter : def->groups_filter;
	if (!(w->ufilter = users_filter(lc, ufilter, gfilter)))
		return -ENOMEM;
	int r = ids_ldap_connect(&w->p);
	if (r >= 0)
		r = send_persist(w, W_USERS, lc->users_base, w->ufilter, &k[W_USERS], &w->err);
	if (r >= 0 && lc->groups_base)
		r = send_persist(w, W_GROUPS, lc->groups_base, gfilter, &k[W_GROUPS], &w->err);
	return r;
}

int ids_ldap_watch_open(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
			const unsigned char *cursor, size_t cursor_len, struct ids_ldap_watch **ret,
			struct ids_error *err)
{
	struct berval k[2];
	*ret = NULL;
	if (!cfg || cfg->type != IDS_CONN_LDAP || cfg->ldap.flavor != IDS_LDAP_OPENLDAP ||
	    !cfg->ldap.users_base)
		return ids_error_set(err, IDS_E_UNSUPPORTED, "persist is OpenLDAP's refreshAndPersist");
	/* without a cookie a refresh sends the whole directory: a doorbell
	 * waits for the run that stores one instead */
	if (!ids_ldap_cursor_cookies(cursor, cursor_len, k) || !k[W_USERS].bv_len ||
	    (cfg->ldap.groups_base && !k[W_GROUPS].bv_len))
		return 1;
	struct ids_ldap_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return ids_error_set(err, -ENOMEM, "persist: out of memory");
	w->ctx = ctx ? *ctx : (struct ids_pull_ctx){0};
	for (int i = 0; i < W_N; i++)
		w->msgid[i] = -1;
	int r = ids_ldap_pull_init(&w->p, cfg, &w->ctx, NULL, NULL, &w->err);
	if (r < 0) {
		ids_error_set(err, r, "%s", ids_error_text(&w->err));
		ids_error_clear(&w->err);
		free(w);
		return r;
	}
	r = watch_start(w, k);
	if (r < 0) {
		ids_error_set(err, r, "%s", w->err.msg ? ids_error_text(&w->err) : ids_strerror(r));
		ids_ldap_watch_close(w);
		return r;
	}
	/* from here on nothing waits: the hook is not called again, and the
	 * caller's ctx may go */
	w->ctx.progress = NULL;
	w->ctx.ud = NULL;
	*ret = w;
	return 0;
}

int ids_ldap_watch_fd(const struct ids_ldap_watch *w)
{
	int fd = -1;
	if (!w || !w->p.ld || ldap_get_option(w->p.ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS)
		return -1;
	return fd;
}

bool ids_ldap_watch_refused(const struct ids_ldap_watch *w)
{
	return w->refused;
}

bool ids_ldap_watch_refreshed(const struct ids_ldap_watch *w)
{
	for (int i = 0; i < W_N; i++)
		if (w->msgid[i] >= 0 && !w->refreshed[i])
			return false;
	return true;
}

/* An entry: its syncState says whether it changed (present does not). */
static bool entry_rings(LDAP *ld, LDAPMessage *msg)
{
	LDAPControl **ctrls = NULL;
	enum ids_sync_state state = IDS_SYNC_MODIFY;
	char uuid[IDS_SYNC_UUID_TEXT];
	struct berval *cookie = NULL;
	if (ldap_get_entry_controls(ld, msg, &ctrls) == LDAP_SUCCESS) {
		LDAPControl *c = ldap_control_find(IDS_SYNC_STATE_OID, ctrls, NULL);
		/* one we cannot read rings: the run will find out */
		if (!c || ids_sync_state_decode(&c->ldctl_value, &state, uuid, &cookie) < 0)
			state = IDS_SYNC_MODIFY;
	}
	ids_sync_cookie_free(cookie);
	ldap_controls_free(ctrls);
	return state != IDS_SYNC_PRESENT;
}

/* A syncInfo: deletes ring; the end of a refresh phase marks it done,
 * and rings when it was a present phase (deletes implied by absence). */
static bool info_rings(struct ids_ldap_watch *w, int i, LDAPMessage *msg)
{
	char *oid = NULL;
	struct berval *data = NULL;
	struct ids_sync_info info;
	bool rings = false;
	if (ldap_parse_intermediate(w->p.ld, msg, &oid, &data, NULL, 0) != LDAP_SUCCESS)
		return true;
	if (oid && !strcmp(oid, IDS_SYNC_INFO_OID) && data) {
		if (ids_sync_info_decode(data, &info) < 0) {
			rings = true;
		} else {
			if (info.kind == IDS_SYNC_INFO_ID_SET)
				rings = info.refresh_deletes && info.nuuids > 0;
			if (info.kind == IDS_SYNC_INFO_REFRESH_PRESENT) {
				rings = true;
				w->refreshed[i] = w->refreshed[i] || info.refresh_done;
			}
			if (info.kind == IDS_SYNC_INFO_REFRESH_DELETE)
				w->refreshed[i] = w->refreshed[i] || info.refresh_done;
			ids_sync_info_clear(&info);
		}
	}
	ldap_memfree(oid);
	ber_bvfree(data);
	return rings;
}

/* The end of search i: a persistent search ends only when something
 * went wrong (or the server asks for a full refresh). */
static int search_ended(struct ids_ldap_watch *w, int i, LDAPMessage *msg, bool *rang, struct ids_error *err)
{
	char *diag = NULL;
	int code = LDAP_OTHER;
	(void)ldap_parse_result(w->p.ld, msg, &code, NULL, &diag, NULL, NULL, 0);
	w->msgid[i] = -1;
	int r;
	if (code == IDS_SYNC_REFRESH_REQUIRED || code == LDAP_UNWILLING_TO_PERFORM) {
		/* the cookie is no good any more: the run resets the feed */
		*rang = true;
		w->refused = true;
		r = ids_ldap_error(
		    err, IDS_E_SERVER, code, diag,
		    "%s: the server refused the cookie of the persistent %s search (the next run "
		    "resets the feed)",
		    w->p.uri, what[i]);
	} else {
		r = ids_ldap_error(err, code == LDAP_SUCCESS ? IDS_E_SERVER : ids_ldap_map_lrc(code), code,
				   diag, "%s: the persistent %s search ended", w->p.uri, what[i]);
	}
	ldap_memfree(diag);
	return r;
}

int ids_ldap_watch_read(struct ids_ldap_watch *w, bool *rang, struct ids_error *err)
{
	for (;;) {
		struct timeval zero = {0, 0};
		LDAPMessage *msg = NULL;
		int type = ldap_result(w->p.ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);
		if (type == 0)
			return 0;
		if (type < 0 || !ids_ldap_alive(&w->p)) {
			int code = LDAP_SERVER_DOWN;
			ldap_get_option(w->p.ld, LDAP_OPT_RESULT_CODE, &code);
			ldap_msgfree(msg);
			return ids_ldap_error(err, IDS_E_CONNECT, code, NULL,
					      "%s: the persistent search's connection was lost", w->p.uri);
		}
		int i = 0, id = ldap_msgid(msg);
		while (i < W_N && w->msgid[i] != id)
			i++;
		int r = 0;
		if (i == W_N)
			; /* an answer to nothing we asked (a notice of disconnection is type < 0) */
		else if (type == LDAP_RES_SEARCH_ENTRY)
			*rang = *rang || entry_rings(w->p.ld, msg);
		else if (type == LDAP_RES_INTERMEDIATE)
			*rang = info_rings(w, i, msg) || *rang;
		else if (type == LDAP_RES_SEARCH_RESULT)
			r = search_ended(w, i, msg, rang, err);
		ldap_msgfree(msg);
		if (r < 0)
			return r;
	}
}
