"""Round-3 OFD / core fast paths equal their reference paths, and hostile shapes fall back.

* the zip reader's names, checked all at once (one expression over the joined names, one
  case-folded set) instead of one by one;
* plain Signature.xml References read without resolve()/strip() when every one is normal,
  and Provider attributes read from text;
* SignatureDateTime in Beijing time turned into UTC by subtracting eight hours (not astimezone);
* the core's Issuer check takes an embedded certificate's key id from a bounded cache by DER.

End to end: every simulator case (seal 310000, plain signature 500102) gives the same
VerificationResult with the fast paths on as with every one of them off; the real vectors in
shared/vectors/ofd open and verify alike on both.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import struct
import zipfile
from pathlib import Path

import pytest

import gateway.core as core_module
from adapters import Limits
from adapters.ofd import container, xmlparts
from adapters.ofd.container import (
    DEFAULT_LIMITS,
    _read_plain,
    _read_with_zipfile,
    read_ofd_package,
)
from adapters.ofd.errors import OfdError
from adapters.ofd.xmlparts import (
    OFD_LOCAL_TZ,
    _parse_signature_xml_plain,
    _parse_signature_xml_tree,
    parse_signature_datetime,
    parse_signature_xml,
)
from adapters.ofd_seal import OfdSealFamily
from gateway.errors import GatewayError
from gateway.simulator import EXPECTED
from gateway.trust import key_id_of, load_certificate
from tests.conftest import NOW
from tests.ofd_support import rezip

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.is_dir():
    VECTORS = Path("/work/shared/vectors/ofd")
SIGNATURE_XML = "Doc_0/Signs/Sign_0/Signature.xml"
FAMILY = OfdSealFamily()
NEVER = re.compile(r"(?!)")


def _reference_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round-3 fast path off: zipfile, the ElementTree Signature.xml reader, the general
    Reference loop, the uncached key id."""
    monkeypatch.setattr(container, "_read_plain", lambda data, limits: None)
    monkeypatch.setattr(xmlparts, "_parse_signature_xml_plain", lambda data, path: None)
    monkeypatch.setattr(xmlparts, "_NORMAL_REFERENCE_TEXT", NEVER)
    monkeypatch.setattr(core_module, "_leaf_key_id", key_id_of)


def _result_facts(result) -> tuple:
    return (result.verdict, result.reason_codes, tuple((type(r), str(r)) for r in result.reasons),
            dict(result.checks), result.region, result.format, result.licence, result.signer_key_id,
            result.signing_time, result.status_age, result.notes)


@pytest.fixture(scope="module")
def issued(world) -> dict[tuple[str, str], bytes]:
    types = [t.key for t in world.catalogue.types]
    return {(region, case): world.simulator.issue(region, types[i % len(types)], case, NOW).data
            for region in ("310000", "500102") for i, case in enumerate(EXPECTED)}


# --- end to end: fast paths on == every one off ------------------------------------------
@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("region", ["310000", "500102"])
def test_every_simulator_case_gives_the_same_result_with_the_fast_paths_off(world, issued, region, case,
                                                                            monkeypatch) -> None:
    data = issued[(region, case)]
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    fast = world.verifier.verify(data, world.snapshot, status, NOW)
    with monkeypatch.context() as m:
        _reference_paths(m)
        reference = world.verifier.verify(data, world.snapshot, status, NOW)
    assert _result_facts(fast) == _result_facts(reference)
    family = "ofd-seal"
    verdict, reason = EXPECTED[case] if case != "unknown-issuer" else ("invalid", "UNTRUSTED_CHAIN")
    assert fast.verdict.value == verdict and fast.format in (family, None)
    assert (reason in fast.reason_codes) if reason else fast.reason_codes == ()


def _open_and_verify(data: bytes) -> tuple:
    """What the family makes of a file: its envelope facts and the verify outcome (with the
    certificate the package carries), or the error."""
    try:
        env = FAMILY.open(data, Limits(max_licence_bytes=1 << 22))
    except GatewayError as exc:
        return ("open", exc.code, str(exc))
    sx = env.extra["sx"]
    facts = (dict(env.raw), env.signing_time, env.signed_bytes, env.signature, env.key_ref, env.extra["type"],
             repr(sx), dict(env.extra["package"].files))
    try:
        outcome: object = FAMILY.verify(env, load_certificate(env.key_ref.chain[0]))
    except GatewayError as exc:
        outcome = (exc.code, str(exc))
    return facts, outcome


def _vector_files() -> dict[str, bytes]:
    out = {name: (VECTORS / name).read_bytes() for name in ("allprotected.ofd", "v4signed.ofd", "DigitalSign.ofd")}
    pem = (VECTORS / "ofdrw-test-signer-2020.pem").read_text().strip().splitlines()
    cert = base64.b64decode("".join(pem[1:-1]))
    src = zipfile.ZipFile(io.BytesIO(out["DigitalSign.ofd"]))
    files = {info.filename: src.read(info) for info in src.infolist() if not info.is_dir()}
    sign_dir = next(n for n in files if n.endswith("/Signature.xml")).rsplit("/", 1)[0]
    files[f"{sign_dir}/SignerCert.der"] = cert
    out["DigitalSign.ofd+SignerCert.der"] = rezip(files)
    return out


@pytest.mark.parametrize("name", ["allprotected.ofd", "v4signed.ofd", "DigitalSign.ofd",
                                  "DigitalSign.ofd+SignerCert.der"])
def test_real_vector_opens_and_verifies_alike_with_the_fast_paths_off(name, monkeypatch) -> None:
    data = _vector_files()[name]
    fast = _open_and_verify(data)
    with monkeypatch.context() as m:
        _reference_paths(m)
        reference = _open_and_verify(data)
    assert fast == reference
    if name != "DigitalSign.ofd":  # that one names no certificate: UNKNOWN_ISSUER on both paths
        assert fast[1] is True


# --- zip names, all at once ----------------------------------------------------------------
def _zip_with_names(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, name in enumerate(names):
            zf.writestr(zipfile.ZipInfo(name if "\n" not in name else name.replace("\n", "_")), f"<x{i}/>".encode())
    raw = bytearray(buf.getvalue())
    for i, name in enumerate(names):  # put the exact (possibly hostile) bytes back, same length
        if "\n" in name:
            stand_in = name.replace("\n", "_").encode()
            for at in [m.start() for m in re.finditer(re.escape(stand_in), bytes(raw))]:
                raw[at:at + len(stand_in)] = name.encode()
    return bytes(raw)


def test_entry_name_holding_a_newline_cannot_pose_as_two_names() -> None:
    # joined, "a\nb" + "a" reads as a, b, a: as many distinct folded names as entries (2) -- the
    # piece count (3) is what refuses it
    data = _zip_with_names(["Doc_0/a\nOFD.xml", "Doc_0/a"])
    assert _read_plain(data, DEFAULT_LIMITS) is None


def test_exact_duplicate_entry_names_are_not_read_fast_and_are_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("OFD.xml", b"<a/>")
        with pytest.warns(UserWarning):
            zf.writestr("OFD.xml", b"<b/>")
    assert _read_plain(buf.getvalue(), DEFAULT_LIMITS) is None
    with pytest.raises(OfdError):
        read_ofd_package(buf.getvalue())


@pytest.mark.parametrize("name", ["Doc_0/../OFD.xml", "Doc_0//OFD.xml", ".hidden", "Doc_0\\OFD.xml",
                                  "Doc_0/./OFD.xml", "文档/OFD.xml", "Doc 0/OFD.xml"])
def test_traversing_or_odd_entry_name_is_not_read_fast(name) -> None:
    data = _zip_with_names(["OFD.xml", name])
    assert _read_plain(data, DEFAULT_LIMITS) is None
    try:
        reference: object = dict(_read_with_zipfile(data, DEFAULT_LIMITS).files)
    except OfdError as exc:
        reference = type(exc)
    try:
        answer: object = dict(read_ofd_package(data).files)
    except OfdError as exc:
        answer = type(exc)
    assert answer == reference


def test_folders_are_checked_with_the_names_and_not_kept() -> None:
    data = _zip_with_names(["Doc_0/", "Doc_0/Signs/", "OFD.xml", "Doc_0/Document.xml"])
    fast = _read_plain(data, DEFAULT_LIMITS)
    assert fast == {"OFD.xml": b"<x2/>", "Doc_0/Document.xml": b"<x3/>"}
    assert fast == dict(_read_with_zipfile(data, DEFAULT_LIMITS).files)


def test_empty_zip_is_left_to_zipfile() -> None:
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    assert _read_plain(buf.getvalue(), DEFAULT_LIMITS) is None
    assert dict(read_ofd_package(buf.getvalue()).files) == {}


def test_entries_past_the_total_size_limit_stop_the_fast_reader_before_inflating_the_rest(issued) -> None:
    data = issued[("310000", "valid")]
    total = sum(len(v) for v in read_ofd_package(data).files.values())
    tight = container.ZipLimits(max_total_uncompressed=total - 1)
    assert _read_plain(data, tight) is None
    with pytest.raises(OfdError):
        read_ofd_package(data, tight)


def test_newline_name_is_refused_by_the_reference_reader_too() -> None:
    data = _zip_with_names(["OFD.xml", "Doc_0/x\ny.xml"])
    assert _read_plain(data, DEFAULT_LIMITS) is None
    with pytest.raises(OfdError):
        read_ofd_package(data)


# --- Signature.xml: normal References, Provider from text ---------------------------------
@pytest.fixture(scope="module")
def plain_signature_xml(issued) -> bytes:
    return read_ofd_package(issued[("310000", "valid")]).get(SIGNATURE_XML)


def _both(data: bytes):
    fast = _parse_signature_xml_plain(data, SIGNATURE_XML)
    return fast, _parse_signature_xml_tree(data, SIGNATURE_XML)


def test_plain_signature_xml_references_read_fast_equal_the_tree(plain_signature_xml) -> None:
    fast, tree = _both(plain_signature_xml)
    assert fast is not None and fast == tree
    assert len(fast.references) >= 8 and all(r.check_value and len(r.check_value) == 32 for r in fast.references)


def test_fake_file_ref_smuggled_inside_a_check_value_is_read_as_text(plain_signature_xml) -> None:
    # the text of a CheckValue may hold '"' and '>': a FileRef written there must not become a Reference
    first = plain_signature_xml.index(b"<ofd:CheckValue>") + len(b"<ofd:CheckValue>")
    end = plain_signature_xml.index(b"</ofd:CheckValue>", first)
    data = plain_signature_xml[:first] + b'FileRef="/OFD.xml">' + plain_signature_xml[end:]
    fast, tree = _both(data)
    assert fast is not None and fast == tree
    assert fast.references[0].check_value is None  # not base64: MALFORMED at verification
    assert fast.references[0].file_ref == tree.references[0].file_ref != "/OFD.xml"


def test_check_value_with_surrounding_space_takes_the_general_loop(plain_signature_xml) -> None:
    data = plain_signature_xml.replace(b"<ofd:CheckValue>", b"<ofd:CheckValue>\n  ", 1)
    fast, tree = _both(data)
    assert fast is not None and fast == tree and fast.references[0].check_value is not None


def test_badly_padded_check_value_reads_as_no_value_on_both_paths(plain_signature_xml) -> None:
    start = plain_signature_xml.index(b"<ofd:CheckValue>") + len(b"<ofd:CheckValue>")
    data = plain_signature_xml[:start] + b"QUJ" + plain_signature_xml[plain_signature_xml.index(b"</ofd:CheckValue>", start):]
    fast, tree = _both(data)
    assert fast is not None and fast == tree and fast.references[0].check_value is None


@pytest.mark.parametrize("file_ref", [b"Doc_0/Document.xml", b"/Doc_0/../Doc_0/Document.xml", b"/Doc_0/./Document.xml"])
def test_relative_or_dotted_file_ref_is_resolved_as_the_tree_resolves_it(plain_signature_xml, file_ref) -> None:
    data = plain_signature_xml.replace(b'FileRef="/Doc_0/Document.xml"', b'FileRef="' + file_ref + b'"')
    assert data != plain_signature_xml
    fast, tree = _both(data)
    assert fast is not None and fast == tree
    assert any(r.path == "Doc_0/Document.xml" and r.file_ref == file_ref.decode() for r in fast.references)


def test_provider_declaring_a_namespace_goes_to_the_tree(plain_signature_xml) -> None:
    data = plain_signature_xml.replace(b'Company="TEST"', b'Company="TEST" xmlns:x="urn:x"')
    assert _parse_signature_xml_plain(data, SIGNATURE_XML) is None
    assert parse_signature_xml(data, SIGNATURE_XML) == _parse_signature_xml_tree(data, SIGNATURE_XML)


def test_provider_value_mentioning_xml_is_read_alike(plain_signature_xml) -> None:
    data = plain_signature_xml.replace(b'Company="TEST"', b'Company="TEST xml tools"')
    assert parse_signature_xml(data, SIGNATURE_XML) == _parse_signature_xml_tree(data, SIGNATURE_XML)
    assert parse_signature_xml(data, SIGNATURE_XML).provider["Company"] == "TEST xml tools"


def test_provider_with_a_duplicate_attribute_is_not_read_fast_and_is_refused(plain_signature_xml) -> None:
    data = plain_signature_xml.replace(b'Company="TEST"', b'Company="TEST" Company="EVIL"')
    assert _parse_signature_xml_plain(data, SIGNATURE_XML) is None
    with pytest.raises(OfdError):
        parse_signature_xml(data, SIGNATURE_XML)


def test_plain_provider_attributes_read_fast_equal_the_tree(plain_signature_xml) -> None:
    fast, tree = _both(plain_signature_xml)
    assert fast.provider == tree.provider == {"ProviderName": "elicence-gateway-simulator", "Company": "TEST",
                                              "Version": "1.0"}


# --- SignatureDateTime -----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2026-11-27 12:00:00", "2026-01-01 03:59:59", "2024-02-29 07:30:00",
                                   "2024-03-01 00:00:00", "2000-12-31 23:59:59", "1999-01-01 08:00:00",
                                   "0001-01-01 08:00:00"])
def test_beijing_signature_time_minus_eight_hours_equals_astimezone(value) -> None:
    expected = dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=OFD_LOCAL_TZ).astimezone(dt.timezone.utc)
    got = parse_signature_datetime(value)
    assert got == expected and got.tzinfo is dt.timezone.utc and got.utcoffset() == dt.timedelta(0)
    assert (got.year, got.month, got.day, got.hour) == (expected.year, expected.month, expected.day, expected.hour)


@pytest.mark.parametrize("value", ["2026-02-30 12:00:00", "2026-13-01 00:00:00", "2026-11-27 24:00:00"])
def test_impossible_signature_time_reads_as_none(value) -> None:
    assert parse_signature_datetime(value) is None


# --- the Issuer check's key id cache -------------------------------------------------------
def test_leaf_key_id_cache_answers_like_the_thumbprint_and_stays_bounded(world, monkeypatch) -> None:
    ders = [issuer.cert.der for rt in world.snapshot.regions.values() for issuer in rt.issuers][:6]
    monkeypatch.setattr(core_module, "_LEAF_KEY_IDS", {})
    monkeypatch.setattr(core_module, "_LEAF_KEY_IDS_SIZE", 2)
    for der in ders + ders:
        assert core_module._leaf_key_id(bytes(bytearray(der))) == key_id_of(der)
        assert len(core_module._LEAF_KEY_IDS) <= 2


def test_certificate_altered_by_one_byte_gets_its_own_key_id(world) -> None:
    der = next(iter(world.snapshot.regions["310000"].issuers)).cert.der
    core_module._leaf_key_id(der)
    altered = der[:-1] + bytes([der[-1] ^ 1])
    assert core_module._leaf_key_id(altered) == key_id_of(altered) != key_id_of(der)


def test_zip_central_directory_offsets_helper_sanity(issued) -> None:
    # the fast reader accepted the simulator package: every entry read, equal to zipfile's
    data = issued[("500102", "valid")]
    eocd = struct.unpack_from("<4s4H2LH", data, len(data) - 22)
    fast = _read_plain(data, DEFAULT_LIMITS)
    assert fast is not None and len(fast) == eocd[4]
    assert fast == dict(_read_with_zipfile(data, DEFAULT_LIMITS).files)


# --- SES: the plain DER walk's times and one-call element reader ------------------------------
@pytest.mark.parametrize("text", ["20261127120000Z", "20240229235959Z", "99991231235959Z", "00010101000000Z",
                                  "20230229000000Z", "20261127240000Z", "20261127126000Z", "20261127120060Z",
                                  "00000101000000Z", "20261301000000Z", "20261100000000Z"])
def test_generalized_time_read_by_fromisoformat_equals_the_field_by_field_datetime(text) -> None:
    from adapters.ofd.ses import _gtime
    try:
        expected: object = dt.datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                                       int(text[10:12]), int(text[12:14]), tzinfo=dt.timezone.utc)
    except ValueError:
        expected = ValueError
    try:
        got: object = _gtime(text.encode())
    except ValueError:
        got = ValueError
    assert got == expected
    if expected is not ValueError:
        assert got.tzinfo is dt.timezone.utc


@pytest.mark.parametrize("text", [b"2026112712000Z", b"20261127120000+", b"2026112712000aZ", b"2026-11-27T12:0Z",
                                  b"\xd9\xa2026112712000Z"])
def test_generalized_time_in_another_form_is_refused(text) -> None:
    from adapters.ofd.ses import _gtime
    with pytest.raises(ValueError):
        _gtime(text)


@pytest.mark.parametrize("der", [b"", b"\x04", b"\x04\x05abc", b"\x04\x81\x05abcde", b"\x04\x80", b"\x04\x85" + b"\x00" * 9,
                                 b"\x1f\x01\x00", b"\x04\x82\x00\x05abcde", b"\x04\x03abc", b"\x04\x81\x80" + b"x" * 128])
def test_one_call_element_reader_agrees_with_the_general_reader(der) -> None:
    from adapters.ofd.ses import _expect, _tlv
    try:
        tag, a, b = _tlv(der, 0, len(der))
        reference: object = (a, b) if tag == 0x04 else ValueError
    except ValueError:
        reference = ValueError
    try:
        got: object = _expect(der, 0, len(der), 0x04)
    except ValueError:
        got = ValueError
    assert got == reference


def test_simulator_seal_read_by_the_plain_walk_equals_asn1crypto(issued) -> None:
    from adapters.ofd.ses import SESeal, _parse_seal_plain, parse_seal
    seal_der = read_ofd_package(issued[("310000", "valid")]).get("Doc_0/Signs/Sign_0/Seal.esl")
    fast = _parse_seal_plain(seal_der)
    assert fast is not None and fast == parse_seal(SESeal.load(seal_der, strict=True))


# --- licence data: the plain prolog read without decode_xml's scans ----------------------------
def _licence_text_both(part: bytes):
    from adapters.ofd_seal import _plain_text
    from adapters.sm2_xml import decode_xml
    try:
        reference: object = decode_xml(part, "licence.xml")
    except GatewayError as exc:
        reference = (exc.code, str(exc))
    return _plain_text(part), reference


@pytest.mark.parametrize("encoding", ["UTF-8", "GB18030"])
def test_plain_prolog_text_equals_decode_xml(encoding) -> None:
    part = (f'<?xml version="1.0" encoding="{encoding}"?>\n<LicenceData xmlns="urn:elicence:ofd-data:1">'
            "<Data><持证主体>周宇轩</持证主体></Data></LicenceData>").encode(encoding)
    fast, reference = _licence_text_both(part)
    assert fast is not None and fast == reference


@pytest.mark.parametrize("part", [
    b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\n<a/>',                     # BOM
    b' <?xml version="1.0" encoding="UTF-8"?>\n<a/>',                                # leading space
    b"<?xml version='1.0' encoding='UTF-8'?>\n<a/>",                                 # single quotes
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<a/>',                # more attributes
    b'<?xml version="1.0" encoding="GBK"?>\n<a/>',                                    # another encoding
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',  # entity expansion
    b'<?xml version="1.0" encoding="UTF-8"?>\n<a><!-- c --></a>',                    # a comment
    b'<?xml version="1.0" encoding="UTF-8"?>\n<a>\xff\xfe</a>',                      # not UTF-8
    b'<?xml version="1.0" encoding="UTF-8"?><?xml version="1.0" encoding="GB18030"?><a/>',  # two prologs
])
def test_odd_prolog_or_content_leaves_the_text_to_decode_xml(part) -> None:
    fast, reference = _licence_text_both(part)
    assert fast is None or fast == reference
    if part.startswith((b"\xef", b" ", b"<?xml version='")) or b"<!" in part or b"\xff" in part or b"GBK" in part:
        assert fast is None


def test_licence_data_with_an_entity_declaration_is_refused_as_before() -> None:
    from adapters.ofd_seal import _licence_data
    part = (b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE d [<!ENTITY e "x">]>'
            b'<LicenceData xmlns="urn:elicence:ofd-data:1"><Data><a>&e;</a></Data></LicenceData>')
    with pytest.raises(GatewayError) as info:
        _licence_data(part)
    assert info.value.code == "MALFORMED"


# --- attribute lists: a name starting with "xml" sends the document to the tree ---------------
def test_stamp_annotation_declaring_a_namespace_goes_to_the_tree(plain_signature_xml) -> None:
    assert b'<ofd:StampAnnot ID="2"' in plain_signature_xml
    data = plain_signature_xml.replace(b'<ofd:StampAnnot ID="2"', b'<ofd:StampAnnot xmlns:s="urn:s" ID="2"')
    assert _parse_signature_xml_plain(data, SIGNATURE_XML) is None
    assert parse_signature_xml(data, SIGNATURE_XML) == _parse_signature_xml_tree(data, SIGNATURE_XML)


def test_stamp_annotation_with_a_duplicate_attribute_is_not_read_fast_and_is_refused(plain_signature_xml) -> None:
    data = plain_signature_xml.replace(b'<ofd:StampAnnot ID="2"', b'<ofd:StampAnnot ID="2" ID="3"')
    assert _parse_signature_xml_plain(data, SIGNATURE_XML) is None
    with pytest.raises(OfdError):
        parse_signature_xml(data, SIGNATURE_XML)


def test_ofd_xml_root_attribute_value_mentioning_xml_is_read_alike(issued) -> None:
    from adapters.ofd.xmlparts import _find_signatures_xml_tree, find_signatures_xml
    ofd_xml = read_ofd_package(issued[("310000", "valid")]).get("OFD.xml")
    data = ofd_xml.replace(b'DocType="OFD"', b'DocType="OFD" Note="see xml spec"')
    assert data != ofd_xml
    assert find_signatures_xml(data) == _find_signatures_xml_tree(data) == ["Doc_0/Signs/Signatures.xml"]


def test_ofd_xml_root_attribute_named_xml_anything_goes_to_the_tree(issued) -> None:
    from adapters.ofd.xmlparts import (
        _find_signatures_xml_plain,
        _find_signatures_xml_tree,
        find_signatures_xml,
    )
    ofd_xml = read_ofd_package(issued[("310000", "valid")]).get("OFD.xml")
    data = ofd_xml.replace(b'DocType="OFD"', b'DocType="OFD" XMLthing="1"')
    assert _find_signatures_xml_plain(data) is None
    assert find_signatures_xml(data) == _find_signatures_xml_tree(data)


def test_every_check_value_badly_padded_reads_as_no_value_on_both_paths(plain_signature_xml) -> None:
    data = re.sub(rb"<ofd:CheckValue>[^<]*</ofd:CheckValue>", b"<ofd:CheckValue>QUJ</ofd:CheckValue>",
                  plain_signature_xml)
    fast, tree = _both(data)
    assert fast is not None and fast == tree and all(r.check_value is None for r in fast.references)


# --- zip names: byte searches == the name expression -----------------------------------------
def test_name_check_by_byte_searches_equals_the_plain_name_expression_on_random_names() -> None:
    import random

    from adapters.ofd.container import _PLAIN_NAMES, _plain_names
    rng = random.Random(20261127)
    alphabet = b"aZ09_.-/\n\\ :\x00\xff"
    for _ in range(60_000):
        joined = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 14)))
        assert _plain_names(joined) == (_PLAIN_NAMES.fullmatch(joined) is not None), joined


@pytest.mark.parametrize("joined", [b"OFD.xml", b"Doc_0/\nDoc_0/a.xml", b"a\nb/c/d.xml\ne/"])
def test_plain_name_lists_pass_the_byte_searches(joined) -> None:
    from adapters.ofd.container import _PLAIN_NAMES, _plain_names
    assert _plain_names(joined) and _PLAIN_NAMES.fullmatch(joined) is not None


@pytest.mark.parametrize("joined", [b"", b"/OFD.xml", b".x", b"a\n", b"\na", b"a\n\nb", b"a//b", b"a/.b", b"a\n/b",
                                    b"a\n.b", b"a b", b"a\\b", b"a/../b", "文档".encode()])
def test_odd_name_lists_fail_the_byte_searches(joined) -> None:
    from adapters.ofd.container import _PLAIN_NAMES, _plain_names
    assert not _plain_names(joined) and _PLAIN_NAMES.fullmatch(joined) is None


# --- open(): signer certificate path memo, positional KeyRef --------------------------------------
@pytest.mark.parametrize("path", ["Doc_0/Signs/Sign_0/Signature.xml", "Signature.xml", "a/b/c/Signature.xml"])
def test_signer_certificate_path_equals_the_path_arithmetic(path) -> None:
    import posixpath

    from adapters import ofd_seal
    ofd_seal._signer_cert_path.items.clear()
    for _ in range(2):  # computed, then remembered
        assert ofd_seal._signer_cert_path(path) == posixpath.join(posixpath.dirname(path), "SignerCert.der")


def test_signer_certificate_path_memo_stays_bounded() -> None:
    from adapters import ofd_seal
    ofd_seal._signer_cert_path.items.clear()
    for i in range(600):
        assert ofd_seal._signer_cert_path(f"Doc_{i}/Signature.xml") == f"Doc_{i}/SignerCert.der"
        assert len(ofd_seal._signer_cert_path.items) <= 256


def test_envelope_key_ref_equals_the_dataclass_constructor(issued) -> None:
    from adapters.base import KeyRef
    for region in ("310000", "500102"):
        env = FAMILY.open(issued[(region, "valid")], Limits())
        assert env.key_ref == KeyRef(None, env.key_ref.chain) and len(env.key_ref.chain) == 1
