"""The console in headless Chromium, driven over the DevTools protocol (aiohttp websocket
client, no extra dependency): sign in, pick an item by pinyin initials, type an applicant
ID, upload a valid licence from 苏州, scan a revoked one from 广安, read the cards and the
checklist, open and print the receipt. Once in Chinese, once in English; screenshots are
taken and checked (size, verdict colours on screen) next to DOM assertions.

Chromium comes from Debian (scripts/install-chromium.sh, run by scripts/test-services.sh and
here again when chromium is missing). Set CONSOLE_SCREENSHOT_DIR to keep the screenshots
(the README's docs/console-*.png are made that way).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.console.accounts import DEMO_ACCOUNTS
from tests.browser_support import chromium_path, png_pixels
from tests.conftest import NOW

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {user: password for user, _, _, password in DEMO_ACCOUNTS}
WIDTH, HEIGHT = 1280, 1500
GREEN, RED = (0x0B, 0x6E, 0x2E), (0xA4, 0x16, 0x1A)  # console.css verdict border colours


# --- a minimal DevTools protocol client -----------------------------------------------
class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.console_errors: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console_errors.append(json.dumps(data["params"]["exceptionDetails"])[:500])
            elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                self.console_errors.append(data["params"]["entry"]["text"])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[n] = fut
        await self.ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        data = await asyncio.wait_for(fut, 30)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data["result"]

    async def js(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def wait(self, expression: str, timeout: float = 15.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                value = await self.js(expression)
            except RuntimeError as exc:   # the page navigated while the expression ran: ask the new page
                if not any(m in str(exc) for m in ("navigated or closed", "context was destroyed", "Cannot find context")):
                    raise
                value = None
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.05)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete' && location.href !== 'about:blank'")

    async def type(self, text: str) -> None:
        """What a person or a barcode scanner does: text into the focused field."""
        await self.send("Input.insertText", text=text)

    async def key(self, key: str, code: int) -> None:
        extra = {"text": "\r"} if key == "Enter" else {}
        await self.send("Input.dispatchKeyEvent", type="keyDown", key=key, code=key, windowsVirtualKeyCode=code, **extra)
        await self.send("Input.dispatchKeyEvent", type="keyUp", key=key, code=key, windowsVirtualKeyCode=code)

    async def enter(self) -> None:
        await self.key("Enter", 13)

    async def focused_id(self) -> str:
        return await self.js("document.activeElement && document.activeElement.id")

    async def set_files(self, selector: str, paths: list[str]) -> None:
        root = await self.send("DOM.getDocument")
        node = await self.send("DOM.querySelector", nodeId=root["root"]["nodeId"], selector=selector)
        await self.send("DOM.setFileInputFiles", nodeId=node["nodeId"], files=paths)

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
        path.write_bytes(data)
        return data

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


class Chromium:
    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.proc: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None
        self.port = 0

    async def __aenter__(self) -> "Chromium":
        self.proc = await asyncio.create_subprocess_exec(
            chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={self.profile}",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}",
            "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                self.port = int(port_file.read_text().split()[0])
                break
            await asyncio.sleep(0.05)
        assert self.port, "chromium did not open its DevTools port"
        self.http = aiohttp.ClientSession()
        return self

    async def targets(self) -> list[dict[str, Any]]:
        assert self.http is not None
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
            return [t for t in await resp.json() if t["type"] == "page"]

    async def attach(self, target: dict[str, Any]) -> Page:
        assert self.http is not None
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        for domain in ("Page", "Runtime", "Log", "DOM"):
            await page.send(f"{domain}.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                        mobile=False)
        return page

    async def page(self) -> Page:
        return await self.attach((await self.targets())[0])

    async def wait_target(self, url_part: str) -> dict[str, Any]:
        for _ in range(200):
            found = [t for t in await self.targets() if url_part in t["url"]]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no browser tab opened {url_part}")

    async def __aexit__(self, *exc: Any) -> None:
        if self.http is not None:
            await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# --- screenshot checks ----------------------------------------------------------------------
def colour_counts(data: bytes, colours: tuple[tuple[int, int, int], ...]) -> dict[tuple[int, int, int], int]:
    width, height, ch, rows = png_pixels(data)
    counts = dict.fromkeys(colours, 0)
    for row in rows[::2]:
        for x in range(0, width * ch, ch * 2):
            px = (row[x], row[x + 1], row[x + 2])
            if px in counts:
                counts[px] += 1
    return counts


def keep(shot: Path, name: str) -> None:
    out = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(out) / name)


async def sign_in_by_keyboard(page: "Page", base: str, user: str = "clerk") -> None:
    """Open the console, type the user's TEST credentials, and wait for the check page with the cursor in
    the item search (the tests of later features start from there)."""
    await page.goto(f"{base}/console/")
    await page.wait("document.activeElement && document.activeElement.id === 'username'")
    await page.type(user)
    await page.js("document.getElementById('password').focus()")
    await page.type(PASSWORDS[user])
    await page.enter()
    await page.wait("document.readyState === 'complete' && document.activeElement.id === 'item-search'")


# --- the scenario ---------------------------------------------------------------------------
TEXT = {
    "zh": {"valid": "核验通过：证照真实有效", "invalid": "核验未通过：证照不可采信", "advice": "证照已注销或吊销，请申请人联系发证机关。",
           "incomplete": "材料不齐全，请按清单补充。", "short": "号码位数不足。", "ok": "号码校验通过。",
           "bad": "号码校验位不正确，请核对。", "region_ok": "苏州市（320500）", "region_bad": "广安市（511600）",
           "receipt": "电子证照核验回执", "step1": "第一步：选择办理事项", "upload": "文件上传", "scan": "扫码/粘贴"},
    "en": {"valid": "Verified: the licence is genuine and in force", "invalid": "Not verified: do not accept this licence",
           "advice": "The licence is revoked: the applicant should contact the issuing authority.",
           "incomplete": "Materials are incomplete: see the checklist.", "short": "The number is too short.",
           "ok": "Check digit correct.", "bad": "The check digit is wrong: please re-check the number.",
           "region_ok": "苏州市 (320500)", "region_bad": "广安市 (511600)", "receipt": "E-licence verification receipt",
           "step1": "Step 1: choose the service item", "upload": "file upload", "scan": "scan/paste"},
}


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_clerk_flow_in_headless_chromium(world, tmp_path: Path, lang: str) -> None:
    text = TEXT[lang]
    name, code = world.simulator.person("320500")
    valid = world.simulator.issue("320500", "id_card", "valid", NOW, holder=(name, code, "111"))
    revoked = world.simulator.issue("511600", "household_register", "revoked", NOW, holder=(name, code, "111"))
    assert revoked.encoding == "utf-8"  # scanned: a scanner types text
    upload = tmp_path / "suzhou-id-card.licence"
    upload.write_bytes(valid.data)  # uploaded as a file, whatever its encoding

    async with TestServer(create_app(world.services()), host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.page()

        # sign in, keyboard only
        await page.goto(f"{base}/console/?lang={lang}")
        await page.wait("location.pathname === '/console/login' && document.activeElement.id === 'username'")
        await page.type("clerk")
        await page.key("Tab", 9)
        assert await page.focused_id() == "password"
        await page.type(PASSWORDS["clerk"])
        await page.enter()
        await page.wait("location.pathname === '/console/' && !!document.getElementById('item-search')")
        assert await page.js("document.getElementById('step-item-h').textContent") == text["step1"]

        # 1. the item, by pinyin initials, chosen with the keyboard (the page puts the cursor there)
        await page.wait("document.readyState === 'complete' && document.activeElement.id === 'item-search'")
        await page.type("hkqy")
        await page.wait("document.querySelectorAll('#item-results li[data-code]').length > 0")
        assert await page.js("document.querySelector('#item-results li').dataset.code") == "KS-076"
        await page.enter()
        await page.wait("!document.getElementById('item-chosen').hidden")
        assert await page.js("document.getElementById('item-code').textContent") == "KS-076"

        # 2. the applicant's ID, validated as typed, masked once confirmed
        assert await page.focused_id() == "applicant-code"
        await page.type(code[:10])
        assert await page.js("document.getElementById('applicant-msg').textContent") == text["short"]
        wrong = "0" if code[17] != "0" else "1"
        await page.type(code[10:17] + wrong)
        assert await page.js("document.getElementById('applicant-msg').textContent") == text["bad"]
        assert await page.js("document.getElementById('applicant-code').getAttribute('aria-invalid')") == "true"
        assert await page.js("document.getElementById('applicant-confirm').disabled") is True
        await page.key("Backspace", 8)
        await page.type(code[17])
        assert await page.js("document.getElementById('applicant-msg').textContent") == text["ok"]
        await page.enter()
        await page.wait("document.getElementById('applicant-code').readOnly")
        masked = await page.js("document.getElementById('applicant-code').value")
        assert masked == code[:4] + "*" * 10 + code[-4:]
        assert await page.focused_id() == "scan-input"  # ready for the scanner
        assert await page.js("getComputedStyle(document.getElementById('applicant-confirm')).display") == "none"

        # 3a. upload the valid 苏州 licence
        await page.set_files("#upload-input", [str(upload)])
        await page.js("document.getElementById('upload-submit').click()")
        await page.wait("document.querySelectorAll('#cards article').length === 1")
        # 3b. the scanner types the revoked 广安 licence and ends with Enter
        await page.js("document.getElementById('scan-input').focus()")
        await page.type(revoked.data.decode())
        await page.enter()
        await page.wait("document.querySelectorAll('#cards article').length === 2")

        cards = await page.js("""[...document.querySelectorAll('#cards article')].map(a => ({
            id: a.id, verdict: a.dataset.verdict, head: a.querySelector('h3').textContent,
            facts: [...a.querySelectorAll('dl.facts:not(.fields) dd')].map(d => d.textContent),
            fields: [...a.querySelectorAll('dd[data-field]')].map(d => d.dataset.field),
            reasons: [...a.querySelectorAll('.reason')].map(r => [r.dataset.reason, r.textContent])}))""")
        by_id = {c["id"]: c for c in cards}
        ok, bad = by_id["card-1"], by_id["card-2"]
        assert ok["verdict"] == "valid" and ok["head"] == "#1 " + text["valid"]
        assert ok["facts"][1:] == [text["region_ok"], valid.licence.issuer_name, text["upload"]]
        assert ok["fields"] == ["holder_name", "holder_code", "holder_code_type", "valid_until"]
        assert ok["reasons"] == []
        assert bad["verdict"] == "invalid" and bad["head"] == "#2 " + text["invalid"]
        assert bad["facts"][1:] == [text["region_bad"], revoked.licence.issuer_name, text["scan"]]
        assert bad["fields"] == []
        assert bad["reasons"][0][0] == "LICENCE_REVOKED" and text["advice"] in bad["reasons"][0][1]
        assert code not in await page.js("document.body.innerText")  # the full ID is never on screen

        checklist = await page.js("[...document.querySelectorAll('#checklist li')].map(l => [l.dataset.requirement, l.className])")
        assert checklist == [["applicant_identity", "ok"], ["household_register", "no"]]
        assert await page.js("document.getElementById('summary').textContent") == text["incomplete"]

        shot = await page.screenshot(tmp_path / f"console-check-{lang}.png")
        width, height, _, _ = png_pixels(shot)
        assert (width, height) == (WIDTH, HEIGHT)
        seen = colour_counts(shot, (GREEN, RED))
        assert seen[GREEN] > 50 and seen[RED] > 50, seen  # both verdicts visibly on screen
        keep(tmp_path / f"console-check-{lang}.png", f"console-check-{lang}.png")

        # print the receipt: the link opens a new tab
        assert await page.js("document.getElementById('print-receipt').hidden") is False
        await page.js("document.getElementById('print-receipt').focus()")
        await page.enter()
        receipt = await browser.attach(await browser.wait_target("/console/receipt/"))
        await receipt.wait("document.readyState === 'complete' && !!document.querySelector('#receipt-qr svg')")
        assert await receipt.js("document.querySelector('h1').textContent") == text["receipt"]
        assert (await receipt.js("document.getElementById('receipt-item').textContent")).startswith("KS-076")
        assert await receipt.js("[...document.querySelectorAll('#receipt-checklist li')].map(l => l.className)") == ["ok", "no"]
        jws = await receipt.js("document.getElementById('receipt-jws').textContent")
        assert jws.count(".") == 2
        qr_box = await receipt.js("(() => { const r = document.querySelector('#receipt-qr svg').getBoundingClientRect();"
                                  " return [r.width, r.height]; })()")
        assert qr_box[0] > 80 and qr_box[0] == qr_box[1]
        rshot = await receipt.screenshot(tmp_path / f"console-receipt-{lang}.png")
        assert png_pixels(rshot)[:2] == (WIDTH, HEIGHT)
        keep(tmp_path / f"console-receipt-{lang}.png", f"console-receipt-{lang}.png")
        pdf = base64.b64decode((await receipt.send("Page.printToPDF", printBackground=True))["data"])
        assert pdf[:5] == b"%PDF-" and len(pdf) > 5000
        assert page.console_errors == [] and receipt.console_errors == []
        await receipt.close()
        await page.close()


async def test_supervisor_status_page_in_headless_chromium(world, tmp_path: Path) -> None:
    import datetime as dt

    from gateway.console.routes import CONSOLE

    app = create_app(world.services())
    counters = app[CONSOLE].counters
    for minute in range(60):  # an hour of window traffic: 苏州 busy, 广安 with failures
        at = NOW - dt.timedelta(minutes=minute)
        for _ in range(1 + minute % 7):
            counters.record("320500", "valid", at)
        if minute % 3 == 0:
            counters.record("511600", "invalid", at)
    async with TestServer(app, host="127.0.0.1") as server, \
            Chromium(tmp_path / "profile") as browser:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.page()
        await page.goto(f"{base}/console/login")
        await page.wait("document.activeElement.id === 'username'")
        await page.type("supervisor")
        await page.key("Tab", 9)
        await page.type(PASSWORDS["supervisor"])
        await page.enter()
        await page.wait("location.pathname === '/console/'")
        await page.goto(f"{base}/console/status")
        rows = await page.js("document.querySelectorAll('#status-table tbody tr').length")
        sparks = await page.js("document.querySelectorAll('#status-table svg.spark polyline').length")
        assert rows == 45 and sparks == 45
        suzhou = await page.js("[...document.querySelectorAll('tr[data-region=\"320500\"] td')].map(td => td.textContent)")
        guangan = await page.js("[...document.querySelectorAll('tr[data-region=\"511600\"] td')].map(td => td.textContent)")
        assert suzhou[3:5] == [str(sum(1 + m % 7 for m in range(60))), "0%"]
        assert guangan[3:5] == ["20", "100%"]
        ys = await page.js("document.querySelector('tr[data-region=\"320500\"] polyline').getAttribute('points')")
        assert len({p.split(",")[1] for p in ys.split()}) > 1  # the sparkline is drawn, not flat
        assert await page.js("document.querySelector('nav a[aria-current=page]').getAttribute('href')") == "/console/status"
        shot = await page.screenshot(tmp_path / "console-status.png")
        assert png_pixels(shot)[:2] == (WIDTH, HEIGHT)
        keep(tmp_path / "console-status.png", "console-status.png")
        assert page.console_errors == []
        await page.close()
