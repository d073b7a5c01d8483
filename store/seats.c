/* seats.c — the seat book of licences (licence_entitlement, migration
 * 003): read before the licence step, rewritten in the run's apply
 * transaction (ids_store_apply), and counted for `idsyncd status`.  Set-based like the rest of the store:
 * the rows go in as arrays, one statement. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/catalog.h"
#include "ids/store.h"
#include "store_int.h"

int ids_store_text_array(struct ids_buf *b, const char *const *v, size_t n, size_t stride)
{
	int r = ids_buf_putc(b, '{');
	for (size_t i = 0; i < n && r >= 0; i++) {
		const char *s = *(const char *const *)((const char *)v + i * stride);
		r = ids_buf_puts(b, i ? ",\"" : "\"");
		for (; *s && r >= 0; s++)
			r = (*s == '"' || *s == '\\') ? ids_buf_printf(b, "\\%c", *s) : ids_buf_putc(b, *s);
		if (r >= 0)
			r = ids_buf_putc(b, '"');
	}
	return r < 0 ? r : ids_buf_putc(b, '}');
}

static int64_t col64(const PGresult *res, int row, int c)
{
	int64_t v = 0;
	if (!PQgetisnull(res, row, c))
		ids_store_parse_i64(PQgetvalue(res, row, c), &v);
	return v;
}

/* Active users of the company holding each role who are not `connector`'s
 * (other connectors', unmanaged): seats the licence step cannot move. */
static int load_others(struct ids_store *st, const char *company, const char *connector,
		       const struct ids_strv *roles, struct ids_seat_book *b, struct ids_error *err)
{
	struct ids_buf arr = {0};
	PGresult *res = NULL;
	int r = ids_store_text_array(&arr, (const char *const *)roles->v, roles->n, sizeof(char *));
	const char *p[] = {company, connector, arr.p};
	if (r >= 0)
		r = ids_store_exec(
		    st,
		    "SELECT tr.role, count(DISTINCT tr.user_id) FROM tenant_role tr"
		    " JOIN tenant t ON t.id = tr.tenant_id JOIN app_user u ON u.id = tr.user_id"
		    " WHERE t.company_id = $1::bigint AND u.active AND u.source IS DISTINCT FROM $2"
		    " AND tr.role = ANY ($3::text[]) GROUP BY tr.role",
		    3, p, PGRES_TUPLES_OK, &res, "counting the licensed seats", err);
	for (int i = 0; r >= 0 && i < PQntuples(res); i++)
		r = ids_seat_book_add_other(b, PQgetvalue(res, i, 0), (long)col64(res, i, 1));
	PQclear(res);
	ids_buf_free(&arr);
	return r;
}

int ids_store_seats_load(struct ids_store *st, int64_t company_id, const char *connector,
			 const struct ids_strv *roles, struct ids_seat_book *b, struct ids_error *err)
{
	char company[24];
	PGresult *res = NULL;
	if (st->absent || !company_id || !roles->n)
		return 0; /* a plan on an empty database: nobody holds or waits */
	snprintf(company, sizeof(company), "%" PRId64, company_id);
	const char *p[] = {company, connector};
	int r = ids_store_exec(st,
			       "SELECT role, external_id, entitled_run, seat_run FROM licence_entitlement"
			       " WHERE company_id = $1::bigint AND source = $2",
			       2, p, PGRES_TUPLES_OK, &res, "reading the licence seats", err);
	for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
		const struct ids_seat row = {.role = PQgetvalue(res, i, 0),
					     .external_id = PQgetvalue(res, i, 1),
					     .entitled_run = col64(res, i, 2),
					     .seat_run = col64(res, i, 3),
					     .seated = !PQgetisnull(res, i, 3)};
		r = ids_seat_book_add(b, &row);
	}
	PQclear(res);
	return r < 0 ? r : load_others(st, company, connector, roles, b, err);
}

/* The book's rows as the four arrays of the INSERT. */
static int seat_arrays(const struct ids_seat_book *b, struct ids_buf a[4])
{
	int r = ids_store_text_array(&a[0], &b->v[0].role, b->n, sizeof(*b->v));
	if (r >= 0)
		r = ids_store_text_array(&a[1], &b->v[0].external_id, b->n, sizeof(*b->v));
	for (int k = 2; k < 4 && r >= 0; k++) {
		r = ids_buf_putc(&a[k], '{');
		for (size_t i = 0; i < b->n && r >= 0; i++) {
			const struct ids_seat *s = &b->v[i];
			if (k == 3 && !s->seated)
				r = ids_buf_puts(&a[k], i ? ",NULL" : "NULL");
			else
				r = ids_buf_printf(&a[k], "%s%" PRId64, i ? "," : "",
						   k == 2 ? s->entitled_run : s->seat_run);
		}
		if (r >= 0)
			r = ids_buf_putc(&a[k], '}');
	}
	return r;
}

/* Runs one statement of the book's write and adds the rows it touched. */
static int seats_stmt(struct ids_store *st, const char *sql, int n, const char *const *p, long *rows,
		      struct ids_error *err)
{
	PGresult *res = NULL;
	int r = ids_store_exec(st, sql, n, p, PGRES_COMMAND_OK, &res, "saving the licence seats", err);
	if (r >= 0)
		*rows += strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return r;
}

int ids_store_seats_write(struct ids_store *st, const char *company_id, const char *connector,
			  const struct ids_seat_book *b, long *rows, struct ids_error *err)
{
	struct ids_buf a[4] = {{0}};
	int r = b->n ? seat_arrays(b, a) : 0; /* none: every row of the connector goes */
	const char *p[] = {company_id, connector, a[0].p, a[1].p, a[2].p, a[3].p};
	/* only what differs is written: an unchanged book (most runs) costs
	 * no row, like the rest of a resync's apply */
	if (r >= 0)
		r = seats_stmt(
		    st,
		    "DELETE FROM licence_entitlement e WHERE e.company_id = $1::bigint AND e.source = $2"
		    " AND NOT EXISTS (SELECT FROM unnest($3::text[], $4::text[]) AS x (role, ext)"
		    " WHERE x.role = e.role AND x.ext = e.external_id)",
		    4, p, rows, err);
	if (r >= 0 && b->n)
		r = seats_stmt(st,
			       "INSERT INTO licence_entitlement AS e (company_id, role, source, external_id,"
			       " entitled_run, seat_run) SELECT $1::bigint, x.role, $2, x.ext, x.er, x.sr"
			       " FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[])"
			       " AS x (role, ext, er, sr)"
			       " ON CONFLICT (company_id, role, source, external_id) DO UPDATE"
			       " SET entitled_run = EXCLUDED.entitled_run, seat_run = EXCLUDED.seat_run"
			       " WHERE (e.entitled_run, e.seat_run) IS DISTINCT FROM"
			       " (EXCLUDED.entitled_run, EXCLUDED.seat_run)",
			       6, p, rows, err);
	for (int k = 0; k < 4; k++)
		ids_buf_free(&a[k]);
	return r;
}

int ids_store_licence_usage(struct ids_store *st, const char *company, const char *role, long *ret_used,
			    long *ret_waiting, struct ids_error *err)
{
	PGresult *res = NULL;
	const char *p[] = {company, role};
	*ret_used = *ret_waiting = 0;
	if (st->absent)
		return 0;
	int r = ids_store_exec(
	    st,
	    "SELECT (SELECT count(DISTINCT tr.user_id) FROM tenant_role tr JOIN tenant t ON t.id = "
	    "tr.tenant_id"
	    " JOIN app_user u ON u.id = tr.user_id WHERE t.company_id = c.id AND u.active AND tr.role = $2),"
	    " (SELECT count(*) FROM licence_entitlement e WHERE e.company_id = c.id AND e.role = $2"
	    " AND e.seat_run IS NULL) FROM company c WHERE c.slug = $1",
	    2, p, PGRES_TUPLES_OK, &res, "reading the licence usage", err);
	if (r >= 0 && PQntuples(res) == 1) {
		*ret_used = (long)col64(res, 0, 0);
		*ret_waiting = (long)col64(res, 0, 1);
	}
	PQclear(res);
	return r;
}
