"""Second adversarial review of licence status (revocation) checking and the trust snapshot.

The attackers: a holder whose licence was revoked and who wants it to verify again, someone on the
network path between the gateway and a region's status list, a thief holding a region's stolen issuer
key. Each attack sits beside a genuine control that stays as it was. Every attack test failed before
the fix it names (gateway/status.py, gateway/status_source.py, gateway/issuer_server.py,
gateway/trust.py, gateway/result_cache.py).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import gzip
import hashlib
import zlib

import orjson
import pytest
from aiohttp import web

from gateway.app import RESULT_CACHE
from gateway.devtrust import make_issuer, to_pem
from gateway.edges import SimulatorStatusSource
from gateway.issuer_server import IssuerServer
from gateway.simulator import STATUS_LIST_SIZE
from gateway.status import REVOKED, StatusList, build_status_list
from gateway.status_source import (HttpStatusSource, StatusListError, encode_status_list_jwt,
                                   verify_status_list_jwt)
from gateway.trust import build_snapshot
from gateway.trustlist import b64u, jws_sign

from .conftest import NOW
from .test_jws_and_trust_core_attacks import SAME_PROVINCE, genuine_parts, es256, x5c_licence
from .test_status_http_fetcher import LIMIT, REGION, Clock

SKEW = dt.timedelta(minutes=5)   # HttpStatusSource's and the policy's default clock skew
HOUR = dt.timedelta(hours=1)


# --- helpers ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Served:
    """A loopback status list server answering whatever ``token`` holds (an issuer, or someone on the path),
    with an ETag and 304 for a matching If-None-Match when ``etag`` is set."""

    url: str
    token: bytes = b""
    etag: bool = False
    not_modified: int = 0


@pytest.fixture
async def served():
    box = Served("")

    async def handle(request: web.Request) -> web.Response:
        headers = {}
        if box.etag:
            tag = '"' + hashlib.sha256(box.token).hexdigest()[:32] + '"'
            headers["ETag"] = tag
            if request.headers.get("If-None-Match") == tag:
                box.not_modified += 1
                return web.Response(status=304, headers=headers)
        return web.Response(body=box.token, content_type="application/statuslist+jwt", headers=headers)

    app = web.Application()
    app.router.add_get("/status/{region}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.url = f"http://127.0.0.1:{runner.addresses[0][1]}/status/{REGION}"
    yield box
    await runner.cleanup()


def list_token(world, served: Served, values: dict[int, int], iat: dt.datetime, key=None) -> bytes:
    """REGION's list with ``values``, signed (by the region's current issuer key unless ``key``)."""
    return encode_status_list_jwt(build_status_list(STATUS_LIST_SIZE, 2, values), key or world.simulator.signing_key(REGION),
                                  sub=served.url, iat=iat, exp=iat + dt.timedelta(hours=24), ttl=300)


def current_values(world) -> dict[int, int]:
    return dict(world.simulator.state[REGION].values)


def source(url: str, clock, region: str = REGION) -> HttpStatusSource:
    return HttpStatusSource({region: url}, lambda r: LIMIT, interval=3600, timeout=2, clock=clock, retry_min=3600)


def verify(world, data: bytes, src: HttpStatusSource, now: dt.datetime, trust=None):
    return world.verifier.verify(data, trust or world.snapshot, src._snapshot, now)


def signed_claims(key, claims: dict) -> bytes:
    """A status list token with exactly ``claims``, validly signed by ``key``."""
    header = {"alg": key.algorithm, "kid": key.cert.key_id, "typ": "statuslist+jwt"}
    signing_input = f"{b64u(orjson.dumps(header))}.{b64u(orjson.dumps(claims))}".encode()
    return signing_input + b"." + b64u(jws_sign(key.algorithm, key.private_key, signing_input)).encode()


# --- 1. two lists signed in the same second --------------------------------------------------------------
async def test_list_signed_in_the_same_second_before_a_revocation_cannot_roll_it_back(world, served) -> None:
    """The issuer signs its list at 12:00:00, revokes a licence and signs again within the same second (iat
    is whole seconds). The gateway holds the newer list; the holder replays the older one (fetched from
    the public URL). Rollback was refused only for an *earlier* iat: the equal one replaced the held
    list and the revoked licence was valid again."""
    clock = Clock(NOW)
    lic = world.simulator.issue(REGION, None, "valid", NOW)
    index = lic.licence.status_index
    before_revocation = list_token(world, served, current_values(world), NOW)
    revoked = list_token(world, served, {**current_values(world), index: REVOKED}, NOW)
    served.token = revoked
    src = source(served.url, clock)
    await src.start(lambda: world.snapshot, lambda snap: None)
    try:
        assert verify(world, lic.data, src, clock()).reason_codes == ("LICENCE_REVOKED",)
        # control: the same list served again is re-confirmed
        clock.advance(seconds=30)
        assert await src.refresh(REGION)
        assert src._snapshot.get(REGION).fetched_at == clock()
        # attack: the list of the same second, before the revocation
        served.token = before_revocation
        clock.advance(seconds=30)
        assert not await src.refresh(REGION)
        assert (src.states[REGION].last_error or "").startswith("rollback"), src.states[REGION].last_error
        assert verify(world, lic.data, src, clock()).reason_codes == ("LICENCE_REVOKED",)
    finally:
        await src.close()


async def test_simulated_issuer_gives_a_changed_list_a_later_signing_time_within_one_second(world) -> None:
    """The issuer's side of the rule above: the simulated issuer revokes and re-signs within the second of
    its previous list (a frozen clock). It signed the changed list with the same iat (which a replay of the
    earlier list exploits); now the changed list carries a later one, so the gateway takes it and answers
    LICENCE_REVOKED (with the gateway rule alone it was refused as a rollback, the licence still valid)."""
    clock = Clock(NOW)
    server = IssuerServer(world.simulator, clock=clock, ttl=300)
    base = await server.start()
    src = source(f"{base}/status/{REGION}", clock)
    try:
        lic = world.simulator.issue(REGION, None, "valid", NOW)
        await src.start(lambda: world.snapshot, lambda snap: None)
        first_iat = src.states[REGION].held.iat
        world.simulator.set_status(REGION, lic.licence.status_index, REVOKED)
        assert await src.refresh(REGION), src.states[REGION].last_error
        assert src.states[REGION].held.iat == first_iat + dt.timedelta(seconds=1)
        assert verify(world, lic.data, src, clock()).reason_codes == ("LICENCE_REVOKED",)
        # unchanged statuses are not pushed forward: a 304 for the same list
        assert await src.refresh(REGION) and server.not_modified.get(REGION) == 1
    finally:
        await src.close()
        await server.stop()


# --- 2. a list re-confirmed just before its signing limit ------------------------------------------------
@pytest.mark.parametrize("answer", ["same list again", "304"])
async def test_list_reconfirmed_just_before_its_signing_limit_does_not_stay_fresh_for_another_limit(
        world, served, answer) -> None:
    """A frozen feed (or someone on the path answering 304) re-confirms a list signed at 12:00 until its
    signing limit (10 min + 5 min skew), then blocks. The region's limit was counted from that last
    confirmation: the list of 12:00 kept a licence revoked just after it valid until 12:24, more than twice
    the 10-minute limit. It must be stale once its own iat is past the limit."""
    clock = Clock(NOW)
    served.etag = answer == "304"
    lic = world.simulator.issue(REGION, None, "valid", NOW)
    served.token = list_token(world, served, current_values(world), NOW)
    src = source(served.url, clock)
    await src.start(lambda: world.snapshot, lambda snap: None)
    try:
        world.simulator.set_status(REGION, lic.licence.status_index, REVOKED)   # the issuer revokes; the feed freezes
        clock.advance(minutes=14)
        assert await src.refresh(REGION)   # re-confirmed: signed 14 min ago, within 10 min + 5 min skew
        assert (served.not_modified == 1) is (answer == "304")
        # control: within the bound the list still answers
        assert verify(world, lic.data, src, clock()).verdict.value == "valid"
        clock.advance(minutes=6)   # 12:20, the feed blocked; last confirmed 6 min ago
        result = verify(world, lic.data, src, clock())
        assert result.verdict.value == "indeterminate" and result.reason_codes == ("STATUS_UNAVAILABLE",)
        # control: the issuer's current list (signed now) is taken and shows the revocation
        served.token = list_token(world, served, current_values(world), clock())
        assert await src.refresh(REGION)
        assert verify(world, lic.data, src, clock()).reason_codes == ("LICENCE_REVOKED",)
    finally:
        await src.close()


# --- 3. a held list whose signer is revoked --------------------------------------------------------------
@pytest.fixture(scope="module")
def stolen(world):
    """A second issuer of REGION (its key stolen): trusted in ``before``, revoked for keyCompromise in ``after``."""
    m = world.material[REGION]
    key = make_issuer(REGION, "ES256", m.anchor_key, m.anchor, 880001, NOW - dt.timedelta(days=30),
                      NOW + dt.timedelta(days=300), "stolen")
    doc = copy.deepcopy(world.doc)
    doc["regions"][REGION]["issuers"].append(to_pem(key.cert.der))
    before = build_snapshot(doc, world.regions)
    doc["regions"][REGION]["revoked"] = [{"serial": key.cert.serial_hex, "reason": "keyCompromise",
                                          "revoked_at": (NOW - dt.timedelta(hours=1)).isoformat()}]
    after = build_snapshot(doc, world.regions)
    assert after.by_key_id[key.cert.key_id].revocation is not None
    return key, before, after


@pytest.mark.parametrize("answer", ["same list again", "304"])
async def test_list_signed_with_a_stolen_key_stops_counting_once_the_key_is_revoked(
        world, served, stolen, answer) -> None:
    """A thief with a region's issuer key signs a list clearing the bit of a licence the issuer revoked (the
    licence itself is signed by the region's genuine key) and serves it to the gateway. The operator then
    revokes the stolen key (keyCompromise). Each later fetch refused the list, or a 304 for it, as
    'signer-invalid' -- and kept it: the revoked licence stayed valid until the region's staleness limit."""
    key, before, after = stolen
    clock = Clock(NOW)
    served.etag = answer == "304"
    lic = world.simulator.issue(REGION, None, "revoked", NOW)   # revoked at the issuer
    forged = current_values(world)
    del forged[lic.licence.status_index]
    served.token = list_token(world, served, forged, NOW, key=key)
    trust = {"now": before}
    src = source(served.url, clock)
    await src.start(lambda: trust["now"], lambda snap: None)
    try:
        # while the key is trusted the thief's list is the region's list (nothing tells it apart)
        assert verify(world, lic.data, src, clock(), before).verdict.value == "valid"
        trust["now"] = after   # the operator revokes the stolen key
        clock.advance(minutes=1)
        assert not await src.refresh(REGION)
        assert "signer-invalid" in (src.states[REGION].last_error or "")
        result = verify(world, lic.data, src, clock(), after)
        assert result.verdict.value == "indeterminate" and result.reason_codes == ("STATUS_UNAVAILABLE",)
        # control: the region's genuine list, signed by its own key, is taken again
        served.token = list_token(world, served, current_values(world), clock())
        clock.advance(seconds=30)
        assert await src.refresh(REGION), src.states[REGION].last_error
        assert verify(world, lic.data, src, clock(), after).reason_codes == ("LICENCE_REVOKED",)
    finally:
        await src.close()


async def test_trust_reloaded_while_a_list_is_being_checked_does_not_publish_the_revoked_signers_list(
        world, served, stolen) -> None:
    """The fetcher checks a list against the trust it read before the request; the operator's reload
    revoking the list's signer lands meanwhile. The list was published all the same (and kept)."""
    key, before, after = stolen
    clock = Clock(NOW)
    lic = world.simulator.issue(REGION, None, "revoked", NOW)
    forged = current_values(world)
    del forged[lic.licence.status_index]
    served.token = list_token(world, served, forged, NOW, key=key)
    reads = [before]   # the first read (before the request) sees the old trust; every later one the new

    def trust():
        return reads.pop() if reads else after

    src = source(served.url, clock)
    await src.start(trust, lambda snap: None)
    try:
        assert src._snapshot.get(REGION) is None, "a list of a revoked signer was published"
        result = verify(world, lic.data, src, clock(), after)
        assert result.verdict.value == "indeterminate" and result.reason_codes == ("STATUS_UNAVAILABLE",)
    finally:
        await src.close()
    # control: the genuine list checked across the same reload is published and answers
    served.token = list_token(world, served, current_values(world), NOW)
    reads = [before]
    src = source(served.url, clock)
    await src.start(trust, lambda snap: None)
    try:
        assert verify(world, lic.data, src, clock(), after).reason_codes == ("LICENCE_REVOKED",)
    finally:
        await src.close()


async def test_trust_swap_ends_the_use_of_a_revoked_signers_list_without_waiting_for_a_fetch(
        world, served, stolen) -> None:
    """HttpStatusSource.trust_changed (for the trust reloader to call after a swap): the stolen key's list
    stops answering at once; a list whose signer is still trusted stays in force."""
    key, before, after = stolen
    clock = Clock(NOW)
    lic = world.simulator.issue(REGION, None, "revoked", NOW)
    forged = current_values(world)
    del forged[lic.licence.status_index]
    served.token = list_token(world, served, forged, NOW, key=key)
    published = []
    src = source(served.url, clock)
    await src.start(lambda: before, published.append)
    try:
        src.trust_changed(before)   # control: nothing changes for a signer still trusted
        assert src._snapshot.get(REGION) is not None and len(published) == 1
        src.trust_changed(after)
        assert src._snapshot.get(REGION) is None and published[-1] is src._snapshot
        result = verify(world, lic.data, src, clock(), after)
        assert result.verdict.value == "indeterminate" and result.reason_codes == ("STATUS_UNAVAILABLE",)
    finally:
        await src.close()


# --- 4. a certificate revoked in one region, presented in the region sharing its anchor ------------------
@pytest.fixture(scope="module")
def shared_anchor(world):
    """REGION takes SAME_PROVINCE's anchor (one provincial CA); a signer that CA issued; trust lists in
    which SAME_PROVINCE's section revokes it for keyCompromise, or does not."""
    m = world.material[SAME_PROVINCE]
    signer = make_issuer(SAME_PROVINCE, "ES256", m.anchor_key, m.anchor, 880101, NOW - dt.timedelta(days=30),
                         NOW + dt.timedelta(days=300), "provincial-stolen")
    doc = copy.deepcopy(world.doc)
    doc["regions"][REGION]["anchors"] = list(doc["regions"][SAME_PROVINCE]["anchors"])
    not_revoked = build_snapshot(doc, world.regions)
    doc["regions"][SAME_PROVINCE]["revoked"] = [{"serial": signer.cert.serial_hex, "reason": "keyCompromise",
                                                 "revoked_at": (NOW - dt.timedelta(days=1)).isoformat()}]
    revoked = build_snapshot(doc, world.regions)
    listed_doc = copy.deepcopy(doc)
    listed_doc["regions"][REGION]["issuers"].append(to_pem(signer.cert.der))
    return signer, not_revoked, revoked, build_snapshot(listed_doc, world.regions)


def test_certificate_revoked_in_one_region_is_revoked_in_the_region_sharing_its_anchor(world, shared_anchor) -> None:
    """A thief with a provincial signer's key (revoked for keyCompromise in 合肥's section) signs a licence
    that carries the certificate (x5c) and names 滁州, whose section lists the same provincial anchor but
    not the revocation: it was valid."""
    signer, not_revoked, revoked, listed = shared_anchor
    status = world.simulator.status_snapshot(NOW, HOUR)
    for_region = x5c_licence(world, REGION, signer.private_key, [signer.cert.der])
    for_province = x5c_licence(world, SAME_PROVINCE, signer.private_key, [signer.cert.der])
    # control: not revoked, the shared anchor serves both regions
    for data, code in ((for_region, REGION), (for_province, SAME_PROVINCE)):
        result = world.verifier.verify(data, not_revoked, status, NOW)
        assert result.verdict.value == "valid" and result.region.code == code, result.reason_codes
    # revoked in 合肥's section: refused for 合肥 (as before) and for 滁州
    for data in (for_province, for_region):
        assert world.verifier.verify(data, revoked, status, NOW).reason_codes == ("ISSUER_CERT_REVOKED",)
    # listed as 滁州's issuer, the certificate carries 合肥's revocation too (licences and status lists)
    assert listed.by_key_id[signer.cert.key_id].region == REGION
    assert listed.by_key_id[signer.cert.key_id].revocation.reason == "keyCompromise"
    # control: 合肥's listed issuers below the same anchor are untouched, its licences valid
    assert revoked.regions[SAME_PROVINCE].issuers and \
        all(e.revocation is None for e in revoked.regions[SAME_PROVINCE].issuers)
    genuine = world.simulator.issue(SAME_PROVINCE, None, "valid", NOW).data
    assert world.verifier.verify(genuine, revoked, status, NOW).verdict.value == "valid"


# --- 5. the result cache and a signer certificate that came with the licence -----------------------------
async def test_cached_valid_answer_ends_when_the_licences_own_signer_certificate_expires(world, client_for) -> None:
    """A licence carrying its signer certificate (x5c, not on the issuer list) and no signing time is judged at
    now: valid until the certificate's notAfter + skew. The result cache bounds an entry by the signer chain's
    dates only for listed issuers: the "valid" stored 10 s before the bound was answered after it."""
    m = world.material[REGION]
    not_after = NOW + dt.timedelta(minutes=2)
    signer = make_issuer(REGION, "ES256", m.anchor_key, m.anchor, 880201, NOW - dt.timedelta(days=30), not_after,
                         "short-lived")
    header, payload = genuine_parts(world, REGION)
    del header["kid"], payload["iat"]
    header["x5c"] = [base64.b64encode(signer.cert.der).decode()]
    data = es256(header, payload, signer.private_key)
    listed = world.simulator.issue(REGION, None, "valid", NOW).data
    clock = Clock(not_after + SKEW - dt.timedelta(seconds=10))
    client = await client_for(clock=clock, status_source=SimulatorStatusSource(world.simulator, HOUR))

    async def answer(licence: bytes) -> dict:
        resp = await client.post("/v1/licences/verify", json={"licence": licence.decode(), "encoding": "utf-8"})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    assert (await answer(data))["verdict"] == "valid"
    assert (await answer(listed))["verdict"] == "valid"
    clock.advance(seconds=11)   # past notAfter + skew
    later = await answer(data)
    assert later["verdict"] == "invalid" and [r["code"] for r in later["reasons"]] == ["ISSUER_CERT_EXPIRED"]
    # control: a listed issuer's licence is still answered from the cache
    hits = client.server.app[RESULT_CACHE].hits
    assert (await answer(listed))["verdict"] == "valid"
    assert client.server.app[RESULT_CACHE].hits == hits + 1


# --- 6. a signed list whose dates are out of range ------------------------------------------------------
async def test_list_with_a_date_out_of_range_is_refused_and_the_fetcher_keeps_running(world, served) -> None:
    """A region's issuer publishes a validly signed list with exp in the year 31,690,708: the date
    conversion raised ValueError, not a StatusListError: the gateway's first round (start-up) failed, and
    later the region's fetch task ended for good."""
    clock = Clock(NOW)
    key = world.simulator.signing_key(REGION)
    lst = b64u(build_status_list(STATUS_LIST_SIZE, 2, current_values(world)).compressed())
    served.token = signed_claims(key, {"sub": served.url, "iat": int(NOW.timestamp()), "exp": 10**15, "ttl": 300,
                                       "status_list": {"bits": 2, "lst": lst}})
    src = source(served.url, clock)
    await src.start(lambda: world.snapshot, lambda snap: None)
    try:
        assert (src.states[REGION].last_error or "").startswith("malformed"), src.states[REGION].last_error
        assert src._snapshot.get(REGION) is None and not src._tasks[0].done()
        # control: the region's next, well-formed list is taken
        served.token = list_token(world, served, current_values(world), NOW)
        assert await src.refresh(REGION)
        assert verify(world, world.simulator.issue(REGION, None, "valid", NOW).data, src, NOW).verdict.value == "valid"
    finally:
        await src.close()


# --- 7. the list's compression and bit order ------------------------------------------------------------
@pytest.mark.parametrize("damage", ["cut short", "bytes after the stream"])
def test_list_that_is_not_one_complete_zlib_stream_is_refused(world, damage) -> None:
    """A list cut short decompressed without an error (and without its checksum): every licence past the cut
    was answered 'invalid' (status index outside the list) instead of the region's status being unavailable."""
    sub = f"http://127.0.0.1:9/status/{REGION}"
    values = {i: REVOKED for i in range(0, STATUS_LIST_SIZE, 7)}
    complete = build_status_list(STATUS_LIST_SIZE, 2, values).compressed()
    lst = complete[: len(complete) // 2] if damage == "cut short" else complete + b"\x00junk"
    claims = {"sub": sub, "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 3600, "ttl": 300}
    key = world.simulator.signing_key(REGION)
    good = signed_claims(key, {**claims, "status_list": {"bits": 2, "lst": b64u(complete)}})
    bad = signed_claims(key, {**claims, "status_list": {"bits": 2, "lst": b64u(lst)}})
    # control: the complete stream
    assert verify_status_list_jwt(good, region=REGION, expected_sub=sub, trust=world.snapshot, now=NOW) \
        .status_list.size == STATUS_LIST_SIZE
    with pytest.raises(StatusListError) as exc:
        verify_status_list_jwt(bad, region=REGION, expected_sub=sub, trust=world.snapshot, now=NOW)
    assert exc.value.kind == "malformed"


@pytest.mark.parametrize("bits,lst,expected", [
    # draft-ietf-oauth-status-list's examples: the lists as its issuers write them
    (1, "eNrbuRgAAhcBXQ", [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]),
    (2, "eNo76fITAAPfAgc", [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]),
])
def test_bit_order_and_compression_read_as_the_token_status_list_writes_them(bits, lst, expected) -> None:
    """Sound (a control, no fix): the gateway reads each entry least significant bits first from zlib, as
    the draft's examples and the simulated issuers (build_status_list) write it; gzip is not read."""
    raw = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
    sl = StatusList.from_compressed(bits, raw)
    assert [sl.get(i) for i in range(len(expected))] == expected
    ours = build_status_list(len(expected), bits, dict(enumerate(expected)))
    assert ours.data == sl.data and StatusList.from_compressed(bits, ours.compressed()) == sl
    with pytest.raises(zlib.error):
        StatusList.from_compressed(bits, gzip.compress(sl.data))


# --- 8. the licence's status index ------------------------------------------------------------------------
@pytest.mark.parametrize("index", [-1, STATUS_LIST_SIZE, 2**62, True, 1.0, "-1", "١٢", "9" * 20])
def test_status_index_negative_out_of_range_or_not_an_integer_is_refused(world, index) -> None:
    """Sound (a control, no fix): a licence re-signed with a status index outside the list, negative or not a
    plain integer is never looked up elsewhere in the list: FIELD_INVALID."""
    status = world.simulator.status_snapshot(NOW, HOUR)
    header, payload = genuine_parts(world, REGION)
    field = world.specs[REGION].fields["status_index"]
    key = world.simulator.signing_key(REGION).private_key
    assert world.verifier.verify(es256(header, payload, key), world.snapshot, status, NOW).verdict.value == "valid"
    payload[field] = index
    result = world.verifier.verify(es256(header, payload, key), world.snapshot, status, NOW)
    assert result.verdict.value == "invalid" and result.reason_codes == ("FIELD_INVALID",)


async def test_the_trust_reloader_tells_the_status_fetcher_of_every_swap(world, tmp_path) -> None:
    """The wiring of trust_changed: an accepted reload calls the reloader's on_change with the new snapshot
    (the status fetcher then drops a revoked signer's list at once); an unchanged or refused one does not.
    The app wires it for the HTTP status fetcher, the audited reloader keeps it."""
    import copy

    from gateway.app import create_app
    from gateway.edges import FileTrustSource, LiveTrust
    from gateway.status_source import HttpStatusSource
    from gateway.trust_routes import RELOADER, TrustReloader
    from gateway.trustlist import (TEST_OPERATOR_PRIVATE, TEST_OPERATOR_PUBLIC, canonical_json, load_operator_key,
                                   load_operator_private_key, sign_trust_list)

    def write(version: int) -> None:
        doc = copy.deepcopy(world.doc)
        doc["version"] = version
        path.write_bytes(canonical_json(sign_trust_list(doc, load_operator_private_key(TEST_OPERATOR_PRIVATE))))

    path = tmp_path / "trust.json"
    write(3)
    seen: list = []
    reloader = TrustReloader(FileTrustSource(path, world.regions, 3, [load_operator_key(TEST_OPERATOR_PUBLIC)],
                                             clock=lambda: NOW), LiveTrust(), lambda: NOW, seen.append)
    assert (await reloader.reload("startup")).outcome == "accepted" and [s.version for s in seen] == [3]
    assert (await reloader.reload("admin")).outcome == "unchanged" and len(seen) == 1
    write(2)
    assert (await reloader.reload("admin")).outcome == "refused" and len(seen) == 1
    write(4)
    assert (await reloader.reload("admin")).outcome == "accepted" and [s.version for s in seen] == [3, 4]

    fetcher = HttpStatusSource({}, dt.timedelta(hours=1), interval=60)
    app = create_app(world.services(status_source=fetcher))
    assert app[RELOADER].on_change == fetcher.trust_changed
    plain = create_app(world.services())
    assert plain[RELOADER].on_change is None
