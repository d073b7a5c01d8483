#!/usr/bin/env python3
"""Deterministic directory generator for benchmarks (LDIF on stdout).

gen_ldif.py USERS GROUPS BASE_DN

Users uid=u<N>,ou=people,BASE; groups cn=g<N>,ou=groups,BASE (groupOfNames).
Shape: an all-staff group with every user; tenant groups CC-t<K>-Operators
(K < GROUPS/2, about 100 tenants at 200 groups), each user in four random
groups; groups nested to depth 3 (g[i] is a member of g[i // 2] for the
upper half), one cycle (g1 in g2 in g1), ~1% of users disabled
(description: disabled).  Same arguments, same bytes.
"""
import random
import sys

users, groups, base = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(42)
out = sys.stdout.write
out(f"dn: ou=people,{base}\nobjectClass: organizationalUnit\nou: people\n\n")
out(f"dn: ou=groups,{base}\nobjectClass: organizationalUnit\nou: groups\n\n")
members = [[] for _ in range(groups)]
for i in range(users):
    dn = f"uid=u{i},ou=people,{base}"
    out(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: u{i}\ngivenName: User\nsn: Number {i}\n"
        f"cn: User {i}\nmail: u{i}@bench.example\n")
    if i % 100 == 7:
        out("description: disabled\n")
    out("\n")
    members[0].append(dn)  # all-staff
    for g in rnd.sample(range(1, groups), 4):
        members[g].append(dn)
half = groups // 2
names = ["All-Staff"] + [f"CC-t{k}-Operators" if k < half else f"Team-{k}" for k in range(1, groups)]
for g in range(half, groups):  # nesting: teams inside tenant groups, depth 3
    parent = g // 2 if g // 2 >= 1 else 1
    members[parent].append(f"cn={names[g]},ou=groups,{base}")
members[2].append(f"cn={names[1]},ou=groups,{base}")  # one cycle: 1 in 2 ...
members[1].append(f"cn={names[2]},ou=groups,{base}")  # ... and 2 in 1
for g in range(groups):
    out(f"dn: cn={names[g]},ou=groups,{base}\nobjectClass: groupOfNames\ncn: {names[g]}\n")
    for m in members[g] or [f"cn=nobody,{base}"]:
        out(f"member: {m}\n")
    out("\n")
