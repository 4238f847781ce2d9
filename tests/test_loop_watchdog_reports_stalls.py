"""The event-loop watchdog (gateway/watchdog.py): a loop held for a while is logged with the share
of the garbage collector and the CPU used meanwhile; short delays are not."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time

from aiohttp import web

from gateway.logging_setup import JsonFormatter
from gateway.watchdog import WATCHDOG, GcTimer, LoopWatchdog, watchdog_ctx


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_late_tick_below_the_threshold_is_no_stall_and_one_above_it_counts_with_its_fields() -> None:
    dog = LoopWatchdog(warn_ms=50)
    assert dog.observe(0.049, 0.01) is None
    fields = dog.observe(0.120, 0.004)
    assert fields is not None
    assert fields["stall_ms"] == 120.0 and fields["cpu_ms"] == 4.0
    assert {f"gc{g}_{k}" for g in range(3) for k in ("ms", "count", "worst_ms")} <= set(fields)
    dog.observe(0.300, 0.290)
    assert dog.stalls == 2 and dog.worst_ms == 300.0


def test_the_gc_timer_adds_up_each_generation_and_restarts_at_each_take() -> None:
    clock = FakeClock()
    timer = GcTimer(clock=clock)
    for gen, spent in ((0, 0.001), (0, 0.002), (2, 0.080)):
        timer.callback("start", {"generation": gen})
        clock.t += spent
        timer.callback("stop", {"generation": gen})
    got = timer.take()
    assert got["gc0_count"] == 2 and got["gc0_ms"] == 3.0 and got["gc0_worst_ms"] == 2.0
    assert got["gc2_count"] == 1 and got["gc2_ms"] == 80.0 and got["gc1_count"] == 0
    assert timer.take()["gc2_count"] == 0


def _stall_lines(caplog) -> list[dict]:
    fmt = JsonFormatter()
    return [json.loads(fmt.format(r)) for r in caplog.records if r.name == "gateway.watchdog"]


async def test_a_loop_blocked_in_a_call_that_waits_is_logged_with_little_cpu(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.watchdog")
    dog = LoopWatchdog(warn_ms=60, tick_s=0.01)
    task = asyncio.create_task(dog.run())
    await asyncio.sleep(0.05)
    time.sleep(0.2)            # a blocking call on the loop that uses no CPU (as a slow fsync)
    await asyncio.sleep(0.05)
    task.cancel()
    lines = _stall_lines(caplog)
    assert dog.stalls == 1 and len(lines) == 1
    line = lines[0]
    assert line["level"] == "WARNING" and line["message"].startswith("event loop stalled")
    assert 150 <= line["stall_ms"] <= 2000
    assert line["cpu_ms"] < line["stall_ms"] / 2      # it was waiting, not computing
    assert line["gc2_count"] == 0


async def test_a_full_collection_inside_a_stall_is_attributed_to_the_garbage_collector(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.watchdog")
    dog = LoopWatchdog(warn_ms=1, tick_s=0.01)
    gc.callbacks.append(dog.gc_timer.callback)
    try:
        junk = [[i] for i in range(300_000)]   # objects for the collector to walk
        task = asyncio.create_task(dog.run())
        await asyncio.sleep(0.03)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.05:   # hold the loop, then collect in the same tick
            pass
        gc.collect()
        await asyncio.sleep(0.03)
        task.cancel()
        del junk
    finally:
        gc.callbacks.remove(dog.gc_timer.callback)
    lines = [ln for ln in _stall_lines(caplog) if ln["gc2_count"] >= 1]
    assert lines, "the stall with the full collection was not logged with it"
    assert lines[0]["gc2_ms"] > 0 and lines[0]["stall_ms"] >= 50


async def test_the_cleanup_context_runs_the_watchdog_for_the_app_and_is_off_at_zero() -> None:
    for warn_ms, running in ((0, False), (200, True)):
        app = web.Application()
        app.cleanup_ctx.append(watchdog_ctx(warn_ms))
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            dog = app[WATCHDOG]
            assert (dog is not None) is running
            if running:
                assert dog.warn_ms == 200 and dog.gc_timer.callback in gc.callbacks
        finally:
            await runner.cleanup()
        if running:
            assert dog.gc_timer.callback not in gc.callbacks
