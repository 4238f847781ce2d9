"""What every format family implements.

A family knows one wire format: how to recognise it, how to take it apart into the
region's own field dictionary plus a signature, how to check that signature with a
given certificate, and (for the issuer simulator) how to put it back together. It knows
nothing of trust decisions or of the canonical model: the region spec and the core do
that, identically for every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Protocol

from gateway.specs import RegionSpec
from gateway.trust import CertInfo


@dataclass(frozen=True, slots=True)
class Limits:
    """Parsing limits (named settings, see gateway.config)."""

    max_licence_bytes: int = 256 * 1024
    max_zip_entries: int = 64
    max_zip_uncompressed: int = 8 * 1024 * 1024
    max_zip_ratio: int = 100


@dataclass(frozen=True, slots=True)
class KeyRef:
    """How a licence points at its signer."""

    kid: str | None = None  # certificate thumbprint (x5t#S256)
    chain: tuple[bytes, ...] = ()  # embedded certificates (DER), leaf first
    serial_hex: str | None = None  # certificate serial (needs region_hint)
    region_hint: str | None = None  # region code the licence names for its signer, if any


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed, not yet trusted, licence."""

    family: str
    algorithm: str  # "ES256" | "EdDSA" | "SM2"
    key_ref: KeyRef
    raw: Mapping[str, Any]  # the region's own field dictionary (untrusted until signature passes)
    signing_time: datetime | None
    signed_bytes: bytes = b""
    signature: bytes = b""
    extra: Mapping[str, Any] = field(default_factory=dict)  # family-specific facts for verify()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An issuer's private key and certificate, for the simulator (test keys only)."""

    algorithm: str
    private_key: Any
    cert: CertInfo


class Family(Protocol):
    name: str

    def sniff(self, data: bytes) -> bool:
        """Cheap check: does this look like our format?"""

    def open(self, data: bytes, limits: Limits) -> Envelope:
        """Parse. Raise LicenceRejected (MALFORMED, ALGORITHM_NOT_ALLOWED, ...) on bad input."""

    def verify(self, env: Envelope, cert: CertInfo) -> bool:
        """Check the signature (and any integrity data) with the signer certificate."""

    def encode(self, raw: Mapping[str, Any], spec: RegionSpec, key: SigningKey, signing_time: datetime) -> bytes:
        """Build a licence in this format (issuer simulator)."""
