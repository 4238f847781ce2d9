"""TokenVerifier: hot-path bearer verification and its LRU cache."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.auth import PartnerRegistry, SigningKey, TokenVerifier, VerificationKey
from gateway.auth.jose import b64url_decode, b64url_encode
from gateway.errors import RequestRejected

from .test_auth_support import NOW, gateway_key, issue_token, registry


def rejection(verifier: TokenVerifier, header: str | None, now: float = NOW) -> str:
    with pytest.raises(RequestRejected) as info:
        verifier.verify(header, now)
    assert info.value.code == "UNAUTHENTICATED" and info.value.reason.status == 401
    return info.value.headers["WWW-Authenticate"]


def verifier(**kw: object) -> TokenVerifier:
    return TokenVerifier(registry(), [gateway_key()], **kw)  # type: ignore[arg-type]


def test_valid_token_yields_the_principal_with_partner_restrictions() -> None:
    p = verifier().verify("Bearer " + issue_token("restricted-partner"), NOW + 1)
    assert p.client_id == "restricted-partner" and p.scopes == frozenset({"licences:verify", "items:read"})
    assert p.may_use_item("KS-001") and not p.may_use_item("KS-003")
    assert p.may_use_region("330502") and not p.may_use_region("320100")
    assert p.expires_at == int(NOW) + 600


def test_scheme_is_case_insensitive() -> None:
    assert verifier().verify("bearer " + issue_token(), NOW).client_id == "demo-partner"


def test_verification_key_without_private_part_is_enough() -> None:
    v = TokenVerifier(registry(), [VerificationKey(gateway_key().kid, gateway_key().public_key)])
    assert v.verify("Bearer " + issue_token(), NOW).client_id == "demo-partner"


def test_second_verification_is_served_from_the_cache() -> None:
    v = verifier()
    header = "Bearer " + issue_token()
    first = v.verify(header, NOW)
    assert v.verify(header, NOW + 5) is first and v.cache_len() == 1


def test_cache_never_extends_a_token_lifetime() -> None:
    v = verifier()
    header = "Bearer " + issue_token()
    v.verify(header, NOW)
    assert "token expired" in rejection(v, header, NOW + 600)
    assert v.cache_len() == 0


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    v = verifier(cache_size=2)
    a, b, c = ("Bearer " + issue_token(scope=s) for s in ("items:read", "licences:verify", "items:check"))
    pa = v.verify(a, NOW)
    pb = v.verify(b, NOW)
    assert v.verify(a, NOW) is pa  # a is now most recent
    v.verify(c, NOW)  # evicts b
    assert v.cache_len() == 2
    assert v.verify(a, NOW) is pa
    assert v.verify(b, NOW) is not pb  # b was evicted and verified afresh
    assert v.cache_len() == 2


def test_scope_withdrawn_from_the_registry_is_not_granted_by_an_old_token() -> None:
    reg = registry()
    narrowed = PartnerRegistry({**reg, "demo-partner": replace(reg["demo-partner"], scopes=frozenset({"items:read"}))})
    p = TokenVerifier(narrowed, [gateway_key()]).verify("Bearer " + issue_token(), NOW)
    assert p.scopes == frozenset({"items:read"})


def test_token_of_a_partner_removed_from_the_registry_is_refused() -> None:
    reg = registry()
    without = PartnerRegistry({k: v for k, v in reg.items() if k != "demo-partner"})
    assert "unknown partner" in rejection(TokenVerifier(without, [gateway_key()]), "Bearer " + issue_token())


def test_tampered_payload_fails_the_signature() -> None:
    h, p, s = issue_token("restricted-partner").split(".")
    claims = b64url_decode(p).replace(b'"items:read licences:verify"', b'"admin items:read licences:verify"')
    assert "bad signature" in rejection(verifier(), f"Bearer {h}.{b64url_encode(claims)}.{s}")


def test_token_signed_by_a_rotated_out_key_is_refused() -> None:
    old = SigningKey.generate()
    token = old.sign({"iss": "elicence-gateway", "sub": "demo-partner", "aud": "elicence-gateway",
                      "scope": "items:read", "exp": NOW + 600, "jti": "j"})
    assert "not signed by a gateway key" in rejection(verifier(), "Bearer " + token)
    assert TokenVerifier(registry(), [gateway_key(), old]).verify("Bearer " + token, NOW).client_id == "demo-partner"


def test_wrong_issuer_is_refused() -> None:
    token = gateway_key().sign({"iss": "someone-else", "sub": "demo-partner", "aud": "elicence-gateway",
                                "scope": "items:read", "exp": NOW + 600, "jti": "j"})
    assert "wrong issuer" in rejection(verifier(), "Bearer " + token)


@pytest.mark.parametrize("attack, header", [
    ("empty_bearer", "Bearer "),
    ("two_segments", "Bearer abc.def"),
    ("four_segments", "Bearer a.b.c.d"),
    ("non_ascii_junk", "Bearer 令牌.令牌.令牌"),
    ("oversized_token", "Bearer " + "A" * 5000 + ".b.c"),
    ("digest_scheme", "Digest username=demo"),
])
def test_malformed_authorization_is_refused_not_crashed(attack: str, header: str) -> None:
    assert 'error="invalid_token"' in rejection(verifier(), header), attack


def test_missing_header_has_no_error_code_per_rfc6750() -> None:
    assert rejection(verifier(), None) == 'Bearer realm="elicence-gateway"'
    assert rejection(verifier(), "") == 'Bearer realm="elicence-gateway"'


def test_principal_require_helpers_raise_forbidden() -> None:
    p = verifier().verify("Bearer " + issue_token("restricted-partner"), NOW)
    p.require_item("KS-002")
    p.require_region("310117")
    with pytest.raises(RequestRejected) as info:
        p.require_region("330100")
    assert info.value.code == "FORBIDDEN" and info.value.reason.status == 403
