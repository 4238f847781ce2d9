"""The load tool's real-token provider: OAuth client credentials with the load partner's TEST key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from load.errors import TOKEN_UNAVAILABLE, LoadRefused
from load.tokens import DEFAULT_CLIENT_ID, oauth_token
from tests.conftest import NOW


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def _gateway(world: Any, clock: Clock | None = None) -> tuple[TestServer, list[str]]:
    """The gateway app on a loopback test server (its clock = ``clock``), counting token requests."""
    overrides = {"clock": lambda: dt.datetime.fromtimestamp(clock.t, dt.timezone.utc)} if clock else {}
    app = create_app(world.services(**overrides))
    seen: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/v1/oauth/token":
            seen.append(request.path)
        return await handler(request)

    app.middlewares.insert(0, count)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, seen


async def test_load_partner_gets_a_token_the_gateway_accepts_and_it_is_reused(world: Any) -> None:
    server, seen = await _gateway(world)
    try:
        url = str(server.make_url("")).rstrip("/")
        provide = oauth_token(url, clock=Clock(NOW.timestamp()), audience=world.settings.token_endpoint_url)
        token = await provide()
        assert await provide() == token and len(seen) == 1  # cached, not fetched again
        body = world.simulator.issue("330100", case="valid", now=NOW).body()
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/licences/verify", json=body,
                              headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200 and (await resp.json())["verdict"] == "valid"
        assert DEFAULT_CLIENT_ID == "load-partner"
    finally:
        await server.close()


async def test_token_is_renewed_before_it_expires_and_after_invalidation(world: Any) -> None:
    clock = Clock(NOW.timestamp())
    server, seen = await _gateway(world, clock)
    try:
        url = str(server.make_url("")).rstrip("/")
        provide = oauth_token(url, clock=clock, audience=world.settings.token_endpoint_url, refresh_margin_s=60)
        await provide()
        clock.t += 600 - 61  # token lifetime 600 s: still outside the margin
        await provide()
        assert len(seen) == 1
        clock.t += 2  # now inside the last minute: renewed before expiry
        await provide()
        assert len(seen) == 2
        provide.invalidate()  # type: ignore[attr-defined]  # what the runner does after a 401
        await provide()
        assert len(seen) == 3
    finally:
        await server.close()


async def test_refused_assertion_is_a_token_unavailable_refusal(world: Any) -> None:
    server, _ = await _gateway(world)
    try:
        url = str(server.make_url("")).rstrip("/")
        provide = oauth_token(url, clock=Clock(NOW.timestamp()), audience="http://wrong.example/v1/oauth/token")
        with pytest.raises(LoadRefused) as info:
            await provide()
        assert info.value.rule == TOKEN_UNAVAILABLE and "invalid_client" in str(info.value)
    finally:
        await server.close()


def test_partner_without_a_test_key_is_refused_before_any_request() -> None:
    with pytest.raises(LoadRefused) as info:
        oauth_token("http://127.0.0.1:9", client_id="no-such-partner")
    assert info.value.rule == TOKEN_UNAVAILABLE
