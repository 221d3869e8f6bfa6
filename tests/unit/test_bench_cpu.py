"""bench/_cpu.py: CPU of a process tree, reaped children included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench._cpu import Probe, ms_per_request, sample, tree_cpu_seconds

# A parent that starts a child spinning ~0.3 s of CPU, reaps it, then idles until killed.
SPIN_AND_REAP = """
import subprocess, sys, time
child = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
subprocess.run([sys.executable, "-c", child], check=True)
print("reaped", flush=True)
time.sleep(60)
"""


def test_tree_counts_children_it_reaped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SPIN_AND_REAP], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"reaped"
        assert tree_cpu_seconds(proc.pid) >= 0.25
    finally:
        proc.kill()
        proc.wait()


def test_tree_counts_live_descendants() -> None:
    spin = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])"
    proc = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while tree_cpu_seconds(proc.pid) < 0.2:
            assert time.monotonic() < deadline, "the spinning grandchild was not counted"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the grandchild too
        proc.wait()


def test_ms_per_request_and_unmeasured_probes() -> None:
    probes = [Probe("me", None, "not here")]
    assert sample(probes) == {"me": None}
    assert ms_per_request({"a": 1.0, "b": None}, {"a": 1.5, "b": None}, 100) == {
        "a": pytest.approx(5.0), "b": None}
    assert ms_per_request({"a": 1.0}, {"a": 2.0}, 0) == {"a": None}
