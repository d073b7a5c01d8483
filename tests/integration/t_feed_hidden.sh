#!/usr/bin/env bash
# Issue 14: a directory loaded with slapadd without -w.  syncprov then
# answers a refresh only with the entries whose entryCSN is not newer
# than the database's contextCSN — none of them — so the change feed's
# first read would see an empty directory and a first sync would create
# nobody, "ok".  idsyncd checks a whole refresh that sent no user against
# a plain search and refuses the run, saying why; after one ordinary
# write (contextCSN moves on) the feed reads everyone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

n=30
{
	printf 'dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n' "$OU" "$T"
	printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$OU"
	printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$OU"
	for i in $(seq 1 $n); do
		printf 'dn: uid=h%d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: h%d\ncn: H %d\nsn: H%d\nmail: h%d@example.org\n\n' \
			"$i" "$OU" "$i" "$i" "$i" "$i"
	done
	printf 'dn: cn=CC-Support,ou=groups,%s\nobjectClass: groupOfNames\ncn: CC-Support\n' "$OU"
	for i in $(seq 1 $n); do printf 'member: uid=h%d,ou=people,%s\n' "$i" "$OU"; done
	printf '\n'
} >"$W/dir.ldif"
own_slapd "$W/dir.ldif" stale
IDS_TEST_LDAP_BIND_DN=$IDS_TEST_LDAP_SYNC_DN IDS_TEST_LDAP_BIND_PW_FILE=$IDS_TEST_LDAP_SYNC_PW_FILE config_write

ids sync
eq 1 "$RC" "the first sync fails"
has "sent no user, but a search finds some: syncprov's contextCSN is older than the entries" "$ERR" "... and says why"
eq 0 "$(q "SELECT count(*) FROM app_user")" "... having written no user"
eq "failed" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "... recorded as failed"

printf 'dn: uid=h1,ou=people,%s\nchangetype: modify\nreplace: sn\nsn: Moved-On\n\n' "$OU" | ldif
ids sync
eq 0 "$RC" "after one ordinary write, the sync succeeds"
eq "$n" "$(q "SELECT count(*) FROM app_user WHERE active")" "... and creates every user"
eq "full" "$(q "SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "... through the feed's first (whole) read"
finish
