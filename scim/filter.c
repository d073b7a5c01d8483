/* filter.c — the SCIM filters a provisioning client sends (scim.h).
 *
 * Only what Okta, Entra and the others send to find a resource is
 * understood: `eq` on the identifying attributes, joined by `and`.  Any
 * other operator or attribute is refused with invalidFilter rather than
 * half-understood: a filter read wrongly finds the wrong user, and the
 * client then updates that one. */
#include "ids/scim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CORE_USER "urn:ietf:params:scim:schemas:core:2.0:User:"
#define CORE_GROUP "urn:ietf:params:scim:schemas:core:2.0:Group:"

static int bad(struct ids_scim_fault *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct ids_scim_fault *f, const char *fmt, ...)
{
	va_list ap;
	f->status = 400;
	f->scim_type = "invalidFilter";
	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void skip_ws(const char **p)
{
	while (**p == ' ' || **p == '\t')
		(*p)++;
}

/* A word of the grammar (case-insensitive) followed by a space. */
static bool word(const char **p, const char *w)
{
	size_t n = strlen(w);
	if (strncasecmp(*p, w, n) != 0 || ((*p)[n] != ' ' && (*p)[n] != '\t'))
		return false;
	*p += n;
	skip_ws(p);
	return true;
}

/* Appends the UTF-8 of code point c to *o. */
static void put_utf8(char **o, unsigned c)
{
	char *d = *o;
	if (c < 0x80) {
		*d++ = (char)c;
	} else if (c < 0x800) {
		*d++ = (char)(0xC0 | (c >> 6));
		*d++ = (char)(0x80 | (c & 0x3F));
	} else if (c < 0x10000) {
		*d++ = (char)(0xE0 | (c >> 12));
		*d++ = (char)(0x80 | ((c >> 6) & 0x3F));
		*d++ = (char)(0x80 | (c & 0x3F));
	} else {
		*d++ = (char)(0xF0 | (c >> 18));
		*d++ = (char)(0x80 | ((c >> 12) & 0x3F));
		*d++ = (char)(0x80 | ((c >> 6) & 0x3F));
		*d++ = (char)(0x80 | (c & 0x3F));
	}
	*o = d;
}

static int hex4(const char *p, unsigned *ret)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (d < 0)
			return -1;
		v = v * 16 + (unsigned)d;
	}
	*ret = v;
	return 0;
}

/* A JSON string at *p into *o (NUL-terminated; no NUL inside). */
static int string(const char **p, char **o, struct ids_scim_fault *f)
{
	const char *s = *p + 1;
	if (**p != '"')
		return bad(f, "expected a quoted string");
	while (*s != '"') {
		unsigned c = (unsigned char)*s;
		if (!c || c < 0x20)
			return bad(f, "unterminated string");
		if (c != '\\') {
			*(*o)++ = *s++;
			continue;
		}
		s++;
		const char *esc = strchr("\"\\/bfnrt", *s);
		if (*s && esc) {
			*(*o)++ = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
			s++;
			continue;
		}
		if (*s != 'u' || hex4(s + 1, &c) < 0)
			return bad(f, "bad escape in a string");
		s += 5;
		if (c >= 0xD800 && c < 0xDC00) {
			unsigned lo;
			if (s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
				return bad(f, "lone surrogate in a string");
			c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
			s += 6;
		} else if ((c >= 0xDC00 && c < 0xE000) || c == 0) {
			return bad(f, "bad code point in a string");
		}
		put_utf8(o, c);
	}
	*(*o)++ = '\0';
	*p = s + 1;
	return 0;
}

/* An attribute path: the core schema URN prefix is dropped. */
static int attr(const char **p, struct ids_scim_cond *c, char **o, struct ids_scim_fault *f)
{
	if (!strncasecmp(*p, CORE_USER, strlen(CORE_USER)))
		*p += strlen(CORE_USER);
	else if (!strncasecmp(*p, CORE_GROUP, strlen(CORE_GROUP)))
		*p += strlen(CORE_GROUP);
	static const struct {
		const char *name;
		enum ids_scim_attr a;
	} names[] = {{"userName", IDS_SCIM_A_USER_NAME},
		     {"externalId", IDS_SCIM_A_EXTERNAL_ID},
		     {"id", IDS_SCIM_A_ID},
		     {"displayName", IDS_SCIM_A_DISPLAY_NAME},
		     {"emails.value", IDS_SCIM_A_EMAIL},
		     {"emails", IDS_SCIM_A_EMAIL}};
	size_t n = strcspn(*p, " \t[");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i].name) != n || strncasecmp(*p, names[i].name, n) != 0)
			continue;
		*p += n;
		c->attr = names[i].a;
		c->type = NULL;
		if (c->attr != IDS_SCIM_A_EMAIL || **p != '[')
			return c->attr == IDS_SCIM_A_EMAIL && n == 6 ? bad(f, "expected emails.value") : 0;
		/* emails[type eq "work"].value */
		(*p)++;
		skip_ws(p);
		if (!word(p, "type") || !word(p, "eq"))
			return bad(f, "expected emails[type eq \"...\"]");
		c->type = *o;
		if (string(p, o, f) < 0)
			return -EINVAL;
		skip_ws(p);
		if (strncasecmp(*p, "].value", 7) != 0)
			return bad(f, "expected ].value after emails[type eq ...");
		*p += 7;
		return 0;
	}
	return bad(f, "unsupported attribute \"%.*s\" (userName, externalId, id, displayName, emails.value)",
		   (int)(n > 64 ? 64 : n), *p);
}

int ids_scim_filter_parse(const char *s, struct ids_scim_filter *ret, struct ids_scim_fault *f)
{
	struct ids_scim_filter flt = {0};
	/* values are never longer than the filter itself */
	char *o = flt.buf = malloc(strlen(s) + 1);
	const char *p = s;
	if (!o)
		return -ENOMEM;
	skip_ws(&p);
	for (;;) {
		struct ids_scim_cond *c = &flt.c[flt.n];
		if (flt.n == IDS_SCIM_FILTER_MAX) {
			bad(f, "more than %d conditions", IDS_SCIM_FILTER_MAX);
			goto fail;
		}
		if (attr(&p, c, &o, f) < 0)
			goto fail;
		skip_ws(&p);
		if (!word(&p, "eq")) {
			bad(f, "only the eq operator is supported");
			goto fail;
		}
		c->value = o;
		if (string(&p, &o, f) < 0)
			goto fail;
		flt.n++;
		skip_ws(&p);
		if (!*p)
			break;
		if (!word(&p, "and")) {
			bad(f, "expected \"and\" or the end of the filter");
			goto fail;
		}
	}
	*ret = flt;
	return 0;
fail:
	free(flt.buf);
	return -EINVAL;
}

void ids_scim_filter_clear(struct ids_scim_filter *flt)
{
	free(flt->buf);
	memset(flt, 0, sizeof(*flt));
}
