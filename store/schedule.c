/* schedule.c — the daemon's next expected run per connector
 * (connector_schedule, migration 002), written by `idsyncd run` and read
 * by `idsyncd status`. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/store.h"
#include "store_int.h"

int ids_store_schedule_set(struct ids_store *st, const char *connector, const char *instance, int64_t next_at,
			   struct ids_error *err)
{
	char at[24];
	snprintf(at, sizeof(at), "%" PRId64, next_at);
	const char *p[] = {connector, at, instance};
	/* Replace the row when it is ours, when its time has passed (its
	 * writer ran since, or died), or when ours comes first: a standby's
	 * later tick must not hide the active instance's earlier one. */
	return ids_store_exec(
	    st,
	    "INSERT INTO connector_schedule AS s (connector, next_run_at, instance, updated_at)"
	    " VALUES ($1, timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3, now())"
	    " ON CONFLICT (connector) DO UPDATE SET next_run_at = EXCLUDED.next_run_at,"
	    " instance = EXCLUDED.instance, updated_at = EXCLUDED.updated_at"
	    " WHERE s.instance = EXCLUDED.instance OR s.next_run_at <= now()"
	    " OR EXCLUDED.next_run_at < s.next_run_at",
	    3, p, PGRES_COMMAND_OK, NULL, "recording the next run", err);
}

void ids_schedule_rows_free(struct ids_schedule_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++) {
		free(rows[i].connector);
		free(rows[i].instance);
	}
	free(rows);
}

int ids_store_schedule_get(struct ids_store *st, struct ids_schedule_row **ret, size_t *ret_n,
			   struct ids_error *err)
{
	PGresult *res = NULL;
	struct ids_schedule_row *rows = NULL;
	size_t n = 0;
	int r =
	    ids_store_exec(st,
			   "SELECT connector, instance, (extract(epoch FROM next_run_at) * 1000000)::bigint,"
			   " (extract(epoch FROM updated_at) * 1000000)::bigint"
			   " FROM connector_schedule ORDER BY connector",
			   0, NULL, PGRES_TUPLES_OK, &res, "reading the schedule", err);
	if (r < 0)
		goto out;
	n = (size_t)PQntuples(res);
	rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct ids_schedule_row *w = &rows[i];
		int row = (int)i;
		w->connector = strdup(PQgetvalue(res, row, 0));
		w->instance = strdup(PQgetvalue(res, row, 1));
		if (!w->connector || !w->instance) {
			r = -ENOMEM;
			goto out;
		}
		/* every column is NOT NULL: parse failures mean a broken table */
		if (ids_store_parse_i64(PQgetvalue(res, row, 2), &w->next_at) < 0 ||
		    ids_store_parse_i64(PQgetvalue(res, row, 3), &w->updated_at) < 0) {
			r = ids_error_set(err, IDS_E_DB, "connector_schedule: unexpected timestamp for %s",
					  w->connector);
			goto out;
		}
	}
	*ret = rows;
	*ret_n = n;
	rows = NULL;
	r = 0;
out:
	ids_schedule_rows_free(rows, n);
	PQclear(res);
	return r;
}
