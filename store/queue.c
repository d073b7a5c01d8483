/* queue.c — the schedule as a queue that daemons share (issue 19,
 * migration 009): offer, claim, renew, release, and when to look again.
 *
 * A claim is one statement on the one connector the daemon's schedule
 * says is due next: its row, unless leased, locked with FOR UPDATE SKIP
 * LOCKED so that a daemon claiming it at the same moment skips it instead
 * of waiting, then leased to the claimer.  Every time is the database's
 * now(): daemons on several machines need not agree on a clock.
 *
 * A daemon names the connectors it has (its configuration's) in every
 * call: a connector that one daemon's configuration no longer has is
 * orphaned for that daemon only, the others go on running it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/store.h"
#include "store_int.h"

/* Connector names are [a-z0-9_-] (config.c, check_conn_name): joined
 * with commas they make a text[] through string_to_array without any
 * quoting, in one parameter. */
static int join_names(const struct ids_strv *names, char **ret)
{
	size_t len = 1;
	for (size_t i = 0; i < names->n; i++)
		len += strlen(names->v[i]) + 1;
	char *s = malloc(len), *p = s;
	if (!s)
		return -ENOMEM;
	*p = '\0';
	for (size_t i = 0; i < names->n; i++)
		p += sprintf(p, "%s%s", i ? "," : "", names->v[i]);
	*ret = s;
	return 0;
}

int ids_store_queue_offer(struct ids_store *st, const struct ids_strv *mine, const char *instance,
			  struct ids_error *err)
{
	char *names = NULL;
	if (join_names(mine, &names) < 0)
		return -ENOMEM;
	const char *p[] = {names, instance};
	/* a connector new to the queue is due at once; one that has a row
	 * keeps its time, whoever wrote it */
	int r = ids_store_exec(st,
			       "INSERT INTO connector_schedule (connector, next_run_at, instance)"
			       " SELECT c, now(), $2 FROM unnest(string_to_array($1, ',')) AS c"
			       " ON CONFLICT (connector) DO NOTHING",
			       2, p, PGRES_COMMAND_OK, NULL, "adding connectors to the queue", err);
	free(names);
	return r;
}

int ids_store_queue_take(struct ids_store *st, const char *connector, const char *instance, int lease_sec,
			 enum ids_take how, struct ids_claim *ret, struct ids_error *err)
{
	char lease[16], mode[4];
	PGresult *res = NULL;
	memset(ret, 0, sizeof(*ret));
	snprintf(lease, sizeof(lease), "%d", lease_sec);
	snprintf(mode, sizeof(mode), "%d", (int)how);
	const char *p[] = {connector, instance, lease, mode};
	/* The row is taken when it is due, or earlier as `how` says — a
	 * starting daemon runs its connectors at once (service.md) unless a
	 * live daemon (a heartbeat within three of its minute-beats) ran
	 * them last: a hundred daemons restarting must not run everything a
	 * hundred times — and when nobody holds a live lease on it: our own
	 * counts as free, a release we could not write must not keep us out
	 * for a lease.  A row another daemon is taking at this moment is
	 * skipped, not waited for.  Either way the answer says when to look
	 * again: the row's time, or the end of the lease that holds it (its
	 * owner may die). */
	int r = ids_store_exec(
	    st,
	    "WITH row AS (SELECT connector, lease_owner AS old_owner,"
	    "   (next_run_at <= now() OR $4::int = 2 OR ($4::int = 1 AND NOT EXISTS"
	    "     (SELECT 1 FROM daemon_heartbeat h WHERE h.instance = s.instance AND h.instance <> $2"
	    "      AND h.heartbeat_at > now() - interval '3 minutes')))"
	    "   AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2) AS free"
	    "   FROM connector_schedule s WHERE connector = $1 FOR UPDATE OF s SKIP LOCKED),"
	    " took AS (UPDATE connector_schedule s SET lease_owner = $2,"
	    "   lease_until = now() + $3::int * interval '1 second', instance = $2, updated_at = now()"
	    "   FROM row WHERE s.connector = row.connector AND row.free"
	    "   RETURNING s.backoff, coalesce(row.old_owner, ''))"
	    " SELECT 1, backoff, coalesce, 0::bigint FROM took"
	    " UNION ALL SELECT 0, 0, coalesce(lease_owner, ''),"
	    "   (extract(epoch FROM greatest(next_run_at, coalesce(lease_until, next_run_at)) - now())"
	    "    * 1000000)::bigint"
	    " FROM connector_schedule WHERE connector = $1 AND NOT EXISTS (SELECT 1 FROM took)",
	    4, p, PGRES_TUPLES_OK, &res, "taking the connector from the queue", err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		/* no row: not offered yet (a reload racing a run); nothing to
		 * wait for */
		PQclear(res);
		return 0;
	}
	int took = atoi(PQgetvalue(res, 0, 0));
	ret->backoff = atoi(PQgetvalue(res, 0, 1));
	ret->owner = strdup(PQgetvalue(res, 0, 2));
	if (ids_store_parse_i64(PQgetvalue(res, 0, 3), &ret->wait_usec) < 0)
		ret->wait_usec = 0;
	if (ret->wait_usec < 0)
		ret->wait_usec = 0;
	PQclear(res);
	if (!ret->owner)
		return -ENOMEM;
	return took;
}

void ids_claim_clear(struct ids_claim *c)
{
	free(c->owner);
	memset(c, 0, sizeof(*c));
}

int ids_store_queue_renew(struct ids_store *st, const char *connector, const char *instance, int lease_sec,
			  struct ids_error *err)
{
	char lease[16];
	PGresult *res = NULL;
	snprintf(lease, sizeof(lease), "%d", lease_sec);
	const char *p[] = {connector, instance, lease};
	int r =
	    ids_store_exec(st,
			   "UPDATE connector_schedule SET lease_until = now() + $3::int * interval '1 second'"
			   " WHERE connector = $1 AND lease_owner = $2",
			   3, p, PGRES_COMMAND_OK, &res, "renewing the lease", err);
	if (r < 0)
		return r;
	r = atoi(PQcmdTuples(res)) == 1
		? 0
		: ids_error_set(err, IDS_E_LOCKED, "the lease of %s is lost", connector);
	PQclear(res);
	return r;
}

int ids_store_queue_release(struct ids_store *st, const char *connector, const char *instance,
			    int64_t next_in_usec, int backoff, struct ids_error *err)
{
	char next[24], bo[16];
	snprintf(next, sizeof(next), "%" PRId64, next_in_usec);
	snprintf(bo, sizeof(bo), "%d", backoff);
	const char *p[] = {connector, instance, next, bo};
	/* only the owner's release counts: a daemon that lost its lease
	 * (stalled past it) must not move the new owner's schedule */
	return ids_store_exec(st,
			      "UPDATE connector_schedule SET lease_owner = NULL, lease_until = NULL,"
			      " next_run_at = now() + $3::bigint * interval '1 microsecond', backoff = $4,"
			      " instance = $2, updated_at = now()"
			      " WHERE connector = $1 AND lease_owner = $2",
			      4, p, PGRES_COMMAND_OK, NULL, "releasing the lease", err);
}
