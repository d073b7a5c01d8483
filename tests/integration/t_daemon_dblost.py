#!/usr/bin/env python3
"""The database connection lost under the daemon (reliability.md case 19).

  * Between runs: the daemon's backend is terminated while it sleeps; the
    next run notices, fails, and the retry reconnects and succeeds.
  * In the middle of an apply: a transaction of ours holds a lock that the
    apply needs, so the apply waits inside its transaction; its backend is
    terminated there.  The run fails with nothing written (all or
    nothing), the daemon keeps running and retries with backoff, and once
    the lock is gone the next run converges to the state of a clean run."""
import os
import signal
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main, poll_until  # noqa: E402


def terminate_daemon_backends(env, where=""):
    """pg_terminate_backend() on the daemon's sessions; how many."""
    return int(env.q("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                     f" WHERE datname = current_database() AND application_name = 'idsyncd' {where}"))


def body(env, c):
    env.ldif("".join(env.user_ldif(f"p{i}") for i in range(50))
             + env.group_ldif("CC-Support", [env.udn(f"p{i}") for i in range(50)]))
    env.write_config(sync={"interval": "3s", "retry_min": "1s", "retry_max": "2s"})
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"^corp ok 50 users \+50 ~0 -0 at ", 15)

    # ---- lost while idle
    c.true(terminate_daemon_backends(env) >= 1, "the daemon's idle backend is terminated")
    mark = d.mark()
    m = d.wait_for(lambda m: (m.get("STATUS") or "").startswith(("corp ok", "corp failed")), 10,
                   "the next run's outcome", since=mark)
    if (m.get("STATUS") or "").startswith("corp failed"):
        c.ok(f"the next run notices the lost connection: [{m.get('STATUS')[:100]}]")
        m = d.wait_status(r"^corp ok 50 users \+0 ~0 -0 at ", 10, since=d.messages().index(m))
    c.ok("a run after the loss succeeds (the daemon reconnected)")
    c.true(d.alive(), "the daemon keeps running")

    # ---- lost in the middle of an apply
    env.ldif("".join(env.user_ldif(f"n{i}") for i in range(20)))
    env.ldif("dn: " + env.gdn("CC-Support") + "\nchangetype: modify\nadd: member\n"
             + "".join(f"member: {env.udn(f'n{i}')}\n" for i in range(20)) + "\n", add=False)
    before = env.snapshot_db()
    locker = subprocess.Popen(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", env.db],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env.cleanups.append(locker.kill)
    # reads go on (the diff needs them), writes to app_user wait
    locker.stdin.write("BEGIN; LOCK TABLE app_user IN EXCLUSIVE MODE; SELECT 'locked';\n")
    locker.stdin.flush()
    c.eq("locked", locker.stdout.readline().strip(), "a transaction of ours holds a lock the apply needs")
    waiting = " AND wait_event_type = 'Lock'"
    poll_until(lambda: env.q("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                             f" AND application_name = 'idsyncd'{waiting}") == "1", 15,
               "the daemon's apply waiting for the lock")
    c.ok("the daemon's apply waits inside its transaction")
    mark = d.mark()
    c.eq(1, terminate_daemon_backends(env, waiting), "its backend is terminated in the middle of the apply")
    failed = d.wait_status(r"^corp failed \(", 10, since=mark)
    c.ok(f"the run fails: [{failed.get('STATUS')[:120]}]")
    c.eq(before, env.snapshot_db(), "nothing of that run was written (users, grants, tenants)")
    c.true(d.alive(), "the daemon keeps running")
    # the lock goes: the next retry (backoff) can write
    locker.stdin.write("COMMIT;\n")
    locker.stdin.close()
    locker.wait(10)
    d.wait_status(r"^corp ok 70 users \+20 ~0 -0 at ", 30, since=d.messages().index(failed))
    c.ok("once the lock is gone a retry converges")
    c.eq("70", env.q("SELECT count(*) FROM app_user WHERE active"), "every user synced, once")
    c.eq("140", env.q("SELECT count(*) FROM channel_grant"), "every grant in place, once")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")


if __name__ == "__main__":
    main("t_daemon_dblost", body)
