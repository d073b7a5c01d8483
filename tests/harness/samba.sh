#!/usr/bin/env bash
# samba.sh — a throwaway Samba Active Directory domain controller for the
# AD tests (tests/integration/t_ad_*.sh, ctest_ad_*.c).
#
#   samba.sh start DIR   provision a domain in DIR/samba (first time), start
#                        `samba` on 127.0.0.1 (ports 389 and 636: one DC per
#                        machine), populate it (first time), write
#                        DIR/samba.env (shell exports)
#   samba.sh stop DIR    stop it (SIGTERM, wait); removes nothing
#
# start is idempotent (a running DC only gets samba.env rewritten), stop of
# a stopped DC is a no-op.  Provisioning takes about 5 s, the population
# (about 1,650 users over LDAPS, with ldb:nosync) about 15 s.
#
# The domain: realm IDSYNC.TEST, NetBIOS domain IDSYNC, base DC=idsync,DC=test.
# samba.env exports:
#   IDS_TEST_AD_URI          ldap://127.0.0.1   (StartTLS)
#   IDS_TEST_AD_LDAPS_URI    ldaps://127.0.0.1
#   IDS_TEST_AD_BASE         DC=idsync,DC=test
#   IDS_TEST_AD_CA           the test CA that signed the DC's certificate
#                            (subjectAltName IP:127.0.0.1, DNS:localhost)
#   IDS_TEST_AD_WRONG_CA     a CA that signed nothing here
#   IDS_TEST_AD_ADMIN_DN / _ADMIN_UPN / _ADMIN_PW_FILE   Administrator
#   IDS_TEST_AD_BIND_DN / _BIND_UPN / _BIND_PW_FILE      the service account
#                            svc-idsync: a plain domain user (read access is
#                            what every authenticated user has in AD)
#   IDS_TEST_AD_SAM          DIR/samba/private/sam.ldb: samba-tool -H on it
#   IDS_TEST_AD_SMBCONF      DIR/samba/etc/smb.conf: samba-tool -s
#   IDS_TEST_AD_BULK         how many bulk users (and members of CC-Everyone)
#   IDS_TEST_SAMBA_DIR, IDS_TEST_SAMBA_SH
# Password files hold the password without a newline, mode 600.
#
# The population (read-only for the tests; a test that changes things
# makes its own OU=<test>-<pid>,DC=idsync,DC=test and removes it):
#
#   OU=Service Accounts   CN=svc-idsync
#   OU=Corp
#     OU=People
#       OU=Prague    CN=Novák\, Jan (jnovak; escaped comma, non-ASCII)
#                    CN=Šárka Dvořáková (sdvorakova)
#                    CN=Alice Admin (alice)
#                    CN=Dana Disabled (dana; userAccountControl 546: disabled)
#                    CN=Paul Primary (paul; primary group CC-Primary, so
#                      AD lists him in no group's `member`)
#       OU=Brno      CN=Bob Brno (bob), CN=Eva Brno (eva)
#       OU=Bulk      CN=Agent 0001 … (agent0001 …, IDS_TEST_AD_BULK of them;
#                    every 100th disabled)
#     OU=Groups
#       CN=CC-Support     jnovak, sdvorakova, dana, the group Team-Brno (another
#                         OU), the group Outside-Team (outside the groups
#                         base), the user olga (outside the users base)
#       CN=CC-Admins      alice
#       CN=CC-Everyone    every bulk user (more than AD's MaxValRange, 1500)
#       CN=CC-Primary     nobody in `member`; paul's primary group
#       OU=Regional  CN=Team-Brno   bob, eva
#   OU=Elsewhere          CN=Outside-Team (oscar), CN=Oscar Outside,
#                         CN=Olga Outside
#
# Users have no password (userAccountControl 544: PASSWD_NOTREQD, enabled)
# except the service account: setting one costs Samba a few hash
# computations per user, and the tests never bind as them.
#
# Needs root (ports 389/636) and Debian's samba, samba-dsdb-modules,
# samba-vfs-modules (provisioning sets sysvol ACLs through vfs_acl_xattr)
# and samba-ad-provision (scripts/deps installs them).
set -euo pipefail

REALM=IDSYNC.TEST
DOMAIN=IDSYNC
BASE=DC=idsync,DC=test
UPN_SUFFIX=idsync.test
BULK=${SAMBA_BULK_USERS:-1600}
SVC_DN="CN=svc-idsync,OU=Service Accounts,$BASE"
ADMIN_DN="CN=Administrator,CN=Users,$BASE"

die() {
	echo "samba.sh: $*" >&2
	exit 1
}
note() { echo "samba.sh: $*" >&2; }
usage() { die "usage: samba.sh start|stop DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
[ -d "$2" ] || die "$2: no such directory"
dir=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
base=$dir/samba
conf=$base/etc/smb.conf
pidfile=$base/samba.pid
env_file=$dir/samba.env
# the client tools read the CA from LDAPTLS_CACERT, which LDAPNOINIT
# would make them ignore (with ldap.conf): only that one is set per call
unset LDAPNOINIT

# port_busy P: true when something listens on TCP port P of 127.0.0.1.
port_busy() {
	ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

running() {
	local pid
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q samba "/proc/$pid/comm" 2>/dev/null &&
		! alive_zombie "$pid"
}

# alive_zombie PID: exited, but not reaped (an init that does not wait)
alive_zombie() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" = Z ]
}

# A password Samba's complexity check accepts: upper, lower, digit, sign.
random_pw() { printf 'Ids-%s-Q7' "$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"; }

write_secret() { (umask 077 && printf '%s' "$2" >"$1"); }

# b64 VALUE: LDIF's base64 form (values that are not plain ASCII must be
# written as `attr:: base64`).
b64() { printf '%s' "$1" | base64 -w0; }

# ldap_as_admin TOOL ARGS...: an OpenLDAP client tool over LDAPS as
# Administrator (simple binds need TLS on AD).
ldap_as_admin() {
	local tool=$1
	shift
	LDAPTLS_CACERT=$base/tls/ca.crt "$tool" -x -H ldaps://127.0.0.1 -D "Administrator@$UPN_SUFFIX" \
		-y "$base/admin.pw" "$@"
}

provision() {
	# a half-made instance (an earlier start failed) is made again
	rm -rf "$base"
	mkdir -p "$base/etc" "$base/log" "$base/run"
	chmod 711 "$base"
	note "provisioning $REALM in $base"
	write_secret "$base/admin.pw" "$(random_pw)"
	write_secret "$base/svc.pw" "$(random_pw)"
	# an empty file as the configuration to start from: without -s,
	# samba-tool copies the host's /etc/samba/smb.conf (shares, printers,
	# the host's log file) into the new one
	: >"$base/etc/seed.conf"
	if ! samba-tool domain provision -s "$base/etc/seed.conf" --server-role=dc --dns-backend=NONE \
		--targetdir="$base" --realm="$REALM" --domain="$DOMAIN" --host-name=dc1 \
		--adminpass="$(cat "$base/admin.pw")" \
		--option="interfaces = lo" --option="bind interfaces only = yes" \
		--option="server services = ldap cldap kdc" >"$base/log/provision.log" 2>&1; then
		tail -20 "$base/log/provision.log" >&2
		die "samba-tool domain provision failed (log: $base/log/provision.log)"
	fi
	# the certificate: from the test CA, for 127.0.0.1 (Samba's own names
	# the host, so verification against 127.0.0.1 would fail)
	bash "$here/mkcert.sh" "$base/tls" >/dev/null
	# smb.conf: no forwarder copied from the host's resolver; only the
	# services asked for; no fsync per write (population ~3x faster); our
	# pid directory, log and certificate
	sed -i -e '/^[[:space:]]*dns forwarder[[:space:]]*=/d' \
		-e 's/^[[:space:]]*server services[[:space:]]*=.*/\tserver services = ldap, cldap, kdc/' "$conf"
	sed -i "/^\[global\]/a\\
	ldb:nosync = true\\
	pid directory = $base/run\\
	log file = $base/log/samba.log\\
	logging = file\\
	tls enabled = yes\\
	tls keyfile = $base/tls/server.key\\
	tls certfile = $base/tls/server.crt\\
	tls cafile = $base/tls/ca.crt" "$conf"
	touch "$base/.provisioned"
}

# answers: the DC answers an anonymous root DSE read over LDAPS with the CA.
answers() {
	LDAPTLS_CACERT=$base/tls/ca.crt ldapsearch -x -LLL -o nettimeout=2 -l 2 -H ldaps://127.0.0.1 \
		-b "" -s base defaultNamingContext >/dev/null 2>&1
}

launch() {
	local p i
	for p in 389 636; do
		if port_busy "$p"; then
			ss -Hltnp "sport = :$p" >&2 || true
			die "port $p is taken by another server (above): stop it first (only one DC per machine)"
		fi
	done
	rm -f "$pidfile"
	# -i: in the foreground of its own process (no daemon fork), -M single:
	# one process for every service, enough for tests
	setsid samba -s "$conf" -i -M single </dev/null >"$base/log/samba.out" 2>&1 &
	echo $! >"$pidfile"
	for ((i = 0; i < 300; i++)); do
		answers && return 0
		running || {
			tail -20 "$base/log/samba.out" >&2
			die "samba exited during start (output: $base/log/samba.out)"
		}
		sleep 0.2
	done
	die "samba did not answer on ldaps://127.0.0.1 within 60 s (output: $base/log/samba.out)"
}

# person DN SAM GIVEN SN DISPLAY UAC [OU-less extras...]: a user entry in
# LDIF on stdout; every value goes base64 (names with accents, commas).
person() {
	local dn=$1 sam=$2 given=$3 sn=$4 display=$5 uac=$6
	printf 'dn:: %s\nobjectClass: user\nsAMAccountName: %s\nuserPrincipalName: %s@%s\n' \
		"$(b64 "$dn")" "$sam" "$sam" "$UPN_SUFFIX"
	printf 'givenName:: %s\nsn:: %s\ndisplayName:: %s\nmail: %s@%s\nuserAccountControl: %s\n\n' \
		"$(b64 "$given")" "$(b64 "$sn")" "$(b64 "$display")" "$sam" "$UPN_SUFFIX" "$uac"
}

# group DN SAM MEMBER_DN...: a global security group in LDIF on stdout.
group() {
	local dn=$1 sam=$2 m
	shift 2
	printf 'dn:: %s\nobjectClass: group\nsAMAccountName: %s\n' "$(b64 "$dn")" "$sam"
	for m in "$@"; do printf 'member:: %s\n' "$(b64 "$m")"; done
	printf '\n'
}

ou() { printf 'dn:: %s\nobjectClass: organizationalUnit\n\n' "$(b64 "$1")"; }

populate() {
	local corp="OU=Corp,$BASE" people groups i n uac members=()
	people="OU=People,$corp"
	groups="OU=Groups,$corp"
	note "populating ($BULK bulk users)"
	{
		ou "OU=Service Accounts,$BASE"
		# the service account: the password as AD wants it, UTF-16LE in
		# quotes, settable over LDAPS only
		printf 'dn: %s\nobjectClass: user\nsAMAccountName: svc-idsync\nuserPrincipalName: svc-idsync@%s\n' \
			"$SVC_DN" "$UPN_SUFFIX"
		printf 'description: idsyncd service account (a plain domain user)\nuserAccountControl: 512\n'
		printf 'unicodePwd:: %s\n\n' "$(printf '"%s"' "$(cat "$base/svc.pw")" | iconv -f UTF-8 -t UTF-16LE | base64 -w0)"
		ou "$corp"
		ou "$people"
		ou "OU=Prague,$people"
		ou "OU=Brno,$people"
		ou "OU=Bulk,$people"
		ou "$groups"
		ou "OU=Regional,$groups"
		ou "OU=Elsewhere,$BASE"
		person "CN=Novák\\, Jan,OU=Prague,$people" jnovak Jan Novák "Novák, Jan" 544
		person "CN=Šárka Dvořáková,OU=Prague,$people" sdvorakova Šárka Dvořáková "Šárka Dvořáková" 544
		person "CN=Alice Admin,OU=Prague,$people" alice Alice Admin "Alice Admin" 544
		person "CN=Dana Disabled,OU=Prague,$people" dana Dana Disabled "Dana Disabled" 546
		person "CN=Paul Primary,OU=Prague,$people" paul Paul Primary "Paul Primary" 544
		person "CN=Bob Brno,OU=Brno,$people" bob Bob Brno "Bob Brno" 544
		person "CN=Eva Brno,OU=Brno,$people" eva Eva Brno "Eva Brno" 544
		person "CN=Oscar Outside,OU=Elsewhere,$BASE" oscar Oscar Outside "Oscar Outside" 544
		person "CN=Olga Outside,OU=Elsewhere,$BASE" olga Olga Outside "Olga Outside" 544
		# the bulk users: plain ASCII, written directly (thousands of
		# base64 calls would take longer than Samba's adds)
		for ((i = 1; i <= BULK; i++)); do
			n=$(printf '%04d' "$i")
			uac=544
			((i % 100 == 0)) && uac=546
			printf 'dn: CN=Agent %s,OU=Bulk,%s\nobjectClass: user\nsAMAccountName: agent%s\n' "$n" "$people" "$n"
			printf 'userPrincipalName: agent%s@%s\ngivenName: Agent\nsn: %s\ndisplayName: Agent %s\n' \
				"$n" "$UPN_SUFFIX" "$n" "$n"
			printf 'mail: agent%s@%s\nuserAccountControl: %s\n\n' "$n" "$UPN_SUFFIX" "$uac"
		done
		group "CN=Team-Brno,OU=Regional,$groups" Team-Brno "CN=Bob Brno,OU=Brno,$people" "CN=Eva Brno,OU=Brno,$people"
		group "CN=Outside-Team,OU=Elsewhere,$BASE" Outside-Team "CN=Oscar Outside,OU=Elsewhere,$BASE"
		group "CN=CC-Support,$groups" CC-Support "CN=Novák\\, Jan,OU=Prague,$people" \
			"CN=Šárka Dvořáková,OU=Prague,$people" "CN=Dana Disabled,OU=Prague,$people" \
			"CN=Team-Brno,OU=Regional,$groups" "CN=Outside-Team,OU=Elsewhere,$BASE" \
			"CN=Olga Outside,OU=Elsewhere,$BASE"
		group "CN=CC-Admins,$groups" CC-Admins "CN=Alice Admin,OU=Prague,$people"
		group "CN=CC-Primary,$groups" CC-Primary "CN=Paul Primary,OU=Prague,$people"
		printf 'dn: CN=CC-Everyone,%s\nobjectClass: group\nsAMAccountName: CC-Everyone\n' "$groups"
		for ((i = 1; i <= BULK; i++)); do printf 'member: CN=Agent %04d,OU=Bulk,%s\n' "$i" "$people"; done
		printf '\n'
	} >"$base/population.ldif"
	ldap_as_admin ldapadd -f "$base/population.ldif" >"$base/log/populate.log" 2>&1 ||
		{ tail -5 "$base/log/populate.log" >&2; die "populating failed (log: $base/log/populate.log)"; }
	# paul's primary group: AD then drops him from CC-Primary's member
	# (and lists him in Domain Users' instead)
	samba-tool user setprimarygroup paul CC-Primary -H "$base/private/sam.ldb" -s "$conf" \
		>>"$base/log/populate.log" 2>&1 || die "setprimarygroup failed (log: $base/log/populate.log)"
	touch "$base/.populated"
}

write_env() {
	local tmp
	tmp=$(mktemp "$dir/.samba.env.XXXXXX")
	cat >"$tmp" <<-EOF
		# generated by tests/harness/samba.sh start $dir
		export IDS_TEST_AD_URI='ldap://127.0.0.1'
		export IDS_TEST_AD_LDAPS_URI='ldaps://127.0.0.1'
		export IDS_TEST_AD_BASE='$BASE'
		export IDS_TEST_AD_CA='$base/tls/ca.crt'
		export IDS_TEST_AD_WRONG_CA='$base/tls/other-ca.crt'
		export IDS_TEST_AD_ADMIN_DN='$ADMIN_DN'
		export IDS_TEST_AD_ADMIN_UPN='Administrator@$UPN_SUFFIX'
		export IDS_TEST_AD_ADMIN_PW_FILE='$base/admin.pw'
		export IDS_TEST_AD_BIND_DN='$SVC_DN'
		export IDS_TEST_AD_BIND_UPN='svc-idsync@$UPN_SUFFIX'
		export IDS_TEST_AD_BIND_PW_FILE='$base/svc.pw'
		export IDS_TEST_AD_SAM='$base/private/sam.ldb'
		export IDS_TEST_AD_SMBCONF='$conf'
		export IDS_TEST_AD_BULK='$BULK'
		export IDS_TEST_SAMBA_DIR='$dir'
		export IDS_TEST_SAMBA_SH='$here/samba.sh'
	EOF
	chmod 644 "$tmp"
	mv "$tmp" "$env_file"
}

start() {
	command -v samba >/dev/null && command -v samba-tool >/dev/null ||
		die "samba not installed (apt-get install samba samba-dsdb-modules samba-vfs-modules samba-ad-provision)"
	command -v ldapadd >/dev/null || die "ldapadd not found (apt-get install ldap-utils)"
	if running; then
		note "already running"
		write_env
		return
	fi
	[ -f "$base/.provisioned" ] || provision
	launch
	[ -f "$base/.populated" ] || populate
	write_env
	note "running on ldap://127.0.0.1 and ldaps://127.0.0.1 (env: $env_file)"
}

stop() {
	local pid i
	if ! running; then
		note "not running"
		return
	fi
	pid=$(cat "$pidfile")
	# the whole session setsid gave it: samba may fork helpers
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		running || break
		sleep 0.1
	done
	if running; then
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$pidfile"
	note "stopped"
}

case $cmd in
start) start ;;
stop) stop ;;
*) usage ;;
esac
