"""Findings of a clerk's walk through the console (Chinese first) in headless Chromium, session 20:

* with no answer at all from the gateway (network down, gateway stopped) the page showed the browser's
  own English "Failed to fetch" in the Chinese console; it now says what happened in the clerk's language,
  and the item search's hint, replaced by such an error, comes back once the search works again;
* the printed receipt's 核验时间 was the raw UTC ISO string with microseconds (8 hours behind the window's
  clock): it is Beijing time to the second, saying so;
* a receipt link that no longer leads to a case of this sign-in (after signing out or a restart, another
  session's) showed a JSON problem document in the browser: it is a page saying why, still 404;
* another person's genuine licence (or one of a type the item does not take) greeted the clerk with the
  same green "核验通过：证照真实有效" banner as one that counts, its reason only below: its banner now says it
  cannot be used for this application, in amber;
* the scan box was emptied before the gateway answered, so a pasted licence was lost when the request
  failed: it is emptied once the licence has been judged;
* after a gateway restart the sign-in page said the clerk had been signed out for inactivity: it names
  both causes;
* switching language in the middle of a case emptied the page (the case and its receipt out of reach);
* a licence file pasted as base64 into the scan box was refused as an unsupported format;
* the cards were a live region re-drawn on every scan: a screen reader read every card again.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.console.i18n import t
from tests.conftest import NOW
from tests.test_console_browser import Chromium, Page, sign_in_by_keyboard
from tests.test_console_http import Clock, add, open_case, sign_in


async def open_case_by_keyboard(browser: Chromium, server: TestServer, code: str):
    """A clerk signs in, picks 户口迁移 (typed ``hkqy``) and confirms the applicant ``code``: the page."""
    page = await browser.page()
    await sign_in_by_keyboard(page, f"http://127.0.0.1:{server.port}")
    await pick_item_and_applicant(page, code)
    return page


async def pick_item_and_applicant(page: Page, code: str) -> None:
    """With the cursor in the item search: 户口迁移 by its pinyin initials, Enter, the applicant ``code``,
    Enter; returns once the applicant is confirmed (read-only)."""
    await page.type("hkqy")
    await page.wait("document.querySelectorAll('#item-results li[data-code]').length > 0")
    await page.enter()
    await page.wait("document.activeElement.id === 'applicant-code'")
    await page.type(code)
    await page.enter()
    await page.wait("document.getElementById('applicant-code').readOnly")


async def test_no_answer_from_the_gateway_is_told_in_chinese_not_as_failed_to_fetch(world, tmp_path: Path) -> None:
    name, code = world.simulator.person("330500")
    licence = world.simulator.issue("330500", "id_card", "valid", NOW, holder=(name, code, "111"))
    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        page = await open_case_by_keyboard(browser, server, code)

        await page.send("Network.enable")
        await page.send("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                        uploadThroughput=-1)
        await page.js("document.getElementById('scan-input').focus()")
        await page.type(licence.data.decode())
        await page.enter()
        await page.wait("document.getElementById('busy').classList.contains('bad')")
        assert await page.js("document.getElementById('busy').textContent") == t("zh", "error_network")
        # the pasted licence is still there to send again once the network is back
        assert await page.js("document.getElementById('scan-input').value") == licence.data.decode()

        await page.js("document.getElementById('fetch-consent').click()")
        await page.js("document.getElementById('fetch-submit').click()")
        await page.wait("document.getElementById('fetch-msg').classList.contains('bad')")
        assert await page.js("document.getElementById('fetch-msg').textContent") == t("zh", "error_network")

        await page.js("document.getElementById('item-change').click()")
        await page.type("hkqy")
        await page.wait(f"document.getElementById('item-search-hint').textContent === {t('zh', 'error_network')!r}")
        assert "Failed to fetch" not in await page.js("document.body.innerText")

        # the network is back: the search works and its hint is the hint again
        await page.send("Network.emulateNetworkConditions", offline=False, latency=0, downloadThroughput=-1,
                        uploadThroughput=-1)
        await page.js("document.getElementById('item-search').value = ''")
        await page.type("hkqy")
        await page.wait("document.querySelectorAll('#item-results li[data-code]').length > 0")
        await page.wait(f"document.getElementById('item-search-hint').textContent === {t('zh', 'item_search_hint')!r}")
        await page.close()


async def test_receipt_time_is_beijing_time_not_raw_utc(world, client_for) -> None:
    name, code = world.simulator.person("320500")
    valid = world.simulator.issue("320500", "id_card", "valid", NOW, holder=(name, code, "111"))
    for lang, expected in (("zh", "2026-11-27 12:00:00（北京时间）"), ("en", "2026-11-27 12:00:00 (Beijing time, UTC+8)")):
        client = await client_for(clock=Clock(NOW))  # NOW is 04:00 UTC: 12:00 at the window
        csrf = await sign_in(client)
        case = await open_case(client, csrf, code)
        await add(client, csrf, case["id"], valid.body())
        html = await (await client.get(f"/console/receipt/{case['id']}?lang={lang}")).text()
        shown = re.search(rf'<dt>{t(lang, "receipt_time")}</dt><dd[^>]*>([^<]*)<', html)[1]
        assert shown == expected
        assert "2026-11-27T04:00:00" not in html


async def test_a_receipt_link_without_its_case_is_a_page_not_a_json_document(world, client_for) -> None:
    client = await client_for()
    await sign_in(client)
    resp = await client.get("/console/receipt/no-such-case")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("text/html")
    html = await resp.text()
    assert t("zh", "receipt_not_found") in html and 'id="logout"' in html
    assert "urn:elicence-gateway:problem" not in html


async def test_another_persons_genuine_licence_is_not_greeted_as_usable(world, client_for) -> None:
    name, code = world.simulator.person("320500")
    mine = world.simulator.issue("320500", "id_card", "valid", NOW, holder=(name, code, "111"))
    other = world.simulator.issue("320500", "id_card", "valid", NOW)
    client = await client_for(clock=Clock(NOW))
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code)
    await add(client, csrf, case["id"], other.body())
    view = await add(client, csrf, case["id"], mine.body())
    theirs, own = view["cards"]
    assert theirs["verdict"] == "valid" and theirs["reasons"][0]["code"] == "HOLDER_MISMATCH"
    assert theirs["banner"] == "unusable" and theirs["verdict_text"] == t("zh", "verdict_unusable")
    assert own["banner"] == "valid" and own["verdict_text"] == t("zh", "verdict_valid")
    html = await (await client.get(f"/console/receipt/{case['id']}")).text()
    assert html.count(t("zh", "verdict_unusable")) == 1 and html.count(t("zh", "verdict_valid")) == 1


async def test_the_sign_in_page_after_a_lost_session_does_not_blame_the_clerk_for_idling(client_for) -> None:
    client = await client_for()
    html = await (await client.get("/console/login?expired=1")).text()
    assert t("zh", "session_expired") in html and "服务已重启" in html
    html = await (await client.get("/console/login?expired=1&lang=en")).text()
    assert "gateway restart" in html


async def test_chinese_pages_use_full_width_punctuation_and_english_ones_ascii(world, client_for) -> None:
    name, code = world.simulator.person("320500")
    valid = world.simulator.issue("320500", "id_card", "valid", NOW, holder=(name, code, "111"))
    client = await client_for(clock=Clock(NOW))
    csrf = await sign_in(client)
    case = await open_case(client, csrf, code)
    await add(client, csrf, case["id"], valid.body())
    zh = await (await client.get(f"/console/receipt/{case['id']}")).text()
    assert "当前用户：" in zh and "核验结果摘要（SHA-256）：" in zh and "（必需）" in zh
    assert not re.search(r"[\u4e00-\u9fff）]: ", zh) and " (必需)" not in zh
    en = await (await client.get(f"/console/receipt/{case['id']}?lang=en")).text()
    assert "Result digest (SHA-256): " in en and " (required)" in en and "：" not in en


async def test_switching_language_mid_case_keeps_the_case(world, tmp_path: Path) -> None:
    name, code = world.simulator.person("330500")
    licence = world.simulator.issue("330500", "id_card", "valid", NOW, holder=(name, code, "111"))
    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        page = await open_case_by_keyboard(browser, server, code)
        await page.js("document.getElementById('scan-input').focus()")
        await page.type(licence.data.decode())
        await page.enter()
        await page.wait("document.querySelectorAll('#cards article').length === 1")
        item_code = await page.js("document.getElementById('item-code').textContent")

        await page.js("document.getElementById('lang-switch').click()")
        await page.wait("(document.documentElement || {}).lang === 'en' && document.querySelectorAll('#cards article').length === 1")
        assert await page.js("document.getElementById('item-code').textContent") == item_code
        assert await page.js("document.getElementById('applicant-code').value") == code[:4] + "*" * 10 + code[-4:]
        assert await page.js("document.getElementById('card-h-1').textContent") == "#1 " + t("en", "verdict_valid")
        assert not await page.js("document.getElementById('print-receipt').hidden")
        assert await page.js("location.hash") == ""   # the case id does not stay in the address
        # and back: the switch link carries the case again
        await page.js("document.getElementById('lang-switch').click()")
        await page.wait("(document.documentElement || {}).lang === 'zh-CN' && document.querySelectorAll('#cards article').length === 1")
        await page.close()


async def test_an_ofd_licence_pasted_as_base64_is_verified_not_refused_as_an_unknown_format(world, tmp_path: Path) -> None:
    import base64

    name, code = world.simulator.person("310000")
    ofd = world.simulator.issue("310000", "id_card", "valid", NOW, holder=(name, code, "111"))
    assert ofd.data[:2] == b"PK"   # an OFD package: bytes, not text
    wrapped = base64.encodebytes(ofd.data).decode()   # as a base64 tool prints it: 76-character lines
    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        page = await open_case_by_keyboard(browser, server, code)
        await page.js(f"document.getElementById('scan-input').value = {wrapped!r}")
        await page.js("document.getElementById('scan-form').requestSubmit()")
        await page.wait("document.querySelectorAll('#cards article').length === 1")
        assert await page.js("document.getElementById('card-1').dataset.verdict") == "valid"
        assert await page.js("document.getElementById('scan-input').value") == ""
        # a screen reader hears the new card's verdict, not every card again (#cards is not a live region)
        assert await page.js("document.getElementById('cards').getAttribute('aria-live')") is None
        assert await page.js("document.getElementById('card-news').getAttribute('aria-live')") == "polite"
        assert await page.js("document.getElementById('card-news').textContent") == "#1 " + t("zh", "verdict_valid")
        await page.close()
