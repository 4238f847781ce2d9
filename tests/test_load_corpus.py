"""Corpus format (JSONL) and scenario request mix."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from load.errors import CORPUS_INVALID, CORPUS_MISSING_KIND, SCENARIO_UNKNOWN, LoadRefused
from load.scenarios import (
    SCENARIOS,
    CorpusEntry,
    RequestPicker,
    get_scenario,
    load_corpus,
    parse_corpus,
    write_corpus,
)

VERIFY = '{"kind":"verify","body":{"licence":"eyJ.a.b","encoding":"utf-8"},"expect":"valid"}'
BATCH = '{"kind":"batch","body":{"licences":["a","b"]},"expect":["valid","invalid"]}'
CHECK = '{"kind":"check","path":"/v1/items/330100-0001/check","body":{"licences":["a"]},"expect":"complete"}'


def test_corpus_lines_parse_with_default_paths_and_expectations() -> None:
    entries = parse_corpus(["# comment", "", VERIFY, BATCH, CHECK])
    assert [e.kind for e in entries] == ["verify", "batch", "check"]
    assert entries[0].path == "/v1/licences/verify"
    assert entries[1].path == "/v1/licences/verify-batch"
    assert entries[1].expect == ("valid", "invalid")
    assert entries[2].path == "/v1/items/330100-0001/check"
    assert entries[0].method == "POST"


def test_corpus_round_trips_through_a_file(tmp_path: Path) -> None:
    entries = parse_corpus([VERIFY, BATCH, CHECK])
    path = tmp_path / "c.jsonl"
    assert write_corpus(path, entries) == 3
    assert load_corpus(path) == entries


@pytest.mark.parametrize("line,why", [
    ('{"kind":"verify","path":"http://10.0.0.1/v1/licences/verify","body":{}}', "path"),  # redirect load elsewhere
    ('{"kind":"verify","path":"//evil.example/x","body":{}}', "path"),
    ('{"kind":"check","body":{}}', "path"),                            # check needs its item path
    ('{"kind":"check","path":"/v1/items/{code}/check","body":{}}', "path"),  # unfilled placeholder
    ('{"kind":"delete_all","body":{}}', "kind"),
    ('{"kind":"verify","body":"eyJ.a.b"}', "body"),
    ('{"kind":"verify","body":{},"method":"DELETE"}', "method"),
    ('{"kind":"verify","body":{},"expect":"probably"}', "expect"),
    ('{"kind":"verify","body":{},"expect":["valid"]}', "list"),
    ('{"kind":"check","path":"/v1/items/X/check","body":{},"expect":"valid"}', "outcome"),  # checks answer outcomes
    ('{"kind":"verify","body":{},"expect":"complete"}', "expect"),
    ('{"kind":"verify","body":{}', "JSON"),
    ('["verify"]', "object"),
])
def test_hostile_or_malformed_corpus_lines_are_refused_with_the_line_number(line: str, why: str) -> None:
    with pytest.raises(LoadRefused) as ei:
        parse_corpus([VERIFY, line])
    assert ei.value.rule == CORPUS_INVALID
    assert "line 2" in str(ei.value) and why in str(ei.value)


def test_empty_corpus_is_refused() -> None:
    with pytest.raises(LoadRefused) as ei:
        parse_corpus(["", "# nothing"])
    assert ei.value.rule == CORPUS_INVALID


def test_missing_corpus_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadRefused) as ei:
        load_corpus(tmp_path / "absent.jsonl")
    assert ei.value.rule == CORPUS_INVALID


def test_scenario_needing_a_kind_the_corpus_lacks_is_refused() -> None:
    with pytest.raises(LoadRefused) as ei:
        RequestPicker.build(get_scenario("mix"), parse_corpus([VERIFY]), seed=1)
    assert ei.value.rule == CORPUS_MISSING_KIND
    assert "batch" in str(ei.value) and "check" in str(ei.value)


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(LoadRefused) as ei:
        get_scenario("everything")
    assert ei.value.rule == SCENARIO_UNKNOWN


def test_all_required_scenarios_exist_as_data() -> None:
    assert {"smoke", "verify", "batch", "check", "mix"} <= set(SCENARIOS)
    for s in SCENARIOS.values():
        assert s.kinds and all(w > 0 for _, w in s.mix) and s.default_rate > 0


def test_mix_scenario_draws_kinds_by_weight_and_cycles_entries() -> None:
    corpus = parse_corpus([VERIFY, VERIFY.replace("eyJ.a.b", "eyJ.c.d"), BATCH, CHECK])
    picker = RequestPicker.build(get_scenario("mix"), corpus, seed=5)
    drawn = [picker.next() for _ in range(20_000)]
    share = Counter(r.kind for r in drawn)
    weights = dict(get_scenario("mix").mix)
    for kind, w in weights.items():
        assert share[kind] / len(drawn) == pytest.approx(w / sum(weights.values()), abs=0.02)
    verify_bodies = Counter(r.body for r in drawn if r.kind == "verify")
    assert len(verify_bodies) == 2
    a, b = verify_bodies.values()
    assert abs(a - b) <= 1  # round robin


def test_prepared_body_is_the_serialised_json_body() -> None:
    picker = RequestPicker.build(get_scenario("smoke"), parse_corpus([VERIFY]), seed=1)
    req = picker.next()
    assert req.body == b'{"licence":"eyJ.a.b","encoding":"utf-8"}'
    assert req.expect == "valid"
    assert isinstance(picker.rng, random.Random)


def test_corpus_entry_json_keeps_only_non_default_fields() -> None:
    e = CorpusEntry(kind="verify", path="/v1/licences/verify", body={"licence": "x"})
    assert e.to_json() == {"kind": "verify", "path": "/v1/licences/verify", "body": {"licence": "x"}}
