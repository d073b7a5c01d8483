/* ldap_dirsync.h — Active Directory's DirSync control (MS-ADTS 3.1.1.3.4.1.3,
 * LDAP_SERVER_DIRSYNC_OID) on the wire, the loop over its "more data"
 * flag, and the cursor idsyncd stores for it: pure functions (liblber
 * only, no connection), for the LDAP connector's AD change feed
 * (ldap_dirsync.c, issue 14) and its unit test.  Internal to connectors/.
 *
 *   request  ::= SEQUENCE { flags INTEGER, maxBytes INTEGER, cookie OCTET STRING }
 *   response ::= SEQUENCE { moreData INTEGER, unused INTEGER, cookie OCTET STRING }
 */
#ifndef IDS_LDAP_DIRSYNC_H
#define IDS_LDAP_DIRSYNC_H

#include <lber.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDS_DIRSYNC_OID "1.2.840.113556.1.4.841"
/* the caller's own access decides what is returned, instead of the
 * "Replicating Directory Changes" right on the naming context */
#define IDS_DIRSYNC_OBJECT_SECURITY 0x00000001u
/* linked values (member) as the values added (range=1-1) and removed
 * (range=0-0) since the cookie, not the whole attribute */
#define IDS_DIRSYNC_INCREMENTAL_VALUES 0x80000000u

/* The request control's value: flags, maxBytes (0: the server's
 * default) and cookie (NULL or empty: from the start).  *ret new
 * (ber_memfree(ret->bv_val)). */
int ids_dirsync_request_encode(uint32_t flags, int32_t max_bytes, const struct berval *cookie,
			       struct berval *ret);

/* The response control's value: whether the server has more data, and
 * its cookie (*ret_cookie new, malloc, with a NUL after it; an empty
 * one is a cookie of length 0).  IDS_E_PROTOCOL for anything malformed
 * or a cookie past 64 KiB. */
int ids_dirsync_response_decode(const struct berval *v, bool *ret_more, struct berval **ret_cookie);

/* Frees a cookie of the decoder above; accepts NULL. */
void ids_dirsync_cookie_free(struct berval *cookie);

/* The loop over "more data": one DirSync search after the other, each
 * from the cookie the last one returned, until a response says no more.
 * Feed each search's outcome to ids_dirsync_loop_step. */
struct ids_dirsync_loop {
	struct berval *cookie; /* the newest cookie, new; NULL before the first response */
	unsigned rounds;       /* responses so far */
	unsigned max_rounds;   /* 0: IDS_DIRSYNC_MAX_ROUNDS */
	size_t entries;	       /* entries the rounds returned, for messages */
};
#define IDS_DIRSYNC_MAX_ROUNDS 100000

enum ids_dirsync_step {
	IDS_DIRSYNC_DONE = 0,  /* the last round: the cookie is where the next read starts */
	IDS_DIRSYNC_AGAIN = 1, /* search again from l->cookie */
};

/* One round's response control (ctrl: its value, NULL when the server
 * sent none) after `entries` entries.  Takes the round's cookie
 * (replacing the old one).  IDS_E_PROTOCOL when the server sent no
 * control (the search was not a DirSync one), a malformed one, or "more
 * data" with an empty cookie or one unchanged after a round without
 * entries (a loop that would never end); IDS_E_LIMIT past max_rounds.
 * Pure. */
int ids_dirsync_loop_step(struct ids_dirsync_loop *l, const struct berval *ctrl, size_t entries);
void ids_dirsync_loop_clear(struct ids_dirsync_loop *l);

/* A stored cursor: the cookie with the identity of the domain controller
 * that issued it (a cookie means nothing to another DC, nor to the same
 * one restored from a backup: a new invocationId) and when it was
 * issued (past the tombstone lifetime, deletions are lost). */
struct ids_dirsync_cursor {
	uint64_t fingerprint; /* the connector settings the records were made under */
	const char *server;   /* dnsHostName */
	const char *invocation_id;
	int64_t issued; /* unix seconds */
	struct berval cookie;
};

/* c as bytes: *ret new (free), *ret_len.  -ENOMEM, -EINVAL for a server
 * or invocationId with a newline. */
int ids_dirsync_cursor_encode(const struct ids_dirsync_cursor *c, unsigned char **ret, size_t *ret_len);

/* Bytes back into *ret: its pointers borrow from `text` except server
 * and invocation_id, new in *ret_strs (free both).  -EINVAL (with *ret
 * zero) when the bytes are not a DirSync cursor of this version. */
int ids_dirsync_cursor_decode(const unsigned char *text, size_t n, struct ids_dirsync_cursor *ret,
			      char **ret_server, char **ret_invocation_id);

/* "(objectGUID=\xx…)" of a 16-byte GUID appended to b; -EINVAL for
 * another length.  Every byte escaped: a GUID is binary. */
struct ids_buf;
int ids_dirsync_guid_term(struct ids_buf *b, const struct berval *guid);

#endif
