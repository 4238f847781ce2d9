"""Receipts on verify and check answers, checked offline with the key set of ``/v1/keys``.

A third party saves the JWKS once, keeps the receipt and the exact request body, and runs
``python -m gateway receipt verify`` without contacting the gateway. Receipts are batch-signed
(claims . inclusion proof . batch JWS over the Merkle root): any modified part of the receipt,
a proof taken from another receipt, another key, or another request body fails. Access tokens
still verify with the extended key set.
"""

from __future__ import annotations

import base64
import json

import jwt
import orjson
import pytest

from gateway.__main__ import main
from gateway.errors import RequestRejected
from gateway.receipts import request_digest, verify_receipt

from .conftest import NOW

HUZHOU = "330500"


async def keys_and_verify(api, world, case: str = "valid") -> tuple[dict, bytes, dict]:
    jwks = await (await api.get("/v1/keys")).json()
    body = orjson.dumps(world.simulator.issue(HUZHOU, "id_card", case, NOW).body())
    resp = await api.post("/v1/licences/verify", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 200
    return jwks, body, await resp.json()


def flip(token: str, part: int) -> str:
    """Change one character of the claims (0), proof (1), batch header (2), batch statement (3)
    or signature (4)."""
    parts = token.split(".")
    s = parts[part]
    i = len(s) // 2
    parts[part] = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
    return ".".join(parts)


def part_json(token: str, part: int) -> dict:
    payload = token.split(".")[part]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def claims_of(token: str) -> dict:
    return part_json(token, 0)


def b64(doc: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()


async def test_verify_receipt_names_the_verdict_licence_and_request_digest(api, world):
    jwks, body, answer = await keys_and_verify(api, world)
    claims = verify_receipt(answer["receipt"], jwks, request_body=body)
    assert claims["verdict"] == "valid" and claims["reasons"] == [] and claims["item"] is None
    assert claims["licence_ids"] == [answer["licence"]["identifier"]]
    assert claims["request_digest"] == request_digest(body)
    assert claims["time"] == "2026-11-27T04:00:00.000000Z"
    assert claims["batch"]["n"] >= 1 and claims["batch"]["seq"][0] <= claims["batch"]["seq"][1]


async def test_invalid_verdict_receipt_carries_the_reason_codes(api, world):
    jwks, body, answer = await keys_and_verify(api, world, "expired")
    claims = verify_receipt(answer["receipt"], jwks, request_body=body)
    assert claims["verdict"] == "invalid" and claims["reasons"] == ["LICENCE_EXPIRED"]


async def test_check_receipt_names_the_item_outcome_and_every_licence(api, world):
    name, code = world.simulator.person(HUZHOU)
    lic = world.simulator.issue(HUZHOU, "id_card", "valid", NOW, holder=(name, code, "111"))
    body = orjson.dumps({"applicant": {"code_type": "111", "code": code}, "licences": [lic.body()]})
    resp = await api.post("/v1/items/KS-043/check", data=body, headers={"Content-Type": "application/json"})
    answer = await resp.json()
    jwks = await (await api.get("/v1/keys")).json()
    claims = verify_receipt(answer["receipt"], jwks, request_body=body)
    assert claims["item"] == "KS-043" and claims["verdict"] == answer["outcome"]
    assert claims["licence_ids"] == [lic.licence.identifier]


async def test_batch_answer_has_one_receipt_listing_every_entry(api, world):
    jwks = await (await api.get("/v1/keys")).json()
    lics = [world.simulator.issue(HUZHOU, "id_card", case, NOW) for case in ("valid", "expired", "valid")]
    body = orjson.dumps({"licences": [lic.body() for lic in lics]})
    resp = await api.post("/v1/licences/verify-batch", data=body, headers={"Content-Type": "application/json"})
    answer = await resp.json()
    assert all("receipt" not in r for r in answer["results"])   # the answer's receipt, not one per entry
    claims = verify_receipt(answer["receipt"], jwks, request_body=body)
    assert [e["verdict"] for e in claims["entries"]] == ["valid", "invalid", "valid"]
    assert [e["licence_id"] for e in claims["entries"]] == [lic.licence.identifier for lic in lics]
    assert claims["entries"][0]["reasons"] == [] and claims["entries"][1]["reasons"] == ["LICENCE_EXPIRED"]
    assert claims["verdict"] == "mixed" and claims["reasons"] == claims["entries"][1]["reasons"]
    assert claims["licence_ids"] == [lic.licence.identifier for lic in lics]
    # the same receipt for another body (entries reordered) is refused
    other = orjson.dumps({"licences": [lic.body() for lic in reversed(lics)]})
    with pytest.raises(RequestRejected, match="different request body"):
        verify_receipt(answer["receipt"], jwks, request_body=other)


async def test_batch_receipt_with_an_entry_verdict_rewritten_fails(api, world):
    jwks = await (await api.get("/v1/keys")).json()
    lics = [world.simulator.issue(HUZHOU, "id_card", case, NOW) for case in ("valid", "revoked")]
    body = orjson.dumps({"licences": [lic.body() for lic in lics]})
    answer = await (await api.post("/v1/licences/verify-batch", data=body,
                                   headers={"Content-Type": "application/json"})).json()
    claims_b64, rest = answer["receipt"].split(".", 1)
    doc = json.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
    assert doc["entries"][1]["verdict"] == "invalid"
    doc["entries"][1]["verdict"] = "valid"   # the revoked entry passed off as valid
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    with pytest.raises(RequestRejected, match="signed batch root"):
        verify_receipt(f"{forged}.{rest}", jwks)


@pytest.mark.parametrize("part", [0, 1, 2, 3, 4], ids=["claims", "proof", "header", "statement", "signature"])
async def test_modified_receipt_fails(api, world, part):
    jwks, body, answer = await keys_and_verify(api, world)
    with pytest.raises(RequestRejected) as exc:
        verify_receipt(flip(answer["receipt"], part), jwks)
    assert exc.value.reason.code == "RECEIPT_INVALID"


async def test_receipt_with_a_verdict_rewritten_and_resigned_by_another_key_fails(api, world):
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.receipts import ReceiptSigner

    jwks, body, answer = await keys_and_verify(api, world, "expired")
    kid = part_json(answer["receipt"], 2)["kid"]
    forger = ReceiptSigner(ec.generate_private_key(ec.SECP256R1()), kid, "elicence-gateway")  # the gateway's kid
    claims = claims_of(answer["receipt"])
    draft = forger.draft(request_digest=claims["request_digest"], request_id=claims["request_id"], verdict="valid",
                         reasons=[], item=None, time_text=claims["time"], iat=claims["iat"],
                         licence_ids=claims["licence_ids"])
    [forged] = forger.seal([draft], 1, 1, NOW)
    with pytest.raises(RequestRejected, match="signature"):
        verify_receipt(forged, jwks)


async def test_receipt_with_a_verdict_rewritten_and_its_leaf_recomputed_fails(api, world):
    """The attacker edits the claims and, being unable to re-sign, claims a one-leaf batch
    (empty proof): the fold gives the new leaf, which is not the signed root."""
    jwks, body, answer = await keys_and_verify(api, world, "expired")
    _c, _p, rest = answer["receipt"].split(".", 2)
    claims = {**claims_of(answer["receipt"]), "verdict": "valid", "reasons": []}
    for proof in ({"i": 0, "path": []}, part_json(answer["receipt"], 1)):
        with pytest.raises(RequestRejected):
            verify_receipt(f"{b64(claims)}.{b64(proof)}.{rest}", jwks)


async def test_receipt_for_another_request_body_fails(api, world):
    jwks, body, answer = await keys_and_verify(api, world)
    with pytest.raises(RequestRejected, match="different request body"):
        verify_receipt(answer["receipt"], jwks, request_body=body + b" ")


async def test_cli_verifies_offline_and_refuses_a_modified_receipt(api, world, tmp_path, capsys):
    jwks, body, answer = await keys_and_verify(api, world)
    (tmp_path / "keys.json").write_bytes(orjson.dumps(jwks))
    (tmp_path / "body.json").write_bytes(body)
    keys, req = str(tmp_path / "keys.json"), str(tmp_path / "body.json")
    assert main(["receipt", "verify", answer["receipt"], "--jwks", keys, "--body", req]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is True and out["claims"]["verdict"] == "valid"
    assert main(["receipt", "verify", flip(answer["receipt"], 0), "--jwks", keys]) == 1
    assert "INVALID" in capsys.readouterr().err
    (tmp_path / "other.json").write_bytes(body.replace(b'"utf-8"', b'"utf-8" '))
    assert main(["receipt", "verify", answer["receipt"], "--jwks", keys, "--body", str(tmp_path / "other.json")]) == 1


async def test_access_tokens_still_verify_with_the_extended_key_set(api, world):
    jwks = await (await api.get("/v1/keys")).json()
    token = world.token()
    kid = jwt.get_unverified_header(token)["kid"]
    [jwk] = [k for k in jwks["keys"] if k["kid"] == kid]
    key = jwt.PyJWK(jwk)
    claims = jwt.decode(token, key.key, algorithms=[jwk["alg"]], options={"verify_aud": False, "verify_exp": False})
    assert claims["client_id"] == "demo-partner"
