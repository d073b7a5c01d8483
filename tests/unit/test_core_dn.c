/* test_core_dn.c — DN normalization (RFC 4514) and filter escaping
 * (RFC 4515).  Expected strings are written from the RFCs and the
 * canonical form of snapshot.h: lower-case ASCII, no insignificant spaces,
 * only the required characters escaped, always as \XX upper-case hex. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ids/dn.h"

struct dn_case {
	const char *in;
	const char *want;
};

static const struct dn_case good[] = {
    /* the brief's example: escaped comma, space before the separator */
    {"CN=Novák\\, Jan , OU=People,DC=Corp,DC=Example", "cn=novák\\2C jan,ou=people,dc=corp,dc=example"},
    {"cn=novák\\2c jan,ou=people,dc=corp,dc=example", "cn=novák\\2C jan,ou=people,dc=corp,dc=example"},
    /* spaces around every separator */
    {"  cn = John Smith ,  dc = Example  ", "cn=john smith,dc=example"},
    {"cn=Jan  Novak", "cn=jan  novak"}, /* inner spaces are significant */
    /* escaped leading / trailing spaces stay, as \20 */
    {"cn=\\ lead", "cn=\\20lead"},
    {"cn=trail\\ ", "cn=trail\\20"},
    {"cn=trail\\  ", "cn=trail\\20"}, /* the unescaped one after it goes */
    {"cn=a\\ \\ ", "cn=a \\20"},
    {"cn=\\20", "cn=\\20"},
    /* '#' only needs escaping at the start */
    {"cn=\\#hash", "cn=\\23hash"},
    {"cn=mid#hash", "cn=mid#hash"},
    /* the other specials, from both escape forms */
    {"cn=a\\+b", "cn=a\\2Bb"},
    {"cn=a\\2bb", "cn=a\\2Bb"},
    {"cn=q\\\"x", "cn=q\\22x"},
    {"cn=back\\\\slash", "cn=back\\5Cslash"},
    {"cn=lt\\<gt\\>semi\\;", "cn=lt\\3Cgt\\3Esemi\\3B"},
    {"cn=nul\\00x", "cn=nul\\00x"},
    /* '=' needs no escape: both spellings become the bare one */
    {"cn=a\\=b", "cn=a=b"},
    {"cn=a=b", "cn=a=b"},
    /* hex-escaped UTF-8 decodes; non-ASCII letters keep their case */
    {"cn=\\c3\\a1", "cn=á"},
    {"CN=ÁBC", "cn=Ábc"},
    /* an escaped letter is a letter: lower-cased like the rest */
    {"cn=\\41b", "cn=ab"},
    /* multi-valued RDNs are sorted */
    {"UID=jdoe+CN=John Doe,DC=x", "cn=john doe+uid=jdoe,dc=x"},
    {"cn=John Doe + uid=jdoe,dc=x", "cn=john doe+uid=jdoe,dc=x"},
    /* numeric OIDs, hex strings (not decoded, hex lower-cased) */
    {"2.5.4.3=Foo,DC=X", "2.5.4.3=foo,dc=x"},
    {"CN=#0402486A", "cn=#0402486a"},
    {"cn=#0402486a , dc=x", "cn=#0402486a,dc=x"},
    /* types may carry digits and hyphens */
    {"x-Custom-1=V", "x-custom-1=v"},
    /* the empty DN and empty values are well-formed */
    {"", ""},
    {"   ", ""},
    {"cn=", "cn="},
    {"cn=,dc=x", "cn=,dc=x"},
};

static const char *const bad[] = {
    "cn",			/* no '=' */
    "=x",			/* no type */
    "cn=a,",			/* empty last RDN */
    ",cn=a",			/* empty first RDN */
    "cn=a,,dc=b",		/* empty RDN */
    "cn=a+",			/* empty AVA */
    "cn=a\\",			/* dangling escape */
    "cn=a\\4",			/* half a hex pair */
    "cn=a\\zz",			/* not an escapable character */
    "cn=a;dc=b",		/* RFC 1779 separator: must be escaped */
    "cn=a\"b",			/* unescaped quote */
    "cn=<x>",			/* unescaped angle brackets */
    "c n=x",			/* space inside a type */
    "1.=x",			/* empty OID arc */
    "1..2=x",	  "-cn=x",	/* a descr starts with a letter */
    "cn=#",			/* empty hex string */
    "cn=#0",			/* odd hex digits */
    "cn=#zz",	  "cn=#0102 x", /* junk after a hex string */
    "cn=\\ff",			/* decodes to invalid UTF-8 */
    "cn=\xff",			/* raw invalid UTF-8 */
    "cn=a\\2",
};

static void test_normalize_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *out = (char *)0x1;
		int r = ids_dn_normalize(good[i].in, strlen(good[i].in), &out);
		if (r != 0)
			fail_msg("\"%s\": returned %d", good[i].in, r);
		if (strcmp(out, good[i].want) != 0)
			fail_msg("\"%s\": got \"%s\", want \"%s\"", good[i].in, out, good[i].want);
		/* normalizing is idempotent: the canonical form is its own form */
		char *again = NULL;
		assert_int_equal(ids_dn_normalize(out, strlen(out), &again), 0);
		assert_string_equal(again, good[i].want);
		free(again);
		free(out);
	}
}

static void test_malformed(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *out = (char *)0x1;
		int r = ids_dn_normalize(bad[i], strlen(bad[i]), &out);
		if (r != -EINVAL)
			fail_msg("\"%s\": returned %d, want -EINVAL", bad[i], r);
		/* ret_* is written only on success */
		assert_ptr_equal(out, (char *)0x1);
	}
}

static void test_nul_byte_in_input(void **state)
{
	(void)state;
	/* a raw NUL inside the (ptr, len) value is not a DN */
	static const char dn[] = "cn=a\0b,dc=x";
	char *out = NULL;
	assert_int_equal(ids_dn_normalize(dn, sizeof(dn) - 1, &out), -EINVAL);
	assert_null(out);
}

static void test_length_not_nul(void **state)
{
	(void)state;
	/* only n bytes are read: the tail after them is ignored */
	char *out = NULL;
	assert_int_equal(ids_dn_normalize("CN=A,DC=B,garbage", 9, &out), 0);
	assert_string_equal(out, "cn=a,dc=b");
	free(out);
}

static void test_same_entry_same_string(void **state)
{
	(void)state;
	const char *spellings[] = {
	    "CN=Novák\\, Jan , OU=People,DC=Corp,DC=Example",
	    "cn=Novák\\2C Jan,ou=People,dc=corp,dc=example",
	    "cn = NOVáK\\2c JAN ,OU = people , dc=CORP,dc=EXAMPLE",
	};
	char *first = NULL;
	assert_int_equal(ids_dn_normalize(spellings[0], strlen(spellings[0]), &first), 0);
	for (size_t i = 1; i < 3; i++) {
		char *o = NULL;
		assert_int_equal(ids_dn_normalize(spellings[i], strlen(spellings[i]), &o), 0);
		assert_string_equal(o, first);
		free(o);
	}
	free(first);
}

static void test_filter_escape(void **state)
{
	(void)state;
	struct ids_buf b = {0};
	assert_int_equal(ids_dn_filter_escape(&b, "a*b(c)d\\e", 9), 0);
	assert_string_equal(b.p, "a\\2ab\\28c\\29d\\5ce");

	ids_buf_reset(&b);
	assert_int_equal(ids_dn_filter_escape(&b, "x\0y", 3), 0);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.p, "x\\00y", 5);

	/* UTF-8 passes; a stray byte that is no character is escaped */
	ids_buf_reset(&b);
	assert_int_equal(ids_dn_filter_escape(&b, "Novák", strlen("Novák")), 0);
	assert_string_equal(b.p, "Novák");
	ids_buf_reset(&b);
	assert_int_equal(ids_dn_filter_escape(&b,
					      "a\xff"
					      "b\xc3",
					      4),
			 0);
	assert_string_equal(b.p, "a\\ffb\\c3");

	/* appends to what is there; an empty value is still a string */
	ids_buf_reset(&b);
	assert_int_equal(ids_buf_puts(&b, "(uid="), 0);
	assert_int_equal(ids_dn_filter_escape(&b, "j*", 2), 0);
	assert_string_equal(b.p, "(uid=j\\2a");
	ids_buf_free(&b);
	assert_int_equal(ids_dn_filter_escape(&b, "", 0), 0);
	assert_non_null(b.p);
	assert_string_equal(b.p, "");
	ids_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalize_table),	   cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_nul_byte_in_input),	   cmocka_unit_test(test_length_not_nul),
	    cmocka_unit_test(test_same_entry_same_string), cmocka_unit_test(test_filter_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
