#!/usr/bin/env bash
# Every way Graph or the identity platform can fail a run (connectors.md,
# reliability.md cases 10, 13, 15, 16): the run fails as a whole with
# Graph's error code and message, the database is left exactly as it was
# (only a `failed` sync_run row is added), and the secret is in no output.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"

RULES='  - name: support
    match: { member_of: ["CC-Group-000", "CC-Group-001"] }
    tenant: support
    roles: [operator]'

# 30 users in pages of 10 (3 pages), 3 groups (1 page), members 1 page each
START=(--secret-file "$W/secret.raw" --gen-users 30 --gen-groups 3 --page-size 10)
graph_start "${START[@]}"
LOG_LEVEL=debug entra_config "$(entra_secret)" "" "$RULES"
ids sync
eq 0 "$RC" "first sync exits 0"
eq "20" "$(q "SELECT count(*) FROM app_user WHERE active")" "20 users synced"
before=$(snapshot_db)

# expect_fail WHAT TEXT...: a sync fails, leaves the database unchanged, and
# its stderr has every TEXT
expect_fail() {
	local what=$1
	shift
	local runs
	runs=$(q "SELECT count(*) FROM sync_run")
	ids sync
	echo "  $what: ${ERR##*run failed, nothing written: }"
	eq 1 "$RC" "$what: the run fails (exit 1)"
	for t in "$@"; do has "$t" "$ERR" "$what: the error says $t"; done
	eq "$before" "$(snapshot_db)" "$what: database unchanged"
	eq "$((runs + 1))|failed" "$(q "SELECT count(*) FROM sync_run")|$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" \
		"$what: one failed sync_run row"
	no_secret_in_output "$what"
}
# fault WHAT JSON TEXT...: the same with one fault set in the fake
fault() {
	local what=$1 json=$2
	shift 2
	graph_ctl "{\"clear_faults\": true, \"reset_stats\": true, \"faults\": [$json]}"
	expect_fail "$what" "$@"
}

# ---- Graph's errors: code, message and request id in the log
fault "403 on users page 2" '{"endpoint": "users", "page": 2, "kind": "403"}' \
	"users: Graph 403 Authorization_RequestDenied: Insufficient privileges to complete the operation." "(request-id "
fault "404 on a group's members" '{"endpoint": "members", "kind": "404"}' \
	"Graph 404 Request_ResourceNotFound" "members of group "
fault "400 on groups" '{"endpoint": "groups", "kind": "400"}' "groups: Graph 400 Request_BadRequest: Invalid request."
fault "401 twice" '{"endpoint": "users", "page": 2, "kind": "401", "times": 2}' \
	"users: Graph 401 InvalidAuthenticationToken: Access token has expired or is not yet valid."
eq "2" "$(graph_stat 'd["tokens_issued"]')" "401 twice: the token was renewed once, not more"

# ---- 503 for good: five retries after Retry-After, then the run fails
t0=$(date +%s)
fault "503 on groups, always" '{"endpoint": "groups", "kind": "503", "times": -1, "retry_after": "1"}' \
	"groups: Graph 503 serviceNotAvailable" "(after 5 retries)"
eq "6" "$(graph_stat 'd["by_endpoint"]["groups"]')" "503: the request was tried 1 + 5 times"
el=$(($(date +%s) - t0))
if [ "$el" -ge 5 ] && [ "$el" -le 30 ]; then ok "503: five waits of Retry-After 1 s took ${el}s"; else bad "503: took ${el}s"; fi

# ---- malformed pages (case 13) and paging loops (case 15)
fault "HTML with 200" '{"endpoint": "users", "page": 2, "kind": "html"}' "users: Graph answered 200 with text/html"
fault "truncated body" '{"endpoint": "users", "page": 3, "kind": "truncate"}' "users: not JSON" "(request-id "
# shellcheck disable=SC2016 # the backquotes are part of the message
fault "no value" '{"endpoint": "groups", "kind": "novalue"}' 'groups: no `value` array'
# shellcheck disable=SC2016
fault "value not an array" '{"endpoint": "members", "kind": "wrongtype"}' 'members: `value` is not an array'
fault "id of the wrong type" '{"endpoint": "users", "page": 1, "kind": "badid"}' "users: value[0].id is not a string"
fault "duplicate keys" '{"endpoint": "users", "page": 1, "kind": "dupkeys"}' "users: not JSON" "duplicate"
fault "huge body" '{"endpoint": "users", "page": 2, "kind": "huge"}' \
	"users: GET https://127.0.0.1:$GRAPH_PORT/v1.0/users: answer larger than 67108864 bytes"
fault "deeply nested" '{"endpoint": "groups", "kind": "deep"}' "groups: not JSON"
fault "repeated nextLink" '{"endpoint": "users", "page": 2, "kind": "repeat_token"}' "users: paging loop"
fault "nextLink to another host" '{"endpoint": "users", "page": 1, "kind": "foreign"}' \
	"users: @odata.nextLink leaves https://127.0.0.1:$GRAPH_PORT: refused"
eq "0" "$(graph_stat 'd["by_endpoint"].get("groups", 0)')" "nothing was read after the refused link"

# ---- stalled server: the timeout ends each try, run_timeout the run (case 2)
graph_ctl '{"clear_faults": true, "reset_stats": true, "faults": [{"endpoint": "users", "page": 2, "kind": "stall", "times": -1, "seconds": 120}]}'
LOG_LEVEL=debug RUN_TIMEOUT=6s ENTRA_TIMEOUT=2s entra_config "$(entra_secret)" "" "$RULES"
t0=$(date +%s)
expect_fail "stalled server" "users: GET https://127.0.0.1:$GRAPH_PORT/v1.0/users: "
el=$(($(date +%s) - t0))
# which fires first, the HTTP layer's deadline or the daemon's run_timeout
# check, depends on the machine's speed; both end the run
if grep -qE "no time left before the run deadline|run_timeout reached" <<<"$ERR"; then
	ok "stalled server: ended by run_timeout"
else
	bad "stalled server: not ended by run_timeout"
fi
if [ "$el" -ge 5 ] && [ "$el" -le 15 ]; then ok "stalled server: the run ended after ${el}s (run_timeout 6s)"; else bad "stall: took ${el}s"; fi

# ---- a drip just fast enough for the low-speed limit: run_timeout still
# ends the transfer itself, not the transfer's own cap minutes later
graph_ctl '{"clear_faults": true, "reset_stats": true, "faults": [{"endpoint": "users", "page": 2, "kind": "drip", "interval": 0.3, "times": -1, "seconds": 300}]}'
t0=$(date +%s)
expect_fail "endless slow drip" "users: GET https://127.0.0.1:$GRAPH_PORT/v1.0/users: stopped: run_timeout reached"
el=$(($(date +%s) - t0))
if [ "$el" -ge 5 ] && [ "$el" -le 12 ]; then ok "endless drip: stopped after ${el}s (run_timeout 6s)"; else bad "drip: took ${el}s"; fi

# ---- the daemon stopped (SIGTERM) in the middle of that drip: the transfer
# ends at once, nothing is written, the daemon exits 0 within 5 s (mode
# full: the daemon reads /users, where the drip is, not /users/delta)
LOG_LEVEL=debug entra_config "$(entra_secret)" "    changes: { mode: full }" "$RULES"
"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/run.out" 2>"$W/run.err" &
pid=$!
for _ in $(seq 100); do
	[ "$(graph_stat 'd["faults_fired"]')" -gt 0 ] && break
	sleep 0.1
done
sleep 1
kill -TERM "$pid"
t0=$(date +%s)
set +e
wait "$pid"
RC=$?
set -e
el=$(($(date +%s) - t0))
ERR=$(cat "$W/run.err")
eq 0 "$RC" "SIGTERM mid-transfer: the daemon exits 0"
if [ "$el" -le 5 ]; then ok "SIGTERM mid-transfer: stopped within ${el}s"; else bad "SIGTERM: took ${el}s"; fi
has "users: GET https://127.0.0.1:$GRAPH_PORT/v1.0/users: stopped: cancelled" "$ERR" "SIGTERM mid-transfer: the run says so"
eq "$before" "$(snapshot_db)" "SIGTERM mid-transfer: database unchanged"
graph_ctl '{"clear_faults": true}'

# ---- the identity platform refuses the secret
printf 'another-secret\n' >"$W/other-secret"
graph_start --secret-file "$W/other-secret" --gen-users 30 --gen-groups 3
LOG_LEVEL=debug entra_config "$(entra_secret)" "" "$RULES"
expect_fail "wrong client secret" "token endpoint https://127.0.0.1:$GRAPH_PORT/$TENANT/oauth2/v2.0/token: 401 invalid_client: AADSTS7000215: Invalid client secret provided."
eq "0" "$(graph_stat 'd["by_endpoint"].get("users", 0)')" "wrong secret: Graph was never asked"

# ---- TLS: wrong CA, wrong host name, expired certificate (case 16)
graph_start "${START[@]}"
LOG_LEVEL=debug CA_FILE=$CERTS/other-ca.crt entra_config "$(entra_secret)" "" "$RULES"
# each case names its own cause (each has a different fix), and only its own
CA_SAYS="the certificate is not signed by the CA of tls_ca_file"
HOST_SAYS="the certificate does not name this host"
EXPIRED_SAYS="the certificate has expired"
expect_fail "wrong CA" "certificate verification failed for host 127.0.0.1: $CA_SAYS"
hasnt "$HOST_SAYS" "$ERR" "wrong CA: not reported as a wrong host name"
eq "0" "$(graph_stat 'd["requests"]')" "wrong CA: no request reached the fake"
graph_start --server-cert wronghost "${START[@]}"
LOG_LEVEL=debug entra_config "$(entra_secret)" "" "$RULES"
expect_fail "wrong host name" "certificate verification failed for host 127.0.0.1: $HOST_SAYS"
hasnt "$CA_SAYS" "$ERR" "wrong host name: not reported as a wrong CA"
graph_start --server-cert expired "${START[@]}"
LOG_LEVEL=debug entra_config "$(entra_secret)" "" "$RULES"
expect_fail "expired certificate" "certificate verification failed for host 127.0.0.1: $EXPIRED_SAYS"
hasnt "$HOST_SAYS" "$ERR" "expired certificate: not reported as a wrong host name"

# ---- and after all that, a clean run converges with nothing to do
graph_start "${START[@]}"
LOG_LEVEL=debug entra_config "$(entra_secret)" "" "$RULES"
ids sync
eq 0 "$RC" "a clean run after the failures exits 0"
has "summary cloud: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" "and changes nothing"
finish
