#!/usr/bin/env python3
"""AWS IoT device gateway stand-in: mutual TLS + minimal MQTT 3.1.1, with just-in-time registration.

The registry lives in iot_standin.py (and moto behind it); this process asks it over the stand-in's
unauthenticated /_standin/internal/ API and reads its runtime config (the "gateway" section of
/_standin/config) on every connection, so tests can retarget the rule destination at runtime.

Per connection (docs/aws-iot.md, "The device's first connection" and "The registered event"):
  * TLS: the trust store is rebuilt from the registered CA certificates (any status) so the
    device may send its leaf only or leaf + chain; a certificate of an unknown CA fails the
    handshake. Partial chains are allowed: the registered CA may be an intermediate.
  * unknown certificate whose direct issuer is a registered CA that is ACTIVE with
    auto-registration ENABLE -> registered PENDING_ACTIVATION (certificateId = SHA-256 of DER),
    the six-field event is POSTed like an HTTP rule action (<= 3 tries, retry on 429/5xx only),
    the connection is closed. jitr_trigger "handshake" (default) does this right after the TLS
    handshake; "connect" waits for the MQTT CONNECT and answers CONNACK 5 first.
  * the event goes where the rules say: the HTTP action of the runtime config (event_url), and
    every SQS action of an enabled topic rule (recorded by iot_standin.py) whose SQL selects from
    $aws/events/certificates/registered/<caCertificateId> (topic filters with + and #), or the
    config's event_sqs {"queueUrl", "useBase64"}: SendMessage of the event JSON, or of its base64
    when useBase64 is true (internal/sqs-send).
  * the event is the six documented fields; the config's event_extra {"member": value, ...} is
    merged into it, as AWS adds or changes members (e.g. {"sourceIp": "198.51.100.7",
    "certificateRegistrationTimestamp": null}).
  * event_batching {"maxBatchOpenMs", "maxBatchSize", "maxBatchSizeBytes"} (the HTTP action's
    batchConfig with enableBatching; missing keys take AWS's defaults 20 ms, 10, 5120 bytes; the
    same ranges as AWS: 5..200 ms, 2..10, 100..131072 bytes): events for the same URL and
    headers are held and POSTed together as one JSON array when the first limit is reached:
    maxBatchSize events, maxBatchSizeBytes of array, or maxBatchOpenMs after the first one
    (an event that alone is larger than maxBatchSizeBytes goes alone). A batch is delivered and
    retried like a single event; the gateway log records {"kind": "event_batch", "size",
    "bytes", "outcomes"}.
  * PENDING_ACTIVATION -> the event again, connection closed.
  * ACTIVE with at least one attached policy (and a thing unless require_thing is false) ->
    CONNECT answered with CONNACK 0; PINGREQ answered, DISCONNECT closes. ACTIVE without policy
    (or thing) -> CONNACK 5.
  * INACTIVE, REVOKED, PENDING_TRANSFER, or an unknown certificate whose CA is INACTIVE or has
    auto-registration disabled -> connection closed without an event.
  * SNI_ONLY CAs: a device that sent no SNI is refused.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simcommon as sc  # noqa: E402

CONNACK_ACCEPTED, CONNACK_BAD_PROTOCOL, CONNACK_BAD_CLIENT_ID, CONNACK_NOT_AUTHORIZED = 0, 1, 2, 5


class MqttError(Exception):
    pass


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise MqttError("connection closed")
        buf += chunk
    return buf


def read_packet(sock, limit=65536):
    """One MQTT control packet: (type, flags, body)."""
    first = _recv_exact(sock, 1)[0]
    length, mult = 0, 1
    for i in range(4):
        b = _recv_exact(sock, 1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    else:
        raise MqttError("malformed remaining length")
    if length > limit:
        raise MqttError("packet too large")
    return first >> 4, first & 0x0F, _recv_exact(sock, length)


def parse_connect(body):
    """MQTT 3.1.1 CONNECT variable header + client id. Returns (level, flags, keepalive, client_id)."""
    if len(body) < 10:
        raise MqttError("short CONNECT")
    (nlen,) = struct.unpack("!H", body[:2])
    name = body[2:2 + nlen]
    pos = 2 + nlen
    if name not in (b"MQTT", b"MQIsdp") or len(body) < pos + 6:
        raise MqttError("not an MQTT CONNECT")
    level, flags = body[pos], body[pos + 1]
    (keepalive,) = struct.unpack("!H", body[pos + 2:pos + 4])
    if flags & 0x01:
        raise MqttError("reserved flag set")
    if level != 4:
        return level, flags, keepalive, None  # MQTT 5 puts properties here; refused anyway
    (clen,) = struct.unpack("!H", body[pos + 4:pos + 6])
    cid = body[pos + 6:pos + 6 + clen]
    if len(cid) != clen:
        raise MqttError("truncated client id")
    return level, flags, keepalive, cid.decode("utf-8", "replace")


def connack(code):
    return bytes([0x20, 0x02, 0x00, code])


def make_server_identity(state_dir):
    """A throw-away 'Amazon Root CA' and an endpoint certificate for 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitrca sim gateway root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName(f"*.iot.{sc.REGION}.amazonaws.com")])
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(state_dir, exist_ok=True)
    paths = {n: os.path.join(state_dir, f"gateway-{n}.pem") for n in ("ca", "cert", "key")}
    with open(paths["ca"], "w") as f:
        f.write(sc.cert_pem(ca))
    with open(paths["cert"], "w") as f:
        f.write(sc.cert_pem(leaf) + sc.cert_pem(ca))
    with open(paths["key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)
    return paths


BATCH_DEFAULTS = {"maxBatchOpenMs": 20, "maxBatchSize": 10, "maxBatchSizeBytes": 5120}
BATCH_RANGES = {"maxBatchOpenMs": (5, 200), "maxBatchSize": (2, 10),
                "maxBatchSizeBytes": (100, 131072)}


def batch_config(cfg):
    """The batchConfig of an HTTP action, AWS's defaults filled in; ValueError outside AWS's ranges."""
    out = dict(BATCH_DEFAULTS)
    for k, v in (cfg or {}).items():
        if k not in BATCH_RANGES:
            raise ValueError(f"batchConfig: unknown member {k}")
        lo, hi = BATCH_RANGES[k]
        if not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"batchConfig: {k} must be an integer in {lo}..{hi}, not {v!r}")
        out[k] = v
    return out


class Batcher:
    """One HTTP action's pending batch (same URL and headers), flushed at its first limit."""

    def __init__(self, gateway, url, headers, conf, delivery):
        self.gw, self.url, self.headers, self.conf, self.delivery = gateway, url, headers, conf, delivery
        self.lock = threading.Lock()
        self.items = []  # (event, its JSON text)
        self.generation = 0

    def _size(self, texts):
        return 2 + sum(len(t) for t in texts) + max(len(texts) - 1, 0)

    def add(self, event):
        text = json.dumps(event, separators=(",", ":"))
        send = []
        with self.lock:
            texts = [t for _, t in self.items]
            if self.items and self._size(texts + [text]) > self.conf["maxBatchSizeBytes"]:
                send.append(self._take())
            self.items.append((event, text))
            if (len(self.items) >= self.conf["maxBatchSize"] or
                    self._size([t for _, t in self.items]) >= self.conf["maxBatchSizeBytes"]):
                send.append(self._take())
            elif len(self.items) == 1:
                gen = self.generation
                t = threading.Timer(self.conf["maxBatchOpenMs"] / 1000.0, self._expire, (gen,))
                t.daemon = True
                t.start()
        for batch in send:
            self._send(batch)

    def _take(self):
        batch, self.items = self.items, []
        self.generation += 1
        return batch

    def _expire(self, gen):
        with self.lock:
            if gen != self.generation or not self.items:
                return
            batch = self._take()
        self._send(batch)

    def _send(self, batch):
        events = [e for e, _ in batch]
        nbytes = self._size([t for _, t in batch])

        def run():
            d = self.delivery
            outcomes = sc.deliver_http_action(self.url, events, self.headers,
                                              retry_delay=d["retry_delay"], timeout=d["timeout"],
                                              cafile=d["cafile"], insecure=d["insecure"])
            ok = isinstance(outcomes[-1], int) and outcomes[-1] // 100 == 2
            self.gw.report({"events_sent": len(events), "event_batches": 1,
                            "event_attempts": len(outcomes), "events_failed": 0 if ok else len(events)},
                           {"kind": "event_batch", "size": len(events), "bytes": nbytes,
                            "certificateIds": [e.get("certificateId") for e in events],
                            "outcomes": outcomes})

        threading.Thread(target=run, daemon=True).start()


class Gateway:
    def __init__(self, standin_url, cert, key, io_timeout=10.0, verbose=False):
        self.standin = standin_url.rstrip("/")
        self.cert, self.key = cert, key
        self.io_timeout = io_timeout
        self.verbose = verbose
        self._ctx_cache = {}
        self._lock = threading.Lock()
        self._batchers = {}

    def batcher(self, url, headers, conf, delivery):
        key = json.dumps([url, headers, conf, delivery], sort_keys=True)
        with self._lock:
            b = self._batchers.get(key)
            if b is None:
                b = self._batchers[key] = Batcher(self, url, headers, conf, delivery)
            return b

    def log(self, msg):
        if self.verbose:
            sys.stderr.write(f"gateway: {msg}\n")

    def report(self, counters, entry=None):
        try:
            sc.json_call(self.standin + "/_standin/internal/gateway-log", "POST",
                         {"counters": counters, "entry": entry})
        except (OSError, RuntimeError) as exc:
            self.log(f"cannot report to stand-in: {exc}")

    def context_for(self, cas):
        pems = "".join(sorted(c["pem"].strip() + "\n" for c in cas))
        key = hashlib.sha256(pems.encode()).hexdigest()
        with self._lock:
            ctx = self._ctx_cache.get(key)
            if ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                ctx.load_cert_chain(self.cert, self.key)
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
                if pems:
                    ctx.load_verify_locations(cadata=pems)
                ctx.sni_callback = self._sni
                self._ctx_cache = {key: ctx}
            return ctx

    @staticmethod
    def _sni(sslobj, server_name, ctx):
        sslobj.jitr_sni = server_name

    def serve(self, sock):
        while True:
            try:
                conn, addr = sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, raw):
        raw.settimeout(self.io_timeout)
        tls = None
        try:
            reg = sc.json_call(self.standin + "/_standin/internal/registry?config=1")
            cfg = reg["gateway"]
            ctx = self.context_for(reg["cas"])
            try:
                tls = ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.report({"handshake_refused": 1}, {"kind": "handshake_refused", "error": str(exc)})
                return
            self.session(tls, reg, cfg)
        except (OSError, RuntimeError, MqttError, ValueError) as exc:
            self.log(f"connection ended: {exc}")
        finally:
            for s in (tls, raw):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _issuing_ca(self, leaf, cas):
        for ca in cas:
            if sc.issued_by(leaf, sc.load_pem_certs(ca["pem"])[0]):
                return ca
        return None

    def _cert_info(self, cid):
        try:
            return sc.json_call(self.standin + f"/_standin/internal/cert/{cid}?brief=1")
        except RuntimeError as exc:
            if "-> 404" in str(exc):
                return None
            raise

    def session(self, tls, reg, cfg):
        der = tls.getpeercert(binary_form=True)
        leaf = x509.load_der_x509_certificate(der)
        cid = sc.cert_id(der)
        sni = getattr(tls, "jitr_sni", None)
        info = self._cert_info(cid)
        ca = self._issuing_ca(leaf, reg["cas"])
        if ca is not None and ca["certificateMode"] == "SNI_ONLY" and not sni:
            self.report({"refused_no_sni": 1}, {"kind": "refused_no_sni", "certificateId": cid})
            return
        if info is None:
            if ca is None or ca["status"] != "ACTIVE" or ca["autoRegistrationStatus"] != "ENABLE":
                self.report({"refused_unregistered": 1},
                            {"kind": "refused_unregistered", "certificateId": cid,
                             "ca": ca and ca["certificateId"]})
                return
            if cfg["jitr_trigger"] == "connect":
                read_packet(tls)
            got = sc.json_call(self.standin + "/_standin/internal/jitr-register", "POST",
                               {"pem": sc.cert_pem(leaf), "caCertificateId": ca["certificateId"]})
            self.report({"jitr_registered": 1 if got["created"] else 0})
            self.publish(cid, ca["certificateId"], got["registrationTimestamp"], reg, cfg)
            if cfg["jitr_trigger"] == "connect":
                tls.sendall(connack(CONNACK_NOT_AUTHORIZED))
            return
        if info["status"] == "PENDING_ACTIVATION":
            if cfg["jitr_trigger"] == "connect":
                read_packet(tls)
            ts = info.get("registrationTimestamp") or sc.now_ms()
            self.publish(cid, info["caCertificateId"], ts, reg, cfg)
            if cfg["jitr_trigger"] == "connect":
                tls.sendall(connack(CONNACK_NOT_AUTHORIZED))
            return
        if info["status"] != "ACTIVE":
            self.report({"refused_" + info["status"].lower(): 1},
                        {"kind": "refused", "status": info["status"], "certificateId": cid})
            return
        ptype, _, body = read_packet(tls)
        if ptype != 1:
            raise MqttError("first packet is not CONNECT")
        level, flags, _, client_id = parse_connect(body)
        if level != 4:
            tls.sendall(connack(CONNACK_BAD_PROTOCOL))
            return
        if not client_id and not flags & 0x02:
            tls.sendall(connack(CONNACK_BAD_CLIENT_ID))
            return
        if not info["policies"] or (cfg["require_thing"] and not info["things"]):
            tls.sendall(connack(CONNACK_NOT_AUTHORIZED))
            self.report({"connack_not_authorized": 1},
                        {"kind": "not_authorized", "certificateId": cid,
                         "policies": info["policies"], "things": info["things"]})
            return
        tls.sendall(connack(CONNACK_ACCEPTED))
        self.report({"connack_accepted": 1},
                    {"kind": "connected", "certificateId": cid, "clientId": client_id})
        while True:
            ptype, _, _ = read_packet(tls)
            if ptype == 12:
                tls.sendall(b"\xd0\x00")
            elif ptype == 14:
                return

    def send_sqs(self, action, event, topic, duplicates):
        """The rule's sqs action: SendMessage (base64 of the JSON when useBase64)."""
        text = json.dumps(event, separators=(",", ":"))
        body = base64.b64encode(text.encode()).decode() if action.get("useBase64") else text
        for _ in range(1 + duplicates):
            try:
                sc.json_call(self.standin + "/_standin/internal/sqs-send", "POST",
                             {"queueUrl": action["queueUrl"], "body": body})
                self.report({"events_sqs": 1}, {"kind": "event_sqs", "topic": topic,
                                                "event": event, "queueUrl": action["queueUrl"]})
            except (RuntimeError, OSError) as exc:
                self.report({"events_sqs_failed": 1},
                            {"kind": "event_sqs_failed", "topic": topic, "reason": str(exc)[:200]})

    def publish(self, cid, caid, reg_ts, reg, cfg):
        """Send the registered event to the rule's HTTP destination, in the background."""
        event = {
            "certificateId": cid,
            "caCertificateId": caid,
            "timestamp": sc.now_ms(),
            "certificateStatus": "PENDING_ACTIVATION",
            "awsAccountId": reg["account"],
            "certificateRegistrationTimestamp": str(reg_ts),
        }
        event.update(cfg.get("event_extra") or {})
        url = cfg.get("event_url")
        topic = f"$aws/events/certificates/registered/{caid}"
        sqs_actions = [a for r in reg.get("rules") or [] if topic_matches(r["topic"], topic)
                       for a in r["sqs"]]
        if cfg.get("event_sqs"):
            sqs_actions.append(cfg["event_sqs"])
        for action in sqs_actions:
            self.send_sqs(action, event, topic, int(cfg.get("event_duplicates") or 0))
        if not url and sqs_actions:
            return
        if not url:
            self.report({"events_dropped_no_rule": 1}, {"kind": "event_dropped", "topic": topic,
                                                        "event": event, "reason": "no event_url"})
            return
        if cfg["require_confirmed_destination"] and not any(
                d["status"] == "ENABLED" and url.startswith(d["httpUrlProperties"]["confirmationUrl"])
                for d in reg["destinations"]):
            self.report({"events_dropped_destination": 1},
                        {"kind": "event_dropped", "topic": topic, "event": event,
                         "reason": "no ENABLED destination"})
            return

        batching = batch_config(cfg["event_batching"]) if cfg.get("event_batching") else None
        headers = cfg.get("event_headers") or {}
        delivery = {"retry_delay": cfg["retry_delay_ms"] / 1000.0,
                    "timeout": cfg["event_timeout_ms"] / 1000.0,
                    "cafile": cfg.get("event_cafile"), "insecure": cfg.get("event_insecure", False)}

        def run():
            jitter = cfg.get("event_jitter_ms") or 0
            if jitter:
                time.sleep(random.uniform(0, jitter) / 1000.0)
            if batching:
                self.batcher(url, headers, batching, delivery).add(event)
                return
            outcomes = sc.deliver_http_action(
                url, event, headers, retry_delay=delivery["retry_delay"],
                timeout=delivery["timeout"], cafile=delivery["cafile"],
                insecure=delivery["insecure"])
            ok = isinstance(outcomes[-1], int) and outcomes[-1] // 100 == 2
            self.report({"events_sent": 1, "event_attempts": len(outcomes),
                         "events_failed": 0 if ok else 1},
                        {"kind": "event", "topic": topic, "event": event, "outcomes": outcomes})

        for _ in range(1 + int(cfg.get("event_duplicates") or 0)):
            threading.Thread(target=run, daemon=True).start()


def topic_matches(filt, topic):
    """MQTT topic filter match (+ one level, # the rest)."""
    f, t = filt.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--standin", required=True, help="URL of iot_standin.py")
    ap.add_argument("--port", type=int, default=0, help="TLS port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--state-dir", required=True, help="where the server CA/cert/key are written")
    ap.add_argument("--ready-file", help="write {host, port, ca_file, pid} here once listening")
    ap.add_argument("--io-timeout", type=float, default=10.0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    paths = make_server_identity(args.state_dir)
    gw = Gateway(args.standin, paths["cert"], paths["key"], args.io_timeout, args.verbose)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    port = sock.getsockname()[1]

    def stop(*_):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"host": "127.0.0.1", "port": port, "ca_file": paths["ca"],
                       "pid": os.getpid()}, f)
        os.replace(tmp, args.ready_file)
    print(f"gateway listening on 127.0.0.1:{port}", flush=True)
    gw.serve(sock)


if __name__ == "__main__":
    main()
