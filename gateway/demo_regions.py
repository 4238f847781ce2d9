"""Demo mode's simulated issuing regions, as ONE separate process on loopback (TEST keys only).

In demo mode the gateway plays the receiving side only. Everything the 45 issuing regions
would run lives here, driven by one :class:`~gateway.simulator.IssuerSimulator` on the demo
TEST framework (``var/demo``), so every gateway worker sees the same regions:

* ``/issuer/status/{region}``  signed status lists (gateway/issuer_server.py), with
  ``/issuer/control/{region}[/status]`` to inject faults or revoke a licence;
* ``/regions/r/{region}/...``  the regions' sharing services for the federated query
  (gateway/region_server.py), with ``/regions/_sim/faults/{region}``;
* ``/issue?region=&type=&state=``  a licence from a region's simulated issuer, ready to POST
  (what ``python -m gateway demo issue`` prints when a demo is running).

``serve --demo`` starts this process first and points the gateway's status fetcher and
upstream clients at it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import orjson
from aiohttp import web

from .bootstrap import load_static
from .config import Settings
from .devtrust import ensure_framework
from .issuer_server import IssuerServer
from .region_server import RegionSimulator
from .simulator import CASES, IssuerSimulator


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def build_app(settings: Settings) -> web.Application:
    regions, specs, catalogue = load_static(settings)
    _, material = ensure_framework(Path(settings.var_dir) / "demo", specs, regions, _now())
    sim = IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types})
    issuer = IssuerServer(sim, ttl=settings.status_refresh_seconds)
    region_sim = RegionSimulator(sim, {t.type_code: t for t in catalogue.types}, _now)

    async def issue(request: web.Request) -> web.Response:
        q = request.query
        try:
            issued = sim.issue(q.get("region", ""), q.get("type") or None, q.get("state", "valid"), _now())
        except ValueError as exc:
            return web.json_response({"error": str(exc), "cases": list(CASES)}, status=400)
        return web.Response(body=orjson.dumps(issued.body()), content_type="application/json")

    async def index(request: web.Request) -> web.Response:
        return web.json_response({"service": "demo issuing regions (TEST keys)", "regions": len(specs),
                                  "status": "/issuer/status/{region}", "query": "/regions/r/{region}",
                                  "issue": "/issue?region=330500&type=id_card&state=valid"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/issue", issue)
    app.add_subapp("/issuer", issuer.app())
    app.add_subapp("/regions", region_sim.make_app())
    return app


def urls(settings: Settings) -> tuple[str, str]:
    """(status URL template, upstream URL template) of the demo regions process."""
    base = f"http://127.0.0.1:{settings.demo_regions_port}"
    return f"{base}/issuer/status/{{region}}", f"{base}/regions/r/{{region}}"


def run(settings: Settings) -> None:
    """Process entry point (spawned by gateway/serve.py)."""
    from .logging_setup import configure_logging

    configure_logging(settings.log_level)   # a spawned process starts with Python's bare logging
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    web.run_app(build_app(settings), host="127.0.0.1", port=settings.demo_regions_port, print=None,
                access_log=None)
