#!/usr/bin/env bash
# sync --user (issue 17 part 2): one person, now.  A new hire gets their
# grants at once, while another user deleted from the directory meanwhile
# is NOT deactivated (only full runs deprovision); an unknown user exits 1
# and writes nothing but its failed sync_run row.
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif alice Alice Smith
	user_ldif bob Bob Jones
	group_ldif Team-B "$(udn bob)"
	group_ldif CC-Support "$(udn alice)" "$(gdn Team-B)"
	group_ldif CC-Admins "$(udn alice)"
} | ldif_add
config_write

ids sync
eq 0 "$RC" "first full sync"

# the new hire joins through the nested group; bob leaves the directory
user_ldif newhire New Hire new.hire@example.org | ldif_add
ldif <<LDIF
dn: $(gdn Team-B)
changetype: modify
add: member
member: $(udn newhire)

dn: $(udn bob)
changetype: delete
LDIF

ids plan --user new.hire@example.org --connector corp
eq 0 "$RC" "plan --user exits 0"
has "+ user  newhire" "$OUT" "plan --user shows the new hire"
hasnt "bob" "$OUT" "plan --user does not touch bob"
ids sync --user new.hire@example.org --connector corp
eq 0 "$RC" "sync --user exits 0"
has "summary corp: 1 create, 0 update, 0 deactivate" "$OUT" "one create, no deactivation"
eq "t" "$(q "SELECT active FROM app_user WHERE username='newhire'")" "the new hire is active"
eq "email,webchat" "$(q "SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant c JOIN app_user u ON u.id=c.user_id WHERE u.username='newhire'")" "the new hire's channels (nested group)"
eq "1" "$(q "SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id=r.user_id WHERE u.username='newhire' AND r.role='operator'")" "the new hire is an operator"
eq "true|" "$(q "SELECT active||'|'||coalesce(deactivation_reason,'') FROM app_user WHERE username='bob'")" "bob, gone from the directory, is not deactivated by sync --user"
eq "4" "$(q "SELECT count(*) FROM channel_grant c JOIN app_user u ON u.id=c.user_id WHERE u.username IN ('bob','alice')")" "the others' grants are untouched"
eq "ok|user|1|0" "$(q "SELECT status||'|'||read_kind||'|'||created||'|'||deactivated FROM sync_run ORDER BY id DESC LIMIT 1")" "the run is recorded as read_kind user"

# again: nothing left to do for that person
ids sync --user newhire --connector corp
eq 0 "$RC" "second sync --user exits 0"
has "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" "second sync --user changes nothing"

# unknown: exit 1, a clear message, only the failed run row
before=$(snapshot_db)
runs=$(q "SELECT count(*) FROM sync_run")
ids sync --user nobody --connector corp
eq 1 "$RC" "an unknown user exits 1"
has "user nobody not found in connector corp" "$OUT$ERR" "the message names the user and connector"
eq "$before" "$(snapshot_db)" "nothing but the run row was written"
eq "$((runs + 1))" "$(q "SELECT count(*) FROM sync_run")" "one sync_run row for the failed run"
eq "failed|user" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "recorded failed, read_kind user"
ids status
eq 0 "$RC" "status (the monitoring check) is not failed by a mistyped sync --user"

# a targeted run is not a successful run of the connector: with the last
# full run two days old, status --max-age still says stale
q "UPDATE sync_run SET finished_at = now() - interval '2 days' WHERE read_kind = 'full'" >/dev/null
ids sync --user alice --connector corp
eq 0 "$RC" "sync --user alice"
ids status --max-age 1d
eq 1 "$RC" "status --max-age: a sync --user does not hide two days without a full run"

# the read itself is targeted: one user entry and the groups above it
# (Team-B, CC-Support; not CC-Admins), and
# the value is escaped, so "*" or a filter fragment match no one
LOG_LEVEL=debug config_write
ids sync --user newhire --connector corp
has "read 1 users, 2 groups in" "$ERR" "sync --user reads the one user and the groups above it"
ids sync --user '*' --connector corp
eq 1 "$RC" "sync --user '*' finds no one"
has "read 0 users" "$ERR" "'*' is escaped in the filter, not a wildcard"
ids sync --user 'x)(uid=*' --connector corp
has "read 0 users" "$ERR" "a filter fragment is escaped"
config_write

# --user needs one connector
ids sync --user alice --connector nosuch
eq 2 "$RC" "an unknown connector is a usage error"

# a run holding the connector's lock (a full run) is waited for, not
# skipped: the session below holds it for two seconds
key=$(python3 -c '
h = 0xcbf29ce484222325
for b in b"idsyncd:corp":
    h ^= b; h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
print(h - (1 << 64) if h >= 1 << 63 else h)')
(psql -qAtX -d "$DB" -c "SELECT pg_advisory_lock($key)" -c "SELECT 'locked'" -c "SELECT pg_sleep(2)" >"$W/lockout" 2>&1 &)
for _ in $(seq 1 100); do grep -q locked "$W/lockout" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s)
ids sync --user newhire --connector corp
eq 0 "$RC" "sync --user waits for the lock, then runs"
[ $(($(date +%s) - t0)) -ge 1 ] && ok "it did wait" || bad "it did not wait for the lock"

# a full run still deprovisions bob
ids sync
eq 0 "$RC" "full sync"
eq "false|deleted_in_source" "$(q "SELECT active||'|'||deactivation_reason FROM app_user WHERE username='bob'")" "the full run deactivates bob"
finish
