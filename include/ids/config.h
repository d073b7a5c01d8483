/* config.h — the configuration file of config.md, parsed and validated.
 *
 * ids_config_load() reads the YAML, expands ${ENV}, rejects unknown keys,
 * validates every value (catalog names, regexes, templates, connector
 * references), and reads every *_file secret (refusing files readable by
 * group/others unless security.allow_readable_secrets).  Errors come back
 * as "FILE:LINE:COL: path: what was expected" in err->msg, code
 * IDS_E_CONFIG.  Durations are in seconds. */
#ifndef IDS_CONFIG_H
#define IDS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "ids/catalog.h"
#include "ids/error.h"
#include "ids/rules.h"
#include "ids/util.h"

enum ids_conn_type { IDS_CONN_LDAP, IDS_CONN_ENTRA, IDS_CONN_GOOGLE, IDS_CONN_SCIM };
enum ids_ldap_flavor { IDS_LDAP_OPENLDAP, IDS_LDAP_AD, IDS_LDAP_GENERIC };
enum ids_log_level { IDS_LOG_DEBUG, IDS_LOG_INFO, IDS_LOG_WARNING, IDS_LOG_ERROR };
enum ids_log_target { IDS_LOGT_AUTO, IDS_LOGT_JOURNAL, IDS_LOGT_STDERR };

struct ids_ldap_cfg {
	enum ids_ldap_flavor flavor;
	struct ids_strv uri; /* tried in order */
	bool start_tls;	     /* for ldap:// URIs, default true */
	char *tls_ca_file;   /* NULL: system trust store */
	char *bind_dn;	     /* NULL: anonymous (or SASL) */
	char *bind_password; /* secret, from bind_password_file */
	char *bind_password_file;
	char *sasl_mech; /* NULL or "EXTERNAL" */
	int timeout;	 /* seconds, default 30 */
	int page_size;	 /* default 500 */
	char *users_base, *users_filter;
	char *groups_base, *groups_filter; /* groups_base NULL: no groups read */
	char *member_attribute;		   /* NULL: flavor defaults (member, uniqueMember, memberUid) */
	char *disabled_filter;		   /* NULL: none (openldap) / flavor default */
	int member_range_size;		   /* AD: 0 = let the server decide */
};

/* What an LDAP flavor fills in when the file leaves it out (connectors.md's
 * table): the one copy, read by the config loader and by the connector
 * (a hand-built config may leave these NULL). */
struct ids_ldap_flavor_defaults {
	const char *attr[6]; /* per IDS_F_EXTERNAL_ID .. IDS_F_DISPLAY_NAME */
	const char *users_filter;
	const char *groups_filter;
};

/* The defaults of flavor f (an unknown value: generic's).  Borrowed,
 * static. */
const struct ids_ldap_flavor_defaults *ids_config_ldap_defaults(enum ids_ldap_flavor f);

struct ids_entra_cfg {
	char *tenant, *client_id;
	char *client_secret, *client_secret_file; /* secret */
	char *client_certificate_file, *client_key_file;
	char *client_assertion_alg; /* "PS256" (default) | "RS256" */
	char *login_endpoint, *graph_endpoint;
	char *tls_ca_file;
	int timeout;
	struct ids_strv groups;
};

struct ids_google_cfg {
	char *service_account_file;
	char *subject, *customer, *domain;
	char *token_endpoint, *api_endpoint;
	char *tls_ca_file;
	int timeout;
	struct ids_strv groups;
};

/* A scim connector: its source is what an identity provider pushes to
 * /scim/v2/<name>/ (the listener is struct ids_config's scim). */
struct ids_scim_cfg {
	char *token, *token_file; /* secret: the bearer token this connector accepts */
	int apply_delay;	  /* seconds after the last write of a burst, default 1 */
	int rate_limit;		  /* requests per second (429 beyond), default 1000; 0: none */
};

/* changes: how a connector reads its directory (issue 14).  auto: through
 * a change feed where the source has one (OpenLDAP syncrepl, AD DirSync),
 * reconciled by a full read every full_every; full: everything every
 * run.  Until a connector has a feed, auto reads everything too. */
enum ids_changes_mode { IDS_CHANGES_AUTO, IDS_CHANGES_FULL };

struct ids_changes_cfg {
	enum ids_changes_mode mode; /* default auto */
	bool persist;		    /* openldap: refreshAndPersist; refused until it exists */
	int debounce;		    /* seconds, default 1; 0: apply at once */
	int full_every;		    /* seconds, default 86400 */
	/* active_directory: DirSync's OBJECT_SECURITY flag, for an account
	 * without "Replicating Directory Changes"; default false */
	bool object_security;
};

struct ids_connector_cfg {
	char *name; /* [a-z0-9_-]{1,40}: the `source` in the database */
	enum ids_conn_type type;
	char *company; /* default "default" */
	int interval;  /* seconds; 0 = sync.interval */
	bool adopt_by_email;
	bool allow_empty;
	/* directory attribute per platform field (IDS_F_EXTERNAL_ID ..
	 * IDS_F_DISPLAY_NAME); flavor/type defaults filled in, overridden
	 * field by field by `attributes:` */
	char *attr[6];
	struct ids_changes_cfg changes;
	int line;
	struct ids_ldap_cfg ldap;
	struct ids_entra_cfg entra;
	struct ids_google_cfg google;
	struct ids_scim_cfg scim;
};

struct ids_config {
	char *path;
	/* ids_hash64 of the file's bytes: a run whose plan inputs are those of
	 * the last committed run has nothing to plan when nothing changed
	 * (daemon/sync.c, plan_fingerprint) */
	uint64_t digest;
	struct {
		char *conninfo;
		int conninfo_line, conninfo_col; /* where it is in path; 0 when unknown */
		char *password;			 /* secret, from password_file; NULL when none */
		char *schema;			 /* default "idsync" */
		bool migrate_auto;
	} database;
	struct {
		int interval, jitter, retry_min, retry_max, run_timeout; /* seconds */
		int lease;     /* seconds a daemon's claim on a connector lasts unrenewed (issue 19) */
		int user_rate; /* targeted syncs by NOTIFY per connector and second; 0: no LISTEN */
		int workers;   /* connectors one daemon runs at once, 1..64 (issue 19) */
		int heartbeat; /* seconds between an idle daemon's heartbeats, 1..60 */
	} sync;
	struct {
		enum ids_log_level level;
		enum ids_log_target target;
	} log;
	struct {
		bool allow_readable_secrets, allow_plaintext_bind;
		/* a database reached over the network without
		 * sslmode=verify-full: refused unless true (store.c) */
		bool allow_unverified_database;
	} security;
	struct {
		long max_deactivations;
		int max_deactivation_percent, max_grant_removals_percent;
		int hold_expiry; /* seconds a held plan can be approved (default 1d) */
	} safety;
	bool tenants_auto_create;
	/* The SCIM listener (one for every scim connector); listen NULL when
	 * the file has no scim: block. */
	struct {
		char *listen;	     /* "host:port" or a unix socket path (starts with '/') */
		char *tls_cert_file; /* NULL: plaintext, allowed on loopback and unix sockets only */
		char *tls_key_file;  /* secret file, read when the listener starts and on SIGHUP */
		int timeout;	     /* seconds a connection has to deliver a whole request (default 30) */
		int max_connections; /* concurrent connections (default 64; half of it per address) */
	} scim;
	/* The Prometheus listener (daemon/metrics.c); listen NULL when the
	 * file has no metrics: block. */
	struct {
		char *listen; /* "host:port"; default 127.0.0.1:9464 */
	} metrics;
	struct {
		struct ids_strv roles, channels, channel_groups; /* roles includes extra_roles */
	} catalog;
	/* catalog.requires, catalog.on_missing_requirement and licences: */
	struct ids_catalog_rules platform;
	struct ids_connector_cfg *connectors;
	size_t nconnectors;
	struct ids_rule *rules;
	size_t nrules;
};

/* Loads and validates path.  *ret is new (ids_config_free). */
int ids_config_load(const char *path, struct ids_config **ret, struct ids_error *err);
/* Same, from a string (tests); `name` is used in messages; secrets' relative
 * paths resolve against the current directory. */
int ids_config_load_string(const char *name, const char *yaml, size_t len, struct ids_config **ret,
			   struct ids_error *err);
/* Wipes secrets and frees; accepts NULL. */
void ids_config_free(struct ids_config *c);

const struct ids_connector_cfg *ids_config_connector(const struct ids_config *c, const char *name);
const char *ids_conn_type_name(enum ids_conn_type t); /* "ldap" | "entra" | "google" | "scim" */

/* Splits a scim.listen "host:port" ("[v6]:port") into *ret_host (new) and
 * *ret_port; a unix socket path gives *ret_host NULL, *ret_port 0.
 * *ret_loopback: the traffic stays on this machine (127.0.0.0/8, ::1,
 * localhost, a unix socket).  -EINVAL when malformed. */
int ids_config_scim_listen(const char *listen, char **ret_host, int *ret_port, bool *ret_loopback);

/* "30s" "5m" "1h" "1d" (and combinations like "1h30m") -> seconds. */
int ids_parse_duration(const char *s, int *ret_seconds);

#endif
