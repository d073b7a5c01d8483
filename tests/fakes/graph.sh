# shellcheck shell=bash
# graph.sh — helpers of the Entra integration tests (t_entra_*.sh), sourced
# after tests/integration/lib.sh: test certificates, the Graph fake
# (graph.py) on a free port, its control and statistics endpoints, and an
# idsyncd config with one entra connector `cloud` (company acme).
#
#   graph_start ARGS...     starts graph.py (tenant, client id, certs given;
#                           ARGS add the credential, data and faults); sets
#                           GRAPH_PORT, GRAPH_PID, GRAPH_URL; killed at exit
#   graph_stop              stops it (a restart with other ARGS is fine)
#   graph_ctl JSON          POST /_control
#   graph_stat PYEXPR       a value of /_stats, `d` being the stats object
#   entra_config CRED [EXTRA] [RULES]
#                           $W/idsyncd.yaml; CRED is the credential YAML
#                           (entra_secret / entra_cert give the usual ones);
#                           `changes: { mode: full }` unless EXTRA has a
#                           changes: block
#   no_secret_in_output     checks $W/out, $W/err and the sync_run errors
#
# The fake needs Debian's /usr/bin/python3 (it has `cryptography`).

FAKES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HARNESS=$(cd "$FAKES/../harness" && pwd)
PY=/usr/bin/python3
TENANT=00000000-0000-4000-8000-00000000abcd
CLIENT_ID=11111111-2222-4333-8444-555555555555
SECRET='s3cr3t~Entra.VALUE_0123456789abcdef'
GRAPH_PID=
CERTS=$W/certs

if ! "$PY" -c 'import cryptography' 2>/dev/null; then
	if [ "${CI:-}" = true ]; then
		echo "FAIL: $T: $PY has no cryptography module" >&2
		exit 1
	fi
	echo "SKIP: $T: $PY has no cryptography module" >&2
	exit 77
fi

# the proxy of the environment must not see loopback requests
unset https_proxy HTTPS_PROXY http_proxy HTTP_PROXY all_proxy ALL_PROXY

bash "$HARNESS/mkcert.sh" "$CERTS"
printf '%s\n' "$SECRET" >"$W/secret.raw"
printf '%s' "$SECRET" >"$W/entra-secret"
chmod 600 "$W/entra-secret" "$W/secret.raw"

graph_stop() {
	if [ -n "$GRAPH_PID" ]; then
		kill "$GRAPH_PID" 2>/dev/null || true
		wait "$GRAPH_PID" 2>/dev/null || true
		GRAPH_PID=
	fi
}
trap 'graph_stop; cleanup' EXIT

# graph_start [--server-cert NAME] ARGS...: NAME picks $CERTS/NAME.crt/.key
# (server, wronghost, expired) as the fake's own certificate.
graph_start() {
	local name=server
	if [ "${1:-}" = --server-cert ]; then
		name=$2
		shift 2
	fi
	graph_stop
	rm -f "$W/graph.port"
	"$PY" "$FAKES/graph.py" --cert "$CERTS/$name.crt" --key "$CERTS/$name.key" --port-file "$W/graph.port" \
		--tenant "$TENANT" --client-id "$CLIENT_ID" "$@" >"$W/graph.log" 2>&1 &
	GRAPH_PID=$!
	# bench/cloud_feed.sh: a generated tenant of 100k users takes longer
	for _ in $(seq "${FAKE_START_TRIES:-100}"); do
		[ -s "$W/graph.port" ] && break
		kill -0 "$GRAPH_PID" 2>/dev/null || { cat "$W/graph.log" >&2; echo "graph.py died" >&2; exit 1; }
		sleep 0.1
	done
	[ -s "$W/graph.port" ] || { echo "graph.py did not start" >&2; exit 1; }
	GRAPH_PORT=$(cat "$W/graph.port")
	GRAPH_URL="https://127.0.0.1:$GRAPH_PORT"
}

graph_ctl() {
	curl -sf --cacert "$CERTS/ca.crt" -X POST -H 'Content-Type: application/json' --data "$1" \
		"$GRAPH_URL/_control" >/dev/null
}

graph_stat() {
	curl -sf --cacert "$CERTS/ca.crt" "$GRAPH_URL/_stats" | "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

entra_secret() { printf '    client_secret_file: %s\n' "$W/entra-secret"; }
# entra_cert [ALG]: the certificate credential (ALG RS256 or default PS256)
entra_cert() {
	printf '    client_certificate_file: %s\n    client_key_file: %s\n' "$CERTS/client.crt" "$CERTS/client.key"
	[ -z "${1:-}" ] || printf '    client_assertion_alg: %s\n' "$1"
}

entra_config() {
	local cred=$1 extra=${2:-} rules=${3:-} changes='    changes: { mode: full }'
	# the tests of the full read say so: without a changes: block of
	# their own (the delta tests' `mode: auto`), a one-shot `sync` or
	# `plan` would read /users/delta (issue 15) through the stored image
	case $extra in *changes:*) changes= ;; esac
	cat >"$W/idsyncd.yaml" <<-YAML
	database:
	  conninfo: "$IDS_TEST_PG_CONNINFO dbname=$DB"
	log:
	  level: ${LOG_LEVEL:-info}
	  target: stderr
	sync:
	  run_timeout: ${RUN_TIMEOUT:-5m}
	safety:
	  max_deactivation_percent: ${MAX_DEACT_PCT:-50}
	  max_grant_removals_percent: ${MAX_REMOVALS_PCT:-50}
	tenants:
	  auto_create: true
	connectors:
	  - name: cloud
	    type: entra
	    company: acme
	    tenant: "$TENANT"
	    client_id: "$CLIENT_ID"
	$cred
	    login_endpoint: $GRAPH_URL
	    graph_endpoint: $GRAPH_URL/v1.0
	    tls_ca_file: ${CA_FILE:-$CERTS/ca.crt}
	    timeout: ${ENTRA_TIMEOUT:-5s}
	$changes
	$extra
	rules:
	${rules:-$(default_rules)}
	YAML
}

# The secret must appear nowhere: stdout, stderr (debug level in the
# tests that say so) and what the database keeps about failed runs.
no_secret_in_output() {
	local what=$1
	hasnt "$SECRET" "$OUT$ERR" "$what: the client secret is in no output"
	hasnt "$SECRET" "$(q "SELECT coalesce(string_agg(error, ' '), '') FROM sync_run" 2>/dev/null || true)" \
		"$what: the client secret is in no sync_run row"
}
