/* error.h — the project's error codes and the error-with-message carrier.
 *
 * Functions that can fail return int: >= 0 on success, a negative errno
 * (-ENOMEM, -EINVAL, ...) or a negative IDS_E_* code.  Library codes (LDAP,
 * CURLcode, SQLSTATE) are translated to these at the seam, once per library.
 *
 * Where the caller needs more than a code (the server's own message, the
 * config file position), the function takes a struct ids_error * and fills
 * it with ids_error_set(); the caller logs it.  A function either logs or
 * returns an error, never both. */
#ifndef IDS_ERROR_H
#define IDS_ERROR_H

#include <stddef.h>

enum {
	IDS_E_CONFIG = -10001,	    /* invalid configuration (exit 78) */
	IDS_E_CONNECT = -10002,	    /* could not reach a server */
	IDS_E_TLS = -10003,	    /* TLS handshake / certificate verification failed */
	IDS_E_AUTH = -10004,	    /* bind / token refused: do not retry fast */
	IDS_E_SERVER = -10005,	    /* the server answered with an error */
	IDS_E_LIMIT = -10006,	    /* size/time/admin limit hit: snapshot incomplete */
	IDS_E_TIMEOUT = -10007,	    /* a connect or read timed out */
	IDS_E_DB = -10008,	    /* database error (SQL) */
	IDS_E_DB_LOST = -10009,	    /* database connection lost (SQLSTATE class 08) */
	IDS_E_SCHEMA = -10010,	    /* schema too old (migrate: manual) or newer than us */
	IDS_E_LOCKED = -10011,	    /* another instance holds the connector's lock */
	IDS_E_INVALID = -10012,	    /* invalid data */
	IDS_E_UNSUPPORTED = -10013, /* not supported by this build / server */
	IDS_E_CANCELLED = -10014,   /* stopped by a signal or run_timeout */
	IDS_E_PROTOCOL = -10015,    /* malformed answer (bad JSON, paging loop, ...) */
};

/* A static English description of err (negative errno or IDS_E_*). */
const char *ids_strerror(int err);

/* An error code with an optional heap message.  Zero-initialise it
 * (struct ids_error e = {0};), pass it down, ids_error_clear() it after. */
struct ids_error {
	int code;
	char *msg; /* new: owned by the struct; NULL when no message */
};

/* Record code and a printf-formatted message in e (replacing any previous
 * one).  Returns code, so that callers can write
 * `return ids_error_set(e, IDS_E_SERVER, "search: %s", m);`.  e may be NULL. */
int ids_error_set(struct ids_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix the current message with a printf-formatted context and ": ".
 * Returns e->code.  Keeps the code. */
int ids_error_prefix(struct ids_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message, or ids_strerror(code) when there is none.  Borrowed. */
const char *ids_error_text(const struct ids_error *e);

/* Frees the message and zeroes e. */
void ids_error_clear(struct ids_error *e);

#endif
