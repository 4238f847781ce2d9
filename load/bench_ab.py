"""Two gateway configurations side by side, measured in interleaved pairs at one open-loop rate.

    python load/bench_ab.py --b GATEWAY_AUDIT_ASYNC_FSYNC=false [--a KEY=VALUE,...] [--rate 3000]
                            [--seconds 6] [--pairs 5] [--workers 2] [--max-step 0] [--json FILE]
    python load/bench_ab.py --b-python /tmp/venv-other/bin/python [--a-python ...]   # two interpreters

What a setting does to the latency is smaller than this machine's drift over a minute, so one run
of each side tells nothing. This starts both demo gateways at once (``--workers`` each, an empty
audit trail of their own, the environment of ``--a`` / ``--b`` on top of the demo defaults, each on
the interpreter of ``--a-python`` / ``--b-python``: another virtualenv with the project installed, by
default this one), then
alternates short open-loop runs (Poisson, ``--rate`` per second, ``--seconds`` each, the ES256
corpus of load/bench_gateway.py) between them, A then B then B then A..., so drift hits both.
Each run also resets and reads the workers' own histograms (load/worker_latency.py).

Printed per pair and as medians of the pairs: the client's p50 / p99; inside the gateway the
answer's p99, the audit commit wait p50 / p99 and the event loop's lag p99; the server CPU per
request (every process of the gateway: the serving process, its workers and their threads, audit writer
processes, the demo regions) and the
machine's (every CPU busy, the load generator and the kernel's threads included: an fdatasync done
by a kernel worker for Linux AIO counts only there); errors.
``--max-step S`` also finds each side's closed-loop maximum (steps of S seconds at 32 and 128 in
flight), alternately, once per pair. Only loopback; every run is bounded by ``--seconds``.

Both sides must answer the corpus alike: answers whose verdict is not the expected one are counted
per side ("wrong verdicts"), and with any the table says NOT COMPARABLE and the exit status is 1.
An interpreter of another checkout runs that checkout's gateway, with its own ``var/demo`` trust
framework, which signed none of this corpus: give it ``GATEWAY_VAR_DIR`` of this one (a wrapper
script as ``--b-python``), or every licence is "invalid" there, and cheaper.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from load.bench_gateway import closed_max, make_corpora, open_loop, serving, start_gateway  # noqa: E402
from load.procstat import machine_busy_seconds, process_tree  # noqa: E402
from load.worker_latency import OPERATOR_CLIENT_ID  # noqa: E402
from load.compare import free_port  # noqa: E402
from load.scenarios import load_corpus  # noqa: E402
from load.tokens import oauth_token  # noqa: E402

#: the figures of one run, as (label, path into the open_loop result)
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("client p50 ms", ("p50_ms",)), ("client p99 ms", ("p99_ms",)),
    ("answer p99 ms", ("in_gateway", "answer", "p99_ms")),
    ("audit wait p50 ms", ("in_gateway", "audit_wait", "p50_ms")),
    ("audit wait p99 ms", ("in_gateway", "audit_wait", "p99_ms")),
    ("loop lag p99 ms", ("in_gateway", "loop_lag", "p99_ms")),
    ("server CPU us/req", ("server_cpu_us_per_request",)),
    ("machine CPU us/req", ("machine_cpu_us_per_request",)),
    ("errors", ("errors",)),
    ("wrong verdicts", ("mismatched",)),
)


def wrong_verdicts(result: dict[str, Any]) -> dict[str, int]:
    """Answers per side whose verdict differs from the corpus's expected one. A side that answers
    otherwise -- e.g. an interpreter of another checkout, whose demo trust framework signs nothing
    of this corpus, so every licence is "invalid" and cheap -- measures other work: no comparison."""
    return {side: int(sum(r.get("mismatched") or 0 for r in result[side]["open"])) for side in ("a", "b")}


def parse_env(text: str) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` -> dict; only GATEWAY_* settings (the gateway's own)."""
    env: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.startswith("GATEWAY_"):
            raise ValueError(f"{part!r}: expected GATEWAY_SETTING=value")
        env[key] = value
    return env


def figure(run: dict[str, Any], path: Sequence[str]) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return float(value)


def median_of(runs: Sequence[dict[str, Any]], path: Sequence[str]) -> float | None:
    vals = [v for v in (figure(r, path) for r in runs) if v is not None]
    return round(statistics.median(vals), 2) if vals else None


def order(pairs: int) -> list[str]:
    """A B, B A, A B...: each side goes first in half of the pairs."""
    return [side for k in range(pairs) for side in (("a", "b") if k % 2 == 0 else ("b", "a"))]


def render(result: dict[str, Any]) -> str:
    a, b = result["a"], result["b"]
    lines = [f"bench_ab: {result['pairs']} interleaved pairs of {result['seconds']:g}-s open-loop runs at "
             f"{result['rate']:g}/s, {result['workers']} workers each",
             f"  A: {result['env_a'] or '(demo defaults)'}", f"  B: {result['env_b'] or '(demo defaults)'}",
             f"  {'figure':<20} {'A (median)':>11} {'B (median)':>11}   per pair A / B"]
    for label, path in FIGURES:
        per = "  ".join(f"{_fmt(figure(x, path))}/{_fmt(figure(y, path))}" for x, y in zip(a["open"], b["open"]))
        lines.append(f"  {label:<20} {_fmt(median_of(a['open'], path)):>11} {_fmt(median_of(b['open'], path)):>11}   {per}")
    if a.get("max"):
        per = "  ".join(f"{x['peak_rps']:.0f}/{y['peak_rps']:.0f}" for x, y in zip(a["max"], b["max"]))
        lines.append(f"  {'closed-loop max /s':<20} {median_of(a['max'], ('peak_rps',)):>11.0f} "
                     f"{median_of(b['max'], ('peak_rps',)):>11.0f}   {per}")
    for side, n in wrong_verdicts(result).items():
        if n:
            lines.append(f"  NOT COMPARABLE: side {side.upper()} gave {n} answers whose verdict is not the corpus's "
                         "expected one (another trust framework? an interpreter of another checkout uses that "
                         "checkout's var/demo: give it GATEWAY_VAR_DIR)")
    return "\n".join(lines)


def describe(settings: str, python: str | None) -> str:
    """A side as the table names it: its settings, and its interpreter when it is not this one."""
    return " ".join(filter(None, (settings, f"python={python}" if python else "")))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def run(args: Any, log: Callable[[str], None]) -> dict[str, Any]:
    env = {"a": parse_env(args.a), "b": parse_env(args.b)}
    python = {"a": args.a_python, "b": args.b_python}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp, ExitStack() as stack:
        single_path, _ = make_corpora(Path(tmp), 10, 500)
        corpus = load_corpus(single_path)
        sides: dict[str, dict[str, Any]] = {}
        for name in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = start_gateway(port, args.workers, env[name], python[name])
            pids = stack.enter_context(serving(proc, url, lambda p=proc: process_tree(p.pid)))
            sides[name] = {"url": url, "pids": pids, "token": oauth_token(url),
                           "operator": oauth_token(url, client_id=OPERATOR_CLIENT_ID, scope="admin"),
                           "open": [], "max": []}
            closed_max(url, corpus, "verify", 1.0, (8,), sides[name]["token"], pids)   # warm-up
        for k, name in enumerate(order(args.pairs)):
            s = sides[name]
            busy0 = machine_busy_seconds()
            r = open_loop(s["url"], corpus, args.rate, args.seconds, s["token"], s["pids"], operator=s["operator"],
                          workers=args.workers)
            answered = r["throughput_rps"] * args.seconds
            r["machine_cpu_us_per_request"] = round(1e6 * (machine_busy_seconds() - busy0) / answered, 1) if answered else None
            s["open"].append(r)
            log(f"  run {k + 1}/{2 * args.pairs} {name.upper()}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                f"{r['server_cpu_us_per_request']} us/req, {r['errors']} errors")
            if args.max_step:
                s["max"].append(closed_max(s["url"], corpus, "verify", args.max_step, (32, 128), s["token"], s["pids"]))
                log(f"    closed-loop max {name.upper()}: {s['max'][-1]['peak_rps']:.0f}/s")
    return {"rate": args.rate, "seconds": args.seconds, "pairs": args.pairs, "workers": args.workers,
            "env_a": describe(args.a, args.a_python), "env_b": describe(args.b, args.b_python),
            "a": {k: v for k, v in sides["a"].items() if k in ("open", "max")},
            "b": {k: v for k, v in sides["b"].items() if k in ("open", "max")}}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", default="", help="side A's settings, GATEWAY_X=v,GATEWAY_Y=w (default: the demo defaults)")
    ap.add_argument("--b", default="", help="side B's settings, as --a")
    ap.add_argument("--a-python", help="the interpreter side A runs on (a virtualenv's python; default this one)")
    ap.add_argument("--b-python", help="the interpreter side B runs on, as --a-python")
    ap.add_argument("--rate", type=float, default=3000.0, help="open-loop arrivals per second (default 3000)")
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds per open-loop run (1..60, default 6)")
    ap.add_argument("--pairs", type=int, default=5, help="interleaved pairs (1..20, default 5)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-step", type=float, default=0.0, help="also a closed-loop maximum per run, steps of S s")
    ap.add_argument("--json", help="write every run's figures here")
    args = ap.parse_args(argv)
    if not (1 <= args.seconds <= 60 and 1 <= args.pairs <= 20 and 1 <= args.workers <= 8 and 0 < args.rate <= 20_000
            and 0 <= args.max_step <= 30):
        ap.error("--seconds 1..60, --pairs 1..20, --workers 1..8, --rate 0..20000, --max-step 0..30")
    try:
        parse_env(args.a), parse_env(args.b)
    except ValueError as exc:
        ap.error(str(exc))
    if (args.a, args.a_python) == (args.b, args.b_python):
        ap.error("the two sides are the same: give --b (settings) or --b-python (interpreter)")
    for python in filter(None, (args.a_python, args.b_python)):
        if not Path(python).is_file():
            ap.error(f"--a-python / --b-python {python}: no such interpreter")
    result = run(args, lambda m: print(m, file=sys.stderr, flush=True))
    print(render(result))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 1 if any(wrong_verdicts(result).values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
