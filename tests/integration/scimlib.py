"""What the t_scim_*.py tests share: the harness on the path, a free
loopback port for the listener, and the bearer token file the connectors
read.  Not a test itself (ctest runs only t_*.py).  Import it after
setting sys.dont_write_bytecode, so no __pycache__ lands in the tree."""
import os
import socket
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from fakesystemd import main, poll_until  # noqa: E402,F401 (re-exported for the tests)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_token(env, token, name="token"):
    """Writes token to env.dir/name, mode 0600 as the daemon demands; returns the path."""
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(token)
    os.chmod(path, 0o600)
    return path
