"""A partner city's integrating engineer walks through the API from the docs only (README, the served
OpenAPI document, the TEST partner credentials): what did not match the docs, fixed here.

* ``POST /v1/licences/verify`` with ``"encoding": "base64"`` and a licence that is not base64 answered
  400 ``BAD_REQUEST`` (no audit record, no receipt), while the README's reason-code table puts "bad
  base64" under ``MALFORMED`` (verdict ``invalid``) and the same entry in a verify-batch, an item check
  and the console is answered ``invalid`` / ``MALFORMED``. A single verify now answers it so too.
* a federated query's ``meta`` carried the answering worker's counters for each region (requests and
  outcomes summed over every partner's and every window's queries): traffic of others, the operator's
  to see behind ``GET /v1/admin/upstreams`` (scope ``admin``). Only the breaker state is left.
* five descriptions in ``specs/openapi.yaml`` were written unquoted inside YAML flow mappings and cut at
  their first comma: the rest became schema keywords with a null value (``PresentedLicence.licence``
  read "the licence as text (JWS" and gained keywords ``JSON`` and ``XML) or base64 (OFD)``).
* the token endpoint's 429 answer carries ``Retry-After``, which the OpenAPI document did not say, and
  its 503 (the shared replay store unusable) was not documented.
* the README's example search ``GET /v1/items?q=hkqy&mode=全程网办&region=330500`` found nothing (the
  户口迁移 items are 多地联办);
* the token endpoint's ``error_description`` was Chinese, which RFC 6749 §5.2 forbids (printable ASCII
  only: a standard OAuth client may refuse or garble it), with no English: it is now English ASCII, and
  the Chinese is ``error_description_zh``; a wrong ``aud`` now says which one the gateway expects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml

from gateway.app import create_app
from gateway.audit_wiring import AUDIT

from .conftest import NOW
from .test_query_federated import HOME, body, citizen, query
from .test_query_federated import query_client, regions_up  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


# --- a base64 licence that is not base64 -------------------------------------------------------------
@pytest.mark.parametrize("bad", ["%%%", "not base64 !!", "QUJD\nRE"])
async def test_single_verify_of_undecodable_base64_is_invalid_malformed_like_a_batch_entry(api, bad):
    entry = {"licence": bad, "encoding": "base64"}
    single = await api.post("/v1/licences/verify", json=entry, headers={"X-Request-Id": "walk-b64"})
    assert single.status == 200, await single.text()
    answer = await single.json()
    batch = await (await api.post("/v1/licences/verify-batch", json={"licences": [entry]})).json()
    assert answer["verdict"] == batch["results"][0]["verdict"] == "invalid"
    codes = [r["code"] for r in answer["reasons"]]
    assert codes == [r["code"] for r in batch["results"][0]["reasons"]] == ["MALFORMED"]
    assert answer["reasons"][0]["message"] and answer["reasons"][0]["message_zh"]
    assert answer["licence"] is None and answer["region"] is None
    # like every verify answer: recorded before it is sent, with a receipt
    assert answer["receipt"]
    sink = api.server.app[AUDIT].sink
    [rec] = [d for d in (r.as_dict() for r in sink.table.values()) if d["request_id"] == "walk-b64"]
    assert rec["verdict"] == "invalid" and rec["reasons"] == ["MALFORMED"]


@pytest.mark.parametrize("payload", [b'{"licence": 42}', b'{"licence": "x", "encoding": "rot13"}', b'["licence"]'])
async def test_control_an_ill_formed_verify_request_stays_400(api, payload):
    resp = await api.post("/v1/licences/verify", data=payload, headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["code"] == "BAD_REQUEST"


async def test_control_a_valid_base64_licence_still_verifies(api, world):
    import base64
    import json

    issued = world.simulator.issue("330500", "id_card", "valid", NOW).body()
    b64 = {"licence": base64.b64encode(issued["licence"].encode()).decode(), "encoding": "base64"}
    answer = await (await api.post("/v1/licences/verify", json=b64)).json()
    assert answer["verdict"] == "valid", json.dumps(answer["reasons"])


# --- the federated query's meta --------------------------------------------------------------------
async def test_query_answer_does_not_carry_the_workers_counters_of_other_partners_queries(query_client, world):
    client = await query_client()
    for seq in (801, 802, 803):  # earlier queries (any partner's, a window's) to the same region
        await query(client, body(citizen(seq=seq), [HOME]))
    answer = await query(client, body(citizen(seq=804), [HOME]))
    meta = answer["meta"]["upstreams"][HOME]
    assert meta == {"breaker": "closed"}, meta
    # the operator still sees them, with the admin scope
    admin = await client.get("/v1/admin/upstreams", headers=world.auth(client_id="load-operator"))
    assert admin.status == 200
    assert (await admin.json())["upstreams"][HOME]["requests"] == 4


# --- the OpenAPI document --------------------------------------------------------------------------
def _spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "specs" / "openapi.yaml").read_text(encoding="utf-8"))


def _nulls(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        out = [f"{path}/{k}" for k, v in node.items() if v is None]
        for k, v in node.items():
            out += _nulls(v, f"{path}/{k}")
        return out
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _nulls(v, f"{path}/{i}")]
    return []


def test_openapi_has_no_description_cut_at_a_comma():
    """``{type: string, description: a, b}`` in YAML is the description "a" and a keyword "b": null."""
    assert _nulls(_spec()) == []
    spec = _spec()
    licence = spec["components"]["schemas"]["PresentedLicence"]["properties"]["licence"]
    assert licence["description"] == "the licence as text (JWS, JSON, XML) or base64 (OFD)"
    code = spec["components"]["schemas"]["Applicant"]["properties"]["code"]
    assert code["description"].endswith("-> 400 APPLICANT_INVALID")


async def test_served_openapi_matches_the_token_endpoints_answers(api):
    served = await (await api.get("/v1/openapi.json")).json()
    token = served["paths"]["/v1/oauth/token"]["post"]["responses"]
    assert "Retry-After" in token["429"].get("headers", {})   # tokens.py: Retry-After: 60
    assert "503" in token                                       # auth/shared.py: store unusable
    assert _nulls(served) == []


def test_openapi_describes_the_query_meta_as_breaker_states_only():
    meta = _spec()["components"]["schemas"]["QueryResponse"]["properties"]["meta"]
    entry = meta["properties"]["upstreams"]["additionalProperties"]
    assert set(entry["properties"]) == {"breaker"} and entry["additionalProperties"] is False


# --- the README's example search -------------------------------------------------------------------
async def test_readme_example_item_search_finds_items(api):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [example] = re.findall(r"`GET (/v1/items\?[^`]+)`", readme)
    params = dict(parse_qsl(example.split("?", 1)[1]))
    answer = await (await api.get("/v1/items", params=params)).json()
    assert answer["total"] > 0, (example, answer)
    assert all(params["mode"] in i["modes"] for i in answer["items"])


# --- the token endpoint's errors: RFC 6749 §5.2 ASCII, and both languages -----------------------------
_RFC6749_DESCRIPTION = re.compile(r'[\x20-\x21\x23-\x5b\x5d-\x7e]*')


@pytest.mark.parametrize("attack, form", [
    ("unknown_grant_type", {"grant_type": "password"}),
    ("client_secret_instead_of_an_assertion", {"grant_type": "client_credentials", "client_secret": "x"}),
    ("assertion_that_is_not_a_jwt", {"grant_type": "client_credentials", "client_assertion": "not-a-jwt",
                                      "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}),
    ("parameter_named_in_chinese_sent_twice", [("grant_type", "client_credentials"), ("参数", "a"), ("参数", "b")]),
])
async def test_token_error_description_is_rfc6749_ascii_with_the_chinese_beside_it(api, attack, form):
    resp = await api.post("/v1/oauth/token", data=form)
    answer = await resp.json()
    assert resp.status in (400, 401), (attack, answer)
    assert set(answer) == {"error", "error_description", "error_description_zh"}, attack
    assert answer["error_description"] and _RFC6749_DESCRIPTION.fullmatch(answer["error_description"]), answer
    assert re.search(r"[\u4e00-\u9fff]", answer["error_description_zh"]), answer


def test_wrong_aud_says_which_token_endpoint_is_expected():
    from .test_auth_support import ENDPOINT, assertion, token_request_form, token_service
    from .test_auth_tokens import oauth_error
    err = oauth_error(token_service(), token_request_form(assertion(audience=ENDPOINT + "/")))
    assert err.error == "invalid_client" and err.status == 401
    body = err.body()
    assert ENDPOINT in body["error_description"] and ENDPOINT in body["error_description_zh"]
