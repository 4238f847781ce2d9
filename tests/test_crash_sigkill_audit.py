"""Crash test: the real gateway, killed with SIGKILL at random moments under load.

``python -m gateway serve --demo`` runs as a subprocess (its own process group) with the
SQLite backend (one worker, and two workers sharing the file) and with PostgreSQL (two
workers appending to one chain). A closed-loop client keeps 16 verify / verify-batch
requests in flight; the whole process group is killed with SIGKILL at random moments
(seeded) and restarted, several times. Afterwards:

* every answer the client received as successful (200 with a receipt) has its audit
  record: same request id, and the record's ``extra.receipt`` is the hash of the receipt the
  client holds (one record per batch entry);
* ``python -m gateway audit verify`` (a subprocess, as an operator runs it) passes.

The counts are printed (run with ``-s`` to see them). A gateway process always runs on the
real clock, so these tests use it too. Every process started here is killed in ``finally``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from gateway.audit_wiring import receipt_hash

from .pg_fixture import drop_schema, new_schema_name, pg_dsn  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT_PUBLIC = REPO / "certs" / "audit" / "checkpoint.test-public.pem"
KILLS = 4
CONCURRENCY = 16
REGIONS = ("330500", "320500", "310000", "340100")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999   # Linux's default


def free_port() -> int:
    """A port for the gateway whose next one (the demo regions' port, ``serve --demo``'s default) is
    free too, both outside the kernel's ephemeral range. A port from ``bind(0)`` is an ephemeral one,
    and under this test's load the kernel hands out ephemeral ports as the clients' source ports: once
    a restart after a kill found its demo-regions port (the gateway's + 1) taken by one (CI, session 17)."""
    low, high = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if low <= port + 1 and port <= high:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no two free consecutive ports outside the ephemeral range")


def _group_alive(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that have not exited (a zombie has: its sockets are closed)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:   # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) ": state, ppid, pgrp...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """Until every process of the killed group has exited. Waiting for the serving process alone let
    a restart race the demo-regions child: SIGKILLed, but not yet dead (e.g. in a disk write), it
    still held its port, and the new one could not bind it (seen in session 16)."""
    deadline = time.monotonic() + timeout
    while (left := _group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"processes {left} of the killed group {pgid} still alive after {timeout} s"


class Gateway:
    """One ``serve --demo`` subprocess group; killed with SIGKILL and restarted on demand."""

    def __init__(self, port: int, workers: int, env: dict[str, str], log: Path) -> None:
        self.port, self.workers, self.env, self.log = port, workers, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--demo", "--port", str(self.port), "--workers",
             str(self.workers)], cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        wait_group_gone(self.proc.pid)
        self.proc = None

    async def wait_serving(self, session: aiohttp.ClientSession, body: dict[str, Any], headers: dict[str, str],
                           timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/v1/licences/verify"
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:  # a session of its own: the load's connections may all be busy
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as probe, \
                        probe.post(url, json=body, headers={**headers, "X-Request-Id": "probe"}) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"gateway not serving after {timeout}s:\n{self.log.read_text()[-3000:]}")


def demo_material(var_dir: Path, port: int) -> tuple[list[dict[str, Any]], str]:
    """Licences of the demo TEST framework in ``var_dir`` (made here, shared with the gateway) and a token."""
    from gateway.auth import demo_token
    from gateway.bootstrap import build_services
    from gateway.config import Settings

    settings = Settings(demo=True, var_dir=str(var_dir), port=port)
    services = build_services(settings)
    sim = services.simulator
    bodies = [sim.issue(region, None, case).body() for region in REGIONS for case in ("valid", "valid", "expired")]
    token = demo_token(settings.partners_dir, client_id="load-partner",  # high rate limit (TEST partner)
                       token_endpoint=settings.token_endpoint_url)["access_token"]
    return bodies, token


async def load_and_kill(gw: Gateway, bodies: list[dict[str, Any]], token: str, seed: int) -> dict[str, Any]:
    """Run the load, kill the gateway KILLS times at random moments, restart it each time."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    acked: dict[str, tuple[str, int]] = {}   # request id -> (the answer's receipt, entries it answered)
    failed = 0
    statuses: dict[int, int] = {}
    stop = asyncio.Event()
    counter = iter(range(10**9))
    base = f"http://127.0.0.1:{gw.port}"

    async def client(session: aiohttp.ClientSession, worker: int) -> None:
        nonlocal failed
        while not stop.is_set():
            n = next(counter)
            rid = f"crash-{seed}-{n}"
            if n % 5 == 4:
                path, body = "/v1/licences/verify-batch", {"licences": [bodies[(n + k) % len(bodies)] for k in range(3)]}
            else:
                path, body = "/v1/licences/verify", bodies[n % len(bodies)]
            try:
                async with session.post(base + path, json=body, headers={**headers, "X-Request-Id": rid}) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status == 200:
                        assert data["receipt"], data
                        acked[rid] = (data["receipt"], len(data["results"]) if "results" in data else 1)
                    else:
                        failed += 1
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                        await asyncio.sleep(0.05)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                failed += 1
                await asyncio.sleep(0.05)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        gw.start()
        await gw.wait_serving(session, bodies[0], headers)
        tasks = [asyncio.create_task(client(session, i)) for i in range(CONCURRENCY)]
        acked_at_kill = []
        try:
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.4, 1.6))
                acked_at_kill.append(len(acked))
                gw.kill()
                gw.start()
                await gw.wait_serving(session, bodies[0], headers)
            await asyncio.sleep(rng.uniform(0.4, 1.0))
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            gw.kill()
    assert all(b > a for a, b in zip([0, *acked_at_kill], acked_at_kill)), f"no progress between kills: {acked_at_kill}"
    return {"acked": acked, "failed": failed, "statuses": statuses, "acked_at_kill": acked_at_kill}


def audit_verify(store: str, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--store", store, *more, "--key",
                           str(CHECKPOINT_PUBLIC)], cwd=REPO, capture_output=True, text=True, timeout=120)


def check_and_report(name: str, run: dict[str, Any], rows: list[tuple[str, str]], verify: Any) -> None:
    recorded: dict[str, list[str]] = {}
    for rid, receipt in rows:
        recorded.setdefault(rid, []).append(receipt)
    acked = run["acked"]
    missing = [rid for rid in acked if rid not in recorded]
    assert missing == [], f"{len(missing)} answered requests without an audit record, e.g. {missing[:5]}"
    # one record per answered entry, each naming the receipt the client holds
    wrong = [rid for rid, (receipt, n) in acked.items() if recorded[rid] != [receipt_hash(receipt)] * n]
    assert wrong == [], f"records that do not match the receipt the client holds: {wrong[:5]}"
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("OK:"), verify.stdout
    entries = sum(n for _, n in acked.values())
    probes = sum(1 for rid, _ in rows if rid == "probe")
    print(f"\n[crash {name}] SIGKILLs={KILLS}; answered 200: {len(acked)} requests ({entries} audited entries); "
          f"refused or cut off: {run['failed']} (non-200 statuses {run['statuses']}); audit records: {len(rows)} "
          f"= {entries} answered + {probes} readiness probes + {len(rows) - entries - probes} committed whose answer "
          f"was lost in a kill; every answered entry has its record; {verify.stdout.strip()}")

@pytest.mark.parametrize("workers", [1, 2])
def test_sqlite_gateway_killed_repeatedly_keeps_a_record_of_every_answer(tmp_path, workers):
    import sqlite3

    port = free_port()
    var_dir = tmp_path / "var"
    db = tmp_path / "audit.sqlite3"
    bodies, token = demo_material(var_dir, port)
    env = {**os.environ, "GATEWAY_VAR_DIR": str(var_dir), "GATEWAY_AUDIT_BACKEND": "sqlite",
           "GATEWAY_AUDIT_PATH": str(db), "GATEWAY_AUDIT_CHECKPOINT_EVERY": "100", "GATEWAY_LOG_LEVEL": "WARNING"}
    gw = Gateway(port, workers, env, tmp_path / "gateway.log")
    try:
        run = asyncio.run(load_and_kill(gw, bodies, token, seed=20261127 + workers))
    finally:
        gw.kill()
    conn = sqlite3.connect(db)
    try:
        rows = [(rid, extra) for rid, extra in conn.execute("SELECT request_id, extra FROM audit_records")]
        seqs = [s for (s,) in conn.execute("SELECT seq FROM audit_records ORDER BY seq")]
    finally:
        conn.close()
    assert seqs == list(range(1, len(seqs) + 1))  # one gap-free chain, whatever the number of writers
    rows = [(rid, orjson.loads(extra).get("receipt")) for rid, extra in rows]
    check_and_report(f"sqlite workers={workers}", run, rows, audit_verify(f"sqlite:{db}"))


def test_postgres_gateway_with_two_workers_killed_repeatedly_keeps_a_record_of_every_answer(tmp_path, pg_dsn):  # noqa: F811
    port = free_port()
    var_dir = tmp_path / "var"
    schema = new_schema_name()
    bodies, token = demo_material(var_dir, port)
    env = {**os.environ, "GATEWAY_VAR_DIR": str(var_dir), "GATEWAY_AUDIT_BACKEND": "postgres",
           "GATEWAY_AUDIT_DSN": pg_dsn, "GATEWAY_AUDIT_PG_SCHEMA": schema, "GATEWAY_AUDIT_CHECKPOINT_EVERY": "100",
           "GATEWAY_LOG_LEVEL": "WARNING"}
    gw = Gateway(port, 2, env, tmp_path / "gateway.log")

    async def read_rows() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            rows = await conn.fetch(f"SELECT seq, request_id, extra FROM {schema}.audit_records ORDER BY seq")
        finally:
            await conn.close()
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        return [(r["request_id"], orjson.loads(r["extra"]).get("receipt")) for r in rows]

    try:
        run = asyncio.run(load_and_kill(gw, bodies, token, seed=20261127))
        rows = asyncio.run(read_rows())
        check_and_report("postgres workers=2", run, rows, audit_verify(pg_dsn, "--pg-schema", schema))
    finally:
        gw.kill()
        asyncio.run(drop_schema(pg_dsn, schema))

