/* ctest_store_common.h — what the store's integration tests share: the
 * throwaway database (one per test binary), a superuser connection to
 * seed and inspect it, and a store opened on a given schema.
 *
 * The PostgreSQL comes from tests/harness/pg.sh (IDS_TEST_PG_CONNINFO).
 * Without it a test binary skips (exit 77), or fails under CI=true. */
#ifndef CTEST_STORE_COMMON_H
#define CTEST_STORE_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "ids/config.h"
#include "ids/store.h"

static char g_dbname[64];
static char *g_conninfo; /* the test database, as superuser */
static PGconn *g_db;	 /* superuser connection to the test database */

/* Exit code for "no server here": 77 (skip), or a failure under CI. */
static int no_server(const char *why)
{
	const char *ci = getenv("CI");
	if (ci && strcmp(ci, "true") == 0) {
		fprintf(stderr, "FAIL: %s (CI=true: the harness must provide PostgreSQL)\n", why);
		return 1;
	}
	fprintf(stderr, "SKIP: %s (start tests/harness/pg.sh and source pg.env)\n", why);
	return 77;
}

/* Runs sql (with text params) on conn; fails the test unless it works.
 * Without parameters, sql may hold several statements. */
static PGresult *q_on(PGconn *conn, const char *sql, int n, const char *const *p)
{
	PGresult *res = n ? PQexecParams(conn, sql, n, NULL, p, NULL, NULL, 0) : PQexec(conn, sql);
	ExecStatusType s = PQresultStatus(res);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		fail_msg("SQL failed: %s\n  %s", PQresultErrorMessage(res), sql);
	return res;
}

/* Superuser statement on the test database, result thrown away. */
static void sql(const char *sql_text)
{
	PQclear(q_on(g_db, sql_text, 0, NULL));
}

/* The first column of the first row, as a new string ("<null>" for NULL,
 * "<none>" when there is no row). */
static char *sql_val(const char *sql_text, int n, const char *const *p)
{
	PGresult *res = q_on(g_db, sql_text, n, p);
	char *v = strdup(PQntuples(res) == 0	  ? "<none>"
			 : PQgetisnull(res, 0, 0) ? "<null>"
						  : PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/* Asserts that a query's single value equals `want`; the query's text
 * parameters follow it, ended by NULL (so no parameter can be NULL). */
static void assert_sql_f(const char *file, int line, const char *want, const char *text, ...)
{
	const char *p[16];
	int n = 0;
	va_list ap;
	va_start(ap, text);
	for (const char *v; n < 16 && (v = va_arg(ap, const char *)) != NULL;)
		p[n++] = v;
	va_end(ap);
	char *got = sql_val(text, n, p);
	if (strcmp(got, want) != 0) {
		print_error("%s:%d: %s\n  got:  \"%s\"\n  want: \"%s\"\n", file, line, text, got, want);
		free(got);
		fail();
	}
	free(got);
}
#define assert_sql(want, ...) assert_sql_f(__FILE__, __LINE__, want, __VA_ARGS__, (const char *)NULL)

/* Points the superuser connection at a schema (quoted by the server). */
static void use_schema(const char *schema)
{
	const char *p[] = {schema};
	PQclear(q_on(g_db, "SELECT set_config('search_path', quote_ident($1), false)", 1, p));
}

/* A config that only has what the store reads. */
static void make_cfg(struct ids_config *cfg, const char *conninfo, const char *schema, char *password)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->database.conninfo = (char *)conninfo;
	cfg->database.schema = (char *)schema;
	cfg->database.password = password;
	cfg->database.migrate_auto = true;
}

/* Opens (and migrates) a store on `schema` of the test database. */
static struct ids_store *open_store(const char *schema, bool migrate)
{
	struct ids_config cfg;
	struct ids_error e = {0};
	struct ids_store *st = NULL;
	make_cfg(&cfg, g_conninfo, schema, NULL);
	int r = ids_store_open(&cfg, &st, &e);
	if (r < 0)
		fail_msg("ids_store_open: %s", ids_error_text(&e));
	if (migrate && ids_store_migrate(st, true, NULL, NULL, &e) < 0)
		fail_msg("ids_store_migrate: %s", ids_error_text(&e));
	ids_error_clear(&e);
	return st;
}

/* Creates the binary's database (t_store_<tag>_<pid>) and connects to it.
 * Returns 0, or the exit code main should return. */
static int db_setup(const char *tag)
{
	const char *base = getenv("IDS_TEST_PG_CONNINFO");
	if (!base || !*base)
		return no_server("IDS_TEST_PG_CONNINFO is not set");
	PGconn *admin = PQconnectdb(base);
	if (PQstatus(admin) != CONNECTION_OK) {
		fprintf(stderr, "%s", PQerrorMessage(admin));
		PQfinish(admin);
		return no_server("cannot connect to IDS_TEST_PG_CONNINFO");
	}
	PQclear(PQexec(admin, "SET client_min_messages TO warning"));
	snprintf(g_dbname, sizeof(g_dbname), "t_store_%s_%ld", tag, (long)getpid());
	char stmt[160];
	snprintf(stmt, sizeof(stmt), "DROP DATABASE IF EXISTS %s", g_dbname);
	PQclear(PQexec(admin, stmt));
	snprintf(stmt, sizeof(stmt), "CREATE DATABASE %s", g_dbname);
	PGresult *res = PQexec(admin, stmt);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(admin);
	if (!ok)
		return 1;
	/* later keywords win in a conninfo string */
	size_t n = strlen(base) + strlen(g_dbname) + 16;
	g_conninfo = malloc(n);
	snprintf(g_conninfo, n, "%s dbname=%s", base, g_dbname);
	g_db = PQconnectdb(g_conninfo);
	if (PQstatus(g_db) != CONNECTION_OK) {
		fprintf(stderr, "%s", PQerrorMessage(g_db));
		return 1;
	}
	PQclear(PQexec(g_db, "SET client_min_messages TO warning"));
	return 0;
}

static void db_teardown(void)
{
	PQfinish(g_db);
	g_db = NULL;
	const char *base = getenv("IDS_TEST_PG_CONNINFO");
	PGconn *admin = PQconnectdb(base);
	char stmt[160];
	snprintf(stmt, sizeof(stmt), "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_dbname);
	PQclear(PQexec(admin, stmt));
	PQfinish(admin);
	free(g_conninfo);
	g_conninfo = NULL;
}

#endif
