"""Receipts on verify and check answers, checked offline with the key set of ``/v1/keys``.

A third party saves the JWKS once, keeps the receipt and the exact request body, and runs
``python -m gateway receipt verify`` without contacting the gateway. Any modified byte of
the receipt, another key, or another request body fails. Access tokens still verify with the
extended key set.
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
    """Change one character of the header (0), claims (1) or signature (2)."""
    parts = token.split(".")
    s = parts[part]
    i = len(s) // 2
    parts[part] = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
    return ".".join(parts)


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_verify_receipt_names_the_verdict_licence_and_request_digest(api, world):
    jwks, body, answer = await keys_and_verify(api, world)
    claims = verify_receipt(answer["receipt"], jwks, request_body=body)
    assert claims["verdict"] == "valid" and claims["reasons"] == [] and claims["item"] is None
    assert claims["licence_ids"] == [answer["licence"]["identifier"]]
    assert claims["request_digest"] == request_digest(body)
    assert claims["time"] == "2026-11-27T04:00:00.000000Z"


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


@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "claims", "signature"])
async def test_modified_receipt_fails(api, world, part):
    jwks, body, answer = await keys_and_verify(api, world)
    with pytest.raises(RequestRejected) as exc:
        verify_receipt(flip(answer["receipt"], part), jwks)
    assert exc.value.reason.code == "RECEIPT_INVALID"


async def test_receipt_with_a_verdict_rewritten_and_resigned_by_another_key_fails(api, world):
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.receipts import ReceiptSigner

    jwks, body, answer = await keys_and_verify(api, world, "expired")
    header = answer["receipt"].split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    forger = ReceiptSigner(ec.generate_private_key(ec.SECP256R1()), kid, "elicence-gateway")  # the gateway's kid
    forged = forger.sign(request_body=body, verdict="valid", reasons=[], item=None, time=NOW,
                         licence_ids=claims_of(answer["receipt"])["licence_ids"])
    with pytest.raises(RequestRejected, match="signature"):
        verify_receipt(forged, jwks)


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
    assert main(["receipt", "verify", flip(answer["receipt"], 1), "--jwks", keys]) == 1
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
