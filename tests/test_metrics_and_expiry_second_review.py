"""A second review of the two operator features of session 21: ``GET /metrics`` and the trust-expiry warning.

What was found, each fixed and pinned here:

* ``serve --workers N`` with ``metrics_port`` set and a metrics directory that cannot be made (``var_dir``
  not writable, ``<var_dir>/metrics`` a file, a left-over directory that cannot be removed) stopped with a
  Python traceback (exit 1); now it is refused like any setting: one line in Chinese and English naming the
  directory, exit 2, before any worker starts;
* a plain ``serve`` (one process) started with ``PROMETHEUS_MULTIPROC_DIR`` in its environment (another
  exporter's, a service manager's) did not start at all when that directory did not exist
  (FileNotFoundError from prometheus_client), and wrote its values into it when it did: one process keeps
  its metrics in memory whatever the environment says;
* ``material_expiry`` called an issuer certificate at exactly its notAfter "expired" while the verifier
  (``valid_at``, RFC 5280: notAfter inclusive) still accepted it and the region still read ``ok``: at that
  moment ``trust check`` exited 0 and nothing warned. A certificate is past only after its notAfter, the
  trust list from its ``expires_at`` on (as ``TrustSnapshot.expired``);
* the console's English note said "1 days left";
* ``trust check`` with a missing or unreadable list or key said only the errno (or cryptography's "Unable
  to load PEM file", no path): now which file, what it should be, in Chinese and English (exit 2 as before).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import socket
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from gateway.__main__ import _refused
from gateway.__main__ import main as gateway_main
from gateway.app import create_app
from gateway.config import ConfigError, Settings
from gateway.console.pages import expiry_note
from gateway.devtrust import to_pem, trust_list_document
from gateway.metrics import MULTIPROC_ENV, Supervision
from gateway.trust import build_snapshot, material_expiry
from gateway.trustlist import TEST_OPERATOR_PUBLIC

from .conftest import NOW
from .test_trust_material_expiry_is_warned_ahead import REGION, _cli_list, _issuer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- metrics -------------------------------------------------------------------------------------------------

def test_a_metrics_directory_that_cannot_be_made_is_refused_as_a_setting_not_a_traceback(tmp_path: Path,
                                                                                          monkeypatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    var = tmp_path / "var"
    var.mkdir()
    (var / "metrics").write_text("not a directory")   # root ignores permissions: a file where the directory goes
    settings = Settings(var_dir=str(var), port=9196, metrics_port=9197, workers=2)
    with pytest.raises(ConfigError) as caught:
        Supervision(settings)
    message = str(caught.value)
    assert "指标目录无法准备" in message and f"the metrics directory {var / 'metrics' / '9196'}" in message
    assert "metrics_port = 0" in message
    assert os.environ.get(MULTIPROC_ENV) is None      # nothing handed to workers
    assert _refused(caught.value) == 2                 # main: "配置错误 / configuration error: ...", exit 2


@pytest.mark.parametrize("exists", [False, True])
async def test_one_process_keeps_its_metrics_in_memory_whatever_the_environment_says(
        world, aiohttp_client, tmp_path: Path, monkeypatch, exists: bool) -> None:
    foreign = tmp_path / "another-exporters-dir"
    if exists:
        foreign.mkdir()
    monkeypatch.setenv(MULTIPROC_ENV, str(foreign))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())   # as the library chose at its import
    port = _free_port()
    settings = dataclasses.replace(world.settings, metrics_port=port)
    # before: FileNotFoundError '.../counter_<pid>.db' at start-up when the directory did not exist
    client = await aiohttp_client(create_app(world.services(settings=settings)), headers=world.auth())
    assert (await client.get("/healthz")).status == 200
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    assert got[("elicence_gateway_requests_total", (("route", "/healthz"), ("status", "200")))] == 1
    assert got[("elicence_gateway_workers", ())] == 1
    # nothing written into the other program's directory (before: counter_<pid>.db, gauge_*.db, histogram_*.db)
    assert (list(foreign.iterdir()) if exists else foreign.exists()) in ([], False)


# --- trust material expiry: the boundaries -------------------------------------------------------------------

@pytest.fixture(scope="module")
def at_the_edge(world):
    """REGION gets an issuer certificate whose notAfter is exactly ``NOW + 10 days``."""
    edge = NOW + dt.timedelta(days=10)
    issuer = _issuer(world, REGION, 341100_931, edge, "issuer-edge")
    regions = copy.deepcopy(world.doc["regions"])
    regions[REGION]["issuers"].append(to_pem(issuer.cert.der))
    doc = trust_list_document(regions, NOW - dt.timedelta(days=1), version=11, valid_days=201)
    return build_snapshot(doc, world.regions), issuer, edge


def test_a_certificate_at_exactly_its_not_after_is_expiring_not_expired_as_the_verifier_judges_it(
        world, at_the_edge) -> None:
    snap, issuer, edge = at_the_edge
    entry = snap.by_key_id[issuer.cert.key_id]
    assert entry.cert.not_after == edge

    def where(now: dt.datetime, days: int = 30) -> tuple[list[int], list[int]]:
        report = material_expiry(snap, now, days)
        mine = lambda items: [m.days_left for m in items if m.key_id == issuer.cert.key_id]  # noqa: E731
        return mine(report.expiring), mine(report.expired)

    # at its notAfter the certificate still verifies (RFC 5280: inclusive): expiring, less than a day left
    assert entry.valid_at(edge)
    assert where(edge) == ([0], [])                         # before: ([], [0]) -- "expired" while accepted
    after = edge + dt.timedelta(microseconds=1)
    assert not entry.valid_at(after) and where(after) == ([], [-1])
    # the window's far edge is inside the window, a moment further is not
    assert where(edge - dt.timedelta(days=30)) == ([30], [])
    assert where(edge - dt.timedelta(days=30, microseconds=1)) == ([], [])
    # 0 days: no warning, even at the edge; the certificate is not listed as expired either
    assert where(edge, 0) == ([], [])
    # the trust list itself is expired FROM its expires_at on, as the gateway refuses it
    report = material_expiry(snap, snap.expires_at, 30)
    assert snap.expired(snap.expires_at)
    assert [m.kind for m in report.expired if m.kind == "trust_list"] == ["trust_list"]
    assert [m.kind for m in report.expiring if m.kind == "trust_list"] == []


def test_the_english_note_says_1_day_left_not_1_days() -> None:
    at = NOW + dt.timedelta(days=1, hours=5)
    assert "(1 day left)" in expiry_note("en", "issuer", at, 1)
    assert "（剩余 1 天）" in expiry_note("zh", "issuer", at, 1)
    assert "(2 days left)" in expiry_note("en", "issuer", at + dt.timedelta(days=1), 2)
    assert "(less than 1 day left)" in expiry_note("en", "issuer", at, 0)


# --- trust check: which file could not be read --------------------------------------------------------------

def test_trust_check_names_the_file_it_cannot_read_in_chinese_and_english(world, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-list.json"
    assert gateway_main(["trust", "check", str(missing), "--pubkey", str(TEST_OPERATOR_PUBLIC)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"错误 / error: 无法读取信任列表 / cannot read the signed trust list {missing}: ")
    assert "No such file or directory" in err
    listed = _cli_list(world, tmp_path, expiring_in=None)
    junk = tmp_path / "operator.pem"
    junk.write_text("not a key\n")
    for key, why in ((junk, "Unable to load PEM file"), (tmp_path / "absent.pem", "No such file or directory")):
        assert gateway_main(["trust", "check", str(listed), "--pubkey", str(TEST_OPERATOR_PUBLIC),
                             "--pubkey", str(key)]) == 2
        err = capsys.readouterr().err
        # before: "错误 / error: Unable to load PEM file. ..." -- which file, and that it is the key, unsaid
        assert err.startswith("错误 / error: 无法读取操作方公钥 / cannot read the operator public key "
                              f"{key} "), err
        assert why in err
    # a good key still gives the report (exit 0: nothing expires within 30 days)
    assert gateway_main(["trust", "check", str(listed), "--pubkey", str(TEST_OPERATOR_PUBLIC)]) == 0


def test_a_whole_hierarchy_expiring_logs_the_soonest_items_then_one_line(world, caplog) -> None:
    """Every region's anchor and issuer inside the window (91 items here: the list, 45 anchors, 45
    issuers) gave 91 WARNING lines of ~700 bytes at start, at each reload and daily; now the 20 soonest,
    then one line naming how many more and where to see them."""
    import logging

    from gateway.trust_routes import EXPIRY_LOG_ITEMS, ExpiryWarner

    report = material_expiry(world.snapshot, NOW, 3650)
    assert len(report.expiring) == 91 and EXPIRY_LOG_ITEMS == 20
    with caplog.at_level(logging.WARNING, logger="gateway.trust"):
        assert ExpiryWarner(3650, lambda: NOW).check(world.snapshot, "startup") == 21
    lines = [r for r in caplog.records if r.name == "gateway.trust"]
    assert [r.days_left for r in lines[:20]] == [m.days_left for m in report.expiring[:20]]
    assert lines[20].expiry_more == 71 and "71 more item(s)" in lines[20].getMessage()
    assert "GET /v1/admin/trust" in lines[20].getMessage() and len(lines) == 21
    # a few items: one line each, no summary
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.trust"):
        assert ExpiryWarner(3650, lambda: NOW).check(dataclasses.replace(
            world.snapshot, regions={}), "startup") == 1   # the list alone
    assert [r.getMessage().startswith("trust material expires in") for r in caplog.records] == [True]
