"""The audit sink contract and the group-commit machinery shared by every backend.

* :class:`AuditSink` -- what a handler needs: ``append`` (returns only after the record is
  durably committed) and ``close``.
* :class:`AuditStore` -- what verification, search, retention and the CLI need.
* :class:`GroupCommitSink` -- one writer per sink (a task; for SQLite a thread). ``append`` /
  ``append_group`` queue events (validated when built) with one future; the writer takes the
  first queued group, gathers what is queued (pausing once for ``window`` seconds when the batch
  is not yet ``max_batch`` events), then the backend commits the whole batch in ONE transaction
  (head lock, chain, insert, head update, maybe a checkpoint), the ``sealer`` signs one statement
  over the batch's receipt drafts, and every waiter is resolved. If the transaction fails, nothing of the batch is
  stored and every waiter gets ``InfrastructureError(AUDIT_UNAVAILABLE)`` (the caller
  answers 503); the next batch starts again from the committed head.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from gateway.audit.chain import CheckpointSigner
from gateway.audit.model import (
    AppendReceipt,
    AuditEvent,
    AuditQuery,
    ChainState,
    Checkpoint,
    PruneResult,
    StoredRecord,
)
from gateway.errors import AUDIT_UNAVAILABLE, InfrastructureError

log = logging.getLogger("gateway.audit")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


@runtime_checkable
class AuditSink(Protocol):
    async def append(self, event: AuditEvent) -> AppendReceipt: ...

    async def close(self) -> None: ...


@runtime_checkable
class AuditStore(Protocol):
    async def state(self) -> ChainState: ...

    async def read_records(self, after_seq: int, limit: int) -> list[StoredRecord]:
        """Records with seq > after_seq in seq order, at most ``limit``."""
        ...

    async def read_checkpoints(self) -> list[Checkpoint]: ...

    async def search(self, query: AuditQuery) -> list[StoredRecord]: ...

    async def prune(self, before: datetime) -> PruneResult: ...

    async def checkpoint(self) -> Checkpoint | None: ...


@dataclass(frozen=True, slots=True)
class GroupCommitConfig:
    max_batch: int = 256          # records per transaction at most
    window: float = 0.001         # seconds the writer waits for more events after the first
    queue_limit: int = 20_000     # appends waiting beyond this fail fast with AUDIT_UNAVAILABLE
    checkpoint_every: int = 1000  # sign a checkpoint when the head is this far past the last one
    #: SQLite writer thread: the process's GIL switch interval is lowered to at most this (seconds;
    #: 0 leaves it). The writer re-takes the GIL after every sqlite call (BEGIN, INSERT, COMMIT's
    #: fsync...); at the default 5 ms a busy event loop makes each re-take wait up to 5 ms, so a
    #: commit took ~10 ms under load and every answer waited for it.
    gil_switch_interval: float = 0.0002
    #: SQLite inline writer (gateway/audit/sqlite_inline.py): the least time between the starts of two
    #: commits (seconds); an append arriving later than that after the last commit is committed at once
    commit_interval: float = 0.001
    #: SQLite inline writer: the spacing of commits while the event loop is busy (seconds). The spacing
    #: rises from ``commit_interval`` to this as the loop thread's CPU share rises (see
    #: gateway/audit/sqlite_inline.py, ``commit_spacing``); 0 (or anything not above ``commit_interval``)
    #: keeps the spacing fixed at ``commit_interval``
    commit_interval_busy: float = 0.0
    #: SQLite inline writer without Linux AIO (async_fsync off or refused): batches of at most this many
    #: records are made durable on the event loop itself (a lightly loaded worker), larger ones on the
    #: commit thread
    inline_commit_max: int = 16
    #: SQLite inline writer: COMMIT writes the WAL frames and releases the write lock at once
    #: (synchronous=NORMAL), and the WAL file is fsynced right after, before any waiter is answered.
    #: False: the fsync runs inside COMMIT (synchronous=FULL), the lock held throughout.
    fsync_after_commit: bool = True
    #: SQLite inline writer, with fsync_after_commit: the WAL's fdatasync is started with Linux native AIO
    #: and its completion read from an eventfd on the event loop (gateway/audit/aio_sync.py): the loop
    #: neither blocks for the sync nor waits for a thread's hand-over. Where AIO is missing, as False.
    async_fsync: bool = True


@dataclass(slots=True)
class SinkStats:
    transactions: int = 0   # committed append transactions
    records: int = 0        # records committed
    failed_batches: int = 0
    largest_batch: int = 0


def unavailable(detail: str) -> InfrastructureError:
    return InfrastructureError(AUDIT_UNAVAILABLE, detail)


_STOP: Any = object()


def failure_name(exc: BaseException) -> str:
    """What a failed batch's 503 names: the exception's type, or for a failure reported by another process
    (the SQLite writer process: :class:`gateway.audit.sqlite_process.WriterFailed`) the type it reported."""
    return getattr(exc, "kind", None) or type(exc).__name__

#: while the store keeps failing, at most one ERROR per this many seconds (the first failure is logged at once)
FAILURE_LOG_EVERY_SECONDS = 5.0


@dataclass(slots=True)
class _Outage:
    """Failed batches since the last committed one, as logged (times: ``time.monotonic``)."""

    since: float
    batches: int = 1
    records: int = 0
    logged_at: float = 0.0
    unlogged_batches: int = 0
    unlogged_records: int = 0


class Sealer(Protocol):
    """Signs one statement per committed batch over the drafts appended with it (receipts:
    :meth:`gateway.receipts.ReceiptSigner.seal`); returns one sealed string per draft."""

    def seal(self, drafts: Sequence[Any], first_seq: int, last_seq: int, now: datetime) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Appended:
    """What :meth:`GroupCommitSink.append_group` returns once its records are committed."""

    records: tuple[AppendReceipt, ...]   # one per event, in order
    sealed: tuple[str, ...]              # one per draft, sealed with the committed batch


#: a queued group: its events, its drafts, and the future its appender awaits
_Item = tuple[tuple[AuditEvent, ...], tuple[Any, ...], "asyncio.Future[Appended]"]


class GroupCommitSink(ABC):
    """Base of the three sinks. A backend implements :meth:`_commit_batch` (one
    transaction, all or nothing) and :meth:`_close_backend`; the SQLite sink replaces the
    writer task by a writer thread (:meth:`_enqueue`, :meth:`_start`, :meth:`close`).

    ``append_group(events, drafts)`` queues several events and receipt drafts as one unit (a
    batch request); once the batch holding them is committed, the ``sealer`` signs ONE
    statement over every draft of that batch and each appender gets its sealed receipts."""

    def __init__(self, *, signer: CheckpointSigner | None, clock: Clock, config: GroupCommitConfig,
                 sealer: Sealer | None = None) -> None:
        self.signer = signer
        self.sealer = sealer
        self.clock = clock
        self.config = config
        self.stats = SinkStats()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=config.queue_limit)
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        #: an outage of the store, as logged: its start (monotonic), failed batches and records, and
        #: those not yet logged (one ERROR per FAILURE_LOG_EVERY_SECONDS, then one line when it is over)
        self._outage: _Outage | None = None

    # -- backend hooks -------------------------------------------------------------------
    @abstractmethod
    async def _commit_batch(self, bodies: Sequence[dict[str, Any]]) -> list[AppendReceipt]:
        """Write one batch in one transaction; return each record's (seq, hash)."""

    @abstractmethod
    async def _close_backend(self) -> None:
        """Release the backend's connections."""

    def _due_checkpoint(self, head_seq: int, head_hash: str, last_cp_seq: int) -> Checkpoint | None:
        """A checkpoint to store in the same transaction, when one is due."""
        if self.signer is None or head_seq == 0 or head_seq - last_cp_seq < self.config.checkpoint_every:
            return None
        return self.signer.sign(head_seq, head_hash, self.clock())

    # -- the sink ------------------------------------------------------------------------
    def _start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._run(), name=f"{type(self).__name__}-writer")

    def _running(self) -> bool:
        return not self._closed and self._writer is not None and not self._writer.done()

    @property
    def alive(self) -> bool:
        """False once closed or once its writer is gone (appends then fail with AUDIT_UNAVAILABLE)."""
        return self._running()

    def _enqueue(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            raise unavailable("audit queue is full") from None

    async def append(self, event: AuditEvent) -> AppendReceipt:
        return (await self.append_group((event,))).records[0]

    async def append_group(self, events: Sequence[AuditEvent], drafts: Sequence[Any] = ()) -> Appended:
        """Queue ``events`` (stored in order, in one transaction) and ``drafts`` (sealed with that
        transaction's batch); return once they are committed, or raise AUDIT_UNAVAILABLE."""
        if not events:
            raise ValueError("append_group needs at least one event")
        if drafts and self.sealer is None:
            raise ValueError("receipt drafts given but the sink has no sealer")
        if not self._running():
            raise unavailable("audit sink is closed")
        fut: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._enqueue((tuple(events), tuple(drafts), fut))
        return await fut

    async def append_verifications(self, group: Any) -> Appended:
        """Append the records of one verify answer (a :class:`gateway.audit.verifications.
        VerificationGroup`) and seal its receipt drafts; here expanded by the caller's interpreter
        (the SQLite writer process expands it in its own)."""
        from gateway.audit.verifications import PreparedRecord, expand

        bodies, drafts = expand(group, self.sealer)
        return await self.append_group([PreparedRecord(b) for b in bodies], drafts)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            await self._queue.put(_STOP)   # queued appends before it are still written
            await self._writer
        await self._close_backend()

    async def _run(self) -> None:
        stop = False
        limit, window = self.config.max_batch, self.config.window
        while not stop:
            first = await self._queue.get()
            if first is _STOP:
                break
            batch, n = [first], len(first[0])
            for waited in (False, True):
                while n < limit:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                    n += len(item[0])
                if stop or n >= limit or waited or window <= 0:
                    break
                await asyncio.sleep(window)   # one gathering pause per batch, not one timer per event
            try:
                receipts = await self._commit_batch([e.body() for item in batch for e in item[0]])
                outcome: list[Appended] | BaseException = self._finish(batch, receipts)
            except Exception as exc:  # noqa: BLE001 - any store failure means "not audited"
                outcome = exc
            self._resolve(batch, outcome)

    def _finish(self, batch: Sequence[_Item], receipts: Sequence[AppendReceipt]) -> list[Appended]:
        """Split the committed receipts per group and seal the batch's drafts (one signature)."""
        if len(receipts) != sum(len(item[0]) for item in batch):  # pragma: no cover - backend bug
            raise RuntimeError("backend returned a wrong number of receipts")
        drafts = [d for item in batch for d in item[1]]
        sealed = (self.sealer.seal(drafts, receipts[0].seq, receipts[-1].seq, self.clock())
                  if drafts and self.sealer is not None else [])
        out, r, s = [], 0, 0
        for events, ds, _ in batch:
            out.append(Appended(tuple(receipts[r:r + len(events)]), tuple(sealed[s:s + len(ds)])))
            r += len(events)
            s += len(ds)
        return out

    def _resolve(self, batch: Sequence[_Item], outcome: list[Appended] | BaseException) -> None:
        """On the event loop: answer every appender of the batch."""
        if isinstance(outcome, BaseException):
            self.stats.failed_batches += 1
            self._log_failure(sum(len(i[0]) for i in batch), outcome)
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(unavailable(f"audit store failed: {failure_name(outcome)}"))
            return
        if self._outage is not None:
            self._log_recovery()
        n = sum(len(a.records) for a in outcome)
        self.stats.transactions += 1
        self.stats.records += n
        self.stats.largest_batch = max(self.stats.largest_batch, n)
        for (_, _, fut), appended in zip(batch, outcome, strict=True):
            if not fut.done():   # a cancelled caller: the record is stored all the same
                fut.set_result(appended)

    def _log_failure(self, records: int, exc: BaseException) -> None:
        """The first failed batch of an outage is logged at once; while the store keeps failing (every
        answer of every batch 503, a batch a millisecond when the store refuses at once), one summary per
        :data:`FAILURE_LOG_EVERY_SECONDS` instead of one ERROR per batch."""
        now = time.monotonic()
        o = self._outage
        if o is None:
            log.error("audit batch of %d failed: %s: %s", records, type(exc).__name__, exc)
            self._outage = _Outage(since=now, records=records, logged_at=now)
            return
        o.batches += 1
        o.records += records
        o.unlogged_batches += 1
        o.unlogged_records += records
        if now - o.logged_at >= FAILURE_LOG_EVERY_SECONDS:
            log.error("audit store still failing after %.1f s: %d more batches (%d records) failed and were answered "
                      "503; last: %s: %s", now - o.since, o.unlogged_batches, o.unlogged_records, type(exc).__name__,
                      exc, extra={"failed_batches": o.unlogged_batches, "failed_records": o.unlogged_records})
            o.logged_at, o.unlogged_batches, o.unlogged_records = now, 0, 0

    def _log_recovery(self) -> None:
        """The first committed batch after failed ones: say the store is back, after how long, at what cost."""
        o, self._outage = self._outage, None
        if o is None:
            return
        took = time.monotonic() - o.since
        log.warning("audit store back: a batch committed %.1f s after the first failure; %d batches (%d records) "
                    "failed meanwhile and were answered 503", took, o.batches, o.records,
                    extra={"outage_ms": round(took * 1000), "failed_batches": o.batches, "failed_records": o.records})
