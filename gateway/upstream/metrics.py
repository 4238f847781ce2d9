"""Counters per upstream region: requests, attempts, outcomes and latency.

Plain integers updated on the event loop (no locks needed); exposed by
``GET /v1/admin/upstreams`` and summarised in each query answer's ``meta``. No personal
data: only counts and durations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: upper bounds (ms) of the latency buckets; the last bucket is open-ended
LATENCY_BUCKETS_MS: tuple[int, ...] = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
OUTCOMES = ("ok", "not_found", "timeout", "error", "circuit_open")


@dataclass(slots=True)
class RegionCounters:
    requests: int = 0
    attempts: int = 0
    retries: int = 0
    in_flight: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {o: 0 for o in OUTCOMES})
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def observe(self, outcome: str, latency_ms: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome == "circuit_open":  # never went out: no latency
            return
        self.latency_sum_ms += latency_ms
        self.latency_max_ms = max(self.latency_max_ms, latency_ms)
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if latency_ms <= bound:
                self.latency_buckets[i] += 1
                break
        else:
            self.latency_buckets[-1] += 1

    def as_dict(self) -> dict[str, object]:
        timed = sum(self.latency_buckets)
        return {
            "requests": self.requests, "attempts": self.attempts, "retries": self.retries,
            "in_flight": self.in_flight, "outcomes": dict(self.outcomes),
            "latency_ms": {
                "mean": round(self.latency_sum_ms / timed, 2) if timed else None,
                "max": round(self.latency_max_ms, 2),
                "buckets": {(f"le_{b}" if i < len(LATENCY_BUCKETS_MS) else "inf"): n
                            for i, (b, n) in enumerate(zip((*LATENCY_BUCKETS_MS, 0), self.latency_buckets))},
            },
        }
