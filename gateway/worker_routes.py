"""``GET /v1/admin/worker`` (scope ``admin``): what the worker that answers is doing.

Each of ``serve --workers N`` answers for itself (the kernel picks the worker per connection), so
the answer names its process (``pid``, ``worker_index``: :func:`gateway.serve.worker_identity`). It
holds counters only -- no licence, no holder, no partner:

* ``loop``: the event-loop watchdog (gateway/watchdog.py): the threshold, the stalls logged since
  start and the worst one (``null`` when ``loop_stall_warn_ms`` is 0);
* ``result_cache``: entries, hits, misses and hit rate of the verification result cache (``null``
  when it is off);
* ``audit``: the backend and writer; the group-commit counters of this worker's sink
  (transactions, records, largest batch, failed batches; ``null`` while the store is not open); the
  inline writer's commit spacing now in force and the loop thread's CPU share it follows (``null``
  for the other writers);
  ``audit_commit_timeout_ms``, the answers waiting for their record now, and how many were
  answered 503 for waiting past it;
* ``latency``: this worker's answer and audit-wait histograms (gateway/latency.py) since it
  started or since ``POST /v1/admin/worker/latency/reset``, which starts them again and answers
  what they held.
"""

from __future__ import annotations

import dataclasses

import orjson
from aiohttp import web

from .app import FEATURES, RESULT_CACHE
from .latency import LATENCY
from .serve import worker_identity
from .auth import ADMIN, requires_scope
from .watchdog import WATCHDOG


@requires_scope(ADMIN)
async def worker_info(request: web.Request) -> web.Response:
    from .audit_wiring import AUDIT   # late: audit_wiring imports the app module

    app = request.app
    dog = app[WATCHDOG]
    cache = app[RESULT_CACHE]
    trail = app.get(AUDIT)
    sink = trail.sink if trail is not None else None
    stats = getattr(sink, "stats", None)
    body = {
        **worker_identity(),
        "loop": ({"stall_warn_ms": dog.warn_ms, "stalls": dog.stalls, "worst_stall_ms": round(dog.worst_ms, 1)}
                 if dog is not None else None),
        "result_cache": cache.stats() if cache is not None else None,
        "audit": ({"backend": trail.setup.backend, "writer": trail.setup.writer if trail.setup.backend == "sqlite" else None,
                   "open": sink is not None,
                   "commits": dataclasses.asdict(stats) if stats is not None else None,
                   # inline writer: the commit spacing in force and the loop's CPU share it follows
                   "commit_spacing_ms": (round(sink.commit_spacing_s * 1000, 3)
                                         if hasattr(sink, "commit_spacing_s") else None),
                   "loop_cpu_share": (round(share, 3) if (share := getattr(sink, "loop_cpu_share", None)) is not None
                                      else None),
                   "commit_timeout_ms": round(trail.deadlines.limit_s * 1000),
                   "waiting_for_commit": trail.deadlines.waiting,
                   "commit_timeouts": trail.deadlines.expired_total}
                  if trail is not None else None),
        "latency": app[LATENCY].snapshot(),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


@requires_scope(ADMIN)
async def latency_reset(request: web.Request) -> web.Response:
    body = {**worker_identity(), "latency": request.app[LATENCY].take()}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/admin/worker", worker_info)
    app.router.add_post("/v1/admin/worker/latency/reset", latency_reset)


if setup not in FEATURES:
    FEATURES.append(setup)
