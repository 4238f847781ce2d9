"""Application logs: JSON lines with the request id, and never a holder code or name.

Errors are provoked with personal data in the request (an applicant's name and citizen ID,
licences whose holder is known) and the captured log output -- what
``python -m gateway serve`` writes, through :func:`gateway.logging_setup.json_handler` --
must contain none of it: citizen IDs masked, the request's names and codes redacted.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from aiohttp import web

from gateway.app import create_app, verify_now
from gateway.audit_wiring import AUDIT, audit_verifications
from gateway.auth import LICENCES_VERIFY, requires_scope
from gateway.identifiers import citizen_id_check, mask_holder_code
from gateway.logging_setup import REDACTED, JsonFormatter, json_handler, redact

from .conftest import NOW

HUZHOU = "330500"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


class LeakyVerifier:
    """A verifier with a bug that echoes personal data into its exception message."""

    def __init__(self, name: str, code: str) -> None:
        self.name, self.code = name, code

    def verify(self, data, trust, status, now):
        raise ValueError(f"cannot normalise holder {self.name} ({self.code}) of the presented licence")


async def test_crash_in_an_item_check_logs_the_request_id_but_not_the_applicant(world, aiohttp_client, captured):
    name, code = world.simulator.person(HUZHOU)
    client = await aiohttp_client(create_app(world.services(verifier=LeakyVerifier(name, code))), headers=world.auth())
    lic = world.simulator.issue(HUZHOU, "id_card", "valid", NOW, holder=(name, code, "111"))
    resp = await client.post("/v1/items/KS-043/check", json={"applicant": {"code_type": "111", "code": code,
                                                                           "name": name}, "licences": [lic.body()]},
                             headers={"X-Request-Id": "req-leaky-check"})
    assert resp.status == 500
    text = captured.getvalue()
    errors = [entry for entry in lines(captured) if entry["level"] == "ERROR"]
    assert errors and errors[0]["request_id"] == "req-leaky-check" and "exception" in errors[0]
    assert "cannot normalise holder" in errors[0]["exception"]  # the error itself is still logged
    assert name not in text and code not in text and code.lower() not in text
    assert REDACTED in errors[0]["exception"] or mask_holder_code(code) in errors[0]["exception"]


async def test_careless_log_line_after_a_verification_is_redacted(world, aiohttp_client, captured):
    log = logging.getLogger("gateway.somewhere")

    @requires_scope(LICENCES_VERIFY)
    async def careless(request: web.Request) -> web.Response:
        body = await request.json()
        result = verify_now(request.app, body["licence"].encode())
        await audit_verifications(request, [result])  # registers the holder of this request
        lic = result.licence
        log.warning("verified licence of %s, holder code %s, document %s", lic.holder_name, lic.holder_code,
                    lic.number)
        return web.json_response({"ok": True})

    app = create_app(world.services())
    app.router.add_post("/v1/test-careless", careless)
    client = await aiohttp_client(app, headers=world.auth())
    name, code = world.simulator.person(HUZHOU)
    lic = world.simulator.issue(HUZHOU, "id_card", "valid", NOW, holder=(name, code, "111"))
    resp = await client.post("/v1/test-careless", json=lic.body(), headers={"X-Request-Id": "req-careless"})
    assert resp.status == 200
    [entry] = [e for e in lines(captured) if e["logger"] == "gateway.somewhere"]
    assert entry["request_id"] == "req-careless" and entry["level"] == "WARNING"
    assert name not in entry["message"] and code not in entry["message"]
    assert entry["message"].startswith(f"verified licence of {REDACTED}, holder code ")
    assert len(client.server.app[AUDIT].sink.table) == 1


async def test_audit_outage_is_logged_without_personal_data(world, api, captured):
    name, code = world.simulator.person(HUZHOU)
    api.server.app[AUDIT].sink.fail_with = OSError(f"disk full while writing for {name} {code}")
    lic = world.simulator.issue(HUZHOU, "id_card", "valid", NOW, holder=(name, code, "111"))
    resp = await api.post("/v1/licences/verify", json=lic.body(), headers={"X-Request-Id": "req-outage-log"})
    assert resp.status == 503
    text = captured.getvalue()
    assert "audit batch of 1 failed" in text
    assert name not in text and code not in text


def test_redact_masks_valid_citizen_ids_only():
    first17 = "33050219900101001"
    code = first17 + citizen_id_check(first17)
    wrong = first17 + ("0" if citizen_id_check(first17) != "0" else "1")
    out = redact(f"holder {code}; order number {wrong}; lower {code.lower()}")
    assert code not in out and mask_holder_code(code) in out
    assert wrong in out  # an 18-digit number that is not a citizen ID stays readable


def test_redact_removes_the_requests_personal_values_longest_first():
    assert redact("applicant 张三丰 and 张三", ["张三", "张三丰"][::-1]) == f"applicant {REDACTED} and {REDACTED}"


def test_json_formatter_writes_one_object_per_line_with_extras():
    record = logging.LogRecord("gateway.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.request_id = "r-1"
    record.region = "330500"
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["message"] == "hello world" and doc["request_id"] == "r-1" and doc["region"] == "330500"
    assert doc["level"] == "INFO" and doc["logger"] == "gateway.x" and doc["time"].endswith("Z")


def test_redact_masks_a_citizen_id_run_together_with_letters():
    """Free text writes "ID330502…" or "No.330502…": the ID is masked there too (the pattern
    looked for a token standing alone, so a letter before it kept it in clear)."""
    first17 = "33050219900101001"
    code = first17 + citizen_id_check(first17)
    out = redact(f"applicant ID{code}, order No.{code}x")
    assert code not in out and out == f"applicant ID{mask_holder_code(code)}, order No.{mask_holder_code(code)}x"
    longer = "9" + code  # 19 digits: not an ID number, stays
    assert redact(f"ref {longer}") == f"ref {longer}"
