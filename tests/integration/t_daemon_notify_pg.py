#!/usr/bin/env python3
"""NOTIFY idsyncd_sync_user across a PostgreSQL restart (issue 17 part 2,
reliability.md case 19 for the LISTEN connection), on a throwaway cluster
of the test's own (the shared one serves the other tests).

`pg_ctl restart -m fast` ends the daemon's LISTEN connection and its idle
run connection.  The daemon keeps running, says that NOTIFYs are lost
meanwhile, listens again after its database backoff (retry_min 1s), and a
NOTIFY sent then (the login handler retries) commits the new hire's
grants, while the interval is an hour."""
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness")
sys.path.insert(0, HARNESS)
from fakesystemd import main, own_cluster, poll_until  # noqa: E402

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")



def restart(d):
    pg_ctl = [os.path.join(PGBIN, "pg_ctl"), "-D", os.path.join(d, "pg", "data"), "-m", "fast", "-w", "-t", "60",
              "restart", "-l", os.path.join(d, "pg", "postgres.log")]
    if os.getuid() == 0:
        pg_ctl = ["runuser", "-u", "postgres", "--"] + pg_ctl
    subprocess.run(pg_ctl, check=True, capture_output=True)


def notify(env, payload):
    env.q(f"SELECT pg_notify('idsyncd_sync_user', '{payload}')")


def grants_of(env, username):
    return env.q("SELECT string_agg(channel, ',' ORDER BY channel) FROM channel_grant c"
                 f" JOIN app_user u ON u.id = c.user_id WHERE u.username = '{username}'")


def body(env, c):
    env.ldif(env.user_ldif("alice") + env.group_ldif("CC-Support", [env.udn("alice")]))
    env.write_config(sync={"interval": "1h", "retry_min": "1s", "retry_max": "2s"})
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"^corp ok 1 users \+1 ", 20)
    notify(env, "corp:alice")
    poll_until(lambda: env.q("SELECT count(*) FROM sync_run WHERE read_kind = 'user'") == "1", 10,
               "a targeted run before the restart")
    c.ok("a NOTIFY is served before the restart")

    env.ldif(env.user_ldif("newhire"))
    env.ldif("dn: " + env.gdn("CC-Support") + "\nchangetype: modify\nadd: member\nmember: "
             + env.udn("newhire") + "\n\n", add=False)
    line = d.line_mark()
    restart(CLUSTER)
    _, text = d.wait_line(r"idsyncd_sync_user: .*NOTIFY requests sent meanwhile are lost \(retrying in 1 s\)", 10,
                          since=line)
    c.ok(f"the lost LISTEN connection is logged: {text.strip()[:140]}")
    d.wait_line(r"idsyncd_sync_user: listening again", 10, since=line)
    c.ok("the daemon listens again after its backoff")
    c.true(d.alive(), "the daemon keeps running")

    # the login handler's retry: one NOTIFY now, with the daemon's idle
    # run connection dead since the restart too
    t0 = time.monotonic()
    notify(env, "corp:newhire")
    poll_until(lambda: grants_of(env, "newhire") == "email,webchat", 10, "the new hire's grants")
    c.ok(f"a NOTIFY after the restart commits the grants ({time.monotonic() - t0:.2f}s, interval 1h)")
    c.eq("ok", env.q("SELECT status FROM sync_run WHERE read_kind = 'user' ORDER BY id DESC LIMIT 1"),
         "at the first request: the dead idle connection is replaced, not reported as a failure")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")


if __name__ == "__main__":
    CLUSTER = own_cluster("t_daemon_notify_pg")
    main("t_daemon_notify_pg", body)
