#!/usr/bin/env bash
# The Google connector when Google misbehaves (reliability.md 9-17): rate
# limits (403 rateLimitExceeded / userRateLimitExceeded, 429, 503, 500), a
# cut connection and an empty page with a next token are waited out or
# read through, and the run succeeds; every other failure — a permission
# 403, quotaExceeded, 404, 400, HTML with 200, a truncated body, wrong
# types, a paging loop, a stall, a rate limit that never ends, refused
# grants, a broken or readable key file, a wrong CA — fails the run with
# Google's message and leaves the database exactly as it was.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/google_lib.sh"

small_data "$W/data.json"
# one item per page: every listing has several pages to fail on
gfake_start --data "$W/data.json" --page-users 1 --page-groups 1 --page-members 1
sa_json "$GURL/token"
gconfig_write

ids sync
eq 0 "$RC" "baseline sync exits 0"
eq "alice@corp.example,bob@corp.example" "$(q "SELECT string_agg(username, ',' ORDER BY username) FROM app_user WHERE active")" \
	"baseline: alice and bob (through Team B)"
BASE=$(snapshot_db)
runs() { q "SELECT count(*) FROM sync_run"; }

# fault JSON: arms one fault on a clean slate
fault() { gctl "{\"clear_faults\": true, \"reset_stats\": true, \"faults\": [$1]}"; }

# survives WHAT FAULT_JSON STATUS: the run succeeds after the fault, which
# Google answered with STATUS at least once
survives() {
	fault "$2"
	ids sync
	eq 0 "$RC" "$1: sync exits 0"
	has "summary gws: 0 create, 0 update, 0 deactivate" "$OUT" "$1: nothing changes, nothing lost"
	eq "$BASE" "$(snapshot_db)" "$1: database as before"
	[ -z "${3:-}" ] || eq 1 "$([ "$(gstat "status.get(\"$3\", 0)")" -ge 1 ] && echo 1 || echo 0)" "$1: Google answered $3"
}

survives "403 rateLimitExceeded on users page 2" '{"endpoint": "users", "page": 2, "kind": "rate403"}' 403
survives "403 userRateLimitExceeded twice on members" '{"endpoint": "members", "kind": "userrate403", "times": 2}' 403
survives "429 with Retry-After 1 on groups" '{"endpoint": "groups", "page": 1, "kind": "429", "retry_after": "1"}' 429
survives "503 with Retry-After as an HTTP date" \
	"{\"endpoint\": \"users\", \"page\": 1, \"kind\": \"503\", \"retry_after\": \"$(date -u -R -d '+1 sec' | sed 's/+0000/GMT/')\"}" 503
survives "500 once" '{"endpoint": "members", "page": 1, "kind": "500"}' 500
survives "connection cut mid-body" '{"endpoint": "users", "page": 3, "kind": "reset"}'
survives "token endpoint 503 once" '{"endpoint": "token", "kind": "503", "retry_after": "1"}' 503
# reliability 9: an empty page that still has a next token is not the end
survives "an empty page with a next token" '{"endpoint": "users", "page": 2, "kind": "empty"}'
eq 4 "$(gstat 'by_endpoint["users"]')" "the empty page was one more request, then paging went on"
# a stall once: the low-speed limit ends it and the page is asked again
GTIMEOUT=2s gconfig_write
survives "a stall of 4 s once (timeout 2 s)" '{"endpoint": "members", "page": 1, "kind": "stall", "seconds": 4}'
gconfig_write

# fails WHAT FAULT_JSON MESSAGE: the run fails with MESSAGE, nothing written
fails() {
	local before n
	fault "$2"
	before=$(snapshot_db)
	n=$(runs)
	ids sync
	eq "${4:-1}" "$RC" "$1: sync exits ${4:-1}"
	has "$3" "$ERR" "$1: the error says [$3]"
	eq "$before" "$(snapshot_db)" "$1: database unchanged"
	eq "failed|$((n + 1))" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")|$(runs)" "$1: one failed sync_run row"
}

fails "permission 403" '{"endpoint": "users", "page": 2, "kind": "403"}' \
	"users: page 2: Google 403 Not Authorized to access this resource/api (forbidden)"
eq 1 "$(gstat 'status.get("403", 0)')" "a permission 403 is not retried"
fails "403 quotaExceeded (waiting does not help)" '{"endpoint": "users", "page": 1, "kind": "quota403"}' \
	"Google 403 Quota Exceeded (quotaExceeded)"
eq 1 "$(gstat 'status.get("403", 0)')" "quotaExceeded is not retried"
fails "404 on a group's members" '{"endpoint": "members", "group": "g-teamb", "kind": "404"}' \
	"members of group g-teamb: page 1: Google 404 Resource Not Found: groupKey (notFound)"
fails "400" '{"endpoint": "groups", "page": 2, "kind": "400"}' "groups: page 2: Google 400 Invalid Input"
fails "HTML with a 200" '{"endpoint": "users", "page": 2, "kind": "html"}' "Google answered 200 with text/html"
fails "a truncated JSON body" '{"endpoint": "groups", "page": 1, "kind": "truncate"}' "groups: page 1: groups page: malformed JSON"
# the request id Google support asks for, as for Graph
has "groups page: malformed JSON" "$ERR" "a truncated JSON body: the parser's words"
case "$ERR" in *"malformed JSON"*"(request-id "*) ok "a truncated JSON body: the error names the request id" ;; *) bad "a truncated JSON body: no request id in [$ERR]" ;; esac
fails "users of the wrong type" '{"endpoint": "users", "page": 3, "kind": "wrongtype"}' '"users" is not an array'
fails "a repeated page token" '{"endpoint": "users", "page": 2, "kind": "repeat_token"}' \
	"users: paging loop: page 2's nextPageToken repeats an earlier one"
fails "a repeated members page token" '{"endpoint": "members", "group": "g-support", "page": 2, "kind": "repeat_token"}' \
	"paging loop"
fails "503 that never ends" '{"endpoint": "groups", "page": 2, "kind": "503", "retry_after": "1", "times": -1}' \
	"Google 503 The service is currently unavailable. (backendError) (after 5 retries)"
eq 6 "$(gstat 'status.get("503", 0)')" "503: the request and 5 retries, then the run fails"

# a rate limit that outlasts run_timeout: the run fails as a rate limit,
# never as "no permission" or "zero users"
RUN_TIMEOUT=5s gconfig_write
fails "403 rateLimitExceeded past run_timeout" '{"endpoint": "users", "page": 1, "kind": "rate403", "times": -1}' \
	"Rate Limit Exceeded (rateLimitExceeded)"
# reliability 2/14: a server that stops answering mid-body, every time
RUN_TIMEOUT=7s GTIMEOUT=2s gconfig_write
# (each try ends after 2 s without progress and is retried; the run's
# deadline ends the retries, and the error says so)
fails "a stall every time" '{"endpoint": "users", "page": 2, "kind": "stall", "seconds": 5, "times": -1}' \
	"stopped: run_timeout reached"
gconfig_write

# the grant refused
fault ""
gconfig_write
sed -i "s/subject: $SUBJECT/subject: nobody@corp.example/" "$W/idsyncd.yaml"
fails "a subject Google does not know" "" "token endpoint $GURL/token: 400 invalid_grant: Invalid email or User ID"
gconfig_write
cp "$W/sa.key" "$W/sa.key.orig"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/sa.key" 2>/dev/null
sa_json "$GURL/token"
fails "a key Google does not have (rotated)" "" "400 invalid_grant: Invalid JWT Signature."
mv "$W/sa.key.orig" "$W/sa.key"
sa_json "$GURL/token"

# check-config parses the key file the run will use (a file holding `x`
# passed it once): exit 78 naming the file, nothing of its content shown
cp "$W/sa.json" "$W/sa.json.good"
ids check-config
eq 0 "$RC" "check-config with a good key file: exit 0"
printf 'x' >"$W/sa.json"
ids check-config
eq 78 "$RC" "check-config, a key file holding x: exit 78"
has "$W/sa.json: not a service account key: malformed JSON" "$ERR" "check-config, x: names the file and the problem"
printf '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-KEYBYTES' >"$W/sa.json"
ids check-config
eq 78 "$RC" "check-config, a cut key file: exit 78"
has "$W/sa.json: not a service account key: malformed JSON" "$ERR" "check-config, a cut key file: names the file"
hasnt "KEYBYTES" "$OUT$ERR" "check-config, a cut key file: none of its content shown"
hasnt "MIIEvQ" "$OUT$ERR" "check-config, a cut key file: none of the key shown"
printf '{"type": "service_account", "private_key_id": "x", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\\nKEYBYTES\\n-----END PRIVATE KEY-----\\n"}' >"$W/sa.json"
ids check-config
eq 78 "$RC" "check-config, a key that is not a key: exit 78"
has "service account key $W/sa.json: JWT: cannot read the private key" "$ERR" "check-config, a key that is not a key: says so"
hasnt "KEYBYTES" "$OUT$ERR" "check-config, a key that is not a key: none of it shown"
mv "$W/sa.json.good" "$W/sa.json"

# the key file
printf '{"type": "service_account", "private_key_id": "x"' >"$W/sa.json"
# a key file that is there but malformed is a configuration error (78)
fails "a malformed key file" "" "$W/sa.json: not a service account key: malformed JSON" 78
printf '{"type": "service_account", "private_key_id": "x", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n"}' >"$W/sa.json"
fails "a key file with a broken key" "" "service account key $W/sa.json: JWT: cannot read the private key" 78
# no token_endpoint: the key file's token_uri, and without one an error
sa_json "$GURL/token"
sed -i "/token_endpoint:/d" "$W/idsyncd.yaml"
"$PY" - "$W/sa.json" <<-'PY'
import json, sys
k = json.load(open(sys.argv[1]))
del k["token_uri"]
json.dump(k, open(sys.argv[1], "w"))
PY
fails "no token_endpoint and no token_uri" "" "service account key $W/sa.json has no token_uri and no token_endpoint is configured" 78
sa_json "$GURL/token"
ids sync
eq 0 "$RC" "no token_endpoint: the key file's token_uri is used"
gconfig_write
rm "$W/sa.json"
ids sync
eq 78 "$RC" "a missing key file is a config error"
has "$W/sa.json" "$ERR" "the error names the file"
sa_json "$GURL/token"
chmod 644 "$W/sa.json"
before=$(snapshot_db)
ids sync
eq 78 "$RC" "a key file readable by others is a config error"
has "$W/sa.json" "$ERR" "the error names the file"
eq "$before" "$(snapshot_db)" "nothing written"
chmod 600 "$W/sa.json"

# TLS: a CA that did not sign the fake's certificate
sed -i "s|tls_ca_file: .*|tls_ca_file: $W/certs/other-ca.crt|" "$W/idsyncd.yaml"
fails "the wrong CA" "" "certificate verification failed for host 127.0.0.1"
gconfig_write
ids sync
eq 0 "$RC" "and with everything right again, the run succeeds"
eq "$BASE" "$(snapshot_db)" "the database never changed"
finish
