"""load/bench_audit_latency.py: several processes append to one chain; the figures count every
append, the chain they leave verifies and holds exactly those appends, and the scratch database
is removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from load import bench_audit_latency as bench


def test_two_processes_leave_one_verified_chain_holding_every_append(tmp_path: Path) -> None:
    r = bench.probe(tmp_path, processes=2, rate=150, seconds=1.0, interval_s=0.004, inline_max=4, progress=None)
    assert r["scheduled"] > 200 and r["appended"] == r["scheduled"] and r["failed_batches"] == 0
    assert r["chain_ok"] and r["chain_head"] == r["appended"]
    assert r["latency_ms"]["count"] == r["appended"] and 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["max"]
    assert 1 <= r["commits"] <= r["appended"] and r["records_per_commit"] >= 1
    assert r["cpu_us_per_append"] > 0
    assert list(tmp_path.iterdir()) == []          # the scratch database is gone
    text = bench.render(r)
    assert "chain verified, holds every append" in text and f"{r['appended']} of {r['scheduled']} appended" in text


@pytest.mark.parametrize("args", [["--seconds", "0"], ["--processes", "0"], ["--rate", "50000"],
                                  ["--interval-us", "-1"]])
def test_out_of_range_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(args)
    assert exc.value.code == 2


def test_the_blocking_fsync_side_of_the_comparison_also_leaves_a_verified_chain(tmp_path: Path) -> None:
    r = bench.probe(tmp_path, processes=1, rate=150, seconds=1.0, interval_s=0.004, inline_max=4, progress=None,
                    async_fsync=False)
    assert r["fsync"] == "blocking" and r["appended"] == r["scheduled"] > 100
    assert r["chain_ok"] and r["chain_head"] == r["appended"]
    assert "fsync blocking" in bench.render(r)


def test_the_fsync_option_accepts_only_its_two_modes() -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--fsync", "sometimes"])
    assert exc.value.code == 2
