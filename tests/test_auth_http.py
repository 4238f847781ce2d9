"""End to end through aiohttp: token endpoint, bearer middleware, scopes, rate limit, restrictions."""

from __future__ import annotations

import re
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.auth import (ACCESS_AUDIENCE, AUTH_PRINCIPAL, PUBLIC_PATHS, ROUTE_SCOPES, RateLimiter, SigningKey,
                          token_request_form, unprotected_routes)
from gateway.auth.jose import b64url_encode

from .test_auth_support import NOW, ROUTE_TABLE, FakeClock, assertion, build_app, gateway_key


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def mono() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
async def client(aiohttp_client: Any, clock: FakeClock, mono: FakeClock) -> Any:
    return await aiohttp_client(build_app(clock, mono))


async def get_token(client: Any, client_id: str = "demo-partner", scope: str | None = None, **kw: Any) -> str:
    resp = await client.post("/v1/oauth/token", data=token_request_form(assertion(client_id, **kw), scope))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- token endpoint -------------------------------------------------------------------

async def test_token_issue_happy_path_returns_a_gateway_token_usable_on_v1(client: Any) -> None:
    resp = await client.post("/v1/oauth/token", data=token_request_form(assertion(), "licences:verify"))
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600 and body["scope"] == "licences:verify"
    key = gateway_key()
    claims = jwt.decode(body["access_token"], key.public_key, algorithms=["ES256"], audience=ACCESS_AUDIENCE,
                        options={"verify_exp": False})  # independent check with PyJWT
    assert claims["sub"] == "demo-partner" and claims["exp"] - claims["iat"] == 600
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    use = await client.post("/v1/licences/verify", headers=bearer(body["access_token"]))
    assert use.status == 200
    assert await use.json() == {"client_id": "demo-partner", "scopes": ["licences:verify"]}


async def test_replayed_client_assertion_is_rejected(client: Any) -> None:
    form = token_request_form(assertion())
    first = await client.post("/v1/oauth/token", data=form)
    replay = await client.post("/v1/oauth/token", data=form)
    assert first.status == 200
    assert replay.status == 401
    body = await replay.json()
    assert body["error"] == "invalid_client" and "重放" in body["error_description_zh"]
    assert "replay" in body["error_description"]


@pytest.mark.parametrize("attack, kwargs", [
    ("expired_assertion", {"now": NOW - 400}),
    ("assertion_for_another_audience", {"audience": "https://other-gateway.test/v1/oauth/token"}),
    ("assertion_signed_by_an_impostor_key", {"key": ed25519.Ed25519PrivateKey.generate()}),
    ("assertion_valid_for_an_hour", {"lifetime_s": 3600}),
])
async def test_bad_client_assertion_is_invalid_client(client: Any, attack: str, kwargs: dict[str, Any]) -> None:
    resp = await client.post("/v1/oauth/token", data=token_request_form(assertion(**kwargs)))
    assert resp.status == 401, attack
    assert (await resp.json())["error"] == "invalid_client"


async def test_unknown_client_is_invalid_client(client: Any) -> None:
    resp = await client.post("/v1/oauth/token", data=token_request_form(assertion("stranger-partner")))
    assert resp.status == 401
    assert await resp.json() == {"error": "invalid_client", "error_description": "Unknown client: not a registered partner.",
                                 "error_description_zh": "未注册的合作方。"}


async def test_scope_beyond_the_partner_grant_is_invalid_scope(client: Any) -> None:
    resp = await client.post("/v1/oauth/token", data=token_request_form(assertion("restricted-partner"), "admin"))
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_scope"


async def test_password_grant_is_unsupported_grant_type(client: Any) -> None:
    form = {**token_request_form(assertion()), "grant_type": "password"}
    resp = await client.post("/v1/oauth/token", data=form)
    assert resp.status == 400
    assert (await resp.json())["error"] == "unsupported_grant_type"


async def test_repeated_form_parameter_is_invalid_request(client: Any) -> None:
    form = token_request_form(assertion())
    pairs = list(form.items()) + [("scope", "items:read"), ("scope", "admin")]
    resp = await client.post("/v1/oauth/token", data=pairs)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_json_token_request_is_invalid_request(client: Any) -> None:
    resp = await client.post("/v1/oauth/token", json=token_request_form(assertion()))
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_request"


async def test_jwks_publishes_the_gateway_public_key_without_a_token(client: Any) -> None:
    resp = await client.get("/v1/keys")
    assert resp.status == 200
    (jwk,) = (await resp.json())["keys"]
    assert jwk["kid"] == gateway_key().kid and jwk["alg"] == "ES256" and "d" not in jwk


# --- bearer tokens on /v1 --------------------------------------------------------------

async def test_missing_token_is_401_with_a_bearer_challenge(client: Any) -> None:
    resp = await client.post("/v1/licences/verify")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="elicence-gateway"'
    assert (await resp.json())["code"] == "UNAUTHENTICATED"


async def test_basic_scheme_is_401_invalid_token(client: Any) -> None:
    resp = await client.post("/v1/licences/verify", headers={"Authorization": "Basic ZGVtbzpkZW1v"})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_expired_access_token_is_401_invalid_token(client: Any, clock: FakeClock) -> None:
    token = await get_token(client)
    assert (await client.post("/v1/licences/verify", headers=bearer(token))).status == 200  # now cached
    clock.now = NOW + 601
    resp = await client.post("/v1/licences/verify", headers=bearer(token))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert "expired" in resp.headers["WWW-Authenticate"]


def forged_claims() -> dict[str, Any]:
    return {"iss": "elicence-gateway", "sub": "demo-partner", "aud": ACCESS_AUDIENCE, "iat": int(NOW),
            "exp": int(NOW) + 600, "jti": "forged", "scope": "licences:verify admin"}


def token_with_header(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    import orjson
    return f"{b64url_encode(orjson.dumps(header))}.{b64url_encode(orjson.dumps(claims))}.{b64url_encode(signature)}"


async def test_token_forged_with_another_key_under_the_gateway_kid_is_401(client: Any) -> None:
    impostor = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", gateway_key().kid)
    resp = await client.post("/v1/licences/verify", headers=bearer(impostor.sign(forged_claims())))
    assert resp.status == 401
    assert "bad signature" in resp.headers["WWW-Authenticate"]


async def test_unsigned_alg_none_token_is_401(client: Any) -> None:
    token = token_with_header({"alg": "none", "typ": "at+jwt"}, forged_claims())
    resp = await client.post("/v1/licences/verify", headers=bearer(token))
    assert resp.status == 401
    assert "alg none" in resp.headers["WWW-Authenticate"]


async def test_hs256_token_keyed_with_the_public_key_is_401(client: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    public_pem = gateway_key().public_key.public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac
    header = {"alg": "HS256", "kid": gateway_key().kid, "typ": "at+jwt"}
    unsigned = token_with_header(header, forged_claims()).rsplit(".", 1)[0]
    mac = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    resp = await client.post("/v1/licences/verify", headers=bearer(f"{unsigned}.{b64url_encode(mac)}"))
    assert resp.status == 401
    assert "symmetric algorithm refused" in resp.headers["WWW-Authenticate"]


async def test_gateway_signed_token_for_another_audience_is_401(client: Any) -> None:
    token = gateway_key().sign({**forged_claims(), "aud": "some-other-service"})
    resp = await client.post("/v1/licences/verify", headers=bearer(token))
    assert resp.status == 401
    assert "wrong audience" in resp.headers["WWW-Authenticate"]


async def test_under_scoped_token_is_403_insufficient_scope(client: Any) -> None:
    token = await get_token(client, scope="items:read")
    resp = await client.post("/v1/licences/verify", headers=bearer(token))
    assert resp.status == 403
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="elicence-gateway", error="insufficient_scope", scope="licences:verify"')
    assert (await resp.json())["code"] == "FORBIDDEN"


async def test_route_table_scope_is_enforced(client: Any) -> None:
    ok = await client.get("/v1/stats", headers=bearer(await get_token(client, scope="licences:query")))
    denied = await client.get("/v1/stats", headers=bearer(await get_token(client, scope="items:read")))
    assert (ok.status, denied.status) == (200, 403)


async def test_paths_outside_v1_are_left_to_the_app(client: Any) -> None:
    assert (await client.get("/healthz")).status == 200


async def test_unknown_v1_path_needs_a_token_before_revealing_404(client: Any) -> None:
    assert (await client.get("/v1/nope")).status == 401
    assert (await client.get("/v1/nope", headers=bearer(await get_token(client)))).status == 404


# --- every /v1 route is protected ------------------------------------------------------

def sample_path(canonical: str) -> str:
    return re.sub(r"\{[^}]+\}", "sample-1", canonical)


async def test_every_v1_route_refuses_a_request_without_token(client: Any) -> None:
    app = client.server.app
    checked = []
    for route in app.router.routes():
        canonical = route.resource.canonical
        if not canonical.startswith("/v1/") or canonical in PUBLIC_PATHS:
            continue
        resp = await client.request(route.method, sample_path(canonical))
        assert resp.status == 401, f"{route.method} {canonical} answered {resp.status} without a token"
        checked.append((route.method, canonical))
    assert len(checked) >= 8  # the walk really walked (GET routes come with HEAD twins)
    assert unprotected_routes(app, ROUTE_TABLE) == []


async def test_route_added_without_scope_is_refused_and_listed(aiohttp_client: Any, clock: FakeClock,
                                                               mono: FakeClock) -> None:
    app = build_app(clock, mono)

    async def forgotten(request: web.Request) -> web.Response:
        return web.json_response({"leak": True})
    app.router.add_get("/v1/forgotten", forgotten)
    assert ("GET", "/v1/forgotten") in unprotected_routes(app, ROUTE_TABLE)
    assert ("GET", "/v1/forgotten") not in ROUTE_SCOPES
    client = await aiohttp_client(app)
    token = await get_token(client)
    resp = await client.get("/v1/forgotten", headers=bearer(token))
    assert resp.status == 500
    assert "declares no scope" in (await resp.json())["detail"]


# --- rate limit ------------------------------------------------------------------------

async def test_burst_exhausted_gives_429_with_retry_after(aiohttp_client: Any, clock: FakeClock,
                                                          mono: FakeClock) -> None:
    limiter = RateLimiter()
    client = await aiohttp_client(build_app(clock, mono, limiter=limiter))
    token = await get_token(client, "restricted-partner")  # 2 req/s, burst 3
    statuses = [(await client.get("/v1/items", headers=bearer(token))).status for _ in range(3)]
    limited = await client.get("/v1/items", headers=bearer(token))
    assert statuses == [200, 200, 200]
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "1"
    assert (await limited.json())["code"] == "RATE_LIMITED"
    mono.now += 0.5  # one token back at 2 req/s
    assert (await client.get("/v1/items", headers=bearer(token))).status == 200
    assert limiter.requests("restricted-partner") == 5 and limiter.refused["restricted-partner"] == 1
    assert limiter.requests("demo-partner") == 0


async def test_one_partner_exhausting_its_bucket_does_not_limit_another(aiohttp_client: Any, clock: FakeClock,
                                                                        mono: FakeClock) -> None:
    client = await aiohttp_client(build_app(clock, mono))
    restricted = await get_token(client, "restricted-partner")
    for _ in range(4):
        await client.get("/v1/items", headers=bearer(restricted))
    demo = await get_token(client)
    assert (await client.get("/v1/items", headers=bearer(demo))).status == 200


# --- per-partner item and region restrictions -----------------------------------------

async def test_restricted_partner_can_read_its_own_items_only(client: Any) -> None:
    token = await get_token(client, "restricted-partner")
    allowed = await client.get("/v1/items/KS-001", headers=bearer(token))
    other = await client.get("/v1/items/KS-099", headers=bearer(token))
    assert allowed.status == 200
    assert other.status == 403 and (await other.json())["code"] == "FORBIDDEN"


async def test_restricted_partner_cannot_check_items_without_the_scope(client: Any) -> None:
    token = await get_token(client, "restricted-partner")
    resp = await client.post("/v1/items/KS-001/check", headers=bearer(token), json={"region": "330502"})
    assert resp.status == 403


async def test_item_and_region_checks_on_a_route_with_both(aiohttp_client: Any, clock: FakeClock,
                                                           mono: FakeClock) -> None:
    from dataclasses import replace
    from gateway.auth import PartnerRegistry
    from .test_auth_support import registry
    reg = registry()
    widened = replace(reg["restricted-partner"], scopes=reg["restricted-partner"].scopes | {"items:check"},
                      burst=50)
    reg = PartnerRegistry({**reg, "restricted-partner": widened})
    client = await aiohttp_client(build_app(clock, mono, reg=reg))
    token = await get_token(client, "restricted-partner", scope="items:check")
    results = {}
    for item, region in [("KS-001", "330502"), ("KS-001", "310117"), ("KS-001", "320100"),
                         ("KS-003", "330502")]:
        resp = await client.post(f"/v1/items/{item}/check", headers=bearer(token), json={"region": region})
        results[(item, region)] = resp.status
    assert results == {("KS-001", "330502"): 200, ("KS-001", "310117"): 200,
                       ("KS-001", "320100"): 403, ("KS-003", "330502"): 403}


async def test_handler_sees_the_principal_under_the_documented_request_key(client: Any) -> None:
    token = await get_token(client, "restricted-partner")
    resp = await client.get("/v1/licences/" + "sample-1", headers=bearer(token))
    assert resp.status == 403  # restricted partner lacks licences:query
    resp = await client.post("/v1/licences/verify", headers=bearer(token))
    body = await resp.json()
    assert "principal" in repr(AUTH_PRINCIPAL)
    assert body == {"client_id": "restricted-partner", "scopes": ["items:read", "licences:verify"]}
