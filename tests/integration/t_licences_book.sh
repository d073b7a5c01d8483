#!/usr/bin/env bash
# The licence seat book (licence_entitlement, issue 20) moves with the
# grants it describes, in the run's one transaction, or not at all: a book
# that cannot be written fails the run and takes its grants back (before,
# the grants committed and the book stayed behind, so the next run knew
# neither who had just been seated nor how long the others had waited); a
# run that fails after the book was written, or is held by a threshold,
# leaves the book as it was.  The failures are a trigger of the test's.
. "$(dirname "$0")/lib.sh"

ou_create
{
	for u in p1 p2 p3 p4; do user_ldif "$u" User "$u"; done
	group_ldif CC-Phone $(udn p1) $(udn p2) $(udn p3)
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
holders() { q "SELECT string_agg(u.username, ' ' ORDER BY u.username) FROM tenant_role r
	JOIN app_user u ON u.id = r.user_id WHERE r.role = 'phone' AND u.active"; }
book() { q "SELECT string_agg(concat_ws(' ', u.username, e.entitled_run, coalesce(e.seat_run::text, 'waits')),
	'; ' ORDER BY u.username) FROM licence_entitlement e JOIN app_user u USING (source, external_id)"; }
last_status() { q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1"; }

ids sync
eq 0 "$RC" "first sync"
eq "p1 p2" "$(holders)" "two seats, by username"
run1=$(q "SELECT max(id) FROM sync_run")
eq "p1 $run1 $run1; p2 $run1 $run1; p3 $run1 waits" "$(book)" "p3 waits since run 1"

# p1 leaves the group: its seat goes to p3 in the same run — unless the
# book cannot be written, and then nothing of the run is
ldif <<LDIF
dn: $(gdn CC-Phone)
changetype: modify
delete: member
member: $(udn p1)
LDIF
q "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
	\$\$BEGIN RAISE EXCEPTION 'refused by the test'; END\$\$" >/dev/null
q "CREATE TRIGGER refuse_book BEFORE INSERT OR UPDATE OR DELETE ON licence_entitlement
	FOR EACH STATEMENT EXECUTE FUNCTION refuse()" >/dev/null
ids sync
eq 1 "$RC" "a book that cannot be written fails the run"
has "refused by the test" "$ERR" "the error says why"
eq "failed" "$(last_status)" "recorded as failed"
eq "p1 p2" "$(holders)" "the run's grants went back with the book"
eq "p1 $run1 $run1; p2 $run1 $run1; p3 $run1 waits" "$(book)" "the book as it was"

# a run that fails after the book was written (its run row's last update)
q "DROP TRIGGER refuse_book ON licence_entitlement" >/dev/null
q "CREATE TRIGGER refuse_finish BEFORE UPDATE OF finished_at ON sync_run
	FOR EACH ROW EXECUTE FUNCTION refuse()" >/dev/null
ids sync
eq 1 "$RC" "a run failing after the book's write"
eq "p1 p2" "$(holders)" "... grants nothing"
eq "p1 $run1 $run1; p2 $run1 $run1; p3 $run1 waits" "$(book)" "... and leaves the book"

q "DROP TRIGGER refuse_finish ON sync_run" >/dev/null
ids sync
eq 0 "$RC" "the same run, writable"
run4=$(q "SELECT max(id) FROM sync_run")
eq "p2 p3" "$(holders)" "p3 took p1's seat"
eq "p2 $run1 $run1; p3 $run1 $run4" "$(book)" "the book with it"

# a held run: the licence lowered to 1 takes p3's seat (the most recent),
# 1 of 2 grants is past max_grant_removals_percent (5): nothing moves
sed -i 's/^    phone: 2$/    phone: 1/' "$W/idsyncd.yaml"
sed -i 's/max_grant_removals_percent: .*/max_grant_removals_percent: 5/' "$W/idsyncd.yaml"
ids sync
eq 3 "$RC" "the lowered licence is held by the threshold"
eq "p2 p3" "$(holders)" "held: the seats stay"
eq "p2 $run1 $run1; p3 $run1 $run4" "$(book)" "held: the book stays"
ids sync --allow-mass-deactivation
eq 0 "$RC" "applied once allowed"
eq "p2" "$(holders)" "p3 lost the seat"
eq "p2 $run1 $run1; p3 $run1 waits" "$(book)" "and waits first in line (entitled in run 1)"
finish
