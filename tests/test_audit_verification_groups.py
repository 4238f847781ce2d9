"""A verify answer's records in compact form: expanded anywhere, they are the same records.

The SQLite writer process expands :class:`VerificationGroup` in its own interpreter; the other
sinks expand it in the worker. Either way the record bodies must be exactly those the checked
``AuditEvent`` constructor makes, the drafts exactly ``ReceiptSigner.draft``'s, and the chain the
same -- or a receipt would not find its record, and `audit verify` would disagree between stores."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AuditEvent, CheckpointSigner, GroupCommitConfig, MemoryAuditSink, holder_hmac, verify_chain
from gateway.audit.model import format_time
from gateway.audit.sqlite_process import SqliteProcessAuditSink
from gateway.audit.verifications import VerificationGroup, expand
from gateway.receipts import ReceiptSigner, verify_receipt

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
def test_expanded_records_equal_the_checked_events_and_drafts_equal_the_signers(batch: bool) -> None:
    g = group(batch)
    bodies, drafts = expand(g, SIGNER)
    assert len(bodies) == len(drafts) == len(g.entries)
    for i, ((region, lid, verdict, reasons, holder, ids), body, draft) in enumerate(zip(g.entries, bodies, drafts)):
        expected_draft = SIGNER.draft(request_digest="ZGlnZXN0", request_id="req-42", verdict=verdict, reasons=reasons,
                                      item=None, time_text=format_time(T), iat=int(T.timestamp()), licence_ids=ids,
                                      entry=i if batch else None)
        assert draft == expected_draft
        extra = {"receipt": expected_draft.ref, **({"entry": i, "entries": len(g.entries)} if batch else {})}
        event = AuditEvent(kind="verify", time=T, request_id="req-42", partner="demo-partner", region=region,
                           licence_id=lid, verdict=verdict, reasons=reasons, holder_hmac=holder, extra=extra)
        assert body == event.body()


def test_without_a_receipt_signer_records_name_no_receipt() -> None:
    bodies, drafts = expand(group(True), None)
    assert drafts == [] and [b["extra"]["receipt"] for b in bodies] == [None, None, None]


def test_wire_form_round_trips() -> None:
    g = group(True)
    import orjson

    assert VerificationGroup.from_wire(orjson.loads(orjson.dumps(g.as_wire()))) == g


async def test_worker_side_and_writer_process_expansion_store_the_same_chain(tmp_path: Path) -> None:
    cfg = GroupCommitConfig(checkpoint_every=1000)
    here = await MemoryAuditSink.open(signer=CheckpointSigner(AUDIT_KEY, "a"), clock=lambda: T, config=cfg,
                                      sealer=SIGNER)
    there = await SqliteProcessAuditSink.open(tmp_path / "audit.db", signer=CheckpointSigner(AUDIT_KEY, "a"),
                                              clock=lambda: T, config=cfg, sealer=SIGNER)
    try:
        got = {}
        for name, sink in (("memory", here), ("process", there)):
            a = await sink.append_verifications(group(False))
            b = await sink.append_verifications(group(True))
            got[name] = (await sink.read_records(0, 10), a, b)
            assert (await verify_chain(sink, AUDIT_KEY.public_key())).ok
        (recs_m, a_m, b_m), (recs_p, a_p, b_p) = got["memory"], got["process"]
        assert [(r.seq, r.hash, r.body) for r in recs_m] == [(r.seq, r.hash, r.body) for r in recs_p]
        assert len(recs_p) == 4 and a_p.records == a_m.records and b_p.records == b_m.records
        jwks = SIGNER.jwks()
        for receipt, rec in zip(b_p.sealed, recs_p[1:]):      # each batch receipt verifies and finds its record
            claims = verify_receipt(receipt, jwks)
            assert claims["request_id"] == "req-42" and claims["verdict"] == rec.body["verdict"]
            assert claims["batch"]["seq"][0] <= rec.seq <= claims["batch"]["seq"][1]
    finally:
        await here.close()
        await there.close()
