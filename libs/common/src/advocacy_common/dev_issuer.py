"""A development token issuer, so the stack runs with no external identity provider.

    advocacy-dev-issuer serve [--port 8400] [--key-file .local/dev-issuer/key.pem]
    advocacy-dev-issuer mint --tenant acme --sub alice --roles editor,reviewer [--ttl 3600]

`serve` publishes the JWKS (`/.well-known/jwks.json`) and OIDC discovery
document. `mint` prints a signed RS256 token. Never use it in production.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_KEY_FILE = ".local/dev-issuer/key.pem"
DEFAULT_AUDIENCE = "advocacy"


class DevIssuer:
    def __init__(self, issuer: str, private_key: rsa.RSAPrivateKey, audience: str = DEFAULT_AUDIENCE,
                 kid: str | None = None):
        self.issuer = issuer
        self.audience = audience
        self.private_key = private_key
        public_numbers = private_key.public_key().public_numbers()
        self.kid = kid or format(public_numbers.n % (1 << 64), "016x")

    @classmethod
    def generate(cls, issuer: str, audience: str = DEFAULT_AUDIENCE) -> DevIssuer:
        return cls(issuer, rsa.generate_private_key(public_exponent=65537, key_size=2048), audience)

    @classmethod
    def from_key_file(cls, path: Path, issuer: str, audience: str = DEFAULT_AUDIENCE) -> DevIssuer:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            path.chmod(0o600)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(issuer, key, audience)

    def mint(self, *, tenant: str, subject: str, roles: list[str] | tuple[str, ...], ttl_seconds: int = 3600,
             audience: str | None = None, issuer: str | None = None, extra: dict[str, Any] | None = None) -> str:
        now = int(time.time())
        claims = {"iss": issuer or self.issuer, "aud": audience or self.audience, "sub": subject,
                  "tenant": tenant, "roles": list(roles), "iat": now, "nbf": now - 1,
                  "exp": now + ttl_seconds, "jti": str(uuid.uuid4()), **(extra or {})}
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/.well-known/jwks.json",
                "id_token_signing_alg_values_supported": ["RS256"]}


class JwksServer:
    """Serves one or more issuers' keys on loopback (a thread; used by `serve` and by tests)."""

    def __init__(self, issuers: list[DevIssuer], host: str = "127.0.0.1", port: int = 0):
        self.issuers = issuers
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                if self.path == "/.well-known/jwks.json":
                    body = {"keys": [k for issuer in owner.issuers for k in issuer.jwks()["keys"]]}
                elif self.path == "/.well-known/openid-configuration":
                    body = owner.issuers[0].discovery()
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> JwksServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="advocacy-dev-issuer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key-file", default=DEFAULT_KEY_FILE)
    parser.add_argument("--issuer", default="http://127.0.0.1:8400")
    parser.add_argument("--audience", default=DEFAULT_AUDIENCE)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the JWKS and discovery document")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8400)
    mint = sub.add_parser("mint", help="print a signed token")
    mint.add_argument("--tenant", required=True)
    mint.add_argument("--sub", required=True)
    mint.add_argument("--roles", required=True, help="comma-separated, e.g. editor,reviewer")
    mint.add_argument("--ttl", type=int, default=3600)
    args = parser.parse_args(argv)
    issuer = DevIssuer.from_key_file(Path(args.key_file), args.issuer, args.audience)
    if args.command == "mint":
        print(issuer.mint(tenant=args.tenant, subject=args.sub, roles=[r for r in args.roles.split(",") if r],
                          ttl_seconds=args.ttl))
        return
    server = JwksServer([issuer], args.host, args.port)
    print(f"dev issuer {args.issuer} serving JWKS on {server.url}/.well-known/jwks.json", flush=True)
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
