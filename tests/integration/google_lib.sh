# google_lib.sh — what the Google connector's tests (t_google_*.sh) share,
# sourced after lib.sh (with IDS_NO_LDAP=1): certificates, a service
# account key pair and its JSON key file, the HTTPS fake of Google
# (tests/fakes/google.py) on a free port, killed when the test exits, and
# a config for one google connector `gws` (company acme) pointing at it.

SRC=${IDS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3 # Debian's: it has `cryptography`
SUBJECT=admin@corp.example
CLIENT_EMAIL=idsyncd@test-project.iam.gserviceaccount.com
GFAKE_PID=

gfake_stop() {
	if [ -n "$GFAKE_PID" ]; then
		kill "$GFAKE_PID" 2>/dev/null || true
		wait "$GFAKE_PID" 2>/dev/null || true
		GFAKE_PID=
	fi
}
trap 'gfake_stop; cleanup' EXIT

"$PY" -c 'import cryptography' 2>/dev/null || {
	if [ "${CI:-}" = true ]; then
		echo "FAIL: $T: $PY has no cryptography module" >&2
		exit 1
	fi
	echo "SKIP: $T: $PY has no cryptography module" >&2
	exit 77
}

# Certificates for the fake, and the service account's key pair.  KEY_ID
# is the key's private_key_id (the JWT kid the fake expects).
bash "$SRC/tests/harness/mkcert.sh" "$W/certs"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/sa.key" 2>/dev/null
openssl pkey -in "$W/sa.key" -pubout -out "$W/sa.pub" 2>/dev/null
KEY_ID=$(openssl rand -hex 20)

# sa_json [TOKEN_URI]: the JSON key file Google issues, mode 600.
sa_json() {
	(umask 077 && "$PY" - "$W/sa.key" "$KEY_ID" "$CLIENT_EMAIL" "${1:-https://oauth2.googleapis.com/token}" \
		>"$W/sa.json" <<-'PY'
	import json, sys
	key, kid, email, uri = sys.argv[1:5]
	print(json.dumps({
	    "type": "service_account", "project_id": "test-project", "private_key_id": kid,
	    "private_key": open(key).read(), "client_email": email, "client_id": "103456789012345678901",
	    "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": uri,
	    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	    "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x",
	    "universe_domain": "googleapis.com"}, indent=2))
	PY
	)
}

# gfake_start ARGS...: starts the fake with the test's certificate and key
# (extra ARGS: --data, --page-users, --fault, ...); sets GURL.
gfake_start() {
	gfake_stop
	rm -f "$W/gport"
	"$PY" "$SRC/tests/fakes/google.py" --cert "$W/certs/server.crt" --key "$W/certs/server.key" \
		--pubkey "$W/sa.pub" --key-id "$KEY_ID" --client-email "$CLIENT_EMAIL" --subject "$SUBJECT" \
		--port-file "$W/gport" "$@" 2>"$W/gfake.err" &
	GFAKE_PID=$!
	# bench/cloud_feed.sh: a generated tenant of 100k users takes longer
	for _ in $(seq "${FAKE_START_TRIES:-100}"); do
		[ -s "$W/gport" ] && break
		kill -0 "$GFAKE_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$W/gport" ] || {
		cat "$W/gfake.err" >&2
		echo "FAIL: $T: the Google fake did not start" >&2
		exit 1
	}
	GURL="https://127.0.0.1:$(cat "$W/gport")"
}

# gctl JSON: POST /_control (faults, reset_stats, data_file, ...).
gctl() {
	curl -fsS --cacert "$W/certs/ca.crt" -X POST -H 'Content-Type: application/json' -d "$1" \
		"$GURL/_control" >/dev/null
}

# gstat EXPR: a value of the fake's /_stats, EXPR a Python expression over
# its keys (`by_endpoint.get("users")`, `status.get("429", 0)`).
gstat() {
	curl -fsS --cacert "$W/certs/ca.crt" "$GURL/_stats" | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
v = eval(sys.argv[1], {}, s)
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1"
}

# gconfig_write [EXTRA_CONNECTOR_YAML] [RULES_YAML]: $W/idsyncd.yaml with
# one google connector `gws` against the fake.
gconfig_write() {
	local extra=${1:-} rules=${2:-}
	cat >"$W/idsyncd.yaml" <<-YAML
	database:
	  conninfo: "$IDS_TEST_PG_CONNINFO dbname=$DB"
	sync:
	  run_timeout: ${RUN_TIMEOUT:-5m}
	log:
	  level: ${LOG_LEVEL:-info}
	  target: stderr
	safety:
	  max_deactivation_percent: ${MAX_DEACT_PCT:-50}
	  max_grant_removals_percent: ${MAX_REMOVALS_PCT:-50}
	tenants:
	  auto_create: true
	connectors:
	  - name: gws
	    type: google
	    company: acme
	    service_account_file: $W/sa.json
	    subject: $SUBJECT
	    token_endpoint: $GURL/token
	    api_endpoint: $GURL
	    tls_ca_file: $W/certs/ca.crt
	    timeout: ${GTIMEOUT:-10s}
	$extra
	rules:
	${rules:-$(google_rules)}
	YAML
}

google_rules() {
	cat <<-'R'
	  - name: support-operators
	    match: { member_of: ["cc-support@corp.example"] }
	    tenant: support
	    roles: [operator]
	    channels: [webchat, email]
	  - name: admins
	    match: { member_of: ["CC Admins"] }
	    company_admin: true
	R
}

# small_data FILE: a small directory (three users, two groups, Team B
# nested in CC Support) for the tests that are about the transport.
small_data() {
	cat >"$1" <<-'JSON'
	{"customer_id": "C01abcdef", "domain": "corp.example",
	 "users": [
	  {"id": "111", "primaryEmail": "alice@corp.example", "name": {"givenName": "Alice", "familyName": "Smith", "fullName": "Alice Smith"}},
	  {"id": "112", "primaryEmail": "bob@corp.example", "name": {"givenName": "Bob", "familyName": "Jones", "fullName": "Bob Jones"}},
	  {"id": "113", "primaryEmail": "carol@corp.example", "name": {"givenName": "Carol", "familyName": "White", "fullName": "Carol White"}}
	 ],
	 "groups": [
	  {"id": "g-support", "email": "cc-support@corp.example", "name": "CC Support",
	   "members": [{"id": "111", "type": "USER"}, {"id": "g-teamb", "type": "GROUP"}]},
	  {"id": "g-teamb", "email": "team-b@corp.example", "name": "Team B", "members": [{"id": "112", "type": "USER"}]},
	  {"id": "g-admins", "email": "cc-admins@corp.example", "name": "CC Admins", "members": [{"id": "111", "type": "USER"}]}
	 ]}
	JSON
}
