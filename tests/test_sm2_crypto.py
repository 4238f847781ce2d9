"""SM3 / SM2 known answers and sign-verify behaviour of gateway.crypto.sm2."""

from __future__ import annotations

import pytest

from gateway.crypto import sm2 as sm2mod
from gateway.crypto.sm2 import (
    DEFAULT_SIGNER_ID,
    SM2PrivateKey,
    SM2PublicKey,
    der_to_raw_signature,
    raw_to_der_signature,
    sm2_sign,
    sm2_verify,
    sm3,
)

# elicence-facts.md §5 (GB/T 32918 example, recomputed independently)
KAT_PRIVATE = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
KAT_PUBLIC = bytes.fromhex(
    "0409F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
KAT_R = bytes.fromhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3")
KAT_S = bytes.fromhex("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")
KAT_MESSAGE = b"message digest"


@pytest.fixture(scope="module")
def keypair() -> tuple[SM2PrivateKey, SM2PublicKey]:
    priv = SM2PrivateKey.generate()
    return priv, priv.public_key()


def test_sm3_of_abc_matches_the_standard_example() -> None:
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_known_answer_signature_verifies_raw_and_der_with_default_id() -> None:
    pub = SM2PublicKey(KAT_PUBLIC)
    assert sm2_verify(pub, KAT_MESSAGE, KAT_R + KAT_S) is True
    assert sm2_verify(pub, KAT_MESSAGE, raw_to_der_signature(KAT_R + KAT_S)) is True


def test_known_answer_private_key_derives_the_known_public_key() -> None:
    assert SM2PrivateKey.from_scalar(KAT_PRIVATE).public_key().point == KAT_PUBLIC


def test_known_answer_fails_under_another_signer_id() -> None:
    assert sm2_verify(SM2PublicKey(KAT_PUBLIC), KAT_MESSAGE, KAT_R + KAT_S, signer_id=b"ALICE123@YAHOO.COM") is False


def test_fallback_gmalglib_backend_agrees_on_the_known_answer() -> None:
    backend = sm2mod._GmalglibVerifier()
    handle = backend.load(KAT_PUBLIC)
    der = raw_to_der_signature(KAT_R + KAT_S)
    assert backend.verify(handle, KAT_MESSAGE, der, DEFAULT_SIGNER_ID) is True
    assert backend.verify(handle, KAT_MESSAGE + b".", der, DEFAULT_SIGNER_ID) is False


def test_openssl_backend_is_selected_on_this_machine() -> None:
    assert sm2mod.VERIFY_BACKEND == "openssl-libcrypto-cffi"


def test_der_sign_verify_round_trip(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, pub = keypair
    sig = sm2_sign(priv, b"licence bytes")
    assert sig[0] == 0x30 and 68 <= len(sig) <= 72
    assert sm2_verify(pub, b"licence bytes", sig) is True


def test_raw_sign_verify_round_trip_and_conversion(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, pub = keypair
    raw = sm2_sign(priv, b"licence bytes", der=False)
    assert len(raw) == 64
    assert sm2_verify(pub, b"licence bytes", raw) is True
    assert der_to_raw_signature(raw_to_der_signature(raw)) == raw


def test_custom_signer_id_round_trip_and_mismatch(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, pub = keypair
    sig = sm2_sign(priv, b"m", signer_id=b"issuer-330500")
    assert sm2_verify(pub, b"m", sig, signer_id=b"issuer-330500") is True
    assert sm2_verify(pub, b"m", sig) is False


def test_tampered_message_is_rejected(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, pub = keypair
    sig = sm2_sign(priv, b"holder=330502199001011234")
    assert sm2_verify(pub, b"holder=330502199001011235", sig) is False


def test_wrong_key_is_rejected(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, _ = keypair
    other = SM2PrivateKey.generate().public_key()
    assert sm2_verify(other, b"m", sm2_sign(priv, b"m")) is False


@pytest.mark.parametrize("garbage", [
    b"", b"\x30", b"\x00" * 64, b"\xff" * 64, b"\x30\x44" + b"\x00" * 68, b"x" * 71,
    b"\x30\x06\x02\x01\x01\x02\x01\x01", b"\x30\x81\x44" + b"\x02" * 68, bytes(range(256)),
])
def test_garbage_signature_bytes_return_false(keypair: tuple[SM2PrivateKey, SM2PublicKey], garbage: bytes) -> None:
    _, pub = keypair
    assert sm2_verify(pub, b"m", garbage) is False


def test_flipped_bit_in_signature_is_rejected(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, pub = keypair
    raw = bytearray(sm2_sign(priv, b"m", der=False))
    raw[40] ^= 0x01
    assert sm2_verify(pub, b"m", bytes(raw)) is False


def test_over_long_signer_id_returns_false_not_raise(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, pub = keypair
    assert sm2_verify(pub, b"m", sm2_sign(priv, b"m"), signer_id=b"x" * 9000) is False


def test_key_serialisation_round_trips_with_sm2_oids(keypair: tuple[SM2PrivateKey, SM2PublicKey]) -> None:
    priv, pub = keypair
    spki = pub.to_der()
    assert bytes.fromhex("06072a8648ce3d0201") in spki  # id-ecPublicKey 1.2.840.10045.2.1
    assert bytes.fromhex("06082a811ccf5501822d") in spki  # SM2 curve 1.2.156.10197.1.301
    assert SM2PublicKey.from_der(spki) == pub
    assert SM2PublicKey.from_pem(pub.to_pem()) == pub
    assert SM2PrivateKey.from_der(priv.to_der()).scalar == priv.scalar
    assert SM2PrivateKey.from_pem(priv.to_pem()).public_key() == pub


def test_spki_with_bare_sm2_algorithm_oid_loads() -> None:
    # SEQUENCE { SEQUENCE { OID 1.2.156.10197.1.301 }, BIT STRING point }
    alg = bytes.fromhex("300a06082a811ccf5501822d")
    bits = b"\x03\x42\x00" + KAT_PUBLIC
    body = alg + bits
    spki = b"\x30" + bytes([len(body)]) + body
    assert SM2PublicKey.from_der(spki).point == KAT_PUBLIC


@pytest.mark.parametrize("bad_point", [
    b"", KAT_PUBLIC[:-1], b"\x02" + KAT_PUBLIC[1:33], KAT_PUBLIC[:-1] + bytes([KAT_PUBLIC[-1] ^ 1]),
])
def test_invalid_public_points_raise_value_error(bad_point: bytes) -> None:
    with pytest.raises(ValueError):
        SM2PublicKey(bad_point)


def test_p256_spki_is_refused_as_not_sm2() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="not on the SM2 curve"):
        SM2PublicKey.from_der(der)


@pytest.mark.parametrize("bad", [b"", b"\x30\x03\x02\x01", b"not der at all", b"\x00" * 32])
def test_malformed_key_der_raises_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        SM2PublicKey.from_der(bad)
    with pytest.raises(ValueError):
        SM2PrivateKey.from_der(bad)


def test_zero_private_scalar_is_refused() -> None:
    with pytest.raises(ValueError):
        SM2PrivateKey.from_scalar(bytes(32))
