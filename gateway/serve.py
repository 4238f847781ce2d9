"""Serving processes: one worker, or N pre-forked workers sharing a port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio


def run_worker(settings, reuse_port: bool) -> None:
    """One serving process: its own event loop, app and snapshots; SO_REUSEPORT shares the port."""
    from aiohttp import web

    from .app import create_app
    from .bootstrap import build_services

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    app = create_app(build_services(settings))
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, reuse_port=reuse_port)


def run_workers(settings, workers: int) -> int:
    """Pre-fork model: N worker processes bound to one port with SO_REUSEPORT; the parent
    restarts none of them (a crashed worker is an incident to see), forwards SIGTERM/SIGINT and
    exits with the first non-zero worker status."""
    import multiprocessing as mp
    import signal

    from .bootstrap import prepare_shared

    prepare_shared(settings)  # e.g. the demo TEST framework, made once before the workers load it
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(settings, True), name=f"gateway-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()

    def stop(signum, frame):  # noqa: ARG001
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    for p in procs:
        p.join()
        if code == 0 and p.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT):
            code = p.exitcode if p.exitcode and p.exitcode > 0 else 1
    return code
