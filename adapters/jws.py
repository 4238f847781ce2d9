"""Format family ``jws``: JWS compact serialisation, ES256 or EdDSA (RFC 7515 / 8037).

Header: ``alg`` (ES256 | EdDSA only), ``kid`` = certificate thumbprint (x5t#S256) or an
``x5c`` chain, ``iss`` = the issuing region's GB/T 2260 code, ``typ`` = ``elicence+jwt``,
optional ``crit`` (none understood: any entry rejects). Payload: the region's own field dictionary plus ``iat`` (signing time);
objects and arrays in it nest at most :data:`MAX_PAYLOAD_DEPTH` deep.

Hand-rolled on top of ``cryptography`` instead of pyjwt: pyjwt's per-call overhead
(header validation, per-character base64 checks, option merging) costs more than the
ES256 verify itself on this machine; see load/bench_core.py for the figures.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

import orjson
import pybase64
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway import errors
from gateway.errors import LicenceRejected, shown
from gateway.model import positional_builder
from gateway.specs import RegionSpec
from gateway.trust import CertInfo

from .base import Envelope, KeyRef, Limits, SigningKey

ALLOWED_ALGS = frozenset({"ES256", "EdDSA"})
TYP = "elicence+jwt"
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


_PAD = (b"", b"=", b"==", b"===")
_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp
_b64decode = pybase64.b64decode


def _b64d(part: bytes) -> bytes:
    """Strict base64url: any character outside the alphabet (or '+', '/', '=') is refused.

    pybase64 (SIMD) decodes a licence payload ~3.5x faster than binascii; with ``altchars`` it
    would also take '+' and '/', so those (and '=', which base64url omits) are refused first
    (int needles: a plain memchr, without the buffer protocol a bytes needle costs)."""
    if 43 in part or 47 in part or 61 in part:  # b"+", b"/", b"="
        raise LicenceRejected(errors.MALFORMED, "JWS part is not base64url")
    try:
        return _b64decode(part + _PAD[-len(part) % 4], b"-_", True)  # altchars, validate (positional: cheaper)
    except (binascii.Error, ValueError):
        raise LicenceRejected(errors.MALFORMED, "JWS part is not base64url") from None


#: ``Envelope(...)`` with every field given (open's hot path); JWS carries no family extras
_make_envelope = positional_builder(Envelope)
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})

_BYTE = tuple(bytes((i,)) for i in range(256))


#: DER around r and s when neither has a leading zero byte, by (r's top bit) | (s's top bit) << 1:
#: SEQUENCE header + r's INTEGER header, then s's INTEGER header (a 0x00 keeps a set top bit positive)
_DER_FULL = (
    (b"\x30\x44\x02\x20", b"\x02\x20"),
    (b"\x30\x45\x02\x21\x00", b"\x02\x20"),
    (b"\x30\x45\x02\x20", b"\x02\x21\x00"),
    (b"\x30\x46\x02\x21\x00", b"\x02\x21\x00"),
)


def _es256_der(sig: bytes) -> bytes:
    """JWS r||s (2 x 32 bytes) -> DER ECDSA-Sig-Value, by byte operations: the same bytes as
    ``encode_dss_signature(int(r), int(s))`` without the two big-integer conversions."""
    a, b = sig[0], sig[32]
    if a and b:  # no leading zero byte in r or s (all but ~1 in 128 signatures): fixed-size INTEGERs
        head, mid = _DER_FULL[(a > 127) | ((b > 127) << 1)]
        return head + sig[:32] + mid + sig[32:]
    r = sig[:32].lstrip(b"\0") or b"\0"
    if r[0] > 127:
        r = b"\0" + r
    s = sig[32:].lstrip(b"\0") or b"\0"
    if s[0] > 127:
        s = b"\0" + s
    return b"".join((b"\x30", _BYTE[len(r) + len(s) + 4], b"\x02", _BYTE[len(r)], r, b"\x02", _BYTE[len(s)], s))


def _b64e(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


#: deepest nesting of objects and arrays in a payload (the payload itself is level 1, a licence's surface
#: container level 2). orjson reads 1,024 levels but writes at most 254, and an answer carries the surface
#: values three levels down: a deeper payload, even a genuinely signed one, could not be answered (HTTP 500)
MAX_PAYLOAD_DEPTH = 32


def _deeper_than(value: Any, limit: int) -> bool:
    """Does ``value`` (parsed JSON) nest objects / arrays more than ``limit`` levels deep?"""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if type(item) is dict else item
        stack.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)
    return False


#: parsed, validated headers by their base64url text: one issuer key writes the same header on
#: every licence, so each distinct header is decoded and checked once (bounded; pure). Bounded in bytes
#: too: only headers up to :data:`_HEADER_CACHE_MAX_BYTES` of base64url are kept (an issuer's header is
#: ~200 bytes, one with a four-certificate x5c chain ~4 KB); a header is checked before any signature,
#: so 1,024 distinct 256-KB headers, cached, held ~0.5 GB per worker (the text and its x5c bytes)
_HEADER_CACHE_SIZE = 1024
_HEADER_CACHE_MAX_BYTES = 16 * 1024
_HEADERS: dict[bytes, tuple[str, KeyRef]] = {}


def _read_header(header: dict[str, Any]) -> tuple[str, KeyRef]:
    """Validate a JWS protected header; (alg, KeyRef) or LicenceRejected."""
    alg = header.get("alg")
    if type(alg) is not str or alg not in ALLOWED_ALGS:  # a list or object is unhashable: not an alg at all
        raise LicenceRejected(errors.ALGORITHM_NOT_ALLOWED, f"alg {shown(alg)} is not allowed (ES256, EdDSA only)")
    if "crit" in header:
        raise LicenceRejected(errors.MALFORMED, f"unsupported critical header(s) {shown(header['crit'])}")
    if header.get("typ", TYP) != TYP:
        raise LicenceRejected(errors.UNSUPPORTED_FORMAT, f"typ {shown(header.get('typ'))} is not {TYP}")
    kid = header.get("kid")
    chain: tuple[bytes, ...] = ()
    if "x5c" in header:
        x5c = header["x5c"]
        if not isinstance(x5c, list) or not x5c or len(x5c) > 4:
            raise LicenceRejected(errors.MALFORMED, "x5c must be a list of 1 to 4 certificates")
        try:
            chain = tuple(base64.b64decode(c, validate=True) for c in x5c)
        except (binascii.Error, ValueError, TypeError):
            raise LicenceRejected(errors.MALFORMED, "x5c entry is not base64") from None
    region_hint = header.get("iss")
    if region_hint is not None and not isinstance(region_hint, str):
        raise LicenceRejected(errors.MALFORMED, "iss must be a region code string")
    if kid is not None and not isinstance(kid, str):
        raise LicenceRejected(errors.MALFORMED, "kid must be a string")
    if kid is None and not chain:
        raise LicenceRejected(errors.UNKNOWN_ISSUER, "JWS names no key (kid or x5c)")
    return alg, KeyRef(kid=kid, chain=chain, region_hint=region_hint)


class JwsFamily:
    name = "jws"

    def sniff(self, data: bytes) -> bool:
        return data[:3] == b"eyJ" and data.count(46) == 2  # b"."

    def open(self, data: bytes, limits: Limits) -> Envelope:
        if len(data) > limits.max_licence_bytes:
            raise LicenceRejected(errors.MALFORMED, f"token larger than {limits.max_licence_bytes} bytes")
        if data[-1:].isspace() or data[:1].isspace():
            data = data.strip()
        i = data.find(46)  # b"." (an int needle: no buffer protocol)
        j = data.find(46, i + 1) if i >= 0 else -1
        if j < 0 or data.find(46, j + 1) >= 0:
            raise LicenceRejected(errors.MALFORMED, "JWS compact needs three parts")
        signed, h64, p64, s64 = data[:j], data[:i], data[i + 1:j], data[j + 1:]
        cached = _HEADERS.get(h64)
        try:
            header = orjson.loads(_b64d(h64)) if cached is None else None
            payload_json = _b64d(p64)
            payload = orjson.loads(payload_json)
        except orjson.JSONDecodeError:
            raise LicenceRejected(errors.MALFORMED, "JWS header or payload is not JSON") from None
        if cached is None:
            if not isinstance(header, dict) or not isinstance(payload, dict):
                raise LicenceRejected(errors.MALFORMED, "JWS header and payload must be JSON objects")
            cached = _read_header(header)
            if len(h64) <= _HEADER_CACHE_MAX_BYTES:
                if len(_HEADERS) >= _HEADER_CACHE_SIZE:
                    _HEADERS.clear()
                _HEADERS[h64] = cached
        elif not isinstance(payload, dict):
            raise LicenceRejected(errors.MALFORMED, "JWS header and payload must be JSON objects")
        alg, key_ref = cached
        # a licence's payload holds two objects (itself, its surface container) and no array: only a payload
        # with a third object or an array is walked (three memchr searches, where counting brackets cost ~2 us)
        i = payload_json.find(123, 1)  # b"{" after the payload's own (int needles: no buffer protocol)
        if ((i >= 0 and payload_json.find(123, i + 1) >= 0) or payload_json.find(91) >= 0) and _deeper_than(
                payload, MAX_PAYLOAD_DEPTH):  # b"["
            raise LicenceRejected(errors.MALFORMED, f"JWS payload nests objects or arrays over {MAX_PAYLOAD_DEPTH} deep")
        iat = payload.pop("iat", None)
        signing_time = None
        if iat is not None:
            if not isinstance(iat, (int, float)) or isinstance(iat, bool):
                raise LicenceRejected(errors.MALFORMED, "iat must be a number")
            try:
                signing_time = _fromtimestamp(iat, _UTC)
            except (OverflowError, OSError, ValueError):  # past time_t, or a year outside 1..9999
                raise LicenceRejected(errors.MALFORMED, f"iat {iat!r} is not a time a licence can be signed at") from None
        sig = _b64d(s64)
        return _make_envelope(self.name, alg, key_ref, payload, signing_time, signed, sig, _NO_EXTRA)

    def verify(self, env: Envelope, cert: CertInfo) -> bool:
        if env.algorithm != cert.algorithm:
            return False  # algorithm/key mismatch: the header cannot choose the key type
        try:
            if env.algorithm == "ES256":
                sig = env.signature
                if len(sig) != 64:
                    return False
                cert.public_key.verify(_es256_der(sig), env.signed_bytes, _ECDSA_SHA256)
            else:
                cert.public_key.verify(env.signature, env.signed_bytes)
            return True
        except InvalidSignature:
            return False

    def encode(self, raw: Mapping[str, Any], spec: RegionSpec, key: SigningKey, signing_time: datetime) -> bytes:
        header = {"alg": key.algorithm, "typ": TYP, "kid": key.cert.key_id, "iss": spec.code}
        payload = dict(raw)
        payload["iat"] = int(signing_time.timestamp())
        signing_input = _b64e(orjson.dumps(header)) + b"." + _b64e(orjson.dumps(payload))
        if key.algorithm == "ES256":
            r, s = decode_dss_signature(key.private_key.sign(signing_input, _ECDSA_SHA256))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        elif key.algorithm == "EdDSA":
            sig = key.private_key.sign(signing_input)
        else:
            raise ValueError(f"jws cannot sign with {key.algorithm}")
        return signing_input + b"." + _b64e(sig)

    def tamper(self, data: bytes) -> bytes:
        """Simulator: change the payload after signing, keep the signature (an altered licence)."""
        h64, p64, s64 = data.split(b".")
        payload = orjson.loads(_b64d(p64))
        for key, value in payload.items():
            if isinstance(value, str) and value:
                payload[key] = value[:-1] + ("甲" if value[-1] != "甲" else "乙")
                break
        return h64 + b"." + _b64e(orjson.dumps(payload)) + b"." + s64
