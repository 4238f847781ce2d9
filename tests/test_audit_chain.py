"""The audit chain against all three stores: appends, tampering done directly in the store
(sqlite3 / SQL / the fake's tables), group commit, failures, pruning and search."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import (GENESIS_HASH, AuditEvent, AuditSink, AuditStore, AuditQuery, CheckpointSigner, GroupCommitConfig, MemoryAuditSink,
                           SqliteAuditSink, StoredRecord, holder_hmac, record_hash, verify_chain)
from gateway.audit.chain import extend_chain
from gateway.audit.model import format_time, parse_time
from gateway.audit.postgres import PostgresAuditSink
from gateway.audit.sqlite_inline import SqliteInlineAuditSink
from gateway.audit.sqlite_process import SqliteProcessAuditSink
from gateway.errors import AUDIT_UNAVAILABLE, InfrastructureError
from tests.pg_fixture import TEST_AUDIT_KEY_SEED, drop_schema, new_schema_name, pg_dsn  # noqa: F401 - fixture

AUDIT_KEY = Ed25519PrivateKey.from_private_bytes(TEST_AUDIT_KEY_SEED)   # TEST key
PUBLIC = AUDIT_KEY.public_key()
#: the SQLite sink by who commits its appends
SQLITE_SINKS: dict[str, Any] = {"thread": SqliteAuditSink, "process": SqliteProcessAuditSink,
                                "inline": SqliteInlineAuditSink}
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
HMAC_KEY = b"test-holder-hmac-key-0123456789"                          # TEST key
# synthetic citizen ID and USCC with valid check characters (no real person or company)
HOLDER_A = holder_hmac(HMAC_KEY, "111", "330502199001010014")
HOLDER_B = holder_hmac(HMAC_KEY, "001", "91330500MA2B00000R")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def event(i: int, **kw: Any) -> AuditEvent:
    base: dict[str, Any] = dict(kind="verify", time=T0 + timedelta(minutes=i), request_id=f"req-{i}",
                                partner="partner-a" if i % 2 else "partner-b", operator=f"window-{i % 3}",
                                item_code="ITEM-001" if i % 3 else "ITEM-002", region="330500",
                                licence_id=f"lic-{i}", verdict="valid" if i % 4 else "invalid",
                                reasons=() if i % 4 else ("LICENCE_EXPIRED",),
                                holder_hmac=HOLDER_A if i % 5 == 0 else HOLDER_B, extra={"i": i, "ms": 1.25})
    base.update(kw)
    return AuditEvent(**base)


async def verified_sqlite_file(path: Path):
    """Open the SQLite audit file at ``path`` afresh, verify its chain (asserting it is intact) and
    return the report."""
    from gateway.audit import SqliteAuditSink

    store = await SqliteAuditSink.open(path)
    try:
        report = await verify_chain(store, PUBLIC)
        assert report.ok, report
        return report
    finally:
        await store.close()


class Backend:
    """One store under test plus the attacker's direct access to its tables."""

    def __init__(self, name: str, tmp: Path, pg: tuple[str, str] | None, writer: str = "thread") -> None:
        self.name = name
        self.writer = writer   # sqlite: who commits the appends (thread, process or inline on the loop)
        self.tmp = tmp
        self.pg = pg
        self.clock = Clock(T0)
        self.sink: Any = None
        self._conn: Any = None

    async def open(self, config: GroupCommitConfig | None = None, **kw: Any) -> Any:
        kw.setdefault("signer", CheckpointSigner(AUDIT_KEY, "test-audit-1"))
        kw.setdefault("clock", self.clock)
        config = config or GroupCommitConfig(checkpoint_every=20)
        if self.name == "memory":
            self.sink = await MemoryAuditSink.open(config=config, **kw)
        elif self.name == "sqlite":
            cls = SQLITE_SINKS[self.writer]
            self.sink = await cls.open(self.tmp / "audit.db", config=config, **kw)
        else:
            assert self.pg is not None
            self.sink = await PostgresAuditSink.open(self.pg[0], schema=self.pg[1], config=config, **kw)
        return self.sink

    async def append_sequentially(self, n: int, start: int = 1) -> None:
        for i in range(start, start + n):
            self.clock.now = T0 + timedelta(minutes=i)
            await self.sink.append(event(i))

    async def close(self) -> None:
        if self.sink is not None:
            await self.sink.close()
        if self._conn is not None:
            if self.name == "sqlite":
                self._conn.close()
            else:
                await self._conn.close()

    # -- direct access, as an attacker with database rights ---------------------------------
    async def sql(self, stmt: str, *args: Any) -> None:
        if self.name == "sqlite":
            if self._conn is None:
                self._conn = sqlite3.connect(self.tmp / "audit.db", isolation_level=None)
            self._conn.execute(stmt.replace("{t}", ""), args)
            return
        assert self.pg is not None
        if self._conn is None:
            self._conn = await asyncpg.connect(self.pg[0])
        parts = stmt.replace("{t}", f"{self.pg[1]}.").split("?")
        numbered = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
        await self._conn.execute(numbered, *args)

    async def set_column(self, seq: int, col: str, value: Any) -> None:
        if self.name == "memory":
            r = self.sink.table[seq]
            if col in ("prev_hash", "hash"):
                self.sink.table[seq] = replace(r, **{col: value})
            else:
                self.sink.table[seq] = replace(r, body={**r.body, col: value})
            return
        await self.sql(f"UPDATE {{t}}audit_records SET {col} = ? WHERE seq = ?", value, seq)

    async def delete(self, seq: int) -> None:
        if self.name == "memory":
            del self.sink.table[seq]
            return
        await self.sql("DELETE FROM {t}audit_records WHERE seq = ?", seq)

    async def move(self, old: int, new: int) -> None:
        if self.name == "memory":
            self.sink.table[new] = replace(self.sink.table.pop(old), seq=new)
            return
        await self.sql("UPDATE {t}audit_records SET seq = ? WHERE seq = ?", new, old)

    async def insert(self, rec: StoredRecord) -> None:
        if self.name == "memory":
            self.sink.table[rec.seq] = rec
            return
        b = rec.body
        t = b["time"] if self.name == "sqlite" else parse_time(b["time"])
        await self.sql("INSERT INTO {t}audit_records (seq, prev_hash, hash, kind, time, request_id, partner, operator, "
                       "item_code, region, licence_id, verdict, reasons, holder_hmac, extra) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       rec.seq, rec.prev_hash, rec.hash, b["kind"], t, b["request_id"], b["partner"], b["operator"],
                       b["item_code"], b["region"], b["licence_id"], b["verdict"], orjson.dumps(b["reasons"]).decode(),
                       b["holder_hmac"], orjson.dumps(b["extra"], option=orjson.OPT_SORT_KEYS).decode())

    async def set_state(self, col: str, value: Any) -> None:
        if self.name == "memory":
            self.sink.state_row[col] = value
            return
        await self.sql(f"UPDATE {{t}}audit_state SET {col} = ? WHERE id = 1", value)

    async def set_checkpoint(self, seq: int, col: str, value: Any) -> None:
        if self.name == "memory":
            self.sink.checkpoint_table[seq] = replace(self.sink.checkpoint_table[seq], **{col: value})
            return
        await self.sql(f"UPDATE {{t}}audit_checkpoints SET {col} = ? WHERE seq = ?", value, seq)

    async def record(self, seq: int) -> StoredRecord:
        (rec,) = await self.sink.read_records(seq - 1, 1)
        assert rec.seq == seq
        return rec

    async def rewrite_from(self, seq: int) -> None:
        """Edit record ``seq`` and recompute every later hash and link, and the head row."""
        rec = await self.record(seq)
        body = {**rec.body, "verdict": "valid", "reasons": []}
        await self.set_column(seq, "verdict", "valid")
        await self.set_column(seq, "reasons", [] if self.name == "memory" else "[]")
        prev = rec.prev_hash
        h = record_hash(seq, prev, body)
        await self.set_column(seq, "hash", h)
        for r in await self.sink.read_records(seq, 10_000):
            nh = record_hash(r.seq, h, r.body)
            await self.set_column(r.seq, "prev_hash", h)
            await self.set_column(r.seq, "hash", nh)
            h = nh
        await self.set_state("head_hash", h)


@pytest.fixture(params=["memory", "sqlite", "sqlite-process", "sqlite-inline", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    pg = None
    if request.param == "postgres":
        pg = (request.getfixturevalue("pg_dsn"), new_schema_name())
    name, _, writer = request.param.partition("-")
    b = Backend(name, tmp_path, pg, writer=writer or "thread")
    yield b
    await b.close()
    if pg is not None:
        await drop_schema(*pg)


# --- a chain that was left alone verifies ---------------------------------------------------
async def test_chain_of_sequential_appends_verifies_with_checkpoints(backend: Backend) -> None:
    sink = await backend.open()
    assert isinstance(sink, AuditSink) and isinstance(sink, AuditStore)
    await backend.append_sequentially(60)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.records_checked, report.head_seq, report.first_bad_seq) == (True, 60, 60, None)
    assert [cp.seq for cp in await sink.read_checkpoints()] == [20, 40, 60]
    recs = await sink.read_records(0, 100)
    assert [r.seq for r in recs] == list(range(1, 61))
    assert all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:], strict=False))
    assert recs[0].body == event(1).body()   # read back exactly what was appended


async def test_every_store_computes_the_same_chain(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(5)
    expected = extend_chain(0, GENESIS_HASH, [event(i).body() for i in range(1, 6)])
    assert (await sink.state()).head_hash == expected[-1].hash
    assert [r.hash for r in await sink.read_records(0, 10)] == [r.hash for r in expected]


# --- tampering directly in the store -------------------------------------------------------
async def test_edited_verdict_is_named_by_its_seq(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(60)
    await backend.set_column(37, "verdict", "valid" if (await backend.record(37)).body["verdict"] != "valid" else "invalid")
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq, report.records_checked) == (False, 37, 36)
    assert "does not match its hash" in report.problem


async def test_edited_record_with_recomputed_hash_is_named_by_the_broken_link(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(60)
    rec = await backend.record(37)
    await backend.set_column(37, "request_id", "forged")
    await backend.set_column(37, "hash", record_hash(37, rec.prev_hash, {**rec.body, "request_id": "forged"}))
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 37)
    assert "prev_hash of record 38" in report.problem


async def test_rewritten_chain_suffix_is_caught_by_the_next_signed_checkpoint(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(60)
    await backend.rewrite_from(28)   # every hash and link after it recomputed, head row too
    report = await verify_chain(sink, PUBLIC)
    # checkpoint 20 still vouches for 1..20; the checkpoint at 40 names another hash
    assert (report.ok, report.first_bad_seq) == (False, 21)
    assert "21..40 were rewritten" in report.problem


async def test_deleted_middle_record_is_named(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(60)
    await backend.delete(33)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq, report.records_checked) == (False, 33, 32)
    assert "33 missing" in report.problem


async def test_deleted_first_record_is_named(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(10)
    await backend.delete(1)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 1)


async def test_deleted_tail_is_named_from_the_head_row(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(45)
    for seq in (43, 44, 45):
        await backend.delete(seq)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 43)
    assert "43..45 missing at the tail" in report.problem


async def test_deleted_tail_with_head_row_rolled_back_is_caught_by_checkpoint(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(40)
    await backend.delete(40)
    rec39 = await backend.record(39)
    await backend.set_state("head_seq", 39)
    await backend.set_state("head_hash", rec39.hash)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 40)
    assert "checkpoint at seq 40" in report.problem


async def test_inserted_record_renumbering_the_rest_is_named(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(30)
    # make room after 12 (move 13..30 up by one, from the top), insert a well-chained forgery
    for seq in range(30, 12, -1):
        await backend.move(seq, seq + 1)
    prev = (await backend.record(12)).hash
    body = event(99, request_id="forged").body()
    await backend.insert(StoredRecord(13, prev, record_hash(13, prev, body), body))
    report = await verify_chain(sink, PUBLIC)
    # 13 is self-consistent and chains onto 12; the first renumbered record fails its hash
    assert (report.ok, report.first_bad_seq) == (False, 14)


async def test_inserted_record_past_the_head_is_named(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(10)
    prev = (await backend.record(10)).hash
    body = event(11, request_id="forged").body()
    await backend.insert(StoredRecord(11, prev, record_hash(11, prev, body), body))
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 11)
    assert "beyond the recorded head" in report.problem


async def test_swapped_records_are_named(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(30)
    await backend.move(20, 1000)
    await backend.move(21, 20)
    await backend.move(1000, 21)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 20)


async def test_checkpoint_with_edited_hash_fails_its_signature_check(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(40)
    await backend.set_checkpoint(20, "hash", "f" * 64)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 20)
    assert "differ from the signed statement" in report.problem


async def test_checkpoint_signed_by_an_attacker_key_is_rejected(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(40)
    attacker = CheckpointSigner(Ed25519PrivateKey.generate(), "test-audit-1")
    forged = attacker.sign(20, (await backend.record(20)).hash, T0)
    await backend.set_checkpoint(20, "jws", forged.jws)
    await backend.set_checkpoint(20, "time", forged.time)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 20)
    assert "signature does not verify" in report.problem


async def test_verify_with_another_key_fails(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(20)
    report = await verify_chain(sink, Ed25519PrivateKey.generate().public_key())
    assert report.ok is False and report.first_bad_seq == 20


# --- group commit ---------------------------------------------------------------------------
async def test_200_concurrent_appends_give_a_gap_free_chain_in_few_transactions(backend: Backend) -> None:
    sink = await backend.open(GroupCommitConfig(max_batch=64, window=0.002, checkpoint_every=50))
    receipts = await asyncio.gather(*(sink.append(event(i)) for i in range(200)))
    assert sorted(r.seq for r in receipts) == list(range(1, 201))
    state = await sink.state()
    assert state.head_seq == 200
    assert state.commits == sink.stats.transactions
    assert state.commits <= 10, f"{state.commits} transactions for 200 records"   # 200/64 -> 4
    report = await verify_chain(sink, PUBLIC)
    assert report.ok and report.records_checked == 200 and report.checkpoints_checked >= 3


async def test_appends_queued_before_close_are_written_and_later_ones_refused(backend: Backend) -> None:
    sink = await backend.open()
    pending = [asyncio.ensure_future(sink.append(event(i))) for i in range(1, 6)]
    await asyncio.sleep(0)
    await sink.close()
    assert sorted(r.seq for r in await asyncio.gather(*pending)) == [1, 2, 3, 4, 5]
    with pytest.raises(InfrastructureError) as exc:
        await sink.append(event(6))
    assert exc.value.reason is AUDIT_UNAVAILABLE
    backend.sink = None


# --- store failures -------------------------------------------------------------------------
async def _poison_inserts(backend: Backend) -> None:
    """Make the store fail while inserting a record with request_id 'poison' (a disk error
    in the middle of a batch)."""
    if backend.name == "memory":
        backend.sink.fail_with = OSError("disk failure")
    elif backend.name == "sqlite":
        await backend.sql("CREATE TRIGGER poison BEFORE INSERT ON audit_records WHEN NEW.request_id = 'poison' "
                          "BEGIN SELECT RAISE(ABORT, 'disk failure'); END")
    else:
        s = backend.pg[1]  # type: ignore[index]
        await backend.sql(f"CREATE FUNCTION {s}.poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                          "IF NEW.request_id = 'poison' THEN RAISE EXCEPTION 'disk failure'; END IF; "
                          "RETURN NEW; END $$")
        await backend.sql(f"CREATE TRIGGER poison BEFORE INSERT ON {s}.audit_records FOR EACH ROW "
                          f"EXECUTE FUNCTION {s}.poison()")


async def test_failed_batch_raises_audit_unavailable_and_leaves_no_half_chain(backend: Backend) -> None:
    sink = await backend.open(GroupCommitConfig(window=0.01, checkpoint_every=20))
    await backend.append_sequentially(3)
    await _poison_inserts(backend)
    batch = [event(i) for i in range(4, 9)] + [event(9, request_id="poison")] + [event(i) for i in range(10, 14)]
    results = await asyncio.gather(*(sink.append(e) for e in batch), return_exceptions=True)
    assert all(isinstance(r, InfrastructureError) and r.reason is AUDIT_UNAVAILABLE for r in results)
    if backend.name == "memory":
        backend.sink.fail_with = None   # the outage is over
    state = await sink.state()
    assert (state.head_seq, len(await sink.read_records(0, 100))) == (3, 3)
    receipts = [await sink.append(event(i)) for i in range(20, 25)]
    assert [r.seq for r in receipts] == [4, 5, 6, 7, 8]
    report = await verify_chain(sink, PUBLIC)
    assert report.ok and report.records_checked == 8


async def test_unreachable_store_raises_audit_unavailable(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError) as exc:
        if backend.name == "memory":
            sink = await backend.open()
            sink.fail_with = ConnectionError("store gone")
            await sink.append(event(1))
        elif backend.name == "sqlite":
            cls = SQLITE_SINKS[backend.writer]
            await cls.open(tmp_path / "no-such-dir" / "audit.db")
        else:
            await PostgresAuditSink.open("postgresql://postgres@127.0.0.1:1/none", schema="x", connect_timeout=2)
    assert exc.value.reason is AUDIT_UNAVAILABLE


async def test_locked_store_times_out_as_audit_unavailable_then_recovers(backend: Backend) -> None:
    """Another session holds the chain head (a stuck writer, a long manual transaction):
    the append fails within the timeout instead of hanging, then the sink recovers."""
    if backend.name == "sqlite":
        sink = await backend.open(busy_timeout_ms=100)
    elif backend.name == "postgres":
        sink = await backend.open(command_timeout=1.5)
    else:
        sink = await backend.open()
    await sink.append(event(1))
    if backend.name == "memory":
        sink.fail_with = TimeoutError("locked")
    elif backend.name == "sqlite":
        await backend.sql("BEGIN EXCLUSIVE")
    else:
        await backend.sql("BEGIN")
        await backend.sql("SELECT * FROM {t}audit_state WHERE id = 1 FOR UPDATE")
    with pytest.raises(InfrastructureError) as exc:
        await sink.append(event(2))
    assert exc.value.reason is AUDIT_UNAVAILABLE
    if backend.name == "memory":
        sink.fail_with = None
    else:
        await backend.sql("ROLLBACK")
    assert (await sink.append(event(3))).seq == 2
    assert (await verify_chain(sink, PUBLIC)).ok


# --- retention ------------------------------------------------------------------------------
async def test_prune_up_to_a_checkpoint_keeps_the_chain_verifiable(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(50)            # checkpoints at 20 and 40
    result = await sink.prune(T0 + timedelta(minutes=45))
    assert (result.deleted, result.start_seq) == (40, 40)
    assert [r.seq for r in await sink.read_records(0, 100)] == list(range(41, 51))
    assert [cp.seq for cp in await sink.read_checkpoints()] == [40]
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.records_checked, report.start_seq) == (True, 10, 40)
    await backend.append_sequentially(15, start=51)  # the chain goes on from the new start
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.records_checked, report.head_seq) == (True, 25, 65)


async def test_prune_before_any_checkpoint_deletes_nothing(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(30)
    result = await sink.prune(T0 + timedelta(minutes=10))   # checkpoint 20 is younger
    assert (result.deleted, result.start_seq) == (0, 0)
    assert (await verify_chain(sink, PUBLIC)).records_checked == 30


async def test_record_deleted_after_prune_is_named(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(30)
    await sink.prune(T0 + timedelta(minutes=25))
    await backend.delete(21)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 21)


async def test_start_moved_to_an_unsigned_seq_is_detected(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(30)
    for seq in range(1, 26):        # delete a prefix that does not end at a checkpoint
        await backend.delete(seq)
    await backend.set_state("start_seq", 25)
    await backend.set_state("start_hash", (await backend.record(26)).prev_hash)
    report = await verify_chain(sink, PUBLIC)
    assert (report.ok, report.first_bad_seq) == (False, 26)
    assert "not a signed checkpoint" in report.problem


# --- search ---------------------------------------------------------------------------------
async def test_search_by_holder_partner_item_and_time(backend: Backend) -> None:
    sink = await backend.open()
    await backend.append_sequentially(30)
    by_holder = await sink.search(AuditQuery(holder_hmac=HOLDER_A))
    assert [r.seq for r in by_holder] == [30, 25, 20, 15, 10, 5]
    by_partner_item = await sink.search(AuditQuery(partner="partner-a", item_code="ITEM-002"))
    assert [r.seq for r in by_partner_item] == [27, 21, 15, 9, 3]
    window = await sink.search(AuditQuery(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=13)))
    assert [r.seq for r in window] == [12, 11, 10]
    assert [r.seq for r in await sink.search(AuditQuery(limit=2))] == [30, 29]
    assert await sink.search(AuditQuery(holder_hmac=holder_hmac(HMAC_KEY, "111", "110101199003074573"))) == []
    assert by_holder[0].body["time"] == format_time(T0 + timedelta(minutes=30))
