#!/usr/bin/env bash
# reliability.md case 2: the directory stops answering (a stalled TCP
# connection: open, silent, forever).  A proxy swallows everything after N
# bytes from the server — before StartTLS is answered, in the middle of the
# TLS handshake, after the bind, in the middle of the users search, in the
# groups search.  Each run fails within the connector's timeout (3 s here,
# plus a second for a handshake and process start), says it timed out, and
# leaves the database exactly as it was.  The next healthy run succeeds.
# (The daemon's side — watchdog pings during a stalled run, STATUS= — is
# in t_daemon_stall.py.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

n=200
support_org $n
use_proxy
sed -i 's/^    timeout: 10s$/    timeout: 3s/' "$W/idsyncd.yaml"

c0=$(proxy_conns)
ids sync
eq 0 "$RC" "first sync through the proxy"
total=$(proxy_last_down "$c0")
# something to write if a stalled run got through: 10 users fewer
for i in $(seq 1 10); do printf 'dn: %s\nchangetype: delete\n\n' "$(udn u$i)"; done | ldif

before=$(snapshot_db)
for p in 0 500 3000 $((total / 2)) $((total - 3000)); do
	runs0=$(runs)
	proxy_mode "stall $p"
	timed sync
	eq 1 "$RC" "stall after $p bytes: the run fails"
	# 3 s timeout (+1 s for a TLS handshake, which only shutting its
	# socket down ends), plus the process around it
	within "$MS" 10 "stall after $p bytes: within the timeout"
	[ "$MS" -ge 2500 ] && ok "stall after $p bytes: it did wait for the server" ||
		bad "stall after $p bytes: gave up after $MS ms, before the 3 s timeout"
	has "no answer within 3 s" "$OUT$ERR" "stall after $p bytes: the error says it timed out"
	eq "$before" "$(snapshot_db)" "stall after $p bytes: database unchanged"
	eq $((runs0 + 1)) "$(runs)" "stall after $p bytes: one sync_run row added"
	eq failed "$(last_run | cut -d'|' -f1)" "stall after $p bytes: recorded as failed"
done
has "during StartTLS" "$(q "SELECT string_agg(error, ' / ') FROM sync_run WHERE status='failed'")" \
	"a stall before StartTLS is reported as such"
has "users search" "$(q "SELECT string_agg(error, ' / ') FROM sync_run WHERE status='failed'")" \
	"a stall in the users search is reported as such"

proxy_mode pass
ids sync
eq 0 "$RC" "the next healthy run succeeds"
has "summary corp: 0 create, 0 update, 10 deactivate" "$OUT" "... and applies what the stalled runs could not"
finish
