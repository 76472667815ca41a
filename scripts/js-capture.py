#!/usr/bin/env python3
"""Capture nats-server 2.9 JetStream API transcripts as test fixtures.

What it captures: for a fixed script of steps, the exact reply payload nats-server sends to
each `$JS.API.*` request (INFO, STREAM.CREATE|UPDATE|INFO|DELETE|PURGE|NAMES|LIST|MSG.GET|
MSG.DELETE, including their error cases) and to each publish to a stream subject (PubAcks,
duplicates, every Nats-Expected-* error, max_msg_size, discard new on full streams). Each step
is one request; steps run in order against one fresh server, so later steps see the state the
earlier ones left. Nothing is normalised here: the test in engine/src/js/fixtures.rs replays
the same steps through `js::Streams::handle` and compares JSON values, with non-zero
timestamps replaced by a placeholder (nats-server stamps them with its own clock).

How to run it (needs nats-server 2.9.x on PATH, e.g. `apt-get install -y nats-server`):

    python3 scripts/js-capture.py > engine/src/js/testdata/capture.json

It starts `nats-server -js -a 127.0.0.1 -p <free port> -sd <temp dir>` itself, speaks raw
protocol over one TCP socket (CONNECT with headers, one `_INBOX.cap.*` subscription, one
HPUB per step with a unique reply subject), and stops the server when done.

Output: a JSON array of steps, each {"subject", "headers" (list of [name, value] or null),
"body" (request payload as text), "reply" (reply payload as text, or null if none came within
the timeout)}.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TIMEOUT_S = 0.5


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    def __init__(self, port):
        for _ in range(100):
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
                break
            except OSError:
                time.sleep(0.05)
        self.buf = b""
        self.read_line()  # INFO
        self.sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
            b"SUB _INBOX.cap.* 1\r\nPING\r\n"
        )
        while self.read_line() != b"PONG":
            pass
        self.n = 0

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n + 2:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def request(self, subject, body=b"", headers=None):
        self.n += 1
        reply = "_INBOX.cap.%d" % self.n
        if headers is None:
            head = b""
            self.sock.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(body), body))
        else:
            head = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers) + b"\r\n"
            self.sock.sendall(
                b"HPUB %s %s %d %d\r\n%s%s\r\n"
                % (subject.encode(), reply.encode(), len(head), len(head) + len(body), head, body)
            )
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline:
            try:
                line = self.read_line()
            except socket.timeout:
                break
            parts = line.split(b" ")
            if parts[0] == b"PING":
                self.sock.sendall(b"PONG\r\n")
                continue
            if parts[0] == b"MSG":
                data = self.read_exact(int(parts[-1]))
            elif parts[0] == b"HMSG":
                data = self.read_exact(int(parts[-1]))[int(parts[-2]) :]
            else:
                continue
            if parts[1].decode() == reply:
                return data.decode()
        return None


def steps():
    """The script: (subject, body, headers). Bodies are JSON text or raw bytes."""
    cfg = lambda **kw: json.dumps(kw)
    S = "$JS.API.STREAM."
    yield "$JS.API.INFO", "", None
    yield S + "CREATE.S", cfg(name="S", subjects=["s.>"]), None
    yield S + "CREATE.S", cfg(name="S", subjects=["s.>"]), None
    yield S + "CREATE.S", cfg(name="S", subjects=["s.*"]), None
    yield S + "CREATE.T", cfg(name="T", subjects=["s.a"]), None
    yield S + "CREATE.T", cfg(name="T", subjects=[">"]), None
    yield S + "CREATE.T", cfg(name="U", subjects=["t"]), None
    yield S + "CREATE.T", "{not json", None
    yield S + "CREATE.T", "", None
    yield S + "CREATE.R", cfg(name="R", num_replicas=3), None
    yield S + "CREATE.R", cfg(name="R", num_replicas=-1), None
    yield S + "CREATE.R", cfg(name="R", num_replicas=9), None
    yield S + "CREATE.A.B", cfg(name="A.B"), None
    yield S + "CREATE.A", cfg(name="A", max_age=50_000_000), None
    yield S + "CREATE.A", cfg(name="A", duplicate_window=50_000_000), None
    yield S + "CREATE.A", cfg(name="A", max_age=1_000_000_000, duplicate_window=2_000_000_000), None
    yield S + "CREATE.A", cfg(name="A", duplicate_window=-1), None
    yield S + "CREATE.A", cfg(name="A", subjects=["a", "a"]), None
    yield S + "CREATE.A", cfg(name="A", subjects=["a.*", "a.b"]), None
    yield S + "CREATE.A", cfg(name="A", subjects=["$JS.API.x"]), None
    yield S + "CREATE.A", cfg(name="A", subjects=["a..b"]), None
    yield S + "CREATE.A", cfg(name="A", sealed=True), None
    yield S + "CREATE.A", cfg(name="A", mirror_direct=True), None
    yield S + "CREATE.A", cfg(name="A", deny_purge=True, allow_rollup_hdrs=True), None
    yield S + "CREATE.A", cfg(name="A", discard_new_per_subject=True), None
    yield S + "CREATE.A", cfg(name="A", retention="bogus"), None
    yield S + "CREATE.A", cfg(name="A", storage="memory", retention="workqueue", discard="new",
                              max_msgs=10, max_bytes=10000, max_age=3_600_000_000_000,
                              max_msgs_per_subject=5, max_msg_size=100, duplicate_window=60_000_000_000,
                              description="d", allow_direct=True, deny_delete=True), None
    yield S + "CREATE.M", cfg(name="M", storage="memory"), None
    # Publishes to S (file storage).
    yield "s.a", "hello", None
    yield "s.b", "", None
    yield "s.a", "x", [("Nats-Msg-Id", "id1")]
    yield "s.a", "x", [("Nats-Msg-Id", "id1")]
    yield "s.a", "x", [("Nats-Expected-Stream", "S")]
    yield "s.a", "x", [("Nats-Expected-Stream", "Q")]
    yield "s.a", "x", [("Nats-Expected-Last-Sequence", "1")]
    yield "s.a", "x", [("Nats-Expected-Last-Sequence", "4")]
    yield "s.a", "x", [("Nats-Expected-Last-Subject-Sequence", "2")]
    yield "s.c", "x", [("Nats-Expected-Last-Subject-Sequence", "0")]
    yield "s.c", "x", [("Nats-Expected-Last-Subject-Sequence", "5")]
    yield "s.a", "x", [("Nats-Expected-Last-Msg-Id", "nope")]
    yield "s.a", "x", [("Nats-Msg-Id", "id2"), ("Nats-Expected-Last-Msg-Id", "id1")]
    yield "s.a", "x", [("Nats-Expected-Last-Msg-Id", "id2")]
    yield "s.a", "x", [("Nats-Expected-Last-Sequence", "abc")]
    yield "s.a", "x", [("Nats-Rollup", "sub")]
    yield S + "INFO.S", "", None
    yield S + "INFO.NOPE", "", None
    yield S + "INFO.S", "{bad", None
    yield "$JS.API.INFO", "", None
    # Gets and deletes.
    yield S + "MSG.GET.S", cfg(seq=1), None
    yield S + "MSG.GET.S", cfg(seq=3), None
    yield S + "MSG.GET.S", cfg(last_by_subj="s.a"), None
    yield S + "MSG.GET.S", cfg(last_by_subj="s.zzz"), None
    yield S + "MSG.GET.S", cfg(seq=99), None
    yield S + "MSG.GET.S", "", None
    yield S + "MSG.GET.S", cfg(seq=1, last_by_subj="s.a"), None
    yield S + "MSG.GET.NOPE", cfg(seq=1), None
    yield S + "MSG.DELETE.S", cfg(seq=2), None
    yield S + "MSG.DELETE.S", cfg(seq=2), None
    yield S + "MSG.DELETE.S", cfg(seq=2, no_erase=True), None
    yield S + "MSG.DELETE.S", "", None
    yield S + "MSG.DELETE.NOPE", cfg(seq=1), None
    yield S + "INFO.S", "", None
    # Purges.
    yield S + "PURGE.S", cfg(filter="s.c"), None
    yield S + "PURGE.S", cfg(seq=4), None
    yield S + "PURGE.S", cfg(keep=2), None
    yield S + "PURGE.S", cfg(seq=1, keep=1), None
    yield S + "INFO.S", "", None
    yield S + "PURGE.S", "", None
    yield S + "INFO.S", "", None
    yield S + "PURGE.NOPE", "", None
    yield "s.a", "after purge", None
    # Names and list.
    yield S + "CREATE.B", cfg(name="B", subjects=["b"]), None
    yield S + "NAMES", "", None
    yield S + "NAMES", cfg(offset=1), None
    yield S + "NAMES", cfg(subject="b"), None
    yield S + "LIST", cfg(offset=2), None
    yield S + "NAMES", "{bad", None
    # Updates.
    yield S + "UPDATE.B", cfg(name="B", subjects=["b", "c"], max_msgs=5), None
    yield S + "UPDATE.B", cfg(name="B", subjects=["b"], storage="memory"), None
    yield S + "UPDATE.B", cfg(name="B", subjects=["s.x"]), None
    yield S + "UPDATE.NOPE", cfg(name="NOPE"), None
    yield S + "UPDATE.B", cfg(name="C"), None
    yield S + "UPDATE.B", cfg(name="B", subjects=["b"], num_replicas=3), None
    # Deletes.
    yield S + "DELETE.B", "x", None
    yield S + "DELETE.B", "", None
    yield S + "DELETE.B", "", None
    # Limits.
    yield S + "CREATE.L", cfg(name="L", subjects=["l.*"], max_msg_size=10, discard="new", max_msgs=2), None
    yield "l.a", "12345678901", None
    yield "l.a", "1234567890", None
    yield "l.b", "1", None
    yield "l.c", "1", None
    yield S + "CREATE.LB", cfg(name="LB", subjects=["lb"], discard="new", max_bytes=100), None
    yield "lb", "x" * 40, None
    yield "lb", "x" * 40, None
    yield S + "CREATE.LP", cfg(name="LP", subjects=["lp.*"], discard="new", max_msgs_per_subject=1,
                               discard_new_per_subject=True), None
    yield "lp.a", "1", None
    yield "lp.a", "2", None
    yield S + "CREATE.LO", cfg(name="LO", subjects=["lo.*"], max_msgs_per_subject=1, max_msgs=3), None
    yield "lo.a", "1", None
    yield "lo.a", "2", None
    yield "lo.b", "3", [("k", "v")]
    yield "lo.c", "4", None
    yield "lo.d", "5", None
    yield S + "INFO.LO", "", None
    yield "M", "memory", [("a", "b")]
    yield "M", "m2", None
    yield S + "INFO.M", "", None
    yield S + "MSG.GET.M", cfg(seq=1), None
    yield S + "MSG.GET.LO", cfg(next_by_subj="lo.*", seq=4), None
    yield S + "MSG.GET.LO", cfg(next_by_subj="lo.c"), None
    yield S + "MSG.GET.LO", cfg(next_by_subj="lo.a"), None
    yield S + "PURGE.LO", cfg(filter="lo.*", keep=1), None
    yield S + "PURGE.LO", cfg(filter="lo.x", seq=9), None
    yield S + "INFO.LO", "", None
    yield S + "LIST", "", None
    # Consumer API names (not built here) and unknown API subjects.
    yield "$JS.API.CONSUMER.NAMES.NOPE", "", None
    yield "$JS.API.CONSUMER.INFO.NOPE.c", "", None
    yield "$JS.API.FOO", "", None
    yield "$JS.API.STREAM.CREATE", cfg(name="X"), None
    yield "$JS.API.INFO", "", None


def main():
    port = free_port()
    store = tempfile.mkdtemp(prefix="js-capture-")
    server = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = Client(port)
        out = []
        for subject, body, headers in steps():
            raw = body.encode() if isinstance(body, str) else body
            reply = client.request(subject, raw, headers)
            out.append({"subject": subject, "headers": headers, "body": body, "reply": reply})
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
