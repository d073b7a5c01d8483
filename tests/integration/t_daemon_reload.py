#!/usr/bin/env python3
"""SIGHUP and SIGUSR1 (service.md; reliability.md case 23).

  * SIGUSR1 runs every connector now (interval 1h: nothing else would).
  * SIGHUP with a good config: RELOADING=1 with MONOTONIC_USEC= (our
    CLOCK_MONOTONIC), then READY=1; the new rule applies on the next run.
  * SIGHUP with a broken config (unknown key; an unknown catalog name in a
    rule): RELOADING=1 then READY=1, the old config keeps running, STATUS=
    and the log say so (and keep saying it until a reload succeeds).
  * SIGHUP with a valid config that drops a connector: accepted; that
    connector is no longer synced and its users are left exactly as they
    are (not deprovisioned).
  * A connector waiting out its backoff is retried right after a reload
    (which is how an operator says "fixed")."""
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main  # noqa: E402

SALES_RULE = ("  - name: sales\n"
              "    match: { member_of: [\"CC-Sales\"] }\n"
              "    tenant: sales\n"
              "    roles: [operator]\n"
              "    channels: [ip_telephony]\n")


def runs(env, conn):
    return int(env.q(f"SELECT count(*) FROM sync_run WHERE connector = '{conn}'"))


def reload(d, c, what):
    """SIGHUP; checks RELOADING=1 + MONOTONIC_USEC then READY=1; returns
    the READY message."""
    mark = d.mark()
    t = time.monotonic()
    d.signal(signal.SIGHUP)
    rl = d.wait_field("RELOADING", "1", 5, since=mark)
    usec = int(rl.get("MONOTONIC_USEC", "0"))
    c.true(abs(usec / 1e6 - t) < 2, f"{what}: RELOADING=1 with MONOTONIC_USEC= from CLOCK_MONOTONIC "
                                    f"({usec / 1e6 - t:+.3f}s from the SIGHUP)")
    ready = d.wait_field("READY", "1", 10, since=mark)
    c.true(ready.t >= rl.t and d.messages().index(ready) > d.messages().index(rl),
           f"{what}: READY=1 after RELOADING=1")
    return ready


def body(env, c):
    env.ldif("".join(env.user_ldif(u) for u in ("alice", "bob", "carol"))
             + env.group_ldif("CC-Support", [env.udn("alice"), env.udn("bob")])
             + env.group_ldif("CC-Sales", [env.udn("carol")]))
    two = [env.ldap_connector("corp"), env.ldap_connector("corp2", company="beta")]
    env.write_config(connectors=two, sync={"interval": "1h"})
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"^corp ok 3 users \+2 ~0 -0 at .*; corp2 ok 3 users \+2 ~0 -0 at ", 20)

    # ---- SIGUSR1: both run again now, not in an hour
    mark = d.mark()
    t = time.monotonic()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp running since", 5, since=mark)
    m = d.wait_status(r"^corp ok 3 users \+0 ~0 -0 at .*; corp2 ok 3 users \+0 ~0 -0 at ", 10, since=mark)
    c.true(m.t - t < 5, f"SIGUSR1 ran every connector at once ({m.t - t:.2f}s)")
    c.eq((2, 2), (runs(env, "corp"), runs(env, "corp2")), "one more sync_run row per connector")

    # ---- a good reload: the new rule applies on the next run
    env.write_config(connectors=two, rules=env.DEFAULT_RULES + SALES_RULE, sync={"interval": "1h"})
    reload(d, c, "good config")
    d.wait_line(r"configuration reloaded: 2 connectors", 5)
    c.ok("the log says the configuration was reloaded")
    c.eq("0", env.q("SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id"
                    " WHERE u.username = 'carol'"), "nothing runs just because of a reload")
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp ok 3 users \+1 ~0 -0 at .*; corp2 ok 3 users \+1 ~0 -0 at ", 15, since=mark)
    c.eq("operator|sales|2", env.q(
        "SELECT r.role || '|' || t.slug || '|' || count(*) OVER () FROM tenant_role r"
        " JOIN app_user u ON u.id = r.user_id JOIN tenant t ON t.id = r.tenant_id"
        " WHERE u.username = 'carol' LIMIT 1"), "the new rule made carol a sales operator (both companies)")

    # ---- broken configs: refused, the old one keeps running
    good = open(env.write_config(connectors=two, rules=env.DEFAULT_RULES + SALES_RULE,
                                 sync={"interval": "1h"})).read()
    for what, text in (("an unknown key", good.replace("sync:\n", "sync:\n  intervall: 5m\n")),
                       ("an unknown role in a rule", good.replace("roles: [operator]\n    channels: [ip",
                                                                  "roles: [overlord]\n    channels: [ip"))):
        with open(env.dir + "/idsyncd.yaml", "w") as f:
            f.write(text)
        lm = d.line_mark()
        mark = d.mark()
        ready = reload(d, c, what)
        st = d.wait_status(r"reload refused, old configuration kept: .*idsyncd\.yaml:\d+", 5, since=mark)
        c.true(st.t >= ready.t - 0.001, f"{what}: STATUS= says the reload was refused and why: "
                                         f"[{st.get('STATUS')[:140]}]")
        d.wait_line(r"error reload refused, keeping the running configuration: .*idsyncd\.yaml:\d+", 5, since=lm)
        c.ok(f"{what}: the log says why, with file:line")
        c.true(d.alive(), f"{what}: the daemon keeps running")
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        m = d.wait_status(r"^reload refused.*; corp ok 3 users \+0 ~0 -0 at .*; corp2 ok 3 users \+0 ~0 -0",
                          15, since=mark)
        c.ok(f"{what}: the old configuration still syncs, and STATUS= still says the reload was refused")
        c.eq("2", env.q("SELECT count(*) FROM tenant_role r JOIN app_user u ON u.id = r.user_id"
                        " WHERE u.username = 'carol' AND r.role = 'operator'"),
             f"{what}: carol's sales role (old config) stays")

    # ---- a valid config that drops corp2: accepted, corp2 left alone
    before2 = env.q("SELECT username, active FROM app_user u JOIN company c ON c.id = u.company_id"
                    " WHERE c.slug = 'beta' ORDER BY 1")
    runs2 = runs(env, "corp2")
    env.write_config(connectors=[two[0]], rules=env.DEFAULT_RULES + SALES_RULE, sync={"interval": "1h"})
    mark = d.mark()
    reload(d, c, "corp2 removed")
    m = d.wait_for(lambda m: "STATUS" in m.fields, 5, "STATUS= after the reload", since=mark)
    c.true("refused" not in m.get("STATUS") and "corp2" not in m.get("STATUS"),
           f"a successful reload clears the note; corp2 is gone from STATUS= [{m.get('STATUS')}]")
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp ok 3 users \+0 ~0 -0 at \S+$", 15, since=mark)
    c.eq(runs2, runs(env, "corp2"), "corp2 is no longer synced")
    c.eq(before2, env.q("SELECT username, active FROM app_user u JOIN company c ON c.id = u.company_id"
                        " WHERE c.slug = 'beta' ORDER BY 1"), "corp2's users are left exactly as they were")
    c.eq("true|true", env.q("SELECT bool_and(active) || '|' || bool_and(deactivated_at IS NULL) FROM app_user"
                      " WHERE source = 'corp2'"), "no corp2 user deactivated")

    # ---- a failing connector, fixed by a reload, is retried at once (not
    # at the end of its backoff)
    down = env.ldap_proxy(listen=False)
    env.write_config(connectors=[two[0], env.ldap_connector("gamma", uri=env.proxy_uri(down), company="gamma")],
                     sync={"interval": "1h", "retry_min": "1m", "retry_max": "1h"})
    mark = d.mark()
    reload(d, c, "gamma added")
    d.wait_status(r"; gamma failed \(.*\) retry ", 10, since=mark)
    env.write_config(connectors=[two[0], env.ldap_connector("gamma", company="gamma")],
                     sync={"interval": "1h", "retry_min": "1m", "retry_max": "1h"})
    mark = d.mark()
    t = time.monotonic()
    reload(d, c, "gamma fixed")
    m = d.wait_status(r"; gamma ok 3 users \+2 ~0 -0 at ", 10, since=mark)
    c.true(m.t - t < 5, f"the fixed connector ran right after the reload ({m.t - t:.2f}s; retry_min is 1m)")

    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(5), "SIGTERM exits 0")


if __name__ == "__main__":
    main("t_daemon_reload", body)
