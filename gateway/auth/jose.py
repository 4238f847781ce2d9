"""Minimal JOSE primitives for the gateway's own access tokens.

Only what the hot path needs: base64url, the two signature algorithms the gateway signs
its access tokens with (``ES256`` and ``EdDSA``/Ed25519), and a :class:`SigningKey` that
produces compact JWS with a *fixed* protected header. Because the header is fixed per key,
the verifier recognises a token's key by comparing the header segment as a string and never
parses an attacker-chosen header (so ``alg: none`` / ``HS256`` / key-confusion tricks cannot
even reach a signature routine).

Partner client assertions (many key types, not on the hot path) are verified with PyJWT in
:mod:`gateway.auth.tokens`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ES256 = "ES256"
EDDSA = "EdDSA"
GATEWAY_ALGS = (ES256, EDDSA)

#: ``typ`` of the access tokens (RFC 9068 JWT access token profile)
ACCESS_TOKEN_TYP = "at+jwt"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
#: verify(signature, signing_input) -> bool
VerifyFn = Callable[[bytes, bytes], bool]


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url (RFC 7515 §2); ``ValueError`` for any other spelling.

    Only the one canonical text of the bytes is accepted: no ``=`` padding, no ``+``/``/`` of
    standard base64 (``b64decode`` with ``altchars`` accepts both alphabets), no non-zero unused
    bits in the last character. Otherwise ``<token>=``, ``<token>==`` or a signature re-spelt with
    ``+`` still verified: each spelling a distinct string, so a cache miss (a signature check)
    and another entry in the verifier's LRU, the same token accepted with trailing garbage.
    """
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if b64url_encode(data) != text:
        raise ValueError("not canonical unpadded base64url")
    return data


def alg_for_key(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return EDDSA
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(key.curve, ec.SECP256R1):
        return ES256
    raise ValueError(f"unsupported gateway signing key type {type(key).__name__}: use Ed25519 or EC P-256")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The RFC 7517 public JWK members (no kid/alg/use)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        nums = key.public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": b64url_encode(nums.x.to_bytes(32, "big")),
                "y": b64url_encode(nums.y.to_bytes(32, "big"))}
    raise ValueError(f"unsupported key type {type(key).__name__}")


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638 SHA-256 thumbprint: required members, lexicographic order, no whitespace."""
    members = public_jwk(key)  # already only the required members, keys sorted
    canonical = orjson.dumps(members, option=orjson.OPT_SORT_KEYS)
    return b64url_encode(hashlib.sha256(canonical).digest())


def header_segment(alg: str, kid: str) -> str:
    """The exact base64url protected header of every access token signed with (alg, kid)."""
    return b64url_encode(orjson.dumps({"alg": alg, "kid": kid, "typ": ACCESS_TOKEN_TYP}))


def make_verify_fn(key: PublicKey) -> VerifyFn:
    """A closure doing exactly one signature check for ``key``'s algorithm."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        def verify_eddsa(sig: bytes, signing_input: bytes) -> bool:
            try:
                key.verify(sig, signing_input)
            except InvalidSignature:
                return False
            return True
        return verify_eddsa
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        ecdsa = ec.ECDSA(hashes.SHA256())

        def verify_es256(sig: bytes, signing_input: bytes) -> bool:
            if len(sig) != 64:  # JWS ES256 is raw r||s, never DER
                return False
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            try:
                key.verify(der, signing_input, ecdsa)
            except InvalidSignature:
                return False
            return True
        return verify_es256
    raise ValueError(f"unsupported key type {type(key).__name__}")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The gateway's access-token signing key with its fixed protected header."""

    private_key: PrivateKey
    alg: str
    kid: str
    header_segment: str = field(init=False)

    def __post_init__(self) -> None:
        if self.alg != alg_for_key(self.private_key):
            raise ValueError(f"alg {self.alg} does not match the key type")
        object.__setattr__(self, "header_segment", header_segment(self.alg, self.kid))

    @classmethod
    def from_private_key(cls, private_key: PrivateKey, kid: str | None = None) -> SigningKey:
        alg = alg_for_key(private_key)
        return cls(private_key, alg, kid or jwk_thumbprint(private_key.public_key()))

    @classmethod
    def generate(cls, alg: str = ES256) -> SigningKey:
        if alg == EDDSA:
            return cls.from_private_key(ed25519.Ed25519PrivateKey.generate())
        if alg == ES256:
            return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))
        raise ValueError(f"unsupported gateway alg {alg!r}; choose one of {GATEWAY_ALGS}")

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        """Public JWK for ``/v1/keys`` (JWKS: ``{"keys": [k.jwk() for k in keys]}``)."""
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = f"{self.header_segment}.{b64url_encode(orjson.dumps(claims))}"
        data = signing_input.encode("ascii")
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            sig = self.private_key.sign(data)
        else:
            r, s = decode_dss_signature(self.private_key.sign(data, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{b64url_encode(sig)}"


def load_signing_key(path: str | Path, kid: str | None = None) -> SigningKey:
    """Load an unencrypted PKCS#8 PEM private key (Ed25519 or EC P-256)."""
    data = Path(path).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{path}: gateway signing key must be Ed25519 or EC P-256")
    return SigningKey.from_private_key(key, kid)
