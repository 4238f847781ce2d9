"""Trust administration over HTTP: reload endpoint, dropped entries, hot reload under load,
readiness reflecting trust health."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import shutil

import pytest

from gateway.app import LIVE, create_app
from gateway.auth import demo_token, load_partners
from gateway.devtrust import make_anchor, make_issuer, to_pem
from gateway.edges import FileTrustSource, MemoryStatusSource, MemoryTrustSource
from gateway.status import StatusSnapshot
from gateway.trust import build_snapshot
from gateway.trustlist import TEST_OPERATOR_PRIVATE, TEST_OPERATOR_PUBLIC, canonical_json, load_operator_key, \
    load_operator_private_key, sign_trust_list

from .conftest import NOW

REGION = "341100"

ADMIN_TOML = '''# TEST partner with the admin scope, made for one test run only
client_id = "trust-admin"
name_zh = "信任管理员（测试）"
scopes = ["admin", "licences:verify"]
items = "*"
regions = "*"

[key]
public_key_pem = "trust-admin.test-public.pem"

[rate_limit]
requests_per_second = 1000
burst = 2000
'''


@pytest.fixture(scope="module")
def admin_registry(world, tmp_path_factory):
    """The committed TEST registry plus a throw-away admin partner (reusing the demo TEST key)."""
    d = tmp_path_factory.mktemp("partners")
    src = world.settings.partners_dir
    for f in __import__("pathlib").Path(src).iterdir():
        shutil.copy(f, d / f.name)
    shutil.copy(d / "demo-partner.test-public.pem", d / "trust-admin.test-public.pem")
    shutil.copy(d / "demo-partner.test-private.pem", d / "trust-admin.test-private.pem")
    (d / "trust-admin.toml").write_text(ADMIN_TOML, encoding="utf-8")
    return d


def bearer(world, registry, client_id: str, scope: str) -> dict[str, str]:
    tok = demo_token(registry, client_id=client_id, scope=scope, gateway_key=world.gateway_key,
                     token_endpoint=world.settings.token_endpoint_url, now=NOW.timestamp())["access_token"]
    return {"Authorization": f"Bearer {tok}"}


def doc_v(world, version: int, **changes) -> dict:
    doc = copy.deepcopy(world.doc)
    doc["version"] = version
    doc.update(changes)
    return doc


def publish(path, doc) -> None:
    path.write_bytes(canonical_json(sign_trust_list(doc, load_operator_private_key(TEST_OPERATOR_PRIVATE))))


@pytest.fixture
async def admin(world, admin_registry, aiohttp_client, tmp_path):
    path = tmp_path / "trust-list.signed.json"
    publish(path, doc_v(world, 10))
    source = FileTrustSource(path, world.regions, 3, [load_operator_key(TEST_OPERATOR_PUBLIC)], clock=lambda: NOW)
    app = create_app(world.services(trust_source=source, partners=load_partners(admin_registry)))
    client = await aiohttp_client(app)
    return client, path, bearer(world, admin_registry, "trust-admin", "admin"), \
        bearer(world, admin_registry, "trust-admin", "licences:verify")


async def test_admin_trust_shows_the_list_in_force(admin):
    client, path, adm, _ = admin
    body = await (await client.get("/v1/admin/trust", headers=adm)).json()
    assert body["in_force"]["version"] == 10 and body["in_force"]["expired"] is False
    assert body["in_force"]["signed_by"] == load_operator_key(TEST_OPERATOR_PUBLIC).key_id
    assert body["dropped"] == [] and body["last_error"] is None
    assert body["last_reload"]["trigger"] == "startup" and body["last_reload"]["outcome"] == "accepted"


async def test_admin_endpoints_need_the_admin_scope(admin):
    client, _, _, verify_only = admin
    for method, url in (("GET", "/v1/admin/trust"), ("POST", "/v1/admin/trust/reload"), ("GET", "/v1/admin/status")):
        resp = await client.request(method, url, headers=verify_only)
        assert resp.status == 403 and (await resp.json())["code"] == "FORBIDDEN"
        assert (await client.request(method, url)).status == 401


async def test_reload_endpoint_accepts_a_newer_list_and_refuses_a_rollback(world, admin):
    client, path, adm, _ = admin
    publish(path, doc_v(world, 11))
    resp = await client.post("/v1/admin/trust/reload", headers=adm)
    assert resp.status == 200
    assert (await resp.json())["outcome"] == "accepted" and client.app[LIVE].current.trust.version == 11
    publish(path, doc_v(world, 9))
    resp = await client.post("/v1/admin/trust/reload", headers=adm)
    problem = await resp.json()
    assert resp.status == 409 and problem["code"] == "TRUST_LIST_REFUSED" and "rollback" in problem["detail"]
    assert client.app[LIVE].current.trust.version == 11
    body = await (await client.get("/v1/admin/trust", headers=adm)).json()
    assert body["in_force"]["version"] == 11
    assert "rollback" in body["last_error"] and body["last_reload"]["outcome"] == "refused"
    ready = await client.get("/readyz")
    assert ready.status == 200 and "rollback" in (await ready.json())["last_error"]


async def test_dropped_entries_are_listed_with_reasons_on_the_admin_endpoint(world, admin):
    client, path, adm, _ = admin
    doc = doc_v(world, 12)
    rogue_key, rogue_anchor = make_anchor(REGION, "ES256", NOW)
    rogue = make_issuer(REGION, "ES256", rogue_key, rogue_anchor, 31337, NOW - dt.timedelta(days=1),
                        NOW + dt.timedelta(days=9), "rogue")
    doc["regions"][REGION]["issuers"].append(to_pem(rogue.cert.der))
    doc["regions"][REGION]["anchors"].append(to_pem(world.material[REGION].issuers[-1].cert.der))
    doc["regions"]["999999"] = {"anchors": [], "issuers": []}
    publish(path, doc)
    assert (await client.post("/v1/admin/trust/reload", headers=adm)).status == 200
    body = await (await client.get("/v1/admin/trust", headers=adm)).json()
    reasons = {(d["region"], d["reason"]) for d in body["dropped"]}
    assert reasons == {(REGION, "does not chain to this region's trust anchor"),
                       (REGION, "anchor is not a CA certificate"), ("999999", "unknown region code")}
    rogue_entry = next(d for d in body["dropped"] if d["reason"].startswith("does not chain"))
    assert rogue_entry["key_id"] == rogue.cert.key_id and "rogue" in rogue_entry["subject"]


async def test_hot_reload_under_concurrent_load_fails_not_a_single_request(world, admin):
    client, path, adm, verify_hdr = admin
    licences = [world.simulator.issue(REGION, None, "valid", NOW).data.decode() for _ in range(20)]
    client.app[LIVE].set_status(world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)))
    seen_versions: set[int] = set()

    async def one(i: int) -> tuple[int, str]:
        resp = await client.post("/v1/licences/verify", headers=verify_hdr,
                                 json={"licence": licences[i % len(licences)], "encoding": "utf-8"})
        seen_versions.add(client.app[LIVE].current.trust.version)
        return resp.status, (await resp.json())["verdict"]

    reloaded = [asyncio.Event() for _ in range(5)]

    async def reloads() -> list[str]:
        outcomes = []
        for n, v in enumerate(range(11, 16)):
            publish(path, doc_v(world, v))
            outcomes.append((await (await client.post("/v1/admin/trust/reload", headers=adm)).json())["outcome"])
            reloaded[n].set()
        return outcomes

    async def load() -> list[tuple[int, str]]:  # 500 verifications in overlapping waves of 50
        waves = []
        for w in range(10):
            waves.append(asyncio.gather(*(one(w * 50 + i) for i in range(50))))
            await asyncio.sleep(0.005)
            if w % 2:  # while this wave is in flight, wait for the next swap
                await reloaded[w // 2].wait()
        return [r for wave in await asyncio.gather(*waves) for r in wave]

    results, outcomes = await asyncio.gather(load(), reloads())
    assert outcomes == ["accepted"] * 5
    assert client.app[LIVE].current.trust.version == 15
    failures = [r for r in results if r != (200, "valid")]
    assert failures == [] and len(results) == 500
    assert len(seen_versions) >= 3  # the requests really did overlap the swaps


async def test_status_admin_endpoint_reports_each_region(world, admin):
    client, _, adm, _ = admin
    body = await (await client.get("/v1/admin/status", headers=adm)).json()
    assert body["regions"][REGION]["fresh"] is True and body["regions"][REGION]["age_seconds"] == 0


# --- readiness ------------------------------------------------------------------------------
async def test_readyz_fails_when_no_region_is_verifiable_for_lack_of_status(client_for):
    client = await client_for(status_source=MemoryStatusSource(StatusSnapshot()))
    resp = await client.get("/readyz")
    assert resp.status == 503 and "no region is verifiable" in (await resp.json())["problems"][0]


async def test_readyz_fails_when_every_issuer_is_revoked(world, client_for):
    doc = copy.deepcopy(world.doc)
    for code, r in doc["regions"].items():
        serial = world.material[code].issuers[-1].cert.serial_hex
        r["revoked"] = [{"serial": serial, "revoked_at": NOW.isoformat(), "reason": "keyCompromise"}]
    client = await client_for(trust_source=MemoryTrustSource(build_snapshot(doc, world.regions)))
    resp = await client.get("/readyz")
    assert resp.status == 503 and "no region is verifiable" in (await resp.json())["problems"][0]


async def test_readyz_ready_when_one_region_is_exempt_from_status(world, aiohttp_client):
    from dataclasses import replace

    settings = replace(world.settings, status_exempt_regions=(REGION,))
    app = create_app(world.services(settings=settings, status_source=MemoryStatusSource(StatusSnapshot())))
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200


async def test_refused_signed_list_at_start_leaves_the_gateway_not_ready(world, aiohttp_client, tmp_path):
    path = tmp_path / "t.json"
    publish(path, doc_v(world, 3, expires_at=(NOW - dt.timedelta(seconds=1)).isoformat()))
    source = FileTrustSource(path, world.regions, 3, [load_operator_key(TEST_OPERATOR_PUBLIC)], clock=lambda: NOW)
    client = await aiohttp_client(create_app(world.services(trust_source=source)), headers=world.auth())
    resp = await client.get("/readyz")
    assert resp.status == 503 and "expired" in (await resp.json())["problems"][0]
    resp = await client.post("/v1/licences/verify", json={"licence": "eyJ.a.b", "encoding": "utf-8"})
    assert resp.status == 503 and (await resp.json())["code"] == "TRUST_UNAVAILABLE"


async def test_admin_trust_lists_every_revoked_serial_with_its_compromise_flag(world, admin):
    """A revoked serial applies to certificates off the issuer list too (an x5c or OFD signer
    certificate, an intermediate CA): the admin view lists them all, as normalised."""
    client, path, adm, _ = admin
    doc = doc_v(world, 13)
    listed = world.material[REGION].issuers[0].cert.serial_hex
    doc["regions"][REGION]["revoked"] = [
        {"serial": listed.upper(), "revoked_at": NOW.isoformat(), "reason": "superseded"},
        {"serial": "0x0BDB29", "revoked_at": NOW.isoformat(), "reason": "Key-Compromise"},  # on no listed issuer
        {"serial": "bdb2a", "revoked_at": NOW.isoformat(), "reason": "stolen"},  # unknown reason: a compromise
    ]
    publish(path, doc)
    assert (await client.post("/v1/admin/trust/reload", headers=adm)).status == 200
    body = await (await client.get("/v1/admin/trust", headers=adm)).json()
    mine = [r for r in body["revoked_serials"] if r["region"] == REGION]
    assert sorted((r["serial"], r["reason"], r["compromise"]) for r in mine) == sorted([
        (listed, "superseded", False), ("bdb29", "keyCompromise", True), ("bdb2a", "stolen", True)])
    assert [r["serial"] for r in body["revoked_issuers"]] == [listed]
