"""The aiohttp application: app factory, typed app state, cleanup contexts, thin handlers.

Handlers parse the request, call the pure core with the current snapshots and an explicit
``now``, and render. Every error is a :mod:`gateway.errors` exception rendered as RFC 9457
``application/problem+json`` by :func:`problem_middleware`; nothing a client sends can
crash a worker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web

from . import errors
from .auth import (AUTH_CLOCK, AUTH_PRINCIPAL, LICENCES_VERIFY, TOKEN_SERVICE, PartnerRegistry, RateLimiter, TokenService,
                   TokenVerifier, auth_middleware, requires_scope, token_handler,
                   unprotected_routes)
from .auth.jose import SigningKey as GatewaySigningKey
from .config import Settings
from .core import VerificationResult, Verifier
from .edges import LiveTrust, StatusSource, TrustSource
from .latency import LATENCY, TIMED_ROUTES, LatencyRecorder
from .metrics import METRICS
from .result_cache import ResultCache
from .watchdog import watchdog_ctx
from .errors import GatewayError, InfrastructureError, RequestRejected
from .bodies import BODY_READ_TIMEOUT, within_body_deadline
from .json_strict import names_a_member_twice
from .simulator import IssuerSimulator
from .specs import RegionInfo, RegionSpec

log = logging.getLogger("gateway")


@dataclass(slots=True)
class Services:
    """Everything the app needs, built once (bootstrap) or by a test with fakes."""

    settings: Settings
    regions: dict[str, RegionInfo]
    specs: dict[str, RegionSpec]
    verifier: Verifier
    trust_source: TrustSource
    status_source: StatusSource
    simulator: IssuerSimulator | None = None
    catalogue: Any = None
    partners: PartnerRegistry | None = None
    gateway_key: GatewaySigningKey | None = None
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    status_refresh_seconds: float = 5.0
    #: ``serve --workers N`` (gateway/auth/shared.py): the partner rate limiter and the client-assertion
    #: replay cache all the workers share; None (one worker, tests): this process's own
    rate_limiter: Any = None
    replay_cache: Any = None


SERVICES = web.AppKey("services", Services)
LIVE = web.AppKey("live", LiveTrust)
#: per-worker verification result cache (None when verify_cache_entries = 0)
RESULT_CACHE = web.AppKey("result_cache", ResultCache | None)
REQUEST_ID = web.RequestKey("request_id", str)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def _answer_json(data: Any) -> web.Response:
    """A verify answer: :func:`render_result`'s licences (dataclasses) and answer times (datetimes) are
    written by orjson, a UTC time with ``Z`` (``OPT_UTC_Z``)."""
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_UTC_Z), content_type="application/json")


def problem(reason: errors.Reason, detail: str | None, status: int | None = None, *, request_id: str = "",
            headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> web.Response:
    body = {
        "type": f"urn:elicence-gateway:problem:{reason.code.lower()}",
        "title": reason.message,
        "title_zh": reason.message_zh,
        "status": status or reason.status,
        "code": reason.code,
        "detail": detail or reason.message,
        "request_id": request_id,
    }
    if extra:
        body.update(extra)
    return web.Response(body=orjson.dumps(body), status=status or reason.status,
                        content_type="application/problem+json", headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    request_id = request.headers.get("X-Request-Id", "")[:64] or os.urandom(16).hex()  # uuid4().hex at 1/5 the cost
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    counts = request.app.get(METRICS)   # None unless metrics_port is set (gateway/metrics.py)
    try:
        response = await _answer(request, handler, request_id)
    except web.HTTPException as exc:   # a redirect or an aiohttp answer raised by a handler (the console's)
        if counts is not None:
            counts.answer(_resource(request), exc.status, time.perf_counter() - started)
        raise
    elapsed = time.perf_counter() - started
    resource = _resource(request)
    if counts is not None:   # plain counts only; handed to prometheus_client once a second, off the request
        counts.answer(resource, response.status, elapsed)
    route = TIMED_ROUTES.get(resource.canonical) if resource is not None else None
    if route is not None:
        recorder = request.app.get(LATENCY)
        if recorder is not None:
            recorder.answer(route, elapsed)
    return response


def _resource(request: web.Request) -> Any:
    """The request's route resource (its template is ``.canonical``), None for a path no route serves."""
    route = request.match_info.route
    return route.resource if route is not None else None


async def _answer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                  request_id: str) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RequestRejected as exc:
        return problem(exc.reason, exc.detail, request_id=request_id, headers=exc.headers,
                       extra={"detail_zh": exc.detail_zh} if exc.detail_zh else None)
    except GatewayError as exc:
        return problem(exc.reason, exc.detail, request_id=request_id)
    except web.HTTPRequestEntityTooLarge:
        return problem(errors.BODY_TOO_LARGE, f"limit {request.app[SERVICES].settings.max_body_bytes} bytes",
                       request_id=request_id)
    except web.HTTPNotFound:
        return problem(errors.NOT_FOUND, request.path, request_id=request_id)
    except web.HTTPMethodNotAllowed:
        return problem(errors.METHOD_NOT_ALLOWED, request.method, request_id=request_id)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except ConnectionError:  # the client went away mid-request: nobody to answer, nothing went wrong here
        log.info("client closed the connection before its request was complete", extra={"request_id": request_id})
        # an answer, not the exception: aiohttp logs any exception from a handler as an ERROR with its
        # traceback (one per aborted upload); writing this to the closed transport is dropped quietly
        return problem(errors.BAD_REQUEST, "the connection closed before the request was complete",
                       request_id=request_id)
    except Exception:  # never crash a worker: log and answer 500
        log.exception("unhandled error", extra={"request_id": request_id})
        return problem(errors.INTERNAL, None, request_id=request_id)
    response.headers["X-Request-Id"] = request_id
    return response


# --- request parsing ------------------------------------------------------------------
async def read_json(request: web.Request) -> Any:
    ctype = request.content_type
    if ctype not in ("application/json", "application/problem+json") and not ctype.endswith("+json"):
        raise RequestRejected(errors.UNSUPPORTED_MEDIA_TYPE, f"got {ctype or 'no content type'}")
    charset = request.charset   # the parameter's value, unquoted; None when absent
    if charset and charset.lower() not in ("utf-8", "utf8"):
        # the body is read as UTF-8 whatever was declared: a GBK body would be answered as other text than sent
        raise RequestRejected(errors.UNSUPPORTED_MEDIA_TYPE, f"charset {charset!r}: JSON is UTF-8 (RFC 8259 §8.1); "
                                                             "send charset=utf-8 or no charset")
    body = await within_body_deadline(request, request.read)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestRejected(errors.BAD_REQUEST, f"body is not JSON: {exc}") from None
    # the receipt covers the body's digest: a member named twice would let another reader of the same
    # bytes take another licence or applicant than the one answered (orjson keeps the last value)
    if names_a_member_twice(body, doc):
        raise RequestRejected(errors.BAD_REQUEST, "a JSON object in the body names the same member twice")
    return doc


class UndecodableLicence(RequestRejected):
    """A well-formed entry whose ``licence`` is not the base64 its ``encoding`` says: the licence cannot
    be parsed (``MALFORMED``, verdict ``invalid``), as the README's table says, not the request."""


def undecodable_answer(detail: str | None) -> dict[str, Any]:
    """The answer document of a licence that could not be decoded (a verify-batch entry, a single verify)."""
    return {"verdict": "invalid", "reasons": [errors.MALFORMED.as_dict(detail)], "checks": {},
            "region": None, "format": None, "licence": None}


def decode_presented(item: Any, settings: Settings, where: str = "") -> bytes:
    """``{"licence": str, "encoding": "utf-8"|"base64"}`` -> bytes (RequestRejected if ill-formed,
    :class:`UndecodableLicence` if the licence is not valid base64)."""
    if not isinstance(item, dict):
        raise RequestRejected(errors.BAD_REQUEST, f"{where}expected an object with 'licence' and 'encoding'")
    lic = item.get("licence")
    enc = item.get("encoding", "utf-8")
    if not isinstance(lic, str):
        raise RequestRejected(errors.BAD_REQUEST, f"{where}'licence' must be a string")
    if enc == "utf-8":
        return lic.encode("utf-8")
    if enc == "base64":
        try:
            return base64.b64decode(lic, validate=True)
        except (binascii.Error, ValueError):
            raise UndecodableLicence(errors.BAD_REQUEST, f"{where}'licence' is not valid base64") from None
    raise RequestRejected(errors.BAD_REQUEST, f"{where}'encoding' must be 'utf-8' or 'base64'")


# --- rendering -------------------------------------------------------------------------
def render_result(result: VerificationResult) -> dict[str, Any]:
    """A verification result as its answer document, for :func:`_answer_json` only: the licence stays
    a :class:`~gateway.model.Licence` and ``verified_at`` a datetime, which orjson writes in C as
    ``Licence.to_dict()`` and ``isoformat()`` with ``Z`` for UTC would (the same JSON; about half the
    rendering's cost, which a verify-batch answer pays once per entry). The checks mapping is the
    result's own (a cached result's, shared by its hits): it is only read."""
    checks = result.checks
    return {
        "verdict": result.verdict.value,
        "reasons": [r.as_reason_dict() for r in result.reasons] if result.reasons else [],
        "checks": checks if type(checks) is dict else dict(checks),
        "region": {"code": result.region.code, "name": result.region.name} if result.region else None,
        "format": result.format,
        "licence": result.licence,
        "verified_at": result.verified_at,
        "signer": {"key_id": result.signer_key_id} if result.signer_key_id else None,
        "signing_time": result.signing_time.isoformat() if result.signing_time else None,
        "status_age_seconds": int(result.status_age.total_seconds()) if result.status_age is not None else None,
        "notes": [n.as_dict() for n in result.notes] if result.notes else [],
    }


def verify_now(app: web.Application, data: bytes) -> VerificationResult:
    services, live = app[SERVICES], app[LIVE]
    current = live.current
    now = services.clock()
    if current.trust is None:
        raise InfrastructureError(errors.TRUST_UNAVAILABLE, live.last_error or "trust material not loaded yet")
    cache = app[RESULT_CACHE]
    if cache is None:
        result = services.verifier.verify(data, current.trust, current.status, now)
    else:
        key = cache.key(data)
        result = cache.get(key, current.trust, current.status, now)
        if result is None:
            result = services.verifier.verify(data, current.trust, current.status, now)
            cache.put(key, current.trust, current.status, now, result)
    counts = app.get(METRICS)
    if counts is not None:   # every licence judged, whatever the route (gateway/metrics.py)
        counts.verdict(result)
    return result


async def _require_regions(request: web.Request, results: Any) -> None:
    """403 FORBIDDEN unless the partner may act for the issuing region of every licence whose
    region is known (``regions`` in its registry file), as the item check does: a partner
    restricted to 湖州 and 上海 must not read a 苏州 licence through the verify routes. Raised
    before anything is answered, so no licence data of a forbidden region leaves; the refusal names
    the region, so it is recorded first (503 AUDIT_UNAVAILABLE if it cannot be)."""
    principal = request.get(AUTH_PRINCIPAL)
    if principal is None:  # not a partner's request (the console's staff have their own routes)
        return
    for result in results:
        if result is not None and result.region is not None and not principal.may_use_region(result.region.code):
            await audit_wiring.audit_region_refusal(request, "verify", result.region.code, result.licence)
            principal.require_region(result.region.code)


# --- handlers ----------------------------------------------------------------------------
@requires_scope(LICENCES_VERIFY)
async def verify_handler(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    try:
        data = decode_presented(body, services.settings)
    except UndecodableLicence as exc:  # MALFORMED, as a verify-batch entry, an item check and the console answer it
        answer = undecodable_answer(exc.detail)
        answer["receipt"] = await audit_wiring.audit_verifications(request, [None])
        return _answer_json(answer)
    result = verify_now(request.app, data)
    await _require_regions(request, (result,))
    answer = render_result(result)
    # the audit record is committed before the answer (AUDIT_UNAVAILABLE -> 503); signed receipt
    answer["receipt"] = await audit_wiring.audit_verifications(request, [result])
    return _answer_json(answer)


@requires_scope(LICENCES_VERIFY)
async def verify_batch_handler(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    items = body.get("licences") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise RequestRejected(errors.BAD_REQUEST, "'licences' must be a non-empty list")
    if len(items) > services.settings.max_batch:
        raise RequestRejected(errors.BATCH_TOO_LARGE, f"{len(items)} > max_batch {services.settings.max_batch}")
    results = []
    verified: list[VerificationResult | None] = []
    for i, item in enumerate(items):
        try:
            data = decode_presented(item, services.settings, f"licences[{i}]: ")
        except RequestRejected as exc:  # one bad entry does not spoil the others
            results.append(undecodable_answer(exc.detail))
            verified.append(None)
            continue
        result = verify_now(request.app, data)
        verified.append(result)
        results.append(render_result(result))
    await _require_regions(request, verified)
    # one audit record per entry, committed before the answer; one signed receipt for the answer,
    # listing every entry's verdict and reasons
    receipt = await audit_wiring.audit_verifications(request, verified)
    return _answer_json({"results": results, "receipt": receipt})


@requires_scope(LICENCES_VERIFY)
async def regions_handler(request: web.Request) -> web.Response:
    services, live = request.app[SERVICES], request.app[LIVE]
    current = live.current
    now = services.clock()
    describe_status = getattr(services.status_source, "describe", None)
    out = []
    for code, info in services.regions.items():
        spec = services.specs[code]
        rt = current.trust.regions.get(code) if current.trust else None
        rs = current.status.get(code)
        trust_state = "absent" if rt is None else rt.state_at(now)
        fetch = describe_status(code) if describe_status else None
        out.append({
            "code": code, "name": info.name, "province": info.province, "group": info.group,
            "g60": bool(info.g60), "format": spec.family, "formats": [spec.family], "algorithms": list(spec.algorithms),
            "interface_status": spec.interface_status,
            "trust": {
                "state": trust_state,
                "trust_list_version": current.trust.version if current.trust else None,
                "anchors": len(rt.anchors) if rt else 0,
                "issuers": len(rt.issuers) if rt else 0,
            },
            "status_list": {
                "state": status_state(services, code, rs, now),
                "age_seconds": None if rs is None else int(rs.age(now).total_seconds()),
                "fresh": False if rs is None else rs.fresh(now),
                "max_age_seconds": int((rs.max_age if rs else services.settings.status_max_age(code))
                                       .total_seconds()),
                "version": None if rs is None else rs.version,
                "last_fetch_error": fetch.get("last_error") if fetch else None,
                "fetched_at": fetch.get("fetched_at") if fetch else None,
            },
        })
    return _json({"regions": out, "count": len(out)})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services, live = request.app[SERVICES], request.app[LIVE]
    current = live.current
    now = services.clock()
    problems = []
    if current.trust is None:
        problems.append("trust material not loaded" + (f": {live.last_error}" if live.last_error else ""))
    elif current.trust.expired(now):
        problems.append(f"trust list v{current.trust.version} expired {current.trust.expires_at.isoformat()}")
    elif not any(region_verifiable(services, current, code, now) for code in current.trust.regions):
        problems.append("no region is verifiable (a valid, unrevoked issuer and a fresh status list)")
    if problems:
        return _json({"status": "not-ready", "problems": problems, "last_error": live.last_error}, status=503)
    return _json({"status": "ready", "trust_list_version": current.trust.version, "last_error": live.last_error})


def status_state(services: Services, code: str, rs: Any, now: dt.datetime) -> str:
    """exempt | absent | fresh | stale (stale and absent answer indeterminate)."""
    if code in services.settings.status_exempt_regions:
        return "exempt"
    if rs is None:
        return "absent"
    return "fresh" if rs.fresh(now) else "stale"


def region_verifiable(services: Services, current: Any, code: str, now: dt.datetime) -> bool:
    """Can a licence of ``code`` be answered valid now: a usable issuer and usable status?"""
    rt = current.trust.regions.get(code) if current.trust else None
    if rt is None or not rt.usable_at(now):
        return False
    return status_state(services, code, current.status.get(code), now) in ("fresh", "exempt")


# --- lifecycle ---------------------------------------------------------------------------
async def trust_ctx(app: web.Application) -> AsyncIterator[None]:
    services, live = app[SERVICES], app[LIVE]
    try:
        live.set_trust(await services.trust_source.load())
    except Exception as exc:  # keep serving /healthz; /readyz says why
        live.last_error = f"{type(exc).__name__}: {exc}"
        log.error("trust material failed to load: %s", live.last_error)
    live.set_status(await services.status_source.snapshot(services.clock()))

    async def refresh() -> None:
        while True:
            await asyncio.sleep(services.status_refresh_seconds)
            try:
                live.set_status(await services.status_source.snapshot(services.clock()))
            except Exception:
                log.exception("status refresh failed; keeping the previous snapshot")

    task = asyncio.create_task(refresh())
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def create_app(services: Services) -> web.Application:
    settings = services.settings
    if services.partners is None or services.gateway_key is None:
        raise ValueError("services need a partner registry and the gateway signing key")
    epoch = lambda: services.clock().timestamp()  # noqa: E731 - one clock for tokens and verification
    middlewares = [problem_middleware,
                   auth_middleware(TokenVerifier(services.partners, [services.gateway_key]),
                                   services.rate_limiter if services.rate_limiter is not None else RateLimiter(),
                                   clock=epoch)]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app[SERVICES] = services
    app[BODY_READ_TIMEOUT] = float(settings.body_read_timeout_seconds)
    app[LIVE] = LiveTrust()
    app[RESULT_CACHE] = ResultCache(settings.verify_cache_entries,
                                    dt.timedelta(seconds=settings.verify_cache_ttl_seconds),
                                    settings.clock_skew) if settings.verify_cache_entries else None
    app[TOKEN_SERVICE] = TokenService(services.partners, services.gateway_key,
                                      token_endpoint=settings.token_endpoint_url,
                                      access_ttl_s=settings.access_token_ttl_seconds,
                                      replay_cache=services.replay_cache)
    app[AUTH_CLOCK] = epoch
    app[LATENCY] = LatencyRecorder()
    app.cleanup_ctx.append(trust_ctx)
    app.cleanup_ctx.append(watchdog_ctx(settings.loop_stall_warn_ms))
    app.router.add_post("/v1/oauth/token", token_handler)
    app.router.add_get("/v1/keys", audit_wiring.keys_handler)  # token key + receipt and audit keys
    app.router.add_post("/v1/licences/verify", verify_handler)
    app.router.add_post("/v1/licences/verify-batch", verify_batch_handler)
    app.router.add_get("/v1/regions", regions_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for setup in FEATURES:
        setup(app)
    unprotected = unprotected_routes(app)
    if unprotected:
        raise RuntimeError(f"/v1 routes without a declared scope: {unprotected}")
    return app


#: feature modules add their routes here: each is ``setup(app: web.Application) -> None``
FEATURES: list[Callable[[web.Application], None]] = []

# feature modules (imported last: they append their setup to FEATURES above)
from . import items_routes, openapi_routes  # noqa: E402,F401
from . import trust_routes  # noqa: E402,F401  (trust reload, status fetcher, /v1/admin/trust)
from . import console  # noqa: E402,F401  (service-window console at /console/)
from . import query_routes  # noqa: E402,F401  (federated query, /v1/admin/upstreams)
from . import worker_routes  # noqa: E402,F401  (GET /v1/admin/worker: this worker's counters)
from . import metrics  # noqa: E402  (GET /metrics on a listener of its own, when metrics_port is set;
FEATURES.append(metrics.setup)  # imported by gateway.auth before FEATURES exists, so it is registered here)
from . import audit_wiring  # noqa: E402  (audit records before answers, receipts)

# last: it wires the hooks of the features above (looked up when an app is made, so that importing
# gateway.audit_wiring first -- it imports this module -- finds it complete by then)
FEATURES.append(lambda app: audit_wiring.setup(app))
