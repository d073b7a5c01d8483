#!/usr/bin/env bash
# Issue 17 part 3: a run that a safety threshold stopped holds its plan;
# `idsyncd approve RUN_ID` plans again and applies only that same plan.
# Part 4b's `status --max-age`.  Every step checks the database, not only
# what was printed.
. "$(dirname "$0")/lib.sh"

ou_create
{
	for i in $(seq 1 10); do user_ldif s$i User s$i; done
	group_ldif CC-Support $(for i in $(seq 1 10); do udn s$i; done)
} | ldif_add
MAX_DEACT_PCT=10 config_write
active() { q "SELECT count(*) FROM app_user WHERE active"; }
last_run() { q "SELECT max(id) FROM sync_run"; }
del() { for u in "$@"; do printf 'dn: %s\nchangetype: delete\n\n' "$(udn "$u")"; done | ldif; }

# --max-age before any run: never ran is stale
ids migrate
ids status --max-age 1h
eq 1 "$RC" "--max-age: a connector that never ran fails the check"
has "stale: corp: no successful run yet" "$OUT" "... and says so"
ids status
eq 0 "$RC" "without --max-age the same status passes"
has "daemon: no daemon heartbeat" "$OUT" "status: no daemon has beaten"

ids sync
eq 0 "$RC" "initial sync"
ids status --max-age 1h
eq 0 "$RC" "--max-age 1h right after a successful run: fresh"
q "UPDATE sync_run SET finished_at = finished_at - interval '3 hours' WHERE status = 'ok'"
ids status --max-age 2h
eq 1 "$RC" "--max-age 2h, the last ok run 3 h old: stale"
has "stale: corp: last successful run 3 h ago, older than --max-age 2 h" "$OUT" "... says how old"
ids status --max-age 2h --format json
eq '["corp"]' "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["stale"]))')" \
	"json: stale names the connector"
ids status --max-age 1x
eq 2 "$RC" "--max-age needs a duration"

# ---- hold: 3 of 10 (30 %) over 10 %
del s8 s9 s10
before=$(snapshot_db)
ids sync
eq 3 "$RC" "threshold: exit 3"
H1=$(last_run)
has "held: run $H1 (3 deactivations over the limit of 1 (10% of 10 active users)): review with \`idsyncd approve $H1 --dry-run\`, apply with \`idsyncd approve $H1\`" \
	"$OUT" "the summary says how to approve"
eq "1|$H1|corp|64|f" "$(q "SELECT count(*) OVER (), run_id, connector, length(digest), approved_run IS NOT NULL FROM held_plan")" \
	"the plan is held in held_plan under the run's id"
eq "86400" "$(q "SELECT extract(epoch FROM expires_at - created_at)::int FROM held_plan")" "held for a day by default"
eq "$before" "$(snapshot_db)" "holding writes nothing else"
ids status
has "held: run $H1 (3 deactivations over the limit of 1 (10% of 10 active users)): idsyncd approve $H1" "$OUT" \
	"status names the held run and the command"
ids status --format json
eq "$H1" "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["held"][0]["run_id"])')" \
	"json: held[0].run_id"

# the daemon's retry holds the same plan: the id under review stays
ids sync
eq 3 "$RC" "still held on the next run"
has "held: run $H1 " "$OUT" "the same plan keeps its held run id"
eq 1 "$(q "SELECT count(*) FROM held_plan")" "no second held plan for the same plan"

ids approve "$H1" --dry-run
eq 0 "$RC" "approve --dry-run"
has "- user  s10  deactivate" "$OUT" "--dry-run prints the held plan"
eq "$before" "$(snapshot_db)" "--dry-run writes nothing"

ids approve 99999
eq 2 "$RC" "approve of a run that held nothing: usage error"
has "run 99999 held no plan" "$ERR" "... says so"

# ---- approve: same directory, same plan, applied exactly
ids approve "$H1"
eq 0 "$RC" "approve applies the held plan"
A1=$(last_run)
has "approved: run $A1 applied the plan held by run $H1" "$OUT" "approve says which run applied it"
eq 7 "$(active)" "the three deactivations were applied"
eq "ok" "$(q "SELECT status FROM sync_run WHERE id = $A1")" "the approve run is recorded ok"
eq "3" "$(q "SELECT count(*) FROM audit_log WHERE run_id = $A1 AND action = 'deactivate'")" \
	"its audit rows: exactly the three deactivations"
eq "$A1" "$(q "SELECT approved_run FROM held_plan WHERE run_id = $H1")" "the held plan is marked approved"
ids approve "$H1"
eq 3 "$RC" "approving twice is refused"
has "already approved: run $A1 applied it" "$ERR" "... naming the run that applied it"
eq "$A1" "$(last_run)" "the refusal wrote no run"

# ---- the directory changes between hold and approve
del s6 s7
ids sync
eq 3 "$RC" "2 of 7 held"
H2=$(last_run)
del s5
before=$(snapshot_db)
ids approve "$H2"
eq 3 "$RC" "approve of a plan that changed: exit 3"
H3=$(last_run)
has "--- held by run $H2" "$OUT" "the difference is printed"
has "+ - user  s5  deactivate" "$OUT" "... with the new deactivation"
hasnt "+ - user  s6" "$OUT" "... and not the unchanged ones"
has "held: run $H3 (" "$OUT" "the new plan is held under a new run id"
eq "$before" "$(snapshot_db)" "nothing applied"
eq "aborted_threshold" "$(q "SELECT status FROM sync_run WHERE id = $H3")" "the approve run is recorded aborted"
eq "$H3|" "$(q "SELECT superseded_by, approved_run FROM held_plan WHERE run_id = $H2")" \
	"the old held plan is superseded by the new one"
ids approve "$H2"
eq 3 "$RC" "a superseded plan is refused"
has "superseded by run $H3 of corp" "$ERR" "... pointing to the new one"
ids status
has "held: run $H3 (" "$OUT" "status shows the new held run"
hasnt "held: run $H2 (" "$OUT" "... not the superseded one"

# ---- expiry: safety.hold_expiry
sed -i 's/^safety:$/safety:\n  hold_expiry: 1s/' "$W/idsyncd.yaml"
del s4
ids sync
eq 3 "$RC" "held again"
H4=$(last_run)
has "held: run $H4 " "$OUT" "another plan: held under its own run"
eq "1" "$(q "SELECT extract(epoch FROM expires_at - created_at)::int FROM held_plan WHERE run_id = $H4")" \
	"hold_expiry: 1s"
sleep 2
before=$(snapshot_db)
ids approve "$H4"
eq 3 "$RC" "an expired plan is refused"
has "the held plan expired at " "$ERR" "... saying so"
eq "$before" "$(snapshot_db)" "nothing applied"
ids status
hasnt "held: run $H4 " "$OUT" "an expired plan is no longer listed"

# --allow-mass-deactivation stays for scripts; an applied sync settles
# what was held (H5: pending, then superseded by the sync that applied)
sed -i 's/  hold_expiry: 1s/  hold_expiry: 1h/' "$W/idsyncd.yaml"
ids sync
eq 3 "$RC" "held once more, for an hour"
H5=$(last_run)
ids sync --allow-mass-deactivation
eq 0 "$RC" "--allow-mass-deactivation applies without approve"
S1=$(last_run)
eq 3 "$(active)" "s4, s5, s6, s7 deactivated"
eq "$S1" "$(q "SELECT superseded_by FROM held_plan WHERE run_id = $H5")" "the applied sync supersedes the held plan"
ids status
hasnt "held: run" "$OUT" "status offers no held plan after the sync applied"
ids approve "$H5"
eq 3 "$RC" "approving it now is refused"
eq "$S1" "$(last_run)" "... without a run"

# the empty-source guard does not hold a plan (README, Decisions)
n=$(q "SELECT count(*) FROM held_plan")
del s1 s2 s3
ids sync
eq 3 "$RC" "an empty read is aborted"
eq "aborted_empty" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "... as aborted_empty"
eq "$n" "$(q "SELECT count(*) FROM held_plan")" "... and holds no plan"
hasnt "idsyncd approve" "$OUT" "... nor offers approve"
finish
