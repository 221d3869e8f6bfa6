"""CPU time of server processes, from /proc (psutil): what a benchmark's requests cost each.

A process is measured as a tree: the process, its live descendants and the children they have
reaped (`cutime`/`cstime` in /proc/<pid>/stat), so a Celery worker's pool children and
PostgreSQL's per-connection backends count, even those that exited during the measurement.
Sample before and after, subtract, divide by the requests served in between.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Probe:
    """One server process to measure: its pid, or `reason` why it cannot be measured."""

    name: str
    pid: int | None
    reason: str = ""


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of pid, its live descendants and what they reaped."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        # A descendant that exits between the listing and the read is in its parent's
        # children_* once reaped; the few ms it ran since the last sample may be missed.
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def sample(probes: Iterable[Probe]) -> dict[str, float | None]:
    """CPU seconds of each measurable probe's tree now (None for the others)."""
    return {p.name: None if p.pid is None else tree_cpu_seconds(p.pid) for p in probes}


def ms_per_request(before: Mapping[str, float | None], after: Mapping[str, float | None],
                   requests: int) -> dict[str, float | None]:
    """CPU milliseconds per request of each probe between two samples (None: not measured)."""
    out: dict[str, float | None] = {}
    for name, start in before.items():
        end = after[name]
        out[name] = (None if start is None or end is None or requests == 0
                     else (end - start) * 1000 / requests)
    return out


def postgres_probe(database_url: str) -> Probe:
    """The PostgreSQL server (postmaster, its backends below it) that database_url reaches.

    Found through the pid of our own connection's backend, whose parent is the postmaster;
    a server on another machine (or in a container) cannot be measured from here.
    """
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = int(row[0]) if row else 0
        try:
            parent = psutil.Process(backend).parent()
        except psutil.NoSuchProcess:
            parent = None
    if parent is None or "postgres" not in parent.name():
        return Probe("database", None, "PostgreSQL not on this machine: not measured")
    return Probe("database", parent.pid)
