/* explain_run.c — `idsyncd explain` for one connector (explain_out.h).
 *
 * The person is read with the connector's targeted read, the one `sync
 * --user` uses (ids_pull_ctx.only_user: that user and their groups, nested
 * ones resolved as a full read resolves them), then looked up in the
 * finished snapshot as a sync would: what explain shows is what a
 * targeted sync of that person would plan, without a whole directory read
 * — except in a company with licences, where a seat's place in line
 * depends on everyone entitled: there the whole directory is read.
 * Nothing is written: no lock, no sync_run row, no schema. */
#include "ids/explain_out.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ids/connector.h"
#include "ids/explain.h"
#include "ids/plan.h"
#include "ids/rules.h"
#include "ids/snapshot.h"
#include "ids/sync.h"

#define USEC 1000000

/* What explain holds while it works; freed by read_free. */
struct xread {
	struct ids_strv attrs;
	struct ids_snapshot *snap;
	struct ids_current *cur;
	struct ids_seat_book seats; /* licences: the connector's seat book */
	bool licensed;		    /* the company has a licence */
	struct ids_explanation *x;
};

static void read_free(struct xread *w)
{
	ids_explanation_free(w->x);
	ids_seat_book_clear(&w->seats);
	ids_current_free(w->cur);
	ids_snapshot_free(w->snap);
	ids_strv_free(&w->attrs);
}

/* Who and their groups, read as `sync --user` reads them (run_timeout
 * bounds it too). */
static int pull(const struct ids_config *cfg, const struct ids_connector_cfg *cc, const char *who,
		struct xread *w, struct ids_error *e)
{
	const struct ids_connector_ops *ops = ids_connector_find(cc->type);
	if (!ops)
		return ids_error_set(e, IDS_E_CONFIG, "connector type %s is not available in this build",
				     ids_conn_type_name(cc->type));
	int r = ids_rules_attrs(cfg->rules, cfg->nrules, cc->name, &w->attrs);
	if (r >= 0)
		r = ids_snapshot_new(&w->snap);
	if (r < 0)
		return ids_error_set(e, r, "%s", ids_strerror(r));
	int timeout = cfg->sync.run_timeout;
	const struct ids_pull_ctx ctx = {.config = cfg,
					 .rule_attrs = &w->attrs,
					 .deadline_usec =
					     timeout > 0 ? ids_mono_usec() + (int64_t)timeout * USEC : 0,
					 .only_user = who};
	if ((r = ops->pull(cc, &ctx, w->snap, e)) < 0)
		return r;
	if ((r = ids_snapshot_finish(w->snap)) < 0)
		return ids_error_set(e, r, "snapshot: %s", ids_strerror(r));
	return 0;
}

/* The company's current state and the connector's seat book; empty when
 * the company does not exist yet (the first sync will create it). */
static int load(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		struct xread *w, struct ids_error *e)
{
	int64_t company = 0;
	int r = ids_store_company(st, cc->company, false, &company, e);
	if (r < 0)
		return r;
	if (company)
		r = ids_store_load(st, company, cc->name, &w->cur, e);
	else if ((r = ids_current_new(&w->cur)) < 0)
		ids_error_set(e, r, "%s", ids_strerror(r));
	/* the licences as the next run applies them: with the seat book */
	if (r >= 0 && (r = ids_sync_seat_book(cfg, st, cc, company, &w->seats, e)) >= 0)
		w->licensed = r > 0;
	return r < 0 ? r : 0;
}

int ids_explain_run(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		    const char *who, enum ids_out_format fmt, struct ids_buf *out, struct ids_error *e)
{
	struct xread w = {0};
	size_t idx = 0;
	/* a seat's place in line depends on everyone the rules entitle: with
	 * a licence in the company, the whole directory is read, as the next
	 * run reads it (the targeted read would see one person in line) */
	int r = pull(cfg, cc, ids_sync_licensed(cfg, cc) ? NULL : who, &w, e);
	if (r >= 0 && (r = ids_explain_find(w.snap, who, &idx)) < 0) {
		read_free(&w);
		return -ENOENT;
	}
	if (r >= 0)
		r = load(cfg, st, cc, &w, e);
	const struct ids_diff_opts dopt = {.connector = cc->name,
					   .idp = ids_conn_type_name(cc->type),
					   .adopt_by_email = cc->adopt_by_email,
					   .auto_create_tenants = cfg->tenants_auto_create};
	const struct ids_explain_in in = {.s = w.snap,
					  .rules = cfg->rules,
					  .nrules = cfg->nrules,
					  .dopt = &dopt,
					  .cur = w.cur,
					  .catalog = &cfg->platform,
					  .company = cc->company,
					  .seats = w.licensed ? &w.seats : NULL};
	if (r >= 0 && (r = ids_explain(&in, idx, &w.x)) < 0)
		ids_error_set(e, r, "explain: %s", ids_strerror(r));
	if (r >= 0)
		r = fmt == IDS_FMT_JSON ? ids_explain_format_json(w.x, out)
					: ids_explain_format_text(w.x, out);
	if (r == -ENOMEM && e && !e->msg)
		ids_error_set(e, r, "%s", ids_strerror(r));
	read_free(&w);
	return r;
}
