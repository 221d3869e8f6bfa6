"""Worker helpers: the child command of the supervisor, Celery's options, the default log level."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from async_request import workers
from async_request.exceptions import ConfigurationError
from async_request.settings import Settings, load_settings

EXTRA = ["--pool", "solo", "--concurrency", "1"]


def test_child_under_manage_py_is_kafka_consumer_single(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/srv/project/manage.py", "kafka_consumer_multiple"])
    assert workers.single_worker_command(EXTRA) == [
        sys.executable, "/srv/project/manage.py", "kafka_consumer_single", *EXTRA]


def test_child_without_manage_py_is_the_package_entry_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # `async-request workers` (a console script) or `django-admin`: no manage.py to re-run.
    monkeypatch.setattr(sys, "argv", ["/venv/bin/async-request", "workers"])
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "myproject.settings")
    assert workers.single_worker_command(EXTRA) == [
        sys.executable, "-m", "async_request", "worker", "--settings", "myproject.settings",
        *EXTRA]


def test_worker_options() -> None:
    assert workers.worker_options() == ["-P", "prefork"]
    assert workers.worker_options("threads", 4, "w1@host") == [
        "-P", "threads", "-c", "4", "-n", "w1@host"]
    with pytest.raises(ValueError, match="gevent"):
        workers.worker_options("gevent")


def lane_settings() -> Settings:
    return load_settings({"BS_ENV_FILE": "/nonexistent", "BS_KAFKA_TOPIC_ASYNC_BG": "ar",
                          "BS_ASYNC_REQUEST_LANES": '["GET ^/reports/.*$ slow"]'},
                         django_settings=None)


def test_lanes_become_the_queues_of_minus_q() -> None:
    settings = lane_settings()
    assert workers.worker_options("solo", lanes="slow", settings=settings) == [
        "-P", "solo", "-Q", "ar.slow"]
    assert workers.worker_options("solo", lanes="default, slow", settings=settings)[-1] == (
        "ar,ar.slow")
    with pytest.raises(ConfigurationError, match="--lanes 'fast': 'fast' is not a lane; "
                                                 "the lanes are default, slow"):
        workers.worker_options(lanes="fast", settings=settings)
    with pytest.raises(ConfigurationError, match="--lanes ' ,': no lane named"):
        workers.worker_options(lanes=" ,", settings=settings)


def test_the_asyncio_pool_goes_to_celery_as_its_custom_pool() -> None:
    """Celery's -P takes only its own names: ours is `custom`, its path in the environment."""
    assert workers.worker_options("asyncio", 32) == ["-P", "custom", "-c", "32"]
    assert workers.celery_pool("asyncio") == (
        "custom", {"CELERY_CUSTOM_WORKER_POOL": "async_request.pool:AsyncioPool"})
    assert workers.celery_pool("threads") == ("threads", {})
    from celery.utils.imports import symbol_by_name

    from async_request.pool import AsyncioPool
    assert symbol_by_name(workers.OWN_POOLS["asyncio"]) is AsyncioPool


class FakeApp:
    def __init__(self) -> None:
        self.argv: list[str] = []

    def worker_main(self, argv: list[str]) -> None:
        self.argv = argv


def test_worker_logs_at_info_by_default() -> None:
    # Celery's own default is WARNING: no `ready.`, no task lines (issue 15, F10).
    app = FakeApp()
    workers.run_single_worker(app, Settings(), ["-P", "solo"])  # type: ignore[arg-type]
    assert app.argv == ["worker", "-E", "-l", "INFO", "-P", "solo"]


def test_run_worker_runs_the_project_app_with_the_options(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    app = FakeApp()
    monkeypatch.setattr(workers, "get_celery_app", lambda: app)
    monkeypatch.setattr(workers, "run_single_worker", lambda *args: calls.append(args))
    workers.run_worker("threads", 2)
    assert calls == [(app, workers.get_settings(), ["-P", "threads", "-c", "2"])]


def test_run_workers_supervises_count_children(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[workers.Supervisor] = []
    monkeypatch.setattr(sys, "argv", ["/venv/bin/async-request", "workers"])
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "myproject.settings")
    monkeypatch.setattr(workers.Supervisor, "run", lambda self: started.append(self))
    workers.run_workers(3, "threads", 2, restart_delay=0.5)
    [supervisor] = started
    assert supervisor.count == 3
    assert supervisor.restart_delay == 0.5
    assert supervisor.command == [sys.executable, "-m", "async_request", "worker", "--settings",
                                  "myproject.settings", "--pool", "threads", "--concurrency", "2"]
    with pytest.raises(ValueError, match="consumers count"):
        workers.run_workers(0)


def test_run_workers_hands_its_lanes_to_the_children(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[workers.Supervisor] = []
    monkeypatch.setattr(sys, "argv", ["/srv/project/manage.py", "kafka_consumer_multiple"])
    monkeypatch.setattr(workers.Supervisor, "run", lambda self: started.append(self))
    workers.run_workers(2, "solo", 1, lanes="default")
    assert started[0].command[-2:] == ["--lanes", "default"]
    with pytest.raises(ConfigurationError, match="'nope' is not a lane"):
        workers.run_workers(2, lanes="nope")  # refused before any child starts
    assert len(started) == 1
