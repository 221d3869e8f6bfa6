"""Settings for the whole suite: the sample project is the Django project under test.

pytest-django reads DJANGO_SETTINGS_MODULE before this file is imported, so when it is unset
here we load the settings ourselves; pytest-django's `pytest_configure` then runs
`django.setup()`. Live services (broker, Redis, worker, ASGI server) are started lazily by the
fixtures in tests/live_fixtures.py, only for tests that ask for them.
"""

from __future__ import annotations

import importlib.util
import os
import secrets

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")
# A key of this run, not the sample's public one (which async-request warns about at start-up).
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-" + secrets.token_urlsafe(32))

# Until the sample exists (it is written alongside the package) tests that need Django fail
# on their own; the rest of the suite still runs.
if importlib.util.find_spec(os.environ["DJANGO_SETTINGS_MODULE"]) is not None:
    from django.conf import settings

    settings.INSTALLED_APPS  # noqa: B018 - force-load so pytest-django sets Django up
    # In this process only (the live stack's processes keep the sample's persistent
    # connections): in-process tests reach the database from threads (sync_to_async) nobody
    # closes, and a kept connection holds the test database open when pytest-django drops it
    # ("database test_test is being accessed by other users" on PostgreSQL).
    for _database in settings.DATABASES.values():
        _database["CONN_MAX_AGE"] = 0

# The live-stack fixtures (lazy: started only by tests that ask for them) and the hook that adds
# process logs to failing reports, shared by tests/integration and tests/fuzz.
from tests.live_fixtures import (  # noqa: E402,F401 - fixtures and a hook, used by name
    http,
    integration_logs,
    kafka,
    local_redis_url,
    pytest_runtest_makereport,
    redis_url,
    stack,
)

_LONG_LEFT = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", choices=("skip", "only", "also"), default="skip",
        help="tests marked `long` (faults, chaos, soak, the launcher: minutes each): left out "
             "(skip, the default: `make test` stays near 10 minutes), run alone (only: `make "
             "test-long`) or with the rest (also)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep or leave out the `long` tests as --long says; the left-out ones are deselected
    (counted in pytest's summary line) and named at the end (`pytest_terminal_summary`)."""
    mode = config.getoption("--long")
    if mode == "also":
        return
    keep = [item for item in items if (item.get_closest_marker("long") is not None)
            == (mode == "only")]
    left = [item for item in items if item not in keep]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep
    config.stash[_LONG_LEFT] = len(left) if mode == "skip" else 0


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    left = config.stash.get(_LONG_LEFT, 0)
    if left:
        terminalreporter.write_line(
            f"{left} long tests left out: `make test-long` (pytest --long=only) runs them",
            yellow=True)


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Silence logging once the session is over.

    Client producers created in this process (Celery apps of the transport tests) keep a
    librdkafka thread that reports "connection refused" once the session's brokers are gone;
    after pytest closed its streams that would print tracebacks below the summary line.
    """
    import logging

    logging.raiseExceptions = False
    logging.disable(logging.CRITICAL)
