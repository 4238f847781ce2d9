"""Open-loop and closed-loop runs against the naive peer started in-process (aiohttp TestServer)."""

from __future__ import annotations

import asyncio
import io
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from load.cli import write_outputs
from load.peer import generate_keys, make_app, make_corpus, utc_now
from load.runner import RESULT_SCHEMA, MaxConfig, OpenLoopConfig, run_max, run_open_loop, verdicts_of
from load.scenarios import CorpusEntry, RequestPicker, get_scenario
from load.stats import decode_histogram
from load.tokens import static_token

KEYS = generate_keys()
CORPUS = make_corpus(KEYS, 40, utc_now(), invalid_share=0.25, seed=11)
PLAIN = [CorpusEntry(kind="verify", path="/v1/licences/verify", body={"licence": "x"})]


async def _with_server(app: web.Application, body: Callable[[str], Awaitable[Any]]) -> Any:
    async with TestServer(app, host="127.0.0.1") as server:
        return await body(f"http://127.0.0.1:{server.port}")


def _open(target: str, rate: float, duration: float, **kw: Any) -> OpenLoopConfig:
    return OpenLoopConfig(target=target, scenario=get_scenario("smoke"), rate=rate, duration_s=duration, **kw)


def _picker(corpus: list[CorpusEntry] = CORPUS) -> RequestPicker:
    return RequestPicker.build(get_scenario("smoke"), corpus, seed=3)


def _serial_app(service_s: float) -> web.Application:
    """A server that handles one request at a time, each taking ``service_s``."""
    lock = asyncio.Lock()

    async def verify(request: web.Request) -> web.Response:
        async with lock:
            await asyncio.sleep(service_s)
        return web.json_response({"verdict": "valid", "reasons": []})

    app = web.Application()
    app.router.add_post("/v1/licences/verify", verify)
    return app


def _accounting_holds(r: dict[str, Any]) -> None:
    c = r["counts"]
    assert c["scheduled"] == c["sent"] + c["dropped"]
    assert c["sent"] == c["responses"] + c["timeout"] + c["connection"] + c["client"]
    assert c["errors"] == sum(r["errors"].values())
    assert sum(int(v) for v in r["status"].values()) == c["responses"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """One 2-second open-loop run at 40 req/s against the in-process naive peer."""
    progress = io.StringIO()

    async def body(url: str) -> dict[str, Any]:
        return await run_open_loop(_open(url, 40.0, 2.0, arrivals="constant"), _picker(), progress=progress)

    result = asyncio.run(_with_server(make_app(KEYS.public_key), body))
    out = tmp_path_factory.mktemp("smoke")
    write_outputs(result, out)
    return result, progress.getvalue(), out


def test_smoke_run_counts_add_up_and_nothing_failed(smoke: tuple[dict[str, Any], str, Path]) -> None:
    r, _, _ = smoke
    _accounting_holds(r)
    assert r["counts"]["scheduled"] == 80
    assert r["counts"]["responses"] == 80 and r["counts"]["ok"] == 80
    assert r["errors"] == {} and r["error_rate"] == 0.0
    assert r["status"] == {"200": 80}
    assert r["throughput_rps"] == pytest.approx(40.0)


def test_smoke_run_verdict_mix_matches_the_corpus_expectations(smoke: tuple[dict[str, Any], str, Path]) -> None:
    r, _, _ = smoke
    assert sum(r["verdicts"].values()) == 80
    expected_valid = sum(1 for e in CORPUS if e.expect == "valid") * 2   # 40 lines, each used twice
    assert r["verdicts"]["valid"] == expected_valid
    assert r["verdicts"]["invalid"] == 80 - expected_valid > 0
    assert r["expectation"] == {"checked": 80, "mismatched": 0, "mismatch_rate": 0.0}


def test_smoke_run_percentiles_are_monotone(smoke: tuple[dict[str, Any], str, Path]) -> None:
    r, _, _ = smoke
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"] < 1000
    curve = r["latency_curve_ms"]
    assert [p for p, _ in curve] == sorted(p for p, _ in curve)
    values = [v for _, v in curve]
    assert values == sorted(values) and values[-1] == pytest.approx(lat["max"], rel=0.01)
    assert decode_histogram(r["histogram_hdr"]).get_total_count() == 80


def test_smoke_run_timeline_sums_to_the_totals(smoke: tuple[dict[str, Any], str, Path]) -> None:
    r, _, _ = smoke
    tl = r["timeline"]
    assert [row["second"] for row in tl] == list(range(len(tl)))
    assert sum(row["sent"] for row in tl) == 80
    assert sum(row["completed"] for row in tl) == 80
    assert tl[0]["sent"] == 40 and tl[1]["sent"] == 40
    assert all(row["p50_ms"] <= row["p99_ms"] for row in tl if row["p50_ms"] is not None)


def test_smoke_result_json_has_the_documented_fields(smoke: tuple[dict[str, Any], str, Path]) -> None:
    r, _, out = smoke
    on_disk = orjson.loads((out / "result.json").read_bytes())
    for key in ("schema", "mode", "scenario", "target", "started_at", "config", "counts", "errors", "status",
                "verdicts", "expectation", "latency_ms", "latency_curve_ms", "service_time_ms", "dispatch_lag_ms",
                "throughput_rps", "error_rate", "timeline", "histogram_hdr", "cpu"):
        assert key in on_disk, key
    assert on_disk["schema"] == RESULT_SCHEMA and on_disk["mode"] == "open-loop"
    assert on_disk["config"]["rate"] == 40.0 and on_disk["config"]["arrivals"] == "constant"
    cpu = on_disk["cpu"]
    assert cpu["wall_s"] >= 2.0 and cpu["process_cpu_s"] > 0
    assert cpu["percent_of_one_core"] == pytest.approx(100 * cpu["process_cpu_s"] / cpu["wall_s"], abs=0.1)


def test_smoke_progress_is_printed_about_once_a_second(smoke: tuple[dict[str, Any], str, Path]) -> None:
    _, progress, _ = smoke
    lines = [ln for ln in progress.splitlines() if ln.startswith("[load]")]
    assert 2 <= len(lines) <= 4
    assert re.search(r"sent=\d+ rate=\d+/s p99=[\d.]+ms errors=0", lines[0])
    assert lines[-1].endswith("done") and "sent=80 " in lines[-1]


def test_smoke_html_report_has_the_charts_and_no_external_urls(smoke: tuple[dict[str, Any], str, Path]) -> None:
    _, _, out = smoke
    page = (out / "report.html").read_text(encoding="utf-8")
    for chart in ("chart-latency-time", "chart-latency-dist", "chart-throughput-time"):
        assert f'id="{chart}"' in page
    assert not re.search(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", page, re.I)
    assert "<script src" not in page.lower()


def test_saturated_server_shows_queueing_delay_measured_from_intended_time() -> None:
    """40 req/s offered to a server that serves 20/s one at a time: a closed-loop tool would see
    ~50 ms each; measured from the intended send time the queue shows, up to ~0.5 s."""

    async def body(url: str) -> dict[str, Any]:
        return await run_open_loop(_open(url, 40.0, 0.5, max_in_flight=100), _picker(PLAIN), progress=None)

    r = asyncio.run(_with_server(_serial_app(0.05), body))
    _accounting_holds(r)
    assert r["counts"]["responses"] == 20 and r["counts"]["dropped"] == 0
    assert r["latency_ms"]["min"] >= 45.0
    assert r["latency_ms"]["max"] >= 450.0     # the last request waited behind 19 others
    assert r["latency_ms"]["p50"] >= 200.0
    assert r["service_time_ms"]["max"] >= 450.0  # the queue is in the server, so it is service time too


def test_arrivals_beyond_the_in_flight_cap_are_dropped_and_counted_as_errors() -> None:
    async def body(url: str) -> dict[str, Any]:
        return await run_open_loop(_open(url, 40.0, 0.5, max_in_flight=2), _picker(PLAIN), progress=None)

    r = asyncio.run(_with_server(_serial_app(0.1), body))
    _accounting_holds(r)
    c = r["counts"]
    assert c["scheduled"] == 20
    assert c["dropped"] >= 10 and c["sent"] <= 10
    assert r["errors"]["dropped"] == c["dropped"]
    assert r["error_rate"] == pytest.approx(c["dropped"] / 20)
    assert sum(row["dropped"] for row in r["timeline"]) == c["dropped"]


def test_requests_outliving_the_timeout_count_as_timeouts_at_their_elapsed_time() -> None:
    async def body(url: str) -> dict[str, Any]:
        return await run_open_loop(_open(url, 10.0, 0.3, timeout_s=0.2), _picker(PLAIN), progress=None)

    r = asyncio.run(_with_server(_serial_app(1.0), body))
    _accounting_holds(r)
    assert r["counts"]["timeout"] == 3 and r["counts"]["responses"] == 0
    assert r["error_rate"] == 1.0
    assert r["latency_ms"]["min"] >= 190.0


def test_connection_refused_counts_connection_errors_and_records_no_latency() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # closed again before the run: nothing listens there

    async def go() -> dict[str, Any]:
        return await run_open_loop(_open(f"http://127.0.0.1:{port}", 10.0, 0.5), _picker(PLAIN), progress=None)

    r = asyncio.run(go())
    _accounting_holds(r)
    assert r["counts"]["connection"] == 5 and r["errors"] == {"connection": 5}
    assert r["latency_ms"]["count"] == 0 and r["latency_curve_ms"] == []


def test_bearer_token_is_sent_and_a_wrong_one_shows_as_http_401() -> None:
    app = make_app(KEYS.public_key, require_token="test-token-for-load")

    async def body(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        good = await run_open_loop(_open(url, 20.0, 0.25), _picker(), static_token("test-token-for-load"),
                                   progress=None)
        bad = await run_open_loop(_open(url, 20.0, 0.25), _picker(), static_token("stale-token"), progress=None)
        return good, bad

    good, bad = asyncio.run(_with_server(app, body))
    assert good["status"] == {"200": 5} and good["errors"] == {}
    assert bad["status"] == {"401": 5} and bad["errors"] == {"http_401": 5}
    assert bad["verdicts"] == {} and bad["expectation"]["checked"] == 0


def test_closed_loop_max_steps_up_and_reports_the_peak() -> None:
    async def body(url: str) -> dict[str, Any]:
        cfg = MaxConfig(target=url, scenario=get_scenario("verify"), step_duration_s=0.3, concurrency_steps=(1, 4))
        return await run_max(cfg, RequestPicker.build(get_scenario("verify"), CORPUS, seed=1), progress=None)

    r = asyncio.run(_with_server(make_app(KEYS.public_key), body))
    assert r["mode"] == "closed-loop-max"
    assert [s["concurrency"] for s in r["steps"]] == [1, 4]
    best = max(r["steps"], key=lambda s: s["ok_throughput_rps"])
    assert r["peak"]["concurrency"] == best["concurrency"]
    assert r["peak"]["throughput_rps"] == best["ok_throughput_rps"] > 50
    for s in r["steps"]:
        c = s["counts"]
        assert c["sent"] == c["responses"] and c["errors"] == 0
        assert s["verdicts"]["valid"] > 0 and s["verdicts"]["invalid"] > 0


def test_closed_loop_max_stops_stepping_when_errors_pile_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go() -> dict[str, Any]:
        cfg = MaxConfig(target=f"http://127.0.0.1:{port}", scenario=get_scenario("verify"), step_duration_s=0.2,
                        concurrency_steps=(1, 2, 4))
        return await run_max(cfg, RequestPicker.build(get_scenario("verify"), PLAIN, seed=1), progress=None)

    r = asyncio.run(go())
    assert len(r["steps"]) == 1 and r["steps"][0]["error_rate"] == 1.0


@pytest.mark.parametrize("kind,payload,expected", [
    ("verify", {"verdict": "valid", "reasons": []}, ["valid"]),
    ("batch", {"results": [{"verdict": "valid"}, {"verdict": "indeterminate"}, "junk"]},
     ["valid", "indeterminate", "unparsed"]),
    ("check", {"outcome": "incomplete", "complete": False}, ["incomplete"]),
    ("check", {"verdict": "invalid"}, ["none"]),  # a check answers its outcome, not a verdict
    ("verify", {"status": "ok"}, ["none"]),
    ("verify", ["valid"], ["unparsed"]),
])
def test_verdicts_are_read_from_each_response_shape(kind: str, payload: Any, expected: list[str]) -> None:
    assert verdicts_of(kind, payload) == expected
