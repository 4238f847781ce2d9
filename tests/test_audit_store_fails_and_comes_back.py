"""The audit store fails and comes back: the gateway answers 503 meanwhile and 200 again by itself.

Session 21 ran `serve --demo` (1 and 2 workers) on PostgreSQL and on SQLite under 40-50 verifies/s and
restarted PostgreSQL, terminated the gateway's connections, locked the records table, filled the disk
of the SQLite file and started the gateway with its directory read-only: every answer during the
outage was 503 AUDIT_UNAVAILABLE, every 200 had its record, and the gateway answered 200 again within
a second of the store's return without a restart (figures: the session's report). What it found and
these tests keep:

* a connection the server ends between two statements of a transaction raises asyncpg's
  ``InternalClientError`` (seen 6 times in ~25 terminations under load, in the commit path). The
  PostgreSQL sink's checkpoint, prune and reads did not count it as a store failure, and the trail's
  maintenance task, which caught only ``GatewayError``, ended on it: no more periodic checkpoints
  (nor their logged anchors), no reopening of a dead sink, no pruning, until a restart;
* a store that keeps failing logged one ERROR per failed batch (162 lines for a 3-second
  PostgreSQL restart at 50 requests/s): now the first failure, one summary per 5 s, and one line
  saying when it is back and what the outage cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.audit import CheckpointSigner, GroupCommitConfig, MemoryAuditSink, verify_chain
from gateway.audit import sink as sink_module
from gateway.audit.postgres import PostgresAuditSink
from gateway.audit_wiring import AUDIT, AuditTrail, audit_setup_from
from gateway.config import load_settings
from gateway.errors import AUDIT_UNAVAILABLE, InfrastructureError

from .conftest import NOW
from .pg_fixture import drop_schema, new_schema_name, pg_dsn  # noqa: F401  (fixture)
from .test_audit_chain import AUDIT_KEY, PUBLIC, T0, Clock, event

#: what asyncpg raised when the server ended a connection in the middle of the writer's transaction
ENDED_MID_TRANSACTION = asyncpg.exceptions.InternalClientError(
    "cannot switch to state 15; another operation (2) is in progress")


async def test_pg_gateway_answers_200_again_by_itself_after_its_connections_are_terminated(world, pg_dsn):  # noqa: F811
    """The operator's ``SELECT pg_terminate_backend(pid)`` on the gateway's connections: at most a few
    503 AUDIT_UNAVAILABLE, never a 200 without its record, 200 again within seconds, the chain intact."""
    schema = new_schema_name()
    settings = dataclasses.replace(world.settings, audit_backend="postgres", audit_dsn=pg_dsn, audit_pg_schema=schema)
    body = world.simulator.issue("330500", "id_card", "valid", NOW).body()
    statuses: dict[str, tuple[int, str | None]] = {}

    async def verify(client: TestClient, rid: str) -> int:
        resp = await client.post("/v1/licences/verify", json=body, headers={"X-Request-Id": rid})
        doc = await resp.json()
        statuses[rid] = (resp.status, doc.get("code"))
        return resp.status

    try:
        app = create_app(world.services(settings=settings))
        async with TestClient(TestServer(app), headers=world.auth()) as client:
            for i in range(3):
                assert await verify(client, f"before-{i}") == 200
            public = app[AUDIT].setup.checkpoints.public_key()
            pool = app[AUDIT].sink._pool
            pids = [h._con.get_server_pid() for h in pool._holders if h._con is not None and not h._con.is_closed()]
            assert pids
            killer = await asyncpg.connect(pg_dsn)
            try:
                assert await killer.fetchval("SELECT bool_and(pg_terminate_backend(p)) FROM unnest($1::int[]) p", pids)
            finally:
                await killer.close()
            start = time.monotonic()
            back_after = None
            for i in range(150):   # at most ~5 s
                if await verify(client, f"after-{i}") == 200:
                    back_after = time.monotonic() - start
                    break
                await asyncio.sleep(0.03)
            assert back_after is not None and back_after < 3.0, statuses
            for i in range(3):
                assert await verify(client, f"then-{i}") == 200
        refused = {s for s in statuses.values() if s[0] != 200}
        print(f"terminated {len(pids)} connections: {sum(s[0] == 503 for s in statuses.values())} answers 503, "
              f"200 again after {back_after:.2f} s")
        assert refused <= {(503, "AUDIT_UNAVAILABLE")}, refused
        conn = await asyncpg.connect(pg_dsn)
        try:
            stored = {r["request_id"] for r in await conn.fetch(f"SELECT request_id FROM {schema}.audit_records")}
        finally:
            await conn.close()
        assert {rid for rid, s in statuses.items() if s[0] == 200} <= stored
        sink = await PostgresAuditSink.open(pg_dsn, schema=schema)
        try:
            report = await verify_chain(sink, public)
            assert report.ok, report
        finally:
            await sink.close()
    finally:
        await drop_schema(pg_dsn, schema)


async def test_pg_checkpoint_on_a_connection_ended_mid_transaction_is_audit_unavailable(
        pg_dsn, monkeypatch):  # noqa: F811
    """Before: the InternalClientError left ``checkpoint`` as itself, not AUDIT_UNAVAILABLE (and ended the
    maintenance task, below); reads (the console's search) answered it 500 INTERNAL instead of 503."""
    schema = new_schema_name()
    signer = CheckpointSigner(AUDIT_KEY, "test-audit-1")
    sink = await PostgresAuditSink.open(pg_dsn, schema=schema, signer=signer, clock=Clock(T0))
    try:
        await sink.append(event(1))

        async def ended(*args, **kwargs):
            raise ENDED_MID_TRANSACTION

        with monkeypatch.context() as m:
            m.setattr(asyncpg.connection.Connection, "fetchval", ended)
            m.setattr(asyncpg.connection.Connection, "fetch", ended)
            with pytest.raises(InfrastructureError) as exc:
                await sink.checkpoint()
            assert exc.value.reason is AUDIT_UNAVAILABLE
            with pytest.raises(InfrastructureError) as exc:
                await sink.read_records(0, 10)
            assert exc.value.reason is AUDIT_UNAVAILABLE
        assert (await sink.checkpoint()).seq == 1          # the store is back: the same calls work
        assert (await sink.append(event(2))).seq == 2
        assert (await verify_chain(sink, signer.public_key())).ok
    finally:
        await sink.close()
        await drop_schema(pg_dsn, schema)


def _trail() -> AuditTrail:
    setup = dataclasses.replace(audit_setup_from(load_settings(demo=True)), backend="memory", checkpoint_seconds=0.05)
    return AuditTrail(setup, lambda: T0 + timedelta(0))


async def test_maintenance_outlives_an_unexpected_store_exception_and_signs_the_next_checkpoint(monkeypatch):
    """Before: the task ended with the exception (and at shutdown ``audit_ctx`` re-raised it before the
    closing checkpoint); no periodic checkpoint was signed again until a restart."""
    monkeypatch.setattr("gateway.audit_wiring._WATCH_SECONDS", 0.05)
    trail = _trail()
    await trail.open()
    sink = trail.sink
    real = sink.checkpoint
    calls = []

    async def checkpoint():
        calls.append(1)
        if len(calls) == 1:
            raise ENDED_MID_TRANSACTION
        return await real()

    monkeypatch.setattr(sink, "checkpoint", checkpoint)
    await trail.append(event(1))
    task = asyncio.create_task(trail.maintain())
    try:
        for _ in range(100):
            if sink.checkpoint_table or task.done():
                break
            await asyncio.sleep(0.02)
        assert not task.done(), task.exception()
        assert len(calls) >= 2 and 1 in sink.checkpoint_table
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await trail.close()


async def test_maintenance_keeps_reopening_a_store_whose_open_fails_unexpectedly(monkeypatch):
    monkeypatch.setattr("gateway.audit_wiring._RETRY_OPEN_SECONDS", 0.05)
    trail = _trail()
    real_open = AuditTrail.open
    attempts = []

    async def flaky_open(self):
        attempts.append(1)
        if len(attempts) == 1:
            raise ENDED_MID_TRANSACTION
        await real_open(self)

    monkeypatch.setattr(AuditTrail, "open", flaky_open)
    task = asyncio.create_task(trail.maintain())
    try:
        for _ in range(100):
            if trail.sink is not None or task.done():
                break
            await asyncio.sleep(0.02)
        assert not task.done(), task.exception()
        assert trail.sink is not None and len(attempts) == 2
        assert (await trail.append(event(1))).seq == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await trail.close()


async def test_a_store_that_keeps_failing_logs_once_then_a_summary_and_says_when_it_is_back(caplog, monkeypatch):
    monkeypatch.setattr(sink_module, "FAILURE_LOG_EVERY_SECONDS", 0.3, raising=False)
    sink = await MemoryAuditSink.open(signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"), clock=Clock(T0),
                                      config=GroupCommitConfig(window=0))
    try:
        sink.fail_with = ConnectionRefusedError(111, "Connection refused")
        with caplog.at_level(logging.INFO, logger="gateway.audit"):
            for i in range(1, 41):   # one batch each: a store that refuses at once
                with pytest.raises(InfrastructureError):
                    await sink.append(event(i))
            await asyncio.sleep(0.35)
            with pytest.raises(InfrastructureError):
                await sink.append(event(41))
            sink.fail_with = None
            assert (await sink.append(event(42))).seq == 1
            assert (await sink.append(event(43))).seq == 2
        lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "gateway.audit"]
        assert len(lines) == 3, lines
        assert lines[0] == ("ERROR", "audit batch of 1 failed: ConnectionRefusedError: [Errno 111] Connection refused")
        assert lines[1][0] == "ERROR" and "still failing" in lines[1][1]
        assert "40 more batches (40 records)" in lines[1][1]
        assert lines[2][0] == "WARNING" and lines[2][1].startswith("audit store back") \
            and "41 batches (41 records) failed" in lines[2][1]
        assert sink.stats.failed_batches == 41
        assert (await verify_chain(sink, PUBLIC)).ok
    finally:
        await sink.close()


async def test_the_writer_process_s_failure_names_the_sqlite_error_not_runtime_error(tmp_path: Path) -> None:
    """A batch the SQLite writer process could not commit was answered 503 "audit store failed:
    RuntimeError" (the process reports its error as text, and the sink wrapped it in a RuntimeError): the
    operator saw nothing of the cause there. It now names the type the writer reported."""
    import sqlite3

    from gateway.audit import CheckpointSigner, GroupCommitConfig
    from gateway.audit.sqlite_process import SqliteProcessAuditSink
    from gateway.errors import AUDIT_UNAVAILABLE, InfrastructureError
    from tests.test_audit_chain import AUDIT_KEY, T0, Clock, event

    path = tmp_path / "audit.db"
    sink = await SqliteProcessAuditSink.open(path, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"), clock=Clock(T0),
                                             config=GroupCommitConfig(checkpoint_every=20))
    try:
        await sink.append(event(1))
        with sqlite3.connect(path) as db:   # every further insert refused, as a full disk refuses it
            db.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN "
                       "SELECT RAISE(ABORT, 'refused by the test'); END")
        with pytest.raises(InfrastructureError) as exc:
            await sink.append(event(2))
        assert exc.value.reason is AUDIT_UNAVAILABLE
        assert exc.value.detail == "audit store failed: IntegrityError"
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER refuse")
        assert (await sink.append(event(3))).seq == 2   # back by itself, the chain gap-free
    finally:
        await sink.close()
