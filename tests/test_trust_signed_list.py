"""The signed trust list: operator signature, monotonic versions, expiry, last good kept, CLI."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.__main__ import main
from gateway.devtrust import make_anchor, make_issuer, to_pem
from gateway.edges import FileTrustSource, LiveTrust
from gateway.trust_routes import TrustReloader
from gateway.trustlist import (TEST_OPERATOR_PRIVATE, TEST_OPERATOR_PUBLIC, TrustListRefused, b64u,
                               canonical_json, judge, load_operator_key, load_operator_private_key, open_signed,
                               operator_key, sign_trust_list)

from .conftest import NOW

REGION = "341100"


def operator() -> tuple[object, list]:
    return load_operator_private_key(TEST_OPERATOR_PRIVATE), [load_operator_key(TEST_OPERATOR_PUBLIC)]


def versioned(world, version: int, **changes) -> dict:
    doc = copy.deepcopy(world.doc)
    doc["version"] = version
    doc.update(changes)
    return doc


def signed_bytes(doc: dict, key=None) -> bytes:
    return canonical_json(sign_trust_list(doc, key or operator()[0]))


def write(path: Path, doc: dict, key=None) -> Path:
    path.write_bytes(signed_bytes(doc, key))
    return path


# --- signature ---------------------------------------------------------------------------
def test_signed_list_opens_with_the_pinned_test_operator_key(world):
    key, pinned = operator()
    signed = open_signed(signed_bytes(versioned(world, 4)), pinned)
    assert signed.version == 4
    assert signed.key_id == pinned[0].key_id and signed.algorithm == "EdDSA"
    assert signed.expires_at == dt.datetime.fromisoformat(world.doc["expires_at"])


def test_attacker_adds_a_rogue_anchor_after_signing_is_refused(world):
    data = orjson.loads(signed_bytes(versioned(world, 2)))
    rogue_key, rogue_anchor = make_anchor(REGION, "ES256", NOW)
    data["trust_list"]["regions"][REGION]["anchors"].append(to_pem(rogue_anchor.der))
    with pytest.raises(TrustListRefused) as exc:
        open_signed(orjson.dumps(data), operator()[1])
    assert exc.value.kind == "bad-signature"


def test_list_signed_by_an_unpinned_key_is_refused(world):
    impostor = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(TrustListRefused) as exc:
        open_signed(signed_bytes(versioned(world, 2), impostor), operator()[1])
    assert exc.value.kind == "unknown-key"


def test_header_claiming_the_pinned_kid_with_another_algorithm_is_refused(world):
    """Algorithm confusion: an ES256 signature under the pinned Ed25519 key's kid."""
    p256 = ec.generate_private_key(ec.SECP256R1())
    data = orjson.loads(signed_bytes(versioned(world, 2), p256))
    pinned = operator()[1]
    h = {"alg": "ES256", "kid": pinned[0].key_id, "typ": "elicence-trust-list+jws"}
    sig = data["signature"].split(".")[2]
    data["signature"] = f"{b64u(canonical_json(h))}..{sig}"
    with pytest.raises(TrustListRefused) as exc:
        open_signed(orjson.dumps(data), pinned)
    assert exc.value.kind == "bad-signature"


def test_unsigned_plain_trust_list_is_refused(world):
    with pytest.raises(TrustListRefused) as exc:
        open_signed(orjson.dumps(world.doc), operator()[1])
    assert exc.value.kind == "malformed"


def test_attached_payload_jws_is_refused(world):
    data = orjson.loads(signed_bytes(versioned(world, 2)))
    h, _, s = data["signature"].split(".")
    data["signature"] = f"{h}.{b64u(b'{}')}.{s}"
    with pytest.raises(TrustListRefused) as exc:
        open_signed(orjson.dumps(data), operator()[1])
    assert exc.value.kind == "malformed"


def test_two_pinned_operator_keys_during_an_operator_key_rotation(world):
    new_key = ed25519.Ed25519PrivateKey.generate()
    pinned = operator()[1] + [operator_key(new_key.public_key())]
    assert open_signed(signed_bytes(versioned(world, 3), new_key), pinned).version == 3
    assert open_signed(signed_bytes(versioned(world, 3)), pinned).version == 3


# --- monotonic versions and dates ----------------------------------------------------------
def opened(world, version: int, **changes):
    return open_signed(signed_bytes(versioned(world, version, **changes)), operator()[1])


def test_higher_version_is_accepted(world):
    assert judge(opened(world, 3), opened(world, 2), NOW) == "accept"


def test_rollback_to_a_lower_version_is_refused(world):
    with pytest.raises(TrustListRefused) as exc:
        judge(opened(world, 2), opened(world, 3), NOW)
    assert exc.value.kind == "rollback"


def test_same_version_with_different_content_is_refused(world):
    other = opened(world, 3, framework="dev-TEST-forked")
    with pytest.raises(TrustListRefused) as exc:
        judge(other, opened(world, 3), NOW)
    assert exc.value.kind == "conflict"


def test_same_version_same_content_is_unchanged(world):
    assert judge(opened(world, 3), opened(world, 3), NOW) == "unchanged"


def test_expired_list_is_refused_even_with_a_higher_version(world):
    stale = opened(world, 9, expires_at=(NOW - dt.timedelta(seconds=1)).isoformat())
    with pytest.raises(TrustListRefused) as exc:
        judge(stale, opened(world, 3), NOW)
    assert exc.value.kind == "expired"


def test_list_issued_in_the_future_is_refused(world):
    early = opened(world, 4, issued_at=(NOW + dt.timedelta(hours=1)).isoformat())
    with pytest.raises(TrustListRefused) as exc:
        judge(early, None, NOW)
    assert exc.value.kind == "not-yet-valid"


# --- the file source and the reloader keep the last good snapshot -------------------------
def source(world, path: Path) -> FileTrustSource:
    return FileTrustSource(path, world.regions, 3, operator()[1], clock=lambda: NOW)


async def test_refused_reload_keeps_serving_the_last_good_snapshot_and_says_why(world, tmp_path):
    path = write(tmp_path / "trust.json", versioned(world, 5))
    live = LiveTrust()
    reloader = TrustReloader(source(world, path), live, lambda: NOW)
    assert (await reloader.reload("startup")).outcome == "accepted"
    good = live.current.trust
    attempts = {
        "rollback": versioned(world, 4),
        "conflict": versioned(world, 5, framework="forked"),
        "expired": versioned(world, 6, expires_at=(NOW - dt.timedelta(days=1)).isoformat()),
    }
    for kind, doc in attempts.items():
        write(path, doc)
        outcome = await reloader.reload("admin")
        assert outcome.outcome == "refused" and outcome.error.startswith(kind)
        assert live.current.trust is good and live.current.trust.version == 5
        assert kind in live.last_error
    data = orjson.loads(signed_bytes(versioned(world, 7)))
    data["trust_list"]["version"] = 8  # bump after signing
    path.write_bytes(orjson.dumps(data))
    outcome = await reloader.reload("admin")
    assert outcome.outcome == "refused" and "bad-signature" in outcome.error
    assert live.current.trust is good
    write(path, versioned(world, 6))
    outcome = await reloader.reload("admin")
    assert outcome.outcome == "accepted" and live.current.trust.version == 6 and live.last_error is None


async def test_reloading_the_same_file_is_unchanged_and_keeps_the_snapshot_object(world, tmp_path):
    path = write(tmp_path / "trust.json", versioned(world, 5))
    live = LiveTrust()
    reloader = TrustReloader(source(world, path), live, lambda: NOW)
    await reloader.reload("startup")
    first = live.current.trust
    assert (await reloader.reload("admin")).outcome == "unchanged"
    assert live.current.trust is first


async def test_missing_file_at_start_is_refused_with_the_reason(world, tmp_path):
    live = LiveTrust()
    outcome = await TrustReloader(source(world, tmp_path / "absent.json"), live, lambda: NOW).reload("startup")
    assert outcome.outcome == "refused" and live.current.trust is None
    assert "absent.json" in live.last_error


async def test_file_watch_reloads_a_changed_list_without_restart(world, tmp_path):
    import asyncio

    path = write(tmp_path / "trust.json", versioned(world, 5))
    live = LiveTrust()
    reloader = TrustReloader(source(world, path), live, lambda: NOW)
    await reloader.reload("startup")
    task = asyncio.create_task(reloader.watch(0.02))
    try:
        await asyncio.sleep(0.05)
        write(path, versioned(world, 6, framework="dev-TEST-v6"))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if live.current.trust.version == 6:
                break
        assert live.current.trust.version == 6 and reloader.last.trigger == "file-change"
    finally:
        task.cancel()


async def test_dropped_entries_are_logged_with_their_reason(world, tmp_path, caplog):
    doc = versioned(world, 5)
    material = world.material[REGION]
    stray_key, stray_anchor = make_anchor(REGION, "ES256", NOW)
    stray = make_issuer(REGION, "ES256", stray_key, stray_anchor, 4242, NOW - dt.timedelta(days=1),
                        NOW + dt.timedelta(days=30), "stray")
    doc["regions"][REGION]["issuers"] += [to_pem(stray.cert.der), to_pem(material.issuers[-1].cert.der)]
    path = write(tmp_path / "trust.json", doc)
    with caplog.at_level("WARNING", logger="gateway.edges"):
        snap = await source(world, path).load()
    reasons = {d.reason for d in snap.dropped if d.region == REGION}
    assert reasons == {"does not chain to this region's trust anchor", "duplicate key id (certificate listed twice)"}
    assert "duplicate key id" in caplog.text and "does not chain" in caplog.text


def test_file_source_refuses_to_run_without_a_pinned_key(world, tmp_path):
    with pytest.raises(ValueError):
        FileTrustSource(tmp_path / "t.json", world.regions, 3, [])


# --- CLI ---------------------------------------------------------------------------------
def test_cli_sign_inspect_verify_and_refuse_rollback(world, tmp_path, capsys):
    (tmp_path / "v2.json").write_bytes(orjson.dumps(versioned(world, 2)))
    (tmp_path / "v1.json").write_bytes(orjson.dumps(versioned(world, 1)))
    key = str(TEST_OPERATOR_PRIVATE)
    assert main(["trust", "sign", "--key", key, "--in", str(tmp_path / "v2.json"), "--out", str(tmp_path / "s2.json")]) == 0
    assert main(["trust", "sign", "--key", key, "--in", str(tmp_path / "v1.json"), "--out", str(tmp_path / "s1.json")]) == 0
    capsys.readouterr()
    assert main(["trust", "inspect", str(tmp_path / "s2.json")]) == 0
    inspected = orjson.loads(capsys.readouterr().out)
    assert inspected["version"] == 2 and inspected["signature_checked"] is False
    assert inspected["regions"][REGION] == {"anchors": 1, "issuers": 1, "revoked": 0}
    pub = str(TEST_OPERATOR_PUBLIC)
    assert main(["trust", "verify", str(tmp_path / "s2.json"), "--pubkey", pub]) == 0
    verified = orjson.loads(capsys.readouterr().out)
    assert verified["verdict"] == "accept" and verified["version"] == 2 and verified["dropped"] == []
    assert main(["trust", "verify", str(tmp_path / "s1.json"), "--pubkey", pub,
                 "--held", str(tmp_path / "s2.json")]) == 1
    assert "rollback" in capsys.readouterr().err


def test_cli_verify_refuses_a_list_signed_by_another_key(world, tmp_path, capsys):
    other = tmp_path / "other.pem"
    from cryptography.hazmat.primitives import serialization as s

    other.write_bytes(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
    write(tmp_path / "s.json", versioned(world, 2))
    assert main(["trust", "verify", str(tmp_path / "s.json"), "--pubkey", str(other)]) == 1
    assert "unknown-key" in capsys.readouterr().err


def test_operator_test_keys_are_named_and_documented_as_test_keys():
    folder = TEST_OPERATOR_PRIVATE.parent
    private = sorted(p.name for p in folder.iterdir() if b"PRIVATE KEY" in p.read_bytes())
    assert private == ["operator.test-private.pem"]
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "TEST" in readme and "operator.test-public.pem" in readme and "never pin" in readme
    with pytest.raises(ValueError):
        load_operator_key(TEST_OPERATOR_PRIVATE)  # pinning a private key file is refused


# --- wiring -------------------------------------------------------------------------------
def test_operator_mode_refuses_to_start_without_a_pinned_operator_key(tmp_path):
    from gateway.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="trust_operator_keys"):
        load_settings(env={}, demo=False, trust_list=str(tmp_path / "t.json"))


async def test_operator_mode_loads_the_signed_list_with_the_pinned_key(world, tmp_path):
    from gateway.bootstrap import build_services
    from gateway.config import load_settings
    from gateway.edges import MemoryStatusSource

    path = write(tmp_path / "t.json", versioned(world, 8))
    settings = load_settings(env={}, demo=False, trust_list=str(path), trust_operator_keys=str(TEST_OPERATOR_PUBLIC),
                             var_dir=str(tmp_path))
    services = build_services(settings, now=NOW)
    services.trust_source.clock = lambda: NOW
    assert (await services.trust_source.load()).version == 8
    assert isinstance(services.status_source, MemoryStatusSource)  # no status_url_template: fail closed


async def test_demo_mode_signs_its_list_with_the_test_operator_key_and_fetches_status_over_http(tmp_path):
    from gateway.bootstrap import build_services
    from gateway.config import Settings
    from gateway.status_source import HttpStatusSource

    services = build_services(Settings(demo=True, var_dir=str(tmp_path)), now=NOW)
    assert isinstance(services.trust_source, FileTrustSource)
    assert services.trust_source.path == tmp_path / "demo" / "trust-list.signed.json"
    signed = open_signed(services.trust_source.path.read_bytes(), operator()[1])
    assert signed.version == 1 and signed.doc["framework"] == "dev-TEST"
    assert isinstance(services.status_source, HttpStatusSource)
    assert services.status_source.local_issuer is not None
