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

/* The fields of one event besides MESSAGE= and PRIORITY=, each left out
 * when NULL / 0.  All borrowed for the call. */
struct ids_log_fields {
	const char *connector;	/* CONNECTOR=, and the "name: " before the message */
	long long run_id;	/* RUN_ID=: the sync_run id (journalctl RUN_ID=42) */
	const char *user;	/* IDSYNC_USER=: a username (or external id), never a secret */
	const char *message_id; /* MESSAGE_ID=: one of IDS_MSGID_* below */
};
void ids_log_event(enum ids_log_level level, const struct ids_log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* MESSAGE_ID= of a run's outcome line, one per outcome, so that
 * `journalctl MESSAGE_ID=...` finds every failed run, and `journalctl -x`
 * shows what it means and what to do: each has its entry in
 * systemd/idsyncd.catalog (installed into the journal's catalog directory).
 * Fixed forever: monitoring rules match them. */
#define IDS_MSGID_RUN_OK "adda55e723c4430c8e2441abe075acb6"
#define IDS_MSGID_RUN_FAILED "2627aec6486a4dae8d4c7a97825566cf"
#define IDS_MSGID_RUN_ABORTED "708076bfeba943c3b9c077dc6b66d578"
#define IDS_MSGID_RUN_SKIPPED "71c7c4c496d94b9e8ddc28b8c3cf700e"

#define ids_log_debug(conn, ...) ids_log(IDS_LOG_DEBUG, conn, 0, NULL, __VA_ARGS__)
#define ids_log_info(conn, ...) ids_log(IDS_LOG_INFO, conn, 0, NULL, __VA_ARGS__)
#define ids_log_warn(conn, ...) ids_log(IDS_LOG_WARNING, conn, 0, NULL, __VA_ARGS__)
#define ids_log_error(conn, ...) ids_log(IDS_LOG_ERROR, conn, 0, NULL, __VA_ARGS__)

#endif
