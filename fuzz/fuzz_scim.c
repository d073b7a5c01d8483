/* fuzz_scim.c — libFuzzer target: the SCIM filter parser and PATCH
 * application (scim/filter.c, scim/patch.c), the two places where a
 * provisioning client's text is parsed.
 *
 * Input: one selector byte, then
 * - even: a filter; a parsed filter must have 1..IDS_SCIM_FILTER_MAX
 *   conditions whose values are NUL-free strings within the input's length;
 * - odd: a resource JSON, a NUL byte, a PatchOp JSON; the patch is applied
 *   and, when it succeeds, the resource is normalized both as a user and
 *   as a group.  A failure must carry a 400 and a scimType. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids/scim.h"

static void broken(const char *what)
{
	fprintf(stderr, "fuzz_scim: %s\n", what);
	abort();
}

static void check_fault(const struct ids_scim_fault *f)
{
	if (f->status != 400 || !f->scim_type)
		broken("a failure without 400 and a scimType");
}

static void fuzz_filter(const char *s, size_t n)
{
	struct ids_scim_filter flt = {0};
	struct ids_scim_fault f = {0};
	if (ids_scim_filter_parse(s, &flt, &f) < 0) {
		check_fault(&f);
		return;
	}
	if (flt.n < 1 || flt.n > IDS_SCIM_FILTER_MAX)
		broken("condition count out of range");
	for (size_t i = 0; i < flt.n; i++)
		if (strlen(flt.c[i].value) > n || (flt.c[i].type && strlen(flt.c[i].type) > n))
			broken("a value longer than the filter");
	ids_scim_filter_clear(&flt);
}

static void normalize(const json_t *res, bool group)
{
	json_t *copy = json_deep_copy(res);
	const char *name, *ext;
	char *members = NULL;
	bool active;
	struct ids_scim_fault f = {0};
	if (copy && ids_scim_normalize(copy, group, &name, &ext, &active, &members, &f) < 0)
		check_fault(&f);
	else if (copy && (json_object_get(copy, "password") || json_object_get(copy, "id")))
		broken("normalize kept a password or an id");
	free(members);
	json_decref(copy);
}

static void fuzz_patch(const char *s, size_t n)
{
	size_t a = strnlen(s, n);
	if (a == n)
		return;
	json_t *res = json_loadb(s, a, JSON_REJECT_DUPLICATES, NULL);
	json_t *body = json_loadb(s + a + 1, n - a - 1, JSON_REJECT_DUPLICATES, NULL);
	struct ids_scim_fault f = {0};
	if (json_is_object(res) && body) {
		/* which group PATCHes may read only the members they name */
		char *scope = NULL;
		if (ids_scim_patch_member_scope(body, &scope) != (scope != NULL))
			abort();
		free(scope);
		if (ids_scim_patch(res, body, &f) < 0)
			check_fault(&f);
		else {
			normalize(res, false);
			normalize(res, true);
		}
	}
	json_decref(res);
	json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	char *s = malloc(size); /* the input after the selector, NUL-terminated */
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (data[0] & 1)
		fuzz_patch(s, size - 1);
	else if (!memchr(s, '\0', size - 1))
		fuzz_filter(s, size - 1);
	free(s);
	return 0;
}
