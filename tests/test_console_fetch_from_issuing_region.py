"""The clerk fetches what the applicant did not bring from the issuing regions (the federated query
at the window): only with the applicant's consent, only the types the case still lacks, every licence
verified and judged as a presented one, everything audited before the clerk sees it.

Set-up: the simulated regions on loopback (tests/test_query_federated.py), a console client as in
tests/test_console_http.py. The applicant is from 杭州 (330102...), whose sharing service returns
the types the region issues for its residents.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.audit_wiring import AUDIT
from gateway.query_routes import QUERY_AUDIT
from tests.conftest import NOW
from tests.test_console_http import Clock, add, open_case, sign_in
from tests.test_query_federated import HOME, SECOND, FailingAudit, citizen
from tests.test_query_federated import regions_up  # noqa: F401  (fixture)

ITEM = "KS-076"   # 户口迁移: the applicant's ID card and household register (本人页)


@pytest.fixture
def window(world, client_for, regions_up):  # noqa: F811
    async def make(**settings: Any):
        _, template = regions_up
        cfg = dataclasses.replace(world.settings, upstream_base_url=template, **settings)
        return await client_for(clock=Clock(NOW), settings=cfg)
    return make


async def fetch(client, csrf: str, case_id: str, body: dict[str, Any] | None = None, status: int = 200,
                lang: str = "zh") -> dict[str, Any]:
    payload = {"use_cause": "办理户口迁移，核验申请人证照", "consent": True} if body is None else body
    resp = await client.post(f"/console/api/cases/{case_id}/fetch?lang={lang}", json=payload,
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == status, await resp.text()
    return await resp.json()


def trail(client) -> list[dict[str, Any]]:
    return [r.as_dict() for _, r in sorted(client.server.app[AUDIT].sink.table.items())]


async def test_clerk_fetches_both_missing_licences_from_the_applicants_home_region(window, regions_up) -> None:
    rs, _ = regions_up
    code = citizen(seq=401)
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    before = len(trail(client))
    view = await fetch(client, csrf, case["id"])
    assert view["fetch"]["complete"] is True and view["fetch"]["added"] == 2
    [home] = view["fetch"]["regions"]
    assert (home["region"], home["name"], home["status"], home["added"], home["rejected"]) == (HOME, "杭州市", "ok", 2, 0)
    assert [c["verdict"] for c in view["cards"]] == ["valid", "valid"]
    assert {c["source"] for c in view["cards"]} == {"发证地调取"}
    assert {c["region"]["code"] for c in view["cards"]} == {HOME}
    assert [r["satisfied"] for r in view["checklist"]] == [True, True] and view["complete"] is True
    # the item's disclosure list only, the applicant's code masked
    card = next(c for c in view["cards"] if "applicant_identity" in c["satisfies"])
    shown = {f["name"]: f["value"] for f in card["fields"]}
    assert set(shown) == {"holder_name", "holder_code", "holder_code_type", "valid_until"}
    assert shown["holder_code"] == code[:4] + "*" * 10 + code[-4:]
    # audited before the answer: the query (partner = the window), one record per licence judged, and a
    # console.verify record per card; no record holds the applicant's code
    new = trail(client)[before:]
    assert [(r["kind"], r["partner"]) for r in new[:3]] == [("query", "console/HZ-01")] * 3
    assert new[0]["extra"]["judged"] == 2 and new[0]["extra"]["disclosed"] == 2
    assert [r["kind"] for r in new[3:]] == ["check", "check"]   # the console's own record per card
    assert all(r["operator"] == "clerk" for r in new[3:])
    assert code not in str(new)
    assert rs.stats[HOME].requests == 1


async def test_fetch_without_the_applicants_consent_is_refused_and_asks_nobody(window, regions_up) -> None:
    rs, _ = regions_up
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, citizen(seq=402), ITEM)
    asked_before, records_before = rs.stats[HOME].requests, len(trail(client))
    for body in ({"use_cause": "办理户口迁移"}, {"use_cause": "办理户口迁移", "consent": False},
                 {"use_cause": "办理户口迁移", "consent": "yes"}):
        error = await fetch(client, csrf, case["id"], body, status=400)
        assert error["code"] == "CONSENT_REQUIRED" and "同意" in error["title_zh"]
    assert rs.stats[HOME].requests == asked_before and len(trail(client)) == records_before
    view = await (await client.get(f"/console/api/cases/{case['id']}")).json()
    assert view["cards"] == []


@pytest.mark.parametrize("cause,why", [("", "1-200"), ("x" * 201, "1-200"), ("核验\u0007申请人", "control"),
                                       (f"核验 {citizen(seq=499)} 的户口", "ID number")])
async def test_use_cause_that_cannot_be_audited_is_refused_before_any_region_is_asked(window, regions_up, cause,
                                                                                     why) -> None:
    rs, _ = regions_up
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, citizen(seq=403), ITEM)
    asked = rs.stats[HOME].requests
    error = await fetch(client, csrf, case["id"], {"use_cause": cause, "consent": True}, status=400)
    assert error["code"] == "BAD_REQUEST" and why in error["detail"]
    assert rs.stats[HOME].requests == asked


async def test_only_what_the_case_still_lacks_is_asked_for(world, window, regions_up) -> None:
    """The ID card was scanned at the window: only the household register is fetched."""
    code = citizen(seq=404)
    client = await window()
    audit = client.server.app[QUERY_AUDIT]
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    id_card = world.simulator.issue(HOME, "id_card", "valid", NOW, holder=("测试甲", code, "111"))
    await add(client, csrf, case["id"], id_card.body())
    view = await fetch(client, csrf, case["id"])
    assert view["fetch"]["added"] == 1 and len(view["cards"]) == 2
    fetched = view["cards"][1]
    assert fetched["source"] == "发证地调取" and fetched["satisfies"] == ["household_register"]
    assert [r["satisfied"] for r in view["checklist"]] == [True, True]
    assert audit is not None


async def test_nothing_is_asked_when_every_requirement_is_met(window, regions_up) -> None:
    rs, _ = regions_up
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, citizen(seq=405), ITEM)
    await fetch(client, csrf, case["id"])
    asked, records = rs.stats[HOME].requests, len(trail(client))
    view = await fetch(client, csrf, case["id"])
    assert view["fetch"] == {"regions": [], "added": 0, "complete": True}
    assert rs.stats[HOME].requests == asked and len(trail(client)) == records and len(view["cards"]) == 2


async def test_a_region_returning_another_persons_licences_adds_nothing_and_says_so(window, regions_up) -> None:
    rs, _ = regions_up
    rs.set_faults(HOME, wrong_holder=True)
    try:
        client = await window()
        csrf = await sign_in(client)
        case = await open_case(client, csrf, citizen(seq=406), ITEM)
        view = await fetch(client, csrf, case["id"])
    finally:
        rs.clear_faults()
    [home] = view["fetch"]["regions"]
    assert home["status"] == "error" and home["added"] == 0 and home["rejected"] == 2
    assert view["cards"] == [] and view["fetch"]["added"] == 0 and view["complete"] is False


async def test_a_region_that_does_not_answer_in_time_is_reported_and_the_case_stays_usable(window, regions_up,
                                                                                          world) -> None:
    rs, _ = regions_up
    code = citizen(seq=407)
    rs.set_faults(HOME, hang=True)
    try:
        client = await window(query_deadline_ms=400, upstream_timeout_ms=300)
        csrf = await sign_in(client)
        case = await open_case(client, csrf, code, ITEM)
        view = await fetch(client, csrf, case["id"])
    finally:
        rs.clear_faults()
    [home] = view["fetch"]["regions"]
    assert home["status"] == "timeout" and view["fetch"]["complete"] is False and view["cards"] == []
    # the clerk goes on with what the applicant brings
    id_card = world.simulator.issue(HOME, "id_card", "valid", NOW, holder=("测试乙", code, "111"))
    view = await add(client, csrf, case["id"], id_card.body())
    assert view["cards"][0]["verdict"] == "valid"


async def test_a_resident_of_another_region_is_asked_of_that_region(window, regions_up) -> None:
    code = citizen(area="320102", seq=408)   # 南京 玄武区
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    view = await fetch(client, csrf, case["id"], lang="en")
    assert [r["region"] for r in view["fetch"]["regions"]] == [SECOND]
    assert view["fetch"]["added"] == 2 and {c["source"] for c in view["cards"]} == {"fetched from the issuing region"}


async def test_no_answer_and_no_card_when_the_query_cannot_be_audited(world, aiohttp_client, regions_up) -> None:
    from gateway.app import create_app

    _, template = regions_up
    app = create_app(world.services(clock=Clock(NOW),
                                    settings=dataclasses.replace(world.settings, upstream_base_url=template)))
    app[QUERY_AUDIT] = FailingAudit()
    client = await aiohttp_client(app)
    csrf = await sign_in(client)
    case = await open_case(client, csrf, citizen(seq=409), ITEM)
    error = await fetch(client, csrf, case["id"], status=503)
    assert error["code"] == "AUDIT_UNAVAILABLE"
    view = await (await client.get(f"/console/api/cases/{case['id']}")).json()
    assert view["cards"] == []


async def test_fetch_needs_the_sessions_csrf_token(window, regions_up) -> None:
    rs, _ = regions_up
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, citizen(seq=410), ITEM)
    asked = rs.stats[HOME].requests
    resp = await client.post(f"/console/api/cases/{case['id']}/fetch", json={"use_cause": "x", "consent": True})
    assert resp.status == 403 and (await resp.json())["code"] == "PAGE_EXPIRED"
    assert rs.stats[HOME].requests == asked
