"""AWS IoT fleet provisioning pre-provisioning hook that asks jitrca's claim allowlist.

AWS IoT invokes it (the template's PreProvisioningHook) with
  {"claimCertificateId", "certificateId", "certificatePem", "templateArn", "clientId",
   "parameters": {...}}
and provisions the device only on {"allowProvisioning": true}. The device id is the template
parameter JITRCA_DEVICE_PARAMETER (default SerialNumber); jitrd's GET /v1/claims/NAME?device=ID
(NAME: JITRCA_CLAIM, a claim made with jitrctl claim issue --devices FILE) says whether it is on
the allowlist of a claim that is neither revoked nor expired. Any doubt (no such parameter,
jitrd unreachable or refusing) answers false. Setup: docs/fleet-provisioning.md.
"""
import os
import sys
import urllib.parse

import jitrca_client


def handler(event, context=None):
    params = event.get("parameters") if isinstance(event, dict) else None
    name = os.environ.get("JITRCA_DEVICE_PARAMETER", "SerialNumber")
    claim = os.environ.get("JITRCA_CLAIM", "")
    device = params.get(name) if isinstance(params, dict) else None
    if not claim or not isinstance(device, str) or not device:
        print(f"refused: no claim configured or no parameter {name}", file=sys.stderr)
        return {"allowProvisioning": False}
    path = "/v1/claims/%s?device=%s" % (urllib.parse.quote(claim, safe=""),
                                        urllib.parse.quote(device, safe=""))
    try:
        status, reply = jitrca_client.call("GET", path)
    except jitrca_client.JitrdError as e:
        print(f"refused {device}: {e}", file=sys.stderr)
        return {"allowProvisioning": False}
    allowed = status == 200 and reply.get("allowed") is True
    if not allowed:
        why = reply.get("reason") or (reply.get("error") or {}).get("message", "")
        print(f"refused {device} (claim {claim}): {status} {why}", file=sys.stderr)
    return {"allowProvisioning": allowed}
