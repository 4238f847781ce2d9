"""A JWS or SM2-JSON licence saved by a text editor (a UTF-8 byte order mark) or pasted with a
newline before it is the same licence: neither byte is signed. They were refused as
UNSUPPORTED_FORMAT; the XML family already read its BOM and leading whitespace. Tampering stays
caught with the lead, and a lead alone is still not a licence."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import NOW

LEADS = {"utf8_bom": b"\xef\xbb\xbf", "newline": b"\r\n", "spaces_and_tab": b"  \t", "bom_then_newline": b"\xef\xbb\xbf\n"}
REGIONS = {"jws": "341100", "sm2-json": "330100", "sm2-xml": "320100"}


def verify(world: Any, data: bytes) -> Any:
    status = world.simulator.status_snapshot(NOW, __import__("datetime").timedelta(hours=1))
    return world.verifier.verify(data, world.snapshot, status, NOW)


@pytest.mark.parametrize("family", sorted(REGIONS))
@pytest.mark.parametrize("lead", sorted(LEADS))
def test_genuine_text_licence_with_a_lead_is_valid(world: Any, family: str, lead: str) -> None:
    data = world.simulator.issue(REGIONS[family], "business_licence", "valid", NOW).data
    result = verify(world, LEADS[lead] + data)
    assert result.verdict.value == "valid", result.reasons
    assert result.format == family


@pytest.mark.parametrize("family", ["jws", "sm2-json"])
def test_tampered_text_licence_with_a_bom_is_still_refused(world: Any, family: str) -> None:
    data = world.simulator.issue(REGIONS[family], "business_licence", "tampered", NOW).data
    result = verify(world, LEADS["utf8_bom"] + data)
    assert result.verdict.value == "invalid" and [r.code for r in result.reasons] == ["SIGNATURE_INVALID"]


@pytest.mark.parametrize("data", [b"\xef\xbb\xbf", b" \n ", b"\xef\xbb\xbf  x"])
def test_a_lead_alone_is_not_a_licence(world: Any, data: bytes) -> None:
    result = verify(world, data)
    assert result.verdict.value == "invalid" and [r.code for r in result.reasons] == ["UNSUPPORTED_FORMAT"]
