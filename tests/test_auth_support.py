"""Shared builders for the tests/test_auth_*.py files, plus checks on the shipped TEST keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from gateway.auth import (AUTH_CLOCK, ITEMS_CHECK, ITEMS_READ, LICENCES_QUERY, LICENCES_VERIFY, ADMIN,
                          AUTH_PRINCIPAL, TOKEN_SERVICE, PartnerRegistry, RateLimiter, SigningKey, TokenService,
                          TokenVerifier, auth_middleware, jwks_handler, load_partners, load_signing_key,
                          make_client_assertion, requires_scope, token_handler, token_request_form)
from gateway.auth.demo import GATEWAY_TEST_KEY_FILE, partner_test_key_path
from gateway.errors import GatewayError, InfrastructureError, RequestRejected

REGISTRY_DIR = Path(__file__).resolve().parent.parent / "certs" / "partners"
ENDPOINT = "https://gateway.test/v1/oauth/token"
NOW = 1_780_000_000.0


class FakeClock:
    """A settable clock: wall time for tokens, monotonic time for the limiter."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def registry() -> PartnerRegistry:
    return load_partners(REGISTRY_DIR)


def gateway_key() -> SigningKey:
    return load_signing_key(REGISTRY_DIR / GATEWAY_TEST_KEY_FILE)


def partner_private_key(client_id: str) -> Any:
    return serialization.load_pem_private_key(partner_test_key_path(REGISTRY_DIR, client_id).read_bytes(), None)


def assertion(client_id: str = "demo-partner", now: float = NOW, **kw: Any) -> str:
    reg = registry()
    alg = kw.pop("alg", reg[client_id].alg if client_id in reg else "EdDSA")
    key = kw.pop("key", None) or partner_private_key(client_id if client_id in reg else "demo-partner")
    audience = kw.pop("audience", ENDPOINT)
    return make_client_assertion(client_id, key, alg, audience, now, **kw)


def token_service(reg: PartnerRegistry | None = None, key: SigningKey | None = None) -> TokenService:
    return TokenService(reg or registry(), key or gateway_key(), token_endpoint=ENDPOINT)


def issue_token(client_id: str = "demo-partner", scope: str | None = None, now: float = NOW) -> str:
    return token_service().issue(token_request_form(assertion(client_id, now), scope), now)["access_token"]


# --- the tiny app used by the HTTP tests -------------------------------------------------

@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stand-in for the app's problem+json renderer: status from the reason, exc.headers copied."""
    try:
        return await handler(request)
    except GatewayError as exc:
        status = exc.reason.status if isinstance(exc, RequestRejected) else (
            exc.reason.status if isinstance(exc, InfrastructureError) else 400)
        headers = getattr(exc, "headers", {})
        return web.Response(body=orjson.dumps(exc.as_reason_dict()), status=status,
                            content_type="application/problem+json", headers=headers)


def _echo(request: web.Request, **extra: Any) -> web.Response:
    principal = request[AUTH_PRINCIPAL]
    return web.json_response({"client_id": principal.client_id, "scopes": sorted(principal.scopes), **extra})


@requires_scope(LICENCES_VERIFY)
async def verify_licence(request: web.Request) -> web.Response:
    return _echo(request)


@requires_scope(LICENCES_QUERY)
async def get_licence(request: web.Request) -> web.Response:
    return _echo(request, identifier=request.match_info["identifier"])


@requires_scope(ITEMS_READ)
async def list_items(request: web.Request) -> web.Response:
    return _echo(request)


@requires_scope(ITEMS_CHECK)
async def check_item(request: web.Request) -> web.Response:
    principal = request[AUTH_PRINCIPAL]
    code = request.match_info["code"]
    region = (await request.json())["region"]
    principal.require_item(code)
    principal.require_region(region)
    return _echo(request, item=code, region=region)


@requires_scope(ITEMS_READ)
async def read_item(request: web.Request) -> web.Response:
    principal = request[AUTH_PRINCIPAL]
    code = request.match_info["code"]
    principal.require_item(code)
    return _echo(request, item=code)


@requires_scope(ADMIN)
async def admin_partners(request: web.Request) -> web.Response:
    return _echo(request)


async def stats(request: web.Request) -> web.Response:  # scoped through the route table
    return _echo(request)


async def health(request: web.Request) -> web.Response:  # outside /v1: not the middleware's business
    return web.json_response({"ok": True})


ROUTE_TABLE = {("GET", "/v1/stats"): LICENCES_QUERY}


def build_app(clock: FakeClock, mono: FakeClock, *, reg: PartnerRegistry | None = None,
              verifier: TokenVerifier | None = None, limiter: RateLimiter | None = None) -> web.Application:
    reg = reg or registry()
    key = gateway_key()
    verifier = verifier or TokenVerifier(reg, [key])
    limiter = limiter or RateLimiter()
    app = web.Application(middlewares=[
        problem_middleware, auth_middleware(verifier, limiter, route_scopes=ROUTE_TABLE, clock=clock, monotonic=mono)])
    app[TOKEN_SERVICE] = TokenService(reg, key, token_endpoint=ENDPOINT)
    app[AUTH_CLOCK] = clock
    app.router.add_post("/v1/oauth/token", token_handler)
    app.router.add_get("/v1/keys", jwks_handler)
    app.router.add_post("/v1/licences/verify", verify_licence)
    app.router.add_get("/v1/licences/{identifier}", get_licence)
    app.router.add_get("/v1/items", list_items)
    app.router.add_get("/v1/items/{code}", read_item)
    app.router.add_post("/v1/items/{code}/check", check_item)
    app.router.add_get("/v1/admin/partners", admin_partners)
    app.router.add_get("/v1/stats", stats)
    app.router.add_get("/healthz", health)
    return app


# --- checks on the shipped TEST material -------------------------------------------------

def test_every_committed_private_key_is_named_test() -> None:
    private = [p.name for p in REGISTRY_DIR.iterdir() if b"PRIVATE KEY" in p.read_bytes()]
    assert sorted(private) == ["demo-partner.test-private.pem", "gateway.test-signing-key.pem",
                               "load-operator.test-private.pem", "load-partner.test-private.pem", "restricted-partner.test-private.pem"]
    assert all(re.search(r"\.test[-.]", name) for name in private)


def test_partner_readme_declares_the_keys_are_test_keys() -> None:
    text = (REGISTRY_DIR / "README.md").read_text(encoding="utf-8")
    assert "TEST key" in text
    for name in ("demo-partner.test-private.pem", "restricted-partner.test-private.pem", "gateway.test-signing-key.pem",
                 "load-partner.test-private.pem", "load-operator.test-private.pem"):
        assert name in text
