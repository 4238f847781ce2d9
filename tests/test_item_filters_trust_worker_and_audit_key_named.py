"""Session 21: three small defects left known in session 20 (docs/security-review.md "Known and left").

* ``GET /v1/items`` with a filter value the catalogue cannot hold (a ``mode`` not in the OpenAPI
  enum, a ``region`` the gateway does not know, a ``department`` of no item, a ``licence_type`` that
  is no type) answered 200 with no items: a partner's typo looked like "no such item". Now 400
  ``BAD_REQUEST`` whose ``detail`` / ``detail_zh`` name the parameter and the values it takes; a known
  value matching nothing stays a 200 with an empty page. The other items endpoints, which take no query
  parameter, refuse one as the search refuses a name it does not know.
* ``GET /v1/admin/trust`` did not say which worker of ``serve --workers N`` answered (each holds its own
  view until its next poll): it now carries ``pid`` and ``worker_index``, as ``/v1/admin/worker`` does.
* ``audit verify`` given another key than the checkpoints' said only "signature does not verify"; when
  the checkpoint names a key id none of the given keys has, it now says which (exit 1 still).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.app import create_app
from gateway.audit import CheckpointSigner, GroupCommitConfig, SqliteAuditSink
from gateway.audit.chain import audit_key_id
from gateway.audit.jws import public_jwk
from gateway.catalogue import MODES
from gateway.openapi_routes import load_spec
from gateway.serve import WORKER_NAME_PREFIX, worker_identity

from .test_audit_cli import AUDIT_KEY, T0, fill, run
from .test_openapi_contract import validate_body

ADMIN = {"client_id": "load-operator", "scope": "admin"}   # the TEST operator (scope admin only)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


async def problem(resp) -> dict[str, Any]:
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert body["code"] == "BAD_REQUEST" and body["title_zh"] and body["detail"] and body["detail_zh"]
    return body


# --- 1. item search filters ----------------------------------------------------------------------------
@pytest.mark.parametrize("param, value, en, zh", [
    ("mode", "全城网办", "is not a handling mode; allowed: 全程网办, 异地代收代办, 多地联办",
     "不是办理方式，可选：全程网办、异地代收代办、多地联办"),
    ("mode", "online", "is not a handling mode", "不是办理方式"),
    ("region", "999999", "is not a region the gateway knows (one of its 45 six-digit GB/T 2260 region codes)",
     "不是本网关已知的地区"),
    ("region", "3305", "is not a region the gateway knows", "不是本网关已知的地区"),
    ("region", "３３０５００", "is not a region the gateway knows", "不是本网关已知的地区"),   # full-width digits
    ("department", "市场监管局", "is not a department of any item; allowed: ", "不是任何事项的部门，可选："),
    ("licence_type", "idcard", "is not a licence type: give a type key (id_card, ", "不是证照类型"),
])
async def test_a_filter_value_the_catalogue_cannot_hold_is_400_naming_the_parameter(api, spec, param, value, en, zh):
    resp = await api.get("/v1/items", params={param: value})
    body = await problem(resp)
    validate_body(spec, "get", "/v1/items", 400, "application/problem+json", body)
    assert body["detail"].startswith(f"'{param}' {value!r} ") and en in body["detail"]
    assert f"参数 {param} 的取值 {value!r} " in body["detail_zh"] and zh in body["detail_zh"]


async def test_the_department_refusal_lists_every_department(api, world):
    body = await problem(await api.get("/v1/items", params={"department": "市场监管局"}))
    assert all(d in body["detail"] and d in body["detail_zh"] for d in world.catalogue.departments())


async def test_known_values_that_match_nothing_stay_an_empty_200(world, aiohttp_client):
    restricted = await aiohttp_client(create_app(world.services()),
                                      headers=world.auth(client_id="restricted-partner", scope="items:read"))
    # KS-001 and KS-002 (its only items) are offered everywhere, but not 多地联办
    resp = await restricted.get("/v1/items", params={"region": "330500", "mode": "多地联办"})
    assert resp.status == 200
    assert (await resp.json())["items"] == [] and (await resp.json())["total"] == 0
    resp = await restricted.get("/v1/items", params={"region": "330500"})
    assert resp.status == 200 and (await resp.json())["total"] == 2


async def test_every_listed_value_is_still_accepted(api, world):
    for mode in MODES:
        assert (await api.get("/v1/items", params={"mode": mode})).status == 200
    for department in world.catalogue.departments():
        assert (await api.get("/v1/items", params={"department": department})).status == 200
    for ltype in world.catalogue.types[:3]:
        for value in (ltype.key, ltype.type_code):
            assert (await api.get("/v1/items", params={"licence_type": value})).status == 200
    assert (await api.get("/v1/items", params={"mode": "", "region": ""})).status == 200   # empty: no filter


@pytest.mark.parametrize("params, en, zh", [
    ({"limit": "101"}, "'limit' must be an integer from 1 to 100, not '101'", "参数 limit 须为 1 至 100 的整数"),
    ({"limit": "0"}, "'limit' must be an integer from 1 to 100", "参数 limit 须为 1 至 100 的整数"),
    ({"offset": "-1"}, "'offset' must be a non-negative integer", "参数 offset 须为非负整数"),
    ({"q": "x" * 65}, "'q' is longer than 64 characters", "参数 q 超过 64 个字符"),
    ({"sort": "name"}, "unknown query parameter(s): sort; allowed: q, department, licence_type, mode, region, "
     "offset, limit", "未知的查询参数：sort；可用的参数：q、department"),
])
async def test_the_other_search_parameters_are_named_in_both_languages(api, params, en, zh):
    body = await problem(await api.get("/v1/items", params=params))
    assert en in body["detail"] and zh in body["detail_zh"]


async def test_a_repeated_parameter_is_named_in_both_languages(api):
    body = await problem(await api.get("/v1/items?mode=全程网办&mode=多地联办"))
    assert body["detail"] == "query parameter 'mode' given more than once" and "mode" in body["detail_zh"]


@pytest.mark.parametrize("method, path", [("get", "/v1/items/KS-001"), ("get", "/v1/licence-types"),
                                          ("post", "/v1/items/KS-001/check")])
async def test_the_other_items_endpoints_refuse_a_query_parameter(api, spec, method, path):
    resp = await api.request(method.upper(), path, params={"region": "330500"},
                             json={"applicant": {"code_type": "111", "code": "330502199001010014"}, "licences": []})
    body = await problem(resp)
    validate_body(spec, method, path.replace("KS-001", "{code}"), 400, "application/problem+json", body)
    assert "region" in body["detail"] and "takes none" in body["detail"] and "region" in body["detail_zh"]
    assert (await api.get(path)).status in (200, 405)


def test_the_openapi_document_says_what_is_refused(spec):
    op = spec["paths"]["/v1/items"]["get"]
    params = {p["name"]: p for p in op["parameters"] if "name" in p}
    assert params["mode"]["schema"]["enum"] == list(MODES)
    assert "400" in params["region"]["description"] and "detail_zh" in op["description"]
    assert "detail_zh" in spec["components"]["schemas"]["Problem"]["properties"]
    for path in ("/v1/items/{code}", "/v1/licence-types"):
        assert "400" in spec["paths"][path]["get"]["responses"]


# --- 2. which worker answered GET /v1/admin/trust ---------------------------------------------------------
async def test_admin_trust_names_the_process_that_answered(world, aiohttp_client, spec, monkeypatch):
    client = await aiohttp_client(create_app(world.services()), headers=world.auth(**ADMIN))
    body = await (await client.get("/v1/admin/trust")).json()
    assert (body["pid"], body["worker_index"]) == (os.getpid(), None)   # one process: no index
    validate_body(spec, "get", "/v1/admin/trust", 200, "application/json", body)
    monkeypatch.setattr(multiprocessing.current_process(), "name", f"{WORKER_NAME_PREFIX}3")
    body = await (await client.get("/v1/admin/trust")).json()
    assert (body["pid"], body["worker_index"]) == (os.getpid(), 3) and body["in_force"]["version"]
    validate_body(spec, "get", "/v1/admin/trust", 200, "application/json", body)
    worker = await (await client.get("/v1/admin/worker")).json()   # the same identity as the worker counters
    assert (worker["pid"], worker["worker_index"]) == (os.getpid(), 3)
    validate_body(spec, "get", "/v1/admin/worker", 200, "application/json", worker)
    reset = await (await client.post("/v1/admin/worker/latency/reset")).json()
    validate_body(spec, "post", "/v1/admin/worker/latency/reset", 200, "application/json", reset)
    assert reset["worker_index"] == 3


def _identity_into(queue: Any) -> None:
    queue.put(worker_identity())


def test_a_spawned_worker_knows_its_index_from_its_process_name():
    ctx = multiprocessing.get_context("spawn")   # as serve --workers N starts them
    queue = ctx.Queue()
    proc = ctx.Process(target=_identity_into, args=(queue,), name=f"{WORKER_NAME_PREFIX}1")
    proc.start()
    try:
        identity = queue.get(timeout=60)
    finally:
        proc.join(30)
    assert identity == {"pid": proc.pid, "worker_index": 1}


def test_the_readme_says_how_to_see_every_workers_trust_view():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "`worker_index`" in readme and "new connection" in readme


# --- 3. audit verify with another key ---------------------------------------------------------------------
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))   # TEST key
GATEWAY_KID = audit_key_id(AUDIT_KEY.public_key())   # the kid the gateway gives its audit key
OTHER_KID = audit_key_id(OTHER_KEY.public_key())


def signed_store(tmp: Path, kid: str = GATEWAY_KID) -> Path:
    path = tmp / "audit.db"

    async def go() -> None:
        sink = await SqliteAuditSink.open(path, signer=CheckpointSigner(AUDIT_KEY, kid),
                                          clock=lambda: T0, config=GroupCommitConfig(checkpoint_every=10))
        await fill(sink, 25)

    asyncio.run(go())
    return path


def pem_of(tmp: Path, key: Ed25519PrivateKey, name: str) -> str:
    path = tmp / name
    path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return str(path)


def jwks_of(tmp: Path, key: Ed25519PrivateKey, kid: str, name: str = "keys.json") -> str:
    path = tmp / name
    path.write_text(json.dumps({"keys": [public_jwk(key.public_key(), kid)]}))
    return str(path)


def test_another_pem_key_is_named_beside_the_checkpoints_key(tmp_path: Path) -> None:
    assert OTHER_KID != GATEWAY_KID
    db = signed_store(tmp_path)
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", pem_of(tmp_path, OTHER_KEY, "other.pem"))
    assert code == 1
    assert f"BROKEN at seq 10: checkpoint at seq 10 signed by key {GATEWAY_KID}, you gave {OTHER_KID}" in out
    assert f"seq 10 处的检查点由密钥 {GATEWAY_KID} 签名，而给出的密钥是 {OTHER_KID}" in out
    assert "signature does not verify" not in out
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", pem_of(tmp_path, AUDIT_KEY, "audit.pem"))
    assert code == 0 and "OK: 25 records" in out


def test_a_key_set_or_rotation_keys_without_the_checkpoints_kid_are_listed(tmp_path: Path) -> None:
    db = signed_store(tmp_path)
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", jwks_of(tmp_path, OTHER_KEY, "audit-other"))
    assert code == 1 and f"signed by key {GATEWAY_KID}, you gave audit-other" in out
    third = Ed25519PrivateKey.from_private_bytes(bytes(range(200, 232)))
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", pem_of(tmp_path, OTHER_KEY, "a.pem"),
                       "--key", pem_of(tmp_path, third, "b.pem"))
    given = ", ".join(sorted([OTHER_KID, audit_key_id(third.public_key())]))
    assert code == 1 and f"signed by key {GATEWAY_KID}, you gave {given}" in out


def test_a_checkpoint_that_does_not_verify_under_its_own_kid_is_still_reported_as_such(tmp_path: Path) -> None:
    db = signed_store(tmp_path)   # a key of the checkpoint's kid that does not verify it: forged or altered
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", jwks_of(tmp_path, OTHER_KEY, GATEWAY_KID))
    assert code == 1 and "checkpoint at seq 10: signature does not verify" in out and "signed by key" not in out


def test_a_single_pem_key_is_still_tried_whatever_kid_the_checkpoints_name(tmp_path: Path) -> None:
    db = signed_store(tmp_path, kid="test-audit-1")
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", pem_of(tmp_path, AUDIT_KEY, "audit.pem"))
    assert code == 0, out
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", pem_of(tmp_path, OTHER_KEY, "other.pem"))
    assert code == 1 and f"signed by key test-audit-1, you gave {OTHER_KID}" in out


def test_an_anchor_signed_by_another_key_is_named_too(tmp_path: Path) -> None:
    db = signed_store(tmp_path)
    foreign = CheckpointSigner(OTHER_KEY, OTHER_KID).sign(10, "0" * 64, T0).jws
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", pem_of(tmp_path, AUDIT_KEY, "audit.pem"),
                       "--anchor", foreign)
    assert code == 1 and f"anchor 1 signed by key {OTHER_KID}, you gave {GATEWAY_KID}" in out
    assert "第 1 个锚定检查点由密钥" in out


def test_a_forged_checkpoint_under_a_kid_the_given_key_signs_as_is_not_blamed_on_the_key(tmp_path: Path) -> None:
    import sqlite3

    db = signed_store(tmp_path, kid="test-audit-1")   # a kid the gateway did not derive: only the others tell
    forged = CheckpointSigner(OTHER_KEY, "test-audit-1").sign(10, "0" * 64, T0)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_checkpoints SET jws = ? WHERE seq = 10", (forged.jws,))
    code, out, _ = run("verify", "--store", f"sqlite:{db}", "--key", pem_of(tmp_path, AUDIT_KEY, "audit.pem"))
    assert code == 1 and "checkpoint at seq 10: signature does not verify" in out and "signed by key" not in out
