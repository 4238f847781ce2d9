"""The SQLite writer process: what happens when it dies, and how the trail comes back.

The chain-level behaviour (tamper detection, group commit, store failures, close) runs against
this sink in tests/test_audit_chain.py ("sqlite-process"); here: the process itself is killed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.audit import CheckpointSigner, GroupCommitConfig, verify_chain
from gateway.audit.sqlite_process import SqliteProcessAuditSink
from gateway.audit.writer_proc import FrameReader, frame
from gateway.audit_wiring import AuditTrail, audit_setup_from
from gateway.config import load_settings
from gateway.errors import AUDIT_UNAVAILABLE, InfrastructureError
from tests.test_audit_chain import AUDIT_KEY, PUBLIC, T0, Clock, event, verified_sqlite_file


async def open_sink(path: Path) -> SqliteProcessAuditSink:
    return await SqliteProcessAuditSink.open(path, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"), clock=Clock(T0),
                                             config=GroupCommitConfig(checkpoint_every=20))


async def wait_until(predicate, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_killed_writer_fails_waiting_and_later_appends_and_a_new_sink_continues_the_chain(tmp_path: Path):
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    for i in range(1, 6):
        await sink.append(event(i))
    assert sink.alive and sink.writer_pid is not None
    os.kill(sink.writer_pid, signal.SIGKILL)
    await wait_until(lambda: not sink.alive)
    with pytest.raises(InfrastructureError) as exc:
        await sink.append(event(6))
    assert exc.value.reason is AUDIT_UNAVAILABLE
    await sink.close()
    again = await open_sink(path)
    try:
        assert (await again.append(event(7))).seq == 6          # gap-free after the five committed ones
        report = await verify_chain(again, PUBLIC)
        assert report.ok and report.records_checked == 6
    finally:
        await again.close()


async def test_appends_in_flight_when_the_writer_dies_get_503_not_silence(tmp_path: Path):
    path = tmp_path / "audit.db"
    sink = await open_sink(path)
    try:
        await sink.append(event(1))
        os.kill(sink.writer_pid, signal.SIGSTOP)     # frozen: appends queue up in the pipe
        pending = [asyncio.ensure_future(sink.append(event(i))) for i in range(2, 12)]
        await asyncio.sleep(0.1)
        assert not any(p.done() for p in pending)
        os.kill(sink.writer_pid, signal.SIGKILL)
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, InfrastructureError) and r.reason is AUDIT_UNAVAILABLE for r in results)
    finally:
        await sink.close()
    again = await open_sink(path)
    try:
        assert (await again.state()).head_seq == 1            # nothing answered, nothing half-stored
        assert (await verify_chain(again, PUBLIC)).ok
    finally:
        await again.close()


async def test_trail_maintenance_reopens_the_sink_after_its_writer_died(tmp_path: Path):
    settings = dataclasses.replace(load_settings(demo=True), audit_path=str(tmp_path / "audit.db"),
                                   audit_writer="process")
    setup = audit_setup_from(settings)
    assert setup.writer == "process"
    now = T0
    trail = AuditTrail(setup, lambda: now + timedelta(0))
    await trail.open()
    task = asyncio.create_task(trail.maintain())
    try:
        first = trail.sink
        await trail.append(event(1))
        os.kill(first.writer_pid, signal.SIGKILL)
        await wait_until(lambda: trail.sink is not None and trail.sink is not first and trail.sink.alive)
        assert (await trail.append(event(2))).seq == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await trail.close()


def test_writer_reads_frames_split_across_reads_and_stops_at_end_of_input(tmp_path: Path):
    r, w = os.pipe()
    data = frame({"a": 1}) + frame([2, "x" * 5000])
    os.write(w, data[:3])                # a header cut in two
    reader = FrameReader(r)
    assert reader.poll(0.05) == []
    os.write(w, data[3:4000])
    os.write(w, data[4000:])
    os.close(w)
    assert reader.read() == [{"a": 1}, [2, "x" * 5000]]
    assert reader.read() == [] and reader.eof
    os.close(r)


def test_process_sink_on_an_unopenable_database_is_audit_unavailable_and_spawns_nothing(tmp_path: Path):
    async def run() -> None:
        with pytest.raises(InfrastructureError) as exc:
            await open_sink(tmp_path / "missing-dir" / "audit.db")
        assert exc.value.reason is AUDIT_UNAVAILABLE

    asyncio.run(run())




async def test_a_lone_append_after_a_quiet_spell_commits_at_once_and_a_burst_just_after_waits_out_the_window(
        tmp_path: Path):
    window = 0.6   # large on purpose: the behaviour, not the speed, is asserted
    sink = await SqliteProcessAuditSink.open(tmp_path / "audit.db", signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"),
                                             clock=Clock(T0), config=GroupCommitConfig(checkpoint_every=20,
                                                                                       window=window))
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        assert (await sink.append(event(1))).seq == 1
        lone = loop.time() - t0
        assert lone < window / 2, f"a lone append waited {lone:.3f} s (the writer's window is {window} s)"
        t1 = loop.time()
        got = await asyncio.gather(*(sink.append(event(i)) for i in (2, 3, 4)))
        burst = loop.time() - t1
        assert sorted(r.seq for r in got) == [2, 3, 4]
        assert burst >= window - lone - 0.1, "the next commit started less than a window after the previous one"
        assert (await sink.state()).commits == 2        # the burst shared one transaction
    finally:
        await sink.close()
    assert (await verified_sqlite_file(tmp_path / "audit.db")).records_checked == 4


async def test_a_garbled_answer_fails_the_waiting_appends_and_the_writer_is_not_trusted_again(tmp_path: Path):
    sink = await open_sink(tmp_path / "audit.db")
    try:
        await sink.append(event(1))
        pid = sink.writer_pid
        os.kill(pid, signal.SIGSTOP)                  # its real answer cannot come first
        pending = asyncio.ensure_future(sink.append(event(2)))
        await asyncio.sleep(0.05)
        sink._pipes.pipe_data_received(1, frame({"ok": "not a list of groups"}))
        with pytest.raises(InfrastructureError) as exc:
            await pending
        assert exc.value.reason is AUDIT_UNAVAILABLE and "bad answer" in exc.value.detail
        assert not sink.alive
        await wait_until(lambda: sink._transport.get_returncode() is not None)   # killed
        with pytest.raises(InfrastructureError):
            await sink.append(event(3))
    finally:
        await sink.close()


class _Answers:
    """Stands for the sink: what the pipe protocol hands over."""

    def __init__(self) -> None:
        self.docs: list[object] = []
        self.lost: list[str] = []

    def _answer(self, doc: object) -> None:
        self.docs.append(doc)

    def _lost(self, why: str) -> None:
        self.lost.append(why)


async def test_answer_frames_are_cut_alike_however_the_pipe_splits_them() -> None:
    from gateway.audit.sqlite_process import _WriterPipes

    docs = [{"ready": True}, {"ok": [[1, [[1, "a" * 64]], []]]}, {"failed": [2, 3], "error": "x"},
            {"ok": [[4, [[2, "b" * 64], [3, "c" * 64]], ["receipt"]]]}]
    stream = b"".join(frame(d) for d in docs)
    for size in (1, 2, 3, 5, 7, 64, len(stream)):
        answers = _Answers()
        pipes = _WriterPipes(answers)  # type: ignore[arg-type]
        for i in range(0, len(stream), size):
            pipes.pipe_data_received(1, stream[i:i + size])
            pipes.pipe_data_received(2, b"stderr is not read")
        assert pipes.first.result() == docs[0]          # the set-up answer, then the rest in order
        assert answers.docs == docs[1:] and not answers.lost and not pipes.buf, size
    pipes.pipe_connection_lost(1, None)
    assert answers.lost == ["the audit writer process exited"]


class _ExitingWriterLoop:
    """The running loop, except that ``subprocess_exec`` starts a process that exits at once and
    returns only after it has exited and its pipes are closed -- the race a writer that dies during
    start-up wins when the loop notices its exit before the sink writes the set-up frame."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __getattr__(self, name: str):
        return getattr(self._loop, name)

    async def subprocess_exec(self, factory, *args, **kwargs):
        import sys

        transport, protocol = await self._loop.subprocess_exec(
            factory, sys.executable, "-c", "import sys; sys.exit(3)", **kwargs)
        await protocol.finished
        return transport, protocol


def _with_exiting_writer(monkeypatch) -> None:
    import types

    import gateway.audit.sqlite_process as sp

    patched = types.SimpleNamespace(**{k: getattr(asyncio, k) for k in dir(asyncio) if not k.startswith("__")})
    patched.get_running_loop = lambda: _ExitingWriterLoop(asyncio.get_running_loop())
    monkeypatch.setattr(sp, "asyncio", patched)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_writer_that_exits_before_its_set_up_is_sent_is_audit_unavailable_not_a_crash(tmp_path: Path, monkeypatch,
                                                                                      loop_kind: str):
    # uvloop closed the dead process's pipes before the set-up frame was written, and the write's
    # RuntimeError ("the handler is closed") escaped open(): the worker's start-up failed instead of
    # retrying the audit store as for any other unavailable store
    import uvloop

    _with_exiting_writer(monkeypatch)

    async def run() -> None:
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(InfrastructureError) as exc:
            await open_sink(tmp_path / "audit.db")
        assert exc.value.reason is AUDIT_UNAVAILABLE and "exited during start-up" in exc.value.detail
        assert "exit status 3" in exc.value.detail
        assert asyncio.get_running_loop().time() - t0 < 5   # at once, not after the start-up timeout

    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(run())
