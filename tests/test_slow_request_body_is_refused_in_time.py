"""A client that starts a request body and stops sending (slowloris on the body) is answered
408 REQUEST_TIMEOUT within ``body_read_timeout_seconds``; it held its connection for good before
(aiohttp's keep-alive timer only closes connections idle between requests). A client that closes
its connection mid-body is logged as one INFO line, not as an "unhandled error" with a traceback.
Controls: the same requests with the whole body are answered."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
import types
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.app import create_app

from .conftest import NOW

TIMEOUT_S = 0.5


@pytest.fixture
async def server(world: Any) -> Any:
    """The app behind an AppRunner as ``serve`` runs it (handlers not cancelled when a client goes away;
    the test server cancels them)."""
    settings = dataclasses.replace(world.settings, body_read_timeout_seconds=TIMEOUT_S)
    runner = web.AppRunner(create_app(world.services(settings=settings)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    yield types.SimpleNamespace(host="127.0.0.1", port=sock.getsockname()[1])
    await runner.cleanup()


def verify_body(world: Any) -> bytes:
    data = world.simulator.issue("330500", "business_licence", "valid", NOW).data
    return orjson.dumps({"licence": base64.b64encode(data).decode("ascii"), "encoding": "base64"})


async def exchange(server: Any, head: bytes, body: bytes, *, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``head`` and ``body`` on a raw connection; the answer's status line and how long it took."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    t0 = time.monotonic()
    try:
        writer.write(head + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), wait)
        return line, time.monotonic() - t0
    finally:
        writer.close()


def head(path: str, length: int, token: str | None, ctype: str = "application/json") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
            f"{auth}\r\n").encode("ascii")


async def test_verify_body_that_stops_arriving_is_408_within_the_limit(world: Any, server: Any) -> None:
    body = verify_body(world)
    line, took = await exchange(server, head("/v1/licences/verify", len(body), world.token()), body[:40])
    assert line.startswith(b"HTTP/1.1 408"), line
    assert TIMEOUT_S * 0.8 <= took < TIMEOUT_S + 3.0


async def test_verify_with_the_whole_body_is_answered(world: Any, server: Any) -> None:
    body = verify_body(world)
    line, _ = await exchange(server, head("/v1/licences/verify", len(body), world.token()), body)
    assert line.startswith(b"HTTP/1.1 200"), line


async def test_token_form_that_stops_arriving_is_408_without_a_token(world: Any, server: Any) -> None:
    form = b"grant_type=client_credentials&client_assertion_type=x&client_assertion=" + b"a" * 200
    line, took = await exchange(server, head("/v1/oauth/token", len(form), None,
                                             "application/x-www-form-urlencoded"), form[:30])
    assert line.startswith(b"HTTP/1.1 408"), line
    assert took < TIMEOUT_S + 3.0


async def test_client_closing_mid_body_is_one_info_line_not_an_error(world: Any, server: Any, caplog: Any) -> None:
    body = verify_body(world)
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head("/v1/licences/verify", len(body), world.token()) + body[:40])
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await asyncio.sleep(0.3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert [r.getMessage() for r in caplog.records if "closed the connection" in r.getMessage()] == [
        "client closed the connection before its request was complete"]
