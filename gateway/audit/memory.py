"""In-memory audit sink: the fake for tests, with the same chain, checkpoint, group-commit,
prune and search logic as the database sinks.

``table`` (seq -> StoredRecord), ``checkpoint_table`` and ``state_row`` are the fake's
"database": tamper tests edit them directly. ``fail_with`` makes the next commits raise
(a store outage) until it is cleared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.audit.chain import CheckpointSigner, extend_chain, receipts_of
from gateway.audit.model import (GENESIS_HASH, AppendReceipt, AuditQuery, ChainState, Checkpoint,
                                 PruneResult, StoredRecord, format_time)
from gateway.audit.sink import Clock, GroupCommitConfig, GroupCommitSink, Sealer, system_clock, unavailable


class MemoryAuditSink(GroupCommitSink):
    def __init__(self, *, signer: CheckpointSigner | None = None, clock: Clock = system_clock,
                 config: GroupCommitConfig | None = None, sealer: Sealer | None = None) -> None:
        super().__init__(signer=signer, clock=clock, config=config or GroupCommitConfig(), sealer=sealer)
        self.table: dict[int, StoredRecord] = {}
        self.checkpoint_table: dict[int, Checkpoint] = {}
        self.state_row: dict[str, Any] = {"head_seq": 0, "head_hash": GENESIS_HASH, "start_seq": 0,
                                          "start_hash": GENESIS_HASH, "commits": 0, "last_cp": 0}
        self.fail_with: Exception | None = None
        #: while set and not yet open, commits wait for it (a store that stalls without failing)
        self.gate: asyncio.Event | None = None

    @classmethod
    async def open(cls, **kwargs: Any) -> MemoryAuditSink:
        sink = cls(**kwargs)
        sink._start()
        return sink

    async def _commit_batch(self, bodies: Sequence[dict[str, Any]]) -> list[AppendReceipt]:
        await asyncio.sleep(0)  # a real store yields while it commits
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        st = self.state_row
        recs = extend_chain(st["head_seq"], st["head_hash"], bodies)
        cp = self._due_checkpoint(recs[-1].seq, recs[-1].hash, st["last_cp"])
        # "commit": nothing above mutated the store, so a failure leaves it untouched
        for r in recs:
            self.table[r.seq] = StoredRecord(r.seq, r.prev_hash, r.hash, r.body)
        if cp is not None:
            self.checkpoint_table[cp.seq] = cp
            st["last_cp"] = cp.seq
        st.update(head_seq=recs[-1].seq, head_hash=recs[-1].hash, commits=st["commits"] + 1)
        return receipts_of(recs)

    async def _close_backend(self) -> None:
        return None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise unavailable(f"audit store failed: {type(self.fail_with).__name__}")

    async def state(self) -> ChainState:
        self._check()
        st = self.state_row
        return ChainState(st["head_seq"], st["head_hash"], st["start_seq"], st["start_hash"], st["commits"])

    async def read_records(self, after_seq: int, limit: int) -> list[StoredRecord]:
        self._check()
        return [self.table[s] for s in sorted(self.table) if s > after_seq][:limit]

    async def read_checkpoints(self) -> list[Checkpoint]:
        self._check()
        return [self.checkpoint_table[s] for s in sorted(self.checkpoint_table)]

    async def search(self, query: AuditQuery) -> list[StoredRecord]:
        self._check()
        since = format_time(query.since) if query.since else None
        until = format_time(query.until) if query.until else None
        out = []
        for seq in sorted(self.table, reverse=True):
            b = self.table[seq].body
            # the record's holder, or its applicant (an item check's records name the licence's holder)
            if ((query.holder_hmac is None or query.holder_hmac in (b["holder_hmac"], _applicant(b["extra"])))
                    and (query.partner is None or b["partner"] == query.partner)
                    and (query.item_code is None or b["item_code"] == query.item_code)
                    and (since is None or b["time"] >= since)
                    and (until is None or b["time"] < until)):
                out.append(self.table[seq])
                if len(out) >= query.limit:
                    break
        return out

    async def prune(self, before: datetime) -> PruneResult:
        self._check()
        st = self.state_row
        limit = format_time(before)
        # as the SQLite sink: no checkpoint past a record younger than ``before`` (a checkpoint signed
        # while the clock was set back must not take younger records with it)
        young = min((s for s, r in self.table.items() if s > st["start_seq"] and r.body["time"] >= limit),
                    default=st["head_seq"] + 1)
        due = [cp for cp in self.checkpoint_table.values()
               if cp.time < limit and st["start_seq"] < cp.seq <= st["head_seq"] and cp.seq < young]
        if not due:
            return PruneResult(0, st["start_seq"])
        cp = max(due, key=lambda c: c.seq)
        gone = [s for s in self.table if s <= cp.seq]
        for s in gone:
            del self.table[s]
        for s in [s for s in self.checkpoint_table if s < cp.seq]:
            del self.checkpoint_table[s]
        st.update(start_seq=cp.seq, start_hash=cp.hash)
        return PruneResult(len(gone), cp.seq)

    async def checkpoint(self) -> Checkpoint | None:
        self._check()
        st = self.state_row
        signed = self.checkpoint_table.get(st["head_seq"])
        if self.signer is None or st["head_seq"] == 0 or (signed is not None and signed.hash == st["head_hash"]):
            return None
        cp = self.signer.sign(st["head_seq"], st["head_hash"], self.clock())
        self.checkpoint_table[cp.seq] = cp
        st["last_cp"] = cp.seq
        return cp


def _applicant(extra: object) -> object:
    return extra.get("applicant") if isinstance(extra, dict) else None
