"""Scenarios as data, and the request corpus (JSONL) they draw from.

Corpus file format (one JSON object per line, blank lines and lines starting with ``#`` ignored)::

    {"kind": "verify", "path": "/v1/licences/verify",
     "body": {"licence": "<string>", "encoding": "utf-8"}, "expect": "valid"}
    {"kind": "batch", "path": "/v1/licences/verify-batch",
     "body": {"licences": [...]}, "expect": ["valid", "invalid"]}
    {"kind": "check", "path": "/v1/items/{code}/check", "body": {...}, "expect": "complete"}

* ``kind`` (required): ``verify`` | ``batch`` | ``check`` -- which scenarios may draw the line.
* ``path`` (optional): defaults per kind (``check`` has no default: its path names the item).
* ``body`` (required): a JSON object, sent as-is with ``Content-Type: application/json``.
* ``method`` (optional): defaults to ``POST``.
* ``expect`` (optional): the expected verdict (``valid`` | ``invalid`` | ``indeterminate``); for a
  batch either one verdict for every item or a list, one per item; for a check the expected
  ``outcome`` (``complete`` | ``incomplete`` | ``indeterminate``). Mismatches are counted.
* ``tag`` (optional): free text (e.g. the tampering applied), carried into nothing but logs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from load.errors import CORPUS_INVALID, CORPUS_MISSING_KIND, SCENARIO_UNKNOWN, LoadRefused

KINDS: tuple[str, ...] = ("verify", "batch", "check")
VERDICTS: tuple[str, ...] = ("valid", "invalid", "indeterminate")
#: what an item check answers in ``outcome`` (check lines may expect these too)
CHECK_OUTCOMES: tuple[str, ...] = ("complete", "incomplete", "indeterminate")
DEFAULT_PATHS: dict[str, str] = {
    "verify": "/v1/licences/verify",
    "batch": "/v1/licences/verify-batch",
}
#: the OAuth scope each kind of request needs on the gateway: the tool asks for these and no more
KIND_SCOPES: dict[str, str] = {
    "verify": "licences:verify",
    "batch": "licences:verify",
    "check": "items:check",
}
MAX_CORPUS_LINES = 200_000
#: a path on the target: one leading slash (``//host`` would read as another host), no spaces,
#: no ``{placeholder}`` left unfilled
_PATH_RE = re.compile(r"^/(?!/)[^\s{}]*$")
MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    mix: tuple[tuple[str, float], ...]   # (kind, weight); weights need not sum to 1
    default_rate: float                   # requests per second when --rate is not given
    default_duration: str                 # shown in the README / help; --duration is still required

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k, w in self.mix if w > 0)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The OAuth scopes its requests need (sorted, no duplicates)."""
        return tuple(sorted({KIND_SCOPES[k] for k in self.kinds}))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("smoke", "a gentle stream of single verifications: is the core path up and fast?",
                 (("verify", 1.0),), default_rate=20.0, default_duration="10s"),
        Scenario("verify", "single verifications only (POST /v1/licences/verify): the latency-critical core",
                 (("verify", 1.0),), default_rate=200.0, default_duration="60s"),
        Scenario("batch", "batch verifications only (POST /v1/licences/verify-batch)",
                 (("batch", 1.0),), default_rate=20.0, default_duration="60s"),
        Scenario("check", "item material checks only (POST /v1/items/{code}/check)",
                 (("check", 1.0),), default_rate=50.0, default_duration="60s"),
        Scenario("mix", "a service-window day: mostly single verifications, some item checks and batches",
                 (("verify", 0.75), ("check", 0.20), ("batch", 0.05)), default_rate=150.0, default_duration="60s"),
    )
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise LoadRefused(SCENARIO_UNKNOWN, f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    kind: str
    path: str
    body: dict[str, Any]
    method: str = "POST"
    expect: tuple[str, ...] | str | None = None
    tag: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "path": self.path, "body": self.body}
        if self.method != "POST":
            d["method"] = self.method
        if self.expect is not None:
            d["expect"] = list(self.expect) if isinstance(self.expect, tuple) else self.expect
        if self.tag:
            d["tag"] = self.tag
        return d


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A corpus entry with its body serialised once, ready to send many times."""

    kind: str
    method: str
    path: str
    body: bytes
    expect: tuple[str, ...] | str | None


def _bad(lineno: int, why: str) -> LoadRefused:
    return LoadRefused(CORPUS_INVALID, f"corpus line {lineno}: {why}")


def parse_corpus_line(line: str | bytes, lineno: int = 1) -> CorpusEntry:
    if len(line) > MAX_LINE_BYTES:
        raise _bad(lineno, f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _bad(lineno, f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _bad(lineno, "must be a JSON object")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise _bad(lineno, f"kind must be one of {KINDS}, got {kind!r}")
    path = obj.get("path", DEFAULT_PATHS.get(kind))
    if not isinstance(path, str) or not _PATH_RE.match(path) or "://" in path:
        raise _bad(lineno, f"path must be an absolute path on the target (no host, placeholders or spaces), "
                           f"got {path!r}")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise _bad(lineno, "body must be a JSON object")
    method = obj.get("method", "POST")
    if method not in ("POST", "GET", "PUT"):
        raise _bad(lineno, f"method must be POST, GET or PUT, got {method!r}")
    expect = obj.get("expect")
    if isinstance(expect, list):
        if kind != "batch" or not all(e in VERDICTS for e in expect):
            raise _bad(lineno, "a list of expected verdicts is for batch lines, each one of " + "/".join(VERDICTS))
        expect = tuple(expect)
    elif kind == "check" and expect is not None and expect not in CHECK_OUTCOMES:
        raise _bad(lineno, f"a check line's expect is its outcome, one of {CHECK_OUTCOMES}, got {expect!r}")
    elif kind != "check" and expect is not None and expect not in VERDICTS:
        raise _bad(lineno, f"expect must be one of {VERDICTS}, got {expect!r}")
    tag = obj.get("tag", "")
    if not isinstance(tag, str):
        raise _bad(lineno, "tag must be a string")
    return CorpusEntry(kind=kind, path=path, body=body, method=method, expect=expect, tag=tag)


def parse_corpus(lines: Iterable[str | bytes]) -> list[CorpusEntry]:
    entries: list[CorpusEntry] = []
    for lineno, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text[:1] in ("#", b"#"):
            continue
        if len(entries) >= MAX_CORPUS_LINES:
            raise _bad(lineno, f"more than {MAX_CORPUS_LINES} entries")
        entries.append(parse_corpus_line(text, lineno))
    if not entries:
        raise LoadRefused(CORPUS_INVALID, "the corpus has no entries")
    return entries


def load_corpus(path: str | Path) -> list[CorpusEntry]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return parse_corpus(fh)
    except OSError as exc:
        raise LoadRefused(CORPUS_INVALID, f"cannot read corpus {p}: {exc.strerror}") from None


def write_corpus(path: str | Path, entries: Iterable[CorpusEntry]) -> int:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("wb") as fh:
        for e in entries:
            fh.write(orjson.dumps(e.to_json()) + b"\n")
            n += 1
    return n


def prepare(entry: CorpusEntry) -> PreparedRequest:
    expect = entry.expect
    licences = entry.body.get("licences")
    if entry.kind == "batch" and isinstance(expect, str) and isinstance(licences, list):
        # "one verdict for every item": one per licence sent, so an answer with fewer (or more)
        # results than licences is a mismatch, not a match on the results it happened to hold
        expect = (expect,) * len(licences)
    return PreparedRequest(entry.kind, entry.method, entry.path, orjson.dumps(entry.body), expect)


@dataclass(slots=True)
class RequestPicker:
    """Draws requests for a scenario: the kind by the scenario's weights (seeded RNG), then the
    entries of that kind in round-robin order, so every corpus line gets used."""

    scenario: Scenario
    rng: random.Random
    by_kind: dict[str, list[PreparedRequest]] = field(default_factory=dict)
    _next: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, scenario: Scenario, corpus: Iterable[CorpusEntry], seed: int) -> "RequestPicker":
        by_kind: dict[str, list[PreparedRequest]] = {}
        for e in corpus:
            by_kind.setdefault(e.kind, []).append(prepare(e))
        missing = [k for k in scenario.kinds if not by_kind.get(k)]
        if missing:
            raise LoadRefused(CORPUS_MISSING_KIND,
                              f"scenario {scenario.name!r} needs corpus lines of kind {', '.join(missing)}; "
                              f"the corpus has {', '.join(sorted(by_kind)) or 'none'}")
        return cls(scenario=scenario, rng=random.Random(seed), by_kind=by_kind)

    def next(self) -> PreparedRequest:
        kinds = self.scenario.kinds
        if len(kinds) == 1:
            kind = kinds[0]
        else:
            weights = [w for _, w in self.scenario.mix if w > 0]
            kind = self.rng.choices(kinds, weights=weights)[0]
        pool = self.by_kind[kind]
        i = self._next.get(kind, 0)
        self._next[kind] = (i + 1) % len(pool)
        return pool[i]
