#!/usr/bin/env bash
# The daemon keeps the Google connector's access token between runs (the
# bearer layer's cache, oauth.h, shared with Entra: t_entra_token has the
# rest): three runs, one token request; a revoked cached token is replaced
# in the run that meets the 401; the token is in no log line.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/google_lib.sh"
DAEMON_CONN=gws
trap 'daemon_stop; gfake_stop; cleanup' EXIT

gfake_start
sa_json "$GURL/token"
LOG_LEVEL=debug gconfig_write
sed -i 's/^sync:$/sync:\n  interval: 1h\n  jitter: 0s/' "$W/idsyncd.yaml"
ids migrate
eq 0 "$RC" "migrate"

"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/daemon.out" 2>"$W/daemon.log" &
DAEMON_PID=$!
wait_runs 1
for n in 2 3; do
	kill -USR1 "$DAEMON_PID"
	wait_runs "$n"
done
eq "ok|ok|ok" "$(q "SELECT string_agg(status, '|' ORDER BY id) FROM sync_run WHERE connector = 'gws'")" "three runs"
eq "1" "$(gstat 'tokens_issued')" "one token request for three runs"
gctl '{"revoke_tokens": true}'
kill -USR1 "$DAEMON_PID"
wait_runs 4
eq "ok|2" "$(q "SELECT status FROM sync_run WHERE connector = 'gws' ORDER BY id DESC LIMIT 1")|$(gstat 'tokens_issued')" \
	"a 401 on the cached token: a new one, the run succeeds"
hasnt "ya29." "$(cat "$W/daemon.log" "$W/daemon.out")" "no token in the daemon's log (debug)"
daemon_stop
finish
