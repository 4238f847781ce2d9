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


class SqliteProcessAuditSink(SqliteAuditSink):
    """:class:`SqliteAuditSink` with its appends committed by a writer process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
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
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.audit.writer_proc", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, cwd=str(_ROOT))
        assert self._proc.stdin is not None and self._proc.stdout is not None
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
        self._proc.stdin.write(_frame(setup))
        answer = await self._read_frame()
        if answer is None or not answer.get("ready"):
            detail = (answer or {}).get("error", "exited during start-up")
            raise unavailable(f"audit writer process: {detail}")
        self._reader = asyncio.get_running_loop().create_task(self._read_answers(), name="sqlite-audit-writer-reader")

    async def _read_frame(self) -> Any:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            n = int.from_bytes(await self._proc.stdout.readexactly(4), "big")
            return orjson.loads(await self._proc.stdout.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _read_answers(self) -> None:
        try:
            while True:
                answer = await self._read_frame()
                if answer is None:
                    break
                self._answer(answer)
        except Exception as exc:  # noqa: BLE001 - a garbled answer: the process is not trusted any more
            self._dead = f"bad answer from the audit writer process: {type(exc).__name__}"
        finally:
            self._dead = self._dead or "the audit writer process exited"
            waiting, self._waiting = self._waiting, {}
            for _, _, fut in waiting.values():
                if not fut.done():
                    fut.set_exception(unavailable(self._dead))
            if self._proc is not None and self._proc.returncode is None and not self._closed:
                self._proc.kill()

    def _answer(self, answer: dict[str, Any]) -> None:
        if "failed" in answer:
            items = [self._waiting.pop(gid) for gid in answer["failed"] if gid in self._waiting]
            self._resolve(items, RuntimeError(str(answer.get("error"))))
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
        return (not self._closed and self._dead is None and self._proc is not None and self._proc.returncode is None
                and self._reader is not None and not self._reader.done())

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
        if not out or self._proc is None or self._proc.stdin is None:
            return
        try:
            self._proc.stdin.write(b"".join(out))
        except (ConnectionError, RuntimeError) as exc:   # the pipe broke: the reader fails the waiters
            self._dead = f"audit writer pipe: {type(exc).__name__}"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._flush()
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()     # end of input: the process commits what it read and exits
            try:
                await asyncio.wait_for(self._proc.wait(), START_TIMEOUT_S)
            except asyncio.TimeoutError:
                await self._kill()
        if self._reader is not None:
            await self._reader
        await self._close_backend()

    async def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()

    @property
    def writer_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None
