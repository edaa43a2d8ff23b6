#!/usr/bin/env python3
"""Devices for the JITR tests, the benchmark and the demo: each one connects to the AWS IoT
gateway stand-in (tests/sim/gateway.py) with its certificate, is refused the first time (AWS
registers it PENDING_ACTIVATION and publishes the event), then retries MQTT CONNECT with
exponential backoff and jitter until CONNACK 0 (provisioned: ACTIVE, policy, thing) or the
deadline.

  jitr_devices.py --dir DIR --host H --port P --cafile CA [--ids a,b,...] [--threads N]
                  [--timeout S] [--first-only]
DIR holds ID.crt and ID.key for every device (--ids: those only; default: every *.crt).
Prints one JSON object: devices, connected, first_refused, failed (ids), latency_ms p50/p99/max
(first attempt to CONNACK 0), and exits 0 only when every device connected.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import random
import socket
import ssl
import struct
import sys
import time


def connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = struct.pack("!H", len(cid)) + cid
    rem = len(var) + len(payload)
    enc = b""
    while True:
        b = rem % 128
        rem //= 128
        enc += bytes([b | (0x80 if rem else 0)])
        if not rem:
            break
    return b"\x10" + enc + var + payload


def attempt(ctx, host, port, client_id, timeout=10.0):
    """Returns 0 for CONNACK 0, the CONNACK code, or -1 when the connection was closed."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(connect_packet(client_id))
                data = b""
                while len(data) < 4:
                    chunk = tls.recv(4 - len(data))
                    if not chunk:
                        return -1
                    data += chunk
                if data[0] != 0x20:
                    return -1
                rc = data[3]
                if rc == 0:
                    tls.sendall(b"\xe0\x00")  # DISCONNECT
                return rc
    except (OSError, ssl.SSLError):
        return -1


def device(args, dev_id):
    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.check_hostname = False
    ctx.load_cert_chain(os.path.join(args.dir, dev_id + ".crt"), os.path.join(args.dir, dev_id + ".key"))
    cn = dev_id
    t0 = time.monotonic()
    first = attempt(ctx, args.host, args.port, cn)
    if args.first_only:
        return dev_id, first, first != 0, 0.0
    if first == 0:
        return dev_id, 0, False, (time.monotonic() - t0) * 1000
    # reconnect as the AWS IoT device SDKs do: exponential backoff with jitter, from 1 s (AWS
    # takes at most one CONNECT per second per client id) doubling up to 8 s; every refused
    # attempt of a PENDING_ACTIVATION certificate makes AWS publish its registered event again
    delay = 1.0
    deadline = t0 + args.timeout
    while time.monotonic() < deadline:
        time.sleep(delay * random.uniform(1.0, 1.25))
        delay = min(delay * 2, 8.0)
        if attempt(ctx, args.host, args.port, cn) == 0:
            return dev_id, 0, True, (time.monotonic() - t0) * 1000
    return dev_id, -1, True, 0.0


def pct(v, p):
    if not v:
        return 0
    v = sorted(v)
    return round(v[min(len(v) - 1, int(p / 100.0 * len(v)))], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--ids")
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--first-only", action="store_true")
    args = ap.parse_args()
    if args.ids:
        ids = args.ids.split(",")
    else:
        ids = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(args.dir, "*.crt")))
    res = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as ex:
        for r in ex.map(lambda i: device(args, i), ids):
            res.append(r)
    ok = [r for r in res if r[1] == 0]
    lat = [r[3] for r in ok]
    out = {"devices": len(ids), "connected": len(ok), "first_refused": sum(1 for r in res if r[2]),
           "failed": [r[0] for r in res if r[1] != 0][:20],
           "latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": pct(lat, 100)}}
    print(json.dumps(out))
    return 0 if args.first_only or len(ok) == len(ids) else 1


if __name__ == "__main__":
    sys.exit(main())
