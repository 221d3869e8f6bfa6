"""Remote control and events between processes: `celery inspect ping`, revoke, Flower."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from tests.integration.transport.conftest import APP, Cluster
from tools.services import free_port, wait_for_port
from tools.stack import ROOT, CeleryProcess

pytestmark = pytest.mark.integration


def cli(cluster: Cluster, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", APP, *args],
        cwd=ROOT, env=cluster.env(), capture_output=True, text=True, timeout=timeout)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - local test URL
        return json.loads(response.read())


def test_inspect_ping_and_control_through_the_cli(cluster: Cluster) -> None:
    prefix = f"pinged-{cluster.names.queue}@"
    worker = cluster.worker(name=prefix[:-1])
    worker.wait_ready()
    ping = cli(cluster, "inspect", "ping", "-t", "5")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "pong" in ping.stdout and prefix in ping.stdout
    app = cluster.app()
    # The broker is the session's: other workers on it (the sample stack's) answer broadcasts
    # too, so look at our worker's reply only, and shut down only our worker.
    replies = app.control.inspect(timeout=3).active_queues() or {}
    ours = {node: queues for node, queues in replies.items() if node.startswith(prefix)}
    assert ours, f"no reply from {prefix}* to active_queues: {sorted(replies)}"
    ((node, queues),) = ours.items()
    assert [q["name"] for q in queues] == [cluster.names.queue]
    # a worker does not answer shutdown
    cli(cluster, "control", "shutdown", "-t", "1", "-d", node)
    assert worker.process is not None and worker.process.wait(15) == 0
    app.close()


def test_revoke_reaches_the_worker(cluster: Cluster) -> None:
    worker = cluster.worker(concurrency=1)
    worker.wait_ready()
    app = cluster.app()
    blocker = app.send_task("kt.early", args=["BLOCK", 2])
    cluster.wait_marks("start", {"BLOCK"}, 10)
    victim = app.send_task("kt.early", args=["VICTIM", 0], countdown=1)
    app.control.revoke(victim.id)
    blocker.get(timeout=10)
    worker.wait_for(f"Discarding revoked task: kt.early[{victim.id}]", 10)
    assert "VICTIM" not in {tag for tag, _ in cluster.marks("start")}
    app.close()


def test_flower_sees_workers_and_task_events(cluster: Cluster) -> None:
    worker = cluster.worker(extra=["-E"], name=f"flowered-{cluster.names.queue}")
    worker.wait_ready()
    port = free_port()
    env = {**cluster.env(), "FLOWER_UNAUTHENTICATED_API": "true"}
    args = ["flower", f"--port={port}", "--address=127.0.0.1", "--inspect_timeout=3000"]
    flower = CeleryProcess.start("flower", APP, args, cluster.logs / "flower.log", env)
    cluster.workers.append(flower)
    wait_for_port("127.0.0.1", port, 30, flower.process, "flower")
    base = f"http://127.0.0.1:{port}"
    time.sleep(1.0)  # Flower binds its event queue right after it starts listening
    app = cluster.app()
    ok = app.send_task("kt.noop", args=["seen"])
    bad = app.send_task("kt.fail", args=["seen"])
    assert ok.get(timeout=10) == "seen"
    with pytest.raises(ValueError):
        bad.get(timeout=10)

    deadline = time.monotonic() + 30
    workers: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        workers = get_json(f"{base}/api/workers?refresh=1")
        tasks = get_json(f"{base}/api/tasks")
        states = {tasks.get(ok.id, {}).get("state"), tasks.get(bad.id, {}).get("state")}
        if any(name.startswith("flowered-") for name in workers) and states == {
                "SUCCESS", "FAILURE"}:
            break
        time.sleep(0.5)
    assert any(name.startswith("flowered-") for name in workers), workers
    assert tasks[ok.id]["state"] == "SUCCESS", tasks
    assert tasks[bad.id]["state"] == "FAILURE", tasks
    assert tasks[ok.id]["received"] and tasks[ok.id]["started"] and tasks[ok.id]["succeeded"]
    assert tasks[bad.id]["failed"]
    app.close()
