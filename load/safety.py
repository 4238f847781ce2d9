"""Hard caps and target checks: a load run is always bounded and, by default, loopback only."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from load.errors import (
    CONNECTIONS_INVALID,
    DURATION_INVALID,
    DURATION_OVER_CAP,
    DURATION_REQUIRED,
    RATE_INVALID,
    REQUESTS_OVER_CAP,
    TARGET_INVALID,
    TARGET_NOT_LOOPBACK,
    TIMEOUT_INVALID,
    LoadRefused,
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard caps no option can lift."""

    max_duration_s: float = 600.0        # one run (or all steps of a max search) <= 10 minutes
    max_requests: int = 3_000_000        # scheduled requests in one open-loop run (600 s at 5,000/s)
    max_rate: float = 50_000.0           # requests per second
    max_connections: int = 2_048
    max_in_flight: int = 8_192
    max_timeout_s: float = 60.0


LIMITS = Limits()

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, None: 1.0}


def parse_duration(text: str | None) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"``, ``"1.5"`` (seconds) -> seconds. Refuses missing or bad input."""
    if text is None or not str(text).strip():
        raise LoadRefused(DURATION_REQUIRED, "a duration is required (e.g. --duration 10s); runs are never unbounded")
    m = _DURATION_RE.match(str(text))
    if not m:
        raise LoadRefused(DURATION_INVALID, f"cannot read duration {text!r}: use e.g. 10s, 500ms, 2m")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    return check_duration(seconds)


def check_duration(seconds: float, limits: Limits = LIMITS) -> float:
    if not seconds > 0:
        raise LoadRefused(DURATION_INVALID, "the duration must be positive")
    if seconds > limits.max_duration_s:
        raise LoadRefused(DURATION_OVER_CAP,
                          f"duration {seconds:g}s is over the hard cap of {limits.max_duration_s:g}s")
    return seconds


def check_rate(rate: float, duration_s: float, limits: Limits = LIMITS) -> float:
    if not rate > 0:
        raise LoadRefused(RATE_INVALID, "the rate must be positive")
    if rate > limits.max_rate:
        raise LoadRefused(RATE_INVALID, f"rate {rate:g}/s is over the hard cap of {limits.max_rate:g}/s")
    planned = rate * duration_s
    if planned < 1:
        raise LoadRefused(RATE_INVALID, f"{rate:g}/s for {duration_s:g}s plans no request at all; raise --rate or "
                                        "--duration")
    if planned > limits.max_requests:
        raise LoadRefused(REQUESTS_OVER_CAP,
                          f"{rate:g}/s for {duration_s:g}s plans {planned:.0f} requests, over the hard cap of "
                          f"{limits.max_requests}")
    return rate


def parse_timeout(text: str | None, limits: Limits = LIMITS) -> float:
    """``--timeout``: a positive duration up to the hard cap, refused (never clamped) beyond it."""
    try:
        seconds = parse_duration(text)
    except LoadRefused as exc:
        raise LoadRefused(TIMEOUT_INVALID, f"--timeout: {exc.detail}") from None
    if seconds > limits.max_timeout_s:
        raise LoadRefused(TIMEOUT_INVALID, f"--timeout {seconds:g}s is over the hard cap of {limits.max_timeout_s:g}s")
    return seconds


def check_connections(connections: int, max_in_flight: int, limits: Limits = LIMITS) -> None:
    if not 1 <= connections <= limits.max_connections:
        raise LoadRefused(CONNECTIONS_INVALID, f"connections must be 1..{limits.max_connections}")
    if not 1 <= max_in_flight <= limits.max_in_flight:
        raise LoadRefused(CONNECTIONS_INVALID, f"max in-flight must be 1..{limits.max_in_flight}")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8, ``::1`` (and IPv4-mapped loopback). Names other than
    localhost are not resolved: they are not loopback as far as this tool is concerned."""
    h = host.strip().strip("[]").rstrip(".").lower()
    if h == "localhost":   # not "*.localhost": such a name goes to the resolver, which may send it anywhere
        return True
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def check_target(url: str, allow_non_loopback: bool = False) -> list[str]:
    """Validates the target URL; returns warnings to print. Refuses a non-loopback target
    unless ``allow_non_loopback`` is given explicitly, and warns even then."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadRefused(TARGET_INVALID, f"target {url!r} must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise LoadRefused(TARGET_INVALID, f"target {url!r} has a bad port") from exc
    if is_loopback_host(parts.hostname):
        return []
    if not allow_non_loopback:
        raise LoadRefused(TARGET_NOT_LOOPBACK,
                          f"target host {parts.hostname!r} is not loopback (127.0.0.0/8, ::1, localhost); "
                          "pass --allow-non-loopback only for a host you own and are allowed to load")
    return [f"WARNING: target {parts.hostname!r} is NOT loopback; you asserted with --allow-non-loopback that "
            "you own it and may load it"]
