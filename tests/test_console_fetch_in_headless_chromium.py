"""The clerk's fetch from the issuing region, in headless Chromium: the consent box is required, the
region's outcome is listed, the fetched licences become cards marked as fetched and tick the checklist.
(Browser set-up as tests/test_console_browser.py; the simulated regions as tests/test_query_federated.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.region_server import RegionSimulator, serve
from tests.conftest import NOW
from tests.test_console_browser import GREEN, HEIGHT, WIDTH, Chromium, colour_counts, keep, sign_in_by_keyboard
from tests.browser_support import png_pixels
from tests.test_query_federated import citizen


async def test_clerk_fetches_the_applicants_licences_from_the_home_region_in_headless_chromium(world,
                                                                                             tmp_path: Path) -> None:
    code = citizen(seq=511)   # an applicant from 杭州 who brought nothing
    rs = RegionSimulator(world.simulator, {t.type_code: t for t in world.catalogue.types}, lambda: NOW)
    async with serve(rs) as template:
        settings = dataclasses.replace(world.settings, upstream_base_url=template)
        async with TestServer(create_app(world.services(settings=settings)), host="127.0.0.1") as server, \
                Chromium(tmp_path / "profile") as browser:
            base = f"http://127.0.0.1:{server.port}"
            page = await browser.page()
            await sign_in_by_keyboard(page, base)
            await page.type("hkqy")
            await page.wait("document.querySelectorAll('#item-results li[data-code]').length > 0")
            await page.enter()
            await page.wait("document.activeElement.id === 'applicant-code'")
            # the fetch form waits for a confirmed applicant
            assert await page.js("document.getElementById('fetch-submit').disabled") is True
            await page.type(code)
            await page.enter()
            await page.wait("document.getElementById('applicant-code').readOnly")
            assert await page.js("document.getElementById('fetch-submit').disabled") is False
            assert await page.js("document.getElementById('fetch-cause').value") == "办理“户口迁移”，核验申请人证照"

            # without the consent box ticked: refused with the reason, nothing asked
            await page.js("document.getElementById('fetch-submit').click()")
            await page.wait("document.getElementById('fetch-msg').classList.contains('bad')")
            assert await page.js("document.getElementById('fetch-msg').textContent") == "向发证地调取申请人的证照须经申请人同意。"
            assert rs.stats[HOME].requests == 0

            await page.js("document.getElementById('fetch-consent').click()")
            await page.js("document.getElementById('fetch-submit').click()")
            await page.wait("document.querySelectorAll('#cards article').length === 2")
            regions = await page.js("[...document.querySelectorAll('#fetch-regions li')].map(l => "
                                    "[l.dataset.region, l.dataset.status, l.className, l.textContent])")
            assert regions == [[HOME, "ok", "ok", "杭州市（330100）：已调取，加入 2 份"]]
            sources = await page.js("[...document.querySelectorAll('#cards dd[data-source]')].map(d => d.textContent)")
            assert sources == ["发证地调取", "发证地调取"]
            checklist = await page.js("[...document.querySelectorAll('#checklist li')].map(l => l.className)")
            assert checklist == ["ok", "ok"]
            assert await page.js("document.getElementById('summary').textContent") == "材料齐全，可以受理。"
            assert code not in await page.js("document.body.innerText")
            assert rs.stats[HOME].requests == 1

            shot = await page.screenshot(tmp_path / "console-fetch-zh.png")
            assert png_pixels(shot)[:2] == (WIDTH, HEIGHT)
            assert colour_counts(shot, (GREEN,))[GREEN] > 50
            keep(tmp_path / "console-fetch-zh.png", "console-fetch-zh.png")
            # the browser's only complaint: the refused (400) fetch without consent
            assert len(page.console_errors) == 1 and "400" in page.console_errors[0], page.console_errors
            await page.close()


HOME = "330100"
