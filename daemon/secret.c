/* secret.c — secret files (secret.h).
 *
 * Built into the config library, not the daemon: the config loader and
 * the cloud connectors both open secrets through it, and the connectors
 * must not depend on the daemon. */
#include "ids/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ids/util.h"

int ids_secret_resolve(const char *name, const char *base_dir, char **ret)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	char *p = NULL;
	int n;
	if (name[0] == '/')
		p = strdup(name);
	else if (creds && *creds) {
		/* systemd flattens a loaded directory into ID_FILENAME, so only
		 * the last component of "credentials/db-password" names the
		 * credential; the same config then reads the same file from a
		 * shell (relative to the config) and under systemd */
		const char *slash = strrchr(name, '/');
		n = asprintf(&p, "%s/" IDS_CREDENTIAL_ID "_%s", creds, slash ? slash + 1 : name);
		if (n < 0)
			p = NULL;
	} else if (!base_dir)
		p = strdup(name);
	else if ((n = asprintf(&p, "%s/%s", base_dir, name)) < 0)
		p = NULL;
	if (!p)
		return -ENOMEM;
	*ret = p;
	return 0;
}

/* Reads fd to its end into buf[0..cap): the byte count, or -1 (errno)
 * on a read error.  Stops at cap, so a file that grew since fstat cannot
 * overrun the buffer, and the caller sees that it did. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n < cap) {
		ssize_t k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		if (k == 0)
			break;
		n += (size_t)k;
	}
	return (ssize_t)n;
}

int ids_secret_read(const char *path, size_t max, bool allow_readable, char **ret, size_t *ret_len,
		    struct ids_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t cap = 0;
	int r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return ids_error_set(err, IDS_E_CONFIG, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = ids_error_set(err, IDS_E_CONFIG, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = ids_error_set(err, IDS_E_CONFIG, "%s is not a regular file", path);
		goto out;
	}
	/* 077 covers writing too: a secret others can replace is as bad as
	 * one they can read */
	if ((st.st_mode & 077) && !allow_readable) {
		r = ids_error_set(err, IDS_E_CONFIG,
				  "secret file %s is readable by group or others (chmod 600, or set "
				  "security.allow_readable_secrets: true)",
				  path);
		goto out;
	}
	if ((size_t)st.st_size > max) {
		r = ids_error_set(err, IDS_E_CONFIG, "secret file %s is larger than %zu bytes", path, max);
		goto out;
	}
	/* one byte more than allowed: a file that grew past max meanwhile is
	 * seen rather than cut short */
	cap = max + 1;
	if (!(buf = malloc(cap + 1))) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	ssize_t n = read_all(fd, buf, cap);
	if (n < 0) {
		r = ids_error_set(err, IDS_E_CONFIG, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if ((size_t)n > max) {
		r = ids_error_set(err, IDS_E_CONFIG, "secret file %s is larger than %zu bytes", path, max);
		goto out;
	}
	buf[n] = '\0';
	/* an exact-size copy, so that the big read buffer is wiped below */
	char *copy = malloc((size_t)n + 1);
	if (!copy) {
		r = ids_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(copy, buf, (size_t)n + 1);
	*ret = copy;
	*ret_len = (size_t)n;
	r = 0;
out:
	if (buf) {
		explicit_bzero(buf, cap + 1);
		free(buf);
	}
	close(fd);
	return r;
}
