"""The token endpoint's 429 says when the partner may really try again.

Before: a partner holding its share of unexpired client assertions
(:data:`gateway.auth.tokens.MAX_REPLAY_ENTRIES_PER_CLIENT`) was answered 429 ``temporarily_unavailable``
with ``Retry-After: 60`` whatever it held: its oldest assertion may be remembered up to 360 s (``exp`` at most
330 s ahead, plus the 30 s leeway), so a partner obeying the header was refused again, up to five times; or
it was told to wait 60 s for a slot given back in one. The same for a replay cache full of every partner's
assertions. Now both replay stores -- :class:`~gateway.auth.tokens.ReplayCache` (one worker) and
:class:`~gateway.auth.shared.SharedReplayCache` (``serve --workers N``) -- name the seconds until the
partner's oldest held assertion is forgotten (for a full cache: the oldest of all), rounded up, at least 1,
and the 429 carries them in ``Retry-After`` (the RFC 6749 error body has no such field).

The other 429 of the API -- a partner over its rate (RATE_LIMITED) -- already said the truth: checked here
for the per-process and the shared limiter (no change).

Explicit clocks throughout (the token service's wall clock, the limiter's monotonic one); no sleep.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import TOKEN_SERVICE, OAuthError, RateLimiter, ReplayCache, TokenService, token_request_form
from gateway.auth.shared import SharedRateLimiter, SharedReplayCache, create_rate_segment

from .test_auth_http import bearer, clock, get_token, mono  # noqa: F401  (fixtures)
from .test_auth_support import ENDPOINT, NOW, FakeClock, assertion, build_app, gateway_key, registry

LEEWAY_S = 30  # TokenService's default: an assertion is remembered until exp + 30 s


@pytest.fixture(params=["in-memory", "shared"])
def store(request: Any, tmp_path: Path) -> Any:
    """A maker of either replay store, each with small bounds."""
    def make(max_entries: int = 100, max_per_client: int = 2) -> Any:
        if request.param == "in-memory":
            return ReplayCache(max_entries=max_entries, max_per_client=max_per_client)
        return SharedReplayCache(tmp_path / "auth-replay.sqlite3", max_entries=max_entries,
                                 max_per_client=max_per_client)
    return make


def refused(cache: Any, client_id: str, jti: str, expires_at: float, now: float) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        cache.add(client_id, jti, expires_at, now)
    assert (info.value.error, info.value.status) == ("temporarily_unavailable", 429)
    return info.value


# --- the replay stores ---------------------------------------------------------------------------

def test_a_partner_past_its_share_is_told_when_its_oldest_assertion_expires(store: Any) -> None:
    cache = store()
    assert cache.add("q", "old", 50.0, 0.0)             # another partner's older entry does not count
    assert cache.add("p", "late", 250.0, 0.0)           # held first, expires last
    assert cache.add("p", "early", 120.0, 0.0)          # p's oldest: forgotten at 120
    share = refused(cache, "p", "3", 400.0, 10.0)
    assert share.headers["Retry-After"] == "110"        # before: "60" (and refused again at 70)
    assert "holds 2 unexpired client assertions" in share.detail
    assert refused(cache, "p", "3", 400.0, 100.0).headers["Retry-After"] == "20"
    assert refused(cache, "p", "3", 400.0, 119.2).headers["Retry-After"] == "1"    # 0.8 s, rounded up
    assert cache.add("p", "3", 400.0, 120.0)            # exactly then: served
    assert refused(cache, "p", "4", 400.0, 120.0).headers["Retry-After"] == "130"  # now "late" is the oldest


def test_a_full_replay_cache_is_told_when_the_oldest_of_all_expires(store: Any) -> None:
    cache = store(max_entries=3, max_per_client=2)
    assert cache.add("a", "1", 300.0, 0.0) and cache.add("b", "1", 90.5, 0.0) and cache.add("c", "1", 200.0, 0.0)
    full = refused(cache, "d", "1", 300.0, 40.0)
    assert (full.detail, full.headers["Retry-After"]) == ("replay cache full", "51")   # 50.5 s, rounded up
    assert cache.add("d", "1", 300.0, 90.5)


def test_the_token_endpoint_429_names_the_partners_oldest_assertion(store: Any) -> None:
    service = TokenService(registry(), gateway_key(), token_endpoint=ENDPOINT, replay_cache=store())
    for lifetime_s in (300, 120):                       # remembered until NOW+330 and NOW+150
        assert service.issue(token_request_form(assertion(now=NOW, lifetime_s=lifetime_s)), NOW)["access_token"]
    with pytest.raises(OAuthError) as info:
        service.issue(token_request_form(assertion(now=NOW + 20)), NOW + 20)
    assert (info.value.status, info.value.headers["Retry-After"]) == (429, str(120 + LEEWAY_S - 20))
    # the partner waits exactly that long and is served
    later = NOW + 20 + int(info.value.headers["Retry-After"])
    assert service.issue(token_request_form(assertion(now=later)), later)["access_token"]


async def test_over_http_the_retry_after_is_obeyed_and_served(aiohttp_client: Any, clock: FakeClock,  # noqa: F811
                                                              mono: FakeClock, store: Any) -> None:  # noqa: F811
    client = await aiohttp_client(build_app(clock, mono))
    client.server.app[TOKEN_SERVICE].replay_cache = store()
    await get_token(client, lifetime_s=100)             # remembered until NOW+130
    clock.now = NOW + 5
    await get_token(client, now=clock.now, lifetime_s=300)
    clock.now = NOW + 30
    answer = await client.post("/v1/oauth/token", data=token_request_form(assertion(now=clock.now)))
    assert answer.status == 429 and answer.headers["Retry-After"] == "100"  # 130 - 30 (before: "60")
    assert (await answer.json())["error"] == "temporarily_unavailable"
    clock.now = NOW + 129.5
    early = await client.post("/v1/oauth/token", data=token_request_form(assertion(now=clock.now)))
    assert early.status == 429 and early.headers["Retry-After"] == "1"
    clock.now = NOW + 130
    await get_token(client, now=clock.now)             # 120 s: forgotten at NOW+280, before the one of NOW+335
    again = await client.post("/v1/oauth/token", data=token_request_form(assertion(now=clock.now)))
    assert again.status == 429 and again.headers["Retry-After"] == str(120 + LEEWAY_S)


# --- the other 429: a partner over its rate (no change; checked) -------------------------------

@pytest.fixture(params=["in-memory", "shared"])
def limiter(request: Any) -> Any:
    if request.param == "in-memory":
        yield RateLimiter()
        return
    shm = create_rate_segment()
    shared = SharedRateLimiter(shm.name, mp.get_context("spawn").Lock(), 2)
    try:
        yield shared
    finally:
        shared.close()
        shm.close()
        shm.unlink()


@pytest.mark.parametrize("rate, burst, spacing", [(2.0, 3, 0.0), (0.25, 1, 0.0), (0.3, 2, 0.7), (7.0, 5, 0.05),
                                                  (0.04, 2, 1.3)])
def test_rate_limit_retry_after_is_the_first_whole_second_a_request_is_served(
        limiter: Any, rate: float, burst: int, spacing: float) -> None:
    now = 1000.0
    while (decision := limiter.check("p", rate, burst, now)).allowed:
        now += spacing
    wait = decision.retry_after_s
    assert wait >= 1
    if wait > 1:
        assert not limiter.check("p", rate, burst, now + wait - 1).allowed    # not one second sooner ...
    assert limiter.check("p", rate, burst, now + wait).allowed                # ... and served then


async def test_rate_limited_answer_over_http_is_obeyed_and_served(aiohttp_client: Any, clock: FakeClock,  # noqa: F811
                                                                  mono: FakeClock) -> None:  # noqa: F811
    client = await aiohttp_client(build_app(clock, mono))
    token = await get_token(client, "restricted-partner")                     # 2 requests/s, burst 3
    for _ in range(3):
        assert (await client.get("/v1/items", headers=bearer(token))).status == 200
    limited = await client.get("/v1/items", headers=bearer(token))
    assert limited.status == 429 and (await limited.json())["code"] == "RATE_LIMITED"
    mono.now += int(limited.headers["Retry-After"])
    assert (await client.get("/v1/items", headers=bearer(token))).status == 200
