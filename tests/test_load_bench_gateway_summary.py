"""load/bench_gateway.py's summary: the targets judged from the repetitions' medians, and the
machine's pause penalty printed beside the CPU per request at half max and at max."""

from __future__ import annotations

import types

from load import bench_gateway as bench


def _rows() -> tuple[list[dict], dict, types.SimpleNamespace]:
    peer = [{"peak_rps": 3000.0, "generator_cpu_pct": 40.0, "server_cpu_us_per_request": 300.0},
            {"peak_rps": 4000.0, "generator_cpu_pct": 42.0, "server_cpu_us_per_request": 280.0},
            {"peak_rps": 3500.0, "generator_cpu_pct": 41.0, "server_cpu_us_per_request": 290.0}]
    gw = {"workers": 2,
          "single": [{"peak_rps": r, "generator_cpu_pct": 30.0, "server_cpu_us_per_request": 400.0}
                     for r in (4500.0, 5200.0, 4900.0)],
          "batch": [{"licences_per_s": v, "generator_cpu_pct": 20.0} for v in (20000.0, 22000.0, 19000.0)],
          "open": [{"p99_ms": p, "p50_ms": 5.0, "errors": 0, "mismatched": 0, "generator_cpu_pct": 30.0,
                    "server_cpu_us_per_request": 500.0} for p in (30.0, 9.0, 12.0)]}
    args = types.SimpleNamespace(reps=3, client="raw", corpus_size=500, batch_size=50)
    return peer, gw, args


def _machine(ratio_2ms: float) -> dict:
    return {"samples": 10, "steal_pct": 0.3, "idle": {"driver": "haltpoll", "governor": None, "guest_halt_poll_ns": "0"},
            "jobs": {"ES256 sign": {"back_to_back_us": 30.0, "after_pause": [
                {"gap_ms": 1.0, "slept_us": 60.0, "spun_us": 50.0, "slept_ratio": 2.0, "spun_ratio": 1.67},
                {"gap_ms": 2.0, "slept_us": 30.0 * ratio_2ms, "spun_us": 60.0, "slept_ratio": ratio_2ms,
                 "spun_ratio": 2.0}]}}}


def test_targets_are_judged_on_the_medians() -> None:
    peer, gw, args = _rows()
    s = bench.summarise(peer, gw, None, [12000.0, 13000.0, 12500.0], args)
    assert s["peer_max_rps"] == 3500.0 and s["gateway_max_rps"] == 4900.0
    assert s["ratio_of_medians"] == round(4900 / 3500, 3)
    assert s["p99_at_half_max_ms"] == 12.0 and s["half_max_rate"] == 2450.0
    assert s["batch_ratio"] == round(20000 / (2 * 12500), 3)
    text = bench.render(s)
    assert "target >= 1.3: MET" in text and "target <= 10 ms: MISSED" in text and "target >= 0.8: MET" in text
    assert "machine (load/bench_wake.py)" not in text      # no probe, no line


def test_the_machine_line_sets_the_pause_penalty_beside_the_cpu_at_half_max() -> None:
    peer, gw, args = _rows()
    s = bench.summarise(peer, gw, None, [12500.0], args, _machine(3.4))
    assert s["machine"]["es256_sign_after_2ms_pause"] == 3.4 and s["machine"]["es256_sign_back_to_back_us"] == 30.0
    line = next(x for x in bench.render(s).splitlines() if x.startswith("machine"))
    assert "costs 3.4x its back-to-back 30 µs" in line
    assert "at half max 500.0 µs vs 400.0 µs at max (1.25x)" in line


def _inside(answer_p99: float, wait_p99: float, workers: int = 2) -> dict:
    return {"workers": workers, "answer": {"count": 1000, "p50_ms": answer_p99 / 3, "p99_ms": answer_p99},
            "audit_wait": {"count": 1000, "p50_ms": wait_p99 / 3, "p99_ms": wait_p99},
            "loop_lag": {"count": 200, "p50_ms": 1.0, "p99_ms": wait_p99 / 2}}


def test_the_gateway_s_own_histograms_are_reported_as_medians_beside_the_client_s() -> None:
    peer, gw, args = _rows()
    for row, (a, w), svc in zip(gw["open"], ((12.0, 6.0), (9.0, 3.0), (30.0, 15.0)), (21.0, 15.0, 40.0)):
        row["in_gateway"] = _inside(a, w)
        row["service_p50_ms"], row["service_p99_ms"] = 5.0, svc
    s = bench.summarise(peer, gw, None, [12500.0], args)
    i = s["in_gateway_at_half_max"]
    assert (i["answer_p99_ms"], i["audit_wait_p99_ms"], i["answer_p50_ms"], i["workers_read"]) == (12.0, 6.0, 4.0, 2)
    line = next(x for x in bench.render(s).splitlines() if "inside the gateway" in x)
    assert "answer p50 4.0 ms p99 12.0 ms" in line and "audit commit p50 2.0 ms p99 6.0 ms" in line
    assert "event-loop lag p50 1.0 ms p99 3.0 ms" in line and "from its send to the answer: p50 5.0 ms p99 21.0 ms" in line
    assert "only" not in line


def test_a_worker_not_reached_is_said_and_a_run_without_histograms_adds_no_line() -> None:
    peer, gw, args = _rows()
    gw["open"][0]["in_gateway"] = _inside(12.0, 6.0, workers=1)
    s = bench.summarise(peer, gw, None, [12500.0], args)
    assert "(only 1 of 2 workers reached)" in bench.render(s)
    peer, gw, args = _rows()
    s = bench.summarise(peer, gw, None, [12500.0], args)
    assert "in_gateway_at_half_max" not in s and "inside the gateway" not in bench.render(s)


def test_constant_arrival_runs_are_shown_beside_the_poisson_target_not_judged() -> None:
    peer, gw, args = _rows()
    gw["open_constant"] = [{"p99_ms": p, "p50_ms": 3.0, "errors": e, "mismatched": 0} for p, e in
                           ((8.0, 0), (6.5, 1), (7.0, 0))]
    s = bench.summarise(peer, gw, None, [12500.0], args)
    assert s["p99_at_half_max_constant_ms"] == 7.0 and s["p50_at_half_max_constant_ms"] == 3.0
    assert s["open_constant_errors"] == 1
    text = bench.render(s)
    assert "target <= 10 ms: MISSED" in text  # judged on the Poisson runs (median 12 ms), not the constant ones
    line = next(x for x in text.splitlines() if "constant arrivals" in x)
    assert "p50 3.00 ms   p99 7.00 ms" in line and "wrong verdicts 1" in line
    assert "constant arrivals" not in bench.render(bench.summarise(*_rows()[:2], None, [12500.0], args))
