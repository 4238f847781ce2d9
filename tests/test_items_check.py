"""POST /v1/items/{code}/check end to end through HTTP with real partner tokens: licences
issued by the simulator in different regions, verified by the same core as /verify, bound
to the applicant and cut down to the fields the item may see.

Items used (specs/items.toml):
* KS-043 社会保障卡启用: ID card + social security card, both mandatory, holder-bound;
* KS-037 养老保险关系转移接续: ID card OR social security card (alternatives);
* KS-004 内资企业及分支机构变更登记: the company's 营业执照 + the applicant is its legal
  representative (role binding);
* KS-001 市场主体登记注册: one of the restricted TEST partner's two items.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import LIVE, create_app
from gateway.auth import demo_token, load_partners
from gateway.edges import MemoryStatusSource
from gateway.identifiers import citizen_id_check, mask_holder_code
from gateway.status import StatusSnapshot

from .conftest import NOW

HUZHOU, SUZHOU, SHANGHAI, HEFEI = "330500", "320500", "310000", "340100"


def person(world, region: str) -> tuple[str, str, str]:
    name, code = world.simulator.person(region)
    return name, code, "111"


def applicant_of(holder: tuple[str, str, str]) -> dict[str, str]:
    return {"code_type": holder[2], "code": holder[1], "name": holder[0]}


def issue(world, region: str, type_key: str, holder: tuple[str, str, str], case: str = "valid"):
    return world.simulator.issue(region, type_key, case, NOW, holder=holder)


def business_licence_naming(world, region: str, representative: tuple[str, str, str]):
    """A valid 营业执照 of a synthetic company whose legal representative is ``representative``."""
    sim = world.simulator
    company_name, uscc = sim.company(region)
    lic = sim.canonical(region, "business_licence", NOW, holder=(company_name, uscc, "001"),
                        surface={"legal_representative_name": representative[0],
                                 "legal_representative_code": representative[1]})
    data = sim.encode(region, lic, NOW)
    return lic, {"licence": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


async def check(api, item: str, applicant: dict[str, Any], licences: list[dict[str, str]], status: int = 200):
    resp = await api.post(f"/v1/items/{item}/check", json={"applicant": applicant, "licences": licences})
    body = await resp.json()
    assert resp.status == status, body
    return body


def requirement(body: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(r for r in body["requirements"] if r["id"] == rid)


def codes(reasons: list[dict[str, Any]]) -> list[str]:
    return [r["code"] for r in reasons]


def allowed_fields(world, item_code: str, requirement_ids: list[str]) -> tuple[set[str], set[str]]:
    """(canonical, surface) field names the item may see through these requirements."""
    item = world.catalogue.item(item_code)
    canonical, surface = set(), set()
    model_fields = {"identifier", "name", "type_code", "type_name", "number", "issuer_name", "issuer_code",
                    "issue_date", "holder_name", "holder_code", "holder_code_type", "valid_from", "valid_until",
                    "area_code", "status_index"}
    for rid in requirement_ids:
        for f in item.requirement(rid).disclose:
            (canonical if f in model_fields else surface).add(f)
    return canonical, surface


_JWS = re.compile(r"^[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+$")


def strings_in(node: Any) -> list[str]:
    """Every string (keys and values) anywhere in a JSON document, including inside the
    payload of any compact JWS it carries (e.g. the signed receipt), so base64 hides nothing."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (k, *strings_in(v))]
    if isinstance(node, list):
        return [s for v in node for s in strings_in(v)]
    if isinstance(node, str):
        m = _JWS.match(node)
        if m:
            payload = base64.urlsafe_b64decode(m[1] + "=" * (-len(m[1]) % 4))
            return [node, *strings_in(orjson.loads(payload))]
        return [node]
    return []


#: licence fields that are references, not licence data: the GB/T 36904 identifier the partner
#: itself presented (it embeds the type code and the issuing authority's code), the licence
#: type's public catalogue name, and the issuing authority's area (= the answer's region).
PUBLIC_REFERENCE = frozenset({"identifier", "type_code", "issuer_code", "name", "type_name", "area_code", "surface"})


def assert_nothing_undisclosed(world, body: dict[str, Any], item_code: str, issued: list[Any]) -> None:
    """Walk the whole answer: no value of a field outside the item's disclose lists appears
    anywhere, and every licence object carries only disclosed field names."""
    item = world.catalogue.item(item_code)
    every_canonical, every_surface = allowed_fields(world, item_code, [r.id for r in item.requirements])
    for entry in body["licences"]:
        if entry["licence"] is None:
            continue
        canonical, surface = allowed_fields(world, item_code, entry["satisfies"])
        assert set(entry["licence"]) - {"surface"} <= canonical
        assert set(entry["licence"].get("surface", {})) <= surface
    text = strings_in(body)
    if body.get("receipt"):
        assert len(text) > len(strings_in({k: v for k, v in body.items() if k != "receipt"})) + 1  # payload walked
    disclosed_values: set[str] = set()
    for entry in body["licences"]:
        if entry["licence"]:
            disclosed_values |= set(strings_in(entry["licence"]))
    for lic in issued:
        d = lic.to_dict()
        secrets = {v for k, v in d.items() if k not in every_canonical and k not in PUBLIC_REFERENCE
                   and isinstance(v, str) and len(v) >= 4}
        secrets |= {v for k, v in d["surface"].items() if k not in every_surface and isinstance(v, str) and len(v) >= 4}
        secrets -= disclosed_values  # a value that is also a disclosed field's value (e.g. same date) is fine
        leaked = [s for s in secrets if any(s in t for t in text)]
        assert leaked == [], f"undisclosed values leaked: {leaked}"


# --- complete, missing, alternatives ----------------------------------------------------
async def test_complete_application_with_licences_from_two_provinces(api, world):
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    ssc = issue(world, SUZHOU, "social_security_card", me)
    body = await check(api, "KS-043", applicant_of(me), [id_card.body(), ssc.body()])
    assert body["complete"] is True and body["outcome"] == "complete" and body["missing"] == []
    assert requirement(body, "applicant_identity")["satisfied_by"] == [id_card.licence.identifier]
    assert requirement(body, "social_security_card")["satisfied_by"] == [ssc.licence.identifier]
    assert [lic["satisfies"] for lic in body["licences"]] == [["applicant_identity"], ["social_security_card"]]
    assert [lic["region"]["code"] for lic in body["licences"]] == [HUZHOU, SUZHOU]
    first = body["licences"][0]["licence"]
    assert first == {"holder_name": me[0], "holder_code": me[1], "holder_code_type": "111",
                     "valid_until": id_card.licence.valid_until.isoformat()}
    assert body["applicant"] == {"code_type": "111", "code_masked": mask_holder_code(me[1])}
    assert_nothing_undisclosed(world, body, "KS-043", [id_card.licence, ssc.licence])


async def test_missing_mandatory_licence_makes_the_application_incomplete(api, world):
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    body = await check(api, "KS-043", applicant_of(me), [id_card.body()])
    assert body["complete"] is False and body["outcome"] == "incomplete"
    assert body["missing"] == ["social_security_card"]
    ssc_req = requirement(body, "social_security_card")
    assert ssc_req["satisfied"] is False and ssc_req["satisfied_by"] == [] and ssc_req["problems"] == []
    assert [t["key"] for t in ssc_req["accepted_types"]] == ["social_security_card"]
    assert requirement(body, "applicant_identity")["satisfied"] is True


@pytest.mark.parametrize("presented_type", ["id_card", "social_security_card"])
async def test_either_alternative_satisfies_an_or_requirement(api, world, presented_type):
    me = person(world, SHANGHAI)
    lic = issue(world, SHANGHAI, presented_type, me)
    body = await check(api, "KS-037", applicant_of(me), [lic.body()])
    req = requirement(body, "applicant_identity")
    assert body["complete"] is True
    assert req["satisfied_by"] == [lic.licence.identifier]
    assert {t["key"] for t in req["accepted_types"]} == {"id_card", "social_security_card"}


async def test_licence_of_a_type_the_item_does_not_ask_for_is_reported_and_hidden(api, world):
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    driving = issue(world, HUZHOU, "driving_licence", me)
    body = await check(api, "KS-037", applicant_of(me), [id_card.body(), driving.body()])
    assert body["complete"] is True
    extra = body["licences"][1]
    assert extra["verdict"] == "valid" and codes(extra["reasons"]) == ["TYPE_NOT_ACCEPTED"]
    assert extra["licence"] is None and extra["satisfies"] == []
    assert_nothing_undisclosed(world, body, "KS-037", [id_card.licence, driving.licence])


# --- binding --------------------------------------------------------------------------
async def test_licence_of_another_holder_is_not_bound(api, world):
    me, stranger = person(world, HUZHOU), person(world, HEFEI)
    while stranger[0] == me[0]:   # two people may share a name (1 in 240 synthetic ones): not this one
        stranger = person(world, HEFEI)
    id_card = issue(world, HUZHOU, "id_card", me)
    their_ssc = issue(world, HEFEI, "social_security_card", stranger)
    body = await check(api, "KS-043", applicant_of(me), [id_card.body(), their_ssc.body()])
    assert body["complete"] is False and body["missing"] == ["social_security_card"]
    problems = requirement(body, "social_security_card")["problems"]
    assert [(p["index"], p["identifier"]) for p in problems] == [(1, their_ssc.licence.identifier)]
    assert codes(problems[0]["reasons"]) == ["HOLDER_MISMATCH"]
    assert mask_holder_code(stranger[1]) in problems[0]["reasons"][0]["detail"]
    theirs = body["licences"][1]
    assert theirs["verdict"] == "valid" and theirs["licence"] is None
    assert codes(theirs["reasons"]) == ["HOLDER_MISMATCH"]
    assert stranger[1] not in str(body) and stranger[0] not in str(body)
    assert_nothing_undisclosed(world, body, "KS-043", [id_card.licence, their_ssc.licence])


async def test_same_id_number_with_another_code_type_is_not_bound(api, world):
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    body = await check(api, "KS-037", {"code_type": "999", "code": me[1]}, [id_card.body()])
    assert body["complete"] is False
    assert codes(body["licences"][0]["reasons"]) == ["HOLDER_MISMATCH"]


async def test_legal_representative_completes_a_company_item_with_its_business_licence(api, world):
    rep = person(world, HUZHOU)
    lic, presented = business_licence_naming(world, HUZHOU, rep)
    body = await check(api, "KS-004", applicant_of(rep), [presented])
    assert body["complete"] is True, body
    assert requirement(body, "business_licence")["satisfied_by"] == [lic.identifier]
    assert requirement(body, "legal_representative")["satisfied_by"] == [lic.identifier]
    assert body["acting_for"] == [{"code_type": "001", "code_masked": mask_holder_code(lic.holder_code)}]
    disclosed = body["licences"][0]["licence"]
    # union of both requirements' lists, nothing else (legal_representative_code is not listed)
    assert set(disclosed) == {"holder_name", "holder_code", "valid_until", "surface"}
    assert set(disclosed["surface"]) == {"entity_type", "registered_address", "legal_representative_name"}
    assert rep[1] not in strings_in(body["licences"]) and "legal_representative_code" not in str(body)
    assert_nothing_undisclosed(world, body, "KS-004", [lic])


async def test_business_licence_naming_someone_else_as_representative_is_a_mismatch(api, world):
    rep, impostor = person(world, HUZHOU), person(world, HUZHOU)
    lic, presented = business_licence_naming(world, HUZHOU, rep)
    body = await check(api, "KS-004", applicant_of(impostor), [presented])
    assert body["complete"] is False and body["acting_for"] == []
    assert body["missing"] == ["business_licence", "legal_representative"]
    for rid in ("business_licence", "legal_representative"):
        assert codes(requirement(body, rid)["problems"][0]["reasons"]) == ["HOLDER_MISMATCH"]
    assert body["licences"][0]["licence"] is None
    assert_nothing_undisclosed(world, body, "KS-004", [lic])


async def test_company_as_applicant_holds_its_licence_but_is_not_its_own_representative(api, world):
    rep = person(world, SUZHOU)
    lic, presented = business_licence_naming(world, SUZHOU, rep)
    body = await check(api, "KS-004", {"code_type": "001", "code": lic.holder_code}, [presented])
    assert requirement(body, "business_licence")["satisfied"] is True
    assert requirement(body, "legal_representative")["satisfied"] is False
    assert body["complete"] is False and body["missing"] == ["legal_representative"]


# --- licences that do not verify ----------------------------------------------------------
async def test_revoked_licence_cannot_satisfy_its_requirement(api, world):
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    ssc = issue(world, SUZHOU, "social_security_card", me, case="revoked")
    # the revocation reaches the gateway through its status refresh
    api.app[LIVE].set_status(world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)))
    body = await check(api, "KS-043", applicant_of(me), [id_card.body(), ssc.body()])
    assert body["complete"] is False and body["missing"] == ["social_security_card"]
    problems = requirement(body, "social_security_card")["problems"]
    assert [(p["index"], codes(p["reasons"])) for p in problems] == [(1, ["LICENCE_REVOKED"])]
    assert body["licences"][1]["verdict"] == "invalid" and body["licences"][1]["licence"] is None


async def test_tampered_licence_is_reported_under_the_unsatisfied_requirement(api, world):
    me = person(world, HUZHOU)
    ssc = issue(world, HUZHOU, "social_security_card", me)
    forged_id = issue(world, HUZHOU, "id_card", me, case="tampered")
    body = await check(api, "KS-043", applicant_of(me), [forged_id.body(), ssc.body()])
    assert body["complete"] is False and body["missing"] == ["applicant_identity"]
    problems = requirement(body, "applicant_identity")["problems"]
    assert [(p["index"], codes(p["reasons"])) for p in problems] == [(0, ["SIGNATURE_INVALID"])]
    assert requirement(body, "social_security_card")["problems"] == []  # already satisfied: no noise
    assert body["licences"][0]["verdict"] == "invalid" and body["licences"][0]["licence"] is None


async def test_expired_reason_does_not_quote_the_undisclosed_validity_date(api, world):
    me = person(world, HUZHOU)
    expired_ssc = issue(world, HUZHOU, "social_security_card", me, case="expired")
    body = await check(api, "KS-037", applicant_of(me), [expired_ssc.body()])
    assert codes(body["licences"][0]["reasons"]) == ["LICENCE_EXPIRED"]
    assert "detail" not in body["licences"][0]["reasons"][0]
    assert expired_ssc.licence.valid_until.isoformat() not in str(body)


async def test_undecodable_entry_is_malformed_and_does_not_spoil_the_others(api, world):
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    body = await check(api, "KS-037", applicant_of(me), [{"licence": "@@@", "encoding": "base64"}, id_card.body()])
    assert body["complete"] is True
    assert body["licences"][0]["verdict"] == "invalid" and codes(body["licences"][0]["reasons"]) == ["MALFORMED"]


async def test_unavailable_status_makes_the_outcome_indeterminate(client_for, world):
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    body = await check(client, "KS-037", applicant_of(me), [id_card.body()])
    assert body["complete"] is False and body["outcome"] == "indeterminate"
    assert body["licences"][0]["verdict"] == "indeterminate"
    assert codes(requirement(body, "applicant_identity")["problems"][0]["reasons"]) == ["STATUS_UNAVAILABLE"]


# --- bad requests -------------------------------------------------------------------------
def forged_check_digit(code: str) -> str:
    wrong = next(c for c in "0123456789X" if c != code[-1])
    return code[:-1] + wrong


@pytest.mark.parametrize("applicant_with_bad_code", [
    {"code_type": "111", "code": "forge"},
    {"code_type": "111", "code": forged_check_digit("33050219900307123" + citizen_id_check("33050219900307123"))},
    {"code_type": "001", "code": "91330502MA2B3C4D5X"},
    {"code_type": "777", "code": "330502199003071234"},
])
async def test_applicant_with_a_bad_code_is_400_applicant_invalid(api, world, applicant_with_bad_code):
    body = await check(api, "KS-037", applicant_with_bad_code, [], status=400)
    assert body["code"] == "APPLICANT_INVALID" and body["detail"]


@pytest.mark.parametrize("payload", [
    {"licences": []},
    {"applicant": "330502199003071234", "licences": []},
    {"applicant": {"code_type": "111"}, "licences": []},
    {"applicant": {"code_type": "111", "code": "x", "role": "admin"}, "licences": []},
    {"applicant": {"code_type": "111", "code": "33050219900307123X"}, "licences": "all"},
    {"applicant": {"code_type": "111", "code": "33050219900307123X"}, "licences": [], "debug": True},
])
async def test_ill_formed_check_bodies_are_400(api, payload):
    resp = await api.post("/v1/items/KS-037/check", json=payload)
    assert resp.status == 400 and (await resp.json())["code"] in ("BAD_REQUEST", "APPLICANT_INVALID")


async def test_too_many_licences_is_413(api, world):
    me = person(world, HUZHOU)
    entry = {"licence": "x", "encoding": "utf-8"}
    resp = await api.post("/v1/items/KS-037/check", json={
        "applicant": applicant_of(me), "licences": [entry] * (world.settings.max_batch + 1)})
    assert resp.status == 413 and (await resp.json())["code"] == "BATCH_TOO_LARGE"


async def test_unknown_item_is_404(api, world):
    me = person(world, HUZHOU)
    body = await check(api, "KS-999", applicant_of(me), [], status=404)
    assert body["code"] == "NOT_FOUND"


async def test_read_only_token_cannot_check(aiohttp_client, world):
    client = await aiohttp_client(create_app(world.services()), headers=world.auth(scope="items:read"))
    resp = await client.post("/v1/items/KS-037/check", json={"applicant": {}, "licences": []})
    assert resp.status == 403 and (await resp.json())["code"] == "FORBIDDEN"


# --- the restricted partner ----------------------------------------------------------------
@pytest.fixture
def restricted_checker(tmp_path: Path, world):
    """The restricted TEST partner (items KS-001/KS-002, regions 湖州 + 上海), granted items:check
    in a copy of the registry so its item and region limits can be exercised on /check."""
    src = Path(world.settings.partners_dir)
    for name in ("restricted-partner.toml", "restricted-partner.test-private.pem"):
        shutil.copy(src / name, tmp_path / name)
    toml = tmp_path / "restricted-partner.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'scopes = ["licences:verify", "items:read"]', 'scopes = ["licences:verify", "items:read", "items:check"]'),
        encoding="utf-8")
    registry = load_partners(tmp_path)
    assert "items:check" in registry["restricted-partner"].scopes
    token = demo_token(tmp_path, client_id="restricted-partner", scope="items:check", gateway_key=world.gateway_key,
                       token_endpoint=world.settings.token_endpoint_url, now=NOW.timestamp())["access_token"]
    return registry, {"Authorization": f"Bearer {token}"}


async def test_restricted_partner_is_refused_an_item_outside_its_list(aiohttp_client, world, restricted_checker):
    registry, headers = restricted_checker
    client = await aiohttp_client(create_app(world.services(partners=registry)), headers=headers)
    me = person(world, HUZHOU)
    body = await check(client, "KS-043", applicant_of(me), [issue(world, HUZHOU, "id_card", me).body()], status=403)
    assert body["code"] == "FORBIDDEN" and "KS-043" in body["detail"]
    ok = await check(client, "KS-001", applicant_of(me), [issue(world, HUZHOU, "id_card", me).body()])
    assert ok["complete"] is True


async def test_restricted_partner_is_refused_licences_from_regions_outside_its_list(aiohttp_client, world,
                                                                                     restricted_checker):
    registry, headers = restricted_checker
    client = await aiohttp_client(create_app(world.services(partners=registry)), headers=headers)
    me = person(world, SUZHOU)
    body = await check(client, "KS-001", applicant_of(me), [issue(world, SUZHOU, "id_card", me).body()], status=403)
    assert body["code"] == "FORBIDDEN" and SUZHOU in body["detail"]
