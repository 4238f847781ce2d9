"""SQLite audit sink whose appends are committed by a writer process (:mod:`gateway.audit.writer_proc`).

Everything but appending is :class:`SqliteAuditSink`'s (reads, search, checkpoints, pruning,
the holder index): only the writer *thread* is replaced. ``append_group`` sends the group's
record bodies and receipt drafts to the process (frames of one event-loop iteration go out in
one write) and awaits the process's answer, which comes only after the batch holding the group
is committed. The writer's own interpreter does the chaining, the inserts, the fsync and the
receipt seal, so none of it holds this worker's interpreter lock.

Failure: when the process exits or its pipe breaks, every waiting append fails with
``AUDIT_UNAVAILABLE`` (503) and the sink stops accepting appends (:attr:`alive` false) until it is
reopened (the audit maintenance task does that). A worker killed outright closes the pipe: the
process commits what it has read and exits, so no answer was sent without its record.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gateway.audit.model import AppendReceipt
from gateway.audit.sink import Appended, _Item, unavailable
from gateway.audit.sqlite import SqliteAuditSink

#: how long the writer process may take to start and open the database
START_TIMEOUT_S = 20.0
_ROOT = Path(__file__).resolve().parents[2]


def _frame(doc: Any) -> bytes:
    payload = orjson.dumps(doc)
    return len(payload).to_bytes(4, "big") + payload


def _pem(key: Any) -> str | None:
    if key is None:
        return None
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode("ascii")


class WriterFailed(RuntimeError):
    """A batch the writer process could not commit, as it reported it (``"OperationalError: database or
    disk is full"``); ``kind`` is the type it names, which the 503 detail and the log give (they named
    this class's base, ``RuntimeError``, before session 21)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        name = text.split(":", 1)[0].strip()
        self.kind = name if name.isidentifier() else "WriterFailed"


class _WriterPipes(asyncio.SubprocessProtocol):
    """The writer process's pipes, without streams: answer frames are cut out of its stdout's bytes
    as they arrive and handed to the sink at once. With asyncio's streams every answer woke a reader
    task that awaited ``readexactly`` twice per frame: at 600 answers/s (one commit each) the pipe's
    plumbing was half of what the audit trail added to a worker's CPU (session 16, sampled). The sink
    alone at 800 appends/s, three alternations: 164-177 us of the event loop's CPU per append, against
    177-196 us with the streams."""

    def __init__(self, sink: SqliteProcessAuditSink) -> None:
        self.sink = sink
        self.buf = bytearray()
        loop = asyncio.get_running_loop()
        self.first: asyncio.Future[Any] = loop.create_future()      # the set-up answer: ready / error
        self.finished: asyncio.Future[None] = loop.create_future()  # exited, every pipe closed

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        buf = self.buf
        buf += data
        pos, n = 0, len(buf)
        try:
            while n - pos >= 4:
                size = int.from_bytes(buf[pos:pos + 4], "big")
                if n - pos - 4 < size:
                    break
                doc = orjson.loads(buf[pos + 4:pos + 4 + size])
                pos += 4 + size
                if not self.first.done():
                    self.first.set_result(doc)
                else:
                    self.sink._answer(doc)
        except Exception as exc:  # noqa: BLE001 - a garbled answer: the process is not trusted any more
            self.sink._lost(f"bad answer from the audit writer process: {type(exc).__name__}")
            return
        finally:
            del buf[:pos]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0 and exc is not None:   # stdin broke: the appends sent may never be read
            self.sink._lost(f"audit writer pipe: {type(exc).__name__}")
        elif fd == 1:   # end of its answers (each one read before this): the process has ended or is ending
            self.sink._lost("the audit writer process exited")

    def connection_lost(self, exc: Exception | None) -> None:
        """The process has exited and its pipes are closed (asyncio calls this last)."""
        self.sink._lost("the audit writer process exited")
        if not self.finished.done():
            self.finished.set_result(None)


class SqliteProcessAuditSink(SqliteAuditSink):
    """:class:`SqliteAuditSink` with its appends committed by a writer process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transport: asyncio.SubprocessTransport | None = None
        self._pipes: _WriterPipes | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._waiting: dict[int, _Item] = {}
        self._gids = itertools.count(1)
        self._out: list[bytes] = []
        self._dead: str | None = None

    @classmethod
    async def open(cls, path: str | Path, **kwargs: Any) -> SqliteProcessAuditSink:
        sink = await super().open(path, **kwargs)
        assert isinstance(sink, SqliteProcessAuditSink)
        try:
            await asyncio.wait_for(sink._spawn(), START_TIMEOUT_S)
        except BaseException as exc:
            await sink._kill()
            await sink._close_backend()
            if isinstance(exc, asyncio.TimeoutError):
                raise unavailable("the audit writer process did not start in time") from None
            raise
        return sink

    def _start(self) -> None:
        """No writer thread: :meth:`_spawn` starts the process (``open`` awaits it)."""
        self._loop = asyncio.get_running_loop()

    async def _spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH", ""))
                                                           if p)}
        self._transport, self._pipes = await asyncio.get_running_loop().subprocess_exec(
            lambda: _WriterPipes(self), sys.executable, "-m", "gateway.audit.writer_proc", stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=None, env=env, cwd=str(_ROOT))
        stdin = self._transport.get_pipe_transport(0)
        if self._dead is not None or self._transport.get_returncode() is not None or stdin is None \
                or stdin.is_closing():
            # it ended before its set-up could be sent: the loop may have closed its pipes already (uvloop
            # then raises RuntimeError on a write, which escaped and stopped the worker's start-up)
            status = self._transport.get_returncode()
            raise unavailable("audit writer process: exited during start-up"
                              + (f" (exit status {status})" if status is not None else ""))
        self._stdin = stdin  # type: ignore[assignment]
        sealer: Any = self.sealer
        setup = {
            "path": self.path, "busy_ms": self._busy_ms, "max_batch": self.config.max_batch,
            "window": self.config.window, "checkpoint_every": self.config.checkpoint_every,
            "checkpoint_key": _pem(self.signer._signer.key) if self.signer is not None else None,
            "checkpoint_kid": self.signer.kid if self.signer is not None else None,
            "receipt_key": _pem(sealer._jws.key) if sealer is not None else None,
            "receipt_kid": sealer.kid if sealer is not None else None,
            "gateway_id": sealer.gateway_id if sealer is not None else None,
        }
        try:
            stdin.write(_frame(setup))
        except (RuntimeError, OSError) as exc:   # the pipe closed between the check and the write
            raise unavailable(f"audit writer process: exited during start-up ({type(exc).__name__})") from None
        # the first frame, or None when the process ends without one (_lost answers ``first``)
        answer = await asyncio.shield(self._pipes.first)
        if answer is None or not answer.get("ready"):
            detail = (answer or {}).get("error", "exited during start-up")
            raise unavailable(f"audit writer process: {detail}")
        if self._dead is not None:
            raise unavailable(self._dead)

    def _lost(self, why: str) -> None:
        """The process ended, its pipe broke or it answered garbage: every waiting append fails
        (503) and the sink takes no more appends (the maintenance task opens a new one)."""
        if self._dead is None:
            self._dead = why
        waiting, self._waiting = self._waiting, {}
        for _, _, fut in waiting.values():
            if not fut.done():
                fut.set_exception(unavailable(self._dead))
        if self._pipes is not None and not self._pipes.first.done():
            self._pipes.first.set_result(None)
        if self._transport is not None and self._transport.get_returncode() is None and not self._closed:
            try:
                self._transport.kill()
            except ProcessLookupError:   # already gone
                pass

    def _answer(self, answer: dict[str, Any]) -> None:
        if "failed" in answer:
            items = [self._waiting.pop(gid) for gid in answer["failed"] if gid in self._waiting]
            self._resolve(items, WriterFailed(str(answer.get("error"))))
            return
        items, outcome = [], []
        for gid, recs, sealed in answer["ok"]:
            item = self._waiting.pop(gid, None)
            if item is None:
                continue
            items.append(item)
            outcome.append(Appended(tuple(AppendReceipt(seq, h) for seq, h in recs), tuple(sealed)))
        if items:
            self._resolve(items, outcome)

    def _running(self) -> bool:
        return (not self._closed and self._dead is None and self._transport is not None
                and self._transport.get_returncode() is None)

    async def append_verifications(self, group: Any) -> Appended:
        """One message for the whole answer: the writer process expands it into its records and
        drafts (:func:`gateway.audit.verifications.expand`, in its interpreter, not this one)."""
        if not self._running():
            raise unavailable(self._dead or "audit sink is closed")
        fut: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._send((group.entries, (), fut), [0, group.time_text, None, None, group.as_wire()])
        return await fut

    def _enqueue(self, item: _Item) -> None:
        events, drafts, _ = item
        bodies = [e.body() for e in events]
        # the time the seal and a checkpoint of this batch carry: the group's (all of one request)
        self._send(item, [0, bodies[-1]["time"], bodies, [[d.claims_b64, d.leaf.hex()] for d in drafts] if drafts
                          else [], None])

    def _send(self, item: _Item, doc: list[Any]) -> None:
        if len(self._waiting) >= self.config.queue_limit:
            raise unavailable("audit queue is full")
        gid = doc[0] = next(self._gids)
        self._waiting[gid] = item
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(_frame(doc))

    def _flush(self) -> None:
        """One write for every frame queued in this event-loop iteration."""
        out, self._out = self._out, []
        if not out or self._stdin is None:
            return
        if self._stdin.is_closing():   # the pipe broke: the appends just sent cannot be read
            self._lost(self._dead or "audit writer pipe closed")
            return
        self._stdin.write(b"".join(out))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._flush()
        if self._transport is not None and self._pipes is not None:
            if self._stdin is not None:
                self._stdin.close()     # end of input: the process commits what it read and exits
            try:
                await asyncio.wait_for(asyncio.shield(self._pipes.finished), START_TIMEOUT_S)
            except asyncio.TimeoutError:
                await self._kill()
            self._lost("audit sink is closed")   # anything still waiting (none, normally) fails
            self._transport.close()
        await self._close_backend()

    async def _kill(self) -> None:
        if self._transport is not None and self._transport.get_returncode() is None:
            self._transport.kill()
            if self._pipes is not None:
                await asyncio.shield(self._pipes.finished)

    @property
    def writer_pid(self) -> int | None:
        return self._transport.get_pid() if self._transport is not None else None
