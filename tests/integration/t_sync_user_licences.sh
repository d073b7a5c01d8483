#!/usr/bin/env bash
# sync --user with a licence (issue 17 part 2, issue 20): the holders the
# one-person read does not name keep their seats, so a new hire who joins
# a full licence waits for a seat instead of exceeding it.
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif p01 User p01
	user_ldif p02 User p02
	group_ldif CC-Phone "$(udn p01)" "$(udn p02)"
} | ldif_add
rules=$(
	cat <<-'R'
	  - name: phone-users
	    match: { member_of: ["CC-Phone"] }
	    tenant: support
	    roles: [phone]
	R
)
extra=$(
	cat <<-'X'
	catalog:
	  extra_roles: [phone]
	licences:
	  acme:
	    phone: 2
	X
)
config_write "$extra" "$rules"
phones() { q "SELECT string_agg(u.username, ' ' ORDER BY u.username) FROM tenant_role r
	JOIN app_user u ON u.id = r.user_id WHERE r.role = 'phone' AND u.active"; }

ids sync
eq 0 "$RC" "full sync"
eq "p01 p02" "$(phones)" "both seats taken"

user_ldif p03 User p03 | ldif_add
ldif <<LDIF
dn: $(gdn CC-Phone)
changetype: modify
add: member
member: $(udn p03)
LDIF
ids sync --user p03 --connector corp
eq 0 "$RC" "sync --user p03"
eq "p01 p02" "$(phones)" "the licence is full: p03 waits, the others keep theirs"
eq "true" "$(q "SELECT active::text FROM app_user WHERE username = 'p03'")" "p03 is created all the same"
finish
