"""``serve --workers N`` in demo mode: every worker writes the signed demo trust list as it starts.
Two writing at the same moment must both succeed (a shared temporary file name let the first rename
take the file from under the second, whose worker died at start-up)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

import gateway.bootstrap as bootstrap

DOC = {"version": 1, "regions": [], "note": "synthetic TEST trust list"}


def test_a_second_writer_finishing_inside_the_first_leaves_both_successful(tmp_path: Path, monkeypatch) -> None:
    real_replace = os.replace
    nested: list[Path] = []
    started: list[bool] = []

    def interleaved(src: str, dst: object) -> None:
        if not started:   # the first writer is about to rename: a second one runs from start to end now
            started.append(True)
            nested.append(bootstrap.write_signed_demo_list(tmp_path, DOC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interleaved)   # what Path.replace calls too
    path = bootstrap.write_signed_demo_list(tmp_path, DOC)
    assert nested == [path]
    assert orjson.loads(path.read_bytes())["trust_list"] == DOC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust-list.signed.json"]   # no temporary left


def test_an_unchanged_list_is_not_rewritten(tmp_path: Path) -> None:
    path = bootstrap.write_signed_demo_list(tmp_path, DOC)
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    assert bootstrap.write_signed_demo_list(tmp_path, DOC) == path
    assert path.stat().st_mtime_ns == before - 10**9


def test_the_parent_writes_the_list_before_the_workers_start(tmp_path: Path) -> None:
    from gateway.config import Settings

    settings = Settings(demo=True, var_dir=str(tmp_path), audit_backend="memory")
    bootstrap.prepare_shared(settings)
    path = tmp_path / "demo" / "trust-list.signed.json"
    written = orjson.loads(path.read_bytes())
    mtime = path.stat().st_mtime_ns
    services = bootstrap.build_services(settings)          # what each worker does at start-up
    assert services.trust_source is not None
    assert orjson.loads(path.read_bytes()) == written and path.stat().st_mtime_ns == mtime   # found, not rewritten
