"""The audit trail's own latency floor: appends to one SQLite chain from several processes, no HTTP.

    python load/bench_audit_latency.py [--processes 2] [--rate 1000] [--seconds 10]
        [--interval-us 1000] [--inline-commit-max 16] [--fsync aio|blocking] [--dir var] [--json FILE]

An answer waits for its audit record's commit (issue 6), so whatever the trail takes is part of
every answer's latency. This isolates that part. ``--processes`` processes stand for the
gateway's workers (``serve --workers N``). Each runs the inline writer the gateway uses with as
many workers as CPUs, on one chain in a scratch SQLite file under ``--dir`` (removed after). Each
process appends verify answers of one licence, open loop, Poisson at ``--rate`` per second, for
``--seconds``, and checkpoints the WAL every half second, as the gateway's maintenance task does.

It prints:

* the append latency (queued to committed, fsynced and sealed), p50 / p90 / p99 / p99.9 / max;
* the CPU per append of the writing processes, from the first append on (start-up excluded);
* the commits and records per commit.

At the end it verifies the chain and checks that the chain holds exactly the appends made.
Compare ``--interval-us`` (the ``audit_commit_interval_us`` setting) and
``--inline-commit-max`` (``audit_inline_commit_max``) and ``--fsync`` (``audit_async_fsync``: the WAL's
fdatasync through Linux AIO, or blocking, on the loop or the commit thread) values: a shorter spacing lowers the
latency and raises the CPU per append, because every commit has a fixed cost. The spacing is fixed
here: the load-following spacing of the gateway (``audit_commit_interval_busy_us``) widens only while a
worker's loop is busy with requests, and these processes do nothing but append (compare it with
``load/bench_ab.py``, which runs whole gateways).

Session 8 on this 2-core VM, 2 processes at 1,000/s each, default settings: p50 3.7-4.5 ms,
p99 6.7-11 ms (load/README.md). The keys are generated for the run and thrown away.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import Settings  # noqa: E402
from load.schedule import poisson_offsets  # noqa: E402
from load.stats import _clamp_us, latency_summary_ms, new_histogram  # noqa: E402

#: the gateway's own defaults (audit_commit_interval_us, audit_inline_commit_max): what is compared against
_DEFAULTS = Settings()

#: a synthetic licence identifier (GB/T 36904 shape; no real person or company)
LICENCE_ID = "1.2.156.3005.2.11100000000013338W.330500.LIC00000001.001.X"
WAL_CHECKPOINT_S = 0.5


def _process(path: str, keys: tuple[bytes, bytes], rate: float, seconds: float, interval_s: float,
             inline_max: int, seed: int, out: Any, async_fsync: bool = True) -> None:
    """One writing process: open the sink, append open loop, send back the histogram and counts."""
    import gateway.app  # noqa: F401  (imports in the gateway's order: avoids a circular import)
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    from gateway.audit import CheckpointSigner, GroupCommitConfig
    from gateway.audit.sqlite_inline import SqliteInlineAuditSink
    from gateway.audit.verifications import VerificationGroup
    from gateway.receipts import ReceiptSigner

    async def run() -> dict[str, Any]:
        sink = await SqliteInlineAuditSink.open(
            path, signer=CheckpointSigner(load_der_private_key(keys[0], None), "bench-audit"),  # type: ignore[arg-type]
            sealer=ReceiptSigner(load_der_private_key(keys[1], None), "bench-receipt", "bench"),  # type: ignore[arg-type]
            config=GroupCommitConfig(commit_interval=interval_s, inline_commit_max=inline_max,
                                     async_fsync=async_fsync))
        hist = new_histogram()
        appended = 0

        async def one(i: int, due: float) -> None:
            nonlocal appended
            group = VerificationGroup("2026-12-03T13:00:00.123456Z", 1796300000, f"bench-{seed}-{i}", "bench", "ZGln",
                                      False, (("330500", LICENCE_ID, "valid", (), "ab" * 32, (LICENCE_ID,)),))
            await sink.append_verifications(group)
            hist.record_value(_clamp_us((time.perf_counter() - due) * 1e6))
            appended += 1

        async def checkpoints() -> None:
            while True:
                await asyncio.sleep(WAL_CHECKPOINT_S)
                await sink.checkpoint_wal()

        keeper = asyncio.ensure_future(checkpoints())
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        tasks = []
        for offset in poisson_offsets(rate, seconds, random.Random(seed)):
            due = start + offset
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(one(len(tasks), due)))
        await asyncio.gather(*tasks)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        keeper.cancel()
        stats = sink.stats
        await sink.close()
        return {"hist": hist.encode().decode("ascii"), "appended": appended, "scheduled": len(tasks),
                "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
                "commits": stats.transactions, "records": stats.records, "failed_batches": stats.failed_batches}

    try:
        import uvloop   # the gateway's event loop where installed
        result = uvloop.run(run())
    except ImportError:
        result = asyncio.run(run())
    out.put(result)


def probe(folder: Path, processes: int, rate: float, seconds: float, interval_s: float, inline_max: int,
          progress: Any = sys.stderr, async_fsync: bool = _DEFAULTS.audit_async_fsync) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from hdrh.histogram import HdrHistogram

    import gateway.app  # noqa: F401
    from gateway.audit import verify_chain
    from gateway.audit.sqlite_inline import SqliteInlineAuditSink

    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-audit-latency-", dir=folder))
    path = str(work / "audit.sqlite3")
    checkpoint_key = Ed25519PrivateKey.generate()
    der = (lambda k: k.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()))
    keys = (der(checkpoint_key), der(ec.generate_private_key(ec.SECP256R1())))

    async def create() -> None:   # the schema, once, before the writers race to make it
        await (await SqliteInlineAuditSink.open(path)).close()

    async def check() -> tuple[bool, int, str]:
        store = await SqliteInlineAuditSink.open(path)
        try:
            report = await verify_chain(store, checkpoint_key.public_key())
            return report.ok, (await store.state()).head_seq, report.problem or ""
        finally:
            await store.close()

    try:
        asyncio.run(create())
        if progress is not None:
            print(f"[audit] {processes} processes x {rate:g} appends/s for {seconds:g} s "
                  f"(commit spacing {interval_s * 1e6:.0f} us, inline commit max {inline_max}, "
                  f"fsync {'aio' if async_fsync else 'blocking'})", file=progress,
                  flush=True)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_process, args=(path, keys, rate, seconds, interval_s, inline_max, k, out, async_fsync))
                 for k in range(processes)]
        for p in procs:
            p.start()
        results = [out.get(timeout=seconds + 120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        chain_ok, head, problem = asyncio.run(check())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = new_histogram()
    for r in results:
        total.add(HdrHistogram.decode(r["hist"]))
    appended = sum(r["appended"] for r in results)
    commits = sum(r["commits"] for r in results)
    return {
        "processes": processes, "rate_per_process": rate, "seconds": seconds, "commit_interval_us": interval_s * 1e6,
        "inline_commit_max": inline_max, "fsync": "aio" if async_fsync else "blocking", "scheduled": sum(r["scheduled"] for r in results), "appended": appended,
        "failed_batches": sum(r["failed_batches"] for r in results), "latency_ms": latency_summary_ms(total),
        "cpu_us_per_append": round(1e6 * sum(r["cpu_s"] for r in results) / max(appended, 1), 1),
        "commits": commits, "records_per_commit": round(sum(r["records"] for r in results) / max(commits, 1), 2),
        "chain_ok": chain_ok, "chain_head": head, "chain_problem": problem,
    }


def render(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    chain = ("chain verified, holds every append" if r["chain_ok"] and r["chain_head"] == r["appended"]
             else f"CHAIN PROBLEM: ok={r['chain_ok']} head={r['chain_head']} appended={r['appended']} {r['chain_problem']}")
    return (f"bench_audit_latency: {r['processes']} processes x {r['rate_per_process']:g}/s for {r['seconds']:g} s, "
            f"commit spacing {r['commit_interval_us']:.0f} us, inline commit max {r['inline_commit_max']}, "
            f"fsync {r.get('fsync', 'aio')}\n"
            f"append latency: p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  p99 {lat['p99']:.2f} ms  "
            f"p99.9 {lat['p99_9']:.2f} ms  max {lat['max']:.1f} ms  ({r['appended']} of {r['scheduled']} appended, "
            f"{r['failed_batches']} failed batches)\n"
            f"CPU {r['cpu_us_per_append']:.0f} us per append; {r['commits']} commits, "
            f"{r['records_per_commit']:.1f} records per commit; {chain}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=2, help="writing processes on one chain (1..16)")
    ap.add_argument("--rate", type=float, default=1000.0, help="appends per second per process (1..20000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long each process appends (1..600)")
    ap.add_argument("--interval-us", type=int, default=_DEFAULTS.audit_commit_interval_us, help="least time between two commits of a process")
    ap.add_argument("--inline-commit-max", type=int, default=_DEFAULTS.audit_inline_commit_max,
                    help="batches up to this many records are fsynced on the event loop, larger ones on a thread")
    ap.add_argument("--fsync", choices=("aio", "blocking"), default="aio" if _DEFAULTS.audit_async_fsync else "blocking",
                    help="the WAL's fdatasync: Linux AIO (audit_async_fsync, the default) or blocking")
    ap.add_argument("--dir", default=str(ROOT / "var"), help="folder for the scratch database (the audit file's disk)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    if not (1 <= args.processes <= 16 and 1 <= args.rate <= 20_000 and 1 <= args.seconds <= 600
            and args.interval_us >= 0 and args.inline_commit_max >= 0):
        ap.error("--processes 1..16, --rate 1..20000, --seconds 1..600, --interval-us and --inline-commit-max >= 0")
    try:
        r = probe(Path(args.dir), args.processes, args.rate, args.seconds, args.interval_us / 1e6,
                  args.inline_commit_max, async_fsync=args.fsync == "aio")
    except OSError as exc:
        print(f"无法在 {args.dir} 运行审计延迟测试 / cannot run the audit latency bench in {args.dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    print(render(r))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    return 0 if r["chain_ok"] and r["chain_head"] == r["appended"] == r["scheduled"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
