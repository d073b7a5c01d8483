/* main.c — the command line of service.md: parse the global options and
 * the command, load the configuration, and hand over to sync/status/...
 * The only place that exits. */
#include <errno.h>
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
#include "ids/explain_out.h"
#include "ids/log.h"
#include "ids/progress.h"
#include "ids/output.h"
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
    "  idsyncd [-c FILE] sync  [--connector NAME]... [--user USER] [--dry-run] [--allow-mass-deactivation]\n"
    "                          [--format text|json] [--progress|--no-progress] [--full]\n"
    "  idsyncd [-c FILE] plan  [--connector NAME]... [--format text|json] [--progress|--no-progress]\n"
    "                          [--full]\n"
    "  idsyncd [-c FILE] check-config\n"
    "  idsyncd [-c FILE] migrate\n"
    "  idsyncd [-c FILE] status [--format text|json] [--max-age DURATION]\n"
    "  idsyncd [-c FILE] retire NAME [--allow-mass-deactivation]\n"
    "  idsyncd [-c FILE] approve RUN_ID [--dry-run]\n"
    "  idsyncd [-c FILE] explain USER [--connector NAME]... [--format text|json]\n"
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

/* load_config, then every --connector (names, borrowed) checked before
 * anything runs: a typo in the second name must not let the first run
 * alone.  It is a usage error (2), not 78: the command line is wrong, the
 * file is not.  On any error *ret is freed (NULL). */
static int load_config_for(const char *path, const struct ids_strv *names, struct ids_config **ret)
{
	int r = load_config(path, ret);
	for (size_t i = 0; !r && i < names->n; i++)
		if (!ids_config_connector(*ret, names->v[i])) {
			fprintf(stderr, "idsyncd: --connector %s: no such connector in %s\n", names->v[i],
				(*ret)->path);
			ids_config_free(*ret);
			*ret = NULL;
			r = IDS_EXIT_USAGE;
		}
	return r;
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
	int progress; /* --progress 1, --no-progress -1, else 0: on a terminal */
	const char
	    *positional;  /* retire's NAME, approve's RUN_ID, explain's USER: the commands with an operand */
	int max_age;	  /* status --max-age, seconds; 0: not given */
	const char *user; /* sync/plan --user: one person */
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
    {"sync", "CnMfpPFu",
     "idsyncd [-c FILE] sync [--connector NAME]... [--dry-run] [--allow-mass-deactivation]\n"
     "                       [--format text|json] [--progress|--no-progress] [--full] [--user USER]\n"
     "  pull every (or each named) connector and apply its plan\n"
     "  (--full: read the whole directory, not only its changes;\n"
     "   --user: only USER (username, e-mail or external id), one connector; deactivates no one)\n"},
    {"plan", "CfpPFu",
     "idsyncd [-c FILE] plan [--connector NAME]... [--format text|json] [--progress|--no-progress]\n"
     "                       [--full] [--user USER]\n"
     "  print what sync would change; writes nothing\n"},
    {"check-config", "",
     "idsyncd [-c FILE] check-config\n  validate the configuration and its secret files\n"},
    {"migrate", "", "idsyncd [-c FILE] migrate\n  create the database schema or bring it up to date\n"},
    {"status", "fa",
     "idsyncd [-c FILE] status [--format text|json] [--max-age DURATION]\n"
     "  the last run of each connector, held plans, the daemon's heartbeat; --max-age: exit 1\n"
     "  when a connector's last successful run is older (or it never had one)\n"},
    {"retire", "M",
     "idsyncd [-c FILE] retire NAME [--allow-mass-deactivation]\n"
     "  deactivate the users of a connector removed from the configuration\n"},
    {"approve", "n",
     "idsyncd [-c FILE] approve RUN_ID [--dry-run]\n"
     "  plan again and apply if the plan is exactly the one run RUN_ID held (a safety\n"
     "  threshold); else print the difference and hold the new plan.  --dry-run: print the\n"
     "  held plan\n"},
    {"explain", "Cf",
     "idsyncd [-c FILE] explain USER [--connector NAME]... [--format text|json]\n"
     "  why USER (username, e-mail or external id) has each grant or not; writes nothing\n"},
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
	case 'a': return "--max-age needs a duration like 30m or 1d";
	case 'u': return "--user needs a username, e-mail or external id";
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
	    {"max-age", required_argument, NULL, 'a'},
	    {"full", no_argument, NULL, 'F'},
	    {"user", required_argument, NULL, 'u'},
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c, idx = -1;
	optind = 1;
	opterr = 0;
	/* approve RUN_ID --dry-run, explain USER --format json: options may
	 * follow the operand (GNU getopt permutes them); the other commands
	 * take no operand and stop at the first word */
	const char *optstr =
	    strcmp(cmd->name, "approve") == 0 || strcmp(cmd->name, "explain") == 0 ? ":hc:" : "+:hc:";
	while ((idx = -1, c = getopt_long(argc, argv, optstr, longopts, &idx)) != -1) {
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
		case 'u': co->user = optarg; break;
		case 'p': co->progress = 1; break;
		case 'P': co->progress = -1; break;
		case 'a':
			if (ids_parse_duration(optarg, &co->max_age) < 0 || co->max_age <= 0)
				return usage_error(
				    "--max-age: expected a duration like 30m or 1d, got \"%s\"", optarg);
			break;
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
	if (strcmp(cmd->name, "retire") == 0 || strcmp(cmd->name, "approve") == 0 ||
	    strcmp(cmd->name, "explain") == 0) {
		if (optind != argc - 1)
			return usage_error("%s: expected exactly one %s", cmd->name,
					   cmd->name[0] == 'r'	 ? "connector name"
					   : cmd->name[0] == 'a' ? "run id"
								 : "user");
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
	if (cfg->nconnectors == 0)
		printf("no connectors configured: nothing will be synced\n");
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
		const struct ids_connector_ops *ops = ids_connector_find(cc->type);
		struct ids_error ce = {0};
		if (!ops) {
			fprintf(stderr,
				"%s:%d: connectors: type %s is not supported by this build of idsyncd\n",
				cfg->path, cc->line, ids_conn_type_name(cc->type));
			code = IDS_EXIT_CONFIG;
		} else if (ops->check && ops->check(cc, cfg, &ce) < 0) {
			/* the credentials the run would fail on (connector.h) */
			fprintf(stderr, "%s:%d: connector %s: %s\n", cfg->path, cc->line, cc->name,
				ids_error_text(&ce));
			code = IDS_EXIT_CONFIG;
		}
		ids_error_clear(&ce);
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

/* --user: exactly one connector (a person not found in one of several
 * would fail that one for nothing).  Every type has a targeted read. */
static int check_user_target(const struct ids_config *cfg, const struct cmd_opts *co)
{
	size_t n = 0;
	for (size_t i = 0; i < cfg->nconnectors; i++)
		if (!co->connectors.n || ids_strv_contains(&co->connectors, cfg->connectors[i].name, false))
			n++;
	if (n != 1) {
		fprintf(stderr, "idsyncd: --user: name one connector with --connector NAME (%zu selected)\n",
			n);
		return IDS_EXIT_USAGE;
	}
	return 0;
}

static int cmd_sync(const char *path, const struct cmd_opts *co, bool plan)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	int r = load_config_for(path, &co->connectors, &cfg);
	if (r)
		return r;
	if (co->user && (r = check_user_target(cfg, co)) != 0) {
		ids_config_free(cfg);
		return r;
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
				  .only_user = co->user,
				  .progress = ids_progress_tick,
				  .prog = progress_line(co)};
	o.ud = o.prog;
	/* the change feeds continue from the state stored in PostgreSQL (a
	 * plan reads it and writes nothing); out of memory: full reads */
	struct ids_feeds *feeds = NULL;
	if (ids_feeds_new(&feeds) >= 0)
		o.feeds = feeds;
	ids_feeds_keep_snapshots(feeds, false); /* one run: nothing to patch */
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
		/* every connector runs even after one failed (they are
		 * independent); the worst outcome decides the exit code */
		code = ids_exit_worst(code, res.exit_code);
		free(res.error);
		ids_buf_free(&out);
	}
	if (co->format == IDS_FMT_JSON)
		fputs(first ? "]\n" : "\n]\n", stdout);
	ids_feeds_free(feeds);
	ids_progress_free(o.prog);
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

/* "12 s", "10 min", "3 h", "2 d": an age as a person reads it. */
static void fmt_age(int64_t s, char *buf, size_t n)
{
	if (s < 120)
		snprintf(buf, n, "%lld s", (long long)s);
	else if (s < 120 * 60)
		snprintf(buf, n, "%lld min", (long long)(s / 60));
	else if (s < 48 * 3600)
		snprintf(buf, n, "%lld h", (long long)(s / 3600));
	else
		snprintf(buf, n, "%lld d", (long long)(s / 86400));
}

/* Lateness below this is a tick, not a queue falling behind. */
#define OVERDUE_SHOWN 10

/* One connector's line of the text status. */
static void status_line(struct ids_buf *b, const struct ids_run_row *w, const struct ids_schedule_row *nx)
{
	char started[32], next[32];
	ids_output_time(w->started_at, started, sizeof(started));
	ids_output_time(nx ? nx->next_at : 0, next, sizeof(next));
	ids_buf_printf(b, "%-20s %-18s run %-6lld %s", w->connector, w->status, (long long)w->id, started);
	/* an aborted run's counts are what the guard held back: shown as
	 * +0 ~0 -4 they would read as four users deactivated */
	bool aborted = strncmp(w->status, "aborted", 7) == 0;
	if (w->has_counts && aborted)
		ids_buf_printf(b, "  %ld users, nothing written", w->counts.users_seen);
	else if (w->has_counts)
		ids_buf_printf(b, "  %ld users +%ld ~%ld -%ld", w->counts.users_seen, w->counts.created,
			       w->counts.updated + w->counts.reactivated, w->counts.deactivated);
	if (nx && nx->running_on)
		ids_buf_printf(b, "  running on %s", nx->running_on);
	else if (nx && nx->overdue >= OVERDUE_SHOWN) {
		char late[32];
		fmt_age(nx->overdue, late, sizeof(late));
		ids_buf_printf(b, "  next %s, overdue by %s", next, late);
	} else if (nx)
		ids_buf_printf(b, "  next %s", next);
	if (w->error)
		ids_buf_printf(b, aborted ? "  %s" : "  error: %s", w->error);
	ids_buf_putc(b, '\n');
}

/* used / limit / waiting of every licence of the configuration; none
 * when the database predates the seat book (NULL, 0). */
static struct ids_licence_status *licence_status(const struct ids_config *cfg, struct ids_store *st)
{
	struct ids_licence_status *v = NULL;
	struct ids_error e = {0};
	if (ids_sync_licence_status(cfg, st, &v, &e) < 0)
		v = NULL;
	ids_error_clear(&e);
	return v;
}

/* What `status` reads beside the runs; each part empty when its table is
 * missing (a database an older idsyncd migrated: status only reads). */
struct status_extra {
	struct ids_schedule_row *sched; /* the daemons' next runs */
	size_t nsched;
	struct ids_held *held; /* pending held plans */
	size_t nheld;
	struct ids_heartbeat *hb;
	size_t nhb;
	bool *alive;	       /* per hb: beating (the daemon runs) */
	struct ids_strv stale; /* --max-age: connectors past it */
	struct ids_strv stale_why;
	struct ids_licence_status *lic; /* per configured licence; NULL without the seat book */
	size_t nlic;
	/* per configured connector (none when the schema predates
	 * connector_feed): its feed row, its persist_feed row, and both as
	 * output.h's ids_output_feed, which borrows them */
	struct ids_feed_state *feed;
	struct ids_persist_row *search;
	struct ids_output_feed *feeds;
	size_t nfeeds;
};

static void status_extra_free(struct status_extra *x)
{
	ids_schedule_rows_free(x->sched, x->nsched);
	ids_held_rows_free(x->held, x->nheld);
	ids_heartbeats_free(x->hb, x->nhb);
	free(x->alive);
	ids_strv_free(&x->stale);
	ids_strv_free(&x->stale_why);
	free(x->lic);
	for (size_t i = 0; i < x->nfeeds; i++) {
		ids_feed_state_clear(&x->feed[i]);
		ids_persist_row_clear(&x->search[i]);
	}
	free(x->feed);
	free(x->search);
	free(x->feeds);
}

/* A daemon beats every minute and at each run: three missed beats and it
 * is gone — unless it is in a run, which beats only at its start: then
 * run_timeout more (without run_timeout, a run can last any time). */
static bool beating(const struct ids_config *cfg, const struct ids_heartbeat *h)
{
	if (h->age_seconds <= 180)
		return true;
	return h->running && (cfg->sync.run_timeout == 0 || h->age_seconds <= cfg->sync.run_timeout + 180);
}

/* --max-age: a configured connector whose last successful run is older,
 * or that never had one, is stale.  < 0: the database failed. */
static int status_stale(const struct ids_config *cfg, struct ids_store *st, int max_age,
			struct status_extra *x, struct ids_error *e)
{
	char age[32], lim[32], *why = NULL;
	fmt_age(max_age, lim, sizeof(lim));
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const char *name = cfg->connectors[i].name;
		int64_t a = -1;
		if (ids_store_last_ok(st, name, &a, e) < 0)
			return -1;
		if (a >= 0 && a <= max_age)
			continue;
		fmt_age(a, age, sizeof(age));
		if (a < 0 ? asprintf(&why, "stale: %s: no successful run yet (--max-age %s)", name, lim) < 0
			  : asprintf(&why, "stale: %s: last successful run %s ago, older than --max-age %s",
				     name, age, lim) < 0)
			return -1;
		ids_strv_push(&x->stale, name);
		ids_strv_push(&x->stale_why, why);
		free(why);
	}
	return 0;
}

/* A connector's change mode as status shows it: auto names the feed
 * an Active Directory connector reads (DirSync). */
static const char *feed_mode(const struct ids_connector_cfg *cc)
{
	if (cc->changes.mode == IDS_CHANGES_FULL)
		return "full";
	if (cc->type == IDS_CONN_LDAP && cc->ldap.flavor == IDS_LDAP_AD)
		return "auto (dirsync)";
	/* Google has no change feed for groups and members (issue 15):
	 * auto reads everything there, and status says so */
	if (cc->type == IDS_CONN_GOOGLE)
		return "full (no change feed for google)";
	/* what the identity provider pushed is read from PostgreSQL */
	if (cc->type == IDS_CONN_SCIM)
		return "pushed (scim: the stored state)";
	return "auto";
}

/* The change feeds' rows into x, for both formats.  A schema an older
 * idsyncd migrated has no connector_feed: then there are none; nor a
 * persist row without persist_feed.  < 0: out of memory. */
static int status_feeds_read(const struct ids_config *cfg, struct ids_store *st, struct status_extra *x)
{
	size_t n = cfg->nconnectors ? cfg->nconnectors : 1;
	x->feed = calloc(n, sizeof(*x->feed));
	x->search = calloc(n, sizeof(*x->search));
	x->feeds = calloc(n, sizeof(*x->feeds));
	if (!x->feed || !x->search || !x->feeds)
		return -1;
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const struct ids_connector_cfg *cc = &cfg->connectors[i];
		struct ids_output_feed *fd = &x->feeds[i];
		struct ids_error e = {0};
		int r = ids_store_feed_get(st, cc->name, &x->feed[i], &e);
		ids_error_clear(&e);
		if (r < 0)
			return 0;
		x->nfeeds = i + 1;
		*fd = (struct ids_output_feed){.connector = cc->name,
					       .mode = feed_mode(cc),
					       .feed = &x->feed[i],
					       .persist = cc->changes.persist};
		r = cc->changes.persist ? ids_store_persist_get(st, cc->name, &x->search[i], &e) : 0;
		ids_error_clear(&e);
		if (r < 0) /* no persist_feed yet: nothing to say about the search */
			fd->persist = false;
		if (r > 0) {
			fd->search = &x->search[i];
			fd->search_state = ids_persist_state_name(x->search[i].state);
		}
	}
	return 0;
}

static int status_extra_read(const struct ids_config *cfg, struct ids_store *st, int max_age,
			     struct status_extra *x, struct ids_error *e)
{
	/* only a running daemon records its schedule; a database an older
	 * idsyncd migrated has no table for it: then no next run is shown */
	if (ids_store_schedule_get(st, &x->sched, &x->nsched, e) < 0) {
		x->sched = NULL;
		x->nsched = 0;
	}
	if (ids_store_held_pending(st, &x->held, &x->nheld, e) < 0) {
		x->held = NULL;
		x->nheld = 0;
	}
	if (ids_store_heartbeats(st, &x->hb, &x->nhb, e) < 0) {
		x->hb = NULL;
		x->nhb = 0;
	}
	ids_error_clear(e);
	x->alive = calloc(x->nhb ? x->nhb : 1, sizeof(*x->alive));
	if (!x->alive)
		return -1;
	for (size_t i = 0; i < x->nhb; i++)
		x->alive[i] = beating(cfg, &x->hb[i]);
	x->lic = licence_status(cfg, st);
	x->nlic = x->lic ? cfg->platform.nlic : 0;
	if (status_feeds_read(cfg, st, x) < 0)
		return -1;
	return max_age ? status_stale(cfg, st, max_age, x, e) : 0;
}

/* The text lines of status_extra: held plans with the way to apply them,
 * the daemon, and --max-age's verdict. */
static void status_extra_text(const struct status_extra *x, struct ids_buf *b)
{
	char at[32], age[32];
	bool any = false;
	for (size_t i = 0; i < x->nlic; i++)
		ids_buf_printf(b, "licence %s/%s: %ld / %ld used, %ld waiting\n", x->lic[i].company,
			       x->lic[i].role, x->lic[i].used, x->lic[i].limit, x->lic[i].waiting);
	for (size_t i = 0; i < x->nheld; i++) {
		const struct ids_held *h = &x->held[i];
		ids_output_time(h->expires_at, at, sizeof(at));
		ids_buf_printf(b, "held: run %lld (%s): idsyncd approve %lld  (%s, expires %s)\n",
			       (long long)h->run_id, h->reason, (long long)h->run_id, h->connector, at);
	}
	for (size_t i = 0; i < x->nhb; i++) {
		if (!x->alive[i])
			continue;
		any = true;
		fmt_age(x->hb[i].age_seconds, age, sizeof(age));
		ids_buf_printf(b, "daemon: running on %s (heartbeat %s ago%s%s)\n", x->hb[i].instance, age,
			       x->hb[i].running ? "; syncing " : "",
			       x->hb[i].running ? x->hb[i].running : "");
	}
	if (!any && x->nhb) {
		fmt_age(x->hb[0].age_seconds, age, sizeof(age));
		ids_buf_printf(b, "daemon: no daemon heartbeat for %s (last from %s)\n", age,
			       x->hb[0].instance);
	} else if (!any) {
		ids_buf_puts(b, "daemon: no daemon heartbeat (none running, or it stopped cleanly)\n");
	}
	for (size_t i = 0; i < x->stale_why.n; i++)
		ids_buf_printf(b, "%s\n", x->stale_why.v[i]);
}

/* The JSON document of status: os (runs, orphans) and x. */
static int status_json(const struct ids_output_status *os, const struct status_extra *x, int max_age,
		       struct ids_buf *b)
{
	struct ids_output_status all = *os;
	all.schedule = x->sched;
	all.nschedule = x->nsched;
	all.held = x->held;
	all.nheld = x->nheld;
	all.heartbeats = x->hb;
	all.nheartbeats = x->nhb;
	all.alive = x->alive;
	all.stale = max_age ? &x->stale : NULL;
	all.licences = x->lic;
	all.nlicences = x->nlic;
	all.feeds = x->feeds;
	all.nfeeds = x->nfeeds;
	all.now = ids_real_usec();
	return ids_output_status_json(&all, b);
}

/* status's line of a persist: true connector: whether its persistent
 * search is up (since when, on which daemon) or reconnecting (since
 * when, why), and its outages. */
static void status_persist(const struct ids_output_feed *fd, struct ids_buf *b)
{
	const struct ids_persist_row *row = fd->search;
	char since[32];
	ids_buf_printf(b, "persist %-20s ", fd->connector);
	if (!row) {
		ids_buf_puts(b, "no daemon has held its persistent search yet\n");
		return;
	}
	ids_output_time(row->since, since, sizeof(since));
	const char *holder = ids_output_search_holder(fd);
	if (!holder)
		ids_buf_printf(b, "held by no daemon (%s since %s)", fd->search_state, since);
	else
		ids_buf_printf(b, "%s since %s on %s", fd->search_state, since, holder);
	if (row->error)
		ids_buf_printf(b, ": %s", row->error);
	ids_buf_printf(b, ", %lld outages\n", (long long)row->reconnects);
}

/* status's change-feed lines (issue 14), one per configured connector:
 * its mode, its cursor's age, its last full read, its feed resets and
 * the last reason; a persist connector's search below it. */
static void status_feeds(const struct status_extra *x, struct ids_buf *b)
{
	int64_t now = ids_real_usec();
	for (size_t i = 0; i < x->nfeeds; i++) {
		const struct ids_output_feed *fd = &x->feeds[i];
		const struct ids_feed_state *f = fd->feed;
		char full[32], age[32], reset[32];
		ids_output_time(f->last_full_at, full, sizeof(full));
		fmt_age((now - f->cursor_at) / 1000000, age, sizeof(age));
		ids_buf_printf(b, "changes %-20s mode %s, ", fd->connector, fd->mode);
		if (f->cursor)
			ids_buf_printf(b, "cursor %s old", age);
		if (f->cursor && f->cursor_server)
			ids_buf_printf(b, " from %s", f->cursor_server);
		if (!f->cursor)
			ids_buf_puts(b, "no cursor");
		ids_buf_printf(b, ", last full read %s, %ld feed resets", full, f->resets);
		if (f->last_reset_reason) {
			ids_output_time(f->last_reset_at, reset, sizeof(reset));
			ids_buf_printf(b, " (last %s: %s)", reset, f->last_reset_reason);
		}
		ids_buf_putc(b, '\n');
		if (fd->persist)
			status_persist(fd, b);
	}
}

static int cmd_status(const char *path, const struct cmd_opts *co)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	struct ids_error e = {0};
	struct ids_run_row *rows = NULL;
	struct ids_orphan *orph = NULL;
	size_t nrows = 0, norph = 0;
	struct ids_strv names = {0};
	struct status_extra x = {0};
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
	if (status_extra_read(cfg, st, co->max_age, &x, &e) < 0) {
		fprintf(stderr, "idsyncd: status: %s\n", e.code ? ids_error_text(&e) : "out of memory");
		r = IDS_EXIT_FAILED;
		goto out;
	}
	ids_error_clear(&e);
	/* --max-age: a stale connector fails the check, as a failed run does */
	if (x.stale.n)
		r = ids_exit_worst(r, IDS_EXIT_FAILED);
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
			status_line(&b, w, next_run_of(x.sched, x.nsched, w->connector));
	}
	if (co->format == IDS_FMT_JSON) {
		const struct ids_output_status os = {
		    .runs = rows, .nruns = nrows, .configured = &names, .orphans = orph, .norphans = norph};
		if (status_json(&os, &x, co->max_age, &b) < 0) {
			fprintf(stderr, "idsyncd: status: out of memory\n");
			r = IDS_EXIT_FAILED;
		}
	} else {
		if (!nrows)
			ids_buf_puts(&b, "no runs recorded yet\n");
		status_feeds(&x, &b);
		for (size_t i = 0; i < norph; i++)
			ids_buf_printf(&b, "orphaned: %s owns %ld users (%ld active), no longer configured\n",
				       orph[i].source, orph[i].total, orph[i].active);
		status_extra_text(&x, &b);
	}
	if (b.p)
		fputs(b.p, stdout);
	ids_buf_free(&b);
out:
	ids_strv_free(&names);
	ids_run_rows_free(rows, nrows);
	ids_orphans_free(orph, norph);
	status_extra_free(&x);
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

/* Why approve RUN_ID cannot apply anything, before planning: no such held
 * plan (2), or one that is no longer pending (3: nothing written, as when
 * a threshold holds a run).  NULL message: it can go on. */
static int approve_refusal(const struct ids_config *cfg, const struct ids_held *h, long long id)
{
	char at[32];
	if (!h) {
		fprintf(stderr,
			"idsyncd: approve %lld: run %lld held no plan (`idsyncd status` lists held plans)\n",
			id, id);
		return IDS_EXIT_USAGE;
	}
	if (h->approved_run) {
		fprintf(stderr, "idsyncd: approve %lld: already approved: run %lld applied it\n", id,
			(long long)h->approved_run);
		return IDS_EXIT_SAFETY;
	}
	if (h->superseded_by) {
		fprintf(
		    stderr,
		    "idsyncd: approve %lld: superseded by run %lld of %s (a newer held plan, or an applied "
		    "sync; `idsyncd status` lists what is held)\n",
		    id, (long long)h->superseded_by, h->connector);
		return IDS_EXIT_SAFETY;
	}
	if (h->expired) {
		ids_output_time(h->expires_at, at, sizeof(at));
		fprintf(stderr,
			"idsyncd: approve %lld: the held plan expired at %s (safety.hold_expiry); nothing "
			"written: `idsyncd sync --connector %s` plans again\n",
			id, at, h->connector);
		return IDS_EXIT_SAFETY;
	}
	if (!ids_config_connector(cfg, h->connector)) {
		fprintf(stderr, "idsyncd: approve %lld: connector %s is no longer in %s\n", id, h->connector,
			cfg->path);
		return IDS_EXIT_USAGE;
	}
	return 0;
}

/* approve RUN_ID: the held plan is checked here for a clear refusal, and
 * again by the run under the connector's lock (sync.c), which plans anew
 * through the same code path as sync and applies only the same plan. */
static int cmd_approve(const char *path, const struct cmd_opts *co)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	struct ids_held *h = NULL;
	struct ids_error e = {0};
	char *end = NULL;
	long long id = strtoll(co->positional, &end, 10);
	if (*co->positional == '\0' || *end || id <= 0)
		return usage_error("approve: expected a run id, got \"%s\"", co->positional);
	int r = load_config(path, &cfg);
	if (!r)
		r = open_store(cfg, co->dry_run ? SCHEMA_EXISTING : SCHEMA_UPDATED, &st);
	if (!r && ids_store_held_get(st, id, &h, &e) < 0) {
		fprintf(stderr, "idsyncd: approve %lld: %s\n", id, ids_error_text(&e));
		r = IDS_EXIT_FAILED;
	}
	if (!r && co->dry_run && h) {
		char at[32];
		ids_output_time(h->expires_at, at, sizeof(at));
		printf("%sheld: run %lld (%s), connector %s, expires %s%s\n", h->plan ? h->plan : "", id,
		       h->reason, h->connector, at, h->expired ? " (expired)" : "");
	}
	if (!r && !co->dry_run && !(r = approve_refusal(cfg, h, id))) {
		struct ids_sync_opts o = {.approve_run = id};
		struct ids_buf out = {0};
		struct ids_sync_result res;
		ids_sync_connector(cfg, st, ids_config_connector(cfg, h->connector), &o, &out, &res);
		if (out.len)
			fputs(out.p, stdout);
		r = res.exit_code;
		free(res.error);
		ids_buf_free(&out);
	} else if (!r && !h) {
		r = approve_refusal(cfg, h, id);
	}
	ids_held_rows_free(h, h ? 1 : 0);
	ids_error_clear(&e);
	ids_store_close(st);
	ids_config_free(cfg);
	return r;
}

/* explain: every (or each named) connector is read; the person is
 * explained in each whose directory has them.  Exit 1 when none has them
 * or a read failed; nothing is written. */
static int cmd_explain(const char *path, const struct cmd_opts *co)
{
	struct ids_config *cfg = NULL;
	struct ids_store *st = NULL;
	int r = load_config_for(path, &co->connectors, &cfg), code = IDS_EXIT_OK, found = 0;
	if (r)
		return r;
	if ((r = open_store(cfg, SCHEMA_READ, &st))) {
		ids_config_free(cfg);
		return r;
	}
	struct ids_buf out = {0}, looked = {0};
	for (size_t i = 0; i < cfg->nconnectors; i++) {
		const struct ids_connector_cfg *cc = &cfg->connectors[i];
		struct ids_error e = {0};
		if (co->connectors.n && !ids_strv_contains(&co->connectors, cc->name, false))
			continue;
		struct ids_buf one = {0};
		r = ids_explain_run(cfg, st, cc, co->positional, co->format, &one, &e);
		if (r == 0) /* separated from the one before: "," in JSON, a blank line in text */
			ids_buf_printf(&out, "%s%s",
				       co->format == IDS_FMT_JSON ? (found ? ",\n" : "[\n")
								  : (found ? "\n" : ""),
				       one.p);
		ids_buf_free(&one);
		found += r == 0;
		ids_buf_printf(&looked, "%s%s", looked.len ? ", " : "", cc->name);
		if (r < 0 && r != -ENOENT) {
			ids_log(IDS_LOG_ERROR, cc->name, 0, NULL, "explain: %s", ids_error_text(&e));
			code = IDS_EXIT_FAILED;
		}
		ids_error_clear(&e);
	}
	if (co->format == IDS_FMT_JSON)
		ids_buf_puts(&out, found ? "\n]\n" : "[]\n");
	if (out.p)
		fputs(out.p, stdout);
	if (!found && code == IDS_EXIT_OK) {
		fprintf(stderr, "idsyncd: explain: no user \"%s\" (username, e-mail or external id) in %s\n",
			co->positional, looked.len ? looked.p : "any connector");
		code = IDS_EXIT_FAILED;
	}
	ids_buf_free(&out);
	ids_buf_free(&looked);
	ids_store_close(st);
	ids_config_free(cfg);
	return code;
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
	else if (strcmp(cmd->name, "approve") == 0)
		r = cmd_approve(path, &co);
	else if (strcmp(cmd->name, "explain") == 0)
		r = cmd_explain(path, &co);
	else
		r = ids_daemon_run(path);
	ids_strv_free(&co.connectors);
	return r;
}
