#!/usr/bin/env python3
"""/metrics (issue 17 part 4): `idsyncd run` with a metrics: block serves
the Prometheus text format on its own loopback listener; the counters
grow with each run, idsyncd_users_seen matches the users the database
holds, and `promtool check metrics` (Debian's prometheus package) accepts
the text.  A bad metrics.listen is a configuration error with its place.
The series of issue 17 part 4 added later: users and grants managed
(read from managed_count after each ok run, so another writer's changes
are in them after the next run), change feed resets by reason (a reload
that changes the connector's filters resets the feed), targeted syncs by
connector and outcome (NOTIFY idsyncd_sync_user)."""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import free_port, main  # noqa: E402



def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def value(text, series):
    """The value of one exact series line (name{labels}), else None."""
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def promtool(c, text):
    try:
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    except FileNotFoundError:
        c.bad("promtool is missing: scripts/deps installs Debian's prometheus package")
        return
    c.eq(0, r.returncode, f"promtool check metrics accepts the text ({(r.stdout + r.stderr).strip()})")


def body(env, c):
    env.ldif(env.user_ldif("alice") + env.user_ldif("bob") + env.user_ldif("carol")
             + env.group_ldif("CC-Support", [env.udn("alice"), env.udn("bob"), env.udn("carol")]))
    port = free_port()

    # ---- a listen that is not HOST:PORT: exit 78, naming the key
    env.write_config(raw_extra="metrics:\n  listen: \"example.org:80\"\n")
    rc, out, err = env.run_cli("check-config")
    c.eq(78, rc, "check-config refuses metrics.listen: example.org:80")
    c.has("metrics.listen", err, f"... naming the key ({err.strip()})")

    feed = env.ldap_connector(extra="changes: { mode: auto }")
    env.write_config(connectors=[feed], raw_extra=f"metrics:\n  listen: \"127.0.0.1:{port}\"\n")
    rc, out, err = env.run_cli("check-config")
    c.eq(0, rc, f"check-config accepts metrics.listen 127.0.0.1:{port} ({err.strip()})")
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    d.wait_status(r"^corp ok 3 users \+3 ", 20)
    status, ctype, text = scrape(port)
    c.eq(200, status, "GET /metrics answers 200")
    c.has("text/plain; version=0.0.4", ctype or "", "in the text exposition format")
    c.eq(1.0, value(text, 'idsyncd_runs_total{connector="corp",status="ok"}'), "one ok run counted")
    db_users = env.q("SELECT count(*) FROM app_user WHERE source = 'corp' AND active")
    c.eq(float(db_users), value(text, 'idsyncd_users_seen{connector="corp"}'),
         f"idsyncd_users_seen matches the database ({db_users})")
    c.eq(3.0, value(text, 'idsyncd_changes_total{connector="corp",kind="created"}'), "3 users created")
    c.eq(1.0, value(text, 'idsyncd_run_duration_seconds_count{connector="corp"}'), "one run timed")
    c.eq(0.0, value(text, 'idsyncd_held_plans{connector="corp"}'), "nothing held")
    ts = value(text, 'idsyncd_last_success_timestamp_seconds{connector="corp"}')
    c.true(ts is not None and abs(ts - time.time()) < 60, f"last success is now ({ts})")
    promtool(c, text)

    # ---- someone joins; a run (SIGUSR1): the counters grow
    env.ldif(env.user_ldif("dave"))
    env.ldif("dn: " + env.gdn("CC-Support") + "\nchangetype: modify\nadd: member\nmember: "
             + env.udn("dave") + "\n\n", add=False)
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp ok 4 users \+1 ", 20, since=mark)
    _, _, text = scrape(port)
    c.eq(2.0, value(text, 'idsyncd_runs_total{connector="corp",status="ok"}'), "two ok runs counted")
    c.eq(4.0, value(text, 'idsyncd_changes_total{connector="corp",kind="created"}'), "4 users created in all")
    db_users = env.q("SELECT count(*) FROM app_user WHERE source = 'corp' AND active")
    c.eq(float(db_users), value(text, 'idsyncd_users_seen{connector="corp"}'),
         f"idsyncd_users_seen matches the database again ({db_users})")
    c.eq(2.0, value(text, 'idsyncd_run_duration_seconds_bucket{connector="corp",le="+Inf"}'),
         "the histogram's +Inf bucket counts both runs")
    promtool(c, text)

    # ---- only /metrics is served
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        c.bad("GET / answered 200")
    except urllib.error.HTTPError as e:
        c.eq(404, e.code, "GET / is 404")

    # ---- a reload keeps the counters (the registry outlives the listener)
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_field("READY", "1", 10, since=mark)  # the listener is up again by then
    _, _, text = scrape(port)
    c.eq(2.0, value(text, 'idsyncd_runs_total{connector="corp",status="ok"}'), "a reload keeps the counters")

    # ---- users and grants managed: 4 users, each operator + webchat + email
    c.eq(4.0, value(text, 'idsyncd_users_managed{connector="corp"}'), "idsyncd_users_managed: 4")
    c.eq(12.0, value(text, 'idsyncd_grants_managed{connector="corp"}'), "idsyncd_grants_managed: 4 x 3")
    c.eq("12", env.q("SELECT (SELECT count(*) FROM tenant_role WHERE source = 'corp')"
                     " + (SELECT count(*) FROM channel_grant WHERE source = 'corp')"), "... as the database has them")
    c.true(value(text, 'idsyncd_feed_resets_total{connector="corp",reason="config_changed"}') is None,
           "no feed reset yet")
    # carol leaves CC-Support: the gauges follow the next run
    env.ldif("dn: " + env.gdn("CC-Support") + "\nchangetype: modify\ndelete: member\nmember: "
             + env.udn("carol") + "\n\n", add=False)

    # ---- a reload that changes what the feed reads (disabled_filter):
    # the next run cannot continue from the cursor and reads everything
    feed = env.ldap_connector(extra="changes: { mode: auto }\ndisabled_filter: \"(description=gone)\"")
    env.write_config(connectors=[feed], raw_extra=f"metrics:\n  listen: \"127.0.0.1:{port}\"\n")
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_field("READY", "1", 10, since=mark)
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp ok 4 users \+0 ~0 -1 ", 20, since=mark)  # carol out of scope
    _, _, text = scrape(port)
    c.eq(1.0, value(text, 'idsyncd_feed_resets_total{connector="corp",reason="config_changed"}'),
         "idsyncd_feed_resets_total counts the reset by its reason")
    c.eq("1", env.q("SELECT resets FROM connector_feed WHERE connector = 'corp'"), "... as connector_feed does")
    c.eq(3.0, value(text, 'idsyncd_users_managed{connector="corp"}'), "carol's grants gone: 3 users managed")
    c.eq(9.0, value(text, 'idsyncd_grants_managed{connector="corp"}'), "... and 9 grants")

    # ---- another writer: the platform takes alice's email channel away.  The next run is
    # incremental and changes nothing (the directory did not change), yet the gauges have it
    # (they read managed_count, which every writer's transaction keeps)
    env.q("DELETE FROM channel_grant WHERE source = 'corp' AND channel = 'email'"
          " AND user_id = (SELECT id FROM app_user WHERE username = 'alice')")
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_status(r"^corp ok 4 users \+0 ~0 -0 ", 20, since=mark)
    _, _, text = scrape(port)
    c.eq(8.0, value(text, 'idsyncd_grants_managed{connector="corp"}'),
         "another writer's change is in the gauge after the next run, which changed nothing")
    c.eq(3.0, value(text, 'idsyncd_users_managed{connector="corp"}'), "... and the users are still 3")

    # ---- a targeted sync (NOTIFY): its own counter, not a run of the schedule
    env.q("SELECT pg_notify('idsyncd_sync_user', 'corp:alice')")
    for _ in range(50):
        _, _, text = scrape(port)
        if value(text, 'idsyncd_targeted_syncs_total{connector="corp",outcome="ok"}'):
            break
        time.sleep(0.1)
    c.eq(1.0, value(text, 'idsyncd_targeted_syncs_total{connector="corp",outcome="ok"}'),
         "idsyncd_targeted_syncs_total counts the NOTIFY's sync")
    c.eq(4.0, value(text, 'idsyncd_runs_total{connector="corp",status="ok"}'),
         "idsyncd_runs_total counts the scheduled runs only")
    promtool(c, text)
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(10), "SIGTERM exits 0")


if __name__ == "__main__":
    main("t_metrics", body)
