#!/usr/bin/env bash
# --format json (docs/json.md, issue 12.6): every outcome of a connector
# run — dry run, ok, skipped (locked), aborted by a guard, failed — is an
# object with the same keys in the same order and a format_version; the
# plan names the rules behind each grant (issue 12.4); status has one
# shape for an ok and a failed run.  Parsed with Python's json module.
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif j1 Json One
	user_ldif j2 Json Two
	group_ldif CC-Support "$(udn j1)" "$(udn j2)"
} | ldif_add
MAX_DEACT_PCT=10 config_write

# check_run EXPECTED_STATUS: $OUT is a JSON array of one run object whose
# keys are exactly those of docs/json.md; prints "status verdict error?".
KEYS="format_version connector status verdict verdict_reason error run_id held_run summary timings rows_written peak_rss_kib plan"
check_run() {
	printf '%s' "$OUT" | python3 -c '
import json, sys
keys, want = sys.argv[1].split(), sys.argv[2]
d = json.load(sys.stdin)
assert isinstance(d, list) and len(d) == 1, "one object per connector"
o = d[0]
assert list(o) == keys, f"keys {list(o)}"
assert o["format_version"] == 2, o["format_version"]
assert o["connector"] == "corp"
assert o["status"] == want, o["status"]
print(o["status"], o["verdict"], "error" if o["error"] else "no-error")
' "$KEYS" "$1"
}

ids migrate
ids plan --format json
eq 0 "$RC" "plan exits 0"
eq "dry_run ok no-error" "$(check_run dry_run)" "plan: the run object, verdict ok, no error"
eq "support-operators" "$(printf '%s' "$OUT" | python3 -c '
import json, sys
g = json.load(sys.stdin)[0]["plan"]["grants"]
print(" ".join(sorted({r for x in g for r in x["rules"]})))')" "plan: every grant names its rule"

ids sync --format json
eq 0 "$RC" "sync exits 0"
eq "ok ok no-error" "$(check_run ok)" "sync ok: the same keys"
eq "2 True" "$(printf '%s' "$OUT" | python3 -c '
import json, sys
o = json.load(sys.stdin)[0]
print(o["summary"]["created"], o["run_id"] > 0)')" "sync ok: counts and run id"
eq "support-operators" "$(q "SELECT DISTINCT r FROM audit_log, jsonb_array_elements(detail->'grants') g,
	jsonb_array_elements_text(g->'rules') r WHERE action = 'grant'")" "the audit's grant rows name the rule"

# a revoke rule: the plan says which rule takes a grant away (text and
# JSON); only planned, the database keeps its state for what follows
group_ldif CC-NoEmail "$(udn j1)" | ldif_add
MAX_DEACT_PCT=10 config_write "" "$(default_rules)
  - name: no-email
    match: { member_of: [\"CC-NoEmail\"] }
    tenant: support
    revoke: { channels: [email] }"
ids plan
has "- chan  j1  support  email  revoked by rule no-email" "$OUT" "text plan: the removal names the revoke rule"
ids plan --format json
eq "remove email no-email" "$(printf '%s' "$OUT" | python3 -c '
import json, sys
for g in json.load(sys.stdin)[0]["plan"]["grants"]:
    if g["op"] == "remove":
        print(g["op"], g["name"], ",".join(g["rules"]))')" "JSON plan: the removal names the revoke rule"
MAX_DEACT_PCT=10 config_write

# skipped: another session holds the connector's advisory lock
key=$(python3 -c '
h = 0xcbf29ce484222325
for b in b"idsyncd:corp":
    h ^= b; h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
print(h - (1 << 64) if h >= 1 << 63 else h)')
(psql -qAtX -d "$DB" -c "SELECT pg_advisory_lock($key)" -c "SELECT 'locked'" -c "SELECT pg_sleep(60)" >"$W/lockout" 2>&1 &
 echo $! >"$W/lockpid")
for _ in $(seq 1 100); do grep -q locked "$W/lockout" 2>/dev/null && break; sleep 0.1; done
ids sync --format json
eq 4 "$RC" "locked: exit 4"
eq "skipped_locked None error" "$(check_run skipped_locked)" "locked: the same keys, no verdict, the reason"
kill "$(cat "$W/lockpid")" 2>/dev/null || true
psql -qAtX -d "$DB" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null

# aborted: one of two users leaves, 50% over the 10% limit
printf 'dn: %s\nchangetype: delete\n\n' "$(udn j2)" | ldif
ids sync --format json
eq 3 "$RC" "aborted: exit 3"
eq "aborted_threshold aborted_threshold no-error" "$(check_run aborted_threshold)" \
	"aborted: the same keys, the verdict, not an error"
has "deactivation" "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["verdict_reason"])')" \
	"aborted: verdict_reason says why"
eq "$(q "SELECT max(id) FROM sync_run") $(q "SELECT run_id FROM held_plan")" \
	"$(printf '%s' "$OUT" | python3 -c 'import json,sys; o=json.load(sys.stdin)[0]; print(o["run_id"], o["held_run"])')" \
	"aborted: held_run is the run whose plan was held (issue 17)"

# failed: the directory is unreachable
sed -i 's|uri: \[.*\]|uri: ["ldap://127.0.0.1:9"]|' "$W/idsyncd.yaml"
ids sync --format json
eq 1 "$RC" "failed: exit 1"
eq "failed None error" "$(check_run failed)" "failed: the same keys, no verdict, the error"
eq "None None" "$(printf '%s' "$OUT" | python3 -c '
import json, sys
o = json.load(sys.stdin)[0]
print(o["plan"], o["summary"])')" "failed: no plan, no counts (null)"

# status: the last run of an ok and of a failed connector, one shape
ids status --format json
eq 1 "$RC" "status exits 1 after a failed run"
eq "2 failed True" "$(printf '%s' "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
c = d["connectors"][0]
print(d["format_version"], c["status"], set(c) == {"connector", "configured", "run_id", "status", "verdict",
      "verdict_reason", "error", "started_at", "finished_at", "summary", "next_run_at", "next_run_by",
      "running_on", "overdue_seconds"})')" \
	"status: format_version, the run's keys"
finish
