#!/usr/bin/env bash
# Issue 14, "PostgreSQL restarts during an incremental apply: all or
# nothing, the cursor with it, then convergence", under the daemon: a
# change read through the feed (20 new people in CC-Support), its run held
# at its first write to app_user (a table lock of ours, seen in
# pg_stat_activity) and PostgreSQL restarted with a fast shutdown (which
# ends the lock's session too).  The run fails, the daemon keeps running;
# users, grants, the stored cursor and the stored image are exactly as
# before and no ok run is recorded for it.  Its next run (SIGUSR1: the
# retry is an hour away) reads the change again from the old cursor and
# applies it once; a full plan then has nothing to do.
# (The same restart in a full one-shot run: t_fault_19_pg_restart; between
# daemon runs: t_feed_store; kill -9 instead: t_feed_sigkill.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

# our own cluster (restarted below); the database lib.sh made on the
# shared one goes
own_cluster

support_org 40
# an hour between runs and between retries: only SIGUSR1 starts a run, so
# the state after the failed run is looked at before anything retries it
sed -i 's/^log:$/sync: { interval: 1h, jitter: 0s, retry_min: 1h, retry_max: 1h }\nlog:/' "$W/idsyncd.yaml"
oks() { q "SELECT count(*) FROM sync_run WHERE status = 'ok'"; }
DAEMON_CONN=corp

"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/daemon.out" 2>"$W/daemon.log" &
DAEMON_PID=$!
at_exit daemon_stop
wait_runs 1
eq "ok|full" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" \
	"the daemon's start run reads everything (no cursor yet)"
eq 40 "$(q "SELECT count(*) FROM app_user WHERE active")" "40 active users"
F0=$(feed_row)
I0=$(image_digest)
[ -n "$F0" ] && ok "a cursor is stored" || bad "no cursor stored after the start run"

support_join 41 60
B=$(snapshot_db)
oks0=$(oks)
lines0=$(wc -l <"$W/daemon.log")

hold_lock app_user
kill -USR1 "$DAEMON_PID"
for _ in $(seq 1 600); do busy '%app_user%' && break; sleep 0.05; done
busy '%app_user%' && ok "the incremental run waits in its apply" || bad "the run never reached its write to app_user"
pg2_restart && ok "PostgreSQL restarted (fast shutdown) under the apply" || bad "pg_ctl restart failed"
release_lock
for _ in $(seq 1 300); do
	tail -n +"$((lines0 + 1))" "$W/daemon.log" | grep -q ' error .*failed' && break
	sleep 0.1
done
ERR=$(tail -n +"$((lines0 + 1))" "$W/daemon.log" | grep ' error ' || true)
echo "  mid-apply: $(printf '%s\n' "$ERR" | grep -m1 'failed')"
has "failed, nothing written" "$ERR" "the run fails, nothing written, and says so"
kill -0 "$DAEMON_PID" 2>/dev/null && ok "the daemon keeps running" || bad "the daemon died with the restart"

eq "$B" "$(snapshot_db)" "after the restart: users and grants exactly as before"
eq "$oks0" "$(oks)" "... no ok run recorded for it"
eq "$F0" "$(feed_row)" "... the stored cursor as before"
eq "$I0" "$(image_digest)" "... the stored image as before"

lines1=$(wc -l <"$W/daemon.log")
kill -USR1 "$DAEMON_PID"
for _ in $(seq 1 300); do [ "$(oks)" -gt "$oks0" ] && break; sleep 0.1; done
eq "ok|incremental" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" \
	"the next run reads the feed from the old cursor"
eq "20|0|0" "$(q "SELECT created||'|'||updated||'|'||deactivated FROM sync_run WHERE status = 'ok' ORDER BY id DESC LIMIT 1")" \
	"... and applies the change once (20 created, nothing else)"
eq 60 "$(q "SELECT count(*) FROM app_user WHERE active")" "60 active users"
eq 20 "$(q "SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id
	WHERE r.role = 'operator' AND u.username ~ '^u(4[1-9]|5[0-9]|60)$'")" "... each of the new ones an operator once"
[ "$F0" != "$(feed_row)" ] && ok "... and the cursor moves with it" || bad "the cursor did not move with the applied change"
hasnt "change feed reset" "$(tail -n +"$((lines1 + 1))" "$W/daemon.log")" "... without a feed reset"
daemon_stop
ids plan --full
has "0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" "converged: a full plan has nothing to do"
finish
