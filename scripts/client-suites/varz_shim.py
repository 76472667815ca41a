# Readiness-only shim for the nats.py test helper, which polls http://127.0.0.1:<m>/varz until 200.
# Answers 200 {} on /varz once the engine's client port accepts TCP; 404 for anything else.
# Exits when the engine pid (argv[1]) is gone or a zombie.
import os, sys, socket, time, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
pid, http_port, nats_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def alive():
    try:
        with open(f"/proc/{pid}/stat") as f: return f.read().split(")")[-1].split()[0] != "Z"
    except OSError: return False
def nats_up():
    try: socket.create_connection(("127.0.0.1", nats_port), 0.2).close(); return True
    except OSError: return False
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path.startswith("/varz") and nats_up()
        body = b"{}" if ok else b"shim: not emulated"
        self.send_response(200 if ok else 404); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer.allow_reuse_address = True
srv = None
for _ in range(100):
    if not alive(): sys.exit(0)
    try: srv = HTTPServer(("127.0.0.1", http_port), H); break
    except OSError: time.sleep(0.05)
if srv is None: sys.exit(1)
threading.Thread(target=srv.serve_forever, daemon=True).start()
while alive(): time.sleep(0.05)
srv.shutdown(); srv.server_close()
