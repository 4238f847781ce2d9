"""HTTP routes of the cross-province item catalogue and the item check.

* ``GET /v1/items`` (items:read) -- search and page the items the partner may use; ETag /
  ``If-None-Match`` -> 304.
* ``GET /v1/items/{code}`` (items:read) -- one item with its requirements.
* ``GET /v1/licence-types`` (items:read) -- the licence types.
* ``POST /v1/items/{code}/check`` (items:check) -- verify the presented licences with the
  same core as ``/v1/licences/verify`` and judge them against the item
  (:mod:`gateway.checking`); only fields the item may see leave the gateway.

A partner restricted to some items (``Principal.may_use_item``) sees only those in the
list and gets 403 for any other; a check is refused (403) when a presented licence comes
from a region the partner may not act for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from . import errors
from .app import FEATURES, SERVICES, decode_presented, read_json, verify_now
from . import audit_wiring  # a module, not its names: importing gateway.audit_wiring first imports this one
from .auth import AUTH_PRINCIPAL, ITEMS_CHECK, ITEMS_READ, Principal, requires_scope
from .catalogue import MAX_SEARCH_LIMIT, MAX_SEARCH_TEXT, MODES, Catalogue, Item
from .checking import Presented, check_item, parse_applicant
from .errors import InfrastructureError, RequestRejected

DEFAULT_LIMIT = 20
SEARCH_PARAMS = ("q", "department", "licence_type", "mode", "region", "offset", "limit")
CHECK_FIELDS = frozenset({"applicant", "licences"})
_CACHE_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Authorization"}


# --- helpers -------------------------------------------------------------------------
def _catalogue(request: web.Request) -> Catalogue:
    catalogue = request.app[SERVICES].catalogue
    if catalogue is None:
        raise InfrastructureError(errors.INTERNAL, "item catalogue not loaded")
    return catalogue


def make_etag(*parts: str) -> str:
    """A strong ETag over the catalogue version and whatever shapes the answer."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    return f'"{digest}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison of an ``If-None-Match`` list with ``etag``."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def _partner_scope_key(principal: Principal) -> str:
    return "*" if principal.items is None else ",".join(sorted(principal.items))


def _cached_json(request: web.Request, data_fn: Any, etag: str) -> web.Response:
    headers = {**_CACHE_HEADERS, "ETag": etag}
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=orjson.dumps(data_fn()), content_type="application/json", headers=headers)


def _bad_param(detail: str, detail_zh: str) -> RequestRejected:
    """400 ``BAD_REQUEST`` naming the query parameter, in English (``detail``) and Chinese (``detail_zh``)."""
    return RequestRejected(errors.BAD_REQUEST, detail, detail_zh=detail_zh)


def no_query_parameters(request: web.Request) -> None:
    """The items endpoints other than the search take no query parameter: one given is refused, as the
    search refuses a name it does not know (a filter a partner believes applied would silently not be)."""
    names = sorted(set(request.rel_url.query))
    if names:
        shown_names = ", ".join(names)[:200]
        raise _bad_param(f"unknown query parameter(s): {shown_names}; this endpoint takes none",
                         f"未知的查询参数：{shown_names}；此接口不接受查询参数")


def _int_param(query: Any, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else None
    if value is None or value < low or (high is not None and value > high):
        if high is None:
            raise _bad_param(f"'{name}' must be a non-negative integer, not {errors.shown(raw, 20)}",
                             f"参数 {name} 须为非负整数，收到 {errors.shown(raw, 20)}")
        raise _bad_param(f"'{name}' must be an integer from {low} to {high}, not {errors.shown(raw, 20)}",
                         f"参数 {name} 须为 {low} 至 {high} 的整数，收到 {errors.shown(raw, 20)}")
    return value


def _check_filters(catalogue: Catalogue, filters: dict[str, str | None]) -> None:
    """A filter value the catalogue cannot hold is a partner's typo: 400 naming the parameter and what it
    takes (a value the catalogue knows that matches no item stays a 200 with an empty page)."""
    text, mode, region = filters["q"], filters["mode"], filters["region"]
    department, licence_type = filters["department"], filters["licence_type"]
    if text is not None and len(text.strip()) > MAX_SEARCH_TEXT:
        raise _bad_param(f"'q' is longer than {MAX_SEARCH_TEXT} characters",
                         f"参数 q 超过 {MAX_SEARCH_TEXT} 个字符")
    if mode is not None and mode not in MODES:
        raise _bad_param(f"'mode' {errors.shown(mode, 40)} is not a handling mode; allowed: {', '.join(MODES)}",
                         f"参数 mode 的取值 {errors.shown(mode, 40)} 不是办理方式，可选：{'、'.join(MODES)}")
    if region is not None and not (len(region) == 6 and region.isascii() and region.isdigit()
                                   and (not catalogue.region_codes or region in catalogue.region_codes)):
        n = len(catalogue.region_codes)
        which, which_zh = ((f"one of its {n} six-digit GB/T 2260 region codes",
                            f"其 {n} 个地区之一的六位 GB/T 2260 行政区划代码") if n
                           else ("a six-digit GB/T 2260 region code", "六位 GB/T 2260 行政区划代码"))
        raise _bad_param(f"'region' {errors.shown(region, 40)} is not a region the gateway knows ({which})",
                         f"参数 region 的取值 {errors.shown(region, 40)} 不是本网关已知的地区（应为{which_zh}）")
    if department is not None and department not in (known := catalogue.departments()):
        raise _bad_param(f"'department' {errors.shown(department, 40)} is not a department of any item; "
                         f"allowed: {', '.join(known)}",
                         f"参数 department 的取值 {errors.shown(department, 40)} 不是任何事项的部门，"
                         f"可选：{'、'.join(known)}")
    if licence_type is not None and (catalogue.type_by_key(licence_type) is None
                                     and catalogue.type_by_code(licence_type) is None):
        keys = ", ".join(t.key for t in catalogue.types)
        raise _bad_param(f"'licence_type' {errors.shown(licence_type, 40)} is not a licence type: give a type key "
                         f"({keys}) or its 21-character type code (GET /v1/licence-types)",
                         f"参数 licence_type 的取值 {errors.shown(licence_type, 40)} 不是证照类型：应为类型键"
                         f"（{keys}）或 21 位证照类型代码（见 GET /v1/licence-types）")


def accepted_types(catalogue: Catalogue, keys: Iterable[str]) -> list[dict[str, str]]:
    return [{"key": t.key, "type_code": t.type_code, "name_zh": t.name_zh}
            for k in keys if (t := catalogue.type_by_key(k)) is not None]


def item_summary(item: Item) -> dict[str, Any]:
    return {"code": item.code, "name_zh": item.name_zh, "name_en": item.name_en, "name_status": item.name_status,
            "department": item.department, "modes": list(item.modes),
            "regions": "all" if item.all_regions else list(item.regions),
            "licence_types": sorted(item.licence_types),
            "mandatory_requirements": sum(r.mandatory for r in item.requirements),
            "requirements": len(item.requirements)}


def item_detail(catalogue: Catalogue, item: Item) -> dict[str, Any]:
    out = item.to_dict()
    for req_dict, req in zip(out["requirements"], item.requirements, strict=True):
        req_dict["accepted_types"] = accepted_types(catalogue, req.accept)
    return out


def search_for(catalogue: Catalogue, principal: Principal, *, text: str | None, department: str | None,
               licence_type: str | None, mode: str | None, region: str | None, offset: int,
               limit: int) -> tuple[int, list[Item]]:
    """``Catalogue.search`` restricted to the items the partner may use (same order)."""
    if offset < 0 or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise RequestRejected(errors.BAD_REQUEST, f"limit must be from 1 to {MAX_SEARCH_LIMIT}; offset non-negative")
    if principal.items is None:
        return catalogue.search(text, department, licence_type, mode, region, offset, limit)
    allowed: list[Item] = []
    page_at = 0
    while True:
        total, page = catalogue.search(text, department, licence_type, mode, region, page_at, MAX_SEARCH_LIMIT)
        allowed.extend(i for i in page if principal.may_use_item(i.code))
        page_at += MAX_SEARCH_LIMIT
        if page_at >= total:
            break
    return len(allowed), allowed[offset:offset + limit]


# --- handlers --------------------------------------------------------------------------
@requires_scope(ITEMS_READ)
async def list_items(request: web.Request) -> web.Response:
    catalogue, principal = _catalogue(request), request[AUTH_PRINCIPAL]
    query = request.rel_url.query
    unknown = sorted(set(query) - set(SEARCH_PARAMS))
    if unknown:
        shown_names = ", ".join(unknown)[:200]
        raise _bad_param(f"unknown query parameter(s): {shown_names}; allowed: {', '.join(SEARCH_PARAMS)}",
                         f"未知的查询参数：{shown_names}；可用的参数：{'、'.join(SEARCH_PARAMS)}")
    for name in query:
        if len(query.getall(name)) > 1:
            raise _bad_param(f"query parameter '{name}' given more than once", f"查询参数 {name} 重复出现")
    offset = _int_param(query, "offset", 0, 0)
    limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_SEARCH_LIMIT)
    # an empty value is no filter (a form's empty field); any other value must be one the catalogue knows
    filters = {name: (query.get(name) or None) for name in ("q", "department", "licence_type", "mode", "region")}
    _check_filters(catalogue, filters)
    total, page = search_for(catalogue, principal, text=filters["q"], department=filters["department"],
                             licence_type=filters["licence_type"], mode=filters["mode"], region=filters["region"],
                             offset=offset, limit=limit)
    etag = make_etag(catalogue.etag, "items", _partner_scope_key(principal),
                     *(f"{k}={filters[k] or ''}" for k in sorted(filters)), f"offset={offset}", f"limit={limit}")
    nxt = offset + limit if offset + limit < total else None
    return _cached_json(request, lambda: {
        "items": [item_summary(i) for i in page], "total": total, "offset": offset, "limit": limit,
        "next_offset": nxt, "catalogue_version": catalogue.etag[:16]}, etag)


@requires_scope(ITEMS_READ)
async def get_item(request: web.Request) -> web.Response:
    no_query_parameters(request)
    catalogue, principal = _catalogue(request), request[AUTH_PRINCIPAL]
    code = request.match_info["code"]
    principal.require_item(code)
    item = catalogue.item(code)
    if item is None:
        raise RequestRejected(errors.NOT_FOUND, f"no item {code[:64]!r}")
    return _cached_json(request, lambda: item_detail(catalogue, item), make_etag(catalogue.etag, "item", code))


@requires_scope(ITEMS_READ)
async def list_licence_types(request: web.Request) -> web.Response:
    no_query_parameters(request)
    catalogue = _catalogue(request)
    return _cached_json(request, lambda: {"types": [t.to_dict() for t in catalogue.types],
                                          "count": len(catalogue.types)},
                        make_etag(catalogue.etag, "licence-types"))


@requires_scope(ITEMS_CHECK)
async def check_item_handler(request: web.Request) -> web.Response:
    no_query_parameters(request)
    services, principal = request.app[SERVICES], request[AUTH_PRINCIPAL]
    catalogue = _catalogue(request)
    code = request.match_info["code"]
    principal.require_item(code)
    item = catalogue.item(code)
    if item is None:
        raise RequestRejected(errors.NOT_FOUND, f"no item {code[:64]!r}")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise RequestRejected(errors.BAD_REQUEST, "body must be an object with 'applicant' and 'licences'")
    unknown = sorted(set(body) - CHECK_FIELDS)
    if unknown:
        raise RequestRejected(errors.BAD_REQUEST, f"unknown field(s): {', '.join(unknown)[:200]}")
    applicant = parse_applicant(body.get("applicant"))
    entries = body.get("licences")
    if not isinstance(entries, list):
        raise RequestRejected(errors.BAD_REQUEST, "'licences' must be a list of {licence, encoding}")
    if len(entries) > services.settings.max_batch:
        raise RequestRejected(errors.BATCH_TOO_LARGE, f"{len(entries)} > max_batch {services.settings.max_batch}")
    presented: list[Presented] = []
    for i, entry in enumerate(entries):
        try:
            data = decode_presented(entry, services.settings, f"licences[{i}]: ")
        except RequestRejected:  # one bad entry does not spoil the others
            presented.append(Presented.undecodable(i))
            continue
        presented.append(Presented.from_result(i, verify_now(request.app, data)))
    for p in presented:
        if p.region is not None and not principal.may_use_region(p.region[0]):
            # the refusal names the licence's region: recorded first (503 AUDIT_UNAVAILABLE if it cannot be)
            await audit_wiring.audit_region_refusal(request, "check", p.region[0], p.licence, item=item.code)
            principal.require_region(p.region[0])
    outcome = check_item(catalogue, item, applicant, presented)
    answer = outcome.to_dict()
    answer["checked_at"] = services.clock().isoformat().replace("+00:00", "Z")
    # the audit records are committed before the answer (AUDIT_UNAVAILABLE -> 503); signed receipt
    answer["receipt"] = await audit_wiring.audit_check(request, item.code, applicant, presented, outcome)
    return web.Response(body=orjson.dumps(answer), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/items", list_items)
    app.router.add_get("/v1/items/{code}", get_item)
    app.router.add_post("/v1/items/{code}/check", check_item_handler)
    app.router.add_get("/v1/licence-types", list_licence_types)


if setup not in FEATURES:
    FEATURES.append(setup)
