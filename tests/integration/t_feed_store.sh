#!/usr/bin/env bash
# Issue 14: the change feed's image and cursor stored in PostgreSQL
# (connector_image, connector_feed; migration 9), so that one-shot commands
# and a restarted daemon continue the feed instead of reading everything.
#   1. a second `idsyncd sync` continues from the stored cursor
#      (read_kind incremental) and applies what changed meanwhile; the
#      image rows it did not change are not rewritten; plan --full agrees;
#   2. `plan` reads the stored state and writes nothing;
#   3. settings that shape records changed: the stored image is discarded
#      (a full read, a feed reset counted with its reason); image rows lost
#      behind idsyncd's back: the same;
#   4. kill -9 of `idsyncd sync` in an incremental apply (held at its
#      write to the image, or to app_user): cursor, image and grants all
#      or nothing, then the next run converges;
#   5. a present phase (a cookie past the session log) that leaves
#      nobody present: the empty-source guard holds the run;
#   6. the daemon: stopped, changed meanwhile, restarted: its first run is
#      incremental; PostgreSQL restarted between its runs: it goes on.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

# our own cluster (restarted in 6) and our own slapd (a short session log
# in 5); the database lib.sh made on the shared cluster goes
own_cluster

n=100
{
	printf 'dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n' "$OU" "$T"
	printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$OU"
	printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$OU"
	for i in $(seq 1 $n); do
		printf 'dn: uid=s%d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: s%d\ncn: S %d\nsn: S%d\nmail: s%d@example.org\n\n' \
			"$i" "$OU" "$i" "$i" "$i" "$i"
	done
	printf 'dn: cn=CC-Support,ou=groups,%s\nobjectClass: groupOfNames\ncn: CC-Support\n' "$OU"
	for i in $(seq 1 $n); do printf 'member: uid=s%d,ou=people,%s\n' "$i" "$OU"; done
	printf '\ndn: cn=CC-Admins,ou=groups,%s\nobjectClass: groupOfNames\ncn: CC-Admins\nmember: uid=s1,ou=people,%s\n\n' "$OU" "$OU"
} >"$W/dir.ldif"
own_slapd "$W/dir.ldif"
# the account whose size limit allows the feed's unpaged refresh
IDS_TEST_LDAP_BIND_DN=$IDS_TEST_LDAP_SYNC_DN IDS_TEST_LDAP_BIND_PW_FILE=$IDS_TEST_LDAP_SYNC_PW_FILE \
	MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 config_write
last_run() { q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1"; }
cursor() { q "SELECT encode(cursor, 'hex') FROM connector_feed WHERE connector = 'corp'"; }
nothing_to_do() {
	ids plan --full
	eq 0 "$RC" "$1: plan --full exits 0"
	has "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" \
		"$1: plan --full has nothing to do"
}

# 1. a second sync continues the feed
ids sync
eq 0 "$RC" "first sync"
eq "ok|full" "$(last_run)" "the first sync reads everything (no cursor yet)"
eq $((n + 2)) "$(q "SELECT count(*) FROM connector_image WHERE connector = 'corp'")" \
	"the image is stored: $n users and 2 groups"
eq "$((n + 2))" "$(q "SELECT image_records FROM connector_feed")" "... and counted with its cursor"
s2_row() { q "SELECT xmin FROM connector_image WHERE position('s2@example.org'::bytea IN record) > 0"; }
s2_before=$(s2_row)
{
	printf 'dn: uid=s%d,ou=people,%s\nchangetype: add\nobjectClass: inetOrgPerson\nuid: s%d\ncn: New\nsn: New\nmail: new@example.org\n\n' \
		$((n + 1)) "$OU" $((n + 1))
	printf 'dn: cn=CC-Support,ou=groups,%s\nchangetype: modify\nadd: member\nmember: uid=s%d,ou=people,%s\n-\ndelete: member\nmember: uid=s3,ou=people,%s\n\n' \
		"$OU" $((n + 1)) "$OU" "$OU"
	printf 'dn: uid=s4,ou=people,%s\nchangetype: delete\n\n' "$OU"
} | ldif
ids sync
eq 0 "$RC" "second sync"
eq "ok|incremental" "$(last_run)" "the second sync continues from the stored cursor"
has "summary corp: 1 create, 0 update, 2 deactivate" "$OUT" "... and applies what changed meanwhile"
eq "true|false|false" "$(q "SELECT string_agg(active::text, '|' ORDER BY username) FROM app_user WHERE username IN ('s$((n + 1))', 's3', 's4')")" \
	"the new member is active, the removed one and the deleted one are not"
[ -n "$s2_before" ] && eq "$s2_before" "$(s2_row)" "an unchanged user's image row is not rewritten"
eq $((n + 2)) "$(q "SELECT count(*) FROM connector_image")" "the image: one user more, one less"
nothing_to_do "after the incremental sync"
# migration 014: a record big enough to be compressed (CC-Support, 100
# members) is compressed by the column's lz4, not by the staging table's
# pglz, whose value would be copied as it is
eq "lz4" "$(q "SELECT pg_column_compression(record) FROM connector_image WHERE position('cn=CC-Support'::bytea IN record) > 0")" \
	"a group's rewritten image record is stored with lz4"

# 2. plan reads the stored state and writes nothing
printf 'dn: uid=s5,ou=people,%s\nchangetype: modify\nreplace: sn\nsn: Renamed\n\n' "$OU" | ldif
c0=$(cursor)
i0=$(image_digest)
ids plan
eq 0 "$RC" "plan"
has "summary corp: 0 create, 1 update" "$OUT" "plan reads the change through the feed"
eq "$c0" "$(cursor)" "plan leaves the cursor"
eq "$i0" "$(image_digest)" "plan leaves the image"
ids sync
eq "ok|incremental" "$(last_run)" "the sync after the plan is incremental too"
has "summary corp: 0 create, 1 update" "$OUT" "... and applies what the plan showed"

# 3. settings that shape records: the stored image is discarded
sed -i "s#users: { base: \"ou=people,$OU\" }#users: { base: \"ou=people,$OU\", filter: \"(\&(objectClass=inetOrgPerson)(uid=s*))\" }#" \
	"$W/idsyncd.yaml"
ids sync
eq 0 "$RC" "sync with another users filter"
eq "ok|full" "$(last_run)" "... reads everything"
has "change feed reset, everything read again: the connector's settings changed" "$ERR" "... and says why"
eq "1|true" "$(q "SELECT resets||'|'||(last_reset_reason LIKE '%settings changed%') FROM connector_feed")" \
	"the reset is counted with its reason"
ids sync
eq "ok|incremental" "$(last_run)" "the next sync continues from the new cursor"
q "DELETE FROM connector_image WHERE key IN (SELECT key FROM connector_image LIMIT 1)" >/dev/null
# a run that finds no change needs no image: it does not read it back
ids sync
eq "ok|incremental" "$(last_run)" "a run without a change does not read the stored image"
printf 'dn: uid=s6,ou=people,%s\nchangetype: modify\nreplace: sn\nsn: Missing\n\n' "$OU" | ldif
ids sync
eq "ok|full" "$(last_run)" "an image missing a record, read back for a change, is discarded: a full read"
eq "2|true" "$(q "SELECT resets||'|'||(last_reset_reason LIKE '%does not hold the records%') FROM connector_feed")" \
	"... counted as a reset with its reason"
nothing_to_do "after the resets"

# 4. kill -9 in an incremental apply: all or nothing, then convergence
kill_at() {
	hold_lock "$1"
	"$IDSYNCD" -c "$W/idsyncd.yaml" sync >"$W/out" 2>"$W/err" &
	local pid=$! i
	KILLED=0
	for i in $(seq 1 1200); do
		kill -0 $pid 2>/dev/null || break
		busy "$2" || { sleep 0.05; continue; }
		kill -9 $pid 2>/dev/null && KILLED=1
		break
	done
	wait $pid 2>/dev/null || true
	release_lock
	gone || bad "a session of the killed sync is still there after 60 s"
}
state() { printf '%s\n%s\n%s\n' "$(snapshot_db)" "$(cursor)" "$(image_digest)"; }
k=0
for at in 'connector_image:%connector_image%' 'app_user:%app_user%'; do
	k=$((k + 1))
	{
		printf 'dn: cn=CC-Support,ou=groups,%s\nchangetype: modify\ndelete: member\nmember: uid=s%d,ou=people,%s\n\n' \
			"$OU" $((k * 20 + RANDOM % 20)) "$OU"
		printf 'dn: uid=s%d,ou=people,%s\nchangetype: modify\nreplace: sn\nsn: K%d\n\n' $((55 + k * 15 + RANDOM % 15)) "$OU" "$RANDOM"
	} | ldif
	before=$(state)
	runs0=$(q "SELECT count(*) FROM sync_run")
	kill_at "${at%%:*}" "${at#*:}"
	eq 1 "$KILLED" "[$at] the incremental sync was killed in its apply"
	eq "$before" "$(state)" "[$at] grants, cursor and image are as before the run"
	eq "$runs0" "$(q "SELECT count(*) FROM sync_run")" "[$at] not even its sync_run row"
	ids sync
	eq "ok|incremental" "$(last_run)" "[$at] the next sync continues from the old cursor"
	has "0 create, 1 update, 1 deactivate" "$OUT" "[$at] ... and applies the killed run's changes"
	nothing_to_do "[$at] after the kill"
done

# 5. a present phase that leaves nobody present: the empty-source guard
# (the session log holds 1000 changes: past it, slapd names what is present)
ids sync
c0=$(cursor)
{
	for v in 1 2 3 4 5 6 7 8 9 10 11; do
		for i in $(seq 1 $n); do printf 'dn: uid=s%d,ou=people,%s\nchangetype: modify\nreplace: description\ndescription: %d\n\n' "$i" "$OU" "$v"; done
	done
	for i in $(seq 1 $((n + 1))); do printf 'dn: uid=s%d,ou=people,%s\nchangetype: delete\n\n' "$i" "$OU"; done
} | ldif -c >/dev/null 2>&1 || true
eq 0 "$(ldapsearch -LLL -ZZ -x -H "$IDS_TEST_LDAP_URI" -D "$IDS_TEST_LDAP_ADMIN_DN" -y "$IDS_TEST_LDAP_ADMIN_PW_FILE" \
	-b "ou=people,$OU" '(objectClass=inetOrgPerson)' dn | grep -c '^dn:' || true)" "the directory has no user left"
ids sync
eq 3 "$RC" "a feed that leaves nobody is held (exit 3)"
eq "aborted_empty|incremental" "$(last_run)" "... as an empty source, read incrementally"
eq "$c0" "$(cursor)" "... and the cursor stays where it was"

# 6. the daemon: a restart continues the feed; so does a PostgreSQL restart
printf 'dn: uid=sd1,ou=people,%s\nobjectClass: inetOrgPerson\nuid: sd1\ncn: D\nsn: D\nmail: sd1@example.org\n\n' "$OU" | ldif_add
printf 'dn: cn=CC-Support,ou=groups,%s\nchangetype: modify\nadd: member\nmember: uid=sd1,ou=people,%s\n\n' "$OU" "$OU" | ldif
sed -i 's/^log:$/sync: { interval: 2s, jitter: 0s, retry_min: 1s, retry_max: 2s }\nlog:/' "$W/idsyncd.yaml"
wait_ok() {
	for _ in $(seq 1 600); do
		id=$(q "SELECT coalesce(max(id), 0) FROM sync_run WHERE status = 'ok' AND id > $1" 2>/dev/null || echo 0)
		[ "${id:-0}" -gt 0 ] && { echo "$id"; return 0; }
		sleep 0.1
	done
	echo 0
}
daemon_start() {
	"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/d.out" 2>>"$W/d.err" &
	DAEMON=$!
	at_exit "kill $DAEMON 2>/dev/null"
}
daemon_stop() {
	kill -TERM "$DAEMON"
	wait "$DAEMON" 2>/dev/null || true
}
last=$(q "SELECT max(id) FROM sync_run")
daemon_start
id1=$(wait_ok "$last")
[ "$id1" -gt 0 ] && ok "the daemon runs ok" || bad "the daemon never ran ok"
daemon_stop
eq "t" "$(q "SELECT active FROM app_user WHERE username = 'sd1'")" "the daemon applied the feed's new user"
printf 'dn: uid=sd2,ou=people,%s\nobjectClass: inetOrgPerson\nuid: sd2\ncn: D\nsn: D\nmail: sd2@example.org\n\n' "$OU" | ldif_add
printf 'dn: cn=CC-Support,ou=groups,%s\nchangetype: modify\nadd: member\nmember: uid=sd2,ou=people,%s\n\n' "$OU" "$OU" | ldif
last=$(q "SELECT max(id) FROM sync_run")
daemon_start
id2=$(wait_ok "$last")
eq "ok|incremental" "$(q "SELECT status||'|'||read_kind FROM sync_run WHERE id = $id2")" \
	"the restarted daemon's first run continues from the stored cursor"
eq "t" "$(q "SELECT active FROM app_user WHERE username = 'sd2'")" "... and applies the change made while it was down"
pg2_restart
printf 'dn: uid=sd1,ou=people,%s\nchangetype: delete\n\n' "$OU" | ldif
for _ in $(seq 1 600); do
	[ "$(q "SELECT active FROM app_user WHERE username = 'sd1'" 2>/dev/null)" = f ] && break
	sleep 0.1
done
eq "f" "$(q "SELECT active FROM app_user WHERE username = 'sd1'")" \
	"after a PostgreSQL restart, the daemon applies a deletion"
eq "ok|incremental" "$(q "SELECT status||'|'||read_kind FROM sync_run WHERE status = 'ok' ORDER BY id DESC LIMIT 1")" \
	"... through the feed, incrementally"
daemon_stop
nothing_to_do "after the daemon"
finish
