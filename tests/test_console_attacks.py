"""Adversarial review of the service-window console: requests on which it behaved wrongly
(a lockout outrun by parallel guesses, an unreadable form body answered 500, a sign-in tab
refused because another tab was opened, two scans in flight sharing one card number), each
next to a genuine control case. Set-up (clients, staff accounts, sign-in) as in
``tests/test_console_http.py``."""

from __future__ import annotations

import asyncio
import re

import pytest

from gateway.console.routes import CONSOLE
from tests.conftest import NOW
from tests.test_console_http import PASSWORDS, Clock, login_token, open_case, sign_in


@pytest.fixture
async def console(world, client_for):
    return await client_for(clock=Clock(NOW))


def count_password_checks(client) -> list[str]:
    """Wrap the staff directory so the test sees every Argon2 password check (user names only)."""
    directory = client.app[CONSOLE].directory
    calls: list[str] = []
    real = directory.authenticate

    def counting(username: str, password: str):
        calls.append(username)
        return real(username, password)

    directory.authenticate = counting
    return calls


# --- lockout ---------------------------------------------------------------------------------
async def test_parallel_sign_in_guesses_cannot_outrun_the_five_failure_lockout(console) -> None:
    """Twelve wrong passwords sent at once all passed the "locked?" check before the first
    Argon2 check ended: twelve guesses were tried (and 401/429 came back mixed), not five."""
    checks = count_password_checks(console)
    token = await login_token(console)

    async def guess(n: int) -> int:
        resp = await console.post("/console/login", data={"username": "clerk", "password": f"guess-{n}-xxxxxx",
                                                          "csrf_token": token}, allow_redirects=False)
        return resp.status

    statuses = await asyncio.gather(*(guess(n) for n in range(12)))
    assert len(checks) == 5  # the lockout's limit, however the guesses are timed
    assert sorted(statuses) == [401] * 4 + [429] * 8
    # and the account is locked: the right password is refused too
    resp = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                      "csrf_token": token}, allow_redirects=False)
    assert resp.status == 429 and "临时锁定" in await resp.text() and len(checks) == 5


async def test_parallel_sign_ins_of_different_staff_from_one_client_all_succeed(console, aiohttp_client) -> None:
    """Control: in-flight attempts count per user name; three colleagues signing in at the
    same moment from one address (three browsers, one service hall) are not refused."""
    browsers = [console, await aiohttp_client(console.server), await aiohttp_client(console.server)]
    checks = count_password_checks(console)
    users = ["clerk", "supervisor", "admin"]
    tokens = [await login_token(b) for b in browsers]
    answers = await asyncio.gather(*(
        b.post("/console/login", data={"username": u, "password": PASSWORDS[u], "csrf_token": tok},
               allow_redirects=False) for b, u, tok in zip(browsers, users, tokens)))
    assert [a.status for a in answers] == [303, 303, 303] and sorted(checks) == sorted(users)
    assert len(console.app[CONSOLE].sessions) == 3


# --- unreadable form bodies ------------------------------------------------------------------
UNREADABLE_FORMS = [
    ("raw byte not in UTF-8", b"username=cl\xffrk&password=x", "application/x-www-form-urlencoded"),
    ("unknown charset", b"username=clerk&password=x", "application/x-www-form-urlencoded; charset=nope-42"),
    ("multipart cut short", b'--xx\r\nContent-Disposition: form-data; name="username"\r\n\r\nclerk',
     "multipart/form-data; boundary=xx"),
    ("multipart without boundary", b"abc", "multipart/form-data"),
    ("multipart part charset unknown", b'--xx\r\nContent-Disposition: form-data; name="username"\r\n'
                                       b"Content-Type: text/plain; charset=nope\r\n\r\nclerk\r\n--xx--\r\n",
     "multipart/form-data; boundary=xx"),
    ("multipart part not UTF-8", b'--xx\r\nContent-Disposition: form-data; name="username"\r\n\r\ncl\xffrk\r\n--xx--\r\n',
     "multipart/form-data; boundary=xx"),
    ("multipart part header garbage", b"--xx\r\nfoo\r\n\r\nclerk\r\n--xx--\r\n", "multipart/form-data; boundary=xx"),
]


@pytest.mark.parametrize("path", ["/console/login", "/console/logout"])
async def test_unreadable_sign_in_and_sign_out_bodies_are_a_clear_400_not_a_500(console, path) -> None:
    """Each body below made ``request.post()`` raise (UnicodeDecodeError, LookupError,
    ValueError, InvalidHeader) and the clerk got 500 INTERNAL."""
    await login_token(console)
    for name, body, ctype in UNREADABLE_FORMS:
        resp = await console.post(path, data=body, headers={"Content-Type": ctype}, allow_redirects=False)
        problem = await resp.json(content_type=None)
        assert resp.status == 400, (name, problem)
        assert problem["code"] == "BAD_REQUEST" and problem["title_zh"] == "请求格式错误。", name
        assert problem["detail"].startswith("表单内容无法读取"), name


async def test_unreadable_sign_out_body_leaves_the_session_signed_in(console) -> None:
    await sign_in(console)
    for _, body, ctype in UNREADABLE_FORMS:
        resp = await console.post("/console/logout", data=body, headers={"Content-Type": ctype}, allow_redirects=False)
        assert resp.status == 400
    assert (await console.get("/console/", allow_redirects=False)).status == 200


async def test_well_formed_multipart_sign_in_still_works(console) -> None:
    """Control: a browser form sent as multipart/form-data signs in."""
    token = await login_token(console)
    boundary = "b0undary"
    parts = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                     for k, v in (("username", "clerk"), ("password", PASSWORDS["clerk"]), ("csrf_token", token)))
    resp = await console.post("/console/login", data=parts + f"--{boundary}--\r\n".encode(),
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                              allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/"


# --- the sign-in form's CSRF token -----------------------------------------------------------
async def test_sign_in_from_the_first_of_two_open_sign_in_tabs_succeeds(console) -> None:
    """Each load of the sign-in page set a new nonce cookie, so a second tab (or a reload in
    another window) made the first tab's token wrong: the clerk got a JSON 403."""
    first_tab = await login_token(console)
    await login_token(console)  # the second tab
    resp = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                      "csrf_token": first_tab}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/"


async def test_a_sign_in_token_of_another_browser_is_still_refused(world, client_for) -> None:
    """Control: the token stays bound to the browser's own nonce cookie."""
    victim, attacker = await client_for(), await client_for()
    await login_token(victim)
    attackers_token = await login_token(attacker)
    resp = await victim.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                     "csrf_token": attackers_token}, allow_redirects=False)
    assert resp.status == 403 and (await resp.json())["code"] == "PAGE_EXPIRED"
    cross_site = await victim.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                           "csrf_token": attackers_token},
                                   headers={"Origin": "https://evil.example", "Accept": "text/html"},
                                   allow_redirects=False)
    assert cross_site.status == 403 and (await cross_site.json())["code"] == "PAGE_EXPIRED"
    assert len(victim.app[CONSOLE].sessions) == 0


async def test_stale_sign_in_page_in_a_browser_gets_the_form_again_with_a_chinese_message(console) -> None:
    """A sign-in page left open past its nonce cookie's 30 minutes (or across a gateway restart)
    answered the browser a raw JSON document saying "访问令牌无权执行该操作" (no access token
    is involved). Now the form comes back with a fresh token and a plain message."""
    token = await login_token(console)
    console.session.cookie_jar.clear()  # the nonce cookie expired
    resp = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                      "csrf_token": token},
                              headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, allow_redirects=False)
    html = await resp.text()
    assert resp.status == 403 and resp.content_type == "text/html"
    assert "登录页面已过期" in html and 'value="clerk"' in html
    assert len(console.app[CONSOLE].sessions) == 0  # nothing signed in by the stale form
    fresh = re.search(r'name="csrf_token" value="([^"]+)"', html)[1]
    again = await console.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                       "csrf_token": fresh}, allow_redirects=False)
    assert again.status == 303


# --- two scans in flight ------------------------------------------------------------------
async def test_two_scans_in_flight_at_once_get_their_own_numbers_and_cards(world, console, applicant) -> None:
    """A scanner types the second licence while the first is still being checked: both requests
    read ``len(case.presented)`` before either was added, so both became licence #1 and the
    check's per-number bookkeeping gave the revoked household register the valid ID card's
    "satisfies applicant_identity" and its disclosed fields."""
    name, code = applicant
    valid = world.simulator.issue("320500", "id_card", "valid", NOW, holder=(name, code, "111"))
    revoked = world.simulator.issue("511600", "household_register", "revoked", NOW, holder=(name, code, "111"))
    state = console.app[CONSOLE]
    real_audit = state.audit

    async def slow_audit(*args, **kw):  # an audit store taking a moment to commit, as a real one does
        await asyncio.sleep(0.05)
        if real_audit is not None:
            maybe = real_audit(*args, **kw)
            if asyncio.iscoroutine(maybe):
                await maybe

    state.audit = slow_audit
    csrf = await sign_in(console)
    case = await open_case(console, csrf, code)
    url = f"/console/api/cases/{case['id']}/licences"
    answers = await asyncio.gather(*(console.post(url, json=lic.body(), headers={"X-CSRF-Token": csrf})
                                     for lic in (valid, revoked)))
    assert [a.status for a in answers] == [200, 200]
    view = await (await console.get(f"/console/api/cases/{case['id']}")).json()
    cards = {c["n"]: c for c in view["cards"]}
    assert sorted(cards) == [1, 2]
    by_verdict = {c["verdict"]: c for c in view["cards"]}
    assert by_verdict["valid"]["satisfies"] == ["applicant_identity"] and len(by_verdict["valid"]["fields"]) == 4
    assert by_verdict["invalid"]["satisfies"] == [] and by_verdict["invalid"]["fields"] == []
    assert by_verdict["invalid"]["reasons"][0]["code"] == "LICENCE_REVOKED"
    ticked = {r["id"]: r for r in view["checklist"]}
    assert ticked["applicant_identity"]["by"] == [by_verdict["valid"]["n"]]
    assert ticked["household_register"]["satisfied"] is False


async def test_two_scans_one_after_the_other_give_two_cards(world, console, applicant) -> None:
    """Control: the same two licences scanned one after the other."""
    name, code = applicant
    valid = world.simulator.issue("320500", "id_card", "valid", NOW, holder=(name, code, "111"))
    revoked = world.simulator.issue("511600", "household_register", "revoked", NOW, holder=(name, code, "111"))
    csrf = await sign_in(console)
    case = await open_case(console, csrf, code)
    url = f"/console/api/cases/{case['id']}/licences"
    for lic in (valid, revoked):
        assert (await console.post(url, json=lic.body(), headers={"X-CSRF-Token": csrf})).status == 200
    view = await (await console.get(f"/console/api/cases/{case['id']}")).json()
    assert [(c["n"], c["verdict"], c["satisfies"]) for c in view["cards"]] == [
        (1, "valid", ["applicant_identity"]), (2, "invalid", [])]


@pytest.fixture
def applicant(world) -> tuple[str, str]:
    return world.simulator.person("320500")


# --- staff accounts ------------------------------------------------------------------------
async def test_a_password_longer_than_the_sign_in_form_reads_is_refused_when_the_account_is_added(tmp_path) -> None:
    """``staff add`` stored a 300-character password, but sign-in reads only the first 256
    characters of what is typed: that account could never sign in."""
    from gateway.console.accounts import AccountError, add_account, load_accounts, make_hasher

    store = tmp_path / "staff.json"
    with pytest.raises(AccountError, match="at most 256"):
        add_account(store, "longpass", "clerk", "HZ-02", "p" * 300, make_hasher(1, 8, 1))
    assert load_accounts(store) == {}


async def test_a_256_character_password_signs_in_through_the_form(world, client_for, tmp_path) -> None:
    """Control: the longest password the form reads works end to end."""
    from dataclasses import replace

    from gateway.console.accounts import add_account, make_hasher

    store = tmp_path / "staff.json"
    password = ("长" + "p" * 9) * 25 + "q" * 6
    assert len(password) == 256
    add_account(store, "longpass", "clerk", "HZ-02", password, make_hasher(1, 8, 1))
    client = await client_for(clock=Clock(NOW), settings=replace(world.settings, console_staff_file=str(store)))
    token = await login_token(client)
    resp = await client.post("/console/login", data={"username": "longpass", "password": password,
                                                     "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    page = await (await client.get("/console/")).text()
    assert 'id="who-user">longpass<' in page and "HZ-02" in page


# --- sign-out from a stale tab ------------------------------------------------------------
async def signed_in_twice(world, client_for) -> tuple[object, str, str]:
    """A browser whose first session ran out and which signed in again: (client, old csrf, new csrf)."""
    clock = Clock(NOW)
    client = await client_for(clock=clock)
    old = await sign_in(client)
    clock.advance(minutes=16)  # idle: the first session ends; the old tab still shows its page
    new = await sign_in(client)
    assert old != new
    return client, old, new


async def test_sign_out_from_a_tab_of_an_earlier_session_gets_a_page_not_json(world, client_for) -> None:
    """The old tab's "退出登录" carried the earlier session's token: the browser showed a raw
    JSON document "访问令牌无权执行该操作" (there is no access token). It must still not sign out
    (a token of another session proves nothing), but say why, with a working button."""
    client, old, new = await signed_in_twice(world, client_for)
    resp = await client.post("/console/logout", data={"csrf_token": old}, allow_redirects=False,
                             headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    html = await resp.text()
    assert resp.status == 403 and resp.content_type == "text/html"
    assert "已过期，未执行退出，您仍处于登录状态" in html
    assert f'name="csrf_token" value="{new}"' in html  # the current session's sign-out form
    assert (await client.get("/console/", allow_redirects=False)).status == 200  # still signed in
    out = await client.post("/console/logout", data={"csrf_token": new}, allow_redirects=False)
    assert out.status == 303 and (await client.get("/console/", allow_redirects=False)).status == 303


async def test_sign_out_with_a_forged_token_is_still_refused(world, client_for) -> None:
    """Control: without a browser's Accept, or from another origin, the refusal stays a 403 problem."""
    client, old, _ = await signed_in_twice(world, client_for)
    plain = await client.post("/console/logout", data={"csrf_token": old}, allow_redirects=False)
    assert plain.status == 403 and (await plain.json())["code"] == "PAGE_EXPIRED"
    cross = await client.post("/console/logout", data={"csrf_token": old}, allow_redirects=False,
                              headers={"Accept": "text/html", "Origin": "https://evil.example"})
    assert cross.status == 403 and (await cross.json())["code"] == "PAGE_EXPIRED"
    assert (await client.get("/console/", allow_redirects=False)).status == 200
