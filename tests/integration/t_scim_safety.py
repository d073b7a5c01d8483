#!/usr/bin/env python3
"""Safety over pushed state (issue 16, semantics.md safety rule 3): a SCIM
client that deletes 60 % of the users in one burst gets its 204s (the
pushed state is stored: the users are gone from the API), but the run that
follows is held as aborted_threshold and the platform keeps every user
active; a retry of a POST that already succeeded gets 409, never a second
user."""
import http.client
import json
import sys

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, poll_until, write_token  # noqa: E402

TOKEN = "tok-safety-55aa"


def req(port, method, path, body=None):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    if body is not None:
        hdr["Content-Type"] = "application/json"
    h.request(method, f"/scim/v2/okta/{path}", body=json.dumps(body) if body is not None else None, headers=hdr)
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, json.loads(raw) if raw else None


def body(env, c):
    port = free_port()
    tok = write_token(env, TOKEN, "okta.token")
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n    apply_delay: 1s\n"
    cfg = env.write_config(connectors=[conn], raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    with open(cfg) as f:
        text = f.read().replace("max_deactivation_percent: 100", "max_deactivation_percent: 50")
    with open(cfg, "w") as f:
        f.write(text)
    d = env.daemon(config=cfg).start()
    d.wait_field("READY", "1", 20)

    ids = []
    for i in range(10):
        st, u = req(port, "POST", "Users", {"userName": f"user{i}@acme.example", "active": True})
        c.true(st == 201, f"POST user{i}: {st}")
        ids.append(u["id"])
    # a client that timed out and retries its POST: 409, not a second user
    st, b = req(port, "POST", "Users", {"userName": "user0@acme.example", "active": True})
    c.eq((409, "uniqueness"), (st, b.get("scimType")), "a retried POST: 409 uniqueness")
    req(port, "POST", "Groups", {"displayName": "CC-Support", "members": [{"value": i} for i in ids]})

    def active():
        return env.q("SELECT count(*) FILTER (WHERE active) FROM app_user WHERE source = 'okta'")

    poll_until(lambda: active() == "10", 15, "ten users applied")
    c.eq("10", env.q("SELECT count(*) FROM app_user WHERE source = 'okta'"), "ten users, not eleven")

    for i in ids[:6]:
        c.eq(204, req(port, "DELETE", f"Users/{i}")[0], "DELETE answered 204")
    st, b = req(port, "GET", "Users")
    c.eq((200, 4), (st, b["totalResults"]), "the pushed state is stored: 4 users left in the API")
    poll_until(lambda: env.q("SELECT status FROM sync_run WHERE connector = 'okta' ORDER BY id DESC LIMIT 1")
               == "aborted_threshold", 15, "the burst's run is held")
    c.eq("10", active(), "the platform keeps all ten users active")
    c.has("held", d.stderr_text(), "the log says the run was held")


if __name__ == "__main__":
    main("scim_safety", body, ldap=False)
