"""SLO files: evaluation on crafted results, the failure table and the exit code 3."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from load.cli import main
from load.errors import EXIT_REFUSED, SLO_INVALID, LoadRefused
from load.slo import EXIT_SLO_MISSED, all_passed, evaluate, load_slo, parse_slo, render_table

SLO_DIR = Path(__file__).resolve().parent.parent / "load" / "slo"

GOOD_RESULT: dict[str, Any] = {
    "mode": "open-loop", "scenario": "verify",
    "latency_ms": {"p50": 2.0, "p90": 4.0, "p99": 9.0, "p99_9": 30.0, "max": 80.0, "min": 0.5, "mean": 2.5,
                   "count": 12000},
    "throughput_rps": 199.5, "error_rate": 0.0, "expectation": {"checked": 12000, "mismatched": 0,
                                                                "mismatch_rate": 0.0},
    "cpu": {"percent_of_one_core": 35.0},
}


def _with(**changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(GOOD_RESULT)
    for key, value in changes.items():
        if key in r["latency_ms"]:
            r["latency_ms"][key] = value
        else:
            r[key] = value
    return r


def test_every_shipped_slo_file_parses_and_names_its_scenario() -> None:
    files = sorted(SLO_DIR.glob("*.toml"))
    assert {f.stem for f in files} >= {"smoke", "verify", "batch", "check", "mix"}
    for f in files:
        spec = load_slo(f)
        assert spec.scenario == f.stem
        assert dict(spec.thresholds)


def test_good_result_meets_the_verify_slo() -> None:
    checks = evaluate(load_slo(SLO_DIR / "verify.toml"), GOOD_RESULT)
    assert all_passed(checks)
    assert "8/8 SLOs met" in render_table(load_slo(SLO_DIR / "verify.toml"), checks)


@pytest.mark.parametrize("changes,failed_label", [
    ({"p99": 25.0}, "latency p99"),
    ({"p50": 7.5}, "latency p50"),
    ({"throughput_rps": 120.0}, "throughput"),
    ({"error_rate": 0.02}, "error rate"),
])
def test_a_missed_threshold_fails_exactly_that_slo(changes: dict[str, Any], failed_label: str) -> None:
    spec = load_slo(SLO_DIR / "verify.toml")
    checks = evaluate(spec, _with(**changes))
    failed = [c.label for c in checks if not c.passed]
    assert failed == [failed_label]
    table = render_table(spec, checks)
    row = next(line for line in table.splitlines() if line.startswith(failed_label + " "))
    assert row.rstrip().endswith("FAIL")
    assert f"MISSED: {failed_label}" in table


def test_threshold_equal_to_actual_passes() -> None:
    spec = parse_slo({"thresholds": {"p99_ms": 9.0, "min_throughput": 199.5}})
    assert all_passed(evaluate(spec, GOOD_RESULT))


def test_closed_loop_result_is_judged_at_its_peak() -> None:
    result = {"mode": "closed-loop-max", "scenario": "verify", "cpu": {"percent_of_one_core": 70.0},
              "peak": {"concurrency": 16, "throughput_rps": 4000.0, "error_rate": 0.0,
                       "latency_ms": {"p50": 3.0, "p90": 5.0, "p99": 8.0, "p99_9": 9.0, "max": 12.0}}}
    spec = parse_slo({"thresholds": {"min_throughput": 5000, "p99_ms": 10}})
    checks = evaluate(spec, result)
    assert [(c.key, c.passed) for c in checks] == [("p99_ms", True), ("min_throughput", False)]


@pytest.mark.parametrize("data,why", [
    ({"thresholds": {"p99": 10}}, "unknown threshold"),              # typo silently checking nothing
    ({"thresholds": {}}, "at least one"),
    ({}, "at least one"),
    ({"thresholds": {"p99_ms": -1}}, "non-negative"),
    ({"thresholds": {"p99_ms": "fast"}}, "non-negative"),
    ({"thresholds": {"p99_ms": True}}, "non-negative"),
    ({"thresholds": {"p99_ms": 1}, "threshold": {"p50_ms": 1}}, "unknown key"),
])
def test_slo_file_that_would_check_nothing_or_nonsense_is_refused(data: dict[str, Any], why: str) -> None:
    with pytest.raises(LoadRefused) as ei:
        parse_slo(data, "crafted.toml")
    assert ei.value.rule == SLO_INVALID and why in str(ei.value)


def test_slo_file_with_invalid_toml_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[thresholds\np99_ms = 3", encoding="utf-8")
    with pytest.raises(LoadRefused) as ei:
        load_slo(p)
    assert ei.value.rule == SLO_INVALID


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def test_cli_exits_0_when_the_slo_is_met(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(orjson.dumps(GOOD_RESULT))
    code, out, _ = _cli("slo", str(path), "--slo", str(SLO_DIR / "verify.toml"))
    assert code == 0
    assert "FAIL" not in out


def test_cli_exits_3_with_a_table_naming_the_missed_slo(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(orjson.dumps(_with(p99=42.0, error_rate=0.5)))
    code, out, _ = _cli("slo", str(path), "--slo", str(SLO_DIR / "verify.toml"))
    assert code == EXIT_SLO_MISSED == 3
    fails = [line.split("  ")[0] for line in out.splitlines() if line.rstrip().endswith("FAIL")]
    assert fails == ["latency p99", "error rate"]


def test_cli_refuses_a_result_file_that_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(b'{"hello": "world"}')
    code, _, err = _cli("slo", str(path), "--slo", str(SLO_DIR / "verify.toml"))
    assert code == EXIT_REFUSED
    assert "RESULT_INVALID" in err
