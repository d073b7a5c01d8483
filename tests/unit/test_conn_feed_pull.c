/* test_conn_feed_pull.c — ids_feed_pull_clear (connector.h): what a
 * failed feed read's caller and the connectors themselves free.  Its
 * outputs go (ASan and valgrind, which scripts/test runs this under, see
 * a leak), its inputs stay: the caller's image and cursor are borrowed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ids/connector.h"

static void test_clear(void **state)
{
	(void)state;
	static const unsigned char cursor[] = "old cookie";
	static char somewhere;
	struct ids_image *img = (struct ids_image *)&somewhere; /* an address, never dereferenced */
	struct ids_feed_pull fp = {.image = img, .cursor = cursor, .cursor_len = sizeof(cursor)};
	fp.new_cursor = (unsigned char *)strdup("new cookie");
	fp.new_cursor_len = 10;
	fp.reset_reason = strdup("the server refused the cookie");
	fp.cursor_server = strdup("dc1.corp.example");
	fp.cursor_invocation_id = strdup("0f4a1c2e-0000-4000-8000-000000000001");
	fp.changes = 7;
	ids_feed_pull_clear(&fp);
	assert_null(fp.new_cursor);
	assert_int_equal(fp.new_cursor_len, 0);
	assert_null(fp.reset_reason);
	assert_null(fp.cursor_server);
	assert_null(fp.cursor_invocation_id);
	assert_int_equal(fp.changes, 0);
	assert_ptr_equal(fp.image, img);
	assert_ptr_equal(fp.cursor, cursor);
	assert_int_equal(fp.cursor_len, sizeof(cursor));
	/* a pull with no outputs (a connector failing before it made any),
	 * and twice over */
	ids_feed_pull_clear(&fp);
	assert_null(fp.new_cursor);
	assert_ptr_equal(fp.cursor, cursor);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clear),
	};
	return cmocka_run_group_tests_name("connector: a feed pull's outputs", tests, NULL, NULL);
}
