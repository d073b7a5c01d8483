#!/usr/bin/env bash
# Licences end to end (issue 20): a directory whose groups entitle 60 users
# to a 50-seat phone licence.  Seats go earliest entitlement first (the run
# in which the rules first granted it), then by username; holders keep
# theirs; a seat a departure frees goes to the next waiting user in that
# same run; a lowered licence takes the most recently granted seats, and
# that counts towards the grant-removal threshold like any removal.
. "$(dirname "$0")/lib.sh"

p() { printf 'p%02d' "$1"; }
ou_create
{
	for i in $(seq 1 60); do user_ldif "$(p "$i")" User "$(p "$i")"; done
	# p01..p05 join the group only in the second run
	group_ldif CC-Phone $(for i in $(seq 6 60); do udn "$(p "$i")"; done)
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
	  extra_roles: [phone, monitoring]
	  requires:
	    monitoring: [phone]
	licences:
	  acme:
	    phone: 50
	X
)
MAX_REMOVALS_PCT=5 config_write "$extra" "$rules"
holders() { q "SELECT string_agg(u.username, ' ' ORDER BY u.username) FROM tenant_role r
	JOIN app_user u ON u.id = r.user_id WHERE r.role = 'phone' AND u.active"; }
range() { for i in $(seq "$1" "$2"); do printf '%s%s' "$([ "$i" = "$1" ] || echo ' ')" "$(p "$i")"; done; }

ids check-config
eq 0 "$RC" "check-config accepts requires and licences"

# run 1: 55 entitled (p06..p60): by username, p06..p55 get the 50 seats
ids sync
eq 0 "$RC" "first sync"
eq 50 "$(q "SELECT count(*) FROM tenant_role WHERE role = 'phone'")" "50 seats granted"
eq "$(range 6 55)" "$(holders)" "the first 50 by username"
has "licence acme/phone: 5 users wait for a seat (50 of 50 used)" "$ERR" "one warning says how many wait"
run1=$(q "SELECT max(id) FROM sync_run")

# run 2: p01..p05 join: 60 entitled, 50 granted, 10 waiting
ldif <<LDIF
dn: $(gdn CC-Phone)
changetype: modify
add: member
$(for i in 1 2 3 4 5; do echo "member: $(udn "$(p "$i")")"; done)
LDIF
ids plan
eq 0 "$RC" "plan"
has "licence acme/phone: 10 users wait for a seat (50 of 50 used)" "$ERR" "the plan warns of the waiting"
hasnt "+ role" "$OUT" "the plan grants no seat past the limit"
ids sync
eq 0 "$RC" "second sync"
eq 50 "$(q "SELECT count(*) FROM tenant_role WHERE role = 'phone'")" "still 50 seats"
eq "$(range 6 55)" "$(holders)" "holders keep their seats"
eq 10 "$(q "SELECT count(*) FROM licence_entitlement WHERE seat_run IS NULL")" "10 waiting"
eq "$run1" "$(q "SELECT entitled_run FROM licence_entitlement WHERE external_id IN
	(SELECT external_id FROM app_user WHERE username = 'p56')")" "p56 waits since run 1"
run2=$(q "SELECT max(id) FROM sync_run")
# explain: where each stands in line (earliest entitlement, then username)
ids explain p56
has "  phone  waiting: position 1 of 10 (entitled in run $run1); licence acme/phone: 50 / 50 used, 10 waiting" \
	"$OUT" "explain: p56 waits first (entitled in run 1)"
has "  - role  support  phone
      left out: licence phone: waiting for a seat (limit 50)" "$OUT" "explain: ... and the grant is left out"
ids explain p01
has "  phone  waiting: position 6 of 10 (entitled in run $run2)" "$OUT" "explain: p01 after the five of run 1"
ids explain p05
has "  phone  waiting: position 10 of 10" "$OUT" "explain: p05 last"
ids explain p06
has "  phone  holder (seat since run $run1); licence acme/phone: 50 / 50 used, 10 waiting" "$OUT" \
	"explain: p06 holds a seat"
ids status
has "licence acme/phone: 50 / 50 used, 10 waiting" "$OUT" "status shows used / limit / waiting"
ids status --format json
has '"licences": [{"company": "acme", "role": "phone", "limit": 50, "used": 50, "waiting": 10}]' "$OUT" "... and so does its JSON"

# run 3: three holders leave; their seats go, in the same run, to the three
# waiting the longest (p56..p58, entitled in run 1), not to p01..p03
# (entitled in run 2) whose names sort first
ldif <<LDIF
dn: $(udn p06)
changetype: delete

dn: $(udn p07)
changetype: delete

dn: $(udn p08)
changetype: delete
LDIF
ids plan
has "+ role  p56  support  phone  rule phone-users" "$OUT" "the plan gives p56 the seat"
ids explain p56
has "  phone  seated by the next run (entitled in run $run1); licence acme/phone: 50 / 50 used, 7 waiting" \
	"$OUT" "explain: p56 gets the seat in the next run"
ids explain p59
has "  phone  waiting: position 1 of 7" "$OUT" "explain: p59 is next in line"
hasnt "+ role  p01" "$OUT" "... not p01"
ids sync
eq 0 "$RC" "third sync"
eq "$(range 9 58)" "$(holders)" "p56, p57, p58 took the freed seats in the same run"
run3=$(q "SELECT max(id) FROM sync_run")
eq 3 "$(q "SELECT count(*) FROM licence_entitlement WHERE seat_run = $run3")" "seated in run 3"

# the licence lowered to 40: the 10 most recently granted seats go (p56..p58
# from run 3, then p49..p55 from run 1, latest by username first) — 10 of
# 50 grants is past max_grant_removals_percent (5): held
sed -i 's/^    phone: 50$/    phone: 40/' "$W/idsyncd.yaml"
before=$(snapshot_db)
book() { q "SELECT role, external_id, entitled_run, seat_run FROM licence_entitlement ORDER BY 1, 2"; }
book_before=$(book)
ids plan
has "- role  p58  support  phone  licence phone: over the limit of 40" "$OUT" "the plan says why a seat goes"
# p49..p58 lose the seat and wait, among the others of run 1, by username
ids explain p58
has "  phone  revoked by the next run, over the limit of 40 (seat since run $run3); then waiting: position 10 of 17; licence acme/phone: 40 / 40 used, 17 waiting" \
	"$OUT" "explain: p58's seat goes, and where it then waits"
ids explain p58 --format json
eq "revoked $run1 $run3 10 17 40 40 17" "$(printf '%s' "$OUT" | python3 -c 'import json,sys
l = json.load(sys.stdin)[0]["licences"][0]
print(l["state"], l["entitled_run"], l["seat_run"], l["position"], l["of"], l["used"], l["limit"], l["waiting"])')" \
	"explain --format json: the same"
ids explain p48
has "  phone  holder (seat since run $run1)" "$OUT" "explain: p48 keeps the seat"
ids sync
eq 3 "$RC" "10 seat removals are held by the grant-removal threshold"
has "max_grant_removals_percent" "$ERR$OUT" "the message names the threshold"
eq "$before" "$(snapshot_db)" "nothing removed"
eq "$book_before" "$(book)" "... and the seat book as it was"
ids sync --allow-mass-deactivation
eq 0 "$RC" "applied once allowed"
eq "$(range 9 48)" "$(holders)" "the 10 most recent holders lost the seat"
has "licence acme/phone: 10 seats revoked, over the limit of 40" "$ERR" "the run says so"
ids status
has "licence acme/phone: 40 / 40 used, 17 waiting" "$OUT" "status after lowering"
ids sync
eq 0 "$RC" "a later run"
eq "$(range 9 48)" "$(holders)" "... leaves the seats where they are"
finish
