/* main.c — the command line of service.md: parse the global options and
 * the command, load the configuration, and hand over to sync/status/...
 * The only place that exits. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids/config.h"
#include "ids/connector.h"
#include "ids/log.h"
#include "ids/output.h"
#include "ids/store.h"
#include "ids/sync.h"

#define DEFAULT_CONFIG "/etc/idsyncd/idsyncd.yaml"

static const char usage_text[] =
    "Usage:\n"
    "  idsyncd [-c FILE] run                          the daemon, in the foreground\n"
    "  idsyncd [-c FILE] sync  [--connector NAME]... [--dry-run] [--allow-mass-deactivation]\n"
    "                          [--format text|json]\n"
    "  idsyncd [-c FILE] plan  [--connector NAME]... [--format text|json]\n"
    "  idsyncd [-c FILE] check-config\n"
    "  idsyncd [-c FILE] migrate\n"
    "  idsyncd [-c FILE] status [--format text|json]\n"
    "  idsyncd [-c FILE] retire NAME [--allow-mass-deactivation]\n"
    "  idsyncd --version | --help | COMMAND --help\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
    "\n"
    "Exit codes: 0 ok, 1 a connector or the database failed, 2 usage,\n"
    "3 a safety guard aborted a run, 4 locked by another instance, 78 configuration error.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "idsyncd: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry 'idsyncd --help'.\n");
	va_end(ap);
	return IDS_EXIT_USAGE;
}

/* Loads the config or prints why not. */
static int load_config(const char *path, struct ids_config **ret)
{
	struct ids_error e = {0};
	int r = ids_config_load(path, ret, &e);
	if (r < 0) {
		fprintf(stderr, "%s\n", ids_error_text(&e));
		ids_error_clear(&e);
		return IDS_EXIT_CONFIG;
	}
	ids_log_setup((*ret)->log.level, (*ret)->log.target);
	return 0;
}

/* Connects and brings the schema up to date (migrate: auto) or checks it. */
static int open_store(const struct ids_config *cfg, bool migrate, struct ids_store **ret)
{
	struct ids_error e = {0};
	int r = ids_store_open(cfg, ret, &e);
	if (r >= 0 && migrate)
		r = ids_store_migrate(*ret, cfg->database.migrate_auto, NULL, NULL, &e);
	if (r < 0) {
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "database: %s", ids_error_text(&e));
		ids_error_clear(&e);
		ids_store_close(*ret);
		*ret = NULL;
		return IDS_EXIT_FAILED;
	}
	return 0;
}

struct cmd_opts {
	struct ids_strv connectors;
	bool dry_run, allow_mass;
	enum ids_out_format format;
	const char *positional;
};

/* Options after the command.  `allowed` lists the long options this
 * command takes, as a string of their short letters. */
static int parse_cmd_opts(int argc, char **argv, const char *cmd, const char *allowed, struct cmd_opts *co)
{
	static const struct option longopts[] = {
	    {"connector", required_argument, NULL, 'C'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"allow-mass-deactivation", no_argument, NULL, 'M'},
	    {"format", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (c == '?' || !strchr(allowed, c))
			return usage_error("unknown option for this command: %s", argv[optind - 1]);
		switch (c) {
		case 'C':
			if (ids_strv_push(&co->connectors, optarg) < 0)
				return IDS_EXIT_FAILED;
			break;
		case 'n': co->dry_run = true; break;
		case 'M': co->allow_mass = true; break;
		case 'f':
			if (strcmp(optarg, "text") == 0)
				co->format = IDS_FMT_TEXT;
			else if (strcmp(optarg, "json") == 0)
				co->format = IDS_FMT_JSON;
			else
				return usage_error("--format: expected text or json, got \"%s\"", optarg);
			break;
		}
	}
	if (strcmp(cmd, "retire") == 0) {
		if (optind != argc - 1)
			return usage_error("%s: expected exactly one connector name", cmd);
		co->positional = argv[optind];
	} else if (optind != argc) {
		return usage_error("unexpected argument: %s", argv[optind]);
	}
	return 0;
}

static int cmd_check_config(const char *path)
{
	struct ids_config *cfg = NULL;
	int r = load_config(path, &cfg);
	if (r)
		return r;
	int code = IDS_EXIT_OK;
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const struct ids_connector_cfg *cc = &cfg->connectors[i];
		size_t nrules = 0;
		for (size_t j = 0; j < cfg->nrules; j++)
			nrules += ids_rule_for_connector(&cfg->rules[j], cc->name);
		printf("connector %s: type %s, company %s, %zu rules", cc->name, ids_conn_type_name(cc->type),
		       cc->company, nrules);
		if (cc->type == IDS_CONN_LDAP)
			printf(", %s, users under %s", cc->ldap.uri.v[0], cc->ldap.users_base);
		printf("\n");
		if (!ids_connector_find(cc->type)) {
			fprintf(stderr,
				"%s:%d: connectors: type %s is not supported by this build of idsyncd\n",
				cfg->path, cc->line, ids_conn_type_name(cc->type));
			code = IDS_EXIT_CONFIG;
		}
	}
	printf("%zu rules, %zu connectors: configuration ok\n", cfg->nrules, cfg->nconnectors);

	/* Orphaned connectors need the database; a database that is not
	 * reachable does not make the configuration invalid. */
	struct ids_store *st = NULL;
	struct ids_error e = {0};
	if (ids_store_open(cfg, &st, &e) >= 0) {
		struct ids_strv names = {0};
		struct ids_orphan *o = NULL;
		size_t n = 0;
		for (size_t i = 0; i < cfg->nconnectors; i++)
			ids_strv_push(&names, cfg->connectors[i].name);
		if (ids_store_orphans(st, &names, &o, &n, &e) >= 0)
			for (size_t i = 0; i < n; i++)
				printf("orphaned: connector %s is no longer configured but owns %ld users "
				       "(%ld active); "
				       "`idsyncd retire %s` deactivates them\n",
				       o[i].source, o[i].total, o[i].active, o[i].source);
		ids_orphans_free(o, n);
		ids_strv_free(&names);
	} else {
		printf("database: not checked (%s)\n", ids_error_text(&e));
	}
	ids_error_clear(&e);
	ids_store_close(st);
	ids_config_free(cfg);
	return code;
}

static int cmd_migrate(const char *path)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	struct ids_error e = {0};
	int from = 0, to = 0;
	int r = load_config(path, &cfg);
	if (r)
		return r;
	r = open_store(cfg, false, &st);
	if (!r && ids_store_migrate(st, true, &from, &to, &e) < 0) {
		fprintf(stderr, "idsyncd: migrate: %s\n", ids_error_text(&e));
		r = IDS_EXIT_FAILED;
	} else if (!r) {
		if (from == to)
			printf("schema %s is up to date at version %d\n", cfg->database.schema, to);
		else
			printf("schema %s migrated from version %d to %d\n", cfg->database.schema, from, to);
	}
	ids_error_clear(&e);
	ids_store_close(st);
	ids_config_free(cfg);
	return r;
}

/* Prints one connector's result as the object of docs/json.md: the same
 * keys for every outcome.  The plan, when the run got that far, is the
 * JSON text sync.c asked output.c to write (sync.c prints nothing else in
 * JSON mode: a skipped run's summary line is not JSON and is left out). */
static int print_run_json(const char *connector, const struct ids_buf *out, const struct ids_sync_result *res)
{
	struct ids_buf j = {0};
	const char *plan = out->len && out->p[0] == '{' ? out->p : NULL;
	int r = ids_output_run_json(connector, res, plan, &j);
	if (r < 0)
		fprintf(stderr, "idsyncd: %s: cannot write the JSON output: %s\n", connector,
			ids_strerror(r));
	else
		fputs(j.p, stdout);
	ids_buf_free(&j);
	return r < 0 ? IDS_EXIT_FAILED : IDS_EXIT_OK;
}

static int cmd_sync(const char *path, const struct cmd_opts *co, bool plan)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	int r = load_config(path, &cfg);
	if (r)
		return r;
	for (size_t i = 0; i < co->connectors.n; i++)
		if (!ids_config_connector(cfg, co->connectors.v[i])) {
			fprintf(stderr, "idsyncd: --connector %s: no such connector in %s\n",
				co->connectors.v[i], cfg->path);
			ids_config_free(cfg);
			return IDS_EXIT_USAGE;
		}
	r = open_store(cfg, true, &st);
	if (r) {
		ids_config_free(cfg);
		return r;
	}
	struct ids_sync_opts o = {.dry_run = plan || co->dry_run,
				  .allow_mass = co->allow_mass,
				  .print_plan = plan || co->dry_run,
				  .format = co->format};
	int code = IDS_EXIT_OK;
	bool first = true;
	if (co->format == IDS_FMT_JSON)
		fputs("[", stdout);
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const struct ids_connector_cfg *cc = &cfg->connectors[i];
		if (co->connectors.n && !ids_strv_contains(&co->connectors, cc->name, false))
			continue;
		struct ids_buf out = {0};
		struct ids_sync_result res;
		ids_sync_connector(cfg, st, cc, &o, &out, &res);
		if (co->format == IDS_FMT_JSON) {
			fputs(first ? "\n" : ",\n", stdout);
			code = ids_exit_worst(code, print_run_json(cc->name, &out, &res));
			first = false;
		} else if (out.len) {
			fputs(out.p, stdout);
		}
		fflush(stdout);
		code = ids_exit_worst(code, res.exit_code);
		free(res.error);
		ids_buf_free(&out);
	}
	if (co->format == IDS_FMT_JSON)
		fputs(first ? "]\n" : "\n]\n", stdout);
	ids_store_close(st);
	ids_config_free(cfg);
	return code;
}

/* The daemon's next expected run of `connector`, NULL when none is known. */
static const struct ids_schedule_row *next_run_of(const struct ids_schedule_row *s, size_t n,
						  const char *connector)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i].connector, connector) == 0)
			return &s[i];
	return NULL;
}

/* One connector's line of the text status. */
static void status_line(struct ids_buf *b, const struct ids_run_row *w, const struct ids_schedule_row *nx)
{
	char started[32], next[32];
	ids_output_time(w->started_at, started, sizeof(started));
	ids_output_time(nx ? nx->next_at : 0, next, sizeof(next));
	ids_buf_printf(b, "%-20s %-18s run %-6lld %s", w->connector, w->status, (long long)w->id, started);
	if (w->has_counts)
		ids_buf_printf(b, "  %ld users +%ld ~%ld -%ld", w->counts.users_seen, w->counts.created,
			       w->counts.updated + w->counts.reactivated, w->counts.deactivated);
	if (nx)
		ids_buf_printf(b, "  next %s", next);
	if (w->error)
		ids_buf_printf(b, "  error: %s", w->error);
	ids_buf_putc(b, '\n');
}

static int cmd_status(const char *path, const struct cmd_opts *co)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	struct ids_error e = {0};
	struct ids_run_row *rows = NULL;
	struct ids_orphan *orph = NULL;
	struct ids_schedule_row *sched = NULL;
	size_t nrows = 0, norph = 0, nsched = 0;
	struct ids_strv names = {0};
	int r = load_config(path, &cfg);
	if (r)
		return r;
	r = open_store(cfg, false, &st);
	if (r)
		goto out;
	for (size_t i = 0; i < cfg->nconnectors; i++)
		ids_strv_push(&names, cfg->connectors[i].name);
	if (ids_store_last_runs(st, &rows, &nrows, &e) < 0 ||
	    ids_store_orphans(st, &names, &orph, &norph, &e) < 0) {
		fprintf(stderr, "idsyncd: status: %s\n", ids_error_text(&e));
		r = IDS_EXIT_FAILED;
		goto out;
	}
	/* only a running daemon records its schedule; a database an older
	 * idsyncd migrated has no table for it: then no next run is shown */
	if (ids_store_schedule_get(st, &sched, &nsched, &e) < 0) {
		sched = NULL;
		nsched = 0;
	}
	ids_error_clear(&e);
	struct ids_buf b = {0};
	for (size_t i = 0; i < nrows; i++) {
		const struct ids_run_row *w = &rows[i];
		/* a failed (or safety-aborted) last run makes the check fail,
		 * with the exit code a sync would have had (monitoring) */
		if (ids_strv_contains(&names, w->connector, false)) {
			if (strcmp(w->status, "failed") == 0)
				r = ids_exit_worst(r, IDS_EXIT_FAILED);
			else if (strncmp(w->status, "aborted_", 8) == 0)
				r = ids_exit_worst(r, IDS_EXIT_SAFETY);
		}
		/* the JSON document is written whole, below */
		if (co->format != IDS_FMT_JSON)
			status_line(&b, w, next_run_of(sched, nsched, w->connector));
	}
	if (co->format == IDS_FMT_JSON) {
		const struct ids_output_status os = {rows, nrows, &names, sched, nsched, orph, norph};
		if (ids_output_status_json(&os, &b) < 0) {
			fprintf(stderr, "idsyncd: status: out of memory\n");
			r = IDS_EXIT_FAILED;
		}
	} else {
		if (!nrows)
			ids_buf_puts(&b, "no runs recorded yet\n");
		for (size_t i = 0; i < norph; i++)
			ids_buf_printf(&b, "orphaned: %s owns %ld users (%ld active), no longer configured\n",
				       orph[i].source, orph[i].total, orph[i].active);
	}
	if (b.p)
		fputs(b.p, stdout);
	ids_buf_free(&b);
out:
	ids_strv_free(&names);
	ids_run_rows_free(rows, nrows);
	ids_orphans_free(orph, norph);
	ids_schedule_rows_free(sched, nsched);
	ids_error_clear(&e);
	ids_store_close(st);
	ids_config_free(cfg);
	return r;
}

static int cmd_retire(const char *path, const struct cmd_opts *co)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	int r = load_config(path, &cfg);
	if (r)
		return r;
	if (ids_config_connector(cfg, co->positional)) {
		fprintf(stderr,
			"idsyncd: retire %s: the connector is still configured in %s; remove it first\n",
			co->positional, cfg->path);
		ids_config_free(cfg);
		return IDS_EXIT_USAGE;
	}
	r = open_store(cfg, true, &st);
	if (!r) {
		struct ids_sync_opts o = {.allow_mass = co->allow_mass, .print_plan = true};
		struct ids_buf out = {0};
		struct ids_sync_result res;
		ids_sync_retire(cfg, st, co->positional, &o, &out, &res);
		if (out.len)
			fputs(out.p, stdout);
		r = res.exit_code;
		free(res.error);
		ids_buf_free(&out);
	}
	ids_store_close(st);
	ids_config_free(cfg);
	return r;
}

int ids_daemon_run(const char *config_path); /* daemon.c */

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	int i = 1;

	/* libldap must never read ldaprc/.ldaprc or LDAP* variables that could
	 * weaken TLS (reliability.md case 16): connectors set every option. */
	setenv("LDAPNOINIT", "1", 1);
	/* a peer that closes a TLS connection must give an error, not kill us */
	signal(SIGPIPE, SIG_IGN);
	ids_log_setup(IDS_LOG_INFO, IDS_LOGT_AUTO);

	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--version") == 0) {
			printf("idsyncd %s\n", IDSYNCD_VERSION);
			return 0;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			if (++i == argc)
				return usage_error("%s needs a file name", a);
			path = argv[i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			path = a + 9;
		} else {
			return usage_error("unknown option: %s", a);
		}
	}
	if (i == argc)
		return usage_error("%s", "no command given");
	const char *cmd = argv[i];
	int cargc = argc - i;
	char **cargv = argv + i;
	struct cmd_opts co = {0};
	int r;

	if (strcmp(cmd, "sync") == 0) {
		r = parse_cmd_opts(cargc, cargv, cmd, "CnMf", &co);
		if (!r)
			r = cmd_sync(path, &co, false);
	} else if (strcmp(cmd, "plan") == 0) {
		r = parse_cmd_opts(cargc, cargv, cmd, "Cf", &co);
		if (!r)
			r = cmd_sync(path, &co, true);
	} else if (strcmp(cmd, "check-config") == 0) {
		r = parse_cmd_opts(cargc, cargv, cmd, "", &co);
		if (!r)
			r = cmd_check_config(path);
	} else if (strcmp(cmd, "migrate") == 0) {
		r = parse_cmd_opts(cargc, cargv, cmd, "", &co);
		if (!r)
			r = cmd_migrate(path);
	} else if (strcmp(cmd, "status") == 0) {
		r = parse_cmd_opts(cargc, cargv, cmd, "f", &co);
		if (!r)
			r = cmd_status(path, &co);
	} else if (strcmp(cmd, "retire") == 0) {
		r = parse_cmd_opts(cargc, cargv, cmd, "M", &co);
		if (!r)
			r = cmd_retire(path, &co);
	} else if (strcmp(cmd, "run") == 0) {
		r = parse_cmd_opts(cargc, cargv, cmd, "", &co);
		if (!r)
			r = ids_daemon_run(path);
	} else {
		r = usage_error("unknown command: %s", cmd);
	}
	ids_strv_free(&co.connectors);
	return r;
}
