"""The SQLite audit writer as a process of its own (``audit_writer = "process"``; what ``"auto"``, the
default, takes while fewer workers than CPUs serve).

Why a process: in the gateway worker a writer *thread* shares the interpreter lock with the
event loop. Chaining, row building and receipt sealing hold that lock, and every return from a
sqlite call (BEGIN, INSERT, COMMIT's fsync...) waits for it again, so under load the thread both
slowed the loop and was slowed by it. This process does the same work with its own interpreter;
the worker only builds each record body and a receipt draft and waits for the answer.

Protocol on stdin / stdout, frames of ``4-byte big-endian length + orjson``:

* parent -> writer, first frame: the set-up ``{"path", "busy_ms", "max_batch", "window",
  "checkpoint_every", "checkpoint_key", "checkpoint_kid", "receipt_key", "receipt_kid",
  "gateway_id"}`` (keys as PKCS#8 PEM text or null: a pipe, never argv or the environment);
  answered by ``{"ready": true}`` or ``{"error": text}``;
* parent -> writer, then: one frame per appended group ``[gid, now, bodies, drafts, null]`` (``now``:
  the group's canonical time text, used for the batch seal and checkpoints; ``drafts``:
  ``[[claims_b64, leaf_hex], ...]``), or ``[gid, now, null, null, group]`` for the records of one
  verify answer in compact form (:class:`gateway.audit.verifications.VerificationGroup`), expanded
  here into its record bodies and receipt drafts;
* writer -> parent: one frame per committed batch ``{"ok": [[gid, [[seq, hash], ...], [sealed,
  ...]], ...]}`` or, when its transaction failed (nothing of it stored), ``{"failed": [gid, ...],
  "error": text}``.

The writer gathers what is queued -- until ``window`` seconds after the previous commit started, or
``max_batch`` records; at once after a quiet spell -- and commits it with
:func:`gateway.audit.sqlite.append_txn` -- the very transaction of the writer thread -- so a response
is sent only after its record is committed.
At end of input (the worker closed the pipe, or died) it commits what it has read and exits.
"""

from __future__ import annotations

import gc
import os
import select
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.audit.chain import CheckpointSigner
from gateway.audit.model import Checkpoint, parse_time
from gateway.audit.sqlite import WRITER_AUTOCHECKPOINT_PAGES, _connect, _in_transaction, append_txn

_HEADER = 4
_READ = 1 << 20


def frame(doc: Any) -> bytes:
    payload = orjson.dumps(doc)
    return len(payload).to_bytes(_HEADER, "big") + payload


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FrameReader:
    """Frames from a file descriptor (blocking reads; ``poll`` waits at most ``timeout``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.eof = False

    def _frames(self) -> list[Any]:
        out, buf, pos = [], self.buf, 0
        while len(buf) - pos >= _HEADER:
            n = int.from_bytes(buf[pos:pos + _HEADER], "big")
            if len(buf) - pos - _HEADER < n:
                break
            out.append(orjson.loads(bytes(buf[pos + _HEADER:pos + _HEADER + n])))
            pos += _HEADER + n
        del buf[:pos]
        return out

    def read(self) -> list[Any]:
        """Block until at least one whole frame or end of input; return every whole frame read."""
        while True:
            frames = self._frames()
            if frames or self.eof:
                return frames
            chunk = os.read(self.fd, _READ)
            if not chunk:
                self.eof = True
            self.buf += chunk

    def poll(self, timeout: float) -> list[Any]:
        """The whole frames that arrive within ``timeout`` seconds (maybe none)."""
        if self.eof:
            return self._frames()
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return []
        chunk = os.read(self.fd, _READ)
        if not chunk:
            self.eof = True
        self.buf += chunk
        return self._frames()


def _load_key(pem: str | None) -> Any:
    if not pem:
        return None
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem.encode("ascii"), password=None)


class Writer:
    def __init__(self, setup: dict[str, Any]) -> None:
        from gateway.receipts import ReceiptSigner

        self.max_batch = int(setup["max_batch"])
        self.window = float(setup["window"])
        self.checkpoint_every = int(setup["checkpoint_every"])
        cp_key = _load_key(setup.get("checkpoint_key"))
        self.signer = CheckpointSigner(cp_key, setup["checkpoint_kid"]) if cp_key is not None else None
        rc_key = _load_key(setup.get("receipt_key"))
        self.sealer = (ReceiptSigner(rc_key, setup["receipt_kid"], setup["gateway_id"])
                       if rc_key is not None else None)
        self.conn = _connect(setup["path"], int(setup["busy_ms"]), autocheckpoint=WRITER_AUTOCHECKPOINT_PAGES)
        self.now_text = ""

    def _due(self, head_seq: int, head_hash: str, last_cp: int) -> Checkpoint | None:
        if self.signer is None or head_seq == 0 or head_seq - last_cp < self.checkpoint_every:
            return None
        return self.signer.sign(head_seq, head_hash, parse_time(self.now_text))

    def prepare(self, doc: list[Any]) -> list[Any]:
        """A frame as ``[gid, now, bodies, drafts]`` (drafts as ReceiptDraft objects)."""
        from gateway.audit.verifications import VerificationGroup, expand
        from gateway.receipts import ReceiptDraft

        gid, now, bodies, drafts, group = doc
        if group is not None:
            bodies, drafts = expand(VerificationGroup.from_wire(group), self.sealer)
            return [gid, now, bodies, drafts]
        return [gid, now, bodies, [ReceiptDraft(c, bytes.fromhex(leaf)) for c, leaf in drafts]]

    def commit(self, groups: Sequence[list[Any]]) -> dict[str, Any]:
        """One transaction for ``groups`` (prepared: ``[gid, now, bodies, drafts]`` each), then one seal."""
        self.now_text = max(g[1] for g in groups)
        bodies = [b for g in groups for b in g[2]]
        try:
            receipts = _in_transaction(self.conn, append_txn(bodies, self._due))
            drafts = [d for g in groups for d in g[3]]
            sealed = (self.sealer.seal(drafts, receipts[0].seq, receipts[-1].seq, parse_time(self.now_text))
                      if drafts and self.sealer is not None else [])
        except Exception as exc:  # noqa: BLE001 - any failure: nothing of the batch is stored
            return {"failed": [g[0] for g in groups], "error": f"{type(exc).__name__}: {exc}"[:500]}
        out, r, s = [], 0, 0
        for gid, _, bs, ds in groups:
            out.append([gid, [[x.seq, x.hash] for x in receipts[r:r + len(bs)]], sealed[s:s + len(ds)]])
            r += len(bs)
            s += len(ds)
        return {"ok": out}


def serve(inp: int, out: int) -> int:
    reader = FrameReader(inp)
    first = reader.read()
    if not first:
        return 0
    setup = first[0]
    try:
        writer = Writer(setup)
    except (sqlite3.Error, OSError, ValueError, TypeError, KeyError) as exc:
        write_all(out, frame({"error": f"{type(exc).__name__}: {exc}"[:500]}))
        return 1
    write_all(out, frame({"ready": True}))
    gc.collect()
    gc.freeze()   # the imports' objects: never walked by a full collection in the middle of a commit
    queued = deque(writer.prepare(doc) for doc in first[1:])
    last_start = -1e9   # time.monotonic() of the last commit's start
    while True:
        if not queued:
            if reader.eof:
                return 0
            queued.extend(writer.prepare(doc) for doc in reader.read())
            continue
        n = sum(len(g[2]) for g in queued)
        # commits start at least ``window`` apart: under load the next batch gathers while this one
        # commits; after a quiet spell a lone group commits at once (it used to wait the whole window)
        deadline = last_start + writer.window
        while n < writer.max_batch and not reader.eof:
            more = [writer.prepare(doc) for doc in reader.poll(deadline - time.monotonic())]
            if not more:
                break
            queued.extend(more)
            n += sum(len(g[2]) for g in more)
        last_start = time.monotonic()
        batch = [queued.popleft()]
        n = len(batch[0][2])
        while queued and n + len(queued[0][2]) <= writer.max_batch:
            g = queued.popleft()
            batch.append(g)
            n += len(g[2])
        try:
            write_all(out, frame(writer.commit(batch)))
        except BrokenPipeError:   # the worker is gone: what was read is committed; stop
            return 0


def main() -> int:
    inp, out = sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno()
    sys.stdout = sys.stderr   # nothing but frames may ever reach the parent's pipe
    try:
        return serve(inp, out)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
