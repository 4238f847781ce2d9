"""Gateway vs naive peer, in one run on this machine: the figures issue 7 asks for.

    python load/bench_gateway.py [--reps 3] [--step 3] [--json FILE] [--soak 600]

Starts, as loopback subprocesses, the naive peer (``python -m load peer``: one process,
``jwt.decode`` only) and the demo gateway (``python -m gateway serve --demo --workers 2``:
auth, status check, normalisation and whatever else the demo configuration runs on every
verify), then prints medians over ``--reps`` repetitions of:

1. single-licence verify throughput, closed-loop max, ES256 licences: gateway vs peer, ratio
   (target >= 1.3);
2. p99 latency at half the gateway's median max throughput, open loop, Poisson arrivals
   (target <= 10 ms); each repetition is followed by the same run with constant arrivals (the
   same rate, evenly spaced: what is left when the arrivals' own bursts are taken away; shown
   beside the target, which is judged on the Poisson runs);
3. batch verify throughput in licences/s vs workers x the raw per-core ES256 verify rate
   measured here (target >= 0.8);
4. the load generator's own CPU (% of one core) and each server's CPU per request (µs,
   from /proc: utime + stime of the server processes over the requests answered), which
   stays meaningful when other work shares the 2 cores;
5. the same single and batch figures for variants (``--variants``): ``cache_off`` (the
   verification result cache off, ``GATEWAY_VERIFY_CACHE_ENTRIES=0``: the cost of a first
   verification) and ``audit_off`` (``GATEWAY_AUDIT_BACKEND=off``, diagnostic only: what the
   durable audit trail costs; the targets are judged with the audit on);
6. the machine's pause penalty (:mod:`load.bench_wake`: what an ES256 signature resumed after a
   2-ms pause costs against back to back) beside the server CPU per request at half max and at
   max: on a machine whose caches are emptied by other work within milliseconds, a request at
   half load costs more than one at full load, and the p99 of item 2 is partly the machine's.

``--soak S`` then runs S seconds (at most 600) open loop at half the max and reports errors
and the resident memory growth of the gateway workers (target 0 errors, <= 10 %). The soak is
not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from load.compare import (free_port, server_log_size, server_log_summary, spawn_server, start_peer,  # noqa: E402
                          stop_peer, wait_healthy)
from load.runner import CLIENTS, run_loop, MaxConfig, OpenLoopConfig, run_max, run_open_loop  # noqa: E402
from load.scenarios import RequestPicker, get_scenario, load_corpus  # noqa: E402
from load.procstat import cpu_seconds, descendants, rss_kib  # noqa: E402
from load.tokens import oauth_token  # noqa: E402
from load.worker_latency import OPERATOR_CLIENT_ID, merged, read_workers, reset_workers  # noqa: E402
from gateway.audit.sqlite_inline import SLOW_COMMIT_S  # noqa: E402  (what the gateway logs as a slow commit)
from load import bench_wake  # noqa: E402

#: ES256 corpus mix, close to the peer's own corpus (~80 % valid; tampered, expired, foreign key)
SINGLE_MIX = "valid=80,tampered=7,expired=7,unknown-issuer=6"
#: extra gateway rounds (single + batch only): name -> (environment, label)
VARIANTS: dict[str, dict[str, str]] = {
    "cache_off": {"GATEWAY_VERIFY_CACHE_ENTRIES": "0"},
    "audit_off": {"GATEWAY_AUDIT_BACKEND": "off"},
}
VARIANT_LABELS = {"cache_off": "result cache OFF (first verifications)",
                  "audit_off": "audit trail OFF (diagnostic: what the durable audit costs)"}
TARGETS = {"ratio": 1.3, "p99_ms": 10.0, "batch_ratio": 0.8, "soak_rss_growth": 0.10}


# --- processes ---------------------------------------------------------------------------
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return {**env, **(extra or {})}


def start_gateway(port: int, workers: int, env: dict[str, str] | None = None,
                  python: str | None = None) -> subprocess.Popen[bytes]:
    """A demo gateway whose audit trail starts empty, in a file of its own (a benchmark must not
    depend on what earlier runs left in var/audit.sqlite3, nor add to it); ``python``: the
    interpreter it runs on (another virtualenv's, for an A/B of interpreters), else this one."""
    import atexit
    import shutil
    import tempfile

    cmd = [python or sys.executable, "-m", "gateway", "serve", "--demo", "--workers", str(workers), "--port", str(port)]
    folder = tempfile.mkdtemp(prefix="bench-gateway-audit-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    audit = {"GATEWAY_AUDIT_PATH": str(Path(folder) / "audit.sqlite3")}
    return spawn_server(cmd, cwd=ROOT, env=_env({**audit, **(env or {})}))


@contextmanager
def serving(proc: subprocess.Popen[bytes], url: str, server_pids: Callable[[], list[int]]) -> Iterator[list[int]]:
    try:
        asyncio.run(wait_healthy(url, proc, timeout_s=60))
        time.sleep(0.5)
        yield server_pids()
    finally:
        stop_peer(proc)


# --- measurements --------------------------------------------------------------------------
def raw_es256_rate(seconds: float = 1.0) -> float:
    """ES256 verifications per second on one core: cryptography (OpenSSL), one key, one message."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    msg = b"eyJhbGciOiJFUzI1NiJ9." + b"x" * 600
    sig = key.sign(msg, ec.ECDSA(hashes.SHA256()))
    pub, alg = key.public_key(), ec.ECDSA(hashes.SHA256())
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        for _ in range(200):
            pub.verify(sig, msg, alg)
        n += 200
    return n / (time.process_time() - t0)


def closed_max(url: str, corpus: Any, scenario: str, step_s: float, steps: tuple[int, ...], token: Any,
               pids: Sequence[int], client: str = "raw") -> dict[str, Any]:
    sc = get_scenario(scenario)
    cfg = MaxConfig(target=url, scenario=sc, step_duration_s=step_s, concurrency_steps=steps, timeout_s=10.0,
                    client=client)
    c0 = cpu_seconds(pids)
    result = run_loop(run_max(cfg, RequestPicker.build(sc, corpus, 1), token, progress=None))
    used = cpu_seconds(pids) - c0
    answered = sum(s["counts"]["responses"] for s in result["steps"])
    return {"peak_rps": result["peak"]["throughput_rps"], "concurrency": result["peak"]["concurrency"],
            "p50_ms": result["peak"]["latency_ms"]["p50"], "p99_ms": result["peak"]["latency_ms"]["p99"],
            "errors": sum(s["counts"]["errors"] for s in result["steps"]),
            "generator_cpu_pct": result["cpu"]["percent_of_one_core"],
            "server_cpu_us_per_request": round(1e6 * used / answered, 1) if answered else None}


#: requests the generator keeps outstanding in the open-loop runs (an arrival beyond it is dropped,
#: and counted as an error)
OPEN_MAX_IN_FLIGHT = 512
#: the same for the soak. This VM's disk stalls now and then: fdatasync took 63-130 ms several times in
#: 2 minutes with the gateway stopped (load/bench_disk.py), and 100-700 ms during soaks; the audit
#: trail answers nothing before its fsync, so a stall queues rate x stall arrivals (~2,000 at 2,800/s
#: for 0.7 s). At 512 the generator dropped them although the gateway answered every request it was
#: sent; 4096 covers a 1.4-s stall at that rate. A drop still counts as an error, and the stall shows in
#: the latency tail (max, late).
SOAK_MAX_IN_FLIGHT = 4096


def open_loop(url: str, corpus: Any, rate: float, duration_s: float, token: Any, pids: Sequence[int],
              progress: Any = None, client: str = "raw", max_in_flight: int = OPEN_MAX_IN_FLIGHT,
              operator: Any = None, workers: int = 0, arrivals: str = "poisson") -> dict[str, Any]:
    """One open-loop run (``arrivals``: poisson or constant). With ``operator`` (an admin token provider), every one of the ``workers``
    has its latency histograms reset before and read after the run: ``in_gateway`` is what the
    gateway measured inside its handlers (load/worker_latency.py), beside the client's figures."""
    sc = get_scenario("verify")
    cfg = OpenLoopConfig(target=url, scenario=sc, rate=rate, duration_s=duration_s, arrivals=arrivals,
                         connections=64, max_in_flight=max_in_flight, timeout_s=10.0, seed=7, client=client)
    if operator is not None:
        run_loop(reset_workers(url, operator, workers))
    c0 = cpu_seconds(pids)
    r = run_loop(run_open_loop(cfg, RequestPicker.build(sc, corpus, 7), token, progress=progress))
    used = cpu_seconds(pids) - c0
    inside = merged(run_loop(read_workers(url, operator, workers))) if operator is not None else None
    return {"rate": rate, "in_gateway": inside, "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
            "p99_9_ms": r["latency_ms"]["p99_9"], "max_ms": r["latency_ms"]["max"],
            # the client's own split: intended -> sent (its dispatch lag) and sent -> answered
            "dispatch_lag_p50_ms": r["dispatch_lag_ms"]["p50"], "dispatch_lag_p99_ms": r["dispatch_lag_ms"]["p99"],
            "service_p50_ms": r["service_time_ms"]["p50"], "service_p99_ms": r["service_time_ms"]["p99"],
            "errors": r["counts"]["errors"],
            "error_kinds": r["errors"], "mismatched": r["expectation"]["mismatched"], "late": r["counts"]["late"],
            "throughput_rps": r["throughput_rps"], "generator_cpu_pct": r["cpu"]["percent_of_one_core"],
            "server_cpu_us_per_request": round(1e6 * used / max(1, r["counts"]["responses"]), 1)}


def med(rows: Sequence[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(vals), 2) if vals else 0.0


# --- the run ---------------------------------------------------------------------------------
def make_corpora(work: Path, batch_size: int, size: int) -> tuple[Path, Path]:
    from gateway.config import load_settings
    from gateway.corpus import CorpusPlan, demo_builder, parse_mix, write_jsonl

    b = demo_builder(load_settings(demo=True), datetime.now(timezone.utc))
    single = b.build(CorpusPlan(count=size, mix=parse_mix(SINGLE_MIX), algorithms=("ES256",), checks=0))
    batch = b.build(CorpusPlan(count=2000, mix={"valid": 1}, algorithms=("ES256",), batches=200,
                               batch_size=batch_size, checks=0))
    paths = work / "es256-single.jsonl", work / "es256-batch.jsonl"
    write_jsonl(paths[0], single)
    write_jsonl(paths[1], batch)
    return paths


def gateway_round(port: int, workers: int, env: dict[str, str] | None, single: Any, batch: Any, args: Any,
                  reps: int, log: Callable[[str], None]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    proc = start_gateway(port, workers, env)
    with serving(proc, url, lambda: descendants(proc.pid)) as pids:
        token = oauth_token(url)
        closed_max(url, single, "verify", 1.0, (8,), token, pids, args.client)  # warm-up (and fill the cache)
        singles, batches = [], []
        for i in range(reps):
            singles.append(closed_max(url, single, "verify", args.step, args.concurrency, token, pids, args.client))
            log(f"  gateway single rep {i + 1}: {singles[-1]}")
            b = closed_max(url, batch, "batch", args.step, args.batch_concurrency, token, pids, args.client)
            b["licences_per_s"] = round(b["peak_rps"] * args.batch_size, 1)
            batches.append(b)
            log(f"  gateway batch  rep {i + 1}: {b}")
        # the process group also holds demo mode's simulated regions (gateway/demo_regions.py): the
        # worker count is what was asked for; CPU figures include that small extra process
        out: dict[str, Any] = {"single": singles, "batch": batches, "workers": workers,
                               "server_processes": len(pids)}
        if env is None:
            half = med(singles, "peak_rps") / 2
            opens, evens = [], []
            operator = oauth_token(url, client_id=OPERATOR_CLIENT_ID, scope="admin")
            for i in range(reps):
                opens.append(open_loop(url, single, half, args.open_duration, token, pids, client=args.client,
                                       operator=operator, workers=workers))
                log(f"  gateway open loop at {half:.0f}/s rep {i + 1}: {opens[-1]}")
                evens.append(open_loop(url, single, half, args.open_duration, token, pids, client=args.client,
                                       operator=operator, workers=workers, arrivals="constant"))
                log(f"  gateway open loop at {half:.0f}/s, constant arrivals, rep {i + 1}: {evens[-1]}")
            out["open"], out["open_constant"] = opens, evens
            if args.soak:
                mark = server_log_size(proc)
                out["soak"] = soak(url, single, half, args.soak, token, pids, log, args.client, operator, workers)
                out["soak"]["gateway_log"] = server_log_summary(proc, mark)
        out["gateway_log"] = server_log_summary(proc)
    return out


def soak(url: str, corpus: Any, rate: float, seconds: float, token: Any, pids: Sequence[int],
         log: Callable[[str], None], client: str = "raw", operator: Any = None, workers: int = 0) -> dict[str, Any]:
    from load.safety import check_rate

    seconds = min(seconds, 600.0)
    check_rate(rate, seconds)   # the whole soak fits the tool's request cap, or it is refused (not cut short)
    rss0 = rss_kib(pids)
    log(f"  soak: {seconds:g}s at {rate:.0f}/s, worker RSS at start {rss0} KiB")
    r = open_loop(url, corpus, rate, seconds, token, pids, progress=sys.stderr, client=client,
                  max_in_flight=SOAK_MAX_IN_FLIGHT, operator=operator, workers=workers)
    rss1 = rss_kib(pids)
    growth = (rss1 - rss0) / rss0 if rss0 else 0.0
    return {**r, "seconds": seconds, "rss_start_kib": rss0, "rss_end_kib": rss1, "rss_growth": round(growth, 4)}


def peer_round(port: int, work: Path, args: Any, reps: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}"
    corpus_path = work / "peer-corpus.jsonl"
    proc = start_peer(port, corpus_path, args.corpus_size)
    with serving(proc, url, lambda: [proc.pid]) as pids:
        corpus = load_corpus(corpus_path)
        closed_max(url, corpus, "verify", 1.0, (8,), None, pids, args.client)  # warm-up
        rows = []
        for i in range(reps):
            rows.append(closed_max(url, corpus, "verify", args.step, args.concurrency, None, pids, args.client))
            log(f"  peer single rep {i + 1}: {rows[-1]}")
    return rows


def summarise(peer: list[dict[str, Any]], gw: dict[str, Any], cold: dict[str, dict[str, Any]] | None,
              raw: list[float], args: Any, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    workers = gw["workers"]
    raw_rate = statistics.median(raw)
    peer_max, gw_max = med(peer, "peak_rps"), med(gw["single"], "peak_rps")
    ratios = [g["peak_rps"] / p["peak_rps"] for g, p in zip(gw["single"], peer) if p["peak_rps"]]
    batch_lps = med(gw["batch"], "licences_per_s")
    s: dict[str, Any] = {
        "reps": args.reps, "client": args.client, "workers": workers, "cores": os.cpu_count(), "corpus_size": args.corpus_size,
        "peer_max_rps": peer_max, "gateway_max_rps": gw_max,
        "ratio_of_medians": round(gw_max / peer_max, 3) if peer_max else 0.0,
        "median_of_paired_ratios": round(statistics.median(ratios), 3) if ratios else 0.0,
        "p99_at_half_max_ms": med(gw["open"], "p99_ms"), "p50_at_half_max_ms": med(gw["open"], "p50_ms"),
        "half_max_rate": round(gw_max / 2, 1),
        **({"p99_at_half_max_constant_ms": med(gw["open_constant"], "p99_ms"),
            "p50_at_half_max_constant_ms": med(gw["open_constant"], "p50_ms"),
            "open_constant_errors": sum(o["errors"] + o["mismatched"] for o in gw["open_constant"])}
           if gw.get("open_constant") else {}),
        "open_loop_errors": sum(o["errors"] for o in gw["open"]),
        "open_loop_mismatched": sum(o["mismatched"] for o in gw["open"]),
        "raw_es256_verify_per_core": round(raw_rate, 1),
        "batch_licences_per_s": batch_lps, "batch_size": args.batch_size,
        "batch_ratio": round(batch_lps / (workers * raw_rate), 3) if raw_rate else 0.0,
        "generator_cpu_pct": {"peer_max": med(peer, "generator_cpu_pct"),
                              "gateway_max": med(gw["single"], "generator_cpu_pct"),
                              "gateway_open": med(gw["open"], "generator_cpu_pct"),
                              "gateway_batch": med(gw["batch"], "generator_cpu_pct")},
        "server_cpu_us_per_request": {"peer": med(peer, "server_cpu_us_per_request"),
                                      "gateway": med(gw["single"], "server_cpu_us_per_request"),
                                      "gateway_open": med(gw["open"], "server_cpu_us_per_request")},
    }
    inside = [o["in_gateway"] for o in gw["open"] if o.get("in_gateway") and o["in_gateway"]["answer"].get("count")]
    if inside:
        def mid(part: str, key: str) -> float | None:
            vals = [i[part][key] for i in inside if i[part].get(key) is not None]
            return round(statistics.median(vals), 2) if vals else None
        s["in_gateway_at_half_max"] = {"answer_p50_ms": mid("answer", "p50_ms"), "answer_p99_ms": mid("answer", "p99_ms"),
                                       "audit_wait_p50_ms": mid("audit_wait", "p50_ms"),
                                       "audit_wait_p99_ms": mid("audit_wait", "p99_ms"),
                                       "loop_lag_p50_ms": mid("loop_lag", "p50_ms"),
                                       "loop_lag_p99_ms": mid("loop_lag", "p99_ms"),
                                       "client_service_p50_ms": med(gw["open"], "service_p50_ms"),
                                       "client_service_p99_ms": med(gw["open"], "service_p99_ms"),
                                       "workers_read": min(i["workers"] for i in inside)}
    for name, variant in (cold or {}).items():
        v_max = med(variant["single"], "peak_rps")
        v_batch = med(variant["batch"], "licences_per_s")
        s[name] = {"gateway_max_rps": v_max, "ratio": round(v_max / peer_max, 3) if peer_max else 0.0,
                   "batch_licences_per_s": v_batch,
                   "batch_ratio": round(v_batch / (workers * raw_rate), 3) if raw_rate else 0.0,
                   "server_cpu_us_per_request": med(variant["single"], "server_cpu_us_per_request")}
    s["gateway_log"] = gw.get("gateway_log")
    if machine is not None:
        s["machine"] = {"es256_sign_after_2ms_pause": bench_wake.penalty_at(machine, 2.0),
                        "es256_sign_back_to_back_us": machine["jobs"]["ES256 sign"]["back_to_back_us"],
                        "steal_pct": machine["steal_pct"], "idle": machine["idle"]}
    if "soak" in gw:
        sk = gw["soak"]
        s["soak"] = {k: sk[k] for k in ("seconds", "rate", "errors", "error_kinds", "mismatched", "p99_ms", "p99_9_ms",
                                        "max_ms", "late", "rss_start_kib", "rss_end_kib", "rss_growth")}
        s["soak"]["max_in_flight"] = SOAK_MAX_IN_FLIGHT
        s["soak"]["in_gateway"] = sk.get("in_gateway")
        s["soak"]["gateway_log"] = sk.get("gateway_log")
    return s


def _inside_line(i: dict[str, Any], workers: int) -> str:
    read = "" if i["workers_read"] >= workers else f" (only {i['workers_read']} of {workers} workers reached)"
    return (f"  inside the gateway at half max (workers' own histograms, merged{read}): answer p50 "
            f"{i['answer_p50_ms']} ms p99 {i['answer_p99_ms']} ms, of which waiting for the audit commit p50 "
            f"{i['audit_wait_p50_ms']} ms p99 {i['audit_wait_p99_ms']} ms; event-loop lag p50 "
            f"{i.get('loop_lag_p50_ms')} ms p99 {i.get('loop_lag_p99_ms')} ms (the watchdog's wake-ups, 1-ms floor); "
            f"the client, from its send to the answer: p50 {i.get('client_service_p50_ms')} ms p99 "
            f"{i.get('client_service_p99_ms')} ms (the rest is outside the handlers: kernel queues, the loop "
            f"reaching the request, the way back, the generator)")


def render(s: dict[str, Any]) -> str:
    def ok(good: bool) -> str:
        return "MET" if good else "MISSED"

    lines = [
        f"bench_gateway: medians of {s['reps']} repetitions; gateway {s['workers']} workers, {s['cores']} cores "
        f"shared with the load generator ({s['client']} client); {s['corpus_size']} distinct ES256 licences "
        f"(peer: as many JWTs)",
        f"single verify, ES256, closed-loop max:  peer {s['peer_max_rps']:.0f}/s   "
        f"gateway {s['gateway_max_rps']:.0f}/s   "
        f"ratio {s['ratio_of_medians']:.2f} (median of paired ratios {s['median_of_paired_ratios']:.2f})   "
        f"target >= {TARGETS['ratio']}: {ok(s['ratio_of_medians'] >= TARGETS['ratio'])}",
        f"open loop at half max ({s['half_max_rate']:.0f}/s, Poisson):  p50 {s['p50_at_half_max_ms']:.2f} ms   "
        f"p99 {s['p99_at_half_max_ms']:.2f} ms   target <= {TARGETS['p99_ms']:g} ms: "
        f"{ok(s['p99_at_half_max_ms'] <= TARGETS['p99_ms'])}   errors {s['open_loop_errors']}   "
        f"wrong verdicts {s['open_loop_mismatched']}",
        *([_inside_line(s["in_gateway_at_half_max"], s["workers"])] if s.get("in_gateway_at_half_max") else []),
        *([f"  the same rate with constant arrivals (evenly spaced; the target is judged above):  p50 "
           f"{s['p50_at_half_max_constant_ms']:.2f} ms   p99 {s['p99_at_half_max_constant_ms']:.2f} ms   errors and "
           f"wrong verdicts {s['open_constant_errors']}"] if "p99_at_half_max_constant_ms" in s else []),
        f"batch verify ({s['batch_size']} per request):  {s['batch_licences_per_s']:.0f} licences/s   vs "
        f"{s['workers']} x raw ES256 {s['raw_es256_verify_per_core']:.0f}/s/core = "
        f"{s['workers'] * s['raw_es256_verify_per_core']:.0f}/s   ratio {s['batch_ratio']:.2f}   "
        f"target >= {TARGETS['batch_ratio']}: {ok(s['batch_ratio'] >= TARGETS['batch_ratio'])}",
        f"load generator CPU (% of one core):  {s['generator_cpu_pct']}",
        f"server CPU per request (µs, all server processes):  {s['server_cpu_us_per_request']}",
    ]
    for name, label in VARIANT_LABELS.items():
        if name in s:
            c = s[name]
            lines.append(f"{label}:  gateway {c['gateway_max_rps']:.0f}/s   ratio {c['ratio']:.2f}   batch "
                         f"{c['batch_licences_per_s']:.0f} licences/s ratio {c['batch_ratio']:.2f}   "
                         f"server CPU {c['server_cpu_us_per_request']} µs/request")
    m, cpu = s.get("machine"), s["server_cpu_us_per_request"]
    if m and m["es256_sign_after_2ms_pause"] is not None:
        ratio = (f" vs {cpu['gateway']} µs at max ({cpu['gateway_open'] / cpu['gateway']:.2f}x)"
                 if cpu.get("gateway") and cpu.get("gateway_open") else "")
        lines.append(f"machine (load/bench_wake.py): an ES256 signature resumed after a 2-ms pause costs "
                     f"{m['es256_sign_after_2ms_pause']:.1f}x its back-to-back {m['es256_sign_back_to_back_us']:.0f} µs; "
                     f"server CPU per request at half max {cpu.get('gateway_open')} µs{ratio}")
    g = s.get("gateway_log")
    if g:
        lines.append(f"the gateway's own log over the whole run: {g['loop_stalls']} event-loop stalls (worst "
                     f"{g['worst_stall_ms']:.0f} ms), {g['slow_audit_commits']} slow audit commits (worst "
                     f"{g['worst_commit_ms']:.0f} ms), warnings by logger {g['warnings_by_logger']}"
                     + (f", {g['non_json_lines']} lines not JSON" if g["non_json_lines"] else ""))
    if "soak" in s:
        k = s["soak"]
        lines.append(f"soak {k['seconds']:g}s at {k['rate']:.0f}/s:  errors {k['errors']} {k['error_kinds'] or ''}  "
                     f"wrong verdicts {k['mismatched']}  p99 {k['p99_ms']} ms  p99.9 {k['p99_9_ms']} ms  "
                     f"max {k['max_ms']} ms  late {k['late']}  (generator cap {k['max_in_flight']} in flight)  "
                     f"worker RSS {k['rss_start_kib']} -> "
                     f"{k['rss_end_kib']} KiB ({100 * k['rss_growth']:+.1f} %)  target 0 errors, <= "
                     f"{100 * TARGETS['soak_rss_growth']:g} %: "
                     f"{ok(k['errors'] == 0 and k['rss_growth'] <= TARGETS['soak_rss_growth'])}")
        ig = k.get("in_gateway")
        if ig and ig["answer"].get("count"):
            lines.append(f"  inside the gateway during the soak ({ig['workers']} workers' histograms): answer p50 "
                         f"{ig['answer']['p50_ms']} p99 {ig['answer']['p99_ms']} p99.9 {ig['answer']['p99_9_ms']} "
                         f"max {ig['answer']['max_ms']} ms; audit wait p50 {ig['audit_wait'].get('p50_ms')} "
                         f"p99 {ig['audit_wait'].get('p99_ms')} max {ig['audit_wait'].get('max_ms')} ms; loop lag "
                         f"p99 {ig['loop_lag'].get('p99_ms')} max {ig['loop_lag'].get('max_ms')} ms")
        g = k.get("gateway_log")
        if g:
            lines.append(f"  the gateway's own log during the soak: {g['loop_stalls']} event-loop stalls (worst "
                         f"{g['worst_stall_ms']:.0f} ms), {g['slow_audit_commits']} audit commits slower than "
                         f"{SLOW_COMMIT_S * 1000:g} ms "
                         f"(worst {g['worst_commit_ms']:.0f} ms" + (": the disk's sync; see load/bench_disk.py)"
                                                                    if g["slow_audit_commits"] else ")"))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians are reported; default 3)")
    ap.add_argument("--step", type=float, default=3.0, help="seconds per closed-loop step (default 3)")
    ap.add_argument("--concurrency", default="8,16,32,64,128",
                    help="closed-loop worker counts, the same for peer and gateway (default 8,16,32,64,128: a "
                         "gateway that commits an audit record before each answer needs more in flight to be busy)")
    ap.add_argument("--batch-concurrency", default="2,4,8,16", help="closed-loop worker counts for batches")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--corpus-size", type=int, default=500,
                    help="distinct single licences, for the peer and the gateway alike (default 500, as the "
                         "peer's own default); the batch corpus has 2000")
    ap.add_argument("--open-duration", type=float, default=5.0, help="seconds per open-loop run (default 5)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variants", default="cache_off",
                    help=f"extra gateway rounds, comma-separated, from {', '.join(VARIANTS)} or 'none' "
                         "(default cache_off)")
    ap.add_argument("--soak", type=float, default=0.0, help="also soak this many seconds at half max (<= 600)")
    ap.add_argument("--http-client", dest="client", choices=CLIENTS, default="raw",
                    help="the load generator's HTTP client, the same for peer and gateway (default raw: "
                         "load/rawhttp.py, about half of aiohttp's CPU per request, CPU left to the servers)")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v and v != "none"]
    if any(v not in VARIANTS for v in args.variants):
        ap.error(f"--variants from {', '.join(VARIANTS)}")
    args.concurrency = tuple(int(x) for x in args.concurrency.split(","))
    args.batch_concurrency = tuple(int(x) for x in args.batch_concurrency.split(","))
    if args.reps < 1 or args.step <= 0 or not 0 <= args.soak <= 600:
        ap.error("--reps >= 1, --step > 0, --soak 0..600")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    import tempfile

    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        single_path, batch_path = make_corpora(work, args.batch_size, args.corpus_size)
        single, batch = load_corpus(single_path), load_corpus(batch_path)
        raw = [raw_es256_rate() for _ in range(args.reps)]
        log(f"raw ES256 verify per core: {[round(r) for r in raw]}")
        machine = bench_wake.probe(samples=100, gaps_ms=(1.0, 2.0))
        log(f"machine: ES256 sign after a 2-ms pause {bench_wake.penalty_at(machine, 2.0)}x back to back")
        log("peer (naive jwt.decode, 1 process):")
        peer = peer_round(free_port(), work, args, args.reps, log)
        log(f"gateway ({args.workers} workers, demo configuration):")
        gw = gateway_round(free_port(), args.workers, None, single, batch, args, args.reps, log)
        cold = {}
        for name in args.variants:
            log(f"gateway variant {name} ({VARIANTS[name]}):")
            cold[name] = gateway_round(free_port(), args.workers, VARIANTS[name], single, batch, args, args.reps, log)
    s = summarise(peer, gw, cold, raw, args, machine)
    print(render(s))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({"summary": s, "peer": peer, "gateway": gw, "cache_off": cold},
                                                 option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
