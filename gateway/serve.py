"""Serving processes: one worker, or N pre-forked workers sharing a port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
import time
from typing import Any


#: aiohttp's connection settings, as ``web.run_app`` set them before the worker ran its own runner:
#: an idle connection -- and one whose request line and headers are not complete -- is closed after
#: ``KEEPALIVE_TIMEOUT_S``; on SIGTERM / SIGINT the requests in flight get ``SHUTDOWN_TIMEOUT_S`` to
#: finish before they are cancelled and the cleanup contexts (the audit trail's flush) run
KEEPALIVE_TIMEOUT_S = 75.0
SHUTDOWN_TIMEOUT_S = 60.0
#: a worker's exit status when it cannot listen on the port (in use, not permitted, no such address)
EXIT_CANNOT_LISTEN = 3
#: the process name of worker i of ``serve --workers N`` (the supervisor's log lines give it as ``worker``;
#: a worker started again keeps its index)
WORKER_NAME_PREFIX = "gateway-worker-"


def worker_identity() -> dict[str, Any]:
    """Which process answers, as the admin endpoints name it: ``pid``, and ``worker_index`` -- i of
    ``serve --workers N`` (``gateway-worker-<i>`` in the supervisor's log lines), None in a gateway that
    serves in one process."""
    import multiprocessing
    import os

    name = multiprocessing.current_process().name
    index = name[len(WORKER_NAME_PREFIX):] if name.startswith(WORKER_NAME_PREFIX) else ""
    return {"pid": os.getpid(), "worker_index": int(index) if index.isascii() and index.isdigit() else None}


def run_worker(settings, reuse_port: bool, ready=None, limits=None) -> None:
    """One serving process: its own event loop, app and snapshots; SO_REUSEPORT shares the port.
    ``ready`` (a multiprocessing Event, optional) is set once the worker listens on the port.
    ``limits`` (:class:`gateway.auth.shared.WorkerLimits`, ``serve --workers N``): the partners'
    rate-limit buckets and the client-assertion replay cache the workers share; None (one worker):
    this process's own."""
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
    services = build_services(settings)
    if limits is not None:  # attached again by a restarted worker: the buckets and seen assertions live on
        limits.install(services)
    app = create_app(services)
    # after every start-up resource (cleanup contexts run first)
    app.on_startup.append(functools.partial(freeze_heap, gen0_threshold=settings.gc_gen0_threshold))
    code = asyncio.run(serve_app(app, settings, reuse_port, ready))
    if code:
        raise SystemExit(code)


async def serve_app(app, settings, reuse_port: bool, ready=None) -> int:
    """Run ``app`` on the settings' host and port until SIGTERM or SIGINT; 0, or
    :data:`EXIT_CANNOT_LISTEN`. What ``web.run_app`` did, with three differences: the worker says it
    serves only once it listens (``run_app`` ran the start-up hooks, where the announcement was,
    before binding: a port in use logged "serving on" and then a plain-text traceback, outside the
    JSON log); a port it cannot listen on is one JSON ERROR line naming the address and the cause;
    and a second signal while the worker drains (a terminal's Ctrl-C reaches every process of the
    group and the parent forwards it too) does not interrupt the drain and the audit flush."""
    import logging
    import os
    import signal

    from aiohttp import web

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT_S,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    try:
        await runner.setup()   # cleanup contexts and start-up hooks: resources open once
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
        try:
            await site.start()
        except OSError as exc:
            logging.getLogger("gateway.serve").error(
                "worker %d cannot listen on %s:%d: %s", os.getpid(), settings.host, settings.port,
                os.strerror(exc.errno) if exc.errno else exc, extra={"pid": os.getpid(), "errno": exc.errno})
            return EXIT_CANNOT_LISTEN
        await announce(app, settings=settings)
        if ready is not None:
            ready.set()
        await stop.wait()
        return 0
    finally:
        await runner.cleanup()   # stop listening, drain (SHUTDOWN_TIMEOUT_S), then the cleanup contexts
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def announce(app: object = None, *, settings) -> None:  # noqa: ARG001
    """One INFO line per serving process once it listens: which process, where."""
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


#: a worker that exits while the gateway serves is logged (ERROR) and started again, at most
#: ``RESTART_LIMIT`` times within ``RESTART_WINDOW_S``; past that -- a worker that cannot stay up --
#: and for a worker that exits before it listened (a port in use, a bad trust list), the parent
#: stops the others and exits with that worker's status, for the service manager to see
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0


def run_workers(settings, workers: int) -> int:
    """Pre-fork model: N worker processes bound to one port with SO_REUSEPORT (see :func:`supervise`)."""
    import multiprocessing as mp

    from .bootstrap import prepare_shared

    if cannot_listen(settings.host, settings.port) or (
            settings.metrics_port and cannot_listen(settings.metrics_host, settings.metrics_port)):
        return EXIT_CANNOT_LISTEN
    prepare_shared(settings)  # e.g. the demo TEST framework, made once before the workers load it
    ctx = mp.get_context("spawn")
    from .auth.shared import worker_limits

    # metrics_port: one prometheus_client multiprocess directory for every process, so that a scrape of
    # any worker sums them all (gateway/metrics.py); made empty before the workers start, removed at the end
    metrics = None
    if settings.metrics_port:
        from .metrics import Supervision

        metrics = Supervision(settings)
    # one bucket per partner and one replay cache for all the workers (else each worker allowed the
    # partner's whole rate, and took each client assertion once); the segment is removed on the way out
    try:
        with worker_limits(settings.var_dir, workers, ctx) as limits:
            def start(i: int):
                ready = ctx.Event()
                proc = ctx.Process(target=run_worker, args=(settings, True, ready, limits),
                                   name=f"{WORKER_NAME_PREFIX}{i}")
                proc.start()
                return proc, ready

            return supervise(start, workers, on_end=metrics.worker_ended if metrics is not None else None)
    finally:
        if metrics is not None:
            metrics.close()


def cannot_listen(host: str, port: int) -> bool:
    """True, with one ERROR log line saying why (in Chinese and English), when ``host:port`` cannot be
    listened on (:func:`port_in_use`)."""
    import logging
    import os

    busy = port_in_use(host, port)
    if busy is None:
        return False
    logging.getLogger("gateway.serve").error(
        "无法监听 / cannot listen on %s:%d: %s (is another gateway or program serving there? 是否已有网关或其他程序在该端口运行？)",
        host, port, os.strerror(busy.errno) if busy.errno else busy, extra={"errno": busy.errno})
    return True


def port_in_use(host: str, port: int) -> OSError | None:
    """The error of binding ``host:port`` without SO_REUSEPORT, or None when it is free. The
    workers bind with SO_REUSEPORT, which the kernel grants to every process of the same user that
    asks for it: without this check a second ``serve --workers N`` on a port (a forgotten instance,
    an old one still draining, another configuration) shared it silently and the kernel split the
    partners' connections between the two gateways. SO_REUSEADDR as aiohttp sets it, so a port
    whose old connections are in TIME_WAIT is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return exc
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                return exc
    return None


def _status(exitcode: int | None) -> str:
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def supervise(start, workers: int, *, restart_limit: int = RESTART_LIMIT,
              restart_window_s: float = RESTART_WINDOW_S, on_end=None) -> int:
    """Start ``workers`` processes with ``start(i) -> (process, ready_event)`` and watch them until
    they have all ended: SIGTERM / SIGINT are forwarded (each worker drains its requests and flushes
    its audit trail), a worker that ends on its own is logged and replaced (see
    :data:`RESTART_LIMIT`). Returns 0, or the first failing worker's status (1 for a signal).
    ``on_end(pid, restarted)``, optional: called for every worker that has ended (the metrics'
    ``mark_process_dead`` and restart count)."""
    import collections
    import logging
    import signal
    from multiprocessing.connection import wait

    log = logging.getLogger("gateway.serve")
    slots = [start(i) for i in range(workers)]
    stopping = False
    code = 0

    def stop_all() -> None:
        for proc, _ in slots:
            if proc.is_alive():
                proc.terminate()

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True
        stop_all()

    def ended(pid: int, restarted: bool) -> None:
        if on_end is not None:
            try:
                on_end(pid, restarted)
            except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop the supervisor
                log.warning("after worker %d ended: %s", pid, exc)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    restarts: collections.deque[float] = collections.deque()
    handled: set[Any] = set()  # the processes whose end has been dealt with (held: no id reused)
    try:
        while True:
            # every process that has ended and not been dealt with yet. (Not "the ones that were running
            # before the wait": a worker's sentinel is ready as its descriptors close, a moment before the
            # kernel reports its exit status; a worker found ended a turn later was then skipped for good,
            # and its failure never stopped the gateway -- a test hung on it in CI.)
            for i, (proc, ready) in enumerate(slots):
                if proc in handled or proc.exitcode is None:
                    continue
                handled.add(proc)
                proc.join()
                status = proc.exitcode
                failed = status not in (0, -signal.SIGTERM, -signal.SIGINT)
                if stopping:
                    ended(proc.pid, False)
                    if failed and code == 0:
                        code = status if status and status > 0 else 1
                    continue
                fields = {"pid": proc.pid, "worker": proc.name, "exit_code": status}
                now = time.monotonic()
                while restarts and restarts[0] <= now - restart_window_s:
                    restarts.popleft()
                if not ready.is_set() or len(restarts) >= restart_limit:
                    why = ("before it listened" if not ready.is_set()
                           else f"after {restart_limit} restarts within {restart_window_s:.0f} s")
                    log.error("worker %d (%s) ended %s (%s): stopping the gateway", proc.pid, proc.name, why,
                              _status(status), extra=fields)
                    code = code or (status if status and status > 0 else 1)
                    stopping = True
                    stop_all()
                    ended(proc.pid, False)
                    continue
                restarts.append(now)
                ended(proc.pid, True)
                slots[i] = start(i)
                log.error("worker %d (%s) ended while serving (%s): started again as worker %d", proc.pid,
                          proc.name, _status(status), slots[i][0].pid, extra={**fields, "new_pid": slots[i][0].pid})
            running = [proc for proc, _ in slots if proc.exitcode is None]
            if running:
                wait([proc.sentinel for proc in running], timeout=1.0)
            elif all(proc in handled for proc, _ in slots):
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
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
