"""Session-15 fast paths of adapters.ofd.xmlparts held equal to their references.

* parse_signature_datetime's common "%Y-%m-%d %H:%M:%S" shape is read with datetime.fromisoformat:
  it must answer as strptime read as Beijing time and converted to UTC, and None (the strptime
  formats failing too) for an impossible date or time;
* the Signature.xml base directory is posixpath.dirname, from a bounded cache.
"""

from __future__ import annotations

import datetime as dt
import posixpath

import pytest

from adapters.ofd import xmlparts
from adapters.ofd.xmlparts import OFD_LOCAL_TZ, parse_signature_datetime

_VALUES = [f"{y:04d}-{m:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"
           for y in (1999, 2000, 2024, 2026) for m in (1, 2, 12) for d in (1, 28, 29, 30, 31)
           for h, mi, s in ((0, 0, 0), (7, 59, 59), (8, 0, 0), (23, 59, 59))]


def _reference(value: str) -> dt.datetime | None:
    try:
        naive = dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=OFD_LOCAL_TZ).astimezone(dt.timezone.utc)


@pytest.mark.parametrize("value", _VALUES)
def test_common_shape_reads_as_strptime_in_beijing_time(value) -> None:
    expected = _reference(value)
    got = parse_signature_datetime(value)
    assert got == expected
    if expected is not None:
        assert got.tzinfo is dt.timezone.utc
        assert (got.year, got.month, got.day, got.hour, got.minute, got.second) == (
            expected.year, expected.month, expected.day, expected.hour, expected.minute, expected.second)


@pytest.mark.parametrize("value", ["2026-02-29 12:00:00", "2026-04-31 00:00:00", "2026-00-10 00:00:00",
                                   "2026-11-27 12:60:00", "2026-11-27 12:00:60", "0000-01-01 12:00:00"])
def test_impossible_times_read_as_none(value) -> None:
    assert parse_signature_datetime(value) is None


@pytest.mark.parametrize("value", ["2026-11-27T12:00:00", "2026-11-27 12:00:00.5", "20261127120000",
                                   " 2026-11-27 12:00:00 "])
def test_other_shapes_still_read_by_the_format_list(value) -> None:
    got = parse_signature_datetime(value)
    assert got is not None and got.tzinfo is dt.timezone.utc
    assert got.astimezone(OFD_LOCAL_TZ).replace(tzinfo=None, microsecond=0) == dt.datetime(2026, 11, 27, 12, 0, 0)


def test_base_dir_is_dirname_and_stays_bounded() -> None:
    xmlparts._base_dir.items.clear()
    paths = [f"Doc_{i}/Signs/Sign_{i}/Signature.xml" for i in range(300)] + ["Signature.xml", "a/b/"]
    for path in paths + paths:
        assert xmlparts._base_dir(path) == posixpath.dirname(path)
        assert len(xmlparts._base_dir.items) <= 256
    assert xmlparts._base_dir.items   # it remembers


def test_a_path_memo_derives_once_per_path_until_full() -> None:
    calls: list[str] = []
    memo = xmlparts.path_memo(lambda p: calls.append(p) or p.upper(), size=3)
    assert [memo(p) for p in ("a", "b", "a", "b")] == ["A", "B", "A", "B"]
    assert calls == ["a", "b"]
    memo("c"), memo("d")          # full at 3: cleared, then d
    assert calls == ["a", "b", "c", "d"] and list(memo.items) == ["d"]
