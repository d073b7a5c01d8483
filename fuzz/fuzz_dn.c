/* fuzz_dn.c — libFuzzer target: DN normalization and LDAP filter escaping
 * (core/dn.c), the two places where a directory value is parsed or made
 * safe for a filter.
 *
 * Besides "no crash, no leak, no undefined behaviour", it checks the
 * properties the rest of the program relies on:
 * - normalizing is idempotent: membership resolution compares a member
 *   value (any spelling) with an entry's own DN (already canonical), so a
 *   canonical DN must normalize to itself;
 * - an escaped filter value contains no `*`, `(`, `)`, NUL or bare `\`,
 *   and decoding the escapes gives back the input byte for byte (the
 *   filter matches exactly that value, nothing more). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/dn.h"
#include "ids/util.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A property violated: report it the way libFuzzer reports a crash. */
static void broken(const char *what)
{
	fprintf(stderr, "fuzz_dn: %s\n", what);
	abort();
}

static void check_dn(const uint8_t *data, size_t size)
{
	char *once = NULL, *twice = NULL;
	if (ids_dn_normalize((const char *)data, size, &once) < 0)
		return;
	if (!once)
		broken("normalize succeeded without a result");
	if (ids_dn_normalize(once, strlen(once), &twice) < 0)
		broken("a normalized DN does not parse again");
	if (strcmp(once, twice) != 0) {
		fprintf(stderr, "once:  [%s]\ntwice: [%s]\n", once, twice);
		broken("normalization is not idempotent");
	}
	free(once);
	free(twice);
}

static void check_escape(const uint8_t *data, size_t size)
{
	struct ids_buf b = {0};
	if (ids_dn_filter_escape(&b, (const char *)data, size) < 0) {
		ids_buf_free(&b);
		return;
	}
	/* decode while checking that nothing special is left bare */
	size_t j = 0;
	for (size_t i = 0; i < b.len; i++) {
		unsigned char c = (unsigned char)b.p[i];
		if (c == '*' || c == '(' || c == ')' || c == '\0')
			broken("a filter metacharacter left unescaped");
		if (c == '\\') {
			if (i + 2 >= b.len)
				broken("a backslash without two hex digits");
			int hi = hexval(b.p[i + 1]), lo = hexval(b.p[i + 2]);
			if (hi < 0 || lo < 0)
				broken("a backslash without two hex digits");
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		}
		if (j >= size || c != data[j])
			broken("the escaped value does not decode to the input");
		j++;
	}
	if (j != size)
		broken("the escaped value is shorter than the input");
	ids_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_dn(data, size);
	check_escape(data, size);
	return 0;
}
