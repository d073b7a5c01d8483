# fault_lib.sh — what the fault tests (t_fault_*.sh) share beyond lib.sh:
# the fault-injecting TCP proxy of tests/harness/tcpproxy.py between
# idsyncd and the test slapd, and timing.  Source it after lib.sh.

HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../harness" && pwd)
PROXY_PID=

# support_org N: N users u1..uN, all members of CC-Support, in a fresh OU;
# the proxy started and the config written with pages of 20 (so that a
# search takes many pages to cut into).  The config still names slapd
# itself: use_proxy points it at the proxy.
support_org() {
	local n=$1 i
	ou_create
	{
		for i in $(seq 1 "$n"); do user_ldif u$i User u$i; done
		group_ldif CC-Support $(for i in $(seq 1 "$n"); do udn u$i; done)
	} | ldif_add
	proxy_start
	PAGE_SIZE=20 config_write
}

# feed_row / image_digest: connector corp's stored cursor (with the
# number of image records stored with it) and a digest of every stored
# image record, to compare before and after a run that must leave them.
feed_row() { q "SELECT encode(cursor, 'hex')||'|'||coalesce(image_records, -1) FROM connector_feed WHERE connector = 'corp'"; }
image_digest() { q "SELECT md5(string_agg(key||kind||encode(record, 'hex'), ',' ORDER BY key)) FROM connector_image WHERE connector = 'corp'"; }

# support_join FROM TO: users uFROM..uTO added to the directory and to
# CC-Support, in one ldapmodify (the change an incremental run applies)
support_join() {
	local i
	{
		for i in $(seq "$1" "$2"); do user_ldif u$i User u$i | sed '1a changetype: add'; done
		printf 'dn: %s\nchangetype: modify\nadd: member\n' "$(gdn CC-Support)"
		for i in $(seq "$1" "$2"); do printf 'member: %s\n' "$(udn u$i)"; done
		printf '\n'
	} | ldif
}

# proxy_start: a proxy to the test slapd's ldap:// port; sets PROXY_URI.
# What idsyncd sends through it is kept in $W/proxy.up.
# StartTLS goes through it untouched (the certificate names 127.0.0.1).
proxy_start() {
	local hostport=${IDS_TEST_LDAP_URI#ldap://}
	echo pass >"$W/proxy.mode"
	rm -f "$W/proxy.port" "$W/proxy.log"
	/usr/bin/python3 "$HARNESS/tcpproxy.py" --target "$hostport" --port-file "$W/proxy.port" \
		--mode-file "$W/proxy.mode" --log "$W/proxy.log" --dump-up "$W/proxy.up" &
	PROXY_PID=$!
	for _ in $(seq 1 100); do
		[ -s "$W/proxy.port" ] && break
		sleep 0.05
	done
	[ -s "$W/proxy.port" ] || { echo "FAIL: $T: the proxy did not start" >&2; exit 1; }
	PROXY_URI=ldap://127.0.0.1:$(cat "$W/proxy.port")
	touch "$W/proxy.log"
}

proxy_stop() {
	[ -z "$PROXY_PID" ] || kill "$PROXY_PID" 2>/dev/null || true
	[ -z "$PROXY_PID" ] || wait "$PROXY_PID" 2>/dev/null || true
	PROXY_PID=
}
# at_exit CMD: run CMD at exit, before lib.sh's cleanup (last added first).
AT_EXIT=()
at_exit() { AT_EXIT=("$1" "${AT_EXIT[@]}"); }
fault_cleanup() {
	proxy_stop
	for c in "${AT_EXIT[@]}"; do eval "$c" || true; done
	cleanup
}
trap fault_cleanup EXIT

# own_slapd LDIF_FILE [stale]: a slapd of the test's own in $W/ldap,
# loaded with slapadd (an ldapadd of 20,000 entries takes minutes, slapadd
# seconds), and the IDS_TEST_LDAP_* variables pointed at it.  The LDIF
# holds $OU and everything under it.  slapadd -w, so that contextCSN
# covers the entries (syncprov hides newer ones from a change feed);
# `stale` leaves it out, as an admin may.
own_slapd() {
	mkdir -p "$W/ldap"
	chmod 755 "$W" "$W/ldap"
	"$HARNESS/slapd.sh" start "$W/ldap" >"$W/ldap/sh.log" 2>&1 || { cat "$W/ldap/sh.log" >&2; exit 1; }
	at_exit "'$HARNESS/slapd.sh' stop '$W/ldap' >>'$W/ldap/sh.log' 2>&1"
	"$HARNESS/slapd.sh" stop "$W/ldap" >>"$W/ldap/sh.log" 2>&1
	local w=-w
	[ "${2:-}" != stale ] || w=
	/usr/sbin/slapadd -q $w -f "$W/ldap/slapd/slapd.conf" -l "$1" >"$W/ldap/slapadd.log" 2>&1 ||
		{ cat "$W/ldap/slapadd.log" >&2; exit 1; }
	"$HARNESS/slapd.sh" start "$W/ldap" >>"$W/ldap/sh.log" 2>&1 || { cat "$W/ldap/sh.log" >&2; exit 1; }
	set -a
	. "$W/ldap/slapd.env"
	set +a
	export LDAPTLS_CACERT=$IDS_TEST_LDAP_CA
	# lib.sh's cleanup need not delete the subtree entry by entry (minutes
	# for 20,000): the whole instance goes
	IDS_NO_LDAP=1
}

# proxy_mode MODE...: what the next connections get (see tcpproxy.py).
proxy_mode() { echo "$*" >"$W/proxy.mode"; }

# proxy_conns: connections the proxy has finished (or stalled) so far
# (after a moment: the proxy logs a connection when it sees it end).
proxy_conns() { sleep 0.3; grep -c '^conn [0-9]*: mode=' "$W/proxy.log" || true; }

# proxy_last_down [N]: bytes the server sent on the last finished
# connection; with N (proxy_conns before the command), first waits (up to
# 10 s) until the proxy has logged a connection after those N — it logs
# one when it sees it end, which under load can come after idsyncd exits.
proxy_last_down() {
	local i
	for i in $(seq 50); do
		[ "$(grep -c '^conn [0-9]*: mode=' "$W/proxy.log" 2>/dev/null || true)" -gt "${1:--1}" ] && break
		sleep 0.2
	done
	sed -n 's/.* bytes_down=\([0-9]*\) .*/\1/p' "$W/proxy.log" | tail -n 1
}

# use_proxy: points the connector of $W/idsyncd.yaml at the proxy.
use_proxy() { sed -i "s#uri: \[\"$IDS_TEST_LDAP_URI\"\]#uri: [\"$PROXY_URI\"]#" "$W/idsyncd.yaml"; }

# timed ARGS...: ids ARGS, with its wall-clock time in MS (milliseconds).
timed() {
	local t0
	t0=$(date +%s%N)
	ids "$@"
	MS=$((($(date +%s%N) - t0) / 1000000))
}
# within MS LIMIT_S WHAT: MS below LIMIT_S seconds.
within() { if [ "$1" -lt $(($2 * 1000)) ]; then ok "$3 (${1} ms)"; else bad "$3: ${1} ms, expected < $2 s"; fi; }

# last_run: status|error of the newest sync_run row.
last_run() { q "SELECT status||'|'||coalesce(error,'') FROM sync_run ORDER BY id DESC LIMIT 1"; }
runs() { q "SELECT count(*) FROM sync_run"; }

# busy SQL_LIKE: true while a statement of ours matching SQL_LIKE waits
# for a lock (see hold_lock).
busy() {
	[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE '$1'")" != 0 ]
}
# hold_lock TABLE: a session of ours takes TABLE in SHARE mode and keeps
# it, so that the apply stops at its first write to TABLE, inside its
# transaction, for as long as we like (a 20,000-row statement takes a
# fraction of a second: too quick to catch by polling).  release_lock
# ends it.
hold_lock() {
	rm -f "$W/lock.fifo"
	mkfifo "$W/lock.fifo"
	psql -qAtX -d "$DB" <"$W/lock.fifo" >"$W/lock.out" 2>&1 &
	LOCK_PID=$!
	exec 7>"$W/lock.fifo"
	echo "BEGIN; LOCK TABLE $1 IN SHARE MODE; SELECT 'locked';" >&7
	for _ in $(seq 1 100); do
		grep -q locked "$W/lock.out" 2>/dev/null && return 0
		sleep 0.05
	done
	bad "could not lock $1"
}
release_lock() {
	# the session may be gone (a restarted server): no SIGPIPE for that
	(trap '' PIPE && echo "COMMIT;" >&7) 2>/dev/null || true
	exec 7>&-
	wait "$LOCK_PID" 2>/dev/null || true
}
# gone: waits until no session but ours is left in the test database.  A
# killed client's backend ends when it next reads from its socket, after
# the statement it is in; on a loaded machine that can take long, so after
# 5 s the leftovers are terminated (their transaction was never committed:
# the client died before sending COMMIT, or the commit is atomic anyway).
gone() {
	local others="FROM pg_stat_activity WHERE datname = current_database()
		AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
	for i in $(seq 1 600); do
		[ "$(q "SELECT count(*) $others")" = 0 ] && return 0
		[ "$i" = 50 ] && q "SELECT count(pg_terminate_backend(pid)) $others" >/dev/null
		sleep 0.1
	done
	return 1
}

# A PostgreSQL cluster of the test's own ($W/pg2, stopped at exit), for a
# test that restarts it: the database lib.sh made on the shared cluster
# goes and one of the same name is made on ours; pg2_restart restarts it
# with a fast shutdown (what a failover or an operator's restart does).
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
own_cluster() {
	psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$DB\"" >/dev/null
	chmod 755 "$W"
	mkdir -p "$W/pg2"
	"$HARNESS/pg.sh" start "$W/pg2" >"$W/pg2.log" 2>&1 || { cat "$W/pg2.log" >&2; exit 1; }
	at_exit "'$HARNESS/pg.sh' stop '$W/pg2' >>'$W/pg2.log' 2>&1"
	. "$W/pg2/pg.env"
	psql -qX -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
}
pg2_restart() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg2/pg/data" -m fast -w -t 60 restart >>"$W/pg2.log" 2>&1
	else
		"$PGBIN/pg_ctl" -D "$W/pg2/pg/data" -m fast -w -t 60 restart >>"$W/pg2.log" 2>&1
	fi
}
