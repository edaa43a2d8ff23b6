#!/usr/bin/env python3
"""Self-test of the AWS IoT stand-ins: SigV4, model validation, AWS semantics, quotas, faults and
the device gateway end to end (JITR event, activation, CONNACK). Real parts only: moto_server,
the stand-in and the gateway as separate processes, real TLS, real HTTP.

Run: python3 -m unittest -v test_standin   (from tests/sim) or python3 tests/sim/test_standin.py
"""

import importlib.util
import sys

if __name__ == "__main__" and not all(importlib.util.find_spec(m) for m in
                                      ("moto", "boto3", "botocore", "cryptography")):
    print("moto / boto3 / cryptography not installed (pip install 'moto[server]'): skipped")
    sys.exit(77)

import datetime  # noqa: E402
import hashlib
import http.client
import http.server
import json
import os
import queue
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import boto3
import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gateway  # noqa: E402
import iot_standin  # noqa: E402
import run_sim  # noqa: E402
import simcommon as sc  # noqa: E402

SIM = {}


def setUpModule():
    d = tempfile.mkdtemp(prefix="jitrca-simtest-")
    env, _ = run_sim.start(d, [])
    SIM.update(env)
    SIM["dir"] = d


def tearDownModule():
    if "dir" in SIM:
        run_sim.stop(SIM["dir"])


def admin(path, body=None):
    return sc.json_call(SIM["JITRCA_SIM_IOT_URL"] + path, "POST" if body is not None else "GET", body)


def client(secret=None, akid=None, token=None, retries=1, validate=False):
    return boto3.client(
        "iot", endpoint_url=SIM["JITRCA_SIM_IOT_URL"], region_name="us-east-1",
        aws_access_key_id=akid or SIM["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or SIM["AWS_SECRET_ACCESS_KEY"], aws_session_token=token,
        config=Config(retries={"total_max_attempts": retries, "mode": "standard"},
                      parameter_validation=validate, read_timeout=10, connect_timeout=5))


def signed(method, path, body=b"", service="iot", secret=None, akid=None, headers=None,
           amzdate=None, region="us-east-1", raw_query_signing=False, token=None):
    """Send one request signed with botocore's SigV4Auth; returns (status, headers, body).

    raw_query_signing=True signs the query exactly as written (like curl 7.88.1), which AWS (and
    the stand-in) reject when the query is not already canonical."""
    u = urllib.parse.urlsplit(SIM["JITRCA_SIM_IOT_URL"])
    host = f"{u.hostname}:{u.port}"
    req = AWSRequest(method=method, url=f"http://{host}{path}", data=body)
    req.headers["Host"] = host
    for k, v in (headers or {}).items():
        req.headers[k] = v
    if body:
        req.headers["Content-Type"] = "application/json"
    if token:
        req.headers["X-Amz-Security-Token"] = token
    amzdate = amzdate or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    req.headers["X-Amz-Date"] = amzdate
    req.context["timestamp"] = amzdate
    auth = SigV4Auth(Credentials(akid or SIM["AWS_ACCESS_KEY_ID"],
                                 secret or SIM["AWS_SECRET_ACCESS_KEY"]), service, region)
    if not raw_query_signing:
        path_only, _, q = path.partition("?")
        req.url = f"http://{host}{path_only}"
        req.params = [tuple(urllib.parse.unquote(x) for x in (p.partition("=")[0], p.partition("=")[2]))
                      for p in q.split("&")] if q else []
    cr = auth.canonical_request(req)
    sig = auth.signature(auth.string_to_sign(req, cr), req)
    hdrs = {k: v for k, v in req.headers.items()}
    hdrs["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={auth.credentials.access_key}/"
                             f"{amzdate[:8]}/{region}/{service}/aws4_request, "
                             f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(req))}, "
                             f"Signature={sig}")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=hdrs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def err(e):
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


# --- certificates ---------------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.timezone.utc)


def make_cert(cn, issuer=None, ca=False, key=None, days=30):
    """issuer = (key, cert) or None for self-signed. Returns (key, cert)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ikey, icert = issuer if issuer else (key, None)
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(icert.subject if icert else name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(days=1))
         .not_valid_after(NOW + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return key, b.sign(ikey, hashes.SHA256())


def pem(cert):
    return sc.cert_pem(cert)


def register_ca(c, cn="Sim Issuing CA", auto=True, active=True):
    ca = make_cert(cn, ca=True)
    code = c.get_registration_code()["registrationCode"]
    _, ver = make_cert(code, issuer=ca)
    r = c.register_ca_certificate(caCertificate=pem(ca[1]), verificationCertificate=pem(ver),
                                  setAsActive=active, allowAutoRegistration=auto)
    return ca, r["certificateId"]


class Receiver:
    """A tiny HTTP endpoint playing the JITR service: records requests, answers from a script."""

    def __init__(self):
        self.requests = []
        self.script = queue.Queue()
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                rec.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in
                                                                      self.headers.items()},
                                     "body": json.loads(body)})
                try:
                    status = rec.script.get_nowait()
                except queue.Empty:
                    status = 202
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def wait(self, n, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.requests) < n:
            time.sleep(0.02)
        return len(self.requests) >= n


def mqtt_connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = struct.pack("!H", len(cid)) + cid
    body = var + payload
    return bytes([0x10, len(body)]) + body


def device_session(certfile, keyfile, client_id="dev-1", send_connect=True, sni="localhost",
                   keep=False):
    """Connect like a device. Returns (outcome, detail, tls) with outcome in
    handshake_error | closed | error | connack."""
    ctx = ssl.create_default_context(cafile=SIM["JITRCA_SIM_GATEWAY_CA"])
    ctx.load_cert_chain(certfile, keyfile)
    if sni is None:
        ctx.check_hostname = False
    raw = socket.create_connection((SIM["JITRCA_SIM_GATEWAY_HOST"],
                                    int(SIM["JITRCA_SIM_GATEWAY_PORT"])), timeout=5)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=sni)
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return "handshake_error", str(e), None
    try:
        if send_connect:
            tls.sendall(mqtt_connect_packet(client_id))
        data = tls.recv(4)
        if not data:
            tls.close()
            return "closed", None, None
        if data[0] == 0x20:
            if not keep:
                tls.close()
                tls = None
            return "connack", data[3], tls
        tls.close()
        return "error", data, None
    except (ssl.SSLError, OSError) as e:
        tls.close()
        return "error", str(e), None


class Base(unittest.TestCase):
    def setUp(self):
        admin("/_standin/reset", {})
        admin("/_standin/config", {"quotas": {"enabled": False}})
        self.c = client(retries=1)
        self.tmp = tempfile.mkdtemp(prefix="jitrca-simtest-case-")

    def write_device(self, key, cert, chain=()):
        k = os.path.join(self.tmp, f"{sc.cert_id(cert)[:12]}.key")
        p = os.path.join(self.tmp, f"{sc.cert_id(cert)[:12]}-{len(chain)}.pem")
        with open(k, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(p, "w") as f:
            f.write(pem(cert) + "".join(pem(c) for c in chain))
        return p, k


# --- SigV4 -----------------------------------------------------------------------------------

class TestSigV4Vectors(unittest.TestCase):
    """The verifier against docs/aws-iot.md, "SigV4 test vectors" (computed independently)."""
    CREDS = {"AKIDEXAMPLE": ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)}
    WHEN = datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
    HOST = "iot.us-east-1.amazonaws.com"

    def check(self, method, target, headers, body, service, signed_headers, sig, creds=None):
        auth = (f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/{service}/aws4_request,"
                f" SignedHeaders={signed_headers}, Signature={sig}")
        hdrs = [("Host", self.HOST), ("X-Amz-Date", "20260101T000000Z"), ("Authorization", auth)] + headers
        return iot_standin.verify_sigv4(method, target, hdrs, body, creds or self.CREDS,
                                        "us-east-1", ["iot", "execute-api"], now=self.WHEN)

    def test_vectors_verify(self):
        ct = [("Content-Type", "application/json")]
        self.check("POST", "/things/dev-001", ct, b"{}", "iot", "content-type;host;x-amz-date",
                   "1d42a6a69715b5bac085b84834cfd7c1fce937a2dc9c46f1a78173ed067cfb3c")
        self.check("POST", "/things/dev-001", ct, b"{}", "execute-api", "content-type;host;x-amz-date",
                   "a3bf6d67e12b4f7f4e5615d5afc38113d35255193854fe116e117b6a3ced9492")
        tok = {"AKIDEXAMPLE": ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FQoGZXIvYXdzEXAMPLETOKEN")}
        self.check("PUT", "/certificates/" + "0123456789abcdef" * 4 + "?newStatus=ACTIVE",
                   [("X-Amz-Security-Token", "FQoGZXIvYXdzEXAMPLETOKEN")], b"", "iot",
                   "host;x-amz-date;x-amz-security-token",
                   "954422c4be9e17394147ff904865433930ab2f275a1511a7d992e448778dc1ad", tok)
        self.check("GET", "/destinations/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Aruledestination/http/abc",
                   [], b"", "iot", "host;x-amz-date",
                   "004ec7ed2b868d06ef87ff888fc4248937a1b0ff296b46d7c4d6cb8e17715703")

    def test_vector_failures(self):
        ct = [("Content-Type", "application/json")]
        good = "1d42a6a69715b5bac085b84834cfd7c1fce937a2dc9c46f1a78173ed067cfb3c"
        cases = [
            # (body, service, signature, expected code, message fragment)
            (b"{ }", "iot", good, "InvalidSignatureException", "does not match"),
            (b"{}", "iot", "0" + good[1:], "InvalidSignatureException", "Canonical String"),
            (b"{}", "s3", good, "InvalidSignatureException", "scoped to correct service"),
        ]
        for body, svc, sig, code, frag in cases:
            with self.assertRaises(iot_standin.ApiError) as cm:
                self.check("POST", "/things/dev-001", ct, body, svc, "content-type;host;x-amz-date", sig)
            self.assertEqual((cm.exception.code, cm.exception.status), (code, 403))
            self.assertIn(frag, cm.exception.message)
        tok = {"AKIDEXAMPLE": ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FQoGZXIvYXdzEXAMPLETOKEN")}
        with self.assertRaises(iot_standin.ApiError) as cm:  # token configured but not sent
            self.check("POST", "/things/dev-001", ct, b"{}", "iot", "content-type;host;x-amz-date",
                       good, tok)
        self.assertEqual(cm.exception.code, "UnrecognizedClientException")
        with self.assertRaises(iot_standin.ApiError) as cm:  # signed header missing on the wire
            self.check("POST", "/things/dev-001", [], b"{}", "iot", "content-type;host;x-amz-date", good)
        self.assertIn("'content-type' is named as a SignedHeader", cm.exception.message)


class TestFrontDoor(Base):
    def test_wrong_secret_unknown_key_and_token(self):
        with self.assertRaises(ClientError) as cm:
            client(secret="wrong-secret").get_registration_code()
        self.assertEqual(err(cm.exception), ("InvalidSignatureException", 403))
        with self.assertRaises(ClientError) as cm:
            client(akid="AKIDUNKNOWN").get_registration_code()
        self.assertEqual(err(cm.exception), ("UnrecognizedClientException", 403))
        temp = (SIM["JITRCA_SIM_TEMP_ACCESS_KEY_ID"], SIM["JITRCA_SIM_TEMP_SECRET_ACCESS_KEY"])
        with self.assertRaises(ClientError) as cm:
            client(akid=temp[0], secret=temp[1]).get_registration_code()
        self.assertEqual(err(cm.exception), ("UnrecognizedClientException", 403))
        with self.assertRaises(ClientError) as cm:
            client(akid=temp[0], secret=temp[1], token="not-the-token").get_registration_code()
        self.assertEqual(err(cm.exception), ("UnrecognizedClientException", 403))
        r = client(akid=temp[0], secret=temp[1],
                   token=SIM["JITRCA_SIM_TEMP_SESSION_TOKEN"]).get_registration_code()
        self.assertEqual(len(r["registrationCode"]), 64)
        self.assertEqual(admin("/_standin/stats")["front_door"],
                         {"InvalidSignatureException": 1, "UnrecognizedClientException": 3})

    def test_expired_and_future_dates(self):
        old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=16))
        st, h, b = signed("GET", "/registrationcode", amzdate=old.strftime("%Y%m%dT%H%M%SZ"))
        self.assertEqual((st, h["x-amzn-errortype"]), (403, "InvalidSignatureException"))
        self.assertIn("Signature expired", json.loads(b)["message"])
        new = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=16))
        st, h, b = signed("GET", "/registrationcode", amzdate=new.strftime("%Y%m%dT%H%M%SZ"))
        self.assertEqual(st, 403)
        self.assertIn("Signature not yet current", json.loads(b)["message"])
        ok = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=14))
        st, _, _ = signed("GET", "/registrationcode", amzdate=ok.strftime("%Y%m%dT%H%M%SZ"))
        self.assertEqual(st, 200)

    def test_signing_names_region_and_missing_auth(self):
        self.assertEqual(signed("GET", "/registrationcode", service="execute-api")[0], 200)
        self.assertEqual(signed("GET", "/registrationcode", service="iot")[0], 200)
        st, h, b = signed("GET", "/registrationcode", service="iotdata")
        self.assertEqual((st, h["x-amzn-errortype"]), (403, "InvalidSignatureException"))
        st, h, b = signed("GET", "/registrationcode", region="eu-west-1")
        self.assertEqual((st, h["x-amzn-errortype"]), (403, "InvalidSignatureException"))
        self.assertIn("valid region", json.loads(b)["message"])
        s, h, _ = sc.http_call(SIM["JITRCA_SIM_IOT_URL"] + "/registrationcode")
        self.assertEqual((s, h["x-amzn-errortype"]), (403, "MissingAuthenticationTokenException"))
        self.assertIn("x-amzn-requestid", h)
        # another region once it is accepted; each operation counts its requests' regions
        admin("/_standin/config", {"extra_regions": ["eu-west-1"]})
        self.assertEqual(signed("GET", "/registrationcode", region="eu-west-1")[0], 200)
        admin("/_standin/config", {"extra_regions": []})
        self.assertEqual(admin("/_standin/stats")["operations"]["GetRegistrationCode"]["regions"],
                         {"us-east-1": 2, "eu-west-1": 1})

    def test_query_and_path_canonicalization(self):
        # Sorted, encoded query: fine. The same query signed verbatim with a raw ':' (curl 7.88.1)
        # does not match what AWS computes.
        st, _, b = signed("GET", "/endpoint?endpointType=iot%3AData-ATS")
        self.assertEqual(st, 200, b)
        st, h, _ = signed("GET", "/endpoint?endpointType=iot:Data-ATS", raw_query_signing=True)
        self.assertEqual((st, h["x-amzn-errortype"]), (403, "InvalidSignatureException"))
        st, _, _ = signed("GET", "/endpoint?endpointType=iot:Data-ATS")
        self.assertEqual(st, 200)
        # Unsorted wire order is fine when the signature used the canonical order.
        st, _, b = signed("GET", "/certificates-by-ca/" + "a" * 64 + "?pageSize=2&isAscendingOrder=true")
        self.assertEqual(st, 200, b)


# --- model validation -----------------------------------------------------------------------

class TestValidation(Base):
    def test_pattern_length_enum_required_and_routes(self):
        with self.assertRaises(ClientError) as cm:
            self.c.create_thing(thingName="bad name")
        self.assertEqual(err(cm.exception), ("InvalidRequestException", 400))
        self.assertIn("regular expression pattern: [a-zA-Z0-9:_-]+", str(cm.exception))
        with self.assertRaises(ClientError) as cm:
            self.c.update_certificate(certificateId="abc", newStatus="ACTIVE")
        self.assertIn("length greater than or equal to 64", str(cm.exception))
        with self.assertRaises(ClientError) as cm:
            self.c.update_certificate(certificateId="a" * 64, newStatus="ENABLED")
        self.assertIn("enum value set", str(cm.exception))
        st, h, b = signed("PUT", "/certificates/" + "a" * 64)
        self.assertEqual((st, h["x-amzn-errortype"]), (400, "InvalidRequestException"))
        self.assertIn("'newStatus' failed to satisfy constraint: Member must not be null",
                      json.loads(b)["message"])
        st, h, b = signed("POST", "/things/ok", body=b"{not json")
        self.assertEqual((st, h["x-amzn-errortype"]), (400, "InvalidRequestException"))
        st, h, b = signed("POST", "/things/ok", body=b'{"attributePayload": {"attributes": "x"}}')
        self.assertIn("attributePayload.attributes", json.loads(b)["message"])
        st, h, b = signed("GET", "/certificates-by-ca/" + "a" * 64 + "?pageSize=0")
        self.assertIn("greater than or equal to 1", json.loads(b)["message"])
        st, h, _ = signed("GET", "/no/such/route")
        self.assertEqual((st, h["x-amzn-errortype"]), (404, "UnknownOperationException"))
        with self.assertRaises(ClientError):
            self.c.describe_thing(thingName="nothing")  # nothing was created by the bad calls
        self.assertEqual(admin("/_standin/stats")["operations"]["CreateThing"]["invalid"], 3)


# --- AWS semantics --------------------------------------------------------------------------

class TestSemantics(Base):
    def test_registration_code_and_ca_registration(self):
        code = self.c.get_registration_code()["registrationCode"]
        self.assertRegex(code, "^[0-9a-f]{64}$")
        self.assertEqual(self.c.get_registration_code()["registrationCode"], code)
        ca = make_cert("CA one", ca=True)
        other = make_cert("CA other", ca=True)
        cases = [
            ("wrong CN", dict(verificationCertificate=pem(make_cert("not-the-code", issuer=ca)[1])),
             ("RegistrationCodeValidationException", 400)),
            ("not signed by the CA", dict(verificationCertificate=pem(make_cert(code, issuer=other)[1])),
             ("CertificateValidationException", 400)),
            ("missing in DEFAULT", {}, ("InvalidRequestException", 400)),
            ("present in SNI_ONLY", dict(certificateMode="SNI_ONLY",
                                         verificationCertificate=pem(make_cert(code, issuer=ca)[1])),
             ("InvalidRequestException", 400)),
        ]
        for name, kw, want in cases:
            with self.subTest(name):
                with self.assertRaises(ClientError) as cm:
                    self.c.register_ca_certificate(caCertificate=pem(ca[1]), **kw)
                self.assertEqual(err(cm.exception), want)
        self.assertEqual(self.c.list_ca_certificates()["certificates"], [])
        leaf_as_ca = make_cert("not a CA", ca=False)
        with self.assertRaises(ClientError) as cm:
            self.c.register_ca_certificate(caCertificate=pem(leaf_as_ca[1]), certificateMode="SNI_ONLY")
        self.assertEqual(err(cm.exception), ("CertificateValidationException", 400))
        weak = make_cert("weak CA", ca=True, key=rsa.generate_private_key(65537, 1024))
        with self.assertRaises(ClientError) as cm:
            self.c.register_ca_certificate(caCertificate=pem(weak[1]), certificateMode="SNI_ONLY")
        self.assertIn("key", str(cm.exception))

        r = self.c.register_ca_certificate(caCertificate=pem(ca[1]), setAsActive=True,
                                           allowAutoRegistration=True,
                                           verificationCertificate=pem(make_cert(code, issuer=ca)[1]))
        caid = sc.cert_id(ca[1])
        self.assertEqual(r["certificateId"], caid)
        self.assertEqual(r["certificateArn"], f"arn:aws:iot:us-east-1:123456789012:cacert/{caid}")
        with self.assertRaises(ClientError) as cm:
            self.c.register_ca_certificate(caCertificate=pem(ca[1]),
                                           verificationCertificate=pem(make_cert(code, issuer=ca)[1]))
        self.assertEqual(err(cm.exception), ("ResourceAlreadyExistsException", 409))
        body = json.dumps({"caCertificate": pem(ca[1]), "certificateMode": "SNI_ONLY"}).encode()
        st, h, b = signed("POST", "/cacertificate", body=body)
        self.assertEqual((st, h["x-amzn-errortype"]), (409, "ResourceAlreadyExistsException"))
        self.assertEqual(json.loads(b)["resourceId"], caid)
        d = self.c.describe_ca_certificate(certificateId=caid)["certificateDescription"]
        self.assertEqual((d["status"], d["autoRegistrationStatus"], d["certificateMode"]),
                         ("ACTIVE", "ENABLE", "DEFAULT"))
        self.assertEqual(d["validity"]["notAfter"], ca[1].not_valid_after_utc)
        self.c.update_ca_certificate(certificateId=caid, newStatus="INACTIVE",
                                     newAutoRegistrationStatus="DISABLE")
        d = self.c.describe_ca_certificate(certificateId=caid)["certificateDescription"]
        self.assertEqual((d["status"], d["autoRegistrationStatus"]), ("INACTIVE", "DISABLE"))
        sni = make_cert("SNI CA", ca=True)
        self.c.register_ca_certificate(caCertificate=pem(sni[1]), certificateMode="SNI_ONLY")
        d = self.c.describe_ca_certificate(certificateId=sc.cert_id(sni[1]))["certificateDescription"]
        self.assertEqual((d["status"], d["autoRegistrationStatus"], d["certificateMode"]),
                         ("INACTIVE", "DISABLE", "SNI_ONLY"))
        self.assertEqual(len(self.c.list_ca_certificates()["certificates"]), 2)

    def test_certificates_things_policies(self):
        ca, caid = register_ca(self.c)
        devs = [make_cert(f"dev-{i}", issuer=ca) for i in range(5)]
        for _, d in devs:
            r = self.c.register_certificate(certificatePem=pem(d), caCertificatePem=pem(ca[1]),
                                            status="INACTIVE")
            self.assertEqual(r["certificateId"], hashlib.sha256(sc.cert_der(d)).hexdigest())
        cid = sc.cert_id(devs[0][1])
        d = self.c.describe_certificate(certificateId=cid)["certificateDescription"]
        self.assertEqual(d["caCertificateId"], caid)
        self.assertEqual(d["validity"]["notBefore"], devs[0][1].not_valid_before_utc)
        with self.assertRaises(ClientError) as cm:
            self.c.update_certificate(certificateId=cid, newStatus="PENDING_ACTIVATION")
        self.assertEqual(err(cm.exception), ("InvalidRequestException", 400))
        self.c.update_certificate(certificateId=cid, newStatus="ACTIVE")
        self.c.update_certificate(certificateId=cid, newStatus="ACTIVE")  # idempotent
        # REVOKED is final: no other status afterwards; REVOKED again is fine
        rid = sc.cert_id(devs[1][1])
        self.c.update_certificate(certificateId=rid, newStatus="REVOKED")
        for st in ("ACTIVE", "INACTIVE"):
            with self.assertRaises(ClientError) as cm:
                self.c.update_certificate(certificateId=rid, newStatus=st)
            self.assertEqual(err(cm.exception), ("CertificateStateException", 406))
        self.c.update_certificate(certificateId=rid, newStatus="REVOKED")
        d = self.c.describe_certificate(certificateId=rid)["certificateDescription"]
        self.assertEqual(d["status"], "REVOKED")
        seen, marker = [], None
        while True:
            kw = {"marker": marker} if marker else {}
            page = self.c.list_certificates_by_ca(caCertificateId=caid, pageSize=2, **kw)
            self.assertLessEqual(len(page["certificates"]), 2)
            seen += [c["certificateId"] for c in page["certificates"]]
            marker = page.get("nextMarker")
            if not marker:
                break
        self.assertEqual(sorted(seen), sorted(sc.cert_id(d) for _, d in devs))

        t1 = self.c.create_thing(thingName="dev-0", attributePayload={"attributes": {"batch": "B7"}})
        t2 = self.c.create_thing(thingName="dev-0", attributePayload={"attributes": {"batch": "B7"}})
        self.assertEqual(t1["thingId"], t2["thingId"])
        with self.assertRaises(ClientError) as cm:
            self.c.create_thing(thingName="dev-0", attributePayload={"attributes": {"batch": "B8"}})
        self.assertEqual(err(cm.exception), ("ResourceAlreadyExistsException", 409))
        self.assertEqual(self.c.describe_thing(thingName="dev-0")["attributes"], {"batch": "B7"})

        arn = f"arn:aws:iot:us-east-1:123456789012:cert/{cid}"
        doc = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]})
        for i in range(11):
            self.c.create_policy(policyName=f"p{i}", policyDocument=doc)
        for i in range(10):
            self.c.attach_policy(policyName=f"p{i}", target=arn)
        self.c.attach_policy(policyName="p0", target=arn)  # re-attach: no-op
        with self.assertRaises(ClientError) as cm:
            self.c.attach_policy(policyName="p10", target=arn)
        self.assertEqual(err(cm.exception), ("LimitExceededException", 410))
        self.assertEqual(len(self.c.list_attached_policies(target=arn)["policies"]), 10)
        with self.assertRaises(ClientError) as cm:
            self.c.create_policy(policyName="p0", policyDocument=doc)
        self.assertEqual(err(cm.exception), ("ResourceAlreadyExistsException", 409))
        with self.assertRaises(ClientError) as cm:
            self.c.delete_policy_version(policyName="p0", policyVersionId="1")
        self.assertEqual(err(cm.exception), ("DeleteConflictException", 409))
        self.c.attach_thing_principal(thingName="dev-0", principal=arn)
        self.assertEqual(self.c.list_principal_things(principal=arn)["things"], ["dev-0"])


    def test_certificate_ca_as_registered(self):
        """caCertificateId is the CA a certificate was registered with, none without one."""
        ca, caid = register_ca(self.c)
        _, a = make_cert("with-ca", issuer=ca)
        _, b = make_cert("without-ca", issuer=ca)
        self.c.register_certificate(certificatePem=pem(a), caCertificatePem=pem(ca[1]),
                                    status="ACTIVE")
        self.c.register_certificate_without_ca(certificatePem=pem(b), status="INACTIVE")
        da = self.c.describe_certificate(certificateId=sc.cert_id(a))["certificateDescription"]
        db = self.c.describe_certificate(certificateId=sc.cert_id(b))["certificateDescription"]
        self.assertEqual((da["caCertificateId"], da["status"]), (caid, "ACTIVE"))
        self.assertNotIn("caCertificateId", db)
        self.assertEqual(db["status"], "INACTIVE")

    def test_exclusive_thing(self):
        """EXCLUSIVE_THING: the principal has that one thing; AWS refuses a second."""
        ca, _ = register_ca(self.c)
        _, d = make_cert("ex-1", issuer=ca)
        cid = self.c.register_certificate(certificatePem=pem(d), caCertificatePem=pem(ca[1]),
                                          status="ACTIVE")["certificateId"]
        arn = f"arn:aws:iot:us-east-1:123456789012:cert/{cid}"
        for t in ("t1", "t2"):
            self.c.create_thing(thingName=t)
        self.c.attach_thing_principal(thingName="t1", principal=arn,
                                      thingPrincipalType="EXCLUSIVE_THING")
        self.c.attach_thing_principal(thingName="t1", principal=arn,
                                      thingPrincipalType="EXCLUSIVE_THING")  # again: fine
        objs = self.c.list_principal_things_v2(principal=arn)["principalThingObjects"]
        self.assertEqual(objs, [{"thingName": "t1", "thingPrincipalType": "EXCLUSIVE_THING"}])
        objs = self.c.list_thing_principals_v2(thingName="t1")["thingPrincipalObjects"]
        self.assertEqual(objs, [{"principal": arn, "thingPrincipalType": "EXCLUSIVE_THING"}])
        for kind in ("EXCLUSIVE_THING", "NON_EXCLUSIVE_THING"):
            with self.assertRaises(ClientError) as cm:
                self.c.attach_thing_principal(thingName="t2", principal=arn,
                                              thingPrincipalType=kind)
            self.assertEqual(err(cm.exception), ("InvalidRequestException", 400))
            self.assertIn("attached exclusively to thing t1",
                          cm.exception.response["Error"]["Message"])
        with self.assertRaises(ClientError):
            self.c.attach_thing_principal(thingName="t2", principal=arn)
        self.assertEqual(self.c.list_principal_things(principal=arn)["things"], ["t1"])
        # detached: another thing may have it, and then no exclusive attachment elsewhere
        self.c.detach_thing_principal(thingName="t1", principal=arn)
        self.c.attach_thing_principal(thingName="t2", principal=arn)
        with self.assertRaises(ClientError) as cm:
            self.c.attach_thing_principal(thingName="t1", principal=arn,
                                          thingPrincipalType="EXCLUSIVE_THING")
        self.assertEqual(err(cm.exception), ("InvalidRequestException", 400))
        self.c.attach_thing_principal(thingName="t1", principal=arn)
        self.assertEqual(sorted(self.c.list_principal_things(principal=arn)["things"]),
                         ["t1", "t2"])

    def test_detach_thing_principal(self):
        """A renewal's retirement: the old principal detached, the thing keeps the new one."""
        ca, _ = register_ca(self.c)
        arns = []
        for n in ("old", "new"):
            _, d = make_cert(n, issuer=ca)
            cid = self.c.register_certificate(certificatePem=pem(d), caCertificatePem=pem(ca[1]),
                                              status="ACTIVE")["certificateId"]
            arns.append(f"arn:aws:iot:us-east-1:123456789012:cert/{cid}")
        self.c.create_thing(thingName="dev")
        for a in arns:
            self.c.attach_thing_principal(thingName="dev", principal=a)
        self.assertEqual(sorted(self.c.list_thing_principals(thingName="dev")["principals"]),
                         sorted(arns))
        self.c.detach_thing_principal(thingName="dev", principal=arns[0])
        self.assertEqual(self.c.list_thing_principals(thingName="dev")["principals"], [arns[1]])
        self.assertEqual(self.c.list_principal_things(principal=arns[0])["things"], [])
        # detached already, or an unknown thing: ResourceNotFoundException
        for thing in ("dev", "nosuch"):
            with self.assertRaises(ClientError) as cm:
                self.c.detach_thing_principal(thingName=thing, principal=arns[0])
            self.assertEqual(err(cm.exception), ("ResourceNotFoundException", 404))
        with self.assertRaises(ClientError) as cm:
            self.c.list_thing_principals(thingName="nosuch")
        self.assertEqual(err(cm.exception), ("ResourceNotFoundException", 404))


# --- quotas and faults ----------------------------------------------------------------------

class TestQuotas(Base):
    def test_bucket_never_exceeded_under_concurrent_load(self):
        rate = 20
        admin("/_standin/config", {"quotas": {"enabled": True, "burst_seconds": 1.0,
                                              "rates": {"DescribeEndpoint": rate}}})
        admin("/_standin/stats/reset", {})
        ok, throttled, other = [], [], []
        stop = time.time() + 2.0

        def hammer():
            c = client(retries=1)
            while time.time() < stop:
                try:
                    c.describe_endpoint(endpointType="iot:Data-ATS")
                    ok.append(time.time())
                except ClientError as e:
                    (throttled if err(e) == ("ThrottlingException", 400) else other).append(e)

        t0 = time.time()
        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        self.assertEqual(other, [])
        self.assertGreater(len(throttled), 0)
        self.assertLessEqual(len(ok), rate * 1.0 + rate * elapsed + 1)
        st = admin("/_standin/stats")["operations"]["DescribeEndpoint"]
        self.assertEqual(st["admitted"], len(ok))
        self.assertEqual(st["throttled"], len(throttled))
        self.assertLessEqual(st["max_admitted_1s"], 2 * rate)  # capacity + one second of refill
        self.assertGreater(st["max_rate_1s"], st["max_admitted_1s"])

    def test_paced_client_is_never_throttled(self):
        admin("/_standin/config", {"quotas": {"enabled": True, "rates": {"DescribeEndpoint": 10}}})
        admin("/_standin/stats/reset", {})
        for _ in range(15):
            self.c.describe_endpoint(endpointType="iot:Data-ATS")
            time.sleep(0.125)
        st = admin("/_standin/stats")["operations"]["DescribeEndpoint"]
        self.assertEqual((st["throttled"], st["admitted"]), (0, 15))
        self.assertLessEqual(st["max_rate_1s"], 10)

    def test_throttle_wire_format(self):
        admin("/_standin/config", {"quotas": {"enabled": True, "burst_seconds": 1.0,
                                              "rates": {"GetRegistrationCode": 1}}})
        self.assertEqual(signed("GET", "/registrationcode")[0], 200)
        st, h, b = signed("GET", "/registrationcode")
        self.assertEqual((st, h["x-amzn-errortype"], json.loads(b)["message"]),
                         (400, "ThrottlingException", "Rate exceeded"))


class TestFaults(Base):
    def test_scripted_faults(self):
        admin("/_standin/config", {"next_faults": {"CreateThing": ["503", "500", "throttle"]}})
        for want in (("ServiceUnavailableException", 503), ("InternalFailureException", 500),
                     ("ThrottlingException", 400)):
            with self.assertRaises(ClientError) as cm:
                self.c.create_thing(thingName="f1")
            self.assertEqual(err(cm.exception), want)
        with self.assertRaises(ClientError):
            self.c.describe_thing(thingName="f1")  # a 5xx fault is raised before the operation
        self.c.create_thing(thingName="f1")
        self.assertEqual(admin("/_standin/stats")["operations"]["CreateThing"]["faults"], 3)

    def test_lost_response_malformed_truncated_latency(self):
        admin("/_standin/config", {"faults": {"timeout_ms": 300},
                                   "next_faults": {"CreateThing": ["timeout", "malformed",
                                                                   "truncated"]}})
        t0 = time.time()
        with self.assertRaises(http.client.RemoteDisconnected):
            signed("POST", "/things/lost", body=b"{}")
        self.assertGreaterEqual(time.time() - t0, 0.3)
        self.assertEqual(self.c.describe_thing(thingName="lost")["thingName"], "lost")  # it ran
        st, _, b = signed("POST", "/things/malformed", body=b"{}")
        self.assertEqual(st, 200)
        with self.assertRaises(ValueError):
            json.loads(b)
        with self.assertRaises(http.client.IncompleteRead):
            signed("POST", "/things/truncated", body=b"{}")
        admin("/_standin/config", {"faults": {"latency_ms": 150}})
        t0 = time.time()
        self.c.describe_endpoint(endpointType="iot:Data-ATS")
        self.assertGreaterEqual(time.time() - t0, 0.15)
        # latency for the listed operations only
        admin("/_standin/config", {"faults": {"latency_ms": 1500,
                                              "operations": ["DescribeEndpoint"]}})
        t0 = time.time()
        self.c.describe_endpoint(endpointType="iot:Data-ATS")
        self.assertGreaterEqual(time.time() - t0, 1.5)
        t0 = time.time()
        self.c.get_registration_code()
        self.assertLess(time.time() - t0, 1.5)
        admin("/_standin/config", {"faults": {"latency_ms": 0, "operations": []}})

    def test_random_error_fraction(self):
        admin("/_standin/config", {"seed": 7, "faults": {"error_rate": 0.5,
                                                         "operations": ["DescribeEndpoint"]}})
        codes = []
        for _ in range(60):
            try:
                self.c.describe_endpoint(endpointType="iot:Data-ATS")
                codes.append(200)
            except ClientError as e:
                codes.append(err(e)[1])
        self.assertTrue(set(codes) <= {200, 500, 503})
        self.assertTrue(15 <= codes.count(200) <= 45, codes)
        self.assertIn(500, codes)
        self.assertIn(503, codes)
        self.c.get_registration_code()  # other operations untouched


# --- gateway end to end ---------------------------------------------------------------------

EVENT_FIELDS = {"certificateId": str, "caCertificateId": str, "timestamp": int,
                "certificateStatus": str, "awsAccountId": str,
                "certificateRegistrationTimestamp": str}


class TestGateway(Base):
    def setUp(self):
        super().setUp()
        self.rx = Receiver()
        admin("/_standin/config", {"gateway": {"event_url": self.rx.url + "/v1/jitr/events",
                                               "event_headers": {"x-jitr-secret": "s3cret"},
                                               "retry_delay_ms": 50}})

    def tearDown(self):
        self.rx.close()

    def test_jitr_flow(self):
        ca, caid = register_ca(self.c)
        key, dev = make_cert("dev-1", issuer=ca)
        cid = sc.cert_id(dev)
        leaf_only = self.write_device(key, dev)
        with_chain = self.write_device(key, dev, chain=[ca[1]])

        outcome, detail, _ = device_session(*leaf_only)
        self.assertIn(outcome, ("closed", "error"), detail)
        self.assertTrue(self.rx.wait(1))
        ev = self.rx.requests[0]
        self.assertEqual(ev["headers"]["x-jitr-secret"], "s3cret")
        self.assertEqual(ev["headers"]["content-type"], "application/json")
        self.assertEqual(ev["path"], "/v1/jitr/events")
        body = ev["body"]
        self.assertEqual(set(body), set(EVENT_FIELDS))
        for k, typ in EVENT_FIELDS.items():
            self.assertIsInstance(body[k], typ, k)
        self.assertEqual((body["certificateId"], body["caCertificateId"], body["certificateStatus"],
                          body["awsAccountId"]), (cid, caid, "PENDING_ACTIVATION", "123456789012"))
        self.assertLessEqual(abs(body["timestamp"] - sc.now_ms()), 10000)
        d = self.c.describe_certificate(certificateId=cid)["certificateDescription"]
        self.assertEqual((d["status"], d["caCertificateId"]), ("PENDING_ACTIVATION", caid))

        outcome, _, _ = device_session(*with_chain)  # pending: the event again
        self.assertIn(outcome, ("closed", "error"))
        self.assertTrue(self.rx.wait(2))
        again = self.rx.requests[1]["body"]
        self.assertEqual(again["certificateRegistrationTimestamp"],
                         body["certificateRegistrationTimestamp"])
        self.assertEqual(again["certificateId"], cid)

        arn = d["certificateArn"]
        self.c.update_certificate(certificateId=cid, newStatus="ACTIVE")
        outcome, code, _ = device_session(*leaf_only, client_id="dev-1")
        self.assertEqual((outcome, code), ("connack", 5))  # active but no policy, no thing
        self.c.create_thing(thingName="dev-1")
        self.c.create_policy(policyName="dev", policyDocument='{"Version":"2012-10-17","Statement":[]}')
        self.c.attach_policy(policyName="dev", target=arn)
        outcome, code, _ = device_session(*leaf_only, client_id="dev-1")
        self.assertEqual((outcome, code), ("connack", 5))  # still no thing attached
        self.c.attach_thing_principal(thingName="dev-1", principal=arn)
        outcome, code, tls = device_session(*with_chain, client_id="dev-1", keep=True)
        self.assertEqual((outcome, code), ("connack", 0))
        tls.sendall(b"\xc0\x00")  # PINGREQ
        self.assertEqual(tls.recv(2), b"\xd0\x00")
        tls.sendall(b"\xe0\x00")  # DISCONNECT
        tls.close()
        mqtt5 = bytearray(mqtt_connect_packet("dev-1"))
        mqtt5[8] = 5  # protocol level 5
        ctx = ssl.create_default_context(cafile=SIM["JITRCA_SIM_GATEWAY_CA"])
        ctx.load_cert_chain(*leaf_only)
        with ctx.wrap_socket(socket.create_connection((SIM["JITRCA_SIM_GATEWAY_HOST"],
                             int(SIM["JITRCA_SIM_GATEWAY_PORT"])), timeout=5),
                             server_hostname="localhost") as s5:
            s5.sendall(bytes(mqtt5))
            self.assertEqual(s5.recv(4), b"\x20\x02\x00\x01")  # unacceptable protocol version
        self.assertEqual(len(self.rx.requests), 2)  # no event for an active certificate

        for status in ("INACTIVE", "REVOKED"):
            self.c.update_certificate(certificateId=cid, newStatus=status)
            outcome, detail, _ = device_session(*leaf_only)
            self.assertIn(outcome, ("closed", "error"), (status, detail))
        time.sleep(0.3)
        self.assertEqual(len(self.rx.requests), 2)
        g = admin("/_standin/stats")["gateway"]
        self.assertEqual((g["jitr_registered"], g["events_sent"], g["connack_accepted"],
                          g["refused_inactive"], g["refused_revoked"]), (1, 2, 1, 1, 1))

    def test_refusals_without_events(self):
        ca, caid = register_ca(self.c, auto=False)
        key, dev = make_cert("dev-2", issuer=ca)
        outcome, _, _ = device_session(*self.write_device(key, dev))
        self.assertIn(outcome, ("closed", "error"))
        stranger = make_cert("Unknown CA", ca=True)
        skey, sdev = make_cert("dev-3", issuer=stranger)
        outcome, detail, _ = device_session(*self.write_device(skey, sdev, chain=[stranger[1]]))
        self.assertIn(outcome, ("handshake_error", "error"))
        # the client sees the alert or just EOF (a race); the gateway's side says why
        self.c.update_ca_certificate(certificateId=caid, newAutoRegistrationStatus="ENABLE",
                                     newStatus="INACTIVE")
        outcome, _, _ = device_session(*self.write_device(key, dev))
        self.assertIn(outcome, ("closed", "error"))
        time.sleep(0.3)
        self.assertEqual(self.rx.requests, [])
        for d in (dev, sdev):
            with self.assertRaises(ClientError) as cm:
                self.c.describe_certificate(certificateId=sc.cert_id(d))
            self.assertEqual(err(cm.exception), ("ResourceNotFoundException", 404))
        g = admin("/_standin/stats")["gateway"]
        self.assertEqual((g["refused_unregistered"], g["handshake_refused"]), (2, 1))
        refused = [e for e in admin("/_standin/stats")["gateway_log"] if e["kind"] == "handshake_refused"]
        self.assertIn("certificate verify failed", refused[0]["error"])

    def test_event_retry_rule_and_connect_trigger(self):
        ca, caid = register_ca(self.c)
        admin("/_standin/config", {"gateway": {"jitr_trigger": "connect"}})
        for s in (503, 429):
            self.rx.script.put(s)
        key, dev = make_cert("dev-4", issuer=ca)
        outcome, code, _ = device_session(*self.write_device(key, dev))
        self.assertEqual((outcome, code), ("connack", 5))
        self.assertTrue(self.rx.wait(3))
        time.sleep(0.3)
        self.assertEqual(len(self.rx.requests), 3)
        log = [e for e in admin("/_standin/stats")["gateway_log"] if e["kind"] == "event"]
        self.assertEqual(log[-1]["outcomes"], [503, 429, 202])
        self.rx.requests.clear()
        for s in (500, 500, 500, 500):
            self.rx.script.put(s)
        device_session(*self.write_device(key, dev))
        self.assertTrue(self.rx.wait(3))
        time.sleep(0.4)
        self.assertEqual(len(self.rx.requests), 3)  # at most 3 tries
        self.rx.requests.clear()
        while not self.rx.script.empty():
            self.rx.script.get()
        self.rx.script.put(403)
        device_session(*self.write_device(key, dev))
        self.assertTrue(self.rx.wait(1))
        time.sleep(0.3)
        self.assertEqual(len(self.rx.requests), 1)  # a 4xx other than 429 is not retried

    def connect_all(self, devices):
        threads = [threading.Thread(target=device_session, args=d) for d in devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def test_event_batching_and_extra_members(self):
        ca, caid = register_ca(self.c)
        devs = []
        for i in range(5):
            key, dev = make_cert(f"dev-b{i}", issuer=ca)
            devs.append(self.write_device(key, dev))
        # event_extra: what AWS adds or changes, e.g. a null registration timestamp
        admin("/_standin/config", {"gateway": {"event_extra": {
            "certificateRegistrationTimestamp": None, "sourceIp": "198.51.100.7"}}})
        device_session(*devs[0])
        self.assertTrue(self.rx.wait(1))
        body = self.rx.requests[0]["body"]
        self.assertIsInstance(body, dict)
        self.assertIsNone(body["certificateRegistrationTimestamp"])
        self.assertEqual(body["sourceIp"], "198.51.100.7")
        # batching: one JSON array per batch, at most maxBatchSize, flushed by size or time
        self.rx.requests.clear()
        admin("/_standin/config", {"gateway": {"event_batching": {"maxBatchOpenMs": 200,
                                                                  "maxBatchSize": 3}}})
        self.connect_all(devs[1:])
        self.assertTrue(self.rx.wait(2))
        time.sleep(0.5)
        bodies = [r["body"] for r in self.rx.requests]
        self.assertTrue(all(isinstance(b, list) for b in bodies), bodies)
        self.assertEqual(sorted(e["certificateId"] for b in bodies for e in b),
                         sorted(sc.cert_id(sc.load_pem_certs(open(d[0]).read())[0])
                                for d in devs[1:]))
        self.assertLessEqual(max(len(b) for b in bodies), 3)
        self.assertTrue(all(e["sourceIp"] == "198.51.100.7" for b in bodies for e in b))
        self.assertEqual(self.rx.requests[0]["headers"]["content-type"], "application/json")
        self.assertEqual(self.rx.requests[0]["headers"]["x-jitr-secret"], "s3cret")
        log = [e for e in admin("/_standin/stats")["gateway_log"] if e["kind"] == "event_batch"]
        self.assertEqual(sum(e["size"] for e in log), 4)
        self.assertTrue(all(e["outcomes"] == [202] for e in log))
        # maxBatchSizeBytes below two events: every batch holds one
        self.rx.requests.clear()
        admin("/_standin/config", {"gateway": {"event_batching": {"maxBatchSizeBytes": 400}}})
        self.connect_all(devs[1:3])
        self.assertTrue(self.rx.wait(2))
        time.sleep(0.3)
        self.assertEqual([len(r["body"]) for r in self.rx.requests], [1, 1])
        self.assertTrue(all(len(json.dumps(r["body"], separators=(",", ":"))) <= 400
                            for r in self.rx.requests))
        # outside AWS's ranges: no rule, no event
        self.rx.requests.clear()
        admin("/_standin/config", {"gateway": {"event_batching": {"maxBatchSize": 11}}})
        device_session(*devs[1])
        time.sleep(0.5)
        self.assertEqual(self.rx.requests, [])
        with self.assertRaises(ValueError):
            gateway.batch_config({"maxBatchOpenMs": 201})
        self.assertEqual(gateway.batch_config(None), {"maxBatchOpenMs": 20, "maxBatchSize": 10,
                                                      "maxBatchSizeBytes": 5120})

    def test_destination_confirmation(self):
        r = self.c.create_topic_rule_destination(destinationConfiguration={
            "httpUrlConfiguration": {"confirmationUrl": self.rx.url + "/v1/jitr"}})
        arn = r["topicRuleDestination"]["arn"]
        self.assertRegex(arn, r"^arn:aws:iot:us-east-1:123456789012:ruledestination/http/")
        self.assertEqual(r["topicRuleDestination"]["status"], "IN_PROGRESS")
        self.assertTrue(self.rx.wait(1))
        msg = self.rx.requests[0]
        self.assertEqual(set(msg["body"]), {"arn", "confirmationToken", "enableUrl", "messageType"})
        self.assertEqual((msg["body"]["arn"], msg["body"]["messageType"]), (arn, "DestinationConfirmation"))
        self.assertEqual(msg["headers"]["x-amz-rules-engine-message-type"], "DestinationConfirmation")
        self.assertEqual(msg["headers"]["x-amz-rules-engine-destination-arn"], arn)
        token = msg["body"]["confirmationToken"]
        self.assertEqual(msg["path"], "/v1/jitr/?confirmationToken=" + token)
        self.assertNotIn("x-jitr-secret", msg["headers"])
        self.assertTrue(msg["body"]["enableUrl"].endswith("/confirmdestination/" + token))

        ca, caid = register_ca(self.c)
        admin("/_standin/config", {"gateway": {"require_confirmed_destination": True}})
        key, dev = make_cert("dev-5", issuer=ca)
        files = self.write_device(key, dev)
        device_session(*files)
        time.sleep(0.4)
        self.assertEqual(len(self.rx.requests), 1)  # destination not enabled: event dropped
        with self.assertRaises(ClientError) as cm:
            self.c.confirm_topic_rule_destination(confirmationToken="0" * 96)
        self.assertEqual(err(cm.exception), ("InvalidRequestException", 400))
        self.c.confirm_topic_rule_destination(confirmationToken=token)
        got = self.c.get_topic_rule_destination(arn=arn)["topicRuleDestination"]
        self.assertEqual(got["status"], "ENABLED")
        device_session(*files)
        self.assertTrue(self.rx.wait(2))
        self.assertEqual(self.rx.requests[1]["body"]["certificateId"], sc.cert_id(dev))
        # The enableUrl works without a signature and leaves the destination confirmed-but-disabled.
        self.c.update_topic_rule_destination(arn=arn, status="IN_PROGRESS")
        self.assertTrue(self.rx.wait(3))
        new_token = self.rx.requests[2]["body"]["confirmationToken"]
        st, _, _ = sc.http_call(self.rx.requests[2]["body"]["enableUrl"])
        self.assertEqual(st, 200)
        self.assertEqual(self.c.get_topic_rule_destination(arn=arn)["topicRuleDestination"]["status"],
                         "DISABLED")
        self.assertNotEqual(new_token, token)

    def test_sni_only_and_duplicates(self):
        ca = make_cert("SNI only CA", ca=True)
        self.c.register_ca_certificate(caCertificate=pem(ca[1]), certificateMode="SNI_ONLY",
                                       setAsActive=True, allowAutoRegistration=True)
        admin("/_standin/config", {"gateway": {"event_duplicates": 2}})
        key, dev = make_cert("dev-6", issuer=ca)
        files = self.write_device(key, dev)
        outcome, _, _ = device_session(*files, sni=None)
        self.assertIn(outcome, ("closed", "error"))
        time.sleep(0.3)
        self.assertEqual(self.rx.requests, [])
        device_session(*files, sni="localhost")
        self.assertTrue(self.rx.wait(3))
        time.sleep(0.3)
        self.assertEqual(len(self.rx.requests), 3)
        self.assertEqual({r["body"]["certificateId"] for r in self.rx.requests}, {sc.cert_id(dev)})


# --- STS and the SSO portal ---------------------------------------------------------------------

class TestCredentialServices(Base):
    def sts(self, secret=None):
        return boto3.client("sts", endpoint_url=SIM["JITRCA_SIM_IOT_URL"], region_name="us-east-1",
                            aws_access_key_id=SIM["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=secret or SIM["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"total_max_attempts": 1}))

    def test_assume_role_credentials_sign_iot_calls(self):
        r = self.sts().assume_role(RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="s1",
                                   ExternalId="ext-1", DurationSeconds=900)
        c = r["Credentials"]
        iot = client(akid=c["AccessKeyId"], secret=c["SecretAccessKey"], token=c["SessionToken"])
        self.assertEqual(len(iot.get_registration_code()["registrationCode"]), 64)
        log = admin("/_standin/stats")["sts"]
        self.assertEqual((log[-1]["action"], log[-1]["signed_by"], log[-1]["external_id"],
                          log[-1]["duration"]),
                         ("AssumeRole", SIM["AWS_ACCESS_KEY_ID"], "ext-1", "900"))
        # a session token other than the one issued, and a bad AssumeRole signature, are refused
        with self.assertRaises(ClientError) as cm:
            client(akid=c["AccessKeyId"], secret=c["SecretAccessKey"],
                   token="forged").get_registration_code()
        self.assertEqual(cm.exception.response["Error"]["Code"], "UnrecognizedClientException")
        with self.assertRaises(ClientError) as cm:
            self.sts(secret="wrong").assume_role(RoleArn="arn:aws:iam::123456789012:role/r",
                                                 RoleSessionName="s2")
        self.assertEqual(cm.exception.response["Error"]["Code"], "InvalidSignatureException")
        # a scripted fault
        admin("/_standin/config", {"next_faults": {"sts:AssumeRole": [503]}})
        with self.assertRaises(ClientError) as cm:
            self.sts().assume_role(RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="s3")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)

    def test_web_identity_needs_a_registered_token(self):
        sts = boto3.client("sts", endpoint_url=SIM["JITRCA_SIM_IOT_URL"], region_name="us-east-1",
                           config=Config(signature_version=botocore.UNSIGNED,
                                         retries={"total_max_attempts": 1}))
        kw = {"RoleArn": "arn:aws:iam::123456789012:role/pod", "RoleSessionName": "pod",
              "WebIdentityToken": "tok-1"}
        with self.assertRaises(ClientError) as cm:
            sts.assume_role_with_web_identity(**kw)
        self.assertEqual(cm.exception.response["Error"]["Code"], "InvalidIdentityToken")
        admin("/_standin/sts/web-identity-tokens", {"token": "tok-1"})
        c = sts.assume_role_with_web_identity(**kw)["Credentials"]
        iot = client(akid=c["AccessKeyId"], secret=c["SecretAccessKey"], token=c["SessionToken"])
        iot.get_registration_code()

    def test_sso_portal_bearer_token(self):
        sso = boto3.client("sso", endpoint_url=SIM["JITRCA_SIM_IOT_URL"], region_name="us-east-1",
                           config=Config(signature_version=botocore.UNSIGNED,
                                         retries={"total_max_attempts": 1}))
        kw = {"roleName": "Admin", "accountId": "123456789012", "accessToken": "aoa-1"}
        with self.assertRaises(ClientError) as cm:
            sso.get_role_credentials(**kw)
        self.assertEqual(cm.exception.response["Error"]["Code"], "UnauthorizedException")
        admin("/_standin/sso/tokens", {"token": "aoa-1", "accountId": "123456789012",
                                       "roleName": "Admin"})
        with self.assertRaises(ClientError) as cm:
            sso.get_role_credentials(**{**kw, "roleName": "Other"})
        self.assertEqual(cm.exception.response["Error"]["Code"], "ForbiddenException")
        c = sso.get_role_credentials(**kw)["roleCredentials"]
        self.assertGreater(c["expiration"], time.time() * 1000)
        iot = client(akid=c["accessKeyId"], secret=c["secretAccessKey"], token=c["sessionToken"])
        iot.get_registration_code()

    def test_partition_of_arns(self):
        self.assertEqual([sc.partition(r) for r in ("us-east-1", "cn-north-1", "us-gov-west-1")],
                         ["aws", "aws-cn", "aws-us-gov"])
        r = self.c.register_ca_certificate(caCertificate=pem(make_cert("ARN CA", ca=True)[1]),
                                           certificateMode="SNI_ONLY")
        self.assertTrue(r["certificateArn"].startswith("arn:aws:iot:us-east-1:123456789012:cacert/"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
