"""load/bench_sm2.py measures as ``openssl speed`` does: calls per second of CPU user time (its
divisor unless ``-elapsed``), not of wall time, so time the scheduler gives to other work on a
shared machine counts against neither side."""

from __future__ import annotations

import time

from load import bench_sm2


def test_the_rate_divides_the_calls_by_the_cpu_time_they_used_not_the_wall_time() -> None:
    readings = iter([10.0, 10.25])          # the CPU clock before and after: 0.25 s of user time
    calls = []
    r = bench_sm2.rate(lambda: calls.append(1), 0.05, cpu=lambda: next(readings))
    assert len(calls) > 20 and (len(calls) - 1) % 20 == 0          # warm-up, then batches of 20
    assert r == (len(calls) - 1) / 0.25


def test_user_cpu_time_grows_with_work_and_not_with_sleep() -> None:
    t0 = bench_sm2.user_cpu_seconds()
    time.sleep(0.2)
    slept = bench_sm2.user_cpu_seconds() - t0
    t1 = bench_sm2.user_cpu_seconds()
    deadline = time.perf_counter() + 10     # however busy the machine is, work shows within 10 s
    while bench_sm2.user_cpu_seconds() - t1 < 0.05 and time.perf_counter() < deadline:
        sum(range(1000))
    assert slept < 0.05 and bench_sm2.user_cpu_seconds() - t1 >= 0.05


def test_the_openssl_speed_line_is_parsed() -> None:
    out = ("                              sign    verify    sign/s verify/s\n"
           " 256 bits SM2 (CurveSM2)   0.0004s   0.0003s   2427.3   3289.1\n")
    m = bench_sm2._SPEED_RE.search(out)
    assert m is not None and (float(m[1]), float(m[2])) == (2427.3, 3289.1)
