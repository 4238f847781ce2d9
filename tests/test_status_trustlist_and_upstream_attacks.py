"""Adversarial review of status lists, the signed trust list and the federated query.

Each attack sits beside a genuine control case: the control shows the path works, the attack
shows the gateway refuses (or fails closed) with a specific reason.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import random

import orjson
import pytest
from aiohttp import web

from gateway.issuer_server import IssuerServer
from gateway.region_server import synthetic_name
from gateway.status import REVOKED, build_status_list
from gateway.status_source import HttpStatusSource, encode_status_list_jwt
from gateway.upstream import HolderQuery, ResiliencePolicy, Upstreams
from gateway.upstream.config import TWO_STEP, UpstreamConfig, credentials_for_test_region

from .conftest import NOW
from .test_query_federated import FakeClock, body, by_region, citizen, query
from .test_query_federated import query_client, regions_up  # noqa: F401  (fixtures)
from .test_status_http_fetcher import LIMIT, REGION, Clock


@dataclasses.dataclass
class Served:
    """A loopback HTTP server answering GET /status/{region} with whatever ``token`` holds."""

    url: str
    token: bytes = b""
    hits: int = 0


async def _serve_tokens(region: str):
    served = Served("")

    async def handle(request: web.Request) -> web.Response:
        served.hits += 1
        return web.Response(body=served.token, content_type="application/statuslist+jwt")

    app = web.Application()
    app.router.add_get("/status/{region}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    served.url = f"http://127.0.0.1:{runner.addresses[0][1]}/status/{region}"
    return served, runner


def verify(world, src: HttpStatusSource, data: bytes, now: dt.datetime):
    return world.verifier.verify(data, world.snapshot, src._snapshot, now)


# --- status lists ---------------------------------------------------------------------------
async def test_large_genuine_status_list_arriving_in_several_chunks_is_read_whole(world):
    """A region with a few million licences and scattered revocations publishes a list token of
    more than 100 KB: it arrives in several TCP reads. The fetcher must read the whole body
    (it read only what was buffered first and refused the genuine list as 'not a compact JWT')."""
    served, runner = await _serve_tokens(REGION)
    try:
        rng = random.Random(7)
        size = 4_000_000
        revoked_index = 123_457
        values = {rng.randrange(size): REVOKED for _ in range(60_000)}
        values[revoked_index] = REVOKED
        values.pop(revoked_index + 1, None)
        big = build_status_list(size, 2, values)
        served.token = encode_status_list_jwt(big, world.simulator.signing_key(REGION), sub=served.url,
                                              iat=NOW, exp=NOW + dt.timedelta(hours=1), ttl=300)
        assert len(served.token) > 100_000
        src = HttpStatusSource({REGION: served.url}, lambda r: LIMIT, interval=3600, timeout=5, clock=lambda: NOW,
                               retry_min=3600)
        await src.start(lambda: world.snapshot, lambda snap: None)
        try:
            st = src.states[REGION]
            assert st.last_error is None, st.last_error
            rs = src._snapshot.get(REGION)
            assert rs is not None and rs.status_list.size == size
            assert rs.status_list.get(revoked_index) == REVOKED and rs.status_list.get(revoked_index + 1) == 0
        finally:
            await src.close()
        # control: a tampered large list is still refused (the whole body is checked, not a prefix)
        h, p, s = served.token.split(b".")
        served.token = h + b"." + p[:-8] + (b"A" * 8 if p[-8:] != b"A" * 8 else b"B" * 8) + b"." + s
        src = HttpStatusSource({REGION: served.url}, lambda r: LIMIT, interval=3600, timeout=5, clock=lambda: NOW,
                               retry_min=3600)
        await src.start(lambda: world.snapshot, lambda snap: None)
        try:
            assert src.states[REGION].last_error.startswith(("bad-signature", "malformed"))
            assert src._snapshot.get(REGION) is None
        finally:
            await src.close()
    finally:
        await runner.cleanup()


async def test_old_list_replayed_to_a_restarted_gateway_cannot_unrevoke_a_licence(world):
    """The gateway restarts (nothing held to compare with); a man in the middle serves the list the
    issuer signed two hours ago, before a revocation (still before its 24 h exp). It counted as a
    fresh list and the revoked licence was judged valid."""
    clock = Clock(NOW)
    server = IssuerServer(world.simulator, clock=clock, ttl=300)
    base = await server.start()
    url = {REGION: f"{base}/status/{REGION}"}
    try:
        lic = world.simulator.issue(REGION, None, "valid", NOW)
        first = HttpStatusSource(url, lambda r: LIMIT, interval=3600, timeout=2, clock=clock, retry_min=3600)
        await first.start(lambda: world.snapshot, lambda snap: None)   # the first list is signed now
        await first.close()
        world.simulator.set_status(REGION, lic.licence.status_index, REVOKED)
        clock.advance(hours=2)

        # control: the restarted gateway fetching the current list sees the revocation
        control = HttpStatusSource(url, lambda r: LIMIT, interval=3600, timeout=2, clock=clock, retry_min=3600)
        await control.start(lambda: world.snapshot, lambda snap: None)
        await control.close()
        assert verify(world, control, lic.data, clock()).reason_codes == ("LICENCE_REVOKED",)

        server.set_fault(REGION, "rollback")   # the first list ever signed, two hours old
        restarted = HttpStatusSource(url, lambda r: LIMIT, interval=3600, timeout=2, clock=clock, retry_min=3600)
        await restarted.start(lambda: world.snapshot, lambda snap: None)
        await restarted.close()
        result = verify(world, restarted, lic.data, clock())
        assert result.verdict.value == "indeterminate" and result.reason_codes == ("STATUS_UNAVAILABLE",)
        assert (restarted.states[REGION].last_error or "").startswith("stale"), restarted.states[REGION].last_error
    finally:
        await server.stop()


async def test_same_list_replayed_again_and_again_goes_stale_instead_of_staying_fresh(world):
    """A frozen feed: every fetch gets the same validly signed list (or a 304 for it) while the issuer
    has since revoked licences. Each re-confirmation reset the list's age, so the region stayed
    'fresh' until the list's exp (here 24 h) instead of its 10 min limit."""
    served, runner = await _serve_tokens(REGION)
    clock = Clock(NOW)
    try:
        lic = world.simulator.issue(REGION, None, "valid", NOW)
        served.token = encode_status_list_jwt(world.simulator.status_list(REGION), world.simulator.signing_key(REGION),
                                              sub=served.url, iat=NOW, exp=NOW + dt.timedelta(hours=24), ttl=300)
        src = HttpStatusSource({REGION: served.url}, lambda r: LIMIT, interval=3600, timeout=2, clock=clock,
                               retry_min=3600)
        await src.start(lambda: world.snapshot, lambda snap: None)
        try:
            # control: within the limit the re-served list is re-confirmed and the licence is valid
            clock.advance(minutes=9)
            assert await src.refresh(REGION)
            assert verify(world, src, lic.data, clock()).verdict.value == "valid"
            for _ in range(5):   # 45 more minutes of the same list
                clock.advance(minutes=9)
                await src.refresh(REGION)
            result = verify(world, src, lic.data, clock())
            assert result.verdict.value == "indeterminate" and result.reason_codes == ("STATUS_UNAVAILABLE",)
            assert (src.states[REGION].last_error or "").startswith("stale"), src.states[REGION].last_error
        finally:
            await src.close()
    finally:
        await runner.cleanup()


# --- federated query ----------------------------------------------------------------------------
XML_REGION = "310000"   # 上海: the XML sharing service


@pytest.mark.parametrize("name", ["\x01", "张\x00三", "李\x1b[2J四", "王\ufffe"])
async def test_holder_name_with_control_characters_is_refused_and_cannot_trip_a_regions_breaker(
        query_client, regions_up, name):
    """A partner's holder.name with a control character went into the XML query as is: the region
    could not parse it (400), every such query counted as a failure of the region, and five of them
    opened Shanghai's circuit breaker for every partner. It must be refused as a bad request
    without asking any region."""
    rs, _ = regions_up
    client = await query_client(clock=FakeClock(), breaker_min_requests=3, breaker_error_percent=50)
    code = citizen(area="310101", seq=77)
    for _ in range(4):
        resp = await client.post("/v1/licences/query",
                                 json={**body(code, [XML_REGION]), "holder": {"code_type": "111", "code": code,
                                                                              "name": name}})
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["code"] == "BAD_REQUEST"
    # control: the genuine holder, with the name the region records, still gets the licence
    genuine = {**body(code, [XML_REGION]), "holder": {"code_type": "111", "code": code,
                                                       "name": synthetic_name(code)}}
    region = by_region(await query(client, genuine))[XML_REGION]
    assert region["status"] == "ok", region
    assert [lic["licence"]["holder_code"] for lic in region["licences"]] == [code]


async def _two_step_upstream(sizes: list[int], *, chunked: bool):
    """A list-then-fetch region listing one id per entry of ``sizes``; each fetch answers that many bytes."""
    fetched: list[str] = []

    async def listing(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"code": 0, "ids": [f"L{i}" for i in range(len(sizes))]}),
                            content_type="application/json")

    async def fetch(request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        fetched.append(ident)
        data = b"x" * sizes[int(ident[1:])]
        if not chunked:
            return web.Response(body=data, content_type="application/octet-stream")
        resp = web.StreamResponse()   # no Content-Length: the size shows only while reading
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for at in range(0, len(data), 8192):
            await resp.write(data[at:at + 8192])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/r/{region}/open/v2/licences/list", listing)
    app.router.add_get("/r/{region}/open/v2/licences/{id}", fetch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/r/340100", runner, fetched


@pytest.mark.parametrize("chunked", [False, True])
async def test_two_step_region_cannot_return_many_times_the_body_limit_in_separate_fetches(chunked):
    """Each licence fetch of the list-then-fetch flavour had its own upstream_max_body_bytes, so one
    answer could bring 50 times the limit (100 MiB at the default 2 MiB). The list and its fetches
    together are one answer, bounded like the other flavours' single body."""
    limit = 64 * 1024
    holder = HolderQuery("111", citizen(area="340102"), None, ("11100000000000000000A",))

    async def ask(sizes: list[int]):
        base, runner, fetched = await _two_step_upstream(sizes, chunked=chunked)
        cfg = UpstreamConfig("340100", TWO_STEP, base, credentials_for_test_region("340100", TWO_STEP), 5.0, 4)
        ups = Upstreams({"340100": cfg}, ResiliencePolicy(max_body_bytes=limit))
        await ups.open()
        try:
            return await ups.fetch("340100", holder, asyncio.get_running_loop().time() + 5), fetched
        finally:
            await ups.close()
            await runner.cleanup()

    # control: three small licences, well within the limit together
    ok, fetched = await ask([10_000, 12_000, 9_000])
    assert ok.outcome == "ok" and [len(x) for x in ok.licences] == [10_000, 12_000, 9_000]
    # attack: twelve licences just under the limit each (~12 times the limit in all)
    big, _ = await ask([limit - 100] * 12)
    assert big.outcome == "error", (big.outcome, sum(len(x) for x in big.licences))
    assert "limit" in (big.detail or "") and big.licences == ()


# --- the signed trust list --------------------------------------------------------------------
def _signed_doc_bytes(world, version: int, mutate=None) -> bytes:
    from gateway.trustlist import TEST_OPERATOR_PRIVATE, canonical_json, load_operator_private_key, sign_trust_list
    doc = copy.deepcopy(world.doc)
    doc["version"] = version
    if mutate is not None:
        mutate(doc)
    return canonical_json(sign_trust_list(doc, load_operator_private_key(TEST_OPERATOR_PRIVATE)))


def _reloader(world, path):
    from gateway.edges import FileTrustSource, LiveTrust
    from gateway.trust_routes import TrustReloader
    from gateway.trustlist import TEST_OPERATOR_PUBLIC, load_operator_key
    live = LiveTrust()
    src = FileTrustSource(path, world.regions, 3, [load_operator_key(TEST_OPERATOR_PUBLIC)], clock=lambda: NOW)
    return TrustReloader(src, live, lambda: NOW), live


async def test_signed_list_of_the_wrong_shape_is_refused_and_the_watcher_keeps_watching(world, tmp_path):
    """An operator-signed list whose region entry is not an object raised AttributeError out of the
    reloader: the admin reload answered 500 and the file watcher task died, so even the corrected
    list written next was never loaded."""
    path = tmp_path / "trust.json"
    path.write_bytes(_signed_doc_bytes(world, 5))
    reloader, live = _reloader(world, path)
    assert (await reloader.reload("startup")).outcome == "accepted"
    task = asyncio.create_task(reloader.watch(0.02))
    try:
        path.write_bytes(_signed_doc_bytes(world, 6, lambda d: d["regions"].__setitem__(REGION, ["not", "an object"])))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if reloader.last.trigger == "file-change":
                break
        assert reloader.last.outcome == "refused" and reloader.last.error.startswith("malformed"), reloader.last
        assert live.current.trust.version == 5 and not task.done()
        # control: the corrected list is picked up by the same watcher
        path.write_bytes(_signed_doc_bytes(world, 7))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if live.current.trust.version == 7:
                break
        assert live.current.trust.version == 7 and reloader.last.outcome == "accepted"
    finally:
        task.cancel()


@pytest.mark.parametrize("bad", [{"revoked_at": "2026-11-20"}, {"serial": "zz-not-hex"}, {"revoked_at": None}])
async def test_signed_revocation_that_cannot_be_read_refuses_the_list_instead_of_being_dropped(world, tmp_path, bad):
    """The operator signs a list revoking the region's issuer certificate, with a revoked_at lacking its
    zone (or a serial that is not hex). The entry was dropped and the rest applied: the list reported
    'accepted', and licences of the revoked key stayed valid. All or nothing: the list is refused."""
    lic = world.simulator.issue(REGION, None, "valid", NOW)
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    genuine = world.verifier.verify(lic.data, world.snapshot, status, NOW)
    assert genuine.verdict.value == "valid"
    entry = world.snapshot.by_key_id[genuine.signer_key_id]
    revocation = {"serial": entry.cert.serial_hex, "revoked_at": (NOW - dt.timedelta(days=1)).isoformat(),
                  "reason": "keyCompromise"}

    def revoke(extra):
        return lambda d: d["regions"][REGION].setdefault("revoked", []).append({**revocation, **extra})

    path = tmp_path / "trust.json"
    path.write_bytes(_signed_doc_bytes(world, 5))
    reloader, live = _reloader(world, path)
    assert (await reloader.reload("startup")).outcome == "accepted"
    # control: the well-formed revocation is applied and the licence is refused
    path.write_bytes(_signed_doc_bytes(world, 6, revoke({})))
    assert (await reloader.reload("admin")).outcome == "accepted"
    assert world.verifier.verify(lic.data, live.current.trust, status, NOW).verdict.value == "invalid"
    # attack: the same revocation, unreadable, in a fresh gateway
    path.write_bytes(_signed_doc_bytes(world, 6, revoke(bad)))
    reloader, live = _reloader(world, path)
    outcome = await reloader.reload("startup")
    assert outcome.outcome == "refused" and outcome.error.startswith("malformed"), outcome
    assert "revocation" in outcome.error and live.current.trust is None


HOME = "330100"   # 杭州: REST/JSON + HMAC-SM3


async def _echoing_upstream(answer):
    """A REST/JSON region whose error answer is built by ``answer(holder_code)``."""
    async def handle(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        return web.Response(body=orjson.dumps(answer(doc["holder"]["code"])), content_type="application/json")

    async def handle_xml(request: web.Request) -> web.Response:
        raw = await request.read()
        code = raw.split(b'">', 1)[1].split(b"<", 1)[0].decode()
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><QueryResponse><ResultCode>{answer(code)["code"]}'
               f"</ResultCode><Licences/></QueryResponse>")
        return web.Response(body=xml.encode(), content_type="application/xml")

    app = web.Application()
    app.router.add_post("/r/{region}/share/v1/licences/query", handle)
    app.router.add_post("/r/{region}/ws/LicenceShare/query", handle_xml)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/r/{{region}}", runner


@pytest.mark.parametrize("region", [HOME, XML_REGION])
async def test_region_error_text_cannot_carry_personal_data_or_bulk_into_the_answer(query_client, region):
    """A region's error code was copied into the partner's answer as is: a region echoing the holder
    ("持证主体 330102… 不存在") put the full citizen ID (which the gateway masks everywhere) into it,
    and a 1 MB 'code' came back to the partner whole. Only a short plain code may be quoted."""
    code = citizen(area="310101" if region == XML_REGION else "330102", seq=311)
    echoes = [lambda c: {"code": f"持证主体{c}不存在"}, lambda c: {"code": c}, lambda c: {"code": "x" * 1_000_000}]
    if region == HOME:   # a licence entry whose 'encoding' is the holder's code
        echoes.append(lambda c: {"code": "0", "data": {"licences": [{"encoding": c, "content": "abc"}]}})
    for echo in echoes:
        base, runner = await _echoing_upstream(echo)
        try:
            client = await query_client(base_url=base)
            resp = await client.post("/v1/licences/query", json=body(code, [region]))
            text = await resp.text()
            assert resp.status == 200, text
            answer = by_region(orjson.loads(text))[region]
            assert answer["status"] == "error" and answer["licences"] == []
            assert code not in text, answer["detail"]
            assert len(text) < 4000, len(text)
        finally:
            await runner.cleanup()
    # control: a short plain error code is still quoted, so the operator can tell errors apart
    base, runner = await _echoing_upstream(lambda c: {"code": "E1001"})
    try:
        client = await query_client(base_url=base)
        answer = by_region(await query(client, body(code, [region])))[region]
        assert answer["status"] == "error" and "E1001" in answer["detail"]
    finally:
        await runner.cleanup()
