"""A request body naming a member twice is refused (400 BAD_REQUEST).

orjson keeps the last value of a repeated member; other readers keep the first. The signed
receipt covers the body's digest, so a body ``{"licence": A, "licence": B}`` answered for B would
read, to an auditor's JSON reader, as a receipt about A. Controls: the same bodies written with
whitespace, reordered members and escaped names are answered.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gateway.json_strict import names_a_member_twice

from .conftest import NOW

JSON = {"Content-Type": "application/json"}


def licence_entry(world: Any, region: str = "330500") -> dict[str, str]:
    data = world.simulator.issue(region, "business_licence", "valid", NOW).data
    return {"licence": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


# --- the counting itself ---------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    b'{"a":1,"a":2}',
    b'{"a": 1, "b": {"c": 1, "c": 1}}',
    b'[{"x": "y"}, {"x": 1, "x": 2}]',
    b'{"a": {"b": [1, {"d": 1, "\\u0064": 2}]}}',  # "\u0064" is "d"
    b'{"k": "v:\\"", "k": "w"}',                    # a colon and an escaped quote inside a value
    b'{"deep": ' + b'[' * 600 + b'{"a": 1, "a": 2}' + b']' * 600 + b'}',
])
def test_texts_naming_a_member_twice_are_found(text: bytes) -> None:
    import orjson
    assert names_a_member_twice(text, orjson.loads(text))


@pytest.mark.parametrize("text", [
    b'{"a":1,"b":2}',
    b'{\n  "a" : 1,\n  "b" : {"a": 1, "b": [{"a": "x:"}, "\\"a\\":"]}\n}',
    b'{"\\u0061": 1, "b": 2}',
    b'[]', b'{}', b'"a:"', b'[1, "a", {"a": {}}]',
    b'{"deep": ' + b'[' * 600 + b']' * 600 + b'}',  # deeper than orjson writes: counted instead
])
def test_texts_naming_every_member_once_pass(text: bytes) -> None:
    import orjson
    assert not names_a_member_twice(text, orjson.loads(text))


# --- through the API -----------------------------------------------------------------------

def duplicated_licence_body(world: Any) -> bytes:
    """{"licence": <a Shanghai licence>, "encoding": "base64", "licence": <a Huzhou licence>}"""
    first, second = licence_entry(world, "310000"), licence_entry(world, "330500")
    return (f'{{"licence": "{first["licence"]}", "encoding": "base64", '
            f'"licence": "{second["licence"]}"}}').encode("ascii")


async def test_verify_body_naming_the_licence_twice_is_refused(world: Any, api: Any) -> None:
    resp = await api.post("/v1/licences/verify", data=duplicated_licence_body(world), headers=JSON)
    body = await resp.json()
    assert resp.status == 400 and body["code"] == "BAD_REQUEST" and "twice" in body["detail"]


async def test_verify_body_with_whitespace_and_escaped_names_is_answered(world: Any, api: Any) -> None:
    entry = licence_entry(world)
    text = json.dumps(entry, indent=2).replace('"encoding"', '"\\u0065ncoding"').encode("ascii")
    resp = await api.post("/v1/licences/verify", data=text, headers=JSON)
    assert resp.status == 200 and (await resp.json())["verdict"] == "valid"


async def test_batch_entry_naming_a_member_twice_is_refused(world: Any, api: Any) -> None:
    entry = licence_entry(world)
    text = ('{"licences": [' + json.dumps(entry) + ', {"licence": "eyJ", "encoding": "utf-8", "encoding": "base64"}]}')
    resp = await api.post("/v1/licences/verify-batch", data=text.encode("ascii"), headers=JSON)
    assert resp.status == 400 and (await resp.json())["code"] == "BAD_REQUEST"
    control = await api.post("/v1/licences/verify-batch", data=json.dumps({"licences": [entry, entry]}, indent=1),
                             headers=JSON)
    assert control.status == 200 and [r["verdict"] for r in (await control.json())["results"]] == ["valid", "valid"]
