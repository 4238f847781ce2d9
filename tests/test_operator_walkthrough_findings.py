"""A new operator following README.md and load/README.md literally: each test is named after a
mismatch between the documents and what happened (it failed before its fix), beside a control
that holds either way.

Nothing here starts a gateway: the CLIs are called in-process (the load tool against the naive peer
served from a thread, as in tests/test_load_tool_operator_review.py) or as one short subprocess.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import load.cli as load_cli
from gateway.__main__ import main as gateway_main
from gateway.audit.cli import audit_cli
from gateway.bootstrap import check_startup
from gateway.config import ConfigError, Settings
from gateway.receipts import ReceiptSigner, request_digest
from load.scenarios import write_corpus
from tests.test_load_run import CORPUS
from tests.test_load_slo import GOOD_RESULT
from tests.test_load_tool_operator_review import live_peer  # noqa: F401  (fixture: the peer in a thread)

ROOT = Path(__file__).resolve().parent.parent


def _pem(key, tmp_path: Path, name: str, public: bool = False) -> str:
    path = tmp_path / name
    if public:
        data = key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    path.write_bytes(data)
    return str(path)


# --------------------------------------------------------------------------------------------
# README "Trust material (operators)": the documented operator start-up, with the audit keys set,
# started on the committed TEST partner registry and token key -- anyone with this repository could
# then mint an admin token (`python -m gateway demo token --client-id load-operator`)


def _operator_settings(tmp_path: Path, **changes) -> Settings:
    own_partners = tmp_path / "partners"
    own_partners.mkdir(exist_ok=True)
    values = dict(
        demo=False, var_dir=str(tmp_path / "var"), trust_list=str(tmp_path / "trust-list.signed.json"),
        trust_operator_keys=(_pem(ed25519.Ed25519PrivateKey.generate(), tmp_path, "operator.pub.pem", True),),
        audit_hmac_key=os.urandom(32).hex(),
        audit_checkpoint_key=_pem(ed25519.Ed25519PrivateKey.generate(), tmp_path, "ckpt.pem"),
        receipt_key=_pem(ec.generate_private_key(ec.SECP256R1()), tmp_path, "receipt.pem"),
        partners_dir=str(own_partners),
        gateway_key=_pem(ec.generate_private_key(ec.SECP256R1()), tmp_path, "gateway-key.pem"))
    values.update(changes)
    return Settings(**values)


def test_operator_mode_refuses_the_committed_test_partner_registry_and_token_key(tmp_path: Path) -> None:
    check_startup(_operator_settings(tmp_path))   # control: the operator's own material starts
    defaults = Settings()
    with pytest.raises(ConfigError) as exc:       # was: started, and took TEST-signed admin tokens
        check_startup(_operator_settings(tmp_path, partners_dir=defaults.partners_dir,
                                         gateway_key=defaults.gateway_key))
    assert "partners_dir" in str(exc.value) and "gateway_key" in str(exc.value) and "TEST" in str(exc.value)
    test_operator = str(ROOT / "certs" / "trust" / "operator.test-public.pem")
    with pytest.raises(ConfigError, match="trust_operator_keys"):
        check_startup(_operator_settings(tmp_path, trust_operator_keys=(test_operator,)))
    # demo mode keeps its TEST material
    check_startup(Settings(demo=True, var_dir=str(tmp_path / "demo-var"), audit_backend="off"))


# --------------------------------------------------------------------------------------------
# README "Try it" + "Checking a receipt offline": `demo issue > lic.json`, `curl -d @lic.json`, then
# `receipt verify --body lic.json`. curl -d drops the file's line breaks, so the receipt covers other
# bytes than the file and the check said only "issued for a different request body"


def _receipt_for(body: bytes) -> tuple[str, dict]:
    signer = ReceiptSigner(ec.generate_private_key(ec.SECP256R1()), "receipt-test", "elicence-gateway")
    now = dt.datetime.now(dt.timezone.utc)
    draft = signer.draft(request_digest=request_digest(body), request_id="r1", verdict="valid", reasons=[],
                         item=None, time_text=now.strftime("%Y-%m-%dT%H:%M:%SZ"), iat=int(now.timestamp()),
                         licence_ids=["x"])
    return signer.seal([draft], 1, 1, now)[0], signer.jwks()


def test_receipt_verify_says_when_the_body_was_sent_without_its_line_breaks(tmp_path: Path, capsys) -> None:
    file_bytes = b'{"licence": "abc", "encoding": "utf-8"}\n'     # as `demo issue > lic.json` writes it
    keys = tmp_path / "keys.json"
    lic = tmp_path / "lic.json"
    lic.write_bytes(file_bytes)
    # control: the receipt of the exact file bytes (curl --data-binary) verifies
    receipt, jwks = _receipt_for(file_bytes)
    keys.write_bytes(orjson.dumps(jwks))
    assert gateway_main(["receipt", "verify", receipt, "--jwks", str(keys), "--body", str(lic)]) == 0
    capsys.readouterr()
    # what `curl -d @lic.json` sent: still INVALID (exit 1), now with the cause and the remedy
    receipt, jwks = _receipt_for(file_bytes.rstrip(b"\n"))
    keys.write_bytes(orjson.dumps(jwks))
    assert gateway_main(["receipt", "verify", receipt, "--jwks", str(keys), "--body", str(lic)]) == 1
    err = capsys.readouterr().err
    assert "different request body" in err and "--data-binary" in err
    # a body that differs otherwise gets no such hint
    other = tmp_path / "other.json"
    other.write_bytes(b'{"licence": "abd", "encoding": "utf-8"}\n')
    assert gateway_main(["receipt", "verify", receipt, "--jwks", str(keys), "--body", str(other)]) == 1
    assert "--data-binary" not in capsys.readouterr().err


def test_the_readme_sends_the_exact_file_bytes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    curl = [line for line in readme.splitlines() if "@lic.json" in line]
    assert curl and all("--data-binary @lic.json" in line for line in curl)
    assert not re.search(r"^\s+-d @|curl -s [^\n]* -d @", readme, re.M)   # in a command, not the warning


# --------------------------------------------------------------------------------------------
# load/README "A quick smoke run against the naive peer": the documented command was refused
# (TOKEN_UNAVAILABLE: the peer has no token endpoint, and a real token is the default)


def _documented_peer_run() -> list[str]:
    text = (ROOT / "load" / "README.md").read_text(encoding="utf-8")
    block = text.split("## A quick smoke run against the naive peer", 1)[1].split("```", 2)[1]
    command = re.search(r"python -m load run .*?(?=\n(?!\s))", block.replace("\\\n", " "), re.S)
    assert command, block
    return shlex.split(command.group(0))[3:]         # after "python -m load"


def test_the_documented_peer_smoke_command_runs_against_the_peer(live_peer: str, tmp_path: Path) -> None:  # noqa: F811
    corpus = tmp_path / "peer-corpus.jsonl"
    write_corpus(corpus, CORPUS)
    argv = _documented_peer_run()
    assert argv[:1] == ["run"] and "--target" in argv and "--corpus" in argv
    values = {"--target": live_peer, "--corpus": str(corpus), "--duration": "2s",
              "--slo": str(ROOT / "load" / "slo" / "smoke.toml")}
    argv = [values.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]
    out, err = io.StringIO(), io.StringIO()
    code = load_cli.main([*argv, "--quiet", "--out", str(tmp_path / "run")], out=out, err=err)
    assert code == 0, err.getvalue()
    assert "5/5 SLOs met" in out.getvalue()


# --------------------------------------------------------------------------------------------
# load/README "Corpus format": wrong verdicts are counted -- but the summary a run prints without
# --slo said "errors none" and nothing about them (a gateway answering every licence wrongly read
# as a clean run)


def test_the_run_summary_shows_wrong_verdicts(live_peer: str, tmp_path: Path) -> None:  # noqa: F811
    good, wrong = tmp_path / "good.jsonl", tmp_path / "wrong.jsonl"
    write_corpus(good, CORPUS)
    flipped = {"valid": "invalid", "invalid": "valid"}
    write_corpus(wrong, [dataclasses.replace(e, expect=flipped.get(e.expect, e.expect)) for e in CORPUS])
    base = ["run", "--scenario", "smoke", "--duration", "0.5s", "--rate", "20", "--target", live_peer,
            "--no-token", "--quiet"]
    out = io.StringIO()
    assert load_cli.main([*base, "--corpus", str(good), "--out", str(tmp_path / "g")], out=out,
                         err=io.StringIO()) == 0
    assert re.search(r"wrong verdicts 0 of \d+ checked", out.getvalue())
    out = io.StringIO()
    load_cli.main([*base, "--corpus", str(wrong), "--out", str(tmp_path / "w")], out=out, err=io.StringIO())
    result = orjson.loads((tmp_path / "w" / "result.json").read_bytes())
    n = result["expectation"]["mismatched"]
    assert n > 0 and f"wrong verdicts {n} of {result['expectation']['checked']} checked" in out.getvalue()


# --------------------------------------------------------------------------------------------
# load/README "SLOs": "a warning is printed when the run's scenario differs" -- `load run --slo`
# printed it, `python -m load slo RESULT.json --slo FILE` did not


def test_load_slo_warns_when_the_slo_file_is_for_another_scenario(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(orjson.dumps(GOOD_RESULT))                  # a "verify" run
    slo = ROOT / "load" / "slo"
    err = io.StringIO()
    assert load_cli.main(["slo", str(path), "--slo", str(slo / "verify.toml")], out=io.StringIO(), err=err) == 0
    assert "WARNING" not in err.getvalue()                       # control
    err = io.StringIO()
    load_cli.main(["slo", str(path), "--slo", str(slo / "smoke.toml")], out=io.StringIO(), err=err)
    assert "WARNING" in err.getvalue() and "'smoke'" in err.getvalue() and "'verify'" in err.getvalue()


# --------------------------------------------------------------------------------------------
# errors bilingual and without a traceback, as everywhere else


def test_audit_cli_errors_are_bilingual(tmp_path: Path) -> None:
    err = io.StringIO()
    code = audit_cli(["verify", "--store", f"sqlite:{tmp_path / 'audit.sqlite3'}", "--key",
                      str(ROOT / "certs" / "audit" / "checkpoint.test-public.pem")], out=io.StringIO(), err=err)
    assert code == 2 and "no audit database" in err.getvalue()
    assert err.getvalue().startswith("错误 / error: ")


def _cli(args: list[str], tmp_path: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT),
               GATEWAY_DEMO_REGIONS_PORT=str(_closed_port()))
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=90)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_staff_add_without_a_terminal_says_to_use_password_stdin(tmp_path: Path) -> None:
    store = str(tmp_path / "staff.json")
    ok = _cli(["staff", "add", "alice", "--role", "clerk", "--window", "HZ-01", "--password-stdin", "--file", store],
              tmp_path, "Alice-pass-12345\n")
    assert ok.returncode == 0, ok.stderr                           # control
    done = _cli(["staff", "add", "bob", "--role", "clerk", "--window", "HZ-01", "--file", store], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr   # was: EOFError traceback, exit 1
    assert "错误 / error" in done.stderr and "--password-stdin" in done.stderr


def test_demo_issue_refusals_go_to_stderr_bilingual_and_the_note_names_where_it_looked(
        tmp_path: Path, monkeypatch, capsys) -> None:
    import gateway.__main__ as gm

    # a running demo's refusal used to be written to stdout as a JSON "licence" (`> lic.json`)
    monkeypatch.setattr(gm, "_issue_from_running_demo",
                        lambda settings, args: '{"error": "unknown region \'999999\'", "cases": []}')
    monkeypatch.setenv("GATEWAY_VAR_DIR", str(tmp_path / "var"))
    assert gm.main(["demo", "issue", "--region", "999999"]) == 2
    got = capsys.readouterr()
    assert got.out == "" and got.err.startswith("错误 / error: unknown region '999999'")
    # no demo regions answering: the note said "no demo running" though one ran on another port
    monkeypatch.setattr(gm, "_issue_from_running_demo", lambda settings, args: None)
    monkeypatch.setenv("GATEWAY_PORT", "9110")
    monkeypatch.setenv("GATEWAY_DEMO_REGIONS_PORT", "9111")
    assert gm.main(["demo", "issue", "--region", "330500", "--state", "revoked"]) == 0
    got = capsys.readouterr()
    assert orjson.loads(got.out)["licence"]                          # control: a licence on stdout
    assert "http://127.0.0.1:9111/" in got.err and "GATEWAY_PORT" in got.err


@pytest.mark.parametrize("busy", ["gateway_port", "demo_regions_port"])
def test_a_demo_started_on_a_busy_port_stops_before_doing_anything(tmp_path: Path, busy: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        free = _closed_port()
        gateway_port, regions_port = (port, free) if busy == "gateway_port" else (free, port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(GATEWAY_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT),
                   GATEWAY_DEMO_REGIONS_PORT=str(regions_port))
        done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--demo", "--port", str(gateway_port)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 3, done.stderr
    assert [orjson.loads(line)["message"] for line in done.stderr.splitlines()] == [
        f"无法监听 / cannot listen on 127.0.0.1:{port}: Address already in use (is another gateway or program serving "
        "there? 是否已有网关或其他程序在该端口运行？)"]
    assert done.stdout == ""   # no banner (it shows the TEST staff passwords) and no "serving on"
    assert not (tmp_path / "var" / "demo").exists() and not (tmp_path / "var" / "audit.sqlite3").exists()
