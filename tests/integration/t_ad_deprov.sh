#!/usr/bin/env bash
# Deprovisioning from Active Directory, end to end against the Samba AD DC,
# with the tools an AD admin uses: `samba-tool user disable` (the
# userAccountControl bit), `group removemembers`, `user delete`; a user
# moved to another OU (new DN, same objectGUID: nothing changes; AD
# rewrites the group's member value itself); then the disabled user
# enabled and the removed one added back (the same rows come back).  The
# group's members are read two at a time (member_range_size: 2), so every
# change goes through the range loop.
#
# The test's own OU=<test>-<pid> (users and group), removed at the end.
. "$(dirname "$0")/ad_lib.sh"

TOU="OU=$T-$$,$B"
P=dp$$ # sAMAccountNames are unique in the whole domain
ad_cleanup() {
	ldapdelete -r -x -H "$IDS_TEST_AD_LDAPS_URI" -D "$IDS_TEST_AD_ADMIN_UPN" -y "$IDS_TEST_AD_ADMIN_PW_FILE" \
		"$TOU" >/dev/null 2>&1 || true
	cleanup
}
trap ad_cleanup EXIT

{
	printf 'dn: %s\nobjectClass: organizationalUnit\n\n' "$TOU"
	printf 'dn: OU=People,%s\nobjectClass: organizationalUnit\n\n' "$TOU"
	printf 'dn: OU=Moved,%s\nobjectClass: organizationalUnit\n\n' "$TOU"
	for i in 1 2 3 4 5 6; do
		printf 'dn: CN=User %s,OU=People,%s\nobjectClass: user\nsAMAccountName: %su%s\n' "$i" "$TOU" "$P" "$i"
		printf 'givenName: User\nsn: %s\nmail: %su%s@idsync.test\nuserAccountControl: 544\n\n' "$i" "$P" "$i"
	done
	printf 'dn: CN=CC-Support,%s\nobjectClass: group\nsAMAccountName: %s-support\n' "$TOU" "$P"
	for i in 1 2 3 4 5 6; do printf 'member: CN=User %s,OU=People,%s\n' "$i" "$TOU"; done
	printf '\n'
} | ad_ldif -a

RULES=$(
	cat <<-'R'
	  - name: support-operators
	    match: { member_of: ["CC-Support"] }
	    tenant: support
	    roles: [operator]
	    channels: [webchat, email]
	R
)
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 AD_USERS_BASE=$TOU AD_GROUPS_BASE=$TOU \
	ad_config_write '    member_range_size: 2' "$RULES"

ids sync
eq 0 "$RC" "initial sync"
eq 6 "$(q "SELECT count(*) FROM app_user WHERE active")" "six active users"
uid() { q "SELECT id FROM app_user WHERE username='${P}u$1'"; }
id1=$(uid 1) id2=$(uid 2) id3=$(uid 3) id4=$(uid 4)
guid4=$(q "SELECT external_id FROM app_user WHERE id=$id4")

samba_tool user disable "${P}u1"
samba_tool group removemembers "$P-support" "${P}u2"
samba_tool user delete "${P}u3"
samba_tool user move "${P}u4" "OU=Moved,$TOU"
# (AD follows the move in the group: the member value names the new DN)
has "CN=User 4,OU=Moved,$TOU" "$(ad_search -b "CN=CC-Support,$TOU" -s base member)" "AD rewrote the moved user's member value"

ids plan
eq 0 "$RC" "plan exits 0"
has "- user  ${P}u1  deactivate (disabled_in_source)" "$OUT" "plan: u1 disabled"
has "- user  ${P}u2  deactivate (out_of_scope)" "$OUT" "plan: u2 out of scope"
has "- user  ${P}u3  deactivate (deleted_in_source)" "$OUT" "plan: u3 deleted"
hasnt "${P}u4" "$OUT" "plan: the moved u4 is unchanged"
has "0 create, 0 update, 3 deactivate" "$OUT" "plan summary"
ids sync
eq 0 "$RC" "deprovisioning sync"
st() { q "SELECT active||'|'||coalesce(deactivation_reason,'') FROM app_user WHERE id=$1"; }
eq "false|disabled_in_source" "$(st "$id1")" "u1 deactivated: disabled"
eq "false|out_of_scope" "$(st "$id2")" "u2 deactivated: out of scope"
eq "false|deleted_in_source" "$(st "$id3")" "u3 deactivated: deleted"
eq "true|" "$(st "$id4")" "u4 (moved) still active"
eq "$guid4" "$(q "SELECT external_id FROM app_user WHERE id=$id4")" "u4 keeps its objectGUID"
eq 0 "$(q "SELECT count(*) FROM channel_grant WHERE user_id IN ($id1,$id2,$id3)")" "grants of the deactivated removed"
eq 6 "$(q "SELECT count(*) FROM channel_grant WHERE user_id IN ($id4, $(uid 5), $(uid 6))")" \
	"grants of the others kept (2 channels each for u4, u5, u6)"
eq 6 "$(q "SELECT count(*) FROM app_user")" "no row deleted"

samba_tool user enable "${P}u1"
samba_tool group addmembers "$P-support" "${P}u2"
ids sync
eq 0 "$RC" "reactivation sync"
eq "true|" "$(st "$id1")" "u1 enabled again: same row active"
eq "true|" "$(st "$id2")" "u2 back in the group: same row active"
eq "false|deleted_in_source" "$(st "$id3")" "u3 stays deleted"
eq "email,webchat" "$(q "SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant WHERE user_id=$id2")" \
	"u2's grants restored"
finish
