"""Process figures from /proc for the benchmarks: a server's processes, their CPU time and memory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return sorted(out)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (workers, their audit writer processes, demo regions...)."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return sorted(out)


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine has spent busy since boot (/proc/stat: all but idle and
    iowait): what the kernel's own threads do for a process -- an fdatasync run by a kworker on
    behalf of Linux AIO, the loopback's softirqs -- counts here and in no process's figure."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle   # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / CLK_TCK


#: what a server process is, by its command line: the SQLite audit writer process
#: (``gateway/audit/writer_proc.py``) or the rest of the gateway (its workers, the demo regions)
AUDIT_WRITER = "audit_writer"
GATEWAY = "gateway"


def role_of(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return GATEWAY
    return AUDIT_WRITER if b"gateway.audit.writer_proc" in cmdline else GATEWAY


def cpu_seconds_by_role(pids: Sequence[int]) -> dict[str, float]:
    """CPU seconds of ``pids`` summed per :func:`role_of` (every role present, even at 0)."""
    out = {GATEWAY: 0.0, AUDIT_WRITER: 0.0}
    for pid in pids:
        out[role_of(pid)] += cpu_seconds([pid])
    return out


def rss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the workers of ``--workers N`` and their audit writers)."""
    return [pid, *descendants(pid)]
