"""Review of "never answers without an audit record" on every route and every error path.

Each case found is named after what happened before the fix, with its control beside it:

* a verify / verify-batch / item check refused 403 because a presented licence comes from a
  region the partner may not act for names that region ("... may not use region 320500") and
  left no record;
* a federated query whose use cause holds control characters, asked of many regions whose
  breakers were open, was answered 503 AUDIT_UNAVAILABLE on every try although the store was up
  (the record's ``extra`` outgrew the model's limit);
* a console clerk whose user name holds an ID number (``li.<身份证号>``, which the staff file
  accepts) got a 500 INTERNAL for every verification (the record model refuses one in clear);
* a receipt draft that cannot be made answered 500 INTERNAL instead of 503 AUDIT_UNAVAILABLE.

Records are read back from the in-memory sink (tests/conftest.py: audit_backend = "memory").
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import create_app
from gateway.audit import holder_hmac
from gateway.audit_wiring import AUDIT, TEST_AUDIT_HMAC_KEY_HEX, receipt_hash
from gateway.identifiers import citizen_id_check
from gateway.receipts import verify_receipt

from .conftest import NOW

HUZHOU, SUZHOU = "330500", "320500"
KEY = bytes.fromhex(TEST_AUDIT_HMAC_KEY_HEX)


def records(client) -> list[dict[str, Any]]:
    sink = client.server.app[AUDIT].sink
    return [r.as_dict() for _, r in sorted(sink.table.items())]


def of_request(client, rid: str) -> list[dict[str, Any]]:
    return [r for r in records(client) if r["request_id"] == rid]


def id_number(first17: str) -> str:
    return first17 + citizen_id_check(first17)


# --- a 403 naming a licence's region leaves a record -------------------------------------------
RESTRICTED_CHECKER = '''# TEST partner restricted to Huzhou and Shanghai, with the item check (this test run only)
client_id = "restricted-checker"
name_zh = "受限合作方（测试）"
scopes = ["licences:verify", "items:read", "items:check"]
items = "*"
regions = ["330500", "310000"]

[key]
public_key_pem = "restricted-checker.test-public.pem"

[rate_limit]
requests_per_second = 1000
burst = 2000
'''


@pytest.fixture
async def restricted(world, aiohttp_client, tmp_path):
    from gateway.auth import demo_token, load_partners  # noqa: PLC0415

    src = Path(world.settings.partners_dir)
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(src / "demo-partner.test-public.pem", tmp_path / "restricted-checker.test-public.pem")
    shutil.copy(src / "demo-partner.test-private.pem", tmp_path / "restricted-checker.test-private.pem")
    (tmp_path / "restricted-checker.toml").write_text(RESTRICTED_CHECKER, encoding="utf-8")
    token = demo_token(tmp_path, client_id="restricted-checker", gateway_key=world.gateway_key,
                       token_endpoint=world.settings.token_endpoint_url, now=NOW.timestamp())["access_token"]
    return await aiohttp_client(create_app(world.services(partners=load_partners(tmp_path))),
                                headers={"Authorization": f"Bearer {token}"})


async def test_verify_refused_for_the_licences_region_leaves_a_record_naming_it(restricted, world):
    me = world.simulator.person(SUZHOU)
    suzhou = world.simulator.issue(SUZHOU, "id_card", "valid", NOW, holder=(*me, "111"))
    huzhou = world.simulator.issue(HUZHOU, "id_card", "valid", NOW)
    # control: a licence of a region the partner may act for is answered, with its record
    resp = await restricted.post("/v1/licences/verify", json=huzhou.body(), headers={"X-Request-Id": "ok-1"})
    assert resp.status == 200
    [rec] = of_request(restricted, "ok-1")
    assert rec["verdict"] == "valid" and rec["region"] == HUZHOU
    # the refusal names Suzhou: a record says who asked for which licence, refused
    resp = await restricted.post("/v1/licences/verify", json=suzhou.body(), headers={"X-Request-Id": "refused-1"})
    body = await resp.json()
    assert resp.status == 403 and body["code"] == "FORBIDDEN" and SUZHOU in body["detail"]
    assert "verdict" not in body and "receipt" not in body
    [rec] = of_request(restricted, "refused-1")
    assert (rec["kind"], rec["verdict"], rec["reasons"]) == ("verify", "refused", ["FORBIDDEN"])
    assert rec["partner"] == "restricted-checker" and rec["region"] == SUZHOU
    assert rec["licence_id"] == suzhou.licence.identifier
    assert rec["holder_hmac"] == holder_hmac(KEY, "111", me[1]) and me[1] not in orjson.dumps(rec).decode()


async def test_batch_refused_for_one_entrys_region_records_that_entry(restricted, world):
    huzhou = world.simulator.issue(HUZHOU, "id_card", "valid", NOW)
    suzhou = world.simulator.issue(SUZHOU, "id_card", "valid", NOW)
    body = {"licences": [huzhou.body(), {"licence": "%%%", "encoding": "base64"}, suzhou.body()]}
    resp = await restricted.post("/v1/licences/verify-batch", json=body, headers={"X-Request-Id": "refused-b"})
    assert resp.status == 403 and "results" not in await resp.json()
    [rec] = of_request(restricted, "refused-b")
    assert (rec["verdict"], rec["region"], rec["licence_id"]) == ("refused", SUZHOU, suzhou.licence.identifier)


async def test_item_check_refused_for_a_licences_region_records_item_and_licence(restricted, world):
    me = world.simulator.person(HUZHOU)
    suzhou = world.simulator.issue(SUZHOU, "social_security_card", "valid", NOW, holder=(*me, "111"))
    body = {"applicant": {"code_type": "111", "code": me[1]}, "licences": [suzhou.body()]}
    resp = await restricted.post("/v1/items/KS-043/check", json=body, headers={"X-Request-Id": "refused-c"})
    assert resp.status == 403 and SUZHOU in (await resp.json())["detail"]
    [rec] = of_request(restricted, "refused-c")
    assert (rec["kind"], rec["item_code"], rec["verdict"]) == ("check", "KS-043", "refused")
    assert (rec["region"], rec["licence_id"]) == (SUZHOU, suzhou.licence.identifier)
    # control: a refusal that names no licence (an unknown item code) leaves none and reveals nothing
    resp = await restricted.post("/v1/items/NO-SUCH/check", json=body, headers={"X-Request-Id": "no-item"})
    assert resp.status == 404 and of_request(restricted, "no-item") == []


async def test_region_refusal_is_not_given_without_its_record(restricted, world):
    restricted.server.app[AUDIT].sink.fail_with = OSError("disk full")
    resp = await restricted.post("/v1/licences/verify", json=world.simulator.issue(SUZHOU, "id_card", "valid", NOW)
                                 .body(), headers={"X-Request-Id": "refused-down"})
    body = await resp.json()
    assert resp.status == 503 and body["code"] == "AUDIT_UNAVAILABLE" and SUZHOU not in body["detail"]


# --- a use cause the record could not hold is refused before any region is asked ----------------
async def test_query_with_control_characters_in_its_use_cause_is_a_400_before_any_region_is_asked(world,
                                                                                                   aiohttp_client):
    """200 control characters (each written as 6 bytes in the record's JSON) made the record too large:
    the query was answered 503 on every try, and every try asked the regions again. They mean nothing
    in a 用证事由: the query is now refused with 400 before any region is asked."""
    cfg = dataclasses.replace(world.settings, upstream_base_url="http://127.0.0.1:9/r/{region}", upstream_retries=0,
                              breaker_min_requests=1)
    client = await aiohttp_client(create_app(world.services(settings=cfg)), headers=world.auth())
    code = id_number("33010219850612123")

    async def query(use_cause: str, rid: str) -> tuple[int, dict[str, Any]]:
        body = {"holder": {"code_type": "111", "code": code}, "licence_types": ["id_card"], "item": "KS-009",
                "use_cause": use_cause, "regions": sorted(world.specs), "deadline_ms": 2000}
        resp = await client.post("/v1/licences/query", json=body, headers={"X-Request-Id": rid})
        return resp.status, await resp.json()

    status, answer = await query("\x01" * 200, "controls")
    assert status == 400 and answer["code"] == "BAD_REQUEST" and "control" in answer["detail"]
    # the refusal is recorded (session 21), without the use cause it could not hold
    [refused] = of_request(client, "controls")
    assert (refused["verdict"], refused["reasons"]) == ("refused", ["BAD_REQUEST"])
    assert "use_cause" not in refused["extra"]
    # control: a plain use cause (U+3000, the full-width space, included) is answered and recorded
    status, answer = await query("个体工商户设立登记\u3000核验", "plain")
    assert status == 200 and len(answer["regions"]) == 45
    [rec] = of_request(client, "plain")
    assert rec["kind"] == "query" and rec["extra"]["use_cause"] == "个体工商户设立登记\u3000核验"
    assert rec["holder_hmac"] == holder_hmac(KEY, "111", code)


# --- a clerk whose user name is an ID number -------------------------------------------------
async def test_console_clerk_whose_login_holds_an_id_number_gets_answers_with_records(world, aiohttp_client, tmp_path):
    from gateway.console.accounts import add_account, make_hasher  # noqa: PLC0415

    from .test_console_http import login_token  # noqa: PLC0415

    clerk = "li." + id_number("11010119900307451")   # a login name the staff file accepts
    window = "w7"
    password = "a TEST password of the review only"
    staff = tmp_path / "staff.json"
    add_account(staff, clerk, "clerk", window, password, make_hasher(time_cost=1, memory_kib=8, parallelism=1))
    add_account(staff, "plainclerk", "clerk", "w9", password, make_hasher(time_cost=1, memory_kib=8, parallelism=1))
    settings = dataclasses.replace(world.settings, console_staff_file=str(staff))
    me = world.simulator.person(SUZHOU)
    licence = world.simulator.issue(SUZHOU, "id_card", "valid", NOW, holder=(*me, "111"))

    async def verify_as(user: str, rid: str) -> Any:
        client = await aiohttp_client(create_app(world.services(settings=settings)))
        token = await login_token(client)
        resp = await client.post("/console/login", data={"username": user, "password": password,
                                                         "csrf_token": token}, allow_redirects=False)
        assert resp.status == 303
        import re  # noqa: PLC0415

        csrf = re.search(r'name="csrf-token" content="([^"]+)"', await (await client.get("/console/")).text())[1]
        case = await (await client.post("/console/api/cases", headers={"X-CSRF-Token": csrf},
                                        json={"item": "KS-076", "applicant": {"code_type": "111", "code": me[1]}})).json()
        resp = await client.post(f"/console/api/cases/{case['id']}/licences", json=licence.body(),
                                 headers={"X-CSRF-Token": csrf, "X-Request-Id": rid})
        return client, resp.status, await resp.json()

    client, status, view = await verify_as("plainclerk", "console-plain")   # control
    assert status == 200 and view["cards"][0]["verdict"] == "valid"
    [rec] = of_request(client, "console-plain")
    assert (rec["operator"], rec["partner"]) == ("plainclerk", "console/w9")
    client, status, view = await verify_as(clerk, "console-id")
    assert status == 200, view
    assert view["cards"][0]["verdict"] == "valid"
    [rec] = of_request(client, "console-id")
    assert rec["kind"] == "check" and rec["verdict"] == "valid" and rec["licence_id"] == licence.licence.identifier
    assert rec["operator"].startswith("sha256:") and rec["partner"] == "console/w7"
    assert clerk[3:] not in orjson.dumps(records(client)).decode()
    # the window's audit page finds its records under the same digest
    from gateway.console import AUDIT_SEARCH  # noqa: PLC0415

    found = await client.server.app[AUDIT_SEARCH](window=window)
    assert [r["licence"] for r in found] == [licence.licence.identifier]


# --- a receipt that cannot be drafted --------------------------------------------------------
class BrokenReceipts:
    """The receipt signer with one step broken: ``draft`` (the claims) or ``seal`` (the signature)."""

    def __init__(self, real: Any, broken: str) -> None:
        self.real, self.broken = real, broken

    def draft(self, **kw: Any) -> Any:
        if self.broken == "draft":
            raise ValueError("claims cannot be encoded")
        return self.real.draft(**kw)

    def seal(self, *args: Any) -> list[str]:
        if self.broken == "seal":
            raise OSError("signing key unavailable")
        return self.real.seal(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def check_requests(world) -> list[tuple[str, Any]]:
    me = world.simulator.person(HUZHOU)
    licence = world.simulator.issue(HUZHOU, "id_card", "valid", NOW, holder=(*me, "111"))
    return [("/v1/licences/verify", licence.body()), ("/v1/licences/verify-batch", {"licences": [licence.body()]}),
            ("/v1/items/KS-043/check", {"applicant": {"code_type": "111", "code": me[1]}, "licences": [licence.body()]})]


@pytest.mark.parametrize("broken", ["seal", "draft"])   # seal: the control (503 already)
async def test_receipt_that_cannot_be_made_is_503_audit_unavailable_not_500(world, aiohttp_client, broken):
    app = create_app(world.services())
    client = await aiohttp_client(app, headers=world.auth())
    trail = app[AUDIT]
    real = trail.sink.sealer
    trail.sink.sealer = BrokenReceipts(real, broken)
    trail.setup = dataclasses.replace(trail.setup, receipts=BrokenReceipts(real, broken))
    for n, (path, body) in enumerate(check_requests(world)):
        resp = await client.post(path, json=body, headers={"X-Request-Id": f"broken-{n}"})
        answer = await resp.json()
        assert resp.status == 503 and answer["code"] == "AUDIT_UNAVAILABLE", (path, answer)
        assert "receipt" not in answer and "verdict" not in answer and "results" not in answer
    # the worker survives: with its signer whole again every route answers, with its record
    trail.sink.sealer = real
    trail.setup = dataclasses.replace(trail.setup, receipts=real)
    for n, (path, body) in enumerate(check_requests(world)):
        resp = await client.post(path, json=body, headers={"X-Request-Id": f"whole-{n}"})
        assert resp.status == 200
        assert of_request(client, f"whole-{n}")[0]["extra"]["receipt"] == receipt_hash((await resp.json())["receipt"])


# --- already correct: concurrency and agreement (guards) -------------------------------------
async def test_concurrent_answers_each_carry_their_own_record_and_receipt(world, aiohttp_client):
    client = await aiohttp_client(create_app(world.services()), headers=world.auth())
    licences = [world.simulator.issue(HUZHOU, "id_card", "valid", NOW) for _ in range(4)]
    keys = {"keys": client.server.app[AUDIT].jwks()}

    async def one(i: int) -> tuple[int, dict[str, Any]]:
        body = {"licences": [licences[i % 4].body(), licences[i % 4].body()]} if i % 3 == 0 else licences[i % 4].body()
        path = "/v1/licences/verify-batch" if i % 3 == 0 else "/v1/licences/verify"
        resp = await client.post(path, json=body, headers={"X-Request-Id": f"c-{i}"})
        assert resp.status == 200
        return i, await resp.json()

    answers = await asyncio.gather(*(one(i) for i in range(60)))
    for i, answer in answers:
        recs = of_request(client, f"c-{i}")
        claims = verify_receipt(answer["receipt"], keys)
        ident = licences[i % 4].licence.identifier
        assert claims["request_id"] == f"c-{i}"
        if i % 3 == 0:   # a batch naming one licence twice: two records, two receipt entries
            assert [r["licence_id"] for r in recs] == [ident, ident] and len(claims["entries"]) == 2
        else:
            assert [r["licence_id"] for r in recs] == [ident] and claims["licence_ids"] == [ident]
        assert {r["extra"]["receipt"] for r in recs} == {receipt_hash(answer["receipt"])}


# --- an undecodable console upload ------------------------------------------------------------
async def test_console_upload_that_cannot_be_decoded_is_recorded_like_the_apis_batch_entry(world, aiohttp_client):
    """The console answered a MALFORMED card for an undecodable upload without a record (the API's
    batch records such an entry); now it is recorded as invalid / MALFORMED."""
    from .test_console_http import PASSWORDS, login_token  # noqa: PLC0415
    import re  # noqa: PLC0415

    client = await aiohttp_client(create_app(world.services()))
    token = await login_token(client)
    resp = await client.post("/console/login", data={"username": "clerk", "password": PASSWORDS["clerk"],
                                                     "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', await (await client.get("/console/")).text())[1]
    me = world.simulator.person(SUZHOU)
    case = await (await client.post("/console/api/cases", headers={"X-CSRF-Token": csrf},
                                    json={"item": "KS-076", "applicant": {"code_type": "111", "code": me[1]}})).json()
    resp = await client.post(f"/console/api/cases/{case['id']}/licences",
                             json={"licence": "not base64 !!", "encoding": "base64"},
                             headers={"X-CSRF-Token": csrf, "X-Request-Id": "console-undecodable"})
    view = await resp.json()
    assert resp.status == 200 and view["cards"][0]["verdict"] == "invalid"
    [rec] = of_request(client, "console-undecodable")
    assert rec["kind"] == "check" and rec["verdict"] == "invalid" and rec["reasons"] == ["MALFORMED"]
    assert rec["licence_id"] is None
