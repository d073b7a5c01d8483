# ad_lib.sh — shared setup of the Active Directory tests (t_ad_*.sh): the
# Samba AD domain controller that tests/harness/samba.sh started (its
# environment, IDS_TEST_AD_*, exported by scripts/test), PostgreSQL through
# lib.sh, and helpers to change the directory as an AD admin would.
#
# Without a DC a test skips (exit 77) with a banner that says the AD tests
# did not run; under CI=true that is a failure.
set -euo pipefail

if [ -z "${IDS_TEST_AD_URI:-}" ] || [ -z "${IDS_TEST_AD_BIND_PW_FILE:-}" ]; then
	T=$(basename "$0" .sh)
	if [ "${CI:-}" = true ]; then
		echo "FAIL: $T: no Samba AD domain controller (IDS_TEST_AD_* unset; scripts/test starts one)" >&2
		exit 1
	fi
	{
		echo "************************************************************************"
		echo "SKIP: $T: no Samba AD domain controller — the Active Directory tests"
		echo "      did NOT run.  Install samba (scripts/deps) and run scripts/test."
		echo "************************************************************************"
	} >&2
	exit 77
fi

IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"

export LDAPTLS_CACERT=$IDS_TEST_AD_CA
B=$IDS_TEST_AD_BASE
CORP="OU=Corp,$B"

# ad_ldif [ARGS]: LDIF from stdin applied over LDAPS as Administrator
# (changetype records, or plain adds with -a).
ad_ldif() {
	ldapmodify -x -H "$IDS_TEST_AD_LDAPS_URI" -D "$IDS_TEST_AD_ADMIN_UPN" -y "$IDS_TEST_AD_ADMIN_PW_FILE" "$@" \
		>/dev/null
}

# ad_search ARGS...: ldapsearch over LDAPS as the service account, LDIF
# without wrapping.
ad_search() {
	ldapsearch -LLL -o ldif-wrap=no -x -H "$IDS_TEST_AD_LDAPS_URI" -D "$IDS_TEST_AD_BIND_UPN" \
		-y "$IDS_TEST_AD_BIND_PW_FILE" "$@"
}

# samba_tool ARGS...: samba-tool on the DC's own database (how an admin on
# the DC works; the running samba sees the change at once).
samba_tool() {
	samba-tool "$@" -H "$IDS_TEST_AD_SAM" -s "$IDS_TEST_AD_SMBCONF" >/dev/null
}

# ad_guid FILTER: the objectGUID of the one entry FILTER matches under the
# base, rendered by hand the way Windows shows a GUID: the first three
# groups are little-endian numbers (bytes reversed), the last two are the
# bytes in order.
ad_guid() {
	local hex
	hex=$(ad_search -b "$B" "$1" objectGUID | sed -n 's/^objectGUID:: //p' | base64 -d | od -An -tx1 | tr -d ' \n')
	[ ${#hex} -eq 32 ] || { echo "no objectGUID for $1" >&2; return 1; }
	local b=()
	for ((i = 0; i < 32; i += 2)); do b+=("${hex:i:2}"); done
	printf '%s%s%s%s-%s%s-%s%s-%s%s-%s%s%s%s%s%s\n' "${b[3]}" "${b[2]}" "${b[1]}" "${b[0]}" "${b[5]}" "${b[4]}" \
		"${b[7]}" "${b[6]}" "${b[8]}" "${b[9]}" "${b[10]}" "${b[11]}" "${b[12]}" "${b[13]}" "${b[14]}" "${b[15]}"
}

# ad_config_write CONNECTOR_EXTRA RULES: $W/idsyncd.yaml with one
# active_directory connector `corp` (company acme).  Defaults: LDAPS with
# the test CA, bound as the service account by its UPN.  Override with
# AD_URI, AD_CA, AD_BIND, AD_USERS_BASE, AD_USERS_FILTER, AD_GROUPS_BASE,
# PAGE_SIZE.
ad_config_write() {
	local extra=${1:-} rules=$2 uf=""
	[ -z "${AD_USERS_FILTER:-}" ] || uf=", filter: \"$AD_USERS_FILTER\""
	cp "$IDS_TEST_AD_BIND_PW_FILE" "$W/ad.pw"
	chmod 600 "$W/ad.pw"
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
	  auto_create: true
	connectors:
	  - name: corp
	    type: ldap
	    flavor: active_directory
	    company: acme
	    uri: ["${AD_URI:-$IDS_TEST_AD_LDAPS_URI}"]
	    tls_ca_file: ${AD_CA:-$IDS_TEST_AD_CA}
	    bind_dn: "${AD_BIND:-$IDS_TEST_AD_BIND_UPN}"
	    bind_password_file: $W/ad.pw
	    page_size: ${PAGE_SIZE:-500}
	    timeout: 30s
	    users: { base: "${AD_USERS_BASE:-OU=People,$CORP}"$uf }
	    groups: { base: "${AD_GROUPS_BASE:-OU=Groups,$CORP}" }
	$extra
	rules:
	$rules
	YAML
}
