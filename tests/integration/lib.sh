# lib.sh — shared setup of the shell integration tests (t_*.sh).
#
# Each test gets its own database (t_<test>_<pid>) and its own LDAP subtree
# (ou=<test>,<base>) on the servers that scripts/test started, so tests run
# in parallel.  Without those servers a test skips (exit 77) — except under
# CI=true, where a missing server is a failure.
set -euo pipefail

T=$(basename "$0" .sh)
: "${IDSYNCD:?IDSYNCD must name the idsyncd binary (ctest sets it)}"

# IDS_NO_LDAP=1 (set before sourcing): the test needs PostgreSQL only.
if [ -z "${IDS_TEST_PG_CONNINFO:-}" ] || { [ -z "${IDS_NO_LDAP:-}" ] && [ -z "${IDS_TEST_LDAP_URI:-}" ]; }; then
	if [ "${CI:-}" = true ]; then
		echo "FAIL: $T: no test servers (run the tests through scripts/test)" >&2
		exit 1
	fi
	echo "SKIP: $T: no test servers (run the tests through scripts/test)" >&2
	exit 77
fi

W=$(mktemp -d "/tmp/idsyncd-$T.XXXXXX")
DB="t_${T}_$$"
OU="ou=$T,${IDS_TEST_LDAP_BASE:-dc=example,dc=org}"
FAILS=0
CHECKS=0
export LDAPTLS_CACERT=${IDS_TEST_LDAP_CA:-} PGOPTIONS="-c search_path=idsync"

cleanup() {
	psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
	[ -n "${IDS_NO_LDAP:-}" ] || ldapdelete -r -ZZ -x -H "$IDS_TEST_LDAP_URI" -D "$IDS_TEST_LDAP_ADMIN_DN" \
		-y "$IDS_TEST_LDAP_ADMIN_PW_FILE" "$OU" >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT

psql -qX -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null

# q SQL: one query against the test database, unaligned, no headers.
q() { psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

# ldif: applies LDIF from stdin (changetype records, or plain adds with -a).
ldif() {
	ldapmodify -ZZ -x -H "$IDS_TEST_LDAP_URI" -D "$IDS_TEST_LDAP_ADMIN_DN" \
		-y "$IDS_TEST_LDAP_ADMIN_PW_FILE" "$@" >/dev/null
}
ldif_add() { ldif -a "$@"; }

# ou_create: the test's own subtree with ou=people and ou=groups below it.
ou_create() {
	ldif_add <<-LDIF
	dn: $OU
	objectClass: organizationalUnit
	ou: $T

	dn: ou=people,$OU
	objectClass: organizationalUnit
	ou: people

	dn: ou=groups,$OU
	objectClass: organizationalUnit
	ou: groups
	LDIF
}

# user_ldif UID GIVEN SN [MAIL]: a person entry on stdout.
user_ldif() {
	local uid=$1 given=$2 sn=$3 mail=${4:-$1@example.org}
	printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ngivenName: %s\nsn: %s\ncn: %s %s\nmail: %s\n\n' \
		"$uid" "$OU" "$uid" "$given" "$sn" "$given" "$sn" "$mail"
}

# group_ldif CN MEMBER_DN...: a groupOfNames on stdout.
group_ldif() {
	local cn=$1
	shift
	printf 'dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\n' "$cn" "$OU" "$cn"
	for m in "$@"; do printf 'member: %s\n' "$m"; done
	printf '\n'
}
udn() { echo "uid=$1,ou=people,$OU"; }
gdn() { echo "cn=$1,ou=groups,$OU"; }

# config_write [EXTRA_CONNECTOR_YAML] [RULES_YAML]: $W/idsyncd.yaml for one
# LDAP connector `corp` (company acme) over StartTLS with the test CA.
config_write() {
	local extra=${1:-} rules=${2:-}
	cp "$IDS_TEST_LDAP_BIND_PW_FILE" "$W/ldap.pw"
	chmod 600 "$W/ldap.pw"
	cat >"$W/idsyncd.yaml" <<-YAML
	database:
	  conninfo: "$IDS_TEST_PG_CONNINFO dbname=$DB"
	log:
	  level: ${LOG_LEVEL:-info}
	  target: stderr
	safety:
	  max_deactivation_percent: ${MAX_DEACT_PCT:-50}
	  max_grant_removals_percent: ${MAX_REMOVALS_PCT:-50}
	tenants:
	  auto_create: ${AUTO_CREATE:-true}
	connectors:
	  - name: corp
	    type: ldap
	    company: acme
	    uri: ["$IDS_TEST_LDAP_URI"]
	    tls_ca_file: $IDS_TEST_LDAP_CA
	    bind_dn: "$IDS_TEST_LDAP_BIND_DN"
	    bind_password_file: $W/ldap.pw
	    page_size: ${PAGE_SIZE:-20}
	    timeout: 10s
	    users: { base: "ou=people,$OU" }
	    groups: { base: "ou=groups,$OU" }
	$extra
	rules:
	${rules:-$(default_rules)}
	YAML
}

default_rules() {
	cat <<-'R'
	  - name: support-operators
	    match: { member_of: ["CC-Support"] }
	    tenant: support
	    roles: [operator]
	    channels: [webchat, email]
	    slots: { live: 2, email: 5 }
	    groups: [first-line]
	  - name: admins
	    match: { member_of: ["CC-Admins"] }
	    company_admin: true
	R
}

# A daemon a test starts in the background (`idsyncd run &`, its pid in
# DAEMON_PID): daemon_stop ends it; runs_done counts the finished runs of
# connector DAEMON_CONN; wait_runs N waits up to 15 s for the Nth, and
# fails the test with the daemon's log (in $W/daemon.log) when it dies or
# does not get there.
DAEMON_PID=
daemon_stop() {
	if [ -n "$DAEMON_PID" ]; then
		kill "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
		DAEMON_PID=
	fi
}
runs_done() { q "SELECT count(*) FROM sync_run WHERE connector = '$DAEMON_CONN' AND finished_at IS NOT NULL" 2>/dev/null || echo 0; }
wait_runs() {
	for _ in $(seq 150); do
		[ "$(runs_done)" -ge "$1" ] && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$W/daemon.log" >&2; echo "the daemon died" >&2; exit 1; }
		sleep 0.1
	done
	cat "$W/daemon.log" >&2
	echo "no run within 15 s or more" >&2
	exit 1
}

# ids ARGS...: runs idsyncd with the test config; sets RC, OUT, ERR.
ids() {
	set +e
	"$IDSYNCD" -c "$W/idsyncd.yaml" "$@" >"$W/out" 2>"$W/err"
	RC=$?
	set -e
	OUT=$(cat "$W/out")
	ERR=$(cat "$W/err")
}

ok() { CHECKS=$((CHECKS + 1)); echo "ok: $1"; }
bad() {
	CHECKS=$((CHECKS + 1))
	FAILS=$((FAILS + 1))
	echo "FAIL: $1" >&2
	[ -z "${OUT:-}" ] || printf '  stdout: %s\n' "$OUT" >&2
	[ -z "${ERR:-}" ] || printf '  stderr: %s\n' "$ERR" >&2
}
# eq EXPECTED ACTUAL WHAT
eq() { if [ "$1" = "$2" ]; then ok "$3"; else bad "$3: expected [$1], got [$2]"; fi; }
# has NEEDLE HAYSTACK WHAT
has() { case "$2" in *"$1"*) ok "$3" ;; *) bad "$3: [$1] not found" ;; esac; }
hasnt() { case "$2" in *"$1"*) bad "$3: [$1] found" ;; *) ok "$3" ;; esac; }

# snapshot_db: a sorted dump of users, grants and tenants (reliability.md's
# "unchanged" test).
snapshot_db() {
	q "SELECT u.company_id, u.source, u.external_id, u.username, u.email, u.active, u.deactivation_reason,
	          u.company_admin, u.xmin FROM app_user u ORDER BY 1,2,3,4"
	q "SELECT 'role', user_id, tenant_id, role, source FROM tenant_role
	   UNION ALL SELECT 'chan', user_id, tenant_id, channel, source FROM channel_grant
	   UNION ALL SELECT 'slot', user_id, tenant_id, channel_group || '=' || slots, source FROM slot_limit
	   UNION ALL SELECT 'grp', user_id, group_id, '', source FROM operator_group_member ORDER BY 1,2,3,4"
	q "SELECT company_id, slug FROM tenant ORDER BY 1,2"
}

# finish: the test's verdict.  A test that checked nothing (an early
# branch, a loop over nothing) fails: it would otherwise pass silently.
finish() {
	echo "$T: $((CHECKS - FAILS)) passed, $FAILS failed"
	if [ "$CHECKS" -eq 0 ]; then
		echo "FAIL: $T: no checks ran" >&2
		return 1
	fi
	[ "$FAILS" -eq 0 ]
}
