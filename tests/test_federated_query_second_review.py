"""Second adversarial review of the federated query (``POST /v1/licences/query``): correctness and
personal data, seen from a region system that lies or misbehaves and from a partner fishing.

Each attack sits beside a genuine control. Found and fixed here:

* a region's broken HTTP answer (status line, headers of a half-sent answer) quoting the holder's
  citizen ID reached the partner's answer through aiohttp's error text;
* a partner's own short ``deadline_ms`` made its queries time out and counted as failures of the
  region: a few of them opened the region's circuit breaker for every partner;
* an answer a region (or a proxy) sent twice was queued on the kept-alive connection and read as the
  answer of the NEXT query sent on it (another applicant's, another region's);
* regions answering many licences just before the deadline held the answer past it (verification
  does not yield to the event loop, so the deadline could not cut it);
* a licence a region listed twice was listed (and disclosed) twice;
* the query's audit record did not say which licences were judged, with what verdict, nor whose
  fields the partner received.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gc
import time

import orjson
import pytest
from aiohttp import web

from gateway.query_routes import judge, parse_query, region_answer
from gateway.region_server import synthetic_name
from gateway.upstream import RegionFetch

from .conftest import NOW
from .test_query_federated import (HOME, SECOND, TWO_STEP, Collect, FakeClock, body, by_region, citizen,
                                   query)
from .test_query_federated import query_client, regions_up  # noqa: F401  (fixtures)

#: the regions served REST/JSON + HMAC-SM3 (gateway.upstream.config.default_flavour)
HMAC_JSON_REGIONS = ["220600"] + [f"33{i:02d}00" for i in range(1, 12)] + ["500102", "511600", "652929"]


async def _raw_region(answer: bytes):
    """A 'region' on loopback that reads one HTTP request per connection and writes ``answer`` raw."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            writer.write(answer)
            await writer.drain()
            await asyncio.sleep(0.05)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/r/{{region}}", server


# --- a region's broken HTTP answer echoing the holder ----------------------------------------------
@pytest.mark.parametrize("broken", ["status line", "half-sent headers", "chunk size", "header line"])
async def test_broken_http_answer_echoing_the_citizen_id_does_not_reach_the_partner(query_client, broken):
    """aiohttp's error text quotes the bytes it could not read; it became the region's ``detail`` in the
    partner's answer, so a region writing the holder's ID into a broken status line or header put the
    full citizen ID (masked everywhere else) into the answer. Only the error's class is reported now."""
    code = citizen(seq=711)
    answer = {
        "status line": b"HTTP/1.1 2x0 " + code.encode() + b"\r\nContent-Length: 0\r\n\r\n",
        "half-sent headers": b"HTTP/1.1 200 OK\r\nX-Holder: " + code.encode() + b"\r\nContent-Le",
        "chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + code.encode() + b"\r\n",
        "header line": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + code.encode() + b"\r\n\r\nhello",
    }[broken]
    base, server = await _raw_region(answer)
    try:
        resp = await (await query_client(base_url=base)).post("/v1/licences/query", json=body(code, [HOME]))
        text = await resp.text()
        assert resp.status == 200, text
        region = by_region(orjson.loads(text))[HOME]
        assert region["status"] == "error" and region["licences"] == []
        assert code not in text, region["detail"]
        assert "HTTP answer" in region["detail"] or "body" in region["detail"], region["detail"]
    finally:
        server.close()


async def test_control_a_plain_http_error_is_still_reported(query_client):
    base, server = await _raw_region(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    try:
        region = by_region(await query(await query_client(base_url=base), body(citizen(seq=712), [HOME])))[HOME]
        assert region["status"] == "error" and region["detail"] == "region answered HTTP 500"
    finally:
        server.close()


# --- one partner's short deadlines and everyone's breaker ------------------------------------------
async def test_partners_short_deadlines_cannot_open_a_regions_breaker_for_everyone(query_client, regions_up):
    """A region answering in 300 ms is healthy (its timeout is 2.5 s). A partner asking with
    ``deadline_ms: 150`` timed out each time, and each was counted as a failure of the region: three
    such queries opened the breaker, and every partner got ``circuit_open`` for 15 s."""
    rs, _ = regions_up
    rs.set_faults(HOME, latency_ms=300)
    client = await query_client(clock=FakeClock(), breaker_min_requests=3, breaker_error_percent=50)
    for _ in range(4):
        region = by_region(await query(client, body(citizen(seq=721), [HOME], deadline_ms=150)))[HOME]
        assert region["status"] == "timeout"   # the partner's own choice: answered timeout, as before
    answer = await query(client, body(citizen(seq=722), [HOME]))
    assert by_region(answer)[HOME]["status"] == "ok", by_region(answer)[HOME]
    assert answer["meta"]["upstreams"][HOME]["breaker"] == "closed"


async def test_control_a_region_exceeding_its_own_timeout_still_opens_its_breaker(query_client, regions_up):
    rs, _ = regions_up
    rs.set_faults(HOME, latency_ms=300)
    client = await query_client(clock=FakeClock(), breaker_min_requests=3, breaker_error_percent=50,
                                upstream_timeout_ms=150)
    for _ in range(3):
        assert by_region(await query(client, body(citizen(seq=723), [HOME])))[HOME]["status"] == "timeout"
    assert by_region(await query(client, body(citizen(seq=724), [HOME])))[HOME]["status"] == "circuit_open"


# --- an answer sent twice on a kept-alive connection -----------------------------------------------
async def test_answer_sent_twice_is_not_read_as_the_next_querys_answer(query_client, regions_up):
    """The region (or a proxy before it) writes its answer again 20 ms later. aiohttp queued it on the
    idle kept-alive connection and handed it to the next request sent there: the next applicant got
    the previous applicant's answer (rejected as HOLDER_MISMATCH: ``error`` instead of their licence),
    a query of another region on the same host got 杭州's answer, and every later answer came one query
    late (a holder with a licence could be answered ``not_found``)."""
    rs, _ = regions_up
    first, second, third = citizen(seq=731), citizen(seq=732), citizen(seq=733)
    rs.grant(SECOND, second)
    client = await query_client()
    rs.set_faults(HOME, replay_ms=20)
    region = by_region(await query(client, body(first, [HOME])))[HOME]
    assert region["status"] == "ok" and region["licences"][0]["licence"]["holder_code"] == first  # control
    await asyncio.sleep(0.2)   # the second copy arrives while the connection waits in the pool
    rs.clear_faults()
    for code, where in ((second, SECOND), (third, HOME)):
        region = by_region(await query(client, body(code, [where])))[where]
        assert region["status"] == "ok", (where, region["detail"], region["rejected"])
        assert [lic["licence"]["holder_code"] for lic in region["licences"]] == [code]


# --- many licences just before the deadline ------------------------------------------------------
async def _flooding_regions(rs, *, before_budget_ms: int | None):
    """Every REST/JSON region answers 50 genuine licences of other people (each must be verified to be
    rejected), ``before_budget_ms`` before the attempt's budget ends (None: at once)."""
    lics = {r: [rs.licence(r, "id_card", "111", citizen(area="110101", seq=i)) for i in range(1, 51)]
            for r in HMAC_JSON_REGIONS}

    async def handle(request: web.Request) -> web.Response:
        region = request.match_info["region"]
        if before_budget_ms is not None:
            await asyncio.sleep(max(0, int(request.headers["X-Deadline-Ms"]) - before_budget_ms) / 1000)
        entries = [{"encoding": "base64", "content": base64.b64encode(x).decode()} for x in lics[region]]
        return web.Response(body=orjson.dumps({"code": "0", "data": {"licences": entries}}),
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/r/{region}/share/v1/licences/query", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/r/{{region}}", runner


async def test_regions_answering_many_licences_just_before_the_deadline_cannot_hold_the_answer_past_it(
        query_client, regions_up):
    """Sixteen regions answer 250 ms before the deadline with 50 licences each: their verification ran
    one region after another, none of it cancellable, and a 1500-ms query was answered after ~2 s. Now
    verification stops at the deadline: a region not judged by then is ``timeout``, none of its
    licences listed."""
    rs, _ = regions_up
    base, runner = await _flooding_regions(rs, before_budget_ms=250)
    # the heap frozen as `serve` freezes it after start-up (gateway/serve.py): late in the suite this
    # process holds everything the earlier tests made, and a full collection of it stopped the loop for
    # ~320 ms in the middle of the query (a 1,758-ms answer, once) -- the test's process, not the gateway's
    gc.collect()
    gc.freeze()
    try:
        client = await query_client(base_url=base)
        t0 = time.perf_counter()
        answer = await query(client, body(citizen(seq=741), HMAC_JSON_REGIONS, deadline_ms=1500))
        assert answer["elapsed_ms"] <= 1500 + 60, answer["elapsed_ms"]
        assert time.perf_counter() - t0 < 1.5 + 0.4
        for region in answer["regions"]:
            assert region["licences"] == []
            assert region["status"] == "timeout" or (
                region["status"] == "error" and {r["reasons"][0]["code"] for r in region["rejected"]}
                == {"HOLDER_MISMATCH"}), region
    finally:
        gc.unfreeze()
        await runner.cleanup()


async def test_control_many_licences_answered_in_time_are_all_judged(query_client, regions_up):
    rs, _ = regions_up
    base, runner = await _flooding_regions(rs, before_budget_ms=None)
    try:
        answer = await query(await query_client(base_url=base), body(citizen(seq=742), HMAC_JSON_REGIONS))
        for region in answer["regions"]:
            assert region["status"] == "error" and len(region["rejected"]) == 50, (region["region"], region["status"])
    finally:
        await runner.cleanup()


# --- the same licence twice ----------------------------------------------------------------------
@pytest.mark.parametrize("where", [HOME, TWO_STEP])
async def test_licence_listed_twice_by_a_region_is_listed_once(query_client, regions_up, where):
    """A region listing the holder's licence twice (the list-then-fetch flavour: two ids for it) had it
    judged and disclosed twice, as if the holder held two ID cards there."""
    rs, _ = regions_up
    code = citizen(seq=751)
    rs.grant(where, code)
    rs.set_faults(where, repeat=True)
    region = by_region(await query(await query_client(), body(code, [where])))[where]
    assert region["status"] == "ok" and len(region["licences"]) == 1, region
    assert region["licences"][0]["licence"]["holder_code"] == code and region["rejected"] == []
    assert "more than once" in region["detail"]


def test_control_two_different_licences_of_the_holder_are_both_listed(world):
    """Two distinct licences (the region's and one issued again) stay two entries."""
    code = citizen(seq=752)
    req = parse_query({**body(code, [HOME])}, world.catalogue, tuple(world.specs), world.settings,
                      lambda _: True, lambda _: True)
    a = world.simulator.issue(HOME, "id_card", now=NOW, holder=(synthetic_name(code), code, "111")).data
    b = world.simulator.issue(HOME, "id_card", now=NOW, holder=(synthetic_name(code), code, "111")).data
    assert a != b
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))

    def verify(data: bytes):
        return world.verifier.verify(data, world.snapshot, status, NOW)

    answer, judged = region_answer(req, RegionFetch(HOME, "ok", (a, b, a)), verify, world.catalogue, "杭州")
    assert [lic["verdict"] for lic in answer["licences"]] == ["valid", "valid"]
    assert len(judged) == 2 and "more than once" in answer["detail"]
    assert judge(req, HOME, 0, verify(a), world.catalogue)[0] is not None


# --- the audit record names every licence judged -------------------------------------------------
async def test_query_record_names_every_licence_judged_and_what_was_disclosed(query_client, regions_up):
    """The record said which regions answered and how many licences were rejected, but not which
    licences the partner received the fields of, nor the verdict of any licence judged: a supervisor
    could not tell from the trail who saw licence X. The record now carries every licence judged
    (region, identifier, verdict, reason codes, disclosed or not) and counts them in ``extra``."""
    rs, _ = regions_up
    code = citizen(seq=761)
    rs.set_faults(SECOND, wrong_holder=True)
    audit = Collect()
    answer = await query(await query_client(audit=audit), body(code, [HOME, SECOND]))
    assert by_region(answer)[HOME]["status"] == "ok"          # control: the holder's licence, disclosed
    assert by_region(answer)[SECOND]["status"] == "error"     # another person's, rejected
    [record] = audit.records
    outcomes = {o.region: o for o in record.licences}
    assert outcomes[HOME].verdict == "valid" and outcomes[HOME].disclosed and outcomes[HOME].reasons == ()
    assert "11100000PH00000122001" in (outcomes[HOME].licence_id or "")   # the id_card's GB/T 36904 identifier
    assert outcomes[SECOND].reasons == ("HOLDER_MISMATCH",) and not outcomes[SECOND].disclosed
    extra = record.as_audit_fields()["extra"]
    assert (extra["judged"], extra["disclosed"], extra["rejected"]) == (2, 1, 1)
    assert code not in orjson.dumps(extra).decode() and code not in repr(record.licences)


async def test_the_audit_trail_keeps_a_record_per_licence_judged_beside_the_querys(world, aiohttp_client, regions_up):
    """The hook's per-licence outcomes reach the tamper-evident trail (TrailQueryAudit), not only the
    hook's caller: a supervisor searching the trail for licence X finds who got its fields."""
    import dataclasses

    from gateway.app import create_app
    from gateway.audit import holder_hmac
    from gateway.audit_wiring import AUDIT, TEST_AUDIT_HMAC_KEY_HEX

    rs, template = regions_up
    code = citizen(seq=762)
    rs.set_faults(SECOND, wrong_holder=True)
    app = create_app(world.services(settings=dataclasses.replace(world.settings, upstream_base_url=template)))
    client = await aiohttp_client(app, headers=world.auth())
    resp = await client.post("/v1/licences/query", json=body(code, [HOME, SECOND]), headers={"X-Request-Id": "q-761"})
    assert resp.status == 200, await resp.text()
    rows = [r.as_dict() for _, r in sorted(app[AUDIT].sink.table.items())]
    mine = [r for r in rows if r["request_id"] == "q-761"]
    assert [r["kind"] for r in mine] == ["query", "query", "query"]
    head, *per_licence = mine
    assert head["extra"]["judged"] == 2 and head["extra"]["disclosed"] == 1 and head["region"] is None
    by = {r["region"]: r for r in per_licence}
    assert by[HOME]["verdict"] == "valid" and by[HOME]["extra"]["disclosed"] is True and by[HOME]["licence_id"]
    assert by[SECOND]["reasons"] == ["HOLDER_MISMATCH"] and by[SECOND]["extra"]["disclosed"] is False
    hmac_of_holder = holder_hmac(bytes.fromhex(TEST_AUDIT_HMAC_KEY_HEX), "111", code)
    assert all(r["holder_hmac"] == hmac_of_holder for r in mine)
    assert code not in orjson.dumps(mine).decode()
