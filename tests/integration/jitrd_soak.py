#!/usr/bin/env python3
"""The load and the measurements of it_jitrd_soak (tests/integration/jitrd_soak.sh).

For SECONDS, concurrently against one jitrd on 127.0.0.1:
  sign      stations signing single CSRs over mutual TLS (a new connection every few requests),
            each certificate then read back (lookup);
  batch     a rate-limited station sending batches as fast as it can (200 or 429);
  revoke    an admin station revoking some of the certificates just issued;
  stranger  clients without a certificate, a new TLS connection for most requests (403), and
            malformed requests (400);
  slowloris TLS clients without a certificate that send a request head one byte every 0.5 s
            (jitrd answers 408 after request_timeout and closes);
  silent    TCP connections that never start the TLS handshake (jitrd closes them).
Meanwhile, every second, the RSS and the open descriptors of jitrd's parent and of each worker
(/proc), and which processes the workers are. The shell restarts Redis in the middle and writes
the times (ms) it went down and the index was complete again into OUT/redis_down_ms and
OUT/healed_ms before the load ends.

Afterwards: every reply must be one this kind of client may get (503 only while the index could
be incomplete, 429 and 503 with Retry-After), RSS and descriptors must be flat (see flat()), no
worker may have been replaced. Served serials go to OUT/served, revoked ones to OUT/revoked;
one summary line "soak: ..." to stdout; failures to stderr, exit 1.
"""
import argparse
import http.client
import json
import os
import random
import select
import socket
import ssl
import sys
import threading
import time


def now_ms():
    return int(time.time() * 1000)


ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--cafile", required=True)
ap.add_argument("--st", required=True, help="directory of the stations' NAME.crt/NAME.key")
ap.add_argument("--csr", required=True, help="directory of PEM CSRs")
ap.add_argument("--seconds", type=int, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--jitrd", type=int, required=True, help="pid of jitrd's parent")
ap.add_argument("--signers", default="line1,line2,line3")
ap.add_argument("--batcher", default="batch1")
ap.add_argument("--batch-size", type=int, default=8)
ap.add_argument("--admin", default="admin1")
ap.add_argument("--slowloris", type=int, default=4)
ap.add_argument("--request-timeout", type=int, required=True)
ap.add_argument("--rss-margin-kib", type=int, required=True, help="-1: RSS printed, not asserted")
ap.add_argument("--fd-margin", type=int, required=True)
args = ap.parse_args()

END = time.time() + args.seconds
CSRS = [open(os.path.join(args.csr, f)).read() for f in sorted(os.listdir(args.csr))
        if f.endswith(".csr")]
lock = threading.Lock()
events = []    # (kind, start_ms, end_ms, status)
served = []    # serials of 201s and of batch items
revocable = []  # serials the revoker may take
revoked = []
item_errors = []
failures = []


def record(kind, t0, status):
    with lock:
        events.append((kind, t0, now_ms(), status))


def context(station=None):
    ctx = ssl.create_default_context(cafile=args.cafile)
    if station:
        ctx.load_cert_chain(os.path.join(args.st, station + ".crt"),
                            os.path.join(args.st, station + ".key"))
    return ctx


class Client:
    """One keep-alive HTTPS connection; a request on a reused connection that the server closed
    meanwhile (an idle keep-alive ends after request_timeout) is sent once more on a new one."""

    def __init__(self, ctx):
        self.ctx, self.conn, self.used = ctx, None, 0

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn, self.used = None, 0

    def request(self, method, path, body=None, ctype=None):
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=self.ctx,
                                                        timeout=30)
            try:
                self.conn.request(method, path, body=body,
                                  headers={"Content-Type": ctype} if ctype else {})
                r = self.conn.getresponse()
                data = r.read()
                self.used += 1
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, r.getheader("Retry-After"), data
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if fresh or attempt == 1:
                    return "conn-error:" + type(e).__name__, None, b""
        return "conn-error", None, b""


def status_of(code, retry_after):
    """503 and 429 must carry Retry-After (whole seconds)."""
    if code in (429, 503) and not (retry_after or "").isdigit():
        return "%d-without-Retry-After" % code
    return code


def pause(retry_after, cap):
    time.sleep(min(int(retry_after), cap) if (retry_after or "").isdigit() else 0.2)


def signer(station, reconnect_every):
    c = Client(context(station))
    i = random.randrange(len(CSRS))
    while time.time() < END:
        i += 1
        t0 = now_ms()
        code, ra, body = c.request("POST", "/v1/sign", CSRS[i % len(CSRS)].encode(),
                                   "application/x-pem-file")
        record("sign", t0, status_of(code, ra))
        if code == 201:
            serial = json.loads(body)["serial"]
            with lock:
                served.append(serial)
                if i % 7 == 0:
                    revocable.append(serial)
            t0 = now_ms()
            code, ra, body = c.request("GET", "/v1/certificates/" + serial)
            record("lookup", t0, status_of(code, ra))
            if code == 200 and json.loads(body).get("serial") != serial:
                record("lookup", t0, "wrong-record")
        elif code in (429, 503):
            pause(ra, 1)
        if c.used >= reconnect_every:
            c.close()
    c.close()


def batcher(station, size):
    c = Client(context(station))
    n = 0
    while time.time() < END:
        items = [{"id": str(k), "csr": CSRS[(n + k) % len(CSRS)]} for k in range(size)]
        n += size
        t0 = now_ms()
        code, ra, body = c.request("POST", "/v1/sign/batch",
                                   json.dumps({"requests": items}).encode(), "application/json")
        record("batch", t0, status_of(code, ra))
        if code == 200:
            for r in json.loads(body)["results"]:
                with lock:
                    if "serial" in r:
                        served.append(r["serial"])
                    else:
                        item_errors.append(r)
        elif code in (429, 503):
            time.sleep(0.1)  # not Retry-After: this station is meant to hit its limit
    c.close()


def revoker(station):
    c = Client(context(station))
    while time.time() < END:
        time.sleep(0.5)
        with lock:
            serial = revocable.pop(0) if revocable else None
        if serial is None:
            continue
        t0 = now_ms()
        req = {"serial": serial, "reason": "keyCompromise"}
        code, ra, body = c.request("POST", "/v1/revoke", json.dumps(req).encode(),
                                   "application/json")
        record("revoke", t0, status_of(code, ra))
        if code == 200:
            rep = json.loads(body)
            if rep.get("alreadyRevoked") is not False or rep.get("serial") != serial:
                record("revoke", t0, "unexpected-reply")
            with lock:
                revoked.append(serial)
        elif code == 503:
            with lock:
                revocable.append(serial)  # the same revocation again later
            pause(ra, 1)
    c.close()


ROUTES = [("POST", "/v1/sign", b"-----BEGIN CERTIFICATE REQUEST-----\n", "application/x-pem-file"),
          ("POST", "/v1/sign/batch", b'{"requests":[]}', "application/json"),
          ("GET", "/v1/certificates/0123abcd", None, None),
          ("POST", "/v1/revoke", b'{"serial":"01"}', "application/json"),
          ("GET", "/metrics", None, None)]


def raw_tls(payload, ctx):
    """Sends payload on a new TLS connection without a client certificate; the reply's status."""
    try:
        with socket.create_connection(("127.0.0.1", args.port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                t.sendall(payload)
                data = b""
                while b"\r\n" not in data:
                    chunk = t.recv(4096)
                    if not chunk:
                        break
                    data += chunk
    except OSError as e:
        return "conn-error:" + type(e).__name__
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else "no-reply"


def stranger():
    ctx = context()
    c = Client(ctx)
    n = 0
    while time.time() < END:
        n += 1
        if n % 10 == 0:
            t0 = now_ms()
            record("stranger", t0, raw_tls(b"GARBAGE\r\n\r\n", ctx))
            continue
        m, path, body, ctype = ROUTES[n % len(ROUTES)]
        t0 = now_ms()
        code, ra, _ = c.request(m, path, body, ctype)
        record("stranger", t0, status_of(code, ra))
        if n % 4:
            c.close()  # most requests on a new connection: a handshake each
        time.sleep(0.01)
    c.close()


def slowloris():
    ctx = context()
    head = b"POST /v1/sign HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-pem-file\r\n"
    while time.time() < END:
        t0 = now_ms()
        status = "no-reply"
        try:
            with socket.create_connection(("127.0.0.1", args.port), timeout=10) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                    t.settimeout(0.5)
                    data, k = b"", 0
                    deadline = time.time() + args.request_timeout + 5
                    while time.time() < deadline:
                        try:
                            chunk = t.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                            if b"\r\n" in data:
                                break
                        except socket.timeout:
                            try:
                                t.sendall(b"X-Slow: 1\r\n"[k % 11:k % 11 + 1])
                                k += 1
                            except OSError:
                                pass  # closed: read what it said
                    parts = data.split(b" ", 2)
                    if len(parts) > 1 and parts[1].isdigit():
                        status = int(parts[1])
        except OSError as e:
            status = "conn-error:" + type(e).__name__
        record("slowloris", t0, status)


def silent():
    while time.time() < END:
        t0 = now_ms()
        try:
            with socket.create_connection(("127.0.0.1", args.port), timeout=10) as s:
                r, _, _ = select.select([s], [], [], args.request_timeout + 5)
                status = "closed" if r and s.recv(1) == b"" else "still-open"
        except OSError as e:
            status = "closed" if isinstance(e, ConnectionResetError) else \
                "conn-error:" + type(e).__name__
        record("silent", t0, status)


# --- measurements -------------------------------------------------------------------------------
samples = []  # (t_ms, pid, rss_kib, fds, client_fds)


def children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[1]) == ppid:
                out.append(int(d))
    return sorted(out)


def client_sockets():
    """Inodes of the TCP connections to jitrd's listener (its clients), in any state but LISTEN
    (a connection the client closed stays jitrd's descriptor until jitrd closes it)."""
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(f).read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            p = ln.split()
            if int(p[1].rsplit(":", 1)[1], 16) == args.port and p[3] != "0A":
                inodes.add(p[9])
    return inodes


def measure(pid, conns):
    rss = None
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                rss = int(ln.split()[1])
    fds = client = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        fds += 1
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in conns:
            client += 1
    return rss, fds, client


def sampler():
    while time.time() < END + 1:
        t = now_ms()
        conns = client_sockets()
        for pid in [args.jitrd] + children(args.jitrd):
            try:
                samples.append((t, pid) + measure(pid, conns))
            except (OSError, TypeError):
                pass  # a process that just went away: the worker set tells
        time.sleep(1)


# --- the run ------------------------------------------------------------------------------------
start_ms = now_ms()
threads = [threading.Thread(target=sampler)]
signers = args.signers.split(",")
for k, st in enumerate(signers):
    threads.append(threading.Thread(target=signer, args=(st, 3 + 2 * k)))
threads.append(threading.Thread(target=batcher, args=(args.batcher, args.batch_size)))
threads.append(threading.Thread(target=revoker, args=(args.admin,)))
threads.append(threading.Thread(target=stranger))
threads += [threading.Thread(target=slowloris) for _ in range(args.slowloris)]
threads.append(threading.Thread(target=silent))
for t in threads:
    t.start()
for t in threads:
    t.join()


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def read_ms(name):
    try:
        return int(open(os.path.join(args.out, name)).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


down_ms, healed_ms = read_ms("redis_down_ms"), read_ms("healed_ms")
if down_ms is None or healed_ms is None:
    fail("the Redis restart did not happen or the index did not heal (OUT/redis_down_ms, "
         "OUT/healed_ms)")
    down_ms = healed_ms = 0
# a worker sees the index complete again at its next once-a-second check: 2 s of slack
HEAL_SLACK_MS = 2000


def in_heal(t0, t1):
    return t1 >= down_ms and t0 <= healed_ms + HEAL_SLACK_MS


EXPECTED = {"sign": {201}, "lookup": {200}, "batch": {200, 429}, "revoke": {200},
            "stranger": {403, 400}, "slowloris": {408}, "silent": {"closed"}}
NEEDS_INDEX = {"sign", "lookup", "batch", "revoke"}
counts = {}
unexpected = {}
for kind, t0, t1, status in events:
    ok = status in EXPECTED[kind] or (status == 503 and kind in NEEDS_INDEX and in_heal(t0, t1))
    counts.setdefault(kind, {}).setdefault(status, 0)
    counts[kind][status] += 1
    if not ok:
        key = (kind, status)
        unexpected[key] = unexpected.get(key, 0) + 1
for (kind, status), n in sorted(unexpected.items(), key=str):
    fail("%d %s replies with %s (expected %s%s)" % (
        n, kind, status, "/".join(map(str, sorted(EXPECTED[kind], key=str))),
        ", or 503 while the index heals" if kind in NEEDS_INDEX else ""))
for kind in EXPECTED:
    if not any(s in EXPECTED[kind] for s in counts.get(kind, {})):
        fail("no %s request got an expected reply: %s" % (kind, counts.get(kind)))
if item_errors:
    fail("%d batch items failed, e.g. %s" % (len(item_errors), item_errors[0]))
if not counts.get("sign", {}).get(503):
    fail("no signing request met the index healing (the Redis restart was not seen)")
if not any(k == "sign" and s == 201 and t0 > healed_ms + HEAL_SLACK_MS for k, t0, _, s in events):
    fail("signing did not resume after the index healed")
if not counts.get("batch", {}).get(429):
    fail("the rate-limited station never got 429")
if len(set(served)) != len(served):
    fail("a serial was served twice")

# --- flat: RSS and descriptors ---------------------------------------------------------------
# Samples of the first WARMUP of the run are left out (the first connections size OpenSSL's and
# malloc's pools, each thread gets its arena). The rest is cut in thirds by time; the Redis restart
# is in the middle one. For every process: max of the last third <= max of the first third +
# margin, for RSS and for the descriptors that are not client connections (those come and go with
# the clients: counted apart, at most the soak's own connections).
WARMUP = 0.15
pids_first = None
restarts = 0
by_pid = {}
span = END * 1000 - start_ms
t_warm = start_ms + WARMUP * span
third = (END * 1000 - t_warm) / 3
by_time = {}
for t, pid, rss, fds, client in samples:
    by_time.setdefault(t, []).append(pid)
    by_pid.setdefault(pid, []).append((t, rss, fds, client))
worker_sets = [tuple(sorted(p for p in pids if p != args.jitrd))
               for _, pids in sorted(by_time.items())]
worker_sets = [w for w in worker_sets if w]
if not worker_sets:
    fail("no worker was ever measured")
else:
    for a, b in zip(worker_sets, worker_sets[1:]):
        if a != b:
            restarts += len(set(a) - set(b))
    if restarts:
        fail("workers were replaced during the soak: %s -> %s" % (worker_sets[0], worker_sets[-1]))
figures = []
for idx, pid in enumerate([args.jitrd] + list(worker_sets[0] if worker_sets else [])):
    s = by_pid.get(pid, [])
    first = [x for x in s if t_warm <= x[0] < t_warm + third]
    last = [x for x in s if x[0] >= t_warm + 2 * third]
    name = "parent" if pid == args.jitrd else "w%d" % (idx - 1)
    if not first or not last:
        fail("%s (pid %d): too few samples (%d, %d)" % (name, pid, len(first), len(last)))
        continue
    r_first, r_last = max(x[1] for x in first), max(x[1] for x in last)
    f_first, f_last = max(x[2] - x[3] for x in first), max(x[2] - x[3] for x in last)
    if args.rss_margin_kib >= 0 and r_last > r_first + args.rss_margin_kib:
        fail("%s (pid %d): RSS grew: max %d KiB in the first third, %d KiB in the last (margin "
             "%d KiB)" % (name, pid, r_first, r_last, args.rss_margin_kib))
    if f_last > f_first + args.fd_margin:
        try:
            links = sorted(os.readlink("/proc/%d/fd/%s" % (pid, fd))
                           for fd in os.listdir("/proc/%d/fd" % pid))
        except OSError:
            links = []
        fail("%s (pid %d): descriptors grew: max %d in the first third, %d in the last (clients "
             "apart, margin %d); open now: %s" % (name, pid, f_first, f_last, args.fd_margin,
                                                  " ".join(links)))
    figures.append("%s RSS %d->%d->%d KiB (first/last third max %d/%d) fds %d->%d (max %d/%d "
                   "without clients)" % (name, s[0][1], first[0][1], s[-1][1], r_first, r_last,
                                         s[0][2], s[-1][2], f_first, f_last))

# the smallest leak per request the RSS margin lets through: requests after the first third
after_first = sum(1 for e in events if e[1] >= t_warm + third)
leak_bytes = args.rss_margin_kib * 1024 // max(after_first, 1)
with open(os.path.join(args.out, "counts.json"), "w") as f:
    json.dump({k: {str(s): n for s, n in v.items()} for k, v in counts.items()}, f)
with open(os.path.join(args.out, "served"), "w") as f:
    f.write("".join(s + "\n" for s in served))
with open(os.path.join(args.out, "revoked"), "w") as f:
    f.write("".join(s + "\n" for s in revoked))
with open(os.path.join(args.out, "samples"), "w") as f:
    f.write("".join("%d %d %d %d %d\n" % x for x in samples))

kinds = " ".join("%s %s" % (k, ",".join("%s=%d" % (s, n) for s, n in
                                         sorted(counts.get(k, {}).items(), key=str)))
                 for k in EXPECTED)
print("soak: %d s, %d requests (%s), %d certificates (%d revoked); heal %d ms after Redis went "
      "down; %s; worker restarts %d; %s"
      % (args.seconds, len(events), kinds, len(served), len(revoked), healed_ms - down_ms,
         "; ".join(figures), restarts,
         "RSS margin %d KiB = %d bytes per request after the first third"
         % (args.rss_margin_kib, leak_bytes) if args.rss_margin_kib >= 0 else
         "RSS not asserted (sanitizer build)"))
sys.exit(1 if failures else 0)
