#!/usr/bin/env python3
"""The journal catalog (systemd/idsyncd.catalog): installed by `cmake
--install` into lib/systemd/catalog under the prefix, accepted by
journalctl's own parser (`journalctl --root=DIR --update-catalog` on the
installed tree), and with an entry for every MESSAGE_ID= the code sends
(the IDS_MSGID_* of include/ids/log.h, used in daemon/*.c).  No server
needed."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import Checks  # noqa: E402


def entries(text):
    """{id: subject} of a catalog, in systemd's format: `-- ID` opens an
    entry, `Key: value` headers until a blank line, then the body."""
    out, cur, in_head = {}, None, False
    for line in text.splitlines():
        m = re.match(r"^-- ([0-9a-f]{32})$", line)
        if m:
            cur, in_head = m.group(1), True
            out[cur] = None
        elif in_head and line == "":
            in_head = False
        elif in_head and line.startswith("Subject: "):
            out[cur] = line[len("Subject: "):]
    return out


def main():
    c = Checks("t_journal_catalog")
    src = os.environ.get("IDS_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    idsyncd = os.environ.get("IDSYNCD")
    if not idsyncd:
        print("FAIL: IDSYNCD must name the idsyncd binary (ctest sets it)", file=sys.stderr)
        sys.exit(1)
    build = os.path.dirname(idsyncd)
    with open(os.path.join(src, "include", "ids", "log.h")) as f:
        defined = dict(re.findall(r'#define (IDS_MSGID_\w+) "([0-9a-f]{32})"', f.read()))
    used = set()
    for p in glob.glob(os.path.join(src, "daemon", "*.c")):
        with open(p) as f:
            used |= set(re.findall(r"\bIDS_MSGID_\w+", f.read()))
    c.true(len(used) >= 4 and used <= set(defined), f"daemon/*.c sends {sorted(used)}, all defined in log.h")

    root = tempfile.mkdtemp(prefix="idsyncd-catalog.")
    try:
        r = subprocess.run(["cmake", "--install", build, "--prefix", "/usr"], env={**os.environ, "DESTDIR": root},
                           capture_output=True, text=True)
        c.eq(0, r.returncode, f"cmake --install into a DESTDIR {r.stderr.strip()}")
        path = os.path.join(root, "usr", "lib", "systemd", "catalog", "idsyncd.catalog")
        c.true(os.path.isfile(path), "the catalog is installed as <prefix>/lib/systemd/catalog/idsyncd.catalog")
        text = ""
        if os.path.isfile(path):
            with open(path) as f:
                text = f.read()
        got = entries(text)
        for name in sorted(used):
            c.true(got.get(defined[name]), f"{name} ({defined[name]}) has an entry with a Subject:")
        c.eq(len(got), len(re.findall(r"^-- ", text, re.M)), "every entry header is a 128-bit id in lowercase hex")
        if shutil.which("journalctl"):
            r = subprocess.run(["journalctl", f"--root={root}", "--update-catalog"], capture_output=True, text=True)
            c.eq(0, r.returncode, f"journalctl --update-catalog accepts it {r.stderr.strip()}")
            r = subprocess.run(["journalctl", f"--root={root}", "--list-catalog"], capture_output=True, text=True)
            listed = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
            c.eq(sorted(defined[n] for n in used), sorted(i for i in listed if i in got),
                 "journalctl --list-catalog lists every outcome")
        else:
            print("no journalctl here: the format is checked by the parser above only", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(c.finish())


if __name__ == "__main__":
    main()
