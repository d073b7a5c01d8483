/* output.h — the machine-readable output of `plan`, `sync` and `status`
 * (--format json), documented key by key in docs/json.md.
 *
 * Every value is encoded by jansson.  The plan's user and grant arrays are
 * streamed: each element is built, encoded and freed in turn, so that a
 * plan of millions of grants never exists as a jansson tree (about 1 KiB
 * per grant: gigabytes at tier L) — only as the text it has to become. */
#ifndef IDS_OUTPUT_H
#define IDS_OUTPUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/catalog.h" /* struct ids_licence_status */
#include "ids/plan.h"
#include "ids/store.h"
#include "ids/sync.h"
#include "ids/util.h"

/* Bumped whenever a key changes meaning or disappears (docs/json.md lists
 * the changes).  1 was the unversioned shape before it. */
#define IDS_OUTPUT_FORMAT_VERSION 2

/* A JSON string (new reference), null for NULL; NULL on -ENOMEM.  jansson
 * takes UTF-8 only, and directory values (of users skipped as invalid, or
 * quoted in an explanation's reason) may be anything: bytes >= 0x80 are
 * shown as the text \xNN (the audit log does the same), never dropped and
 * never failing the whole document. */
json_t *ids_output_jstr(const char *s);

/* Appends p as the "plan" object of a run: {"tenants", "users", "grants"}
 * (its counts and verdict are the run's keys).  Indented to sit at the
 * second level of the run object.  0, or -ENOMEM. */
int ids_output_plan_json(const struct ids_plan *p, struct ids_buf *out);

/* Appends the object of one connector run of `plan` or `sync`: the same
 * keys whatever the outcome (ok, failed, aborted, skipped, dry run).
 * plan_json is ids_output_plan_json()'s text (borrowed), NULL when the run
 * stopped before it had a plan; res the run's result (borrowed).  0, or
 * -ENOMEM. */
int ids_output_run_json(const char *connector, const struct ids_sync_result *res, const char *plan_json,
			struct ids_buf *out);

/* One configured connector's change feed in `status` (issue 14), all
 * borrowed: what the text's `changes` and `persist` lines show. */
struct ids_output_feed {
	const char *connector;
	const char *mode;		   /* as the text shows it: "auto", "auto (dirsync)", "full", ... */
	const struct ids_feed_state *feed; /* all zero when the connector has none yet */
	bool persist;			   /* changes.persist: true */
	/* its persistent search's row; NULL when no daemon has held it yet
	 * (or persist is off) */
	const struct ids_persist_row *search;
	const char *search_state; /* ids_persist_state_name() of search's (output links no store) */
};

/* The daemon holding fd's persistent search (its lease not run out), or
 * NULL: what status's text and JSON both show. */
const char *ids_output_search_holder(const struct ids_output_feed *fd);

/* What `status` shows, all borrowed. */
struct ids_output_status {
	const struct ids_run_row *runs; /* the last run per connector */
	size_t nruns;
	const struct ids_strv *configured; /* connector names in the configuration */
	const struct ids_schedule_row *schedule;
	size_t nschedule;
	const struct ids_orphan *orphans;
	size_t norphans;
	const struct ids_licence_status *licences; /* config `licences:`, in its order */
	size_t nlicences;
	const struct ids_held *held; /* pending held plans */
	size_t nheld;
	const struct ids_heartbeat *heartbeats;
	size_t nheartbeats;
	const bool *alive;		     /* per heartbeat: the daemon is running */
	const struct ids_strv *stale;	     /* --max-age: stale connectors; NULL when not asked */
	const struct ids_output_feed *feeds; /* per configured connector, in its order */
	size_t nfeeds;
	int64_t now; /* unix microseconds: what the cursors' ages are counted to */
};

/* Appends status's document: {"format_version", "connectors": [...],
 * "orphaned": [...], "licences": [...], "held", "daemons", "stale",
 * "changes": [...]}, one line.  0, or -ENOMEM. */
int ids_output_status_json(const struct ids_output_status *s, struct ids_buf *out);

/* "2026-01-02T03:04:05Z" for unix microseconds into buf[n]; "-" for 0. */
void ids_output_time(int64_t usec, char *buf, size_t n);

#endif
