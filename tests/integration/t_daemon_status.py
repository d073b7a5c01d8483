#!/usr/bin/env python3
"""STATUS= after every run in the format of service.md
(`corp-ad ok 12034 users +3 ~5 -1 at 12:00:01; entra failed (HTTP 503)
retry 12:01:30`), and `idsyncd status` (text and JSON): the last run per
connector, the next run the daemon expects, exit 1 while the last run of
a configured connector failed, 0 once it recovered, 3 when a safety guard
stopped it (the exit code a `sync` would have had)."""
import json
import os
import re
import signal
import sys
import time
from datetime import datetime, timezone

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main  # noqa: E402

HMS = r"(\d\d):(\d\d):(\d\d)"


def clock_diff(hms, want_epoch):
    """Seconds between a local HH:MM:SS and a unix time (mod one day)."""
    lt = time.localtime(want_epoch)
    got = int(hms[0]) * 3600 + int(hms[1]) * 60 + int(hms[2])
    want = lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec
    return min(abs(got - want), 86400 - abs(got - want))


def iso_epoch(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def body(env, c):
    env.ldif(env.user_ldif("alice") + env.user_ldif("bob") + env.user_ldif("carol")
             + env.group_ldif("CC-Support", [env.udn("alice"), env.udn("bob"), env.udn("carol")]))
    down = env.ldap_proxy(listen=False)  # "branch" directory: down for now
    env.write_config(connectors=[env.ldap_connector("corp"),
                                 env.ldap_connector("branch", uri=env.proxy_uri(down), company="branch")],
                     sync={"interval": "1h", "retry_min": "2s", "retry_max": "4s"})
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    m = d.wait_status(r"^corp ok .*; branch failed", 20)
    now = time.time()
    st = m.get("STATUS")
    print(f"STATUS={st}")
    rx = re.compile(r"^corp ok 3 users \+3 ~0 -0 at " + HMS
                    + r"; branch failed \((.+)\) retry " + HMS + "$")
    mm = rx.match(st)
    if c.true(mm, f"STATUS= has the format of service.md: [{st}]"):
        g = mm.groups()
        c.true(clock_diff(g[0:3], now) <= 2, "corp's `at` is the local time of the run")
        c.has(f"127.0.0.1:{down.port}", g[3], "branch's error says which server")
        c.true(clock_diff(g[4:7], now + 2) <= 2, "branch's `retry` is retry_min (2 s) later")
        c.hasnt("\n", st, "STATUS= is one line")

    # ---- idsyncd status while branch is failing: exit 1
    rc, out, err = env.run_cli("status")
    print(out, end="")
    c.eq(1, rc, "status exits 1 while the last run of a configured connector failed")
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    c.true(re.search(r"^corp\s+ok\s+run \d+\s+\S+Z\s+3 users \+3 ~0 -0\s+next \S+Z$", lines.get("corp", "")),
           "text: corp ok, its counts and the next run")
    c.true(re.search(r"^branch\s+failed\s+run \d+.*next \S+Z\s+error: .*127\.0\.0\.1", lines.get("branch", "")),
           "text: branch failed with the server's error")

    rc, out, err = env.run_cli("status", "--format", "json")
    c.eq(1, rc, "status --format json exits 1 too")
    doc = json.loads(out)
    by = {x["connector"]: x for x in doc["connectors"]}
    corp, branch = by.get("corp", {}), by.get("branch", {})
    counts = corp.get("summary") or {}
    c.eq(("ok", 3, 3, 0, True), (corp.get("status"), counts.get("users_seen"), counts.get("created"),
                                 counts.get("deactivated"), corp.get("configured")), "json: corp's last run")
    c.eq(2, doc.get("format_version"), "json: format_version")
    c.eq(set(corp), set(by.get("branch", {})), "json: an ok and a failed run have the same keys")
    # interval 1h, jitter 0: the next run is an hour after the run ended
    nxt = iso_epoch(corp["next_run_at"]) if corp.get("next_run_at") else 0
    c.true(abs(nxt - (now + 3600)) <= 5, f"json: corp's next run is in an hour ({corp.get('next_run_at')})")
    c.has(f":{d.pid}", corp.get("next_run_by") or "", "json: next_run_by names this instance (host:pid)")
    c.eq("failed", branch.get("status"), "json: branch failed")
    c.has("127.0.0.1", branch.get("error") or "", "json: branch's error")
    bn = iso_epoch(branch["next_run_at"]) if branch.get("next_run_at") else 0
    c.true(abs(bn - now) <= 10, f"json: branch's next run is its retry, seconds away ({branch.get('next_run_at')})")
    c.eq([], doc.get("orphaned"), "json: no orphaned connectors")

    # ---- branch's directory comes back: the next retry succeeds, status 0
    env.ldif(env.user_ldif("dave") + env.group_ldif("CC-Support2", [env.udn("dave")]))
    down.listen()
    m = d.wait_status(r"branch ok 4 users \+3 ~0 -0 at " + HMS, 15)
    c.true(m.get("STATUS").startswith("corp ok 3 users +3 ~0 -0 at "), "corp's part of STATUS= stays")
    rc, out, err = env.run_cli("status")
    c.eq(0, rc, "status exits 0 once every connector's last run is ok")
    rc, out, err = env.run_cli("status", "--format", "json")
    doc = json.loads(out)
    br = {x["connector"]: x for x in doc["connectors"]}["branch"]
    c.true(abs(iso_epoch(br["next_run_at"]) - (time.time() + 3600)) <= 5,
           "a success resets the backoff: branch's next run is an interval away")

    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")

    # ---- a safety guard stopped the last run: status exits 3, like sync
    empty = env.write_config(path=os.path.join(env.dir, "empty.yaml"), connectors=[
        env.ldap_connector("corp").replace(f"base: \"ou=people,{env.ou}\"", f"base: \"ou=groups,{env.ou}\""),
        env.ldap_connector("branch", uri=env.proxy_uri(down), company="branch")])
    rc, out, err = env.run_cli("sync", "--connector", "corp", config=empty)
    c.eq(3, rc, f"a sync that reads no user for a connector owning users is aborted (exit 3) [{out.strip()}]")
    rc, out, err = env.run_cli("status", config=empty)
    c.has("aborted_empty", out, "status shows the aborted run")
    c.eq(3, rc, "status exits 3 while the last run of a connector was stopped by a safety guard")


if __name__ == "__main__":
    main("t_daemon_status", body)
