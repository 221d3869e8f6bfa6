"""Session fixtures of the Kafka transport tests: a tansu broker, Redis DB 10, workers.

Every test gets fresh queue/group names (`names`), so tests never share consumer groups (tansu
keeps the first member's session timeout per group). Workers are real `celery worker`
processes in their own process group, killed for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests.integration.transport.app import make_app
from tools.apache_kafka import start_test_broker
from tools.services import Service, ensure_redis, redis_url_with_db

ROOT = Path(__file__).resolve().parents[3]
REDIS_DB = 10

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kt_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory for broker and worker logs of this session."""
    return tmp_path_factory.mktemp("transport-logs")


@pytest.fixture(scope="session")
def tansu(kt_logs: Path) -> Iterator[Service]:
    """This session's broker: tansu, or Apache Kafka if AR_TEST_KAFKA=apache."""
    service = start_test_broker(log_path=kt_logs / "tansu.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def kt_redis_url() -> Iterator[str]:
    """Redis DB 10, flushed at session start."""
    service = ensure_redis()
    url = redis_url_with_db(service.url, REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url
    service.stop()


@dataclass
class Names:
    """Fresh names of one test."""

    queue: str
    group: str
    ns: str


@pytest.fixture
def names() -> Names:
    """Unique queue, group and Redis namespace for one test."""
    suffix = uuid.uuid4().hex[:8]
    return Names(f"kt-q-{suffix}", f"kt-g-{suffix}", f"kt:{suffix}")


class WorkerProcess:
    """A `celery worker` subprocess of the test app in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, args: list[str]) -> None:
        self.log = log
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.integration.transport.app", *args],
            cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self) -> str:
        """The log so far."""
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30.0) -> float:
        """Wait until `needle` appears in the log; return seconds since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in worker log after {timeout}s:\n{self.text()}")

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for the worker's "ready." line."""
        return self.wait_for("ready.", timeout)

    def kill9(self) -> None:
        """SIGKILL the whole process group (main process and pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def term(self, timeout: float = 20.0) -> float:
        """SIGTERM the main process (warm shutdown); return how long it took to exit."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"warm shutdown took > {timeout}s:\n{self.text()}") from None
        return time.monotonic() - start

    def stop(self) -> None:
        """Best-effort cleanup."""
        if self.proc.poll() is None:
            self.kill9()


class Cluster:
    """Starts workers and builds client apps for one test's names."""

    def __init__(self, broker: str, redis_url: str, names: Names, logs: Path) -> None:
        self.broker, self.redis_url, self.names, self.logs = broker, redis_url, names, logs
        self.workers: list[WorkerProcess] = []
        self.apps: list[Celery] = []
        self.options: dict[str, Any] = {}
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def env(self) -> dict[str, str]:
        """Environment for worker/CLI processes of this test."""
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        return {**env, "KT_BROKER": self.broker, "KT_REDIS": self.redis_url,
                "KT_QUEUE": self.names.queue, "KT_GROUP": self.names.group,
                "KT_NS": self.names.ns, "KT_OPTIONS": json.dumps(self.options),
                "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}

    def app(self) -> Celery:
        """A client app (publishes and reads results); closed with the cluster."""
        app = make_app(self.broker, self.redis_url, self.names.queue, self.names.group,
                       self.names.ns, self.options)
        self.apps.append(app)
        return app

    def worker(self, pool: str = "prefork", concurrency: int = 2, extra: list[str] | None = None,
               name: str | None = None) -> WorkerProcess:
        """Start one worker on the test queue."""
        name = name or f"w{len(self.workers)}-{self.names.queue}"
        log = self.logs / f"{name}.log"
        args = ["worker", "-P", pool, "-c", str(concurrency), "-Q", self.names.queue,
                "-n", f"{name}@%h", "--without-mingle", "--without-gossip", "-l", "info",
                *(extra or [])]
        worker = WorkerProcess(self.env(), log, args)
        self.workers.append(worker)
        return worker

    def marks(self, what: str) -> list[tuple[str, int]]:
        """(tag, pid) pairs recorded by tasks under `what` ("start" or "done")."""
        rows = self.redis.lrange(f"{self.names.ns}:{what}", 0, -1)
        return [(row.split("|")[0], int(row.split("|")[1])) for row in rows]

    def wait_marks(self, what: str, tags: set[str], timeout: float) -> list[tuple[str, int]]:
        """Wait until every tag in `tags` was recorded under `what`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.marks(what)
            if tags <= {tag for tag, _ in rows}:
                return rows
            time.sleep(0.1)
        missing = tags - {tag for tag, _ in self.marks(what)}
        logs = "\n".join(w.text()[-3000:] for w in self.workers)
        raise AssertionError(f"never {what}: {sorted(missing)}\n{logs}")

    def wait_count(self, what: str, tag: str, count: int, timeout: float) -> int:
        """Wait until `tag` was recorded `count` times under `what`; return the count."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = [t for t, _ in self.marks(what)].count(tag)
            if seen >= count:
                return seen
            time.sleep(0.1)
        logs = "\n".join(w.text()[-3000:] for w in self.workers)
        raise AssertionError(f"{tag} {what} {seen} times, expected {count}\n{logs}")

    def close(self) -> None:
        """Stop every worker; close the client apps' broker connections (producer threads)."""
        for worker in self.workers:
            worker.stop()
        for app in self.apps:
            app.close()
        self.redis.close()


@pytest.fixture
def cluster(tansu: Service, kt_redis_url: str, names: Names, kt_logs: Path,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Workers and client apps of one test; workers are killed at the end."""
    logs = kt_logs / request.node.name.replace("/", "_")
    logs.mkdir(exist_ok=True)
    cluster = Cluster(tansu.url, kt_redis_url, names, logs)
    yield cluster
    cluster.close()
