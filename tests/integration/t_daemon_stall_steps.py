#!/usr/bin/env python3
"""SIGTERM and the watchdog while the directory stalls (issue 12 point 1;
service.md: exit 0 within 5 seconds of SIGTERM; reliability.md cases 2
and 22).

A directory that accepts the connection and then stops answering — a TCP
stall, not a close — at each step of a pull: before StartTLS is answered,
during the bind (after the TLS handshake), and in the middle of the users
search; and in the TLS handshake that follows StartTLS, which libldap
can only do blocking (on a helper thread).  tests/harness/tcpproxy.py
holds the bytes back ("stall 0", "stall 500", "stallapp 1", "stall N").  The daemon runs as systemd would run it:
WatchdogSec=4 s (WATCHDOG_USEC=4000000), the connector's timeout 15 s,
run_timeout 20 s — so during the 6 s observed neither timeout fires, and
all the daemon can do is wait for the server.  While it waits:

  * WATCHDOG=1 keeps coming at half of WatchdogSec (every 2 s; the
    connector calls the progress hook every quarter second, so a ping is
    at most that late: gaps up to 2.6 s are accepted);
  * a SIGTERM gets STOPPING=1 and exit 0 within 2 s (the contract says 5).

Each stall is first checked to be where it claims (a positive control: a
`sync` with a 2 s timeout through the same proxy mode names the step in
its error), so that the daemon runs below really stall at that step.
The range-read step needs Active Directory; it shares the waiting code
(wait_result) with the search and is covered by ctest_ad_range."""
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness")
sys.path.insert(0, HARNESS)
from fakesystemd import Fail, main, poll_until  # noqa: E402

USERS = 300
WATCHDOG_USEC = 4_000_000
MAX_GAP = 2.6  # half of WatchdogSec, plus a slice and scheduling slack
OBSERVE = 6.0  # seconds of stall watched before the SIGTERM


class ModeProxy:
    """tests/harness/tcpproxy.py in front of the test slapd, its mode file
    switched between runs (see tcpproxy.py for the modes)."""

    def __init__(self, env):
        self.dir = env.dir
        self.mode_file = os.path.join(env.dir, "proxy.mode")
        self.log_file = os.path.join(env.dir, "proxy.log")
        port_file = os.path.join(env.dir, "proxy.port")
        self.set("pass")
        target = re.match(r"ldap://([^/]+)", env.ldap_uri).group(1)
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HARNESS, "tcpproxy.py"),
                                      "--target", target, "--port-file", port_file,
                                      "--mode-file", self.mode_file, "--log", self.log_file])
        env.cleanups.append(self.close)
        poll_until(lambda: os.path.exists(port_file) and os.path.getsize(port_file) > 0, 5, "the proxy's port")
        with open(port_file) as f:
            self.uri = f"ldap://127.0.0.1:{f.read().strip()}"

    def set(self, mode):
        with open(self.mode_file + ".tmp", "w") as f:
            f.write(mode + "\n")
        os.replace(self.mode_file + ".tmp", self.mode_file)

    def log(self):
        try:
            with open(self.log_file) as f:
                return f.read()
        except OSError:
            return ""

    def last_down(self):
        """bytes_down of the last connection that ended."""
        downs = re.findall(r"bytes_down=(\d+) bytes_up=\d+ end=", self.log())
        if not downs:
            raise Fail("the proxy logged no finished connection")
        return int(downs[-1])

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


def config(env, proxy, timeout):
    return env.write_config(
        connectors=[env.ldap_connector(uri=proxy.uri, page_size=10, timeout=timeout)],
        sync={"retry_min": "30s", "retry_max": "60s", "interval": "1h", "run_timeout": "20s"})


def watch_stall(env, c, proxy, mode, step):
    """The daemon through one stall: pings during it, then SIGTERM."""
    what = f"stall {step}"
    config(env, proxy, "15s")
    proxy.set(mode)
    stalls0 = proxy.log().count("stalled")
    d = env.daemon(watchdog_usec=WATCHDOG_USEC, label=what).start()
    d.wait_field("READY", "1", 10)
    poll_until(lambda: proxy.log().count("stalled") > stalls0, 10, f"the proxy to stall ({what})")
    stalled_at = time.monotonic()
    time.sleep(OBSERVE)  # watching a duration: the pings it brings are the point
    end = time.monotonic()
    pings = [m.t for m in d.messages() if m.get("WATCHDOG") == "1" and stalled_at <= m.t <= end]
    edges = [stalled_at] + pings + [end]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    c.true(len(pings) >= 2 and gap <= MAX_GAP,
           f"{what}: WATCHDOG=1 keeps coming during the stall ({len(pings)} pings in {OBSERVE:.0f} s, "
           f"longest gap {gap:.2f} s)")
    c.true(d.alive() and not any(s.startswith("corp failed") for s in d.statuses()),
           f"{what}: the run is still waiting for the server (no timeout yet)")
    mark = d.mark()
    term_at = time.monotonic()
    d.signal(signal.SIGTERM)
    stopping = d.wait_field("STOPPING", "1", 5, since=mark)
    c.true(stopping.t - term_at <= 2.0, f"{what}: STOPPING=1 {stopping.t - term_at:.2f} s after SIGTERM")
    rc = d.wait_exit(5)
    took = time.monotonic() - term_at
    c.eq(0, rc, f"{what}: SIGTERM exits 0")
    c.true(took <= 2.0, f"{what}: the daemon exited {took:.2f} s after SIGTERM (within 2 s)")


def body(env, c):
    env.add_users("u", USERS, group="CC-Support")
    proxy = ModeProxy(env)
    config(env, proxy, "15s")
    rc, out, err = env.run_cli("sync")
    c.eq(0, rc, f"a first sync through the proxy ({err.strip()[-300:]})")
    total = proxy.last_down()
    steps = [("stall 0", "during StartTLS"),
             ("stall 500", "during StartTLS"),  # in the TLS handshake after it
             ("stallapp 1", "during the bind"),
             (f"stall {total // 2}", "during the users search")]

    # positive controls: each mode stalls the step it is named after
    config(env, proxy, "2s")
    for mode, step in steps:
        proxy.set(mode)
        rc, out, err = env.run_cli("sync")
        c.eq(1, rc, f"control, {mode}: the sync fails")
        c.has(f"no answer within 2 s {step}", out + err, f"control, {mode}: the stall is {step}")
    proxy.set("pass")

    for mode, step in steps:
        watch_stall(env, c, proxy, mode, step)


if __name__ == "__main__":
    main("t_daemon_stall_steps", body)
