"""The load engines: open loop at a target rate, and a closed-loop max-throughput search."""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from time import perf_counter
from typing import Any, TextIO, TypeVar

import aiohttp
import orjson

from load import __version__
from load.rawhttp import ProtocolViolation, RawHttpPool
from load.scenarios import PreparedRequest, RequestPicker, Scenario
from load.schedule import arrival_offsets
from load.stats import (
    Recorder,
    cpu_report,
    encode_histogram,
    latency_summary_ms,
    percentile_curve_ms,
)
from load.tokens import TokenProvider, auth_headers, no_token

RESULT_SCHEMA = "elicence-load-result/1"
T = TypeVar("T")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run a load engine to completion on uvloop (the operator CLI and every benchmark script use
    this, so a benchmark's load generator costs what the operator's does). Measured against a
    2-worker gateway at 64 in flight, three interleaved pairs: the stock asyncio loop needed 185-239
    us of the generator's CPU per request against 162-205 on uvloop, CPU it takes from the server on
    a 2-core machine, and the runs reached 8-28 % less throughput."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)

# Every time in the engines comes from time.perf_counter (sub-microsecond), not loop.time():
# uvloop's loop.time() has millisecond resolution, too coarse for latency.
START_LEAD_S = 0.05          # first intended send time is this far after setup
TOKEN_REFRESH_MIN_S = 1.0
TOKEN_PERIODIC_S = 5.0


@dataclass(frozen=True, slots=True)
class OpenLoopConfig:
    target: str
    scenario: Scenario
    rate: float
    duration_s: float
    arrivals: str = "constant"
    connections: int = 64
    max_in_flight: int = 256
    timeout_s: float = 5.0
    seed: int = 1
    late_threshold_ms: float = 10.0
    max_requests: int = 3_000_000
    client: str = "raw"               # raw (load/rawhttp.py, the default) | aiohttp


@dataclass(frozen=True, slots=True)
class MaxConfig:
    target: str
    scenario: Scenario
    step_duration_s: float
    concurrency_steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    timeout_s: float = 5.0
    seed: int = 1
    stop_gain: float = 0.03           # stop after two steps improving the peak by less than this
    stop_error_rate: float = 0.05     # stop once a step fails more than this share of requests
    client: str = "raw"               # raw (load/rawhttp.py, the default) | aiohttp
    max_requests: int = 3_000_000     # requests in the whole search (all steps): the same cap as a run's


def verdicts_of(kind: str, payload: Any) -> list[str]:
    """The verdicts in a response body: one for verify/check, one per item for a batch."""
    if not isinstance(payload, dict):
        return ["unparsed"]
    if kind == "batch" and isinstance(payload.get("results"), list):
        return [r.get("verdict", "none") if isinstance(r, dict) else "unparsed" for r in payload["results"]]
    v = payload.get("outcome") if kind == "check" else payload.get("verdict")
    return [v] if isinstance(v, str) else ["none"]


#: the HTTP clients the engines can send with (``--http-client``)
CLIENTS = ("raw", "aiohttp")


class _Client:
    """Sends prepared requests and classifies the outcome into a Recorder.

    ``session`` is a :class:`load.rawhttp.RawHttpPool` (the default: about half of the generator's
    CPU per request) or an ``aiohttp.ClientSession``; both classify alike: ``timeout``, ``connection``
    (refused, reset, closed early), ``client`` (anything else, a malformed answer included)."""

    def __init__(self, session: RawHttpPool | aiohttp.ClientSession, target: str,
                 token_provider: TokenProvider) -> None:
        self.session = session
        self.raw = isinstance(session, RawHttpPool)
        self.base = target.rstrip("/")
        self.token_provider = token_provider
        self.headers: dict[str, str] = {"Content-Type": "application/json"}
        self._last_refresh = -1e9
        self._refreshing = False

    async def refresh_token(self) -> None:
        token = await self.token_provider()
        self.headers = {"Content-Type": "application/json", **auth_headers(token)}
        self._last_refresh = time.monotonic()

    async def keep_fresh(self) -> None:
        """Asks the provider again every few seconds, so a provider renewing before expiry
        (``oauth_token``) never lets a long run reach its token's expiry."""
        while True:
            await asyncio.sleep(TOKEN_PERIODIC_S)
            try:
                await self.refresh_token()
            except Exception as exc:  # keep the old token; a real failure shows as 401s
                print(f"load: token refresh failed: {exc}", file=sys.stderr)

    def _maybe_refresh(self) -> None:
        if self._refreshing or time.monotonic() - self._last_refresh < TOKEN_REFRESH_MIN_S:
            return
        self._refreshing = True
        invalidate = getattr(self.token_provider, "invalidate", None)
        if invalidate is not None:  # a cached token was refused: fetch a new one
            invalidate()

        async def go() -> None:
            try:
                await self.refresh_token()
            except Exception as exc:  # a failed refresh must not stop the run; it shows as 401s
                print(f"load: token refresh failed: {exc}", file=sys.stderr)
                self._last_refresh = time.monotonic()
            finally:
                self._refreshing = False
        asyncio.get_running_loop().create_task(go())

    async def send(self, req: PreparedRequest, rec: Recorder, intended: float, sent: float,
                   clock: Callable[[], float], timeout: aiohttp.ClientTimeout) -> None:
        try:
            if self.raw:
                pool: RawHttpPool = self.session  # type: ignore[assignment]
                status, raw = await pool.request(pool.prepare(req.method, req.path, req.body, self.headers),
                                                 timeout.total or 60.0)
            else:
                async with self.session.request(req.method, self.base + req.path,  # type: ignore[union-attr]
                                                data=req.body, headers=self.headers, timeout=timeout) as resp:
                    raw = await resp.read()
                    status = resp.status
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            rec.on_failure(intended, clock(), "timeout")
            return
        except (aiohttp.ClientConnectionError, ConnectionError):
            rec.on_failure(intended, clock(), "connection")
            return
        except (aiohttp.ClientError, OSError, ProtocolViolation):
            rec.on_failure(intended, clock(), "client")
            return
        done = clock()
        verdicts: list[str] = []
        if 200 <= status < 300:
            try:
                verdicts = verdicts_of(req.kind, orjson.loads(raw))
            except orjson.JSONDecodeError:
                verdicts = ["unparsed"]
        elif status == 401:
            self._maybe_refresh()
        rec.on_response(intended, sent, done, status, verdicts, req.expect)


def _rusage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


class _CpuMeter:
    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.user0, self.sys0 = _rusage()

    def report(self) -> dict[str, float]:
        user, sys_ = _rusage()
        return cpu_report(time.process_time() - self.cpu0, user - self.user0, sys_ - self.sys0,
                          time.perf_counter() - self.wall0)


def _progress_line(elapsed: float, rec: Recorder, last_sent: int, in_flight: int, window_s: float) -> str:
    """One progress line; ``rate`` is the sends since ``last_sent`` over the ``window_s`` seconds they
    took (a reporter woken late by a busy loop must not print two seconds of sends as one second's)."""
    p99 = rec.latency.get_value_at_percentile(99.0) / 1000.0 if rec.latency.get_total_count() else 0.0
    rate = (rec.sent - last_sent) / window_s if window_s > 0 else 0.0
    return (f"[load] t={elapsed:5.1f}s sent={rec.sent} rate={rate:.0f}/s "
            f"p99={p99:.2f}ms errors={rec.error_count} dropped={rec.errors.get('dropped', 0)} "
            f"late={rec.late} in_flight={in_flight}")


def _session(connections: int, client: str, target: str) -> Any:
    """The engine's HTTP client: ``raw`` (:class:`load.rawhttp.RawHttpPool`) or ``aiohttp``."""
    if client == "raw":
        return RawHttpPool(target, connections, user_agent=f"elicence-load/{__version__}")
    if client != "aiohttp":
        raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections, use_dns_cache=True,
                                     ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
                                 headers={"User-Agent": f"elicence-load/{__version__}"})


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _result_common(rec: Recorder, wall_s: float, duration_s: float) -> dict[str, Any]:
    counts = rec.counts()
    denominator = max(1, counts["scheduled"] or counts["sent"])
    return {
        "counts": counts,
        "errors": dict(sorted(rec.errors.items())),
        "status": dict(sorted(rec.status.items())),
        "verdicts": dict(sorted(rec.verdicts.items())),
        # rates unrounded: one error in 3,000,000 rounded to 6 digits would read 0.0 and pass "= 0"
        "expectation": {"checked": rec.expect_checked, "mismatched": rec.expect_mismatched,
                        "mismatch_rate": rec.expect_mismatched / rec.expect_checked if rec.expect_checked else 0.0},
        "latency_ms": latency_summary_ms(rec.latency),
        "latency_curve_ms": percentile_curve_ms(rec.latency),
        "service_time_ms": latency_summary_ms(rec.service),
        "dispatch_lag_ms": latency_summary_ms(rec.lag),
        "throughput_rps": round(rec.responses / duration_s, 2) if duration_s > 0 else 0.0,
        "ok_throughput_rps": round(rec.ok / duration_s, 2) if duration_s > 0 else 0.0,
        "error_rate": rec.error_count / denominator,
        "wall_s": round(wall_s, 3),
        "timeline": rec.timeline(),
        "histogram_hdr": encode_histogram(rec.latency),
    }


async def run_open_loop(config: OpenLoopConfig, picker: RequestPicker, token_provider: TokenProvider | None = None,
                        *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Sends requests at their intended times (constant or Poisson arrivals), keeping at most
    ``max_in_flight`` outstanding; an arrival that finds the cap full is *dropped* and counted.
    Latency is measured from the intended send time. Returns the result dict (see README)."""
    loop = asyncio.get_running_loop()
    rec = Recorder()
    # not random.Random(config.seed): the picker draws the request kinds from that very stream, and the
    # same uniform deciding an arrival's gap and its kind made the heaviest kind always follow the longest gaps
    rng = random.Random(f"arrivals-{config.seed}")
    offsets = arrival_offsets(config.arrivals, config.rate, config.duration_s, rng)
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    late_s = config.late_threshold_ms / 1000.0
    tasks: dict[asyncio.Task[None], float] = {}
    started_at = _now_iso()
    cpu = _CpuMeter()
    async with _session(config.connections, config.client, config.target) as session:
        client = _Client(session, config.target, token_provider or no_token())
        await client.refresh_token()
        t0 = perf_counter() + START_LEAD_S

        def clock() -> float:
            return perf_counter() - t0

        async def reporter() -> None:
            last, last_t = 0, 0.0          # sending starts at clock() == 0
            while True:
                await asyncio.sleep(1.0)
                now = clock()
                if progress is not None:
                    print(_progress_line(now, rec, last, len(tasks), now - last_t), file=progress, flush=True)
                last, last_t = rec.sent, now

        rep = loop.create_task(reporter())
        fresh = loop.create_task(client.keep_fresh())
        try:
            for off in offsets:
                if rec.scheduled >= config.max_requests:
                    break
                delay = t0 + off - perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                rec.on_scheduled()
                if len(tasks) >= config.max_in_flight:
                    rec.on_dropped(off)
                    continue
                sent = clock()
                rec.on_sent(off, max(0.0, sent - off), late_s)
                task = loop.create_task(client.send(picker.next(), rec, off, sent, clock, timeout))
                tasks[task] = off
                task.add_done_callback(lambda t: tasks.pop(t, None))
            if tasks:
                await asyncio.wait(set(tasks), timeout=config.timeout_s + 1.0)
        finally:
            rep.cancel()
            fresh.cancel()
            # anything still outstanding has outlived its own timeout: cancel it, count a timeout
            for t, intended in list(tasks.items()):
                if not t.done():
                    t.cancel()
                    rec.on_failure(intended, clock(), "timeout")
            tasks.clear()
        wall = clock()
    result = {
        "schema": RESULT_SCHEMA,
        "tool": f"elicence-load {__version__}",
        "mode": "open-loop",
        "scenario": config.scenario.name,
        "target": config.target,
        "started_at": started_at,
        "config": {**{k: v for k, v in asdict(config).items() if k != "scenario"},
                   "mix": [list(m) for m in config.scenario.mix]},
        **_result_common(rec, wall, config.duration_s),
        "cpu": cpu.report(),
    }
    if progress is not None:
        # the whole run: every send over the scheduled duration
        print(_progress_line(wall, rec, 0, 0, config.duration_s) + " done", file=progress, flush=True)
    return result


async def _closed_step(client: _Client, picker: RequestPicker, concurrency: int, duration_s: float,
                       timeout: aiohttp.ClientTimeout, budget: int) -> tuple[Recorder, float, dict[str, float]]:
    rec = Recorder()
    cpu = _CpuMeter()
    t0 = perf_counter()
    end = t0 + duration_s

    def clock() -> float:
        return perf_counter() - t0

    async def worker() -> None:
        while perf_counter() < end and rec.scheduled < budget:
            start = clock()
            rec.on_scheduled()
            rec.on_sent(start, 0.0, 1.0)
            await client.send(picker.next(), rec, start, start, clock, timeout)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return rec, clock(), cpu.report()


async def run_max(config: MaxConfig, picker: RequestPicker, token_provider: TokenProvider | None = None,
                  *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Closed loop: N workers send back to back for one step, N stepping up; reports the peak."""
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    steps: list[dict[str, Any]] = []
    best = 0.0
    flat = 0
    started_at = _now_iso()
    cpu = _CpuMeter()
    budget = config.max_requests
    async with _session(max(config.concurrency_steps), config.client, config.target) as session:
        client = _Client(session, config.target, token_provider or no_token())
        await client.refresh_token()
        fresh = asyncio.get_running_loop().create_task(client.keep_fresh())
        for n in config.concurrency_steps:
            rec, wall, step_cpu = await _closed_step(client, picker, n, config.step_duration_s, timeout, budget)
            budget -= rec.scheduled
            common = _result_common(rec, wall, wall)
            step = {"concurrency": n, "throughput_rps": common["throughput_rps"],
                    "ok_throughput_rps": common["ok_throughput_rps"], "latency_ms": common["latency_ms"],
                    "error_rate": common["error_rate"], "errors": common["errors"], "verdicts": common["verdicts"],
                    "expectation": common["expectation"], "counts": common["counts"], "cpu": step_cpu}
            steps.append(step)
            if progress is not None:
                print(f"[load] max concurrency={n} throughput={step['ok_throughput_rps']:.1f}/s "
                      f"p50={step['latency_ms']['p50']:.2f}ms p99={step['latency_ms']['p99']:.2f}ms "
                      f"errors={common['counts']['errors']} cpu={step_cpu['percent_of_one_core']:.0f}%",
                      file=progress, flush=True)
            if common["error_rate"] > config.stop_error_rate or budget <= 0:
                break
            if step["ok_throughput_rps"] > best * (1 + config.stop_gain):
                flat = 0
            else:
                flat += 1
                if flat >= 2:
                    break
            best = max(best, step["ok_throughput_rps"])
        fresh.cancel()
    peak = max(steps, key=lambda s: s["ok_throughput_rps"])
    return {
        "schema": RESULT_SCHEMA,
        "tool": f"elicence-load {__version__}",
        "mode": "closed-loop-max",
        "scenario": config.scenario.name,
        "target": config.target,
        "started_at": started_at,
        "config": {**{k: v for k, v in asdict(config).items() if k != "scenario"},
                   "mix": [list(m) for m in config.scenario.mix]},
        "steps": steps,
        # the peak step's own figures: an SLO on a max run judges mismatches and the tool's CPU there too
        "peak": {"concurrency": peak["concurrency"], "throughput_rps": peak["ok_throughput_rps"],
                 "latency_ms": peak["latency_ms"], "error_rate": peak["error_rate"], "counts": peak["counts"],
                 "expectation": peak["expectation"], "cpu": peak["cpu"]},
        "cpu": cpu.report(),
    }
