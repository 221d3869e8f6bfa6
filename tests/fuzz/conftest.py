"""Fixtures of the fuzz tests.

The live-stack fixtures (`kafka`, `redis_url`, `stack`, `integration_logs`) and the hook that
adds the process logs to failing reports come from tests/integration/conftest.py. Imported
here they are separate definitions: a session running both folders starts a second stack for
the fuzz tests (see the note in test_schemathesis_async.py).
"""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401 - fixtures and a hook, used by name
    integration_logs,
    kafka,
    pytest_runtest_makereport,
    redis_url,
    stack,
)
