#!/usr/bin/env python3
"""changes.persist: true (issue 14): a persistent search is the doorbell of
the incremental run (docs/changes.md, "Persistent search").

A daemon with persist: true, debounce 1 s and an interval of an hour:
  - after its start run nothing runs until the directory changes; a
    member added with ldapmodify is granted within seconds, by exactly one
    run;
  - an OU renamed rings it too (only the OU's own entry changes: the
    users' search hears every entry beneath the users' base but groups);
  - slapd holds two searches for it, the users' and the groups' (its
    monitor's count of the daemon connection's executing operations);
  - a burst of 20 changes (20 LDAP operations) ends in one or two runs;
  - `status` says the persistent search is up and since when;
  - a reload to persist: false closes the search and gives the feed back,
    one back to true opens it again;
  - SIGTERM while it waits exits within a second, and the watchdog is
    pinged while it waits;
  - a bell's run that finds the lock or the queue's lease taken runs
    again once they are free, not an interval later.
A daemon without persist opens no persistent search (one LDAP connection
per run, none between runs: slapd's monitor-free count is taken from the
daemon's own sockets)."""
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import Fail, hold_lock, main, poll_until, release_lock  # noqa: E402

USERS = 30


def runs(env):
    return int(env.q("SELECT count(*) FROM sync_run WHERE connector = 'corp'"))


def granted(env, uids):
    """How many of uids hold the operator role."""
    names = ",".join(f"'{u}'" for u in uids)
    return int(env.q("SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id"
                     f" WHERE r.role = 'operator' AND u.username IN ({names})"))


def add_members(env, uids):
    """One modify operation per member: len(uids) changes, each with its own entryCSN."""
    env.ldif("".join(f"dn: {env.gdn('CC-Support')}\nchangetype: modify\nadd: member\nmember: {env.udn(u)}\n\n"
                     for u in uids), add=False)


def ldap_sockets(pid, port):
    """The daemon's TCP connections to the LDAP port (ss)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)


def settled_runs(env, quiet=2.5, timeout=20):
    """The run count once it has not moved for `quiet` seconds.  The
    doorbell's first refresh rings once, rightly, when the other tests'
    writes to the shared slapd pushed its session log (1,000 writes) past
    the stored cookie: slapd then answers with a present phase, and what
    a present phase leaves out is gone, as far as a doorbell can know."""
    end = time.monotonic() + timeout
    n, since = runs(env), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > end:
            raise Fail(f"runs still moving after {timeout}s")
        time.sleep(0.1)
        if runs(env) != n:
            n, since = runs(env), time.monotonic()
    return n


def held_searches(env, pid, port):
    """The operations slapd is executing for the daemon's LDAP connections
    (cn=Monitor): its persistent searches, once their refresh is done."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    peers = {f"IP={line.split()[2]}" for line in out.splitlines() if f"pid={pid}," in line}
    r = subprocess.run(["ldapsearch", "-LLL"] + env._ldap_admin()
                       + ["-b", "cn=Connections,cn=Monitor", "(monitorConnectionNumber=*)",
                          "monitorConnectionPeerAddress", "monitorConnectionOpsExecuting"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Fail(f"ldapsearch cn=Monitor: {r.stderr.strip()}")
    held = 0
    for entry in r.stdout.split("\n\n"):
        attrs = dict(line.split(": ", 1) for line in entry.splitlines() if ": " in line)
        if attrs.get("monitorConnectionPeerAddress") in peers:
            held += int(attrs.get("monitorConnectionOpsExecuting", 0))
    return held


def body(env, c):
    uids = env.add_users("u", USERS)
    env.ldif(env.group_ldif("CC-Support", [env.udn("u0")]))
    sub = f"ou=sub,ou=people,{env.ou}"
    env.ldif(f"dn: {sub}\nobjectClass: organizationalUnit\nou: sub\n\n"
             f"dn: uid=s0,{sub}\nobjectClass: inetOrgPerson\nuid: s0\nsn: S\ncn: S\nmail: s0@example.org\n\n")
    port = env.ldap_uri.rsplit(":", 1)[1].strip("/")

    # ---- without persist: no connection between runs
    env.write_config(connectors=[env.ldap_connector()])
    plain = env.daemon(label="plain").start()
    plain.wait_status(r"^corp ok ", 30)
    time.sleep(1.5)
    c.eq(0, ldap_sockets(plain.pid, port), "without persist no LDAP connection stays open between runs")
    c.true(not any("persist" in (s or "") for s in plain.statuses()), "and STATUS= says nothing of persist")
    plain.signal(signal.SIGTERM)
    c.eq(0, plain.wait_exit(10), "SIGTERM exits 0")

    # ---- with persist: the doorbell
    env.write_config(connectors=[env.ldap_connector(extra="changes: { persist: true, debounce: 1s }")])
    d = env.daemon(label="persist", watchdog_usec=2_000_000).start()
    d.wait_status(r"^corp ok ", 30)
    d.wait_line(r"persist: persistent search open", 15)
    c.eq(1, ldap_sockets(d.pid, port), "one LDAP connection held open between runs: the persistent search")
    start = settled_runs(env)
    wd = d.mark()
    time.sleep(3)
    c.eq(start, runs(env), "no run after the start run while nothing changes (interval 1h)")
    c.eq(2, held_searches(env, d.pid, port), "slapd holds two searches for the doorbell: the users' (with"
                                              " the containers) and the groups'")
    pings = sum(1 for m in d.messages(wd) if m.get("WATCHDOG") == "1")
    c.true(pings >= 2, f"the watchdog is pinged while the daemon waits on the persistent search ({pings} in 3 s,"
                       " WatchdogSec 2 s)")
    t0 = time.monotonic()
    add_members(env, ["u1"])
    poll_until(lambda: granted(env, ["u1"]) == 1, 8, "u1's grant")
    took = time.monotonic() - t0
    c.true(took < 5, f"a member added with ldapmodify is granted {took:.2f}s later (debounce 1 s)")
    c.eq(start + 1, runs(env), "by exactly one run, after the change")

    # ---- an OU renamed: its users keep their entryCSN, and only the OU's
    # own entry changes, which the users' search hears (not a group)
    before = runs(env)
    env.ldif(f"dn: {sub}\nchangetype: modrdn\nnewrdn: ou=sub2\ndeleteoldrdn: 1\n\n", add=False)
    poll_until(lambda: runs(env) > before, 8, "a run after an OU's rename")
    c.ok("an OU renamed rings the doorbell: a run follows")
    time.sleep(1.5)  # that run over before the burst counts its own

    # ---- a burst: 20 changes, one or two runs
    before = runs(env)
    add_members(env, uids[2:22])
    poll_until(lambda: granted(env, uids[2:22]) == 20, 20, "the burst's 20 grants")
    time.sleep(2.5)  # a late run of the burst would show by now
    n = runs(env) - before
    c.true(1 <= n <= 2, f"a burst of 20 changes applied by {n} run(s), not 20")

    # ---- a trickle (a change every 0.5 s, debounce 1 s) cannot hold the run off:
    # the burst's postponement is capped at 10 x debounce after its first change
    group = env.gdn("CC-Support")
    add_members(env, [uids[22]])
    first = time.monotonic()
    seen = None
    for i in range(40):
        if granted(env, [uids[22]]):
            seen = time.monotonic() - first
            break
        env.ldif(f"dn: {group}\nchangetype: modify\nreplace: description\ndescription: trickle {i}\n\n",
                 add=False)
        time.sleep(0.5)
    c.true(seen is not None and seen <= 12,
           f"a trickle of changes every 0.5 s: its first change applied {seen}s after it (cap 10 x 1 s), "
           "while the trickle went on")

    # ---- status
    rc, out, err = env.run_cli("status")
    line = [x for x in out.splitlines() if x.startswith("persist ")]
    c.true(line and " up since " in line[0] and f":{d.pid}" in line[0],
           f"status: the persistent search is up, since when, on which daemon: {line}")

    # ---- a bell's run that finds the connector's lock taken (a `sync` by
    # hand) tries again a debounce later, not an interval later
    lock = hold_lock(env, "corp")
    add_members(env, [uids[24]])
    poll_until(lambda: env.q("SELECT count(*) FROM sync_run WHERE status = 'skipped_locked'") != "0", 10,
               "the bell's run skipped on the held lock")
    time.sleep(1.5)
    release_lock(env, lock)
    t0 = time.monotonic()
    poll_until(lambda: granted(env, [uids[24]]) == 1, 10, "the grant after the lock was released")
    c.ok(f"a change rung while the lock was held is applied {time.monotonic() - t0:.1f}s after its release")

    # ---- ... and one that finds the queue's lease held by another daemon
    # (running the connector) runs once that lease ends, not at the queue's time
    env.q("UPDATE connector_schedule SET lease_owner = 'elsewhere:1', lease_until = now() + interval '3 seconds'"
          " WHERE connector = 'corp'")
    t0 = time.monotonic()
    add_members(env, [uids[25]])
    poll_until(lambda: granted(env, [uids[25]]) == 1, 12, "the grant after the other daemon's lease")
    took = time.monotonic() - t0
    c.true(took >= 2.5, f"applied {took:.1f}s after the change: after the other daemon's lease (3 s), not during it")

    # ---- a reload that turns persist off closes the search and gives the
    # feed back; one that turns it on again opens it, and it rings
    lm = d.line_mark()
    env.write_config(connectors=[env.ldap_connector()])
    d.signal(signal.SIGHUP)
    d.wait_line(r"configuration reloaded", 10, since=lm)
    time.sleep(0.5)
    c.eq(0, ldap_sockets(d.pid, port), "a reload to persist: false closes the persistent search")
    c.eq("waiting|", env.q("SELECT state || '|' || coalesce(holder, '') FROM persist_feed WHERE connector = 'corp'"),
         "... and gives the feed back")
    lm = d.line_mark()
    env.write_config(connectors=[env.ldap_connector(extra="changes: { persist: true, debounce: 1s }")])
    d.signal(signal.SIGHUP)
    d.wait_line(r"persist: persistent search open", 15, since=lm)
    add_members(env, [uids[26]])
    t0 = time.monotonic()
    poll_until(lambda: granted(env, [uids[26]]) == 1, 10, "the grant after the reload")
    c.true(time.monotonic() - t0 < 5, f"after a reload to persist: true the search rings again "
                                      f"({time.monotonic() - t0:.2f}s)")

    # ---- SIGTERM while it waits
    time.sleep(0.5)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")
    took = time.monotonic() - t0
    c.true(took < 1.0, f"SIGTERM while waiting: exited {took:.2f}s later")
    c.eq("waiting||", env.q("SELECT state || '|' || coalesce(holder, '') || '|' || coalesce(lease_until::text, '')"
                            " FROM persist_feed WHERE connector = 'corp'"),
         "a clean stop gives the feed back (another daemon takes it at once)")


if __name__ == "__main__":
    main("t_persist", body)
