"""The audit trail through HTTP: every audited answer has its record, committed first.

The app runs with the in-memory sink (tests/conftest.py sets audit_backend = "memory"); the
records are read back from it. A store outage must turn every audited answer into a 503
problem -- never an answer without a record.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.audit import holder_hmac, verify_chain
from gateway.audit_wiring import AUDIT, TEST_AUDIT_HMAC_KEY_HEX, receipt_hash, safe_request_id
from gateway.identifiers import citizen_id_check

from .conftest import NOW

HUZHOU, SUZHOU = "330500", "320500"
KEY = bytes.fromhex(TEST_AUDIT_HMAC_KEY_HEX)


def person(world, region: str) -> tuple[str, str, str]:
    name, code = world.simulator.person(region)
    return name, code, "111"


def records(client) -> list[dict[str, Any]]:
    sink = client.server.app[AUDIT].sink
    return [r.as_dict() for _, r in sorted(sink.table.items())]


def of_request(client, rid: str) -> list[dict[str, Any]]:
    return [r for r in records(client) if r["request_id"] == rid]


async def post(client, path: str, body: Any, rid: str, status: int = 200) -> dict[str, Any]:
    resp = await client.post(path, json=body, headers={"X-Request-Id": rid})
    text = await resp.text()
    assert resp.status == status, text
    return orjson.loads(text)


async def test_verify_answer_has_a_record_naming_partner_licence_verdict_and_holder_hmac(api, world):
    me = person(world, HUZHOU)
    issued = world.simulator.issue(HUZHOU, "id_card", "valid", NOW, holder=me)
    answer = await post(api, "/v1/licences/verify", issued.body(), "req-verify-1")
    [rec] = of_request(api, "req-verify-1")
    assert rec["kind"] == "verify" and rec["partner"] == "demo-partner" and rec["operator"] is None
    assert rec["licence_id"] == issued.licence.identifier and rec["region"] == HUZHOU
    assert rec["verdict"] == "valid" == answer["verdict"] and rec["reasons"] == []
    assert rec["holder_hmac"] == holder_hmac(KEY, "111", me[1])
    assert rec["extra"]["receipt"] == receipt_hash(answer["receipt"])
    stored = orjson.dumps(records(api)).decode()
    assert me[1] not in stored and me[0] not in stored  # the holder only as a keyed hash


async def test_expired_licence_is_recorded_with_its_reason_codes(api, world):
    issued = world.simulator.issue(HUZHOU, "id_card", "expired", NOW)
    answer = await post(api, "/v1/licences/verify", issued.body(), "req-expired")
    [rec] = of_request(api, "req-expired")
    assert rec["verdict"] == "invalid" and rec["reasons"] == [r["code"] for r in answer["reasons"]] == ["LICENCE_EXPIRED"]


async def test_batch_records_one_event_per_entry_including_an_undecodable_one(api, world):
    good = world.simulator.issue(HUZHOU, "id_card", "valid", NOW)
    expired = world.simulator.issue(SUZHOU, "id_card", "expired", NOW)
    body = {"licences": [good.body(), {"licence": "%%%", "encoding": "base64"}, expired.body()]}
    answer = await post(api, "/v1/licences/verify-batch", body, "req-batch")
    recs = of_request(api, "req-batch")
    assert [(r["extra"]["entry"], r["extra"]["entries"]) for r in recs] == [(0, 3), (1, 3), (2, 3)]
    assert [r["verdict"] for r in recs] == [a["verdict"] for a in answer["results"]] == ["valid", "invalid", "invalid"]
    assert recs[1]["reasons"] == ["MALFORMED"] and recs[1]["licence_id"] is None
    assert recs[2]["licence_id"] == expired.licence.identifier
    assert [r["extra"]["receipt"] for r in recs] == [receipt_hash(answer["receipt"])] * 3   # the answer's one receipt


async def test_item_check_records_each_licence_with_the_item_and_the_applicant_hash(api, world):
    me = person(world, HUZHOU)
    id_card = world.simulator.issue(HUZHOU, "id_card", "valid", NOW, holder=me)
    ssc = world.simulator.issue(SUZHOU, "social_security_card", "valid", NOW, holder=me)
    applicant = {"code_type": "111", "code": me[1], "name": me[0]}
    answer = await post(api, "/v1/items/KS-043/check", {"applicant": applicant,
                                                        "licences": [id_card.body(), ssc.body()]}, "req-check")
    recs = of_request(api, "req-check")
    assert [r["kind"] for r in recs] == ["check", "check"]
    assert {r["item_code"] for r in recs} == {"KS-043"}
    assert [r["licence_id"] for r in recs] == [id_card.licence.identifier, ssc.licence.identifier]
    assert {r["extra"]["applicant"] for r in recs} == {holder_hmac(KEY, "111", me[1])}
    assert {r["extra"]["outcome"] for r in recs} == {answer["outcome"]} == {"complete"}
    assert me[1] not in orjson.dumps(recs).decode()
    assert answer["applicant"]["code_masked"] != me[1] and "*" in answer["applicant"]["code_masked"]


async def test_token_issue_is_recorded_with_the_client_id(api, world):
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    from gateway.auth import make_client_assertion, token_request_form  # noqa: PLC0415
    from gateway.auth.demo import partner_test_key_path  # noqa: PLC0415

    pem = partner_test_key_path(world.settings.partners_dir, "demo-partner").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    partner = world.partners["demo-partner"]
    form = token_request_form(make_client_assertion("demo-partner", key, partner.alg,
                                                    world.settings.token_endpoint_url, NOW.timestamp()))
    resp = await api.post("/v1/oauth/token", data=form, headers={"X-Request-Id": "req-token"})
    assert resp.status == 200, await resp.text()
    [rec] = of_request(api, "req-token")
    assert rec["kind"] == "token" and rec["partner"] == "demo-partner" and rec["verdict"] == "issued"
    assert rec["extra"]["jti"] and "licences:verify" in rec["extra"]["scope"]


ADMIN_TOML = '''# TEST partner with the admin scope, made for one test run only
client_id = "audit-admin"
name_zh = "审计测试管理员（测试）"
scopes = ["admin", "licences:verify"]
items = "*"
regions = "*"

[key]
public_key_pem = "audit-admin.test-public.pem"

[rate_limit]
requests_per_second = 1000
burst = 2000
'''


async def test_trust_reload_by_an_admin_records_the_call_and_the_trust_change(world, aiohttp_client, tmp_path):
    from gateway.auth import demo_token, load_partners  # noqa: PLC0415

    src = Path(world.settings.partners_dir)
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(src / "demo-partner.test-public.pem", tmp_path / "audit-admin.test-public.pem")
    shutil.copy(src / "demo-partner.test-private.pem", tmp_path / "audit-admin.test-private.pem")
    (tmp_path / "audit-admin.toml").write_text(ADMIN_TOML, encoding="utf-8")
    token = demo_token(tmp_path, client_id="audit-admin", scope="admin", gateway_key=world.gateway_key,
                       token_endpoint=world.settings.token_endpoint_url, now=NOW.timestamp())["access_token"]
    source = FlakyTrust(world.snapshot)
    client = await aiohttp_client(create_app(world.services(partners=load_partners(tmp_path), trust_source=source)),
                                  headers={"Authorization": f"Bearer {token}"})
    source.fail = True
    resp = await client.post("/v1/admin/trust/reload", headers={"X-Request-Id": "req-admin"})
    assert resp.status >= 400, await resp.text()
    recs = of_request(client, "req-admin")
    assert [(r["kind"], r["verdict"]) for r in recs] == [("trust", "refused"), ("admin", "refused")]
    assert {r["partner"] for r in recs} == {"audit-admin"}
    assert recs[0]["reasons"] == ["TRUST_LIST_REFUSED"] and recs[0]["extra"]["trigger"] == "admin"


async def test_trust_change_from_a_file_reload_is_recorded_without_a_request(world, aiohttp_client):
    from gateway.trust_routes import RELOADER  # noqa: PLC0415

    source = FlakyTrust(world.snapshot)
    client = await aiohttp_client(create_app(world.services(trust_source=source)), headers=world.auth())
    source.fail = True
    outcome = await client.server.app[RELOADER].reload("file-change")
    assert outcome.outcome == "refused"
    [rec] = [r for r in records(client) if r["kind"] == "trust"]
    assert rec["request_id"].startswith("trust-") and rec["extra"]["trigger"] == "file-change"
    assert rec["partner"] is None


class FlakyTrust:
    def __init__(self, snapshot: Any) -> None:
        self.snapshot, self.fail = snapshot, False

    async def load(self) -> Any:
        if self.fail:
            from gateway.trust import TrustListError  # noqa: PLC0415

            raise TrustListError("signature does not verify (a tampered list)")
        return self.snapshot


async def test_query_is_recorded_with_the_audit_key_hash_of_the_holder(world, aiohttp_client):
    client = await aiohttp_client(create_app(world.services()), headers=world.auth())
    code = "330102198506121" + "23"
    code = code[:17] + citizen_id_check(code[:17])
    body = {"holder": {"code_type": "111", "code": code}, "licence_types": ["id_card"], "item": "KS-009",
            "use_cause": "个体工商户设立登记", "regions": ["330100"]}
    await post(client, "/v1/licences/query", body, "req-query")
    [rec] = of_request(client, "req-query")
    assert rec["kind"] == "query" and rec["item_code"] == "KS-009" and rec["partner"] == "demo-partner"
    assert rec["holder_hmac"] == holder_hmac(KEY, "111", code)
    assert code not in orjson.dumps(rec).decode()


@pytest.mark.parametrize("path,make_body", [
    ("/v1/licences/verify", lambda w: w.simulator.issue(HUZHOU, "id_card", "valid", NOW).body()),
    ("/v1/licences/verify-batch", lambda w: {"licences": [w.simulator.issue(HUZHOU, "id_card", "valid", NOW).body()]}),
    ("/v1/items/KS-043/check", lambda w: {"applicant": {"code_type": "111", "code": w.simulator.person(HUZHOU)[1]},
                                          "licences": [w.simulator.issue(HUZHOU, "id_card", "valid", NOW).body()]}),
])
async def test_store_outage_answers_503_and_never_the_verdict(api, world, path, make_body):
    sink = api.server.app[AUDIT].sink
    sink.fail_with = OSError("disk full")
    resp = await api.post(path, json=make_body(world), headers={"X-Request-Id": "req-outage"})
    body = await resp.json(content_type=None)
    assert resp.status == 503 and body["code"] == "AUDIT_UNAVAILABLE"
    assert "verdict" not in body and "results" not in body and "receipt" not in body
    assert of_request(api, "req-outage") == []
    sink.fail_with = None
    resp = await api.post(path, json=make_body(world), headers={"X-Request-Id": "req-after"})
    assert resp.status == 200 and len(of_request(api, "req-after")) == 1


async def test_store_that_cannot_open_answers_503(world, aiohttp_client, tmp_path):
    settings = dataclasses.replace(world.settings, audit_backend="sqlite", audit_path=str(tmp_path))  # a directory
    client = await aiohttp_client(create_app(world.services(settings=settings)), headers=world.auth())
    resp = await client.post("/v1/licences/verify", json=world.simulator.issue(HUZHOU, "id_card", "valid", NOW).body())
    assert resp.status == 503 and (await resp.json(content_type=None))["code"] == "AUDIT_UNAVAILABLE"
    health = await client.get("/healthz")
    assert health.status == 200


async def test_sqlite_backend_chain_verifies_after_shutdown(world, aiohttp_client, tmp_path):
    from gateway.audit import SqliteAuditSink  # noqa: PLC0415

    path = tmp_path / "audit.sqlite3"
    settings = dataclasses.replace(world.settings, audit_backend="sqlite", audit_path=str(path),
                                   audit_checkpoint_every=3)
    app = create_app(world.services(settings=settings))
    signer = app[AUDIT].setup.checkpoints
    client = await aiohttp_client(app, headers=world.auth())
    for i in range(7):
        await post(client, "/v1/licences/verify", world.simulator.issue(HUZHOU, "id_card", "valid", NOW).body(),
                   f"req-sqlite-{i}")
    await client.close()  # shutdown: last checkpoint, sink closed
    store = await SqliteAuditSink.open(path)
    try:
        report = await verify_chain(store, signer.public_key())
        assert report.ok and report.records_checked == 7 and report.checkpoints_checked >= 2
        assert [r.body["request_id"] for r in await store.read_records(0, 100)] == [f"req-sqlite-{i}" for i in range(7)]
    finally:
        await store.close()


@pytest.mark.parametrize("prefix", ["", "req-", "req"])  # "req330502...": run together with letters
async def test_request_id_that_looks_like_a_citizen_id_is_recorded_as_a_digest(api, world, prefix):
    first17 = "33050219900101001"
    rid = prefix + first17 + citizen_id_check(first17)
    await post(api, "/v1/licences/verify", world.simulator.issue(HUZHOU, "id_card", "valid", NOW).body(), rid)
    assert of_request(api, rid) == []
    [rec] = of_request(api, safe_request_id(rid))
    assert rec["request_id"].startswith("sha256:")


async def test_keys_publish_token_receipt_and_checkpoint_keys(api):
    keys = (await (await api.get("/v1/keys")).json())["keys"]
    kids = [k["kid"] for k in keys]
    assert any(k.startswith("receipt-") for k in kids) and any(k.startswith("audit-") for k in kids)
    assert len(kids) == 3 and len(set(kids)) == 3
