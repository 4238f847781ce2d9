"""Refusals of the load tool, rooted in the gateway's one errors module.

A refusal is a :class:`gateway.errors.RequestRejected` (the operator's request is at fault)
with a stable ``rule`` code, so scripts and tests can tell *why* a run was refused.
"""

from __future__ import annotations

from gateway.errors import BAD_REQUEST, RequestRejected

#: stable rule codes of :class:`LoadRefused`
DURATION_REQUIRED = "DURATION_REQUIRED"
DURATION_INVALID = "DURATION_INVALID"
DURATION_OVER_CAP = "DURATION_OVER_CAP"
REQUESTS_OVER_CAP = "REQUESTS_OVER_CAP"
RATE_INVALID = "RATE_INVALID"
ARRIVALS_UNKNOWN = "ARRIVALS_UNKNOWN"
CONNECTIONS_INVALID = "CONNECTIONS_INVALID"
TARGET_INVALID = "TARGET_INVALID"
TARGET_NOT_LOOPBACK = "TARGET_NOT_LOOPBACK"
SCENARIO_UNKNOWN = "SCENARIO_UNKNOWN"
CORPUS_INVALID = "CORPUS_INVALID"
CORPUS_MISSING_KIND = "CORPUS_MISSING_KIND"
SLO_INVALID = "SLO_INVALID"
RESULT_INVALID = "RESULT_INVALID"
TOKEN_UNAVAILABLE = "TOKEN_UNAVAILABLE"
TIMEOUT_INVALID = "TIMEOUT_INVALID"
OUTPUT_INVALID = "OUTPUT_INVALID"
TARGET_UNREACHABLE = "TARGET_UNREACHABLE"

#: exit codes of the CLI (``3``, an SLO missed, is ``load.slo.EXIT_SLO_MISSED``)
#: the tool itself failed (a bug, or a result it could not write): not a verdict on the target
EXIT_TOOL_FAILED = 1
#: a run refused before it starts (bad option, cap, non-loopback target, bad file, token refused)
EXIT_REFUSED = 2
#: the target never answered: its token endpoint unreachable, or not one HTTP answer in the run
EXIT_TARGET_DOWN = 4


class LoadRefused(RequestRejected):
    """The load tool refuses to start (bad option, missing duration, unsafe target, bad file)."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(BAD_REQUEST, detail, rule=rule)
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


class TargetUnreachable(LoadRefused):
    """The target could not be reached at all (exit :data:`EXIT_TARGET_DOWN`, not "refused")."""

    def __init__(self, detail: str) -> None:
        super().__init__(TARGET_UNREACHABLE, detail)
