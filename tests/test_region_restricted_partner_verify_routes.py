"""A partner restricted to some regions (``regions`` in its registry file) must not read a
licence of another region through the verify routes.

``restricted-partner`` may act for 湖州 (330500) and 上海 (310000). The item check already
refused it a 苏州 licence (403), but ``POST /v1/licences/verify`` and ``verify-batch`` answered
200 ``valid`` with the whole licence, the holder's code unmasked. Controls: the same partner
verifying a 上海 licence, and the unrestricted demo partner verifying the 苏州 one.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway.app import create_app

from .conftest import NOW

SUZHOU, SHANGHAI = "320500", "310000"


def entry(world: Any, region: str) -> dict[str, str]:
    """A genuine licence of ``region`` as a verify request's entry."""
    data = world.simulator.issue(region, "business_licence", "valid", NOW).data
    return {"licence": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


@pytest.fixture
async def app_client(world: Any, aiohttp_client: Any) -> Any:
    return await aiohttp_client(create_app(world.services()))


async def test_restricted_partner_verifying_a_licence_of_another_region_is_forbidden(world: Any, app_client: Any) -> None:
    resp = await app_client.post("/v1/licences/verify", json=entry(world, SUZHOU),
                                 headers=world.auth(client_id="restricted-partner"))
    body = await resp.json()
    assert resp.status == 403, body
    assert body["code"] == "FORBIDDEN" and body["detail"] == "partner restricted-partner may not use region 320500"
    assert set(body) == {"type", "title", "title_zh", "status", "code", "detail", "request_id"}  # no licence data


async def test_restricted_partner_verifying_a_licence_of_its_own_region_is_answered(world: Any, app_client: Any) -> None:
    resp = await app_client.post("/v1/licences/verify", json=entry(world, SHANGHAI),
                                 headers=world.auth(client_id="restricted-partner"))
    body = await resp.json()
    assert resp.status == 200, body
    assert body["verdict"] == "valid" and body["region"]["code"] == SHANGHAI


async def test_unrestricted_partner_still_verifies_the_other_region(world: Any, app_client: Any) -> None:
    resp = await app_client.post("/v1/licences/verify", json=entry(world, SUZHOU), headers=world.auth())
    body = await resp.json()
    assert resp.status == 200 and body["verdict"] == "valid" and body["region"]["code"] == SUZHOU


async def test_restricted_partner_batch_with_one_licence_of_another_region_is_forbidden(world: Any,
                                                                                       app_client: Any) -> None:
    batch = {"licences": [entry(world, SHANGHAI), entry(world, SUZHOU)]}
    resp = await app_client.post("/v1/licences/verify-batch", json=batch,
                                 headers=world.auth(client_id="restricted-partner"))
    body = await resp.json()
    assert resp.status == 403, body
    assert body["code"] == "FORBIDDEN" and "results" not in body and "receipt" not in body


async def test_restricted_partner_batch_of_its_own_regions_is_answered(world: Any, app_client: Any) -> None:
    batch = {"licences": [entry(world, SHANGHAI), entry(world, "330500")]}
    resp = await app_client.post("/v1/licences/verify-batch", json=batch,
                                 headers=world.auth(client_id="restricted-partner"))
    body = await resp.json()
    assert resp.status == 200, body
    assert [r["verdict"] for r in body["results"]] == ["valid", "valid"]
