#!/usr/bin/env python3
"""NOTIFY idsyncd_sync_user (issue 17 part 2, in the daemon): the login
handler of the platform sends `NOTIFY idsyncd_sync_user, 'CONNECTOR:USER'`
and the daemon syncs that one person now, not at the next interval.

  * a new hire's grants are committed within seconds while the interval
    is an hour; the run is a targeted one (sync_run.read_kind 'user');
  * a targeted sync deactivates no one (a user gone from the directory
    stays active until the next full run);
  * a targeted sync waits for a run that holds the connector's lock (a
    full run of another instance), and 100 NOTIFYs for one person sent
    meanwhile coalesce into that one run;
  * over sync.user_rate a second, requests are dropped with a warning and
    counted; the limit is a rate: a second later requests pass again;
  * bad payloads (no colon, no user, unknown connector, a connector type
    without a targeted read, control characters, 8000 bytes) are logged
    escaped and counted, and the daemon goes on serving;
  * SIGTERM is still honoured within a second.
(A PostgreSQL restart under the LISTEN: t_daemon_notify_pg.py.)"""
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import free_port, hold_lock, main, metric, poll_until, release_lock  # noqa: E402




def notify(env, payloads):
    """One NOTIFY per payload, each in its own transaction (PostgreSQL
    folds identical notifications of one transaction into one)."""
    sql = "".join("SELECT pg_notify('idsyncd_sync_user', $p$" + p + "$p$);\n" for p in payloads)
    r = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", env.db], input=sql,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"psql: {r.stderr.strip()}")


def user_runs(env):
    return int(env.q("SELECT count(*) FROM sync_run WHERE read_kind = 'user'"))


def grants_of(env, username):
    return env.q("SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant c"
                 f" JOIN app_user u ON u.id = c.user_id WHERE u.username = '{username}'")


def body(env, c):
    env.ldif(env.user_ldif("alice") + env.user_ldif("bob")
             + "".join(env.user_ldif(f"r{i}") for i in range(20))
             + env.group_ldif("CC-Support", [env.udn("alice"), env.udn("bob")]
                              + [env.udn(f"r{i}") for i in range(20)]))
    port, scim_port = free_port(), free_port()
    token = os.path.join(env.dir, "scim.token")
    with open(token, "w") as f:
        f.write("t" * 40)
    os.chmod(token, 0o600)
    # a second connector of a type without a targeted read (yet)
    push = (f"  - name: push\n    type: scim\n    company: acme\n    token_file: {token}\n")
    env.write_config(sync={"interval": "1h", "user_rate": 10},
                     connectors=[env.ldap_connector(), push],
                     raw_extra=f"metrics:\n  listen: \"127.0.0.1:{port}\"\n"
                               f"scim:\n  listen: \"127.0.0.1:{scim_port}\"\n")
    bad = env.write_config(path=os.path.join(env.dir, "bad.yaml"), sync={"user_rate": -1})
    rc, _, err = env.run_cli("check-config", config=bad)
    c.eq(78, rc, "check-config refuses sync.user_rate: -1")
    c.true(re.search(r"bad.yaml:\d+:\d+: sync.user_rate: expected an integer 0..10000", err) is not None,
           f"... naming the place ({err.strip()})")
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"corp ok 22 users \+22 ", 20)
    c.eq(0, user_runs(env), "no targeted run yet")

    # ---- a new hire: grants without waiting for the interval (1h)
    env.ldif(env.user_ldif("newhire"))
    env.ldif("dn: " + env.gdn("CC-Support") + "\nchangetype: modify\nadd: member\nmember: "
             + env.udn("newhire") + "\n\n", add=False)
    # and bob leaves the directory: only a full run may deactivate him
    subprocess.run(["ldapdelete"] + env._ldap_admin() + [env.udn("bob")], check=True, capture_output=True)
    t0 = time.monotonic()
    notify(env, ["corp:newhire"])
    poll_until(lambda: grants_of(env, "newhire") == "email,webchat", 10, "the new hire's grants")
    took = time.monotonic() - t0
    c.true(took < 5, f"NOTIFY -> grants committed in {took:.2f}s (interval 1h)")
    c.eq("ok|user|1|0", env.q("SELECT status||'|'||read_kind||'|'||created||'|'||deactivated"
                              " FROM sync_run ORDER BY id DESC LIMIT 1"), "one targeted run, ok")
    c.eq("t", env.q("SELECT active FROM app_user WHERE username = 'bob'"),
         "bob, gone from the directory, stays active (a targeted sync deactivates no one)")
    c.eq(1.0, metric(port, 'idsyncd_targeted_syncs_total{connector="corp",outcome="ok"}', 0.0),
         "idsyncd_targeted_syncs_total counts it")

    # ---- another instance's full run holds the lock: the targeted sync
    # waits for it, and 100 NOTIFYs for one person meanwhile are one run
    before = user_runs(env)
    lock = hold_lock(env, "corp")
    env.cleanups.append(lambda: release_lock(env, lock))
    notify(env, ["corp:alice"] * 100)
    poll_until(lambda: metric(port, 'idsyncd_targeted_syncs_total{connector="corp",outcome="coalesced"}', 0.0) >= 99,
               10, "99 requests coalesced")
    c.eq(0, user_runs(env) - before, "no targeted run while the lock is held")
    c.true(d.alive(), "the daemon waits for the lock")
    release_lock(env, lock)
    poll_until(lambda: user_runs(env) > before, 10, "the run after the lock")
    time.sleep(0.5)
    c.eq(1, user_runs(env) - before, "100 NOTIFYs for alice: one targeted run, once the lock is free")
    c.eq(2.0, metric(port, 'idsyncd_targeted_syncs_total{connector="corp",outcome="ok"}', 0.0), "and it succeeded")
    c.eq(99.0, metric(port, 'idsyncd_targeted_syncs_total{connector="corp",outcome="coalesced"}', 0.0),
         "the other 99 coalesced")
    c.eq(0.0, metric(port, 'idsyncd_targeted_syncs_total{connector="corp",outcome="rate_limited"}', 0.0),
         "repeats of one person do not count against the rate limit")

    # ---- the rate limit: 2 a second (SIGHUP), 20 people at once
    env.write_config(sync={"interval": "1h", "user_rate": 2},
                     connectors=[env.ldap_connector(), push],
                     raw_extra=f"metrics:\n  listen: \"127.0.0.1:{port}\"\n"
                               f"scim:\n  listen: \"127.0.0.1:{scim_port}\"\n")
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_field("READY", "1", 10, since=mark)
    time.sleep(1.2)  # a full bucket
    before = user_runs(env)
    line = d.line_mark()
    t = time.monotonic()
    notify(env, [f"corp:r{i}" for i in range(20)])
    # a bucket of 2 and 2 more a second for as long as the sending took
    most = 2 + int(2 * (time.monotonic() - t)) + 1
    poll_until(lambda: metric(port, 'idsyncd_targeted_syncs_total{connector="corp",outcome="rate_limited"}', 0.0)
               + user_runs(env) - before >= 20, 10, "all 20 requests accounted for")
    runs = user_runs(env) - before
    limited = metric(port, 'idsyncd_targeted_syncs_total{connector="corp",outcome="rate_limited"}', 0.0)
    c.true(2 <= runs <= most, f"20 people at 2 a second: {runs} targeted runs (at most {most})")
    c.eq(20.0, runs + limited, f"the rest dropped over the limit ({limited:.0f})")
    _, text = d.wait_line(r"targeted sync of \"r\d+\" dropped \(rate_limited: sync.user_rate 2 a second", 5,
                          since=line)
    c.ok(f"a warning says so: {text.strip()[:160]}")
    time.sleep(1.1)
    before = user_runs(env)
    notify(env, ["corp:r19"])
    poll_until(lambda: user_runs(env) > before, 5, "a request a second later runs")
    c.ok("a second later a request passes again (a rate, not a ban)")

    # ---- bad payloads: logged escaped, counted, never fatal
    line = d.line_mark()
    notify(env, ["nocolon", ":alice", "corp:", "ghost:alice", "push:alice", "bad\nline\"q", "corp" + "x" * 7990])
    d.wait_line(r'request "nocolon" ignored: expected CONNECTOR:USER', 5, since=line)
    d.wait_line(r'request ":alice" ignored: expected CONNECTOR:USER', 5, since=line)
    d.wait_line(r'request "corp:" ignored: expected CONNECTOR:USER', 5, since=line)
    d.wait_line(r'request "ghost:alice" ignored: no such connector', 5, since=line)
    _, esc = d.wait_line(r'request "bad\\nline\\"q" ignored', 5, since=line)
    c.ok(f"control characters and quotes are escaped: {esc.strip()[:120]}")
    _, long = d.wait_line(r'request "corpxxxx', 5, since=line)
    c.true(len(long) < 600 and '"... ignored' in long, f"an 8000-byte payload is cut in the log ({len(long)} chars)")
    refused = {r: metric(port, f'idsyncd_targeted_refused_total{{reason="{r}"}}', 0.0)
               for r in ("malformed", "unknown_connector")}
    c.eq({"malformed": 5.0, "unknown_connector": 1.0}, refused, "idsyncd_targeted_refused_total by reason")
    # every connector type has a targeted read: the SCIM connector's
    # request runs, and finds nobody pushed
    poll_until(lambda: metric(port, 'idsyncd_targeted_syncs_total{connector="push",outcome="failed"}', 0.0) == 1.0, 10,
               "the SCIM connector's targeted run (nobody pushed: failed)")
    c.ok("a SCIM connector's request runs like any other (failed: nobody was pushed)")
    c.true(d.alive(), "the daemon keeps running")
    env.ldif(env.user_ldif("late"))
    env.ldif("dn: " + env.gdn("CC-Support") + "\nchangetype: modify\nadd: member\nmember: "
             + env.udn("late") + "\n\n", add=False)
    time.sleep(1.1)
    notify(env, ["corp:late"])
    poll_until(lambda: grants_of(env, "late") == "email,webchat", 10, "late's grants")
    c.ok("a valid request after them is served")

    t = time.monotonic()
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")
    c.true(time.monotonic() - t < 1.0, f"within a second ({time.monotonic() - t:.2f}s)")


if __name__ == "__main__":
    main("t_daemon_notify", body)
