#!/usr/bin/env bash
# Paging past the server's size limit, StartTLS with the private CA, a wrong
# CA (refused even with LDAPTLS_REQCERT=never in the environment), ldaps://,
# a dead first URI, and a failed run leaving the database unchanged.
. "$(dirname "$0")/lib.sh"

n=$((IDS_TEST_LDAP_SIZELIMIT * 2 + 20))
ou_create
{
	for i in $(seq 1 $n); do user_ldif p$i Paged p$i; done
	group_ldif CC-Support $(for i in $(seq 1 $n); do udn p$i; done)
} | ldif_add

# an unpaged search by the service account hits the size limit: the
# directory really is larger than one answer
set +e
ldapsearch -ZZ -x -H "$IDS_TEST_LDAP_URI" -D "$IDS_TEST_LDAP_BIND_DN" -y "$IDS_TEST_LDAP_BIND_PW_FILE" \
	-b "ou=people,$OU" "(objectClass=inetOrgPerson)" uid >/dev/null 2>&1
rc=$?
set -e
eq 4 "$rc" "unpaged search exceeds the size limit (sizeLimitExceeded)"

PAGE_SIZE=25 config_write
ids sync
eq 0 "$RC" "paged sync over StartTLS"
eq $n "$(q "SELECT count(*) FROM app_user WHERE active")" "all $n users read through a size limit of $IDS_TEST_LDAP_SIZELIMIT"

# page size above the server's limit still reads everything
PAGE_SIZE=1000 config_write
ids sync
eq 0 "$RC" "page size above the size limit"
has "summary corp: 0 create, 0 update, 0 deactivate" "$OUT" "nothing vanished with a large page size"

# wrong CA: refused, run failed, database unchanged
before=$(snapshot_db)
sed -i "s#tls_ca_file: .*#tls_ca_file: $IDS_TEST_LDAP_WRONG_CA#" "$W/idsyncd.yaml"
LDAPTLS_REQCERT=never ids sync
eq 1 "$RC" "wrong CA fails the run, even with LDAPTLS_REQCERT=never"
has "certificate" "$ERR" "error says certificate verification failed"
has "127.0.0.1" "$ERR" "error names the host"
eq "$before" "$(snapshot_db)" "failed run changed nothing"
eq "failed" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "failed run recorded"
ids status
eq 1 "$RC" "status exits 1 when the last run failed"
has "failed" "$OUT" "status shows the failure"

# ldaps:// with the right CA, after a dead URI
PAGE_SIZE=25 config_write
sed -i "s#uri: .*#uri: [\"ldap://127.0.0.1:9\", \"$IDS_TEST_LDAPS_URI\"]#" "$W/idsyncd.yaml"
ids sync
eq 0 "$RC" "second URI (ldaps://) used when the first is dead"
has "summary corp: 0 create" "$OUT" "same snapshot over ldaps"

# wrong bind password: failed with the server's message, never the password
printf 'not-the-password\n' >"$W/ldap.pw"
ids sync
eq 1 "$RC" "wrong password fails"
has "nvalid credentials" "$ERR" "server's message logged"
hasnt "not-the-password" "$ERR$OUT" "password never printed"
finish
