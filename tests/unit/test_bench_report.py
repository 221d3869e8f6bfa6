"""bench/_report.py: the side-by-side table has trickle rows only when both trees have them."""

from __future__ import annotations

from pathlib import Path

from bench._report import PROCESSES, Round, Tree, comparison


def _tree(label: str, trickle: bool) -> Tree:
    burst = {"accepted_per_s": 100.0, "completed_per_s": 90.0, "idle_pct": 2.0,
             "lost": 0, "unnotified": 0, "refused": 0,
             "cpu_ms": {name: 1.0 for name in PROCESSES}}
    if trickle:
        burst |= {"trickle_pct": 4.0, "trickle_ms": 12.0}
    return Tree(label, Path("."), [Round([1.0], [2.0], [9.0], burst)])


def test_trickle_rows_appear_with_their_ratio() -> None:
    rows = comparison(_tree("now", True), _tree("before", True))
    row = next(r for r in rows if r.startswith("| trickle: worker + broker"))
    assert "4.00 [4.00–4.00]" in row and row.rstrip(" |").endswith("1.00")


def test_a_tree_without_the_trickle_leaves_the_rows_out() -> None:
    rows = comparison(_tree("now", True), _tree("before", False))
    assert not any(r.startswith("| trickle") for r in rows)
