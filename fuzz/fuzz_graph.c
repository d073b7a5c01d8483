/* fuzz_graph.c — libFuzzer target: the Microsoft Graph page parsers
 * (connectors/graph_parse.c) on bodies straight from the network.
 *
 * The first byte picks the parser (users, groups, members, token, error);
 * the rest is the body.  A users or groups page that parsed is followed by
 * ids_snapshot_finish, as in a run.  Checked besides memory safety: a
 * failed parse says why (err has a message) and never hands back a next
 * link; an error text made for a log line is printable. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/graph.h"
#include "ids/snapshot.h"
#include "ids/oauth.h"

/* The config's Entra defaults (id, userPrincipalName, ...), with one
 * nested path so that a.b lookups run too. */
static const char *const fields[6] = {"id",	 "userPrincipalName",
				      "mail",	 "givenName",
				      "surname", "onPremisesExtensionAttributes.extensionAttribute1"};

static void broken(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_graph: %s: %s\n", what, detail ? detail : "");
	abort();
}

/* A text meant for a log line: no control bytes. */
static void check_printable(const char *what, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; s && *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			broken(what, "control byte in a log text");
	if (s && !ids_utf8_valid(s, strlen(s)))
		broken(what, "not UTF-8 (a log text, and maybe sync_run.error)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned which = data[0] % 5;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	struct ids_snapshot *s = NULL;
	struct ids_error err = {0};
	struct ids_graph_page page = {0};
	struct ids_strv rule_attrs = {0}, scope = {0}, ids = {0};
	bool matched[2] = {false, false};
	int r = 0;

	if (ids_snapshot_new(&s) < 0)
		return 0;
	if (ids_strv_push(&rule_attrs, "department") < 0 || ids_strv_push(&rule_attrs, "memberOf") < 0 ||
	    ids_strv_push(&scope, "CC-Support") < 0 ||
	    ids_strv_push(&scope, "00000000-0000-0000-0000-00000000000a") < 0)
		goto out;
	switch (which) {
	case 0: {
		const struct ids_graph_user_map m = {fields, &rule_attrs};
		r = ids_graph_parse_users(body, len, &m, s, &page, &err);
		break;
	}
	case 1:
		r = ids_graph_parse_groups(body, len, data[0] & 0x80 ? NULL : &scope, s, &ids, matched, &page,
					   &err);
		break;
	case 2:
		r = ids_graph_parse_members(body, len, "00000000-0000-0000-0000-00000000000a", s, &page,
					    &err);
		break;
	case 3: {
		char *token = NULL;
		long expires = 0;
		r = ids_oauth_parse_token(body, len, &token, &expires, &err);
		if (r >= 0 && !token)
			broken("a token answer parsed without a token", NULL);
		ids_secret_free(token);
		break;
	}
	case 4: {
		char *code = NULL, *msg = NULL, *req = NULL;
		r = ids_graph_parse_error(body, len, &code, &msg, &req);
		check_printable("error code", code);
		check_printable("error message", msg);
		check_printable("request id", req);
		free(code);
		free(msg);
		free(req);
		break;
	}
	}
	if (r < 0 && which != 4) {
		if (!err.msg)
			broken("a failed parse without a message", NULL);
		/* the message goes into sync_run.error, a PostgreSQL text
		 * column: invalid UTF-8 there would lose the failed run's row
		 * (this target found graph_parse.c quoting jansson's error
		 * text, which holds up to 20 bytes of the input) */
		if (!ids_utf8_valid(err.msg, strlen(err.msg)))
			broken("a parse error message that is not UTF-8", err.msg);
		if (page.next_link)
			broken("a failed parse handed back a next link", page.next_link);
	}
	/* the builder takes whatever a parsed page gave it */
	if (r >= 0 && which <= 2 && ids_snapshot_finish(s) < 0)
		broken("a parsed page left a snapshot that does not finish", NULL);
out:
	ids_graph_page_clear(&page);
	ids_error_clear(&err);
	ids_strv_free(&rule_attrs);
	ids_strv_free(&scope);
	ids_strv_free(&ids);
	ids_snapshot_free(s);
	return 0;
}
