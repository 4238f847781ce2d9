"""sm2-json and sm2-xml: the signed form against documents that other readers see differently.

Both families sign a canonical form of the fields they read, not the presented text. That keeps
the gateway's own answer honest, but a presented document must not carry, beside the signed
fields, content that other software reads as the licence (or as its signer):

* sm2-json: an object naming a member twice. orjson keeps the last value; readers that keep the
  first (or refuse, or keep both) exist (RFC 8259 4.). A forged ``data`` object (or field, or
  signer reference) put before the genuine one was answered ``valid``;
* sm2-json: a signature block member the gateway does not read (the XML family refuses unknown
  ``<SignatureValue>`` attributes; the JSON family refuses unknown top-level members);
* sm2-xml: an attribute on the root element, or a field element in another namespace (the signed
  form names fields by local name only: ``{urn:evil}czzt`` and the licence's ``czzt`` signed alike);
* sm2-xml writer: a carriage return in a value was written literally; XML readers turn it into a
  line feed, so a genuinely issued licence with a multi-line address failed SIGNATURE_INVALID.

Every attack has its genuine control beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace

import orjson
import pytest

from adapters import FAMILIES, Limits
from adapters.sm2_xml import NS
from gateway.errors import LicenceRejected

from .conftest import NOW

JSON_REGION, JSON_KID_REGION = "330100", "220600"  # serial + pinyin names / kid + Chinese names
XML_UTF8, XML_GB18030 = "320200", "340200"


@pytest.fixture(scope="module")
def status(world):
    return world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))


def verify(world, status, data: bytes):
    return world.verifier.verify(data, world.snapshot, status, NOW)


def issue(world, region: str):
    return world.simulator.issue(region, "id_card", "valid", NOW)


def holder_field(world, region: str) -> str:
    return world.specs[region].fields["holder_name"]


def first_wins(text: bytes):
    """The document as a JSON reader that keeps the first of duplicated members reads it."""
    def pairs(items):
        out = {}
        for key, value in items:
            out.setdefault(key, value)
        return out
    return json.loads(text, object_pairs_hook=pairs)


# --- sm2-json: duplicate members ------------------------------------------------------------
@pytest.mark.parametrize("region", [JSON_REGION, JSON_KID_REGION])
def test_duplicate_data_object_with_a_forged_copy_first_is_refused(world, status, region):
    genuine = issue(world, region).data
    assert verify(world, status, genuine).verdict.value == "valid"  # control
    name = holder_field(world, region)
    forged = dict(orjson.loads(genuine)["data"], **{name: "伪造人"})
    attack = b'{"data":' + orjson.dumps(forged) + b"," + genuine[1:]
    assert first_wins(attack)["data"][name] == "伪造人"  # what a first-wins reader shows
    result = verify(world, status, attack)  # was: valid (orjson kept the genuine, last, copy)
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
    assert "twice" in result.reasons[0].detail


def _insert_after(text: bytes, marker: bytes, member: bytes) -> bytes:
    assert marker in text
    return text.replace(marker, marker + member, 1)


@pytest.mark.parametrize("where", ["data field", "surface field", "signature serial", "signature value",
                                   "format", "escaped member name"])
def test_duplicate_member_anywhere_is_refused(world, status, where):
    genuine = issue(world, JSON_REGION).data
    doc = orjson.loads(genuine)
    if where == "data field":
        attack = _insert_after(genuine, b'"data":{', '"czzt":"伪造人",'.encode())
    elif where == "surface field":
        attack = _insert_after(genuine, b'"zmxx":{', '"address":"伪造地址",'.encode())
    elif where == "signature serial":
        attack = _insert_after(genuine, b'"signature":{', b'"serial":"' + doc["signature"]["serial"][::-1].encode()
                               + b'",')
    elif where == "signature value":
        attack = _insert_after(genuine, b'"signature":{', b'"value":"AAAA",')
    elif where == "format":
        attack = b'{"format":"elicence-sm2-json/0",' + genuine[1:]
    else:  # the same name written with escapes: one member to every reader
        attack = _insert_after(genuine, b'"data":{', '"\\u0063zzt":"伪造人",'.encode())
    assert verify(world, status, genuine).verdict.value == "valid"  # control
    with pytest.raises(LicenceRejected) as exc:
        FAMILIES["sm2-json"].open(attack, Limits())
    assert exc.value.code == "MALFORMED" and "twice" in exc.value.detail, where
    assert verify(world, status, attack).reason_codes == ("MALFORMED",)


@pytest.mark.parametrize("form", ["compact", "indented", "reordered", "escaped names", "escaped slash and text"])
def test_genuine_licence_written_other_ways_stays_valid(world, status, form):
    genuine = issue(world, JSON_REGION).data
    doc = orjson.loads(genuine)
    if form == "compact":
        text = genuine
    elif form == "indented":
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    elif form == "reordered":
        text = orjson.dumps({"signature": doc["signature"], "data": dict(reversed(doc["data"].items())),
                             "format": doc["format"]})
    elif form == "escaped names":  # every member name written as \\u escapes, values untouched
        text = re.sub(rb'"([a-z]+)":', lambda m: b'"' + b"".join(b"\\u%04x" % c for c in m.group(1)) + b'":', genuine)
        assert text != genuine
    else:  # ASCII-only JSON as json.dumps writes it: \\uXXXX for every non-ASCII character, spaces after ':'
        text = json.dumps(doc, ensure_ascii=True).encode()
    result = verify(world, status, text)
    assert result.verdict.value == "valid", (form, result.reason_codes)


# --- sm2-json: signature block members ------------------------------------------------------
@pytest.mark.parametrize("member, value", [("signer", "另一发证机构"), ("x5c", ["MIIB"]), ("encoding", ["der"]),
                                           ("encoding", {"a": 1})])
def test_unknown_or_non_text_signature_member_is_refused(world, status, member, value):
    genuine = issue(world, JSON_REGION).data
    assert verify(world, status, genuine).verdict.value == "valid"  # control
    doc = orjson.loads(genuine)
    doc["signature"][member] = value
    result = verify(world, status, orjson.dumps(doc))  # was: valid (the member was never read)
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)


@pytest.mark.parametrize("encoding", ["raw", "der"])
def test_signature_encoding_member_stays_unread_text(world, status, encoding):
    doc = orjson.loads(issue(world, JSON_REGION).data)
    doc["signature"]["encoding"] = encoding  # the value form is found from the bytes, whatever it says
    assert verify(world, status, orjson.dumps(doc)).verdict.value == "valid"


# --- sm2-xml: the writer keeps a carriage return ----------------------------------------------
@pytest.mark.parametrize("region", [XML_UTF8, XML_GB18030])
@pytest.mark.parametrize("value", ["浙江省杭州市\r\n西湖区", "第一行\r第二行", "\r"])
def test_carriage_return_in_a_value_survives_the_xml_round_trip(world, status, region, value):
    issued = issue(world, region)
    assert verify(world, status, issued.data).verdict.value == "valid"  # control
    lic = replace(issued.licence, surface={**issued.licence.surface, "address": value})
    data = world.simulator.encode(region, lic, NOW)
    result = verify(world, status, data)  # was: SIGNATURE_INVALID (read back with LF for CR)
    assert result.verdict.value == "valid", result.reason_codes
    assert result.licence.surface["address"] == value
    # the JSON family carried it all along
    json_issued = issue(world, JSON_REGION)
    json_lic = replace(json_issued.licence, surface={**json_issued.licence.surface, "address": value})
    assert verify(world, status, world.simulator.encode(JSON_REGION, json_lic, NOW)).verdict.value == "valid"


# --- sm2-xml: content beside the signed fields ------------------------------------------------
def _xml(world, region: str) -> tuple[str, str]:
    spec = world.specs[region]
    return issue(world, region).data.decode(spec.text_encoding), spec.text_encoding


ROOT_OPEN = f'<ElectronicLicence xmlns="{NS}"'


@pytest.mark.parametrize("region", [XML_UTF8, XML_GB18030])
@pytest.mark.parametrize("attr", [' czzt="伪造人"', ' issuer="另一发证机构"', ' xmlns:e="urn:evil" e:signed="false"'])
def test_attribute_on_the_root_element_is_refused(world, status, region, attr):
    text, enc = _xml(world, region)
    assert verify(world, status, text.encode(enc)).verdict.value == "valid"  # control
    attack = text.replace(ROOT_OPEN, ROOT_OPEN + attr, 1).encode(enc)
    result = verify(world, status, attack)  # was: valid
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)


def _first_field(text: str) -> str:
    return re.search(r"<Data><([^>/\s]+)>", text).group(1)


@pytest.mark.parametrize("region", [XML_UTF8, XML_GB18030])
@pytest.mark.parametrize("ns", ['xmlns="urn:evil"', 'xmlns=""', 'xmlns:e="urn:evil"'])
def test_field_in_another_namespace_is_refused(world, status, region, ns):
    text, enc = _xml(world, region)
    name = _first_field(text)
    if ns.startswith("xmlns:e"):
        attack = re.sub(rf"<{name}>(.*?)</{name}>", rf"<e:{name} {ns}>\1</e:{name}>", text, count=1)
    else:
        attack = re.sub(rf"<{name}>", f"<{name} {ns}>", text, count=1)
    assert attack != text
    assert verify(world, status, text.encode(enc)).verdict.value == "valid"  # control
    result = verify(world, status, attack.encode(enc))  # was: valid (read by its local name)
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
    assert "namespace" in result.reasons[0].detail


@pytest.mark.parametrize("region", [XML_UTF8, XML_GB18030])
def test_surface_field_in_another_namespace_is_refused(world, status, region):
    text, enc = _xml(world, region)
    container = world.specs[region].surface_container
    # the container's first field, its value kept, moved to another namespace
    attack = re.sub(rf"<{container}><([^>/\s]+)>(.*?)</\1>", rf'<{container}><e:\1 xmlns:e="urn:evil">\2</e:\1>',
                    text, count=1)
    assert attack != text
    assert verify(world, status, text.encode(enc)).verdict.value == "valid"  # control
    result = verify(world, status, attack.encode(enc))  # was: valid
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)


@pytest.mark.parametrize("region", [XML_UTF8, XML_GB18030])
def test_prefixed_elements_in_the_licence_namespace_stay_valid(world, status, region):
    # control: a prefix bound to the licence namespace is the same element name
    text, enc = _xml(world, region)
    body = text[text.index("<ElectronicLicence"):]
    head = text[:text.index("<ElectronicLicence")]
    body = body.replace(ROOT_OPEN, f'<ElectronicLicence xmlns:l="{NS}"', 1)
    prefixed = head + re.sub(r"<(/?)([^\s>/!?]+)", r"<\1l:\2", body)
    assert "<l:Data>" in prefixed and "</l:ElectronicLicence>" in prefixed
    assert verify(world, status, prefixed.encode(enc)).verdict.value == "valid"
