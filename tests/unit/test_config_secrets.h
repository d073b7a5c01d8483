/* test_config_secrets.h — a throwaway directory of secret files for the
 * config tests, named by $IDS_TEST_SECRETS (the test YAML says
 * ${IDS_TEST_SECRETS}/pw).  Git keeps no file modes but +x, so the modes
 * the tests depend on are set here, explicitly, whatever the umask. */
#ifndef TEST_CONFIG_SECRETS_H
#define TEST_CONFIG_SECRETS_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every secret contains this marker: no error message may ever show it. */
#define SECRET_MARK "hunter2"
#define LARGE_SIZE 70000 /* above the loader's 64 KiB limit */

static char secrets_dir[64];

struct secret_file {
	const char *name;
	const char *content;
	size_t len; /* 0: strlen(content) */
	mode_t mode;
};

static const struct secret_file secret_files[] = {
    {"pw", SECRET_MARK "-pw\n", 0, 0600},
    {"pw_crlf", SECRET_MARK "-crlf\r\n", 0, 0600},
    {"pw_two", SECRET_MARK "-two\n\n", 0, 0600},
    {"pw_bare", SECRET_MARK "-bare", 0, 0600},
    {"pw_644", SECRET_MARK "-644\n", 0, 0644},
    {"pw_620", SECRET_MARK "-620\n", 0, 0620},
    {"pw_empty", "\n", 0, 0600},
    {"pw_nul", SECRET_MARK "\0nul\n", 12, 0600},
    {"pw_large", NULL, LARGE_SIZE, 0600},
    {"cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 0, 0644},
    {"key.pem", "-----BEGIN PRIVATE KEY-----\n" SECRET_MARK "-key\n-----END PRIVATE KEY-----\n", 0, 0600},
    {"key_644.pem", "-----BEGIN PRIVATE KEY-----\n" SECRET_MARK "-key\n-----END PRIVATE KEY-----\n", 0, 0644},
};
#define NSECRET_FILES (sizeof(secret_files) / sizeof(secret_files[0]))

static int write_file(const char *path, const char *content, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int ok = write(fd, content, len) == (ssize_t)len && fchmod(fd, mode) == 0;
	return close(fd) == 0 && ok ? 0 : -1;
}

static int secrets_setup(void **state)
{
	char path[256];
	(void)state;
	snprintf(secrets_dir, sizeof(secrets_dir), "/tmp/ids-config-test-XXXXXX");
	if (!mkdtemp(secrets_dir))
		return -1;
	for (size_t i = 0; i < NSECRET_FILES; i++) {
		const struct secret_file *f = &secret_files[i];
		char *large = NULL;
		const char *content = f->content;
		size_t len = f->len ? f->len : strlen(f->content);
		if (!content) {
			/* the marker up front, then filler */
			if (!(large = malloc(len)))
				return -1;
			memset(large, 'x', len);
			memcpy(large, SECRET_MARK, strlen(SECRET_MARK));
			content = large;
		}
		snprintf(path, sizeof(path), "%s/%s", secrets_dir, f->name);
		int r = write_file(path, content, len, f->mode);
		free(large);
		if (r < 0)
			return -1;
	}
	snprintf(path, sizeof(path), "%s/dir", secrets_dir);
	if (mkdir(path, 0700) < 0)
		return -1;
	setenv("IDS_TEST_SECRETS", secrets_dir, 1);
	unsetenv("IDS_TEST_SURELY_UNSET");
	return 0;
}

static int secrets_teardown(void **state)
{
	char path[256];
	(void)state;
	for (size_t i = 0; i < NSECRET_FILES; i++) {
		snprintf(path, sizeof(path), "%s/%s", secrets_dir, secret_files[i].name);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/dir", secrets_dir);
	rmdir(path);
	rmdir(secrets_dir);
	return 0;
}

#endif
