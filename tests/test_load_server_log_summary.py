"""The benchmarks' servers log to a file (never a pipe nobody reads), and bench_gateway reads the
gateway's own account of a run from it: event-loop stalls and slow audit commits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import orjson

import load.bench_gateway as bench_gateway
from load.compare import server_log_size, server_log_summary, server_log_tail, spawn_server


def _line(**doc) -> bytes:
    return orjson.dumps({"time": "2026-12-03T11:02:52Z", "request_id": None, **doc}) + b"\n"


def _proc_with_log(path: Path) -> SimpleNamespace:
    return SimpleNamespace(log_path=str(path), stderr=None)


def test_a_server_that_writes_more_than_a_pipe_holds_is_never_blocked_and_its_tail_is_readable() -> None:
    code = "import sys; sys.stderr.write('x' * 300_000 + 'the end'); sys.stderr.flush()"
    proc = spawn_server([sys.executable, "-c", code], cwd=Path.cwd(), env={})
    assert proc.wait(timeout=20) == 0          # a 64-KiB pipe nobody read would have blocked it
    assert server_log_tail(proc, 20).endswith("the end")
    assert server_log_size(proc) == 300_000 + len("the end")


def test_the_summary_counts_stalls_and_slow_commits_from_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    early = _line(level="WARNING", logger="gateway.watchdog", message="event loop stalled 900 ms", stall_ms=900.0)
    log.write_bytes(early)
    proc = _proc_with_log(log)
    mark = server_log_size(proc)
    with log.open("ab") as f:
        f.write(_line(level="INFO", logger="gateway.serve", message="worker 7 serving on http://127.0.0.1:1"))
        f.write(_line(level="WARNING", logger="gateway.watchdog", message="event loop stalled 247 ms",
                      stall_ms=246.6, cpu_ms=7.6))
        f.write(_line(level="WARNING", logger="gateway.watchdog", message="event loop stalled 30 ms", stall_ms=30.0))
        f.write(_line(level="WARNING", logger="gateway.audit", records=9, wal_bytes=1,
                      message="audit: a commit, from its start to durable (the WAL fsync) took 690 ms", took_ms=690.2))
        f.write(_line(level="ERROR", logger="gateway", message="something else"))
        f.write(b"Traceback (most recent call last):\n")
    whole, soak = server_log_summary(proc), server_log_summary(proc, mark)
    assert soak == {"loop_stalls": 2, "worst_stall_ms": 246.6, "slow_audit_commits": 1, "worst_commit_ms": 690.2,
                    "warnings_by_logger": {"gateway.watchdog": 2, "gateway.audit": 1, "gateway": 1},
                    "non_json_lines": 1}
    assert whole["loop_stalls"] == 3 and whole["worst_stall_ms"] == 900.0
    assert server_log_summary(SimpleNamespace(stderr=None))["loop_stalls"] == 0   # no log file: nothing to say


def test_the_benchmark_prints_the_gateways_own_account_of_the_run_and_of_the_soak() -> None:
    row = {"peak_rps": 100.0, "generator_cpu_pct": 30.0, "server_cpu_us_per_request": 300.0, "p99_ms": 5.0,
           "p50_ms": 2.0, "errors": 0, "mismatched": 0, "licences_per_s": 5000.0}
    log = {"loop_stalls": 2, "worst_stall_ms": 246.6, "slow_audit_commits": 5, "worst_commit_ms": 690.2,
           "warnings_by_logger": {"gateway.watchdog": 2, "gateway.audit": 5}, "non_json_lines": 0}
    soak = {"seconds": 600.0, "rate": 50.0, "errors": 0, "error_kinds": {}, "mismatched": 0, "p99_ms": 148.0,
            "p99_9_ms": 294.0, "max_ms": 383.0, "late": 2277, "rss_start_kib": 100, "rss_end_kib": 107,
            "rss_growth": 0.07, "gateway_log": log}
    gw = {"workers": 2, "single": [row], "batch": [row], "open": [row], "soak": soak, "gateway_log": log}
    args = SimpleNamespace(reps=1, client="raw", corpus_size=500, batch_size=50)
    text = bench_gateway.render(bench_gateway.summarise([row], gw, None, [2500.0], args))
    assert "soak 600s at 50/s:  errors 0" in text and "max 383.0 ms" in text and ": MET" in text
    assert ("the gateway's own log during the soak: 2 event-loop stalls (worst 247 ms), 5 audit commits slower "
            "than 100 ms (worst 690 ms: the disk's sync") in text
    assert "the gateway's own log over the whole run: 2 event-loop stalls" in text
