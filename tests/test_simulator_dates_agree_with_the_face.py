"""The simulator's licences carry dates that agree with their face (all TEST data).

Session 20 left: the simulator gave every licence an issue date and validity of its own (valid
from 400 days ago) whatever its face said -- a 结婚证 issued on another day than its 登记日期, a
驾驶证 issued before its 初次领证日期, a 营业执照 issued before its company's 成立日期 -- and its
face's term ends (签注有效期至, 检验有效期至...) were drawn as past days, so a valid 居住证 showed an
endorsement that had run out, and no term end was the licence's validity end. A clerk comparing
the licence on screen with the paper would notice.

Checked for every region x licence type it issues x simulator case (the licence ``issue`` makes
for the case: ``canonical`` with that case), and through the gateway's own decoding in every
region's wire format; the cases keep their verdicts and reason codes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.core import CHINA_TZ
from gateway.devtrust import RegionMaterial, authority_for
from gateway.simulator import CASES, IssuerSimulator, expected
from tests.conftest import NOW

TODAY = NOW.astimezone(CHINA_TZ).date()
HOUR = dt.timedelta(hours=1)
#: the face field that is the licence's own issue date, by type (the paper's 登记日期, 注册日期...)
ISSUED_ON = {"marriage_certificate": "registration_date", "divorce_certificate": "registration_date",
             "vehicle_licence": "register_date", "degree_certificate": "award_date",
             "diploma": "graduation_date", "vocational_qualification": "pass_date"}
#: face fields of an event the licence's issue cannot come before (初次领证日期, 初领日期, 成立日期)
BEFORE_ISSUE = {"driving_licence": "first_issue_date", "road_transport_worker": "first_issue_date",
                "construction_special_operator": "first_issue_date", "business_licence": "established_date"}
#: face fields that end the licence's term (签注有效期至, 营业期限至, 检验有效期至, 土地使用期限至)
TERM_ENDS = {"residence_permit": "endorsed_until", "business_licence": "business_term_until",
             "vehicle_licence": "inspection_valid_until", "real_estate_certificate": "land_use_term_until"}
#: the other date fields: people's births, and events that say nothing of the licence's own dates
OTHER_DATES = {"birth_date", "holder_birth_date", "spouse_birth_date", "admission_date", "review_date"}
#: cases whose licence carries the dates of a valid one (what makes them fail is elsewhere)
VALID_DATES = tuple(c for c in CASES if c not in ("expired", "not-yet-valid"))


def day(value: Any) -> dt.date:
    assert isinstance(value, str), value
    return dt.date.fromisoformat(value)


@pytest.fixture(scope="module")
def keyless(world: Any):
    """A simulator with the suite's specs and catalogue and no keys (``canonical`` signs nothing)."""
    material = {c: RegionMaterial(c, None, None, [], authority_for(world.regions[c])) for c in world.specs}
    return IssuerSimulator(world.specs, world.regions, material, {t.key: t for t in world.catalogue.types}, seed=21)


def test_the_tables_name_every_date_on_every_face(world: Any) -> None:
    """Every date field of the catalogue is one of the relations below (a new one is not missed)."""
    seen = set()
    for lt in world.catalogue.types:
        for f in lt.surface_fields:
            if f.kind != "date":
                continue
            seen.add(f.name)
            named = [ISSUED_ON.get(lt.key), BEFORE_ISSUE.get(lt.key), TERM_ENDS.get(lt.key)]
            assert f.name in named or f.name in OTHER_DATES, (lt.key, f.name)
    assert set(ISSUED_ON.values()) | set(BEFORE_ISSUE.values()) | set(TERM_ENDS.values()) | OTHER_DATES == seen


def assert_dates_agree(type_key: str, case: str, lic: Any, where: tuple[str, ...]) -> None:
    s = lic.surface
    issued_on, before, term_end = ISSUED_ON.get(type_key), BEFORE_ISSUE.get(type_key), TERM_ENDS.get(type_key)
    assert lic.valid_until is not None, where
    if issued_on is not None:  # required on these faces: always there
        assert lic.issue_date == day(s[issued_on]), (where, lic.issue_date, s[issued_on])
    if before is not None:
        assert day(s[before]) <= lic.issue_date, (where, s[before], lic.issue_date)
    if term_end is not None and term_end in s:
        assert day(s[term_end]) == lic.valid_until, (where, s[term_end], lic.valid_until)
    # no face day but a term's end is still to come: a birth, a registration, an award are past
    for name, value in s.items():
        if name.endswith("_date"):
            assert day(value) <= TODAY, (where, name, value)
    assert lic.issue_date <= lic.valid_until and lic.valid_from <= lic.valid_until, where
    if case == "expired":
        assert lic.issue_date == lic.valid_from and lic.valid_until < TODAY, where
        assert term_end not in s or day(s[term_end]) < TODAY, where
    elif case == "not-yet-valid":
        assert lic.valid_from > TODAY and lic.valid_until > TODAY, where
        assert lic.issue_date <= lic.valid_from, where
        assert term_end not in s or day(s[term_end]) > TODAY, where
    else:
        assert lic.issue_date == lic.valid_from <= TODAY <= lic.valid_until, where
        assert term_end not in s or day(s[term_end]) >= TODAY, where


def test_every_region_type_and_case_has_dates_that_agree_with_its_face(keyless: IssuerSimulator) -> None:
    """Issue and registration dates, first-issue and founding dates, term ends: for all 45 regions,
    every licence type each issues and every case, on licences as ``issue`` makes them."""
    met: dict[tuple[str, str], int] = {}
    total = 0
    for region in sorted(keyless.specs):
        for type_key in keyless.licence_types_of(region):
            for case in CASES:
                lic = keyless.canonical(region, type_key, NOW, case=case)
                assert_dates_agree(type_key, case, lic, (region, type_key, case))
                total += 1
                group = "expired" if case == "expired" else "not-yet-valid" if case == "not-yet-valid" else "valid"
                for table in (ISSUED_ON, BEFORE_ISSUE, TERM_ENDS):
                    if table.get(type_key) in lic.surface:
                        met[(table[type_key], group)] = met.get((table[type_key], group), 0) + 1
    assert total >= 45 * 9 * 10
    # every relation was met in every group of cases (optional fields are drawn one time in two)
    fields = {*ISSUED_ON.values(), *BEFORE_ISSUE.values(), *TERM_ENDS.values()}
    for f in fields:
        for group in ("valid", "expired", "not-yet-valid"):
            assert met.get((f, group), 0) >= 5, (f, group, met.get((f, group)))


def test_the_old_defects_are_gone(keyless: IssuerSimulator) -> None:
    """The examples the session-20 review named, one by one."""
    marriage = keyless.canonical("330500", "marriage_certificate", NOW)
    assert marriage.issue_date == day(marriage.surface["registration_date"]) == marriage.valid_from
    for case, past in (("valid", False), ("expired", True), ("not-yet-valid", False)):
        for _ in range(20):
            permit = keyless.canonical("330500", "residence_permit", NOW, case=case)
            if "endorsed_until" in permit.surface:
                break
        assert (day(permit.surface["endorsed_until"]) < TODAY) is past, (case, permit.surface)
        assert day(permit.surface["endorsed_until"]) == permit.valid_until
        car = keyless.canonical("320500", "vehicle_licence", NOW, case=case)
        assert (day(car.surface["inspection_valid_until"]) < TODAY) is past, (case, car.surface)


@pytest.mark.parametrize("type_key,field,age", [("marriage_certificate", "registration_date", 19),
                                                ("driving_licence", "first_issue_date", 12)])
def test_a_given_holder_too_young_still_gets_each_case(keyless: IssuerSimulator, type_key: str, field: str,
                                                       age: int) -> None:
    """A caller's holder (a region's applicant, a corpus role) may be too young to marry or to
    drive on any earlier day: each case still gets its validity, and the face agrees with it."""
    born = TODAY - dt.timedelta(days=365 * age)
    name, code = keyless.person("330500", born=(born, born))
    for case in ("valid", "expired", "not-yet-valid"):
        lic = keyless.canonical("330500", type_key, NOW, holder=(name, code, "111"), case=case)
        if field in ISSUED_ON.values():
            assert lic.issue_date == day(lic.surface[field]), case
        assert day(lic.surface[field]) <= lic.issue_date <= lic.valid_until and lic.valid_from <= lic.valid_until, case
        assert (lic.valid_until < TODAY) is (case == "expired"), case
        assert (lic.valid_from > TODAY) is (case == "not-yet-valid"), case


def face_dated_types(sim: IssuerSimulator, region: str) -> list[str]:
    keys = set(ISSUED_ON) | set(BEFORE_ISSUE) | set(TERM_ENDS)
    return [k for k in sim.licence_types_of(region) if k in keys]


def test_the_gateway_reads_the_same_days_in_every_regions_wire_format(world: Any) -> None:
    """Signed, encoded in the region's own format and date format, verified by the gateway: the
    verdict and reason the case must have, and the decoded issue date and validity end are the
    face's days."""
    sim = IssuerSimulator(world.specs, world.regions, world.material, {t.key: t for t in world.catalogue.types},
                          seed=21)
    status = sim.status_snapshot(NOW, HOUR)
    wrong = []
    checked = 0
    for i, region in enumerate(sorted(world.specs)):
        types = face_dated_types(sim, region)
        assert types, region
        for j, case in enumerate(("valid", "expired", "not-yet-valid")):
            type_key = types[(i + j) % len(types)]
            issued = sim.issue(region, type_key, case, NOW)
            got = world.verifier.verify(issued.data, world.snapshot, status, NOW)
            codes = list(got.reason_codes)
            want = expected(case, world.specs[region].family)
            if got.verdict != want[0] or codes != ([] if want[1] is None else [want[1]]) or got.licence is None:
                wrong.append((region, type_key, case, got.verdict, codes))
                continue
            assert got.licence.issue_date == issued.licence.issue_date
            assert got.licence.valid_until == issued.licence.valid_until
            assert_dates_agree(type_key, case, got.licence, (region, type_key, case, "decoded"))
            checked += 1
    assert wrong == []
    assert checked == 45 * 3
