/* hold.h — what `idsyncd approve` compares: a plan's canonical text and
 * its digest, and the line difference between two such texts.  The plan
 * itself is stored and read by the store (ids_store_held_*). */
#ifndef IDS_HOLD_H
#define IDS_HOLD_H

#include "ids/plan.h"
#include "ids/util.h"

/* Hex sha256 digest: 64 characters and the NUL. */
#define IDS_HOLD_DIGEST_LEN 65

/* Appends p's canonical text to *text — its text plan (sorted, no
 * timings) without the verdict line, which says why it was held rather
 * than what it does — and writes the text's sha256 in hex to ret_hex.
 * < 0 (-ENOMEM, IDS_E_INVALID when OpenSSL fails) and nothing written
 * to ret_hex on failure. */
int ids_hold_digest(const struct ids_plan *p, struct ids_buf *text, char ret_hex[IDS_HOLD_DIGEST_LEN]);

/* Appends to out the lines of `held` that `now` lacks ("- " before
 * them) and then the lines of `now` that `held` lacks ("+ "), each in
 * its own order; a line that appears twice must appear twice in the
 * other text to match.  Both borrowed.  The number of differing lines,
 * or -ENOMEM. */
long ids_hold_diff(const char *held, const char *now, struct ids_buf *out);

#endif
