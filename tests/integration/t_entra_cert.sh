#!/usr/bin/env bash
# The Entra certificate credential: a JWT client assertion signed PS256
# with an x5t#S256 header (the default), or RS256 with x5t; its claims as
# the identity platform checks them (the fake verifies the signature with
# the registered certificate); a certificate the app does not know; a
# broken key; a key file others can read.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"

RULES='  - name: support
    match: { member_of: ["CC-Group-000"] }
    tenant: support
    roles: [operator]'

# thumbprints computed by the openssl CLI, not by idsyncd
der_hash() { openssl x509 -in "$CERTS/client.crt" -outform DER | openssl dgst "-$1" -binary | basenc --base64url | tr -d '='; }
X5T256=$(der_hash sha256)
X5T=$(der_hash sha1)
TOKEN_URL="https://127.0.0.1:PORT/$TENANT/oauth2/v2.0/token"

# ---- PS256, x5t#S256 (the default)
graph_start --client-cert "$CERTS/client.crt" --expect-alg PS256 --gen-users 5 --gen-groups 2
LOG_LEVEL=debug entra_config "$(entra_cert)" "" "$RULES"
ids sync
eq 0 "$RC" "sync with the certificate credential (PS256) exits 0"
eq "3" "$(q "SELECT count(*) FROM app_user WHERE active")" "the users of CC-Group-000 are synced"
eq "{'assertion': 1}" "$(graph_stat 'd["auth_kind"]')" "one token, by client assertion"
eq "PS256|JWT|$X5T256|None" "$(graph_stat '"|".join(str(d["last_header"].get(k)) for k in ("alg", "typ", "x5t#S256", "x5t"))')" \
	"header: alg PS256, typ JWT, x5t#S256 = SHA-256 of the certificate's DER, no x5t"
eq "${TOKEN_URL/PORT/$GRAPH_PORT}" "$(graph_stat 'd["last_claims"]["aud"]')" "aud is the token URL"
eq "$CLIENT_ID|$CLIENT_ID" "$(graph_stat 'd["last_claims"]["iss"] + "|" + d["last_claims"]["sub"]')" "iss = sub = client id"
eq "600|True" "$(graph_stat 'str(d["last_claims"]["exp"] - d["last_claims"]["nbf"]) + "|" + str(d["last_claims"]["iat"] == d["last_claims"]["nbf"])')" \
	"exp = nbf + 10 minutes, iat = nbf"
jti1=$(graph_stat 'd["last_claims"]["jti"]')
ids sync
eq 0 "$RC" "a second run gets a token too (the fake refuses a reused jti)"
jti2=$(graph_stat 'd["last_claims"]["jti"]')
if [ "$jti1" != "$jti2" ] && [ ${#jti1} -eq 32 ]; then ok "jti is new each time ($jti1, $jti2)"; else bad "jti: $jti1 / $jti2"; fi
hasnt "PRIVATE KEY" "$OUT$ERR" "the key is in no output"
hasnt "client_assertion=" "$OUT$ERR" "the assertion is in no output"

# ---- RS256, x5t (client_assertion_alg: RS256)
graph_start --client-cert "$CERTS/client.crt" --expect-alg RS256 --gen-users 5 --gen-groups 2
entra_config "$(entra_cert RS256)" "" "$RULES"
ids sync
eq 0 "$RC" "sync with client_assertion_alg RS256 exits 0"
eq "RS256|JWT|$X5T|None" "$(graph_stat '"|".join(str(d["last_header"].get(k)) for k in ("alg", "typ", "x5t", "x5t#S256"))')" \
	"header: alg RS256, x5t = SHA-1 thumbprint, no x5t#S256"

# ---- failures leave the database as it was
before=$(snapshot_db)

# the app registration holds another certificate
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/other.key" -out "$W/other.crt" -days 1 \
	-subj "/CN=other" 2>/dev/null
graph_start --client-cert "$W/other.crt" --gen-users 5 --gen-groups 2
entra_config "$(entra_cert)" "" "$RULES"
ids sync
eq 1 "$RC" "an unknown certificate fails the run"
has "token endpoint" "$ERR" "the token endpoint refused"
has "401 invalid_client: AADSTS700027" "$ERR" "with the identity platform's error code"
eq "$before" "$(snapshot_db)" "database unchanged (unknown certificate)"

# a key that is not a key (mode 600, so the config accepts it)
graph_start --client-cert "$CERTS/client.crt" --gen-users 5 --gen-groups 2
cp "$CERTS/client.key" "$W/good.key"
printf -- '-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n' >"$W/broken.key"
chmod 600 "$W/broken.key"
entra_config "    client_certificate_file: $CERTS/client.crt
    client_key_file: $W/broken.key" "" "$RULES"
ids sync
eq 78 "$RC" "a broken key fails the run as a configuration error (exit 78)"
has "$W/broken.key" "$ERR" "the error names the key file"
has "cannot read the private key" "$ERR" "and says what is wrong"
eq "$before" "$(snapshot_db)" "database unchanged (broken key)"

# a key that others can read: a configuration error, before any request
chmod 644 "$W/good.key"
graph_ctl '{"reset_stats": true}'
entra_config "    client_certificate_file: $CERTS/client.crt
    client_key_file: $W/good.key" "" "$RULES"
ids sync
eq 78 "$RC" "a key file readable by others is a configuration error"
has "good.key" "$ERR" "naming the file"
eq "0" "$(graph_stat 'd["requests"]')" "no request was made"
eq "$before" "$(snapshot_db)" "database unchanged (readable key)"
chmod 600 "$W/good.key"

# ---- check-config parses the certificate credential it will use: a
# certificate and key that belong together, a certificate not expired;
# a problem is exit 78 naming the file, and no line of the key is shown
# check_config WHAT CODE TEXT: check-config exits CODE and says TEXT
key_shown() {
	local n=0 line
	while read -r line; do case "$OUT$ERR" in *"$line"*) n=$((n + 1)) ;; esac; done < <(grep -v -- '-----' "$1")
	echo "$n"
}
check_config() {
	ids check-config
	eq "$2" "$RC" "check-config, $1: exit $2"
	has "$3" "$OUT$ERR" "check-config, $1: says [$3]"
}
entra_config "    client_certificate_file: $CERTS/client.crt
    client_key_file: $W/good.key" "" "$RULES"
check_config "the right pair" 0 "configuration ok"
chmod 600 "$W/other.key"
entra_config "    client_certificate_file: $CERTS/client.crt
    client_key_file: $W/other.key" "" "$RULES"
check_config "a key of another certificate" 78 \
	"connector cloud: $W/other.key: the private key does not belong to the certificate $CERTS/client.crt"
hasnt "configuration ok" "$OUT" "check-config, a key of another certificate: not called ok"
eq 0 "$(key_shown "$W/other.key")" "check-config, a key of another certificate: no line of the key shown"
cp "$CERTS/expired.key" "$W/expired.key"
chmod 600 "$W/expired.key"
entra_config "    client_certificate_file: $CERTS/expired.crt
    client_key_file: $W/expired.key" "" "$RULES"
check_config "an expired certificate" 78 "connector cloud: $CERTS/expired.crt: the certificate expired on Jan  2 00:00:00 2020 GMT"
eq 0 "$(key_shown "$W/expired.key")" "check-config, an expired certificate: no line of the key shown"
entra_config "    client_certificate_file: $CERTS/client.crt
    client_key_file: $W/broken.key" "" "$RULES"
check_config "a key that is not a key" 78 "connector cloud: $W/broken.key: JWT: cannot read the private key"
finish
