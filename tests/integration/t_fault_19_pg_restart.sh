#!/usr/bin/env bash
# reliability.md case 19: PostgreSQL restarted (`pg_ctl restart -m fast`)
# during a run, on a throwaway cluster of the test's own (the shared one
# serves the other tests).
#   a. in the middle of the apply (held at its first write to app_user by a
#      table lock of ours, which the restart ends too): the run fails and
#      says the connection was lost, nothing of it is written;
#   b. in the middle of the directory read (a slow directory through the
#      proxy): the advisory lock and the connection are gone when the
#      snapshot is ready; the run fails, nothing written;
#   after each, the next run succeeds and converges;
#   c. under the daemon: a restart between runs and another in the middle
#      of a run; the daemon keeps running, reconnects on its own and its
#      next runs succeed.
# (The backend terminated mid-apply and between runs of the daemon:
# t_daemon_dblost.py; kill -9 of idsyncd mid-apply: t_fault_21_sigkill.sh.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

# our own cluster; the database lib.sh made on the shared one goes
own_cluster

n=200
support_org $n
ids sync
eq 0 "$RC" "first sync on our own cluster"
eq $n "$(q "SELECT count(*) FROM app_user WHERE active")" "$n users"

# bg_sync: a sync in the background; bg_wait: its exit code in RC.
bg_sync() {
	"$IDSYNCD" -c "$W/idsyncd.yaml" sync >"$W/out" 2>"$W/err" &
	BG=$!
}
bg_wait() {
	set +e
	wait "$BG"
	RC=$?
	set -e
	OUT=$(cat "$W/out")
	ERR=$(cat "$W/err")
}

# a. restart in the middle of the apply
for i in $(seq 1 5); do printf 'dn: %s\nchangetype: delete\n\n' "$(udn u$i)"; done | ldif
before=$(snapshot_db)
oks=$(q "SELECT count(*) FROM sync_run WHERE status = 'ok'")
hold_lock app_user
bg_sync
for _ in $(seq 1 200); do busy '%app_user%' && break; sleep 0.05; done
busy '%app_user%' && ok "the apply is waiting in its transaction" || bad "the apply never reached app_user"
pg2_restart
release_lock
bg_wait
echo "  mid-apply: $(printf '%s\n' "$ERR" | grep -m1 ' error ')"
eq 1 "$RC" "restart mid-apply: the run fails"
has "connection" "$ERR" "... saying the connection was lost"
eq "$before" "$(snapshot_db)" "restart mid-apply: nothing written"
eq "$oks" "$(q "SELECT count(*) FROM sync_run WHERE status = 'ok'")" "restart mid-apply: no ok run recorded"
ids sync
eq 0 "$RC" "the next run succeeds"
has "summary corp: 0 create, 0 update, 5 deactivate" "$OUT" "... and applies the whole change"

# b. restart in the middle of the directory read
use_proxy
proxy_mode "slow 200"
for i in $(seq 6 10); do printf 'dn: %s\nchangetype: delete\n\n' "$(udn u$i)"; done | ldif
before=$(snapshot_db)
oks=$(q "SELECT count(*) FROM sync_run WHERE status = 'ok'")
bg_sync
sleep 1.5
kill -0 "$BG" 2>/dev/null && ok "the run is still reading the directory" || bad "the run ended too early"
pg2_restart
bg_wait
echo "  mid-pull: $(printf '%s\n' "$ERR" | grep -m1 ' error ')"
eq 1 "$RC" "restart mid-pull: the run fails"
eq "$before" "$(snapshot_db)" "restart mid-pull: nothing written"
eq "$oks" "$(q "SELECT count(*) FROM sync_run WHERE status = 'ok'")" "restart mid-pull: no ok run recorded"
proxy_mode pass
ids sync
eq 0 "$RC" "the next run succeeds"
has "summary corp: 0 create, 0 update, 5 deactivate" "$OUT" "... and applies the whole change"

# c. the daemon: restarts between and during runs, reconnects by itself
sed -i 's/^log:$/sync: { interval: 2s, jitter: 0s, retry_min: 1s, retry_max: 2s }\nlog:/' "$W/idsyncd.yaml"
proxy_mode "slow 100"
last=$(q "SELECT max(id) FROM sync_run")
"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/d.out" 2>"$W/d.err" &
DAEMON=$!
at_exit "kill $DAEMON 2>/dev/null"
# wait_ok AFTER: waits (up to 60 s) for an ok run with an id above AFTER
wait_ok() {
	for _ in $(seq 1 600); do
		id=$(q "SELECT coalesce(max(id), 0) FROM sync_run WHERE status = 'ok' AND id > $1" 2>/dev/null || echo 0)
		[ "${id:-0}" -gt 0 ] && { echo "$id"; return 0; }
		sleep 0.1
	done
	echo 0
}
id1=$(wait_ok "$last")
[ "$id1" -gt 0 ] && ok "the daemon's first run is ok" || bad "the daemon never ran ok"
pg2_restart
id2=$(wait_ok "$id1")
[ "$id2" -gt 0 ] && ok "after a restart between runs, the daemon reconnects and runs ok" ||
	bad "no ok run after the restart between runs"
sleep 1 # into the middle of a (slow) run
pg2_restart
id3=$(wait_ok "$id2")
[ "$id3" -gt 0 ] && ok "after a restart during a run, the daemon reconnects and runs ok" ||
	bad "no ok run after the restart during a run"
kill -0 "$DAEMON" 2>/dev/null && ok "the daemon kept running" || bad "the daemon died"
kill -TERM "$DAEMON"
set +e
wait "$DAEMON"
drc=$?
set -e
eq 0 "$drc" "the daemon exits 0 on SIGTERM"
has "database" "$(cat "$W/d.err")" "the daemon logged the database errors"
eq $((n - 10)) "$(q "SELECT count(*) FROM app_user WHERE active")" "the state of a clean run"
finish
