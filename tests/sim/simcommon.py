"""Helpers shared by the AWS IoT stand-ins (iot_standin.py, gateway.py, run_sim.py, tests).

Only the standard library plus `cryptography` (a moto dependency, so always present next to moto);
partition() reads botocore's partition data, loaded when first asked.
Everything here is loopback plumbing: certificate identifiers, small JSON-over-HTTP calls and the
delivery rule of an AWS IoT HTTP rule action (docs/aws-iot.md, "Topic rule HTTP action": at most
3 tries, retried only on 429 and 5xx, never after the server closed the connection).
"""

import hashlib
import http.client
import json
import socket
import ssl
import time
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

ACCOUNT_ID = "123456789012"  # moto's default account; ARNs from moto carry it
REGION = "us-east-1"


def now_ms():
    return int(time.time() * 1000)


def partition(region):
    """The ARN partition of a region, by botocore's partitions data (aws, aws-cn, aws-us-gov...)."""
    from botocore.endpoint_provider import RuleSetStandardLibrary
    import botocore.session
    global _PARTITIONS
    if _PARTITIONS is None:
        data = botocore.session.get_session().get_component("data_loader").load_data("partitions")
        _PARTITIONS = RuleSetStandardLibrary(data)
    return _PARTITIONS.aws_partition(region)["name"]


_PARTITIONS = None


def load_pem_certs(text):
    """All certificates in a PEM string, in order (leaf first for a device chain file)."""
    if isinstance(text, str):
        text = text.encode()
    return x509.load_pem_x509_certificates(text)


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_id(cert_or_der):
    """AWS IoT certificateId: lowercase hex SHA-256 of the certificate's DER encoding."""
    der = cert_or_der if isinstance(cert_or_der, bytes) else cert_der(cert_or_der)
    return hashlib.sha256(der).hexdigest()


def issued_by(cert, ca):
    """True if `ca` directly signed `cert` (names match and the signature verifies)."""
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (InvalidSignature, ValueError, TypeError):  # name mismatch, bad signature, key type
        return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_call(url, method="GET", body=None, headers=None, timeout=10.0, cafile=None, insecure=False):
    """One HTTP(S) request; returns (status, headers dict lower-cased, body bytes).

    Raises OSError (incl. ssl errors, timeouts) and http.client exceptions on transport failure.
    """
    u = urllib.parse.urlsplit(url)
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=cafile)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        target = (u.path or "/") + ("?" + u.query if u.query else "")
        conn.request(method, target, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def json_call(url, method="GET", body=None, timeout=10.0):
    """Admin-endpoint helper: JSON in, JSON out; raises RuntimeError on a non-2xx status."""
    status, _, data = http_call(url, method, body, timeout=timeout)
    if status // 100 != 2:
        raise RuntimeError(f"{method} {url} -> {status}: {data[:300]!r}")
    return json.loads(data) if data else {}


def deliver_http_action(url, payload, headers=None, tries=3, retry_delay=0.5, timeout=3.0,
                        cafile=None, insecure=False, max_response=16384):
    """POST `payload` (dict) like an AWS IoT HTTP rule action.

    Retries (up to `tries` attempts in total) only on 429 and 5xx. No retry when the connection
    failed or was closed, or when the response body exceeds 16384 bytes (docs/aws-iot.md, "Topic
    rule HTTP action").
    Returns a list of attempt outcomes: the HTTP status or a string naming the transport error.
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    outcomes = []
    for attempt in range(tries):
        try:
            status, _, data = http_call(url, "POST", body, hdrs, timeout, cafile, insecure)
        except (OSError, http.client.HTTPException) as exc:
            outcomes.append(f"error:{type(exc).__name__}")
            return outcomes
        outcomes.append(status)
        if status // 100 == 2 or len(data) > max_response:
            return outcomes
        if status != 429 and status // 100 != 5:
            return outcomes
        if attempt + 1 < tries:
            time.sleep(retry_delay)
    return outcomes
