"""The clerk's console with the keyboard only (a keyboard-wedge scanner types the licence and Enter), on a
1366x768 screen, zoomed to 150 % and 200 %, and at 1024x768, in headless Chromium (set-up as
tests/test_console_browser.py). Session 21 found:

* on a small or zoomed screen the verdict of the licence just scanned was out of sight: below the steps
  in the one-column layout (200 %: 800 px below the scan box), or scrolled away above with the scan box
  (1366x768 in a browser window, 150 %): the newest card is now brought into sight, the focus staying in
  the scan box for the next scan;
* a scan that failed (network down, session ended, case full) said so in a line below the upload form,
  out of sight under the scan box on those screens and not tied to it: it is now brought into sight, and
  the scan box and the file input name it (``aria-describedby``);
* after "向发证地调取" with the keyboard the focus was on the page itself (the button had it and was
  disabled while the regions were asked): it is in the scan box after a fetch, on the consent box when it
  was not ticked, whose refusal the box and the button name;
* Escape in the item search showed "没有找到匹配的事项。" (and the browser emptied the box) while items
  matched: it closes the list, keeps the text, and Down opens it again;
* after a failed sign-in the cursor was in the user name the page kept, not in the password, and the
  message was tied to neither field;
* the language switch was named "切换为英文界面" while it shows "English" (a name that does not contain the
  visible label, WCAG 2.5.3): its name is what it shows, the explanation its description.

Checked and found right: the cursor starts in the user name, then in the item search; Enter submits
each step; Tab follows the page in order through every control with a visible focus ring; focus stays
in the scan box after a verdict; the next applicant is one Shift+Tab and Enter away; every control has
an accessible name; the receipt's JWS expander opens with Enter and Space; nothing overflows sideways at
any of the sizes; the verdict banners' text has at least 4.5:1 contrast (computed from the styles).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.console.i18n import t
from gateway.region_server import RegionSimulator, serve
from tests.conftest import NOW
from tests.test_console_browser import PASSWORDS, Chromium, Page, sign_in_by_keyboard
from tests.test_console_walkthrough_findings import pick_item_and_applicant
from tests.test_query_federated import citizen

#: (CSS width, CSS height, device pixels per CSS pixel): what the page gets on the clerk's screen.
#: A 1366x768 screen leaves about 1366x625 to the page under the browser's bars and the task bar.
SIZES = {
    "1366x768 window": (1366, 625, 1),
    "1366x768 at 150 %": (911, 417, 1.5),
    "1366x768 at 200 %": (683, 312, 2),
    "1024x768 window": (1024, 625, 1),
    "1024x768 at 200 %": (512, 312, 2),
}

IN_SIGHT = """(sel => { const e = document.querySelector(sel); if (!e) return false; const r = e.getBoundingClientRect();
  return r.top >= -0.5 && r.bottom <= innerHeight + 0.5 && r.height > 0; })"""  # scrolling aligns to device pixels


async def shift_tab(page: Page) -> None:
    await page.send("Input.dispatchKeyEvent", type="keyDown", key="Tab", code="Tab", windowsVirtualKeyCode=9, modifiers=8)
    await page.send("Input.dispatchKeyEvent", type="keyUp", key="Tab", code="Tab", windowsVirtualKeyCode=9, modifiers=8)


async def space(page: Page) -> None:
    await page.send("Input.dispatchKeyEvent", type="keyDown", key=" ", code="Space", windowsVirtualKeyCode=32, text=" ")
    await page.send("Input.dispatchKeyEvent", type="keyUp", key=" ", code="Space", windowsVirtualKeyCode=32)


async def resize(page: Page, width: int, height: int, scale: float) -> None:
    await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=scale,
                    mobile=False)


async def open_case(page: Page, base: str, code: str) -> None:
    """From a fresh check page: 户口迁移 by pinyin initials, the applicant, all typed; the cursor ends in the scan box."""
    await page.goto(f"{base}/console/")
    await page.wait("document.readyState === 'complete' && document.activeElement.id === 'item-search'")
    await pick_item_and_applicant(page, code)
    await page.wait("document.activeElement.id === 'scan-input'")


async def scan(page: Page, text: str, cards: int) -> None:
    await page.type(text)
    await page.enter()
    await page.wait(f"document.querySelectorAll('#cards article').length === {cards}")


async def ax_nodes(page: Page) -> list[dict[str, Any]]:
    await page.send("Accessibility.enable")
    return [n for n in (await page.send("Accessibility.getFullAXTree"))["nodes"] if not n.get("ignored")]


def ax_of(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(n for n in nodes if n.get("name", {}).get("value") == name)


async def test_after_each_scan_the_verdict_is_in_sight_at_1366x768_zoomed_and_at_1024x768(world, tmp_path: Path) -> None:
    name, code = world.simulator.person("330500")   # 湖州's licences are JSON text, as a scanner types them
    valid = world.simulator.issue("330500", "id_card", "valid", NOW, holder=(name, code, "111")).data.decode()
    revoked = world.simulator.issue("511600", "household_register", "revoked", NOW, holder=(name, code, "111")).data.decode()
    out_of_sight: dict[str, Any] = {}
    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.page()
        await sign_in_by_keyboard(page, base)
        for size, (width, height, scale) in SIZES.items():
            await resize(page, width, height, scale)
            await open_case(page, base, code)
            for n, licence in enumerate((valid, revoked), 1):
                await scan(page, licence, n)
                newest = await page.js("document.querySelector('#cards article').id")
                assert newest == f"card-{n}"
                if not await page.js(f"({IN_SIGHT})('#card-{n} h3')"):
                    out_of_sight[f"{size}, scan {n}"] = await page.js(
                        f"Math.round(document.querySelector('#card-{n} h3').getBoundingClientRect().top)")
                # ready for the next scan, and nothing wider than the window
                assert await page.focused_id() == "scan-input", size
                assert await page.js("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), size
        # the next scan still lands in the scan box, wherever the page was scrolled to
        await page.type("{")
        assert await page.js("document.getElementById('scan-input').value") == "{"
        assert page.console_errors == []
        await page.close()
    assert out_of_sight == {}, f"the new card's verdict out of sight (its top, in CSS px): {out_of_sight}"


async def test_a_failed_scan_is_said_in_sight_and_tied_to_the_scan_box(world, tmp_path: Path) -> None:
    name, code = world.simulator.person("330500")
    licence = world.simulator.issue("330500", "id_card", "valid", NOW, holder=(name, code, "111")).data.decode()
    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.page()
        await sign_in_by_keyboard(page, base)
        await resize(page, *SIZES["1366x768 at 200 %"])
        await open_case(page, base, code)
        await page.send("Network.enable")
        await page.send("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                        uploadThroughput=-1)
        await page.type(licence)
        await page.enter()
        await page.wait("document.getElementById('busy').classList.contains('bad')")
        assert await page.js("document.getElementById('busy').textContent") == t("zh", "error_network")
        assert await page.js(f"({IN_SIGHT})('#busy')"), "the scan's error is out of sight"
        assert await page.focused_id() == "scan-input"
        scan_box = next(n for n in await ax_nodes(page) if n.get("name", {}).get("value") == t("zh", "scan_label")
                        and n["role"]["value"] == "textbox")
        assert t("zh", "error_network") in scan_box.get("description", {}).get("value", "")
        assert "busy" in await page.js("document.getElementById('upload-input').getAttribute('aria-describedby') || ''")
        await page.close()


async def test_fetch_by_keyboard_leaves_the_focus_where_the_clerk_goes_next(world, tmp_path: Path) -> None:
    code = citizen(seq=511)   # an applicant from 杭州 who brought nothing (as tests/test_console_fetch_in_headless_chromium.py)
    rs = RegionSimulator(world.simulator, {t.type_code: t for t in world.catalogue.types}, lambda: NOW)
    async with serve(rs) as template:
        settings = dataclasses.replace(world.settings, upstream_base_url=template)
        async with TestServer(create_app(world.services(settings=settings)), host="127.0.0.1") as server, \
                Chromium(tmp_path / "profile") as browser:
            base = f"http://127.0.0.1:{server.port}"
            page = await browser.page()
            await sign_in_by_keyboard(page, base)
            await resize(page, *SIZES["1366x768 window"])
            await open_case(page, base, code)
            for _ in range(4):   # from the scan box: 核验, the file input, 上传并核验, 用证事由
                await page.key("Tab", 9)
            assert await page.focused_id() == "fetch-cause"
            await page.key("Tab", 9)
            await page.key("Tab", 9)
            assert await page.focused_id() == "fetch-submit"
            await page.enter()                # without the consent box ticked
            await page.wait("document.getElementById('fetch-msg').classList.contains('bad')")
            refused = await page.js("document.getElementById('fetch-msg').textContent")
            assert refused == "向发证地调取申请人的证照须经申请人同意。"
            assert await page.focused_id() == "fetch-consent"
            consent = ax_of(await ax_nodes(page), t("zh", "fetch_consent"))
            assert refused in consent.get("description", {}).get("value", "")
            await space(page)                 # tick it, on to the button, Enter
            await page.key("Tab", 9)
            await page.enter()
            await page.wait("document.querySelectorAll('#cards article').length === 2 && !document.getElementById('fetch-submit').disabled")
            assert await page.focused_id() == "scan-input"   # ready for the next scan, not lost on the page
            assert await page.js(f"({IN_SIGHT})('#cards article h3')")
            await page.close()


async def test_keyboard_only_sign_in_item_search_case_and_next_applicant(world, tmp_path: Path) -> None:
    name, code = world.simulator.person("330500")   # 湖州's licences are JSON text, as a scanner types them
    valid = world.simulator.issue("330500", "id_card", "valid", NOW, holder=(name, code, "111")).data.decode()
    other_name, other_code = world.simulator.person("330500")
    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.page()
        await resize(page, *SIZES["1366x768 window"])

        # sign-in: the cursor in the user name; a wrong password keeps the name and puts the cursor in the password
        await page.goto(f"{base}/console/")
        await page.wait("location.pathname === '/console/login' && document.activeElement.id === 'username'")
        await page.type("clerk")
        await page.key("Tab", 9)
        await page.type("not-the-password")
        await page.enter()
        await page.wait("document.readyState === 'complete' && !!document.getElementById('login-message')")
        assert await page.js("document.getElementById('username').value") == "clerk"
        assert await page.focused_id() == "password"
        for field in ("username", "password"):
            assert await page.js(f"document.getElementById('{field}').getAttribute('aria-describedby')") == "login-message"
        # the language switch is named by what it shows
        links = [n.get("name", {}).get("value") for n in await ax_nodes(page) if n["role"]["value"] == "link"]
        assert "English" in links and t("zh", "lang_switch_label") not in links, links
        await page.type(PASSWORDS["clerk"])
        await page.enter()
        await page.wait("location.pathname === '/console/' && document.readyState === 'complete' "
                        "&& document.activeElement.id === 'item-search'")

        # the item list: Escape closes it and keeps the text, Down opens it again, Enter chooses
        await page.type("hkqy")
        await page.wait("document.querySelectorAll('#item-results li[data-code]').length > 0")
        await page.key("Escape", 27)
        assert await page.js("document.getElementById('item-search').value") == "hkqy"
        assert await page.js("document.getElementById('item-results').textContent") == ""   # not "没有找到匹配的事项。"
        assert await page.js("document.getElementById('item-search').getAttribute('aria-expanded')") == "false"
        await page.key("ArrowDown", 40)
        await page.wait("document.querySelectorAll('#item-results li[data-code]').length > 0")
        await page.enter()
        await page.wait("document.activeElement.id === 'applicant-code'")
        await page.type(code)
        await page.enter()
        await page.wait("document.activeElement.id === 'scan-input' && document.getElementById('applicant-code').readOnly")
        await scan(page, valid, 1)
        assert await page.focused_id() == "scan-input"

        # Tab goes through every control in the page's order, each with a focus ring and a name
        order = []
        for _ in range(16):
            await page.key("Tab", 9)
            order.append(await page.js("""(() => { const a = document.activeElement, cs = getComputedStyle(a);
                return [a.id || a.textContent.trim(), a.matches(':focus-visible') && cs.outlineStyle !== 'none' || a === document.body]; })()"""))
            if order[-1][0] == "scan-input":
                break
        ids = [i for i, _ in order]
        assert ids == ["scan-submit", "upload-input", "upload-submit", "fetch-cause", "fetch-consent", "fetch-submit",
                       "print-receipt", ids[7], t("zh", "skip_to_main"), t("zh", "nav_check"), "logout", "lang-switch",
                       "item-change", "applicant-code", "applicant-change", "scan-input"], ids
        assert all(ring for i, ring in order), order
        nodes = await ax_nodes(page)
        unnamed = [n["role"]["value"] for n in nodes
                   if any(p["name"] == "focusable" and p["value"].get("value") for p in n.get("properties", []))
                   and n["role"]["value"] not in ("RootWebArea", "main") and not n.get("name", {}).get("value")]
        assert unnamed == []

        # the next applicant: Shift+Tab to 更换申请人, Enter
        await shift_tab(page)
        assert await page.focused_id() == "applicant-change"
        await page.enter()
        assert await page.focused_id() == "applicant-code"
        assert await page.js("document.querySelectorAll('#cards article').length") == 0
        await page.type(other_code)
        await page.enter()
        await page.wait("document.activeElement.id === 'scan-input' && document.getElementById('applicant-code').readOnly")
        # the browser's only complaint: the refused (401) sign-in
        assert len(page.console_errors) == 1 and "401" in page.console_errors[0], page.console_errors
        await page.close()


async def test_verdict_banners_text_contrast_is_at_least_4_5_to_1(world, tmp_path: Path) -> None:
    """Computed from the page's styles: each banner's text against its own background (WCAG 2 relative luminance)."""
    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        page = await browser.page()
        await sign_in_by_keyboard(page, f"http://127.0.0.1:{server.port}")
        ratios = await page.js(r"""(() => {
          const rgb = (c) => c.match(/[\d.]+/g).map(Number);
          const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
            .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
          const out = {};
          for (const [verdict, banner] of [["valid", "valid"], ["valid", "unusable"], ["invalid", "invalid"], ["indeterminate", "indeterminate"]]) {
            const card = document.createElement("article");
            card.className = "card licence verdict-" + verdict;
            card.innerHTML = `<h3 class="banner-${banner}">#1</h3>`;
            document.getElementById("cards").append(card);
            const h = card.querySelector("h3"), fg = lum(rgb(getComputedStyle(h).color)), bg = lum(rgb(getComputedStyle(h).backgroundColor));
            out[verdict + "/" + banner] = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
          }
          return out;
        })()""")
        assert set(ratios) == {"valid/valid", "valid/unusable", "invalid/invalid", "indeterminate/indeterminate"}
        assert all(r >= 4.5 for r in ratios.values()), ratios
        await page.close()
