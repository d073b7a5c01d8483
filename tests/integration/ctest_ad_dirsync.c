/* ctest_ad_dirsync.c — Active Directory's change feed (DirSync) end to
 * end, against the Samba AD DC (tests/harness/samba.sh) and PostgreSQL:
 * the daemon's own runs (ids_sync_connector with the process's feeds:
 * this binary compiles daemon/, as ctest_sync_feed does for syncrepl),
 * because a one-shot `idsyncd sync` reads everything until the image is
 * stored (docs/changes.md).
 *
 * The test's own OU=ctest_ad_dirsync (people, groups, a sub-OU to
 * move to), changed with ldapmodify as Administrator the way an AD admin
 * does, step by step: a user added (to a group), a name changed, a member
 * removed and added back (DirSync's incremental values), a rename and a
 * move (the same row: objectGUID), disable and enable (userAccountControl),
 * a nested group taken out and put back, a delete (deleted_in_source),
 * a move out of the users base, a primary group (primaryGroupID) set,
 * its group changed, and set back.
 * After each: the run was incremental, the database shows the change, and
 * a plan that reads everything (`plan --full`) has nothing to do.
 *
 * Then the cursor's issuer: the connector registry is wrapped (the
 * linker's --wrap) so that the next run's stored cursor names another DC,
 * then another invocationId, then a cookie the DC cannot read, then one
 * past the tombstone lifetime: each run reads everything, logs and counts
 * a feed reset with its reason, and converges.
 *
 * The runs bind as Administrator: Samba 4.17 sends deleted objects
 * (isDeleted) through DirSync only to an account that can read CN=Deleted
 * Objects — not to one that merely holds "Replicating Directory Changes"
 * (measured; docs/changes.md).  The harness's service account, a plain
 * user, reads changes with changes.object_security (test_object_security);
 * an account with neither is refused DirSync and read in full
 * (test_without_the_right). */
#include "ctest_store_common.h"

#include "../../connectors/ldap_dirsync.h"
#include "ids/connector.h"
#include "ids/log.h"
#include "ids/sync.h"

static char g_ou[256], g_yaml[4096];
static const char *g_base;
static int g_tamper; /* 1: the next cursor names another DC, 2: another invocationId */

/* ---- the connector, wrapped: the cursor a run hands the feed, changed ---- */

const struct ids_connector_ops *__real_ids_connector_find(enum ids_conn_type t);
const struct ids_connector_ops *__wrap_ids_connector_find(enum ids_conn_type t);

/* The stored cursor with one thing changed: its DC (1), its invocationId
 * (2), its cookie (3: bytes the DC cannot read), its age (4: issued in
 * 1970, past any tombstone lifetime). */
static int tampered_pull(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
			 struct ids_feed_pull *fp, struct ids_error *err)
{
	struct ids_dirsync_cursor c;
	char *srv = NULL, *inv = NULL;
	unsigned char *t = NULL;
	size_t n = 0;
	if (g_tamper && fp->cursor) {
		if (ids_dirsync_cursor_decode(fp->cursor, fp->cursor_len, &c, &srv, &inv) < 0)
			fail_msg("the stored cursor is no DirSync cursor");
		if (g_tamper == 1)
			c.server = "dc2.idsync.test";
		else if (g_tamper == 2)
			c.invocation_id = "00000000-0000-0000-0000-000000000001";
		else if (g_tamper == 3)
			c.cookie = (struct berval){8, (char *)"ABCDEFGH"};
		else
			c.issued = 86400;
		if (ids_dirsync_cursor_encode(&c, &t, &n) < 0)
			fail_msg("out of memory");
		fp->cursor = t;
		fp->cursor_len = n;
		g_tamper = 0;
	}
	int r = ids_ldap_connector.pull_changes(cfg, ctx, fp, err);
	free(t);
	free(srv);
	free(inv);
	return r;
}

static struct ids_connector_ops g_ops;

const struct ids_connector_ops *__wrap_ids_connector_find(enum ids_conn_type t)
{
	const struct ids_connector_ops *o = __real_ids_connector_find(t);
	if (t != IDS_CONN_LDAP)
		return o;
	g_ops = *o;
	g_ops.pull_changes = tampered_pull;
	return &g_ops;
}

/* ---- the directory ---- */

/* Runs cmd (a shell command line); the test fails when it does, unless
 * lenient. */
static void shell(const char *cmd, bool lenient)
{
	int st = system(cmd);
	if (!lenient && st != 0)
		fail_msg("failed (%d): %s", st, cmd);
}

/* Applies LDIF (changetype records) as Administrator over LDAPS. */
static void ldif(const char *text, bool lenient)
{
	char *cmd = NULL;
	if (asprintf(&cmd,
		     "LDAPTLS_CACERT='%s' ldapmodify -c -x -H '%s' -D '%s' -y '%s' >/dev/null 2>&1 "
		     "<<'EOF'\n%s\nEOF",
		     getenv("IDS_TEST_AD_CA"), getenv("IDS_TEST_AD_LDAPS_URI"),
		     getenv("IDS_TEST_AD_ADMIN_UPN"), getenv("IDS_TEST_AD_ADMIN_PW_FILE"), text) < 0)
		fail_msg("out of memory");
	shell(cmd, lenient);
	free(cmd);
}

#define MOD(dn, body) "dn: " dn "\nchangetype: modify\n" body

static void ldif_f(bool lenient, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ldif_f(bool lenient, const char *fmt, ...)
{
	char t[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t, sizeof(t), fmt, ap);
	va_end(ap);
	ldif(t, lenient);
}
#define ldiff(...) ldif_f(false, __VA_ARGS__)

/* The first line a shell command prints (new), the test failing when it
 * prints nothing. */
static char *shell_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *shell_out(const char *fmt, ...)
{
	char *cmd = NULL, line[256];
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		fail_msg("out of memory");
	va_end(ap);
	setenv("LDAPTLS_CACERT", getenv("IDS_TEST_AD_CA"), 1);
	FILE *f = popen(cmd, "r");
	if (!f || !fgets(line, sizeof(line), f))
		fail_msg("no output: %s", cmd);
	pclose(f);
	free(cmd);
	line[strcspn(line, "\n")] = '\0';
	return strdup(line);
}

static void user_add(const char *cn, const char *sam, const char *ou)
{
	ldiff("dn: CN=%s,%s,%s\nchangetype: add\nobjectClass: user\nsAMAccountName: %s\ngivenName: %s\n"
	      "sn: DS\nmail: %s@idsync.test\nuserAccountControl: 544\n",
	      cn, ou, g_ou, sam, cn, sam);
}

/* ---- runs ---- */

static struct ids_config *load_cfg(const char *yaml)
{
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	if (ids_config_load_string("dirsync.yaml", yaml, strlen(yaml), &cfg, &e) < 0)
		fail_msg("config: %s", ids_error_text(&e));
	return cfg;
}

static void run(struct ids_config *cfg, struct ids_store *st, struct ids_feeds *feeds, bool plan,
		struct ids_sync_result *res)
{
	const struct ids_sync_opts o = {
	    .dry_run = plan, .print_plan = plan, .full = plan, .feeds = plan ? NULL : feeds};
	struct ids_buf out = {0};
	ids_sync_connector(cfg, st, &cfg->connectors[0], &o, &out, res);
	ids_buf_free(&out);
}

/* A sync through the feed (of read_kind `kind`), then `plan --full`:
 * nothing to do. */
static void step(struct ids_config *cfg, struct ids_store *st, struct ids_feeds *feeds, const char *what,
		 const char *kind)
{
	struct ids_sync_result res;
	run(cfg, st, feeds, false, &res);
	if (res.exit_code != IDS_EXIT_OK)
		fail_msg("%s: sync: %s %s", what, res.status, res.error ? res.error : "");
	free(res.error);
	char *got = sql_val("SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1", 0, NULL);
	if (strcmp(got, kind))
		fail_msg("%s: the run was %s, not %s", what, got, kind);
	free(got);
	run(cfg, st, feeds, true, &res);
	const struct ids_plan_counts *c = &res.counts;
	if (res.exit_code != IDS_EXIT_OK || c->created || c->updated || c->deactivated || c->reactivated ||
	    c->grants_added || c->grants_removed)
		fail_msg("%s: plan --full after the run: exit %d, +%ld ~%ld -%ld r%ld, grants +%ld -%ld (%s)",
			 what, res.exit_code, c->created, c->updated, c->deactivated, c->reactivated,
			 c->grants_added, c->grants_removed, res.error ? res.error : "");
	free(res.error);
}

#define GRANTED(sam)                                                                                         \
	"SELECT count(*) FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id JOIN app_user u ON u.id = "  \
	"r.user_id WHERE t.slug = 'ds' AND u.username = '" sam "'"
#define PRIM(sam)                                                                                            \
	"SELECT count(*) FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id JOIN app_user u ON u.id = "  \
	"r.user_id WHERE t.slug = 'prim' AND u.username = '" sam "'"
#define USER(sam, col) "SELECT " col " FROM app_user WHERE username = '" sam "'"

static void test_changes(void **state)
{
	(void)state;
	struct ids_config *cfg = load_cfg(g_yaml);
	struct ids_store *st = open_store("dirsync", true);
	struct ids_feeds *feeds = NULL;
	const char *P = "OU=People", *G = "CN=CC-DS,OU=Groups";
	char dn[512];
	assert_int_equal(ids_feeds_new(&feeds), 0);
	use_schema("dirsync");

	step(cfg, st, feeds, "first run", "full");
	assert_sql("1", GRANTED("dsu1"));
	assert_sql("1", GRANTED("dsu3")); /* through Team-DS */
	char *row1 = sql_val(USER("dsu1", "id::text || external_id"), 0, NULL);
	char *row3 = sql_val(USER("dsu3", "id::text || external_id"), 0, NULL);

	user_add("DS U4", "dsu4", P);
	ldiff(MOD("%s,%s", "add: member\nmember: CN=DS U4,OU=People,%s\n"), G, g_ou, g_ou);
	step(cfg, st, feeds, "a user added to the group", "incremental");
	assert_sql("1", GRANTED("dsu4"));

	ldiff(MOD("CN=DS U1,%s,%s", "replace: givenName\ngivenName: Renamed\n"), P, g_ou);
	step(cfg, st, feeds, "a name changed", "incremental");
	assert_sql("Renamed", USER("dsu1", "first_name"));

	ldiff(MOD("%s,%s", "delete: member\nmember: CN=DS U2,OU=People,%s\n"), G, g_ou, g_ou);
	step(cfg, st, feeds, "a member removed", "incremental");
	assert_sql("0", GRANTED("dsu2"));
	ldiff(MOD("%s,%s", "add: member\nmember: CN=DS U2,OU=People,%s\n"), G, g_ou, g_ou);
	step(cfg, st, feeds, "the member added back", "incremental");
	assert_sql("1", GRANTED("dsu2"));

	/* a rename: the group names the new DN without a change of its own */
	snprintf(dn, sizeof(dn), "CN=DS U1,%s,%s", P, g_ou);
	ldiff("dn: %s\nchangetype: modrdn\nnewrdn: CN=DS U1b\ndeleteoldrdn: 1\n", dn);
	step(cfg, st, feeds, "a rename", "incremental");
	assert_sql(row1, USER("dsu1", "id::text || external_id"));
	assert_sql("1", GRANTED("dsu1"));
	/* a move to another OU below the users base: the same row, still
	 * in Team-DS */
	snprintf(dn, sizeof(dn), "CN=DS U3,%s,%s", P, g_ou);
	ldiff("dn: %s\nchangetype: modrdn\nnewrdn: CN=DS U3\ndeleteoldrdn: 1\nnewsuperior: OU=Sub,%s,%s\n",
	      dn, P, g_ou);
	step(cfg, st, feeds, "a move", "incremental");
	assert_sql(row3, USER("dsu3", "id::text || external_id"));
	assert_sql("1", GRANTED("dsu3"));

	ldiff(MOD("CN=DS U4,%s,%s", "replace: userAccountControl\nuserAccountControl: 546\n"), P, g_ou);
	step(cfg, st, feeds, "disabled", "incremental");
	assert_sql("f", USER("dsu4", "active"));
	ldiff(MOD("CN=DS U4,%s,%s", "replace: userAccountControl\nuserAccountControl: 544\n"), P, g_ou);
	step(cfg, st, feeds, "enabled", "incremental");
	assert_sql("t", USER("dsu4", "active"));

	ldiff(MOD("%s,%s", "delete: member\nmember: CN=Team-DS,OU=Groups,%s\n"), G, g_ou, g_ou);
	step(cfg, st, feeds, "the nested group taken out", "incremental");
	assert_sql("0", GRANTED("dsu3"));
	ldiff(MOD("%s,%s", "add: member\nmember: CN=Team-DS,OU=Groups,%s\n"), G, g_ou, g_ou);
	step(cfg, st, feeds, "the nested group put back", "incremental");
	assert_sql("1", GRANTED("dsu3"));

	ldiff("dn: CN=DS U2,%s,%s\nchangetype: delete\n", P, g_ou);
	step(cfg, st, feeds, "a delete", "incremental");
	assert_sql("false|deleted_in_source", USER("dsu2", "active::text || '|' || deactivation_reason"));

	/* a user moved out of the users base: out of scope, same row kept */
	ldiff("dn: CN=DS U4,%s,%s\nchangetype: modrdn\nnewrdn: CN=DS U4\ndeleteoldrdn: 1\nnewsuperior: %s\n",
	      P, g_ou, g_ou);
	step(cfg, st, feeds, "a move out of the users base", "incremental");
	assert_sql("f", USER("dsu4", "active"));

	/* a primary group (AD lists no user in the `member` of his
	 * primaryGroupID's group): set, the group changed, set back */
	char *rid = shell_out("ldapsearch -LLL -o ldif-wrap=no -x -H '%s' -D '%s' -y '%s' -b "
			      "'CN=Prim-DS,OU=Groups,%s' -s base objectSid | sed -n 's/^objectSid:: //p' | "
			      "base64 -d | od -An -tu4 -w28 | awk '{print $NF}'",
			      getenv("IDS_TEST_AD_LDAPS_URI"), getenv("IDS_TEST_AD_ADMIN_UPN"),
			      getenv("IDS_TEST_AD_ADMIN_PW_FILE"), g_ou);
	user_add("DS U6", "dsu6", P);
	ldiff(MOD("CN=Prim-DS,OU=Groups,%s", "add: member\nmember: CN=DS U6,OU=People,%s\n"), g_ou, g_ou);
	step(cfg, st, feeds, "a member of Prim-DS", "incremental");
	assert_sql("1", PRIM("dsu6"));
	ldiff(MOD("CN=DS U6,%s,%s", "replace: primaryGroupID\nprimaryGroupID: %s\n"), P, g_ou, rid);
	step(cfg, st, feeds, "Prim-DS his primary group", "incremental");
	assert_sql("1", PRIM("dsu6"));
	ldiff(MOD("CN=Prim-DS,OU=Groups,%s", "replace: description\ndescription: changed\n"), g_ou);
	step(cfg, st, feeds, "Prim-DS changed", "incremental");
	assert_sql("1", PRIM("dsu6"));
	ldiff(MOD("CN=DS U6,%s,%s", "replace: primaryGroupID\nprimaryGroupID: 513\n"), P, g_ou);
	ldif_f(true, MOD("CN=Prim-DS,OU=Groups,%s", "delete: member\nmember: CN=DS U6,OU=People,%s\n"), g_ou,
	       g_ou);
	step(cfg, st, feeds, "Domain Users his primary group again", "incremental");
	assert_sql("0", PRIM("dsu6"));
	free(rid);

	/* the cursor's issuer: another DC, then the same DC restored */
	assert_sql("0", "SELECT resets FROM connector_feed WHERE connector = 'ad'");
	assert_sql("dc1.idsync.test",
		   "SELECT lower(cursor_server) FROM connector_feed WHERE connector = 'ad'");
	g_tamper = 1;
	user_add("DS U5", "dsu5", P);
	ldiff(MOD("%s,%s", "add: member\nmember: CN=DS U5,OU=People,%s\n"), G, g_ou, g_ou);
	step(cfg, st, feeds, "a cookie from another DC", "full");
	assert_sql("1|true", "SELECT resets || '|' || (last_reset_reason LIKE '%issued by domain controller "
			     "dc2.idsync.test%') FROM connector_feed WHERE connector = 'ad'");
	assert_sql("1", GRANTED("dsu5"));
	g_tamper = 2;
	step(cfg, st, feeds, "a DC restored from a backup", "full");
	assert_sql("2|true", "SELECT resets || '|' || (last_reset_reason LIKE '%new invocationId%') FROM "
			     "connector_feed WHERE connector = 'ad'");
	g_tamper = 3;
	step(cfg, st, feeds, "a cookie the DC rejects", "full");
	assert_sql("3|true", "SELECT resets || '|' || (last_reset_reason LIKE '%rejected the cookie%') FROM "
			     "connector_feed WHERE connector = 'ad'");
	g_tamper = 4;
	step(cfg, st, feeds, "a cookie past the tombstone lifetime", "full");
	assert_sql("4|true", "SELECT resets || '|' || (last_reset_reason LIKE '%past the tombstone lifetime "
			     "(180 days)%') FROM connector_feed WHERE connector = 'ad'");
	step(cfg, st, feeds, "after the resets", "incremental");

	free(row1);
	free(row3);
	ids_feeds_free(feeds);
	ids_store_close(st);
	ids_config_free(cfg);
}

/* The service account as it is in the harness (a plain user) with
 * changes.object_security: DirSync answers with what it may read, and a
 * change comes through the feed. */
static void test_object_security(void **state)
{
	(void)state;
	static char yaml[4096];
	char *at = strstr(g_yaml, "    users:");
	assert_non_null(at);
	char *bind = strstr(g_yaml, "    bind_dn:");
	assert_non_null(bind);
	snprintf(
	    yaml, sizeof(yaml),
	    "%.*s    bind_dn: \"%s\"\n    bind_password_file: %s\n    changes: { object_security: true }\n%s",
	    (int)(bind - g_yaml), g_yaml, getenv("IDS_TEST_AD_BIND_UPN"), getenv("IDS_TEST_AD_BIND_PW_FILE"),
	    at);
	struct ids_config *cfg = load_cfg(yaml);
	struct ids_store *st = open_store("dirsync_os", true);
	struct ids_feeds *feeds = NULL;
	assert_int_equal(ids_feeds_new(&feeds), 0);
	use_schema("dirsync_os");
	step(cfg, st, feeds, "object security: first run", "full");
	ldiff(MOD("CN=DS U1b,OU=People,%s", "replace: givenName\ngivenName: Again\n"), g_ou);
	step(cfg, st, feeds, "object security: a name changed", "incremental");
	assert_sql("Again", USER("dsu1", "first_name"));
	ids_feeds_free(feeds);
	ids_store_close(st);
	ids_config_free(cfg);
}

/* An account that holds neither "Replicating Directory Changes" nor asks
 * for object security: the DC refuses DirSync, the run reads everything
 * (a warning), and so does every later one (the feed is off). */
static void test_without_the_right(void **state)
{
	(void)state;
	static char yaml[4096];
	char pwfile[] = "/tmp/ctest_ad_dirsync.pw.XXXXXX";
	const char *pw = "Dirsync-Plain-1"; /* Samba's complexity check: upper, lower, digit, sign */
	int fd = mkstemp(pwfile);
	if (fd < 0 || write(fd, pw, strlen(pw)) != (ssize_t)strlen(pw) || close(fd) < 0)
		fail_msg("cannot write %s", pwfile);
	char *b64 = shell_out("printf '\"%s\"' | iconv -f UTF-8 -t UTF-16LE | base64 -w0", pw);
	ldiff("dn: CN=DS Plain,%s\nchangetype: add\nobjectClass: user\nsAMAccountName: dsplain\n"
	      "userPrincipalName: dsplain@idsync.test\nunicodePwd:: %s\nuserAccountControl: 512\n",
	      g_ou, b64);
	free(b64);
	char *bind = strstr(g_yaml, "    bind_dn:"), *at = strstr(g_yaml, "    users:");
	assert_non_null(bind);
	assert_non_null(at);
	snprintf(yaml, sizeof(yaml), "%.*s    bind_dn: dsplain@idsync.test\n    bind_password_file: %s\n%s",
		 (int)(bind - g_yaml), g_yaml, pwfile, at);
	struct ids_config *cfg = load_cfg(yaml);
	struct ids_store *st = open_store("dirsync_plain", true);
	struct ids_feeds *feeds = NULL;
	assert_int_equal(ids_feeds_new(&feeds), 0);
	use_schema("dirsync_plain");
	step(cfg, st, feeds, "without the right: first run", "full");
	ldiff(MOD("CN=DS U1b,OU=People,%s", "replace: givenName\ngivenName: Plain\n"), g_ou);
	step(cfg, st, feeds, "without the right: the next run", "full");
	assert_sql("Plain", USER("dsu1", "first_name"));
	ids_feeds_free(feeds);
	ids_store_close(st);
	ids_config_free(cfg);
	unlink(pwfile);
}

/* The test's OU, removed.  AD refuses to delete a group that is still a
 * user's primary group (after a run that failed half-way): DS U6 gets
 * Domain Users back first. */
static void cleanup(void)
{
	char cmd[1024];
	ldif_f(true, MOD("CN=DS U6,OU=People,%s", "replace: primaryGroupID\nprimaryGroupID: 513\n"), g_ou);
	snprintf(cmd, sizeof(cmd),
		 "LDAPTLS_CACERT='%s' ldapdelete -c -r -x -H '%s' -D '%s' -y '%s' '%s' >/dev/null 2>&1",
		 getenv("IDS_TEST_AD_CA"), getenv("IDS_TEST_AD_LDAPS_URI"), getenv("IDS_TEST_AD_ADMIN_UPN"),
		 getenv("IDS_TEST_AD_ADMIN_PW_FILE"), g_ou);
	shell(cmd, true);
}

/* The directory of the test: OU=People (DS U1..U3, OU=Sub), OU=Groups
 * (CC-DS: U1, U2 and Team-DS; Team-DS: U3). */
static void populate(void)
{
	cleanup();
	ldiff("dn: %s\nchangetype: add\nobjectClass: organizationalUnit\n\n"
	      "dn: OU=People,%s\nchangetype: add\nobjectClass: organizationalUnit\n\n"
	      "dn: OU=Sub,OU=People,%s\nchangetype: add\nobjectClass: organizationalUnit\n\n"
	      "dn: OU=Groups,%s\nchangetype: add\nobjectClass: organizationalUnit\n",
	      g_ou, g_ou, g_ou, g_ou);
	user_add("DS U1", "dsu1", "OU=People");
	user_add("DS U2", "dsu2", "OU=People");
	user_add("DS U3", "dsu3", "OU=People");
	ldiff("dn: CN=Team-DS,OU=Groups,%s\nchangetype: add\nobjectClass: group\nsAMAccountName: team-ds\n"
	      "member: CN=DS U3,OU=People,%s\n\n"
	      "dn: CN=CC-DS,OU=Groups,%s\nchangetype: add\nobjectClass: group\nsAMAccountName: cc-ds\n"
	      "member: CN=DS U1,OU=People,%s\nmember: CN=DS U2,OU=People,%s\nmember: "
	      "CN=Team-DS,OU=Groups,%s\n\n"
	      "dn: CN=Prim-DS,OU=Groups,%s\nchangetype: add\nobjectClass: group\nsAMAccountName: prim-ds\n",
	      g_ou, g_ou, g_ou, g_ou, g_ou, g_ou, g_ou);
}

int main(void)
{
	const char *need[] = {"IDS_TEST_AD_LDAPS_URI",	   "IDS_TEST_AD_CA",
			      "IDS_TEST_AD_BASE",	   "IDS_TEST_AD_ADMIN_UPN",
			      "IDS_TEST_AD_ADMIN_PW_FILE", "IDS_TEST_AD_BIND_UPN",
			      "IDS_TEST_AD_BIND_DN",	   "IDS_TEST_AD_BIND_PW_FILE",
			      "IDS_TEST_AD_SAM",	   "IDS_TEST_AD_SMBCONF"};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!getenv(need[i]) || !*getenv(need[i]))
			return no_server(
			    "no Samba AD domain controller (IDS_TEST_AD_* unset; scripts/test starts one)");
	int r = db_setup("ad_dirsync");
	if (r)
		return r;
	ids_log_setup(IDS_LOG_WARNING, IDS_LOGT_STDERR);
	g_base = getenv("IDS_TEST_AD_BASE");
	snprintf(g_ou, sizeof(g_ou), "OU=ctest_ad_dirsync,%s", g_base); /* one at a time: samba_dc */
	sql("SET client_min_messages TO warning");
	populate();
	snprintf(
	    g_yaml, sizeof(g_yaml),
	    "database: { conninfo: \"%s\", schema: dirsync }\n"
	    "safety: { max_deactivations: 1000, max_deactivation_percent: 100, "
	    "max_grant_removals_percent: 100 }\n"
	    "tenants: { auto_create: true }\n"
	    "connectors:\n"
	    "  - name: ad\n    type: ldap\n    flavor: active_directory\n    company: acme\n"
	    "    uri: \"%s\"\n    tls_ca_file: %s\n    bind_dn: \"%s\"\n    bind_password_file: %s\n"
	    "    users: { base: \"OU=People,%s\" }\n    groups: { base: \"OU=Groups,%s\" }\n"
	    "rules:\n  - name: ds\n    match: { member_of: [CC-DS] }\n    tenant: ds\n"
	    "    roles: [operator]\n    channels: [webchat]\n"
	    "  - name: prim\n    match: { member_of: [Prim-DS] }\n    tenant: prim\n    roles: [operator]\n",
	    g_conninfo, getenv("IDS_TEST_AD_LDAPS_URI"), getenv("IDS_TEST_AD_CA"),
	    getenv("IDS_TEST_AD_ADMIN_UPN"), getenv("IDS_TEST_AD_ADMIN_PW_FILE"), g_ou, g_ou);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_changes),
	    cmocka_unit_test(test_object_security),
	    cmocka_unit_test(test_without_the_right),
	};
	r = cmocka_run_group_tests_name("AD: DirSync change feed", tests, NULL, NULL);
	cleanup();
	db_teardown();
	return r;
}
