"""The issuer simulator's status-list server (loopback HTTP, TEST keys only).

``GET /status/{region}`` serves the region's current status list from the
:class:`~gateway.simulator.IssuerSimulator` as a signed ``statuslist+jwt`` (see
:mod:`gateway.status_source`), signed with the region's current TEST issuer key, with a
strong ``ETag`` and ``Cache-Control: max-age=<ttl>``; ``If-None-Match`` answers 304. A token
is re-signed when the region's list changes (a revocation) or when half its ``ttl`` has
passed, so a client holding it never sees it expire. A changed list is signed with an ``iat``
(whole seconds) later than the list before it, even when both fall in one second: a gateway
refuses a list with other statuses but the same ``iat`` as the one it holds (the order of the two
cannot be told).

``POST /control/{region}/status`` with ``{"index": n, "status": "revoked"|"suspended"|"valid"}``
(loopback only) changes a licence's status in the simulator, for demos.

Fault switches, per region, for tests and demos (:meth:`IssuerServer.set_fault`, or
``POST /control/{region}`` with ``{"fault": "...", "delay": s}`` from loopback):

* ``ok`` -- normal service
* ``slow`` -- answer after ``delay`` seconds
* ``fail`` -- HTTP 500
* ``hang`` -- never answer (until the client gives up)
* ``bad-signature`` -- the right list with a corrupted signature
* ``rollback`` -- the first list this server ever signed for the region (an old, validly
  signed list: replaying it would un-revoke licences)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from .simulator import STATUS_LIST_SIZE
from .status import STATUS_NAMES
from .status_source import encode_status_list_jwt
from .trustlist import b64u, b64u_decode

log = logging.getLogger("gateway.issuer_server")
FAULTS = ("ok", "slow", "fail", "hang", "bad-signature", "rollback")


@dataclass(frozen=True, slots=True)
class Fault:
    mode: str = "ok"
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class _Signed:
    list_version: int
    sub: str
    iat: dt.datetime
    token: bytes
    etag: str


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class IssuerServer:
    def __init__(self, simulator: Any, *, clock: Callable[[], dt.datetime] = _utcnow, ttl: int = 300,
                 validity: dt.timedelta = dt.timedelta(hours=24)) -> None:
        self.simulator = simulator
        self.clock = clock
        self.ttl = ttl
        self.validity = validity
        self.faults: dict[str, Fault] = {}
        self.requests: dict[str, int] = {}
        self.not_modified: dict[str, int] = {}
        self._signed: dict[str, _Signed] = {}
        self._first: dict[str, _Signed] = {}
        self._runner: web.AppRunner | None = None
        self._hung: set[asyncio.Future[None]] = set()
        self.base_url: str | None = None

    def regions(self) -> list[str]:
        return sorted(self.simulator.specs)

    def set_fault(self, region: str, mode: str, delay: float = 0.0) -> None:
        if mode not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        if region not in self.simulator.specs:
            raise ValueError(f"unknown region {region!r}")
        self.faults[region] = Fault(mode, delay)

    # --- signing ------------------------------------------------------------------------
    def signed(self, region: str, sub: str) -> _Signed:
        now = self.clock()
        version = self.simulator.state[region].list_version
        cur = self._signed.get(region)
        if cur is None or cur.list_version != version or cur.sub != sub or \
                (now - cur.iat).total_seconds() >= self.ttl / 2:
            iat = now if cur is None else max(now, cur.iat)   # never earlier than the list before
            if cur is not None and cur.list_version != version:
                # other statuses get a later iat (whole seconds on the wire) than the list before them: a
                # gateway cannot order two lists signed in one second, and refuses the second (rollback)
                iat = max(iat, cur.iat.replace(microsecond=0) + dt.timedelta(seconds=1))
            token = encode_status_list_jwt(self.simulator.status_list(region), self.simulator.signing_key(region),
                                           sub=sub, iat=iat, exp=iat + self.validity, ttl=self.ttl)
            etag = '"' + hashlib.sha256(token).hexdigest()[:32] + '"'
            cur = _Signed(version, sub, iat, token, etag)
            self._signed[region] = cur
            self._first.setdefault(region, cur)
        return cur

    # --- HTTP ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/status/{region}", self.handle_status)
        app.router.add_post("/control/{region}", self.handle_control)
        app.router.add_post("/control/{region}/status", self.handle_set_status)
        return app

    async def handle_status(self, request: web.Request) -> web.StreamResponse:
        region = request.match_info["region"]
        if region not in self.simulator.specs:
            raise web.HTTPNotFound(text=f"no status list for {region}")
        self.requests[region] = self.requests.get(region, 0) + 1
        fault = self.faults.get(region, Fault())
        if fault.mode == "hang":
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hung.add(fut)
            try:
                await fut
            finally:
                self._hung.discard(fut)
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
        if fault.mode == "fail":
            return web.Response(status=500, text="simulated issuer failure")
        sub = f"{request.scheme}://{request.host}{request.path}"
        signed = self.signed(region, sub)
        token, etag = signed.token, signed.etag
        if fault.mode == "bad-signature":
            h, p, s = token.split(b".")
            sig = bytearray(b64u_decode(s.decode()))
            sig[len(sig) // 2] ^= 0x01
            token = h + b"." + p + b"." + b64u(bytes(sig)).encode()
            etag = '"bad-' + etag.strip('"') + '"'
        elif fault.mode == "rollback":
            first = self._first[region]
            token, etag = first.token, first.etag
        headers = {"ETag": etag, "Cache-Control": f"max-age={self.ttl}"}
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            self.not_modified[region] = self.not_modified.get(region, 0) + 1
            return web.Response(status=304, headers=headers)
        return web.Response(body=token, content_type="application/statuslist+jwt", headers=headers)

    async def handle_control(self, request: web.Request) -> web.Response:
        if request.remote not in ("127.0.0.1", "::1"):
            raise web.HTTPForbidden(text="loopback only")
        body = await request.json()
        try:
            self.set_fault(request.match_info["region"], str(body.get("fault", "ok")), float(body.get("delay", 0)))
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response({"region": request.match_info["region"], "fault": body.get("fault", "ok")})

    async def handle_set_status(self, request: web.Request) -> web.Response:
        if request.remote not in ("127.0.0.1", "::1"):
            raise web.HTTPForbidden(text="loopback only")
        region = request.match_info["region"]
        body = await request.json()
        index, status = body.get("index"), body.get("status")
        values = {name: value for value, name in STATUS_NAMES.items()}
        if region not in self.simulator.specs or not isinstance(index, int) or not 0 <= index < STATUS_LIST_SIZE \
                or status not in values:
            raise web.HTTPBadRequest(text="need a known region, 'index' in the list and 'status' valid|revoked|suspended")
        self.simulator.set_status(region, index, values[status])
        return web.json_response({"region": region, "index": index, "status": status,
                                  "list_version": self.simulator.state[region].list_version})

    # --- in-process server on loopback --------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.base_url = f"http://{host}:{self._runner.addresses[0][1]}"
        log.info("issuer simulator status lists on %s/status/{region} (TEST keys)", self.base_url)
        return self.base_url

    async def stop(self) -> None:
        for fut in list(self._hung):
            if not fut.done():
                fut.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
