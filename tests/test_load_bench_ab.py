"""load/bench_ab.py: the settings of each side, the interleaving, the medians of the pairs and the
machine-wide CPU figure it prints (the run itself starts two gateways: exercised by hand, see
load/README.md)."""

from __future__ import annotations

import pytest

from load import bench_ab
from load.procstat import machine_busy_seconds


def test_each_side_takes_only_gateway_settings() -> None:
    assert bench_ab.parse_env("GATEWAY_AUDIT_ASYNC_FSYNC=false, GATEWAY_AUDIT_COMMIT_INTERVAL_US=1000") == {
        "GATEWAY_AUDIT_ASYNC_FSYNC": "false", "GATEWAY_AUDIT_COMMIT_INTERVAL_US": "1000"}
    assert bench_ab.parse_env("") == {}
    for bad in ("PATH=/tmp", "GATEWAY_WORKERS"):
        with pytest.raises(ValueError, match="expected GATEWAY_SETTING=value"):
            bench_ab.parse_env(bad)


def test_each_side_goes_first_in_every_other_pair() -> None:
    assert bench_ab.order(3) == ["a", "b", "b", "a", "a", "b"]
    seq = bench_ab.order(4)
    assert seq.count("a") == seq.count("b") == 4


def _run(p99: float, cpu: float, audit_p99: float | None) -> dict:
    inside = None if audit_p99 is None else {"answer": {"p99_ms": audit_p99 + 0.2},
                                             "audit_wait": {"p50_ms": 1.0, "p99_ms": audit_p99},
                                             "loop_lag": {"p99_ms": 2.0}}
    return {"p50_ms": 3.0, "p99_ms": p99, "in_gateway": inside, "server_cpu_us_per_request": cpu,
            "machine_cpu_us_per_request": cpu + 100, "errors": 0}


def test_the_medians_are_of_the_pairs_and_a_missing_figure_is_left_out() -> None:
    runs = [_run(9.0, 300, 5.0), _run(30.0, 500, None), _run(11.0, 320, 7.0)]
    assert bench_ab.median_of(runs, ("p99_ms",)) == 11.0
    assert bench_ab.median_of(runs, ("in_gateway", "audit_wait", "p99_ms")) == 6.0   # of the two that have it
    assert bench_ab.median_of([_run(1.0, 1, None)], ("in_gateway", "loop_lag", "p99_ms")) is None


def test_the_table_names_both_sides_and_lists_every_pair() -> None:
    result = {"rate": 3000.0, "seconds": 6.0, "pairs": 2, "workers": 2, "env_a": "",
              "env_b": "GATEWAY_AUDIT_ASYNC_FSYNC=false",
              "a": {"open": [_run(9.0, 300, 5.0), _run(12.0, 340, 6.0)], "max": []},
              "b": {"open": [_run(14.0, 360, 5.5), _run(16.0, 380, 6.5)], "max": []}}
    text = bench_ab.render(result)
    assert "A: (demo defaults)" in text and "B: GATEWAY_AUDIT_ASYNC_FSYNC=false" in text
    row = next(line for line in text.splitlines() if "client p99 ms" in line)
    assert row.split()[3:5] == ["10.5", "15.0"] and "9.0/14.0" in row and "12.0/16.0" in row
    machine = next(line for line in text.splitlines() if "machine CPU" in line)
    assert machine.split()[3:5] == ["420", "470"]


def test_the_machine_busy_time_grows_with_work_done() -> None:
    import time

    before = machine_busy_seconds()
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    assert machine_busy_seconds() - before >= 0.25


def test_a_side_names_its_interpreter_when_it_is_not_this_one() -> None:
    assert bench_ab.describe("", None) == ""
    assert bench_ab.describe("", "/opt/venv/bin/python") == "python=/opt/venv/bin/python"
    assert bench_ab.describe("GATEWAY_WORKERS=1", "/opt/venv/bin/python") == \
        "GATEWAY_WORKERS=1 python=/opt/venv/bin/python"


@pytest.mark.parametrize("argv, message", [
    ([], "the two sides are the same"),
    (["--a", "GATEWAY_X=1", "--b", "GATEWAY_X=1"], "the two sides are the same"),
    (["--b-python", "/nonexistent/bin/python"], "no such interpreter"),
])
def test_a_run_whose_sides_cannot_differ_is_refused_before_starting(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_ab.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_side_answering_other_verdicts_makes_the_run_not_comparable() -> None:
    """Seen in session 16: a checkout's gateway on another trust framework answered every licence
    'invalid', and cheaper -- the table alone looked like a faster side B."""
    good, wrong = {**_run(9.0, 300, 5.0), "mismatched": 0}, {**_run(8.0, 200, 4.0), "mismatched": 3100}
    result = {"rate": 800.0, "seconds": 6.0, "pairs": 1, "workers": 1, "env_a": "", "env_b": "python=/tmp/other",
              "a": {"open": [good], "max": []}, "b": {"open": [wrong], "max": []}}
    assert bench_ab.wrong_verdicts(result) == {"a": 0, "b": 3100}
    text = bench_ab.render(result)
    row = next(line for line in text.splitlines() if "wrong verdicts" in line)
    assert row.split()[2:4] == ["0.0", "3100"]
    assert "NOT COMPARABLE: side B gave 3100 answers" in text and "side A" not in text
    result["b"]["open"] = [_run(8.0, 200, 4.0)]
    assert bench_ab.wrong_verdicts(result) == {"a": 0, "b": 0} and "NOT COMPARABLE" not in bench_ab.render(result)
