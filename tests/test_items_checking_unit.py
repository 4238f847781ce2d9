"""gateway.checking as pure code: Presented results in, outcome out (no HTTP, no signatures)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway import errors
from gateway.checking import Applicant, Presented, check_item, parse_applicant
from gateway.errors import RequestRejected
from gateway.identifiers import citizen_id_check

from .conftest import NOW

HUZHOU = ("330500", "湖州市")


def valid(index: int, lic) -> Presented:
    return Presented(index, "valid", (), HUZHOU, lic)


def person(world) -> tuple[str, str, str]:
    name, code = world.simulator.person("330500")
    return name, code, "111"


def licence(world, type_key: str, holder, surface=None):
    return world.simulator.canonical("330500", type_key, NOW, holder=holder, surface=surface)


def test_parent_named_on_a_birth_certificate_does_not_hold_the_childs_licences(world):
    parent, child = person(world), person(world)
    birth = licence(world, "birth_certificate", child, {"mother_code": parent[1], "mother_name": parent[0]})
    childs_register = licence(world, "household_register", child)
    item = world.catalogue.item("KS-083")  # household register (holder) + birth certificate (role:parent)
    out = check_item(world.catalogue, item, Applicant("111", parent[1]), [valid(0, birth), valid(1, childs_register)])
    by_id = {r.requirement.id: r for r in out.requirements}
    assert by_id["birth_certificate"].satisfied is True
    assert by_id["household_register"].satisfied is False  # representation is for organisations only
    assert out.represented == () and out.outcome == "incomplete"
    assert [f.reason for f in out.licences[1].findings] == [errors.HOLDER_MISMATCH]


def test_lower_case_x_check_character_binds_like_upper_case(world):
    # a synthetic ID number whose check character is X
    code = next(f + "X" for n in range(100) if citizen_id_check(f := f"330502198801011{n:02d}") == "X")
    me = ("测试人", code, "111")
    applicant = parse_applicant({"code_type": "111", "code": code.lower()})
    assert applicant.code == code
    out = check_item(world.catalogue, world.catalogue.item("KS-037"), applicant,
                     [valid(0, licence(world, "id_card", me))])
    assert out.complete is True


def test_disclosed_licence_is_the_union_of_the_satisfied_requirements_only(world):
    rep = person(world)
    company = world.simulator.company("330500")
    bl = licence(world, "business_licence", (*company, "001"),
                 {"legal_representative_code": rep[1], "legal_representative_name": rep[0]})
    item = world.catalogue.item("KS-001")  # ID card (holder) + business licence (role, optional)
    out = check_item(world.catalogue, item, Applicant("111", rep[1]), [valid(0, bl)])
    assert out.complete is False  # the mandatory ID card is missing
    lo = out.licences[0]
    assert lo.satisfies == ("legal_representative",)
    assert dict(lo.disclosed) == {"holder_name": company[0], "holder_code": company[1],
                                  "surface": {"legal_representative_name": rep[0]}}


def test_indeterminate_candidate_makes_the_outcome_indeterminate_not_incomplete(world):
    me = person(world)
    lic = licence(world, "id_card", me)
    stale = Presented(0, "indeterminate", (errors.STATUS_UNAVAILABLE,), HUZHOU, lic)
    out = check_item(world.catalogue, world.catalogue.item("KS-037"), Applicant("111", me[1]), [stale])
    assert out.outcome == "indeterminate" and out.licences[0].disclosed is None


def test_valid_licence_of_a_type_missing_from_the_catalogue_is_not_accepted(world):
    me = person(world)
    odd = replace(licence(world, "id_card", me), type_code="11100000PH0000099A999")
    out = check_item(world.catalogue, world.catalogue.item("KS-037"), Applicant("111", me[1]), [valid(0, odd)])
    assert [f.reason for f in out.licences[0].findings] == [errors.TYPE_NOT_ACCEPTED]
    assert out.requirements[0].problems == ()


def test_a_licence_can_satisfy_two_requirements_at_once(world):
    rep = person(world)
    company = world.simulator.company("330500")
    bl = licence(world, "business_licence", (*company, "001"),
                 {"legal_representative_code": rep[1], "legal_representative_name": rep[0]})
    out = check_item(world.catalogue, world.catalogue.item("KS-004"), Applicant("111", rep[1]), [valid(0, bl)])
    assert out.licences[0].satisfies == ("business_licence", "legal_representative")
    assert out.represented == (("001", company[1]),)


@pytest.mark.parametrize("raw,reason", [
    (None, errors.BAD_REQUEST),
    ({"code_type": 111, "code": "x"}, errors.BAD_REQUEST),
    ({"code_type": "111", "code": "x", "name": ""}, errors.BAD_REQUEST),
    ({"code_type": "111", "code": "x", "name": "名" * 65}, errors.BAD_REQUEST),
    ({"code_type": "000", "code": "x"}, errors.APPLICANT_INVALID),
    ({"code_type": "001", "code": "91330502MA2B3C4D5Z"}, errors.APPLICANT_INVALID),
    ({"code_type": "111", "code": "330502198801011230"}, errors.APPLICANT_INVALID),
])
def test_parse_applicant_rejects_with_a_specific_reason(raw, reason):
    with pytest.raises(RequestRejected) as info:
        parse_applicant(raw)
    assert info.value.reason is reason
