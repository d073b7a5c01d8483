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

TENANTS = 100  # tenant groups unless --tenants says (tier M500: 500)
G_ALL, G_ADMINS, G_CC0 = 0, 1, 2


def mix(x):
    """splitmix64 finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class Shape:
    def __init__(self, users, groups, tenants=TENANTS):
        # All-Staff, admins, the tenant groups, 10 regions, 2 divisions
        self.special = tenants + 14
        if tenants < 1 or groups < self.special + 7:
            sys.exit(f"gen_ldif.py: at least one tenant and {tenants + 14 + 7} groups")
        self.n, self.g, self.t = users, groups, tenants
        self.region0 = G_CC0 + tenants
        self.div0, self.div1 = self.region0 + 10, self.region0 + 11
        self.ndl = groups - self.special
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
        k = mix(i) % self.t
        if churn and self.moved(i):
            k = (k + 1) % self.t
        return k

    def second_tenant(self, i):
        return (mix(i) % self.t + 37) % self.t if i % 100 == 42 and self.t > 1 else None

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
        names += [f"CC-t{k:02d}-Operators" for k in range(self.t)]
        names += [f"Region-{r}" for r in range(10)]
        names += ["Division-0", "Division-1"]
        names += [f"DL-{j}" for j in range(self.ndl)]
        return names


def person(shape, i, dn, sn, uuid=True):
    """A user's entry (LDIF, without the blank line that ends it).  uuid:
    the fixed entryUUID (slapadd keeps it; an LDAP add cannot give one)."""
    e = f"dn: {dn}\nobjectClass: inetOrgPerson\n"
    if uuid:
        e += f"entryUUID: 00000000-0000-4000-8000-{i:012x}\n"
    e += (f"uid: u{i}\ngivenName: User\nsn: {sn}\ncn: User {sn}\n"
          f"mail: u{i}@bench.example\nemployeeType: {shape.kind(i)}\n")
    if shape.disabled(i):
        e += "description: disabled\n"
    return e


def memberships(shape, i, churn):
    """The groups (indices into group_names()) user i is a direct member of."""
    gs = [] if shape.not_all_staff(i) else [G_ALL]
    if i < 5:
        gs.append(G_ADMINS)
    gs.append(G_CC0 + shape.tenant(i, churn))
    t2 = shape.second_tenant(i)
    if t2 is not None:
        gs.append(G_CC0 + t2)
    return gs + [shape.special + j for j in shape.dls(i)]


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
        buf.append(person(shape, i, dn, f"Renamed {i}" if churn and shape.renamed(i) else f"Number {i}") + "\n")
        for g in memberships(shape, i, churn):
            members[g].append(dn)
        if len(buf) > 3000:
            out("".join(buf))
            buf.clear()
    out("".join(buf))
    gdn = [f"cn={n},{groups}" for n in names]
    for k in range(shape.t):  # user -> tenant group -> region -> division
        members[shape.region0 + k % 10].append(gdn[G_CC0 + k])
    for r in range(10):
        members[shape.div0 + r // 5].append(gdn[shape.region0 + r])
    members[shape.div0].append(gdn[shape.div1])  # the cycle
    members[shape.div1].append(gdn[shape.div0])
    sp = shape.special
    for j in range(shape.n1, shape.ndl):  # distribution lists: three levels
        parent = j % shape.n1 if j < shape.n1 + shape.n2 else shape.n1 + j % shape.n2
        members[sp + parent].append(gdn[sp + j])
    for g, name in enumerate(names):
        out(f"dn: {gdn[g]}\nobjectClass: groupOfNames\n"
            f"entryUUID: 00000001-0000-4000-8000-{g:012x}\ncn: {name}\n")
        # groupOfNames needs a member: an empty group names its own OU
        out("".join(f"member: {m}\n" for m in members[g] or [groups]))
        out("\n")


# The feed's churn rounds (bench/run's feed scenarios): LDAP writes, so
# that syncprov sees them, where state churn is a second copy of the
# directory.  Round K removes the users with i % 100 == a, renames or moves
# those with i % 100 in b (five residues: 5 %; half renamed, half moved to
# the next tenant) and adds 1 % new users, every round other users: the
# residues are taken six a round from this list, which leaves out the
# admins (0..4), the second tenants (42) and the users the onemember
# scenario adds to All-Staff (99), so every membership a round removes is
# one the base state has.
ROUND_RESIDUES = [r for r in range(10, 99) if r != 42]


def changes(shape, root, k, out):
    """Round k of the feed's churn, as ldapmodify input, against the base
    state under root with rounds 0..k-1 applied."""
    if not 0 <= k < len(ROUND_RESIDUES) // 6:
        sys.exit(f"gen_ldif.py: --round takes 0..{len(ROUND_RESIDUES) // 6 - 1}")
    people, groups = f"ou=people,{root}", f"ou=groups,{root}"
    gone, modified = ROUND_RESIDUES[6 * k], set(ROUND_RESIDUES[6 * k + 1:6 * k + 6])
    dels, adds = {}, {}
    buf = []
    for i in range(shape.n):
        if i % 100 == gone:
            buf.append(f"dn: uid=u{i},{people}\nchangetype: delete\n\n")
            for g in memberships(shape, i, False):
                dels.setdefault(g, []).append(f"uid=u{i},{people}")
        elif i % 100 in modified and (i // 100) % 2 == 0:
            sn = f"Renamed {i} in round {k}"
            buf.append(f"dn: uid=u{i},{people}\nchangetype: modify\nreplace: sn\nsn: {sn}\n-\n"
                       f"replace: cn\ncn: User {sn}\n-\n\n")
        elif i % 100 in modified:
            t = shape.tenant(i, False)
            dels.setdefault(G_CC0 + t, []).append(f"uid=u{i},{people}")
            adds.setdefault(G_CC0 + (t + 1) % shape.t, []).append(f"uid=u{i},{people}")
        if len(buf) > 3000:
            out("".join(buf))
            buf.clear()
    new = shape.n // 100
    for i in range(shape.n + k * new, shape.n + (k + 1) * new):
        buf.append(person(shape, i, f"uid=u{i},{people}", f"Number {i}", uuid=False).replace(
            "\n", "\nchangetype: add\n", 1) + "\n")
        for g in memberships(shape, i, False):
            adds.setdefault(g, []).append(f"uid=u{i},{people}")
    out("".join(buf))
    names = shape.group_names()
    # one modify per group: a value at a time would rewrite a group of a
    # million members as often as it has changes
    for g in sorted(set(dels) | set(adds)):
        rec = [f"dn: cn={names[g]},{groups}\nchangetype: modify\n"]
        if g in dels:
            rec.append("delete: member\n" + "".join(f"member: {m}\n" for m in dels[g]) + "-\n")
        if g in adds:
            rec.append("add: member\n" + "".join(f"member: {m}\n" for m in adds[g]) + "-\n")
        out("".join(rec) + "\n")


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
        "tenant_groups": shape.t,
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
    ap.add_argument("--tenants", type=int, default=TENANTS, help="tenant groups CC-tNN-Operators")
    ap.add_argument("--state", choices=["base", "churn"], default="base")
    ap.add_argument("--round", type=int, help="the feed's churn round K (ldapmodify input), not a state")
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args()
    shape = Shape(a.users, a.groups, a.tenants)
    if a.round is not None:
        changes(shape, a.root, a.round, sys.stdout.write)
        return
    if a.summary:
        json.dump(summary(shape), sys.stdout)
        sys.stdout.write("\n")
        return
    ldif(shape, a.root, a.state == "churn", sys.stdout.write)


if __name__ == "__main__":
    main()
