#!/usr/bin/env bash
# reliability.md case 1: the directory's connection dies in the middle of a
# paged search.  A proxy between idsyncd and slapd cuts (FIN) or resets
# (RST) every connection after N bytes from the server, N anywhere from the
# StartTLS handshake to the last page: every run fails, the database is
# exactly as before (only a `failed` sync_run row is added), and the number
# of reconnections is bounded.  A connection cut once is survived: the
# search restarts on a fresh connection and the run holds every user exactly
# once.  Afterwards, a healthy run converges.
# (The same against a real slapd killed or restarted between pages, at the
# connector level: ctest_ldap_restart.c.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

n=200
support_org $n
use_proxy
# the paged full read is what this case cuts into (the change feed reads
# differently: one unpaged sync search per kind)
sed -i '/^    groups: { base:/a\    changes: { mode: full }' "$W/idsyncd.yaml"

c0=$(proxy_conns)
ids sync
eq 0 "$RC" "first sync through the proxy"
eq $n "$(q "SELECT count(*) FROM app_user WHERE active")" "$n users"
total=$(proxy_last_down "$c0")
[ "${total:-0}" -gt 20000 ] && ok "a whole pull is $total bytes" || bad "a whole pull is only ${total:-?} bytes"

# a complete read would now create 20 users and deactivate 10
{
	for i in $(seq 1 10); do printf 'dn: %s\nchangetype: delete\n\n' "$(udn u$i)"; done
	for i in $(seq 201 220); do user_ldif u$i User u$i | sed '1a changetype: add'; done
	printf 'dn: %s\nchangetype: modify\nadd: member\n' "$(gdn CC-Support)"
	for i in $(seq 201 220); do printf 'member: %s\n' "$(udn u$i)"; done
	printf '\n'
} | ldif

# cut points: during StartTLS, right after the bind, a quarter and half of
# the way through (in the users search, which every restart reads again
# from page 1, so that every connection is cut)
points="100 3000 $((total / 4)) $((total / 2))"
before=$(snapshot_db)
for mode in cut reset; do
	for p in $points; do
		runs0=$(runs)
		proxy_mode "$mode $p"
		conns0=$(proxy_conns)
		ids sync
		eq 1 "$RC" "$mode after $p bytes: the run fails"
		eq "$before" "$(snapshot_db)" "$mode after $p bytes: database unchanged"
		eq $((runs0 + 1)) "$(runs)" "$mode after $p bytes: one sync_run row added"
		eq failed "$(last_run | cut -d'|' -f1)" "$mode after $p bytes: recorded as failed"
		# the first connection and at most 3 restarts (ldap_int.h MAX_RESTARTS)
		c=$(($(proxy_conns) - conns0))
		[ "$c" -ge 1 ] && [ "$c" -le 4 ] && ok "$mode after $p bytes: $c connections (bounded)" ||
			bad "$mode after $p bytes: $c connections"
	done
done
has "connection was lost" "$(last_run)" "the error says the connection was lost"
has "gave up after 3 restarts" "$(last_run)" "... and that the restarts were bounded"
eq 0 "$(q "SELECT count(*) FROM app_user WHERE username IN ('u201','u220')")" "no user of the failed runs was created"
eq 0 "$(q "SELECT count(*) FROM app_user WHERE NOT active")" "no user was deactivated by a partial read"

# every connection cut late, in the groups search: the restart reads the
# groups again on a new connection, which is short enough to get through,
# and the run completes with everyone exactly once
# The cut is placed from a whole pull of the directory as it is now (20
# users more than at the first sync), read by a plan through the healthy
# proxy; the larger of the two measures, since a pull restarted under load
# leaves a shorter last connection (seen once in CI: 51,692 bytes against
# 65,075, which put the cut into the users search).  The proxy logs a
# connection when it sees it end, which under load can come after idsyncd
# exits: the measure waits for the plan's own line (seen in the sixth
# session's CI without the wait: the cut fell back to the first sync's
# measure and into the users search).  Both measures are printed.
proxy_mode pass
c0=$(proxy_conns)
ids plan
late=$(proxy_last_down "$c0")
echo "the late cut: a whole pull of the current directory is ${late:-?} bytes (the first sync's: $total)"
[ "${late:-0}" -gt "$total" ] || late=$total
proxy_mode "cut $((late - 2000))"
conns0=$(proxy_conns)
ids sync
eq 0 "$RC" "cut late in the pull: the restarted groups search completes"
eq 2 "$(($(proxy_conns) - conns0))" "... on a second connection"
has "summary corp: 20 create, 0 update, 10 deactivate" "$OUT" "the run saw the whole directory"
eq $((n + 20 - 10)) "$(q "SELECT count(*) FROM app_user WHERE active")" "$((n + 20 - 10)) active users after the restart"
eq 0 "$(q "SELECT count(*) FROM (SELECT username FROM app_user GROUP BY 1 HAVING count(*) > 1) d")" "nobody twice"

# a connection cut once in the middle of the users: the search starts
# again from page 1 on a new connection; nothing changed, nothing written
before=$(snapshot_db)
proxy_mode "cut $((total / 2)) once"
ids sync
eq 0 "$RC" "a connection cut once: the restarted search completes"
eq "$before" "$(snapshot_db)" "... and finds nothing to change"

# and with the proxy healthy, the next run has nothing left to do
proxy_mode pass
ids sync
eq 0 "$RC" "the next healthy run succeeds"
has "0 create, 0 update, 0 deactivate" "$OUT" "... and converged"
finish
