#!/usr/bin/env bash
# reliability.md case 8: everyone's DN changes, nobody's id does — an OU
# renamed (ou=people -> ou=staff, the whole subtree at once) and then every
# user moved to another OU one by one, with the groups' member values
# following (as Active Directory does; OpenLDAP needs refint for that, so
# the test rewrites them).  Users are keyed by entryUUID: zero deactivations,
# zero creations, and not a row rewritten.  A rename in the same run (a new
# uid) updates the same row.
. "$(dirname "$0")/lib.sh"

n=30
ou_create
{
	for i in $(seq 1 $n); do user_ldif m$i Move m$i; done
	group_ldif CC-Support $(for i in $(seq 1 $n); do udn m$i; done)
	group_ldif CC-Admins "$(udn m1)"
} | ldif_add
# the users' base is the test's OU, so that every move stays inside it
sed_base() { sed -i "s#users: { base: \"ou=people,$OU\" }#users: { base: \"$OU\" }#" "$W/idsyncd.yaml"; }
MAX_DEACT_PCT=10 config_write
sed_base
ids sync
eq 0 "$RC" "initial sync"
ids_before=$(q "SELECT string_agg(external_id||'='||username, ',' ORDER BY external_id) FROM app_user")
before=$(snapshot_db)

# members: replaces both groups' member values, for users now under $1
members() {
	local where=$1
	printf 'dn: %s\nchangetype: modify\nreplace: member\n' "$(gdn CC-Support)"
	for i in $(seq 1 $n); do printf 'member: uid=m%d,%s,%s\n' "$i" "$where" "$OU"; done
	printf '\ndn: %s\nchangetype: modify\nreplace: member\nmember: uid=m1,%s,%s\n\n' "$(gdn CC-Admins)" "$where" "$OU"
}

# 1. the OU renamed, subtree and all
{
	printf 'dn: ou=people,%s\nchangetype: modrdn\nnewrdn: ou=staff\ndeleteoldrdn: 1\n\n' "$OU"
	members ou=staff
} | ldif
eq "$n" "$(ldapsearch -LLL -ZZ -x -H "$IDS_TEST_LDAP_URI" -D "$IDS_TEST_LDAP_ADMIN_DN" -y "$IDS_TEST_LDAP_ADMIN_PW_FILE" \
	-b "ou=staff,$OU" '(objectClass=inetOrgPerson)' dn | grep -c '^dn:')" "the directory moved all $n users"
ids sync
eq 0 "$RC" "sync after the OU rename"
has "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" "nothing to do"
eq "$before" "$(snapshot_db)" "not a row rewritten"

# 2. every user moved one by one into a new OU, one renamed on the way
{
	printf 'dn: ou=moved,%s\nchangetype: add\nobjectClass: organizationalUnit\nou: moved\n\n' "$OU"
	for i in $(seq 1 $n); do
		rdn=uid=m$i
		[ "$i" = 7 ] && rdn=uid=m7new
		printf 'dn: uid=m%d,ou=staff,%s\nchangetype: modrdn\nnewrdn: %s\ndeleteoldrdn: 1\nnewsuperior: ou=moved,%s\n\n' \
			"$i" "$OU" "$rdn" "$OU"
	done
	members ou=moved | sed "s/uid=m7,/uid=m7new,/"
} | ldif
ids sync
eq 0 "$RC" "sync after moving everyone"
has "summary corp: 0 create, 1 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" \
	"one update (the rename), nothing else"
eq "$(printf '%s' "$ids_before" | sed 's/=m7,/=m7new,/; s/=m7$/=m7new/')" \
	"$(q "SELECT string_agg(external_id||'='||username, ',' ORDER BY external_id) FROM app_user")" \
	"the same external ids, m7 renamed in place"
eq "$n" "$(q "SELECT count(*) FROM app_user WHERE active")" "all $n still active"
eq "m1" "$(q "SELECT username FROM app_user WHERE company_admin")" "m1 still company admin through the moved group member"
finish
