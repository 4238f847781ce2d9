"""Where an answer's time goes inside one worker: latency histograms an operator can read.

A load test sees each answer's whole latency from the client: the kernel's queues, the worker's
event loop reaching the request, the work, the wait for the audit record's commit, the answer's way
back and the client's own delays (on a 2-core machine the load generator shares the cores). To
tell "the gateway is slow" from "the machine is busy", each worker keeps HDR histograms
(``hdrhistogram``, the load tool's library) of what it can time itself:

* ``answers`` -- per audited route (``verify``, ``verify-batch``, ``check``, ``query``): from the
  moment the request's handler chain starts (the headers and body parsed by aiohttp) until its
  answer is ready to be written, authentication, verification and the audit wait included; every
  answer counts, problem answers too;
* ``audit_wait`` -- from records being queued to their commit being durable (the part of
  ``answers`` spent waiting for the trail: :class:`gateway.audit.deadline.CommitDeadlines`), for
  every wait of this worker that ended in a commit: answers, and the records of token issues and
  admin calls (a reset's own record lands in the histograms it has just started);
* ``loop_lag`` -- how late the loop watchdog's periodic wake-up came (gateway/watchdog.py, every
  25 ms): a sample of how long anything that became ready -- a request's bytes, a finished commit --
  waited for the event loop, which ``answers`` does not see (uvloop's timers round to 1 ms, so its
  floor is about 1 ms); empty when the watchdog is off (``loop_stall_warn_ms = 0``).

``GET /v1/admin/worker`` shows the three since the worker started or since its last reset
(``POST /v1/admin/worker/latency/reset``, which answers what it cleared); each summary carries the
histogram itself (HdrHistogram's compressed base64 form), so a client merges the workers' figures
exactly (``load/bench_gateway.py`` prints them beside the client's own p50 / p99). Recording costs
~1.7 µs per value here (two per verify answer, and 40 loop-lag samples a second). Times and counts
only: no request content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from hdrh.histogram import HdrHistogram

#: the routes whose answers are timed: canonical route path -> name in the summaries
TIMED_ROUTES: dict[str, str] = {
    "/v1/licences/verify": "verify",
    "/v1/licences/verify-batch": "verify-batch",
    "/v1/items/{code}/check": "check",
    "/v1/licences/query": "query",
}
#: histogram range, microseconds: 1 µs to 10 minutes (a longer value is recorded as this)
HIGHEST_US = 600_000_000
#: significant decimal digits kept (2: values within 1 %, ~25 KB a histogram)
SIGNIFICANT_DIGITS = 2
PERCENTILES = (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p99_9_ms", 99.9))


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, SIGNIFICANT_DIGITS)


def _us(seconds: float) -> int:
    """Seconds as whole microseconds within the histograms' range."""
    return min(HIGHEST_US, max(1, int(seconds * 1e6)))


def summarise(h: HdrHistogram) -> dict[str, Any]:
    """count, p50 / p90 / p99 / p99.9 / max in ms (None without values), and the encoded histogram."""
    n = h.get_total_count()
    out: dict[str, Any] = {"count": n}
    for key, pct in PERCENTILES:
        out[key] = round(h.get_value_at_percentile(pct) / 1000, 3) if n else None
    out["max_ms"] = round(h.get_max_value() / 1000, 3) if n else None
    out["hdr"] = h.encode().decode("ascii") if n else None
    return out


def merge(encoded: list[str | None]) -> HdrHistogram:
    """One histogram from several workers' ``hdr`` strings (None: a worker without values)."""
    h = _histogram()
    for text in encoded:
        if text:
            h.decode_and_add(text.encode("ascii"))
    return h


class LatencyRecorder:
    """A worker's answer, audit-wait and loop-lag histograms (one per worker, ``app[LATENCY]``)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._reset()

    def _reset(self) -> None:
        self.since = self._wall()
        self.answers: dict[str, HdrHistogram] = {name: _histogram() for name in TIMED_ROUTES.values()}
        self.audit = _histogram()
        self.lag = _histogram()

    def answer(self, route: str, seconds: float) -> None:
        h = self.answers.get(route)
        if h is not None:
            h.record_value(_us(seconds))

    def audit_wait(self, seconds: float) -> None:
        self.audit.record_value(_us(seconds))

    def loop_lag(self, seconds: float) -> None:
        self.lag.record_value(_us(seconds))

    def snapshot(self) -> dict[str, Any]:
        return {"since": datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="milliseconds"),
                "answers": {name: summarise(h) for name, h in self.answers.items()},
                "audit_wait": summarise(self.audit), "loop_lag": summarise(self.lag)}

    def take(self) -> dict[str, Any]:
        """The snapshot, then start again from empty histograms."""
        snap = self.snapshot()
        self._reset()
        return snap


LATENCY = web.AppKey("latency", LatencyRecorder)
