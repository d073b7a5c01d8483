#!/usr/bin/env python3
"""The SCIM listener's limits (issue 16): a per-connector request rate
(429 with Retry-After, spent by authenticated requests only, other
connectors unaffected, served again after the wait), a JSON nesting limit
(400 invalidSyntax before parsing), and a chunked body over 1 MiB (413:
no Content-Length to refuse on)."""
import http.client
import json
import sys
import time

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-limits-31"


def req(port, conn, method="GET", path="Users", body=None, token=TOKEN):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"Authorization": f"Bearer {token}"}
    if body is not None:
        hdr["Content-Type"] = "application/scim+json"
    h.request(method, f"/scim/v2/{conn}/{path}", body=body, headers=hdr)
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, dict(r.getheaders()), json.loads(raw) if raw else None


def body(env, c):
    port = free_port()
    tok = write_token(env, TOKEN, "token")
    conns = [f"  - name: slow\n    type: scim\n    token_file: {tok}\n    rate_limit: 3\n",
             f"  - name: bulk\n    type: scim\n    token_file: {tok}\n    rate_limit: 0\n"]
    cfg = env.write_config(connectors=conns, raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    d = env.daemon(config=cfg).start()
    d.wait_field("READY", "1", 20)

    # ---- rate: strangers spend nothing, three pass, the fourth waits
    for _ in range(10):
        req(port, "slow", token="wrong")
    got = [req(port, "slow")[0] for _ in range(3)]
    c.eq([200, 200, 200], got, "a burst of 3 within rate_limit: 3 passes (401s spent nothing)")
    st, hd, b = req(port, "slow")
    c.eq(429, st, "the fourth at once: 429")
    c.eq("1", hd.get("Retry-After"), "429 carries Retry-After: 1")
    c.eq("429", b and b.get("status"), "in the SCIM error schema")
    c.eq(200, req(port, "bulk")[0], "another connector is not limited by it")
    time.sleep(1.1)
    c.eq(200, req(port, "slow")[0], "served again after Retry-After")

    # ---- nesting: refused before parsing
    deep = '{"userName":"x","a":' + "[" * 40 + "]" * 40 + "}"
    st, _, b = req(port, "bulk", "POST", "Users", deep)
    c.eq((400, "invalidSyntax"), (st, b and b.get("scimType")), "a body nested 41 deep: 400 invalidSyntax")
    ok = '{"userName":"y","a":' + "[" * 10 + "]" * 10 + "}"
    c.eq(201, req(port, "bulk", "POST", "Users", ok)[0], "nested 11 deep: created")

    # ---- a chunked body over 1 MiB: no length to refuse on, cut at 1 MiB
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    chunk = b" " * 65536

    def chunks():
        for _ in range(17):
            yield chunk
    h.request("POST", "/scim/v2/bulk/Users", body=chunks(), encode_chunked=True,
              headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json",
                       "Transfer-Encoding": "chunked"})
    r = h.getresponse()
    r.read()
    c.eq(413, r.status, "a chunked body of 1.06 MiB: 413")
    h.close()
    c.true(d.alive(), "the daemon is still up")


if __name__ == "__main__":
    main("scim_limits", body, ldap=False)
