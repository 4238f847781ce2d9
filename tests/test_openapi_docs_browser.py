"""/v1/docs as a person sees it: headless Chromium loads the page from the gateway (no other
host reachable is needed: the page has no external assets), runs its script, and the DOM
then holds every operation and schema of specs/openapi.yaml."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.openapi_routes import load_spec
from tests.browser_support import chromium_path

ROOT = Path(__file__).resolve().parent.parent


async def test_docs_page_renders_every_operation_and_schema_in_a_browser(world, tmp_path):
    spec = load_spec()
    server = TestServer(create_app(world.services()), host="127.0.0.1")
    await server.start_server()
    try:
        proc = await asyncio.create_subprocess_exec(
            chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-extensions", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000", "--dump-dom", str(server.make_url("/v1/docs")),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    finally:
        await server.close()
    dom = out.decode("utf-8")
    assert "<section id=\"ops\">cannot load" not in dom  # the fetch of openapi.json failed
    assert spec["info"]["title"] in dom
    operation_ids = [op["operationId"] for item in spec["paths"].values() for m, op in item.items()
                     if m in ("get", "post", "put", "patch", "delete")]
    missing = [o for o in operation_ids if f'id="op-{o}"' not in dom]
    assert missing == []
    assert 'id="schema-CheckResponse"' in dom and "items:check" in dom
