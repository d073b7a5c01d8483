/* error.c — error codes and the error-with-message carrier (error.h). */
#include "ids/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/util.h"

const char *ids_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case IDS_E_CONFIG: return "configuration error";
	case IDS_E_CONNECT: return "cannot connect";
	case IDS_E_TLS: return "TLS certificate verification failed";
	case IDS_E_AUTH: return "authentication failed";
	case IDS_E_SERVER: return "server error";
	case IDS_E_LIMIT: return "server limit exceeded";
	case IDS_E_TIMEOUT: return "timeout";
	case IDS_E_DB: return "database error";
	case IDS_E_DB_LOST: return "database connection lost";
	case IDS_E_SCHEMA: return "database schema mismatch";
	case IDS_E_LOCKED: return "locked by another instance";
	case IDS_E_INVALID: return "invalid data";
	case IDS_E_UNSUPPORTED: return "not supported";
	case IDS_E_CANCELLED: return "cancelled";
	case IDS_E_PROTOCOL: return "protocol error";
	default: break;
	}
	/* strerror() is not thread-safe in general but is for known errnos in
	 * glibc; we are single-threaded anyway. */
	return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
}

int ids_error_set(struct ids_error *e, int code, const char *fmt, ...)
{
	if (!e)
		return code;
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	/* vasprintf keeps this free of fixed buffers; on ENOMEM we keep the code */
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(e->msg);
	e->msg = m;
	e->code = code;
	return code;
}

int ids_error_prefix(struct ids_error *e, const char *fmt, ...)
{
	if (!e)
		return 0;
	char *pre = NULL, *m = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&pre, fmt, ap) < 0)
		pre = NULL;
	va_end(ap);
	if (pre && asprintf(&m, "%s: %s", pre, ids_error_text(e)) >= 0) {
		free(e->msg);
		e->msg = m;
	}
	free(pre);
	return e->code;
}

const char *ids_error_text(const struct ids_error *e)
{
	if (!e)
		return "unknown error";
	return e->msg ? e->msg : ids_strerror(e->code);
}

void ids_error_clear(struct ids_error *e)
{
	if (!e)
		return;
	free(e->msg);
	e->msg = NULL;
	e->code = 0;
}
