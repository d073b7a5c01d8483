#!/usr/bin/env bash
# A tenant larger than three pages: 2500 users in pages of 600 (the client
# always asks $top=999, the fake cuts the pages smaller), 30 groups of
# which two nest another (transitiveMembers), 50 disabled users; then the
# 10,000-user, 200-group tenant of the closing note, with the exact number
# of requests it takes and the time, printed.
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../fakes/graph.sh"

# graph.py --gen-*: user i is in CC-Group-(i % groups); with nesting, group
# 10 contains group 9 and group 20 contains group 19; user i is disabled
# when i % 50 == 49
RULES='  - name: t10
    match: { member_of: ["CC-Group-010"] }
    tenant: t10
    roles: [operator]
  - name: t0
    match: { member_of: ["GROUP000@contoso.example"] }
    tenant: t0
    roles: [operator]'

graph_start --secret-file "$W/secret.raw" --gen-users 2500 --gen-groups 30 --gen-nesting --page-size 600
LOG_LEVEL=debug MAX_DEACT_PCT=100 entra_config "$(entra_secret)" "" "$RULES"
ids sync
eq 0 "$RC" "sync of 2500 users exits 0"
# 2500 users: 5 pages of 600; 30 groups: 1 page; 30 groups' members: 1 page each
eq "5 1 30 1" "$(graph_stat 'd["by_endpoint"]["users"], d["by_endpoint"]["groups"], d["by_endpoint"]["members"], d["by_endpoint"]["token"]' | tr -d '(),')" \
	"requests: 5 user pages, 1 group page, 30 member pages, 1 token"
has "read 2500 users, 30 groups in 36 pages" "$ERR" "the debug log counts 36 pages"
# t10: i % 30 in {9, 10} (through the nesting) = 84 + 83 users, 17 of them
# disabled (i = 99 mod 150); t0: i % 30 == 0, 84 users, none disabled
eq "150" "$(q "SELECT count(*) FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id WHERE t.slug = 't10'")" \
	"t10: the members of group 10 and of group 9 nested in it, without the disabled ones"
eq "84" "$(q "SELECT count(*) FROM tenant_role r JOIN tenant t ON t.id = r.tenant_id WHERE t.slug = 't0'")" \
	"t0: the members of group 0 (matched by its mail)"
eq "234" "$(q "SELECT count(*) FROM app_user WHERE active")" "234 users in scope of a rule"
eq "0" "$(q "SELECT count(*) FROM app_user WHERE username !~ '^user[0-9]{5}@contoso[.]example\$'")" \
	"usernames are the userPrincipalNames"
eq "f" "$(q "SELECT bool_or(external_id = '' OR external_id IS NULL) FROM app_user")" "every user has its Graph id"

before=$(snapshot_db)
ids sync
eq 0 "$RC" "second sync exits 0"
eq "$before" "$(snapshot_db)" "second sync rewrote no row"

# ---- 10,000 users and 200 groups, $top=999: 11 user pages, 1 group page,
# 200 member pages and 1 token = 213 requests
graph_start --secret-file "$W/secret.raw" --gen-users 10000 --gen-groups 200 --gen-nesting
RULES='  - name: all
    match: { member_of_regex: "^CC-Group-([0-9]+)$" }
    tenant: "t{1}"
    roles: [operator]'
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" "" "$RULES"
graph_ctl '{"reset_stats": true}'
t0=$(date +%s.%N)
ids sync
el=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
eq 0 "$RC" "sync of 10,000 users exits 0"
eq "213" "$(graph_stat 'd["requests"]')" "10,000 users, 200 groups: 213 requests"
eq "11 1 200 1" "$(graph_stat 'd["by_endpoint"]["users"], d["by_endpoint"]["groups"], d["by_endpoint"]["members"], d["by_endpoint"]["token"]' | tr -d '(),')" \
	"11 user pages of 999, 1 group page, 200 member pages, 1 token"
# 9800 enabled users (i % 50 == 49 are disabled), 234 of them synced above
has "summary cloud: 9566 create" "$OUT" "9800 enabled users, 9566 of them new"
echo "measure: 10,000 users, 200 groups: $(graph_stat 'd["requests"]') HTTP requests, sync in ${el}s"
finish
