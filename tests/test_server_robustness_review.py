"""Adversarial review of ``serve --workers N``: worker supervision and the port (gateway/serve.py).

* a worker that died (OOM killer, a crash in C code, an operator's kill -9) left a zombie: no log
  line, no replacement, the port served by the survivors at a fraction of the capacity until the
  last worker died;
* a port held by another ``serve --workers N`` was shared silently (SO_REUSEPORT is granted to every
  process of the user that asks): the kernel split the partners' connections between two gateways;
* a port held by anything else made each worker log "serving on" and then a plain-text traceback
  outside the JSON log.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.serve import EXIT_CANNOT_LISTEN, port_in_use, supervise

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path / "var"), "GATEWAY_AUDIT_BACKEND": "memory",
            "GATEWAY_DEMO_REGIONS_PORT": str(_free_port()), "GATEWAY_LOG_LEVEL": "INFO"}


def _json_lines(text: str) -> tuple[list[dict], list[str]]:
    docs, plain = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            docs.append(json.loads(line))
        except ValueError:
            plain.append(line)
    return docs, plain


def _serve_lines(err: Path) -> list[dict]:
    return [d for d in _json_lines(err.read_text())[0] if d.get("logger") == "gateway.serve"]


def _wait_for(predicate, proc: subprocess.Popen, err: Path, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        assert proc.poll() is None, err.read_text()[-3000:]
        time.sleep(0.3)
    raise AssertionError(f"not within {seconds} s: {err.read_text()[-3000:]}")


def test_a_worker_killed_while_serving_is_logged_and_replaced_while_the_other_keeps_serving(tmp_path: Path) -> None:
    port = _free_port()
    err = tmp_path / "stderr.log"
    with err.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--demo", "--workers", "2", "--port",
                                 str(port)], cwd=REPO, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=out,
                                start_new_session=True)
    try:
        def announced() -> list[int]:
            pids = [d["pid"] for d in _serve_lines(err) if d["message"].startswith("worker ")
                    and "serving on" in d["message"]]
            return pids if len(pids) >= 2 else []

        first = _wait_for(announced, proc, err)
        victim, survivor = first[0], first[1]
        os.kill(victim, signal.SIGKILL)

        def replaced() -> dict | None:
            return next((d for d in _serve_lines(err) if d["level"] == "ERROR" and d.get("pid") == victim), None)

        line = _wait_for(replaced, proc, err, 60)
        assert line["exit_code"] == -signal.SIGKILL and "killed by SIGKILL" in line["message"]
        new = line["new_pid"]
        assert new not in (victim, survivor)
        _wait_for(lambda: new in [d["pid"] for d in _serve_lines(err) if "serving on" in d["message"]], proc, err, 90)
        os.kill(survivor, 0)   # the control: the other worker was left alone (same process, still running)
        os.kill(new, 0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200 and json.loads(answer.read()) == {"status": "ok"}
        proc.send_signal(signal.SIGTERM)   # the parent alone: it forwards, each worker drains and exits
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    docs, plain = _json_lines(err.read_text())
    assert plain == [], plain[:5]


@pytest.mark.parametrize("workers, reuse_port", [(2, True), (2, False), (1, False)],
                         ids=["another-gateway-s-socket", "another-program-s-socket", "single-worker"])
def test_a_port_already_in_use_is_one_json_error_and_exit_status_3_never_a_shared_port(
        tmp_path: Path, workers: int, reuse_port: bool) -> None:
    holder = socket.socket()
    if reuse_port:   # what a worker of another ``serve --workers N`` holds
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        assert port_in_use("127.0.0.1", port) is not None
        assert port_in_use("127.0.0.1", _free_port()) is None   # the control: a free port is free
        run = subprocess.run([sys.executable, "-m", "gateway", "serve", "--demo", "--workers", str(workers),
                              "--port", str(port)], cwd=REPO, env=_env(tmp_path), capture_output=True, timeout=120)
    finally:
        holder.close()
    assert run.returncode == EXIT_CANNOT_LISTEN, run.stderr.decode()[-3000:]
    docs, plain = _json_lines(run.stderr.decode())
    assert plain == [], plain[:10]
    errors = [d for d in docs if d["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0]["logger"] == "gateway.serve"
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in errors[0]["message"]
    assert errors[0]["errno"] == 98
    assert not [d for d in docs if "serving on" in d["message"]]


# --- the supervisor, with stand-in workers --------------------------------------------------------
def _stand_in(ready, exit_code: int, ready_first: bool, live_s: float) -> None:
    if ready_first:
        ready.set()
    time.sleep(live_s)
    os._exit(exit_code)


def _starter(plans: dict[int, list[tuple[int, bool, float]]], started: list[int]):
    ctx = mp.get_context("spawn")

    def start(i: int):
        exit_code, ready_first, live_s = plans[i].pop(0) if len(plans[i]) > 1 else plans[i][0]
        ready = ctx.Event()
        proc = ctx.Process(target=_stand_in, args=(ready, exit_code, ready_first, live_s))
        proc.start()
        started.append(i)
        return proc, ready

    return start


def test_a_worker_that_keeps_dying_is_restarted_up_to_the_limit_then_the_gateway_stops(caplog) -> None:
    started: list[int] = []
    # worker 0 serves, then dies with status 7 each time; worker 1 serves until it is stopped
    start = _starter({0: [(7, True, 0.2)], 1: [(0, True, 120.0)]}, started)
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="gateway.serve"):
        code = supervise(start, 2, restart_limit=2, restart_window_s=60)
    assert code == 7
    assert time.monotonic() - t0 < 60          # worker 1 was stopped, not waited for
    assert started.count(0) == 3 and started.count(1) == 1   # started, restarted twice, then given up
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.serve"]
    assert sum("started again as worker" in m for m in messages) == 2
    assert any("after 2 restarts within 60 s (exit status 7): stopping the gateway" in m for m in messages)


def test_a_worker_that_dies_before_it_listens_is_not_restarted(caplog) -> None:
    started: list[int] = []
    start = _starter({0: [(3, False, 0.0)], 1: [(0, True, 120.0)]}, started)
    with caplog.at_level(logging.INFO, logger="gateway.serve"):
        code = supervise(start, 2)
    assert code == 3 and sorted(started) == [0, 1]
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.serve"]
    assert any("ended before it listened (exit status 3): stopping the gateway" in m for m in messages)
    assert not any("started again" in m for m in messages)


class _FakeWorker:
    """A worker stand-in whose end is reported late: its sentinel is ready (its descriptors closed)
    while ``exitcode`` still reads None for ``late`` more looks, as a process between closing its
    descriptors and becoming a zombie does. ``terminate`` ends it at once (-SIGTERM)."""

    def __init__(self, name: str, *, ended: int | None = None, late: int = 0, ready: bool = True) -> None:
        import multiprocessing as _mp
        import signal as _signal
        self.name, self.pid = name, os.getpid()
        self._r, self._w = os.pipe()
        self.sentinel = self._r
        self._code, self._late, self._sigterm = ended, late, -_signal.SIGTERM
        self.ready = _mp.get_context("spawn").Event()
        if ready:
            self.ready.set()
        if ended is not None:
            os.close(self._w)
            self._w = None

    @property
    def exitcode(self) -> int | None:
        if self._code is None:
            return None
        if self._late > 0:
            self._late -= 1
            return None
        return self._code

    def is_alive(self) -> bool:
        return self._code is None

    def terminate(self) -> None:
        if self._code is None:
            self._code = self._sigterm
            os.close(self._w)
            self._w = None

    def join(self, timeout: float | None = None) -> None:
        pass


def test_a_worker_whose_end_is_reported_late_still_stops_the_gateway() -> None:
    """A worker's sentinel is ready a moment before its exit status is: the supervisor took the
    processes running before its wait, so a worker whose status came one look later was skipped for
    good -- its failure never stopped the gateway, and the other worker was waited for (a CI run hung
    120 s on it). Worker 0 dies before it listens, reported two looks late; worker 1 serves on."""
    started: list[str] = []
    workers = {0: _FakeWorker("w0", ended=3, late=2, ready=False), 1: _FakeWorker("w1")}

    def start(i: int):
        started.append(f"w{i}")
        w = workers[i]
        return w, w.ready

    t0 = time.monotonic()
    code = supervise(start, 2)
    assert code == 3 and started == ["w0", "w1"]
    assert workers[1].exitcode == workers[1]._sigterm   # terminated, not waited for
    assert time.monotonic() - t0 < 5
