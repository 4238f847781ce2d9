"""Each worker times its own answers and their audit waits (gateway/latency.py): ``GET
/v1/admin/worker`` shows the histograms, ``POST /v1/admin/worker/latency/reset`` starts them again
and answers what they held, and several workers' histograms merge exactly."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.app import LIVE
from gateway.audit.deadline import CommitDeadlines
from gateway.errors import InfrastructureError
from gateway.latency import HIGHEST_US, LATENCY, LatencyRecorder, merge, summarise

from .conftest import NOW
from .test_audit_commit_deadline import FakeClock
from .test_openapi_contract import spec, validate_body  # noqa: F401 - the spec fixture
from .test_trust_admin_http import REGION, admin, admin_registry  # noqa: F401 - fixtures


def test_the_summary_gives_percentiles_in_ms_within_one_percent() -> None:
    rec = LatencyRecorder(wall=lambda: 1_700_000_000.0)
    for ms in range(1, 101):                       # 1 .. 100 ms, one each
        rec.answer("verify", ms / 1000)
    s = rec.snapshot()["answers"]["verify"]
    assert s["count"] == 100
    assert s["p50_ms"] == pytest.approx(50, rel=0.01) and s["p99_ms"] == pytest.approx(99, rel=0.01)
    assert s["max_ms"] == pytest.approx(100, rel=0.01) and s["p90_ms"] == pytest.approx(90, rel=0.01)
    empty = rec.snapshot()["answers"]["check"]
    assert empty == {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "p99_9_ms": None,
                     "max_ms": None, "hdr": None}
    assert rec.snapshot()["since"] == "2023-11-14T22:13:20.000+00:00"


def test_an_unknown_route_is_not_recorded_and_extreme_values_are_clamped() -> None:
    rec = LatencyRecorder()
    rec.answer("no-such-route", 0.5)
    rec.audit_wait(0.0)                            # below 1 µs: recorded as 1 µs
    rec.audit_wait(10 * HIGHEST_US / 1e6)          # far beyond the range: recorded at its top
    snap = rec.snapshot()
    assert all(s["count"] == 0 for s in snap["answers"].values())
    assert snap["audit_wait"]["count"] == 2
    assert snap["audit_wait"]["max_ms"] == pytest.approx(HIGHEST_US / 1000, rel=0.01)


def test_two_workers_histograms_merge_into_the_one_of_all_their_values() -> None:
    a, b, both = LatencyRecorder(), LatencyRecorder(), LatencyRecorder()
    for i in range(1, 301):
        (a if i % 3 else b).answer("verify", i / 10_000)
        both.answer("verify", i / 10_000)
    merged = merge([a.snapshot()["answers"]["verify"]["hdr"], b.snapshot()["answers"]["verify"]["hdr"], None])
    expected = summarise(both.answers["verify"])
    got = summarise(merged)
    assert got["count"] == 300 == expected["count"]
    assert {k: got[k] for k in ("p50_ms", "p99_ms", "max_ms")} == {k: expected[k] for k in ("p50_ms", "p99_ms", "max_ms")}


def test_take_answers_what_was_held_and_starts_from_empty() -> None:
    t = iter([10.0, 20.0])
    rec = LatencyRecorder(wall=lambda: next(t))
    rec.answer("check", 0.004)
    taken = rec.take()
    assert taken["answers"]["check"]["count"] == 1 and taken["since"].startswith("1970-01-01T00:00:10")
    after = rec.snapshot()
    assert after["answers"]["check"]["count"] == 0 and after["since"].startswith("1970-01-01T00:00:20")


async def test_a_committed_wait_is_observed_with_its_length_and_an_expired_one_is_not() -> None:
    clock = FakeClock()
    deadlines = CommitDeadlines(2.0, clock)
    seen: list[float] = []
    deadlines.observe = seen.append
    loop = asyncio.get_running_loop()
    done, stuck = loop.create_future(), loop.create_future()

    async def commit(fut: asyncio.Future[str]) -> str:   # a sink's append: wait for the group commit
        return await asyncio.shield(fut)

    waiting = asyncio.create_task(deadlines.wait(commit(done)))
    late = asyncio.create_task(deadlines.wait(commit(stuck)))
    await asyncio.sleep(0)
    clock.now += 0.75
    done.set_result("ok")
    assert await waiting == "ok" and seen == [0.75]
    clock.now += 1.75                              # the stuck one has now waited 2.5 s
    assert deadlines.sweep() == 1
    with pytest.raises(InfrastructureError):
        await late
    assert seen == [0.75]                          # a 503 answer is not an audit wait that ended in a commit
    stuck.cancel()


async def test_the_worker_shows_its_answer_and_audit_wait_histograms_and_resets_them(world, admin, spec):  # noqa: F811
    client, _, adm, verify_hdr = admin
    client.app[LIVE].set_status(world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)))
    client.app[LATENCY].take()   # from empty (the admin fixture's set-up answered requests of its own)
    licence = world.simulator.issue(REGION, None, "valid", NOW).data.decode()
    for _ in range(3):
        resp = await client.post("/v1/licences/verify", headers=verify_hdr, json={"licence": licence, "encoding": "utf-8"})
        assert resp.status == 200
    bad = await client.post("/v1/licences/verify", headers=verify_hdr, json={"licence": 7})   # a problem answer
    assert bad.status == 400
    body = await (await client.get("/v1/admin/worker", headers=adm)).json()
    validate_body(spec, "get", "/v1/admin/worker", 200, "application/json", body)
    lat = body["latency"]
    verify = lat["answers"]["verify"]
    assert verify["count"] == 4                    # every answer counts, the 400 too
    assert lat["answers"]["verify-batch"]["count"] == 0 and lat["answers"]["check"]["count"] == 0
    assert lat["audit_wait"]["count"] == 3         # one committed wait per audited answer (not the 400)
    assert 0 < lat["audit_wait"]["max_ms"] <= verify["max_ms"] * 1.01   # the wait is part of the answer
    reset = await client.post("/v1/admin/worker/latency/reset", headers=adm)
    assert reset.status == 200
    taken = await reset.json()
    validate_body(spec, "post", "/v1/admin/worker/latency/reset", 200, "application/json", taken)
    assert taken["latency"]["answers"]["verify"] == verify and taken["latency"]["audit_wait"]["count"] == 3
    again = await (await client.get("/v1/admin/worker", headers=adm)).json()
    assert again["latency"]["answers"]["verify"]["count"] == 0
    # the reset call's own admin record was appended after the histograms started again: its wait is the one
    assert again["latency"]["audit_wait"]["count"] == 1


async def test_the_latency_reset_needs_the_admin_scope(admin):  # noqa: F811
    client, _, _, verify_only = admin
    resp = await client.post("/v1/admin/worker/latency/reset", headers=verify_only)
    assert resp.status == 403 and (await resp.json())["code"] == "FORBIDDEN"
    assert (await client.post("/v1/admin/worker/latency/reset")).status == 401


async def test_every_watchdog_tick_hands_its_lateness_to_the_loop_lag_observer() -> None:
    import itertools

    from gateway.watchdog import LoopWatchdog

    # (start, end) of three ticks of a 0-s sleep: late 5 ms, 0.5 ms, 74.5 ms; then on time for ever
    times = itertools.chain([0.0, 0.005, 1.0, 1.0005, 2.0, 2.0745], itertools.repeat(5.0))
    seen: list[float] = []
    dog = LoopWatchdog(warn_ms=50, tick_s=0.0, clock=lambda: next(times), cpu_clock=lambda: 0.0,
                       lag_observer=seen.append)
    task = asyncio.create_task(dog.run())
    for _ in range(100):
        await asyncio.sleep(0)
        if len(seen) >= 4:
            break
    task.cancel()
    assert seen[:4] == pytest.approx([0.005, 0.0005, 0.0745, 0.0])
    assert dog.stalls == 1                          # only the 74.5-ms one reaches warn_ms


async def test_the_worker_s_watchdog_feeds_its_loop_lag_histogram(admin):  # noqa: F811
    client, _, adm, _ = admin
    client.app[LATENCY].take()
    await asyncio.sleep(0.12)                        # the watchdog wakes every 25 ms
    lag = (await (await client.get("/v1/admin/worker", headers=adm)).json())["latency"]["loop_lag"]
    assert lag["count"] >= 2 and lag["p50_ms"] is not None and lag["max_ms"] < 1000
