"""In-memory verification counters per region (the console's status page) and SVG sparklines.

Counts are kept per region per minute for the last ``keep`` minutes; nothing is persisted.
``sparkline_svg`` is pure: values in, an accessible inline ``<svg>`` string out.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from html import escape

UNKNOWN_REGION = "-"


@dataclass(frozen=True, slots=True)
class RegionWindow:
    total: int
    not_valid: int
    series: tuple[int, ...]  # counts per bucket, oldest first

    @property
    def error_rate(self) -> float | None:
        return self.not_valid / self.total if self.total else None


class VerificationCounters:
    def __init__(self, keep_minutes: int = 120) -> None:
        self.keep = keep_minutes
        # region -> minute (epoch minutes) -> [total, not_valid]
        self._buckets: dict[str, dict[int, list[int]]] = defaultdict(dict)

    @staticmethod
    def _minute(now: dt.datetime) -> int:
        return int(now.timestamp() // 60)

    def record(self, region: str | None, verdict: str, now: dt.datetime) -> None:
        minute = self._minute(now)
        buckets = self._buckets[region or UNKNOWN_REGION]
        b = buckets.setdefault(minute, [0, 0])
        b[0] += 1
        b[1] += verdict != "valid"
        for old in [m for m in buckets if m <= minute - self.keep]:
            del buckets[old]

    def window(self, region: str, now: dt.datetime, minutes: int = 60, bucket_minutes: int = 5) -> RegionWindow:
        end = self._minute(now)
        buckets = self._buckets.get(region, {})
        series = []
        total = bad = 0
        for start in range(end - minutes + 1, end + 1, bucket_minutes):
            n = 0
            for m in range(start, min(start + bucket_minutes, end + 1)):
                b = buckets.get(m)
                if b:
                    n += b[0]
                    total += b[0]
                    bad += b[1]
            series.append(n)
        return RegionWindow(total, bad, tuple(series))

    def regions(self) -> list[str]:
        return sorted(self._buckets)


def sparkline_svg(values: tuple[int, ...] | list[int], label: str, width: int = 120, height: int = 24) -> str:
    """An inline SVG polyline of ``values`` (oldest left), labelled for screen readers."""
    vals = list(values) or [0]
    top = max(vals) or 1
    step = (width - 4) / max(len(vals) - 1, 1)
    points = " ".join(f"{2 + i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(vals))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
            f'<polyline fill="none" stroke="#1f5fa8" stroke-width="1.5" points="{points}"/></svg>')
