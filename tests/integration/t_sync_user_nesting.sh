#!/usr/bin/env bash
# sync --user walks up the groups naming the person (connectors/
# ldap_target.c) instead of reading every group with its members: the
# grants it gives must be exactly those a full run plans — through four
# levels of nesting, a cycle, a posixGroup (memberUid), a
# groupOfUniqueNames and a member_of_regex rule — and the big group's
# member list must not be read (its other members would show up as
# unresolved member references).
. "$(dirname "$0")/lib.sh"

ou_create
{
	for i in $(seq 1 150); do user_ldif "staff$i" Staff "N$i"; done
	user_ldif deep Deep Nested
	user_ldif cyc Cy Cle
	user_ldif posix Po Six
	# uniqueMember with a UID (RFC 4519): the user's x500UniqueIdentifier
	user_ldif uniq Uni Que | sed "/^mail:/a x500UniqueIdentifier: '0101'B"
	user_ldif loner Lo Ner
	members=$(for i in $(seq 1 150); do udn "staff$i"; done)
	# shellcheck disable=SC2086
	group_ldif All-Staff $members "$(udn deep)" "$(udn cyc)" "$(udn posix)" "$(udn uniq)"
	group_ldif L4 "$(udn deep)"
	group_ldif L3 "$(gdn L4)"
	group_ldif L2 "$(gdn L3)" "$(udn staff1)"
	group_ldif CC-Sales-CZ-Operators "$(gdn L2)"
	group_ldif L1 "$(gdn CC-Sales-CZ-Operators)"
	group_ldif Cyc-A "$(udn cyc)" "$(udn staff2)"
	group_ldif Cyc-B "$(gdn Cyc-A)"
	printf 'dn: %s\nobjectClass: posixGroup\ncn: CC-Mail-SK-Operators\ngidNumber: 5000\nmemberUid: posix\n\n' \
		"$(gdn CC-Mail-SK-Operators)"
	printf "dn: %s\nobjectClass: groupOfUniqueNames\ncn: Uniq-Admins\nuniqueMember: %s#'0101'B\nuniqueMember: %s\n\n" \
		"$(gdn Uniq-Admins)" "$(udn uniq)" "$(udn loner)"
} | ldif_add
# Cyc-A <-> Cyc-B: a cycle the walk must end
ldif <<LDIF
dn: $(gdn Cyc-A)
changetype: modify
add: member
member: $(gdn Cyc-B)
LDIF

rules=$(
	cat <<-'R'
	  - name: regional-operators
	    match: { member_of_regex: "^CC-([A-Za-z]+)-([A-Za-z]+)-Operators$" }
	    tenant: "{1}-{2}"
	    roles: [operator]
	    channels: [webchat]
	  - name: staff
	    match: { member_of: ["All-Staff"] }
	    tenant: staff
	    roles: [view_operators]
	  - name: deep
	    match: { member_of: ["L1"] }
	    tenant: staff
	    channels: [email]
	  - name: cycle
	    match: { member_of: ["Cyc-B"] }
	    tenant: staff
	    channels: [whatsapp]
	  - name: unique
	    match: { member_of: ["Uniq-Admins"] }
	    company_admin: true
	R
)
LOG_LEVEL=debug config_write "" "$rules"

# one person at a time, on an empty database
for u in deep cyc posix uniq loner staff1 staff2; do
	ids sync --user "$u" --connector corp
	eq 0 "$RC" "sync --user $u"
	has "(0 unresolved members)" "$ERR" "sync --user $u reads no member list (All-Staff's others would be unresolved)"
done
ids sync --user deep --connector corp
has "read 1 users, 6 groups" "$ERR" "deep: All-Staff, L4, L3, L2, CC-Sales-CZ-Operators, L1 and nothing else"
eq "email,webchat" "$(q "SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant c JOIN app_user u ON u.id=c.user_id WHERE u.username='deep'")" "deep: channels through four levels and the regex"
eq "1" "$(q "SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id=r.user_id JOIN tenant t ON t.id=r.tenant_id WHERE u.username='posix' AND (lower(t.name)='mail-sk' OR lower(t.slug)='mail-sk') AND r.role='operator'")" "posix: operator in Mail-SK (memberUid, regex captures)"
eq "whatsapp" "$(q "SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant c JOIN app_user u ON u.id=c.user_id WHERE u.username='cyc'")" "cyc: the channel of the group above the cycle"
eq "t" "$(q "SELECT company_admin FROM app_user WHERE username='uniq'")" "uniq: company admin through uniqueMember DN#UID"
eq "t" "$(q "SELECT company_admin FROM app_user WHERE username='loner'")" "loner: company admin through a plain uniqueMember"
state=$(q "SELECT u.username||':'||t.name||':'||r.role FROM tenant_role r JOIN app_user u ON u.id=r.user_id JOIN tenant t ON t.id=r.tenant_id ORDER BY 1")

# the full run plans nothing more for them: the targeted runs gave
# exactly its grants (the other staff are created, nothing else changes)
ids plan
eq 0 "$RC" "plan"
for u in deep cyc posix uniq loner staff1 staff2; do
	hasnt " $u " "$OUT" "the full plan has nothing for $u"
done
ids sync
eq 0 "$RC" "full sync"
eq "$state" "$(q "SELECT u.username||':'||t.name||':'||r.role FROM tenant_role r JOIN app_user u ON u.id=r.user_id JOIN tenant t ON t.id=r.tenant_id WHERE u.username IN ('deep','cyc','posix','uniq','loner','staff1','staff2') ORDER BY 1")" "their roles after the full run are the targeted runs'"
finish
