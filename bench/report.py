"""
Figures from measurements: one summary per target, the project's ratios to each reference
(the upstream read directly, the Starlette peer, the Node peer), the issue's targets, a
table for people, a JSON line per scenario for machines, the sweep's summary, and the
regression check against the baseline.
"""

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from bench.scenarios import Measurement

MS = 1000.0

# The targets by their name in the records, with their name for people. The references
# are what the project's figures are divided by; "peer" is the Starlette one (the name
# older records use).
LABELS = {
    "direct": "direct",
    "peer": "Starlette peer",
    "node_peer": "Node peer",
    "project": "project",
}
REFERENCES = ("direct", "peer", "node_peer")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(values: list[float], q: float) -> float | None:
    found = percentile(values, q)
    return None if found is None else round(found * MS, 3)


def summarise(m: Measurement) -> dict[str, Any]:
    """The figures of one target; times in ms, CPU in µs per relayed token."""
    results = m.results
    tokens = sum(len(r.arrivals) for r in results)
    gaps = [g for r in results for g in r.gaps]
    latencies = [x for r in results for x in r.latencies]
    ttft = [r.ttft for r in results if r.ttft is not None]
    errors = Counter(r.error.split(":")[0] for r in results if r.error)
    summary: dict[str, Any] = {
        "streams": len(results),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        # Of the streams that ended normally (quiet streams never end).
        "text_mismatch": sum(
            r.total is not None and not r.error and not r.text_ok for r in results
        ),
        "tokens": tokens,
        "bytes": sum(r.bytes for r in results),
        "post_p50_ms": _ms([r.accepted for r in results if r.accepted is not None], 50),
        "ttfb_p50_ms": _ms([r.ttfb for r in results if r.ttfb is not None], 50),
        "ttft_p50_ms": _ms(ttft, 50),
        "ttft_p95_ms": _ms(ttft, 95),
        "ttft_p99_ms": _ms(ttft, 99),
        "gap_p50_ms": _ms(gaps, 50),
        "gap_p95_ms": _ms(gaps, 95),
        "gap_p99_ms": _ms(gaps, 99),
        "latency_p50_ms": _ms(latencies, 50),
        "latency_p95_ms": _ms(latencies, 95),
        "latency_p99_ms": _ms(latencies, 99),
        "total_p50_ms": _ms([r.total for r in results if r.total is not None], 50),
        "cpu_s": round(m.usage.cpu, 3),
        "cpu_util": round(m.usage.cpu / m.usage.wall, 3) if m.usage.wall else None,
        "cpu_us_per_token": round(m.usage.cpu / tokens * 1e6, 2) if tokens else None,
        "tokens_per_cpu_s": round(tokens / m.usage.cpu) if m.usage.cpu else None,
        "tokens_per_s": round(tokens / m.usage.wall) if m.usage.wall else None,
        "upstream_cpu_s": round(m.upstream.cpu, 3),
        "rss_peak_mb": round(m.usage.rss_peak / 2**20, 1),
    }
    pings = [b - a for r in results for a, b in zip(r.pings, r.pings[1:], strict=False)]
    if pings:
        summary |= {
            "ping_gap_p50_ms": _ms(pings, 50),
            "ping_gap_p99_ms": _ms(pings, 99),
            "ping_gap_max_ms": _ms(pings, 100),
            "streams_without_ping": sum(not r.pings for r in results),
        }
    return summary | {k: round(v, 3) for k, v in m.extra.items()}


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 2)
    return None


def _added(project: dict[str, Any], reference: dict[str, Any], key: str) -> float | None:
    if project.get(key) is None or reference.get(key) is None:
        return None
    return round(project[key] - reference[key], 3)


def record(scenario: str, measurements: list[Measurement], meta: dict[str, Any]) -> dict[str, Any]:
    """One scenario's JSON record: every target, the ratios and the targets of issue 6."""
    targets = {m.target: summarise(m) for m in measurements}
    project = targets["project"]
    found: dict[str, Any] = {"scenario": scenario, **meta, "targets": targets}
    for reference in REFERENCES:
        if reference in targets:
            found[f"ratio_to_{reference}"] = {
                key: _ratio(value, targets[reference].get(key))
                for key, value in project.items()
                if _ratio(value, targets[reference].get(key)) is not None
            }
    if "direct" in targets:
        direct = targets["direct"]
        found["added"] = {
            "ttft_p50_ms": _added(project, direct, "ttft_p50_ms"),
            "ttft_p99_ms": _added(project, direct, "ttft_p99_ms"),
            "gap_p50_ms": _added(project, direct, "gap_p50_ms"),
            "gap_p99_ms": _added(project, direct, "gap_p99_ms"),
            "latency_p50_ms": _added(project, direct, "latency_p50_ms"),
            "latency_p99_ms": _added(project, direct, "latency_p99_ms"),
        }
        if project.get("total_p50_ms") and direct.get("total_p50_ms") and project["tokens"]:
            per_stream = project["tokens"] / project["streams"]
            added = (project["total_p50_ms"] - direct["total_p50_ms"]) / per_stream
            found["added"]["per_token_ms"] = round(added, 4)
    found["goals"] = goals(scenario, found)
    return found


def goals(scenario: str, rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets that apply to this scenario: limit, measured value, met."""
    added = rec.get("added", {})
    project = rec["targets"]["project"]
    peer_ratio = rec.get("ratio_to_peer", {})
    checks: dict[str, tuple[float | None, float]] = {}
    if scenario == "a":
        checks["ttft_added_p50_ms"] = (added.get("ttft_p50_ms"), 15)
        checks["gap_added_p50_ms"] = (added.get("gap_p50_ms"), 1)
    if scenario in ("b", "e"):
        checks["ttft_p50_ms"] = (project.get("ttft_p50_ms"), 20)
        checks["ttft_p99_ms"] = (project.get("ttft_p99_ms"), 100)
        checks["gap_added_p99_ms"] = (added.get("gap_p99_ms"), 25)
    if scenario in ("b", "d"):
        checks["cpu_per_token_vs_peer"] = (peer_ratio.get("cpu_us_per_token"), 0.5)
    if scenario == "c":
        checks["rss_per_stream_kb"] = (project.get("rss_per_stream_kb"), 30)
    return {
        name: {"value": value, "limit": limit, "met": value is not None and value <= limit}
        for name, (value, limit) in checks.items()
    }


# The rows of the human table: (label, key).
ROWS = [
    ("errors", "errors"),
    ("text mismatches", "text_mismatch"),
    ("tokens relayed", "tokens"),
    ("POST answered p50 ms", "post_p50_ms"),
    ("TTFB p50 ms", "ttfb_p50_ms"),
    ("TTFT p50 ms", "ttft_p50_ms"),
    ("TTFT p95 ms", "ttft_p95_ms"),
    ("TTFT p99 ms", "ttft_p99_ms"),
    ("gap p50 ms", "gap_p50_ms"),
    ("gap p95 ms", "gap_p95_ms"),
    ("gap p99 ms", "gap_p99_ms"),
    ("latency p50 ms", "latency_p50_ms"),
    ("latency p99 ms", "latency_p99_ms"),
    ("total p50 ms", "total_p50_ms"),
    ("CPU s", "cpu_s"),
    ("CPU util", "cpu_util"),
    ("CPU µs/token", "cpu_us_per_token"),
    ("tokens/CPU s", "tokens_per_cpu_s"),
    ("tokens/s", "tokens_per_s"),
    ("RSS peak MB", "rss_peak_mb"),
    ("open streams", "open_streams"),
    ("RSS growth KB/stream", "rss_growth_kb_per_stream"),
    ("RSS KB/stream", "rss_per_stream_kb"),
    ("idle CPU µs/stream/s", "cpu_us_per_stream_s"),
    ("upstream conns open", "upstream_open"),
    ("server threads", "server_threads"),
    ("ping gap p50 ms", "ping_gap_p50_ms"),
    ("ping gap p99 ms", "ping_gap_p99_ms"),
    ("ping gap max ms", "ping_gap_max_ms"),
    ("streams w/o ping", "streams_without_ping"),
    ("Redis CPU s", "redis_cpu_s"),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _label(name: str) -> str:
    return LABELS.get(name, name)


def table(rec: dict[str, Any]) -> str:
    """A Markdown table of one scenario: every target, and the project's ratios."""
    names = list(rec["targets"])
    refs = [r for r in REFERENCES if f"ratio_to_{r}" in rec]
    header = ["", *map(_label, names), *(f"project ÷ {_label(r)}" for r in refs)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, key in ROWS:
        values = [rec["targets"][n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        ratios = [rec[f"ratio_to_{r}"].get(key) for r in refs]
        lines.append("| " + " | ".join([label, *map(_cell, values), *map(_cell, ratios)]) + " |")
    for name, goal in rec["goals"].items():
        verdict = "met" if goal["met"] else "MISSED"
        lines.append(f"\ngoal {name}: {_cell(goal['value'])} (limit {goal['limit']}): {verdict}")
    if rec.get("added"):
        added = ", ".join(f"{k} {_cell(v)}" for k, v in rec["added"].items())
        lines.append(f"\nadded by the project over direct: {added}")
    return "\n".join(lines)


# Regression check: (where, key, how). "up" fails when the value rose by the factor and
# the slack; "down" when it fell; "zero" when a baseline of zero became non-zero.
CHECKS: list[tuple[str, str, str, float, float]] = [
    ("project", "errors", "zero", 0, 0),
    ("project", "text_mismatch", "zero", 0, 0),
    ("project", "ttft_p50_ms", "up", 2.0, 20),
    ("project", "ttft_p99_ms", "up", 2.0, 100),
    ("project", "gap_p99_ms", "up", 2.0, 25),
    ("project", "rss_per_stream_kb", "up", 1.5, 10),
    ("ratio_to_peer", "cpu_us_per_token", "up", 1.5, 0.1),
    ("ratio_to_node_peer", "cpu_us_per_token", "up", 1.5, 0.1),
    ("project", "tokens_per_cpu_s", "down", 1.5, 0),
]


def _section(rec: dict[str, Any], where: str) -> dict[str, Any]:
    if where == "project":
        return rec.get("targets", {}).get("project", {})
    return rec.get(where, {})


def regressions(baseline: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """Clear regressions of `current` against `baseline`, with generous tolerances.

    A scenario or a figure that one side lacks (a baseline older than a reference or
    a scenario) is not compared."""
    problems = []
    before = {rec["scenario"]: rec for rec in baseline}
    for rec in current:
        old = before.get(rec["scenario"])
        if old is None:
            continue
        for where, key, how, factor, slack in CHECKS:
            new, was = _section(rec, where).get(key), _section(old, where).get(key)
            if new is None or was is None:
                continue
            worse = (
                (how == "zero" and was == 0 and new > 0)
                or (how == "up" and new > was * factor + slack)
                or (how == "down" and new < was / factor - slack)
            )
            if worse:
                problems.append(f"{rec['scenario']}: {where}.{key} {was} -> {new}")
    return problems


# The sweep's figures, by kind of level: (label, key, unit, logarithmic axis).
SWEEP_FIGURES = {
    "active": [
        ("CPU per token", "cpu_us_per_token", "µs", False),
        ("TTFT p99", "ttft_p99_ms", "ms", True),
        ("RSS growth per stream", "rss_growth_kb_per_stream", "KB", False),
    ],
    "quiet": [
        ("RSS per stream", "rss_per_stream_kb", "KB", False),
        ("idle CPU per stream", "cpu_us_per_stream_s", "µs/s", False),
        ("streams opened", "open_streams", "", False),
    ],
}
SWEEP_NAME = re.compile(r"sweep-(active|quiet)-(\d+)$")


def sweep_series(
    records: list[dict[str, Any]], kind: str, key: str
) -> tuple[list[int], dict[str, list[float | None]]]:
    """One figure of the sweep's levels of a kind: the levels, and each target's values."""
    levels: list[int] = []
    series: dict[str, list[float | None]] = {}
    for rec in records:
        found = SWEEP_NAME.match(rec["scenario"])
        if not found or found[1] != kind:
            continue
        levels.append(int(found[2]))
        for name, summary in rec["targets"].items():
            series.setdefault(name, []).append(summary.get(key))
    return levels, series


def sweep_table(records: list[dict[str, Any]]) -> str:
    """The sweep in a Markdown table per figure: a row per level, a column per target
    and the project's ratios to each peer."""
    out = []
    for kind, figures in SWEEP_FIGURES.items():
        for label, key, unit, _ in figures:
            levels, series = sweep_series(records, kind, key)
            if not levels:
                continue
            names = list(series)
            refs = [r for r in REFERENCES if r in series and "project" in series]
            heading = f"{kind} streams"
            header = [heading, *map(_label, names), *(f"project ÷ {_label(r)}" for r in refs)]
            lines = [f"{label} ({unit})" if unit else label, ""]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for i, level in enumerate(levels):
                values = [series[n][i] for n in names]
                ratios = [_ratio(series["project"][i], series[r][i]) for r in refs]
                lines.append("| " + " | ".join(map(_cell, [level, *values, *ratios])) + " |")
            out.append("\n".join(lines))
    return "\n\n".join(out)


# Samples that are not serving the load: imports at start-up, the login's password hash,
# executor threads waiting for work.
NOT_LOAD = ("_bootstrap", "pbkdf2", "concurrent/futures/thread.py:89)")


def profile_summary(path: Path, top: int = 25) -> str:
    """Where the samples of a py-spy raw profile went: by area and by frame (self time).

    Start-up, login and idle executor threads are left out (NOT_LOAD).
    """
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or any(marker in stack for marker in NOT_LOAD):
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        areas[_area(frames)] += samples
    if not total:
        return "no samples"
    lines = [f"{total} samples; by area (the innermost recognised frame):"]
    lines += [f"  {n / total:6.1%}  {area}" for area, n in areas.most_common()]
    lines.append("by frame (self time):")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


# Ordered: the first match from the innermost frame outwards names the area.
AREAS = [
    ("pydantic/SDK typed chunk objects", ("pydantic", "openai/_models", "openai/_streaming")),
    ("httpx2/httpcore2 (SDK HTTP)", ("httpx2", "httpcore2", "h11")),
    ("JSON", ("json/",)),
    ("chat event log", ("chat/eventlog",)),
    ("chat SSE encoding and heartbeats", ("chat/sse",)),
    ("chat views, replay, generation, provider", ("chat/",)),
    ("redis client", ("redis/",)),
    ("Django request handling and middleware", ("django/",)),
    ("asgiref", ("asgiref",)),
    (
        "ASGI server (daphne/twisted, uvicorn, granian)",
        ("daphne", "twisted", "uvicorn", "httptools"),
    ),
    ("asyncio event loop", ("asyncio",)),
]


def _area(frames: list[str]) -> str:
    for frame in reversed(frames):
        for area, needles in AREAS:
            if any(needle in frame for needle in needles):
                return area
    return "other (interpreter, idle)"
