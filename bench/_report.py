"""The tables of bench/pipeline.py: one tree's figures, and two trees side by side.

Every figure of a round comes from `Round`; a table cell over rounds is `median [min–max]`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._cpu import Probe
from bench._stats import median_range, percentile

#: The server processes of a stack, in table order: probe name → what the table calls it.
PROCESSES = {
    "web": "web server (uvicorn)",
    "worker": "worker (Celery main + pool)",
    "broker": "broker (tansu, or Kafka with --broker apache)",
    "redis": "Redis",
    "database": "database (PostgreSQL)",
}


@dataclass
class Round:
    """What one round measured on one tree."""

    sync_ms: list[float]
    async_ms: list[float]
    e2e_ms: list[float]
    burst: dict[str, Any]


@dataclass
class Tree:
    """A source tree under test and the rounds measured on it."""

    label: str
    root: Path
    rounds: list[Round] = field(default_factory=list)
    #: The probes of its latest stack: why a process was not measured.
    probes: list[Probe] = field(default_factory=list)

    def reason(self, name: str) -> str:
        """Why process `name` has no CPU figure."""
        return next((p.reason for p in self.probes if p.name == name), "not measured")


def summarize(name: str, runs: list[list[float]]) -> str:
    p50, low, high = median_range([percentile(r, 50) for r in runs])
    p99 = median_range([percentile(r, 99) for r in runs])[0]
    return (f"| {name} | {p50:.2f} | {p99:.2f} | {low:.2f}–{high:.2f} "
            f"| {len(runs)} × {len(runs[0])} |")


def cpu_values(rounds: Sequence[Round], name: str) -> list[float] | None:
    """CPU ms per request of process `name` in each round; None when it was not measured."""
    values = [r.burst["cpu_ms"][name] for r in rounds]
    return None if any(v is None for v in values) else values


def cpu_total(rounds: Sequence[Round]) -> list[float]:
    """Per round: the sum over the measured server processes."""
    return [sum(v for v in r.burst["cpu_ms"].values() if v is not None) for r in rounds]


def details(tree: Tree, path: str, burst: int, clients: int) -> list[str]:
    """The tables of one tree: latencies, burst per run, CPU per process per run."""
    rounds = tree.rounds
    rows = [f"### {tree.label}", "",
            "| measurement (ms) | p50 (median of runs) | p99 (median of runs) "
            "| p50 range | runs × n |",
            "|---|---|---|---|---|",
            summarize(f"GET {path} without the header (route runs)", [r.sync_ms for r in rounds]),
            summarize(f"GET {path} with X-Async-Request: time to 202",
                      [r.async_ms for r in rounds]),
            summarize("send → WebSocket notification (end to end)", [r.e2e_ms for r in rounds]),
            "", f"| burst: {burst} requests, {clients} clients | accepted/s "
                "| completed/s | result but no notification | lost | refused |",
            "|---|---|---|---|---|---|"]
    bursts = [r.burst for r in rounds]
    for i, b in enumerate(bursts, 1):
        rows.append(f"| run {i} | {b['accepted_per_s']:.0f} | {b['completed_per_s']:.0f} | "
                    f"{b['unnotified']:.0f} | {b['lost']:.0f} | {b['refused']:.0f} |")
    med = {k: statistics.median(b[k] for b in bursts)
           for k in ("accepted_per_s", "completed_per_s")}
    rows.append(f"| median | {med['accepted_per_s']:.0f} | {med['completed_per_s']:.0f} | "
                f"{sum(b['unnotified'] for b in bursts):.0f} total | "
                f"{sum(b['lost'] for b in bursts):.0f} total | "
                f"{sum(b['refused'] for b in bursts):.0f} total |")
    runs = " | ".join(f"run {i}" for i in range(1, len(rounds) + 1))
    rows += ["", f"| CPU ms per completed request (burst) | {runs} | median |",
             "|---|" + "---|" * (len(rounds) + 1)]
    for name, title in PROCESSES.items():
        values = cpu_values(rounds, name)
        if values is None:
            rows.append(f"| {title} | " + " | ".join([tree.reason(name)] + ["–"] * len(rounds))
                        + " |")
        else:
            rows.append(f"| {title} | " + " | ".join(f"{v:.2f}" for v in values)
                        + f" | {statistics.median(values):.2f} |")
    total = cpu_total(rounds)
    rows.append("| **all measured server processes** | "
                + " | ".join(f"{v:.2f}" for v in total) + f" | {statistics.median(total):.2f} |")
    if all("client_ms" in b for b in bursts):
        own = [b["client_ms"] for b in bursts]
        rows.append("| the measuring clients (this script, not a server) | "
                    + " | ".join(f"{v:.2f}" for v in own) + f" | {statistics.median(own):.2f} |")
    if all("idle_pct" in b for b in bursts):
        idle = [b["idle_pct"] for b in bursts]
        rows.append("| idle after the burst: worker + broker, % of one core | "
                    + " | ".join(f"{v:.2f}" for v in idle) + f" | {statistics.median(idle):.2f} |")
    if all("trickle_pct" in b for b in bursts):
        for key, title in (("trickle_pct", "trickle: worker + broker, % of one core"),
                           ("trickle_ms", "trickle: send → WebSocket, p50 ms")):
            values = [b[key] for b in bursts]
            rows.append(f"| {title} | " + " | ".join(f"{v:.2f}" for v in values)
                        + f" | {statistics.median(values):.2f} |")
    return rows


def cell(values: Sequence[float], digits: int) -> str:
    mid, low, high = median_range(values)
    return f"{mid:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


def comparison(current: Tree, baseline: Tree) -> list[str]:
    """Median [min–max] of the rounds for both trees, and current/baseline of the medians."""
    def p50s(tree: Tree, attr: str) -> list[float]:
        return [percentile(getattr(r, attr), 50) for r in tree.rounds]

    def bursts(tree: Tree, key: str) -> list[float]:
        return [r.burst[key] for r in tree.rounds]

    # (title, current's values, baseline's, decimals, process name for CPU rows)
    series: list[tuple[str, list[float] | None, list[float] | None, int, str]] = [
        ("without the header → 200, p50 ms", p50s(current, "sync_ms"),
         p50s(baseline, "sync_ms"), 2, ""),
        ("time to 202, p50 ms", p50s(current, "async_ms"), p50s(baseline, "async_ms"), 2, ""),
        ("send → WebSocket, p50 ms", p50s(current, "e2e_ms"), p50s(baseline, "e2e_ms"), 2, ""),
        ("burst: accepted/s", bursts(current, "accepted_per_s"),
         bursts(baseline, "accepted_per_s"), 0, ""),
        ("burst: completed/s", bursts(current, "completed_per_s"),
         bursts(baseline, "completed_per_s"), 0, ""),
    ]
    if all("idle_pct" in r.burst for r in (*current.rounds, *baseline.rounds)):
        series.append(("idle: worker + broker, % of one core", bursts(current, "idle_pct"),
                       bursts(baseline, "idle_pct"), 2, ""))
    if all("trickle_pct" in r.burst for r in (*current.rounds, *baseline.rounds)):
        series += [("trickle: worker + broker, % of one core", bursts(current, "trickle_pct"),
                    bursts(baseline, "trickle_pct"), 2, ""),
                   ("trickle: send → WebSocket, p50 ms", bursts(current, "trickle_ms"),
                    bursts(baseline, "trickle_ms"), 2, "")]
    series += [(f"CPU ms/request: {title}", cpu_values(current.rounds, name),
                cpu_values(baseline.rounds, name), 2, name) for name, title in PROCESSES.items()]
    series.append(("CPU ms/request: **all measured server processes**",
                   cpu_total(current.rounds), cpu_total(baseline.rounds), 2, ""))
    if all("client_ms" in r.burst for r in (*current.rounds, *baseline.rounds)):
        series.append(("CPU ms/request: the measuring clients (not a server)",
                       bursts(current, "client_ms"), bursts(baseline, "client_ms"), 2, ""))
    rows = [f"| measure | {current.label} | {baseline.label} | current/baseline |",
            "|---|---|---|---|"]
    for title, cur, base, digits, name in series:
        if cur is None or base is None:
            rows.append(f"| {title} | {cell(cur, digits) if cur else current.reason(name)} "
                        f"| {cell(base, digits) if base else baseline.reason(name)} | – |")
            continue
        ratio = statistics.median(cur) / statistics.median(base)
        rows.append(f"| {title} | {cell(cur, digits)} | {cell(base, digits)} | {ratio:.2f} |")
    lost = {t.label: sum(r.burst["lost"] + r.burst["unnotified"] + r.burst["refused"]
                         for r in t.rounds) for t in (current, baseline)}
    rows.append(f"| burst: lost + unnotified + refused (all rounds) | {lost[current.label]} "
                f"| {lost[baseline.label]} | – |")
    return rows
