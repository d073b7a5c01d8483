#!/usr/bin/python3
"""google.py - a local HTTPS fake of Google's OAuth token endpoint and of
the Admin SDK Directory API (users, groups, members), for idsyncd's tests.

Run with Debian's /usr/bin/python3 (it has `cryptography`):

  google.py --cert server.pem --key server.key --pubkey sa.pub \\
            --client-email sync@p.iam.gserviceaccount.com --key-id KID \\
            --subject admin@corp.example --port-file DIR/port \\
            (--data data.json | --gen-users N --gen-groups M) [options]

It behaves like the real services on every point idsyncd relies on:

  * POST /token: the jwt-bearer grant.  The assertion's RS256 signature is
    verified against the service account's public key, the header must say
    alg RS256, typ JWT and the key's kid, the claims iss (client_email), sub
    (the admin), scope (exactly the three read-only directory scopes), aud
    (this very URL), iat (not in the future) and exp (after now, at most an
    hour after iat).  Errors come as Google's OAuth errors
    ({"error":"invalid_grant","error_description":...}).  Tokens live
    --token-lifetime seconds (and at most --token-max-uses requests);
    an expired or unknown token gets Google's 401.
  * GET /admin/directory/v1/users | groups | groups/{key}/members: the
    customer (my_customer or the customer id) or domain parameter, opaque
    page tokens (HMAC'd, bound to their listing, never reusable elsewhere),
    maxResults capped (users 500, groups 200, members 200) and further cut to
    the --page-* sizes so that tests get many pages, `fields` honoured (the
    partial-response syntax: a,b/c,list(x,y/z)) with unknown user fields
    refused as Google does, projection basic/full/custom (customSchemas only
    with full or custom), includeDerivedMembership expanding nested groups
    (cycles end) while still listing the GROUP entry, else direct members.
  * GET /admin/directory/v1/users/{userKey} (id, primary e-mail or alias;
    404 notFound for nobody) and groups?userKey=KEY (the groups KEY, a
    user's or a group's id or e-mail, is a direct member of; a 400 with
    customer or domain, as Google): a targeted read's requests, endpoints
    "user" and "usergroups" in the stats and faults.
  * Errors in Google's shape {"error":{"code","message","errors":[{"reason"}],
    "status"}}.

Faults (--fault JSON, repeatable, or POST /_control {"faults": [...]}):
  {"endpoint": "users"|"groups"|"members"|"token"|"any", "page": N (1-based,
   optional), "group": KEY (members only, optional), "times": N (default 1,
   -1 = always), "kind": K, "retry_after": "S" (optional), "seconds": S}
  kinds: rate403 userrate403 quota403 429 500 503 403 404 400 401 (Google's
  errors), html (200 text/html), truncate (a cut JSON body, consistent
  length), reset (full Content-Length, half the body, then close), stall
  (headers and half the body, then `seconds` of silence), delay (`seconds`
  before a normal answer), repeat_token (the page's nextPageToken is the
  token of the request), empty (no items, a next token to the same place:
  Google does that), wrongtype ("users" an object).

Control: GET /_stats (request counters, the parameters seen, the last
assertion's header and claims, the tokens issued: tests look for them in
idsyncd's output), POST /_control {"faults", "clear_faults", "reset_stats",
"data_file", "token_lifetime", "token_max_uses", "revoke_tokens", "page",
"expires_claim"}.  expires_claim: what the token answer says in expires_in
(an integer, null for JSON null, "omit" for no expires_in at all), while the
token really lives token_lifetime; absent: the truth.
Writes its port to --port-file once it listens.
"""
import argparse
import base64
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

SCOPES = {
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
}
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CAP = {"users": 500, "groups": 200, "members": 200}
DEFAULT_MAX = {"users": 100, "groups": 200, "members": 200}
API = "/admin/directory/v1/"

# Fields of the user resource (Directory API reference): a selector naming
# anything else is "Invalid field selection", as on the real API.
USER_FIELDS = {
    "kind", "id", "etag", "primaryEmail", "name", "isAdmin", "isDelegatedAdmin", "lastLoginTime",
    "creationTime", "deletionTime", "agreedToTerms", "suspended", "suspensionReason", "archived",
    "changePasswordAtNextLogin", "ipWhitelisted", "emails", "externalIds", "relations", "organizations",
    "phones", "aliases", "nonEditableAliases", "customerId", "orgUnitPath", "isMailboxSetup",
    "isEnrolledIn2Sv", "isEnforcedIn2Sv", "includeInGlobalAddressList", "thumbnailPhotoUrl",
    "thumbnailPhotoEtag", "addresses", "languages", "locations", "keywords", "gender", "posixAccounts",
    "sshPublicKeys", "websites", "notes", "recoveryEmail", "recoveryPhone", "customSchemas",
}
GROUP_FIELDS = {"kind", "id", "etag", "email", "name", "directMembersCount", "description", "adminCreated",
                "aliases", "nonEditableAliases"}
MEMBER_FIELDS = {"kind", "id", "etag", "email", "role", "type", "status", "delivery_settings"}
LIST_FIELDS = {"kind", "etag", "nextPageToken", "trigger_event"}


class ApiError(Exception):
    def __init__(self, code, message, reason, status=None, headers=None):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason
        self.status = status or {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                                 503: "UNAVAILABLE"}.get(code, "UNKNOWN")
        self.headers = headers or {}

    def body(self):
        domain = "usageLimits" if "Limit" in self.reason or self.reason == "quotaExceeded" else "global"
        return {"error": {"code": self.code, "message": self.message,
                          "errors": [{"message": self.message, "domain": domain, "reason": self.reason}],
                          "status": self.status}}


class OAuthError(Exception):
    def __init__(self, code, error, description):
        super().__init__(description)
        self.code, self.error, self.description = code, error, description


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---------------------------------------------------------------- fields

def parse_fields(s):
    """The partial-response selector as a tree {name: subtree | None}."""
    pos = 0

    def name():
        nonlocal pos
        start = pos
        while pos < len(s) and s[pos] not in ",()/":
            pos += 1
        if pos == start:
            raise ValueError(f"Invalid field selection {s}")
        return s[start:pos]

    def item(tree):
        nonlocal pos
        path = [name()]
        while pos < len(s) and s[pos] == "/":
            pos += 1
            path.append(name())
        sub = None
        if pos < len(s) and s[pos] == "(":
            pos += 1
            sub = lst()
            if pos >= len(s) or s[pos] != ")":
                raise ValueError(f"Invalid field selection {s}")
            pos += 1
        node = tree
        for p in path[:-1]:
            if p in node and node[p] is None:
                return  # the whole of it is selected already
            node = node.setdefault(p, {})
        last = path[-1]
        if sub is None or node.get(last, {}) is None:
            node[last] = None
        else:
            node.setdefault(last, {}).update(sub)

    def lst():
        nonlocal pos
        tree = {}
        item(tree)
        while pos < len(s) and s[pos] == ",":
            pos += 1
            item(tree)
        return tree

    tree = lst()
    if pos != len(s):
        raise ValueError(f"Invalid field selection {s}")
    return tree


def select(value, tree):
    if tree is None:
        return value
    if isinstance(value, list):
        return [select(v, tree) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, sub in tree.items():
            if k in value:
                out[k] = select(value[k], sub)
        return out
    return value


def check_fields(tree, listkey, known):
    """Unknown names in the resource's selector are a 400, as on Google."""
    for k, sub in tree.items():
        if k == listkey:
            for f in (sub or {}):
                if f not in known:
                    raise ApiError(400, f"Invalid field selection {f}", "invalidParameter")
        elif k not in LIST_FIELDS:
            raise ApiError(400, f"Invalid field selection {k}", "invalidParameter")


# ---------------------------------------------------------------- data

def generate(n_users, n_groups, domain="corp.example"):
    """A deterministic directory: every user in one group (i % n_groups),
    every tenth group nesting the one before it."""
    depts = ["Support", "Sales", "Operations"]
    users = []
    for i in range(n_users):
        u = {
            "kind": "admin#directory#user",
            "id": str(100000000000000000000 + i),
            "primaryEmail": f"user{i:05d}@{domain}",
            "name": {"givenName": "User", "familyName": f"N{i:05d}", "fullName": f"User N{i:05d}"},
            "isAdmin": False,
            "suspended": i % 97 == 1,
            "archived": i % 89 == 2,
            "orgUnitPath": "/Support/CZ" if i % 3 == 0 else "/Sales",
            "organizations": [{"department": depts[i % 3], "primary": True}],
            "customSchemas": {"Contact_Center": {"tenant": f"t{i % 5}"}},
            "emails": [{"address": f"user{i:05d}@{domain}", "primary": True}],
        }
        users.append(u)
    groups = []
    for j in range(n_groups):
        members = [{"kind": "admin#directory#member", "id": users[i]["id"], "email": users[i]["primaryEmail"],
                    "role": "MEMBER", "type": "USER", "status": "ACTIVE"}
                   for i in range(j, n_users, n_groups)]
        if j > 0 and j % 10 == 0:
            members.append({"kind": "admin#directory#member", "id": f"0grp{j - 1:05d}",
                            "email": f"group{j - 1:03d}@{domain}", "role": "MEMBER", "type": "GROUP",
                            "status": "ACTIVE"})
        groups.append({"kind": "admin#directory#group", "id": f"0grp{j:05d}", "email": f"group{j:03d}@{domain}",
                       "name": f"CC-Group-{j:03d}", "members": members})
    return {"customer_id": "C01abcdef", "domain": domain, "users": users, "groups": groups}


def normalise(data):
    """Fills in what a test's hand-written data leaves out."""
    data.setdefault("customer_id", "C01abcdef")
    data.setdefault("domain", "corp.example")
    for u in data.setdefault("users", []):
        u.setdefault("kind", "admin#directory#user")
        u.setdefault("suspended", False)
        u.setdefault("archived", False)
    for g in data.setdefault("groups", []):
        g.setdefault("kind", "admin#directory#group")
        for m in g.setdefault("members", []):
            m.setdefault("kind", "admin#directory#member")
            m.setdefault("role", "MEMBER")
            m.setdefault("status", "ACTIVE")
            m.setdefault("type", "USER")
    return data


# ---------------------------------------------------------------- state

class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        with open(args.pubkey, "rb") as f:
            self.pubkey = serialization.load_pem_public_key(f.read())
        self.secret = secrets.token_bytes(32)
        self.tokens = {}
        self.token_lifetime = args.token_lifetime
        self.expires_claim = "truth"
        self.token_max_uses = args.token_max_uses
        self.faults = [json.loads(f) for f in args.fault]
        self.page = {"users": args.page_users, "groups": args.page_groups, "members": args.page_members}
        if args.data:
            self.load(args.data)
        else:
            self.data = generate(args.gen_users, args.gen_groups)
        self.reset_stats()

    def load(self, path):
        with open(path) as f:
            self.data = normalise(json.load(f))

    def reset_stats(self):
        self.stats = {"requests": 0, "by_endpoint": {}, "status": {}, "tokens_issued": 0, "token_errors": [],
                      "unauthorized": 0, "faults_fired": 0, "issued": [], "max_results": {}, "fields": {},
                      "projection": {}, "derived": {}, "customer": {}, "last_header": None, "last_claims": None,
                      "user_agent": None, "t_first": None, "t_last": None}

    def count(self, endpoint, status):
        with self.lock:
            s = self.stats
            s["requests"] += 1
            s["by_endpoint"][endpoint] = s["by_endpoint"].get(endpoint, 0) + 1
            s["status"][str(status)] = s["status"].get(str(status), 0) + 1
            now = time.time()
            s["t_first"] = s["t_first"] or now
            s["t_last"] = now

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

    # opaque page tokens: listing and offset, a nonce, and an HMAC
    def make_token(self, listing, offset):
        raw = json.dumps({"l": listing, "o": offset, "n": secrets.token_hex(4)}).encode()
        mac = hmac.new(self.secret, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def read_token(self, listing, token):
        try:
            blob = b64url_decode(token)
            mac, raw = blob[:12], blob[12:]
            if not hmac.compare_digest(mac, hmac.new(self.secret, raw, hashlib.sha256).digest()[:12]):
                raise ValueError
            d = json.loads(raw)
            if d["l"] != listing:
                raise ValueError
            return int(d["o"])
        except Exception:
            raise ApiError(400, "Invalid Input: pageToken", "invalid")


# ---------------------------------------------------------------- handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""
    timeout = 60

    def log_message(self, fmt, *args):
        if self.server.state.args.verbose:
            sys.stderr.write("google.py: " + (fmt % args) + "\n")

    def setup(self):
        # the TLS handshake, here in the connection's own thread, bounded
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    @property
    def st(self):
        return self.server.state

    # ---- sending
    def send_json(self, code, obj, headers=None, endpoint=None):
        body = json.dumps(obj).encode()
        self.send_raw(code, body, "application/json; charset=UTF-8", headers, endpoint)

    def send_raw(self, code, body, ctype, headers=None, endpoint=None, declared=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        self.send_header("x-goog-request-id", secrets.token_hex(6))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if endpoint:
            self.st.count(endpoint, code)

    def send_api_error(self, e, endpoint):
        self.send_json(e.code, e.body(), e.headers, endpoint)

    # ---- routing
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        q = {k: v[-1] for k, v in q.items()}
        if url.path == "/_stats":
            with self.st.lock:
                body = json.dumps(self.st.stats).encode()
            self.send_raw(200, body, "application/json")
            return
        if not url.path.startswith(API):
            self.send_api_error(ApiError(404, "Not Found", "notFound"), "other")
            return
        rest = url.path[len(API):].split("/")
        if self.targeted(rest, q):
            return
        if rest == ["users"]:
            endpoint, group = "users", None
        elif rest == ["groups"]:
            endpoint, group = "groups", None
        elif len(rest) == 3 and rest[0] == "groups" and rest[2] == "members":
            endpoint, group = "members", urllib.parse.unquote(rest[1])
        else:
            self.send_api_error(ApiError(404, "Not Found", "notFound"), "other")
            return
        with self.st.lock:
            self.st.stats["user_agent"] = self.headers.get("User-Agent")
        try:
            self.authorize()
            self.listing(endpoint, group, q)
        except ApiError as e:
            if e.code == 401:
                with self.st.lock:
                    self.st.stats["unauthorized"] += 1
            self.send_api_error(e, endpoint)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_control":
            self.control(json.loads(body or b"{}"))
            return
        if url.path != "/token":
            self.send_api_error(ApiError(404, "Not Found", "notFound"), "other")
            return
        try:
            f = self.st.fault_for("token", None)
            if f and self.fault(f, "token", None):
                return
            tok = self.token(body)
            self.send_json(200, tok, {"Cache-Control": "no-cache, no-store"}, "token")
        except OAuthError as e:
            with self.st.lock:
                self.st.stats["token_errors"].append(e.description)
            self.send_json(e.code, {"error": e.error, "error_description": e.description}, None, "token")

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
            if "expires_claim" in c:
                st.expires_claim = c["expires_claim"]
            if "token_max_uses" in c:
                st.token_max_uses = int(c["token_max_uses"])
            if c.get("revoke_tokens"):
                st.tokens.clear()
            if "page" in c:
                st.page.update(c["page"])
        if "data_file" in c:
            with st.lock:
                st.load(c["data_file"])
        self.send_raw(200, b"{}", "application/json")

    # ---- OAuth
    def token(self, body):
        st = self.st
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            raise OAuthError(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        form = urllib.parse.parse_qs(body.decode("ascii", "replace"), keep_blank_values=True)
        if form.get("grant_type", [""])[-1] != GRANT:
            raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", [""])[-1])
        jwt = form.get("assertion", [""])[-1]
        parts = jwt.split(".")
        if len(parts) != 3:
            raise OAuthError(400, "invalid_grant", "Invalid JWT: not three parts")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except Exception:
            raise OAuthError(400, "invalid_grant", "Invalid JWT: cannot decode")
        with st.lock:
            st.stats["last_header"], st.stats["last_claims"] = header, claims
        if header.get("alg") != "RS256" or header.get("typ") != "JWT":
            raise OAuthError(400, "invalid_grant", "Invalid JWT: header must be alg RS256, typ JWT")
        if header.get("kid") != st.args.key_id:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            st.pubkey.verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or iat > now + 60 or exp <= now or exp - iat > 3600:
            raise OAuthError(400, "invalid_grant",
                             "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                             "timeframe. Check your iat and exp values in the JWT claim.")
        if claims.get("iss") != st.args.client_email:
            raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
        aud = f"https://{self.headers.get('Host')}{urllib.parse.urlsplit(self.path).path}"
        if claims.get("aud") != aud:
            raise OAuthError(400, "invalid_grant", f"Invalid JWT: aud must be {aud}")
        if claims.get("sub") != st.args.subject:
            raise OAuthError(400, "invalid_grant", "Invalid email or User ID")
        scope = claims.get("scope")
        if not isinstance(scope, str) or set(scope.split(" ")) != SCOPES or len(scope.split(" ")) != 3:
            raise OAuthError(401, "unauthorized_client",
                             "Client is unauthorized to retrieve access tokens using this method, or client not "
                             "authorized for any of the scopes requested.")
        tok = "ya29.fake-" + secrets.token_urlsafe(32)
        with st.lock:
            st.tokens[tok] = {"exp": now + st.token_lifetime, "uses": 0, "max": st.token_max_uses}
            st.stats["tokens_issued"] += 1
            st.stats["issued"].append(tok)
        answer = {"access_token": tok, "expires_in": st.token_lifetime, "token_type": "Bearer"}
        if st.expires_claim == "omit":
            del answer["expires_in"]
        elif st.expires_claim != "truth":
            answer["expires_in"] = st.expires_claim
        return answer

    def authorize(self):
        auth = self.headers.get("Authorization") or ""
        tok = auth[7:] if auth.startswith("Bearer ") else None
        with self.st.lock:
            t = self.st.tokens.get(tok)
            ok = t is not None and time.time() < t["exp"] and (not t["max"] or t["uses"] < t["max"])
            if t is not None:
                t["uses"] += 1
        if not ok:
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential.", "authError")

    # ---- the Directory API
    def listing(self, endpoint, group, q):
        st = self.st
        data = st.data
        with st.lock:
            st.stats["max_results"][endpoint] = q.get("maxResults")
            st.stats["fields"][endpoint] = q.get("fields")
            st.stats["projection"][endpoint] = q.get("projection")
            if endpoint == "members":
                d = q.get("includeDerivedMembership")
                st.stats["derived"][str(d)] = st.stats["derived"].get(str(d), 0) + 1
            else:
                st.stats["customer"][endpoint] = q.get("customer") or ("domain=" + q.get("domain", ""))
        # scope of the listing: the customer or the domain
        if endpoint in ("users", "groups"):
            cust, dom = q.get("customer"), q.get("domain")
            if cust is not None and cust not in ("my_customer", data["customer_id"]):
                raise ApiError(404, "Resource Not Found: customer", "notFound")
            if cust is None and dom != data["domain"]:
                raise ApiError(400, "Bad Request" if dom is None else "Domain not found.",
                               "badRequest" if dom is None else "notFound")
        try:
            max_results = int(q.get("maxResults", DEFAULT_MAX[endpoint]))
        except ValueError:
            raise ApiError(400, "Invalid value for: maxResults", "invalid")
        if max_results < 1:
            raise ApiError(400, "Invalid value for: maxResults", "invalid")
        size = min(max_results, CAP[endpoint], st.page[endpoint] or CAP[endpoint])

        if endpoint == "users":
            items = self.users(q)
            known = USER_FIELDS
        elif endpoint == "groups":
            items = [{k: v for k, v in g.items() if k != "members"} for g in data["groups"]]
            known = GROUP_FIELDS
        else:
            items = self.members(group, q.get("includeDerivedMembership") == "true")
            known = MEMBER_FIELDS
        listing = endpoint if endpoint != "members" else f"members:{group}"
        token = q.get("pageToken") or None
        offset = st.read_token(listing, token) if token else 0
        page_no = offset // size + 1
        tree = None
        if q.get("fields"):
            try:
                tree = parse_fields(q["fields"])
            except ValueError as e:
                raise ApiError(400, str(e), "invalidParameter")
            check_fields(tree, endpoint, known)

        f = st.fault_for(endpoint, page_no, group)
        if f and f["kind"] == "delay":
            time.sleep(float(f.get("seconds", 1)))
            f = None
        chunk = items[offset:offset + size]
        nxt = st.make_token(listing, offset + size) if offset + size < len(items) else None
        if f and f["kind"] == "empty":
            chunk, nxt = [], st.make_token(listing, offset)
            f = None
        if f and f["kind"] == "repeat_token":
            nxt, f = token or st.make_token(listing, 0), None
        body = {"kind": f"admin#directory#{endpoint}", "etag": '"x"'}
        if chunk:
            body[endpoint] = chunk  # Google leaves an empty list out
        if nxt:
            body["nextPageToken"] = nxt
        if f and f["kind"] == "wrongtype":
            body[endpoint], f = {"id": "1"}, None
        if tree is not None:
            body = select(body, tree)
        if f and self.fault(f, endpoint, body):
            return
        self.send_json(200, body, None, endpoint)

    def users(self, q):
        proj = q.get("projection", "basic")
        if proj not in ("basic", "full", "custom"):
            raise ApiError(400, "Invalid value for: projection", "invalid")
        mask = set((q.get("customFieldMask") or "").split(",")) if proj == "custom" else None
        if proj == "custom" and not q.get("customFieldMask"):
            raise ApiError(400, "Custom field mask required with projection custom", "invalid")
        out = []
        for u in self.st.data["users"]:
            u = dict(u)
            cs = u.pop("customSchemas", None)
            if cs is not None and proj != "basic":
                cs = {k: v for k, v in cs.items() if mask is None or k in mask}
                if cs:
                    u["customSchemas"] = cs
            out.append(u)
        return out

    def members(self, key, derived):
        groups = self.st.data["groups"]
        by_key = {}
        for g in groups:
            by_key[g["id"]] = g
            by_key[g["email"].lower()] = g
        g = by_key.get(key) or by_key.get(key.lower())
        if not g:
            raise ApiError(404, "Resource Not Found: groupKey", "notFound")
        if not derived:
            return list(g["members"])
        out, seen_users, seen_groups = [], set(), {g["id"]}

        def expand(grp):
            for m in grp["members"]:
                if m["type"] == "GROUP":
                    if grp is g:
                        out.append(m)  # the nested group's own entry is listed too
                    inner = by_key.get(m["id"])
                    if inner and inner["id"] not in seen_groups:
                        seen_groups.add(inner["id"])
                        expand(inner)
                elif m["id"] not in seen_users:
                    seen_users.add(m["id"])
                    out.append(m)

        expand(g)
        return out

    # ---- one user: users.get and groups.list?userKey=
    def targeted(self, rest, q):
        """Answers users/{userKey} ("user" in stats and faults) and
        groups?userKey= ("usergroups"); False for any other request."""
        if len(rest) == 2 and rest[0] == "users":
            endpoint = "user"
        elif rest == ["groups"] and "userKey" in q:
            endpoint = "usergroups"
        else:
            return False
        try:
            self.authorize()
            f = self.st.fault_for(endpoint, None)
            if f and f["kind"] == "delay":
                time.sleep(float(f.get("seconds", 1)))
            elif f and self.fault(f, endpoint, None):
                return True
            if endpoint == "user":
                self.get_user(urllib.parse.unquote(rest[1]), q)
            else:
                self.user_groups(q)
        except ApiError as e:
            if e.code == 401:
                with self.st.lock:
                    self.st.stats["unauthorized"] += 1
            self.send_api_error(e, endpoint)
        return True

    def get_user(self, key, q):
        """By id, primary e-mail or alias (case-insensitively for the
        addresses), as Google's userKey."""
        for u in self.users(q):
            keys = [u["primaryEmail"].lower()] + [a.lower() for a in u.get("aliases", [])]
            if key == u["id"] or key.lower() in keys:
                self.send_json(200, u, None, "user")
                return
        raise ApiError(404, "Resource Not Found: userKey", "notFound")

    def user_groups(self, q):
        """The groups userKey (a user's id or e-mail, or a group's e-mail or
        id) is a DIRECT member of, as Google answers; paged like groups."""
        if q.get("customer") or q.get("domain"):
            raise ApiError(400, "Bad Request", "badRequest")  # userKey goes alone
        key = q["userKey"]
        with self.st.lock:
            self.st.stats.setdefault("user_keys", []).append(key)
        hits = [{k: v for k, v in g.items() if k != "members"} for g in self.st.data["groups"]
                if any(key == m["id"] or key.lower() == (m.get("email") or "").lower() for m in g["members"])]
        size = min(int(q.get("maxResults", DEFAULT_MAX["groups"])), CAP["groups"],
                   self.st.page["groups"] or CAP["groups"])
        listing = f"usergroups:{key}"
        offset = self.st.read_token(listing, q["pageToken"]) if q.get("pageToken") else 0
        body = {"kind": "admin#directory#groups", "etag": '"x"'}
        if hits[offset:offset + size]:
            body["groups"] = hits[offset:offset + size]
        if offset + size < len(hits):
            body["nextPageToken"] = self.st.make_token(listing, offset + size)
        if q.get("fields"):
            body = select(body, parse_fields(q["fields"]))
        self.send_json(200, body, None, "usergroups")

    # ---- faults
    def fault(self, f, endpoint, body):
        """Plays fault f; True when it answered the request."""
        k = f["kind"]
        ra = {"Retry-After": f["retry_after"]} if "retry_after" in f else None
        errors = {
            "rate403": ApiError(403, "Rate Limit Exceeded", "rateLimitExceeded", headers=ra),
            "userrate403": ApiError(403, "User Rate Limit Exceeded", "userRateLimitExceeded", headers=ra),
            "quota403": ApiError(403, "Quota Exceeded", "quotaExceeded", headers=ra),
            "429": ApiError(429, "Too Many Requests", "rateLimitExceeded", headers=ra),
            "500": ApiError(500, "Backend Error", "backendError", headers=ra),
            "503": ApiError(503, "The service is currently unavailable.", "backendError", headers=ra),
            "403": ApiError(403, "Not Authorized to access this resource/api", "forbidden"),
            "404": ApiError(404, "Resource Not Found: groupKey", "notFound"),
            "400": ApiError(400, "Invalid Input", "invalid"),
            "401": ApiError(401, "Request had invalid authentication credentials.", "authError"),
        }
        if k in errors:
            if k == "401":
                with self.st.lock:
                    self.st.stats["unauthorized"] += 1
            self.send_api_error(errors[k], endpoint)
            return True
        raw = json.dumps(body if body is not None else {"access_token": "x", "expires_in": 3600}).encode()
        if k == "html":
            self.send_raw(200, b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>",
                          "text/html; charset=UTF-8", None, endpoint)
        elif k == "truncate":
            self.send_raw(200, raw[:len(raw) // 2], "application/json; charset=UTF-8", None, endpoint)
        elif k in ("reset", "stall"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw[:len(raw) // 2])
            self.wfile.flush()
            self.st.count(endpoint, 200)
            if k == "stall":
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
        # no Nagle: headers and body are two writes, and Nagle + delayed
        # ACK would add 40 ms to every answer
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
    ap.add_argument("--pubkey", required=True, help="the service account's public key (PEM)")
    ap.add_argument("--key-id", required=True, help="its private_key_id (the JWT kid)")
    ap.add_argument("--client-email", required=True)
    ap.add_argument("--subject", required=True, help="the admin that may be impersonated")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--data", help="directory JSON: {customer_id, domain, users: [...], groups: [...]}")
    ap.add_argument("--gen-users", type=int, default=30)
    ap.add_argument("--gen-groups", type=int, default=3)
    ap.add_argument("--page-users", type=int, default=0, help="page size below maxResults (0: no cut)")
    ap.add_argument("--page-groups", type=int, default=0)
    ap.add_argument("--page-members", type=int, default=0)
    ap.add_argument("--token-lifetime", type=int, default=3600)
    ap.add_argument("--token-max-uses", type=int, default=0, help="requests per token (0: unlimited)")
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
