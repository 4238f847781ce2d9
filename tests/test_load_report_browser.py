"""The report as a person sees it: headless Chromium renders it offline, the screenshot is not
blank and the chart elements exist in the DOM after load. Chromium comes from Debian
(scripts/install-chromium.sh, idempotent; run here when chromium is not yet on PATH)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from load.cli import write_outputs
from load.peer import generate_keys, make_app, make_corpus, utc_now
from tests.browser_support import HEADLESS_FLAGS, chromium_path, png_pixels
from load.runner import OpenLoopConfig, run_open_loop
from load.scenarios import RequestPicker, get_scenario

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ("chart-latency-time", "chart-latency-dist", "chart-throughput-time")


def _browser(profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([chromium_path(), *HEADLESS_FLAGS,
                           f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=90, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = generate_keys()
    corpus = make_corpus(keys, 20, utc_now())

    async def go() -> dict[str, Any]:
        async with TestServer(make_app(keys.public_key), host="127.0.0.1") as server:
            cfg = OpenLoopConfig(target=f"http://127.0.0.1:{server.port}", scenario=get_scenario("smoke"),
                                 rate=60.0, duration_s=1.0, arrivals="poisson")
            return await run_open_loop(cfg, RequestPicker.build(get_scenario("smoke"), corpus, 1), progress=None)

    out = tmp_path_factory.mktemp("browser")
    _, html_path = write_outputs(asyncio.run(go()), out)
    return html_path


def test_report_screenshot_in_headless_chromium_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _browser(tmp_path / "profile", "--window-size=900,1400", f"--screenshot={shot}", report.as_uri())
    width, height, ch, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (900, 1400)
    colours: set[bytes] = set()
    ink = 0
    for row in rows[::4]:
        for x in range(0, width * ch, ch * 4):
            px = row[x:x + 3]
            colours.add(px)
            ink += px != b"\xff\xff\xff"
    assert ink > 0.02 * (width // 4) * (height // 4)   # text, axes and lines cover more than 2%
    assert len(colours) > 20                           # anti-aliased text and coloured series


def test_report_dom_after_load_has_the_chart_elements(report: Path, tmp_path: Path) -> None:
    dom = _browser(tmp_path / "profile", "--dump-dom", report.as_uri()).stdout.decode("utf-8")
    for chart in CHARTS:
        assert f'id="{chart}"' in dom
    assert 'id="chart-latency-time-p99"' in dom and "<polyline" in dom
