#!/usr/bin/env python3
"""A membership PATCH on a large group writes the change, not the group
(issue 16, Entra and Okta send one PATCH per member change): a group of
50,000 members gets one member added and one removed; afterwards exactly
one scim_member row is newer than the PATCH's start (the added one), the
removed one is gone and the other 49,999 rows are the same row versions
as before (a rewrite of the member list would give all 50,000 a new
xmin).  The time of the PATCH is printed, not asserted."""
import http.client
import json
import sys
import time

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-biggroup-31"
N = 50000
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def req(port, method, path, body=None):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    hdr = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    h.request(method, f"/scim/v2/okta/{path}", body=json.dumps(body) if body is not None else None, headers=hdr)
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, json.loads(raw) if raw else None


def body(env, c):
    tok = write_token(env, TOKEN, "okta.token")
    port = free_port()
    # apply_delay 1h: no run of 50,000 users competes with the PATCH
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n    apply_delay: 1h\n"
    cfg = env.write_config(connectors=[conn], raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    d = env.daemon(config=cfg, label="biggroup").start()
    d.wait_field("READY", "1", 20)

    st, g = req(port, "POST", "Groups", {"displayName": "Everyone"})
    c.eq(201, st, "the group is created")
    gid = g["id"]
    env.q(f"INSERT INTO scim_resource (connector, kind, name, resource) SELECT 'okta', 'User', "
          f"'u' || i || '@acme.example', jsonb_build_object('userName', 'u' || i || '@acme.example') "
          f"FROM generate_series(1, {N}) i")
    env.q(f"INSERT INTO scim_member (connector, group_id, member_id) SELECT 'okta', '{gid}', id "
          f"FROM scim_resource WHERE connector = 'okta' AND kind = 'User'")
    st, new = req(port, "POST", "Users", {"userName": "newcomer@acme.example"})
    c.eq(201, st, "the user to add is created")
    gone = env.q("SELECT id FROM scim_resource WHERE connector = 'okta' AND name = 'u7@acme.example'")
    before = env.q(f"SELECT txid_current()")

    t0 = time.monotonic()
    st, _ = req(port, "PATCH", f"Groups/{gid}", {"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": new["id"]}]},
        {"op": "remove", "path": f"members[value eq \"{gone}\"]"}]})
    took = time.monotonic() - t0
    c.eq(200, st, f"PATCH add one, remove one on a group of {N}: 200 ({took:.2f} s)")

    c.eq(str(N), env.q(f"SELECT count(*) FROM scim_member WHERE group_id = '{gid}'"), f"{N} members after")
    c.eq("0", env.q(f"SELECT count(*) FROM scim_member WHERE group_id = '{gid}' AND member_id = '{gone}'"),
         "the removed member is gone")
    c.eq(f"1|{new['id']}", env.q(f"SELECT count(*), min(member_id::text) FROM scim_member "
                                 f"WHERE group_id = '{gid}' AND xmin::text::bigint > {before}"),
         "one row written: the added member's (the other 49,999 rows untouched)")


if __name__ == "__main__":
    main("scim_biggroup", body, ldap=False)
