/* ldap_sync.c — RFC 4533's control and message values (ldap_sync.h).
 *
 * The ASN.1, from RFC 4533 section 2:
 *
 *   syncRequestValue ::= SEQUENCE { mode ENUMERATED { refreshOnly (1),
 *       refreshAndPersist (3) }, cookie syncCookie OPTIONAL,
 *       reloadHint BOOLEAN DEFAULT FALSE }
 *   syncStateValue ::= SEQUENCE { state ENUMERATED { present (0), add (1),
 *       modify (2), delete (3) }, entryUUID syncUUID, cookie syncCookie OPTIONAL }
 *   syncDoneValue ::= SEQUENCE { cookie syncCookie OPTIONAL,
 *       refreshDeletes BOOLEAN DEFAULT FALSE }
 *   syncInfoValue ::= CHOICE {
 *       newcookie      [0] syncCookie,
 *       refreshDelete  [1] SEQUENCE { cookie OPTIONAL, refreshDone BOOLEAN DEFAULT TRUE },
 *       refreshPresent [2] SEQUENCE { cookie OPTIONAL, refreshDone BOOLEAN DEFAULT TRUE },
 *       syncIdSet      [3] SEQUENCE { cookie OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE,
 *                                     syncUUIDs SET OF syncUUID } }
 *   syncUUID ::= OCTET STRING (SIZE(16)); syncCookie ::= OCTET STRING
 *
 * Every value comes from the server: lengths are checked before use, an
 * entryUUID of another size than 16 is refused, and nothing past the
 * value is read (liblber bounds each element by its length). */
#include "ldap_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/error.h"

#define TAG_NEW_COOKIE ((ber_tag_t)0x80U)
#define TAG_REFRESH_DELETE ((ber_tag_t)0xa1U)
#define TAG_REFRESH_PRESENT ((ber_tag_t)0xa2U)
#define TAG_ID_SET ((ber_tag_t)0xa3U)
/* a cookie past this is no cookie (slapd's are about 60 bytes) */
#define COOKIE_MAX (64 * 1024)

int ids_sync_request_encode(bool persist, const struct berval *cookie, struct berval *ret)
{
	BerElement *ber = ber_alloc_t(LBER_USE_DER);
	int rc;
	if (!ber)
		return -ENOMEM;
	rc = ber_printf(ber, "{e", (ber_int_t)(persist ? 3 : 1));
	if (rc != -1 && cookie && cookie->bv_len)
		rc = ber_printf(ber, "O", cookie);
	if (rc != -1)
		rc = ber_printf(ber, "}");
	if (rc != -1)
		rc = ber_flatten2(ber, ret, 1);
	ber_free(ber, 1);
	return rc == -1 ? -ENOMEM : 0;
}

/* A copy of bv (malloc), or NULL with *ok false on ENOMEM or a cookie
 * past COOKIE_MAX. */
static struct berval *cookie_copy(const struct berval *bv, int *r)
{
	if (bv->bv_len > COOKIE_MAX) {
		*r = IDS_E_PROTOCOL;
		return NULL;
	}
	struct berval *c = malloc(sizeof(*c) + bv->bv_len + 1);
	if (!c) {
		*r = -ENOMEM;
		return NULL;
	}
	c->bv_val = (char *)(c + 1);
	c->bv_len = bv->bv_len;
	memcpy(c->bv_val, bv->bv_val, bv->bv_len);
	c->bv_val[bv->bv_len] = '\0';
	return c;
}

void ids_sync_cookie_free(struct berval *cookie)
{
	free(cookie);
}

/* 16 bytes as "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as slapd shows
 * entryUUID; IDS_E_PROTOCOL for another size. */
static int uuid_text(const struct berval *u, char out[IDS_SYNC_UUID_TEXT])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (u->bv_len != 16)
		return IDS_E_PROTOCOL;
	for (size_t i = 0; i < 16; i++) {
		unsigned char b = (unsigned char)u->bv_val[i];
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b >> 4];
		out[o++] = hex[b & 15];
	}
	out[o] = '\0';
	return 0;
}

int ids_sync_state_decode(const struct berval *v, enum ids_sync_state *ret_state,
			  char ret_uuid[IDS_SYNC_UUID_TEXT], struct berval **ret_cookie)
{
	BerElement *ber = ber_init((struct berval *)v);
	struct berval uuid = {0}, cookie = {0};
	ber_int_t state = -1;
	ber_len_t len;
	char text[IDS_SYNC_UUID_TEXT];
	struct berval *c = NULL;
	int r = 0;
	if (!ber)
		return -ENOMEM;
	/* liblber's '{' enters whatever comes: the tag is checked first */
	if (ber_peek_tag(ber, &len) != LBER_SEQUENCE || ber_scanf(ber, "{em", &state, &uuid) == LBER_ERROR ||
	    state < IDS_SYNC_PRESENT || state > IDS_SYNC_DELETE || uuid_text(&uuid, text) < 0)
		r = IDS_E_PROTOCOL;
	if (r == 0 && ber_peek_tag(ber, &len) == LBER_OCTETSTRING) {
		if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
			r = IDS_E_PROTOCOL;
		else
			c = cookie_copy(&cookie, &r);
	}
	ber_free(ber, 1);
	if (r < 0)
		return r;
	*ret_state = (enum ids_sync_state)state;
	memcpy(ret_uuid, text, sizeof(text));
	*ret_cookie = c;
	return 0;
}

int ids_sync_done_decode(const struct berval *v, struct berval **ret_cookie, bool *ret_refresh_deletes)
{
	BerElement *ber = ber_init((struct berval *)v);
	struct berval cookie = {0};
	struct berval *c = NULL;
	ber_int_t deletes = 0;
	ber_len_t len;
	int r = 0;
	if (!ber)
		return -ENOMEM;
	if (ber_peek_tag(ber, &len) != LBER_SEQUENCE || ber_scanf(ber, "{") == LBER_ERROR)
		r = IDS_E_PROTOCOL;
	if (r == 0 && ber_peek_tag(ber, &len) == LBER_OCTETSTRING) {
		if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
			r = IDS_E_PROTOCOL;
		else
			c = cookie_copy(&cookie, &r);
	}
	if (r == 0 && ber_peek_tag(ber, &len) == LBER_BOOLEAN && ber_scanf(ber, "b", &deletes) == LBER_ERROR)
		r = IDS_E_PROTOCOL;
	ber_free(ber, 1);
	if (r < 0) {
		free(c);
		return r;
	}
	*ret_cookie = c;
	*ret_refresh_deletes = deletes != 0;
	return 0;
}

void ids_sync_info_clear(struct ids_sync_info *info)
{
	free(info->cookie);
	free(info->uuids);
	memset(info, 0, sizeof(*info));
}

/* syncIdSet's SET OF syncUUID, each as text into info->uuids. */
static int id_set(BerElement *ber, struct ids_sync_info *info)
{
	ber_len_t len, cap = 0;
	char *last = NULL;
	ber_tag_t tag;
	for (tag = ber_first_element(ber, &len, &last); tag != LBER_DEFAULT;
	     tag = ber_next_element(ber, &len, last)) {
		struct berval u = {0};
		if (tag != LBER_OCTETSTRING || ber_scanf(ber, "m", &u) == LBER_ERROR)
			return IDS_E_PROTOCOL;
		if (info->nuuids == cap) {
			ber_len_t ncap = cap ? 2 * cap : 16;
			void *n = realloc(info->uuids, ncap * sizeof(*info->uuids));
			if (!n)
				return -ENOMEM;
			info->uuids = n;
			cap = ncap;
		}
		if (uuid_text(&u, info->uuids[info->nuuids]) < 0)
			return IDS_E_PROTOCOL;
		info->nuuids++;
	}
	return 0;
}

/* The body of refreshDelete, refreshPresent or syncIdSet, after its tag. */
static int info_sequence(BerElement *ber, struct ids_sync_info *info)
{
	struct berval cookie = {0};
	ber_int_t flag;
	ber_len_t len;
	int r = 0;
	if (ber_scanf(ber, "{") == LBER_ERROR)
		return IDS_E_PROTOCOL;
	if (ber_peek_tag(ber, &len) == LBER_OCTETSTRING) {
		if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
			return IDS_E_PROTOCOL;
		if (!(info->cookie = cookie_copy(&cookie, &r)))
			return r;
	}
	if (ber_peek_tag(ber, &len) == LBER_BOOLEAN) {
		if (ber_scanf(ber, "b", &flag) == LBER_ERROR)
			return IDS_E_PROTOCOL;
		if (info->kind == IDS_SYNC_INFO_ID_SET)
			info->refresh_deletes = flag != 0;
		else
			info->refresh_done = flag != 0;
	}
	if (info->kind != IDS_SYNC_INFO_ID_SET)
		return 0;
	if (ber_peek_tag(ber, &len) != LBER_SET)
		return IDS_E_PROTOCOL;
	return id_set(ber, info);
}

int ids_sync_info_decode(const struct berval *v, struct ids_sync_info *ret)
{
	struct ids_sync_info info = {.refresh_done = true};
	BerElement *ber = ber_init((struct berval *)v);
	struct berval cookie = {0};
	ber_len_t len;
	int r = 0;
	if (!ber)
		return -ENOMEM;
	switch (ber_peek_tag(ber, &len)) {
	case TAG_NEW_COOKIE:
		info.kind = IDS_SYNC_INFO_NEW_COOKIE;
		if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
			r = IDS_E_PROTOCOL;
		else
			info.cookie = cookie_copy(&cookie, &r);
		break;
	case TAG_REFRESH_DELETE: info.kind = IDS_SYNC_INFO_REFRESH_DELETE; goto sequence;
	case TAG_REFRESH_PRESENT: info.kind = IDS_SYNC_INFO_REFRESH_PRESENT; goto sequence;
	case TAG_ID_SET:
		info.kind = IDS_SYNC_INFO_ID_SET;
		info.refresh_done = false;
	sequence:
		r = info_sequence(ber, &info);
		break;
	default: r = IDS_E_PROTOCOL;
	}
	ber_free(ber, 1);
	if (r < 0) {
		ids_sync_info_clear(&info);
		return r;
	}
	*ret = info;
	return 0;
}
