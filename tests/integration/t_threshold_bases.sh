#!/usr/bin/env bash
# Issue 14: the thresholds' bases of an incremental run come from a counter
# kept by triggers (managed_count, migration 013; docs/changes.md, "The
# thresholds' bases").
#   1. after a first sync and an incremental one, the counter holds what a
#      count of the tables says;
#   2. rows deleted with the triggers disabled (a restore with
#      --disable-triggers) leave it off: the next read of the whole state
#      (sync --full) says so in the debug log, by how much, and corrects
#      it in its apply, together with the row it writes back;
#   3. a full read that finds the counter right says nothing of it.
. "$(dirname "$0")/lib.sh"

ou_create
{
	for i in $(seq 1 8); do user_ldif "b$i" B "B$i"; done
	group_ldif CC-Support $(for i in $(seq 1 6); do udn "b$i"; done)
} | ldif_add
IDS_TEST_LDAP_BIND_DN=$IDS_TEST_LDAP_SYNC_DN IDS_TEST_LDAP_BIND_PW_FILE=$IDS_TEST_LDAP_SYNC_PW_FILE \
	LOG_LEVEL=debug config_write
# the connectors (and companies) whose counter is not what a count of the
# tables gives: none when it is exact
off() {
	q "SELECT count(*) FROM managed_count m FULL JOIN ids_managed_counted() c USING (company_id, source)
	   WHERE (m.active_users, m.grant_rows) IS DISTINCT FROM (c.active_users, c.grant_rows)"
}
counter() { q "SELECT active_users||'|'||grant_rows FROM managed_count WHERE source = 'corp'"; }
fixed="thresholds' bases: the counter (managed_count) was off by"

# 1.
ids sync
eq 0 "$RC" "first sync"
printf 'dn: %s\nchangetype: modify\nadd: member\nmember: %s\n\n' "$(gdn CC-Support)" "$(udn b7)" | ldif
ids sync
eq 0 "$RC" "an incremental sync"
eq "incremental" "$(q "SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "... reads the feed"
eq 0 "$(off)" "the counter holds what the tables have"
eq 7 "$(counter | cut -d"|" -f1)" "... the seven active users (CC-Support's)"
before=$(counter)

# 2. a row gone behind the triggers' back
q "ALTER TABLE channel_grant DISABLE TRIGGER USER;
   DELETE FROM channel_grant WHERE channel = 'email' AND user_id = (SELECT id FROM app_user WHERE username = 'b2');
   ALTER TABLE channel_grant ENABLE TRIGGER USER" >/dev/null
eq 1 "$(off)" "a delete with the triggers disabled leaves the counter off"
eq "$before" "$(counter)" "... unchanged"
ids sync --full
eq 0 "$RC" "sync --full"
has "1 grants added" "$OUT" "... writes the row back"
has "$fixed +0 active users and -1 grant rows" "$ERR" "... says by how much the counter was off"
eq 0 "$(off)" "... and corrects it"
eq "$before" "$(counter)" "... to what it was with the row"

# 3.
ids sync --full
eq 0 "$RC" "another sync --full"
hasnt "$fixed" "$ERR" "... finds the counter right"
eq 0 "$(off)" "... which it is"
finish
