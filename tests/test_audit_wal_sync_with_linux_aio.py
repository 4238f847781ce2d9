"""The inline writer's WAL fdatasync through Linux native AIO (gateway/audit/aio_sync.py).

The binding on its own (a real kernel context: submit, eventfd readiness, the result, a refused
submission), then the writer with a fake AIO whose completion the test releases: no waiter is
answered before the sync has returned, a failed sync answers 503 and the next batch is durable
again, a refusal falls back to the synchronous path, and neither blocking sync runs meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
from pathlib import Path
from collections.abc import AsyncIterator
from typing import Any

import pytest

import gateway.audit.sqlite_inline as inline
from gateway.audit.aio_sync import AioSync, open_aio_sync
from gateway.errors import InfrastructureError
from tests.test_audit_chain import event, verified_sqlite_file
from tests.test_audit_inline_writer import open_sink


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_an_fdatasync_submitted_with_aio_returns_at_once_and_its_result_arrives_on_the_eventfd(tmp_path: Path) -> None:
    aio = open_aio_sync()
    assert aio is not None, "Linux native AIO is what the inline writer relies on here"
    path = tmp_path / "wal"
    path.write_bytes(b"")
    wfd = os.open(path, os.O_WRONLY)
    rfd = os.open(path, os.O_RDONLY)   # the writer syncs through a read-only descriptor of the WAL
    try:
        for token in (7, 8, 9):
            os.write(wfd, os.urandom(8192))
            aio.submit(rfd, token)
            assert aio.in_flight == 1
            assert _readable(aio.eventfd, 5.0)
            assert aio.reap() == [(token, 0)]
            assert aio.in_flight == 0
        assert aio.reap() == []                 # nothing in flight: nothing reaped, no blocking
        assert not _readable(aio.eventfd, 0.0)  # the eventfd was drained
    finally:
        os.close(wfd)
        os.close(rfd)
        aio.close()


def test_a_submission_on_a_closed_descriptor_is_refused_and_nothing_is_in_flight(tmp_path: Path) -> None:
    aio = open_aio_sync()
    assert aio is not None
    fd = os.open(tmp_path / "gone", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    try:
        with pytest.raises(OSError) as err:
            aio.submit(fd, 1)
        assert err.value.errno == errno.EBADF and aio.in_flight == 0
    finally:
        aio.close()
    with pytest.raises(OSError):
        aio.submit(fd, 1)                      # a closed context refuses too


class FakeAio:
    """The AIO binding's surface with a completion the test releases (a real eventfd for the loop)."""

    def __init__(self, refuse: OSError | None = None) -> None:
        self.eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.submitted: list[int] = []
        self.results: list[tuple[int, int]] = []
        self.refuse = refuse
        self.closed = False
        self.in_flight = 0
        self.reap_error: OSError | None = None

    def submit(self, fd: int, token: int) -> None:
        if self.refuse is not None:
            raise self.refuse
        assert os.fstat(fd).st_size > 0        # the WAL frames were written before the sync started
        self.submitted.append(token)
        self.in_flight += 1

    def complete(self, result: int = 0, token: int | None = None) -> None:
        self.results.append((self.submitted[-1] if token is None else token, result))
        os.eventfd_write(self.eventfd, 1)

    def reap(self) -> list[tuple[int, int]]:
        if self.reap_error is not None:
            raise self.reap_error
        try:
            os.eventfd_read(self.eventfd)
        except BlockingIOError:
            pass
        done, self.results = self.results, []
        self.in_flight -= len(done)
        return done

    def close(self) -> None:
        self.closed = True
        os.close(self.eventfd)


async def _with_fake(tmp_path: Path, monkeypatch: Any, fake: FakeAio) -> inline.SqliteInlineAuditSink:
    blocking: list[int] = []
    monkeypatch.setattr(inline, "_sync", lambda fd: blocking.append(fd) or os.fdatasync(fd))
    monkeypatch.setattr(inline, "open_aio_sync", lambda: fake)
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.0)
    sink.blocking_syncs = blocking  # type: ignore[attr-defined]
    return sink


async def _passes(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def _one_batch_waiting_for_its_sync(tmp_path: Path, monkeypatch: Any
                                          ) -> AsyncIterator[tuple[FakeAio, Any, asyncio.Future[Any]]]:
    """A writer on a fake AIO, one append committed and its sync started, not yet returned."""
    fake = FakeAio()
    sink = await _with_fake(tmp_path, monkeypatch, fake)
    try:
        waiter = asyncio.ensure_future(sink.append(event(1)))
        await _passes(20)
        assert fake.submitted and not waiter.done()
        yield fake, sink, waiter
    finally:
        await sink.close()


async def test_no_waiter_is_answered_before_the_aio_sync_returns_and_the_loop_never_blocks_on_it(
        tmp_path: Path, monkeypatch) -> None:
    fake = FakeAio()
    sink = await _with_fake(tmp_path, monkeypatch, fake)
    try:
        for first, size in ((1, 3), (4, 40)):    # a small batch and one past audit_inline_commit_max
            waiters = [asyncio.ensure_future(sink.append(event(i))) for i in range(first, first + size)]
            await _passes(20)
            assert fake.submitted and not any(w.done() for w in waiters)   # committed, not yet durable
            fake.complete(0)
            receipts = await asyncio.gather(*waiters)
            assert [r.seq for r in receipts] == list(range(first, first + size))
        assert len(fake.submitted) == 2
        assert sink.blocking_syncs == []  # type: ignore[attr-defined]
    finally:
        await sink.close()
    assert fake.closed
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 43


async def test_a_failed_aio_sync_answers_503_and_the_next_batch_is_made_durable_again(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    async with _one_batch_waiting_for_its_sync(tmp_path, monkeypatch) as (fake, sink, first):
        fake.complete(-errno.EIO)
        with pytest.raises(InfrastructureError) as err:     # stored, not known durable: no answer
            await first
        assert err.value.reason.code == "AUDIT_UNAVAILABLE"
        second = asyncio.ensure_future(sink.append(event(2)))
        await _passes(20)
        fake.complete(0)
        assert (await second).seq == 2
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 2


async def test_a_kernel_refusing_aio_falls_back_to_the_blocking_sync_for_good(tmp_path: Path, monkeypatch) -> None:
    fake = FakeAio(refuse=OSError(errno.EINVAL, "Invalid argument"))
    sink = await _with_fake(tmp_path, monkeypatch, fake)
    try:
        assert (await sink.append(event(1))).seq == 1
        assert sink._aio is None and fake.closed
        assert (await sink.append(event(2))).seq == 2
        assert len(sink.blocking_syncs) == 2  # type: ignore[attr-defined]
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 2


async def test_the_real_writer_uses_aio_here_and_its_chain_verifies(tmp_path: Path) -> None:
    sink = await open_sink(tmp_path / "audit.db", commit_interval=0.0)
    try:
        assert isinstance(sink._aio, AioSync)
        receipts = await asyncio.gather(*(sink.append(event(i)) for i in range(1, 31)))
        assert [r.seq for r in receipts] == list(range(1, 31))
        assert (await sink.append(event(31))).seq == 31
        assert sink._aio.in_flight == 0
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 31


async def test_async_fsync_off_or_the_fsync_inside_commit_opens_no_aio_context(tmp_path: Path) -> None:
    for config in ({"async_fsync": False}, {"fsync_after_commit": False}):
        sink = await open_sink(tmp_path / f"audit-{len(config)}-{next(iter(config))}.db", **config)
        try:
            assert sink._aio is None
            assert (await sink.append(event(1))).seq == 1
        finally:
            await sink.close()


async def test_a_completion_of_another_sync_does_not_answer_the_batch(tmp_path: Path, monkeypatch) -> None:
    async with _one_batch_waiting_for_its_sync(tmp_path, monkeypatch) as (fake, _sink, waiter):
        fake.complete(0, token=fake.submitted[-1] + 1000)   # not the sync started for this batch
        await _passes(20)
        assert not waiter.done()
        fake.complete(0)
        assert (await waiter).seq == 1


async def test_completions_that_cannot_be_read_answer_503_and_aio_is_given_up(tmp_path: Path, monkeypatch) -> None:
    async with _one_batch_waiting_for_its_sync(tmp_path, monkeypatch) as (fake, sink, waiter):
        fake.reap_error = OSError(errno.EFAULT, "Bad address")
        fake.complete(0)
        with pytest.raises(InfrastructureError) as err:
            await waiter
        assert err.value.reason.code == "AUDIT_UNAVAILABLE"
        assert sink._aio is None and fake.closed
        assert (await sink.append(event(2))).seq == 2          # synced without AIO from now on
        assert len(sink.blocking_syncs) == 1  # type: ignore[attr-defined]
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 2
