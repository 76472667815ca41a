#!/usr/bin/env python3
"""SUB flood next to a 1 ms pub->sub pair, against any NATS server on 127.0.0.1:PORT.

Usage: scripts/sub-flood.py PORT [SUBS]  (results/2026-12-02-sub-flood.md)
"""
import socket, time, threading, sys, statistics
host, port = "127.0.0.1", int(sys.argv[1]); N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
def conn():
    s = socket.create_connection((host, port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile('rb'); f.readline()
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
    assert f.readline() == b'PONG\r\n'
    return s, f
sub, subf = conn(); sub.sendall(b'SUB pair 1\r\nPING\r\n'); assert subf.readline()==b'PONG\r\n'
pub, _ = conn()
lat = []; stop = False; phase = ['base']
def pair():
    while not stop:
        t = time.perf_counter()
        pub.sendall(b'PUB pair 1\r\nx\r\n')
        subf.readline(); subf.readline()
        lat.append((phase[0], time.perf_counter() - t))
        time.sleep(0.001)
th = threading.Thread(target=pair); th.start()
time.sleep(1.0)
phase[0] = 'during'
fl, flf = conn()
buf = b''.join(b'SUB flood.%d %d\r\n' % (i, i) for i in range(N)) + b'PING\r\n'
t0 = time.perf_counter(); fl.sendall(buf); assert flf.readline() == b'PONG\r\n'
t1 = time.perf_counter()
time.sleep(2.0)
phase[0] = 'after'
fl.close(); t2 = time.perf_counter()
time.sleep(3.0)
stop = True; th.join()
print('subs applied in %.2fs' % (t1 - t0))
for ph in ['base', 'during', 'after']:
    v = sorted(x for p, x in lat if p == ph)
    print(ph, 'n=%d p50=%.2fms p99=%.2fms max=%.1fms' % (len(v), v[len(v)//2]*1e3, v[int(len(v)*.99)]*1e3, v[-1]*1e3))
