"""Signed verification receipts (回执): proof of what the gateway answered, checkable offline.

A receipt is a compact JWS (header ``{"alg": "EdDSA"|"ES256", "kid": ..., "typ":
"elicence-receipt+jws"}``) over::

    {"gateway": <gateway id>, "request_digest": <b64url SHA-256 of the request body>,
     "verdict": ..., "reasons": [...], "item": <item code or null>,
     "licence_ids": [...], "time": <canonical UTC text>, "iat": <unix seconds>}

The partner keeps the receipt with its request; anyone with the published key set
(``/v1/keys``, :meth:`ReceiptSigner.jwks`) checks it with :func:`verify_receipt`, or with
any JOSE library. Signing is hand-rolled on ``cryptography`` + ``orjson``
(gateway/audit/jws.py): the header is encoded once per signer, which matters because a
receipt is signed on every verify answer (see load/bench_audit.py for the cost).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.audit.jws import JwsError, JwsSigner, PrivateKey, PublicKey, key_from_jwk, public_jwk, verify_compact
from gateway.audit.model import format_time
from gateway.errors import RECEIPT_INVALID, RequestRejected

RECEIPT_TYP = "elicence-receipt+jws"
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "gateway": str, "request_digest": str, "verdict": str, "reasons": list, "item": (str, type(None)),
    "licence_ids": list, "time": str, "iat": int,
}


def request_digest(body: bytes) -> str:
    """b64url (no padding) SHA-256 of the exact request body bytes."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode("ascii")


class ReceiptSigner:
    """Signs receipts with one key (Ed25519 -> EdDSA, P-256 -> ES256)."""

    def __init__(self, private_key: PrivateKey, kid: str, gateway_id: str) -> None:
        try:
            self._jws = JwsSigner(private_key, kid, RECEIPT_TYP)
        except JwsError as exc:
            raise TypeError(str(exc)) from exc
        self.kid = kid
        self.gateway_id = gateway_id
        self.alg = self._jws.alg

    def sign(self, *, request_body: bytes, verdict: str, reasons: Sequence[str], item: str | None,
             time: datetime, licence_ids: Sequence[str]) -> str:
        claims = {
            "gateway": self.gateway_id,
            "request_digest": request_digest(request_body),
            "verdict": verdict,
            "reasons": list(reasons),
            "item": item,
            "licence_ids": list(licence_ids),
            "time": format_time(time),
            "iat": int(time.timestamp()),
        }
        return self._jws.sign(claims)

    def public_key(self) -> PublicKey:
        return self._jws.public_key()

    def jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key(), self.kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The key set to publish at ``/v1/keys``."""
        return jwks(self)


def jwks(*signers: ReceiptSigner) -> dict[str, list[dict[str, str]]]:
    """One key set for several signers (the current key and those being rotated out)."""
    return {"keys": [s.jwk() for s in signers]}


def _reject(detail: str) -> RequestRejected:
    return RequestRejected(RECEIPT_INVALID, detail)


def verify_receipt(token: str, jwks: dict[str, Any], *, request_body: bytes | None = None) -> dict[str, Any]:
    """Verify a receipt offline against a published key set; return its claims.

    Raises ``RequestRejected(RECEIPT_INVALID)`` with the reason in ``detail``: malformed
    token, unknown kid, algorithm not matching the key, signature not verifying (any
    byte of header, claims or signature changed), missing claims, or -- when the original
    ``request_body`` is given -- a request digest that does not match it.
    """
    keys: dict[str, PublicKey] = {}
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise _reject("the key set has no 'keys' list")
    for jwk in entries:
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
            try:
                keys[jwk["kid"]] = key_from_jwk(jwk)
            except JwsError:
                continue  # keys of other types may be published next to ours
    try:
        claims = verify_compact(token, keys, typ=RECEIPT_TYP)
    except JwsError as exc:
        raise _reject(str(exc)) from exc
    for name, typ in _REQUIRED.items():
        if name not in claims or not isinstance(claims[name], typ) or isinstance(claims[name], bool):
            raise _reject(f"claim {name!r} missing or of the wrong type")
    if request_body is not None and claims["request_digest"] != request_digest(request_body):
        raise _reject("the receipt was issued for a different request body")
    return claims
