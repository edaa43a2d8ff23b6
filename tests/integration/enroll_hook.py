#!/usr/bin/env python3
"""A claim's pre-provisioning hook for tests/integration/enroll.sh: HTTPS on 127.0.0.1.

  enroll_hook.py --cert PEM --key PEM --port-file FILE --log FILE

Answers POST with {"allowProvisioning": true}, except for device ids starting with "deny"
(false) and "slow" (true, but after 7 s: later than jitrd waits). Each request body is appended
to the log as one JSON line.
"""
import argparse
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                req = json.loads(body)
            except ValueError:
                req = {}
            with open(a.log, "a") as f:
                f.write(json.dumps(req) + "\n")
            device = str(req.get("device", ""))
            if device.startswith("slow"):
                time.sleep(7)
            allow = not device.startswith("deny")
            out = json.dumps({"allowProvisioning": allow}).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except OSError:
                pass  # jitrd gave up waiting

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(a.port_file, "w") as f:
        f.write(str(srv.server_address[1]))
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
