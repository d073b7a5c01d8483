/* store_int.h — what the store's files share (not a public contract):
 * the connection handle and the libpq wrappers that translate SQLSTATEs
 * into IDS_E_* codes once, for every statement of the store. */
#ifndef IDS_STORE_INT_H
#define IDS_STORE_INT_H

#include <libpq-fe.h>

#include "ids/error.h"
#include "ids/store.h"

struct ids_store {
	PGconn *conn;
	char *schema;	   /* the schema name, unquoted (for messages) */
	long rows_written; /* by the last ids_store_apply that committed */
	char *warning;	   /* see ids_store_warning; NULL when none */
	bool absent;	   /* ids_store_assume_empty: no schema, reads are empty */
};

/* Translates a failed statement (res may be NULL: no result at all) into
 * IDS_E_DB_LOST (dead connection, SQLSTATE class 08, server shutdown) or
 * IDS_E_DB, with "what: server message (SQLSTATE xxxxx)" in err.  Returns
 * the code.  Does not free res. */
int ids_store_fail(struct ids_store *st, const PGresult *res, const char *what, struct ids_error *err);

/* v[0..n) (elements `stride` bytes apart) appended to b as a PostgreSQL
 * array literal of text, every element quoted. */
int ids_store_text_array(struct ids_buf *b, const char *const *v, size_t n, size_t stride);

/* PQexecParams with text parameters and text results.  Succeeds when the
 * result status is `want` (PGRES_COMMAND_OK or PGRES_TUPLES_OK); then
 * *ret_res (may be NULL: the result is cleared) is new (PQclear).  On
 * failure, err says `what` failed. */
int ids_store_exec(struct ids_store *st, const char *sql, int nparams, const char *const *params,
		   ExecStatusType want, PGresult **ret_res, const char *what, struct ids_error *err);

/* Inserts the sync_run row `run`; finished: finished_at = now (else NULL,
 * for apply to set at the end).  *ret_id (may be NULL) gets its id. */
int ids_store_insert_run(struct ids_store *st, const struct ids_run *run, bool finished, int64_t *ret_id,
			 struct ids_error *err);

/* Writes fc to connector_feed for `connector` (feed.c), and the image
 * with it (connector_image), inside the caller's transaction
 * (ids_store_apply's): the cursor commits with the changes it produced,
 * or not at all.  The rows written (>= 1), or < 0.  started_at: the run's start, unix
 * microseconds. */
int ids_store_feed_commit(struct ids_store *st, const char *connector, int64_t started_at,
			  const struct ids_feed_commit *fc, struct ids_error *err);

/* Replaces the seat book of `connector` in the company (licence_entitlement,
 * seats.c) with b's rows, inside the caller's transaction (ids_store_apply's):
 * the book moves with the grants it describes, or not at all.  Writes only
 * the rows that differ; adds the rows it wrote to *rows. */
int ids_store_seats_write(struct ids_store *st, const char *company_id, const char *connector,
			  const struct ids_seat_book *b, long *rows, struct ids_error *err);
/* One field of a decoded binary COPY tuple: p[0..len) (no NUL), len -1 =
 * NULL. */
struct ids_copy_field {
	const char *p;
	int32_t len;
};
typedef int (*ids_copy_row_fn)(void *ud, const struct ids_copy_field *f, struct ids_error *err);

/* Runs `sql` (a COPY ... TO STDOUT (FORMAT binary), ncols columns, at
 * most 16) and hands every tuple to fn (load.c); `what` names it in
 * errors. */
int ids_store_copy_out(struct ids_store *st, const char *sql, int ncols, ids_copy_row_fn fn, void *ud,
		       const char *what, struct ids_error *err);

/* Writes fc's image changes for `connector` (image.c), inside the
 * caller's transaction (ids_store_feed_commit's): the rows written, or
 * < 0. */
int ids_store_image_write(struct ids_store *st, const char *connector, const struct ids_feed_commit *fc,
			  struct ids_error *err);

/* Parses a decimal int64 column value; 0 on success, -EINVAL otherwise. */
int ids_store_parse_i64(const char *s, int64_t *ret);

#endif
