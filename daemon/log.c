/* log.c — one line per event on stderr, or structured journal entries
 * under systemd (service.md, "Logging"). */
#include "ids/log.h"
#include "ids/progress.h"
#include "ids/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

static enum ids_log_level min_level = IDS_LOG_INFO;
static bool use_journal;

static const char *const level_word[] = {"debug", "info", "warning", "error"};
/* syslog priorities for the journal's PRIORITY= */
static const int level_prio[] = {7, 6, 4, 3};

/* systemd puts DEV:INODE of the journal stream it connected to stderr in
 * JOURNAL_STREAM.  A process whose stderr was redirected (`idsyncd sync
 * 2>file` from a service's shell) inherits the variable but not the
 * stream: only a match means that stderr is the journal (systemd.exec(5)). */
bool ids_log_stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	struct stat st;
	char *end = NULL;
	if (!v || !*v || fstat(STDERR_FILENO, &st) < 0)
		return false;
	errno = 0;
	unsigned long long dev = strtoull(v, &end, 10);
	if (errno || *end != ':')
		return false;
	unsigned long long ino = strtoull(end + 1, &end, 10);
	if (errno || *end)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void ids_log_setup(enum ids_log_level level, enum ids_log_target target)
{
	min_level = level;
	/* auto: structured entries when systemd connected our stderr to the
	 * journal; journal: always (entries are lost when no journald runs,
	 * as with any syslog target) */
	if (target == IDS_LOGT_AUTO)
		use_journal = ids_log_stderr_is_journal();
	else
		use_journal = target == IDS_LOGT_JOURNAL;
}

/* One event, one stderr line, and nothing a terminal interprets: a
 * server's multi-line message (libpq ends its lines with "\n\t") is joined
 * with single spaces, and every other control byte — an escape sequence in
 * a directory value, say (CWE-150) — is written as \xNN. */
static char *one_line(const char *m)
{
	struct ids_buf b = {0};
	int r = ids_buf_puts(&b, "");
	for (const unsigned char *p = (const unsigned char *)m; r >= 0 && *p;) {
		if (*p == '\n' || *p == '\r') {
			while (*p == '\n' || *p == '\r' || *p == '\t' || *p == ' ')
				p++;
			if (*p && b.len)
				r = ids_buf_putc(&b, ' ');
		} else if (*p < 0x20 || *p == 0x7f) {
			r = ids_buf_printf(&b, "\\x%02x", *p++);
		} else {
			r = ids_buf_putc(&b, (char)*p++);
		}
	}
	if (r < 0) {
		ids_buf_free(&b);
		return NULL;
	}
	return ids_buf_steal(&b);
}

/* One journal entry: only the fields this event has. */
static void send_journal(enum ids_log_level level, const struct ids_log_fields *f, const char *msg)
{
	char *v[6] = {0};
	struct iovec iov[7];
	int n = 0;
	const char *conn = f->connector;
	if (asprintf(&v[0], "MESSAGE=%s%s%s", conn ? conn : "", conn ? ": " : "", msg) < 0)
		v[0] = NULL;
	if (asprintf(&v[1], "PRIORITY=%d", level_prio[level]) < 0)
		v[1] = NULL;
	if (conn && asprintf(&v[2], "CONNECTOR=%s", conn) < 0)
		v[2] = NULL;
	if (f->run_id && asprintf(&v[3], "RUN_ID=%lld", f->run_id) < 0)
		v[3] = NULL;
	if (f->user && asprintf(&v[4], "IDSYNC_USER=%s", f->user) < 0)
		v[4] = NULL;
	if (f->message_id && asprintf(&v[5], "MESSAGE_ID=%s", f->message_id) < 0)
		v[5] = NULL;
	for (int i = 0; i < 6; i++)
		if (v[i])
			iov[n++] = (struct iovec){v[i], strlen(v[i])};
	iov[n++] = (struct iovec){(char *)"SYSLOG_IDENTIFIER=idsyncd", 25};
	sd_journal_sendv(iov, n);
	for (int i = 0; i < 6; i++)
		free(v[i]);
}

/* One stderr line of service.md's format: the fields other than the
 * connector are for the journal's matches; the message names what a
 * reader of the line needs (run id, user). */
static void write_line(enum ids_log_level level, const char *conn, const char *msg)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	char *line = one_line(msg);
	ids_progress_erase(); /* a progress line on the terminal: this one takes its place */
	fprintf(stderr, "%s %s %s%s%s\n", ts, level_word[level], conn ? conn : "", conn ? ": " : "",
		line ? line : "(out of memory)");
	free(line);
}

static void vlog(enum ids_log_level level, const struct ids_log_fields *f, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void vlog(enum ids_log_level level, const struct ids_log_fields *f, const char *fmt, va_list ap)
{
	if (level < min_level)
		return;
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		return;
	/* bytes that are not UTF-8 (a server's message, a path) as \xNN:
	 * journalctl shows an entry holding such bytes only as "[blob data]" */
	if (!ids_utf8_valid(msg, strlen(msg))) {
		char *safe = ids_utf8_escape(msg);
		free(msg);
		if (!(msg = safe))
			return;
	}
	if (use_journal)
		send_journal(level, f, msg);
	else
		write_line(level, f->connector, msg);
	free(msg);
}

void ids_log_event(enum ids_log_level level, const struct ids_log_fields *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, f, fmt, ap);
	va_end(ap);
}

void ids_log(enum ids_log_level level, const char *connector, long long run_id, const char *user,
	     const char *fmt, ...)
{
	const struct ids_log_fields f = {.connector = connector, .run_id = run_id, .user = user};
	va_list ap;
	va_start(ap, fmt);
	vlog(level, &f, fmt, ap);
	va_end(ap);
}
