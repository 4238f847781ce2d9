"""Minimal compact JWS (RFC 7515) for the gateway's own signed statements.

Used for audit checkpoints and verification receipts. Hand-rolled on ``cryptography``
and ``orjson`` instead of pyjwt because a receipt is signed on every verify answer:
pyjwt re-serialises with the stdlib json module and re-parses keys per call; this module
prepares the key and the protected header once per signer. Only two algorithms, chosen
by the key type, never by the token: ``EdDSA`` (Ed25519) and ``ES256`` (P-256, raw r||s).

Verification rejects ``alg: none``, HMAC algorithms, unknown ``kid``, an algorithm that
does not match the key's type, ``crit`` headers, and any malformed part.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from pybase64 import b64encode_as_string as _b64encode_as_string

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
MAX_TOKEN_CHARS = 16_384
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class JwsError(ValueError):
    """The token is malformed or its signature does not verify (message says which)."""


def b64u(data: bytes) -> str:
    """base64url without padding (what ``base64.urlsafe_b64encode`` gives, stripped of ``=``).
    Several run for every audited answer (request digest, receipt claims, proof, Merkle nodes):
    pybase64 encodes straight to ``str`` with the URL-safe alphabet, ~0.9 µs for a receipt's
    ~300-byte claims against ~1.7 µs for binascii + translate + decode."""
    return _b64encode_as_string(data, altchars=b"-_").rstrip("=")


_B64U = re.compile(r"[A-Za-z0-9_-]*")


def b64u_decode(text: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2): only the 64 characters of the
    alphabet, and the one text that encodes the bytes. The standard library would drop any other
    character and ignore the unused low bits of the last one, so many texts would decode alike: a
    receipt or checkpoint altered that way would still verify."""
    if not isinstance(text, str) or not _B64U.fullmatch(text):
        raise JwsError("not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwsError("not base64url") from exc
    if len(text) % 4 and b64u(data) != text:   # the last character's unused bits must be zero
        raise JwsError("not canonical base64url (unused bits set)")
    return data


#: the ECDSA-with-SHA-256 signature algorithm object, made once (ES256 signs)
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def alg_for(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise JwsError("only Ed25519 and P-256 keys are supported")


def public_jwk(key: PublicKey, kid: str) -> dict[str, str]:
    """The JWK (RFC 8037 OKP / RFC 7518 EC) of a public key."""
    alg = alg_for(key)
    if isinstance(key, Ed25519PublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        x = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u(x), "kid": kid, "alg": alg, "use": "sig"}
    nums = key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")),
            "y": b64u(nums.y.to_bytes(32, "big")), "kid": kid, "alg": alg, "use": "sig"}


def key_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    """Load a public key from a JWK; raise JwsError when it is not an Ed25519 / P-256 key."""
    try:
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            raw = b64u_decode(jwk["x"])
            if len(raw) != 32:
                raise JwsError("Ed25519 x must be 32 bytes")
            return Ed25519PublicKey.from_public_bytes(raw)
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            x = int.from_bytes(b64u_decode(jwk["x"]), "big")
            y = int.from_bytes(b64u_decode(jwk["y"]), "big")
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, JwsError):
            raise
        raise JwsError(f"bad JWK: {exc}") from exc
    raise JwsError("JWK is not an Ed25519 or P-256 key")


@dataclass(frozen=True, slots=True)
class JwsSigner:
    """Signs payloads as compact JWS with one key; the header is encoded once."""

    key: PrivateKey
    kid: str
    typ: str
    _header_b64: str = ""
    _alg: str = ""

    def __post_init__(self) -> None:
        alg = alg_for(self.key)
        header = {"alg": alg, "kid": self.kid, "typ": self.typ}
        object.__setattr__(self, "_alg", alg)
        object.__setattr__(self, "_header_b64", b64u(orjson.dumps(header)))

    @property
    def alg(self) -> str:
        return self._alg

    def public_key(self) -> PublicKey:
        return self.key.public_key()

    def sign(self, payload: dict[str, Any]) -> str:
        signing_input = f"{self._header_b64}.{b64u(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))}"
        data = signing_input.encode("ascii")
        # the key's type is known from alg (an isinstance against the key's ABC cost ~1 us a call here,
        # and the receipts' seal signs once per committed audit batch)
        if self._alg == "EdDSA":
            sig = self.key.sign(data)   # type: ignore[call-arg]
        else:
            r, s = decode_dss_signature(self.key.sign(data, _ECDSA_SHA256))   # type: ignore[call-arg]
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{b64u(sig)}"


def peek_header(token: str) -> dict[str, Any]:
    """Decode the protected header without verifying anything (to pick the key)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise JwsError("token missing or too long")
    if not _COMPACT.fullmatch(token):
        raise JwsError("not a compact JWS (three dot-separated base64url parts)")
    parts = token.split(".")
    try:
        header = orjson.loads(b64u_decode(parts[0]))
    except orjson.JSONDecodeError as exc:
        raise JwsError("header is not JSON") from exc
    if not isinstance(header, dict):
        raise JwsError("header is not a JSON object")
    return header


def verify_compact(token: str, keys: Mapping[str, PublicKey], *, typ: str) -> dict[str, Any]:
    """Verify a compact JWS against ``keys`` (kid -> public key); return the payload."""
    header = peek_header(token)
    h64, p64, s64 = token.split(".")
    if header.get("typ") != typ:
        raise JwsError(f"typ is {header.get('typ')!r}, expected {typ!r}")
    if "crit" in header:
        raise JwsError("crit header not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise JwsError(f"unknown kid {kid!r}")
    key = keys[kid]
    alg = header.get("alg")
    if alg != alg_for(key):
        raise JwsError(f"alg {alg!r} does not match the key of kid {kid!r}")
    sig = b64u_decode(s64)
    data = f"{h64}.{p64}".encode("ascii")
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(sig, data)
        else:
            if len(sig) != 64:
                raise JwsError("ES256 signature must be 64 bytes")
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise JwsError("signature does not verify") from exc
    try:
        payload = orjson.loads(b64u_decode(p64))
    except orjson.JSONDecodeError as exc:
        raise JwsError("payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise JwsError("payload is not a JSON object")
    return payload
