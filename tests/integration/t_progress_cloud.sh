#!/usr/bin/env bash
# Progress of a cloud source (issue 21): the objects and pages received.
# 1500 Entra users in pages of 25 and 10 groups, through a proxy that holds
# every piece from the Graph fake back 30 ms (tcpproxy.py's slow mode: a
# slow tenant), `sync --progress` with stderr to a file: the line counts
# users and pages as they come, then the groups; the count only grows; the
# run ends with the line erased, and without --progress nothing of it is
# written.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"
HARNESS=$(cd "$(dirname "$0")/../harness" && pwd)

graph_start --secret-file "$W/secret.raw" --gen-users 1500 --gen-groups 10 --page-size 25
echo "slow 30" >"$W/proxy.mode"
"$PY" "$HARNESS/tcpproxy.py" --target "127.0.0.1:$GRAPH_PORT" --port-file "$W/proxy.port" \
	--mode-file "$W/proxy.mode" --log "$W/proxy.log" &
PROXY_PID=$!
trap 'kill "$PROXY_PID" 2>/dev/null || true; graph_stop; cleanup' EXIT
for _ in $(seq 1 100); do
	[ -s "$W/proxy.port" ] && break
	sleep 0.05
done
# the login and Graph endpoints both behind the proxy: the fake builds its
# next links from the Host it is asked for, so paging stays on the proxy
GRAPH_URL="https://127.0.0.1:$(cat "$W/proxy.port")" MAX_DEACT_PCT=100 entra_config "$(entra_secret)"

# draws WHAT: the texts the line showed for `cloud WHAT`, one a line
draws() { tr '\r' '\n' <"$W/err" | sed 's/\x1b\[K//g' | grep -E "^cloud $1" || true; }

t0=$(date +%s.%N)
ids sync --progress
el=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
echo "sync of 1500 users through the slow proxy: ${el}s"
eq 0 "$RC" "sync --progress exits 0"
has "summary cloud: " "$OUT" "the summary goes to stdout as ever"

users=$(draws 'reading users: ')
counts=$(sed -E 's/^cloud reading users: ([0-9,]+) \(page ([0-9,]+)\).*/\1/' <<<"$users" | tr -d ,)
pages=$(sed -E 's/^cloud reading users: ([0-9,]+) \(page ([0-9,]+)\).*/\2/' <<<"$users" | tr -d ,)
printf '%s\n' "$users" | sed -n '1p;$p'
n=$(sort -u <<<"$counts" | grep -c . || true)
[ "$n" -ge 3 ] && ok "several updates with growing user counts ($n)" || bad "several updates of the user count: $n"
eq "$(sort -n <<<"$counts")" "$counts" "the user count only grows"
[ "$(tail -n1 <<<"$counts")" -gt "$(head -n1 <<<"$counts")" ] && ok "and it grew" || bad "the user count did not grow"
eq "$(sort -n <<<"$pages")" "$pages" "the page number only grows"
# Graph's users are in pages of 25: the pages received tell the count
bad_pairs=$(paste -d' ' <(echo "$counts") <(echo "$pages") | awk '$1 > $2 * 25' | head -n1)
eq "" "$bad_pairs" "at most 25 users a page received"
groups=$(draws 'reading groups: ')
printf '%s\n' "$groups" | sed -n '$p'
[ -n "$groups" ] && ok "then the groups and their member pages" || bad "no group progress"
has " pages/s" "$groups" "while only member pages come, their rate"
last_draw=$(draws '' | tail -n1)
has "cloud applying" "$last_draw" "the last phase drawn is the apply"
last4=$(tail -c 4 "$W/err" | od -An -tx1 | tr -d ' \n')
case "$last4" in
0d1b5b4b | *0a) ok "the line is erased at the end (or a log line ended it)" ;;
*) bad "the stream ends in the middle of a progress line: [$last4]" ;;
esac

# without --progress, stderr to a file: not a trace of it
ids sync
eq 0 "$RC" "sync without --progress exits 0"
hasnt $'\r' "$ERR" "no carriage return"
hasnt "reading users" "$ERR" "no progress text"

finish
