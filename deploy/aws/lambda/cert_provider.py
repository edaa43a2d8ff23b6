"""AWS IoT certificate provider (CreateCertificateProvider) for fleet provisioning with jitrca's CA.

AWS IoT invokes this function for every CreateCertificateFromCsr of fleet provisioning with
  {"certificateSigningRequest": PEM, "principalId": ..., "clientId": ...}
and expects {"certificatePem": PEM}. The CSR goes to jitrd's POST /v1/sign as a station
(jitrca_client.py: JITRD_URL, the station's certificate and key), so the certificate is issued,
audited and indexed by jitrca like any other. JITRCA_PROFILE and JITRCA_CA choose the profile and
CA (default: the station's defaults). Any refusal raises: AWS IoT then rejects the request and
the device gets no certificate. Setup: docs/fleet-provisioning.md.
"""
import os
import sys

import jitrca_client


def handler(event, context=None):
    csr = event.get("certificateSigningRequest") if isinstance(event, dict) else None
    if not isinstance(csr, str) or "BEGIN CERTIFICATE REQUEST" not in csr:
        raise ValueError("the event has no certificateSigningRequest in PEM")
    body = {"csr": csr}
    for key, env in (("profile", "JITRCA_PROFILE"), ("ca", "JITRCA_CA")):
        if os.environ.get(env):
            body[key] = os.environ[env]
    status, reply = jitrca_client.call("POST", "/v1/sign", body)
    if status != 201 or not reply.get("certificate"):
        raise jitrca_client.error_of(status, reply)
    print(f"issued serial {reply.get('serial')} certificateId {reply.get('certificateId')} "
          f"for client {event.get('clientId')} (principal {event.get('principalId')})",
          file=sys.stderr)
    return {"certificatePem": reply["certificate"]}
