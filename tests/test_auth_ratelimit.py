"""Token bucket arithmetic (pure) and per-partner accounting."""

from __future__ import annotations

from gateway.auth import BucketState, RateLimiter, take


def test_new_bucket_starts_full_and_spends_one() -> None:
    decision, state = take(None, 10.0, rate_per_s=2, burst=3)
    assert decision.allowed and decision.remaining == 2 and state == BucketState(2.0, 10.0)


def test_exhausted_bucket_refuses_with_whole_second_retry_after() -> None:
    state = BucketState(0.2, 10.0)
    decision, _ = take(state, 10.0, rate_per_s=2, burst=3)
    assert not decision.allowed and decision.retry_after_s == 1  # 0.4 s rounded up, never 0


def test_slow_rate_gives_long_retry_after() -> None:
    decision, _ = take(BucketState(0.0, 0.0), 0.0, rate_per_s=0.1, burst=1)
    assert decision.retry_after_s == 10


def test_refill_is_capped_at_burst() -> None:
    decision, state = take(BucketState(0.0, 0.0), 3600.0, rate_per_s=5, burst=4)
    assert decision.allowed and state.tokens == 3.0


def test_clock_going_backwards_refills_nothing() -> None:
    decision, state = take(BucketState(0.5, 100.0), 50.0, rate_per_s=10, burst=10)
    assert not decision.allowed and state.tokens == 0.5


def test_limiter_counts_requests_per_partner() -> None:
    limiter = RateLimiter()
    results = [limiter.check("a", 1, 2, 0.0).allowed for _ in range(3)]
    limiter.check("b", 1, 2, 0.0)
    assert results == [True, True, False]
    assert (limiter.allowed["a"], limiter.refused["a"], limiter.requests("a"), limiter.requests("b")) == (2, 1, 3, 1)
    assert limiter.check("a", 1, 2, 1.0).allowed  # one token back after a second
