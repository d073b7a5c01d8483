/* fuzz_google.c — libFuzzer target: the Google Directory API parsers
 * (connectors/google_parse.c) on bodies straight from the network, and
 * the service account key file parser.
 *
 * The first byte picks the parser (users, groups, members, token, error
 * message, rate-limit check, key file); the rest is the body.  A page that
 * parsed is followed by ids_snapshot_finish, as in a run.  Checked besides
 * memory safety: a failed parse says why and hands back no next token; an
 * error message made for the log is printable and bounded; a key parse
 * failure never quotes the key. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../connectors/google_int.h"
#include "ids/snapshot.h"
#include "ids/oauth.h"

static void broken(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_google: %s: %s\n", what, detail ? detail : "");
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned which = data[0] % 7;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	struct ids_snapshot *s = NULL;
	struct ids_error err = {0};
	struct ids_google_page page = {0};
	struct ids_strv attrs = {0}, scope = {0}, ids = {0};
	bool matched[2] = {false, false};
	int r = 0;

	if (ids_snapshot_new(&s) < 0)
		return 0;
	/* a custom schema field, an indexed path and a path through arrays */
	if (ids_strv_push(&attrs, "customSchemas.Contact_Center.tenant") < 0 ||
	    ids_strv_push(&attrs, "organizations.0.department") < 0 ||
	    ids_strv_push(&attrs, "emails.address") < 0 ||
	    ids_strv_push(&scope, "cc-support@example.org") < 0 || ids_strv_push(&scope, "03abc") < 0)
		goto out;
	switch (which) {
	case 0: {
		struct ids_google_umap m = {{0}, &attrs};
		memcpy(m.field, ids_google_default_fields, sizeof(m.field));
		r = ids_google_parse_users(body, len, &m, s, &page, &err);
		break;
	}
	case 1:
		r = ids_google_parse_groups(body, len, data[0] & 0x80 ? NULL : &scope, matched, s, &ids,
					    &page, &err);
		break;
	case 2: r = ids_google_parse_members(body, len, "03abc", s, &page, &err); break;
	case 3: {
		char *token = NULL;
		long expires = 0;
		r = ids_oauth_parse_token(body, len, &token, &expires, &err);
		if (r >= 0 && (!token || expires < 0 || expires > 86400))
			broken("a token answer parsed without a token or out of 0..86400 s", NULL);
		ids_secret_free(token);
		break;
	}
	case 4: {
		char *msg = NULL;
		r = ids_google_error_message(body, len, &msg);
		if (r >= 0) {
			if (!msg)
				broken("no error message", NULL);
			/* 300 bytes of text plus the wrapping words */
			if (strlen(msg) > 400)
				broken("error message not bounded", msg);
			for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
				if (*p < 0x20 || *p == 0x7f)
					broken("control byte in an error message", msg);
			if (!ids_utf8_valid(msg, strlen(msg)))
				broken("an error message that is not UTF-8 (cut inside a character?)", msg);
		}
		free(msg);
		r = 0;
		break;
	}
	case 5:
		(void)ids_google_rate_limited(429 - (data[0] & 0x80 ? 26 : 0), body, len);
		(void)ids_google_rate_limited(403, body, len);
		break;
	case 6: {
		struct ids_google_key k = {0};
		r = ids_google_key_parse(body, len, "key.json", &k, &err);
		if (r < 0 && err.msg && strstr(err.msg, "PRIVATE KEY-----\n"))
			broken("a key file error quotes the key", err.msg);
		ids_google_key_clear(&k);
		break;
	}
	}
	if (r < 0 && which <= 3) {
		if (!err.msg)
			broken("a failed parse without a message", NULL);
		/* the message goes into sync_run.error, a PostgreSQL text
		 * column: invalid UTF-8 there would lose the failed run's row */
		if (!ids_utf8_valid(err.msg, strlen(err.msg)))
			broken("a parse error message that is not UTF-8", err.msg);
		if (page.next)
			broken("a failed parse handed back a next token", page.next);
	}
	if (r >= 0 && which <= 2 && ids_snapshot_finish(s) < 0)
		broken("a parsed page left a snapshot that does not finish", NULL);
out:
	ids_google_page_clear(&page);
	ids_error_clear(&err);
	ids_strv_free(&attrs);
	ids_strv_free(&scope);
	ids_strv_free(&ids);
	ids_snapshot_free(s);
	return 0;
}
