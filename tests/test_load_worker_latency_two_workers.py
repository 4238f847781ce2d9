"""load/worker_latency.py against a real ``serve --workers 2``: every worker is reset and read
(a fresh connection per call until both processes answered), and the merged histograms count
exactly the answers sent, spread over both workers; without the admin scope the reset is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from load.compare import wait_healthy
from load.errors import LoadRefused
from load.tokens import auth_headers, oauth_token
from load.worker_latency import OPERATOR_CLIENT_ID, merged, read_workers, reset_workers

REPO = Path(__file__).resolve().parent.parent
SENT = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _scenario(url: str) -> tuple[list[int], dict, list[int]]:
    partner = oauth_token(url, scope="licences:verify")
    operator = oauth_token(url, client_id=OPERATOR_CLIENT_ID, scope="admin")
    headers = auth_headers(await partner())
    await operator()                       # both tokens issued (and their records written) before the reset
    reset = await reset_workers(url, operator, 2)
    answered_by = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for _ in range(SENT):              # a new connection each: both workers get some
            async with session.post(url + "/v1/licences/verify", headers=headers,
                                    json={"licence": "not a licence", "encoding": "utf-8"}) as resp:
                assert resp.status == 200 and (await resp.json())["verdict"] == "invalid"
        async with session.get(url + "/v1/admin/worker", headers=auth_headers(await operator())) as resp:
            assert resp.status == 200
    per_worker = await read_workers(url, operator, 2)
    for pid, lat in per_worker.items():
        answered_by.extend([pid] * lat["answers"]["verify"]["count"])
    with pytest.raises(LoadRefused) as refused:
        await reset_workers(url, partner, 2)
    assert "403" in str(refused.value)
    return reset, per_worker, answered_by


def test_both_workers_are_reset_and_read_and_the_merge_counts_every_answer(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path / "var"), "GATEWAY_AUDIT_BACKEND": "memory",
           "GATEWAY_DEMO_REGIONS_PORT": str(_free_port())}
    with (tmp_path / "stderr.log").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--demo", "--workers", "2", "--port",
                                 str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        asyncio.run(wait_healthy(url, proc, timeout_s=90))
        time.sleep(0.5)                    # the second worker may still be binding
        reset, per_worker, answered_by = asyncio.run(_scenario(url))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(reset) == 2 and proc.pid not in reset
    assert sorted(per_worker) == reset
    assert len(answered_by) == SENT and len(set(answered_by)) == 2      # spread over both workers
    m = merged(per_worker)
    assert m["workers"] == 2 and m["answer"]["count"] == SENT
    assert 0 < m["answer"]["p50_ms"] <= m["answer"]["p99_ms"] <= m["answer"]["max_ms"]
    # one committed audit wait per answer, and on each worker the one of its last reset call's own record
    assert m["audit_wait"]["count"] == SENT + 2
