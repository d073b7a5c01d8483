#!/usr/bin/env bash
# Active Directory binds and the domain root, against the Samba AD DC: the
# service account by DN over StartTLS and by UPN over LDAPS; a search at
# the domain root, where AD answers with continuation references (not
# chased) besides the entries; Domain Users reached through primaryGroupID
# (its `member` does not list the users whose primary group it is); a
# wrong password, a bind without TLS and an untrusted CA refused, with the
# server's or the verifier's words and no secret in any output.
. "$(dirname "$0")/ad_lib.sh"

# one rule on the group every user is in by default
RULES=$(
	cat <<-'R'
	  - name: domain-users
	    match: { member_of: ["Domain Users"] }
	    tenant: general
	    roles: [operator]
	R
)
# everything from the domain root, but the bulk users
export AD_USERS_BASE=$B AD_GROUPS_BASE=$B
export AD_USERS_FILTER="(&(objectCategory=person)(objectClass=user)(!(sAMAccountName=agent*)))"

# the directory really does answer a root search with references
has "# refldap" "$(ad_search -b "$B" '(objectClass=domain)' dn)" "the DC returns continuation references at the root"

# by DN over StartTLS
AD_URI=$IDS_TEST_AD_URI AD_BIND=$IDS_TEST_AD_BIND_DN ad_config_write "" "$RULES"
LOG_LEVEL=debug ids sync
eq 0 "$RC" "sync from the domain root, bound by DN over StartTLS"
hasnt "$(cat "$W/ad.pw")" "$OUT$ERR" "the password appears in no output (debug)"
# Domain Users holds every user through primaryGroupID 513; paul's primary
# group is CC-Primary, so AD lists him in Domain Users' member instead
got=$(q "SELECT string_agg(u.username, ',' ORDER BY u.username) FROM tenant_role r JOIN app_user u ON u.id=r.user_id
	 WHERE u.username IN ('Administrator','svc-idsync','jnovak','olga','paul','dana','Guest','krbtgt')")
eq "Administrator,jnovak,olga,paul,svc-idsync" "$got" \
	"Domain Users: members by primary group and by member; not the disabled (dana, Guest, krbtgt)"
eq 0 "$(q "SELECT count(*) FROM app_user WHERE username LIKE 'agent%'")" "the users filter kept the bulk out"

# by UPN over LDAPS: the same directory, nothing to change
AD_BIND=$IDS_TEST_AD_BIND_UPN ad_config_write "" "$RULES"
ids plan
eq 0 "$RC" "plan bound by UPN over LDAPS"
has "0 create, 0 update, 0 deactivate" "$OUT" "UPN bind reads the same directory"

# refusals: each a failed run, nothing written
before=$(snapshot_db)
printf 'wrong-%s' "$(cat "$IDS_TEST_AD_BIND_PW_FILE")" >"$W/wrong.pw"
chmod 600 "$W/wrong.pw"
sed -i "s#bind_password_file: .*#bind_password_file: $W/wrong.pw#" "$W/idsyncd.yaml"
ids sync
eq 1 "$RC" "a wrong password fails the run"
has "Invalid credentials (49)" "$OUT$ERR" "the server's result code is in the message"
has "$IDS_TEST_AD_BIND_UPN" "$OUT$ERR" "the message names the bind identity"
hasnt "$(cat "$W/wrong.pw")" "$OUT$ERR" "the wrong password appears in no output"
eq "failed" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "failed run recorded"

# AD refuses a simple bind without TLS (ldap server require strong auth)
AD_URI=$IDS_TEST_AD_URI ad_config_write '    start_tls: false' "$RULES"
printf 'security:\n  allow_plaintext_bind: true\n' >>"$W/idsyncd.yaml"
ids sync
eq 1 "$RC" "a simple bind without TLS fails the run"
has "Strong(er) authentication required" "$OUT$ERR" "AD's answer to a plaintext simple bind is in the message"

# a CA that did not sign the DC's certificate
AD_CA=$IDS_TEST_AD_WRONG_CA ad_config_write "" "$RULES"
ids sync
eq 1 "$RC" "an untrusted certificate fails the run"
has "TLS certificate verification failed for host 127.0.0.1" "$OUT$ERR" "the message says why and for which host"
eq "$before" "$(snapshot_db)" "refused runs wrote nothing"
finish
