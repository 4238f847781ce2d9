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


# --- batch-signed receipts (one signature over a Merkle root per committed audit batch) ----------
def drafts(s: ReceiptSigner, n: int) -> list:
    return [s.draft(request_digest=request_digest(BODY + bytes([i])), request_id=f"req-{i}", verdict="valid",
                    reasons=[], item=None, time_text="2025-03-01T08:30:15.123456Z", iat=int(T.timestamp()),
                    licence_ids=[LICENCE]) for i in range(n)]


def parts(token: str) -> list[str]:
    return token.split(".")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_receipt_of_a_batch_verifies_and_shares_the_one_signature(n: int) -> None:
    s = signer("ES256")
    receipts = s.seal(drafts(s, n), 101, 100 + n, T)
    assert len({".".join(parts(r)[2:]) for r in receipts}) == 1
    for i, r in enumerate(receipts):
        claims = verify_receipt(r, s.jwks(), request_body=BODY + bytes([i]))
        assert claims["request_id"] == f"req-{i}" and claims["batch"]["index"] == i
        assert claims["batch"] == {"seq": [101, 100 + n], "n": n, "index": i, "root": claims["batch"]["root"],
                                   "time": "2025-03-01T08:30:15.123456Z", "kid": s.kid}


def test_merkle_root_of_known_leaves_is_domain_separated() -> None:
    from hashlib import sha256

    from gateway.receipts import inclusion_proof, merkle_levels, root_from_proof

    leaves = [sha256(b"\x00" + bytes([i])).digest() for i in range(3)]
    n01 = sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    root = sha256(b"\x01" + n01 + leaves[2]).digest()   # leaf 2 promoted unchanged
    levels = merkle_levels(leaves)
    assert levels[-1] == [root]
    assert inclusion_proof(levels, 2) == [n01]
    assert root_from_proof(leaves[2], 2, 3, [n01]) == root
    assert root_from_proof(leaves[0], 0, 3, [leaves[1], leaves[2]]) == root


def test_batch_receipt_with_an_edited_claim_fails() -> None:
    s = signer("EdDSA")
    r = s.seal(drafts(s, 5), 1, 5, T)[3]
    c, rest = r.split(".", 1)
    claims = orjson.loads(base64.urlsafe_b64decode(c + "=="))
    claims["verdict"] = "invalid"
    assert "signed batch root" in reject_detail(f"{b64(claims)}.{rest}", s.jwks())


def test_batch_receipt_with_a_proof_hash_changed_fails() -> None:
    s = signer("EdDSA")
    c, p, *jws = parts(s.seal(drafts(s, 6), 1, 6, T)[2])
    proof = orjson.loads(base64.urlsafe_b64decode(p + "=="))
    proof["path"][0] = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    assert "signed batch root" in reject_detail(".".join([c, b64(proof), *jws]), s.jwks())


@pytest.mark.parametrize("index, detail", [(1, "signed batch root"), (6, "outside the signed batch"),
                                           (-1, "outside the signed batch")])
def test_batch_receipt_claiming_another_leaf_index_fails(index: int, detail: str) -> None:
    s = signer("EdDSA")
    c, p, *jws = parts(s.seal(drafts(s, 6), 1, 6, T)[2])
    proof = orjson.loads(base64.urlsafe_b64decode(p + "=="))
    proof["i"] = index
    assert detail in reject_detail(".".join([c, b64(proof), *jws]), s.jwks())


def test_batch_receipt_with_an_extra_or_missing_proof_element_fails() -> None:
    s = signer("EdDSA")
    c, p, *jws = parts(s.seal(drafts(s, 4), 1, 4, T)[1])
    proof = orjson.loads(base64.urlsafe_b64decode(p + "=="))
    longer = {**proof, "path": [*proof["path"], proof["path"][0]]}
    shorter = {**proof, "path": proof["path"][:1]}
    assert "too long" in reject_detail(".".join([c, b64(longer), *jws]), s.jwks())
    assert "too short" in reject_detail(".".join([c, b64(shorter), *jws]), s.jwks())


def test_inner_node_presented_as_a_leaf_does_not_verify() -> None:
    """Second-preimage attempt: an inner node's children as 'claims' (the 0x00/0x01 prefixes differ)."""
    from gateway.receipts import merkle_levels

    s = signer("EdDSA")
    ds = drafts(s, 4)
    levels = merkle_levels([d.leaf for d in ds])
    r = s.seal(ds, 1, 4, T)[0]
    _c, _p, *jws = parts(r)
    fake_claims = base64.urlsafe_b64encode(levels[0][0] + levels[0][1]).rstrip(b"=").decode()
    proof = {"i": 0, "path": [base64.urlsafe_b64encode(levels[1][1]).rstrip(b"=").decode()]}
    assert "too short" in reject_detail(".".join([fake_claims, b64(proof), *jws]), s.jwks())   # n is signed
    # and at full depth the 0x00 leaf prefix keeps the children bytes from hashing to their node
    full = {"i": 0, "path": [base64.urlsafe_b64encode(levels[1][1]).rstrip(b"=").decode()] * 2}
    assert "signed batch root" in reject_detail(".".join([fake_claims, b64(full), *jws]), s.jwks())


def test_batch_statement_resigned_by_an_unpublished_key_fails() -> None:
    s = signer("ES256")
    rogue = ReceiptSigner(ec.generate_private_key(ec.SECP256R1()), s.kid, s.gateway_id)
    assert "signature does not verify" in reject_detail(rogue.seal(drafts(rogue, 3), 1, 3, T)[0], s.jwks())


def test_single_receipt_header_is_not_accepted_as_a_batch_statement() -> None:
    """typ confusion: a single-signed receipt's JWS placed where the batch statement goes."""
    s = signer("EdDSA")
    c, p, *_ = parts(s.seal(drafts(s, 1), 1, 1, T)[0])
    assert "typ" in reject_detail(".".join([c, p, receipt(s)]), s.jwks())


def test_receipt_ref_is_the_leaf_hash_the_record_keeps() -> None:
    from gateway.receipts import receipt_ref

    s = signer("EdDSA")
    ds = drafts(s, 3)
    assert [receipt_ref(r) for r in s.seal(ds, 1, 3, T)] == [d.ref for d in ds]


def test_b64u_is_unpadded_urlsafe_base64_for_every_length_and_byte() -> None:
    """The receipts' encoder (pybase64) writes exactly what the standard library's urlsafe encoder
    writes, without padding: every length mod 3, and the bytes that map to '-' and '_'."""
    import os

    from gateway.audit.jws import b64u, b64u_decode

    samples = [b"", b"\xfb", b"\xfb\xff", b"\xfb\xff\xbf", bytes(range(256)), b"\xff" * 61]
    samples += [os.urandom(n) for n in range(1, 400, 7)]
    for data in samples:
        expected = base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
        assert b64u(data) == expected
        assert type(b64u(data)) is str and "=" not in b64u(data)
        assert b64u_decode(b64u(data)) == data
    assert b64u(b"\xfb\xff") == "-_8"


# --- a verify-batch answer's one receipt: its entries and the answer-level claims agree --------------
def batch_draft(s: ReceiptSigner, rows: list, **override):
    from gateway.receipts import batch_claims

    verdict, reasons, ids, docs = batch_claims(rows)
    fields = {"verdict": verdict, "reasons": reasons, "licence_ids": ids, "entries": docs, **override}
    return s.draft(request_digest=request_digest(BODY), request_id="req-b", item=None,
                   time_text="2025-03-01T08:30:15.123456Z", iat=int(T.timestamp()), **fields)


def test_batch_receipt_lists_entries_and_summarises_them() -> None:
    s = signer("EdDSA")
    [r] = s.seal([batch_draft(s, [("valid", [], LICENCE), ("invalid", ["MALFORMED"], None)])], 1, 2, T)
    claims = verify_receipt(r, s.jwks(), request_body=BODY)
    assert claims["verdict"] == "mixed" and claims["reasons"] == ["MALFORMED"] and claims["licence_ids"] == [LICENCE]
    assert claims["entries"] == [{"verdict": "valid", "reasons": [], "licence_id": LICENCE},
                                 {"verdict": "invalid", "reasons": ["MALFORMED"], "licence_id": None}]


@pytest.mark.parametrize("override, detail", [
    ({"verdict": "valid"}, "disagree with the entries"),          # an invalid entry summarised as valid
    ({"licence_ids": []}, "disagree with the entries"),
    ({"reasons": []}, "disagree with the entries"),
    ({"entries": []}, "non-empty list"),
    ({"entries": [{"verdict": "valid", "reasons": "none", "licence_id": None}]}, "entry 0"),
    ({"entries": [{"verdict": 1, "reasons": [], "licence_id": None}]}, "entry 0"),
], ids=["verdict", "licence-ids", "reasons", "no-entries", "reasons-not-list", "verdict-not-text"])
def test_batch_receipt_whose_summary_or_entries_are_inconsistent_is_refused(override, detail) -> None:
    s = signer("ES256")   # signed by the right key: only the claims' consistency is wrong
    [r] = s.seal([batch_draft(s, [("valid", [], LICENCE), ("invalid", ["LICENCE_REVOKED"], LICENCE)], **override)],
                 1, 2, T)
    assert detail in reject_detail(r, s.jwks())
