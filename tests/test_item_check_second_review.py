"""Second adversarial review of the item check (POST /v1/items/{code}/check, gateway.checking)
and of field disclosure (gateway.catalogue.disclose). Each attack has a genuine control beside
it that stays as it was; licences are issued and verified for real through HTTP where the
attack can be sent that way."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from gateway import errors
from gateway.bootstrap import type_names
from gateway.catalogue import disclose, load_default_catalogue
from gateway.checking import Applicant, Presented, check_item, parse_applicant
from gateway.core import Verifier
from tests.test_query_federated import query_client, regions_up  # noqa: E402,F401  (fixtures)
from gateway.edges import MemoryStatusSource
from gateway.errors import RequestRejected
from gateway.identifiers import make_licence_identifier, make_uscc, uscc_valid
from gateway.status import StatusSnapshot

from .conftest import NOW
from .test_catalogue_validation import edit_item, one_problem, problems_of
from .test_items_check import applicant_of, check, codes, issue, person, requirement, strings_in

HUZHOU, SUZHOU, NANJING = "330500", "320500", "320100"  # 南京: in the YRD, not in the G60 corridor


def presented(world, region: str, lic) -> dict[str, str]:
    """A canonical licence signed by ``region``'s simulated issuer, as a check entry."""
    data = world.simulator.encode(region, lic, NOW)
    return {"licence": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


# --- 1. a licence of a region the item is not handled across -------------------------------------
def _rep_and_company_licence(world, region: str):
    rep = person(world, region)
    company = world.simulator.company(region)
    bl = world.simulator.canonical(region, "business_licence", NOW, holder=(*company, "001"),
                                   surface={"legal_representative_code": rep[1], "legal_representative_name": rep[0]})
    return rep, bl


async def test_licence_of_a_region_outside_a_g60_item_does_not_complete_it(api, world):
    """KS-016 计量器具型式批准 is handled across the nine G60 cities only (``regions``). A company of
    南京 (YRD, not G60) completed it with its own 营业执照: the item's regions were never consulted."""
    item = world.catalogue.item("KS-016")
    assert not item.all_regions and NANJING not in item.regions and SUZHOU in item.regions
    rep, bl = _rep_and_company_licence(world, NANJING)
    body = await check(api, "KS-016", applicant_of(rep), [presented(world, NANJING, bl)])
    assert body["complete"] is False and body["outcome"] == "incomplete"
    assert body["missing"] == ["business_licence", "legal_representative"]
    assert body["acting_for"] == []  # nor does it make the applicant act for the company
    entry = body["licences"][0]
    assert entry["verdict"] == "valid" and entry["licence"] is None and entry["satisfies"] == []
    assert codes(entry["reasons"]) == ["UNKNOWN_REGION"] and NANJING in entry["reasons"][0]["detail"]
    for rid in ("business_licence", "legal_representative"):
        assert codes(requirement(body, rid)["problems"][0]["reasons"]) == ["UNKNOWN_REGION"]
    assert bl.holder_code not in strings_in(body) and rep[0] not in strings_in(body)


async def test_control_licence_of_a_g60_city_completes_the_g60_item(api, world):
    rep, bl = _rep_and_company_licence(world, SUZHOU)
    body = await check(api, "KS-016", applicant_of(rep), [presented(world, SUZHOU, bl)])
    assert body["complete"] is True
    assert body["licences"][0]["satisfies"] == ["business_licence", "legal_representative"]
    # and an item open to all regions still takes the 南京 licence
    rep, bl = _rep_and_company_licence(world, NANJING)
    body = await check(api, "KS-004", applicant_of(rep), [presented(world, NANJING, bl)])
    assert world.catalogue.item("KS-004").all_regions and body["complete"] is True


def test_indeterminate_licence_of_a_region_outside_the_item_is_incomplete_not_indeterminate(world):
    rep, bl = _rep_and_company_licence(world, NANJING)
    stale = Presented(0, "indeterminate", (errors.STATUS_UNAVAILABLE,), (NANJING, "南京市"), bl)
    out = check_item(world.catalogue, world.catalogue.item("KS-016"), Applicant("111", rep[1]), [stale])
    assert out.outcome == "incomplete"  # no retry brings 南京 into a G60 item
    inside = dataclasses.replace(stale, region=(SUZHOU, "苏州市"))  # control: the same, from a G60 city
    assert check_item(world.catalogue, world.catalogue.item("KS-016"), Applicant("111", rep[1]),
                      [inside]).outcome == "indeterminate"


# --- 2. an indeterminate licence of a type the catalogue does not know ---------------------------
UNCATALOGUED_TYPE = "11100000000013338W009"  # the housing ministry's type of a real Zhejiang identifier


async def test_indeterminate_licence_of_an_uncatalogued_type_does_not_make_the_outcome_indeterminate(client_for, world):
    """Its type code was read: once its status is known it is valid (a type no requirement accepts)
    or invalid, never the applicant's missing ID card. The answer said "retrying may help"."""
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    me = person(world, HUZHOU)
    lic = world.simulator.canonical(HUZHOU, "id_card", NOW, holder=me)
    lic = dataclasses.replace(lic, type_code=UNCATALOGUED_TYPE,
                              identifier=make_licence_identifier(UNCATALOGUED_TYPE, lic.issuer_code, "2026112700001"))
    assert world.catalogue.type_by_code(UNCATALOGUED_TYPE) is None
    body = await check(client, "KS-037", applicant_of(me), [presented(world, HUZHOU, lic)])
    assert body["licences"][0]["verdict"] == "indeterminate"
    assert body["complete"] is False and body["outcome"] == "incomplete"


async def test_control_undecodable_entry_beside_a_stale_licence_still_leaves_the_outcome_to_it(client_for, world):
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    me = person(world, HUZHOU)
    mine = issue(world, HUZHOU, "id_card", me)
    body = await check(client, "KS-037", applicant_of(me), [{"licence": "@@@", "encoding": "base64"}, mine.body()])
    assert body["outcome"] == "indeterminate"  # the applicant's own stale ID card may verify on a retry
    (problem,) = [p for p in requirement(body, "applicant_identity")["problems"] if p["index"] == 1]
    assert codes(problem["reasons"]) == ["STATUS_UNAVAILABLE"]


# --- 3. Unicode case folding of credit codes -----------------------------------------------------
def _ff_company() -> str:
    uscc = make_uscc("9", "1", HUZHOU, "MA2BFF4D")  # a synthetic, check-valid USCC with "FF" in it
    assert uscc_valid(uscc) and "FF" in uscc
    return uscc


async def test_ligature_ff_in_a_co_owner_code_does_not_bind_the_company_whose_code_has_ff(api, world):
    """str.upper() turns "ﬀ" (U+FB00) into "FF": a co-owner code the issuer wrote with the ligature
    (not a USCC at all) bound the company whose code has "FF" there, and the 不动产权证书's location,
    unit number and holder's name were disclosed to it."""
    company = _ff_company()
    owner = person(world, HUZHOU)
    cert = world.simulator.canonical(HUZHOU, "real_estate_certificate", NOW, holder=owner, surface={
        "co_owner_code": company.replace("FF", "\ufb00"), "co_owner_name": "测试共有公司", "co_ownership": "按份共有"})
    body = await check(api, "KS-121", {"code_type": "001", "code": company}, [presented(world, HUZHOU, cert)])
    assert requirement(body, "real_estate_co_owner")["satisfied"] is False
    assert body["licences"][0]["licence"] is None and codes(body["licences"][0]["reasons"]) == ["HOLDER_MISMATCH"]
    assert owner[0] not in strings_in(body)
    # the applicant's own code in the ligature is refused as the full-width digits were (first review)
    with pytest.raises(RequestRejected) as info:
        parse_applicant({"code_type": "001", "code": company.replace("FF", "\ufb00")})
    assert info.value.reason is errors.APPLICANT_INVALID


async def test_control_ascii_co_owner_code_in_any_case_binds_the_company(api, world):
    company = _ff_company()
    owner = person(world, HUZHOU)
    cert = world.simulator.canonical(HUZHOU, "real_estate_certificate", NOW, holder=owner, surface={
        "co_owner_code": company.lower(), "co_owner_name": "测试共有公司", "co_ownership": "按份共有"})
    body = await check(api, "KS-121", {"code_type": "001", "code": company.lower()},
                       [presented(world, HUZHOU, cert)])
    assert requirement(body, "real_estate_co_owner")["satisfied_by"] == [cert.identifier]
    assert parse_applicant({"code_type": "001", "code": company.lower()}).code == company


# --- 4. a requirement accepting two types with different surface fields --------------------------
async def test_diploma_does_not_disclose_degree_fields_its_issuer_put_on_it(api, world):
    """KS-022 asks for a 学历证书 or a 学位证书 and lists the fields of both (school_name for the
    one, awarding_institution and degree_level for the other). A diploma carrying extra fields named
    like the degree certificate's had them disclosed, though 学历证书 has no such fields."""
    me = person(world, HUZHOU)
    diploma = world.simulator.canonical(HUZHOU, "diploma", NOW, holder=me, surface={
        "school_name": "测试大学", "degree_level": "疑似附加信息", "awarding_institution": "附加的授予单位"})
    assert world.catalogue.type_by_key("diploma").surface_field("degree_level") is None
    body = await check(api, "KS-022", applicant_of(me), [presented(world, HUZHOU, diploma)])
    disclosed = body["licences"][0]["licence"]
    assert body["licences"][0]["satisfies"] == ["education_certificate"]
    assert disclosed["surface"]["school_name"] == "测试大学"
    assert "degree_level" not in disclosed["surface"] and "awarding_institution" not in disclosed["surface"]
    assert "疑似附加信息" not in strings_in(body) and "附加的授予单位" not in strings_in(body)


async def test_control_degree_certificate_discloses_its_degree_fields(api, world):
    me = person(world, HUZHOU)
    degree = world.simulator.canonical(HUZHOU, "degree_certificate", NOW, holder=me, surface={
        "degree_level": "学士", "awarding_institution": "测试大学"})
    body = await check(api, "KS-022", applicant_of(me), [presented(world, HUZHOU, degree)])
    surface = body["licences"][0]["licence"]["surface"]
    assert surface["degree_level"] == "学士" and surface["awarding_institution"] == "测试大学"
    # disclose() without the type (other callers) keeps its old meaning
    req = world.catalogue.item("KS-022").requirement("education_certificate")
    assert disclose(req, {"surface": {"degree_level": "x"}})["surface"] == {"degree_level": "x"}


# --- 5. notes a verification carries ----------------------------------------------------------------
async def test_licence_of_a_status_exempt_region_says_its_status_was_not_checked(client_for, world):
    """With status checking switched off for a region (``status_exempt_regions``), /verify answers
    ``STATUS_NOT_CHECKED``; the item check dropped the note: a licence revoked there completed the
    item with nothing to tell that its revocation was never looked at."""
    verifier = Verifier(dataclasses.replace(world.verifier.policy, status_exempt_regions=frozenset({SUZHOU})),
                        world.specs, type_names(world.catalogue))
    client = await client_for(verifier=verifier)
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    ssc = issue(world, SUZHOU, "social_security_card", me)
    body = await check(client, "KS-043", applicant_of(me), [id_card.body(), ssc.body()])
    assert body["complete"] is True
    assert [n["code"] for n in body["licences"][1]["notes"]] == ["STATUS_NOT_CHECKED"]
    assert "notes" not in body["licences"][0]  # control: 湖州's status was checked
    resp = await client.post("/v1/licences/verify", json=ssc.body())
    assert [n["code"] for n in (await resp.json())["notes"]] == ["STATUS_NOT_CHECKED"]


def test_notes_in_a_check_quote_no_licence_value(world):
    me = person(world, HUZHOU)
    lic = world.simulator.canonical(HUZHOU, "id_card", NOW, holder=me)
    p = Presented(0, "valid", (), (HUZHOU, "湖州市"), lic, ("ISSUER_CERT_EXPIRED_SINCE_SIGNING", "SOMETHING_NEW"))
    out = check_item(world.catalogue, world.catalogue.item("KS-037"), Applicant("111", me[1]), [p]).to_dict()
    notes = out["licences"][0]["notes"]
    assert [n["code"] for n in notes] == ["ISSUER_CERT_EXPIRED_SINCE_SIGNING", "SOMETHING_NEW"]
    assert not any(ch.isdigit() for n in notes for ch in n["message"] + n["message_zh"])  # no dates


# --- 6. two requirements one licence satisfies alike ----------------------------------------------
def test_catalogue_item_whose_two_requirements_one_licence_satisfies_alike_is_refused(tmp_path: Path, world):
    """An operator's KS-043 asking for the applicant's 居民身份证 and "社会保障卡 (or 居民身份证)":
    meant as two documents, but the check binds each licence to each requirement on its own, so one
    ID card satisfied both. Such a catalogue is refused at load, naming the item and requirement."""
    bad = edit_item("KS-043", 'accept = ["social_security_card"]', 'accept = ["social_security_card", "id_card"]')
    line = one_problem(problems_of(tmp_path, items_text=bad), "item 'KS-043'", "requirements[1]", "accept:")
    assert "'applicant_identity'" in line and "id_card" in line and "one licence would satisfy both" in line
    # what it would have answered: complete with a single ID card
    item = world.catalogue.item("KS-043")
    two = dataclasses.replace(item, requirements=(item.requirements[0], dataclasses.replace(
        item.requirements[1], accept=("social_security_card", "id_card"))))
    me = person(world, HUZHOU)
    lic = world.simulator.canonical(HUZHOU, "id_card", NOW, holder=me)
    assert check_item(world.catalogue, two, Applicant("111", me[1]),
                      [Presented(0, "valid", (), (HUZHOU, "湖州市"), lic)]).complete is True


def test_control_a_holder_and_a_role_requirement_on_one_licence_type_still_load():
    # KS-004: the company's 营业执照 (holder) and "the applicant is its legal representative" (role):
    # one licence satisfying both is the intended reading
    item = load_default_catalogue().item("KS-004")
    assert [(r.accept, r.binding) for r in item.requirements] == [
        (("business_licence",), "holder"), (("business_licence",), "role:legal_representative")]


async def test_federated_query_for_a_g60_item_discloses_nothing_from_a_region_outside_it(query_client, regions_up):
    """The query judges as the item check does: a G60-only item (KS-112) asked, with explicit regions, of
    南京 (in the Delta, not in G60) gets that region's licence rejected with UNKNOWN_REGION, no fields;
    the same query for an item open to every region (KS-009) discloses it."""
    from tests.test_query_federated import SECOND, body, by_region, citizen, query

    rs, _ = regions_up
    code = citizen(area="320102", seq=913)
    client = await query_client()
    open_item = by_region(await query(client, body(code, [SECOND])))[SECOND]
    assert open_item["status"] == "ok" and open_item["licences"][0]["licence"]
    g60 = await query(client, body(code, [SECOND], item="KS-112", use_cause="出租汽车驾驶员从业资格注册，核验申请人"))
    answer = by_region(g60)[SECOND]
    assert answer["licences"] == [] and {r["reasons"][0]["code"] for r in answer["rejected"]} == {"UNKNOWN_REGION"}
