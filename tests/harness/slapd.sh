#!/usr/bin/env bash
# slapd.sh — a throwaway OpenLDAP slapd for the tests.
#
#   slapd.sh start DIR     create DIR/slapd (first time: CA, certificates,
#                          slapd.conf, database with the base entries), start
#                          slapd on free loopback ports, wait until it
#                          answers, write DIR/slapd.env (shell exports)
#   slapd.sh stop DIR      stop it (SIGTERM, wait); removes nothing
#   slapd.sh restart DIR   stop and start again on the same ports with the
#                          same data (the paging-cookie test: a restarted
#                          server no longer knows the cookies it handed out)
#
# start is idempotent (a running server only gets slapd.env rewritten), stop
# of a stopped server is a no-op.
#
# What the server offers (all in DIR/slapd.env):
#   IDS_TEST_LDAP_URI        ldap://127.0.0.1:PORT   (StartTLS available)
#   IDS_TEST_LDAPS_URI       ldaps://127.0.0.1:PORT2
#   IDS_TEST_LDAP_MISMATCH_URI ldap://127.0.0.2:PORT: same server, but an
#                            address the certificate does not name
#   IDS_TEST_LDAPI_URI       ldapi://…: SASL EXTERNAL as the calling user
#   IDS_TEST_LDAP_BASE       dc=example,dc=org
#   IDS_TEST_LDAP_ADMIN_DN / _ADMIN_PW_FILE   the rootdn (no limits, no ACLs)
#   IDS_TEST_LDAP_BIND_DN / _BIND_PW_FILE     the service account
#                            cn=idsync,ou=services: read access, and a size
#                            limit of IDS_TEST_LDAP_SIZELIMIT (50) entries
#                            per unpaged search, unlimited when paged
#   IDS_TEST_LDAP_LIMITED_DN / _LIMITED_PW_FILE  the same, but paged searches
#                            are capped at that size too (limit errors)
#   IDS_TEST_LDAP_SYNC_DN / _SYNC_PW_FILE  a change-feed account (issue 14):
#                            read access and no size limit, for syncrepl's
#                            refresh, which is one unpaged search
# The database has the syncprov overlay (RFC 4533 content synchronization)
# with a session log, and entryCSN/entryUUID indexes: what README says a
# directory needs for idsyncd's change feed.  SLAPD_REFINT=1 at the first
# start adds the refint overlay on member/uniqueMember (a private instance
# of the change-feed tests: its rewrites never reach a feed).
#   IDS_TEST_LDAP_CA         the CA that signed the server certificate
#   IDS_TEST_LDAP_WRONG_CA   an unrelated CA (must be refused)
#   IDS_TEST_SLAPD_PIDFILE, IDS_TEST_SLAPD_DIR, IDS_TEST_SLAPD_SH
# Password files hold the password without a newline (ldapsearch -y reads
# the whole file) and are mode 600.
#
# Tests put their data under their own ou=<test>,dc=example,dc=org so that
# they can run in parallel.  A test that restarts or kills the server starts
# its own instance in its own DIR instead of disturbing the shared one.
#
# Runs as root on Debian 12 (slapd keeps running as root: no -u/-g, so the
# key needs no chown) or as any user that may bind the loopback ports.
set -euo pipefail

SLAPD=${SLAPD:-/usr/sbin/slapd}
SCHEMA_DIR=${SCHEMA_DIR:-/etc/ldap/schema}
MODULE_DIR=${MODULE_DIR:-/usr/lib/ldap}
BASE=dc=example,dc=org
ADMIN_DN=cn=admin,$BASE
BIND_DN=cn=idsync,ou=services,$BASE
LIMITED_DN=cn=idsync-limited,ou=services,$BASE
SYNC_DN=cn=idsync-sync,ou=services,$BASE
SIZELIMIT=50
# ports tried: ldap:// on FIRST..LAST, ldaps:// TLS_PORT_OFFSET above; a
# test that restarts its own instance picks a range of its own
# (SLAPD_PORT_MIN), so that no other instance takes its port meanwhile
FIRST_PORT=${SLAPD_PORT_MIN:-3890}
LAST_PORT=$((FIRST_PORT + 99))
TLS_PORT_OFFSET=2470 # 3890 -> 6360

die() {
	echo "slapd.sh: $*" >&2
	exit 1
}
note() { echo "slapd.sh: $*" >&2; }
usage() { die "usage: slapd.sh start|stop|restart DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
[ -d "$2" ] || die "$2: no such directory"
dir=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
base=$dir/slapd
conf=$base/slapd.conf
pidfile=$base/slapd.pid
env_file=$dir/slapd.env
ports_file=$base/ports
ldapi_path=$base/ldapi
mismatch=0

for t in "$SLAPD" /usr/sbin/slapadd /usr/sbin/slappasswd /usr/bin/ldapsearch; do
	[ -x "$t" ] || die "$t not found (apt-get install slapd ldap-utils)"
done
command -v openssl >/dev/null || die "openssl not found"
[ -f "$MODULE_DIR/back_mdb.so" ] || [ -f "$MODULE_DIR/back_mdb.la" ] || die "no back_mdb in $MODULE_DIR"
# Never let an ldaprc or LDAP* variables of whoever runs us change the
# client tools' behaviour (the server is checked over plain ldap:// only).
export LDAPNOINIT=1

# port_busy P: true when something listens on P.
port_busy() {
	if command -v ss >/dev/null 2>&1; then
		ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# running: true when the pid file names a live slapd.
running() {
	local pid
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q slapd "/proc/$pid/comm" 2>/dev/null
}

# urlencode PATH: the ldapi:// host part (every / as %2F).
urlencode() { printf '%s' "$1" | sed 's#/#%2F#g'; }

random_pw() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# write_secret FILE VALUE: mode 600 from the start, no trailing newline.
write_secret() {
	(umask 077 && printf '%s' "$2" >"$1")
}

# make_ca NAME SUBJECT: a self-signed CA in $base/NAME.{key,pem}.
make_ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$base/$1.key" -out "$base/$1.pem" -days 3650 -subj "$2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" 2>/dev/null ||
		die "openssl could not make the CA $1"
}

make_certs() {
	make_ca ca "/O=idsyncd tests/CN=idsyncd test CA"
	# same subject as the real one: only the key differs, so a client that
	# compared names instead of signatures would be caught too
	make_ca wrong-ca "/O=idsyncd tests/CN=idsyncd test CA"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$base/server.key" -out "$base/server.csr" -subj "/O=idsyncd tests/CN=localhost" \
		2>/dev/null || die "openssl could not make the server key"
	cat >"$base/server.ext" <<-EOF
		basicConstraints=critical,CA:FALSE
		keyUsage=critical,digitalSignature,keyEncipherment
		extendedKeyUsage=serverAuth
		subjectAltName=IP:127.0.0.1,DNS:localhost
		authorityKeyIdentifier=keyid
	EOF
	openssl x509 -req -in "$base/server.csr" -CA "$base/ca.pem" -CAkey "$base/ca.key" \
		-CAcreateserial -out "$base/server.pem" -days 3650 -extfile "$base/server.ext" \
		2>/dev/null || die "openssl could not sign the server certificate"
	rm -f "$base/server.csr" "$base/server.ext" "$base/ca.srl" "$base/wrong-ca.key"
	chmod 600 "$base/ca.key" "$base/server.key"
	chmod 644 "$base/ca.pem" "$base/wrong-ca.pem" "$base/server.pem"
}

write_conf() {
	local rootpw_hash=$1 refint_mod="" refint_conf=""
	if [ "${SLAPD_REFINT:-0}" = 1 ]; then
		refint_mod="moduleload refint"
		refint_conf=$'overlay refint\nrefint_attributes member uniqueMember\nrefint_nothing "cn=nobody"'
	fi
	cat >"$conf" <<-EOF
		# generated by tests/harness/slapd.sh
		include $SCHEMA_DIR/core.schema
		include $SCHEMA_DIR/cosine.schema
		include $SCHEMA_DIR/inetorgperson.schema
		include $SCHEMA_DIR/nis.schema
		# Active Directory's user and group classes (objectGUID,
		# sAMAccountName, userAccountControl): the AD flavour's tests
		include $SCHEMA_DIR/msuser.schema

		modulepath $MODULE_DIR
		moduleload back_mdb
		moduleload syncprov
		$refint_mod

		pidfile $pidfile
		argsfile $base/slapd.args
		loglevel ${SLAPD_LOGLEVEL:-none}

		TLSCACertificateFile $base/ca.pem
		TLSCertificateFile $base/server.pem
		TLSCertificateKeyFile $base/server.key
		TLSVerifyClient never

		# everyone else: the default 500
		sizelimit 500

		database mdb
		maxsize 268435456
		suffix "$BASE"
		rootdn "$ADMIN_DN"
		rootpw $rootpw_hash
		directory $base/data
		index objectClass eq
		index entryUUID,entryCSN eq
		index uid,cn,mail,member,uniqueMember,memberUid eq

		# syncrepl's provider: a checkpoint of the context CSN every 100
		# writes or 10 minutes, and a session log of the last 1000 changes
		# (deletes are replayed from it as entryUUIDs; past it a refresh
		# falls back to a present phase)
		overlay syncprov
		syncprov-checkpoint 100 10
		syncprov-sessionlog 1000
		$refint_conf

		# The service account reads at most $SIZELIMIT entries per plain
		# search (sizeLimitExceeded after that) but any number through the
		# paged-results control: prtotal=unlimited lifts the total of a paged
		# search, size.pr (unset) leaves the page size to the client.
		limits dn.exact="$BIND_DN" size.soft=$SIZELIMIT size.hard=$SIZELIMIT size.prtotal=unlimited
		# A second account whose paged searches are capped too: a search
		# that needs more ends in a limit error (reliability.md case 4).
		limits dn.exact="$LIMITED_DN" size.soft=$SIZELIMIT size.hard=$SIZELIMIT size.prtotal=$SIZELIMIT
		# The change-feed account: a syncrepl refresh is not paged.
		limits dn.exact="$SYNC_DN" size=unlimited

		access to dn.base="" by * read
		access to dn.base="cn=Subschema" by * read
		# (continuation lines start with spaces: <<- strips the tabs).  Any
		# local user on ldapi:// (SASL EXTERNAL) may read: the SASL test.
		access to attrs=userPassword
		  by self =xw
		  by anonymous auth
		  by * none
		access to *
		  by dn.exact="$BIND_DN" read
		  by dn.exact="$LIMITED_DN" read
		  by dn.exact="$SYNC_DN" read
		  by dn.children="cn=peercred,cn=external,cn=auth" read
		  by * none

		# What slapd holds for each connection (cn=Connections,cn=Monitor:
		# the searches a persistent search's connection keeps executing),
		# for the admin only
		database monitor
		access to dn.subtree="cn=Monitor"
		  by dn.exact="$ADMIN_DN" read
		  by * none
	EOF
	chmod 600 "$conf"
}

load_base() {
	local svc_hash=$1 limited_hash=$2 sync_hash=$3
	mkdir -p "$base/data"
	chmod 700 "$base/data"
	/usr/sbin/slapadd -q -f "$conf" >"$base/slapadd.log" 2>&1 <<-EOF || { cat "$base/slapadd.log" >&2; die "slapadd failed"; }
		dn: $BASE
		objectClass: dcObject
		objectClass: organization
		dc: example
		o: idsyncd tests

		dn: ou=services,$BASE
		objectClass: organizationalUnit
		ou: services

		dn: $BIND_DN
		objectClass: organizationalRole
		objectClass: simpleSecurityObject
		cn: idsync
		description: idsyncd service account (read-only)
		userPassword: $svc_hash

		dn: $LIMITED_DN
		objectClass: organizationalRole
		objectClass: simpleSecurityObject
		cn: idsync-limited
		description: read-only, and paged searches limited too
		userPassword: $limited_hash

		dn: $SYNC_DN
		objectClass: organizationalRole
		objectClass: simpleSecurityObject
		cn: idsync-sync
		description: read-only change feed (syncrepl), no size limit
		userPassword: $sync_hash
	EOF
}

init_instance() {
	# a half-made instance (an earlier start failed) is made again
	rm -rf "$base"
	mkdir -p "$base"
	chmod 700 "$base"
	note "creating an instance in $base"
	make_certs
	write_secret "$base/admin.pw" "$(random_pw)"
	write_secret "$base/idsync.pw" "$(random_pw)"
	write_secret "$base/limited.pw" "$(random_pw)"
	write_secret "$base/sync.pw" "$(random_pw)"
	write_conf "$(/usr/sbin/slappasswd -T "$base/admin.pw")"
	load_base "$(/usr/sbin/slappasswd -T "$base/idsync.pw")" "$(/usr/sbin/slappasswd -T "$base/limited.pw")" \
		"$(/usr/sbin/slappasswd -T "$base/sync.pw")"
	# the CA certificates and the password files are read by the tests,
	# which may run as another user when we run as root: let them through
	# DIR/slapd (the keys stay 600)
	chmod 711 "$base"
	touch "$base/.ready"
}

# answers PORT: the server answers an anonymous root DSE read.
answers() {
	ldapsearch -x -LLL -o nettimeout=2 -l 2 -H "ldap://127.0.0.1:$1" -b "" -s base \
		namingContexts >/dev/null 2>&1
}

write_env() {
	local port=$1 tls_port=$2 tmp
	tmp=$(mktemp "$dir/.slapd.env.XXXXXX")
	cat >"$tmp" <<-EOF
		# generated by tests/harness/slapd.sh start $dir
		export IDS_TEST_LDAP_URI='ldap://127.0.0.1:$port'
		export IDS_TEST_LDAPS_URI='ldaps://127.0.0.1:$tls_port'
		export IDS_TEST_LDAP_MISMATCH_URI='$([ "$mismatch" = 1 ] && echo "ldap://127.0.0.2:$port")'
		export IDS_TEST_LDAPI_URI='ldapi://$(urlencode "$ldapi_path")'
		export IDS_TEST_LDAP_BASE='$BASE'
		export IDS_TEST_LDAP_ADMIN_DN='$ADMIN_DN'
		export IDS_TEST_LDAP_ADMIN_PW_FILE='$base/admin.pw'
		export IDS_TEST_LDAP_BIND_DN='$BIND_DN'
		export IDS_TEST_LDAP_BIND_PW_FILE='$base/idsync.pw'
		export IDS_TEST_LDAP_LIMITED_DN='$LIMITED_DN'
		export IDS_TEST_LDAP_LIMITED_PW_FILE='$base/limited.pw'
		export IDS_TEST_LDAP_SYNC_DN='$SYNC_DN'
		export IDS_TEST_LDAP_SYNC_PW_FILE='$base/sync.pw'
		export IDS_TEST_LDAP_CA='$base/ca.pem'
		export IDS_TEST_LDAP_WRONG_CA='$base/wrong-ca.pem'
		export IDS_TEST_LDAP_SIZELIMIT='$SIZELIMIT'
		export IDS_TEST_SLAPD_PIDFILE='$pidfile'
		export IDS_TEST_SLAPD_DIR='$dir'
		export IDS_TEST_SLAPD_SH='$here/slapd.sh'
	EOF
	chmod 644 "$tmp"
	mv "$tmp" "$env_file"
}

# launch PORT TLS_PORT: starts slapd; fails when it does not come up.
launch() {
	local port=$1 tls_port=$2 urls i
	urls="ldap://127.0.0.1:$port/ ldaps://127.0.0.1:$tls_port/ ldapi://$(urlencode "$ldapi_path")/"
	rm -f "$pidfile" "$ldapi_path"
	# 127.0.0.2 is loopback too on Linux (the host-name mismatch test); a
	# system where it cannot be bound gets a server without it.  slapd's
	# parent waits for the child's initialisation (listeners bound, database
	# opened) and exits non-zero when it failed.
	mismatch=1
	if ! "$SLAPD" -f "$conf" -h "$urls ldap://127.0.0.2:$port/" >"$base/slapd.out" 2>&1; then
		mismatch=0
		"$SLAPD" -f "$conf" -h "$urls" >"$base/slapd.out" 2>&1 || return 1
	fi
	for ((i = 0; i < 150; i++)); do
		answers "$port" && return 0
		running || return 1
		sleep 0.2
	done
	return 1
}

start() {
	[ -f "$base/.ready" ] || init_instance
	local port tls_port
	if running; then
		read -r port tls_port mismatch <"$ports_file"
		note "already running on $port/$tls_port"
		write_env "$port" "$tls_port"
		return
	fi
	# a known pair of ports (restart, or a second start) is tried first
	if [ -f "$ports_file" ]; then
		read -r port tls_port mismatch <"$ports_file"
		if ! port_busy "$port" && ! port_busy "$tls_port" && launch "$port" "$tls_port"; then
			echo "$port $tls_port $mismatch" >"$ports_file"
			write_env "$port" "$tls_port"
			note "running on ldap://127.0.0.1:$port ldaps://127.0.0.1:$tls_port (env: $env_file)"
			return
		fi
		[ "${1:-}" = same-ports ] && { cat "$base/slapd.out" >&2 || true; die "could not restart on ports $port/$tls_port"; }
	fi
	# another process may take a port between the check and the bind: a
	# failed start moves on to the next pair
	for ((port = FIRST_PORT; port <= LAST_PORT; port++)); do
		tls_port=$((port + TLS_PORT_OFFSET))
		port_busy "$port" && continue
		port_busy "$tls_port" && continue
		if launch "$port" "$tls_port"; then
			echo "$port $tls_port $mismatch" >"$ports_file"
			write_env "$port" "$tls_port"
			note "running on ldap://127.0.0.1:$port ldaps://127.0.0.1:$tls_port (env: $env_file)"
			return
		fi
		stop_quietly
		note "could not start on $port/$tls_port, trying the next pair"
	done
	cat "$base/slapd.out" >&2 || true
	die "slapd did not start (output: $base/slapd.out)"
}

stop_quietly() {
	local pid i
	running || return 0
	pid=$(cat "$pidfile")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$pidfile"
}

stop() {
	if [ ! -f "$conf" ]; then
		note "no instance in $base: nothing to stop"
		return
	fi
	if ! running; then
		note "not running"
		return
	fi
	stop_quietly
	note "stopped"
}

case $cmd in
start) start ;;
stop) stop ;;
restart)
	[ -f "$conf" ] || die "no instance in $base"
	stop_quietly
	start same-ports
	;;
*) usage ;;
esac
