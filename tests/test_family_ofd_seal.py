"""Family ofd-seal: licence data inside a sealed (or Type=Sign) OFD; integrity failures name the part."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest

from adapters import FAMILIES, Limits, detect
from adapters.ofd_seal import DATA_PART
from gateway.core import Policy, Verifier

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
