"""The plain DER walk of SESeal (adapters.ofd.ses._parse_seal_plain) equals asn1crypto's reading
for every seal it accepts, and hands anything else to asn1crypto (which decides and words errors)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from asn1crypto import core

from adapters.ofd.container import read_ofd_package
from adapters.ofd.ses import (
    CERT_LIST_DIGESTS,
    SESeal,
    SesFormatError,
    _parse_asn1,
    _parse_seal_plain,
    build_seal,
    parse_seal,
    parse_ses_signature,
)
from gateway.crypto.sm2 import SM2PrivateKey
from gateway.crypto.sm2cert import issue_sm2_certificate

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.is_dir():
    VECTORS = Path("/work/shared/vectors/ofd")
UTC = timezone.utc
T0, T1 = datetime(2025, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
NAME = {"C": "CN", "O": "嘉兴市市场监督管理局（测试）", "CN": "TEST seal maker 330400"}


@pytest.fixture(scope="module")
def maker():
    key = SM2PrivateKey.generate()
    return key, issue_sm2_certificate(NAME, key.public_key(), NAME, key, 7, T0, T1, False)


def _seal(maker, **kw) -> bytes:
    key, cert = maker
    args = dict(name="嘉兴市电子证照专用章（测试）", es_id="33040000001", signer_cert_der=cert, maker_key=key,
                maker_cert_der=cert, created=T0, valid_start=T0, valid_end=T1, picture=b"<svg/>")
    args.update(kw)
    return build_seal(**args)


def _asn1(der: bytes):
    return parse_seal(SESeal.load(der, strict=True))


def test_simulator_seal_read_by_the_walk_equals_asn1crypto(maker) -> None:
    der = _seal(maker)
    fast = _parse_seal_plain(der)
    assert fast is not None
    assert fast == _asn1(der)
    assert fast.name == "嘉兴市电子证照专用章（测试）" and fast.valid_end == T1 and fast.certs == (maker[1],)


def test_seal_with_large_picture_dimensions_and_seal_type_equals_asn1crypto(maker) -> None:
    der = _seal(maker, width_mm=300, height_mm=65535, seal_type=129, picture=b"x" * 70000)
    fast = _parse_seal_plain(der)
    assert fast is not None and fast == _asn1(der)
    assert (fast.picture_width, fast.picture_height, fast.seal_type) == (300, 65535, 129)


def test_ofdrw_vector_seal_read_by_the_walk_equals_asn1crypto() -> None:
    der = read_ofd_package((VECTORS / "allprotected.ofd").read_bytes()).get("Doc_0/Signs/Sign_0/Seal.esl")
    fast = _parse_seal_plain(der)
    assert fast is not None and fast == _asn1(der)


def test_vendor_seal_with_ext_datas_is_left_to_asn1crypto_and_read_the_same() -> None:
    data = read_ofd_package((VECTORS / "v4signed.ofd").read_bytes()).get("Doc_0/Signs/Sign_0/SignedValue.dat")
    reference = _parse_asn1(data)
    assert _parse_seal_plain(reference.seal.der) is None  # extDatas: not the plain shape
    assert parse_ses_signature(data) == reference


def test_negative_picture_height_is_left_to_asn1crypto(maker) -> None:
    der = _seal(maker)
    # the picture height (INTEGER 40, the last one) made negative: the high bit of its only octet set
    pos = der.rindex(b"\x02\x01\x28")
    hostile = der[:pos] + b"\x02\x01\xa8" + der[pos + 3:]
    assert _parse_seal_plain(hostile) is None
    assert _asn1(hostile).picture_height == -88  # asn1crypto reads it; the reference decides


def test_truncated_seal_is_refused_by_both_readers(maker) -> None:
    der = _seal(maker)[:-5]
    assert _parse_seal_plain(der) is None
    with pytest.raises(Exception):
        _asn1(der)


def test_seal_with_trailing_bytes_is_not_accepted_by_the_walk(maker) -> None:
    assert _parse_seal_plain(_seal(maker) + b"\x00\x00") is None


def test_unknown_cert_list_type_is_left_to_asn1crypto_which_refuses_it(maker) -> None:
    der = _seal(maker)
    marker = b"\x02\x01\x01\x30"  # certListType 1 followed by the certificate list
    pos = der.index(marker)
    hostile = der[:pos] + b"\x02\x01\x09\x30" + der[pos + 4:]
    assert _parse_seal_plain(hostile) is None
    with pytest.raises(SesFormatError):
        _asn1(hostile)


def test_digest_cert_list_equals_asn1crypto(maker) -> None:
    digest_obj = b"\x30\x26\x13\x03SM3\x04\x1f" + b"\x11" * 31  # CertDigestObj { "SM3", 31 octets }
    seal = SESeal.load(_seal(maker), strict=True)
    info = seal["eseal_info"].copy()
    info["property"]["cert_list_type"] = CERT_LIST_DIGESTS
    info["property"]["cert_list"] = core.Any.load(b"\x30\x28" + digest_obj)
    der = SESeal({"eseal_info": info, "cert": seal["cert"].native, "sign_alg_id": seal["sign_alg_id"].dotted,
                  "signed_value": seal["signed_value"].native}).dump(force=True)
    fast = _parse_seal_plain(der)
    assert fast is not None and fast == _asn1(der)
    assert fast.cert_digests == (("SM3", b"\x11" * 31),) and fast.certs == ()
