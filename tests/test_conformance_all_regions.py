"""Conformance: every region x the licence types it issues x every simulator case, through HTTP.

Each licence is issued by the issuer simulator in the region's own format (from its spec)
and verified by POSTing it to the gateway. To keep the run short, every licence type is
exercised in full (every type x every case) for one or two regions of each family and
algorithm, and elsewhere the
types rotate over the cases, so every region meets every case and every type is met in
every family; the test asserts that coverage instead of assuming it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest

from gateway.app import LIVE
from gateway.simulator import CASES

from .conftest import NOW

#: one region of each family / algorithm gets every licence type it issues
FULL_REGIONS = ("330100", "220600", "320200", "340200", "310000", "500102", "341100", "652929")


def plan(world) -> dict[str, list[tuple[str, str]]]:
    """region -> [(type key, case)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for i, region in enumerate(sorted(world.specs)):
        types = world.simulator.licence_types_of(region)
        items = [(types[(i + j) % len(types)], case) for j, case in enumerate(CASES)]
        if region in FULL_REGIONS:
            items = [(t, case) for t in types for case in CASES]
        out[region] = items
    return out


async def verify_batch(api, bodies: list[dict]) -> list[dict]:
    results = []
    for start in range(0, len(bodies), 100):
        resp = await api.post("/v1/licences/verify-batch", json={"licences": bodies[start:start + 100]})
        assert resp.status == 200, await resp.text()
        results += (await resp.json())["results"]
    return results


def test_plan_covers_every_region_case_and_type(world):
    p = plan(world)
    assert set(p) == set(world.specs) and len(p) == 45
    all_types = {t.key for t in world.catalogue.types}
    types_by_family: dict[str, set[str]] = defaultdict(set)
    for region, items in p.items():
        assert {case for _, case in items} == set(CASES)
        types_by_family[world.specs[region].family] |= {t for t, _ in items}
    assert set(types_by_family) == {"jws", "sm2-json", "sm2-xml", "ofd-seal"}
    for family, covered in types_by_family.items():
        assert covered == all_types, family


@pytest.mark.parametrize("family", ["jws", "sm2-json", "sm2-xml", "ofd-seal"])
async def test_every_region_type_and_case_gets_its_expected_verdict_over_http(api, world, family):
    failures = []
    issued_all = []
    for region, items in plan(world).items():
        if world.specs[region].family != family:
            continue
        issued_all += [world.simulator.issue(region, type_key, case, NOW) for type_key, case in items]
    # revocations and suspensions reach the gateway through its status refresh
    api.app[LIVE].set_status(world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)))
    results = await verify_batch(api, [i.body() for i in issued_all])
    assert len(results) == len(issued_all)
    for issued, result in zip(issued_all, results):
        codes = [r["code"] for r in result["reasons"]]
        ok = result["verdict"] == issued.expect_verdict and (
            codes == [] if issued.expect_reason is None else issued.expect_reason in codes)
        if issued.case not in ("malformed",):
            ok = ok and result["format"] == family
        if issued.case == "valid":
            ok = ok and result["region"]["code"] == issued.region and result["licence"]["type_code"] == \
                issued.licence.type_code and result["licence"]["holder_code"] == issued.licence.holder_code
        if not ok:
            failures.append((issued.region, issued.type_key, issued.case, result["verdict"], result["reasons"]))
    assert failures == []
    assert len(issued_all) >= 9 * sum(1 for s in world.specs.values() if s.family == family)


async def test_malformed_licences_are_recognised_as_their_own_family(api, world):
    for region in ("330100", "320200", "310000"):
        issued = world.simulator.issue(region, None, "malformed", NOW)
        resp = await api.post("/v1/licences/verify", json=issued.body())
        body = await resp.json()
        assert body["verdict"] == "invalid" and [r["code"] for r in body["reasons"]] == ["MALFORMED"]
        assert body["format"] == world.specs[region].family


async def test_regions_endpoint_shows_each_regions_family_and_trust(api, world):
    resp = await api.get("/v1/regions")
    assert resp.status == 200
    regions = {r["code"]: r for r in (await resp.json())["regions"]}
    assert len(regions) == 45
    for code, spec in world.specs.items():
        assert regions[code]["format"] == spec.family
        assert regions[code]["algorithms"] == list(spec.algorithms)
        assert regions[code]["trust"]["state"] == "ok" and regions[code]["trust"]["issuers"] >= 1
    families = defaultdict(list)
    for code, r in regions.items():
        families[r["format"]].append(code)
    assert sorted(families["sm2-json"])[:1] == ["220600"] and "330100" in families["sm2-json"]
    assert {"310000", "500102"} <= set(families["ofd-seal"])
    assert {"341100", "511600", "652929"} <= set(families["jws"])
    assert "320200" in families["sm2-xml"] and "340200" in families["sm2-xml"]
