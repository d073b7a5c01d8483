/* queue_claim.c — how many claims a second the shared queue takes
 * (issue 19, store/queue.c), with D simulated daemons racing for C
 * connectors that are always due.
 *
 *   queue_claim CONNINFO DAEMONS CONNECTORS SECONDS
 *
 * Each daemon is a process with its own connection, going round the
 * connectors (from a place of its own) taking each -> releasing it (due
 * again at once): the worst case for contention, every daemon wants every
 * row all the time.  A counter per connector in shared
 * memory catches a connector held by two daemons at once (a duplicate
 * run), which must never happen.  Prints one line: daemons, takes/s,
 * attempts that found the row held or locked per second, duplicates.  Not a test: no timing
 * is asserted; bench/queue runs it and writes the table. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ids/config.h"
#include "ids/store.h"

struct shared {
	atomic_long claims, empty, duplicates;
	atomic_int held[]; /* per connector: daemons holding it now */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct ids_store *open_store(const char *conninfo, bool migrate)
{
	struct ids_config cfg;
	struct ids_error e = {0};
	struct ids_store *st = NULL;
	memset(&cfg, 0, sizeof(cfg));
	cfg.database.conninfo = (char *)conninfo;
	cfg.database.schema = "bench_queue";
	cfg.database.migrate_auto = true;
	if (ids_store_open(&cfg, &st, &e) < 0 ||
	    (migrate && ids_store_migrate(st, true, NULL, NULL, &e) < 0)) {
		fprintf(stderr, "queue_claim: %s\n", ids_error_text(&e));
		exit(1);
	}
	return st;
}

static void daemon_loop(const char *conninfo, int id, const struct ids_strv *mine, struct shared *sh,
			double until)
{
	struct ids_store *st = open_store(conninfo, false);
	char me[32];
	snprintf(me, sizeof(me), "bench:%d", id);
	for (int i = id * 7; now_s() < until; i++) {
		const char *conn = mine->v[i % (int)mine->n];
		struct ids_claim c;
		struct ids_error e = {0};
		int r = ids_store_queue_take(st, conn, me, 60, IDS_TAKE_DUE, &c, &e);
		ids_claim_clear(&c);
		if (r < 0) {
			fprintf(stderr, "queue_claim: %s\n", ids_error_text(&e));
			exit(1);
		}
		if (r == 0) {
			atomic_fetch_add(&sh->empty, 1);
			continue;
		}
		int k = i % (int)mine->n;
		if (atomic_fetch_add(&sh->held[k], 1) != 0)
			atomic_fetch_add(&sh->duplicates, 1);
		atomic_fetch_add(&sh->claims, 1);
		atomic_fetch_sub(&sh->held[k], 1);
		if (ids_store_queue_release(st, conn, me, 0, 0, &e) < 0) {
			fprintf(stderr, "queue_claim: %s\n", ids_error_text(&e));
			exit(1);
		}
	}
	ids_store_close(st);
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: queue_claim CONNINFO DAEMONS CONNECTORS SECONDS\n");
		return 2;
	}
	int daemons = atoi(argv[2]), nconn = atoi(argv[3]);
	double secs = atof(argv[4]);
	struct ids_strv mine = {.v = calloc((size_t)nconn, sizeof(char *)), .n = (size_t)nconn};
	for (int i = 0; i < nconn; i++)
		if (asprintf(&mine.v[i], "c%d", i) < 0)
			return 1;
	struct ids_store *st = open_store(argv[1], true);
	struct ids_error e = {0};
	if (ids_store_queue_offer(st, &mine, "bench:setup", &e) < 0) {
		fprintf(stderr, "queue_claim: %s\n", ids_error_text(&e));
		return 1;
	}
	struct shared *sh = mmap(NULL, sizeof(*sh) + (size_t)nconn * sizeof(atomic_int),
				 PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	double t0 = now_s(), until = t0 + secs;
	for (int i = 0; i < daemons; i++)
		if (fork() == 0)
			daemon_loop(argv[1], i, &mine, sh, until);
	int failed = 0;
	for (int status, i = 0; i < daemons; i++)
		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	double dt = now_s() - t0;
	printf("%d %.0f %.0f %ld\n", daemons, (double)atomic_load(&sh->claims) / dt,
	       (double)atomic_load(&sh->empty) / dt, atomic_load(&sh->duplicates));
	ids_store_close(st);
	for (int i = 0; i < nconn; i++)
		free(mine.v[i]);
	free(mine.v);
	return failed;
}
