#!/usr/bin/env bash
# Bad directory data (reliability.md case 18, semantics.md safety rule 6):
# values with SQL and LDAP-filter metacharacters, quotes, emoji, a NUL byte,
# invalid UTF-8, 100 KB values, DNs with escaped commas and multi-valued
# RDNs spelt differently in a group, duplicate e-mails and a missing
# username.  Each user is stored exactly as the directory has it, or that
# one user is skipped with a warning that names it and says why — and the
# rest of the run goes on.  A user that turns bad later keeps its state.
. "$(dirname "$0")/lib.sh"

# b64 PRINTF_FORMAT: the bytes, base64 for an LDIF "attr:: " line (NUL,
# invalid UTF-8 and newlines cannot be written any other way).
b64() { printf "$1" | base64 -w0; }
# person RDN UID_LINE REST...: an inetOrgPerson with extra LDIF lines.
person() {
	local rdn=$1 uidline=$2
	shift 2
	printf 'dn: %s,ou=people,%s\nobjectClass: inetOrgPerson\n%s\n' "$rdn" "$OU" "$uidline"
	for l in "$@"; do printf '%s\n' "$l"; done
	printf '\n'
}
big=$(head -c 100000 /dev/zero | tr '\0' x)

ou_create
{
	# quotes and SQL in every text field
	person "uid=obrien" "uid: o'brien" "cn: O'Brien" "givenName: O'Brien" \
		"sn: '; DROP TABLE app_user; --" "mail: o'brien@example.org"
	# LDAP filter metacharacters in the username (the RDN is cn)
	person "cn=filt" "uid: *)(uid=*" "sn: Filter" "mail: filt@example.org" "givenName: a\\b(c)*"
	# emoji and non-Latin scripts; display_name comes from `audio` (an
	# octet string, the one place slapd lets invalid UTF-8 through)
	person "uid=emoji" "uid: emoji" "cn: emoji" "givenName: Zoë 😀" "sn: Ελληνικά" \
		"mail: emoji@example.org" "audio:: $(b64 'Žluťoučký kůň 😀')"
	# the bytes COPY gives a meaning (tab, newline, CR, backslash, \N, \.)
	person "uid=copy" "uid: copy" "cn: copy" "givenName:: $(b64 'a\tb\\N\nc\r\\.')" "sn:: $(b64 '\\.')" \
		"mail: copy@example.org"
	# a NUL byte in the e-mail: skipped
	person "uid=nulmail" "uid: nulmail" "cn: nulmail" "sn: x" "mail:: $(b64 'nul\0mail@example.org')"
	# invalid UTF-8 in a mapped field: skipped
	person "uid=bad8" "uid: bad8" "cn: bad8" "sn: x" "mail: bad8@example.org" "audio:: $(b64 'x\xff\xfey')"
	# 100 KB in a mapped field: skipped; 100 KB in a rule attribute: read and matched
	person "uid=big" "uid: big" "cn: big" "sn: $big" "mail: big@example.org"
	person "uid=bigdesc" "uid: bigdesc" "cn: bigdesc" "sn: x" "mail: bigdesc@example.org" "description: $big"
	# a multi-valued RDN with an escaped comma
	person 'cn=Novák\, Jan+uid=jnovak' "uid: jnovak" "sn: Novák" "mail: jnovak@example.org"
	# two people, one e-mail (case differs): one of them is a conflict
	person "uid=dupa" "uid: dupa" "cn: dupa" "sn: x" "mail: same@example.org"
	person "uid=dupb" "uid: dupb" "cn: dupb" "sn: x" "mail: SAME@example.org"
	# no username at all
	person "cn=nouid" "cn: nouid" "sn: x" "mail: nouid@example.org"
	# Team, B holds jnovak under another spelling of the DN, and is
	# itself a member of CC-Support under yet another spelling
	printf 'dn: cn=Team\\, B,ou=groups,%s\nobjectClass: groupOfNames\ncn: Team, B\n' "$OU"
	printf 'member: UID=jnovak + CN=Novák\\2C Jan,ou=people,%s\n\n' "$OU"
	printf 'dn: cn=CC-Support,ou=groups,%s\nobjectClass: groupOfNames\ncn: CC-Support\n' "$OU"
	for rdn in uid=copy uid=obrien cn=filt uid=emoji uid=nulmail uid=bad8 uid=big uid=bigdesc uid=dupa uid=dupb cn=nouid; do
		printf 'member: %s,ou=people,%s\n' "$rdn" "$OU"
	done
	printf 'member: CN=Team\\2c B, OU=groups, %s\n\n' "$OU"
} | ldif_add

rules='  - name: support-operators
    match: { member_of: ["CC-Support"] }
    tenant: support
    roles: [operator]
    channels: [webchat, email]
  - name: bulk
    match: { attribute: { description: "x$" } }
    tenant: bulk
    roles: [operator]'
config_write '    attributes: { display_name: audio }' "$rules"

ids plan
eq 0 "$RC" "plan exits 0"
# a value in the text plan is one line, whatever it holds
eq 0 "$(printf '%s\n' "$OUT" | grep -c '^DROP\|^--')" "plan lines are not split by values"

ids sync
eq 0 "$RC" "sync exits 0 despite the bad entries"
eq "*)(uid=*,bigdesc,copy,emoji,jnovak,o'brien" \
	"$(q "SELECT string_agg(username, ',' ORDER BY username) FROM app_user WHERE active AND username NOT LIKE 'dup%'")" \
	"the good users are synced"
eq 1 "$(q "SELECT count(*) FROM app_user WHERE username IN ('dupa','dupb')")" "one of two users sharing an e-mail"

# stored verbatim
eq "'; DROP TABLE app_user; --" "$(q "SELECT last_name FROM app_user WHERE username = 'o''brien'")" "SQL in a value stored as text"
eq "O'Brien|o'brien@example.org" "$(q "SELECT first_name||'|'||email FROM app_user WHERE username = 'o''brien'")" "quotes stored"
eq 'a\b(c)*' "$(q "SELECT first_name FROM app_user WHERE email = 'filt@example.org'")" "filter metacharacters stored"
eq "Zoë 😀|Ελληνικά|Žluťoučký kůň 😀" "$(q "SELECT first_name||'|'||last_name||'|'||display_name FROM app_user WHERE username='emoji'")" \
	"emoji and Greek stored as UTF-8"
eq 7 "$(q "SELECT count(*) FROM app_user")" "no row for a skipped user"
eq "$(printf 'a\tb\\N\nc\r\\.|\\.')" "$(q "SELECT first_name||'|'||last_name FROM app_user WHERE username='copy'")" \
	"tab, newline, CR, backslash, \\N and \\. stored as they are"

# grants through both DN spellings and the nested group with a comma
eq "support:operator" "$(q "SELECT string_agg(t.slug||':'||r.role, ',') FROM tenant_role r JOIN tenant t ON t.id=r.tenant_id
	JOIN app_user u ON u.id=r.user_id WHERE u.username='jnovak'")" "multi-valued RDN member resolved through a nested group"
eq "bulk:operator,support:operator" "$(q "SELECT string_agg(t.slug||':'||r.role, ',' ORDER BY t.slug) FROM tenant_role r
	JOIN tenant t ON t.id=r.tenant_id JOIN app_user u ON u.id=r.user_id WHERE u.username='bigdesc'")" \
	"a rule regex read a 100 KB attribute"
eq "support:operator" "$(q "SELECT string_agg(t.slug||':'||r.role, ',') FROM tenant_role r JOIN tenant t ON t.id=r.tenant_id
	JOIN app_user u ON u.id=r.user_id WHERE u.email='filt@example.org'")" "the metacharacter user got its grant"

# every skip and the conflict: counted, each named in a warning with why
eq "ok|4|1" "$(q "SELECT status||'|'||skipped_invalid||'|'||conflicts FROM sync_run ORDER BY id DESC LIMIT 1")" \
	"sync_run counts 4 skipped, 1 conflict"
has "user nulmail" "$ERR" "warning names nulmail"
has "email: contains a NUL byte" "$ERR" "... and why"
has "user bad8" "$ERR" "warning names bad8"
has "display_name: not valid UTF-8" "$ERR" "... and why"
has "user big " "$ERR" "warning names big"
has "last_name: longer than 1024 bytes" "$ERR" "... and why"
has "missing username" "$ERR" "the entry without a username is reported"
nouid_id=$(ldapsearch -LLL -ZZ -x -H "$IDS_TEST_LDAP_URI" -D "$IDS_TEST_LDAP_ADMIN_DN" -y "$IDS_TEST_LDAP_ADMIN_PW_FILE" \
	-b "cn=nouid,ou=people,$OU" -s base entryUUID | sed -n 's/^entryUUID: //p')
has "$nouid_id" "$ERR" "... by its entryUUID"
has "conflict" "$ERR" "the e-mail conflict is reported"
has "same@example.org" "${ERR,,}" "... naming the e-mail"

# idempotent: the bad entries stay skipped, nothing is rewritten
before=$(snapshot_db)
ids sync
eq 0 "$RC" "second sync exits 0"
has "0 create, 0 update, 0 deactivate" "$OUT" "second sync changes nothing"
eq "$before" "$(snapshot_db)" "second sync rewrote no row"

# semantics.md safety rule 6: a synced user whose entry turns bad keeps
# its state (no deactivation, no grant removal) until the data is fixed
ldif <<LDIF
dn: uid=emoji,ou=people,$OU
changetype: modify
replace: mail
mail:: $(b64 'emoji\0@example.org')
LDIF
before=$(snapshot_db)
ids sync
eq 0 "$RC" "sync with a user turned invalid exits 0"
eq "$before" "$(snapshot_db)" "the invalid user keeps its row and grants"
has "user emoji" "$ERR" "... and is reported"
finish
