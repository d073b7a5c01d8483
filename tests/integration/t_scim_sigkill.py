#!/usr/bin/env python3
"""kill -9 in the middle of SCIM writes (issue 16): a group POSTed with
its members is one transaction, so after the daemon is killed at random
moments under a stream of such requests every stored group has all of
its members (none half-written), and every group whose 201 the client
saw is stored."""
import http.client
import json
import random
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-sigkill-3"


def post(port, path, body):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    h.request("POST", f"/scim/v2/okta/{path}", body=json.dumps(body),
              headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"})
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, json.loads(raw) if raw else None


def body(env, c):
    port = free_port()
    tok = write_token(env, TOKEN, "token")
    conn = f"  - name: okta\n    type: scim\n    token_file: {tok}\n    rate_limit: 0\n"
    cfg = env.write_config(connectors=[conn], raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    d = env.daemon(config=cfg).start()
    d.wait_field("READY", "1", 20)
    members = [{"value": post(port, "Users", {"userName": f"m{i}@acme.example"})[1]["id"]} for i in range(3)]
    d.signal(signal.SIGTERM)
    d.wait_exit(10)

    acked = []
    rnd = random.Random(16)
    for round_ in range(6):
        d = env.daemon(config=cfg, label=f"round{round_}").start()
        d.wait_field("READY", "1", 20)
        stop = threading.Event()

        def stream(r=round_):
            i = 0
            while not stop.is_set():
                name = f"G-{r}-{i}"
                i += 1
                try:
                    st, _ = post(port, "Groups", {"displayName": name, "members": members})
                    if st == 201:
                        acked.append(name)
                except (OSError, http.client.HTTPException):
                    pass
        t = threading.Thread(target=stream)
        t.start()
        time.sleep(rnd.uniform(0.2, 0.6))
        d.signal(signal.SIGKILL)
        d.wait_exit(10)
        stop.set()
        t.join()

    stored = env.q("SELECT count(*) FROM scim_resource WHERE kind = 'Group'")
    c.true(int(stored) >= len(acked) > 0, f"{len(acked)} groups acknowledged, {stored} stored")
    c.eq("0", env.q("SELECT count(*) FROM scim_resource g WHERE kind = 'Group' AND "
                    "(SELECT count(*) FROM scim_member m WHERE m.group_id = g.id) <> 3"),
         "every stored group has all three members: none half-written")
    names = set(env.q("SELECT name FROM scim_resource WHERE kind = 'Group'").split("\n"))
    c.eq([], [n for n in acked if n not in names], "every acknowledged group is stored")


if __name__ == "__main__":
    main("scim_sigkill", body, ldap=False)
