#!/usr/bin/env bash
# End to end against the Google fake: 32 users on 7 pages, groups and
# members on several pages, a group nested in another (Google expands it:
# includeDerivedMembership), suspended and archived users, rules on the
# org unit and on organizations.0.department, a tenant template from a
# custom schema field; then idempotence, a suspension, `domain:` instead of
# `customer:`, and the `groups:` scope.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/google_lib.sh"

# The directory: six people who matter and 26 others in /Other.
"$PY" - "$W/data.json" <<-'PY'
import json, sys
def user(i, email, given, family, ou, orgs=None, tenant=None, **kw):
    u = {"id": str(i), "primaryEmail": email,
         "name": {"givenName": given, "familyName": family, "fullName": f"{given} {family}"},
         "orgUnitPath": ou, "isAdmin": False, "emails": [{"address": email, "primary": True}]}
    if orgs:
        u["organizations"] = [{"department": d, "primary": n == 0} for n, d in enumerate(orgs)]
    if tenant:
        u["customSchemas"] = {"Contact_Center": {"tenant": tenant}}
    u.update(kw)
    return u
users = [
    user(201, "alice@corp.example", "Alice", "Smith", "/Support/CZ", ["Support"], "support-cz"),
    user(202, "bob@corp.example", "Bob", "Jones", "/Support/CZ", ["Support"], "support-cz"),
    user(203, "carol@corp.example", "Carol", "White", "/Support/CZ", ["Support"], "support-cz", suspended=True),
    user(204, "dave@corp.example", "Dave", "Black", "/Support/CZ", ["Support"], "support-cz", archived=True),
    user(205, "erin@corp.example", "Erin", "Weber", "/Sales", ["Sales", "Support"], "sales-de"),
    user(206, "jan.novak@corp.example", "Jan", "Novák", "/Support/CZ", ["Support"]),
] + [user(300 + i, f"other{i:02d}@corp.example", "Other", f"O{i:02d}", "/Other", ["Other"], "other")
     for i in range(26)]
U = lambda i: {"id": str(i), "type": "USER", "email": f"{i}@corp.example"}
groups = [
    {"id": "g-support", "email": "cc-support@corp.example", "name": "CC Support",
     "members": [U(201), {"id": "g-teamb", "type": "GROUP", "email": "team-b@corp.example"}, U(203), U(204)]},
    {"id": "g-teamb", "email": "team-b@corp.example", "name": "Team B", "members": [U(202), U(206)]},
    {"id": "g-admins", "email": "cc-admins@corp.example", "name": "CC Admins", "members": [U(201)]},
]
json.dump({"customer_id": "C01abcdef", "domain": "corp.example", "users": users, "groups": groups},
          open(sys.argv[1], "w"), indent=1)
PY

gfake_start --data "$W/data.json" --page-users 5 --page-groups 2 --page-members 2
sa_json "$GURL/token"
gconfig_write "" "$(
	cat <<-'R'
	  - name: support-operators
	    match: { member_of: ["cc-support@corp.example"] }
	    tenant: support
	    roles: [operator]
	    channels: [webchat, email]
	  - name: admins
	    match: { member_of: ["CC Admins"] }
	    company_admin: true
	  - name: cz-by-schema
	    match: { attribute: { orgUnitPath: "^/Support/CZ$" } }
	    tenant: "{attr.customSchemas.Contact_Center.tenant}"
	    roles: [view_operators]
	  - name: sales
	    match: { attribute: { organizations.0.department: "^Sales$" } }
	    tenant: sales
	    roles: [operator]
	    channels: [whatsapp]
	R
)"

ids sync
eq 0 "$RC" "sync exits 0"
# alice: support (direct), admin, support-cz (schema); bob and jan: support
# through Team B; erin: sales by department; carol suspended, dave archived
active() { q "SELECT string_agg(username, ',' ORDER BY username) FROM app_user WHERE active"; }
eq "alice@corp.example,bob@corp.example,erin@corp.example,jan.novak@corp.example" "$(active)" \
	"four active users: the nested group's members in, suspended and archived out"
eq 0 "$(q "SELECT count(*) FROM app_user WHERE username IN ('carol@corp.example','dave@corp.example')")" \
	"suspended carol and archived dave are not provisioned"
eq "sso|google|gws|201" "$(q "SELECT auth_method||'|'||idp||'|'||source||'|'||external_id FROM app_user WHERE username='alice@corp.example'")" \
	"SSO user with idp google, owned by gws, keyed by Google's id"
eq "Jan|Novák|Jan Novák|jan.novak@corp.example" \
	"$(q "SELECT first_name||'|'||last_name||'|'||display_name||'|'||email FROM app_user WHERE external_id='206'")" \
	"names from name.givenName/familyName/fullName, e-mail from primaryEmail"
eq "t" "$(q "SELECT company_admin FROM app_user WHERE external_id='201'")" "alice is company admin (member_of by name)"
roles() {
	q "SELECT string_agg(t.slug||':'||r.role, ',' ORDER BY t.slug, r.role) FROM tenant_role r
	   JOIN tenant t ON t.id=r.tenant_id JOIN app_user u ON u.id=r.user_id WHERE u.external_id='$1'"
}
eq "support:operator,support-cz:view_operators" "$(roles 201)" "alice: support operator, support-cz from the custom schema"
eq "support:operator,support-cz:view_operators" "$(roles 202)" "bob: support through the nested group, support-cz"
eq "support:operator" "$(roles 206)" "jan: no custom schema value, no templated tenant"
eq "sales:operator" "$(roles 205)" "erin: sales by organizations.0.department (not the second one)"
eq "whatsapp" "$(q "SELECT string_agg(channel, ',') FROM channel_grant c JOIN app_user u ON u.id=c.user_id WHERE u.external_id='205'")" \
	"erin's channel"
has "tenant template" "$ERR" "jan's empty template value is a warning"

# what Google was asked
eq 7 "$(gstat 'by_endpoint["users"]')" "users: 32 users in pages of 5 = 7 requests"
eq 2 "$(gstat 'by_endpoint["groups"]')" "groups: 3 groups in pages of 2 = 2 requests"
# members: CC Support lists alice, the Team B entry, bob, jan, carol, dave
# (6 = 3 pages), Team B 2 (1 page), CC Admins 1 (1 page)
eq 5 "$(gstat 'by_endpoint["members"]')" "members: 3 + 1 + 1 pages"
eq 1 "$(gstat 'tokens_issued')" "one token for the whole run"
eq "500|200|200" "$(gstat '"|".join([max_results["users"], max_results["groups"], max_results["members"]])')" \
	"maxResults 500 / 200 / 200"
eq full "$(gstat 'projection["users"]')" "projection=full: a rule reads customSchemas"
eq "nextPageToken,users(id,primaryEmail,name/givenName,name/familyName,name/fullName,suspended,archived,orgUnitPath,customSchemas/Contact_Center/tenant,organizations/department)" \
	"$(gstat 'fields["users"]')" "users fields: the mapped ones and the rules' paths"
eq "nextPageToken,groups(id,email,name)" "$(gstat 'fields["groups"]')" "groups fields"
eq "nextPageToken,members(id,type,status)" "$(gstat 'fields["members"]')" "members fields"
eq '{"true": 5}' "$(gstat 'derived')" "every members page asks for derived membership"
eq "my_customer" "$(gstat 'customer["users"]')" "customer my_customer by default"
eq "$KEY_ID" "$(gstat 'last_header["kid"]')" "the assertion's kid is the key's private_key_id"
eq "$SUBJECT|$CLIENT_EMAIL|3600" "$(gstat 'last_claims["sub"]+"|"+last_claims["iss"]+"|"+str(last_claims["exp"]-last_claims["iat"])')" \
	"assertion: sub = the admin, iss = client_email, an hour"
eq "ok|4|0" "$(q "SELECT status||'|'||created||'|'||deactivated FROM sync_run ORDER BY id DESC LIMIT 1")" "sync_run row"

# the fake itself behaves like Google where idsyncd never looks: direct
# members only without includeDerivedMembership, `fields` trims, unknown
# fields are refused, no token no answer
TOK=$(gstat 'issued[-1]')
api() { curl -sS --cacert "$W/certs/ca.crt" -H "Authorization: Bearer $TOK" "$GURL/admin/directory/v1/$1"; }
gctl '{"page": {"members": 0}}' # whole member lists for a moment
eq "201,g-teamb:GROUP,203,204" "$(api 'groups/g-support/members?maxResults=200' | "$PY" -c '
import json, sys
print(",".join(m["id"] + ("" if m["type"] == "USER" else ":" + m["type"]) for m in json.load(sys.stdin)["members"]))')" \
	"fake: without includeDerivedMembership, the direct members and the nested GROUP entry"
eq "201,g-teamb:GROUP,202,206,203,204" "$(api 'groups/g-support/members?includeDerivedMembership=true' | "$PY" -c '
import json, sys
print(",".join(m["id"] + ("" if m["type"] == "USER" else ":" + m["type"]) for m in json.load(sys.stdin)["members"]))')" \
	"fake: with it, the nested group's users follow its entry"
gctl '{"page": {"members": 2}}'
eq '{"users": [{"id": "201"}, {"id": "202"}]}' \
	"$(api 'users?customer=my_customer&maxResults=2&fields=users(id)' | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')" \
	"fake: fields=users(id) keeps only the ids (and drops nextPageToken)"
has "Invalid field selection orgunitpath" "$(api 'users?customer=my_customer&fields=users(orgunitpath)')" "fake: a mis-cased field is a 400"
has '"code": 401' "$(TOK=x api 'users?customer=my_customer')" "fake: an unknown token is a 401"

# idempotence
before=$(snapshot_db)
ids sync
eq 0 "$RC" "second sync exits 0"
has "summary gws: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" "second sync changes nothing"
eq "$before" "$(snapshot_db)" "second sync rewrote no row"

# bob is suspended in Google: deactivated, his grants go
"$PY" - "$W/data.json" <<-'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for u in d["users"]:
    if u["id"] == "202":
        u["suspended"] = True
json.dump(d, open(sys.argv[1], "w"))
PY
gctl "{\"data_file\": \"$W/data.json\"}"
ids sync
eq 0 "$RC" "sync after a suspension exits 0"
eq "f" "$(q "SELECT active FROM app_user WHERE external_id='202'")" "suspended bob is deactivated"
eq "" "$(roles 202)" "bob's roles are removed"

# domain: instead of customer:
gctl '{"reset_stats": true}'
gconfig_write "    domain: corp.example"
ids plan
eq 0 "$RC" "plan with domain: exits 0"
eq "domain=corp.example" "$(gstat 'customer["users"]')" "users listed by domain"
eq "domain=corp.example" "$(gstat 'customer["groups"]')" "groups listed by domain"
eq None "$(gstat 'projection["users"]')" "no projection=full without a custom schema path"

# groups: scope, by e-mail in another case: only CC Support's members are
# read, so alice's admin group is not seen
gctl '{"reset_stats": true}'
gconfig_write '    groups: ["CC-Support@corp.example"]'
ids plan
eq 0 "$RC" "plan with a groups: scope exits 0"
eq 3 "$(gstat 'by_endpoint["members"]')" "members of the one group in scope only (3 pages)"
has "~ user  alice@corp.example  company_admin true -> false" "$OUT" "alice's admin flag would go (CC Admins out of scope)"

gconfig_write '    groups: ["CC Support", "no-such-group@corp.example"]'
before=$(snapshot_db)
ids sync
eq 1 "$RC" "a groups: entry matching nothing fails the run"
has 'no-such-group@corp.example" (in the connector' "$ERR" "the error names the entry"
eq "$before" "$(snapshot_db)" "nothing written"

# sync --user (t_google_user has the rest): a person Google does not
# know exits 1 and writes nothing but the failed run's row
ids sync --user anyone@corp.example --connector gws
eq 1 "$RC" "sync --user of an unknown person exits 1"
has "user anyone@corp.example not found in connector gws" "$OUT$ERR" "the message names user and connector"
eq "$before" "$(snapshot_db)" "nothing written"

# issue 15: Google has no change feed for groups and members; status says so
ids status
has "mode full (no change feed for google)" "$OUT" "status: a google connector reads everything, and says why"
finish
