/* hold.c — the canonical text and digest of a plan, and the difference
 * between two of them: what `idsyncd approve` checks before it applies a
 * plan that a safety threshold held. */
#include "ids/hold.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ids/error.h"

int ids_hold_digest(const struct ids_plan *p, struct ids_buf *text, char ret_hex[IDS_HOLD_DIGEST_LEN])
{
	size_t start = text->len;
	int r = ids_plan_format_text(p, text);
	if (r < 0)
		return r;
	/* the verdict line ("aborted: ...") is last: the same changes are
	 * the same plan whether or not a threshold stopped them */
	if (p->verdict != IDS_VERDICT_OK && text->len > start) {
		size_t end = text->len - 1; /* the last line's newline */
		while (end > start && text->p[end - 1] != '\n')
			end--;
		text->len = end;
		text->p[end] = '\0';
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!EVP_Digest(text->p ? text->p + start : "", text->len - start, md, &n, EVP_sha256(), NULL))
		return IDS_E_INVALID;
	static const char hex[] = "0123456789abcdef";
	for (unsigned int i = 0; i < n && i < 32; i++) {
		ret_hex[2 * i] = hex[md[i] >> 4];
		ret_hex[2 * i + 1] = hex[md[i] & 15];
	}
	ret_hex[64] = '\0';
	return 0;
}

struct line {
	const char *s;
	size_t len, idx;
	bool matched;
};

static int line_cmp(const void *a, const void *b)
{
	const struct line *x = *(struct line *const *)a, *y = *(struct line *const *)b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);
	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The lines of s (borrowed), and an index of them sorted by content. */
static int split(const char *s, struct line **ret, struct line ***ret_sorted, size_t *ret_n)
{
	size_t n = 0;
	for (const char *q = s; *q; n++) {
		const char *nl = strchr(q, '\n');
		q = nl ? nl + 1 : q + strlen(q);
	}
	struct line *v = calloc(n ? n : 1, sizeof(*v));
	struct line **sorted = calloc(n ? n : 1, sizeof(*sorted));
	if (!v || !sorted) {
		free(v);
		free(sorted);
		return -ENOMEM;
	}
	const char *q = s;
	for (size_t i = 0; i < n; i++) {
		const char *nl = strchr(q, '\n');
		v[i] = (struct line){.s = q, .len = nl ? (size_t)(nl - q) : strlen(q), .idx = i};
		sorted[i] = &v[i];
		q = nl ? nl + 1 : q + strlen(q);
	}
	qsort(sorted, n, sizeof(*sorted), line_cmp);
	*ret = v;
	*ret_sorted = sorted;
	*ret_n = n;
	return 0;
}

static long put_unmatched(const struct line *v, size_t n, const char *mark, struct ids_buf *out)
{
	long k = 0;
	for (size_t i = 0; i < n; i++)
		if (!v[i].matched) {
			k++;
			if (ids_buf_puts(out, mark) < 0 || ids_buf_add(out, v[i].s, v[i].len) < 0 ||
			    ids_buf_putc(out, '\n') < 0)
				return -ENOMEM;
		}
	return k;
}

/* A multiset difference rather than a longest common subsequence: plan
 * lines are sorted and each names its user, so what was added, removed
 * or changed is exactly the lines only one side has, and this stays
 * O(n log n) for plans of a hundred thousand lines. */
long ids_hold_diff(const char *held, const char *now, struct ids_buf *out)
{
	struct line *a = NULL, *b = NULL, **sa = NULL, **sb = NULL;
	size_t na = 0, nb = 0;
	long r = split(held, &a, &sa, &na);
	if (r >= 0)
		r = split(now, &b, &sb, &nb);
	for (size_t i = 0, j = 0; r >= 0 && i < na && j < nb;) {
		struct line x = *sa[i], y = *sb[j];
		x.idx = y.idx = 0; /* content only */
		int c = line_cmp(&(const struct line *){&x}, &(const struct line *){&y});
		if (c == 0) {
			sa[i++]->matched = true;
			sb[j++]->matched = true;
		} else if (c < 0) {
			i++;
		} else {
			j++;
		}
	}
	long k1 = 0, k2 = 0;
	if (r >= 0 && (k1 = put_unmatched(a, na, "- ", out)) >= 0 &&
	    (k2 = put_unmatched(b, nb, "+ ", out)) >= 0)
		r = k1 + k2;
	else if (r >= 0)
		r = -ENOMEM;
	free(a);
	free(b);
	free(sa);
	free(sb);
	return r;
}
