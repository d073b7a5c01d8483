#!/usr/bin/env python3
"""Replays of the provisioning sequences the clients document (issue 16),
request bodies as they send them, each ending with the users and grants in
PostgreSQL:

- Microsoft Entra ("Develop and plan provisioning for a SCIM endpoint"):
  GET by userName filter (empty), POST with the enterprise extension, GET
  by filter, PATCH of several attributes (capitalized ops, work e-mail by
  value filter, manager as a bare id), GET /Groups by displayName with
  excludedAttributes=members, POST group, PATCH member add, PATCH member
  remove by value filter, PATCH active "False", DELETE.
- Okta ("SCIM 2.0 protocol reference"): GET by userName filter, POST, PUT
  for an update, PATCH {"op":"replace","value":{"active":false}}, group
  POST, PATCH with a rename and member changes, group DELETE.
A group's PATCH is answered 204 No Content, as both documents show."""
import http.client
import json
import sys
import urllib.parse

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, poll_until, write_token  # noqa: E402

TOKEN = "tok-replay-5e"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCHOP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
RULES = ("  - name: support\n    match: { member_of: [\"CC-Support\"] }\n    tenant: support\n"
         "    roles: [operator]\n"
         "  - name: managed-by-boss\n    match: { attribute: { manager.value: \"^boss-1$\" } }\n"
         "    tenant: support\n    roles: [view_operators]\n")


class Client:
    def __init__(self, port, conn):
        self.port, self.conn = port, conn

    def __call__(self, method, path, body=None, want=None, c=None):
        h = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        hdr = {"Authorization": f"Bearer {TOKEN}"}
        if body is not None:
            hdr["Content-Type"] = "application/scim+json"
        h.request(method, f"/scim/v2/{self.conn}/{path}", body=json.dumps(body) if body is not None else None,
                  headers=hdr)
        r = h.getresponse()
        raw = r.read()
        h.close()
        b = json.loads(raw) if raw else None
        if c and want:
            c.eq(want, r.status, f"{self.conn}: {method} {path.split('?')[0]}"
                 + (f" ({b.get('detail')})" if r.status >= 400 and b else ""))
        return b


def flt(s):
    return "filter=" + urllib.parse.quote(s)


def entra(cl, c):
    b = cl("GET", "Users?" + flt('userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"'), want=200, c=c)
    c.eq(0, b["totalResults"], "entra: the user is not there yet")
    u = cl("POST", "Users", {
        "schemas": [USER, ENT], "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1", "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [], ENT: {"department": "Support"}}, want=201, c=c)
    # someone who stays (in no group): deleting the tester must not leave
    # the source empty, which the empty-source guard would hold
    cl("POST", "Users", {"schemas": [USER], "userName": "keeper@testuser.com", "active": True}, want=201, c=c)
    b = cl("GET", "Users?" + flt('userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"'), want=200, c=c)
    c.eq([u["id"]], [x["id"] for x in b["Resources"]], "entra: found by userName")
    b = cl("GET", "Users?" + flt('externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"'), want=200, c=c)
    c.eq(1, b["totalResults"], "entra: found by externalId")
    b = cl("PATCH", f"Users/{u['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Replace", "path": "displayName", "value": "Entra Tester"},
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
        {"op": "Add", "path": f"{ENT}:manager", "value": "boss-1"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}]}, want=200, c=c)
    c.eq("updatedEmail@microsoft.com", b["emails"][0]["value"], "entra: the work e-mail replaced in place")
    c.eq({"value": "boss-1"}, b[ENT]["manager"], "entra: a bare manager id stored as {value}")
    b = cl("GET", "Groups?excludedAttributes=members&" + flt('displayName eq "CC-Support"'), want=200, c=c)
    c.eq(0, b["totalResults"], "entra: the group is not there yet")
    g = cl("POST", "Groups", {"schemas": [GROUP], "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                              "displayName": "CC-Support", "meta": {"resourceType": "Group"}}, want=201, c=c)
    cl("PATCH", f"Groups/{g['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": u["id"]}]}]}, want=204, c=c)
    b = cl("GET", f"Groups/{g['id']}?excludedAttributes=members", want=200, c=c)
    c.true("members" not in b, "entra: excludedAttributes=members leaves them out")
    return u, g


def okta(cl, c):
    b = cl("GET", "Users?" + flt('userName eq "isabella@okta.local"') + "&startIndex=1&count=100", want=200, c=c)
    c.eq(0, b["totalResults"], "okta: the user is not there yet")
    body = {"schemas": [USER], "userName": "isabella@okta.local",
            "name": {"givenName": "Isabella", "familyName": "Doe"},
            "emails": [{"primary": True, "value": "isabella@okta.local", "type": "work"}],
            "displayName": "Isabella Doe", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [], "password": "1mz050nq", "active": True}
    u = cl("POST", "Users", body, want=201, c=c)
    body.update({"id": u["id"], "displayName": "Isabella Smith", "name": {"givenName": "Isabella",
                                                                          "familyName": "Smith"}})
    b = cl("PUT", f"Users/{u['id']}", body, want=200, c=c)
    c.eq("Smith", b["name"]["familyName"], "okta: PUT replaced the name")
    g = cl("POST", "Groups", {"schemas": [GROUP], "displayName": "Test SCIMv2",
                              "members": []}, want=201, c=c)
    # Okta's membership PATCH carries the group's id and a rename
    cl("PATCH", f"Groups/{g['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "replace", "value": {"id": g["id"], "displayName": "CC-Support"}},
        {"op": "add", "path": "members", "value": [{"value": u["id"], "display": "isabella@okta.local"}]}]},
       want=204, c=c)
    return u, g


def body(env, c):
    port = free_port()
    tok = write_token(env, TOKEN, "token")
    conns = [f"  - name: entra\n    type: scim\n    company: acme\n    token_file: {tok}\n    apply_delay: 1s\n",
             f"  - name: okta\n    type: scim\n    company: beta\n    token_file: {tok}\n    apply_delay: 1s\n"]
    cfg = env.write_config(connectors=conns, rules=RULES, raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    d = env.daemon(config=cfg).start()
    d.wait_field("READY", "1", 20)
    ce, co = Client(port, "entra"), Client(port, "okta")
    eu, eg = entra(ce, c)
    ou, og = okta(co, c)

    def state():
        return env.q("SELECT u.source, u.username, u.email, u.display_name, u.active, "
                     "coalesce(string_agg(r.role, ',' ORDER BY r.role), '') FROM app_user u "
                     "LEFT JOIN tenant_role r ON r.user_id = u.id GROUP BY 1, 2, 3, 4, 5 ORDER BY 1")
    want = ("entra|Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1|updatedEmail@microsoft.com|Entra Tester|t|"
            "operator,view_operators\n"
            "okta|isabella@okta.local|isabella@okta.local|Isabella Smith|t|operator")
    poll_until(lambda: state() == want, 15, "both sequences applied")
    c.eq(want, state(), "users and grants after create, update and membership")

    # ---- the way out: Entra removes the member, then deactivates and
    # deletes; Okta deactivates and deletes the group
    ce("PATCH", f"Groups/{eg['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Remove", "path": f'members[value eq "{eu["id"]}"]'}]}, want=204, c=c)
    ce("PATCH", f"Users/{eu['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]}, want=200, c=c)
    ce("DELETE", f"Users/{eu['id']}", want=204, c=c)
    co("PATCH", f"Users/{ou['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "replace", "value": {"active": False}}]}, want=200, c=c)
    co("DELETE", f"Groups/{og['id']}", want=204, c=c)
    co("GET", f"Groups/{og['id']}", want=404, c=c)  # the group is gone

    def users():
        return env.q("SELECT source, active, deactivation_reason FROM app_user ORDER BY 1")
    want = "entra|f|deleted_in_source\nokta|f|disabled_in_source"
    poll_until(lambda: users() == want, 15, "the way out applied")
    c.eq(want, users(), "deleted_in_source (Entra's DELETE), disabled_in_source (Okta's active false)")
    c.hasnt("1mz050nq", env.q("SELECT string_agg(resource::text, ' ') FROM scim_resource"),
            "Okta's password was not stored")


if __name__ == "__main__":
    main("scim_replay", body, ldap=False)
