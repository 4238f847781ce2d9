"""Every process of ``serve --workers N`` logs JSON lines through the personal-data filter.

The workers are spawned (a fresh interpreter each): before this was fixed they started with Python's
bare logging, so their warnings reached stderr as plain text without the redaction filter, and
their INFO lines were lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_each_announce_themselves_in_json_and_nothing_on_stderr_is_plain_text(tmp_path: Path) -> None:
    port = _free_port()
    err = tmp_path / "stderr.log"
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path / "var"), "GATEWAY_AUDIT_BACKEND": "memory",
           "GATEWAY_DEMO_REGIONS_PORT": str(_free_port()), "GATEWAY_LOG_LEVEL": "INFO"}
    with err.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--demo", "--workers", "2", "--port",
                                 str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=out,
                                start_new_session=True)
    try:
        deadline, announced = time.monotonic() + 90, []
        while time.monotonic() < deadline and len(announced) < 2:
            assert proc.poll() is None, err.read_text()[-2000:]
            lines = [ln for ln in err.read_text().splitlines() if ln.strip()]
            announced = [json.loads(ln) for ln in lines if '"gateway.serve"' in ln]
            time.sleep(0.3)
        assert len(announced) == 2, err.read_text()[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert {a["level"] for a in announced} == {"INFO"}
    assert len({a["pid"] for a in announced}) == 2 and proc.pid not in {a["pid"] for a in announced}
    assert all(a["message"] == f"worker {a['pid']} serving on http://127.0.0.1:{port}" for a in announced)
    plain = []
    for line in err.read_text().splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            plain.append(line)
            continue
        assert {"time", "level", "logger", "message", "request_id"} <= set(doc)
    assert plain == [], plain[:5]
