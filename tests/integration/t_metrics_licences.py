#!/usr/bin/env python3
"""The licence gauges of /metrics (issue 20): after each run of
`idsyncd run`, idsyncd_licence_seats_used / _limit / _waiting per company
and role say what the database holds (compared with tenant_role and the
seat book, and with the numbers worked out by hand: 5 entitled to 3
seats), follow a departure in the next run and a raised licence after a
reload, and `promtool check metrics` accepts the text."""
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main  # noqa: E402
from t_metrics import free_port, promtool, scrape, value  # noqa: E402

RULES = ("  - name: phone-users\n"
         "    match: { member_of: [\"CC-Phone\"] }\n"
         "    tenant: support\n"
         "    roles: [phone]\n")


def extra(port, limit):
    return (f"metrics:\n  listen: \"127.0.0.1:{port}\"\n"
            "catalog:\n  extra_roles: [phone]\n"
            f"licences:\n  acme:\n    phone: {limit}\n")


def series(name):
    return name + '{company="acme",role="phone"}'


def check(env, c, port, used, limit, waiting, when):
    # the gauges are set just after the run's end is announced: a scrape
    # may come between, so wait (briefly) for the run's numbers
    want = {"used": used, "limit": limit, "waiting": waiting}
    end = time.monotonic() + 10
    while True:
        _, _, text = scrape(port)
        got = {k: value(text, series("idsyncd_licence_seats_" + k)) for k in want}
        if all(got[k] == float(want[k]) for k in want) or time.monotonic() > end:
            break
        time.sleep(0.1)
    db_used = env.q("SELECT count(DISTINCT r.user_id) FROM tenant_role r JOIN app_user u ON u.id = r.user_id"
                    " WHERE r.role = 'phone' AND u.active")
    db_waiting = env.q("SELECT count(*) FROM licence_entitlement WHERE role = 'phone' AND seat_run IS NULL")
    c.eq((used, waiting), (int(db_used), int(db_waiting)), f"{when}: the database holds {used} / {waiting}")
    c.eq(float(used), value(text, series("idsyncd_licence_seats_used")), f"{when}: seats used")
    c.eq(float(limit), value(text, series("idsyncd_licence_seats_limit")), f"{when}: the limit")
    c.eq(float(waiting), value(text, series("idsyncd_licence_seats_waiting")), f"{when}: users waiting")
    promtool(c, text)


def body(env, c):
    users = ["p1", "p2", "p3", "p4", "p5"]
    env.ldif("".join(env.user_ldif(u) for u in users) + env.group_ldif("CC-Phone", [env.udn(u) for u in users]))
    port = free_port()
    env.write_config(rules=RULES, raw_extra=extra(port, 3))
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"^corp ok 5 users \+5 ", 20)
    check(env, c, port, 3, 3, 2, "first run")

    # p1 leaves: p4 takes the seat in the same run, p5 still waits
    env.ldif("dn: " + env.gdn("CC-Phone") + "\nchangetype: modify\ndelete: member\nmember: "
             + env.udn("p1") + "\n\n", add=False)
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp ok \d+ users ", 20, since=mark)
    check(env, c, port, 3, 3, 1, "after a departure")

    # the licence raised to 10 (a reload): everyone entitled is seated
    env.write_config(rules=RULES, raw_extra=extra(port, 10))
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_field("READY", "1", 10, since=mark)
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp ok \d+ users ", 20, since=mark)
    check(env, c, port, 4, 10, 0, "after raising the licence")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(10), "SIGTERM exits 0")


if __name__ == "__main__":
    main("t_metrics_licences", body)
