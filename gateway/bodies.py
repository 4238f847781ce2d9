"""Reading a request body within a deadline.

aiohttp's keep-alive timer closes a connection idle *between* requests; nothing bounds the read of
a body that was started and not finished. A client announcing ``Content-Length: 1000`` and sending
a few bytes held its connection (and a worker's file descriptor) for good. Every body read goes
through :func:`within_body_deadline`: when the whole body has already arrived (the common case, a
small body in the headers' segment) it costs one attribute read and no timer; otherwise the read must
end within ``body_read_timeout_seconds`` or the request is refused with 408 ``REQUEST_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

from aiohttp import web

from . import errors
from .errors import RequestRejected

T = TypeVar("T")

#: the deadline in seconds, set by the app factory from ``Settings.body_read_timeout_seconds``
BODY_READ_TIMEOUT = web.AppKey("body_read_timeout_seconds", float)
DEFAULT_BODY_READ_TIMEOUT_S = 10.0


async def within_body_deadline(request: web.Request, read: Callable[[], Awaitable[T]]) -> T:
    """``await read()`` (``request.read``, ``request.post`` ...), refused with 408 when the body has not
    all arrived within the deadline."""
    if request.content.is_eof():  # every byte is here: nothing to wait for
        return await read()
    seconds = request.config_dict.get(BODY_READ_TIMEOUT, DEFAULT_BODY_READ_TIMEOUT_S)
    try:
        async with asyncio.timeout(seconds):
            return await read()
    except TimeoutError:
        raise RequestRejected(errors.REQUEST_TIMEOUT, f"the request body did not arrive within {seconds:g} s") \
            from None
