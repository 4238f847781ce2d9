"""Family ofd-seal: licence data inside a sealed (or Type=Sign) OFD; integrity failures name the part."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest

from adapters import FAMILIES, Limits, detect
from adapters.ofd.xmlparts import parse_signature_datetime
from adapters.ofd_seal import DATA_PART
from gateway.core import Policy, Verifier
from gateway.crypto.sm2 import sm2_sign

from .conftest import NOW

FAMILY = FAMILIES["ofd-seal"]
SEAL_REGION, SIGN_REGION, GB_OFD_REGION = "310000", "500102", "320900"


def issue(world, region=SEAL_REGION):
    return world.simulator.issue(region, "business_licence", "valid", NOW)


def verify(world, data: bytes, verifier=None):
    v = verifier or world.verifier
    return v.verify(data, world.snapshot, world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)), NOW)


def rezip(data: bytes, changes: dict[str, bytes | None]) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename in changes and changes[info.filename] is None:
                continue
            out.writestr(info, changes.get(info.filename) or src.read(info))
    return buf.getvalue()


def test_sealed_licence_is_valid_and_carries_signer_cert_and_seal_time(world):
    issued = issue(world)
    assert detect(issued.data) is FAMILY
    env = FAMILY.open(issued.data, Limits())
    assert env.key_ref.chain == (world.material[SEAL_REGION].issuers[-1].cert.der,)
    assert env.signing_time == NOW and env.extra["type"] == "Seal"
    result = verify(world, issued.data)
    assert result.verdict.value == "valid" and result.licence.holder_code == issued.licence.holder_code


def test_type_sign_licence_is_valid(world):
    data = issue(world, SIGN_REGION).data
    env = FAMILY.open(data, Limits())
    assert env.extra["type"] == "Sign"
    assert verify(world, data).verdict.value == "valid"


def test_gb18030_data_part_is_read(world):
    assert world.specs[GB_OFD_REGION].text_encoding == "gb18030"
    data = issue(world, GB_OFD_REGION).data
    assert b'encoding="GB18030"' in zipfile.ZipFile(io.BytesIO(data)).read(DATA_PART)[:60]
    assert verify(world, data).verdict.value == "valid"


#: parts the reader parses itself (a flipped byte may break their syntax or the certificate first)
STRUCTURAL = ("OFD.xml", "Signatures.xml", "Signature.xml", "SignedValue.dat", "SignerCert.der", DATA_PART)


@pytest.mark.parametrize("region", [SEAL_REGION, SIGN_REGION])
def test_one_byte_change_in_every_protected_part_is_signature_invalid_or_malformed(world, region):
    data = issue(world, region).data
    env = FAMILY.open(data, Limits())
    src = zipfile.ZipFile(io.BytesIO(data))
    parts = sorted({r.path for r in env.extra["sx"].references} | {env.extra["signature_path"],
                                                                  env.extra["sx"].signed_value_path})
    assert DATA_PART in parts
    for part in parts:
        content = src.read(part)
        pos = len(content) // 2
        result = verify(world, rezip(data, {part: content[:pos] + bytes([content[pos] ^ 1]) + content[pos + 1:]}))
        assert result.verdict.value == "invalid", part
        if part.endswith(STRUCTURAL):
            assert result.reason_codes[0] in ("SIGNATURE_INVALID", "MALFORMED", "UNTRUSTED_CHAIN"), part
        else:
            assert result.reason_codes == ("SIGNATURE_INVALID",), part
            assert part in result.reasons[0].detail


def test_altered_data_part_names_the_part(world):
    result = verify(world, FAMILY.tamper(issue(world).data))
    assert result.reason_codes == ("SIGNATURE_INVALID",) and DATA_PART in result.reasons[0].detail


def test_seal_file_swapped_is_signature_invalid(world):
    # an issuer seals every licence with its one seal: the swap takes another issuer's genuine seal
    a, b = issue(world).data, issue(world, GB_OFD_REGION).data
    seal = zipfile.ZipFile(io.BytesIO(b)).read("Doc_0/Signs/Sign_0/Seal.esl")
    assert seal != zipfile.ZipFile(io.BytesIO(a)).read("Doc_0/Signs/Sign_0/Seal.esl")
    result = verify(world, rezip(a, {"Doc_0/Signs/Sign_0/Seal.esl": seal}))
    assert result.reason_codes == ("SIGNATURE_INVALID",) and "Seal.esl" in result.reasons[0].detail


def test_signature_xml_from_another_licence_is_caught(world):
    a, b = issue(world).data, issue(world).data
    path = "Doc_0/Signs/Sign_0/Signature.xml"
    result = verify(world, rezip(a, {path: zipfile.ZipFile(io.BytesIO(b)).read(path)}))
    assert result.verdict.value == "invalid" and result.reason_codes[0] == "SIGNATURE_INVALID"


def test_sign_without_certificate_is_unknown_issuer(world):
    data = rezip(issue(world, SIGN_REGION).data, {"Doc_0/Signs/Sign_0/SignerCert.der": None})
    assert verify(world, data).reason_codes == ("UNKNOWN_ISSUER",)


def test_truncated_package_is_malformed(world):
    assert verify(world, FAMILY.malformed(issue(world).data)).reason_codes == ("MALFORMED",)


def test_package_over_the_zip_entry_limit_is_malformed(world):
    tight = Verifier(Policy(limits=Limits(max_zip_entries=5)), world.specs, world.verifier.type_names)
    result = verify(world, issue(world).data, tight)
    assert result.reason_codes == ("MALFORMED",) and "entries" in result.reasons[0].detail


def test_path_traversal_entry_is_malformed(world):
    data = issue(world).data
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("../../etc/evil.xml", b"<x/>")
    assert verify(world, buf.getvalue()).reason_codes == ("MALFORMED",)


def test_ofd_larger_than_licence_limit_uses_zip_limits_not_licence_limit(world):
    small = Verifier(Policy(limits=Limits(max_licence_bytes=1024)), world.specs, world.verifier.type_names)
    data = issue(world).data
    assert len(data) > 1024
    assert verify(world, data, small).verdict.value == "valid"


def test_zip_entry_needing_a_newer_zip_version_than_the_reader_is_unsupported_format(world):
    # "version needed to extract" 6.7 in the central directory: zipfile raises NotImplementedError while
    # opening the package (was indeterminate / INTERNAL)
    data = bytearray(issue(world).data)
    data[data.index(b"PK\x01\x02") + 6] = 67
    result = verify(world, bytes(data))
    assert result.verdict.value == "invalid" and result.reason_codes == ("UNSUPPORTED_FORMAT",)
    assert "zip file version 6.7" in result.reasons[0].detail


@pytest.mark.parametrize("when", ["0001-01-01 00:00:00", "0001-01-01 07:59:59", "00010101000000", "0001-01-01T00:00:00"])
def test_type_sign_signature_time_before_year_one_in_utc_is_unreadable_not_an_internal_error(world, when):
    # Beijing time whose UTC instant falls before year 1: was OverflowError -> indeterminate / INTERNAL; now
    # unreadable, as parse_signature_datetime answers for any value it cannot read, and an unreadable
    # SignatureDateTime is MALFORMED (session 17; it was taken as "no signing time")
    assert parse_signature_datetime(when) is None
    _assert_unreadable_signature_time_is_malformed(world, when.encode())


def _with_signature_time(world, value: bytes, resign: bool) -> bytes:
    path, signed_value = "Doc_0/Signs/Sign_0/Signature.xml", "Doc_0/Signs/Sign_0/SignedValue.dat"
    data = issue(world, SIGN_REGION).data
    sig_xml = zipfile.ZipFile(io.BytesIO(data)).read(path)
    start = sig_xml.index(b"SignatureDateTime>") + len(b"SignatureDateTime>")
    altered = sig_xml[:start] + value + sig_xml[sig_xml.index(b"<", start):]
    if not resign:
        return rezip(data, {path: altered})
    key = world.material[SIGN_REGION].issuers[-1].private_key  # genuinely signed by the region's TEST key
    return rezip(data, {path: altered, signed_value: sm2_sign(key, altered)})


def _assert_unreadable_signature_time_is_malformed(world, value: bytes) -> None:
    for resign in (False, True):
        result = verify(world, _with_signature_time(world, value, resign))
        assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",), (resign, result.reason_codes)
        assert "SignatureDateTime" in result.reasons[0].detail and result.signing_time is None


@pytest.mark.parametrize("when", [b"yesterday", b"2026-13-01 00:00:00", b"2026-02-30 10:00:00", b"20261301120000",
                                  "２０２６-０３-０２ ０９:３０:００".encode()])
def test_type_sign_signature_time_that_is_no_time_is_malformed_even_when_genuinely_signed(world, when):
    # was taken as "no signing time": the signer's certificate then judged at now, not when the signer wrote
    _assert_unreadable_signature_time_is_malformed(world, when)


def test_type_sign_without_a_signature_time_is_judged_at_now_and_valid(world):
    # an empty SignatureDateTime is an absent one (the control for the tests above)
    result = verify(world, _with_signature_time(world, b"", resign=True))
    assert result.verdict.value == "valid" and result.signing_time is None


@pytest.mark.parametrize("region", [SEAL_REGION, SIGN_REGION])
def test_signer_certificate_with_x509_version_91_is_malformed(world, region):
    # cryptography's InvalidVersion is no ValueError: it escaped load_certificate (indeterminate / INTERNAL)
    version_3, version_91 = b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x5b"
    part = "Doc_0/Signs/Sign_0/" + ("SignerCert.der" if region == SIGN_REGION else "SignedValue.dat")
    data = issue(world, region).data
    content = zipfile.ZipFile(io.BytesIO(data)).read(part)
    assert version_3 in content
    result = verify(world, rezip(data, {part: content.replace(version_3, version_91)}))
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
    assert "91 is not a valid X509 version" in result.reasons[0].detail
