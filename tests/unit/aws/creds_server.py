#!/usr/bin/env python3
"""Local stand-in for the network credential sources, for unit_aws_credsfetch:
EC2 IMDSv2 (/latest/api/token, /latest/meta-data/iam/security-credentials/[ROLE]), an ECS/EKS
container endpoint (/container/creds, Authorization must equal the token given with --auth) and
STS AssumeRoleWithWebIdentity (POST /sts/). Every credential set has a new AccessKeyId
(ASIAIMDS1, ASIAIMDS2, ...) and expires --expires seconds after it was served.
POST /_mode merges JSON into the mode: imds_token_status (e.g. 405 for an IMDSv1-only host),
container_fail (that many 500s first), expires. GET /_stats returns request counts.
Listens on 127.0.0.1, port written to --port-file.
"""
import argparse
import datetime
import http.server
import json
import threading
import urllib.parse

STATE = {"counts": {}, "mode": {"imds_token_status": 200, "container_fail": 0, "expires": 60}}
LOCK = threading.Lock()
TOKEN = "imds-token-1"


def creds(kind):
    with LOCK:
        n = STATE["counts"].get(kind + "_issued", 0) + 1
        STATE["counts"][kind + "_issued"] = n
        exp = datetime.datetime.utcnow() + datetime.timedelta(seconds=STATE["mode"]["expires"])
    return {"AccessKeyId": f"ASIA{kind.upper()}{n}", "SecretAccessKey": f"secret{kind}{n}",
            "Token": f"token-{kind}-{n}", "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}


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
                return self.reply(200, json.dumps(STATE))
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
        if self.path == "/sts/":
            self.count("sts")
            f = urllib.parse.parse_qs(body.decode())
            if (f.get("Action") != ["AssumeRoleWithWebIdentity"] or
                    f.get("WebIdentityToken") != [SERVER_ARGS.web_token] or
                    not f.get("RoleArn") or self.headers.get("Authorization")):
                return self.reply(400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
                                  "<Message>bad token</Message></Error></ErrorResponse>", "text/xml")
            c = creds("sts")
            xml = ("<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>"
                   f"<Credentials><AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
                   f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>"
                   f"<SessionToken>{c['Token']}</SessionToken>"
                   f"<Expiration>{c['Expiration']}</Expiration></Credentials>"
                   "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")
            return self.reply(200, xml, "text/xml")
        self.reply(404, "")


def main():
    global SERVER_ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--auth", default="Bearer-tok")
    ap.add_argument("--web-token", default="web-identity-token")
    SERVER_ARGS = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    with open(SERVER_ARGS.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(SERVER_ARGS.port_file + ".tmp", SERVER_ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
