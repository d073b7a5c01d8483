#!/usr/bin/python3
"""entra_delta_gen.py - random changes to a Graph fake tenant (JSON), for
the change feed's invariant test (t_entra_delta_random.sh).

  entra_delta_gen.py FILE init SEED      a tenant of 30 users, 8 groups
  entra_delta_gen.py FILE step SEED N    N random changes, rewritten in place

Changes: users added, modified (name, department, accountEnabled),
soft-deleted ("@deleted": "changed"), restored, deleted for good; groups
added, renamed (in and out of the names the rules match), deleted;
members added and removed, nesting added and removed (cycles allowed).
Prints what it did, one line a change."""
import json
import random
import sys
import uuid

NAMES = ["CC-Support", "CC-Admins", "Team-A", "Team-B", "Team-C"]


def uid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_user(rng, n):
    upn = f"u{n}-{rng.randrange(1 << 20):05x}@contoso.example"
    return {"id": uid(rng), "userPrincipalName": upn, "mail": upn, "givenName": "G", "surname": f"S{n}",
            "displayName": f"User {n}", "accountEnabled": rng.random() > 0.1,
            "department": rng.choice(["Sales", "Support", None])}


def init(rng):
    users = [new_user(rng, i) for i in range(30)]
    groups = []
    for j in range(8):
        members = rng.sample([u["id"] for u in users], 6)
        groups.append({"id": uid(rng), "displayName": NAMES[j % len(NAMES)], "members": members})
    groups[0]["members"].append(groups[2]["id"])  # nesting from the start
    groups[2]["members"].append(groups[3]["id"])
    return {"users": users, "groups": groups}


def step(d, rng, n):
    users, groups = d["users"], d["groups"]
    live = [u for u in users if not u.get("@deleted")]
    soft = [u for u in users if u.get("@deleted")]
    op = rng.choice(["add_user", "mod_user", "disable", "soft", "restore", "delete_user", "add_group",
                     "rename_group", "delete_group", "add_member", "add_member", "del_member", "nest",
                     "unnest"])
    if op == "add_user" or not live:
        u = new_user(rng, n)
        users.append(u)
        if groups:
            rng.choice(groups)["members"].append(u["id"])
        return f"add user {u['id']}"
    if op == "mod_user":
        u = rng.choice(live)
        u["surname"] = f"S{n}"
        u["department"] = rng.choice(["Sales", "Support", None])
        return f"modify {u['id']}"
    if op == "disable":
        u = rng.choice(live)
        u["accountEnabled"] = not u.get("accountEnabled", True)
        return f"enable/disable {u['id']}"
    if op == "soft":
        u = rng.choice(live)
        u["@deleted"] = "changed"
        return f"soft-delete {u['id']}"
    if op == "restore" and soft:
        u = rng.choice(soft)
        del u["@deleted"]
        return f"restore {u['id']}"
    if op == "delete_user":
        u = rng.choice(users)
        users.remove(u)
        return f"delete {u['id']}"
    if op == "add_group" or not groups:
        g = {"id": uid(rng), "displayName": rng.choice(NAMES), "members": rng.sample([u["id"] for u in users],
                                                                                     min(3, len(users)))}
        groups.append(g)
        return f"add group {g['id']}"
    g = rng.choice(groups)
    if op == "rename_group":
        g["displayName"] = rng.choice(NAMES)
        return f"rename {g['id']} {g['displayName']}"
    if op == "delete_group":
        groups.remove(g)
        return f"delete group {g['id']}"
    if op == "add_member":
        m = rng.choice(users)["id"]
        if m not in g["members"]:
            g["members"].append(m)
        return f"{g['id']} += {m}"
    if op == "del_member" and g["members"]:
        m = rng.choice(g["members"])
        g["members"].remove(m)
        return f"{g['id']} -= {m}"
    if op == "nest":
        h = rng.choice(groups)
        if h["id"] not in g["members"] and h is not g:
            g["members"].append(h["id"])
        return f"{g['id']} nests {h['id']}"
    nested = [m for m in g["members"] if any(h["id"] == m for h in groups)]
    if nested:
        g["members"].remove(nested[0])
        return f"{g['id']} unnests {nested[0]}"
    return "nothing"


def main():
    path, cmd, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    if cmd == "init":
        d = init(rng)
    else:
        with open(path) as f:
            d = json.load(f)
        for i in range(int(sys.argv[4])):
            print(step(d, rng, seed * 100 + i))
    with open(path + ".tmp", "w") as f:
        json.dump(d, f)
    import os
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
