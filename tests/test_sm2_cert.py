"""SM2 X.509 certificates: the ofdrw vectors, built chains, tampering and bad input."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.crypto.sm2 import OID_SM2_WITH_SM3, SM2PrivateKey
from gateway.crypto.sm2cert import (
    CA_KEY_USAGE,
    LEAF_KEY_USAGE,
    issue_sm2_certificate,
    load_sm2_certificate,
    verify_issued_by,
)

# shared/ lies beside the work tree (also in CI, beside the fresh clone)
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.is_dir():
    VECTORS = Path("/work/shared/vectors/ofd")

UTC = timezone.utc
T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2035, 1, 1, tzinfo=UTC)
ROOT_NAME = {"C": "CN", "ST": "浙江省", "L": "湖州市", "O": "湖州市数据局（测试）", "CN": "Huzhou TEST Root CA"}
LEAF_NAME = {"C": "CN", "O": "湖州市市场监督管理局（测试）", "CN": "TEST licence signer 330500"}


@pytest.fixture(scope="module")
def ofdrw_root():
    return load_sm2_certificate((VECTORS / "ofdrw-test-root.pem").read_bytes())


@pytest.fixture(scope="module")
def ofdrw_signer():
    return load_sm2_certificate((VECTORS / "ofdrw-test-signer-2020.pem").read_bytes())


@pytest.fixture(scope="module")
def built_chain():
    root_key, leaf_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    root_der = issue_sm2_certificate(ROOT_NAME, root_key.public_key(), ROOT_NAME, root_key, 1, T0, T1, True, path_len=0)
    leaf_der = issue_sm2_certificate(LEAF_NAME, leaf_key.public_key(), ROOT_NAME, root_key, 0x1234, T0,
                                     datetime(2027, 1, 1, tzinfo=UTC), False)
    return root_key, leaf_key, root_der, leaf_der


def test_ofdrw_signer_reads_names_dates_and_flags(ofdrw_signer) -> None:
    c = ofdrw_signer
    assert c.subject["CN"] == "Test Certificate"
    assert c.subject_str == "CN=Test Certificate,L=Hangzhou,ST=Zhejiang,O=OFD R&W,C=CN"
    assert c.issuer["CN"] == "OFD Reader and WriterROOT Certificate"
    assert c.serial == 0x1719D2DAB60
    assert c.not_before == datetime(2020, 4, 21, 14, 39, 8, tzinfo=UTC)
    assert c.not_after == datetime(2022, 4, 21, 14, 39, 8, tzinfo=UTC)
    assert c.not_before.tzinfo is not None
    assert c.is_ca is False
    assert c.key_usage == {"digital_signature", "non_repudiation", "key_cert_sign"}
    assert c.signature_algorithm == OID_SM2_WITH_SM3
    assert c.public_key.point.hex().startswith("040cd16493dc8522549d")


def test_ofdrw_signer_is_valid_only_inside_2020_to_2022(ofdrw_signer) -> None:
    assert ofdrw_signer.valid_at(datetime(2021, 6, 1, tzinfo=UTC)) is True
    assert ofdrw_signer.valid_at(datetime(2022, 4, 22, tzinfo=UTC)) is False
    assert ofdrw_signer.valid_at(datetime(2020, 4, 20, tzinfo=UTC)) is False


def test_ofdrw_root_is_a_self_issued_ca(ofdrw_root) -> None:
    assert ofdrw_root.is_ca is True
    assert ofdrw_root.is_self_issued is True
    assert ofdrw_root.not_after == datetime(2030, 4, 21, 14, 37, 10, tzinfo=UTC)
    assert verify_issued_by(ofdrw_root, ofdrw_root) is True


def test_ofdrw_signer_verifies_as_issued_by_ofdrw_root(ofdrw_signer, ofdrw_root) -> None:
    assert verify_issued_by(ofdrw_signer, ofdrw_root) is True


def test_ofdrw_signer_is_not_issued_by_itself_nor_root_by_signer(ofdrw_signer, ofdrw_root) -> None:
    assert verify_issued_by(ofdrw_signer, ofdrw_signer) is False
    assert verify_issued_by(ofdrw_root, ofdrw_signer) is False


def test_key_id_is_unpadded_base64url_sha256_of_der(ofdrw_root) -> None:
    expected = base64.urlsafe_b64encode(hashlib.sha256(ofdrw_root.der).digest()).rstrip(b"=").decode()
    assert ofdrw_root.key_id == expected and "=" not in expected and len(expected) == 43


def test_pem_and_der_load_to_the_same_certificate(ofdrw_root) -> None:
    again = load_sm2_certificate(ofdrw_root.der)
    assert again == ofdrw_root and hash(again) == hash(ofdrw_root)
    assert load_sm2_certificate(ofdrw_root.to_pem()) == ofdrw_root


def test_built_ca_and_leaf_round_trip_and_chain(built_chain) -> None:
    root_key, leaf_key, root_der, leaf_der = built_chain
    root, leaf = load_sm2_certificate(root_der), load_sm2_certificate(leaf_der)
    assert root.subject == ROOT_NAME and root.is_ca and root.path_len == 0 and root.key_usage == CA_KEY_USAGE
    assert leaf.subject == LEAF_NAME and leaf.issuer == ROOT_NAME and not leaf.is_ca
    assert leaf.key_usage == LEAF_KEY_USAGE and leaf.serial == 0x1234
    assert leaf.public_key == leaf_key.public_key() and root.public_key == root_key.public_key()
    assert leaf.authority_key_id == root.subject_key_id is not None
    assert leaf.not_after == datetime(2027, 1, 1, tzinfo=UTC)
    assert verify_issued_by(root, root) is True
    assert verify_issued_by(leaf, root) is True
    assert verify_issued_by(root, leaf) is False


def test_leaf_with_one_flipped_byte_in_tbs_fails(built_chain) -> None:
    _, _, root_der, leaf_der = built_chain
    root = load_sm2_certificate(root_der)
    assert load_sm2_certificate(leaf_der).subject["CN"] == LEAF_NAME["CN"]  # the unmodified leaf parses
    # flip a byte of the subject CN inside the TBS: still parses, no longer verifies
    cn = LEAF_NAME["CN"].encode()
    pos = leaf_der.index(cn)
    forged = bytearray(leaf_der)
    forged[pos] ^= 0x01
    forged_cert = load_sm2_certificate(bytes(forged))
    assert forged_cert.subject["CN"] != LEAF_NAME["CN"]
    assert verify_issued_by(forged_cert, root) is False


def test_leaf_signed_by_another_key_with_the_same_issuer_name_fails(built_chain) -> None:
    _, leaf_key, root_der, _ = built_chain
    impostor = SM2PrivateKey.generate()
    forged = issue_sm2_certificate(LEAF_NAME, leaf_key.public_key(), ROOT_NAME, impostor, 7, T0, T1, False)
    assert verify_issued_by(load_sm2_certificate(forged), load_sm2_certificate(root_der)) is False


def test_issuer_name_mismatch_fails_even_with_the_right_key(built_chain) -> None:
    root_key, leaf_key, root_der, _ = built_chain
    other_name = dict(ROOT_NAME, CN="Another TEST CA")
    cert = issue_sm2_certificate(LEAF_NAME, leaf_key.public_key(), other_name, root_key, 9, T0, T1, False)
    assert verify_issued_by(load_sm2_certificate(cert), load_sm2_certificate(root_der)) is False


def test_p256_certificate_is_refused_as_not_sm2() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "p256 TEST")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(T0).not_valid_after(T1).sign(key, hashes.SHA256()))
    with pytest.raises(ValueError, match="not an SM2 key"):
        load_sm2_certificate(cert.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("bad", [
    b"", b"hello", b"\x30\x03\x02\x01\x01", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
])
def test_malformed_certificate_input_raises_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        load_sm2_certificate(bad)


def test_truncated_certificate_raises_value_error(ofdrw_root) -> None:
    with pytest.raises(ValueError, match="malformed"):
        load_sm2_certificate(ofdrw_root.der[:-10])


@pytest.mark.parametrize("kwargs,match", [
    ({"serial": 0}, "serial"),
    ({"not_after": T0}, "not_after"),
    ({"path_len": 1, "is_ca": False}, "path_len"),
    ({"key_usage": {"fly"}}, "key usage"),
    ({"not_before": datetime(2025, 1, 1)}, "timezone"),
])
def test_builder_refuses_bad_parameters(kwargs, match) -> None:
    key = SM2PrivateKey.generate()
    args = dict(subject=LEAF_NAME, public_key=key.public_key(), issuer_subject=LEAF_NAME, issuer_key=key,
                serial=1, not_before=T0, not_after=T1, is_ca=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        issue_sm2_certificate(**args)
