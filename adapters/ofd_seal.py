"""Format family ``ofd-seal``: an OFD package (GB/T 33190) protected by a GB/T 38540 seal.

Wraps :mod:`adapters.ofd` (safe zip reading, OFD XML parts, SES_Signature parsing) and
adds what a *licence* needs on top of a signed document.

Layout (the project's model; recorded in each region spec)::

    OFD.xml, Doc_0/Document.xml, Doc_0/Pages/Page_0/Content.xml   the printable licence
    Doc_0/Attachs/licence.xml   the licence's surface data: <LicenceData xmlns="urn:elicence:ofd-data:1">
                                <Data>...same element layout as sm2-xml...</Data></LicenceData>,
                                in the spec's text_encoding (declared in the prolog)
    Doc_0/Signs/Signatures.xml  exactly one Signature: Type="Seal" (GB/T 38540 v4) or Type="Sign"
    Doc_0/Signs/Sign_0/...      Signature.xml, Seal.esl, SignedValue.dat

What is checked, in :meth:`OfdSealFamily.verify`, with the signer certificate the core's
Issuer check resolved (by thumbprint from the trust list, or chained to a region anchor):

* every Reference's SM3 digest (CheckMethod must be SM3) -- a failure names the part;
* the licence data part is one of the protected References (an unprotected data part
  would let anyone swap the licence under a genuine seal);
* Seal: the seal in TBS_Sign equals ``Seal.esl``; SM3(Signature.xml) equals
  ``TBS_Sign.dataHash``; the SM2 signature over DER(TBS_Sign) verifies with the trusted
  certificate, which must be the certificate the signature carries and one the seal binds;
  the seal maker's signature over the seal verifies (its key handle is cached per maker
  certificate, and a seal whose maker signature verified once -- the same exact SESeal bytes -- is
  not verified again: an issuer's licences share their seal); the signing time lies within the
  seal's validity;
* Sign (plain digital signature): ``SignedValue.dat`` is an SM2 signature (raw or DER)
  over the bytes of Signature.xml. A bare signature names no certificate, so the signer
  certificate travels in the package as ``<signature folder>/SignerCert.der`` (DER or PEM;
  the simulator protects it with a Reference). Without it the licence is UNKNOWN_ISSUER.

All of these failures are SIGNATURE_INVALID (or ALGORITHM_NOT_ALLOWED) with a detail
naming the part; zip-safety failures (size, ratio, entry count, traversal, duplicates,
truncation) are MALFORMED, under the Limits.max_zip_* settings.

**A signed OFD without a licence data part** (for example the ofdrw vectors) is a signed
document, not an e-licence: its container, integrity and signature checks run as for any
licence; ``Envelope.raw`` is empty and ``extra["no_licence_data"]`` explains why, which the
core reports as FIELD_INVALID at the normalise step. ``gateway.core.SIGNATURE_ONLY_CHECKS``
judges such a document as signed (trust, format, issuer, algorithm, signature, issuer
certificate) and gives a valid verdict with notes, for callers that need exactly that.

Only one signature per package is accepted (UNSUPPORTED_FORMAT otherwise): a licence
with several seals would need a rule for which one speaks for the region.
"""

from __future__ import annotations

import base64
import hmac
import posixpath
import re
from datetime import datetime
from threading import Lock
from typing import Any, Mapping
from xml.sax.saxutils import escape, quoteattr

from adapters.ofd.build import _PUBLIC_RES, _attachments_xml, _document_xml, _ofd_xml, _seal_picture, build_sealed_ofd
from adapters.ofd.container import OfdPackage, ZipLimits, read_ofd_package, write_ofd_package
from adapters.ofd.ses import SesFormatError, SesSignature, SesVersionError, build_seal, parse_ses_signature
from adapters.ofd.xmlparts import (
    OFD_LOCAL_TZ,
    OFD_NS,
    SignatureXml,
    find_signatures_xml,
    parse_signature_datetime,
    parse_signature_xml,
    parse_signatures_xml,
    path_memo,
)
from gateway import errors
from gateway.crypto.sm2 import OID_SM2_WITH_SM3, OID_SM3, SM2PublicKey, sm2_sign, sm2_verify, sm3
from gateway.crypto.sm2cert import load_sm2_certificate
from gateway.errors import LicenceRejected
from gateway.model import positional_builder
from gateway.specs import RegionSpec
from gateway.trust import CertInfo

from .base import Envelope, KeyRef, Limits, SigningKey
from .sm2_xml import (
    MAX_ELEMENTS,
    as_text_data,
    data_from_element,
    data_block,
    data_xml,
    decode_xml,
    fast_data,
    local,
    parse_hardened,
    plain_text,
    prolog,
)

DATA_PART = "Doc_0/Attachs/licence.xml"
DATA_NS = "urn:elicence:ofd-data:1"
DATA_ROOT = "LicenceData"
SIGNER_CERT_NAME = "SignerCert.der"
SM3_METHODS = frozenset({"SM3", "sm3", OID_SM3})
NO_DATA = (f"the OFD package carries no licence data part ({DATA_PART}): it is a signed document, not an "
           "e-licence; its seal and signer were checked, its licence fields cannot be")
#: fixed timestamp for re-zipped simulator output (tamper): the zip dates are not signed
_ZIP_STAMP = datetime(2026, 1, 1, tzinfo=OFD_LOCAL_TZ)


class _MakerKeys:
    """Bounded cache: seal maker certificate (its DER bytes) -> SM2 public key handle.

    Loading a certificate costs more than verifying a signature; seal makers are few. A hit is
    one dict read (atomic under the GIL, no lock, no SHA-256 of the certificate); a miss loads
    the certificate and stores it under the lock, dropping the oldest entry when full.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: dict[bytes, SM2PublicKey] = {}
        self._lock = Lock()

    def get(self, cert_der: bytes) -> SM2PublicKey:
        hit = self._items.get(cert_der)
        if hit is not None:
            return hit
        key = load_sm2_certificate(cert_der).public_key  # ValueError on a bad certificate
        with self._lock:
            self._items[bytes(cert_der)] = key
            while len(self._items) > self._size:
                del self._items[next(iter(self._items))]  # insertion order: the oldest first
        return key


_MAKER_KEYS = _MakerKeys()


class _VerifiedSeals:
    """Bounded set of seals (their exact SESeal DER) whose maker's signature has verified.

    An issuer's licences all carry the same seal, and its maker's signature over SES_SealInfo is a
    pure function of bytes the SESeal DER holds whole (the seal information, the maker's certificate
    and the signature: DER is one unambiguous encoding), so a seal verified once needs no second SM2
    verification: one of a Type=Seal licence's two. Only a seal whose signature verified is kept
    (a bad one is checked, and refused, every time). The maker's certificate is read from the same
    bytes; nothing about trust is cached here (the signer's chain, validity and revocation are the
    core's, every time). A hit is one dict read; the oldest entry goes first when full.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: dict[bytes, None] = {}
        self._lock = Lock()

    def __contains__(self, seal_der: bytes) -> bool:
        return seal_der in self._items

    def add(self, seal_der: bytes) -> None:
        with self._lock:
            self._items[bytes(seal_der)] = None
            while len(self._items) > self._size:
                del self._items[next(iter(self._items))]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_VERIFIED_SEALS = _VerifiedSeals()


def zip_limits(limits: Limits) -> ZipLimits:
    hit = _ZIP_LIMITS.get(limits)
    if hit is None:
        hit = ZipLimits(max_package_bytes=limits.max_zip_uncompressed,
                        max_total_uncompressed=limits.max_zip_uncompressed,
                        max_compression_ratio=limits.max_zip_ratio, max_entries=limits.max_zip_entries)
        if len(_ZIP_LIMITS) >= 64:  # Limits come from settings: a handful per process
            _ZIP_LIMITS.clear()
        _ZIP_LIMITS[limits] = hit
    return hit


#: ZipLimits per (frozen, hashable) Limits: made once, not per licence
_ZIP_LIMITS: dict[Limits, ZipLimits] = {}
#: ``Envelope(...)`` / ``KeyRef(...)`` with every field positional
_make_envelope = positional_builder(Envelope)
_make_key_ref = positional_builder(KeyRef)
#: package path of a Type=Sign signer certificate, by its Signature.xml path
_signer_cert_path = path_memo(lambda signature_path: posixpath.join(posixpath.dirname(signature_path),
                                                                    SIGNER_CERT_NAME))


def _bad(detail: str, reason=errors.SIGNATURE_INVALID) -> LicenceRejected:
    return LicenceRejected(reason, detail)


class OfdSealFamily:
    name = "ofd-seal"

    def sniff(self, data: bytes) -> bool:
        return data[:4] == b"PK\x03\x04"

    # --- decoding --------------------------------------------------------------------
    def open(self, data: bytes, limits: Limits) -> Envelope:
        # adapters.ofd raises OfdError (a LicenceRejected: MALFORMED / UNSUPPORTED_FORMAT)
        pkg = read_ofd_package(data, zip_limits(limits))
        ofd_xml = _need(pkg, "OFD.xml", "OFD.xml (not an OFD package)")
        entries = [e for path in find_signatures_xml(ofd_xml)
                   for e in parse_signatures_xml(_need(pkg, path, "Signatures.xml"), path)]
        if len(entries) != 1:
            raise _bad(f"the package has {len(entries)} signatures; a licence carries exactly one",
                       errors.UNSUPPORTED_FORMAT if entries else errors.MALFORMED)
        entry = entries[0]
        sig_xml = _need(pkg, entry.path, "Signature.xml")
        sx = parse_signature_xml(sig_xml, entry.path)
        signed_value = _need(pkg, sx.signed_value_path, "SignedValue")
        extra: dict[str, Any] = {"package": pkg, "signature_xml": sig_xml, "sx": sx, "type": entry.type,
                                 "signature_path": entry.path}
        if entry.type == "Seal":
            try:
                ses = parse_ses_signature(signed_value)
            except SesVersionError as exc:
                raise _bad(str(exc), errors.UNSUPPORTED_FORMAT) from None
            except SesFormatError as exc:
                raise _bad(f"{sx.signed_value_path}: {exc}", errors.MALFORMED) from None
            extra["ses"] = ses
            chain, signing_time = (ses.cert_der,), ses.time_info
            signed_bytes, signature = ses.tbs_der, ses.signature
        elif entry.type == "Sign":
            cert_path = _signer_cert_path(entry.path)
            cert_bytes = pkg.get(cert_path)
            if cert_bytes is None:
                raise _bad(f"the Type=Sign signature names no certificate and {cert_path} is absent",
                           errors.UNKNOWN_ISSUER)
            chain = (_cert_der(cert_bytes, cert_path),)
            signing_time = parse_signature_datetime(sx.signature_datetime)
            if signing_time is None and sx.signature_datetime.strip():
                # present but unreadable: never taken as "no signing time", which would judge the signer's
                # certificate at now instead of at the time the signer wrote (issuer_time_policy)
                raise _bad(f"{entry.path}: SignatureDateTime {errors.shown(sx.signature_datetime)} is not a time "
                           "the gateway reads (e.g. 2026-03-02 09:30:00, Beijing time)", errors.MALFORMED)
            signed_bytes, signature = sig_xml, signed_value
        else:
            raise _bad(f"signature type {entry.type!r} is neither Seal nor Sign", errors.UNSUPPORTED_FORMAT)
        part = pkg.get(DATA_PART)
        if part is None:
            raw: dict[str, Any] = {}
            extra["no_licence_data"] = NO_DATA
        else:
            raw = _licence_data(part)
            extra["data_part"] = DATA_PART
        return _make_envelope(self.name, "SM2", _make_key_ref(None, chain, None, None), raw, signing_time, signed_bytes,
                              signature, extra)

    # --- verification ----------------------------------------------------------------
    def verify(self, env: Envelope, cert: CertInfo) -> bool:
        if env.algorithm != "SM2" or cert.algorithm != "SM2":
            return False
        x = env.extra
        pkg: OfdPackage = x["package"]
        sx: SignatureXml = x["sx"]
        if sx.signature_method != OID_SM2_WITH_SM3:
            raise _bad(f"SignatureMethod {sx.signature_method!r} is not SM2-with-SM3", errors.ALGORITHM_NOT_ALLOWED)
        protected = _check_references(pkg, sx, x.get("data_part"))
        if not protected:
            raise _bad(f"the licence data part {x['data_part']} is not protected by the signature")
        if x["type"] == "Sign":
            if not sm2_verify(cert.public_key, env.signed_bytes, env.signature):
                raise _bad(f"{sx.signed_value_path}: the SM2 signature over {x['signature_path']} does not verify")
            return True
        ses: SesSignature = x["ses"]
        if ses.signature_algorithm != OID_SM2_WITH_SM3:
            raise _bad(f"SES signatureAlgID {ses.signature_algorithm} is not SM2-with-SM3",
                       errors.ALGORITHM_NOT_ALLOWED)
        if sx.seal_path is not None:
            esl = pkg.get(sx.seal_path)
            if esl is None or not hmac.compare_digest(esl, ses.seal.der):
                raise _bad(f"the seal in the signature differs from {sx.seal_path}"
                           if esl is not None else f"seal file {sx.seal_path} is missing")
        if not hmac.compare_digest(sm3(x["signature_xml"]), ses.data_hash):
            raise _bad(f"{x['signature_path']} differs from the data hash the seal signed (SM3 mismatch)")
        if not hmac.compare_digest(cert.der, ses.cert_der):
            raise _bad("the signer certificate differs from the one the signature carries")
        if not sm2_verify(cert.public_key, ses.tbs_der, ses.signature):
            raise _bad(f"{sx.signed_value_path}: the SM2 signature over TBS_Sign does not verify")
        seal = ses.seal
        if not seal.certs and not seal.cert_digests:  # GB/T 38540: the signer must be one the seal lists
            raise _bad(f"{sx.seal_path or 'the seal'}: the seal binds no signer certificate (its list is empty)")
        if seal.certs and ses.cert_der not in seal.certs:
            raise _bad(f"{sx.seal_path or 'the seal'}: the signer certificate is not one the seal binds")
        if not seal.certs and not any(
                kind.upper() in SM3_METHODS and hmac.compare_digest(sm3(ses.cert_der), digest)
                for kind, digest in seal.cert_digests):
            raise _bad(f"{sx.seal_path or 'the seal'}: the signer certificate is not one the seal binds")
        if seal.maker_signature_algorithm != OID_SM2_WITH_SM3:
            raise _bad(f"seal maker algorithm {seal.maker_signature_algorithm} is not SM2-with-SM3",
                       errors.ALGORITHM_NOT_ALLOWED)
        if seal.der not in _VERIFIED_SEALS:
            try:
                maker = _MAKER_KEYS.get(seal.maker_cert_der)
            except ValueError as exc:
                raise _bad(f"seal maker certificate unreadable: {exc}", errors.MALFORMED) from None
            if not sm2_verify(maker, seal.sealinfo_der, seal.maker_signature):
                raise _bad(f"{sx.seal_path or 'the seal'}: the seal maker's signature over the seal does not verify")
            _VERIFIED_SEALS.add(seal.der)
        if not seal.valid_start <= ses.time_info <= seal.valid_end:
            raise _bad(f"the seal was used at {ses.time_info:%Y-%m-%dT%H:%M:%SZ}, outside its validity "
                       f"{seal.valid_start:%Y-%m-%d}..{seal.valid_end:%Y-%m-%d}")
        return True

    # --- encoding (issuer simulator) -------------------------------------------------
    def encode(self, raw: Mapping[str, Any], spec: RegionSpec, key: SigningKey, signing_time: datetime) -> bytes:
        if key.algorithm != "SM2":
            raise ValueError(f"ofd-seal cannot sign with {key.algorithm}")
        data = as_text_data(raw)
        part = (prolog(spec.text_encoding) + f'<{DATA_ROOT} xmlns="{DATA_NS}">' + data_xml(data)
                + f"</{DATA_ROOT}>").encode(spec.text_encoding)
        name = str(raw.get(spec.fields["name"], "电子证照"))
        holder = str(raw.get(spec.fields["holder_name"], ""))
        files = {DATA_PART: part, "Doc_0/Pages/Page_0/Content.xml": _page(name, holder)}
        if spec.options.get("signature_type", "Seal") == "Sign":
            return _build_signed(files, key, signing_time)
        seal_name = f"{spec.name}电子证照专用章（测试）"
        return build_sealed_ofd(files, key.private_key, key.cert.der, seal_name, signing_time,
                                seal_der=_issuer_seal(key, seal_name))

    def tamper(self, data: bytes) -> bytes:
        """Simulator: alter the licence data part after sealing (one character of the first value)."""
        pkg = read_ofd_package(data)
        files = dict(pkg.files)
        part = files[DATA_PART]
        start = part.index(b"<Data>") + len(b"<Data>")
        value = part.index(b">", start) + 1
        files[DATA_PART] = part[:value] + ("甲".encode("gb18030") if b'"GB18030"' in part[:80] else "甲".encode()) \
            + part[value:]
        return write_ofd_package(files, _ZIP_STAMP)

    def malformed(self, data: bytes) -> bytes:
        """Simulator: an OFD file cut short in transit."""
        return data[: len(data) // 2]


def _need(pkg: OfdPackage, path: str, what: str) -> bytes:
    content = pkg.get(path)
    if content is None:
        raise _bad(f"{what} {path} is missing", errors.MALFORMED)
    return content


def _cert_der(data: bytes, where: str) -> bytes:
    """DER as is (the Issuer check reads it, by thumbprint first); PEM unwrapped."""
    if data[:1] == b"\x30":
        return data
    if data.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
        body = b"".join(ln for ln in data.strip().splitlines()[1:-1])
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise _bad(f"{where}: PEM body is not base64", errors.MALFORMED) from None
    raise _bad(f"{where}: not a DER or PEM certificate", errors.MALFORMED)


_PLAIN_HEAD = re.compile(rf"[ \t\n]*<{DATA_ROOT} xmlns=\"{re.escape(DATA_NS)}\">[ \t\n]*")
_PLAIN_TAIL = re.compile(rf"[ \t\n]*</{DATA_ROOT}>[ \t\n]*")


#: ``decode_xml(part)`` for a part opening with a plain prolog and holding no ``<!``, else None
_plain_text = plain_text


def _licence_data(part: bytes) -> dict[str, Any]:
    text = _plain_text(part)
    if text is None:
        text = decode_xml(part, DATA_PART)
    block = data_block(text) if text.count("<") <= 2 * MAX_ELEMENTS else None
    fields = None
    if block is not None and _PLAIN_HEAD.fullmatch(block[0]) and _PLAIN_TAIL.fullmatch(block[2]):
        fields = fast_data(block[1])
    if fields is not None:  # the plain shape the simulator and issuers write (see adapters.sm2_xml)
        return fields
    root = parse_hardened(part, DATA_PART)
    if root.tag != f"{{{DATA_NS}}}{DATA_ROOT}" or len(root) != 1 or local(root[0].tag) != "Data":
        raise _bad(f"{DATA_PART}: root must be {{{DATA_NS}}}{DATA_ROOT} holding one <Data>", errors.MALFORMED)
    return data_from_element(root[0], DATA_PART)


def _check_references(pkg: OfdPackage, sx: SignatureXml, data_part: str | None = None) -> bool:
    """Every Reference's SM3 digest; True when ``data_part`` (if given) is one of them."""
    if sx.check_method not in SM3_METHODS:
        raise _bad(f"CheckMethod {sx.check_method!r} is not SM3", errors.ALGORITHM_NOT_ALLOWED)
    if not sx.references:
        raise _bad("the signature protects no part")
    get, equal = pkg.files.get, hmac.compare_digest
    protected = data_part is None
    # each part hashed once, however often it is referenced: the References run before the signature
    # is checked, and 2,000 of them naming one 8 MiB part cost a minute of SM3 (16 GB) per request
    digests: dict[str, bytes] = {}
    for ref in sx.references:
        path = ref.path
        digest = digests.get(path)
        if digest is None:
            content = get(path)
            if content is None:
                raise _bad(f"protected part {ref.file_ref} is missing")
            digest = digests[path] = sm3(content)
        if ref.check_value is None:
            raise _bad(f"CheckValue of {ref.file_ref} is not base64", errors.MALFORMED)
        if not equal(digest, ref.check_value):
            raise _bad(f"{ref.file_ref} was altered (SM3 digest mismatch)")
        if path == data_part:
            protected = True
    return protected


#: the simulator's seals, one per issuer certificate and seal name: made once and used on every
#: licence, as an issuing office uses its one 电子证照专用章 (a seal per document would be a model no
#: region runs, and would hide what the gateway's verified-seal set saves)
_ISSUER_SEALS: dict[tuple[bytes, str], bytes] = {}


def _issuer_seal(key: SigningKey, seal_name: str) -> bytes:
    slot = (key.cert.der, seal_name)
    seal = _ISSUER_SEALS.get(slot)
    if seal is None:
        cert = load_sm2_certificate(key.cert.der)
        seal = build_seal(name=seal_name, es_id=sm3(key.cert.der).hex()[:32], signer_cert_der=key.cert.der,
                          maker_key=key.private_key, maker_cert_der=key.cert.der, created=cert.not_before,
                          valid_start=cert.not_before, valid_end=cert.not_after, picture=_seal_picture(seal_name))
        _ISSUER_SEALS[slot] = seal
    return seal


def _page(name: str, holder: str) -> bytes:
    texts = "".join(
        f'<ofd:TextObject ID="{20 + i}" Boundary="20 {30 + 12 * i} 170 10" Font="1" Size="5">'
        f'<ofd:TextCode X="0" Y="5">{escape(t)}</ofd:TextCode></ofd:TextObject>'
        for i, t in enumerate((name, holder)) if t)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Page xmlns:ofd="{OFD_NS}"><ofd:Content>'
            f'<ofd:Layer ID="3">{texts}</ofd:Layer></ofd:Content></ofd:Page>').encode()


def _build_signed(files: Mapping[str, bytes], key: SigningKey, signing_time: datetime) -> bytes:
    """A Type=Sign OFD: SignedValue.dat = DER SM2 signature over Signature.xml; the signer
    certificate is carried (and protected) as Doc_0/Signs/Sign_0/SignerCert.der."""
    sign_dir = "Doc_0/Signs/Sign_0"
    content = dict(files)
    content["Doc_0/Attachs/Attachments.xml"] = _attachments_xml(
        sorted(p for p in content if p.startswith("Doc_0/Attachs/")))
    content["Doc_0/Document.xml"] = _document_xml(["Doc_0/Pages/Page_0/Content.xml"])
    content["Doc_0/PublicRes.xml"] = _PUBLIC_RES
    doc_id = sm3(b"".join(sm3(k.encode()) + sm3(v) for k, v in sorted(content.items()))).hex()[:32]
    content["OFD.xml"] = _ofd_xml(doc_id, signing_time)
    content["Doc_0/Signs/Signatures.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Signatures xmlns:ofd="{OFD_NS}"><ofd:MaxSignId>1'
        f'</ofd:MaxSignId><ofd:Signature ID="1" Type="Sign" BaseLoc="/{sign_dir}/Signature.xml"/>'
        "</ofd:Signatures>").encode()
    content[f"{sign_dir}/{SIGNER_CERT_NAME}"] = key.cert.der
    refs = "".join(f'<ofd:Reference FileRef={quoteattr("/" + p)}><ofd:CheckValue>'
                   f"{base64.b64encode(sm3(c)).decode()}</ofd:CheckValue></ofd:Reference>"
                   for p, c in content.items())
    when = signing_time.astimezone(OFD_LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")
    sig_xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Signature xmlns:ofd="{OFD_NS}">'
               f"<ofd:SignedValue>/{sign_dir}/SignedValue.dat</ofd:SignedValue><ofd:SignedInfo>"
               '<ofd:Provider ProviderName="elicence-gateway-simulator" Company="TEST" Version="1.0"/>'
               f"<ofd:SignatureMethod>{OID_SM2_WITH_SM3}</ofd:SignatureMethod>"
               f"<ofd:SignatureDateTime>{when}</ofd:SignatureDateTime>"
               f'<ofd:References CheckMethod="{OID_SM3}">{refs}</ofd:References>'
               "</ofd:SignedInfo></ofd:Signature>").encode()
    content[f"{sign_dir}/Signature.xml"] = sig_xml
    content[f"{sign_dir}/SignedValue.dat"] = sm2_sign(key.private_key, sig_xml)
    return write_ofd_package(content, signing_time.astimezone(OFD_LOCAL_TZ))


__all__ = ["DATA_PART", "DATA_NS", "NO_DATA", "OfdSealFamily", "zip_limits"]
