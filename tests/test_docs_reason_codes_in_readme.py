"""The README's reason-code table must name every reason the gateway can answer with."""

from __future__ import annotations

from pathlib import Path

from gateway import errors

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_reason_code_is_documented_in_the_readme():
    text = README.read_text(encoding="utf-8")
    missing = [r.code for r in errors.all_reasons() if f"`{r.code}`" not in text]
    assert missing == []


def test_every_reason_has_both_languages_and_clerk_advice_for_verdict_reasons():
    for r in errors.all_reasons():
        assert r.message and r.message_zh, r.code
        if r.status in (400,) and r.code.startswith(("LICENCE_", "ISSUER_", "SIGNATURE", "UNKNOWN_")):
            assert r.advice_zh, r.code
