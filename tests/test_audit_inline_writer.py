"""The SQLite inline writer (gateway/audit/sqlite_inline.py): its own behaviour.

The chain-level behaviour (tamper detection, group commit, store failures, locked store, close)
runs against this sink in tests/test_audit_chain.py ("sqlite-inline"); here: commit spacing,
a database locked by another writer (the event loop keeps serving meanwhile), COMMIT off the
loop, and the fused chain/row builder equal to the reference chain."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import CheckpointSigner, GroupCommitConfig
from gateway.audit.chain import extend_chain
from gateway.audit.sqlite import _row_of, chained_rows
import gateway.audit.sqlite_inline as _inline
from gateway.audit.sqlite_inline import SqliteInlineAuditSink
from tests.test_audit_chain import AUDIT_KEY, T0, Clock, event, verified_sqlite_file


async def open_sink(path: Path, **config: Any) -> SqliteInlineAuditSink:
    return await SqliteInlineAuditSink.open(path, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"), clock=Clock(T0),
                                            config=GroupCommitConfig(checkpoint_every=20, **config))


def test_fused_chain_rows_equal_the_reference_chain_and_rows() -> None:
    bodies = [event(i).body() for i in range(1, 40)]
    params, receipts = chained_rows(7, "ab" * 32, bodies)
    recs = extend_chain(7, "ab" * 32, bodies)
    assert params == [v for r in recs for v in _row_of(r.seq, r.prev_hash, r.hash, r.body)]
    assert [(r.seq, r.hash) for r in receipts] == [(r.seq, r.hash) for r in recs]


async def test_appends_of_one_loop_pass_share_one_commit(tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.0)
    try:
        got = await asyncio.gather(*(sink.append(event(i)) for i in range(1, 31)))
        assert [r.seq for r in got] == list(range(1, 31))
        assert sink.stats.transactions == 1 and sink.stats.largest_batch == 30
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 30


async def test_commits_are_spaced_by_the_interval_and_a_lone_append_after_a_quiet_spell_waits_for_nothing(
        tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.05)
    try:
        await sink.append(event(1))                       # first commit: at once
        t0 = time.monotonic()
        await sink.append(event(2))                       # within the interval: waits for it
        waited = time.monotonic() - t0
        assert waited >= 0.03, waited
        # appends arriving while a commit waits for its slot join it: one more transaction for all
        before = sink.stats.transactions
        await asyncio.gather(*(sink.append(event(i)) for i in range(3, 13)))
        assert sink.stats.transactions == before + 1
        await asyncio.sleep(0.08)                         # a quiet spell longer than the interval
        t0 = time.monotonic()
        await sink.append(event(13))
        assert time.monotonic() - t0 < 0.03
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 13


async def test_a_database_locked_by_another_writer_is_retried_while_the_loop_keeps_serving(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = await open_sink(path, commit_interval=0.0)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await sink.append(event(1))
        other.execute("BEGIN IMMEDIATE")                  # another worker holds the write lock
        append = asyncio.create_task(sink.append(event(2)))
        ticks = 0
        for _ in range(20):                               # the loop is not blocked meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not append.done()
        threading.Timer(0.0, lambda: other.execute("COMMIT")).start()
        receipt = await asyncio.wait_for(append, 5)
        assert receipt.seq == 2
    finally:
        other.close()
        await sink.close()
    assert (await verified_sqlite_file(path)).records_checked == 2


@pytest.mark.parametrize("fsync_after_commit", [True, False])
async def test_a_large_batch_is_made_durable_off_the_event_loop_thread_and_a_small_one_on_it(
        tmp_path: Path, monkeypatch, fsync_after_commit: bool) -> None:
    import gateway.audit.sqlite_inline as inline

    threads: list[str] = []
    if fsync_after_commit:   # COMMIT on the loop, then the WAL's fsync: where does the fsync run?
        real_sync = SqliteInlineAuditSink._sync_wal

        def spy_sync(self: SqliteInlineAuditSink) -> None:
            threads.append(threading.current_thread().name)
            real_sync(self)

        monkeypatch.setattr(SqliteInlineAuditSink, "_sync_wal", spy_sync)
    else:                    # the fsync inside COMMIT: where does the COMMIT run?
        real = inline._commit

        def spy(conn: sqlite3.Connection) -> None:
            threads.append(threading.current_thread().name)
            real(conn)

        monkeypatch.setattr(inline, "_commit", spy)
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.0, inline_commit_max=4,
                           fsync_after_commit=fsync_after_commit, async_fsync=False)
    try:
        await asyncio.gather(*(sink.append(event(i)) for i in range(1, 11)))    # 10 records: the thread
        assert len(threads) == 1 and threads[0].startswith("audit-commit")
        await asyncio.gather(*(sink.append(event(i)) for i in range(11, 14)))   # 3 records: the loop
        assert len(threads) == 2 and threads[1] == threading.current_thread().name
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 13


def _synchronous(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA synchronous").fetchone()[0]


async def test_fsync_after_commit_releases_the_write_lock_before_the_fsync_and_answers_after_it(
        tmp_path: Path, monkeypatch) -> None:
    """The appending connection commits with synchronous=NORMAL (WAL written, lock released at once)
    and no waiter is answered before the WAL file's fsync has returned."""
    path = tmp_path / "audit.db"
    synced: list[int] = []
    lock_free_during_sync: list[bool] = []
    real_fsync = _inline._sync

    def spy_fsync(fd: int) -> None:
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")   # another worker can write while this fsync runs
            other.execute("ROLLBACK")
            lock_free_during_sync.append(True)
        except sqlite3.OperationalError:
            lock_free_during_sync.append(False)
        finally:
            other.close()
        real_fsync(fd)
        synced.append(os.fstat(fd).st_ino)

    import gateway.audit.sqlite_inline as inline

    monkeypatch.setattr(inline, "_sync", spy_fsync)
    sink = await open_sink(path, commit_interval=0.0, inline_commit_max=4, async_fsync=False)
    try:
        assert sink._a is not None and _synchronous(sink._a) == 1            # NORMAL
        receipts = await asyncio.gather(*(sink.append(event(i)) for i in range(1, 4)))   # on the loop
        assert [r.seq for r in receipts] == [1, 2, 3] and len(synced) == 1
        receipts = await asyncio.gather(*(sink.append(event(i)) for i in range(4, 14)))  # the thread
        assert receipts[-1].seq == 13 and len(synced) == 2
        assert synced == [os.stat(str(path) + "-wal").st_ino] * 2            # the WAL file itself
        assert lock_free_during_sync == [True, True]
    finally:
        await sink.close()
    assert (await verified_sqlite_file(path)).records_checked == 13


async def test_fsync_inside_commit_keeps_synchronous_full(tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db", fsync_after_commit=False)
    try:
        assert sink._a is not None and _synchronous(sink._a) == 2            # FULL
        assert (await sink.append(event(1))).seq == 1
    finally:
        await sink.close()


@pytest.mark.parametrize("inline_commit_max", [4, 0], ids=["fsync-on-the-loop", "fsync-on-the-commit-thread"])
async def test_a_failed_fsync_answers_503_and_the_next_batch_is_made_durable_again(tmp_path: Path, monkeypatch,
                                                                                     inline_commit_max: int) -> None:
    from gateway.errors import InfrastructureError

    import gateway.audit.sqlite_inline as inline

    real_fsync, failures = inline._sync, [1]

    def flaky(fd: int) -> None:
        if failures:
            failures.pop()
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(inline, "_sync", flaky)
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.0, inline_commit_max=inline_commit_max,
                           async_fsync=False)
    try:
        with pytest.raises(InfrastructureError) as err:      # stored, but not known durable: no answer
            await sink.append(event(1))
        assert err.value.reason.code == "AUDIT_UNAVAILABLE"
        assert (await sink.append(event(2))).seq == 2
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 2


async def test_close_commits_what_is_queued_and_then_refuses(tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.2)
    await sink.append(event(1))
    pending = [asyncio.create_task(sink.append(event(i))) for i in range(2, 6)]   # wait for their slot
    await asyncio.sleep(0)
    await sink.close()
    assert [t.result().seq for t in pending] == [2, 3, 4, 5]
    assert not sink.alive
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 5


def test_the_wal_is_synced_with_fdatasync_where_the_platform_has_it() -> None:
    assert _inline._sync is getattr(os, "fdatasync", os.fsync)


async def test_a_commit_slower_than_the_limit_is_logged_with_its_size_and_the_wal_length(tmp_path: Path, monkeypatch,
                                                                                        caplog) -> None:
    import logging

    import gateway.audit.sqlite_inline as inline

    real_sync = inline._sync
    slow = [True]

    def slow_disk(fd: int) -> None:      # a disk that stalls once, as this VM's does now and then
        if slow:
            slow.pop()
            time.sleep(inline.SLOW_COMMIT_S * 1.5)
        real_sync(fd)

    import io
    import json

    from gateway.app import REQUEST_ID
    from gateway.logging_setup import CURRENT_REQUEST, json_handler

    monkeypatch.setattr(inline, "_sync", slow_disk)
    caplog.set_level(logging.WARNING, logger="gateway.audit")
    out = io.StringIO()
    handler = json_handler(out)          # the gateway's own handler: personal-data filter, request id
    logging.getLogger("gateway.audit").addHandler(handler)
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.0, async_fsync=False)
    token = CURRENT_REQUEST.set({REQUEST_ID: "req-that-happened-to-start-the-drain"})  # type: ignore[arg-type]
    try:
        assert (await sink.append(event(1))).seq == 1
        assert (await sink.append(event(2))).seq == 2      # a fast commit: not logged
    finally:
        CURRENT_REQUEST.reset(token)
        logging.getLogger("gateway.audit").removeHandler(handler)
        await sink.close()
    slow_lines = [r for r in caplog.records if "from its start to durable" in r.getMessage()]
    assert len(slow_lines) == 1
    assert slow_lines[0].records == 1 and slow_lines[0].took_ms >= inline.SLOW_COMMIT_S * 1000
    assert slow_lines[0].wal_bytes > 0
    # a commit serves a batch: its line names no request (not the one that scheduled the drain)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines() if "from its start to durable" in ln]
    assert len(lines) == 1 and lines[0]["request_id"] is None and lines[0]["level"] == "WARNING"


async def test_a_wal_checkpoint_held_back_by_a_reader_is_logged_by_the_trail_maintenance(tmp_path: Path, monkeypatch,
                                                                                        caplog) -> None:
    import dataclasses
    import logging
    from datetime import timedelta

    import gateway.audit_wiring as wiring
    from gateway.audit_wiring import AuditTrail, audit_setup_from
    from gateway.config import load_settings

    monkeypatch.setattr(wiring, "WAL_WARN_PAGES", 1)   # any page a checkpoint could not copy
    caplog.set_level(logging.WARNING, logger="gateway.audit_wiring")
    settings = dataclasses.replace(load_settings(demo=True), audit_path=str(tmp_path / "audit.db"),
                                   audit_writer="inline")
    trail = AuditTrail(audit_setup_from(settings), lambda: T0 + timedelta(0))
    await trail.open()
    reader = sqlite3.connect(str(tmp_path / "audit.db"), isolation_level=None)
    task = asyncio.create_task(trail.maintain())
    try:
        await trail.append(event(1))
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM audit_records").fetchone()   # a snapshot: later frames stay in the WAL
        for i in range(2, 6):
            await trail.append(event(i))
        for _ in range(60):
            if any("checkpoints fall behind" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        reader.execute("ROLLBACK")
        reader.close()
        await trail.close()
    behind = [r for r in caplog.records if "checkpoints fall behind" in r.getMessage()]
    assert behind, [r.getMessage() for r in caplog.records]
    assert behind[0].wal_pages > behind[0].wal_copied >= 0


def test_commit_spacing_follows_the_loop_threads_cpu_share() -> None:
    spacing = _inline.commit_spacing
    lo, hi = _inline.BUSY_LOW, _inline.BUSY_HIGH
    assert spacing(0.0, 0.001, 0.004) == 0.001                     # idle: commit at the least spacing
    assert spacing(lo, 0.001, 0.004) == 0.001
    assert spacing((lo + hi) / 2, 0.001, 0.004) == pytest.approx(0.0025)   # linear in between
    assert spacing(hi, 0.001, 0.004) == 0.004
    assert spacing(3.0, 0.001, 0.004) == 0.004                     # a share past 1 (clock steps): capped
    assert spacing(1.0, 0.002, 0.0) == 0.002                       # busy spacing off: fixed
    assert spacing(1.0, 0.002, 0.002) == 0.002


async def test_a_busy_loop_spaces_its_commits_wider_and_an_idle_one_goes_back_to_the_least_spacing(
        tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.01, commit_interval_busy=0.12)
    try:
        # a loop thread that used all of its window (its CPU clock runs with the wall clock)
        sink._cpu_clock = time.monotonic
        sink._load_mark = (time.monotonic() - 1.0, time.monotonic() - 1.0)
        await sink.append(event(1))                       # after a quiet spell: at once, whatever the load
        assert sink.commit_spacing_s == pytest.approx(0.12) and sink.loop_cpu_share == pytest.approx(1.0, abs=0.05)
        t0 = time.monotonic()
        await sink.append(event(2))
        assert time.monotonic() - t0 >= 0.09              # waited for the busy spacing
        # the same loop, now idle: its CPU clock stands still over the next window
        sink._cpu_clock = lambda: 0.0
        sink._load_mark = (time.monotonic() - 1.0, 0.0)
        await asyncio.sleep(0.13)                         # past the busy spacing: a quiet spell
        await sink.append(event(3))
        assert sink.commit_spacing_s == pytest.approx(0.01) and sink.loop_cpu_share == 0.0
        t0 = time.monotonic()
        await sink.append(event(4))
        assert time.monotonic() - t0 < 0.06               # the least spacing again, far below the busy one
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 4


async def test_the_busy_spacing_is_off_when_not_above_the_least_spacing(tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.01, commit_interval_busy=0.0)
    try:
        sink._cpu_clock = time.monotonic                  # however busy the loop
        sink._load_mark = (time.monotonic() - 1.0, time.monotonic() - 1.0)
        await sink.append(event(1))
        assert sink.commit_spacing_s == 0.01 and sink.loop_cpu_share is None   # not even measured
    finally:
        await sink.close()
