/* dirsync_codec.c — the DirSync control's values, the "more data" loop
 * and the stored cursor (ldap_dirsync.h).  Every value from the server
 * is bounded by liblber's element lengths; a cookie is opaque bytes. */
#include "ldap_dirsync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/error.h"
#include "ids/util.h"

#define CURSOR_MAGIC "idsyncd-dirsync/1"
/* a cookie past this is no cookie (Windows' and Samba's are about 100
 * bytes, plus 24 a replication partner in the up-to-dateness vector) */
#define COOKIE_MAX (64 * 1024)

int ids_dirsync_request_encode(uint32_t flags, int32_t max_bytes, const struct berval *cookie,
			       struct berval *ret)
{
	static const struct berval none = {0, ""};
	BerElement *ber = ber_alloc_t(LBER_USE_DER);
	if (!ber)
		return -ENOMEM;
	/* flags is a signed INTEGER on the wire: INCREMENTAL_VALUES is its
	 * sign bit, sent as a negative number as Windows' clients do */
	int rc = ber_printf(ber, "{iiO}", (ber_int_t)(int32_t)flags, (ber_int_t)max_bytes,
			    cookie && cookie->bv_len ? cookie : &none);
	if (rc != -1)
		rc = ber_flatten2(ber, ret, 1);
	ber_free(ber, 1);
	return rc == -1 ? -ENOMEM : 0;
}

int ids_dirsync_response_decode(const struct berval *v, bool *ret_more, struct berval **ret_cookie)
{
	ber_int_t more = 0, unused = 0;
	struct berval c = {0};
	*ret_cookie = NULL;
	if (!v || !v->bv_val || !v->bv_len)
		return IDS_E_PROTOCOL;
	BerElement *ber = ber_init((struct berval *)v);
	if (!ber)
		return -ENOMEM;
	ber_tag_t tag = ber_scanf(ber, "{iim}", &more, &unused, &c);
	int r = 0;
	if (tag == LBER_ERROR || c.bv_len > COOKIE_MAX)
		r = IDS_E_PROTOCOL;
	else if (!(*ret_cookie = malloc(sizeof(**ret_cookie) + c.bv_len + 1)))
		r = -ENOMEM;
	else {
		struct berval *k = *ret_cookie;
		k->bv_val = (char *)(k + 1);
		k->bv_len = c.bv_len;
		if (c.bv_len)
			memcpy(k->bv_val, c.bv_val, c.bv_len);
		k->bv_val[c.bv_len] = '\0';
		*ret_more = more != 0;
	}
	ber_free(ber, 1);
	return r;
}

void ids_dirsync_cookie_free(struct berval *cookie)
{
	free(cookie);
}

int ids_dirsync_loop_step(struct ids_dirsync_loop *l, const struct berval *ctrl, size_t entries)
{
	struct berval *c = NULL;
	bool more = false;
	unsigned max = l->max_rounds ? l->max_rounds : IDS_DIRSYNC_MAX_ROUNDS;
	if (!ctrl)
		return IDS_E_PROTOCOL; /* not answered as a DirSync search */
	int r = ids_dirsync_response_decode(ctrl, &more, &c);
	if (r)
		return r;
	bool same =
	    l->cookie && l->cookie->bv_len == c->bv_len && !memcmp(l->cookie->bv_val, c->bv_val, c->bv_len);
	l->rounds++;
	l->entries += entries;
	if (more && (!c->bv_len || (same && !entries))) {
		ids_dirsync_cookie_free(c);
		return IDS_E_PROTOCOL;
	}
	ids_dirsync_cookie_free(l->cookie);
	l->cookie = c;
	if (!more)
		return IDS_DIRSYNC_DONE;
	return l->rounds >= max ? IDS_E_LIMIT : IDS_DIRSYNC_AGAIN;
}

void ids_dirsync_loop_clear(struct ids_dirsync_loop *l)
{
	ids_dirsync_cookie_free(l->cookie);
	l->cookie = NULL;
}

int ids_dirsync_cursor_encode(const struct ids_dirsync_cursor *c, unsigned char **ret, size_t *ret_len)
{
	struct ids_buf b = {0};
	if (!c->server || !c->invocation_id || strchr(c->server, '\n') || strchr(c->invocation_id, '\n'))
		return -EINVAL;
	int r = ids_buf_printf(&b, CURSOR_MAGIC " %016" PRIx64 "\n%s\n%s\n%" PRId64 "\n%zu:", c->fingerprint,
			       c->server, c->invocation_id, c->issued, (size_t)c->cookie.bv_len);
	if (r >= 0 && c->cookie.bv_len)
		r = ids_buf_add(&b, c->cookie.bv_val, c->cookie.bv_len);
	if (r >= 0)
		r = ids_buf_putc(&b, '\n');
	if (r < 0) {
		ids_buf_free(&b);
		return -ENOMEM;
	}
	*ret_len = b.len;
	*ret = (unsigned char *)ids_buf_steal(&b);
	return 0;
}

/* The line at *s (bounded by end) without its newline, new; NULL when
 * there is none or on ENOMEM (*s unchanged). */
static char *line(const char **s, const char *end)
{
	const char *nl = memchr(*s, '\n', (size_t)(end - *s));
	if (!nl)
		return NULL;
	char *v = strndup(*s, (size_t)(nl - *s));
	if (v)
		*s = nl + 1;
	return v;
}

int ids_dirsync_cursor_decode(const unsigned char *text, size_t n, struct ids_dirsync_cursor *ret,
			      char **ret_server, char **ret_invocation_id)
{
	const char *s = (const char *)text, *end = s + n;
	char *head = NULL, *server = NULL, *inv = NULL, *issued = NULL, *x = NULL;
	struct ids_dirsync_cursor c = {0};
	unsigned long long fp = 0;
	int r = -EINVAL;
	*ret = (struct ids_dirsync_cursor){0};
	*ret_server = *ret_invocation_id = NULL;
	if (!text || !(head = line(&s, end)) || !(server = line(&s, end)) || !(inv = line(&s, end)) ||
	    !(issued = line(&s, end)))
		goto out;
	if (strncmp(head, CURSOR_MAGIC " ", strlen(CURSOR_MAGIC) + 1) ||
	    strlen(head) != strlen(CURSOR_MAGIC) + 17 ||
	    strspn(head + strlen(CURSOR_MAGIC) + 1, "0123456789abcdef") != 16)
		goto out;
	fp = strtoull(head + strlen(CURSOR_MAGIC) + 1, NULL, 16);
	errno = 0;
	c.issued = strtoll(issued, &x, 10);
	if (errno || x == issued || *x || !*server || !*inv)
		goto out;
	unsigned long len = strtoul(s, &x, 10);
	if (x == s || x >= end || *x != ':' || len > (unsigned long)(end - x - 2) || x[1 + len] != '\n' ||
	    x + 2 + len != end)
		goto out;
	c.cookie = (struct berval){len, x + 1};
	c.fingerprint = fp;
	c.server = *ret_server = server;
	c.invocation_id = *ret_invocation_id = inv;
	server = inv = NULL;
	*ret = c;
	r = 0;
out:
	free(head);
	free(server);
	free(inv);
	free(issued);
	return r;
}

int ids_dirsync_guid_term(struct ids_buf *b, const struct berval *guid)
{
	if (guid->bv_len != 16)
		return -EINVAL;
	int r = ids_buf_puts(b, "(objectGUID=");
	for (size_t i = 0; r >= 0 && i < 16; i++)
		r = ids_buf_printf(b, "\\%02x", (unsigned char)guid->bv_val[i]);
	if (r >= 0)
		r = ids_buf_putc(b, ')');
	return r < 0 ? -ENOMEM : 0;
}
