"""load/bench_wake.py: what work costs after a pause. The figures are medians of the timings it
took, every ratio is that median over the back-to-back one, and bad arguments are refused."""

from __future__ import annotations

import pytest

from load import bench_wake as bench


def test_every_job_is_timed_after_each_pause_slept_and_spun() -> None:
    r = bench.probe(samples=15, gaps_ms=(0.2, 1.0))
    assert r["samples"] == 15 and set(r["jobs"]) == set(bench.JOBS)
    for job in r["jobs"].values():
        base = job["back_to_back_us"]
        assert base > 0
        assert [row["gap_ms"] for row in job["after_pause"]] == [0.2, 1.0]
        for row in job["after_pause"]:
            assert row["slept_us"] > 0 and row["spun_us"] > 0
            assert row["slept_ratio"] == pytest.approx(row["slept_us"] / base, abs=0.02)
            assert row["spun_ratio"] == pytest.approx(row["spun_us"] / base, abs=0.02)
    assert bench.penalty_at(r, 1.0) == r["jobs"]["ES256 sign"]["after_pause"][1]["slept_ratio"]
    assert r["steal_pct"] is None or 0 <= r["steal_pct"] <= 100
    text = bench.render(r)
    assert "ES256 sign:" in text and "after 0.2 ms: slept" in text and "record encode+hash x20" in text


def test_the_penalty_note_appears_only_past_its_threshold() -> None:
    row = {"gap_ms": 2.0, "slept_us": 90.0, "spun_us": 40.0, "slept_ratio": 3.0, "spun_ratio": 1.33}
    result = {"samples": 1, "jobs": {"ES256 sign": {"back_to_back_us": 30.0, "after_pause": [row]}},
              "idle": {"driver": "haltpoll", "governor": None, "guest_halt_poll_ns": "0"}, "steal_pct": 0.5}
    text = bench.render(result)
    assert "-> work resumed after a ~2 ms pause costs 3.0x" in text and "guest_halt_poll_ns = 0" in text and "0.50 %" in text
    row["slept_ratio"] = 1.2
    assert "-> work resumed" not in bench.render(result)


def test_time_job_reports_the_median_of_its_runs() -> None:
    calls = []
    assert bench.time_job(lambda: calls.append(1), 7, 0.0, spin=False) >= 0
    assert len(calls) == 7


@pytest.mark.parametrize("args", [["--samples", "0"], ["--samples", "999999"], ["--gaps-ms", "0"],
                                  ["--gaps-ms", "100"], ["--gaps-ms", "a,b"]])
def test_out_of_range_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(args)
    assert exc.value.code == 2
