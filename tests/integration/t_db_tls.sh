#!/usr/bin/env bash
# Issue 22: the database connection is verified like every other.
#   - a conninfo that reaches the server over the network (a host name
#     other than localhost, a non-loopback address — from the conninfo,
#     from PGHOST or from a service file) needs sslmode=verify-full:
#     otherwise check-config and every command exit 78 naming
#     database.conninfo, without connecting;
#   - sockets and loopback addresses need nothing;
#   - verify-full with the right CA connects; a wrong CA or a wrong host
#     name is refused with the reason;
#   - security.allow_unverified_database: true lets it through, with a
#     warning at every start;
#   - client certificates (sslcert/sslkey) work; a key readable by others
#     is refused like every secret file.
# The test PostgreSQL (tests/harness/pg.sh) serves TLS with a certificate of
# the test CA for localhost, db.idsyncd.test, 127.0.0.1 and 127.0.0.2;
# db.idsyncd.test is in no DNS: hostaddr=127.0.0.1 connects to it while
# libpq verifies the name.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"

if [ -z "${IDS_TEST_PG_TLS_DIR:-}" ]; then
	bad "pg.env has no IDS_TEST_PG_TLS_DIR: restart the servers with this tests/harness/pg.sh"
	finish
fi
TLS=$IDS_TEST_PG_TLS_DIR
NAME=$IDS_TEST_PG_TLS_NAME
BASE="port=$PGPORT user=postgres dbname=$DB"

# cfg CONNINFO [SECURITY_YAML]: $W/idsyncd.yaml with that conninfo and one
# LDAP connector that these commands never contact.
cfg() {
	cat >"$W/idsyncd.yaml" <<-YAML
	database:
	  conninfo: "$1"
	  schema: ${SCHEMA:-idsync}
	log: { level: info, target: stderr }
	${2:-}
	connectors:
	  - name: corp
	    type: ldap
	    uri: ldaps://ldap.invalid
	    users: { base: "dc=example" }
	rules: []
	YAML
}

# --- refused without connecting: check-config and every command, 78
cfg "host=$NAME hostaddr=127.0.0.1 $BASE sslmode=require"
ids check-config
eq 78 "$RC" "a host name with sslmode=require: check-config exits 78"
has "idsyncd.yaml:2:13: database.conninfo: $NAME is reached over the network with sslmode=require" "$ERR" \
	"the message names the file, line, column, setting and host"
has "add sslmode=verify-full sslrootcert=FILE" "$ERR" "and the fix"
has "security.allow_unverified_database: true" "$ERR" "and the override"
hasnt "configuration ok" "$OUT" "check-config does not also say ok"
for cmd in migrate status plan "sync --dry-run" sync; do
	ids $cmd
	eq 78 "$RC" "$cmd refuses it too (78)"
done
eq 0 "$(q "SELECT count(*) FROM pg_namespace WHERE nspname = 'idsync'")" "nothing was written"

cfg "host=192.0.2.10 port=5432 dbname=x connect_timeout=2"
ids check-config
eq 78 "$RC" "a non-loopback address with libpq's default sslmode (prefer) is refused"
has "192.0.2.10 is reached over the network with sslmode=prefer" "$ERR" "naming the address and the mode"

# ... as libpq resolves it: PGHOST/PGHOSTADDR and a service file
cfg "$BASE"
set +e
PGHOST=$NAME PGHOSTADDR=127.0.0.1 "$IDSYNCD" -c "$W/idsyncd.yaml" check-config >"$W/out" 2>"$W/err"
rc=$?
set -e
eq 78 "$rc" "PGHOST naming a host (no host in the conninfo) is refused"
has "$NAME is reached over the network" "$(cat "$W/err")" "naming PGHOST's host"
printf '[idsdb]\nhost=%s\nhostaddr=127.0.0.1\nport=%s\nuser=postgres\ndbname=%s\nsslmode=require\n' \
	"$NAME" "$PGPORT" "$DB" >"$W/pg_service.conf"
cfg "service=idsdb"
set +e
PGSERVICEFILE=$W/pg_service.conf "$IDSYNCD" -c "$W/idsyncd.yaml" migrate >"$W/out" 2>"$W/err"
rc=$?
set -e
eq 78 "$rc" "a service file's host with sslmode=require is refused"
has "$NAME is reached over the network with sslmode=require" "$(cat "$W/err")" "naming the service's host"
# a multi-host conninfo: one network entry is enough to refuse
cfg "host=/tmp,$NAME hostaddr=,127.0.0.1 $BASE"
ids check-config
eq 78 "$RC" "a host list with one network entry is refused"

# the rule on the text of each form (check-config only: 0 when the transport
# is accepted — reachable or not —, 78 when refused)
for c in "0 host=::1" "0 host=::ffff:127.0.0.1" "0 host=127.1.2.3" "0 host=@abstract" "0 host=/run/none" \
	"0 hostaddr=127.0.0.2" "78 host=10.0.0.1" "78 host=fd00::5" "78 hostaddr=192.0.2.10" \
	"78 host=localhost,192.0.2.10" "78 host=/tmp hostaddr=192.0.2.10" "0 host=10.0.0.1 sslmode=verify-full"; do
	cfg "${c#* } port=1 dbname=x connect_timeout=1"
	ids check-config
	eq "${c%% *}" "$RC" "check-config on ${c#* }"
done

# --- sockets and loopback need nothing
cfg "host=$PGHOST $BASE"
ids migrate
eq 0 "$RC" "a unix socket needs no TLS"
for h in "host=127.0.0.1" "host=localhost" "hostaddr=127.0.0.1" "host=127.0.0.2 hostaddr=127.0.0.1"; do
	cfg "$h $BASE sslmode=disable"
	ids status
	eq 0 "$RC" "loopback ($h) needs no TLS"
	hasnt "not verified" "$ERR" "and gives no warning ($h)"
done

# --- verify-full: the right CA connects; a wrong CA or host name is refused
cfg "host=$NAME hostaddr=127.0.0.1 $BASE sslmode=verify-full sslrootcert=$TLS/ca.crt"
ids check-config
eq 0 "$RC" "verify-full with the server's CA passes check-config"
hasnt "not checked" "$OUT" "and check-config reached the database"
ids status
eq 0 "$RC" "verify-full with the server's CA connects"
hasnt "warning" "$ERR" "without a warning"

cfg "host=$NAME hostaddr=127.0.0.1 $BASE sslmode=verify-full sslrootcert=$TLS/other-ca.crt"
ids status
eq 1 "$RC" "a server certificate of another CA is refused (1)"
has "certificate verify failed" "$ERR" "the error says the certificate was not verified"
cfg "host=localhost.localdomain hostaddr=127.0.0.1 $BASE sslmode=verify-full sslrootcert=$TLS/ca.crt"
ids status
eq 1 "$RC" "a host name the certificate does not carry is refused (1)"
has "does not match host name \"localhost.localdomain\"" "$ERR" "the error names the host name mismatch"

# --- the override: through, with a warning at every start
cfg "host=$NAME hostaddr=127.0.0.1 $BASE sslmode=require" \
	"security: { allow_unverified_database: true }"
ids check-config
eq 0 "$RC" "allow_unverified_database: check-config passes"
has "database $NAME is reached over the network with sslmode=require: the server is not verified" "$ERR" \
	"check-config warns"
ids status
eq 0 "$RC" "allow_unverified_database: status connects"
has "not verified (security.allow_unverified_database: true)" "$ERR" "status warns"
"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/d.out" 2>"$W/d.err" &
dpid=$!
for _ in $(seq 1 100); do grep -q "not verified" "$W/d.err" 2>/dev/null && break; sleep 0.1; done
kill -TERM "$dpid" 2>/dev/null || true
wait "$dpid" || true
has "not verified (security.allow_unverified_database: true)" "$(cat "$W/d.err")" "the daemon warns at start"

# --- a client certificate; its key is a secret file
cp "$TLS/pgclient.key" "$W/client.key"
chmod 600 "$W/client.key"
CERT="host=localhost $BASE user=$IDS_TEST_PG_CERT_USER sslmode=verify-full sslrootcert=$TLS/ca.crt"
q "GRANT CREATE ON DATABASE \"$DB\" TO $IDS_TEST_PG_CERT_USER" >/dev/null
SCHEMA=cert cfg "$CERT sslcert=$TLS/pgclient.crt sslkey=$W/client.key"
ids migrate
eq 0 "$RC" "a client certificate authenticates the role"
eq "$IDS_TEST_PG_CERT_USER" "$(q "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'cert'")" \
	"the schema was made by the certificate's role"
chmod 644 "$W/client.key"
ids check-config
eq 78 "$RC" "a client key readable by others is refused (78)"
has "sslkey $W/client.key is readable by group or others" "$ERR" "naming the key file"
cfg "$CERT sslcert=$TLS/pgclient.crt sslkey=$W/missing.key"
ids check-config
eq 78 "$RC" "a missing client key is refused (78)"
has "sslkey $W/missing.key: cannot open" "$ERR" "naming the missing key file"
finish
