#!/usr/bin/env bash
# Per-user log lines (issue 12 point 5): every change a committed run made
# to a user is one info line naming the user (IDSYNC_USER= in the journal,
# t_daemon_journal.py), and a run logs at most 1000 of them — journald's
# rate limit would drop lines of a large first sync, the outcome among
# them — then one line that says how many were left out.  A plan, which
# changes nothing, logs no change.
. "$(dirname "$0")/lib.sh"

ou_create
{
	for i in $(seq 1 1003); do user_ldif u$i User u$i; done
	group_ldif CC-Support $(for i in $(seq 1 1003); do udn u$i; done)
} | ldif_add
MAX_DEACT_PCT=50 config_write

ids plan
eq 0 "$RC" "plan"
eq 0 "$(grep -c ' created$' "$W/err" || true)" "a plan logs no change"

ids sync
eq 0 "$RC" "first sync of 1003 users"
eq 1000 "$(grep -c 'info corp: user u[0-9]* created$' "$W/err" || true)" "1000 'created' lines, no more"
id=$(q "SELECT max(id) FROM sync_run")
has "info corp: 3 more per-user lines not logged (at most 1000 a run; audit_log has every change)" "$ERR" \
	"then one line counts the rest"
has "info corp: run $id ok: 1003 users, +1003" "$ERR" "... and the run's outcome is logged after them"

# one of each change, each on its own line
ldif <<LDIF
dn: $(udn u1)
changetype: delete

dn: $(udn u2)
changetype: modify
replace: mail
mail: u2.new@example.org
-
replace: sn
sn: Renamed
LDIF
ids sync
eq 0 "$RC" "second sync"
has "info corp: user u1 deactivated: deleted_in_source" "$ERR" "a deactivation names its reason"
has "info corp: user u2 updated (email, last_name)" "$ERR" "an update names the fields, not their values"
hasnt "u2.new@example.org" "$ERR" "... (the new address is in audit_log, not in the log)"
eq 2 "$(grep -c 'info corp: user ' "$W/err" || true)" "and no line for the users it did not change"

# out of scope (left the group) and back
ldif <<LDIF
dn: $(gdn CC-Support)
changetype: modify
delete: member
member: $(udn u3)
LDIF
ids sync
has "info corp: user u3 deactivated: out_of_scope" "$ERR" "leaving the group: out of scope"
ldif <<LDIF
dn: $(gdn CC-Support)
changetype: modify
add: member
member: $(udn u3)
LDIF
ids sync
has "info corp: user u3 reactivated" "$ERR" "back in the group: a reactivation"
finish
