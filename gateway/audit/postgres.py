"""PostgreSQL audit sink (asyncpg): one chain shared by several gateway processes / nodes.

Each batch is one transaction that first takes the chain head with
``SELECT ... FROM audit_state WHERE id = 1 FOR UPDATE``: appenders in other processes
queue on that row lock, and under READ COMMITTED the locked row is re-read after the
other transaction commits, so every batch chains onto the real head: seq stays gap-free
and prev_hash correct across processes. The batch is inserted with one
``INSERT ... SELECT FROM unnest(...)`` statement. ``synchronous_commit`` is left at its
default (on), so COMMIT returns only once the WAL is flushed.

Tables live in a schema of their own (``schema=``; tests use one schema per test).
``time`` is a ``timestamptz`` (microseconds, like the canonical text); ``reasons`` and
``extra`` are the canonical JSON text: ``jsonb`` would renormalise numbers and change
the hash input.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from gateway.audit.chain import CheckpointSigner, extend_chain, receipts_of
from gateway.audit.model import (BODY_FIELDS, GENESIS_HASH, AppendReceipt, AuditQuery, ChainState,
                                 Checkpoint, PruneResult, StoredRecord, format_time, parse_time, stored_json)
from gateway.audit.sink import Clock, GroupCommitConfig, GroupCommitSink, Sealer, system_clock, unavailable

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
#: the (sink, connection) whose snapshot the current task reads in (:meth:`PostgresAuditSink.read_snapshot`)
_SNAPSHOT: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar("audit_pg_snapshot", default=None)
_COLS = ("seq", "prev_hash", "hash", *BODY_FIELDS)
#: what a failing server or connection raises. InternalClientError included: a connection the server ends
#: (restart, pg_terminate_backend) between two statements of a transaction is left in a protocol state in
#: which the next statement, or the ROLLBACK of ``conn.transaction()``, raises it ("cannot switch to state
#: 15; another operation (2) is in progress", seen under load in session 21)
_PG_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError,
              TimeoutError)


#: the applicant's HMAC in a record's ``extra`` (an item check's records: their holder is the licence's), as
#: the gateway writes it (sorted keys, no spaces; any other text of it fails ``audit verify``): found by
#: position, which never raises on a hand-edited value where a cast to jsonb would (and would stop every
#: append), and builds its index ~10x faster than a regular expression (0.55 vs 5.3 s for 300k records here)
_APPLICANT_AT = "strpos(extra, '\"applicant\":\"')"
_HAS_APPLICANT = f"{_APPLICANT_AT} > 0"
_APPLICANT_SQL = f"substr(extra, {_APPLICANT_AT} + 13, 64)"
#: how long the schema step may take: it builds the applicant index once on a table of an older version
#: (seconds per million records; the normal command timeout would roll it back on every try)
SCHEMA_TIMEOUT = 3600.0


def _schema_sql(s: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.audit_records (
    seq bigint PRIMARY KEY,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    kind text NOT NULL,
    time timestamptz NOT NULL,
    request_id text NOT NULL,
    partner text, operator text, item_code text, region text, licence_id text, verdict text,
    reasons text NOT NULL,
    holder_hmac text,
    extra text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_holder ON {s}.audit_records(holder_hmac) WHERE holder_hmac IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_records_applicant ON {s}.audit_records(({_APPLICANT_SQL})) WHERE {_HAS_APPLICANT};
CREATE INDEX IF NOT EXISTS audit_records_partner ON {s}.audit_records(partner, time);
CREATE INDEX IF NOT EXISTS audit_records_item ON {s}.audit_records(item_code, time);
CREATE INDEX IF NOT EXISTS audit_records_time ON {s}.audit_records(time);
CREATE TABLE IF NOT EXISTS {s}.audit_checkpoints (
    seq bigint PRIMARY KEY,
    hash text NOT NULL,
    time text NOT NULL,
    kid text NOT NULL,
    jws text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.audit_state (
    id int PRIMARY KEY CHECK (id = 1),
    head_seq bigint NOT NULL,
    head_hash text NOT NULL,
    start_seq bigint NOT NULL,
    start_hash text NOT NULL,
    last_checkpoint_seq bigint NOT NULL,
    commits bigint NOT NULL
);
INSERT INTO {s}.audit_state VALUES (1, 0, '{GENESIS_HASH}', 0, '{GENESIS_HASH}', 0, 0) ON CONFLICT DO NOTHING;
"""


def _record_of(row: asyncpg.Record) -> StoredRecord:
    body = {f: row[f] for f in BODY_FIELDS}
    body["time"] = format_time(row["time"])
    body["reasons"] = stored_json(row["reasons"])
    body["extra"] = stored_json(row["extra"])
    return StoredRecord(row["seq"], row["prev_hash"], row["hash"], body)


class PostgresAuditSink(GroupCommitSink):
    def __init__(self, pool: asyncpg.Pool, schema: str, *, signer: CheckpointSigner | None, clock: Clock,
                 config: GroupCommitConfig, acquire_timeout: float, sealer: Sealer | None = None) -> None:
        super().__init__(signer=signer, clock=clock, config=config, sealer=sealer)
        self._pool = pool
        self.schema = schema
        self._acquire_timeout = acquire_timeout
        s = schema
        self._insert = (
            f"INSERT INTO {s}.audit_records ({', '.join(_COLS)}) SELECT * FROM unnest("
            "$1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], "
            "$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])")
        self._lock_head = (f"SELECT head_seq, head_hash, start_seq, last_checkpoint_seq FROM {s}.audit_state "
                           "WHERE id = 1 FOR UPDATE")
        self._select = f"SELECT {', '.join(_COLS)} FROM {s}.audit_records"

    @classmethod
    async def open(cls, dsn: str, *, schema: str = "gateway_audit", signer: CheckpointSigner | None = None,
                   clock: Clock = system_clock, config: GroupCommitConfig | None = None,
                   pool_size: int = 2, acquire_timeout: float = 5.0, command_timeout: float = 10.0,
                   connect_timeout: float = 5.0, sealer: Sealer | None = None) -> PostgresAuditSink:
        """Connect, create the schema if needed (under an advisory lock, so several processes
        may start at once) and start the writer task."""
        if not _IDENT.match(schema):
            raise ValueError(f"schema name {schema!r} is not a plain lower-case identifier")
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, command_timeout=command_timeout,
                                             timeout=connect_timeout)
        except _PG_ERRORS as exc:
            raise unavailable(f"cannot connect to the audit database: {type(exc).__name__}: {exc}") from exc
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"gateway-audit-schema:{schema}")
                await conn.execute(_schema_sql(schema), timeout=max(command_timeout, SCHEMA_TIMEOUT))
        except _PG_ERRORS as exc:
            await pool.close()
            raise unavailable(f"cannot create the audit schema: {type(exc).__name__}: {exc}") from exc
        sink = cls(pool, schema, signer=signer, clock=clock, config=config or GroupCommitConfig(),
                   acquire_timeout=acquire_timeout, sealer=sealer)
        sink._start()
        return sink

    # -- writes ------------------------------------------------------------------------------
    async def _commit_batch(self, bodies: Sequence[dict[str, Any]]) -> list[AppendReceipt]:
        s = self.schema
        async with self._pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
            head_seq, head_hash, _start, last_cp = await conn.fetchrow(self._lock_head)
            recs = extend_chain(head_seq, head_hash, bodies)
            cols: list[list[Any]] = [[] for _ in _COLS]
            for r in recs:
                b = r.body
                values = (r.seq, r.prev_hash, r.hash, b["kind"], parse_time(b["time"]), b["request_id"],
                          b["partner"], b["operator"], b["item_code"], b["region"], b["licence_id"], b["verdict"],
                          orjson.dumps(b["reasons"]).decode(), b["holder_hmac"],
                          orjson.dumps(b["extra"], option=orjson.OPT_SORT_KEYS).decode())
                for col, v in zip(cols, values, strict=True):
                    col.append(v)
            await conn.execute(self._insert, *cols)
            cp = self._due_checkpoint(recs[-1].seq, recs[-1].hash, last_cp)
            if cp is not None:
                await conn.execute(f"INSERT INTO {s}.audit_checkpoints VALUES ($1, $2, $3, $4, $5)",
                                   cp.seq, cp.hash, cp.time, cp.kid, cp.jws)
                last_cp = cp.seq
            await conn.execute(f"UPDATE {s}.audit_state SET head_seq = $1, head_hash = $2, last_checkpoint_seq = $3, "
                               "commits = commits + 1 WHERE id = 1", recs[-1].seq, recs[-1].hash, last_cp)
        return receipts_of(recs)

    async def checkpoint(self) -> Checkpoint | None:
        if self.signer is None:
            return None
        s = self.schema
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
                head_seq, head_hash, _start, _last_cp = await conn.fetchrow(self._lock_head)
                # already signed: a checkpoint of this head is stored (not last_checkpoint_seq, which
                # nothing verifies: held equal to the head by a trigger, it stopped every checkpoint)
                if head_seq == 0 or await conn.fetchval(
                        f"SELECT 1 FROM {s}.audit_checkpoints WHERE seq = $1 AND hash = $2", head_seq, head_hash):
                    return None
                cp = self.signer.sign(head_seq, head_hash, self.clock())
                await conn.execute(f"INSERT INTO {s}.audit_checkpoints VALUES ($1, $2, $3, $4, $5)",
                                   cp.seq, cp.hash, cp.time, cp.kid, cp.jws)
                await conn.execute(f"UPDATE {s}.audit_state SET last_checkpoint_seq = $1 WHERE id = 1", cp.seq)
                return cp
        except _PG_ERRORS as exc:
            raise unavailable(f"audit checkpoint failed: {type(exc).__name__}") from exc

    async def prune(self, before: datetime) -> PruneResult:
        s = self.schema
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
                head_seq, _h, start_seq, _l = await conn.fetchrow(self._lock_head)
                # no checkpoint past a record younger than ``before`` (see the SQLite sink's prune)
                row = await conn.fetchrow(
                    f"SELECT seq, hash FROM {s}.audit_checkpoints WHERE time < $1 AND seq > $2 AND seq <= $3 "
                    f"AND seq < coalesce((SELECT seq FROM {s}.audit_records WHERE seq > $2 AND time >= $4 "
                    "ORDER BY seq LIMIT 1), $3 + 1) ORDER BY seq DESC LIMIT 1",
                    format_time(before), start_seq, head_seq, before)
                if row is None:
                    return PruneResult(0, start_seq)
                status = await conn.execute(f"DELETE FROM {s}.audit_records WHERE seq <= $1", row["seq"])
                await conn.execute(f"DELETE FROM {s}.audit_checkpoints WHERE seq < $1", row["seq"])
                await conn.execute(f"UPDATE {s}.audit_state SET start_seq = $1, start_hash = $2 WHERE id = 1",
                                   row["seq"], row["hash"])
                return PruneResult(int(status.split()[-1]), row["seq"])
        except _PG_ERRORS as exc:
            raise unavailable(f"audit prune failed: {type(exc).__name__}") from exc

    async def _close_backend(self) -> None:
        await self._pool.close()

    # -- reads -------------------------------------------------------------------------------
    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            snap = _SNAPSHOT.get()
            if snap is not None and snap[0] is self:
                return await snap[1].fetch(sql, *args)
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                return await conn.fetch(sql, *args)
        except _PG_ERRORS as exc:
            raise unavailable(f"audit database read failed: {type(exc).__name__}") from exc

    @contextlib.asynccontextmanager
    async def read_snapshot(self) -> AsyncIterator[None]:
        """The reads of this task inside see one snapshot (a REPEATABLE READ, READ ONLY transaction on
        one connection): ``audit verify`` of a chain other processes append to and prune meanwhile."""
        try:
            conn = await self._pool.acquire(timeout=self._acquire_timeout)
        except _PG_ERRORS as exc:
            raise unavailable(f"audit database read failed: {type(exc).__name__}") from exc
        try:
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            token = _SNAPSHOT.set((self, conn))
            try:
                yield
            finally:
                _SNAPSHOT.reset(token)
                await tx.rollback()
        finally:
            await self._pool.release(conn)

    async def state(self) -> ChainState:
        rows = await self._fetch(f"SELECT head_seq, head_hash, start_seq, start_hash, commits "
                                 f"FROM {self.schema}.audit_state WHERE id = 1")
        return ChainState(*rows[0])

    async def read_records(self, after_seq: int, limit: int) -> list[StoredRecord]:
        rows = await self._fetch(f"{self._select} WHERE seq > $1 ORDER BY seq LIMIT $2", after_seq, limit)
        return [_record_of(r) for r in rows]

    async def read_checkpoints(self) -> list[Checkpoint]:
        rows = await self._fetch(f"SELECT seq, hash, time, kid, jws FROM {self.schema}.audit_checkpoints ORDER BY seq")
        return [Checkpoint(*r) for r in rows]

    async def search(self, query: AuditQuery) -> list[StoredRecord]:
        where: list[str] = []
        args: list[Any] = []
        if query.holder_hmac is not None:   # the record's holder, or its applicant (each arm has its index)
            args.append(query.holder_hmac)
            n = len(args)
            where.append(f"(holder_hmac = ${n} OR ({_HAS_APPLICANT} AND {_APPLICANT_SQL} = ${n} "
                         f"AND strpos(extra, '\"applicant\":\"' || ${n} || '\"') > 0))")
        for col, val in (("partner", query.partner), ("item_code", query.item_code)):
            if val is not None:
                args.append(val)
                where.append(f"{col} = ${len(args)}")
        if query.since is not None:
            args.append(query.since)
            where.append(f"time >= ${len(args)}")
        if query.until is not None:
            args.append(query.until)
            where.append(f"time < ${len(args)}")
        args.append(query.limit)
        sql = (f"{self._select} {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY seq DESC LIMIT ${len(args)}")
        return [_record_of(r) for r in await self._fetch(sql, *args)]
