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
  remaining record chains onto, and no record may remain at or before it (a start moved
  forward without deleting what lies before it would hide those records from the check while
  searches still return them);
* a value no record can hold (bytes, unreadable JSON, TEXT that is not UTF-8, a JSON column in any
  text but the one the gateway writes -- a member named twice reads differently in SQLite's
  ``json_extract``) or a state row of the wrong types is reported as tampering (the record is named),
  never an exception;
* the store is read in one snapshot where it offers one (``read_snapshot``: SQLite, PostgreSQL), so a
  chain the gateway appends to or prunes meanwhile is not reported broken;
* SQLite: the holder search index (a file of its own) must name every record up to its watermark,
  or a search by holder would miss that record (``check_holder_index``);
* ``anchors``: checkpoints kept outside the database (logged by the gateway, saved from an
  earlier check): each must verify and name a record still present with that hash -- the one
  way to notice that the newest checkpoints and every record after them were deleted.

Limits (documented, inherent to an unkeyed hash chain): someone with write access to the
database can append forged records after the last checkpoint and update the head row; can
delete the newest checkpoints and truncate or rewrite every record after the last one kept
(the report's ``signed_seq`` says how far signatures vouch for the chain); and deleting every
record up to a signed checkpoint looks like a legitimate prune (``start_time`` says when that
checkpoint was signed). Checkpoints are therefore signed often (``checkpoint_every``) and
copied out of the database: the gateway logs each one it signs, and ``anchors`` checks the
chain against such copies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chain import CHECKPOINT_TYP, audit_key_id, check_checkpoint, record_hash
from gateway.audit.jws import JwsError, peek_header, verify_compact
from gateway.audit.model import GENESIS_HASH, Checkpoint
from gateway.audit.sink import AuditStore

Progress = Callable[[int, int], None]  # (records checked, head seq)
#: below every seq a store can hold (a row at seq 0 or below was written by hand: it is read too)
_BEFORE_ANY_SEQ = -(2 ** 63)


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    records_checked: int
    first_bad_seq: int | None
    problem: str | None
    head_seq: int = 0
    start_seq: int = 0
    checkpoints_checked: int = 0
    #: the last record a verified signature vouches for (the newest checkpoint or anchor within the
    #: chain, else the pruned start): records past it are chained but signed by nobody yet
    signed_seq: int = 0
    signed_time: str | None = None   # when that checkpoint was signed
    start_time: str | None = None    # when the checkpoint the chain starts after (pruned) was signed
    anchors_checked: int = 0         # anchors found in the chain (their record there, with their hash)
    #: anchors naming records before the pruned start: nothing is left to compare them with
    anchors_pruned: int = 0


def _is_int(v: object) -> bool:
    return type(v) is int


def _is_hash(v: object) -> bool:
    return type(v) is str and len(v) == 64


def _kid_text(kid: str) -> str:
    return kid if kid.isascii() and kid.isprintable() and len(kid) <= 80 else repr(kid[:80])


def _signed_by_another_key(what: str, what_zh: str, token: str, problem: str,
                           keys: Mapping[str, Ed25519PublicKey] | Ed25519PublicKey,
                           keyset: Mapping[str, Ed25519PublicKey], cps: Sequence[Checkpoint]) -> str:
    """``problem`` (a checkpoint's or an anchor's), or -- when its signature did not verify with the key(s)
    given and it names a key id none of them has -- which key it names and which were given, in English
    and Chinese: the usual cause is another key given than the one that signed (a rotation's old key left
    out, another deployment's key), not an altered chain. A single PEM key is still tried whatever kid a
    checkpoint names: its kid is the one the gateway derives from it (``audit-<SPKI digest>``), or any kid
    under which another stored checkpoint verifies with it (then this one is forged, not signed by another
    key, and the problem stays "signature does not verify")."""
    if not (problem.endswith(": signature does not verify") or ": unknown kid " in problem):
        return problem
    try:
        kid = peek_header(token).get("kid")
    except JwsError:
        return problem
    given = [audit_key_id(keys)] if isinstance(keys, Ed25519PublicKey) else sorted(keys)
    if not isinstance(kid, str) or kid in given:
        return problem   # a key of that id was given and does not verify it: altered or forged
    for other in cps:
        if other.jws != token and other.kid == kid and kid in keyset:
            try:
                verify_compact(other.jws, keyset, typ=CHECKPOINT_TYP)
            except JwsError:
                continue
            if peek_header(other.jws).get("kid") == kid:
                return problem   # the key given does sign as that kid: this one is forged
    named, gave = _kid_text(kid), ", ".join(_kid_text(g) for g in given[:8]) + (", ..." if len(given) > 8 else "")
    return (f"{what} signed by key {named}, you gave {gave}: give that key with --key (repeat --key for the "
            f"keys of a rotation); if {named} never was this gateway's audit key, the checkpoint is forged / "
            f"{what_zh}由密钥 {named} 签名，而给出的密钥是 {gave}：请用 --key 给出该密钥的公钥（密钥轮换后可重复 "
            f"--key）；若 {named} 从来不是本网关的审计密钥，则该检查点系伪造")


async def verify_chain(store: AuditStore, keys: Mapping[str, Ed25519PublicKey] | Ed25519PublicKey, *,
                       batch: int = 5000, progress: Progress | None = None, progress_every: int = 100_000,
                       anchors: Sequence[str] = ()) -> ChainReport:
    """Walk the whole chain in seq order (``batch`` records per read) and report the first
    problem. ``keys``: the audit public key, or kid -> key when keys were rotated. ``anchors``:
    checkpoint JWS kept outside the store; the chain must still hold each one's record.

    A store that offers ``read_snapshot`` is read in one snapshot (the gateway may be appending and
    pruning meanwhile); one that offers ``check_holder_index`` (SQLite) also has its holder search
    index checked against the records once the chain is whole."""
    snapshot = getattr(store, "read_snapshot", None)
    if snapshot is None:
        report = await _verify(store, keys, batch, progress, progress_every, anchors)
    else:
        async with snapshot():
            report = await _verify(store, keys, batch, progress, progress_every, anchors)
    check_index = getattr(store, "check_holder_index", None)
    if report.ok and check_index is not None:
        missing = await check_index()
        if missing is not None:
            return replace(report, ok=False, first_bad_seq=missing,
                           problem=f"the holder search index does not name record {missing}: a search by its holder "
                                   "would not find it (the index was edited, or is stale after a restore; delete the "
                                   "<database>-holders file and the gateway rebuilds it)")
    return report


async def _verify(store: AuditStore, keys: Mapping[str, Ed25519PublicKey] | Ed25519PublicKey, batch: int,
                  progress: Progress | None, progress_every: int, anchors: Sequence[str]) -> ChainReport:
    state = await store.state()
    cps = await store.read_checkpoints()
    # a single key is used whatever kid the checkpoints name
    keyset = {cp.kid: keys for cp in cps} if isinstance(keys, Ed25519PublicKey) else dict(keys)
    checked = 0

    def bad(seq: int | None, problem: str) -> ChainReport:
        return ChainReport(False, checked, seq, problem, state.head_seq if _is_int(state.head_seq) else 0,
                           state.start_seq if _is_int(state.start_seq) else 0, len(cps))

    if not (_is_int(state.head_seq) and _is_int(state.start_seq) and _is_hash(state.head_hash)
            and _is_hash(state.start_hash) and 0 <= state.start_seq <= state.head_seq):
        return bad(None, "the chain state row was altered (head / start of the wrong type or out of range)")
    for cp in cps:
        problem = check_checkpoint(cp, keyset)
        if problem:
            return bad(cp.seq, _signed_by_another_key(f"checkpoint at seq {cp.seq}", f"seq {cp.seq} 处的检查点",
                                                      cp.jws, problem, keys, keyset, cps))
    by_seq = {cp.seq: cp for cp in cps}
    # anchors: checkpoints kept elsewhere; checked like stored ones, then against the records
    anchor_at: dict[int, str] = {}
    anchor_time: dict[int, str] = {}
    for k, token in enumerate(anchors):
        if isinstance(keys, Ed25519PublicKey):
            try:
                kid = peek_header(token).get("kid")
            except JwsError as exc:
                return bad(None, f"anchor {k + 1}: {exc}")
            akeys: Mapping[str, Ed25519PublicKey] = {kid: keys} if isinstance(kid, str) else {}
        else:
            akeys = keyset
        try:
            doc = verify_compact(token, akeys, typ=CHECKPOINT_TYP)
        except JwsError as exc:
            return bad(None, _signed_by_another_key(f"anchor {k + 1}", f"第 {k + 1} 个锚定检查点", token,
                                                    f"anchor {k + 1}: {exc}", keys, keyset, cps))
        seq, h = doc.get("seq"), doc.get("hash")
        if not _is_int(seq) or not _is_hash(h) or not isinstance(doc.get("time"), str):
            return bad(None, f"anchor {k + 1}: not a checkpoint statement")
        if anchor_at.get(seq, h) != h:
            return bad(seq, f"two anchors signed at seq {seq} name different hashes")
        anchor_at[seq], anchor_time[seq] = h, doc["time"]
        if seq > state.head_seq:
            return bad(state.head_seq + 1, f"the anchor checkpoint signed at seq {seq} names records that are gone "
                                           f"(records {state.head_seq + 1}..{seq} deleted, the head row moved back)")
    signed_seq, signed_time = state.start_seq, None

    expected, prev = state.start_seq + 1, state.start_hash
    start_time = None
    if state.start_seq == 0:
        if state.start_hash != GENESIS_HASH:
            return bad(1, "the chain start was altered (no prune happened, yet the start hash is not genesis)")
    else:
        anchor = by_seq.get(state.start_seq)
        if anchor is None or anchor.hash != state.start_hash:
            return bad(state.start_seq + 1,
                       f"the pruned start at seq {state.start_seq} is not a signed checkpoint")
        start_time = signed_time = anchor.time
        pruned_anchor = anchor_at.get(state.start_seq)
        if pruned_anchor is not None and pruned_anchor != state.start_hash:
            return bad(state.start_seq, f"the anchor checkpoint signed at seq {state.start_seq} names another hash")
    # a prune deletes every record up to the start in the same transaction: one still there means the
    # start was moved forward by hand, hiding those records from this check (searches still find them)
    first = await store.read_records(_BEFORE_ANY_SEQ, 1)
    if first and first[0].seq <= state.start_seq:
        return bad(first[0].seq, f"record {first[0].seq} lies at or before the chain start {state.start_seq} "
                                 "(the start was moved without pruning: records before it are not verifiable)")
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
            try:
                intact = record_hash(r.seq, r.prev_hash, r.body) == r.hash
            except (TypeError, ValueError):   # a value no record holds (bytes...): written by hand
                return bad(r.seq, f"record {r.seq} holds a value of a type no record has (edited in the database)")
            if not intact:
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
                signed_seq, signed_time = r.seq, cp.time
            ah = anchor_at.get(r.seq)
            if ah is not None:
                if ah != r.hash:
                    return bad(good_cp + 1, f"records {good_cp + 1}..{r.seq} were rewritten: the anchor checkpoint "
                                            f"signed at seq {r.seq} names another hash")
                good_cp = max(good_cp, r.seq)
                if r.seq > signed_seq:
                    signed_seq, signed_time = r.seq, anchor_time[r.seq]
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
    return ChainReport(True, checked, None, None, state.head_seq, state.start_seq, len(cps), signed_seq, signed_time,
                       start_time, sum(1 for seq in anchor_at if seq >= state.start_seq),
                       sum(1 for seq in anchor_at if seq < state.start_seq))

