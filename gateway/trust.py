"""Trust material: per-region anchors and issuer certificates, pre-validated once.

A *trust list* document (JSON) names, per region, its trust anchors (CA certificates),
optional intermediates, its issuer (signing) certificates and revoked issuer serials.
:func:`build_snapshot` turns it into an immutable :class:`TrustSnapshot`: every issuer
certificate's chain to its own region's anchor is validated here, at load time, so the
verify path only checks the leaf signature and compares validity dates. Entries that fail
are dropped with a visible reason (:class:`DroppedEntry`).

Pure: bytes/dicts in, snapshot out; ``now`` is a parameter. Certificates are read with
cryptography (ECDSA P-256, Ed25519) or, for SM2, with :mod:`gateway.crypto.sm2cert`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .specs import RegionInfo

OID_SM2_KEY = "1.2.156.10197.1.301"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id_of(der: bytes) -> str:
    """The key id we use everywhere: base64url SHA-256 thumbprint of the certificate (x5t#S256)."""
    return b64url(hashlib.sha256(der).digest())


@dataclass(frozen=True, slots=True, eq=False)
class CertInfo:
    """What the gateway needs of one certificate, whatever its key algorithm."""

    der: bytes
    key_id: str
    algorithm: str  # "ES256" | "EdDSA" | "SM2"
    subject: str
    issuer: str
    subject_der: bytes
    issuer_der: bytes
    serial_hex: str
    not_before: datetime
    not_after: datetime
    is_ca: bool
    digital_signature: bool
    public_key: Any  # cryptography key object, or gateway.crypto.sm2.SM2PublicKey
    #: OIDs of the critical extensions outside :data:`PROCESSED_CRITICAL`: such a certificate is never
    #: part of a trusted path (:func:`unprocessed_critical_problem`)
    unprocessed_critical: tuple[str, ...] = ()
    #: basicConstraints pathLenConstraint of a CA (None: no limit): how many intermediate CA certificates may
    #: follow it down a path (RFC 5280 4.2.1.9; enforced by :func:`build_chain`)
    path_len: int | None = None
    _native: Any = field(repr=False, default=None)  # cryptography Certificate or SM2Certificate
    nb_ts: float = field(repr=False, default=0.0)  # not_before / not_after as epoch seconds (hot path)
    na_ts: float = field(repr=False, default=0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nb_ts", self.not_before.timestamp())
        object.__setattr__(self, "na_ts", self.not_after.timestamp())

    def valid_at(self, when: datetime, skew_s: float = 0.0) -> bool:
        t = when.timestamp()
        return self.nb_ts - skew_s <= t <= self.na_ts + skew_s

    def issued_by(self, issuer: "CertInfo") -> bool:
        """Does ``issuer``'s key verify this certificate's signature (and names chain)?"""
        if self.issuer_der != issuer.subject_der:
            return False
        if self.algorithm == "SM2" or issuer.algorithm == "SM2":
            if self.algorithm != "SM2" or issuer.algorithm != "SM2":
                return False
            from .crypto.sm2cert import verify_issued_by

            return verify_issued_by(self._native, issuer._native)
        try:
            self._native.verify_directly_issued_by(issuer._native)
            return True
        except (InvalidSignature, ValueError, TypeError):
            return False


#: the certificate extensions whose content this gateway processes when they are critical: basicConstraints
#: (a CA may issue, an end entity may not) and keyUsage (digitalSignature for a signer). RFC 5280, 4.2: "A
#: certificate-using system MUST reject the certificate if it encounters a critical extension it does not
#: recognize or a critical extension that contains information that it cannot process" -- name constraints,
#: policy constraints, a critical extendedKeyUsage or a vendor's extension would restrict the certificate in
#: ways not checked here, so a certificate marking one critical is refused (fail closed).
PROCESSED_CRITICAL: frozenset[str] = frozenset({"2.5.29.19", "2.5.29.15"})


def unprocessed_critical_problem(cert: CertInfo) -> str | None:
    """Why ``cert`` cannot be trusted for its critical extensions, or None."""
    if not cert.unprocessed_critical:
        return None
    return (f"certificate {cert.subject} marks extension(s) {', '.join(cert.unprocessed_critical)} critical, which "
            "this gateway does not process (RFC 5280 4.2: refused)")


def load_certificate(data: bytes) -> CertInfo:
    """Load a PEM or DER certificate (EC P-256, Ed25519 or SM2). Raises ValueError."""
    der = data
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            der = x509.load_pem_x509_certificate(data).public_bytes(_DER)
        except (ValueError, x509.InvalidVersion):
            der = _pem_to_der(data)
    try:
        cert = x509.load_der_x509_certificate(der)
        spki_oid = cert.public_key_algorithm_oid.dotted_string
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion (version 91, say) is no ValueError
        raise ValueError(f"not an X.509 certificate: {exc}") from None
    if cert.serial_number < 0:   # RFC 5280 4.1.2.2 (cryptography warns, and will refuse); as the SM2 reader
        # in hex, shortened: a 2,000-byte serial in decimal passes Python's int -> str digit limit
        serial = f"-0x{-cert.serial_number:x}"
        raise ValueError(f"certificate serial number is negative ({serial[:40]}{'...' if len(serial) > 40 else ''}); "
                         "RFC 5280 requires a positive integer")
    if spki_oid == "1.2.840.10045.2.1" and _is_sm2_curve(cert):
        return _load_sm2(der)
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return _load_sm2(der)
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC curve {key.curve.name} not allowed (P-256 only)")
        alg = "ES256"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        alg = "EdDSA"
    else:
        raise ValueError(f"key type {type(key).__name__} not allowed")
    try:  # the extensions are parsed here, all at once; their errors are not all ValueErrors
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise ValueError(f"certificate extensions unreadable: {exc}") from None
    try:
        bc = extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca, path_len = bc.ca, bc.path_length
    except x509.ExtensionNotFound:
        is_ca, path_len = False, None
    try:
        ku = extensions.get_extension_for_class(x509.KeyUsage).value
        digital_signature = ku.digital_signature
    except x509.ExtensionNotFound:
        digital_signature = False
    return CertInfo(
        der=der, key_id=key_id_of(der), algorithm=alg, subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(), subject_der=cert.subject.public_bytes(),
        issuer_der=cert.issuer.public_bytes(), serial_hex=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, is_ca=is_ca,
        digital_signature=digital_signature, public_key=key,
        unprocessed_critical=tuple(sorted(e.oid.dotted_string for e in extensions
                                          if e.critical and e.oid.dotted_string not in PROCESSED_CRITICAL)),
        path_len=path_len if is_ca else None, _native=cert,
    )


def _is_sm2_curve(cert: x509.Certificate) -> bool:
    try:
        cert.public_key()
        return False
    except (UnsupportedAlgorithm, ValueError):
        return True


def _load_sm2(der: bytes) -> CertInfo:
    from .crypto.sm2cert import load_sm2_certificate

    c = load_sm2_certificate(der)
    return CertInfo(
        der=der, key_id=key_id_of(der), algorithm="SM2", subject=c.subject_str, issuer=c.issuer_str,
        subject_der=c.subject_der, issuer_der=c.issuer_der, serial_hex=format(c.serial, "x"),
        not_before=c.not_before, not_after=c.not_after, is_ca=c.is_ca,
        digital_signature="digital_signature" in c.key_usage, public_key=c.public_key,
        unprocessed_critical=tuple(sorted(c.critical_extensions - PROCESSED_CRITICAL)),
        path_len=c.path_len if c.is_ca else None, _native=c,
    )


def _pem_to_der(pem: bytes) -> bytes:
    lines = [ln for ln in pem.strip().splitlines() if ln and not ln.startswith(b"-----")]
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except ValueError:
        raise ValueError("PEM body is not base64") from None


from cryptography.hazmat.primitives.serialization import Encoding as _Enc  # noqa: E402

_DER = _Enc.DER


@dataclass(frozen=True, slots=True)
class Revocation:
    serial_hex: str
    revoked_at: datetime
    reason: str  # an RFC 5280 CRLReason name when recognised (:func:`reason_name`), else as written

    @property
    def compromise(self) -> bool:
        """Is nothing the key ever signed to be trusted? A key (or CA / attribute authority) compromise, and,
        failing closed, a reason this gateway does not recognise ("KeyCompromise" once read as a
        superseded key, keeping the licences its thief backdated)."""
        return self.reason in _COMPROMISE or self.reason not in _REASONS


#: RFC 5280 5.3.1 CRLReason names (removeFromCRL is a delta-CRL entry, not a revocation)
_REASONS = frozenset({"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"})
_COMPROMISE = frozenset({"keyCompromise", "cACompromise", "aACompromise"})
_REASON_BY_FOLDED = {r.lower(): r for r in _REASONS}


def reason_name(value: Any) -> str:
    """A revocation reason as the trust list writes it -> its RFC 5280 name when it is one, spelt in any
    case, with or without ``-``, ``_`` or spaces (``key-compromise``, ``KEY_COMPROMISE``); else the text."""
    text = str(value)
    return _REASON_BY_FOLDED.get("".join(c for c in text if c not in "-_ ").lower(), text)


@dataclass(frozen=True, slots=True)
class IssuerEntry:
    key_id: str
    region: str
    cert: CertInfo
    chain: tuple[CertInfo, ...]  # from the issuer's parent up to and including the anchor
    revocation: Revocation | None = None
    #: the window in which the signer certificate AND its whole chain are valid, as epoch
    #: seconds (latest not_before, earliest not_after): one comparison on the verify path
    valid_nb_ts: float = field(init=False, repr=False, compare=False, default=0.0)
    valid_na_ts: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self) -> None:
        certs = (self.cert, *self.chain)
        object.__setattr__(self, "valid_nb_ts", max(c.nb_ts for c in certs))
        object.__setattr__(self, "valid_na_ts", min(c.na_ts for c in certs))

    def valid_at(self, when: datetime) -> bool:
        """Can a licence signed at ``when`` chain through this entry: the signer certificate AND every
        certificate above it up to the anchor valid then (a signer under an expired anchor is no usable
        issuer, though its own certificate is still within its dates)."""
        return self.valid_nb_ts <= when.timestamp() <= self.valid_na_ts


@dataclass(frozen=True, slots=True)
class DroppedEntry:
    region: str
    subject: str
    key_id: str
    reason: str
    #: what was dropped: "region", "issuer", "anchor", "revocation" (a list with an unreadable revocation is
    #: refused whole by the file trust source: applied without it, the certificate would stay trusted)
    kind: str = "issuer"


@dataclass(frozen=True, slots=True)
class RegionTrust:
    info: RegionInfo
    anchors: tuple[CertInfo, ...]
    issuers: tuple[IssuerEntry, ...]
    #: the region's revoked certificate serials (:func:`serial_key` form): they apply to every certificate
    #: of a path below the anchor, listed or embedded in a licence (x5c, an OFD signer certificate)
    revoked: Mapping[str, Revocation] = field(default_factory=lambda: MappingProxyType({}))

    def usable_at(self, when: datetime) -> bool:
        """Could a licence signed at ``when`` be accepted: an unrevoked issuer whose whole path is valid then."""
        return any(i.revocation is None and i.valid_at(when) for i in self.issuers)

    def state_at(self, when: datetime) -> str:
        """The region's trust state as ``GET /v1/regions`` and the console show it: ``ok`` (usable),
        ``no-valid-issuer`` (issuers listed, none usable) or ``no-issuer``."""
        return "ok" if self.usable_at(when) else ("no-valid-issuer" if self.issuers else "no-issuer")


@dataclass(frozen=True, slots=True)
class TrustSnapshot:
    framework: str
    version: int
    issued_at: datetime
    expires_at: datetime
    regions: Mapping[str, RegionTrust]
    by_key_id: Mapping[str, IssuerEntry]
    dropped: tuple[DroppedEntry, ...] = ()

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def region_for_anchor_subject(self, subject_der: bytes) -> list[tuple[str, CertInfo]]:
        return [(code, a) for code, rt in self.regions.items() for a in rt.anchors if a.subject_der == subject_der]


class TrustListError(ValueError):
    """The trust list document as a whole is unusable."""


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise TrustListError(f"{where}: expected an RFC 3339 time string")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TrustListError(f"{where}: {value!r} is not an RFC 3339 time") from None
    if t.tzinfo is None:
        raise TrustListError(f"{where}: time must carry a zone")
    return t.astimezone(timezone.utc)


def build_snapshot(doc: Mapping[str, Any], regions: Mapping[str, RegionInfo], *,
                   max_chain_depth: int = 3) -> TrustSnapshot:
    """Validate a trust list document and pre-validate every issuer's chain.

    Dates are *not* checked here (a certificate expired today may still be judged at a
    signing time by the policy); they are compared per request. Structural and
    cryptographic failures drop the entry with a reason.
    """
    if doc.get("type") != "elicence-trust-list":
        raise TrustListError("document type must be 'elicence-trust-list'")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise TrustListError("version must be a positive integer")
    issued_at = _parse_time(doc.get("issued_at"), "issued_at")
    expires_at = _parse_time(doc.get("expires_at"), "expires_at")
    region_docs = doc.get("regions")
    if not isinstance(region_docs, dict):
        raise TrustListError("regions must be an object keyed by region code")
    dropped: list[DroppedEntry] = []
    out: dict[str, RegionTrust] = {}
    by_key_id: dict[str, IssuerEntry] = {}
    for code, rdoc in region_docs.items():
        if code not in regions:
            dropped.append(DroppedEntry(code, "", "", "unknown region code", "region"))
            continue
        anchors = _load_cas(rdoc.get("anchors", []), code, "anchor", dropped, self_signed=True)
        intermediates = _load_cas(rdoc.get("intermediates", []), code, "intermediate", dropped, self_signed=False)
        revoked = {}
        for i, r in enumerate(rdoc.get("revoked", [])):
            try:
                rev = Revocation(serial_key(r["serial"]), _parse_time(r["revoked_at"], f"regions.{code}.revoked[{i}]"),
                                 reason_name(r.get("reason", "unspecified")))
            except (KeyError, TypeError, ValueError) as exc:  # TrustListError is a ValueError
                dropped.append(DroppedEntry(code, "", "", f"revocation entry {i} unreadable: {exc}", "revocation"))
                continue
            revoked[rev.serial_hex] = rev
        issuers: list[IssuerEntry] = []
        for pem in rdoc.get("issuers", []):
            try:
                leaf = load_certificate(pem.encode())
            except ValueError as exc:
                dropped.append(DroppedEntry(code, "", "", f"issuer unreadable: {exc}"))
                continue
            if leaf.is_ca:
                problem = "issuer certificate is a CA; licences must be signed by an end-entity certificate"
            elif not leaf.digital_signature:
                problem = "issuer certificate lacks keyUsage digitalSignature"
            elif leaf.key_id in by_key_id:
                problem = "duplicate key id (certificate listed twice)"
            else:
                problem = unprocessed_critical_problem(leaf)
            chain = None if problem else build_chain(leaf, intermediates, anchors, max_chain_depth)
            if problem is None and chain is None:
                problem = "does not chain to this region's trust anchor"
            if problem:
                dropped.append(DroppedEntry(code, leaf.subject, leaf.key_id, problem))
                continue
            entry = IssuerEntry(leaf.key_id, code, leaf, chain, revocation_of(leaf, chain, revoked))
            issuers.append(entry)
            by_key_id[leaf.key_id] = entry
        out[code] = RegionTrust(regions[code], tuple(anchors), tuple(issuers), MappingProxyType(revoked))
    _share_revocations(out, by_key_id)
    return TrustSnapshot(
        framework=str(doc.get("framework", "")), version=version, issued_at=issued_at, expires_at=expires_at,
        regions=MappingProxyType(out), by_key_id=MappingProxyType(by_key_id), dropped=tuple(dropped),
    )


def _share_revocations(out: dict[str, RegionTrust], by_key_id: dict[str, IssuerEntry]) -> None:
    """Regions listing the same anchor (a provincial CA for its cities; the same CA name, as a renewed
    anchor certificate keeps it) trust the same certificates below it: a serial one of them revokes is
    revoked for each of them. A certificate revoked (keyCompromise) in one region's section was still
    trusted when a licence carried it (x5c) and named the other region. Listed issuers take the other
    regions' serials only below a shared anchor; a certificate a licence carries is matched against all
    of them (by serial, as a region's own revocations are)."""
    by_anchor: dict[bytes, list[str]] = {}
    for code, rt in out.items():
        for a in rt.anchors:
            by_anchor.setdefault(a.subject_der, []).append(code)
    own = {code: rt.revoked for code, rt in out.items()}
    for code, rt in list(out.items()):
        sharing = sorted({c for a in rt.anchors for c in by_anchor[a.subject_der]} - {code})
        extra = [rev for c in sharing for rev in own[c].values()]
        if not extra:
            continue
        merged = dict(own[code])
        for rev in extra:   # a compromise first, otherwise the earliest (as revocation_of)
            held = merged.get(rev.serial_hex)
            if held is None or (not rev.compromise, rev.revoked_at) < (not held.compromise, held.revoked_at):
                merged[rev.serial_hex] = rev
        shared = {a.subject_der for a in rt.anchors if len(set(by_anchor[a.subject_der])) > 1}
        issuers = tuple(e if e.chain[-1].subject_der not in shared else
                        IssuerEntry(e.key_id, e.region, e.cert, e.chain, revocation_of(e.cert, e.chain, merged))
                        for e in rt.issuers)
        for e in issuers:
            by_key_id[e.key_id] = e
        out[code] = RegionTrust(rt.info, rt.anchors, issuers, MappingProxyType(merged))


def _load_cas(pems: list[str], code: str, kind: str, dropped: list[DroppedEntry], *,
              self_signed: bool) -> list[CertInfo]:
    """Load a region's anchors or intermediates; each unusable one is dropped with its reason."""
    out: list[CertInfo] = []
    for pem in pems:
        try:
            c = load_certificate(pem.encode())
        except ValueError as exc:
            dropped.append(DroppedEntry(code, "", "", f"{kind} unreadable: {exc}", kind))
            continue
        critical = unprocessed_critical_problem(c)
        if critical:
            dropped.append(DroppedEntry(code, c.subject, c.key_id, f"{kind}: {critical}", kind))
        elif not c.is_ca:
            dropped.append(DroppedEntry(code, c.subject, c.key_id, f"{kind} is not a CA certificate", kind))
        elif self_signed and not c.issued_by(c):
            dropped.append(DroppedEntry(code, c.subject, c.key_id, f"{kind} is not validly self-signed", kind))
        else:
            out.append(c)
    return out


def serial_key(value: Any) -> str:
    """A revoked serial as the trust list writes it -> :attr:`CertInfo.serial_hex` form (lowercase hex, no
    leading zeros). Hex text may be written as OpenSSL prints it (``0BDB29``: an even number of digits; or
    ``0b:db:29``) or with ``0x``; a JSON integer is the serial's value. Anything else raises ValueError:
    a revocation whose serial matched no certificate's spelling would silently revoke nothing."""
    if type(value) is int and value > 0:
        return format(value, "x")
    if not isinstance(value, str):
        raise ValueError(f"serial must be hex text or a positive integer, not {type(value).__name__}")
    text = value.strip().replace(":", "").replace(" ", "").lower().removeprefix("0x")
    if not text or not text.isascii() or not all(c in "0123456789abcdef" for c in text):
        raise ValueError(f"serial {value!r} is not hexadecimal")
    number = int(text, 16)
    if number <= 0:
        raise ValueError(f"serial {value!r} is not a positive integer")
    return format(number, "x")


def revocation_of(leaf: CertInfo, path: tuple[CertInfo, ...], revoked: Mapping[str, Revocation]) -> Revocation | None:
    """The revocation that applies to a signer: its own, or that of a certificate between it and the anchor
    (``path`` ends with the anchor) -- a compromise first, otherwise the earliest."""
    if not revoked:
        return None
    found = [rev for c in (leaf, *path[:-1]) if (rev := revoked.get(c.serial_hex)) is not None]
    if not found:
        return None
    return min(found, key=lambda r: (not r.compromise, r.revoked_at))


def build_chain(leaf: CertInfo, intermediates: list[CertInfo], anchors: list[CertInfo],
                max_depth: int) -> tuple[CertInfo, ...] | None:
    """Find a path leaf -> (intermediates) -> anchor, at most ``max_depth`` certificates above the leaf.

    Only a CA certificate may issue (an end-entity's key -- an issuer's signing key -- may not mint
    certificates), and a CA's pathLenConstraint bounds the intermediate CAs below it (RFC 5280 6.1.4)."""
    current, path = leaf, []
    for _ in range(max_depth):
        below = len(path)  # intermediate CA certificates between ``current``'s issuer and the leaf
        for a in anchors:
            if (a.path_len is None or below <= a.path_len) and current.issued_by(a):
                return (*path, a)
        parent = next((i for i in intermediates if i.is_ca and (i.path_len is None or below <= i.path_len)
                       and i not in path and current.issued_by(i)), None)
        if parent is None:
            return None
        path.append(parent)
        current = parent
    return None


# --- expiry ahead of time ----------------------------------------------------------------------
#: what :func:`material_expiry` names, in the order items expiring at the same moment are listed
EXPIRY_KINDS = ("trust_list", "anchor", "intermediate", "issuer")
_DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class MaterialExpiry:
    """One piece of trust material and when it stops being usable: the trust list itself (``region`` and
    ``key_id`` None, ``subject`` its framework and version) or a region's anchor, intermediate CA or issuer
    certificate. ``days_left``: whole days from ``now`` to ``not_after``, rounded down (negative once past)."""

    kind: str
    region: str | None
    subject: str
    key_id: str | None
    serial: str | None
    not_after: datetime
    days_left: int

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "region": self.region, "subject": self.subject, "key_id": self.key_id,
                "serial": self.serial, "not_after": self.not_after.isoformat(), "days_left": self.days_left}


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    """What of a trust snapshot expires within ``warn_days`` of ``now`` (``expiring``) and what already has
    (``expired``: past it, not "expiring"), each sorted soonest first."""

    warn_days: int
    expiring: tuple[MaterialExpiry, ...]
    expired: tuple[MaterialExpiry, ...]

    def for_region(self, code: str) -> tuple[MaterialExpiry, ...]:
        return tuple(m for m in self.expiring if m.region == code)


def material_expiry(trust: TrustSnapshot, now: datetime, warn_days: int) -> ExpiryReport:
    """The trust list's and every region's certificates' expiry against ``now`` and the warning window
    (setting ``trust_expiry_warn_days``; 0: nothing is "expiring"). Pure: no I/O, ``now`` given.

    Per region: its anchors, the intermediate CAs on its issuers' paths and its issuer certificates, each
    once. An issuer whose certificate (or a CA above it) is revoked is left out, with the intermediates only
    it uses: it signs nothing acceptable any more, renewing it is not what is asked. A certificate still
    listed after its notAfter is reported as expired: under ``issuer_time_policy = "signing-time"`` the
    licences it signed while valid stay verifiable, so an old issuer certificate kept for them is normal."""
    now_ts = now.timestamp()
    window_s = max(warn_days, 0) * _DAY_S
    found: list[MaterialExpiry] = []

    def add(kind: str, region: str | None, subject: str, key_id: str | None, serial: str | None,
            not_after: datetime) -> None:
        left = not_after.timestamp() - now_ts
        found.append(MaterialExpiry(kind, region, subject, key_id, serial, not_after, int(left // _DAY_S)))

    add("trust_list", None, f"{trust.framework} v{trust.version}", None, None, trust.expires_at)
    for code, rt in sorted(trust.regions.items()):
        for a in rt.anchors:
            add("anchor", code, a.subject, a.key_id, a.serial_hex, a.not_after)
        seen: set[str] = set()
        for e in rt.issuers:
            if e.revocation is not None:
                continue
            for c in e.chain[:-1]:   # the intermediate CAs between the issuer and the anchor
                if c.key_id not in seen:
                    seen.add(c.key_id)
                    add("intermediate", code, c.subject, c.key_id, c.serial_hex, c.not_after)
            add("issuer", code, e.cert.subject, e.key_id, e.cert.serial_hex, e.cert.not_after)
    order = {k: i for i, k in enumerate(EXPIRY_KINDS)}
    found.sort(key=lambda m: (m.not_after, order[m.kind], m.region or "", m.key_id or ""))

    def past(m: MaterialExpiry) -> bool:
        # as the rest of the gateway judges them: a certificate is valid up to and including its notAfter
        # (CertInfo.valid_at, RFC 5280 4.1.2.5), a trust list is expired from its expires_at on
        # (TrustSnapshot.expired); a certificate at its notAfter was "expired" here while it still verified
        ts = m.not_after.timestamp()
        return now_ts >= ts if m.kind == "trust_list" else now_ts > ts

    expired = tuple(m for m in found if past(m))
    expiring = tuple(m for m in found if window_s > 0 and not past(m) and m.not_after.timestamp() <= now_ts + window_s)
    return ExpiryReport(max(warn_days, 0), expiring, expired)
