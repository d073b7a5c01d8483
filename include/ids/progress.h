/* progress.h — what a long run is doing now, for the people watching it:
 * one line on a terminal for `sync` and `plan` (stderr), and the text of
 * the daemon's STATUS= during a run (`corp reading users: 412,000 (page
 * 824), 38 s`).
 *
 * A tracker follows one connector run at a time.  sync.c marks the phases
 * (start, resolving, rules, ...); the counts of the pull are read live
 * from the snapshot being built (users, groups, pages), so connectors need
 * nothing but the progress hook they already call between pages.  Whether
 * the pull is reading users or groups is told by the snapshot: groups come
 * after users in every connector.  Single-threaded: the run's thread only. */
#ifndef IDS_PROGRESS_H
#define IDS_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/util.h"

struct ids_snapshot;

/* What a run does, in order.  CONNECTING, READING_USERS and
 * READING_GROUPS are the pull: sync.c marks its start only, the tracker
 * tells the three apart from the snapshot. */
enum ids_phase {
	IDS_PHASE_IDLE, /* no run */
	IDS_PHASE_CONNECTING,
	IDS_PHASE_READING_USERS,
	IDS_PHASE_READING_GROUPS,
	IDS_PHASE_RESOLVING,
	IDS_PHASE_RULES,
	IDS_PHASE_LOADING, /* waiting for the current state from PostgreSQL */
	IDS_PHASE_DIFF,
	IDS_PHASE_APPLYING,
};

/* The words for a phase ("reading users"); static. */
const char *ids_phase_name(enum ids_phase ph);

/* ---- pure formatting (unit-tested) ---- */

/* v with a comma every three digits ("412,000", "-1,024") into buf;
 * returns buf. */
char *ids_progress_count(long v, char buf[static 32]);

/* done / seconds as "10,841/s" (one decimal under 10/s: "3.5/s"), with
 * unit before the "/s" ("12 pages/s" for unit " pages"), into buf, or ""
 * while seconds < 1 (too early to mean anything); returns buf. */
char *ids_progress_rate(long done, double seconds, const char *unit, char buf[static 64]);

/* A moment of a run, as the tracker sees it. */
struct ids_progress_view {
	const char *connector; /* borrowed */
	enum ids_phase phase;
	long users, groups, pages; /* read so far */
	long sub_done;		   /* entries of the current reading phase, for the rate */
	long sub_pages;		   /* pages of the current reading phase */
	double sub_seconds;	   /* how long the current reading phase has run */
	double elapsed;		   /* seconds since the run started */
};

/* Appends the one-line text of v to out: `corp reading users: 412,000
 * (page 824), 10,841/s, 38 s`; the rate only when with_rate (the terminal
 * line; STATUS= leaves it out).  The rate is of entries, or of pages while
 * only pages come (a cloud source listing the members of groups it has
 * read: `12 pages/s`).  < 0 on out of memory. */
int ids_progress_format(const struct ids_progress_view *v, bool with_rate, struct ids_buf *out);

/* ---- the tracker ---- */

struct ids_progress;

/* A tracker.  term_fd >= 0: it draws the terminal line there (the caller
 * decided that it should: a terminal, or --progress), at most 4 times a
 * second and at every phase change; -1: no line (the daemon).  *ret new. */
int ids_progress_new(int term_fd, struct ids_progress **ret);
/* Erases its line if shown.  Accepts NULL. */
void ids_progress_free(struct ids_progress *p);

/* Injects the monotonic clock (usec), for tests; default ids_mono_usec. */
void ids_progress_set_clock(struct ids_progress *p, int64_t (*clock)(void));

/* A run of `connector` starts; its pull builds `snap`.  Both borrowed
 * until ids_progress_end.  Every function below accepts p == NULL (no
 * tracker: nothing to do). */
void ids_progress_start(struct ids_progress *p, const char *connector, const struct ids_snapshot *snap);
/* The run enters phase ph (after the pull). */
void ids_progress_phase(struct ids_progress *p, enum ids_phase ph);
/* The run is over: its line is erased (the summary takes its place). */
void ids_progress_end(struct ids_progress *p);

/* The progress hook of `sync` and `plan` (ids_sync_opts.progress, ud the
 * tracker): redraws the line when due.  Always 0: nothing to cancel. */
int ids_progress_tick(void *ud);

/* The daemon's STATUS= text of the run in progress when at least a second
 * has passed since the last one (or since the start), else NULL.  new. */
char *ids_progress_status(struct ids_progress *p);

/* Erases the terminal line of whichever tracker shows one, before
 * something else is written to the terminal (a log line); the next tick
 * or phase draws it again.  Safe to call at any time. */
void ids_progress_erase(void);

#endif
