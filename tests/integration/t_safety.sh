#!/usr/bin/env bash
# Safety rules 2 and 3 of semantics.md end to end: the empty-source guard
# and the deactivation / grant-removal thresholds, with and without
# --allow-mass-deactivation.  An aborted run writes only its sync_run row.
. "$(dirname "$0")/lib.sh"

ou_create
{
	for i in $(seq 1 10); do user_ldif s$i User s$i; done
	group_ldif CC-Support $(for i in $(seq 1 10); do udn s$i; done)
	group_ldif CC-Admins "$(udn s1)"
} | ldif_add
MAX_DEACT_PCT=10 MAX_REMOVALS_PCT=25 config_write
ids sync
eq 0 "$RC" "initial sync"
eq 10 "$(q "SELECT count(*) FROM app_user WHERE active")" "ten users"

# 1 of 10 leaves: exactly 10 % is allowed
ldif <<LDIF
dn: $(udn s10)
changetype: delete
LDIF
ids sync
eq 0 "$RC" "one deactivation of ten (10 %) is within the threshold"

# 2 of the remaining 9 (22 %) exceed 10 %
ldif <<LDIF
dn: $(udn s8)
changetype: delete

dn: $(udn s9)
changetype: delete
LDIF
before=$(snapshot_db)
ids sync
eq 3 "$RC" "threshold aborts with exit 3"
has "max_deactivation_percent" "$ERR$OUT" "the message names the threshold"
# what was held back, not counts that read as done (issue 12 point 7)
has "summary corp: aborted, nothing written; held: 2 deactivations over the limit of 0 (10% of 9 active users); planned: 0 create, 0 update, 2 deactivate" \
	"$OUT" "the summary line says what was held"
has "run $(q "SELECT max(id) FROM sync_run") aborted, nothing written: held: 2 deactivations over the limit of 0" \
	"$ERR" "... and so does the log line, naming the run"
eq "$before" "$(snapshot_db)" "aborted run changed nothing"
eq "aborted_threshold" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "aborted_threshold recorded"
ids status
has "7 users, nothing written  held: 2 deactivations over the limit of 0" "$OUT" "status says what was held"
hasnt " -2" "$OUT" "... not counts that read as two users deactivated"
ids sync
eq 3 "$RC" "still aborted on the next tick"
ids sync --allow-mass-deactivation
eq 0 "$RC" "--allow-mass-deactivation applies it once"
eq 7 "$(q "SELECT count(*) FROM app_user WHERE active")" "two more deactivated"

# max_deactivations (absolute)
sed -i 's/^safety:$/safety:\n  max_deactivations: 1/' "$W/idsyncd.yaml"
sed -i 's/max_deactivation_percent: 10/max_deactivation_percent: 100/' "$W/idsyncd.yaml"
ldif <<LDIF
dn: $(udn s6)
changetype: delete

dn: $(udn s7)
changetype: delete
LDIF
ids sync
eq 3 "$RC" "max_deactivations: 2 > 1 aborts"
has "max_deactivations" "$ERR$OUT" "message names max_deactivations"
has "held: 2 deactivations over the limit of 1; planned:" "$OUT" "held: counted against max_deactivations"
ids sync --allow-mass-deactivation
eq 0 "$RC" "allowed once"

# grant removals on users that stay active: a rule edit that strips channels
before=$(snapshot_db)
sed -i 's/    channels: \[webchat, email\]/    channels: [webchat]/' "$W/idsyncd.yaml"
sed -i 's/    slots: { live: 2, email: 5 }//; s/    groups: \[first-line\]//' "$W/idsyncd.yaml"
ids sync
eq 3 "$RC" "a rule edit removing most grants is stopped by max_grant_removals_percent"
has "max_grant_removals_percent" "$ERR$OUT" "message names the grant-removal threshold"
has "; held: " "$OUT" "held: the grant removals"
has " grant removals over the limit of " "$OUT" "... counted as grant removals"
eq "$before" "$(snapshot_db)" "nothing removed"

# empty-source guard: every user gone from the directory
for i in 1 2 3 4 5; do printf 'dn: %s\nchangetype: delete\n\n' "$(udn s$i)"; done | ldif
before=$(snapshot_db)
ids sync --allow-mass-deactivation
eq 3 "$RC" "empty snapshot refused even with --allow-mass-deactivation"
has "held: 5 deactivations (the source returned no users)" "$OUT" "held: everyone, by the empty-source guard"
eq "aborted_empty" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "aborted_empty recorded"
eq "$before" "$(snapshot_db)" "empty snapshot changed nothing"
sed -i 's/^    type: ldap$/    type: ldap\n    allow_empty: true/' "$W/idsyncd.yaml"
ids sync --allow-mass-deactivation
eq 0 "$RC" "allow_empty: true accepts it"
eq 0 "$(q "SELECT count(*) FROM app_user WHERE active")" "everyone deactivated"
finish
