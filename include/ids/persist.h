/* persist.h — the doorbells of `changes.persist: true` connectors in the
 * daemon (daemon/persist.c, docs/changes.md "Persistent search").
 *
 * For each such connector this daemon holds (persist_feed, placed among
 * the daemons by store/persist.c), a persistent search (ids/ldap_watch.h)
 * started from the stored cursor's cookies; whatever it hears rings the
 * loop's bell, which moves the connector's normal incremental run to
 * `debounce` from now.  A search that drops is opened again with backoff
 * (1 s doubling to 60 s, jittered), logged once per outage and counted.
 *
 * The loop polls one fd (an epoll set of the searches' sockets) with its
 * signalfd; everything here runs on the loop's thread. */
#ifndef IDS_PERSIST_H
#define IDS_PERSIST_H

#include <stdint.h>

#include "ids/config.h"
#include "ids/metrics.h"
#include "ids/util.h"

struct ids_persist;

/* What the loop lends each call (all borrowed for the call). */
struct ids_persist_hooks {
	const struct ids_config *cfg;
	/* the daemon's progress hook, called while a connection is opened
	 * (watchdog, SIGTERM: < 0 abandons the attempt) */
	int (*progress)(void *ud);
	/* a change arrived for connector `name` */
	void (*ring)(void *ud, const char *name);
	void *ud;
	struct ids_metrics *metrics; /* NULL: none */
};

/* instance: host:pid (copied).  0 with *ret (new: ids_persist_free). */
int ids_persist_new(const char *instance, struct ids_persist **ret);

/* Closes every search and gives the feeds back (a clean stop: another
 * daemon takes them at once, not after the lease); accepts NULL. */
void ids_persist_free(struct ids_persist *pp);

/* Takes cfg's persist connectors (after the start and each reload): the
 * searches of connectors that went, or whose settings changed, are
 * closed; every search is opened again from the stored cursor. */
int ids_persist_configure(struct ids_persist *pp, const struct ids_config *cfg);

/* The fd to poll for reading (-1 when no search is open). */
int ids_persist_fd(const struct ids_persist *pp);

/* Reads what the open searches sent (the fd polled readable): rings for
 * changes, closes what dropped. */
void ids_persist_drain(struct ids_persist *pp, const struct ids_persist_hooks *h);

/* The loop's idle turn: leases renewed and taken, searches (re)opened
 * when their time has come. */
void ids_persist_service(struct ids_persist *pp, const struct ids_persist_hooks *h);

/* From the progress hook during a run: only the leases (no connection
 * is opened during a run). */
void ids_persist_tick(struct ids_persist *pp, const struct ids_persist_hooks *h);

/* Monotonic usec at which ids_persist_service has something to do; 0:
 * nothing planned. */
int64_t ids_persist_next(const struct ids_persist *pp);

/* A run of `name` ended: a search waiting for a cursor tries again now. */
void ids_persist_ran(struct ids_persist *pp, const char *name);

/* One line per persist connector for STATUS= ("corp persist up since
 * 12:00:01"), appended to b. */
void ids_persist_status(const struct ids_persist *pp, struct ids_buf *b);

#endif
