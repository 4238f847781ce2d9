"""Service-window console over plain HTTP: sign-in, cookies, CSRF, idle timeout, lockout,
roles, the check flow on the item-check core, the signed receipt and the status page."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.console.accounts import DEMO_ACCOUNTS
from gateway.console.routes import CONSOLE
from tests.conftest import NOW

PASSWORDS = {user: password for user, _, _, password in DEMO_ACCOUNTS}


@dataclass
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


async def login_token(client) -> str:
    resp = await client.get("/console/login")
    assert resp.status == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())[1]


async def sign_in(client, user: str = "clerk", password: str | None = None) -> str:
    """Sign in through the form; return the session's CSRF token from the check page."""
    token = await login_token(client)
    resp = await client.post("/console/login", data={"username": user, "password": password or PASSWORDS[user],
                                                     "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await client.get("/console/")
    assert page.status == 200
    return re.search(r'name="csrf-token" content="([^"]+)"', await page.text())[1]


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def applicant(world) -> tuple[str, str]:
    return world.simulator.person("320500")


@pytest.fixture
async def console(world, client_for, clock):
    return await client_for(clock=clock)


# --- sign-in and cookies ---------------------------------------------------------------
async def test_anonymous_visitor_is_sent_to_the_sign_in_page(console) -> None:
    resp = await console.get("/console/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/login"
    api = await console.get("/console/api/items?q=hkqy")
    assert api.status == 401 and (await api.json())["code"] == "UNAUTHENTICATED"


async def test_sign_in_sets_an_httponly_samesite_strict_session_cookie(console) -> None:
    token = await login_token(console)
    resp = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                      "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    cookie = next(c for c in resp.headers.getall("Set-Cookie") if c.startswith("console_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback; see the https test below
    page = await (await console.get("/console/")).text()
    assert 'id="who-user">clerk<' in page and "窗口人员" in page


async def test_session_cookie_is_secure_when_served_over_https(world) -> None:
    from aiohttp.test_utils import make_mocked_request
    from aiohttp import web

    from gateway.console.routes import _set_session_cookie

    request = make_mocked_request("GET", "/console/").clone(scheme="https")
    resp = web.Response()
    _set_session_cookie(request, resp, "abc")
    morsel = resp.cookies["console_session"]
    assert morsel["secure"] is True and morsel["httponly"] is True and morsel["samesite"] == "Strict"


async def test_wrong_password_is_refused_and_the_fifth_failure_locks_the_account(console) -> None:
    for attempt in range(5):
        token = await login_token(console)
        resp = await console.post("/console/login", data={"username": "clerk", "password": "guess-" + str(attempt),
                                                          "csrf_token": token}, allow_redirects=False)
        assert resp.status == (401 if attempt < 4 else 429)
    assert "临时锁定" in await resp.text()
    token = await login_token(console)  # even the right password is refused while locked
    resp = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                      "csrf_token": token}, allow_redirects=False)
    assert resp.status == 429


async def test_lockout_ends_after_its_duration(console, clock) -> None:
    for attempt in range(5):
        token = await login_token(console)
        await console.post("/console/login", data={"username": "admin", "password": "x" * 12, "csrf_token": token})
    clock.advance(minutes=16)
    csrf = await sign_in(console, "admin")
    assert csrf


# --- CSRF ------------------------------------------------------------------------------------
async def test_sign_in_form_without_its_csrf_token_is_refused(console) -> None:
    await login_token(console)  # sets the nonce cookie
    resp = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"]},
                              allow_redirects=False)
    assert resp.status == 403 and (await resp.json())["code"] == "PAGE_EXPIRED"
    forged = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                        "csrf_token": "0" * 64}, allow_redirects=False)
    assert forged.status == 403


async def test_state_changing_console_calls_need_the_sessions_csrf_token(console, applicant) -> None:
    csrf = await sign_in(console)
    body = {"item": "KS-076", "applicant": {"code_type": "111", "code": applicant[1]}}
    missing = await console.post("/console/api/cases", json=body)
    assert missing.status == 403 and (await missing.json())["code"] == "PAGE_EXPIRED"
    wrong = await console.post("/console/api/cases", json=body, headers={"X-CSRF-Token": csrf[:-2] + "xx"})
    assert wrong.status == 403
    cross_site = await console.post("/console/api/cases", json=body,
                                    headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert cross_site.status == 403
    ok = await console.post("/console/api/cases", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status == 200
    case_id = (await ok.json())["id"]
    add = await console.post(f"/console/api/cases/{case_id}/licences", json={"licence": "x", "encoding": "utf-8"})
    assert add.status == 403


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(console) -> None:
    csrf = await sign_in(console)
    forged = await console.post("/console/logout", data={}, allow_redirects=False)
    assert forged.status == 403
    assert (await console.get("/console/", allow_redirects=False)).status == 200  # still signed in
    out = await console.post("/console/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/console/login?out=1"
    assert (await console.get("/console/", allow_redirects=False)).status == 303


async def test_a_csrf_token_of_another_session_is_refused(world, client_for, applicant) -> None:
    a, b = await client_for(), await client_for()
    csrf_a = await sign_in(a)
    await sign_in(b, "supervisor")
    body = {"item": "KS-076", "applicant": {"code_type": "111", "code": applicant[1]}}
    assert (await b.post("/console/api/cases", json=body, headers={"X-CSRF-Token": csrf_a})).status == 403


# --- idle timeout --------------------------------------------------------------------------
async def test_session_ends_after_fifteen_idle_minutes(console, clock) -> None:
    await sign_in(console)
    clock.advance(minutes=14)
    assert (await console.get("/console/", allow_redirects=False)).status == 200  # activity renews it
    clock.advance(minutes=14)
    assert (await console.get("/console/", allow_redirects=False)).status == 200
    clock.advance(minutes=15, seconds=1)
    resp = await console.get("/console/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/login?expired=1"
    assert (await console.get("/console/api/items?q=hk")).status == 401
    page = await console.get("/console/login?expired=1")
    assert "登录已失效（长时间未操作，或服务已重启）" in await page.text()


async def test_idle_timeout_is_a_setting(world, client_for, clock) -> None:
    from dataclasses import replace

    client = await client_for(clock=clock, settings=replace(world.settings, console_idle_timeout_seconds=60))
    await sign_in(client)
    clock.advance(seconds=61)
    assert (await client.get("/console/", allow_redirects=False)).status == 303


# --- roles -----------------------------------------------------------------------------------
async def test_clerk_may_not_open_the_status_or_audit_page(console) -> None:
    await sign_in(console)
    assert (await console.get("/console/status")).status == 403
    assert (await console.get("/console/audit")).status == 403
    page = await (await console.get("/console/")).text()
    assert 'href="/console/status"' not in page


async def test_supervisor_status_page_shows_45_regions_with_sparklines(world, console) -> None:
    await sign_in(console, "supervisor")
    resp = await console.get("/console/status")
    html = await resp.text()
    assert resp.status == 200
    assert len(re.findall(r'<tr data-region="\d{6}">', html)) == len(world.regions) == 45
    assert html.count('<svg class="spark"') == 45 and "<polyline" in html
    assert 'id="trust-version">' in html


async def test_status_page_counts_console_verifications_per_region(world, console, applicant) -> None:
    csrf = await sign_in(console, "admin")
    valid = world.simulator.issue("330500", "id_card", "valid", NOW, holder=(*applicant, "111"))
    case = await (await console.post("/console/api/cases", headers={"X-CSRF-Token": csrf},
                                     json={"item": "KS-076", "applicant": {"code_type": "111", "code": applicant[1]}})).json()
    for _ in range(3):
        await console.post(f"/console/api/cases/{case['id']}/licences", json=valid.body(), headers={"X-CSRF-Token": csrf})
    await console.post(f"/console/api/cases/{case['id']}/licences", json={"licence": "garbage", "encoding": "utf-8"},
                       headers={"X-CSRF-Token": csrf})
    html = await (await console.get("/console/status")).text()
    row = re.search(r'<tr data-region="330500">(.*?)</tr>', html)[1]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells == ["3", "0%"]
    window = console.app[CONSOLE].counters.window("330500", NOW)
    assert window.total == 3 and window.series[-1] == 3


# --- the check flow ------------------------------------------------------------------------
@pytest.fixture
def licences(world, applicant):
    name, code = applicant
    valid = world.simulator.issue("320500", "id_card", "valid", NOW, holder=(name, code, "111"))
    revoked = world.simulator.issue("511600", "household_register", "revoked", NOW, holder=(name, code, "111"))
    return valid, revoked


async def open_case(client, csrf: str, code: str, item: str = "KS-076") -> dict[str, Any]:
    resp = await client.post("/console/api/cases", json={"item": item, "applicant": {"code_type": "111", "code": code}},
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def add(client, csrf: str, case_id: str, body: dict[str, Any], lang: str = "zh") -> dict[str, Any]:
    resp = await client.post(f"/console/api/cases/{case_id}/licences?lang={lang}", json=body,
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_applicant_with_a_wrong_check_digit_is_refused(console, applicant) -> None:
    csrf = await sign_in(console)
    code = applicant[1]
    wrong = code[:17] + ("0" if code[17] != "0" else "1")
    resp = await console.post("/console/api/cases", json={"item": "KS-076", "applicant": {"code_type": "111", "code": wrong}},
                              headers={"X-CSRF-Token": csrf})
    assert resp.status == 400 and (await resp.json())["code"] == "APPLICANT_INVALID"


async def test_valid_and_revoked_licences_give_cards_and_checklist(world, licences, console, applicant) -> None:
    valid, revoked = licences
    csrf = await sign_in(console)
    case = await open_case(console, csrf, applicant[1])
    assert case["applicant"]["masked"] == applicant[1][:4] + "*" * 10 + applicant[1][-4:]
    assert [r["satisfied"] for r in case["checklist"]] == [False, False]
    view = await add(console, csrf, case["id"], {**valid.body(), "source": "upload"})
    assert view["checklist"][0] == {**view["checklist"][0], "id": "applicant_identity", "satisfied": True, "by": [1]}
    card = view["cards"][0]
    assert card["verdict"] == "valid" and card["verdict_text"] == "核验通过：证照真实有效"
    assert card["region"] == {"code": "320500", "name": "苏州市"} and card["issuer"] == valid.licence.issuer_name
    shown = {f["name"]: f["value"] for f in card["fields"]}
    assert set(shown) == {"holder_name", "holder_code", "holder_code_type", "valid_until"}  # the item's list only
    assert shown["holder_code"] == case["applicant"]["masked"]
    view = await add(console, csrf, case["id"], revoked.body())
    bad = view["cards"][1]
    assert bad["verdict"] == "invalid" and bad["region"]["name"] == "广安市" and bad["fields"] == []
    assert bad["reasons"] == [{"code": "LICENCE_REVOKED", "message": "证照已注销或吊销。",
                               "advice": "证照已注销或吊销，请申请人联系发证机关。"}]
    assert [r["satisfied"] for r in view["checklist"]] == [True, False]
    assert view["complete"] is False and view["summary"] == "材料不齐全，请按清单补充。"


async def test_card_text_in_english(licences, console, applicant) -> None:
    valid, revoked = licences
    csrf = await sign_in(console)
    case = await open_case(console, csrf, applicant[1])
    view = await add(console, csrf, case["id"], revoked.body(), lang="en")
    assert view["cards"][0]["verdict_text"].startswith("Not verified")
    assert view["cards"][0]["reasons"][0]["advice"].startswith("The licence is revoked")


async def test_someone_elses_licence_does_not_tick_the_checklist(world, console, applicant) -> None:
    other = world.simulator.issue("320500", "id_card", "valid", NOW)
    csrf = await sign_in(console)
    case = await open_case(console, csrf, applicant[1])
    view = await add(console, csrf, case["id"], other.body())
    assert view["cards"][0]["verdict"] == "valid" and view["cards"][0]["fields"] == []
    assert view["cards"][0]["reasons"][0]["code"] == "HOLDER_MISMATCH"
    assert "不一致" in view["cards"][0]["note"] and not view["checklist"][0]["satisfied"]


async def test_undecodable_upload_is_a_malformed_card_not_an_error(console, applicant) -> None:
    csrf = await sign_in(console)
    case = await open_case(console, csrf, applicant[1])
    view = await add(console, csrf, case["id"], {"licence": "%%%not base64", "encoding": "base64", "source": "upload"})
    assert view["cards"][0]["verdict"] == "invalid" and view["cards"][0]["reasons"][0]["code"] == "MALFORMED"


async def test_cases_of_another_session_are_not_reachable(client_for, licences, applicant) -> None:
    a, b = await client_for(), await client_for()
    csrf_a, csrf_b = await sign_in(a), await sign_in(b)
    case = await open_case(a, csrf_a, applicant[1])
    resp = await b.post(f"/console/api/cases/{case['id']}/licences", json=licences[0].body(),
                        headers={"X-CSRF-Token": csrf_b})
    assert resp.status == 404
    assert (await b.get(f"/console/receipt/{case['id']}")).status == 404


async def test_receipt_carries_a_qr_code_of_a_receipt_signed_by_the_gateway_key(world, licences, console,
                                                                                applicant) -> None:
    from gateway.console.cases import result_body
    from gateway.console.receipt import signer_for
    from gateway.receipts import verify_receipt

    valid, revoked = licences
    csrf = await sign_in(console)
    case = await open_case(console, csrf, applicant[1])
    await add(console, csrf, case["id"], valid.body())
    await add(console, csrf, case["id"], revoked.body())
    html = await (await console.get(f"/console/receipt/{case['id']}")).text()
    assert '<svg width=' in html and 'class="qr"' in html
    assert applicant[1] not in html  # only the masked number is printed
    jws = re.search(r'id="receipt-jws">([^<]+)<', html)[1]
    digest = re.search(r'id="receipt-digest">([A-Za-z0-9_-]{43})<', html)[1]
    stored = console.app[CONSOLE].sessions  # the server-side case, to recompute what was signed
    session_case = next(c for sess in stored._sessions.values() for cid, c in sess.cases.items() if cid == case["id"])
    body = result_body(session_case, world.catalogue)
    claims = verify_receipt(jws, signer_for(world.gateway_key).jwks(), request_body=body)
    assert claims["request_digest"] == digest and claims["item"] == "KS-076" and claims["verdict"] == "incomplete"
    assert claims["reasons"] == ["LICENCE_REVOKED"]
    assert claims["licence_ids"] == [valid.licence.identifier, revoked.licence.identifier]
    assert b'"operator":"clerk"' in body
    with pytest.raises(Exception):
        verify_receipt(jws, signer_for(world.gateway_key).jwks(), request_body=body.replace(b"clerk", b"clerc"))


async def test_receipt_digest_changes_when_another_licence_is_added(licences, console, applicant) -> None:
    valid, revoked = licences
    csrf = await sign_in(console)
    case = await open_case(console, csrf, applicant[1])
    await add(console, csrf, case["id"], valid.body())
    first = re.search(r'id="receipt-digest">([\w-]+)<', await (await console.get(f"/console/receipt/{case['id']}")).text())[1]
    await add(console, csrf, case["id"], revoked.body())
    second = re.search(r'id="receipt-digest">([\w-]+)<', await (await console.get(f"/console/receipt/{case['id']}")).text())[1]
    assert first != second


# --- pages, language, headers -------------------------------------------------------------
async def test_item_search_by_pinyin_initials(console) -> None:
    await sign_in(console)
    items = (await (await console.get("/console/api/items?q=hkqy")).json())["items"]
    assert items[0] == {"code": "KS-076", "name": "户口迁移", "name_zh": "户口迁移", "department": "公安局"}
    by_code = (await (await console.get("/console/api/items?q=KS-076")).json())["items"]
    assert by_code[0]["code"] == "KS-076"


async def test_language_switch_renders_english_and_is_remembered(console) -> None:
    await sign_in(console)
    resp = await console.get("/console/?lang=en")
    html = await resp.text()
    assert '<html lang="en">' in html and "Step 1: choose the service item" in html
    assert "console_lang=en" in resp.headers["Set-Cookie"]
    again = await (await console.get("/console/")).text()
    assert "Step 1: choose the service item" in again
    back = await (await console.get("/console/?lang=zh")).text()
    assert "第一步：选择办理事项" in back


async def test_console_pages_send_a_strict_content_security_policy(console) -> None:
    resp = await console.get("/console/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"
    assert "<script>" not in await resp.text()  # no inline script anywhere
    static = await console.get("/console/static/console.js")
    assert static.status == 200 and "X-CSRF-Token" in await static.text()


async def test_static_path_traversal_is_refused(console) -> None:
    resp = await console.get("/console/static/../routes.py")
    assert resp.status in (403, 404)
    resp = await console.get("/console/static/%2e%2e/routes.py")
    assert resp.status in (403, 404)
