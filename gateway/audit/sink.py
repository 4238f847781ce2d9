"""The audit sink contract and the group-commit machinery shared by every backend.

* :class:`AuditSink` -- what a handler needs: ``append`` (returns only after the record is
  durably committed) and ``close``.
* :class:`AuditStore` -- what verification, search, retention and the CLI need.
* :class:`GroupCommitSink` -- one writer task per sink. ``append`` validates and queues the
  event with a future; the writer takes the first queued event, keeps collecting for at
  most ``window`` seconds or until ``max_batch`` events, then the backend commits the whole
  batch in ONE transaction (head lock, chain, insert, head update, maybe a checkpoint) and
  the writer resolves every waiter. If the transaction fails, nothing of the batch is
  stored and every waiter gets ``InfrastructureError(AUDIT_UNAVAILABLE)`` (the caller
  answers 503); the next batch starts again from the committed head.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from gateway.audit.chain import CheckpointSigner
from gateway.audit.model import (AppendReceipt, AuditEvent, AuditQuery, ChainState, Checkpoint,
                                 PruneResult, StoredRecord)
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


@dataclass(slots=True)
class SinkStats:
    transactions: int = 0   # committed append transactions
    records: int = 0        # records committed
    failed_batches: int = 0
    largest_batch: int = 0


def unavailable(detail: str) -> InfrastructureError:
    return InfrastructureError(AUDIT_UNAVAILABLE, detail)


_STOP: Any = object()


class GroupCommitSink:
    """Base of the three sinks. A backend implements :meth:`_commit_batch` (one
    transaction, all or nothing) and :meth:`_close_backend`."""

    def __init__(self, *, signer: CheckpointSigner | None, clock: Clock, config: GroupCommitConfig) -> None:
        self.signer = signer
        self.clock = clock
        self.config = config
        self.stats = SinkStats()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=config.queue_limit)
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    # -- backend hooks -------------------------------------------------------------------
    async def _commit_batch(self, bodies: Sequence[dict[str, Any]]) -> list[AppendReceipt]:
        raise NotImplementedError

    async def _close_backend(self) -> None:
        raise NotImplementedError

    def _due_checkpoint(self, head_seq: int, head_hash: str, last_cp_seq: int) -> Checkpoint | None:
        """A checkpoint to store in the same transaction, when one is due."""
        if self.signer is None or head_seq == 0 or head_seq - last_cp_seq < self.config.checkpoint_every:
            return None
        return self.signer.sign(head_seq, head_hash, self.clock())

    # -- the sink ------------------------------------------------------------------------
    def _start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._run(), name=f"{type(self).__name__}-writer")

    async def append(self, event: AuditEvent) -> AppendReceipt:
        if self._closed or self._writer is None or self._writer.done():
            raise unavailable("audit sink is closed")
        fut: asyncio.Future[AppendReceipt] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((event.body(), fut))
        except asyncio.QueueFull:
            raise unavailable("audit queue is full") from None
        return await fut

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            await self._queue.put(_STOP)   # queued appends before it are still written
            await self._writer
        await self._close_backend()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            deadline = loop.time() + self.config.window
            while len(batch) < self.config.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[dict[str, Any], asyncio.Future[AppendReceipt]]]) -> None:
        try:
            receipts = await self._commit_batch([body for body, _ in batch])
            if len(receipts) != len(batch):  # pragma: no cover - backend bug
                raise RuntimeError("backend returned a wrong number of receipts")
        except Exception as exc:  # noqa: BLE001 - any store failure means "not audited"
            self.stats.failed_batches += 1
            log.error("audit batch of %d failed: %s: %s", len(batch), type(exc).__name__, exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(unavailable(f"audit store failed: {type(exc).__name__}"))
            return
        self.stats.transactions += 1
        self.stats.records += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for (_, fut), receipt in zip(batch, receipts, strict=True):
            if not fut.done():   # a cancelled caller: the record is stored all the same
                fut.set_result(receipt)
