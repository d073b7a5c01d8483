#!/usr/bin/env bash
# End to end with Microsoft Entra ID (the Graph fake, a client secret):
# nested groups through transitiveMembers, a disabled user, a user without
# mail, a non-ASCII name, a user in no group; idempotence; deprovisioning
# when a user is disabled; the `groups:` scope by name and id, and a scope
# entry that matches nothing; the secret in no output at debug level.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"

A=aaaaaaaa-0000-4000-8000-000000000001 # alice
B=aaaaaaaa-0000-4000-8000-000000000002 # bob
C=aaaaaaaa-0000-4000-8000-000000000003 # carol
D=aaaaaaaa-0000-4000-8000-000000000004 # dave (disabled)
E=aaaaaaaa-0000-4000-8000-000000000005 # eve (no mail)
J=aaaaaaaa-0000-4000-8000-000000000006 # jnovak
G_SUP=bbbbbbbb-0000-4000-8000-000000000001
G_B=bbbbbbbb-0000-4000-8000-000000000002
G_C=bbbbbbbb-0000-4000-8000-000000000003
G_ADM=bbbbbbbb-0000-4000-8000-000000000004

# tenant JSON; $1 = alice's accountEnabled, $2 = Team-B's members
tenant_json() {
	cat <<-JSON
	{"users": [
	  {"id": "$A", "userPrincipalName": "alice@contoso.example", "mail": "alice@contoso.example",
	   "givenName": "Alice", "surname": "Smith", "displayName": "Alice Smith", "accountEnabled": $1},
	  {"id": "$B", "userPrincipalName": "bob@contoso.example", "mail": "bob@contoso.example",
	   "givenName": "Bob", "surname": "Jones", "displayName": "Bob Jones"},
	  {"id": "$C", "userPrincipalName": "carol@contoso.example", "mail": "carol@contoso.example",
	   "givenName": "Carol", "surname": "White", "displayName": "Carol White"},
	  {"id": "$D", "userPrincipalName": "dave@contoso.example", "mail": "dave@contoso.example",
	   "givenName": "Dave", "surname": "Black", "displayName": "Dave Black", "accountEnabled": false},
	  {"id": "$E", "userPrincipalName": "eve@contoso.example", "mail": null,
	   "givenName": "Eve", "surname": "Green", "displayName": "Eve Green"},
	  {"id": "$J", "userPrincipalName": "jnovak@contoso.example", "mail": "jan.novak@contoso.example",
	   "givenName": "Jan", "surname": "Nov\u00e1k", "displayName": "Jan Nov\u00e1k"}
	 ],
	 "groups": [
	  {"id": "$G_SUP", "displayName": "CC-Support", "mail": "cc-support@contoso.example", "members": ["$A", "$G_B", "$D"]},
	  {"id": "$G_B", "displayName": "Team-B", "members": $2},
	  {"id": "$G_C", "displayName": "Team-C", "members": ["$E"]},
	  {"id": "$G_ADM", "displayName": "CC-Admins", "members": ["$A"]}
	 ]}
	JSON
}
tenant_json true "[\"$B\", \"$J\", \"$G_C\"]" >"$W/tenant.json"

graph_start --secret-file "$W/secret.raw" --data "$W/tenant.json" --page-size 2
LOG_LEVEL=debug MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)"

ids check-config
eq 0 "$RC" "check-config accepts the entra connector"
no_secret_in_output "check-config"

ids plan
eq 0 "$RC" "plan exits 0"
has "+ user  alice@contoso.example" "$OUT" "plan creates alice"
has "+ role  jnovak@contoso.example  support  operator" "$OUT" "jnovak is an operator through nested Team-B"
has "+ role  eve@contoso.example  support  operator" "$OUT" "eve is an operator two levels down (Team-C in Team-B)"
hasnt "dave@" "$OUT" "disabled dave is not provisioned"
hasnt "carol@" "$OUT" "carol (in no group) is out of scope"
has "summary cloud: 4 create" "$OUT" "plan summary"
eq 0 "$(q "SELECT count(*) FROM pg_namespace WHERE nspname = 'idsync'")" "plan wrote nothing, not even the schema"
no_secret_in_output "plan"

# what the fake saw: one token, $select with what is mapped, $top=999, gzip
eq "{'secret': 1}" "$(graph_stat 'd["auth_kind"]')" "one token, by client secret"
sel=$(graph_stat 'd["select"]["users"]')
eq "id,accountEnabled,userPrincipalName,mail,givenName,surname,displayName" "$sel" "users \$select: id, accountEnabled and the mapped fields"
eq "999" "$(graph_stat 'd["top"]["users"]')" "users \$top=999"
eq "id,displayName,mail" "$(graph_stat 'd["select"]["groups"]')" "groups \$select"
eq "id" "$(graph_stat 'd["select"]["members"]')" "members \$select=id"
has "gzip" "$(graph_stat 'd["accept_encoding"]')" "gzip is accepted"
has "idsyncd/" "$(graph_stat 'd["user_agent"]')" "a User-Agent of our own"
# 6 users in pages of 2 (3), 4 groups (2), members: CC-Support 5 (3 pages), Team-B 3 (2), Team-C 1, CC-Admins 1
eq "3 2 7" "$(graph_stat 'd["by_endpoint"]["users"], d["by_endpoint"]["groups"], d["by_endpoint"]["members"]' | tr -d '(),')" "pages read: users, groups, members"

graph_ctl '{"reset_stats": true}'
ids sync
eq 0 "$RC" "sync exits 0"
eq "alice@contoso.example,bob@contoso.example,eve@contoso.example,jnovak@contoso.example" \
	"$(q "SELECT string_agg(username, ',' ORDER BY username) FROM app_user WHERE active")" "four active users"
eq "sso|entra|cloud" "$(q "SELECT DISTINCT auth_method||'|'||idp||'|'||source FROM app_user")" "SSO users of idp entra, owned by the connector"
eq "$A" "$(q "SELECT external_id FROM app_user WHERE username='alice@contoso.example'")" "external id is the Graph id"
eq "" "$(q "SELECT coalesce(email, '') FROM app_user WHERE username='eve@contoso.example'")" "null mail: no e-mail"
eq "jan.novak@contoso.example|Jan|Novák" "$(q "SELECT email||'|'||first_name||'|'||last_name FROM app_user WHERE external_id='$J'")" "mail, names and UTF-8 kept"
eq "true|false|false|false" "$(q "SELECT string_agg(company_admin::text, '|' ORDER BY username) FROM app_user")" "alice is company admin (CC-Admins)"
eq "4" "$(q "SELECT count(*) FROM tenant_role r JOIN tenant t ON t.id=r.tenant_id WHERE t.slug='support' AND r.role='operator'")" "four operators in tenant support"
eq "ok|4|0" "$(q "SELECT status||'|'||created||'|'||deactivated FROM sync_run ORDER BY id DESC LIMIT 1")" "sync_run row"
no_secret_in_output "sync"

before=$(snapshot_db)
ids sync
eq 0 "$RC" "second sync exits 0"
has "summary cloud: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed, 0 conflicts" "$OUT" "second sync changes nothing"
eq "$before" "$(snapshot_db)" "second sync rewrote no row"

# deprovisioning: alice disabled in Entra, bob leaves Team-B
tenant_json false "[\"$J\", \"$G_C\"]" >"$W/tenant2.json"
graph_ctl "{\"data_file\": \"$W/tenant2.json\"}"
ids sync
eq 0 "$RC" "sync after the changes exits 0"
eq "f" "$(q "SELECT active FROM app_user WHERE external_id='$A'")" "disabled alice is deactivated"
eq "0" "$(q "SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id=r.user_id WHERE u.external_id='$B'")" "bob left the group: his role is gone"
eq "t" "$(q "SELECT active FROM app_user WHERE external_id='$J'")" "jnovak stays"

# the groups: scope, by name (any case) and by id: CC-Admins is not read
graph_ctl "{\"data_file\": \"$W/tenant.json\", \"reset_stats\": true}"
LOG_LEVEL=debug MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" \
	"    groups: [\"cc-support\", \"$G_B\", \"Team-C\"]"
ids plan
eq 0 "$RC" "plan with a groups scope exits 0"
has "+ user  alice@contoso.example  reactivate" "$OUT" "alice is reactivated"
has "~ user  alice@contoso.example  company_admin true -> false" "$OUT" "alice is no company admin: CC-Admins is out of scope"
eq "3" "$(graph_stat 'sum(1 for x in d["log"] if x[1] == "members" and x[2] == 1)')" "members of the three groups in scope only"

before=$(snapshot_db)
entra_config "$(entra_secret)" "    groups: [\"CC-Support\", \"CC-Suport\"]"
ids sync
eq 1 "$RC" "a scope entry matching no group fails the run"
has '"CC-Suport"' "$ERR" "the error names the entry"
has "matches no group" "$ERR" "and says why"
eq "$before" "$(snapshot_db)" "database unchanged"
eq "failed" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "failed run recorded"
no_secret_in_output "failed scope"
finish
