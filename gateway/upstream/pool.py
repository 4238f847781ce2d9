"""All upstream regions behind one object: deadlines, retries, breakers, limits, counters.

:meth:`Upstreams.fetch` never raises for an upstream problem: it returns a
:class:`RegionFetch` whose ``outcome`` is ``ok`` / ``not_found`` / ``timeout`` / ``error`` /
``circuit_open``. The caller's deadline (event-loop time) bounds everything, including the
wait for a free slot under the region's concurrency limit, so one slow or hanging region
can delay only the queries that ask it, and only up to their own deadline.

One shared :class:`aiohttp.ClientSession` (opened by :meth:`open`, closed by :meth:`close`)
carries every request; nothing about a holder outlives the call.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import aiohttp

from .breaker import BreakerPolicy, CircuitBreaker
from .clients import HolderQuery, RegionClient, make_client
from .config import UpstreamConfig
from .metrics import RegionCounters
from .retry import RetryPolicy, UpstreamFailure, backoff

OK, NOT_FOUND, TIMEOUT, ERROR, CIRCUIT_OPEN = "ok", "not_found", "timeout", "error", "circuit_open"


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    #: largest accepted upstream answer, bytes
    max_body_bytes: int = 2 * 1024 * 1024
    #: most connections of the shared session (all regions together)
    max_connections: int = 256


@dataclass(frozen=True, slots=True)
class RegionFetch:
    region: str
    outcome: str
    licences: tuple[bytes, ...] = ()
    detail: str | None = None
    attempts: int = 0
    latency_ms: float = 0.0


class FreshConnector(aiohttp.TCPConnector):
    """A connection pool that never hands out a kept-alive connection on which bytes arrived while it
    sat idle. aiohttp queues such bytes as the answer of the NEXT request sent on that connection: a
    region (or a proxy before it) sending an answer twice or late made every later query on that
    connection read the answer of the query before it -- another applicant's, and, where several
    regions share a host, another region's (a wrong ``not_found``; the real answer served one query
    late). Such a connection is closed and another one taken."""

    async def connect(self, req, traces, timeout):  # type: ignore[no-untyped-def]
        for _ in range(8):
            conn = await super().connect(req, traces, timeout)
            proto = conn.protocol
            if proto is None or not proto.should_close:
                return conn
            conn.close()
        raise aiohttp.ClientConnectionError("every connection to the region held bytes nobody asked for")


class Upstreams:
    def __init__(self, configs: Mapping[str, UpstreamConfig], policy: ResiliencePolicy = ResiliencePolicy(), *,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 clients: Mapping[str, RegionClient] | None = None) -> None:
        self.configs = dict(configs)
        self.policy = policy
        self.clock = clock  # the breakers' clock (injected in tests)
        self.rng = rng or random.Random()
        self.clients: dict[str, RegionClient] = dict(clients) if clients else {
            code: make_client(cfg) for code, cfg in self.configs.items()}
        self.breakers = {code: CircuitBreaker(policy.breaker) for code in self.configs}
        self.limits = {code: asyncio.Semaphore(cfg.concurrency) for code, cfg in self.configs.items()}
        self.counters = {code: RegionCounters() for code in self.configs}
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = FreshConnector(limit=self.policy.max_connections, limit_per_host=0, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                             raise_for_status=False, auto_decompress=False)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def fetch(self, region: str, query: HolderQuery, deadline: float, *,
                    caller_deadline: bool = False) -> RegionFetch:
        """Ask ``region`` for ``query``'s licences, finishing before ``deadline`` (loop time).
        ``caller_deadline``: the deadline is shorter than the gateway's own because the caller asked
        for it; an attempt it cut short before the region's own timeout is no failure of the region
        (it is not counted by the breaker: one partner's short deadlines opened it for everyone)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        cfg = self.configs.get(region)
        if cfg is None or self.session is None:
            return RegionFetch(region, ERROR, detail="no upstream configured for this region")
        counters, breaker = self.counters[region], self.breakers[region]
        counters.requests += 1
        if not breaker.allow(self.clock()):
            counters.observe(CIRCUIT_OPEN, 0.0)
            return RegionFetch(region, CIRCUIT_OPEN, detail="circuit open after repeated failures; not asked")
        try:
            result = await self._attempts(cfg, query, deadline, loop, caller_deadline)
        except asyncio.CancelledError:
            breaker.abandon()
            counters.observe(TIMEOUT, (loop.time() - started) * 1000)
            raise
        latency = (loop.time() - started) * 1000
        counters.observe(result.outcome, latency)
        return RegionFetch(region, result.outcome, result.licences, result.detail, result.attempts, round(latency, 2))

    async def _attempts(self, cfg: UpstreamConfig, query: HolderQuery, deadline: float,
                        loop: asyncio.AbstractEventLoop, caller_deadline: bool = False) -> RegionFetch:
        region = cfg.region
        counters, breaker, limit = self.counters[region], self.breakers[region], self.limits[region]
        client, session = self.clients[region], self.session
        assert session is not None
        try:  # waiting for a free slot counts against the caller's budget
            async with asyncio.timeout_at(deadline):
                await limit.acquire()
        except TimeoutError:
            breaker.abandon()
            return RegionFetch(region, TIMEOUT, detail=f"no free slot under the region's limit of {cfg.concurrency}")
        counters.in_flight += 1
        attempt = 0
        try:
            while True:
                attempt += 1
                counters.attempts += 1
                remaining = deadline - loop.time()
                budget = min(cfg.timeout_s, remaining)
                if budget <= 0:
                    breaker.abandon()
                    return RegionFetch(region, TIMEOUT, detail="deadline reached", attempts=attempt - 1)
                try:
                    async with asyncio.timeout(budget):
                        licences = await client.query(session, query, int(budget * 1000),
                                                      self.policy.max_body_bytes)
                except TimeoutError:
                    if caller_deadline and budget < cfg.timeout_s:
                        breaker.abandon()  # the caller's own short deadline, not the region's timeout
                    else:
                        breaker.record(False, self.clock())
                    return RegionFetch(region, TIMEOUT, detail=f"no answer within {int(budget * 1000)} ms",
                                       attempts=attempt)
                except UpstreamFailure as failure:
                    if failure.safe and attempt <= self.policy.retry.retries:
                        delay = backoff(self.policy.retry, attempt, self.rng)
                        if loop.time() + delay < deadline:
                            counters.retries += 1
                            await asyncio.sleep(delay)
                            continue
                    breaker.record(False, self.clock())
                    return RegionFetch(region, ERROR, detail=failure.detail, attempts=attempt)
                breaker.record(True, self.clock())
                return RegionFetch(region, OK if licences else NOT_FOUND, tuple(licences), attempts=attempt)
        finally:
            counters.in_flight -= 1
            limit.release()

    def status(self) -> dict[str, dict[str, object]]:
        now = self.clock()
        return {code: {"flavour": cfg.flavour, "base_url": cfg.base_url, "timeout_ms": int(cfg.timeout_s * 1000),
                       "concurrency": cfg.concurrency, "breaker": self.breakers[code].snapshot(now),
                       **self.counters[code].as_dict()}
                for code, cfg in sorted(self.configs.items())}
