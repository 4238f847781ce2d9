"""``python -m gateway audit verify|search|prune`` through audit_cli(argv)."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit import AuditEvent, CheckpointSigner, GroupCommitConfig, SqliteAuditSink, audit_cli, holder_hmac
from gateway.audit.jws import public_jwk
from gateway.audit.postgres import PostgresAuditSink
from tests.pg_fixture import TEST_AUDIT_KEY_SEED, drop_schema, new_schema_name, pg_dsn  # noqa: F401 - fixture

AUDIT_KEY = Ed25519PrivateKey.from_private_bytes(TEST_AUDIT_KEY_SEED)   # TEST key
HMAC_KEY = b"test-holder-hmac-key-0123456789"                          # TEST key
CITIZEN = "330502199001010014"                                          # synthetic
T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def events(n: int) -> list[AuditEvent]:
    return [AuditEvent(kind="verify", time=T0 + timedelta(minutes=i), request_id=f"r{i}", partner=f"p{i % 2}",
                       item_code="ITEM-1", verdict="valid",
                       holder_hmac=holder_hmac(HMAC_KEY, "111", CITIZEN) if i % 10 == 0 else None)
            for i in range(1, n + 1)]


async def fill(sink: SqliteAuditSink | PostgresAuditSink, n: int) -> None:
    for e in events(n):
        await sink.append(e)
    await sink.close()


def make_sqlite(tmp: Path, n: int = 35) -> Path:
    path = tmp / "audit.db"

    async def go() -> None:
        sink = await SqliteAuditSink.open(path, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"),
                                          clock=lambda: T0 + timedelta(days=1),
                                          config=GroupCommitConfig(checkpoint_every=10))
        await fill(sink, n)

    asyncio.run(go())
    return path


def pem(tmp: Path) -> Path:
    p = tmp / "audit-public.pem"
    p.write_bytes(AUDIT_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return p


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = audit_cli(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_verify_intact_sqlite_chain_prints_progress_and_ok(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path)
    code, out, err = run("verify", "--store", f"sqlite:{db}", "--key", str(pem(tmp_path)),
                         "--batch", "7", "--progress-every", "10")
    assert code == 0, err
    assert "OK: 35 records (seq 1..35), 3 signed checkpoints" in out
    assert "checked 10 of 35 records" in err and "checked 30 of 35 records" in err


def test_verify_names_the_first_bad_record_of_a_tampered_database(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_records SET verdict = 'invalid' WHERE seq = 23")
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", str(pem(tmp_path)))
    assert code == 1
    assert "BROKEN at seq 23" in out and "22 records verified before it" in out


def test_verify_accepts_a_jwks_key_file(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path)
    keyfile = tmp_path / "audit-keys.json"
    keyfile.write_text(json.dumps({"keys": [public_jwk(AUDIT_KEY.public_key(), "test-audit-1")]}))
    assert run("verify", "--store", f"sqlite:{db}", "--key", str(keyfile))[0] == 0
    keyfile.write_text(json.dumps({"keys": [public_jwk(Ed25519PrivateKey.generate().public_key(), "test-audit-1")]}))
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", str(keyfile))
    assert code == 1 and "signature does not verify" in out


def test_search_by_holder_code_uses_the_hmac_key_from_the_environment(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = make_sqlite(tmp_path)
    monkeypatch.setenv("GATEWAY_AUDIT_HMAC_KEY", HMAC_KEY.hex())
    code, out, _ = run("search", "--store", f"sqlite:{db}", "--holder-type", "111", "--holder-code", CITIZEN)
    assert code == 0
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == [30, 20, 10]
    assert CITIZEN not in out


def test_search_by_partner_and_time_window(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path)
    code, out, _ = run("search", "--store", f"sqlite:{db}", "--partner", "p1",
                       "--since", "2025-03-01T00:05:00Z", "--until", "2025-03-01T00:10:00Z")
    assert code == 0
    assert [orjson.loads(line)["seq"] for line in out.splitlines()] == [9, 7, 5]


def test_prune_then_verify_from_the_cli(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path)
    code, out, _ = run("prune", "--store", f"sqlite:{db}", "--before", "2025-03-03T00:00:00Z")
    assert code == 0 and "pruned 30 records" in out
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", str(pem(tmp_path)))
    assert code == 0 and "OK: 5 records (seq 31..35)" in out


def test_missing_database_and_bad_usage_exit_2(tmp_path: Path) -> None:
    code, _, err = run("verify", "--store", f"sqlite:{tmp_path / 'nope.db'}", "--key", str(pem(tmp_path)))
    assert code == 2 and "no audit database" in err
    assert run("frobnicate")[0] == 2
    code, _, err = run("search", "--store", f"sqlite:{make_sqlite(tmp_path)}", "--holder-code", CITIZEN)
    assert code == 2 and "GATEWAY_AUDIT_HMAC_KEY" in err


def test_verify_postgres_chain_by_dsn(pg_dsn: str, tmp_path: Path) -> None:
    schema = new_schema_name()

    async def go() -> None:
        sink = await PostgresAuditSink.open(pg_dsn, schema=schema, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"),
                                            config=GroupCommitConfig(checkpoint_every=10))
        await fill(sink, 25)

    try:
        asyncio.run(go())
        code, out, err = run("verify", "--store", pg_dsn, "--pg-schema", schema, "--key", str(pem(tmp_path)))
        assert code == 0, err
        assert "OK: 25 records" in out
    finally:
        asyncio.run(drop_schema(pg_dsn, schema))
