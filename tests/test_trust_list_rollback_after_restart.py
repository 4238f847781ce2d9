"""An older signed trust list replayed to a RESTARTED gateway (or to a second worker) is refused.

The rollback rule compared a candidate with the list held in memory only: after a restart nothing
was held, so v5 (still unexpired, validly signed by the operator) was accepted after v6 had revoked
an issuer for key compromise, and the compromised key's licences were valid again. The highest
version accepted is now recorded in ``trust_state`` and a fresh source judges against it.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import orjson
import pytest

from gateway.__main__ import main
from gateway.bootstrap import build_services, check_startup, trust_state_path
from gateway.config import ConfigError, Settings
from gateway.devtrust import ensure_framework
from gateway.edges import FileTrustSource, LiveTrust
from gateway.trust_routes import TrustReloader
from gateway.trustlist import (TEST_OPERATOR_PUBLIC, TrustListRefused, load_operator_key, open_signed, read_floor,
                               write_floor)

from .conftest import NOW
from .test_status_trustlist_and_upstream_attacks import REGION, _signed_doc_bytes


def fresh_gateway(world, path: Path, state: Path | None) -> tuple[TrustReloader, LiveTrust, FileTrustSource]:
    """What a (re)started worker builds: a new source and reloader, nothing held in memory."""
    src = FileTrustSource(path, world.regions, 3, [load_operator_key(TEST_OPERATOR_PUBLIC)], clock=lambda: NOW,
                          state_path=state)
    live = LiveTrust()
    return TrustReloader(src, live, lambda: NOW), live, src


def compromised_licence(world):
    """A valid licence, and a mutation of the trust document revoking its signer for key compromise."""
    lic = world.simulator.issue(REGION, None, "valid", NOW)
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    genuine = world.verifier.verify(lic.data, world.snapshot, status, NOW)
    assert genuine.verdict.value == "valid"
    serial = world.snapshot.by_key_id[genuine.signer_key_id].cert.serial_hex
    revocation = {"serial": serial, "revoked_at": (NOW - dt.timedelta(days=1)).isoformat(), "reason": "keyCompromise"}
    return lic, status, lambda d: d["regions"][REGION].setdefault("revoked", []).append(revocation)


async def test_list_signed_before_a_revocation_replayed_to_a_restarted_gateway_is_refused(world, tmp_path):
    lic, status, revoke = compromised_licence(world)
    path, state = tmp_path / "trust.json", tmp_path / "var" / "trust-held.json"
    path.write_bytes(_signed_doc_bytes(world, 5))
    reloader, live, _ = fresh_gateway(world, path, state)
    assert (await reloader.reload("startup")).outcome == "accepted"
    path.write_bytes(_signed_doc_bytes(world, 6, revoke))
    assert (await reloader.reload("admin")).outcome == "accepted"
    assert world.verifier.verify(lic.data, live.current.trust, status, NOW).verdict.value == "invalid"
    assert read_floor(state).version == 6

    # control: a restart with the revoking list in place takes it (same version and content as recorded)
    reloader, live, src = fresh_gateway(world, path, state)
    assert (await reloader.reload("startup")).outcome == "accepted" and live.current.trust.version == 6
    assert src.floor.version == 6
    assert world.verifier.verify(lic.data, live.current.trust, status, NOW).verdict.value == "invalid"

    # attack: the attacker puts v5 (signed before the revocation, unexpired) back and restarts the gateway
    path.write_bytes(_signed_doc_bytes(world, 5))
    reloader, live, _ = fresh_gateway(world, path, state)
    outcome = await reloader.reload("startup")
    assert outcome.outcome == "refused" and outcome.error.startswith("rollback"), outcome
    assert "v5 is older than the held v6" in outcome.error and str(state) in outcome.error
    assert live.current.trust is None   # nothing trusted: every answer indeterminate, never the licence valid
    assert read_floor(state).version == 6   # the record is not lowered

    # what the unfixed gateway did (no record): v5 taken, the compromised key's licence valid again
    reloader, live, _ = fresh_gateway(world, path, None)
    assert (await reloader.reload("startup")).outcome == "accepted"
    assert world.verifier.verify(lic.data, live.current.trust, status, NOW).verdict.value == "valid"


async def test_same_version_with_other_content_after_a_restart_is_a_conflict(world, tmp_path):
    path, state = tmp_path / "trust.json", tmp_path / "trust-held.json"
    path.write_bytes(_signed_doc_bytes(world, 6))
    reloader, _, _ = fresh_gateway(world, path, state)
    assert (await reloader.reload("startup")).outcome == "accepted"
    path.write_bytes(_signed_doc_bytes(world, 6, lambda d: d.__setitem__("framework", "forked")))
    reloader, live, _ = fresh_gateway(world, path, state)
    outcome = await reloader.reload("startup")
    assert outcome.outcome == "refused" and outcome.error.startswith("conflict") and live.current.trust is None


async def test_a_worker_holding_an_older_list_takes_the_floor_another_worker_recorded(world, tmp_path):
    """Two workers share the record: worker A holds v5 in memory when worker B accepts v7; the file is
    then put back to v6 (older than what B took): A refuses it although it is newer than A's own."""
    path, state = tmp_path / "trust.json", tmp_path / "trust-held.json"
    path.write_bytes(_signed_doc_bytes(world, 5))
    a, a_live, _ = fresh_gateway(world, path, state)
    assert (await a.reload("startup")).outcome == "accepted"
    path.write_bytes(_signed_doc_bytes(world, 7))
    b, _, _ = fresh_gateway(world, path, state)
    assert (await b.reload("startup")).outcome == "accepted" and read_floor(state).version == 7
    path.write_bytes(_signed_doc_bytes(world, 6))
    outcome = await a.reload("file-change")
    assert outcome.outcome == "refused" and "older than the held v7" in outcome.error, outcome
    assert a_live.current.trust.version == 5
    # control: v7 itself is taken by A
    path.write_bytes(_signed_doc_bytes(world, 7))
    assert (await a.reload("file-change")).outcome == "accepted" and a_live.current.trust.version == 7


@pytest.mark.parametrize("content", [b"{not json", b'{"type": "elicence-trust-list-held", "version": "6"}',
                                     b'{"type": "something-else", "version": 6, "digest_sha256": "' + b"0" * 64 + b'"}',
                                     b"x" * (70 * 1024)])
async def test_record_that_cannot_be_read_refuses_every_list_instead_of_forgetting_the_floor(world, tmp_path,
                                                                                            content):
    """Treating a damaged record as "no record" would re-open the rollback; it is refused, with the path."""
    path, state = tmp_path / "trust.json", tmp_path / "trust-held.json"
    path.write_bytes(_signed_doc_bytes(world, 9))
    state.write_bytes(content)
    reloader, live, _ = fresh_gateway(world, path, state)
    outcome = await reloader.reload("startup")
    assert outcome.outcome == "refused" and outcome.error.startswith("state-unreadable"), outcome
    assert str(state) in outcome.error and live.current.trust is None
    with pytest.raises(TrustListRefused) as exc:
        read_floor(state)
    assert exc.value.kind == "state-unreadable"


def test_record_holds_version_digest_and_times_and_reads_back(world, tmp_path):
    signed = open_signed(_signed_doc_bytes(world, 4), [load_operator_key(TEST_OPERATOR_PUBLIC)])
    state = tmp_path / "deep" / "trust-held.json"
    write_floor(state, signed, NOW)
    doc = orjson.loads(state.read_bytes())
    assert doc["version"] == 4 and doc["digest_sha256"] == signed.digest and doc["accepted_at"] == NOW.isoformat()
    assert doc["expires_at"] == signed.expires_at.isoformat() and doc["type"] == "elicence-trust-list-held"
    floor = read_floor(state)
    assert (floor.version, floor.digest, floor.recorded_in) == (4, signed.digest, str(state))
    assert read_floor(tmp_path / "missing.json") is None   # a first start: no record, no floor


async def test_record_that_cannot_be_written_is_logged_and_the_newer_list_still_used(world, tmp_path, caplog,
                                                                                  monkeypatch):
    """A full disk: the newer list is never less safe than the older one, so it is used; the ERROR says
    what is lost (the floor after a restart)."""
    import errno

    import gateway.edges

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gateway.edges, "write_floor", disk_full)
    path = tmp_path / "trust.json"
    path.write_bytes(_signed_doc_bytes(world, 5))
    reloader, live, src = fresh_gateway(world, path, tmp_path / "trust-held.json")
    with caplog.at_level(logging.ERROR, logger="gateway.edges"):
        assert (await reloader.reload("startup")).outcome == "accepted"
    assert live.current.trust.version == 5 and src.floor is None
    assert any("could not be recorded" in r.getMessage() and "No space" in r.getMessage() for r in caplog.records)


def test_operator_mode_start_up_refuses_an_unreadable_record_naming_it(world, tmp_path, capsys):
    state = tmp_path / "trust-held.json"
    state.write_text("{}")
    settings = Settings(demo=False, trust_list=str(tmp_path / "t.json"), trust_state=str(state),
                        trust_operator_keys=(str(TEST_OPERATOR_PUBLIC),), var_dir=str(tmp_path))
    with pytest.raises(ConfigError) as exc:
        check_startup(settings)
    assert "trust_state" in str(exc.value) and str(state) in str(exc.value)
    assert trust_state_path(Settings(demo=False, var_dir=str(tmp_path))) == tmp_path / "trust-held.json"


def test_cli_serve_exits_2_with_a_bilingual_message_on_an_unreadable_record(tmp_path, monkeypatch, capsys):
    state = tmp_path / "demo" / "trust-held.json"
    state.parent.mkdir(parents=True)
    state.write_text("[]")
    monkeypatch.setenv("GATEWAY_VAR_DIR", str(tmp_path))
    assert main(["serve", "--demo", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "trust_state" in err and str(state) in err and "配置错误" in err


async def test_demo_records_its_list_and_a_regenerated_framework_starts_a_new_record(world, tmp_path):
    settings = Settings(demo=True, var_dir=str(tmp_path), audit_backend="memory")
    services = build_services(settings, now=NOW)
    assert (await services.trust_source.load()).version == 1
    state = trust_state_path(settings)
    assert state == tmp_path / "demo" / "trust-held.json" and read_floor(state).version == 1
    # the TEST framework made again (expired, say): version 1 with other content, no conflict with the old record
    ensure_framework(tmp_path / "demo", world.specs, world.regions, NOW + dt.timedelta(days=400))
    assert not state.exists()
