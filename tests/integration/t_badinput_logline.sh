#!/usr/bin/env bash
# Directory values in log lines (reliability.md case 18): a username that
# holds a newline and a fake log line, on a user that is skipped (so that
# its warning names it), must not forge a second line on stderr — an
# operator, or a log shipper parsing "TIMESTAMP LEVEL CONNECTOR: ...",
# would otherwise read an error the directory's owner wrote.  Nor may a
# terminal escape sequence in a value reach stderr raw (CWE-150: an
# operator reading the log in a terminal would have it interpreted).
. "$(dirname "$0")/lib.sh"

b64() { printf "$1" | base64 -w0; }
ou_create
ldif_add <<LDIF
dn: uid=evil,ou=people,$OU
objectClass: inetOrgPerson
uid:: $(b64 'evil\n2001-01-01T00:00:00Z error corp: forged by the directory')
cn: evil
sn: x
mail:: $(b64 'evil\0@example.org')

dn: uid=esc,ou=people,$OU
objectClass: inetOrgPerson
uid:: $(b64 'esc\033]0;pwned\007\033[2J')
cn: esc
sn: x
mail:: $(b64 'esc\0@example.org')

dn: uid=ok,ou=people,$OU
objectClass: inetOrgPerson
uid: ok
cn: ok
sn: x

dn: cn=CC-Support,ou=groups,$OU
objectClass: groupOfNames
cn: CC-Support
member: uid=evil,ou=people,$OU
member: uid=esc,ou=people,$OU
member: uid=ok,ou=people,$OU
LDIF
config_write

ids sync
eq 0 "$RC" "sync exits 0"
eq 1 "$(q "SELECT count(*) FROM app_user")" "the good user is synced"
has "skipped, invalid data: email: contains a NUL byte" "$ERR" "the skip is reported"
eq 0 "$(printf '%s\n' "$ERR" | grep -c '^2001-01-01T00:00:00Z')" "no log line forged by a directory value"
eq 0 "$(printf '%s\n' "$ERR" | LC_ALL=C grep -c '[[:cntrl:]]')" "no control byte (escape sequences) on stderr"
# every stderr line is a log line of ours
eq 0 "$(printf '%s\n' "$ERR" | grep -vc '^20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:]*Z \(debug\|info\|warning\|error\) ')" \
	"every stderr line starts with a timestamp and a level"
finish
