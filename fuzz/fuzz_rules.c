/* fuzz_rules.c — libFuzzer target: the rules engine (tenant templates,
 * member_of_regex captures, attribute regexes, revokes) on a snapshot
 * built from the input, then the diff and both plan formats.
 *
 * The input is lines:
 *   0  member_of_regex (empty: none; "(?i)" prefix as in the config)
 *   1  tenant template of the granting rule
 *   2  regex on the user attribute "dept" (empty: none)
 *   3  flags: 'r' adds a revoke rule (tenant "*", channel webchat),
 *      'a' a company_admin rule (member_of: line 4), 'n' nests each group
 *      in the one before it
 *   4  member_of value of the company_admin rule
 *   5+ records: "G<name>" a group (user 0 in all, user 1 in every other
 *      one), "A<value>" a dept value (user 0 all, user 1 every other),
 *      "U<text>" a third user's username, "E<text>" its e-mail
 * The rules are written as YAML and go through the config loader, so that
 * the engine sees exactly what a configuration can give it (a regex the
 * loader refuses, a template that does not check, never reach it).
 *
 * Checked besides memory safety: every granted tenant is a valid slug
 * whatever the directory said; the JSON plan parses (jansson) however odd
 * the values; the text plan has no control byte but the line ends, so a
 * value cannot forge a line. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/config.h"
#include "ids/output.h"
#include "ids/plan.h"
#include "ids/rules.h"
#include "ids/snapshot.h"

#define MAX_LINES 96

static void broken(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_rules: %s: %s\n", what, detail ? detail : "");
	abort();
}

/* Appends s to b as a YAML double-quoted scalar. */
static int yaml_quoted(struct ids_buf *b, const char *s)
{
	int r = ids_buf_putc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; r >= 0 && *p; p++) {
		if (*p == '"' || *p == '\\')
			r = ids_buf_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			r = ids_buf_printf(b, "\\x%02x", *p);
		else
			r = ids_buf_putc(b, (char)*p);
	}
	return r < 0 ? r : ids_buf_putc(b, '"');
}

/* The configuration of the rules the input describes (see the top). */
static int rules_yaml(struct ids_buf *b, const struct ids_strv *lines, size_t slots)
{
	const char *flags = lines->v[3];
	int r = ids_buf_puts(
	    b, "database: {conninfo: x}\n"
	       "tenants: {auto_create: true}\n"
	       "connectors: [{name: corp, type: ldap, uri: \"ldaps://x\", users: {base: \"dc=x\"}}]\n"
	       "rules:\n"
	       "  - name: fuzz-grant\n"
	       "    match:\n");
	if (r >= 0 && *lines->v[0]) {
		r = ids_buf_puts(b, "      member_of_regex: ");
		if (r >= 0)
			r = yaml_quoted(b, lines->v[0]);
		if (r >= 0)
			r = ids_buf_putc(b, '\n');
	}
	if (r >= 0 && *lines->v[2]) {
		r = ids_buf_puts(b, "      attribute: { dept: ");
		if (r >= 0)
			r = yaml_quoted(b, lines->v[2]);
		if (r >= 0)
			r = ids_buf_puts(b, " }\n");
	}
	if (r >= 0 && !*lines->v[0] && !*lines->v[2])
		r = ids_buf_puts(b, "      not_member_of: [nothing]\n");
	if (r >= 0)
		r = ids_buf_puts(b, "    tenant: ");
	if (r >= 0)
		r = yaml_quoted(b, lines->v[1]);
	if (r >= 0)
		r = ids_buf_printf(b,
				   "\n    roles: [operator]\n    channels: [webchat]\n"
				   "    slots: { live: %zu }\n    groups: [first-line]\n",
				   slots);
	if (r >= 0 && strchr(flags, 'r'))
		r = ids_buf_puts(b, "  - name: fuzz-revoke\n"
				    "    match: { not_member_of: [nothing] }\n"
				    "    tenant: \"*\"\n"
				    "    revoke: { channels: [webchat] }\n");
	if (r >= 0 && strchr(flags, 'a')) {
		r = ids_buf_puts(b,
				 "  - name: fuzz-admin\n    company_admin: true\n    match: { member_of: [");
		if (r >= 0)
			r = yaml_quoted(b, lines->v[4]);
		if (r >= 0)
			r = ids_buf_puts(b, "] }\n");
	}
	return r;
}

static int put_user(struct ids_snapshot *s, const char *id, const char *name, const char *email,
		    const struct ids_strv *dept, size_t step)
{
	int r = ids_snapshot_user_begin(s);
	if (r >= 0)
		r = ids_snapshot_user_set(s, IDS_F_EXTERNAL_ID, id, strlen(id));
	if (r >= 0 && name)
		r = ids_snapshot_user_set(s, IDS_F_USERNAME, name, strlen(name));
	if (r >= 0 && email)
		r = ids_snapshot_user_set(s, IDS_F_EMAIL, email, strlen(email));
	for (size_t i = 0; r >= 0 && i < dept->n; i += step)
		r = ids_snapshot_user_attr(s, "dept", dept->v[i], strlen(dept->v[i]));
	return r >= 0 ? ids_snapshot_user_end(s) : r;
}

/* The properties of the two plan forms (see the top). */
static void check_plan(const struct ids_plan *p)
{
	struct ids_buf t = {0}, j = {0};
	if (ids_plan_format_text(p, &t) < 0 || ids_output_plan_json(p, &j) < 0)
		broken("formatting failed", NULL);
	for (size_t i = 0; i < t.len; i++)
		if (((unsigned char)t.p[i] < 0x20 && t.p[i] != '\n') || t.p[i] == 0x7f)
			broken("a control byte in the text plan", t.p);
	json_error_t e;
	json_t *doc = json_loadb(j.p, j.len, JSON_REJECT_DUPLICATES, &e);
	if (!doc)
		broken("the JSON plan does not parse", e.text);
	json_decref(doc);
	ids_buf_free(&t);
	ids_buf_free(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ids_strv lines = {0}, groups = {0}, dept = {0};
	struct ids_buf yaml = {0};
	struct ids_config *cfg = NULL;
	struct ids_snapshot *s = NULL;
	struct ids_desired_set *d = NULL;
	struct ids_current *cur = NULL;
	struct ids_plan *plan = NULL;
	const char *uname = NULL, *uemail = NULL;
	char buf[32];

	/* the lines, NUL-terminated copies (a NUL inside ends the line early,
	 * as it would in the config) */
	for (size_t start = 0; start <= size && lines.n < MAX_LINES;) {
		const uint8_t *nl = memchr(data + start, '\n', size - start);
		size_t end = nl ? (size_t)(nl - data) : size;
		char *l = strndup((const char *)data + start, end - start);
		if (!l || ids_strv_push(&lines, l) < 0) {
			free(l);
			goto out;
		}
		free(l);
		start = end + 1;
	}
	while (lines.n < 5)
		if (ids_strv_push(&lines, "") < 0)
			goto out;
	const char *flags = lines.v[3];

	if (rules_yaml(&yaml, &lines, size % 1001) < 0)
		goto out;
	struct ids_error err = {0};
	int lr = ids_config_load_string("fuzz.yaml", yaml.p, yaml.len, &cfg, &err);
	/* FUZZ_DEBUG=1: why a seed does not get past the loader */
	if (lr < 0 && getenv("FUZZ_DEBUG"))
		fprintf(stderr, "%s\n%s\n", yaml.p, ids_error_text(&err));
	ids_error_clear(&err);
	if (lr < 0)
		goto out;

	/* the directory */
	for (size_t i = 5; i < lines.n; i++) {
		const char *l = lines.v[i];
		if (l[0] == 'G' && ids_strv_push(&groups, l + 1) < 0)
			goto out;
		if (l[0] == 'A' && ids_strv_push(&dept, l + 1) < 0)
			goto out;
		if (l[0] == 'U')
			uname = l + 1;
		if (l[0] == 'E')
			uemail = l + 1;
	}
	if (ids_snapshot_new(&s) < 0)
		goto out;
	for (size_t i = 0; i < groups.n; i++) {
		snprintf(buf, sizeof(buf), "g%zu", i);
		if (ids_snapshot_group_begin(s) < 0 ||
		    ids_snapshot_group_set(s, IDS_F_EXTERNAL_ID, buf, strlen(buf)) < 0 ||
		    ids_snapshot_group_set(s, IDS_F_USERNAME, groups.v[i], strlen(groups.v[i])) < 0 ||
		    ids_snapshot_group_end(s) < 0)
			goto out;
	}
	if (put_user(s, "u0", "zero", "zero@example.org", &dept, 1) < 0 ||
	    put_user(s, "u1", "one", NULL, &dept, 2) < 0 || put_user(s, "u2", uname, uemail, &dept, 3) < 0)
		goto out;
	for (size_t i = 0; i < groups.n; i++) {
		snprintf(buf, sizeof(buf), "g%zu", i);
		if (ids_snapshot_member(s, buf, IDS_REF_ID, "u0", 2) < 0 ||
		    (i % 2 && ids_snapshot_member(s, buf, IDS_REF_ID, "u1", 2) < 0) ||
		    ids_snapshot_member(s, buf, IDS_REF_ID, "u2", 2) < 0)
			goto out;
		if (i && strchr(flags, 'n')) {
			char parent[32];
			snprintf(parent, sizeof(parent), "g%zu", i - 1);
			if (ids_snapshot_member(s, parent, IDS_REF_ID, buf, strlen(buf)) < 0)
				goto out;
		}
	}
	if (ids_snapshot_finish(s) < 0)
		goto out;

	/* the engine, and its promises */
	if (ids_rules_eval(cfg->rules, cfg->nrules, "corp", s, &d) < 0)
		goto out;
	if (d->nusers != s->nusers)
		broken("desired set and snapshot differ in size", NULL);
	for (size_t u = 0; u < d->nusers; u++) {
		if (s->users[u].invalid && (d->users[u].in_scope || d->users[u].ngrants))
			broken("an invalid user got grants", s->users[u].invalid);
		for (size_t k = 0; k < d->users[u].ngrants; k++)
			if (!ids_slug_valid(d->users[u].grants[k].tenant))
				broken("a grant in an invalid tenant", d->users[u].grants[k].tenant);
	}
	const struct ids_diff_opts dopt = {"corp", "ldap", false, true, false};
	if (ids_current_new(&cur) < 0 || ids_diff_compute(s, d, cur, &dopt, &plan) < 0)
		goto out;
	check_plan(plan);

out:
	ids_plan_free(plan);
	ids_current_free(cur);
	ids_desired_set_free(d);
	ids_snapshot_free(s);
	ids_config_free(cfg);
	ids_buf_free(&yaml);
	ids_strv_free(&lines);
	ids_strv_free(&groups);
	ids_strv_free(&dept);
	return 0;
}
