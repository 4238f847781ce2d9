"""What the durable audit trail costs: throughput with the audit on vs off, in one run.

    python load/bench_audit_overhead.py [--reps 3] [--step 5] [--concurrency 32,128] [--workers 1]
                                        [--backend sqlite|postgres] [--pg DSN] [--json FILE]

Starts two demo gateways side by side on loopback (``python -m gateway serve --demo``):

* **audit on**: the configured backend (default SQLite in a temporary file, WAL,
  ``synchronous=FULL``; ``--backend postgres`` uses ``--pg`` / GATEWAY_TEST_PG_DSN /
  ``scripts/pg.sh start``): every answer waits for its record's commit (group commit) and
  carries a batch-signed receipt (one ES256 signature per committed batch, Merkle proof per answer);
* **audit off**: ``GATEWAY_AUDIT_BACKEND=off`` (demo-only baseline: no record, no receipt).

Both get the same corpus (ES256 licences of the demo TEST framework: single verifies, and
batches of 10) and the same closed-loop load through ``load.runner.run_max``: one step of
``--step`` seconds at each ``--concurrency`` (default 32 and 128 requests in flight), each
side's throughput being its best step -- its maximum, found the same way for both. A durable
audit adds a commit wait to every answer, so at 32 in flight the audited gateway is bound by
latency (Little's law), not by its CPU; the higher step shows what it can carry. Measured
alternately on / off ``--reps`` times (so drift on the shared machine hits both). Printed: the
median throughput of each, the ratio on/off (target >= 0.85), the concurrency of the peaks, the
ratio at the lowest step alone, and the server CPU per request (every process of the gateway,
the audit writer process included), also split into the gateway's own processes and the audit
writer process: with one worker the worker runs out of CPU first, so its share is what the ratio
follows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from load.compare import free_port, spawn_server, stop_peer, wait_healthy  # noqa: E402
from load.runner import CLIENTS, run_loop, MaxConfig, run_max  # noqa: E402
from load.scenarios import RequestPicker, get_scenario, load_corpus  # noqa: E402
from load.procstat import AUDIT_WRITER, GATEWAY, cpu_seconds_by_role, process_tree  # noqa: E402
from load.tokens import oauth_token  # noqa: E402

TARGET = 0.85
BATCH_SIZE = 10


def start_gateway(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gateway", "serve", "--demo", "--workers", str(workers), "--port", str(port)]
    full = {**os.environ, "PYTHONPATH": str(ROOT), "GATEWAY_LOG_LEVEL": "WARNING", **env}
    return spawn_server(cmd, cwd=ROOT, env=full, start_new_session=True)


def make_corpora(work: Path) -> tuple[Path, Path]:
    from gateway.config import load_settings
    from gateway.corpus import CorpusPlan, demo_builder, parse_mix, write_jsonl

    b = demo_builder(load_settings(demo=True), datetime.now(timezone.utc))
    single = b.build(CorpusPlan(count=2000, mix=parse_mix("valid=85,expired=8,tampered=7"), algorithms=("ES256",),
                                checks=0))
    batch = b.build(CorpusPlan(count=2000, mix={"valid": 1}, algorithms=("ES256",), batches=200,
                               batch_size=BATCH_SIZE, checks=0))
    paths = work / "single.jsonl", work / "batch.jsonl"
    write_jsonl(paths[0], single)
    write_jsonl(paths[1], batch)
    return paths


def closed(url: str, corpus: Any, scenario: str, seconds: float, concurrency: Sequence[int], token: Any,
           pids_of: Any, client: str = "raw") -> dict[str, Any]:
    sc = get_scenario(scenario)
    cfg = MaxConfig(target=url, scenario=sc, step_duration_s=seconds, concurrency_steps=tuple(concurrency),
                    timeout_s=10.0, stop_gain=-1.0, client=client)
    pids = pids_of()
    c0 = cpu_seconds_by_role(pids)
    result = run_loop(run_max(cfg, RequestPicker.build(sc, corpus, 1), token, progress=None))
    c1 = cpu_seconds_by_role(pids)
    used = sum(c1.values()) - sum(c0.values())
    answered = sum(step["counts"]["responses"] for step in result["steps"])
    by_role = {role: round(1e6 * (c1[role] - c0[role]) / answered, 1) if answered else None for role in c1}
    return {"rps": result["peak"]["throughput_rps"], "at_concurrency": result["peak"]["concurrency"],
            "first_step_rps": result["steps"][0]["ok_throughput_rps"],
            "p50_ms": result["peak"]["latency_ms"]["p50"], "p99_ms": result["peak"]["latency_ms"]["p99"],
            "errors": sum(step["counts"]["errors"] for step in result["steps"]),
            "server_cpu_us_per_request": round(1e6 * used / answered, 1) if answered else None,
            "server_cpu_us_per_request_by_process": by_role}


def pg_dsn(given: str | None) -> str:
    dsn = given or os.environ.get("GATEWAY_TEST_PG_DSN")
    if dsn:
        return dsn
    out = subprocess.run([str(ROOT / "scripts" / "pg.sh"), "start"], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--step", type=float, default=5.0, help="seconds of closed-loop load per measurement")
    p.add_argument("--concurrency", default="32,128",
                   help="closed-loop steps (requests in flight); each side's throughput is its best step")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--backend", choices=("sqlite", "postgres", "memory"), default="sqlite",
                   help="memory: diagnostic, separates the store cost from the rest of the audit path")
    p.add_argument("--pg", help="PostgreSQL DSN (--backend postgres)")
    p.add_argument("--cache-off", action="store_true",
                   help="both gateways without the verification result cache (every verify a first one)")
    p.add_argument("--http-client", choices=CLIENTS, default="raw",
                   help="the load generator's HTTP client (default raw, load/rawhttp.py)")
    p.add_argument("--json", help="also write the figures here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ladder = tuple(int(c) for c in str(args.concurrency).split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    single_path, batch_path = make_corpora(work)
    corpora = {"verify": load_corpus(single_path), "batch": load_corpus(batch_path)}
    common = {"GATEWAY_VERIFY_CACHE_ENTRIES": "0"} if args.cache_off else {}
    on_env = {**common, "GATEWAY_AUDIT_BACKEND": args.backend, "GATEWAY_AUDIT_PATH": str(work / "audit.sqlite3")}
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    if args.backend == "postgres":
        on_env.update(GATEWAY_AUDIT_DSN=pg_dsn(args.pg), GATEWAY_AUDIT_PG_SCHEMA=schema)
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {"on": {"verify": [], "batch": []},
                                                           "off": {"verify": [], "batch": []}}
    try:
        for name, env in (("on", on_env), ("off", {**common, "GATEWAY_AUDIT_BACKEND": "off"})):
            port = free_port()
            proc = start_gateway(port, args.workers, env)
            servers[name] = (f"http://127.0.0.1:{port}", proc)
        tokens = {}
        for name, (url, proc) in servers.items():
            asyncio.run(wait_healthy(url, proc, timeout_s=90))
            tokens[name] = oauth_token(url)
            for scenario in ("verify", "batch"):  # warm-up: imports, result cache, connections
                closed(url, corpora[scenario], scenario, 1.0, (8,), tokens[name], lambda: process_tree(proc.pid))
        for rep in range(args.reps):
            for scenario in ("verify", "batch"):
                order = ("on", "off") if rep % 2 == 0 else ("off", "on")
                for name in order:
                    url, proc = servers[name]
                    r = closed(url, corpora[scenario], scenario, args.step, ladder, tokens[name],
                               lambda: process_tree(proc.pid), args.http_client)
                    results[name][scenario].append(r)
                    print(f"rep {rep + 1} {scenario:6} audit {name:3}: {r}", flush=True)
    finally:
        for _, proc in servers.values():
            stop_peer(proc)
        if args.backend == "postgres":
            drop = f"DROP SCHEMA IF EXISTS {schema} CASCADE"

            async def run_drop() -> None:
                import asyncpg

                conn = await asyncpg.connect(on_env["GATEWAY_AUDIT_DSN"])
                try:
                    await conn.execute(drop)
                finally:
                    await conn.close()

            asyncio.run(run_drop())
    summary: dict[str, Any] = {"backend": args.backend, "cache": not args.cache_off, "workers": args.workers,
                               "http_client": args.http_client,
                               "concurrency": args.concurrency,
                               "step_s": args.step, "reps": args.reps, "target": TARGET}
    ok = True
    for scenario in ("verify", "batch"):
        on = statistics.median(r["rps"] for r in results["on"][scenario])
        off = statistics.median(r["rps"] for r in results["off"][scenario])
        ratio = on / off if off else 0.0
        ok &= ratio >= TARGET
        # each repetition measured on and off back to back: their ratio, per repetition (the
        # machine's drift between repetitions cancels out of each; the target is judged on the
        # ratio of the medians above, as bench_gateway does)
        paired = [a["rps"] / b["rps"] for a, b in zip(results["on"][scenario], results["off"][scenario]) if b["rps"]]
        first = (statistics.median(r["first_step_rps"] for r in results["on"][scenario])
                 / (statistics.median(r["first_step_rps"] for r in results["off"][scenario]) or 1))
        at = {n: sorted({r["at_concurrency"] for r in results[n][scenario]}) for n in ("on", "off")}
        cpu_on = round(statistics.median(r["server_cpu_us_per_request"] or 0 for r in results["on"][scenario]), 1)
        cpu_off = round(statistics.median(r["server_cpu_us_per_request"] or 0 for r in results["off"][scenario]), 1)
        # where the audit's CPU goes: the gateway's own processes (the worker builds each answer's
        # records and waits for them) and, with the writer process, the chaining, inserts and commit
        split = {side: {role: round(statistics.median(r["server_cpu_us_per_request_by_process"][role] or 0
                                                      for r in results[side][scenario]), 1)
                        for role in (GATEWAY, AUDIT_WRITER)}
                 for side in ("on", "off")}
        summary[scenario] = {"on_rps": round(on, 1), "off_rps": round(off, 1), "ratio": round(ratio, 3),
                             "paired_ratios": [round(r, 3) for r in paired],
                             "peak_at_concurrency": at, f"ratio_at_{ladder[0]}_in_flight": round(first, 3),
                             "server_cpu_us_per_request_on": cpu_on, "server_cpu_us_per_request_off": cpu_off,
                             "server_cpu_us_per_request_by_process": split,
                             "errors": sum(r["errors"] for rs in results.values() for r in rs[scenario])}
        unit = f"requests/s (batches of {BATCH_SIZE})" if scenario == "batch" else "requests/s"
        print(f"{scenario:6}: audit on {on:8.1f} vs off {off:8.1f} {unit}; ratio {ratio:.3f} "
              f"(target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'}; paired by repetition "
              f"{', '.join(f'{r:.2f}' for r in paired)}); peaks at concurrency on {at['on']} "
              f"off {at['off']}; ratio at {ladder[0]} in flight {first:.3f}; server CPU/request "
              f"{cpu_on} us on vs {cpu_off} us off (gateway processes {split['on'][GATEWAY]} vs "
              f"{split['off'][GATEWAY]} us, audit writer process {split['on'][AUDIT_WRITER]} us)")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({"summary": summary, "runs": results}, option=orjson.OPT_INDENT_2))
    return 0 if ok else 3


if __name__ == "__main__":
    raise SystemExit(main())
