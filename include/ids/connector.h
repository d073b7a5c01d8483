/* connector.h — the one interface every directory source implements.
 *
 * A connector reads its directory and feeds a snapshot builder; it never
 * sees the database.  On any error it returns < 0 with err set, and the
 * caller throws the unfinished snapshot away: a partial read must never look
 * like "these users left". */
#ifndef IDS_CONNECTOR_H
#define IDS_CONNECTOR_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids/config.h"
#include "ids/error.h"
#include "ids/snapshot.h"

struct ids_oauth_tokens;

struct ids_pull_ctx {
	const struct ids_config *config;
	const struct ids_strv *rule_attrs; /* attributes the rules read */
	/* Called between pages/batches: the daemon pings its watchdog here.
	 * Returns < 0 to cancel the run (SIGTERM, run_timeout). */
	int (*progress)(void *ud);
	void *ud;
	/* May be NULL (the log is not at debug): one line of the connector's
	 * for the debug log, without secrets (the cloud connectors' HTTP
	 * timings: where a request's time went).  Called with ud. */
	void (*debug)(void *ud, const char *line);
	/* ids_mono_usec() at which run_timeout ends the run, 0 = none: a
	 * connector bounds its own waits (retries, Retry-After) by it rather
	 * than reading the configuration; progress() enforces it as well. */
	int64_t deadline_usec;
	/* borrowed, NULL for everyone: `sync --user`'s or explain's USER.
	 * LDAP reads only the users whose username, mail or (not on AD, whose
	 * objectGUID is binary) external-id attribute equals it, and every
	 * group, so that nested groups resolve as in a full read; Entra
	 * /users/{USER} (else $filter on mail) and its transitiveMemberOf;
	 * Google users.get and the user's groups, walked up to the top;
	 * SCIM the stored user and the groups holding it, nested ones too.
	 * Nobody found: an empty snapshot, never an error. */
	const char *only_user;
	/* borrowed, NULL for one-shot commands: the daemon's access tokens
	 * kept between runs (oauth.h); the cloud connectors hand it to the
	 * bearer layer */
	struct ids_oauth_tokens *tokens;
};

struct ids_image;

/* One read of a change feed (issue 14).  The connector changes the image
 * in place; the caller commits or rolls it back with the run.  Cursors are
 * the connector's own bytes, stored as they are (connector_feed). */
struct ids_feed_pull {
	struct ids_image *image;     /* borrowed: what the previous reads made of the directory */
	const unsigned char *cursor; /* borrowed; NULL: none, the feed sends everything */
	size_t cursor_len;
	unsigned char *new_cursor; /* out, new (free): where the next read starts */
	size_t new_cursor_len;
	char *reset_reason; /* out, new (free): non-NULL when the source refused the cursor and
			     * everything was read again (logged and counted by the caller) */
	size_t changes;	    /* out: entries upserted or deleted */
	/* out, new (free), NULL for other feeds: DirSync's issuer of
	 * new_cursor (connector_feed.cursor_server, cursor_invocation_id) */
	char *cursor_server, *cursor_invocation_id;
};

/* Frees fp's out fields (new_cursor, reset_reason, cursor_server,
 * cursor_invocation_id) and zeroes them with their lengths and `changes`;
 * the in fields (image, cursor: borrowed) stay.  For the outputs of a
 * read that failed or is not used: a connector's pull_changes calls it
 * on its own failure, so its caller frees only the outputs of a success.
 * Accepts a pull with no outputs. */
void ids_feed_pull_clear(struct ids_feed_pull *fp);

struct ids_connector_ops {
	const char *type; /* the config's `type` */
	/* Reads the whole directory of cfg into s (unfinished: the caller
	 * calls ids_snapshot_finish).  Sets s->pages. */
	int (*pull)(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
		    struct ids_snapshot *s, struct ids_error *err);
	/* Parses every credential pull will use (key files, certificates)
	 * with the readers pull uses, and touches no network: check-config's
	 * promise that the run will not fail on them.  IDS_E_CONFIG naming
	 * the file, never its content.  May be NULL (nothing beyond what the
	 * config loader checked). */
	int (*check)(const struct ids_connector_cfg *cfg, const struct ids_config *config,
		     struct ids_error *err);
	/* Optional (NULL: the source has no feed): applies what changed
	 * since fp->cursor to fp->image and sets the out fields.  On error
	 * the image may be half-changed: the caller rolls it back. */
	int (*pull_changes)(const struct ids_connector_cfg *cfg, const struct ids_pull_ctx *ctx,
			    struct ids_feed_pull *fp, struct ids_error *err);
};

/* The ops of connector type t, or NULL when this build has none. */
const struct ids_connector_ops *ids_connector_find(enum ids_conn_type t);
/* The libraries' process-wide state (libldap's global options, libcurl),
 * set up once before threads run connectors (the daemon's workers):
 * neither library guards its first-use initialisation.  Idempotent. */
void ids_connectors_global_init(void);

/* Per type. */
extern const struct ids_connector_ops ids_ldap_connector;
extern const struct ids_connector_ops ids_entra_connector;
extern const struct ids_connector_ops ids_google_connector;
extern const struct ids_connector_ops ids_scim_connector;

/* The scim connector's mapping of one stored SCIM user (resource: JSON
 * text) into s, as one user record: id the external id, userName, the
 * primary (else work, else first) e-mail, name.givenName/familyName,
 * displayName, and the rule attributes `attrs` (dotted paths, then the
 * enterprise extension's).  A resource that is no JSON object gives an
 * invalid user.  Pure: exported for its unit test. */
int ids_scim_map_user(struct ids_snapshot *s, const char *id, const char *resource, bool active,
		      const struct ids_strv *attrs);

#endif
