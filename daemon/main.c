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
#include <unistd.h>

#include "ids/config.h"
#include "ids/connector.h"
#include "ids/log.h"
#include "ids/progress.h"
#include "ids/store.h"
#include "ids/sync.h"

/* The path the unit's ExecStart= names too: an operator who tries a
 * command by hand without -c reads the same file as the service. */
#define DEFAULT_CONFIG "/etc/idsyncd/idsyncd.yaml"

/* The synopsis of service.md, kept in step with it: `--help` is where a
 * user without the README finds the exit codes a script must handle. */
static const char usage_text[] =
    "Usage:\n"
    "  idsyncd [-c FILE] run                          the daemon, in the foreground\n"
    "  idsyncd [-c FILE] sync  [--connector NAME]... [--dry-run] [--allow-mass-deactivation]\n"
    "                          [--format text|json] [--progress|--no-progress] [--full]\n"
    "  idsyncd [-c FILE] plan  [--connector NAME]... [--format text|json] [--progress|--no-progress]\n"
    "                          [--full]\n"
    "  idsyncd [-c FILE] check-config\n"
    "  idsyncd [-c FILE] migrate\n"
    "  idsyncd [-c FILE] status [--format text|json]\n"
    "  idsyncd [-c FILE] retire NAME [--allow-mass-deactivation]\n"
    "  idsyncd --version | --help | COMMAND --help\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
    "  --full              sync, plan: read the whole directory, not only its changes\n"
    "  --progress          sync, plan: a progress line on stderr even when it is not a terminal\n"
    "  --no-progress       sync, plan: no progress line, even on a terminal\n"
    "\n"
    "Exit codes: 0 ok, 1 a connector or the database failed, 2 usage,\n"
    "3 a safety guard aborted a run, 4 locked by another instance, 78 configuration error.\n";

/* Where a usage error sends the user: the command's own help once the
 * command is known, which is shorter and names only its options. */
static const char *help_hint = "idsyncd --help";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "idsyncd: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry '%s'.\n", help_hint);
	va_end(ap);
	return IDS_EXIT_USAGE;
}

/* Loads the config or prints why not.  The error goes to stderr as it is
 * (FILE:LINE:COL first, like a compiler's) rather than through the log:
 * the log's target is itself configured by the file that failed. */
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

/* What a command needs of the schema when it opens the store. */
enum schema_need {
	SCHEMA_ANY,	 /* migrate: it is the one that makes the schema */
	SCHEMA_UPDATED,	 /* sync, retire: brought up to date (migrate: auto) or checked */
	SCHEMA_READ,	 /* plan, dry-run: never written; missing: plan against empty */
	SCHEMA_EXISTING, /* status: any version that has the tables */
};

/* Exit code for a failure to open the store: a bad conninfo or a schema
 * that needs `idsyncd migrate` is for a person to fix, not to retry, so
 * it is a configuration error for the read-only commands. */
static int store_exit(int r, enum schema_need need)
{
	if (r == IDS_E_CONFIG || (r == IDS_E_SCHEMA && need >= SCHEMA_READ))
		return IDS_EXIT_CONFIG;
	return IDS_EXIT_FAILED;
}

/* A plan's view of the schema.  Missing (never migrated): the plan is
 * made against the empty state — what the first sync would create —
 * with a notice, since plan before the first sync is how a new user
 * starts (the demo does) and plan may not create the schema.  Older
 * or newer than this binary: refused, a plan against tables of another
 * shape would be wrong. */
static int plan_schema(const struct ids_config *cfg, struct ids_store *st, struct ids_error *e)
{
	int version = 0;
	int r = ids_store_version(st, &version, e);
	if (r < 0 || version > 0)
		return r < 0 ? r : ids_store_migrate(st, false, NULL, NULL, e);
	ids_log(IDS_LOG_WARNING, NULL, 0, NULL,
		"database schema %s has not been created (`idsyncd migrate` has not run): "
		"planning against an empty database",
		cfg->database.schema);
	ids_store_assume_empty(st);
	return 0;
}

/* Connects and makes sure the schema is what the command needs.  Only
 * SCHEMA_ANY and SCHEMA_UPDATED may write (create or migrate the
 * schema): plan and status leave an unmigrated database untouched and
 * say how to create the schema instead of failing on a missing table. */
static int open_store(const struct ids_config *cfg, enum schema_need need, struct ids_store **ret)
{
	struct ids_error e = {0};
	int version = 0;
	int r = ids_store_open(cfg, ret, &e);
	if (r >= 0 && ids_store_warning(*ret))
		ids_log(IDS_LOG_WARNING, NULL, 0, NULL, "%s", ids_store_warning(*ret));
	if (r >= 0 && need == SCHEMA_UPDATED)
		r = ids_store_migrate(*ret, cfg->database.migrate_auto, NULL, NULL, &e);
	else if (r >= 0 && need == SCHEMA_READ)
		r = plan_schema(cfg, *ret, &e);
	else if (r >= 0 && need == SCHEMA_EXISTING && (r = ids_store_version(*ret, &version, &e)) >= 0 &&
		 version == 0)
		r = ids_error_set(&e, IDS_E_SCHEMA,
				  "database schema %s has not been created: run `idsyncd migrate`",
				  cfg->database.schema);
	if (r < 0) {
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL, "database: %s", ids_error_text(&e));
		ids_error_clear(&e);
		ids_store_close(*ret);
		*ret = NULL;
		return store_exit(r, need);
	}
	return 0;
}

struct cmd_opts {
	const char *config; /* -c after the command; NULL: the global one */
	struct ids_strv connectors;
	bool dry_run, allow_mass, full;
	enum ids_out_format format;
	int progress;		/* --progress 1, --no-progress -1, else 0: on a terminal */
	const char *positional; /* retire's NAME: the only command with an operand */
};

/* One command: its name, the long options it takes (as the short letters
 * of longopts below) and its usage line, which `COMMAND --help` prints
 * alone so that a user sees only what applies. */
struct command {
	const char *name;
	const char *allowed;
	const char *usage;
};

static const struct command commands[] = {
    {"run", "", "idsyncd [-c FILE] run\n  the daemon, in the foreground (systemd Type=notify)\n"},
    {"sync", "CnMfpPF",
     "idsyncd [-c FILE] sync [--connector NAME]... [--dry-run] [--allow-mass-deactivation]\n"
     "                       [--format text|json] [--progress|--no-progress] [--full]\n"
     "  pull every (or each named) connector and apply its plan\n"
     "  (--full: read the whole directory, not only its changes)\n"},
    {"plan", "CfpPF",
     "idsyncd [-c FILE] plan [--connector NAME]... [--format text|json] [--progress|--no-progress]\n"
     "                       [--full]\n"
     "  print what sync would change; writes nothing\n"},
    {"check-config", "",
     "idsyncd [-c FILE] check-config\n  validate the configuration and its secret files\n"},
    {"migrate", "", "idsyncd [-c FILE] migrate\n  create the database schema or bring it up to date\n"},
    {"status", "f",
     "idsyncd [-c FILE] status [--format text|json]\n  the last run of each connector, from sync_run\n"},
    {"retire", "M",
     "idsyncd [-c FILE] retire NAME [--allow-mass-deactivation]\n"
     "  deactivate the users of a connector removed from the configuration\n"},
};

static const struct command *command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* What a missing argument should have been, for the message. */
static const char *missing_what(int opt)
{
	switch (opt) {
	case 'C': return "--connector needs a connector name";
	case 'f': return "--format needs text or json";
	default: return "-c/--config needs a file name";
	}
}

/* Options after the command.  Global options are accepted here too
 * (`idsyncd status -c x.yaml`) because users type them where they
 * think of them.  The leading ':' of the option string makes getopt
 * tell a missing argument (':') from an unknown option ('?'). */
static int parse_cmd_opts(int argc, char **argv, const struct command *cmd, struct cmd_opts *co)
{
	static const struct option longopts[] = {
	    {"connector", required_argument, NULL, 'C'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"allow-mass-deactivation", no_argument, NULL, 'M'},
	    {"format", required_argument, NULL, 'f'},
	    {"progress", no_argument, NULL, 'p'},
	    {"no-progress", no_argument, NULL, 'P'},
	    {"full", no_argument, NULL, 'F'},
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c, idx = -1;
	optind = 1;
	opterr = 0;
	while ((idx = -1, c = getopt_long(argc, argv, "+:hc:", longopts, &idx)) != -1) {
		if (c == 'h') {
			printf("Usage: %s", cmd->usage);
			exit(0);
		}
		if (c == ':')
			return usage_error("%s: %s", cmd->name, missing_what(optopt));
		if (c == 'c') {
			co->config = optarg;
			continue;
		}
		/* a known option of another command may have taken its argument
		 * already: name the option, not argv[optind - 1] */
		if (c != '?' && !strchr(cmd->allowed, c))
			return usage_error("unknown option for %s: --%s", cmd->name, longopts[idx].name);
		if (c == '?')
			return usage_error("unknown option for %s: %s", cmd->name, argv[optind - 1]);
		switch (c) {
		case 'C':
			if (ids_strv_push(&co->connectors, optarg) < 0)
				return IDS_EXIT_FAILED;
			break;
		case 'n': co->dry_run = true; break;
		case 'M': co->allow_mass = true; break;
		case 'F': co->full = true; break;
		case 'p': co->progress = 1; break;
		case 'P': co->progress = -1; break;
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
	if (strcmp(cmd->name, "retire") == 0) {
		if (optind != argc - 1)
			return usage_error("%s: expected exactly one connector name", cmd->name);
		co->positional = argv[optind];
	} else if (optind != argc) {
		return usage_error("unexpected argument: %s", argv[optind]);
	}
	return 0;
}

/* check-config's database part: the connection's transport security
 * (an unverified network conninfo is invalid whether or not the server
 * answers: 78), then the schema and orphaned connectors.  A database
 * that is not reachable does not make the configuration invalid. */
static int check_database(const struct ids_config *cfg)
{
	struct ids_store *st = NULL;
	struct ids_error e = {0};
	int version = 0, code = IDS_EXIT_OK;
	int r = ids_store_open(cfg, &st, &e);
	if (r >= 0 && ids_store_warning(st))
		ids_log(IDS_LOG_WARNING, NULL, 0, NULL, "%s", ids_store_warning(st));
	if (r == IDS_E_CONFIG) {
		fprintf(stderr, "%s\n", ids_error_text(&e));
		code = IDS_EXIT_CONFIG;
	} else if (r < 0 || ids_store_version(st, &version, &e) < 0) {
		printf("database: not checked (%s)\n", ids_error_text(&e));
	} else if (!version) {
		printf("database: schema %s not created yet (`idsyncd migrate` creates it)\n",
		       cfg->database.schema);
	} else {
		struct ids_strv names = {0};
		struct ids_orphan *o = NULL;
		size_t n = 0;
		for (size_t i = 0; i < cfg->nconnectors; i++)
			ids_strv_push(&names, cfg->connectors[i].name);
		if (ids_store_orphans(st, &names, &o, &n, &e) >= 0)
			for (size_t i = 0; i < n; i++)
				printf("orphaned: connector %s is no longer configured but owns %ld users "
				       "(%ld active); `idsyncd retire %s` deactivates them\n",
				       o[i].source, o[i].total, o[i].active, o[i].source);
		else
			printf("database: not checked (%s)\n", ids_error_text(&e));
		ids_orphans_free(o, n);
		ids_strv_free(&names);
	}
	ids_error_clear(&e);
	ids_store_close(st);
	return code;
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
		/* a type this build lacks is refused now, not at run time:
		 * the daemon would start and fail every run */
		if (!ids_connector_find(cc->type)) {
			fprintf(stderr,
				"%s:%d: connectors: type %s is not supported by this build of idsyncd\n",
				cfg->path, cc->line, ids_conn_type_name(cc->type));
			code = IDS_EXIT_CONFIG;
		}
	}
	/* "ok" last, and only when nothing was refused: a script or a
	 * person reading the last line must not see "ok" after an error */
	code = ids_exit_worst(code, check_database(cfg));
	if (code == IDS_EXIT_OK)
		printf("%zu rules, %zu connectors: configuration ok\n", cfg->nrules, cfg->nconnectors);
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
	/* migrate applies whatever database.migrate says: `manual` means
	 * "only when asked", and running this command is asking. */
	r = open_store(cfg, SCHEMA_ANY, &st);
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

/* Appends, inside the plan's JSON object (after its own keys, which stay
 * as they are), where a sync's time went and what it wrote:
 * "timings": {"fetch": s, ...}, "rows_written": n, "peak_rss_kib": n.
 * Spliced in here rather than written by core/plan_format.c: the plan's
 * own bytes must stay identical for identical input (README), and
 * timings never are. */
static void add_run_stats(struct ids_buf *out, const struct ids_sync_result *res)
{
	size_t close = out->len, body = 0;
	while (close && out->p[close - 1] != '}')
		close--;
	if (!close--)
		return;
	for (body = close; body && strchr(" \t\r\n", out->p[body - 1]); body--)
		;
	struct ids_buf tail = {0};
	ids_buf_add(&tail, out->p + close, out->len - close); /* "}" and what follows */
	out->len = body;
	ids_buf_printf(
	    out,
	    ",\n  \"timings\": {\"fetch\": %.3f, \"resolve\": %.3f, \"rules\": %.3f, \"load\": %.3f,"
	    " \"diff\": %.3f, \"apply\": %.3f},\n  \"rows_written\": %ld,\n  \"peak_rss_kib\": %ld\n",
	    res->t.fetch, res->t.resolve, res->t.rules, res->t.load, res->t.diff, res->t.apply,
	    res->rows_written, res->peak_rss_kib);
	ids_buf_add(out, tail.p, tail.len);
	ids_buf_free(&tail);
}

/* The progress line of `sync` and `plan`: on a terminal unless the output
 * is JSON (a program reads it, nobody watches), or as --progress and
 * --no-progress say; never into the journal. */
static struct ids_progress *progress_line(const struct cmd_opts *co)
{
	struct ids_progress *p = NULL;
	bool on =
	    co->progress > 0 || (co->progress == 0 && co->format != IDS_FMT_JSON && isatty(STDERR_FILENO));
	if (!on || ids_log_stderr_is_journal() || ids_progress_new(STDERR_FILENO, &p) < 0)
		return NULL;
	return p;
}

static int cmd_sync(const char *path, const struct cmd_opts *co, bool plan)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	int r = load_config(path, &cfg);
	if (r)
		return r;
	/* Every --connector is checked before anything runs: a typo in the
	 * second name must not let the first run alone.  It is a usage
	 * error (2), not 78: the command line is wrong, the file is not. */
	for (size_t i = 0; i < co->connectors.n; i++)
		if (!ids_config_connector(cfg, co->connectors.v[i])) {
			fprintf(stderr, "idsyncd: --connector %s: no such connector in %s\n",
				co->connectors.v[i], cfg->path);
			ids_config_free(cfg);
			return IDS_EXIT_USAGE;
		}
	r = open_store(cfg, plan || co->dry_run ? SCHEMA_READ : SCHEMA_UPDATED, &st);
	if (r) {
		ids_config_free(cfg);
		return r;
	}
	/* plan is sync --dry-run with the plan printed (service.md): one
	 * code path, so that a plan shows exactly what a sync would do */
	struct ids_sync_opts o = {.dry_run = plan || co->dry_run,
				  .allow_mass = co->allow_mass,
				  .full = co->full,
				  .print_plan = plan || co->dry_run,
				  .format = co->format,
				  .progress = ids_progress_tick,
				  .prog = progress_line(co)};
	o.ud = o.prog;
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
			/* a failed run has no plan: report it as an object too */
			if (!first)
				fputs(",", stdout);
			if (out.len && out.p[0] == '{') {
				if (!o.dry_run && res.status && strcmp(res.status, "ok") == 0)
					add_run_stats(&out, &res);
				fputs(out.p, stdout);
			} else {
				struct ids_buf j = {0};
				ids_buf_puts(&j, "{\"connector\": ");
				ids_buf_json_str(&j, cc->name);
				ids_buf_printf(&j, ", \"status\": \"%s\", \"error\": ", res.status);
				if (res.error)
					ids_buf_json_str(&j, res.error);
				else
					ids_buf_puts(&j, "null");
				ids_buf_puts(&j, "}");
				fputs(j.p, stdout);
				ids_buf_free(&j);
			}
			first = false;
		} else if (out.len) {
			fputs(out.p, stdout);
		}
		fflush(stdout);
		/* every connector runs even after one failed (they are
		 * independent); the worst outcome decides the exit code */
		code = ids_exit_worst(code, res.exit_code);
		free(res.error);
		ids_buf_free(&out);
	}
	if (co->format == IDS_FMT_JSON)
		fputs("]\n", stdout);
	ids_progress_free(o.prog);
	ids_store_close(st);
	ids_config_free(cfg);
	return code;
}

/* UTC, ISO 8601: status lines from hosts in different time zones (or a
 * daemon and a shell with different TZ) compare and sort as text. */
static void fmt_time(int64_t usec, char *buf, size_t n)
{
	if (!usec) {
		snprintf(buf, n, "-");
		return;
	}
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The daemon's next expected run of `connector`, NULL when none is known.
 * A linear search: a configuration has a handful of connectors. */
static const struct ids_schedule_row *next_run_of(const struct ids_schedule_row *s, size_t n,
						  const char *connector)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i].connector, connector) == 0)
			return &s[i];
	return NULL;
}

/* "42s", "5m", "3h", "2d": how old a cursor is, at a glance. */
static void fmt_age(int64_t usec, char *buf, size_t n)
{
	long long s = usec > 0 ? (long long)(usec / 1000000) : 0;
	if (s < 120)
		snprintf(buf, n, "%llds", s);
	else if (s < 7200)
		snprintf(buf, n, "%lldm", s / 60);
	else if (s < 172800)
		snprintf(buf, n, "%lldh", s / 3600);
	else
		snprintf(buf, n, "%lldd", s / 86400);
}

/* status's change-feed lines (issue 14), one per configured connector:
 * its mode, its cursor's age, its last full read, its feed resets and
 * the last reason.  A schema an older idsyncd migrated has no
 * connector_feed: then there are none. */
static void status_feeds(struct ids_store *st, const struct ids_config *cfg, struct ids_buf *b)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const struct ids_connector_cfg *cc = &cfg->connectors[i];
		struct ids_feed_state f = {0};
		struct ids_error e = {0};
		char full[32], age[32], reset[32];
		if (ids_store_feed_get(st, cc->name, &f, &e) < 0) {
			ids_error_clear(&e);
			return;
		}
		fmt_time(f.last_full_at, full, sizeof(full));
		fmt_age(now - f.cursor_at, age, sizeof(age));
		ids_buf_printf(b, "changes %-20s mode %s, ", cc->name,
			       cc->changes.mode == IDS_CHANGES_FULL ? "full" : "auto");
		if (f.cursor)
			ids_buf_printf(b, "cursor %s old", age);
		else
			ids_buf_puts(b, "no cursor");
		ids_buf_printf(b, ", last full read %s, %ld feed resets", full, f.resets);
		if (f.last_reset_reason) {
			fmt_time(f.last_reset_at, reset, sizeof(reset));
			ids_buf_printf(b, " (last %s: %s)", reset, f.last_reset_reason);
		}
		ids_buf_putc(b, '\n');
		ids_feed_state_clear(&f);
	}
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
	/* status only reads: an unmigrated database is reported (with how
	 * to create the schema), never created */
	r = open_store(cfg, SCHEMA_EXISTING, &st);
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
	if (co->format == IDS_FMT_JSON)
		ids_buf_puts(&b, "{\"connectors\": [");
	for (size_t i = 0; i < nrows; i++) {
		const struct ids_run_row *w = &rows[i];
		const struct ids_schedule_row *nx = next_run_of(sched, nsched, w->connector);
		char started[32], finished[32], next[32];
		fmt_time(w->started_at, started, sizeof(started));
		fmt_time(w->finished_at, finished, sizeof(finished));
		fmt_time(nx ? nx->next_at : 0, next, sizeof(next));
		/* a failed (or safety-aborted) last run makes the check fail,
		 * with the exit code a sync would have had (monitoring) */
		if (ids_strv_contains(&names, w->connector, false)) {
			if (strcmp(w->status, "failed") == 0)
				r = ids_exit_worst(r, IDS_EXIT_FAILED);
			else if (strncmp(w->status, "aborted_", 8) == 0)
				r = ids_exit_worst(r, IDS_EXIT_SAFETY);
		}
		if (co->format == IDS_FMT_JSON) {
			ids_buf_puts(&b, i ? ", {\"connector\": " : "{\"connector\": ");
			ids_buf_json_str(&b, w->connector);
			ids_buf_printf(&b, ", \"configured\": %s, \"run_id\": %lld, \"status\": ",
				       ids_strv_contains(&names, w->connector, false) ? "true" : "false",
				       (long long)w->id);
			ids_buf_json_str(&b, w->status);
			ids_buf_printf(&b, ", \"started_at\": \"%s\", \"finished_at\": ", started);
			if (w->finished_at)
				ids_buf_printf(&b, "\"%s\"", finished);
			else
				ids_buf_puts(&b, "null");
			if (w->has_counts)
				ids_buf_printf(
				    &b,
				    ", \"users_seen\": %ld, \"created\": %ld, \"updated\": %ld, "
				    "\"deactivated\": %ld"
				    ", \"reactivated\": %ld, \"grants_added\": %ld, \"grants_removed\": %ld"
				    ", \"conflicts\": %ld, \"skipped_invalid\": %ld",
				    w->counts.users_seen, w->counts.created, w->counts.updated,
				    w->counts.deactivated, w->counts.reactivated, w->counts.grants_added,
				    w->counts.grants_removed, w->counts.conflicts, w->counts.skipped_invalid);
			ids_buf_puts(&b, ", \"error\": ");
			if (w->error)
				ids_buf_json_str(&b, w->error);
			else
				ids_buf_puts(&b, "null");
			if (nx) {
				ids_buf_printf(&b, ", \"next_run_at\": \"%s\", \"next_run_by\": ", next);
				ids_buf_json_str(&b, nx->instance);
			} else {
				ids_buf_puts(&b, ", \"next_run_at\": null, \"next_run_by\": null");
			}
			ids_buf_puts(&b, "}");
		} else {
			ids_buf_printf(&b, "%-20s %-18s run %-6lld %s", w->connector, w->status,
				       (long long)w->id, started);
			if (w->has_counts)
				ids_buf_printf(&b, "  %ld users +%ld ~%ld -%ld", w->counts.users_seen,
					       w->counts.created, w->counts.updated + w->counts.reactivated,
					       w->counts.deactivated);
			if (nx)
				ids_buf_printf(&b, "  next %s", next);
			if (w->error)
				ids_buf_printf(&b, "  error: %s", w->error);
			ids_buf_putc(&b, '\n');
		}
	}
	if (co->format == IDS_FMT_JSON) {
		ids_buf_puts(&b, "], \"orphaned\": [");
		for (size_t i = 0; i < norph; i++) {
			ids_buf_puts(&b, i ? ", {\"connector\": " : "{\"connector\": ");
			ids_buf_json_str(&b, orph[i].source);
			ids_buf_printf(&b, ", \"users\": %ld, \"active\": %ld}", orph[i].total,
				       orph[i].active);
		}
		ids_buf_puts(&b, "]}\n");
	} else {
		if (!nrows)
			ids_buf_puts(&b, "no runs recorded yet\n");
		status_feeds(st, cfg, &b);
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
	/* A connector that is still configured would take its users back
	 * at its next run: retiring it would only cause a wave of
	 * deactivations and reactivations. */
	if (ids_config_connector(cfg, co->positional)) {
		fprintf(stderr,
			"idsyncd: retire %s: the connector is still configured in %s; remove it first\n",
			co->positional, cfg->path);
		ids_config_free(cfg);
		return IDS_EXIT_USAGE;
	}
	r = open_store(cfg, SCHEMA_UPDATED, &st);
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

	/* Global options before the command are parsed by hand: getopt would
	 * permute or stop at the command, and the command's own options are
	 * parsed afterwards with its own table. */
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
	/* Commands are looked up in one table, which also gives each its
	 * options and its --help text. */
	const struct command *cmd = command_find(argv[i]);
	if (!cmd)
		return usage_error("unknown command: %s", argv[i]);
	char hint[64];
	snprintf(hint, sizeof(hint), "idsyncd %s --help", cmd->name);
	help_hint = hint;
	struct cmd_opts co = {0};
	int r = parse_cmd_opts(argc - i, argv + i, cmd, &co);
	/* -c after the command wins over one before it: the later word is
	 * the one a user just typed (e.g. appended to a recalled line) */
	if (co.config)
		path = co.config;
	if (r) {
		ids_strv_free(&co.connectors);
		return r;
	}
	if (strcmp(cmd->name, "sync") == 0)
		r = cmd_sync(path, &co, false);
	else if (strcmp(cmd->name, "plan") == 0)
		r = cmd_sync(path, &co, true);
	else if (strcmp(cmd->name, "check-config") == 0)
		r = cmd_check_config(path);
	else if (strcmp(cmd->name, "migrate") == 0)
		r = cmd_migrate(path);
	else if (strcmp(cmd->name, "status") == 0)
		r = cmd_status(path, &co);
	else if (strcmp(cmd->name, "retire") == 0)
		r = cmd_retire(path, &co);
	else
		r = ids_daemon_run(path);
	ids_strv_free(&co.connectors);
	return r;
}
