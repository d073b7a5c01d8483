/* schedule.c — the queue's rows (connector_schedule, migrations 002 and
 * the queue's) as `idsyncd status` shows them: when each connector runs
 * next, which daemon runs it now, and how late it is.  The daemons write
 * them through store/queue.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/store.h"
#include "store_int.h"

void ids_schedule_rows_free(struct ids_schedule_row *rows, size_t n)
{
	if (!rows)
		return;
	for (size_t i = 0; i < n; i++) {
		free(rows[i].connector);
		free(rows[i].instance);
		free(rows[i].running_on);
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
			   " (extract(epoch FROM updated_at) * 1000000)::bigint,"
			   " CASE WHEN lease_until > now() THEN lease_owner END,"
			   " greatest(0, extract(epoch FROM now() - next_run_at))::bigint"
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
		if (!PQgetisnull(res, row, 4))
			w->running_on = strdup(PQgetvalue(res, row, 4));
		if (!w->connector || !w->instance || (!PQgetisnull(res, row, 4) && !w->running_on)) {
			r = -ENOMEM;
			goto out;
		}
		/* every column is NOT NULL: parse failures mean a broken table */
		if (ids_store_parse_i64(PQgetvalue(res, row, 2), &w->next_at) < 0 ||
		    ids_store_parse_i64(PQgetvalue(res, row, 3), &w->updated_at) < 0 ||
		    ids_store_parse_i64(PQgetvalue(res, row, 5), &w->overdue) < 0) {
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
