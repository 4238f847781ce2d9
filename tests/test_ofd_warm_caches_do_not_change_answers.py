"""The OFD reader's bounded caches (parsed seals by their DER, seal maker keys by certificate
hash, Signatures.xml by bytes) are content-addressed: with them warm from a valid licence, a
package that reuses the same seal but is altered anywhere else is still refused."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from adapters import FAMILIES
from adapters.ofd.container import read_ofd_package, write_ofd_package
from adapters.ofd.ses import _SEALS
from gateway.trust import build_snapshot
from tests.conftest import NOW

REGION = "310000"  # ofd-seal, Type=Seal
SIGNED_VALUE = "Doc_0/Signs/Sign_0/SignedValue.dat"


@pytest.fixture(scope="module")
def issued(world) -> bytes:
    return world.simulator.issue(REGION, world.catalogue.types[0].key, "valid", NOW).data


def _verify(world, data: bytes):
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    return world.verifier.verify(data, world.snapshot, status, NOW)


def _rezip(data: bytes, path: str, content: bytes) -> bytes:
    files = dict(read_ofd_package(data).files)
    files[path] = content
    return write_ofd_package(files, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def test_valid_licence_verifies_twice_with_the_seal_cache_warm(world, issued) -> None:
    first, second = _verify(world, issued), _verify(world, issued)
    assert first.verdict.value == second.verdict.value == "valid"
    seal_der = read_ofd_package(issued).get("Doc_0/Signs/Sign_0/Seal.esl")
    assert seal_der in _SEALS  # the seal was memoised


def test_signer_signature_forged_under_a_cached_seal_is_refused(world, issued) -> None:
    assert _verify(world, issued).verdict.value == "valid"  # warm every cache with the genuine package
    signed_value = read_ofd_package(issued).get(SIGNED_VALUE)
    forged = signed_value[:-3] + bytes([signed_value[-3] ^ 0x01]) + signed_value[-2:]  # inside the SM2 signature
    result = _verify(world, _rezip(issued, SIGNED_VALUE, forged))
    assert result.verdict.value == "invalid" and result.reason_codes == ("SIGNATURE_INVALID",)


def test_licence_data_altered_under_a_cached_seal_is_refused(world, issued) -> None:
    assert _verify(world, issued).verdict.value == "valid"
    result = _verify(world, FAMILIES["ofd-seal"].tamper(issued))
    assert result.verdict.value == "invalid" and result.reason_codes == ("SIGNATURE_INVALID",)


def test_issuer_revoked_in_a_new_trust_snapshot_is_refused_with_caches_warm(world, issued) -> None:
    assert _verify(world, issued).verdict.value == "valid"  # caches warm under the old snapshot
    doc = copy.deepcopy(world.doc)
    serial = next(e.cert.serial_hex for e in world.snapshot.regions[REGION].issuers)
    doc["regions"][REGION]["revoked"] = [{"serial": serial, "revoked_at": "2020-01-01T00:00:00Z",
                                          "reason": "keyCompromise"}]
    revoked_snapshot = build_snapshot(doc, world.regions)
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    result = world.verifier.verify(issued, revoked_snapshot, status, NOW)
    assert result.verdict.value == "invalid" and result.reason_codes == ("ISSUER_CERT_REVOKED",)
    assert _verify(world, issued).verdict.value == "valid"  # the old snapshot still answers as before


def test_a_seal_whose_maker_signature_verified_is_not_verified_again(world, issued, monkeypatch) -> None:
    import adapters.ofd_seal as fam

    calls: list[bytes] = []
    real = fam.sm2_verify

    def counting(key, message, signature):
        calls.append(message)
        return real(key, message, signature)

    monkeypatch.setattr(fam, "sm2_verify", counting)
    fam._VERIFIED_SEALS.clear()
    assert _verify(world, issued).verdict.value == "valid"
    assert len(calls) == 2                       # the signer's signature and the seal maker's
    seal = read_ofd_package(issued).get("Doc_0/Signs/Sign_0/Seal.esl")
    assert seal in fam._VERIFIED_SEALS
    other = world.simulator.issue(REGION, world.catalogue.types[0].key, "valid", NOW).data
    assert other != issued and read_ofd_package(other).get("Doc_0/Signs/Sign_0/Seal.esl") == seal
    assert _verify(world, other).verdict.value == "valid"
    assert len(calls) == 3                       # another licence under the same seal: its signer's only


def test_a_seal_whose_maker_signature_fails_is_refused_every_time_and_never_remembered(world, issued) -> None:
    import adapters.ofd_seal as fam
    from adapters.ofd.build import build_sealed_ofd
    from gateway.crypto.sm2 import SM2PrivateKey

    assert _verify(world, issued).verdict.value == "valid"          # the genuine seal remembered
    key = world.simulator.signing_key(REGION)
    files = {p: c for p, c in read_ofd_package(issued).files.items()
             if p != "OFD.xml" and not p.startswith("Doc_0/Signs/")}
    # the region's genuine signer signs it; the seal claims that same certificate as its maker but
    # was signed by another key: only the seal maker check can catch it
    forged = build_sealed_ofd(files, key.private_key, key.cert.der, "TEST 伪造章", NOW - dt.timedelta(days=1),
                              maker_key=SM2PrivateKey.generate(), maker_cert_der=key.cert.der)
    for _ in range(2):
        result = _verify(world, forged)
        assert result.verdict.value == "invalid" and result.reason_codes == ("SIGNATURE_INVALID",)
    assert read_ofd_package(forged).get("Doc_0/Signs/Sign_0/Seal.esl") not in fam._VERIFIED_SEALS


def test_the_verified_seal_set_is_bounded_oldest_first() -> None:
    from adapters.ofd_seal import _VerifiedSeals

    seals = _VerifiedSeals(size=2)
    for der in (b"a", b"b", b"c"):
        seals.add(der)
    assert b"a" not in seals and b"b" in seals and b"c" in seals
