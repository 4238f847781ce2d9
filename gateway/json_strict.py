"""JSON that means one thing to every reader: no object may name a member twice.

RFC 8259 (4.) leaves a repeated member name to the reader: orjson keeps the last value, other
readers keep the first or all of them. Wherever a third party may read the same bytes (a signed
licence, a request whose digest a signed receipt covers), one text could then say two things; so
such a text is refused. orjson does not report repeats, so they are found by counting: the member
names in the text (string tokens followed by ``:``) against the members of what orjson read.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

#: one JSON string token of a text orjson has read (valid JSON: outside strings no ``"`` occurs)
#: and, in group 1, the ``:`` that makes it a member name
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?', re.S)


def _members(value: Any) -> int:
    """How many members the objects in ``value`` hold, all levels (iterative: no recursion limit)."""
    count, stack = 0, [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            count += len(v)
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return count


def names_a_member_twice(text: bytes, doc: Any) -> bool:
    """Whether ``text`` (which orjson read as ``doc``) names some member of some object twice."""
    if type(doc) is not dict and type(doc) is not list:
        return False
    try:
        if orjson.dumps(doc) == text:  # written as orjson writes (compact, in order): every member once
            return False
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels; it reads 1,024): count
        pass
    names = _JSON_STRING.findall(text)  # group 1 of each: b"" for a value, the ":" for a member name
    return len(names) - names.count(b"") != _members(doc)
