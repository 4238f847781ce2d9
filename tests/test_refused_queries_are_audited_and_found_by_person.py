"""Refused federated queries leave an audit record; a search by person finds the records about them.

Before (session 19's "Known and left"):

* a ``POST /v1/licences/query`` refused before any region was asked -- a partner asking about someone
  in a region or for an item it was not granted (403), an invalid holder code or use cause (400), an
  unknown item (404) -- left no record at all: the attempt an auditor looks for was invisible;
* ``audit search --holder-code`` matched a record's holder only. An item check's records name the
  licence's holder and keep the applicant in ``extra.applicant``, so a check in which the applicant
  presented a licence held by someone else (another person's, or as legal representative a company's)
  was not found by the applicant, on SQLite (the deferred holder index keyed holders only), PostgreSQL
  and the memory store alike.

Now a refused query is recorded (kind ``query``, verdict ``refused``, its reason code, the holder as
its HMAC) before the refusal is sent, 503 AUDIT_UNAVAILABLE if it cannot be (as a verify refused for
a licence's region); and a search by holder matches the record's holder or its applicant: the SQLite
index keys both (an index of the older kind is emptied at open and rebuilt; ``audit verify`` checks
the applicants' entries too), PostgreSQL has an expression index on the applicant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import shutil
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from gateway.app import create_app
from gateway.audit import AuditEvent, AuditQuery, CheckpointSigner, GroupCommitConfig, SqliteAuditSink, audit_cli
from gateway.audit import holder_hmac, verify_chain
from gateway.audit.postgres import PostgresAuditSink
from gateway.audit_wiring import AUDIT, TEST_AUDIT_HMAC_KEY_HEX
from tests.conftest import NOW
from tests.pg_fixture import drop_schema, new_schema_name, pg_dsn  # noqa: F401 - fixture
from tests.test_audit_chain import AUDIT_KEY, HMAC_KEY, PUBLIC, T0, Clock
from tests.test_query_federated import HOME, SECOND, body, citizen
from tests.test_query_federated import regions_up  # noqa: F401  (fixture)

KEY = bytes.fromhex(TEST_AUDIT_HMAC_KEY_HEX)
HUZHOU = "330500"
QUERIER = '''# TEST partner that may query Hangzhou for item KS-009 only (this test run only)
client_id = "narrow-querier"
name_zh = "受限查询方（测试）"
scopes = ["licences:query"]
items = ["KS-009"]
regions = ["330100"]

[key]
public_key_pem = "narrow-querier.test-public.pem"

[rate_limit]
requests_per_second = 1000
burst = 2000
'''


def records(app) -> list[dict[str, Any]]:
    return [r.as_dict() for _, r in sorted(app[AUDIT].sink.table.items())]


def of_request(app, rid: str) -> list[dict[str, Any]]:
    return [r for r in records(app) if r["request_id"] == rid]


def wrong_check_digit(code: str) -> str:
    return code[:-1] + ("1" if code[-1] != "1" else "2")


def querier_token(world, tmp_path: Path) -> tuple[Any, str]:
    from gateway.auth import demo_token, load_partners  # noqa: PLC0415

    src = Path(world.settings.partners_dir)
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(src / "demo-partner.test-public.pem", tmp_path / "narrow-querier.test-public.pem")
    shutil.copy(src / "demo-partner.test-private.pem", tmp_path / "narrow-querier.test-private.pem")
    (tmp_path / "narrow-querier.toml").write_text(QUERIER, encoding="utf-8")
    token = demo_token(tmp_path, client_id="narrow-querier", gateway_key=world.gateway_key,
                       token_endpoint=world.settings.token_endpoint_url, now=NOW.timestamp())["access_token"]
    return load_partners(tmp_path), token


@pytest.fixture
async def narrow(world, aiohttp_client, regions_up, tmp_path):
    rs, template = regions_up
    partners, token = querier_token(world, tmp_path)
    app = create_app(world.services(partners=partners,
                                    settings=dataclasses.replace(world.settings, upstream_base_url=template)))
    client = await aiohttp_client(app, headers={"Authorization": f"Bearer {token}"})
    return rs, app, client


def asked(rs) -> int:
    return sum(s.requests for s in rs.stats.values())


CODE = citizen(seq=701)
UC = {"use_cause": "个体工商户设立登记，核验申请人身份"}   # body()'s, recorded as when answered
# (case, body, status, reason code, holder hashed as, item recorded, extra expected besides refused / status)
REFUSALS = [
    ("region not granted", body(CODE, [SECOND]), 403, "FORBIDDEN", CODE, "KS-009", {"regions": SECOND, **UC}),
    ("item not granted", body(CODE, [HOME], item="KS-043"), 403, "FORBIDDEN", CODE, "KS-043", {"regions": HOME, **UC}),
    ("holder code with a wrong check digit", body(wrong_check_digit(CODE), [HOME]), 400, "APPLICANT_INVALID",
     wrong_check_digit(CODE), "KS-009", {"regions": HOME, **UC}),
    ("use cause holding an ID number", body(CODE, [HOME], use_cause=f"核验 {citizen(seq=702)}"), 400,
     "BAD_REQUEST", CODE, "KS-009", {"regions": HOME}),    # the use cause is kept only as it would be answered
    ("unknown item", body(CODE, [HOME], item="NO-SUCH-ITEM"), 404, "NOT_FOUND", CODE, None, {"regions": HOME, **UC}),
    ("unknown region", body(CODE, [HOME, "999999"]), 400, "BAD_REQUEST", CODE, "KS-009", {"regions": HOME, **UC}),
]


@pytest.mark.parametrize("case,payload,status,code,holder,item,extra", REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refused_query_leaves_a_record_of_who_asked_about_whom_and_why(narrow, case, payload, status, code,
                                                                            holder, item, extra):
    rs, app, client = narrow
    rid = f"refused-{abs(hash(case))}"
    resp = await client.post("/v1/licences/query", json=payload, headers={"X-Request-Id": rid})
    problem = await resp.json()
    assert (resp.status, problem["code"]) == (status, code), problem
    assert asked(rs) == 0                                     # refused before any region was asked
    [rec] = of_request(app, rid)
    assert (rec["kind"], rec["verdict"], rec["reasons"]) == ("query", "refused", [code])
    assert rec["partner"] == "narrow-querier" and rec["item_code"] == item
    assert rec["holder_hmac"] == holder_hmac(KEY, "111", holder)
    assert rec["extra"] == {"refused": "request", "status": status, **extra}
    text = orjson.dumps(rec).decode()
    assert holder not in text and citizen(seq=702) not in text   # never a code in clear


async def test_refused_body_that_is_not_json_is_recorded_without_a_holder(narrow):
    rs, app, client = narrow
    resp = await client.post("/v1/licences/query", data=b'{"holder": ', headers={
        "Content-Type": "application/json", "X-Request-Id": "not-json"})
    assert resp.status == 400
    [rec] = of_request(app, "not-json")
    assert (rec["verdict"], rec["reasons"], rec["holder_hmac"], rec["item_code"]) == \
        ("refused", ["BAD_REQUEST"], None, None)


async def test_allowed_query_is_still_answered_and_recorded_as_before(narrow):
    rs, app, client = narrow
    resp = await client.post("/v1/licences/query", json=body(CODE, [HOME]), headers={"X-Request-Id": "allowed"})
    assert resp.status == 200 and asked(rs) == 1
    rec, *per_licence = of_request(app, "allowed")
    assert rec["verdict"] in ("answered", "no-licence") and "refused" not in rec["extra"]
    assert {r["holder_hmac"] for r in (rec, *per_licence)} == {holder_hmac(KEY, "111", CODE)}


async def test_refusal_is_not_sent_without_its_record(narrow):
    """As a verify refused for a licence's region: 503 AUDIT_UNAVAILABLE, not the 403 (which names the
    region), when the refusal cannot be recorded; nothing of the request in the problem."""
    rs, app, client = narrow
    app[AUDIT].sink.fail_with = OSError("disk full")
    try:
        resp = await client.post("/v1/licences/query", json=body(CODE, [SECOND]), headers={"X-Request-Id": "down"})
        problem = await resp.json()
    finally:
        app[AUDIT].sink.fail_with = None
    assert resp.status == 503 and problem["code"] == "AUDIT_UNAVAILABLE"
    assert SECOND not in problem["detail"] and CODE not in problem["detail"]
    assert of_request(app, "down") == [] and asked(rs) == 0
    resp = await client.post("/v1/licences/query", json=body(CODE, [SECOND]), headers={"X-Request-Id": "up"})
    assert resp.status == 403 and len(of_request(app, "up")) == 1


async def test_query_without_the_query_scope_is_recorded_and_a_rate_limited_one_is_not(world, aiohttp_client):
    """``restricted-partner`` (TEST: licences:verify and items:read, 2/s burst 3) asks for a query: the auth
    middleware's 403 leaves a record naming the partner (the body is not read: no holder). Past its burst
    the 429s leave none: the rate limit bounds what a partner can make the gateway write."""
    app = create_app(world.services())
    client = await aiohttp_client(app, headers=world.auth(client_id="restricted-partner"))
    statuses = []
    for i in range(5):
        resp = await client.post("/v1/licences/query", json=body(CODE, [HOME]), headers={"X-Request-Id": f"scope-{i}"})
        statuses.append(resp.status)
    assert statuses[:3] == [403, 403, 403] and 429 in statuses[3:]
    for i, status in enumerate(statuses):
        recs = of_request(app, f"scope-{i}")
        if status == 429:
            assert recs == []
            continue
        [rec] = recs
        assert (rec["kind"], rec["verdict"], rec["reasons"], rec["partner"], rec["holder_hmac"]) == \
            ("query", "refused", ["FORBIDDEN"], "restricted-partner", None)
        assert rec["extra"] == {"refused": "scope", "status": 403}
    # control: the same partner's refusal on a route other than the query is not the query's record
    resp = await client.post("/v1/items/KS-043/check", json={}, headers={"X-Request-Id": "scope-check"})
    assert resp.status in (403, 429) and of_request(app, "scope-check") == []


async def test_query_scope_refusal_is_not_sent_without_its_record(world, aiohttp_client):
    app = create_app(world.services())
    client = await aiohttp_client(app, headers=world.auth(client_id="restricted-partner"))
    app[AUDIT].sink.fail_with = OSError("disk full")
    resp = await client.post("/v1/licences/query", json=body(CODE, [HOME]), headers={"X-Request-Id": "scope-down"})
    assert resp.status == 503 and (await resp.json())["code"] == "AUDIT_UNAVAILABLE"


# --- search by person: the applicant of an item check is found --------------------------------------
def cli_search(db: Path, code: str) -> list[dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO(code + "\n")
    try:
        rc = audit_cli(["search", "--store", f"sqlite:{db}", "--holder-type", "111", "--holder-code", "-"],
                       out=out, err=err)
    finally:
        sys.stdin = stdin
    assert rc == 0, err.getvalue()
    assert code not in out.getvalue()
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


async def test_search_by_person_finds_their_checks_and_refused_queries_sqlite_end_to_end(
        world, aiohttp_client, regions_up, tmp_path, monkeypatch):
    rs, template = regions_up
    db = tmp_path / "audit.sqlite3"
    (tmp_path / "partners").mkdir()
    partners, token = querier_token(world, tmp_path / "partners")
    settings = dataclasses.replace(world.settings, audit_backend="sqlite", audit_path=str(db), audit_writer="thread",
                                   upstream_base_url=template)
    app = create_app(world.services(settings=settings, partners=partners))
    client = await aiohttp_client(app)
    demo = world.auth()
    applicant = world.simulator.person(HUZHOU)
    stranger = world.simulator.issue(HUZHOU, "id_card", "valid", NOW)     # someone else's ID card
    assert stranger.licence.holder_code != applicant[1]
    # 1. an item check: the applicant presents another person's licence (HOLDER_MISMATCH)
    resp = await client.post("/v1/items/KS-043/check", headers={**demo, "X-Request-Id": "check-1"},
                             json={"applicant": {"code_type": "111", "code": applicant[1]},
                                   "licences": [stranger.body()]})
    assert resp.status == 200
    # 2. a query about the applicant refused: a region the partner was not granted
    resp = await client.post("/v1/licences/query", json=body(applicant[1], [SECOND]),
                             headers={"Authorization": f"Bearer {token}", "X-Request-Id": "query-refused"})
    assert resp.status == 403
    # 3. an answered query about the applicant (its records already named them as holder)
    resp = await client.post("/v1/licences/query", json=body(applicant[1], [HOME]),
                             headers={**demo, "X-Request-Id": "query-answered"})
    assert resp.status == 200
    # control: a verify of the stranger's licence is not the applicant's
    resp = await client.post("/v1/licences/verify", json=stranger.body(), headers={**demo, "X-Request-Id": "other"})
    assert resp.status == 200
    await client.close()

    monkeypatch.setenv("GATEWAY_AUDIT_HMAC_KEY", TEST_AUDIT_HMAC_KEY_HEX)
    expected = ["query-answered", "query-refused", "check-1"]   # newest first
    found = await asyncio.to_thread(cli_search, db, applicant[1])   # before the index ran: the tail scan
    assert [r["request_id"] for r in found] == expected
    check = found[-1]
    assert check["holder_hmac"] == holder_hmac(KEY, "111", stranger.licence.holder_code)
    assert check["extra"]["applicant"] == holder_hmac(KEY, "111", applicant[1])
    sink = await SqliteAuditSink.open(db)
    try:
        assert await sink.index_holders() > 0
        seqs = {r.body["request_id"]: r.seq for r in await sink.read_records(0, 100)}
        (upto,) = sqlite3.connect(f"{db}-holders").execute("SELECT indexed_seq FROM holder_keys_state").fetchone()
        assert upto == max(seqs.values())
    finally:
        await sink.close()
    found = await asyncio.to_thread(cli_search, db, applicant[1])   # from the index now
    assert [r["request_id"] for r in found] == expected
    assert [r["request_id"] for r in await asyncio.to_thread(cli_search, db, stranger.licence.holder_code)] == \
        ["other", "check-1"]


# --- the stores, directly --------------------------------------------------------------------------
PERSON = holder_hmac(HMAC_KEY, "111", "330502199001010014")       # synthetic
COMPANY = holder_hmac(HMAC_KEY, "001", "91330500MA2B00000R")      # synthetic
OTHER = holder_hmac(HMAC_KEY, "111", "330502199001010030")        # synthetic


def trail_events() -> list[AuditEvent]:
    """1: the person's own licence; 2: the company's licence, the person its legal representative applying;
    3: someone else's check; 4: a refused query about the person; 5: a check whose applicant is unknown."""
    def ev(i: int, kind: str, holder: str | None, **extra: Any) -> AuditEvent:
        return AuditEvent(kind=kind, time=T0 + timedelta(minutes=i), request_id=f"r{i}", partner="p",
                          verdict="refused" if kind == "query" else "valid", holder_hmac=holder, extra=extra)
    return [ev(1, "check", PERSON, applicant=PERSON, outcome="complete"),
            ev(2, "check", COMPANY, applicant=PERSON, outcome="complete"),
            ev(3, "check", OTHER, applicant=OTHER, outcome="complete"),
            ev(4, "query", PERSON, refused="request", status=403),
            ev(5, "check", COMPANY, applicant=None, outcome="incomplete")]


async def search(sink: Any, h: str) -> list[int]:
    return [r.seq for r in await sink.search(AuditQuery(holder_hmac=h))]


async def test_sqlite_index_keys_the_applicant_and_verify_checks_those_entries(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    sink = await SqliteAuditSink.open(db, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"), clock=Clock(T0),
                                      config=GroupCommitConfig(checkpoint_every=5))
    try:
        for e in trail_events():
            await sink.append(e)
        assert await search(sink, PERSON) == [4, 2, 1]          # the tail scan
        assert await search(sink, COMPANY) == [5, 2]
        assert await sink.index_holders() == 5
        assert await search(sink, PERSON) == [4, 2, 1]          # the index
        assert (await verify_chain(sink, PUBLIC)).ok
    finally:
        await sink.close()
    key = PERSON[:24]
    with sqlite3.connect(f"{db}-holders") as c:
        assert c.execute("SELECT seq FROM holder_keys WHERE hkey = ? ORDER BY seq", (key,)).fetchall() == \
            [(1,), (2,), (4,)]
        c.execute("DELETE FROM holder_keys WHERE hkey = ? AND seq = 2", (key,))   # the applicant's entry
    sink = await SqliteAuditSink.open(db)
    try:
        assert await search(sink, PERSON) == [4, 1]             # the index was edited ...
        report = await verify_chain(sink, PUBLIC)
        assert not report.ok and report.first_bad_seq == 2      # ... and verify says so
    finally:
        await sink.close()


async def test_sqlite_index_of_the_older_kind_is_rebuilt_at_open(tmp_path: Path) -> None:
    """An index written before applicants were keyed (user_version 0) covers record 2 by its holder only:
    kept, a search by the person would miss it below the watermark for good. It is emptied and rebuilt."""
    db = tmp_path / "audit.db"
    sink = await SqliteAuditSink.open(db, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"), clock=Clock(T0))
    try:
        for e in trail_events():
            await sink.append(e)
        await sink.index_holders()
    finally:
        await sink.close()
    with sqlite3.connect(f"{db}-holders") as c:   # as the previous version left it
        c.execute("DELETE FROM holder_keys WHERE seq = 2 AND hkey = ?", (PERSON[:24],))
        c.execute("PRAGMA user_version = 0")
    sink = await SqliteAuditSink.open(db)
    try:
        assert await search(sink, PERSON) == [4, 2, 1]
        assert await sink.index_holders() == 5
        assert await search(sink, PERSON) == [4, 2, 1] and (await verify_chain(sink, PUBLIC)).ok
    finally:
        await sink.close()
    with sqlite3.connect(f"{db}-holders") as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] >= 1


async def test_memory_store_search_finds_the_applicant() -> None:
    from gateway.audit import MemoryAuditSink  # noqa: PLC0415

    sink = await MemoryAuditSink.open(clock=Clock(T0))
    try:
        for e in trail_events():
            await sink.append(e)
        assert await search(sink, PERSON) == [4, 2, 1]
    finally:
        await sink.close()


async def test_postgres_search_finds_the_applicant_through_its_index(pg_dsn: str) -> None:
    from gateway.audit.postgres import _APPLICANT_SQL, _HAS_APPLICANT  # noqa: PLC0415

    schema = new_schema_name()
    sink = await PostgresAuditSink.open(pg_dsn, schema=schema, signer=CheckpointSigner(AUDIT_KEY, "test-audit-1"),
                                        clock=Clock(T0))
    try:
        for e in trail_events():
            await sink.append(e)
        assert await search(sink, PERSON) == [4, 2, 1]
        assert await search(sink, COMPANY) == [5, 2]
        assert await search(sink, OTHER) == [3]
        found = await sink.search(AuditQuery(holder_hmac=PERSON, partner="p", since=T0 + timedelta(minutes=2)))
        assert [r.seq for r in found] == [4, 2]
        assert (await verify_chain(sink, PUBLIC)).ok
        conn = await asyncpg.connect(pg_dsn)
        try:   # both arms of the OR have an index (a search by person is no scan of the whole table)
            await conn.execute("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN SELECT seq FROM {schema}.audit_records WHERE (holder_hmac = $1 OR ({_HAS_APPLICANT} AND "
                f"{_APPLICANT_SQL} = $1))", PERSON))
            assert "audit_records_holder" in plan and "audit_records_applicant" in plan, plan
            await conn.execute(f"DROP INDEX {schema}.audit_records_applicant")   # a schema of an older version
        finally:
            await conn.close()
    finally:
        await sink.close()
    sink = await PostgresAuditSink.open(pg_dsn, schema=schema)   # the index is built at open
    try:
        assert await search(sink, PERSON) == [4, 2, 1]
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND "
                                       "indexname = 'audit_records_applicant'", schema) == 1
        finally:
            await conn.close()
    finally:
        await sink.close()
        await drop_schema(pg_dsn, schema)
