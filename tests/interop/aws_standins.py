"""Local stand-ins for the AWS endpoints credentials come from, so the
credential-source tests send no request off the machine:

- ``MotoSts``: moto's server (PyPI ``moto[server]``) in this process, a
  real STS implementation (AssumeRole, AssumeRoleWithWebIdentity,
  GetCallerIdentity) whose backend says what each call asked.
- ``CredentialEndpoints``: one HTTP server on 127.0.0.1 answering as the ECS /
  EKS Pod Identity container endpoint, EC2's IMDSv2 and the IAM Identity
  Center (SSO) portal's GetRoleCredentials, recording every request.

The shapes follow AWS's documentation of each endpoint; what each checks of
the request (the container authorization token, the IMDSv2 session token, the
SSO bearer token) is what the real one refuses without.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from conftest import free_port, port_accepts

EXPIRY = "2031-01-01T00:00:00Z"
EXPIRY_MS = 1924992000000


def token_access_key(token: str) -> tuple[str, bool]:
    """The access key id a MSK IAM token was signed with, and whether it
    carries a session token."""
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    q = parse_qs(urlparse(url).query)
    return unquote(q["X-Amz-Credential"][0]).split("/")[0], "X-Amz-Security-Token" in q


class MotoSts:
    """moto's server, in this process (so its STS backend can be inspected),
    on a free 127.0.0.1 port."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self.server.start()
        deadline = time.monotonic() + 30
        while not port_accepts(self.port):
            assert time.monotonic() < deadline, "moto's server did not start"
            time.sleep(0.05)

    def caller_arn(self, access_key_id: str) -> str:
        """The identity moto issued `access_key_id` to (moto resolves the key
        without checking the signature, which is what this needs)."""
        import boto3

        sts = boto3.client("sts", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id=access_key_id, aws_secret_access_key="unused",
                           aws_session_token="unused")
        return sts.get_caller_identity()["Arn"]

    def assumed(self, session_name: str) -> dict:
        """What the AssumeRole* call for `session_name` asked: role, external
        id, and the region whose STS endpoint took it."""
        from moto.sts.models import sts_backends

        found = {(r.role_arn, r.external_id, r.region_name)
                 for per_account in sts_backends.values() for backend in per_account.values()
                 for r in backend.assumed_roles if r.session_name == session_name}
        assert len(found) == 1, found
        role_arn, external_id, region = found.pop()
        return {"role_arn": role_arn, "external_id": external_id, "region": region}

    def stop(self) -> None:
        self.server.stop()


class CredentialEndpoints:
    """Container endpoint at /container, IMDSv2 under /latest, the SSO portal
    at /federation/credentials. `creds` is what each hands out."""

    IMDS_ROLE = "sluice-instance-role"

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str = "standin-session",
                 container_token: str = "container-auth-token", sso_token: str = "sso-access-token"):
        self.creds = (access_key_id, secret_access_key, session_token)
        self.container_token = container_token
        self.sso_token = sso_token
        self.requests: list[tuple[str, str, dict]] = []
        self.imds_tokens: set[str] = set()
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: str | dict, headers: dict | None = None) -> None:
                data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                endpoints.requests.append(("PUT", self.path, dict(self.headers)))
                if self.path == "/latest/api/token":
                    ttl = self.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
                    if not ttl:
                        return self._send(400, "missing x-aws-ec2-metadata-token-ttl-seconds")
                    tok = f"imds-session-{len(endpoints.imds_tokens)}"
                    endpoints.imds_tokens.add(tok)
                    return self._send(200, tok, {"x-aws-ec2-metadata-token-ttl-seconds": ttl})
                self._send(404, "not found")

            def do_GET(self):
                endpoints.requests.append(("GET", self.path, dict(self.headers)))
                ak, sk, st = endpoints.creds
                path = urlparse(self.path).path
                if path == "/container":
                    if self.headers.get("Authorization") != endpoints.container_token:
                        return self._send(401, {"message": "bad authorization token"})
                    return self._send(200, {"AccessKeyId": ak, "SecretAccessKey": sk, "Token": st,
                                            "Expiration": EXPIRY, "RoleArn": "arn:aws:iam::123456789012:role/task"})
                if path.startswith("/latest/"):
                    if self.headers.get("x-aws-ec2-metadata-token") not in endpoints.imds_tokens:
                        return self._send(401, "IMDSv2 session token required")
                    for base in ("/latest/meta-data/iam/security-credentials/",
                                 "/latest/meta-data/iam/security-credentials-extended/"):
                        if path == base:
                            return self._send(200, endpoints.IMDS_ROLE)
                        if path == base + endpoints.IMDS_ROLE:
                            return self._send(200, {"Code": "Success", "LastUpdated": "2026-12-07T00:00:00Z",
                                                    "Type": "AWS-HMAC", "AccessKeyId": ak, "SecretAccessKey": sk,
                                                    "Token": st, "Expiration": EXPIRY,
                                                    "AccountId": "123456789012"})
                    return self._send(404, "not found")
                if path == "/federation/credentials":
                    if self.headers.get("x-amz-sso_bearer_token") != endpoints.sso_token:
                        return self._send(401, {"message": "Session token not found or invalid"})
                    return self._send(200, {"roleCredentials": {"accessKeyId": ak, "secretAccessKey": sk,
                                                                "sessionToken": st, "expiration": EXPIRY_MS}})
                self._send(404, "not found")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def hits(self, prefix: str) -> int:
        return sum(1 for _, p, _ in self.requests if p.startswith(prefix))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
