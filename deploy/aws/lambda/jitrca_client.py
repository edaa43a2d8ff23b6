"""Calls to jitrd's signing API over mutual TLS, for the AWS Lambda functions of this directory
(Python 3 standard library only). Configuration from the environment:

  JITRD_URL            https://HOST:PORT of jitrd's signing listener (config listen)
  JITRD_CA_PEM         the CA certificate(s) of jitrd's server certificate, PEM
                       (or JITRD_CA_FILE: a path; neither: the system's trust store)
  JITRCA_STATION_CERT_PEM, JITRCA_STATION_KEY_PEM
                       the station's certificate and key (jitrctl station issue), PEM
                       (or JITRCA_STATION_CERT_FILE, JITRCA_STATION_KEY_FILE: paths)
  JITRD_TIMEOUT        seconds per request (default 4)
"""
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request

_ctx = None


class JitrdError(Exception):
    """jitrd refused the request or could not be reached."""

    def __init__(self, status, code, message):
        super().__init__(f"jitrd: {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _pem_file(name):
    """The path of a PEM given as NAME_PEM (content, written once to a private file) or
    NAME_FILE (a path)."""
    pem = os.environ.get(name + "_PEM")
    if pem:
        fd, path = tempfile.mkstemp(prefix="jitrca-", suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        return path
    path = os.environ.get(name + "_FILE")
    if path:
        return path
    return None


def _context():
    global _ctx
    if _ctx is None:
        ca = _pem_file("JITRD_CA")
        ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        cert, key = _pem_file("JITRCA_STATION_CERT"), _pem_file("JITRCA_STATION_KEY")
        if not cert or not key:
            raise JitrdError(0, "config", "the station's certificate and key are not configured")
        ctx.load_cert_chain(cert, key)
        _ctx = ctx
    return _ctx


def call(method, path, body=None):
    """(status, JSON reply) of a request to jitrd; JitrdError when it cannot be made."""
    url = os.environ.get("JITRD_URL", "").rstrip("/")
    if not url.startswith("https://"):
        raise JitrdError(0, "config", "JITRD_URL must be an https:// URL")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    timeout = float(os.environ.get("JITRD_TIMEOUT", "4"))
    try:
        with urllib.request.urlopen(req, context=_context(), timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read() or b"{}").get("error", {})
        except ValueError:
            err = {}
        return e.code, {"error": err}
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise JitrdError(0, "unreachable", str(getattr(e, "reason", e))) from e


def error_of(status, reply):
    err = reply.get("error") or {}
    return JitrdError(status, err.get("code", "?"), err.get("message", "no message"))
