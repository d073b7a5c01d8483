#!/usr/bin/env python3
"""The SCIM listener's transports (issue 16): HTTPS with the certificate
and key of the scim: block (a client verifying against the test CA gets
its answers; TLS 1.1 is refused while TLS 1.2 on the same client settings
works — the positive control; plaintext to the TLS port gets no answer),
and a unix socket (mode 0660, plaintext allowed, same endpoints)."""
import http.client
import json
import os
import socket
import ssl
import stat
import subprocess
import sys

sys.dont_write_bytecode = True  # before scimlib: no __pycache__ in the source tree
from scimlib import free_port, main, write_token  # noqa: E402

TOKEN = "tok-transport-0a1b2c"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def get(h, path="/scim/v2/okta/Users"):
    h.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    r = h.getresponse()
    body = r.read()
    h.close()
    return r.status, json.loads(body) if body else None


def tls_ctx(ca, max_version):
    ctx = ssl.create_default_context(cafile=ca)
    # the client would refuse TLS 1.1 by itself at OpenSSL's default
    # security level: lowered, so that a refusal is the server's
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = max_version
    return ctx


def body(env, c):
    certs = os.path.join(env.dir, "certs")
    subprocess.run(["bash", os.path.join(env.src, "tests", "harness", "mkcert.sh"), certs], check=True,
                   capture_output=True)
    tok = write_token(env, TOKEN, "okta.token")
    conn = f"  - name: okta\n    type: scim\n    company: acme\n    token_file: {tok}\n"

    # ---- HTTPS
    port = free_port()
    cfg = env.write_config(connectors=[conn], raw_extra=(
        f"scim:\n  listen: \"127.0.0.1:{port}\"\n"
        f"  tls_cert_file: {certs}/server.crt\n  tls_key_file: {certs}/server.key\n"))
    d = env.daemon(config=cfg, label="https").start()
    d.wait_field("READY", "1", 20)
    ca = os.path.join(certs, "ca.crt")
    st, b = get(http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                            context=tls_ctx(ca, ssl.TLSVersion.TLSv1_2)))
    c.eq((200, 0), (st, b["totalResults"]), "HTTPS with TLS 1.2, verified against the test CA: 200")
    st, b = get(http.client.HTTPSConnection("localhost", port, timeout=10,
                                            context=ssl.create_default_context(cafile=ca)))
    c.eq(200, st, "HTTPS with the client's defaults (TLS 1.3): 200")
    try:
        get(http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                        context=tls_ctx(ca, ssl.TLSVersion.TLSv1_1)))
        c.bad("a TLS 1.1 client was served")
    except (ssl.SSLError, ConnectionError) as e:
        c.ok(f"TLS 1.1 refused: {e}")
    try:
        st, _ = get(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
        c.true(st != 200, f"plaintext to the TLS port: no answer ({st})")
    except (http.client.HTTPException, ConnectionError, socket.timeout) as e:
        c.ok(f"plaintext to the TLS port: no answer ({type(e).__name__})")
    c.hasnt("PRIVATE KEY", d.stderr_text(), "the key is not logged")
    d.close()

    # ---- a unix socket: plaintext allowed, group may connect
    sock = os.path.join(env.dir, "scim.sock")
    cfg = env.write_config(connectors=[conn], raw_extra=f"scim:\n  listen: {sock}\n")
    d = env.daemon(config=cfg, label="unix").start()
    d.wait_field("READY", "1", 20)
    c.eq(0o660, stat.S_IMODE(os.stat(sock).st_mode), "the socket is mode 0660")
    st, b = get(UnixHTTPConnection(sock))
    c.eq((200, 0), (st, b["totalResults"]), "GET over the unix socket: 200")
    st, _ = get(UnixHTTPConnection(sock), "/scim/v2/okta/ServiceProviderConfig")
    c.eq(200, st, "ServiceProviderConfig over the unix socket: 200")


if __name__ == "__main__":
    main("scim_transport", body, ldap=False)
