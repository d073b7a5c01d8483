/* test_conn_ldap_sync.c — RFC 4533's values (connectors/ldap_sync.c):
 * the request control's encoding, and the decoding of what slapd sends.
 *
 * Expected bytes are written by hand from the RFC's ASN.1, and two
 * values are slapd 2.5.13's own, recorded with `ldapsearch -E sync=ro`
 * (which printed their base64 and its own reading of them: the UUID, the
 * cookie, refreshDeletes), so neither side of a check is this code's
 * output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../connectors/ldap_sync.h"
#include "ids/error.h"

#define BV(a) ((struct berval){.bv_len = sizeof(a), .bv_val = (char *)(a)})

static void assert_bytes(const struct berval *got, const unsigned char *want, size_t n)
{
	assert_int_equal(got->bv_len, n);
	assert_memory_equal(got->bv_val, want, n);
}

/* refreshOnly with and without a cookie; refreshAndPersist. */
static void test_request_encode(void **state)
{
	(void)state;
	static const unsigned char bare[] = {0x30, 0x03, 0x0a, 0x01, 0x01};
	static const unsigned char cookie[] = {0x30, 0x07, 0x0a, 0x01, 0x01, 0x04, 0x02, 'c', '1'};
	static const unsigned char persist[] = {0x30, 0x03, 0x0a, 0x01, 0x03};
	struct berval c = {.bv_len = 2, .bv_val = (char *)"c1"}, empty = {.bv_len = 0, .bv_val = (char *)""};
	struct berval v = {0};
	assert_int_equal(ids_sync_request_encode(false, NULL, &v), 0);
	assert_bytes(&v, bare, sizeof(bare));
	ber_memfree(v.bv_val);
	assert_int_equal(ids_sync_request_encode(false, &empty, &v), 0); /* an empty cookie is none */
	assert_bytes(&v, bare, sizeof(bare));
	ber_memfree(v.bv_val);
	assert_int_equal(ids_sync_request_encode(false, &c, &v), 0);
	assert_bytes(&v, cookie, sizeof(cookie));
	ber_memfree(v.bv_val);
	assert_int_equal(ids_sync_request_encode(true, NULL, &v), 0);
	assert_bytes(&v, persist, sizeof(persist));
	ber_memfree(v.bv_val);
}

/* slapd's syncState of an added entry ("MBUKAQEEENab886F4BBBgzabxP4AYBo=":
 * "SyncState control, UUID d69bf3ce-85e0-1041-8336-9bc4fe00601a added"),
 * then one with a cookie, and a delete. */
static void test_state_decode(void **state)
{
	(void)state;
	static const unsigned char slapd_add[] = {0x30, 0x15, 0x0a, 0x01, 0x01, 0x04, 0x10, 0xd6,
						  0x9b, 0xf3, 0xce, 0x85, 0xe0, 0x10, 0x41, 0x83,
						  0x36, 0x9b, 0xc4, 0xfe, 0x00, 0x60, 0x1a};
	static const unsigned char del_cookie[] = {0x30, 0x19, 0x0a, 0x01, 0x03, 0x04, 0x10, 0,	  1,
						   2,	 3,    4,    5,	   6,	 7,    8,    9,	  10,
						   11,	 12,   13,   14,   15,	 0x04, 0x02, 'k', '9'};
	enum ids_sync_state st = IDS_SYNC_PRESENT;
	char uuid[IDS_SYNC_UUID_TEXT];
	struct berval *cookie = (struct berval *)1;
	assert_int_equal(ids_sync_state_decode(&BV(slapd_add), &st, uuid, &cookie), 0);
	assert_int_equal(st, IDS_SYNC_ADD);
	assert_string_equal(uuid, "d69bf3ce-85e0-1041-8336-9bc4fe00601a");
	assert_null(cookie);
	assert_int_equal(ids_sync_state_decode(&BV(del_cookie), &st, uuid, &cookie), 0);
	assert_int_equal(st, IDS_SYNC_DELETE);
	assert_string_equal(uuid, "00010203-0405-0607-0809-0a0b0c0d0e0f");
	assert_non_null(cookie);
	assert_int_equal(cookie->bv_len, 2);
	assert_memory_equal(cookie->bv_val, "k9", 2);
	ids_sync_cookie_free(cookie);
}

/* slapd's syncDone at the end of a refresh that sent deletes. */
static void test_done_decode(void **state)
{
	(void)state;
	static const unsigned char slapd_done[] = {
	    0x30, 0x39, 0x04, 0x34, 'r', 'i', 'd', '=', '0', '0', '0', ',',  'c',  's', 'n',
	    '=',  '2',	'0',  '2',  '6', '1', '2', '0', '6', '1', '6', '5',  '0',  '0', '8',
	    '.',  '5',	'4',  '8',  '0', '6', '3', 'Z', '#', '0', '0', '0',  '0',  '0', '0',
	    '#',  '0',	'0',  '0',  '#', '0', '0', '0', '0', '0', '0', 0x01, 0x01, 0xff};
	static const unsigned char bare[] = {0x30, 0x00}; /* no cookie, refreshDeletes FALSE by default */
	struct berval *cookie = NULL;
	bool deletes = false;
	assert_int_equal(ids_sync_done_decode(&BV(slapd_done), &cookie, &deletes), 0);
	assert_non_null(cookie);
	assert_string_equal(cookie->bv_val, "rid=000,csn=20261206165008.548063Z#000000#000#000000");
	assert_true(deletes);
	ids_sync_cookie_free(cookie);
	assert_int_equal(ids_sync_done_decode(&BV(bare), &cookie, &deletes), 0);
	assert_null(cookie);
	assert_false(deletes);
}

/* The four syncInfo choices, defaults included. */
static void test_info_decode(void **state)
{
	(void)state;
	static const unsigned char newcookie[] = {0x80, 0x03, 'a', 'b', 'c'};
	static const unsigned char present_not_done[] = {0xa2, 0x03, 0x01, 0x01, 0x00};
	static const unsigned char delete_cookie[] = {0xa1, 0x05, 0x04, 0x03, 'x', 'y', 'z'};
	static const unsigned char id_set[] = {
	    0xa3, 0x2c, 0x04, 0x01, 'q',  0x01, 0x01, 0xff, 0x31, 0x24, 0x04, 0x10, 0xd6, 0x9b, 0xe0, 0x6e,
	    0x85, 0xe0, 0x10, 0x41, 0x83, 0x35, 0x9b, 0xc4, 0xfe, 0x00, 0x60, 0x1a, 0x04, 0x10, 0xd6, 0x9c,
	    0x09, 0x54, 0x85, 0xe0, 0x10, 0x41, 0x83, 0x37, 0x9b, 0xc4, 0xfe, 0x00, 0x60, 0x1a};
	static const unsigned char id_set_present[] = {0xa3, 0x14, 0x31, 0x12, 0x04, 0x10, 0, 0, 0, 0, 0,
						       0,    0,	   0,	 0,    0,    0,	   0, 0, 0, 0, 1};
	struct ids_sync_info info;

	assert_int_equal(ids_sync_info_decode(&BV(newcookie), &info), 0);
	assert_int_equal(info.kind, IDS_SYNC_INFO_NEW_COOKIE);
	assert_string_equal(info.cookie->bv_val, "abc");
	ids_sync_info_clear(&info);

	assert_int_equal(ids_sync_info_decode(&BV(present_not_done), &info), 0);
	assert_int_equal(info.kind, IDS_SYNC_INFO_REFRESH_PRESENT);
	assert_null(info.cookie);
	assert_false(info.refresh_done);
	ids_sync_info_clear(&info);

	assert_int_equal(ids_sync_info_decode(&BV(delete_cookie), &info), 0);
	assert_int_equal(info.kind, IDS_SYNC_INFO_REFRESH_DELETE);
	assert_string_equal(info.cookie->bv_val, "xyz");
	assert_true(info.refresh_done); /* DEFAULT TRUE */
	ids_sync_info_clear(&info);

	/* the two deletes of the refint experiment in docs/changes.md */
	assert_int_equal(ids_sync_info_decode(&BV(id_set), &info), 0);
	assert_int_equal(info.kind, IDS_SYNC_INFO_ID_SET);
	assert_string_equal(info.cookie->bv_val, "q");
	assert_true(info.refresh_deletes);
	assert_int_equal(info.nuuids, 2);
	assert_string_equal(info.uuids[0], "d69be06e-85e0-1041-8335-9bc4fe00601a");
	assert_string_equal(info.uuids[1], "d69c0954-85e0-1041-8337-9bc4fe00601a");
	ids_sync_info_clear(&info);

	assert_int_equal(ids_sync_info_decode(&BV(id_set_present), &info), 0);
	assert_false(info.refresh_deletes); /* DEFAULT FALSE: these are present */
	assert_int_equal(info.nuuids, 1);
	assert_string_equal(info.uuids[0], "00000000-0000-0000-0000-000000000001");
	ids_sync_info_clear(&info);
}

/* What a broken or hostile server could send: refused, nothing leaked
 * (the ASan run checks the latter). */
static void test_malformed(void **state)
{
	(void)state;
	static const unsigned char short_uuid[] = {0x30, 0x14, 0x0a, 0x01, 0x01, 0x04, 0x0f, 0, 0, 0, 0, 0,
						   0,	 0,    0,    0,	   0,	 0,    0,    0, 0, 0, 0};
	static const unsigned char bad_state[] = {0x30, 0x15, 0x0a, 0x01, 0x07, 0x04, 0x10, 0, 0, 0, 0, 0,
						  0,	0,    0,    0,	  0,	0,    0,    0, 0, 0, 0};
	static const unsigned char truncated[] = {0x30, 0x15, 0x0a, 0x01, 0x01, 0x04, 0x10, 0xd6};
	static const unsigned char unknown_choice[] = {0xa4, 0x00};
	static const unsigned char id_set_no_set[] = {0xa3, 0x03, 0x01, 0x01, 0xff};
	static const unsigned char id_set_bad_uuid[] = {0xa3, 0x0a, 0x01, 0x01, 0xff, 0x31,
							0x05, 0x04, 0x03, 0x01, 0x02, 0x03};
	static const unsigned char done_not_seq[] = {0x04, 0x01, 'x'};
	enum ids_sync_state st;
	char uuid[IDS_SYNC_UUID_TEXT];
	struct berval *cookie = NULL;
	struct ids_sync_info info;
	bool deletes;
	assert_int_equal(ids_sync_state_decode(&BV(short_uuid), &st, uuid, &cookie), IDS_E_PROTOCOL);
	assert_int_equal(ids_sync_state_decode(&BV(bad_state), &st, uuid, &cookie), IDS_E_PROTOCOL);
	assert_int_equal(ids_sync_state_decode(&BV(truncated), &st, uuid, &cookie), IDS_E_PROTOCOL);
	assert_int_equal(ids_sync_info_decode(&BV(unknown_choice), &info), IDS_E_PROTOCOL);
	assert_int_equal(ids_sync_info_decode(&BV(id_set_no_set), &info), IDS_E_PROTOCOL);
	assert_int_equal(ids_sync_info_decode(&BV(id_set_bad_uuid), &info), IDS_E_PROTOCOL);
	assert_int_equal(ids_sync_done_decode(&BV(done_not_seq), &cookie, &deletes), IDS_E_PROTOCOL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_encode), cmocka_unit_test(test_state_decode),
	    cmocka_unit_test(test_done_decode),	   cmocka_unit_test(test_info_decode),
	    cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests_name("ldap: syncrepl values", tests, NULL, NULL);
}
