/* test_config_secret.c — the one secret-file reader (secret.h): where a
 * relative secret name is read from ($CREDENTIALS_DIRECTORY under systemd,
 * as systemd 252 names the files of a loaded directory), what is refused,
 * and that every refusal is a configuration error naming the file and
 * never its content.  Files are made here, in a throwaway directory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ids/config.h"
#include "ids/secret.h"

#define MARK "hunter2-secret"

static char dir[64];

static void put(const char *rel, const char *content, mode_t mode)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int setup(void **state)
{
	char path[256];
	snprintf(dir, sizeof(dir), "/tmp/ids-secret-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	/* the layout of the README: the config, and credentials/ beside it
	 * (what the unit loads); creds/ plays $CREDENTIALS_DIRECTORY with the
	 * names systemd gives: "idsyncd_" + the file's name */
	snprintf(path, sizeof(path), "%s/credentials", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/creds", dir);
	mkdir(path, 0700);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void resolve_rule(void **state)
{
	char *p = NULL;
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(ids_secret_resolve("/abs/pw", "/etc/idsyncd", &p), 0);
	assert_string_equal(p, "/abs/pw");
	free(p);
	assert_int_equal(ids_secret_resolve("credentials/db-password", "/etc/idsyncd", &p), 0);
	assert_string_equal(p, "/etc/idsyncd/credentials/db-password");
	free(p);
	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/idsyncd.service", 1);
	/* LoadCredential=idsyncd:/etc/idsyncd/credentials: credentials/NAME
	 * is $CREDENTIALS_DIRECTORY/idsyncd_NAME */
	assert_int_equal(ids_secret_resolve("credentials/db-password", "/etc/idsyncd", &p), 0);
	assert_string_equal(p, "/run/credentials/idsyncd.service/idsyncd_db-password");
	free(p);
	assert_int_equal(ids_secret_resolve("db-password", "/etc/idsyncd", &p), 0);
	assert_string_equal(p, "/run/credentials/idsyncd.service/idsyncd_db-password");
	free(p);
	/* an absolute name is the operator's explicit choice, systemd or not */
	assert_int_equal(ids_secret_resolve("/abs/pw", "/etc/idsyncd", &p), 0);
	assert_string_equal(p, "/abs/pw");
	free(p);
	unsetenv("CREDENTIALS_DIRECTORY");
}

/* The same configuration reads credentials/db-password from a shell and
 * the credential systemd made of it under the unit. */
static void config_reads_credentials_directory(void **state)
{
	char yaml_path[256], creds[256];
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	static const char yaml[] = "database:\n  conninfo: x\n  password_file: credentials/db-password\n"
				   "connectors:\n  - name: c\n    type: google\n"
				   "    service_account_file: credentials/sa.json\n"
				   "    subject: admin@corp.example\n";
	snprintf(yaml_path, sizeof(yaml_path), "%s/idsyncd.yaml", dir);
	snprintf(creds, sizeof(creds), "%s/creds", dir);
	put("idsyncd.yaml", yaml, 0644);
	put("credentials/db-password", "from-the-shell\n", 0600);
	put("credentials/sa.json", "{}", 0600);
	/* what systemd copies to $CREDENTIALS_DIRECTORY (0400, the unit's user) */
	put("creds/idsyncd_db-password", "from-systemd\n", 0400);
	put("creds/idsyncd_sa.json", "{}", 0400);

	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(ids_config_load(yaml_path, &cfg, &e), 0);
	assert_string_equal(cfg->database.password, "from-the-shell");
	ids_config_free(cfg);
	cfg = NULL;

	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	assert_int_equal(ids_config_load(yaml_path, &cfg, &e), 0);
	assert_string_equal(cfg->database.password, "from-systemd");
	char want[300];
	snprintf(want, sizeof(want), "%s/idsyncd_sa.json", creds);
	assert_string_equal(cfg->connectors[0].google.service_account_file, want);
	ids_config_free(cfg);
	cfg = NULL;

	/* a credential the unit did not load: a configuration error naming
	 * where it was looked for */
	unlink(want);
	assert_int_equal(ids_config_load(yaml_path, &cfg, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, "connectors[0].service_account_file: cannot open "));
	assert_non_null(strstr(e.msg, want));
	assert_null(cfg);
	ids_error_clear(&e);
	unsetenv("CREDENTIALS_DIRECTORY");
}

/* Every refusal: IDS_E_CONFIG, the file's name, never its content. */
static void read_refusals(void **state)
{
	char path[256], *s = NULL;
	size_t n = 0;
	struct ids_error e = {0};
	put("ok", MARK "\n", 0600);
	put("wide", MARK "\n", 0640);
	snprintf(path, sizeof(path), "%s/ok", dir);
	assert_int_equal(ids_secret_read(path, IDS_SECRET_MAX, false, &s, &n, &e), 0);
	assert_int_equal(n, strlen(MARK) + 1);
	assert_memory_equal(s, MARK "\n", n + 1);
	ids_secret_free(s);
	s = NULL;
	/* larger than allowed */
	assert_int_equal(ids_secret_read(path, 4, false, &s, &n, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, "is larger than 4 bytes"));
	assert_null(strstr(e.msg, MARK));
	/* vanished (a key removed after check-config): configuration, not a
	 * failed run */
	snprintf(path, sizeof(path), "%s/gone", dir);
	assert_int_equal(ids_secret_read(path, IDS_SECRET_MAX, false, &s, &n, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, path));
	/* a directory */
	snprintf(path, sizeof(path), "%s/credentials", dir);
	assert_int_equal(ids_secret_read(path, IDS_SECRET_MAX, false, &s, &n, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, "is not a regular file"));
	/* readable by the group, unless the operator allowed it */
	snprintf(path, sizeof(path), "%s/wide", dir);
	assert_int_equal(ids_secret_read(path, IDS_SECRET_MAX, false, &s, &n, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, "is readable by group or others"));
	assert_null(strstr(e.msg, MARK));
	assert_null(s);
	assert_int_equal(ids_secret_read(path, IDS_SECRET_MAX, true, &s, &n, &e), 0);
	ids_secret_free(s);
	ids_error_clear(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(resolve_rule),
	    cmocka_unit_test(config_reads_credentials_directory),
	    cmocka_unit_test(read_refusals),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
