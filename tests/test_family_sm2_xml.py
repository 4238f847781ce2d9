"""Family sm2-xml: XML licence data (UTF-8 or GB 18030), SM2 over the canonical data form, hardened parsing."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters import FAMILIES, Limits, detect
from adapters.sm2_json import canonical_bytes
from gateway.errors import LicenceRejected

from .conftest import NOW

FAMILY = FAMILIES["sm2-xml"]
GB_REGION, UTF8_REGION = "340200", "320200"


def issue(world, region=GB_REGION):
    return world.simulator.issue(region, "id_card", "valid", NOW)


def verify(world, data: bytes):
    return world.verifier.verify(data, world.snapshot, world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)), NOW)


def test_gb18030_region_declares_its_encoding_and_is_not_utf8(world):
    assert world.specs[GB_REGION].text_encoding == "gb18030"
    data = issue(world).data
    assert data.startswith(b'<?xml version="1.0" encoding="GB18030"?>')
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert detect(data) is FAMILY
    assert verify(world, data).verdict.value == "valid"


def test_utf8_region_verifies_and_signed_bytes_are_the_canonical_data(world):
    data = issue(world, UTF8_REGION).data
    env = FAMILY.open(data, Limits())
    assert env.signed_bytes.startswith(b"{") and env.signed_bytes == canonical_bytes(
        {**{k: (v if isinstance(v, dict) else str(v)) for k, v in env.raw.items()},
         "qmsj": "2026-11-27T12:00:00+08:00"})
    assert env.signing_time == NOW
    assert verify(world, data).verdict.value == "valid"


def test_same_data_reencoded_in_utf8_still_verifies(world):
    data = issue(world).data
    text = data.decode("gb18030").replace('encoding="GB18030"', 'encoding="UTF-8"')
    assert verify(world, text.encode("utf-8")).verdict.value == "valid"


def test_indentation_between_elements_does_not_change_the_signed_data(world):
    data = issue(world, UTF8_REGION).data.decode()
    pretty = data.replace("<Data>", "<Data>\n  ").replace("<SignatureValue", "\n<SignatureValue")
    assert verify(world, pretty.encode()).verdict.value == "valid"


def test_altered_value_is_signature_invalid(world):
    assert verify(world, FAMILY.tamper(issue(world).data)).reason_codes == ("SIGNATURE_INVALID",)


def _with(world, region, old: str, new: str) -> bytes:
    spec = world.specs[region]
    text = issue(world, region).data.decode(spec.text_encoding)
    assert old in text
    return text.replace(old, new, 1).encode(spec.text_encoding)


@pytest.mark.parametrize("attack, old, new", [
    ("billion_laughs_doctype", '<ElectronicLicence', '<!DOCTYPE lolz [<!ENTITY lol "lol">]><ElectronicLicence'),
    ("external_entity", '<ElectronicLicence', '<!doctype x SYSTEM "file:///etc/passwd"><ElectronicLicence'),
    ("duplicate_field_shows_two_values", "<Data>", "<Data><zzmc>伪造证照</zzmc>"),
    ("attribute_smuggling", "<Data>", '<Data hidden="1">'),
    ("text_between_fields", "</Data>", "stray</Data>"),
    ("deep_nesting", "<Data>", "<Data><a><b><c>x</c></b></a>"),
    ("utf16_encoding", 'encoding="UTF-8"', 'encoding="UTF-16"'),
    ("not_well_formed", "</Data>", "</Dta>"),
])
def test_hostile_xml_is_refused(world, attack, old, new):
    with pytest.raises(LicenceRejected) as exc:
        FAMILY.open(_with(world, UTF8_REGION, old, new), Limits())
    assert exc.value.code in ("MALFORMED", "UNSUPPORTED_FORMAT"), attack


def test_element_flood_is_refused_before_parsing(world):
    flood = "<x/>" * 2000
    with pytest.raises(LicenceRejected) as exc:
        FAMILY.open(_with(world, UTF8_REGION, "</Data>", flood + "</Data>"), Limits())
    assert exc.value.code == "MALFORMED" and "elements" in exc.value.detail


def test_bytes_invalid_in_declared_encoding_are_malformed(world):
    data = issue(world, UTF8_REGION).data.replace(b"<Data>", b"<Data>\xff\xfe", 1)
    with pytest.raises(LicenceRejected) as exc:
        FAMILY.open(data, Limits())
    assert exc.value.code == "MALFORMED"
