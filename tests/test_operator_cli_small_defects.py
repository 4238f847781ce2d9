"""Small operator- and partner-facing defects found by following README.md and load/README.md literally.

Each test failed before its fix; controls beside them hold either way.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import io
import socket
import sys
from pathlib import Path

import orjson
import pytest

import load.cli as load_cli
from gateway.__main__ import main
from gateway.audit import SqliteAuditSink
from gateway.console import accounts as accounts_module
from gateway.console.accounts import load_accounts, make_hasher
from gateway.corpus import plan_from_args
from gateway.trustlist import (TEST_OPERATOR_PRIVATE, TEST_OPERATOR_PUBLIC, load_operator_key, open_signed,
                               write_floor)
from load.errors import EXIT_REFUSED, EXIT_TARGET_DOWN
from tests.test_audit_cli import make_sqlite, pem
from tests.test_audit_cli import run as audit

from .conftest import NOW


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])          # closed again: nothing listens there


# --- 1. the load tool: cheap checks before the default corpus, a dead target in one line ---------------
@pytest.fixture
def corpus_builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every build of the default corpus (~3 s each) and makes none."""
    built: list[Path] = []

    def spy(path: Path, count: int = 0) -> int:
        built.append(path)
        raise RuntimeError("the default corpus was built")

    monkeypatch.setattr(load_cli, "make_default_corpus", spy)
    return built


def _load(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return load_cli.main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("mode", [["run", "--rate", "10"], ["max", "--concurrency", "1"]])
def test_load_refuses_a_missing_token_file_before_building_the_default_corpus(
        mode: list[str], tmp_path: Path, corpus_builds: list[Path]) -> None:
    code, _, err = _load(*mode, "--scenario", "verify", "--duration", "1s", "--quiet",
                         "--target", f"http://127.0.0.1:{_closed_port()}",
                         "--token-file", str(tmp_path / "no-such-token"), "--out", str(tmp_path / "out"))
    assert code == EXIT_REFUSED and "TOKEN_UNAVAILABLE" in err and "no-such-token" in err, err
    assert corpus_builds == []                          # it used to build the corpus first
    assert not (tmp_path / "out").exists()


def test_load_says_the_target_is_down_in_one_bilingual_line_before_building_the_default_corpus(
        tmp_path: Path, corpus_builds: list[Path]) -> None:
    port = _closed_port()
    code, out, err = _load("run", "--scenario", "verify", "--duration", "1s", "--rate", "10", "--quiet",
                           "--target", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "out"))
    assert code == EXIT_TARGET_DOWN and out == ""
    assert corpus_builds == []
    assert err.count("\n") == 1 and err.startswith("load: 目标无法连接 / target down: TARGET_UNREACHABLE: ")
    assert f"http://127.0.0.1:{port}/v1/oauth/token" in err and "Connection refused" in err
    for dump in ("ConnectionKey", "ClientConnectorError", "proxy_headers_hash", "Errno"):
        assert dump not in err                          # it was the repr of aiohttp's connection key
    assert not (tmp_path / "out").exists()
    # control: a bad --corpus file (cheap to read) is still refused first, before any token is asked for
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    code, _, err = _load("run", "--scenario", "verify", "--duration", "1s", "--rate", "10", "--quiet",
                         "--target", f"http://127.0.0.1:{port}", "--corpus", str(bad), "--out", str(tmp_path / "out"))
    assert code == EXIT_REFUSED and "CORPUS_INVALID" in err


# --- 2. audit prune with nothing to prune, audit verify with no records left -----------------------------
def test_audit_prune_with_nothing_to_prune_says_so_not_checkpoint_0(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path, 30)
    code, out, _ = audit("prune", "--store", f"sqlite:{db}", "--before", "2025-01-01T00:00:00Z")
    assert code == 0 and "checkpoint 0" not in out
    assert out == ("nothing pruned: no records up to a checkpoint signed before 2025-01-01T00:00:00Z; "
                   "the chain still starts at its first record\n")
    # control: a real prune says what it deleted and where the chain starts
    code, out, _ = audit("prune", "--store", f"sqlite:{db}", "--before", "2025-03-03T00:00:00Z")
    assert code == 0 and out == "pruned 30 records; the chain now starts after checkpoint 30\n"
    code, out, _ = audit("prune", "--store", f"sqlite:{db}", "--before", "2025-03-03T00:00:00Z")
    assert code == 0 and out.startswith("nothing pruned: ")
    assert "the chain still starts after the checkpoint signed at seq 30" in out


def test_audit_verify_after_a_full_prune_says_no_records_follow_the_checkpoint_not_seq_31_to_30(
        tmp_path: Path) -> None:
    db = make_sqlite(tmp_path, 30)
    assert audit("prune", "--store", f"sqlite:{db}", "--before", "2025-03-03T00:00:00Z")[0] == 0
    code, out, _ = audit("verify", "--store", f"sqlite:{db}", "--key", str(pem(tmp_path)))
    assert code == 0 and "31..30" not in out
    assert out.startswith("OK: 0 records (none after the checkpoint signed at seq 30: every earlier record was "
                          "pruned), 1 signed checkpoints\n")
    # an empty trail read "seq 1..0"
    empty = tmp_path / "empty.db"

    async def create() -> None:
        await (await SqliteAuditSink.open(empty)).close()

    asyncio.run(create())
    code, out, _ = audit("verify", "--store", f"sqlite:{empty}", "--key", str(pem(tmp_path)))
    assert code == 0 and out.startswith("OK: 0 records (the trail holds none yet)") and "1..0" not in out


# --- 3. a bad --since / --until / --before date --------------------------------------------------------
@pytest.mark.parametrize("argv,option", [
    (["search", "--since", "yesterday"], "--since"),
    (["search", "--until", "2026-02-30"], "--until"),
    (["prune", "--before", "2025-13-01T00:00:00Z"], "--before"),
])
def test_audit_bad_date_names_the_option_and_the_format(argv: list[str], option: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    db = make_sqlite(tmp_path, 3)
    code, out, _ = audit(argv[0], "--store", f"sqlite:{db}", *argv[1:])
    err = capsys.readouterr().err    # argparse writes its usage error to sys.stderr
    assert code == 2 and out == ""
    assert f"argument {option}: 日期时间无效 / not a date-time: {argv[-1]!r}" in err
    assert "2026-01-01T00:00:00Z" in err and "_time" not in err   # it said "invalid _time value"


# --- 4. staff list on a missing store, staff add --replace ------------------------------------------------
def test_staff_list_of_a_missing_store_says_there_are_no_accounts(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "staff.json"
    assert main(["staff", "list", "--file", str(missing)]) == 0   # missing = no accounts (accounts.load_accounts)
    got = capsys.readouterr()
    assert got.out == ""                                         # stdout stays one line per account
    assert got.err == f"无账号 / no accounts: the staff store {missing} does not exist yet (staff add creates it)\n"
    assert not missing.parent.exists()
    empty = tmp_path / "staff.json"
    empty.write_text('{"staff": []}', encoding="utf-8")
    assert main(["staff", "list", "--file", str(empty)]) == 0
    assert capsys.readouterr().err == f"无账号 / no accounts: the staff store {empty} is empty\n"


def test_staff_add_replace_says_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "staff.json"
    monkeypatch.setattr(accounts_module, "make_hasher", lambda: make_hasher(1, 8, 1))
    add = ["staff", "add", "dora", "--role", "clerk", "--window", "HZ-01", "--password-stdin", "--file", str(path)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("dora-pass-0004\n"))
    assert main([*add, "--replace"]) == 0      # control: --replace of an account not there yet adds it
    assert capsys.readouterr().out == f"added dora (clerk, window HZ-01) to {path}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("dora-pass-0005\n"))
    add[4] = "supervisor"
    assert main([*add, "--replace"]) == 0
    assert capsys.readouterr().out == f"replaced dora (supervisor, window HZ-01) in {path}\n"
    assert load_accounts(path)["dora"].role == "supervisor"


# --- 5. trust verify --held -------------------------------------------------------------------------------
@pytest.fixture
def signed_lists(world, tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for version in (1, 2):
        doc = copy.deepcopy(world.doc)
        doc["version"] = version
        (tmp_path / f"v{version}.json").write_bytes(orjson.dumps(doc))
        paths[f"s{version}"] = tmp_path / f"s{version}.json"
        assert main(["trust", "sign", "--key", str(TEST_OPERATOR_PRIVATE), "--in", str(tmp_path / f"v{version}.json"),
                     "--out", str(paths[f"s{version}"])]) == 0
    signed = open_signed(paths["s2"].read_bytes(), [load_operator_key(TEST_OPERATOR_PUBLIC)])
    paths["record"] = tmp_path / "trust-held.json"
    write_floor(paths["record"], signed, NOW)
    paths["unsigned"] = tmp_path / "v2.json"
    return paths


def test_trust_verify_errors_about_the_held_file_name_the_held_argument(
        signed_lists: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    verify = ["trust", "verify", str(signed_lists["s2"]), "--pubkey", str(TEST_OPERATOR_PUBLIC)]
    capsys.readouterr()
    # an unsigned document as --held said "refused: malformed: not a signed trust list", exit 1: as if the
    # list checked (which is fine) were refused
    assert main([*verify, "--held", str(signed_lists["unsigned"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"错误 / error: --held {signed_lists['unsigned']}: 不是现行的信任列表 / not the trust list "
                          f"in force: malformed: ") and "拒绝 / refused" not in err
    missing = tmp_path / "missing.json"
    assert main([*verify, "--held", str(missing)]) == 2
    assert capsys.readouterr().err == (f"错误 / error: --held {missing}: 无法读取 / cannot read it: "
                                       "No such file or directory\n")
    # the held-version record given as the list to check: it goes with --held
    assert main(["trust", "verify", str(signed_lists["record"]), "--pubkey", str(TEST_OPERATOR_PUBLIC),
                 "--held", str(signed_lists["s2"])]) == 2
    assert "held-version record (trust_state)" in (err := capsys.readouterr().err) and "give it with --held" in err


def test_trust_verify_held_takes_the_gateways_held_version_record(
        signed_lists: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pub = ["--pubkey", str(TEST_OPERATOR_PUBLIC), "--held", str(signed_lists["record"])]
    capsys.readouterr()
    assert main(["trust", "verify", str(signed_lists["s2"]), *pub]) == 0
    assert orjson.loads(capsys.readouterr().out)["verdict"] == "unchanged"
    assert main(["trust", "verify", str(signed_lists["s1"]), *pub]) == 1   # what a restarted gateway refuses
    err = capsys.readouterr().err
    assert "rollback" in err and str(signed_lists["record"]) in err
    # control: the signed list in force works as before
    assert main(["trust", "verify", str(signed_lists["s1"]), "--pubkey", str(TEST_OPERATOR_PUBLIC),
                 "--held", str(signed_lists["s2"])]) == 1
    assert "rollback" in capsys.readouterr().err


# --- 6. demo corpus --count 0 ------------------------------------------------------------------------------
def test_demo_corpus_count_0_writes_nothing_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "corpus.jsonl"
    assert main(["demo", "corpus", "--out", str(out), "--count", "0"]) == 2   # it wrote one batch line, exit 0
    assert not out.exists()
    assert "nothing to generate" in capsys.readouterr().err


def test_demo_corpus_default_batches_are_none_without_singles_at_least_one_with_them() -> None:
    def plan(count: int, **kw: object) -> tuple[int, int, int]:
        ns = argparse.Namespace(count=count, mix=None, families=None, algorithms=None, batches=None, batch_size=10,
                                checks=None, check_incomplete=0.2, seed=1)
        vars(ns).update(kw)
        p = plan_from_args(ns)
        return p.count, p.batches, p.checks

    assert plan(0, checks=3) == (0, 0, 3)      # only checks, as asked: no unasked batch line
    assert plan(5) == (5, 1, 0) and plan(1000) == (1000, 100, 100)   # controls: count/10, at least 1
    assert plan(0, batches=2) == (0, 2, 0)


# --- 7. the partner API: JSON bodies are UTF-8 ---------------------------------------------------------------
@pytest.mark.parametrize("charset", ["gbk", "GB2312", '"iso-8859-1"', "utf-16"])
async def test_a_json_body_declared_in_another_charset_is_415(api, world, charset: str) -> None:
    body = orjson.dumps(world.simulator.issue("341100", "id_card", "valid", NOW).body())
    resp = await api.post("/v1/licences/verify", data=body,
                          headers={"Content-Type": f"application/json; charset={charset}"})
    assert resp.status == 415                   # it was read as UTF-8 and answered 200
    problem = await resp.json()
    assert problem["code"] == "UNSUPPORTED_MEDIA_TYPE" and problem["title_zh"]
    assert repr(charset.strip('"')) in problem["detail"] and "UTF-8" in problem["detail"]


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   'application/json; charset="UTF-8"', "application/json;CHARSET=Utf-8",
                                   "application/json; charset=utf8"])
async def test_a_json_body_in_utf8_or_undeclared_is_still_accepted(api, world, ctype: str) -> None:
    body = orjson.dumps(world.simulator.issue("341100", "id_card", "valid", NOW).body())
    resp = await api.post("/v1/licences/verify", data=body, headers={"Content-Type": ctype})
    assert resp.status == 200 and (await resp.json())["verdict"] == "valid"
    batch = await api.post("/v1/licences/verify-batch", data=b'{"licences": [' + body + b"]}",
                           headers={"Content-Type": ctype})
    assert batch.status == 200
