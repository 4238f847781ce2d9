"""Unit tests of the upstream pieces: breaker state machine (injected clock), backoff, routing,
the pool's deadline / concurrency limit / retries with fake clients, signatures, XML safety."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.specs import load_regions
from gateway.upstream import (BreakerPolicy, BreakerState, CircuitBreaker, HolderQuery, ResiliencePolicy,
                              RetryPolicy, UpstreamConfig, UpstreamFailure, Upstreams, backoff)
from gateway.upstream.clients import parse_xml_answer
from gateway.upstream.config import HMAC_JSON, credentials_for_test_region
from gateway.upstream.routing import home_region, route
from gateway.upstream.signing import HMAC_SM3, SM2_SM3, check_signature, app_secret_for_test_region, client_sm2_key_for_tests

POLICY = BreakerPolicy(window_s=10, min_requests=4, error_rate=0.5, cool_down_s=5)


def breaker_after(outcomes: list[bool], t0: float = 0.0) -> CircuitBreaker:
    b = CircuitBreaker(POLICY)
    for i, ok in enumerate(outcomes):
        assert b.allow(t0 + i * 0.1)
        b.record(ok, t0 + i * 0.1)
    return b


def test_breaker_stays_closed_below_the_minimum_number_of_requests():
    assert breaker_after([False, False, False]).current(1.0) is BreakerState.CLOSED


def test_breaker_opens_when_the_error_rate_reaches_the_threshold():
    b = breaker_after([True, True, False, False])
    assert b.current(0.5) is BreakerState.OPEN and not b.allow(0.5)


def test_breaker_ignores_failures_older_than_the_window():
    b = CircuitBreaker(POLICY)
    for t in (0.0, 0.1, 0.2):
        b.record(False, t)
    for t in (20.0, 20.1, 20.2):  # the old failures have left the window
        b.record(True, t)
    b.record(False, 20.3)
    assert b.current(20.4) is BreakerState.CLOSED


def test_breaker_half_opens_after_the_cool_down_and_lets_exactly_one_probe_through():
    b = breaker_after([False] * 4)
    opened = b.opened_at
    assert not b.allow(opened + 4.9)
    assert b.allow(opened + 5.0)          # the probe
    assert not b.allow(opened + 5.1)      # a second caller while the probe is out
    assert b.current(opened + 5.1) is BreakerState.HALF_OPEN


def test_successful_probe_closes_the_breaker_and_forgets_the_window():
    b = breaker_after([False] * 4)
    t = b.opened_at + 5
    assert b.allow(t)
    b.record(True, t)
    assert b.current(t) is BreakerState.CLOSED
    b.record(False, t + 0.1)  # one failure after closing does not reopen it
    assert b.current(t + 0.2) is BreakerState.CLOSED


def test_failed_probe_reopens_for_another_cool_down():
    b = breaker_after([False] * 4)
    t = b.opened_at + 5
    assert b.allow(t)
    b.record(False, t)
    assert b.current(t + 4.9) is BreakerState.OPEN and b.opened_count == 2
    assert b.allow(t + 5)


def test_abandoned_probe_frees_the_slot():
    b = breaker_after([False] * 4)
    t = b.opened_at + 5
    assert b.allow(t)
    b.abandon()
    assert b.allow(t + 0.1)


@pytest.mark.parametrize("bad", [dict(window_s=0), dict(min_requests=0), dict(error_rate=0), dict(error_rate=1.5)])
def test_breaker_policy_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        BreakerPolicy(**bad)


def test_backoff_is_jittered_within_a_doubling_capped_ceiling():
    policy = RetryPolicy(retries=5, base_s=0.1, cap_s=0.3)
    rng = random.Random(1)
    for n, ceiling in ((1, 0.1), (2, 0.2), (3, 0.3), (5, 0.3)):
        delays = [backoff(policy, n, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays) and max(delays) > ceiling * 0.8 and len(set(delays)) > 100


REGIONS = tuple(load_regions())


def test_route_home_region_from_a_citizen_id_district():
    from gateway.identifiers import citizen_id_check
    code = "33050219850612123" + citizen_id_check("33050219850612123")
    assert home_region("111", code, REGIONS) == "330500"
    assert route("111", code, False, ("310000", "330500"), None, REGIONS) == ("330500", "310000")
    assert route("111", code, True, (), None, REGIONS) == ("330500",)
    assert route("111", code, True, (), ["320100", "320100"], REGIONS) == ("320100",)
    wrong_check = code[:17] + ("0" if code[17] != "0" else "1")
    assert home_region("111", wrong_check, REGIONS) is None


def test_route_uses_the_uscc_registration_division():
    from gateway.identifiers import make_uscc
    assert home_region("001", make_uscc("9", "1", "310115", "12345678"), REGIONS) == "310000"


def test_passport_holder_has_no_home_region():
    assert route("414", "E12345678", True, (), None, REGIONS) == ()


# --- pool with fake clients -------------------------------------------------------------------
class FakeClient:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls = 0

    async def query(self, session, q, budget_ms, max_bytes):
        self.calls += 1
        return await self.behaviour(self.calls, budget_ms)


def config(region: str, concurrency: int = 2, timeout_s: float = 5.0) -> UpstreamConfig:
    return UpstreamConfig(region, HMAC_JSON, "http://127.0.0.1:9/r/" + region, credentials_for_test_region(region, HMAC_JSON),
                          timeout_s, concurrency)


async def hang(calls, budget_ms):
    await asyncio.sleep(3600)


async def one_licence(calls, budget_ms):
    return [b"licence"]


async def make_pool(clients: dict, **policy) -> Upstreams:
    pool = Upstreams({r: config(r) for r in clients}, ResiliencePolicy(**policy), clients=clients)
    await pool.open()
    return pool


Q = HolderQuery("111", "330102198506121234", None, ("t",))


async def test_a_full_region_does_not_slow_another_region():
    slow, fast = FakeClient(hang), FakeClient(one_licence)
    pool = await make_pool({"340100": slow, "330100": fast})
    loop = asyncio.get_running_loop()
    try:
        stuck = [asyncio.create_task(pool.fetch("340100", Q, loop.time() + 5)) for _ in range(2)]
        await asyncio.sleep(0.01)
        t0 = loop.time()
        queued = await pool.fetch("340100", Q, loop.time() + 0.2)  # no free slot before its deadline
        assert queued.outcome == "timeout" and "slot" in queued.detail and slow.calls == 2
        assert 0.18 <= loop.time() - t0 < 0.4
        t1 = loop.time()
        assert (await pool.fetch("330100", Q, loop.time() + 5)).outcome == "ok"
        assert loop.time() - t1 < 0.05
        assert pool.counters["340100"].in_flight == 2
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        assert pool.counters["340100"].in_flight == 0
    finally:
        await pool.close()


async def test_attempt_timeout_is_capped_by_the_deadline_and_counts_as_failure():
    pool = await make_pool({"330100": FakeClient(hang)})
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        result = await pool.fetch("330100", Q, loop.time() + 0.15)
        assert result.outcome == "timeout" and loop.time() - t0 < 0.3
        assert pool.breakers["330100"].snapshot(pool.clock())["window_failures"] == 1
    finally:
        await pool.close()


async def test_only_safe_failures_are_retried():
    async def refused_twice(calls, budget_ms):
        if calls <= 2:
            raise UpstreamFailure("refused", safe=True)
        return [b"x"]

    async def server_error(calls, budget_ms):
        raise UpstreamFailure("HTTP 500")

    ok, bad = FakeClient(refused_twice), FakeClient(server_error)
    pool = await make_pool({"330100": ok, "320100": bad}, retry=RetryPolicy(retries=2, base_s=0.001, cap_s=0.002))
    loop = asyncio.get_running_loop()
    try:
        first = await pool.fetch("330100", Q, loop.time() + 1)
        assert first.outcome == "ok" and first.attempts == 3 and pool.counters["330100"].retries == 2
        second = await pool.fetch("320100", Q, loop.time() + 1)
        assert second.outcome == "error" and second.attempts == 1 and bad.calls == 1
    finally:
        await pool.close()


async def test_retries_stop_at_the_bound():
    async def always_refused(calls, budget_ms):
        raise UpstreamFailure("refused", safe=True)

    client = FakeClient(always_refused)
    pool = await make_pool({"330100": client}, retry=RetryPolicy(retries=2, base_s=0.001, cap_s=0.002))
    try:
        result = await pool.fetch("330100", Q, asyncio.get_running_loop().time() + 1)
        assert result.outcome == "error" and client.calls == 3
    finally:
        await pool.close()


async def test_open_circuit_answers_without_calling_the_region():
    async def fail(calls, budget_ms):
        raise UpstreamFailure("HTTP 500")

    client = FakeClient(fail)
    pool = await make_pool({"330100": client}, breaker=BreakerPolicy(min_requests=2, error_rate=0.5, cool_down_s=60))
    loop = asyncio.get_running_loop()
    try:
        for _ in range(2):
            await pool.fetch("330100", Q, loop.time() + 1)
        result = await pool.fetch("330100", Q, loop.time() + 1)
        assert result.outcome == "circuit_open" and client.calls == 2
        assert pool.counters["330100"].outcomes["circuit_open"] == 1
    finally:
        await pool.close()


async def test_unconfigured_region_is_an_error_not_a_crash():
    pool = await make_pool({"330100": FakeClient(one_licence)})
    try:
        result = await pool.fetch("999999", Q, asyncio.get_running_loop().time() + 1)
        assert result.outcome == "error" and "configured" in result.detail
    finally:
        await pool.close()


# --- signatures and XML -------------------------------------------------------------------------
def test_hmac_signature_verifies_and_rejects_a_changed_body():
    creds = credentials_for_test_region("330100", HMAC_JSON)
    headers = creds.sign("POST", "/r/330100/q", "1700000000", "n1", b'{"a":1}')
    assert headers["X-Signature-Method"] == HMAC_SM3
    assert check_signature(headers, "POST", "/r/330100/q", b'{"a":1}', secret=app_secret_for_test_region("330100"),
                           sm2_public=None)
    assert not check_signature(headers, "POST", "/r/330100/q", b'{"a":2}', secret=app_secret_for_test_region("330100"),
                               sm2_public=None)
    assert not check_signature(headers, "POST", "/r/330100/q", b'{"a":1}', secret=app_secret_for_test_region("330500"),
                               sm2_public=None)


def test_sm2_request_signature_verifies_with_the_clients_public_key():
    creds = credentials_for_test_region("320100", "sm2-json")
    headers = creds.sign("POST", "/p", "1", "n", b"body")
    assert headers["X-Signature-Method"] == SM2_SM3
    pub = client_sm2_key_for_tests().public_key()
    assert check_signature(headers, "POST", "/p", b"body", secret=None, sm2_public=pub)
    assert not check_signature(headers, "POST", "/other", b"body", secret=None, sm2_public=pub)


def test_xml_answer_with_entity_expansion_is_refused():
    billion_laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                      b"<QueryResponse><ResultCode>0</ResultCode><Licences>&b;</Licences></QueryResponse>")
    with pytest.raises(UpstreamFailure, match="DTD"):
        parse_xml_answer(billion_laughs)


def test_xml_answer_with_a_region_error_code_is_an_error():
    with pytest.raises(UpstreamFailure, match="result code"):
        parse_xml_answer(b"<QueryResponse><ResultCode>E101</ResultCode></QueryResponse>")
    assert parse_xml_answer(b'<QueryResponse><ResultCode>0</ResultCode><Licences><Licence encoding="utf-8">'
                            b"abc</Licence></Licences></QueryResponse>") == [b"abc"]


@pytest.mark.parametrize("encoding", ["TF-8", "rot13", "UTF-32", "idna", "x-user-defined"])
def test_xml_answer_declaring_an_unreadable_encoding_is_an_upstream_failure(encoding):
    """Before session 16 ElementTree's LookupError / ValueError escaped as a crash of the query."""
    answer = (f'<?xml version="1.0" encoding="{encoding}"?><QueryResponse><ResultCode>0</ResultCode>'
              "<Licences></Licences></QueryResponse>").encode("ascii")
    with pytest.raises(UpstreamFailure, match="encoding"):
        parse_xml_answer(answer)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_xml_answer_in_utf16_or_utf32_cannot_smuggle_a_dtd_past_the_dtd_check(codec):
    """In UTF-16 the bytes of "<!DOCTYPE" are not b"<!DOCTYPE": the byte search missed it, and expat
    would read the DTD (a billion-laughs subset costs CPU before expat's own limit stops it)."""
    laughs = ('<?xml version="1.0" encoding="%s"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
              '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
              "<QueryResponse><ResultCode>0</ResultCode><Licences>&b;</Licences></QueryResponse>" % codec.upper())
    raw = laughs.encode(codec)
    assert b"<!DOCTYPE" not in raw
    with pytest.raises(UpstreamFailure, match="ASCII-compatible"):
        parse_xml_answer(raw)
