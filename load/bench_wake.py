"""Is this machine fit for latency figures? What the same work costs after a pause.

    python load/bench_wake.py [--samples 300] [--gaps-ms 0.2,1,2,5] [--json FILE]

A gateway at half of its maximum throughput spends part of each millisecond waiting, and each of
its audit commits runs once every few milliseconds. On a shared virtual machine the caches are
shared too (with the host and the other guests on the same cores), so the code and data a job
needs may be gone when it comes back after a pause of a millisecond or two: the job then costs
several times what it costs back to back. The CPU per request at half load is then well above
the CPU per request at full load, and the latency tail measured at half load says as much about
the machine as about the gateway.

This measures it, for two jobs the gateway's answers are made of: an ES256 signature (OpenSSL:
the receipts, and about what a licence's verification costs) and a pure-Python job (an audit
record body encoded with orjson and hashed, as the chain does). Each is timed in thread CPU time,
``--samples`` times, back to back, then after each pause of ``--gaps-ms`` milliseconds, twice:
the pause slept (the CPU may go idle and be handed back to the host) and the pause spun (the CPU
stays busy with a loop that touches almost no memory). Printed: the median of each and its ratio
to the back-to-back median, the CPU idle driver and its polling setting when the kernel shows
them, and the steal time (CPU time the host gave elsewhere) during the measurement. A penalty
after spun pauses too means it is not our idling that empties the caches but other work sharing
them.

Measured here (2-core VM, idle driver ``haltpoll`` with ``guest_halt_poll_ns = 0``, steal 0.2 %),
two runs: ES256 sign 23-33 us back to back; after a slept pause of 1 / 2 / 5 ms 1.9-2.5x /
3.0-4.9x / 5.1-6.5x that, after a spun pause 1.4-2.0x / 1.8-2.6x / 4.5-5.6x.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: pauses (milliseconds) after which each job is timed, by default
DEFAULT_GAPS_MS = (0.2, 1.0, 2.0, 5.0)
#: the longest pause accepted, and the most samples: the run stays within seconds
MAX_GAP_MS = 50.0
MAX_SAMPLES = 5000
#: a slept/back-to-back ratio at least this large at 2 ms is called out as a machine that penalises pauses
IDLE_PENALTY_NOTE = 2.0
_CPUIDLE = Path("/sys/devices/system/cpu/cpuidle")
_HALTPOLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def _es256_job() -> Callable[[], Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())   # a throw-away key: nothing is kept
    data, algo = b"x" * 200, ec.ECDSA(hashes.SHA256())
    return lambda: key.sign(data, algo)


def _python_job() -> Callable[[], Any]:
    body = {"kind": "verify", "time": "2026-12-03T13:00:00.123456Z", "request_id": "req-0001", "partner": "TEST-p",
            "operator": None, "item_code": None, "region": "330500", "licence_id": "1.2.156.3005.2.X.330500.LIC1",
            "verdict": "valid", "reasons": [], "holder_hmac": "ab" * 32, "extra": {"receipt": "cd" * 16}}

    def job() -> Any:
        out = None
        for _ in range(20):
            out = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
        return out
    return job


JOBS: dict[str, Callable[[], Callable[[], Any]]] = {"ES256 sign": _es256_job, "record encode+hash x20": _python_job}


def _pause(gap_s: float, spin: bool) -> None:
    if gap_s <= 0:
        return
    if spin:
        end = time.perf_counter() + gap_s
        while time.perf_counter() < end:
            pass
    else:
        time.sleep(gap_s)


def time_job(job: Callable[[], Any], samples: int, gap_s: float, spin: bool) -> float:
    """Median thread-CPU microseconds of ``job`` run after each pause of ``gap_s`` seconds."""
    out = []
    for _ in range(samples):
        _pause(gap_s, spin)
        t0 = time.thread_time_ns()
        job()
        out.append(time.thread_time_ns() - t0)
    return statistics.median(out) / 1000


def _steal_ticks() -> tuple[int, int] | None:
    """(steal, total) clock ticks of all CPUs from /proc/stat, or None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields]
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks)


def idle_driver() -> dict[str, str | None]:
    def read(p: Path) -> str | None:
        try:
            return p.read_text().strip()
        except OSError:
            return None
    return {"driver": read(_CPUIDLE / "current_driver"), "governor": read(_CPUIDLE / "current_governor_ro")
            or read(_CPUIDLE / "current_governor"), "guest_halt_poll_ns": read(_HALTPOLL)}


def probe(samples: int = 300, gaps_ms: Sequence[float] = DEFAULT_GAPS_MS) -> dict[str, Any]:
    s0 = _steal_ticks()
    jobs: dict[str, Any] = {}
    for name, make in JOBS.items():
        job = make()
        for _ in range(50):     # warm: imports, first-call paths
            job()
        base = time_job(job, samples, 0.0, spin=False)
        rows = []
        for gap in gaps_ms:
            slept = time_job(job, samples, gap / 1000, spin=False)
            spun = time_job(job, samples, gap / 1000, spin=True)
            rows.append({"gap_ms": gap, "slept_us": round(slept, 1), "spun_us": round(spun, 1),
                         "slept_ratio": round(slept / base, 2), "spun_ratio": round(spun / base, 2)})
        jobs[name] = {"back_to_back_us": round(base, 1), "after_pause": rows}
    s1 = _steal_ticks()
    steal = None
    if s0 is not None and s1 is not None and s1[1] > s0[1]:
        steal = round(100 * (s1[0] - s0[0]) / (s1[1] - s0[1]), 2)
    return {"samples": samples, "jobs": jobs, "idle": idle_driver(), "steal_pct": steal}


def penalty_at(result: dict[str, Any], gap_ms: float = 2.0, job: str = "ES256 sign") -> float | None:
    """The slept/back-to-back ratio of ``job`` at the pause nearest ``gap_ms``: one figure to quote."""
    rows = result["jobs"].get(job, {}).get("after_pause", [])
    if not rows:
        return None
    return min(rows, key=lambda r: abs(r["gap_ms"] - gap_ms))["slept_ratio"]


def render(result: dict[str, Any]) -> str:
    lines = [f"what work costs after a pause (thread CPU, median of {result['samples']}):"]
    for name, j in result["jobs"].items():
        lines.append(f"  {name}: {j['back_to_back_us']:.1f} us back to back")
        for r in j["after_pause"]:
            lines.append(f"    after {r['gap_ms']:g} ms: slept {r['slept_us']:.1f} us ({r['slept_ratio']:.2f}x), "
                         f"spun {r['spun_us']:.1f} us ({r['spun_ratio']:.2f}x)")
    idle = result["idle"]
    poll = idle.get("guest_halt_poll_ns")
    lines.append(f"  CPU idle driver: {idle.get('driver') or 'not shown'}"
                 + (f", governor {idle['governor']}" if idle.get("governor") else "")
                 + (f", guest_halt_poll_ns = {poll}" if poll is not None else ""))
    if result["steal_pct"] is not None:
        lines.append(f"  steal time during the measurement: {result['steal_pct']:.2f} % of all CPU time")
    p = penalty_at(result)
    if p is not None and p >= IDLE_PENALTY_NOTE:
        lines.append(f"  -> work resumed after a ~2 ms pause costs {p:.1f}x: on this machine the CPU per request at "
                     "half load is well above that at full load, and latency at half load is partly the machine's")
    return "\n".join(lines)


def _gaps(text: str) -> tuple[float, ...]:
    try:
        gaps = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated milliseconds, e.g. 0.2,1,2,5") from None
    if not gaps or any(not 0 < g <= MAX_GAP_MS for g in gaps):
        raise argparse.ArgumentTypeError(f"each pause in (0, {MAX_GAP_MS:g}] ms")
    return gaps


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=300, help=f"timings per job and pause (1..{MAX_SAMPLES})")
    ap.add_argument("--gaps-ms", type=_gaps, default=DEFAULT_GAPS_MS, help="pauses, comma-separated milliseconds")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if not 1 <= args.samples <= MAX_SAMPLES:
        ap.error(f"--samples in 1..{MAX_SAMPLES}")
    result = probe(args.samples, args.gaps_ms)
    print(render(result))
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
