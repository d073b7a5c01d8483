#!/usr/bin/env bash
# bench/syncprov_replay.sh — what one syncrepl refresh costs slapd as a
# function of the modifications its session log replays (issue 14: the
# feed's churn run at tier L, docs/changes.md "Tiers M and L on a quiet
# machine").
#
#   bench/syncprov_replay.sh [N ...]      (default: 5000 10000 20000 40000)
#
# A throwaway slapd (tests/harness/slapd.sh, its session log raised to
# 100,000), 40,000 people under ou=b and one under ou=a.  For each N:
# N modifications under ou=b, then two refreshOnly searches from the
# cookie taken before them — one under ou=a, which sends nothing, one
# under ou=b, which sends the N — each timed, with slapd's CPU from
# /proc/PID/stat.  If a refresh's cost depends on N and not on what the
# search sends, every sync search of a read pays for every change in
# the log.  Writes bench/results/syncprov_replay.md.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$SRC/bench/results/syncprov_replay.md
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(5000 10000 20000 40000)
W=$(mktemp -d /tmp/idsyncd-syncprov.XXXXXX)
H=$SRC/tests/harness/slapd.sh
cleanup() { "$H" stop "$W" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
"$H" start "$W" >/dev/null
"$H" stop "$W" >/dev/null
sed -i 's/^\(\s*\)syncprov-sessionlog\s\+[0-9]\+$/\1syncprov-sessionlog 100000/' "$W/slapd/slapd.conf"
grep -q '^\s*syncprov-sessionlog 100000$' "$W/slapd/slapd.conf" || {
	echo "syncprov_replay: no syncprov-sessionlog line to raise" >&2
	exit 1
}
"$H" start "$W" >/dev/null
set -a
. "$W/slapd.env"
set +a
export LDAPTLS_CACERT=$IDS_TEST_LDAP_CA
B=$IDS_TEST_LDAP_BASE
A=(-ZZ -x -H "$IDS_TEST_LDAP_URI" -D "$IDS_TEST_LDAP_ADMIN_DN" -y "$IDS_TEST_LDAP_ADMIN_PW_FILE")
PEOPLE=40000
{
	printf 'dn: ou=a,%s\nchangetype: add\nobjectClass: organizationalUnit\nou: a\n\n' "$B"
	printf 'dn: ou=b,%s\nchangetype: add\nobjectClass: organizationalUnit\nou: b\n\n' "$B"
	for i in $(seq 1 $PEOPLE); do
		printf 'dn: uid=p%d,ou=b,%s\nchangetype: add\nobjectClass: inetOrgPerson\nuid: p%d\ncn: p\nsn: p\n\n' "$i" "$B" "$i"
	done
	printf 'dn: uid=q1,ou=a,%s\nchangetype: add\nobjectClass: inetOrgPerson\nuid: q1\ncn: q\nsn: q\n\n' "$B"
} | ldapmodify "${A[@]}" >/dev/null
spid=$(cat "$IDS_TEST_SLAPD_PIDFILE")
cpu() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
csn() { ldapsearch "${A[@]}" -s base -b "$B" contextCSN -LLL | sed -n 's/^contextCSN: //p'; }
ticks=$(getconf CLK_TCK)
{
	echo "# One syncrepl refresh against the modifications it replays (bench/syncprov_replay.sh)"
	echo
	echo "- $(date -u +%F), $(slapd -VV 2>&1 | head -1), load average $(cut -d' ' -f1 /proc/loadavg) at the start"
	echo "- each row: N modifications under ou=b, then a refreshOnly search from the cookie taken before them"
	echo
	echo "| N modifications | base | entries sent | wall | slapd CPU |"
	echo "| --- | --- | --- | --- | --- |"
} >"$OUT"
for n in "${SIZES[@]}"; do
	[ "$n" -le $PEOPLE ] || { echo "syncprov_replay: N at most $PEOPLE" >&2; exit 1; }
	c0=$(csn)
	for i in $(seq 1 "$n"); do
		printf 'dn: uid=p%d,ou=b,%s\nchangetype: modify\nreplace: sn\nsn: m%d-%d\n\n' "$i" "$B" "$i" "$n"
	done | ldapmodify "${A[@]}" >/dev/null
	for base in "ou=a,$B" "ou=b,$B"; do
		t0=$(cpu)
		s=$(date +%s.%N)
		sent=$(ldapsearch "${A[@]}" -b "$base" -E "sync=ro/rid=000,csn=$c0" "(objectClass=inetOrgPerson)" 1.1 -LLL |
			grep -c '^dn:' || true)
		e=$(date +%s.%N)
		t1=$(cpu)
		awk -v n="$n" -v b="${base%%,*}" -v sent="$sent" -v w="$(awk -v e="$e" -v s="$s" 'BEGIN { print e - s }')" \
			-v c="$((t1 - t0))" -v hz="$ticks" 'BEGIN { printf "| %d | %s | %d | %.3f s | %.2f s |\n", n, b, sent, w, c / hz }' |
			tee -a "$OUT"
	done
done
echo "syncprov_replay: $OUT written"
