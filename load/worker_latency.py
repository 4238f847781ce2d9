"""The gateway's own account of a load phase: every worker's latency histograms, merged.

Each worker of ``serve --workers N`` times its answers and their audit waits
(``gateway/latency.py``). :func:`reset_workers` starts every worker's histograms again before a
phase and :func:`read_workers` collects them after it; a connection reaches one worker (the
kernel picks it), so both open a fresh connection per call until ``workers`` distinct processes
have answered. :func:`merged` turns the answers into one summary per figure, merged exactly from
the workers' HDR histograms: what the gateway measured inside its handlers, to set beside what the
client measured around them. Needs a token with the ``admin`` scope (the TEST partner
``load-operator``).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.latency import merge, summarise
from load.errors import TARGET_INVALID, LoadRefused
from load.tokens import TokenProvider, auth_headers

#: calls made before giving up on reaching every worker (each reaches one at random)
MAX_ATTEMPTS = 200
OPERATOR_CLIENT_ID = "load-operator"


async def _each_worker(target: str, token: TokenProvider, method: str, path: str, workers: int) -> dict[int, Any]:
    seen: dict[int, Any] = {}
    headers = auth_headers(await token())
    connector = aiohttp.TCPConnector(force_close=True)   # a new connection, so a new pick, per call
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(MAX_ATTEMPTS):
            async with session.request(method, target.rstrip("/") + path, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    raise LoadRefused(TARGET_INVALID, f"{method} {path} answered {resp.status}: "
                                                      f"{(await resp.read())[:200]!r}")
                body = await resp.json()
            seen.setdefault(int(body["pid"]), body["latency"])
            if len(seen) >= workers:
                break
    return seen


async def reset_workers(target: str, token: TokenProvider, workers: int) -> list[int]:
    """Start every worker's histograms again; the processes reached (fewer than ``workers`` only
    when :data:`MAX_ATTEMPTS` calls did not reach them all)."""
    return sorted(await _each_worker(target, token, "POST", "/v1/admin/worker/latency/reset", workers))


async def read_workers(target: str, token: TokenProvider, workers: int) -> dict[int, Any]:
    """Each worker's ``latency`` (``GET /v1/admin/worker``), by process id."""
    return await _each_worker(target, token, "GET", "/v1/admin/worker", workers)


def _summary(encoded: list[str | None]) -> dict[str, Any]:
    """The workers' histograms merged, summarised as the gateway summarises one (without the histogram)."""
    out = summarise(merge(encoded))
    del out["hdr"]
    return out


def merged(per_worker: dict[int, Any], route: str = "verify") -> dict[str, Any]:
    """``{"workers", "answer", "audit_wait", "loop_lag"}``: the workers' ``route`` answers, audit waits
    and event-loop lag."""
    return {"workers": len(per_worker),
            "answer": _summary([w["answers"][route]["hdr"] for w in per_worker.values()]),
            "audit_wait": _summary([w["audit_wait"]["hdr"] for w in per_worker.values()]),
            "loop_lag": _summary([w["loop_lag"]["hdr"] for w in per_worker.values()])}
