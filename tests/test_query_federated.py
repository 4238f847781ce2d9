"""POST /v1/licences/query end to end: real tokens, the simulated regions on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.auth import demo_token, load_partners
from gateway.identifiers import citizen_id_check
from gateway.query_routes import QUERY_AUDIT, UPSTREAM_CLOCK, QueryAuditRecord
from gateway.region_server import RegionSimulator, serve, synthetic_name
from tests.conftest import NOW

HOME = "330100"     # 杭州 (REST/JSON + HMAC-SM3, sm2-json licences)
SECOND = "320100"   # 南京 (REST/JSON + SM2 request signature, sm2-xml licences)
XML_REGION = "310000"   # 上海 (XML service, OFD licences)
TWO_STEP = "340100"     # 合肥 (list-then-fetch, JWS licences)
ITEM = "KS-009"     # 个体工商户设立登记: id_card disclosed as name, codes, valid_until, gender, birth date, address


def citizen(area: str = "330102", birth: str = "19850612", seq: int = 123) -> str:
    first17 = f"{area}{birth}{seq:03d}"
    return first17 + citizen_id_check(first17)


class Collect:
    def __init__(self) -> None:
        self.records: list[QueryAuditRecord] = []

    async def record_query(self, record: QueryAuditRecord) -> None:
        self.records.append(record)


class FailingAudit:
    async def record_query(self, record: QueryAuditRecord) -> None:
        raise ConnectionError("audit store down")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def regions_up(world):
    rs = RegionSimulator(world.simulator, {t.type_code: t for t in world.catalogue.types}, lambda: NOW)
    async with serve(rs) as template:
        yield rs, template


@pytest.fixture
def query_client(world, aiohttp_client, regions_up):
    async def make(*, clock: Any = None, audit: Any = None, partners: Any = None, headers: Any = None,
                   **settings: Any):
        rs, template = regions_up
        cfg = dataclasses.replace(world.settings, upstream_base_url=settings.pop("base_url", template), **settings)
        overrides: dict[str, Any] = {"settings": cfg}
        if partners is not None:
            overrides["partners"] = partners
        app = create_app(world.services(**overrides))
        if clock is not None:
            app[UPSTREAM_CLOCK] = clock
        app[QUERY_AUDIT] = audit if audit is not None else Collect()
        return await aiohttp_client(app, headers=headers or world.auth())
    return make


def body(code: str, regions: list[str] | None = None, types: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"holder": {"code_type": "111", "code": code}, "licence_types": types or ["id_card"],
                           "item": ITEM, "use_cause": "个体工商户设立登记，核验申请人身份"}
    if regions is not None:
        out["regions"] = regions
    out.update(kw)
    return out


async def query(client, payload: dict[str, Any], status: int = 200) -> dict[str, Any]:
    resp = await client.post("/v1/licences/query", json=payload)
    text = await resp.text()
    assert resp.status == status, text
    return orjson.loads(text)


def by_region(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["region"]: r for r in answer["regions"]}


async def test_holder_with_licences_in_two_regions_gets_both(query_client, regions_up):
    rs, _ = regions_up
    code = citizen()
    rs.grant(SECOND, code)
    client = await query_client()
    answer = await query(client, body(code, [HOME, SECOND]))
    regions = by_region(answer)
    for region in (HOME, SECOND):
        assert regions[region]["status"] == "ok", (regions[region]["detail"], regions[region]["rejected"])
        [lic] = regions[region]["licences"]
        assert lic["verdict"] == "valid" and lic["type"] == "id_card"
        assert lic["licence"]["holder_code"] == code
        assert lic["licence"]["holder_name"] == synthetic_name(code)
        assert regions[region]["rejected"] == []
    assert answer["complete"] is True


@pytest.mark.parametrize("region", [XML_REGION, TWO_STEP])
async def test_xml_and_two_step_flavours_return_verified_licences(query_client, regions_up, region):
    rs, _ = regions_up
    code = citizen()
    rs.grant(region, code)
    answer = await query(await query_client(), body(code, [region]))
    [lic] = by_region(answer)[region]["licences"]
    assert lic["verdict"] == "valid" and lic["licence"]["holder_code"] == code


async def test_holder_without_licences_in_a_region_is_not_found(query_client):
    answer = await query(await query_client(), body(citizen(), [SECOND]))
    assert by_region(answer)[SECOND]["status"] == "not_found"
    assert answer["complete"] is True


async def test_one_region_timing_out_gives_a_partial_answer_within_the_deadline(query_client, regions_up):
    rs, _ = regions_up
    code = citizen()
    rs.grant(SECOND, code)
    rs.set_faults(SECOND, latency_ms=5000)
    client = await query_client()
    t0 = time.perf_counter()
    answer = await query(client, body(code, [HOME, SECOND], deadline_ms=800))
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.8 + 0.25, elapsed
    regions = by_region(answer)
    assert regions[HOME]["status"] == "ok" and len(regions[HOME]["licences"]) == 1
    assert regions[SECOND]["status"] == "timeout" and regions[SECOND]["licences"] == []
    assert answer["complete"] is False and answer["deadline_ms"] == 800


async def test_caller_cannot_raise_the_deadline_above_the_setting(query_client):
    answer = await query(await query_client(query_deadline_ms=1500), body(citizen(), [HOME], deadline_ms=60_000))
    assert answer["deadline_ms"] == 1500


async def test_remaining_budget_is_sent_to_the_region(query_client, regions_up):
    rs, _ = regions_up
    await query(await query_client(), body(citizen(), [HOME], deadline_ms=900))
    sent = rs.stats[HOME].last_deadline_ms
    assert sent is not None and 0 < sent <= 900


async def test_failing_region_opens_its_circuit_and_recovers_after_the_cool_down(query_client, regions_up):
    rs, _ = regions_up
    clock = FakeClock()
    code = citizen()
    rs.grant(TWO_STEP, code)
    rs.set_faults(TWO_STEP, fail=True)
    client = await query_client(clock=clock, breaker_min_requests=3, breaker_error_percent=50,
                                breaker_cool_down_seconds=10, breaker_window_seconds=60)
    for _ in range(3):
        assert by_region(await query(client, body(code, [TWO_STEP])))[TWO_STEP]["status"] == "error"
    asked = rs.stats[TWO_STEP].requests
    answer = await query(client, body(code, [TWO_STEP]))
    assert by_region(answer)[TWO_STEP]["status"] == "circuit_open"
    assert answer["meta"]["upstreams"][TWO_STEP]["breaker"] == "open"
    assert rs.stats[TWO_STEP].requests == asked  # an open circuit does not call the region
    rs.clear_faults()
    clock.t += 9.0
    assert by_region(await query(client, body(code, [TWO_STEP])))[TWO_STEP]["status"] == "circuit_open"
    clock.t += 1.0  # cool-down over: one probe goes out, succeeds, closes the circuit
    answer = await query(client, body(code, [TWO_STEP]))
    assert by_region(answer)[TWO_STEP]["status"] == "ok"
    assert answer["meta"]["upstreams"][TWO_STEP]["breaker"] == "closed"


async def test_licence_of_another_person_is_rejected_and_not_disclosed(query_client, regions_up):
    rs, _ = regions_up
    rs.set_faults(HOME, wrong_holder=True)
    code = citizen()
    resp = await (await query_client()).post("/v1/licences/query", json=body(code, [HOME]))
    text = await resp.text()
    region = by_region(orjson.loads(text))[HOME]
    assert region["status"] == "error" and region["licences"] == []
    assert [r["reasons"][0]["code"] for r in region["rejected"]] == ["HOLDER_MISMATCH"]
    other_names = {synthetic_name(code)}
    assert "holder_name" not in text and all(n not in text for n in other_names)


async def test_tampered_licence_from_an_upstream_is_rejected_as_bad_signature(query_client, regions_up):
    rs, _ = regions_up
    rs.set_faults(HOME, tamper=True)
    code = citizen()
    answer = await query(await query_client(), body(code, [HOME]))
    region = by_region(answer)[HOME]
    assert region["status"] == "error" and region["licences"] == []
    assert [r["reasons"][0]["code"] for r in region["rejected"]] == ["SIGNATURE_INVALID"]


async def test_hanging_upstream_does_not_hold_a_worker(query_client, regions_up, world):
    rs, _ = regions_up
    rs.set_faults(SECOND, hang=True)
    client = await query_client()
    t0 = time.perf_counter()
    hanging = asyncio.create_task(query(client, body(citizen(), [SECOND], deadline_ms=2000)))
    await asyncio.sleep(0.1)
    presented = world.simulator.issue(HOME, "id_card", now=NOW)
    for i in range(5):
        t = time.perf_counter()
        answer = await query(client, body(citizen(seq=200 + i), [HOME]))
        assert by_region(answer)[HOME]["status"] == "ok"
        resp = await client.post("/v1/licences/verify", json=presented.body())
        assert resp.status == 200 and (await resp.json())["verdict"] == "valid"
        assert time.perf_counter() - t < 1.0
    assert not hanging.done()  # the other requests were answered while the upstream hung
    answer = await hanging
    assert by_region(answer)[SECOND]["status"] == "timeout"
    assert time.perf_counter() - t0 < 2.0 + 0.3


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}/{k}", k, v
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


async def test_only_the_items_disclosure_list_leaves_the_gateway(query_client, world):
    req = world.catalogue.item(ITEM).requirement("applicant_identity")
    allowed = set(req.disclose)
    answer = await query(await query_client(), body(citizen(), [HOME]))
    [lic] = by_region(answer)[HOME]["licences"]
    disclosed = lic["licence"]
    assert set(disclosed) - {"surface"} <= allowed and set(disclosed["surface"]) <= allowed
    assert {"gender", "birth_date", "address"} <= set(disclosed["surface"])
    for path, key, _ in _walk(answer):
        assert key not in ("ethnicity", "identifier", "issuer_name", "issuer_code", "number", "status_index"), path


async def test_default_route_is_the_id_region_plus_the_items_regions(query_client, world):
    client = await query_client()
    answer = await query(client, body(citizen(area="330502"), None))  # 湖州 吴兴区; item in all regions
    assert [r["region"] for r in answer["regions"]] == ["330500"]
    g60 = next(i for i in world.catalogue.items if not i.all_regions and len(i.regions) == 9
               and any(r.binding == "holder" and "id_card" in r.accept for r in i.requirements))
    answer = await query(client, {**body(citizen(area="320583"), None), "item": g60.code})  # 昆山 -> 苏州
    asked = [r["region"] for r in answer["regions"]]
    assert asked[0] == "320500" and set(asked) == {"320500", *g60.regions}


async def test_every_query_is_audited_with_a_keyed_hash_only(query_client, regions_up):
    rs, _ = regions_up
    audit = Collect()
    code = citizen()
    rs.set_faults(SECOND, fail=True)
    await query(await query_client(audit=audit), body(code, [HOME, SECOND]))
    [record] = audit.records
    fields = record.as_audit_fields()
    assert fields["partner"] == "demo-partner" and fields["item_code"] == ITEM and fields["kind"] == "query"
    assert dict(record.regions) == {HOME: "ok", SECOND: "error"}
    assert fields["extra"]["use_cause"].startswith("个体工商户")
    assert len(record.holder_hmac) == 64 and code not in orjson.dumps(fields).decode()


async def test_no_answer_without_an_audit_record(query_client):
    resp = await (await query_client(audit=FailingAudit())).post("/v1/licences/query", json=body(citizen(), [HOME]))
    assert resp.status == 503 and (await resp.json())["code"] == "AUDIT_UNAVAILABLE"


async def test_safe_failure_is_retried_and_answered(query_client, regions_up):
    rs, _ = regions_up
    rs.set_faults(HOME, unavailable=1)
    region = by_region(await query(await query_client(), body(citizen(), [HOME])))[HOME]
    assert region["status"] == "ok" and region["attempts"] == 2


async def test_500_is_not_retried(query_client, regions_up):
    rs, _ = regions_up
    rs.set_faults(HOME, fail=True)
    region = by_region(await query(await query_client(), body(citizen(), [HOME])))[HOME]
    assert region["status"] == "error" and region["attempts"] == 1 and rs.stats[HOME].requests == 1


async def test_connection_refused_is_retried_then_reported(query_client):
    client = await query_client(base_url="http://127.0.0.1:9/r/{region}", upstream_backoff_ms=5)
    region = by_region(await query(client, body(citizen(), [HOME])))[HOME]
    assert region["status"] == "error" and region["attempts"] == 3 and "connect" in region["detail"]


@pytest.mark.parametrize("fault", ["malformed", "oversized"])
async def test_malformed_or_oversized_answers_are_errors(query_client, regions_up, fault):
    rs, _ = regions_up
    rs.set_faults(HOME, **{fault: True})
    region = by_region(await query(await query_client(), body(citizen(), [HOME])))[HOME]
    assert region["status"] == "error" and region["licences"] == []


@pytest.mark.parametrize("payload,status,code", [
    ({"holder": {"code_type": "111", "code": "330102198506121230"}}, 400, "APPLICANT_INVALID"),
    ({"use_cause": "x" * 201}, 400, "BAD_REQUEST"),
    ({"use_cause": "核验 " + citizen()}, 400, "BAD_REQUEST"),
    ({"use_cause": "核验申请人 ID" + citizen()}, 400, "BAD_REQUEST"),  # run together with letters
    ({"use_cause": "核验\x00申请人\x1b身份"}, 400, "BAD_REQUEST"),  # control characters
    ({"licence_types": ["business_licence_of_nobody"]}, 400, "BAD_REQUEST"),
    ({"licence_types": ["marriage_certificate"]}, 400, "TYPE_NOT_ACCEPTED"),
    ({"regions": ["999999"]}, 400, "BAD_REQUEST"),
    ({"item": "KS-999"}, 404, "NOT_FOUND"),
    ({"deadline_ms": 0}, 400, "BAD_REQUEST"),
    ({"smuggled": 1}, 400, "BAD_REQUEST"),
])
async def test_bad_queries_are_refused_with_a_specific_reason(query_client, payload, status, code):
    resp = await (await query_client()).post("/v1/licences/query", json={**body(citizen(), [HOME]), **payload})
    assert resp.status == status and (await resp.json())["code"] == code


async def test_partner_without_the_query_scope_is_forbidden(query_client, world):
    client = await query_client(headers=world.auth(client_id="restricted-partner"))
    resp = await client.post("/v1/licences/query", json=body(citizen(), [HOME]))
    assert resp.status == 403


@pytest.fixture
def admin_registry(world, tmp_path: Path) -> Path:
    src = Path(world.settings.partners_dir)
    for f in ("demo-partner.test-private.pem", "demo-partner.test-public.pem"):
        (tmp_path / f).write_bytes((src / f).read_bytes())
    toml = (src / "demo-partner.toml").read_text(encoding="utf-8")
    (tmp_path / "demo-partner.toml").write_text(toml.replace('"items:check"]', '"items:check", "admin"]'),
                                              encoding="utf-8")
    return tmp_path


async def test_admin_sees_per_region_counters_and_breakers(query_client, world, admin_registry):
    token = demo_token(admin_registry, gateway_key=world.gateway_key, token_endpoint=world.settings.token_endpoint_url,
                       now=NOW.timestamp(), scope="licences:query admin")["access_token"]
    client = await query_client(partners=load_partners(admin_registry), headers={"Authorization": f"Bearer {token}"})
    await query(client, body(citizen(), [HOME]))
    resp = await client.get("/v1/admin/upstreams")
    assert resp.status == 200
    home = (await resp.json())["upstreams"][HOME]
    assert home["flavour"] == "hmac-json" and home["breaker"]["state"] == "closed"
    assert home["requests"] == 1 and home["outcomes"]["ok"] == 1 and home["latency_ms"]["max"] > 0


async def test_admin_route_needs_the_admin_scope(query_client):
    resp = await (await query_client()).get("/v1/admin/upstreams")
    assert resp.status == 403
