"""TokenService: client credentials with private_key_jwt, replay cache, RFC 6749 errors."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth import ACCESS_AUDIENCE, OAuthError, ReplayCache, TokenService, demo_token, token_request_form
from gateway.errors import RequestRejected

from .test_auth_support import ENDPOINT, NOW, REGISTRY_DIR, assertion, gateway_key, registry, token_service


def oauth_error(service: TokenService, form: dict[str, str], now: float = NOW) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        service.issue(form, now)
    return info.value


def test_issue_grants_all_allowed_scopes_when_none_requested() -> None:
    body = token_service().issue(token_request_form(assertion("restricted-partner")), NOW)
    assert body["scope"] == "items:read licences:verify"
    claims = jwt.decode(body["access_token"], gateway_key().public_key, algorithms=["ES256"],
                        audience=ACCESS_AUDIENCE, options={"verify_exp": False})
    assert claims["sub"] == claims["client_id"] == "restricted-partner"
    assert claims["exp"] == int(NOW) + 600 and claims["iss"] == "elicence-gateway" and claims["jti"]


def test_access_token_lifetime_is_configurable() -> None:
    service = TokenService(registry(), gateway_key(), token_endpoint=ENDPOINT, access_ttl_s=120)
    body = service.issue(token_request_form(assertion()), NOW)
    assert body["expires_in"] == 120
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["exp"] == int(NOW) + 120


def test_each_issued_token_has_a_fresh_jti() -> None:
    service = token_service()
    tokens = [service.issue(token_request_form(assertion()), NOW)["access_token"] for _ in range(2)]
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 2


@pytest.mark.parametrize("attack, kwargs, needle", [
    ("expired_assertion", {"now": NOW - 200, "lifetime_s": 60}, "已过期"),
    ("assertion_for_another_audience", {"audience": "https://evil.test/token"}, "aud"),
    ("assertion_valid_for_ten_minutes", {"lifetime_s": 600}, "过长"),
    ("assertion_with_sub_of_another_partner", {"extra": {"sub": "restricted-partner"}}, "sub"),
    ("assertion_issued_in_the_future", {"extra": {"iat": int(NOW) + 3600}}, "iat"),
    ("assertion_not_yet_valid", {"extra": {"nbf": int(NOW) + 3600}}, "尚未生效"),
    ("assertion_signed_with_a_stranger_key", {"key": ec.generate_private_key(ec.SECP256R1()), "alg": "ES256"},
     "签名无效"),
])
def test_defective_assertion_is_invalid_client(attack: str, kwargs: dict[str, Any], needle: str) -> None:
    err = oauth_error(token_service(), token_request_form(assertion(**kwargs)))
    assert err.error == "invalid_client", attack
    assert err.status == 401 and needle in err.description_zh, (attack, err.description_zh)
    assert isinstance(err, RequestRejected) and err.code == "UNAUTHENTICATED"


def test_unsigned_alg_none_assertion_is_invalid_client() -> None:
    claims = {"iss": "demo-partner", "sub": "demo-partner", "aud": ENDPOINT, "exp": int(NOW) + 60, "jti": "x"}
    forged = jwt.encode(claims, None, algorithm="none")
    err = oauth_error(token_service(), token_request_form(forged))
    assert err.error == "invalid_client" and "签名" in err.description_zh


def test_assertion_signed_with_an_algorithm_other_than_the_registered_one_is_refused() -> None:
    # restricted-partner is registered ES256; HS256 keyed with its public JWK text is key confusion
    forged = jwt.encode({"iss": "restricted-partner", "sub": "restricted-partner", "aud": ENDPOINT,
                         "exp": int(NOW) + 60, "jti": "k"}, "public-key-text-used-as-an-hmac-secret-0123456789", algorithm="HS256")
    assert oauth_error(token_service(), token_request_form(forged)).error == "invalid_client"


def test_replayed_assertion_is_rejected_but_a_new_jti_is_accepted() -> None:
    service = token_service()
    form = token_request_form(assertion(jti="once"))
    service.issue(form, NOW)
    err = oauth_error(service, form, NOW + 1)
    assert err.error == "invalid_client" and "重放" in err.description_zh
    assert service.issue(token_request_form(assertion(jti="twice")), NOW + 1)["token_type"] == "Bearer"


def test_same_jti_from_two_partners_is_not_a_replay() -> None:
    service = token_service()
    service.issue(token_request_form(assertion("demo-partner", jti="shared")), NOW)
    assert service.issue(token_request_form(assertion("restricted-partner", jti="shared")), NOW)["access_token"]


def test_replay_cache_is_pruned_by_expiry() -> None:
    cache = ReplayCache(max_entries=10)
    assert cache.add("p", "a", 100.0, 0.0) and cache.add("p", "b", 200.0, 0.0)
    assert not cache.add("p", "a", 100.0, 50.0)
    cache.prune(150.0)
    assert len(cache) == 1
    assert cache.add("p", "a", 300.0, 150.0)  # its first use has expired, so it is forgotten


def test_full_replay_cache_fails_closed_instead_of_forgetting() -> None:
    cache = ReplayCache(max_entries=2)
    cache.add("p", "a", 100.0, 0.0)
    cache.add("p", "b", 100.0, 0.0)
    with pytest.raises(OAuthError) as info:
        cache.add("p", "c", 100.0, 1.0)
    assert info.value.error == "temporarily_unavailable" and info.value.headers["Retry-After"] == "99"  # oldest at 100
    assert not cache.add("p", "a", 100.0, 1.0)  # still remembered


@pytest.mark.parametrize("form_change, error", [
    ({"grant_type": None}, "invalid_request"),
    ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
    ({"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, "invalid_client"),
    ({"client_assertion": None}, "invalid_client"),
    ({"client_assertion": "not-a-jwt"}, "invalid_client"),
    ({"client_secret": "hunter2"}, "invalid_request"),
    ({"client_id": "restricted-partner"}, "invalid_client"),
    ({"scope": "licences:verify root"}, "invalid_scope"),
])
def test_malformed_token_request_gets_the_rfc6749_error(form_change: dict[str, str | None], error: str) -> None:
    form: dict[str, str] = token_request_form(assertion())
    for name, value in form_change.items():
        if value is None:
            form.pop(name)
        else:
            form[name] = value
    err = oauth_error(token_service(), form)
    assert err.error == error
    assert err.status == (401 if error == "invalid_client" else 400)
    assert err.body() == {"error": error, "error_description": err.description,
                          "error_description_zh": err.description_zh}


def test_restricted_partner_cannot_request_scopes_beyond_its_grant() -> None:
    err = oauth_error(token_service(), token_request_form(assertion("restricted-partner"), "licences:query"))
    assert err.error == "invalid_scope" and "licences:query" in (err.detail or "")


def test_demo_token_exchanges_in_process_with_the_test_keys() -> None:
    body = demo_token(REGISTRY_DIR, scope="items:read", token_endpoint=ENDPOINT, now=NOW)
    claims = jwt.decode(body["access_token"], gateway_key().public_key, algorithms=["ES256"],
                        audience=ACCESS_AUDIENCE, options={"verify_exp": False})
    assert claims["sub"] == "demo-partner" and claims["scope"] == "items:read"
