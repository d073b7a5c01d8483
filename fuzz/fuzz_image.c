/* fuzz_image.c — libFuzzer target: a change feed's stored record
 * (core/image.c), as store/image.c reads it back from connector_image.
 * The bytes come from the database: a damaged row, a restore of another
 * version, a hand edit.  The first input byte picks the kind (users,
 * groups, or neither), the rest is the record.
 *
 * Besides "no crash, no leak, no undefined behaviour", it checks what the
 * read-back relies on:
 * - ids_image_load accepts only what it can replay: an accepted record
 *   goes through ids_image_replay and ids_snapshot_finish without error
 *   from the record's encoding (the snapshot may still judge its values);
 * - an accepted record is not a change (nothing to write back) and
 *   ids_image_each gives back exactly the bytes loaded, under its key. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/image.h"
#include "ids/snapshot.h"

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_image: %s\n", what);
	abort();
}

struct back {
	const uint8_t *rec;
	size_t len;
	int kind, seen;
};

static int same_bytes(const char *key, int kind, const void *rec, size_t len, void *ud)
{
	struct back *b = ud;
	b->seen++;
	if (strcmp(key, "k") || kind != b->kind || len != b->len || (len && memcmp(rec, b->rec, len)))
		broken("ids_image_each does not give back the bytes loaded");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct ids_image *img = NULL;
	if (ids_image_new(&img) < 0)
		return 0;
	int kind = data[0] % 4; /* 1 users, 2 groups; 0 and 3 are refused */
	int r = ids_image_load(img, "k", kind, data + 1, size - 1);
	if (r == 0) {
		if (kind != IDS_IMAGE_USERS && kind != IDS_IMAGE_GROUPS)
			broken("a record of no kind was accepted");
		if (ids_image_nchanged(img))
			broken("a loaded record counts as a change");
		struct back b = {.rec = data + 1, .len = size - 1, .kind = kind};
		if (ids_image_each(img, false, same_bytes, &b) < 0 || b.seen != 1)
			broken("ids_image_each lost the record");
		struct ids_snapshot *s = NULL;
		if (ids_snapshot_new(&s) == 0) {
			int rr = ids_image_replay(img, s);
			if (rr == -EINVAL)
				broken("an accepted record does not replay");
			if (rr == 0)
				(void)ids_snapshot_finish(s);
			ids_snapshot_free(s);
		}
	} else if (r != -EINVAL && r != -ENOMEM) {
		broken("ids_image_load failed with an unexpected code");
	}
	ids_image_free(img);
	return 0;
}
