"""Family sm2-json: detached SM2 data signature over the canonical JSON form of the data."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest

from adapters import FAMILIES, Limits, detect
from adapters.sm2_json import FORMAT_TAG, canonical_bytes
from gateway.crypto.sm2 import der_to_raw_signature, sm2_sign
from gateway.errors import LicenceRejected

from .conftest import NOW

FAMILY = FAMILIES["sm2-json"]
PINYIN_REGION, CHINESE_REGION = "330100", "220600"


def issue(world, region=PINYIN_REGION):
    return world.simulator.issue(region, "id_card", "valid", NOW)


def resign(world, region, doc: dict, der: bool = True) -> bytes:
    key = world.material[region].issuers[-1].private_key
    doc["signature"]["value"] = base64.b64encode(sm2_sign(key, canonical_bytes(doc["data"]), der=der)).decode()
    return orjson.dumps(doc)


def verify(world, data: bytes):
    return world.verifier.verify(data, world.snapshot, world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)), NOW)


def test_canonical_form_is_sorted_compact_utf8():
    assert canonical_bytes({"b": "乙", "a": 1, "c": {"z": "1", "y": "2"}}) == \
        '{"a":1,"b":"乙","c":{"y":"2","z":"1"}}'.encode()


def test_pinyin_region_licence_opens_with_serial_region_key_ref_and_signing_time(world):
    data = issue(world).data
    assert detect(data) is FAMILY
    env = FAMILY.open(data, Limits())
    doc = orjson.loads(data)
    assert doc["format"] == FORMAT_TAG and "qmsj" in doc["data"] and "qmsj" not in env.raw
    assert env.key_ref.region_hint == PINYIN_REGION and env.key_ref.serial_hex
    assert env.signing_time == NOW
    assert env.signed_bytes == canonical_bytes(doc["data"])


def test_chinese_region_uses_chinese_names_and_a_thumbprint(world):
    env = FAMILY.open(issue(world, CHINESE_REGION).data, Limits())
    assert "证照标识" in env.raw and env.key_ref.kid == world.material[CHINESE_REGION].issuers[-1].cert.key_id


@pytest.mark.parametrize("der", [True, False], ids=["der", "raw-r-s"])
def test_signature_is_accepted_raw_and_der(world, der):
    doc = orjson.loads(issue(world).data)
    data = resign(world, PINYIN_REGION, doc, der=der)
    sig = base64.b64decode(doc["signature"]["value"])
    assert (sig[0] == 0x30 and len(sig) in range(8, 73)) if der else len(sig) == 64
    assert verify(world, data).verdict.value == "valid"


def test_simulator_alternates_signature_forms_by_region(world):
    forms = {world.specs[r].options["signature_encoding"] for r in world.specs if world.specs[r].family == "sm2-json"}
    assert forms == {"raw", "der"}
    for region in (r for r in world.specs if world.specs[r].family == "sm2-json"):
        sig = base64.b64decode(orjson.loads(issue(world, region).data)["signature"]["value"])
        if world.specs[region].options["signature_encoding"] == "raw":
            assert len(sig) == 64
        else:
            assert len(der_to_raw_signature(sig)) == 64  # parses as DER


def test_reordered_and_reformatted_json_still_verifies(world):
    doc = orjson.loads(issue(world).data)
    reordered = {"signature": doc["signature"], "data": dict(reversed(list(doc["data"].items()))), "format": FORMAT_TAG}
    assert verify(world, orjson.dumps(reordered, option=orjson.OPT_INDENT_2)).verdict.value == "valid"


def test_altered_value_is_signature_invalid(world):
    result = verify(world, FAMILY.tamper(issue(world).data))
    assert result.reason_codes == ("SIGNATURE_INVALID",)


def test_shifted_signing_time_is_signature_invalid(world):
    doc = orjson.loads(issue(world).data)
    doc["data"]["qmsj"] = "2020-01-01T00:00:00+08:00"
    assert verify(world, orjson.dumps(doc)).reason_codes == ("SIGNATURE_INVALID",)


@pytest.mark.parametrize("attack, mutate, reason", [
    ("float_value_with_ambiguous_text_form", lambda d: d["data"].__setitem__("ztsy", 1.0), "MALFORMED"),
    ("deeply_nested_data", lambda d: d["data"].__setitem__("zmxx", {"a": {"b": "c"}}), "MALFORMED"),
    ("boolean_value", lambda d: d["data"].__setitem__("zzmc", True), "MALFORMED"),
    ("signing_time_without_offset", lambda d: d["data"].__setitem__("qmsj", "2026-11-27T12:00:00"), "MALFORMED"),
    ("two_signing_times", lambda d: d["data"].__setitem__("签名时间", "2026-11-27T12:00:00+08:00"), "MALFORMED"),
    ("foreign_algorithm", lambda d: d["signature"].__setitem__("alg", "RSA-SHA1"), "ALGORITHM_NOT_ALLOWED"),
    ("signature_names_no_certificate", lambda d: d["signature"].pop("serial"), "UNKNOWN_ISSUER"),
    ("serial_without_region", lambda d: d["signature"].pop("region"), "UNKNOWN_ISSUER"),
    ("signature_not_base64", lambda d: d["signature"].__setitem__("value", "%%%"), "MALFORMED"),
    ("unknown_top_level_member", lambda d: d.__setitem__("extra", 1), "MALFORMED"),
])
def test_hostile_documents_are_refused(world, attack, mutate, reason):
    doc = orjson.loads(issue(world).data)
    mutate(doc)
    with pytest.raises(LicenceRejected) as exc:
        FAMILY.open(orjson.dumps(doc), Limits())
    assert exc.value.code == reason, attack


def test_signature_from_another_region_key_is_unknown_or_mismatched(world):
    doc = orjson.loads(issue(world).data)
    data = resign(world, "330200", doc)
    assert verify(world, data).reason_codes == ("SIGNATURE_INVALID",)


def test_oversized_document_is_malformed(world):
    with pytest.raises(LicenceRejected) as exc:
        FAMILY.open(b'{"format":"elicence-sm2-json/1"' + b" " * 300_000 + b"}", Limits())
    assert exc.value.code == "MALFORMED"


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+08:00", "0001-01-01T07:59:59+14:00", "9999-12-31T23:59:59-12:00"])
def test_signing_time_whose_utc_instant_falls_outside_years_1_to_9999_is_malformed(world, when):
    # a valid ISO 8601 text whose conversion to UTC overflows datetime: was OverflowError -> indeterminate / INTERNAL
    doc = orjson.loads(issue(world).data)
    doc["data"]["qmsj"] = when
    for data in (orjson.dumps(doc), resign(world, PINYIN_REGION, doc)):  # altered, and genuinely signed
        result = verify(world, data)
        assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
        assert "out of range" in result.reasons[0].detail


DEEP_ARRAY = b"[" * 1020 + b"]" * 1020  # as deep as orjson reads (1,024); deeper than repr() recurses


@pytest.mark.parametrize("member, reason", [(b'"SM2-with-SM3"', "ALGORITHM_NOT_ALLOWED"),
                                            (b'"' + FORMAT_TAG.encode() + b'"', "UNSUPPORTED_FORMAT")])
def test_signature_alg_or_format_nested_a_thousand_deep_is_rejected_not_an_internal_error(world, member, reason):
    # the rejection's detail quoted the value with repr(), which raised RecursionError (indeterminate / INTERNAL)
    doc = orjson.loads(issue(world).data)
    doc["data"]["note"] = FORMAT_TAG  # the format tag elsewhere: still sniffed as SM2-JSON
    text = orjson.dumps(doc)
    assert text.count(member) >= 1
    result = verify(world, text.replace(member, DEEP_ARRAY, 1))
    assert result.verdict.value == "invalid" and result.reason_codes == (reason,)
    assert "an array" in result.reasons[0].detail
