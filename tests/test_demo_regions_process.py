"""Demo mode's simulated issuing regions run apart from the gateway: a licence the regions
issue as revoked is answered LICENCE_REVOKED by a gateway that only fetches their status lists."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from gateway import demo_regions
from gateway.app import create_app
from gateway.auth import demo_token
from gateway.bootstrap import build_services
from gateway.config import load_settings


async def test_gateway_reads_the_separate_regions_status_and_queries(tmp_path, aiohttp_client):
    base = load_settings(demo=True, var_dir=str(tmp_path), audit_backend="memory", env={})
    regions_server = TestServer(demo_regions.build_app(base), host="127.0.0.1")
    await regions_server.start_server()
    try:
        root = f"http://127.0.0.1:{regions_server.port}"
        settings = load_settings(demo=True, var_dir=str(tmp_path), audit_backend="memory", env={},
                                 status_url_template=f"{root}/issuer/status/{{region}}",
                                 upstream_base_url=f"{root}/regions/r/{{region}}", status_refresh_seconds=1)
        services = build_services(settings)

        token = demo_token(settings.partners_dir, gateway_key=services.gateway_key,
                           token_endpoint=settings.token_endpoint_url)["access_token"]
        client = await aiohttp_client(create_app(services), headers={"Authorization": f"Bearer {token}"})
        http = client.session
        for _ in range(50):  # first status fetch happens in the background
            regions = await (await client.get("/v1/regions")).json()
            if all(r["status_list"] and r["status_list"]["fresh"] for r in regions["regions"]):
                break
            await asyncio.sleep(0.2)
        verdicts = {}
        for state in ("valid", "revoked", "suspended"):
            async with http.get(f"{root}/issue", params={"region": "330500", "state": state}) as resp:
                body = await resp.json()
            answer = await (await client.post("/v1/licences/verify", json=body)).json()
            verdicts[state] = (answer["verdict"], [r["code"] for r in answer["reasons"]])
        assert verdicts == {"valid": ("valid", []), "revoked": ("invalid", ["LICENCE_REVOKED"]),
                            "suspended": ("invalid", ["LICENCE_SUSPENDED"])}
        # revoke a licence that was valid, at the regions' side only: the gateway learns it by fetching
        async with http.get(f"{root}/issue", params={"region": "330500", "state": "valid"}) as resp:
            body = await resp.json()
        first = await (await client.post("/v1/licences/verify", json=body)).json()
        assert first["verdict"] == "valid"
        index = first["licence"]["status_index"]
        async with http.post(f"{root}/issuer/control/330500/status", json={"index": index, "status": "revoked"}) as r:
            assert r.status == 200
        for _ in range(40):
            answer = await (await client.post("/v1/licences/verify", json=body)).json()
            if answer["verdict"] != "valid":
                break
            await asyncio.sleep(0.1)
        assert [r["code"] for r in answer["reasons"]] == ["LICENCE_REVOKED"]
        async with http.get(f"{root}/issue", params={"region": "999999"}) as resp:
            assert resp.status == 400 and "unknown region" in (await resp.json())["error"]
    finally:
        await regions_server.close()
