"""The demo's synthetic people and licences are internally consistent (all TEST data).

A clerk walking through the demo console found: 与户主关系 "姐妹" / "母亲" on a male holder's
户口簿; a spouse born in 2001 on a 结婚证 registered in 2015 (married at 14); a 出生医学证明
whose mother and father were one person (a man); and one ID number with one name from
``/issue`` (王测试一) and another from the simulated region's federated query (韩测试庚).

Property-style: many licences across regions and types from a fixed seed, every rule checked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.corpus import CorpusBuilder
from gateway.devtrust import RegionMaterial, authority_for
from gateway.identifiers import citizen_id_valid, uscc_valid
from gateway.region_server import RegionSimulator
from gateway.region_server import synthetic_name as region_name
from gateway.simulator import IssuerSimulator, synthetic_name
from tests.conftest import NOW

TODAY = dt.date(2026, 11, 27)
REGIONS = ("330500", "310000", "320500", "340100", "652929", "511600", "220600")
#: 民法典 第1047条: men 22, women 20
MARRIAGE_AGE = {"男": 22, "女": 20}
MALE_RELATIONS = {"子", "父亲", "孙子", "兄弟"}
FEMALE_RELATIONS = {"女", "母亲", "孙女", "姐妹"}
HOUR = dt.timedelta(hours=1)


def born(code: str) -> dt.date:
    return dt.date(int(code[6:10]), int(code[10:12]), int(code[12:14]))


def gender(code: str) -> str:
    return "男" if int(code[16]) % 2 else "女"


def years(a: dt.date, b: dt.date) -> int:
    """Whole years from ``a`` to ``b`` (an age)."""
    return b.year - a.year - ((b.month, b.day) < (a.month, a.day))


def adds_years(d: dt.date, n: int) -> dt.date:
    try:
        return d.replace(year=d.year + n)
    except ValueError:  # 29 February
        return d.replace(year=d.year + n, day=28)


@pytest.fixture(scope="module")
def keyless(world: Any):
    """A simulator with the suite's specs and catalogue and no keys (nothing here signs)."""
    def make(seed: int = 11) -> IssuerSimulator:
        material = {c: RegionMaterial(c, None, None, [], authority_for(world.regions[c])) for c in world.specs}
        return IssuerSimulator(world.specs, world.regions, material, {t.key: t for t in world.catalogue.types},
                               seed=seed)
    return make


def many(sim: IssuerSimulator, type_key: str, n: int = 60) -> list[Any]:
    out = []
    for region in REGIONS:
        if type_key in sim.licence_types_of(region):
            out += [sim.canonical(region, type_key, NOW) for _ in range(n)]
    assert out, type_key
    return out


def test_relationship_to_head_follows_the_holders_gender_and_the_ages(keyless) -> None:
    seen = set()
    for lic in many(keyless(), "household_register", 80):
        s, me = lic.surface, lic.holder_code
        rel, head = s["relationship_to_head"], s["household_head_code"]
        seen.add(rel)
        assert citizen_id_valid(head), head
        assert s["household_head_name"] == synthetic_name(head)
        if rel in MALE_RELATIONS:
            assert gender(me) == "男", (rel, me)
        if rel in FEMALE_RELATIONS:
            assert gender(me) == "女", (rel, me)
        assert (rel == "户主") == (head == me), (rel, head, me)
        gap = years(born(me), born(head)) if born(head) >= born(me) else -years(born(head), born(me))
        if rel == "配偶":
            assert gender(head) != gender(me) and abs(gap) <= 15, (head, me)
            assert years(born(me), TODAY) >= MARRIAGE_AGE[gender(me)]
            assert years(born(head), TODAY) >= MARRIAGE_AGE[gender(head)]
        if rel in ("子", "女"):  # the head is a parent
            assert -50 <= gap <= -18, (rel, head, me)
        if rel in ("父亲", "母亲"):  # the head is a child
            assert 18 <= gap <= 50, (rel, head, me)
        if rel in ("孙子", "孙女"):
            assert -100 <= gap <= -36, (rel, head, me)
        if rel in ("兄弟", "姐妹"):
            assert abs(gap) <= 20, (rel, head, me)
        if rel != "户主":
            assert years(born(head), TODAY) >= 18, head
    assert {"户主", "配偶"} <= seen and seen & MALE_RELATIONS and seen & FEMALE_RELATIONS, seen


def test_a_given_head_gets_a_relationship_that_fits_both_people(keyless) -> None:
    sim = keyless()
    for _ in range(200):
        head_name, head = sim.person("330500")
        lic = sim.canonical("330500", "household_register", NOW,
                            surface={"household_head_code": head, "household_head_name": head_name})
        rel, me = lic.surface["relationship_to_head"], lic.holder_code
        assert rel not in MALE_RELATIONS or gender(me) == "男", (rel, me)
        assert rel not in FEMALE_RELATIONS or gender(me) == "女", (rel, me)
        assert rel != "户主" and (rel != "配偶" or gender(head) != gender(me)), (rel, head, me)


@pytest.mark.parametrize("type_key,prefix", [("marriage_certificate", "spouse"),
                                             ("divorce_certificate", "former_spouse")])
def test_spouses_are_of_the_other_sex_and_registered_at_a_legal_age(keyless, type_key: str, prefix: str) -> None:
    for lic in many(keyless(), type_key):
        s, me = lic.surface, lic.holder_code
        other = s[f"{prefix}_code"]
        assert citizen_id_valid(other) and other != me
        assert s[f"{prefix}_name"] == synthetic_name(other)
        assert gender(other) != gender(me), (me, other)
        assert abs(years(born(me), born(other)) if born(other) >= born(me) else years(born(other), born(me))) <= 15
        registered = dt.date.fromisoformat(s["registration_date"])
        assert registered <= TODAY
        assert registered >= adds_years(born(me), MARRIAGE_AGE[gender(me)]), (registered, me)
        assert registered >= adds_years(born(other), MARRIAGE_AGE[gender(other)]), (registered, other)
        if type_key == "marriage_certificate":
            assert s["spouse_gender"] == gender(other) and s["spouse_birth_date"] == born(other).isoformat()


def test_a_birth_certificate_names_two_parents_of_the_right_sexes_born_well_before_the_child(keyless) -> None:
    for lic in many(keyless(), "birth_certificate"):
        s, child = lic.surface, lic.holder_code
        mother, father = s["mother_code"], s["father_code"]
        assert citizen_id_valid(mother) and citizen_id_valid(father)
        assert mother != father and child not in (mother, father)
        assert gender(mother) == "女" and gender(father) == "男", (mother, father)
        assert s["mother_name"] == synthetic_name(mother) and s["father_name"] == synthetic_name(father)
        assert s["birth_date"] == born(child).isoformat() and s["newborn_gender"] == gender(child)
        assert 18 <= years(born(mother), born(child)) <= 45, (mother, child)
        assert 18 <= years(born(father), born(child)) <= 55, (father, child)


def test_a_given_parent_keeps_their_place_and_the_other_parent_fits(keyless) -> None:
    sim = keyless()
    for _ in range(100):
        name, code = sim.person("320500")
        field = "mother_code" if gender(code) == "女" else "father_code"
        lic = sim.canonical("320500", "birth_certificate", NOW,
                            surface={field: code, field.replace("_code", "_name"): name})
        s = lic.surface
        assert s[field] == code
        assert s["mother_code"] != s["father_code"]
        assert gender(s["mother_code"]) == "女" and gender(s["father_code"]) == "男"


def test_a_holders_own_dated_events_come_after_the_holder_is_grown_up(keyless) -> None:
    sim = keyless()
    for type_key, fields in (("driving_licence", ("first_issue_date",)),
                             ("diploma", ("admission_date", "graduation_date")),
                             ("degree_certificate", ("award_date",)),
                             ("vocational_qualification", ("pass_date",))):
        for lic in many(sim, type_key, 20):
            for f in fields:
                when = dt.date.fromisoformat(lic.surface[f])
                assert adds_years(born(lic.holder_code), 16) <= when <= TODAY, (type_key, f, when, lic.holder_code)
            if type_key == "diploma":
                assert lic.surface["admission_date"] < lic.surface["graduation_date"]


def test_every_id_number_and_company_code_keeps_its_check_character(keyless, world: Any) -> None:
    sim = keyless()
    for lt in world.catalogue.types:
        for lic in many(sim, lt.key, 5):
            assert (citizen_id_valid if lic.holder_code_type == "111" else uscc_valid)(lic.holder_code)
            for role in lt.role_fields:
                for c in role.code_fields:
                    v = lic.surface.get(c)
                    assert v is None or citizen_id_valid(v) or uscc_valid(v), (lt.key, c, v)
            for f in lt.surface_fields:
                if "统一社会信用代码" in f.label_zh:
                    assert uscc_valid(lic.surface[f.name])


def test_one_id_number_has_one_name_wherever_it_is_made(keyless, world: Any) -> None:
    sim = keyless()
    assert region_name is synthetic_name
    for region in REGIONS:
        for _ in range(30):
            name, code = sim.person(region)
            assert name == synthetic_name(code) == synthetic_name(code.lower()) and "测试" in name
            lic = sim.canonical(region, "id_card", NOW)
            assert lic.holder_name == synthetic_name(lic.holder_code)


def test_a_region_finds_the_applicant_by_the_name_on_their_demo_licence(world: Any) -> None:
    """The name a demo-issued licence prints is the one the region's sharing service knows the
    holder by: a query naming it finds the licence, and the licence names the same person."""
    sim = IssuerSimulator(world.specs, world.regions, world.material, {t.key: t for t in world.catalogue.types},
                          seed=3)
    rs = RegionSimulator(sim, {t.type_code: t for t in world.catalogue.types}, lambda: NOW)
    id_card = world.catalogue.type_by_key("id_card")
    for region in ("330500", "320500", "310000"):
        issued = sim.issue(region, "id_card", "valid", NOW)
        name, code = issued.licence.holder_name, issued.licence.holder_code
        found = rs.answer(region, "111", code, name, [id_card.type_code])
        assert len(found) == 1, (region, name, code)
        got = world.verifier.verify(found[0], world.snapshot, sim.status_snapshot(NOW, HOUR), NOW)
        assert got.licence is not None and got.licence.holder_name == name


def test_the_corpus_names_a_parent_applicant_in_their_own_place_only(keyless, world: Any) -> None:
    sim = IssuerSimulator(world.specs, world.regions, world.material, {t.key: t for t in world.catalogue.types},
                          seed=5)
    builder = CorpusBuilder(sim, world.catalogue, world.verifier, world.snapshot, sim.status_snapshot(NOW, HOUR),
                            NOW, seed=3)
    items = [(i, r) for i, r in builder.checkable(list(world.specs))
             if any(req.binding_role == "parent" for req in i.requirements if req.mandatory)]
    assert items
    for item, region in items:
        for _ in range(5):
            line = builder.check_line(item, region)
            app = line["body"]["applicant"]["code"]
            for body in line["body"]["licences"]:
                lic = world.verifier.verify(_bytes(body), world.snapshot, sim.status_snapshot(NOW, HOUR),
                                            NOW).licence
                if lic is None or "mother_code" not in lic.surface:
                    continue
                s = lic.surface
                assert s["mother_code"] != s["father_code"], s
                assert app in (s["mother_code"], s["father_code"])
                assert gender(s["mother_code"]) == "女" and gender(s["father_code"]) == "男"
                assert 18 <= years(born(app), born(lic.holder_code)) <= 55, (app, lic.holder_code)
            assert line["expect"] == "complete", line["tag"]


def test_the_simulator_stays_deterministic_where_it_is_seeded(keyless) -> None:
    a, b = keyless(42), keyless(42)
    for type_key in ("household_register", "marriage_certificate", "birth_certificate", "driving_licence"):
        for region in REGIONS[:3]:
            assert a.canonical(region, type_key, NOW) == b.canonical(region, type_key, NOW)


def _bytes(body: dict[str, str]) -> bytes:
    import base64

    text = body["licence"]
    return base64.b64decode(text) if body.get("encoding") == "base64" else text.encode("utf-8")
