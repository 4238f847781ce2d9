"""Bearer-token providers: where the ``Authorization: Bearer`` token comes from.

A provider is any zero-argument async callable returning the token (or ``None`` for no
header). The runner calls it once before the run and again (at most once a second) after a
401 answer, so a provider that fetches from ``POST /v1/oauth/token`` can refresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from load.errors import TOKEN_UNAVAILABLE, LoadRefused

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


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
