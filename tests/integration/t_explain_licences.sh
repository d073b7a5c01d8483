#!/usr/bin/env bash
# `idsyncd explain` and the platforms' rules (issue 20): a dependent left
# out by `on_missing_requirement: drop` shows as left out, naming the
# requirement (not as a rule); a licence shows where the user stands
# (holder, waiting with the place in line) with used / limit / waiting,
# and the waiting user's grant as left out for the licence — what the
# next run does, not an "add"; text and JSON (docs/json.md).
. "$(dirname "$0")/lib.sh"

ou_create
{
	for u in p1 p2 p3 p4; do user_ldif "$u" User "$u"; done
	group_ldif CC-Phone $(udn p1) $(udn p2) $(udn p3)
	group_ldif CC-Mon $(udn p1) $(udn p4)
} | ldif_add

rules=$(
	cat <<-'R'
	  - name: phone-users
	    match: { member_of: ["CC-Phone"] }
	    tenant: support
	    roles: [phone]
	  - name: mon
	    match: { member_of: ["CC-Mon"] }
	    tenant: support
	    roles: [monitoring]
	R
)
extra=$(
	cat <<-'X'
	catalog:
	  extra_roles: [phone, monitoring]
	  requires:
	    monitoring: [phone]
	  on_missing_requirement: drop
	licences:
	  acme:
	    phone: 2
	X
)
config_write "$extra" "$rules"
jq1() { printf '%s' "$OUT" | python3 -c "import json,sys; x = json.load(sys.stdin)[0]; print($1)"; }

ids sync
eq 0 "$RC" "sync"
run1=$(q "SELECT max(id) FROM sync_run")

ids explain p4
eq 0 "$RC" "explain p4"
has "  - role  support  monitoring
      left out: requires phone
" "$OUT" "the dropped dependent, named by its requirement"
hasnt "(null)" "$OUT" "no rule without a reason"
has "warning  user p4: tenant support: role monitoring left out: it requires phone, which no rule grants" \
	"$OUT" "the drop's warning"
hasnt "licence acme" "$OUT" "p4 is entitled to no licensed role: no licence line"
ids explain p4 --format json
eq "requires phone None True []" "$(jq1 '" ".join(str(v) for v in (x["grants"][0]["rules"][0]["name"],
	x["grants"][0]["rules"][0]["how"], x["grants"][0]["rules"][0]["note"], x["licences"]))')" \
	"JSON: the requirement is a note, not a rule"

ids explain p1
has "licences
  phone  holder (seat since run $run1); licence acme/phone: 2 / 2 used, 1 waiting
" "$OUT" "p1 holds a seat"
has "      rule phone-users: group CC-Phone" "$OUT" "a rule stays a rule"

ids explain p3
has "  - role  support  phone
      left out: licence phone: waiting for a seat (limit 2)
" "$OUT" "p3's phone is left out for the licence"
has "  phone  waiting: position 1 of 1 (entitled in run $run1); licence acme/phone: 2 / 2 used, 1 waiting" \
	"$OUT" "p3 waits, first in line"
hasnt "next run: add" "$OUT" "explain does not promise the seat the run withholds"
ids explain p3 --format json
eq "acme phone waiting $run1 None 1 1 2 2 1 False" "$(jq1 '" ".join(str(x["licences"][0][k]) for k in
	("company", "role", "state", "entitled_run", "seat_run", "position", "of", "used", "limit", "waiting"))
	+ " " + str(x["grants"][0]["wanted"])')" "JSON: the licence object"

# p2 leaves: p3 gets the seat in the next run
ldif <<LDIF
dn: $(gdn CC-Phone)
changetype: modify
delete: member
member: $(udn p2)
LDIF
ids explain p3
has "  phone  seated by the next run (entitled in run $run1); licence acme/phone: 2 / 2 used, 0 waiting" \
	"$OUT" "p3 is seated by the next run"
has "role  support  phone  missing: next run: add" "$OUT" "... which adds the role"
finish
