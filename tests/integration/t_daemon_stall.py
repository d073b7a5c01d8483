#!/usr/bin/env python3
"""A directory that stops answering in the middle of a run (reliability.md
case 2), and what the watchdog sees (case 22).

The directory sits behind a proxy that stops passing bytes (a stalled TCP
connection) while a run reads its pages.  The connector's timeout (2 s)
fires: the run fails, STATUS= says "no answer within 2 s", the daemon
keeps running and retries with backoff; when the directory answers again
the retry succeeds.

What the watchdog sees: the LDAP connector waits for the server in
slices of a quarter second and calls the progress hook between them, on
the main thread (the pings never come from a helper thread, which would
keep pinging for a wedged loop: case 22).  So the pings go on through
the stall at their usual cadence, whatever WatchdogSec is:
  * WATCHDOG_USEC=1s: no gap in the pings reaches WatchdogSec during the
    stall (before this, the connector blocked for the whole timeout and
    the daemon had to warn that systemd would restart it).
  * WATCHDOG_USEC=8s: the same, at every 4 s.
The longest gap is printed.  (Each step of a pull stalled in turn, and
SIGTERM during the stall: t_daemon_stall_steps.py.)"""
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main  # noqa: E402

USERS = 600


def stall_once(env, c, wd_usec):
    what = f"WATCHDOG_USEC={wd_usec}"
    proxy = env.ldap_proxy(delay=0.005)
    env.write_config(connectors=[env.ldap_connector(uri=env.proxy_uri(proxy), page_size=10, timeout="2s")],
                     sync={"retry_min": "1s", "retry_max": "4s", "interval": "1h"})
    d = env.daemon(watchdog_usec=wd_usec, label=what).start()
    d.wait_field("READY", "1", 10)
    running = d.wait_status(r"^corp running since", 10)
    time.sleep(max(0.0, running.t + 0.5 - time.monotonic()))  # some pages into the run
    stalled_at = time.monotonic()
    proxy.stall()
    failed = d.wait_status(r"^corp failed \(.*no answer within 2 s", 10)
    took = failed.t - stalled_at
    c.true(1.8 <= took <= 4.5, f"{what}: the 2 s timeout fires on the stalled connection ({took:.2f}s)")
    c.true(d.alive(), f"{what}: the daemon keeps running")
    proxy.resume()
    d.wait_status(rf"^corp ok {USERS} users \+", 15, since=d.messages().index(failed))
    c.ok(f"{what}: the retry succeeds once the directory answers again")
    # pings from the start of the run until 2 periods after the recovery
    end = time.monotonic() + 2 * wd_usec / 1e6 / 2 + 0.2
    d.wait_for(lambda m: m.get("WATCHDOG") == "1" and m.t > end, 2 * wd_usec / 1e6, "pings after the recovery")
    pings = [m.t for m in d.messages() if m.get("WATCHDOG") == "1" and m.t >= running.t]
    edges = [running.t] + pings
    gaps = [b - a for a, b in zip(edges, edges[1:])]
    during = [b - a for a, b in zip(edges, edges[1:]) if a <= failed.t and b >= stalled_at]
    longest = max(during) if during else 0.0
    print(f"{what}: the longest gap between pings around the stall: {longest:.2f}s "
          f"(stall {stalled_at - running.t:.2f}s into the run, failed {took:.2f}s later)", flush=True)
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), f"{what}: SIGTERM exits 0")
    return d, longest, gaps


def body(env, c):
    env.add_users("u", USERS, group="CC-Support")
    rc, _, err = env.run_cli("migrate", config=env.write_config())
    c.eq(0, rc, f"migrate ({err.strip()})")

    d, longest, gaps = stall_once(env, c, 1_000_000)
    c.true(longest < 0.9, f"WatchdogSec 1 s: the pings go on while the server is silent ({longest:.2f}s)")
    c.true(max(gaps[-3:]) < 0.65, "WatchdogSec 1 s: the pings come at every 0.5 s after it")
    c.hasnt("set WatchdogSec=", d.stderr_text(), "WatchdogSec 1 s: no warning (nothing to warn about)")

    d, longest, gaps = stall_once(env, c, 8_000_000)
    c.true(longest < 4.5, f"WatchdogSec 8 s: the pings keep their 4 s cadence during the stall ({longest:.2f}s)")
    c.hasnt("set WatchdogSec=", d.stderr_text(), "WatchdogSec 8 s: no warning")

if __name__ == "__main__":
    main("t_daemon_stall", body)
