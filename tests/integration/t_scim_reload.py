#!/usr/bin/env python3
"""The SCIM listener across SIGHUP (issue 16: "tls_key_file: reloaded on
SIGHUP"): the files are replaced by a certificate of another CA and the
daemon reloaded; new connections get the new certificate, a request that
was half sent before the reload and a keep-alive connection opened before
it are served to the end (the listener was not restarted); then a key that
is not the certificate's is refused on the next reload with a clear error
and the previous certificate stays in service."""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-reload-5e6f"
HDR = {"Authorization": f"Bearer {TOKEN}"}


def mkcerts(env, name):
    d = os.path.join(env.dir, name)
    subprocess.run(["bash", os.path.join(env.src, "tests", "harness", "mkcert.sh"), d], check=True,
                   capture_output=True)
    return d


def install(src, live):
    for f in ("server.crt", "server.key"):
        shutil.copyfile(os.path.join(src, f), os.path.join(live, f) + ".new")
        os.chmod(os.path.join(live, f) + ".new", 0o600)
        os.replace(os.path.join(live, f) + ".new", os.path.join(live, f))


def peer_sha(port, ca):
    """The SHA-256 of the certificate a new connection is served, verified against ca."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def der_sha(crt):
    with open(crt) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def get(h):
    h.request("GET", "/scim/v2/okta/Users", headers=HDR)
    r = h.getresponse()
    r.read()
    return r.status


def body(env, c):
    a, b = mkcerts(env, "certs-a"), mkcerts(env, "certs-b")
    live = os.path.join(env.dir, "live")
    os.mkdir(live)
    install(a, live)
    tok = write_token(env, TOKEN, "okta.token")
    port = free_port()
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n"
    cfg = env.write_config(connectors=[conn], raw_extra=(
        f"scim:\n  listen: \"127.0.0.1:{port}\"\n"
        f"  tls_cert_file: {live}/server.crt\n  tls_key_file: {live}/server.key\n"))
    d = env.daemon(config=cfg, label="reload").start()
    d.wait_field("READY", "1", 20)
    c.eq(der_sha(f"{a}/server.crt"), peer_sha(port, f"{a}/ca.crt"), "before the reload: certificate A")

    # a keep-alive connection, and a POST whose body is half sent
    keep = http.client.HTTPSConnection("localhost", port, timeout=10,
                                       context=ssl.create_default_context(cafile=f"{a}/ca.crt"))
    c.eq(200, get(keep), "keep-alive connection: first request")
    doc = json.dumps({"userName": "inflight@acme.example", "active": True}).encode()
    ctx = ssl.create_default_context(cafile=f"{a}/ca.crt")
    half = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    half.sendall(b"POST /scim/v2/okta/Users HTTP/1.1\r\nHost: localhost\r\n"
                 b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Type: application/scim+json\r\n"
                 b"Content-Length: " + str(len(doc)).encode() + b"\r\n\r\n" + doc[:10])

    install(b, live)
    mark = d.line_mark()
    d.signal(signal.SIGHUP)
    d.wait_line(r"configuration reloaded", 20, since=mark)
    c.eq(der_sha(f"{b}/server.crt"), peer_sha(port, f"{b}/ca.crt"), "after the reload: certificate B")
    try:
        peer_sha(port, f"{a}/ca.crt")
        c.bad("a new connection was still served certificate A")
    except ssl.SSLCertVerificationError:
        c.ok("a new connection no longer verifies against CA A")

    half.sendall(doc[10:])
    resp = http.client.HTTPResponse(half)
    resp.begin()
    c.eq(201, resp.status, "the POST half sent before the reload is answered after it")
    half.close()
    c.eq(200, get(keep), "the keep-alive connection opened before the reload still serves")
    keep.close()

    # a key that is not the certificate's: refused, B stays
    shutil.copyfile(f"{a}/server.key", f"{live}/server.key")
    mark = d.line_mark()
    d.signal(signal.SIGHUP)
    _, line = d.wait_line(r"scim: reload: the new key and certificate are refused", 20, since=mark)
    c.has("is not the key of", line, "the error says the key does not match the certificate")
    c.has(f"{live}/server.key", line, "and names the file")
    d.wait_line(r"configuration reloaded", 20, since=mark)
    c.eq(der_sha(f"{b}/server.crt"), peer_sha(port, f"{b}/ca.crt"), "after the refused reload: still B")
    c.hasnt("PRIVATE KEY", d.stderr_text(), "no key in the log")


if __name__ == "__main__":
    main("scim_reload", body, ldap=False)
