"""load/bench_disk.py: the fdatasync latency probe an operator runs where the audit file lives."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import load.bench_disk as bench_disk


def test_a_stalling_sync_is_listed_with_its_time_and_the_scratch_file_is_removed(tmp_path: Path, monkeypatch) -> None:
    real, calls = os.fdatasync, []

    def disk(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:                      # the third sync stalls, as this VM's disk does now and then
            time.sleep(bench_disk.STALL_MS * 1.6 / 1000)
        real(fd)

    monkeypatch.setattr(bench_disk.os, "fdatasync", disk)
    r = bench_disk.probe(tmp_path / "d", seconds=0.4, interval_s=0.001, progress=None)
    assert r["syncs"] == len(calls) >= 3
    assert len(r["stalls"]) >= 1 and r["stalls"][0]["ms"] >= bench_disk.STALL_MS
    lat = r["fdatasync_ms"]
    assert lat["count"] == r["syncs"] and 0 < lat["p50"] <= lat["max"] and lat["max"] >= bench_disk.STALL_MS
    assert list((tmp_path / "d").iterdir()) == []
    text = bench_disk.render(r)
    assert f"syncs >= {bench_disk.STALL_MS:g} ms: {len(r['stalls'])}" in text and "worst:" in text


def test_the_command_writes_its_json_and_refuses_a_probe_without_bounds(tmp_path: Path, capsys) -> None:
    out = tmp_path / "disk.json"
    assert bench_disk.main(["--seconds", "1", "--dir", str(tmp_path / "d"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["syncs"] > 10 and doc["fdatasync_ms"]["p99"] >= doc["fdatasync_ms"]["p50"] > 0
    assert "fdatasync latency: p50" in capsys.readouterr().out
    try:
        bench_disk.main(["--seconds", "0"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("--seconds 0 was accepted")


def test_a_folder_it_cannot_write_is_refused_with_a_bilingual_message(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert bench_disk.main(["--seconds", "1", "--dir", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "无法在" in err and "cannot probe the disk in" in err and str(blocker / "sub") in err
