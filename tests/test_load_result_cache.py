"""The verification result cache at the edge (gateway/result_cache.py): a hit answers exactly
what the core would, and nothing that could change the answer is served from it."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.app import RESULT_CACHE
from gateway.core import CHINA_TZ, Verdict
from gateway.result_cache import ResultCache
from gateway.simulator import REVOKED, IssuerSimulator
from gateway.status import StatusSnapshot
from gateway.trust import build_snapshot
from tests.conftest import NOW

HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def sim(world) -> IssuerSimulator:
    """A simulator of its own (revocations here do not touch the session simulator)."""
    return IssuerSimulator(world.specs, world.regions, world.material, {t.key: t for t in world.catalogue.types},
                           seed=77)


def verified(world, sim, data: bytes, status: StatusSnapshot, now: dt.datetime = NOW):
    return world.verifier.verify(data, world.snapshot, status, now)


def test_hit_is_the_core_answer_restamped_with_the_requests_now(world, sim) -> None:
    status = sim.status_snapshot(NOW, HOUR)
    data = sim.issue("330100", case="valid", now=NOW).data
    cache = ResultCache()
    key = cache.key(data)
    cache.put(key, world.snapshot, status, NOW, verified(world, sim, data, status))
    later = NOW + dt.timedelta(seconds=20)
    hit = cache.get(key, world.snapshot, status, later)
    fresh = verified(world, sim, data, status, later)
    assert hit is not None and cache.hits == 1
    assert hit == fresh  # verified_at and status age are those of `later`, everything else identical
    assert hit.verified_at == later and hit.status_age == dt.timedelta(seconds=20)


def test_revocation_in_a_new_status_snapshot_is_never_answered_from_the_cache(world, sim) -> None:
    issued = sim.issue("330100", case="valid", now=NOW)
    before = sim.status_snapshot(NOW, HOUR)
    cache = ResultCache()
    key = cache.key(issued.data)
    cache.put(key, world.snapshot, before, NOW, verified(world, sim, issued.data, before))
    sim.set_status("330100", issued.licence.status_index, REVOKED)
    after = sim.status_snapshot(NOW, HOUR)
    assert cache.get(key, world.snapshot, after, NOW) is None
    assert verified(world, sim, issued.data, after).reason_codes == ("LICENCE_REVOKED",)


def test_another_regions_status_refresh_keeps_the_entry(world, sim) -> None:
    status = sim.status_snapshot(NOW, HOUR)
    data = sim.issue("330100", case="valid", now=NOW).data
    cache = ResultCache()
    key = cache.key(data)
    cache.put(key, world.snapshot, status, NOW, verified(world, sim, data, status))
    other = sim.status_snapshot(NOW, HOUR).get("310000")
    assert cache.get(key, world.snapshot, status.with_region(other), NOW) is not None


def test_trust_swap_invalidates_even_with_the_same_content(world, sim) -> None:
    status = sim.status_snapshot(NOW, HOUR)
    data = sim.issue("330100", case="valid", now=NOW).data
    cache = ResultCache()
    key = cache.key(data)
    cache.put(key, world.snapshot, status, NOW, verified(world, sim, data, status))
    assert cache.get(key, build_snapshot(world.doc, world.regions), status, NOW) is None


def test_entry_expires_before_the_next_beijing_date_boundary(world, sim) -> None:
    skew = dt.timedelta(minutes=5)
    now = dt.datetime(2026, 11, 27, 15, 58, tzinfo=dt.timezone.utc)  # 23:58 in Beijing
    status = sim.status_snapshot(now, HOUR)
    data = sim.issue("330100", case="valid", now=now).data
    cache = ResultCache(ttl=dt.timedelta(hours=6), skew=skew)
    key = cache.key(data)
    cache.put(key, world.snapshot, status, now, world.verifier.verify(data, world.snapshot, status, now))
    midnight = dt.datetime(2026, 11, 28, tzinfo=CHINA_TZ)
    assert cache.get(key, world.snapshot, status, midnight + skew + dt.timedelta(seconds=1)) is None
    cache.put(key, world.snapshot, status, now, world.verifier.verify(data, world.snapshot, status, now))
    assert cache.get(key, world.snapshot, status, midnight + skew - dt.timedelta(seconds=1)) is not None


def test_entry_is_not_used_past_its_ttl_or_once_the_status_list_turns_stale(world, sim) -> None:
    status = sim.status_snapshot(NOW, dt.timedelta(seconds=30))
    data = sim.issue("330100", case="valid", now=NOW).data
    cache = ResultCache(ttl=dt.timedelta(seconds=60))
    key = cache.key(data)
    cache.put(key, world.snapshot, status, NOW, verified(world, sim, data, status))
    assert cache.get(key, world.snapshot, status, NOW + dt.timedelta(seconds=29)) is not None
    assert cache.get(key, world.snapshot, status, NOW + dt.timedelta(seconds=31)) is None  # stale: no reuse


def test_indeterminate_answers_are_not_stored(world, sim) -> None:
    data = sim.issue("330100", case="valid", now=NOW).data
    result = verified(world, sim, data, StatusSnapshot())  # no status list at all
    assert result.verdict is Verdict.INDETERMINATE
    cache = ResultCache()
    cache.put(cache.key(data), world.snapshot, StatusSnapshot(), NOW, result)
    assert len(cache) == 0


def test_cache_is_bounded_and_evicts_the_least_recently_used(world, sim) -> None:
    status = sim.status_snapshot(NOW, HOUR)
    items = [sim.issue("330100", case="valid", now=NOW).data for _ in range(3)]
    cache = ResultCache(max_entries=2)
    keys = [cache.key(d) for d in items]
    for k, d in zip(keys[:2], items[:2]):
        cache.put(k, world.snapshot, status, NOW, verified(world, sim, d, status))
    assert cache.get(keys[0], world.snapshot, status, NOW) is not None  # 0 is now the most recent
    cache.put(keys[2], world.snapshot, status, NOW, verified(world, sim, items[2], status))
    assert len(cache) == 2
    assert cache.get(keys[1], world.snapshot, status, NOW) is None
    assert cache.get(keys[0], world.snapshot, status, NOW) is not None


async def test_second_verify_of_a_licence_over_http_is_a_cache_hit_with_the_same_answer(world, api) -> None:
    body = world.simulator.issue("330100", case="valid", now=NOW).body()
    first = await api.post("/v1/licences/verify", json=body)
    second = await api.post("/v1/licences/verify", json=body)
    cache = api.server.app[RESULT_CACHE]
    assert first.status == second.status == 200
    a, b = await first.json(), await second.json()
    a.pop("receipt", None), b.pop("receipt", None)  # a signed receipt per answer (ECDSA: randomised)
    assert a == b and a["verdict"] == "valid"
    assert cache is not None and cache.hits >= 1


async def test_cache_can_be_switched_off(world, client_for) -> None:
    from dataclasses import replace

    client = await client_for(settings=replace(world.settings, verify_cache_entries=0))
    body = world.simulator.issue("330100", case="valid", now=NOW).body()
    assert (await client.post("/v1/licences/verify", json=body)).status == 200
    assert client.server.app[RESULT_CACHE] is None


def test_a_refresh_reconfirming_the_same_list_keeps_the_entry_and_the_age_follows_the_new_list(world, sim) -> None:
    data = sim.issue("330100", case="valid", now=NOW).data
    before = sim.status_snapshot(NOW, HOUR)
    cache = ResultCache()
    key = cache.key(data)
    cache.put(key, world.snapshot, before, NOW, verified(world, sim, data, before))
    refreshed_at = NOW + dt.timedelta(seconds=10)
    after = sim.status_snapshot(refreshed_at, HOUR)       # new objects, the same bits
    assert after.get("330100") is not before.get("330100")
    later = NOW + dt.timedelta(seconds=25)
    hit = cache.get(key, world.snapshot, after, later)
    assert hit is not None and hit == verified(world, sim, data, after, later)
    assert hit.status_age == dt.timedelta(seconds=15)     # from the re-confirmed list's fetch time


def test_a_changed_bit_for_another_licence_of_the_region_still_invalidates(world, sim) -> None:
    data = sim.issue("330100", case="valid", now=NOW).data
    other = sim.issue("330100", case="valid", now=NOW)
    before = sim.status_snapshot(NOW, HOUR)
    cache = ResultCache()
    key = cache.key(data)
    cache.put(key, world.snapshot, before, NOW, verified(world, sim, data, before))
    sim.set_status("330100", other.licence.status_index, REVOKED)
    assert cache.get(key, world.snapshot, sim.status_snapshot(NOW, HOUR), NOW) is None
    assert cache.misses == 1


def test_a_stale_reconfirmed_list_is_not_reused(world, sim) -> None:
    data = sim.issue("330100", case="valid", now=NOW).data
    before = sim.status_snapshot(NOW, HOUR)
    cache = ResultCache(ttl=dt.timedelta(hours=6))
    key = cache.key(data)
    cache.put(key, world.snapshot, before, NOW, verified(world, sim, data, before))
    short = sim.status_snapshot(NOW, dt.timedelta(seconds=30))   # same bits, a 30 s staleness limit
    assert cache.get(key, world.snapshot, short, NOW + dt.timedelta(seconds=31)) is None


def test_entries_stored_together_expire_spread_over_the_second_half_of_the_ttl(world, sim) -> None:
    from gateway.result_cache import TTL_JITTER

    status = sim.status_snapshot(NOW, HOUR)
    ttl = dt.timedelta(seconds=60)
    cache = ResultCache(ttl=ttl)
    lifetimes = []
    for i in range(40):
        data = sim.issue("330100", case="valid", now=NOW).data
        key = cache.key(data)
        cache.put(key, world.snapshot, status, NOW, verified(world, sim, data, status))
        lifetimes.append(cache._entries[key].until - NOW.timestamp())
        expected = ttl.total_seconds() * (1 - TTL_JITTER * key[0] / 256)
        assert abs(lifetimes[-1] - expected) < 1e-6
        assert cache.get(key, world.snapshot, status, NOW + dt.timedelta(seconds=expected - 0.5)) is not None
        assert cache.get(key, world.snapshot, status, NOW + dt.timedelta(seconds=expected + 0.01)) is None
    assert all(30 < t <= 60 for t in lifetimes)
    assert max(lifetimes) - min(lifetimes) > 15          # spread, not one instant
