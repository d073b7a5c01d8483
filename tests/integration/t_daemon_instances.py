#!/usr/bin/env python3
"""Two daemons on one database (semantics.md "One writer"; reliability.md
cases 20 and 21; issue 19, the shared queue).

Both run the same connector every 2 s against a slow directory (a run
takes seconds).  The queue lets exactly one take it at a time: the other
says who runs it and writes nothing — no `skipped_locked` rows.  Then the
one that is syncing is killed with SIGKILL in the middle of its run: once
its lease (sync.lease, 3 s here) has run out the other takes the
connector over, and the result is the same as a clean run."""
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main  # noqa: E402

USERS = 1500


def corp_of(m):
    st = m.get("STATUS") or ""
    return st if st.startswith("corp ") else ""


def in_run(st):
    """A STATUS= of a run in progress: its start, or what it does now
    (issue 21: `corp reading users: 120 (page 12), 1 s`)."""
    return st.startswith("corp running since") or re.match(
        r"corp (connecting|reading|resolving|rules|loading|diff|applying)\b", st) is not None


def syncs(d, killed_at=None):
    """The intervals in which daemon d held the connector: from its
    "running since" STATUS to the outcome, when that was ok or failed
    ("running on" another daemon is not one); a run cut by SIGKILL ends
    then."""
    out = []
    start = None
    for m in d.messages():
        st = corp_of(m)
        if st.startswith("corp running since"):
            start = m.t
        elif in_run(st):
            continue
        elif st and start is not None:
            if " ok " in st or " failed " in st:
                out.append((start, m.t))
            start = None
    if start is not None and killed_at is not None:
        out.append((start, killed_at))
    return out


def body(env, c):
    env.add_users("u", USERS, group="CC-Support")
    slow = env.ldap_proxy(delay=0.01)
    env.write_config(connectors=[env.ldap_connector(uri=env.proxy_uri(slow), page_size=10)],
                     sync={"interval": "2s", "jitter": "0s", "lease": "3s"})
    rc, _, err = env.run_cli("migrate")
    c.eq(0, rc, f"migrate ({err.strip()})")

    a = env.daemon(label="A").start()
    a.wait_status(r"^corp running since", 10)
    b = env.daemon(label="B").start()
    b.wait_field("READY", "1", 10)
    held = b.wait_status(r"^corp running on [^ ;]+:%d\b" % a.pid, 10)
    c.ok(f"B leaves the connector to A, and says so: [{held.get('STATUS')}]")
    a.wait_status(rf"^corp ok {USERS} users \+{USERS} ~0 -0 at ", 60)
    c.ok("A's first run completes")
    time.sleep(3)  # a few more turns of the queue: A's or B's, never both
    c.eq("0", env.q("SELECT count(*) FROM sync_run WHERE status = 'skipped_locked'"),
         "no skipped_locked rows: the daemon that did not take the connector did not try it")

    # ---- whichever syncs next is killed in the middle of its run
    running = {}

    def someone_running():
        for d in (a, b):
            ms = [m for m in d.messages() if corp_of(m)]
            if ms and in_run(corp_of(ms[-1])):
                running["d"], running["m"] = d, ms[-1]
                return True
        return False

    deadline = time.monotonic() + 20
    while not someone_running():
        if time.monotonic() > deadline:
            raise AssertionError("neither daemon started another run within 20 s")
        time.sleep(0.05)
    victim, other = (a, b) if running["d"] is a else (b, a)
    # one second into its run: it holds the lock, no skip outcome came
    time.sleep(max(0.0, running["m"].t + 1.0 - time.monotonic()))
    if in_run(corp_of([m for m in victim.messages() if corp_of(m)][-1])):
        c.ok(f"{victim.label} is in the middle of a run")
    else:
        c.bad(f"{victim.label}'s run ended before the kill (a skipped tick?)")
    killed = time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)
    victim.wait_exit(5)
    mark = other.mark()
    ok = other.wait_status(rf"^corp ok {USERS} users \+0 ~0 -0 at ", 3 + 2 + 15, since=mark)
    c.ok(f"{other.label} takes over after the SIGKILL of {victim.label} "
         f"({ok.t - killed:.1f}s later: the lease's rest plus one run)")
    started = [m.t for m in other.messages(mark) if corp_of(m).startswith("corp running since")]
    c.true(started and started[0] - killed <= 3 + 0.5,
           f"... once the lease has run out (lease 3 s; {started[0] - killed if started else -1:.1f}s after the kill)")
    c.true(other.wait_line(r"taking over from [^ ]+:%d, whose lease ran out" % victim.pid, 5),
           f"{other.label} says whose connector it took over")

    # ---- never two at once: neither in what the daemons said nor in the rows
    spans = sorted([(s, e, "A") for s, e in syncs(a, killed if victim is a else None)]
                   + [(s, e, "B") for s, e in syncs(b, killed if victim is b else None)])
    overlaps = [(x, y) for x, y in zip(spans, spans[1:]) if y[0] < x[1]]
    c.true(len(spans) >= 3 and not overlaps, f"{len(spans)} runs with the lock, none overlapping {overlaps}")
    c.eq("0", env.q("SELECT count(*) FROM sync_run x JOIN sync_run y ON x.id < y.id"
                    " WHERE x.status = 'ok' AND y.status = 'ok'"
                    " AND tstzrange(x.started_at, x.finished_at) && tstzrange(y.started_at, y.finished_at)"),
         "no two ok sync_run rows overlap in time")
    c.eq(f"{USERS}|{USERS}", env.q("SELECT count(*) || '|' || count(*) FILTER (WHERE active) FROM app_user"),
         "the killed run left the state of a clean run")
    c.eq(str(USERS * 3), env.q("SELECT (SELECT count(*) FROM tenant_role) + (SELECT count(*) FROM channel_grant)"),
         "every grant in place (operator + webchat + email per user)")
    other.signal(signal.SIGTERM)
    c.eq(0, other.wait_exit(10), f"{other.label}: SIGTERM exits 0")


if __name__ == "__main__":
    main("t_daemon_instances", body)
