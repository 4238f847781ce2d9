"""Tampering with the audit database directly, caught by ``python -m gateway audit verify``.

The records are written by the gateway itself (verify answers over HTTP, SQLite or
PostgreSQL backend, a signed checkpoint every 5 records); then one SQL statement edits,
deletes or inserts records behind the gateway's back, as an insider with database access
would. The CLI must exit 1 and name the first bad record.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.__main__ import main
from gateway.app import create_app

from .conftest import NOW
from .pg_fixture import drop_schema, new_schema_name, pg_dsn  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
KEY = str(REPO / "certs" / "audit" / "checkpoint.test-public.pem")
RECORDS = 12
COLS = "seq, prev_hash, hash, kind, time, request_id, partner, operator, item_code, region, licence_id, verdict, " \
       "reasons, holder_hmac, extra"

#: (name, SQL run against the tables, the record the CLI must name)
TAMPERING = [
    ("edit_turns_a_rejected_licence_valid", ["UPDATE {t}audit_records SET verdict = 'valid' WHERE seq = 4"], 4),
    ("edit_rewrites_the_partner", ["UPDATE {t}audit_records SET partner = 'someone-else' WHERE seq = 9"], 9),
    ("delete_hides_one_check", ["DELETE FROM {t}audit_records WHERE seq = 7"], 7),
    ("delete_the_tail_and_roll_the_head_back", [
        "DELETE FROM {t}audit_records WHERE seq > 10",
        "UPDATE {t}audit_state SET head_seq = 10, head_hash = (SELECT hash FROM {t}audit_records WHERE seq = 10)"], 11),
    ("insert_a_forged_record_past_the_head", [
        f"INSERT INTO {{t}}audit_records ({COLS}) SELECT 13, hash, hash, kind, time, 'forged', partner, operator, "
        "item_code, region, licence_id, 'valid', reasons, holder_hmac, extra FROM {t}audit_records WHERE seq = 12"], 13),
    ("insert_a_forged_record_in_the_middle_by_renumbering", [
        "UPDATE {t}audit_records SET seq = seq + 1000 WHERE seq >= 6",
        "UPDATE {t}audit_records SET seq = seq - 999 WHERE seq >= 1000",
        f"INSERT INTO {{t}}audit_records ({COLS}) SELECT 6, hash, hash, kind, time, 'forged', partner, operator, "
        "item_code, region, licence_id, 'valid', reasons, holder_hmac, extra FROM {t}audit_records WHERE seq = 5"], 6),
]


def write_records(world, settings) -> None:
    """RECORDS verify answers through the gateway (every third licence expired)."""

    async def run() -> None:
        app = create_app(world.services(settings=settings))
        async with TestClient(TestServer(app), headers=world.auth()) as client:
            for i in range(RECORDS):
                case = "expired" if i % 3 == 0 else "valid"
                body = world.simulator.issue("330500", "id_card", case, NOW).body()
                resp = await client.post("/v1/licences/verify", json=body, headers={"X-Request-Id": f"tamper-{i}"})
                assert resp.status == 200, await resp.text()

    asyncio.run(run())


def cli_verify(capsys, *store: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify", "--store", *store, "--key", KEY])
    return code, capsys.readouterr().out


def run_case(capsys, store: tuple[str, ...], execute: Callable[[list[str]], None], statements: list[str],
             named: int) -> None:
    code, out = cli_verify(capsys, *store)
    assert code == 0 and out.startswith(f"OK: {RECORDS} records"), out
    execute(statements)
    code, out = cli_verify(capsys, *store)
    assert code == 1, out
    assert out.startswith(f"BROKEN at seq {named}:"), out


@pytest.mark.parametrize("name,statements,named", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_sqlite_tampering_is_named_by_the_cli(world, tmp_path, capsys, name, statements, named):
    import sqlite3

    db = tmp_path / "audit.sqlite3"
    write_records(world, dataclasses.replace(world.settings, audit_backend="sqlite", audit_path=str(db),
                                             audit_checkpoint_every=5))

    def execute(sqls: list[str]) -> None:
        conn = sqlite3.connect(db)
        try:
            with conn:
                for sql in sqls:
                    conn.execute(sql.format(t=""))
        finally:
            conn.close()

    run_case(capsys, (f"sqlite:{db}",), execute, statements, named)


@pytest.mark.parametrize("name,statements,named", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_postgres_tampering_is_named_by_the_cli(world, pg_dsn, capsys, name, statements, named):  # noqa: F811
    schema = new_schema_name()
    settings = dataclasses.replace(world.settings, audit_backend="postgres", audit_dsn=pg_dsn, audit_pg_schema=schema,
                                   audit_checkpoint_every=5)

    def execute(sqls: list[str]) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(pg_dsn)
            try:
                async with conn.transaction():
                    for sql in sqls:
                        await conn.execute(sql.format(t=f"{schema}."))
            finally:
                await conn.close()

        asyncio.run(run())

    try:
        write_records(world, settings)
        run_case(capsys, (pg_dsn, "--pg-schema", schema), execute, statements, named)
    finally:
        asyncio.run(drop_schema(pg_dsn, schema))
