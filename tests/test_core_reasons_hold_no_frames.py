"""A rejected licence's result keeps its reasons as data, not as live stacks.

Each reason is the exception a check raised. Kept with its traceback, it would keep the frames it
passed through alive, and (Python 3.11+) each of those its caller's, up to the request handler's
with the request in it: a reference cycle per rejected licence, freed only by the garbage
collector's rare full collection (a 600-s soak grew the workers' RSS 12 %). These tests run with
the collector off: whatever the caller held must be freed by reference counting alone."""

from __future__ import annotations

import datetime as dt
import gc
import weakref

import pytest

from gateway.core import Verdict
from gateway.simulator import EXPECTED
from tests.conftest import NOW


class _Request:
    """Stands for what a handler's frame holds (the request, its body)."""


def _verify_from_a_handler(world, data: bytes, status):
    request = _Request()          # a local of the calling frame, as in a request handler
    ref = weakref.ref(request)
    result = world.verifier.verify(data, world.snapshot, status, NOW)
    return ref, result


@pytest.mark.parametrize("case", [c for c, (verdict, _) in EXPECTED.items() if verdict == "invalid"])
def test_the_callers_frame_is_freed_without_the_collector(world, case: str) -> None:
    code = EXPECTED[case][1]
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    data = world.simulator.issue("330100", case=case, now=NOW).data
    gc.collect()
    gc.disable()
    try:
        ref, result = _verify_from_a_handler(world, data, status)
        assert result.verdict is Verdict.INVALID
        assert code in result.reason_codes
        assert ref() is None, "the result keeps the caller's frame alive"
        for reason in result.reasons:
            assert reason.__traceback__ is None and reason.__context__ is None and reason.__cause__ is None
            assert reason.code and reason.code in str(reason)   # still the reason: code and message
    finally:
        gc.enable()
