#!/usr/bin/env bash
# The command line of service.md: exit codes, check-config, plan JSON,
# migrate (and refusal of a newer schema), status, retire, and the
# advisory lock (a second instance skips with exit 4).
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif c1 Cli One
	user_ldif c2 Cli Two
	group_ldif CC-Support "$(udn c1)" "$(udn c2)"
} | ldif_add
MAX_DEACT_PCT=100 config_write

set +e
"$IDSYNCD" --version >"$W/v"; rc=$?
set -e
eq 0 "$rc" "--version exits 0"
has "idsyncd " "$(cat "$W/v")" "--version prints the name"
ids frobnicate
eq 2 "$RC" "unknown command is a usage error"
ids sync --bogus
eq 2 "$RC" "unknown option is a usage error"
ids sync --connector nope
eq 2 "$RC" "unknown connector is a usage error"

# a missing option argument says what is missing, not "unknown option"
ids sync --connector
eq 2 "$RC" "sync --connector without a name is a usage error"
has "--connector needs a connector name" "$ERR" "says the connector name is missing"
hasnt "unknown option" "$ERR" "a missing argument is no unknown option"
ids plan --format
eq 2 "$RC" "plan --format without a value is a usage error"
has "--format needs text or json" "$ERR" "says the format is missing"
ids status --connector x
has "unknown option for status: --connector" "$ERR" "an option of another command is unknown here"
has "idsyncd status --help" "$ERR" "points to the command's own help"
# COMMAND --help prints that command's usage only
ids plan --help
eq 0 "$RC" "plan --help exits 0"
has "idsyncd [-c FILE] plan [--connector NAME]... [--format text|json]" "$OUT" "plan --help shows plan's usage"
hasnt "retire" "$OUT" "plan --help shows no other command"
ids retire --help
has "retire NAME [--allow-mass-deactivation]" "$OUT" "retire --help shows retire's usage"
hasnt "check-config" "$OUT" "retire --help shows no other command"
# global options after the command, as users type them
set +e
"$IDSYNCD" check-config -c "$W/idsyncd.yaml" >"$W/out" 2>"$W/err"; rc=$?
"$IDSYNCD" check-config --config="$W/nonexistent.yaml" >/dev/null 2>"$W/err2"; rc2=$?
set -e
eq 0 "$rc" "check-config -c FILE (after the command) reads FILE"
has "connector corp: type ldap" "$(cat "$W/out")" "the -c after the command was used"
eq 78 "$rc2" "--config=FILE after the command is used too"
has "nonexistent.yaml" "$(cat "$W/err2")" "and named in the error"

ids check-config
eq 0 "$RC" "check-config ok"
has "connector corp: type ldap, company acme" "$OUT" "one line per connector"
sed 's/max_deactivation_percent:/max_deactivaton_percent:/' "$W/idsyncd.yaml" >"$W/bad.yaml"
set +e
"$IDSYNCD" -c "$W/bad.yaml" check-config >"$W/out" 2>"$W/err"; rc=$?
set -e
eq 78 "$rc" "a typo in a key is a configuration error (78)"
has "bad.yaml:" "$(cat "$W/err")" "error names the file"
has "max_deactivaton_percent" "$(cat "$W/err")" "error names the key"
chmod 644 "$W/ldap.pw"
ids check-config
eq 78 "$RC" "a secret readable by others is refused"
has "ldap.pw" "$ERR" "error names the secret file"
chmod 600 "$W/ldap.pw"

# read-only commands on a database that was never migrated write nothing
# and say how to create the schema (plan plans against the empty state:
# README "Decisions")
schema_count() { q "SELECT count(*) FROM pg_namespace WHERE nspname = 'idsync'"; }
eq 0 "$(schema_count)" "no schema before the first migrate"
ids check-config
hasnt "not checked" "$OUT" "check-config reached the database"
has "schema idsync not created yet" "$OUT" "check-config says the schema is missing"
ids plan
eq 0 "$RC" "plan on an unmigrated database plans"
has "schema idsync has not been created (\`idsyncd migrate\` has not run): planning against an empty database" \
	"$ERR" "plan says that idsyncd migrate has not run"
has "summary corp: 2 create, 0 update, 0 deactivate" "$OUT" "against the empty state: every user is a create"
ids sync --dry-run --format json
eq 0 "$RC" "sync --dry-run on an unmigrated database plans too"
has "planning against an empty database" "$ERR" "and says so"
ids status
eq 78 "$RC" "status on an unmigrated database is a configuration error (78)"
has "schema idsync has not been created: run \`idsyncd migrate\`" "$ERR" "status says the schema is missing"
hasnt "42P01" "$ERR" "status shows no raw SQLSTATE"
eq 0 "$(schema_count)" "plan, status and check-config created no schema"
eq 0 "$(q "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")" \
	"and no table anywhere"

ids migrate
eq 0 "$RC" "migrate"
ids migrate
eq 0 "$RC" "migrate again is a no-op"
has "up to date" "$OUT" "migrate says up to date"

ids plan --format json
eq 0 "$RC" "plan --format json"
echo "$OUT" >"$W/plan1.json"
ids plan --format json
eq "$(cat "$W/plan1.json")" "$OUT" "the same snapshot gives the same JSON plan, byte for byte"
has '"connector": "corp"' "$OUT" "JSON plan names the connector"
if command -v python3 >/dev/null; then
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[0]["summary"]["created"] == 2' "$W/plan1.json" \
		&& ok "JSON plan parses and counts 2 creates" || bad "JSON plan does not parse or count"
fi

# the advisory lock: a session holding it makes sync skip with exit 4
key=$(python3 -c '
h = 0xcbf29ce484222325
for b in b"idsyncd:corp":
    h ^= b; h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
print(h - (1 << 64) if h >= 1 << 63 else h)')
mkfifo "$W/lockfifo"
(psql -qAtX -d "$DB" -c "SELECT pg_advisory_lock($key)" -c "SELECT 'locked'" -c "SELECT pg_sleep(60)" >"$W/lockout" 2>&1 &
 echo $! >"$W/lockpid")
for _ in $(seq 1 100); do grep -q locked "$W/lockout" 2>/dev/null && break; sleep 0.1; done
ids sync
eq 4 "$RC" "a second instance skips a locked connector (exit 4)"
eq "skipped_locked" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "skipped_locked recorded"
eq 0 "$(q "SELECT count(*) FROM app_user")" "nothing else written"
kill "$(cat "$W/lockpid")" 2>/dev/null || true
psql -qAtX -d "$DB" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
ids sync
eq 0 "$RC" "sync runs once the lock is free"
eq 2 "$(q "SELECT count(*) FROM app_user WHERE active")" "two users"

# a removed connector's users stay; status lists them as orphaned; retire deactivates
sed -i 's/- name: corp$/- name: corp2/' "$W/idsyncd.yaml"
sed -i 's/^rules:$/rules: []\nunused_rules:/' "$W/idsyncd.yaml" && sed -i '/^unused_rules:/,$d' "$W/idsyncd.yaml"
ids status
has "orphaned: corp owns 2 users (2 active)" "$OUT" "status lists the orphaned connector"
eq 1 "$(q "SELECT (count(*) > 0)::int FROM connector_image WHERE connector='corp'")" "corp's feed has an image before retire"
ids retire corp
eq 0 "$RC" "retire"
eq 0 "$(q "SELECT count(*) FROM app_user WHERE active AND source='corp'")" "retired users deactivated"
eq "out_of_scope" "$(q "SELECT DISTINCT deactivation_reason FROM app_user WHERE source='corp'")" "retired with reason out_of_scope"
eq 2 "$(q "SELECT count(*) FROM app_user WHERE source='corp'")" "rows kept"
eq 0 "$(q "SELECT count(*) FROM connector_feed WHERE connector='corp'")" "retire drops the feed's cursor"
eq 0 "$(q "SELECT count(*) FROM connector_image WHERE connector='corp'")" "retire drops the feed's image"

# a database newer than the binary is refused
q "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')" >/dev/null
ids sync
eq 1 "$RC" "a newer schema is refused"
has "999" "$ERR" "the error names the database's version"
finish
