"""Simulated issuing regions' e-licence sharing services, on loopback (TEST only).

One aiohttp app serves every region under ``/r/<region>/...`` in the region's flavour
(:mod:`gateway.upstream.config`): REST/JSON with an HMAC-SM3 or an SM2 request signature,
XML, or list-then-fetch. Requests must carry a valid signature made with the TEST
credentials of :mod:`gateway.upstream.signing`.

Licences come from the :class:`~gateway.simulator.IssuerSimulator` (same specs, same format
families, same TEST keys as the gateway's trust list) and are generated deterministically
per (region, holder code, licence type), under the one name the simulator gives that code
(:func:`gateway.simulator.synthetic_name`: the name a demo ``/issue`` licence prints, so a query
naming it finds the licence). A holder holds licences in the region covering the district in
their code (citizen ID digits 1-6, USCC characters 3-8) and in any region
:meth:`RegionSimulator.grant` adds. Status indices are taken from the upper half of the
region's status list, so they are "valid" unless someone revokes them.

Fault switches per region (:class:`Faults`, Python API or ``PUT /_sim/faults/<region>``):
latency, HTTP 500, 503 for the next N requests, malformed or oversized bodies, tampered
licences (bad signatures), another person's licences (wrong holder), every licence listed twice
(repeat), hanging (never answer until the server shuts down), and answering twice (the answer
written again on the same connection ``replay_ms`` later, as a replaying proxy would).

Run standalone next to a demo gateway (same TEST framework in ``var/demo``)::

    python -m gateway.region_server --port 8701
    GATEWAY_UPSTREAM_BASE_URL=http://127.0.0.1:8701/r/{region} python -m gateway serve --demo
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import dataclasses
import datetime as dt
import random
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Mapping
from xml.sax.saxutils import escape

import orjson
from aiohttp import web

from adapters import FAMILIES

from .crypto.sm2 import sm3
from .simulator import STANDING_REVOKED, IssuerSimulator, synthetic_name
from .specs import covers
from .upstream.clients import PATHS, TWO_STEP_FETCH
from .upstream.routing import home_district
from .upstream.config import HMAC_JSON, SM2_JSON, TWO_STEP, XML, region_flavour
from .upstream.signing import DEADLINE_HEADER, check_signature, app_secret_for_test_region, client_sm2_key_for_tests

#: status indices of served licences start here (the simulator's own counter starts at 1)
STATUS_INDEX_BASE = 32768
STATUS_INDEX_SPAN = STANDING_REVOKED.start - STATUS_INDEX_BASE  # stay below the standing revoked/suspended ranges
#: bytes of an "oversized" answer (above the gateway's default 2 MiB limit)
OVERSIZED_BYTES = 3 * 1024 * 1024
#: a hanging handler is released at shutdown or after this many seconds
MAX_HANG_S = 120.0


@dataclass(slots=True)
class Faults:
    latency_ms: int = 0
    fail: bool = False            # HTTP 500
    unavailable: int = 0          # the next N requests answer 503 (then normal again)
    malformed: bool = False       # truncated JSON / XML
    oversized: bool = False       # a body far above any sane limit
    tamper: bool = False          # licences altered after signing (bad signature)
    wrong_holder: bool = False    # licences of another person
    hang: bool = False            # never answer
    replay_ms: int = 0            # each query's answer sent again on the same connection N ms later
    repeat: bool = False          # every licence listed twice in the answer

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Faults":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown fault switch(es) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**raw)


@dataclass(slots=True)
class RegionStats:
    requests: int = 0
    last_deadline_ms: int | None = None
    bad_signatures: int = 0


class RegionSimulator:
    """The simulated sharing services of every region (one object, one aiohttp app)."""

    def __init__(self, simulator: IssuerSimulator, types_by_code: Mapping[str, Any],
                 clock: Callable[[], dt.datetime]) -> None:
        self.simulator = simulator
        self.types_by_code = types_by_code  # 21-char type code -> catalogue LicenceType
        self.clock = clock
        self.faults: dict[str, Faults] = {code: Faults() for code in simulator.specs}
        self.stats: dict[str, RegionStats] = {code: RegionStats() for code in simulator.specs}
        self.flavours = {code: region_flavour(code, spec.options) for code, spec in simulator.specs.items()}
        self._grants: set[tuple[str, str]] = set()
        #: load tests: every holder holds licences in every region
        self.everyone_everywhere = False
        self._cache: dict[tuple[str, str, str, str, bool], bytes] = {}
        self._ids: dict[str, tuple[str, bytes]] = {}  # two-step: id -> (region, licence)
        self._release = asyncio.Event()
        self._sm2_public = client_sm2_key_for_tests().public_key()

    # --- holdings ------------------------------------------------------------------------
    def grant(self, region: str, code: str) -> None:
        """``code``'s holder also holds licences in ``region``."""
        self._grants.add((region, code.upper()))

    def holds(self, region: str, code_type: str, code: str) -> bool:
        if self.everyone_everywhere:
            return True
        district = home_district(code_type, code)
        return (district is not None and covers(region, district)) or (region, code.upper()) in self._grants

    def set_faults(self, region: str, **switches: Any) -> None:
        self.faults[region] = Faults(**switches)

    def clear_faults(self) -> None:
        for code in self.faults:
            self.faults[code] = Faults()

    # --- licences ------------------------------------------------------------------------
    def _types_for(self, region: str, code_type: str, type_codes: list[str]) -> list[str]:
        issued = set(self.simulator.licence_types_of(region))
        keys = []
        for tc in type_codes:
            lt = self.types_by_code.get(tc)
            if lt is not None and lt.key in issued and code_type in lt.holder_code_types:
                keys.append(lt.key)
        return keys

    def licence(self, region: str, type_key: str, code_type: str, code: str, *, tamper: bool = False) -> bytes:
        """The licence of type ``type_key`` the region holds for ``code`` (deterministic)."""
        key = (region, type_key, code_type, code, tamper)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        seed = int.from_bytes(sm3("|".join(key[:4]).encode("utf-8"))[:8], "big")
        sim = copy.copy(self.simulator)  # shallow: own rng and counter, shared keys and specs
        sim.rng = random.Random(seed)
        sim.state = {region: dataclasses.replace(self.simulator.state[region],
                                                 next_index=STATUS_INDEX_BASE + seed % STATUS_INDEX_SPAN)}
        now = self.clock()
        lic = sim.canonical(region, type_key, now, holder=(synthetic_name(code), code, code_type))
        data = sim.encode(region, lic, now)
        if tamper:
            family = FAMILIES[self.simulator.specs[region].family]
            data = family.tamper(data) if hasattr(family, "tamper") else data[:-8] + bytes(b ^ 1 for b in data[-8:])
        if len(self._cache) > 20_000:
            self._cache.clear()
        self._cache[key] = data
        return data

    def answer(self, region: str, code_type: str, code: str, name: str | None, type_codes: list[str]) -> list[bytes]:
        found = self._found(region, code_type, code, name, type_codes)
        return found * 2 if self.faults[region].repeat else found

    def _found(self, region: str, code_type: str, code: str, name: str | None, type_codes: list[str]) -> list[bytes]:
        faults = self.faults[region]
        if faults.wrong_holder:  # someone else's licences, as a broken upstream might return
            rng = random.Random(sm3(f"other|{region}|{code}".encode("utf-8")))
            other_name, other_code = self.simulator.person(region, rng)
            return [self.licence(region, k, "111", other_code, tamper=faults.tamper)
                    for k in self._types_for(region, "111", type_codes)]
        if not self.holds(region, code_type, code) or (name and name != synthetic_name(code)):
            return []
        return [self.licence(region, k, code_type, code, tamper=faults.tamper)
                for k in self._types_for(region, code_type, type_codes)]

    # --- HTTP ----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        for flavour in (HMAC_JSON, SM2_JSON, XML, TWO_STEP):
            app.router.add_post("/r/{region}" + PATHS[flavour], self._handler(flavour))
        app.router.add_get("/r/{region}" + TWO_STEP_FETCH + "{id}", self._fetch_handler)
        app.router.add_put("/_sim/faults/{region}", self._faults_handler)
        app.router.add_get("/_sim/stats", self._stats_handler)

        async def release(_: web.Application) -> None:
            self._release.set()
        app.on_shutdown.append(release)
        return app

    async def _gate(self, request: web.Request, flavour: str | None) -> tuple[str, bytes, web.Response | None]:
        """Common path: region, flavour, signature, then the fault switches before any answer."""
        region = request.match_info["region"]
        if region not in self.faults or (flavour is not None and self.flavours[region] != flavour):
            return region, b"", web.Response(status=404, text="no such service")
        body = await request.read()
        stats, faults = self.stats[region], self.faults[region]
        stats.requests += 1
        deadline = request.headers.get(DEADLINE_HEADER, "")
        stats.last_deadline_ms = int(deadline) if deadline.isdigit() else None
        sig_ok = check_signature(request.headers, request.method, request.path, body,
                                 secret=app_secret_for_test_region(region), sm2_public=self._sm2_public)
        if not sig_ok:
            stats.bad_signatures += 1
            return region, body, web.Response(status=401, text="bad request signature")
        if faults.hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), MAX_HANG_S)
            return region, body, web.Response(status=503, text="shutting down")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.unavailable > 0:
            faults.unavailable -= 1
            return region, body, web.Response(status=503, text="service unavailable")
        if faults.fail:
            return region, body, web.Response(status=500, text="internal error")
        if faults.oversized:
            return region, body, web.Response(body=b'{"code":"0","pad":"' + b"x" * OVERSIZED_BYTES + b'"}',
                                              content_type="application/json")
        if faults.malformed:
            return region, body, web.Response(body=b'{"code":"0","data":{"licences":[{"encod',
                                              content_type="application/json")
        return region, body, None

    def _handler(self, flavour: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            region, body, early = await self._gate(request, flavour)
            if early is not None:
                return early
            response = answer(region, body)
            if self.faults[region].replay_ms and response.status == 200:
                _replay_later(request, response, self.faults[region].replay_ms / 1000)
            return response

        def answer(region: str, body: bytes) -> web.Response:
            try:
                if flavour == XML:
                    return self._xml(region, body)
                doc = orjson.loads(body)
                if flavour == HMAC_JSON:
                    h = doc["holder"]
                    found = self.answer(region, h["code_type"], h["code"], h.get("name"), doc["type_codes"])
                    return _json({"code": "0", "message": "ok", "data": {"licences": [
                        _entry(d) for d in found]}})
                if flavour == SM2_JSON:
                    found = self.answer(region, doc["czztdmlx"], doc["czztdm"], doc.get("czzt") or None, doc["zzlxdm"])
                    return _json({"status": 200, "result": {"total": len(found), "items": [
                        {"fileType": "licence", "fileData": base64.b64encode(d).decode("ascii")} for d in found]}})
                found = self.answer(region, doc["holderCodeType"], doc["holderCode"], None, doc["typeCodes"])
                ids = []
                for d in found:
                    ident = secrets.token_hex(12)
                    self._ids[ident] = (region, d)
                    ids.append(ident)
                if len(self._ids) > 50_000:
                    self._ids.clear()
                return _json({"code": 0, "ids": ids})
            except (KeyError, TypeError, ValueError, ET.ParseError):
                return web.Response(status=400, text="bad query")
        return handle

    def _xml(self, region: str, body: bytes) -> web.Response:
        root = ET.fromstring(body)
        holder = root.find("HolderCode")
        if holder is None:
            raise ValueError("no HolderCode")
        types = [t.text or "" for t in root.iter("TypeCode")]
        found = self.answer(region, holder.get("type", ""), holder.text or "", root.findtext("HolderName"), types)
        items = "".join(f'<Licence encoding="base64">{base64.b64encode(d).decode("ascii")}</Licence>' for d in found)
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><QueryResponse><ResultCode>0</ResultCode>'
               f"<ResultMsg>{escape('成功')}</ResultMsg><Licences>{items}</Licences></QueryResponse>")
        return web.Response(body=xml.encode("utf-8"), content_type="application/xml")

    async def _fetch_handler(self, request: web.Request) -> web.Response:
        region, _, early = await self._gate(request, TWO_STEP)
        if early is not None:
            return early
        entry = self._ids.pop(request.match_info["id"], None)
        if entry is None or entry[0] != region:
            return web.Response(status=404, text="no such licence")
        return web.Response(body=entry[1], content_type="application/octet-stream")

    async def _faults_handler(self, request: web.Request) -> web.Response:
        region = request.match_info["region"]
        if region not in self.faults:
            return web.Response(status=404, text="no such region")
        try:
            self.faults[region] = Faults.from_dict(orjson.loads(await request.read()))
        except (ValueError, TypeError) as exc:
            return web.Response(status=400, text=str(exc))
        return _json(dataclasses.asdict(self.faults[region]))

    async def _stats_handler(self, request: web.Request) -> web.Response:
        return _json({code: dataclasses.asdict(s) for code, s in self.stats.items() if s.requests})


def _replay_later(request: web.Request, response: web.Response, delay_s: float) -> None:
    """Write ``response`` a second time, raw, on the request's connection after ``delay_s``: the
    client receives an answer to no request of its own (a proxy replaying an answer, a region
    answering twice)."""
    transport = request.transport
    body = bytes(response.body)  # type: ignore[arg-type]
    raw = (f"HTTP/1.1 200 OK\r\nContent-Type: {response.content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
           .encode("ascii") + body)

    def write() -> None:
        if transport is not None and not transport.is_closing():
            transport.write(raw)
    asyncio.get_running_loop().call_later(delay_s, write)


def _entry(data: bytes) -> dict[str, str]:
    try:
        text = data.decode("utf-8")
        if text.isprintable():
            return {"encoding": "utf-8", "content": text}
    except UnicodeDecodeError:
        pass
    return {"encoding": "base64", "content": base64.b64encode(data).decode("ascii")}


def _json(doc: Any) -> web.Response:
    return web.Response(body=orjson.dumps(doc), content_type="application/json")


@contextlib.asynccontextmanager
async def serve(region_sim: RegionSimulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run the simulated regions; yields the URL template for ``upstream_base_url``."""
    region_sim._release = asyncio.Event()  # a previous run's shutdown released its hangs, not ours
    runner = web.AppRunner(region_sim.make_app(), shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    try:
        yield f"http://{host}:{bound}/r/{{region}}"
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - manual tool
    from pathlib import Path

    from .bootstrap import load_static
    from .config import load_settings
    from .devtrust import ensure_framework

    parser = argparse.ArgumentParser(description="Simulated regions' sharing services (TEST keys, loopback)")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--everyone-everywhere", action="store_true",
                        help="every holder holds licences in every region (load tests)")
    args = parser.parse_args(argv)
    settings = load_settings(demo=True)
    now = dt.datetime.now(dt.timezone.utc)
    regions, specs, catalogue = load_static(settings)
    _, material = ensure_framework(Path(settings.var_dir) / "demo", specs, regions, now)
    sim = IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types})
    region_sim = RegionSimulator(sim, {t.type_code: t for t in catalogue.types},
                                 lambda: dt.datetime.now(dt.timezone.utc))
    region_sim.everyone_everywhere = args.everyone_everywhere

    async def run() -> None:
        async with serve(region_sim, port=args.port) as template:
            print(f"simulated regions on {template}  (PUT /_sim/faults/<region> to inject faults)", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
