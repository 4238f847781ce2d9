"""SQLite audit sink whose appends are committed on the event loop's own thread
(``audit_writer = "inline"``).

Why: on a small machine under load every hop to another thread or process costs more than the
commit itself. A writer *thread* re-takes the interpreter lock after each sqlite call and waits
for the busy loop to release it; a writer *process* needs two pipe hops and two wake-ups per
batch, and when the cores are saturated each wake-up waits for the scheduler (milliseconds). The
work of a commit is small -- chain hashes, one multi-row ``INSERT``, ``COMMIT`` with its fsync
(~0.25 ms here), one receipt signature per batch -- so it is done where the answers wait:

* ``append_*`` queues the group and, for the first group since the last commit, schedules ONE
  drain: at once when the previous commit started at least ``commit_interval`` ago (an idle
  gateway adds no wait), else at that moment (``call_later``), or at once when ``max_batch``
  records are queued. The interval widens to ``commit_interval_busy`` as the loop thread gets busy
  (:func:`commit_spacing`). A commit has a large fixed cost here -- the WAL fsync alone is ~150 us of
  kernel CPU on this VM, the receipt signature ~35 us, the statements ~20 us -- against ~25 us a
  record, so spacing commits a few milliseconds apart under load is what keeps the trail cheap
  (load/bench_audit_overhead.py); a lone answer never waits more than ``commit_interval``;
* the drain runs the statements of everything queued (up to ``max_batch`` records per
  transaction) in one ``BEGIN IMMEDIATE`` transaction on a connection of its own -- head read,
  chaining, one multi-row ``INSERT``, head update: memory work, no waiting -- then ``COMMIT``,
  which with ``fsync_after_commit`` (the default) only writes the WAL frames (``synchronous=NORMAL``)
  and releases the write lock at once, and hands the WAL file's fsync (0.3-1 ms here) to a commit
  thread, so the loop goes on serving the requests that will form the next batch (the classic
  group-commit pipeline: one transaction in flight at a time); the thread hands the finished batch
  straight back to the loop (``call_soon_threadsafe``: one loop pass, where ``run_in_executor``'s
  future took two -- 2 workers at 3,000/s open loop, six interleaved 6-s pairs: the answers' audit
  wait p50 5.4 vs 6.0 ms, p99 16.6 vs 21.1 ms, medians). Nobody is answered before that
  fsync has returned: the batch is then durable exactly as ``synchronous=FULL`` would have made
  it, but another worker sharing the file no longer waits for our fsync to take the lock (open
  loop at 1,780/s, 2 workers, three interleaved pairs: p99 20-24 vs 24-35 ms). Running the
  ``COMMIT`` on the thread as well was tried and measured worse (each sqlite or os call there
  re-takes the interpreter lock from the busy loop: p50 at half max 12-15 vs 7-8 ms); the price
  is that SQLite's automatic checkpoint, which a ``COMMIT`` runs once the WAL passes
  ``WRITER_AUTOCHECKPOINT_PAGES`` (reached within ~20 s at 1,600 answers/s when the low-priority
  background checkpoints fall behind), runs on the loop. Without ``fsync_after_commit``,
  ``COMMIT`` itself (``synchronous=FULL``) goes to the thread. A batch of at most
  ``inline_commit_max`` records (16: a worker below its maximum, whose batches are small) is made
  durable on the loop itself, saving the hand-over (at half max a batch's answers waited longer for
  the thread's hand-over than the fsync holds the loop: ``audit_inline_commit_max`` in
  gateway/config.py). With ``async_fsync`` (the default, where Linux has native AIO) neither
  happens: the fdatasync is started with ``io_submit`` and the loop goes on; its completion,
  signalled on an eventfd the loop watches, answers the batch (gateway/audit/aio_sync.py).
  When the batch is durable, the loop seals its receipt drafts (one signature) and resolves
  every waiter;
* the connection never waits for SQLite's lock: another process (a second worker) holding it
  makes ``BEGIN IMMEDIATE`` fail at once, the batch stays queued (growing meanwhile) and the drain
  is retried after :data:`RETRY_FIRST_S`, doubling to :data:`RETRY_MAX_S`, so the loop keeps serving;
  past the sink's busy timeout the batch fails with ``AUDIT_UNAVAILABLE`` (503), nothing of it stored.

At its maximum, where batches are larger, the loop never waits for the disk. Everything else --
reads, search, checkpoints, pruning, the holder index, WAL copies -- is :class:`SqliteAuditSink`'s,
on threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import os
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.audit.aio_sync import AioSync, open_aio_sync
from gateway.audit.model import AppendReceipt
from gateway.audit.sink import Appended, _Item, unavailable
from gateway.audit.verifications import PreparedRecord, VerificationGroup, expand
from gateway.audit.sqlite import WRITER_AUTOCHECKPOINT_PAGES, SqliteAuditSink, _connect

#: a commit slower than this (seconds, its start to durable) is logged as a WARNING with the WAL's size
SLOW_COMMIT_S = 0.1
#: first wait before retrying a commit that found the database locked by another writer (seconds)
RETRY_FIRST_S = 0.0002
#: the longest wait between two such retries (seconds)
RETRY_MAX_S = 0.001
#: load-adaptive commit spacing (``commit_interval_busy``): the loop thread's CPU share is measured over
#: windows of at least this many seconds (CPU time of the thread / elapsed time, read at a commit's start)
LOAD_WINDOW_S = 0.02
#: at or below this CPU share of the loop thread, commits are spaced by ``commit_interval``
BUSY_LOW = 0.3
#: at or above this share, by ``commit_interval_busy``; linearly in between. A worker sharing 2 cores
#: with another worker and the load generator gets ~2/3 of a core when all want one, so "busy" starts
#: well below 1.0
BUSY_HIGH = 0.7
log = logging.getLogger("gateway.audit")
_BUSY_CODES = frozenset({5, 6, 261, 262, 517})   # SQLITE_BUSY, SQLITE_LOCKED and their extended codes


#: how the WAL file is made durable: fdatasync where the platform has it, as SQLite itself syncs its
#: files on Linux. It writes the data and what is needed to read it back (the size, when the WAL grew),
#: not the modification time, so a WAL rewritten in place needs no file-system journal commit, which
#: on ext4 (data=ordered) would also wait for the database file's dirty pages of a checkpoint running
#: at the same time. Measured here: 135 vs 164 us a call, alone; in four interleaved 8-s open-loop
#: pairs at 2,600/s the tails of the two were not told apart (p99 20-37 vs 21-34 ms).
_sync = getattr(os, "fdatasync", os.fsync)


def _commit(conn: sqlite3.Connection) -> None:
    """The commit thread: COMMIT, or roll back and re-raise (nothing of the batch stored)."""
    try:
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def commit_spacing(busy: float, idle_s: float, busy_s: float) -> float:
    """The least time between two commit starts for a loop thread that used ``busy`` (its CPU time over
    the elapsed time) of the last window: ``idle_s`` up to :data:`BUSY_LOW`, ``busy_s`` from
    :data:`BUSY_HIGH`, linear in between.

    Why: a commit's fixed cost (the WAL's fdatasync as kernel CPU, the receipt signature, the
    statements: ~0.3 ms here) is paid once per batch. An idle worker should commit at once (its answers
    wait for nothing); a busy one pays that cost for every 1-3 answers at a 1-ms spacing, CPU its
    requests and the other processes on the cores then lack, and which shows in the tail as queueing
    (load/bench_ab.py, session 17: docs/performance-history.md)."""
    if busy_s <= idle_s or busy <= BUSY_LOW:
        return idle_s
    if busy >= BUSY_HIGH:
        return busy_s
    return idle_s + (busy - BUSY_LOW) / (BUSY_HIGH - BUSY_LOW) * (busy_s - idle_s)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


class SqliteInlineAuditSink(SqliteAuditSink):
    """:class:`SqliteAuditSink` with its appends committed on the event loop thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._a: sqlite3.Connection | None = None   # the appending connection: loop thread only, never waits
        self._pending: list[_Item] = []
        self._queued_records = 0
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._last_start = -1e9   # time.monotonic() of the last commit's start
        self._retry = RETRY_FIRST_S
        self._busy_since: float | None = None
        self._drained: asyncio.Event | None = None
        self._inflight: list[_Item] | None = None   # the batch whose COMMIT the commit thread runs
        # the COMMIT (WAL write + fsync, ~0.3-1 ms) off the event loop: the loop serves the next
        # batch's requests meanwhile. The connection is used by one thread at a time: the loop
        # runs no statement while a COMMIT is in flight.
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-commit")
        self._wal_fd: int | None = None   # the WAL file, opened at the first fsync (fsync_after_commit)
        self._drain_ctx = contextvars.Context()   # the drain's context: no request's
        self._aio: AioSync | None = None   # async_fsync: the WAL's fdatasync started with Linux AIO
        # the batch the AIO sync in flight makes durable, with that sync's token
        self._aio_batch: tuple[int, list[_Item], list[AppendReceipt]] | None = None
        self._aio_tokens = itertools.count(1)
        # load-adaptive spacing: the spacing in force, and (monotonic, loop thread CPU) at the window's start
        self._spacing = self.config.commit_interval
        self._cpu_clock = time.thread_time
        self._load_mark = (time.monotonic(), self._cpu_clock())
        #: the loop thread's CPU share over the last window measured (None until one is)
        self.loop_cpu_share: float | None = None

    def _open_sync(self) -> None:
        super()._open_sync()
        # busy timeout 0: a locked database answers at once and the drain is retried later.
        # fsync_after_commit: COMMIT only writes the WAL (NORMAL) and :meth:`_sync_wal` makes it durable
        self._a = _connect(self.path, 0, synchronous="NORMAL" if self.config.fsync_after_commit else "FULL",
                           autocheckpoint=WRITER_AUTOCHECKPOINT_PAGES)

    def _sync_wal(self) -> None:
        """fdatasync (:data:`_sync`) the WAL file: every transaction this connection committed before the call is then
        durable -- in the WAL, or in the database file if a checkpoint (which syncs the WAL first and
        the database after) has moved it there. The file is opened at the first call and kept: SQLite
        deletes a WAL file only when the last connection to the database closes, and this sink's own
        connections stay open until :meth:`close` (a restart of the WAL rewrites the same file). One
        syscall here, not three: every call on the commit thread re-takes the interpreter lock from
        the busy loop. Runs on the commit thread, or on the loop for a small batch: never both at
        once (one batch in flight)."""
        if self._wal_fd is None:
            self._wal_fd = os.open(self.path + "-wal", os.O_RDONLY | os.O_CLOEXEC)
        _sync(self._wal_fd)

    def _start(self) -> None:
        self._load_mark = (time.monotonic(), self._cpu_clock())   # the loop thread's CPU clock, from here on
        if self.config.gil_switch_interval > 0:   # the commit thread re-takes the GIL after its fsync
            sys.setswitchinterval(min(sys.getswitchinterval(), self.config.gil_switch_interval))
        self._loop = asyncio.get_running_loop()
        if self.config.async_fsync and self.config.fsync_after_commit:
            self._aio = open_aio_sync()
            if self._aio is None:
                log.info("audit: Linux AIO unavailable; the WAL is fsynced on the loop or the commit thread")
            else:
                self._loop.add_reader(self._aio.eventfd, self._drain_ctx.run, self._aio_done)

    def _running(self) -> bool:
        return not self._closed and self._a is not None

    # -- queueing ----------------------------------------------------------------------------
    async def append_verifications(self, group: Any) -> Appended:
        """Queue one verify answer's :class:`VerificationGroup` as it is; the drain expands it into
        records and receipt drafts together with the rest of its batch (:meth:`_expand`): one tight
        loop over a batch instead of the same work spread over every request, and a waiting answer
        holds one small group instead of its records and drafts until the commit."""
        if not self._running():
            raise unavailable("audit sink is closed")
        fut: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        # the queued item is (entries, group, future) until expanded: len(item[0]) is its record count
        self._enqueue((group.entries, group, fut))   # type: ignore[arg-type]
        return await fut

    def _expand(self, batch: list[_Item]) -> None:
        """Expand the batch's queued groups in place (in ``batch`` and the queue it heads), before
        the transaction starts: a batch retried after a busy lock is expanded once."""
        for k, item in enumerate(batch):
            if isinstance(item[1], VerificationGroup):
                bodies, drafts = expand(item[1], self.sealer)
                batch[k] = self._pending[k] = (tuple(PreparedRecord(b) for b in bodies), tuple(drafts), item[2])

    def _enqueue(self, item: _Item) -> None:
        if self._queued_records >= self.config.queue_limit:
            raise unavailable("audit queue is full")
        self._pending.append(item)
        self._queued_records += len(item[0])
        if self._handle is None:
            self._schedule(self._wait())
        elif self._queued_records >= self.config.max_batch and isinstance(self._handle, asyncio.TimerHandle) \
                and self._busy_since is None:
            self._handle.cancel()   # a full batch does not wait for the interval
            self._schedule(0)

    def _wait(self) -> float:
        """Seconds until the next commit may start (0 with a full batch queued)."""
        if self._queued_records >= self.config.max_batch:
            return 0.0
        now = time.monotonic()
        return max(0.0, self._last_start + self._commit_spacing(now) - now)

    def _commit_spacing(self, now: float) -> float:
        """The spacing in force, re-read from the loop thread's CPU share once a window has passed."""
        cfg = self.config
        if cfg.commit_interval_busy <= cfg.commit_interval:
            return cfg.commit_interval
        since, cpu_then = self._load_mark
        elapsed = now - since
        if elapsed >= LOAD_WINDOW_S:
            cpu = self._cpu_clock()
            self._load_mark = (now, cpu)
            self.loop_cpu_share = (cpu - cpu_then) / elapsed
            self._spacing = commit_spacing(self.loop_cpu_share, cfg.commit_interval, cfg.commit_interval_busy)
        return self._spacing

    @property
    def commit_spacing_s(self) -> float:
        """The least time between two commit starts now in force (seconds)."""
        return self._spacing if self.config.commit_interval_busy > self.config.commit_interval else \
            self.config.commit_interval

    def _schedule(self, delay: float) -> None:
        """Schedule the drain in a context of its own: it serves a batch of many requests, so what it
        logs must not carry the request id of whichever request happened to schedule it."""
        assert self._loop is not None
        self._handle = (self._loop.call_later(delay, self._drain, context=self._drain_ctx) if delay > 0
                        else self._loop.call_soon(self._drain, context=self._drain_ctx))

    # -- the drain (event loop thread) -------------------------------------------------------
    def _take(self) -> list[_Item]:
        """The queued groups of the next transaction: at least one, then up to ``max_batch`` records."""
        limit, pending = self.config.max_batch, self._pending
        n, k = len(pending[0][0]), 1
        while k < len(pending) and n + len(pending[k][0]) <= limit:
            n += len(pending[k][0])
            k += 1
        return pending[:k]

    def _drain(self) -> None:
        """Run the next transaction's statements here; its ``COMMIT`` (the WAL write and fsync)
        goes to the commit thread, and :meth:`_committed` answers the batch when it is durable."""
        self._handle = None
        if not self._pending or self._inflight is not None:
            return
        batch = self._take()
        self._last_start = time.monotonic()
        conn = self._a
        try:
            self._expand(batch)
            if conn is None:
                raise unavailable("audit database is closed")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _is_busy(exc) and self._retry_allowed():
                self._schedule(self._retry)          # the batch stays queued; more may join it
                self._retry = min(self._retry * 2, RETRY_MAX_S)
                return
            self._done(batch, exc)
            return
        except Exception as exc:  # noqa: BLE001 - any store failure means "not audited"
            self._done(batch, exc)
            return
        self._retry, self._busy_since = RETRY_FIRST_S, None
        try:
            receipts: list[AppendReceipt] = self._txn([e.body() for item in batch for e in item[0]])(conn)
        except Exception as exc:  # noqa: BLE001 - nothing of the batch is stored
            _rollback(conn)
            self._done(batch, exc)
            return
        assert self._loop is not None
        if self.config.fsync_after_commit:
            try:
                conn.execute("COMMIT")   # the WAL frames written, the lock released: not yet durable
            except Exception as exc:  # noqa: BLE001 - nothing of the batch is stored
                _rollback(conn)
                self._done(batch, exc)
                return
            if self._aio is not None and self._aio_submit(batch, receipts):
                return   # :meth:`_aio_done` answers the batch when the sync has returned
            durable: Any = self._sync_wal   # a failure now: stored, but unanswered (503)
        else:
            durable = functools.partial(_commit, conn)
        if len(receipts) <= self.config.inline_commit_max:
            # a small batch (a worker below its maximum): make it durable here. Handing it to the
            # thread costs two wake-ups, a GIL hand-over and a loop pass, dearer than the fsync's wait
            # (audit_inline_commit_max in gateway/config.py)
            failure: BaseException | None = None
            try:
                durable()
            except Exception as exc:  # noqa: BLE001 - not known durable: the waiters get 503
                failure = exc
            self._committed(batch, receipts, failure)
            return
        self._inflight = batch
        self._committer.submit(self._make_durable, durable, batch, receipts)

    def _aio_submit(self, batch: list[_Item], receipts: list[AppendReceipt]) -> bool:
        """Start the WAL's fdatasync with Linux AIO for ``batch`` (COMMIT has written its frames);
        False when the kernel refused it -- AIO is then given up for good and the batch synced as
        without it."""
        assert self._aio is not None
        try:
            if self._wal_fd is None:
                self._wal_fd = os.open(self.path + "-wal", os.O_RDONLY | os.O_CLOEXEC)
            token = next(self._aio_tokens)
            self._aio.submit(self._wal_fd, token)
        except OSError as exc:
            log.warning("audit: Linux AIO fdatasync refused (%s); syncing without it from now on", exc)
            self._aio_stop()
            return False
        self._inflight = batch
        self._aio_batch = (token, batch, receipts)
        return True

    def _aio_done(self) -> None:
        """The eventfd is readable: answer the in-flight batch once ITS fdatasync has returned (the
        token tells; a completion of any other sync proves nothing about this batch's frames)."""
        if self._aio is None or self._aio_batch is None:
            return
        token, batch, receipts = self._aio_batch
        failure: BaseException | None = None
        try:
            results = [res for tok, res in self._aio.reap() if tok == token]
        except OSError as exc:   # the result cannot be learnt: not known durable; AIO given up
            log.warning("audit: reading Linux AIO completions failed (%s); syncing without it from now on", exc)
            failure, results = exc, [0]
            self._aio_stop()
        if not results:
            return
        self._aio_batch = None
        if failure is None and results[0] < 0:
            failure = OSError(-results[0], f"fdatasync of the audit WAL: {os.strerror(-results[0])}")
        self._committed(batch, receipts, failure)

    def _aio_stop(self) -> None:
        if self._aio is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._aio.eventfd)
            self._aio.close()
            self._aio = None

    def _make_durable(self, durable: Any, batch: list[_Item], receipts: list[AppendReceipt]) -> None:
        """On the commit thread: make the batch durable, then hand :meth:`_committed` straight to the
        loop -- one hop. (``run_in_executor`` took two: its thread-safe call sets an asyncio future
        in one loop iteration, whose done callback runs in the next; under load an iteration serves
        several requests, and every answer of the batch waited for both.)"""
        failure: BaseException | None = None
        try:
            durable()
        except BaseException as exc:  # noqa: BLE001 - not known durable: the waiters get 503
            failure = exc
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, batch, receipts, failure, context=self._drain_ctx)

    def _slow(self, what: str, took_s: float, records: int) -> None:
        wal = self.path + "-wal"
        try:
            wal_bytes = os.stat(wal).st_size
        except OSError:
            wal_bytes = -1
        log.warning("audit: %s took %.0f ms (%d records; WAL %d bytes)", what, took_s * 1000, records, wal_bytes,
                    extra={"took_ms": round(took_s * 1000, 1), "records": records, "wal_bytes": wal_bytes})

    def _committed(self, batch: list[_Item], receipts: list[AppendReceipt], failure: BaseException | None) -> None:
        """On the loop: the batch is durable (``failure`` None) or not known to be; answer its waiters."""
        self._inflight = None
        took = time.monotonic() - self._last_start
        if took >= SLOW_COMMIT_S:
            self._slow("a commit, from its start to durable (the WAL fsync)", took, len(receipts))
        outcome: list[Appended] | BaseException
        if failure is not None:
            outcome = failure
        else:
            try:
                outcome = self._finish(batch, receipts)
            except Exception as err:  # noqa: BLE001 - committed but not sealed: the waiters get 503
                outcome = err
        self._done(batch, outcome)

    def _done(self, batch: list[_Item], outcome: list[Appended] | BaseException) -> None:
        del self._pending[:len(batch)]
        self._queued_records -= sum(len(item[0]) for item in batch)
        self._resolve(batch, outcome)
        if self._pending:
            if self._handle is None:
                self._schedule(self._wait())
        elif self._drained is not None:
            self._drained.set()

    def _retry_allowed(self) -> bool:
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        return now - self._busy_since < self._busy_ms / 1000

    # -- closing -----------------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True    # new appends are refused; the queued ones are still committed
        if self._pending:
            self._drained = asyncio.Event()
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            if self._inflight is None:
                self._schedule(0)
            await self._drained.wait()
        await self._close_backend()

    async def _close_backend(self) -> None:
        self._aio_stop()   # nothing in flight: close() waited for the last batch
        await asyncio.to_thread(self._committer.shutdown)
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        if self._a is not None:
            self._a.close()
            self._a = None
        await super()._close_backend()
