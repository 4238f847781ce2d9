"""Trust lifecycle at run time: reload without restart, status fetching, admin endpoints.

Registered through ``app.FEATURES`` (see :func:`setup`):

* ``GET  /v1/admin/trust`` (scope ``admin``) -- the trust list in force (version, expiry,
  signer, digest), the last reload and why a candidate was refused, and every entry dropped
  while building the snapshot (bad chain, duplicate key id ...) with its reason; what expires within
  ``trust_expiry_warn_days`` (``expiring``) and what already has (``expired_material``); as the
  view of the worker that answers (``pid``, ``worker_index``).
* ``POST /v1/admin/trust/reload`` (scope ``admin``) -- re-read the signed trust list now;
  409 ``TRUST_LIST_REFUSED`` when it is refused (the previous list stays in force).
* ``GET  /v1/admin/status`` (scope ``admin``) -- every region's status-list fetch state.

A cleanup context starts the file watcher (polls the trust list's mtime every
``trust_reload_seconds``), the expiry warner (:class:`ExpiryWarner`: a WARNING per expiring item when
the list is loaded or reloaded, and once a day after) and, when the status source is the HTTP fetcher, opens its shared
ClientSession and starts its schedule. Swaps are atomic (:class:`~gateway.edges.LiveTrust`):
a verification in flight keeps the snapshot it started with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import orjson
from aiohttp import web

from . import errors
from .app import FEATURES, LIVE, SERVICES
from .auth import ADMIN, requires_scope
from .edges import LiveTrust, TrustSource
from .errors import RequestRejected
from .serve import worker_identity
from .status_source import HttpStatusSource
from .trust import TrustListError, TrustSnapshot, material_expiry

log = logging.getLogger("gateway.trust")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    trigger: str  # "startup" | "file-change" | "admin"
    outcome: str  # "accepted" | "unchanged" | "refused"
    at: dt.datetime
    version: int | None  # the version in force after the attempt
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "outcome": self.outcome, "at": self.at.isoformat(),
                "version_in_force": self.version, "error": self.error}


#: how often the expiry warner repeats its lines for an unchanged trust list
WARN_EVERY = dt.timedelta(days=1)
#: at most this many expiring items get a line of their own each time; the rest one summary line
EXPIRY_LOG_ITEMS = 20


class ExpiryWarner:
    """A WARNING log line per piece of trust material expiring within ``warn_days``
    (:func:`~gateway.trust.material_expiry`): when a trust list comes into force (start-up, reload), and
    again once :data:`WARN_EVERY` has passed since the last lines -- never on a request. Structured fields
    (``expiry_kind``, ``expiry_region``, ``expiry_key_id``, ``expiry_subject``: an authority's or CA's
    name, ``not_after``, ``days_left``, ``warn_days``, ``trust_list_version``, ``trigger``); no personal data.
    With ``serve --workers N`` only the first worker (or a gateway in one process) warns: each worker holds
    the same list, and N copies of each line said nothing more."""

    def __init__(self, warn_days: int, clock: Callable[[], dt.datetime], enabled: bool = True) -> None:
        self.warn_days = warn_days
        self.clock = clock
        self.enabled = enabled and warn_days > 0
        self.last_at: dt.datetime | None = None
        self.last_trust: TrustSnapshot | None = None

    def check(self, trust: TrustSnapshot | None, trigger: str) -> int:
        """Log the expiring items of ``trust`` when it is new to the warner or a day has passed since the
        last lines (the first :data:`EXPIRY_LOG_ITEMS` soonest, then one line for the rest); the number of
        lines written."""
        if not self.enabled or trust is None:
            return 0
        now = self.clock()
        if trust is self.last_trust and self.last_at is not None and now - self.last_at < WARN_EVERY:
            return 0
        self.last_trust, self.last_at = trust, now
        report = material_expiry(trust, now, self.warn_days)
        for m in report.expiring[:EXPIRY_LOG_ITEMS]:
            what = "trust list" if m.kind == "trust_list" else f"region {m.region} {m.kind} certificate"
            log.warning("trust material expires in %d day(s): %s %s (key id %s) not after %s; renew it before then "
                        "(trust_expiry_warn_days = %d)", m.days_left, what, m.subject, m.key_id or "-",
                        m.not_after.isoformat(), self.warn_days,
                        extra={"expiry_kind": m.kind, "expiry_region": m.region, "expiry_key_id": m.key_id,
                               "expiry_subject": m.subject, "not_after": m.not_after.isoformat(),
                               "days_left": m.days_left, "warn_days": self.warn_days,
                               "trust_list_version": trust.version, "trigger": trigger})
        rest = report.expiring[EXPIRY_LOG_ITEMS:]
        if rest:   # a region's whole hierarchy expiring at once is a few hundred items: the first ones, then one line
            log.warning("trust material expiring: %d more item(s) within %d day(s), the last not after %s; every "
                        "item: GET /v1/admin/trust or python -m gateway trust check", len(rest), self.warn_days,
                        rest[-1].not_after.isoformat(),
                        extra={"expiry_more": len(rest), "warn_days": self.warn_days,
                               "trust_list_version": trust.version, "trigger": trigger})
        return min(len(report.expiring), EXPIRY_LOG_ITEMS + 1)

    async def daily(self, live: LiveTrust, interval: float = 3600.0) -> None:
        """Look every ``interval`` seconds whether a day has passed since the last lines."""
        while True:
            await asyncio.sleep(interval)
            self.check(live.current.trust, "daily")


class TrustReloader:
    """Serialised reloads of a trust source into a LiveTrust; keeps the last good snapshot."""

    def __init__(self, source: TrustSource, live: LiveTrust, clock: Callable[[], dt.datetime],
                 on_change: Callable[[Any], None] | None = None, warner: ExpiryWarner | None = None) -> None:
        self.source = source
        self.live = live
        self.clock = clock
        #: called with the new snapshot right after a swap (the status fetcher drops, at once, every held
        #: status list whose signer the new trust no longer accepts: a key revoked for compromise)
        self.on_change = on_change
        #: warns of the new list's expiring material right after a swap
        self.warner = warner
        self.last: ReloadOutcome | None = None
        self._lock = asyncio.Lock()
        self._seen: Any = None

    async def reload(self, trigger: str) -> ReloadOutcome:
        async with self._lock:
            before = self.live.current.trust
            fingerprint = getattr(self.source, "fingerprint", lambda: None)()
            try:
                snap = await self.source.load()
            except (TrustListError, OSError, ValueError) as exc:
                self.live.last_error = f"{trigger}: trust list refused: {exc}"
                log.error("trust list reload (%s) refused; keeping v%s: %s", trigger,
                          before.version if before else "none", exc)
                outcome = ReloadOutcome(trigger, "refused", self.clock(), before.version if before else None, str(exc))
            else:
                if snap is before:
                    outcome = ReloadOutcome(trigger, "unchanged", self.clock(), snap.version)
                else:
                    self.live.set_trust(snap)
                    self.live.last_error = None
                    if self.on_change is not None:
                        self.on_change(snap)
                    log.info("trust list v%d (%s) in force (%s; was v%s); %d entries dropped", snap.version,
                             snap.framework, trigger, before.version if before else "none", len(snap.dropped))
                    if self.warner is not None:
                        self.warner.check(snap, trigger)
                    outcome = ReloadOutcome(trigger, "accepted", self.clock(), snap.version)
            self._seen = fingerprint
            self.last = outcome
            return outcome

    async def watch(self, interval: float) -> None:
        """Poll the source's fingerprint (mtime, size); reload when it changes."""
        fingerprint = getattr(self.source, "fingerprint")
        if self._seen is None:
            self._seen = fingerprint()
        while True:
            await asyncio.sleep(interval)
            now_seen = fingerprint()
            if now_seen is not None and now_seen != self._seen:
                await self.reload("file-change")


RELOADER = web.AppKey("trust_reloader", TrustReloader)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _floor(source: Any) -> dict[str, Any] | None:
    floor = getattr(source, "floor", None)
    return None if floor is None else {"version": floor.version, "digest_sha256": floor.digest,
                                       "framework": floor.framework, "recorded_in": floor.recorded_in}


@requires_scope(ADMIN)
async def trust_info(request: web.Request) -> web.Response:
    services, live, reloader = request.app[SERVICES], request.app[LIVE], request.app[RELOADER]
    trust = live.current.trust
    now = services.clock()
    held = getattr(services.trust_source, "held", None)
    warn_days = services.settings.trust_expiry_warn_days
    expiry = None if trust is None else material_expiry(trust, now, warn_days)
    body: dict[str, Any] = {
        # each worker of serve --workers N holds its own view until its next poll: say whose this is
        **worker_identity(),
        "in_force": None if trust is None else {
            "framework": trust.framework, "version": trust.version, "issued_at": trust.issued_at.isoformat(),
            "expires_at": trust.expires_at.isoformat(), "expired": trust.expired(now),
            "regions": len(trust.regions), "issuers": len(trust.by_key_id),
            "digest_sha256": held.digest if held else None, "signed_by": held.key_id if held else None,
        },
        "source": str(getattr(services.trust_source, "path", type(services.trust_source).__name__)),
        # the highest version accepted before, as recorded on disk (a lower one is refused, restarts included)
        "rollback_floor": _floor(services.trust_source),
        "last_reload": reloader.last.as_dict() if reloader.last else None,
        "last_error": live.last_error,
        "dropped": [] if trust is None else [
            {"region": d.region, "subject": d.subject, "key_id": d.key_id, "reason": d.reason} for d in trust.dropped],
        # what stops being usable within trust_expiry_warn_days, soonest first; what already has is not
        # "expiring" but listed in expired_material (the list itself also as in_force.expired)
        "trust_expiry_warn_days": warn_days,
        "expiring": [] if expiry is None else [m.as_dict() for m in expiry.expiring],
        "expired_material": [] if expiry is None else [m.as_dict() for m in expiry.expired],
        "revoked_issuers": [] if trust is None else [
            {"region": e.region, "key_id": e.key_id, "serial": e.revocation.serial_hex,
             "revoked_at": e.revocation.revoked_at.isoformat(), "reason": e.revocation.reason}
            for e in trust.by_key_id.values() if e.revocation is not None],
        # every revoked serial: it applies to a listed issuer, an intermediate CA above one, or a certificate a
        # licence carries (x5c, an OFD signer certificate) alike
        "revoked_serials": [] if trust is None else [
            {"region": code, "serial": rev.serial_hex, "revoked_at": rev.revoked_at.isoformat(), "reason": rev.reason,
             "compromise": rev.compromise}
            for code, rt in sorted(trust.regions.items()) for rev in rt.revoked.values()],
    }
    return _json(body)


@requires_scope(ADMIN)
async def trust_reload(request: web.Request) -> web.Response:
    outcome = await request.app[RELOADER].reload("admin")
    if outcome.outcome == "refused":
        raise RequestRejected(errors.TRUST_LIST_REFUSED, f"{outcome.error} (v{outcome.version} stays in force)")
    return _json(outcome.as_dict())


@requires_scope(ADMIN)
async def status_info(request: web.Request) -> web.Response:
    services, live = request.app[SERVICES], request.app[LIVE]
    now = services.clock()
    describe = getattr(services.status_source, "describe", None)
    out = {}
    for code in services.regions:
        rs = live.current.status.get(code)
        out[code] = {
            "age_seconds": None if rs is None else round(rs.age(now).total_seconds(), 3),
            "fresh": False if rs is None else rs.fresh(now),
            "max_age_seconds": int(services.settings.status_max_age(code).total_seconds()),
            "fetch": describe(code) if describe else None,
        }
    return _json({"regions": out})


async def lifecycle_ctx(app: web.Application) -> AsyncIterator[None]:
    services, live, reloader = app[SERVICES], app[LIVE], app[RELOADER]
    held = getattr(services.trust_source, "held", None)
    if live.current.trust is not None or held is not None or live.last_error:
        reloader.last = ReloadOutcome("startup", "refused" if live.current.trust is None else "accepted",
                                      services.clock(), live.current.trust.version if live.current.trust else None,
                                      live.last_error)
    tasks: list[asyncio.Task[None]] = []
    interval = services.settings.trust_reload_seconds
    if hasattr(services.trust_source, "fingerprint") and interval > 0:
        tasks.append(asyncio.create_task(reloader.watch(interval), name="trust-watch"))
    warner = reloader.warner
    if warner is not None and warner.enabled:
        warner.check(live.current.trust, "startup")   # the list trust_ctx loaded before this context
        tasks.append(asyncio.create_task(warner.daily(live), name="trust-expiry-warn"))
    source = services.status_source
    if isinstance(source, HttpStatusSource):
        await source.start(lambda: live.current.trust, live.set_status)
    yield
    for t in tasks:
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
    if isinstance(source, HttpStatusSource):
        await source.close()


def setup(app: web.Application) -> None:
    services = app[SERVICES]
    source = services.status_source
    warner = ExpiryWarner(services.settings.trust_expiry_warn_days, services.clock,
                          enabled=worker_identity()["worker_index"] in (None, 0))
    app[RELOADER] = TrustReloader(services.trust_source, app[LIVE], services.clock,
                                  source.trust_changed if isinstance(source, HttpStatusSource) else None, warner)
    app.cleanup_ctx.append(lifecycle_ctx)
    app.router.add_get("/v1/admin/trust", trust_info)
    app.router.add_post("/v1/admin/trust/reload", trust_reload)
    app.router.add_get("/v1/admin/status", status_info)


if setup not in FEATURES:
    FEATURES.append(setup)
