"""The few parts of GitHub that the release and deploy steps reach, for tests only.

    github-stand-in.py PORT DIR

listens on 127.0.0.1:PORT and serves
  GET /token?repository=O/R&ref=REF&workflow=FILE[&caller=FILE]&audience=AUD
        (plain HTTP) the Actions runtime's ID-token request: cosign's
        github-actions provider calls ACTIONS_ID_TOKEN_REQUEST_URL with
        "bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" (DIR/request-token). The
        reply is an RS256 JWT with the claims GitHub puts into a job's token
        (job_workflow_ref = FILE, workflow_ref = caller, default FILE), from
        the issuer https://token.actions.githubusercontent.com
  CONNECT token.actions.githubusercontent.com:443 | api.github.com:443
        an HTTPS proxy for exactly these hosts, answering itself over TLS
        with DIR/tls.pem (a certificate from the test's CA: only a client
        given SSL_CERT_FILE=that CA and HTTPS_PROXY=this server gets here):
          token.actions.githubusercontent.com: OIDC discovery and JWKS, what
            Fulcio fetches to check the token
          api.github.com: GET /repos/O/R/releases/tags/TAG (the files in
            DIR/releases/TAG/), GET /repos/O/R/releases/assets/ID, POST
            /graphql (no draft release), GET /repos/O/R/attestations/DIGEST
            (the Sigstore bundles DIR/attestations/DIGEST/*.json)
Anything else is 404 (or 403 for another CONNECT host). DIR/oidc.key, the
token signing key, is made at start and stays in DIR.
"""

import base64
import hashlib
import http.server
import json
import os
import socketserver
import ssl
import sys
import time
import urllib.parse
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://token.actions.githubusercontent.com"
ISSUER_HOST = "token.actions.githubusercontent.com"
API_HOST = "api.github.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    port, state = int(sys.argv[1]), sys.argv[2]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(os.path.join(state, "oidc.key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(os.path.join(state, "request-token")) as f:
        request_token = f.read().strip()
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "stand-in",
           "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
           "e": b64url(numbers.e.to_bytes(3, "big"))}
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(state, "tls.pem"), os.path.join(state, "tls.key"))
    assets: dict[str, str] = {}  # asset id -> file

    def mint(q: dict[str, str]) -> str:
        repo, ref, now = q["repository"], q["ref"], int(time.time())
        owner = repo.split("/")[0]
        claims = {
            "iss": ISSUER, "aud": q.get("audience", "sigstore"), "iat": now, "nbf": now - 5, "exp": now + 300,
            "jti": str(uuid.uuid4()), "sub": f"repo:{repo}:ref:{ref}", "ref": ref, "ref_type": "tag",
            "sha": "0" * 40, "repository": repo, "repository_id": "1", "repository_owner": owner,
            "repository_owner_id": "2", "repository_visibility": "public", "run_id": "3", "run_number": "1",
            "run_attempt": "1", "runner_environment": "github-hosted", "event_name": "push",
            "actor": owner, "actor_id": "2", "workflow": "release",
            "workflow_ref": f"{repo}/.github/workflows/{q.get('caller', q['workflow'])}@{ref}",
            "workflow_sha": "0" * 40,
            "job_workflow_ref": f"{repo}/.github/workflows/{q['workflow']}@{ref}", "job_workflow_sha": "0" * 40,
        }
        head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "stand-in"}).encode())
        body = b64url(json.dumps(claims).encode())
        sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64url(sig)}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        host = ""  # the CONNECTed host once TLS is up; "" on the plain port

        def reply(self, code: int, body: object, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_CONNECT(self) -> None:
            host = self.path.rsplit(":", 1)[0]
            if host not in (ISSUER_HOST, API_HOST):
                self.reply(403, {"message": f"the stand-in proxies only {ISSUER_HOST} and {API_HOST}"})
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            self.connection = tls.wrap_socket(self.connection, server_side=True)
            self.rfile = self.connection.makefile("rb")
            self.wfile = self.connection.makefile("wb", buffering=0)
            self.host = host
            self.close_connection = False

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.host == API_HOST and self.path == "/graphql":
                self.reply(200, {"data": {"repository": {"release": None}}})
            else:
                self.reply(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if not self.host and parts == ["token"]:
                if self.headers.get("Authorization", "").lower() != f"bearer {request_token}":
                    self.reply(401, {"message": "bad request token"})
                else:
                    self.reply(200, {"value": mint(dict(urllib.parse.parse_qsl(url.query)))})
            elif self.host == ISSUER_HOST and url.path == "/.well-known/openid-configuration":
                self.reply(200, {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/.well-known/jwks",
                                 "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                                 "id_token_signing_alg_values_supported": ["RS256"]})
            elif self.host == ISSUER_HOST and url.path == "/.well-known/jwks":
                self.reply(200, {"keys": [jwk]})
            elif self.host == API_HOST and parts[:1] == ["repos"] and parts[3:5] == ["releases", "tags"]:
                self.release("/".join(parts[1:3]), "/".join(parts[5:]))
            elif self.host == API_HOST and parts[:1] == ["repos"] and parts[3:5] == ["releases", "assets"]:
                path = assets.get("/".join(parts[5:]), "")
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        self.reply(200, f.read(), "application/octet-stream")
                else:
                    self.reply(404, {"message": "Not Found"})
            elif self.host == API_HOST and parts[:1] == ["repos"] and parts[3:4] == ["attestations"]:
                found = os.path.join(state, "attestations", parts[4]) if len(parts) == 5 else ""
                bundles = []
                for name in sorted(os.listdir(found)) if os.path.isdir(found) else []:
                    with open(os.path.join(found, name)) as f:
                        bundles.append({"bundle": json.load(f), "initiator": "user"})
                self.reply(200 if bundles else 404, {"attestations": bundles} if bundles else {"message": "Not Found"})
            else:
                self.reply(404, {"message": "Not Found"})

        def release(self, repo: str, tag: str) -> None:
            d = os.path.join(state, "releases", tag)
            if not os.path.isdir(d) or "/" in tag:
                self.reply(404, {"message": "Not Found"})
                return
            listed = []
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                assets[digest[:12]] = path
                listed.append({"id": int(digest[:12], 16), "node_id": digest[:12], "name": name, "label": "",
                               "state": "uploaded", "size": os.path.getsize(path),
                               "content_type": "application/octet-stream", "digest": f"sha256:{digest}",
                               "url": f"https://{API_HOST}/repos/{repo}/releases/assets/{digest[:12]}",
                               "browser_download_url": f"https://github.com/{repo}/releases/download/{tag}/{name}"})
            self.reply(200, {"id": 1, "node_id": "release", "tag_name": tag, "name": tag, "draft": False,
                             "prerelease": "-" in tag, "url": f"https://{API_HOST}/repos/{repo}/releases/1",
                             "html_url": f"https://github.com/{repo}/releases/tag/{tag}", "assets": listed})

        def log_message(self, *_: object) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
