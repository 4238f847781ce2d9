"""Attacks on the audit trail and on receipts, by an insider with database access (no signing key)
and by a third party holding a receipt. Each attack sits beside a genuine control case.

* a chain start moved forward by hand without deleting the records before it hid those records
  (edits included) from ``audit verify`` while searches still returned them;
* a column holding a value no record has (a BLOB, unreadable JSON) or a state row of the wrong type
  made ``audit verify`` raise a traceback or exit 2 ("error: invalid literal...") instead of
  naming the record;
* deleting the newest checkpoints with every record after them cannot be seen in the database
  alone: ``audit verify`` now says how far signatures vouch for the chain, the gateway logs each
  checkpoint it signs, and ``--anchor`` checks the chain against such a copy;
* after a key rotation, two PEM keys could not be given (``--key`` kept the last);
* receipts and checkpoints whose base64url carried characters outside the alphabet, set unused
  bits, or a re-encoded inclusion proof still verified: another string, accepted as the receipt.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit import (AuditEvent, AuditQuery, CheckpointSigner, GroupCommitConfig, SqliteAuditSink, audit_cli,
                           check_checkpoint, verify_chain)
import gateway.app  # noqa: F401 - first: gateway.audit_wiring alone is a circular import
from gateway.audit.jws import JwsError, b64u, b64u_decode
from gateway.audit_wiring import AuditTrail, audit_setup_from, key_id
from gateway.config import Settings
from gateway.errors import RECEIPT_INVALID, RequestRejected
from gateway.logging_setup import JsonFormatter
from gateway.receipts import ReceiptSigner, jwks, request_digest, verify_receipt

# TEST keys, derived from fixed public values: never use them outside tests
AUDIT_KEY = Ed25519PrivateKey.from_private_bytes(b"\x21" * 32)
NEW_AUDIT_KEY = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
RECEIPT_KEY = Ed25519PrivateKey.from_private_bytes(b"\x23" * 32)
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
BODY = b'{"licence":"...","encoding":"base64"}'


def event(i: int) -> AuditEvent:
    return AuditEvent(kind="verify", time=T0 + timedelta(minutes=i), request_id=f"req-{i}", partner="partner-a",
                      region="330500", licence_id=f"lic-{i}", verdict="invalid", reasons=("LICENCE_EXPIRED",),
                      extra={"i": i})


async def _fill(path: Path, first: int, last: int, key: Ed25519PrivateKey, kid: str) -> None:
    sink = await SqliteAuditSink.open(path, signer=CheckpointSigner(key, kid),
                                      clock=lambda: T0 + timedelta(days=1),
                                      config=GroupCommitConfig(checkpoint_every=5))
    try:
        for i in range(first, last + 1):
            await sink.append(event(i))
    finally:
        await sink.close()


def make_chain(tmp: Path, n: int = 12) -> Path:
    """A SQLite chain of ``n`` records, a checkpoint signed every 5 (at 5 and 10 for 12)."""
    path = tmp / "audit.db"
    asyncio.run(_fill(path, 1, n, AUDIT_KEY, "test-audit-1"))
    return path


def pem(tmp: Path, key: Ed25519PrivateKey = AUDIT_KEY, name: str = "audit.pem") -> str:
    p = tmp / name
    p.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return str(p)


def tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for s in statements:
            conn.execute(s)
    finally:
        conn.close()


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = audit_cli(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def verify_cli(path: Path, tmp: Path, *extra: str) -> tuple[int, str, str]:
    return cli("verify", "--store", f"sqlite:{path}", "--key", pem(tmp), *extra)


async def report_of(path: Path, **kw):
    store = await SqliteAuditSink.open(path)
    try:
        return await verify_chain(store, AUDIT_KEY.public_key(), **kw)
    finally:
        await store.close()


def stored_checkpoint(path: Path, seq: int) -> str:
    conn = sqlite3.connect(path)
    try:
        (jws,) = conn.execute("SELECT jws FROM audit_checkpoints WHERE seq = ?", (seq,)).fetchone()
    finally:
        conn.close()
    return jws


# --- the chain start moved without pruning ---------------------------------------------------------
MOVE_START = "UPDATE audit_state SET start_seq = 5, start_hash = (SELECT hash FROM audit_checkpoints WHERE seq = 5)"


def test_start_moved_forward_without_pruning_hides_no_edit_before_it(tmp_path: Path) -> None:
    path = make_chain(tmp_path)
    # control: a real prune up to the checkpoint at 5 verifies, and says where the chain now starts
    (tmp_path / "control").mkdir()
    control = make_chain(tmp_path / "control")
    code, out, _ = cli("prune", "--store", f"sqlite:{control}", "--before", "2030-01-01T00:00:00Z")
    assert code == 0 and "checkpoint 10" in out
    code, out, _ = verify_cli(control, tmp_path)
    assert code == 0 and "OK: 2 records (seq 11..12)" in out
    assert "pruned: the chain starts after the checkpoint signed at seq 10" in out
    # attack: the start row moved to the checkpoint at 5, records 1..5 left in place, record 2 forged
    tamper(path, MOVE_START, "UPDATE audit_records SET verdict = 'valid', reasons = '[]' WHERE seq = 2")

    async def searched() -> list[str]:
        store = await SqliteAuditSink.open(path)
        try:
            return [r.body["verdict"] for r in await store.search(AuditQuery(partner="partner-a", limit=20))]
        finally:
            await store.close()

    assert "valid" in asyncio.run(searched())   # the forged record is what a search shows
    code, out, _ = verify_cli(path, tmp_path)
    assert code == 1, out
    assert out.startswith("BROKEN at seq 1: record 1 lies at or before the chain start 5")


def test_record_written_below_seq_1_is_reported(tmp_path: Path) -> None:
    path = make_chain(tmp_path)
    tamper(path, "INSERT INTO audit_records SELECT 0, prev_hash, hash, kind, time, request_id, partner, operator, "
                 "item_code, region, licence_id, verdict, reasons, holder_hmac, extra FROM audit_records WHERE seq = 1")
    report = asyncio.run(report_of(path))
    assert not report.ok and report.first_bad_seq == 0 and "at or before the chain start" in (report.problem or "")


# --- values no record holds: named, never a traceback ---------------------------------------------------
@pytest.mark.parametrize("statement", [
    "UPDATE audit_records SET partner = X'706172746e65722d61' WHERE seq = 3",   # the same text, as a BLOB
    "UPDATE audit_records SET prev_hash = CAST(prev_hash AS BLOB) WHERE seq = 3",
    "UPDATE audit_records SET time = X'00' WHERE seq = 3",
    "UPDATE audit_records SET reasons = 'LICENCE_EXPIRED' WHERE seq = 3",        # not JSON
    "UPDATE audit_records SET extra = '{\"i\": 3' WHERE seq = 3",               # cut JSON
], ids=["blob-partner", "blob-prev-hash", "blob-time", "reasons-not-json", "extra-cut"])
def test_record_value_of_a_type_no_record_has_is_named_not_a_traceback(tmp_path: Path, statement: str) -> None:
    path = make_chain(tmp_path)
    code, out, _ = verify_cli(path, tmp_path)
    assert code == 0 and out.startswith("OK: 12 records")   # control
    tamper(path, statement)
    code, out, err = verify_cli(path, tmp_path)
    assert code == 1, (out, err)
    assert out.startswith("BROKEN at seq 3: record 3 ") and "2 records verified before it" in out


def test_search_of_a_tampered_store_prints_the_records_not_a_traceback(tmp_path: Path) -> None:
    path = make_chain(tmp_path)
    tamper(path, "UPDATE audit_records SET partner = X'41' WHERE seq = 3",
           "UPDATE audit_records SET reasons = 'LICENCE_EXPIRED' WHERE seq = 4")
    code, out, err = cli("search", "--store", f"sqlite:{path}", "--limit", "20")
    assert code == 0, err
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == list(range(12, 0, -1))
    by_seq = {r["seq"]: r for r in rows}
    assert by_seq[3]["partner"] == "hex:41" and by_seq[4]["reasons"] == "LICENCE_EXPIRED"
    assert by_seq[5]["partner"] == "partner-a" and by_seq[5]["reasons"] == ["LICENCE_EXPIRED"]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_state SET head_seq = 'twelve'",
    "UPDATE audit_state SET start_seq = 'x'",
])
def test_state_row_of_the_wrong_type_is_reported_not_a_traceback(tmp_path: Path, statement: str) -> None:
    path = make_chain(tmp_path)
    assert verify_cli(path, tmp_path)[0] == 0   # control
    tamper(path, statement)
    code, out, err = verify_cli(path, tmp_path)
    assert code == 1, (out, err)
    assert out.startswith("BROKEN: the chain state row was altered")


# --- truncation with the newest checkpoints: what verify proves, and anchors --------------------------
TRUNCATE_AT_5 = ("DELETE FROM audit_records WHERE seq > 5", "DELETE FROM audit_checkpoints WHERE seq > 5",
                 "UPDATE audit_state SET head_seq = 5, last_checkpoint_seq = 5, "
                 "head_hash = (SELECT hash FROM audit_records WHERE seq = 5)")


def test_truncated_tail_with_its_checkpoints_is_caught_by_an_anchor_kept_elsewhere(tmp_path: Path) -> None:
    path = make_chain(tmp_path)
    anchor = stored_checkpoint(path, 10)   # what the gateway logged when it signed it
    # control: the intact chain holds the anchor; the report says how far signatures vouch for it
    report = asyncio.run(report_of(path, anchors=[anchor]))
    assert report.ok and report.anchors_checked == 1 and report.signed_seq == 10 and report.head_seq == 12
    code, out, _ = verify_cli(path, tmp_path, "--anchor", anchor)
    assert code == 0 and "signed through seq 10" in out and "records 11..12 (2) are chained but not yet signed" in out
    tamper(path, *TRUNCATE_AT_5)
    # the database alone cannot show it: OK, but the report says what it proves
    code, out, _ = verify_cli(path, tmp_path)
    assert code == 0 and "OK: 5 records (seq 1..5)" in out and "signed through seq 5" in out
    assert "cannot be seen from the database alone" in out
    # with the anchor the deletion is named
    code, out, _ = verify_cli(path, tmp_path, "--anchor", anchor)
    assert code == 1 and out.startswith("BROKEN at seq 6: the anchor checkpoint signed at seq 10 names records "
                                        "that are gone")


def test_tail_rewritten_after_deleting_the_newest_checkpoint_is_caught_by_an_anchor(tmp_path: Path) -> None:
    from gateway.audit import record_hash

    path = make_chain(tmp_path)
    anchor = stored_checkpoint(path, 10)
    conn = sqlite3.connect(path, isolation_level=None)
    try:   # record 7's verdict rewritten, every later hash recomputed, the checkpoint at 10 deleted
        conn.execute("DELETE FROM audit_checkpoints WHERE seq = 10")
        conn.execute("UPDATE audit_records SET verdict = 'valid', reasons = '[]' WHERE seq = 7")
        (prev,) = conn.execute("SELECT prev_hash FROM audit_records WHERE seq = 7").fetchone()
        store_rows = conn.execute("SELECT seq, kind, time, request_id, partner, operator, item_code, region, "
                                  "licence_id, verdict, reasons, holder_hmac, extra FROM audit_records "
                                  "WHERE seq >= 7 ORDER BY seq").fetchall()
        for row in store_rows:
            body = dict(zip(("kind", "time", "request_id", "partner", "operator", "item_code", "region",
                             "licence_id", "verdict", "reasons", "holder_hmac", "extra"), row[1:], strict=True))
            body["reasons"], body["extra"] = orjson.loads(body["reasons"]), orjson.loads(body["extra"])
            h = record_hash(row[0], prev, body)
            conn.execute("UPDATE audit_records SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, row[0]))
            prev = h
        conn.execute("UPDATE audit_state SET head_hash = ?, last_checkpoint_seq = 5", (prev,))
    finally:
        conn.close()
    assert asyncio.run(report_of(path)).ok   # undetectable inside the database
    report = asyncio.run(report_of(path, anchors=[anchor]))
    assert not report.ok and report.first_bad_seq == 6
    assert "the anchor checkpoint signed at seq 10 names another hash" in (report.problem or "")


def test_anchor_not_signed_by_the_audit_key_is_refused(tmp_path: Path) -> None:
    path = make_chain(tmp_path)
    forged = CheckpointSigner(NEW_AUDIT_KEY, "test-audit-1").sign(3, "0" * 64, T0).jws
    report = asyncio.run(report_of(path, anchors=[forged]))
    assert not report.ok and report.first_bad_seq is None and "anchor 1: signature does not verify" in report.problem
    code, out, _ = verify_cli(path, tmp_path, "--anchor", "no-such-file-and-no-jws")
    assert code == 2   # a usage error, not an OK


async def test_gateway_logs_each_checkpoint_it_signs_and_the_log_line_is_an_anchor(tmp_path: Path, caplog) -> None:
    trail = AuditTrail(audit_setup_from(Settings(demo=True, audit_backend="memory")), lambda: T0)
    await trail.open()
    sink = trail.sink
    for i in range(1, 4):
        await trail.append(event(i))
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        await trail.close()   # the closing checkpoint of this worker
    [rec] = [r for r in caplog.records if getattr(r, "checkpoint", None)]
    assert rec.checkpoint_seq == 3
    line = JsonFormatter().format(rec)
    log_file = tmp_path / "gateway.log"
    log_file.write_text('{"message": "another line"}\n' + line + "\n", encoding="utf-8")
    from gateway.audit.cli import load_anchors

    [anchor] = load_anchors([str(log_file)])
    public = trail.setup.checkpoints.public_key()
    report = await verify_chain(sink, public, anchors=[anchor])
    assert report.ok and report.anchors_checked == 1 and report.signed_seq == 3
    del sink.table[3]   # the tail deleted, the head row and the checkpoint table made to agree
    del sink.checkpoint_table[3]
    sink.state_row.update(head_seq=2, head_hash=sink.table[2].hash)
    assert (await verify_chain(sink, public)).ok
    report = await verify_chain(sink, public, anchors=[anchor])
    assert not report.ok and report.first_bad_seq == 3


# --- key rotation: the retired key and the new one, both as PEM --------------------------------------
def test_chain_signed_before_and_after_a_key_rotation_verifies_with_both_pem_keys(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    old_kid, new_kid = key_id("audit", AUDIT_KEY.public_key()), key_id("audit", NEW_AUDIT_KEY.public_key())
    asyncio.run(_fill(path, 1, 6, AUDIT_KEY, old_kid))       # checkpoint at 5 by the old key
    asyncio.run(_fill(path, 7, 12, NEW_AUDIT_KEY, new_kid))  # checkpoint at 10 by the new one
    old, new = pem(tmp_path, AUDIT_KEY, "old.pem"), pem(tmp_path, NEW_AUDIT_KEY, "new.pem")
    code, out, _ = cli("verify", "--store", f"sqlite:{path}", "--key", new)
    assert code == 1 and out.startswith("BROKEN at seq 5: checkpoint at seq 5")   # control: the new key alone
    code, out, _ = cli("verify", "--store", f"sqlite:{path}", "--key", old, "--key", new)
    assert code == 0 and "OK: 12 records (seq 1..12), 2 signed checkpoints" in out
    # a third key does not stand in for either
    other = pem(tmp_path, RECEIPT_KEY, "other.pem")
    code, out, _ = cli("verify", "--store", f"sqlite:{path}", "--key", other, "--key", new)
    assert code == 1 and f"checkpoint at seq 5 signed by key {old_kid}, you gave " in out   # session 21: named


# --- receipts and checkpoints: one string per signed statement -------------------------------------------
def _batch_receipts(n: int = 3) -> tuple[list[str], dict]:
    s = ReceiptSigner(RECEIPT_KEY, "test-receipt-1", "gw-test")
    drafts = [s.draft(request_digest=request_digest(BODY), request_id=f"req-{i}", verdict="valid", reasons=[],
                      item=None, time_text="2025-03-01T08:00:00.000000Z", iat=int(T0.timestamp()),
                      licence_ids=[f"lic-{i}"]) for i in range(n)]
    return s.seal(drafts, 1, n, T0), jwks(s)


def _insert(token: str, part: int, text: str) -> str:
    parts = token.split(".")
    parts[part] = parts[part][:5] + text + parts[part][5:]
    return ".".join(parts)


def _unused_bits_set(token: str, part: int) -> str:
    """The same bytes, another text: the last character's unused low bits set."""
    parts = token.split(".")
    s = parts[part]
    assert len(s) % 4, "needs a part whose last character has unused bits"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    parts[part] = s[:-1] + alphabet[alphabet.index(s[-1]) | 1]
    assert parts[part] != s
    return ".".join(parts)


@pytest.mark.parametrize("mutate", [
    lambda r: _insert(r, 0, "!!!!"), lambda r: _insert(r, 1, "*"), lambda r: _insert(r, 0, "\t\t:;"),
], ids=["claims-bang", "proof-star", "claims-tab"])
def test_receipt_with_characters_outside_base64url_inserted_is_rejected(mutate) -> None:
    """The standard library's decoder drops characters outside the alphabet: the claims (hashed as
    decoded bytes) and the proof (not signed) are not covered by the JWS's own character check."""
    receipts, keyset = _batch_receipts()
    assert verify_receipt(receipts[1], keyset, request_body=BODY)["request_id"] == "req-1"   # control
    with pytest.raises(RequestRejected) as exc:
        verify_receipt(mutate(receipts[1]), keyset, request_body=BODY)
    assert exc.value.reason is RECEIPT_INVALID and "base64url" in (exc.value.detail or "")
    with pytest.raises(RequestRejected):   # the batch JWS was already checked character by character
        verify_receipt(_insert(receipts[1], 4, "~~~~"), keyset)


def test_receipt_with_unused_base64_bits_set_is_rejected() -> None:
    receipts, keyset = _batch_receipts()
    token = receipts[0]
    sig = token.split(".")[4]   # 64 bytes: 86 characters, 2 unused bits in the last one
    assert len(sig) % 4 == 2
    with pytest.raises(RequestRejected) as exc:
        verify_receipt(_unused_bits_set(token, 4), keyset)
    assert exc.value.reason is RECEIPT_INVALID and "canonical" in (exc.value.detail or "")
    # a single-signed receipt (the console's) likewise
    s = ReceiptSigner(RECEIPT_KEY, "test-receipt-1", "gw-test")
    single = s.sign(request_body=BODY, verdict="valid", reasons=[], item=None, time=T0, licence_ids=["lic-1"])
    assert verify_receipt(single, keyset)["verdict"] == "valid"
    with pytest.raises(RequestRejected):
        verify_receipt(_unused_bits_set(single, 2), keyset)


def test_receipt_with_its_proof_re_encoded_is_rejected() -> None:
    receipts, keyset = _batch_receipts()
    parts = receipts[1].split(".")
    proof = orjson.loads(b64u_decode(parts[1]))
    for text in (orjson.dumps(proof, option=orjson.OPT_INDENT_2),          # spaces
                 orjson.dumps({"path": proof["path"], "i": proof["i"]}),   # member order
                 orjson.dumps({**proof, "note": "x"})):                    # a member more
        forged = ".".join([parts[0], b64u(text), *parts[2:]])
        with pytest.raises(RequestRejected) as exc:
            verify_receipt(forged, keyset)
        assert "canonical form" in (exc.value.detail or "")


def test_checkpoint_with_unused_base64_bits_set_fails_its_check() -> None:
    cp = CheckpointSigner(AUDIT_KEY, "test-audit-1").sign(5, "ab" * 32, T0)
    keys = {"test-audit-1": AUDIT_KEY.public_key()}
    assert check_checkpoint(cp, keys) is None   # control
    from dataclasses import replace

    problem = check_checkpoint(replace(cp, jws=_unused_bits_set(cp.jws, 2)), keys)
    assert problem is not None and "canonical" in problem
    with pytest.raises(JwsError):
        b64u_decode("QR")   # 'Q' then 'R': 0x41 with a low bit set in the unused part
    assert b64u_decode("QQ") == b"A"
