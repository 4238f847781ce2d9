"""Bounded retries with jittered backoff, only for failures that are safe to repeat.

A query is idempotent (it reads), but a retry is still only safe when the upstream cannot
have started answering: the connection was refused or reset before any response byte, or
the service said 503 (it did not process the request). A timeout, a 500, a malformed or
oversized body are never retried: the attempt may have done work, and the budget is better
spent answering the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: retries after the first attempt (0 = never retry)
    retries: int = 2
    #: first backoff, seconds; doubles per retry up to ``cap_s``
    base_s: float = 0.05
    cap_s: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base_s < 0 or self.cap_s < self.base_s:
            raise ValueError("retry policy: retries >= 0 and 0 <= base <= cap")


def backoff(policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
    """Delay before retry ``retry_number`` (1-based): "full jitter" in [0, min(cap, base * 2^(n-1))]."""
    ceiling = min(policy.cap_s, policy.base_s * (2 ** (retry_number - 1)))
    return rng.uniform(0.0, ceiling)


class UpstreamFailure(Exception):
    """An attempt failed. ``safe`` says whether repeating it cannot have side effects;
    ``kind`` is the outcome reported to the caller (``error`` or ``timeout``)."""

    def __init__(self, detail: str, *, safe: bool = False, kind: str = "error") -> None:
        super().__init__(detail)
        self.detail = detail
        self.safe = safe
        self.kind = kind
