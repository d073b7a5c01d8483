#!/usr/bin/env python3
"""The SCIM endpoint end to end (issue 16): `idsyncd run` under a fake
systemd serves a `type: scim` connector on loopback; a client pushes users
and groups in the shapes Okta and Entra send (POST, filter by userName,
PATCH memberships, active "False", DELETE); after apply_delay the
platform's tables hold the users and grants the rules give.  Also: bearer
auth (401 with WWW-Authenticate), 404 for another connector, 409 on a
duplicate userName, 400 invalidFilter, 412 on a stale If-Match, 413, 415,
paging, and that neither the token nor a pushed password is stored or
logged."""
import http.client
import json
import signal
import socket
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, poll_until, write_token  # noqa: E402

TOKEN = "tok-7f3a9c-scim-secret"
PASSWORD = "hunter2-pushed-password"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCHOP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

RULES = ("  - name: support-operators\n"
         "    match: { member_of: [\"CC-Support\"] }\n"
         "    tenant: support\n"
         "    roles: [operator]\n"
         "  - name: sales-by-department\n"
         "    match: { attribute: { department: \"^Sales$\" } }\n"
         "    tenant: sales\n"
         "    roles: [operator]\n")


class Client:
    def __init__(self, port, conn="okta", token=TOKEN):
        self.port, self.conn, self.token = port, conn, token

    def req(self, method, path, body=None, token=None, ctype="application/scim+json", headers=None):
        h = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        hdr = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            hdr["Authorization"] = f"Bearer {tok}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdr["Content-Type"] = ctype
        h.request(method, f"/scim/v2/{self.conn}/{path}", body=data, headers=hdr)
        r = h.getresponse()
        raw = r.read()
        h.close()
        return r.status, dict(r.getheaders()), (json.loads(raw) if raw else None)


def okta_user(name, given, family, dept=None, active=True):
    u = {"schemas": [USER], "userName": name, "name": {"givenName": given, "familyName": family},
         "emails": [{"primary": True, "value": name, "type": "work"}], "displayName": f"{given} {family}",
         "active": active, "password": PASSWORD}
    if dept:
        u["schemas"].append(ENTERPRISE)
        u[ENTERPRISE] = {"department": dept}
    return u


def body(env, c):
    port = free_port()
    tok = write_token(env, TOKEN + "\n", "okta.token")
    conn = (f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n"
            "    apply_delay: 1s\n")
    cfg = env.write_config(connectors=[conn], rules=RULES,
                           raw_extra=f"scim:\n  listen: \"127.0.0.1:{port}\"\n")
    # a plan before the schema exists: nothing can have been pushed yet
    rc, out, err = env.run_cli("plan", config=cfg)
    c.eq(0, rc, f"plan on a database without the schema exits 0 ({err.strip()[-200:]})")
    c.has("summary okta: 0 create", out, "and plans nothing for the scim connector")
    d = env.daemon(config=cfg).start()
    d.wait_field("READY", "1", 20)
    cl = Client(port)

    def users():
        return env.q("SELECT username, active, coalesce(deactivation_reason, '') FROM app_user "
                     "WHERE source = 'okta' ORDER BY username")

    def roles():
        return env.q("SELECT u.username, t.slug, r.role FROM tenant_role r JOIN app_user u ON u.id = r.user_id "
                     "JOIN tenant t ON t.id = r.tenant_id ORDER BY 1, 2, 3")

    # ---- authentication and routing, before anything is read
    st, hd, b = cl.req("GET", "Users", token="")
    c.eq(401, st, "no token: 401")
    c.has("Bearer", hd.get("WWW-Authenticate", ""), "401 carries WWW-Authenticate: Bearer")
    c.eq(USER.replace("core:2.0:User", "api:messages:2.0:Error").replace("schemas", "api")
         .replace("api:api", "api"), b["schemas"][0], "errors in the SCIM error schema")
    c.eq(401, cl.req("GET", "Users", token=TOKEN + "x")[0], "a wrong token: 401")
    c.eq(401, cl.req("GET", "Users", token=TOKEN[:-1])[0], "a token's prefix: 401")
    c.eq(404, Client(port, conn="other").req("GET", "Users")[0], "an unknown connector: 404")
    for path in ("/", "/x", "/scim/v2", "/scim/v2/okta"):  # shorter than the prefix, or no resource
        h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        h.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        r = h.getresponse()
        r.read()
        h.close()
        c.eq(404, r.status, f"GET {path}: 404")
    c.eq(200, cl.req("GET", "ServiceProviderConfig")[0], "ServiceProviderConfig answers")
    c.eq(False, cl.req("GET", "ServiceProviderConfig")[2]["bulk"]["supported"], "bulk: unsupported")

    # ---- Okta: create, then find by userName (any case)
    st, hd, alice = cl.req("POST", "Users", okta_user("alice@acme.example", "Alice", "Smith"))
    c.eq(201, st, "POST /Users: 201")
    c.true(len(alice["id"]) == 36, f"a UUID id is assigned: {alice['id']}")
    c.has(f"/scim/v2/okta/Users/{alice['id']}", hd.get("Location", ""), "Location names the new user")
    c.true("password" not in alice, "the password is not echoed")
    st, _, b = cl.req("POST", "Users", okta_user("ALICE@acme.example", "A", "S"))
    c.eq((409, "uniqueness"), (st, b.get("scimType")), "the same userName in another case: 409 uniqueness")
    st, _, b = cl.req("GET", 'Users?filter=userName%20eq%20%22Alice%40ACME.example%22')
    c.eq((200, 1, alice["id"]), (st, b["totalResults"], b["Resources"][0]["id"]),
         "filter userName eq finds the user, case-insensitively")
    for f, want in (('emails.value eq "ALICE@acme.example"', 1),
                    ('emails[type eq "work"].value eq "alice@acme.example"', 1),
                    ('emails[type eq "home"].value eq "alice@acme.example"', 0),
                    (f'id eq "{alice["id"].upper()}" and userName eq "alice@acme.example"', 1),
                    ('displayName eq "Alice Smith"', 1), ('externalId eq "nope"', 0)):
        st, _, b = cl.req("GET", "Users?filter=" + urllib.parse.quote(f))
        c.eq((200, want), (st, b and b.get("totalResults")), f"filter {f}")
    st, _, b = cl.req("GET", 'Users?filter=userName%20co%20%22a%22')
    c.eq((400, "invalidFilter"), (st, b.get("scimType")), "an unsupported operator: 400 invalidFilter")
    _, _, bob = cl.req("POST", "Users", okta_user("bob@acme.example", "Bob", "Jones", dept="Sales"))
    _, _, carol = cl.req("POST", "Users", okta_user("carol@acme.example", "Carol", "White"))

    # ---- groups: Okta creates with a member, Entra adds one by PATCH
    st, _, grp = cl.req("POST", "Groups", {"schemas": [GROUP], "displayName": "CC-Support",
                                           "members": [{"value": alice["id"]}, {"value": carol["id"]}]})
    c.eq(201, st, "POST /Groups: 201")
    st, hd, g2 = cl.req("PATCH", f"Groups/{grp['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": bob["id"]}]}]})
    c.eq((204, None, 'W/"2"'), (st, g2, hd.get("ETag")),
         "PATCH (Entra's Add) of a group's members: 204 No Content, the new version's ETag (RFC 7644 3.5.2)")
    _, _, g2 = cl.req("GET", f"Groups/{grp['id']}")
    c.eq(sorted([alice["id"], bob["id"], carol["id"]]), sorted(m["value"] for m in g2["members"]),
         "the group holds the three members")
    # asked for attributes, a PATCH answers 200 and the resource (RFC 7644 3.5.2: MUST)
    st, _, g3 = cl.req("PATCH", f"Groups/{grp['id']}?attributes=members", {"schemas": [PATCHOP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": bob["id"]}]}]})
    c.eq((200, sorted([alice["id"], bob["id"], carol["id"]])),
         (st, sorted(m["value"] for m in (g3 or {}).get("members", []))),
         "PATCH ?attributes=members: 200 with every member (an add of a member: no duplicate)")
    st, _, g3 = cl.req("PATCH", f"Groups/{grp['id']}?excludedAttributes=members", {"schemas": [PATCHOP],
                       "Operations": [{"op": "replace", "value": {"displayName": "CC-Support"}}]})
    c.eq((200, "CC-Support", False), (st, g3 and g3.get("displayName"), g3 is not None and "members" in g3),
         "PATCH ?excludedAttributes=members: 200, the group without its members")
    st, _, b = cl.req("PATCH", f"Groups/{grp['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": "00000000-0000-4000-8000-000000000000"}]}]})
    c.eq((400, "invalidValue"), (st, b.get("scimType") if b else None), "a member naming nothing: 400")

    want = ("alice@acme.example|support|operator\nbob@acme.example|sales|operator\n"
            "bob@acme.example|support|operator\ncarol@acme.example|support|operator")
    poll_until(lambda: roles() == want, 15, "the pushed state applied after apply_delay")
    c.eq(want, roles(), "grants per the rules: group membership and the enterprise department")

    # ---- Entra: remove a member by path + value, deactivate with "False"
    st, _, _ = cl.req("PATCH", f"Groups/{grp['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Remove", "path": "members", "value": [{"value": alice["id"]}]}]})
    c.eq(204, st, "PATCH (Entra's Remove with a value): 204")
    st, _, b = cl.req("PATCH", f"Users/{bob['id']}", {"schemas": [PATCHOP], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]})
    c.eq((200, False), (st, b and b.get("active")), "active \"False\" is stored as false")
    # ---- DELETE: gone from the API, deactivated as deleted_in_source
    c.eq(204, cl.req("DELETE", f"Users/{carol['id']}")[0], "DELETE /Users/id: 204")
    c.eq(404, cl.req("GET", f"Users/{carol['id']}")[0], "a deleted user: 404")
    want_users = ("alice@acme.example|f|out_of_scope\nbob@acme.example|f|disabled_in_source\n"
                  "carol@acme.example|f|deleted_in_source")
    poll_until(lambda: users() == want_users, 15, "removal, deactivation and DELETE applied")
    c.eq(want_users, users(), "out of scope, disabled_in_source, deleted_in_source")
    c.eq("", roles(), "no grant is left")

    # a POST of the deleted userName brings the same row back
    st, _, carol2 = cl.req("POST", "Users", okta_user("carol@acme.example", "Carol", "White"))
    c.eq((201, carol["id"]), (st, carol2["id"]), "re-created: the same id")

    # ---- preconditions and limits
    _, hd, _ = cl.req("GET", f"Users/{alice['id']}")
    st, _, _ = cl.req("PUT", f"Users/{alice['id']}", okta_user("alice@acme.example", "Alice", "Smyth"),
                      headers={"If-Match": 'W/"999"'})
    c.eq(412, st, "PUT with a stale If-Match: 412")
    st, _, b = cl.req("PUT", f"Users/{alice['id']}", okta_user("alice@acme.example", "Alice", "Smyth"),
                      headers={"If-Match": hd["ETag"]})
    c.eq((200, "Smyth"), (st, b["name"]["familyName"]), "PUT with the current ETag: 200")
    c.eq(415, cl.req("POST", "Users", b"userName=x", ctype="text/plain")[0], "text/plain: 415")
    # refused on the header, before a byte of the body is read
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /scim/v2/okta/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Type: application/scim+json\r\nContent-Length: 1048577\r\n\r\n".encode())
        c.has(" 413 ", s.recv(4096).decode(errors="replace").split("\r\n")[0] + " ",
              "a body announced over 1 MiB: 413")
    st, _, b = cl.req("POST", "Users", b"{\"userName\": ")
    c.eq((400, "invalidSyntax"), (st, b.get("scimType")), "malformed JSON: 400 invalidSyntax")

    # ---- paging, 1-based
    for i in range(5):
        cl.req("POST", "Users", okta_user(f"u{i}@acme.example", "U", str(i)))
    st, _, b = cl.req("GET", "Users?startIndex=3&count=2")
    c.eq((200, 8, 3, 2), (st, b["totalResults"], b["startIndex"], b["itemsPerPage"]),
         "startIndex=3&count=2 of 8 users")
    c.eq(["carol@acme.example", "u0@acme.example"], [u["userName"] for u in b["Resources"]],
         "the page holds the 3rd and 4th user by creation")
    st, _, b = cl.req("GET", "Users?startIndex=50")
    c.eq((200, 8, 0), (st, b["totalResults"], b["itemsPerPage"]), "a page past the end: empty, total kept")

    # ---- secrets: neither stored nor logged
    stored = env.q("SELECT string_agg(resource::text, ' ') FROM scim_resource")
    c.hasnt(PASSWORD, stored, "a pushed password is never stored")
    time.sleep(0.2)
    c.hasnt(PASSWORD, d.stderr_text(), "a pushed password is never logged")
    c.hasnt(TOKEN, d.stderr_text(), "the token is never logged")
    c.has("scim: listening on 127.0.0.1", d.stderr_text(), "the log says where it listens")

    # a reload moves the listener to the new configuration (kept, not restarted)
    mark = d.line_mark()
    d.signal(signal.SIGHUP)
    d.wait_line(r"scim: listening on 127\.0\.0\.1.*kept across the reload", 10, since=mark)
    c.eq(200, cl.req("GET", "Users?count=1")[0], "the listener answers after a reload")
    d.signal(signal.SIGTERM)
    c.eq(0, d.wait_exit(10), "SIGTERM stops the daemon and its listener: exit 0")
    c.hasnt("Sanitizer", d.stderr_text(), "no sanitizer report (leaks at exit included)")


if __name__ == "__main__":
    main("scim_push", body, ldap=False)
