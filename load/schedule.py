"""Open-loop arrival schedules: pure functions of (rate, duration, rng)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

from load.errors import ARRIVALS_UNKNOWN, LoadRefused

Arrivals = Literal["constant", "poisson"]
ARRIVALS: tuple[str, ...] = ("constant", "poisson")


def constant_offsets(rate: float, duration_s: float) -> Iterator[float]:
    """Evenly spaced intended send offsets (seconds from the start), ``rate * duration`` of them."""
    n = int(rate * duration_s + 1e-9)
    interval = 1.0 / rate
    for i in range(n):
        yield i * interval


def poisson_offsets(rate: float, duration_s: float, rng: random.Random) -> Iterator[float]:
    """A Poisson process of mean ``rate``: exponential gaps, all offsets < ``duration_s``."""
    t = rng.expovariate(rate)
    while t < duration_s:
        yield t
        t += rng.expovariate(rate)


def arrival_offsets(arrivals: str, rate: float, duration_s: float, rng: random.Random) -> Iterator[float]:
    if arrivals == "constant":
        return constant_offsets(rate, duration_s)
    if arrivals == "poisson":
        return poisson_offsets(rate, duration_s, rng)
    raise LoadRefused(ARRIVALS_UNKNOWN, f"unknown arrival process {arrivals!r}; use one of {ARRIVALS}")
