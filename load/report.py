"""A self-contained HTML report: inline SVG charts and inline CSS, no scripts from anywhere,
no network, readable offline. Every chart has a stable id:

* ``chart-latency-time``   per-second p50 and p99 (by intended send second)
* ``chart-latency-dist``   the latency percentile curve (log scale of 1/(1-p), as HdrHistogram plots)
* ``chart-throughput-time`` per-second sent, completed and errors
* ``chart-max-throughput`` (closed-loop max) throughput and p99 by concurrency
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import orjson

W, H = 760, 300
ML, MR, MT, MB = 64, 20, 34, 46
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")

Point = tuple[float, float]
Series = tuple[str, Sequence[Point]]


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def _linear_ticks(x_min: float, x_max: float, pts: Sequence[Point]) -> list[tuple[float, str]]:
    step = (x_max - x_min) / 6
    if all(float(x).is_integer() for x, _ in pts):   # seconds, worker counts: whole-number ticks
        step = max(1.0, float(math.ceil(step)))
    ticks, xv = [], x_min
    while xv <= x_max + 1e-9:
        ticks.append((xv, _fmt(xv)))
        xv += step
    return ticks


def line_chart(chart_id: str, title: str, series: Sequence[Series], x_label: str, y_label: str, *,
               x_ticks: Sequence[tuple[float, str]] | None = None, y_max: float | None = None) -> str:
    """One SVG line chart. ``x_ticks`` overrides the x axis labels (used for the log percentile axis)."""
    pts = [p for _, s in series for p in s]
    x_min = min((p[0] for p in pts), default=0.0)
    x_max = max((p[0] for p in pts), default=1.0)
    if x_max <= x_min:
        x_max = x_min + 1.0
    y_top = y_max if y_max is not None else _nice_max(max((p[1] for p in pts), default=1.0))
    pw, ph = W - ML - MR, H - MT - MB

    def sx(x: float) -> float:
        return ML + (x - x_min) / (x_max - x_min) * pw

    def sy(y: float) -> float:
        return MT + ph - min(y, y_top) / y_top * ph

    out = [f'<figure class="chart"><svg id="{_esc(chart_id)}" class="chart-svg" viewBox="0 0 {W} {H}" '
           f'width="{W}" height="{H}" role="img" aria-label="{_esc(title)}">',
           f'<title>{_esc(title)}</title>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" class="ct">{_esc(title)}</text>']
    for i in range(6):
        yv = y_top * i / 5
        y = sy(yv)
        out.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(yv)}</text>')
    ticks = list(x_ticks) if x_ticks is not None else _linear_ticks(x_min, x_max, pts)
    for xv, label in ticks:
        x = sx(xv)
        out.append(f'<line x1="{x:.1f}" y1="{MT}" x2="{x:.1f}" y2="{MT + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{MT + ph + 16}" text-anchor="middle" class="tick">{_esc(label)}</text>')
    out.append(f'<line x1="{ML}" y1="{MT + ph}" x2="{W - MR}" y2="{MT + ph}" class="axis"/>'
               f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{MT + ph}" class="axis"/>'
               f'<text x="{ML + pw / 2}" y="{H - 8}" text-anchor="middle" class="al">{_esc(x_label)}</text>'
               f'<text x="14" y="{MT + ph / 2}" text-anchor="middle" class="al" '
               f'transform="rotate(-90 14 {MT + ph / 2})">{_esc(y_label)}</text>')
    for i, (name, s) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        sid = f"{chart_id}-{name.lower().replace(' ', '-')}"
        if s:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
            out.append(f'<polyline id="{_esc(sid)}" class="series" points="{path}" fill="none" '
                       f'stroke="{colour}" stroke-width="2"/>')
            for x, y in s if len(s) <= 120 else ():
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}">'
                           f'<title>{_esc(name)}: {_fmt(x)} → {_fmt(y)}</title></circle>')
        lx = ML + 10 + i * 150
        out.append(f'<rect x="{lx}" y="{MT + 4}" width="12" height="4" fill="{colour}"/>'
                   f'<text x="{lx + 16}" y="{MT + 10}" class="lg">{_esc(name)}</text>')
    if not pts:
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">no data</text>')
    out.append("</svg></figure>")
    return "".join(out)


def _pct_x(p: float) -> float:
    """x position of percentile p on the 1/(1-p) log axis (100 is drawn at 99.999)."""
    return math.log10(1.0 / (1.0 - min(p, 99.999) / 100.0))


PCT_TICKS = [(_pct_x(p), label) for p, label in
             ((0.0, "0%"), (90.0, "90%"), (99.0, "99%"), (99.9, "99.9%"), (99.99, "99.99%"), (99.999, "max"))]


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str], table_id: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="{_esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:24px;color:#222;
background:#fff}h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}
.meta{color:#555}.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:110px}.kpi b{display:block;font-size:18px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.chart{margin:8px 0}.chart-svg{max-width:100%;height:auto;border:1px solid #eee;background:#fff}
.grid{stroke:#eee}.axis{stroke:#888}.tick{font-size:11px;fill:#555}.al{font-size:12px;fill:#333}
.ct{font-size:14px;font-weight:600;fill:#222}.lg{font-size:12px;fill:#333}.empty{fill:#999}
"""


def _kpis(items: Sequence[tuple[str, str]]) -> str:
    return '<div class="kpis">' + "".join(f'<div class="kpi">{_esc(k)}<b>{_esc(v)}</b></div>' for k, v in items) \
        + "</div>"


def _slo_html(result: dict[str, Any]) -> str:
    slo = result.get("slo")
    if not slo:
        return "<p>No SLO was evaluated for this run (pass <code>--slo load/slo/NAME.toml</code>).</p>"
    rows = [(c["label"], f'{c["op"]} {c["threshold"]:g} {c["unit"]}',
             "no data" if c["actual"] is None else f'{c["actual"]:g} {c["unit"]}',
             "ok" if c["passed"] else "FAIL") for c in slo["checks"]]
    verdict = '<span class="pass">all SLOs met</span>' if slo["passed"] else '<span class="fail">SLO MISSED</span>'
    return f"<p>{_esc(slo['name'])}: {verdict}</p>" + _table(rows, ("SLO", "target", "actual", "result"), "slo-table")


def _open_loop_body(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    counts = r["counts"]
    tl = r["timeline"]
    parts = [_kpis([
        ("throughput", f'{r["throughput_rps"]:g} req/s'), ("p50", f'{lat["p50"]:g} ms'), ("p90", f'{lat["p90"]:g} ms'),
        ("p99", f'{lat["p99"]:g} ms'), ("p99.9", f'{lat["p99_9"]:g} ms'), ("max", f'{lat["max"]:g} ms'),
        ("error rate", f'{100 * r["error_rate"]:.3g}%'),
        ("generator CPU", f'{r["cpu"]["percent_of_one_core"]:g}% of a core'),
    ])]
    parts.append("<h2>SLO</h2>" + _slo_html(r))
    parts.append("<h2>Latency over time</h2>")
    parts.append(line_chart("chart-latency-time", "Latency per second (from intended send time)",
                            [("p50", [(row["second"], row["p50_ms"]) for row in tl if row["p50_ms"] is not None]),
                             ("p99", [(row["second"], row["p99_ms"]) for row in tl if row["p99_ms"] is not None])],
                            "second of the run", "latency (ms)"))
    parts.append("<h2>Latency distribution</h2>")
    parts.append(line_chart("chart-latency-dist", "Latency by percentile",
                            [("latency", [(_pct_x(p), v) for p, v in r["latency_curve_ms"]])],
                            "percentile", "latency (ms)", x_ticks=PCT_TICKS))
    parts.append("<h2>Throughput over time</h2>")
    parts.append(line_chart("chart-throughput-time", "Requests per second",
                            [("sent", [(row["second"], row["sent"]) for row in tl]),
                             ("completed", [(row["second"], row["completed"]) for row in tl]),
                             ("errors", [(row["second"], row["errors"]) for row in tl])],
                            "second of the run", "requests / s"))
    parts.append("<h2>Counts and errors</h2>")
    parts.append(_table(sorted(counts.items()), ("count", "value"), "counts-table"))
    parts.append(_table(sorted(r["errors"].items()) or [("none", 0)], ("error kind", "count"), "errors-table"))
    parts.append(_table(sorted(r["status"].items()), ("HTTP status", "count"), "status-table"))
    parts.append(_table(sorted(r["verdicts"].items()) or [("none", 0)], ("verdict", "count"), "verdicts-table"))
    exp = r["expectation"]
    parts.append(f'<p>Expected verdicts checked: {exp["checked"]}, mismatched: {exp["mismatched"]}. '
                 f'Service time (from the actual send, diagnostic) p50 {r["service_time_ms"]["p50"]:g} ms, '
                 f'p99 {r["service_time_ms"]["p99"]:g} ms. '
                 f'Dispatch lag p99 {r["dispatch_lag_ms"]["p99"]:g} ms, late sends: {counts["late"]} '
                 '(a late send means the load tool itself fell behind; its latency still counts from the '
                 'intended time).</p>')
    return "".join(parts)


def _max_body(r: dict[str, Any]) -> str:
    steps = r["steps"]
    peak = r["peak"]
    parts = [_kpis([("peak throughput", f'{peak["throughput_rps"]:g} req/s'),
                    ("at concurrency", str(peak["concurrency"])), ("p50 at peak", f'{peak["latency_ms"]["p50"]:g} ms'),
                    ("p99 at peak", f'{peak["latency_ms"]["p99"]:g} ms'),
                    ("generator CPU", f'{r["cpu"]["percent_of_one_core"]:g}% of a core')])]
    parts.append("<h2>SLO</h2>" + _slo_html(r))
    parts.append("<h2>Throughput by concurrency</h2>")
    parts.append(line_chart("chart-max-throughput", "Closed-loop throughput by concurrency",
                            [("throughput", [(s["concurrency"], s["ok_throughput_rps"]) for s in steps])],
                            "concurrent workers", "requests / s"))
    parts.append(line_chart("chart-max-latency", "Latency by concurrency",
                            [("p50", [(s["concurrency"], s["latency_ms"]["p50"]) for s in steps]),
                             ("p99", [(s["concurrency"], s["latency_ms"]["p99"]) for s in steps])],
                            "concurrent workers", "latency (ms)"))
    rows = [(s["concurrency"], s["ok_throughput_rps"], s["latency_ms"]["p50"], s["latency_ms"]["p99"],
             s["error_rate"], s["cpu"]["percent_of_one_core"]) for s in steps]
    parts.append(_table(rows, ("concurrency", "req/s", "p50 ms", "p99 ms", "error rate", "tool CPU %"), "steps-table"))
    return "".join(parts)


def render_html(result: dict[str, Any]) -> str:
    """The report for a result dict; self-contained (no external resources of any kind)."""
    body = _max_body(result) if result.get("mode") == "closed-loop-max" else _open_loop_body(result)
    cfg = result.get("config", {})
    meta = (f'{_esc(result.get("mode"))} · scenario <b>{_esc(result.get("scenario"))}</b> · target '
            f'<code>{_esc(result.get("target"))}</code> · started {_esc(result.get("started_at"))} · '
            f'{_esc(", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("target", "mix")))}')
    raw = orjson.dumps({k: v for k, v in result.items() if k != "histogram_hdr"}, option=orjson.OPT_INDENT_2)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Load report: {_esc(result.get('scenario'))}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}</style></head><body>"
            f"<h1>Load report: {_esc(result.get('scenario'))}</h1><p class=\"meta\">{meta}</p>"
            f"{body}<h2>Raw result</h2><details><summary>result JSON</summary><pre id=\"raw-result\">"
            f"{_esc(raw.decode('utf-8'))}</pre></details></body></html>\n")
