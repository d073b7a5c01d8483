/* registry.c — the connector ops table of each config `type` (connector.h).
 * Adding a connector is one line here plus its own file. */
#include "ids/connector.h"

#include <ldap.h>
#include <stdlib.h>

#include "ids/http.h"

const struct ids_connector_ops *ids_connector_find(enum ids_conn_type t)
{
	switch (t) {
	case IDS_CONN_LDAP: return &ids_ldap_connector;
	case IDS_CONN_ENTRA: return &ids_entra_connector;
	case IDS_CONN_GOOGLE: return &ids_google_connector;
	case IDS_CONN_SCIM: return &ids_scim_connector;
	}
	return NULL;
}

void ids_feed_pull_clear(struct ids_feed_pull *fp)
{
	free(fp->new_cursor);
	free(fp->reset_reason);
	free(fp->cursor_server);
	free(fp->cursor_invocation_id);
	*fp = (struct ids_feed_pull){.image = fp->image, .cursor = fp->cursor, .cursor_len = fp->cursor_len};
}

void ids_connectors_global_init(void)
{
	/* a get of a global option makes libldap set its defaults, which
	 * it does without a lock at the first handle otherwise (found by
	 * valgrind --tool=drd with two workers connecting at once) */
	int version = 0;
	(void)ldap_get_option(NULL, LDAP_OPT_PROTOCOL_VERSION, &version);
	ids_http_global_init();
}
