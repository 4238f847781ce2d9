"""The HTTP contract of the verify API: batches, limits, problem+json, regions, health, auth."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.app import create_app
from gateway.auth import unprotected_routes
from gateway.edges import MemoryTrustSource

from .conftest import NOW


async def test_batch_answers_in_order_and_each_entry_independently(api, world):
    good = world.simulator.issue("341100", "id_card", "valid", NOW).body()
    expired = world.simulator.issue("341500", "id_card", "expired", NOW).body()
    resp = await api.post("/v1/licences/verify-batch", json={"licences": [
        good, {"licence": "@@@", "encoding": "base64"}, expired, good]})
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert [r["verdict"] for r in results] == ["valid", "invalid", "invalid", "valid"]
    assert results[1]["reasons"][0]["code"] == "MALFORMED"
    assert results[2]["reasons"][0]["code"] == "LICENCE_EXPIRED"


async def test_batch_over_the_limit_is_413(api, world):
    good = world.simulator.issue("341100", "id_card", "valid", NOW).body()
    resp = await api.post("/v1/licences/verify-batch", json={"licences": [good] * (world.settings.max_batch + 1)})
    assert resp.status == 413
    body = await resp.json()
    assert resp.content_type == "application/problem+json"
    assert body["code"] == "BATCH_TOO_LARGE" and body["status"] == 413


@pytest.mark.parametrize("payload,code", [
    (b"{not json", "BAD_REQUEST"),
    (b'{"licence": 42}', "BAD_REQUEST"),
    (b'{"licence": "x", "encoding": "rot13"}', "BAD_REQUEST"),
    (b'["licence"]', "BAD_REQUEST"),
])
async def test_ill_formed_requests_are_400_problems(api, payload, code):
    resp = await api.post("/v1/licences/verify", data=payload, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == code and body["title_zh"] and body["request_id"]


async def test_wrong_media_type_is_415(api):
    resp = await api.post("/v1/licences/verify", data=b"licence=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415 and (await resp.json())["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_body_over_the_cap_is_413(client_for, world):
    from dataclasses import replace

    small = replace(world.settings, max_body_bytes=2048)
    client = await client_for(settings=small)
    resp = await client.post("/v1/licences/verify", json={"licence": "x" * 5000, "encoding": "utf-8"})
    assert resp.status == 413 and (await resp.json())["code"] == "BODY_TOO_LARGE"


async def test_unknown_route_is_a_404_problem(api):
    resp = await api.get("/v1/nothing-here")
    assert resp.status in (401, 404)  # unauthenticated callers learn nothing about routes
    resp = await api.get("/nothing-here")
    assert resp.status == 404 and (await resp.json())["code"] == "NOT_FOUND"


async def test_regions_lists_all_45_with_format_and_trust_state(api):
    resp = await api.get("/v1/regions")
    body = await resp.json()
    assert body["count"] == 45
    by_code = {r["code"]: r for r in body["regions"]}
    assert by_code["330500"]["name"] == "湖州市" and by_code["330500"]["group"] == "yrd"
    assert by_code["511600"]["group"] == "partner"
    assert all(r["trust"]["state"] == "ok" for r in body["regions"])
    assert all(r["format"] in ("jws", "sm2-json", "sm2-xml", "ofd-seal") for r in body["regions"])
    assert by_code["652929"]["algorithms"] == ["EdDSA"]


async def test_healthz_and_readyz(api):
    assert (await api.get("/healthz")).status == 200
    resp = await api.get("/readyz")
    assert resp.status == 200 and (await resp.json())["trust_list_version"] == 1


async def test_readyz_fails_until_trust_loads(client_for):
    class Broken:
        async def load(self):
            raise OSError("trust list file missing")

    client = await client_for(trust_source=Broken())
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert "trust list file missing" in (await resp.json())["problems"][0]
    resp = await client.post("/v1/licences/verify", json={"licence": "eyJ.a.b", "encoding": "utf-8"})
    assert resp.status == 503 and (await resp.json())["code"] == "TRUST_UNAVAILABLE"


async def test_readyz_fails_when_trust_list_expired(client_for, world):
    from gateway.trust import build_snapshot

    doc = dict(world.doc, expires_at=(NOW - dt.timedelta(seconds=1)).isoformat())
    client = await client_for(trust_source=MemoryTrustSource(build_snapshot(doc, world.regions)))
    resp = await client.get("/readyz")
    assert resp.status == 503 and "expired" in (await resp.json())["problems"][0]


async def test_every_v1_route_refuses_a_missing_token(aiohttp_client, world):
    app = create_app(world.services())
    assert unprotected_routes(app) == []
    client = await aiohttp_client(app)
    public = {"/v1/oauth/token", "/v1/keys", "/v1/openapi.json", "/v1/docs", "/v1/docs/"}
    checked = 0
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if not path.startswith("/v1") or path in public or path.startswith("/v1/docs/") or route.method == "HEAD":
            continue
        url = path.replace("{code}", "KS-001")
        resp = await client.request(route.method, url, json={})
        assert resp.status == 401, (route.method, path, resp.status)
        assert "Bearer" in resp.headers.get("WWW-Authenticate", "")
        checked += 1
    assert checked >= 3


async def test_under_scoped_token_is_403(aiohttp_client, world):
    client = await aiohttp_client(create_app(world.services()), headers=world.auth(scope="items:read"))
    resp = await client.post("/v1/licences/verify", json={"licence": "x", "encoding": "utf-8"})
    assert resp.status == 403 and (await resp.json())["code"] == "FORBIDDEN"


async def test_forged_token_is_401(aiohttp_client, world):
    token = world.token()
    head, payload, sig = token.split(".")
    forged = ".".join([head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    client = await aiohttp_client(create_app(world.services()), headers={"Authorization": f"Bearer {forged}"})
    resp = await client.post("/v1/licences/verify", json={"licence": "x", "encoding": "utf-8"})
    assert resp.status == 401
