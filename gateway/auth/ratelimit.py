"""Per-partner token bucket. Pure: the monotonic time ``now`` is always passed in."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BucketState:
    tokens: float
    updated: float  # monotonic seconds


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: int  # 0 when allowed, else whole seconds >= 1 (for Retry-After)
    remaining: int  # whole tokens left after this request


def take(state: BucketState | None, now: float, rate_per_s: float, burst: int,
         cost: float = 1.0) -> tuple[Decision, BucketState]:
    """Refill ``state`` up to ``now`` and try to spend ``cost`` tokens.

    A new bucket starts full. A clock that goes backwards refills nothing.
    """
    if state is None:
        tokens = float(burst)
    else:
        elapsed = max(0.0, now - state.updated)
        tokens = min(float(burst), state.tokens + elapsed * rate_per_s)
    if tokens >= cost:
        tokens -= cost
        return Decision(True, 0, int(tokens)), BucketState(tokens, now)
    wait = (cost - tokens) / rate_per_s
    return Decision(False, max(1, math.ceil(wait)), 0), BucketState(tokens, now)


class Limiter(Protocol):
    """What :func:`gateway.auth.middleware.auth_middleware` needs: one decision per request.
    :class:`RateLimiter` (this process's buckets) and, with ``serve --workers N``,
    :class:`gateway.auth.shared.SharedRateLimiter` (one bucket per partner for all the workers)."""

    def check(self, client_id: str, rate_per_s: float, burst: int, now: float) -> Decision: ...


class RateLimiter:
    """Buckets and request counters keyed by client_id (bounded by the registry size), in this
    process: with ``serve --workers N`` each worker would hold its own (N times the partner's rate),
    so the workers use :class:`gateway.auth.shared.SharedRateLimiter` instead."""

    def __init__(self) -> None:
        self._buckets: dict[str, BucketState] = {}
        self.allowed: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def check(self, client_id: str, rate_per_s: float, burst: int, now: float) -> Decision:
        decision, self._buckets[client_id] = take(self._buckets.get(client_id), now, rate_per_s, burst)
        (self.allowed if decision.allowed else self.refused)[client_id] += 1
        return decision

    def requests(self, client_id: str) -> int:
        """All requests counted for this partner (allowed + refused)."""
        return self.allowed[client_id] + self.refused[client_id]
