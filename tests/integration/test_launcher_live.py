"""`make run` keeps running (issue 13 items 9 and 10), tried as a new user would.

The launcher (tools/devstack.py, what `make run` starts) runs here as a process of its own, on
free ports and a state directory of its own (`AR_RUN_DIR`). Each of its components is then
SIGKILLed in turn: the worker, the broker (tansu), the private Redis and the web app. After
each the launcher says it started the component again, and the stack still takes an async
request to its result; a result kept before Redis died is still there (append-only file).
`devstack.py stop` then stops everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tools.services import free_port
from tools.stack import HEALTH_PATH, RESULTS_PATH, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.long]

LAUNCHER = [sys.executable, str(ROOT / "tools" / "devstack.py")]


class Launcher:
    """A running `devstack.py` and what it printed."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir, self.env = run_dir, env
        self.output = run_dir.parent / "launcher.out"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(LAUNCHER, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        self.info = self._wait_for_info(240)
        self.web = str(self.info["web"])
        self.token = str(self.info["token"])

    def _wait_for_info(self, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        path = self.run_dir / "stack.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the launcher exited ({self.proc.returncode}):\n{self.said()}")
            if path.exists():
                return dict(json.loads(path.read_text()))
            time.sleep(0.5)
        pytest.fail(f"the stack was not up within {timeout:.0f}s:\n{self.said()}")

    def said(self) -> str:
        return self.output.read_text(errors="replace")

    def children(self) -> dict[int, str]:
        """Direct children of the launcher: pid → command line."""
        found: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                found[int(entry.name)] = cmdline
        return found

    def kill(self, match: Callable[[str], bool]) -> int:
        """SIGKILL the one child whose command line `match`es; its pid."""
        pids = [pid for pid, cmd in self.children().items() if match(cmd)]
        assert len(pids) == 1, f"{len(pids)} children match: {self.children()}"
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def wait_said(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.said():
            assert time.monotonic() < deadline, f"the launcher never said {text!r}:\n{self.said()}"
            assert self.proc.poll() is None, f"the launcher exited:\n{self.said()}"
            time.sleep(0.3)

    def stop(self) -> int:
        subprocess.run([*LAUNCHER, "stop"], env=self.env, cwd=ROOT, timeout=90, check=False,
                       capture_output=True)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    base = tmp_path_factory.mktemp("launcher")
    env = {
        **{k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")},
        "AR_RUN_DIR": str(base / "run"),
        "WEB_PORT": str(free_port()), "KAFKA_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        # Nothing answers there, so the launcher starts its own Redis (on a free port).
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "SQLITE_PATH": str(base / "db.sqlite3"),
    }
    running = Launcher(base / "run", env)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()


def deferred_result(launcher: Launcher, timeout: float = 60) -> dict[str, object]:
    """One async request to its result; 503s (a broker coming back) are tried again."""
    auth = {"Authorization": f"Bearer {launcher.token}"}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=launcher.web, timeout=15) as client:
        while True:
            try:
                accepted = client.get("/api/v1/orders/",
                                      headers={**auth, "X-Async-Request": "true"})
            except httpx.TransportError:  # the web app coming back
                accepted = None
            if accepted is not None and accepted.status_code == 202:
                break
            assert time.monotonic() < deadline, f"no 202: {accepted and accepted.text}"
            time.sleep(0.5)
        task_id = accepted.json()["meta"]["async_request_id"]
        while True:
            body = client.get(f"{RESULTS_PATH}{task_id}/", headers=auth)
            if body.status_code == 200:
                return dict(body.json())
            assert body.status_code == 202, body.text
            assert time.monotonic() < deadline, f"{task_id} still {body.json()['state']}"
            time.sleep(0.3)


def test_every_component_killed_is_started_again_and_the_stack_keeps_working(
        launcher: Launcher) -> None:
    first = deferred_result(launcher)
    assert first["state"] == "completed" and first["status"] == 200

    launcher.kill(lambda cmd: "celery" in cmd and " worker" in cmd)
    launcher.wait_said("worker exited with code -9; starting a new one")
    assert deferred_result(launcher)["state"] == "completed"

    launcher.kill(lambda cmd: "tansu" in cmd)
    launcher.wait_said("kafka exited with code -9; starting it again")
    assert deferred_result(launcher, timeout=90)["state"] == "completed"

    launcher.kill(lambda cmd: "redis-server" in cmd)
    launcher.wait_said("redis exited with code -9; starting it again")
    kept = httpx.get(f"{launcher.web}{RESULTS_PATH}{first['task_id']}/", timeout=15,
                     headers={"Authorization": f"Bearer {launcher.token}"})
    assert kept.status_code == 200 and kept.json()["state"] == "completed"  # the AOF kept it
    assert deferred_result(launcher)["state"] == "completed"

    launcher.kill(lambda cmd: "uvicorn" in cmd)
    launcher.wait_said("web exited with code -9; starting it again")
    assert deferred_result(launcher)["state"] == "completed"
    assert httpx.get(launcher.web + HEALTH_PATH, timeout=15).status_code == 200
    assert "stopping everything" not in launcher.said()


def test_only_stop_stops_the_stack(launcher: Launcher) -> None:
    children = launcher.children()
    assert launcher.stop() == 0
    assert "stopped" in launcher.said()
    time.sleep(1)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert alive == [], f"still running after stop: {[children[p] for p in alive]}"
    assert not (launcher.run_dir / "stack.json").exists()
