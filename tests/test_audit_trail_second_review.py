"""Second adversarial review of the audit trail (session 20): an insider with write access to the
audit database who wants to hide or alter what someone looked up, and an operator relying on
``python -m gateway audit verify`` / ``search`` / ``prune``. Each attack sits beside a genuine
control that keeps passing.

* a JSON column (``extra``, ``reasons``) re-encoded into another text of the same value -- a member
  named twice (SQLite's ``json_extract`` reads the first, the hash the last), spaces, escapes, a BLOB
  -- passed ``audit verify``;
* a TEXT column holding bytes that are not UTF-8 made ``audit verify`` and every ``audit search``
  touching the row end in a store error (exit 2), naming nothing;
* ``audit verify`` of a store the gateway was appending to (or pruning) said BROKEN ("inserted",
  "missing") for a chain nobody touched: it read the head row, then the records, one statement at a time;
* retention pruning trusted one checkpoint's signing time: a checkpoint signed while the clock was set
  back (NTP, a restored VM) deleted every record before it, however young;
* a trigger holding ``last_checkpoint_seq`` at the head stopped every periodic checkpoint and so every
  logged anchor: the whole tail stayed unsigned and free to rewrite;
* the holder search index (a file of its own, no hash over it) could be edited to hide a person's
  records from every ``audit search --holder-code`` while ``audit verify`` said OK;
* anchors naming records before the pruned start were reported as "found in the chain";
* ``audit verify --key keys.json`` (the gateway's key set) trusted every Ed25519 key in it as a
  checkpoint key, an EdDSA receipt or access-token key included;
* ``audit search --holder-code <ID number>`` put the citizen ID in the process list: ``-`` now reads
  it from standard input.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import gateway.app  # noqa: F401 - first: gateway.audit_wiring alone is a circular import
from gateway.audit import (AuditQuery, CheckpointSigner, GroupCommitConfig, MemoryAuditSink, SqliteAuditSink,
                           verify_chain)
from gateway.audit.jws import public_jwk
from gateway.audit.postgres import PostgresAuditSink
from gateway.audit_wiring import key_id
from gateway.errors import RequestRejected
from gateway.receipts import (ReceiptSigner, inclusion_proof, jwks, leaf_hash, merkle_levels, request_digest,
                              root_from_proof, verify_receipt)
from tests.pg_fixture import drop_schema, new_schema_name, pg_dsn  # noqa: F401 - fixture
from tests.test_audit_chain import HOLDER_A, HOLDER_B, Clock
from tests.test_audit_chain import AUDIT_KEY as CHAIN_KEY
from tests.test_audit_chain import PUBLIC as CHAIN_PUBLIC
from tests.test_audit_chain import T0 as CHAIN_T0
from tests.test_audit_chain import event as chain_event
from tests.test_audit_cli import CITIZEN, HMAC_KEY, make_sqlite
from tests.test_audit_holder_index_deferred import append as append_holders
from tests.test_audit_holder_index_deferred import open_sink as open_indexed_sink
from tests.test_audit_trail_and_receipt_attacks import (AUDIT_KEY, BODY, RECEIPT_KEY, T0, _fill, cli, event, make_chain,
                                                        pem, report_of, stored_checkpoint, tamper, verify_cli)


def sql(path: Path, statement: str) -> list[tuple]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(statement).fetchall()
    finally:
        conn.close()


# --- one text per JSON value -----------------------------------------------------------------------
@pytest.mark.parametrize("statement", [
    """UPDATE audit_records SET extra = '{"i":999,"i":3}' WHERE seq = 3""",       # a member named twice
    """UPDATE audit_records SET extra = '{"i": 3}' WHERE seq = 3""",              # a space
    """UPDATE audit_records SET extra = '{"\\u0069":3}' WHERE seq = 3""",          # the key escaped
    "UPDATE audit_records SET extra = CAST(extra AS BLOB) WHERE seq = 3",          # the same JSON as a BLOB
    """UPDATE audit_records SET reasons = '[ "LICENCE_EXPIRED" ]' WHERE seq = 3""",
], ids=["member-named-twice", "spaces", "escaped-key", "blob", "reasons-spaced"])
def test_json_column_re_encoded_to_another_text_of_the_same_value_is_named(tmp_path: Path, statement: str) -> None:
    path = make_chain(tmp_path)
    code, out, _ = verify_cli(path, tmp_path)
    assert code == 0 and out.startswith("OK: 12 records")                          # control
    assert sql(path, "SELECT json_extract(extra, '$.i') FROM audit_records WHERE seq = 3") == [(3,)]
    tamper(path, statement)
    if "999" in statement:   # what an SQL reader of the record now sees is not what was hashed and signed
        assert sql(path, "SELECT json_extract(extra, '$.i') FROM audit_records WHERE seq = 3") == [(999,)]
    code, out, _ = verify_cli(path, tmp_path)
    assert code == 1, out
    assert out.startswith("BROKEN at seq 3: record 3 ") and "2 records verified before it" in out


# --- a TEXT value that is not UTF-8 ------------------------------------------------------------------
def test_text_column_that_is_not_utf8_is_named_by_verify_and_printed_by_search(tmp_path: Path) -> None:
    path = make_chain(tmp_path)
    code, out, _ = cli("search", "--store", f"sqlite:{path}", "--limit", "20")
    assert code == 0 and len(out.splitlines()) == 12                               # control
    tamper(path, "UPDATE audit_records SET partner = CAST(X'70FF' AS TEXT) WHERE seq = 3")
    code, out, err = verify_cli(path, tmp_path)
    assert code == 1, (out, err)
    assert out.startswith("BROKEN at seq 3: record 3 holds a value of a type no record has")
    code, out, err = cli("search", "--store", f"sqlite:{path}", "--limit", "20")
    assert code == 0, err
    rows = {r["seq"]: r for r in map(orjson.loads, out.splitlines())}
    assert len(rows) == 12 and rows[3]["partner"] == "hex:70ff" and rows[4]["partner"] == "partner-a"


# --- verify while the gateway writes -----------------------------------------------------------------
def _meanwhile(store: SqliteAuditSink | PostgresAuditSink, work) -> None:
    """Run ``work`` (appends, a prune: another process's doing) between the verifier's first reads."""
    original = store.read_records
    done = False

    async def read_records(after_seq: int, limit: int):
        nonlocal done
        if not done:
            done = True
            await work()
        return await original(after_seq, limit)

    store.read_records = read_records   # type: ignore[method-assign]


async def _writer(path: Path, clock: Clock) -> SqliteAuditSink:
    return await SqliteAuditSink.open(path, signer=CheckpointSigner(CHAIN_KEY, "test-audit-1"), clock=clock,
                                      config=GroupCommitConfig(checkpoint_every=20))


async def test_verify_of_a_store_being_appended_to_and_pruned_reports_it_intact(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.db", Clock(CHAIN_T0)
    writer = await _writer(path, clock)
    store = await SqliteAuditSink.open(path)   # the CLI's view: a connection of its own
    try:
        for i in range(1, 46):
            clock.now = CHAIN_T0 + timedelta(minutes=i)
            await writer.append(chain_event(i))

        async def appends() -> None:
            for i in range(46, 51):
                await writer.append(chain_event(i))

        _meanwhile(store, appends)
        report = await verify_chain(store, CHAIN_PUBLIC, batch=7)
        assert report.ok, report.problem                   # the snapshot read: 45 records, as the head said
        assert (report.records_checked, report.head_seq) == (45, 45)

        async def prune() -> None:
            assert (await writer.prune(CHAIN_T0 + timedelta(minutes=45))).start_seq == 40

        _meanwhile(store, prune)
        report = await verify_chain(store, CHAIN_PUBLIC, batch=7)
        assert report.ok, report.problem
        report = await verify_chain(store, CHAIN_PUBLIC, batch=7)   # and read afresh: the pruned chain
        assert (report.ok, report.start_seq, report.records_checked) == (True, 40, 10)

        # control: an edit is still named while the gateway appends
        sql(path, "UPDATE audit_records SET verdict = 'forged' WHERE seq = 43")
        _meanwhile(store, appends)
        report = await verify_chain(store, CHAIN_PUBLIC, batch=7)
        assert (report.ok, report.first_bad_seq) == (False, 43)
    finally:
        await store.close()
        await writer.close()


# --- retention ----------------------------------------------------------------------------------------
async def _clock_stepped_back_at_a_checkpoint(sink, clock: Clock) -> None:
    """Records a day apart, a checkpoint every 10; the one at 40 is signed while the clock reads ten
    years ago (records 31..40 carry their true times)."""
    for i in range(1, 41):
        clock.now = CHAIN_T0 + timedelta(days=i)
        if i == 40:
            clock.now = CHAIN_T0 - timedelta(days=3650)
        await sink.append(chain_event(i, time=CHAIN_T0 + timedelta(days=i)))


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_prune_after_a_checkpoint_signed_with_the_clock_set_back_keeps_younger_records(
        tmp_path: Path, kind: str) -> None:
    clock = Clock(CHAIN_T0)
    config = GroupCommitConfig(checkpoint_every=10)
    signer = CheckpointSigner(CHAIN_KEY, "test-audit-1")
    sink = (await SqliteAuditSink.open(tmp_path / "audit.db", signer=signer, clock=clock, config=config)
            if kind == "sqlite" else await MemoryAuditSink.open(signer=signer, clock=clock, config=config))
    try:
        await _clock_stepped_back_at_a_checkpoint(sink, clock)
        assert [cp.time[:4] for cp in await sink.read_checkpoints()] == ["2025", "2025", "2025", "2015"]
        # retention cut at day 15: records 1..14 are older; the checkpoint at 10 is the last one before them
        result = await sink.prune(CHAIN_T0 + timedelta(days=15))
        assert (result.deleted, result.start_seq) == (10, 10)
        assert [r.seq for r in await sink.read_records(0, 3)] == [11, 12, 13]
        assert (await verify_chain(sink, CHAIN_PUBLIC)).ok
        # control: a cut after every record still prunes up to the latest checkpoint, the stepped-back one too
        result = await sink.prune(CHAIN_T0 + timedelta(days=100))
        assert (result.deleted, result.start_seq) == (30, 40)
        report = await verify_chain(sink, CHAIN_PUBLIC)
        assert (report.ok, report.start_seq, report.records_checked) == (True, 40, 0)
    finally:
        await sink.close()


async def test_two_workers_pruning_at_once_leave_one_verifiable_chain(tmp_path: Path) -> None:
    """(Sound before this review: each prune is one BEGIN IMMEDIATE transaction re-reading the start.)"""
    path, clock = tmp_path / "audit.db", Clock(CHAIN_T0)
    a = await _writer(path, clock)
    b = await _writer(path, clock)
    try:
        for i in range(1, 51):
            clock.now = CHAIN_T0 + timedelta(minutes=i)
            await (a if i % 2 else b).append(chain_event(i))
        results = await asyncio.gather(a.prune(CHAIN_T0 + timedelta(minutes=45)),
                                       b.prune(CHAIN_T0 + timedelta(minutes=45)))
        assert sorted((r.deleted, r.start_seq) for r in results) == [(0, 40), (40, 40)]
        report = await verify_chain(a, CHAIN_PUBLIC)
        assert (report.ok, report.start_seq, report.records_checked) == (True, 40, 10)
    finally:
        await a.close()
        await b.close()


# --- periodic checkpoints cannot be silenced -----------------------------------------------------------
HUSH = ("CREATE TRIGGER hush AFTER UPDATE OF head_seq ON audit_state BEGIN "
        "UPDATE audit_state SET last_checkpoint_seq = NEW.head_seq WHERE id = 1; END")


async def test_checkpoint_suppressed_by_holding_last_checkpoint_seq_at_the_head_is_still_signed(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.db", Clock(CHAIN_T0)
    sink = await _writer(path, clock)
    try:
        for i in range(1, 6):
            await sink.append(chain_event(i))
        assert (await sink.checkpoint()).seq == 5                    # control: the periodic checkpoint
        assert await sink.checkpoint() is None                        # ... signed once per head
        sql(path, HUSH)
        for i in range(6, 13):
            await sink.append(chain_event(i))
        cp = await sink.checkpoint()
        assert cp is not None and cp.seq == 12
        assert await sink.checkpoint() is None
        report = await verify_chain(sink, CHAIN_PUBLIC)
        assert report.ok and report.signed_seq == 12
    finally:
        await sink.close()


# --- the holder search index ------------------------------------------------------------------------------
@pytest.mark.parametrize("statement, hidden, found", [
    (f"DELETE FROM holder_keys WHERE hkey = '{HOLDER_A[:24]}'", 5, [45, 40, 35]),
    (f"DELETE FROM holder_keys WHERE hkey = '{HOLDER_A[:24]}' AND seq = 20", 20, [45, 40, 35, 30, 25, 15, 10, 5]),
    # the watermark moved past records never indexed: they are no longer scanned either
    ("UPDATE holder_keys_state SET indexed_seq = 45", 31, [30, 25, 20, 15, 10, 5]),
], ids=["a-person-removed", "one-record-removed", "watermark-moved"])
async def test_holder_index_edited_to_hide_a_person_is_named_by_verify(tmp_path: Path, statement: str,
                                                                       hidden: int, found: list[int]) -> None:
    path = tmp_path / "audit.db"
    sink = await open_indexed_sink(path)
    try:
        await append_holders(sink, 1, 30)
        assert await sink.index_holders() == 30
        await append_holders(sink, 31, 45)                           # past the watermark: scanned by searches
        every = [45, 40, 35, 30, 25, 20, 15, 10, 5]
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == every
        assert (await verify_chain(sink, CHAIN_PUBLIC)).ok           # control: index and records agree
        sql(Path(f"{path}-holders"), statement)
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == found   # records hidden
        report = await verify_chain(sink, CHAIN_PUBLIC)
        assert (report.ok, report.first_bad_seq) == (False, hidden), report
        assert "holder search index does not name record" in (report.problem or "")
    finally:
        await sink.close()
    code, out, _ = await asyncio.to_thread(cli, "verify", "--store", f"sqlite:{path}", "--key", _chain_pem(tmp_path))
    assert code == 1 and out.startswith(f"BROKEN at seq {hidden}: the holder search index"), out


def _chain_pem(tmp: Path) -> str:
    return pem(tmp, CHAIN_KEY, "chain.pem")


async def test_holder_index_stale_after_a_restore_is_named_and_a_rebuild_clears_it(tmp_path: Path) -> None:
    """A restored database whose head passes the index's old watermark before the next index run: the
    index keeps the lost records' entries and never names the new ones (the indexer only rebuilds an
    index AHEAD of the head). Verify names it; deleting the index file rebuilds it."""
    path = tmp_path / "audit.db"
    sink = await open_indexed_sink(path)
    await append_holders(sink, 1, 10)
    await sink.close()
    wal = Path(f"{path}-wal")
    backup = path.read_bytes(), wal.read_bytes() if wal.exists() else b""
    sink = await open_indexed_sink(path)
    for i in range(11, 21):
        await sink.append(chain_event(i, holder_hmac=HOLDER_B))
    await sink.index_holders()                                       # watermark 20
    await sink.close()
    path.write_bytes(backup[0])
    Path(f"{path}-wal").write_bytes(backup[1])
    Path(f"{path}-shm").unlink(missing_ok=True)
    sink = await open_indexed_sink(path)
    try:
        await append_holders(sink, 11, 25)                           # 15 and 20 are HOLDER_A's now
        assert await sink.index_holders() == 5                       # 21..25 only: 11..20 stay stale
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == [25, 10, 5]   # 15, 20 lost
        report = await verify_chain(sink, CHAIN_PUBLIC)
        assert (report.ok, report.first_bad_seq) == (False, 15)
    finally:
        await sink.close()
    for suffix in ("-holders", "-holders-wal", "-holders-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    sink = await open_indexed_sink(path)
    try:
        assert await sink.index_holders() == 25
        assert [r.seq for r in await sink.search(AuditQuery(holder_hmac=HOLDER_A))] == [25, 20, 15, 10, 5]
        assert (await verify_chain(sink, CHAIN_PUBLIC)).ok
    finally:
        await sink.close()


# --- anchors before the pruned start --------------------------------------------------------------------
def test_anchors_before_the_pruned_start_are_not_reported_as_found(tmp_path: Path) -> None:
    path = make_chain(tmp_path)
    old, kept = stored_checkpoint(path, 5), stored_checkpoint(path, 10)
    code, out, _ = verify_cli(path, tmp_path, "--anchor", old, "--anchor", kept)
    assert code == 0 and "2 anchor(s) found in the chain" in out               # control
    code, out, _ = cli("prune", "--store", f"sqlite:{path}", "--before", "2030-01-01T00:00:00Z")
    assert code == 0 and "checkpoint 10" in out
    code, out, _ = verify_cli(path, tmp_path, "--anchor", old, "--anchor", kept)
    assert code == 0, out
    assert "1 anchor(s) found in the chain" in out
    assert "1 anchor(s) name records before the pruned start: not checked" in out


# --- which keys may sign a checkpoint -----------------------------------------------------------------------
def test_checkpoint_signed_by_another_key_of_the_gateway_key_set_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    audit_kid = key_id("audit", AUDIT_KEY.public_key())
    asyncio.run(_fill(path, 1, 12, AUDIT_KEY, audit_kid))
    receipt_kid = key_id("receipt", RECEIPT_KEY.public_key())   # an Ed25519 receipt key, as the gateway allows
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [public_jwk(RECEIPT_KEY.public_key(), receipt_kid),
                                         public_jwk(AUDIT_KEY.public_key(), audit_kid)]}))
    code, out, _ = cli("verify", "--store", f"sqlite:{path}", "--key", str(keys))
    assert code == 0 and "OK: 12 records" in out                                # control: /v1/keys as saved
    # the tail rewritten and re-signed with the receipt key, under a checkpoint typ and the receipt key's kid
    (h10,) = sql(path, "SELECT hash FROM audit_records WHERE seq = 10")[0]
    forged = CheckpointSigner(RECEIPT_KEY, receipt_kid).sign(10, h10, T0)
    tamper(path, f"UPDATE audit_checkpoints SET jws = '{forged.jws}', time = '{forged.time}', kid = '{receipt_kid}' "
                 "WHERE seq = 10")
    code, out, _ = cli("verify", "--store", f"sqlite:{path}", "--key", str(keys))
    assert code == 1 and out.startswith(f"BROKEN at seq 10: checkpoint at seq 10 signed by key {receipt_kid}, "
                                        f"you gave {audit_kid}"), out   # session 21: the keys named


def test_receipt_signed_by_the_audit_checkpoint_key_is_refused() -> None:
    audit_kid = key_id("audit", AUDIT_KEY.public_key())
    genuine = ReceiptSigner(RECEIPT_KEY, key_id("receipt", RECEIPT_KEY.public_key()), "gw-test")
    keyset = {"keys": [genuine.jwk(), public_jwk(AUDIT_KEY.public_key(), audit_kid)]}
    kw = dict(request_body=BODY, verdict="valid", reasons=[], item=None, time=T0, licence_ids=["lic-1"])
    assert verify_receipt(genuine.sign(**kw), keyset, request_body=BODY)["verdict"] == "valid"   # control
    forged = ReceiptSigner(AUDIT_KEY, audit_kid, "gw-test").sign(**kw)
    with pytest.raises(RequestRejected) as exc:
        verify_receipt(forged, keyset, request_body=BODY)
    assert "unknown kid" in (exc.value.detail or "")


# --- receipts: what binds them (sound before this review) -------------------------------------------------------
def test_receipt_binds_its_body_and_its_leaf_index_in_every_tree_shape() -> None:
    s = ReceiptSigner(RECEIPT_KEY, "test-receipt-1", "gw-test")
    bodies = [b'{"n":%d}' % i for i in range(5)]
    drafts = [s.draft(request_digest=request_digest(b), request_id=f"req-{i}", verdict="valid", reasons=[], item=None,
                      time_text="2025-03-01T08:00:00.000000Z", iat=int(T0.timestamp()), licence_ids=[f"lic-{i}"])
              for i, b in enumerate(bodies)]
    receipts = s.seal(drafts, 1, 5, T0)
    for i, r in enumerate(receipts):
        assert verify_receipt(r, jwks(s), request_body=bodies[i])["batch"]["index"] == i
        with pytest.raises(RequestRejected):   # the receipt of request i is no proof for request i+1's body
            verify_receipt(r, jwks(s), request_body=bodies[(i + 1) % 5])
    # duplicated leaves, odd levels promoted: each proof folds to the root at its own index only
    for n in range(1, 18):
        leaves = [leaf_hash(b"c%d" % (i % 3)) for i in range(n)]
        levels = merkle_levels(leaves)
        for i in range(n):
            path = inclusion_proof(levels, i)
            assert root_from_proof(leaves[i], i, n, path) == levels[-1][0]
            for j in set(range(n)) - {i}:
                try:
                    folded = root_from_proof(leaves[i], j, n, path)
                except ValueError:
                    continue
                assert folded != levels[-1][0] or leaves[j] == leaves[i]   # only a duplicate of the same claims


# --- edits that change no visible character (sound before this review) ------------------------------------------
@pytest.mark.parametrize("statement", [
    "UPDATE audit_records SET licence_id = 'lic-3' || char(769) WHERE seq = 3",     # a combining accent
    "UPDATE audit_records SET partner = '' WHERE seq = 3",                           # NULL / empty
    "UPDATE audit_records SET operator = '' WHERE seq = 3",
    """UPDATE audit_records SET extra = '{"i":"3"}' WHERE seq = 3""",                # a number as a string
    """UPDATE audit_records SET extra = '{"i":3.0}' WHERE seq = 3""",
    "UPDATE audit_records SET time = '2025-03-01T08:03:00.000000+00:00' WHERE seq = 3",
], ids=["unicode-combining", "partner-empty", "operator-null-to-empty", "number-as-string", "int-as-float",
        "time-respelt"])
def test_invisible_edits_are_named(tmp_path: Path, statement: str) -> None:
    path = make_chain(tmp_path)
    assert verify_cli(path, tmp_path)[0] == 0
    tamper(path, statement)
    code, out, _ = verify_cli(path, tmp_path)
    assert code == 1 and out.startswith("BROKEN at seq 3: record 3 does not match its hash"), out


# --- search by holder code without putting it in the process list ----------------------------------------------
def test_search_reads_the_holder_code_from_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = make_sqlite(tmp_path)
    monkeypatch.setenv("GATEWAY_AUDIT_HMAC_KEY", HMAC_KEY.hex())
    code, out, err = cli("search", "--store", f"sqlite:{db}", "--holder-type", "111", "--holder-code", CITIZEN)
    assert code == 0 and [orjson.loads(line)["seq"] for line in out.splitlines()] == [30, 20, 10]   # control
    assert CITIZEN not in out + err and "note: a holder code on the command line" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(CITIZEN + "\n"))
    code, out, err = cli("search", "--store", f"sqlite:{db}", "--holder-type", "111", "--holder-code", "-")
    assert code == 0, err
    assert [orjson.loads(line)["seq"] for line in out.splitlines()] == [30, 20, 10]
    assert CITIZEN not in out + err and "note:" not in err


# --- PostgreSQL: the same three changes -----------------------------------------------------------------------------
async def test_postgres_verify_snapshot_prune_cut_and_unsilenced_checkpoint(pg_dsn: str) -> None:
    schema, clock = new_schema_name(), Clock(CHAIN_T0)
    config = GroupCommitConfig(checkpoint_every=10)
    sink = await PostgresAuditSink.open(pg_dsn, schema=schema, signer=CheckpointSigner(CHAIN_KEY, "test-audit-1"),
                                        clock=clock, config=config)
    store = await PostgresAuditSink.open(pg_dsn, schema=schema)
    try:
        await _clock_stepped_back_at_a_checkpoint(sink, clock)

        async def appends() -> None:
            for i in range(41, 44):
                await sink.append(chain_event(i, time=CHAIN_T0 + timedelta(days=i)))

        _meanwhile(store, appends)
        report = await verify_chain(store, CHAIN_PUBLIC, batch=7)
        assert report.ok and report.records_checked == 40, report.problem
        result = await sink.prune(CHAIN_T0 + timedelta(days=15))
        assert (result.deleted, result.start_seq) == (10, 10)
        conn = await __import__("asyncpg").connect(pg_dsn)
        try:
            await conn.execute(f"CREATE FUNCTION {schema}.hush() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                               "NEW.last_checkpoint_seq := NEW.head_seq; RETURN NEW; END $$")
            await conn.execute(f"CREATE TRIGGER hush BEFORE UPDATE ON {schema}.audit_state FOR EACH ROW "
                               f"EXECUTE FUNCTION {schema}.hush()")
        finally:
            await conn.close()
        await sink.append(chain_event(44, time=CHAIN_T0 + timedelta(days=44)))
        cp = await sink.checkpoint()
        assert cp is not None and cp.seq == 44 and await sink.checkpoint() is None
        assert (await verify_chain(store, CHAIN_PUBLIC)).ok
    finally:
        await store.close()
        await sink.close()
        await drop_schema(pg_dsn, schema)

