"""specs/openapi.yaml describes the API that is actually served: every registered route is
in it (and nothing else), each operation's security matches the scope its handler declares,
and real responses of the main endpoints validate against the documented schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from gateway.app import create_app
from gateway.auth import make_client_assertion, token_request_form
from gateway.auth.scopes import PUBLIC_PATHS, declared_scope, is_public
from gateway.openapi_routes import load_spec

from .conftest import NOW

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def canonical(route) -> str:
    """The route's path as the spec writes it (a static directory serves ``{filename}``)."""
    resource = route.resource
    if isinstance(resource, web.StaticResource):
        return resource.canonical + "/{filename}"
    return resource.canonical


def registered_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route; HEAD mirrors GET (aiohttp adds it to add_get)."""
    return {(r.method.lower(), canonical(r)) for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"}


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op = spec["paths"].get(path, {}).get(method)
    assert op is not None, f"{method.upper()} {path} is not in specs/openapi.yaml"
    return op


def validate_body(spec: dict[str, Any], method: str, path: str, status: int, content_type: str, body: Any) -> None:
    op = operation(spec, method, path)
    response = op["responses"].get(str(status))
    assert response is not None, f"{method.upper()} {path}: status {status} is not documented"
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    media = response.get("content", {}).get(content_type)
    assert media is not None, f"{method.upper()} {path} {status}: {content_type} is not documented"
    root = {"components": spec["components"], "allOf": [media["schema"]]}
    errors = sorted(Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).iter_errors(body),
                    key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


async def call_and_validate(client, spec, method: str, path: str, template: str | None = None, **kw: Any):
    resp = await client.request(method.upper(), path, **kw)
    ctype = resp.content_type
    body = await resp.json(content_type=None) if "json" in ctype else await resp.text()
    validate_body(spec, method, template or path, resp.status, ctype, body)
    return resp, body


# --- the document itself --------------------------------------------------------------------
def test_spec_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate_openapi(spec)


def test_every_registered_route_is_described_and_nothing_else(world, spec):
    app = create_app(world.services())
    routes = registered_routes(app)
    described = {(m, p) for p, item in spec["paths"].items() for m in METHODS if m in item}
    assert routes - described == set(), "routes missing from specs/openapi.yaml"
    assert described - routes == set(), "specs/openapi.yaml describes routes that do not exist"


def test_each_operation_declares_the_scope_its_handler_requires(world, spec):
    app = create_app(world.services())
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path, method = canonical(route), route.method.lower()
        op = operation(spec, method, path)
        security = op.get("security", spec.get("security"))
        if path in ("/healthz", "/readyz") or (path.startswith("/v1") and is_public(path, PUBLIC_PATHS)):
            assert security == [], f"{method.upper()} {path} is public: security must be []"
            continue
        if not path.startswith("/v1"):  # the console: its own session scheme, stated per operation
            assert "security" in op, f"{method.upper()} {path}: state its security explicitly"
            assert all(set(req) == {"consoleSession"} for req in op["security"]), path
            continue
        scope = declared_scope(route.handler, route.method, path)
        assert scope is not None
        assert security and all(list(req.values()) == [[scope]] for req in security), (path, security)
        assert scope in spec["components"]["securitySchemes"]["partnerOAuth"]["flows"]["clientCredentials"]["scopes"]


def test_every_v1_error_response_is_documented_as_problem_json(spec):
    for path, item in spec["paths"].items():
        if not path.startswith("/v1") or path == "/v1/oauth/token":  # the token endpoint speaks RFC 6749 §5.2
            continue
        for method in METHODS:
            for status, response in item.get(method, {}).get("responses", {}).items():
                if int(status) < 400:
                    continue
                if "$ref" in response:
                    response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
                assert response["content"] == {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}, (method, path, status)


# --- served ------------------------------------------------------------------------------------
async def test_openapi_json_is_served_without_a_token(aiohttp_client, world, spec):
    client = await aiohttp_client(create_app(world.services()))
    resp = await client.get("/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == spec


async def test_docs_page_is_self_contained_and_public(aiohttp_client, world):
    client = await aiohttp_client(create_app(world.services()))
    resp = await client.get("/v1/docs")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert 'fetch("openapi.json")' in html
    assert re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", html) == []  # no CDN, works offline
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]


# --- real responses validate against their schemas ----------------------------------------------
async def test_verify_and_batch_responses_match_the_schema(api, world, spec):
    good = world.simulator.issue("330500", "id_card", "valid", NOW).body()
    expired = world.simulator.issue("320500", "id_card", "expired", NOW).body()
    _, body = await call_and_validate(api, spec, "post", "/v1/licences/verify", json=good)
    assert body["verdict"] == "valid"
    _, body = await call_and_validate(api, spec, "post", "/v1/licences/verify-batch", json={
        "licences": [good, expired, {"licence": "@@", "encoding": "base64"}]})
    assert [r["verdict"] for r in body["results"]] == ["valid", "invalid", "invalid"]


async def test_regions_health_and_ready_match_the_schema(api, spec):
    for path in ("/v1/regions", "/healthz", "/readyz"):
        resp, _ = await call_and_validate(api, spec, "get", path)
        assert resp.status == 200


async def test_item_endpoints_match_the_schema(api, spec):
    resp, page = await call_and_validate(api, spec, "get", "/v1/items", params={"q": "hk", "limit": "5"})
    assert page["items"]
    again = await api.get("/v1/items", params={"q": "hk", "limit": "5"}, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304 and "304" in operation(spec, "get", "/v1/items")["responses"]
    await call_and_validate(api, spec, "get", "/v1/items/KS-004", "/v1/items/{code}")
    await call_and_validate(api, spec, "get", "/v1/licence-types")
    resp, _ = await call_and_validate(api, spec, "get", "/v1/items/KS-999", "/v1/items/{code}")
    assert resp.status == 404


async def test_check_answers_match_the_schema(api, world, spec):
    name, code = world.simulator.person("330500")
    me = (name, code, "111")
    other = world.simulator.person("340100")
    licences = [world.simulator.issue("330500", "id_card", "valid", NOW, holder=me).body(),
                world.simulator.issue("340100", "social_security_card", "valid", NOW, holder=(*other, "111")).body(),
                world.simulator.issue("330500", "id_card", "tampered", NOW, holder=me).body()]
    template = "/v1/items/{code}/check"
    resp, body = await call_and_validate(api, spec, "post", "/v1/items/KS-043/check", template,
                                         json={"applicant": {"code_type": "111", "code": code}, "licences": licences})
    assert resp.status == 200 and body["complete"] is False
    resp, body = await call_and_validate(api, spec, "post", "/v1/items/KS-043/check", template,
                                         json={"applicant": {"code_type": "111", "code": code[:-1] + "0"
                                                             if code[-1] != "0" else code[:-1] + "1"},
                                               "licences": []})
    assert resp.status == 400 and body["code"] == "APPLICANT_INVALID"


async def test_problem_responses_match_the_schema(aiohttp_client, world, spec):
    anonymous = await aiohttp_client(create_app(world.services()))
    resp, _ = await call_and_validate(anonymous, spec, "get", "/v1/items")
    assert resp.status == 401
    under_scoped = await aiohttp_client(create_app(world.services()), headers=world.auth(scope="items:read"))
    resp, _ = await call_and_validate(under_scoped, spec, "post", "/v1/licences/verify", json={"licence": "x"})
    assert resp.status == 403
    resp, _ = await call_and_validate(under_scoped, spec, "get", "/v1/items", params={"limit": "1000"})
    assert resp.status == 400
    api = await aiohttp_client(create_app(world.services()), headers=world.auth())
    resp, _ = await call_and_validate(api, spec, "post", "/v1/licences/verify", data=b"x",
                                      headers={"Content-Type": "text/plain"})
    assert resp.status == 415


async def test_token_endpoint_and_keys_match_the_schema(aiohttp_client, world, spec):
    client = await aiohttp_client(create_app(world.services()))
    registry_dir = Path(world.settings.partners_dir)
    key = serialization.load_pem_private_key((registry_dir / "demo-partner.test-private.pem").read_bytes(), None)
    partner = world.partners["demo-partner"]
    assertion = make_client_assertion("demo-partner", key, partner.alg, world.settings.token_endpoint_url,
                                      NOW.timestamp())
    resp, body = await call_and_validate(client, spec, "post", "/v1/oauth/token",
                                         data=token_request_form(assertion, "items:read"))
    assert resp.status == 200 and body["scope"] == "items:read"
    resp, body = await call_and_validate(client, spec, "post", "/v1/oauth/token",
                                         data=token_request_form(assertion, "items:read"))
    assert resp.status == 401 and body["error"] == "invalid_client"  # the same jti replayed
    resp, body = await call_and_validate(client, spec, "get", "/v1/keys")
    assert body["keys"][0]["kid"] == world.gateway_key.kid
