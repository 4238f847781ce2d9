"""Second adversarial review of partner authentication, scopes and rate limiting (through HTTP).

* A bearer token re-spelt in its signature segment -- ``<token>=``, ``<token>==``, ``-``/``_``
  written as the standard-base64 ``+``/``/``, the unused low bits of the last character set --
  still verified: the base64url decoder accepted padding, both alphabets and non-canonical
  trailing bits. One token became thousands of distinct valid strings: each one a cache miss
  (a signature check) and a new entry in the verifier's shared LRU, and a token "with trailing
  garbage" was served.
* The client-assertion replay cache was one budget for all partners: a partner sending fresh
  assertions (each a valid token request) filled its 100 000 entries within an assertion's
  lifetime, and every other partner was then refused a token (429). Each partner now has a
  share (:data:`gateway.auth.tokens.MAX_REPLAY_ENTRIES_PER_CLIENT`); past it only that partner
  waits.
* A token request carrying HTTP Basic credentials (naming any client) beside a client
  assertion was answered for the assertion and the Basic credentials silently ignored;
  RFC 6749 §2.3/§5.2: more than one client authentication method is ``invalid_request``.

Each attack sits beside a genuine control that is still served.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.auth import TOKEN_SERVICE, OAuthError, ReplayCache, TokenVerifier, token_request_form
from gateway.auth.tokens import MAX_REPLAY_ENTRIES_PER_CLIENT

from .test_auth_http import bearer, clock, get_token, mono  # noqa: F401  (fixtures)
from .test_auth_support import ENDPOINT, NOW, FakeClock, assertion, build_app, gateway_key, registry

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(registry(), [gateway_key()])


@pytest.fixture
async def client(aiohttp_client: Any, clock: FakeClock, mono: FakeClock, verifier: TokenVerifier) -> Any:  # noqa: F811
    return await aiohttp_client(build_app(clock, mono, verifier=verifier))


# --- a bearer token re-spelt in its signature ----------------------------------------------------

def respellings(token: str) -> dict[str, str]:
    """Other spellings of the same signature bytes (base64 decoders that are not strict accept them)."""
    signing_input, sig = token.rsplit(".", 1)
    last = B64URL.index(sig[-1])  # 64-byte signature: 86 characters, the last carries 2 bits + 4 unused zero bits
    return {
        "one_padding_character": f"{token}=",
        "two_padding_characters": f"{token}==",
        "standard_base64_alphabet": f"{signing_input}.{sig.replace('-', '+').replace('_', '/')}",
        "unused_trailing_bits_set": f"{signing_input}.{sig[:-1]}{B64URL[last | 0b0001]}",
    }


async def token_with_dash_or_underscore_in_its_signature(client: Any) -> str:
    for _ in range(40):  # a random ES256 signature holds '-' or '_' with probability ~0.94
        token = await get_token(client)
        sig = token.rsplit(".", 1)[1]
        if ("-" in sig or "_" in sig) and B64URL.index(sig[-1]) & 0b0001 == 0:
            return token
    raise AssertionError("no suitable signature in 40 tokens")


@pytest.mark.parametrize("attack", ["one_padding_character", "two_padding_characters", "standard_base64_alphabet",
                                    "unused_trailing_bits_set"])
async def test_access_token_respelt_with_padding_or_another_base64_alphabet_is_401(
        client: Any, verifier: TokenVerifier, attack: str) -> None:
    token = await token_with_dash_or_underscore_in_its_signature(client)
    variant = respellings(token)[attack]
    assert variant != token and base64.urlsafe_b64decode(variant.rsplit(".", 1)[1].replace("+", "-").replace(
        "/", "_") + "==") == base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")  # the same signature bytes
    resp = await client.post("/v1/licences/verify", headers=bearer(variant))
    assert resp.status == 401, attack
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer realm="elicence-gateway", error="invalid_token", error_description="malformed token"')
    assert (await resp.json())["code"] == "UNAUTHENTICATED"
    # control: the token as issued is served, and it is the only entry in the verifier's cache
    genuine = await client.post("/v1/licences/verify", headers=bearer(token))
    assert genuine.status == 200 and (await genuine.json())["client_id"] == "demo-partner"
    assert verifier.cache_len() == 1


# --- one partner filling the replay cache of everybody ------------------------------------------

async def test_one_partner_flooding_fresh_assertions_cannot_lock_other_partners_out_of_tokens(client: Any) -> None:
    cache: ReplayCache = client.server.app[TOKEN_SERVICE].replay_cache
    assert isinstance(cache, ReplayCache)
    # the state after demo-partner sent as many valid assertions (fresh jti each) as the cache takes,
    # all still unexpired (an assertion lives up to 330 s): what it can do at ~300 requests a second
    accepted = 0
    with contextlib.suppress(OAuthError):
        for i in range(100_000):
            assert cache.add("demo-partner", f"flood-{i}", NOW + 330, NOW)
            accepted += 1

    # another partner is still served (before the fix: 429 "令牌服务繁忙，请稍后重试。" for every partner) ...
    other = await client.post("/v1/oauth/token", data=token_request_form(assertion("restricted-partner")))
    assert other.status == 200, await other.text()
    assert (await other.json())["access_token"]
    # ... the flooding partner waits, stopped at its share
    flooder = await client.post("/v1/oauth/token", data=token_request_form(assertion()))
    assert flooder.status == 429 and flooder.headers["Retry-After"] == "330"  # its oldest is forgotten at NOW+330
    assert (await flooder.json())["error"] == "temporarily_unavailable"
    assert accepted == MAX_REPLAY_ENTRIES_PER_CLIENT < 100_000


def test_replay_cache_share_is_given_back_when_the_assertions_expire() -> None:
    cache = ReplayCache(max_entries=10, max_per_client=2)
    assert cache.add("a", "1", 100.0, 0.0) and cache.add("a", "2", 200.0, 0.0)
    with pytest.raises(OAuthError) as info:
        cache.add("a", "3", 100.0, 0.0)
    assert info.value.error == "temporarily_unavailable" and info.value.status == 429
    assert cache.add("b", "1", 100.0, 0.0)  # another partner is not affected
    assert not cache.add("a", "1", 100.0, 50.0)  # a replay is still a replay, not a quota refusal
    assert cache.add("a", "3", 300.0, 100.0)  # "a/1" expired: its share is back
    assert (cache.held_for("a"), cache.held_for("b"), len(cache)) == (2, 0, 2)


# --- two client authentication methods in one token request ---------------------------------------

async def test_token_request_with_http_basic_beside_the_client_assertion_is_invalid_request(client: Any) -> None:
    form = token_request_form(assertion())
    basic = "Basic " + base64.b64encode(b"restricted-partner:guess").decode()
    resp = await client.post("/v1/oauth/token", data=form, headers={"Authorization": basic})
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"] == "invalid_request" and "access_token" not in answer
    assert resp.headers["Cache-Control"] == "no-store"
    # controls: the same assertion (not consumed by the refusal) alone is served; a client whose
    # session carries its bearer access token on every request may still refresh
    resp = await client.post("/v1/oauth/token", data=form)
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["access_token"]
    again = await client.post("/v1/oauth/token", data=token_request_form(assertion()), headers=bearer(token))
    assert again.status == 200, await again.text()


# --- sound: a key named by the assertion itself --------------------------------------------------

@pytest.mark.parametrize("attack", ["embedded_jwk", "jku_url", "kid_path", "x5u_url"])
async def test_client_assertion_signed_with_a_key_its_header_names_is_invalid_client(client: Any, attack: str) -> None:
    impostor = ed25519.Ed25519PrivateKey.generate()
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(impostor.public_key(), as_dict=True)
    header = {"embedded_jwk": {"jwk": jwk}, "jku_url": {"jku": "https://evil.test/jwks.json"},
              "kid_path": {"kid": "../../certs/partners/demo-partner.test-public.pem"},
              "x5u_url": {"x5u": "https://evil.test/cert.pem"}}[attack]
    claims = {"iss": "demo-partner", "sub": "demo-partner", "aud": ENDPOINT, "iat": int(NOW), "exp": int(NOW) + 60,
              "jti": f"impostor-{attack}"}
    forged = jwt.encode(claims, impostor, algorithm="EdDSA", headers=header)
    resp = await client.post("/v1/oauth/token", data=token_request_form(forged))
    assert resp.status == 401 and (await resp.json())["error"] == "invalid_client", attack
    assert (await client.post("/v1/oauth/token", data=token_request_form(assertion()))).status == 200
