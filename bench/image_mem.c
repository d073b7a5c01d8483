/* image_mem.c — what a change feed's image (core/image.c) costs in memory
 * and time at a tier's size, without a directory: a synthetic image
 * shaped like bench/gen_ldif.py's directory, made in memory.
 *
 *   image_mem USERS [ROUNDS]
 *
 * USERS users (entryUUID key; uid, mail, given name, surname, display
 * name, DN, employeeType — what bench's connector reads), USERS / 50
 * groups: All-Staff (everyone), 100 tenant groups (each user in one) and
 * distribution lists (each user in three), DNs as gen_ldif.py makes them.
 * Prints, as JSON: ids_image_memory (the image's own bytes) and the
 * process's VmRSS growth while it was made (with the allocator's
 * overhead), both per user; the CPU seconds to make it, to replay it
 * into a snapshot and finish that, and for a 1 % churn (users renamed: their
 * record and their groups' member references replaced, then committed).
 * With ROUNDS, then the daemon's state between a feed's runs: a kept
 * snapshot, patched after each of ROUNDS rounds of bench's churn (churn_round),
 * and VmRSS after each.
 * A benchmark tool, not part of idsyncd (docs/changes.md, "Memory"). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids/image.h"
#include "ids/snapshot.h"

#define BASE "ou=s0,dc=example,dc=org"
#define TENANTS 100
#define DLS_PER_USER 3

static double now(void)
{
	struct timespec t;
	/* CPU time: the machine is shared, the tool single-threaded */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long rss_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			v = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static void die(const char *what)
{
	fprintf(stderr, "image_mem: %s failed\n", what);
	exit(1);
}

static void set(struct ids_image *img, enum ids_field f, const char *v)
{
	if (ids_image_user_set(img, f, v, strlen(v)) < 0)
		die("user_set");
}

static void user_key(char *key, size_t n, long i)
{
	snprintf(key, n, "6f1c2a9e-0000-4000-8000-%012ld", i);
}

/* User i's DN; gen's bit 1: renamed (his uid too), bit 2: moved. */
static void user_dn(char *v, size_t n, long i, int gen)
{
	snprintf(v, n, "uid=u%ld%s,ou=%s," BASE, i, gen & 1 ? "r" : "", gen & 2 ? "moved" : "people");
}

/* User i, as the LDAP connector records him; `gen` as in user_dn. */
static void user(struct ids_image *img, long i, int gen)
{
	char key[48], v[160];
	user_key(key, sizeof(key), i);
	if (ids_image_user_begin(img, key) < 0)
		die("user_begin");
	set(img, IDS_F_EXTERNAL_ID, key);
	snprintf(v, sizeof(v), "u%ld%s", i, gen & 1 ? "r" : "");
	set(img, IDS_F_USERNAME, v);
	snprintf(v, sizeof(v), "u%ld%s@example.org", i, gen & 1 ? "r" : "");
	set(img, IDS_F_EMAIL, v);
	set(img, IDS_F_FIRST_NAME, "Given");
	snprintf(v, sizeof(v), "Surname%ld", i);
	set(img, IDS_F_LAST_NAME, v);
	snprintf(v, sizeof(v), "Given Surname%ld", i);
	set(img, IDS_F_DISPLAY_NAME, v);
	user_dn(v, sizeof(v), i, gen);
	set(img, IDS_F_DN, v);
	const char *type = i % 50 == 0 ? "supervisor" : i % 20 == 0 ? "contractor" : "employee";
	if (ids_image_user_attr(img, "employeeType", type, strlen(type)) < 0 ||
	    ids_image_user_disabled(img, i % 100 == 0) < 0 || ids_image_end(img) < 0)
		die("user");
}

/* Group g's members (0: All-Staff, 1..TENANTS: tenants, the rest
 * distribution lists): users u with start[g] <= u's index < start[g+1]
 * in `mem` (a compressed table made once). */
struct members {
	long *start, *mem;
};

static void dl_of(long u, long k, long ngroups, long *g)
{
	long ndl = ngroups - 1 - TENANTS;
	*g = 1 + TENANTS + (u * 7 + k * 13) % ndl;
}

static struct members members(long n, long ng)
{
	struct members m = {calloc((size_t)ng + 1, sizeof(long)), NULL};
	long *fill = calloc((size_t)ng, sizeof(long));
	if (!m.start || !fill)
		die("calloc");
	for (long u = 0; u < n; u++) {
		long g;
		m.start[1]++;			/* All-Staff */
		m.start[1 + 1 + u % TENANTS]++; /* its tenant */
		for (long k = 0; k < DLS_PER_USER; k++) {
			dl_of(u, k, ng, &g);
			m.start[g + 1]++;
		}
	}
	for (long g = 0; g < ng; g++)
		m.start[g + 1] += m.start[g];
	if (!(m.mem = malloc((size_t)m.start[ng] * sizeof(long))))
		die("malloc");
	for (long u = 0; u < n; u++) {
		long g;
		m.mem[m.start[0] + fill[0]++] = u;
		g = 1 + u % TENANTS;
		m.mem[m.start[g] + fill[g]++] = u;
		for (long k = 0; k < DLS_PER_USER; k++) {
			dl_of(u, k, ng, &g);
			m.mem[m.start[g] + fill[g]++] = u;
		}
	}
	free(fill);
	return m;
}

/* gen: per user as in user_dn, 0xff for one not (or no longer) there;
 * NULL: every user, none renamed. */
static void group(struct ids_image *img, long g, const struct members *m, const unsigned char *gen)
{
	char key[48], v[160];
	snprintf(key, sizeof(key), "0a7d3c11-0000-4000-8000-%012ld", g);
	if (ids_image_group_begin(img, key) < 0)
		die("group_begin");
	if (g == 0)
		snprintf(v, sizeof(v), "All-Staff");
	else if (g <= TENANTS)
		snprintf(v, sizeof(v), "CC-t%02ld-Operators", g - 1);
	else
		snprintf(v, sizeof(v), "DL-%ld", g);
	char dn[200];
	snprintf(dn, sizeof(dn), "cn=%s,ou=groups," BASE, v);
	if (ids_image_group_set(img, IDS_F_EXTERNAL_ID, key, strlen(key)) < 0 ||
	    ids_image_group_set(img, IDS_F_USERNAME, v, strlen(v)) < 0 ||
	    ids_image_group_set(img, IDS_F_DN, dn, strlen(dn)) < 0)
		die("group_set");
	for (long j = m->start[g]; j < m->start[g + 1]; j++) {
		long u = m->mem[j];
		if (gen && gen[u] == 0xff)
			continue;
		user_dn(v, sizeof(v), u, gen ? gen[u] : 0);
		if (ids_image_group_member(img, IDS_REF_DN, v, strlen(v)) < 0)
			die("group_member");
	}
	if (ids_image_end(img) < 0)
		die("group_end");
}

static long rss_trimmed(void)
{
	malloc_trim(0);
	return rss_kib();
}

/* The groups naming a user whose changed[] is set, sent again. */
static void resend_groups(struct ids_image *img, long ng, const struct members *m, const unsigned char *gen,
			  const unsigned char *changed)
{
	for (long g = 0; g < ng; g++) {
		bool hit = false;
		for (long j = m->start[g]; j < m->start[g + 1] && !hit; j++)
			hit = changed[m->mem[j]];
		if (hit)
			group(img, g, m, gen);
	}
}

/* A kept snapshot made from img (the daemon's whole replay). */
static struct ids_snapshot *kept_replay(struct ids_image *img)
{
	struct ids_snapshot *s = NULL;
	if (ids_snapshot_new(&s) < 0 || ids_snapshot_keep(s) < 0 || ids_image_replay(img, s) < 0 ||
	    ids_snapshot_finish(s) < 0)
		die("kept replay");
	return s;
}

/* bench's 1 % churn, round k (from 1) of a feed's daemon: 1 % of the users
 * deleted, 1 % added, 2.5 % renamed, 2.5 % moved, the groups naming them
 * sent again; then the kept snapshot patched (replayed whole when the
 * patch refuses) and the image committed, as daemon/sync.c does.  One
 * JSON line a round: VmRSS after malloc_trim, as between the daemon's
 * runs. */
static struct ids_snapshot *churn_round(struct ids_image *img, struct ids_snapshot *s, long n, long ng,
					long k, const struct members *m, unsigned char *gen)
{
	unsigned char *changed = calloc((size_t)(n + n / 100 * k), 1);
	char key[48];
	if (!changed)
		die("calloc");
	double t0 = now();
	for (long i = 0; i < n; i++) {
		if (gen[i] == 0xff)
			continue;
		if (i % 100 == k - 1) {
			user_key(key, sizeof(key), i);
			if (ids_image_delete(img, key, IDS_IMAGE_USERS) < 0)
				die("delete");
			gen[i] = 0xff;
		} else if (i % 40 == (k + 10) % 40 || i % 40 == (k + 30) % 40) {
			gen[i] ^= i % 40 == (k + 10) % 40 ? 1 : 2;
			user(img, i, gen[i]);
		} else {
			continue;
		}
		changed[i] = 1;
	}
	for (long i = n + n / 100 * (k - 1); i < n + n / 100 * k; i++) {
		gen[i] = 0;
		changed[i] = 1;
		user(img, i, 0);
	}
	resend_groups(img, ng, m, gen, changed);
	double fed = now() - t0;
	const char *why = "patched";
	t0 = now();
	if (ids_snapshot_patch(s, img, &why) < 0) {
		ids_snapshot_free(s);
		s = kept_replay(img);
	}
	double snap = now() - t0;
	ids_image_commit(img);
	printf("{\"round\": %ld, \"feed_s\": %.2f, \"snapshot\": \"%s\", \"snapshot_s\": %.2f,"
	       " \"image_bytes\": %zu, \"rss_trimmed_kib\": %ld}\n",
	       k, fed, why, snap, ids_image_memory(img), rss_trimmed());
	fflush(stdout);
	free(changed);
	return s;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000, ng = n / 50 > TENANTS + 10 ? n / 50 : TENANTS + 10;
	long rounds = argc > 2 ? atol(argv[2]) : 0, ntot = n + n / 100 * rounds;
	struct ids_image *img = NULL;
	struct ids_snapshot *s = NULL;
	struct members m = members(ntot, ng);
	unsigned char *gen = malloc((size_t)ntot);
	if (!gen)
		die("malloc");
	memset(gen, 0, (size_t)n);
	memset(gen + n, 0xff, (size_t)(ntot - n));
	long rss0 = rss_kib();
	double t0 = now();
	if (ids_image_new(&img) < 0)
		die("ids_image_new");
	for (long i = 0; i < n; i++)
		user(img, i, 0);
	for (long g = 0; g < ng; g++)
		group(img, g, &m, gen);
	ids_image_commit(img);
	double made = now() - t0;
	long rss1 = rss_kib();
	size_t bytes = ids_image_memory(img);
	t0 = now();
	if (ids_snapshot_new(&s) < 0 || ids_image_replay(img, s) < 0 || ids_snapshot_finish(s) < 0)
		die("replay");
	double replay = now() - t0;
	long rss2 = rss_kib();
	ids_snapshot_free(s);
	long rss3 = rss_kib();
	struct timespec w0, w1;
	clock_gettime(CLOCK_MONOTONIC, &w0);
	malloc_trim(0);
	clock_gettime(CLOCK_MONOTONIC, &w1);
	long rss4 = rss_kib();
	double trim = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
	/* 1 % renamed: their records and the groups naming them replaced */
	unsigned char *renamed = calloc((size_t)ntot, 1);
	if (!renamed)
		die("calloc");
	t0 = now();
	for (long i = 0; i < n; i += 100) {
		renamed[i] = 1;
		gen[i] = 1;
		user(img, i, 1);
	}
	/* as a feed sends them: only the groups naming a renamed user */
	resend_groups(img, ng, &m, gen, renamed);
	ids_image_commit(img);
	double churn = now() - t0;
	printf(
	    "{\"users\": %ld, \"groups\": %ld, \"image_bytes\": %zu, \"image_bytes_per_user\": %.0f,"
	    " \"rss_growth_kib\": %ld, \"rss_per_user\": %.0f, \"made_s\": %.2f, \"replay_finish_s\": %.3f,"
	    " \"churn_1pct_s\": %.2f, \"image_bytes_after_churn\": %zu, \"rss_with_snapshot_kib\": %ld,"
	    " \"rss_snapshot_freed_kib\": %ld, \"rss_trimmed_kib\": %ld, \"trim_s\": %.4f}\n",
	    n, ng, bytes, (double)bytes / (double)n, rss1 - rss0, (double)(rss1 - rss0) * 1024 / (double)n,
	    made, replay, churn, ids_image_memory(img), rss2, rss3, rss4, trim);
	fflush(stdout);
	if (rounds > 0) {
		/* the daemon's state between runs: the image and a kept snapshot */
		s = kept_replay(img);
		printf("{\"kept_snapshot\": true, \"rss_trimmed_kib\": %ld}\n", rss_trimmed());
		for (long k = 1; k <= rounds; k++)
			s = churn_round(img, s, n, ng, k, &m, gen);
		ids_snapshot_free(s);
	}
	free(renamed);
	free(gen);
	free(m.start);
	free(m.mem);
	ids_image_free(img);
	return 0;
}
