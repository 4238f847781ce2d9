"""Service-level objectives: TOML thresholds checked against a result; exit 3 when one is missed.

File format (``load/slo/NAME.toml``)::

    scenario = "verify"            # optional: warn if the run's scenario differs
    description = "..."            # optional
    [thresholds]                   # every key optional; only those present are checked
    p50_ms = 5.0                   # latency percentiles, milliseconds, from the intended send time
    p90_ms = 10.0
    p99_ms = 20.0
    p99_9_ms = 50.0
    max_ms = 200.0
    min_throughput = 190.0         # responses per second over the run's duration (closed loop: peak)
    max_error_rate = 0.001         # (non-2xx + timeouts + connection errors + dropped) / scheduled
    max_mismatch_rate = 0.0        # share of answers whose verdict differs from the corpus' "expect"
    max_generator_cpu_percent = 90 # the load tool's own CPU, % of one core: above it the run measured the tool

A metric the result cannot give (nothing answered, no verdict checked, nothing scheduled, a
closed-loop result without its peak's figures) is "no data" and FAILS its SLO: a run that
measured nothing never passes. Rates are fractions (``0.01`` = 1 %): a rate threshold above 1
is refused, as is a threshold that is not a finite number.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load.errors import SLO_INVALID, LoadRefused

EXIT_SLO_MISSED = 3

#: thresholds that are fractions (0.01 = 1 %), never percentages
RATE_KEYS = frozenset({"max_error_rate", "max_mismatch_rate"})
#: what a metric is when the result cannot give it: fails every comparison
NO_DATA = math.nan

#: threshold key -> (label, "max" (actual must be <=) or "min" (actual must be >=), unit)
THRESHOLDS: dict[str, tuple[str, str, str]] = {
    "p50_ms": ("latency p50", "max", "ms"),
    "p90_ms": ("latency p90", "max", "ms"),
    "p99_ms": ("latency p99", "max", "ms"),
    "p99_9_ms": ("latency p99.9", "max", "ms"),
    "max_ms": ("latency max", "max", "ms"),
    "min_throughput": ("throughput", "min", "req/s"),
    "max_error_rate": ("error rate", "max", ""),
    "max_mismatch_rate": ("verdict mismatch rate", "max", ""),
    "max_generator_cpu_percent": ("load generator CPU", "max", "% core"),
}


@dataclass(frozen=True, slots=True)
class SloSpec:
    name: str
    thresholds: tuple[tuple[str, float], ...]
    scenario: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class SloCheck:
    key: str
    label: str
    op: str          # "<=" or ">="
    threshold: float
    actual: float
    unit: str

    @property
    def no_data(self) -> bool:
        return math.isnan(self.actual)

    @property
    def passed(self) -> bool:  # "no data" (NaN) fails both comparisons
        return self.actual <= self.threshold if self.op == "<=" else self.actual >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "op": self.op, "threshold": self.threshold,
                "actual": None if self.no_data else self.actual, "unit": self.unit, "passed": self.passed}


def parse_slo(data: dict[str, Any], name: str = "slo") -> SloSpec:
    unknown_top = set(data) - {"scenario", "description", "thresholds"}
    if unknown_top:
        raise LoadRefused(SLO_INVALID, f"{name}: unknown key(s) {', '.join(sorted(unknown_top))}")
    th = data.get("thresholds")
    if not isinstance(th, dict) or not th:
        raise LoadRefused(SLO_INVALID, f"{name}: a [thresholds] table with at least one threshold is required")
    unknown = set(th) - set(THRESHOLDS)
    if unknown:
        raise LoadRefused(SLO_INVALID, f"{name}: unknown threshold(s) {', '.join(sorted(unknown))}; "
                                       f"known: {', '.join(THRESHOLDS)}")
    pairs = []
    for key in THRESHOLDS:
        if key in th:
            v = th[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise LoadRefused(SLO_INVALID, f"{name}: {key} must be a non-negative number, got {v!r}")
            if key in RATE_KEYS and v > 1:
                raise LoadRefused(SLO_INVALID, f"{name}: {key} is a fraction of requests (0.01 = 1 %), "
                                               f"not a percentage: got {v!r}")
            pairs.append((key, float(v)))
    scenario = data.get("scenario")
    if scenario is not None and not isinstance(scenario, str):
        raise LoadRefused(SLO_INVALID, f"{name}: scenario must be a string")
    return SloSpec(name=name, thresholds=tuple(pairs), scenario=scenario,
                   description=str(data.get("description", "")))


def load_slo(path: str | Path) -> SloSpec:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LoadRefused(SLO_INVALID, f"cannot read SLO file {p}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LoadRefused(SLO_INVALID, f"{p}: not valid TOML ({exc})") from None
    return parse_slo(data, name=p.name)


def _ratio(part: Any, whole: Any) -> float:
    return float(part) / float(whole) if whole else NO_DATA


def _peak_step(result: dict[str, Any]) -> dict[str, Any]:
    """The closed-loop step reported as the peak (its full figures: counts, expectation, cpu)."""
    peak = result["peak"]
    for step in result.get("steps", ()):
        if step.get("concurrency") == peak.get("concurrency"):
            return {**step, **peak}
    return peak


def _actual(key: str, result: dict[str, Any]) -> float:
    """The measured value for ``key``; :data:`NO_DATA` when the result cannot give it."""
    closed = result.get("mode") == "closed-loop-max"
    src = _peak_step(result) if closed else result
    lat = src["latency_ms"]
    if key.endswith("_ms"):
        if lat.get("count", 1) == 0:          # nothing answered: no latency to judge
            return NO_DATA
        return float(lat["max" if key == "max_ms" else key[:-3]])
    if key == "min_throughput":
        return float(src["throughput_rps"])
    if key == "max_error_rate":
        counts = src.get("counts")
        if isinstance(counts, dict) and "errors" in counts and "scheduled" in counts:
            return _ratio(counts["errors"], counts["scheduled"])   # exact: never rounded to 0
        return float(src["error_rate"])
    if key == "max_mismatch_rate":
        exp = src.get("expectation")
        if not isinstance(exp, dict):
            return NO_DATA
        return _ratio(exp["mismatched"], exp["checked"])
    if key == "max_generator_cpu_percent":
        cpu = src.get("cpu") or result["cpu"]
        return float(cpu["percent_of_one_core"])
    raise KeyError(key)  # unreachable: keys are validated by parse_slo


def evaluate(spec: SloSpec, result: dict[str, Any]) -> list[SloCheck]:
    """Pure: the checks of ``spec`` against a result dict (open-loop or closed-loop-max)."""
    checks = []
    for key, threshold in spec.thresholds:
        label, kind, unit = THRESHOLDS[key]
        checks.append(SloCheck(key, label, "<=" if kind == "max" else ">=", threshold, _actual(key, result), unit))
    return checks


def all_passed(checks: list[SloCheck]) -> bool:
    return all(c.passed for c in checks)


def render_table(spec: SloSpec, checks: list[SloCheck]) -> str:
    """A plain-text table, one row per SLO, failed rows marked ``FAIL``."""
    rows = [("SLO", "target", "actual", "result")]
    for c in checks:
        unit = f" {c.unit}" if c.unit else ""
        actual = "no data" if c.no_data else f"{c.actual:g}{unit}"
        rows.append((c.label, f"{c.op} {c.threshold:g}{unit}", actual, "ok" if c.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"SLO {spec.name}" + (f" ({spec.description})" if spec.description else "")]
    for i, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    failed = [c for c in checks if not c.passed]
    lines.append(f"{len(checks) - len(failed)}/{len(checks)} SLOs met" +
                 (f"; MISSED: {', '.join(c.label for c in failed)}" if failed else ""))
    return "\n".join(lines)


def slo_block(spec: SloSpec, checks: list[SloCheck]) -> dict[str, Any]:
    """What goes into the result JSON under ``"slo"``."""
    return {"name": spec.name, "scenario": spec.scenario, "passed": all_passed(checks),
            "checks": [c.as_dict() for c in checks]}
