/* ldap_sync.h — RFC 4533 (LDAP Content Synchronization, "syncrepl") on
 * the wire: the request control idsyncd sends and the three messages
 * slapd answers with, as pure functions over their BER values (liblber
 * only, no connection), for the LDAP connector's change feed (issue 14).
 *
 * The connector sends its searches with ldap_search_ext and waits for
 * their answers in slices itself (ldap_conn.c), so it decodes the
 * controls here rather than through libldap's ldap_sync_* loop, which
 * blocks in ldap_result.  Internal to connectors/ (like ldap_int.h). */
#ifndef IDS_LDAP_SYNC_H
#define IDS_LDAP_SYNC_H

#include <lber.h>
#include <stdbool.h>
#include <stddef.h>

#define IDS_SYNC_REQUEST_OID "1.3.6.1.4.1.4203.1.9.1.1"
#define IDS_SYNC_STATE_OID "1.3.6.1.4.1.4203.1.9.1.2"
#define IDS_SYNC_DONE_OID "1.3.6.1.4.1.4203.1.9.1.3"
#define IDS_SYNC_INFO_OID "1.3.6.1.4.1.4203.1.9.1.4"
/* e-syncRefreshRequired: the cookie is too old, or unknown; refresh in full */
#define IDS_SYNC_REFRESH_REQUIRED 4096

/* An entryUUID as slapd writes the attribute: 36 characters and a NUL. */
#define IDS_SYNC_UUID_TEXT 37

/* syncState's state, in the RFC's numbering. */
enum ids_sync_state { IDS_SYNC_PRESENT = 0, IDS_SYNC_ADD = 1, IDS_SYNC_MODIFY = 2, IDS_SYNC_DELETE = 3 };

/* The value of the Sync Request Control: refreshOnly (or
 * refreshAndPersist when persist), with `cookie` (NULL or empty: none,
 * a refresh of everything).  *ret new (ber_memfree(ret->bv_val)). */
int ids_sync_request_encode(bool persist, const struct berval *cookie, struct berval *ret);

/* A Sync State Control's value: the entry's state and entryUUID (as
 * text), and the cookie when it carries one (*ret_cookie new, malloc;
 * NULL when none).  IDS_E_PROTOCOL for anything malformed. */
int ids_sync_state_decode(const struct berval *v, enum ids_sync_state *ret_state,
			  char ret_uuid[IDS_SYNC_UUID_TEXT], struct berval **ret_cookie);

/* A Sync Info Message's value. */
enum ids_sync_info_kind {
	IDS_SYNC_INFO_NEW_COOKIE,
	IDS_SYNC_INFO_REFRESH_DELETE,
	IDS_SYNC_INFO_REFRESH_PRESENT,
	IDS_SYNC_INFO_ID_SET,
};

struct ids_sync_info {
	enum ids_sync_info_kind kind;
	struct berval *cookie; /* new (malloc), NULL when the message has none */
	bool refresh_done;     /* refreshDelete / refreshPresent: the phase ended (default true) */
	bool refresh_deletes;  /* syncIdSet: the UUIDs are deleted (else: present) */
	char (*uuids)[IDS_SYNC_UUID_TEXT]; /* syncIdSet: new, as text */
	size_t nuuids;
};

/* Decodes v into *ret (free with ids_sync_info_clear), IDS_E_PROTOCOL
 * for anything malformed (then *ret holds nothing). */
int ids_sync_info_decode(const struct berval *v, struct ids_sync_info *ret);
void ids_sync_info_clear(struct ids_sync_info *info);

/* A Sync Done Control's value: the cookie (new, NULL when none) and
 * whether the refresh sent deletes (true) or a present phase (false). */
int ids_sync_done_decode(const struct berval *v, struct berval **ret_cookie, bool *ret_refresh_deletes);

/* Frees a cookie of the decoders above; accepts NULL. */
void ids_sync_cookie_free(struct berval *cookie);

#endif
