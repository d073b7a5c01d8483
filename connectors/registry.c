/* registry.c — the connector ops table of each config `type` (connector.h).
 * Adding a connector is one line here plus its own file. */
#include "ids/connector.h"

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
