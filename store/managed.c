/* managed.c — how many users and grants a connector manages now, for the
 * idsyncd_users_managed and idsyncd_grants_managed gauges (issue 17 part
 * 4).  Read from managed_count, the counter migration 013's triggers keep
 * exact in every writer's transaction for the thresholds' bases: one
 * definition of "managed" for both, and a read of a few rows (0.5 ms at
 * tier M), where counting the tables scanned every grant table (124 ms at
 * tier M, growing with the tables) after every run that changed anything. */
#include <stdlib.h>

#include "store_int.h"

int ids_store_managed_counts(struct ids_store *st, const char *connector, long *ret_users, long *ret_grants,
			     struct ids_error *err)
{
	/* a row per company the connector's users are in */
	static const char sql[] = "SELECT coalesce(sum(active_users), 0), coalesce(sum(grant_rows), 0)"
				  " FROM managed_count WHERE source = $1";
	const char *p[1] = {connector};
	PGresult *res = NULL;
	int64_t u = 0, g = 0;
	int r = ids_store_exec(st, sql, 1, p, PGRES_TUPLES_OK, &res, "counting the managed users and grants",
			       err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || ids_store_parse_i64(PQgetvalue(res, 0, 0), &u) < 0 ||
	    ids_store_parse_i64(PQgetvalue(res, 0, 1), &g) < 0)
		r = ids_error_set(err, IDS_E_DB, "counting the managed users and grants: unexpected answer");
	PQclear(res);
	*ret_users = (long)u;
	*ret_grants = (long)g;
	return r;
}
