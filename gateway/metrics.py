"""Prometheus metrics for operators: ``GET /metrics`` on a listener of its own (``metrics_port``).

What a scraper reads (every name ``elicence_gateway_*``; labels only of bounded sets: the gateway's own
route templates, HTTP status codes, the 45 region codes of ``specs/regions.csv``, the stable reason codes of
:mod:`gateway.errors`, the three verdicts, the OAuth error codes -- no partner, no licence, no person):

* ``requests_total{route,status}`` and ``request_duration_seconds{route}`` (a histogram, 1 ms .. 10 s): every
  answer of the API port, ``route`` the route's template (``/v1/items/{code}/check``), ``unmatched`` for a
  path no route serves; the time from the start of the handler chain to the answer being ready, as
  ``gateway/latency.py`` times it;
* ``verdicts_total{region,verdict}`` and ``verdict_reasons_total{region,reason}``: every licence judged
  (verify, verify-batch entries, item checks, federated query, console), ``region`` ``none`` when no
  region's issuer could be identified (``MALFORMED``, ``UNKNOWN_ISSUER``, ``UNKNOWN_REGION``...);
* ``audit_records_total``, ``audit_commits_total``, ``audit_failed_batches_total``,
  ``audit_commit_wait_seconds`` (histogram), ``audit_commit_timeouts_total``;
* ``upstream_breaker_state{region}`` (0 closed, 1 half-open, 2 open; the worst worker),
  ``upstream_breaker_opened_total{region}``;
* ``status_list_age_seconds{region}`` (the oldest any worker holds; +Inf when a worker holds none) and
  ``status_list_fresh{region}`` (1 when every worker holds a fresh list);
* ``tokens_total{outcome,error}`` (``issued``: a token signed, its answer still 503 when its audit record
  cannot be committed; or ``refused`` with the OAuth ``error``);
* ``result_cache_hits_total`` / ``_misses_total``, ``loop_stalls_total``;
* ``worker_restarts_total`` (``serve --workers N``: the supervisor's), ``workers`` (serving processes
  alive) and ``build_info{version,python}``.

**Cost on the request path.** The verify path is the latency-critical core (issue #7), and
``prometheus_client`` in multiprocess mode writes every change to an mmap file under a lock. So no
request calls it: each worker counts in plain Python (:class:`WorkerCounts` -- a dict increment keyed by
the route object and the status, a ``bisect`` into the latency buckets, a dict increment per verdict;
measured by ``load/bench_metrics_cost.py``: ~1 µs a verify answer), and a background task of the worker
hands the deltas to the Prometheus metrics once a second (:data:`FLUSH_SECONDS`), as does a scrape for
the worker it reaches, before it renders. Everything else (the audit sink's counters, the breakers, the
status lists, the cache and the watchdog) is read at that flush, not counted again. A worker that
scrapes therefore shows its own counts exactly, and the other workers' as of their last flush (at most
a second old).

**Several workers** (``serve --workers N``, several processes on one port): a scrape must see the whole
gateway, not the one worker the kernel gave the connection to. This uses ``prometheus_client``'s
multiprocess mode, as its documentation describes it: the supervisor makes an empty directory under
the var dir (``<var_dir>/metrics/<port>``, cleared at start, removed at stop) and names it in
``PROMETHEUS_MULTIPROC_DIR`` before it spawns the workers; each process writes its values to files of its
own there; every worker listens on ``metrics_port`` too (SO_REUSEPORT, like the API port), and whichever
answers a scrape reads every process's files and sums them (counters and histograms; the gauges take the
worst worker or, for ``workers``, the sum); when a worker ends the supervisor calls
``mark_process_dead`` for it, so its gauges drop out while its counts stay in the totals (counters never go
down when a worker is replaced). Chosen over the alternatives: a scrape of each worker behind the port
cannot be asked for (the kernel picks the worker per connection), and a supervisor that polled its
workers over pipes would be a second, hand-written aggregation of what the library already does.
One worker (``serve`` without ``--workers``, tests): the metrics live in the process, no files.

The listener is unauthenticated, bound to ``metrics_host`` (default 127.0.0.1), the usual practice of
exporters: it shows counts and times only. Off by default (``metrics_port = 0``): nothing listens.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import sys
from bisect import bisect_left
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger("gateway.metrics")

#: the classic text format, which every Prometheus version reads (prometheus_client 0.22+ calls its output
#: version 1.0.0, which differs only for names outside [a-zA-Z_:][a-zA-Z0-9_:]*: none here)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: the environment variable prometheus_client's multiprocess mode reads
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: how often a worker hands its plain counts to the Prometheus metrics, seconds
FLUSH_SECONDS = 1.0
#: answer and audit-wait histogram buckets, seconds (Prometheus ``le`` bounds; +Inf above)
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREFIX = "elicence_gateway_"
#: label of a path no route serves (404, 405), and of any value outside a label's bounded set
UNMATCHED, OTHER, NONE = "unmatched", "other", "none"
VERDICTS = frozenset({"valid", "invalid", "indeterminate"})
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
#: the ``error`` of a refused token request (RFC 6749 §5.2, gateway/auth/tokens.py); "" for an issued one
OAUTH_ERRORS = frozenset({"", "invalid_request", "invalid_client", "invalid_grant", "invalid_scope",
                          "unsupported_grant_type", "temporarily_unavailable"})


class WorkerCounts:
    """A worker's plain counts since its last flush: what the request path touches (no locks, no files).

    Keys are what the caller already holds -- the aiohttp resource object (one per registered route,
    None for an unmatched path), the status int, the region code and reason codes of a result -- and
    are turned into label values, checked against their bounded sets, only at the flush."""

    __slots__ = ("requests", "buckets", "sums", "verdicts", "tokens", "audit_buckets", "audit_sum")

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.requests: dict[tuple[Any, int], int] = {}
        self.buckets: dict[Any, list[int]] = {}
        self.sums: dict[Any, float] = {}
        self.verdicts: dict[tuple[str | None, str, tuple[str, ...]], int] = {}
        self.tokens: dict[tuple[str, str], int] = {}
        self.audit_buckets: list[int] = [0] * (len(LATENCY_BUCKETS) + 1)
        self.audit_sum = 0.0

    def answer(self, resource: Any, status: int, seconds: float) -> None:
        """One answer of the API port (problem_middleware)."""
        key = (resource, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        buckets = self.buckets.get(resource)
        if buckets is None:
            buckets = self.buckets[resource] = [0] * (len(LATENCY_BUCKETS) + 1)
            self.sums[resource] = 0.0
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sums[resource] += seconds

    def verdict(self, result: Any) -> None:
        """One licence judged (gateway.app.verify_now)."""
        region = result.region
        key = (region.code if region is not None else None, result.verdict._value_, result.reason_codes)
        verdicts = self.verdicts
        verdicts[key] = verdicts.get(key, 0) + 1

    def token(self, outcome: str, error: str = "") -> None:
        key = (outcome, error)
        self.tokens[key] = self.tokens.get(key, 0) + 1

    def audit_wait(self, seconds: float) -> None:
        self.audit_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.audit_sum += seconds

    def take(self) -> "WorkerCounts":
        """The counts so far, as a new object; this one starts again from zero (one event loop: no lock)."""
        taken = WorkerCounts.__new__(WorkerCounts)
        for name in self.__slots__:
            setattr(taken, name, getattr(self, name))
        self._clear()
        return taken


#: the worker's counts; absent when metrics are off (metrics_port = 0): the request path then counts nothing
METRICS = web.AppKey("metrics_counts", WorkerCounts)
EXPORTER = web.AppKey("metrics_exporter", object)


def count_token(request: web.Request, outcome: str, error: str = "") -> None:
    counts = request.app.get(METRICS)
    if counts is not None:
        counts.token(outcome, error)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("elicence-gateway")
    except Exception:  # noqa: BLE001 - not installed (a checkout on PYTHONPATH)
        return "unknown"


def _prometheus(multiprocess: bool) -> Any:
    """prometheus_client, imported only when metrics are on. In a process of ``serve --workers N`` (and its
    supervisor) the values must be mmap-backed in the multiprocess directory; in one process they must not
    be, whatever the environment says. The library chooses at its import, from ``PROMETHEUS_MULTIPROC_DIR``:
    a plain ``serve`` started with that variable inherited (another exporter's, a service manager's) wrote
    its values into that directory and, when it did not exist, failed to start. So the choice is made here,
    from the mode, before any metric is made."""
    import prometheus_client
    from prometheus_client import values

    if multiprocess and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()
    elif not multiprocess and getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MutexValue
    # no "<counter>_created" series: multiprocess mode has none, and one process should show the same names
    prometheus_client.disable_created_metrics()
    return prometheus_client


class _Cumulative:
    """Deltas of a counter the gateway keeps anyway (the sink's, the watchdog's...): the last value seen
    per key and its owner; a new owner (a reopened sink) starts again from zero."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[object, float]] = {}

    def delta(self, key: str, owner: object, value: float) -> float:
        last_owner, last = self.seen.get(key, (None, 0.0))
        self.seen[key] = (owner, value)   # the owner itself, not its id: a new sink may reuse a freed one's
        if last_owner is not owner or value < last:
            return value
        return value - last


class Exporter:
    """The worker's Prometheus metrics, fed from its :class:`WorkerCounts` and its other counters."""

    def __init__(self, app: web.Application, multiproc_dir: str | None) -> None:
        pc = _prometheus(bool(multiproc_dir))
        from .app import SERVICES

        self.app = app
        self.counts = app[METRICS]
        self.multiproc_dir = multiproc_dir
        services = app[SERVICES]
        self.regions = frozenset(services.regions)
        from . import errors

        self.reasons = frozenset(r.code for r in errors.all_reasons())
        self.registry = pc.CollectorRegistry(auto_describe=True)
        if multiproc_dir:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry, path=multiproc_dir)
            reg = None   # the values go to this process's files; a scrape reads every process's
        else:
            reg = self.registry
        C, G, H = pc.Counter, pc.Gauge, pc.Histogram
        p = PREFIX
        self.requests = C(p + "requests", "Answers of the API port by route template and HTTP status.",
                          ["route", "status"], registry=reg)
        self.duration = H(p + "request_duration_seconds", "Time from the start of the handler chain to the "
                          "answer being ready, by route template.", ["route"], buckets=LATENCY_BUCKETS, registry=reg)
        self.verdicts = C(p + "verdicts", "Licences judged, by issuing region and verdict.", ["region", "verdict"],
                          registry=reg)
        self.reason_counter = C(p + "verdict_reasons", "Reason codes of the licences judged, by issuing region.",
                                ["region", "reason"], registry=reg)
        self.tokens = C(p + "tokens", "Token requests: issued, or refused with the OAuth error.",
                        ["outcome", "error"], registry=reg)
        self.audit_records = C(p + "audit_records", "Audit records committed.", registry=reg)
        self.audit_commits = C(p + "audit_commits", "Audit append transactions committed.", registry=reg)
        self.audit_failed = C(p + "audit_failed_batches", "Audit batches that failed (their answers were 503).",
                              registry=reg)
        self.audit_timeouts = C(p + "audit_commit_timeouts", "Answers refused 503 after waiting longer than "
                                "audit_commit_timeout_ms for their record.", registry=reg)
        self.audit_wait = H(p + "audit_commit_wait_seconds", "Time from records being queued to their commit "
                            "being durable.", buckets=LATENCY_BUCKETS, registry=reg)
        self.breaker = G(p + "upstream_breaker_state", "Circuit breaker of a region's sharing service: 0 closed, "
                         "1 half-open, 2 open (the worst worker).", ["region"], multiprocess_mode="livemax",
                         registry=reg)
        self.breaker_opened = C(p + "upstream_breaker_opened", "Times a region's circuit breaker opened.",
                                ["region"], registry=reg)
        self.status_age = G(p + "status_list_age_seconds", "Age of the region's status list since it was signed "
                            "(the oldest any worker holds; +Inf when a worker holds none).", ["region"],
                            multiprocess_mode="livemax", registry=reg)
        self.status_fresh = G(p + "status_list_fresh", "1 when every worker holds a fresh status list of the "
                              "region, else 0.", ["region"], multiprocess_mode="livemin", registry=reg)
        self.cache_hits = C(p + "result_cache_hits", "Verification result cache hits.", registry=reg)
        self.cache_misses = C(p + "result_cache_misses", "Verification result cache misses.", registry=reg)
        self.stalls = C(p + "loop_stalls", "Event-loop stalls of at least loop_stall_warn_ms.", registry=reg)
        self.workers = G(p + "workers", "Serving processes alive.", multiprocess_mode="livesum", registry=reg)
        self.build = G(p + "build_info", "The gateway's version (value 1).", ["version", "python"],
                       multiprocess_mode="livemax", registry=reg)
        if not multiproc_dir:   # the supervisor's counter; one process has no supervisor (always 0)
            C(p + "worker_restarts", "Workers started again after ending while serving.", registry=reg)
        self.build.labels(_version(), "%d.%d.%d" % sys.version_info[:3]).set(1)
        self.workers.set(1)
        # histogram children are fed counts per bucket: their bucket values (non-cumulative, the library's own
        # representation in both modes) are incremented by the deltas -- Histogram has no public "observe n"
        if not (isinstance(getattr(self.audit_wait, "_buckets", None), list) and hasattr(self.audit_wait, "_sum")
                and len(self.audit_wait._buckets) == len(LATENCY_BUCKETS) + 1):
            raise RuntimeError("prometheus_client's Histogram changed: cannot feed it bucket counts")
        self._cumulative = _Cumulative()
        self._children: dict[Any, Any] = {}

    # -- labels, bounded --------------------------------------------------------------------------
    def _route(self, resource: Any) -> str:
        return UNMATCHED if resource is None else (resource.canonical or OTHER)

    def _region(self, code: str | None) -> str:
        return NONE if code is None else (code if code in self.regions else OTHER)

    @staticmethod
    def _add_histogram(child: Any, buckets: list[int], total: float) -> None:
        for i, n in enumerate(buckets):
            if n:
                child._buckets[i].inc(n)
        child._sum.inc(total)

    # -- the flush ----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the counts since the last flush to the Prometheus metrics, and read the gauges."""
        taken = self.counts.take()
        for (resource, status), n in taken.requests.items():
            self.requests.labels(self._route(resource), str(status) if 100 <= status <= 599 else OTHER).inc(n)
        for resource, buckets in taken.buckets.items():
            self._add_histogram(self.duration.labels(self._route(resource)), buckets, taken.sums[resource])
        for (region, verdict, reasons), n in taken.verdicts.items():
            label = self._region(region)
            self.verdicts.labels(label, verdict if verdict in VERDICTS else OTHER).inc(n)
            for code in reasons:
                self.reason_counter.labels(label, code if code in self.reasons else OTHER).inc(n)
        for (outcome, error), n in taken.tokens.items():
            self.tokens.labels(outcome, error if error in OAUTH_ERRORS else OTHER).inc(n)
        if any(taken.audit_buckets):
            self._add_histogram(self.audit_wait, taken.audit_buckets, taken.audit_sum)
        self._read_gauges()

    def _inc(self, metric: Any, key: str, owner: object, value: float) -> None:
        d = self._cumulative.delta(key, owner, value)
        if d > 0:
            metric.inc(d)

    def _read_gauges(self) -> None:
        from .app import LIVE, RESULT_CACHE, SERVICES
        from .watchdog import WATCHDOG

        app = self.app
        from .audit_wiring import AUDIT

        trail = app.get(AUDIT)
        sink = trail.sink if trail is not None else None
        stats = getattr(sink, "stats", None)
        if stats is not None:
            self._inc(self.audit_records, "audit_records", sink, stats.records)
            self._inc(self.audit_commits, "audit_commits", sink, stats.transactions)
            self._inc(self.audit_failed, "audit_failed", sink, stats.failed_batches)
        if trail is not None:
            self._inc(self.audit_timeouts, "audit_timeouts", trail.deadlines, trail.deadlines.expired_total)
        cache = app.get(RESULT_CACHE)
        if cache is not None:
            self._inc(self.cache_hits, "cache_hits", cache, cache.hits)
            self._inc(self.cache_misses, "cache_misses", cache, cache.misses)
        dog = app.get(WATCHDOG)
        if dog is not None:
            self._inc(self.stalls, "stalls", dog, dog.stalls)
        from .query_routes import UPSTREAMS

        upstreams = app.get(UPSTREAMS)
        if upstreams is not None:
            now = upstreams.clock()
            for code, breaker in upstreams.breakers.items():
                region = self._region(code)
                self.breaker.labels(region).set(BREAKER_VALUES.get(breaker.current(now).value, 2))
                self._inc(self.breaker_opened.labels(region), "opened/" + code, breaker, breaker.opened_count)
        services = app[SERVICES]
        status = app[LIVE].current.status
        now_dt = services.clock()
        for code in self.regions:
            rs = status.get(code)
            self.status_age.labels(code).set(math.inf if rs is None else max(0.0, rs.age(now_dt).total_seconds()))
            self.status_fresh.labels(code).set(1 if rs is not None and rs.fresh(now_dt) else 0)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        self.flush()
        return generate_latest(self.registry)


async def metrics_handler(request: web.Request) -> web.Response:

    from .serve import worker_identity

    exporter = request.app[EXPORTER]
    body = exporter.render()
    # which process answered (the figures are the whole gateway's either way): i of serve --workers N
    index = worker_identity()["worker_index"]
    headers = {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    if index is not None:
        headers["X-Gateway-Worker"] = str(index)
    return web.Response(body=body, headers=headers)


def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    return _metrics_ctx(app)


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker's exporter, its flush task and its listener on ``metrics_host:metrics_port`` (with
    SO_REUSEPORT under ``serve --workers N``: every worker answers scrapes for the whole gateway)."""
    from .app import SERVICES

    settings = app[SERVICES].settings
    multiproc = os.environ.get(MULTIPROC_ENV) if settings.workers > 1 else None
    if settings.workers > 1 and not multiproc:
        log.warning("metrics: %s is not set: each of the %d workers shows only its own counts",
                    MULTIPROC_ENV, settings.workers)
    exporter = Exporter(app, multiproc)
    app[EXPORTER] = exporter
    from .audit_wiring import AUDIT

    trail = app.get(AUDIT)
    if trail is not None:   # each audit commit wait, beside the latency histograms' own observer
        counts, previous = app[METRICS], trail.deadlines.observe
        if previous is None:
            trail.deadlines.observe = counts.audit_wait
        else:
            def observe(seconds: float, previous: Any = previous, mine: Any = counts.audit_wait) -> None:
                previous(seconds)
                mine(seconds)

            trail.deadlines.observe = observe

    async def flush_every() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                exporter.flush()
            except Exception:  # noqa: BLE001 - metrics never stop a worker
                log.exception("metrics flush failed")

    metrics_app = web.Application()
    metrics_app[EXPORTER] = exporter
    metrics_app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(metrics_app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port, reuse_port=settings.workers > 1)
    await site.start()
    task = asyncio.create_task(flush_every(), name="metrics-flush")
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await runner.cleanup()
        try:
            exporter.flush()   # the last counts of this worker stay in the totals
        except Exception:  # noqa: BLE001
            log.exception("metrics flush failed")


def setup(app: web.Application) -> None:
    from .app import SERVICES

    settings = app[SERVICES].settings
    if not settings.metrics_port:
        return
    app[METRICS] = WorkerCounts()
    app.cleanup_ctx.append(metrics_ctx)


# --- the supervisor of serve --workers N ------------------------------------------------------------
def multiproc_dir(settings: Any) -> Path:
    return Path(settings.var_dir) / "metrics" / str(settings.port)


class Supervision:
    """The supervisor's side: an empty multiprocess directory before the workers start, the worker
    restarts counted, ``mark_process_dead`` for every worker that ends, the directory removed at the end."""

    def __init__(self, settings: Any) -> None:
        from .config import ConfigError

        self.path = multiproc_dir(settings)
        try:
            if self.path.exists():
                shutil.rmtree(self.path)   # a previous run's counts must not be summed into this one's
            self.path.mkdir(parents=True)
        except OSError as exc:   # refused before any worker starts, as any setting (exit 2), not a traceback
            raise ConfigError(f"指标目录无法准备 / the metrics directory {self.path} (metrics_port "
                              f"{settings.metrics_port}, serve --workers) cannot be prepared: "
                              f"{exc.strerror or exc}; make var_dir writable, or set metrics_port = 0") from None
        os.environ[MULTIPROC_ENV] = str(self.path)   # the spawned workers inherit it
        pc = _prometheus(True)
        self.restarts = pc.Counter(PREFIX + "worker_restarts", "Workers started again after ending while serving.",
                                   registry=None)
        self.restarts.inc(0)

    def worker_ended(self, pid: int, restarted: bool) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.path))
        if restarted:
            self.restarts.inc()

    def close(self) -> None:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(self.path, ignore_errors=True)
