"""SQLite: the holder search index is filled after the commit, in a file of its own.

Searches by holder must be complete whatever the index's progress (records past its
watermark are scanned); the index must survive being lost, being ahead of a restored
database, and retention pruning; and the records' own table must carry no holder index
(the write cost this design removes)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from gateway.audit import AuditQuery, CheckpointSigner, GroupCommitConfig, SqliteAuditSink, verify_chain
from tests.test_audit_chain import AUDIT_KEY, HOLDER_A, HOLDER_B, PUBLIC, T0, Clock, event


async def open_sink(path: Path) -> SqliteAuditSink:
    return await SqliteAuditSink.open(path, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"), clock=Clock(T0),
                                      config=GroupCommitConfig(checkpoint_every=20))


async def append(sink: SqliteAuditSink, first: int, last: int) -> None:
    for i in range(first, last + 1):
        await sink.append(event(i))


def holder_seqs(first: int, last: int, holder: str) -> list[int]:
    return sorted((i for i in range(first, last + 1) if (HOLDER_A if i % 5 == 0 else HOLDER_B) == holder),
                  reverse=True)


def index_rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"{path}-holders") as c:
        return c.execute("SELECT hkey, seq FROM holder_keys ORDER BY seq").fetchall()


async def test_search_is_complete_before_during_and_after_indexing(tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db")
    try:
        await append(sink, 1, 30)
        assert index_rows(tmp_path / "audit.db") == []          # nothing indexed at commit time
        found = await sink.search(AuditQuery(holder_hmac=HOLDER_A))
        assert [r.seq for r in found] == [30, 25, 20, 15, 10, 5]   # the tail scan alone
        assert await sink.index_holders() == 30
        assert len(index_rows(tmp_path / "audit.db")) == 30
        await append(sink, 31, 47)                               # 31..47: past the watermark
        found = await sink.search(AuditQuery(holder_hmac=HOLDER_A))
        assert [r.seq for r in found] == holder_seqs(1, 47, HOLDER_A)
        both = await sink.search(AuditQuery(holder_hmac=HOLDER_B, partner="partner-a", limit=4))
        assert [r.seq for r in both] == [47, 43, 41, 39]         # odd seqs are partner-a; limit after merge
        assert all(r.body["holder_hmac"] == HOLDER_B for r in both)
        assert await sink.index_holders() == 17
        assert await sink.index_holders() == 0                   # up to date: nothing to do
        found = await sink.search(AuditQuery(holder_hmac=HOLDER_B, since=T0 + timedelta(minutes=40)))
        assert [r.seq for r in found] == [i for i in holder_seqs(1, 47, HOLDER_B) if i >= 40]
    finally:
        await sink.close()


async def test_lost_index_file_is_rebuilt_from_the_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    await append(sink, 1, 25)
    await sink.index_holders()
    await sink.close()
    for suffix in ("-holders", "-holders-wal", "-holders-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    sink = await open_sink(path)
    try:
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == [25, 20, 15, 10, 5]
        assert await sink.index_holders() == 25
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == [25, 20, 15, 10, 5]
    finally:
        await sink.close()


async def test_index_ahead_of_a_restored_database_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    await append(sink, 1, 10)
    await sink.close()
    backup = (path.read_bytes(), Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b"")
    sink = await open_sink(path)
    await append(sink, 11, 30)
    await sink.index_holders()                                   # watermark 30
    await sink.close()
    path.write_bytes(backup[0])                                  # the records go back to 10 ...
    Path(f"{path}-wal").write_bytes(backup[1])
    Path(f"{path}-shm").unlink(missing_ok=True)
    sink = await open_sink(path)
    try:
        assert (await sink.state()).head_seq == 10
        await append(sink, 11, 12)                               # ... and new records take seq 11, 12
        assert await sink.index_holders() == 12                  # the stale index is dropped and rebuilt
        assert [seq for _, seq in index_rows(path)] == list(range(1, 13))
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == [10, 5]
    finally:
        await sink.close()


async def test_prune_removes_the_pruned_records_from_the_index(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    try:
        await append(sink, 1, 50)                                # checkpoints at 20 and 40
        await sink.index_holders()
        result = await sink.prune(T0 + timedelta(minutes=45))
        assert result.start_seq == 40
        assert [seq for _, seq in index_rows(path)] == list(range(41, 51))
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == [50, 45]
        assert (await verify_chain(sink, PUBLIC)).ok
    finally:
        await sink.close()


async def test_records_table_has_no_holder_index_and_search_uses_the_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    await append(sink, 1, 3)
    await sink.close()
    with sqlite3.connect(path) as c:
        indexes = [r[0] for r in c.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")]
        plan = " ".join(str(r[3]) for r in c.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM audit_records WHERE seq IN (SELECT value FROM json_each(?)) "
            "UNION ALL SELECT seq FROM audit_records WHERE seq > ? AND holder_hmac = ?", ("[1]", 2, HOLDER_A)))
    assert indexes and not any("holder_hmac" in sql for sql in indexes)
    assert "SCAN audit_records" not in plan and "USING INTEGER PRIMARY KEY" in plan


async def test_indexing_goes_in_bounded_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("gateway.audit.sqlite.INDEX_CHUNK", 7)
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    try:
        await append(sink, 1, 30)
        assert await sink.index_holders(max_records=10) == 14   # two chunks of 7, then the bound stops it
        assert [seq for _, seq in index_rows(path)] == list(range(1, 15))
        assert await sink.index_holders() == 16                 # 15..30 in three more chunks
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == [30, 25, 20, 15, 10, 5]
    finally:
        await sink.close()


async def test_appends_and_searches_go_on_while_the_index_file_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    blocker = sqlite3.connect(f"{path}-holders", isolation_level=None)
    try:
        await append(sink, 1, 10)
        await sink.index_holders()
        blocker.execute("BEGIN IMMEDIATE")          # another indexer, stuck mid-transaction
        blocker.execute("DELETE FROM holder_keys WHERE seq = 5")
        await append(sink, 11, 15)                   # the records' file is not touched by it
        assert (await sink.state()).head_seq == 15
        found = await sink.search(AuditQuery(holder_hmac=HOLDER_A))
        assert [r.seq for r in found] == [15, 10, 5]  # the committed index (5 still there) + the tail
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        await sink.close()


async def test_wal_checkpoint_copies_committed_pages_without_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    try:
        await append(sink, 1, 40)
        busy, wal_pages, done = await sink.checkpoint_wal()
        assert busy == 0 and wal_pages > 0 and done == wal_pages
        assert (await sink.checkpoint_wal())[2] == wal_pages   # nothing new: the same pages, already copied
        await append(sink, 41, 42)
        assert (await verify_chain(sink, PUBLIC)).ok
    finally:
        await sink.close()


async def test_holders_sharing_the_index_key_prefix_do_not_see_each_others_records(tmp_path: Path) -> None:
    one, other = "ab" * 12 + "1" * 40, "ab" * 12 + "2" * 40     # the same first 24 hex digits
    sink = await open_sink(tmp_path / "audit.db")
    try:
        for i, h in enumerate((one, other, one, other), start=1):
            await sink.append(event(i, holder_hmac=h))
        await sink.index_holders()
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=one))] == [3, 1]
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=other))] == [4, 2]
    finally:
        await sink.close()


async def test_background_work_runs_on_a_low_priority_thread(tmp_path: Path) -> None:
    import asyncio
    import os
    import threading

    from gateway.audit.sqlite import BACKGROUND_NICENESS

    sink = await open_sink(tmp_path / "audit.db")
    try:
        def niceness() -> tuple[int, int]:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), os.getpriority(os.PRIO_PROCESS, 0)

        bg, _ = await asyncio.get_running_loop().run_in_executor(sink._bg, niceness)
        assert bg == BACKGROUND_NICENESS
        assert niceness()[0] != BACKGROUND_NICENESS          # the event loop's thread keeps its priority
        await append(sink, 1, 5)
        assert await sink.index_holders() == 5               # and the work still gets done there
    finally:
        await sink.close()
