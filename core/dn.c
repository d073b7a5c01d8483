/* dn.c — LDAP distinguished names in one canonical form (RFC 4514) and
 * filter value escaping (RFC 4515).
 *
 * Directories hand out the same DN in many spellings: "CN=Novák\, Jan,
 * OU=People" in a member value, "cn=novák\2c jan,ou=people" as the entry's
 * own DN.  Membership resolution compares DNs as strings, so both must be
 * turned into one form first: types and values lower-cased (ASCII only: we
 * do not implement Unicode case folding), insignificant spaces dropped,
 * escapes decoded and re-encoded the one way below, the values of a
 * multi-valued RDN sorted. */
#include "ids/dn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ids/util.h"

static const char hexdig[] = "0123456789ABCDEF";

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Characters RFC 4514 requires escaped anywhere in a value (with NUL). */
static bool special(char c)
{
	switch (c) {
	case ',':
	case '+':
	case '"':
	case '\\':
	case '<':
	case '>':
	case ';':
	case '\0': return true;
	default: return false;
	}
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A decoded value may legitimately hold NUL (written \00); everything
 * else must be UTF-8, so check the pieces between the NULs. */
static bool value_utf8_valid(const char *s, size_t n)
{
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '\0') {
			if (!ids_utf8_valid(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* Appends the canonical encoding of a decoded value: only what RFC 4514
 * section 2.4 requires is escaped, always as \XX, so that "\," and "\2c"
 * in the input come out the same. */
static int encode_value(struct ids_buf *b, const char *v, size_t n)
{
	int r = 0;
	size_t plain = 0; /* start of the run of bytes not yet appended */
	for (size_t i = 0; r >= 0 && i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		bool esc = special((char)c) || (i == 0 && (c == '#' || c == ' ')) || (i == n - 1 && c == ' ');
		if (!esc)
			continue;
		char e[3] = {'\\', hexdig[c >> 4], hexdig[c & 15]};
		r = ids_buf_add(b, v + plain, i - plain);
		if (r >= 0)
			r = ids_buf_add(b, e, sizeof(e));
		plain = i + 1;
	}
	return r < 0 ? r : ids_buf_add(b, v + plain, n - plain);
}

struct dn_parser {
	const char *p, *end;
	struct ids_buf val; /* scratch: the decoded value of one AVA */
};

static void skip_spaces(struct dn_parser *ps)
{
	while (ps->p < ps->end && *ps->p == ' ')
		ps->p++;
}

/* attributeType = descr / numericoid; appended lower-cased to out. */
static int parse_type(struct dn_parser *ps, struct ids_buf *out)
{
	const char *s = ps->p;
	if (s < ps->end && is_alpha(*s)) {
		while (ps->p < ps->end && (is_alpha(*ps->p) || is_digit(*ps->p) || *ps->p == '-'))
			ps->p++;
	} else if (s < ps->end && is_digit(*s)) {
		/* numericoid: number *( "." number ), no empty arcs */
		for (;;) {
			if (ps->p >= ps->end || !is_digit(*ps->p))
				return -EINVAL;
			while (ps->p < ps->end && is_digit(*ps->p))
				ps->p++;
			if (ps->p >= ps->end || *ps->p != '.')
				break;
			ps->p++;
		}
	} else {
		return -EINVAL;
	}
	for (const char *c = s; c < ps->p; c++) {
		int r = ids_buf_putc(out, ascii_lower(*c));
		if (r < 0)
			return r;
	}
	return 0;
}

/* "#" hexstring: a BER value we do not decode; kept as lower-case hex. */
static int parse_hexstring(struct dn_parser *ps, struct ids_buf *out)
{
	int r = ids_buf_putc(out, '#');
	ps->p++;
	size_t pairs = 0;
	while (r >= 0 && ps->end - ps->p >= 2 && hexval(ps->p[0]) >= 0 && hexval(ps->p[1]) >= 0) {
		char h[2] = {ascii_lower(ps->p[0]), ascii_lower(ps->p[1])};
		r = ids_buf_add(out, h, 2);
		ps->p += 2;
		pairs++;
	}
	if (r < 0)
		return r;
	if (pairs == 0)
		return -EINVAL;
	skip_spaces(ps);
	/* anything but a separator here is an odd digit or junk */
	if (ps->p < ps->end && *ps->p != ',' && *ps->p != '+')
		return -EINVAL;
	return 0;
}

/* A string value: decoded into ps->val, then lower-cased and re-encoded
 * onto out.  Unescaped trailing spaces are insignificant; escaped ones are
 * not, so `keep` remembers the end of the last significant byte. */
static int parse_string(struct dn_parser *ps, struct ids_buf *out)
{
	ids_buf_reset(&ps->val);
	size_t keep = 0;
	int r = 0;
	while (r >= 0 && ps->p < ps->end && *ps->p != ',' && *ps->p != '+') {
		char c = *ps->p;
		if (c == '\\') {
			if (ps->end - ps->p >= 3 && hexval(ps->p[1]) >= 0 && hexval(ps->p[2]) >= 0) {
				c = (char)(hexval(ps->p[1]) << 4 | hexval(ps->p[2]));
				ps->p += 3;
			} else if (ps->end - ps->p >= 2 && strchr(" \"#+,;<=>\\", ps->p[1]) && ps->p[1]) {
				c = ps->p[1];
				ps->p += 2;
			} else {
				return -EINVAL;
			}
			r = ids_buf_putc(&ps->val, c);
			keep = ps->val.len;
			continue;
		}
		/* these must be escaped in RFC 4514; ';' was RFC 1779's separator */
		if (c == '"' || c == ';' || c == '<' || c == '>' || c == '\0')
			return -EINVAL;
		/* a run of plain bytes in one append (DNs come by the million) */
		const char *run = ps->p;
		while (ps->p < ps->end && !special(*ps->p))
			ps->p++;
		r = ids_buf_add(&ps->val, run, (size_t)(ps->p - run));
		for (const char *q = ps->p; q > run; q--) {
			if (q[-1] != ' ') {
				keep = ps->val.len - (size_t)(ps->p - q);
				break;
			}
		}
	}
	if (r < 0)
		return r;
	ps->val.len = keep;
	/* an empty value ("cn=") has nothing to check or encode, and val.p
	 * may still be NULL: NULL + 0 is undefined behaviour */
	if (keep == 0)
		return 0;
	if (!value_utf8_valid(ps->val.p, keep))
		return -EINVAL;
	for (size_t i = 0; i < keep; i++)
		ps->val.p[i] = ascii_lower(ps->val.p[i]);
	return encode_value(out, ps->val.p, keep);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One RDN: its AVAs normalized one by one into `avas` (NUL-separated), then
 * sorted and joined with '+' onto out. */
static int parse_rdn(struct dn_parser *ps, struct ids_buf *out)
{
	struct ids_buf avas = {0};
	size_t *offs = NULL, noffs = 0;
	char **sorted = NULL;
	int r;

	for (;;) {
		size_t *o = realloc(offs, (noffs + 1) * sizeof(*offs));
		if (!o) {
			r = -ENOMEM;
			goto out;
		}
		offs = o;
		offs[noffs++] = avas.len;

		skip_spaces(ps);
		r = parse_type(ps, &avas);
		if (r < 0)
			goto out;
		skip_spaces(ps);
		if (ps->p >= ps->end || *ps->p != '=') {
			r = -EINVAL;
			goto out;
		}
		ps->p++;
		r = ids_buf_putc(&avas, '=');
		if (r < 0)
			goto out;
		skip_spaces(ps);
		if (ps->p < ps->end && *ps->p == '#')
			r = parse_hexstring(ps, &avas);
		else
			r = parse_string(ps, &avas);
		if (r < 0)
			goto out;
		/* the terminating NUL separates this AVA from the next */
		r = ids_buf_putc(&avas, '\0');
		if (r < 0)
			goto out;
		if (ps->p < ps->end && *ps->p == '+') {
			ps->p++;
			continue;
		}
		break;
	}

	sorted = malloc(noffs * sizeof(*sorted));
	if (!sorted) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < noffs; i++)
		sorted[i] = avas.p + offs[i];
	/* "cn=a+uid=b" and "uid=b+cn=a" name the same entry */
	qsort(sorted, noffs, sizeof(*sorted), cmp_str);
	for (size_t i = 0; r >= 0 && i < noffs; i++) {
		if (i > 0)
			r = ids_buf_putc(out, '+');
		if (r >= 0)
			r = ids_buf_puts(out, sorted[i]);
	}
out:
	free(sorted);
	free(offs);
	ids_buf_free(&avas);
	return r;
}

int ids_dn_normalize(const char *dn, size_t n, char **ret)
{
	struct dn_parser ps = {.p = dn, .end = dn + n};
	struct ids_buf out = {0};
	int r = 0;

	skip_spaces(&ps);
	/* the empty DN (the root) is well-formed */
	while (ps.p < ps.end) {
		r = parse_rdn(&ps, &out);
		if (r < 0)
			goto out;
		if (ps.p >= ps.end)
			break;
		/* parse_rdn stops only at the end, '+' handled inside, or ',' */
		ps.p++;
		r = ids_buf_putc(&out, ',');
		if (r < 0)
			goto out;
		skip_spaces(&ps);
		if (ps.p >= ps.end) {
			r = -EINVAL; /* trailing comma: an empty RDN */
			goto out;
		}
	}
	*ret = ids_buf_steal(&out);
	if (!*ret)
		r = -ENOMEM;
out:
	ids_buf_free(&out);
	ids_buf_free(&ps.val);
	return r < 0 ? r : 0;
}

int ids_dn_filter_escape(struct ids_buf *b, const char *v, size_t n)
{
	int r = 0;
	size_t i = 0;
	while (r >= 0 && i < n) {
		unsigned char c = (unsigned char)v[i];
		size_t len = 1;
		if (c >= 0x80) {
			/* a whole valid UTF-8 sequence passes as is (RFC 4515 UTFMB);
			 * a stray byte is escaped so that the filter stays valid */
			len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
			if (len > n - i || !ids_utf8_valid(v + i, len))
				len = 0;
		}
		if (len == 0 || c == '*' || c == '(' || c == ')' || c == '\\' || c == '\0') {
			static const char lo[] = "0123456789abcdef";
			char e[3] = {'\\', lo[c >> 4], lo[c & 15]};
			r = ids_buf_add(b, e, sizeof(e));
			i++;
		} else {
			r = ids_buf_add(b, v + i, len);
			i += len;
		}
	}
	/* keep the "NUL-terminated once anything was added" promise for n == 0 */
	if (r >= 0 && n == 0)
		r = ids_buf_add(b, "", 0);
	return r;
}
