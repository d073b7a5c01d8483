#!/usr/bin/env python3
"""changes.persist under kill -9 and a PostgreSQL restart (issue 14: "kill
-9 and PostgreSQL restarts ... during a persistent search: all or nothing,
the cursor with it, then convergence"; docs/changes.md, "Persistent
search"; docs/scaling.md, "Persistent feeds").

On a PostgreSQL cluster of the test's own (restarted in 3) and the shared
slapd, sync.lease 3 s, debounce 1 s, an interval of an hour:
  1. daemon A, its persistent search open and idle, is killed with
     SIGKILL (its persist_feed lease is left behind, live); a member is
     added while no daemon runs; daemon B takes the feed over once A's
     lease has run out, its search reopens from the stored cursor and
     rings, and the change is applied once, incrementally;
  2. B is killed with SIGKILL while the run a change rang waits in its
     apply (held at its first write to app_user by a table lock of ours):
     users, grants, the stored cursor and image are as before, no ok run
     of it; daemon C takes the feed over and applies the change once;
  3. PostgreSQL stopped under C's open search, a member added, PostgreSQL
     started again: C keeps running, its feed is held again (status's
     persist line and its JSON: up, on C), and the change is applied.
After each, `plan --full` has nothing to do."""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness")
sys.path.insert(0, HARNESS)
from fakesystemd import main, own_cluster, poll_until  # noqa: E402

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
LEASE = 3
# the grants the default rules give one member of CC-Support: the operator
# role and two channels
GRANTS_PER_MEMBER = 3



def pg_ctl(d, *args):
    cmd = [os.path.join(PGBIN, "pg_ctl"), "-D", os.path.join(d, "pg", "data"), "-m", "fast", "-w", "-t", "60",
           "-l", os.path.join(d, "pg", "postgres.log"), *args]
    if os.getuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, capture_output=True)


def add_member(env, uid):
    env.ldif(f"dn: {env.gdn('CC-Support')}\nchangetype: modify\nadd: member\nmember: {env.udn(uid)}\n\n",
             add=False)


def operators(env):
    return env.q("SELECT string_agg(u.username, ',' ORDER BY u.username) FROM tenant_role r"
                 " JOIN app_user u ON u.id = r.user_id WHERE r.role = 'operator'")


def state(env):
    """Users and grants, the stored cursor and the stored image."""
    return "\n".join([env.snapshot_db(),
                      env.q("SELECT encode(cursor, 'hex') || '|' || image_records FROM connector_feed"),
                      env.q("SELECT md5(string_agg(key || kind || encode(record, 'hex'), ',' ORDER BY key))"
                            " FROM connector_image")])


def ok_runs(env):
    return int(env.q("SELECT count(*) FROM sync_run WHERE status = 'ok'"))


def runs_since(env, last_id):
    """read_kind|grants_added of the ok runs after run last_id."""
    return env.q(f"SELECT string_agg(read_kind || '|' || grants_added, ' ' ORDER BY id) FROM sync_run"
                 f" WHERE status = 'ok' AND id > {last_id}")


def last_id(env):
    return int(env.q("SELECT coalesce(max(id), 0) FROM sync_run"))


def holder(env):
    """persist_feed's holder while its lease is live, else ''."""
    return env.q("SELECT CASE WHEN lease_until > now() THEN holder ELSE '' END FROM persist_feed"
                 " WHERE connector = 'corp'")


def held_by(env, d):
    return holder(env).endswith(f":{d.pid}")


def nothing_to_do(env, c, when):
    rc, out, err = env.run_cli("plan", "--full")
    c.has("0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed", out,
          f"{when}: plan --full has nothing to do")


class TableLock:
    """A session of ours holding a table in SHARE mode inside a
    transaction, so that the apply stops at its first write to it, for as
    long as we like (lib.sh's hold_lock)."""

    def __init__(self, env, table):
        self.p = subprocess.Popen(["psql", "-qAtX", "-d", env.db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.p.stdin.write(f"BEGIN; LOCK TABLE {table} IN SHARE MODE; SELECT 'locked';\n")
        self.p.stdin.flush()
        if self.p.stdout.readline().strip() != "locked":
            raise RuntimeError(f"could not lock {table}")

    def release(self):
        try:
            self.p.stdin.write("COMMIT;\n")
            self.p.stdin.close()
        except OSError:
            pass  # the session is gone (a restarted server)
        self.p.wait(10)


def waiting_on(env, table):
    return env.q("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                 " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
                 f" AND query LIKE '%{table}%'") != "0"


def sessions_gone(env):
    """Waits until no client session but ours is left in the database: a
    killed client's backend ends when it next reads its socket, after the
    statement it is in; after 5 s the leftovers are terminated (their
    transaction was never committed: the client died before its COMMIT)."""
    others = ("FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
              " AND backend_type = 'client backend'")
    t0 = time.monotonic()
    while env.q(f"SELECT count(*) {others}") != "0":
        if time.monotonic() - t0 > 5:
            env.q(f"SELECT count(pg_terminate_backend(pid)) {others}")
        if time.monotonic() - t0 > 60:
            raise RuntimeError("a session of the killed daemon is still there after 60 s")
        time.sleep(0.1)


def body(env, c):
    env.add_users("u", 6)
    env.ldif(env.group_ldif("CC-Support", [env.udn("u0")]))
    env.write_config(connectors=[env.ldap_connector(extra="changes: { persist: true, debounce: 1s }")],
                     sync={"interval": "1h", "retry_min": "1s", "retry_max": "2s", "lease": f"{LEASE}s"})

    # ---- 1. SIGKILL with the search open and idle
    a = env.daemon(label="A").start()
    a.wait_status(r"^corp ok ", 30)
    a.wait_line(r"persist: persistent search open", 15)
    poll_until(lambda: held_by(env, a), 10, "A holds the feed")
    c.eq("u0", operators(env), "A's start run: u0 is an operator")
    first = last_id(env)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    c.true(held_by(env, a), "A killed: its persist_feed lease is left behind, still live")
    add_member(env, "u1")  # while no daemon runs
    t_b = time.monotonic()
    b = env.daemon(label="B").start()
    poll_until(lambda: held_by(env, b), 30, "B takes the feed over")
    c.ok(f"B holds the feed {time.monotonic() - t_b:.1f}s after its start (A's lease: {LEASE}s)")
    poll_until(lambda: operators(env) == "u0,u1", 30, "u1's grants, applied by B")
    c.ok("the change made while no daemon ran is applied by B")
    time.sleep(2)  # a second run, if any, would be rung within the debounce
    c.eq(f"incremental|{GRANTS_PER_MEMBER}", runs_since(env, first),
         "... once, by one incremental run from the stored cursor")
    c.has("persist: persistent search open", b.stderr_text(), "B's search is open")
    nothing_to_do(env, c, "after A's kill")

    # ---- 2. SIGKILL while a rung run waits in its apply
    before = state(env)
    oks = ok_runs(env)
    second = last_id(env)
    lock = TableLock(env, "app_user")
    add_member(env, "u2")
    poll_until(lambda: waiting_on(env, "app_user"), 30, "the rung run waiting at app_user")
    c.ok("the run the change rang waits in its apply")
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    lock.release()
    sessions_gone(env)
    c.eq(before, state(env), "B killed in the apply: users, grants, cursor and image exactly as before")
    c.eq(oks, ok_runs(env), "... and no ok run of it")
    d = env.daemon(label="C").start()
    poll_until(lambda: held_by(env, d), 30, "C takes the feed over")
    c.ok("C holds the feed after B's lease ran out")
    poll_until(lambda: operators(env) == "u0,u1,u2", 30, "u2's grants, applied by C")
    time.sleep(2)
    c.eq(f"incremental|{GRANTS_PER_MEMBER}", runs_since(env, second),
         "the killed run's change applied once, by one incremental run from the old cursor")
    nothing_to_do(env, c, "after B's kill")

    # ---- 3. PostgreSQL restarted under the open search
    d.wait_line(r"persist: persistent search open", 15)
    third = last_id(env)
    lm = d.line_mark()
    pg_ctl(CLUSTER, "stop")
    add_member(env, "u3")  # the search rings; the run finds no database
    failed = d.wait_line(r"corp: run .*failed", 20, since=lm)
    c.ok(f"the rung run fails while PostgreSQL is down: [{failed[1].split(' ', 2)[-1][:120]}]")
    pg_ctl(CLUSTER, "start")
    poll_until(lambda: operators(env) == "u0,u1,u2,u3", 30, "u3's grants after the restart")
    c.ok("the change made while PostgreSQL was down is applied once it is back")
    c.true(d.alive(), "C keeps running")
    time.sleep(2)
    c.eq(f"incremental|{GRANTS_PER_MEMBER}", runs_since(env, third), "... once, by one incremental run")
    poll_until(lambda: held_by(env, d) and env.q("SELECT state FROM persist_feed") == "up", 15,
               "C's feed held and up again")
    rc, out, _ = env.run_cli("status")
    line = [x for x in out.splitlines() if x.startswith("persist ")]
    c.true(line and re.search(rf" up since \S+ on \S+:{d.pid}, \d+ outages$", line[0]),
           f"status: the persist line recovers, up on C: {line}")
    rc, out, _ = env.run_cli("status", "--format", "json")
    p = json.loads(out)["changes"][0]["persist"]
    c.true(p["state"] == "up" and p["daemon"].endswith(f":{d.pid}") and p["error"] is None
           and isinstance(p["outages"], int) and p["since"],
           f"status --format json: persist up on C, since when, no error ({p})")
    nothing_to_do(env, c, "after the PostgreSQL restart")
    # a change after it all is rung and applied by the feed's holder
    add_member(env, "u4")
    poll_until(lambda: operators(env) == "u0,u1,u2,u3,u4", 15, "u4's grants")
    c.ok("the search rings again after the restart")


if __name__ == "__main__":
    CLUSTER = own_cluster("t_persist_kill", ldap=True)
    main("t_persist_kill", body)
