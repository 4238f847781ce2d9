"""Second-pass review of the verification core: what sits between the families' parsing and the answer.

Each case is a licence genuinely signed with its region's TEST key (as a buggy or compromised issuer, or an
issuer's odd export, would sign it), so it reaches the checks after the signature; a genuine control
stays valid beside it. One region of every format family is tried.

* a GB/T 36904 identifier or a citizen ID number with a final newline (``$`` in the patterns matched
  before it): was ``valid``, the newline kept in the canonical licence;
* a citizen ID number whose birth date is no calendar day (30 February, 31 April, 29 February of a
  common year): was ``valid`` (the check only bounded month 1-12 and day 1-31);
* a USCC written with a non-ASCII letter that ``str.upper()`` turns into ASCII ones ("ﬀ" -> "FF"):
  was ``valid`` with a holder code the issuer did not write;
* a date not written as its region writes it ("2026121" for %Y%m%d, read as 1 December where an
  unpadded month means 21 January; "2026-12-1"; "2026年12月1日"): was read by strptime's guess;
* valid_until before valid_from: was LICENCE_EXPIRED or LICENCE_NOT_YET_VALID by the day of the request,
  for a licence that is valid on no day at all: FIELD_INVALID;
* an issue date still to come, or after the licence was signed: was ``valid``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Callable

import pytest

from adapters import FAMILIES
from gateway.core import CHINA_TZ, _normalise_checked, denormalise, normalise
from gateway.errors import LicenceRejected
from gateway.identifiers import (citizen_id_check, citizen_id_valid, holder_code_valid, licence_identifier_matches,
                                 make_uscc, parse_licence_identifier, uscc_valid)
from gateway.model import Licence

from .conftest import NOW

FAMILY_NAMES = ("jws", "sm2-json", "sm2-xml", "ofd-seal")
TODAY = NOW.astimezone(CHINA_TZ).date()  # 2026-11-27 (NOW is 12:00 in Beijing)


def region_of(world, family: str, date_format: str | None = None, holder_kind: str | None = None) -> str:
    for code, spec in sorted(world.specs.items()):
        if spec.family != family or (date_format is not None and spec.date_format != date_format):
            continue
        if holder_kind is None or type_of(world, code, holder_kind) is not None:
            return code
    raise LookupError(f"no {family} region with {date_format} / {holder_kind}")


def type_of(world, region: str, holder_kind: str) -> str | None:
    return next((k for k in world.simulator.licence_types_of(region)
                 if getattr(world.simulator.types[k], "holder_kind", "person") == holder_kind), None)


def status(world, now: dt.datetime = NOW):
    return world.simulator.status_snapshot(now, dt.timedelta(hours=1))


def signed(world, region: str, change: Callable[[Licence], Licence] | None = None,
           raw_change: Callable[[dict[str, Any], dict[str, str]], None] | None = None, *,
           signing_time: dt.datetime = NOW, type_key: str | None = None) -> bytes:
    """A licence of ``region`` signed with its genuine TEST key after ``change`` (canonical fields) and
    ``raw_change`` (the region's own field dictionary and field names)."""
    spec = world.specs[region]
    lic = world.simulator.issue(region, type_key, "valid", NOW).licence
    if change is not None:
        lic = change(lic)
    raw = denormalise(lic, spec)
    if raw_change is not None:
        raw_change(raw, dict(spec.fields))
    return FAMILIES[spec.family].encode(raw, spec, world.simulator.signing_key(region), signing_time)


def verify(world, data: bytes, now: dt.datetime = NOW):
    return world.verifier.verify(data, world.snapshot, status(world, now), now)


def assert_valid(result) -> None:
    assert result.verdict.value == "valid", result.reasons
    assert result.reason_codes == ()


def assert_rejected(result, code: str, check: str) -> None:
    assert result.verdict.value == "invalid"
    assert result.reason_codes == (code,)
    assert result.checks[check] == "fail"
    reason = result.reasons[0].as_reason_dict()  # as the answer carries it: stable code, both languages
    assert reason["code"] == code and reason["message"] and reason["message_zh"] and reason["detail"]


def with_person(lic: Licence, birth: str) -> Licence:
    first17 = lic.holder_code[:6] + birth + "123"
    return dataclasses.replace(lic, holder_code=first17 + citizen_id_check(first17), holder_code_type="111")


# --- identifiers: a final newline ------------------------------------------------------------------------------
REAL_ID = "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F"


def test_identifier_with_a_final_newline_is_not_an_identifier() -> None:
    assert parse_licence_identifier(REAL_ID).check == "F"  # control
    assert licence_identifier_matches(REAL_ID, "11100000000013338W032", "11220000013544541J")
    for text in (REAL_ID + "\n", REAL_ID + "\r\n"):
        with pytest.raises(ValueError):
            parse_licence_identifier(text)
        assert not licence_identifier_matches(text, "11100000000013338W032", "11220000013544541J")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_licence_whose_identifier_ends_in_a_newline_is_identifier_invalid(world, family) -> None:
    region = region_of(world, family)
    assert_valid(verify(world, signed(world, region)))
    result = verify(world, signed(world, region, lambda lic: dataclasses.replace(lic, identifier=lic.identifier + "\n")))
    assert_rejected(result, "IDENTIFIER_INVALID", "identifier")


# --- citizen ID numbers: a final newline, an impossible birth date ---------------------------------------------
def test_citizen_id_with_a_final_newline_is_not_one() -> None:
    code = "11010519491231002X"
    assert citizen_id_valid(code) and holder_code_valid("111", code)  # control
    assert not citizen_id_valid(code + "\n")
    assert not holder_code_valid("111", code + "\n")
    assert not citizen_id_valid(code.lower() + "\n")


@pytest.mark.parametrize("birth, real", [
    ("19900228", True), ("20000229", True), ("20240229", True), ("19960229", True), ("19900131", True),
    ("19900430", True), ("19001231", True), ("21000101", True),
    ("19900230", False), ("19900231", False), ("19900431", False), ("19900631", False), ("19901131", False),
    ("19000229", False), ("21000229", False), ("20230229", False), ("18991231", False), ("21010101", False),
    ("19900001", False), ("19901301", False), ("19900100", False), ("19900132", False),
])
def test_citizen_id_birth_date_must_be_a_calendar_day(birth, real) -> None:
    first17 = "110105" + birth + "002"
    code = first17 + citizen_id_check(first17)
    assert citizen_id_valid(code) is real
    assert citizen_id_valid(code.lower()) is real


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_holder_born_on_30_february_is_holder_code_invalid(world, family) -> None:
    region = region_of(world, family, holder_kind="person")
    person = type_of(world, region, "person")
    assert_valid(verify(world, signed(world, region, lambda lic: with_person(lic, "19900228"), type_key=person)))
    for birth in ("19900230", "20230229"):
        result = verify(world, signed(world, region, lambda lic: with_person(lic, birth), type_key=person))
        assert_rejected(result, "HOLDER_CODE_INVALID", "holder_code")


# --- a USCC written with a letter str.upper() turns into ASCII ------------------------------------------------
def uscc_with_ff(division: str) -> str:
    for i in range(100):
        code = make_uscc("9", "1", division, f"{i:02d}00FF78")
        if code[16] != "X":
            return code
    raise AssertionError("unreachable")


def test_uscc_with_a_non_ascii_letter_is_not_one() -> None:
    code = uscc_with_ff("330502")
    assert uscc_valid(code) and uscc_valid(code.lower())  # control: ASCII lower case is the same code
    assert not uscc_valid(code.replace("FF", "\ufb00"))  # LATIN SMALL LIGATURE FF: upper() is "FF"
    assert not holder_code_valid("001", code.replace("FF", "\ufb00"))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_holder_uscc_with_a_ligature_is_holder_code_invalid_and_kept_as_signed(world, family) -> None:
    region = region_of(world, family, holder_kind="organisation")
    org = type_of(world, region, "organisation")
    division = "310101" if region == "310000" else region
    code = uscc_with_ff(division)
    control = verify(world, signed(world, region, lambda lic: dataclasses.replace(lic, holder_code=code.lower()),
                                   type_key=org))
    assert_valid(control)
    assert control.licence.holder_code == code  # ASCII letters still folded to upper case
    forged = code.replace("FF", "\ufb00")
    result = verify(world, signed(world, region, lambda lic: dataclasses.replace(lic, holder_code=forged), type_key=org))
    assert_rejected(result, "HOLDER_CODE_INVALID", "holder_code")
    assert result.licence.holder_code == forged  # not the valid-looking "…FF…" the issuer never wrote


# --- dates as the region writes them ----------------------------------------------------------------------------
#: (date_format, the region's own writing of 2026-12-01, other writings strptime reads as some day)
DATE_WRITINGS = [
    ("%Y%m%d", "20261201", ("2026121", "202612 1")),
    ("%Y-%m-%d", "2026-12-01", ("2026-12-1", "2026-1-01")),
    ("%Y年%m月%d日", "2026年12月01日", ("2026年12月1日", "2026年12月 1日")),
]


def _date_cases(world) -> list[tuple[str, str, str, str]]:
    cases = []
    for family in FAMILY_NAMES:
        for fmt, own, odds in DATE_WRITINGS:
            if any(s.family == family and s.date_format == fmt for s in world.specs.values()):
                cases.extend((region_of(world, family, fmt), own, odd) for odd in odds)
    return cases


def test_a_seven_digit_date_is_ambiguous_and_refused(world) -> None:
    """%Y%m%d: "2026121" is 1 December to strptime (valid at NOW) and 21 January (expired) to an issuer that
    does not pad the month: the gateway must not pick one."""
    region = region_of(world, "jws", "%Y%m%d")
    valid_until = world.specs[region].fields["valid_until"]
    control = verify(world, signed(world, region, raw_change=lambda raw, f: raw.__setitem__(valid_until, "20261201")))
    assert_valid(control)
    assert control.licence.valid_until == dt.date(2026, 12, 1)
    result = verify(world, signed(world, region, raw_change=lambda raw, f: raw.__setitem__(valid_until, "2026121")))
    assert_rejected(result, "FIELD_INVALID", "normalise")
    assert result.licence is None


def test_dates_not_written_as_the_region_writes_them_are_field_invalid_on_both_paths(world) -> None:
    cases = _date_cases(world)
    assert {world.specs[r].family for r, _, _ in cases} == set(FAMILY_NAMES)
    for region, own, odd in cases:
        spec = world.specs[region]
        for field in ("valid_until", "valid_from", "issue_date"):
            name = spec.fields[field]
            good = denormalise(world.simulator.issue(region, None, "valid", NOW).licence, spec)
            good[name] = own if field == "valid_until" else spec.format_date(TODAY - dt.timedelta(days=30))
            lic = normalise(good, spec, world.verifier.type_names)
            assert lic == _normalise_checked(good, spec, world.verifier.type_names)  # control
            bad = dict(good)
            bad[name] = odd if field == "valid_until" else odd.replace("2026", "2025", 1)
            for path in (normalise, _normalise_checked):
                with pytest.raises(LicenceRejected) as caught:
                    path(bad, spec, world.verifier.type_names)
                assert caught.value.code == "FIELD_INVALID", (region, field, odd, path.__name__)
        result = verify(world, signed(world, region, raw_change=lambda raw, f: raw.__setitem__(f["valid_until"], odd)))
        assert_rejected(result, "FIELD_INVALID", "normalise")


# --- validity period: an end before its start ------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_valid_until_before_valid_from_is_field_invalid_whatever_the_day(world, family) -> None:
    region = region_of(world, family)
    assert_valid(verify(world, signed(world, region, lambda lic: dataclasses.replace(
        lic, valid_from=dt.date(2026, 1, 1), valid_until=dt.date(2026, 12, 31)))))
    same_day = verify(world, signed(world, region, lambda lic: dataclasses.replace(
        lic, valid_from=TODAY, valid_until=TODAY)))  # a one-day licence is fine
    assert_valid(same_day)
    for start, end in ((dt.date(2026, 1, 1), dt.date(2025, 6, 1)),      # was LICENCE_EXPIRED
                       (dt.date(2027, 1, 1), dt.date(2026, 12, 31))):   # was LICENCE_NOT_YET_VALID
        result = verify(world, signed(world, region, lambda lic: dataclasses.replace(
            lic, issue_date=dt.date(2025, 1, 1), valid_from=start, valid_until=end)))
        assert_rejected(result, "FIELD_INVALID", "validity_period")
        assert result.checks["status"] == "pass"  # the checks after it still ran


# --- the issue date: not still to come, not after the signing -----------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_issue_date_still_to_come_is_not_yet_valid(world, family) -> None:
    region = region_of(world, family)
    assert_valid(verify(world, signed(world, region, lambda lic: dataclasses.replace(lic, issue_date=TODAY))))
    result = verify(world, signed(world, region, lambda lic: dataclasses.replace(lic, issue_date=dt.date(2030, 1, 1))))
    assert_rejected(result, "LICENCE_NOT_YET_VALID", "validity_period")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_issue_date_after_the_signing_time_is_field_invalid(world, family) -> None:
    region = region_of(world, family)
    when = NOW - dt.timedelta(days=10)  # signed on 2026-11-17 (Beijing), presented on 2026-11-27
    signed_day = when.astimezone(CHINA_TZ).date()
    control = verify(world, signed(world, region, lambda lic: dataclasses.replace(lic, issue_date=signed_day),
                                   signing_time=when))
    assert_valid(control)
    assert control.signing_time is not None
    result = verify(world, signed(world, region, lambda lic: dataclasses.replace(
        lic, issue_date=signed_day + dt.timedelta(days=5)), signing_time=when))
    assert_rejected(result, "FIELD_INVALID", "validity_period")


def test_issue_date_boundary_is_beijing_midnight_with_the_clock_skew(world) -> None:
    """Issued on 28 November (Beijing): 23:54:59 on the 27th is beyond the 5-minute skew, 23:55:01 within it --
    the boundary valid_from has."""
    region = region_of(world, "jws")
    tomorrow = TODAY + dt.timedelta(days=1)
    late = dt.datetime.combine(TODAY, dt.time(23, 55, 1), CHINA_TZ)
    early = dt.datetime.combine(TODAY, dt.time(23, 54, 59), CHINA_TZ)
    data = signed(world, region, lambda lic: dataclasses.replace(lic, issue_date=tomorrow), signing_time=late)
    assert_valid(verify(world, data, late))
    data = signed(world, region, lambda lic: dataclasses.replace(lic, issue_date=tomorrow), signing_time=early)
    assert_rejected(verify(world, data, early), "LICENCE_NOT_YET_VALID", "validity_period")


def test_no_anchored_pattern_of_the_code_lets_a_final_newline_through() -> None:
    """``$`` also matches before a final newline: every full-string pattern of the gateway and the
    adapters ends in ``\\Z`` (a region code "330500\\n" or a client id "demo-partner\\n" matched)."""
    import pathlib
    import re as _re

    root = pathlib.Path(__file__).resolve().parent.parent
    offenders = [f"{p.relative_to(root)}:{n}" for pkg in ("gateway", "adapters") for p in (root / pkg).rglob("*.py")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if _re.search(r're\.compile\(r"\^.*\$"\)', line)]
    assert offenders == []
    from gateway.auth.partners import CLIENT_ID_RE, REGION_CODE_RE
    assert REGION_CODE_RE.match("330500") and not REGION_CODE_RE.match("330500\n")
    assert CLIENT_ID_RE.match("demo-partner") and not CLIENT_ID_RE.match("demo-partner\n")
