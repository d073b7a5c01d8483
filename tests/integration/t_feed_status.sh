#!/usr/bin/env bash
# Issue 14's contract: `sync --full` / `plan --full`, sync_run.read_kind,
# and status's change-feed line per connector (mode, cursor, last full
# read, feed resets).  One-shot commands continue the feed from the state
# stored in PostgreSQL (t_feed_store tests that further).
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif alice Alice Smith
	group_ldif CC-Support "$(udn alice)"
} | ldif_add
config_write '    changes: { mode: auto, full_every: 12h }'

ids plan --full
eq 0 "$RC" "plan --full exits 0"
has "+ user  alice" "$OUT" "plan --full plans alice"

ids status --full
eq 2 "$RC" "status has no --full (usage error)"
has "unknown option for status: --full" "$ERR" "and says so"

ids migrate
ids status
has "changes corp" "$OUT" "status has a change-feed line before any run"
has "mode auto, no cursor, last full read -, 0 feed resets" "$OUT" "nothing read yet"

ids sync --full
eq 0 "$RC" "sync --full exits 0"
eq "ok|full" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "the run is recorded as a full read"
eq "t" "$(q "SELECT last_full_at = (SELECT started_at FROM sync_run ORDER BY id DESC LIMIT 1) FROM connector_feed WHERE connector = 'corp'")" \
	"last_full_at is the run's start"

ids sync
eq 0 "$RC" "sync (mode auto, no cursor yet) exits 0"
eq "full" "$(q "SELECT read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "without a cursor, the feed reads everything"
cursor_before=$(q "SELECT encode(cursor, 'hex') FROM connector_feed WHERE connector = 'corp'")
[ -n "$cursor_before" ] && ok "the feed's first read stored a cursor" || bad "no cursor after the feed's first read"

# a held run keeps the feed's row as it was
full_before=$(q "SELECT last_full_at FROM connector_feed WHERE connector = 'corp'")
printf 'dn: %s\nchangetype: delete\n\n' "$(udn alice)" | ldif
ids sync
eq 3 "$RC" "a sync that empties the source is held"
eq "aborted_empty|incremental" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" \
	"the held run (the feed deleted the only user) is recorded, as an incremental read"
eq "$cursor_before" "$(q "SELECT encode(cursor, 'hex') FROM connector_feed WHERE connector = 'corp'")" "a held run keeps the old cursor"
eq "$full_before" "$(q "SELECT last_full_at FROM connector_feed WHERE connector = 'corp'")" "a held run leaves last_full_at alone"

ids status
full=$(q "SELECT to_char(last_full_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM connector_feed")
has "changes corp                 mode auto, cursor " "$OUT" "status shows the cursor"
has ", last full read $full, 0 feed resets" "$OUT" "status shows the last full read"

# --format json: the same per connector, in "changes" (docs/json.md)
ts() { q "SELECT coalesce(to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'None') FROM connector_feed"; }
feed_json() {
	ids status --format json
	printf '%s' "$OUT" | python3 -c '
import json, sys
c = json.load(sys.stdin)["changes"]
assert [x["connector"] for x in c] == ["corp"], c
o = c[0]
assert list(o) == ["connector", "mode", "cursor_at", "cursor_age_seconds", "cursor_server", "last_full_at",
                   "resets", "last_reset_at", "last_reset_reason", "persist"], list(o)
age = o["cursor_age_seconds"]
print(o["mode"], o["cursor_at"], "age-ok" if age is not None and 0 <= age < 120 else f"age={age}",
      o["cursor_server"], o["last_full_at"], o["resets"], o["last_reset_at"], o["last_reset_reason"], o["persist"])'
}
eq "auto $(ts cursor_at) age-ok None $full 0 None None None" "$(feed_json)" \
	"status --format json: mode, cursor time and age, no DC, the last full read, no reset, no persist"
# a reset: the users filter changed (the stored image is of other settings);
# alice's deletion goes through with it (100% of one user: past the guard)
user_ldif bob Bob Jones | ldif_add
printf 'dn: %s\nchangetype: modify\nadd: member\nmember: %s\n\n' "$(gdn CC-Support)" "$(udn bob)" | ldif
sed -i -e 's/_percent: 50/_percent: 100/' -e "s#users: { base: \"ou=people,$OU\" }#users: { base: \"ou=people,$OU\", filter: \"(uid=*)\" }#" "$W/idsyncd.yaml"
ids sync
eq "ok|full" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "another users filter: a full read"
eq "auto $(ts cursor_at) age-ok None $(ts last_full_at) 1 $(ts last_reset_at) the connector's settings changed since the stored cursor (bases, filters, attributes, or the attributes the rules read) None" \
	"$(feed_json)" "status --format json: the reset counted, when and why"
ids status
has ", 1 feed resets (last $(ts last_reset_at): the connector's settings changed since" "$OUT" "... as the text says"

sed -i 's/mode: auto/mode: full/' "$W/idsyncd.yaml"
ids status
has "changes corp                 mode full," "$OUT" "status shows the configured mode"
eq "full" "$(feed_json | cut -d' ' -f1)" "... and status --format json"
finish
