"""Verification of a stored audit chain.

What is detected, and which record is named (``first_bad_seq``):

* edited record (hash not recomputed): its own hash does not match -> that record;
* edited record with its hash recomputed: the next record's ``prev_hash`` no longer
  matches -> the edited (earlier) record; if the whole rest of the chain was recomputed,
  the next signed checkpoint disagrees -> the first record after the last good checkpoint;
* deleted record(s): a gap in seq -> the first missing seq; deleted at the tail: the head
  row or a later checkpoint names records that are gone -> the first missing seq;
* inserted record: a seq number already in use cannot be inserted twice, so an insert
  means renumbering (every seq is hashed: the first renumbered record fails) or adding
  past the head (the head row disagrees -> the first record past the head);
* reordered records: seq is inside the hash -> the first record out of place;
* checkpoints: each signature must verify with the audit public key (by ``kid``) and its
  signed (seq, hash, time) must equal the stored columns and the record at that seq;
* after pruning, the verifiable start must be a signed checkpoint whose hash the first
  remaining record chains onto.

Limits (documented, inherent to an unkeyed hash chain): someone with write access to the
database can append forged records after the last checkpoint and update the head row;
and deleting every record up to a signed checkpoint looks like a legitimate prune.
Checkpoints are therefore signed often (``checkpoint_every``) and should be copied out of
the database (the head checkpoint is small enough to publish or log elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chain import check_checkpoint, record_hash
from gateway.audit.model import GENESIS_HASH
from gateway.audit.sink import AuditStore

Progress = Callable[[int, int], None]  # (records checked, head seq)


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    records_checked: int
    first_bad_seq: int | None
    problem: str | None
    head_seq: int = 0
    start_seq: int = 0
    checkpoints_checked: int = 0


async def verify_chain(store: AuditStore, keys: Mapping[str, Ed25519PublicKey] | Ed25519PublicKey, *,
                       batch: int = 5000, progress: Progress | None = None, progress_every: int = 100_000
                       ) -> ChainReport:
    """Walk the whole chain in seq order (``batch`` records per read) and report the first
    problem. ``keys``: the audit public key, or kid -> key when keys were rotated."""
    state = await store.state()
    cps = await store.read_checkpoints()
    # a single key is used whatever kid the checkpoints name
    keyset = {cp.kid: keys for cp in cps} if isinstance(keys, Ed25519PublicKey) else dict(keys)
    checked = 0

    def bad(seq: int | None, problem: str) -> ChainReport:
        return ChainReport(False, checked, seq, problem, state.head_seq, state.start_seq, len(cps))

    for cp in cps:
        problem = check_checkpoint(cp, keyset)
        if problem:
            return bad(cp.seq, problem)
    by_seq = {cp.seq: cp for cp in cps}

    expected, prev = state.start_seq + 1, state.start_hash
    if state.start_seq == 0:
        if state.start_hash != GENESIS_HASH:
            return bad(1, "the chain start was altered (no prune happened, yet the start hash is not genesis)")
    else:
        anchor = by_seq.get(state.start_seq)
        if anchor is None or anchor.hash != state.start_hash:
            return bad(state.start_seq + 1,
                       f"the pruned start at seq {state.start_seq} is not a signed checkpoint")
    good_cp = state.start_seq  # last seq vouched for by a checkpoint
    cursor = state.start_seq
    last_hash_ok_seq = None
    while True:
        rows = await store.read_records(cursor, batch)
        if not rows:
            break
        for r in rows:
            if r.seq < expected:
                return bad(r.seq, f"record {r.seq} lies before the chain start {state.start_seq + 1}")
            if r.seq > expected:
                missing = f"{expected}" if r.seq == expected + 1 else f"{expected}..{r.seq - 1}"
                return bad(expected, f"record(s) {missing} missing (deleted)")
            if record_hash(r.seq, r.prev_hash, r.body) != r.hash:
                return bad(r.seq, f"record {r.seq} does not match its hash (edited, or moved from another seq)")
            if r.prev_hash != prev:
                if last_hash_ok_seq == r.seq - 1:
                    return bad(r.seq - 1, f"record {r.seq - 1} does not match the prev_hash of record {r.seq} "
                                          f"(record {r.seq - 1} rewritten with a recomputed hash, or the link altered)")
                return bad(r.seq, f"record {r.seq} does not chain onto the verifiable start")
            cp = by_seq.get(r.seq)
            if cp is not None:
                if cp.hash != r.hash:
                    return bad(good_cp + 1, f"records {good_cp + 1}..{r.seq} were rewritten: the checkpoint "
                                            f"signed at seq {r.seq} names another hash")
                good_cp = r.seq
            prev, expected, cursor = r.hash, expected + 1, r.seq
            last_hash_ok_seq = r.seq
            checked += 1
            if progress is not None and checked % progress_every == 0:
                progress(checked, state.head_seq)
    last = expected - 1
    if state.head_seq > last:
        return bad(last + 1, f"record(s) {last + 1}..{state.head_seq} missing at the tail (the head is {state.head_seq})")
    if state.head_seq < last:
        return bad(state.head_seq + 1, f"record(s) {state.head_seq + 1}..{last} lie beyond the recorded head (inserted)")
    if state.head_hash != prev:
        return bad(last, f"the recorded head hash differs from record {last}")
    beyond = [s for s in by_seq if s > last]
    if beyond:
        return bad(last + 1, f"a signed checkpoint at seq {min(beyond)} names records that are gone (tail deleted)")
    if progress is not None:
        progress(checked, state.head_seq)
    return ChainReport(True, checked, None, None, state.head_seq, state.start_seq, len(cps))

