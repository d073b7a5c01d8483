#!/usr/bin/env bash
# Every row of the deprovisioning table of semantics.md, end to end:
# disabled, out of scope, deleted, and each coming back (same row).
. "$(dirname "$0")/lib.sh"

ou_create
{
	for u in u1 u2 u3 u4 u5 u6; do user_ldif $u User $u; done
	group_ldif CC-Support "$(udn u1)" "$(udn u2)" "$(udn u3)" "$(udn u4)" "$(udn u5)" "$(udn u6)"
} | ldif_add
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 config_write '    disabled_filter: "(description=disabled)"'

ids sync
eq 0 "$RC" "initial sync"
eq 6 "$(q "SELECT count(*) FROM app_user WHERE active")" "six active users"
id_u1=$(q "SELECT id FROM app_user WHERE username='u1'")
id_u2=$(q "SELECT id FROM app_user WHERE username='u2'")
id_u3=$(q "SELECT id FROM app_user WHERE username='u3'")
# a grant made by hand on a managed user must survive everything
q "INSERT INTO tenant_role (user_id, tenant_id, role, source)
   SELECT $id_u2, id, 'view_operators', NULL FROM tenant WHERE slug='support'" >/dev/null

ldif <<LDIF
dn: $(udn u1)
changetype: modify
add: description
description: disabled

dn: $(gdn CC-Support)
changetype: modify
delete: member
member: $(udn u2)

dn: $(udn u3)
changetype: delete
LDIF

ids plan
has "- user  u1  deactivate (disabled_in_source)" "$OUT" "plan: u1 disabled"
has "- user  u2  deactivate (out_of_scope)" "$OUT" "plan: u2 out of scope"
has "- user  u3  deactivate (deleted_in_source)" "$OUT" "plan: u3 deleted"
ids sync
eq 0 "$RC" "deprovisioning sync"
eq "u1|false|disabled_in_source" "$(q "SELECT username||'|'||active||'|'||deactivation_reason FROM app_user WHERE id=$id_u1")" "u1 deactivated: disabled"
eq "u2|false|out_of_scope" "$(q "SELECT username||'|'||active||'|'||deactivation_reason FROM app_user WHERE id=$id_u2")" "u2 deactivated: out of scope"
eq "u3|false|deleted_in_source" "$(q "SELECT username||'|'||active||'|'||deactivation_reason FROM app_user WHERE id=$id_u3")" "u3 deactivated: deleted"
eq "t" "$(q "SELECT bool_and(deactivated_at IS NOT NULL) FROM app_user WHERE NOT active")" "deactivated_at set"
eq 0 "$(q "SELECT count(*) FROM channel_grant WHERE user_id IN ($id_u1,$id_u2,$id_u3)")" "managed grants removed"
eq "view_operators" "$(q "SELECT string_agg(role, ',') FROM tenant_role WHERE user_id=$id_u2")" "manual grant kept on a deactivated user"
eq 6 "$(q "SELECT count(*) FROM app_user")" "no user row deleted"
eq 3 "$(q "SELECT count(*) FROM audit_log WHERE action='deactivate'")" "three deactivate audit rows"

# everyone comes back: re-enabled, back in the group, re-created with the same entryUUID? (a
# re-created entry has a new entryUUID, so u3 comes back as a new directory person: conflict on
# the username held by the old row, which stays deactivated)
ldif <<LDIF
dn: $(udn u1)
changetype: modify
delete: description

dn: $(gdn CC-Support)
changetype: modify
add: member
member: $(udn u2)
LDIF
ids sync
eq 0 "$RC" "reactivation sync"
eq "true|" "$(q "SELECT active||'|'||coalesce(deactivation_reason,'') FROM app_user WHERE id=$id_u1")" "u1 reactivated, same row"
eq "true|" "$(q "SELECT active||'|'||coalesce(deactivation_reason,'') FROM app_user WHERE id=$id_u2")" "u2 reactivated, same row"
eq "t" "$(q "SELECT deactivated_at IS NULL FROM app_user WHERE id=$id_u1")" "deactivated_at cleared"
eq "email,webchat" "$(q "SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant WHERE user_id=$id_u1")" "u1 grants restored from rules"
eq "operator,view_operators" "$(q "SELECT string_agg(role, ',' ORDER BY role) FROM tenant_role WHERE user_id=$id_u2")" "u2: managed role back, manual role untouched"
eq 2 "$(q "SELECT count(*) FROM audit_log WHERE action='reactivate'")" "two reactivate audit rows"

user_ldif u3 User u3 | ldif_add
ids sync
eq 0 "$RC" "a conflict does not fail the run"
has "1 conflicts" "$OUT" "re-created u3 (new entryUUID) is a conflict with the old row"
eq 1 "$(q "SELECT count(*) FROM app_user WHERE username='u3'")" "no second u3 row"
eq 1 "$(q "SELECT count(*) FROM audit_log WHERE action='conflict'")" "conflict audited"
finish
