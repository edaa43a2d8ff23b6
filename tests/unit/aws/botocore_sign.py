#!/usr/bin/env python3
"""Cross-check of aws/sigv4.c against botocore's SigV4Auth on the IoT requests jitrca sends.

For every operation below, botocore's own IoT client serialises the request (so paths, greedy
labels, query order and JSON bodies are exactly what an AWS SDK puts on the wire); a before-send
hook captures it instead of sending it. The captured request is then signed again explicitly with
botocore.auth.SigV4Auth at a fixed time, with and without a session token, for the signing names
"iot" and (for a few) "execute-api". The script prints each Authorization header.

With --check PROG the cases go as JSON on stdin to PROG (aws_botocore_check), which signs the
same wire requests with aws_sigv4_sign() and compares Authorization, canonical request and string
to sign; the script exits with PROG's status. botocore missing is a failure, not a skip.

Headers botocore adds after signing (amz-sdk-invocation-id, amz-sdk-request, Content-Length) are
left out of what both signers see: they are not signed by botocore, and passing them to our signer
would sign them. Re-signing the captured request must reproduce the Authorization botocore's
client put on the wire, which proves the reconstruction is faithful.
"""
import argparse
import base64
import datetime
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

# Keep the user's AWS configuration out of it.
for _k in [k for k in os.environ if k.startswith("AWS_")]:
    del os.environ[_k]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import botocore  # noqa: E402
import botocore.auth  # noqa: E402
import botocore.session  # noqa: E402
from botocore.awsrequest import AWSRequest, AWSResponse  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

AK = "AKIDEXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+TOKEN/x+y=="
REGION = "us-east-1"
WHEN = datetime.datetime(2026, 1, 1, 0, 0, 0)
CERT_ID = "0123456789abcdef" * 4
CA_ID = "fedcba9876543210" * 4
CERT_ARN = f"arn:aws:iot:{REGION}:123456789012:cert/{CERT_ID}"
PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUexample+/=\n"
       "-----END CERTIFICATE-----\n")
POST_SIGNING = {"amz-sdk-invocation-id", "amz-sdk-request", "content-length"}
SIGNER_OWNED = {"authorization", "x-amz-date", "x-amz-security-token"}

# (case name, client method, arguments)
OPERATIONS = [
    ("GetRegistrationCode", "get_registration_code", {}),
    ("RegisterCACertificate", "register_ca_certificate",
     dict(caCertificate=PEM, verificationCertificate=PEM, setAsActive=True,
          allowAutoRegistration=True, certificateMode="DEFAULT")),
    ("DescribeCertificate", "describe_certificate", dict(certificateId=CERT_ID)),
    ("UpdateCertificate", "update_certificate", dict(certificateId=CERT_ID, newStatus="ACTIVE")),
    ("CreateThing", "create_thing",
     dict(thingName="dev:1", attributePayload={"attributes": {"batch": "B7"}})),
    ("CreateThing-plain", "create_thing", dict(thingName="dev-001")),
    ("AttachPolicy", "attach_policy", dict(policyName="p+a=b,c@d.e", target=CERT_ARN)),
    ("AttachThingPrincipal", "attach_thing_principal",
     dict(thingName="dev:1", principal=CERT_ARN)),
    ("ListCertificatesByCA", "list_certificates_by_ca",
     dict(caCertificateId=CA_ID, pageSize=250, marker="AAE/x+y=z ~\u00fc&k=v",
          ascendingOrder=True)),
    ("ConfirmTopicRuleDestination", "confirm_topic_rule_destination",
     dict(confirmationToken="AYADeCz/AbC+d=e:f/g h")),
    ("DescribeEndpoint", "describe_endpoint", dict(endpointType="iot:Data-ATS")),
    ("GetTopicRuleDestination", "get_topic_rule_destination",
     dict(arn=f"arn:aws:iot:{REGION}:123456789012:ruledestination/http/abc")),
]
# Also signed with the pre-2023 signing name and through a loopback endpoint with a port.
EXECUTE_API = {"CreateThing", "UpdateCertificate", "AttachThingPrincipal"}
LOOPBACK = {"CreateThing", "ListCertificatesByCA"}


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **_kw):
        yield self._body


def capture(endpoint, token):
    """Runs every operation through botocore's IoT client; returns the wire requests."""
    session = botocore.session.get_session()
    client = session.create_client(
        "iot", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=AK,
        aws_secret_access_key=SK, aws_session_token=token)
    captured = []

    def before_send(request, **_kw):
        captured.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(b"{}"))

    client.meta.events.register("before-send.iot", before_send)
    out = {}
    for name, method, args in OPERATIONS:
        captured.clear()
        getattr(client, method)(**args)
        if len(captured) != 1:
            raise SystemExit(f"{name}: expected one request, got {len(captured)}")
        out[name] = captured[0]
    return out


def hdr(value):
    return value.decode() if isinstance(value, bytes) else value


def build_cases():
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: WHEN
    cases = []
    try:
        for endpoint in ("https://iot.us-east-1.amazonaws.com", "http://127.0.0.1:18081"):
            for token in (None, TOKEN):
                wire = capture(endpoint, token)
                for name, _m, _a in OPERATIONS:
                    if endpoint.startswith("http:") and name not in LOOPBACK:
                        continue
                    for service in ("iot", "execute-api"):
                        if service == "execute-api" and name not in EXECUTE_API:
                            continue
                        cases.append(one_case(name, wire[name], endpoint, token, service))
    finally:
        botocore.auth.get_current_datetime = original
    return cases


def one_case(name, req, endpoint, token, service):
    url = urlsplit(req.url)
    headers = [(k, hdr(v)) for k, v in req.headers.items()
               if k.lower() not in POST_SIGNING | SIGNER_OWNED]
    body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
    creds = Credentials(AK, SK, token)
    signer = botocore.auth.SigV4Auth(creds, service, REGION)
    fresh = AWSRequest(method=req.method, url=req.url, headers=dict(headers), data=body)
    signer.add_auth(fresh)
    if service == "iot" and hdr(fresh.headers["Authorization"]) != hdr(
            req.headers["Authorization"]):
        raise SystemExit(f"{name}: re-signing the captured request does not reproduce the "
                         "client's signature; the reconstruction is wrong")
    authorization = hdr(fresh.headers["Authorization"])
    del fresh.headers["Authorization"]  # as at signing time
    creq = signer.canonical_request(fresh)
    sts = signer.string_to_sign(fresh, creq)
    label = f"{name} [{service}{', token' if token else ''}{', ' + url.netloc if endpoint.startswith('http:') else ''}]"
    return {
        "name": label,
        "method": req.method,
        "path": url.path,
        "query": url.query,
        "headers": [["Host", url.netloc]] + [list(h) for h in headers],
        "body_b64": base64.b64encode(body).decode(),
        "token": token,
        "service": service,
        "region": REGION,
        "amz_date": hdr(fresh.headers["X-Amz-Date"]),
        "authorization": authorization,
        "canonical_request": creq,
        "string_to_sign": sts,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", metavar="PROG", help="aws_botocore_check to compare against")
    ap.add_argument("--dump", action="store_true", help="print the cases as JSON")
    args = ap.parse_args()
    cases = build_cases()
    if args.dump:
        json.dump(cases, sys.stdout, indent=1)
        return 0
    print(f"botocore {botocore.__version__}: {len(cases)} requests")
    for c in cases:
        print(f"{c['name']}: {c['method']} {c['path']}{'?' + c['query'] if c['query'] else ''}")
        print(f"  Authorization: {c['authorization']}")
    if not args.check:
        return 0
    sys.stdout.flush()
    res = subprocess.run([args.check], input=json.dumps(cases).encode(), check=False)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
