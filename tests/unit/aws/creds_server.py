#!/usr/bin/env python3
"""Local stand-in for the network credential sources, for unit_aws_credsfetch:
EC2 IMDSv2 (/latest/api/token, /latest/meta-data/iam/security-credentials/[ROLE],
/latest/meta-data/placement/region), an ECS/EKS container endpoint (/container/creds,
Authorization must equal the token given with --auth), STS (POST /sts/): AssumeRoleWithWebIdentity
(unsigned) and AssumeRole (SigV4 for service sts verified with botocore's signer against the
--static key and every credential set served so far), and the SSO portal's GetRoleCredentials
(GET /federation/credentials, header x-amz-sso_bearer_token must be --sso-token). Every
credential set has a new AccessKeyId (ASIAIMDS1, ASIAROLE2, ...) and expires --expires seconds
after it was served.
POST /_mode merges JSON into the mode: imds_token_status (e.g. 405 for an IMDSv1-only host),
container_fail (that many 500s first), expires, deny_roles (role ARNs AssumeRole refuses),
imds_region. GET /_stats returns request counts and the last AssumeRole's parameters.
Listens on 127.0.0.1, port written to --port-file.
"""
import argparse
import datetime
import http.server
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from iot_standin import ApiError, verify_sigv4  # noqa: E402

STATE = {"counts": {}, "mode": {"imds_token_status": 200, "container_fail": 0, "expires": 60,
                                "deny_roles": [], "imds_region": "eu-central-1"},
         "assume": [], "creds": {}}
LOCK = threading.Lock()
TOKEN = "imds-token-1"


def creds(kind):
    with LOCK:
        n = STATE["counts"].get(kind + "_issued", 0) + 1
        STATE["counts"][kind + "_issued"] = n
        exp = datetime.datetime.utcnow() + datetime.timedelta(seconds=STATE["mode"]["expires"])
    c = {"AccessKeyId": f"ASIA{kind.upper()}{n}", "SecretAccessKey": f"secret{kind}{n}",
         "Token": f"token-{kind}-{n}", "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}
    with LOCK:
        STATE["creds"][c["AccessKeyId"]] = (c["SecretAccessKey"], c["Token"])
    return c


def sts_xml(action, c):
    return (f"<{action}Response><{action}Result>"
            f"<Credentials><AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
            f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>"
            f"<SessionToken>{c['Token']}</SessionToken>"
            f"<Expiration>{c['Expiration']}</Expiration></Credentials>"
            f"</{action}Result></{action}Response>")


def sts_error(code, msg):
    return (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{msg}</Message>"
            "</Error></ErrorResponse>")


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def count(self, what):
        with LOCK:
            STATE["counts"][what] = STATE["counts"].get(what, 0) + 1

    def reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_PUT(self):
        self.body()
        if self.path == "/latest/api/token":
            self.count("imds_token")
            st = STATE["mode"]["imds_token_status"]
            if st != 200:
                return self.reply(st, "")
            if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self.reply(400, "")
            return self.reply(200, TOKEN, "text/plain")
        self.reply(404, "")

    def do_GET(self):
        p = self.path
        if p == "/_stats":
            with LOCK:
                return self.reply(200, json.dumps({k: v for k, v in STATE.items() if k != "creds"}))
        if p == "/latest/meta-data/placement/region":
            self.count("imds_region")
            v2 = STATE["mode"]["imds_token_status"] == 200
            if v2 and self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.reply(401, "")
            return self.reply(200, STATE["mode"]["imds_region"], "text/plain")
        if p.startswith("/federation/credentials?"):
            self.count("sso")
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(p).query)
            if self.headers.get("x-amz-sso_bearer_token") != SERVER_ARGS.sso_token:
                body = json.dumps({"message": "Session token not found or invalid"})
                self.send_response(401)
                self.send_header("x-amzn-ErrorType", "UnauthorizedException")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return self.wfile.write(body.encode())
            if q.get("role_name") != ["Admin"] or q.get("account_id") != ["111122223333"]:
                return self.reply(403, json.dumps({"message": "No access"}))
            c = creds("sso")
            exp = int(datetime.datetime.strptime(c["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
                      .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
            return self.reply(200, json.dumps({"roleCredentials": {
                "accessKeyId": c["AccessKeyId"], "secretAccessKey": c["SecretAccessKey"],
                "sessionToken": c["Token"], "expiration": exp}}))
        if p.startswith("/latest/meta-data/iam/security-credentials/"):
            v2 = STATE["mode"]["imds_token_status"] == 200
            if v2 and self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.reply(401, "")
            role = p[len("/latest/meta-data/iam/security-credentials/"):]
            if role == "":
                self.count("imds_role")
                return self.reply(200, "jitrca-role\n", "text/plain")
            if role != "jitrca-role":
                return self.reply(404, "")
            self.count("imds_creds")
            c = creds("imds")
            c.update({"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": c["Expiration"]})
            return self.reply(200, json.dumps(c))
        if p == "/container/creds":
            self.count("container")
            if self.headers.get("Authorization") != SERVER_ARGS.auth:
                return self.reply(401, json.dumps({"message": "bad token"}))
            with LOCK:
                fail = STATE["mode"]["container_fail"]
                if fail > 0:
                    STATE["mode"]["container_fail"] = fail - 1
            if fail > 0:
                return self.reply(500, "{}")
            return self.reply(200, json.dumps(creds("cont")))
        self.reply(404, "")

    def do_POST(self):
        body = self.body()
        if self.path == "/_mode":
            with LOCK:
                STATE["mode"].update(json.loads(body))
            return self.reply(200, "{}")
        if self.path == "/sts/" and b"Action=AssumeRole&" in body:
            self.count("assume")
            f = urllib.parse.parse_qs(body.decode())
            with LOCK:
                known = dict(STATE["creds"])
            known[SERVER_ARGS.static.split(":")[0]] = (SERVER_ARGS.static.split(":")[1], None)
            try:
                akid = verify_sigv4("POST", self.path, list(self.headers.items()), body, known,
                                    "us-east-1", ["sts"])
            except ApiError as e:
                return self.reply(403, sts_error(e.code, e.message), "text/xml")
            arn = (f.get("RoleArn") or [""])[0]
            with LOCK:
                STATE["assume"].append({"signed_by": akid, "role": arn,
                                        "session": (f.get("RoleSessionName") or [""])[0],
                                        "external_id": (f.get("ExternalId") or [None])[0],
                                        "duration": (f.get("DurationSeconds") or [None])[0]})
                deny = arn in STATE["mode"]["deny_roles"]
            if deny:
                return self.reply(403, sts_error("AccessDenied", f"not authorized to assume {arn}"),
                                  "text/xml")
            return self.reply(200, sts_xml("AssumeRole", creds("role")), "text/xml")
        if self.path == "/sts/":
            self.count("sts")
            f = urllib.parse.parse_qs(body.decode())
            if (f.get("Action") != ["AssumeRoleWithWebIdentity"] or
                    f.get("WebIdentityToken") != [SERVER_ARGS.web_token] or
                    not f.get("RoleArn") or self.headers.get("Authorization")):
                return self.reply(400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
                                  "<Message>bad token</Message></Error></ErrorResponse>", "text/xml")
            return self.reply(200, sts_xml("AssumeRoleWithWebIdentity", creds("sts")), "text/xml")
        self.reply(404, "")


def main():
    global SERVER_ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--auth", default="Bearer-tok")
    ap.add_argument("--web-token", default="web-identity-token")
    ap.add_argument("--sso-token", default="sso-token-ok")
    ap.add_argument("--static", default="AKIDSTATIC:static-secret", help="AKID:SECRET for AssumeRole")
    SERVER_ARGS = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    with open(SERVER_ARGS.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(SERVER_ARGS.port_file + ".tmp", SERVER_ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
