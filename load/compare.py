"""``python -m load compare``: the naive peer and the gateway under the same closed-loop max test."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from load.errors import TARGET_INVALID, LoadRefused
from load.runner import MaxConfig, run_max
from load.scenarios import CorpusEntry, RequestPicker, Scenario, load_corpus
from load.tokens import TokenProvider

PEER_START_TIMEOUT_S = 15.0


#: ports handed out by free_port in this process, with the next one (a demo gateway on P starts its
#: demo regions process on P + 1): two servers started back to back never collide
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port P whose neighbour P + 1 is free too and not handed out before."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if {port, port + 1} & _HANDED_OUT:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        _HANDED_OUT.update((port - 1, port, port + 1))
        return port
    raise RuntimeError("no free pair of loopback ports")


def spawn_server(cmd: list[str], *, cwd: Path, env: dict[str, str],
                 start_new_session: bool = False) -> subprocess.Popen[bytes]:
    """Start a server under test with its stderr in a file of its own (``proc.log_path``, removed at
    exit). Never a pipe: nobody reads it while the load runs, and once a pipe holds 64 KiB every
    further log line blocks the server's event loop -- the very stalls a benchmark looks for."""
    import atexit

    fd, path = tempfile.mkstemp(prefix="load-server-", suffix=".log")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    with os.fdopen(fd, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
                                start_new_session=start_new_session)
    proc.log_path = path  # type: ignore[attr-defined]
    return proc


def server_log_tail(proc: subprocess.Popen[bytes], chars: int = 500) -> str:
    """The end of a server's stderr (:func:`spawn_server`'s file, or a pipe), for an error message."""
    path = getattr(proc, "log_path", None)
    if path is not None:
        try:
            return Path(path).read_bytes()[-4 * chars:].decode(errors="replace")[-chars:]
        except OSError:
            return ""
    return proc.stderr.read().decode(errors="replace")[-chars:] if proc.stderr else ""


def server_log_size(proc: subprocess.Popen[bytes]) -> int:
    """Bytes written so far to a server's log (:func:`spawn_server`; 0 without one): an offset for
    :func:`server_log_summary` of one phase."""
    path = getattr(proc, "log_path", None)
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def server_log_summary(proc: subprocess.Popen[bytes], start: int = 0) -> dict[str, Any]:
    """What the gateway said about itself in its JSON log from byte ``start`` on: event-loop stalls
    (gateway/watchdog.py) and audit commits slower than the audit sink's limit, each as a count and
    the worst, plus WARNING/ERROR lines per logger. Lines that are not JSON are counted apart."""
    import orjson

    out: dict[str, Any] = {"loop_stalls": 0, "worst_stall_ms": 0.0, "slow_audit_commits": 0,
                           "worst_commit_ms": 0.0, "warnings_by_logger": {}, "non_json_lines": 0}
    path = getattr(proc, "log_path", None)
    if not path:
        return out
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return out
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            out["non_json_lines"] += 1
            continue
        if not isinstance(doc, dict) or doc.get("level") not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        logger = str(doc.get("logger"))
        out["warnings_by_logger"][logger] = out["warnings_by_logger"].get(logger, 0) + 1
        if isinstance(doc.get("stall_ms"), (int, float)):
            out["loop_stalls"] += 1
            out["worst_stall_ms"] = max(out["worst_stall_ms"], float(doc["stall_ms"]))
        elif isinstance(doc.get("took_ms"), (int, float)) and "to durable" in str(doc.get("message")):
            out["slow_audit_commits"] += 1
            out["worst_commit_ms"] = max(out["worst_commit_ms"], float(doc["took_ms"]))
    return out


def start_peer(port: int, corpus_out: Path, corpus_size: int) -> subprocess.Popen[bytes]:
    """Starts ``python -m load peer`` as a child process (the caller must stop it)."""
    cmd = [sys.executable, "-m", "load", "peer", "--port", str(port), "--corpus-out", str(corpus_out),
           "--corpus-size", str(corpus_size)]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    return spawn_server(cmd, cwd=root, env=env)


async def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None = None,
                       timeout_s: float = PEER_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                err = server_log_tail(proc)
                raise LoadRefused(TARGET_INVALID, f"the peer exited with code {proc.returncode}: {err}")
            try:
                async with session.get(url.rstrip("/") + "/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise LoadRefused(TARGET_INVALID, f"{url} did not answer /healthz within {timeout_s:g}s")


def stop_peer(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def ratio_summary(peer: dict[str, Any], gateway: dict[str, Any]) -> dict[str, Any]:
    """Pure: gateway peak over peer peak (throughput), and the p50/p99 at each peak."""
    pp, gp = peer["peak"], gateway["peak"]
    ratio = gp["throughput_rps"] / pp["throughput_rps"] if pp["throughput_rps"] > 0 else 0.0
    return {
        "peer_peak_rps": pp["throughput_rps"], "peer_peak_concurrency": pp["concurrency"],
        "gateway_peak_rps": gp["throughput_rps"], "gateway_peak_concurrency": gp["concurrency"],
        "throughput_ratio": round(ratio, 4),
        "peer_p50_ms": pp["latency_ms"]["p50"], "gateway_p50_ms": gp["latency_ms"]["p50"],
        "peer_p99_ms": pp["latency_ms"]["p99"], "gateway_p99_ms": gp["latency_ms"]["p99"],
    }


def render_ratio(summary: dict[str, Any]) -> str:
    s = summary
    return "\n".join([
        f"{'':10}{'peak req/s':>12}{'at conc.':>10}{'p50 ms':>10}{'p99 ms':>10}",
        f"{'peer':10}{s['peer_peak_rps']:>12.1f}{s['peer_peak_concurrency']:>10}{s['peer_p50_ms']:>10.2f}"
        f"{s['peer_p99_ms']:>10.2f}",
        f"{'gateway':10}{s['gateway_peak_rps']:>12.1f}{s['gateway_peak_concurrency']:>10}{s['gateway_p50_ms']:>10.2f}"
        f"{s['gateway_p99_ms']:>10.2f}",
        f"gateway / peer throughput ratio: {s['throughput_ratio']:.3f}",
    ])


async def compare(scenario: Scenario, gateway_target: str, gateway_corpus: Sequence[CorpusEntry] | None,
                  step_duration_s: float, steps: tuple[int, ...], timeout_s: float, seed: int,
                  token_provider: TokenProvider | None, work_dir: Path, *, peer_port: int = 0,
                  corpus_size: int = 500, progress: TextIO | None = sys.stderr,
                  client: str = "raw") -> dict[str, Any]:
    """Starts the peer, runs the max search on it, then on the gateway, and returns both plus the ratio.
    Without a gateway corpus the peer's corpus is used (the gateway will answer ``invalid``: its keys
    differ, so the comparison then measures the rejection path)."""
    port = peer_port or free_port()
    peer_url = f"http://127.0.0.1:{port}"
    corpus_path = work_dir / "peer-corpus.jsonl"
    proc = start_peer(port, corpus_path, corpus_size)
    try:
        await wait_healthy(peer_url, proc)
        peer_corpus = load_corpus(corpus_path)
        if progress is not None:
            print(f"[load] peer up at {peer_url}, corpus {corpus_path} ({len(peer_corpus)} lines)", file=progress)
        cfg = MaxConfig(target=peer_url, scenario=scenario, step_duration_s=step_duration_s,
                        concurrency_steps=steps, timeout_s=timeout_s, seed=seed, client=client)
        peer_result = await run_max(cfg, RequestPicker.build(scenario, peer_corpus, seed), None, progress=progress)
    finally:
        stop_peer(proc)
    gw_cfg = MaxConfig(target=gateway_target, scenario=scenario, step_duration_s=step_duration_s,
                       concurrency_steps=steps, timeout_s=timeout_s, seed=seed, client=client)
    gw_picker = RequestPicker.build(scenario, gateway_corpus or peer_corpus, seed)
    gateway_result = await run_max(gw_cfg, gw_picker, token_provider, progress=progress)
    return {"mode": "compare", "scenario": scenario.name, "peer": peer_result, "gateway": gateway_result,
            "gateway_corpus": "given" if gateway_corpus else "peer corpus (gateway keys differ)",
            "summary": ratio_summary(peer_result, gateway_result)}
