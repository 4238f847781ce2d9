"""The load tool refuses unbounded runs and non-loopback targets."""

from __future__ import annotations

import io

import pytest

from load.cli import main
from load.errors import (
    DURATION_INVALID,
    DURATION_OVER_CAP,
    DURATION_REQUIRED,
    EXIT_REFUSED,
    REQUESTS_OVER_CAP,
    TARGET_INVALID,
    TARGET_NOT_LOOPBACK,
    LoadRefused,
)
from load.safety import LIMITS, check_rate, check_target, is_loopback_host, parse_duration


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_run_without_duration_is_refused_with_exit_2() -> None:
    code, out, err = _cli("run", "--scenario", "smoke", "--target", "http://127.0.0.1:9")
    assert code == EXIT_REFUSED
    assert DURATION_REQUIRED in err
    assert out == ""


def test_max_without_duration_is_refused() -> None:
    code, _, err = _cli("max", "--scenario", "verify")
    assert code == EXIT_REFUSED
    assert DURATION_REQUIRED in err


@pytest.mark.parametrize("text", ["", "   ", None])
def test_missing_duration_raises_duration_required(text: str | None) -> None:
    with pytest.raises(LoadRefused) as ei:
        parse_duration(text)
    assert ei.value.rule == DURATION_REQUIRED


@pytest.mark.parametrize("text,seconds", [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("3min", 180.0)])
def test_duration_units_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["forever", "-5s", "0s", "10h", "1e9"])
def test_unreadable_or_non_positive_duration_is_refused(text: str) -> None:
    with pytest.raises(LoadRefused) as ei:
        parse_duration(text)
    assert ei.value.rule == DURATION_INVALID


def test_duration_over_the_hard_cap_is_refused() -> None:
    with pytest.raises(LoadRefused) as ei:
        parse_duration(f"{LIMITS.max_duration_s + 1:g}s")
    assert ei.value.rule == DURATION_OVER_CAP


def test_rate_times_duration_over_the_request_cap_is_refused() -> None:
    with pytest.raises(LoadRefused) as ei:
        check_rate(LIMITS.max_rate, LIMITS.max_duration_s)
    assert ei.value.rule == REQUESTS_OVER_CAP
    assert check_rate(100.0, 10.0) == 100.0


def test_run_against_private_range_target_is_refused() -> None:
    code, _, err = _cli("run", "--scenario", "smoke", "--duration", "2s", "--target", "http://10.1.2.3:8080",
                        "--corpus", "/nonexistent.jsonl")
    assert code == EXIT_REFUSED
    assert TARGET_NOT_LOOPBACK in err


@pytest.mark.parametrize("host", ["192.168.1.10", "8.8.8.8", "example.org", "127.0.0.1.nip.io", "0.0.0.0",
                                  "::ffff:10.0.0.1", "fe80::1"])
def test_non_loopback_hosts_are_refused_without_explicit_opt_in(host: str) -> None:
    url = f"http://[{host}]:80/" if ":" in host else f"http://{host}:80/"
    with pytest.raises(LoadRefused) as ei:
        check_target(url)
    assert ei.value.rule == TARGET_NOT_LOOPBACK


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "::ffff:127.0.0.1"])
def test_loopback_hosts_are_accepted_without_warning(host: str) -> None:
    assert is_loopback_host(host)
    url = f"http://[{host}]:8080" if ":" in host else f"http://{host}:8080"
    assert check_target(url) == []


def test_non_loopback_with_explicit_opt_in_still_warns() -> None:
    warnings = check_target("http://192.168.1.10:8080", allow_non_loopback=True)
    assert len(warnings) == 1 and "NOT loopback" in warnings[0]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8080", "http://:8080", "http://127.0.0.1:99999"])
def test_target_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(LoadRefused) as ei:
        check_target(url)
    assert ei.value.rule == TARGET_INVALID


def test_refusal_is_a_gateway_request_rejection_with_a_stable_code() -> None:
    from gateway.errors import RequestRejected

    with pytest.raises(RequestRejected) as ei:
        parse_duration(None)
    assert ei.value.code == "BAD_REQUEST"
