/* managed.c — how many users and grants a connector manages now, for the
 * idsyncd_users_managed and idsyncd_grants_managed gauges (issue 17 part
 * 4).  One statement after a successful full run; its cost is in
 * docs/metrics.md. */
#include <stdlib.h>

#include "store_int.h"

int ids_store_managed_counts(struct ids_store *st, const char *connector, long *ret_users, long *ret_grants,
			     struct ids_error *err)
{
	/* app_user by its (source, external_id) key; the four grant tables
	 * have no index on source, so each is one sequential scan: cheaper
	 * than a join through app_user, which reads them whole as well */
	static const char sql[] = "SELECT (SELECT count(*) FROM app_user WHERE source = $1 AND active),"
				  " (SELECT count(*) FROM tenant_role WHERE source = $1)"
				  " + (SELECT count(*) FROM channel_grant WHERE source = $1)"
				  " + (SELECT count(*) FROM slot_limit WHERE source = $1)"
				  " + (SELECT count(*) FROM operator_group_member WHERE source = $1)";
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
