"""Serving processes: one worker, or N pre-forked workers sharing a port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
import time


def run_worker(settings, reuse_port: bool) -> None:
    """One serving process: its own event loop, app and snapshots; SO_REUSEPORT shares the port."""
    from aiohttp import web

    from .app import create_app
    from .bootstrap import build_services
    from .logging_setup import configure_logging

    # a spawned worker starts with Python's bare logging: without this its lines were neither JSON
    # nor passed through the personal-data filter, and INFO lines were lost
    configure_logging(settings.log_level)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    app = create_app(build_services(settings))
    # after every start-up resource (cleanup contexts run first)
    app.on_startup.append(functools.partial(freeze_heap, gen0_threshold=settings.gc_gen0_threshold))
    app.on_startup.append(functools.partial(announce, settings=settings))
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, reuse_port=reuse_port)


async def announce(app: object = None, *, settings) -> None:  # noqa: ARG001 - on_startup
    """One INFO line per serving process once it is ready: which process, where."""
    import logging
    import os

    logging.getLogger("gateway.serve").info("worker %d serving on http://%s:%d", os.getpid(), settings.host,
                                            settings.port, extra={"pid": os.getpid()})


async def freeze_heap(app: object = None, *, gen0_threshold: int = 0) -> None:  # noqa: ARG001 - on_startup
    """Collect once, then move everything alive after start-up (trust framework, specs, item
    catalogue, pinyin tables: ~250,000 objects) out of the garbage collector's reach
    (``gc.freeze``). A full collection walked that heap in ~70-110 ms, stopping the event loop
    each time the collector chose to -- the p99 spikes of the open-loop benchmark. Objects made
    later are collected as usual.

    ``gen0_threshold`` (setting ``gc_gen0_threshold``; 0 keeps Python's 700): the net count of
    new container objects that starts a young-generation collection. Under load a worker holds a
    few thousand young objects at any moment -- every request in flight, and with the audit on,
    every answer waiting for its commit -- so at 700 the collector ran ~80 times a second,
    walking the same live objects each time and promoting them (then the older generations ran
    too). Nearly all of them die by reference counting; only cyclic garbage makes the count
    grow for good, so a higher threshold collects as much garbage, far less often."""
    import gc

    gc.collect()
    gc.freeze()
    if gen0_threshold > 0:
        _, older1, older2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, older1, older2)


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


def with_demo_regions(settings):
    """Demo mode: start the simulated issuing regions (gateway/demo_regions.py) in their own
    process and point the gateway's status fetcher and upstream clients at it. Returns the new
    settings and the process (None outside demo mode or when the operator set both URLs)."""
    if not settings.demo or (settings.status_url_template and settings.upstream_base_url):
        return settings, None
    import multiprocessing as mp

    from . import demo_regions
    from .bootstrap import prepare_shared

    port = settings.demo_regions_port or settings.port + 1
    settings = dataclasses.replace(settings, demo_regions_port=port)
    status_url, upstream_url = demo_regions.urls(settings)
    settings = dataclasses.replace(settings, status_url_template=settings.status_url_template or status_url,
                                   upstream_base_url=settings.upstream_base_url or upstream_url)
    prepare_shared(settings)  # the TEST framework exists before either process loads it
    proc = mp.get_context("spawn").Process(target=demo_regions.run, args=(settings,), name="demo-regions",
                                           daemon=True)
    proc.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise SystemExit(f"demo regions process failed to start on port {port} (exit {proc.exitcode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        raise SystemExit(f"demo regions process did not open port {port} within 30 s")
    print(f"  simulated issuing regions (TEST): http://127.0.0.1:{port}/  "
          f"(GET /issue?region=330500&state=revoked)", flush=True)
    return settings, proc
