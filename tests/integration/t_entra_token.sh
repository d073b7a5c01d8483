#!/usr/bin/env bash
# The daemon keeps a cloud connector's access token between runs (issue
# 15: a no-change delta run is two small requests, a token request made it
# twice as long): two no-change runs make two Graph requests each and no
# token request; a token the fake revoked (401) is replaced in the same
# run; a token near its expiry is renewed before use; a reload that changes
# the client secret gets a new token, one that changes nothing does not;
# the token is in no log line.  The HTTPS connection is kept too: the next
# run sends its requests on it (no TCP or TLS handshake); one the server
# closed while idle, or as a request went out, is replaced in the run; a
# rewritten tls_ca_file is read again (a CA that signed nothing here fails
# the next run: the kept connection is not used past the new trust).
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"
. "$(dirname "$0")/entra_delta_lib.sh"

tokens() { graph_stat "d['tokens_issued']"; }
graph_requests() { graph_stat "d['requests'] - d['by_endpoint'].get('token', 0)"; }

graph_start --secret-file "$W/secret.raw" --gen-users 5 --gen-groups 2
# a CA file of the test's own, to be rewritten
cp "$CERTS/ca.crt" "$W/ca.crt"
config() { CA_FILE=$W/ca.crt LOG_LEVEL=debug entra_config "$(entra_secret)" '    changes: { mode: auto }'; }
conns() { graph_stat "d.get('connections', 0)"; }
config
ids migrate
eq 0 "$RC" "migrate"

# ---- the first run asks for a token; the next two reuse it
daemon_start
eq "ok|1" "$(last_run status)|$(tokens)" "the first run gets a token"
graph_ctl '{"reset_stats": true}'
daemon_run
daemon_run
eq "ok|incremental" "$(last_run "status||'|'||read_kind")" "no-change runs are incremental"
eq "4" "$(graph_requests)" "two no-change runs: 2 Graph requests each"
eq "0" "$(tokens)" "and no token request: the first run's token is kept"

# ---- the connection is kept between runs (the fake counts the TLS
# handshakes it accepted; the query reading them is one of them)
graph_ctl '{"reset_stats": true}'
daemon_run
daemon_run
eq "ok|1" "$(last_run status)|$(conns)" "two runs: no new connection, each reuses the last one's"
eq 1 "$(tail -5 "$W/daemon.log" | grep -cE 'debug cloud: GET https://[^ ?]*/users/delta: HTTP 200, [0-9]+ bytes, reused connection; ms from start: name lookup [0-9.]+, connect [0-9.]+, TLS [0-9.]+, first byte [0-9.]+, total [0-9.]+$')" \
	"the debug log says where a request's time went, and that the connection was reused"

# ---- the server closed the idle connection: the next run opens another
graph_ctl '{"idle_timeout": 0.3}'
daemon_run # its connection now closes 0.3 s after its last request
sleep 1
graph_ctl '{"reset_stats": true}'
daemon_run
sleep 1
eq "ok|2" "$(last_run status)|$(conns)" "a connection the server closed while idle: one new connection, the run succeeds"
eq "1" "$(graph_stat "d.get('resumed', 0)")" "which resumed the kept TLS session (no full handshake)"
graph_ctl '{"idle_timeout": 0}'
daemon_run # on a new connection (the last one closed 0.3 s after its run), kept 60 s

# ---- the server drops the kept connection as the request goes out
graph_ctl '{"reset_stats": true, "faults": [{"endpoint": "users_delta", "kind": "hangup"}]}'
daemon_run
c=$(conns) # first: the queries after it are connections too
eq "ok|2|2" "$(last_run status)|$(graph_stat "d['by_endpoint']['users_delta']")|$c" \
	"a kept connection hung up on the request: asked again on a new one, the run succeeds"

# ---- the CA file rewritten: the kept connection is not used past the new trust
cp "$CERTS/other-ca.crt" "$W/ca.new" && mv "$W/ca.new" "$W/ca.crt"
daemon_run
eq "failed" "$(last_run status)" "a tls_ca_file rewritten with a CA that signed nothing here fails the next run"
has "not signed by the CA of tls_ca_file" "$(last_run error)" "with the reason"
cp "$CERTS/ca.crt" "$W/ca.new" && mv "$W/ca.new" "$W/ca.crt"
daemon_run
eq "ok" "$(last_run status)" "the right CA back: the run succeeds"

# ---- a cached token revoked early: a 401, a new token, the same run goes on
graph_ctl '{"reset_stats": true, "revoke_tokens": true}'
daemon_run
eq "ok|1|1" "$(last_run status)|$(graph_stat "d['unauthorized']")|$(tokens)" \
	"a 401 on the cached token: one new token, the run succeeds"
graph_ctl '{"reset_stats": true}'
daemon_run
eq "0" "$(tokens)" "the renewed token is cached in turn"

# ---- a token near its expiry is renewed before it is used
graph_ctl '{"reset_stats": true, "revoke_tokens": true, "expires_in": 2}'
daemon_run # 401, then a token said to live 2 s: renewed after 1 s
sleep 1.5
graph_ctl '{"reset_stats": true, "expires_in": 3600}'
daemon_run
eq "ok|0|1" "$(last_run status)|$(graph_stat "d['unauthorized']")|$(tokens)" \
	"a token past its renewal time is renewed before use, not after a 401"

# ---- a reload that changes nothing keeps the token
config
daemon_reload
graph_ctl '{"reset_stats": true}'
daemon_run
eq "ok|0" "$(last_run status)|$(tokens)" "a reload that changes no credential keeps the token"

# ---- the secret rotated: the old token still works at the fake, but a
# reload that changes the credential must not send it again
NEW_SECRET='n3w~Rotated.SECRET_fedcba9876543210'
printf '%s\n' "$NEW_SECRET" >"$W/secret2.raw"
printf '%s' "$NEW_SECRET" >"$W/entra-secret"
graph_ctl "{\"secret_file\": \"$W/secret2.raw\"}"
config
daemon_reload
graph_ctl '{"reset_stats": true}'
daemon_run
eq "ok|1|0" "$(last_run status)|$(tokens)|$(graph_stat "d['unauthorized']")" \
	"a reload that changes the client secret gets a new token with it"

hasnt "reload refused" "$(cat "$W/daemon.log")" "both reloads were taken"
hasnt "eyJ0eXAiOiJKV1QiLCJub25jZSI6" "$(cat "$W/daemon.log" "$W/daemon.out")" "no token in the daemon's log (debug)"
hasnt "$NEW_SECRET" "$(cat "$W/daemon.log" "$W/daemon.out")" "no secret in the daemon's log"
daemon_stop
finish
