#!/usr/bin/env bash
# reliability.md case 21 and semantics.md safety rule 4: SIGKILL of idsyncd
# in the middle of a large apply (20,000 users, 120,000 grant rows): the
# database holds all of that run or none of it — never a part — and the
# next run converges to the state a clean run gives.
#   1. the first sync, killed in its apply (held at its first write to
#      app_user by a table lock of ours, seen waiting in pg_stat_activity):
#      nothing of it is there, not even its sync_run row, and the advisory
#      lock died with its session;
#   2. a clean sync: every user and grant, counted by hand;
#   3. a rule change that gives everyone one more channel, killed during
#      the pull, at its write to channel_grant, at the audit rows (its last
#      write before the COMMIT), and at moments nobody chose: each time the
#      database is exactly the state before the run or exactly the state
#      after it; a clean run then makes it the latter.
# The directory comes from slapadd into a slapd of the test's own.
# (Killing a daemon while another instance takes over: t_daemon_instances.py.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

n=20000
teams=20
{
	printf 'dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n' "$OU" "$T"
	printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$OU"
	printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$OU"
	for i in $(seq 1 $n); do
		printf 'dn: uid=k%d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: k%d\ncn: K %d\nsn: K%d\nmail: k%d@example.org\n\n' \
			"$i" "$OU" "$i" "$i" "$i" "$i"
	done
	# 20 teams of 1000, each a member of CC-Support (nesting)
	for t in $(seq 1 $teams); do
		printf 'dn: cn=Team-%d,ou=groups,%s\nobjectClass: groupOfNames\ncn: Team-%d\n' "$t" "$OU" "$t"
		for i in $(seq $(((t - 1) * n / teams + 1)) $((t * n / teams))); do
			printf 'member: uid=k%d,ou=people,%s\n' "$i" "$OU"
		done
		printf '\n'
	done
	printf 'dn: cn=CC-Support,ou=groups,%s\nobjectClass: groupOfNames\ncn: CC-Support\n' "$OU"
	for t in $(seq 1 $teams); do printf 'member: cn=Team-%d,ou=groups,%s\n' "$t" "$OU"; done
	printf '\n'
} >"$W/dir.ldif"
own_slapd "$W/dir.ldif"
PAGE_SIZE=1000 MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 config_write
ids migrate # the tables exist before the first run, so that they can be locked
eq 0 "$RC" "migrate"

# kill_when WHEN: starts a sync and SIGKILLs it when WHEN happens: a
# number is milliseconds after its start; TABLE:SQL_LIKE holds a lock on
# TABLE and kills once a statement matching SQL_LIKE waits for it (then
# lets it go).  KILLED=1 when the kill came before the sync ended by
# itself; ELAPSED: milliseconds from the start to the kill or the end.
kill_when() {
	local table= like= pid i t0
	case $1 in *:*) table=${1%%:*} like=${1#*:} && hold_lock "$table" ;; esac
	t0=$(date +%s%N)
	"$IDSYNCD" -c "$W/idsyncd.yaml" sync >"$W/out" 2>"$W/err" &
	pid=$!
	KILLED=0
	local t_end=$(($(date +%s) + 120))
	for i in $(seq 1 6000); do
		kill -0 $pid 2>/dev/null || break
		if [ "$(date +%s)" -gt $t_end ]; then
			bad "[$1] did not happen within 120 s"
			kill -9 $pid 2>/dev/null || true
			break
		fi
		if [ -n "$table" ]; then
			busy "$like" || { sleep 0.05; continue; }
		else
			[ $((($(date +%s%N) - t0) / 1000000)) -ge "$1" ] || { sleep 0.01; continue; }
		fi
		kill -9 $pid 2>/dev/null && KILLED=1
		break
	done
	wait $pid 2>/dev/null || true
	ELAPSED=$((($(date +%s%N) - t0) / 1000000))
	[ -z "$table" ] || release_lock
	gone || bad "a session of the killed sync is still there after 60 s"
}

# 1. the first sync, killed in its apply: staged, then stopped at its
# first write to app_user
kill_when 'app_user:%app_user%'
eq 1 "$KILLED" "first sync killed in its apply"
eq "0 0 0" "$(q "SELECT count(*) FROM app_user") $(q "SELECT count(*) FROM tenant_role") $(q "SELECT count(*) FROM sync_run")" \
	"no user, no grant, not even its sync_run row"

# 2. a clean run: the lock is free again, everything arrives
ids sync
eq 0 "$RC" "the next sync is not locked out and succeeds"
eq "$n|$n|$((2 * n))|$((2 * n))|$n" "$(q "SELECT (SELECT count(*) FROM app_user WHERE active)||'|'||
	(SELECT count(*) FROM tenant_role)||'|'||(SELECT count(*) FROM channel_grant)||'|'||
	(SELECT count(*) FROM slot_limit)||'|'||(SELECT count(*) FROM operator_group_member)")" \
	"20,000 users; 20,000 roles, 40,000 channels, 40,000 slots, 20,000 group rows"
eq "ok|$n" "$(q "SELECT status||'|'||created FROM sync_run")" "one sync_run row, ok"

# 3. one more channel for everyone; kills at several moments
B=$(snapshot_db)
sed -i 's/    channels: \[webchat, email\]/    channels: [webchat, email, whatsapp]/' "$W/idsyncd.yaml"
states=()
# (the table name, not a statement: the apply may INSERT or COPY)
for when in 300 'channel_grant:%channel_grant%' 'audit_log:%audit_log%'; do
	kill_when "$when"
	states+=("$KILLED|$(snapshot_db | md5sum | cut -c1-32)")
	eq "$B" "$(snapshot_db)" "killed at [$when]: exactly the state before the run"
	eq "$(q "SELECT count(*) FROM sync_run")" "$(q "SELECT count(*) FROM sync_run WHERE status='ok'")" \
		"killed at [$when]: no trace in sync_run"
done
# and at a moment nobody chose, between 300 ms and the time the last run
# took to reach its audit rows (a fixed moment either came after the end
# of a fast build's run or before its apply): whatever it left is before
# or after
span=$((ELAPSED > 400 ? ELAPSED - 300 : 100))
kill_when $((300 + RANDOM % span))
states+=("$KILLED|$(snapshot_db | md5sum | cut -c1-32)")
APPLIED_MS=$ELAPSED
timed sync
eq 0 "$RC" "a clean run after the kills"
# all or nothing: after a kill the clean run adds every grant, after a
# run that ended by itself none
if [ "$KILLED" = 1 ]; then
	has "0 reactivate, $n grants added, 0 removed" "$OUT" "the clean run adds the 20,000 grants the kills left out"
	APPLIED_MS=$MS
else
	has "0 reactivate, 0 grants added, 0 removed" "$OUT" "the clean run has nothing left to add"
fi
# the kill points above need the apply to reach its last write in
# reasonable time (3 s with ASan before the COPY apply, 96 s with a grant
# INSERT planned on stale statistics)
within "$APPLIED_MS" 60 "the run that added 20,000 grants took reasonable time"
F=$(snapshot_db)
eq "$n" "$(q "SELECT count(*) FROM channel_grant WHERE channel = 'whatsapp'")" "everyone has the new channel"
Fsum=$(printf '%s\n' "$F" | md5sum | cut -c1-32)
Bsum=$(printf '%s\n' "$B" | md5sum | cut -c1-32)
for s in "${states[@]}"; do
	sum=${s#*|}
	if [ "$sum" = "$Bsum" ] || [ "$sum" = "$Fsum" ]; then
		ok "a killed run left the state before or after it, nothing between"
	else
		bad "a killed run left a state that is neither before nor after it ($s)"
	fi
done
killed=$(printf '%s\n' "${states[@]}" | grep -c '^1|' || true)
[ "$killed" -ge 3 ] && ok "$killed of ${#states[@]} runs were killed before they ended" ||
	bad "only $killed of ${#states[@]} runs were killed before they ended"
ids sync
has "0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" "converged: the next run has nothing to do"
finish
