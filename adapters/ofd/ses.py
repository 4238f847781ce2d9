"""GB/T 38540-2020 electronic seal structures (SES_Signature v4, SESeal) with asn1crypto.

::

    SES_Signature ::= SEQUENCE {
        toSign          TBS_Sign,
        cert            OCTET STRING,        -- signer certificate DER
        signatureAlgID  OBJECT IDENTIFIER,   -- SM2-with-SM3
        signature       BIT STRING,          -- over DER(toSign); DER or raw r||s
        timeStamp       [0] EXPLICIT BIT STRING OPTIONAL }
    TBS_Sign ::= SEQUENCE {
        version INTEGER (4), eseal SESeal, timeInfo GeneralizedTime,
        dataHash BIT STRING,  -- SM3 of Signature.xml
        propertyInfo IA5String, extDatas [0] EXPLICIT ExtensionDatas OPTIONAL }
    SESeal ::= SEQUENCE {
        esealInfo SES_SealInfo, cert OCTET STRING (seal maker), signAlgID OBJECT IDENTIFIER,
        signedValue BIT STRING }  -- maker's signature over DER(esealInfo)
    SES_SealInfo ::= SEQUENCE {
        header SES_Header, esID IA5String, property SES_ESPropertyInfo,
        picture SES_ESPictrueInfo, extDatas ExtensionDatas OPTIONAL }

The older GM/T 0031-2014 (v1) layout is recognised by its version and reported as
unsupported rather than mis-read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

from asn1crypto import core

from gateway.crypto.der import der_problem, unread_elements
from gateway.crypto.sm2 import OID_SM2_WITH_SM3, SM2PrivateKey, sm2_sign
from gateway.model import positional_builder

SES_V4: Final = 4
CERT_LIST_CERTS: Final = 1
CERT_LIST_DIGESTS: Final = 2


class SESHeader(core.Sequence):
    _fields = [("id", core.IA5String), ("version", core.Integer), ("vid", core.IA5String)]


class CertInfoList(core.SequenceOf):
    _child_spec = core.OctetString


class CertDigestObj(core.Sequence):
    _fields = [("type", core.PrintableString), ("value", core.OctetString)]


class CertDigestList(core.SequenceOf):
    _child_spec = CertDigestObj


class SESPropertyInfo(core.Sequence):
    _fields = [
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list_type", core.Integer),
        ("cert_list", core.Any),  # CertInfoList or CertDigestList, by cert_list_type
        ("create_date", core.GeneralizedTime),
        ("valid_start", core.GeneralizedTime),
        ("valid_end", core.GeneralizedTime),
    ]


class SESPictureInfo(core.Sequence):
    _fields = [("type", core.IA5String), ("data", core.OctetString), ("width", core.Integer),
               ("height", core.Integer)]


class ExtData(core.Sequence):
    _fields = [("extn_id", core.ObjectIdentifier), ("critical", core.Boolean, {"default": False}),
               ("extn_value", core.OctetString)]


class ExtensionDatas(core.SequenceOf):
    _child_spec = ExtData


class SESSealInfo(core.Sequence):
    _fields = [
        ("header", SESHeader),
        ("es_id", core.IA5String),
        ("property", SESPropertyInfo),
        ("picture", SESPictureInfo),
        ("ext_datas", ExtensionDatas, {"optional": True}),
    ]


class SESeal(core.Sequence):
    _fields = [
        ("eseal_info", SESSealInfo),
        ("cert", core.OctetString),
        ("sign_alg_id", core.ObjectIdentifier),
        ("signed_value", core.OctetBitString),
    ]


class TBSSign(core.Sequence):
    _fields = [
        ("version", core.Integer),
        ("eseal", SESeal),
        ("time_info", core.GeneralizedTime),
        ("data_hash", core.OctetBitString),
        ("property_info", core.IA5String),
        ("ext_datas", ExtensionDatas, {"explicit": 0, "optional": True}),
    ]


class SESSignature(core.Sequence):
    _fields = [
        ("to_sign", TBSSign),
        ("cert", core.OctetString),
        ("signature_alg_id", core.ObjectIdentifier),
        ("signature", core.OctetBitString),
        ("time_stamp", core.OctetBitString, {"explicit": 0, "optional": True}),
    ]


@dataclass(frozen=True, slots=True)
class SealInfo:
    """What a seal says about itself (SESeal)."""

    der: bytes
    header_id: str
    version: int
    vendor_id: str
    es_id: str
    seal_type: int
    name: str
    cert_list_type: int
    certs: tuple[bytes, ...]  # DER certificates bound to the seal (cert_list_type 1)
    cert_digests: tuple[tuple[str, bytes], ...]  # (type, digest) when cert_list_type 2
    create_date: datetime
    valid_start: datetime
    valid_end: datetime
    picture_type: str
    picture_width: int
    picture_height: int
    sealinfo_der: bytes  # DER(SES_SealInfo): what the maker signed
    maker_cert_der: bytes
    maker_signature_algorithm: str
    maker_signature: bytes


@dataclass(frozen=True, slots=True)
class SesSignature:
    """A parsed SES_Signature v4."""

    version: int
    seal: SealInfo
    time_info: datetime
    data_hash: bytes
    property_info: str
    tbs_der: bytes  # exactly the bytes the signer signed
    cert_der: bytes
    signature_algorithm: str
    signature: bytes
    has_timestamp: bool


class SesFormatError(ValueError):
    """SignedValue.dat is not a GB/T 38540 SES_Signature this reader understands."""


class SesVersionError(SesFormatError):
    """A SES_Signature of another version (e.g. GM/T 0031-2014 v1)."""


#: GeneralizedTime as DER writes it (X.690 11.7): seconds, in UTC ("Z"), a fraction only without trailing zeros
_DER_GENERALIZED_TIME = re.compile(rb"[0-9]{14}(?:\.[0-9]*[1-9])?Z")


def _utc(value: core.GeneralizedTime, what: str) -> datetime:
    """The instant a GeneralizedTime names; SesFormatError unless it is in DER's form. Without the "Z" it
    is a local time of no stated zone (read as UTC here before: eight hours off for a Beijing signer)."""
    if not _DER_GENERALIZED_TIME.fullmatch(value.contents or b""):
        raise SesFormatError(f"{what} is not a DER GeneralizedTime (YYYYMMDDHHMMSS[.f]Z): "
                             f"{bytes(value.contents or b'')[:32]!r}")
    dt = value.native
    if not isinstance(dt, datetime):
        raise SesFormatError(f"{what}: time value missing")
    return dt.astimezone(timezone.utc)


def _octets(value: core.OctetBitString, what: str) -> bytes:
    """The octets of a BIT STRING that holds whole octets (a hash, a signature); SesFormatError when it
    declares unused bits, which asn1crypto silently dropped: ``03 41 01 ..`` read as ``03 41 00 ..``, a
    second SignedValue.dat for one signature (the plain walk, :func:`_bits`, refused it already)."""
    contents = value.contents
    if not contents or contents[0] != 0:
        raise SesFormatError(f"{what} is a BIT STRING with unused bits (not whole octets)")
    return bytes(contents[1:])


def _read_whole(value: core.Asn1Value, what: str) -> None:
    """SesFormatError when a SEQUENCE in ``value`` holds elements past its last field (asn1crypto keeps them
    aside, unread, and loads the rest: data appended to a genuine structure went unseen)."""
    problem = unread_elements(value)
    if problem is not None:
        raise SesFormatError(f"{what} holds data its structure has no place for: {problem}")


def parse_seal(seal: SESeal) -> SealInfo:
    _read_whole(seal, "the seal (SESeal)")
    info = seal["eseal_info"]
    prop = info["property"]
    list_type = int(prop["cert_list_type"].native)
    certs: tuple[bytes, ...] = ()
    digests: tuple[tuple[str, bytes], ...] = ()
    raw_list = prop["cert_list"].dump()
    if list_type == CERT_LIST_CERTS:
        certs = tuple(bytes(c) for c in CertInfoList.load(raw_list, strict=True).native)
    elif list_type == CERT_LIST_DIGESTS:
        digest_list = CertDigestList.load(raw_list, strict=True)
        _read_whole(digest_list, "the seal's certList")
        digests = tuple((d["type"], bytes(d["value"])) for d in digest_list.native)
    else:
        raise SesFormatError(f"unknown seal certListType {list_type if -1000 < list_type < 1000 else '(out of range)'}")
    pic = info["picture"]
    info["ext_datas"].native   # not kept, but read: an element in its place that is no ExtensionDatas is refused
    return SealInfo(
        der=seal.dump(),
        header_id=info["header"]["id"].native,
        version=int(info["header"]["version"].native),
        vendor_id=info["header"]["vid"].native,
        es_id=info["es_id"].native,
        seal_type=int(prop["type"].native),
        name=prop["name"].native,
        cert_list_type=list_type,
        certs=certs,
        cert_digests=digests,
        create_date=_utc(prop["create_date"], "seal createDate"),
        valid_start=_utc(prop["valid_start"], "seal validStart"),
        valid_end=_utc(prop["valid_end"], "seal validEnd"),
        picture_type=pic["type"].native,
        picture_width=int(pic["width"].native),
        picture_height=int(pic["height"].native),
        sealinfo_der=info.dump(),
        maker_cert_der=bytes(seal["cert"].native),
        maker_signature_algorithm=seal["sign_alg_id"].dotted,
        maker_signature=_octets(seal["signed_value"], "seal signedValue"),
    )


def parse_ses_signature(data: bytes) -> SesSignature:
    """Parse SignedValue.dat as SES_Signature v4. Raises SesFormatError / SesVersionError.

    A well-formed DER SES_Signature v4 is read by :func:`_parse_plain` (a direct walk of the
    few fields needed; the SESeal, identical on every document an issuer seals, is parsed
    once per distinct seal); anything that walk does not accept is read by asn1crypto
    (:func:`_parse_asn1`), whose result and errors are the reference.
    """
    data = bytes(data)
    fast = _parse_plain(data)
    return fast if fast is not None else _parse_asn1(data)


def _parse_asn1(data: bytes) -> SesSignature:
    # asn1crypto also reads BER (indefinite and long-form lengths, constructed strings): DER only here
    problem = der_problem(data)
    if problem is not None:
        raise SesFormatError(f"SignedValue is not DER: {problem}")
    try:
        outer = core.Sequence.load(bytes(data), strict=True)
        first = outer[0]
        inner = core.Sequence.load(first.dump(), strict=True)
        version = inner[0].native if isinstance(inner[0], core.Integer) else None
    except Exception as exc:
        raise SesFormatError(f"SignedValue is not DER: {type(exc).__name__}: {exc}") from exc
    if isinstance(version, int) and not -1000 < version < 1000:
        # no version number: and an INTEGER of thousands of digits is not even printable (int -> str limit)
        raise SesFormatError(f"SES_Signature version is an INTEGER of {len(inner[0].contents)} bytes, not a version")
    if version != SES_V4:
        raise SesVersionError(f"SES_Signature version {version!r} is not supported (only GB/T 38540 v4)")
    try:
        ses = SESSignature.load(bytes(data), strict=True)
        _read_whole(ses, "SES_Signature")   # its outer fields are not signed: anyone could append there
        tbs = ses["to_sign"]
        seal = parse_seal(tbs["eseal"])
        result = SesSignature(
            version=int(tbs["version"].native),
            seal=seal,
            time_info=_utc(tbs["time_info"], "TBS_Sign timeInfo"),
            data_hash=_octets(tbs["data_hash"], "TBS_Sign dataHash"),
            property_info=tbs["property_info"].native,
            tbs_der=tbs.dump(),
            cert_der=bytes(ses["cert"].native),
            signature_algorithm=ses["signature_alg_id"].dotted,
            signature=_octets(ses["signature"], "SES_Signature signature"),
            has_timestamp=ses["time_stamp"].native is not None,
        )
        if result.has_timestamp:
            _octets(ses["time_stamp"], "SES_Signature timeStamp")
        tbs["ext_datas"].native   # not kept, but read (as the fast walk reads it): no ExtensionDatas is refused
    except SesFormatError:
        raise
    except Exception as exc:  # asn1crypto raises assorted types on hostile input
        raise SesFormatError(f"SES_Signature v4 is malformed: {type(exc).__name__}: {exc}") from exc
    return result


# --- the plain DER walk ----------------------------------------------------------------
_OID_NAMES: dict[bytes, str] = {}  # OID content octets -> dotted text (OIDs are few and recur)


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``; ValueError if it
    does not fit before ``end`` or uses a form DER forbids (indefinite / non-minimal length)."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tag")
    pos += 2
    if first < 0x80:
        length = first
    else:
        k = first & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos:pos + k], "big")
        if length < 0x80 or buf[pos] == 0:
            raise ValueError("non-minimal length")
        pos += k
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _oid(content: bytes) -> str:
    name = _OID_NAMES.get(content)
    if name is None:
        if not content or content[-1] & 0x80 or len(content) > 64:
            raise ValueError("bad OID")
        arcs, value = [], 0
        for b in content:
            if value == 0 and b == 0x80:
                raise ValueError("non-minimal OID arc")
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        name = ".".join(map(str, (first, arcs[0] - 40 * first, *arcs[1:])))
        if len(_OID_NAMES) < 256:
            _OID_NAMES[content] = name
    return name


def _gtime(content: bytes) -> datetime:
    """GeneralizedTime in the one form DER signers write: YYYYMMDDHHMMSSZ."""
    if len(content) != 15 or content[14:] != b"Z" or not content[:14].isdigit():
        raise ValueError("not YYYYMMDDHHMMSSZ")
    # YYYYMMDD "T" HHMMSS "Z": ISO 8601 basic format, which fromisoformat (3.11) reads in C -- the
    # same datetime (tzinfo timezone.utc) and the same ValueError for an impossible date or time
    return _from_iso((content[:8] + b"T" + content[8:]).decode("ascii"))


_from_iso = datetime.fromisoformat


def _bits(buf: bytes, start: int, end: int) -> bytes:
    if start >= end or buf[start] != 0:
        raise ValueError("BIT STRING with unused bits")
    return buf[start + 1:end]


#: parsed seals by their DER (a seal is the same on every document its holder seals); bounded in
#: entries and in bytes: only seals up to _SEAL_CACHE_MAX_BYTES are kept (a seal is read before any
#: signature is checked, so its bytes are the presenter's: 256 kept 8-MB seals would hold 2 GB; a real
#: seal with its picture is ~20 KB)
_SEALS: dict[bytes, SealInfo] = {}
_SEAL_CACHE_SIZE = 256
_SEAL_CACHE_MAX_BYTES = 128 * 1024


def _seal(der: bytes) -> SealInfo:
    info = _SEALS.get(der)
    if info is None:
        info = _parse_seal_plain(der)
        if info is None:  # not the plain DER shape: asn1crypto decides (and words the error), on DER only
            problem = der_problem(der)
            if problem is not None:
                raise SesFormatError(f"the seal (SESeal) is not DER: {problem}")
            info = parse_seal(SESeal.load(der, strict=True))
        if len(der) <= _SEAL_CACHE_MAX_BYTES:
            if len(_SEALS) >= _SEAL_CACHE_SIZE:
                _SEALS.clear()
            _SEALS[der] = info
    return info


def _uint(buf: bytes, start: int, end: int) -> int:
    """A non-negative DER INTEGER in minimal form (what signers write); ValueError otherwise."""
    if start >= end or end - start > 8 or buf[start] & 0x80 or (
            end - start > 1 and buf[start] == 0 and not buf[start + 1] & 0x80):
        raise ValueError("not a small non-negative minimal INTEGER")
    return int.from_bytes(buf[start:end], "big")


def _ascii(buf: bytes, start: int, end: int) -> str:
    raw = buf[start:end]
    if not raw.isascii():
        raise ValueError("not ASCII")
    return raw.decode("ascii")


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """(content start, content end) of the DER element at ``pos``, which must have ``tag`` (a
    single-byte tag); ValueError as :func:`_tlv` otherwise. :func:`_tlv` inlined: one call per element."""
    if pos + 2 > end:
        raise ValueError("truncated")
    if buf[pos] != tag:
        raise ValueError(f"tag {buf[pos]:#x}, expected {tag:#x}")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        k = first & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos:pos + k], "big")
        if length < 0x80 or buf[pos] == 0:
            raise ValueError("non-minimal length")
        pos += k
    if pos + length > end:
        raise ValueError("truncated")
    return pos, pos + length


def _parse_seal_plain(der: bytes) -> SealInfo | None:
    """SESeal read field by field, for the plain DER shape only (primitive strings, small
    non-negative integers, YYYYMMDDHHMMSSZ times, no extDatas); None for anything else, which
    :func:`parse_seal` (asn1crypto) then reads. For every seal it accepts the result equals
    ``parse_seal(SESeal.load(der, strict=True))`` (tests/test_ofd_seal_parse_fast_equals_asn1.py)."""
    try:
        n = len(der)
        s0, s1 = _expect(der, 0, n, 0x30)
        if s1 != n:
            return None
        i0, i1 = _expect(der, s0, s1, 0x30)  # SES_SealInfo
        h0, h1 = _expect(der, i0, i1, 0x30)  # SES_Header
        a, b = _expect(der, h0, h1, 0x16)
        header_id = _ascii(der, a, b)
        a, b = _expect(der, b, h1, 0x02)
        version = _uint(der, a, b)
        a, b = _expect(der, b, h1, 0x16)
        vendor_id = _ascii(der, a, b)
        if b != h1:
            return None
        a, b = _expect(der, h1, i1, 0x16)  # esID
        es_id = _ascii(der, a, b)
        p0, p1 = _expect(der, b, i1, 0x30)  # SES_ESPropertyInfo
        a, b = _expect(der, p0, p1, 0x02)
        seal_type = _uint(der, a, b)
        a, b = _expect(der, b, p1, 0x0C)
        name = der[a:b].decode("utf-8")
        a, b = _expect(der, b, p1, 0x02)
        list_type = _uint(der, a, b)
        l0, l1 = _expect(der, b, p1, 0x30)  # certList
        certs: list[bytes] = []
        digests: list[tuple[str, bytes]] = []
        pos = l0
        if list_type == CERT_LIST_CERTS:
            while pos < l1:
                a, pos = _expect(der, pos, l1, 0x04)
                certs.append(der[a:pos])
        elif list_type == CERT_LIST_DIGESTS:
            while pos < l1:
                d0, pos = _expect(der, pos, l1, 0x30)
                a, b = _expect(der, d0, pos, 0x13)
                kind = _ascii(der, a, b)
                a, b = _expect(der, b, pos, 0x04)
                if b != pos:
                    return None
                digests.append((kind, der[a:b]))
        else:
            return None
        a, b = _expect(der, l1, p1, 0x18)
        create_date = _gtime(der[a:b])
        a, b = _expect(der, b, p1, 0x18)
        valid_start = _gtime(der[a:b])
        a, b = _expect(der, b, p1, 0x18)
        valid_end = _gtime(der[a:b])
        if b != p1:
            return None
        q0, q1 = _expect(der, p1, i1, 0x30)  # SES_ESPictrueInfo
        a, b = _expect(der, q0, q1, 0x16)
        picture_type = _ascii(der, a, b)
        a, b = _expect(der, b, q1, 0x04)  # picture data: not kept
        a, b = _expect(der, b, q1, 0x02)
        width = _uint(der, a, b)
        a, b = _expect(der, b, q1, 0x02)
        height = _uint(der, a, b)
        if b != q1 or q1 != i1:  # extDatas present: left to asn1crypto
            return None
        a, b = _expect(der, i1, s1, 0x04)  # maker certificate
        maker_cert = der[a:b]
        a, b = _expect(der, b, s1, 0x06)
        maker_alg = _oid(der[a:b])
        a, b = _expect(der, b, s1, 0x03)
        maker_signature = _bits(der, a, b)
        if b != s1:
            return None
    except (ValueError, IndexError):  # UnicodeDecodeError is a ValueError
        return None
    return _make_seal_info(der, header_id, version, vendor_id, es_id, seal_type, name, list_type, tuple(certs),
                           tuple(digests), create_date, valid_start, valid_end, picture_type, width, height,
                           der[s0:i1], maker_cert, maker_alg, maker_signature)


#: ``SealInfo(...)`` / ``SesSignature(...)`` with every field positional (the plain walk's hot path)
_make_seal_info = positional_builder(SealInfo)
_make_ses_signature = positional_builder(SesSignature)


def _parse_plain(data: bytes) -> SesSignature | None:
    """SES_Signature v4 read field by field; None when anything is not the plain DER shape."""
    try:
        n = len(data)
        tag, s0, s1 = _tlv(data, 0, n)
        if tag != 0x30 or s1 != n:
            return None
        tag, t0, t1 = _tlv(data, s0, s1)  # TBS_Sign
        if tag != 0x30:
            return None
        tag, a, b = _tlv(data, t0, t1)  # version
        if tag != 0x02 or b - a != 1 or data[a] != SES_V4:
            return None
        tag, e0, e1 = _tlv(data, b, t1)  # eseal: its whole element is the seal's DER
        if tag != 0x30:
            return None
        seal_der = data[b:e1]
        tag, a, b = _tlv(data, e1, t1)
        if tag != 0x18:
            return None
        time_info = _gtime(data[a:b])
        tag, a, b = _tlv(data, b, t1)
        if tag != 0x03:
            return None
        data_hash = _bits(data, a, b)
        tag, a, b = _tlv(data, b, t1)
        if tag != 0x16 or not data[a:b].isascii():
            return None
        property_info = data[a:b].decode("ascii")
        if b != t1:  # extDatas [0] EXPLICIT: left to asn1crypto, which reads it (its DER, its shape), as for a seal
            return None
        tag, a, b = _tlv(data, t1, s1)  # cert
        if tag != 0x04:
            return None
        cert_der = data[a:b]
        tag, a, b = _tlv(data, b, s1)
        if tag != 0x06:
            return None
        algorithm = _oid(data[a:b])
        tag, a, b = _tlv(data, b, s1)
        if tag != 0x03:
            return None
        signature = _bits(data, a, b)
        has_timestamp = False
        if b != s1:  # timeStamp [0] EXPLICIT BIT STRING, then nothing
            tag, a, b = _tlv(data, b, s1)
            if tag != 0xA0 or b != s1:
                return None
            tag, x0, x1 = _tlv(data, a, b)
            if tag != 0x03 or x1 != b:
                return None
            _bits(data, x0, x1)
            has_timestamp = True
        seal = _seal(seal_der)
    except Exception:  # any surprise: the asn1crypto reader decides (and words the error)
        return None
    return _make_ses_signature(SES_V4, seal, time_info, data_hash, property_info, data[s0:t1], cert_der, algorithm,
                               signature, has_timestamp)


# --- building (issuer simulator / tests) ---------------------------------------------
def _gt(dt: datetime) -> core.GeneralizedTime:
    if dt.tzinfo is None:
        raise ValueError("seal times must be timezone-aware")
    return core.GeneralizedTime(dt.astimezone(timezone.utc).replace(microsecond=0))


def build_seal(*, name: str, es_id: str, signer_cert_der: bytes, maker_key: SM2PrivateKey, maker_cert_der: bytes,
               created: datetime, valid_start: datetime, valid_end: datetime, picture: bytes,
               picture_type: str = "SVG", width_mm: int = 40, height_mm: int = 40,
               vendor_id: str = "ELG-SIM", seal_type: int = 1) -> bytes:
    """A minimal GB/T 38540 SESeal (DER), signed by the maker over DER(SES_SealInfo)."""
    info = SESSealInfo({
        "header": {"id": "ES", "version": SES_V4, "vid": vendor_id},
        "es_id": es_id,
        "property": {
            "type": seal_type,
            "name": name,
            "cert_list_type": CERT_LIST_CERTS,
            "cert_list": core.Any.load(CertInfoList([signer_cert_der]).dump()),
            "create_date": _gt(created),
            "valid_start": _gt(valid_start),
            "valid_end": _gt(valid_end),
        },
        "picture": {"type": picture_type, "data": picture, "width": width_mm, "height": height_mm},
    })
    info_der = info.dump()
    return SESeal({
        "eseal_info": SESSealInfo.load(info_der),
        "cert": maker_cert_der,
        "sign_alg_id": OID_SM2_WITH_SM3,
        "signed_value": sm2_sign(maker_key, info_der),
    }).dump()


def build_ses_signature(*, seal_der: bytes, signing_time: datetime, data_hash: bytes, property_info: str,
                        signer_key: SM2PrivateKey, signer_cert_der: bytes) -> bytes:
    """SES_Signature v4 (DER) over ``data_hash`` (SM3 of Signature.xml)."""
    tbs = TBSSign({
        "version": SES_V4,
        "eseal": SESeal.load(seal_der),
        "time_info": _gt(signing_time),
        "data_hash": data_hash,
        "property_info": property_info,
    })
    tbs_der = tbs.dump()
    return SESSignature({
        "to_sign": TBSSign.load(tbs_der),
        "cert": signer_cert_der,
        "signature_alg_id": OID_SM2_WITH_SM3,
        "signature": sm2_sign(signer_key, tbs_der),
    }).dump()
