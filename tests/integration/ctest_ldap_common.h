/* ctest_ldap_common.h — what the LDAP connector's integration tests
 * share: the slapd of tests/harness/slapd.sh (from the IDS_TEST_LDAP_*
 * environment), an admin connection that builds each test's own subtree
 * (ou=<name>,<base>) and removes it again, a hand-built connector config,
 * and a pull into a finished snapshot with lookups on the result.
 *
 * Without the harness's environment a test binary skips (exit 77), or
 * fails under CI=true. */
/* (The helpers are static inline so that a test binary may leave some
 * unused without a warning.) */
#ifndef CTEST_LDAP_COMMON_H
#define CTEST_LDAP_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <ldap.h>

#include "ids/config.h"
#include "ids/connector.h"
#include "ids/snapshot.h"

/* The harness's environment (slapd.env), read once by env_load. */
struct ldap_env {
	const char *uri, *ldaps_uri, *mismatch_uri, *ldapi_uri, *base;
	const char *admin_dn, *admin_pw_file, *bind_dn, *bind_pw_file;
	const char *limited_dn, *limited_pw_file;
	const char *ca, *wrong_ca;
	int sizelimit;
};
static struct ldap_env E;

/* Exit code for "no server here": 77 (skip), or a failure under CI. */
static inline int no_server(const char *why)
{
	const char *ci = getenv("CI");
	if (ci && strcmp(ci, "true") == 0) {
		fprintf(stderr, "FAIL: %s (CI=true: the harness must provide slapd)\n", why);
		return 1;
	}
	fprintf(stderr, "SKIP: %s (run tests/harness/slapd.sh start DIR and source DIR/slapd.env)\n", why);
	return 77;
}

/* Exports the KEY='VALUE' lines of a private instance's slapd.env
 * (tests that start their own slapd). */
static inline int load_env_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		char *k = line, *eq, *v;
		if (strncmp(k, "export ", 7) != 0)
			continue;
		k += 7;
		if (!(eq = strchr(k, '=')))
			continue;
		*eq = 0;
		v = eq + 1;
		v[strcspn(v, "\n")] = 0;
		size_t n = strlen(v);
		if (n >= 2 && v[0] == '\'' && v[n - 1] == '\'') {
			v[n - 1] = 0;
			v++;
		}
		setenv(k, v, 1);
	}
	fclose(f);
	return 0;
}

/* Fills E from the environment; 0, or the exit code when it is missing. */
static inline int env_load(void)
{
	static const struct {
		const char *name;
		const char **dst;
	} vars[] = {
	    {"IDS_TEST_LDAP_URI", &E.uri},
	    {"IDS_TEST_LDAPS_URI", &E.ldaps_uri},
	    {"IDS_TEST_LDAP_BASE", &E.base},
	    {"IDS_TEST_LDAP_ADMIN_DN", &E.admin_dn},
	    {"IDS_TEST_LDAP_ADMIN_PW_FILE", &E.admin_pw_file},
	    {"IDS_TEST_LDAP_BIND_DN", &E.bind_dn},
	    {"IDS_TEST_LDAP_BIND_PW_FILE", &E.bind_pw_file},
	    {"IDS_TEST_LDAP_CA", &E.ca},
	    {"IDS_TEST_LDAP_WRONG_CA", &E.wrong_ca},
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i].name);
		if (!v || !*v) {
			char why[128];
			snprintf(why, sizeof(why), "%s is not set", vars[i].name);
			return no_server(why);
		}
		*vars[i].dst = v;
	}
	/* optional: the tests that need them skip without */
	E.mismatch_uri = getenv("IDS_TEST_LDAP_MISMATCH_URI");
	E.ldapi_uri = getenv("IDS_TEST_LDAPI_URI");
	E.limited_dn = getenv("IDS_TEST_LDAP_LIMITED_DN");
	E.limited_pw_file = getenv("IDS_TEST_LDAP_LIMITED_PW_FILE");
	const char *sl = getenv("IDS_TEST_LDAP_SIZELIMIT");
	E.sizelimit = sl ? (int)strtol(sl, NULL, 10) : 50;
	return 0;
}

/* The contents of a (password) file, new; trailing newlines dropped. */
static inline char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = 0;
	return strdup(buf);
}

/* ---------------- the admin side: building test data ---------------- */

/* A connection as the rootdn over StartTLS with the test CA (options on
 * the handle, like the connector: the environment must not matter). */
static inline LDAP *admin_open_at(const char *uri, const char *ca, const char *dn, const char *pw_file)
{
	LDAP *ld = NULL;
	int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;
	assert_int_equal(ldap_initialize(&ld, uri), LDAP_SUCCESS);
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, ca);
	assert_int_equal(ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero), LDAP_OPT_SUCCESS);
	int rc = ldap_start_tls_s(ld, NULL, NULL);
	if (rc != LDAP_SUCCESS)
		fail_msg("admin StartTLS to %s: %s", uri, ldap_err2string(rc));
	char *pw = read_file(pw_file);
	struct berval cred = {strlen(pw), pw};
	rc = ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
	free(pw);
	if (rc != LDAP_SUCCESS)
		fail_msg("admin bind to %s: %s", uri, ldap_err2string(rc));
	return ld;
}

static inline LDAP *admin_open(void)
{
	return admin_open_at(E.uri, E.ca, E.admin_dn, E.admin_pw_file);
}

/* One attribute value of an entry to add; values are (pointer, length)
 * so that a test can store a NUL byte. */
struct av {
	const char *type;
	const char *val;
	size_t len;
};

/* Adds the entry dn; a type given several times gets several values. */
static inline void add_entry_av(LDAP *ld, const char *dn, const struct av *av, size_t n)
{
	LDAPMod mods[32], *pm[33];
	struct berval bvs[128], *bvp[128 + 32];
	size_t nm = 0, nb = 0, np = 0;
	assert_true(n <= 128);
	/* group the pairs by type, in order of first appearance */
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t k = 0; k < i; k++)
			if (!strcasecmp(av[k].type, av[i].type))
				seen = true;
		if (seen)
			continue;
		assert_true(nm < 32);
		mods[nm] =
		    (LDAPMod){.mod_op = LDAP_MOD_ADD | LDAP_MOD_BVALUES, .mod_type = (char *)av[i].type};
		mods[nm].mod_bvalues = &bvp[np];
		for (size_t k = i; k < n; k++) {
			if (strcasecmp(av[k].type, av[i].type))
				continue;
			bvs[nb] = (struct berval){av[k].len, (char *)av[k].val};
			bvp[np++] = &bvs[nb++];
		}
		bvp[np++] = NULL;
		pm[nm] = &mods[nm];
		nm++;
	}
	pm[nm] = NULL;
	int rc = ldap_add_ext_s(ld, dn, pm, NULL, NULL);
	if (rc != LDAP_SUCCESS)
		fail_msg("add %s: %s", dn, ldap_err2string(rc));
}

/* add_entry(ld, dn, "objectClass", "person", "cn", "x", ..., NULL): the
 * same, with (type, value) string pairs. */
static inline void add_entry(LDAP *ld, const char *dn, ...)
{
	struct av av[128];
	size_t n = 0;
	va_list ap;
	va_start(ap, dn);
	for (const char *t; (t = va_arg(ap, const char *)) != NULL;) {
		const char *v = va_arg(ap, const char *);
		assert_true(n < 128);
		av[n++] = (struct av){t, v, strlen(v)};
	}
	va_end(ap);
	add_entry_av(ld, dn, av, n);
}

static inline int cmp_len_desc(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
	return la < lb ? 1 : la > lb ? -1 : 0;
}

/* Deletes dn and everything below it (children first: a child's DN is
 * longer than its parent's).  A missing subtree is fine. */
static inline void delete_tree(LDAP *ld, const char *dn)
{
	LDAPMessage *res = NULL;
	char *attrs[] = {LDAP_NO_ATTRS, NULL};
	int rc = ldap_search_ext_s(ld, dn, LDAP_SCOPE_SUBTREE, "(objectClass=*)", attrs, 0, NULL, NULL, NULL,
				   LDAP_NO_LIMIT, &res);
	if (rc == LDAP_NO_SUCH_OBJECT) {
		ldap_msgfree(res);
		return;
	}
	if (rc != LDAP_SUCCESS)
		fail_msg("search %s for deletion: %s", dn, ldap_err2string(rc));
	size_t n = (size_t)ldap_count_entries(ld, res), i = 0;
	char **dns = calloc(n + 1, sizeof(*dns));
	for (LDAPMessage *e = ldap_first_entry(ld, res); e; e = ldap_next_entry(ld, e))
		dns[i++] = ldap_get_dn(ld, e);
	qsort(dns, i, sizeof(*dns), cmp_len_desc);
	for (size_t k = 0; k < i; k++) {
		rc = ldap_delete_ext_s(ld, dns[k], NULL, NULL);
		if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT)
			fail_msg("delete %s: %s", dns[k], ldap_err2string(rc));
		ldap_memfree(dns[k]);
	}
	free(dns);
	ldap_msgfree(res);
}

/* The test's subtree ou=NAME,<base> with ou=people and ou=groups below,
 * made fresh (a leftover of an earlier run is removed first).  The DNs go
 * to ou (256 bytes), people and groups (DN_MAX bytes). */
#define DN_MAX 300
static inline void make_ou(LDAP *ld, const char *base, const char *name, char *ou, char *people, char *groups)
{
	snprintf(ou, 256, "ou=%s,%s", name, base);
	snprintf(people, DN_MAX, "ou=people,%s", ou);
	snprintf(groups, DN_MAX, "ou=groups,%s", ou);
	delete_tree(ld, ou);
	add_entry(ld, ou, "objectClass", "organizationalUnit", "ou", name, NULL);
	add_entry(ld, people, "objectClass", "organizationalUnit", "ou", "people", NULL);
	add_entry(ld, groups, "objectClass", "organizationalUnit", "ou", "groups", NULL);
}

/* A person: uid, givenName, sn, cn "given sn", mail uid@example.org. */
static inline void add_person(LDAP *ld, const char *people, const char *uid, const char *given,
			      const char *sn)
{
	char dn[512], cn[256], mail[256];
	if ((size_t)snprintf(dn, sizeof(dn), "uid=%s,%s", uid, people) >= sizeof(dn))
		fail_msg("uid=%s,%s: the DN is too long", uid, people);
	snprintf(cn, sizeof(cn), "%s %s", given, sn);
	snprintf(mail, sizeof(mail), "%s@example.org", uid);
	add_entry(ld, dn, "objectClass", "inetOrgPerson", "uid", uid, "givenName", given, "sn", sn, "cn", cn,
		  "mail", mail, NULL);
}

/* ---------------- the connector side ---------------- */

/* A connector config built by hand, as the config loader would fill it
 * for an openldap connector; strings are borrowed (never freed). */
struct tcfg {
	struct ids_config config;
	struct ids_connector_cfg cc;
	struct ids_strv rule_attrs;
	char *pw;
};

static inline void tcfg_init(struct tcfg *t, const char *uri, const char *people, const char *groups)
{
	static const char *const attr[6] = {"entryUUID", "uid", "mail", "givenName", "sn", "displayName"};
	memset(t, 0, sizeof(*t));
	t->cc.name = (char *)"corp";
	t->cc.type = IDS_CONN_LDAP;
	t->cc.company = (char *)"acme";
	for (int i = 0; i < 6; i++)
		t->cc.attr[i] = (char *)attr[i];
	struct ids_ldap_cfg *l = &t->cc.ldap;
	l->flavor = IDS_LDAP_OPENLDAP;
	assert_int_equal(ids_strv_push(&l->uri, uri), 0);
	l->start_tls = true;
	l->tls_ca_file = (char *)E.ca;
	l->bind_dn = (char *)E.bind_dn;
	t->pw = read_file(E.bind_pw_file);
	l->bind_password = t->pw;
	l->timeout = 10;
	l->page_size = 20;
	l->users_base = (char *)people;
	l->users_filter = (char *)"(objectClass=inetOrgPerson)";
	l->groups_base = (char *)groups;
	l->groups_filter = (char *)"(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)"
				   "(objectClass=posixGroup))";
	t->config.connectors = &t->cc;
	t->config.nconnectors = 1;
}

/* Replaces the URI list with the given URIs (NULL-terminated). */
static inline void tcfg_uris(struct tcfg *t, ...)
{
	ids_strv_free(&t->cc.ldap.uri);
	va_list ap;
	va_start(ap, t);
	for (const char *u; (u = va_arg(ap, const char *)) != NULL;)
		assert_int_equal(ids_strv_push(&t->cc.ldap.uri, u), 0);
	va_end(ap);
}

static inline void tcfg_free(struct tcfg *t)
{
	ids_strv_free(&t->cc.ldap.uri);
	ids_strv_free(&t->rule_attrs);
	free(t->pw);
}

/* The result of one pull. */
struct pulled {
	int r;	    /* the pull's return */
	int finish; /* ids_snapshot_finish's, when the pull worked */
	struct ids_error err;
	struct ids_snapshot *s; /* finished when r >= 0 */
	double seconds;
};

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Pulls t (progress hook optional) and finishes the snapshot on success. */
static inline void do_pull_ctx(struct tcfg *t, int (*progress)(void *), void *ud, struct pulled *out)
{
	memset(out, 0, sizeof(*out));
	assert_int_equal(ids_snapshot_new(&out->s), 0);
	const struct ids_pull_ctx ctx = {
	    .config = &t->config, .rule_attrs = &t->rule_attrs, .progress = progress, .ud = ud};
	const struct ids_connector_ops *ops = ids_connector_find(IDS_CONN_LDAP);
	assert_non_null(ops);
	assert_string_equal(ops->type, "ldap");
	double t0 = now_s();
	out->r = ops->pull(&t->cc, &ctx, out->s, &out->err);
	out->seconds = now_s() - t0;
	if (out->r >= 0)
		out->finish = ids_snapshot_finish(out->s);
}

static inline void do_pull(struct tcfg *t, struct pulled *out)
{
	do_pull_ctx(t, NULL, NULL, out);
}

static inline void pulled_free(struct pulled *p)
{
	ids_error_clear(&p->err);
	ids_snapshot_free(p->s);
	p->s = NULL;
}

/* Fails with the pull's error text unless it succeeded. */
static inline void assert_pull_ok(const struct pulled *p)
{
	if (p->r < 0)
		fail_msg("pull failed (%d): %s", p->r, ids_error_text(&p->err));
	assert_int_equal(p->finish, 0);
}

/* Fails unless the pull failed with `code` and its message holds every
 * given string (NULL-terminated). */
static inline void assert_pull_failed(const struct pulled *p, int code, ...)
{
	if (p->r >= 0)
		fail_msg("pull succeeded, expected %s", ids_strerror(code));
	const char *msg = ids_error_text(&p->err);
	if (getenv("IDS_TEST_VERBOSE"))
		fprintf(stderr, "pull error (%.1f s): %s\n", p->seconds, msg);
	if (p->r != code)
		fail_msg("pull failed with %d (%s), expected %d (%s): %s", p->r, ids_strerror(p->r), code,
			 ids_strerror(code), msg);
	va_list ap;
	va_start(ap, code);
	for (const char *want; (want = va_arg(ap, const char *)) != NULL;)
		if (!strstr(msg, want))
			fail_msg("error message lacks \"%s\": %s", want, msg);
	va_end(ap);
}

static inline const struct ids_user *user_by_name(const struct ids_snapshot *s, const char *username)
{
	for (size_t i = 0; i < s->nusers; i++)
		if (s->users[i].f[IDS_F_USERNAME] && !strcmp(s->users[i].f[IDS_F_USERNAME], username))
			return &s->users[i];
	return NULL;
}

static inline long group_by_name(const struct ids_snapshot *s, const char *name)
{
	for (size_t i = 0; i < s->ngroups; i++)
		if (s->groups[i].name && !strcmp(s->groups[i].name, name))
			return (long)i;
	return -1;
}

/* True when user `username` is (transitively) in group `name`. */
static inline bool in_group(const struct ids_snapshot *s, const char *username, const char *name)
{
	const struct ids_user *u = user_by_name(s, username);
	long g = group_by_name(s, name);
	if (!u)
		fail_msg("no user %s in the snapshot", username);
	if (g < 0)
		fail_msg("no group %s in the snapshot", name);
	for (size_t i = 0; i < u->ngroups; i++)
		if (u->groups[i] == (uint32_t)g)
			return true;
	return false;
}

/* The user's groups as "a,b,c" (names sorted), into buf. */
static inline const char *groups_of(const struct ids_snapshot *s, const char *username, char *buf,
				    size_t size)
{
	const struct ids_user *u = user_by_name(s, username);
	const char *names[64];
	size_t n = 0;
	if (!u)
		fail_msg("no user %s in the snapshot", username);
	for (size_t i = 0; i < u->ngroups && n < 64; i++)
		names[n++] = s->groups[u->groups[i]].name;
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			const char *tmp = names[k];
			names[k] = names[k - 1];
			names[k - 1] = tmp;
		}
	buf[0] = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(buf);
		snprintf(buf + l, size - l, "%s%s", i ? "," : "", names[i]);
	}
	return buf;
}

/* A slapd of our own (tests/harness/slapd.sh in a directory of its own),
 * for the tests that restart the server or need an overlay the shared
 * instance lacks: restarting the shared one would break every other
 * test's connection. */
struct private_slapd {
	char dir[64]; /* "" when none is running */
	char sh[512]; /* the harness script */
};

/* Runs slapd.sh CMD on the instance; its output goes to DIR/sh.log and,
 * when it fails, to stderr.  The script's exit code. */
static inline int private_slapd_sh(const struct private_slapd *ps, const char *cmd)
{
	char line[1280];
	snprintf(line, sizeof(line), "bash '%s' %s '%s' >>'%s/sh.log' 2>&1", ps->sh, cmd, ps->dir, ps->dir);
	int st = system(line);
	int r = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (r != 0) {
		snprintf(line, sizeof(line), "cat '%s/sh.log' >&2", ps->dir);
		if (system(line) != 0)
			fprintf(stderr, "slapd.sh %s failed\n", cmd);
	}
	return r;
}

/* Stops the instance and removes its directory (nothing when none runs). */
static inline void private_slapd_stop(struct private_slapd *ps)
{
	if (!ps->dir[0])
		return;
	private_slapd_sh(ps, "stop");
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ps->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", ps->dir);
	ps->dir[0] = 0;
}

/* Starts an instance in /tmp/NAME.XXXXXX on ports from port_min + (pid
 * % 100) * 100 (away from the shared instance's and from the ephemeral
 * range: a restart must get its ports back), and loads its environment
 * into E.  The harness script: from the shared instance's environment,
 * or from the source tree ctest names.  0, or main's exit code (77 or a
 * failure when there is no slapd to start; nothing is left running). */
static inline int private_slapd_start(struct private_slapd *ps, const char *name, int port_min)
{
	const char *sh = getenv("IDS_TEST_SLAPD_SH");
	if (sh)
		snprintf(ps->sh, sizeof(ps->sh), "%s", sh);
	else if (getenv("IDS_SRC"))
		snprintf(ps->sh, sizeof(ps->sh), "%s/tests/harness/slapd.sh", getenv("IDS_SRC"));
	if (!ps->sh[0] || access(ps->sh, R_OK) != 0 || access("/usr/sbin/slapd", X_OK) != 0)
		return no_server("no tests/harness/slapd.sh or no slapd to start a private instance");
	char ports[16];
	snprintf(ports, sizeof(ports), "%d", port_min + (int)(getpid() % 100) * 100);
	setenv("SLAPD_PORT_MIN", ports, 1);
	snprintf(ps->dir, sizeof(ps->dir), "/tmp/%s.XXXXXX", name);
	if (!mkdtemp(ps->dir)) {
		perror("mkdtemp");
		ps->dir[0] = 0;
		return 1;
	}
	if (private_slapd_sh(ps, "start") != 0) {
		fprintf(stderr, "could not start a private slapd (see %s/sh.log)\n", ps->dir);
		ps->dir[0] = 0;
		return 1;
	}
	char env[128];
	snprintf(env, sizeof(env), "%s/slapd.env", ps->dir);
	int r = load_env_file(env);
	if (r == 0)
		r = env_load();
	if (r != 0)
		private_slapd_stop(ps);
	return r;
}

#endif
