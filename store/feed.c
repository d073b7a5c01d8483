/* feed.c — connector_feed (migration 007): where each connector's change
 * feed stands.  Read by `status` and by a run before its pull; written by
 * ids_store_apply, inside the transaction of the changes the cursor
 * produced (store_int.h: ids_store_feed_commit). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* Cursors are opaque bytes (a syncrepl cookie is text, a DirSync cookie
 * binary): they travel as bytea in hex, which needs no escaping rules and
 * no binary-format result.  A cookie far past this is not one. */
#define CURSOR_MAX (64 * 1024)

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* encode(cursor, 'hex') -> bytes; -EINVAL on anything else. */
static int from_hex(const char *s, unsigned char **ret, size_t *ret_len)
{
	size_t n = strlen(s);
	if (n % 2 || n / 2 > CURSOR_MAX)
		return -EINVAL;
	unsigned char *b = malloc(n / 2 ? n / 2 : 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return -EINVAL;
		}
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	*ret = b;
	*ret_len = n / 2;
	return 0;
}

/* bytes -> "\x..." (bytea's hex input); new, NULL on ENOMEM. */
static char *to_hex(const unsigned char *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(2 * n + 3);
	if (!s)
		return NULL;
	s[0] = '\\';
	s[1] = 'x';
	for (size_t i = 0; i < n; i++) {
		s[2 + 2 * i] = digits[b[i] >> 4];
		s[3 + 2 * i] = digits[b[i] & 15];
	}
	s[2 + 2 * n] = '\0';
	return s;
}

void ids_feed_state_clear(struct ids_feed_state *f)
{
	free(f->cursor);
	free(f->cursor_server);
	free(f->cursor_invocation_id);
	free(f->last_reset_reason);
	free(f->fingerprint);
	free(f->plan_fingerprint);
	memset(f, 0, sizeof(*f));
}

/* A nullable text column as a new string (NULL stays NULL); false on ENOMEM. */
static bool dup_text(const PGresult *res, int c, char **dst)
{
	if (PQgetisnull(res, 0, c))
		return true;
	return (*dst = strdup(PQgetvalue(res, 0, c))) != NULL;
}

/* A nullable bigint column (0 for NULL); false when it is not one. */
static bool read_i64(const PGresult *res, int c, int64_t *dst)
{
	return PQgetisnull(res, 0, c) || ids_store_parse_i64(PQgetvalue(res, 0, c), dst) >= 0;
}

int ids_store_feed_get(struct ids_store *st, const char *connector, struct ids_feed_state *ret,
		       struct ids_error *err)
{
	struct ids_feed_state f = {0};
	PGresult *res = NULL;
	const char *p[1] = {connector};
	int64_t resets = 0, seen = 0;
	if (st->absent) { /* ids_store_assume_empty (a plan before the first migration): no state yet */
		*ret = f;
		return 0;
	}
	int r =
	    ids_store_exec(st,
			   "SELECT encode(cursor, 'hex'), cursor_server, cursor_invocation_id,"
			   " (extract(epoch FROM cursor_at) * 1000000)::bigint,"
			   " (extract(epoch FROM last_full_at) * 1000000)::bigint,"
			   " (extract(epoch FROM last_reset_at) * 1000000)::bigint,"
			   " resets, last_reset_reason, fingerprint, image_records, plan_fingerprint,"
			   " (SELECT r.users_seen FROM sync_run r WHERE r.connector = $1 AND r.status = 'ok'"
			   "  AND r.read_kind IN ('full', 'incremental') ORDER BY r.id DESC LIMIT 1)"
			   " FROM connector_feed WHERE connector = $1",
			   1, p, PGRES_TUPLES_OK, &res, "reading the change feed's state", err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0)
		goto done; /* no run has committed a feed state yet */
	if (!PQgetisnull(res, 0, 0) && (r = from_hex(PQgetvalue(res, 0, 0), &f.cursor, &f.cursor_len)) < 0) {
		r = r == -ENOMEM
			? r
			: ids_error_set(err, IDS_E_DB, "connector_feed: bad cursor of %s", connector);
		goto out;
	}
	if (!dup_text(res, 1, &f.cursor_server) || !dup_text(res, 2, &f.cursor_invocation_id) ||
	    !dup_text(res, 7, &f.last_reset_reason) || !dup_text(res, 8, &f.fingerprint) ||
	    !dup_text(res, 10, &f.plan_fingerprint)) {
		r = -ENOMEM;
		goto out;
	}
	if (!read_i64(res, 3, &f.cursor_at) || !read_i64(res, 4, &f.last_full_at) ||
	    !read_i64(res, 5, &f.last_reset_at) || !read_i64(res, 6, &resets) ||
	    !read_i64(res, 9, &f.image_records) || !read_i64(res, 11, &seen)) {
		r = ids_error_set(err, IDS_E_DB, "connector_feed: unexpected value for %s", connector);
		goto out;
	}
	f.resets = (long)resets;
	f.last_users_seen = (long)seen;
	if (PQgetisnull(res, 0, 9))
		f.image_records = -1;
done:
	*ret = f;
	memset(&f, 0, sizeof(f));
	r = 0;
out:
	ids_feed_state_clear(&f);
	PQclear(res);
	return r;
}

int ids_store_feed_commit(struct ids_store *st, const char *connector, int64_t started_at,
			  const struct ids_feed_commit *fc, struct ids_error *err)
{
	char started[24];
	char *hex = NULL;
	if (fc->cursor_len > CURSOR_MAX)
		return ids_error_set(err, -EINVAL, "change feed of %s: a cursor of %zu bytes (at most %d)",
				     connector, fc->cursor_len, CURSOR_MAX);
	if (fc->cursor && !(hex = to_hex(fc->cursor, fc->cursor_len)))
		return ids_error_set(err, -ENOMEM, "change feed of %s: out of memory", connector);
	snprintf(started, sizeof(started), "%" PRId64, started_at);
	char records[24];
	snprintf(records, sizeof(records), "%zu", fc->image_records);
	const char *p[9] = {connector,
			    hex,
			    fc->cursor ? fc->cursor_server : NULL,
			    fc->cursor ? fc->cursor_invocation_id : NULL,
			    fc->full ? started : NULL,
			    fc->reset_reason,
			    fc->cursor ? fc->fingerprint : NULL,
			    fc->cursor && fc->image ? records : NULL,
			    fc->cursor ? fc->plan_fingerprint : NULL};
	/* one statement, so that a first run creates the row and every later
	 * one updates it; the times are the server's (cursor_at) or the run's
	 * start (last_full_at: what the full read saw is as of its start) */
	int r = ids_store_exec(
	    st,
	    "INSERT INTO connector_feed AS f (connector, cursor, cursor_server, cursor_invocation_id,"
	    " cursor_at, last_full_at, resets, last_reset_reason, last_reset_at, fingerprint, image_records,"
	    " plan_fingerprint)"
	    " VALUES ($1, $2::bytea, $3, $4, CASE WHEN $2 IS NOT NULL THEN now() END,"
	    " timestamptz 'epoch' + $5::bigint * interval '1 microsecond',"
	    " CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END, $6, CASE WHEN $6 IS NOT NULL THEN now() END, $7, "
	    "$8::bigint, $9)"
	    " ON CONFLICT (connector) DO UPDATE SET cursor = EXCLUDED.cursor,"
	    " cursor_server = EXCLUDED.cursor_server, cursor_invocation_id = EXCLUDED.cursor_invocation_id,"
	    " cursor_at = EXCLUDED.cursor_at, last_full_at = COALESCE(EXCLUDED.last_full_at, f.last_full_at),"
	    " resets = f.resets + EXCLUDED.resets,"
	    " last_reset_reason = COALESCE(EXCLUDED.last_reset_reason, f.last_reset_reason),"
	    " last_reset_at = COALESCE(EXCLUDED.last_reset_at, f.last_reset_at),"
	    " fingerprint = EXCLUDED.fingerprint, image_records = EXCLUDED.image_records,"
	    " plan_fingerprint = EXCLUDED.plan_fingerprint",
	    9, p, PGRES_COMMAND_OK, NULL, "writing the change feed's cursor", err);
	free(hex);
	/* the image the cursor belongs to, in the same transaction */
	if (r >= 0 && (r = ids_store_image_write(st, connector, fc, err)) >= 0)
		r++; /* and connector_feed's row */
	return r;
}

int ids_store_feed_drop(struct ids_store *st, const char *connector, struct ids_error *err)
{
	const char *p[1] = {connector};
	/* one statement: the image never outlives its cursor row, or the
	 * reverse */
	return ids_store_exec(st,
			      "WITH i AS (DELETE FROM connector_image WHERE connector = $1)"
			      " DELETE FROM connector_feed WHERE connector = $1",
			      1, p, PGRES_COMMAND_OK, NULL, "dropping the change feed's state", err);
}
