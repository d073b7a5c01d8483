/* floor_ldap.c — the LDAP half of the benchmark's physical floor: the least
 * a client can do to read the entries idsyncd reads.
 *
 *   floor_ldap --uri URI [--ca FILE] [--bind-dn DN --password-file FILE]
 *              [--page-size N] [--no-starttls] [--readahead]
 *              --search BASE FILTER ATTR,ATTR,... [--search ...]
 *
 * Same transport as the connector (StartTLS on ldap://, certificate
 * verified against --ca, simple bind), same searches (the runner passes the
 * connector's bases, filters and attribute lists), same paging (RFC 2696,
 * one outstanding page at a time).  Every value of every attribute is
 * visited through the zero-copy BER accessors and its bytes summed, so that
 * nothing the server sent goes unread — and nothing else is done with it.
 * --readahead reads the socket through liblber's read-ahead buffer below
 * TLS, as the connector does since it was found to halve the system calls
 * (docs/benchmarks.md, "Tier M's full no-change run"): libldap's default,
 * without it, is two read() calls and a poll() per entry.
 *
 * Prints one JSON object: entries, values, bytes, pages, seconds (from
 * before the connect to after the unbind).  Exit 0, or 1 with a message on
 * stderr.  A benchmark tool, not part of idsyncd. */
#include <errno.h>
#include <ldap.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SEARCHES 8
#define MAX_ATTRS 32

struct search {
	const char *base, *filter;
	char *attrlist; /* the command line's copy, cut at the commas */
	char *attrs[MAX_ATTRS + 1];
};

struct totals {
	unsigned long long entries, values, bytes, pages;
};

static int die(const char *what, int lrc)
{
	fprintf(stderr, "floor_ldap: %s: %s (%d)\n", what, ldap_err2string(lrc), lrc);
	return 1;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads a password file whole, minus one trailing newline. */
static char *read_secret(const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[1024];
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if (n && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	return strdup(buf);
}

/* Visits every attribute value of one entry. */
static int read_entry(LDAP *ld, LDAPMessage *msg, struct totals *t)
{
	BerElement *ber = NULL;
	struct berval dn;
	int lrc = ldap_get_dn_ber(ld, msg, &ber, &dn);
	if (lrc != LDAP_SUCCESS)
		return lrc;
	t->bytes += dn.bv_len;
	for (;;) {
		struct berval name = {0};
		BerVarray vals = NULL;
		lrc = ldap_get_attribute_ber(ld, msg, ber, &name, &vals);
		if (lrc != LDAP_SUCCESS || !name.bv_val)
			break;
		for (size_t i = 0; vals && vals[i].bv_val; i++) {
			t->values++;
			t->bytes += vals[i].bv_len;
		}
		ber_memfree(vals);
	}
	ber_free(ber, 0);
	t->entries++;
	return lrc;
}

/* One paged search, page after page, until the server's cookie is empty. */
static int run_search(LDAP *ld, const struct search *s, int page_size, struct totals *t)
{
	struct berval *cookie = NULL;
	int ret = 1;
	for (;;) {
		LDAPControl *pc = NULL, *sctrls[2] = {NULL, NULL}, **rctrls = NULL;
		LDAPMessage *msg = NULL;
		struct berval empty = {0, ""};
		int msgid, lrc, code = LDAP_OTHER, type;
		lrc = ldap_create_page_control(ld, page_size, cookie ? cookie : &empty, 0, &pc);
		if (lrc != LDAP_SUCCESS)
			return die("page control", lrc);
		sctrls[0] = pc;
		lrc = ldap_search_ext(ld, s->base, LDAP_SCOPE_SUBTREE, s->filter, (char **)s->attrs, 0,
				      sctrls, NULL, NULL, LDAP_NO_LIMIT, &msgid);
		ldap_control_free(pc);
		if (lrc != LDAP_SUCCESS)
			return die(s->base, lrc);
		while ((type = ldap_result(ld, msgid, LDAP_MSG_ONE, NULL, &msg)) == LDAP_RES_SEARCH_ENTRY ||
		       type == LDAP_RES_SEARCH_REFERENCE) {
			if (type == LDAP_RES_SEARCH_ENTRY && (lrc = read_entry(ld, msg, t)) != LDAP_SUCCESS) {
				ldap_msgfree(msg);
				return die("entry", lrc);
			}
			ldap_msgfree(msg);
		}
		if (type != LDAP_RES_SEARCH_RESULT) {
			ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &code);
			return die("result", code);
		}
		lrc = ldap_parse_result(ld, msg, &code, NULL, NULL, NULL, &rctrls, 1);
		if (lrc != LDAP_SUCCESS || code != LDAP_SUCCESS)
			return die(s->base, lrc != LDAP_SUCCESS ? lrc : code);
		t->pages++;
		LDAPControl *resp = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL);
		ber_int_t estimate = 0;
		ber_bvfree(cookie);
		cookie = NULL;
		if (resp) {
			cookie = ber_memcalloc(1, sizeof(*cookie));
			if (!cookie ||
			    ldap_parse_pageresponse_control(ld, resp, &estimate, cookie) != LDAP_SUCCESS) {
				ldap_controls_free(rctrls);
				return die("paging control", LDAP_DECODING_ERROR);
			}
		}
		ldap_controls_free(rctrls);
		if (!cookie || !cookie->bv_len)
			break;
	}
	ret = 0;
	ber_bvfree(cookie);
	return ret;
}

static int usage(void)
{
	fputs("usage: floor_ldap --uri URI [--ca FILE] [--bind-dn DN --password-file FILE] [--page-size N]\n"
	      "                  [--no-starttls] [--readahead] --search BASE FILTER ATTRS [--search ...]\n",
	      stderr);
	return 2;
}

int main(int argc, char **argv)
{
	const char *uri = NULL, *ca = NULL, *bind_dn = NULL, *pwfile = NULL;
	struct search searches[MAX_SEARCHES];
	size_t nsearch = 0;
	int page_size = 500;
	bool starttls = true, readahead = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool more = i + 1 < argc;
		if (!strcmp(a, "--uri") && more) {
			uri = argv[++i];
		} else if (!strcmp(a, "--ca") && more) {
			ca = argv[++i];
		} else if (!strcmp(a, "--bind-dn") && more) {
			bind_dn = argv[++i];
		} else if (!strcmp(a, "--password-file") && more) {
			pwfile = argv[++i];
		} else if (!strcmp(a, "--page-size") && more) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v <= 0 || v > INT_MAX)
				return usage();
			page_size = (int)v;
		} else if (!strcmp(a, "--no-starttls")) {
			starttls = false;
		} else if (!strcmp(a, "--readahead")) {
			readahead = true;
		} else if (!strcmp(a, "--search") && i + 3 < argc && nsearch < MAX_SEARCHES) {
			struct search *s = &searches[nsearch++];
			size_t n = 0;
			s->base = argv[++i];
			s->filter = argv[++i];
			s->attrlist = argv[++i];
			for (char *tok = strtok(s->attrlist, ","); tok && n < MAX_ATTRS;
			     tok = strtok(NULL, ","))
				s->attrs[n++] = tok;
			s->attrs[n] = NULL;
		} else {
			return usage();
		}
	}
	if (!uri || !nsearch || (bind_dn && !pwfile))
		return usage();

	double t0 = mono();
	LDAP *ld = NULL;
	int lrc = ldap_initialize(&ld, uri);
	if (lrc != LDAP_SUCCESS)
		return die(uri, lrc);
	int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, newctx = 0;
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	/* verification on, the given CA only: what the connector does */
	ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	if (ca)
		ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, ca);
	if ((lrc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &newctx)) != LDAP_OPT_SUCCESS)
		return die("TLS context", lrc);
	if (readahead) {
		/* the TCP connection first, so that the buffer goes below TLS */
		Sockbuf *sb = NULL;
		if ((lrc = ldap_connect(ld)) != LDAP_SUCCESS)
			return die("connect", lrc);
		if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS ||
		    ber_sockbuf_add_io(sb, &ber_sockbuf_io_readahead, LBER_SBIOD_LEVEL_PROVIDER, NULL) != 0)
			return die("read-ahead buffer", LDAP_NO_MEMORY);
	}
	if (starttls && strncmp(uri, "ldap://", 7) == 0 &&
	    (lrc = ldap_start_tls_s(ld, NULL, NULL)) != LDAP_SUCCESS)
		return die("StartTLS", lrc);
	if (bind_dn) {
		char *pw = read_secret(pwfile);
		if (!pw) {
			fprintf(stderr, "floor_ldap: %s: %s\n", pwfile, strerror(errno));
			return 1;
		}
		struct berval cred = {strlen(pw), pw};
		lrc = ldap_sasl_bind_s(ld, bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
		free(pw);
		if (lrc != LDAP_SUCCESS)
			return die("bind", lrc);
	}
	struct totals t = {0};
	for (size_t i = 0; i < nsearch; i++)
		if (run_search(ld, &searches[i], page_size, &t))
			return 1;
	ldap_unbind_ext(ld, NULL, NULL);
	double secs = mono() - t0;
	printf("{\"entries\": %llu, \"values\": %llu, \"bytes\": %llu, \"pages\": %llu, \"seconds\": %.6f}\n",
	       t.entries, t.values, t.bytes, t.pages, secs);
	return 0;
}
