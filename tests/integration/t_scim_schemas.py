#!/usr/bin/env python3
"""The discovery endpoints' Schema resources (RFC 7643 §7, §8.7.1; issue
16): what Entra's validator and other clients read.  /Schemas lists User,
Group and the enterprise extension with their attributes; each is also
served at /Schemas/<urn>; the assertions are the RFC's definitions
(userName required, uniqueness "server", not caseExact; password
writeOnly and never returned; groups readOnly; members multi-valued with
an immutable value; the enterprise manager a complex with value), not
what the server happens to print.  /ResourceTypes/User names the
extension."""
import http.client
import json
import sys
import urllib.parse

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-schemas-4c"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def get(port, path):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h.request("GET", f"/scim/v2/okta/{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    r = h.getresponse()
    raw = r.read()
    h.close()
    return r.status, json.loads(raw) if raw else None


def by_name(attrs):
    return {a["name"]: a for a in attrs}


def body(env, c):
    tok = write_token(env, TOKEN, "okta.token")
    port = free_port()
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n"
    cfg = env.write_config(connectors=[conn], raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    d = env.daemon(config=cfg, label="schemas").start()
    d.wait_field("READY", "1", 20)

    st, lst = get(port, "Schemas")
    c.eq(200, st, "GET /Schemas: 200")
    c.eq(["urn:ietf:params:scim:api:messages:2.0:ListResponse"], lst["schemas"], "a ListResponse")
    got = {s["id"]: s for s in lst["Resources"]}
    c.eq(sorted([USER, GROUP, ENT]), sorted(got), "User, Group and the enterprise extension")
    c.eq(3, lst["totalResults"], "totalResults 3")
    for sid, s in got.items():
        c.eq(["urn:ietf:params:scim:schemas:core:2.0:Schema"], s["schemas"], f"{s['name']}: a Schema resource")
        c.eq("Schema", s["meta"]["resourceType"], f"{s['name']}: meta.resourceType")
        c.true(s["meta"]["location"].endswith("/scim/v2/okta/Schemas/" + sid), f"{s['name']}: meta.location")
        for a in s["attributes"]:
            missing = [k for k in ("name", "type", "multiValued", "required", "caseExact", "mutability",
                                   "returned", "uniqueness", "description") if k not in a]
            c.eq([], missing, f"{s['name']}.{a.get('name')}: every characteristic of RFC 7643 §7")
            for sub in a.get("subAttributes", []):
                c.true(all(k in sub for k in ("name", "type", "mutability", "returned")),
                       f"{s['name']}.{a['name']}.{sub.get('name')}: a full definition")

    u = by_name(got[USER]["attributes"])
    c.eq(("string", True, False, "server", "readWrite"),
         (u["userName"]["type"], u["userName"]["required"], u["userName"]["caseExact"],
          u["userName"]["uniqueness"], u["userName"]["mutability"]),
         "userName: string, required, case-insensitive, unique server-wide, readWrite")
    c.eq(("writeOnly", "never"), (u["password"]["mutability"], u["password"]["returned"]),
         "password: writeOnly, never returned")
    c.eq(("boolean", False), (u["active"]["type"], u["active"]["multiValued"]), "active: a single boolean")
    c.eq(("complex", True), (u["emails"]["type"], u["emails"]["multiValued"]), "emails: multi-valued complex")
    c.eq(sorted(["value", "display", "type", "primary"]), sorted(x["name"] for x in u["emails"]["subAttributes"]),
         "emails: value, display, type, primary")
    c.eq(sorted(["formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"]),
         sorted(x["name"] for x in u["name"]["subAttributes"]), "name: the RFC's six components")
    c.eq(("readOnly", True), (u["groups"]["mutability"], u["groups"]["multiValued"]), "groups: readOnly, multi")

    g = by_name(got[GROUP]["attributes"])
    c.eq(True, g["displayName"]["required"], "Group.displayName: required")
    m = by_name(g["members"]["subAttributes"])
    c.eq((True, "immutable"), (g["members"]["multiValued"], m["value"]["mutability"]),
         "members: multi-valued, value immutable")
    c.eq(["User", "Group"], m["$ref"]["referenceTypes"], "members.$ref: User or Group")

    e = by_name(got[ENT]["attributes"])
    c.true(all(k in e for k in ("employeeNumber", "costCenter", "organization", "division", "department")),
           "enterprise: employeeNumber, costCenter, organization, division, department")
    c.eq(("complex", ["value", "$ref", "displayName"]),
         (e["manager"]["type"], [x["name"] for x in e["manager"]["subAttributes"]]), "manager: value, $ref, displayName")

    st, one = get(port, "Schemas/" + USER)
    c.eq((200, USER), (st, one and one.get("id")), "GET /Schemas/<User urn>")
    st, _ = get(port, "Schemas/" + urllib.parse.quote("urn:nope"))
    c.eq(404, st, "an unknown schema: 404")
    st, rt = get(port, "ResourceTypes/User")
    c.eq((200, [{"schema": ENT, "required": False}]), (st, rt and rt.get("schemaExtensions")),
         "ResourceTypes/User names the enterprise extension")


if __name__ == "__main__":
    main("scim_schemas", body, ldap=False)
