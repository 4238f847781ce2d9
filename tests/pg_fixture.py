"""PostgreSQL fixtures for the audit tests (import them into a test module).

The DSN comes from GATEWAY_TEST_PG_DSN, else from ``scripts/pg.sh start`` (which installs,
initialises and starts a throw-away server under var/pg; ``./dev test`` runs it through
scripts/test-services.sh before pytest). When neither gives a reachable server the tests
FAIL with the reason -- they are never skipped. A server this fixture started itself is
stopped again at the end of the session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

REPO = Path(__file__).resolve().parent.parent
PG_SH = REPO / "scripts" / "pg.sh"
DSN_ENV = "GATEWAY_TEST_PG_DSN"

#: TEST key for audit checkpoints -- a fixed, public seed; never use it outside tests
TEST_AUDIT_KEY_SEED = bytes(range(32))


def _start_server() -> tuple[str, bool]:
    was_running = subprocess.run([str(PG_SH), "status"], capture_output=True).returncode == 0
    proc = subprocess.run([str(PG_SH), "start"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(f"PostgreSQL is needed by the audit tests and could not be started by scripts/pg.sh "
                    f"(exit {proc.returncode}). Set {DSN_ENV} to a reachable server or fix the script.\n"
                    f"stderr:\n{proc.stderr[-2000:]}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1], not was_running


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    dsn = os.environ.get(DSN_ENV)
    started = False
    if not dsn:
        dsn, started = _start_server()

    async def ping() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        await conn.close()

    try:
        # in a thread of its own: this fixture may be first requested from inside a running loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, ping()).result()
    except Exception as exc:  # noqa: BLE001 - any reason is reported, never skipped
        pytest.fail(f"PostgreSQL at {dsn} is not reachable: {type(exc).__name__}: {exc}", pytrace=False)
    yield dsn
    if started:
        subprocess.run([str(PG_SH), "stop"], capture_output=True, timeout=120)


def new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


async def drop_schema(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def pg_schema(pg_dsn: str) -> object:
    """A fresh schema name for one test; dropped afterwards."""
    name = new_schema_name()
    yield name
    await drop_schema(pg_dsn, name)


# --- the worker of the two-process test (module level so 'spawn' can import it) -----------
def append_worker(dsn: str, schema: str, worker: int, count: int, out: object, barrier: object) -> None:
    """Run in a child process: open a sink, wait for the other worker (``barrier``), append
    ``count`` events in concurrent waves of 10, report the seqs it was given."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.audit import AuditEvent, CheckpointSigner, GroupCommitConfig
    from gateway.audit.postgres import PostgresAuditSink

    async def main() -> list[int]:
        signer = CheckpointSigner(Ed25519PrivateKey.from_private_bytes(TEST_AUDIT_KEY_SEED), "test-audit-1")
        sink = await PostgresAuditSink.open(dsn, schema=schema, signer=signer,
                                            config=GroupCommitConfig(checkpoint_every=40))
        await asyncio.to_thread(barrier.wait, 60)  # type: ignore[attr-defined]
        t0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
        seqs: list[int] = []
        try:
            for wave in range(0, count, 10):
                evs = [AuditEvent(kind="verify", time=t0 + timedelta(seconds=i), request_id=f"w{worker}-{i}",
                                  partner=f"partner-{worker}", verdict="valid")
                       for i in range(wave, min(count, wave + 10))]
                receipts = await asyncio.gather(*(sink.append(e) for e in evs))
                seqs.extend(r.seq for r in receipts)
        finally:
            await sink.close()
        return seqs

    out.put((worker, asyncio.run(main())))  # type: ignore[attr-defined]
