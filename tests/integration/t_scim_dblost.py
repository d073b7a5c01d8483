#!/usr/bin/env python3
"""The SCIM listener while PostgreSQL is unreachable (issue 16): a write
is answered 503 with Retry-After (clients retry; nothing is half-written),
the daemon stays up, and with the database back (a reload pointing at it)
the retried write succeeds."""
import http.client
import json
import signal
import sys

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-dblost-77"


def post(port, name):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    h.request("POST", "/scim/v2/okta/Users", body=json.dumps({"userName": name}),
              headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"})
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, dict(r.getheaders()), json.loads(raw) if raw else None


def body(env, c):
    port = free_port()
    tok = write_token(env, TOKEN, "okta.token")
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n"
    extra = f"scim:\n  listen: \"127.0.0.1:{port}\"\n"
    proxy = env.pg_proxy(listen=True)
    cfg = env.write_config(connectors=[conn], conninfo=env.conninfo_via(proxy), raw_extra=extra)
    d = env.daemon(config=cfg).start()
    d.wait_field("READY", "1", 20)
    c.eq(201, post(port, "a@acme.example")[0], "a write with the database up: 201")

    proxy.close()  # every connection cut, new ones refused
    st, hd, b = post(port, "b@acme.example")
    c.eq(503, st, "a write with the database away: 503")
    c.eq("5", hd.get("Retry-After"), "503 carries Retry-After")
    c.eq("503", b and b.get("status"), "in the SCIM error schema")
    c.eq(503, post(port, "b@acme.example")[0], "still 503 while it stays away (reconnect attempted)")
    c.true(d.alive(), "the daemon stays up")

    env.write_config(connectors=[conn], raw_extra=extra)  # the database directly
    mark = d.line_mark()
    d.signal(signal.SIGHUP)
    d.wait_line(r"scim: listening", 10, since=mark)
    c.eq(201, post(port, "b@acme.example")[0], "the retried write succeeds once the database is back")
    c.eq("a@acme.example\nb@acme.example",
         env.q("SELECT name FROM scim_resource WHERE connector = 'okta' ORDER BY name"),
         "each user stored once")


if __name__ == "__main__":
    main("scim_dblost", body, ldap=False)
