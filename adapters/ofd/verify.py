"""Verify the signatures of an OFD package (GB/T 33190 + GB/T 38540): bytes in, facts out.

For every signature listed in ``OFD.xml -> DocBody/Signatures -> Signatures.xml``:

* each Reference's file hashes (SM3) to its CheckValue -- a failing file is named;
* ``Type="Seal"`` (GB/T 38540 SES_Signature v4): the seal inside the signature equals
  ``Seal.esl`` (when the Signature.xml points at one), SM3(Signature.xml) equals
  ``TBS_Sign.dataHash``, the SM2 signature over DER(TBS_Sign) verifies with the signer
  certificate carried in the signature, the signer certificate is one the seal binds,
  and the seal maker's signature over DER(SES_SealInfo) verifies;
* ``Type="Sign"``: ``SignedValue.dat`` is an SM2 signature over the bytes of
  Signature.xml; the certificate comes from the caller's ``cert_lookup``.

No trust decision is made here: chains, validity at a time, revocation and whether the
signer may speak for a region belong to the caller, which gets the signer certificate.
Unreadable containers raise :class:`adapters.ofd.errors.OfdError`; a damaged signature
becomes a failed :class:`SignatureCheck` with its problems listed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from adapters.ofd.container import DEFAULT_LIMITS, OfdPackage, ZipLimits, read_ofd_package
from adapters.ofd.errors import OfdError, OfdStructureError
from adapters.ofd.ses import SealInfo, SesFormatError, SesVersionError, parse_ses_signature
from adapters.ofd.xmlparts import (
    SignatureEntry,
    SignatureXml,
    find_signatures_xml,
    parse_signature_datetime,
    parse_signature_xml,
    parse_signatures_xml,
)
from gateway.crypto.sm2 import OID_SM2_WITH_SM3, OID_SM3, sm2_verify, sm3
from gateway.crypto.sm2cert import SM2Certificate, load_sm2_certificate

#: CheckMethod values meaning SM3 (the name or its OID)
SM3_CHECK_METHODS: Final = frozenset({"SM3", OID_SM3})
#: SignatureMethod values meaning SM2-with-SM3
SM2_SIGNATURE_METHODS: Final = frozenset({OID_SM2_WITH_SM3})

CertLookup = Callable[[SignatureEntry, SignatureXml], Iterable[SM2Certificate]]


@dataclass(frozen=True)
class Problem:
    """One failed check: a gateway.errors reason code and what exactly failed."""

    code: str  # SIGNATURE_INVALID | ALGORITHM_NOT_ALLOWED | MALFORMED | UNSUPPORTED_FORMAT | UNKNOWN_ISSUER
    detail: str


@dataclass(frozen=True)
class ReferenceCheck:
    file_ref: str
    path: str
    ok: bool
    problem: str | None = None  # "missing" | "digest mismatch" | "bad CheckValue" | "check method not allowed"


@dataclass(frozen=True)
class SignatureCheck:
    id: str
    type: str
    path: str
    provider: Mapping[str, str]
    signature_method: str
    check_method: str
    signature_datetime: str
    signing_time: datetime | None  # TBS_Sign.timeInfo for a seal, SignatureDateTime (UTC+8) for Sign
    references: tuple[ReferenceCheck, ...]
    seal_path: str | None
    signed_value_path: str
    seal_matches: bool | None  # None: no Seal/BaseLoc to compare with
    data_hash_ok: bool | None  # None: not a seal
    signature_ok: bool
    signer_certificate: SM2Certificate | None
    signer_bound_to_seal: bool | None
    seal: SealInfo | None
    seal_maker_certificate: SM2Certificate | None
    seal_maker_signature_ok: bool | None
    property_info: str | None
    has_timestamp: bool
    problems: tuple[Problem, ...]

    @property
    def failed_references(self) -> tuple[str, ...]:
        return tuple(r.file_ref for r in self.references if not r.ok)

    @property
    def references_ok(self) -> bool:
        return bool(self.references) and all(r.ok for r in self.references)

    @property
    def ok(self) -> bool:
        return not self.problems and self.references_ok and self.signature_ok


@dataclass(frozen=True)
class OfdVerification:
    signatures: tuple[SignatureCheck, ...]
    unreferenced_files: tuple[str, ...]  # package files no signature protects (its own parts excepted)

    @property
    def ok(self) -> bool:
        return bool(self.signatures) and all(s.ok for s in self.signatures)

    @property
    def signer_certificates(self) -> tuple[SM2Certificate, ...]:
        return tuple(s.signer_certificate for s in self.signatures if s.signer_certificate is not None)


def _check_references(pkg: OfdPackage, sx: SignatureXml) -> tuple[tuple[ReferenceCheck, ...], list[Problem]]:
    problems: list[Problem] = []
    method_ok = sx.check_method.upper() in SM3_CHECK_METHODS or sx.check_method in SM3_CHECK_METHODS
    if not method_ok:
        problems.append(Problem("ALGORITHM_NOT_ALLOWED", f"CheckMethod {sx.check_method!r} is not SM3"))
    if not sx.references:
        problems.append(Problem("SIGNATURE_INVALID", "the signature protects no file"))
    out = []
    digests: dict[str, bytes] = {}  # each file hashed once, however often it is referenced
    for ref in sx.references:
        content = pkg.get(ref.path)
        if not method_ok:
            out.append(ReferenceCheck(ref.file_ref, ref.path, False, "check method not allowed"))
        elif content is None:
            out.append(ReferenceCheck(ref.file_ref, ref.path, False, "missing"))
            problems.append(Problem("SIGNATURE_INVALID", f"referenced file {ref.file_ref} is missing"))
        elif ref.check_value is None:
            out.append(ReferenceCheck(ref.file_ref, ref.path, False, "bad CheckValue"))
            problems.append(Problem("MALFORMED", f"CheckValue of {ref.file_ref} is not base64"))
        elif not hmac.compare_digest(digests.get(ref.path) or digests.setdefault(ref.path, sm3(content)),
                                     ref.check_value):
            out.append(ReferenceCheck(ref.file_ref, ref.path, False, "digest mismatch"))
            problems.append(Problem("SIGNATURE_INVALID", f"{ref.file_ref} was altered (SM3 digest mismatch)"))
        else:
            out.append(ReferenceCheck(ref.file_ref, ref.path, True))
    return tuple(out), problems


def _signer_bound(seal: SealInfo, cert_der: bytes) -> bool | None:
    if seal.certs:
        return cert_der in seal.certs
    for kind, digest in seal.cert_digests:
        if kind.upper() in ("SM3", OID_SM3):
            return hmac.compare_digest(sm3(cert_der), digest)
    return None


def _load_cert(der: bytes, what: str, problems: list[Problem]) -> SM2Certificate | None:
    try:
        return load_sm2_certificate(der)
    except ValueError as exc:
        problems.append(Problem("MALFORMED", f"{what}: {exc}"))
        return None


def _check_one(pkg: OfdPackage, entry: SignatureEntry, cert_lookup: CertLookup | None) -> SignatureCheck:
    sig_xml_bytes = pkg.get(entry.path)
    if sig_xml_bytes is None:
        raise OfdStructureError(f"Signature.xml {entry.path} listed in Signatures.xml is missing")
    sx = parse_signature_xml(sig_xml_bytes, entry.path)
    refs, problems = _check_references(pkg, sx)
    if sx.signature_method not in SM2_SIGNATURE_METHODS:
        problems.append(Problem("ALGORITHM_NOT_ALLOWED", f"SignatureMethod {sx.signature_method!r} is not SM2-with-SM3"))
    signed_value = pkg.get(sx.signed_value_path)
    common = dict(id=entry.id, type=entry.type, path=entry.path, provider=dict(sx.provider),
                  signature_method=sx.signature_method, check_method=sx.check_method,
                  signature_datetime=sx.signature_datetime, references=refs, seal_path=sx.seal_path,
                  signed_value_path=sx.signed_value_path)
    if signed_value is None:
        problems.append(Problem("MALFORMED", f"SignedValue {sx.signed_value_path} is missing"))
        return SignatureCheck(**common, signing_time=parse_signature_datetime(sx.signature_datetime),
                              seal_matches=None, data_hash_ok=None, signature_ok=False, signer_certificate=None,
                              signer_bound_to_seal=None, seal=None, seal_maker_certificate=None,
                              seal_maker_signature_ok=None, property_info=None, has_timestamp=False,
                              problems=tuple(problems))
    if entry.type == "Sign":
        return _check_sign(entry, sx, sig_xml_bytes, signed_value, cert_lookup, common, problems)
    if entry.type != "Seal":
        problems.append(Problem("UNSUPPORTED_FORMAT", f"signature type {entry.type!r} is neither Seal nor Sign"))
    return _check_seal(pkg, sx, sig_xml_bytes, signed_value, common, problems)


def _check_sign(entry: SignatureEntry, sx: SignatureXml, sig_xml_bytes: bytes, signed_value: bytes,
                cert_lookup: CertLookup | None, common: dict, problems: list[Problem]) -> SignatureCheck:
    signer: SM2Certificate | None = None
    candidates = list(cert_lookup(entry, sx)) if cert_lookup is not None else []
    if not candidates:
        problems.append(Problem("UNKNOWN_ISSUER", "no certificate was supplied for a Type=Sign signature"))
    for cert in candidates:
        if sm2_verify(cert.public_key, sig_xml_bytes, signed_value):
            signer = cert
            break
    if candidates and signer is None:
        problems.append(Problem("SIGNATURE_INVALID", "SignedValue does not verify over Signature.xml with any "
                                                     "supplied certificate"))
    return SignatureCheck(**common, signing_time=parse_signature_datetime(sx.signature_datetime),
                          seal_matches=None, data_hash_ok=None, signature_ok=signer is not None,
                          signer_certificate=signer, signer_bound_to_seal=None, seal=None,
                          seal_maker_certificate=None, seal_maker_signature_ok=None, property_info=None,
                          has_timestamp=False, problems=tuple(problems))


def _check_seal(pkg: OfdPackage, sx: SignatureXml, sig_xml_bytes: bytes, signed_value: bytes, common: dict,
                problems: list[Problem]) -> SignatureCheck:
    empty = dict(signing_time=parse_signature_datetime(sx.signature_datetime), seal_matches=None,
                 data_hash_ok=None, signature_ok=False, signer_certificate=None, signer_bound_to_seal=None,
                 seal=None, seal_maker_certificate=None, seal_maker_signature_ok=None, property_info=None,
                 has_timestamp=False)
    try:
        ses = parse_ses_signature(signed_value)
    except SesVersionError as exc:
        problems.append(Problem("UNSUPPORTED_FORMAT", str(exc)))
        return SignatureCheck(**common, **empty, problems=tuple(problems))
    except SesFormatError as exc:
        problems.append(Problem("MALFORMED", str(exc)))
        return SignatureCheck(**common, **empty, problems=tuple(problems))

    seal_matches: bool | None = None
    if sx.seal_path is not None:
        esl = pkg.get(sx.seal_path)
        seal_matches = esl is not None and hmac.compare_digest(esl, ses.seal.der)
        if not seal_matches:
            problems.append(Problem("SIGNATURE_INVALID", f"the seal in the signature differs from {sx.seal_path}"
                                    if esl is not None else f"seal file {sx.seal_path} is missing"))
    data_hash_ok = hmac.compare_digest(sm3(sig_xml_bytes), ses.data_hash)
    if not data_hash_ok:
        problems.append(Problem("SIGNATURE_INVALID", "SM3(Signature.xml) differs from the signed dataHash"))
    signer = _load_cert(ses.cert_der, "signer certificate", problems)
    signature_ok = False
    if ses.signature_algorithm != OID_SM2_WITH_SM3:
        problems.append(Problem("ALGORITHM_NOT_ALLOWED", f"SES signatureAlgID {ses.signature_algorithm} is not "
                                                         "SM2-with-SM3"))
    elif signer is not None:
        signature_ok = sm2_verify(signer.public_key, ses.tbs_der, ses.signature)
        if not signature_ok:
            problems.append(Problem("SIGNATURE_INVALID", "the SM2 signature over TBS_Sign does not verify"))
    bound = _signer_bound(ses.seal, ses.cert_der)
    if bound is False:
        problems.append(Problem("SIGNATURE_INVALID", "the signer certificate is not one the seal binds"))
    elif bound is None:  # an empty certificate list, or digests in no algorithm read here: nothing binds it
        problems.append(Problem("SIGNATURE_INVALID", "the seal binds no signer certificate this reader can match"))
    maker = _load_cert(ses.seal.maker_cert_der, "seal maker certificate", problems)
    maker_ok: bool | None = None
    if maker is not None and ses.seal.maker_signature_algorithm == OID_SM2_WITH_SM3:
        maker_ok = sm2_verify(maker.public_key, ses.seal.sealinfo_der, ses.seal.maker_signature)
        if not maker_ok:
            problems.append(Problem("SIGNATURE_INVALID", "the seal maker's signature over the seal does not verify"))
    return SignatureCheck(**common, signing_time=ses.time_info, seal_matches=seal_matches,
                          data_hash_ok=data_hash_ok, signature_ok=signature_ok, signer_certificate=signer,
                          signer_bound_to_seal=bound, seal=ses.seal, seal_maker_certificate=maker,
                          seal_maker_signature_ok=maker_ok, property_info=ses.property_info,
                          has_timestamp=ses.has_timestamp, problems=tuple(problems))


def verify_package(pkg: OfdPackage, cert_lookup: CertLookup | None = None) -> OfdVerification:
    ofd_xml = pkg.get("OFD.xml")
    if ofd_xml is None:
        raise OfdStructureError("OFD.xml is missing: not an OFD package")
    entries: list[SignatureEntry] = []
    for path in find_signatures_xml(ofd_xml):
        data = pkg.get(path)
        if data is None:
            raise OfdStructureError(f"Signatures.xml {path} named in OFD.xml is missing")
        entries.extend(parse_signatures_xml(data, path))
    checks = tuple(_check_one(pkg, e, cert_lookup) for e in entries)
    covered: set[str] = set()
    for e, c in zip(entries, checks, strict=True):
        covered.add(e.path)
        covered.update(r.path for r in c.references)
        covered.update(p for p in (c.seal_path,) if p)
        covered.add(c.signed_value_path)
    unreferenced = tuple(sorted(p for p in pkg.files if p not in covered))
    return OfdVerification(signatures=checks, unreferenced_files=unreferenced)


def verify_ofd_signatures(data: bytes, cert_lookup: CertLookup | None = None,
                          limits: ZipLimits = DEFAULT_LIMITS) -> OfdVerification:
    """Read an OFD file safely and check every signature in it. Raises
    :class:`~adapters.ofd.errors.OfdError` when the package itself cannot be read."""
    return verify_package(read_ofd_package(data, limits), cert_lookup)


__all__ = [
    "CertLookup",
    "OfdError",
    "OfdVerification",
    "Problem",
    "ReferenceCheck",
    "SignatureCheck",
    "verify_ofd_signatures",
    "verify_package",
]
