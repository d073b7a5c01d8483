#!/usr/bin/env bash
# sync --user and explain on a google connector (issue 17 part 2): the
# targeted read is users.get plus groups.list?userKey=, asked again for
# each group found (Google lists direct memberships only), so nested
# groups (three levels and a cycle here) count as in a full read.  The
# grants it gives one person equal those a full sync gives them; other
# users are untouched (one deleted meanwhile is NOT deactivated); an
# unknown user exits 1 with a failed run row; a rate limit is waited out;
# a source error deactivates no one; explain reads no listing.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/google_lib.sh"

# google.py's generated directory: user i in CC-Group-(i % 12), group 10
# nesting group 9; every group maps to a tenant
RULES='  - name: bygroup
    match: { member_of_regex: "^CC-Group-([0-9]+)$" }
    tenant: "t{1}"
    roles: [operator]'
grants() {
	q "SELECT coalesce(string_agg(t.slug || ':' || r.role, ',' ORDER BY t.slug, r.role), '')
	   FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id JOIN app_user u ON u.id = r.user_id
	   WHERE u.username = '$1'"
}
# afterwards: newhire joins CC-Group-009 (in 010, which group 011 now
# holds, and 011 is in 010 again: a cycle) and CC-Group-003; user 5 leaves
"$PY" - "$SRC/tests/fakes" "$W/dir2.json" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import google
d = google.generate(40, 12)
nh = {"id": "900000000000000000001", "primaryEmail": "new.hire@corp.example",
      "aliases": ["nh@corp.example"], "suspended": False, "archived": False,
      "name": {"givenName": "New", "familyName": "Hire", "fullName": "New Hire"},
      "orgUnitPath": "/Support/CZ", "emails": [{"address": "new.hire@corp.example", "primary": True}]}
d["users"] = [u for u in d["users"] if u["primaryEmail"] != "user00005@corp.example"] + [nh]
G = {g["name"]: g for g in d["groups"]}
def member(g, t="GROUP"):
    return {"id": g["id"], "email": g["email"], "type": t, "role": "MEMBER", "status": "ACTIVE"}
for n in ("CC-Group-009", "CC-Group-003"):
    G[n]["members"].append({"id": nh["id"], "email": nh["primaryEmail"], "type": "USER", "role": "MEMBER",
                            "status": "ACTIVE"})
G["CC-Group-011"]["members"].append(member(G["CC-Group-010"]))
G["CC-Group-010"]["members"].append(member(G["CC-Group-011"]))
json.dump(google.normalise(d), open(sys.argv[2], "w"))
PY

gfake_start --gen-users 40 --gen-groups 12 --page-groups 1
sa_json "$GURL/token"
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 gconfig_write "" "$RULES"
ids sync
eq 0 "$RC" "first full sync"
eq "t009:operator,t010:operator" "$(grants user00021@corp.example)" "user 21 (CC-Group-009) has t009 and, nested, t010"
u5=$(grants user00005@corp.example)
u21=$(grants user00021@corp.example)

gctl "{\"data_file\": \"$W/dir2.json\", \"reset_stats\": true}"
ids plan --user new.hire@corp.example --connector gws
eq 0 "$RC" "plan --user exits 0"
has "new.hire@corp.example" "$OUT" "the plan shows the new hire"
hasnt "user00005" "$OUT" "the plan does not touch the user who left"

gctl '{"reset_stats": true, "faults": [{"endpoint": "usergroups", "kind": "rate403", "retry_after": "1"}]}'
ids sync --user new.hire@corp.example --connector gws
eq 0 "$RC" "sync --user exits 0 (after a rate-limit 403)"
has "summary gws: 1 create, 0 update, 0 deactivate" "$OUT" "one create, no deactivation"
nh=$(grants new.hire@corp.example)
eq "t003:operator,t009:operator,t010:operator,t011:operator" "$nh" \
	"the new hire's grants: direct groups, and three levels up through the cycle"
eq "1 None None None" "$(gstat 'by_endpoint.get("user"), by_endpoint.get("users"), by_endpoint.get("groups"), by_endpoint.get("members")' | tr -d '(),')" \
	"one users.get, no listing of users, groups or members"
eq '["900000000000000000001", "900000000000000000001", "group003@corp.example", "group009@corp.example", "group010@corp.example", "group011@corp.example"]' \
	"$(gstat 'user_keys')" "groups.list?userKey= for the user (2 pages, one rate-limited), then each group once"
eq "true|" "$(q "SELECT active||'|'||coalesce(deactivation_reason,'') FROM app_user WHERE username='user00005@corp.example'")" \
	"user 5, gone from the directory, is not deactivated by sync --user"
eq "$u5" "$(grants user00005@corp.example)" "user 5's grants are untouched"
eq "$u21" "$(grants user00021@corp.example)" "user 21's grants are untouched"
eq "ok|user" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "recorded as read_kind user"

# by alias and by id: nothing left to do
ids sync --user nh@corp.example --connector gws
eq 1 "$RC" "an alias reads the user but is none of its mapped fields: not found"
ids sync --user 900000000000000000001 --connector gws
eq 0 "$RC" "sync --user by id exits 0"
has "summary gws: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" \
	"nothing left to do for the new hire"

# unknown: exit 1, the failed row only
before=$(snapshot_db)
runs=$(q "SELECT count(*) FROM sync_run")
ids sync --user nobody@corp.example --connector gws
eq 1 "$RC" "an unknown user exits 1"
has "user nobody@corp.example not found in connector gws" "$OUT$ERR" "the message names user and connector"
eq "$before" "$(snapshot_db)" "nothing but the run row was written"
eq "$((runs + 1))|failed|user" "$(q "SELECT count(*) FROM sync_run")|$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" \
	"one failed sync_run row, read_kind user"

# a source error fails the run and deactivates no one
gctl '{"faults": [{"endpoint": "usergroups", "kind": "403", "times": -1}]}'
ids sync --user new.hire@corp.example --connector gws
[ "$RC" -ne 0 ] && ok "a 403 on groups.list fails the run ($RC)" || bad "a 403 on groups.list passed"
eq "$before" "$(snapshot_db)" "nothing written: the new hire keeps every grant"
gctl '{"clear_faults": true, "reset_stats": true}'

# explain reads the person through the same targeted read
ids explain new.hire@corp.example --connector gws
eq 0 "$RC" "explain exits 0"
has "CC-Group-011" "$OUT" "explain names the outermost group"
eq "1 None None" "$(gstat 'by_endpoint.get("user"), by_endpoint.get("users"), by_endpoint.get("members")' | tr -d '(),')" \
	"explain read one user, no listing"

# the full run agrees, and deprovisions user 5
ids sync
eq 0 "$RC" "full sync"
eq "$nh" "$(grants new.hire@corp.example)" "a full sync gives the new hire the same grants"
eq "false|deleted_in_source" "$(q "SELECT active||'|'||deactivation_reason FROM app_user WHERE username='user00005@corp.example'")" \
	"the full run deactivates user 5"
finish
