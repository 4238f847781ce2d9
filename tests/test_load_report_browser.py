"""The report as a person sees it: headless Chromium renders it offline, the screenshot is not
blank and the chart elements exist in the DOM after load. Chromium comes from Debian
(scripts/install-chromium.sh, idempotent; run here when chromium is not yet on PATH)."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from load.cli import write_outputs
from load.peer import generate_keys, make_app, make_corpus, utc_now
from load.runner import OpenLoopConfig, run_open_loop
from load.scenarios import RequestPicker, get_scenario

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ("chart-latency-time", "chart-latency-dist", "chart-throughput-time")


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-chromium.sh")], check=True, timeout=600)
        path = shutil.which("chromium")
    assert path is not None, "scripts/install-chromium.sh did not provide chromium"
    return path


def _browser(profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-extensions", "--no-first-run",
                           "--hide-scrollbars",
                           f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=90, check=True)


def _png_pixels(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """Minimal PNG decoder (8-bit RGB/RGBA, not interlaced): width, height, channels, rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = depth = colour = interlace = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert depth == 8 and colour in (2, 6) and interlace == 0
    ch = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * ch
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, ch, rows


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
    width, height, ch, rows = _png_pixels(shot.read_bytes())
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
