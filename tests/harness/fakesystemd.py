"""fakesystemd.py - plays systemd's part for the daemon's integration tests.

What systemd hands a Type=notify service, made by hand so that a test can
assert on it:

  * NOTIFY_SOCKET: a unix datagram socket.  Every sd_notify() message is
    kept with its arrival time (time.monotonic()) and the sender's pid
    (SO_PASSCRED), in order.
  * WATCHDOG_USEC / WATCHDOG_PID: the watchdog period, and the pid of the
    daemon itself: it is started as `sh -c 'WATCHDOG_PID=$$ exec idsyncd'`,
    so the pid that sets the variable is the one that becomes idsyncd.
  * JOURNAL_STREAM (optional) naming the daemon's stderr pipe, and
    FakeJournal: a stand-in journald socket that decodes the native
    protocol of sd_journal_sendv().

And what every t_daemon_*.py needs around it (like tests/integration/lib.sh
for the shell tests): the servers of tests/harness (skip with 77 without
them, fail under CI=true), a database and an LDAP subtree of the test's own,
a TCP proxy that refuses, passes or stalls connections (a server that is
down, comes back, or stops answering), and checks that count.

Waiting is always for an expected message, log line or row, with a bounded
timeout (Daemon.wait_for, poll_until): never sleep-and-hope.
"""
import array
import atexit
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


class Fail(Exception):
    """A check that cannot go on (a wait timed out): ends the test."""


# ---------------------------------------------------------------- checks

class Checks:
    """ok/bad counting like lib.sh; finish() is the test's exit code."""

    def __init__(self, name):
        self.name = name
        self.checks = 0
        self.fails = 0

    def ok(self, what):
        self.checks += 1
        print(f"ok: {what}", flush=True)

    def bad(self, what):
        self.checks += 1
        self.fails += 1
        print(f"FAIL: {what}", file=sys.stderr, flush=True)

    def true(self, cond, what):
        (self.ok if cond else self.bad)(what)
        return bool(cond)

    def eq(self, expected, actual, what):
        if expected == actual:
            self.ok(what)
            return True
        self.bad(f"{what}: expected [{expected}], got [{actual}]")
        return False

    def has(self, needle, haystack, what):
        if needle in haystack:
            self.ok(what)
            return True
        self.bad(f"{what}: [{needle}] not found in [{haystack}]")
        return False

    def hasnt(self, needle, haystack, what):
        if needle not in haystack:
            self.ok(what)
            return True
        self.bad(f"{what}: [{needle}] found in [{haystack}]")
        return False

    def finish(self):
        print(f"{self.name}: {self.checks - self.fails} passed, {self.fails} failed", flush=True)
        return 0 if self.fails == 0 and self.checks > 0 else 1


def main(name, body, ldap=True):
    """Runs body(env, checks) with the test environment; exits with the
    verdict.  A Fail (or any exception) counts as a failed check and ends
    the test, after printing what the daemons said."""
    env = TestEnv(name, ldap=ldap)
    checks = Checks(name)
    try:
        body(env, checks)
    except Exception as e:  # noqa: BLE001 - every error is the test's failure
        import traceback
        traceback.print_exc()
        checks.bad(f"{type(e).__name__}: {e}")
        for d in env.daemons:
            d.dump()
    finally:
        for d in env.daemons:
            d.close()
    sys.exit(checks.finish())


def skip_or_fail(why):
    """No test servers: skip (77), except under CI=true where that is a
    failure (a CI run must run every test)."""
    if os.environ.get("CI") == "true":
        print(f"FAIL: {why} (CI=true: run the tests through scripts/test)", file=sys.stderr)
        sys.exit(1)
    print(f"SKIP: {why} (run the tests through scripts/test)", file=sys.stderr)
    sys.exit(77)


def own_cluster(test, ldap=False):
    """Starts a PostgreSQL cluster of the test's own in a temporary
    directory (for a test that restarts or stops it) and points the
    environment at it (the variables pg.sh writes); stopped at exit.  The
    shared servers must be there (IDS_TEST_PG_CONNINFO; IDS_TEST_LDAP_URI
    too with ldap=True) or the test skips, failing under CI."""
    if not os.environ.get("IDS_TEST_PG_CONNINFO") or (ldap and not os.environ.get("IDS_TEST_LDAP_URI")):
        skip_or_fail(f"{test}: no test servers")
    harness = os.path.dirname(os.path.abspath(__file__))
    d = tempfile.mkdtemp(prefix=f"idsyncd-{test}-pg.")
    os.chmod(d, 0o755)
    r = subprocess.run([os.path.join(harness, "pg.sh"), "start", d], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL: pg.sh start {d}: {r.stderr.strip()}", file=sys.stderr)
        sys.exit(1)
    atexit.register(lambda: subprocess.run([os.path.join(harness, "pg.sh"), "stop", d], capture_output=True))
    with open(os.path.join(d, "pg.env")) as f:
        for m in re.finditer(r"^export (\w+)='([^']*)'$", f.read(), re.M):
            os.environ[m.group(1)] = m.group(2)
    return d


def hold_lock(env, connector):
    """A psql session holding the connector's advisory lock (the key of
    store.c's lock_key: FNV-1a 64 of "idsyncd:" + name), as another
    instance's run would; returns the Popen (kill it to release)."""
    h = 0xcbf29ce484222325
    for b in f"idsyncd:{connector}".encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    key = h - (1 << 64) if h >= 1 << 63 else h
    p = subprocess.Popen(["psql", "-qAtX", "-d", env.db, "-c", f"SELECT pg_advisory_lock({key})",
                          "-c", "SELECT 'locked'", "-c", "SELECT pg_sleep(61)"],
                         stdout=subprocess.PIPE, text=True)
    # pg_advisory_lock() returns void: an empty line comes first
    if "locked" not in (p.stdout.readline() + p.stdout.readline()):
        raise Fail("psql could not take the advisory lock")
    return p


def release_lock(env, p):
    """Ends hold_lock's session: the server's session outlives the psql
    client (pg_sleep does not notice it gone), so it is terminated.  61 s,
    not 60: t_cli.sh and t_json_output.sh end every pg_sleep(60) session
    of the cluster, which would free this lock under a test's feet."""
    p.kill()
    p.wait()
    # this test's database only: the other tests' locks are theirs
    env.q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
          " AND query LIKE '%pg_sleep(61)%' AND pid <> pg_backend_pid()")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port, series, missing=None):
    """The value of one exact series of the daemon's /metrics, else missing."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else missing


def poll_until(fn, timeout, what, every=0.1):
    """Calls fn() until it returns something true (returned), failing with
    `what` after timeout seconds.  For state that has no event to wait on
    (database rows)."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise Fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


# ---------------------------------------------------------------- environment

class TestEnv:
    """A database t_<name>_<pid> and an LDAP subtree ou=<name>,<base> of the
    test's own on the shared servers, a work directory, and the idsyncd
    binary.  Everything is removed at exit."""

    def __init__(self, name, ldap=True):
        self.name = name
        self.idsyncd = os.environ.get("IDSYNCD")
        self.src = os.environ.get("IDS_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        if not self.idsyncd:
            print("FAIL: IDSYNCD must name the idsyncd binary (ctest sets it)", file=sys.stderr)
            sys.exit(1)
        self.pg = os.environ.get("IDS_TEST_PG_CONNINFO")
        self.ldap_uri = os.environ.get("IDS_TEST_LDAP_URI")
        if not self.pg or (ldap and not self.ldap_uri):
            skip_or_fail(f"{name}: no test servers")
        self.has_ldap = ldap
        self.base = os.environ.get("IDS_TEST_LDAP_BASE", "dc=example,dc=org")
        self.ou = f"ou={name},{self.base}"
        self.db = f"t_{name}_{os.getpid()}"
        self.dir = tempfile.mkdtemp(prefix=f"idsyncd-{name}.")
        os.chmod(self.dir, 0o755)
        self.daemons = []
        self.cleanups = []
        # the LDAP tools must trust the test CA and nothing in ~/.ldaprc
        os.environ["LDAPTLS_CACERT"] = os.environ.get("IDS_TEST_LDAP_CA", "")
        os.environ["PGOPTIONS"] = "-c search_path=idsync"
        atexit.register(self.cleanup)
        self.psql_admin(f'CREATE DATABASE "{self.db}"')
        if ldap:
            self.ldif_delete_tree(self.ou)  # a leftover of an aborted run
            self.ldif(f"dn: {self.ou}\nobjectClass: organizationalUnit\nou: {name}\n\n"
                      f"dn: ou=people,{self.ou}\nobjectClass: organizationalUnit\nou: people\n\n"
                      f"dn: ou=groups,{self.ou}\nobjectClass: organizationalUnit\nou: groups\n\n")

    def cleanup(self):
        for d in self.daemons:
            d.close()
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        subprocess.run(["psql", "-qX", "-d", "postgres", "-c",
                        f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'],
                       capture_output=True)
        if self.has_ldap:
            self.ldif_delete_tree(self.ou)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- PostgreSQL
    def psql_admin(self, sql):
        subprocess.run(["psql", "-qX", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql],
                       check=True, capture_output=True)

    def q(self, sql, db=None):
        """One query on the test database: unaligned rows, '|' between
        columns, newline between rows, no headers."""
        r = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", db or self.db, "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail(f"psql failed: {sql}: {r.stderr.strip()}")
        return r.stdout.strip()

    def conninfo(self):
        return f"{self.pg} dbname={self.db}"

    def snapshot_db(self):
        """reliability.md's "unchanged": a sorted dump of users (with xmin:
        a rewritten row counts as a change), grants and tenants."""
        return "\n".join([
            self.q("SELECT u.company_id, u.source, u.external_id, u.username, u.email, u.active,"
                   " u.deactivation_reason, u.company_admin, u.xmin FROM app_user u ORDER BY 1,2,3,4"),
            self.q("SELECT 'role', user_id, tenant_id, role, source FROM tenant_role"
                   " UNION ALL SELECT 'chan', user_id, tenant_id, channel, source FROM channel_grant"
                   " UNION ALL SELECT 'slot', user_id, tenant_id, channel_group || '=' || slots, source"
                   " FROM slot_limit"
                   " UNION ALL SELECT 'grp', user_id, group_id, '', source FROM operator_group_member"
                   " ORDER BY 1,2,3,4"),
            self.q("SELECT company_id, slug FROM tenant ORDER BY 1,2"),
        ])

    # ---- LDAP
    def _ldap_admin(self):
        return ["-ZZ", "-x", "-H", self.ldap_uri, "-D", os.environ["IDS_TEST_LDAP_ADMIN_DN"],
                "-y", os.environ["IDS_TEST_LDAP_ADMIN_PW_FILE"]]

    def ldif(self, text, add=True):
        """Applies LDIF (plain entries with add=True, else changetype
        records) as the rootdn, through ldapmodify."""
        args = ["ldapmodify"] + (["-a"] if add else []) + self._ldap_admin()
        r = subprocess.run(args, input=text, capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail(f"ldapmodify failed: {r.stderr.strip()}")

    def ldif_delete_tree(self, dn):
        subprocess.run(["ldapdelete", "-r"] + self._ldap_admin() + [dn], capture_output=True)

    def udn(self, uid):
        return f"uid={uid},ou=people,{self.ou}"

    def gdn(self, cn):
        return f"cn={cn},ou=groups,{self.ou}"

    def user_ldif(self, uid, given="Test", sn="User", mail=None):
        mail = mail or f"{uid}@example.org"
        return (f"dn: {self.udn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ngivenName: {given}\n"
                f"sn: {sn}\ncn: {given} {sn}\nmail: {mail}\n\n")

    def group_ldif(self, cn, members):
        return (f"dn: {self.gdn(cn)}\nobjectClass: groupOfNames\ncn: {cn}\n"
                + "".join(f"member: {m}\n" for m in members) + "\n")

    def add_users(self, prefix, n, group=None, chunk=2000):
        """n users <prefix>0..n-1 and, when group is given, a groupOfNames
        with all of them; in chunks so that the LDIF stays small."""
        uids = [f"{prefix}{i}" for i in range(n)]
        for i in range(0, n, chunk):
            self.ldif("".join(self.user_ldif(u, "User", f"Number {u}") for u in uids[i:i + chunk]))
        if group:
            self.ldif(self.group_ldif(group, [self.udn(u) for u in uids]))
        return uids

    # ---- idsyncd
    def ldap_connector(self, name="corp", uri=None, page_size=20, timeout="10s", company="acme", extra=""):
        """YAML of one LDAP connector reading this test's subtree through
        StartTLS with the test CA and the service account."""
        pw = os.path.join(self.dir, "ldap.pw")
        if not os.path.exists(pw):
            shutil.copyfile(os.environ["IDS_TEST_LDAP_BIND_PW_FILE"], pw)
            os.chmod(pw, 0o600)
        text = (f"  - name: {name}\n"
                f"    type: ldap\n"
                f"    company: {company}\n"
                f"    uri: [\"{uri or self.ldap_uri}\"]\n"
                f"    tls_ca_file: {os.environ['IDS_TEST_LDAP_CA']}\n"
                f"    bind_dn: \"{os.environ['IDS_TEST_LDAP_BIND_DN']}\"\n"
                f"    bind_password_file: {pw}\n"
                f"    page_size: {page_size}\n"
                f"    timeout: {timeout}\n"
                f"    users: {{ base: \"ou=people,{self.ou}\" }}\n"
                f"    groups: {{ base: \"ou=groups,{self.ou}\" }}\n")
        return text + "".join(f"    {line}\n" for line in extra.splitlines() if line)

    DEFAULT_RULES = ("  - name: support-operators\n"
                     "    match: { member_of: [\"CC-Support\"] }\n"
                     "    tenant: support\n"
                     "    roles: [operator]\n"
                     "    channels: [webchat, email]\n")

    def write_config(self, path=None, connectors=None, rules=None, conninfo=None, sync=None,
                     log_level="info", log_target="stderr", migrate="auto", raw_extra=""):
        """Writes a config file (default: <dir>/idsyncd.yaml) and returns its
        path.  sync: dict of the sync: keys (durations as strings)."""
        path = path or os.path.join(self.dir, "idsyncd.yaml")
        sync = {"interval": "1h", "jitter": "0s", "retry_min": "1s", "retry_max": "8s", **(sync or {})}
        if connectors is None:
            connectors = [self.ldap_connector()]
        text = (f"database:\n  conninfo: \"{conninfo or self.conninfo()}\"\n  migrate: {migrate}\n"
                "sync:\n" + "".join(f"  {k}: {v}\n" for k, v in sync.items())
                + f"log:\n  level: {log_level}\n  target: {log_target}\n"
                "safety:\n  max_deactivation_percent: 100\n  max_grant_removals_percent: 100\n"
                "  max_deactivations: 1000000\n"
                "tenants:\n  auto_create: true\n"
                + raw_extra
                + "connectors:\n" + "".join(connectors)
                + "rules:\n" + (self.DEFAULT_RULES if rules is None else rules))
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # a reload never sees half a file
        return path

    def run_cli(self, *args, config=None, timeout=120):
        """idsyncd -c CONFIG ARGS...: (exit code, stdout, stderr)."""
        r = subprocess.run([self.idsyncd, "-c", config or os.path.join(self.dir, "idsyncd.yaml"), *args],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def ldap_proxy(self, delay=0.0, listen=True):
        """A TcpProxy in front of the test slapd (plain port: StartTLS runs
        through it); its URI is proxy_uri(p)."""
        m = re.match(r"ldap://([^:/]+):(\d+)", self.ldap_uri)
        p = TcpProxy(m.group(1), m.group(2), delay)
        if listen:
            p.listen()
        self.cleanups.append(p.close)
        return p

    @staticmethod
    def proxy_uri(p):
        return f"ldap://127.0.0.1:{p.port}"

    def pg_proxy(self, listen=False):
        """A TcpProxy in front of the test PostgreSQL, refusing until
        listen(); conninfo_via(p) points at it."""
        host = re.search(r"host=(\S+)", self.pg).group(1)
        port = re.search(r"port=(\d+)", self.pg).group(1)
        p = TcpProxy(host, port)
        if listen:
            p.listen()
        self.cleanups.append(p.close)
        return p

    def conninfo_via(self, p):
        return f"host=127.0.0.1 port={p.port} user=postgres dbname={self.db}"

    def daemon(self, **kw):
        d = Daemon(self, **kw)
        self.daemons.append(d)
        return d


# ---------------------------------------------------------------- notify

# A message's time is the kernel's, taken when the daemon sent it
# (SO_TIMESTAMPNS, realtime; Linux's number where Python lacks the name),
# not when the reader thread got to it: on a loaded machine that thread
# runs late, and a test of the daemon's WATCHDOG=1 cadence measured it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Msg:
    """One sd_notify() datagram: fields in order (KEY -> VALUE, the last
    one wins), the arrival time, the sender's pid."""

    def __init__(self, t, pid, raw):
        self.t = t
        self.pid = pid
        self.raw = raw
        self.fields = {}
        for line in raw.split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                self.fields[k] = v

    def get(self, k, default=None):
        return self.fields.get(k, default)

    def __repr__(self):
        return f"<{self.t:.3f} pid {self.pid}: {self.raw!r}>"


class Daemon:
    """`idsyncd -c CONFIG run` under a fake systemd.

    watchdog_usec: sets WATCHDOG_USEC (and WATCHDOG_PID to the daemon's
    pid).  journal_stream: sets JOURNAL_STREAM to the device:inode of the
    daemon's stderr pipe, as systemd does for StandardError=journal.
    Messages (self.msgs) and stderr lines (self.lines: (time, text)) are
    collected by threads; wait_for() and wait_line() block until one
    matches."""

    def __init__(self, env, config=None, watchdog_usec=None, journal_stream=False, extra_env=None,
                 label="idsyncd", notify=True):
        self.env = env
        self.label = label
        self.config = config or os.path.join(env.dir, "idsyncd.yaml")
        self.watchdog_usec = watchdog_usec
        self.journal_stream = journal_stream
        self.extra_env = extra_env or {}
        self.notify = notify
        self.msgs = []
        self.lines = []
        self.cond = threading.Condition()
        self.proc = None
        self.sock = None
        self.sockdir = None
        self.threads = []
        self.closed = False
        self.rc = None
        self.exit_seen = None
        self.receiving = False

    # ---- start / stop
    def start(self):
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS"):
            env.pop(k, None)
        if self.notify:
            # short path: sun_path has 108 bytes
            self.sockdir = tempfile.mkdtemp(prefix="ids-notify.")
            path = os.path.join(self.sockdir, "notify")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind(path)
            env["NOTIFY_SOCKET"] = path
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        env.update(self.extra_env)
        r_fd, w_fd = os.pipe()
        if self.journal_stream:
            st = os.fstat(w_fd)
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        # WATCHDOG_PID must be the pid of idsyncd itself: the shell sets it
        # to its own pid ($$) and then becomes idsyncd with exec
        script = ('[ -n "$WATCHDOG_USEC" ] && export WATCHDOG_PID=$$; exec "$0" "$@"')
        self.proc = subprocess.Popen(["/bin/sh", "-c", script, self.env.idsyncd, "-c", self.config, "run"],
                                     env=env, stdin=subprocess.DEVNULL, stdout=w_fd, stderr=w_fd,
                                     start_new_session=True)
        os.close(w_fd)
        self.t0 = time.monotonic()
        self._thread(self._read_stderr, r_fd)
        if self.sock:
            self._thread(self._read_notify)
        return self

    def _thread(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _read_stderr(self, fd):
        buf = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                with self.cond:
                    self.lines.append((time.monotonic(), line.decode("utf-8", "replace")))
                    self.cond.notify_all()
        if buf:
            with self.cond:
                self.lines.append((time.monotonic(), buf.decode("utf-8", "replace")))
        os.close(fd)
        with self.cond:
            self.cond.notify_all()

    def _read_notify(self):
        creds = socket.CMSG_SPACE(struct.calcsize("iII")) + socket.CMSG_SPACE(struct.calcsize("qq"))
        while not self.closed:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.2)
            except (OSError, ValueError):
                break
            if not ready:
                continue
            with self.cond:
                self.receiving = True  # see _drain_notify
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, creds)
            except OSError:
                with self.cond:
                    self.receiving = False
                break
            t = time.monotonic()
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
                elif level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                    # when the daemon sent it, on this thread's clock
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    t -= max(0.0, time.time() - (sec + nsec / 1e9))
            with self.cond:
                self.msgs.append(Msg(t, pid, data.decode("utf-8", "replace")))
                self.receiving = False
                self.cond.notify_all()

    def _drain_notify(self, timeout=5):
        """After the exit: waits until every datagram the daemon sent is in
        self.msgs (its last STATUS= may still be in the socket when the
        exit is seen: read after it under load).  Holding the lock, a
        reader that is not between its select() and its append, and a
        socket with nothing to read, mean that nothing is on its way."""
        end = time.monotonic() + timeout
        with self.cond:
            while time.monotonic() < end:
                if not self.receiving and not select.select([self.sock], [], [], 0)[0]:
                    return
                self.cond.wait(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """The exit code; Fail when still running after timeout s."""
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"{self.label} still running {timeout}s later")
        # the stderr reader (the first thread) ends at the pipe's EOF, just
        # after the exit: a test reading stderr once the daemon exited
        # sees all of it (t_daemon_start found it empty twice)
        if self.threads:
            self.threads[0].join(5)
        if self.sock and not self.closed:
            self._drain_notify()
        return self.rc

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        """Ends the daemon (SIGTERM, then SIGKILL) and the collectors."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.closed:
            self.closed = True
            for t in self.threads:
                t.join(2)
            if self.sock:
                self.sock.close()
            if self.sockdir:
                shutil.rmtree(self.sockdir, ignore_errors=True)

    # ---- waiting
    def mark(self):
        """Where "from now on" starts, for wait_for(since=...)."""
        with self.cond:
            return len(self.msgs)

    def line_mark(self):
        with self.cond:
            return len(self.lines)

    def wait_for(self, pred, timeout, what, since=0):
        """The first message at index >= since for which pred(msg) holds,
        waiting up to timeout seconds for it.  Fail otherwise (also when
        the daemon exits first)."""
        end = time.monotonic() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.msgs):
                    if pred(self.msgs[i]):
                        return self.msgs[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    raise Fail(f"{self.label}: no message {what} within {timeout}s")
                if self.proc.poll() is not None and not self._more_coming():
                    raise Fail(f"{self.label} exited ({self.proc.returncode}) before {what}")
                self.cond.wait(min(left, 0.2))

    def _more_coming(self):
        """After the daemon exited: true while its last words may still be
        on their way (the stderr pipe not at EOF yet, or datagrams left in
        the socket, which the reader takes within a select() round)."""
        if self.threads and self.threads[0].is_alive():
            return True
        if self.exit_seen is None:
            self.exit_seen = time.monotonic()
        return time.monotonic() - self.exit_seen < 0.5

    def wait_status(self, pattern, timeout, since=0):
        """The first STATUS= matching the regex pattern."""
        rx = re.compile(pattern)
        return self.wait_for(lambda m: "STATUS" in m.fields and rx.search(m.fields["STATUS"]),
                             timeout, f"STATUS=~/{pattern}/", since)

    def wait_field(self, key, value, timeout, since=0):
        return self.wait_for(lambda m: m.get(key) == value, timeout, f"{key}={value}", since)

    def wait_line(self, pattern, timeout, since=0):
        """The first stderr line matching the regex, as (time, text)."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i][1]):
                        return self.lines[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    raise Fail(f"{self.label}: no log line /{pattern}/ within {timeout}s")
                if self.proc.poll() is not None and not self._more_coming():
                    raise Fail(f"{self.label} exited ({self.proc.returncode}) before log /{pattern}/")
                self.cond.wait(min(left, 0.2))

    def lines_matching(self, pattern):
        """Every stderr line so far matching the regex, as (time, text)."""
        rx = re.compile(pattern)
        with self.cond:
            return [x for x in self.lines if rx.search(x[1])]

    def messages(self, since=0, until=None):
        with self.cond:
            return list(self.msgs[since:until])

    def statuses(self, since=0):
        return [m.get("STATUS") for m in self.messages(since) if "STATUS" in m.fields]

    def stderr_text(self):
        with self.cond:
            return "\n".join(line for _, line in self.lines)

    def dump(self):
        """What the daemon said, for a failed test's output."""
        print(f"--- {self.label}: notify messages", file=sys.stderr)
        for m in self.messages()[-60:]:
            print(f"  {m.t - self.t0:8.3f} {m.raw!r}", file=sys.stderr)
        print(f"--- {self.label}: stderr (last lines)", file=sys.stderr)
        with self.cond:
            for t, line in self.lines[-40:]:
                print(f"  {t - self.t0:8.3f} {line}", file=sys.stderr)


# ---------------------------------------------------------------- TCP proxy

class TcpProxy:
    """127.0.0.1:<port> in front of a real server, in one of three states:

      refusing   the port is bound but not listening: connect() gets
                 ECONNREFUSED, like a server that is down (the start state)
      forwarding bytes pass both ways (listen())
      stalled    connections stay open, nothing passes (stall()): a server
                 or network that stops answering

    delay (seconds) holds every chunk from the server back that long: a
    slow directory, so that a run of a few thousand users takes a while
    and its page-by-page behaviour (watchdog, SIGTERM) can be watched.
    TLS goes through untouched (the certificate names 127.0.0.1)."""

    def __init__(self, target_host, target_port, delay=0.0):
        self.target = (target_host, int(target_port))
        self.delay = delay
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.stalled = threading.Event()
        self.stopping = threading.Event()
        self.conns = []
        self.lock = threading.Lock()

    def listen(self):
        self.lsock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self):
        self.stalled.set()

    def resume(self):
        self.stalled.clear()

    def close(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, s]
            threading.Thread(target=self._pump, args=(c, s), daemon=True).start()

    def _pump(self, a, b):
        peer = {a: b, b: a}
        try:
            while not self.stopping.is_set():
                if self.stalled.is_set():
                    time.sleep(0.05)
                    continue
                r, _, _ = select.select([a, b], [], [], 0.05)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is b and self.delay:
                        time.sleep(self.delay)
                    peer[s].sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()


# ---------------------------------------------------------------- journal

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def journald_running():
    """True when a real journald listens on its socket."""
    if not os.path.exists(JOURNAL_SOCKET):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(JOURNAL_SOCKET)
        return True
    except OSError:
        return False
    finally:
        s.close()


class FakeJournal:
    """A stand-in for journald on its well-known socket (no journald runs
    in the test containers): decodes what sd_journal_sendv() sends, the
    native protocol of systemd's docs/JOURNAL_NATIVE_PROTOCOL.md:
    `KEY=value\\n`, or `KEY\\n` + 64-bit little-endian length + bytes +
    `\\n` for values with newlines, or an empty datagram carrying a memfd
    with the same for large entries.

    start() returns False when it cannot take the socket (a real journald,
    or no permission to create /run/systemd/journal)."""

    def __init__(self):
        self.entries = []
        self.cond = threading.Condition()
        self.sock = None
        self.made_dirs = []
        self.stop_flag = False

    def start(self):
        if journald_running():
            return False
        try:
            # a socket nobody listens on: left by a test that was killed
            if os.path.exists(JOURNAL_SOCKET):
                os.unlink(JOURNAL_SOCKET)
            for d in ("/run/systemd", os.path.dirname(JOURNAL_SOCKET)):
                if not os.path.isdir(d):
                    os.mkdir(d, 0o755)
                    self.made_dirs.insert(0, d)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.bind(JOURNAL_SOCKET)
        except OSError:
            if self.sock:
                self.sock.close()
            self.sock = None
            self.stop()  # the directories made so far
            return False
        threading.Thread(target=self._read, daemon=True).start()
        return True

    def stop(self):
        self.stop_flag = True
        if self.sock:
            self.sock.close()
            try:
                os.unlink(JOURNAL_SOCKET)
            except OSError:
                pass
        for d in self.made_dirs:
            try:
                os.rmdir(d)
            except OSError:
                break

    @staticmethod
    def decode(data):
        fields = {}
        i = 0
        while i < len(data):
            nl = data.index(b"\n", i)
            line = data[i:nl]
            if b"=" in line:
                k, v = line.split(b"=", 1)
                i = nl + 1
            else:
                k = line
                (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
                v = data[nl + 9:nl + 9 + n]
                i = nl + 9 + n + 1
            fields.setdefault(k.decode(), []).append(v.decode("utf-8", "replace"))
        return fields

    def _read(self):
        # room for a memfd and the sender's credentials (its pid becomes
        # _PID, as journald records it)
        fds_space = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(struct.calcsize("iII"))
        while not self.stop_flag:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                data, anc, _, _ = self.sock.recvmsg(1 << 20, fds_space)
            except (OSError, ValueError):
                return
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(cdata[:4])
                    with os.fdopen(fds[0], "rb") as f:
                        data = f.read()
                elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            try:
                e = self.decode(data)
            except (ValueError, struct.error):
                e = {"_UNPARSABLE": [repr(data)]}
            e["_PID"] = [str(pid)]
            with self.cond:
                self.entries.append(e)
                self.cond.notify_all()

    def wait_for(self, pred, timeout, what):
        end = time.monotonic() + timeout
        i = 0
        with self.cond:
            while True:
                while i < len(self.entries):
                    if pred(self.entries[i]):
                        return self.entries[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    raise Fail(f"journal: no entry {what} within {timeout}s")
                self.cond.wait(min(left, 0.2))


def first(entry, key):
    """The first value of a journal field, or None."""
    v = entry.get(key)
    return v[0] if v else None


def wall_to_str(t):
    return time.strftime("%H:%M:%S", time.localtime(t))


def sigterm_safe(proc):
    """For cleanups: SIGTERM a Popen if it still runs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
