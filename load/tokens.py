"""Bearer-token providers: where the ``Authorization: Bearer`` token comes from.

A provider is any zero-argument async callable returning the token (or ``None`` for no
header). The runner calls it once before the run and again (at most once a second) after a
401 answer, so a provider that fetches from ``POST /v1/oauth/token`` can refresh.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from load.errors import TOKEN_UNAVAILABLE, LoadRefused, TargetUnreachable

TokenProvider = Callable[[], Awaitable[str | None]]


def no_token() -> TokenProvider:
    async def provide() -> str | None:
        return None
    return provide


def static_token(token: str) -> TokenProvider:
    token = token.strip()
    if not token or any(c in token for c in "\r\n "):
        raise LoadRefused(TOKEN_UNAVAILABLE, "the token must be one non-empty line without spaces")

    async def provide() -> str | None:
        return token
    return provide


def file_token(path: str | Path) -> TokenProvider:
    """Reads the token from a file each time it is asked (so a rotated file is picked up)."""
    p = Path(path)

    async def provide() -> str | None:
        try:
            text = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LoadRefused(TOKEN_UNAVAILABLE, f"cannot read token file {p}: {exc.strerror}") from None
        if not text or any(c in text for c in "\r\n "):
            raise LoadRefused(TOKEN_UNAVAILABLE, f"token file {p} must hold one non-empty line without spaces")
        return text
    return provide


#: the TEST partner the load tool uses by default (certs/partners/load-partner.toml: high rate limit)
DEFAULT_CLIENT_ID = "load-partner"
DEFAULT_REGISTRY_DIR = Path(__file__).resolve().parent.parent / "certs" / "partners"
#: a token is renewed this long before it expires
REFRESH_MARGIN_S = 60.0


def oauth_token(target: str, *, client_id: str = DEFAULT_CLIENT_ID, registry_dir: str | Path = DEFAULT_REGISTRY_DIR,
                scope: str | None = None, refresh_margin_s: float = REFRESH_MARGIN_S,
                clock: Callable[[], float] = time.time, audience: str | None = None) -> TokenProvider:
    """OAuth client credentials against ``<target>/v1/oauth/token``: a ``private_key_jwt`` client
    assertion signed with the partner's TEST key (``<registry_dir>/<client_id>.test-private.pem``),
    exchanged for an access token. The token is cached and renewed ``refresh_margin_s`` before
    it expires (the runner asks again every few seconds and after a 401). ``audience`` (the
    assertion's ``aud``) defaults to the endpoint URL, which is what the gateway expects when it
    is reached under its configured address."""
    import aiohttp
    import orjson
    from cryptography.hazmat.primitives import serialization

    from gateway.auth.demo import make_client_assertion, partner_test_key_path, token_request_form
    from gateway.auth.partners import PartnerRegistryError, load_partners

    endpoint = target.rstrip("/") + "/v1/oauth/token"
    try:
        partner = load_partners(registry_dir)[client_id]
        key = serialization.load_pem_private_key(partner_test_key_path(registry_dir, client_id).read_bytes(), None)
    except (KeyError, OSError, ValueError, PartnerRegistryError) as exc:
        raise LoadRefused(TOKEN_UNAVAILABLE, f"no TEST key for partner {client_id!r} in {registry_dir}: "
                                             f"{type(exc).__name__}: {exc}") from None
    held: dict[str, float | str] = {}

    async def fetch() -> tuple[str, float]:
        now = clock()
        form = token_request_form(make_client_assertion(client_id, key, partner.alg, audience or endpoint, now), scope)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(endpoint, data=form, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    raw = await resp.read()
                    status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # the target is down, not the operator's request at fault: exit 4, not 2 -- in one line (it was
            # the repr of aiohttp's connection key and the nested OSError)
            raise TargetUnreachable(f"令牌端点无法连接 / token endpoint {endpoint} unreachable ({_why(exc)}); "
                                    "is the gateway running there?") from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise LoadRefused(TOKEN_UNAVAILABLE, f"token endpoint {endpoint} answered {status}: {raw[:300]!r}")
        return body["access_token"], now + float(body.get("expires_in", 300))

    async def provide() -> str | None:
        token, expires = held.get("token"), held.get("expires", 0.0)
        if not isinstance(token, str) or clock() >= float(expires) - refresh_margin_s:
            token, exp = await fetch()
            held["token"], held["expires"] = token, exp
        return token

    provide.invalidate = held.clear  # type: ignore[attr-defined]  # the runner calls it after a 401
    return provide


def _why(exc: BaseException) -> str:
    """Why a connection failed, in a few words: "Connection refused", "no answer within 10 s", ..."""
    import errno as errno_names
    import os

    if isinstance(exc, TimeoutError):   # asyncio's and aiohttp's timeouts alike
        return "no answer within 10 s"
    cause = getattr(exc, "os_error", None) or exc   # aiohttp.ClientConnectorError wraps the OSError
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno) if cause.errno in errno_names.errorcode else f"errno {cause.errno}"
    return type(exc).__name__


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
