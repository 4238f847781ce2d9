"""The HTTP status fetcher against the simulator's loopback status server: conditional
requests, faults (bad signature, failing, hanging, slow, rollback), staleness -> indeterminate,
and revocation reaching the gateway end to end within one refresh interval."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from gateway.issuer_server import IssuerServer
from gateway.status import REVOKED, SUSPENDED
from gateway.status_source import HttpStatusSource

from .conftest import NOW

REGION = "341100"
OTHER = "652929"
LIMIT = dt.timedelta(minutes=10)


class Clock:
    def __init__(self, t: dt.datetime) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += dt.timedelta(**kw)


@pytest.fixture
async def issuer(world):
    clock = Clock(NOW)
    server = IssuerServer(world.simulator, clock=clock, ttl=300)
    base = await server.start()
    yield server, base, clock
    await server.stop()


@pytest.fixture
async def fetcher(world, issuer):
    server, base, clock = issuer
    published = []
    src = HttpStatusSource({r: f"{base}/status/{r}" for r in (REGION, OTHER)}, lambda r: LIMIT, interval=3600,
                           timeout=0.5, clock=clock, retry_min=3600)
    await src.start(lambda: world.snapshot, published.append)
    yield src, server, clock, published
    await src.close()


def verify(world, src: HttpStatusSource, data: bytes, now: dt.datetime):
    return world.verifier.verify(data, world.snapshot, src._snapshot, now)


def valid_licence(world, region=REGION) -> bytes:
    return world.simulator.issue(region, None, "valid", NOW).data


async def test_first_round_fetches_every_region_and_publishes(fetcher):
    src, server, clock, published = fetcher
    assert set(src._snapshot.regions) == {REGION, OTHER}
    assert published[-1] is src._snapshot
    assert server.requests[REGION] == 1 and src.states[REGION].etag is not None
    assert src.states[REGION].last_error is None


async def test_unchanged_list_is_revalidated_with_etag_and_304_refreshes_its_age(fetcher):
    src, server, clock, _ = fetcher
    clock.advance(seconds=60)
    assert await src.refresh(REGION)
    assert server.not_modified.get(REGION) == 1 and src.states[REGION].not_modified == 1
    rs = src._snapshot.get(REGION)
    assert rs.fetched_at == clock() and rs.age(clock()) == dt.timedelta(0)


async def test_revoked_and_suspended_licences_through_the_http_fetcher(world, fetcher):
    src, server, clock, _ = fetcher
    # licences issued valid, then revoked / suspended at the issuer after the gateway's last fetch
    revoked = world.simulator.issue(REGION, None, "valid", NOW)
    suspended = world.simulator.issue(REGION, None, "valid", NOW)
    world.simulator.set_status(REGION, revoked.licence.status_index, REVOKED)
    world.simulator.set_status(REGION, suspended.licence.status_index, SUSPENDED)
    before = verify(world, src, revoked.data, clock())
    assert before.verdict.value == "valid"  # the gateway has not fetched the change yet
    clock.advance(seconds=30)
    assert await src.refresh(REGION)
    assert server.not_modified.get(REGION) is None  # the list changed: a new ETag, a 200
    assert verify(world, src, revoked.data, clock()).reason_codes == ("LICENCE_REVOKED",)
    assert verify(world, src, suspended.data, clock()).reason_codes == ("LICENCE_SUSPENDED",)


async def test_bad_signature_is_rejected_last_good_kept_then_stale_is_indeterminate(world, fetcher):
    src, server, clock, _ = fetcher
    data = valid_licence(world)
    server.set_fault(REGION, "bad-signature")
    clock.advance(minutes=5)
    assert not await src.refresh(REGION)
    assert src.states[REGION].last_error.startswith("bad-signature")
    within = verify(world, src, data, clock())
    assert within.verdict.value == "valid" and within.status_age == dt.timedelta(minutes=5)
    clock.advance(minutes=5, seconds=1)
    assert not await src.refresh(REGION)
    past = verify(world, src, data, clock())
    assert past.verdict.value == "indeterminate" and past.reason_codes == ("STATUS_UNAVAILABLE",)
    assert past.checks["status"] == "fail"


@pytest.mark.parametrize("fault,error", [("fail", "http: HTTP 500"), ("hang", "unreachable: timeout")])
async def test_region_down_within_its_limit_is_valid_with_age_and_past_it_indeterminate(world, fetcher, fault, error):
    src, server, clock, _ = fetcher
    data = valid_licence(world)
    server.set_fault(REGION, fault)
    clock.advance(minutes=9)
    assert not await src.refresh(REGION)
    assert src.states[REGION].last_error.startswith(error)
    within = verify(world, src, data, clock())
    assert within.verdict.value == "valid" and within.status_age == dt.timedelta(minutes=9)
    clock.advance(minutes=1, seconds=1)
    past = verify(world, src, data, clock())
    assert past.verdict.value == "indeterminate" and past.reason_codes == ("STATUS_UNAVAILABLE",)
    assert "limit 600 s" in past.reasons[0].detail


async def test_hanging_region_does_not_hold_up_another_region(fetcher):
    src, server, clock, _ = fetcher
    server.set_fault(REGION, "hang")
    clock.advance(seconds=200)
    started = time.monotonic()
    await src.refresh_all()
    assert time.monotonic() - started < 2.0
    assert src.states[OTHER].last_error is None and src.states[OTHER].fetched_at == clock()
    assert src.states[REGION].fetched_at == NOW


async def test_slow_region_within_the_timeout_is_fetched(fetcher):
    src, server, clock, _ = fetcher
    server.set_fault(REGION, "slow", delay=0.1)
    clock.advance(seconds=200)
    assert await src.refresh(REGION)
    assert src.states[REGION].fetched_at == clock()


async def test_replayed_older_list_cannot_unrevoke_a_licence(world, fetcher):
    src, server, clock, _ = fetcher
    revoked = world.simulator.issue(REGION, None, "revoked", NOW)
    clock.advance(seconds=30)
    assert await src.refresh(REGION)
    server.set_fault(REGION, "rollback")  # serves the first list it signed, before the revocation
    clock.advance(seconds=30)
    assert not await src.refresh(REGION)
    assert src.states[REGION].last_error.startswith("rollback")
    assert verify(world, src, revoked.data, clock()).reason_codes == ("LICENCE_REVOKED",)


async def test_schedule_follows_ttl_with_jitter_and_backs_off_after_failures(fetcher):
    src, server, clock, _ = fetcher
    src.jitter = 0.2
    delays = [src.next_delay(REGION) for _ in range(200)]
    assert all(240 <= d <= 300 for d in delays)  # min(interval 3600, ttl 300), minus up to 20 %
    assert len({round(d, 3) for d in delays}) > 50
    server.set_fault(REGION, "fail")
    src.retry_min = 1.0
    await src.refresh(REGION)
    await src.refresh(REGION)
    assert 1.6 <= src.next_delay(REGION) <= 2.0  # second consecutive failure: 2 s, jittered


def moving_clock():
    t0 = time.monotonic()
    return lambda: NOW + dt.timedelta(seconds=time.monotonic() - t0)


async def test_revoking_in_the_simulator_answers_licence_revoked_within_one_refresh_interval(world, client_for):
    interval = 0.3
    clock = moving_clock()
    src = HttpStatusSource({}, lambda r: dt.timedelta(minutes=5), interval=interval, jitter=0.1, timeout=2.0,
                           clock=clock, local_issuer=IssuerServer(world.simulator, clock=clock, ttl=60))
    client = await client_for(status_source=src, clock=clock)
    issued = world.simulator.issue(REGION, None, "valid", NOW)
    body = {"licence": issued.data.decode(), "encoding": "utf-8"}
    first = await (await client.post("/v1/licences/verify", json=body)).json()
    assert first["verdict"] == "valid" and first["status_age_seconds"] is not None
    requests_before = src.local_issuer.requests.get(REGION, 0)
    for _ in range(20):  # verifications never fetch: the request path only reads the snapshot
        assert (await client.post("/v1/licences/verify", json=body)).status == 200
    assert src.local_issuer.requests.get(REGION, 0) - requests_before <= 1
    world.simulator.set_status(REGION, issued.licence.status_index, REVOKED)
    started = time.monotonic()
    while True:
        answer = await (await client.post("/v1/licences/verify", json=body)).json()
        if answer["verdict"] == "invalid":
            break
        assert time.monotonic() - started < interval + 0.5, "revocation not seen within one refresh interval"
        await asyncio.sleep(0.02)
    assert [r["code"] for r in answer["reasons"]] == ["LICENCE_REVOKED"]
    assert time.monotonic() - started <= interval + 0.5


async def test_regions_endpoint_reports_trust_version_status_age_state_and_fetch_error(world, client_for):
    clock = moving_clock()
    server = IssuerServer(world.simulator, clock=clock, ttl=60)
    src = HttpStatusSource({}, lambda r: dt.timedelta(minutes=5), interval=3600, timeout=1.0, clock=clock,
                           local_issuer=server)
    client = await client_for(status_source=src, clock=clock)
    server.set_fault(REGION, "fail")
    await src.refresh(REGION)
    body = await (await client.get("/v1/regions")).json()
    by_code = {r["code"]: r for r in body["regions"]}
    failing, healthy = by_code[REGION], by_code[OTHER]
    assert failing["trust"]["trust_list_version"] == world.snapshot.version
    assert failing["status_list"]["state"] == "fresh"  # last good list, within its limit
    assert failing["status_list"]["last_fetch_error"] == "http: HTTP 500"
    assert failing["status_list"]["max_age_seconds"] == 300  # the limit applied to this region
    assert isinstance(failing["status_list"]["age_seconds"], int)
    assert healthy["status_list"]["last_fetch_error"] is None and healthy["status_list"]["fetched_at"]


async def test_issuer_control_endpoints_switch_faults_and_revoke_from_loopback(world, issuer):
    import aiohttp

    server, base, clock = issuer
    issued = world.simulator.issue(OTHER, None, "valid", NOW)
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{base}/control/{OTHER}/status", json={"index": issued.licence.status_index,
                                                                 "status": "revoked"})
        assert r.status == 200
        assert (await s.post(f"{base}/control/{OTHER}/status", json={"index": -1, "status": "revoked"})).status == 400
        assert (await s.post(f"{base}/control/{OTHER}", json={"fault": "explode"})).status == 400
        assert (await s.post(f"{base}/control/{OTHER}", json={"fault": "fail"})).status == 200
        assert (await s.get(f"{base}/status/{OTHER}")).status == 500
        assert (await s.post(f"{base}/control/{OTHER}", json={"fault": "ok"})).status == 200
        token = await (await s.get(f"{base}/status/{OTHER}")).read()
    from gateway.status_source import verify_status_list_jwt

    v = verify_status_list_jwt(token, region=OTHER, expected_sub=f"{base}/status/{OTHER}", trust=world.snapshot,
                               now=NOW)
    assert v.status_list.get(issued.licence.status_index) == REVOKED
