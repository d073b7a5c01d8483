#!/usr/bin/env python3
"""Persistent feeds placed among daemons (issue 19: "each held by exactly
one daemon at a time, taken over when that daemon goes, spread evenly";
docs/scaling.md, "Persistent feeds").

Three daemons, six persist: true connectors (one company each, the same
subtree), sync.lease 3 s.  Once all are up: every feed is held by exactly
one live daemon, which has exactly that many persistent searches open, and
no daemon holds more than ceil(6 / 3) + 1 = 3.  One holder is killed with
SIGKILL: within the lease plus one tick (a third of it) and the time to
connect, its feeds are held by the two others, none of which holds more
than ceil(6 / 2) + 1 = 4; and a change on a feed it held is applied by
its new holder."""
import math
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main, poll_until  # noqa: E402

FEEDS = 6
LEASE = 3


def holders(env):
    """connector -> holder of a live lease ('' when none)."""
    rows = env.q("SELECT connector || '|' || CASE WHEN lease_until > now() THEN holder ELSE '' END"
                 " FROM persist_feed ORDER BY 1")
    return dict(r.split("|", 1) for r in rows.splitlines() if r)


def ldap_sockets(pid, port):
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)


def settled(env, daemons):
    """Every feed held by a daemon of `daemons`, the holds stable for a
    lease, and each daemon's open searches equal to its holds."""
    pids = {f":{d.pid}": d for d in daemons}
    h = holders(env)
    if len(h) != FEEDS or any(not any(v.endswith(p) for p in pids) for v in h.values()):
        return None
    time.sleep(LEASE)
    if holders(env) != h:
        return None
    return h


def body(env, c):
    env.add_users("u", 4)
    env.ldif(env.group_ldif("CC-Support", [env.udn("u0")]))
    port = env.ldap_uri.rsplit(":", 1)[1].strip("/")
    names = [f"feed{i}" for i in range(FEEDS)]
    env.write_config(connectors=[env.ldap_connector(name=n, company=f"co{i}",
                                                    extra="changes: { persist: true, debounce: 1s }")
                                 for i, n in enumerate(names)],
                     sync={"lease": f"{LEASE}s"})
    rc, _, err = env.run_cli("migrate")
    c.eq(0, rc, f"migrate ({err.strip()})")
    ds = [env.daemon(label=x).start() for x in "ABC"]
    for d in ds:
        d.wait_field("READY", "1", 15)
    h = poll_until(lambda: settled(env, ds), 60, "every feed held by one of the three daemons, stably")
    per = {d.label: sum(1 for v in h.values() if v.endswith(f":{d.pid}")) for d in ds}
    bound = math.ceil(FEEDS / 3) + 1
    c.true(max(per.values()) <= bound, f"three daemons: holds {per}, none over ceil(6/3) + 1 = {bound}")
    socks = {d.label: ldap_sockets(d.pid, port) for d in ds}
    c.eq(per, socks, "each daemon has exactly as many LDAP connections open as feeds it holds")

    victim = max(ds, key=lambda d: per[d.label])
    mine = [k for k, v in h.items() if v.endswith(f":{victim.pid}")]
    rest = [d for d in ds if d is not victim]
    killed = time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)
    victim.wait_exit(5)
    h2 = poll_until(lambda: (lambda x: x if len(x) == FEEDS and all(
        any(v.endswith(f":{d.pid}") for d in rest) for v in x.values()) else None)(holders(env)),
        LEASE * 4 + 10, f"{victim.label}'s feeds taken over")
    took = time.monotonic() - killed
    c.true(took <= LEASE + LEASE / 3 + 3,
           f"{victim.label}'s {len(mine)} feeds held by the others {took:.1f}s after its SIGKILL "
           f"(lease {LEASE} s + a tick + connecting)")
    per2 = {d.label: sum(1 for v in h2.values() if v.endswith(f":{d.pid}")) for d in rest}
    c.true(max(per2.values()) <= math.ceil(FEEDS / 2) + 1,
           f"two daemons: holds {per2}, none over ceil(6/2) + 1 = {math.ceil(FEEDS / 2) + 1}")
    # the new holder's search rings: a change reaches a feed the victim held
    feed = mine[0]
    holder = next(d for d in rest if h2[feed].endswith(f":{d.pid}"))
    holder.wait_line(rf"{feed}: persist: persistent search open", 10)
    env.ldif(f"dn: {env.gdn('CC-Support')}\nchangetype: modify\nadd: member\nmember: {env.udn('u1')}\n\n",
             add=False)
    cid = env.q(f"SELECT id FROM company WHERE slug = 'co{names.index(feed)}'")
    poll_until(lambda: env.q("SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id"
                             f" WHERE u.username = 'u1' AND u.company_id = {cid}") == "1",
               15, f"u1's grant in {feed}'s company")
    c.ok(f"a change reaches {feed} through its new holder {holder.label}")
    for d in rest:
        d.signal(signal.SIGTERM)
        c.eq(0, d.wait_exit(10), f"{d.label}: SIGTERM exits 0")


if __name__ == "__main__":
    main("t_persist_placement", body)
