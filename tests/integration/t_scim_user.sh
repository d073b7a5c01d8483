#!/usr/bin/env bash
# sync --user and explain on a scim connector (issue 17 part 2): the
# targeted read is the stored state of that one user (by SCIM id, userName
# or an e-mail) and the groups holding them, nested ones and a cycle
# included.  The grants it gives one person equal those a full sync gives
# them; other users are untouched (one DELETEd meanwhile is NOT
# deactivated); an unknown user exits 1 with a failed run row.  The pushed
# state is written straight into PostgreSQL, as the listener stores it.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"

printf 'tok-user-1' >"$W/scim.token"
chmod 600 "$W/scim.token"
cat >"$W/idsyncd.yaml" <<YAML
database:
  conninfo: "$IDS_TEST_PG_CONNINFO dbname=$DB"
log:
  level: debug
  target: stderr
safety:
  max_deactivation_percent: 100
  max_grant_removals_percent: 100
tenants:
  auto_create: true
scim:
  listen: "127.0.0.1:1" # never started: sync reads the stored state
connectors:
  - name: okta
    type: scim
    company: acme
    token_file: $W/scim.token
rules:
  - name: support
    match: { member_of: ["CC-Support"] }
    tenant: support
    roles: [operator]
  - name: loop
    match: { member_of: ["Loop-A"] }
    tenant: loop
    roles: [operator]
YAML
grants() {
	q "SELECT coalesce(string_agg(t.slug || ':' || r.role, ',' ORDER BY t.slug, r.role), '')
	   FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id JOIN app_user u ON u.id = r.user_id
	   WHERE u.username = '$1'"
}
user() { # ID USERNAME EMAIL
	q "INSERT INTO scim_resource (connector, id, kind, name, resource)
	   VALUES ('okta', '$1', 'User', '$2', jsonb_build_object('userName', '$2', 'emails',
	           jsonb_build_array(jsonb_build_object('value', '$3', 'type', 'work'))))" >/dev/null
}
group() { q "INSERT INTO scim_resource (connector, id, kind, name, resource) VALUES ('okta', '$1', 'Group', '$2', '{}')" >/dev/null; }
member() { q "INSERT INTO scim_member (connector, group_id, member_id) VALUES ('okta', '$1', '$2')" >/dev/null; }
A=00000000-0000-4000-8000-00000000000a
B=00000000-0000-4000-8000-00000000000b
N=00000000-0000-4000-8000-00000000000e
SUP=00000000-0000-4000-8000-0000000000a1
CZ=00000000-0000-4000-8000-0000000000a2
LA=00000000-0000-4000-8000-0000000000b1
LB=00000000-0000-4000-8000-0000000000b2

ids sync # the schema
eq 0 "$RC" "a first sync creates the schema"
user $A alice@acme.example alice@mail.acme.example
user $B bob@acme.example bob@mail.acme.example
group $SUP CC-Support
group $CZ CC-Support-CZ
group $LA Loop-A
group $LB Loop-B
member $SUP $CZ
member $CZ $A
member $SUP $B
member $LA $LB
member $LB $LA
ids sync
eq 0 "$RC" "full sync"
eq "support:operator" "$(grants alice@acme.example)" "alice through the nested group"
eq "support:operator" "$(grants bob@acme.example)" "bob directly"

# the new hire joins CC-Support-CZ and Loop-B (in Loop-A, which is in
# Loop-B: a cycle); bob is DELETEd
user $N newhire@acme.example new.hire@mail.acme.example
member $CZ $N
member $LB $N
q "UPDATE scim_resource SET deleted_at = now() WHERE id = '$B'" >/dev/null
ids plan --user newhire@acme.example --connector okta
eq 0 "$RC" "plan --user exits 0"
has "newhire@acme.example" "$OUT" "the plan shows the new hire"
hasnt "bob" "$OUT" "the plan does not touch bob"
ids sync --user newhire@acme.example --connector okta
eq 0 "$RC" "sync --user by userName exits 0"
has "summary okta: 1 create, 0 update, 0 deactivate" "$OUT" "one create, no deactivation"
has "read 1 users, 4 groups" "$ERR" "the read is the one user and the four groups holding them"
nh=$(grants newhire@acme.example)
eq "loop:operator,support:operator" "$nh" "the new hire's grants, through the nesting and the cycle"
eq "true|" "$(q "SELECT active||'|'||coalesce(deactivation_reason,'') FROM app_user WHERE username='bob@acme.example'")" \
	"bob, DELETEd, is not deactivated by sync --user"
eq "support:operator" "$(grants bob@acme.example)" "bob's grants are untouched"
eq "support:operator" "$(grants alice@acme.example)" "alice's grants are untouched"
eq "ok|user" "$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" "recorded as read_kind user"

ids sync --user NEW.HIRE@mail.acme.example --connector okta
eq 0 "$RC" "sync --user by e-mail (another case) exits 0"
has "summary okta: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed" "$OUT" \
	"nothing left to do for the new hire"
ids sync --user $N --connector okta
eq 0 "$RC" "sync --user by SCIM id exits 0"
has "read 1 users" "$ERR" "by id: one user read"
ids sync --user "x' OR '1'='1" --connector okta
eq 1 "$RC" "a quote in USER is a value, not SQL"
has "read 0 users, 0 groups" "$ERR" "nothing matched it"

# unknown, or DELETEd: exit 1, the failed row only
before=$(snapshot_db)
runs=$(q "SELECT count(*) FROM sync_run")
ids sync --user bob@acme.example --connector okta
eq 1 "$RC" "a DELETEd user is not found"
has "user bob@acme.example not found in connector okta" "$OUT$ERR" "the message names user and connector"
eq "$before" "$(snapshot_db)" "nothing but the run row was written"
eq "$((runs + 1))|failed|user" "$(q "SELECT count(*) FROM sync_run")|$(q "SELECT status||'|'||read_kind FROM sync_run ORDER BY id DESC LIMIT 1")" \
	"one failed sync_run row, read_kind user"

ids explain newhire@acme.example --connector okta
eq 0 "$RC" "explain exits 0"
has "CC-Support-CZ" "$OUT" "explain names the nested group"

# the full run agrees, and deprovisions bob
ids sync
eq 0 "$RC" "full sync"
eq "$nh" "$(grants newhire@acme.example)" "a full sync gives the new hire the same grants"
eq "false|deleted_in_source" "$(q "SELECT active||'|'||deactivation_reason FROM app_user WHERE username='bob@acme.example'")" \
	"the full run deactivates bob"
finish
