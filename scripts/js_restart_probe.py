"""Launches a JetStream server on an existing store and times how long it takes to serve.

Used by scripts/js-recovery.sh:

    python3 scripts/js_restart_probe.py PORT engine|nats STORE_DIR ENGINE_BIN NATS_BIN

The launch and the wait happen in this one process, so the time is the server's alone:
from the launch until it has sent INFO and answered `$JS.API.STREAM.INFO.LOADGEN` (the
kernel accepts connections on a bound port before the server does, so a successful connect
proves nothing). Prints `<milliseconds> <messages in the stream> <server pid>`; the server
is left running for the caller to kill.
"""

import json
import socket
import subprocess
import sys
import time


def main() -> None:
    port, server, data, engine, nats = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    if server == "engine":
        cmd = [engine, "serve", "--jetstream", "--data-dir", data, "--listen", f"127.0.0.1:{port}"]
    else:
        cmd = [nats, "-js", "-sd", data, "-a", "127.0.0.1", "-p", str(port)]
    log = open(data + ".log", "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"{server} exited with {proc.returncode}")
            time.sleep(0.001)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.c 1\r\nPUB $JS.API.STREAM.INFO.LOADGEN _INBOX.c 0\r\n\r\n')
    line = f.readline().split()
    body = f.read(int(line[-1]))
    ms = (time.monotonic() - t0) * 1000
    print(f"{ms:.0f} {json.loads(body)['state']['messages']} {proc.pid}")


if __name__ == "__main__":
    main()
