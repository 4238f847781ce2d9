"""Load scenario for the federated query: does one slow and one failing region hurt the others?

    python -m load.query_scenario --duration 15s --rate 40

Three processes on loopback, as in production where the regions are remote:

* the simulated regions (``python -m gateway.region_server --everyone-everywhere``),
* the gateway (``python -m gateway serve --demo`` with ``GATEWAY_UPSTREAM_BASE_URL`` pointing
  at them), both on one fresh TEST framework in a temporary ``GATEWAY_VAR_DIR``,
* this script: an open-loop generator (latency measured from each request's *intended* send
  time, so a stalled gateway cannot hide behind a slowed generator) with the TEST partner
  ``demo-partner``'s token (its committed TEST key; limit 50 req/s, so ``--rate`` <= 45).

The same schedule and mix run twice: **all healthy** (no faults), then **degraded**: region
``SLOW`` answers after ``--slow-ms`` (beyond the deadline) and region ``FAILING`` answers
HTTP 500 (faults switched with ``PUT /_sim/faults/<region>``). Mix: half the queries ask only
healthy regions (``HOME`` + ``HEALTHY``), a quarter ``HOME`` + ``SLOW``, a quarter
``HEALTHY`` + ``FAILING``. Printed: p50/p99 per kind, and the p99 of healthy-only queries in
both runs with the ratio degraded/healthy (target <= 2x). Exit 0 when met, 3 when missed,
2 when refused (bad arguments, a server that does not start).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from gateway.identifiers import citizen_id_check
from load.tokens import oauth_token

ROOT = Path(__file__).resolve().parent.parent
HOME, HEALTHY, SLOW, FAILING = "330100", "340100", "320100", "310000"
MIX: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("healthy-only", (HOME, HEALTHY), 0.5),
    ("with-slow", (HOME, SLOW), 0.25),
    ("with-failing", (HEALTHY, FAILING), 0.25),
)
ITEM = "KS-009"
MAX_PHASE_S, MAX_RATE = 120.0, 45.0
TARGET_RATIO = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def holders(n: int, rng: random.Random) -> list[str]:
    out = []
    for i in range(n):
        birth = dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 40))
        first17 = f"330106{birth:%Y%m%d}{i % 999 + 1:03d}"
        out.append(first17 + citizen_id_check(first17))
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))]


async def wait_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async with aiohttp.ClientSession() as session:
        while loop.time() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"{url} exited with {proc.returncode}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {seconds:.0f} s")


async def phase(url: str, token: str, people: list[str], rate: float, duration: float, deadline_ms: int,
                seed: int, cover: bool = False) -> dict[str, list[float]]:
    """Open loop at ``rate`` for ``duration``; ``cover``: every (holder, kind) once instead of a random mix."""
    rng = random.Random(seed)
    plan = []
    if cover:
        combos = [(kind, regions, code) for code in people for kind, regions, _ in MIX]
        plan = [(i / rate, *combo) for i, combo in enumerate(combos)]
    for i in range(0 if cover else int(rate * duration)):
        r, acc = rng.random(), 0.0
        for kind, regions, weight in MIX:
            acc += weight
            if r < acc:
                break
        plan.append((i / rate, kind, regions, rng.choice(people)))
    latencies: dict[str, list[float]] = {kind: [] for kind, _, _ in MIX}
    outcomes: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512),
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05

        async def one(at: float, kind: str, regions: tuple[str, ...], code: str) -> None:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            body = {"holder": {"code_type": "111", "code": code}, "licence_types": ["id_card"], "item": ITEM,
                    "use_cause": "压测：个体工商户设立登记", "regions": list(regions), "deadline_ms": deadline_ms}
            async with session.post(url + "/v1/licences/query", json=body) as resp:
                doc = await resp.json(content_type=None)
            if resp.status != 200:
                outcomes[f"http_{resp.status}"] = outcomes.get(f"http_{resp.status}", 0) + 1
                return
            latencies[kind].append((loop.time() - (start + at)) * 1000)
            for r in doc["regions"]:
                key = f"{r['region']}:{r['status']}"
                outcomes[key] = outcomes.get(key, 0) + 1

        await asyncio.gather(*(one(*p) for p in plan))
    print("    outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())), flush=True)
    return latencies


async def set_faults(sim_url: str, region: str, faults: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{sim_url}/_sim/faults/{region}", json=faults) as resp:
            if resp.status != 200:
                raise RuntimeError(f"fault switch refused: {await resp.text()}")


async def run(args: argparse.Namespace) -> int:
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory(prefix="query-scenario-") as var_dir:
        env = {**os.environ, "GATEWAY_VAR_DIR": var_dir, "PYTHONPATH": str(ROOT),
               "GATEWAY_UPSTREAM_BASE_URL": sim_url + "/r/{region}",
               "GATEWAY_QUERY_DEADLINE_MS": str(args.deadline_ms),
               "GATEWAY_UPSTREAM_CONCURRENCY": str(args.concurrency), "GATEWAY_LOG_LEVEL": "WARNING",
               # a short breaker window and cool-down so a 15 s phase shows the circuit open and close
               "GATEWAY_BREAKER_WINDOW_SECONDS": "10", "GATEWAY_BREAKER_COOL_DOWN_SECONDS": "5"}
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "gateway.region_server", "--port", str(sim_port),
                                           "--everyone-everywhere"], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            await wait_up(sim_url + "/_sim/stats", procs[0])  # it writes the TEST framework first
            procs.append(subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--demo", "--port", str(gw_port)],
                                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            await wait_up(gw_url + "/readyz", procs[1])
            token = await oauth_token(gw_url, client_id="demo-partner", scope="licences:query")()
            assert token is not None
            people = holders(args.holders, random.Random(args.seed))
            print(f"gateway {gw_url}, regions {sim_url}; {args.rate}/s for {args.duration}s per phase, "
                  f"deadline {args.deadline_ms} ms", flush=True)
            print("  warm-up at 10/s (each holder's licences signed once by the regions; then breakers settle)",
                  flush=True)
            await phase(gw_url, token, people, 10.0, len(people) * 3 / 10.0, args.deadline_ms, args.seed + 1,
                        cover=True)
            await asyncio.sleep(6.0)
            print("  phase 1: all regions healthy", flush=True)
            healthy = await phase(gw_url, token, people, args.rate, args.duration, args.deadline_ms, args.seed)
            await set_faults(sim_url, SLOW, {"latency_ms": args.slow_ms})
            await set_faults(sim_url, FAILING, {"fail": True})
            print(f"  phase 2: {SLOW} answers after {args.slow_ms} ms, {FAILING} answers HTTP 500", flush=True)
            degraded = await phase(gw_url, token, people, args.rate, args.duration, args.deadline_ms, args.seed)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    h99, d99 = percentile(healthy["healthy-only"], 99), percentile(degraded["healthy-only"], 99)
    print(f"\n{'queries':<28}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}")
    for label, data in (("healthy-only, all healthy", healthy), ("healthy-only, degraded", degraded),
                        ("with-slow, degraded", degraded), ("with-failing, degraded", degraded)):
        values = data[label.split(",")[0]]
        print(f"{label:<28}{len(values):>6}{percentile(values, 50):>10.1f}{percentile(values, 99):>10.1f}")
    ratio = d99 / h99 if h99 > 0 else float("inf")
    print(f"\np99 of healthy-only queries: {h99:.1f} ms all healthy, {d99:.1f} ms degraded; "
          f"ratio {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x: {'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    return 0 if ratio <= TARGET_RATIO else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="federated query under one slow and one failing region")
    parser.add_argument("--duration", required=True, help="seconds per phase, e.g. 15s")
    parser.add_argument("--rate", type=float, default=40.0, help=f"queries per second, open loop (<= {MAX_RATE:.0f})")
    parser.add_argument("--deadline-ms", type=int, default=1000)
    parser.add_argument("--slow-ms", type=int, default=3000, help="latency of the slow region in phase 2")
    parser.add_argument("--concurrency", type=int, default=8, help="upstream_concurrency per region")
    parser.add_argument("--holders", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        args.duration = float(str(args.duration).rstrip("s"))
    except ValueError:
        print("refused: --duration must be seconds, e.g. 15s", file=sys.stderr)
        return 2
    if not 0 < args.duration <= MAX_PHASE_S or not 0 < args.rate <= MAX_RATE or args.deadline_ms <= 0:
        print(f"refused: duration 0-{MAX_PHASE_S:.0f} s, rate 0-{MAX_RATE:.0f}/s, positive deadline", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args))
    except RuntimeError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
