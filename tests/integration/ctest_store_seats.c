/* ctest_store_seats.c — the seat book of licences (store/seats.c,
 * migration 003) against the real PostgreSQL: rows saved and read back as
 * they were (external ids with the characters an array literal quotes),
 * waiting rows as NULL seats, one connector's rows replaced without
 * touching another's, the holders outside the connector and the status
 * counts; and the book written by the apply, in its transaction: all or
 * nothing with the run's changes, only the rows that differ. */
#include "ctest_store_common.h"

#include "ids/catalog.h"

/* Applies plan p (NULL: no change) of `connector` with seat book b, as
 * a sync does; returns what ids_store_apply returns. */
static int apply_book(struct ids_store *st, int64_t company, const char *connector, const struct ids_plan *p,
		      const struct ids_seat_book *b, struct ids_error *e)
{
	const struct ids_plan none = {.connector = connector};
	if (!p)
		p = &none;
	const struct ids_run run = {.connector = connector,
				    .started_at = 1700000000000000,
				    .status = "ok",
				    .counts = &p->counts,
				    .read_kind = "full",
				    .seats = b};
	return ids_store_apply(st, company, "ldap", p, &run, NULL, e);
}

static const char *const odd[] = {"plain", "with \"quotes\"", "back\\slash", "{brace,comma}", "NULL", "ünï"};
#define NODD (sizeof(odd) / sizeof(odd[0]))

static void test_roundtrip(void **state)
{
	(void)state;
	struct ids_store *st = open_store("s_seats", true);
	struct ids_error e = {0};
	int64_t company = 0;
	assert_int_equal(ids_store_company(st, "acme", true, &company, &e), 0);
	struct ids_seat_book b = {0}, other = {0}, back = {0};
	for (size_t i = 0; i < NODD; i++) {
		struct ids_seat s = {.role = i % 2 ? "phone" : "operator",
				     .external_id = odd[i],
				     .entitled_run = (int64_t)i + 1,
				     .seat_run = (int64_t)i * 10,
				     .seated = i != 3};
		assert_int_equal(ids_seat_book_add(&b, &s), 0);
	}
	struct ids_seat o = {.role = "phone", .external_id = "plain", .entitled_run = 7, .seated = false};
	assert_int_equal(ids_seat_book_add(&other, &o), 0);
	assert_int_equal(apply_book(st, company, "corp", NULL, &b, &e), 0);
	assert_int_equal(apply_book(st, company, "cloud", NULL, &other, &e), 0);
	/* saved twice: replaced, not doubled */
	assert_int_equal(apply_book(st, company, "corp", NULL, &b, &e), 0);

	struct ids_strv roles = {0};
	ids_strv_push(&roles, "phone");
	ids_strv_push(&roles, "operator");
	assert_int_equal(ids_store_seats_load(st, company, "corp", &roles, &back, &e), 0);
	assert_int_equal(back.n, NODD);
	for (size_t i = 0; i < NODD; i++) {
		const struct ids_seat *s = NULL;
		for (size_t k = 0; k < back.n; k++)
			if (!strcmp(back.v[k].external_id, odd[i]))
				s = &back.v[k];
		assert_non_null(s);
		assert_string_equal(s->role, i % 2 ? "phone" : "operator");
		assert_int_equal(s->entitled_run, (int64_t)i + 1);
		assert_int_equal(s->seated, i != 3);
		if (i != 3)
			assert_int_equal(s->seat_run, (int64_t)i * 10);
	}
	assert_sql("1", "SELECT count(*) FROM s_seats.licence_entitlement WHERE source = 'cloud'");
	assert_sql("<null>",
		   "SELECT seat_run FROM s_seats.licence_entitlement WHERE external_id = '{brace,comma}'");

	/* an empty book clears the connector's rows, and only its own */
	struct ids_seat_book empty = {0};
	assert_int_equal(apply_book(st, company, "corp", NULL, &empty, &e), 0);
	assert_sql("0", "SELECT count(*) FROM s_seats.licence_entitlement WHERE source = 'corp'");
	assert_sql("1", "SELECT count(*) FROM s_seats.licence_entitlement WHERE source = 'cloud'");

	/* status: holders of any source (active only), waiting rows */
	use_schema("s_seats");
	char cid[24];
	snprintf(cid, sizeof(cid), "%lld", (long long)company);
	const char *p[] = {cid};
	PQclear(q_on(g_db, "INSERT INTO tenant (company_id, slug, name) VALUES ($1, 't1', 't1')", 1, p));
	PQclear(q_on(g_db,
		     "INSERT INTO app_user (company_id, source, external_id, username, auth_method, active,"
		     " deactivation_reason) VALUES ($1, 'corp', 'a', 'a', 'sso', true, NULL),"
		     " ($1, 'cloud', 'b', 'b', 'sso', true, NULL), ($1, NULL, NULL, 'c', 'sso', true, NULL),"
		     " ($1, 'corp', 'd', 'd', 'sso', false, 'out_of_scope')",
		     1, p));
	sql("INSERT INTO tenant_role (user_id, tenant_id, role, source)"
	    " SELECT u.id, t.id, 'phone', u.source FROM app_user u, tenant t");
	long used = -1, waiting = -1;
	assert_int_equal(ids_store_licence_usage(st, "acme", "phone", &used, &waiting, &e), 0);
	assert_int_equal(used, 3);
	assert_int_equal(waiting, 1);
	/* outside corp: cloud's b and the unmanaged c (d is inactive) */
	struct ids_seat_book again = {0};
	assert_int_equal(ids_store_seats_load(st, company, "corp", &roles, &again, &e), 0);
	assert_int_equal(again.other_roles.n, 1);
	assert_string_equal(again.other_roles.v[0], "phone");
	assert_int_equal(again.other_holders[0], 2);

	ids_seat_book_clear(&again);
	ids_strv_free(&roles);
	ids_seat_book_clear(&b);
	ids_seat_book_clear(&other);
	ids_seat_book_clear(&back);
	ids_error_clear(&e);
	ids_store_close(st);
}

/* The rows of the book, "role ext entitled seat" sorted, ';'-joined. */
static char *book_rows(void)
{
	return sql_val("SELECT coalesce(string_agg(concat_ws(' ', role, external_id, entitled_run,"
		       " coalesce(seat_run::text, 'waiting')), ';' ORDER BY role, external_id), '')"
		       " FROM s_seats_tx.licence_entitlement",
		       0, NULL);
}

static void seat(struct ids_seat_book *b, const char *ext, int64_t entitled, int64_t seat_run)
{
	const struct ids_seat s = {.role = "phone",
				   .external_id = ext,
				   .entitled_run = entitled,
				   .seat_run = seat_run,
				   .seated = seat_run != 0};
	assert_int_equal(ids_seat_book_add(b, &s), 0);
}

/* The book moves with the run's changes or not at all: a run whose
 * changes fail leaves it, a book that cannot be written takes the changes
 * back; an unchanged book writes no row. */
static void test_all_or_nothing(void **state)
{
	(void)state;
	struct ids_store *st = open_store("s_seats_tx", true);
	struct ids_error e = {0};
	int64_t company = 0;
	assert_int_equal(ids_store_company(st, "acme", true, &company, &e), 0);
	use_schema("s_seats_tx");
	char cid[24];
	snprintf(cid, sizeof(cid), "%lld", (long long)company);
	const char *p[] = {cid};
	PQclear(q_on(g_db,
		     "INSERT INTO app_user (company_id, source, external_id, username, email, auth_method,"
		     " active) VALUES ($1, NULL, NULL, 'taken', 'taken@acme.example', 'sso', true)",
		     1, p));

	struct ids_seat_book one = {0}, two = {0}, dup = {0};
	seat(&one, "E0", 1, 1);
	seat(&two, "E0", 1, 1);
	seat(&two, "E1", 2, 0);
	seat(&dup, "E0", 1, 1);
	seat(&dup, "E9", 2, 2);
	seat(&dup, "E9", 3, 0); /* one user twice: the write fails */
	assert_int_equal(apply_book(st, company, "corp", NULL, &one, &e), 0);
	/* the run row, its finishing update, the one book row */
	assert_int_equal(ids_store_rows_written(st), 3);
	assert_int_equal(apply_book(st, company, "corp", NULL, &one, &e), 0);
	assert_int_equal(ids_store_rows_written(st), 2);

	/* changes that fail (a create whose username is taken): the book stays */
	struct ids_plan_user clash[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E1", .username = "taken", .email = "x@acme.example"}};
	struct ids_plan bad = {.connector = "corp", .users = clash, .nusers = 1};
	bad.counts.created = 1;
	assert_true(apply_book(st, company, "corp", &bad, &two, &e) < 0);
	ids_error_clear(&e);
	char *got = book_rows();
	assert_string_equal(got, "phone E0 1 1");
	free(got);

	/* changes that work with a book that cannot be written: both go */
	struct ids_plan_user fine[] = {
	    {.flags = IDS_PU_CREATE, .external_id = "E1", .username = "fresh", .email = "f@acme.example"}};
	struct ids_plan good = {.connector = "corp", .users = fine, .nusers = 1};
	good.counts.created = 1;
	assert_true(apply_book(st, company, "corp", &good, &dup, &e) < 0);
	assert_non_null(strstr(ids_error_text(&e), "licence seats"));
	ids_error_clear(&e);
	assert_sql("0", "SELECT count(*) FROM s_seats_tx.app_user WHERE username = 'fresh'");
	got = book_rows();
	assert_string_equal(got, "phone E0 1 1");
	free(got);

	/* and together they commit: E0 untouched, E1 added */
	assert_int_equal(apply_book(st, company, "corp", &good, &two, &e), 0);
	assert_sql("1", "SELECT count(*) FROM s_seats_tx.app_user WHERE username = 'fresh'");
	got = book_rows();
	assert_string_equal(got, "phone E0 1 1;phone E1 2 waiting");
	free(got);

	ids_seat_book_clear(&one);
	ids_seat_book_clear(&two);
	ids_seat_book_clear(&dup);
	ids_error_clear(&e);
	ids_store_close(st);
}

int main(void)
{
	int r = db_setup("seats");
	if (r)
		return r;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_all_or_nothing),
	};
	r = cmocka_run_group_tests(tests, NULL, NULL);
	db_teardown();
	return r;
}
