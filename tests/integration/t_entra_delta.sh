#!/usr/bin/env bash
# Entra through Graph delta queries (issue 15), the daemon's change feed on
# the Graph fake: the first run reads /users/delta and /groups/delta whole
# and gives what a full read (transitiveMembers) gives, nesting included;
# a no-change run is exactly two requests plus the token; soft delete and
# restore (the same row), hard delete, membership and nesting changes;
# groups split over pages, empty pages, a replayed round, throttling
# mid-round; lost delta state (410 with Location, syncStateNotFound,
# links older than 6 days), a changed $select and a changed scope read
# everything in the same run,
# logged and counted; a scope entry matching no group fails the run.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"
. "$(dirname "$0")/entra_delta_lib.sh"

A=aaaaaaaa-0000-4000-8000-000000000001 # alice
B=aaaaaaaa-0000-4000-8000-000000000002 # bob (in Team-B)
C=aaaaaaaa-0000-4000-8000-000000000003 # carol (in Team-C, nested in Team-B)
E=aaaaaaaa-0000-4000-8000-000000000005 # eve
G_SUP=bbbbbbbb-0000-4000-8000-000000000001
G_B=bbbbbbbb-0000-4000-8000-000000000002
G_C=bbbbbbbb-0000-4000-8000-000000000003
G_ADM=bbbbbbbb-0000-4000-8000-000000000004

# tenant FILE ALICE_EXTRA TEAM_B_MEMBERS TEAM_C_MEMBERS
tenant() {
	cat >"$1" <<-JSON
	{"users": [
	  {"id": "$A", "userPrincipalName": "alice@contoso.example", "mail": "alice@contoso.example",
	   "givenName": "Alice", "surname": "Smith", "displayName": "Alice Smith" $2},
	  {"id": "$B", "userPrincipalName": "bob@contoso.example", "mail": "bob@contoso.example",
	   "givenName": "Bob", "surname": "Jones", "displayName": "Bob Jones", "department": "Sales"},
	  {"id": "$C", "userPrincipalName": "carol@contoso.example", "mail": "carol@contoso.example",
	   "givenName": "Carol", "surname": "White", "displayName": "Carol White"},
	  {"id": "$E", "userPrincipalName": "eve@contoso.example", "mail": "eve@contoso.example",
	   "givenName": "Eve", "surname": "Green", "displayName": "Eve Green"}
	 ],
	 "groups": [
	  {"id": "$G_SUP", "displayName": "CC-Support", "members": ["$A", "$G_B", "$E"]},
	  {"id": "$G_B", "displayName": "Team-B", "members": $3},
	  {"id": "$G_C", "displayName": "Team-C", "members": $4},
	  {"id": "$G_ADM", "displayName": "CC-Admins", "members": ["$A"]}
	 ]}
	JSON
}
load() { graph_ctl "{\"data_file\": \"$1\"}"; }
resets() { q "SELECT resets FROM connector_feed WHERE connector = 'cloud'"; }
nreq() { graph_stat "d['by_endpoint'].get('$1', 0)"; }

tenant "$W/t1.json" "" "[\"$B\", \"$G_C\"]" "[\"$C\"]"
graph_start --secret-file "$W/secret.raw" --data "$W/t1.json" --page-size 2
graph_ctl '{"member_chunk": 1}' # a group's members over several parts, pages split mid-group
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" '    changes: { mode: auto }'
ids migrate
eq 0 "$RC" "migrate"

# ---- the first run: a full read through the delta endpoints
daemon_start
eq "ok|full" "$(last_run "status||'|'||read_kind")" "the first run reads everything, through the feed"
eq "0 0" "$(nreq users) $(nreq members)" "no /users, no transitiveMembers: the delta endpoints only"
eq "id,displayName,mail,members" "$(graph_stat 'd["select"]["groups_delta"]')" "groups \$select with members"
eq "id,accountEnabled,userPrincipalName,mail,givenName,surname,displayName" \
	"$(graph_stat 'd["select"]["users_delta"]')" "users \$select: what is mapped"
eq "3" "$(q "SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id WHERE u.external_id IN ('$A', '$B', '$C')")" \
	"nested members (Team-B, Team-C in Team-B) are operators: the core resolves direct edges"
# the same tenant through transitiveMembers: nothing to change
graph_ctl '{"reset_stats": true}'
plan_clean "after the first delta run"
has "members" "$(graph_stat 'list(d["by_endpoint"])')" "plan --full read transitiveMembers"

# ---- a run with no change: exactly two requests, plus the token
graph_ctl '{"reset_stats": true}'
daemon_run
eq "ok|incremental" "$(last_run "status||'|'||read_kind")" "a no-change run is incremental"
eq "1 1" "$(nreq users_delta) $(nreq groups_delta)" "one request per delta link"
eq "2" "$(graph_stat "d['requests'] - d['by_endpoint'].get('token', 0)")" "exactly 2 Graph requests"
eq "0|0|0|0" "$(last_run "created||'|'||updated||'|'||deactivated||'|'||grants_added")" "and nothing written"

# ---- soft delete, restore: the same row
alice_row=$(q "SELECT id FROM app_user WHERE external_id = '$A'")
tenant "$W/t2.json" ', "@deleted": "changed"' "[\"$B\", \"$G_C\"]" "[\"$C\"]"
load "$W/t2.json"
daemon_run
eq "ok|incremental" "$(last_run "status||'|'||read_kind")" "soft delete: incremental"
eq "false|deleted_in_source" "$(q "SELECT active||'|'||deactivation_reason FROM app_user WHERE external_id = '$A'")" \
	"a soft-deleted user (@removed changed) is deactivated as deleted_in_source"
plan_clean "after a soft delete"
load "$W/t1.json"
daemon_run
eq "true|$alice_row" "$(q "SELECT active||'|'||id FROM app_user WHERE external_id = '$A'")" "restored: the same row, active"
plan_clean "after a restore"

# ---- nesting and membership: carol leaves Team-C, Team-C leaves Team-B; bob leaves
tenant "$W/t3.json" "" "[]" "[]"
load "$W/t3.json"
daemon_run
eq "0" "$(q "SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id WHERE u.external_id IN ('$B', '$C')")" \
	"members@delta removals reach the nested members"
plan_clean "after membership removals"
load "$W/t1.json"
daemon_run
plan_clean "after membership additions"

# ---- a replayed round, empty pages, throttling mid-round
graph_ctl '{"faults": [{"endpoint": "users_delta", "kind": "replay", "back": 5}, {"endpoint": "groups_delta", "kind": "replay", "back": 5}]}'
daemon_run
eq "ok" "$(last_run status)" "a replayed round is merged idempotently"
plan_clean "after a replay"
load "$W/t3.json"
graph_ctl '{"reset_stats": true, "faults": [{"endpoint": "groups_delta", "page": 1, "kind": "empty"}, {"endpoint": "groups_delta", "page": 2, "kind": "429", "retry_after": "1"}]}'
daemon_run
eq "ok|incremental" "$(last_run "status||'|'||read_kind")" "empty pages and a 429 mid-round: the round goes on"
eq "2" "$(graph_stat 'd["faults_fired"]')" "both faults were played"
plan_clean "after throttling"

# ---- hard delete: final
tenant "$W/t4.json" "" "[\"$B\", \"$G_C\"]" "[\"$C\"]"
python3 - "$W/t4.json" "$E" <<-'PY'
	import json, sys
	d = json.load(open(sys.argv[1]))
	d["users"] = [u for u in d["users"] if u["id"] != sys.argv[2]]
	json.dump(d, open(sys.argv[1], "w"))
	PY
load "$W/t4.json"
daemon_run
eq "false|deleted_in_source" "$(q "SELECT active||'|'||deactivation_reason FROM app_user WHERE external_id = '$E'")" \
	"a deleted user (@removed deleted) is deactivated as deleted_in_source"
plan_clean "after a hard delete"

# ---- lost delta state: 410 Gone with a Location, and syncStateNotFound
before=$(resets)
graph_ctl '{"faults": [{"endpoint": "users_delta", "kind": "gone"}]}'
load "$W/t1.json"
daemon_run
eq "ok|full" "$(last_run "status||'|'||read_kind")" "410 Gone: everything read again in the same run"
eq "$((before + 1))" "$(resets)" "and counted"
has "change feed reset" "$(cat "$W/daemon.log")" "and logged"
has "410 Gone" "$(q "SELECT last_reset_reason FROM connector_feed WHERE connector = 'cloud'")" "with its reason"
plan_clean "after a 410"
graph_ctl '{"faults": [{"endpoint": "groups_delta", "kind": "badstate"}]}'
daemon_run
eq "ok|full" "$(last_run "status||'|'||read_kind")" "syncStateNotFound: everything read again"
eq "$((before + 2))" "$(resets)" "and counted"
# a restarted fake knows none of its old tokens (a new key): lost state too
graph_stop
graph_start --port "$GRAPH_PORT" --secret-file "$W/secret.raw" --data "$W/t1.json" --page-size 2
daemon_run
eq "ok|full|$((before + 3))" "$(last_run "status||'|'||read_kind")|$(resets)" "tokens the server forgot: a full round, counted"
plan_clean "after a fake restart"

# ---- stored delta links older than 6 days (Graph keeps directory delta
# state for 7): a full round in the same run, logged and counted.  The
# daemon restarts, so it takes the aged cursor from PostgreSQL.
daemon_stop
week_ago=$(($(date +%s) - 7 * 86400))
q "UPDATE connector_feed SET cursor = convert_to(regexp_replace(convert_from(cursor, 'UTF8'),
   '\"at\":[0-9]+', '\"at\":$week_ago'), 'UTF8') WHERE connector = 'cloud'" >/dev/null
has "\"at\":$week_ago" "$(q "SELECT convert_from(cursor, 'UTF8') FROM connector_feed WHERE connector = 'cloud'")" \
	"the stored cursor now says a week old"
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" '    changes: { mode: auto }'
: >"$W/daemon.log"
daemon_start
eq "ok|full|$((before + 4))" "$(last_run "status||'|'||read_kind")|$(resets)" "links a week old: everything read again, counted"
has "hours old" "$(q "SELECT last_reset_reason FROM connector_feed WHERE connector = 'cloud'")" "with its reason"
has "change feed reset, everything read again: the stored delta links are 168 hours old" "$(cat "$W/daemon.log")" "and logged"
daemon_run
eq "ok|incremental" "$(last_run "status||'|'||read_kind")" "the next run reads the new links"
plan_clean "after links a week old"

# ---- a new rule attribute changes the \$select: a full read, counted
rules=$(default_rules; printf '  - name: sales\n    match: { attribute: { department: "Sales" } }\n    tenant: sales\n    roles: [operator]\n')
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" '    changes: { mode: auto }' "$rules"
daemon_reload
daemon_run
eq "ok|full|$((before + 5))" "$(last_run "status||'|'||read_kind")|$(resets)" "a changed \$select reads everything, counted"
# the stored image's settings (the rules' attributes among them) catch
# it before the cursor's own \$select fingerprint does
has "attributes the rules read" "$(q "SELECT last_reset_reason FROM connector_feed WHERE connector = 'cloud'")" \
	"the reason names what changed"
has "department" "$(graph_stat 'd["select"]["users_delta"]')" "the new \$select has the rule's attribute"
eq "t" "$(q "SELECT count(*) > 0 FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id JOIN app_user u ON u.id = r.user_id WHERE t.slug = 'sales' AND u.external_id = '$B'")" "the new rule applies"
plan_clean "after a new rule attribute"

# ---- the groups: scope: filtered locally, nesting through groups out of scope kept
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" \
	"$(printf '    changes: { mode: auto }\n    groups: ["CC-Support", "%s"]' "$G_ADM")"
daemon_reload
daemon_run
eq "ok|full" "$(last_run "status||'|'||read_kind")" "a changed scope reads everything"
plan_clean "with a scope (Team-B and Team-C out of it, nested in CC-Support)"
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" \
	"$(printf '    changes: { mode: auto }\n    groups: ["CC-Support", "CC-Suport"]')"
daemon_reload
before_db=$(snapshot_db)
daemon_run
eq "failed" "$(last_run status)" "a scope entry matching no group fails the run"
has '"CC-Suport"' "$(last_run error)" "the error names the entry"
eq "$before_db" "$(snapshot_db)" "database unchanged"

daemon_stop
finish
