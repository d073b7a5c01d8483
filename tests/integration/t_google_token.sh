#!/usr/bin/env bash
# The Google connector's access token: one per run while it lasts, renewed
# before it expires (short-lived tokens), renewed once and the same page
# asked again when Google says 401 early (reliability 12), and a run that
# fails when even a fresh token gets 401.  Then secrets: at log.level
# debug, no output of idsyncd carries the private key, the signed
# assertion or an access token (reliability 17).
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/google_lib.sh"

small_data "$W/data.json"
gfake_start --data "$W/data.json" --page-users 1 --page-groups 1 --page-members 1
sa_json "$GURL/token"
LOG_LEVEL=debug gconfig_write
ALL_OUT=

# run: a sync whose output is kept for the secrets check at the end
run() {
	ids "$@"
	ALL_OUT="$ALL_OUT$OUT$ERR"
}

run sync
eq 0 "$RC" "sync exits 0"
eq 1 "$(gstat 'tokens_issued')" "one token for a whole run (3 + 3 + 5 pages)"
BASE=$(snapshot_db)

# a token that lives 4 s and pages that take 0.5 s: renewed before it
# expires (halfway), so Google never has to say 401
gctl '{"reset_stats": true, "token_lifetime": 4, "faults": [{"endpoint": "any", "kind": "delay", "seconds": 0.5, "times": -1}]}'
run sync
eq 0 "$RC" "sync with short-lived tokens exits 0"
eq 1 "$([ "$(gstat 'tokens_issued')" -ge 2 ] && echo 1)" "the token was renewed during the run"
eq 0 "$(gstat 'unauthorized')" "before it expired: no 401"
eq "$BASE" "$(snapshot_db)" "nothing changed"

# a token answer that says nothing useful about its lifetime (expires_in 0,
# or none at all): kept for one documented default (600 s, renewed after
# 300 s), not renewed before every page — 11 pages of 0.5 s take one token
for claim in 0 '"omit"' null; do
	gctl "{\"reset_stats\": true, \"token_lifetime\": 3600, \"expires_claim\": $claim, \"faults\": [{\"endpoint\": \"any\", \"kind\": \"delay\", \"seconds\": 0.5, \"times\": -1}]}"
	run sync
	eq 0 "$RC" "expires_in $claim: sync exits 0"
	eq 1 "$(gstat 'tokens_issued')" "expires_in $claim: one token for the whole run"
done
gctl '{"clear_faults": true, "expires_claim": "truth"}'

# a token revoked after 2 requests: 401 mid-pagination, renewed, the same
# page asked again, nothing lost
gctl '{"reset_stats": true, "clear_faults": true, "token_lifetime": 3600, "token_max_uses": 2}'
run sync
eq 0 "$RC" "sync with tokens revoked early exits 0"
eq 1 "$([ "$(gstat 'unauthorized')" -ge 1 ] && echo 1)" "Google said 401"
eq 1 "$([ "$(gstat 'tokens_issued')" -ge 4 ] && echo 1)" "a new token after each 401 (11 pages, 2 per token)"
# 11 pages + one repeat per 401
eq "$((11 + $(gstat 'unauthorized')))" "$(gstat 'by_endpoint["users"] + by_endpoint["groups"] + by_endpoint["members"]')" \
	"each 401ed page asked again once, no page skipped"
has "summary gws: 0 create, 0 update, 0 deactivate" "$OUT" "nothing lost"
eq "$BASE" "$(snapshot_db)" "nothing changed"

# 401 with a fresh token too: renewed once, then the run fails
gctl '{"reset_stats": true, "token_max_uses": 0, "faults": [{"endpoint": "groups", "page": 2, "kind": "401", "times": -1}]}'
run sync
eq 1 "$RC" "401 after a renewal fails the run"
has "groups: page 2: Google 401 Request had invalid authentication credentials. (authError)" "$ERR" "Google's message"
eq 2 "$(gstat 'tokens_issued')" "one renewal, no more"
eq "$BASE" "$(snapshot_db)" "nothing written"

# the token endpoint refuses: no retry storm, Google's words in the error
gctl '{"reset_stats": true, "clear_faults": true, "faults": [{"endpoint": "token", "kind": "403", "times": -1}]}'
run sync
eq 1 "$RC" "a refused token fails the run"
has "token endpoint $GURL/token: 403" "$ERR" "the token endpoint's answer"
eq 1 "$(gstat 'by_endpoint["token"]')" "asked once"
gctl '{"clear_faults": true}'

# check-config and plan at debug level add their own output
run check-config
run plan
eq 0 "$RC" "plan exits 0"

# no secret anywhere: the key (each line of its base64), the assertion
# (a JWT starts with the base64 of {"alg":), the tokens Google issued
key_lines=$(grep -v -- '-----' "$W/sa.key")
leaked=0
while read -r line; do
	case "$ALL_OUT" in *"$line"*) leaked=$((leaked + 1)) ;; esac
done <<<"$key_lines"
eq 0 "$leaked" "no line of the private key in any output"
hasnt "PRIVATE KEY" "$ALL_OUT" "no PEM armour in any output"
hasnt "eyJhbGciOi" "$ALL_OUT" "no signed assertion in any output"
hasnt "ya29." "$ALL_OUT" "no access token in any output"
tokens=$(gstat '"\n".join(issued)')
found=0
for t in $tokens; do case "$ALL_OUT" in *"${t#ya29.}"*) found=$((found + 1)) ;; esac; done
eq 0 "$found" "none of the issued tokens in any output"
has "debug" "$ALL_OUT" "the runs did log at debug level"
eq 0 "$(q "SELECT count(*) FROM sync_run WHERE error ~ 'ya29|PRIVATE|eyJhbGci'")" "no secret in sync_run.error"
finish
