#!/usr/bin/env python3
"""Issue 17 parts 3 and 4b under a running daemon: its heartbeat in
daemon_heartbeat (at start, at each run, every sync.heartbeat while idle —
2 s here, a minute by default; removed at a clean stop), `idsyncd status` saying whether a daemon runs
("daemon: running on HOST:PID (heartbeat 12 s ago)" or "no daemon
heartbeat for 10 min"), and STATUS= naming a held run and the command that
applies it."""
import json
import os
import re
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main, poll_until  # noqa: E402


def body(env, c):
    env.ldif(env.user_ldif("alice") + env.user_ldif("bob") + env.user_ldif("carol")
             + env.group_ldif("CC-Support", [env.udn("alice"), env.udn("bob"), env.udn("carol")]))
    # the idle beat's period is configurable (default 1m, test_config_ok):
    # 2 s, so that the test waits for a beat, not a minute
    cfg = env.write_config(sync={"interval": "1h", "retry_min": "30s", "retry_max": "1h", "heartbeat": "2s"})
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"^corp ok 3 users", 20)
    me = f"{socket.gethostname()}:{d.pid}"

    # ---- the heartbeat row of this instance, idle after its run
    row = env.q("SELECT instance, running IS NULL, now() - heartbeat_at < interval '10 s' FROM daemon_heartbeat")
    c.eq(f"{me}|t|t", row, "daemon_heartbeat: this instance, idle, beaten just now")
    rc, out, err = env.run_cli("status")
    print(out, end="")
    c.eq(0, rc, "status exits 0")
    c.true(re.search(r"^daemon: running on " + re.escape(me) + r" \(heartbeat \d+ s ago\)$", out, re.M),
           "status: the daemon runs, on this host and pid")
    rc, out, err = env.run_cli("status", "--format", "json")
    dm = json.loads(out).get("daemons") or [{}]
    c.eq((me, True, None), (dm[0].get("instance"), dm[0].get("running"), dm[0].get("syncing")),
         "json: daemons[0] is this instance, running, idle")

    # ---- a daemon that stopped beating (frozen; its beat aged by hand)
    d.signal(signal.SIGSTOP)
    env.q("UPDATE daemon_heartbeat SET heartbeat_at = now() - interval '10 min'")
    rc, out, err = env.run_cli("status")
    c.has(f"daemon: no daemon heartbeat for 10 min (last from {me})", out, "status: the heartbeat is stale")
    rc, out, err = env.run_cli("status", "--format", "json")
    c.eq(False, (json.loads(out).get("daemons") or [{}])[0].get("running"), "json: running false")
    d.signal(signal.SIGCONT)

    # ---- idle, it beats again within sync.heartbeat (the interval is an hour)
    poll_until(lambda: env.q("SELECT now() - heartbeat_at < interval '10 s' FROM daemon_heartbeat") == "t",
               15, "a heartbeat within sync.heartbeat (2 s) while idle", every=0.2)
    c.ok("the idle daemon beat again within sync.heartbeat")
    c.eq("1", env.q("SELECT count(*) FROM sync_run"), "... without running a connector")

    # ---- a run that a threshold holds: STATUS= says how to approve it
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace("max_deactivations: 1000000", "max_deactivations: 0"))
    env.ldif(f"dn: {env.udn('carol')}\nchangetype: delete\n", add=False)
    mk = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_field("READY", "1", 10, since=mk)
    d.signal(signal.SIGUSR1)
    m = d.wait_status(r"^corp held: ", 20, since=mk)
    held = env.q("SELECT run_id FROM held_plan")
    st = m.get("STATUS")
    print(f"STATUS={st}")
    c.true(re.match(r"^corp held: run " + held + r" \(1 deactivations over the limit of 0\): idsyncd approve "
                    + held + r"; retry \d\d:\d\d:\d\d$", st or ""), f"STATUS= names the held run [{st}]")
    rc, out, err = env.run_cli("status")
    c.has(f"held: run {held} (1 deactivations over the limit of 0): idsyncd approve {held}", out,
          "status: the held run and the command")
    c.eq(3, rc, "status exits 3 while the run is held")

    # ---- a clean stop removes the heartbeat
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(10), "SIGTERM exits 0")
    c.eq("0", env.q("SELECT count(*) FROM daemon_heartbeat"), "the heartbeat row is gone after a clean stop")
    rc, out, err = env.run_cli("status")
    c.has("daemon: no daemon heartbeat (none running, or it stopped cleanly)", out, "status: no daemon")


if __name__ == "__main__":
    main("t_daemon_heartbeat", body)
