"""Bearer access-token verification: runs on every ``/v1`` request, so it is lean.

Cost model (figures in gateway/auth/README.md, measured by ``python -m gateway.auth bench``):

* cache hit: a dict lookup by the exact token string + one expiry comparison;
* cache miss: split, one dict lookup of the *header segment* (the gateway signs with a fixed
  header per key, so the header is never parsed on the happy path), two base64url decodes,
  exactly one signature verification, one ``orjson.loads``, a few comparisons.

Anything else -- ``alg: none``, ``HS256``, a client assertion (``typ: JWT``), a token signed by
an unknown key -- has a header segment that is not in the table and is refused before any
cryptography runs.
"""

from __future__ import annotations

import binascii
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from gateway.errors import FORBIDDEN, UNAUTHENTICATED, RequestRejected

from .jose import PublicKey, SigningKey, VerifyFn, alg_for_key, b64url_decode, header_segment, make_verify_fn
from .partners import Partner, PartnerRegistry

#: ``aud`` of every access token the gateway issues
ACCESS_AUDIENCE = "elicence-gateway"
#: ``iss`` of every access token the gateway issues
ISSUER = "elicence-gateway"
REALM = "elicence-gateway"
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True, slots=True, eq=False)
class Principal:
    """The authenticated partner behind a request (``request["principal"]``)."""

    client_id: str
    scopes: frozenset[str]
    items: frozenset[str] | None  # None = every item
    regions: tuple[str, ...] | None  # None = every region
    partner: Partner
    expires_at: float
    jti: str

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_use_item(self, code: str) -> bool:
        return self.partner.may_use_item(code)

    def may_use_region(self, code: str) -> bool:
        return self.partner.may_use_region(code)

    def require_item(self, code: str) -> None:
        """Raise FORBIDDEN (403) unless this partner may use item ``code``."""
        if not self.may_use_item(code):
            raise RequestRejected(FORBIDDEN, f"partner {self.client_id} may not use item {code}")

    def require_region(self, code: str) -> None:
        """Raise FORBIDDEN (403) unless this partner may act for region ``code``."""
        if not self.may_use_region(code):
            raise RequestRejected(FORBIDDEN, f"partner {self.client_id} may not use region {code}")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    public_key: PublicKey

    @classmethod
    def of(cls, key: SigningKey) -> VerificationKey:
        return cls(key.kid, key.public_key)


def unauthenticated(description: str, *, with_error: bool = True) -> RequestRejected:
    """401 with RFC 6750 ``WWW-Authenticate``. ``description`` must be ASCII (it goes in a header)."""
    if with_error:
        challenge = f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'
    else:  # RFC 6750 3.1: no error code when the request carries no credentials at all
        challenge = f'Bearer realm="{REALM}"'
    return RequestRejected(UNAUTHENTICATED, description, headers={"WWW-Authenticate": challenge})


class TokenVerifier:
    def __init__(self, registry: PartnerRegistry, keys: Iterable[SigningKey | VerificationKey], *,
                 audience: str = ACCESS_AUDIENCE, issuer: str = ISSUER, cache_size: int = 10_000,
                 leeway_s: float = 0.0) -> None:
        self._registry = registry
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_s
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._by_header: dict[str, VerifyFn] = {}
        for key in keys:
            vk = VerificationKey.of(key) if isinstance(key, SigningKey) else key
            self._by_header[header_segment(alg_for_key(vk.public_key), vk.kid)] = make_verify_fn(vk.public_key)
        if not self._by_header:
            raise ValueError("TokenVerifier needs at least one key")

    @property
    def registry(self) -> PartnerRegistry:
        return self._registry

    def clear_cache(self) -> None:
        """Call after the partner registry or the key set changes."""
        self._cache.clear()

    def cache_len(self) -> int:
        return len(self._cache)

    def verify(self, authorization: str | None, now: float) -> Principal:
        """Verify an ``Authorization`` header value at wall-clock time ``now`` (epoch seconds)."""
        if not authorization:
            raise unauthenticated("missing bearer token", with_error=False)
        if authorization[:7].lower() != "bearer ":
            raise unauthenticated("authorization scheme must be Bearer")
        token = authorization[7:].strip(" ")
        cache = self._cache
        principal = cache.get(token)
        if principal is not None:
            if principal.expires_at > now - self._leeway:
                cache.move_to_end(token)
                return principal
            del cache[token]
            raise unauthenticated("token expired")
        principal = self._verify_token(token, now)
        if self._cache_size > 0:
            cache[token] = principal
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        return principal

    def _verify_token(self, token: str, now: float) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthenticated("token too long")
        signing_input, _, sig_b64 = token.rpartition(".")
        header_b64, _, payload_b64 = signing_input.partition(".")
        if not header_b64 or not payload_b64 or "." in payload_b64:
            raise unauthenticated("malformed token")
        verify_sig = self._by_header.get(header_b64)
        if verify_sig is None:
            raise unauthenticated(_explain_header(header_b64))
        try:
            sig = b64url_decode(sig_b64)
            payload = b64url_decode(payload_b64)
        except (ValueError, binascii.Error):
            raise unauthenticated("malformed token") from None
        if not verify_sig(sig, signing_input.encode("ascii")):
            raise unauthenticated("bad signature")
        try:
            claims = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise unauthenticated("malformed claims") from None
        if not isinstance(claims, dict):
            raise unauthenticated("malformed claims")
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise unauthenticated("exp missing")
        if exp <= now - self._leeway:
            raise unauthenticated("token expired")
        aud = claims.get("aud")
        if aud != self._audience and not (isinstance(aud, list) and self._audience in aud):
            raise unauthenticated("wrong audience")
        if claims.get("iss") != self._issuer:
            raise unauthenticated("wrong issuer")
        sub, scope, jti = claims.get("sub"), claims.get("scope"), claims.get("jti")
        if not isinstance(sub, str) or not isinstance(scope, str) or not isinstance(jti, str):
            raise unauthenticated("sub, scope and jti are required")
        partner = self._registry.get(sub)
        if partner is None:
            raise unauthenticated("unknown partner")
        # a scope withdrawn from the registry since the token was issued is no longer granted
        scopes = frozenset(scope.split()) & partner.scopes
        return Principal(client_id=sub, scopes=scopes, items=partner.items, regions=partner.regions,
                         partner=partner, expires_at=float(exp), jti=jti)


def _explain_header(header_b64: str) -> str:
    """Why an unrecognised header is refused (failure path only)."""
    try:
        header = orjson.loads(b64url_decode(header_b64))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return "malformed token header"
    alg = header.get("alg") if isinstance(header, dict) else None
    if not isinstance(alg, str) or alg.lower() == "none":
        return "unsigned token (alg none) refused"
    if alg.upper().startswith("HS"):
        return "symmetric algorithm refused"
    return "token not signed by a gateway key"
