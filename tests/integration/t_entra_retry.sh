#!/usr/bin/env bash
# What a run survives (reliability.md cases 9, 10, 12, 14): throttling with
# Retry-After as seconds, as an HTTP date, 0 and negative (the wait is at
# least the clamp's 1 s and at least what the server asked), 503 without
# Retry-After (exponential backoff), a token that dies mid-run (renewed
# once, the same page asked again), a token renewed before it expires, a
# connection reset and a slow drip mid-body, a stalled answer, an empty
# page with a next link, a throttled token endpoint.  Each run completes
# with every user; waits are measured on the fake's side.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"

RULES='  - name: support
    match: { member_of: ["CC-Group-000", "CC-Group-001"] }
    tenant: support
    roles: [operator]'

graph_start --secret-file "$W/secret.raw" --gen-users 30 --gen-groups 3 --page-size 10
LOG_LEVEL=debug ENTRA_TIMEOUT=2s entra_config "$(entra_secret)" "" "$RULES"

# recovers WHAT JSON: with this fault set, a sync still exits 0 with all users
recovers() {
	graph_ctl "{\"clear_faults\": true, \"reset_stats\": true, \"faults\": [$2]}"
	t0=$(date +%s.%N)
	ids sync
	el=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
	eq 0 "$RC" "$1: the run completes"
	eq "20" "$(q "SELECT count(*) FROM app_user WHERE active")" "$1: all 20 users are there"
	eq "1" "$(graph_stat 'd["faults_fired"] and 1')" "$1: the fault was played"
	no_secret_in_output "$1"
}
# waits_after STATUS: the gaps (s) between each answer with STATUS and the
# request that followed, as the fake saw them
waits_after() {
	graph_stat "' '.join('%.2f' % (b[0] - a[0]) for a, b in zip(d['log'], d['log'][1:]) if a[3] == $1)"
}
# ge A B: A >= B, as decimals
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
# at_least MIN GAPS... WHAT
at_least() {
	local min=$1 what=${*: -1}
	local gaps=("${@:2:$#-2}")
	[ ${#gaps[@]} -gt 0 ] || { bad "$what: no retry seen"; return; }
	for g in "${gaps[@]}"; do
		if ! ge "$g" "$min"; then
			bad "$what: waited ${g}s, less than ${min}s"
			return
		fi
	done
	ok "$what: waited ${gaps[*]} s (>= $min s)"
}

ids sync
eq 0 "$RC" "first sync exits 0"
eq "1" "$(graph_stat 'd["tokens_issued"]')" "one token for the whole run (cached)"

# ---- 429 with Retry-After: 2, twice on users page 2
recovers "429 Retry-After 2" '{"endpoint": "users", "page": 2, "kind": "429", "times": 2, "retry_after": "2"}'
# shellcheck disable=SC2046
at_least 2.0 $(waits_after 429) "429 Retry-After 2"
eq "5" "$(graph_stat 'd["by_endpoint"]["users"]')" "429: 3 pages + 2 retries of page 2"
if ge "$el" 4; then ok "429: the run took ${el}s (>= 2 x 2 s)"; else bad "429: run took ${el}s"; fi

# ---- Retry-After as an HTTP date, 3 s ahead
when=$(date -u -d '+3 seconds' '+%a, %d %b %Y %H:%M:%S GMT')
recovers "Retry-After as an HTTP date" "{\"endpoint\": \"groups\", \"kind\": \"503\", \"retry_after\": \"$when\"}"
# shellcheck disable=SC2046
at_least 1.9 $(waits_after 503) "Retry-After $when"

# ---- Retry-After 0 and negative: clamped to at least 1 s, no hot loop
recovers "Retry-After 0" '{"endpoint": "members", "kind": "429", "times": 3, "retry_after": "0"}'
# shellcheck disable=SC2046
at_least 1.0 $(waits_after 429) "Retry-After 0"
recovers "Retry-After -5" '{"endpoint": "users", "page": 1, "kind": "429", "retry_after": "-5"}'
# shellcheck disable=SC2046
at_least 1.0 $(waits_after 429) "Retry-After -5"

# ---- 503 without Retry-After: backoff 1 s, then 2 s
recovers "503 without Retry-After" '{"endpoint": "users", "page": 3, "kind": "503", "times": 2}'
read -ra gaps <<<"$(waits_after 503)"
at_least 1.0 "${gaps[0]:-0}" "503 backoff, first retry"
at_least 2.0 "${gaps[1]:-0}" "503 backoff, second retry"
# 504 and 500 are retried the same way
recovers "504 once" '{"endpoint": "groups", "kind": "504"}'
recovers "500 once" '{"endpoint": "members", "kind": "500"}'

# ---- the token dies mid-run: one new token, the same page again
recovers "token expired mid-run" '{"endpoint": "users", "page": 2, "kind": "expire"}'
eq "2|1" "$(graph_stat 'str(d["tokens_issued"]) + "|" + str(d["unauthorized"])')" "expiry: one renewal after one 401"
eq "1,2,2,3" "$(graph_stat '",".join(str(x[2]) for x in d["log"] if x[1] == "users")')" "expiry: page 2 asked again, not page 1"

# ---- a token that says it expires in 4 s is renewed before (margin: half)
graph_ctl '{"expires_in": 4}'
recovers "short-lived token" '{"endpoint": "users", "page": 2, "kind": "429", "retry_after": "3"}'
eq "2|0" "$(graph_stat 'str(d["tokens_issued"]) + "|" + str(d["unauthorized"])')" "short-lived token: renewed before it expired, no 401"
graph_ctl '{"expires_in": 3600}'

# ---- transport: reset mid-body, slow drip, stall (timeout 2 s)
recovers "connection reset mid-body" '{"endpoint": "users", "page": 2, "kind": "reset"}'
eq "4" "$(graph_stat 'd["by_endpoint"]["users"]')" "reset: page 2 read again"
recovers "slow drip mid-body" '{"endpoint": "groups", "kind": "drip", "seconds": 30}'
if ge "$el" 2 && ! ge "$el" 20; then ok "drip: the low-speed limit ended it (run ${el}s)"; else bad "drip: run took ${el}s"; fi
recovers "stalled answer" '{"endpoint": "members", "kind": "stall", "seconds": 60}'
if ge "$el" 2 && ! ge "$el" 20; then ok "stall: the timeout ended it (run ${el}s)"; else bad "stall: run took ${el}s"; fi

# ---- an empty page with a next link: keep paging (case 9)
recovers "empty page with a next link" '{"endpoint": "users", "page": 2, "kind": "empty"}'
eq "4" "$(graph_stat 'd["by_endpoint"]["users"]')" "empty page: one more page read"

# ---- the token endpoint throttled
recovers "token endpoint 503" '{"endpoint": "token", "kind": "503", "retry_after": "1"}'
eq "2" "$(graph_stat 'd["by_endpoint"]["token"]')" "token endpoint asked twice"

# nothing above changed anything
has "summary cloud: 0 create, 0 update, 0 deactivate" "$OUT" "the last run changed nothing"
finish
