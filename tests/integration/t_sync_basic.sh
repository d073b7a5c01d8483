#!/usr/bin/env bash
# End to end: an OpenLDAP organisation with nested groups, a disabled user,
# a non-ASCII name and an out-of-scope user is synced into PostgreSQL; a
# second sync writes nothing (idempotence).
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif alice Alice Smith
	user_ldif bob Bob Jones
	user_ldif carol Carol White
	user_ldif jnovak Jan Novák jan.novak@example.org
	printf 'dn: uid=dave,ou=people,%s\nobjectClass: inetOrgPerson\nuid: dave\nsn: Black\ncn: Dave Black\nmail: dave@example.org\ndescription: disabled\n\n' "$OU"
	group_ldif Team-B "$(udn bob)" "$(udn jnovak)"
	group_ldif CC-Support "$(udn alice)" "$(gdn Team-B)" "$(udn dave)"
	group_ldif CC-Admins "$(udn alice)"
} | ldif_add

config_write '    disabled_filter: "(description=disabled)"'

ids plan
eq 0 "$RC" "plan exits 0"
has "+ user  alice" "$OUT" "plan creates alice"
has "+ role  jnovak  support  operator" "$OUT" "plan grants jnovak operator through the nested group"
hasnt "dave" "$OUT" "disabled dave is not provisioned"
hasnt "carol" "$OUT" "carol (no rule) is out of scope"
has "summary corp: 3 create" "$OUT" "plan summary"
eq 0 "$(q "SELECT count(*) FROM pg_namespace WHERE nspname = 'idsync'")" "plan wrote nothing, not even the schema"

ids sync
eq 0 "$RC" "sync exits 0"
eq "alice,bob,jnovak" "$(q "SELECT string_agg(username, ',' ORDER BY username) FROM app_user WHERE active")" "three active users"
eq "Novák" "$(q "SELECT last_name FROM app_user WHERE username='jnovak'")" "non-ASCII name stored as UTF-8"
eq "sso|ldap|corp" "$(q "SELECT auth_method||'|'||idp||'|'||source FROM app_user WHERE username='bob'")" "SSO user owned by the connector"
eq "t" "$(q "SELECT bool_and(external_id ~ '^[0-9a-f-]{36}\$') FROM app_user")" "external ids are entryUUIDs"
eq "true|false|false" "$(q "SELECT string_agg(company_admin::text, '|' ORDER BY username) FROM app_user")" "alice is company admin"
eq "acme" "$(q "SELECT c.slug FROM app_user u JOIN company c ON c.id = u.company_id GROUP BY 1")" "users in company acme"
eq "3" "$(q "SELECT count(*) FROM tenant_role r JOIN tenant t ON t.id=r.tenant_id WHERE t.slug='support' AND r.role='operator' AND r.source='corp'")" "three operators in tenant support"
eq "email,webchat" "$(q "SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant c JOIN app_user u ON u.id=c.user_id WHERE u.username='bob'")" "bob's channels"
eq "email=5,live=2" "$(q "SELECT string_agg(channel_group||'='||slots, ',' ORDER BY channel_group) FROM slot_limit s JOIN app_user u ON u.id=s.user_id WHERE u.username='bob'")" "bob's slots"
eq "3" "$(q "SELECT count(*) FROM operator_group_member m JOIN operator_group g ON g.id=m.group_id WHERE g.name='first-line'")" "operator group first-line has three members"
eq "ok|3|0" "$(q "SELECT status||'|'||created||'|'||deactivated FROM sync_run ORDER BY id DESC LIMIT 1")" "sync_run row"
eq "3" "$(q "SELECT count(*) FROM audit_log WHERE action='create'")" "one create audit row per user"
eq "3" "$(q "SELECT count(*) FROM audit_log WHERE action='grant'")" "one grant audit row per user"
eq "role:operator,channel:email,channel:webchat,group:first-line,slot:email,slot:live" \
	"$(q "SELECT string_agg((g->>'kind') || ':' || (g->>'name'), ',' ORDER BY n) FROM audit_log a
	      JOIN app_user u ON u.id = a.user_id, jsonb_array_elements(a.detail->'grants') WITH ORDINALITY e(g, n)
	      WHERE a.action = 'grant' AND u.username = 'bob'")" "bob's grant audit row lists his six grants"

before=$(snapshot_db)
ids sync
eq 0 "$RC" "second sync exits 0"
has "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed, 0 conflicts" "$OUT" "second sync changes nothing"
eq "$before" "$(snapshot_db)" "second sync rewrote no row (xmin unchanged)"
eq "ok" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "second run recorded ok"

ids status
eq 0 "$RC" "status exits 0 after ok runs"
has "corp" "$OUT" "status lists the connector"
finish
