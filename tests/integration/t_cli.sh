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
ids retire corp
eq 0 "$RC" "retire"
eq 0 "$(q "SELECT count(*) FROM app_user WHERE active AND source='corp'")" "retired users deactivated"
eq "out_of_scope" "$(q "SELECT DISTINCT deactivation_reason FROM app_user WHERE source='corp'")" "retired with reason out_of_scope"
eq 2 "$(q "SELECT count(*) FROM app_user WHERE source='corp'")" "rows kept"

# a database newer than the binary is refused
q "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')" >/dev/null
ids sync
eq 1 "$RC" "a newer schema is refused"
has "999" "$ERR" "the error names the database's version"
finish
