"""Attacks on the partner token endpoint (``POST /v1/oauth/token``) through the real app.

* A form body the server cannot decode (bytes that are not UTF-8, a charset the body is not
  in, a charset Python does not know) crashed ``request.post()`` inside the token handler:
  HTTP 500 INTERNAL instead of the RFC 6749 ``invalid_request``.
* A client assertion is JSON read by Python's ``json`` (through PyJWT), which accepts
  ``NaN``/``Infinity`` and integers of any size:

  - ``exp`` (or ``iat``/``nbf``) beyond the float range made ``float()`` raise OverflowError:
    HTTP 500 INTERNAL instead of ``invalid_client``;
  - ``exp = NaN`` compares false with everything, so it passed "expired" and "lifetime at
    most 5 minutes": an assertion that never expires was accepted, and its NaN expiry,
    once at the top of the replay cache's heap, stopped every later prune (the cache then
    only grows until it refuses every partner). ``iat``/``nbf`` NaN passed their checks too.

Each attack sits beside a genuine control that is still served.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.app import create_app
from gateway.auth import ACCESS_AUDIENCE, OAuthError, TokenService, make_client_assertion, token_request_form
from gateway.auth.demo import partner_test_key_path

from .conftest import NOW

CLIENT = "demo-partner"
FORM = "application/x-www-form-urlencoded"


def client_assertion(world: Any, *, now: float | None = None, extra: dict[str, Any] | None = None) -> str:
    """A client assertion genuinely signed with the demo partner's TEST key."""
    pem = partner_test_key_path(world.settings.partners_dir, CLIENT).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    return make_client_assertion(CLIENT, key, world.partners[CLIENT].alg, world.settings.token_endpoint_url,
                                 NOW.timestamp() if now is None else now, extra=extra)


def encoded_form(world: Any, **kw: Any) -> bytes:
    return urllib.parse.urlencode(token_request_form(client_assertion(world, **kw))).encode("ascii")


@pytest.fixture
async def anonymous(world: Any, aiohttp_client: Any) -> Any:
    """A client of the real app without a bearer token (the token endpoint is public)."""
    return await aiohttp_client(create_app(world.services()))


async def token_answer(client: Any, body: Any, content_type: str = FORM) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/oauth/token", data=body, headers={"Content-Type": content_type})
    return resp.status, await resp.json(content_type=None)


async def assert_genuine_token_issued(client: Any, world: Any) -> None:
    status, body = await token_answer(client, encoded_form(world))
    assert status == 200, body
    claims = jwt.decode(body["access_token"], world.gateway_key.public_key, algorithms=[world.gateway_key.alg],
                        audience=ACCESS_AUDIENCE, options={"verify_exp": False})
    assert claims["sub"] == CLIENT


# --- a form body that cannot be decoded ------------------------------------------------------

@pytest.mark.parametrize("attack, content_type, body", [
    ("raw_bytes_that_are_not_utf8", FORM, b"\xff\xfe=\xff&grant_type=client_credentials"),
    ("charset_python_does_not_know", f"{FORM}; charset=x-no-such-charset", b"grant_type=client_credentials"),
    ("utf16_charset_on_an_odd_length_body", f"{FORM}; charset=utf-16", b"grant_type=client_credentials"),
])
async def test_token_form_that_cannot_be_decoded_is_invalid_request_not_a_500(anonymous: Any, world: Any,
                                                                              attack: str, content_type: str,
                                                                              body: bytes) -> None:
    status, answer = await token_answer(anonymous, body, content_type)
    assert status == 400, (attack, answer)
    assert answer["error"] == "invalid_request", attack
    assert set(answer) == {"error", "error_description", "error_description_zh"}
    await assert_genuine_token_issued(anonymous, world)  # control: the genuine form still works


async def test_oversized_chunked_token_form_is_still_413_body_too_large(anonymous: Any, world: Any) -> None:
    limit = world.settings.max_body_bytes

    async def chunks():  # no Content-Length: the size is only known while reading
        sent = 0
        while sent <= limit:
            yield b"a" * 65536
            sent += 65536

    status, answer = await token_answer(anonymous, chunks())
    assert status == 413 and answer["code"] == "BODY_TOO_LARGE"
    await assert_genuine_token_issued(anonymous, world)


# --- time claims outside what a NumericDate can be ----------------------------------------------

@pytest.mark.parametrize("claim, value", [
    ("exp", 10 ** 400), ("exp", -(10 ** 400)), ("iat", 10 ** 400), ("nbf", -(10 ** 400)),
], ids=["exp_1e400", "exp_minus_1e400", "iat_1e400", "nbf_minus_1e400"])
async def test_client_assertion_time_beyond_the_float_range_is_invalid_client_not_a_500(
        anonymous: Any, world: Any, claim: str, value: int) -> None:
    status, answer = await token_answer(anonymous, encoded_form(world, extra={claim: value}))
    assert status == 401, answer
    assert answer["error"] == "invalid_client"
    await assert_genuine_token_issued(anonymous, world)


@pytest.mark.parametrize("claim, value", [
    ("exp", float("nan")), ("iat", float("nan")), ("nbf", float("nan")),
    ("exp", float("inf")), ("exp", float("-inf")), ("iat", float("-inf")), ("nbf", float("inf")),
])
async def test_client_assertion_with_a_non_finite_time_claim_is_invalid_client(
        anonymous: Any, world: Any, claim: str, value: float) -> None:
    status, answer = await token_answer(anonymous, encoded_form(world, extra={claim: value}))
    assert status == 401, answer
    assert answer["error"] == "invalid_client" and "access_token" not in answer
    await assert_genuine_token_issued(anonymous, world)


def test_client_assertion_with_nan_exp_neither_lives_forever_nor_stalls_the_replay_cache(world: Any) -> None:
    service = TokenService(world.partners, world.gateway_key, token_endpoint=world.settings.token_endpoint_url)
    t0 = NOW.timestamp()
    with pytest.raises(OAuthError) as refused:
        service.issue(token_request_form(client_assertion(world, extra={"exp": float("nan")})), t0)
    assert refused.value.error == "invalid_client" and refused.value.status == 401
    # control: genuine assertions are served, remembered until their expiry, then forgotten
    assert service.issue(token_request_form(client_assertion(world)), t0)["token_type"] == "Bearer"
    later = t0 + 3600
    assert service.issue(token_request_form(client_assertion(world, now=later)), later)["token_type"] == "Bearer"
    assert len(service.replay_cache) == 1  # the first genuine assertion expired and was pruned
