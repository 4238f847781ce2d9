"""Partner-side helpers for demos and tests: make a client assertion, get a token in-process.

``python -m gateway.auth token`` (wired as ``python -m gateway demo token``) prints a token of
the TEST partner ``demo-partner``, signed by the gateway's TEST key
``certs/partners/gateway.test-signing-key.pem``, so a dev server using the same TEST key
accepts it.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from .jose import SigningKey, load_signing_key
from .partners import load_partners
from .tokens import ASSERTION_TYPE_JWT_BEARER, DEFAULT_TOKEN_ENDPOINT, GRANT_CLIENT_CREDENTIALS, TokenService

DEMO_CLIENT_ID = "demo-partner"
#: file name of the gateway's TEST access-token signing key inside the registry directory
GATEWAY_TEST_KEY_FILE = "gateway.test-signing-key.pem"


def partner_test_key_path(registry_dir: str | Path, client_id: str) -> Path:
    return Path(registry_dir) / f"{client_id}.test-private.pem"


def make_client_assertion(client_id: str, private_key: Any, alg: str, audience: str, now: float, *,
                          lifetime_s: int = 120, jti: str | None = None,
                          extra: dict[str, Any] | None = None) -> str:
    """What a partner does: a JWT with iss = sub = client_id, aud, iat, exp and a fresh jti."""
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": int(now),
              "exp": int(now) + lifetime_s, "jti": jti or secrets.token_urlsafe(16), **(extra or {})}
    return jwt.encode(claims, private_key, algorithm=alg)


def token_request_form(assertion: str, scope: str | None = None) -> dict[str, str]:
    form = {"grant_type": GRANT_CLIENT_CREDENTIALS, "client_assertion_type": ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": assertion}
    if scope:
        form["scope"] = scope
    return form


def demo_token(registry_dir: str | Path, *, client_id: str = DEMO_CLIENT_ID, scope: str | None = None,
               gateway_key: SigningKey | None = None, token_endpoint: str = DEFAULT_TOKEN_ENDPOINT,
               now: float | None = None) -> dict[str, Any]:
    """Sign a client assertion with the partner's TEST key and exchange it in-process."""
    registry = load_partners(registry_dir)
    partner = registry[client_id]
    pem = partner_test_key_path(registry_dir, client_id).read_bytes()
    private_key = serialization.load_pem_private_key(pem, password=None)
    key = gateway_key or load_signing_key(Path(registry_dir) / GATEWAY_TEST_KEY_FILE)
    service = TokenService(registry, key, token_endpoint=token_endpoint)
    at = time.time() if now is None else now
    assertion = make_client_assertion(client_id, private_key, partner.alg, token_endpoint, at)
    return service.issue(token_request_form(assertion, scope), at)
