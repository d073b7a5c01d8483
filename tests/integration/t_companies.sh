#!/usr/bin/env bash
# Companies are kept apart: two connectors in two companies with the same
# usernames and tenant slugs never meet; adoption by e-mail and conflicts
# happen inside the connector's own company only.
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif jnovak Jan Novak jnovak@acme.example
	user_ldif manual Manu Al manual@acme.example
	user_ldif taken Tak En taken-new@acme.example
	group_ldif CC-Support "$(udn jnovak)" "$(udn manual)" "$(udn taken)"
} | ldif_add
config_write '    adopt: by_email'
# a second connector on the same directory, in company beta, with no adoption
sed -i 's/^rules:$/  - name: beta\n    type: ldap\n    company: beta\n    uri: ["'"${IDS_TEST_LDAP_URI//\//\\/}"'"]\n    tls_ca_file: '"${IDS_TEST_LDAP_CA//\//\\/}"'\n    bind_dn: "'"$IDS_TEST_LDAP_BIND_DN"'"\n    bind_password_file: '"${W//\//\\/}"'\/ldap.pw\n    users: { base: "ou=people,'"$OU"'" }\n    groups: { base: "ou=groups,'"$OU"'" }\nrules:/' "$W/idsyncd.yaml"

ids migrate
eq 0 "$RC" "migrate"
# company acme has hand-made users: one to adopt by e-mail, one holding a username
q "INSERT INTO company (slug, name) VALUES ('acme', 'Acme'), ('beta', 'Beta')" >/dev/null
q "INSERT INTO tenant (company_id, slug, name) SELECT id, 'support', 'Support' FROM company" >/dev/null
q "INSERT INTO app_user (company_id, username, email, auth_method) SELECT id, 'manu', 'MANUAL@acme.example', 'activation_link' FROM company WHERE slug='acme'" >/dev/null
q "INSERT INTO app_user (company_id, username, email, auth_method) SELECT id, 'taken', 'other@acme.example', 'activation_link' FROM company WHERE slug='acme'" >/dev/null
q "INSERT INTO tenant_role (user_id, tenant_id, role, source)
   SELECT u.id, t.id, 'tenant_admin', NULL FROM app_user u JOIN tenant t ON t.company_id=u.company_id WHERE u.username='manu'" >/dev/null
manu_id=$(q "SELECT id FROM app_user WHERE username='manu'")

ids sync
eq 0 "$RC" "sync of both companies"
eq "corp|sso|manual" "$(q "SELECT source||'|'||auth_method||'|'||username FROM app_user WHERE id=$manu_id")" "manual user adopted by e-mail, username follows the directory"
eq "operator,tenant_admin" "$(q "SELECT string_agg(role, ',' ORDER BY role) FROM tenant_role WHERE user_id=$manu_id")" "adopted user keeps the manual grant"
eq 1 "$(q "SELECT count(*) FROM audit_log WHERE action='adopt'")" "adoption audited"
eq "activation_link|" "$(q "SELECT auth_method||'|'||coalesce(source,'') FROM app_user u JOIN company c ON c.id=u.company_id WHERE c.slug='acme' AND username='taken'")" "username held by a manual user: not touched"
eq 1 "$(q "SELECT conflicts FROM sync_run WHERE connector='corp' ORDER BY id DESC LIMIT 1")" "counted as a conflict in acme"
eq "jnovak,manual,taken" "$(q "SELECT string_agg(username, ',' ORDER BY username) FROM app_user u JOIN company c ON c.id=u.company_id WHERE c.slug='beta'")" "beta has its own three users (no adoption, no conflict across companies)"
eq 0 "$(q "SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id=r.user_id JOIN tenant t ON t.id=r.tenant_id WHERE u.company_id <> t.company_id")" "no grant crosses companies"
set +e
q "INSERT INTO tenant_role (user_id, tenant_id, role, source)
   SELECT u.id, t.id, 'operator', NULL FROM app_user u, tenant t, company c
   WHERE u.username='taken' AND u.source IS NULL AND t.company_id=c.id AND c.slug='beta'" >/dev/null 2>&1
rc=$?
set -e
eq 1 "$rc" "the schema refuses a grant in another company's tenant"
finish
