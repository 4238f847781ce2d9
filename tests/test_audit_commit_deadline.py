"""An answer waits for its audit record at most ``audit_commit_timeout_ms``: a store that stalls
without failing (a disk stuck on a sync, a hung writer) gets the caller a 503 AUDIT_UNAVAILABLE,
not silence until the caller's own timeout; the record is still committed when the store catches
up, and no answer is ever sent without one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from gateway.app import create_app
from gateway.audit.deadline import CommitDeadlines
from gateway.audit_wiring import AUDIT
from gateway.config import ConfigError, Settings
from gateway.errors import InfrastructureError

from .conftest import NOW

HUZHOU = "330500"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_wait_past_the_limit_is_answered_unavailable_and_the_commit_goes_on() -> None:
    clock = FakeClock()
    deadlines = CommitDeadlines(2.0, clock)
    committed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def commit() -> str:          # what a sink's append does: wait for the group commit
        return await asyncio.shield(committed)

    waiting = asyncio.create_task(deadlines.wait(commit()))
    await asyncio.sleep(0)
    assert deadlines.waiting == 1
    clock.now += 1.9
    assert deadlines.sweep() == 0 and not waiting.done()
    clock.now += 0.2
    assert deadlines.sweep() == 1
    assert deadlines.sweep() == 0          # cancelled once, not again while it unwinds
    with pytest.raises(InfrastructureError) as caught:
        await waiting
    assert caught.value.reason.code == "AUDIT_UNAVAILABLE" and "2000 ms" in caught.value.detail
    assert deadlines.waiting == 0 and deadlines.expired_total == 1
    assert not waiting.cancelled()          # an answer (503), not a cancelled request
    committed.set_result("stored")          # the store catches up: the commit itself was not undone
    assert await asyncio.shield(committed) == "stored"


async def test_waits_within_the_limit_return_the_commit_result() -> None:
    clock = FakeClock()
    deadlines = CommitDeadlines(2.0, clock)

    async def commit(n: int) -> int:
        await asyncio.sleep(0)
        return n * 10

    results = await asyncio.gather(*(deadlines.wait(commit(i)) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    clock.now += 60
    assert deadlines.sweep() == 0 and deadlines.waiting == 0


async def test_only_the_old_waits_expire_and_a_foreign_cancel_stays_a_cancel() -> None:
    clock = FakeClock()
    deadlines = CommitDeadlines(2.0, clock)
    never = asyncio.get_running_loop().create_future()
    old = asyncio.create_task(deadlines.wait(asyncio.shield(never)))
    await asyncio.sleep(0)
    clock.now += 1.5
    young = asyncio.create_task(deadlines.wait(asyncio.shield(never)))
    await asyncio.sleep(0)
    clock.now += 1.0                        # old: 2.5 s, young: 1.0 s
    assert deadlines.sweep() == 1
    with pytest.raises(InfrastructureError):
        await old
    assert not young.done()
    young.cancel()                          # shutdown, not the deadline: a plain cancellation
    with pytest.raises(asyncio.CancelledError):
        await young
    assert deadlines.waiting == 0 and deadlines.expired_total == 1


def test_expired_waits_are_logged_at_most_every_few_seconds(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        deadlines = CommitDeadlines(1.0, clock)
        never = asyncio.get_running_loop().create_future()
        tasks = [asyncio.create_task(deadlines.wait(asyncio.shield(never))) for _ in range(30)]
        await asyncio.sleep(0)
        clock.now += 2
        deadlines.sweep()
        more = [asyncio.create_task(deadlines.wait(asyncio.shield(never))) for _ in range(5)]
        await asyncio.sleep(0)
        clock.now += 2
        deadlines.sweep()                   # 2 s after the first line: counted, not logged yet
        clock.now += 4
        deadlines.sweep()                   # past LOG_EVERY_SECONDS: one line for the 5 since
        await asyncio.gather(*tasks, *more, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        asyncio.run(scenario())
    lines = [r for r in caplog.records if "were answered 503" in r.getMessage()]
    assert [r.expired for r in lines] == [30, 5]  # type: ignore[attr-defined]


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CommitDeadlines(0)
    with pytest.raises(ConfigError, match="audit_commit_timeout_ms"):
        Settings(demo=True, audit_commit_timeout_ms=0).validate()


async def test_a_stalled_store_answers_503_within_the_limit_then_stores_the_record(world, aiohttp_client) -> None:
    settings = dataclasses.replace(world.settings, audit_commit_timeout_ms=200)
    client = await aiohttp_client(create_app(world.services(settings=settings)), headers=world.auth())
    trail = client.server.app[AUDIT]
    sink = trail.sink
    sink.gate = asyncio.Event()             # the store stops making progress, without an error
    body = world.simulator.issue(HUZHOU, "id_card", "valid", NOW).body()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    # without the deadline this request would wait as long as the store: fail, do not hang
    resp = await asyncio.wait_for(client.post("/v1/licences/verify", json=body,
                                              headers={"X-Request-Id": "req-stalled"}), 5.0)
    took = loop.time() - t0
    problem = await resp.json(content_type=None)
    assert resp.status == 503 and problem["code"] == "AUDIT_UNAVAILABLE"
    assert "verdict" not in problem and "receipt" not in problem
    assert 0.2 <= took < 2.0                # the limit plus at most a sweep, not the caller's timeout
    assert [r for r in sink.table.values() if r.body["request_id"] == "req-stalled"] == []
    sink.gate.set()                          # the store catches up: the queued record is committed
    sink.gate = None
    for _ in range(100):
        if any(r.body["request_id"] == "req-stalled" for r in sink.table.values()):
            break
        await asyncio.sleep(0.01)
    assert [r.body["verdict"] for r in sink.table.values() if r.body["request_id"] == "req-stalled"] == ["valid"]
    resp = await client.post("/v1/licences/verify", json=body, headers={"X-Request-Id": "req-after"})
    assert resp.status == 200 and (await resp.json())["verdict"] == "valid"
    assert trail.deadlines.expired_total == 1 and trail.deadlines.waiting == 0
