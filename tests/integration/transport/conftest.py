"""Fixtures of the Kafka transport tests: workers and client apps on the session's services.

Broker and Redis are the session's `kafka` and `redis_url` (tests/live_fixtures.py), shared
with the rest of the suite; these tests use Redis DB 10 of that server (`kt_redis_url`). Every
test gets fresh queue/group names (`names`), so tests never share consumer groups (tansu
keeps the first member's session timeout per group). Workers are real `celery worker`
processes (`tools.stack.CeleryProcess`) in their own process group, killed for real.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests.integration.stack import own_redis_db
from tests.integration.transport.app import make_app
from tools.services import Service
from tools.stack import ROOT, CeleryProcess

APP = "tests.integration.transport.app"
REDIS_DB = 10

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kt_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory for the worker logs (one directory per test) and extra brokers' logs."""
    return tmp_path_factory.mktemp("transport-logs")


@pytest.fixture(scope="session")
def kt_redis_url(redis_url: str) -> str:
    """DB 10 of the session's Redis, flushed at session start."""
    return own_redis_db(redis_url, REDIS_DB)


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


class Cluster:
    """Starts workers and builds client apps for one test's names."""

    def __init__(self, broker: str, redis_url: str, names: Names, logs: Path) -> None:
        self.broker, self.redis_url, self.names, self.logs = broker, redis_url, names, logs
        self.workers: list[CeleryProcess] = []
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
               name: str | None = None) -> CeleryProcess:
        """Start one worker on the test queue."""
        name = name or f"w{len(self.workers)}-{self.names.queue}"
        log = self.logs / f"{name}.log"
        args = ["worker", "-P", pool, "-c", str(concurrency), "-Q", self.names.queue,
                "-n", f"{name}@%h", "--without-mingle", "--without-gossip", "-l", "info",
                *(extra or [])]
        worker = CeleryProcess.start(name, APP, args, log, self.env())
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
            worker.kill()
        for app in self.apps:
            app.close()
        self.redis.close()


@pytest.fixture
def cluster(kafka: Service, kt_redis_url: str, names: Names, kt_logs: Path,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Workers and client apps of one test; workers are killed at the end."""
    logs = kt_logs / request.node.name.replace("/", "_")
    logs.mkdir(exist_ok=True)
    cluster = Cluster(kafka.url, kt_redis_url, names, logs)
    yield cluster
    cluster.close()
