#!/usr/bin/env python3
"""Two daemons on one database (semantics.md "One writer"; reliability.md
cases 20 and 21).

Both run the same connector every 2 s against a slow directory (a run
takes seconds).  The advisory lock lets exactly one sync at a time: the
other's ticks are `skipped_locked` sync_run rows and nothing else.  Then
the one that is syncing is killed with SIGKILL in the middle of its run:
the other takes over on its next tick, and the result is the same as a
clean run."""
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
    return st.startswith("corp running") or re.match(
        r"corp (connecting|reading|resolving|rules|loading|diff|applying)\b", st) is not None


def syncs(d, killed_at=None):
    """The intervals in which daemon d held the connector: from its
    "running" STATUS to the outcome, when that was ok or failed (a
    skipped tick never had the lock); a run cut by SIGKILL ends then."""
    out = []
    start = None
    for m in d.messages():
        st = corp_of(m)
        if st.startswith("corp running"):
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
                     sync={"interval": "2s", "jitter": "0s"})
    rc, _, err = env.run_cli("migrate")
    c.eq(0, rc, f"migrate ({err.strip()})")

    a = env.daemon(label="A").start()
    a.wait_status(r"^corp running since", 10)
    b = env.daemon(label="B").start()
    b.wait_field("READY", "1", 10)
    skip = b.wait_status(r"^corp skipped \(another instance is syncing it\) at ", 10)
    c.ok(f"B skips while A syncs: [{skip.get('STATUS')}]")
    a.wait_status(rf"^corp ok {USERS} users \+{USERS} ~0 -0 at ", 60)
    c.ok("A's first run completes")

    rows = env.q("SELECT count(*), count(users_seen), count(finished_at) FROM sync_run"
                 " WHERE status = 'skipped_locked'")
    n, with_counts, finished = (int(x) for x in rows.split("|"))
    c.true(n >= 1, f"B's skipped ticks are skipped_locked sync_run rows ({n})")
    c.eq((0, n), (with_counts, finished), "a skipped_locked row has no counts (and is finished)")
    c.eq("0", env.q("SELECT count(*) FROM audit_log a JOIN sync_run r ON r.id = a.run_id"
                    " WHERE r.status = 'skipped_locked'"), "... and no audit rows: B wrote nothing else")

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
    ok = other.wait_status(rf"^corp ok {USERS} users \+0 ~0 -0 at ", 2 + 15, since=mark)
    c.ok(f"{other.label} takes over after the SIGKILL of {victim.label} "
         f"({ok.t - killed:.1f}s later: its next tick plus one run)")
    started = [m.t for m in other.messages(mark) if corp_of(m).startswith("corp running")]
    c.true(started and started[0] - killed <= 2 + 0.5,
           f"... on its next tick (interval 2 s; {started[0] - killed if started else -1:.1f}s after the kill)")

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
