#!/usr/bin/env bash
# Issue 15's invariant on the Graph fake: after any sequence of random
# tenant changes (entra_delta_gen.py: users added, modified, disabled,
# soft-deleted, restored, deleted; groups added, renamed, deleted;
# members and nesting added and removed) and the daemon's delta runs
# (some with a replayed round, empty pages, throttling, pages split
# mid-group), `plan --full` — a full read through transitiveMembers —
# has nothing to do.  Then a run without changes makes exactly two Graph
# requests besides the token.  IDS_DELTA_SEED and IDS_DELTA_STEPS
# override the seed (default: random, printed) and the step count.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"
. "$(dirname "$0")/entra_delta_lib.sh"

GEN="$PY $(dirname "$0")/entra_delta_gen.py"
SEED=${IDS_DELTA_SEED:-$((RANDOM * 32768 + RANDOM))}
STEPS=${IDS_DELTA_STEPS:-25}
echo "seed $SEED, $STEPS steps (IDS_DELTA_SEED=$SEED reproduces)"

$GEN "$W/tenant.json" init "$SEED"
graph_start --secret-file "$W/secret.raw" --data "$W/tenant.json" --page-size 3
graph_ctl '{"member_chunk": 2}'
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" '    changes: { mode: auto }'
ids migrate
daemon_start
eq "ok|full" "$(last_run "status||'|'||read_kind")" "the first run reads everything through the feed"
plan_clean "seed $SEED, start"

faults=('' '{"endpoint": "users_delta", "kind": "replay", "back": 3}'
	'{"endpoint": "groups_delta", "kind": "replay", "back": 2}'
	'{"endpoint": "groups_delta", "page": 2, "kind": "empty"}'
	'{"endpoint": "users_delta", "page": 1, "kind": "429", "retry_after": "1"}')
for i in $(seq "$STEPS"); do
	$GEN "$W/tenant.json" step "$((SEED + i))" $((1 + i % 4)) >"$W/changes"
	graph_ctl "{\"data_file\": \"$W/tenant.json\"}"
	f=${faults[$((i % ${#faults[@]}))]}
	[ -z "$f" ] || graph_ctl "{\"faults\": [$f]}"
	daemon_run
	eq "ok|incremental" "$(last_run "status||'|'||read_kind")" "step $i: the run is incremental and ok"
	plan_clean "seed $SEED step $i ($(tr '\n' ';' <"$W/changes"))"
	graph_ctl '{"clear_faults": true}'
done

graph_ctl '{"reset_stats": true}'
daemon_run
eq "2" "$(graph_stat "d['requests'] - d['by_endpoint'].get('token', 0)")" "a no-change run: exactly 2 Graph requests"
eq "ok|incremental|0" "$(last_run "status||'|'||read_kind||'|'||created+updated+deactivated+reactivated")" "and nothing written"
daemon_stop
finish
