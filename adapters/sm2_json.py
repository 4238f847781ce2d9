"""Format family ``sm2-json``: licence data as JSON plus a detached SM2-with-SM3 data signature.

The project's model of the Zhejiang DB33/T 2233 style ("data-level signature over the
licence fields"); the region's real interface document is not available, so the layout
below is modelled and recorded in each region spec (``options``)::

    {"format": "elicence-sm2-json/1",
     "data": {<the region's own fields>, <surface container>: {...}, <signing time field>: "..."},
     "signature": {"alg": "SM2-with-SM3", "region": "330100", "serial": "<hex>" | "kid": "<x5t#S256>",
                   "encoding": "raw" | "der", "value": "<base64>"}}

**Signed bytes** (:func:`canonical_bytes`): the ``data`` object serialised by orjson with
keys sorted (by Unicode code point, which is UTF-8 byte order), UTF-8, no whitespace, no
escaping of non-ASCII characters. Values may only be strings, integers (not booleans) or,
one level down, an object of those: floats (whose text form is not canonical) and deeper
nesting are refused as MALFORMED. The verifier re-serialises what it parsed, so the
signature always covers exactly the data the gateway read.

**No member twice**: an object that names a member twice is refused (MALFORMED), wherever it
is. orjson keeps the last value, other readers keep the first or every one (RFC 8259 4.), so a
presenter could put a forged ``data`` object (or field, or signer reference) before the genuine
one: the gateway would read and verify the genuine one and answer ``valid`` for a document
that other software reads as the forgery. The signature block holds only the members below,
each a string (the XML family's ``<SignatureValue>`` attributes likewise).

**Signing time** lives *inside* the signed data, under ``options.signing_time_field``
(ISO 8601 with a UTC offset). **Signer** is named by certificate serial + region code
(``KeyRef.serial_hex`` + ``region_hint``) or, per spec option ``key_ref = "kid"``, by
certificate thumbprint. **Signature** value is accepted raw ``r || s`` (64 bytes) or DER,
whatever ``encoding`` says; the simulator writes the form in ``options.signature_encoding``.
Signer id: the default ``1234567812345678``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Mapping

import orjson

from gateway import errors
from gateway.crypto.sm2 import sm2_sign, sm2_verify
from gateway.errors import LicenceRejected, shown
from gateway.json_strict import names_a_member_twice
from gateway.model import positional_builder
from gateway.specs import RegionSpec
from gateway.trust import CertInfo

from .base import Envelope, KeyRef, Limits, SigningKey

#: ``Envelope(...)`` with every field given, and the read-only empty extras of a family that has
#: none (shared by sm2-json and sm2-xml; never mutated)
make_envelope = positional_builder(Envelope)
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})

FORMAT_TAG = "elicence-sm2-json/1"
ALG = "SM2-with-SM3"
DEFAULT_SIGNING_TIME_FIELD = "qmsj"  # 签名时间, pinyin initials
#: signing times are written in Beijing time with an explicit offset
BEIJING = timezone(timedelta(hours=8))
MAX_FIELDS = 256
MAX_SIGNATURE_B64 = 200
#: the members a signature block may have (all strings)
SIGNATURE_MEMBERS = frozenset({"alg", "region", "serial", "kid", "encoding", "value"})


def canonical_bytes(data: Mapping[str, Any]) -> bytes:
    """The byte form a data signature covers (see the module docstring)."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def check_data_shape(data: Any, what: str) -> dict[str, Any]:
    """Refuse anything whose canonical form could be ambiguous (MALFORMED)."""
    if not isinstance(data, dict):
        raise LicenceRejected(errors.MALFORMED, f"{what} must be an object")
    if len(data) > MAX_FIELDS:
        raise LicenceRejected(errors.MALFORMED, f"{what} has more than {MAX_FIELDS} fields")
    for key, value in data.items():
        if isinstance(value, dict):
            if len(value) > MAX_FIELDS:
                raise LicenceRejected(errors.MALFORMED, f"{what}.{key} has more than {MAX_FIELDS} fields")
            for sub_key, sub in value.items():
                if not _scalar(sub):
                    raise LicenceRejected(errors.MALFORMED, f"{what}.{key}.{sub_key} must be text or an integer")
        elif not _scalar(value):
            raise LicenceRejected(errors.MALFORMED, f"{what}.{key} must be text, an integer or an object of those")
    return data


def check_signature_members(block: Mapping[str, Any]) -> None:
    """Only the known members, each a short string (MALFORMED): nothing unsigned rides along unread."""
    unknown = set(block) - SIGNATURE_MEMBERS
    if unknown:
        raise LicenceRejected(errors.MALFORMED, f"unknown signature member(s) {shown(sorted(unknown)[0])}"
                                                f"{' ...' if len(unknown) > 1 else ''}")
    encoding = block.get("encoding")
    if encoding is not None and (not isinstance(encoding, str) or len(encoding) > 16):
        raise LicenceRejected(errors.MALFORMED, "signature encoding must be a short string")


def check_no_duplicate_members(text: bytes, doc: dict[str, Any]) -> None:
    """Refuse a text that names a member of some object twice (see the module docstring)."""
    if names_a_member_twice(text, doc):
        raise LicenceRejected(errors.MALFORMED, "a JSON object names the same member twice")


def _scalar(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def format_signing_time(when: datetime) -> str:
    return when.astimezone(BEIJING).replace(microsecond=0).isoformat()


def parse_signing_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise LicenceRejected(errors.MALFORMED, f"signing time {field} must be an ISO 8601 string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise LicenceRejected(errors.MALFORMED, f"signing time {field} = {value!r} is not ISO 8601") from None
    if when.tzinfo is None:
        raise LicenceRejected(errors.MALFORMED, f"signing time {field} = {value!r} carries no UTC offset")
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+08:00: its UTC instant falls before year 1 (or after 9999)
        raise LicenceRejected(errors.MALFORMED, f"signing time {field} = {value!r} is out of range") from None


def decode_signature_value(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > MAX_SIGNATURE_B64:
        raise LicenceRejected(errors.MALFORMED, "signature value must be a short base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise LicenceRejected(errors.MALFORMED, "signature value is not base64") from None


def signature_block(spec: RegionSpec, key: SigningKey, signature: bytes) -> dict[str, str]:
    """The ``signature`` object (shared with sm2-xml, which writes the same facts as attributes)."""
    block = {"alg": ALG, "region": spec.code}
    if spec.options.get("key_ref", "serial") == "kid":
        block["kid"] = key.cert.key_id
    else:
        block["serial"] = key.cert.serial_hex
    block["encoding"] = spec.options.get("signature_encoding", "der")
    block["value"] = base64.b64encode(signature).decode("ascii")
    return block


def key_ref_from(block: Mapping[str, Any]) -> KeyRef:
    """KeyRef from a signature block (JSON object or XML attributes)."""
    if block.get("alg", ALG) != ALG:
        raise LicenceRejected(errors.ALGORITHM_NOT_ALLOWED, f"signature alg {shown(block.get('alg'))} is not {ALG}")
    region, serial, kid = block.get("region"), block.get("serial"), block.get("kid")
    for name, value in (("region", region), ("serial", serial), ("kid", kid)):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 128):
            raise LicenceRejected(errors.MALFORMED, f"signature {name} must be a non-empty short string")
    if serial is not None:
        try:
            int(serial, 16)
        except ValueError:
            raise LicenceRejected(errors.MALFORMED, "signature serial must be hexadecimal") from None
        if region is None:
            raise LicenceRejected(errors.UNKNOWN_ISSUER, "a certificate serial needs the signer's region code")
    if kid is None and serial is None:
        raise LicenceRejected(errors.UNKNOWN_ISSUER, "the signature names no certificate (serial or kid)")
    return KeyRef(kid=kid, serial_hex=serial.lower() if kid is None and serial else None, region_hint=region)


def sign_bytes(key: SigningKey, message: bytes, spec: RegionSpec) -> bytes:
    if key.algorithm != "SM2":
        raise ValueError(f"{spec.family} cannot sign with {key.algorithm}")
    return sm2_sign(key.private_key, message, der=spec.options.get("signature_encoding", "der") != "raw")


def verify_sm2(env: Envelope, cert: CertInfo) -> bool:
    return env.algorithm == "SM2" == cert.algorithm and sm2_verify(cert.public_key, env.signed_bytes, env.signature)


class Sm2JsonFamily:
    name = "sm2-json"

    def sniff(self, data: bytes) -> bool:
        return data[:1] == b"{" and b'"elicence-sm2-json/' in data

    def open(self, data: bytes, limits: Limits) -> Envelope:
        if len(data) > limits.max_licence_bytes:
            raise LicenceRejected(errors.MALFORMED, f"licence larger than {limits.max_licence_bytes} bytes")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise LicenceRejected(errors.MALFORMED, "SM2-JSON licence is not JSON") from None
        if not isinstance(doc, dict):
            raise LicenceRejected(errors.MALFORMED, "SM2-JSON licence must be a JSON object")
        if doc.get("format") != FORMAT_TAG:
            raise LicenceRejected(errors.UNSUPPORTED_FORMAT, f"format {shown(doc.get('format'))} is not {FORMAT_TAG}")
        unknown = set(doc) - {"format", "data", "signature"}
        if unknown:
            raise LicenceRejected(errors.MALFORMED, f"unknown top-level member(s) {sorted(unknown)}")
        data_obj = check_data_shape(doc.get("data"), "data")
        block = doc.get("signature")
        if not isinstance(block, dict):
            raise LicenceRejected(errors.MALFORMED, "signature must be an object")
        check_signature_members(block)
        key_ref = key_ref_from(block)
        signature = decode_signature_value(block.get("value"))
        check_no_duplicate_members(data, doc)
        signed = canonical_bytes(data_obj)
        signing_time = pop_signing_time(data_obj)  # parsed here, owned here: no copy needed
        return make_envelope(self.name, "SM2", key_ref, data_obj, signing_time, signed, signature, NO_EXTRA)

    def verify(self, env: Envelope, cert: CertInfo) -> bool:
        return verify_sm2(env, cert)

    def encode(self, raw: Mapping[str, Any], spec: RegionSpec, key: SigningKey, signing_time: datetime) -> bytes:
        data = dict(raw)
        data[spec.options.get("signing_time_field", DEFAULT_SIGNING_TIME_FIELD)] = format_signing_time(signing_time)
        signature = sign_bytes(key, canonical_bytes(data), spec)
        doc = {"format": FORMAT_TAG, "data": data, "signature": signature_block(spec, key, signature)}
        return orjson.dumps(doc)

    def tamper(self, data: bytes) -> bytes:
        """Simulator: change one data value after signing, keep the signature."""
        doc = orjson.loads(data)
        for key, value in doc["data"].items():
            if isinstance(value, str) and value and not value[-1].isdigit() and key not in _TIME_FIELDS:
                doc["data"][key] = value[:-1] + ("甲" if value[-1] != "甲" else "乙")
                break
        return orjson.dumps(doc)

    def malformed(self, data: bytes) -> bytes:
        """Simulator: a licence cut short in transit (still recognisably SM2-JSON)."""
        return data[: len(data) // 2]


_TIME_FIELDS = frozenset({DEFAULT_SIGNING_TIME_FIELD, "签名时间"})  # the names pop_signing_time knows


def split_signing_time(data: Mapping[str, Any]) -> tuple[dict[str, Any], datetime]:
    """Take the signing time out of the (already signature-covered) data; the field is
    recognised by either documented name (pinyin ``qmsj`` or Chinese ``签名时间``)."""
    raw = dict(data)
    return raw, pop_signing_time(raw)


_TIME_PINYIN, _TIME_ZH = DEFAULT_SIGNING_TIME_FIELD, "签名时间"
_NOT_ONE_TIME = ("the signed data must carry exactly one signing time "
                 f"({' or '.join(sorted(_TIME_FIELDS))})")


def pop_signing_time(raw: dict[str, Any]) -> datetime:
    """:func:`split_signing_time` on a dictionary the caller owns (its signed bytes already
    taken): the signing time field is removed from ``raw`` itself, no copy is made."""
    pinyin, zh = _TIME_PINYIN in raw, _TIME_ZH in raw
    if pinyin is zh:  # both or neither
        raise LicenceRejected(errors.MALFORMED, _NOT_ONE_TIME)
    name = _TIME_PINYIN if pinyin else _TIME_ZH
    return parse_signing_time(raw.pop(name), name)


__all__ = ["ALG", "FORMAT_TAG", "Sm2JsonFamily", "canonical_bytes", "format_signing_time", "pop_signing_time",
           "split_signing_time"]
