"""The OFD XML parts a signature check reads: OFD.xml, Signatures.xml, Signature.xml.

Elements are matched by local name, so the OFD namespace
(``http://www.ofdspec.org/2016``) may be bound to any prefix or be the default. DTDs
are refused outright (no entity expansion, no external fetch): OFD never needs one.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Final

from adapters.ofd.errors import OfdStructureError, UnsafeEntryNameError
from gateway.model import positional_builder

OFD_NS: Final = "http://www.ofdspec.org/2016"
#: OFD SignatureDateTime carries no zone; producers write Beijing time (UTC+8), as the
#: ofdrw vector shows (19:45:37 in XML, 11:45:37Z in the SES timeInfo).
OFD_LOCAL_TZ: Final = timezone(timedelta(hours=8))
MAX_SIGNATURES: Final = 64
MAX_REFERENCES: Final = 2000


def parse_xml(data: bytes, what: str) -> ET.Element:
    if b"\x00" in data:  # UTF-16 / UTF-32, which expat reads, would hide a DTD from the byte search below
        # (a billion-laughs internal subset in UTF-16 cost ~0.2 s of CPU before expat's amplification limit
        # stopped it); in an ASCII-compatible encoding a NUL is no XML character at all
        raise OfdStructureError(f"{what} is not in an ASCII-compatible encoding such as UTF-8 (or holds a NUL byte)")
    if b"<!" in data:   # anywhere: comments and processing instructions may stand before a DOCTYPE
        upper = data.upper()
        if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
            raise OfdStructureError(f"{what}: DTDs and entities are not allowed")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise OfdStructureError(f"{what} is not well-formed XML: {exc}") from exc
    except (LookupError, ValueError) as exc:  # an encoding expat cannot read: unknown ("TF-8"), not a text
        # codec ("rot13"), multi-byte ("UTF-32") -- a defect of the package, not of this gateway
        raise OfdStructureError(f"{what} declares an XML encoding that cannot be read: {exc}") from None


_LOCAL_NAMES: dict[str, str] = {}  # tag -> local name (tags are few and recur; bounded)
#: longest tag :func:`local` remembers: a tag comes from the presenter's XML, parsed before any signature
#: is checked (4,096 kept 1-MB element names would hold 4 GB, and for good); an OFD tag with its
#: namespace is ~40 characters
_LOCAL_NAME_MAX_CHARS = 256


def local(tag: str) -> str:
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1]
        if len(_LOCAL_NAMES) < 4096 and len(tag) <= _LOCAL_NAME_MAX_CHARS:
            _LOCAL_NAMES[tag] = name
    return name


def child(elem: ET.Element, name: str) -> ET.Element | None:
    for c in elem:
        if local(c.tag) == name:
            return c
    return None


def children(elem: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in elem if local(c.tag) == name]


def text(elem: ET.Element | None) -> str:
    return (elem.text or "").strip() if elem is not None else ""


def resolve(base_dir: str, loc: str) -> str:
    """Resolve an OFD location (absolute ``/a/b`` or relative to ``base_dir``) to a
    package path without a leading slash; refuses anything escaping the package."""
    if (loc[:1] == "/" and len(loc) > 1 and "//" not in loc and "/." not in loc and "\\" not in loc
            and "\x00" not in loc and loc[-1] != "/" and not loc[-1].isspace() and not loc[1].isspace()):
        return loc[1:]  # already a normal absolute path: what normpath would return
    loc = loc.strip()
    if not loc or "\\" in loc or "\x00" in loc:
        raise UnsafeEntryNameError(f"bad location {loc!r}")
    joined = loc[1:] if loc.startswith("/") else posixpath.join(base_dir, loc)
    norm = posixpath.normpath(joined)
    if norm.startswith("..") or norm.startswith("/") or norm in (".", ""):
        raise UnsafeEntryNameError(f"location {loc!r} escapes the package")
    return norm


@dataclass(frozen=True)
class SignatureEntry:
    """One ``Signatures/Signature`` entry."""

    id: str
    type: str  # "Seal" (default) or "Sign"
    path: str  # package path of its Signature.xml


@dataclass(frozen=True, slots=True)
class Reference:
    file_ref: str  # as written
    path: str  # resolved package path
    check_value: bytes | None  # None when the base64 is invalid


@dataclass(frozen=True, slots=True)
class SignatureXml:
    provider: dict[str, str]
    signature_method: str
    signature_datetime: str
    check_method: str
    references: tuple[Reference, ...]
    seal_path: str | None
    signed_value_path: str


#: ``Reference(...)`` / ``SignatureXml(...)`` with every field positional (the fast reader's hot path)
_make_reference = positional_builder(Reference)
_make_signature_xml = positional_builder(SignatureXml)


def find_signatures_xml(ofd_xml: bytes) -> list[str]:
    """Package paths of the Signatures.xml of every DocBody in OFD.xml."""
    plain = _find_signatures_xml_plain(ofd_xml)
    if plain is not None:
        return plain
    return _find_signatures_xml_tree(ofd_xml)


# --- the plain OFD.xml fast path -----------------------------------------------------------
# OFD.xml as producers write it for one document (the simulator, ofdrw): ASCII, the OFD namespace
# bound to one prefix on the root, one DocBody holding DocInfo (simple text elements only), DocRoot
# and an optional Signatures, no comment, CDATA, DTD, processing instruction or character reference
# (the five predefined entities are allowed in DocInfo, which is not read). For exactly that shape a
# regular expression finds the Signatures location; anything else -- several DocBody elements,
# nested DocInfo data, any defect -- returns None and the ElementTree reader (the reference) decides.
_INFO_TXT = (rb"[^<&\r\x00-\x08\x0b\x0c\x0e-\x1f]*(?:&(?:amp|lt|gt|quot|apos);"
             rb"[^<&\r\x00-\x08\x0b\x0c\x0e-\x1f]*)*")
_PLAIN_OFD = re.compile(
    rb'(?:<\?xml version="1\.0" encoding="UTF-8"\?>[ \t\r\n]*)?'
    rb"<(?P<p>[A-Za-z_][A-Za-z0-9_.\-]*):OFD xmlns:(?P=p)=\"http://www\.ofdspec\.org/2016\""
    rb"(?P<attrs>(?:[ \t\n]+[A-Za-z_][A-Za-z0-9_.\-]*=\"[^\"<&\x00-\x1f]*\")*)[ \t\n]*>[ \t\r\n]*"
    rb"<(?P=p):DocBody>[ \t\r\n]*"
    rb"<(?P=p):DocInfo>(?:[ \t\r\n]*<(?P=p):(?P<n>[A-Za-z_][A-Za-z0-9_.\-]*)>" + _INFO_TXT
    + rb"</(?P=p):(?P=n)>)*[ \t\r\n]*</(?P=p):DocInfo>[ \t\r\n]*"
    rb"<(?P=p):DocRoot>[^<&\r\x00-\x08\x0b\x0c\x0e-\x1f]*</(?P=p):DocRoot>[ \t\r\n]*"
    rb"(?:<(?P=p):Signatures>(?P<sig>[^<&\r\x00-\x08\x0b\x0c\x0e-\x1f]*)</(?P=p):Signatures>[ \t\r\n]*)?"
    rb"</(?P=p):DocBody>[ \t\r\n]*</(?P=p):OFD>[ \t\r\n]*")


_PLAIN_ATTR_NAME = re.compile(rb'([A-Za-z_][A-Za-z0-9_.\-]*)="')
#: in a plain attribute list, a name starting with "xml" (any case): a declaration or a reserved
#: name. It may also hit inside a value (" xml..."): then the reference reader decides, harmlessly
_XML_ATTR_NAME_B = re.compile(rb"(?:^|[ \t\n])[Xx][Mm][Ll]")


def _find_signatures_xml_plain(ofd_xml: bytes) -> list[str] | None:
    if not ofd_xml.isascii() or b"]]>" in ofd_xml:
        return None
    m = _PLAIN_OFD.fullmatch(ofd_xml)
    if m is None or m["p"][:3].lower() == b"xml":
        return None
    if m["attrs"]:  # not read, but a duplicate is an XML error and xmlns* a declaration: the reference decides
        attrs = m["attrs"]
        names = _PLAIN_ATTR_NAME.findall(attrs)
        if len(set(names)) != len(names) or _XML_ATTR_NAME_B.search(attrs) is not None:
            return None
    loc = m["sig"].decode("ascii").strip() if m["sig"] is not None else ""
    if not loc:
        return []
    try:
        return [resolve("", loc)]
    except UnsafeEntryNameError:  # the reference reader words it
        return None


def _find_signatures_xml_tree(ofd_xml: bytes) -> list[str]:
    root = parse_xml(ofd_xml, "OFD.xml")
    if local(root.tag) != "OFD":
        raise OfdStructureError("OFD.xml root element is not OFD")
    out = []
    for body in children(root, "DocBody"):
        sig = child(body, "Signatures")
        if sig is not None and text(sig):
            out.append(resolve("", text(sig)))
    return out


#: parsed Signatures.xml by (bytes, path): one issuer's packages carry the same one (bounded in entries
#: and in bytes: only parts up to _SIGNATURES_MAX_BYTES are kept -- the part is the presenter's, read
#: before any signature is checked, and 256 kept 8-MB parts would hold 2 GB; a real one is ~250 bytes)
_SIGNATURES: dict[tuple[bytes, str], tuple[SignatureEntry, ...]] = {}
_SIGNATURES_MAX_BYTES = 16 * 1024


def parse_signatures_xml(data: bytes, path: str) -> list[SignatureEntry]:
    key = (data, path)
    hit = _SIGNATURES.get(key)
    if hit is None:
        hit = tuple(_parse_signatures_xml(data, path))
        if len(data) <= _SIGNATURES_MAX_BYTES:
            if len(_SIGNATURES) >= 256:
                _SIGNATURES.clear()
            _SIGNATURES[key] = hit
    return list(hit)


def _parse_signatures_xml(data: bytes, path: str) -> list[SignatureEntry]:
    root = parse_xml(data, path)
    if local(root.tag) != "Signatures":
        raise OfdStructureError(f"{path}: root element is not Signatures")
    base = posixpath.dirname(path)
    entries = []
    for sig in children(root, "Signature"):
        loc = sig.get("BaseLoc")
        if not loc:
            raise OfdStructureError(f"{path}: a Signature has no BaseLoc")
        entries.append(SignatureEntry(id=sig.get("ID", ""), type=sig.get("Type", "Seal"), path=resolve(base, loc)))
    if len(entries) > MAX_SIGNATURES:
        raise OfdStructureError(f"{path}: more than {MAX_SIGNATURES} signatures")
    return entries


# --- the plain Signature.xml fast path ---------------------------------------------------
# Signature.xml as signers write it (the simulator, ofdrw): ASCII, the OFD namespace bound to one
# prefix on the root, the elements in the standard's order, no entity or character references,
# no comments, CDATA or DTD, double-quoted attributes. For exactly that shape a regular expression
# reads it in a few microseconds; anything else -- including every defect -- returns None and the
# ElementTree reader below (the reference: its errors, its reading) decides.
_WS = rb"[ \t\r\n]*"
#: element text: no markup, no references, no CR (XML would normalise it), no control character XML forbids
_TXT = rb"[^<&\r\x00-\x08\x0b\x0c\x0e-\x1f]*"
_ATTRS = rb"((?:[ \t\n]+[A-Za-z_][A-Za-z0-9_.\-]*=\"[^\"<&\x00-\x1f]*\")*)[ \t\n]*"
_P = rb"(?P=p):"
_PLAIN_SIGNATURE = re.compile(
    rb'(?:<\?xml version="1\.0" encoding="UTF-8"\?>' + _WS + rb")?"
    rb"<(?P<p>[A-Za-z_][A-Za-z0-9_.\-]*):Signature xmlns:(?P=p)=\"http://www\.ofdspec\.org/2016\">" + _WS
    + rb"<" + _P + rb"SignedValue>(?P<sv>" + _TXT + rb")</" + _P + rb"SignedValue>" + _WS
    + rb"<" + _P + rb"SignedInfo>" + _WS
    + rb"(?:<" + _P + rb"Provider(?P<prov>" + _ATTRS + rb")/>" + _WS + rb")?"
    + rb"<" + _P + rb"SignatureMethod>(?P<sm>" + _TXT + rb")</" + _P + rb"SignatureMethod>" + _WS
    + rb"<" + _P + rb"SignatureDateTime>(?P<dt>" + _TXT + rb")</" + _P + rb"SignatureDateTime>" + _WS
    + rb"(?:<" + _P + rb"Seal>" + _WS + rb"<" + _P + rb"BaseLoc>(?P<seal>" + _TXT + rb")</" + _P + rb"BaseLoc>"
    + _WS + rb"</" + _P + rb"Seal>" + _WS + rb")?"
    + rb"(?P<stamps>(?:<" + _P + rb"StampAnnot" + _ATTRS + rb"/>" + _WS + rb")*)"
    + rb"<" + _P + rb'References CheckMethod="(?P<cm>[^"<&\x00-\x1f]*)"[ \t\n]*>'
    + rb"(?P<refs>(?:" + _WS + rb"<" + _P + rb'Reference FileRef="[^"<&\x00-\x1f]+"[ \t\n]*>' + _WS
    + rb"<" + _P + rb"CheckValue>" + _TXT + rb"</" + _P + rb"CheckValue>" + _WS + rb"</" + _P + rb"Reference>)*)"
    + _WS + rb"</" + _P + rb"References>" + _WS
    + rb"</" + _P + rb"SignedInfo>" + _WS + rb"</" + _P + rb"Signature>" + _WS)


def _plain_attrs(raw: bytes) -> dict[str, str] | None:
    text = raw.decode("ascii")
    pairs = _PLAIN_ATTR_TEXT.findall(text)
    out = dict(pairs)
    if len(out) != len(pairs) or _XML_ATTR_NAME.search(text) is not None:
        return None  # a duplicate attribute (an XML error) or a namespace declaration: the reference decides
    return out


#: _plain_attrs of a Provider's attribute text, by that text: it names the signing software
#: (ProviderName, Company, Version), the same on every package one signer writes; pure, bounded
#: (cleared when full), None (a duplicate or xml* name) kept too. Never keyed by a licence's data.
_PROVIDER_CACHE_SIZE = 256
#: longest Provider attribute text kept (a real one is ~80 bytes; the text is read before any signature
#: is checked, and 256 kept 8-MB texts would hold 2 GB)
_PROVIDER_MAX_BYTES = 1024
_PROVIDERS: dict[bytes, dict[str, str] | None] = {}


def _provider_attrs(raw: bytes) -> dict[str, str] | None:
    try:
        return _PROVIDERS[raw]
    except KeyError:
        pass
    attrs = _plain_attrs(raw)
    if len(raw) <= _PROVIDER_MAX_BYTES:
        if len(_PROVIDERS) >= _PROVIDER_CACHE_SIZE:
            _PROVIDERS.clear()
        _PROVIDERS[raw] = attrs
    return attrs


_PLAIN_ATTR_TEXT = re.compile(r'([A-Za-z_][A-Za-z0-9_.\-]*)="([^"]*)"')
#: an attribute name starting with "xml" (any case): a declaration or a reserved name. It may also
#: hit inside a value (" xml" in Company="..."): then the reference reader decides, harmlessly
_XML_ATTR_NAME = re.compile(r"(?:^|[ \t\n])[Xx][Mm][Ll]")


_PLAIN_REFERENCE_TEXT = re.compile(r'FileRef="([^"]+)"[ \t\n]*>[ \t\r\n]*<[^>]+>([^<]*)<')
#: base64 text as the References' fast regular expression takes it (``_NORMAL_REFERENCE_TEXT``)
_B64_VALIDATE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _b64_strict(text: str) -> bytes:
    """``base64.b64decode(text, validate=True)``, as the ElementTree reader decodes a CheckValue: on
    Python 3.11 that is ``a2b_base64`` in strict mode, which also refuses superfluous or misplaced
    padding (``...Po==`` where one "=" is due, a lone "="), not only characters outside the alphabet.
    Before session 16 the fast paths decoded without strict mode and read such a value as its
    digest where the reference reader found none."""
    return binascii.a2b_base64(text, strict_mode=True)


#: an absolute location :func:`resolve` returns unchanged but for the slash (plain segments, none
#: starting with a dot: no '', '.', '..')
_NORMAL_ABS = re.compile(r"/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*")


#: one Reference whose FileRef is a normal absolute location and whose CheckValue is bare base64
#: (no surrounding space): what :func:`_plain_references` reads without resolve() and strip(). It
#: starts at the Reference tag's "<", which a CheckValue text cannot contain, so it never matches
#: inside one
_NORMAL_REFERENCE_TEXT = re.compile(
    r'<[A-Za-z_][A-Za-z0-9_.\-]*:Reference FileRef="(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*)"'
    r"[ \t\n]*>[ \t\r\n]*<[^>]+>([A-Za-z0-9+/]*={0,2})<")


def _plain_references(refs_text: str) -> list[Reference]:
    """The References of a plain Signature.xml (its ASCII text); :func:`resolve`'s errors propagate."""
    normal = _NORMAL_REFERENCE_TEXT.findall(refs_text)
    # in the plain shape each Reference has exactly four tags and its texts no "<": when every one
    # of them is normal, the locations need no resolve() and the values no strip() (same answers)
    if len(normal) << 2 == refs_text.count("<"):
        a2b, make = _b64_strict, _make_reference
        try:
            return [make(file_ref, file_ref[1:], a2b(check)) for file_ref, check in normal]
        except binascii.Error:  # e.g. bad padding: as base64.b64decode(validate=True), no value
            pass
        out = []
        for file_ref, check in normal:
            try:
                out.append(make(file_ref, file_ref[1:], a2b(check)))
            except binascii.Error:
                out.append(make(file_ref, file_ref[1:], None))
        return out
    out = []
    abs_ok = _NORMAL_ABS.fullmatch
    for file_ref, check in _PLAIN_REFERENCE_TEXT.findall(refs_text):
        check = check.strip()
        try:
            value: bytes | None = _b64_strict(check)
        except binascii.Error:   # outside the alphabet, or padded wrongly: no value, as the tree reader
            value = None
        out.append(_make_reference(file_ref, file_ref[1:] if abs_ok(file_ref) is not None else resolve("", file_ref),
                                   value))
    return out


def path_memo(derive: Callable[[str], str], size: int = 256) -> Callable[[str], str]:
    """``derive`` remembered by path: for pure path arithmetic on the few package paths a
    Signatures.xml names (the same on every licence one signer writes; no licence data is kept).
    A hit is one dict read; the dict (``.items`` of the returned function) is cleared when it
    holds ``size``."""
    items: dict[str, str] = {}

    def memo(path: str) -> str:
        hit = items.get(path)
        if hit is None:
            if len(items) >= size:
                items.clear()
            hit = items[path] = derive(path)
        return hit

    memo.items = items  # type: ignore[attr-defined]
    return memo


#: the folder of a Signature.xml path (its References are resolved against it)
_base_dir = path_memo(posixpath.dirname)


def _parse_signature_xml_plain(data: bytes, path: str) -> SignatureXml | None:
    if not data.isascii() or b"]]>" in data:
        return None
    m = _PLAIN_SIGNATURE.fullmatch(data)
    if m is None or m["p"][:3].lower() == b"xml":
        return None
    if m["stamps"]:  # not read, but a duplicate attribute is an XML error, xmlns* a declaration
        for tag in m["stamps"].split(b"/>")[:-1]:
            names = _PLAIN_ATTR_NAME.findall(tag)
            if len(set(names)) != len(names) or _XML_ATTR_NAME_B.search(tag) is not None:
                return None
    provider: dict[str, str] = {}
    if m["prov"] is not None:
        attrs = _provider_attrs(m["prov"])
        if attrs is None:
            return None
        provider = dict(attrs)  # each SignatureXml owns its dictionary
    signed_value = m["sv"].decode("ascii").strip()
    if not signed_value:
        return None
    base = _base_dir(path)
    try:
        refs = _plain_references(m["refs"].decode("ascii"))
        if len(refs) > MAX_REFERENCES:
            return None
        seal_loc = m["seal"].decode("ascii").strip() if m["seal"] is not None else ""
        return _make_signature_xml(
            provider,
            m["sm"].decode("ascii").strip(),
            m["dt"].decode("ascii").strip(),
            m["cm"].decode("ascii"),
            tuple(refs),
            resolve(base, seal_loc) if seal_loc else None,
            resolve(base, signed_value),
        )
    except (OfdStructureError, UnsafeEntryNameError):  # e.g. a location escaping the package: the
        return None  # reference reader words it


def parse_signature_xml(data: bytes, path: str) -> SignatureXml:
    plain = _parse_signature_xml_plain(data, path)
    if plain is not None:
        return plain
    return _parse_signature_xml_tree(data, path)


def _parse_signature_xml_tree(data: bytes, path: str) -> SignatureXml:
    root = parse_xml(data, path)
    if local(root.tag) != "Signature":
        raise OfdStructureError(f"{path}: root element is not Signature")
    base = posixpath.dirname(path)
    info = child(root, "SignedInfo")
    if info is None:
        raise OfdStructureError(f"{path}: no SignedInfo")
    signed_value = text(child(root, "SignedValue"))
    if not signed_value:
        raise OfdStructureError(f"{path}: no SignedValue")
    provider_el = child(info, "Provider")
    provider = dict(provider_el.attrib) if provider_el is not None else {}
    refs_el = child(info, "References")
    if refs_el is None:
        raise OfdStructureError(f"{path}: no References")
    refs = []
    for ref in refs_el:
        if local(ref.tag) != "Reference":
            continue
        file_ref = ref.get("FileRef", "")
        if not file_ref:
            raise OfdStructureError(f"{path}: a Reference has no FileRef")
        check_el = None
        for c in ref:
            if local(c.tag) == "CheckValue":
                check_el = c
                break
        try:
            value: bytes | None = base64.b64decode(text(check_el), validate=True)
        except (binascii.Error, ValueError):
            value = None
        # FileRef is an absolute package path by the standard; a relative one is read from the root
        refs.append(Reference(file_ref=file_ref, path=resolve("", file_ref), check_value=value))
    if len(refs) > MAX_REFERENCES:
        raise OfdStructureError(f"{path}: more than {MAX_REFERENCES} references")
    seal_el = child(info, "Seal")
    seal_loc = text(child(seal_el, "BaseLoc")) if seal_el is not None else ""
    return SignatureXml(
        provider=provider,
        signature_method=text(child(info, "SignatureMethod")),
        signature_datetime=text(child(info, "SignatureDateTime")),
        check_method=refs_el.get("CheckMethod", ""),
        references=tuple(refs),
        seal_path=resolve(base, seal_loc) if seal_loc else None,
        signed_value_path=resolve(base, signed_value),
    )


_DT_FORMATS: Final = ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y%m%d%H%M%SZ",
                      "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S.%f")


#: OFD_LOCAL_TZ's offset from UTC
_OFD_LOCAL_OFFSET: Final = timedelta(hours=8)


def parse_signature_datetime(value: str) -> datetime | None:
    """OFD SignatureDateTime (no zone: Beijing time; a trailing Z: UTC). None if unreadable."""
    value = value.strip()
    if (len(value) == 19 and value[4] == value[7] == "-" and value[10] == " " and value[13] == value[16] == ":"
            and value.isascii() and (value[:4] + value[5:7] + value[8:10] + value[11:13] + value[14:16]
                                     + value[17:]).isdigit()):
        try:  # the common "%Y-%m-%d %H:%M:%S", without strptime: for exactly that shape (checked
            # above: ASCII digits, fixed separators) fromisoformat reads the same fields in C, and raises
            # ValueError on an impossible date or time as strptime does. Beijing time is UTC+8 (no
            # DST), so the UTC instant is the same fields read as UTC minus eight hours (as astimezone)
            return datetime.fromisoformat(value).replace(tzinfo=timezone.utc) - _OFD_LOCAL_OFFSET
        except ValueError:
            pass
        except OverflowError:  # 0001-01-01 00:00:00 .. 07:59:59 Beijing time: before year 1 in UTC
            return None
    for fmt in _DT_FORMATS:
        try:
            dt = datetime.strptime(value, fmt)
        except ValueError:
            continue
        tz = timezone.utc if value.endswith("Z") else OFD_LOCAL_TZ
        try:
            return dt.replace(tzinfo=tz).astimezone(timezone.utc)
        except OverflowError:  # as above: a Beijing time whose UTC instant falls before year 1
            return None
    return None
