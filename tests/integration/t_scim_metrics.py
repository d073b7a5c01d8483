#!/usr/bin/env python3
"""SCIM requests on /metrics (issue 17 part 4, issue 16): with a scim:
and a metrics: block, each answer of the SCIM listener is counted by
connector and status (idsyncd_scim_requests_total) and timed
(idsyncd_scim_request_duration_seconds, a histogram).  The test sends a
known mix — 3 creates (201), a duplicate (409), a wrong token (401), an
unknown connector (404), 2 reads (200) — and checks each count, that the
histogram's count is their sum with cumulative buckets, and that
`promtool check metrics` accepts the text."""
import http.client
import json
import re
import subprocess
import sys
import urllib.request

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-scim-metrics-8d"


def req(port, method, path, body=None, token=TOKEN):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    h.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdr)
    r = h.getresponse()
    r.read()
    h.close()
    return r.status


def value(text, series):
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def body(env, c):
    tok = write_token(env, TOKEN, "okta.token")
    port, mport = free_port(), free_port()
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n    apply_delay: 1h\n"
    cfg = env.write_config(connectors=[conn], raw_extra=(f"scim:\n  listen: \"127.0.0.1:{port}\"\n"
                                                         f"metrics:\n  listen: \"127.0.0.1:{mport}\"\n"))
    d = env.daemon(config=cfg, label="scim-metrics").start()
    d.wait_field("READY", "1", 20)

    sent = {}

    def send(want, *a, **kw):
        st = req(port, *a, **kw)
        c.eq(want, st, f"{a[0]} {a[1]}: {want}")
        sent[st] = sent.get(st, 0) + 1

    for i in range(3):
        send(201, "POST", "/scim/v2/okta/Users", {"userName": f"m{i}@acme.example"})
    send(409, "POST", "/scim/v2/okta/Users", {"userName": "M0@acme.example"})
    send(200, "GET", "/scim/v2/okta/Users?filter=userName%20eq%20%22m1%40acme.example%22")
    send(200, "GET", "/scim/v2/okta/Users")
    send(401, "GET", "/scim/v2/okta/Users", token="wrong")
    st = req(port, "GET", "/scim/v2/nobody/Users")
    c.eq(404, st, "an unknown connector: 404")

    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        text = r.read().decode()
    for status, n in sorted(sent.items()):
        c.eq(float(n), value(text, f'idsyncd_scim_requests_total{{connector="okta",status="{status}"}}'),
             f"okta, status {status}: {n}")
    c.eq(1.0, value(text, 'idsyncd_scim_requests_total{connector="",status="404"}'),
         "a path naming no connector: counted under connector=\"\"")
    total = sum(sent.values())
    c.eq(float(total), value(text, 'idsyncd_scim_request_duration_seconds_count{connector="okta"}'),
         f"the histogram counts every okta answer ({total})")
    buckets = [float(v) for v in re.findall(
        r'^idsyncd_scim_request_duration_seconds_bucket\{connector="okta",le="[^"]+"\} (\S+)$', text, re.M)]
    c.true(len(buckets) == 12 and buckets == sorted(buckets) and buckets[-1] == total,
           f"buckets cumulative, +Inf = count: {buckets}")
    s = value(text, 'idsyncd_scim_request_duration_seconds_sum{connector="okta"}')
    c.true(s is not None and 0 < s < total * 5, f"the sum is the seconds spent ({s})")
    try:
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        c.eq(0, r.returncode, f"promtool check metrics accepts the text ({(r.stdout + r.stderr).strip()})")
    except FileNotFoundError:
        c.bad("promtool is missing: scripts/deps installs Debian's prometheus package")


if __name__ == "__main__":
    main("scim_metrics", body, ldap=False)
