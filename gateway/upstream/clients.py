"""Upstream clients, one per sharing-service flavour, behind the :class:`RegionClient` Protocol.

A client turns a :class:`HolderQuery` into the raw licences the region returns (each in the
region's own format: the gateway decodes and verifies them through the same core as a
presented licence). It does no retrying, timing or counting: :mod:`gateway.upstream.pool`
wraps every call with the deadline, retries, the circuit breaker and the concurrency limit.

Failures are :class:`~gateway.upstream.retry.UpstreamFailure`; ``safe=True`` only when the
request cannot have been processed (connection refused, 503).

The four flavours' paths and payloads are MODELLED on GB/T 36906 sharing services (the
regions' real interface documents are not available); :mod:`gateway.region_server` serves
the same shapes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import escape, quoteattr

import aiohttp
import orjson
from yarl import URL

from .config import HMAC_JSON, SM2_JSON, TWO_STEP, XML, UpstreamConfig
from .retry import UpstreamFailure
from .signing import DEADLINE_HEADER

#: most licences one region may return for one query
MAX_LICENCES_PER_ANSWER = 50
#: the modelled paths of each flavour
PATHS = {
    HMAC_JSON: "/share/v1/licences/query",
    SM2_JSON: "/gateway/api/dzzz/query",
    XML: "/ws/LicenceShare/query",
    TWO_STEP: "/open/v2/licences/list",
}
TWO_STEP_FETCH = "/open/v2/licences/"


@dataclass(frozen=True, slots=True)
class HolderQuery:
    """What is asked of a region. Lives for one request only (never cached)."""

    code_type: str
    code: str
    name: str | None
    type_codes: tuple[str, ...]


class RegionClient(Protocol):
    config: UpstreamConfig

    async def query(self, session: aiohttp.ClientSession, q: HolderQuery, budget_ms: int,
                    max_bytes: int) -> list[bytes]:
        """The raw licences the region holds for ``q`` (empty: not found)."""
        ...


class ByteBudget:
    """Bytes one answer may still bring, shared by every request of that answer: the two-step
    flavour's list and its licence fetches together stay within ``max_bytes`` like one body of
    the other flavours (each fetch had its own ``max_bytes``: 50 licences held 50 times the limit)."""

    __slots__ = ("limit", "left")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise UpstreamFailure(f"response exceeds the {self.limit}-byte limit")


async def _read_limited(resp: aiohttp.ClientResponse, max_bytes: int, budget: ByteBudget | None = None) -> bytes:
    budget = budget if budget is not None else ByteBudget(max_bytes)
    length = resp.content_length
    if length is not None and length > min(max_bytes, budget.left):
        raise UpstreamFailure(f"response of {length} bytes exceeds the {max_bytes}-byte limit" if length > max_bytes
                              else f"response of {length} bytes takes the answer past its {budget.limit}-byte limit")
    chunks = []
    async for chunk in resp.content.iter_chunked(65536):
        budget.take(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


async def send(session: aiohttp.ClientSession, cfg: UpstreamConfig, method: str, path: str, body: bytes,
               content_type: str, budget_ms: int, max_bytes: int, budget: ByteBudget | None = None) -> bytes:
    """One signed request; returns the body of a 200 answer or raises UpstreamFailure. ``budget``:
    the bytes left to the whole answer when it takes several requests."""
    url = URL(cfg.base_url + path)
    headers = cfg.credentials.sign(method, url.path, str(int(time.time())), secrets.token_hex(12), body)
    headers[DEADLINE_HEADER] = str(max(0, budget_ms))
    if body:
        headers["Content-Type"] = content_type
    try:
        async with session.request(method, url, data=body or None, headers=headers,
                                   allow_redirects=False) as resp:
            if resp.status == 503:
                raise UpstreamFailure("region answered 503 (not processed)", safe=True)
            if resp.status != 200:
                raise UpstreamFailure(f"region answered HTTP {resp.status}")
            return await _read_limited(resp, max_bytes, budget)
    except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
        raise UpstreamFailure(f"cannot connect: {exc.os_error or exc}", safe=True) from None
    except aiohttp.ClientPayloadError:
        raise UpstreamFailure("truncated or malformed body") from None
    except aiohttp.ClientError as exc:
        # the class only: aiohttp's text quotes the region's bytes (a bad status line, a header, the
        # headers of a half-sent answer), which reach the partner's answer as the region's detail
        raise UpstreamFailure(f"no readable HTTP answer ({type(exc).__name__})") from None


_PLAIN_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,12}")


def _quoted(code: Any) -> str:
    """A region's error code as the caller may see it: a short plain code only. The region's text goes
    into the partner's answer, where anything else could carry personal data past the item's
    disclosure rules (a region echoing "持证主体 <full ID number> 不存在") or a megabyte of filler."""
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if isinstance(code, str) and _PLAIN_CODE.fullmatch(code):
        return repr(code)
    return "(not shown: not a short plain code)"


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamFailure("malformed JSON answer") from None


def _item(encoding: Any, content: Any) -> bytes:
    if not isinstance(content, str):
        raise UpstreamFailure("licence content is not a string")
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise UpstreamFailure("licence content is not valid base64") from None
    if encoding == "utf-8":
        return content.encode("utf-8")
    raise UpstreamFailure(f"unknown licence encoding {_quoted(encoding)}")


def _bounded(items: list[bytes]) -> list[bytes]:
    if len(items) > MAX_LICENCES_PER_ANSWER:
        raise UpstreamFailure(f"region returned {len(items)} licences (limit {MAX_LICENCES_PER_ANSWER})")
    return items


class HmacJsonClient:
    """(a) REST/JSON, HMAC-SM3 request signature, ``{"code": "0", "data": {"licences": [...]}}``."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config

    async def query(self, session: aiohttp.ClientSession, q: HolderQuery, budget_ms: int,
                    max_bytes: int) -> list[bytes]:
        body = orjson.dumps({"holder": {"code_type": q.code_type, "code": q.code, "name": q.name},
                             "type_codes": list(q.type_codes)})
        doc = _json(await send(session, self.config, "POST", PATHS[HMAC_JSON], body, "application/json",
                               budget_ms, max_bytes))
        if not isinstance(doc, dict) or doc.get("code") != "0":
            raise UpstreamFailure(f"region error code {_quoted(doc.get('code')) if isinstance(doc, dict) else '?'}")
        data = doc.get("data")
        entries = data.get("licences") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise UpstreamFailure("answer has no data.licences list")
        return _bounded([_item(e.get("encoding"), e.get("content")) if isinstance(e, dict) else _item(None, None)
                         for e in entries])


class Sm2JsonClient:
    """(b) REST/JSON with pinyin field names, SM2 request signature, base64 files."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config

    async def query(self, session: aiohttp.ClientSession, q: HolderQuery, budget_ms: int,
                    max_bytes: int) -> list[bytes]:
        body = orjson.dumps({"czztdm": q.code, "czztdmlx": q.code_type, "czzt": q.name or "",
                             "zzlxdm": list(q.type_codes)})
        doc = _json(await send(session, self.config, "POST", PATHS[SM2_JSON], body, "application/json",
                               budget_ms, max_bytes))
        if not isinstance(doc, dict) or doc.get("status") != 200 or not isinstance(doc.get("result"), dict):
            raise UpstreamFailure("answer is not {status: 200, result: {...}}")
        items = doc["result"].get("items")
        if not isinstance(items, list):
            raise UpstreamFailure("answer has no result.items list")
        return _bounded([_item("base64", e.get("fileData")) if isinstance(e, dict) else _item(None, None)
                         for e in items])


class XmlClient:
    """(c) XML request and answer (HMAC-SM3 signature); DTDs and entities are refused."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config

    async def query(self, session: aiohttp.ClientSession, q: HolderQuery, budget_ms: int,
                    max_bytes: int) -> list[bytes]:
        types = "".join(f"<TypeCode>{escape(t)}</TypeCode>" for t in q.type_codes)
        name = f"<HolderName>{escape(q.name)}</HolderName>" if q.name else ""
        body = (f'<?xml version="1.0" encoding="UTF-8"?><QueryRequest><HolderCode type={quoteattr(q.code_type)}>'
                f"{escape(q.code)}</HolderCode>{name}<TypeCodes>{types}</TypeCodes></QueryRequest>").encode("utf-8")
        raw = await send(session, self.config, "POST", PATHS[XML], body, "application/xml", budget_ms, max_bytes)
        return _bounded(parse_xml_answer(raw))


def parse_xml_answer(raw: bytes) -> list[bytes]:
    if b"\x00" in raw:   # UTF-16 / UTF-32 (which expat reads) would hide a DTD from the byte search below
        raise UpstreamFailure("XML answer not in an ASCII-compatible encoding such as UTF-8 (or holding a NUL byte)")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise UpstreamFailure("XML answer with a DTD or entity declaration refused")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        raise UpstreamFailure("malformed XML answer") from None
    except (LookupError, ValueError):   # an encoding expat cannot read ("TF-8", "rot13", "UTF-32")
        raise UpstreamFailure("XML answer in an encoding that cannot be read") from None
    if root.tag != "QueryResponse" or root.findtext("ResultCode") != "0":
        raise UpstreamFailure(f"region result code {_quoted(root.findtext('ResultCode'))}")
    container = root.find("Licences")
    if container is None:
        raise UpstreamFailure("answer has no <Licences>")
    return [_item(el.get("encoding"), el.text or "") for el in container.findall("Licence")]


class TwoStepClient:
    """(d) list the licence ids, then fetch each licence (raw bytes) concurrently."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config

    async def query(self, session: aiohttp.ClientSession, q: HolderQuery, budget_ms: int,
                    max_bytes: int) -> list[bytes]:
        body = orjson.dumps({"holderCode": q.code, "holderCodeType": q.code_type, "typeCodes": list(q.type_codes)})
        budget = ByteBudget(max_bytes)  # the list and every licence fetched after it, together
        doc = _json(await send(session, self.config, "POST", PATHS[TWO_STEP], body, "application/json",
                               budget_ms, max_bytes, budget))
        ids = doc.get("ids") if isinstance(doc, dict) and doc.get("code") == 0 else None
        if not isinstance(ids, list) or not all(isinstance(i, str) and i.isalnum() and len(i) <= 64 for i in ids):
            raise UpstreamFailure("answer is not {code: 0, ids: [alphanumeric ids]}")
        if len(ids) > MAX_LICENCES_PER_ANSWER:
            raise UpstreamFailure(f"region listed {len(ids)} licences (limit {MAX_LICENCES_PER_ANSWER})")
        try:  # a failed fetch cancels its siblings
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(send(session, self.config, "GET", TWO_STEP_FETCH + i, b"", "", budget_ms,
                                             max_bytes, budget)) for i in ids]
        except BaseExceptionGroup as group:
            first = group.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return [t.result() for t in tasks]


CLIENTS: dict[str, type] = {HMAC_JSON: HmacJsonClient, SM2_JSON: Sm2JsonClient, XML: XmlClient,
                            TWO_STEP: TwoStepClient}


def make_client(config: UpstreamConfig) -> RegionClient:
    return CLIENTS[config.flavour](config)
