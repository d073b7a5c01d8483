/* test_conn_dirsync.c — AD's DirSync control (connectors/dirsync_codec.c):
 * the request's encoding, the response's decoding, the loop over the
 * "more data" flag (Samba ignores DirSync's paging, so the loop is only
 * exercised here), and the stored cursor.
 *
 * Expected bytes are written by hand from MS-ADTS's ASN.1; the cookie in
 * the responses is one Samba 4.17's DC returned (`ldapsearch -E
 * dirSync=...` printed it in base64), so neither side of a check is
 * this code's output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../connectors/ldap_dirsync.h"
#include "ids/error.h"
#include "ids/util.h"

#define BV(a) ((struct berval){.bv_len = sizeof(a), .bv_val = (char *)(a)})

static void assert_bytes(const struct berval *got, const unsigned char *want, size_t n)
{
	assert_int_equal(got->bv_len, n);
	assert_memory_equal(got->bv_val, want, n);
}

/* INCREMENTAL_VALUES is the INTEGER's sign bit: four bytes, 0x80 first. */
static void test_request_encode(void **state)
{
	(void)state;
	static const unsigned char both[] = {0x30, 0x0d, 0x02, 0x04, 0x80, 0x00, 0x00, 0x01,
					     0x02, 0x01, 0x00, 0x04, 0x02, 'a',	 'b'};
	static const unsigned char incr[] = {0x30, 0x0b, 0x02, 0x04, 0x80, 0x00, 0x00,
					     0x00, 0x02, 0x01, 0x00, 0x04, 0x00};
	static const unsigned char sec[] = {0x30, 0x0a, 0x02, 0x01, 0x01, 0x02,
					    0x03, 0x01, 0x00, 0x00, 0x04, 0x00};
	struct berval c = {.bv_len = 2, .bv_val = (char *)"ab"}, v = {0};
	assert_int_equal(ids_dirsync_request_encode(
			     IDS_DIRSYNC_INCREMENTAL_VALUES | IDS_DIRSYNC_OBJECT_SECURITY, 0, &c, &v),
			 0);
	assert_bytes(&v, both, sizeof(both));
	ber_memfree(v.bv_val);
	/* no cookie: an empty OCTET STRING, as the control requires one */
	assert_int_equal(ids_dirsync_request_encode(IDS_DIRSYNC_INCREMENTAL_VALUES, 0, NULL, &v), 0);
	assert_bytes(&v, incr, sizeof(incr));
	ber_memfree(v.bv_val);
	assert_int_equal(ids_dirsync_request_encode(IDS_DIRSYNC_OBJECT_SECURITY, 65536, NULL, &v), 0);
	assert_bytes(&v, sec, sizeof(sec));
	ber_memfree(v.bv_val);
}

/* The start of a cookie Samba returned: "MSDS", version 3, … */
static const unsigned char samba_cookie[] = {0x4d, 0x53, 0x44, 0x53, 0x03, 0x00, 0x00, 0x00,
					     0x00, 0x02, 0x31, 0xb7, 0xb5, 0x85, 0xdd, 0x01};

/* A response value by hand: SEQUENCE { more, 0, cookie } (cookie of n
 * bytes of samba_cookie, or of `other` when given). */
static struct berval response(unsigned char *buf, int more, size_t n, const unsigned char *other)
{
	size_t i = 0;
	buf[i++] = 0x30;
	buf[i++] = (unsigned char)(8 + n);
	buf[i++] = 0x02, buf[i++] = 0x01, buf[i++] = (unsigned char)more;
	buf[i++] = 0x02, buf[i++] = 0x01, buf[i++] = 0x00;
	buf[i++] = 0x04, buf[i++] = (unsigned char)n;
	memcpy(buf + i, other ? other : samba_cookie, n);
	return (struct berval){.bv_len = i + n, .bv_val = (char *)buf};
}

static void test_response_decode(void **state)
{
	(void)state;
	unsigned char buf[64];
	struct berval *c = NULL;
	bool more = false;
	struct berval v = response(buf, 1, sizeof(samba_cookie), NULL);
	assert_int_equal(ids_dirsync_response_decode(&v, &more, &c), 0);
	assert_true(more);
	assert_bytes(c, samba_cookie, sizeof(samba_cookie));
	ids_dirsync_cookie_free(c);
	v = response(buf, 0, 0, NULL);
	assert_int_equal(ids_dirsync_response_decode(&v, &more, &c), 0);
	assert_false(more);
	assert_int_equal(c->bv_len, 0);
	ids_dirsync_cookie_free(c);
	/* malformed: truncated, not a sequence, empty */
	v = response(buf, 0, 4, NULL);
	v.bv_len -= 2;
	assert_int_equal(ids_dirsync_response_decode(&v, &more, &c), IDS_E_PROTOCOL);
	assert_null(c);
	static const unsigned char octets[] = {0x04, 0x01, 'x'};
	v = BV(octets);
	assert_int_equal(ids_dirsync_response_decode(&v, &more, &c), IDS_E_PROTOCOL);
	v = (struct berval){0};
	assert_int_equal(ids_dirsync_response_decode(&v, &more, &c), IDS_E_PROTOCOL);
}

/* The loop: "more data" asks for another round from the new cookie; the
 * last round's cookie is the one kept.  A round without the control, a
 * "more" with an empty cookie, or with the same cookie and no entries
 * (it would never end), or past max_rounds, stops it. */
static void test_loop(void **state)
{
	(void)state;
	unsigned char b1[64], b2[64], b3[64], b4[64];
	static const unsigned char c2[] = {'s', 'e', 'c', 'o', 'n', 'd'}, c3[] = {'l', 'a', 's', 't'};
	struct ids_dirsync_loop l = {0};
	struct berval r1 = response(b1, 1, sizeof(samba_cookie), NULL), r2 = response(b2, 1, 6, c2),
		      r3 = response(b3, 0, 4, c3);
	assert_int_equal(ids_dirsync_loop_step(&l, &r1, 1000), IDS_DIRSYNC_AGAIN);
	assert_bytes(l.cookie, samba_cookie, sizeof(samba_cookie));
	assert_int_equal(ids_dirsync_loop_step(&l, &r2, 1000), IDS_DIRSYNC_AGAIN);
	assert_bytes(l.cookie, c2, 6);
	/* the same cookie again after a round with entries: fine */
	assert_int_equal(ids_dirsync_loop_step(&l, &r2, 3), IDS_DIRSYNC_AGAIN);
	assert_int_equal(ids_dirsync_loop_step(&l, &r3, 7), IDS_DIRSYNC_DONE);
	assert_bytes(l.cookie, c3, 4);
	assert_int_equal(l.rounds, 4);
	assert_int_equal(l.entries, 2010);
	ids_dirsync_loop_clear(&l);
	assert_null(l.cookie);

	/* no control: not a DirSync answer */
	assert_int_equal(ids_dirsync_loop_step(&l, NULL, 5), IDS_E_PROTOCOL);
	/* "more" with an empty cookie */
	struct berval e = response(b4, 1, 0, NULL);
	assert_int_equal(ids_dirsync_loop_step(&l, &e, 5), IDS_E_PROTOCOL);
	/* "more", the same cookie, nothing returned: it would never end */
	assert_int_equal(ids_dirsync_loop_step(&l, &r2, 0), IDS_DIRSYNC_AGAIN);
	assert_int_equal(ids_dirsync_loop_step(&l, &r2, 0), IDS_E_PROTOCOL);
	assert_bytes(l.cookie, c2, 6); /* the last good cookie stays */
	ids_dirsync_loop_clear(&l);
	/* a bound on the rounds */
	l = (struct ids_dirsync_loop){.max_rounds = 2};
	assert_int_equal(ids_dirsync_loop_step(&l, &r1, 1), IDS_DIRSYNC_AGAIN);
	assert_int_equal(ids_dirsync_loop_step(&l, &r2, 1), IDS_E_LIMIT);
	ids_dirsync_loop_clear(&l);
}

static void test_cursor(void **state)
{
	(void)state;
	static const char want[] = "idsyncd-dirsync/1 00000000deadbeef\ndc1.idsync.test\n"
				   "2593a9bb-a5ba-4a4e-9ee3-28476fd4eb46\n1765000000\n5:MS\nD\0\n";
	const struct ids_dirsync_cursor c = {.fingerprint = 0xdeadbeef,
					     .server = "dc1.idsync.test",
					     .invocation_id = "2593a9bb-a5ba-4a4e-9ee3-28476fd4eb46",
					     .issued = 1765000000,
					     .cookie = {5, (char *)"MS\nD\0"}};
	unsigned char *t = NULL;
	size_t n = 0;
	assert_int_equal(ids_dirsync_cursor_encode(&c, &t, &n), 0);
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(t, want, n);
	struct ids_dirsync_cursor d;
	char *srv = NULL, *inv = NULL;
	assert_int_equal(ids_dirsync_cursor_decode(t, n, &d, &srv, &inv), 0);
	assert_int_equal(d.fingerprint, 0xdeadbeef);
	assert_string_equal(d.server, "dc1.idsync.test");
	assert_string_equal(d.invocation_id, c.invocation_id);
	assert_int_equal(d.issued, 1765000000);
	assert_int_equal(d.cookie.bv_len, 5);
	assert_memory_equal(d.cookie.bv_val, "MS\nD\0", 5);
	free(srv);
	free(inv);
	/* damaged: cut short, a byte more, another magic, a syncrepl cursor */
	assert_int_equal(ids_dirsync_cursor_decode(t, n - 1, &d, &srv, &inv), -EINVAL);
	assert_null(srv);
	unsigned char more[128];
	memcpy(more, t, n);
	more[n] = 'x';
	assert_int_equal(ids_dirsync_cursor_decode(more, n + 1, &d, &srv, &inv), -EINVAL);
	more[16] = '2';
	assert_int_equal(ids_dirsync_cursor_decode(more, n, &d, &srv, &inv), -EINVAL);
	static const char sr[] = "idsyncd-syncrepl/1 00000000deadbeef\n0:\n0:\n";
	assert_int_equal(ids_dirsync_cursor_decode((const unsigned char *)sr, strlen(sr), &d, &srv, &inv),
			 -EINVAL);
	free(t);
	const struct ids_dirsync_cursor bad = {.server = "a\nb", .invocation_id = "x"};
	assert_int_equal(ids_dirsync_cursor_encode(&bad, &t, &n), -EINVAL);
}

static void test_guid_term(void **state)
{
	(void)state;
	static const unsigned char g[16] = {0x9d, 0x96, 0xd9, 0x2a, 0x18, 0x9d, 0x98, 0x47,
					    0x94, 0x22, 0xe9, 0x57, 0xdc, 0xb9, 0x44, 0x00};
	struct ids_buf b = {0};
	struct berval v = BV(g);
	assert_int_equal(ids_dirsync_guid_term(&b, &v), 0);
	assert_string_equal(b.p,
			    "(objectGUID=\\9d\\96\\d9\\2a\\18\\9d\\98\\47\\94\\22\\e9\\57\\dc\\b9\\44\\00)");
	v.bv_len = 15;
	assert_int_equal(ids_dirsync_guid_term(&b, &v), -EINVAL);
	ids_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_encode), cmocka_unit_test(test_response_decode),
	    cmocka_unit_test(test_loop),	   cmocka_unit_test(test_cursor),
	    cmocka_unit_test(test_guid_term),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
