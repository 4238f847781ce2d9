"""The operator is warned BEFORE trust material expires, not the morning after.

A trust list or an issuer certificate that expires at night made every licence of its region
``indeterminate`` (TRUST_UNAVAILABLE) or ``invalid`` (ISSUER_CERT_EXPIRED) in the morning, and nothing
said so ahead of time: ``GET /v1/admin/trust`` showed only whether the list in force *had* expired.
Now, from the snapshot in force and the setting ``trust_expiry_warn_days`` (default 30):

* :func:`gateway.trust.material_expiry` (pure, explicit ``now``) lists what expires within the window,
  soonest first (the list itself, each region's anchors, intermediates and issuer certificates), and
  what is already past (``expired``: not "expiring");
* ``GET /v1/admin/trust`` carries it (``expiring``, ``expired_material``, ``trust_expiry_warn_days``);
* one WARNING log line per expiring item when the list comes into force and once a day after, not per
  request;
* the console's status page shows an amber note in the region's row, Chinese first;
* ``python -m gateway trust check`` prints the lists and exits 3 when something expires in the window.

Made from the simulator's TEST framework (the session ``world``) with explicit clocks.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from gateway.__main__ import EXIT_TRUST_EXPIRING
from gateway.__main__ import main as gateway_main
from gateway.app import LIVE, SERVICES, create_app, region_verifiable
from gateway.config import ConfigError, Settings, load_settings
from gateway.console.pages import expiry_note
from gateway.devtrust import make_anchor, make_issuer, to_pem, trust_list_document
from gateway.edges import FileTrustSource, MemoryTrustSource
from gateway.logging_setup import json_handler
from gateway.openapi_routes import load_spec
from gateway.trust import build_snapshot, material_expiry
from gateway.trust_routes import ExpiryWarner
from gateway.trustlist import (TEST_OPERATOR_PRIVATE, TEST_OPERATOR_PUBLIC, canonical_json, load_operator_key,
                               load_operator_private_key, sign_trust_list)

from .conftest import NOW
from .test_console_http import sign_in
from .test_openapi_contract import validate_body

REGION = "341100"          # 滁州市, ES256: its issuer certificates are quick to make
OTHER = "340100"           # 合肥市, ES256
ADMIN = {"client_id": "load-operator", "scope": "admin"}   # the TEST operator (scope admin only)


@dataclass
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now


def _issuer(world, code: str, serial: int, not_after: dt.datetime, label: str):
    """A TEST issuer certificate of ``code`` under the region's own TEST anchor."""
    m = world.material[code]
    return make_issuer(code, m.anchor.algorithm, m.anchor_key, m.anchor, serial, NOW - dt.timedelta(days=60),
                       not_after, label)


@pytest.fixture(scope="module")
def soon(world):
    """REGION gets a second issuer certificate expiring 10 days after NOW; OTHER keeps one expired 2 days
    before NOW and one expiring 31 days after NOW (outside the default window). The list itself expires
    200 days after NOW."""
    ten = _issuer(world, REGION, 341100_901, NOW + dt.timedelta(days=10), "issuer-expiring")
    gone = _issuer(world, OTHER, 340100_902, NOW - dt.timedelta(days=2), "issuer-expired")
    later = _issuer(world, OTHER, 340100_903, NOW + dt.timedelta(days=31), "issuer-later")
    regions = copy.deepcopy(world.doc["regions"])
    regions[REGION]["issuers"].append(to_pem(ten.cert.der))
    regions[OTHER]["issuers"] += [to_pem(gone.cert.der), to_pem(later.cert.der)]
    doc = trust_list_document(regions, NOW - dt.timedelta(days=1), version=7, valid_days=201)
    return doc, ten, gone, later


# --- 1. the pure function ------------------------------------------------------------------------------
def test_material_expiring_in_10_days_is_listed_with_its_days_left(world, soon) -> None:
    doc, ten, gone, later = soon
    report = material_expiry(build_snapshot(doc, world.regions), NOW, 30)
    assert [m.as_dict() for m in report.expiring] == [{
        "kind": "issuer", "region": REGION, "subject": ten.cert.subject, "key_id": ten.cert.key_id,
        "serial": ten.cert.serial_hex, "not_after": "2026-12-07T04:00:00+00:00", "days_left": 10}]
    assert report.warn_days == 30 and report.for_region(REGION) == report.expiring and report.for_region(OTHER) == ()
    # already expired: not "expiring", reported as expired
    assert [(m.kind, m.region, m.key_id, m.days_left) for m in report.expired] == [("issuer", OTHER, gone.cert.key_id, -2)]
    # half a day later: 9 whole days left; a day past it: expired
    assert material_expiry(build_snapshot(doc, world.regions), NOW + dt.timedelta(hours=12), 30).expiring[0].days_left == 9
    after = material_expiry(build_snapshot(doc, world.regions), NOW + dt.timedelta(days=11), 30)
    assert ten.cert.key_id not in [m.key_id for m in after.expiring]
    assert [(m.key_id, m.days_left) for m in after.expired] == [(gone.cert.key_id, -13), (ten.cert.key_id, -1)]


def test_outside_the_window_nothing_is_expiring(world, soon) -> None:
    doc, ten, gone, later = soon
    snap = build_snapshot(doc, world.regions)
    assert material_expiry(snap, NOW, 9).expiring == ()            # 10 days left: outside a 9-day window
    assert material_expiry(snap, NOW, 0).expiring == ()            # 0: no warning
    assert material_expiry(world.snapshot, NOW, 30).expiring == ()  # the suite's framework: a year ahead
    assert material_expiry(world.snapshot, NOW, 30).expired == ()
    # a wider window takes them in, soonest first; the list itself (200 days) is kind trust_list, no region
    wide = material_expiry(snap, NOW, 200)
    assert [(m.kind, m.region, m.days_left) for m in wide.expiring] == [
        ("issuer", REGION, 10), ("issuer", OTHER, 31), ("trust_list", None, 200)]
    assert wide.expiring[-1].subject == "dev-TEST v7" and wide.expiring[-1].key_id is None


def test_an_intermediate_and_an_anchor_are_listed_and_a_revoked_issuer_is_not(world, soon) -> None:
    doc, ten, _, _ = soon
    snap = build_snapshot(doc, world.regions)
    anchor = world.material[REGION].anchor          # 10 years: inside a 4,000-day window
    wide = material_expiry(snap, NOW, 4000)
    assert ("anchor", REGION, anchor.key_id) in [(m.kind, m.region, m.key_id) for m in wide.expiring]
    revoked = copy.deepcopy(doc)
    revoked["regions"][REGION]["revoked"] = [{"serial": ten.cert.serial_hex, "revoked_at": NOW.isoformat(),
                                              "reason": "superseded"}]
    assert material_expiry(build_snapshot(revoked, world.regions), NOW, 30).expiring == ()


def test_the_setting_is_validated() -> None:
    assert Settings().trust_expiry_warn_days == 30
    assert load_settings(env={"GATEWAY_TRUST_EXPIRY_WARN_DAYS": "14"}, demo=True).trust_expiry_warn_days == 14
    with pytest.raises(ConfigError, match="trust_expiry_warn_days must be 0..3650"):
        load_settings(env={"GATEWAY_TRUST_EXPIRY_WARN_DAYS": "-1"}, demo=True)


# --- 2. the log: once when loaded, once a day after --------------------------------------------------
def _lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.trust" and r.levelno == logging.WARNING
            and r.getMessage().startswith("trust material expires")]


def test_the_warner_logs_each_expiring_item_once_a_day_as_json(world, soon, caplog) -> None:
    doc, ten, _, _ = soon
    snap = build_snapshot(doc, world.regions)
    clock = Clock(NOW)
    warner = ExpiryWarner(30, clock)
    stream = io.StringIO()
    handler = json_handler(stream)
    logging.getLogger("gateway.trust").addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.trust"):
            assert warner.check(snap, "startup") == 1
            clock.now += dt.timedelta(hours=23)
            assert warner.check(snap, "daily") == 0          # not again the same day
            clock.now += dt.timedelta(hours=1)
            # a day later: again, one day fewer, and the issuer 31 days away has come into the window
            assert warner.check(snap, "daily") == 2
            other = build_snapshot(doc, world.regions)
            assert warner.check(other, "file-change") == 2   # a list newly in force: at once
            assert warner.check(world.snapshot, "admin") == 0  # nothing expiring: no line
    finally:
        logging.getLogger("gateway.trust").removeHandler(handler)
    assert [(r.trigger, r.days_left) for r in _lines(caplog)] == [
        ("startup", 10), ("daily", 9), ("daily", 30), ("file-change", 9), ("file-change", 30)]
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines()[:2])
    assert first["level"] == "WARNING" and first["logger"] == "gateway.trust"
    assert {k: first[k] for k in ("expiry_kind", "expiry_region", "expiry_key_id", "expiry_subject", "not_after",
                                  "days_left", "warn_days", "trust_list_version", "trigger")} == {
        "expiry_kind": "issuer", "expiry_region": REGION, "expiry_key_id": ten.cert.key_id,
        "expiry_subject": ten.cert.subject, "not_after": "2026-12-07T04:00:00+00:00", "days_left": 10,
        "warn_days": 30, "trust_list_version": 7, "trigger": "startup"}
    assert first["message"].startswith(f"trust material expires in 10 day(s): region {REGION} issuer certificate ")
    assert second["days_left"] == 9 and second["trigger"] == "daily"
    # off: 0 days, or a worker other than the first of serve --workers N
    assert ExpiryWarner(0, clock).check(snap, "startup") == 0
    assert ExpiryWarner(30, clock, enabled=False).check(snap, "startup") == 0


def _publish(path: Path, doc: dict) -> None:
    path.write_bytes(canonical_json(sign_trust_list(doc, load_operator_private_key(TEST_OPERATOR_PRIVATE))))


async def test_the_gateway_warns_at_start_and_reload_not_per_request_and_admin_trust_lists_it(
        world, soon, aiohttp_client, tmp_path, caplog) -> None:
    doc, ten, gone, _ = soon
    path = tmp_path / "trust-list.signed.json"
    _publish(path, doc)
    source = FileTrustSource(path, world.regions, 3, [load_operator_key(TEST_OPERATOR_PUBLIC)], clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="gateway.trust"):
        client = await aiohttp_client(create_app(world.services(trust_source=source)), headers=world.auth(**ADMIN))
        assert [(r.trigger, r.days_left) for r in _lines(caplog)] == [("startup", 10)]
        for _ in range(3):
            body = await (await client.get("/v1/admin/trust")).json()
        assert len(_lines(caplog)) == 1                    # requests log nothing
        validate_body(load_spec(), "get", "/v1/admin/trust", 200, "application/json", body)
        assert body["trust_expiry_warn_days"] == 30
        assert body["expiring"] == [{"kind": "issuer", "region": REGION, "subject": ten.cert.subject,
                                     "key_id": ten.cert.key_id, "serial": ten.cert.serial_hex,
                                     "not_after": "2026-12-07T04:00:00+00:00", "days_left": 10}]
        assert [(m["region"], m["key_id"], m["days_left"]) for m in body["expired_material"]] == [
            (OTHER, gone.cert.key_id, -2)]
        assert body["in_force"]["expired"] is False
        # a newer list comes into force: its expiring material is logged at once
        _publish(path, dict(doc, version=8))
        assert (await (await client.post("/v1/admin/trust/reload")).json())["outcome"] == "accepted"
        assert [(r.trigger, r.trust_list_version) for r in _lines(caplog)] == [("startup", 7), ("admin", 8)]
        # the same list again: unchanged, no new lines
        assert (await (await client.post("/v1/admin/trust/reload")).json())["outcome"] == "unchanged"
        assert len(_lines(caplog)) == 2


async def test_an_expired_list_is_reported_as_expired_not_as_expiring(world, aiohttp_client, caplog) -> None:
    doc = trust_list_document(world.doc["regions"], NOW - dt.timedelta(days=40), version=3, valid_days=30)
    with caplog.at_level(logging.WARNING, logger="gateway.trust"):
        client = await aiohttp_client(create_app(world.services(
            trust_source=MemoryTrustSource(build_snapshot(doc, world.regions)))), headers=world.auth(**ADMIN))
        body = await (await client.get("/v1/admin/trust")).json()
    assert body["in_force"]["expired"] is True                      # as before
    assert body["expiring"] == [] and _lines(caplog) == []
    assert [(m["kind"], m["region"], m["subject"], m["not_after"], m["days_left"]) for m in body["expired_material"]] \
        == [("trust_list", None, "dev-TEST v3", "2026-11-17T04:00:00+00:00", -10)]
    validate_body(load_spec(), "get", "/v1/admin/trust", 200, "application/json", body)


# --- 3. the console's status page ------------------------------------------------------------------------
ZH_NOTE = "签发机构证书将于 2026-12-07 12:00（北京时间）到期（剩余 10 天），请联系系统管理员及时更新。"
EN_NOTE = ("The issuer certificate expires on 2026-12-07 12:00 (Beijing time, UTC+8) (10 days left): "
           "ask the system administrator to renew it in time.")


def _notes(html: str, region: str) -> list[str]:
    row = re.search(rf'<tr data-region="{region}">(.*?)</tr>', html)[1]
    return re.findall(r'<span class="warn expiry-note" data-kind="[a-z_]+">([^<]*)</span>', row)


async def test_the_status_page_shows_an_amber_note_for_the_region_chinese_first(world, soon, client_for) -> None:
    doc, _, _, _ = soon
    console = await client_for(clock=Clock(NOW), trust_source=MemoryTrustSource(build_snapshot(doc, world.regions)))
    await sign_in(console, "supervisor")
    html = await (await console.get("/console/status")).text()
    assert _notes(html, REGION) == [ZH_NOTE]
    assert _notes(html, OTHER) == [] and html.count("expiry-note") == 1   # expired or 31 days away: no note
    assert 'id="trust-version">7<' in html
    en = await (await console.get("/console/status?lang=en")).text()
    assert _notes(en, REGION) == [EN_NOTE]
    # the list itself expiring: one note above the table, not one per region
    short = trust_list_document(world.doc["regions"], NOW - dt.timedelta(days=1), version=9, valid_days=6)
    console.app[LIVE].set_trust(build_snapshot(short, world.regions))
    html = await (await console.get("/console/status?lang=zh")).text()
    assert re.findall(r'<p class="warn expiry-note" data-kind="trust_list">([^<]*)</p>', html) == [
        "信任列表将于 2026-12-02 12:00（北京时间）到期（剩余 5 天），请联系系统管理员及时更新。"]
    assert _notes(html, REGION) == []


def test_the_note_says_less_than_a_day_rather_than_0_days() -> None:
    at = NOW + dt.timedelta(hours=5)
    assert expiry_note("zh", "anchor", at, 0) == "根证书将于 2026-11-27 17:00（北京时间）到期（剩余不足 1 天），请联系系统管理员及时更新。"
    assert expiry_note("en", "intermediate", at, 0).startswith("An intermediate certificate expires on 2026-11-27 17:00")


# --- 4. the operator CLI ----------------------------------------------------------------------------------
def _cli_list(world, tmp_path: Path, *, expiring_in: dt.timedelta | None, list_days: int = 200,
              issued_days_ago: int = 1) -> Path:
    """A signed list dated against the real clock (the CLI judges at now)."""
    now = dt.datetime.now(dt.timezone.utc)
    regions = copy.deepcopy(world.doc["regions"])
    if expiring_in is not None:
        issuer = _issuer(world, REGION, 341100_911, now + expiring_in, "issuer-cli")
        regions[REGION]["issuers"].append(to_pem(issuer.cert.der))
    path = tmp_path / "trust-list.signed.json"
    _publish(path, trust_list_document(regions, now - dt.timedelta(days=issued_days_ago), version=5,
                                       valid_days=list_days))
    return path


def _check(path: Path, *extra: str) -> list[str]:
    return ["trust", "check", str(path), "--pubkey", str(TEST_OPERATOR_PUBLIC), *extra]


def test_trust_check_exits_3_when_something_expires_within_the_window(world, tmp_path, capsys) -> None:
    path = _cli_list(world, tmp_path, expiring_in=dt.timedelta(days=10, hours=1))
    assert EXIT_TRUST_EXPIRING == 3
    assert gateway_main(_check(path)) == 3
    out, err = capsys.readouterr()
    report = orjson.loads(out)
    assert report["trust_expiry_warn_days"] == 30 and report["version"] == 5
    assert [(m["kind"], m["region"], m["days_left"]) for m in report["expiring"]] == [("issuer", REGION, 10)]
    assert "issuer-cli" in report["expiring"][0]["subject"] and report["expired_material"] == []
    assert err.startswith("即将到期 / expiring: 1 item(s) within 30 days")
    # a narrower window: nothing, exit 0
    assert gateway_main(_check(path, "--days", "9")) == 0
    assert orjson.loads(capsys.readouterr().out)["expiring"] == []


def test_trust_check_exit_codes_for_nothing_expiring_an_expired_list_and_no_file(world, tmp_path, capsys) -> None:
    assert gateway_main(_check(_cli_list(world, tmp_path, expiring_in=None))) == 0
    assert orjson.loads(capsys.readouterr().out)["expiring"] == []
    # the list itself within the window: 3, kind trust_list
    assert gateway_main(_check(_cli_list(world, tmp_path, expiring_in=None, list_days=21))) == 3
    assert [m["kind"] for m in orjson.loads(capsys.readouterr().out)["expiring"]] == ["trust_list"]
    # an expired list is refused, as the gateway refuses it: 1
    assert gateway_main(_check(_cli_list(world, tmp_path, expiring_in=None, list_days=2, issued_days_ago=5))) == 1
    assert "拒绝 / refused: expired" in capsys.readouterr().err
    assert gateway_main(_check(tmp_path / "missing.json")) == 2


def test_trust_check_reads_the_list_and_keys_from_the_settings(world, tmp_path, capsys, monkeypatch) -> None:
    path = _cli_list(world, tmp_path, expiring_in=dt.timedelta(days=3, hours=1))
    config = tmp_path / "gateway.toml"
    config.write_text(f'trust_list = "{path}"\ntrust_operator_keys = ["{TEST_OPERATOR_PUBLIC}"]\n'
                      f'trust_expiry_warn_days = 2\n', encoding="utf-8")
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    assert gateway_main(["trust", "check", "--config", str(config)]) == 0       # 3 days left, window 2
    assert orjson.loads(capsys.readouterr().out)["trust_expiry_warn_days"] == 2
    assert gateway_main(["trust", "check", "--config", str(config), "--days", "4"]) == 3
    assert [m["days_left"] for m in orjson.loads(capsys.readouterr().out)["expiring"]] == [3]
    config.write_text("", encoding="utf-8")
    assert gateway_main(["trust", "check", "--config", str(config)]) == 2       # no list, no key: said so
    assert "trust_list" in capsys.readouterr().err


# --- 5. a region whose anchor has expired was shown "ok" ----------------------------------------------------
# The region's trust state (GET /v1/regions, the console's status table, /readyz's "verifiable") looked at
# the issuer certificate's own dates only: with its anchor (or an intermediate) expired, every licence signed
# now is ISSUER_CERT_EXPIRED, yet the region read "ok" / 正常. It now takes the whole path's window.
async def test_a_region_whose_anchor_expired_is_not_shown_ok(world, client_for) -> None:
    alg = world.material[REGION].anchor.algorithm
    old_key, old_anchor = make_anchor(REGION, alg, NOW - dt.timedelta(days=3660), years=10)   # ended 10 days ago
    assert old_anchor.not_after < NOW
    issuer = make_issuer(REGION, alg, old_key, old_anchor, 341100_921, NOW - dt.timedelta(days=30),
                         NOW + dt.timedelta(days=300), "issuer-under-expired-anchor")
    regions = copy.deepcopy(world.doc["regions"])
    regions[REGION] = {"anchors": [to_pem(old_anchor.der)], "issuers": [to_pem(issuer.cert.der)], "revoked": []}
    snap = build_snapshot(trust_list_document(regions, NOW - dt.timedelta(days=1), version=4, valid_days=100),
                          world.regions)
    report = material_expiry(snap, NOW, 30)
    assert [(m.kind, m.region, m.days_left) for m in report.expired] == [("anchor", REGION, -10)]
    client = await client_for(clock=Clock(NOW), trust_source=MemoryTrustSource(snap))
    regions_body = await (await client.get("/v1/regions")).json()
    state = {r["code"]: r["trust"]["state"] for r in regions_body["regions"]}
    assert state[REGION] == "no-valid-issuer" and state[OTHER] == "ok"     # was "ok"
    await sign_in(client, "supervisor")
    html = await (await client.get("/console/status")).text()
    cell = re.search(rf'<tr data-region="{REGION}">.*?<td class="(ok|bad)">([^<]*)', html)
    assert cell.groups() == ("bad", "无有效的签发机构证书")                      # was ("ok", "正常")
    # /readyz's test of a region (a licence signed now under that path is ISSUER_CERT_EXPIRED)
    assert not region_verifiable(client.app[SERVICES], client.app[LIVE].current, REGION, NOW)
    assert region_verifiable(client.app[SERVICES], client.app[LIVE].current, OTHER, NOW)


def test_a_fresh_demo_does_not_warn_about_its_own_trust_list(world, tmp_path: Path) -> None:
    """The demo's TEST list lived 30 days and was made again only a day before its end: with the default
    window of 30 days every demo start warned about it. It now lives 90 days and is made again at a start
    with 31 days or fewer left, so a demo never starts inside the default window."""
    from gateway.devtrust import DEMO_RENEW_WITHIN, ensure_framework, load_framework

    doc, _ = ensure_framework(tmp_path, world.specs, world.regions, NOW)
    expires = dt.datetime.fromisoformat(doc["expires_at"])
    assert expires - NOW == dt.timedelta(days=90)
    assert expires - NOW - DEMO_RENEW_WITHIN > dt.timedelta(days=Settings().trust_expiry_warn_days)
    # a start with 32 days left keeps the list (same version and keys), one with 31 left makes a new one
    kept, _ = ensure_framework(tmp_path, world.specs, world.regions, expires - dt.timedelta(days=32))
    assert kept == doc
    renewed, _ = ensure_framework(tmp_path, world.specs, world.regions, expires - dt.timedelta(days=31))
    assert dt.datetime.fromisoformat(renewed["expires_at"]) == expires + dt.timedelta(days=59)
    assert load_framework(tmp_path, world.regions)[0] == renewed


async def test_a_region_whose_issuers_are_all_revoked_is_not_shown_ok(world, client_for) -> None:
    """The same for a region whose only issuer certificate, within its dates, is revoked (superseded, not
    compromised: what it signed before stays valid): every licence signed now is ISSUER_CERT_REVOKED and
    /readyz counted it not verifiable, yet GET /v1/regions and the console read "ok" / 正常."""
    doc = copy.deepcopy(world.doc)
    serial = world.material[REGION].issuers[0].cert.serial_hex
    doc["regions"][REGION]["revoked"] = [{"serial": serial, "revoked_at": (NOW - dt.timedelta(days=1)).isoformat(),
                                          "reason": "superseded"}]
    snap = build_snapshot(doc, world.regions)
    assert [e.revocation is not None for e in snap.regions[REGION].issuers] == [True]
    client = await client_for(clock=Clock(NOW), trust_source=MemoryTrustSource(snap))
    state = {r["code"]: r["trust"]["state"] for r in (await (await client.get("/v1/regions")).json())["regions"]}
    assert state[REGION] == "no-valid-issuer" and state[OTHER] == "ok"     # was "ok"
    await sign_in(client, "supervisor")
    html = await (await client.get("/console/status")).text()
    cell = re.search(rf'<tr data-region="{REGION}">.*?<td class="(ok|bad)">([^<]*)', html)
    assert cell.groups() == ("bad", "无有效的签发机构证书")                      # was ("ok", "正常")
    assert not region_verifiable(client.app[SERVICES], client.app[LIVE].current, REGION, NOW)
