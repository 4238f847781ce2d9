"""The benchmarks split a server's CPU between the audit writer process and the rest of the gateway."""

from __future__ import annotations

import subprocess
import sys
import time

from load.procstat import AUDIT_WRITER, GATEWAY, cpu_seconds_by_role, role_of

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)\n"


def _burner(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BURN, *argv])


def _wait_cpu(pid: int, seconds: float) -> None:
    from load.procstat import cpu_seconds

    deadline = time.monotonic() + 20
    while cpu_seconds([pid]) < seconds and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_process_named_like_the_audit_writer_is_counted_as_the_writer() -> None:
    # the role comes from the command line: argv carries the writer module's name, as
    # ``python -m gateway.audit.writer_proc`` does
    writer, other = _burner("gateway.audit.writer_proc"), _burner("serve")
    try:
        for p in (writer, other):
            _wait_cpu(p.pid, 0.25)
        assert role_of(writer.pid) == AUDIT_WRITER
        assert role_of(other.pid) == GATEWAY
        split = cpu_seconds_by_role([writer.pid, other.pid])
        assert set(split) == {AUDIT_WRITER, GATEWAY}
        assert 0.25 <= split[AUDIT_WRITER] < 5 and 0.25 <= split[GATEWAY] < 5
        only_gateway = cpu_seconds_by_role([other.pid])
        assert only_gateway[AUDIT_WRITER] == 0.0 and only_gateway[GATEWAY] >= 0.25
    finally:
        for p in (writer, other):
            p.kill()
            p.wait()


def test_a_process_that_is_gone_counts_as_gateway_with_no_cpu() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert role_of(p.pid) == GATEWAY
    assert cpu_seconds_by_role([p.pid]) == {GATEWAY: 0.0, AUDIT_WRITER: 0.0}
