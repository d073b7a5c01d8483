/* test_config_ok.c — configurations that load, and what they load to.
 *
 * Expected values come from config.md / connectors.md (defaults) and from
 * the data files in tests/unit/data/config/ok/ (explicit values), read by
 * hand; secrets come from the throwaway directory of test_config_secrets.h. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ids/config.h"
#include "test_config_secrets.h"

#define OK_DIR "data/config/ok"

static struct ids_config *load_ok(const char *path)
{
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	int r = ids_config_load(path, &cfg, &e);
	if (r < 0)
		print_message("%s: %s\n", path, ids_error_text(&e));
	assert_int_equal(r, 0);
	assert_null(e.msg);
	assert_non_null(cfg);
	return cfg;
}

static void assert_strv(const struct ids_strv *sv, const char *const *want, size_t n)
{
	assert_int_equal(sv->n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(sv->v[i], want[i]);
}

static bool matches(const regex_t *re, const char *s)
{
	return regexec(re, s, 0, NULL, 0) == 0;
}

/* ---- defaults (config.md, connectors.md) ---- */

static void defaults(void **state)
{
	static const char *const roles[] = {"operator",
					    "tenant_admin",
					    "manage_tenant_files",
					    "manage_tenant_templates",
					    "view_other_sessions",
					    "view_other_emails",
					    "view_operators",
					    "manage_campaigns",
					    "tag_ended_sessions"};
	static const char *const channels[] = {"webchat",  "ip_telephony",   "email",	 "facebook_messenger",
					       "whatsapp", "apple_messages", "vkontakte"};
	static const char *const groups[] = {"live", "offline", "email"};
	static const char *const openldap[] = {"entryUUID", "uid", "mail", "givenName", "sn", "displayName"};
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/minimal.yaml");

	assert_string_equal(cfg->path, OK_DIR "/minimal.yaml");
	assert_string_equal(cfg->database.conninfo, "dbname=cc");
	assert_null(cfg->database.password);
	assert_string_equal(cfg->database.schema, "idsync");
	assert_true(cfg->database.migrate_auto);
	/* 15m, 30s, 30s, 15m, 30m */
	assert_int_equal(cfg->sync.interval, 900);
	assert_int_equal(cfg->sync.jitter, 30);
	assert_int_equal(cfg->sync.retry_min, 30);
	assert_int_equal(cfg->sync.retry_max, 900);
	assert_int_equal(cfg->sync.run_timeout, 1800);
	assert_int_equal(cfg->sync.heartbeat, 60);
	assert_int_equal(cfg->log.level, IDS_LOG_INFO);
	assert_int_equal(cfg->log.target, IDS_LOGT_AUTO);
	assert_false(cfg->security.allow_readable_secrets);
	assert_false(cfg->security.allow_plaintext_bind);
	assert_int_equal(cfg->safety.max_deactivations, 500);
	assert_int_equal(cfg->safety.max_deactivation_percent, 10);
	assert_int_equal(cfg->safety.max_grant_removals_percent, 25);
	assert_int_equal(cfg->safety.hold_expiry, 86400); /* a day */
	assert_false(cfg->tenants_auto_create);
	assert_strv(&cfg->catalog.roles, roles, 9);
	assert_strv(&cfg->catalog.channels, channels, 7);
	assert_strv(&cfg->catalog.channel_groups, groups, 3);
	assert_int_equal(cfg->nrules, 0);

	assert_int_equal(cfg->nconnectors, 1);
	const struct ids_connector_cfg *cc = &cfg->connectors[0];
	assert_string_equal(cc->name, "corp");
	assert_int_equal(cc->type, IDS_CONN_LDAP);
	assert_string_equal(cc->company, "default");
	assert_int_equal(cc->line, 5);
	assert_int_equal(cc->interval, 0);
	assert_false(cc->adopt_by_email);
	assert_false(cc->allow_empty);
	for (size_t f = 0; f < 6; f++)
		assert_string_equal(cc->attr[f], openldap[f]);
	/* changes: issue 14's defaults */
	assert_int_equal(cc->changes.mode, IDS_CHANGES_AUTO);
	assert_false(cc->changes.persist);
	assert_int_equal(cc->changes.debounce, 1);
	assert_int_equal(cc->changes.full_every, 86400);
	const struct ids_ldap_cfg *l = &cc->ldap;
	assert_int_equal(l->flavor, IDS_LDAP_OPENLDAP);
	assert_int_equal(l->uri.n, 1);
	assert_string_equal(l->uri.v[0], "ldaps://ldap.example");
	assert_true(l->start_tls);
	assert_null(l->tls_ca_file);
	assert_null(l->bind_dn);
	assert_null(l->bind_password);
	assert_null(l->bind_password_file);
	assert_null(l->sasl_mech);
	assert_int_equal(l->timeout, 30);
	assert_int_equal(l->page_size, 500);
	assert_string_equal(l->users_base, "ou=people,dc=example");
	assert_string_equal(l->users_filter, "(objectClass=inetOrgPerson)");
	assert_null(l->groups_base);
	assert_string_equal(
	    l->groups_filter,
	    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))");
	assert_null(l->member_attribute);
	assert_null(l->disabled_filter);
	assert_int_equal(l->member_range_size, 0);
	ids_config_free(cfg);
}

/* ---- every key given ---- */

static void full(void **state)
{
	static const char *const roles[] = {"operator", "tenant_admin", "ANALYST"};
	static const char *const channels[] = {"webchat", "email"};
	static const char *const groups[] = {"live", "email"};
	static const char *const uris[] = {"ldaps://dc1.example", "ldap://dc2.example:389"};
	static const char *const ad[] = {"objectGUID", "userPrincipalName", "mail", "givenName",
					 "sn",	       "displayName"};
	static const char *const entra[] = {"id",	 "userPrincipalName", "mail",
					    "givenName", "surname",	      "displayName"};
	static const char *const google[] = {
	    "id",	    "primaryEmail", "customSchemas.CC.mail", "name.givenName", "name.familyName",
	    "name.fullName"};
	static const char *const entra_groups[] = {"CC-Support-CZ", "5f3c0000"};
	char path[256];
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/full.yaml");

	assert_string_equal(cfg->database.conninfo, "host=db.example dbname=cc user=idsyncd");
	assert_string_equal(cfg->database.password, SECRET_MARK "-pw"); /* "\n" stripped */
	assert_string_equal(cfg->database.schema, "idsync_test");
	assert_false(cfg->database.migrate_auto);
	assert_int_equal(cfg->sync.interval, 5400); /* 1h30m */
	assert_int_equal(cfg->sync.jitter, 0);
	assert_int_equal(cfg->sync.retry_min, 60);
	assert_int_equal(cfg->sync.retry_max, 86400);
	assert_int_equal(cfg->sync.run_timeout, 7200);
	assert_int_equal(cfg->sync.heartbeat, 20);
	assert_int_equal(cfg->log.level, IDS_LOG_DEBUG);
	assert_int_equal(cfg->log.target, IDS_LOGT_JOURNAL);
	assert_int_equal(cfg->safety.max_deactivations, 0);
	assert_int_equal(cfg->safety.max_deactivation_percent, 0);
	assert_int_equal(cfg->safety.max_grant_removals_percent, 100);
	assert_true(cfg->tenants_auto_create);
	/* extra_roles appended to the given roles */
	assert_strv(&cfg->catalog.roles, roles, 3);
	assert_strv(&cfg->catalog.channels, channels, 2);
	assert_strv(&cfg->catalog.channel_groups, groups, 2);

	assert_int_equal(cfg->nconnectors, 3);
	const struct ids_connector_cfg *a = &cfg->connectors[0];
	assert_string_equal(a->name, "corp-ad");
	assert_int_equal(a->line, 29);
	assert_string_equal(a->company, "acme");
	assert_int_equal(a->interval, 300);
	assert_true(a->adopt_by_email);
	assert_true(a->allow_empty);
	for (size_t f = 0; f < 6; f++)
		assert_string_equal(a->attr[f], ad[f]); /* AD defaults, username overridden */
	assert_int_equal(a->ldap.flavor, IDS_LDAP_AD);
	assert_strv(&a->ldap.uri, uris, 2);
	assert_true(a->ldap.start_tls);
	snprintf(path, sizeof(path), "%s/cert.pem", secrets_dir);
	assert_string_equal(a->ldap.tls_ca_file, path);
	assert_string_equal(a->ldap.bind_dn, "CN=svc,DC=example");
	assert_string_equal(a->ldap.bind_password, SECRET_MARK "-crlf"); /* "\r\n" stripped */
	snprintf(path, sizeof(path), "%s/pw_crlf", secrets_dir);
	assert_string_equal(a->ldap.bind_password_file, path);
	assert_int_equal(a->ldap.timeout, 10);
	assert_int_equal(a->ldap.page_size, 1000);
	assert_string_equal(a->ldap.users_base, "OU=People,DC=example");
	assert_string_equal(a->ldap.users_filter, "(&(objectCategory=person)(objectClass=user))");
	assert_string_equal(a->ldap.groups_base, "OU=Groups,DC=example");
	assert_string_equal(a->ldap.groups_filter, "(objectClass=group)");
	assert_string_equal(a->ldap.member_attribute, "member");
	assert_null(a->ldap.disabled_filter); /* AD: userAccountControl, read by the connector */
	assert_int_equal(a->ldap.member_range_size, 1500);

	const struct ids_connector_cfg *e = &cfg->connectors[1];
	assert_string_equal(e->name, "entra");
	assert_int_equal(e->type, IDS_CONN_ENTRA);
	assert_int_equal(e->line, 48);
	assert_string_equal(e->company, "default");
	for (size_t f = 0; f < 6; f++)
		assert_string_equal(e->attr[f], entra[f]);
	assert_string_equal(e->entra.tenant, "contoso.onmicrosoft.com");
	assert_string_equal(e->entra.client_id, "11111111-1111-1111-1111-111111111111");
	assert_null(e->entra.client_secret);
	assert_null(e->entra.client_secret_file);
	snprintf(path, sizeof(path), "%s/cert.pem", secrets_dir);
	assert_string_equal(e->entra.client_certificate_file, path);
	assert_string_equal(e->entra.tls_ca_file, path);
	snprintf(path, sizeof(path), "%s/key.pem", secrets_dir);
	assert_string_equal(e->entra.client_key_file, path);
	assert_string_equal(e->entra.client_assertion_alg, "RS256");
	assert_string_equal(e->entra.login_endpoint, "https://127.0.0.1:8443");
	assert_string_equal(e->entra.graph_endpoint, "https://127.0.0.1:8444/v1.0");
	assert_int_equal(e->entra.timeout, 60);
	assert_strv(&e->entra.groups, entra_groups, 2);

	const struct ids_connector_cfg *g = &cfg->connectors[2];
	assert_string_equal(g->name, "gws");
	assert_int_equal(g->type, IDS_CONN_GOOGLE);
	assert_string_equal(g->company, "beta");
	for (size_t f = 0; f < 6; f++)
		assert_string_equal(g->attr[f], google[f]);
	snprintf(path, sizeof(path), "%s/key.pem", secrets_dir);
	assert_string_equal(g->google.service_account_file, path);
	assert_string_equal(g->google.subject, "admin@example.com");
	assert_null(g->google.customer); /* domain given: no my_customer default */
	assert_string_equal(g->google.domain, "example.com");
	assert_string_equal(g->google.token_endpoint, "https://127.0.0.1:8445/token");
	assert_string_equal(g->google.api_endpoint, "https://127.0.0.1:8446");
	assert_int_equal(g->google.timeout, 30);
	assert_int_equal(g->google.groups.n, 1);
	assert_string_equal(g->google.groups.v[0], "cc@example.com");

	ids_config_free(cfg);
}

static void full_rules(void **state)
{
	static const char *const conns[] = {"corp-ad", "entra"};
	static const char *const roles[] = {"operator", "ANALYST"};
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/full.yaml");
	assert_int_equal(cfg->nrules, 4);

	const struct ids_rule *r = &cfg->rules[0];
	assert_string_equal(r->name, "cz-support");
	assert_int_equal(r->line, 71);
	assert_strv(&r->connectors, conns, 2);
	assert_int_equal(r->member_of.n, 1);
	assert_string_equal(r->member_of.v[0], "CN=CC-Support-CZ,OU=Groups,DC=example");
	assert_int_equal(r->not_member_of.n, 1);
	assert_string_equal(r->not_member_of.v[0], "CC-Suspended");
	assert_int_equal(r->nattrs, 2);
	assert_string_equal(r->attrs[0].name, "department");
	assert_string_equal(r->attrs[0].pattern, "^Support");
	assert_true(matches(&r->attrs[0].re, "Support CZ"));
	assert_false(matches(&r->attrs[0].re, "support cz")); /* case-sensitive by default */
	assert_string_equal(r->attrs[1].name, "employeeType");
	assert_string_equal(r->attrs[1].pattern, "^staff$"); /* (?i) stripped ... */
	assert_true(matches(&r->attrs[1].re, "STAFF"));	     /* ... and honoured */
	assert_false(matches(&r->attrs[1].re, "staffer"));
	assert_null(r->member_of_regex);
	assert_string_equal(r->tenant, "support-cz");
	assert_strv(&r->roles, roles, 2);
	assert_int_equal(r->channels.n, 2);
	assert_int_equal(r->nslots, 2);
	assert_string_equal(r->slots[0].channel_group, "live");
	assert_int_equal(r->slots[0].slots, 3);
	assert_string_equal(r->slots[1].channel_group, "email");
	assert_int_equal(r->slots[1].slots, 0);
	assert_int_equal(r->groups.n, 1);
	assert_string_equal(r->groups.v[0], "first-line");
	assert_false(r->company_admin);
	assert_false(r->revoke);

	r = &cfg->rules[1];
	assert_string_equal(r->name, "by-group");
	assert_int_equal(r->connectors.n, 0); /* every connector */
	assert_string_equal(r->member_of_regex, "^CC-([a-z]+)-([a-z]+)-Operators$");
	assert_int_equal(r->group_re_nsub, 2);
	assert_true(matches(&r->group_re, "cc-support-cz-operators"));
	assert_true(matches(&r->group_re, "CC-Support-CZ-Operators"));
	assert_false(matches(&r->group_re, "CC-Support-Operators"));
	assert_string_equal(r->tenant, "{1}-{2}");

	r = &cfg->rules[2];
	assert_string_equal(r->name, "admins");
	assert_true(r->company_admin);
	assert_null(r->tenant);
	assert_int_equal(r->roles.n + r->channels.n + r->groups.n + r->nslots, 0);

	r = &cfg->rules[3];
	assert_string_equal(r->name, "no-email-for-contractors");
	assert_int_equal(r->line, 90);
	assert_true(r->revoke);
	assert_string_equal(r->tenant, "*");
	assert_int_equal(r->revoke_channels.n, 1);
	assert_string_equal(r->revoke_channels.v[0], "email");
	assert_int_equal(r->revoke_roles.n, 1);
	assert_string_equal(r->revoke_roles.v[0], "tenant_admin");
	assert_int_equal(r->revoke_groups.n, 1);
	assert_string_equal(r->revoke_groups.v[0], "first-line");
	ids_config_free(cfg);
}

/* ---- ${NAME} expansion ---- */

static void env_expansion(void **state)
{
	(void)state;
	setenv("IDS_TEST_HOST", "db.example", 1);
	setenv("IDS_TEST_DB", "cc", 1);
	setenv("IDS_TEST_SCHEMA", "idsync_env", 1);
	setenv("IDS_TEST_PCT", "42", 1);
	setenv("IDS_TEST_CONN", "from-env", 1);
	setenv("IDS_TEST_PWNAME", "pw_bare", 1);
	struct ids_config *cfg = load_ok(OK_DIR "/env.yaml");
	assert_string_equal(cfg->database.conninfo, "host=db.example dbname=cccc password=$x");
	assert_string_equal(cfg->database.schema, "idsync_env");
	assert_int_equal(cfg->safety.max_deactivation_percent, 42); /* expanded, then parsed */
	assert_string_equal(cfg->connectors[0].name, "from-env");
	assert_string_equal(cfg->connectors[0].ldap.uri.v[0], "ldaps://db.example:636");
	assert_string_equal(cfg->connectors[0].ldap.bind_password,
			    SECRET_MARK "-bare"); /* no newline to strip */
	assert_non_null(ids_config_connector(cfg, "from-env"));
	ids_config_free(cfg);
	unsetenv("IDS_TEST_PWNAME");
}

/* ---- secrets ---- */

/* Only ONE trailing newline goes: "x\n\n" is the secret "x\n". */
static void secret_one_newline(void **state)
{
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/sasl_ldapi.yaml");
	const struct ids_connector_cfg *e = ids_config_connector(cfg, "entra-secret");
	assert_non_null(e);
	assert_string_equal(e->entra.client_secret, SECRET_MARK "-two\n");
	assert_string_equal(e->entra.client_assertion_alg, "PS256");
	ids_config_free(cfg);
}

/* changes: every key set; a partial block keeps the other defaults. */
static void changes(void **state)
{
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/changes.yaml");
	const struct ids_changes_cfg *a = &cfg->connectors[0].changes, *b = &cfg->connectors[1].changes;
	assert_int_equal(a->mode, IDS_CHANGES_FULL);
	assert_false(a->persist);
	assert_int_equal(a->debounce, 0);
	assert_int_equal(a->full_every, 6 * 3600);
	assert_int_equal(b->mode, IDS_CHANGES_AUTO);
	assert_int_equal(b->debounce, 3600);
	assert_true(b->persist); /* openldap with the feed: accepted (issue 14) */
	assert_int_equal(b->full_every, 86400);
	assert_false(a->object_security);
	assert_false(b->object_security);
	assert_true(cfg->connectors[2].changes.object_security);
	ids_config_free(cfg);
}

static void security_after_connectors(void **state)
{
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/security_last.yaml");
	assert_true(cfg->security.allow_readable_secrets);
	assert_true(cfg->security.allow_plaintext_bind);
	assert_string_equal(cfg->database.password, SECRET_MARK "-644");
	assert_string_equal(cfg->connectors[0].ldap.bind_password, SECRET_MARK "-620");
	assert_false(cfg->connectors[0].ldap.start_tls);
	ids_config_free(cfg);
}

static void sasl_ldapi_and_defaults(void **state)
{
	static const char *const generic[] = {"nsUniqueId", "uid", "mail", "givenName", "sn", "displayName"};
	static const char *const google[] = {
	    "id", "primaryEmail", "primaryEmail", "name.givenName", "name.familyName", "name.fullName"};
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/sasl_ldapi.yaml");
	assert_int_equal(cfg->nrules, 0); /* rules: [] */
	const struct ids_connector_cfg *l = ids_config_connector(cfg, "local");
	assert_non_null(l);
	assert_int_equal(l->ldap.flavor, IDS_LDAP_GENERIC);
	assert_int_equal(l->ldap.uri.n, 1); /* a string is a list of one */
	assert_string_equal(l->ldap.uri.v[0], "ldapi:///");
	assert_string_equal(l->ldap.sasl_mech, "EXTERNAL");
	assert_string_equal(l->ldap.users_filter, "(&(objectClass=person)(!(uid=svc-*)))");
	/* generic: openldap's defaults */
	assert_string_equal(
	    l->ldap.groups_filter,
	    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))");
	assert_string_equal(l->ldap.disabled_filter, "(pwdAccountLockedTime=*)");
	for (size_t f = 0; f < 6; f++)
		assert_string_equal(l->attr[f], generic[f]);

	const struct ids_connector_cfg *e = ids_config_connector(cfg, "entra-secret");
	assert_string_equal(e->entra.login_endpoint, "https://login.microsoftonline.com");
	assert_string_equal(e->entra.graph_endpoint, "https://graph.microsoft.com/v1.0");
	assert_int_equal(e->entra.timeout, 30);
	assert_int_equal(e->entra.groups.n, 0);

	const struct ids_connector_cfg *g = ids_config_connector(cfg, "gws");
	assert_string_equal(g->google.customer, "my_customer");
	assert_null(g->google.domain);
	assert_null(g->google.token_endpoint); /* the key file's token_uri */
	assert_string_equal(g->google.api_endpoint, "https://admin.googleapis.com");
	for (size_t f = 0; f < 6; f++)
		assert_string_equal(g->attr[f], google[f]);
	ids_config_free(cfg);
}

static void relative_paths(void **state)
{
	(void)state;
	/* git does not keep the 0600 this secret needs */
	assert_int_equal(chmod(OK_DIR "/relative-pw", 0600), 0);
	struct ids_config *cfg = load_ok(OK_DIR "/relative.yaml");
	assert_string_equal(cfg->database.password, "relative-secret");
	assert_string_equal(cfg->connectors[0].ldap.tls_ca_file, OK_DIR "/ca.pem");
	ids_config_free(cfg);
}

/* The same file through ids_config_load_string resolves against the
 * current directory, where relative-pw is not. */
static void string_relative_to_cwd(void **state)
{
	static const char yaml[] = "database:\n  conninfo: x\n  password_file: relative-pw\n"
				   "connectors:\n  - name: c\n    type: ldap\n    uri: ldaps://h\n"
				   "    users: { base: \"dc=x\" }\n";
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	(void)state;
	assert_int_equal(ids_config_load_string("s.yaml", yaml, sizeof(yaml) - 1, &cfg, &e), IDS_E_CONFIG);
	assert_string_equal(e.msg,
			    "s.yaml:3:18: database.password_file: cannot open relative-pw: No such file or "
			    "directory");
	assert_null(cfg);
	ids_error_clear(&e);
}

/* The Perl-class refusal (test_config_errors' rule_regex_perl_*) must not
 * catch an escaped backslash followed by a letter: "\\d" is a backslash
 * and a d, in POSIX as in Perl, and so is [\\d] in a bracket. */
static void regex_escaped_backslash(void **state)
{
	static const char yaml[] =
	    "database:\n  conninfo: x\n"
	    "connectors:\n  - name: c\n    type: ldap\n    uri: ldaps://h\n"
	    "    users: { base: \"dc=x\" }\n"
	    "rules:\n  - name: a\n    match:\n      member_of_regex: \"^a\\\\\\\\d[\\\\\\\\w]$\"\n"
	    "    company_admin: true\n";
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	(void)state;
	assert_int_equal(ids_config_load_string("s.yaml", yaml, sizeof(yaml) - 1, &cfg, &e), 0);
	assert_string_equal(cfg->rules[0].member_of_regex, "^a\\\\d[\\\\w]$");
	assert_true(matches(&cfg->rules[0].group_re, "a\\dw"));
	assert_true(matches(&cfg->rules[0].group_re, "a\\d\\"));
	assert_false(matches(&cfg->rules[0].group_re, "a1w"));
	ids_config_free(cfg);
	ids_error_clear(&e);
}

/* ---- the shipped example ---- */

static void example(void **state)
{
	/* the names systemd gives the files of the unit's credentials
	 * directory (LoadCredential=idsyncd:DIR): idsyncd_FILE */
	static const char *const creds[] = {"idsyncd_db-password", "idsyncd_ldap-password",
					    "idsyncd_entra-secret", "idsyncd_google-sa.json"};
	char dir[64], path[256];
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ids-config-creds-XXXXXX");
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < 4; i++) {
		char content[64];
		snprintf(path, sizeof(path), "%s/%s", dir, creds[i]);
		snprintf(content, sizeof(content), "secret-of-%s\n", creds[i]);
		assert_int_equal(write_file(path, content, strlen(content), 0600), 0);
	}
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	struct ids_config *cfg = load_ok("../../config/example.yaml");

	assert_string_equal(cfg->database.password, "secret-of-idsyncd_db-password");
	assert_int_equal(cfg->nconnectors, 3);
	const struct ids_connector_cfg *ad = ids_config_connector(cfg, "corp-ad");
	assert_non_null(ad);
	assert_int_equal(ad->type, IDS_CONN_LDAP);
	assert_int_equal(ad->ldap.flavor, IDS_LDAP_AD);
	assert_int_equal(ad->ldap.uri.n, 2);
	assert_string_equal(ad->ldap.bind_password, "secret-of-idsyncd_ldap-password");
	assert_true(ad->adopt_by_email);
	const struct ids_connector_cfg *en = ids_config_connector(cfg, "entra");
	assert_non_null(en);
	assert_string_equal(en->entra.client_secret, "secret-of-idsyncd_entra-secret");
	const struct ids_connector_cfg *gw = ids_config_connector(cfg, "gws");
	assert_non_null(gw);
	snprintf(path, sizeof(path), "%s/idsyncd_google-sa.json", dir);
	assert_string_equal(gw->google.service_account_file, path);
	assert_int_equal(cfg->nrules, 4);
	assert_string_equal(cfg->rules[1].member_of_regex, "^CC-([a-z]+)-([a-z]+)-Operators$");
	assert_int_equal(cfg->rules[1].group_re_nsub, 2);
	assert_true(cfg->rules[3].revoke);
	ids_config_free(cfg);

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, creds[i]);
		unlink(path);
	}
	rmdir(dir);
	unsetenv("CREDENTIALS_DIRECTORY");
}

/* ---- small functions ---- */

static void durations(void **state)
{
	static const struct {
		const char *s;
		int want; /* -1: -EINVAL, -2: -ERANGE */
	} cases[] = {
	    {"30s", 30},
	    {"5m", 300},
	    {"1h", 3600},
	    {"1d", 86400},
	    {"1h30m", 5400},
	    {"1d2h3m4s", 93784},
	    {"0s", 0},
	    {"90s", 90},
	    {"24855d", 2147472000}, /* the largest whole number of days in an int */
	    {"", -1},
	    {"30", -1},
	    {"m", -1},
	    {"1x", -1},
	    {"30m1h", -1},
	    {"1h1h", -1},
	    {" 1h", -1},
	    {"1h ", -1},
	    {"-1s", -1},
	    {"1.5h", -1},
	    {"1H", -1},
	    {"1hm", -1},
	    {"24856d", -2},
	    {"99999999999s", -2},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int v = -12345;
		int r = ids_parse_duration(cases[i].s, &v);
		if (cases[i].want >= 0) {
			assert_int_equal(r, 0);
			assert_int_equal(v, cases[i].want);
		} else {
			assert_int_equal(r, cases[i].want == -1 ? -EINVAL : -ERANGE);
			assert_int_equal(v, -12345); /* untouched on failure */
		}
	}
	assert_int_equal(ids_parse_duration(NULL, &(int){0}), -EINVAL);
}

/* scim: the listener block and two scim connectors, defaults and not;
 * the listen parser on every shape it takes */
static void scim(void **state)
{
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/scim.yaml");
	assert_string_equal(cfg->scim.listen, "[::1]:8443");
	assert_null(cfg->scim.tls_cert_file);
	const struct ids_connector_cfg *o = ids_config_connector(cfg, "okta");
	assert_int_equal(o->type, IDS_CONN_SCIM);
	assert_string_equal(o->scim.token, SECRET_MARK "-crlf");
	assert_int_equal(o->scim.apply_delay, 1);
	assert_int_equal(o->scim.rate_limit, 1000);
	const struct ids_connector_cfg *e = ids_config_connector(cfg, "entra-prov");
	assert_int_equal(e->scim.apply_delay, 0);
	assert_int_equal(e->scim.rate_limit, 0);
	assert_string_equal(e->company, "default");
	ids_config_free(cfg);
	assert_string_equal(ids_conn_type_name(IDS_CONN_SCIM), "scim");

	static const struct {
		const char *listen, *host;
		int port;
		bool loopback;
	} ok[] = {
	    {"127.0.0.1:8443", "127.0.0.1", 8443, true},
	    {"127.9.9.9:1", "127.9.9.9", 1, true},
	    {"[::1]:443", "::1", 443, true},
	    {"localhost:80", "localhost", 80, true},
	    {"0.0.0.0:8443", "0.0.0.0", 8443, false},
	    {"[::]:8443", "::", 8443, false},
	    {"10.1.2.3:65535", "10.1.2.3", 65535, false},
	    {"/run/idsyncd/scim.sock", NULL, 0, true},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *host = (char *)"unset";
		int port = -1;
		bool lo = !ok[i].loopback;
		assert_int_equal(ids_config_scim_listen(ok[i].listen, &host, &port, &lo), 0);
		if (ok[i].host)
			assert_string_equal(host, ok[i].host);
		else
			assert_null(host);
		assert_int_equal(port, ok[i].port);
		assert_int_equal(lo, ok[i].loopback);
		free(host);
	}
	static const char *const bad[] = {
	    "8443",	":8443",     "127.0.0.1:",	 "127.0.0.1:0",	   "127.0.0.1:65536",
	    "::1:8443", "[::1]8443", "scim.example:443", "127.0.0.1:84x3", "relative/path.sock"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *host = NULL;
		int port = 0;
		bool lo = false;
		if (ids_config_scim_listen(bad[i], &host, &port, &lo) != -EINVAL)
			print_message("accepted: %s\n", bad[i]);
		assert_int_equal(ids_config_scim_listen(bad[i], &host, &port, &lo), -EINVAL);
	}
}

static void lookups(void **state)
{
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/full.yaml");
	assert_ptr_equal(ids_config_connector(cfg, "corp-ad"), &cfg->connectors[0]);
	assert_ptr_equal(ids_config_connector(cfg, "gws"), &cfg->connectors[2]);
	assert_null(ids_config_connector(cfg, "GWS"));
	assert_null(ids_config_connector(cfg, "nope"));
	assert_null(ids_config_connector(cfg, NULL));
	ids_config_free(cfg);
	assert_string_equal(ids_conn_type_name(IDS_CONN_LDAP), "ldap");
	assert_string_equal(ids_conn_type_name(IDS_CONN_ENTRA), "entra");
	assert_string_equal(ids_conn_type_name(IDS_CONN_GOOGLE), "google");
	ids_config_free(NULL); /* accepts NULL */
}

/* catalog.requires, on_missing_requirement and licences, as written; a
 * file without them has none, and add is the default. */
/* The packaged configuration before anyone configured it: every
 * connector commented out, `connectors: []` (issue 18). */
static void no_connectors(void **state)
{
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/no_connectors.yaml");
	assert_int_equal(cfg->nconnectors, 0);
	assert_null(cfg->connectors);
	ids_config_free(cfg);
}

static void platform_rules(void **state)
{
	(void)state;
	struct ids_config *cfg = load_ok(OK_DIR "/platform.yaml");
	const struct ids_catalog_rules *p = &cfg->platform;
	assert_int_equal(p->nreq, 3);
	assert_string_equal(p->req[0].role, "monitoring");
	assert_int_equal(p->req[0].needs.n, 1);
	assert_string_equal(p->req[0].needs.v[0], "phone");
	assert_string_equal(p->req[2].role, "tag_ended_sessions");
	assert_int_equal(p->req[2].needs.n, 2);
	assert_string_equal(p->req[2].needs.v[1], "view_operators");
	assert_true(p->drop_missing);
	assert_int_equal(p->nlic, 3);
	assert_string_equal(p->lic[0].company, "acme");
	assert_string_equal(p->lic[0].role, "phone");
	assert_int_equal(p->lic[0].limit, 50);
	assert_string_equal(p->lic[1].role, "operator");
	assert_int_equal(p->lic[1].limit, 0);
	assert_string_equal(p->lic[2].company, "default");
	assert_int_equal(p->lic[2].limit, 7);
	ids_config_free(cfg);

	cfg = load_ok(OK_DIR "/minimal.yaml");
	assert_int_equal(cfg->platform.nreq, 0);
	assert_int_equal(cfg->platform.nlic, 0);
	assert_false(cfg->platform.drop_missing);
	ids_config_free(cfg);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults),
	    cmocka_unit_test(full),
	    cmocka_unit_test(full_rules),
	    cmocka_unit_test(env_expansion),
	    cmocka_unit_test(secret_one_newline),
	    cmocka_unit_test(security_after_connectors),
	    cmocka_unit_test(changes),
	    cmocka_unit_test(sasl_ldapi_and_defaults),
	    cmocka_unit_test(relative_paths),
	    cmocka_unit_test(string_relative_to_cwd),
	    cmocka_unit_test(regex_escaped_backslash),
	    cmocka_unit_test(scim),
	    cmocka_unit_test(example),
	    cmocka_unit_test(durations),
	    cmocka_unit_test(lookups),
	    cmocka_unit_test(no_connectors),
	    cmocka_unit_test(platform_rules),
	};
	return cmocka_run_group_tests_name("config ok", tests, secrets_setup, secrets_teardown);
}
