#!/usr/bin/env bash
# Active Directory's change feed (DirSync) through the idsyncd binary
# against the Samba AD DC: `status` names the feed (mode auto (dirsync));
# the daemon (`idsyncd run`) reads everything first, then, after a user is
# added to the group in AD, reads only the change (sync_run.read_kind
# incremental); `status` then shows the cursor with the domain controller
# that issued it; `plan --full` has nothing to do.  The many kinds of change
# and the cursor's fallbacks: ctest_ad_dirsync (the daemon's runs in
# process).  Bound as Administrator: Samba sends deletions through DirSync
# only to an account that can read CN=Deleted Objects (docs/changes.md).
#
# The test's own OU=<test>-<pid>, removed at the end.
. "$(dirname "$0")/ad_lib.sh"

TOU="OU=$T-$$,$B"
P=ds$$ # sAMAccountNames are unique in the whole domain
DAEMON=
ad_cleanup() {
	[ -z "$DAEMON" ] || kill "$DAEMON" 2>/dev/null || true
	ldapdelete -r -x -H "$IDS_TEST_AD_LDAPS_URI" -D "$IDS_TEST_AD_ADMIN_UPN" -y "$IDS_TEST_AD_ADMIN_PW_FILE" \
		"$TOU" >/dev/null 2>&1 || true
	cleanup
}
trap ad_cleanup EXIT

user() { printf 'dn: CN=%s,%s\nobjectClass: user\nsAMAccountName: %s%s\nuserAccountControl: 544\n\n' "$1" "$TOU" "$P" "$1"; }
{
	printf 'dn: %s\nobjectClass: organizationalUnit\n\n' "$TOU"
	user u1
	user u2
	printf 'dn: CN=CC-DS,%s\nobjectClass: group\nsAMAccountName: %s-cc\nmember: CN=u1,%s\n\n' "$TOU" "$P" "$TOU"
} | ad_ldif -a

RULES=$(
	cat <<-'R'
	  - name: ds
	    match: { member_of: ["CC-DS"] }
	    tenant: ds
	    roles: [operator]
	R
)
AD_USERS_BASE=$TOU AD_GROUPS_BASE=$TOU AD_BIND=$IDS_TEST_AD_ADMIN_UPN ad_config_write '' "$RULES"
cp "$IDS_TEST_AD_ADMIN_PW_FILE" "$W/ad.pw"
sed -i 's/^log:$/sync: { interval: 2s, jitter: 0s }\nlog:/' "$W/idsyncd.yaml"

ids migrate
ids status
has "changes corp                 mode auto (dirsync), no cursor" "$OUT" "status names the feed before any run"

"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/d.out" 2>"$W/d.err" &
DAEMON=$!
# wait_run AFTER: the id of the first ok run above AFTER (0 after 60 s)
wait_run() {
	for _ in $(seq 1 600); do
		id=$(q "SELECT coalesce(max(id), 0) FROM sync_run WHERE status = 'ok' AND id > $1" 2>/dev/null || echo 0)
		[ "${id:-0}" -gt 0 ] && { echo "$id"; return 0; }
		sleep 0.1
	done
	echo 0
}
id1=$(wait_run 0)
[ "$id1" -gt 0 ] && ok "the daemon's first run is ok" || bad "the daemon never ran ok"
eq "full" "$(q "SELECT read_kind FROM sync_run WHERE id = $id1")" "the first run reads everything"
eq "${P}u1" "$(q "SELECT string_agg(username, ',') FROM app_user WHERE active")" "u1 granted"

printf 'dn: CN=CC-DS,%s\nchangetype: modify\nadd: member\nmember: CN=u2,%s\n\n' "$TOU" "$TOU" | ad_ldif
id2=$(wait_run "$(q "SELECT max(id) FROM sync_run")")
[ "$id2" -gt 0 ] && ok "the next run is ok" || bad "no run after the change"
eq "incremental" "$(q "SELECT read_kind FROM sync_run WHERE id = $id2")" "the next run reads the change only"
eq "${P}u1,${P}u2" "$(q "SELECT string_agg(username, ',' ORDER BY username) FROM app_user WHERE active")" \
	"u2 granted through the feed"
kill "$DAEMON"
wait "$DAEMON" || true
DAEMON=

ids status
has "mode auto (dirsync), cursor " "$OUT" "status shows the cursor"
has " old from dc1.idsync.test, last full read " "$OUT" "and the domain controller that issued it"
has ", 0 feed resets" "$OUT" "no reset"
ids plan --full
eq 0 "$RC" "plan --full exits 0"
has "summary corp: 0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed, 0 conflicts" "$OUT" \
	"plan --full: nothing to do"
finish
