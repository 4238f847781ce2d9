"""A circuit breaker per upstream region: a small state machine with an injected clock.

* ``closed``: requests flow; outcomes are remembered for ``window_s`` seconds. When at least
  ``min_requests`` outcomes are in the window and the share of failures reaches
  ``error_rate``, the breaker opens.
* ``open``: requests are refused without touching the network until ``cool_down_s`` has
  passed; then the breaker half-opens.
* ``half_open``: exactly one probe request is let through. Success closes the breaker
  (and forgets the window); failure opens it again for another cool-down.

No clock is read here: every method takes ``now`` (seconds, any monotonic origin).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    #: seconds of history the error rate is computed over
    window_s: float = 30.0
    #: fewest outcomes in the window before the error rate may open the breaker
    min_requests: int = 5
    #: share of failures (0..1] in the window that opens the breaker
    error_rate: float = 0.5
    #: seconds the breaker stays open before letting one probe through
    cool_down_s: float = 15.0

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.cool_down_s <= 0 or self.min_requests < 1 or not 0 < self.error_rate <= 1:
            raise ValueError("breaker policy: window and cool-down must be positive, min_requests >= 1, "
                             "0 < error_rate <= 1")


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy = BreakerPolicy()) -> None:
        self.policy = policy
        self.state = BreakerState.CLOSED
        self.opened_at: float | None = None
        self._events: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._probe_in_flight = False
        self.opened_count = 0

    def _prune(self, now: float) -> None:
        horizon = now - self.policy.window_s
        events = self._events
        while events and events[0][0] < horizon:
            _, ok = events.popleft()
            if not ok:
                self._failures -= 1

    def current(self, now: float) -> BreakerState:
        """The state as of ``now`` (an open breaker whose cool-down is over reads half-open)."""
        if self.state is BreakerState.OPEN and self.opened_at is not None \
                and now - self.opened_at >= self.policy.cool_down_s:
            return BreakerState.HALF_OPEN
        return self.state

    def allow(self, now: float) -> bool:
        """May a request go out now? In half-open state only one probe at a time."""
        state = self.current(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        self.state = BreakerState.HALF_OPEN
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record(self, success: bool, now: float) -> None:
        """Record the outcome of a request that :meth:`allow` let through."""
        if self.state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False
            if success:
                self._close()
            else:
                self._open(now)
            return
        if self.state is BreakerState.OPEN:  # a straggler let through before the breaker opened
            return
        self._events.append((now, success))
        if not success:
            self._failures += 1
        self._prune(now)
        total = len(self._events)
        if total >= self.policy.min_requests and self._failures / total >= self.policy.error_rate:
            self._open(now)

    def abandon(self) -> None:
        """A let-through request was cancelled before it had an outcome: free the probe slot."""
        self._probe_in_flight = False

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.opened_count += 1
        self._events.clear()
        self._failures = 0

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self.opened_at = None
        self._events.clear()
        self._failures = 0

    def snapshot(self, now: float) -> dict[str, object]:
        self._prune(now)
        return {"state": self.current(now).value, "window_requests": len(self._events),
                "window_failures": self._failures, "opened": self.opened_count}
