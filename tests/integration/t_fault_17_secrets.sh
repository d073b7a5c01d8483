#!/usr/bin/env bash
# reliability.md cases 16 and 17 end to end, and the plaintext-bind rule of
# config.md (security.allow_plaintext_bind), seen from the wire:
#   - the bind password crosses the proxy only inside TLS (StartTLS): not a
#     byte of it in what an eavesdropper sees; with start_tls: false the
#     config is refused (exit 78, naming the key) unless
#     security.allow_plaintext_bind: true — and then it really does cross in
#     clear, which shows the first check can fail;
#   - a secret file readable by others: config error naming the key and the
#     file, unless security.allow_readable_secrets;
#   - the password is in no output of sync, plan, status and check-config
#     at log level debug, in no table, and not in the daemon's environment
#     or command line.
# (Wrong CA, wrong host, expired certificates, LDAPTLS_* and .ldaprc:
# ctest_ldap_transport.c and t_transport.sh.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fault_lib.sh"

ou_create
{
	user_ldif u1 User One
	group_ldif CC-Support "$(udn u1)"
} | ldif_add
proxy_start
LOG_LEVEL=debug config_write
use_proxy
pw=$(cat "$W/ldap.pw")
[ ${#pw} -ge 8 ] && ok "the service account's password is ${#pw} bytes" || bad "password too short to search for"

ids sync
eq 0 "$RC" "sync over StartTLS through the proxy"
[ -s "$W/proxy.up" ] && ok "the proxy saw the client's bytes" || bad "nothing recorded"
grep -qaF "$pw" "$W/proxy.up" && bad "the password crossed the wire in clear" || ok "the password is not on the wire"
grep -qaF "$IDS_TEST_LDAP_BIND_DN" "$W/proxy.up" && bad "the bind DN crossed in clear" || ok "nor the bind DN (the bind is inside TLS)"

# no secret in any output, at debug level
all=
for cmd in sync plan status check-config "sync --format json" "plan --format json"; do
	ids $cmd
	all="$all$OUT$ERR"
done
has "debug" "$all" "debug lines were printed"
hasnt "$pw" "$all" "the password is in no output of sync, plan, status, check-config"
hasnt "$pw" "$(q "SELECT string_agg(t::text, ' ') FROM sync_run t") $(q "SELECT string_agg(t::text, ' ') FROM audit_log t")" \
	"nor in sync_run or audit_log"

# ... nor in the daemon's environment or command line
sed -i 's/^log:$/sync: { interval: 1h }\nlog:/' "$W/idsyncd.yaml"
"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/d.out" 2>"$W/d.err" &
dpid=$!
at_exit "kill $dpid 2>/dev/null"
for _ in $(seq 1 100); do grep -q "run 1\|ok:" "$W/d.err" 2>/dev/null && break; sleep 0.1; done
# Copy /proc first: a daemon that already died has no environment to
# grep, and a grep that fails to open the file must not count as "absent".
if kill -0 "$dpid" 2>/dev/null && cp "/proc/$dpid/environ" "$W/d.environ" 2>/dev/null &&
	cp "/proc/$dpid/cmdline" "$W/d.cmdline" 2>/dev/null && grep -qa "idsyncd" "$W/d.cmdline"; then
	grep -qaF "$pw" "$W/d.environ" && bad "the password is in the daemon's environment" || ok "not in the daemon's environment"
	grep -qaF "$pw" "$W/d.cmdline" && bad "the password is on the daemon's command line" || ok "not on its command line"
else
	bad "the daemon (pid $dpid) is not running: its environment and command line cannot be checked"
fi
kill -TERM $dpid
wait $dpid || true
hasnt "$pw" "$(cat "$W/d.out" "$W/d.err")" "not in the daemon's log"

# plaintext: refused by default, in clear only when allowed
sed -i 's/^    type: ldap$/    type: ldap\n    start_tls: false/' "$W/idsyncd.yaml"
ids check-config
eq 78 "$RC" "a simple bind over ldap:// without StartTLS is a config error"
has "start_tls: a simple bind over $PROXY_URI without StartTLS sends the password in clear" "$ERR" "... that says why"
ids sync
eq 78 "$RC" "sync refuses it too"
: >"$W/proxy.up"
printf 'security:\n  allow_plaintext_bind: true\n' >>"$W/idsyncd.yaml"
ids sync
eq 0 "$RC" "security.allow_plaintext_bind: true accepts it"
grep -qaF "$pw" "$W/proxy.up" && ok "and then the password does cross in clear (the wire check above can fail)" ||
	bad "allowed plaintext bind, yet no password on the wire: the wire check proves nothing"
sed -i '/^    start_tls: false$/d; /^security:$/d; /^  allow_plaintext_bind: true$/d' "$W/idsyncd.yaml"

# a secret file readable by others
chmod 644 "$W/ldap.pw"
ids check-config
eq 78 "$RC" "a password file readable by others is a config error"
has "bind_password_file" "$ERR" "the error names the key"
has "$W/ldap.pw" "$ERR" "... and the file"
hasnt "$pw" "$OUT$ERR" "... but not its content"
printf 'security:\n  allow_readable_secrets: true\n' >>"$W/idsyncd.yaml"
ids check-config
eq 0 "$RC" "security.allow_readable_secrets: true accepts it"
finish
