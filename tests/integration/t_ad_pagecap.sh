#!/usr/bin/env bash
# A server that caps the page size, as Windows AD does (MaxPageSize, 1000 by
# default): the connector asks for pages of 1000 and gets 25 per page, and
# still reads every entry — it follows the server's cookies and never
# counts on the size it asked for.
#
# Neither test server caps the way AD does: Samba sends any page size it is
# asked for, and slapd's `limits size.pr=N` refuses a larger request
# outright (adminLimitExceeded, "illegal pagedResults page size").  So the
# cap sits in a small proxy in front of the shared slapd that lowers the
# size of every paged-results control to 25, over plain LDAP (it must read
# the requests); slapd then really answers 25 entries a page with a
# cookie, as AD does to a request of 1000 or more.
#
# (t_ad_* because it is AD behaviour; it runs on OpenLDAP.)
. "$(dirname "$0")/lib.sh"

CAP=25
ou_create
{
	members=()
	for i in $(seq 1 120); do
		user_ldif "p$i" Paged "P$i"
		members+=("$(udn "p$i")")
	done
	group_ldif CC-Support "${members[@]}"
} | ldif_add

# the proxy: LDAP messages from the client are parsed (BER, definite
# lengths), a SearchRequest's paged-results control gets size min(size,
# CAP), everything else passes unchanged; one line per lowered request in
# $W/cap.log
hostport=${IDS_TEST_LDAP_URI#ldap://}
python3 - "${hostport%:*}" "${hostport##*:}" "$CAP" "$W/cap.port" "$W/cap.log" <<'PY' &
import socket, sys, threading
up_host, up_port, cap, port_file, log_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
PAGED = b"1.2.840.113556.1.4.319"

def tlv(b, i):
    """(tag, content, end) of the TLV at b[i]."""
    tag, n, i = b[i], b[i + 1], i + 2
    if n & 0x80:
        k = n & 0x7F
        n, i = int.from_bytes(b[i:i + k], "big"), i + k
    return tag, b[i:i + n], i + n

def enc(tag, content):
    n = len(content)
    ln = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + ln + content

def items(b):
    i, out = 0, []
    while i < len(b):
        t, c, i = tlv(b, i)
        out.append((t, c))
    return out

def rewrite(msg):
    tag, body, _ = tlv(msg, 0)
    parts = items(body)
    if len(parts) < 3 or parts[1][0] != 0x63 or parts[2][0] != 0xA0:  # SearchRequest with controls
        return msg
    ctrls = []
    for t, c in items(parts[2][1]):
        f = items(c)
        if f and f[0][1] == PAGED and f[-1][0] == 0x04:
            (st, size), (ct, cookie) = items(items(f[-1][1])[0][1])
            n = int.from_bytes(size, "big", signed=True)
            if n > cap:
                with open(log_file, "a") as lg:
                    lg.write(f"{n} -> {cap}\n")
                n = cap
            val = enc(0x30, enc(0x02, n.to_bytes((n.bit_length() + 8) // 8, "big")) + enc(0x04, cookie))
            f[-1] = (0x04, val)
            c = b"".join(enc(a, b) for a, b in f)
        ctrls.append(enc(t, c))
    parts[2] = (0xA0, b"".join(ctrls))
    return enc(tag, b"".join(enc(a, b) for a, b in parts))

def pump_up(c, u):
    buf = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
            while len(buf) >= 2:
                n, h = buf[1], 2
                if n & 0x80:
                    if len(buf) < 2 + (n & 0x7F):
                        break
                    h = 2 + (n & 0x7F)
                    n = int.from_bytes(buf[2:h], "big")
                if len(buf) < h + n:
                    break
                u.sendall(rewrite(buf[:h + n]))
                buf = buf[h + n:]
    except OSError:
        pass
    for s in (u, c):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def pump_down(u, c):
    try:
        while True:
            d = u.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    try:
        c.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(16)
ls.settimeout(300)  # the proxy ends by itself if the test forgets it
with open(port_file + ".tmp", "w") as f:
    f.write(str(ls.getsockname()[1]))
import os
os.rename(port_file + ".tmp", port_file)
while True:
    try:
        c, _ = ls.accept()
    except socket.timeout:
        break
    u = socket.create_connection((up_host, up_port))
    threading.Thread(target=pump_up, args=(c, u), daemon=True).start()
    threading.Thread(target=pump_down, args=(u, c), daemon=True).start()
PY
proxy=$!
stop_proxy() {
	kill "$proxy" 2>/dev/null || true
	cleanup
}
trap stop_proxy EXIT
for ((i = 0; i < 50; i++)); do [ -f "$W/cap.port" ] && break; sleep 0.1; done
PROXY_URI="ldap://127.0.0.1:$(cat "$W/cap.port")"

# through the proxy, a request for 1000 a page comes back 25 a page
pages=$(ldapsearch -x -H "$PROXY_URI" -D "$IDS_TEST_LDAP_BIND_DN" -y "$IDS_TEST_LDAP_BIND_PW_FILE" \
	-b "ou=people,$OU" -E pr=1000/noprompt '(objectClass=inetOrgPerson)' 1.1 | grep -c '^search:' || true)
eq 5 "$pages" "capped server: 120 entries asked 1000 a page come in 5 pages"

PAGE_SIZE=1000 LOG_LEVEL=debug IDS_TEST_LDAP_URI=$PROXY_URI config_write '    start_tls: false'
printf 'security:\n  allow_plaintext_bind: true\n' >>"$W/idsyncd.yaml"
: >"$W/cap.log"
ids sync
eq 0 "$RC" "sync with a page size above the server's cap"
eq 120 "$(q "SELECT count(*) FROM app_user WHERE active")" "every user read"
eq 120 "$(q "SELECT count(*) FROM tenant_role WHERE role='operator'")" "every member of the group granted"
# 120 users in pages of 25, then the one group (its page capped too)
has "read 120 users, 1 groups in 6 pages" "$ERR" "users read in five capped pages, groups in one"
eq 6 "$(grep -c "^1000 -> $CAP\$" "$W/cap.log")" "every page request of idsyncd asked 1000 and was capped"

finish
