"""The HTML report is self-contained and its charts are identifiable, for both run modes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from load.report import line_chart, render_html
from load.stats import Recorder, latency_summary_ms, percentile_curve_ms

EXTERNAL = re.compile(r"""(?:src|href|xlink:href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def _open_loop_result(target: str = "http://127.0.0.1:8080") -> dict[str, Any]:
    rec = Recorder()
    for i in range(300):
        t = i / 100
        rec.on_scheduled()
        rec.on_sent(t, 0.0001, 0.01)
        rec.on_response(t, t, t + 0.002 + (i % 50) / 10000, 200 if i % 100 else 503,
                        ["valid" if i % 3 else "invalid"], None)
    return {
        "mode": "open-loop", "scenario": "verify", "target": target, "started_at": "2026-01-01T00:00:00+00:00",
        "config": {"rate": 100.0}, "counts": rec.counts(), "errors": rec.errors, "status": rec.status,
        "verdicts": rec.verdicts, "expectation": {"checked": 0, "mismatched": 0, "mismatch_rate": 0.0},
        "latency_ms": latency_summary_ms(rec.latency), "latency_curve_ms": percentile_curve_ms(rec.latency),
        "service_time_ms": latency_summary_ms(rec.service), "dispatch_lag_ms": latency_summary_ms(rec.lag),
        "throughput_rps": 100.0, "error_rate": rec.error_count / 300, "timeline": rec.timeline(),
        "cpu": {"percent_of_one_core": 12.5},
        "slo": {"name": "verify.toml", "passed": False, "checks": [
            {"label": "latency p99", "op": "<=", "threshold": 1.0, "actual": 6.9, "unit": "ms", "passed": False}]},
    }


def _max_result() -> dict[str, Any]:
    lat = {"p50": 1.0, "p90": 2.0, "p99": 3.0, "p99_9": 4.0, "max": 5.0}
    steps = [{"concurrency": n, "ok_throughput_rps": 1000.0 * n ** 0.5, "latency_ms": lat, "error_rate": 0.0,
              "cpu": {"percent_of_one_core": 50.0}} for n in (1, 2, 4)]
    return {"mode": "closed-loop-max", "scenario": "verify", "target": "http://127.0.0.1:8080",
            "config": {}, "steps": steps, "cpu": {"percent_of_one_core": 60.0},
            "peak": {"concurrency": 4, "throughput_rps": 2000.0, "latency_ms": lat, "error_rate": 0.0}}


def test_open_loop_report_has_the_three_charts_with_their_series() -> None:
    page = render_html(_open_loop_result())
    for chart in ("chart-latency-time", "chart-latency-dist", "chart-throughput-time"):
        assert page.count(f'id="{chart}"') == 1
    for series in ("chart-latency-time-p50", "chart-latency-time-p99", "chart-latency-dist-latency",
                   "chart-throughput-time-sent", "chart-throughput-time-completed"):
        assert f'id="{series}"' in page


def test_open_loop_report_shows_the_failed_slo_and_error_kinds() -> None:
    page = render_html(_open_loop_result())
    assert "SLO MISSED" in page and 'id="slo-table"' in page
    assert "http_503" in page


def test_report_never_references_anything_external_even_for_a_hostile_target_name() -> None:
    # a target string crafted to inject markup must come out escaped, not as a live element
    page = render_html(_open_loop_result(target='http://127.0.0.1:1/"><script src="https://evil.example/x.js"></script>'))
    assert not EXTERNAL.search(page)
    assert "<script" not in page.lower()
    assert "&lt;script" in page
    assert "@import" not in page and not re.search(r"url\(", page)


def test_max_report_charts_throughput_by_concurrency() -> None:
    page = render_html(_max_result())
    assert 'id="chart-max-throughput"' in page and 'id="chart-max-latency"' in page
    assert 'id="steps-table"' in page
    assert not EXTERNAL.search(page)


def test_chart_scales_points_into_the_plot_area() -> None:
    svg = line_chart("c", "t", [("s", [(0.0, 0.0), (10.0, 5.0)])], "x", "y")
    points = re.search(r'id="c-s"[^>]*points="([^"]+)"', svg)
    assert points is not None
    (x0, y0), (x1, y1) = [tuple(map(float, p.split(","))) for p in points.group(1).split()]
    assert x0 < x1 and y0 > y1           # right and up
    assert 0 <= x0 and x1 <= 760 and 0 <= y1 and y0 <= 300


def test_empty_chart_says_no_data_instead_of_failing() -> None:
    svg = line_chart("c", "t", [("s", [])], "x", "y")
    assert "no data" in svg


@pytest.mark.parametrize("mode_result", [_open_loop_result, _max_result])
def test_report_is_one_complete_html_document(mode_result: Any) -> None:
    page = render_html(mode_result())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == page.count("</svg>") >= 2
