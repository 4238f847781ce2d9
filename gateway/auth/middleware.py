"""aiohttp integration: the ``/v1`` auth middleware, the token endpoint and the JWKS endpoint.

Mounting (in the app factory)::

    registry = load_partners("certs/partners")
    key = load_signing_key(path)                   # or SigningKey.generate()
    app = web.Application(middlewares=[problem_middleware,            # renders RequestRejected
                                       auth_middleware(TokenVerifier(registry, [key]), RateLimiter())])
    app[TOKEN_SERVICE] = TokenService(registry, key, token_endpoint=PUBLIC_URL + "/v1/oauth/token")
    app.router.add_post("/v1/oauth/token", token_handler)
    app.router.add_get("/v1/keys", jwks_handler)
    # at startup: assert not unprotected_routes(app)

With ``serve --workers N`` the limiter is :class:`gateway.auth.shared.SharedRateLimiter` and the
token service's replay cache :class:`gateway.auth.shared.SharedReplayCache`: one bucket and one
set of seen client assertions per partner for all the workers.

Handlers read the caller as ``request[AUTH_PRINCIPAL]`` (a ``web.RequestKey`` named
``"principal"``; aiohttp 3.14 warns on plain-string request keys, so ``request["principal"]``
is NOT used), a :class:`~gateway.auth.verifier.Principal`; it is set on every non-public
``/v1`` request.

The middleware raises :class:`gateway.errors.RequestRejected` with reason UNAUTHENTICATED (401),
FORBIDDEN (403) or RATE_LIMITED (429); the response headers it needs (``WWW-Authenticate``,
``Retry-After``) are on the exception's ``headers`` attribute for the problem+json renderer.
A ``/v1`` route that declares no scope and is not public is a programming error: it is
refused with :class:`gateway.errors.InfrastructureError` INTERNAL (500), never served.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import orjson
from aiohttp import web

from gateway.errors import FORBIDDEN, INTERNAL, RATE_LIMITED, InfrastructureError, RequestRejected
from gateway.bodies import within_body_deadline
from gateway.metrics import count_token

from .ratelimit import Limiter
from .scopes import PUBLIC_PATHS, PUBLIC_PREFIXES, ROUTE_SCOPES, declared_scope, is_api_path, is_public
from .tokens import INVALID_REQUEST, OAuthError, TokenService
from .verifier import REALM, Principal, TokenVerifier, unauthenticated

#: request key of the authenticated :class:`Principal`: ``request[AUTH_PRINCIPAL]``. A typed
#: ``web.RequestKey`` named "principal" (aiohttp >= 3.12 warns on every plain-string key).
AUTH_PRINCIPAL: Final = web.RequestKey("principal", Principal)
#: optional ``await hook(request, principal, scope)``, called before an authenticated partner is refused for a
#: scope its token lacks (the audit wiring records a refused federated query there); only on the refusal path
SCOPE_REFUSED: Final = web.AppKey("auth_scope_refused", Callable[..., Awaitable[None]])
#: app key of the :class:`TokenService` used by :func:`token_handler` and :func:`jwks_handler`
TOKEN_SERVICE: Final = web.AppKey("auth_token_service", TokenService)
#: optional app key: wall clock for the token endpoint (tests inject a fixed clock)
AUTH_CLOCK: Final = web.AppKey("auth_clock", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def auth_middleware(verifier: TokenVerifier, limiter: Limiter, *,
                    route_scopes: Mapping[tuple[str, str], str] = ROUTE_SCOPES,
                    public_paths: frozenset[str] = PUBLIC_PATHS,
                    public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES,
                    clock: Callable[[], float] = time.time,
                    monotonic: Callable[[], float] = time.monotonic) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Authenticate, rate-limit and authorise every non-public ``/v1`` request."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_api_path(request.path):
            return await handler(request)
        match_info = request.match_info
        resource = match_info.route.resource
        scope: str | None = None
        if resource is not None:  # a matched route (unmatched: 404/405 after authentication)
            canonical = resource.canonical
            if is_public(canonical, public_paths, public_prefixes):
                return await handler(request)
            scope = declared_scope(match_info.handler, request.method, canonical, route_scopes)
            if scope is None:
                raise InfrastructureError(INTERNAL, f"route {request.method} {canonical} declares no scope")

        headers = request.headers
        if len(headers.getall("Authorization", ())) > 1:
            raise unauthenticated("more than one Authorization header")
        principal = verifier.verify(headers.get("Authorization"), clock())

        decision = limiter.check(principal.client_id, principal.partner.rate_per_s, principal.partner.burst,
                                 monotonic())
        if not decision.allowed:
            raise RequestRejected(RATE_LIMITED, f"rate limit of partner {principal.client_id}",
                                  headers={"Retry-After": str(decision.retry_after_s)})
        if scope is not None and scope not in principal.scopes:
            refused = request.app.get(SCOPE_REFUSED)
            if refused is not None:   # e.g. a refused federated query is audited before the 403
                await refused(request, principal, scope)
            raise RequestRejected(FORBIDDEN, f"scope {scope} required", headers={
                "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'})
        request[AUTH_PRINCIPAL] = principal
        return await handler(request)

    return authenticate


def _oauth_error_response(exc: OAuthError, request: web.Request | None = None) -> web.Response:
    if request is not None:
        count_token(request, "refused", exc.error)
    return web.Response(body=orjson.dumps(exc.body()), status=exc.status,
                        content_type="application/json", headers={**_NO_STORE, **exc.headers})


async def token_handler(request: web.Request) -> web.Response:
    """``POST /v1/oauth/token`` (application/x-www-form-urlencoded), RFC 6749 §4.4 / §5."""
    service = request.app[TOKEN_SERVICE]
    clock = request.app.get(AUTH_CLOCK, time.time)
    if request.method != "POST" or request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error_response(OAuthError(
            INVALID_REQUEST, "Send the token request as POST application/x-www-form-urlencoded.", "请以 POST application/x-www-form-urlencoded 提交令牌请求。"), request)
    try:
        post = await within_body_deadline(request, request.post)
    except (ValueError, LookupError):  # bytes that are not UTF-8 (or the declared charset), an unknown charset
        return _oauth_error_response(OAuthError(
            INVALID_REQUEST, "The token request's form cannot be decoded in its charset (use UTF-8).", "令牌请求的表单无法按其字符集解码（请使用 UTF-8）。", "form body not decodable"), request)
    form: dict[str, str] = {}
    for name in post:
        values = post.getall(name)
        if len(values) > 1 or not isinstance(values[0], str):  # RFC 6749 §3.2: no repeats
            return _oauth_error_response(OAuthError(INVALID_REQUEST, f"Parameter {name} is repeated or malformed.", f"参数 {name} 重复或格式错误。"), request)
        form[name] = values[0]
    schemes = {v.split(maxsplit=1)[0].lower() for v in request.headers.getall("Authorization", ()) if v.strip()}
    if "client_assertion" in form and "basic" in schemes:
        # RFC 6749 §2.3 / §5.2: one client authentication method per request. Both at once, the
        # assertion was obeyed and HTTP Basic (maybe naming another partner) silently ignored.
        return _oauth_error_response(OAuthError(
            INVALID_REQUEST, "Use one client authentication method: drop HTTP Basic and send only the private_key_jwt client assertion.", "只能使用一种客户端认证方式：请去掉 HTTP Basic 认证，仅提交 private_key_jwt 客户端断言。",
            "HTTP Basic and a client assertion in one token request"), request)
    try:
        body = service.issue(form, clock())  # type: ignore[operator]
    except OAuthError as exc:
        return _oauth_error_response(exc, request)
    count_token(request, "issued")
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=_NO_STORE)


async def jwks_handler(request: web.Request) -> web.Response:
    """``GET /v1/keys``: the public JWKS partners can use to check gateway tokens."""
    key = request.app[TOKEN_SERVICE].signing_key
    return web.Response(body=orjson.dumps({"keys": [key.jwk()]}), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=300"})
