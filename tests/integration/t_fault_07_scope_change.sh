#!/usr/bin/env bash
# reliability.md case 7 and semantics.md "Scope changes are not departures":
# a configuration edit that makes users vanish is not a wave of departures.
#   - users.base pointed at an empty OU: zero users for a connector that
#     owns active ones — the empty-source guard refuses (aborted_empty,
#     exit 3), nothing written;
#   - users.filter narrowed to half the people: the deactivation threshold
#     stops it (aborted_threshold, exit 3), nothing written;
#   - the connector removed from the configuration (another one in its
#     place): its users are left exactly as they are, and `status` and
#     `check-config` name them as orphaned.
# (The guard and the thresholds against a directory that really lost its
# users, with --allow-mass-deactivation and allow_empty: t_safety.sh.)
. "$(dirname "$0")/lib.sh"

ou_create
{
	for i in $(seq 1 20); do user_ldif s$i User s$i; done
	group_ldif CC-Support $(for i in $(seq 1 20); do udn s$i; done)
	printf 'dn: ou=empty,%s\nobjectClass: organizationalUnit\nou: empty\n\n' "$OU"
} | ldif_add
MAX_DEACT_PCT=10 config_write
ids sync
eq 0 "$RC" "initial sync"
eq 20 "$(q "SELECT count(*) FROM app_user WHERE active")" "twenty users"
before=$(snapshot_db)

# the base of the users moved to an empty OU
sed -i "s#users: { base: \"ou=people,$OU\" }#users: { base: \"ou=empty,$OU\" }#" "$W/idsyncd.yaml"
ids sync
eq 3 "$RC" "empty base: refused by the empty-source guard (exit 3)"
eq "aborted_empty" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "aborted_empty recorded"
eq "$before" "$(snapshot_db)" "empty base: nothing written"

# a filter that keeps half of them
sed -i "s#users: { base: \"ou=empty,$OU\" }#users: { base: \"ou=people,$OU\", filter: \"(\&(objectClass=inetOrgPerson)(uid=s1*))\" }#" \
	"$W/idsyncd.yaml"
ids plan
has "9 deactivate" "$OUT" "the narrowed filter keeps s1 and s10..s19: 9 would be deactivated"
ids sync
eq 3 "$RC" "narrowed filter: stopped by the threshold (exit 3)"
has "max_deactivation_percent" "$ERR$OUT" "the message names the threshold"
eq "aborted_threshold" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "aborted_threshold recorded"
eq "$before" "$(snapshot_db)" "narrowed filter: nothing written"

# the connector replaced by another one: corp's users are orphans, untouched
sed -i "s#users: { base: \"ou=people,$OU\", filter: .*}#users: { base: \"ou=empty,$OU\" }#; s/^  - name: corp$/  - name: corp2/; s/connectors: \[corp\]/connectors: [corp2]/" \
	"$W/idsyncd.yaml"
ids sync
eq 0 "$RC" "a sync of the new connector alone"
eq "$before" "$(snapshot_db)" "the removed connector's users are exactly as they were"
ids status
# the connector's name as the line's first field: a bare substring match
# would be satisfied by corp2's line alone
eq 1 "$(printf '%s\n' "$OUT" | awk '$1 == "corp"' | wc -l)" "status still lists the removed connector's run"
has "orphaned: corp owns 20 users (20 active)" "$OUT" "status says corp's users are orphaned"
ids check-config
has "orphaned: connector corp is no longer configured but owns 20 users" "$OUT" "check-config says so too"
finish
