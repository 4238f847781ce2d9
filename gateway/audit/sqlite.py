"""SQLite audit sink (single node).

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode NORMAL does not
sync the WAL at commit, so the last transactions can vanish on power loss although
``append`` already answered "stored" -- the contract forbids that. FULL syncs the WAL at
every commit; group commit spreads that one fsync over the whole batch, so FULL costs
little (see load/bench_audit.py).

Appends go to ONE long-lived writer thread per sink (no thread-pool hand-off per batch):
``append`` puts the group on a ``queue.SimpleQueue``; the thread takes what is queued (pausing
once for ``window`` when the batch is small), builds the record bodies, chains and hashes them,
commits them in one ``BEGIN IMMEDIATE`` transaction (one multi-row ``INSERT``: few sqlite
calls, so few GIL re-takes per batch),
seals the batch's receipt drafts (one signature) and resolves every waiter with ONE
``loop.call_soon_threadsafe``. The transaction re-reads the head row, so several processes may
share one file (SQLite serialises the writers). Checkpoints, pruning and reads run through
``asyncio.to_thread``; a thread lock keeps the writer connection to one thread at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.audit.chain import CheckpointSigner, record_hash
from gateway.audit.model import (BODY_FIELDS, GENESIS_HASH, AppendReceipt, AuditQuery, ChainState,
                                 Checkpoint, PruneResult, StoredRecord, format_time, stored_json)
from gateway.audit.sink import (_STOP, Appended, Clock, GroupCommitConfig, GroupCommitSink, Sealer, _Item,
                                system_clock, unavailable)

T = TypeVar("T")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    time TEXT NOT NULL,
    request_id TEXT NOT NULL,
    partner TEXT, operator TEXT, item_code TEXT, region TEXT, licence_id TEXT, verdict TEXT,
    reasons TEXT NOT NULL,
    holder_hmac TEXT,
    extra TEXT NOT NULL
);
DROP INDEX IF EXISTS audit_records_holder;
CREATE INDEX IF NOT EXISTS audit_records_partner ON audit_records(partner, time);
DROP INDEX IF EXISTS audit_records_item;
CREATE INDEX IF NOT EXISTS audit_records_item_nn ON audit_records(item_code, time) WHERE item_code IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records(time);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    time TEXT NOT NULL,
    kid TEXT NOT NULL,
    jws TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    start_seq INTEGER NOT NULL,
    start_hash TEXT NOT NULL,
    last_checkpoint_seq INTEGER NOT NULL,
    commits INTEGER NOT NULL
);
INSERT OR IGNORE INTO audit_state VALUES (1, 0, '{GENESIS_HASH}', 0, '{GENESIS_HASH}', 0, 0);
"""

#: The holder search index lives in a database of its own (``<audit file>-holders``), filled after
#: the fact by :meth:`SqliteAuditSink.index_holders`: derived data, rebuilt from the records when
#: missing. An index on ``audit_records(holder_hmac)`` puts each record at a random position of a
#: B-tree, so a group commit of n records dirtied ~n index pages that all went through the WAL and
#: its fsync: it cost ~3x the rest of the commit (38 vs 10 us per record at 32 a batch, 200k rows).
HOLDER_SCHEMA = """
DROP TABLE IF EXISTS holder_index;
DROP TABLE IF EXISTS holder_index_state;
CREATE TABLE IF NOT EXISTS holder_keys (
    hkey TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (hkey, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holder_keys_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO holder_keys_state VALUES (1, 0);
"""
#: the index keys a record by the first 24 hex digits (96 bits) of its holder HMAC: a third of the
#: full value's size, so fewer pages to rewrite; a search re-checks the full HMAC on the records
HOLDER_KEY_CHARS = 24
#: what the index holds (``PRAGMA user_version`` of its file); an older index is emptied at open and
#: rebuilt from the records. 1: a record is keyed by its holder and, when it has one, by its applicant
#: (``extra.applicant``: an item check's records name the licence's holder and the applicant apart)
HOLDER_INDEX_VERSION = 1
#: the applicant's HMAC inside a record's ``extra`` as the gateway writes it (sorted keys, no spaces;
#: any other text of it fails ``audit verify``): found by position, as SQL that never raises on a
#: hand-edited value (``json_extract`` raises on text that is not JSON and stops every index run)
_APPLICANT = '''"applicant":"'''
_APPLICANT_AT = f"instr(extra, '{_APPLICANT}')"
_APPLICANT_KEY = f"substr(extra, {_APPLICANT_AT} + {len(_APPLICANT)}, {HOLDER_KEY_CHARS})"
#: records indexed per transaction of the holder index (it never blocks the audit writer: it has
#: its own file, and WAL readers of the records do not block the writer either). Indexing rarely and
#: in large sorted chunks is what keeps it cheap: k random keys into an index of P pages rewrite
#: about P(1 - e^(-k/P)) pages, so every page is written about once per run, however many keys.
INDEX_CHUNK = 100_000

_COLS = ("seq", "prev_hash", "hash", *BODY_FIELDS)
_INSERT = f"INSERT INTO audit_records ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})"
#: rows per multi-row INSERT (15 parameters a row; SQLite allows 32766 parameters)
_ROWS_PER_INSERT = 512


@functools.lru_cache(maxsize=64)
def _insert_rows(n: int) -> str:
    """One multi-row INSERT of ``n`` rows: the batch in one sqlite3_step. executemany steps once
    per row and the writer thread re-takes the GIL after every step -- under load each re-take
    waits for the busy event loop, which made a 150-record commit take ~30 ms."""
    row = f"({', '.join('?' * len(_COLS))})"
    return f"INSERT INTO audit_records ({', '.join(_COLS)}) VALUES {', '.join([row] * n)}"
_SELECT = f"SELECT {', '.join(_COLS)} FROM audit_records"


def _row_of(seq: int, prev: str, h: str, body: dict[str, Any]) -> tuple[Any, ...]:
    return (seq, prev, h, body["kind"], body["time"], body["request_id"], body["partner"], body["operator"],
            body["item_code"], body["region"], body["licence_id"], body["verdict"],
            orjson.dumps(body["reasons"]).decode(),
            body["holder_hmac"], orjson.dumps(body["extra"], option=orjson.OPT_SORT_KEYS).decode())


def chained_rows(head_seq: int, head_hash: str, bodies: Sequence[dict[str, Any]]
                 ) -> tuple[list[Any], list[AppendReceipt]]:
    """Chain ``bodies`` after the head (as :func:`gateway.audit.chain.extend_chain`) straight into
    the flat parameters of the multi-row INSERT and each record's (seq, hash): one pass, no
    intermediate record objects (this runs for every audited answer)."""
    params: list[Any] = []
    receipts: list[AppendReceipt] = []
    seq, prev = head_seq, head_hash
    for body in bodies:
        seq += 1
        h = record_hash(seq, prev, body)
        params += _row_of(seq, prev, h, body)
        receipts.append(AppendReceipt(seq, h))
        prev = h
    return params, receipts


def _record_of(row: Sequence[Any]) -> StoredRecord:
    body = dict(zip(BODY_FIELDS, row[3:], strict=True))
    body["reasons"] = stored_json(body["reasons"])
    body["extra"] = stored_json(body["extra"])
    return StoredRecord(row[0], row[1], row[2], body)


#: WAL pages after which the appending connection checkpoints by itself -- a safety net only: the
#: maintenance task checkpoints every half second from another connection (``checkpoint_wal``), so an
#: append never waits for the WAL being copied into the database file (~4 MB and an fsync at the
#: default 1000 pages)
WRITER_AUTOCHECKPOINT_PAGES = 20_000


#: niceness of the thread that builds the holder index and copies the WAL back (Linux: per thread).
#: A run every minute inserts ~100k keys: seconds of CPU that must yield to the event loops and the
#: audit writers, or answers queue behind it (the open-loop soak dropped requests at each run).
BACKGROUND_NICENESS = 19


def _background_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
    except (OSError, AttributeError):   # not Linux, or not allowed: still correct, only less polite
        pass


def _connect(path: str, busy_timeout_ms: int, synchronous: str = "FULL",
             autocheckpoint: int | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    if autocheckpoint is not None:
        conn.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


class SqliteAuditSink(GroupCommitSink):
    def __init__(self, path: str | Path, *, signer: CheckpointSigner | None = None, clock: Clock = system_clock,
                 config: GroupCommitConfig | None = None, busy_timeout_ms: int = 2000,
                 sealer: Sealer | None = None) -> None:
        super().__init__(signer=signer, clock=clock, config=config or GroupCommitConfig(), sealer=sealer)
        self.path = str(path)
        self.index_path = self.path + "-holders"
        self._busy_ms = busy_timeout_ms
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._ix: sqlite3.Connection | None = None   # holder index (its own file, its own lock)
        self._ixlock = threading.Lock()
        # one low-priority thread for the background work: holder index runs and WAL checkpoints
        self._bg = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-background",
                                      initializer=_background_priority)
        self._wconn = threading.Lock()     # the writer connection: one thread at a time
        self._rlock = asyncio.Lock()
        self._tq: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def open(cls, path: str | Path, **kwargs: Any) -> SqliteAuditSink:
        """Open (creating the file and schema if needed) and start the writer task."""
        sink = cls(path, **kwargs)
        try:
            await asyncio.to_thread(sink._open_sync)
        except (sqlite3.Error, OSError) as exc:
            raise unavailable(f"cannot open audit database: {exc}") from exc
        sink._start()
        return sink

    def _open_sync(self) -> None:
        self._w = _connect(self.path, self._busy_ms, autocheckpoint=WRITER_AUTOCHECKPOINT_PAGES)
        self._w.executescript(SCHEMA)
        self._r = _connect(self.path, self._busy_ms)
        # derived data: NORMAL is enough (a lost tail is re-indexed from the records)
        self._ix = _connect(self.index_path, self._busy_ms, "NORMAL")
        self._ix.executescript(HOLDER_SCHEMA)
        _in_transaction(self._ix, _upgrade_holder_index)
        # the records, read by the indexer's one INSERT ... SELECT (no row passes through Python)
        self._ix.execute("ATTACH DATABASE ? AS rec", (self.path,))

    # -- the writer thread -------------------------------------------------------------------
    def _start(self) -> None:
        if self.config.gil_switch_interval > 0:
            sys.setswitchinterval(min(sys.getswitchinterval(), self.config.gil_switch_interval))
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer_main, name="sqlite-audit-writer", daemon=True)
        self._thread.start()

    def _running(self) -> bool:
        return not self._closed and self._thread is not None and self._thread.is_alive()

    def _enqueue(self, item: _Item) -> None:
        if self._tq.qsize() >= self.config.queue_limit:
            raise unavailable("audit queue is full")
        self._tq.put(item)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._tq.put(_STOP)   # queued appends before it are still written
            await asyncio.to_thread(self._thread.join)
            # the thread's last call_soon_threadsafe callbacks run before close returns
            await asyncio.sleep(0)
        await self._close_backend()

    def _writer_main(self) -> None:
        q, limit, window = self._tq, self.config.max_batch, self.config.window
        while True:
            first = q.get()
            if first is _STOP:
                return
            batch, n, stop = [first], len(first[0]), False
            deadline = time.monotonic() + window
            while n < limit:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = q.get(timeout=remaining)
                    except queue.Empty:
                        break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                n += len(item[0])
            self._flush_sync(batch)
            if stop:
                return

    def _flush_sync(self, batch: list[_Item]) -> None:
        outcome: list[Appended] | BaseException
        try:
            bodies = [e.body() for item in batch for e in item[0]]
            with self._wconn:
                if self._w is None:
                    raise unavailable("audit database is closed")
                receipts = _in_transaction(self._w, self._txn(bodies))
            outcome = self._finish(batch, receipts)
        except Exception as exc:  # noqa: BLE001 - any store failure means "not audited"
            outcome = exc
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._resolve, batch, outcome)
        except RuntimeError:  # the loop is gone (shutdown): nobody waits any more
            pass

    def _txn(self, bodies: Sequence[dict[str, Any]]) -> Callable[[sqlite3.Connection], list[AppendReceipt]]:
        return append_txn(bodies, self._due_checkpoint)

    def _write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._wconn:
            if self._w is None:
                raise unavailable("audit database is closed")
            return _in_transaction(self._w, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._write_sync, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._rlock:
            if self._r is None:
                raise unavailable("audit database is closed")
            try:
                return await asyncio.to_thread(_tolerant, fn, self._r)
            except sqlite3.Error as exc:
                raise unavailable(f"audit database read failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def read_snapshot(self) -> AsyncIterator[None]:
        """Every read inside sees one committed state of the database (one read transaction on the
        reading connection): ``audit verify`` of a store the gateway is writing to. Read one statement
        at a time, the head row read first and the records after it, appends committed in between
        showed as records "beyond the recorded head (inserted)" and a prune as records "missing":
        BROKEN for a store nobody touched. WAL readers block no writer; the WAL cannot be reset past
        the snapshot until it ends."""
        async with self._rlock:
            if self._r is None:
                raise unavailable("audit database is closed")
            began = not self._r.in_transaction   # inside another snapshot: read in that one
            if began:
                await asyncio.to_thread(self._r.execute, "BEGIN")   # deferred: the snapshot is the first read's
        try:
            yield
        finally:
            if began:
                async with self._rlock:
                    if self._r is not None and self._r.in_transaction:
                        await asyncio.to_thread(self._r.execute, "COMMIT")

    # -- writes ------------------------------------------------------------------------------
    async def _commit_batch(self, bodies: Sequence[dict[str, Any]]) -> list[AppendReceipt]:
        """Commit ``bodies`` in one transaction (the writer thread calls the same ``_txn``)."""
        return await self._write(self._txn(bodies))

    async def checkpoint(self) -> Checkpoint | None:
        if self.signer is None:
            return None
        signer = self.signer

        def txn(c: sqlite3.Connection) -> Checkpoint | None:
            head_seq, head_hash = c.execute("SELECT head_seq, head_hash FROM audit_state WHERE id = 1").fetchone()
            # already signed: a checkpoint of this very head is stored. Not ``last_checkpoint_seq``, a
            # column nothing verifies: held equal to the head (one trigger), it stopped every checkpoint
            # and every logged anchor, leaving the whole tail unsigned and free to rewrite
            if head_seq == 0 or c.execute("SELECT 1 FROM audit_checkpoints WHERE seq = ? AND hash = ?",
                                          (head_seq, head_hash)).fetchone() is not None:
                return None
            cp = signer.sign(head_seq, head_hash, self.clock())
            c.execute("INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?, ?)", (cp.seq, cp.hash, cp.time, cp.kid, cp.jws))
            c.execute("UPDATE audit_state SET last_checkpoint_seq = ? WHERE id = 1", (cp.seq,))
            return cp

        return await self._write_or_503(txn)

    async def prune(self, before: datetime) -> PruneResult:
        limit = format_time(before)

        def txn(c: sqlite3.Connection) -> PruneResult:
            head_seq, start_seq = c.execute("SELECT head_seq, start_seq FROM audit_state WHERE id = 1").fetchone()
            # the latest checkpoint signed before ``before`` that no record younger than ``before`` precedes:
            # a checkpoint's signing time alone let a clock stepped back while one was signed (NTP, a VM
            # restored) delete every record before it, however young. ``+time``: scan by seq from the start,
            # which stops at the first young record (the records a prune deletes, not the retained ones)
            row = c.execute("SELECT seq, hash FROM audit_checkpoints WHERE time < ? AND seq > ? AND seq <= ? "
                            "AND seq < coalesce((SELECT seq FROM audit_records WHERE seq > ? AND +time >= ? "
                            "ORDER BY seq LIMIT 1), ?) ORDER BY seq DESC LIMIT 1",
                            (limit, start_seq, head_seq, start_seq, limit, head_seq + 1)).fetchone()
            if row is None:
                return PruneResult(0, start_seq)
            cp_seq, cp_hash = row
            deleted = c.execute("DELETE FROM audit_records WHERE seq <= ?", (cp_seq,)).rowcount
            c.execute("DELETE FROM audit_checkpoints WHERE seq < ?", (cp_seq,))
            c.execute("UPDATE audit_state SET start_seq = ?, start_hash = ? WHERE id = 1", (cp_seq, cp_hash))
            return PruneResult(deleted, cp_seq)

        result = await self._write_or_503(txn)
        if result.deleted:
            # the pruned records' holder entries go too (a search would no longer find them anyway)
            await self._index_op(lambda ix: ix.execute("DELETE FROM holder_keys WHERE seq <= ?",
                                                       (result.start_seq,)).rowcount)
        return result

    async def checkpoint_wal(self) -> tuple[int, int, int]:
        """Copy committed WAL pages into the database file (PASSIVE: never waits for, nor blocks,
        the writer); returns SQLite's (busy, WAL pages, pages checkpointed)."""
        def run() -> Any:
            with self._ixlock:   # the background connection's lock (the index connection's)
                if self._ix is None:
                    raise unavailable("audit database is closed")
                return self._ix.execute("PRAGMA rec.wal_checkpoint(PASSIVE)").fetchone()

        try:
            row = await asyncio.get_running_loop().run_in_executor(self._bg, run)
        except sqlite3.Error as exc:
            raise unavailable(f"audit WAL checkpoint failed: {exc}") from exc
        return (int(row[0]), int(row[1]), int(row[2]))

    # -- the holder index --------------------------------------------------------------------
    def _index_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._ixlock:
            if self._ix is None:
                raise unavailable("audit holder index is closed")
            # DEFERRED, not IMMEDIATE: an immediate transaction would take the write lock of every
            # attached database, the records' too, and stall the audit writer. The first statement
            # is a write to the index file only, so the index's writers still queue at once.
            def locked_first(ix: sqlite3.Connection) -> T:
                ix.execute("UPDATE holder_keys_state SET indexed_seq = indexed_seq WHERE id = 1")
                return fn(ix)

            return _in_transaction(self._ix, locked_first, begin="BEGIN")

    async def _index_op(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._bg, self._index_sync, fn)
        except sqlite3.Error as exc:
            raise unavailable(f"audit holder index failed: {exc}") from exc

    async def index_holders(self, max_records: int = 200_000) -> int:
        """Bring the holder index up to the chain head (at most ``max_records`` records, in
        chunks of :data:`INDEX_CHUNK`, one transaction each); return how many records were
        indexed. Runs off the request path (the maintenance task); searches stay complete
        meanwhile by scanning the records past the index's watermark."""
        done = 0
        while done < max_records:
            head = (await self.state()).head_seq
            n = await self._index_op(lambda ix: self._index_chunk(ix, head))
            if n == 0:
                break
            done += n
        if done:
            # the index file's WAL would otherwise keep every page a run rewrote (derived data: TRUNCATE,
            # which waits for nothing but the index's own readers)
            def truncate() -> None:
                with self._ixlock:
                    if self._ix is not None:
                        self._ix.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")

            try:
                await asyncio.get_running_loop().run_in_executor(self._bg, truncate)
            except sqlite3.Error as exc:
                raise unavailable(f"audit holder index checkpoint failed: {exc}") from exc
        return done

    async def check_holder_index(self) -> int | None:
        """The first record up to the index's watermark that the holder index does not name (a search
        by its holder would not find it), or None. ``audit verify`` calls it: the index is a file of its
        own that no hash covers, so rows deleted from it (or the watermark moved past records never
        indexed) hid a person's records from every search while the chain verified."""
        def run() -> Any:
            with self._ixlock:
                if self._ix is None:
                    raise unavailable("audit holder index is closed")
                upto = "(SELECT indexed_seq FROM main.holder_keys_state WHERE id = 1)"
                holder = self._ix.execute(
                    f"SELECT r.seq FROM rec.audit_records AS r WHERE r.seq <= {upto} AND r.holder_hmac IS NOT NULL "
                    "AND NOT EXISTS (SELECT 1 FROM main.holder_keys AS k WHERE k.hkey = "
                    f"substr(r.holder_hmac, 1, {HOLDER_KEY_CHARS}) AND k.seq = r.seq) ORDER BY r.seq LIMIT 1"
                ).fetchone()
                applicant = self._ix.execute(
                    f"SELECT seq FROM rec.audit_records AS r WHERE seq <= {upto} AND {_APPLICANT_AT} > 0 "
                    f"AND NOT EXISTS (SELECT 1 FROM main.holder_keys AS k WHERE k.hkey = {_APPLICANT_KEY} "
                    "AND k.seq = r.seq) ORDER BY seq LIMIT 1"
                ).fetchone()
                return min((row[0] for row in (holder, applicant) if row is not None), default=None)

        try:
            seq = await asyncio.to_thread(run)
        except sqlite3.Error as exc:
            raise unavailable(f"audit holder index failed: {exc}") from exc
        return None if seq is None else int(seq)

    def _index_chunk(self, ix: sqlite3.Connection, head: int) -> int:
        (indexed,) = ix.execute("SELECT indexed_seq FROM holder_keys_state WHERE id = 1").fetchone()
        if indexed > head:   # the records were restored from an older copy: rebuild the index
            ix.execute("DELETE FROM holder_keys")
            indexed = 0
        upto = min(head, indexed + INDEX_CHUNK)
        if upto <= indexed:
            ix.execute("UPDATE holder_keys_state SET indexed_seq = ? WHERE id = 1", (indexed,))
            return 0
        # in B-tree order, so each index page is written once per chunk; all of it inside SQLite
        ix.execute(f"INSERT OR IGNORE INTO main.holder_keys (hkey, seq) SELECT substr(holder_hmac, 1, {HOLDER_KEY_CHARS}) AS k, "
                   "seq FROM rec.audit_records WHERE seq > ? AND seq <= ? AND holder_hmac IS NOT NULL "
                   "ORDER BY k, seq", (indexed, upto))
        # the applicant of a record that names one (an item check's: the holder is the licence's)
        ix.execute(f"INSERT OR IGNORE INTO main.holder_keys (hkey, seq) SELECT {_APPLICANT_KEY} AS k, seq "
                   f"FROM rec.audit_records WHERE seq > ? AND seq <= ? AND {_APPLICANT_AT} > 0 ORDER BY k, seq",
                   (indexed, upto))
        ix.execute("UPDATE holder_keys_state SET indexed_seq = ? WHERE id = 1", (upto,))
        return upto - indexed

    async def _write_or_503(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._write(fn)
        except sqlite3.Error as exc:
            raise unavailable(f"audit database write failed: {exc}") from exc

    async def _close_backend(self) -> None:
        def close_all() -> None:
            with self._wconn, self._ixlock:
                for conn in (self._w, self._r, self._ix):
                    if conn is not None:
                        conn.close()
                self._w = self._r = self._ix = None

        async with self._rlock:
            await asyncio.to_thread(close_all)
        await asyncio.to_thread(self._bg.shutdown)

    # -- reads -------------------------------------------------------------------------------
    async def state(self) -> ChainState:
        row = await self._read(lambda c: c.execute(
            "SELECT head_seq, head_hash, start_seq, start_hash, commits FROM audit_state WHERE id = 1").fetchone())
        return ChainState(*row)

    async def read_records(self, after_seq: int, limit: int) -> list[StoredRecord]:
        rows = await self._read(lambda c: c.execute(
            f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall())
        return [_record_of(r) for r in rows]

    async def read_checkpoints(self) -> list[Checkpoint]:
        rows = await self._read(lambda c: c.execute(
            "SELECT seq, hash, time, kid, jws FROM audit_checkpoints ORDER BY seq").fetchall())
        return [Checkpoint(*r) for r in rows]

    async def search(self, query: AuditQuery) -> list[StoredRecord]:
        where, args = [], []
        if query.holder_hmac is not None:   # the record's holder, or its applicant (an item check's)
            where.append(f"(holder_hmac = ? OR instr(extra, '{_APPLICANT}' || ? || '\"') > 0)")
            args += [query.holder_hmac, query.holder_hmac]
        for col, val in (("partner", query.partner), ("item_code", query.item_code)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if query.since is not None:
            where.append("time >= ?")
            args.append(format_time(query.since))
        if query.until is not None:
            where.append("time < ?")
            args.append(format_time(query.until))
        cond = " AND ".join(where)
        if query.holder_hmac is None:
            sql = f"{_SELECT} {'WHERE ' + cond if cond else ''} ORDER BY seq DESC LIMIT ?"
            rows = await self._read(lambda c: c.execute(sql, (*args, query.limit)).fetchall())
            return [_record_of(r) for r in rows]
        # by holder: the records the index names (up to its watermark) and a scan of the rest
        holder = query.holder_hmac

        def from_index(ix: sqlite3.Connection) -> tuple[int, list[int]]:
            (upto,) = ix.execute("SELECT indexed_seq FROM holder_keys_state WHERE id = 1").fetchone()
            seqs = [r[0] for r in ix.execute("SELECT seq FROM holder_keys WHERE hkey = ? AND seq <= ?",
                                             (holder[:HOLDER_KEY_CHARS], upto))]
            return upto, seqs

        def read_index() -> tuple[int, list[int]]:
            with self._ixlock:
                if self._ix is None:
                    raise unavailable("audit holder index is closed")
                return from_index(self._ix)   # two reads; entries up to the watermark never change

        try:
            upto, seqs = await asyncio.to_thread(read_index)
        except sqlite3.Error as exc:
            raise unavailable(f"audit holder index failed: {exc}") from exc
        sql = (f"SELECT * FROM ({_SELECT} WHERE seq IN (SELECT value FROM json_each(?)) AND {cond} "
               f"UNION ALL {_SELECT} WHERE seq > ? AND {cond}) ORDER BY seq DESC LIMIT ?")
        params = (orjson.dumps(seqs).decode(), *args, upto, *args, query.limit)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [_record_of(r) for r in rows]


def _upgrade_holder_index(ix: sqlite3.Connection) -> None:
    """Empty an index of an older :data:`HOLDER_INDEX_VERSION` (one keyed by holders only would leave the
    applicants' records it covers out of every search): derived data, rebuilt from the records."""
    (version,) = ix.execute("PRAGMA user_version").fetchone()
    if version < HOLDER_INDEX_VERSION:
        ix.execute("DELETE FROM holder_keys")
        ix.execute("UPDATE holder_keys_state SET indexed_seq = 0 WHERE id = 1")
        ix.execute(f"PRAGMA user_version = {HOLDER_INDEX_VERSION}")


def append_txn(bodies: Sequence[dict[str, Any]], due: Callable[[int, str, int], Checkpoint | None]
               ) -> Callable[[sqlite3.Connection], list[AppendReceipt]]:
    """The append transaction of one batch (run by :func:`_in_transaction`): re-read the head (other
    processes may share the file), chain and insert the records, store a checkpoint when ``due``
    returns one, move the head. Shared by the writer thread and the writer process."""
    def txn(c: sqlite3.Connection) -> list[AppendReceipt]:
        head_seq, head_hash, last_cp = c.execute(
            "SELECT head_seq, head_hash, last_checkpoint_seq FROM audit_state WHERE id = 1").fetchone()
        params, receipts = chained_rows(head_seq, head_hash, bodies)
        width = len(_COLS)
        for i in range(0, len(receipts), _ROWS_PER_INSERT):
            n = min(_ROWS_PER_INSERT, len(receipts) - i)
            c.execute(_insert_rows(n), params[i * width:(i + n) * width])
        last = receipts[-1]
        cp = due(last.seq, last.hash, last_cp)
        if cp is not None:
            c.execute("INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?, ?)", (cp.seq, cp.hash, cp.time, cp.kid, cp.jws))
            last_cp = cp.seq
        c.execute("UPDATE audit_state SET head_seq = ?, head_hash = ?, last_checkpoint_seq = ?, "
                  "commits = commits + 1 WHERE id = 1", (last.seq, last.hash, last_cp))
        return receipts

    return txn


def _text_or_bytes(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _tolerant(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    """Run a read; when a TEXT value is not UTF-8 (only written by hand: ``CAST(X'..' AS TEXT)``) read
    it again with such values as bytes, a type no record holds, so ``audit verify`` names the record
    and a search prints it. The default reader raised for the whole read: verify and every search
    touching the row ended in a store error (exit 2), naming nothing."""
    try:
        return fn(conn)
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
    conn.text_factory = _text_or_bytes
    try:
        return fn(conn)
    finally:
        conn.text_factory = str


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T],
                    begin: str = "BEGIN IMMEDIATE") -> T:
    conn.execute(begin)
    try:
        result = fn(conn)
        conn.execute("COMMIT")
        return result
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
