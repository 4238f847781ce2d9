"""The federated query discloses a returned licence's fields only when it is valid, as the item
check does: an expired, revoked or undecidable licence of the right holder, region and type was
listed with the item's fields (holder name, codes, address ...) beside ``verdict: invalid``. It is
now listed with its type, verdict and reasons and no fields. Control: a valid one keeps its fields."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.identifiers import citizen_id_check
from gateway.query_routes import judge, parse_query

from .conftest import NOW

REGION, ITEM = "330100", "KS-009"
FIRST17 = "33010219850612123"
CODE = FIRST17 + citizen_id_check(FIRST17)


def request(world: Any) -> Any:
    body = {"holder": {"code_type": "111", "code": CODE}, "licence_types": ["id_card"], "item": ITEM,
            "use_cause": "个体工商户设立登记，核验申请人身份", "regions": [REGION]}
    return parse_query(body, world.catalogue, tuple(world.specs), world.settings, lambda _: True, lambda _: True)


def result_of(world: Any, case: str) -> Any:
    lic = world.simulator.issue(REGION, "id_card", case, NOW, holder=("测试持证人", CODE, "111"))
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    return world.verifier.verify(lic.data, world.snapshot, status, NOW)


@pytest.mark.parametrize("case, reason", [("expired", "LICENCE_EXPIRED"), ("not-yet-valid", "LICENCE_NOT_YET_VALID"), ("revoked", "LICENCE_REVOKED")])
def test_an_invalid_licence_of_the_holder_is_listed_without_its_fields(world: Any, case: str, reason: str) -> None:
    result = result_of(world, case)
    assert result.verdict.value == "invalid" and result.checks["signature"] == "pass"
    entry, rejected = judge(request(world), REGION, 0, result, world.catalogue)
    assert rejected is None and entry is not None
    assert entry["verdict"] == "invalid" and [r["code"] for r in entry["reasons"]] == [reason]
    assert entry["type"] == "id_card" and entry["licence"] == {}


def test_a_valid_licence_of_the_holder_keeps_the_items_fields(world: Any) -> None:
    entry, rejected = judge(request(world), REGION, 0, result_of(world, "valid"), world.catalogue)
    assert rejected is None and entry["verdict"] == "valid"
    assert entry["licence"]["holder_code"] == CODE and entry["licence"]["holder_name"] == "测试持证人"
