"""`async-request broker | worker | workers`, the installed console script, on real services.

A project without manage.py (FastAPI only: settings, asgi.py, nothing else) is written to a
temporary directory; its worker is `async-request worker --settings myproject.settings` run from
that directory, with no PYTHONPATH, and one deferred request must come back through it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.stack import own_redis_db
from tools.services import Service, free_port, port_open, wait_for_port

pytestmark = pytest.mark.integration

SCRIPT = str(Path(sys.executable).with_name("async-request"))
#: A Redis database of its own: its users' owner names repeat those of the session's stack.
REDIS_DB = 3

SETTINGS = '''
import os
SECRET_KEY = os.environ["TEST_SECRET_KEY"]
INSTALLED_APPS = ["channels", "async_request"]
REDIS = os.environ["TEST_REDIS_URL"]
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                              "CONFIG": {"hosts": [{"address": REDIS, "socket_timeout": 30}],
                                         "capacity": 1000}}}
ASYNC_REQUEST_ASGI_APP = "myproject.asgi:application"
ASYNC_REQUEST_REDIS_URL = REDIS
KAFKA_BOOTSTRAP_SERVERS = os.environ["TEST_KAFKA"]
KAFKA_TOPIC_ASYNC_BG = os.environ["TEST_TOPIC"]
KAFKA_GROUP_ID = os.environ["TEST_TOPIC"]
'''

ASGI = '''
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
import django
django.setup()

from fastapi import FastAPI
from async_request.middleware import AsyncRequestMiddleware
from async_request.results.fastapi import router as results_router

api = FastAPI()
api.include_router(results_router, prefix="/api/v1")


@api.get("/api/v1/square/")
async def square(n: int) -> dict:
    return {"square": n * n, "pid": os.getpid()}


application = AsyncRequestMiddleware(api)
'''


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    base_url: str
    logs: Path

    def spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = self.logs / log_name
        return subprocess.Popen(args, cwd=self.root, env=self.env, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


@pytest.fixture(scope="module")
def project(kafka: Service, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
            integration_logs: Path) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("cli_project")
    package = root / "myproject"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (package / "asgi.py").write_text(textwrap.dedent(ASGI))
    # No PYTHONPATH: the working directory alone must make the project importable.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BS_", "DJANGO_")) and k != "PYTHONPATH"}
    env.update(TEST_REDIS_URL=own_redis_db(redis_url, REDIS_DB), TEST_KAFKA=kafka.url,
               TEST_TOPIC=f"cli_{os.getpid()}", TEST_SECRET_KEY=secrets.token_urlsafe(40))
    port = free_port()
    live = Project(root, env, f"http://127.0.0.1:{port}", integration_logs)
    web = live.spawn([sys.executable, "-m", "uvicorn", "myproject.asgi:application", "--port",
                      str(port)], "cli_web.log")
    try:
        wait_for_port("127.0.0.1", port, 30, web, "cli project web app")
        yield live
    finally:
        _stop(web)


def _run_one_request(project: Project, timeout: float = 90) -> dict[str, Any]:
    """Defer GET /square/?n=7 as an anonymous client; return the completed result."""
    headers = {"x-async-request": secrets.token_urlsafe(16)}  # an anonymous client's channel
    with httpx.Client(base_url=project.base_url, timeout=30) as http:
        accepted = http.get("/api/v1/square/?n=7", headers=headers)
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["meta"]["async_request_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = http.get(f"/api/v1/async_background_response/{task_id}/", headers=headers)
            if result.status_code == 200:
                body: dict[str, Any] = result.json()
                assert body["state"] == "completed", body
                return body
            assert result.status_code == 202, result.text
            time.sleep(0.3)
    raise AssertionError(f"task {task_id} not completed within {timeout}s")


def test_worker_without_manage_py_runs_a_request_and_logs_at_info(project: Project) -> None:
    worker = project.spawn([SCRIPT, "worker", "--settings", "myproject.settings", "--pool",
                            "solo"], "cli_worker.log")
    try:
        result = _run_one_request(project)
        assert result["response"]["square"] == 49
        assert result["response"]["pid"] == worker.pid  # the solo pool runs tasks in-process
    finally:
        code = _stop(worker)
    log = (project.logs / "cli_worker.log").read_text()
    assert code == 0, log[-3000:]
    # INFO by default: a user sees the worker get ready and each task.
    assert " ready." in log, log[-3000:]
    assert "async_request.replay_request" in log


def test_workers_supervise_children_without_manage_py(project: Project) -> None:
    supervisor = project.spawn([SCRIPT, "workers", "--settings", "myproject.settings",
                                "--consumers-count", "1", "--pool", "solo"], "cli_workers.log")
    try:
        result = _run_one_request(project)
        children = psutil.Process(supervisor.pid).children(recursive=True)
        assert result["response"]["pid"] in {child.pid for child in children}
    finally:
        code = _stop(supervisor, timeout=60)
    assert code == 0, (project.logs / "cli_workers.log").read_text()[-3000:]
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_broker_answers_and_stops_on_sigint(integration_logs: Path) -> None:
    port = free_port()
    log = integration_logs / "cli_broker.log"
    broker = subprocess.Popen([SCRIPT, "broker", "--port", str(port)], stdout=log.open("wb"),
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "KAFKA_BOOTSTRAP_SERVERS" not in log.read_text():
            assert broker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert f'KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:{port}"' in text
        assert "development only" in text
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        metadata = admin.list_topics(timeout=15)
        assert [b.port for b in metadata.brokers.values()] == [port]
        del admin, metadata
        tansu = psutil.Process(broker.pid).children(recursive=True)
        assert tansu
        broker.send_signal(signal.SIGINT)
        assert broker.wait(15) == 0, log.read_text()
        assert not port_open("127.0.0.1", port)
        assert not [p for p in tansu if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        if broker.poll() is None:
            os.killpg(broker.pid, signal.SIGKILL)
            broker.wait(5)
