/* fuzz_config.c — libFuzzer target: the configuration loader
 * (ids_config_load_string), from the YAML bytes up.
 *
 * The loader is the one parser that reads a file an operator edits by
 * hand, so its promise is checked, not only its memory safety: every
 * rejected input gets IDS_E_CONFIG (or -ENOMEM) and a message that starts
 * with "NAME:LINE:COL: " — `check-config` and the daemon print that and
 * exit 78, never crash.  An accepted config is then used the way a sync
 * uses it: the attributes each connector's rules read, and the rules
 * evaluated on a small fixed directory (templates, regexes, revokes). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ids/config.h"
#include "ids/rules.h"
#include "ids/snapshot.h"

#define NAME "fuzz.yaml"

static struct ids_snapshot *fixture; /* built once, finished */

static void broken(const char *what, const char *msg)
{
	fprintf(stderr, "fuzz_config: %s: %s\n", what, msg ? msg : "(no message)");
	abort();
}

/* "NAME:<digits>:<digits>: " at the start of msg. */
static int has_position(const char *msg)
{
	size_t n = strlen(NAME);
	if (!msg || strncmp(msg, NAME ":", n + 1) != 0)
		return 0;
	const char *p = msg + n + 1;
	for (int part = 0; part < 2; part++) {
		if (*p < '1' || *p > '9')
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p++ != ':')
			return 0;
	}
	return *p == ' ';
}

static int add_user(struct ids_snapshot *s, const char *id, const char *name, const char *dept,
		    const char *group_id)
{
	int r = ids_snapshot_user_begin(s);
	if (r >= 0)
		r = ids_snapshot_user_set(s, IDS_F_EXTERNAL_ID, id, strlen(id));
	if (r >= 0)
		r = ids_snapshot_user_set(s, IDS_F_USERNAME, name, strlen(name));
	/* the attribute names fuzzed configs most likely spell */
	const char *attrs[] = {"department", "employeeType", "tenant", "title", "dept"};
	for (size_t i = 0; r >= 0 && i < sizeof(attrs) / sizeof(attrs[0]); i++)
		r = ids_snapshot_user_attr(s, attrs[i], dept, strlen(dept));
	if (r >= 0)
		r = ids_snapshot_user_end(s);
	if (r >= 0 && group_id)
		r = ids_snapshot_member(s, group_id, IDS_REF_ID, id, strlen(id));
	return r;
}

static int add_group(struct ids_snapshot *s, const char *id, const char *name, const char *dn)
{
	int r = ids_snapshot_group_begin(s);
	if (r >= 0)
		r = ids_snapshot_group_set(s, IDS_F_EXTERNAL_ID, id, strlen(id));
	if (r >= 0)
		r = ids_snapshot_group_set(s, IDS_F_USERNAME, name, strlen(name));
	if (r >= 0)
		r = ids_snapshot_group_set(s, IDS_F_DN, dn, strlen(dn));
	if (r >= 0)
		r = ids_snapshot_group_end(s);
	return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* relative secret file names resolve in an empty directory */
	char dir[] = "/tmp/fuzz_config.XXXXXX";
	if (!mkdtemp(dir) || chdir(dir) < 0)
		abort();
	/* the secret files the seeds name (${CREDENTIALS_DIRECTORY}/...), mode
	 * 600 so that a config gets past them to its rules; and one readable
	 * by others, which must be refused */
	static const char *const secrets[] = {
	    "db-password", "ldap-password", "entra-secret", "google-sa.json", "ca.pem", "pw", NULL};
	for (size_t i = 0; secrets[i]; i++) {
		int fd = open(secrets[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || write(fd, "s3cret\n", 7) != 7 || close(fd) < 0)
			abort();
	}
	int fd = open("readable", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "s3cret", 6) != 6 || close(fd) < 0)
		abort();
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	setenv("IDS_FUZZ_VAR", "corp", 1);
	struct ids_snapshot *s = NULL;
	int r = ids_snapshot_new(&s);
	if (r >= 0)
		r = add_group(s, "g1", "CC-Support-CZ", "cn=CC-Support-CZ,ou=groups,dc=corp,dc=example");
	if (r >= 0)
		r = add_group(s, "g2", "CC-sales-de-Operators",
			      "cn=CC-sales-de-Operators,dc=corp,dc=example");
	if (r >= 0)
		r = add_user(s, "u1", "jnovak", "Support", "g1");
	if (r >= 0)
		r = add_user(s, "u2", "pdvorak", "contractor", "g2");
	if (r >= 0)
		r = add_user(s, "u3", "kamil", "-Bad Slug", "g2");
	if (r >= 0)
		r = ids_snapshot_finish(s);
	if (r < 0)
		abort();
	fixture = s;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ids_config *cfg = NULL;
	struct ids_error err = {0};
	int r = ids_config_load_string(NAME, (const char *)data, size, &cfg, &err);
	if (r < 0) {
		if (cfg)
			broken("a failed load returned a config", err.msg);
		if (r != IDS_E_CONFIG && r != -ENOMEM)
			broken("a load failed with a code other than IDS_E_CONFIG", err.msg);
		if (r == IDS_E_CONFIG && !has_position(err.msg))
			broken("a config error without FILE:LINE:COL", err.msg);
		ids_error_clear(&err);
		return 0;
	}
	if (!cfg)
		broken("a successful load returned no config", NULL);
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const char *name = cfg->connectors[i].name;
		struct ids_strv attrs = {0};
		struct ids_desired_set *d = NULL;
		if (ids_rules_attrs(cfg->rules, cfg->nrules, name, &attrs) < 0)
			broken("ids_rules_attrs failed", name);
		if (ids_rules_eval(cfg->rules, cfg->nrules, name, fixture, &d) < 0)
			broken("ids_rules_eval failed on a valid config", name);
		/* whatever the templates said, only valid slugs come out */
		for (size_t u = 0; u < d->nusers; u++)
			for (size_t g = 0; g < d->users[u].ngrants; g++)
				if (!ids_slug_valid(d->users[u].grants[g].tenant))
					broken("a grant with an invalid tenant slug",
					       d->users[u].grants[g].tenant);
		ids_desired_set_free(d);
		ids_strv_free(&attrs);
	}
	ids_config_free(cfg);
	return 0;
}
