"""Load-test corpus from the issuer simulator (gateway/corpus.py, ``demo corpus``)."""

from __future__ import annotations

import argparse
import datetime as dt
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from adapters import FAMILIES
from gateway.__main__ import main as gateway_main
from gateway.corpus import (CORPUS_INDEX_BASE, CorpusBuilder, CorpusPlan, _decode, allocate, parse_mix,
                            select_regions, summary, write_jsonl)
from gateway.simulator import STANDING_REVOKED, STANDING_SUSPENDED, IssuerSimulator
from load.scenarios import load_corpus
from tests.conftest import NOW

HOUR = dt.timedelta(hours=1)


def _sim(world: Any, seed: int) -> IssuerSimulator:
    return IssuerSimulator(world.specs, world.regions, world.material, {t.key: t for t in world.catalogue.types},
                           seed=seed)


@pytest.fixture(scope="module")
def corpus(world: Any) -> list[dict[str, Any]]:
    """Made by one simulator process ("the corpus tool")..."""
    sim = _sim(world, 5)
    builder = CorpusBuilder(sim, world.catalogue, world.verifier, world.snapshot, sim.status_snapshot(NOW, HOUR),
                            NOW, seed=3)
    return builder.build(CorpusPlan(count=180, batches=4, batch_size=5, checks=12))


@pytest.fixture(scope="module")
def gateway_status(world: Any):
    """...judged against the status lists of ANOTHER simulator instance (a gateway worker's)."""
    return _sim(world, 99).status_snapshot(NOW, HOUR)


def test_mix_text_is_read_and_bad_mixes_are_refused() -> None:
    assert parse_mix("valid=70, expired=5,revoked=5") == {"valid": 70.0, "expired": 5.0, "revoked": 5.0}
    for bad, why in [("valid=70,forged=5", "unknown case"), ("valid", "case=weight"), ("valid=x", "number"),
                     ("valid=0", "positive sum"), ("valid=5,expired=-1", ">= 0")]:
        with pytest.raises(ValueError, match=why):
            parse_mix(bad)


def test_allocation_gives_exact_counts_in_proportion() -> None:
    cases = allocate({"valid": 70, "expired": 20, "revoked": 10}, 101, random.Random(1))
    assert len(cases) == 101
    assert Counter(cases) == {"valid": 71, "expired": 20, "revoked": 10}


def test_every_region_and_every_family_appears(world: Any, corpus: list[dict[str, Any]]) -> None:
    s = summary(corpus)
    assert s["regions"] == len(world.specs) == 45
    assert set(s["families"]) == {spec.family for spec in world.specs.values()}
    assert s["kinds"] == {"verify": 180, "batch": 4, "check": 12}


def test_every_verify_line_gets_its_expected_verdict_from_another_simulators_status_lists(
        world: Any, corpus: list[dict[str, Any]], gateway_status: Any) -> None:
    wrong = []
    for line in (x for x in corpus if x["kind"] == "verify"):
        result = world.verifier.verify(_decode(line["body"]), world.snapshot, gateway_status, NOW)
        if result.verdict.value != line["expect"]:
            wrong.append((line["tag"], result.reason_codes))
    assert wrong == []
    tags = Counter(line["tag"].split()[0] for line in corpus if line["kind"] == "verify")
    assert tags["revoked"] > 0 and tags["suspended"] > 0 and tags["valid"] > 100


def test_revoked_and_suspended_licences_use_the_standing_indices_and_the_rest_do_not(world: Any) -> None:
    sim = _sim(world, 6)
    builder = CorpusBuilder(sim, world.catalogue, world.verifier, world.snapshot, sim.status_snapshot(NOW, HOUR),
                            NOW)
    spec = world.specs["330100"]
    indexes = {}
    for case in ("revoked", "suspended", "valid"):
        body, verdict, _ = builder.issue("330100", case)
        raw = FAMILIES[spec.family].open(_decode(body), world.verifier.policy.limits).raw
        indexes[case] = int(raw[spec.fields["status_index"]])
    assert indexes["revoked"] in STANDING_REVOKED and indexes["suspended"] in STANDING_SUSPENDED
    assert CORPUS_INDEX_BASE <= indexes["valid"] < STANDING_REVOKED.start


def test_batches_carry_one_expectation_per_licence(corpus: list[dict[str, Any]]) -> None:
    for line in (x for x in corpus if x["kind"] == "batch"):
        assert len(line["body"]["licences"]) == len(line["expect"]) == 5


async def test_item_check_lines_get_their_expected_outcome_over_http(world: Any, api: Any,
                                                                     corpus: list[dict[str, Any]]) -> None:
    checks = [x for x in corpus if x["kind"] == "check"]
    outcomes = Counter(x["expect"] for x in checks)
    assert outcomes["complete"] >= 6 and outcomes["incomplete"] >= 1
    for line in checks:
        resp = await api.post(line["path"], json=line["body"])
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["outcome"] == line["expect"], line["tag"]


def test_written_corpus_is_accepted_by_the_load_tool(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    path = tmp_path / "c.jsonl"
    assert write_jsonl(path, corpus) == len(corpus)
    entries = load_corpus(path)
    assert Counter(e.kind for e in entries) == {"verify": 180, "batch": 4, "check": 12}


def test_family_and_algorithm_filters_select_regions(world: Any) -> None:
    es256 = select_regions(world.specs, algorithms=("ES256",))
    assert es256 and all(world.specs[c].algorithms[0] == "ES256" for c in es256)
    with pytest.raises(ValueError, match="no region"):
        select_regions(world.specs, families=("carrier-pigeon",))


@pytest.mark.parametrize("argv,why", [
    (["--mix", "valid=1,forged=1"], "unknown case"),
    (["--batch-size", "0"], "batch size"),
    (["--count", "0", "--batches", "0", "--checks", "0"], "nothing to generate"),
])
def test_demo_corpus_command_refuses_bad_plans_with_exit_2(tmp_path: Path, capsys: Any, argv: list[str],
                                                           why: str) -> None:
    out = tmp_path / "c.jsonl"
    assert gateway_main(["demo", "corpus", "--out", str(out), *argv]) == 2
    assert why in capsys.readouterr().err and not out.exists()


def test_plan_defaults_from_the_command_line() -> None:
    from gateway.corpus import add_corpus_arguments, plan_from_args

    p = argparse.ArgumentParser()
    add_corpus_arguments(p)
    plan = plan_from_args(p.parse_args(["--out", "x", "--count", "300", "--families", "jws,sm2-xml"]))
    assert (plan.count, plan.batches, plan.checks, plan.families) == (300, 30, 30, ("jws", "sm2-xml"))
