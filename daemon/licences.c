/* licences.c — the licence step of a sync (issue 20) between the store
 * and the pure core: the seat book in, the licences applied to the
 * desired state, the book to save after the commit out.  Kept out of
 * sync.c, which calls it once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ids/catalog.h"
#include "ids/sync.h"

int ids_sync_licences(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		      int64_t company_id, int64_t run_id, const struct ids_snapshot *s,
		      struct ids_desired_set *d, const struct ids_current *cur, struct ids_seat_book *next,
		      struct ids_error *e)
{
	const struct ids_catalog_rules *cr = &cfg->platform;
	struct ids_strv roles = {0};
	struct ids_seat_book prev = {0};
	int r = 0;
	for (size_t i = 0; i < cr->nlic && r >= 0; i++)
		if (!strcmp(cr->lic[i].company, cc->company))
			r = ids_strv_push(&roles, cr->lic[i].role);
	if (r < 0 || !roles.n) {
		ids_strv_free(&roles);
		return r < 0 ? ids_error_set(e, r, "licences: %s", ids_strerror(r)) : 0;
	}
	r = ids_store_seats_load(st, company_id, cc->name, &roles, &prev, e);
	/* a plan has no run id: what it would seat comes after every stored run */
	if (r >= 0 && (r = ids_catalog_licences(cr, cc->company, cc->name, run_id ? run_id : INT64_MAX, s, d,
						cur, &prev, next, NULL)) < 0)
		ids_error_set(e, r, "licences: %s", ids_strerror(r));
	ids_seat_book_clear(&prev);
	ids_strv_free(&roles);
	return r;
}
