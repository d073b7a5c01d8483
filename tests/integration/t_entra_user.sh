#!/usr/bin/env bash
# sync --user and explain on an entra connector (issue 17 part 2): the
# targeted read is GET /users/{id|upn} (else $filter on mail) plus the
# user's transitiveMemberOf, paged.  The grants it gives one person equal
# those a full sync gives them; other users are untouched (one deleted
# from the tenant meanwhile is NOT deactivated); an unknown user exits 1
# with a failed run row; a 429 with Retry-After is waited out; a source
# error fails the run and deactivates no one; explain reads no listing.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"

# graph.py's generated tenant: user i in CC-Group-(i % 12); CC-Group-010
# contains CC-Group-009 (nesting); every rule maps a group to a tenant
RULES='  - name: bygroup
    match: { member_of_regex: "^CC-Group-([0-9]+)$" }
    tenant: "t{1}"
    roles: [operator]'
grants() {
	q "SELECT coalesce(string_agg(t.slug || ':' || r.role, ',' ORDER BY t.slug, r.role), '')
	   FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id JOIN app_user u ON u.id = r.user_id
	   WHERE u.username = '$1'"
}
# the tenant after the full sync: newhire (UPN and mail differ) joins
# CC-Group-009 (so CC-Group-010 through the nesting) and CC-Group-003;
# o'brien has a quote in their mail; user00005 leaves
"$PY" - "$FAKES" "$W/tenant2.json" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import graph
d = graph.generate(40, 12, True)
nh = {"id": graph.guid("user", 1000), "userPrincipalName": "newhire@contoso.example",
      "mail": "new.hire@mail.contoso.example", "givenName": "New", "surname": "Hire",
      "displayName": "New Hire", "accountEnabled": True}
ob = {"id": graph.guid("user", 1001), "userPrincipalName": "obrien@contoso.example",
      "mail": "o'brien@contoso.example", "givenName": "Pat", "surname": "O'Brien",
      "displayName": "Pat O'Brien", "accountEnabled": True}
d["users"] = [u for u in d["users"] if u["userPrincipalName"] != "user00005@contoso.example"] + [nh, ob]
for g in d["groups"]:
    if g["displayName"] in ("CC-Group-009", "CC-Group-003"):
        g["members"].append(nh["id"])
    if g["displayName"] == "CC-Group-004":
        g["members"].append(ob["id"])
json.dump(d, open(sys.argv[2], "w"))
PY

graph_start --secret-file "$W/secret.raw" --gen-users 40 --gen-groups 12 --gen-nesting --page-size 1
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" "" "$RULES"
ids sync
eq 0 "$RC" "first full sync"
u5=$(grants user00005@contoso.example)
u21=$(grants user00021@contoso.example)
eq "t009:operator,t010:operator" "$u21" "user 21 (CC-Group-009) has t9 and, nested, t10"

graph_ctl "{\"data_file\": \"$W/tenant2.json\", \"reset_stats\": true}"
ids plan --user newhire@contoso.example --connector cloud
eq 0 "$RC" "plan --user exits 0"
has "newhire@contoso.example" "$OUT" "the plan shows the new hire"
hasnt "user00005" "$OUT" "the plan does not touch the user who left"

graph_ctl '{"reset_stats": true, "faults": [{"endpoint": "memberof", "page": 2, "kind": "429", "retry_after": "1"}]}'
ids sync --user newhire@contoso.example --connector cloud
eq 0 "$RC" "sync --user by userPrincipalName exits 0 (after a 429 with Retry-After)"
has "summary cloud: 1 create, 0 update, 0 deactivate" "$OUT" "one create, no deactivation"
nh=$(grants newhire@contoso.example)
eq "t003:operator,t009:operator,t010:operator" "$nh" "the new hire's grants, the nested group's included"
eq "1 4 1" "$(graph_stat 'd["by_endpoint"].get("user"), d["by_endpoint"].get("memberof"), d["faults_fired"]' | tr -d '(),')" \
	"one user request, transitiveMemberOf in 3 pages of 1 plus the 429's retry"
eq "None None None" "$(graph_stat 'd["by_endpoint"].get("users"), d["by_endpoint"].get("groups"), d["by_endpoint"].get("members")' | tr -d '(),')" \
	"no listing of users, groups or members"
eq "true|" "$(q "SELECT active||'|'||coalesce(deactivation_reason,'') FROM app_user WHERE username='user00005@contoso.example'")" \
	"user 5, gone from the tenant, is not deactivated by sync --user"
eq "$u5" "$(grants user00005@contoso.example)" "user 5's grants are untouched"
eq "$u21" "$(grants user00021@contoso.example)" "user 21's grants are untouched"
eq "ok|user" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "recorded as read_kind user"

# by e-mail ($filter, the quote doubled) and by id
graph_ctl '{"reset_stats": true}'
ids sync --user "o'brien@contoso.example" --connector cloud
eq 0 "$RC" "sync --user by a mail with a quote exits 0"
eq "t004:operator" "$(grants obrien@contoso.example)" "o'brien's grants"
eq "[\"mail eq 'o''brien@contoso.example'\"]" "$(graph_stat 'json.dumps(d.get("filters"))')" \
	"the mail went into \$filter as an OData literal"
ids sync --user new.hire@mail.contoso.example --connector cloud
eq 0 "$RC" "sync --user by mail exits 0"
has "summary cloud: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" \
	"nothing left to do for the new hire"
ids sync --user "$("$PY" -c "import sys; sys.path.insert(0, '$FAKES'); import graph; print(graph.guid('user', 21))")" --connector cloud
eq 0 "$RC" "sync --user by id exits 0"

# unknown: exit 1, the failed row only
before=$(snapshot_db)
runs=$(q "SELECT count(*) FROM sync_run")
ids sync --user nobody@contoso.example --connector cloud
eq 1 "$RC" "an unknown user exits 1"
has "user nobody@contoso.example not found in connector cloud" "$OUT$ERR" "the message names user and connector"
eq "$before" "$(snapshot_db)" "nothing but the run row was written"
eq "$((runs + 1))|failed|user" "$(q "SELECT count(*) FROM sync_run")|$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" \
	"one failed sync_run row, read_kind user"

# a source error fails the run and deactivates no one
graph_ctl '{"faults": [{"endpoint": "memberof", "kind": "403", "times": -1}]}'
ids sync --user newhire@contoso.example --connector cloud
[ "$RC" -ne 0 ] && ok "a 403 on transitiveMemberOf fails the run ($RC)" || bad "a 403 on transitiveMemberOf passed"
has "Authorization_RequestDenied" "$OUT$ERR" "Graph's words are in the error"
eq "$before" "$(snapshot_db)" "nothing written: the new hire keeps every grant"
graph_ctl '{"clear_faults": true, "reset_stats": true}'

# explain reads the person through the same targeted read
ids explain newhire@contoso.example --connector cloud
eq 0 "$RC" "explain exits 0"
has "CC-Group-010" "$OUT" "explain names the nested group"
eq "None None 1" "$(graph_stat 'd["by_endpoint"].get("users"), d["by_endpoint"].get("members"), d["by_endpoint"].get("user")' | tr -d '(),')" \
	"explain read one user, no listing"

# the full run agrees: the targeted grants were the full read's, and it
# deprovisions user 5
ids sync
eq 0 "$RC" "full sync"
eq "$nh" "$(grants newhire@contoso.example)" "a full sync gives the new hire the same grants"
eq "t004:operator" "$(grants obrien@contoso.example)" "and o'brien the same"
has "0 grants added" "$OUT" "the full sync adds no grant: the targeted ones were complete"
eq "false|deleted_in_source" "$(q "SELECT active||'|'||deactivation_reason FROM app_user WHERE username='user00005@contoso.example'")" \
	"the full run deactivates user 5"
finish
