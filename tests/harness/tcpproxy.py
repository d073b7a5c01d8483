#!/usr/bin/python3
"""tcpproxy.py — a fault-injecting TCP proxy for the fault tests.

    tcpproxy.py --target HOST:PORT --port-file FILE --mode-file FILE [--log FILE]
                [--dump-up FILE]

Listens on 127.0.0.1 (a free port, written to --port-file once it listens)
and relays every connection to --target, byte for byte: TLS and StartTLS
pass through untouched (the certificate still names 127.0.0.1), so the
client verifies the real server.  What happens to a connection is decided
when it is accepted, by the first line of --mode-file (re-read for every
connection, so a test switches modes between runs without restarting):

    pass            relay everything (the default; also when the file is missing)
    cut N           after N bytes from the server, close both sides (FIN)
    reset N         after N bytes from the server, reset the client (RST)
    stall N         after N bytes from the server, relay nothing more in
                    either direction and keep both sockets open forever
    stallapp K      like stall, but from where the client's K-th TLS
                    application-data record begins (after a StartTLS
                    request, which is skipped): stallapp 1 lets the whole
                    TLS handshake through as far as the client sees it and
                    holds its first protected message — the bind
    refuse          accept, then close at once
    slow MS         relay everything, but hold each piece from the server
                    back MS milliseconds (a slow directory: a run that
                    takes a while, for faults to hit in its middle)

A trailing "once" ("cut 4000 once") applies the fault to the next
connection only; the file then reads "pass" again.  N counts only the
server-to-client direction, where the search results flow.

--dump-up FILE appends every byte the clients send (what an eavesdropper
on the wire would see: a test looks for a password in it).

--log gets one line per connection: its number, the mode, the bytes each
way and how it ended; "bytes_down=..." of a clean run tells a test how
large a whole pull is, so that it can cut in the middle of it.

No dependencies beyond the standard library (Debian's /usr/bin/python3).
"""
import argparse
import os
import socket
import struct
import sys
import threading
import time

BUF = 16384


class Log:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.path = path

    def write(self, line):
        with self.lock:
            if self.path:
                with open(self.path, "a") as f:
                    f.write(line + "\n")
            else:
                print(line, file=sys.stderr, flush=True)


def read_mode(path):
    """(mode, n, once) from the mode file; pass when absent or unreadable."""
    try:
        with open(path) as f:
            words = f.readline().split()
    except OSError:
        words = []
    if not words:
        return "pass", 0, False
    mode = words[0]
    n = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    once = "once" in words[1:]
    if mode not in ("pass", "cut", "reset", "stall", "stallapp", "refuse", "slow"):
        mode = "pass"
    if once:
        # consumed: the next connection is a healthy one again
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("pass\n")
        os.replace(tmp, path)
    return mode, n, once


class AppData:
    """Follows the client's byte stream — an optional plaintext LDAP message
    first (the StartTLS request: one BER element), then TLS records (5-byte
    header: type, version, length) — to find where its k-th record of type
    23 (application data) begins.  The record layer is not encrypted, so
    this works whatever is inside; TLS 1.3 sends its Finished as type 23
    too, which stalls the same place as far as the client can tell: it has
    finished its handshake and waits for the answer to its bind."""

    def __init__(self, k):
        self.k = max(k, 1)
        self.seen = 0  # type-23 records begun so far
        self.stream = bytearray()  # every byte so far (a few KB before the stall)
        self.off = 0  # where the next element or record header begins
        self.first = True

    def feed(self, data):
        """How many bytes of data go out before the k-th record; None when
        it does not begin in data."""
        base = len(self.stream)
        self.stream += data
        while True:
            s = self.stream
            if self.first:
                if len(s) <= self.off:
                    return None
                self.first = False
                if s[self.off] == 0x30:  # a BER SEQUENCE: LDAP in clear
                    if len(s) < self.off + 2:
                        self.first = True
                        return None
                    n = s[self.off + 1]
                    if n & 0x80:
                        w = n & 0x7F
                        if len(s) < self.off + 2 + w:
                            self.first = True
                            return None
                        n = int.from_bytes(s[self.off + 2:self.off + 2 + w], "big") + w
                    self.off += 2 + n
                    continue
            if len(s) < self.off + 5:
                return None
            if s[self.off] == 23:
                self.seen += 1
                if self.seen == self.k:
                    return max(self.off - base, 0)
            self.off += 5 + int.from_bytes(s[self.off + 3:self.off + 5], "big")


class Conn:
    """One proxied connection: two pumps, one shared fate."""

    def __init__(self, num, client, target, mode, n, log, dump=None):
        self.num, self.client, self.mode, self.n, self.log = num, client, mode, n, log
        self.dump = dump
        self.target = target
        self.server = None
        self.down = 0  # server -> client bytes relayed
        self.up = 0  # client -> server bytes relayed
        self.lock = threading.Lock()
        self.stalled = False
        self.done = False
        self.app = AppData(n) if mode == "stallapp" else None
        self.how = "closed"

    def start(self):
        try:
            self.server = socket.create_connection(self.target, timeout=10)
            self.server.settimeout(None)
        except OSError as e:
            self.log.write(f"conn {self.num}: cannot reach the target: {e}")
            self.client.close()
            return
        for s in (self.client, self.server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self.pump, args=(self.server, self.client, True), daemon=True).start()
        threading.Thread(target=self.pump, args=(self.client, self.server, False), daemon=True).start()

    def finish(self, how):
        """Closes both sides once (FIN, or RST for a reset)."""
        with self.lock:
            if self.done:
                return
            self.done = True
            self.how = how
        for s in (self.client, self.server):
            try:
                if how == "reset" and s is self.client:
                    # SO_LINGER with a zero timeout: close() sends RST
                    # instead of FIN.  SHUT_RD first wakes the pump blocked
                    # in recv() on this socket (close() alone would not,
                    # and the RST would wait for it) without sending a FIN.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.log.write(f"conn {self.num}: mode={self.mode} n={self.n} bytes_down={self.down} "
                       f"bytes_up={self.up} end={how}")

    def pump(self, src, dst, downstream):
        try:
            while True:
                data = src.recv(BUF)
                if not data:
                    break
                with self.lock:
                    if self.stalled or self.done:
                        # a stalled connection swallows what still comes
                        if self.stalled:
                            continue
                        return
                if not downstream and self.app:
                    cut = self.app.feed(data)
                    if cut is not None:
                        if cut:
                            dst.sendall(data[:cut])
                            self.up += cut
                        with self.lock:
                            self.stalled = True
                        self.log.write(f"conn {self.num}: stalled at application data record {self.n} "
                                       f"after bytes_down={self.down} bytes_up={self.up}")
                        continue
                if downstream and self.mode in ("cut", "reset", "stall") and self.down + len(data) >= self.n:
                    part = data[: max(self.n - self.down, 0)]
                    if part:
                        dst.sendall(part)
                        self.down += len(part)
                    if self.mode == "stall":
                        with self.lock:
                            self.stalled = True
                        self.log.write(f"conn {self.num}: stalled after bytes_down={self.down} bytes_up={self.up}")
                        continue
                    self.finish(self.mode)
                    return
                if downstream and self.mode == "slow":
                    time.sleep(self.n / 1000)
                dst.sendall(data)
                if downstream:
                    self.down += len(data)
                else:
                    self.up += len(data)
                    if self.dump:
                        with open(self.dump, "ab") as f:
                            f.write(data)
        except OSError:
            pass
        # the server hanging up on a stalled connection changes nothing for
        # the client, which must keep waiting; the client giving up ends it
        if not (self.stalled and downstream):
            self.finish("closed by the client" if self.stalled else "closed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="HOST:PORT of the real server")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--mode-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--dump-up")
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")
    target = (host, int(port))
    log = Log(a.log)

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{ls.getsockname()[1]}\n")
    os.replace(tmp, a.port_file)

    num = 0
    while True:
        client, _ = ls.accept()
        num += 1
        mode, n, once = read_mode(a.mode_file)
        if mode == "refuse":
            log.write(f"conn {num}: mode=refuse end=refused")
            client.close()
            continue
        Conn(num, client, target, mode, n, log, a.dump_up).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
