/* secret.h — opening a secret file, the one way every module does it: the
 * config loader for passwords and client secrets, the cloud connectors
 * for their keys (the OpenBSD habit of one check_file_secrecy wherever a
 * secret is opened).  Two copies of this drifted once: the same vanished
 * key file was a configuration error for one connector and a failed run
 * for the other.
 *
 * Every failure here is IDS_E_CONFIG (exit 78): a secret file that is
 * missing, unreadable, readable by others or absurdly large is something
 * the operator fixes in the configuration, and retrying the run cannot
 * help.  Messages name the file, never a byte of its content.  libc only. */
#ifndef IDS_SECRET_H
#define IDS_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "ids/error.h"

/* The systemd credential ID the unit loads the credentials directory
 * under: LoadCredential=idsyncd:/etc/idsyncd/credentials makes
 * /etc/idsyncd/credentials/NAME appear as $CREDENTIALS_DIRECTORY/idsyncd_NAME
 * (systemd 252: a directory's files become "ID_FILENAME"). */
#define IDS_CREDENTIAL_ID "idsyncd"

/* Largest secret file read: passwords, client secrets, a PEM key and a
 * service account JSON are all a few KiB at most. */
#define IDS_SECRET_MAX 65536

/* Where the secret file `name` of the configuration is read: an absolute
 * name as it is; a relative one, when $CREDENTIALS_DIRECTORY is set (the
 * daemon under systemd), as $CREDENTIALS_DIRECTORY/idsyncd_BASENAME (the
 * credential systemd made of credentials/BASENAME); otherwise against
 * base_dir (the configuration file's directory; NULL: the current one).
 * *ret new.  -ENOMEM only. */
int ids_secret_resolve(const char *name, const char *base_dir, char **ret);

/* Reads the secret file at path whole, after checking what was opened
 * (fstat of the descriptor, not stat of the name): a regular file, no
 * access for group or others unless allow_readable, at most max bytes.
 * *ret is new and NUL-terminated (a secret: ids_secret_free it), *ret_len
 * its length; both written only on success.  Errors: IDS_E_CONFIG (any
 * problem with the file, err says which and names path), -ENOMEM. */
int ids_secret_read(const char *path, size_t max, bool allow_readable, char **ret, size_t *ret_len,
		    struct ids_error *err);

#endif
