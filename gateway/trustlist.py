"""The signed trust list: detached JWS over the canonical JSON document, monotonic versions.

The trust-framework operator signs the trust list document that :mod:`gateway.trust` builds
snapshots from. On disk (``trust-list.signed.json``)::

    {"type": "elicence-signed-trust-list",
     "trust_list": { ...the document: type, framework, version, issued_at, expires_at, regions... },
     "signature": "<protected header b64url>..<signature b64url>"}

``signature`` is a compact JWS with a *detached* payload (RFC 7515 appendix F): the signing
input is ``header_b64 + "." + b64url(canonical_json(trust_list))``. Canonical JSON = keys
sorted at every level, no whitespace, UTF-8 (orjson ``OPT_SORT_KEYS``); the document holds
only strings, integers, lists and objects, so the form is unambiguous. The protected header
is ``{"alg": "EdDSA"|"ES256", "kid": <RFC 7638 thumbprint of the operator key>,
"typ": "elicence-trust-list+jws"}``. The operator's PUBLIC key is pinned in the gateway's
configuration (``certs/trust/`` holds a TEST operator key pair for demo and tests).

:func:`judge` is the anti-rollback rule (as in TUF): a candidate is refused when its version
is lower than the held one, when it has the same version but different content, when it has
expired, or when it claims to be issued in the future. Same version and same content is
"unchanged". Pure: ``now`` is a parameter.

The held version outlives the process (TUF keeps its trusted metadata on disk for the same
reason): every accepted list's version and digest are written to a small state file
(:func:`write_floor`, setting ``trust_state``, default ``<var_dir>/trust-held.json``), and after a
restart the first candidate is judged against that :class:`TrustFloor`. Without it an older list,
still unexpired and validly signed, replayed to a restarted gateway would un-revoke every issuer
revoked since. A state file that cannot be read refuses every list (fail closed) until an operator
has looked at it; the way to go back to older content is to sign it again with a higher version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .auth.jose import alg_for_key, jwk_thumbprint
from .files import write_atomically
from .trust import TrustListError

SIGNED_TYPE = "elicence-signed-trust-list"
JWS_TYP = "elicence-trust-list+jws"
OPERATOR_ALGS = ("EdDSA", "ES256")
#: the TEST operator key pair (demo mode and tests only; see certs/trust/README.md)
TEST_OPERATOR_DIR = Path(__file__).resolve().parent.parent / "certs" / "trust"
TEST_OPERATOR_PRIVATE = TEST_OPERATOR_DIR / "operator.test-private.pem"
TEST_OPERATOR_PUBLIC = TEST_OPERATOR_DIR / "operator.test-public.pem"
#: largest signed trust list accepted, bytes (45 regions with a few certificates each is ~200 KB)
MAX_SIGNED_BYTES = 16 * 1024 * 1024
_ECDSA = ec.ECDSA(hashes.SHA256())


class TrustListRefused(TrustListError):
    """A candidate trust list was refused; ``kind`` is a stable word for logs and the admin API.

    kinds: ``malformed``, ``bad-signature``, ``unknown-key``, ``rollback``, ``conflict``
    (same version, different content), ``expired``, ``not-yet-valid``, ``state-unreadable`` (the
    file recording the highest version accepted before cannot be read).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class OperatorKey:
    """A pinned trust-framework operator public key."""

    key_id: str
    algorithm: str
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class SignedTrustList:
    """A trust list whose operator signature has been checked (dates not yet judged)."""

    doc: Mapping[str, Any]
    version: int
    digest: str  # hex SHA-256 of the canonical document
    issued_at: datetime
    expires_at: datetime
    key_id: str
    algorithm: str


# --- primitives -----------------------------------------------------------------------------
def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a base64url string")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def canonical_json(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def digest_of(doc: Any) -> str:
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def jws_sign(algorithm: str, private_key: Any, signing_input: bytes) -> bytes:
    """Raw JWS signature bytes: ES256 as r||s, EdDSA as is, SM2 (SM3, default ID) as r||s."""
    if algorithm == "ES256":
        r, s = decode_dss_signature(private_key.sign(signing_input, _ECDSA))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if algorithm == "EdDSA":
        return private_key.sign(signing_input)
    if algorithm == "SM2":
        return private_key.sign(signing_input, der=False)
    raise ValueError(f"cannot sign with {algorithm}")


def jws_verify(algorithm: str, public_key: Any, signing_input: bytes, signature: bytes) -> bool:
    try:
        if algorithm == "ES256":
            if len(signature) != 64 or not isinstance(public_key, ec.EllipticCurvePublicKey):
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            public_key.verify(der, signing_input, _ECDSA)
            return True
        if algorithm == "EdDSA":
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                return False
            public_key.verify(signature, signing_input)
            return True
        if algorithm == "SM2":
            return len(signature) == 64 and bool(public_key.verify(signing_input, signature))
    except (InvalidSignature, ValueError, TypeError, AttributeError):
        return False
    return False


# --- operator keys ----------------------------------------------------------------------------
def operator_key(public_key: Any) -> OperatorKey:
    alg = alg_for_key(public_key)
    return OperatorKey(jwk_thumbprint(public_key), alg, public_key)


def load_operator_key(path: str | Path) -> OperatorKey:
    """A pinned operator PUBLIC key (PEM SubjectPublicKeyInfo, Ed25519 or P-256)."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        raise ValueError(f"{path}: a private key; pin the operator's PUBLIC key")
    return operator_key(serialization.load_pem_public_key(data))


def load_operator_private_key(path: str | Path) -> Any:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    alg_for_key(key)
    return key


# --- sign / open ------------------------------------------------------------------------------
def sign_trust_list(doc: Mapping[str, Any], private_key: Any) -> dict[str, Any]:
    """Wrap ``doc`` with the operator's detached JWS (the CLI's ``trust sign``)."""
    alg = alg_for_key(private_key)
    header = {"alg": alg, "kid": jwk_thumbprint(private_key.public_key()), "typ": JWS_TYP}
    h64 = b64u(canonical_json(header))
    signing_input = f"{h64}.{b64u(canonical_json(doc))}".encode("ascii")
    return {"type": SIGNED_TYPE, "trust_list": dict(doc),
            "signature": f"{h64}..{b64u(jws_sign(alg, private_key, signing_input))}"}


def parse_signed(data: bytes) -> tuple[dict[str, Any], dict[str, Any], str, bytes]:
    """Structure only: -> (trust_list, header, header_b64, signature). Raises TrustListRefused."""
    if len(data) > MAX_SIGNED_BYTES:
        raise TrustListRefused("malformed", f"larger than {MAX_SIGNED_BYTES} bytes")
    try:
        outer = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TrustListRefused("malformed", f"not JSON: {exc}") from None
    if not isinstance(outer, dict) or outer.get("type") != SIGNED_TYPE:
        raise TrustListRefused("malformed", f"not a signed trust list (type must be {SIGNED_TYPE!r}); "
                                            "unsigned lists are refused")
    doc, sig = outer.get("trust_list"), outer.get("signature")
    if not isinstance(doc, dict) or not isinstance(sig, str):
        raise TrustListRefused("malformed", "needs 'trust_list' (object) and 'signature' (detached JWS)")
    parts = sig.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise TrustListRefused("malformed", "signature must be a compact JWS with a detached (empty) payload")
    try:
        header = orjson.loads(b64u_decode(parts[0]))
        signature = b64u_decode(parts[2])
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise TrustListRefused("malformed", "signature is not base64url JWS") from None
    if not isinstance(header, dict):
        raise TrustListRefused("malformed", "JWS header is not an object")
    return doc, header, parts[0], signature


def open_signed(data: bytes, pinned: Sequence[OperatorKey]) -> SignedTrustList:
    """Check the operator signature with a pinned key. Raises :class:`TrustListRefused`."""
    doc, header, h64, signature = parse_signed(data)
    if header.get("typ") != JWS_TYP or "crit" in header:
        raise TrustListRefused("malformed", f"JWS header must have typ {JWS_TYP!r} and no crit")
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in OPERATOR_ALGS:
        raise TrustListRefused("bad-signature", f"algorithm {alg!r} not allowed (EdDSA, ES256)")
    key = next((k for k in pinned if k.key_id == kid), None)
    if key is None:
        raise TrustListRefused("unknown-key", f"signed by key {kid!r}, which is not a pinned operator key")
    if key.algorithm != alg:
        raise TrustListRefused("bad-signature", f"header alg {alg} does not match the pinned {key.algorithm} key")
    signing_input = f"{h64}.{b64u(canonical_json(doc))}".encode("ascii")
    if not jws_verify(alg, key.public_key, signing_input, signature):
        raise TrustListRefused("bad-signature", "operator signature does not verify (list altered or forged)")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TrustListRefused("malformed", "version must be a positive integer")
    return SignedTrustList(doc, version, digest_of(doc), _time(doc.get("issued_at"), "issued_at"),
                           _time(doc.get("expires_at"), "expires_at"), key.key_id, alg)


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise TrustListRefused("malformed", f"{where} must be an RFC 3339 time")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TrustListRefused("malformed", f"{where} {value!r} is not an RFC 3339 time") from None
    if t.tzinfo is None:
        raise TrustListRefused("malformed", f"{where} must carry a zone")
    return t.astimezone(timezone.utc)


#: ``type`` of the state file recording the highest trust list version accepted
FLOOR_TYPE = "elicence-trust-list-held"
#: largest state file read (it holds a few hundred bytes)
MAX_FLOOR_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class TrustFloor:
    """The highest trust list this gateway accepted before, as its state file records it: a candidate
    with a lower version is a rollback, the same version with other content a conflict."""

    version: int
    digest: str
    framework: str
    recorded_in: str


def floor_document(signed: SignedTrustList, accepted_at: datetime) -> bytes:
    return orjson.dumps({
        "type": FLOOR_TYPE, "framework": str(signed.doc.get("framework", "")), "version": signed.version,
        "digest_sha256": signed.digest, "issued_at": signed.issued_at.isoformat(),
        "expires_at": signed.expires_at.isoformat(), "accepted_at": accepted_at.isoformat(),
    }, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def read_floor(path: str | Path) -> TrustFloor | None:
    """The floor recorded in ``path``; None when the file does not exist (a first start). Raises
    :class:`TrustListRefused` ``state-unreadable`` for a file that exists but cannot be read as one:
    guessing "no floor" would re-open the rollback it is there to close."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FLOOR_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrustListRefused("state-unreadable", f"{path}: {exc.strerror or exc}") from None

    def bad(why: str) -> TrustListRefused:
        return TrustListRefused("state-unreadable", f"{path}: {why}; it records the highest trust list version "
                                                    "accepted before, so no list is taken until it is mended or, "
                                                    "after checking, removed")
    if len(raw) > MAX_FLOOR_BYTES:
        raise bad(f"larger than {MAX_FLOOR_BYTES} bytes")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad("not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != FLOOR_TYPE:
        raise bad(f"not a {FLOOR_TYPE} document")
    version, digest, framework = doc.get("version"), doc.get("digest_sha256"), doc.get("framework", "")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("version must be a positive integer")
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise bad("digest_sha256 must be 64 lower-case hex digits")
    if not isinstance(framework, str):
        raise bad("framework must be a string")
    return TrustFloor(version, digest, framework, str(path))


def write_floor(path: str | Path, signed: SignedTrustList, accepted_at: datetime) -> None:
    """Record ``signed`` as the highest list accepted (atomic and durable; raises OSError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, floor_document(signed, accepted_at), mode=0o644, durable=True)


def judge(candidate: SignedTrustList, held: SignedTrustList | TrustFloor | None, now: datetime,
          skew: timedelta = timedelta(minutes=5)) -> str:
    """``"accept"`` or ``"unchanged"``; raises :class:`TrustListRefused` (rollback, conflict, dates).
    ``held``: the list in force, or after a restart the floor its state file records."""
    if now >= candidate.expires_at:
        raise TrustListRefused("expired", f"v{candidate.version} expired {candidate.expires_at.isoformat()}")
    if candidate.issued_at > now + skew:
        raise TrustListRefused("not-yet-valid", f"v{candidate.version} issued in the future "
                                                f"({candidate.issued_at.isoformat()})")
    if held is None:
        return "accept"
    before = f" (accepted before this start, recorded in {held.recorded_in})" if isinstance(held, TrustFloor) else ""
    if candidate.version < held.version:
        raise TrustListRefused("rollback", f"v{candidate.version} is older than the held v{held.version}{before}")
    if candidate.version == held.version:
        if candidate.digest != held.digest:
            raise TrustListRefused("conflict", f"v{candidate.version} differs from the held list of the same "
                                               f"version{before}")
        return "unchanged"
    return "accept"


def describe(signed: SignedTrustList) -> dict[str, Any]:
    """A summary for ``trust inspect`` and the admin API."""
    regions = signed.doc.get("regions") or {}
    return {
        "framework": signed.doc.get("framework"), "version": signed.version,
        "issued_at": signed.issued_at.isoformat(), "expires_at": signed.expires_at.isoformat(),
        "digest_sha256": signed.digest, "signed_by": signed.key_id, "algorithm": signed.algorithm,
        "regions": len(regions) if isinstance(regions, dict) else 0,
        "issuers": sum(len(r.get("issuers", [])) for r in regions.values() if isinstance(r, dict))
        if isinstance(regions, dict) else 0,
        "revoked": sum(len(r.get("revoked", [])) for r in regions.values() if isinstance(r, dict))
        if isinstance(regions, dict) else 0,
    }
