"""Format family ``sm2-xml``: licence data as XML (UTF-8 or GB 18030) with an SM2-with-SM3 signature.

The project's model of the XML interfaces of the Jiangsu and Anhui licence platforms (their
real interface documents are not available; the layout is recorded in each region spec)::

    <?xml version="1.0" encoding="GB18030"?>
    <ElectronicLicence xmlns="urn:elicence:sm2-xml:1">
      <Data>
        <zzbs>1.2.156.3005.2....</zzbs> ... <zmxx><birth_date>...</birth_date></zmxx> <qmsj>...</qmsj>
      </Data>
      <SignatureValue alg="SM2-with-SM3" region="320200" serial="..." encoding="der">base64</SignatureValue>
    </ElectronicLicence>

The text encoding is the region spec's ``text_encoding`` and is declared in the XML prolog
(UTF-8 when there is no prolog); only UTF-8 and GB 18030 are read.

**Signed bytes**: not the XML text but the *data*: the children of ``<Data>`` as a JSON
object ``{element name: text}`` (the surface container as a nested object), serialised
exactly as :func:`adapters.sm2_json.canonical_bytes` (orjson, keys sorted, UTF-8, no
whitespace). So the signature is independent of the file's encoding, namespace prefixes
and indentation, and it covers precisely the values the gateway reads. Element text is
taken verbatim (not stripped); every value is text.

**Hardened parsing**: the bytes are decoded by the declared codec (strictly) and the XML
is refused if it contains a DOCTYPE or ENTITY declaration (no entity expansion, no external
fetch), attributes or non-blank text where only elements belong, duplicate field
elements, nesting deeper than the surface container, or more than :data:`MAX_ELEMENTS`
elements. Parsing uses the standard library's ``xml.etree`` after those checks. The root
takes no attributes (its namespace declaration is not one) and every element inside ``<Data>``
is in the licence namespace: the signed form names fields by their local name, so a field
moved to another namespace (another element, to any namespace-aware reader) or an attribute on
the root would be content the signature does not cover.

**Writing**: a carriage return in a value is written as the reference ``&#13;``: XML readers
turn a literal CR (and CR LF) into LF, so the value read back -- and verified -- would differ
from the one signed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any, Mapping
from xml.sax.saxutils import escape, quoteattr

from gateway import errors
from gateway.errors import LicenceRejected, shown
from gateway.specs import RegionSpec
from gateway.trust import CertInfo

from .base import Envelope, KeyRef, Limits, SigningKey
from .sm2_json import (
    DEFAULT_SIGNING_TIME_FIELD,
    NO_EXTRA,
    canonical_bytes,
    decode_signature_value,
    format_signing_time,
    key_ref_from,
    make_envelope,
    pop_signing_time,
    sign_bytes,
    signature_block,
    split_signing_time,
    verify_sm2,
)

NS = "urn:elicence:sm2-xml:1"
_NS_BYTES = NS.encode()
_NS_TAG = "{" + NS + "}"
ROOT = "ElectronicLicence"
MAX_ELEMENTS = 512
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gb18030": "gb18030"}
_PROLOG = re.compile(rb"^\s*<\?xml\s[^>]{0,200}?\?>")
_ENC_ATTR = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]{1,20})["']""")
_NAME = re.compile(r"^[^\W\d][\w.\-]{0,63}\Z")
_FORBIDDEN = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


# --- hardened reading ------------------------------------------------------------------
def decode_xml(data: bytes, what: str = "XML") -> str:
    """Bytes -> text by the prolog's declared encoding (UTF-8 or GB 18030 only), prolog removed."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    encoding = "utf-8"
    m = _PROLOG.match(data)
    if m:
        enc = _ENC_ATTR.search(m.group(0))
        if enc:
            name = enc.group(1).decode("ascii").lower()
            if name not in ENCODINGS:
                raise LicenceRejected(errors.UNSUPPORTED_FORMAT, f"{what} encoding {name!r} is not UTF-8 or GB18030")
            encoding = ENCODINGS[name]
        data = data[m.end():]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise LicenceRejected(errors.MALFORMED, f"{what} is not valid {encoding}") from None
    if "<!" in text and _FORBIDDEN.search(text):
        raise LicenceRejected(errors.MALFORMED, f"{what}: DOCTYPE and ENTITY declarations are not allowed")
    return text


def prolog(encoding: str) -> str:
    return f'<?xml version="1.0" encoding="{encoding.upper()}"?>\n'


#: the prologs the simulator and issuers write (:func:`prolog`, without its newline) and the codec
#: each declares: after exactly one of these, decode_xml's prolog scan has one answer
_PLAIN_PROLOGS = tuple((prolog(enc).rstrip("\n").encode("ascii"), codec)
                       for enc, codec in (("utf-8", "utf-8"), ("gb18030", "gb18030")))


def plain_text(data: bytes) -> str | None:
    """``decode_xml(data)`` for bytes opening with a plain prolog and holding no ``<!``; None for
    anything else (decode_xml then decides, and words any error)."""
    for head, codec in _PLAIN_PROLOGS:
        if data.startswith(head):
            try:
                text = data[len(head):].decode(codec)
            except UnicodeDecodeError:
                return None
            return None if "<!" in text else text
    return None


def parse_hardened(data: bytes, what: str = "XML") -> ET.Element:
    text = decode_xml(data, what)
    if text.count("<") > 2 * MAX_ELEMENTS:  # every element needs a start and an end (or one empty) tag
        raise LicenceRejected(errors.MALFORMED, f"{what} has more than {MAX_ELEMENTS} elements")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise LicenceRejected(errors.MALFORMED, f"{what} is not well-formed: {exc}") from None


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _no_stray_text(text: str | None, where: str) -> None:
    if text is not None and text.strip():
        raise LicenceRejected(errors.MALFORMED, f"unexpected text in {where}")


def data_from_element(data_el: ET.Element, what: str) -> dict[str, Any]:
    """``<Data>`` -> {name: text | {name: text}}; duplicates, attributes and deep nesting refused."""
    if data_el.attrib:
        raise LicenceRejected(errors.MALFORMED, f"{what}: <Data> takes no attributes")
    _no_stray_text(data_el.text, f"{what} <Data>")
    out: dict[str, Any] = {}
    for el in data_el:
        name = local(el.tag)
        if name in out:
            raise LicenceRejected(errors.MALFORMED, f"{what}: field {name} appears twice")
        if el.attrib:
            raise LicenceRejected(errors.MALFORMED, f"{what}: field {name} takes no attributes")
        _no_stray_text(el.tail, f"{what} after {name}")
        if len(el):
            _no_stray_text(el.text, f"{what} {name}")
            sub: dict[str, str] = {}
            for s in el:
                sname = local(s.tag)
                if sname in sub:
                    raise LicenceRejected(errors.MALFORMED, f"{what}: field {name}/{sname} appears twice")
                if len(s) or s.attrib:
                    raise LicenceRejected(errors.MALFORMED, f"{what}: field {name}/{sname} must be plain text")
                _no_stray_text(s.tail, f"{what} after {name}/{sname}")
                sub[sname] = s.text or ""
            out[name] = sub
        else:
            out[name] = el.text or ""
    return out


# --- the plain-document fast path --------------------------------------------------------
# Licences as issuers write them use a small subset of XML: unprefixed elements, no attributes
# in <Data>, text without markup, entities, CDATA or comments. For text entirely within that
# subset the fields are read with one tokenising regex -- the same dictionary as ET +
# data_from_element would give. Anything outside it (or any defect) returns None and goes
# through the hardened ElementTree path, whose results and errors are the reference.
_FNAME = r"[A-Za-z_\u4e00-\u9fa5][A-Za-z0-9_.\-\u4e00-\u9fa5]{0,63}"
#: character data XML reads verbatim: no markup, no references, no CR (line-end normalised),
#: no characters XML forbids
_FTEXT = r"[^<&\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]*"
_FTOKEN = re.compile(rf"<({_FNAME})>({_FTEXT})</\1>|<({_FNAME})>|</({_FNAME})>|([ \t\n]+)")
_FATTR = re.compile(r' ([A-Za-z]{1,16})="([^"<&\s]{0,200})"')


def fast_data(inner: str) -> dict[str, Any] | None:
    """The content of a plain ``<Data>`` element -> fields, or None (use the ElementTree path)."""
    if "]]>" in inner:
        return None
    tokens = _FTOKEN.findall(inner)
    covered = 0  # matches never overlap: if they cover every character, they are the whole text
    out: dict[str, Any] = {}
    sub: dict[str, str] | None = None
    sub_name = ""
    for leaf, value, opening, closing, space in tokens:
        if leaf:
            covered += 2 * len(leaf) + 5 + len(value)
            target = sub if sub is not None else out
            if leaf in target:
                return None
            target[leaf] = value
        elif opening:
            covered += len(opening) + 2
            if sub is not None or opening in out:
                return None  # deeper than one container, or a duplicate
            sub, sub_name = {}, opening
        elif closing:
            covered += len(closing) + 3
            if sub is None or closing != sub_name:
                return None
            out[sub_name] = sub if sub else ""  # an empty container is an empty text field, as in ET
            sub = None
        else:
            covered += len(space)
    if covered != len(inner) or sub is not None or len(out) > MAX_ELEMENTS:
        return None
    return out


def data_block(text: str) -> tuple[str, str, str] | None:
    """(before ``<Data>``, its content, after ``</Data>``) of a document's text, or None."""
    start = text.find("<Data>")
    end = text.rfind("</Data>")
    if start < 0 or end < start + 6:
        return None
    return text[:start], text[start + 6:end], text[end + 7:]


_FHEAD = re.compile(rf"[ \t\n]*<{ROOT} xmlns=\"{re.escape(NS)}\">[ \t\n]*")
_FTAIL = re.compile(
    r"[ \t\n]*<SignatureValue((?: [A-Za-z]{1,16}=\"[^\"<&\s]{0,200}\")*)>([A-Za-z0-9+/= \t\n]*)</SignatureValue>"
    rf"[ \t\n]*</{ROOT}>[ \t\n]*")


def _fast_document(text: str) -> tuple[dict[str, Any], str, str] | None:
    """(fields, the <SignatureValue> attribute text, its content) of a plain document, or None."""
    block = data_block(text)
    if block is None:
        return None
    head, inner, tail = block
    m = _FTAIL.fullmatch(tail)
    if m is None or _FHEAD.fullmatch(head) is None:
        return None
    fields = fast_data(inner)
    if fields is None:
        return None
    return fields, m.group(1), m.group(2)


def _fast_attrs(attr_text: str) -> dict[str, str] | None:
    """The attributes of a plain <SignatureValue> (their text), or None for a duplicate."""
    attrs: dict[str, str] = {}
    for name, value in _FATTR.findall(attr_text):
        if name in attrs:
            return None
        attrs[name] = value
    return attrs


_SIGNATURE_ATTRS = frozenset({"alg", "region", "serial", "kid", "encoding"})
#: the signer reference of a plain <SignatureValue>, by its attribute text: one issuer key writes
#: the same attributes (alg, region, serial or kid, encoding) on every licence, so each distinct
#: text is read and checked once. Only accepted texts are kept (bounded, cleared when full); the
#: key is the issuer's reference, never a licence's data or signature.
_KEY_REF_CACHE_SIZE = 1024
_KEY_REFS: dict[str, KeyRef] = {}


def _key_ref_of(attrs: dict[str, str]) -> KeyRef:
    """KeyRef of <SignatureValue>'s attributes (LicenceRejected as the reference path words it)."""
    key_ref = key_ref_from(attrs)
    unknown = set(attrs) - _SIGNATURE_ATTRS
    if unknown:
        raise LicenceRejected(errors.MALFORMED, f"<SignatureValue> has unexpected content {sorted(unknown)}")
    return key_ref


# --- writing ---------------------------------------------------------------------------
def as_text_data(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The region fields with every value as text (what XML can carry and what is signed)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        _check_name(key)
        if isinstance(value, Mapping):
            out[key] = {_check_name(k): str(v) for k, v in value.items()}
        else:
            out[key] = str(value)
    return out


def _check_name(name: str) -> str:
    if not _NAME.match(name) or name.lower().startswith("xml"):
        raise ValueError(f"{name!r} cannot be an XML element name")
    return name


#: besides & < >: a CR, which XML readers would turn into LF (XML 1.0 2.11)
_ESCAPE_CR = {"\r": "&#13;"}


def data_xml(data: Mapping[str, Any]) -> str:
    parts = ["<Data>"]
    for key, value in data.items():
        if isinstance(value, Mapping):
            inner = "".join(f"<{k}>{escape(v, _ESCAPE_CR)}</{k}>" for k, v in value.items())
            parts.append(f"<{key}>{inner}</{key}>")
        else:
            parts.append(f"<{key}>{escape(value, _ESCAPE_CR)}</{key}>")
    parts.append("</Data>")
    return "".join(parts)


def signed_document(data: Mapping[str, Any], spec: RegionSpec, key: SigningKey) -> bytes:
    """The licence document of ``data`` (the region's own text fields, its signing time included),
    signed with ``key`` over their canonical form, in the region's text encoding."""
    signature = sign_bytes(key, canonical_bytes(data), spec)
    block = signature_block(spec, key, signature)
    value = block.pop("value")
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in block.items())
    text = (prolog(spec.text_encoding) + f'<{ROOT} xmlns="{NS}">' + data_xml(data)
            + f"<SignatureValue{attrs}>{value}</SignatureValue></{ROOT}>")
    return text.encode(spec.text_encoding)


class Sm2XmlFamily:
    name = "sm2-xml"

    def sniff(self, data: bytes) -> bool:
        head = data[:512]
        return b"<" in head[:64] and _NS_BYTES in head

    def open(self, data: bytes, limits: Limits) -> Envelope:
        if len(data) > limits.max_licence_bytes:
            raise LicenceRejected(errors.MALFORMED, f"licence larger than {limits.max_licence_bytes} bytes")
        text = plain_text(data)
        if text is None:
            text = decode_xml(data, "SM2-XML licence")
        fast = _fast_document(text) if text.count("<") <= 2 * MAX_ELEMENTS else None
        if fast is not None:
            fields, attr_text, value = fast
            key_ref = _KEY_REFS.get(attr_text)
            if key_ref is None:
                attrs = _fast_attrs(attr_text)
                if attrs is not None:
                    key_ref = _key_ref_of(attrs)
                    if len(_KEY_REFS) >= _KEY_REF_CACHE_SIZE:
                        _KEY_REFS.clear()
                    _KEY_REFS[attr_text] = key_ref
            if key_ref is not None:
                signature = decode_signature_value(value.strip())
                signed = canonical_bytes(fields)
                signing_time = pop_signing_time(fields)  # fields is this call's own dictionary
                return make_envelope(self.name, "SM2", key_ref, fields, signing_time, signed, signature, NO_EXTRA)
        root = parse_hardened(data, "SM2-XML licence")
        if root.tag != f"{{{NS}}}{ROOT}":
            raise LicenceRejected(errors.UNSUPPORTED_FORMAT, f"root element {root.tag!r} is not {{{NS}}}{ROOT}")
        if root.attrib:
            raise LicenceRejected(errors.MALFORMED, "the root element takes no attributes")
        _no_stray_text(root.text, "the root element")
        children = list(root)
        if [local(c.tag) for c in children] != ["Data", "SignatureValue"] or any(c.tag[1:].split("}")[0] != NS
                                                                                 for c in children):
            raise LicenceRejected(errors.MALFORMED, "the root must hold exactly <Data> then <SignatureValue>")
        data_el, sig_el = children
        for c in children:
            _no_stray_text(c.tail, f"after <{local(c.tag)}>")
        fields = data_from_element(data_el, "SM2-XML licence")
        for el in data_el.iter():  # <Data> itself and its fields (two levels: data_from_element)
            if not el.tag.startswith(_NS_TAG):
                raise LicenceRejected(errors.MALFORMED, f"SM2-XML licence: field {shown(local(el.tag))} is not in "
                                                        f"the namespace {NS}")
        key_ref = key_ref_from(dict(sig_el.attrib))
        unknown = set(sig_el.attrib) - _SIGNATURE_ATTRS
        if unknown or len(sig_el):
            raise LicenceRejected(errors.MALFORMED, f"<SignatureValue> has unexpected content {sorted(unknown)}")
        signature = decode_signature_value((sig_el.text or "").strip())
        signed = canonical_bytes(fields)
        raw, signing_time = split_signing_time(fields)
        return Envelope(self.name, "SM2", key_ref, raw, signing_time, signed_bytes=signed, signature=signature)

    def verify(self, env: Envelope, cert: CertInfo) -> bool:
        return verify_sm2(env, cert)

    def encode(self, raw: Mapping[str, Any], spec: RegionSpec, key: SigningKey, signing_time: datetime) -> bytes:
        data = as_text_data(raw)
        data[spec.options.get("signing_time_field", DEFAULT_SIGNING_TIME_FIELD)] = format_signing_time(signing_time)
        return signed_document(data, spec, key)

    def tamper(self, data: bytes) -> bytes:
        """Simulator: change the holder's name (a value, not the markup) after signing."""
        text = decode_xml(data)
        enc = _ENC_ATTR.search(_PROLOG.match(data).group(0)).group(1).decode().lower()  # type: ignore[union-attr]
        start = text.index("<Data>") + len("<Data>")
        first_close = text.index("</", start)
        value_start = text.index(">", start) + 1
        text = text[:value_start] + "甲" + text[value_start:first_close] + text[first_close:]
        return (prolog(enc) + text).encode(ENCODINGS[enc])

    def malformed(self, data: bytes) -> bytes:
        """Simulator: XML cut short in transit (not well-formed)."""
        return data[: len(data) * 2 // 3]


__all__ = ["NS", "Sm2XmlFamily", "data_from_element", "data_xml", "parse_hardened", "as_text_data", "plain_text",
           "prolog"]
