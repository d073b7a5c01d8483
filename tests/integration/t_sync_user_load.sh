#!/usr/bin/env bash
# sync --user loads only the rows its person's plan can touch
# (ids_store_load_some): the rows with their external id, username or
# e-mail, with their grants — and the plan is still the one the whole
# state gives: an unmanaged row with the new hire's e-mail is a conflict, and
# the grant-removal threshold's base is the connector's every managed
# grant, not the person's alone (else losing all of them would be held).
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif alice Alice Smith
	user_ldif bob Bob Jones
	user_ldif carol Carol King
	group_ldif CC-Support "$(udn alice)" "$(udn bob)" "$(udn carol)"
	group_ldif CC-Admins "$(udn alice)"
} | ldif_add
MAX_REMOVALS_PCT=40 LOG_LEVEL=debug config_write
ids sync
eq 0 "$RC" "first full sync"

# an account made by hand with the coming hire's e-mail (in another case)
q "INSERT INTO app_user (company_id, username, email, auth_method) SELECT id, 'nhire', 'New.Hire@example.org', 'activation_link' FROM company WHERE slug='acme'" >/dev/null
user_ldif newhire New Hire new.hire@example.org | ldif_add
ldif <<LDIF
dn: $(gdn CC-Support)
changetype: modify
add: member
member: $(udn newhire)
LDIF
ids sync --user newhire --connector corp
eq 0 "$RC" "sync --user newhire"
has "loaded 1 users, 0 grants" "$ERR" "only the row with the new hire's e-mail is loaded, not the company"
has "1 conflicts" "$OUT" "the hand-made row with that e-mail (loaded by it) is a conflict"
eq "|activation_link" "$(q "SELECT coalesce(source,'')||'|'||auth_method FROM app_user WHERE lower(email)='new.hire@example.org'")" "the hand-made row is left alone"
ids plan
has "! user  newhire  conflict: email new.hire@example.org is taken" "$OUT" "the full plan sees the same conflict"

# alice leaves CC-Support (CC-Admins keeps her in scope): all her grants
# go, a third of the connector's (under the 40% threshold) but 100% of a
# base of her own rows
ldif <<LDIF
dn: $(gdn CC-Support)
changetype: modify
delete: member
member: $(udn alice)
LDIF
ids sync --user alice --connector corp
eq 0 "$RC" "sync --user alice is not held"
has "loaded 1 users" "$ERR" "alice's run loads her row only"
has "0 grants added" "$OUT" "nothing added"
hasnt " 0 removed" "$OUT" "her grants are removed"
eq "0" "$(q "SELECT count(*) FROM channel_grant c JOIN app_user u ON u.id=c.user_id WHERE u.username='alice'")" "alice has no channel left"
eq "ok" "$(q "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")" "the run is ok, not held"
ids plan
hasnt "alice" "$OUT" "the full plan has nothing more for alice"
finish
