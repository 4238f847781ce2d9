"""Every stable reason code of the verify API, each triggered by a licence built to cause it.

The licences come from the issuer simulator (same spec, same family) and are then bent
the way an attacker or a broken issuer would bend them.
"""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.app import LIVE
from gateway.devtrust import make_issuer, to_pem, trust_list_document
from gateway.edges import MemoryStatusSource, MemoryTrustSource
from gateway.status import StatusSnapshot
from gateway.trust import build_snapshot

from .conftest import NOW

JWS_REGION = "341100"  # an ES256 region
EDDSA_REGION = "652929"


def b64u(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def resign_es256(world, region: str, header: dict, payload: dict, key=None) -> str:
    key = key or world.material[region].issuers[-1].private_key
    signing_input = b64u(orjson.dumps(header)) + b"." + b64u(orjson.dumps(payload))
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return (signing_input + b"." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode()


def parts(token: bytes) -> tuple[dict, dict]:
    h, p, _ = token.split(b".")
    pad = lambda x: x + b"=" * (-len(x) % 4)  # noqa: E731
    return orjson.loads(base64.urlsafe_b64decode(pad(h))), orjson.loads(base64.urlsafe_b64decode(pad(p)))


async def verify(api, licence: str, encoding: str = "utf-8") -> dict:
    resp = await api.post("/v1/licences/verify", json={"licence": licence, "encoding": encoding})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def fields(world, region):
    return world.specs[region].fields


async def test_valid_licence_is_valid_with_every_check_passing(api, world):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    body = await verify(api, issued.data.decode())
    assert body["verdict"] == "valid"
    assert body["reasons"] == []
    assert set(body["checks"].values()) == {"pass"}
    assert body["region"] == {"code": JWS_REGION, "name": "滁州市"}
    assert body["format"] == "jws"
    assert body["licence"]["holder_code"] == issued.licence.holder_code
    assert body["licence"]["identifier"] == issued.licence.identifier
    assert body["verified_at"] == "2026-11-27T04:00:00Z"


@pytest.mark.parametrize("case,code", [
    ("expired", "LICENCE_EXPIRED"), ("not-yet-valid", "LICENCE_NOT_YET_VALID"), ("revoked", "LICENCE_REVOKED"),
    ("suspended", "LICENCE_SUSPENDED"), ("tampered", "SIGNATURE_INVALID"), ("wrong-issuer", "ISSUER_REGION_MISMATCH"),
    ("unknown-issuer", "UNKNOWN_ISSUER"), ("malformed", "MALFORMED"),
])
async def test_simulator_case_gives_its_reason(api, world, case, code):
    issued = world.simulator.issue(JWS_REGION, "id_card", case, NOW)
    # revocations reach the gateway through its status refresh
    api.app[LIVE].set_status(world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)))
    body = await verify(api, issued.data.decode())
    assert body["verdict"] == "invalid"
    assert code in [r["code"] for r in body["reasons"]]
    assert all(r["message_zh"] for r in body["reasons"])


async def test_unsupported_format(api):
    body = await verify(api, "<html>not a licence</html>")
    assert body["verdict"] == "invalid" and body["reasons"][0]["code"] == "UNSUPPORTED_FORMAT"
    assert body["licence"] is None


async def test_unknown_region_named_in_header(api, world):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    header["iss"] = "990000"
    payload["iat"] = int(NOW.timestamp())
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload))
    assert body["verdict"] == "invalid" and body["reasons"][0]["code"] == "UNKNOWN_REGION"


async def test_x5c_chain_to_a_rogue_root_is_untrusted(api, world):
    from gateway.devtrust import make_anchor

    rogue_key, rogue_anchor = make_anchor(JWS_REGION, "ES256", NOW - dt.timedelta(days=2))
    rogue = make_issuer(JWS_REGION, "ES256", rogue_key, rogue_anchor, 99, NOW - dt.timedelta(days=1),
                        NOW + dt.timedelta(days=10))
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    del header["kid"]
    header["x5c"] = [base64.b64encode(rogue.cert.der).decode(), base64.b64encode(rogue_anchor.der).decode()]
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload, key=rogue.private_key))
    assert body["verdict"] == "invalid" and body["reasons"][0]["code"] == "UNTRUSTED_CHAIN"


async def test_x5c_chain_to_the_region_anchor_is_accepted(api, world):
    """A certificate not listed in the trust list, but issued by the region's anchor, verifies via x5c."""
    m = world.material[JWS_REGION]
    fresh = make_issuer(JWS_REGION, "ES256", m.anchor_key, m.anchor, 4242, NOW - dt.timedelta(days=1),
                        NOW + dt.timedelta(days=10), "issuer-x5c")
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    del header["kid"]
    header["x5c"] = [base64.b64encode(fresh.cert.der).decode()]
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload, key=fresh.private_key))
    assert body["verdict"] == "valid", body["reasons"]
    assert body["signer"]["key_id"] == fresh.cert.key_id


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384"])
async def test_algorithm_not_allowed(api, world, alg):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    h, p, s = issued.data.split(b".")
    header, _ = parts(issued.data)
    header["alg"] = alg
    forged = b64u(orjson.dumps(header)) + b"." + p + b"." + (b"" if alg == "none" else s)
    body = await verify(api, forged.decode())
    assert body["verdict"] == "invalid" and body["reasons"][0]["code"] == "ALGORITHM_NOT_ALLOWED"


async def test_algorithm_key_mismatch_eddsa_header_on_es256_key(api, world):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    header["alg"] = "EdDSA"
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload))
    assert body["verdict"] == "invalid" and body["reasons"][0]["code"] == "ALGORITHM_NOT_ALLOWED"


async def test_unknown_crit_header_is_rejected(api, world):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    header["crit"] = ["exp-policy"]
    header["exp-policy"] = 1
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload))
    assert body["verdict"] == "invalid" and body["reasons"][0]["code"] == "MALFORMED"
    assert "critical" in body["reasons"][0]["detail"]


async def test_oversized_token_is_malformed(api, world):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    payload["padding"] = "x" * (300 * 1024)
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload))
    assert body["verdict"] == "invalid" and body["reasons"][0]["code"] == "MALFORMED"
    assert "larger than" in body["reasons"][0]["detail"]


async def test_identifier_with_wrong_check_character(api, world):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    f = fields(world, JWS_REGION)
    ident = payload[f["identifier"]]
    payload[f["identifier"]] = ident[:-1] + ("0" if ident[-1] != "0" else "1")
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload))
    assert body["verdict"] == "invalid"
    assert [r["code"] for r in body["reasons"]] == ["IDENTIFIER_INVALID"]
    assert body["checks"]["identifier"] == "fail" and body["checks"]["signature"] == "pass"


async def test_holder_id_number_with_wrong_check_digit(api, world):
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    header, payload = parts(issued.data)
    f = fields(world, JWS_REGION)
    code = payload[f["holder_code"]]
    payload[f["holder_code"]] = code[:-1] + ("1" if code[-1] != "1" else "2")
    body = await verify(api, resign_es256(world, JWS_REGION, header, payload))
    assert [r["code"] for r in body["reasons"]] == ["HOLDER_CODE_INVALID"]


async def test_issuer_certificate_expired_before_signing(client_for, world):
    """An issuer certificate that had expired when the licence was signed."""
    code = JWS_REGION
    m = world.material[code]
    old = make_issuer(code, "ES256", m.anchor_key, m.anchor, 777, NOW - dt.timedelta(days=400),
                      NOW - dt.timedelta(days=20), "issuer-old")
    doc = trust_list_document({**world.doc["regions"], code: {**world.doc["regions"][code],
                               "issuers": world.doc["regions"][code]["issuers"] + [to_pem(old.cert.der)]}},
                              NOW - dt.timedelta(days=1), version=2, valid_days=30)
    snap = build_snapshot(doc, world.regions)
    client = await client_for(trust_source=MemoryTrustSource(snap))
    lic = world.simulator.canonical(code, "id_card", NOW)
    data = world.simulator.encode(code, lic, NOW - dt.timedelta(days=2), key=old)
    body = await verify(client, data.decode())
    assert body["verdict"] == "invalid"
    assert [r["code"] for r in body["reasons"]] == ["ISSUER_CERT_EXPIRED"]


async def test_status_unavailable_is_indeterminate(client_for, world):
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    body = await verify(client, issued.data.decode())
    assert body["verdict"] == "indeterminate"
    assert [r["code"] for r in body["reasons"]] == ["STATUS_UNAVAILABLE"]
    assert body["checks"]["status"] == "fail"


async def test_stale_status_list_is_indeterminate(client_for, world):
    stale = world.simulator.status_snapshot(NOW - dt.timedelta(hours=2), dt.timedelta(hours=1))
    client = await client_for(status_source=MemoryStatusSource(stale))
    issued = world.simulator.issue(JWS_REGION, "id_card", "valid", NOW)
    body = await verify(client, issued.data.decode())
    assert body["verdict"] == "indeterminate"
    assert body["reasons"][0]["code"] == "STATUS_UNAVAILABLE"
    assert "7200 s old" in body["reasons"][0]["detail"]


async def test_expired_and_status_unavailable_is_invalid_not_indeterminate(client_for, world):
    """A definitive rejection outranks an infrastructure doubt."""
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    issued = world.simulator.issue(JWS_REGION, "id_card", "expired", NOW)
    body = await verify(client, issued.data.decode())
    assert body["verdict"] == "invalid"
    assert [r["code"] for r in body["reasons"]] == ["LICENCE_EXPIRED", "STATUS_UNAVAILABLE"]


async def test_eddsa_region_verifies(api, world):
    issued = world.simulator.issue(EDDSA_REGION, "id_card", "valid", NOW)
    header, _ = parts(issued.data)
    assert header["alg"] == "EdDSA"
    body = await verify(api, issued.data.decode())
    assert body["verdict"] == "valid", body["reasons"]


async def test_every_documented_reason_code_exists_in_the_errors_module():
    from gateway import errors

    codes = {r.code for r in errors.all_reasons()}
    for code in ["MALFORMED", "UNSUPPORTED_FORMAT", "UNKNOWN_REGION", "UNKNOWN_ISSUER", "UNTRUSTED_CHAIN",
                 "SIGNATURE_INVALID", "ALGORITHM_NOT_ALLOWED", "ISSUER_CERT_EXPIRED", "ISSUER_REGION_MISMATCH",
                 "IDENTIFIER_INVALID", "HOLDER_CODE_INVALID", "LICENCE_NOT_YET_VALID", "LICENCE_EXPIRED",
                 "LICENCE_REVOKED", "STATUS_UNAVAILABLE"]:
        assert code in codes
