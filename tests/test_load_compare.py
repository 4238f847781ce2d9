"""``compare``: the naive peer in a subprocess and a gateway target under the same max test."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from load.compare import compare, free_port, ratio_summary, render_ratio
from load.peer import generate_keys, make_app, make_corpus, utc_now
from load.scenarios import get_scenario, load_corpus


def _peak(rps: float, conc: int, p50: float, p99: float) -> dict[str, Any]:
    return {"peak": {"throughput_rps": rps, "concurrency": conc, "latency_ms": {"p50": p50, "p99": p99},
                     "error_rate": 0.0}}


def test_ratio_is_gateway_peak_over_peer_peak() -> None:
    s = ratio_summary(_peak(4000.0, 16, 3.0, 8.0), _peak(1000.0, 32, 20.0, 60.0))
    assert s["throughput_ratio"] == 0.25
    assert (s["peer_peak_concurrency"], s["gateway_peak_concurrency"]) == (16, 32)
    text = render_ratio(s)
    assert "gateway / peer throughput ratio: 0.250" in text


def test_ratio_with_a_dead_peer_is_zero_not_a_crash() -> None:
    assert ratio_summary(_peak(0.0, 1, 0.0, 0.0), _peak(10.0, 1, 1.0, 1.0))["throughput_ratio"] == 0.0


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_compare_runs_the_peer_subprocess_and_the_gateway_in_one_run(tmp_path: Path) -> None:
    keys = generate_keys()
    gateway_corpus = make_corpus(keys, 20, utc_now())
    peer_port = free_port()

    async def go() -> dict[str, Any]:
        async with TestServer(make_app(keys.public_key), host="127.0.0.1") as gateway:
            return await compare(get_scenario("verify"), f"http://127.0.0.1:{gateway.port}", gateway_corpus,
                                 step_duration_s=0.3, steps=(1, 2), timeout_s=2.0, seed=1, token_provider=None,
                                 work_dir=tmp_path, peer_port=peer_port, corpus_size=30, progress=None)

    r = asyncio.run(go())
    assert r["peer"]["target"] == f"http://127.0.0.1:{peer_port}"
    assert r["peer"]["peak"]["throughput_rps"] > 50 and r["gateway"]["peak"]["throughput_rps"] > 50
    peer_verdicts = r["peer"]["steps"][0]["verdicts"]
    assert peer_verdicts.get("valid", 0) > 0 and peer_verdicts.get("invalid", 0) > 0   # the peer knows its keys
    s = r["summary"]
    assert s["throughput_ratio"] == pytest.approx(s["gateway_peak_rps"] / s["peer_peak_rps"], rel=1e-3)
    assert len(load_corpus(tmp_path / "peer-corpus.jsonl")) == 30
    assert not _port_open(peer_port)   # the peer subprocess was stopped
