"""Event-loop stall watchdog: a serving worker says when its loop could not run for a while.

A worker's answers wait whenever its event loop is held -- by a long garbage collection, a
blocking call, a checkpoint a ``COMMIT`` ran on the loop, or simply by the scheduler giving the CPU
to other processes. Under load such a stall shows as a latency spike for every request in flight
and, with an open-loop client, as queued or dropped requests. The watchdog makes each one visible
where an operator looks (the JSON log) instead of leaving it to be guessed from a benchmark:

* a task sleeps ``tick`` seconds at a time and measures how late it wakes; a lateness of at
  least ``warn_ms`` (setting ``loop_stall_warn_ms``; 0 turns the watchdog off) is logged as one
  WARNING line ``event loop stalled`` with the stall's length, the time the garbage collector
  ran during it (per generation, via ``gc.callbacks``) and the process CPU time used meanwhile --
  CPU close to the stall's length means this process was busy (a collection, a blocking call);
  CPU far below it means it was waiting (the disk, a lock, or a CPU the scheduler gave away);
* :class:`LoopWatchdog` keeps the count of stalls and the worst one (``app[WATCHDOG]``), and hands
  every tick's lateness to the worker's loop-lag histogram (:mod:`gateway.latency`): how long an
  event that became ready waited for the loop, sampled every tick.

What it found first (2026-12-03, a 600-s soak at 2,800/s, 2 workers): the long-soak stalls were the
audit commit waiting for this VM's disk (a 247-ms stall with 8 ms of CPU and no collection, while
both workers' commits of a few records took 120-690 ms to become durable); at half max the
short stalls (8-19 ms) are bursts of work (CPU as long as the stall, no collection).

No personal data is involved: the line carries times and counts only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .latency import LATENCY

log = logging.getLogger("gateway.watchdog")

#: how often the watchdog task wakes, seconds (its own cost: one wake-up per tick)
TICK_S = 0.025


@dataclass
class GcTimer:
    """Wall time spent in the garbage collector, per generation, since the last :meth:`take`."""
    clock: Callable[[], float] = time.perf_counter
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    worst_s: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _start: float | None = None

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = self.clock()
        elif self._start is not None:
            gen = min(int(info.get("generation", 0)), 2)
            spent = self.clock() - self._start
            self._start = None
            self.seconds[gen] += spent
            self.collections[gen] += 1
            self.worst_s[gen] = max(self.worst_s[gen], spent)

    def take(self) -> dict[str, float | int]:
        """Flat scalar fields (the JSON log keeps scalar extras): ``gc<N>_ms``, ``gc<N>_count``,
        ``gc<N>_worst_ms`` for generations 0-2."""
        out: dict[str, float | int] = {}
        for gen in range(3):
            out[f"gc{gen}_ms"] = round(self.seconds[gen] * 1000, 1)
            out[f"gc{gen}_count"] = self.collections[gen]
            out[f"gc{gen}_worst_ms"] = round(self.worst_s[gen] * 1000, 1)
        self.seconds, self.collections, self.worst_s = [0.0, 0.0, 0.0], [0, 0, 0], [0.0, 0.0, 0.0]
        return out


@dataclass
class LoopWatchdog:
    """Measures how late a periodic wake-up comes; logs the late ones (see the module text)."""
    warn_ms: float
    tick_s: float = TICK_S
    clock: Callable[[], float] = time.monotonic
    cpu_clock: Callable[[], float] = time.process_time
    gc_timer: GcTimer = field(default_factory=GcTimer)
    stalls: int = 0
    worst_ms: float = 0.0
    #: called with every tick's lateness in seconds (gateway.latency: the loop-lag histogram)
    lag_observer: Callable[[float], None] | None = None

    def observe(self, late_s: float, cpu_s: float) -> dict[str, Any] | None:
        """One tick's lateness (seconds) and the CPU this process used during it: the fields of the
        warning when it is a stall, else None. The garbage collector's record restarts every tick."""
        gc_fields = self.gc_timer.take()
        late_ms = late_s * 1000
        if late_ms < self.warn_ms:
            return None
        self.stalls += 1
        self.worst_ms = max(self.worst_ms, late_ms)
        return {"stall_ms": round(late_ms, 1), "cpu_ms": round(cpu_s * 1000, 1), **gc_fields}

    async def run(self) -> None:
        while True:
            t0, c0 = self.clock(), self.cpu_clock()
            await asyncio.sleep(self.tick_s)
            late = self.clock() - t0 - self.tick_s
            if self.lag_observer is not None:
                self.lag_observer(max(0.0, late))
            fields = self.observe(late, self.cpu_clock() - c0)
            if fields is not None:
                gc_ms = fields["gc0_ms"] + fields["gc1_ms"] + fields["gc2_ms"]
                log.warning("event loop stalled %.0f ms (CPU %.0f ms, garbage collector %.0f ms)",
                            fields["stall_ms"], fields["cpu_ms"], gc_ms, extra=fields)


#: the worker's watchdog (None when ``loop_stall_warn_ms`` is 0)
WATCHDOG = web.AppKey("loop_watchdog", LoopWatchdog | None)


def watchdog_ctx(warn_ms: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running a :class:`LoopWatchdog` for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if warn_ms <= 0:
            app[WATCHDOG] = None
            yield
            return
        recorder = app.get(LATENCY)
        dog = LoopWatchdog(warn_ms, lag_observer=recorder.loop_lag if recorder is not None else None)
        app[WATCHDOG] = dog
        gc.callbacks.append(dog.gc_timer.callback)
        task = asyncio.create_task(dog.run())
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            gc.callbacks.remove(dog.gc_timer.callback)

    return ctx
