"""``GET /v1/admin/worker``: the answering worker's own counters (loop stalls, result cache, audit
group commit), admin scope only, and the documented schema."""

from __future__ import annotations

import datetime as dt
import os

from gateway.app import LIVE

from .conftest import NOW
from .test_openapi_contract import spec, validate_body  # noqa: F401 - the spec fixture
from .test_trust_admin_http import REGION, admin, admin_registry  # noqa: F401 - fixtures


async def test_the_worker_reports_its_process_cache_and_audit_counters_after_verifications(world, admin, spec):  # noqa: F811
    client, _, adm, verify_hdr = admin
    client.app[LIVE].set_status(world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)))
    before = await (await client.get("/v1/admin/worker", headers=adm)).json()
    licence = world.simulator.issue(REGION, None, "valid", NOW).data.decode()
    for _ in range(3):   # one first verification, then two answers from the cache
        resp = await client.post("/v1/licences/verify", headers=verify_hdr,
                                 json={"licence": licence, "encoding": "utf-8"})
        assert resp.status == 200 and (await resp.json())["verdict"] == "valid"
    resp = await client.get("/v1/admin/worker", headers=adm)
    assert resp.status == 200
    body = await resp.json()
    validate_body(spec, "get", "/v1/admin/worker", 200, "application/json", body)
    assert body["pid"] == os.getpid()              # the test server runs in this process
    assert body["loop"]["stall_warn_ms"] == world.settings.loop_stall_warn_ms and body["loop"]["stalls"] >= 0
    cache, cache0 = body["result_cache"], before["result_cache"]
    assert cache["misses"] - cache0["misses"] == 1 and cache["hits"] - cache0["hits"] == 2
    audit, audit0 = body["audit"], before["audit"]
    assert audit["backend"] == world.settings.audit_backend and audit["open"] is True
    assert audit["commits"]["records"] - audit0["commits"]["records"] >= 3   # a record per verify answer
    assert audit["commits"]["transactions"] > audit0["commits"]["transactions"]
    assert audit["commit_timeout_ms"] == world.settings.audit_commit_timeout_ms
    assert audit["waiting_for_commit"] == 0 and audit["commit_timeouts"] == 0


async def test_the_worker_counters_need_the_admin_scope(admin):  # noqa: F811
    client, _, _, verify_only = admin
    resp = await client.get("/v1/admin/worker", headers=verify_only)
    assert resp.status == 403
    assert (await client.get("/v1/admin/worker")).status == 401
