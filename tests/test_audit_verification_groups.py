"""A verify answer's records in compact form: expanded anywhere, they are the same records.

The SQLite writer process expands :class:`VerificationGroup` in its own interpreter; the other
sinks expand it in the worker. Either way the record bodies must be exactly those the checked
``AuditEvent`` constructor makes, the drafts exactly ``ReceiptSigner.draft``'s, and the chain the
same -- or a receipt would not find its record, and `audit verify` would disagree between stores."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AuditEvent, CheckpointSigner, GroupCommitConfig, MemoryAuditSink, holder_hmac, verify_chain
from gateway.audit.model import format_time
from gateway.audit.sqlite_inline import SqliteInlineAuditSink
from gateway.audit.sqlite_process import SqliteProcessAuditSink
from gateway.audit.verifications import VerificationGroup, expand
from gateway.receipts import ReceiptSigner, receipt_ref, verify_receipt

T = datetime(2026, 11, 27, 4, 0, 0, 123456, tzinfo=timezone.utc)
RECEIPT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))      # TEST key
AUDIT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))        # TEST key
SIGNER = ReceiptSigner(RECEIPT_KEY, "test-receipt-1", "gw-test")
HMAC_KEY = b"test-holder-hmac-key-0123456789"                                # TEST key
HOLDER = holder_hmac(HMAC_KEY, "111", "330502199001010014")                 # synthetic citizen ID
LIC = "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0"


def group(batch: bool) -> VerificationGroup:
    entries = [("330500", LIC, "valid", (), HOLDER, (LIC,))]
    if batch:
        entries += [("320500", LIC.replace("0287C", "0295X"), "invalid", ("LICENCE_EXPIRED", "LICENCE_REVOKED"),
                     None, (LIC.replace("0287C", "0295X"),)),
                    (None, None, "invalid", ("MALFORMED",), None, ())]
    return VerificationGroup(format_time(T), int(T.timestamp()), "req-42", "demo-partner", "ZGlnZXN0", batch,
                             tuple(entries))


@pytest.mark.parametrize("batch", [False, True])
def test_expanded_records_equal_the_checked_events_and_the_one_draft_equals_the_signers(batch: bool) -> None:
    g = group(batch)
    bodies, drafts = expand(g, SIGNER)
    assert len(bodies) == len(g.entries) and len(drafts) == 1     # one receipt per answer
    if batch:   # the answer-level claims summarise the entries; each entry is listed
        expected_draft = SIGNER.draft(
            request_digest="ZGlnZXN0", request_id="req-42", verdict="mixed",
            reasons=["LICENCE_EXPIRED", "LICENCE_REVOKED", "MALFORMED"], item=None, time_text=format_time(T),
            iat=int(T.timestamp()), licence_ids=[LIC, LIC.replace("0287C", "0295X")],
            entries=[{"verdict": "valid", "reasons": [], "licence_id": LIC},
                     {"verdict": "invalid", "reasons": ["LICENCE_EXPIRED", "LICENCE_REVOKED"],
                      "licence_id": LIC.replace("0287C", "0295X")},
                     {"verdict": "invalid", "reasons": ["MALFORMED"], "licence_id": None}])
    else:
        expected_draft = SIGNER.draft(request_digest="ZGlnZXN0", request_id="req-42", verdict="valid", reasons=(),
                                      item=None, time_text=format_time(T), iat=int(T.timestamp()), licence_ids=(LIC,))
    assert drafts[0] == expected_draft
    for i, ((region, lid, verdict, reasons, holder, ids), body) in enumerate(zip(g.entries, bodies)):
        extra = {"receipt": expected_draft.ref, **({"entry": i, "entries": len(g.entries)} if batch else {})}
        event = AuditEvent(kind="verify", time=T, request_id="req-42", partner="demo-partner", region=region,
                           licence_id=lid, verdict=verdict, reasons=reasons, holder_hmac=holder, extra=extra)
        assert body == event.body()


def test_batch_of_entries_sharing_one_verdict_claims_that_verdict() -> None:
    g = VerificationGroup(format_time(T), int(T.timestamp()), "req-43", None, "ZGlnZXN0", True,
                          ((None, None, "invalid", ("MALFORMED",), None, ()),
                           ("330500", LIC, "invalid", ("LICENCE_REVOKED", "MALFORMED"), HOLDER, (LIC,))))
    _, [draft] = expand(g, SIGNER)
    claims = orjson.loads(base64.urlsafe_b64decode(draft.claims_b64 + "=" * (-len(draft.claims_b64) % 4)))
    assert claims["verdict"] == "invalid" and claims["reasons"] == ["MALFORMED", "LICENCE_REVOKED"]
    assert claims["licence_ids"] == [LIC] and [e["licence_id"] for e in claims["entries"]] == [None, LIC]


def test_without_a_receipt_signer_records_name_no_receipt() -> None:
    bodies, drafts = expand(group(True), None)
    assert drafts == [] and [b["extra"]["receipt"] for b in bodies] == [None, None, None]


def test_wire_form_round_trips() -> None:
    g = group(True)
    import orjson

    assert VerificationGroup.from_wire(orjson.loads(orjson.dumps(g.as_wire()))) == g


@pytest.mark.parametrize("writer", ["process", "inline"])
async def test_worker_side_and_writer_side_expansion_store_the_same_chain(tmp_path: Path, writer: str) -> None:
    """The memory sink expands a group when it is appended; the writer process expands it in its own
    interpreter, the inline writer in its drain with the rest of the batch: the same records."""
    cfg = GroupCommitConfig(checkpoint_every=1000)
    here = await MemoryAuditSink.open(signer=CheckpointSigner(AUDIT_KEY, "a"), clock=lambda: T, config=cfg,
                                      sealer=SIGNER)
    kind = SqliteProcessAuditSink if writer == "process" else SqliteInlineAuditSink
    there = await kind.open(tmp_path / "audit.db", signer=CheckpointSigner(AUDIT_KEY, "a"),
                            clock=lambda: T, config=cfg, sealer=SIGNER)
    try:
        got = {}
        for name, sink in (("memory", here), (writer, there)):
            a = await sink.append_verifications(group(False))
            b = await sink.append_verifications(group(True))
            got[name] = (await sink.read_records(0, 10), a, b)
            assert (await verify_chain(sink, AUDIT_KEY.public_key())).ok
        (recs_m, a_m, b_m), (recs_p, a_p, b_p) = got["memory"], got[writer]
        assert [(r.seq, r.hash, r.body) for r in recs_m] == [(r.seq, r.hash, r.body) for r in recs_p]
        assert len(recs_p) == 4 and a_p.records == a_m.records and b_p.records == b_m.records
        jwks = SIGNER.jwks()
        [receipt] = b_p.sealed          # the batch answer's one receipt lists each record's entry
        claims = verify_receipt(receipt, jwks)
        assert claims["request_id"] == "req-42"
        assert [e["verdict"] for e in claims["entries"]] == [rec.body["verdict"] for rec in recs_p[1:]]
        for rec in recs_p[1:]:
            assert claims["batch"]["seq"][0] <= rec.seq <= claims["batch"]["seq"][1]
            assert rec.body["extra"]["receipt"] == receipt_ref(receipt)
    finally:
        await here.close()
        await there.close()


async def test_inline_writer_keeps_the_order_of_groups_and_plain_events_sharing_a_batch(tmp_path: Path) -> None:
    sink = await SqliteInlineAuditSink.open(tmp_path / "audit.db", signer=CheckpointSigner(AUDIT_KEY, "a"),
                                            clock=lambda: T, config=GroupCommitConfig(commit_interval=0.0),
                                            sealer=SIGNER)
    plain = AuditEvent(kind="token", time=T, request_id="req-7", partner="demo-partner")
    try:
        a, p, b = await asyncio.gather(sink.append_verifications(group(False)), sink.append(plain),
                                       sink.append_verifications(group(True)))
        assert sink.stats.transactions == 1                     # one batch: expanded in the drain
        assert [r.seq for r in a.records] == [1] and p.seq == 2 and [r.seq for r in b.records] == [3, 4, 5]
        recs = await sink.read_records(0, 10)
        assert [r.body["kind"] for r in recs] == ["verify", "token", "verify", "verify", "verify"]
        assert [r.body["extra"].get("entry") for r in recs[2:]] == [0, 1, 2]
        assert len(a.sealed) == 1 and len(b.sealed) == 1        # one receipt per answer
    finally:
        await sink.close()


async def test_inline_writer_expands_a_batch_retried_after_a_busy_lock_once(tmp_path: Path, monkeypatch) -> None:
    import gateway.audit.sqlite_inline as inline

    calls = []
    real = inline.expand
    monkeypatch.setattr(inline, "expand", lambda g, s: calls.append(g) or real(g, s))
    path = tmp_path / "audit.db"
    sink = await SqliteInlineAuditSink.open(path, signer=CheckpointSigner(AUDIT_KEY, "a"), clock=lambda: T,
                                            config=GroupCommitConfig(commit_interval=0.0), sealer=SIGNER)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")                         # another worker holds the write lock
        task = asyncio.create_task(sink.append_verifications(group(True)))
        await asyncio.sleep(0.05)                                # several retries meanwhile
        assert not task.done() and len(calls) == 1
        other.execute("COMMIT")
        appended = await asyncio.wait_for(task, 5)
        assert [r.seq for r in appended.records] == [1, 2, 3] and len(calls) == 1
    finally:
        other.close()
        await sink.close()
