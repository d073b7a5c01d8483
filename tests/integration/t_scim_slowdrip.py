#!/usr/bin/env python3
"""Per-connection limits of the SCIM listener (issue 16: "per-connection
timeouts (a slow-drip client is cut off), a connection cap"): with
scim.timeout 3s, a client sending its request one byte a second is cut
within the timeout (MHD's own timeout counts silence only, and this client
is never silent), while another client is served meanwhile; a keep-alive
client that answers promptly is not cut; with max_connections 8 (4 per
address), a fifth connection from one address is refused while one from
another loopback address is served."""
import http.client
import json
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-drip-77aa"
HDR = {"Authorization": f"Bearer {TOKEN}"}


def get(port, source="127.0.0.1"):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    h.request("GET", "/scim/v2/okta/ServiceProviderConfig", headers=HDR)
    r = h.getresponse()
    r.read()
    h.close()
    return r.status


def alive(s):
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def drip(port, out):
    """One byte a second; out gets the seconds until the server closed."""
    req = (b"POST /scim/v2/okta/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
           b"\r\nContent-Type: application/scim+json\r\nContent-Length: 400\r\n\r\n" + b"{" * 400)
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    t0 = time.monotonic()
    try:
        for byte in req:
            s.sendall(bytes([byte]))
            time.sleep(1)
            if time.monotonic() - t0 > 20:
                break
        out["closed_after"] = None
    except (BrokenPipeError, ConnectionResetError):
        out["closed_after"] = time.monotonic() - t0
    finally:
        s.close()


def body(env, c):
    tok = write_token(env, TOKEN, "okta.token")
    port = free_port()
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n"
    cfg = env.write_config(connectors=[conn], raw_extra=(
        f"scim:\n  listen: \"127.0.0.1:{port}\"\n  timeout: 3s\n  max_connections: 8\n"))
    d = env.daemon(config=cfg, label="drip").start()
    d.wait_field("READY", "1", 20)

    out = {}
    t = threading.Thread(target=drip, args=(port, out))
    t.start()
    served = 0
    t0 = time.monotonic()
    while t.is_alive() and time.monotonic() - t0 < 25:
        served += get(port) == 200
        time.sleep(0.2)
    t.join()
    c.true(out.get("closed_after") is not None, f"the slow-drip client was cut off ({out})")
    c.true(out.get("closed_after") is not None and out["closed_after"] <= 3 + 2.5,
           f"within the 3 s timeout (+ the reaper's second and the write that notices): {out}")
    c.true(served >= 5, f"other clients were served meanwhile ({served} requests)")

    # a prompt keep-alive client outlives the timeout: its clock restarts at each answer
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    ok = 0
    for _ in range(6):
        h.request("GET", "/scim/v2/okta/ServiceProviderConfig", headers=HDR)
        r = h.getresponse()
        r.read()
        ok += r.status == 200
        time.sleep(1)
    h.close()
    time.sleep(0.5)  # the server has seen it close: it counts no more
    c.eq(6, ok, "a keep-alive client asking every second for 6 s is not cut")

    # the cap: 4 per address (half of max_connections)
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    time.sleep(0.3)
    c.true(all(alive(s) for s in held), "four connections from 127.0.0.1 are held open")
    try:
        st = get(port)
        c.bad(f"a fifth connection from 127.0.0.1 was served ({st})")
    except (ConnectionError, http.client.HTTPException, socket.timeout) as e:
        c.ok(f"a fifth connection from 127.0.0.1 is refused ({type(e).__name__})")
    c.eq(200, get(port, "127.0.0.2"), "one from 127.0.0.2 (the same listener) is served meanwhile")
    for s in held:
        s.close()
    time.sleep(0.3)
    c.eq(200, get(port), "once they close, 127.0.0.1 is served again")


if __name__ == "__main__":
    main("scim_slowdrip", body, ldap=False)
