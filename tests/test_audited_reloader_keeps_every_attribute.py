"""The audit wiring's trust reloader keeps everything the trust feature gave the plain one.

``gateway.audit_wiring.audited_reloader`` replaced the trust reloader by an audited subclass made again
from a fixed list of constructor arguments: an attribute added to ``TrustReloader`` later was silently
dropped with the audit trail on (session 21's expiry warner was, until it was added to the list by hand).
It is now a copy of the reloader itself, of the audited class.
"""

from __future__ import annotations

from aiohttp import web

from gateway.app import LIVE, SERVICES, create_app
from gateway.audit_wiring import AUDIT, audited_reloader
from gateway.trust_routes import RELOADER, TrustReloader


def test_the_audited_reloader_keeps_every_attribute_of_the_one_it_replaces(world) -> None:
    app = create_app(world.services())
    audited = app[RELOADER]
    assert type(audited) is not TrustReloader and isinstance(audited, TrustReloader)   # the audited one
    assert audited.warner is not None and audited.live is app[LIVE]
    assert audited.source is app[SERVICES].trust_source

    # a reloader carrying an attribute the audit wiring does not know of keeps it, and every other one
    bare = web.Application()
    base = TrustReloader(app[SERVICES].trust_source, app[LIVE], app[SERVICES].clock)
    base.added_later = "kept"   # type: ignore[attr-defined]
    bare[RELOADER] = base
    audited_reloader(bare, app[AUDIT])
    replaced = bare[RELOADER]
    assert type(replaced).__qualname__ == type(audited).__qualname__ and replaced is not base
    assert vars(replaced) == vars(base)
    assert replaced.added_later == "kept"   # type: ignore[attr-defined]
