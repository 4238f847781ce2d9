"""Adversarial review of the item check's logic (gateway.checking through POST
/v1/items/{code}/check): representation, masking, applicant codes and the outcome of an
indeterminate licence. Each finding has a genuine control beside it."""

from __future__ import annotations

import base64

import pytest

from gateway import errors
from gateway.catalogue import Catalogue, Item, Requirement
from gateway.checking import Applicant, Presented, check_item, parse_applicant
from gateway.edges import MemoryStatusSource
from gateway.errors import RequestRejected
from gateway.identifiers import mask_holder_code
from gateway.status import StatusSnapshot

from .conftest import NOW
from .test_items_check import (applicant_of, business_licence_naming, check, codes, issue, person, requirement,
                               strings_in)

HUZHOU, SUZHOU, HEFEI = "330500", "320500", "340100"
HZ = (HUZHOU, "湖州市")


def valid(index: int, lic) -> Presented:
    return Presented(index, "valid", (), HZ, lic)


def company_real_estate_naming(world, co_owner: tuple[str, str, str]):
    """A 不动产权证书 held by a synthetic company that names ``co_owner`` as its co-owner."""
    company = world.simulator.company(HUZHOU)
    lic = world.simulator.canonical(HUZHOU, "real_estate_certificate", NOW, holder=(*company, "001"),
                                    surface={"co_owner_code": co_owner[1], "co_owner_name": co_owner[0],
                                             "co_ownership": "按份共有"})
    return company, lic


# --- 1. a co-owner is not a representative -------------------------------------------------
async def test_co_owner_of_a_company_property_does_not_act_for_the_company(api, world):
    me = person(world, HUZHOU)
    company, re_cert = company_real_estate_naming(world, me)
    id_card = issue(world, HUZHOU, "id_card", me)
    data = world.simulator.encode(HUZHOU, re_cert, NOW)
    presented = {"licence": base64.b64encode(data).decode("ascii"), "encoding": "base64"}
    body = await check(api, "KS-121", applicant_of(me), [id_card.body(), presented])
    # the co-owner item itself is complete: the role binding is right
    assert body["complete"] is True
    assert requirement(body, "real_estate_co_owner")["satisfied_by"] == [re_cert.identifier]
    # ... but being named a co-owner does not make the applicant act for the owning company
    assert body["acting_for"] == []


def _item_with(world, code: str, *reqs: Requirement) -> tuple[Catalogue, Item]:
    base = world.catalogue
    item = Item(code=code, name_zh="测试事项", name_en="test item", name_status="modelled", department="测试",
                modes=("全程网办",), all_regions=True, regions=(), source="test", requirements=reqs)
    return Catalogue(base.types, (*base.items, item), base.etag, base.region_codes), item


def test_co_owner_does_not_hold_the_owning_companys_business_licence(world):
    """An operator's catalogue item asking for a company's 营业执照 (holder) and a co-owner's
    不动产权证书: a person named co-owner on the company's certificate must not thereby
    satisfy "the company's business licence"."""
    catalogue, item = _item_with(
        world, "ZZ-CO-OWNER",
        Requirement("business_licence", "申请单位营业执照", True, ("business_licence",), "holder", ("holder_name",)),
        Requirement("co_owner", "不动产权证书（申请人为共有人）", True, ("real_estate_certificate",), "role:co_owner",
                    ("co_owner_name",)))
    me = person(world, HUZHOU)
    company, re_cert = company_real_estate_naming(world, me)
    their_bl = world.simulator.canonical(HUZHOU, "business_licence", NOW, holder=(*company, "001"))
    out = check_item(catalogue, item, Applicant("111", me[1]), [valid(0, re_cert), valid(1, their_bl)])
    by_id = {r.requirement.id: r for r in out.requirements}
    assert by_id["co_owner"].satisfied is True
    assert by_id["business_licence"].satisfied is False
    assert out.represented == () and out.complete is False
    assert [f.reason for f in out.licences[1].findings] == [errors.HOLDER_MISMATCH]
    assert out.licences[1].disclosed is None


def test_control_legal_representative_still_acts_for_the_company_in_the_same_shape_of_item(world):
    catalogue, item = _item_with(
        world, "ZZ-LEGAL-REP",
        Requirement("business_licence", "申请单位营业执照", True, ("business_licence",), "holder", ("holder_name",)),
        Requirement("legal_rep", "营业执照（申请人为法定代表人）", True, ("business_licence",),
                    "role:legal_representative", ("legal_representative_name",)))
    rep = person(world, HUZHOU)
    company = world.simulator.company(HUZHOU)
    bl = world.simulator.canonical(HUZHOU, "business_licence", NOW, holder=(*company, "001"),
                                   surface={"legal_representative_code": rep[1], "legal_representative_name": rep[0]})
    out = check_item(catalogue, item, Applicant("111", rep[1]), [valid(0, bl)])
    assert out.complete is True and out.represented == (("001", company[1]),)


# --- 2. masking of short codes --------------------------------------------------------------
def _stranger_ssc_mismatch_detail(world, stranger_code: str, code_type: str) -> str:
    me = person(world, HUZHOU)
    id_card = world.simulator.canonical(HUZHOU, "id_card", NOW, holder=me)
    theirs = world.simulator.canonical(HUZHOU, "social_security_card", NOW, holder=("Doe", stranger_code, code_type))
    out = check_item(world.catalogue, world.catalogue.item("KS-043"), Applicant("111", me[1]),
                     [valid(0, id_card), valid(1, theirs)]).to_dict()
    (reason,) = out["licences"][1]["reasons"]
    assert reason["code"] == "HOLDER_MISMATCH"
    return reason["detail"]


def test_a_strangers_passport_number_is_masked_in_the_mismatch_detail(world):
    passport = "E12345678"  # 9 characters: the old mask showed 8 of them (E123*5678)
    detail = _stranger_ssc_mismatch_detail(world, passport, "414")
    assert "is not the applicant" in detail
    shown = [c for c in detail.split()[2] if c != "*"]
    assert len(shown) == 0 and "E123" not in detail and "5678" not in detail
    assert detail.split()[2] == "*" * 9


def test_control_a_strangers_id_number_keeps_its_usual_mask(world):
    stranger = person(world, HEFEI)
    detail = _stranger_ssc_mismatch_detail(world, stranger[1], "111")
    assert mask_holder_code(stranger[1]) in detail and stranger[1] not in detail


# --- 3. full-width digits in the applicant's ID number ---------------------------------------
def _fullwidth(code: str) -> str:
    return "".join(chr(ord(c) - ord("0") + 0xFF10) if c.isdigit() else c for c in code)


async def test_full_width_digits_in_the_applicants_id_number_are_400_applicant_invalid(api, world):
    me = person(world, HUZHOU)
    body = await check(api, "KS-037", {"code_type": "111", "code": _fullwidth(me[1])}, [], status=400)
    assert body["code"] == "APPLICANT_INVALID"
    with pytest.raises(RequestRejected) as info:
        parse_applicant({"code_type": "111", "code": "\u0663\u0663" + me[1][2:]})  # Arabic-Indic digits
    assert info.value.reason is errors.APPLICANT_INVALID


async def test_control_the_same_id_number_in_ascii_is_accepted_and_binds(api, world):
    me = person(world, HUZHOU)
    id_card = issue(world, HUZHOU, "id_card", me)
    body = await check(api, "KS-037", {"code_type": "111", "code": me[1]}, [id_card.body()])
    assert body["complete"] is True
    # a code type without a check rule keeps non-ASCII codes (e.g. a 军官证 number)
    assert parse_applicant({"code_type": "114", "code": "南字第123456号"}).code == "南字第123456号"


# --- 4. an indeterminate licence of someone else ---------------------------------------------
async def test_indeterminate_licence_of_another_holder_does_not_make_the_outcome_indeterminate(client_for, world):
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    me, stranger = person(world, HUZHOU), person(world, HEFEI)
    theirs = issue(world, HEFEI, "id_card", stranger)
    body = await check(client, "KS-037", applicant_of(me), [theirs.body()])
    assert body["licences"][0]["verdict"] == "indeterminate" and body["licences"][0]["licence"] is None
    # no retry can make someone else's ID card the applicant's
    assert body["complete"] is False and body["outcome"] == "incomplete"
    (problem,) = requirement(body, "applicant_identity")["problems"]
    assert codes(problem["reasons"]) == ["STATUS_UNAVAILABLE", "HOLDER_MISMATCH"]
    assert all("detail" not in r for r in problem["reasons"])
    assert stranger[1] not in strings_in(body) and mask_holder_code(stranger[1]) not in str(body)


async def test_control_indeterminate_licence_of_the_applicant_stays_indeterminate(client_for, world):
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    me = person(world, HUZHOU)
    mine = issue(world, HUZHOU, "id_card", me)
    body = await check(client, "KS-037", applicant_of(me), [mine.body()])
    assert body["outcome"] == "indeterminate"
    (problem,) = requirement(body, "applicant_identity")["problems"]
    assert codes(problem["reasons"]) == ["STATUS_UNAVAILABLE"]


def _stale_business_licence_naming(world, rep):
    company = world.simulator.company(HUZHOU)
    bl = world.simulator.canonical(HUZHOU, "business_licence", NOW, holder=(*company, "001"),
                                   surface={"legal_representative_code": rep[1], "legal_representative_name": rep[0]})
    return Presented(0, "indeterminate", (errors.STATUS_UNAVAILABLE,), HZ, bl)


def test_control_stale_company_licence_naming_the_applicant_as_representative_stays_indeterminate(world):
    """The representation path: the business licence names the applicant as legal
    representative but could not be confirmed; once it verifies it satisfies both
    requirements, so retrying may help."""
    rep = person(world, HUZHOU)
    out = check_item(world.catalogue, world.catalogue.item("KS-004"), Applicant("111", rep[1]),
                     [_stale_business_licence_naming(world, rep)])
    assert out.outcome == "indeterminate" and out.complete is False
    assert [[f.reason for f in p.findings] for r in out.requirements for p in r.problems] == [
        [errors.STATUS_UNAVAILABLE], [errors.STATUS_UNAVAILABLE]]


def test_stale_company_licence_naming_someone_else_is_incomplete_not_indeterminate(world):
    rep, stranger = person(world, HUZHOU), person(world, HUZHOU)
    out = check_item(world.catalogue, world.catalogue.item("KS-004"), Applicant("111", stranger[1]),
                     [_stale_business_licence_naming(world, rep)])
    assert out.outcome == "incomplete" and out.represented == ()
    assert [[f.reason for f in p.findings] for r in out.requirements for p in r.problems] == [
        [errors.STATUS_UNAVAILABLE, errors.HOLDER_MISMATCH], [errors.STATUS_UNAVAILABLE, errors.HOLDER_MISMATCH]]
    assert out.licences[0].disclosed is None
