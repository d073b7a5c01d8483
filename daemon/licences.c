/* licences.c — the licence step of a sync (issue 20) between the store
 * and the pure core: the seat book in, the licences applied to the
 * desired state, the book for the apply to save out.  Kept out of
 * sync.c, which calls it once.  Also the seats as the database has them,
 * for `status` and the metrics. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ids/catalog.h"
#include "ids/metrics.h"
#include "ids/sync.h"

/* `sync --user`: the connector's holders the one-person snapshot does not
 * name keep their seats (the run leaves them alone), so they count as
 * taken, like other connectors' holders; a manual row is counted by the
 * core already.  Without this the new hire would find every seat free. */
static int count_absent(const struct ids_connector_cfg *cc, const struct ids_snapshot *s,
			const struct ids_current *cur, const struct ids_strv *roles,
			struct ids_seat_book *prev)
{
	struct ids_current_index ix = {0};
	unsigned char *held = calloc(cur->nusers ? cur->nusers : 1, 1);
	int r = held ? ids_current_index_build(cur, &ix) : -ENOMEM;
	for (size_t k = 0; k < roles->n && r >= 0; k++) {
		memset(held, 0, cur->nusers ? cur->nusers : 1);
		for (size_t i = 0; i < cur->ngrants; i++) {
			const struct ids_cur_grant *g = &cur->grants[i];
			uint32_t row;
			if (g->kind == IDS_GRANT_ROLE && !strcmp(g->name, roles->v[k]) &&
			    ids_current_index_get(&ix, g->user_id, &row))
				held[row] |= g->manual ? 2 : 1;
		}
		long n = 0;
		for (size_t i = 0; i < cur->nusers; i++) {
			const struct ids_cur_user *u = &cur->users[i];
			bool named = false;
			for (size_t j = 0; j < s->nusers && !named; j++)
				named = !ids_strcmp0(s->users[j].f[IDS_F_EXTERNAL_ID], u->external_id);
			n += held[i] == 1 && u->active && u->source && !strcmp(u->source, cc->name) && !named;
		}
		if (n)
			r = ids_seat_book_add_other(prev, roles->v[k], n);
	}
	ids_current_index_free(&ix);
	free(held);
	return r;
}

bool ids_sync_licensed(const struct ids_config *cfg, const struct ids_connector_cfg *cc)
{
	for (size_t i = 0; i < cfg->platform.nlic; i++)
		if (!strcmp(cfg->platform.lic[i].company, cc->company))
			return true;
	return false;
}

/* The roles cc's company holds a licence for, pushed onto *roles. */
static int licensed_roles(const struct ids_config *cfg, const struct ids_connector_cfg *cc,
			  struct ids_strv *roles, struct ids_error *e)
{
	const struct ids_catalog_rules *cr = &cfg->platform;
	int r = 0;
	for (size_t i = 0; i < cr->nlic && r >= 0; i++)
		if (!strcmp(cr->lic[i].company, cc->company))
			r = ids_strv_push(roles, cr->lic[i].role);
	return r < 0 ? ids_error_set(e, r, "licences: %s", ids_strerror(r)) : 0;
}

/* ids_sync_seat_book with the company's licensed roles (empty: none). */
static int seat_book(struct ids_store *st, const struct ids_connector_cfg *cc, int64_t company_id,
		     const struct ids_strv *roles, struct ids_seat_book *b, struct ids_error *e)
{
	int r = roles->n ? ids_store_seats_load(st, company_id, cc->name, roles, b, e) : 0;
	return r < 0 ? r : roles->n > 0;
}

int ids_sync_seat_book(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		       int64_t company_id, struct ids_seat_book *b, struct ids_error *e)
{
	struct ids_strv roles = {0};
	int r = licensed_roles(cfg, cc, &roles, e);
	if (r >= 0)
		r = seat_book(st, cc, company_id, &roles, b, e);
	ids_strv_free(&roles);
	return r;
}

int ids_sync_licences(const struct ids_config *cfg, struct ids_store *st, const struct ids_connector_cfg *cc,
		      int64_t company_id, int64_t run_id, const struct ids_snapshot *s,
		      struct ids_desired_set *d, const struct ids_current *cur, bool partial,
		      struct ids_seat_book *next, struct ids_error *e)
{
	const struct ids_catalog_rules *cr = &cfg->platform;
	struct ids_strv roles = {0};
	struct ids_seat_book prev = {0};
	int r = licensed_roles(cfg, cc, &roles, e);
	if (r >= 0)
		r = seat_book(st, cc, company_id, &roles, &prev, e);
	if (r <= 0) { /* an error, or no licence of the company */
		ids_seat_book_clear(&prev);
		ids_strv_free(&roles);
		return r;
	}
	if (r >= 0 && partial && (r = count_absent(cc, s, cur, &roles, &prev)) < 0)
		ids_error_set(e, r, "licences: %s", ids_strerror(r));
	/* a plan has no run id: what it would seat comes after every stored run */
	if (r >= 0 && (r = ids_catalog_licences(cr, cc->company, cc->name, run_id ? run_id : INT64_MAX, s, d,
						cur, &prev, next, NULL)) < 0)
		ids_error_set(e, r, "licences: %s", ids_strerror(r));
	ids_seat_book_clear(&prev);
	ids_strv_free(&roles);
	return r < 0 ? r : 0;
}

int ids_sync_licence_status(const struct ids_config *cfg, struct ids_store *st,
			    struct ids_licence_status **ret, struct ids_error *e)
{
	const struct ids_catalog_rules *cr = &cfg->platform;
	struct ids_licence_status *v = calloc(cr->nlic ? cr->nlic : 1, sizeof(*v));
	if (!v)
		return ids_error_set(e, -ENOMEM, "licences: %s", ids_strerror(-ENOMEM));
	for (size_t i = 0; i < cr->nlic; i++) {
		v[i] = (struct ids_licence_status){
		    .company = cr->lic[i].company, .role = cr->lic[i].role, .limit = cr->lic[i].limit};
		int r = ids_store_licence_usage(st, v[i].company, v[i].role, &v[i].used, &v[i].waiting, e);
		if (r < 0) {
			free(v);
			return r;
		}
	}
	*ret = v;
	return 0;
}

int ids_sync_licence_metrics(const struct ids_config *cfg, struct ids_store *st, struct ids_metrics *m,
			     struct ids_error *e)
{
	struct ids_licence_status *v = NULL;
	int r = ids_sync_licence_status(cfg, st, &v, e);
	if (r >= 0 && (r = ids_metrics_licences(m, v, cfg->platform.nlic)) < 0)
		ids_error_set(e, r, "licences: %s", ids_strerror(r));
	free(v);
	return r;
}
