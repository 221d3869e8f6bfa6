"""The JS client's unit tests (clients/js/test/, fake fetch and WebSocket) under `node --test`.

Skipped when no Node.js >= 18 is on PATH; no npm package is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "clients" / "js" / "test"


def node_binary() -> str | None:
    """The `node` on PATH if it is Node.js 18 or later (global fetch, node --test), else None."""
    node = shutil.which("node")
    if node is None:
        return None
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    major = version.lstrip("v").split(".")[0]
    return node if major.isdigit() and int(major) >= 18 else None


def test_node_unit_tests() -> None:
    node = node_binary()
    if node is None:
        pytest.skip("no Node.js >= 18 on PATH")
    files = sorted(str(path) for path in TESTS.glob("*.test.mjs"))
    assert files, f"no tests in {TESTS}"
    done = subprocess.run([node, "--test", *files], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
