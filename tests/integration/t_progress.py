#!/usr/bin/env python3
"""Progress while a long run goes on (issue 21): 2000 users read 10 per
page from a slow directory (a proxy that holds every answer back 20 ms).

  * `sync` with stderr on a pseudo-terminal draws one line
    (`corp reading users: 1,230 (page 123), 310/s, 4 s`): several
    updates, growing counts, at most 4 redraws a second; a log line
    written meanwhile first erases it; at the end the line is erased and
    the exit code is 0.  A second connector's run is named as its own.
  * the same run with stderr to a pipe: no progress at all (no \\r, no
    escape sequence, no progress text); --progress forces it on there, but
    never into the journal;
    --no-progress and --format json keep a terminal free of it.
  * the daemon: STATUS= during the run says what it reads now
    (`corp reading users: 1,230 (page 123), 4 s`), with growing counts,
    at most one a second, and the usual result line at the end."""
import os
import re
import select
import subprocess
import sys
import termios
import time
import tty
import fcntl
import struct

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main  # noqa: E402

USERS = 2000
DRAW = re.compile(r"\r([^\r\x1b]+)\x1b\[K")
READING = re.compile(r"^corp reading users: ([\d,]+) \(page ([\d,]+)\)(, ([\d,.]+)/s)?, (\d+) s$")
LOGLINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (debug|info|warning|error) ")


def num(s):
    return int(s.replace(",", ""))


def run_pty(env, *args, cols=200):
    """idsyncd ARGS with stderr on a pseudo-terminal (raw: the bytes as
    written, no \\n -> \\r\\n), stdout to a pipe.  Returns (exit code,
    stdout, [(arrival time, chunk of the terminal's bytes)])."""
    master, slave = os.openpty()
    tty.setraw(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    p = subprocess.Popen([env.idsyncd, "-c", os.path.join(env.dir, "idsyncd.yaml"), *args],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    end = time.monotonic() + 120
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.5)
        if not r:
            if p.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not data:
            break
        chunks.append((time.monotonic(), data.decode("utf-8", "replace")))
    os.close(master)
    out = p.stdout.read().decode()
    return p.wait(30), out, chunks


def run_pipe(env, *args):
    """idsyncd ARGS with stdout and stderr to pipes: (exit code, stdout,
    stderr), bytes decoded as they are (no newline translation: a \r
    must stay visible)."""
    r = subprocess.run([env.idsyncd, "-c", os.path.join(env.dir, "idsyncd.yaml"), *args],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def draws(chunks):
    """Every redraw of the progress line: (arrival time, text)."""
    res = []
    buf, t_of = "", []
    for t, c in chunks:
        buf += c
        t_of += [t] * len(c)
    for m in DRAW.finditer(buf):
        res.append((t_of[m.start()], m.group(1)))
    return res, buf


def check_terminal(c, rc, out, chunks):
    c.eq(0, rc, "sync under a terminal exits 0")
    c.has("summary corp:", out, "the summary goes to stdout as ever")
    ds, raw = draws(chunks)
    reading = [(t, READING.match(s)) for t, s in ds if READING.match(s)]
    counts = [num(m.group(1)) for _, m in reading]
    print(f"{len(ds)} redraws, {len(reading)} while reading users: {counts[:3]} ... {counts[-3:]}")
    c.true(len(set(counts)) >= 3, f"several updates with different counts while reading users ({len(reading)})")
    c.eq(sorted(counts), counts, "the count only grows")
    c.true(counts and counts[-1] > counts[0], "and it grew")
    pages = [num(m.group(2)) for _, m in reading]
    c.true(pages and pages == sorted(pages) and pages[-1] > pages[0], "so does the page number")
    c.true(any(m.group(4) for _, m in reading), "the line shows the rate")
    if len(reading) >= 2:
        span = reading[-1][0] - reading[0][0]
        # 4 a second, +1 for the first and a little for arrival jitter
        c.true(len(reading) <= 4 * span + 2,
               f"at most 4 redraws a second ({len(reading)} in {span:.1f} s)")
    phases = [s for _, s in ds]
    for ph in ("corp connecting", "corp resolving", "corp rules", "corp diff", "corp applying"):
        c.true(any(s.startswith(ph) for s in phases), f"the phase is shown: {ph}")
    c.true(any(s.startswith("hr ") for s in phases), "the second connector's run is named as its own")
    # every log line starts on a clean line: after a newline, or right
    # after the erase of the progress line (never glued to its text)
    starts = [m.start() for m in LOGLINE.finditer(raw)]
    glued = [i for i in starts if i > 0 and raw[i - 1] != "\n" and raw[max(0, i - 4):i] != "\r\x1b[K"]
    c.true(starts, "log lines were written during the run")
    c.eq([], [raw[max(0, i - 40):i + 30] for i in glued], "no log line is glued to the progress line")
    # the end: the last progress line was erased, nothing of it is left
    last_draw = max((m.end() for m in DRAW.finditer(raw)), default=0)
    rest = raw[last_draw:]
    c.true(rest.startswith("\r\x1b[K"), f"the line is erased at the end [{rest[:20]!r}]")
    stripped = DRAW.sub("", raw).replace("\r\x1b[K", "")
    c.true(all(LOGLINE.match(ln) for ln in stripped.split("\n") if ln),
           "without the progress line, the terminal holds whole log lines only")
    c.true(stripped.endswith("\n"), "and ends with a newline")


def daemon_status(env, c):
    d = env.daemon().start()
    d.wait_field("READY", "1", 10)
    start = d.wait_status(r"^corp running since", 10)
    done = d.wait_status(rf"^corp ok {USERS} users ", 120)
    msgs = [m for m in d.messages(d.messages().index(start)) if "STATUS" in m.fields and m.t <= done.t]
    prog = [(m.t, READING.match(m.get("STATUS").split("; ")[0])) for m in msgs]
    prog = [(t, x) for t, x in prog if x]
    for m in msgs[:3] + msgs[-2:]:
        print(f"  {m.t - start.t:6.2f} STATUS={m.get('STATUS')}")
    counts = [num(x.group(1)) for _, x in prog]
    c.true(len(set(counts)) >= 3, f"STATUS= during the run: several updates ({len(prog)})")
    c.eq(sorted(counts), counts, "STATUS=: the count only grows")
    c.true(counts and counts[-1] > counts[0], "STATUS=: and it grew")
    c.true(all(x.group(4) is None for _, x in prog), "STATUS= carries no rate (the issue's format)")
    secs = [int(x.group(5)) for _, x in prog]
    c.true(secs == sorted(secs) and secs and secs[-1] >= 2, f"STATUS= says how long the run has been going {secs}")
    gaps = [b.t - a.t for a, b in zip(msgs, msgs[1:-1])]
    c.true(all(g >= 0.9 for g in gaps), f"STATUS= at most once a second (shortest gap {min(gaps or [0]):.2f}s)")
    c.true(all("hr pending" in m.get("STATUS") for m in msgs[1:-1]),
           "the other connector's part of STATUS= stays")
    c.true(done.get("STATUS").startswith(f"corp ok {USERS} users +0 ~0 -0 at "), "after the run: the result line")
    d.close()


def body(env, c):
    env.add_users("u", USERS, group="CC-Support")
    slow = env.ldap_proxy(delay=0.02)
    corp = env.ldap_connector("corp", uri=env.proxy_uri(slow), page_size=10, timeout="5s")
    hr = env.ldap_connector("hr", company="hr")
    env.write_config(connectors=[corp, hr])
    rc, _, err = env.run_cli("migrate")
    c.eq(0, rc, f"migrate ({err.strip()})")

    # ---- on a terminal
    t = time.monotonic()
    rc, out, chunks = run_pty(env, "sync")
    print(f"sync under a terminal: {time.monotonic() - t:.1f} s")
    check_terminal(c, rc, out, chunks)

    # ---- the same run, stderr to a pipe
    rc, out, err = run_pipe(env, "sync")
    c.eq(0, rc, "sync with stderr to a pipe exits 0")
    c.hasnt("\r", err, "a pipe gets no carriage return")
    c.hasnt("\x1b", err, "nor any escape sequence")
    c.hasnt("reading users", err, "nor progress text")
    c.true(all(LOGLINE.match(ln) for ln in err.splitlines()), "only log lines")
    rc, out, err = run_pipe(env, "plan", "--connector", "hr", "--progress")
    c.eq(0, rc, "plan --progress to a pipe exits 0")
    c.has("\rhr connecting", err, "--progress draws the line into a pipe too")
    # ... but never into the journal: stderr is the stream JOURNAL_STREAM names
    r_fd, w_fd = os.pipe()
    st = os.fstat(w_fd)
    p = subprocess.Popen([env.idsyncd, "-c", os.path.join(env.dir, "idsyncd.yaml"), "plan", "--connector", "hr",
                          "--progress"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w_fd,
                         env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    os.close(w_fd)
    with os.fdopen(r_fd, "rb") as f:
        journal = f.read().decode()
    c.eq(0, p.wait(60), "plan --progress with stderr the journal exits 0")
    c.hasnt("hr connecting", journal, "--progress draws nothing into the journal")

    # ---- a terminal, but told not to
    for args in (["--no-progress"], ["--format", "json"]):
        rc, out, chunks = run_pty(env, "plan", "--connector", "hr", *args)
        raw = "".join(x for _, x in chunks)
        c.eq(0, rc, f"plan {' '.join(args)} under a terminal exits 0")
        c.true("\r" not in raw and "hr connecting" not in raw, f"plan {' '.join(args)}: no progress line")
    rc, out, chunks = run_pty(env, "plan", "--connector", "hr")
    c.has("\rhr connecting", "".join(x for _, x in chunks), "(positive control: without them it is drawn)")

    # ---- the daemon
    daemon_status(env, c)


if __name__ == "__main__":
    main("t_progress", body)
