/* safety.c — the empty-source guard and the mass-change thresholds of
 * semantics.md ("Safety", rules 2 and 3), applied to a computed plan. */
#include "ids/plan.h"

#include <stdlib.h>

/* How an operator gets past a threshold, for the end of the message. */
static void put_way_out(const struct ids_plan *p, struct ids_buf *b, const char *limit)
{
	if (p->retire)
		ids_buf_printf(b, "; run `idsyncd retire %s --allow-mass-deactivation` or raise safety.%s",
			       p->connector, limit);
	else
		ids_buf_printf(
		    b,
		    "; run `idsyncd sync --connector %s --allow-mass-deactivation` once or raise safety.%s",
		    p->connector, limit);
}

/* x as a percentage of base, for the message only (the checks compare
 * integers so that "exactly at the limit" is exact). */
static double pct(long x, long base)
{
	return base > 0 ? 100.0 * (double)x / (double)base : 0.0;
}

void ids_safety_check(struct ids_plan *p, size_t snapshot_users, const struct ids_safety *lim,
		      bool allow_empty, bool allow_mass)
{
	struct ids_buf b = {0}, h = {0};
	const struct ids_plan_counts *n = &p->counts;

	/* idempotent: a second call decides afresh */
	free(p->verdict_why);
	p->verdict_why = NULL;
	free(p->held);
	p->held = NULL;
	p->verdict = IDS_VERDICT_OK;

	/* first: an empty read looks like "everyone left" and would trip the
	 * thresholds too, but it deserves its own, clearer verdict */
	if (snapshot_users == 0 && p->active_managed > 0 && !allow_empty) {
		p->verdict = IDS_VERDICT_EMPTY;
		ids_buf_printf(&b,
			       "snapshot has 0 users but %s owns %ld active users; "
			       "set allow_empty: true if that is intended",
			       p->connector, p->active_managed);
		ids_buf_printf(&h, "%ld deactivations (the source returned no users)", n->deactivated);
	} else if (!allow_mass) {
		if (n->deactivated > lim->max_deactivations) {
			p->verdict = IDS_VERDICT_THRESHOLD;
			ids_buf_printf(&b, "%ld deactivations exceed safety.max_deactivations (%ld)",
				       n->deactivated, lim->max_deactivations);
			put_way_out(p, &b, "max_deactivations");
			ids_buf_printf(&h, "%ld deactivations over the limit of %ld", n->deactivated,
				       lim->max_deactivations);
		} else if (n->deactivated * 100 > (long)lim->max_deactivation_percent * p->active_managed) {
			p->verdict = IDS_VERDICT_THRESHOLD;
			ids_buf_printf(&b,
				       "%ld deactivations are %.1f%% of %ld active managed users, "
				       "above safety.max_deactivation_percent (%d%%)",
				       n->deactivated, pct(n->deactivated, p->active_managed),
				       p->active_managed, lim->max_deactivation_percent);
			put_way_out(p, &b, "max_deactivation_percent");
			/* the limit as a count: what the check's integer comparison allows */
			ids_buf_printf(
			    &h, "%ld deactivations over the limit of %ld (%d%% of %ld active users)",
			    n->deactivated, (long)lim->max_deactivation_percent * p->active_managed / 100,
			    lim->max_deactivation_percent, p->active_managed);
		} else if (p->removals_on_active * 100 >
			   (long)lim->max_grant_removals_percent * p->managed_grants) {
			p->verdict = IDS_VERDICT_THRESHOLD;
			ids_buf_printf(&b,
				       "%ld grant removals on active users are %.1f%% of %ld managed grants, "
				       "above safety.max_grant_removals_percent (%d%%)",
				       p->removals_on_active, pct(p->removals_on_active, p->managed_grants),
				       p->managed_grants, lim->max_grant_removals_percent);
			put_way_out(p, &b, "max_grant_removals_percent");
			ids_buf_printf(
			    &h, "%ld grant removals over the limit of %ld (%d%% of %ld managed grants)",
			    p->removals_on_active,
			    (long)lim->max_grant_removals_percent * p->managed_grants / 100,
			    lim->max_grant_removals_percent, p->managed_grants);
		}
	}
	if (p->verdict != IDS_VERDICT_OK) {
		/* out of memory for the message: the verdict still stands, and
		 * callers print verdict_why only when it is set */
		p->verdict_why = b.p;
		b.p = NULL;
		p->held = h.p;
		h.p = NULL;
	}
	ids_buf_free(&b);
	ids_buf_free(&h);
}
