"""Latency and outcome accounting in HDR histograms.

Latency values are recorded in microseconds. In an open-loop run each latency is measured
from the request's *intended* send time (or its actual send, when that came first), so a slow server (or a saturated generator) shows
up as latency instead of silently lowering the send rate (no coordinated omission).

Outcome kinds (``errors``):

* ``http_<status>`` -- any non-2xx response (latency recorded);
* ``timeout``       -- no complete response within the timeout (recorded at its elapsed time);
* ``connection``    -- connection refused / reset / closed (not recorded as latency);
* ``client``        -- any other client-side failure (not recorded as latency);
* ``dropped``       -- open loop only: never sent because the in-flight cap was reached.

``scheduled = sent + dropped`` and ``sent = responses + timeout + connection + client``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000          # 2 minutes, above any timeout the tool allows
SIGNIFICANT = 3
SIGNIFICANT_PER_SECOND = 2
SUMMARY_PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9),
)
CURVE_PERCENTILES: tuple[float, ...] = (
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.25, 97.5,
    98.0, 98.75, 99.0, 99.375, 99.5, 99.6875, 99.75, 99.8, 99.9, 99.95, 99.99, 99.999, 100.0,
)


def new_histogram(significant: int = SIGNIFICANT) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, significant)


def _clamp_us(value_us: float) -> int:
    return max(LOWEST_US, min(HIGHEST_US, int(value_us)))


def latency_summary_ms(h: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/min/mean in milliseconds (zeros for an empty histogram)."""
    n = h.get_total_count()
    out: dict[str, float] = {"count": float(n)}
    for name, pct in SUMMARY_PERCENTILES:
        out[name] = round(h.get_value_at_percentile(pct) / 1000.0, 3) if n else 0.0
    out["max"] = round(h.get_max_value() / 1000.0, 3) if n else 0.0
    out["min"] = round(h.get_min_value() / 1000.0, 3) if n else 0.0
    out["mean"] = round(h.get_mean_value() / 1000.0, 3) if n else 0.0
    out["count"] = n
    return out


def percentile_curve_ms(h: HdrHistogram) -> list[list[float]]:
    """[[percentile, latency_ms], ...] for the distribution chart; empty when nothing was recorded."""
    if not h.get_total_count():
        return []
    return [[p, round(h.get_value_at_percentile(p) / 1000.0, 3)] for p in CURVE_PERCENTILES]


def encode_histogram(h: HdrHistogram) -> str:
    """The standard HdrHistogram compressed encoding (base64), loadable by any HDR tool."""
    raw = h.encode()
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def decode_histogram(text: str) -> HdrHistogram:
    h = new_histogram()
    h.decode_and_add(text)
    return h


@dataclass(slots=True)
class SecondBucket:
    sent: int = 0
    completed: int = 0
    errors: int = 0
    dropped: int = 0
    histogram: HdrHistogram | None = None


class Recorder:
    """Accumulates outcomes of one run (or one step of a max search). Not thread-safe: it is
    used from a single event loop. Times are seconds relative to the run start."""

    def __init__(self) -> None:
        self.latency = new_histogram()
        self.service = new_histogram()   # from the actual send: diagnostic only, SLOs use ``latency``
        self.lag = new_histogram()
        self.scheduled = 0
        self.sent = 0
        self.responses = 0
        self.ok = 0
        self.late = 0
        self.errors: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        self.expect_checked = 0
        self.expect_mismatched = 0
        self.seconds: dict[int, SecondBucket] = {}

    # -- buckets -----------------------------------------------------------------------
    def _bucket(self, t_s: float) -> SecondBucket:
        sec = max(0, int(math.floor(t_s)))
        b = self.seconds.get(sec)
        if b is None:
            b = self.seconds[sec] = SecondBucket()
        return b

    def _error(self, kind: str, n: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + n

    # -- recording ---------------------------------------------------------------------
    def on_scheduled(self) -> None:
        self.scheduled += 1

    def on_sent(self, intended_s: float, lag_s: float, late_threshold_s: float) -> None:
        self.sent += 1
        self._bucket(intended_s).sent += 1
        self.lag.record_value(_clamp_us(lag_s * 1e6))
        if lag_s > late_threshold_s:
            self.late += 1

    def on_dropped(self, intended_s: float) -> None:
        self._error("dropped")
        b = self._bucket(intended_s)
        b.dropped += 1
        b.errors += 1

    def _latency(self, intended_s: float, latency_s: float) -> None:
        us = _clamp_us(latency_s * 1e6)
        self.latency.record_value(us)
        b = self._bucket(intended_s)
        if b.histogram is None:
            b.histogram = new_histogram(SIGNIFICANT_PER_SECOND)
        b.histogram.record_value(us)

    def on_response(self, intended_s: float, sent_s: float, done_s: float, status: int, verdicts: list[str],
                    expect: tuple[str, ...] | str | None) -> None:
        self.responses += 1
        # from the intended time, or from the actual send when that came first: uvloop's timers have
        # millisecond resolution and wake a sleep up to ~0.5 ms early, and a request sent before its
        # intended time has been waited on since it was sent (done - intended would hide that wait)
        self._latency(intended_s, done_s - min(intended_s, sent_s))
        self.service.record_value(_clamp_us((done_s - sent_s) * 1e6))
        self._bucket(done_s).completed += 1
        key = str(status)
        self.status[key] = self.status.get(key, 0) + 1
        if 200 <= status < 300:
            self.ok += 1
        else:
            self._error(f"http_{status}")
            self._bucket(intended_s).errors += 1
        for v in verdicts:
            self.verdicts[v] = self.verdicts.get(v, 0) + 1
        if expect is not None and 200 <= status < 300:
            self.expect_checked += 1
            wanted = list(expect) if isinstance(expect, tuple) else [expect] * max(1, len(verdicts))
            if wanted != verdicts:
                self.expect_mismatched += 1

    def on_failure(self, intended_s: float, done_s: float, kind: str) -> None:
        """kind: ``timeout`` (latency recorded at its elapsed time), ``connection`` or ``client``."""
        self._error(kind)
        self._bucket(intended_s).errors += 1
        if kind == "timeout":
            self._latency(intended_s, done_s - intended_s)

    # -- reading -----------------------------------------------------------------------
    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def timeline(self) -> list[dict[str, Any]]:
        if not self.seconds:
            return []
        rows = []
        for sec in range(0, max(self.seconds) + 1):
            b = self.seconds.get(sec) or SecondBucket()
            h = b.histogram
            rows.append({
                "second": sec,
                "sent": b.sent,
                "completed": b.completed,
                "errors": b.errors,
                "dropped": b.dropped,
                "p50_ms": round(h.get_value_at_percentile(50.0) / 1000.0, 3) if h else None,
                "p99_ms": round(h.get_value_at_percentile(99.0) / 1000.0, 3) if h else None,
                "max_ms": round(h.get_max_value() / 1000.0, 3) if h else None,
            })
        return rows

    def counts(self) -> dict[str, int]:
        return {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "dropped": self.errors.get("dropped", 0),
            "responses": self.responses,
            "ok": self.ok,
            "timeout": self.errors.get("timeout", 0),
            "connection": self.errors.get("connection", 0),
            "client": self.errors.get("client", 0),
            "late": self.late,
            "errors": self.error_count,
        }


def cpu_report(cpu_s: float, user_s: float, sys_s: float, wall_s: float) -> dict[str, float]:
    """The load generator's own CPU use as % of ONE core (100 = one core fully busy)."""
    return {
        "process_cpu_s": round(cpu_s, 3),
        "user_s": round(user_s, 3),
        "sys_s": round(sys_s, 3),
        "wall_s": round(wall_s, 3),
        "percent_of_one_core": round(100.0 * cpu_s / wall_s, 1) if wall_s > 0 else 0.0,
    }


