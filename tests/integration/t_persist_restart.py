#!/usr/bin/env python3
"""changes.persist: the directory goes away and comes back (issue 14:
"reconnecting with backoff when it drops").

A slapd of this test's own (the shared one stays up for the others) is
stopped under a daemon whose persistent search is open: the daemon says
so once, retries with backoff, and once slapd is back (restarted: its
syncprov session log is gone, so the refresh from the stored cookie is a
present phase) it reconnects; a member added after slapd came back but
before the search reopened is granted — the reopened search's refresh
rings for it, the run reads it from the stored cursor.  Then a stored
cursor slapd refuses (newer than its state): the refusal rings once, the
search waits for the run's new cursor (no reconnect loop), and the run
resets the feed — which failed before (the refreshOnly feed's second
whole users refresh skipped every user as "seen" and swept them as gone).
/metrics follows the search up and down."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import free_port, main, metric, poll_until, skip_or_fail  # noqa: E402

SRC = os.environ.get("IDS_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLAPD_SH = os.path.join(SRC, "tests", "harness", "slapd.sh")


def slapd_sh(cmd, d):
    r = subprocess.run(["bash", SLAPD_SH, cmd, d], capture_output=True, text=True,
                       env=dict(os.environ, SLAPD_PORT_MIN=str(10000 + (os.getpid() % 100) * 100)))
    if r.returncode != 0:
        raise RuntimeError(f"slapd.sh {cmd}: {r.stderr.strip()}")


def private_slapd():
    """Starts this test's slapd and points the environment at it."""
    if not os.path.exists("/usr/sbin/slapd") or not os.environ.get("IDS_TEST_PG_CONNINFO"):
        skip_or_fail("t_persist_restart: no slapd or no test PostgreSQL")
    d = tempfile.mkdtemp(prefix="t_persist_restart.")
    os.chmod(d, 0o755)
    atexit.register(lambda: (subprocess.run(["bash", SLAPD_SH, "stop", d], capture_output=True),
                             shutil.rmtree(d, ignore_errors=True)))
    slapd_sh("start", d)
    with open(os.path.join(d, "slapd.env")) as f:
        for line in f:
            if line.startswith("export "):
                k, v = line[7:].strip().split("=", 1)
                os.environ[k] = v.strip("'")
    return d




def granted(env, uid):
    return env.q("SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id"
                 f" WHERE r.role = 'operator' AND u.username = '{uid}'") == "1"


def body(env, c, sdir):
    env.add_users("u", 5)
    env.ldif(env.group_ldif("CC-Support", [env.udn("u0")]))
    mport = free_port()
    env.write_config(connectors=[env.ldap_connector(extra="changes: { persist: true, debounce: 1s }")],
                     raw_extra=f"metrics:\n  listen: \"127.0.0.1:{mport}\"\n")
    d = env.daemon(label="persist").start()
    d.wait_status(r"^corp ok ", 30)
    d.wait_line(r"persist: persistent search open", 15)
    poll_until(lambda: metric(mport, 'idsyncd_persist_up{connector="corp"}') == 1.0, 5, "/metrics: up 1")
    c.ok("/metrics: the search is up")

    lm = d.line_mark()
    slapd_sh("stop", sdir)
    down = d.wait_line(r"corp: persist: .*reconnecting with backoff", 10, since=lm)
    c.ok(f"the lost search is logged: [{down[1].split(' ', 3)[-1]}]")
    poll_until(lambda: metric(mport, 'idsyncd_persist_up{connector="corp"}') == 0.0, 5, "/metrics: up 0")
    c.ok("/metrics: the search is down")
    time.sleep(4)  # attempts at about 1, 2 (+1), 4 (+3) s fail; the next is 8 s after the last
    slapd_sh("start", sdir)
    t_change = time.monotonic()
    env.ldif(f"dn: {env.gdn('CC-Support')}\nchangetype: modify\nadd: member\nmember: {env.udn('u1')}\n\n",
             add=False)
    back = d.wait_line(r"corp: persist: the persistent search is back after", 30, since=lm)
    c.true(back[0] > t_change,
           f"the search reopened {back[0] - t_change:.1f}s after the change: made while it was down")
    poll_until(lambda: granted(env, "u1"), 15, "u1's grant after the reconnection")
    c.ok("the change made while the search was down is applied after the reconnection")
    downs = [x for x in d.lines[lm:] if "reconnecting with backoff" in x[1]]
    c.eq(1, len(downs), "the outage is logged once, however many attempts it took")
    c.eq(1.0, metric(mport, 'idsyncd_persist_outages_total{connector="corp"}'),
         "/metrics counts the outage once")
    poll_until(lambda: metric(mport, 'idsyncd_persist_up{connector="corp"}') == 1.0, 5, "/metrics: up 1 again")
    c.ok("/metrics: the search is up again")
    rc, out, _ = env.run_cli("status")
    line = [x for x in out.splitlines() if x.startswith("persist ")]
    c.true(line and " up since " in line[0] and ", 1 outages" in line[0], f"status counts the outage: {line}")
    # and the search that reopened rings again
    env.ldif(f"dn: {env.gdn('CC-Support')}\nchangetype: modify\nadd: member\nmember: {env.udn('u2')}\n\n",
             add=False)
    t0 = time.monotonic()
    poll_until(lambda: granted(env, "u2"), 10, "u2's grant")
    c.true(time.monotonic() - t0 < 5, f"the reopened search rings: u2 granted {time.monotonic() - t0:.2f}s later")

    # ---- a stored cookie the server refuses (newer than its state, as after
    # a restore of the directory): the search's refusal rings and is said
    # once; the search waits for a new cursor instead of reconnecting in a
    # loop, and is no outage; the run it rang resets the feed (everything
    # read again) and commits a cursor the search is then accepted from
    env.q("UPDATE connector_feed SET cursor = convert_to(replace(convert_from(cursor, 'UTF8'), 'csn=20', 'csn=29'),"
          " 'UTF8') WHERE connector = 'corp'")
    lm = d.line_mark()
    slapd_sh("stop", sdir)
    slapd_sh("start", sdir)
    refused = d.wait_line(r"corp: persist: .*refused the cookie of the persistent", 30, since=lm)
    c.ok(f"the refused cookie is said: [{refused[1].split(' ', 3)[-1]}]")
    reset = d.wait_line(r"corp: change feed reset, everything read again: the server refused", 20, since=lm)
    c.ok(f"the run it rang resets the feed: [{reset[1].split(' ', 3)[-1]}]")
    d.wait_line(r"corp: persist: the server accepts the new cursor", 20, since=lm)
    refusals = [x for x in d.lines[lm:] if "refused the cookie of the persistent" in x[1] and " warning " in x[1]]
    c.eq(1, len(refusals), "the refusal is logged once (a warning), however often the search was refused")
    c.eq("up|2", env.q("SELECT state || '|' || reconnects FROM persist_feed WHERE connector = 'corp'"),
         "status: up again; the refusal was no outage (2: the two restarts')")
    failed = [x for x in d.lines[lm:] if " run " in x[1] and " failed" in x[1]]
    c.eq([], failed, "no run failed on the way (the reset reads every user again)")
    env.ldif(f"dn: {env.gdn('CC-Support')}\nchangetype: modify\nadd: member\nmember: {env.udn('u3')}\n\n",
             add=False)
    t0 = time.monotonic()
    poll_until(lambda: granted(env, "u3"), 15, "u3's grant")
    c.true(time.monotonic() - t0 < 5, f"the search accepted again rings: u3 granted {time.monotonic() - t0:.2f}s later")

if __name__ == "__main__":
    sdir = private_slapd()
    main("t_persist_restart", lambda env, c: body(env, c, sdir))
