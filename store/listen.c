/* listen.c — LISTEN/NOTIFY on a store connection (issue 17 part 2: the
 * daemon's `idsyncd_sync_user` channel).  The daemon gives it a
 * connection of its own: a LISTEN on the connection that runs syncs would
 * only be read between runs, and a run's failure closes that one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

int ids_store_listen(struct ids_store *st, const char *channel, struct ids_error *err)
{
	/* LISTEN takes an identifier, not a parameter: quoted like the schema */
	char *id = PQescapeIdentifier(st->conn, channel, strlen(channel));
	if (!id)
		return ids_store_fail(st, NULL, "LISTEN", err);
	char *sql = NULL;
	int r = asprintf(&sql, "LISTEN %s", id) < 0 ? -ENOMEM : 0;
	PQfreemem(id);
	if (r >= 0)
		r = ids_store_exec(st, sql, 0, NULL, PGRES_COMMAND_OK, NULL, "LISTEN", err);
	free(sql);
	return r;
}

int ids_store_socket(const struct ids_store *st)
{
	return st ? PQsocket(st->conn) : -1;
}

int ids_store_notify_next(struct ids_store *st, char **ret, struct ids_error *err)
{
	*ret = NULL;
	PGnotify *n = PQnotifies(st->conn);
	if (!n) {
		/* nothing parsed yet: read what the socket holds (never blocks) */
		if (!PQconsumeInput(st->conn) || PQstatus(st->conn) != CONNECTION_OK)
			return ids_error_set(err, IDS_E_DB_LOST, "LISTEN connection: %s",
					     PQstatus(st->conn) != CONNECTION_OK
						 ? "the server closed the connection"
						 : "cannot read from the server");
		n = PQnotifies(st->conn);
	}
	if (!n)
		return 0;
	*ret = strdup(n->extra ? n->extra : "");
	PQfreemem(n);
	return *ret ? 1 : -ENOMEM;
}
