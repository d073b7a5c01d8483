/* test_daemon_log.c — daemon/log.c's stderr lines: one line per event,
 * control bytes written as \xNN, and bytes that are not UTF-8 too (a
 * server's message quoting broken bytes), the characters kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ids/log.h"
#include "ids/util.h"

/* What ids_log wrote to stderr for one event: stderr goes to a temporary
 * file for the call. */
static char *logged(const char *connector, const char *msg)
{
	FILE *f = tmpfile();
	assert_non_null(f);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	ids_log(IDS_LOG_WARNING, connector, 0, NULL, "%s", msg);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	static char buf[4096];
	rewind(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void test_not_utf8(void **state)
{
	(void)state;
	ids_log_setup(IDS_LOG_DEBUG, IDS_LOGT_STDERR);
	char *line = logged("corp", "near 'caf\xc3\xa9 \xff' and \xe2\x82");
	assert_true(ids_utf8_valid(line, strlen(line)));
	assert_non_null(strstr(line, " warning corp: near 'caf\xc3\xa9 \\xff' and \\xe2\\x82\n"));
	/* control bytes as before: a newline joins, an escape is spelled out */
	line = logged("corp", "a\n\tb \x1b[2J");
	assert_non_null(strstr(line, " warning corp: a b \\x1b[2J\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_not_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
