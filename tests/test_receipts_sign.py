"""Signed verification receipts: offline verification and tampering."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import RECEIPT_INVALID, RequestRejected
from gateway.receipts import ReceiptSigner, jwks, request_digest, verify_receipt

# TEST keys, derived from fixed public values: never use them outside tests
ED_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
EC_KEY = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
T = datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
BODY = b'{"licence":"...","item":"330000-ITEM-001"}'
LICENCE = "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0"


def signer(kind: str) -> ReceiptSigner:
    return ReceiptSigner(ED_KEY if kind == "EdDSA" else EC_KEY, f"test-receipt-{kind}", "gw-huzhou-test")


def receipt(s: ReceiptSigner) -> str:
    return s.sign(request_body=BODY, verdict="invalid", reasons=["LICENCE_EXPIRED"], item="330000-ITEM-001",
                  time=T, licence_ids=[LICENCE])


def b64(d: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(d)).rstrip(b"=").decode()


def reject_detail(token: str, keyset: dict[str, object], **kw: object) -> str:
    with pytest.raises(RequestRejected) as exc:
        verify_receipt(token, keyset, **kw)  # type: ignore[arg-type]
    assert exc.value.reason is RECEIPT_INVALID
    return exc.value.detail or ""


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_receipt_verifies_offline_with_the_published_key_set(alg: str) -> None:
    s = signer(alg)
    claims = verify_receipt(receipt(s), s.jwks(), request_body=BODY)
    assert claims == {"gateway": "gw-huzhou-test", "request_digest": request_digest(BODY), "verdict": "invalid",
                      "reasons": ["LICENCE_EXPIRED"], "item": "330000-ITEM-001", "licence_ids": [LICENCE],
                      "time": "2025-03-01T08:30:15.123456Z", "iat": int(T.timestamp())}


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_receipt_is_a_standard_jws_that_pyjwt_accepts(alg: str) -> None:
    s = signer(alg)
    key = jwt.PyJWK(s.jwk())
    claims = jwt.decode(receipt(s), key.key, algorithms=[alg])
    assert claims["verdict"] == "invalid"


def test_request_digest_is_b64url_sha256() -> None:
    assert request_digest(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_receipt_with_an_edited_verdict_fails(alg: str) -> None:
    s = signer(alg)
    h, p, sig = receipt(s).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(p + "=="))
    claims["verdict"] = "valid"
    claims["reasons"] = []
    assert "signature does not verify" in reject_detail(f"{h}.{b64(claims)}.{sig}", s.jwks())


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_receipt_with_a_flipped_signature_byte_fails(alg: str) -> None:
    s = signer(alg)
    h, p, sig = receipt(s).split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[10] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert "signature does not verify" in reject_detail(f"{h}.{p}.{forged}", s.jwks())


def test_receipt_replayed_for_another_request_body_fails() -> None:
    s = signer("EdDSA")
    assert "different request body" in reject_detail(receipt(s), s.jwks(), request_body=BODY + b" ")


def test_alg_none_downgrade_is_rejected() -> None:
    s = signer("EdDSA")
    _, p, _ = receipt(s).split(".")
    header = b64({"alg": "none", "kid": s.kid, "typ": "elicence-receipt+jws"})
    assert "alg 'none'" in reject_detail(f"{header}.{p}.AA", s.jwks())


def test_hs256_with_the_public_key_as_secret_is_rejected() -> None:
    s = signer("EdDSA")
    x = s.jwk()["x"]
    forged = jwt.encode({"verdict": "valid"}, x, algorithm="HS256",
                        headers={"kid": s.kid, "typ": "elicence-receipt+jws"})
    assert "alg 'HS256'" in reject_detail(forged, s.jwks())


def test_receipt_signed_with_an_unpublished_key_is_rejected() -> None:
    rogue = ReceiptSigner(Ed25519PrivateKey.generate(), "test-receipt-EdDSA", "gw-huzhou-test")
    assert "signature does not verify" in reject_detail(receipt(rogue), signer("EdDSA").jwks())


def test_unknown_kid_is_rejected() -> None:
    assert "unknown kid" in reject_detail(receipt(signer("EdDSA")), signer("ES256").jwks())


def test_ec_key_published_under_an_eddsa_kid_does_not_verify_an_eddsa_token() -> None:
    ed, es = signer("EdDSA"), signer("ES256")
    swapped = {"keys": [{**es.jwk(), "kid": ed.kid}]}
    assert "does not match the key" in reject_detail(receipt(ed), swapped)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "a.b.c\n", "é.b.c", "x" * 20000,
                                   "eyJhbGciOiJFZERTQSJ9.e30.AA"])
def test_garbage_tokens_are_rejected_not_crashed(token: str) -> None:
    reject_detail(token, signer("EdDSA").jwks())


def test_receipt_missing_claims_is_rejected() -> None:
    s = signer("EdDSA")
    from gateway.audit.jws import JwsSigner
    token = JwsSigner(ED_KEY, s.kid, "elicence-receipt+jws").sign({"verdict": "valid"})
    assert "claim 'gateway'" in reject_detail(token, s.jwks())


def test_checkpoint_token_is_not_accepted_as_a_receipt() -> None:
    from gateway.audit import CheckpointSigner
    cp = CheckpointSigner(ED_KEY, "test-receipt-EdDSA").sign(1, "a" * 64, T)
    assert "typ" in reject_detail(cp.jws, signer("EdDSA").jwks())


def test_key_set_publishes_every_signer_with_its_kid_and_alg() -> None:
    ks = jwks(signer("EdDSA"), signer("ES256"))
    assert [(k["kid"], k["alg"], k["kty"]) for k in ks["keys"]] == [
        ("test-receipt-EdDSA", "EdDSA", "OKP"), ("test-receipt-ES256", "ES256", "EC")]
    assert all("d" not in k for k in ks["keys"])  # never the private part
    for s in (signer("EdDSA"), signer("ES256")):
        assert verify_receipt(receipt(s), ks)["gateway"] == "gw-huzhou-test"


def test_malformed_key_set_is_rejected() -> None:
    assert "no 'keys' list" in reject_detail(receipt(signer("EdDSA")), {"key": []})


def test_rsa_or_p384_keys_are_refused_for_signing() -> None:
    with pytest.raises(TypeError):
        ReceiptSigner(ec.generate_private_key(ec.SECP384R1()), "k", "gw")
