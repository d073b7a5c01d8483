#!/usr/bin/env bash
# reliability.md case 6: a bad or rotated bind password.  The run fails
# with the server's own words (Invalid credentials (49)), the password is in
# no output, the database is unchanged, and there is no retry storm: one
# bind per run, however many URIs (every attempt may count towards a
# lockout), and the daemon waits retry_max after an auth failure rather
# than doubling up from retry_min — unlike a server that is merely down.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

ou_create
{
	for i in 1 2 3; do user_ldif u$i User u$i; done
	group_ldif CC-Support "$(udn u1)" "$(udn u2)" "$(udn u3)"
} | ldif_add
proxy_start
config_write
use_proxy
ids sync
eq 0 "$RC" "sync with the right password"

# rotated: the file now holds an old password; two URIs (both the proxy)
printf 'Old-Passw0rd-%s' "$$" >"$W/ldap.pw"
sed -i "s#uri: \[\"$PROXY_URI\"\]#uri: [\"$PROXY_URI\", \"$PROXY_URI\"]#" "$W/idsyncd.yaml"
before=$(snapshot_db)
c0=$(proxy_conns)
ids sync
eq 1 "$RC" "a wrong password fails the run"
has "Invalid credentials (49)" "$ERR" "the server's result is in the message"
has "$IDS_TEST_LDAP_BIND_DN" "$ERR" "... with the account"
hasnt "Old-Passw0rd-$$" "$OUT$ERR$(last_run)" "the password is in no output and not in sync_run"
eq "$before" "$(snapshot_db)" "database unchanged"
eq 1 "$(($(proxy_conns) - c0))" "one bind: the second URI is not tried"

# the daemon: after an auth failure the next try is retry_max (20 s) away
sed -i 's/^log:$/sync: { interval: 2s, jitter: 0s, retry_min: 1s, retry_max: 20s }\nlog:/' "$W/idsyncd.yaml"
# daemon_binds MODE: connections the daemon makes in 6.5 s through the proxy
daemon_binds() {
	proxy_mode "$1"
	local c0
	c0=$(proxy_conns)
	"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/d.out" 2>"$W/d.err" &
	local pid=$!
	sleep 6.5
	kill -TERM $pid
	wait $pid || true
	echo $(($(proxy_conns) - c0))
}
auth=$(daemon_binds pass)
eq 1 "$auth" "daemon, wrong password: one attempt in 6.5 s (next one at retry_max)"
has "Invalid credentials" "$(cat "$W/d.err")" "the daemon logged the refusal"
down=$(daemon_binds refuse)
[ "$down" -ge 3 ] && ok "daemon, server refusing connections: $down attempts in 6.5 s (1, 2, 4 s backoff)" ||
	bad "daemon, server refusing connections: only $down attempts"
finish
