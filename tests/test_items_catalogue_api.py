"""GET /v1/items, /v1/items/{code} and /v1/licence-types through HTTP with real tokens:
search, pagination, ETag / If-None-Match, and the restricted partner's item list."""

from __future__ import annotations

import pytest

from gateway.app import create_app

from .conftest import NOW  # noqa: F401 - the suite's reference time (tokens are issued at NOW)


async def items(api, status: int = 200, headers: dict[str, str] | None = None, **params: str):
    resp = await api.get("/v1/items", params=params, headers=headers or {})
    assert resp.status == status, await resp.text()
    return resp, (await resp.json() if status != 304 else None)


@pytest.fixture
async def restricted(aiohttp_client, world):
    return await aiohttp_client(create_app(world.services()),
                                headers=world.auth(client_id="restricted-partner", scope="items:read"))


# --- search ------------------------------------------------------------------------------
async def test_chinese_substring_finds_the_household_items(api):
    _, body = await items(api, q="户口")
    assert body["total"] >= 2
    assert all("户口" in i["name_zh"] for i in body["items"])


async def test_pinyin_initials_find_the_same_items_as_the_chinese(api):
    _, chinese = await items(api, q="社会保障卡")
    _, initials = await items(api, q="shbzk")
    assert chinese["total"] >= 2
    assert [i["code"] for i in initials["items"]] == [i["code"] for i in chinese["items"]]


async def test_exact_code_ranks_first(api):
    _, body = await items(api, q="KS-043")
    assert body["items"][0]["code"] == "KS-043" and body["items"][0]["name_zh"] == "社会保障卡启用"


@pytest.mark.parametrize("param,value,check", [
    ("department", "市场监督管理局", lambda i: i["department"] == "市场监督管理局"),
    ("licence_type", "business_licence", lambda i: "business_licence" in i["licence_types"]),
    ("mode", "多地联办", lambda i: "多地联办" in i["modes"]),
    ("region", "511600", lambda i: i["regions"] == "all" or "511600" in i["regions"]),
])
async def test_each_filter_keeps_only_matching_items(api, world, param, value, check):
    _, body = await items(api, limit="100", **{param: value})
    assert 0 < body["total"] < 151
    assert all(check(i) for i in body["items"])
    assert body["total"] == world.catalogue.search(**{param: value}, limit=100)[0]


async def test_licence_type_filter_accepts_the_21_character_type_code(api, world):
    code = world.catalogue.type_by_key("social_security_card").type_code
    _, by_code = await items(api, licence_type=code, limit="100")
    _, by_key = await items(api, licence_type="social_security_card", limit="100")
    assert by_code["total"] == by_key["total"] > 0


async def test_no_match_is_an_empty_page_not_an_error(api):
    _, body = await items(api, q="不存在的事项名称")
    assert body == {**body, "items": [], "total": 0, "next_offset": None}


# --- pagination -----------------------------------------------------------------------------
async def test_paging_walks_all_151_items_once(api):
    seen, offset = [], 0
    while offset is not None:
        _, body = await items(api, offset=str(offset), limit="40")
        assert body["total"] == 151 and len(body["items"]) <= 40
        seen += [i["code"] for i in body["items"]]
        offset = body["next_offset"]
    assert len(seen) == 151 == len(set(seen))


@pytest.mark.parametrize("params", [{"limit": "101"}, {"limit": "0"}, {"offset": "-1"}, {"limit": "ten"},
                                    {"limit": "²"}, {"q": "x" * 65}, {"sort": "name"}])
async def test_bad_paging_or_unknown_parameters_are_400(api, params):
    resp = await api.get("/v1/items", params=params)
    assert resp.status == 400 and (await resp.json())["code"] == "BAD_REQUEST"


async def test_repeated_parameter_is_400(api):
    resp = await api.get("/v1/items?q=户口&q=社保")
    assert resp.status == 400


# --- ETag ---------------------------------------------------------------------------------------
async def test_etag_then_if_none_match_gives_304_without_body(api):
    first, body = await items(api, q="户口")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and body["items"]
    again, _ = await items(api, status=304, headers={"If-None-Match": etag}, q="户口")
    assert again.headers["ETag"] == etag and await again.read() == b""
    weak, _ = await items(api, status=304, headers={"If-None-Match": f'"other", W/{etag}'}, q="户口")
    assert weak.headers["ETag"] == etag


async def test_etag_changes_with_the_query_and_a_stale_tag_gets_the_full_answer(api):
    a, _ = await items(api, q="户口")
    b, _ = await items(api, q="户口", offset="1")
    c, _ = await items(api, q="社保")
    assert len({a.headers["ETag"], b.headers["ETag"], c.headers["ETag"]}) == 3
    resp, body = await items(api, headers={"If-None-Match": a.headers["ETag"]}, q="社保")
    assert body["items"]


async def test_etag_follows_the_catalogue_version(client_for, world):
    from dataclasses import replace

    api1 = await client_for()
    api2 = await client_for(catalogue=replace(world.catalogue, etag="0" * 64))
    r1, _ = await items(api1, q="户口")
    r2, _ = await items(api2, q="户口")
    assert r1.headers["ETag"] != r2.headers["ETag"]


async def test_item_and_licence_types_also_answer_304(api):
    for path in ("/v1/items/KS-001", "/v1/licence-types"):
        first = await api.get(path)
        again = await api.get(path, headers={"If-None-Match": first.headers["ETag"]})
        assert first.status == 200 and again.status == 304


# --- one item, licence types ---------------------------------------------------------------------
async def test_one_item_with_requirements_and_accepted_types(api, world):
    resp = await api.get("/v1/items/KS-037")
    body = await resp.json()
    assert resp.status == 200 and body["name_zh"] == world.catalogue.item("KS-037").name_zh
    req = body["requirements"][0]
    assert req["accept"] == ["id_card", "social_security_card"]
    assert [t["name_zh"] for t in req["accepted_types"]] == ["居民身份证", "社会保障卡"]
    assert req["disclose"] and req["binding"] == "holder"


async def test_unknown_item_is_a_404_problem(api):
    resp = await api.get("/v1/items/KS-999")
    assert resp.status == 404 and resp.content_type == "application/problem+json"


async def test_licence_types_list_every_type_with_surface_and_role_fields(api, world):
    resp = await api.get("/v1/licence-types")
    body = await resp.json()
    assert body["count"] == len(world.catalogue.types) >= 20
    bl = next(t for t in body["types"] if t["key"] == "business_licence")
    assert len(bl["type_code"]) == 21 and bl["role_fields"][0]["role"] == "legal_representative"


# --- partner restrictions --------------------------------------------------------------------------
async def test_restricted_partner_sees_only_its_items(restricted):
    _, body = await items(restricted, limit="100")
    assert body["total"] == 2 and [i["code"] for i in body["items"]] == ["KS-001", "KS-002"]
    _, page2 = await items(restricted, offset="1", limit="1")
    assert [i["code"] for i in page2["items"]] == ["KS-002"] and page2["next_offset"] is None


async def test_restricted_partner_gets_a_different_etag_than_an_unrestricted_one(api, restricted):
    a, _ = await items(api)
    b, _ = await items(restricted)
    assert a.headers["ETag"] != b.headers["ETag"]
    assert "Authorization" in a.headers["Vary"]


async def test_restricted_partner_is_refused_an_item_outside_its_list(restricted):
    ok = await restricted.get("/v1/items/KS-001")
    refused = await restricted.get("/v1/items/KS-043")
    assert ok.status == 200
    assert refused.status == 403 and (await refused.json())["code"] == "FORBIDDEN"


async def test_token_without_items_read_is_refused(aiohttp_client, world):
    client = await aiohttp_client(create_app(world.services()), headers=world.auth(scope="licences:verify"))
    for path in ("/v1/items", "/v1/items/KS-001", "/v1/licence-types"):
        resp = await client.get(path)
        assert resp.status == 403, path
