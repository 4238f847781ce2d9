"""How long an answer may wait for its audit record: past the limit it is answered 503.

An answer leaves the gateway only after its record is durable. When the store stops making
progress without failing -- the disk stalls on a sync, a writer process hangs, another process
holds the database's write lock -- every answer in flight waits with it, and the callers see
nothing until their own timeouts. :class:`CommitDeadlines` bounds that wait (setting
``audit_commit_timeout_ms``): a request still waiting past the limit is answered
``AUDIT_UNAVAILABLE`` (503), so the partner learns at once that the gateway cannot answer now.

It fails in the safe direction only: the record, already queued, is still committed when the
store recovers (a record without an answer is harmless); an answer is never sent without one.

Each wait that ends with its record committed is reported to :attr:`CommitDeadlines.observe`
(the worker's audit-wait histogram, :mod:`gateway.latency`).

Cheap per request (a dict entry and a clock read, no timer of its own: ``asyncio.timeout`` cost
~7 µs per answer here); :meth:`sweep`, run every :data:`SWEEP_SECONDS`, cancels the waits past the
limit, so an expired wait is answered within the limit plus one sweep period.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway import errors
from gateway.errors import InfrastructureError

T = TypeVar("T")
log = logging.getLogger("gateway.audit")

#: seconds between two sweeps
SWEEP_SECONDS = 0.25
#: at most one WARNING per this many seconds about expired waits (a stalled disk expires thousands)
LOG_EVERY_SECONDS = 5.0


class CommitDeadlines:
    """Waits for audit commits, each bounded by ``limit_s`` seconds (enforced by :meth:`sweep`)."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not limit_s > 0:
            raise ValueError("the audit commit timeout must be positive")
        self.limit_s = limit_s
        self._clock = clock
        self._keys = itertools.count()
        #: key -> (start, task), oldest first (starts only grow: dicts keep insertion order)
        self._waiting: dict[int, tuple[float, asyncio.Task[object]]] = {}
        self._expired: set[int] = set()
        self.expired_total = 0
        self._unlogged = 0
        self._last_log = float("-inf")
        #: called with each committed wait's length in seconds (gateway.latency: the audit-wait histogram)
        self.observe: Callable[[float], None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def wait(self, commit: Awaitable[T]) -> T:
        """``await commit``; raises AUDIT_UNAVAILABLE when :meth:`sweep` finds it past the limit."""
        task = asyncio.current_task()
        if task is None:   # not in a task (cannot be cancelled by the sweep): wait unbounded
            return await commit
        key = next(self._keys)
        start = self._clock()
        self._waiting[key] = (start, task)
        try:
            result = await commit
        except asyncio.CancelledError:
            if key not in self._expired:
                raise   # cancelled by someone else (shutdown): not ours to turn into an answer
            task.uncancel()
            raise InfrastructureError(
                errors.AUDIT_UNAVAILABLE,
                f"the audit record was not durable within {self.limit_s * 1000:.0f} ms (audit_commit_timeout_ms); "
                "no answer is given without it -- retry later") from None
        finally:
            self._waiting.pop(key, None)
            self._expired.discard(key)
        if self.observe is not None:
            self.observe(self._clock() - start)
        return result

    def sweep(self) -> int:
        """Cancel every wait older than the limit (once each); return how many this sweep did."""
        cutoff = self._clock() - self.limit_s
        expired = []
        for key, (start, task) in self._waiting.items():
            if start > cutoff:
                break
            if key not in self._expired:
                expired.append((key, task))
        for key, task in expired:
            self._expired.add(key)
            task.cancel()
        if expired:
            self.expired_total += len(expired)
            self._unlogged += len(expired)
        now = self._clock()
        if self._unlogged and now - self._last_log >= LOG_EVERY_SECONDS:
            log.warning("%d answers waited more than %.0f ms for their audit record and were answered 503 "
                        "(AUDIT_UNAVAILABLE); the records are committed when the store catches up",
                        self._unlogged, self.limit_s * 1000,
                        extra={"expired": self._unlogged, "limit_ms": round(self.limit_s * 1000)})
            self._unlogged = 0
            self._last_log = now
        return len(expired)

    async def run(self) -> None:
        """Sweep every :data:`SWEEP_SECONDS` until cancelled."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep()
