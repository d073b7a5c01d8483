#!/usr/bin/env python3
"""The scim connector keeps what it made of each user between the
daemon's runs and re-reads only the users whose version changed (issue
16's "1,000 creates applied ≤ 2 s" at 100k stored users: parsing every
stored resource on every run was most of the run).  Checked from the
outside: a stored resource edited behind the version's back (by SQL, as
no write of idsyncd does) is not seen by the daemon's next run — the
proof that the record was reused; a PATCH (a version bump) is; a DELETE
still deactivates (deleted_in_source); and a fresh process (`idsyncd
plan`, no records kept) does read the edited row."""
import http.client
import json
import sys

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, poll_until, write_token  # noqa: E402

TOKEN = "tok-cache-19"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
RULES = ("  - name: sales\n    match: { attribute: { department: \"^Sales$\" } }\n"
         "    tenant: sales\n    roles: [operator]\n")


def req(port, method, path, body=None):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    h.request(method, f"/scim/v2/okta/{path}", body=json.dumps(body) if body is not None else None, headers=hdr)
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, json.loads(raw) if raw else None


def body(env, c):
    tok = write_token(env, TOKEN, "okta.token")
    port = free_port()
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n    apply_delay: 1s\n"
    cfg = env.write_config(connectors=[conn], rules=RULES, raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    d = env.daemon(config=cfg, label="cache").start()
    d.wait_field("READY", "1", 20)

    def roles():
        return env.q("SELECT u.username FROM tenant_role r JOIN app_user u ON u.id = r.user_id ORDER BY 1")

    ids = {}
    for name, dept in (("u1", "Sales"), ("u2", "Sales"), ("u3", "Support")):
        st, u = req(port, "POST", "Users", {"userName": f"{name}@acme.example", ENT: {"department": dept}})
        c.eq(201, st, f"POST {name}")
        ids[name] = u["id"]
    poll_until(lambda: roles() == "u1@acme.example\nu2@acme.example", 15, "the first grants")
    # a slow POST (a loaded machine, the sanitizers) may have split the
    # three into two runs: the edit below must come after a run read u3
    poll_until(lambda: env.q("SELECT coalesce(max(users_seen), 0) FROM sync_run WHERE status = 'ok'") == "3",
               15, "a run that read all three users")

    # behind the version's back: no idsyncd write does this
    env.q(f"UPDATE scim_resource SET resource = jsonb_set(resource, '{{{ENT},department}}', '\"Sales\"') "
          f"WHERE id = '{ids['u3']}'")
    st, _ = req(port, "PATCH", f"Users/{ids['u2']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": f"{ENT}:department", "value": "Support"}]})
    c.eq(200, st, "PATCH u2 to Support")
    # one run applies both or neither: u2's grant goes; u3's would come in
    # the same run if its row were read again
    poll_until(lambda: "u2@" not in roles(), 15, "the run after the PATCH")
    c.eq("u1@acme.example", roles(),
         "the PATCHed user re-read (grant gone); the row edited without a version bump not (its record reused)")

    rc, out, err = env.run_cli("plan", config=cfg)
    c.eq(0, rc, f"plan exits 0 ({err.strip()[-200:]})")
    c.has("u3@acme.example", out, "a fresh process reads every row: plan grants u3 the edited department")

    c.eq(204, req(port, "DELETE", f"Users/{ids['u1']}")[0], "DELETE u1")
    poll_until(lambda: roles() == "", 15, "the run after the DELETE")
    c.eq("f|deleted_in_source", env.q("SELECT active, deactivation_reason FROM app_user "
                                      "WHERE username = 'u1@acme.example'"),
         "a deleted user is still deactivated through the kept records")


if __name__ == "__main__":
    main("scim_cache", body, ldap=False)
