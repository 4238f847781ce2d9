"""Second adversarial review of the service-window console, above all its fetch from the issuing region
(``POST /console/api/cases/{case}/fetch``): what a curious or malicious clerk, a web attacker with a
clerk's browser, or a misbehaving region could do, each attack beside a genuine control that stays so.

Set-up reused: the console client and sign-in of tests/test_console_http.py, the window client and
``fetch`` helper of tests/test_console_fetch_from_issuing_region.py, the simulated regions of
tests/test_query_federated.py (whose answers a test may replace with licences it issues itself).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.console.cases import result_body
from gateway.console.i18n import t
from gateway.console.receipt import signer_for
from gateway.console.routes import CONSOLE
from gateway.receipts import verify_receipt
from gateway.region_server import RegionSimulator, serve
from tests.conftest import NOW
from tests.test_console_fetch_from_issuing_region import ITEM, fetch, trail, window  # noqa: F401  (fixture)
from tests.test_console_http import add, open_case, sign_in
from tests.test_query_federated import HOME, citizen, regions_up  # noqa: F401  (fixture)


def region_returns(rs: RegionSimulator, licences: list[Any]) -> None:
    """The home region's sharing service answers with these licences (simulator ``Issued``), of the
    types asked for, in this order, whoever is asked about (a misbehaving or long-lived register)."""
    def answer(region: str, code_type: str, code: str, name: str | None, type_codes: list[str]) -> list[bytes]:
        return [i.data for i in licences if region == HOME and i.licence.type_code in type_codes]
    rs.answer = answer  # type: ignore[method-assign]


def issue(world, type_key: str, case: str, code: str) -> Any:
    return world.simulator.issue(HOME, type_key, case, NOW, holder=("测试甲", code, "111"))


def server_case(client, case_id: str):
    return next(c for s in client.app[CONSOLE].sessions._sessions.values() for cid, c in s.cases.items()
                if cid == case_id)


# --- the same licence fetched twice -------------------------------------------------------------
async def test_fetching_again_does_not_add_the_same_expired_licence_twice(world, window, regions_up) -> None:
    """The applicant's ID card is expired; the clerk fetches again (the page invites it when a region did
    not answer, and a double click does it too): the same expired licence became card #3, #4, ... until
    the case was full. Now it is counted as already in the case."""
    rs, _ = regions_up
    code = citizen(seq=611)
    expired, register = issue(world, "id_card", "expired", code), issue(world, "household_register", "valid", code)
    region_returns(rs, [expired, register])
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    first = await fetch(client, csrf, case["id"])
    assert [(c["n"], c["verdict"]) for c in first["cards"]] == [(1, "valid"), (2, "invalid")]
    before = len(trail(client))
    again = await fetch(client, csrf, case["id"])
    [home] = again["fetch"]["regions"]
    assert (home["status"], home["added"], home["already"]) == ("ok", 0, 1)
    assert len(again["cards"]) == 2 and again["fetch"]["added"] == 0
    # the query was asked and audited (its record and one per licence judged); no card, no card record
    assert [r["kind"] for r in trail(client)[before:]] == ["query", "query"]


async def test_control_a_renewed_licence_fetched_later_is_added(world, window, regions_up) -> None:
    rs, _ = regions_up
    code = citizen(seq=612)
    expired, register = issue(world, "id_card", "expired", code), issue(world, "household_register", "valid", code)
    region_returns(rs, [expired, register])
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    await fetch(client, csrf, case["id"])
    renewed = issue(world, "id_card", "valid", code)   # the applicant renewed the card meanwhile
    region_returns(rs, [expired, renewed, register])
    view = await fetch(client, csrf, case["id"])
    assert view["complete"] is True
    assert [c["satisfies"] for c in view["cards"] if c["verdict"] == "valid"] == [["household_register"],
                                                                                 ["applicant_identity"]]


# --- a region returning many licences -----------------------------------------------------------
async def test_many_unusable_licences_from_a_region_cannot_crowd_the_valid_one_out_of_the_case(
        world, window, regions_up) -> None:
    """A region returns 35 expired ID cards of the applicant before the valid one: the first 30 filled
    the case (MAX_LICENCES_PER_CASE), the valid card and the household register were dropped without a
    word, and the case could take no other licence. Now valid licences go first and the rest is counted."""
    rs, _ = regions_up
    code = citizen(seq=613)
    licences = [issue(world, "id_card", "expired", code) for _ in range(35)]
    licences += [issue(world, "id_card", "valid", code), issue(world, "household_register", "valid", code)]
    region_returns(rs, licences)
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    view = await fetch(client, csrf, case["id"])
    [home] = view["fetch"]["regions"]
    assert (home["added"], home["over_limit"], home["rejected"]) == (30, 7, 0)
    assert [r["satisfied"] for r in view["checklist"]] == [True, True] and view["complete"] is True
    assert [c["verdict"] for c in view["cards"][:2]] == ["valid", "valid"]
    assert [c["n"] for c in view["cards"]] == list(range(1, 31))
    # one card record per card added, nothing for the 7 left out
    assert [r["kind"] for r in trail(client)].count("check") == 30


async def test_control_a_region_returning_a_few_licences_has_them_all_added(world, window, regions_up) -> None:
    rs, _ = regions_up
    code = citizen(seq=614)
    licences = [issue(world, "id_card", "expired", code) for _ in range(3)]
    licences += [issue(world, "id_card", "valid", code), issue(world, "household_register", "valid", code)]
    region_returns(rs, licences)
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    view = await fetch(client, csrf, case["id"])
    [home] = view["fetch"]["regions"]
    assert (home["added"], home.get("over_limit", 0), home.get("already", 0)) == (5, 0, 0)
    assert sorted(c["verdict"] for c in view["cards"]) == ["invalid"] * 3 + ["valid"] * 2 and view["complete"] is True


# --- the receipt and the audit trail say what was fetched ---------------------------------------
async def test_the_receipt_says_which_licences_were_fetched_and_its_signature_covers_it(world, window) -> None:
    """The printed receipt listed a fetched licence exactly as one the applicant presented, and its signed
    body could not tell them apart: the applicant's record of what was fetched with their consent."""
    code = citizen(seq=615)
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    await add(client, csrf, case["id"], issue(world, "id_card", "valid", code).body())   # scanned at the window
    await fetch(client, csrf, case["id"])                                                # the register fetched
    html = await (await client.get(f"/console/receipt/{case['id']}")).text()
    assert re.findall(r'<td data-source="">([^<]*)</td>', html) == ["扫码/粘贴", "发证地调取"]
    jws = re.search(r'id="receipt-jws">([^<]+)<', html)[1]
    body = result_body(server_case(client, case["id"]), world.catalogue)
    assert b'"sources":["scan","fetch"]' in body
    claims = verify_receipt(jws, signer_for(world.gateway_key).jwks(), request_body=body)
    assert claims["verdict"] == "complete"
    # control: the signature covers the sources (a receipt re-told as "both presented" does not verify)
    with pytest.raises(Exception):
        verify_receipt(jws, signer_for(world.gateway_key).jwks(),
                       request_body=body.replace(b'"sources":["scan","fetch"]', b'"sources":["scan","scan"]'))


async def test_the_card_record_of_a_fetched_licence_says_it_was_fetched(world, window) -> None:
    """The console's record per card said ``console.verify`` for a fetched licence as for a scanned one:
    the trail could not tell what the applicant presented from what the clerk fetched."""
    code = citizen(seq=616)
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    await add(client, csrf, case["id"], issue(world, "id_card", "valid", code).body())
    await fetch(client, csrf, case["id"])
    checks = [r for r in trail(client) if r["kind"] == "check"]
    assert [(r["operator"], r["extra"]["source"]) for r in checks] == [("clerk", "console.verify"),
                                                                      ("clerk", "console.fetch")]


async def test_the_query_record_of_a_fetch_names_the_clerk_who_asked(window, regions_up) -> None:
    """Several clerks share a window (clerk and supervisor are both HZ-01): the query record says only
    ``console/HZ-01``; when the regions return nothing there is no card record either, so nobody can tell
    who looked the applicant up."""
    rs, _ = regions_up
    region_returns(rs, [])
    client = await window()
    csrf = await sign_in(client, "supervisor")
    case = await open_case(client, csrf, citizen(seq=617), ITEM)
    before = len(trail(client))
    await fetch(client, csrf, case["id"])
    [query] = trail(client)[before:]
    assert query["kind"] == "query" and query["partner"] == "console/HZ-01"
    assert query["operator"] == "supervisor"


# --- what the clerk is told ---------------------------------------------------------------------
async def test_a_use_cause_holding_the_applicants_id_number_tells_the_clerk_why_it_is_refused(window, regions_up
                                                                                            ) -> None:
    """The clerk adds the applicant's ID number to the purpose of use: refused (it is audited in clear), but
    the page said only "请求格式错误。" (the detail, in English, was never shown)."""
    rs, _ = regions_up
    code = citizen(seq=621)
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    error = await fetch(client, csrf, case["id"], {"use_cause": f"办理户口迁移 {code}", "consent": True}, status=400)
    assert error["code"] == "BAD_REQUEST" and error["detail"].startswith("用证事由须为 1-200 个字")
    assert " / the purpose of use must be" in error["detail"] and code not in str(error)
    assert rs.stats[HOME].requests == 0
    # control: the prefilled purpose is accepted
    view = await fetch(client, csrf, case["id"], {"use_cause": "办理“户口迁移”，核验申请人证照", "consent": True})
    assert view["fetch"]["added"] == 2


async def test_an_item_lacking_what_cannot_be_fetched_is_not_told_every_requirement_is_met(world, tmp_path: Path
                                                                                        ) -> None:
    """A purpose of use holding an ID number was refused as "请求格式错误。" only.
    KS-004 (a company's change of registration) for a citizen applicant: the business licence is the
    company's and the legal representative's role is not fetched by the applicant's ID, so nobody is asked.
    The page said "本事项所需证照均已满足，无需调取" beside an incomplete checklist. And a fetch answered by
    licences failing their signature said they were another person's. (Headless Chromium, as
    tests/test_console_fetch_in_headless_chromium.py.)"""
    from tests.test_console_browser import Chromium, sign_in_by_keyboard

    code = citizen(seq=618)
    rs = RegionSimulator(world.simulator, {lt.type_code: lt for lt in world.catalogue.types}, lambda: NOW)
    async with serve(rs) as template:
        settings = dataclasses.replace(world.settings, upstream_base_url=template)
        async with TestServer(create_app(world.services(settings=settings)), host="127.0.0.1") as server, \
                Chromium(tmp_path / "profile") as browser:
            page = await browser.page()
            await sign_in_by_keyboard(page, f"http://127.0.0.1:{server.port}")

            async def case_for(item: str) -> None:
                await page.js("document.getElementById('item-search').value = ''")
                await page.js("document.getElementById('item-search').focus()")
                await page.type(item)
                await page.wait(f"document.querySelector('#item-results li[data-code=\"{item}\"]') !== null")
                await page.enter()
                await page.wait("document.activeElement.id === 'applicant-code'")
                await page.type(code)
                await page.enter()
                await page.wait("document.getElementById('applicant-code').readOnly")

            async def fetch_now() -> tuple[str, str, list[str]]:
                await page.js("document.getElementById('fetch-consent').checked = true")
                await page.js("document.getElementById('fetch-submit').click()")
                await page.wait("!document.getElementById('fetch-submit').disabled && "
                                "document.getElementById('fetch-msg').textContent !== '正在向发证地调取……'")
                return (await page.js("document.getElementById('fetch-msg').className"),
                        await page.js("document.getElementById('fetch-msg').textContent"),
                        await page.js("[...document.querySelectorAll('#fetch-regions li')].map(l => l.textContent)"))

            await case_for("KS-004")
            # an ID number in the purpose of use: the page says why it is refused
            await page.js(f"document.getElementById('fetch-cause').value = '核验 {code}'")
            cls, text, regions = await fetch_now()
            assert (cls, text) == ("msg bad", "用证事由须为 1-200 个字，不含控制字符，也不得含身份证号码（事由明文记入核验记录）")
            await page.js("document.getElementById('fetch-cause').value = '办理变更登记'")
            assert await page.js("document.getElementById('summary').textContent") == ""
            cls, text, regions = await fetch_now()
            assert (cls, text, regions) == ("msg bad", t("zh", "fetch_unfetchable"), [])
            assert rs.stats[HOME].requests == 0

            # licences altered after signing: refused as failing verification, not as someone else's
            await page.js("document.getElementById('item-change').click()")
            rs.set_faults(HOME, tamper=True)
            await case_for("KS-076")
            cls, text, regions = await fetch_now()
            assert regions == ["杭州市（330100）：调取出错，拒收 2 份（未通过核验，或持有人、地区、类型不符）"]

            # control: every requirement met, nothing to ask, and the page says so
            rs.clear_faults()
            await page.js("document.getElementById('fetch-regions').replaceChildren()")
            cls, text, regions = await fetch_now()
            assert regions == ["杭州市（330100）：已调取，加入 2 份"]
            cls, text, regions = await fetch_now()
            assert (cls, text, regions) == ("msg ok", t("zh", "fetch_nothing"), [])
            await page.close()


# --- what held (tried, and the console behaved) -------------------------------------------------
async def test_what_held_stays_so(world, window, regions_up, aiohttp_client) -> None:
    """Another session's case, a cross-site Origin with the right token, consent given as a string, an
    extra field naming another applicant, a fetch and a scan racing on one case: each refused or ordered."""
    rs, _ = regions_up
    code = citizen(seq=619)
    client = await window()
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code, ITEM)
    asked = rs.stats[HOME].requests
    other = await aiohttp_client(client.server)   # another clerk's browser on the same gateway
    other_csrf = await sign_in(other)
    resp = await other.post(f"/console/api/cases/{case['id']}/fetch", json={"use_cause": "x", "consent": True},
                            headers={"X-CSRF-Token": other_csrf})
    assert resp.status == 404
    resp = await client.post(f"/console/api/cases/{case['id']}/fetch", json={"use_cause": "x", "consent": True},
                             headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert resp.status == 403 and (await resp.json())["code"] == "PAGE_EXPIRED"
    for body in ({"use_cause": "x", "consent": "true"}, {"use_cause": "x", "consent": 1},
                 {"use_cause": "x", "consent": True, "applicant": {"code_type": "111", "code": citizen(seq=620)}}):
        resp = await client.post(f"/console/api/cases/{case['id']}/fetch", json=body, headers={"X-CSRF-Token": csrf})
        assert resp.status == 400
    assert rs.stats[HOME].requests == asked
    # a use_cause with markup is only audited (escaped wherever shown); the answer never holds the full ID
    rs.set_faults(HOME, latency_ms=300)
    id_card = issue(world, "id_card", "valid", code)
    fetching = asyncio.create_task(fetch(client, csrf, case["id"], {"use_cause": "<script>x</script>", "consent": True}))
    await asyncio.sleep(0.1)
    scanned = await add(client, csrf, case["id"], id_card.body())   # waits for the fetch: numbered after it
    fetched = await fetching
    rs.clear_faults()
    assert [(c["n"], c["source"]) for c in scanned["cards"]] == [(1, "发证地调取"), (2, "发证地调取"), (3, "扫码/粘贴")]
    assert code not in str(fetched) and code not in str(scanned)


def test_what_held_session_end_reasons_stay_within_their_bound() -> None:
    """Today's staff-account change: the reasons of ended sessions are remembered for the sign-in page,
    at most ``max_ended`` of them (the oldest forgotten); a session ended without a reason leaves none."""
    from gateway.console.sessions import SessionPolicy, SessionStore

    store = SessionStore(SessionPolicy(max_ended=3))
    sessions = [store.create("clerk", "clerk", "HZ-01", NOW) for _ in range(6)]
    for s in sessions[:5]:
        store.drop(s.id, reason="account-changed")
    store.drop(sessions[5].id)
    assert [store.ended_reason(s.id) for s in sessions] == [None, None, "account-changed", "account-changed",
                                                            "account-changed", None]
    assert len(store._ended) == 3 and len(store) == 0
