#!/usr/bin/env python3
"""Two idsyncd instances behind one "load balancer" (issue 16): state in
PostgreSQL, so a user created through one is found, patched and grouped
through the other; each instance applies after its own writes, the
connector lock serializes the runs, and the platform ends with each user
once and the grants the rules give — including through a nested group (a
group that is a member of the group a rule names)."""
import http.client
import json
import os
import sys

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, poll_until, write_token  # noqa: E402

TOKEN = "tok-instances-9"


def req(port, method, path, body=None):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"Authorization": f"Bearer {TOKEN}"}
    if body is not None:
        hdr["Content-Type"] = "application/scim+json"
    h.request(method, f"/scim/v2/okta/{path}", body=json.dumps(body) if body is not None else None, headers=hdr)
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, json.loads(raw) if raw else None


def body(env, c):
    tok = write_token(env, TOKEN, "okta.token")
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n    apply_delay: 1s\n"
    ports = [free_port(), free_port()]
    ds = []
    for i, p in enumerate(ports):
        cfg = env.write_config(path=os.path.join(env.dir, f"i{i}.yaml"), connectors=[conn],
                               raw_extra=f"scim:\n  listen: \"127.0.0.1:{p}\"\n")
        ds.append(env.daemon(config=cfg, label=f"instance{i}").start())
    for d in ds:
        d.wait_field("READY", "1", 20)
    a, b = ports

    ids = []
    for i in range(6):  # round robin, as a balancer would
        st, u = req(ports[i % 2], "POST", "Users", {"userName": f"op{i}@acme.example", "active": True})
        c.true(st == 201, f"POST op{i} through instance {i % 2}: {st}")
        ids.append(u["id"])
    st, _ = req(b, "POST", "Users", {"userName": "OP0@acme.example"})
    c.eq(409, st, "a userName created through A is taken through B")
    st, u = req(b, "GET", f"Users/{ids[0]}")
    c.eq((200, "op0@acme.example"), (st, u and u["userName"]), "a user created through A is read through B")

    # nested: CC-Support-CZ (users) is a member of CC-Support (the rule's)
    _, cz = req(a, "POST", "Groups", {"displayName": "CC-Support-CZ",
                                      "members": [{"value": i} for i in ids[:3]]})
    _, top = req(b, "POST", "Groups", {"displayName": "CC-Support", "members": [{"value": ids[3]}]})
    st, _ = req(a, "PATCH", f"Groups/{top['id']}", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                                    "Operations": [{"op": "add", "path": "members",
                                                                    "value": [{"value": cz["id"]}]}]})
    c.eq(204, st, "a group added to a group through the other instance")

    want = "\n".join(f"op{i}@acme.example|support|operator" for i in range(4))

    def roles():
        return env.q("SELECT u.username, t.slug, r.role FROM tenant_role r JOIN app_user u ON u.id = r.user_id "
                     "JOIN tenant t ON t.id = r.tenant_id ORDER BY 1")
    poll_until(lambda: roles() == want, 20, "grants through the nested group")
    c.eq(want, roles(), "op0..op2 through the nested group, op3 directly; op4, op5 in no group")
    # op4 and op5 match no rule: out of scope, never created
    c.eq("4|4", env.q("SELECT count(*), count(DISTINCT external_id) FROM app_user WHERE source = 'okta'"),
         "the four users in scope, each once")
    runs = env.q("SELECT count(*) FROM sync_run WHERE connector = 'okta' AND status = 'ok'")
    c.true(int(runs) >= 2, f"both instances ran the connector ({runs} ok runs), one at a time")
    c.eq("0", env.q("SELECT count(*) FROM sync_run WHERE connector = 'okta' AND status = 'failed'"),
         "no run failed")
    c.eq("0", env.q("SELECT count(*) FROM sync_run a JOIN sync_run b ON a.id < b.id "
                    "WHERE a.connector = 'okta' AND b.connector = 'okta' AND a.status = 'ok' AND b.status = 'ok' "
                    "AND a.started_at < b.finished_at AND b.started_at < a.finished_at"),
         "no two applying runs overlapped in time (the connector lock)")


if __name__ == "__main__":
    main("scim_instances", body, ldap=False)
