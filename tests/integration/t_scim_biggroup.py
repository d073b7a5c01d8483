#!/usr/bin/env python3
"""A membership PATCH on a large group reads and writes the change, not
the group (issue 16, Entra and Okta send one PATCH per member change): a
group of 50,000 members gets one member added and one removed.

- The answer is 204 No Content with the new version's ETag (RFC 7644
  3.5.2; what Entra and Okta document), no member list.
- PostgreSQL read at most a handful of scim_member rows for it
  (pg_stat_user_tables: seq_tup_read + idx_tup_fetch; reading the group
  whole reads all 50,000, once per read) — counted once the same
  statistics show the PATCH's insert and delete, which the PATCH's
  backend reports together with its reads.
- Afterwards exactly one scim_member row is newer than the PATCH's start
  (the added one), the removed one is gone and the other 49,999 rows are
  the same row versions as before (a rewrite of the member list would give
  all 50,000 a new xmin).
- With ?excludedAttributes=members the answer is 200 and the group
  without members, read the same narrow way.
The time of the PATCH is printed, not asserted."""
import http.client
import json
import sys
import time

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, poll_until, write_token  # noqa: E402

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
    if method == "PATCH":  # its answer as sent: status, headers, body bytes
        return r.status, dict(r.getheaders()), raw
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
    stats = ("SELECT seq_tup_read + coalesce(idx_tup_fetch, 0), n_tup_ins, n_tup_del FROM pg_stat_user_tables "
             "WHERE relname = 'scim_member'")
    read0, ins0, del0 = map(int, env.q(stats).split("|"))

    t0 = time.monotonic()
    st, hd, raw = req(port, "PATCH", f"Groups/{gid}", {"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": new["id"]}]},
        {"op": "remove", "path": f"members[value eq \"{gone}\"]"}]})
    took = time.monotonic() - t0
    c.eq((204, 0, 'W/"2"'), (st, len(raw), hd.get("ETag")),
         f"PATCH add one, remove one on a group of {N}: 204, no body, the new ETag ({took:.2f} s)")
    # the listener's backend reports its counts when its transaction ends
    # (PostgreSQL 15: within a second); the insert and the delete come in
    # the same report as the reads
    poll_until(lambda: list(map(int, env.q(stats).split("|")))[1:] == [ins0 + 1, del0 + 1], 15,
               "the PATCH's statistics reported")
    read = int(env.q(stats).split("|")[0]) - read0
    c.true(read <= 10, f"the PATCH read {read} scim_member rows (at most 10; the whole group is {N})")
    c.eq(str(N), env.q(f"SELECT count(*) FROM scim_member WHERE group_id = '{gid}'"), f"{N} members after")
    c.eq("0", env.q(f"SELECT count(*) FROM scim_member WHERE group_id = '{gid}' AND member_id = '{gone}'"),
         "the removed member is gone")
    c.eq(f"1|{new['id']}", env.q(f"SELECT count(*), min(member_id::text) FROM scim_member "
                                 f"WHERE group_id = '{gid}' AND xmin::text::bigint > {before}"),
         "one row written: the added member's (the other 49,999 rows untouched)")

    read0 = int(env.q(stats).split("|")[0])
    st, hd, raw = req(port, "PATCH", f"Groups/{gid}?excludedAttributes=members", {"schemas": [PATCH],
                      "Operations": [{"op": "add", "path": "members", "value": [{"value": gone}]}]})
    g = json.loads(raw) if raw else {}
    c.eq((200, "Everyone", False, 'W/"3"'), (st, g.get("displayName"), "members" in g, hd.get("ETag")),
         "PATCH ?excludedAttributes=members: 200, the group without members")
    poll_until(lambda: int(env.q(stats).split("|")[1]) == ins0 + 2, 15, "the second PATCH's statistics reported")
    read = int(env.q(stats).split("|")[0]) - read0
    c.true(read <= 10, f"that PATCH read {read} scim_member rows (at most 10)")


if __name__ == "__main__":
    main("scim_biggroup", body, ldap=False)
