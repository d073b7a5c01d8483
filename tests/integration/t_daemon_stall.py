#!/usr/bin/env python3
"""A directory that stops answering in the middle of a run (reliability.md
case 2), and what the watchdog sees (case 22).

The directory sits behind a proxy that stops passing bytes (a stalled TCP
connection) while a run reads its pages.  The connector's timeout (2 s)
fires: the run fails, STATUS= says "no answer within 2 s", the daemon
keeps running and retries with backoff; when the directory answers again
the retry succeeds.

What the watchdog sees: the LDAP connector waits for an answer in one
blocking call (up to timeout + 1 s), so no ping can come from it
meanwhile — pings come only from the main thread, never from a helper
that would keep pinging for a wedged loop (case 22):
  * WATCHDOG_USEC=1s: the pings stop for the stall (more than 1 s) and
    resume after it; the daemon warned at start that its timeout does not
    fit in half of WatchdogSec (systemd would restart it here).
  * WATCHDOG_USEC=8s (above 2 x (timeout + 1)): no warning, and no gap in
    the pings reaches WatchdogSec (systemd keeps it): "the pings continue"
    as far as systemd can tell.  The longest gap is printed."""
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
    c.true(longest > 1.5, f"WatchdogSec 1 s: no ping while the connector is stuck ({longest:.2f}s): "
                          "a wedged main thread stops the pings")
    c.true(max(gaps[-3:]) < 0.65, "WatchdogSec 1 s: the pings resume at every 0.5 s after it")
    c.has("set WatchdogSec= above 6 s (it is 1 s)", d.stderr_text(),
          "WatchdogSec 1 s: the daemon warned that a 2 s timeout does not fit")

    d, longest, gaps = stall_once(env, c, 8_000_000)
    c.true(longest < 8.0, f"WatchdogSec 8 s: no gap reaches WatchdogSec during the stall ({longest:.2f}s)")
    c.hasnt("set WatchdogSec=", d.stderr_text(), "WatchdogSec 8 s: no warning")


if __name__ == "__main__":
    main("t_daemon_stall", body)
