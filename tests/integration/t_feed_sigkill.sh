#!/usr/bin/env bash
# Issue 14, "kill -9 during an incremental apply: all or nothing, the
# cursor with it, then convergence": a change read through the feed (20
# new people in CC-Support), its run killed with SIGKILL while its apply
# waits at its first write to app_user (a table lock of ours, seen in
# pg_stat_activity).  The database, the stored cursor and the stored image
# are exactly as before; the next run reads the same change again from the
# old cursor, applies it once, and a full plan finds nothing to do.
# (Full runs killed at many points: t_fault_21_sigkill.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

support_org 40

ids sync
eq 0 "$RC" "first sync"
eq "ok|full" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "... through the feed, everything"
F0=$(feed_row)
I0=$(image_digest)
[ -n "$F0" ] && ok "a cursor is stored" || bad "no cursor stored after the first sync"

support_join 41 60
B=$(snapshot_db)
runs0=$(runs)

hold_lock app_user
"$IDSYNCD" -c "$W/idsyncd.yaml" sync >"$W/out" 2>"$W/err" &
pid=$!
for _ in $(seq 1 600); do busy '%app_user%' && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
busy '%app_user%' && ok "the incremental run waits in its apply" || bad "the run never reached its write to app_user"
kill -9 $pid 2>/dev/null && ok "killed in its apply" || bad "the run ended before it could be killed"
wait $pid 2>/dev/null || true
release_lock
gone || bad "a session of the killed sync is still there"

eq "$B" "$(snapshot_db)" "after the kill: users and grants exactly as before"
eq "$runs0" "$(runs)" "... no sync_run row of it"
eq "$F0" "$(feed_row)" "... the stored cursor as before"
eq "$I0" "$(image_digest)" "... the stored image as before"

ids sync
eq 0 "$RC" "the next run"
eq "ok|incremental" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "... reads the feed from the old cursor"
has "20 create" "$OUT" "... and applies the change once"
eq 60 "$(q "SELECT count(*) FROM app_user WHERE active")" "60 active users"
[ "$F0" != "$(feed_row)" ] && ok "... and moves the cursor" || bad "the cursor did not move with the applied change"
ids plan --full
has "0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" "converged: a full plan has nothing to do"
finish
