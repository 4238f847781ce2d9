"""``python -m gateway demo token`` prints a bearer token the gateway accepts (TEST keys)."""

from __future__ import annotations

import base64

import orjson

from gateway.__main__ import main
from gateway.auth import TokenVerifier


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_demo_token_is_a_gateway_token_of_the_demo_partner(capsys, world):
    assert main(["demo", "token", "--scope", "items:read items:check"]) == 0
    token = capsys.readouterr().out.strip()
    claims = claims_of(token)
    assert claims["sub"] == "demo-partner" and claims["scope"] == "items:check items:read"
    principal = TokenVerifier(world.partners, [world.gateway_key]).verify(f"Bearer {token}", claims["iat"])
    assert principal.client_id == "demo-partner" and principal.scopes == {"items:read", "items:check"}


def test_demo_token_json_prints_the_whole_token_response(capsys):
    assert main(["demo", "token", "--json"]) == 0
    body = orjson.loads(capsys.readouterr().out)
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and "items:check" in body["scope"].split()


def test_demo_token_for_an_unregistered_partner_fails_cleanly(capsys):
    assert main(["demo", "token", "--client-id", "no-such-partner"]) == 2
    assert "no-such-partner" in capsys.readouterr().err


def test_demo_token_refuses_a_scope_the_partner_may_not_request(capsys):
    assert main(["demo", "token", "--scope", "admin"]) == 2
    assert capsys.readouterr().out == ""
