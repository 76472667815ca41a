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
    python3 scripts/js-capture.py --scenario limits > engine/src/js/testdata/capture-limits.json
    python3 scripts/js-capture.py --scenario server-limits > engine/src/js/testdata/capture-server-limits.json
    python3 scripts/js-capture.py --scenario direct > engine/src/js/testdata/capture-direct.json

Scenarios:
- `api` (the default): the stream API and PubAcks on `nats-server -js` with no limits.
- `limits`: resource bounds. The server runs with `jetstream { max_memory_store: 10 KiB,
  max_file_store: 10 KiB }` and one account `A` whose JetStream limits are the same (plus
  `max_streams: 3`), which is how a nats-server operator bounds a single account; the engine,
  with one account, reproduces this one.
- `server-limits`: the same server limits with no account limits (the global account): what
  nats-server reports and refuses then. Recorded for docs/streams.md, not replayed.
- `direct`: `$JS.API.DIRECT.GET.<stream>[.<subject>]` on a stream with `allow_direct`.

It starts `nats-server -a 127.0.0.1 -p <free port>` with `-js -sd <temp dir>` or with a config
file in a temp dir, speaks raw protocol over one TCP socket (CONNECT with headers and
no_responders, one `_INBOX.cap.*` subscription, one HPUB per step with a unique reply
subject), and stops the server when done.

Output: a JSON array of steps, each {"subject", "headers" (list of [name, value] or null),
"body" (request payload as text), "reply" (reply payload as text, or null if none came within
the timeout)}. The `limits`, `server-limits` and `direct` scenarios add "reply_headers": the
reply's header block as text (null for a reply without headers), since direct gets and
status messages (`NATS/1.0 404 Message Not Found`, no responders' `503`) answer in headers.
"""
import argparse
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
    def __init__(self, port, user=None):
        for _ in range(100):
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
                break
            except OSError:
                time.sleep(0.05)
        self.buf = b""
        self.read_line()  # INFO
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True}
        if user is not None:
            connect["user"], connect["pass"] = user, user
        self.sock.sendall(
            b"CONNECT " + json.dumps(connect, separators=(",", ":")).encode() + b"\r\n"
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
        """The reply's payload, or None."""
        got = self.request_full(subject, body, headers)
        return None if got is None else got[1]

    def request_full(self, subject, body=b"", headers=None):
        """The reply's (header block or None, payload), or None."""
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
                hdr, data = None, self.read_exact(int(parts[-1]))
            elif parts[0] == b"HMSG":
                raw = self.read_exact(int(parts[-1]))
                hdr, data = raw[: int(parts[-2])].decode(), raw[int(parts[-2]) :]
            else:
                continue
            if parts[1].decode() == reply:
                return hdr, data.decode()
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


# The limits scenarios' bounds: small enough that a dozen 1 kB publishes cross them (and the
# fixture stays small).
LIMIT_BYTES = 10 * 1024
LIMIT_STREAMS = 3


def too_big_steps():
    """The opening both limits scenarios share: account info, then `max_bytes` over the bound."""
    cfg = lambda **kw: json.dumps(kw)
    yield "$JS.API.INFO", "", None
    yield "$JS.API.STREAM.CREATE.MB", cfg(name="MB", storage="memory", max_bytes=2 * LIMIT_BYTES), None
    yield "$JS.API.STREAM.CREATE.FB", cfg(name="FB", max_bytes=2 * LIMIT_BYTES), None


def limits_steps():
    """Resource bounds: reservations by `max_bytes`, the stream count, publishes past the total."""
    cfg = lambda **kw: json.dumps(kw)
    S = "$JS.API.STREAM."
    big = "x" * 1000
    yield from too_big_steps()
    yield S + "CREATE.M", cfg(name="M", storage="memory", max_bytes=6000), None
    yield S + "CREATE.M", cfg(name="M", storage="memory", max_bytes=6000), None
    yield S + "CREATE.M2", cfg(name="M2", storage="memory", max_bytes=6000), None
    yield S + "CREATE.M2", cfg(name="M2", storage="memory", max_bytes=LIMIT_BYTES - 6000), None
    yield S + "CREATE.M3", cfg(name="M3", storage="memory", max_bytes=1), None
    yield S + "CREATE.F", cfg(name="F", max_bytes=LIMIT_BYTES), None
    yield "$JS.API.INFO", "", None
    yield S + "UPDATE.M2", cfg(name="M2", storage="memory", max_bytes=LIMIT_BYTES - 6000 + 1), None
    yield S + "UPDATE.M2", cfg(name="M2", storage="memory", max_bytes=1000), None
    yield S + "UPDATE.M2", cfg(name="M2", storage="memory"), None
    yield S + "CREATE.X", cfg(name="X", storage="memory"), None
    yield S + "CREATE.M2", cfg(name="M2", storage="memory"), None
    yield S + "DELETE.F", "", None
    yield S + "DELETE.M", "", None
    yield S + "UPDATE.M2", cfg(name="M2", storage="memory", max_bytes=LIMIT_BYTES), None
    yield S + "UPDATE.M2", cfg(name="M2", storage="memory", max_bytes=LIMIT_BYTES - 1), None
    yield S + "UPDATE.M2", cfg(name="M2", storage="memory"), None
    yield S + "CREATE.U", cfg(name="U", storage="memory", subjects=["u.*"]), None
    for i in range(10):
        yield "u.a", big, None
    yield "u.a", big, [("Nats-Msg-Id", "over")]
    yield "u.a", big, [("Nats-Msg-Id", "over")]
    yield "u.b", "x", [("Nats-Expected-Last-Msg-Id", "")]
    yield "u.b", "x", None
    yield S + "INFO.U", "", None
    yield "$JS.API.INFO", "", None
    yield S + "CREATE.F", cfg(name="F", subjects=["f"]), None
    for i in range(11):
        yield "f", big, None
    yield S + "INFO.F", "", None
    yield S + "PURGE.U", "", None
    yield "u.a", big, None
    yield "f", big, None
    yield "$JS.API.INFO", "", None


def server_limits_steps():
    """The same server bounds without account limits (not replayed; see the module doc)."""
    cfg = lambda **kw: json.dumps(kw)
    S = "$JS.API.STREAM."
    big = "x" * 1000
    yield from too_big_steps()
    yield S + "CREATE.U", cfg(name="U", storage="memory", subjects=["u.*"]), None
    for i in range(12):
        yield "u.a", big, None
    yield S + "INFO.U", "", None
    yield "$JS.API.INFO", "", None


def direct_steps():
    """`$JS.API.DIRECT.GET`: every request form and status message."""
    cfg = lambda **kw: json.dumps(kw)
    S = "$JS.API.STREAM."
    D = "$JS.API.DIRECT.GET.D"
    yield S + "CREATE.D", cfg(name="D", subjects=["d.>"], allow_direct=True), None
    yield D, cfg(seq=1), None
    yield D + ".d.a", "", None
    yield "d.a", "1", None
    yield "d.b", "2", [("k", "v"), ("Nats-Msg-Id", "m2")]
    yield "d.a", "3", None
    yield "d.c.x", "", None
    yield "d.b", "5", [("k", "w")]
    yield D, cfg(seq=1), None
    yield D, cfg(seq=2), None
    yield D, cfg(seq=4), None
    yield D, cfg(seq=99), None
    yield D, cfg(last_by_subj="d.a"), None
    yield D, cfg(last_by_subj="d.b"), None
    yield D, cfg(last_by_subj="d.*"), None
    yield D, cfg(last_by_subj="d.>"), None
    yield D, cfg(last_by_subj="d.zzz"), None
    yield D, cfg(next_by_subj="d.a"), None
    yield D, cfg(next_by_subj="d.a", seq=2), None
    yield D, cfg(next_by_subj="d.>", seq=4), None
    yield D, cfg(next_by_subj="d.a", seq=4), None
    yield D, cfg(seq=2, next_by_subj="d.b"), None
    yield D, "", None
    yield D, "{}", None
    yield D, "{bad", None
    yield D, cfg(seq="x"), None
    yield D, "null", None
    yield D, cfg(seq=1, last_by_subj="d.a"), None
    yield D, cfg(last_by_subj="d.a", next_by_subj="d.a"), None
    yield D, cfg(seq=0, last_by_subj=""), None
    yield D + ".d.a", "", None
    yield D + ".d.b", "", None
    yield D + ".d.c.x", "", None
    yield D + ".d.*", "", None
    yield D + ".d.zzz", "", None
    yield D + ".d.a", "x", None
    yield D + ".", "", None
    yield S + "MSG.DELETE.D", cfg(seq=1), None
    yield D, cfg(seq=1), None
    yield S + "CREATE.N", cfg(name="N", subjects=["n"]), None
    yield "n", "1", None
    yield "$JS.API.DIRECT.GET.N", cfg(seq=1), None
    yield "$JS.API.DIRECT.GET.N.n", "", None
    yield "$JS.API.DIRECT.GET.NOPE", cfg(seq=1), None
    yield "$JS.API.DIRECT.GET", cfg(seq=1), None
    yield S + "UPDATE.N", cfg(name="N", subjects=["n"], allow_direct=True), None
    yield "$JS.API.DIRECT.GET.N", cfg(seq=1), None
    yield S + "UPDATE.D", cfg(name="D", subjects=["d.>"], allow_direct=False), None
    yield D, cfg(seq=2), None
    yield "$JS.API.INFO", "", None


SCENARIOS = {
    # name: (steps, config file text or None for `-js -sd`, user, record reply headers)
    "api": (steps, None, None, False),
    "limits": (limits_steps, """
jetstream { store_dir: "%(store)s", max_memory_store: %(bytes)d, max_file_store: %(bytes)d }
accounts { A: { jetstream: { max_mem: %(bytes)d, max_file: %(bytes)d, max_streams: %(streams)d },
                users: [ { user: a, password: a } ] } }
""", "a", True),
    "server-limits": (server_limits_steps, """
jetstream { store_dir: "%(store)s", max_memory_store: %(bytes)d, max_file_store: %(bytes)d }
""", None, True),
    "direct": (direct_steps, None, None, True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="api")
    args = parser.parse_args()
    script, config, user, with_headers = SCENARIOS[args.scenario]
    port = free_port()
    store = tempfile.mkdtemp(prefix="js-capture-")
    command = ["nats-server", "-a", "127.0.0.1", "-p", str(port)]
    if config is None:
        command += ["-js", "-sd", store]
    else:
        path = os.path.join(store, "server.conf")
        with open(path, "w") as f:
            f.write(config % {"store": os.path.join(store, "js"), "bytes": LIMIT_BYTES,
                              "streams": LIMIT_STREAMS})
        command += ["-c", path]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Client(port, user)
        out = []
        for subject, body, headers in script():
            raw = body.encode() if isinstance(body, str) else body
            got = client.request_full(subject, raw, headers)
            step = {"subject": subject, "headers": headers, "body": body,
                    "reply": None if got is None else got[1]}
            if with_headers:
                step["reply_headers"] = None if got is None else got[0]
            out.append(step)
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
