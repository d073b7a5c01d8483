#!/usr/bin/env python3
"""bench/gen_ldif.py's churn rounds apply to the directory they are made for.

bench/run's feed scenario applies `gen_ldif.py --round K` with ldapmodify
to the base state with rounds 0..K-1 applied, and fails the bench when a
write is refused (a delete of an entry or member value that is not there,
an add of one that is).  This applies the rounds to a model of the base
LDIF, with ldapmodify's rules, for both tenant counts bench/run uses, and
checks what each round must change: 1 % of the users deleted, 1 % added,
2.5 % renamed, 2.5 % moved from their tenant group to the next one — and
that no round touches a user an earlier round touched, or one the
onemember scenario adds to All-Staff (uid u...999).
"""
import os
import subprocess
import sys

SRC = os.environ.get("IDS_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(SRC, "bench", "gen_ldif.py")
ROOT = "ou=s0,dc=example,dc=org"
USERS, GROUPS, ROUNDS = 3000, 640, 4
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def gen(*args):
    return subprocess.run([sys.executable, GEN, "--users", str(USERS), "--groups", str(GROUPS), "--root", ROOT,
                           *args], check=True, capture_output=True, text=True).stdout


def records(text):
    """LDIF records: lists of (attribute, value) pairs; "-" separators kept."""
    for block in text.split("\n\n"):
        lines = [x for x in block.split("\n") if x]
        if lines:
            yield [tuple(x.split(": ", 1)) if x != "-" else ("-", "") for x in lines]


def load(text):
    """The base state: dn -> {attribute: set of values}."""
    d = {}
    for rec in records(text):
        e = {}
        for a, v in rec[1:]:
            e.setdefault(a, set()).add(v)
        d[rec[0][1]] = e
    return d


def apply(d, text, where):
    """ldapmodify's semantics; a write it would refuse is a failure."""
    touched = set()
    for rec in records(text):
        dn, kind = rec[0][1], rec[1][1]
        touched.add(dn)
        if kind == "delete":
            check(dn in d, f"{where}: delete of {dn}, which is not there")
            d.pop(dn, None)
        elif kind == "add":
            check(dn not in d, f"{where}: add of {dn}, which is there")
            e = {}
            for a, v in rec[2:]:
                e.setdefault(a, set()).add(v)
            d[dn] = e
        elif kind == "modify":
            check(dn in d, f"{where}: modify of {dn}, which is not there")
            e = d.setdefault(dn, {})
            op = None
            for a, v in rec[2:]:
                if a == "-":
                    op = None
                elif op is None:
                    op, attr = a, v
                    if op == "replace":
                        e[attr] = set()
                elif op == "delete":
                    check(v in e.get(a, set()), f"{where}: {dn}: delete of {a} {v}, which is not there")
                    e.get(a, set()).discard(v)
                elif op == "add":
                    check(v not in e.get(a, set()), f"{where}: {dn}: add of {a} {v}, which is there")
                    e.setdefault(a, set()).add(v)
                else:
                    e[a].add(v)
        else:
            check(False, f"{where}: {dn}: changetype {kind}")
    return touched


def users(d):
    return {dn for dn, e in d.items() if "inetOrgPerson" in e.get("objectClass", ())}


def tenant_groups(d):
    """user dn -> the tenant groups it is a direct member of."""
    m = {}
    for g, e in d.items():
        if g.startswith("cn=CC-t"):
            for dn in e.get("member", ()):
                m.setdefault(dn, set()).add(g)
    return m


for tenants in (100, 500):
    d = load(gen("--tenants", str(tenants)))
    base_users = users(d)
    check(len(base_users) == USERS, f"{tenants} tenants: {len(base_users)} users in the base state")
    seen = set()
    for k in range(ROUNDS):
        where = f"{tenants} tenants, round {k}"
        tg = tenant_groups(d)
        before = {dn: (set(e.get("sn", ())), tg.get(dn, set())) for dn, e in d.items() if dn in base_users}
        text = gen("--tenants", str(tenants), "--round", str(k))
        people = {dn for dn in apply(d, text, where) if dn.startswith("uid=")}
        # the users a round deletes or renames are named by their own
        # record; the ones it moves, in their groups' records
        tg = tenant_groups(d)
        moved = {dn for dn in before if dn in d and before[dn][1] != tg.get(dn, set())}
        renamed = {dn for dn in before if dn in d and before[dn][0] != set(d[dn].get("sn", ()))}
        deleted = {dn for dn in before if dn not in d}
        added = users(d) - base_users - seen
        n = USERS // 100
        check(len(deleted) == n, f"{where}: {len(deleted)} users deleted, expected {n}")
        check(len(added) == n, f"{where}: {len(added)} users added, expected {n}")
        check(len(renamed) == USERS * 25 // 1000, f"{where}: {len(renamed)} users renamed")
        check(len(moved) == USERS * 25 // 1000, f"{where}: {len(moved)} users moved")
        for dn in moved:
            a, b = before[dn][1], tg.get(dn, set())
            check(len(a - b) == 1 and len(b - a) == 1, f"{where}: {dn} moved from {a - b} to {b - a}")
        mine = deleted | renamed | moved | added
        check(not (mine & seen), f"{where}: users an earlier round changed: {sorted(mine & seen)[:3]}")
        check(not any(dn.split(",")[0].endswith("999") for dn in mine), f"{where}: a u...999 user changed")
        check(people <= mine | added, f"{where}: records for users it does not change")
        seen |= mine

if failures:
    sys.exit(f"{len(failures)} failures")
print("ok")
