/* persist.c — the persistent feeds' table (migration 012, persist_feed):
 * which daemon holds a connector's refreshAndPersist doorbell, its lease,
 * and what `status` shows of it (daemon/persist.c, docs/changes.md,
 * docs/scaling.md).
 *
 * A hold is one statement, like queue.c's claim: it beats this daemon's
 * heartbeat (the placement counts the daemons that beat within a lease),
 * then takes or renews the row when it is ours or nobody's (lease run
 * out), and — for a row that is not ours yet — only while this daemon
 * holds fewer than its share, ⌈feeds / live daemons⌉.  It answers with
 * the daemon's count and share, so that a daemon over its share + 1 (it
 * took everything while it was alone) gives feeds back. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/store.h"
#include "store_int.h"

static const char *const state_names[] = {"connecting", "up", "reconnecting", "waiting"};

int ids_store_persist_hold(struct ids_store *st, const struct ids_persist_hold *h,
			   struct ids_persist_share *ret, struct ids_error *err)
{
	char lease[16], feeds[16], outage[4];
	PGresult *res = NULL;
	memset(ret, 0, sizeof(*ret));
	snprintf(lease, sizeof(lease), "%d", h->lease_sec);
	snprintf(feeds, sizeof(feeds), "%d", h->feeds);
	snprintf(outage, sizeof(outage), "%d", h->new_outage ? 1 : 0);
	const char *p[] = {h->connector, h->instance, lease, feeds, state_names[h->state], h->error, outage};
	int r = ids_store_exec(
	    st,
	    "WITH beat AS (UPDATE daemon_heartbeat SET heartbeat_at = now() WHERE instance = $2),"
	    " live AS (SELECT 1 + count(*) AS n FROM daemon_heartbeat WHERE instance <> $2"
	    "   AND heartbeat_at > now() - $3::int * interval '1 second'),"
	    " mine AS (SELECT count(*) AS n FROM persist_feed WHERE holder = $2 AND lease_until > now()"
	    "   AND connector <> $1),"
	    " share AS (SELECT ceil($4::numeric / (SELECT n FROM live))::int AS n),"
	    " up AS (INSERT INTO persist_feed AS f (connector, holder, lease_until, state, since, error)"
	    "   SELECT $1, $2, now() + $3::int * interval '1 second', $5, now(), $6"
	    "   WHERE (SELECT n FROM mine) < (SELECT n FROM share)"
	    "    OR EXISTS (SELECT 1 FROM persist_feed WHERE connector = $1 AND holder = $2)"
	    "   ON CONFLICT (connector) DO UPDATE SET holder = $2, lease_until = EXCLUDED.lease_until,"
	    "    state = $5, error = $6, reconnects = f.reconnects + $7::int, updated_at = now(),"
	    "    since = CASE WHEN f.holder IS NOT DISTINCT FROM $2 AND f.state = $5 THEN f.since"
	    "            ELSE now() END"
	    "   WHERE f.holder = $2 OR f.holder IS NULL OR f.lease_until < now()"
	    "   RETURNING 1)"
	    " SELECT (SELECT count(*) FROM up), (SELECT n FROM mine), (SELECT n FROM share),"
	    "  coalesce((SELECT holder FROM persist_feed WHERE connector = $1), '')",
	    7, p, PGRES_TUPLES_OK, &res, "holding the persistent feed", err);
	if (r < 0)
		return r;
	int64_t took = 0, mine = 0, share = 0;
	if (PQntuples(res) != 1 || ids_store_parse_i64(PQgetvalue(res, 0, 0), &took) < 0 ||
	    ids_store_parse_i64(PQgetvalue(res, 0, 1), &mine) < 0 ||
	    ids_store_parse_i64(PQgetvalue(res, 0, 2), &share) < 0) {
		PQclear(res);
		return ids_error_set(err, IDS_E_DB, "persist_feed: unexpected answer for %s", h->connector);
	}
	ret->held = (int)mine + (took > 0);
	ret->share = (int)share;
	/* the holder before this statement: who has it when we did not get it */
	ret->holder = strdup(PQgetvalue(res, 0, 3));
	PQclear(res);
	if (!ret->holder)
		return -ENOMEM;
	return took > 0;
}

void ids_persist_share_clear(struct ids_persist_share *s)
{
	free(s->holder);
	memset(s, 0, sizeof(*s));
}

int ids_store_persist_release(struct ids_store *st, const char *connector, const char *instance,
			      const char *why, struct ids_error *err)
{
	const char *p[] = {connector, instance, why};
	return ids_store_exec(st,
			      "UPDATE persist_feed SET holder = NULL, lease_until = NULL, state = 'waiting',"
			      " since = now(), error = $3, updated_at = now()"
			      " WHERE connector = $1 AND holder = $2",
			      3, p, PGRES_COMMAND_OK, NULL, "releasing the persistent feed", err);
}

int ids_store_persist_get(struct ids_store *st, const char *connector, struct ids_persist_row *ret,
			  struct ids_error *err)
{
	PGresult *res = NULL;
	const char *p[] = {connector};
	memset(ret, 0, sizeof(*ret));
	int r = ids_store_exec(st,
			       "SELECT coalesce(holder, ''), lease_until > now(), state,"
			       " (extract(epoch FROM since) * 1000000)::bigint, error, reconnects"
			       " FROM persist_feed WHERE connector = $1",
			       1, p, PGRES_TUPLES_OK, &res, "reading the persistent feed", err);
	if (r < 0)
		return r;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return 0;
	}
	const char *state = PQgetvalue(res, 0, 2);
	ret->state = IDS_PERSIST_WAITING;
	for (size_t i = 0; i < sizeof(state_names) / sizeof(*state_names); i++)
		if (!strcmp(state, state_names[i]))
			ret->state = (enum ids_persist_state)i;
	ret->live = !strcmp(PQgetvalue(res, 0, 1), "t");
	ret->holder = strdup(PQgetvalue(res, 0, 0));
	bool has_error = !PQgetisnull(res, 0, 4);
	ret->error = has_error ? strdup(PQgetvalue(res, 0, 4)) : NULL;
	if (ids_store_parse_i64(PQgetvalue(res, 0, 3), &ret->since) < 0 ||
	    ids_store_parse_i64(PQgetvalue(res, 0, 5), &ret->reconnects) < 0)
		r = ids_error_set(err, IDS_E_DB, "persist_feed: unexpected value for %s", connector);
	PQclear(res);
	if (r >= 0 && (!ret->holder || (has_error && !ret->error)))
		r = -ENOMEM;
	if (r < 0) {
		ids_persist_row_clear(ret);
		return r;
	}
	return 1;
}

const char *ids_persist_state_name(enum ids_persist_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(*state_names) ? state_names[s] : "?";
}

void ids_persist_row_clear(struct ids_persist_row *row)
{
	free(row->holder);
	free(row->error);
	memset(row, 0, sizeof(*row));
}
