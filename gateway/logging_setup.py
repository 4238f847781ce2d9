"""Structured JSON application logs with the request id, and never a holder code or name.

:func:`configure_logging` (called by ``python -m gateway serve``) installs one handler on the
root logger that writes one JSON object per line::

    {"time": "...Z", "level": "ERROR", "logger": "gateway", "message": "...", "request_id": "...",
     "exception": "..."}

Personal data is kept out by :class:`PersonalDataFilter`, which rewrites every record before any
handler formats it (message, arguments and exception text are rendered, then redacted):

* every valid citizen ID number (GB 11643, check digit verified) standing alone is masked
  (``3305**********123X``, :func:`gateway.identifiers.mask_holder_code`);
* personal values are replaced by ``[redacted]``: the holder names and codes of the licences
  verified recently in this process (registered by the audit wiring with :func:`note_personal`,
  the last ``RECENT_MAX``; so also lines of background tasks), and the applicant / holder
  ``name`` and ``code`` fields of the JSON body of the request being served. The body is
  looked at only when a line is logged, so the hot path pays one dict update per licence.

The current request travels in a context variable set by :func:`request_context_middleware`
(the first middleware), so log lines written anywhere while serving it carry its id.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from .identifiers import ID_NUMBER_IN_TEXT, citizen_id_valid, mask_holder_code

#: the request being served (None outside a request)
CURRENT_REQUEST: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar("gateway_request", default=None)
REDACTED = "[redacted]"
#: JSON body fields whose string values are personal (applicant, query holder, names)
_PERSONAL_KEYS = frozenset({"name", "code", "holder_name", "holder_code", "applicant_name", "applicant_code"})
_MAX_BODY_SCAN = 64 * 1024
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# --- request context ---------------------------------------------------------------------
def request_id_of(request: web.Request | None) -> str | None:
    if request is None:
        return None
    from .app import REQUEST_ID  # late: app imports this module's users

    return request.get(REQUEST_ID)


@web.middleware
async def request_context_middleware(request: web.Request,
                                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    token = CURRENT_REQUEST.set(request)
    try:
        return await handler(request)
    finally:
        CURRENT_REQUEST.reset(token)


#: personal values seen recently in this process (bounded): a line logged by a background task
#: (the audit writer, a status refresh) has no request, yet must not name a recent holder either
_RECENT: OrderedDict[str, None] = OrderedDict()
RECENT_MAX = 4096


def note_personal(*values: str | None) -> None:
    """Register personal values (holder names, codes) seen while serving; they are redacted from
    every log line of this request, and from any line while they are among the recent ones."""
    for v in values:
        if v and len(v) >= 2:
            _RECENT[v] = None
            _RECENT.move_to_end(v)
    while len(_RECENT) > RECENT_MAX:
        _RECENT.popitem(last=False)


def _strings_under_personal_keys(doc: Any, out: list[str], depth: int = 0) -> None:
    if depth > 6:
        return
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, str) and k in _PERSONAL_KEYS:
                out.append(v)
            elif isinstance(v, dict | list):
                _strings_under_personal_keys(v, out, depth + 1)
    elif isinstance(doc, list):
        for v in doc[:200]:
            _strings_under_personal_keys(v, out, depth + 1)


def personal_values(request: web.Request | None) -> list[str]:
    """Personal strings of ``request``: registered ones and those of its (already read) body."""
    values = list(_RECENT)  # a C-level copy: safe while the event loop adds values
    if request is None:
        return sorted(set(values), key=len, reverse=True)
    body = getattr(request, "_read_bytes", None)  # the body aiohttp cached when a handler read it
    if body and len(body) <= _MAX_BODY_SCAN:
        try:
            _strings_under_personal_keys(orjson.loads(body), values)
        except orjson.JSONDecodeError:
            pass
    # longest first, so a name is not half-replaced by a shorter value inside it
    return sorted({v.strip() for v in values if v and len(v.strip()) >= 2}, key=len, reverse=True)


def redact(text: str, personal: Iterable[str] = ()) -> str:
    """``text`` with the given personal values removed and every valid citizen ID masked."""
    for value in personal:
        if value in text:
            text = text.replace(value, REDACTED)
        upper = value.upper()
        if upper != value and upper in text:
            text = text.replace(upper, REDACTED)
    return ID_NUMBER_IN_TEXT.sub(lambda m: mask_holder_code(m.group(0)) if citizen_id_valid(m.group(0).upper())
                          else m.group(0), text)


# --- logging -----------------------------------------------------------------------------
class PersonalDataFilter(logging.Filter):
    """Render each record's message (and exception) and redact personal data from it.

    Attached to the handler, so records of every logger pass through it; it never drops a
    record, it rewrites it (``msg`` becomes the redacted text, ``args`` empty).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request = CURRENT_REQUEST.get()
        personal = personal_values(request)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message, personal)
        record.args = None
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = redact(text, personal)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, personal)
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_of(request)
        for key, value in list(vars(record).items()):
            if key not in _STD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value, personal))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and key not in doc and isinstance(value, str | int | float | bool | type(None)):
                doc[key] = value
        if record.exc_text:
            doc["exception"] = record.exc_text
        elif record.exc_info:  # a record that did not pass the filter (e.g. logged before set-up)
            doc["exception"] = redact("".join(traceback.format_exception(*record.exc_info)))
        return orjson.dumps(doc, default=str).decode("utf-8")


def json_handler(stream: Any = None, level: int | str = logging.NOTSET) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(level)
    handler.addFilter(PersonalDataFilter())
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: int | str = "INFO", stream: Any = None) -> logging.Handler:
    """Replace the root logger's handlers by one JSON handler with the personal-data filter."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = json_handler(stream)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler


__all__ = ["CURRENT_REQUEST", "JsonFormatter", "PersonalDataFilter", "REDACTED", "configure_logging", "json_handler",
           "note_personal", "personal_values", "redact", "request_context_middleware"]
