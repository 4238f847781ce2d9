"""SM2 X.509 certificates (GM/T 0015) read and built with asn1crypto.

pyca ``cryptography`` refuses SM2 keys, so certificates whose key is on the SM2 curve
are parsed here into a frozen :class:`SM2Certificate`. Only *facts* about a certificate
are produced (names, dates, key, constraints) plus :func:`verify_issued_by`, which checks
one link: issuer name and the SM2-with-SM3 signature. Path building, validity at a time,
key-usage policy and revocation are the trust layer's decisions, not this module's.

:func:`issue_sm2_certificate` builds certificates for the project's development trust
framework and for tests (every key used with it in this repository is a TEST key).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

from asn1crypto import keys as asn1keys
from asn1crypto import pem as asn1pem
from asn1crypto import x509 as asn1x509

from gateway.crypto.der import der_problem, unread_elements
from gateway.crypto.sm2 import (
    OID_SM2_WITH_SM3,
    SM2PrivateKey,
    SM2PublicKey,
    _parse_der_signature,
    sm2_sign,
    sm2_verify,
    sm3,
)

__all__ = [
    "CA_KEY_USAGE",
    "LEAF_KEY_USAGE",
    "SM2Certificate",
    "issue_sm2_certificate",
    "load_sm2_certificate",
    "verify_issued_by",
]

#: short attribute name -> asn1crypto attribute name
_SHORT_TO_LONG: Final[dict[str, str]] = {
    "C": "country_name",
    "ST": "state_or_province_name",
    "L": "locality_name",
    "O": "organization_name",
    "OU": "organizational_unit_name",
    "CN": "common_name",
    "SERIALNUMBER": "serial_number",
    "emailAddress": "email_address",
    "organizationIdentifier": "organization_identifier",
}
_LONG_TO_SHORT: Final[dict[str, str]] = {v: k for k, v in _SHORT_TO_LONG.items()}
#: the order attributes are written in when building a Name (most general first)
_BUILD_ORDER: Final = ("C", "ST", "L", "O", "OU", "organizationIdentifier", "SERIALNUMBER", "CN", "emailAddress")

LEAF_KEY_USAGE: Final = frozenset({"digital_signature", "non_repudiation"})
CA_KEY_USAGE: Final = frozenset({"key_cert_sign", "crl_sign"})
_KEY_USAGE_NAMES: Final = frozenset({
    "digital_signature", "non_repudiation", "key_encipherment", "data_encipherment", "key_agreement",
    "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
})


@dataclass(frozen=True, eq=False)
class SM2Certificate:
    """The facts of one SM2 X.509 certificate. Equality and hash are by DER."""

    der: bytes
    subject: Mapping[str, str]
    subject_str: str
    issuer: Mapping[str, str]
    issuer_str: str
    serial: int
    not_before: datetime
    not_after: datetime
    public_key: SM2PublicKey
    is_ca: bool
    path_len: int | None
    key_usage: frozenset[str]
    extended_key_usage: frozenset[str]
    subject_key_id: bytes | None
    authority_key_id: bytes | None
    tbs_der: bytes
    signature_algorithm: str
    signature: bytes
    key_id: str  # SHA-256 thumbprint of the DER, base64url without padding
    subject_der: bytes
    issuer_der: bytes
    #: OIDs (dotted) of the extensions marked critical
    critical_extensions: frozenset[str] = frozenset()

    @property
    def is_self_issued(self) -> bool:
        return _names_equal(self.subject_der, self.issuer_der)

    def valid_at(self, when: datetime) -> bool:
        """Whether ``when`` (aware) lies inside [not_before, not_after]."""
        return self.not_before <= when <= self.not_after

    def to_pem(self) -> bytes:
        return asn1pem.armor("CERTIFICATE", self.der)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2Certificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return f"SM2Certificate(subject={self.subject_str!r}, serial={self.serial}, key_id={self.key_id!r})"


# --- names ---------------------------------------------------------------------------
def _name_to_dict(name: asn1x509.Name) -> dict[str, str]:
    out: dict[str, str] = {}
    for rdn in name.chosen:
        for attr in rdn:
            oid = attr["type"]
            key = _LONG_TO_SHORT.get(oid.native, oid.dotted)
            try:
                value = attr["value"].native
            except UnicodeDecodeError as exc:   # a string type whose bytes are not its encoding
                kind = getattr(attr["value"], "chosen", attr["value"]).__class__.__name__   # DirectoryString's choice
                raise ValueError(f"name attribute {key} is not valid {kind}: {exc}") from None
            except Exception:  # an odd value type: keep the raw contents visible
                value = attr["value"].contents.hex()
            value = value if isinstance(value, str) else str(value)
            out[key] = f"{out[key]}; {value}" if key in out else value
    return out


def _escape_rdn(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _name_to_str(name: asn1x509.Name) -> str:
    """RFC 4514-style: most specific RDN first, short names where known."""
    parts = []
    for rdn in reversed(list(name.chosen)):
        attrs = []
        for attr in rdn:
            oid = attr["type"]
            key = _LONG_TO_SHORT.get(oid.native, oid.dotted)
            try:
                value = attr["value"].native
            except Exception:
                value = "#" + attr["value"].dump().hex()
            attrs.append(f"{key}={_escape_rdn(str(value))}")
        parts.append("+".join(attrs))
    return ",".join(parts)


def _names_equal(a_der: bytes, b_der: bytes) -> bool:
    if a_der == b_der:
        return True
    try:
        return bool(asn1x509.Name.load(a_der) == asn1x509.Name.load(b_der))
    except Exception:
        return False


def _build_name(attrs: Mapping[str, str]) -> asn1x509.Name:
    unknown = set(attrs) - set(_SHORT_TO_LONG)
    if unknown:
        raise ValueError(f"unsupported name attributes {sorted(unknown)}; use {sorted(_SHORT_TO_LONG)}")
    ordered = {_SHORT_TO_LONG[k]: attrs[k] for k in _BUILD_ORDER if k in attrs}
    return asn1x509.Name.build(ordered)


# --- loading -------------------------------------------------------------------------
#: the extensions whose values are read here: basicConstraints, keyUsage, extKeyUsage, subject / authority key id
_READ_EXTENSIONS: Final = frozenset({"2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.14", "2.5.29.35"})
#: validity times as RFC 5280 4.1.2.5.1 / 4.1.2.5.2 require them: UTC ("Z"), with seconds, no fraction
_RFC5280_TIME: Final = {"utc_time": re.compile(rb"[0-9]{12}Z"), "general_time": re.compile(rb"[0-9]{14}Z")}


def _to_der(pem_or_der: bytes) -> bytes:
    data = bytes(pem_or_der)
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            name, _, der = asn1pem.unarmor(stripped)
        except Exception as exc:
            raise ValueError(f"certificate PEM is malformed: {exc}") from exc
        if name not in ("CERTIFICATE", "X509 CERTIFICATE"):
            raise ValueError(f"expected a CERTIFICATE PEM block, got {name!r}")
        return der
    return data


def load_sm2_certificate(pem_or_der: bytes) -> SM2Certificate:
    """Parse an SM2 certificate (PEM or DER). Raises ValueError saying what is wrong.

    Results are cached by DER (certificates are immutable and a region's signer
    certificate recurs in every licence it seals; parsing one costs ~1 ms).
    """
    return _load_der(_to_der(pem_or_der))


@functools.lru_cache(maxsize=2048)
def _load_der(der: bytes) -> SM2Certificate:
    if not der or der[0] != 0x30:
        raise ValueError("certificate is not DER (does not start with a SEQUENCE)")
    # asn1crypto also reads BER: a certificate must be DER (RFC 5280 4.1), or one certificate has many
    # encodings, each with its own key id (gateway.crypto.der)
    problem = der_problem(der)
    if problem is not None:
        raise ValueError(f"certificate DER is malformed: {problem}")
    try:
        cert = asn1x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        tbs_der = tbs.dump()
        spki_der = tbs["subject_public_key_info"].dump()
        subject, issuer = tbs["subject"], tbs["issuer"]
        serial = int(tbs["serial_number"].native)
        not_before = tbs["validity"]["not_before"].native
        not_after = tbs["validity"]["not_after"].native
        sig_alg = cert["signature_algorithm"]["algorithm"].dotted
        signature = bytes(cert["signature_value"].native)
        tbs_sig_alg = tbs["signature"]["algorithm"].dotted
        # outside the TBS, so not signed: RFC 5280 4.1.1.2 wants the very AlgorithmIdentifier the TBS names
        same_algorithm = cert["signature_algorithm"].dump() == tbs["signature"].dump()
        signature_unused_bits = cert["signature_value"].contents[0]
        times = [(v.name, v.chosen.contents) for v in (tbs["validity"]["not_before"], tbs["validity"]["not_after"])]
        extension_ids = [e["extn_id"].dotted for e in tbs["extensions"]]
        # the values read below: one DER element each (RFC 5280 4.1: extnValue holds a DER encoding);
        # asn1crypto read the first element and dropped what followed (a second keyUsage BIT STRING)
        extension_problems = [f"{e['extn_id'].dotted}: {problem}" for e in tbs["extensions"]
                              if e["extn_id"].dotted in _READ_EXTENSIONS
                              and (problem := der_problem(e["extn_value"].contents)) is not None]
        # every value read here, in the try: asn1crypto parses lazily, so .native is where a hostile
        # extension fails (an empty KeyUsage BIT STRING raised IndexError, outside this try before)
        basic = cert.basic_constraints_value
        ku = cert.key_usage_value
        eku = cert.extended_key_usage_value
        ski = cert.key_identifier_value
        aki = cert.authority_key_identifier_value
        # appended after the signature (not signed), inside the TBS or inside an extension value read here:
        # asn1crypto kept it aside, unread
        unread = next(filter(None, (unread_elements(v) for v in (cert, basic, eku, aki) if v is not None)), None)
        is_ca = bool(basic and basic["ca"].native)
        path_len = basic["path_len_constraint"].native if basic else None
        key_usage = frozenset(ku.native) if ku is not None else frozenset()
        extended_key_usage = frozenset(str(x) for x in eku.native) if eku is not None else frozenset()
        subject_key_id = bytes(ski.native) if ski is not None else None
        authority_key_id = bytes(aki["key_identifier"].native) if aki is not None and aki["key_identifier"].native \
            else None
        critical = frozenset(e["extn_id"].dotted for e in tbs["extensions"] if e["critical"].native)
        version = tbs["version"].native
        has_extensions = len(tbs["extensions"]) > 0
        subject_dict, issuer_dict = _name_to_dict(subject), _name_to_dict(issuer)
        subject_str, issuer_str = _name_to_str(subject), _name_to_str(issuer)
        subject_der, issuer_der = subject.dump(), issuer.dump()
    except ValueError as exc:
        raise ValueError(f"certificate DER is malformed: {exc}") from exc
    except Exception as exc:  # asn1crypto raises assorted types on hostile input
        raise ValueError(f"certificate DER is malformed: {type(exc).__name__}: {exc}") from exc
    if tbs_sig_alg != sig_alg or not same_algorithm:
        raise ValueError("certificate signature algorithm differs inside and outside the TBS")
    # the signature and its algorithm lie outside what is signed: each form below re-encodes one certificate
    # (the same TBS, the same signature) as another byte string -- another key id -- and was read alike
    if signature_unused_bits != 0:
        raise ValueError("certificate signature is a BIT STRING with unused bits")
    if sig_alg == OID_SM2_WITH_SM3 and _parse_der_signature(signature) is None:
        raise ValueError("certificate SM2 signature is not DER SEQUENCE { r INTEGER, s INTEGER } (GM/T 0009)")
    for kind, raw in times:
        if not _RFC5280_TIME[kind].fullmatch(raw):
            # without "Z" asn1crypto gives a naive time, which astimezone() read in the machine's own zone
            raise ValueError(f"certificate validity time {bytes(raw)[:32]!r} is not in RFC 5280 form "
                             "(YYMMDDHHMMSSZ / YYYYMMDDHHMMSSZ)")
    if unread is not None:
        raise ValueError(f"certificate holds data its structure has no place for: {unread}")
    if extension_problems:
        raise ValueError(f"certificate extension value is not one DER element: {extension_problems[0]}")
    if len(set(extension_ids)) != len(extension_ids):   # RFC 5280 4.2; asn1crypto kept the last of each
        raise ValueError("certificate carries an extension more than once: "
                         + ", ".join(sorted({i for i in extension_ids if extension_ids.count(i) > 1})))
    if serial < 0:   # RFC 5280 4.1.2.2; revocation matches serials, and a sign is no part of one
        shown = f"{serial:#x}" if serial > -(1 << 160) else f"{serial:#x}"[:43] + "..."   # (no decimal: 4,300 digits)
        raise ValueError(f"certificate serial number is negative ({shown}); RFC 5280 requires a positive integer")
    if has_extensions and version != "v3":   # RFC 5280 4.1.2.9: extensions only in version 3
        raise ValueError(f"certificate of X.509 {version} carries extensions (only v3 certificates may)")
    try:
        public_key = SM2PublicKey.from_der(spki_der)
    except ValueError as exc:
        raise ValueError(f"certificate key is not an SM2 key: {exc}") from exc
    if not isinstance(not_before, datetime) or not isinstance(not_after, datetime):
        raise ValueError("certificate validity dates are missing")
    return SM2Certificate(
        der=der,
        subject=subject_dict,
        subject_str=subject_str,
        issuer=issuer_dict,
        issuer_str=issuer_str,
        serial=serial,
        not_before=not_before.astimezone(timezone.utc),
        not_after=not_after.astimezone(timezone.utc),
        public_key=public_key,
        is_ca=is_ca,
        path_len=path_len,
        key_usage=key_usage,
        extended_key_usage=extended_key_usage,
        subject_key_id=subject_key_id,
        authority_key_id=authority_key_id,
        tbs_der=tbs_der,
        signature_algorithm=sig_alg,
        signature=signature,
        key_id=base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii"),
        subject_der=subject_der,
        issuer_der=issuer_der,
        critical_extensions=critical,
    )


def verify_issued_by(cert: SM2Certificate, issuer_cert: SM2Certificate) -> bool:
    """One chain link: ``cert``'s issuer name equals ``issuer_cert``'s subject and its
    SM2-with-SM3 signature (default signer id) over the TBS verifies with the issuer's key.

    Validity dates, CA flags and key usage are deliberately not judged here (the ofdrw
    test root, a real-world example, lacks keyCertSign): the trust layer decides those.
    """
    if cert.signature_algorithm != OID_SM2_WITH_SM3:
        return False
    if not _names_equal(cert.issuer_der, issuer_cert.subject_der):
        return False
    return sm2_verify(issuer_cert.public_key, cert.tbs_der, cert.signature)


# --- building ------------------------------------------------------------------------
def _time(dt: datetime) -> asn1x509.Time:
    if dt.tzinfo is None:
        raise ValueError("certificate dates must be timezone-aware")
    dt = dt.astimezone(timezone.utc).replace(microsecond=0)
    return asn1x509.Time(name="utc_time" if 1950 <= dt.year < 2050 else "general_time", value=dt)


def _key_identifier(public_key: SM2PublicKey) -> bytes:
    """Subject key identifier: the first 20 bytes of SM3 over the public point."""
    return sm3(public_key.point)[:20]


def issue_sm2_certificate(
    subject: Mapping[str, str],
    public_key: SM2PublicKey,
    issuer_subject: Mapping[str, str],
    issuer_key: SM2PrivateKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    is_ca: bool,
    path_len: int | None = None,
    key_usage: Iterable[str] | None = None,
) -> bytes:
    """Build and sign an SM2 X.509 v3 certificate; returns DER.

    ``subject`` / ``issuer_subject`` use short attribute names (C, ST, L, O, OU, CN,
    SERIALNUMBER, ...). Self-signed when ``issuer_key`` is the key of ``public_key`` and
    the names are equal. ``key_usage`` defaults to :data:`CA_KEY_USAGE` for a CA and
    :data:`LEAF_KEY_USAGE` otherwise.
    """
    if serial <= 0:
        raise ValueError("serial must be a positive integer")
    if not_before.tzinfo is None or not_after.tzinfo is None:
        raise ValueError("certificate dates must be timezone-aware")
    if not_after <= not_before:
        raise ValueError("not_after must be after not_before")
    if path_len is not None and (not is_ca or path_len < 0):
        raise ValueError("path_len only applies to a CA and must be >= 0")
    usage = frozenset(key_usage) if key_usage is not None else (CA_KEY_USAGE if is_ca else LEAF_KEY_USAGE)
    if not usage or not usage <= _KEY_USAGE_NAMES:
        raise ValueError(f"key usage must be a non-empty subset of {sorted(_KEY_USAGE_NAMES)}")
    ski = _key_identifier(public_key)
    aki = _key_identifier(issuer_key.public_key())
    sig_alg = {"algorithm": OID_SM2_WITH_SM3}
    basic: dict[str, object] = {"ca": is_ca}
    if path_len is not None:
        basic["path_len_constraint"] = path_len
    tbs = asn1x509.TbsCertificate({
        "version": "v3",
        "serial_number": serial,
        "signature": sig_alg,
        "issuer": _build_name(issuer_subject),
        "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
        "subject": _build_name(subject),
        "subject_public_key_info": asn1keys.PublicKeyInfo.load(public_key.to_der()),
        "extensions": [
            {"extn_id": "basic_constraints", "critical": True, "extn_value": basic},
            {"extn_id": "key_usage", "critical": True, "extn_value": set(usage)},
            {"extn_id": "key_identifier", "critical": False, "extn_value": ski},
            {"extn_id": "authority_key_identifier", "critical": False, "extn_value": {"key_identifier": aki}},
        ],
    })
    tbs_der = tbs.dump()
    signature = sm2_sign(issuer_key, tbs_der)
    cert = asn1x509.Certificate({
        "tbs_certificate": tbs,
        "signature_algorithm": sig_alg,
        "signature_value": signature,
    })
    return cert.dump()
