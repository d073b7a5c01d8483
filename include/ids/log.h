/* log.h — the daemon's logging: stderr lines
 * (`2026-11-27T12:00:01Z info corp-ad: ...`) or, under systemd, structured
 * journal entries.  Secrets must never be passed here. */
#ifndef IDS_LOG_H
#define IDS_LOG_H

#include "ids/config.h"

void ids_log_setup(enum ids_log_level level, enum ids_log_target target);
/* Whether stderr is the journal stream systemd connected (JOURNAL_STREAM
 * names it): no terminal progress line goes there. */
bool ids_log_stderr_is_journal(void);
/* connector and user may be NULL. run_id 0 = none. */
void ids_log(enum ids_log_level level, const char *connector, long long run_id, const char *user,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define ids_log_debug(conn, ...) ids_log(IDS_LOG_DEBUG, conn, 0, NULL, __VA_ARGS__)
#define ids_log_info(conn, ...) ids_log(IDS_LOG_INFO, conn, 0, NULL, __VA_ARGS__)
#define ids_log_warn(conn, ...) ids_log(IDS_LOG_WARNING, conn, 0, NULL, __VA_ARGS__)
#define ids_log_error(conn, ...) ids_log(IDS_LOG_ERROR, conn, 0, NULL, __VA_ARGS__)

#endif
