"""Scopes, the ``/v1`` public allow-list and how a route declares the scope it needs.

A ``/v1`` route declares its scope either with the :func:`requires_scope` decorator on the
handler or with an entry in a ``route_scopes`` table keyed by ``(METHOD, canonical path)``
(:data:`ROUTE_SCOPES` is the default, empty table). A ``/v1`` route that does neither and is
not in :data:`PUBLIC_PATHS` is refused by the middleware (fail closed), and
:func:`unprotected_routes` lists such routes so the app factory can refuse to start.

Scopes are flat: ``admin`` does not imply the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from aiohttp import web

LICENCES_VERIFY: Final = "licences:verify"
LICENCES_QUERY: Final = "licences:query"
ITEMS_READ: Final = "items:read"
ITEMS_CHECK: Final = "items:check"
ADMIN: Final = "admin"
ALL_SCOPES: Final = frozenset({LICENCES_VERIFY, LICENCES_QUERY, ITEMS_READ, ITEMS_CHECK, ADMIN})

API_PREFIX: Final = "/v1"
#: canonical paths under /v1 reachable without a token (exact match) ...
PUBLIC_PATHS: Final = frozenset({"/v1/oauth/token", "/v1/keys", "/v1/openapi.json", "/v1/docs", "/v1/docs/"})
#: ... and the one public subtree (static documentation assets)
PUBLIC_PREFIXES: Final = ("/v1/docs/",)

#: (METHOD, canonical path) -> scope, for routes whose handler cannot carry the decorator
ROUTE_SCOPES: dict[tuple[str, str], str] = {}

SCOPE_ATTR: Final = "__required_scope__"

H = TypeVar("H", bound=Callable[..., Any])


def requires_scope(scope: str) -> Callable[[H], H]:
    """Mark a handler as needing ``scope``; unknown scopes fail at import time."""
    if scope not in ALL_SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {sorted(ALL_SCOPES)}")

    def mark(handler: H) -> H:
        setattr(handler, SCOPE_ATTR, scope)
        return handler
    return mark


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def is_public(canonical: str, public_paths: frozenset[str] = PUBLIC_PATHS,
              public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES) -> bool:
    return canonical in public_paths or canonical.startswith(public_prefixes)


def declared_scope(handler: Any, method: str, canonical: str,
                   route_scopes: Mapping[tuple[str, str], str] = ROUTE_SCOPES) -> str | None:
    """The scope a route declares (decorator first, then the table), or ``None``."""
    scope = getattr(handler, SCOPE_ATTR, None)
    if scope is None:
        scope = route_scopes.get((method, canonical))
        if scope is None and method == "HEAD":  # HEAD mirrors GET
            scope = route_scopes.get(("GET", canonical))
    return scope


def unprotected_routes(app: web.Application,
                       route_scopes: Mapping[tuple[str, str], str] = ROUTE_SCOPES,
                       public_paths: frozenset[str] = PUBLIC_PATHS) -> list[tuple[str, str]]:
    """``(method, canonical)`` of every /v1 route that is neither public nor scoped."""
    missing = []
    for route in app.router.routes():
        resource = route.resource
        canonical = resource.canonical if resource is not None else ""
        if not is_api_path(canonical) or is_public(canonical, public_paths):
            continue
        if declared_scope(route.handler, route.method, canonical, route_scopes) is None:
            missing.append((route.method, canonical))
    return missing
