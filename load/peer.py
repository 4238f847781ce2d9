"""The naive peer: the least a verification service can do, as a yardstick for the gateway.

A minimal aiohttp app whose only work is ``jwt.decode`` (pyjwt, ES256, a pre-loaded public
key) on ``POST /v1/licences/verify``, answering ``{"verdict": "valid"|"invalid", "reasons": [...]}``.
At start it generates its own TEST key pair (P-256, never persisted) and writes a corpus of
signed JWTs (valid, tampered, expired, wrongly signed) for the run.
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.identifiers import make_licence_identifier, make_uscc
from load.scenarios import DEFAULT_PATHS, CorpusEntry

ISSUER = "urn:test:naive-peer-issuer"
#: a synthetic licence type code (test data, not a real ministry's): 18-char USCC + serial
_TYPE_USCC = make_uscc("1", "1", "330500", "T3ALD001")


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """A TEST key pair made at start; the private key signs the corpus, the public one verifies."""

    private_key: ec.EllipticCurvePrivateKey
    public_key: ec.EllipticCurvePublicKey


def generate_keys() -> PeerKeys:
    priv = ec.generate_private_key(ec.SECP256R1())
    return PeerKeys(priv, priv.public_key())


def _claims(i: int, now: datetime, expired: bool) -> dict[str, Any]:
    issuer_uscc = make_uscc("1", "1", "330500", f"{10000000 + i:08d}"[-8:])
    identifier = make_licence_identifier(_TYPE_USCC + "001", issuer_uscc, f"LOAD{i:08d}")
    exp = now - timedelta(days=1) if expired else now + timedelta(days=365)
    return {"iss": ISSUER, "sub": identifier, "iat": int((now - timedelta(days=2)).timestamp()),
            "exp": int(exp.timestamp()), "licence": {"identifier": identifier, "name": "测试营业执照 (load test)",
                                                     "area_code": "330502"}}


def _tamper(token: str) -> str:
    header, payload, sig = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["licence"]["area_code"] = "310101"  # moved to another region without re-signing
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode("ascii")
    return f"{header}.{forged}.{sig}"


def make_corpus(keys: PeerKeys, n: int, now: datetime, *, invalid_share: float = 0.2, seed: int = 7,
                base64_share: float = 0.1) -> list[CorpusEntry]:
    """``n`` verify requests: mostly valid ES256 JWTs, ``invalid_share`` of them tampered, expired,
    or signed by a stranger's key; ``base64_share`` sent with ``encoding: base64``."""
    rng = random.Random(seed)
    stranger = ec.generate_private_key(ec.SECP256R1())
    entries = []
    for i in range(n):
        bad = rng.random() < invalid_share
        flavour = rng.choice(("tampered", "expired", "stranger")) if bad else "valid"
        claims = _claims(i, now, expired=flavour == "expired")
        key = stranger if flavour == "stranger" else keys.private_key
        token = jwt.encode(claims, key, algorithm="ES256")
        if flavour == "tampered":
            token = _tamper(token)
        if rng.random() < base64_share:
            body = {"licence": base64.b64encode(token.encode()).decode(), "encoding": "base64"}
        else:
            body = {"licence": token, "encoding": "utf-8"}
        entries.append(CorpusEntry(kind="verify", path=DEFAULT_PATHS["verify"], body=body,
                                   expect="valid" if flavour == "valid" else "invalid", tag=flavour))
    return entries


def _verdict(public_key: ec.EllipticCurvePublicKey, body: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("licence"), str):
        return 400, {"title": "bad request", "code": "BAD_REQUEST"}
    text = body["licence"]
    if body.get("encoding", "utf-8") == "base64":
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return 200, {"verdict": "invalid", "reasons": [{"code": "MALFORMED"}]}
    try:
        jwt.decode(text, public_key, algorithms=["ES256"], issuer=ISSUER)
    except jwt.ExpiredSignatureError:
        return 200, {"verdict": "invalid", "reasons": [{"code": "LICENCE_EXPIRED"}]}
    except jwt.InvalidSignatureError:
        return 200, {"verdict": "invalid", "reasons": [{"code": "SIGNATURE_INVALID"}]}
    except jwt.InvalidTokenError:
        return 200, {"verdict": "invalid", "reasons": [{"code": "MALFORMED"}]}
    return 200, {"verdict": "valid", "reasons": []}


def make_app(public_key: ec.EllipticCurvePublicKey, *, require_token: str | None = None) -> web.Application:
    """The peer app. With ``require_token`` set, a request without that bearer token gets 401."""

    async def verify(request: web.Request) -> web.Response:
        if require_token is not None and request.headers.get("Authorization") != f"Bearer {require_token}":
            return web.Response(status=401, body=b'{"code":"UNAUTHENTICATED"}', content_type="application/json")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        status, payload = _verdict(public_key, body)
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(DEFAULT_PATHS["verify"], verify)
    app.router.add_get("/healthz", healthz)
    return app


def corpus_lines(entries: list[CorpusEntry]) -> Iterator[bytes]:
    for e in entries:
        yield orjson.dumps(e.to_json())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
