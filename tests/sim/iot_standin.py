#!/usr/bin/env python3
"""AWS IoT control-plane stand-in: an HTTP front for moto that behaves like the real endpoint.

Each request goes through the same steps AWS's front door takes, in this order:
  1. SigV4 verification, recomputed from the raw request with botocore's signer (only the headers
     the client names in SignedHeaders, the raw path double-encoded, the query decoded, re-encoded
     and sorted, the payload hash of the exact body bytes), ±15 min clock skew, credential scope
     region and service (`iot` or `execute-api`), session token.
  2. Routing by botocore's IoT service model (method + requestUri templates, greedy labels).
  3. Per-operation token-bucket quotas -> 400 ThrottlingException.
  4. Validation of every input member against the model -> 400 InvalidRequestException.
  5. Injected faults (latency, 5xx, lost responses, malformed or truncated bodies; by name only:
     "expired", an ExpiredTokenException, and "http:STATUS:CODE", any error). A non-empty
     faults.operations limits the random faults and faults.latency_ms to those operations.
  6. The operation: AWS semantics where moto 5.2.1 differs (see PATCHED below), else forwarded
     to moto. Responses keep only modeled members; errors carry x-amzn-ErrorType, `message` and
     x-amzn-RequestId.

SQS requests (AWS JSON 1.0 protocol: X-Amz-Target "AmazonSQS.ACTION", or the query protocol with
a credential scope for "sqs") take the same front door: SigV4 verified for the service `sqs`, then
forwarded to moto's SQS with the Host kept, so queue URLs name this stand-in. Faults for SQS are
only those asked for by operation ("sqs:ReceiveMessage" in faults.operations or next_faults):
500, 503, throttle, timeout, truncated, malformed, expired (ExpiredToken), http:STATUS:CODE.

"clock_offset_s" sets this front door's clock that many seconds off the host's: the SigV4 time
check and the Date header of every answer use it (a client whose clock is skewed, seen from AWS).

STS (query protocol, POST / with Action=AssumeRole or AssumeRoleWithWebIdentity): AssumeRole's
SigV4 is verified for the service `sts`; AssumeRoleWithWebIdentity is unsigned, as AWS has it, and
its WebIdentityToken must be one registered with /_standin/sts/web-identity-tokens. moto answers;
the credentials it issues are then accepted by this front door (IoT, SQS, STS), as AWS would.
Every STS call is logged (stats "sts": action, role, session, external id, duration, signer).
Faults: next_faults "sts:AssumeRole" (a status such as 503).

The SSO portal's GetRoleCredentials (GET /federation/credentials?role_name=R&account_id=A with
the header x-amz-sso_bearer_token, no SigV4, as AWS has it): tokens are registered with
/_standin/sso/tokens ({"token", "accountId", "roleName"}); an unknown token gets 401
UnauthorizedException, a role the token does not grant 403 ForbiddenException; good tokens get
fresh credentials this front door accepts.

ARNs carry the partition of --region (arn:aws-cn:... for cn-north-1), as moto's do.

Topic rules are recorded on their way to moto: a rule whose SQL selects from the registered-event
topic of a CA and that has an `sqs` action makes gateway.py SendMessage the event to that queue
(base64 when useBase64), as AWS IoT's rules engine would (internal/sqs-send).

The stand-in keeps the state moto lacks (registration code, CA auto-registration and mode, topic
rule destinations, JITR registration timestamps) and exposes an unauthenticated admin API under
/_standin/ for tests and for gateway.py: config, stats, reset, and internal registry calls.

moto must run with iot.use_valid_cert = True (certificateId = SHA-256 of the DER); the stand-in
starts moto that way itself unless --moto-url names an external one.
"""

import argparse
import base64
import collections
import copy
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import re
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

import boto3
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simcommon as sc  # noqa: E402

# Control-plane TPS, AWS's defaults (docs/aws-client.md "Default rates"): Service Quotas (service
# iotcore) where it lists the operation, else the AWS IoT Developer Guide's throttling table.
DEFAULT_RATES = {
    "CreateThing": 100, "DescribeThing": 350, "AttachThingPrincipal": 100,
    "DetachThingPrincipal": 100, "AddThingToThingGroup": 100, "CreateThingType": 15,
    "DescribeThingType": 100, "UpdateThing": 100, "ListThingPrincipals": 10, "AttachPolicy": 15,
}
DEFAULT_RATE = 10.0

DEFAULT_CONFIG = {
    "quotas": {"enabled": True, "default": DEFAULT_RATE, "burst_seconds": 1.0,
               "rates": dict(DEFAULT_RATES)},
    "faults": {"error_rate": 0.0, "error_statuses": [503, 500], "latency_ms": 0,
               "timeout_rate": 0.0, "timeout_ms": 3000, "malformed_rate": 0.0,
               "truncated_rate": 0.0, "operations": []},
    "next_faults": {},
    "clock_offset_s": 0,
    "allow_http_destinations": True,
    "extra_regions": [],  # credential-scope regions accepted besides --region
    "gateway": {"event_url": None, "event_headers": {}, "jitr_trigger": "handshake",
                "require_thing": True, "require_confirmed_destination": False,
                "event_duplicates": 0, "event_jitter_ms": 0, "retry_delay_ms": 500,
                "event_timeout_ms": 3000, "event_cafile": None, "event_insecure": False,
                "event_sqs": None, "event_extra": None, "event_batching": None},
}

MOTO_BOOT = ("from moto.core.config import default_user_config as c; "
             "c['iot']['use_valid_cert'] = True; "
             "from moto.server import main; main(['-H', '127.0.0.1', '-p', '{port}'])")

SKEW = 15 * 60
UNAUTH_PATHS = re.compile(r"^/confirmdestination/")  # enableUrl works without a signature
SCOPE_REGION = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/")
RULE_FROM = re.compile(r"\bFROM\s+'([^']+)'", re.IGNORECASE)


def _jsonable(o):
    if isinstance(o, datetime.datetime):
        return o.timestamp()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


class ApiError(Exception):
    def __init__(self, code, status, message, **extra):
        super().__init__(message)
        self.code, self.status, self.message, self.extra = code, status, message, extra


REPLACED_KEYS = ("event_headers", "event_extra", "event_batching")  # set whole, not merged


def deep_merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and k not in REPLACED_KEYS:
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


# ---------------------------------------------------------------------------------------------
# Model: routing and validation


class Route:
    def __init__(self, op):
        self.op = op
        self.method = op.http["method"]
        path = op.http["requestUri"].split("?")[0]
        self.labels, pattern, self.literals = [], "", 0
        for seg in path.strip("/").split("/"):
            if not seg:
                continue
            m = re.fullmatch(r"\{(\w+)(\+?)\}", seg)
            if m:
                self.labels.append(m.group(1))
                pattern += "/(.+)" if m.group(2) else "/([^/]+)"
            else:
                self.literals += 1
                pattern += "/" + re.escape(seg)
        self.regex = re.compile("^" + (pattern or "/") + "/?$")


class Model:
    def __init__(self):
        self.svc = botocore.session.get_session().get_service_model("iot")
        self.routes = sorted((Route(self.svc.operation_model(n)) for n in self.svc.operation_names),
                             key=lambda r: -r.literals)
        self._regex_cache = {}

    def route(self, method, raw_path):
        for r in self.routes:
            if r.method != method:
                continue
            m = r.regex.match(raw_path)
            if m:
                return r, {name: urllib.parse.unquote(v) for name, v in zip(r.labels, m.groups())}
        return None, None

    def _pattern(self, p):
        if p not in self._regex_cache:
            try:
                self._regex_cache[p] = re.compile(p)
            except re.error:
                self._regex_cache[p] = None
        return self._regex_cache[p]

    def check(self, shape, value, where, errs):
        """Validate `value` against `shape`; append AWS-style messages to errs."""
        t = shape.type_name
        meta = shape.metadata
        def bad(constraint):
            errs.append(f"Value '{str(value)[:100]}' at '{where}' failed to satisfy constraint: "
                        f"Member must {constraint}")
        if t == "structure":
            if not isinstance(value, dict):
                return bad("be a structure")
            for req in shape.required_members:
                if value.get(req) is None:
                    errs.append(f"Value null at '{where + '.' if where else ''}{req}' failed to satisfy constraint: "
                                f"Member must not be null")
            for k, v in value.items():
                if k in shape.members and v is not None:
                    self.check(shape.members[k], v, f"{where}.{k}" if where else k, errs)
            return
        if t == "list":
            if not isinstance(value, list):
                return bad("be a list")
            self._len(meta, len(value), bad)
            for i, v in enumerate(value):
                self.check(shape.member, v, f"{where}.{i + 1}.member", errs)
            return
        if t == "map":
            if not isinstance(value, dict):
                return bad("be a map")
            self._len(meta, len(value), bad)
            for k, v in value.items():
                self.check(shape.key, k, f"{where}.key", errs)
                self.check(shape.value, v, f"{where}.{k}", errs)
            return
        if t == "string":
            if not isinstance(value, str):
                return bad("be a string")
            self._len(meta, len(value), bad)
            if shape.enum and value not in shape.enum:
                bad(f"satisfy enum value set: [{', '.join(shape.enum)}]")
            rx = self._pattern(meta["pattern"]) if "pattern" in meta else None
            if rx is not None and not rx.fullmatch(value):
                bad(f"satisfy regular expression pattern: {meta['pattern']}")
            return
        if t in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                return bad("be an integer")
            if "min" in meta and value < meta["min"]:
                bad(f"have value greater than or equal to {meta['min']}")
            if "max" in meta and value > meta["max"]:
                bad(f"have value less than or equal to {meta['max']}")
            return
        if t == "boolean":
            if not isinstance(value, bool):
                bad("be a boolean")
            return
        if t in ("double", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                bad("be a number")
            return
        if t == "timestamp":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                bad("be a timestamp")
            return
        if t == "blob" and not isinstance(value, str):
            bad("be base64 text")

    @staticmethod
    def _len(meta, n, bad):
        if "min" in meta and n < meta["min"]:
            bad(f"have length greater than or equal to {meta['min']}")
        if "max" in meta and n > meta["max"]:
            bad(f"have length less than or equal to {meta['max']}")

    def parse_input(self, op, labels, query, headers, body):
        """Build the input dict from the wire (typed per the model) and validate it."""
        shape = op.input_shape
        params, errs = {}, []
        if shape is None:
            return params
        body_obj = {}
        has_body_members = any(m.serialization.get("location") is None
                               for m in shape.members.values())
        if body and has_body_members:
            try:
                body_obj = json.loads(body)
            except ValueError:
                raise ApiError("InvalidRequestException", 400, "Could not parse request body into json")
            if not isinstance(body_obj, dict):
                raise ApiError("InvalidRequestException", 400, "Request body must be a JSON object")
        payload = shape.serialization.get("payload")  # the body IS this member (CreateTopicRule)
        for name, m in shape.members.items():
            loc = m.serialization.get("location")
            wire = m.serialization.get("name", name)
            if name == payload:
                if body:
                    params[name] = body_obj
                continue
            if loc == "uri":
                raw = labels.get(wire)
            elif loc == "querystring":
                raw = query.get(wire)
                if isinstance(raw, list):
                    raw = raw[0] if m.type_name != "list" else raw
            elif loc == "header":
                raw = headers.get(wire.lower())
            elif loc == "headers":
                continue
            else:
                if name in body_obj:
                    params[name] = body_obj[name]
                continue
            if raw is None:
                continue
            if loc in ("querystring", "header", "uri") and m.type_name != "string":
                raw = self._coerce(m, raw, name, errs)
                if raw is None:
                    continue
            params[name] = raw
        self.check(shape, params, "", errs)
        if errs:
            n = len(errs)
            raise ApiError("InvalidRequestException", 400,
                           f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errs))
        return params

    @staticmethod
    def _coerce(m, raw, name, errs):
        t = m.type_name
        try:
            if t == "boolean":
                if raw not in ("true", "false"):
                    raise ValueError
                return raw == "true"
            if t in ("integer", "long"):
                return int(raw)
            if t == "list":
                return raw if isinstance(raw, list) else [raw]
            return raw
        except ValueError:
            errs.append(f"Value '{raw}' at '{name}' failed to satisfy constraint: "
                        f"Member must be a valid {t}")
            return None

    def filter_output(self, shape, value):
        """Keep only modeled members (AWS never sends anything else)."""
        if shape is None or value is None:
            return value
        t = shape.type_name
        if t == "structure" and isinstance(value, dict):
            return {k: self.filter_output(shape.members[k], v) for k, v in value.items()
                    if k in shape.members and v is not None
                    and shape.members[k].serialization.get("location") is None}
        if t == "list" and isinstance(value, list):
            return [self.filter_output(shape.member, v) for v in value]
        if t == "map" and isinstance(value, dict):
            return {k: self.filter_output(shape.value, v) for k, v in value.items()}
        return value


# ---------------------------------------------------------------------------------------------
# SigV4


class _WireSigner(SigV4Auth):
    """botocore's SigV4 with the header set fixed to the client's own SignedHeaders list."""

    def __init__(self, creds, service, region, signed):
        super().__init__(creds, service, region)
        self._signed = signed

    def headers_to_sign(self, request):
        out = HTTPHeaders()
        for name in self._signed:
            for v in request.headers.get_all(name) or []:
                out[name] = v
        return out


AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),"
                     r"\s*Signature=([0-9a-fA-F]+)\s*$")


def verify_sigv4(method, raw_target, headers, body, creds, region, services, now=None):
    """Raise ApiError (403) unless the request carries a valid SigV4 signature.

    headers: list of (name, value) as received. creds: {akid: (secret, token or None)}.
    Returns the access key id on success.
    """
    hmap = collections.defaultdict(list)
    for k, v in headers:
        hmap[k.lower()].append(v)
    auth = hmap.get("authorization")
    if not auth:
        raise ApiError("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    m = AUTH_RE.match(auth[0])
    if not m:
        raise ApiError("IncompleteSignatureException", 403,
                       f"Authorization header requires 'Credential', 'Signature' and "
                       f"'SignedHeaders' parameters. Authorization={auth[0][:60]}")
    cred, signed_hdrs, sig = m.group(1), m.group(2).split(";"), m.group(3).lower()
    parts = cred.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise ApiError("IncompleteSignatureException", 403, f"Credential is malformed: {cred}")
    akid, cdate, cregion, cservice = parts[:4]
    if akid not in creds:
        raise ApiError("UnrecognizedClientException", 403,
                       "The security token included in the request is invalid.")
    secret, token = creds[akid]
    amzdate = (hmap.get("x-amz-date") or [None])[0]
    if amzdate is None:
        raise ApiError("IncompleteSignatureException", 403,
                       "Authorization header requires existence of either a 'X-Amz-Date' or a "
                       "'Date' header.")
    try:
        ts = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ApiError("IncompleteSignatureException", 403, f"Invalid X-Amz-Date: {amzdate}")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    fmt = "%Y%m%dT%H%M%SZ"
    if ts < now - datetime.timedelta(seconds=SKEW):
        raise ApiError("InvalidSignatureException", 403,
                       f"Signature expired: {amzdate} is now earlier than "
                       f"{(now - datetime.timedelta(seconds=SKEW)).strftime(fmt)} "
                       f"({now.strftime(fmt)} - 15 min.)")
    if ts > now + datetime.timedelta(seconds=SKEW):
        raise ApiError("InvalidSignatureException", 403,
                       f"Signature not yet current: {amzdate} is still later than "
                       f"{(now + datetime.timedelta(seconds=SKEW)).strftime(fmt)} "
                       f"({now.strftime(fmt)} + 15 min.)")
    if cdate != amzdate[:8]:
        raise ApiError("InvalidSignatureException", 403,
                       f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                       f"of date from HTTP: '{cdate}' != '{amzdate[:8]}', from '{amzdate}'.")
    if cregion not in (region if isinstance(region, (list, tuple)) else [region]):
        raise ApiError("InvalidSignatureException", 403,
                       f"Credential should be scoped to a valid region, not '{cregion}'. ")
    if cservice not in services:
        raise ApiError("InvalidSignatureException", 403,
                       f"Credential should be scoped to correct service: '{services[0]}'. ")
    for h in ("host", "x-amz-date"):
        if h not in signed_hdrs:
            raise ApiError("InvalidSignatureException", 403,
                           f"'{h}' must be a 'SignedHeader' in the AWS Authorization.")
    for h in signed_hdrs:
        if h not in hmap:
            raise ApiError("InvalidSignatureException", 403,
                           f"'{h}' is named as a SignedHeader, but it does not exist in the HTTP "
                           f"request.")
    if token is not None:
        sent = (hmap.get("x-amz-security-token") or [None])[0]
        if sent is None or not hmac.compare_digest(sent, token):
            raise ApiError("UnrecognizedClientException", 403,
                           "The security token included in the request is invalid.")
    if "x-amz-content-sha256" in hmap and hmap["x-amz-content-sha256"][0] != hashlib.sha256(body).hexdigest():
        raise ApiError("InvalidSignatureException", 403,
                       "The provided 'x-amz-content-sha256' header does not match what was computed.")
    path, _, query = raw_target.partition("?")
    params = []
    if query:
        for pair in query.split("&"):
            k, _, v = pair.partition("=")
            params.append((urllib.parse.unquote(k), urllib.parse.unquote(v)))
    req = AWSRequest(method=method, url="http://" + hmap["host"][0] + path, data=body, params=params)
    req.headers = HTTPHeaders()
    for k, v in headers:
        if k.lower() in signed_hdrs:
            req.headers[k.lower()] = v
    req.context["timestamp"] = amzdate
    signer = _WireSigner(Credentials(akid, secret, token), cservice, cregion, signed_hdrs)
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(expected, sig):
        raise ApiError("InvalidSignatureException", 403,
                       "The request signature we calculated does not match the signature you "
                       "provided. Check your AWS Secret Access Key and signing method. Consult the "
                       "service documentation for details.\n\nThe Canonical String for this "
                       f"request should have been\n'{canonical}'\n")
    return akid


# ---------------------------------------------------------------------------------------------
# Quotas and stats


class TokenBucket:
    def __init__(self, rate, burst_seconds):
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class OpStats:
    def __init__(self):
        self.requests = self.admitted = self.throttled = self.faults = self.invalid = 0
        self.statuses = collections.Counter()
        self.regions = collections.Counter()  # credential-scope region of each request
        self.max_rate_1s = self.max_admitted_1s = 0
        self._arrivals = collections.deque()
        self._admits = collections.deque()

    @staticmethod
    def _window(dq, now):
        dq.append(now)
        while dq and dq[0] <= now - 1.0:
            dq.popleft()
        return len(dq)

    def arrive(self):
        self.requests += 1
        self.max_rate_1s = max(self.max_rate_1s, self._window(self._arrivals, time.monotonic()))

    def admit(self):
        self.admitted += 1
        self.max_admitted_1s = max(self.max_admitted_1s, self._window(self._admits, time.monotonic()))

    def to_dict(self):
        return {"requests": self.requests, "admitted": self.admitted, "throttled": self.throttled,
                "faults": self.faults, "invalid": self.invalid,
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "regions": dict(self.regions),
                "max_rate_1s": self.max_rate_1s, "max_admitted_1s": self.max_admitted_1s}


# ---------------------------------------------------------------------------------------------
# The stand-in


class StandIn:
    def __init__(self, args):
        self.model = Model()
        self.region = args.region
        self.account = args.account_id
        self.services = args.signing_names
        self.creds = {}
        for c in args.credentials:
            parts = c.split(":", 2)
            self.creds[parts[0]] = (parts[1], parts[2] if len(parts) > 2 and parts[2] else None)
        self.moto_url = args.moto_url
        self.public_url = None
        self.lock = threading.RLock()
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        for spec in args.quota or []:
            op, _, rate = spec.partition("=")
            self.config["quotas"]["rates"][op] = float(rate)
        if args.no_quotas:
            self.config["quotas"]["enabled"] = False
        if args.config:
            with open(args.config) as f:
                deep_merge(self.config, json.load(f))
        f = self.config["faults"]
        for name in ("error_rate", "latency_ms", "timeout_rate", "timeout_ms", "malformed_rate",
                     "truncated_rate"):
            if getattr(args, name) is not None:
                f[name] = getattr(args, name)
        self.rng = random.Random(args.seed)
        self.moto = boto3.client("iot", endpoint_url=self.moto_url, region_name=self.region,
                                 aws_access_key_id="standin", aws_secret_access_key="standin",
                                 config=BotoConfig(retries={"max_attempts": 1}))
        self.moto_sqs = boto3.client("sqs", endpoint_url=self.moto_url, region_name=self.region,
                                     aws_access_key_id="standin", aws_secret_access_key="standin",
                                     config=BotoConfig(retries={"max_attempts": 1}))
        self.reset_state()

    def reset_state(self):
        with self.lock:
            self.minted = {}        # akid -> (secret, token): issued by STS or the SSO portal
            self.web_tokens = set()  # WebIdentityTokens AssumeRoleWithWebIdentity accepts
            self.sso_tokens = {}    # bearer token -> {"accountId", "roleName"}
            self.sts_log = collections.deque(maxlen=200)
            self.signers = collections.Counter()  # access key id -> requests it signed (IoT)
            self.reg_code = None
            self.cas = {}           # caId -> {"pem", "cert", "mode", "autoreg", "status", "created", "config"}
            self.cert_ca = {}       # certId -> caId, None: registered without a CA
            self.principal_types = {}  # principal ARN -> {thingName: thingPrincipalType}
            self.jitr_ts = {}       # certId -> registration timestamp (ms) by the gateway
            self.destinations = {}  # arn -> destination dict (+ "token")
            self.rules = {}         # ruleName -> {"topic", "disabled", "sqs": [sqs action, ...]}
            self.buckets = {}
            self.stats = collections.defaultdict(OpStats)
            self.front = collections.Counter()
            self.gateway_stats = collections.Counter()
            self.gateway_log = collections.deque(maxlen=500)
            self.key_locks = {}     # (kind, name) -> lock: one thing's or principal's changes

    # -- helpers ------------------------------------------------------------------------------

    def arn(self, kind, rid):
        return f"arn:{sc.partition(self.region)}:iot:{self.region}:{self.account}:{kind}/{rid}"

    def all_creds(self):
        # read at every request: a copy without the lock (the dicts only ever get new keys)
        return {**self.creds, **self.minted}

    def key_lock(self, kind, name):
        """The lock of one thing's or principal's check-then-change (held across moto calls:
        never the state lock, which every request needs)."""
        with self.lock:
            return self.key_locks.setdefault((kind, name), threading.Lock())

    def mint(self, secret=None, token=None):
        """Temporary credentials this front door accepts from now on."""
        akid = "ASIA" + secrets.token_hex(8).upper()
        secret = secret or secrets.token_urlsafe(30)
        token = token or secrets.token_urlsafe(60)
        with self.lock:
            self.minted[akid] = (secret, token)
        return akid, secret, token

    def moto_call(self, fn, **kw):
        try:
            r = getattr(self.moto, fn)(**kw)
            r.pop("ResponseMetadata", None)
            return r
        except ClientError as e:
            err = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            raise ApiError(err.get("Code", "InternalFailureException"), status,
                           err.get("Message", "moto error"))

    def forward(self, method, target, headers, body):
        u = urllib.parse.urlsplit(self.moto_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        skip = {"host", "connection", "content-length", "transfer-encoding", "keep-alive",
                "authorization", "x-amz-security-token"}
        hdrs = {k: v for k, v in headers if k.lower() not in skip}
        # moto picks the backend and region from the credential scope; the client may have
        # signed for execute-api, which moto would route to API Gateway.
        hdrs["Authorization"] = (f"AWS4-HMAC-SHA256 Credential=standin/20260101/{self.region}/iot/"
                                 "aws4_request, SignedHeaders=host, Signature=0")
        try:
            conn.request(method, target, body=body or None, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def quota_ok(self, op):
        q = self.config["quotas"]
        if not q["enabled"]:
            return True
        rate = q["rates"].get(op, q["default"])
        key = (op, rate, q["burst_seconds"])
        b = self.buckets.get(op)
        if b is None or b[0] != key:
            b = self.buckets[op] = (key, TokenBucket(rate, q["burst_seconds"]))
        return b[1].take()

    def now(self):
        """This front door's clock: the host's plus clock_offset_s."""
        return datetime.datetime.now(datetime.timezone.utc) + \
            datetime.timedelta(seconds=self.config["clock_offset_s"])

    def pick_fault(self, op):
        queued = self.config["next_faults"].get(op)
        if queued:
            return str(queued.pop(0))
        f = self.config["faults"]
        if f["operations"] and op not in f["operations"]:
            return None
        r = self.rng.random()
        for name, rate in (("error", f["error_rate"]), ("timeout", f["timeout_rate"]),
                           ("malformed", f["malformed_rate"]), ("truncated", f["truncated_rate"])):
            if r < rate:
                if name == "error":
                    return str(self.rng.choice(f["error_statuses"]))
                return name
            r -= rate
        return None

    def ca_for_cert(self, cert):
        cid = sc.cert_id(cert)
        with self.lock:
            if cid in self.cert_ca:
                return self.cert_ca[cid]
            cas = list(self.cas.items())
        for caid, ca in cas:  # signature checks: outside the lock
            if sc.issued_by(cert, ca["cert"]):
                with self.lock:
                    self.cert_ca[cid] = caid
                return caid
        return None

    def registration_code(self):
        with self.lock:
            if self.reg_code is None:
                self.reg_code = secrets.token_hex(32)
            return self.reg_code

    # -- operations that differ from moto (PATCHED) --------------------------------------------

    def op_GetRegistrationCode(self, p, ctx):
        # moto: a fresh UUID per call. AWS: a stable 64-hex code per account and region.
        return {"registrationCode": self.registration_code()}

    def op_DeleteRegistrationCode(self, p, ctx):
        with self.lock:
            self.reg_code = None
        return {}

    def _check_key(self, cert, what):
        pub = cert.public_key()
        if isinstance(pub, rsa.RSAPublicKey) and pub.key_size < 2048:
            raise ApiError("CertificateValidationException", 400,
                           f"The key in the {what} is not valid")
        if isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name not in (
                "secp256r1", "secp384r1", "secp521r1"):
            raise ApiError("CertificateValidationException", 400,
                           f"The key in the {what} is not valid")
        now = datetime.datetime.now(datetime.timezone.utc)
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise ApiError("CertificateValidationException", 400, f"The {what} is not valid now")

    def op_RegisterCACertificate(self, p, ctx):
        # moto: no verification certificate check, duplicates overwrite, no auto-registration.
        try:
            ca = sc.load_pem_certs(p["caCertificate"])[0]
        except ValueError:
            raise ApiError("CertificateValidationException", 400, "CA certificate is not valid")
        try:
            bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise ApiError("CertificateValidationException", 400,
                           "CA certificate is not valid: basicConstraints CA:TRUE is missing")
        self._check_key(ca, "CA certificate")
        mode = p.get("certificateMode", "DEFAULT")
        ver = p.get("verificationCertificate")
        if mode == "SNI_ONLY" and ver:
            raise ApiError("InvalidRequestException", 400,
                           "Verification certificate must not be provided in SNI_ONLY mode")
        if mode == "DEFAULT":
            if not ver:
                raise ApiError("InvalidRequestException", 400,
                               "Verification certificate is required in DEFAULT mode")
            try:
                vc = sc.load_pem_certs(ver)[0]
            except ValueError:
                raise ApiError("CertificateValidationException", 400,
                               "Verification certificate is not valid")
            cns = [a.value for a in vc.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
            if cns != [self.registration_code()]:
                raise ApiError("RegistrationCodeValidationException", 400,
                               "The certificate is not valid. The registration code of the "
                               "verification certificate does not match.")
            if not sc.issued_by(vc, ca):
                raise ApiError("CertificateValidationException", 400,
                               "The verification certificate is not signed by the CA certificate")
        caid = sc.cert_id(ca)
        with self.lock:
            if caid in self.cas:
                raise ApiError("ResourceAlreadyExistsException", 409,
                               "The certificate is already provisioned or registered",
                               resourceId=caid, resourceArn=self.arn("cacert", caid))
            same = sum(1 for c in self.cas.values() if c["cert"].subject == ca.subject)
            if same >= 10:
                raise ApiError("LimitExceededException", 410,
                               "Limit of 10 CA certificates with the same subject exceeded")
            got = self.moto_call("register_ca_certificate", caCertificate=p["caCertificate"],
                                 setAsActive=bool(p.get("setAsActive", False)),
                                 **({"registrationConfig": p["registrationConfig"]}
                                    if "registrationConfig" in p else {}))
            if got["certificateId"] != caid:
                raise ApiError("InternalFailureException", 500,
                               "moto is not running with iot.use_valid_cert=True "
                               "(certificateId is not the SHA-256 of the DER)")
            # the status as moto keeps it (the gateway's registry reads it from here: one moto
            # call fewer per device connection)
            self.cas[caid] = {"pem": p["caCertificate"], "cert": ca, "mode": mode,
                              "autoreg": "ENABLE" if p.get("allowAutoRegistration") else "DISABLE",
                              "status": "ACTIVE" if p.get("setAsActive") else "INACTIVE",
                              "created": time.time()}
        return {"certificateArn": self.arn("cacert", caid), "certificateId": caid}

    def _ca(self, caid):
        with self.lock:
            ca = self.cas.get(caid)
        if ca is None:
            raise ApiError("ResourceNotFoundException", 404, "The specified resource does not exist")
        return ca

    def op_DescribeCACertificate(self, p, ctx):
        ca = self._ca(p["certificateId"])
        r = self.moto_call("describe_ca_certificate", certificateId=p["certificateId"])
        d = r["certificateDescription"]
        d.update({"certificateArn": self.arn("cacert", p["certificateId"]),
                  "autoRegistrationStatus": ca["autoreg"], "certificateMode": ca["mode"],
                  "customerVersion": 1, "generationId": str(uuid.uuid5(uuid.NAMESPACE_OID, p["certificateId"])),
                  "validity": {"notBefore": ca["cert"].not_valid_before_utc.timestamp(),
                               "notAfter": ca["cert"].not_valid_after_utc.timestamp()},
                  "creationDate": ca["created"], "lastModifiedDate": ca.get("modified", ca["created"])})
        out = {"certificateDescription": d}
        if r.get("registrationConfig"):
            out["registrationConfig"] = r["registrationConfig"]
        return out

    def op_UpdateCACertificate(self, p, ctx):
        # moto ignores newAutoRegistrationStatus.
        ca = self._ca(p["certificateId"])
        kw = {"certificateId": p["certificateId"]}
        for k in ("newStatus", "registrationConfig", "removeAutoRegistration"):
            if k in p:
                kw[k] = p[k]
        self.moto_call("update_ca_certificate", **kw)
        with self.lock:
            if "newAutoRegistrationStatus" in p:
                ca["autoreg"] = p["newAutoRegistrationStatus"]
            if "newStatus" in p:
                ca["status"] = p["newStatus"]
            ca["modified"] = time.time()
        return {}

    def op_DeleteCACertificate(self, p, ctx):
        self._ca(p["certificateId"])
        self.moto_call("delete_ca_certificate", certificateId=p["certificateId"])
        with self.lock:
            self.cas.pop(p["certificateId"], None)
        return {}

    def op_ListCACertificates(self, p, ctx):
        # moto: not implemented (HTTP 500).
        with self.lock:
            ids = list(self.cas)
        out = []
        for caid in ids:
            d = self.moto_call("describe_ca_certificate", certificateId=caid)["certificateDescription"]
            ca = self.cas.get(caid)
            if ca:
                out.append({"certificateArn": self.arn("cacert", caid), "certificateId": caid,
                            "status": d["status"], "creationDate": ca["created"]})
        return self._page(out, p, "certificates", "creationDate")

    @staticmethod
    def _page(items, p, key, sort_key):
        items.sort(key=lambda c: (c[sort_key], c.get("certificateId", "")),
                   reverse=not p.get("ascendingOrder", p.get("isAscendingOrder", False)))
        size = p.get("pageSize", 25)
        start = 0
        if p.get("marker"):
            try:
                start = int(base64.b64decode(p["marker"]).decode())
            except ValueError:
                raise ApiError("InvalidRequestException", 400, "Invalid marker")
        out = {key: items[start:start + size]}
        if start + size < len(items):
            out["nextMarker"] = base64.b64encode(str(start + size).encode()).decode()
        return out

    def op_ListCertificatesByCA(self, p, ctx):
        # moto: no pagination, no certificateMode, unmodeled caCertificateId members.
        r = self.moto_call("list_certificates_by_ca", caCertificateId=p["caCertificateId"])
        with self.lock:
            mode = self.cas.get(p["caCertificateId"], {}).get("mode", "DEFAULT")
        certs = [{"certificateArn": c["certificateArn"], "certificateId": c["certificateId"],
                  "status": c["status"], "certificateMode": mode,
                  "creationDate": c["creationDate"].timestamp()} for c in r.get("certificates", [])]
        return self._page(certs, p, "certificates", "creationDate")

    def op_DescribeCertificate(self, p, ctx):
        # moto: no caCertificateId, made-up validity (now ± 1 day), no certificateMode.
        status, hdrs, body = self.forward(ctx["method"], ctx["target"], ctx["headers"], ctx["body"])
        if status != 200:
            return status, hdrs, body
        d = json.loads(body)["certificateDescription"]
        cert = sc.load_pem_certs(d["certificatePem"])[0]
        caid = self.ca_for_cert(cert)
        d["validity"] = {"notBefore": cert.not_valid_before_utc.timestamp(),
                         "notAfter": cert.not_valid_after_utc.timestamp()}
        if caid:
            d["caCertificateId"] = caid
            d["certificateMode"] = self.cas.get(caid, {}).get("mode", "DEFAULT")
        else:
            d["certificateMode"] = "DEFAULT"
        d["customerVersion"] = 1
        d["generationId"] = str(uuid.uuid5(uuid.NAMESPACE_OID, p["certificateId"]))
        return {"certificateDescription": d}

    def _registered(self, ctx, ca_pem):
        """Forward a certificate registration to moto, then record the CA AWS would name."""
        status, hdrs, body = self.forward(ctx["method"], ctx["target"], ctx["headers"], ctx["body"])
        if status == 200:
            cid = json.loads(body)["certificateId"]
            caid = None
            if ca_pem:
                caid = sc.cert_id(sc.load_pem_certs(ca_pem)[0])
                with self.lock:
                    caid = caid if caid in self.cas else None
            with self.lock:
                self.cert_ca[cid] = caid
        return status, hdrs, body

    def op_RegisterCertificate(self, p, ctx):
        # moto keeps no CA. AWS: caCertificateId is the CA the certificate was registered with.
        if not p.get("caCertificatePem"):
            return None
        return self._registered(ctx, p["caCertificatePem"])

    def op_RegisterCertificateWithoutCA(self, p, ctx):
        # AWS: such a certificate has no caCertificateId, whoever signed it.
        return self._registered(ctx, None)

    def _principal_things(self, principal):
        try:
            return self.moto_call("list_principal_things", principal=principal)["things"]
        except ApiError:
            return []

    def op_AttachThingPrincipal(self, p, ctx):
        # moto ignores thingPrincipalType. AWS: an EXCLUSIVE_THING principal has that one thing
        # only: attaching it exclusively to a second thing, or any thing to it once it is
        # exclusive elsewhere, is refused.
        principal, thing = p["principal"], p["thingName"]
        kind = p.get("thingPrincipalType", "NON_EXCLUSIVE_THING")
        with self.key_lock("principal", principal):
            others = [t for t in self._principal_things(principal) if t != thing]
            with self.lock:
                types = dict(self.principal_types.get(principal, {}))
            exclusive = [t for t in others if types.get(t) == "EXCLUSIVE_THING"]
            if exclusive:
                raise ApiError("InvalidRequestException", 400,
                               f"Principal {principal} is attached exclusively to thing "
                               f"{exclusive[0]}")
            if kind == "EXCLUSIVE_THING" and others:
                raise ApiError("InvalidRequestException", 400,
                               f"Principal {principal} is attached to other things "
                               f"({', '.join(sorted(others))}) and cannot be attached "
                               f"exclusively to {thing}")
            status, hdrs, body = self.forward(ctx["method"], ctx["target"], ctx["headers"],
                                              ctx["body"])
            if status == 200:
                with self.lock:
                    self.principal_types.setdefault(principal, {})[thing] = kind
        return status, hdrs, body

    def op_DetachThingPrincipal(self, p, ctx):
        status, hdrs, body = self.forward(ctx["method"], ctx["target"], ctx["headers"], ctx["body"])
        if status == 200:
            with self.lock:
                self.principal_types.get(p["principal"], {}).pop(p["thingName"], None)
        return status, hdrs, body

    def op_ListPrincipalThingsV2(self, p, ctx):
        # moto: not implemented.
        with self.lock:
            types = dict(self.principal_types.get(p["principal"], {}))
        things = self._principal_things(p["principal"])
        objs = [{"thingName": t, "thingPrincipalType": types.get(t, "NON_EXCLUSIVE_THING")}
                for t in sorted(things)
                if p.get("thingPrincipalType") in (None, types.get(t, "NON_EXCLUSIVE_THING"))]
        return {"principalThingObjects": objs}

    def op_ListThingPrincipalsV2(self, p, ctx):
        # moto: no thingPrincipalType.
        principals = self.moto_call("list_thing_principals", thingName=p["thingName"])["principals"]
        with self.lock:
            objs = [{"principal": x, "thingPrincipalType": self.principal_types.get(x, {}).get(
                        p["thingName"], "NON_EXCLUSIVE_THING")} for x in sorted(principals)]
        objs = [o for o in objs if p.get("thingPrincipalType") in (None, o["thingPrincipalType"])]
        return {"thingPrincipalObjects": objs}

    def op_UpdateCertificate(self, p, ctx):
        # moto accepts any status. AWS: callers cannot set PENDING_* states, and a REVOKED
        # certificate's status cannot be changed any more (REVOKED again is a no-op).
        if p["newStatus"] in ("PENDING_ACTIVATION", "PENDING_TRANSFER"):
            raise ApiError("InvalidRequestException", 400,
                           f"Cannot update certificate status to {p['newStatus']}")
        if p["newStatus"] != "REVOKED":
            cur = self.moto_call("describe_certificate", certificateId=p["certificateId"])
            if cur["certificateDescription"]["status"] == "REVOKED":
                raise ApiError("CertificateStateException", 406,
                               f"Certificate {p['certificateId']} is REVOKED: its status "
                               "cannot be changed")
        return None

    def op_CreateThing(self, p, ctx):
        # moto silently replaces an existing thing (new thingId). AWS: same config -> the same
        # thing (200), different config -> 409 ResourceAlreadyExistsException.
        with self.key_lock("thing", p["thingName"]):
            try:
                cur = self.moto_call("describe_thing", thingName=p["thingName"])
            except ApiError as e:
                if e.code != "ResourceNotFoundException":
                    raise
                return None
            want_attrs = (p.get("attributePayload") or {}).get("attributes") or {}
            same = (cur.get("attributes") or {}) == want_attrs \
                and cur.get("thingTypeName") == p.get("thingTypeName") \
                and cur.get("billingGroupName") == p.get("billingGroupName")
            if not same:
                raise ApiError("ResourceAlreadyExistsException", 409,
                               f"Thing {p['thingName']} already exists in account with different "
                               f"attributes", resourceId=cur["thingId"], resourceArn=cur["thingArn"])
            return {"thingName": cur["thingName"], "thingArn": cur["thingArn"],
                    "thingId": cur["thingId"]}

    def op_AttachPolicy(self, p, ctx):
        # moto has no per-target limit. AWS: at most 10 policies per certificate.
        try:
            cur = self.moto_call("list_attached_policies", target=p["target"])["policies"]
        except ApiError:
            return None
        names = {c["policyName"] for c in cur}
        if p["policyName"] not in names and len(names) >= 10:
            raise ApiError("LimitExceededException", 410,
                           "The number of attached policies exceeds the limit of 10")
        return None

    def op_DeletePolicyVersion(self, p, ctx):
        # moto: InvalidRequestException 400 for the default version; AWS: DeleteConflictException 409.
        pol = self.moto_call("get_policy", policyName=p["policyName"])
        if pol.get("defaultVersionId") == p["policyVersionId"]:
            raise ApiError("DeleteConflictException", 409,
                           "Cannot delete the default version of a policy")
        return None

    # -- topic rules: recorded for the gateway's rules engine, then forwarded to moto ----------

    def _record_rule(self, name, payload):
        m = RULE_FROM.search(payload.get("sql") or "")
        sqs = [a["sqs"] for a in payload.get("actions") or [] if isinstance(a, dict) and "sqs" in a]
        with self.lock:
            self.rules[name] = {"name": name, "topic": m.group(1) if m else None,
                                "disabled": bool(payload.get("ruleDisabled")), "sqs": sqs}

    def op_CreateTopicRule(self, p, ctx):
        self._record_rule(p["ruleName"], p.get("topicRulePayload") or {})
        return None

    def op_ReplaceTopicRule(self, p, ctx):
        self._record_rule(p["ruleName"], p.get("topicRulePayload") or {})
        return None

    def op_DeleteTopicRule(self, p, ctx):
        with self.lock:
            self.rules.pop(p["ruleName"], None)
        return None

    def internal_sqs_send(self, queue_url, body):
        """The rules engine's sqs action: SendMessage to the queue (in moto)."""
        try:
            r = self.moto_sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        except ClientError as e:
            err = e.response.get("Error", {})
            raise ApiError(err.get("Code", "InternalFailureException"),
                           e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500),
                           err.get("Message", "moto error"))
        with self.lock:
            self.front["sqs_rule_messages"] += 1
        return {"MessageId": r["MessageId"]}

    # -- SQS through the front door ------------------------------------------------------------

    def sqs_fault(self, op):
        """Only faults asked for by name: the IoT fault rates never hit SQS by accident."""
        queued = self.config["next_faults"].get(op)
        if queued:
            return str(queued.pop(0))
        f = self.config["faults"]
        if op not in f["operations"]:
            return None
        r = self.rng.random()
        if r < f["error_rate"]:
            return str(self.rng.choice(f["error_statuses"]))
        return None

    def forward_sqs(self, headers, body):
        u = urllib.parse.urlsplit(self.moto_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        skip = {"connection", "content-length", "transfer-encoding", "keep-alive",
                "authorization", "x-amz-security-token"}
        hdrs = {k: v for k, v in headers if k.lower() not in skip}
        hdrs["Authorization"] = (f"AWS4-HMAC-SHA256 Credential=standin/20260101/{self.region}/sqs/"
                                 "aws4_request, SignedHeaders=host, Signature=0")
        try:
            conn.request("POST", "/", body=body or None, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def forward_sts(self, body):
        u = urllib.parse.urlsplit(self.moto_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        hdrs = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "Authorization": (f"AWS4-HMAC-SHA256 Credential=standin/20260101/{self.region}/sts/"
                                  "aws4_request, SignedHeaders=host, Signature=0")}
        try:
            conn.request("POST", "/", body=body, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    # -- topic rule destinations (moto: not implemented) ---------------------------------------

    def _dest_public(self, d):
        return {k: d[k] for k in ("arn", "status", "createdAt", "lastUpdatedAt", "statusReason",
                                  "httpUrlProperties") if k in d}

    def send_confirmation(self, arn):
        with self.lock:
            d = self.destinations.get(arn)
            if d is None:
                raise ApiError("ResourceNotFoundException", 404, "Destination not found")
            d["token"] = secrets.token_hex(48)
            d["status"] = "IN_PROGRESS"
            d["statusReason"] = ("Awaiting confirmation. Confirmation message sent on "
                                 f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; "
                                 "no response received from the endpoint.")
            d["lastUpdatedAt"] = time.time()
            url = d["httpUrlProperties"]["confirmationUrl"]
            token = d["token"]
        msg = {"arn": arn, "confirmationToken": token,
               "enableUrl": f"{self.public_url}/confirmdestination/{token}",
               "messageType": "DestinationConfirmation"}
        g = self.config["gateway"]
        sep = "&" if "?" in url else "?"
        target = url.rstrip("/") + "/" + sep + "confirmationToken=" + urllib.parse.quote(token)
        def run():
            res = sc.deliver_http_action(
                target, msg, {"x-amz-rules-engine-message-type": "DestinationConfirmation",
                              "x-amz-rules-engine-destination-arn": arn},
                retry_delay=g["retry_delay_ms"] / 1000.0, timeout=g["event_timeout_ms"] / 1000.0,
                cafile=g["event_cafile"], insecure=g["event_insecure"])
            with self.lock:
                self.gateway_log.append({"kind": "confirmation", "arn": arn, "outcomes": res})
                self.gateway_stats["confirmations_sent"] += 1
        threading.Thread(target=run, daemon=True).start()
        return msg

    def op_CreateTopicRuleDestination(self, p, ctx):
        conf = p["destinationConfiguration"].get("httpUrlConfiguration")
        if conf is None:
            raise ApiError("InvalidRequestException", 400, "Only HTTP destinations are supported")
        url = conf["confirmationUrl"]
        if not (url.startswith("https://") or
                (self.config["allow_http_destinations"] and url.startswith("http://"))):
            raise ApiError("InvalidRequestException", 400, "The confirmation URL must use HTTPS")
        with self.lock:
            for d in self.destinations.values():
                if d["httpUrlProperties"]["confirmationUrl"] == url:
                    raise ApiError("ResourceAlreadyExistsException", 409,
                                   "Topic rule destination already exists",
                                   resourceId=d["arn"], resourceArn=d["arn"])
            arn = self.arn("ruledestination", "http/" + str(uuid.uuid4()))
            now = time.time()
            self.destinations[arn] = {"arn": arn, "status": "IN_PROGRESS", "createdAt": now,
                                      "lastUpdatedAt": now, "httpUrlProperties":
                                      {"confirmationUrl": url}}
        self.send_confirmation(arn)
        return {"topicRuleDestination": self._dest_public(self.destinations[arn])}

    def op_GetTopicRuleDestination(self, p, ctx):
        with self.lock:
            d = self.destinations.get(p["arn"])
            if d is None:
                raise ApiError("ResourceNotFoundException", 404, "Destination not found")
            return {"topicRuleDestination": self._dest_public(d)}

    def op_ListTopicRuleDestinations(self, p, ctx):
        with self.lock:
            return {"destinationSummaries": [
                {k: v for k, v in self._dest_public(d).items()
                 if k != "httpUrlProperties"} | {"httpUrlSummary": d["httpUrlProperties"]}
                for d in self.destinations.values()]}

    def op_UpdateTopicRuleDestination(self, p, ctx):
        with self.lock:
            d = self.destinations.get(p["arn"])
            if d is None:
                raise ApiError("InvalidRequestException", 400, "Destination not found")
            if p["status"] == "IN_PROGRESS":
                pass
            elif p["status"] in ("ENABLED", "DISABLED") and d["status"] in ("ENABLED", "DISABLED"):
                d["status"], d["lastUpdatedAt"] = p["status"], time.time()
                d.pop("statusReason", None)
                return {}
            else:
                raise ApiError("InvalidRequestException", 400,
                               f"Cannot change status from {d['status']} to {p['status']}")
        self.send_confirmation(p["arn"])
        return {}

    def op_DeleteTopicRuleDestination(self, p, ctx):
        with self.lock:
            if self.destinations.pop(p["arn"], None) is None:
                raise ApiError("InvalidRequestException", 400, "Destination not found")
        return {}

    def op_ConfirmTopicRuleDestination(self, p, ctx):
        with self.lock:
            for d in self.destinations.values():
                if d.get("token") and hmac.compare_digest(d["token"], p["confirmationToken"]):
                    if d["status"] == "IN_PROGRESS":
                        # Signed API call: enabled. Unsigned enableUrl visit: confirmed, disabled.
                        d["status"] = "ENABLED" if ctx.get("akid") else "DISABLED"
                        d["lastUpdatedAt"] = time.time()
                        d.pop("statusReason", None)
                    return {}
        raise ApiError("InvalidRequestException", 400, "Invalid confirmation token")

    # -- internal registry API for gateway.py ------------------------------------------------

    def internal_registry(self, with_config=False):
        """The CAs, destinations and rules (and the gateway's config): read at every device
        connection, so it asks moto nothing."""
        with self.lock:
            cas = [{"certificateId": caid, "pem": ca["pem"], "status": ca["status"],
                    "autoRegistrationStatus": ca["autoreg"], "certificateMode": ca["mode"]}
                   for caid, ca in self.cas.items()]
            dests = [self._dest_public(d) for d in self.destinations.values()]
            rules = [dict(r) for r in self.rules.values() if not r["disabled"] and r["topic"]]
            out = {"cas": cas, "destinations": dests, "account": self.account,
                   "region": self.region, "rules": rules}
            if with_config:
                out["gateway"] = copy.deepcopy(self.config["gateway"])
        return out

    def internal_cert(self, cid, brief=False):
        """A certificate's status, CA, policies and things; brief: the policies and things only
        when it is ACTIVE (the gateway's connection check: one moto call for the others)."""
        try:
            d = self.moto_call("describe_certificate", certificateId=cid)["certificateDescription"]
        except ApiError as e:
            if e.code == "ResourceNotFoundException":
                raise ApiError("ResourceNotFoundException", 404, "unknown certificate")
            raise
        arn = d["certificateArn"]
        pols, things = [], []
        if not brief or d["status"] == "ACTIVE":
            pols = self.moto_call("list_attached_policies", target=arn).get("policies", [])
            things = self.moto_call("list_principal_things", principal=arn).get("things", [])
        with self.lock:
            ts = self.jitr_ts.get(cid)
        return {"certificateId": cid, "certificateArn": arn, "status": d["status"],
                "caCertificateId": self.ca_for_cert(sc.load_pem_certs(d["certificatePem"])[0]),
                "registrationTimestamp": ts, "policies": [x["policyName"] for x in pols],
                "things": things}

    def internal_jitr_register(self, pem, caid):
        ca = self._ca(caid)
        cert = sc.load_pem_certs(pem)[0]
        cid = sc.cert_id(cert)
        created = False
        try:
            got = self.moto_call("register_certificate", certificatePem=sc.cert_pem(cert),
                                 caCertificatePem=ca["pem"], status="PENDING_ACTIVATION")
            created = True
            if got["certificateId"] != cid:
                raise ApiError("InternalFailureException", 500,
                               "moto is not running with iot.use_valid_cert=True")
        except ApiError as e:
            if e.code != "ResourceAlreadyExistsException":
                raise
        with self.lock:
            self.cert_ca[cid] = caid
            self.jitr_ts.setdefault(cid, sc.now_ms())
            return {"certificateId": cid, "created": created, "registrationTimestamp": self.jitr_ts[cid]}

    def stats_dict(self):
        with self.lock:
            return {"operations": {k: v.to_dict() for k, v in self.stats.items()},
                    "front_door": dict(self.front), "gateway": dict(self.gateway_stats),
                    "sts": list(self.sts_log), "signers": dict(self.signers),
                    "gateway_log": list(self.gateway_log),
                    "throttled": sum(v.throttled for v in self.stats.values()),
                    "faults": sum(v.faults for v in self.stats.values())}


# ---------------------------------------------------------------------------------------------
# HTTP front


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Server"
    sys_version = ""

    def setup(self):
        super().setup()
        # headers and body go out in separate writes; without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        if self.server.standin_verbose:
            sys.stderr.write("standin: " + (fmt % args) + "\n")

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", headers=None, truncate=False):
        offset = self.server.standin.config["clock_offset_s"]
        hdrs = {"x-amzn-RequestId": str(uuid.uuid4()),
                "Date": self.date_time_string(time.time() + offset)}
        if body:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        self.send_response(status)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _lose_response(self, after_ms):
        """The "timeout" fault: the request was done, its answer never comes."""
        time.sleep(after_ms / 1000.0)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, e):
        body = {"message": e.message}
        body.update(e.extra)
        self._send(e.status, json.dumps(body).encode(), {"x-amzn-ErrorType": e.code})

    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def handle_any(self):
        si = self.server.standin
        body = self._read_body()
        path = self.path.split("?")[0]
        if path.startswith("/_standin/"):
            return self.admin(si, path, body)
        headers = list(self.headers.items())
        if self.is_sqs(path):
            return self.handle_sqs(si, headers, body)
        sts_action = self.sts_action(path, body)
        if sts_action:
            return self.handle_sts(si, sts_action, headers, body)
        if path == "/federation/credentials" and self.command == "GET":
            return self.handle_sso(si)
        op = "-"
        try:
            akid = None
            unsigned_ok = self.command == "GET" and UNAUTH_PATHS.match(path) \
                and self.headers.get("Authorization") is None
            if not unsigned_ok:
                try:
                    akid = verify_sigv4(self.command, self.path, headers, body, si.all_creds(),
                                        [si.region] + list(si.config["extra_regions"]),
                                        si.services, now=si.now())
                except ApiError as e:
                    with si.lock:
                        si.front[e.code] += 1
                    raise
                with si.lock:
                    si.signers[akid] += 1
            route, labels = si.model.route(self.command, path)
            if route is None:
                raise ApiError("UnknownOperationException", 404,
                               f"Unknown operation {self.command} {path}")
            op = route.op.name
            with si.lock:
                st = si.stats[op]
                st.arrive()
                m = SCOPE_REGION.search(self.headers.get("Authorization") or "")
                st.regions[m.group(1) if m else "-"] += 1
                if not si.quota_ok(op):
                    st.throttled += 1
                    st.statuses[400] += 1
                    raise ApiError("ThrottlingException", 400, "Rate exceeded")
                st.admit()
                fault = si.pick_fault(op)
                f = si.config["faults"]
                latency = f["latency_ms"] if not f["operations"] or op in f["operations"] else 0
                timeout_ms = si.config["faults"]["timeout_ms"]
            query = {}
            q = self.path.partition("?")[2]
            for k, v in urllib.parse.parse_qsl(q, keep_blank_values=True):
                query.setdefault(k, []).append(v)
            hdrs = {k.lower(): v for k, v in headers}
            try:
                params = si.model.parse_input(route.op, labels, query, hdrs, body)
            except ApiError:
                with si.lock:
                    st.invalid += 1
                raise
            if latency:
                time.sleep(latency / 1000.0)
            if fault in ("500", "503", "throttle", "expired") or str(fault).startswith("http:"):
                with si.lock:
                    st.faults += 1
                if fault == "throttle":
                    raise ApiError("ThrottlingException", 400, "Rate exceeded")
                if fault == "expired":
                    raise ApiError("ExpiredTokenException", 403,
                                   "The security token included in the request is expired")
                if fault.startswith("http:"):
                    _, status, code = fault.split(":", 2)
                    raise ApiError(code, int(status), "injected fault")
                raise ApiError("InternalFailureException", 500, "Internal failure") \
                    if fault == "500" else \
                    ApiError("ServiceUnavailableException", 503, "Service unavailable")
            ctx = {"method": self.command, "target": self.path, "headers": headers, "body": body,
                   "akid": akid}
            status, rheaders, rbody = self.execute(si, route, params, ctx)
            with si.lock:
                st.statuses[status] += 1
                if fault:
                    st.faults += 1
            if fault == "timeout":
                return self._lose_response(timeout_ms)
            if fault == "malformed":
                rbody = b'{"certificateDescription": {"certificateArn": '
                status = 200
            self._send(status, rbody, rheaders, truncate=(fault == "truncated"))
        except ApiError as e:
            if op != "-" and e.code != "ThrottlingException":
                with si.lock:
                    si.stats[op].statuses[e.status] += 1
            self._error(e)

    SQS_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/sqs/aws4_request")

    def is_sqs(self, path):
        target = self.headers.get("X-Amz-Target") or ""
        if target.startswith("AmazonSQS."):
            return True
        return self.command == "POST" and bool(self.SQS_SCOPE.search(self.headers.get("Authorization") or ""))

    def _sqs_error(self, e):
        body = {"__type": f"com.amazonaws.sqs#{e.code}", "message": e.message}
        self._send(e.status, json.dumps(body).encode(),
                   {"x-amzn-ErrorType": e.code, "Content-Type": "application/x-amz-json-1.0"})

    def handle_sqs(self, si, headers, body):
        target = self.headers.get("X-Amz-Target") or ""
        op = "sqs:" + (target.split(".", 1)[1] if "." in target else "Query")
        try:
            try:
                verify_sigv4(self.command, self.path, headers, body, si.all_creds(), si.region,
                             ["sqs"], now=si.now())
            except ApiError as e:
                with si.lock:
                    si.front[e.code] += 1
                raise
            with si.lock:
                st = si.stats[op]
                st.arrive()
                st.admit()
                fault = si.sqs_fault(op)
            if fault in ("500", "503"):
                with si.lock:
                    st.faults += 1
                    st.statuses[int(fault)] += 1
                raise ApiError("InternalError" if fault == "500" else "ServiceUnavailable",
                               int(fault), "injected fault")
            if fault == "throttle":
                with si.lock:
                    st.faults += 1
                    st.statuses[400] += 1
                raise ApiError("RequestThrottled", 400, "Rate exceeded")
            if fault == "expired":
                with si.lock:
                    st.faults += 1
                raise ApiError("ExpiredToken", 403,
                               "The security token included in the request is expired")
            if fault is not None and fault.startswith("http:"):
                _, fstatus, fcode = fault.split(":", 2)
                with si.lock:
                    st.faults += 1
                raise ApiError(fcode, int(fstatus), "injected fault")
            status, rheaders, rbody = si.forward_sqs(headers, body)
            if fault == "timeout":
                return self._lose_response(si.config["faults"]["timeout_ms"])
            if fault == "malformed":
                rbody, status = b'{"Messages": [', 200
            with si.lock:
                st.statuses[status] += 1
            keep = {"Content-Type": rheaders.get("content-type", "application/x-amz-json-1.0")}
            if "x-amzn-query-error" in rheaders:
                keep["x-amzn-query-error"] = rheaders["x-amzn-query-error"]
            self._send(status, rbody, keep, truncate=(fault == "truncated"))
        except ApiError as e:
            self._sqs_error(e)

    # -- STS ----------------------------------------------------------------------------------

    STS_ACTIONS = ("AssumeRole", "AssumeRoleWithWebIdentity")

    def sts_action(self, path, body):
        if self.command != "POST" or path != "/" or not body:
            return None
        ctype = self.headers.get("Content-Type") or ""
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return None
        action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
        return action if action in self.STS_ACTIONS else None

    def _sts_error(self, status, code, message):
        body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()
        self._send(status, body, {"Content-Type": "text/xml"})

    def handle_sts(self, si, action, headers, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        entry = {"action": action, "role": form.get("RoleArn"), "session": form.get("RoleSessionName"),
                 "external_id": form.get("ExternalId"), "duration": form.get("DurationSeconds"),
                 "signed_by": None}
        op = "sts:" + action
        try:
            if action == "AssumeRole":
                entry["signed_by"] = verify_sigv4(self.command, self.path, headers, body,
                                                  si.all_creds(), si.region, ["sts"])
            elif self.headers.get("Authorization") is not None:
                raise ApiError("InvalidRequest", 400, "AssumeRoleWithWebIdentity is not signed")
            elif form.get("WebIdentityToken") not in si.web_tokens:
                raise ApiError("InvalidIdentityToken", 400, "Couldn't verify the token")
        except ApiError as e:
            with si.lock:
                si.front[e.code] += 1
                entry["error"] = e.code
                si.sts_log.append(entry)
            return self._sts_error(e.status, e.code, e.message)
        with si.lock:
            st = si.stats[op]
            st.arrive()
            st.admit()
            queued = si.config["next_faults"].get(op)
            fault = str(queued.pop(0)) if queued else None
        if fault is not None:
            with si.lock:
                st.faults += 1
                st.statuses[int(fault)] += 1
                entry["error"] = "fault " + fault
                si.sts_log.append(entry)
            return self._sts_error(int(fault), "ServiceUnavailable", "injected fault")
        status, rheaders, rbody = si.forward_sts(body)
        if status == 200:
            m = {k: re.search(rf"<{k}>([^<]*)</{k}>", rbody.decode()) for k in
                 ("AccessKeyId", "SecretAccessKey", "SessionToken")}
            if all(m.values()):
                with si.lock:
                    si.minted[m["AccessKeyId"].group(1)] = (m["SecretAccessKey"].group(1),
                                                            m["SessionToken"].group(1))
                entry["issued"] = m["AccessKeyId"].group(1)
        with si.lock:
            st.statuses[status] += 1
            si.sts_log.append(entry)
        self._send(status, rbody, {"Content-Type": rheaders.get("content-type", "text/xml")})

    # -- the SSO portal -------------------------------------------------------------------------

    def handle_sso(self, si):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        token = self.headers.get("x-amz-sso_bearer_token")
        with si.lock:
            st = si.stats["sso:GetRoleCredentials"]
            st.arrive()
            grant = si.sso_tokens.get(token) if token else None
        if grant is None:
            with si.lock:
                st.statuses[401] += 1
            return self._error(ApiError("UnauthorizedException", 401,
                                        "Session token not found or invalid"))
        if (q.get("role_name", [None])[0] != grant["roleName"] or
                q.get("account_id", [None])[0] != grant["accountId"]):
            with si.lock:
                st.statuses[403] += 1
            return self._error(ApiError("ForbiddenException", 403, "No access"))
        akid, secret, tok = si.mint()
        with si.lock:
            st.admit()
            st.statuses[200] += 1
        exp = int((time.time() + 3600) * 1000)
        self._send(200, json.dumps({"roleCredentials": {
            "accessKeyId": akid, "secretAccessKey": secret, "sessionToken": tok,
            "expiration": exp}}).encode())

    def execute(self, si, route, params, ctx):
        op = route.op
        fn = getattr(si, "op_" + op.name, None)
        result = fn(params, ctx) if fn else None
        if isinstance(result, tuple):
            status, hdrs, body = result
        elif result is None:
            status, hdrs, body = si.forward(ctx["method"], ctx["target"], ctx["headers"], ctx["body"])
        else:
            out = si.model.filter_output(op.output_shape, result) if op.output_shape else {}
            return 200, {}, (json.dumps(out, default=_jsonable).encode() if op.output_shape else b"")
        ctype = hdrs.get("content-type", "")
        if status // 100 != 2:
            if "json" not in ctype:
                raise ApiError("InternalFailureException", 500,
                               f"stand-in: moto cannot serve {op.name} (HTTP {status})")
            data = json.loads(body or b"{}")
            code = (hdrs.get("x-amzn-errortype") or data.get("__type") or "InternalFailureException")
            code = code.split(":")[0].split("#")[-1]
            extra = {k: v for k, v in data.items() if k in ("resourceId", "resourceArn")}
            raise ApiError(code, status, data.get("message") or data.get("Message") or code, **extra)
        if not op.output_shape:
            return 200, {}, b""
        out = si.model.filter_output(op.output_shape, json.loads(body or b"{}"))
        return 200, {}, json.dumps(out).encode()

    # -- admin ------------------------------------------------------------------------------

    def admin(self, si, path, body):
        try:
            data = json.loads(body) if body else {}
            if path == "/_standin/config" and self.command == "GET":
                with si.lock:
                    return self._send(200, json.dumps(si.config).encode())
            if path == "/_standin/config" and self.command == "POST":
                with si.lock:
                    deep_merge(si.config, data)
                    if "seed" in data:
                        si.rng.seed(data["seed"])
                    return self._send(200, json.dumps(si.config).encode())
            if path == "/_standin/stats" and self.command == "GET":
                return self._send(200, json.dumps(si.stats_dict()).encode())
            if path == "/_standin/stats/reset" and self.command == "POST":
                with si.lock:
                    si.stats.clear()
                    si.buckets.clear()
                    si.front.clear()
                    si.signers.clear()
                    si.sts_log.clear()
                    si.gateway_stats.clear()
                    si.gateway_log.clear()
                return self._send(200, b"{}")
            if path == "/_standin/reset" and self.command == "POST":
                sc.http_call(si.moto_url + "/moto-api/reset", "POST")
                si.reset_state()
                with si.lock:
                    si.config = copy.deepcopy(DEFAULT_CONFIG)
                return self._send(200, b"{}")
            if path == "/_standin/sts/web-identity-tokens" and self.command == "POST":
                with si.lock:
                    si.web_tokens.add(data["token"])
                return self._send(200, b"{}")
            if path == "/_standin/sso/tokens" and self.command == "POST":
                with si.lock:
                    si.sso_tokens[data["token"]] = {"accountId": data["accountId"],
                                                    "roleName": data["roleName"]}
                return self._send(200, b"{}")
            if path == "/_standin/internal/registry":
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                return self._send(200, json.dumps(
                    si.internal_registry(with_config=q.get("config") == ["1"])).encode())
            if path.startswith("/_standin/internal/cert/"):
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                return self._send(200, json.dumps(si.internal_cert(
                    path.rsplit("/", 1)[1], brief=q.get("brief") == ["1"])).encode())
            if path == "/_standin/internal/jitr-register" and self.command == "POST":
                return self._send(200, json.dumps(
                    si.internal_jitr_register(data["pem"], data["caCertificateId"])).encode())
            if path == "/_standin/internal/sqs-send" and self.command == "POST":
                return self._send(200, json.dumps(
                    si.internal_sqs_send(data["queueUrl"], data["body"])).encode())
            if path == "/_standin/internal/gateway-log" and self.command == "POST":
                with si.lock:
                    for k, v in data.get("counters", {}).items():
                        si.gateway_stats[k] += v
                    if data.get("entry"):
                        si.gateway_log.append(data["entry"])
                return self._send(200, b"{}")
            if path == "/_standin/destinations/send-confirmation" and self.command == "POST":
                return self._send(200, json.dumps(si.send_confirmation(data["arn"])).encode())
            raise ApiError("UnknownOperationException", 404, f"unknown admin path {path}")
        except ApiError as e:
            self._error(e)
        except (ValueError, KeyError, TypeError) as e:
            self._error(ApiError("InvalidRequestException", 400, f"admin: bad request: {e}"))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def start_moto(port=None):
    """Start moto_server (IoT with valid certificate ids) on a free loopback port."""
    for _ in range(5):
        p = port or sc.free_port()
        proc = subprocess.Popen([sys.executable, "-c", MOTO_BOOT.format(port=p)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{p}"
        deadline = time.time() + 30
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            try:
                sc.http_call(url + "/moto-api/data.json", timeout=1)
                return proc, url
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    raise RuntimeError("moto_server did not start")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--moto-url", help="use this moto_server (must have iot.use_valid_cert)")
    ap.add_argument("--region", default=sc.REGION)
    ap.add_argument("--account-id", default=sc.ACCOUNT_ID)
    ap.add_argument("--credentials", action="append",
                    help="AKID:SECRET[:SESSION_TOKEN] accepted by SigV4 (repeatable)")
    ap.add_argument("--signing-names", default="iot,execute-api",
                    type=lambda s: s.split(","), help="accepted credential-scope services")
    ap.add_argument("--quota", action="append", metavar="OP=TPS", help="per-operation rate")
    ap.add_argument("--no-quotas", action="store_true")
    ap.add_argument("--error-rate", type=float, help="fraction of requests answered 503/500")
    ap.add_argument("--latency-ms", type=int, help="latency added to every request")
    ap.add_argument("--timeout-rate", type=float, help="fraction executed, then hung and closed")
    ap.add_argument("--timeout-ms", type=int, help="how long a timeout fault hangs")
    ap.add_argument("--malformed-rate", type=float, help="fraction answered with broken JSON")
    ap.add_argument("--truncated-rate", type=float, help="fraction with a truncated body")
    ap.add_argument("--seed", type=int, help="fault RNG seed")
    ap.add_argument("--config", help="JSON file merged into the runtime config")
    ap.add_argument("--ready-file", help="write {url, port, moto_url, pid} here once listening")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if not args.credentials:
        args.credentials = ["AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"]
    return args


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    moto_proc = None
    if not args.moto_url:
        moto_proc, args.moto_url = start_moto()
    si = StandIn(args)
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.standin = si
    srv.standin_verbose = args.verbose
    port = srv.server_address[1]
    si.public_url = f"http://127.0.0.1:{port}"

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"url": si.public_url, "port": port, "moto_url": args.moto_url,
                       "pid": os.getpid(), "moto_pid": moto_proc.pid if moto_proc else None}, f)
        os.replace(tmp, args.ready_file)
    print(f"iot_standin listening on {si.public_url} (moto {args.moto_url})", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        if moto_proc is not None:
            moto_proc.terminate()
            try:
                moto_proc.wait(10)
            except subprocess.TimeoutExpired:
                moto_proc.kill()
                moto_proc.wait()


if __name__ == "__main__":
    main()
