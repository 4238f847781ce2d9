"""build_sealed_ofd: its output verifies with the verifier and mirrors the real layout."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone

import pytest

from adapters.ofd import OfdError, verify_ofd_signatures
from adapters.ofd.build import build_sealed_ofd
from adapters.ofd.ses import parse_ses_signature
from gateway.crypto.sm2 import SM2PrivateKey, sm3
from gateway.crypto.sm2cert import (
    issue_sm2_certificate,
    load_sm2_certificate,
    verify_issued_by,
)
from tests.ofd_support import rezip

UTC = timezone.utc
T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2030, 1, 1, tzinfo=UTC)
SIGNED_AT = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
ROOT = {"C": "CN", "O": "湖州市数据局（测试）", "CN": "Huzhou TEST Root CA"}
SIGNER = {"C": "CN", "O": "湖州市市场监督管理局（测试）", "CN": "TEST seal signer 330500"}
MAKER = {"C": "CN", "O": "湖州市公安局（测试）", "CN": "TEST seal maker"}
LICENCE_XML = ('<?xml version="1.0" encoding="UTF-8"?><Licence><Identifier>1.2.156.3005.2.'
               "11100000000013338W009.11330105002500287C.2025052201.002.0</Identifier>"
               "<HolderName>测试企业有限公司</HolderName></Licence>").encode()
PAGE = (b'<?xml version="1.0" encoding="UTF-8"?><ofd:Page xmlns:ofd="http://www.ofdspec.org/2016">'
        b'<ofd:Content><ofd:Layer ID="3"><ofd:TextObject ID="4" Boundary="20 20 100 10" Font="1" Size="5">'
        b'<ofd:TextCode X="0" Y="5">TEST</ofd:TextCode></ofd:TextObject></ofd:Layer></ofd:Content></ofd:Page>')


@pytest.fixture(scope="module")
def trust():
    root_key, signer_key, maker_key = SM2PrivateKey.generate(), SM2PrivateKey.generate(), SM2PrivateKey.generate()
    root = issue_sm2_certificate(ROOT, root_key.public_key(), ROOT, root_key, 1, T0, T1, True, path_len=0)
    signer = issue_sm2_certificate(SIGNER, signer_key.public_key(), ROOT, root_key, 2, T0, T1, False)
    maker = issue_sm2_certificate(MAKER, maker_key.public_key(), ROOT, root_key, 3, T0, T1, False)
    return {"root": root, "signer_key": signer_key, "signer": signer, "maker_key": maker_key, "maker": maker}


@pytest.fixture(scope="module")
def built(trust) -> bytes:
    return build_sealed_ofd({"Doc_0/Attachs/licence.xml": LICENCE_XML, "Doc_0/Pages/Page_0/Content.xml": PAGE},
                            trust["signer_key"], trust["signer"], "湖州市市场监督管理局电子证照专用章（测试）", SIGNED_AT)


def _files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def test_built_ofd_verifies_and_reports_signer_seal_and_time(built, trust) -> None:
    result = verify_ofd_signatures(built)
    assert result.ok is True and result.unreferenced_files == ()
    (sig,) = result.signatures
    assert sig.type == "Seal" and sig.seal_matches and sig.data_hash_ok and sig.signature_ok
    assert sig.signer_bound_to_seal is True and sig.seal_maker_signature_ok is True
    assert sig.signing_time == SIGNED_AT
    assert sig.signature_datetime == "2026-03-02 09:30:00"  # written in Beijing time like ofdrw
    assert sig.signer_certificate == load_sm2_certificate(trust["signer"])
    assert verify_issued_by(sig.signer_certificate, load_sm2_certificate(trust["root"])) is True
    assert sig.seal is not None and sig.seal.name == "湖州市市场监督管理局电子证照专用章（测试）"
    assert (sig.seal.valid_start, sig.seal.valid_end) == (T0, T1)


def test_built_layout_mirrors_the_ofdrw_vector(built) -> None:
    files = _files(built)
    for path in ("OFD.xml", "Doc_0/Document.xml", "Doc_0/PublicRes.xml", "Doc_0/Pages/Page_0/Content.xml",
                 "Doc_0/Signs/Signatures.xml", "Doc_0/Signs/Sign_0/Signature.xml",
                 "Doc_0/Signs/Sign_0/Seal.esl", "Doc_0/Signs/Sign_0/SignedValue.dat", "Doc_0/Attachs/licence.xml"):
        assert path in files, path
    assert b"<ofd:Signatures>/Doc_0/Signs/Signatures.xml</ofd:Signatures>" in files["OFD.xml"]
    assert b'Type="Seal" BaseLoc="/Doc_0/Signs/Sign_0/Signature.xml"' in files["Doc_0/Signs/Signatures.xml"]
    sx = files["Doc_0/Signs/Sign_0/Signature.xml"]
    assert b"<ofd:Seal><ofd:BaseLoc>/Doc_0/Signs/Sign_0/Seal.esl</ofd:BaseLoc></ofd:Seal>" in sx
    assert b"<ofd:SignatureMethod>1.2.156.10197.1.501</ofd:SignatureMethod>" in sx
    ses = parse_ses_signature(files["Doc_0/Signs/Sign_0/SignedValue.dat"])
    assert ses.version == 4 and ses.data_hash == sm3(sx)
    assert ses.seal.der == files["Doc_0/Signs/Sign_0/Seal.esl"]
    assert ses.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"


def test_build_is_deterministic_apart_from_signature_randomness(trust) -> None:
    args = ({"Doc_0/Attachs/licence.xml": LICENCE_XML}, trust["signer_key"], trust["signer"], "章", SIGNED_AT)
    a, b = _files(build_sealed_ofd(*args)), _files(build_sealed_ofd(*args))
    signed = {"Doc_0/Signs/Sign_0/Seal.esl", "Doc_0/Signs/Sign_0/Signature.xml", "Doc_0/Signs/Sign_0/SignedValue.dat"}
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k not in signed} == {k: v for k, v in b.items() if k not in signed}
    # the SM2 signatures (seal maker's and signer's) use a fresh random k each time
    assert a["Doc_0/Signs/Sign_0/SignedValue.dat"] != b["Doc_0/Signs/Sign_0/SignedValue.dat"]


def test_one_byte_change_in_each_built_part_is_caught(built) -> None:
    files = _files(built)
    for part in files:
        tampered = dict(files)
        pos = len(files[part]) // 2
        tampered[part] = files[part][:pos] + bytes([files[part][pos] ^ 0x01]) + files[part][pos + 1:]
        try:
            result = verify_ofd_signatures(rezip(tampered))
        except OfdError:
            continue
        assert result.ok is False, part


def test_separate_seal_maker_is_recorded_and_verified(trust) -> None:
    data = build_sealed_ofd({"Doc_0/Attachs/licence.xml": LICENCE_XML}, trust["signer_key"], trust["signer"],
                            "章", SIGNED_AT, maker_key=trust["maker_key"], maker_cert_der=trust["maker"])
    (sig,) = verify_ofd_signatures(data).signatures
    assert sig.ok and sig.seal_maker_signature_ok is True
    assert sig.seal_maker_certificate is not None and sig.seal_maker_certificate.subject["CN"] == "TEST seal maker"


def test_seal_signed_with_a_key_other_than_its_certificate_fails(trust) -> None:
    data = build_sealed_ofd({"Doc_0/Attachs/licence.xml": LICENCE_XML}, trust["signer_key"], trust["signer"],
                            "章", SIGNED_AT, maker_key=SM2PrivateKey.generate(), maker_cert_der=trust["maker"])
    (sig,) = verify_ofd_signatures(data).signatures
    assert sig.ok is False and sig.seal_maker_signature_ok is False and sig.signature_ok is True


def test_builder_refuses_a_certificate_not_matching_the_key(trust) -> None:
    with pytest.raises(ValueError, match="public key"):
        build_sealed_ofd({}, SM2PrivateKey.generate(), trust["signer"], "章", SIGNED_AT)


@pytest.mark.parametrize("name", ["OFD.xml", "Doc_0/Signs/Sign_0/Seal.esl", "../x.xml", "/abs.xml"])
def test_builder_refuses_paths_it_owns_or_unsafe_paths(trust, name: str) -> None:
    with pytest.raises(ValueError):
        build_sealed_ofd({name: b"<x/>"}, trust["signer_key"], trust["signer"], "章", SIGNED_AT)


def test_builder_refuses_naive_signing_time(trust) -> None:
    with pytest.raises(ValueError, match="aware"):
        build_sealed_ofd({}, trust["signer_key"], trust["signer"], "章", datetime(2026, 1, 1))
