"""The OFD XML parts a signature check reads: OFD.xml, Signatures.xml, Signature.xml.

Elements are matched by local name, so the OFD namespace
(``http://www.ofdspec.org/2016``) may be bound to any prefix or be the default. DTDs
are refused outright (no entity expansion, no external fetch): OFD never needs one.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final

from adapters.ofd.errors import OfdStructureError, UnsafeEntryNameError

OFD_NS: Final = "http://www.ofdspec.org/2016"
#: OFD SignatureDateTime carries no zone; producers write Beijing time (UTC+8), as the
#: ofdrw vector shows (19:45:37 in XML, 11:45:37Z in the SES timeInfo).
OFD_LOCAL_TZ: Final = timezone(timedelta(hours=8))
MAX_SIGNATURES: Final = 64
MAX_REFERENCES: Final = 2000


def parse_xml(data: bytes, what: str) -> ET.Element:
    if b"<!" in data and (b"<!DOCTYPE" in data[:4096].upper() or b"<!ENTITY" in data.upper()):
        raise OfdStructureError(f"{what}: DTDs and entities are not allowed")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise OfdStructureError(f"{what} is not well-formed XML: {exc}") from exc


_LOCAL_NAMES: dict[str, str] = {}  # tag -> local name (tags are few and recur; bounded)


def local(tag: str) -> str:
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1]
        if len(_LOCAL_NAMES) < 4096:
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


@dataclass(frozen=True)
class Reference:
    file_ref: str  # as written
    path: str  # resolved package path
    check_value: bytes | None  # None when the base64 is invalid


@dataclass(frozen=True)
class SignatureXml:
    provider: dict[str, str]
    signature_method: str
    signature_datetime: str
    check_method: str
    references: tuple[Reference, ...]
    seal_path: str | None
    signed_value_path: str


def find_signatures_xml(ofd_xml: bytes) -> list[str]:
    """Package paths of the Signatures.xml of every DocBody in OFD.xml."""
    root = parse_xml(ofd_xml, "OFD.xml")
    if local(root.tag) != "OFD":
        raise OfdStructureError("OFD.xml root element is not OFD")
    out = []
    for body in children(root, "DocBody"):
        sig = child(body, "Signatures")
        if sig is not None and text(sig):
            out.append(resolve("", text(sig)))
    return out


#: parsed Signatures.xml by (bytes, path): one issuer's packages carry the same one (bounded)
_SIGNATURES: dict[tuple[bytes, str], tuple[SignatureEntry, ...]] = {}


def parse_signatures_xml(data: bytes, path: str) -> list[SignatureEntry]:
    key = (data, path)
    hit = _SIGNATURES.get(key)
    if hit is None:
        hit = tuple(_parse_signatures_xml(data, path))
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


def parse_signature_xml(data: bytes, path: str) -> SignatureXml:
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


def parse_signature_datetime(value: str) -> datetime | None:
    """OFD SignatureDateTime (no zone: Beijing time; a trailing Z: UTC). None if unreadable."""
    value = value.strip()
    if (len(value) == 19 and value[4] == value[7] == "-" and value[10] == " " and value[13] == value[16] == ":"
            and value.isascii() and (value[:4] + value[5:7] + value[8:10] + value[11:13] + value[14:16]
                                     + value[17:]).isdigit()):
        try:  # the common "%Y-%m-%d %H:%M:%S", without strptime
            return datetime(int(value[:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]),
                            int(value[14:16]), int(value[17:]), tzinfo=OFD_LOCAL_TZ).astimezone(timezone.utc)
        except ValueError:
            pass
    for fmt in _DT_FORMATS:
        try:
            dt = datetime.strptime(value, fmt)
        except ValueError:
            continue
        tz = timezone.utc if value.endswith("Z") else OFD_LOCAL_TZ
        return dt.replace(tzinfo=tz).astimezone(timezone.utc)
    return None
