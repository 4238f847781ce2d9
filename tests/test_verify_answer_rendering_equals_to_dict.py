"""A verify answer is rendered with its licence as a dataclass and its time as a datetime, written
by orjson (gateway.app.render_result / _answer_json). Its JSON must be exactly what the explicit
rendering gave (``Licence.to_dict()``, ``isoformat()`` with ``Z`` for UTC): the reference below is
that rendering, kept here as the oracle."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from gateway.app import _answer_json, render_result
from gateway.core import Note, VerificationResult
from gateway.simulator import CASES
from tests.conftest import NOW

#: one region per format family (jws ES256, jws EdDSA, sm2-json, sm2-xml, ofd-seal, ofd Type=Sign)
REGIONS = ("341100", "652929", "330100", "320100", "310000", "500102")


def reference_render(result: VerificationResult) -> dict[str, Any]:
    """The rendering before the licence and time were left to orjson (the oracle)."""
    return {
        "verdict": result.verdict.value,
        "reasons": [r.as_reason_dict() for r in result.reasons],
        "checks": dict(result.checks),
        "region": {"code": result.region.code, "name": result.region.name} if result.region else None,
        "format": result.format,
        "licence": result.licence.to_dict() if result.licence else None,
        "verified_at": result.verified_at.isoformat().replace("+00:00", "Z"),
        "signer": {"key_id": result.signer_key_id} if result.signer_key_id else None,
        "signing_time": result.signing_time.isoformat() if result.signing_time else None,
        "status_age_seconds": int(result.status_age.total_seconds()) if result.status_age is not None else None,
        "notes": [n.as_dict() for n in result.notes],
    }


def answer_bytes(result: VerificationResult) -> bytes:
    return _answer_json(render_result(result)).body  # type: ignore[return-value]


def results(world) -> list[VerificationResult]:
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    out = []
    for region in REGIONS:
        for case in CASES:
            data = world.simulator.issue(region, None, case, NOW).data
            out.append(world.verifier.verify(data, world.snapshot, status, NOW))
    return out


def test_every_family_and_case_renders_the_same_json_as_to_dict(world):
    seen = results(world)
    assert {r.verdict.value for r in seen} >= {"valid", "invalid"}
    assert sum(r.licence is not None and bool(r.licence.surface) for r in seen) > 0  # surface data rendered too
    for result in seen:
        assert orjson.loads(answer_bytes(result)) == reference_render(result)


@pytest.mark.parametrize("verified_at", [
    dt.datetime(2026, 11, 27, 4, 0, 0, tzinfo=dt.timezone.utc),            # no microseconds
    dt.datetime(2026, 11, 27, 4, 0, 0, 120, tzinfo=dt.timezone.utc),       # microseconds kept
    dt.datetime(2026, 11, 27, 12, 0, 0, 7, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
])
def test_answer_time_text_is_byte_for_byte_the_isoformat_with_z(world, verified_at):
    result = dataclasses.replace(results(world)[0], verified_at=verified_at)
    expected = verified_at.isoformat().replace("+00:00", "Z")
    assert f'"verified_at":"{expected}"'.encode() in answer_bytes(result)
    assert orjson.loads(answer_bytes(result)) == reference_render(result)


def test_notes_no_status_age_and_a_plain_mapping_of_checks_render_the_same(world):
    base = next(r for r in results(world) if r.licence is not None)
    odd = dataclasses.replace(
        base, status_age=None, checks=dict.fromkeys(base.checks, "skip").items().mapping,  # a read-only view
        signing_time=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        notes=(Note("STATUS_NOT_CHECKED", "Status checking is off.", "状态核验已关闭。"),))
    assert type(odd.checks) is not dict
    rendered = orjson.loads(answer_bytes(odd))
    assert rendered == reference_render(odd)
    assert rendered["notes"][0]["code"] == "STATUS_NOT_CHECKED" and rendered["status_age_seconds"] is None
    assert rendered["signing_time"] == "2026-01-02T03:04:05+08:00"


def test_a_rendered_answer_leaves_the_result_unchanged(world):
    result = next(r for r in results(world) if r.licence is not None)
    checks, surface = dict(result.checks), dict(result.licence.surface)
    answer = render_result(result)
    answer["receipt"] = "x"
    _answer_json(answer)
    assert dict(result.checks) == checks and result.licence.surface == surface
