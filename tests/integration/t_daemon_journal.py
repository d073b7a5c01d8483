#!/usr/bin/env python3
"""Logging to the journal (service.md "Logging").

With `log.target: journal`, and with `auto` when JOURNAL_STREAM names the
daemon's stderr (as systemd sets it for StandardError=journal), every log
event is a structured entry sent with sd_journal_sendv(): MESSAGE=,
PRIORITY= (6 info, 4 warning, 3 error, 7 debug), SYSLOG_IDENTIFIER=idsyncd,
CONNECTOR= and RUN_ID= where they apply, IDSYNC_USER= for per-user events;
and nothing on stderr.  With `auto` and a JOURNAL_STREAM that is not our
stderr (inherited by a redirected child), plain stderr lines.  No secret
appears in any entry, even at debug level.

Every line of a run carries RUN_ID= (the id of its sync_run row), so that
`journalctl RUN_ID=N` finds a failed run as well as an ok one; every
per-user event carries IDSYNC_USER= (the changes at info); the outcome line
of each run carries the MESSAGE_ID= of its outcome (ok, failed, aborted,
skipped: include/ids/log.h, explained in systemd/idsyncd.catalog).

Where the entries are read from:
  * no journald (the test containers): FakeJournal takes journald's socket
    (/run/systemd/journal/socket) and decodes the native protocol — the
    bytes a real journald would get.  Needs permission to create
    /run/systemd/journal (root in CI).
  * a real journald: `journalctl -o json _PID=<pid>`.
  * neither possible: only what is left to check — stderr stays empty
    with `log.target: journal` (entries go nowhere) and the daemon runs
    normally; said so in the output."""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import Fail, FakeJournal, first, hold_lock, journald_running, main, release_lock  # noqa: E402


class RealJournal:
    """The same interface as FakeJournal over journalctl."""

    def __init__(self):
        self.entries = []

    def _refresh(self, pid):
        r = subprocess.run(["journalctl", "-o", "json", "--no-pager", f"_PID={pid}"],
                           capture_output=True, text=True)
        self.entries = []
        for line in r.stdout.splitlines():
            j = json.loads(line)
            self.entries.append({k: (v if isinstance(v, list) else [v]) for k, v in j.items()})

    def wait_for(self, pred, timeout, what, pid=None):
        end = time.monotonic() + timeout
        while True:
            self._refresh(pid)
            for e in self.entries:
                if pred(e):
                    return e
            if time.monotonic() > end:
                raise Fail(f"journal: no entry {what} within {timeout}s")
            time.sleep(0.3)


def message_ids(env):
    """The IDS_MSGID_* of include/ids/log.h, by outcome: {"OK": "adda...", ...}."""
    with open(os.path.join(env.src, "include", "ids", "log.h")) as f:
        return dict(re.findall(r'#define IDS_MSGID_RUN_(\w+) "([0-9a-f]{32})"', f.read()))


def check_run_fields(env, c, journal, kw, pid, ids):
    """RUN_ID= on every line of the runs of the first daemon, IDSYNC_USER=
    on the per-user events, MESSAGE_ID= on the outcomes."""
    def of_pid(pred):
        return lambda e: first(e, "_PID") == pid and pred(e)
    failed = env.q("SELECT id FROM sync_run WHERE connector = 'broken' AND status = 'failed' ORDER BY id LIMIT 1")
    e = journal.wait_for(of_pid(lambda e: first(e, "MESSAGE_ID") == ids["FAILED"]), 5, "a failed run's outcome",
                         **kw)
    c.eq(("broken", failed, "3"), (first(e, "CONNECTOR"), first(e, "RUN_ID"), first(e, "PRIORITY")),
         "a failed run's outcome: MESSAGE_ID= failed, RUN_ID= its sync_run id, PRIORITY=3")
    c.has(f"run {failed} failed", first(e, "MESSAGE"), "... and MESSAGE= names the run")
    of_run = [x for x in journal.entries if first(x, "_PID") == pid and first(x, "RUN_ID") == failed]
    c.true(len(of_run) >= 2 and any("run started" in first(x, "MESSAGE") for x in of_run),
           f"journalctl RUN_ID={failed} finds the failed run from its start ({len(of_run)} lines)")
    runs = [x for x in journal.entries if first(x, "_PID") == pid and first(x, "CONNECTOR")]
    c.true(runs and all(first(x, "RUN_ID") for x in runs),
           f"every one of the {len(runs)} lines of a connector's run carries RUN_ID= "
           f"{[first(x, 'MESSAGE') for x in runs if not first(x, 'RUN_ID')]}")
    ok = env.q("SELECT id FROM sync_run WHERE connector = 'corp' AND status = 'ok'")
    e = journal.wait_for(of_pid(lambda e: first(e, "MESSAGE_ID") == ids["OK"]), 5, "an ok run's outcome", **kw)
    c.eq(("corp", ok), (first(e, "CONNECTOR"), first(e, "RUN_ID")), "an ok run's outcome: MESSAGE_ID= ok")
    for user in ("alice", "bob"):
        e = journal.wait_for(of_pid(lambda e: first(e, "IDSYNC_USER") == user), 5, f"IDSYNC_USER={user}", **kw)
        c.eq(("6", ok, f"corp: user {user} created"),
             (first(e, "PRIORITY"), first(e, "RUN_ID"), first(e, "MESSAGE")),
             f"a created user: IDSYNC_USER={user} at info, in its run")


def check_skipped(env, c, d, journal, kw, pid, ids):
    """A tick while another instance holds the lock: MESSAGE_ID= skipped."""
    lock = hold_lock(env, "corp")
    try:
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_status(r"^corp skipped \(another instance is syncing it\)", 15, since=mark)
    finally:
        release_lock(env, lock)
    skipped = env.q("SELECT id FROM sync_run WHERE connector = 'corp' AND status = 'skipped_locked'")
    if journal is None:
        return
    e = journal.wait_for(lambda e: first(e, "_PID") == pid and first(e, "MESSAGE_ID") == ids["SKIPPED"], 5,
                         "a skipped run's outcome", **kw)
    c.eq(("corp", skipped, "4"), (first(e, "CONNECTOR"), first(e, "RUN_ID"), first(e, "PRIORITY")),
         "a skipped run: MESSAGE_ID= skipped, RUN_ID= its skipped_locked row, PRIORITY=4")


def check_aborted(env, c, conns, journal, mode):
    """Two of two users leave with max_deactivations: 1: the run is aborted;
    the outcome (MESSAGE_ID= aborted) and STATUS= say what was held, not
    "-2" as if done."""
    cfg = env.write_config(path=os.path.join(env.dir, "abort.yaml"), connectors=conns[:1], log_target="journal",
                           sync={"retry_min": "30s", "retry_max": "1h"})
    with open(cfg) as f:
        text = f.read().replace("max_deactivations: 1000000", "max_deactivations: 1")
    with open(cfg, "w") as f:
        f.write(text)
    env.ldif(f"dn: {env.udn('alice')}\nchangetype: delete\n\ndn: {env.udn('bob')}\nchangetype: delete\n\n",
             add=False)
    d = env.daemon(config=cfg, label="aborted").start()
    m = d.wait_status(r"^corp held: run \d+ \(", 15)
    aborted = env.q("SELECT id FROM sync_run WHERE status = 'aborted_threshold'")
    # issue 17: the held run and the command that applies it
    c.has(f"held: run {aborted} (2 deactivations over the limit of 1): idsyncd approve {aborted}",
          m.get("STATUS"), "an aborted run's STATUS= says what was held")
    c.hasnt("-2", m.get("STATUS"), "... and shows no count as if it had been done")
    if journal is not None:
        pid = str(d.pid)
        e = journal.wait_for(lambda e: first(e, "_PID") == pid and first(e, "MESSAGE_ID") == message_ids(env)["ABORTED"],
                             5, "an aborted run's outcome", **({"pid": pid} if mode == "journald" else {}))
        c.eq(("corp", aborted, "3"), (first(e, "CONNECTOR"), first(e, "RUN_ID"), first(e, "PRIORITY")),
             "an aborted run: MESSAGE_ID= aborted, RUN_ID= its aborted_threshold row, PRIORITY=3")
        c.has(f"corp: run {aborted} aborted, nothing written: held: 2 deactivations over the limit of 1;",
              first(e, "MESSAGE"), "... and its MESSAGE= says what was held")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")


def body(env, c):
    env.ldif(env.user_ldif("alice") + env.user_ldif("bob")
             # a person without uid: no username, skipped with a warning
             + f"dn: cn=No Uid,ou=people,{env.ou}\nobjectClass: inetOrgPerson\ncn: No Uid\nsn: Uid\n"
               f"mail: nouid@example.org\n\n"
             + env.group_ldif("CC-Support", [env.udn("alice"), env.udn("bob"),
                                             f"cn=No Uid,ou=people,{env.ou}"]))
    down = env.ldap_proxy(listen=False)
    conns = [env.ldap_connector("corp"), env.ldap_connector("broken", uri=env.proxy_uri(down), company="b")]
    secret = open(os.environ["IDS_TEST_LDAP_BIND_PW_FILE"]).read().strip()

    journal = None
    mode = "none"
    if journald_running():
        journal, mode = RealJournal(), "journald"
    else:
        fake = FakeJournal()
        if fake.start():
            env.cleanups.append(fake.stop)
            journal, mode = fake, "fake"
    print(f"journal: {mode}", flush=True)
    ids = message_ids(env)
    c.eq(["ABORTED", "FAILED", "OK", "SKIPPED"], sorted(ids), "include/ids/log.h defines four outcome ids")

    cfg = env.write_config(connectors=conns, log_level="debug", log_target="journal",
                           sync={"retry_min": "30s", "retry_max": "1h"})
    d = env.daemon(config=cfg, label="journal").start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"^corp ok 3 users \+2 ~0 -0 at .*; broken failed", 15)
    c.true(d.alive(), "log.target journal: the daemon runs normally")

    if journal is None:
        print("no journald here and no permission to stand in for it: only stderr is checked", flush=True)
    else:
        pid = str(d.pid)

        def of_pid(pred):
            return lambda e: first(e, "_PID") == pid and pred(e)
        kw = {"pid": pid} if mode == "journald" else {}
        run_id = env.q("SELECT id FROM sync_run WHERE connector = 'corp' AND status = 'ok'")
        e = journal.wait_for(of_pid(lambda e: "ready" in (first(e, "MESSAGE") or "")), 5, "ready", **kw)
        c.eq(("6", "idsyncd", None), (first(e, "PRIORITY"), first(e, "SYSLOG_IDENTIFIER"), first(e, "CONNECTOR")),
             "the start: PRIORITY=6, SYSLOG_IDENTIFIER=idsyncd, no CONNECTOR=")
        e = journal.wait_for(of_pid(lambda e: "ok: 3 users" in (first(e, "MESSAGE") or "")), 5, "the run's end",
                             **kw)
        c.eq(("corp", run_id, "6"), (first(e, "CONNECTOR"), first(e, "RUN_ID"), first(e, "PRIORITY")),
             "the run summary: CONNECTOR=corp, RUN_ID= the sync_run id, PRIORITY=6")
        c.has(f"corp: run {run_id} ok: 3 users", first(e, "MESSAGE"), "... and its MESSAGE=")
        e = journal.wait_for(of_pid(lambda e: "skipped" in (first(e, "MESSAGE") or "")
                                    and first(e, "IDSYNC_USER") is not None), 5, "IDSYNC_USER=", **kw)
        c.eq(("corp", "4"), (first(e, "CONNECTOR"), first(e, "PRIORITY")),
             "a skipped user: CONNECTOR=corp, PRIORITY=4 (warning)")
        c.has("skipped", first(e, "MESSAGE"), f"... MESSAGE= says so: [{first(e, 'MESSAGE')}]")
        c.true(len(first(e, "IDSYNC_USER")) > 0, f"... IDSYNC_USER= names it ({first(e, 'IDSYNC_USER')})")
        e = journal.wait_for(of_pid(lambda e: first(e, "CONNECTOR") == "broken" and first(e, "PRIORITY") == "3"),
                             5, "an error of broken", **kw)
        c.has(f"127.0.0.1:{down.port}", first(e, "MESSAGE"), "a failed run: PRIORITY=3 with the server's error")
        journal.wait_for(of_pid(lambda e: first(e, "PRIORITY") == "7"), 5, "a debug entry", **kw)
        c.ok("log.level debug: PRIORITY=7 entries")
        mine = [e for e in journal.entries if first(e, "_PID") == pid]
        c.true(all(secret not in v for e in mine for vs in e.values() for v in vs),
               f"the bind password is in none of the {len(mine)} entries")
        c.true(all(first(e, "CODE_FILE") is None for e in mine), "no CODE_FILE= (source locations suppressed)")
        check_run_fields(env, c, journal, kw, pid, ids)
    check_skipped(env, c, d, journal, kw if journal is not None else {}, str(d.pid), ids)
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")
    c.eq("", d.stderr_text(), "log.target journal: nothing on stderr")

    # ---- auto: the journal only when JOURNAL_STREAM names our stderr
    cfg = env.write_config(path=os.path.join(env.dir, "auto.yaml"), connectors=conns[:1], log_target="auto")
    d = env.daemon(config=cfg, journal_stream=True, label="auto-journal").start()
    d.wait_status(r"^corp ok 3 users \+0 ~0 -0", 15)
    if journal is not None:
        pid = str(d.pid)
        journal.wait_for(lambda e: first(e, "_PID") == pid and "ready" in (first(e, "MESSAGE") or ""), 5,
                         "ready from the auto daemon", **({"pid": pid} if mode == "journald" else {}))
        c.ok("auto with JOURNAL_STREAM = our stderr: structured entries")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")
    c.eq("", d.stderr_text(), "auto with JOURNAL_STREAM = our stderr: nothing on stderr")

    d = env.daemon(config=cfg, extra_env={"JOURNAL_STREAM": "1:1"}, label="auto-stderr").start()
    d.wait_status(r"^corp ok 3 users \+0 ~0 -0", 15)
    d.wait_line(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info corp: run \d+ ok: 3 users", 5)
    c.ok("auto with an inherited JOURNAL_STREAM that is not our stderr: stderr lines of service.md's format")
    if journal is not None:
        pid = str(d.pid)
        c.true(not any(first(e, "_PID") == pid for e in journal.entries), "... and no journal entries")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")

    # ---- last, as it deletes alice and bob: a run aborted by a safety guard
    check_aborted(env, c, conns, journal, mode)


if __name__ == "__main__":
    main("t_daemon_journal", body)
