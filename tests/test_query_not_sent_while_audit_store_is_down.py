"""While the audit store is known to be down, a federated query answers 503 AUDIT_UNAVAILABLE without
asking any region: the region would otherwise learn of this holder's query (a personal-data disclosure)
although nothing of the query can be recorded. Before, the regions were asked and only the answer
refused. The API and the console's fetch share the check (gateway.query_routes.ask_regions)."""

from __future__ import annotations

import dataclasses

from gateway.app import create_app
from gateway.audit_wiring import AUDIT
from tests.test_query_federated import HOME, body, citizen
from tests.test_query_federated import regions_up  # noqa: F401  (fixture)


async def _client(world, aiohttp_client, template):
    app = create_app(world.services(settings=dataclasses.replace(world.settings, upstream_base_url=template)))
    return app, await aiohttp_client(app, headers=world.auth())


async def test_query_while_the_audit_store_is_down_asks_no_region(world, aiohttp_client, regions_up) -> None:
    rs, template = regions_up
    app, client = await _client(world, aiohttp_client, template)
    # control: with the store up the region is asked and answers
    resp = await client.post("/v1/licences/query", json=body(citizen(seq=601), [HOME]))
    assert resp.status == 200 and rs.stats[HOME].requests == 1
    trail = app[AUDIT]
    sink, trail.sink, trail.last_error = trail.sink, None, "disk full (test)"
    try:
        resp = await client.post("/v1/licences/query", json=body(citizen(seq=602), [HOME]))
        problem = await resp.json()
    finally:
        trail.sink = sink
    assert resp.status == 503 and problem["code"] == "AUDIT_UNAVAILABLE"
    assert "no region was asked" in problem["detail"] and "disk full" in problem["detail"]
    assert rs.stats[HOME].requests == 1   # the region never heard of the second holder


async def test_query_while_the_audit_writer_is_dead_asks_no_region(world, aiohttp_client, regions_up,
                                                                   monkeypatch) -> None:
    rs, template = regions_up
    app, client = await _client(world, aiohttp_client, template)
    monkeypatch.setattr(type(app[AUDIT].sink), "alive", property(lambda self: False))
    resp = await client.post("/v1/licences/query", json=body(citizen(seq=603), [HOME]))
    assert resp.status == 503 and (await resp.json())["code"] == "AUDIT_UNAVAILABLE"
    assert rs.stats[HOME].requests == 0
