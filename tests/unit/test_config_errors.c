/* test_config_errors.c — every way a configuration is refused.
 *
 * Table-driven from tests/unit/data/config/errors/NAME.yaml: the first line
 * of each file is "# expect: MESSAGE", the exact message ids_config_load()
 * must give, with @FILE@ standing for the file's path and @D@ for the
 * secrets directory.  Line and column in the messages were worked out by
 * hand from the files (the expect line is line 1).  Every case also checks
 * that no secret's content leaks into the message. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ids/config.h"
#include "test_config_secrets.h"

#define ERR_DIR "data/config/errors"

/* s with every @FILE@ and @D@ replaced; new. */
static char *substitute(const char *s, const char *file)
{
	struct ids_buf b = {0};
	assert_int_equal(ids_buf_puts(&b, ""), 0);
	while (*s) {
		if (!strncmp(s, "@FILE@", 6)) {
			assert_int_equal(ids_buf_puts(&b, file), 0);
			s += 6;
		} else if (!strncmp(s, "@D@", 3)) {
			assert_int_equal(ids_buf_puts(&b, secrets_dir), 0);
			s += 3;
		} else {
			assert_int_equal(ids_buf_putc(&b, *s++), 0);
		}
	}
	return ids_buf_steal(&b);
}

/* The expected message: line 1 of the file after "# expect: ". */
static char *expected(const char *path)
{
	char line[4096];
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	assert_int_equal(strncmp(line, "# expect: ", 10), 0);
	return substitute(line + 10, path);
}

static void run_case(void **state)
{
	const char *name = *state;
	char path[256];
	snprintf(path, sizeof(path), ERR_DIR "/%s.yaml", name);
	char *want = expected(path);
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	int r = ids_config_load(path, &cfg, &e);
	if (r != IDS_E_CONFIG || !e.msg || strcmp(e.msg, want))
		print_message("case %s\n  want: %s\n  got:  %s\n", name, want, e.msg ? e.msg : "(none)");
	assert_int_equal(r, IDS_E_CONFIG);
	assert_null(cfg); /* ret_* written only on success */
	assert_non_null(e.msg);
	assert_string_equal(e.msg, want);
	assert_null(strstr(e.msg, SECRET_MARK));
	ids_error_clear(&e);
	free(want);
}

#define CASE(n)                                                                                              \
	{                                                                                                    \
		.name = #n, .test_func = run_case, .initial_state = (void *)#n                               \
	}
static const struct CMUnitTest cases[] = {
    CASE(attributes_empty_value),
    CASE(attributes_typo),
    CASE(bool_yes),
    CASE(catalog_duplicate),
    CASE(changes_bad_mode),
    CASE(changes_debounce_long),
    CASE(changes_full_every_zero),
    CASE(changes_not_mapping),
    CASE(changes_object_security_openldap),
    CASE(changes_persist_full),
    CASE(changes_persist_ad),
    CASE(changes_unknown_key),
    CASE(catalog_extra_duplicate),
    CASE(heartbeat_long),
    CASE(requires_unknown_role),
    CASE(requires_unknown_needed),
    CASE(requires_cycle),
    CASE(requires_self),
    CASE(requires_empty),
    CASE(on_missing_bad),
    CASE(licence_negative),
    CASE(licence_unknown_company),
    CASE(licence_unknown_role),
    CASE(licence_not_number),
    CASE(complex_key),
    CASE(conn_bad_adopt),
    CASE(conn_bad_company),
    CASE(conn_bad_interval),
    CASE(conn_bad_name),
    CASE(conn_bad_type),
    CASE(conn_duplicate_name),
    CASE(conn_key_of_other_type),
    CASE(conn_no_name),
    CASE(conn_no_type),
    CASE(connectors_mapping),
    CASE(duplicate_key),
    CASE(duration_no_unit),
    CASE(duration_order),
    CASE(duration_syntax),
    CASE(duration_zero),
    CASE(empty_file),
    CASE(entra_alg_without_cert),
    CASE(entra_bad_alg),
    CASE(entra_bad_tenant),
    CASE(entra_cert_without_key),
    CASE(entra_groups_empty),
    CASE(entra_http_endpoint),
    CASE(entra_key_readable),
    CASE(entra_key_without_cert),
    CASE(entra_no_client_id),
    CASE(entra_no_credential),
    CASE(entra_no_tenant),
    CASE(entra_secret_and_cert),
    CASE(env_syntax),
    CASE(env_unset),
    CASE(google_bad_subject),
    CASE(google_customer_and_domain),
    CASE(google_http_api),
    CASE(google_no_service_account),
    CASE(google_no_subject),
    CASE(google_service_account_readable),
    CASE(ldap_bad_filter),
    CASE(ldap_bad_flavor),
    CASE(ldap_bad_sasl),
    CASE(ldap_bad_uri),
    CASE(ldap_bind_without_password),
    CASE(ldap_ca_missing),
    CASE(ldap_filter_no_parens),
    CASE(ldap_groups_no_base),
    CASE(ldap_ldapi_without_sasl),
    CASE(ldap_member_range),
    CASE(ldap_member_range_openldap),
    CASE(ldap_no_uri),
    CASE(ldap_no_users),
    CASE(ldap_page_size),
    CASE(ldap_password_without_bind),
    CASE(ldap_plaintext_bind),
    CASE(ldap_sasl_and_bind),
    CASE(ldap_users_no_base),
    CASE(log_level),
    CASE(max_deact_negative),
    CASE(max_deact_word),
    CASE(migrate_mode),
    CASE(missing_connectors),
    CASE(missing_conninfo),
    CASE(missing_database),
    CASE(percent_range),
    CASE(retry_order),
    CASE(root_list),
    CASE(rule_admin_false_only),
    CASE(rule_attribute_bad_name),
    CASE(rule_attribute_duplicate),
    CASE(rule_attribute_empty),
    CASE(rule_bad_attribute_regex),
    CASE(rule_bad_group_regex),
    CASE(rule_bad_slug),
    CASE(rule_bool),
    CASE(rule_duplicate_name),
    CASE(rule_grant_without_tenant),
    CASE(rule_grants_nothing),
    CASE(rule_key_typo),
    CASE(rule_match_empty),
    CASE(rule_member_of_empty),
    CASE(rule_no_match),
    CASE(rule_no_name),
    CASE(rule_regex_backref),
    CASE(rule_regex_huge),
    CASE(rule_regex_lazy_plus),
    CASE(rule_regex_lazy_question),
    CASE(rule_regex_lazy_star),
    CASE(rule_regex_perl_boundary),
    CASE(rule_regex_perl_digit),
    CASE(rule_regex_perl_in_bracket),
    CASE(rule_regex_perl_nonboundary),
    CASE(rule_regex_perl_nondigit),
    CASE(rule_regex_perl_nonspace),
    CASE(rule_regex_perl_nonword),
    CASE(rule_regex_perl_space),
    CASE(rule_regex_perl_word),
    CASE(rule_regex_stacked),
    CASE(rule_revoke_empty),
    CASE(rule_revoke_grants),
    CASE(rule_revoke_no_tenant),
    CASE(rule_revoke_unknown_channel),
    CASE(rule_slot_duplicate),
    CASE(rule_slot_too_many),
    CASE(rule_slot_word),
    CASE(rule_star_in_grant),
    CASE(rule_template_capture),
    CASE(rule_tenant_without_grants),
    CASE(rule_unknown_channel),
    CASE(rule_unknown_connector),
    CASE(rule_unknown_role),
    CASE(rule_unknown_slot),
    CASE(rules_mapping),
    CASE(safety_hold_expiry),
    CASE(schema_name),
    CASE(scim_bad_listen),
    CASE(scim_max_connections),
    CASE(scim_cert_without_key),
    CASE(scim_no_listener),
    CASE(scim_no_token),
    CASE(scim_plaintext_network),
    CASE(scim_timeout_zero),
    CASE(scim_token_readable),
    CASE(scim_unknown_key),
    CASE(secret_database_readable),
    CASE(secret_directory),
    CASE(secret_empty),
    CASE(secret_group_writable_620),
    CASE(secret_missing),
    CASE(secret_nul),
    CASE(secret_readable_644),
    CASE(secret_readable_security_last),
    CASE(secret_too_large),
    CASE(string_got_mapping),
    CASE(string_got_nothing),
    CASE(two_documents),
    CASE(unknown_key_typo),
    CASE(unknown_top_key),
    CASE(yaml_invalid_utf8),
    CASE(yaml_syntax),
    CASE(yaml_too_deep),
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* A file in the directory that is not in the table would never run. */
static void every_file_is_a_case(void **state)
{
	DIR *d = opendir(ERR_DIR);
	struct dirent *de;
	size_t files = 0;
	(void)state;
	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		bool listed = false;
		if (n < 6 || strcmp(de->d_name + n - 5, ".yaml"))
			continue;
		files++;
		for (size_t i = 0; i < NCASES; i++)
			if (strlen(cases[i].name) == n - 5 && !strncmp(cases[i].name, de->d_name, n - 5))
				listed = true;
		if (!listed)
			print_message("not in the table: %s\n", de->d_name);
		assert_true(listed);
	}
	closedir(d);
	assert_int_equal(files, NCASES);
}

static void missing_file(void **state)
{
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	(void)state;
	assert_int_equal(ids_config_load(ERR_DIR "/no-such-file.yaml", &cfg, &e), IDS_E_CONFIG);
	assert_null(cfg);
	assert_string_equal(e.msg, ERR_DIR "/no-such-file.yaml: cannot open: No such file or directory");
	ids_error_clear(&e);
}

/* A config file of megabytes is a mistake (a log, a dump): not parsed. */
static void oversized_file(void **state)
{
	char path[256], want[512];
	size_t len = (4u << 20) + 1;
	char *big = malloc(len);
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	(void)state;
	assert_non_null(big);
	memset(big, '#', len);
	snprintf(path, sizeof(path), "%s/big.yaml", secrets_dir);
	assert_int_equal(write_file(path, big, len, 0644), 0);
	free(big);
	snprintf(want, sizeof(want), "%s: larger than 4194304 bytes: not a configuration file", path);
	assert_int_equal(ids_config_load(path, &cfg, &e), IDS_E_CONFIG);
	assert_null(cfg);
	assert_string_equal(e.msg, want);
	ids_error_clear(&e);
	unlink(path);
}

/* The name given to ids_config_load_string is the FILE of its messages. */
static void string_name_in_message(void **state)
{
	static const char yaml[] = "bogus: 1\n";
	struct ids_config *cfg = NULL;
	struct ids_error e = {0};
	(void)state;
	assert_int_equal(ids_config_load_string("inline.yaml", yaml, sizeof(yaml) - 1, &cfg, &e),
			 IDS_E_CONFIG);
	assert_null(cfg);
	assert_string_equal(e.msg, "inline.yaml:1:1: unknown key \"bogus\"");
	ids_error_clear(&e);
}

int main(void)
{
	static const struct CMUnitTest misc[] = {
	    cmocka_unit_test(every_file_is_a_case),
	    cmocka_unit_test(missing_file),
	    cmocka_unit_test(oversized_file),
	    cmocka_unit_test(string_name_in_message),
	};
	int failed = cmocka_run_group_tests_name("config errors", cases, secrets_setup, secrets_teardown);
	failed += cmocka_run_group_tests_name("config errors: files", misc, secrets_setup, secrets_teardown);
	return failed ? 1 : 0;
}
