#!/usr/bin/env python3
"""The daemon's start (service.md, "The daemon"): a bad config exits 78
before READY=1 with ERRNO=; a database that is down at start is retried
with STATUS= saying so, and READY=1 comes only once it answers AND its
schema is current (migrate: manual here, so an operator's `idsyncd
migrate` is what unblocks it); the watchdog is fed while waiting; a SIGHUP
while waiting takes a corrected conninfo at once; SIGTERM while waiting
exits 0."""
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main  # noqa: E402


def body(env, c):
    env.ldif(env.user_ldif("alice") + env.group_ldif("CC-Support", [env.udn("alice")]))

    # ---- an invalid configuration: exit 78, never READY
    bad = env.write_config(path=os.path.join(env.dir, "bad.yaml"),
                           raw_extra="bogus_key: 1\n")
    d = env.daemon(config=bad, label="bad-config").start()
    c.eq(78, d.wait_exit(10), "an invalid config exits 78 (EX_CONFIG)")
    m = d.wait_for(lambda m: "ERRNO" in m.fields, 2, "ERRNO=")
    c.eq("22", m.get("ERRNO"), "ERRNO=EINVAL for the invalid config")
    c.true(all("READY" not in x.fields for x in d.messages()), "no READY=1 from an invalid config")
    c.has("bogus_key", d.stderr_text(), "stderr names the unknown key")

    # ---- the database is down at start: a closed port (bound, not
    # listening) where PostgreSQL "starts" later (the proxy listens)
    proxy = env.pg_proxy(listen=False)
    cfg = env.write_config(conninfo=env.conninfo_via(proxy), migrate="manual",
                           sync={"retry_min": "1s", "retry_max": "4s"})
    d = env.daemon(config=cfg, watchdog_usec=1_000_000, label="db-down").start()
    d.wait_status(r"waiting for the database: .*(refused|connect)", 10)
    m2 = d.wait_status(r"waiting for the database", 10, since=d.mark())
    c.has("retry in", m2.get("STATUS"), "STATUS= says when it retries")
    c.true(all("READY" not in x.fields for x in d.messages()), "no READY=1 while the database is down")
    c.true(d.alive(), "the daemon keeps waiting (does not exit)")

    # the database answers, but its schema is empty and migrate is manual
    mark = d.mark()
    proxy.listen()
    m3 = d.wait_status(r"waiting for the database: .*(schema|migrat)", 15, since=mark)
    c.ok(f"STATUS= then says why: {m3.get('STATUS')}")
    c.true(all("READY" not in x.fields for x in d.messages()), "no READY=1 on an old schema")

    # the watchdog is fed while waiting: WATCHDOG_USEC=1s -> every 0.5 s
    pings = [x.t for x in d.messages() if x.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    c.true(len(pings) >= 4 and max(gaps) < 0.65,
           f"WATCHDOG=1 while waiting for the database: {len(pings)} pings, max gap "
           f"{max(gaps) if gaps else 0:.3f}s")

    # an operator migrates: READY=1 follows, and only after it
    rc, out, err = env.run_cli("migrate", config=env.write_config(
        path=os.path.join(env.dir, "direct.yaml")))
    c.eq(0, rc, f"idsyncd migrate exits 0 ({err.strip()})")
    migrated = time.monotonic()
    ready = d.wait_field("READY", "1", 10)
    c.true(ready.t > migrated, "READY=1 came after the schema was brought up to date")
    # the newest migration of the tree (config/migrations/NNN_*.sql)
    newest = max(int(f.split("_")[0]) for f in os.listdir(os.path.join(os.environ["IDS_SRC"], "config", "migrations"))
                 if f.endswith(".sql"))
    c.eq(str(newest), env.q("SELECT max(version) FROM schema_migrations"), "the schema is current at READY=1")
    c.eq(d.pid, ready.pid, "READY=1 comes from the main pid")
    run = d.wait_status(r"^corp ok 1 users \+1 ~0 -0 at \d\d:\d\d:\d\d$", 15)
    c.true(run.t >= ready.t, "the first run comes right after READY=1")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")

    # ---- a wrong conninfo fixed by SIGHUP while waiting: no READY before,
    # READY=1 soon after (no waiting for the backoff to end)
    refused = env.pg_proxy(listen=False)
    cfg = env.write_config(conninfo=env.conninfo_via(refused),
                           sync={"retry_min": "30s", "retry_max": "1h"})
    d = env.daemon(config=cfg, label="db-fixed").start()
    d.wait_status(r"waiting for the database.*retry in 30 s", 10)
    env.write_config()  # the right conninfo
    hup = time.monotonic()
    d.signal(signal.SIGHUP)
    ready = d.wait_field("READY", "1", 5)
    c.true(ready.t - hup < 3, f"a corrected conninfo is used at once on SIGHUP ({ready.t - hup:.2f}s)")
    c.true(all("RELOADING" not in x.fields for x in d.messages()),
           "no RELOADING=1 before READY=1 (systemd would read it as a reload of a started service)")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")

    # ---- SIGTERM while waiting for the database: a clean exit
    cfg = env.write_config(conninfo=env.conninfo_via(refused))
    d = env.daemon(config=cfg, label="db-wait-term").start()
    d.wait_status(r"waiting for the database", 10)
    t = time.monotonic()
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM while waiting for the database exits 0")
    c.true(time.monotonic() - t < 2, "... at once")
    d.wait_field("STOPPING", "1", 2)
    c.ok("STOPPING=1 sent")


if __name__ == "__main__":
    main("t_daemon_start", body)
