#!/usr/bin/env python3
"""Deterministic directory generator for the benchmarks (LDIF on stdout).

    gen_ldif.py --users N --groups G --root DN [--state base|churn]
    gen_ldif.py --users N --groups G --summary      (the shape, as JSON)

Everything goes under ROOT (ou=people,ROOT and ou=groups,ROOT, plus the
ROOT entry itself, an organizationalUnit), so that several states of one
directory can live side by side in one slapd database: the runner points
the connector at ou=people,ou=s0,... for the base state and at ou=s1 for
the churned one.  entryUUIDs are given explicitly (slapadd keeps them),
so the same person has the same external id in every state.

The shape (issue 8), tier S = 10k users / 200 groups:
  - ~5 direct memberships per user: All-Staff, one tenant group
    CC-tKK-Operators (1% of users in a second one), three distribution
    lists DL-j;
  - nesting to depth 3: user -> CC-tKK-Operators -> Region-r -> Division-d,
    and the distribution lists in three levels;
  - one cycle: Division-0 and Division-1 are members of each other;
  - an all-staff group with every user except 1 in 1000 (the "one member
    added to all-staff" scenario adds those, one per run);
  - ~1% of users disabled (description: disabled), 2% supervisors, 5%
    contractors (employeeType), 5 company admins;
  - 100 tenant groups, which the runner's rules map to tenants t00..t99
    (plus the tenants lobby and quality).

State churn differs from base by 1% users removed, 1% new users and 5%
modified (half renamed, half moved to another tenant).

No randomness from the library: membership choices come from a fixed
integer hash, so the same arguments give the same bytes on any Python 3.
"""
import argparse
import json
import sys

TENANTS = 100
SPECIAL = 114  # All-Staff, admins, 100 tenant groups, 10 regions, 2 divisions
G_ALL, G_ADMINS, G_CC0, G_REGION0, G_DIV0, G_DIV1 = 0, 1, 2, 102, 112, 113


def mix(x):
    """splitmix64 finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class Shape:
    def __init__(self, users, groups):
        if groups < SPECIAL + 7:
            sys.exit(f"gen_ldif.py: at least {SPECIAL + 7} groups")
        self.n, self.g = users, groups
        self.ndl = groups - SPECIAL
        # distribution lists in three levels (1 : 2 : 4)
        self.n1 = max(self.ndl // 7, 1)
        self.n2 = max(2 * self.ndl // 7, 1)
        self.n3 = self.ndl - self.n1 - self.n2

    # ---- who is what ----
    @staticmethod
    def removed(i):  # gone in the churned state
        return i % 100 == 11

    @staticmethod
    def renamed(i):
        return i % 20 == 13 and (i // 20) % 2 == 0

    @staticmethod
    def moved(i):  # to the next tenant
        return i % 20 == 13 and (i // 20) % 2 == 1

    @staticmethod
    def disabled(i):
        return i % 100 == 7

    @staticmethod
    def not_all_staff(i):
        return i % 1000 == 999

    @staticmethod
    def kind(i):
        if i % 50 == 3:
            return "supervisor"
        if i % 20 == 5:
            return "contractor"
        return "staff"

    def tenant(self, i, churn):
        k = mix(i) % TENANTS
        if churn and self.moved(i):
            k = (k + 1) % TENANTS
        return k

    def second_tenant(self, i):
        return (mix(i) % TENANTS + 37) % TENANTS if i % 100 == 42 else None

    def dls(self, i):
        """Three distinct distribution lists (indices 0..ndl-1)."""
        out, h = [], mix(i ^ 0x5DEECE66D)
        while len(out) < min(3, self.ndl):
            j = h % self.ndl
            if j not in out:
                out.append(j)
            h = mix(h)
        return out

    def users(self, churn):
        extra = self.n // 100 if churn else 0
        for i in range(self.n + extra):
            if churn and i < self.n and self.removed(i):
                continue
            yield i

    def group_names(self):
        names = ["All-Staff", "CC-Company-Admins"]
        names += [f"CC-t{k:02d}-Operators" for k in range(TENANTS)]
        names += [f"Region-{r}" for r in range(10)]
        names += ["Division-0", "Division-1"]
        names += [f"DL-{j}" for j in range(self.ndl)]
        return names


def ldif(shape, root, churn, out):
    people, groups = f"ou=people,{root}", f"ou=groups,{root}"
    ou = root.split(",", 1)[0].split("=", 1)[1]
    out(f"dn: {root}\nobjectClass: organizationalUnit\nou: {ou}\n\n")
    out(f"dn: {people}\nobjectClass: organizationalUnit\nou: people\n\n")
    out(f"dn: {groups}\nobjectClass: organizationalUnit\nou: groups\n\n")
    names = shape.group_names()
    members = [[] for _ in names]
    buf = []
    for i in shape.users(churn):
        dn = f"uid=u{i},{people}"
        sn = f"Renamed {i}" if churn and shape.renamed(i) else f"Number {i}"
        buf.append(f"dn: {dn}\nobjectClass: inetOrgPerson\n"
                   f"entryUUID: 00000000-0000-4000-8000-{i:012x}\n"
                   f"uid: u{i}\ngivenName: User\nsn: {sn}\ncn: User {sn}\n"
                   f"mail: u{i}@bench.example\nemployeeType: {shape.kind(i)}\n")
        if shape.disabled(i):
            buf.append("description: disabled\n")
        buf.append("\n")
        if not shape.not_all_staff(i):
            members[G_ALL].append(dn)
        if i < 5:
            members[G_ADMINS].append(dn)
        members[G_CC0 + shape.tenant(i, churn)].append(dn)
        t2 = shape.second_tenant(i)
        if t2 is not None:
            members[G_CC0 + t2].append(dn)
        for j in shape.dls(i):
            members[SPECIAL + j].append(dn)
        if len(buf) > 3000:
            out("".join(buf))
            buf.clear()
    out("".join(buf))
    gdn = [f"cn={n},{groups}" for n in names]
    for k in range(TENANTS):  # user -> tenant group -> region -> division
        members[G_REGION0 + k % 10].append(gdn[G_CC0 + k])
    for r in range(10):
        members[G_DIV0 + r // 5].append(gdn[G_REGION0 + r])
    members[G_DIV0].append(gdn[G_DIV1])  # the cycle
    members[G_DIV1].append(gdn[G_DIV0])
    for j in range(shape.n1, shape.ndl):  # distribution lists: three levels
        parent = j % shape.n1 if j < shape.n1 + shape.n2 else shape.n1 + j % shape.n2
        members[SPECIAL + parent].append(gdn[SPECIAL + j])
    for g, name in enumerate(names):
        out(f"dn: {gdn[g]}\nobjectClass: groupOfNames\n"
            f"entryUUID: 00000001-0000-4000-8000-{g:012x}\ncn: {name}\n")
        # groupOfNames needs a member: an empty group names its own OU
        out("".join(f"member: {m}\n" for m in members[g] or [groups]))
        out("\n")


def summary(shape):
    """What the directory holds, for BENCHMARKS.md."""
    base = list(shape.users(False))
    direct = 0
    for i in base:
        direct += (not shape.not_all_staff(i)) + (i < 5) + 1 + (shape.second_tenant(i) is not None)
        direct += len(shape.dls(i))
    return {
        "users": len(base),
        "groups": shape.g,
        "memberships": direct,
        "disabled": sum(1 for i in base if shape.disabled(i)),
        "tenant_groups": TENANTS,
        "churn": {
            "removed": sum(1 for i in base if shape.removed(i)),
            "new": shape.n // 100,
            "modified": sum(1 for i in base if shape.renamed(i) or shape.moved(i)),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--groups", type=int, required=True)
    ap.add_argument("--root", default="ou=s0,dc=example,dc=org")
    ap.add_argument("--state", choices=["base", "churn"], default="base")
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args()
    shape = Shape(a.users, a.groups)
    if a.summary:
        json.dump(summary(shape), sys.stdout)
        sys.stdout.write("\n")
        return
    ldif(shape, a.root, a.state == "churn", sys.stdout.write)


if __name__ == "__main__":
    main()
