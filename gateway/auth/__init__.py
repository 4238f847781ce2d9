"""Partner authentication and authorisation for the ``/v1`` API.

* :func:`load_partners` -- the partner registry (``certs/partners/*.toml``)
* :class:`TokenService` -- OAuth 2.0 client credentials with private_key_jwt (RFC 7523)
* :class:`TokenVerifier` -- bearer verification on every request -> :class:`Principal`
* :func:`requires_scope` / :data:`ROUTE_SCOPES` -- what each /v1 route needs
* :class:`RateLimiter` -- per-partner token bucket
* ``gateway.auth.shared`` -- the same limits shared by the workers of ``serve --workers N``
  (shared-memory buckets, SQLite replay cache); imported by ``gateway.serve`` only
* :func:`auth_middleware`, :func:`token_handler`, :func:`jwks_handler`, :data:`AUTH_PRINCIPAL`
"""

from .demo import demo_token, make_client_assertion, token_request_form
from .jose import EDDSA, ES256, SigningKey, load_signing_key
from .middleware import AUTH_CLOCK, AUTH_PRINCIPAL, TOKEN_SERVICE, auth_middleware, jwks_handler, token_handler
from .partners import Partner, PartnerRegistry, PartnerRegistryError, load_partners
from .ratelimit import BucketState, Decision, Limiter, RateLimiter, take
from .scopes import (ADMIN, ALL_SCOPES, ITEMS_CHECK, ITEMS_READ, LICENCES_QUERY, LICENCES_VERIFY, PUBLIC_PATHS,
                     ROUTE_SCOPES, requires_scope, unprotected_routes)
from .tokens import DEFAULT_TOKEN_ENDPOINT, OAuthError, ReplayCache, TokenService
from .verifier import ACCESS_AUDIENCE, Principal, TokenVerifier, VerificationKey

__all__ = [
    "ACCESS_AUDIENCE", "ADMIN", "ALL_SCOPES", "AUTH_CLOCK", "AUTH_PRINCIPAL", "BucketState", "DEFAULT_TOKEN_ENDPOINT",
    "Decision", "EDDSA", "ES256", "ITEMS_CHECK", "ITEMS_READ", "LICENCES_QUERY", "LICENCES_VERIFY", "Limiter",
    "OAuthError",
    "PUBLIC_PATHS", "Partner", "PartnerRegistry", "PartnerRegistryError", "Principal", "ROUTE_SCOPES", "RateLimiter",
    "ReplayCache", "SigningKey", "TOKEN_SERVICE", "TokenService", "TokenVerifier", "VerificationKey",
    "auth_middleware", "demo_token", "jwks_handler", "load_partners", "load_signing_key", "make_client_assertion",
    "requires_scope", "take", "token_handler", "token_request_form", "unprotected_routes",
]
