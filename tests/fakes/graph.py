#!/usr/bin/python3
"""graph.py - a local HTTPS fake of the Microsoft identity platform's token
endpoint and of Microsoft Graph (users, groups, transitive members), for
idsyncd's tests.

Run with Debian's /usr/bin/python3 (it has `cryptography`):

  graph.py --cert server.crt --key server.key --port-file DIR/port \\
           --tenant TENANT --client-id ID \\
           (--secret-file F | --client-cert client.crt) \\
           (--data data.json | --gen-users N --gen-groups M [--gen-nesting]) [options]

It behaves like the real services on every point idsyncd relies on:

  * POST /{tenant}/oauth2/v2.0/token: the client_credentials grant, form
    encoded.  client_id must be the app's, scope exactly
    https://{host}/.default (the origin this fake serves Graph on).  With
    --secret-file the client_secret must match; with --client-cert the
    client_assertion must be a JWT (client_assertion_type jwt-bearer) whose
    header says typ JWT and alg PS256 with x5t#S256 or RS256 with x5t (the
    base64url SHA-256 / SHA-1 of the certificate's DER), signed by the
    certificate's key (PSS with a 32-byte salt, or PKCS#1 v1.5), with aud =
    this very URL, iss = sub = client_id, nbf <= now < exp, exp - nbf at
    most 10 minutes, and a jti never seen before.  Errors come as the
    identity platform's {"error","error_description":"AADSTS…",
    "error_codes":[…]}.  Tokens live --token-lifetime seconds; the answer
    claims --expires-in (default: the same), so tests can make tokens die
    earlier than the client expects.
  * GET /v1.0/users | /v1.0/groups | /v1.0/groups/{id}/transitiveMembers
    [/microsoft.graph.user]: bearer tokens checked (unknown or expired: 401
    InvalidAuthenticationToken), $select honoured (only the selected
    properties come back, unknown ones are a 400 Request_BadRequest as on
    Graph, names case-insensitive; without $select the users' default set,
    which lacks accountEnabled), $top honoured (default 100, capped at 999)
    and further cut to --page-size, opaque HMAC'd $skiptoken in absolute
    @odata.nextLink URLs bound to their listing, transitiveMembers resolving
    nested groups (cycles end), gzip when asked, request-id headers.
  * GET /v1.0/users/{id|userPrincipalName} (404 Request_ResourceNotFound
    for nobody), /v1.0/users/{key}/transitiveMemberOf[/microsoft.graph.group]
    (every group holding the user, through nested groups, paged as above)
    and /v1.0/users?$filter=mail eq '…' (the OData literal, '' for a
    quote): a targeted read's requests, endpoints "user", "memberof" and
    "filter" in the stats and the faults (ERRORS kinds and retry_after).
  * Errors in Graph's shape {"error":{"code","message","innerError":{…}}}.

Faults (--fault JSON, repeatable, or POST /_control {"faults": [...]}):
  {"endpoint": "users"|"groups"|"members"|"token"|"any", "page": N (1-based,
   optional), "group": ID (members only, optional), "times": N (default 1,
   -1 = always), "kind": K, "retry_after": "S" (optional), "seconds": S}
  kinds: 429 503 504 500 403 404 400 401 (Graph's errors; retry_after adds
  the header), expire (every token revoked, then Graph's 401 for this
  request: a token that died mid-run), html (200 text/html), truncate (a
  cut JSON body, consistent length), reset (full Content-Length, half the
  body, then close), stall (the request read, nothing answered for
  `seconds`), drip (headers and half the body, then a byte every
  `interval` s, default 2, for `seconds`), huge (a chunked body of `mib`
  MiB, default 80), repeat_token (the page's nextLink is the request's own
  URL), empty (an empty `value` with a nextLink to the same place: Graph
  does that), novalue (no `value`), wrongtype (`value` an object), badid
  (a user's id a number), dupkeys (`value` twice), deep (100000 nested
  arrays), foreign (a nextLink to another host), hangup (the request read,
  the connection closed without an answer).

Control: GET /_stats (request counters, connections accepted and how many
of them resumed a TLS session, the $select/$top seen, the last
assertion's header and claims, a log of [time, endpoint, page, status]),
POST /_control {"faults", "clear_faults", "reset_stats", "data_file",
"token_lifetime", "expires_in", "revoke_tokens", "secret_file", "page_size",
"idle_timeout" (seconds a kept-alive connection may wait for its next
request before the server closes it)}.  Writes its
port to --port-file once it listens.
"""
import argparse
import base64
import gzip
import hashlib
import hmac
import json
import os
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH = "/v1.0/"
TOP_CAP = 999
TOP_DEFAULT = 100
LOG_MAX = 20000

# Properties of microsoft.graph.user (v1.0 reference, the ones a directory
# sync plausibly reads): a $select naming anything else is a 400.
USER_PROPS = [
    "id", "accountEnabled", "userPrincipalName", "mail", "givenName", "surname", "displayName",
    "department", "jobTitle", "officeLocation", "companyName", "employeeId", "employeeType", "city",
    "country", "state", "usageLocation", "preferredLanguage", "mobilePhone", "businessPhones", "otherMails",
    "proxyAddresses", "mailNickname", "userType", "createdDateTime", "onPremisesSamAccountName",
    "onPremisesImmutableId", "onPremisesExtensionAttributes", "onPremisesSyncEnabled", "externalUserState",
]
# What Graph returns for /users without $select.
USER_DEFAULT = ["businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"]
GROUP_PROPS = ["id", "displayName", "mail", "description", "mailEnabled", "mailNickname", "securityEnabled",
               "groupTypes", "createdDateTime"]
GROUP_DEFAULT = GROUP_PROPS

ERRORS = {
    "429": (429, "TooManyRequests", "Too many requests."),
    "503": (503, "serviceNotAvailable", "The service is temporarily unavailable. Please try again later."),
    "504": (504, "UnknownError", "Gateway timeout."),
    "500": (500, "generalException", "An unexpected error occurred."),
    "403": (403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    "404": (404, "Request_ResourceNotFound",
            "Resource does not exist or one of its queried reference-property objects are not present."),
    "400": (400, "Request_BadRequest", "Invalid request."),
    "401": (401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
}


class GraphError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class TokenError(Exception):
    def __init__(self, status, error, aadsts, description):
        super().__init__(description)
        self.status, self.error, self.aadsts, self.description = status, error, aadsts, description


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---------------------------------------------------------------- data

def guid(kind, i):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"idsyncd-test:{kind}:{i}"))


def generate(n_users, n_groups, nesting):
    """A deterministic tenant: user i is in group i % n_groups; with
    nesting, every group j > 0 with j % 10 == 0 contains group j - 1;
    every 50th user is disabled, every 7th has no mail."""
    depts = ["Support", "Sales", "Operations"]
    users = []
    for i in range(n_users):
        upn = f"user{i:05d}@contoso.example"
        users.append({
            "id": guid("user", i), "userPrincipalName": upn, "mail": None if i % 7 == 6 else upn,
            "givenName": "User", "surname": f"N{i:05d}", "displayName": f"User N{i:05d}",
            "accountEnabled": i % 50 != 49, "department": depts[i % 3], "jobTitle": "Agent",
            "businessPhones": [], "proxyAddresses": [f"SMTP:{upn}"],
        })
    groups = []
    for j in range(n_groups):
        members = [users[i]["id"] for i in range(j, n_users, n_groups)]
        if nesting and j > 0 and j % 10 == 0:
            members.append(guid("group", j - 1))
        groups.append({"id": guid("group", j), "displayName": f"CC-Group-{j:03d}",
                       "mail": f"group{j:03d}@contoso.example", "members": members})
    return {"users": users, "groups": groups}


def normalise(data):
    """Fills in what a test's hand-written data leaves out: unset
    properties are null (Graph sends null for a selected, unset one)."""
    for u in data.setdefault("users", []):
        u.setdefault("accountEnabled", True)
        for p in USER_PROPS:
            u.setdefault(p, [] if p in ("businessPhones", "otherMails", "proxyAddresses") else None)
    for g in data.setdefault("groups", []):
        for p in GROUP_PROPS:
            g.setdefault(p, None)
        g.setdefault("members", [])
    return data


# ---------------------------------------------------------------- state

class State:
    def __init__(self, args):
        self.lock = threading.RLock()  # set_data takes it, under control()'s too
        self.args = args
        self.secret = None
        if args.secret_file:
            with open(args.secret_file, "rb") as f:
                self.secret = f.read().strip()
        self.cert = None
        if args.client_cert:
            with open(args.client_cert, "rb") as f:
                self.cert = x509.load_pem_x509_certificate(f.read())
            der = self.cert.public_bytes(serialization.Encoding.DER)
            self.x5t = b64url(hashlib.sha1(der).digest())
            self.x5t256 = b64url(hashlib.sha256(der).digest())
        self.mac_key = secrets.token_bytes(32)
        self.tokens = {}
        self.jtis = set()
        self.token_lifetime = args.token_lifetime
        self.expires_in = args.expires_in
        self.page_size = args.page_size
        self.idle_timeout = 0  # seconds; 0: the handler's timeout
        self.faults = [json.loads(f) for f in args.fault]
        if args.data:
            self.load(args.data)
        else:
            self.set_data(normalise(generate(args.gen_users, args.gen_groups, args.gen_nesting)))
        self.reset_stats()

    def load(self, path):
        with open(path) as f:
            self.set_data(normalise(json.load(f)))

    def set_data(self, data):
        # a user marked "@deleted": "changed" is soft-deleted (in
        # deletedItems, restorable): in no listing, named by users/delta
        soft = {u["id"].lower(): u["id"] for u in data["users"] if u.get("@deleted")}
        data = dict(data, users=[u for u in data["users"] if not u.get("@deleted")])
        if not hasattr(self, "delta"):
            self.delta = DeltaLog()
        with self.lock:
            self.delta.record(data, soft)
        self.data = data
        # lookups for transitiveMembers, built once per tenant
        self.groups_by_id = {g["id"].lower(): g for g in data["groups"]}
        self.users_by_id = {u["id"].lower(): u for u in data["users"]}

    def reset_stats(self):
        self.stats = {"requests": 0, "by_endpoint": {}, "status": {}, "tokens_issued": 0, "token_errors": [],
                      "auth_kind": {}, "unauthorized": 0, "faults_fired": 0, "select": {}, "top": {},
                      "last_header": None, "last_claims": None, "user_agent": None, "accept_encoding": None,
                      "log": []}

    def count(self, endpoint, page, status):
        with self.lock:
            s = self.stats
            s["requests"] += 1
            s["by_endpoint"][endpoint] = s["by_endpoint"].get(endpoint, 0) + 1
            s["status"][str(status)] = s["status"].get(str(status), 0) + 1
            if len(s["log"]) < LOG_MAX:
                s["log"].append([time.time(), endpoint, page, status])

    def fault_for(self, endpoint, page, group=None):
        with self.lock:
            for f in self.faults:
                if f.get("endpoint", "any") not in (endpoint, "any"):
                    continue
                if "page" in f and f["page"] != page:
                    continue
                if "group" in f and f["group"] != group:
                    continue
                times = f.get("times", 1)
                if times == 0:
                    continue
                if times > 0:
                    f["times"] = times - 1
                self.stats["faults_fired"] += 1
                return f
        return None

    # opaque skip tokens: listing and offset, a nonce, and an HMAC
    def make_token(self, listing, offset):
        raw = json.dumps({"l": listing, "o": offset, "n": secrets.token_hex(4)}).encode()
        mac = hmac.new(self.mac_key, raw, hashlib.sha256).digest()[:12]
        return b64url(mac + raw)

    def read_token(self, listing, token):
        try:
            blob = b64url_decode(token)
            mac, raw = blob[:12], blob[12:]
            if not hmac.compare_digest(mac, hmac.new(self.mac_key, raw, hashlib.sha256).digest()[:12]):
                raise ValueError
            d = json.loads(raw)
            if d["l"] != listing:
                raise ValueError
            return int(d["o"])
        except Exception:
            raise GraphError(400, "Request_BadRequest", "Invalid skip token.")


def churn(data, fraction):
    """A copy of data with `fraction` of the users changed (surname) and as
    many memberships moved to the next group (bench/entra_feed.sh)."""
    step = max(1, int(round(1 / fraction))) if fraction > 0 else 0
    users = [dict(u) for u in data["users"]]
    groups = [dict(g, members=list(g["members"])) for g in data["groups"]]
    tick = int(time.time())
    for i in range(0, len(users), step or len(users) + 1):
        users[i]["surname"] = f"Churned{tick}-{i}"
    for j in range(0, len(groups), 1):
        g, h = groups[j], groups[(j + 1) % len(groups)]
        moved = g["members"][::step or len(g["members"]) + 1][:max(1, len(g["members"]) // (step or 1))] if g["members"] else []
        for m in moved:
            g["members"].remove(m)
            if m not in h["members"]:
                h["members"].append(m)
    return dict(data, users=users, groups=groups)


# ---------------------------------------------------------------- delta

class DeltaLog:
    """What changed at which version of the tenant, for /users/delta and
    /groups/delta.  Every data load is a new version; the delta tokens
    carry the version their round started at, so a round returns what
    changed after it: users whole (their selected properties) or
    @removed (reason "changed" when soft-deleted, "deleted" when gone),
    groups with their values and members@delta (the direct members that
    came or went: users and nested groups, a soft-deleted user leaving
    every group as on Entra)."""

    def __init__(self):
        self.ver = 0
        self.users = {}    # id -> ("live", obj) | ("soft", None)
        self.groups = {}   # id -> props without members
        self.edges = {}    # (gid, mid) -> "user" | "group"
        self.user_ver = {}   # id -> (version, state) of its last change
        self.group_ver = {}  # id -> (version, alive)
        self.edge_ver = {}   # (gid, mid) -> (version, present, type)
        self.order_u, self.order_g = [], []  # first-seen order
        self.member_chunk = 20  # members@delta per group part: bigger groups come in several parts
        self.names = {}  # lower-case id -> the id as written
        # (version, key) of every change, oldest first: a round from a recent
        # version reads only the tail (bench/: 100k users, a no-change round)
        self.log_u, self.log_g, self.log_e = [], [], []
        self.cache = {}  # the items of a first round, per (listing, props), until the next change

    def record(self, data, soft):
        self.ver += 1
        v = self.ver
        users = {u["id"].lower(): ("live", u) for u in data["users"]}
        self.names.update({u["id"].lower(): u["id"] for u in data["users"]})
        self.names.update(soft)
        for i in soft:
            users.setdefault(i, ("soft", None))
        for i, st in users.items():
            if self.users.get(i) != st:
                self.user_ver[i] = (v, st)
                self.log_u.append((v, i))
                if i not in self.users and i not in self.order_u:
                    self.order_u.append(i)
        for i in set(self.users) - set(users):
            self.user_ver[i] = (v, ("gone", None))
            self.log_u.append((v, i))
        self.users = users
        groups = {g["id"].lower(): {k: x for k, x in g.items() if k != "members"} for g in data["groups"]}
        for i, g in groups.items():
            if self.groups.get(i) != g:
                self.group_ver[i] = (v, True)
                self.log_g.append((v, i))
                if i not in self.order_g:
                    self.order_g.append(i)
        for i in set(self.groups) - set(groups):
            self.group_ver[i] = (v, False)
            self.log_g.append((v, i))
        self.groups = groups
        live = {i for i, st in users.items() if st[0] == "live"}
        edges = {}
        for g in data["groups"]:
            for m in g["members"]:
                m = m.lower()
                if m in live:
                    edges[(g["id"].lower(), m)] = "user"
                elif m in groups:
                    edges[(g["id"].lower(), m)] = "group"
        for e, t in edges.items():
            if e not in self.edges:
                self.edge_ver[e] = (v, True, t)
                self.log_e.append((v, e))
        for e, t in self.edges.items():
            if e not in edges:
                self.edge_ver[e] = (v, False, t)
                self.log_e.append((v, e))
        self.edges = edges
        self.cache = {}

    @staticmethod
    def since(log, since):
        """The keys changed after version `since`, from the log's tail."""
        out = set()
        for v, k in reversed(log):
            if v <= since:
                break
            out.add(k)
        return out

    def user_items(self, since, props):
        """The users of a round from version `since` (None: everyone)."""
        key = ("u", since, tuple(props))
        if key in self.cache:
            return self.cache[key]
        out = []
        recent = None if since is None else self.since(self.log_u, since)
        for i in self.order_u if since is None else [i for i in self.order_u if i in recent]:
            if i not in self.user_ver:
                continue
            v, (state, u) = self.user_ver[i]
            if since is None:
                if state == "live":
                    out.append({p: u.get(p) for p in props})
            elif v > since:
                if state == "live":
                    out.append({p: u.get(p) for p in props})
                else:
                    out.append({"id": self.names.get(i, i),
                                "@removed": {"reason": "changed" if state == "soft" else "deleted"}})
        self.cache[key] = out
        return out

    def group_items(self, since, props):
        """The group parts of a round: a group's values on its first part,
        its members@delta split over parts of member_chunk."""
        key = ("g", since, tuple(props))
        if key in self.cache:
            return self.cache[key]
        want_members = "members" in props
        props = [p for p in props if p != "members"]
        changed = {}
        edges = self.edge_ver if since is None else {e: self.edge_ver[e] for e in self.since(self.log_e, since)}
        for (gid, mid), (v, present, t) in edges.items():
            if since is None:
                if present:
                    changed.setdefault(gid, []).append((mid, True, t))
            elif v > since:
                changed.setdefault(gid, []).append((mid, present, t))
        out = []
        touched = None if since is None else self.since(self.log_g, since) | set(changed)
        for gid in self.order_g if since is None else [g for g in self.order_g if g in touched]:
            v, alive = self.group_ver[gid]
            if not alive:
                if since is not None and v > since:
                    out.append({"id": gid, "@removed": {"reason": "deleted"}})
                continue
            vals = since is None or v > since
            mem = sorted(changed.get(gid, [])) if want_members else []
            if not vals and not mem:
                continue
            g = self.groups[gid]
            first = {p: g.get(p) for p in props}
            first["id"] = g["id"]
            parts = [mem[k:k + self.member_chunk] for k in range(0, len(mem), self.member_chunk)] or [[]]
            for n, part in enumerate(parts):
                item = dict(first) if n == 0 and vals else {"id": g["id"]}
                if want_members:
                    item["members@delta"] = [
                        dict({"@odata.type": f"#microsoft.graph.{t}", "id": m},
                             **({} if present else {"@removed": {"reason": "deleted"}}))
                        for m, present, t in part]
                out.append(item)
        self.cache[key] = out
        return out


# ---------------------------------------------------------------- handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 60

    def log_message(self, fmt, *args):
        if self.server.state.args.verbose:
            sys.stderr.write("graph.py: " + (fmt % args) + "\n")

    def setup(self):
        # the TLS handshake, here in the connection's own thread, bounded
        self.request.settimeout(self.timeout)
        with self.server.state.lock:  # connections accepted: each a handshake
            self.server.state.stats["connections"] = self.server.state.stats.get("connections", 0) + 1
        self.request.do_handshake()
        if self.request.session_reused:  # the client resumed a TLS session: no full handshake
            with self.server.state.lock:
                self.server.state.stats["resumed"] = self.server.state.stats.get("resumed", 0) + 1
        super().setup()

    def handle_one_request(self):
        # idle_timeout (control): how long a kept-alive connection may wait
        # for its next request before the server closes it, as Graph's
        # front end does with an idle client's
        self.request.settimeout(self.st.idle_timeout or self.timeout)
        super().handle_one_request()

    @property
    def st(self):
        return self.server.state

    # ---- sending
    def send_raw(self, code, body, ctype, headers=None, endpoint=None, page=None, declared=None,
                 compress=True):
        if compress and "gzip" in (self.headers.get("Accept-Encoding") or "") and len(body) > 256:
            body = gzip.compress(body, 6)
            headers = dict(headers or {}, **{"Content-Encoding": "gzip"})
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        rid = str(uuid.uuid4())
        self.send_header("request-id", rid)
        self.send_header("client-request-id", rid)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if endpoint:
            self.st.count(endpoint, page, code)
            with self.st.lock:  # what went over the wire, for bench/entra_feed
                self.st.stats["bytes"] = self.st.stats.get("bytes", 0) + len(body)

    def send_json(self, code, obj, headers=None, endpoint=None, page=None):
        ctype = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
        self.send_raw(code, json.dumps(obj).encode(), ctype, headers, endpoint, page)

    def send_graph_error(self, e, endpoint, page=None):
        body = {"error": {"code": e.code, "message": e.message,
                          "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                                         "request-id": str(uuid.uuid4()),
                                         "client-request-id": str(uuid.uuid4())}}}
        self.send_json(e.status, body, e.headers, endpoint, page)

    def send_token_error(self, e):
        desc = (f"{e.aadsts}: {e.description}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}"
                f"\r\nTimestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}")
        body = {"error": e.error, "error_description": desc, "error_codes": [int(e.aadsts[6:])],
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()), "trace_id": str(uuid.uuid4()),
                "correlation_id": str(uuid.uuid4()), "error_uri": "https://login.microsoftonline.com/error"}
        with self.st.lock:
            self.st.stats["token_errors"].append(f"{e.aadsts}: {e.description}")
        self.send_json(e.status, body, None, "token")

    # ---- routing
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_stats":
            with self.st.lock:
                body = json.dumps(self.st.stats).encode()
            self.send_raw(200, body, "application/json", compress=False)
            return
        with self.st.lock:
            self.st.stats["user_agent"] = self.headers.get("User-Agent")
            self.st.stats["accept_encoding"] = self.headers.get("Accept-Encoding")
        if self.targeted(url):
            return
        endpoint, group, cast = self.route(url.path)
        if not endpoint:
            self.send_graph_error(GraphError(400, "Request_BadRequest",
                                             f"Resource not found for the segment '{url.path}'."), "other")
            return
        try:
            self.authorize()
            if endpoint.endswith("_delta"):
                self.delta_listing(endpoint, url)
            else:
                self.listing(endpoint, group, cast, url)
        except GraphError as e:
            if e.status == 401:
                with self.st.lock:
                    self.st.stats["unauthorized"] += 1
            self.send_graph_error(e, endpoint)

    def route(self, path):
        if not path.startswith(GRAPH):
            return None, None, None
        rest = path[len(GRAPH):].split("/")
        if rest == ["users"]:
            return "users", None, None
        if rest == ["groups"]:
            return "groups", None, None
        if rest in (["users", "delta"], ["groups", "delta"]):
            return rest[0] + "_delta", None, None
        if len(rest) in (3, 4) and rest[0] == "groups" and rest[2] == "transitiveMembers":
            cast = rest[3] if len(rest) == 4 else None
            if cast not in (None, "microsoft.graph.user"):
                return None, None, None
            return "members", urllib.parse.unquote(rest[1]), cast
        return None, None, None

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_control":
            self.control(json.loads(body or b"{}"))
            return
        parts = url.path.split("/")
        if len(parts) != 5 or parts[2:] != ["oauth2", "v2.0", "token"]:
            self.send_graph_error(GraphError(404, "Request_ResourceNotFound", "Not found."), "other")
            return
        try:
            f = self.st.fault_for("token", None)
            if f and self.fault(f, "token", None, {"access_token": "x", "expires_in": 3600}):
                return
            tok = self.token(parts[1], body)
            self.send_json(200, tok, {"Cache-Control": "no-store, no-cache"}, "token")
        except TokenError as e:
            self.send_token_error(e)

    def control(self, c):
        st = self.st
        with st.lock:
            if c.get("clear_faults"):
                st.faults = []
            st.faults.extend(c.get("faults", []))
            if c.get("reset_stats"):
                st.reset_stats()
            if "token_lifetime" in c:
                st.token_lifetime = int(c["token_lifetime"])
            if "expires_in" in c:
                st.expires_in = int(c["expires_in"])
            if c.get("revoke_tokens"):
                st.tokens.clear()
            if "secret_file" in c:  # the app registration's secret rotated; issued tokens stay valid
                with open(c["secret_file"], "rb") as f:
                    st.secret = f.read().strip()
            if "page_size" in c:
                st.page_size = int(c["page_size"])
            if "idle_timeout" in c:
                st.idle_timeout = float(c["idle_timeout"])
            if "member_chunk" in c:
                st.delta.member_chunk = int(c["member_chunk"])
        if "data_file" in c:
            with st.lock:
                st.load(c["data_file"])
        if "churn" in c:
            with st.lock:
                st.set_data(churn(st.data, float(c["churn"])))
        self.send_raw(200, b"{}", "application/json", compress=False)

    # ---- the identity platform
    def token(self, tenant, body):
        st = self.st
        if tenant != st.args.tenant:
            raise TokenError(400, "invalid_request", "AADSTS90002", f"Tenant '{tenant}' not found.")
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            raise TokenError(400, "invalid_request", "AADSTS900144",
                             "The request body must contain the following parameter: 'grant_type'.")
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                           keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", "AADSTS70003",
                             "The app requested an unsupported grant type.")
        if form.get("client_id") != st.args.client_id:
            raise TokenError(400, "unauthorized_client", "AADSTS700016",
                             f"Application with identifier '{form.get('client_id')}' was not found in the "
                             f"directory '{tenant}'.")
        scope = f"https://{self.headers.get('Host')}/.default"
        if form.get("scope") != scope:
            raise TokenError(400, "invalid_scope", "AADSTS1002012",
                             f"The provided value for scope {form.get('scope')} is not valid. Client "
                             f"credential flows must have a scope value with /.default suffixed.")
        if "client_secret" in form:
            kind = "secret"
            if st.secret is None or not hmac.compare_digest(form["client_secret"].encode(), st.secret):
                raise TokenError(401, "invalid_client", "AADSTS7000215", "Invalid client secret provided.")
        elif "client_assertion" in form:
            kind = "assertion"
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise TokenError(400, "invalid_request", "AADSTS50027", "Invalid client_assertion_type.")
            self.assertion(form["client_assertion"])
        else:
            raise TokenError(401, "invalid_client", "AADSTS7000218",
                             "The request body must contain the following parameter: 'client_assertion' or "
                             "'client_secret'.")
        tok = "eyJ0eXAiOiJKV1QiLCJub25jZSI6." + secrets.token_urlsafe(48)
        now = time.time()
        with st.lock:
            st.tokens[tok] = now + st.token_lifetime
            st.stats["tokens_issued"] += 1
            st.stats["auth_kind"][kind] = st.stats["auth_kind"].get(kind, 0) + 1
            expires_in = st.expires_in if st.expires_in is not None else st.token_lifetime
        return {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
                "access_token": tok}

    def assertion(self, jwt):
        st = self.st
        if st.cert is None:
            raise TokenError(401, "invalid_client", "AADSTS700027",
                             "The certificate with identifier used to sign the client assertion is not "
                             "registered on application.")
        parts = jwt.split(".")
        if len(parts) != 3:
            raise TokenError(400, "invalid_request", "AADSTS50027", "JWT token is invalid or malformed.")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except Exception:
            raise TokenError(400, "invalid_request", "AADSTS50027", "JWT token is invalid or malformed.")
        with st.lock:
            st.stats["last_header"], st.stats["last_claims"] = header, claims
        alg = header.get("alg")
        if header.get("typ") != "JWT" or alg not in ("PS256", "RS256"):
            raise TokenError(400, "invalid_request", "AADSTS5002738", f"Invalid JWT header: alg {alg}.")
        if st.args.expect_alg and alg != st.args.expect_alg:
            raise TokenError(401, "invalid_client", "AADSTS5002738", f"alg {alg} is not accepted here.")
        # PS256 names the certificate by its SHA-256 thumbprint, RS256 by SHA-1
        want = ("x5t#S256", st.x5t256) if alg == "PS256" else ("x5t", st.x5t)
        if header.get(want[0]) != want[1]:
            raise TokenError(401, "invalid_client", "AADSTS700027",
                             f"Client assertion contains an invalid signature. [Reason - The key was not "
                             f"found., Thumbprint of key used by client: '{header.get(want[0])}']")
        signed = (parts[0] + "." + parts[1]).encode()
        pad = (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32) if alg == "PS256"
               else padding.PKCS1v15())
        try:
            st.cert.public_key().verify(sig, signed, pad, hashes.SHA256())
        except InvalidSignature:
            raise TokenError(401, "invalid_client", "AADSTS700027",
                             "Client assertion failed signature validation.")
        aud = f"https://{self.headers.get('Host')}{urllib.parse.urlsplit(self.path).path}"
        if claims.get("aud") != aud:
            raise TokenError(401, "invalid_client", "AADSTS700016", f"Invalid audience {claims.get('aud')}.")
        if claims.get("iss") != st.args.client_id or claims.get("sub") != st.args.client_id:
            raise TokenError(401, "invalid_client", "AADSTS700021", "Client assertion application identifier "
                                                                    "doesn't match 'client_id' parameter.")
        now = time.time()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if (not isinstance(nbf, int) or not isinstance(exp, int) or nbf > now + 60 or exp <= now
                or exp - nbf > 600):
            raise TokenError(401, "invalid_client", "AADSTS700024",
                             "Client assertion is not within its valid time range.")
        jti = claims.get("jti")
        with st.lock:
            if not isinstance(jti, str) or not jti or jti in st.jtis:
                raise TokenError(401, "invalid_client", "AADSTS700023", "Client assertion jti is missing or "
                                                                        "was used before.")
            st.jtis.add(jti)

    # ---- Graph
    def authorize(self):
        auth = self.headers.get("Authorization") or ""
        tok = auth[7:] if auth.startswith("Bearer ") else None
        if not tok:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        with self.st.lock:
            exp = self.st.tokens.get(tok)
        if exp is None or time.time() >= exp:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")

    def select(self, q, known, default):
        sel = q.get("$select")
        if sel is None:
            return default
        canon = {p.lower(): p for p in known}
        out = []
        for name in sel.split(","):
            name = name.strip()
            if name.lower() not in canon:
                raise GraphError(400, "Request_BadRequest",
                                 f"Could not find a property named '{name}' on type 'microsoft.graph.user'."
                                 if known is USER_PROPS else f"Could not find a property named '{name}'.")
            if canon[name.lower()] not in out:
                out.append(canon[name.lower()])
        return out

    def members(self, gid):
        by_id, users = self.st.groups_by_id, self.st.users_by_id
        g = by_id.get(gid.lower())
        if not g:
            raise GraphError(404, "Request_ResourceNotFound",
                             f"Resource '{gid}' does not exist or one of its queried reference-property objects "
                             f"are not present.")
        out, seen_users, seen_groups = [], set(), {g["id"].lower()}

        def expand(grp):
            for m in grp["members"]:
                m = m.lower()
                if m in by_id:
                    if m not in seen_groups:
                        seen_groups.add(m)
                        out.append(("group", by_id[m]))
                        expand(by_id[m])
                elif m in users and m not in seen_users:
                    seen_users.add(m)
                    out.append(("user", users[m]))

        expand(g)
        return out

    def listing(self, endpoint, group, cast, url):
        st = self.st
        raw_q = url.query
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(raw_q, keep_blank_values=True).items()}
        try:
            top = int(q.get("$top", TOP_DEFAULT))
        except ValueError:
            raise GraphError(400, "Request_BadRequest", "Invalid page size specified.")
        if top < 1:
            raise GraphError(400, "Request_BadRequest", "Invalid page size specified.")
        with st.lock:
            st.stats["select"][endpoint] = q.get("$select")
            st.stats["top"][endpoint] = q.get("$top")
            page_size = st.page_size
        size = min(top, TOP_CAP, page_size or TOP_CAP)

        if endpoint == "users":
            props = self.select(q, USER_PROPS, USER_DEFAULT)
            items = st.data["users"]
        elif endpoint == "groups":
            props = self.select(q, GROUP_PROPS, GROUP_DEFAULT)
            items = st.data["groups"]
        else:
            props = self.select(q, USER_PROPS, USER_DEFAULT)
            items = []
            for kind, o in self.members(group):
                if cast and kind != "user":
                    continue
                item = {"@odata.type": f"#microsoft.graph.{kind}"}
                item.update({p: o.get(p) for p in props if p in o})
                items.append(item)
        listing = endpoint if endpoint != "members" else f"members:{group.lower()}:{cast}"
        token = q.get("$skiptoken")
        offset = st.read_token(listing, token) if token else 0
        page_no = offset // size + 1

        f = st.fault_for(endpoint, page_no, group)
        if f and f["kind"] in ERRORS or f and f["kind"] == "expire":
            if f["kind"] == "expire":
                with st.lock:
                    st.tokens.clear()
                status, code, msg = ERRORS["401"]
            else:
                status, code, msg = ERRORS[f["kind"]]
            if status == 401:
                with st.lock:
                    st.stats["unauthorized"] += 1
            hdr = {"Retry-After": f["retry_after"]} if "retry_after" in f else None
            self.send_graph_error(GraphError(status, code, msg, hdr), endpoint, page_no)
            return

        chunk = items[offset:offset + size]
        if endpoint != "members":
            chunk = [{p: o.get(p) for p in props} for o in chunk]  # $select: only these
        base_q = "&".join(p for p in raw_q.split("&") if p and not p.startswith("$skiptoken="))
        base = f"https://{self.headers.get('Host')}{url.path}?{base_q}"
        nxt = None
        if offset + size < len(items):
            nxt = f"{base}&$skiptoken={st.make_token(listing, offset + size)}"
        if f and f["kind"] == "empty":
            chunk, nxt, f = [], f"{base}&$skiptoken={st.make_token(listing, offset)}", None
        if f and f["kind"] == "repeat_token":
            nxt, f = f"https://{self.headers.get('Host')}{self.path}", None
        if f and f["kind"] == "foreign":
            nxt, f = f"https://evil.example{url.path}?{base_q}&$skiptoken=x", None
        ctx_name = endpoint if endpoint != "members" else "directoryObjects"
        body = {"@odata.context": f"https://{self.headers.get('Host')}/v1.0/$metadata#{ctx_name}({','.join(props)})",
                "value": chunk}
        if nxt:
            body["@odata.nextLink"] = nxt
        if f and self.fault(f, endpoint, page_no, body):
            return
        self.send_json(200, body, None, endpoint, page_no)

    # ---- one user: /users/{id|upn}, its transitiveMemberOf, /users?$filter=mail eq '…'
    def targeted(self, url):
        """Answers the requests of a targeted read (endpoints "user",
        "memberof", "filter" in stats and faults); False for any other."""
        rest = url.path[len(GRAPH):].split("/") if url.path.startswith(GRAPH) else []
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        if rest == ["users"] and "$filter" in q:
            endpoint = "filter"
        elif len(rest) == 2 and rest[0] == "users" and rest[1] != "delta":
            endpoint = "user"
        elif len(rest) in (3, 4) and rest[0] == "users" and rest[2] == "transitiveMemberOf":
            endpoint = "memberof"
            if len(rest) == 4 and rest[3] != "microsoft.graph.group":
                return False
        else:
            return False
        try:
            self.authorize()
            if endpoint == "filter":
                self.user_filter(q)
            elif endpoint == "user":
                self.one_user(urllib.parse.unquote(rest[1]), q)
            else:
                self.member_of(urllib.parse.unquote(rest[1]), q, url)
        except GraphError as e:
            if e.status == 401:
                with self.st.lock:
                    self.st.stats["unauthorized"] += 1
            self.send_graph_error(e, endpoint)
        return True

    def find_user(self, key):
        """By id or userPrincipalName, case-insensitively, as Graph's key lookup."""
        for u in self.st.data["users"]:
            if key.lower() in (u["id"].lower(), (u.get("userPrincipalName") or "").lower()):
                return u
        raise GraphError(404, "Request_ResourceNotFound",
                         f"Resource '{key}' does not exist or one of its queried reference-property objects "
                         f"are not present.")

    def target_fault(self, endpoint, page):
        """The ERRORS kinds (with Retry-After) for the targeted endpoints."""
        f = self.st.fault_for(endpoint, page)
        if f and f["kind"] in ERRORS:
            status, code, msg = ERRORS[f["kind"]]
            raise GraphError(status, code, msg, {"Retry-After": f["retry_after"]} if "retry_after" in f else None)

    def one_user(self, key, q):
        self.target_fault("user", 1)
        u = self.find_user(key)
        props = self.select(q, USER_PROPS, USER_DEFAULT)
        body = {"@odata.context": f"https://{self.headers.get('Host')}/v1.0/$metadata#users({','.join(props)})/$entity"}
        body.update({p: u.get(p) for p in props})
        self.send_json(200, body, None, "user", 1)

    def user_filter(self, q):
        """Only what idsyncd sends: PROP eq 'VALUE' ('' inside the literal),
        on mail or userPrincipalName; anything else is Graph's 400."""
        import re
        m = re.fullmatch(r"(mail|userPrincipalName) eq '((?:[^']|'')*)'", q["$filter"])
        if not m:
            raise GraphError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause.")
        self.target_fault("filter", 1)
        want = m.group(2).replace("''", "'").lower()
        props = self.select(q, USER_PROPS, USER_DEFAULT)
        hits = [{p: u.get(p) for p in props} for u in self.st.data["users"]
                if (u.get(m.group(1)) or "").lower() == want]
        with self.st.lock:
            self.st.stats.setdefault("filters", []).append(q["$filter"])
        self.send_json(200, {"value": hits}, None, "filter", 1)

    def member_of(self, key, q, url):
        """Every group containing the user, directly or through groups
        (cycles end), paged like the listings ($top, --page-size, skip tokens)."""
        u = self.find_user(key)
        st = self.st
        parents = {}
        for g in st.data["groups"]:
            for m in g["members"]:
                parents.setdefault(m.lower(), []).append(g)
        out, seen, todo = [], set(), [u["id"].lower()]
        while todo:
            for g in parents.get(todo.pop(0), []):
                if g["id"].lower() not in seen:
                    seen.add(g["id"].lower())
                    out.append(g)
                    todo.append(g["id"].lower())
        props = self.select(q, GROUP_PROPS, GROUP_DEFAULT)
        size = min(int(q.get("$top", TOP_DEFAULT)), TOP_CAP, st.page_size or TOP_CAP)
        listing = f"memberof:{u['id'].lower()}"
        offset = st.read_token(listing, q["$skiptoken"]) if "$skiptoken" in q else 0
        page_no = offset // size + 1
        self.target_fault("memberof", page_no)
        body = {"value": [dict({"@odata.type": "#microsoft.graph.group"}, **{p: g.get(p) for p in props})
                          for g in out[offset:offset + size]]}
        if offset + size < len(out):
            base_q = "&".join(p for p in url.query.split("&") if p and not p.startswith("$skiptoken="))
            body["@odata.nextLink"] = (f"https://{self.headers.get('Host')}{url.path}?{base_q}"
                                       f"&$skiptoken={st.make_token(listing, offset + size)}")
        self.send_json(200, body, None, "memberof", page_no)
    # ---- delta queries
    def delta_listing(self, endpoint, url):
        """GET /users/delta and /groups/delta.  The first request names
        $select (and no token): a round over everything.  Its
        @odata.nextLink and @odata.deltaLink carry only an opaque
        $skiptoken / $deltatoken holding the $select, the version the
        round reads from and the one it reads at; a deltaLink starts the
        next round at that version.  Faults: "gone" (410 with a Location
        to start again), "badstate" (400 syncStateNotFound), "replay"
        (the round starts `back` versions early: changes come again),
        "hangup", and the usual errors (429 with Retry-After: throttling
        mid-round)."""
        st = self.st
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        listing = endpoint
        host = self.headers.get("Host")
        if "$deltatoken" in q or "$skiptoken" in q:
            if "$select" in q:
                raise GraphError(400, "Request_BadRequest", "$select is baked into the delta link.")
            d = self.delta_token(listing, q.get("$deltatoken") or q.get("$skiptoken"))
            if "$deltatoken" in q:  # a new round from where the last one ended
                d = {"s": d["s"], "f": d["a"], "a": None, "o": 0}
        else:
            sel = q.get("$select")
            d = {"s": sel, "f": None, "a": None, "o": 0}
        known = USER_PROPS if endpoint == "users_delta" else GROUP_PROPS + ["members"]
        props = self.select({"$select": d["s"]} if d["s"] else {}, known,
                            USER_DEFAULT if endpoint == "users_delta" else GROUP_DEFAULT)
        with st.lock:
            st.stats["select"][endpoint] = d["s"]
            if d["a"] is None:
                d["a"] = st.delta.ver  # the version this round reads at
            page_size = st.page_size or TOP_CAP
        page_no = d["o"] // page_size + 1
        f = st.fault_for(endpoint, page_no)
        if f and f["kind"] == "gone":
            fresh = f"https://{host}{url.path}?$select={urllib.parse.quote(d['s'] or '', safe=',')}"
            raise GraphError(410, "syncStateNotFound", "The sync state of the delta token is not found.",
                             {"Location": fresh})
        if f and f["kind"] == "badstate":
            raise GraphError(400, "syncStateNotFound", "Invalid or expired delta token.")
        if f and f["kind"] in ERRORS:
            status, code, msg = ERRORS[f["kind"]]
            hdr = {"Retry-After": f["retry_after"]} if "retry_after" in f else None
            self.send_graph_error(GraphError(status, code, msg, hdr), endpoint, page_no)
            return
        if f and f["kind"] == "hangup":
            self.fault(f, endpoint, page_no, None)
            return
        if f and f["kind"] == "replay" and d["f"] is not None:
            # the round starts earlier, and its later pages with it
            d["f"] = max(0, d["f"] - int(f.get("back", 1)))
        since = d["f"]
        with st.lock:
            items = (st.delta.user_items(since, props) if endpoint == "users_delta"
                     else st.delta.group_items(since, props))
        chunk = items[d["o"]:d["o"] + page_size]
        body = {"@odata.context": f"https://{host}/v1.0/$metadata#{endpoint[:-6]}({','.join(props)})",
                "value": chunk}
        base = f"https://{host}{url.path}"
        if f and f["kind"] == "empty":  # Graph sends empty pages mid-round
            chunk, body["value"] = [], []
            body["@odata.nextLink"] = f"{base}?$skiptoken={self.make_delta_token(listing, dict(d))}"
        elif d["o"] + page_size < len(items):
            nd = dict(d, o=d["o"] + page_size)
            body["@odata.nextLink"] = f"{base}?$skiptoken={self.make_delta_token(listing, nd)}"
        else:
            nd = {"s": d["s"], "f": None, "a": d["a"], "o": 0}
            body["@odata.deltaLink"] = f"{base}?$deltatoken={self.make_delta_token(listing, nd)}"
        self.send_json(200, body, None, endpoint, page_no)

    def make_delta_token(self, listing, d):
        raw = json.dumps(dict(d, l=listing, n=secrets.token_hex(4))).encode()
        mac = hmac.new(self.st.mac_key, raw, hashlib.sha256).digest()[:12]
        return b64url(mac + raw)

    def delta_token(self, listing, token):
        try:
            blob = b64url_decode(token)
            mac, raw = blob[:12], blob[12:]
            if not hmac.compare_digest(mac, hmac.new(self.st.mac_key, raw, hashlib.sha256).digest()[:12]):
                raise ValueError
            d = json.loads(raw)
            if d["l"] != listing:
                raise ValueError
            return d
        except Exception:
            raise GraphError(400, "syncStateNotFound", "Invalid or expired delta token.")

    # ---- faults
    def fault(self, f, endpoint, page, body):
        """Plays fault f; True when it answered the request."""
        k = f["kind"]
        ctype = "application/json;odata.metadata=minimal;charset=utf-8"
        if k in ERRORS:
            status, code, msg = ERRORS[k]
            hdr = {"Retry-After": f["retry_after"]} if "retry_after" in f else None
            if endpoint == "token":
                desc = {429: "AADSTS90055", 503: "AADSTS90033"}.get(status, "AADSTS90100")
                self.send_token_error(TokenError(status, "temporarily_unavailable" if status >= 429 else
                                                 "invalid_request", desc, msg))
            else:
                self.send_graph_error(GraphError(status, code, msg, hdr), endpoint, page)
            return True
        raw = json.dumps(body).encode()
        if k == "html":
            self.send_raw(200, b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in to your "
                               b"account</body></html>", "text/html; charset=utf-8", None, endpoint, page)
        elif k == "truncate":
            self.send_raw(200, raw[:len(raw) // 2], ctype, None, endpoint, page, compress=False)
        elif k == "novalue":
            body.pop("value", None)
            self.send_json(200, body, None, endpoint, page)
        elif k == "wrongtype":
            body["value"] = {"id": "1"}
            self.send_json(200, body, None, endpoint, page)
        elif k == "badid":
            if body.get("value"):
                body["value"][0]["id"] = 12345
            self.send_json(200, body, None, endpoint, page)
        elif k == "dupkeys":
            text = json.dumps(body)
            self.send_raw(200, ('{"value":[],' + text[1:]).encode(), ctype, None, endpoint, page)
        elif k == "huge":
            # chunked, so that only the client's running count can stop it
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.st.count(endpoint, page, 200)
            chunk = b" " * (1 << 20)
            try:
                self.wfile.write(b'%x\r\n{"value":[\r\n' % len(b'{"value":['))
                for _ in range(int(f.get("mib", 80))):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"2\r\n]}\r\n0\r\n\r\n")
            except OSError:
                pass  # the client hung up, as it should
            self.close_connection = True
        elif k == "deep":
            self.send_raw(200, b"[" * 100000 + b"]" * 100000, ctype, None, endpoint, page)
        elif k in ("reset", "drip"):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw[:len(raw) // 2])
            self.wfile.flush()
            self.st.count(endpoint, page, 200)
            if k == "drip":
                end = time.time() + float(f.get("seconds", 30))
                i = len(raw) // 2
                while time.time() < end and i < len(raw) - 1:
                    time.sleep(float(f.get("interval", 2)))
                    self.wfile.write(raw[i:i + 1])
                    self.wfile.flush()
                    i += 1
            self.close_connection = True
        elif k == "hangup":
            # the request read, the connection closed without a byte: a
            # kept connection the server dropped as the request went out
            self.st.count(endpoint, page, 0)
            self.close_connection = True
        elif k == "stall":
            self.st.count(endpoint, page, 0)
            time.sleep(float(f.get("seconds", 30)))
            self.close_connection = True
        else:
            return False
        return True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, state, ctx):
        self.state = state
        self.ctx = ctx
        super().__init__(addr, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        # headers and body go out in two writes: without TCP_NODELAY, Nagle
        # and the client's delayed ACK add 40 ms to every answer
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the handshake happens in the handler's thread: a client that
        # stalls in it must not block the accept loop
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        if self.state.args.verbose:
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--secret-file", help="the client secret the app registration holds")
    ap.add_argument("--client-cert", help="the certificate the app registration holds (PEM)")
    ap.add_argument("--expect-alg", choices=["PS256", "RS256"], help="refuse assertions of the other alg")
    ap.add_argument("--data", help="tenant JSON: {users: [...], groups: [{id, displayName, mail, members}]}")
    ap.add_argument("--gen-users", type=int, default=30)
    ap.add_argument("--gen-groups", type=int, default=3)
    ap.add_argument("--gen-nesting", action="store_true", help="every tenth group contains the one before")
    ap.add_argument("--page-size", type=int, default=0, help="page size below $top (0: no cut)")
    ap.add_argument("--token-lifetime", type=int, default=3600)
    ap.add_argument("--expires-in", type=int, default=None, help="what the token answer claims")
    ap.add_argument("--fault", action="append", default=[], help="a fault as JSON (see above)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv = Server(("127.0.0.1", args.port), State(args), ctx)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
