#!/usr/bin/env python3
"""Capture nats-server 2.9 JetStream consumer traffic as raw protocol frames.

The fixtures under engine/src/jsc/testdata/ were made with this script. It speaks the NATS
client protocol over a plain TCP socket (no client library), so what it records are the exact
bytes nats-server sent back: the JSON of every `$JS.API.CONSUMER.*` answer and the MSG/HMSG
frames of deliveries and status messages.

Usage:
    nats-server -js -sd /tmp/jsc-ref -a 127.0.0.1 -p PORT &
    python3 scripts/jsc-capture.py PORT engine/src/jsc/testdata

Each scenario writes one file `<name>.txt`: a sequence of records, each a line
`>>> <what was sent>` or `<<< <subject> <reply or -> <sid>` followed by the frame's header
block (if any) and payload exactly as received, then a line `===`. Scenarios use their own
stream names and delete them afterwards, so the script can be re-run against the same server.
Only loopback is used; nothing is downloaded.
"""

import json
import os
import socket
import sys
import time


class Conn:
    """One client connection with a tiny frame reader (MSG, HMSG, PING, +OK, -ERR, INFO)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.sid = 0
        self.log = []
        self._line()  # INFO
        self.send_raw(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                      b'"no_responders":true,"protocol":1}\r\nPING\r\n')
        while True:
            if self._line().startswith(b"PONG"):
                break

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def _line(self, timeout=5.0):
        while b"\r\n" not in self.buf:
            self._fill(timeout)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n, timeout=5.0):
        while len(self.buf) < n + 2:
            self._fill(timeout)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def send_raw(self, data):
        self.sock.sendall(data)

    def sub(self, subject):
        self.sid += 1
        self.send_raw(b"SUB %s %d\r\n" % (subject.encode(), self.sid))
        return self.sid

    def pub(self, subject, payload=b"", reply=None, headers=None, note=True):
        if isinstance(payload, str):
            payload = payload.encode()
        r = (" " + reply) if reply else ""
        if headers is not None:
            hdr = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                                             for k, v in headers) + b"\r\n"
            line = b"HPUB %s%s %d %d\r\n" % (subject.encode(), r.encode(), len(hdr),
                                             len(hdr) + len(payload))
            self.send_raw(line + hdr + payload + b"\r\n")
        else:
            self.send_raw(b"PUB %s%s %d\r\n" % (subject.encode(), r.encode(), len(payload))
                          + payload + b"\r\n")
        if note:
            self.log.append(">>> %s %s %s" % (subject, reply or "-",
                                              payload.decode("latin-1")))

    def frame(self, timeout=5.0):
        """The next MSG/HMSG as (subject, reply, headers bytes, payload bytes), or None."""
        while True:
            try:
                line = self._line(timeout)
            except socket.timeout:
                return None
            if line.startswith(b"PING"):
                self.send_raw(b"PONG\r\n")
                continue
            if line.startswith(b"+OK") or line.startswith(b"PONG"):
                continue
            if line.startswith(b"-ERR"):
                raise RuntimeError(line)
            parts = line.split()
            if parts[0] == b"MSG":
                subj, sid = parts[1], parts[2]
                reply = parts[3] if len(parts) == 5 else b"-"
                payload = self._take(int(parts[-1]))
                self._record(subj, reply, b"", payload)
                return subj.decode(), reply.decode(), b"", payload
            if parts[0] == b"HMSG":
                subj = parts[1]
                reply = parts[3] if len(parts) == 6 else b"-"
                hlen, tlen = int(parts[-2]), int(parts[-1])
                data = self._take(tlen)
                self._record(subj, reply, data[:hlen], data[hlen:])
                return subj.decode(), reply.decode(), data[:hlen], data[hlen:]

    def _record(self, subj, reply, hdr, payload):
        self.log.append("<<< %s %s" % (subj.decode(), reply.decode()))
        if hdr:
            self.log.append("HDR " + hdr.decode("latin-1").replace("\r\n", "\\r\\n"))
        self.log.append("BODY " + payload.decode("latin-1"))
        self.log.append("===")

    def request(self, subject, payload=b"", timeout=5.0):
        inbox = "_INBOX.cap%d" % (self.sid + 1)
        sid = self.sub(inbox)
        self.pub(subject, payload, reply=inbox)
        f = self.frame(timeout)
        while f is not None and f[0] != inbox:
            f = self.frame(timeout)  # a delivery raced the answer; it is recorded too
        self.send_raw(b"UNSUB %d\r\n" % sid)
        return f

    def api(self, subject, body=None):
        raw = b"" if body is None else json.dumps(body).encode()
        f = self.request(subject, raw)
        return json.loads(f[3]) if f and f[3] else None

    def save(self, outdir, name):
        with open(os.path.join(outdir, name + ".txt"), "w") as f:
            f.write("\n".join(self.log) + "\n")
        self.log = []


def stream(c, name, subjects, retention="limits"):
    c.api("$JS.API.STREAM.DELETE." + name)
    c.api("$JS.API.STREAM.CREATE." + name,
          {"name": name, "subjects": subjects, "retention": retention, "storage": "memory"})


def publish(c, subject, payload, headers=None):
    inbox = "_INBOX.pub"
    sid = c.sub(inbox)
    c.pub(subject, payload, reply=inbox, headers=headers, note=False)
    c.frame()
    c.send_raw(b"UNSUB %d\r\n" % sid)


def cfg(**kw):
    return kw


def scenario_api(c, out):
    stream(c, "CAPI", ["capi.>"])
    for i in range(3):
        publish(c, "capi.a" if i != 1 else "capi.b", "m%d" % i)
    c.log = []
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CAPI.D1",
          {"stream_name": "CAPI", "config": cfg(durable_name="D1", ack_policy="explicit")})
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CAPI.D1",
          {"stream_name": "CAPI", "config": cfg(durable_name="D1", ack_policy="explicit")})
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CAPI.D1",
          {"stream_name": "CAPI", "config": cfg(durable_name="D1", ack_policy="all")})
    c.api("$JS.API.CONSUMER.CREATE.CAPI",
          {"stream_name": "CAPI", "config": cfg(deliver_subject="cap.push", ack_policy="none",
                                                filter_subject="capi.b")})
    c.api("$JS.API.CONSUMER.CREATE.CAPI.D2",
          {"stream_name": "CAPI", "config": cfg(durable_name="D2", ack_policy="explicit",
                                                deliver_policy="last", max_ack_pending=5,
                                                ack_wait=2000000000, max_deliver=3)})
    c.api("$JS.API.CONSUMER.INFO.CAPI.D1")
    c.api("$JS.API.CONSUMER.INFO.CAPI.NOPE")
    c.api("$JS.API.CONSUMER.NAMES.CAPI")
    c.api("$JS.API.CONSUMER.NAMES.CAPI", {"offset": 1})
    c.api("$JS.API.CONSUMER.LIST.CAPI", {"offset": 2})
    c.api("$JS.API.CONSUMER.DELETE.CAPI.D2")
    c.api("$JS.API.CONSUMER.DELETE.CAPI.D2")
    c.save(out, "api")


def scenario_errors(c, out):
    stream(c, "CERR", ["cerr.>"])
    stream(c, "CWQ", ["cwq.>"], retention="workqueue")
    c.log = []
    bad = [
        ("$JS.API.CONSUMER.CREATE.NOPE", {"stream_name": "NOPE", "config": {"ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR", {"stream_name": "OTHER", "config": {"ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR", b"not json"),
        ("$JS.API.CONSUMER.DURABLE.CREATE.CERR.X",
         {"stream_name": "CERR", "config": {"durable_name": "Y", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.DURABLE.CREATE.CERR.X",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.DURABLE.CREATE.CERR.a*",
         {"stream_name": "CERR", "config": {"durable_name": "a*", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"durable_name": "E", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_policy": "by_start_sequence", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_policy": "all", "opt_start_seq": 3, "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_policy": "by_start_time", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_policy": "last_per_subject", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_policy": "new", "opt_start_time": "2022-01-01T00:00:00Z", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"filter_subject": "other.x", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_subject": "cerr.push", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_subject": "p.push", "max_waiting": 5, "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_subject": "p.*", "ack_policy": "explicit"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_subject": "p.x", "ack_policy": "none", "max_ack_pending": 3}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_subject": "p.x", "ack_policy": "explicit", "idle_heartbeat": 50000000}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"deliver_subject": "p.x", "ack_policy": "explicit", "flow_control": True}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "idle_heartbeat": 1000000000}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "flow_control": True}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "rate_limit_bps": 1000}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "max_waiting": -1}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "max_expires": 1000}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "backoff": [1000000000, 2000000000], "max_deliver": 2}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "num_replicas": 3}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "explicit", "sample_freq": "x%"}}),
        ("$JS.API.CONSUMER.CREATE.CERR",
         {"stream_name": "CERR", "config": {"ack_policy": "bogus"}}),
        ("$JS.API.CONSUMER.CREATE.CWQ",
         {"stream_name": "CWQ", "config": {"ack_policy": "none"}}),
        ("$JS.API.CONSUMER.CREATE.CWQ",
         {"stream_name": "CWQ", "config": {"ack_policy": "explicit", "deliver_policy": "last"}}),
        ("$JS.API.CONSUMER.CREATE.CWQ",
         {"stream_name": "CWQ", "config": {"ack_policy": "all", "deliver_subject": "wq.p"}}),
    ]
    for subj, body in bad:
        if isinstance(body, bytes):
            c.request(subj, body)
        else:
            c.api(subj, body)
    c.save(out, "errors")


def scenario_pull(c, out):
    stream(c, "CPULL", ["cpull.>"])
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CPULL.P",
          {"stream_name": "CPULL", "config": cfg(durable_name="P", ack_policy="explicit",
                                                 max_waiting=2)})
    inbox = "_INBOX.pull"
    c.sub(inbox)
    c.log = []
    nxt = "$JS.API.CONSUMER.MSG.NEXT.CPULL.P"
    c.pub(nxt, json.dumps({"batch": 1, "no_wait": True}), reply=inbox)
    c.frame()
    c.pub(nxt, json.dumps({"batch": 2, "expires": 200000000}), reply=inbox)
    c.frame(2)
    publish(c, "cpull.a", "one", headers=[("X-Key", "v1")])
    publish(c, "cpull.b", "two")
    publish(c, "cpull.a", "three")
    c.pub(nxt, "2", reply=inbox)
    c.frame()
    c.frame()
    c.pub(nxt, json.dumps({"batch": 5, "no_wait": True}), reply=inbox)
    c.frame()
    c.frame()
    c.pub(nxt, json.dumps({"batch": 1, "max_bytes": 10}), reply=inbox)
    c.frame()
    # three pending requests against max_waiting 2
    for _ in range(3):
        c.pub(nxt, json.dumps({"batch": 1, "expires": 500000000}), reply=inbox)
    c.frame(2)
    c.frame(2)
    c.frame(2)
    c.pub(nxt, json.dumps({"batch": 1, "expires": 5000000000}), reply=inbox)
    time.sleep(0.1)
    c.api("$JS.API.CONSUMER.DELETE.CPULL.P")
    c.frame(2)
    c.frame(2)
    c.save(out, "pull")
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CPULL.B",
          {"stream_name": "CPULL", "config": cfg(durable_name="B", ack_policy="explicit")})
    c.log = []
    nxt = "$JS.API.CONSUMER.MSG.NEXT.CPULL.B"
    c.pub(nxt, json.dumps({"batch": 3, "max_bytes": 10}), reply=inbox)
    c.frame(2)
    c.pub(nxt, json.dumps({"batch": 3, "max_bytes": 200}), reply=inbox)
    c.frame(2)
    c.frame(2)
    c.pub(nxt, json.dumps({"batch": 1, "expires": 100000000, "idle_heartbeat": 200000000}),
          reply=inbox)
    c.frame(2)
    c.pub(nxt, json.dumps({"batch": 1, "expires": 500000000, "idle_heartbeat": 200000000}),
          reply=inbox)
    c.frame(2)
    c.frame(2)
    c.frame(2)
    c.save(out, "pull_max_bytes")


def scenario_acks(c, out):
    stream(c, "CACK", ["cack.>"])
    for i in range(6):
        publish(c, "cack.x", "m%d" % (i + 1))
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CACK.A",
          {"stream_name": "CACK", "config": cfg(durable_name="A", ack_policy="explicit",
                                                ack_wait=1000000000, max_deliver=2)})
    inbox = "_INBOX.ack"
    c.sub(inbox)
    c.log = []
    nxt = "$JS.API.CONSUMER.MSG.NEXT.CACK.A"
    c.pub(nxt, "5", reply=inbox)
    frames = [c.frame() for _ in range(5)]
    acks = [f[1] for f in frames]
    c.pub(acks[0], "+ACK")
    c.request(acks[1], "+ACK")  # ack as a request: empty confirmation
    c.pub(acks[2], "-NAK")
    c.frame()  # redelivered m3, count 2
    c.pub(acks[3], "+WPI")
    c.pub(acks[4], "+TERM")
    c.pub(nxt, json.dumps({"batch": 1, "expires": 3000000000}), reply=inbox)
    c.frame(3)  # m4 redelivered after ack_wait (count 2)
    c.api("$JS.API.CONSUMER.INFO.CACK.A")
    c.pub(nxt, json.dumps({"batch": 2, "expires": 2500000000}), reply=inbox)
    c.frame(3)  # m6
    f = c.frame(3)  # m3 or m4 are past max_deliver: timeout expected
    c.api("$JS.API.CONSUMER.INFO.CACK.A")
    c.save(out, "acks")


def scenario_nak_delay_next(c, out):
    stream(c, "CNAK", ["cnak.>"])
    for i in range(3):
        publish(c, "cnak.x", "m%d" % (i + 1))
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CNAK.N",
          {"stream_name": "CNAK", "config": cfg(durable_name="N", ack_policy="explicit")})
    inbox = "_INBOX.nak"
    c.sub(inbox)
    c.log = []
    nxt = "$JS.API.CONSUMER.MSG.NEXT.CNAK.N"
    c.pub(nxt, "1", reply=inbox)
    f = c.frame()
    c.pub(f[1], '-NAK {"delay": 500000000}')
    c.pub(nxt, json.dumps({"batch": 1, "expires": 2000000000}), reply=inbox)
    c.frame()  # m2 first
    c.pub(nxt, json.dumps({"batch": 1, "expires": 2000000000}), reply=inbox)
    g = c.frame()  # m1 again after the delay
    c.pub(g[1], "+NXT", reply=inbox)
    c.frame()  # m3 for the +NXT
    c.api("$JS.API.CONSUMER.INFO.CNAK.N")
    c.save(out, "nak_delay_next")


def scenario_ack_all(c, out):
    stream(c, "CALL", ["call.>"])
    for i in range(4):
        publish(c, "call.x", "m%d" % (i + 1))
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CALL.L",
          {"stream_name": "CALL", "config": cfg(durable_name="L", ack_policy="all",
                                                max_ack_pending=3)})
    inbox = "_INBOX.all"
    c.sub(inbox)
    c.log = []
    nxt = "$JS.API.CONSUMER.MSG.NEXT.CALL.L"
    c.pub(nxt, json.dumps({"batch": 4, "expires": 300000000}), reply=inbox)
    fs = [c.frame(1) for _ in range(4)]  # 3 messages then 408 (max_ack_pending 3)
    c.pub(fs[1][1], "+ACK")
    c.api("$JS.API.CONSUMER.INFO.CALL.L")
    c.save(out, "ack_all")


def scenario_policies(c, out):
    stream(c, "CPOL", ["cpol.>"])
    publish(c, "cpol.a", "a1")
    publish(c, "cpol.b", "b1")
    publish(c, "cpol.a", "a2")
    publish(c, "cpol.b", "b2")
    c.log = []
    for name, extra in [("ALL", {}), ("LAST", {"deliver_policy": "last"}),
                        ("NEW", {"deliver_policy": "new"}),
                        ("SEQ", {"deliver_policy": "by_start_sequence", "opt_start_seq": 3}),
                        ("TIME", {"deliver_policy": "by_start_time",
                                  "opt_start_time": "2000-01-01T00:00:00Z"}),
                        ("LPS", {"deliver_policy": "last_per_subject", "filter_subject": "cpol.>"}),
                        ("FILT", {"filter_subject": "cpol.b"})]:
        conf = dict(durable_name=name, ack_policy="none")
        conf.update(extra)
        c.api("$JS.API.CONSUMER.DURABLE.CREATE.CPOL." + name,
              {"stream_name": "CPOL", "config": conf})
        inbox = "_INBOX.pol" + name
        sid = c.sub(inbox)
        c.pub("$JS.API.CONSUMER.MSG.NEXT.CPOL." + name, json.dumps({"batch": 4, "no_wait": True}),
              reply=inbox)
        while True:
            f = c.frame(1)
            if f is None or f[2].startswith(b"NATS/1.0 4"):
                break
        c.send_raw(b"UNSUB %d\r\n" % sid)
    c.save(out, "policies")


def scenario_push(c, out):
    stream(c, "CPUSH", ["cpush.>"])
    publish(c, "cpush.a", "p1")
    c.sub("cap.deliver")
    c.log = []
    c.api("$JS.API.CONSUMER.DURABLE.CREATE.CPUSH.H",
          {"stream_name": "CPUSH", "config": cfg(durable_name="H", ack_policy="explicit",
                                                 deliver_subject="cap.deliver",
                                                 idle_heartbeat=500000000, flow_control=True)})
    c.frame()  # p1
    c.frame(2)  # idle heartbeat
    c.save(out, "push_heartbeat")
    c.api("$JS.API.CONSUMER.DELETE.CPUSH.H")  # its heartbeats would run on
    stream(c, "CFC", ["cfc.>"])
    big = "x" * 65536
    for i in range(20):
        publish(c, "cfc.x", big)
    c.sub("cap.fc")
    c.log = []
    c.api("$JS.API.CONSUMER.CREATE.CFC",
          {"stream_name": "CFC", "config": cfg(ack_policy="none", deliver_subject="cap.fc",
                                               idle_heartbeat=5000000000, flow_control=True)})
    seen = 0
    while seen < 20:
        f = c.frame(3)
        if f is None:
            break
        if f[2].startswith(b"NATS/1.0 100 FlowControl"):
            c.log.append("FLOW-CONTROL after %d messages" % seen)
            c.pub(f[1], "")
        elif f[0] == "cfc.x":
            seen += 1
    # Keep the fixture small: the 64 KiB bodies are written as their length.
    c.log = [("BODY <%d x>" % (len(l) - 5)) if l.startswith("BODY xxxx") else l for l in c.log]
    c.save(out, "push_flow_control")


def main():
    port = int(sys.argv[1])
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    c = Conn(port)
    for s in [scenario_api, scenario_errors, scenario_pull, scenario_acks,
              scenario_nak_delay_next, scenario_ack_all, scenario_policies, scenario_push]:
        s(c, out)
        print("captured", s.__name__)
    for name in ["CAPI", "CERR", "CWQ", "CPULL", "CACK", "CNAK", "CALL", "CPOL", "CPUSH", "CFC"]:
        c.api("$JS.API.STREAM.DELETE." + name)


if __name__ == "__main__":
    main()
