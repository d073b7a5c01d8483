/* ctest_ldap_feed.h — what the change-feed tests share (ctest_ldap_feed,
 * ctest_ldap_refint): a snapshot as text, the feed's (image, cursor) pair
 * read and committed or thrown away as a run would, the comparison with a
 * full read, and the directory edits the tests make. */
#ifndef CTEST_LDAP_FEED_H
#define CTEST_LDAP_FEED_H

#include "ctest_ldap_common.h"

#include "ids/image.h"

static const char *g_sync_dn, *g_sync_pw_file;
static char g_ou[256], g_people[DN_MAX], g_groups[DN_MAX];

/* ---- a snapshot as text ---- */

static inline char *snapshot_text(const struct ids_snapshot *s)
{
	struct ids_buf b = {0};
	assert_int_equal(ids_buf_puts(&b, ""), 0);
	for (size_t i = 0; i < s->nusers; i++) {
		const struct ids_user *u = &s->users[i];
		for (int f = 0; f < IDS_F__COUNT; f++)
			ids_buf_printf(&b, "%s|", u->f[f] ? u->f[f] : "-");
		ids_buf_printf(&b, "%s%s attrs", u->disabled ? "disabled" : "enabled",
			       u->invalid ? " invalid" : "");
		for (size_t a = 0; a < u->nattrs; a++)
			for (size_t v = 0; v < u->attrs[a].nvalues; v++)
				ids_buf_printf(&b, " %s=%s", u->attrs[a].name, u->attrs[a].values[v]);
		ids_buf_puts(&b, " groups");
		for (size_t g = 0; g < u->ngroups; g++)
			ids_buf_printf(&b, " %s", s->groups[u->groups[g]].name);
		ids_buf_putc(&b, '\n');
	}
	for (size_t i = 0; i < s->ngroups; i++) {
		const struct ids_group *g = &s->groups[i];
		ids_buf_printf(&b, "group %s %s %s parents", g->id, g->name, g->dn ? g->dn : "-");
		for (size_t p = 0; p < g->nparents; p++)
			ids_buf_printf(&b, " %s", s->groups[g->parents[p]].name);
		ids_buf_putc(&b, '\n');
	}
	ids_buf_printf(&b, "unresolved %zu\n", s->unresolved_members);
	return ids_buf_steal(&b);
}

/* A full read, as text. */
static inline char *full_text(struct tcfg *t)
{
	struct pulled p;
	do_pull(t, &p);
	assert_pull_ok(&p);
	char *txt = snapshot_text(p.s);
	pulled_free(&p);
	return txt;
}

static inline char *image_text(const struct ids_image *img)
{
	struct ids_snapshot *s = NULL;
	assert_int_equal(ids_snapshot_new(&s), 0);
	assert_int_equal(ids_image_replay(img, s), 0);
	assert_int_equal(ids_snapshot_finish(s), 0);
	char *txt = snapshot_text(s);
	ids_snapshot_free(s);
	return txt;
}

/* The feed's state between reads, as the store would keep it. */
struct feed {
	struct ids_image *img;
	unsigned char *cursor;
	size_t cursor_len;
	char fixup[160]; /* the last read's "member fix-up: …" debug line, "" when none */
};

static inline void feed_debug(void *ud, const char *line)
{
	struct feed *f = ud;
	if (!strncmp(line, "member fix-up: ", 15))
		snprintf(f->fixup, sizeof(f->fixup), "%s", line);
}

/* One read of the feed; the image is committed and the cursor kept
 * unless `discard` (a run that failed after its read).  The read's
 * struct is returned with its out fields (caller frees reset_reason). */
static inline struct ids_feed_pull feed_read(struct tcfg *t, struct feed *f, bool discard)
{
	struct ids_feed_pull fp = {.image = f->img, .cursor = f->cursor, .cursor_len = f->cursor_len};
	struct ids_error e = {0};
	const struct ids_pull_ctx ctx = {
	    .config = &t->config, .rule_attrs = &t->rule_attrs, .debug = feed_debug, .ud = f};
	const struct ids_connector_ops *ops = ids_connector_find(IDS_CONN_LDAP);
	assert_non_null(ops->pull_changes);
	f->fixup[0] = '\0';
	int r = ops->pull_changes(&t->cc, &ctx, &fp, &e);
	if (r < 0)
		fail_msg("feed failed (%d): %s", r, ids_error_text(&e));
	assert_non_null(fp.new_cursor);
	if (discard) {
		ids_image_rollback(f->img);
		free(fp.new_cursor);
	} else {
		ids_image_commit(f->img);
		free(f->cursor);
		f->cursor = fp.new_cursor;
		f->cursor_len = fp.new_cursor_len;
	}
	fp.new_cursor = NULL;
	ids_error_clear(&e);
	return fp;
}

/* The image equals a full read of the directory now. */
static inline void assert_converged(struct tcfg *t, const struct feed *f, const char *when)
{
	char *want = full_text(t), *got = image_text(f->img);
	if (strcmp(got, want))
		fail_msg("%s: the feed's image differs from a full read\nimage:\n%s\nfull read:\n%s", when,
			 got, want);
	free(want);
	free(got);
}

static inline void tcfg_sync(struct tcfg *t)
{
	tcfg_init(t, E.uri, g_people, g_groups);
	free(t->pw);
	t->pw = read_file(g_sync_pw_file);
	t->cc.ldap.bind_dn = (char *)g_sync_dn;
	t->cc.ldap.bind_password = t->pw;
	t->cc.ldap.disabled_filter = (char *)"(description=disabled)";
	assert_int_equal(ids_strv_push(&t->rule_attrs, "departmentNumber"), 0);
}

/* ---- the directory side ---- */

static inline void modify(LDAP *ld, const char *dn, int op, const char *type, const char *value)
{
	char *vals[] = {(char *)value, NULL};
	LDAPMod m = {.mod_op = op, .mod_type = (char *)type, .mod_values = value ? vals : NULL};
	LDAPMod *mods[] = {&m, NULL};
	int rc = ldap_modify_ext_s(ld, dn, mods, NULL, NULL);
	if (rc != LDAP_SUCCESS)
		fail_msg("modify %s (%s %s): %s", dn, type, value ? value : "", ldap_err2string(rc));
}

static inline void del(LDAP *ld, const char *dn)
{
	int rc = ldap_delete_ext_s(ld, dn, NULL, NULL);
	if (rc != LDAP_SUCCESS)
		fail_msg("delete %s: %s", dn, ldap_err2string(rc));
}

static inline void rename_to(LDAP *ld, const char *dn, const char *rdn, const char *parent)
{
	int rc = ldap_rename_s(ld, dn, rdn, parent, 1, NULL, NULL);
	if (rc != LDAP_SUCCESS)
		fail_msg("rename %s to %s: %s", dn, rdn, ldap_err2string(rc));
}

static inline void udn(char *buf, const char *uid)
{
	snprintf(buf, 512, "uid=%s,%s", uid, g_people);
}

static inline void gdn(char *buf, const char *cn)
{
	snprintf(buf, 512, "cn=%s,%s", cn, g_groups);
}

static inline void group(LDAP *ld, const char *cn, const char *m1, const char *m2)
{
	char dn[512];
	gdn(dn, cn);
	if (m2)
		add_entry(ld, dn, "objectClass", "groupOfNames", "cn", cn, "member", m1, "member", m2, NULL);
	else
		add_entry(ld, dn, "objectClass", "groupOfNames", "cn", cn, "member", m1, NULL);
}

/* A test's end: its feed, its subtree, its configuration, its connection. */
static inline void feed_test_end(struct tcfg *t, struct feed *f, LDAP *ld)
{
	ids_image_free(f->img);
	free(f->cursor);
	delete_tree(ld, g_ou);
	tcfg_free(t);
	ldap_unbind_ext_s(ld, NULL, NULL);
}

#endif
