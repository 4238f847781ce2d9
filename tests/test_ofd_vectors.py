"""verify_ofd_signatures over the three independent ofdrw / vendor vectors, and tampering."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from adapters.ofd import OfdError, verify_ofd_signatures
from gateway.crypto.sm2cert import load_sm2_certificate, verify_issued_by
from tests.ofd_support import rezip

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.is_dir():
    VECTORS = Path("/work/shared/vectors/ofd")
UTC = timezone.utc


def _read(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def _files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def _edit_one_byte(content: bytes) -> bytes:
    pos = len(content) // 2
    return content[:pos] + bytes([content[pos] ^ 0x01]) + content[pos + 1:]


@pytest.fixture(scope="module")
def ofdrw_signer():
    return load_sm2_certificate(_read("ofdrw-test-signer-2020.pem"))


@pytest.fixture(scope="module")
def ofdrw_root():
    return load_sm2_certificate(_read("ofdrw-test-root.pem"))


def test_allprotected_seal_passes_every_check(ofdrw_root) -> None:
    result = verify_ofd_signatures(_read("allprotected.ofd"))
    assert result.ok is True
    (sig,) = result.signatures
    assert (sig.type, sig.id) == ("Seal", "001")
    assert len(sig.references) == 6 and sig.references_ok and sig.failed_references == ()
    assert sig.seal_matches is True and sig.data_hash_ok is True and sig.signature_ok is True
    assert sig.signer_bound_to_seal is True and sig.seal_maker_signature_ok is True
    assert sig.signing_time == datetime(2020, 10, 23, 11, 45, 37, tzinfo=UTC)
    assert sig.signature_datetime == "2020-10-23 19:45:37"
    assert sig.seal is not None and sig.seal.name == "OFD R&W 测试用印章" and sig.seal.picture_type == "PNG"
    assert sig.seal.valid_end == datetime(2022, 4, 22, 2, 9, tzinfo=UTC)
    assert sig.provider["ProviderName"] == "ofdrw-sign"
    assert result.unreferenced_files == ()


def test_allprotected_signer_chains_to_ofdrw_root_and_has_expired(ofdrw_root) -> None:
    (sig,) = verify_ofd_signatures(_read("allprotected.ofd")).signatures
    signer = sig.signer_certificate
    assert signer is not None and signer.subject["CN"] == "Test Certificate"
    assert verify_issued_by(signer, ofdrw_root) is True
    assert signer.not_after == datetime(2022, 4, 21, 14, 39, 8, tzinfo=UTC)
    assert sig.seal_maker_certificate is not None
    assert verify_issued_by(sig.seal_maker_certificate, ofdrw_root) is True


def test_v4signed_vendor_seal_passes_without_a_seal_file(ofdrw_root) -> None:
    result = verify_ofd_signatures(_read("v4signed.ofd"))
    assert result.ok is True
    (sig,) = result.signatures
    assert sig.type == "Seal" and sig.seal_path is None and sig.seal_matches is None
    assert len(sig.references) == 13 and sig.references_ok
    assert sig.data_hash_ok is True and sig.signature_ok is True
    assert sig.check_method == "1.2.156.10197.1.401"
    assert sig.signing_time == datetime(2020, 10, 10, 7, 11, 20, tzinfo=UTC)
    assert sig.seal is not None and sig.seal.name.startswith("测试全国统一发票监制章")
    assert sig.signer_certificate is not None and sig.signer_certificate.issuer["CN"] == "税务测试CA2(SM2)"
    assert verify_issued_by(sig.signer_certificate, ofdrw_root) is False
    assert result.unreferenced_files == ("Doc_0/Signs/Signatures.xml",)


def test_digitalsign_verifies_with_the_supplied_signer_certificate(ofdrw_signer, ofdrw_root) -> None:
    result = verify_ofd_signatures(_read("DigitalSign.ofd"), cert_lookup=lambda entry, sx: [ofdrw_signer])
    assert result.ok is True
    (sig,) = result.signatures
    assert sig.type == "Sign" and sig.signature_ok and sig.references_ok
    assert sig.signer_certificate == ofdrw_signer
    assert verify_issued_by(sig.signer_certificate, ofdrw_root) is True
    assert sig.signing_time == datetime(2020, 4, 22, 8, 22, 44, tzinfo=UTC)


def test_digitalsign_fails_without_a_certificate_and_with_the_wrong_one(ofdrw_root) -> None:
    data = _read("DigitalSign.ofd")
    none = verify_ofd_signatures(data).signatures[0]
    assert none.ok is False and none.problems[0].code == "UNKNOWN_ISSUER"
    wrong = verify_ofd_signatures(data, cert_lookup=lambda e, s: [ofdrw_root]).signatures[0]
    assert wrong.ok is False and wrong.signer_certificate is None
    assert any(p.code == "SIGNATURE_INVALID" for p in wrong.problems)


def test_lookup_tries_every_candidate_until_one_verifies(ofdrw_signer, ofdrw_root) -> None:
    result = verify_ofd_signatures(_read("DigitalSign.ofd"), cert_lookup=lambda e, s: [ofdrw_root, ofdrw_signer])
    assert result.ok is True and result.signatures[0].signer_certificate == ofdrw_signer


def _protected_parts(data: bytes, signer=None) -> list[str]:
    lookup = (lambda e, s: [signer]) if signer is not None else None
    (sig,) = verify_ofd_signatures(data, cert_lookup=lookup).signatures
    return [r.path for r in sig.references] + [sig.path, sig.signed_value_path]


@pytest.mark.parametrize("vector", ["allprotected.ofd", "v4signed.ofd", "DigitalSign.ofd"])
def test_one_byte_change_in_each_protected_part_is_caught(vector: str, ofdrw_signer) -> None:
    original = _read(vector)
    files = _files(original)
    parts = _protected_parts(original, ofdrw_signer)
    assert len(parts) >= 6
    lookup = lambda e, s: [ofdrw_signer]  # noqa: E731
    for part in parts:
        tampered = dict(files)
        tampered[part] = _edit_one_byte(files[part])
        try:
            result = verify_ofd_signatures(rezip(tampered), cert_lookup=lookup)
        except OfdError as exc:  # e.g. OFD.xml no longer well-formed: rejected as MALFORMED
            assert exc.code == "MALFORMED", part
            continue
        assert result.ok is False, f"edit of {part} went unnoticed"
        sig = result.signatures[0]
        if part not in (sig.path, sig.signed_value_path):
            assert "/" + part in sig.failed_references, part
        elif part == sig.path and sig.type == "Seal":
            assert sig.data_hash_ok is False
        else:
            assert sig.signature_ok is False or sig.problems


def test_unchanged_rezip_still_verifies(ofdrw_signer) -> None:
    # guards the tamper loop: re-zipping alone must not be what makes it fail
    for vector in ("allprotected.ofd", "v4signed.ofd", "DigitalSign.ofd"):
        result = verify_ofd_signatures(rezip(_files(_read(vector))), cert_lookup=lambda e, s: [ofdrw_signer])
        assert result.ok is True, vector


def test_swapped_seal_file_is_reported_as_seal_mismatch() -> None:
    files = _files(_read("allprotected.ofd"))
    files["Doc_0/Signs/Sign_0/Seal.esl"] = files["Doc_0/Signs/Sign_0/Seal.esl"][:-1] + b"\x00"
    (sig,) = verify_ofd_signatures(rezip(files)).signatures
    assert sig.seal_matches is False
    assert "/Doc_0/Signs/Sign_0/Seal.esl" in sig.failed_references


def test_missing_referenced_file_is_named() -> None:
    files = _files(_read("allprotected.ofd"))
    del files["Doc_0/PublicRes.xml"]
    (sig,) = verify_ofd_signatures(rezip(files)).signatures
    assert sig.ok is False
    assert [(r.file_ref, r.problem) for r in sig.references if not r.ok] == [("/Doc_0/PublicRes.xml", "missing")]


def test_garbage_signed_value_is_a_failed_signature_not_a_crash() -> None:
    files = _files(_read("allprotected.ofd"))
    files["Doc_0/Signs/Sign_0/SignedValue.dat"] = b"\x30\x03\x02\x01\x04"
    (sig,) = verify_ofd_signatures(rezip(files)).signatures
    assert sig.ok is False and sig.signature_ok is False
    assert sig.problems[-1].code in ("MALFORMED", "UNSUPPORTED_FORMAT")


def test_gmt0031_version_is_reported_unsupported() -> None:
    files = _files(_read("allprotected.ofd"))
    sv = bytearray(files["Doc_0/Signs/Sign_0/SignedValue.dat"])
    assert sv[8:11] == b"\x02\x01\x04"  # TBS_Sign.version
    sv[10] = 1
    files["Doc_0/Signs/Sign_0/SignedValue.dat"] = bytes(sv)
    (sig,) = verify_ofd_signatures(rezip(files)).signatures
    assert sig.ok is False and any(p.code == "UNSUPPORTED_FORMAT" for p in sig.problems)


def test_weak_check_method_is_not_allowed() -> None:
    files = _files(_read("allprotected.ofd"))
    files["Doc_0/Signs/Sign_0/Signature.xml"] = files["Doc_0/Signs/Sign_0/Signature.xml"].replace(
        b'CheckMethod="SM3"', b'CheckMethod="MD5"')
    (sig,) = verify_ofd_signatures(rezip(files)).signatures
    assert sig.ok is False
    assert any(p.code == "ALGORITHM_NOT_ALLOWED" for p in sig.problems)
    assert all(r.problem == "check method not allowed" for r in sig.references)
