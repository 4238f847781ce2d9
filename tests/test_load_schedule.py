"""Arrival schedules: the constant one is exact, the Poisson one has the right mean rate."""

from __future__ import annotations

import random
import statistics

import pytest

from load.errors import ARRIVALS_UNKNOWN, LoadRefused
from load.schedule import arrival_offsets, constant_offsets, poisson_offsets


def test_constant_schedule_sends_rate_times_duration_evenly_spaced() -> None:
    offs = list(constant_offsets(50.0, 2.0))
    assert len(offs) == 100
    assert offs[0] == 0.0
    gaps = {round(b - a, 9) for a, b in zip(offs, offs[1:])}
    assert gaps == {0.02}
    assert offs[-1] < 2.0


@pytest.mark.parametrize("rate", [20.0, 500.0, 5000.0])
def test_poisson_schedule_mean_rate_is_within_3_percent_on_a_seeded_rng(rate: float) -> None:
    duration = 200_000 / rate  # ~200k arrivals: the mean rate's standard error is ~0.22%
    offs = list(poisson_offsets(rate, duration, random.Random(42)))
    measured = len(offs) / duration
    assert measured == pytest.approx(rate, rel=0.03)
    assert all(0 <= o < duration for o in offs)
    assert offs == sorted(offs)


def test_poisson_gaps_are_exponential_not_constant() -> None:
    offs = list(poisson_offsets(100.0, 200.0, random.Random(7)))
    gaps = [b - a for a, b in zip(offs, offs[1:])]
    mean = statistics.fmean(gaps)
    # exponential: the standard deviation equals the mean (coefficient of variation ~1)
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, abs=0.05)


def test_poisson_schedule_is_reproducible_with_the_same_seed() -> None:
    a = list(arrival_offsets("poisson", 100.0, 5.0, random.Random(3)))
    b = list(arrival_offsets("poisson", 100.0, 5.0, random.Random(3)))
    c = list(arrival_offsets("poisson", 100.0, 5.0, random.Random(4)))
    assert a == b
    assert a != c


def test_unknown_arrival_process_is_refused() -> None:
    with pytest.raises(LoadRefused) as ei:
        arrival_offsets("bursty", 10.0, 1.0, random.Random(1))
    assert ei.value.rule == ARRIVALS_UNKNOWN
