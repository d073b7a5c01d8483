/* explain_out.h — the `idsyncd explain` command: read one connector's
 * directory, find the person, explain (explain.h), and print the
 * explanation as text or JSON (docs/json.md, "explain"). */
#ifndef IDS_EXPLAIN_OUT_H
#define IDS_EXPLAIN_OUT_H

#include "ids/config.h"
#include "ids/explain.h"
#include "ids/store.h"
#include "ids/sync.h"
#include "ids/util.h"

/* Appends the text form of x to out.  0, or -ENOMEM. */
int ids_explain_format_text(const struct ids_explanation *x, struct ids_buf *out);
/* Appends x as one JSON object (indented, no trailing newline).  0, or -ENOMEM. */
int ids_explain_format_json(const struct ids_explanation *x, struct ids_buf *out);

/* Reads connector cc's directory now (a whole pull, as a sync reads it),
 * finds `who` (username, e-mail or external id) and, with the database's
 * current state from st (read only), appends the explanation to out.
 * 0; -ENOENT when the directory has no such user; else an error in e. */
int ids_explain_run(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		    const char *who, enum ids_out_format fmt, struct ids_buf *out, struct ids_error *e);

#endif
