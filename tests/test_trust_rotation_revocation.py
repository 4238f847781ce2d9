"""Issuer key rotation (overlap, expiry boundary under both time policies) and issuer
certificate revocation (signed before / after, keyCompromise), through the pure core."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace

import pytest

from gateway.core import Verifier
from gateway.devtrust import make_issuer, to_pem
from gateway.trust import build_snapshot

from .conftest import NOW

REGION = "341100"  # ES256
EDDSA_REGION = "652929"
OLD_NOT_AFTER = NOW + dt.timedelta(days=5)
LATER = OLD_NOT_AFTER + dt.timedelta(days=15)  # when the licences are presented


@pytest.fixture(scope="module")
def rotation(world):
    """Per region: an old issuer key expiring at OLD_NOT_AFTER and a new one published
    before it expires (the overlap), both in one trust list."""
    doc = copy.deepcopy(world.doc)
    keys = {}
    for code in (REGION, EDDSA_REGION):
        m = world.material[code]
        alg = world.specs[code].algorithms[0]
        old = make_issuer(code, alg, m.anchor_key, m.anchor, int(code) * 1000 + 21, NOW - dt.timedelta(days=700),
                          OLD_NOT_AFTER, "issuer-old")
        new = make_issuer(code, alg, m.anchor_key, m.anchor, int(code) * 1000 + 22, NOW - dt.timedelta(days=10),
                          NOW + dt.timedelta(days=720), "issuer-new")
        doc["regions"][code]["issuers"] = [to_pem(old.cert.der), to_pem(new.cert.der)]
        keys[code] = (old, new)
    return doc, keys


def verifier(world, time_policy: str = "signing-time") -> Verifier:
    return Verifier(replace(world.verifier.policy, issuer_time_policy=time_policy), world.specs,
                    world.verifier.type_names)


def licence(world, region: str, key, signed_at: dt.datetime) -> bytes:
    lic = world.simulator.canonical(region, world.simulator.licence_types_of(region)[0], NOW)
    return world.simulator.encode(region, lic, signed_at, key=key)


def run(world, doc, data: bytes, now: dt.datetime, time_policy: str = "signing-time"):
    snap = build_snapshot(doc, world.regions)
    status = world.simulator.status_snapshot(now, dt.timedelta(hours=1))
    return verifier(world, time_policy).verify(data, snap, status, now)


@pytest.mark.parametrize("region", [REGION, EDDSA_REGION])
def test_licences_signed_by_the_old_and_the_new_key_both_verify_during_the_overlap(world, rotation, region):
    doc, keys = rotation
    old, new = keys[region]
    for key in (old, new):
        result = run(world, doc, licence(world, region, key, NOW), NOW + dt.timedelta(hours=1))
        assert result.verdict.value == "valid", result.reason_codes
        assert result.signer_key_id == key.cert.key_id


def test_new_key_alone_keeps_verifying_after_the_old_one_expires(world, rotation):
    doc, keys = rotation
    result = run(world, doc, licence(world, REGION, keys[REGION][1], LATER), LATER)
    assert result.verdict.value == "valid"


# The boundary: the old certificate's notAfter is T. Signed at T-1 s vs T+1 s, presented
# 15 days later, under each documented issuer_time_policy.
BOUNDARY = [
    ("signing-time", -1, "valid", None),
    ("signing-time", +1, "invalid", "ISSUER_CERT_EXPIRED"),
    ("now", -1, "invalid", "ISSUER_CERT_EXPIRED"),
    ("now", +1, "invalid", "ISSUER_CERT_EXPIRED"),
]


@pytest.mark.parametrize("policy,offset,verdict,code", BOUNDARY)
def test_old_key_expiry_boundary_one_second_apart(world, rotation, policy, offset, verdict, code):
    doc, keys = rotation
    old = keys[REGION][0]
    assert old.cert.not_after == OLD_NOT_AFTER
    signed_at = OLD_NOT_AFTER + dt.timedelta(seconds=offset)
    result = run(world, doc, licence(world, REGION, old, signed_at), LATER, policy)
    assert result.verdict.value == verdict, result.reason_codes
    assert result.signing_time == signed_at
    if code:
        assert result.reason_codes == (code,)
    else:
        assert [n.code for n in result.notes] == ["ISSUER_CERT_EXPIRED_SINCE_SIGNING"]


def test_now_policy_accepts_the_old_key_while_it_is_still_valid(world, rotation):
    doc, keys = rotation
    result = run(world, doc, licence(world, REGION, keys[REGION][0], NOW), OLD_NOT_AFTER - dt.timedelta(seconds=1),
                 "now")
    assert result.verdict.value == "valid"


# --- issuer certificate revocation (trust list "revoked" entries) ---------------------------
REVOKED_AT = NOW - dt.timedelta(days=2)


def revoked_doc(rotation, reason: str) -> dict:
    doc, keys = rotation
    doc = copy.deepcopy(doc)
    old = keys[REGION][0]
    doc["regions"][REGION]["revoked"] = [{"serial": old.cert.serial_hex, "revoked_at": REVOKED_AT.isoformat(),
                                          "reason": reason}]
    return doc


@pytest.mark.parametrize("reason,signed_at,verdict", [
    ("superseded", REVOKED_AT - dt.timedelta(seconds=1), "valid"),  # signed before revocation: stands
    ("superseded", REVOKED_AT, "invalid"),  # at the revocation instant: no longer
    ("superseded", REVOKED_AT + dt.timedelta(days=1), "invalid"),
    ("keyCompromise", REVOKED_AT - dt.timedelta(days=20), "invalid"),  # compromised: nothing it signed stands
])
def test_licence_signed_by_a_revoked_issuer_certificate(world, rotation, reason, signed_at, verdict):
    doc = revoked_doc(rotation, reason)
    old = rotation[1][REGION][0]
    result = run(world, doc, licence(world, REGION, old, signed_at), NOW)
    assert result.verdict.value == verdict, result.reason_codes
    if verdict == "invalid":
        assert result.reason_codes == ("ISSUER_CERT_REVOKED",)
        assert result.checks["issuer_certificate"] == "fail"


def test_revoking_the_old_key_leaves_the_new_key_untouched(world, rotation):
    doc = revoked_doc(rotation, "keyCompromise")
    new = rotation[1][REGION][1]
    assert run(world, doc, licence(world, REGION, new, NOW), NOW).verdict.value == "valid"
