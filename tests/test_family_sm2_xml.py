"""Family sm2-xml: XML licence data (UTF-8 or GB 18030), SM2 over the canonical data form, hardened parsing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest

from adapters import FAMILIES, Limits, detect
from adapters.sm2_json import canonical_bytes, signature_block
from adapters.sm2_xml import NS, ROOT, data_from_element, data_xml, parse_hardened, prolog
from gateway.crypto.sm2 import sm2_sign
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


def resigned(world, region: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    """A licence of ``region`` whose fields ``change`` alters, then genuinely signed by the region's
    key (as a buggy issuer would sign it): it reaches the checks after the signature."""
    fields = data_from_element(parse_hardened(issue(world, region).data)[0], "licence")
    change(fields)
    spec, key = world.specs[region], world.material[region].issuers[-1]
    signature = sm2_sign(key.private_key, canonical_bytes(fields), der=spec.options["signature_encoding"] != "raw")
    block = signature_block(spec, key, signature)
    value = block.pop("value")
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in block.items())
    return (prolog(spec.text_encoding) + f'<{ROOT} xmlns="{NS}">' + data_xml(fields)
            + f"<SignatureValue{attrs}>{value}</SignatureValue></{ROOT}>").encode(spec.text_encoding)


def test_resigned_helper_makes_a_valid_licence(world):
    assert verify(world, resigned(world, GB_REGION, lambda fields: None)).verdict.value == "valid"


@pytest.mark.parametrize("index", ["²", "①", "¹²", "١", "１"])
def test_status_index_in_digits_other_than_ascii_is_field_invalid(world, index):
    # str.isdigit() is true of "²" and "①", which int() refuses: was ValueError -> indeterminate / INTERNAL
    # ("١" and "１", which int() reads, were taken as index 1; the fast path already refused them)
    name = world.specs[GB_REGION].fields["status_index"]
    result = verify(world, resigned(world, GB_REGION, lambda fields: fields.__setitem__(name, index)))
    assert result.verdict.value == "invalid" and result.reason_codes == ("FIELD_INVALID",)
    assert "status index" in result.reasons[0].detail


@pytest.mark.parametrize("digits", ["٠٠١", "００１", "𝟎𝟎𝟏"])
def test_identifier_version_in_digits_other_than_ascii_is_identifier_invalid(world, digits):
    # the identifier pattern's \d took other scripts' digits, which MOD 37,36 has no value for: was
    # ValueError -> indeterminate / INTERNAL
    name = world.specs[GB_REGION].fields["identifier"]

    def change(fields):
        fields[name] = fields[name][:-5] + digits + fields[name][-2:]  # <serial>.<version>.<check>

    result = verify(world, resigned(world, GB_REGION, change))
    assert result.verdict.value == "invalid" and result.reason_codes == ("IDENTIFIER_INVALID",)


def test_signing_time_whose_utc_instant_is_before_year_one_is_malformed(world):
    data = resigned(world, GB_REGION, lambda fields: fields.__setitem__("qmsj", "0001-01-01T00:00:00+08:00"))
    result = verify(world, data)
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
