#!/usr/bin/env bash
# reliability.md case 4: a server limit ends a search early, with entries
# already received.  The limited service account of the harness may read at
# most 50 entries per search, paged or not; 60 users exceed it on page 3 of
# 20.  The run fails, the error says which limit, after how many entries,
# and what to do (paging, a larger limit), and the database is exactly as
# the last good run left it — 50 users read are not "10 users left".
# (The connector-level checks: ctest_ldap_pull.c.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

n=60
ou_create
{
	for i in $(seq 1 $n); do user_ldif u$i User u$i; done
	group_ldif CC-Support $(for i in $(seq 1 $n); do udn u$i; done)
} | ldif_add
PAGE_SIZE=20 config_write
ids sync
eq 0 "$RC" "the unlimited service account reads all $n"
eq $n "$(q "SELECT count(*) FROM app_user WHERE active")" "$n users"

# the same connector, bound as the limited account
cp "$IDS_TEST_LDAP_LIMITED_PW_FILE" "$W/limited.pw"
chmod 600 "$W/limited.pw"
sed -i "s#bind_dn: \"$IDS_TEST_LDAP_BIND_DN\"#bind_dn: \"$IDS_TEST_LDAP_LIMITED_DN\"#; s#bind_password_file: $W/ldap.pw#bind_password_file: $W/limited.pw#" \
	"$W/idsyncd.yaml"
before=$(snapshot_db)
runs0=$(runs)
ids sync
eq 1 "$RC" "a size limit fails the run"
has "size limit" "$ERR" "the error names the limit"
has "after ${IDS_TEST_LDAP_SIZELIMIT} entries" "$ERR" "... and how far the search got"
has "page_size" "$ERR" "... and suggests paging"
has "raise the limit" "$ERR" "... or a larger limit"
eq "$before" "$(snapshot_db)" "database unchanged: nobody deactivated"
eq "$((runs0 + 1))|failed" "$(runs)|$(last_run | cut -d'|' -f1)" "one failed sync_run row"
has "size limit" "$(last_run)" "the sync_run row says why"

# an unpaged search (page size above the limit) hits it the same way
sed -i 's/^    page_size: 20$/    page_size: 1000/' "$W/idsyncd.yaml"
ids sync
eq 1 "$RC" "unpaged: the size limit fails the run too"
eq "$before" "$(snapshot_db)" "unpaged: database unchanged"
finish
