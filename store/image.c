/* image.c — connector_image (migration 9): the records a connector's
 * change feed is applied to, stored next to its cursor so that a restart
 * or a one-shot `idsyncd sync` continues the feed (docs/changes.md).
 *
 * Both ways go through binary COPY: no escaping, no per-row statement.
 * COPY takes no parameters, so the connector's name reaches the reading
 * COPY's query through a transaction-local setting given as a parameter
 * (set_config), and is a field of every row the writing COPY sends.
 * Records are opaque bytes here (their format is core/image.c's). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ids/image.h"
#include "ids/util.h"
#include "store_int.h"

#define IMAGE_CHUNK (1 << 20) /* COPY data sent per message */

/* ---------------- reading ---------------- */

struct reader {
	struct ids_image *img;
	const char *connector;
};

/* One stored record (key, kind, record) into the image. */
static int on_record(void *ud, const struct ids_copy_field *f, struct ids_error *err)
{
	struct reader *rd = ud;
	char kind[2];
	if (f[0].len <= 0 || f[1].len != 2 || f[2].len < 0)
		return ids_error_set(err, IDS_E_DB, "connector_image of %s: a row with NULL columns",
				     rd->connector);
	char *key = strndup(f[0].p, (size_t)f[0].len);
	if (!key)
		return -ENOMEM;
	memcpy(kind, f[1].p, 2);
	int k = (unsigned char)kind[0] << 8 | (unsigned char)kind[1];
	int r = ids_image_load(rd->img, key, k, f[2].p, (size_t)f[2].len);
	if (r == -EINVAL || r == -EEXIST)
		r = ids_error_set(err, IDS_E_DB, "connector_image of %s: the record of key %s is damaged",
				  rd->connector, key);
	free(key);
	return r;
}

/* Inside load's transaction: the state, then the image if it fits. */
static int load_tx(struct ids_store *st, const char *connector, const char *fingerprint,
		   struct ids_feed_state *ret, struct ids_image *img, bool *ret_loaded, struct ids_error *err)
{
	const char *p[1] = {connector};
	int r = ids_store_feed_get(st, connector, ret, err);
	if (r < 0 || !ret->cursor || !fingerprint || !ret->fingerprint ||
	    strcmp(ret->fingerprint, fingerprint))
		return r;
	r = ids_store_exec(st, "SELECT set_config('idsyncd.image_connector', $1, true)", 1, p,
			   PGRES_TUPLES_OK, NULL, "reading the change feed's image", err);
	struct reader rd = {.img = img, .connector = connector};
	if (r >= 0)
		r = ids_store_copy_out(st,
				       "COPY (SELECT key, kind, record FROM connector_image"
				       " WHERE connector = current_setting('idsyncd.image_connector'))"
				       " TO STDOUT (FORMAT binary)",
				       3, on_record, &rd, "reading the change feed's image", err);
	/* rows lost or added behind our back: not the cursor's image */
	if (r >= 0)
		*ret_loaded = ret->image_records == (int64_t)(ids_image_nusers(img) + ids_image_ngroups(img));
	return r;
}

int ids_store_feed_load(struct ids_store *st, const char *connector, const char *fingerprint,
			struct ids_feed_state *ret, struct ids_image *img, bool *ret_loaded,
			struct ids_error *err)
{
	*ret = (struct ids_feed_state){0};
	*ret_loaded = false;
	if (st->absent) /* ids_store_assume_empty: nothing stored */
		return 0;
	/* the cursor and the image as of one moment: a run of another
	 * instance may commit both meanwhile */
	int r = ids_store_exec(st, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
			       PGRES_COMMAND_OK, NULL, "reading the change feed's image", err);
	if (r < 0)
		return r;
	r = load_tx(st, connector, fingerprint, ret, img, ret_loaded, err);
	if (r >= 0)
		r = ids_store_exec(st, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, "COMMIT", err);
	else
		PQclear(PQexec(st->conn, "ROLLBACK"));
	if (r < 0) {
		ids_feed_state_clear(ret);
		*ret_loaded = false;
	}
	return r;
}

/* ---------------- writing ---------------- */

/* The image's rows go straight into connector_image by one binary COPY:
 * a changed key's old row is deleted first (its key staged in a
 * temporary table, keys only), so no row is written twice.  (Staging
 * whole records and merging them with INSERT ... ON CONFLICT wrote every
 * record twice: 12.2 s of a million-user first read, 3.7 s of a 1 %
 * churn round at tier L, docs/changes.md.)  The connector's name is a
 * field of each COPY row: data, never SQL. */

struct writer {
	struct ids_store *st;
	const char *connector;
	struct ids_buf b;
	struct ids_error *err;
	long rows;
};

static int put_be16(struct ids_buf *b, uint16_t v)
{
	unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
	return ids_buf_add(b, x, 2);
}

/* A binary COPY field: its length, then its bytes. */
static int put_field(struct ids_buf *b, const void *p, size_t n)
{
	uint32_t len = (uint32_t)n;
	unsigned char x[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
			      (unsigned char)(len >> 8), (unsigned char)len};
	int r = ids_buf_add(b, x, 4);
	return r < 0 || !n ? r : ids_buf_add(b, p, n);
}

static int flush(struct writer *w, bool force)
{
	if (!w->b.len || (!force && w->b.len < IMAGE_CHUNK))
		return 0;
	if (w->b.len > INT_MAX || PQputCopyData(w->st->conn, w->b.p, (int)w->b.len) != 1)
		return ids_store_fail(w->st, NULL, "writing the change feed's image", w->err);
	ids_buf_reset(&w->b);
	return 0;
}

/* ids_image_each's fn for the record pass: the COPY row (connector, key,
 * kind, record); kind 0, a key gone, has none. */
static int on_each(const char *key, int kind, const void *rec, size_t len, void *ud)
{
	struct writer *w = ud;
	unsigned char k[2] = {0, (unsigned char)kind};
	if (len > INT32_MAX)
		return ids_error_set(w->err, -E2BIG, "change feed image: a record of %zu bytes", len);
	if (kind == 0)
		return 0;
	int r = put_be16(&w->b, 4);
	if (r >= 0)
		r = put_field(&w->b, w->connector, strlen(w->connector));
	if (r >= 0)
		r = put_field(&w->b, key, strlen(key));
	if (r >= 0 && (r = put_field(&w->b, k, 2)) >= 0)
		r = put_field(&w->b, rec, len);
	w->rows++;
	return r < 0 ? r : flush(w, false);
}

/* ids_image_each_change's fn for the key pass: the COPY row (key) of a
 * changed key (its records not encoded: only the key is sent). */
static int on_change(const struct ids_image_change *c, void *ud)
{
	struct writer *w = ud;
	int r = put_be16(&w->b, 1);
	if (r >= 0)
		r = put_field(&w->b, c->key, strlen(c->key));
	w->rows += c->was_kind && !c->now_kind; /* removed */
	return r < 0 ? r : flush(w, false);
}

/* The rows of the key pass: every changed key. */
static int changed_keys(struct writer *w, const struct ids_feed_commit *fc)
{
	return ids_image_each_change(fc->image, on_change, w);
}

/* The rows of the record pass: every record, or only the changed ones. */
static int records(struct writer *w, const struct ids_feed_commit *fc)
{
	return ids_image_each(fc->image, !fc->image_whole, on_each, w);
}

/* One binary COPY (the query `copy`) of the rows `rows` puts. */
static int copy_rows(struct writer *w, const char *copy,
		     int (*rows)(struct writer *, const struct ids_feed_commit *),
		     const struct ids_feed_commit *fc)
{
	static const char sig[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0"; /* flags 0, no extension */
	int r = 0;
	PGresult *res = PQexec(w->st->conn, copy);
	if (!res || PQresultStatus(res) != PGRES_COPY_IN)
		r = ids_store_fail(w->st, res, "writing the change feed's image", w->err);
	PQclear(res);
	if (r < 0)
		return r;
	r = ids_buf_add(&w->b, sig, sizeof(sig));
	if (r >= 0)
		r = rows(w, fc);
	if (r >= 0)
		r = put_be16(&w->b, UINT16_MAX); /* the trailer: -1 */
	if (r >= 0)
		r = flush(w, true);
	if (r < 0) {
		/* ends the COPY; the transaction is lost with it */
		PQputCopyEnd(w->st->conn, "idsyncd: the image could not be encoded");
		while ((res = PQgetResult(w->st->conn)) != NULL)
			PQclear(res);
		return r == -ENOMEM ? ids_error_set(w->err, r, "change feed image: out of memory") : r;
	}
	if (PQputCopyEnd(w->st->conn, NULL) != 1)
		return ids_store_fail(w->st, NULL, "writing the change feed's image", w->err);
	while ((res = PQgetResult(w->st->conn)) != NULL) {
		if (r >= 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
			r = ids_store_fail(w->st, res, "writing the change feed's image", w->err);
		PQclear(res);
	}
	ids_buf_reset(&w->b);
	return r;
}

/* A statement on connector_image for `connector`; *rows += its rows. */
static int image_stmt(struct ids_store *st, const char *connector, const char *sql, long *rows,
		      struct ids_error *err)
{
	const char *p[1] = {connector};
	PGresult *res = NULL;
	int r = ids_store_exec(st, sql, connector ? 1 : 0, connector ? p : NULL, PGRES_COMMAND_OK, &res,
			       "writing the change feed's image", err);
	if (r >= 0 && rows)
		*rows += strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return r;
}

/* The changed keys' stored rows deleted (a key staged per changed
 * record, removed or rewritten); w->rows counts the removed ones. */
static int delete_changed(struct writer *w, const struct ids_feed_commit *fc)
{
	int r = image_stmt(
	    w->st, NULL, "CREATE TEMP TABLE IF NOT EXISTS ids_s_image_key (key text NOT NULL) ON COMMIT DROP",
	    NULL, w->err);
	if (r >= 0)
		r = copy_rows(w, "COPY pg_temp.ids_s_image_key FROM STDIN (FORMAT binary)", changed_keys, fc);
	if (r >= 0)
		r = image_stmt(w->st, w->connector,
			       "DELETE FROM connector_image c USING pg_temp.ids_s_image_key s"
			       " WHERE c.connector = $1 AND c.key = s.key",
			       NULL, w->err);
	if (r >= 0)
		r = image_stmt(w->st, NULL, "DROP TABLE pg_temp.ids_s_image_key", NULL, w->err);
	return r;
}

int ids_store_image_write(struct ids_store *st, const char *connector, const struct ids_feed_commit *fc,
			  struct ids_error *err)
{
	long rows = 0;
	int r = 0;
	/* without an image (or starting over): every stored record goes */
	if (!fc->image || fc->image_whole)
		r = image_stmt(st, connector, "DELETE FROM connector_image WHERE connector = $1", &rows, err);
	if (r < 0 || !fc->image || (!fc->image_whole && !ids_image_nchanged(fc->image)))
		return r < 0 ? r : (int)rows;
	struct writer w = {.st = st, .connector = connector, .err = err};
	if (!fc->image_whole)
		r = delete_changed(&w, fc);
	if (r >= 0)
		r = copy_rows(
		    &w, "COPY connector_image (connector, key, kind, record) FROM STDIN (FORMAT binary)",
		    records, fc);
	ids_buf_free(&w.b);
	rows += w.rows;
	return r < 0 ? r : (int)(rows > INT_MAX - 1 ? INT_MAX - 1 : rows);
}
